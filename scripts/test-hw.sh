#!/usr/bin/env bash
# `just test-hw`: the tests that need real confidential-computing hardware (agent/tests/hardware.rs; what they
# need and check: docs/HARDWARE.md). Each test whose hardware is absent prints `skipped: no <device>`; each that
# ran prints `ran on: <hardware>`; both kinds of line are repeated in a summary at the end. The agent is built
# with its default features, as it ships, plus `vtpm,simulated-tee` for the vTPM test where libtss2 is installed
# (the TDX and SNP tests do not use them). Extra arguments go to the test binary (e.g. a test name).
set -euo pipefail
cd "$(dirname "$0")/.."

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
features=()
if pkg-config --exists tss2-esys 2>/dev/null; then
    features=(--features "vtpm,simulated-tee")
fi
cargo test -p dait-agent --locked "${features[@]}" --test hardware -- --ignored --nocapture --test-threads=1 "$@" 2>&1 \
    | tee "$log" || status=$?
echo "== hardware tests: what ran and what was skipped"
grep -E '(skipped|ran on): ' "$log" || echo "(no test reported)"
if [ "$status" -ne 0 ]; then
    echo "== FAILED (exit $status)"
fi
exit "$status"
