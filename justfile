# dait tasks. Recipes call scripts in scripts/; CI (.ci/run) calls `just test`.

set shell := ["bash", "-euo", "pipefail", "-c"]

default:
    @just --list

# Install everything the tests and the demo need (idempotent; quick when already installed).
setup:
    scripts/install-tools.sh

# The full CI test: fmt, clippy -D warnings, tests with the real engine (required), wasm32 build, docs.
test: setup
    scripts/test.sh

# Fast static checks: fmt, spelling, clippy -D warnings, the wasm32 build of the chain-client core.
check: setup
    cargo fmt --all -- --check
    PATH="$HOME/.local/bin:$PATH" typos
    cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
    cargo build -p dait-chain-client --no-default-features --target wasm32-unknown-unknown --locked

# Tests that need a real TEE or GPU (marked #[ignore]); run on confidential-VM machines.
test-hw:
    cargo test --workspace --all-features --locked -- --ignored

# The local end-to-end demo: engine + agent (simulated TEE) + tenant proxy, a plain and a streamed chat.
demo: setup
    scripts/demo.sh

# The real CPU inference engine: install | start | stop | url | status | model.
engine *args="status":
    scripts/engine.sh {{ args }}

# Benchmarks: the engine (tokens/s, first-token latency, determinism) and the workspace's cargo benches.
bench: setup
    scripts/bench.sh
