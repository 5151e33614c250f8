#!/usr/bin/env bash
# Reproducibility check: builds the guest image twice from clean (mkosi's tools tree, package-installed image
# cache, the agent's cargo target directory and llama-server's build directory all fresh, in two separate output
# directories), prints the sha256 of every output of both builds and fails if any output differs or exists in only
# one build.
#
# Usage: scripts/image-check.sh [--keep]
#   --keep   leave both output directories (under target/image-check/) for inspection
# Downloaded .deb files stay in mkosi's package cache between the builds: apt checks them against the signed
# repository indexes, so a cached file is the same bytes a new download would be.
#
# Exit codes: 0 identical, 1 a difference or a failed build, 2 usage error.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

keep=0
while (($#)); do
    case "$1" in
        --keep) keep=1 ;;
        -h|--help) print_help; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
    shift
done

base="$repo/target/image-check"
rm -rf "$base"
mkdir -p "$base"

for n in 1 2; do
    log "build $n of 2"
    start=$(date +%s)
    DAIT_AGENT_TARGET_DIR="$base/agent-target-$n" DAIT_LLAMA_SERVER_DIR="$base/llama-server-$n" \
        scripts/image.sh --clean --out "$base/out-$n" >/dev/null
    log "build $n took $(($(date +%s) - start)) s"
    output_sums "$base/out-$n" >"$base/sha256-$n.txt"
    printf '\n== build %s\n' "$n"
    cat "$base/sha256-$n.txt"
done

printf '\n'
if diff -u "$base/sha256-1.txt" "$base/sha256-2.txt"; then
    log "identical: $(wc -l <"$base/sha256-1.txt") outputs"
    rc=0
else
    log "the two builds differ (diff above)"
    rc=1
fi
if ((!keep)); then
    rm -rf "$base/out-1" "$base/out-2" "$base/agent-target-1" "$base/agent-target-2" "$base/llama-server-1" \
        "$base/llama-server-2"
fi
exit "$rc"
