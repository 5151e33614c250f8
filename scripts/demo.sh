#!/usr/bin/env bash
# The local end-to-end demo (`just demo`):
#   1. installs and starts the real CPU inference engine (scripts/engine.sh);
#   2. builds dait-host with the simulated TEE and dait-tenant, and initialises a host state directory;
#   3. starts the agent (TLS, OHTTP, receipts) in front of the engine, and the tenant's local proxy, which
#      verifies the host's (simulated) evidence, encrypts every request to the attested key and checks every
#      receipt;
#   4. sends one non-streamed and one streamed chat through the proxy with plain curl, as any OpenAI client would;
#   5. prints the answers, the verified receipts and the counter-signed channel state.
# Everything it started is stopped on exit, also on failure or Ctrl-C. Every wait is bounded.
# State (logs, receipt log, tenant records) is kept in .dait/demo until the next run.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
ROOT="$repo"

DEMO="${DAIT_DEMO_DIR:-$ROOT/.dait/demo}"
MODEL_ID="smollm2-135m-instruct-q4_1"
PRICE_IN=1
PRICE_OUT=2
ESCROW_CAP=100000
WAIT_S=60
CURL_MAX_S=300

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

pids=()
engine_started=0
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 20); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$engine_started" -eq 1 ]; then
        scripts/engine.sh stop >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until FILE has a line with a URL of SCHEME and prints that URL (the first word starting with it).
wait_for_url() {
    local file="$1" scheme="$2" pid="$3" name="$4" url=""
    for _ in $(seq 1 $((WAIT_S * 4))); do
        url="$(grep -o "${scheme}://[0-9.:]*" "$file" 2>/dev/null | head -n 1 || true)"
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || {
            tail -n 20 "$DEMO/$name.log" >&2 || true
            die "$name exited during start (log: $DEMO/$name.log)"
        }
        sleep 0.25
    done
    [ -n "$url" ] || die "$name did not start within ${WAIT_S}s (log: $DEMO/$name.log)"
    printf '%s\n' "$url"
}

# Pretty-prints JSON from stdin (python3 is installed by scripts/install-tools.sh).
json() { python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin), indent=2, ensure_ascii=False))'; }

say "engine"
scripts/engine.sh install
if ! engine_url="$(scripts/engine.sh url 2>/dev/null)"; then
    engine_url="$(scripts/engine.sh start)"
    engine_started=1
fi
model_path="$(scripts/engine.sh model)"
echo "engine: $engine_url ($MODEL_ID)"

say "build dait-host (simulated TEE) and dait-tenant"
cargo build --locked --quiet -p dait-agent -p dait-tenant --all-features --bins
host_bin="$ROOT/target/debug/dait-host"
tenant_bin="$ROOT/target/debug/dait-tenant"

rm -rf "$DEMO"
mkdir -p "$DEMO/tenant"

say "dait-host init --tee simulated"
"$host_bin" init --tee simulated --state-dir "$DEMO/host"

say "start the agent"
"$host_bin" serve --tee simulated --state-dir "$DEMO/host" --listen 127.0.0.1:0 \
    --upstream "$engine_url" --model-id "$MODEL_ID" --model-path "$model_path" \
    --price-in "$PRICE_IN" --price-out "$PRICE_OUT" >"$DEMO/host.out" 2>"$DEMO/host.log" &
pids+=($!)
host_url="$(wait_for_url "$DEMO/host.out" https "${pids[-1]}" host)"
echo "agent: $host_url (TLS; log: $DEMO/host.log)"

say "start the tenant proxy (verifies the host's evidence, then encrypts and checks receipts)"
# No reference file pins this development host's measurements, so the tenant must be told to send prompts
# anyway (--dangerous-any-measurement); each receipt is still checked against the model, weights and engine
# build the evidence attests.
"$tenant_bin" proxy --host "$host_url" --listen 127.0.0.1:0 --state-dir "$DEMO/tenant" \
    --wallet-key "$DEMO/tenant/wallet.key" --escrow-cap "$ESCROW_CAP" \
    --dangerous-allow-simulated "$DEMO/host/sim-root.pub" --dangerous-any-measurement \
    >"$DEMO/proxy.out" 2>"$DEMO/proxy.log" &
