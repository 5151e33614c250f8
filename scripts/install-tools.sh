#!/usr/bin/env bash
# Installs the tools the tests and the demo need, on a fresh Debian machine that has only Rust (rustup).
# Idempotent: each step is skipped when its tool is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[install-tools] %s\n' "$*" >&2; }

# The pinned toolchain, its components and the wasm32 target (rust-toolchain.toml names them; rustup installs
# them on first use, this makes it explicit).
rustup show active-toolchain >/dev/null

# just: the task runner. The PyPI package ships a prebuilt binary; cargo install is the fallback.
if ! command -v just >/dev/null 2>&1; then
    log "installing just"
    if ! python3 -m pip install --quiet --disable-pip-version-check 'rust-just==1.59.0'; then
        cargo install --locked just@1.43.0
    fi
fi
