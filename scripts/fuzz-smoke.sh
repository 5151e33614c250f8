#!/usr/bin/env bash
# Runs every fuzz target in verifier/fuzz (the evidence and protocol parsers) and agent/fuzz (the agent's decapsulated
# inner request and its x-dait-state field) for SECS seconds each (default 60), from corpora seeded with the real
# evidence set and with requests built by the test tenant, and prints each target's execution count. Fails on the
# first crash, leak or timeout.
#
# Usage: scripts/fuzz-smoke.sh [SECS] [TARGET...]   (a TARGET of either crate, by its name)
# Needs: the nightly toolchain and cargo-fuzz (installed here when missing), the evidence set
# (verifier/testdata/evidence, or $DAIT_EVIDENCE_DIR).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
secs="${1:-60}"
shift || true

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    log "installing the nightly toolchain (cargo fuzz needs it for the sanitizer flags)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install --locked cargo-fuzz@0.13.2
fi

"$repo/verifier/fuzz/seed-corpora.sh" >/dev/null
"$repo/verifier/fuzz/seed-nvidia-vtpm.sh" >/dev/null
"$repo/verifier/fuzz/seed-protocol.sh" >/dev/null
"$repo/agent/fuzz/seed-requests.sh" >/dev/null

summary=()
for crate in verifier agent; do
    cd "$repo/$crate"
    mapfile -t all < <(cargo +nightly fuzz list)
    targets=()
    for t in "${all[@]}"; do
        if (($#)); then
            for want in "$@"; do if [ "$want" = "$t" ]; then targets+=("$t"); fi; done
        else
            targets+=("$t")
        fi
    done
    for t in "${targets[@]}"; do
        out="$repo/target/fuzz-smoke-$t.log"
        mkdir -p "$(dirname "$out")" "fuzz/corpus/$t"
        log "$crate/$t: ${secs}s"
        if ! cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$out" 2>&1; then
            tail -n 40 "$out" >&2
            die "$t FAILED (full log: $out)"
        fi
        runs="$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$out" | tail -n 1)"
        summary+=("$t: ${runs:-no summary line}")
    done
done
((${#summary[@]})) || die "no fuzz target named: $*"
printf '%s\n' "${summary[@]}"
