#!/usr/bin/env bash
# Seeds the bundle and receipt fuzz corpora from the protocol test vectors (chain-client/tests/vectors): every
# hex-encoded protobuf message they hold, and the engine responses of the normalisation cases.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"
vectors="$here/../../chain-client/tests/vectors"
mkdir -p "$here/corpus/bundle" "$here/corpus/receipt"
python3 - "$vectors" "$here/corpus" <<'PY'
import json, os, sys
vectors, corpus = sys.argv[1], sys.argv[2]
def hexes(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from hexes(v)
    elif isinstance(node, list):
        for v in node:
            yield from hexes(v)
    elif isinstance(node, str) and len(node) > 8 and len(node) % 2 == 0:
        try:
            yield bytes.fromhex(node)
        except ValueError:
            pass
def texts(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from texts(v)
    elif isinstance(node, list):
        for v in node:
            yield from texts(v)
    elif isinstance(node, str):
        yield node.encode()
n = 0
for name in sorted(os.listdir(vectors)):
    if not name.endswith(".json"):
        continue
    doc = json.load(open(os.path.join(vectors, name)))
    target = "bundle" if name == "bundle.json" else "receipt"
    seeds = list(hexes(doc)) + (list(texts(doc)) if name == "response.json" else [])
    for i, data in enumerate(seeds):
        open(os.path.join(corpus, target, f"{name[:-5]}-{i}.bin"), "wb").write(data)
        n += 1
print(f"seeded {n} protocol inputs")
PY