pids+=($!)
proxy_url="$(wait_for_url "$DEMO/proxy.out" http "${pids[-1]}" proxy)"
echo "tenant proxy: $proxy_url (log: $DEMO/proxy.log)"

say "non-streamed chat through the proxy (curl)"
request='{"model": "'"$MODEL_ID"'", "temperature": 0, "max_tokens": 48,
          "messages": [{"role": "user", "content": "What is the capital of France?"}]}'
echo "\$ curl $proxy_url/v1/chat/completions -d '$(tr -s ' \n' ' ' <<<"$request")'"
curl -fsS --max-time "$CURL_MAX_S" "$proxy_url/v1/chat/completions" -H 'content-type: application/json' \
    -d "$request" >"$DEMO/plain.json"
python3 -c 'import json, sys; b = json.load(open(sys.argv[1])); print("answer:", b["choices"][0]["message"]["content"]); print("usage:", json.dumps(b.get("usage")))' \
    "$DEMO/plain.json"

say "streamed chat through the proxy (curl -N)"
request='{"model": "'"$MODEL_ID"'", "temperature": 0, "max_tokens": 48, "stream": true,
          "messages": [{"role": "user", "content": "Write a haiku about the sea."}]}'
echo "\$ curl -N $proxy_url/v1/chat/completions -d '$(tr -s ' \n' ' ' <<<"$request")'"
printf 'answer: '
curl -fsSN --max-time "$CURL_MAX_S" "$proxy_url/v1/chat/completions" -H 'content-type: application/json' \
    -d "$request" | tee "$DEMO/stream.sse" | python3 -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("data: ") or line == "data: [DONE]":
        continue
    for choice in json.loads(line[6:]).get("choices", []):
        print(choice.get("delta", {}).get("content") or "", end="", flush=True)
print()'
grep -q '^data: \[DONE\]' "$DEMO/stream.sse" || die "the stream did not end with [DONE]"

say "verified receipts (GET $proxy_url/dait/receipts)"
curl -fsS --max-time 10 "$proxy_url/dait/receipts" >"$DEMO/receipts.json"
python3 - "$DEMO/receipts.json" <<'EOF'
import json, sys
receipts = json.load(open(sys.argv[1]))
keys = ["call_seq", "model_id", "tokens_in", "tokens_out", "price_in", "price_out", "amount", "cumulative",
        "request_hash", "response_hash", "prev_receipt_hash", "receipt_hash"]
for r in receipts:
    print("receipt")
    for k in keys:
        print(f"  {k:18s} {r.get(k)}")
# The chain the tenant checked: call_seq 1..n, each receipt points at the previous one, amounts add up.
prev = "0x" + "00" * 32
total = 0
for i, r in enumerate(receipts, 1):
    assert r["call_seq"] == i, "call_seq is not 1..n"
    assert r["prev_receipt_hash"] == prev, "prev_receipt_hash does not chain"
    amount = r["tokens_in"] * int(r["price_in"]) + r["tokens_out"] * int(r["price_out"])
    assert int(r["amount"]) == amount, "amount is not tokens x prices"
    total += amount
    assert int(r["cumulative"]) == total, "cumulative is not the running sum"
    prev = r["receipt_hash"]
print(f"chain: {len(receipts)} receipts, call_seq 1..{len(receipts)}, hashes chained, cumulative {total}")
EOF
[ "$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$DEMO/receipts.json")" -eq 2 ] ||
    die "expected 2 verified receipts"

say "counter-signed channel state (GET $proxy_url/dait/state)"
curl -fsS --max-time 10 "$proxy_url/dait/state" | json

say "done: engine, agent and proxy are stopped on exit; records are in $DEMO"
