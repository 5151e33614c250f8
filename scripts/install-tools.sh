#!/usr/bin/env bash
# Installs the tools the tests and the demo need, on a fresh Debian machine that has only Rust (rustup).
# Idempotent and quiet: each step is skipped when its tool is already there, so a second run takes about a second.
#
#   scripts/install-tools.sh            tools for `just test` and `just demo`
#   scripts/install-tools.sh --engine   also build the real inference engine (scripts/engine.sh install)
#
# What it installs:
#   Debian packages   build-essential (C compiler for ring and the engine), cmake (engine build), python3,
#                     python3-venv (engine venv), curl (demo, engine health checks), ca-certificates
#   just              the task runner, prebuilt from the PyPI package rust-just, in a venv under
#                     ~/.local/share/dait/tools, linked as ~/.local/bin/just
#   Rust              the toolchain pinned in rust-toolchain.toml with rustfmt, clippy and the wasm32 target
set -euo pipefail
cd "$(dirname "$0")/.."

JUST_VERSION="1.59.0"
TOOLS_VENV="${XDG_DATA_HOME:-$HOME/.local/share}/dait/tools"
BIN_DIR="$HOME/.local/bin"

log() { printf '[install-tools] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Debian packages, installed only when missing (root, or sudo without a password).
apt_missing=()
for pkg in build-essential cmake python3 python3-venv curl ca-certificates; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || apt_missing+=("$pkg")
done
# A machine may have these tools from elsewhere (a Python from pyenv, a cmake from pip): only ask apt for what
# is really absent.
filtered=()
for pkg in "${apt_missing[@]}"; do
    case "$pkg" in
    build-essential) command -v cc >/dev/null && command -v c++ >/dev/null && command -v make >/dev/null && continue ;;
    cmake) command -v cmake >/dev/null && continue ;;
    python3) command -v python3 >/dev/null && continue ;;
    python3-venv) command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null && continue ;;
    curl) command -v curl >/dev/null && continue ;;
    ca-certificates) [ -d /etc/ssl/certs ] && continue ;;
    esac
    filtered+=("$pkg")
done
if [ "${#filtered[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${filtered[*]} and no apt-get to install them"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    log "installing Debian packages: ${filtered[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${filtered[@]}" \
        >/dev/null
fi

# The pinned toolchain, its components and the wasm32 target (rust-toolchain.toml names them; this makes the
# install explicit instead of relying on rustup's install-on-first-use).
command -v rustup >/dev/null 2>&1 || die "rustup is needed (https://rustup.rs)"
toolchain="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)"
if ! rustup toolchain list | grep -q "^$toolchain"; then
    log "installing Rust $toolchain"
    rustup toolchain install "$toolchain" --profile minimal --component rustfmt,clippy \
        --target wasm32-unknown-unknown >/dev/null
fi
installed_components="$(rustup component list --installed --toolchain "$toolchain")"
for component in rustfmt clippy; do
    grep -q "^$component" <<<"$installed_components" || rustup component add --toolchain "$toolchain" "$component" >/dev/null
done
grep -q "^rust-std-wasm32-unknown-unknown" <<<"$installed_components" ||
    rustup target add --toolchain "$toolchain" wasm32-unknown-unknown >/dev/null

# just: the PyPI package rust-just ships the prebuilt binary. A venv keeps it away from the system Python
# (Debian's is externally managed); cargo install is the slow fallback.
if ! command -v just >/dev/null 2>&1 && [ ! -x "$BIN_DIR/just" ]; then
    log "installing just $JUST_VERSION"
    mkdir -p "$BIN_DIR"
    if python3 -m venv "$TOOLS_VENV" >/dev/null 2>&1 &&
        "$TOOLS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "rust-just==$JUST_VERSION"; then
        ln -sf "$TOOLS_VENV/bin/just" "$BIN_DIR/just"
    else
        cargo install --quiet --locked --root "$HOME/.local" "just@$JUST_VERSION"
    fi
fi
if ! command -v just >/dev/null 2>&1; then
    log "just is in $BIN_DIR: add it to PATH (export PATH=\"\$HOME/.local/bin:\$PATH\")"
fi

if [ "${1:-}" = "--engine" ]; then
    scripts/engine.sh install
fi
