#!/usr/bin/env bash
# The local end-to-end demo (`just demo`):
#   1. installs and starts the real CPU inference engine (scripts/engine.sh);
#   2. builds dait-host with the simulated TEE and the settlement feature, dait-tenant, and the local chain;
#   3. starts a local EVM chain (anvil, on 127.0.0.1) with the settlement contract and a test token deployed and a
#      release published (chain-client/examples/devnet.rs); the host operator registers its (demo) GPU with its
#      stake (`dait-host register`);
#   4. starts the agent (TLS, OHTTP, receipts) in front of the engine, with its settlement task, which attests the
#      agent's keyset on chain for the current epoch; checks that attestation as a tenant (`channel check`);
#   5. opens a channel on chain (`dait-tenant channel open`: escrow approved and locked) and starts the tenant's
#      local proxy on it, which verifies the host's (simulated) evidence and its attestation on chain, encrypts
#      every request to the attested key and checks every receipt;
#   6. sends one non-streamed and one streamed chat through the proxy with plain curl, as any OpenAI client would,
#      and prints the answers, the verified receipts and the counter-signed channel state;
#   7. lets the agent commit its receipts as a batch and reveal the sample the chain picks;
#   8. closes the channel cooperatively (`dait-tenant channel close --host-url`: the agent counter-signs the final
#      state, `closeChannel` pays the host the receipts' cumulative amount and refunds the rest) and prints both
#      balances and every transaction hash.
# Everything it started is stopped on exit, also on failure or Ctrl-C. Every wait is bounded.
# State (logs, receipt log, tenant records, keys of the local chain) is kept in .dait/demo until the next run.
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

say "build dait-host (simulated TEE, settlement), dait-tenant and the local chain"
cargo build --locked --quiet -p dait-agent -p dait-tenant --all-features --bins
cargo build --locked --quiet -p dait-chain-client --features evm --example devnet
host_bin="$ROOT/target/debug/dait-host"
tenant_bin="$ROOT/target/debug/dait-tenant"
devnet_bin="$ROOT/target/debug/examples/devnet"

rm -rf "$DEMO"
mkdir -p "$DEMO/tenant"

say "local chain: anvil with the settlement contract, a test token and a published release"
"$devnet_bin" "$DEMO/operator.key" "$DEMO/tenant/wallet.key" >"$DEMO/chain.out" 2>"$DEMO/chain.log" &
pids+=($!)
for _ in $(seq 1 $((WAIT_S * 4))); do
    grep -q '^{' "$DEMO/chain.out" 2>/dev/null && break
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$DEMO/chain.log" >&2; die "the local chain did not start"; }
    sleep 0.25
done
grep -q '^{' "$DEMO/chain.out" || die "the local chain did not start within ${WAIT_S}s (log: $DEMO/chain.log)"
field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$DEMO/chain.out" "$1"; }
rpc_url="$(field rpc_url)"
settlement="$(field settlement)"
release_id="$(field release_id)"
operator="$(field operator)"
json <"$DEMO/chain.out"
chain_args=(--rpc-url "$rpc_url" --settlement "$settlement")
tenant_chain=("${chain_args[@]}" --wallet-key "$DEMO/tenant/wallet.key" --state-dir "$DEMO/tenant")

say "dait-host register: the operator stakes for its GPU"
"$host_bin" register "${chain_args[@]}" --host-key-path "$DEMO/operator.key" \
    --gpu-id GPU-00000000-0000-0000-0000-00000000d4a1

say "dait-host init --tee simulated"
"$host_bin" init --tee simulated --state-dir "$DEMO/host"

say "start the agent, with its settlement task"
port="$(free_port)"
host_url="https://127.0.0.1:$port"
"$host_bin" serve --tee simulated --state-dir "$DEMO/host" --listen "127.0.0.1:$port" \
    --upstream "$engine_url" --model-id "$MODEL_ID" --model-path "$model_path" \
    --price-in "$PRICE_IN" --price-out "$PRICE_OUT" \
    --chain-rpc "$rpc_url" --settlement "$settlement" --host-key-path "$DEMO/operator.key" \
    --release-id "$release_id" --bundle-uri "$host_url/v1/attestation" --settle-interval 0.5 --batch-size 2 \
    >"$DEMO/host.out" 2>"$DEMO/host.log" &
pids+=($!)
wait_for_url "$DEMO/host.out" https "${pids[-1]}" host >/dev/null
keyset_hash="$(grep -o 'keyset_hash=0x[0-9a-f]*' "$DEMO/host.out" | head -n1 | cut -d= -f2)"
echo "agent: $host_url (TLS; log: $DEMO/host.log), keyset $keyset_hash"

