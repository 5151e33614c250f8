#!/usr/bin/env bash
# Installs the tools the tests and the demo need, on a fresh Debian machine that has only Rust (rustup).
# Idempotent and quiet: each step is skipped when its tool is already there, so a second run takes about a second.
#
#   scripts/install-tools.sh            tools for `just test` and `just demo`
#   scripts/install-tools.sh --engine   also build the real inference engine (scripts/engine.sh install)
#
# What it installs:
#   Debian packages   build-essential (C compiler for ring and the engine), cmake (engine build), python3,
#                     python3-venv (engine venv), curl (demo, engine health checks), ca-certificates, and
#                     the shell script linter shellcheck (`just check`), nodejs and npm (the settlement
#                     contract's compiler and the local chain), pkg-config and libtss2-dev (the agent's
#                     `vtpm` feature links libtss2; the TCTI modules come with it), swtpm and swtpm-tools (the
#                     software TPM of the vTPM tests and of the guest in scripts/boot.sh)
#   chain tools       solc and anvil, pinned, by scripts/install-chain-tools.sh (npm ci into chain-client/contracts)
#   just, typos       the task runner and the spelling checker, prebuilt from the PyPI packages rust-just and
#                     typos, in a venv under ~/.local/share/dait/tools, linked into ~/.local/bin
#   Rust              the toolchain pinned in rust-toolchain.toml with rustfmt, clippy and the wasm32 target
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

JUST_VERSION="1.59.0"
TYPOS_VERSION="1.52.0"
TOOLS_VENV="${XDG_DATA_HOME:-$HOME/.local/share}/dait/tools"
BIN_DIR="$HOME/.local/bin"

# Debian packages, installed only when missing. A machine may have these tools from elsewhere (a Python from
# pyenv, a cmake from pip): only ask apt for what is really absent.
need=()
{ command -v cc && command -v c++ && command -v make; } >/dev/null || need+=(build-essential)
command -v cmake >/dev/null || need+=(cmake)
# dpkg-scanpackages: scripts/image.sh's local repository of the locked .debs.
command -v dpkg-scanpackages >/dev/null || need+=(dpkg-dev)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v curl >/dev/null || need+=(curl)
[ -d /etc/ssl/certs ] || need+=(ca-certificates)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists tss2-esys tss2-tctildr 2>/dev/null || need+=(libtss2-dev)
{ command -v swtpm && command -v swtpm_setup; } >/dev/null || need+=(swtpm swtpm-tools)
apt_install "${need[@]}"

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

# Tools shipped as prebuilt binaries in PyPI packages, installed into one venv (Debian's own Python is externally
# managed) and linked into ~/.local/bin: just (rust-just) and the spelling checker typos. cargo install is the
# slow fallback.
# pip_tool COMMAND PACKAGE VERSION [CRATE]
pip_tool() {
    local cmd="$1" package="$2" version="$3" crate="${4:-}"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    [ -x "$BIN_DIR/$cmd" ] && return 0
    log "installing $cmd $version"
    mkdir -p "$BIN_DIR"
    if { [ -x "$TOOLS_VENV/bin/python" ] || python3 -m venv "$TOOLS_VENV" >/dev/null 2>&1; } &&
        "$TOOLS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$package==$version"; then
        ln -sf "$TOOLS_VENV/bin/$cmd" "$BIN_DIR/$cmd"
    elif [ -n "$crate" ]; then
        cargo install --quiet --locked --root "$HOME/.local" "$crate@$version"
    else
        die "could not install $cmd"
    fi
}
pip_tool just rust-just "$JUST_VERSION" just
pip_tool typos typos "$TYPOS_VERSION" typos-cli
scripts/install-chain-tools.sh

if ! command -v just >/dev/null 2>&1; then
    log "just is in $BIN_DIR: add it to PATH (export PATH=\"\$HOME/.local/bin:\$PATH\")"
fi

if [ "${1:-}" = "--engine" ]; then
    scripts/engine.sh install
fi
