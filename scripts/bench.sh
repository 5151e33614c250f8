#!/usr/bin/env bash
# Benchmarks (not timed tests): the development engine, then the workspace's cargo benches.
#   scripts/bench.sh            both
#   scripts/bench.sh engine     the engine only (docs/ENGINE.md, docs/results/engine.md): decode speed,
#                               first-token latency, determinism, metering; the full report goes to
#                               .dait/engine-bench.json
#   scripts/bench.sh cargo      the cargo benches only
# Numbers depend on the machine's load: the load average is printed with them.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

what="${1:-all}"

if [ "$what" = all ] || [ "$what" = engine ]; then
    scripts/engine.sh install
    started=0
    if ! url="$(scripts/engine.sh url 2>/dev/null)"; then
        url="$(scripts/engine.sh start)"
        started=1
        trap 'scripts/engine.sh stop' EXIT
    fi
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg), cores: $(nproc)"
    timeout 900 python3 scripts/engine-bench.py "$url" \
        --pid "$(cat .dait/engine.pid)" --json .dait/engine-bench.json
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    [ "$started" -eq 1 ] && scripts/engine.sh stop && trap - EXIT
fi

if [ "$what" = all ] || [ "$what" = cargo ]; then
    cargo bench --workspace --all-features --locked
fi
