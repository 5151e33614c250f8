#!/usr/bin/env bash
# Installs the settlement contract's tools, pinned, into chain-client/contracts/node_modules (ignored by git):
#   solc            0.8.37  the compiler as WebAssembly (npm `solc`), so every machine compiles the same bytes
#   anvil           1.7.1   the local EVM chain the contract tests start (npm `@foundry-rs/anvil-linux-amd64`,
#                           Linux x86-64; elsewhere set DAIT_ANVIL to an anvil binary)
#   viem            2.58.8  JSON-RPC, ABI encoding and EIP-712 for the tests
#   @noble/curves   1.9.1   P-256 and secp256k1 signatures for the tests
# Every version, dependencies included, and its integrity hash is fixed by chain-client/contracts/package-lock.json;
# `npm ci` installs exactly that tree and runs no package install scripts. Needs node >= 20 with npm.
# Idempotent: nothing happens when the lock file is unchanged since the last install.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

DIR=chain-client/contracts
SOLC_VERSION="0.8.37"
ANVIL_VERSION="1.7.1"


command -v node >/dev/null 2>&1 || die "node >= 20 is needed (Debian: apt-get install nodejs npm, or a node 20 release)"
command -v npm >/dev/null 2>&1 || die "npm is needed next to node"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "node >= 20 is needed, found $(node --version)"

stamp="$DIR/node_modules/.dait-package-lock.sha256"
want="$(sha256sum "$DIR/package-lock.json" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

log "installing the pinned packages into $DIR/node_modules"
(cd "$DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

solc="$("$DIR/node_modules/.bin/solcjs" --version)"
case "$solc" in
"$SOLC_VERSION"+*) ;;
*) die "solcjs reports $solc, expected $SOLC_VERSION" ;;
esac
if [ -x "$DIR/node_modules/.bin/anvil" ]; then
    anvil="$("$DIR/node_modules/.bin/anvil" --version | head -1)"
    case "$anvil" in
    *" $ANVIL_VERSION"*) ;;
    *) die "anvil reports '$anvil', expected $ANVIL_VERSION" ;;
    esac
else
    log "no anvil package for this platform: set DAIT_ANVIL to an anvil $ANVIL_VERSION binary for the tests"
    anvil="none"
fi
echo "$want" >"$stamp"
log "solc $solc, $anvil"
