#!/usr/bin/env bash
# The full test run, as CI runs it (`just test`, `.ci/run`):
#   1. rustfmt check
#   2. clippy on every target and feature, warnings are errors
#   3. the workspace tests, with the real inference engine started here (DAIT_ENGINE_URL) and required
#      (DAIT_REQUIRE_ENGINE=1: end-to-end tests fail instead of skipping when it is missing)
#   4. the wasm32 build of the chain-client core
#   5. the API docs, warnings are errors
# The engine is stopped on exit, also when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# A fresh clone builds everything once: no incremental state, smaller debug info, quicker links.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
export CARGO_PROFILE_TEST_DEBUG="${CARGO_PROFILE_TEST_DEBUG:-line-tables-only}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step_start=$SECONDS
step() {
    printf '\n==> %s (at %ss)\n' "$*" "$((SECONDS - step_start))" >&2
}

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "engine"
scripts/engine.sh install
trap 'scripts/engine.sh stop' EXIT
DAIT_ENGINE_URL="$(scripts/engine.sh start)"
export DAIT_ENGINE_URL
export DAIT_REQUIRE_ENGINE=1

step "tests (engine at $DAIT_ENGINE_URL)"
cargo test --workspace --all-features --locked

step "wasm32 build of the chain-client core"
cargo build -p dait-chain-client --no-default-features --target wasm32-unknown-unknown --locked

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked

step "done"
