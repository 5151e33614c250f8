#!/usr/bin/env bash
# Runs every fuzz target in verifier/fuzz for SECS seconds each (default 60), from corpora seeded with the real
# evidence set, and prints each target's execution count. Fails on the first crash, leak or timeout.
#
# Usage: scripts/fuzz-smoke.sh [SECS] [TARGET...]
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

cd "$repo/verifier"
if (($#)); then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
summary=()
for t in "${targets[@]}"; do
    out="$repo/target/fuzz-smoke-$t.log"
    mkdir -p "$(dirname "$out")" "fuzz/corpus/$t"
    log "$t: ${secs}s"
    if ! cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$out" 2>&1; then
        tail -n 40 "$out" >&2
        die "$t FAILED (full log: $out)"
    fi
    runs="$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$out" | tail -n 1)"
    summary+=("$t: ${runs:-no summary line}")
done
printf '%s\n' "${summary[@]}"
