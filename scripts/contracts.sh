#!/usr/bin/env bash
# The settlement contract: compile, check the committed artefacts, test.
#
#   scripts/contracts.sh build   compiles with the pinned solc and settings (chain-client/contracts/build.mjs) into
#                                the committed chain-client/contracts/out/*.json (ABI, creation and runtime bytecode)
#   scripts/contracts.sh check   compiles into a temporary directory and fails if any artefact differs from the
#                                committed one (a source change without `build`, or a different compiler)
#   scripts/contracts.sh test    runs the contract tests against anvil, which the tests start and stop themselves;
#                                DAIT_GAS_REPORT=FILE also writes the gas figures as JSON
#
# Run scripts/install-chain-tools.sh once first.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

DIR=chain-client/contracts


[ -f "$DIR/node_modules/solc/package.json" ] || die "the pinned solc is missing: run scripts/install-chain-tools.sh"

case "${1:-}" in
build)
    node "$DIR/build.mjs" "$DIR/out"
    ;;
check)
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    node "$DIR/build.mjs" "$tmp"
    status=0
    for f in "$tmp"/*.json; do
        name="$(basename "$f")"
        if ! cmp -s "$f" "$DIR/out/$name"; then
            log "out/$name differs from a fresh compile (run scripts/contracts.sh build and commit it)"
            status=1
        fi
    done
    for f in "$DIR"/out/*.json; do
        [ -f "$tmp/$(basename "$f")" ] || {
            log "out/$(basename "$f") is not produced by the build any more"
            status=1
        }
    done
    [ "$status" -eq 0 ] && log "artefacts match a fresh compile"
    exit "$status"
    ;;
test)
    cd "$DIR"
    exec node --test --test-reporter=spec test/settlement.test.mjs
    ;;
*)
    die "usage: $0 build|check|test"
    ;;
esac
