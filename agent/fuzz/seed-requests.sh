#!/usr/bin/env bash
# Seeds the agent's fuzz corpora (agent/fuzz/corpus/{agent_request,channel_state_header}) with inner requests as the
# agent receives them once decapsulated, built by the test tenant: plain and streamed, with a valid, a missing, a
# malformed and a tampered channel state (agent/tests/fuzz_seeds.rs, which also checks each seed's outcome).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"
DAIT_WRITE_FUZZ_SEEDS="$here/corpus" cargo test --manifest-path "$here/../../Cargo.toml" -p dait-agent \
    --features simulated-tee --test fuzz_seeds --locked -- --nocapture
for dir in "$here"/corpus/*/; do echo "$(basename "$dir"): $(find "$dir" -type f | wc -l) files"; done
