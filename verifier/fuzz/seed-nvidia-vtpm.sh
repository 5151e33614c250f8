#!/usr/bin/env bash
# Seeds the NVIDIA, RIM and vTPM fuzz corpora from the real samples of the evidence set.
# Usage: verifier/fuzz/seed-nvidia-vtpm.sh   (evidence from $DAIT_EVIDENCE_DIR or verifier/testdata/evidence)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"
ev="${DAIT_EVIDENCE_DIR:-$here/../testdata/evidence}"
[ -f "$ev/manifest.json" ] || { log "evidence set not found at $ev (set DAIT_EVIDENCE_DIR)"; exit 2; }
mkdir -p "$here/corpus/nvidia_evidence" "$here/corpus/rim_xml" "$here/corpus/tpm_quote"
for f in "$ev"/nvidia/*_report.hex; do
  xxd -r -p "$f" > "$here/corpus/nvidia_evidence/$(basename "$f" .hex).bin"
done
for f in "$ev"/nvidia/*.swidtag; do
  cp "$f" "$here/corpus/rim_xml/$(basename "$f")"
done
cp "$ev/vtpm/kinvolk__azure_tpm_quote.bincode.bin" "$here/corpus/tpm_quote/"
# The bare TPMS_ATTEST inside the container: skip the u64 signature length + signature + u64 message length.
python3 - "$ev/vtpm/kinvolk__azure_tpm_quote.bincode.bin" "$here/corpus/tpm_quote/tpms_attest.bin" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack_from("<Q", b, 0)[0]
m = struct.unpack_from("<Q", b, 8 + n)[0]
open(sys.argv[2], "wb").write(b[16 + n:16 + n + m])
PY
count() { find "$here/corpus/$1" -type f | wc -l; }
echo "seeded: $(count nvidia_evidence) nvidia, $(count rim_xml) rim, $(count tpm_quote) tpm"