say "the agent's attestation on chain, checked as a tenant (dait-tenant channel check)"
attested=0
for _ in $(seq 1 $((WAIT_S * 2))); do
    if "$tenant_bin" channel check "${tenant_chain[@]}" --host-account "$operator" --keyset-hash "$keyset_hash" \
        >"$DEMO/check.json" 2>"$DEMO/check.log"; then
        attested=1
        break
    fi
    sleep 0.5
done
((attested)) || { cat "$DEMO/check.log" >&2; die "the agent's keyset was not attested on chain within ${WAIT_S}s"; }
json <"$DEMO/check.json"

say "dait-tenant channel open: escrow $ESCROW_CAP locked for the host's operator account"
"$tenant_bin" channel open "${tenant_chain[@]}" --host-account "$operator" --escrow "$ESCROW_CAP" \
    >"$DEMO/open.json"
json <"$DEMO/open.json"
channel_id="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["channel_id"])' "$DEMO/open.json")"

say "start the tenant proxy on the channel (verifies the host's evidence and attestation, encrypts, checks receipts)"
# No reference file pins this development host's measurements, so the tenant must be told to send prompts
# anyway (--dangerous-any-measurement); each receipt is still checked against the model, weights and engine
# build the evidence attests.
host_policy=(--dangerous-allow-simulated "$DEMO/host/sim-root.pub" --dangerous-any-measurement)
"$tenant_bin" proxy --host "$host_url" --listen 127.0.0.1:0 --state-dir "$DEMO/tenant" \
    --wallet-key "$DEMO/tenant/wallet.key" "${chain_args[@]}" --channel "$channel_id" "${host_policy[@]}" \
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

say "the agent's receipt batch: committed, then revealed once the chain picked its sample"
# batch_status: the first batch's status in the agent's settlement store ("" before there is one).
batch_status() {
    python3 -c 'import json, sys; b = json.load(open(sys.argv[1]))["batches"]; print(b[0]["status"] if b else "")' \
        "$DEMO/host/settlement.json" 2>/dev/null || true
}
# The local chain mines a block per transaction only: once the batch is committed, an empty block each half second
# brings the block whose hash picks the sample (three after the commit).
revealed=0
for _ in $(seq 1 $((WAIT_S * 2))); do
    case "$(batch_status)" in
    revealed)
        revealed=1
        break
        ;;
    committed)
        curl -fsS --max-time 10 -H 'content-type: application/json' \
            -d '{"jsonrpc": "2.0", "id": 1, "method": "anvil_mine", "params": ["0x1"]}' "$rpc_url" >/dev/null
        ;;
    esac
    sleep 0.5
done
((revealed)) || { tail -n 20 "$DEMO/host.log" >&2; die "the agent did not reveal its receipt batch within ${WAIT_S}s"; }
python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["batches"], indent=2))' \
    "$DEMO/host/settlement.json"
echo "the agent's transactions (from $DEMO/host.log):"
python3 - "$DEMO/host.log" <<'EOF'
import re, sys
ansi = re.compile(r"\x1b\[[0-9;]*m")
for line in open(sys.argv[1], errors="replace"):
    line = ansi.sub("", line)
    m = re.search(r"(keyset attested for the epoch|receipt batch \w+|channel claimed) .*\btx=(0x[0-9a-f]+)", line)
    if m:
        print(f"  {m.group(1):32s} {m.group(2)}")
EOF

say "dait-tenant channel close: the agent counter-signs the final state, closeChannel pays both sides"
"$tenant_bin" channel close "${tenant_chain[@]}" --channel "$channel_id" --host-url "$host_url" \
    "${host_policy[@]}" >"$DEMO/close.json"
json <"$DEMO/close.json"
python3 - "$DEMO/close.json" "$DEMO/receipts.json" "$ESCROW_CAP" <<'EOF'
import json, sys
close = json.load(open(sys.argv[1]))
receipts = json.load(open(sys.argv[2]))
escrow = int(sys.argv[3])
cumulative = int(receipts[-1]["cumulative"])
gained = {b["who"]: int(b["after"]) - int(b["before"]) for b in close["balances"]}
print(f"host received {gained['host']} = the receipts' cumulative amount {cumulative}")
print(f"tenant refunded {gained['tenant']} = escrow {escrow} - {cumulative}")
assert gained["host"] == cumulative, "the host was not paid the cumulative amount"
assert gained["tenant"] == escrow - cumulative, "the tenant was not refunded the rest"
for tx in close["transactions"]:
    print(f"  {tx['name']:14s} {tx['tx_hash']}")
EOF

say "done: engine, chain, agent and proxy are stopped on exit; records are in $DEMO"
