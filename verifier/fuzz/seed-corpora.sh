#!/usr/bin/env bash
# Seeds the fuzz corpora from the real evidence set: every TDX quote and SNP report it holds, decoded from hex
# where needed, plus one truncated and one zero-padded variant of each.
# Usage: verifier/fuzz/seed-corpora.sh [EVIDENCE_DIR]   (default: $DAIT_EVIDENCE_DIR or verifier/testdata/evidence)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
ev="${1:-${DAIT_EVIDENCE_DIR:-$repo/verifier/testdata/evidence}}"
[ -f "$ev/manifest.json" ] || { log "evidence set not found at $ev"; exit 2; }

seed() { # target name file
  local dir="$here/corpus/$1"; mkdir -p "$dir"
  local out="$dir/$2"
  case "$3" in
    *.hex) tr -d ' \n\r' < "$3" | sed 's/^0x//' | xxd -r -p > "$out" ;;
    *) cp "$3" "$out" ;;
  esac
  local n; n=$(stat -c %s "$out")
  head -c $(( n / 2 )) "$out" > "$out.half"
  { cat "$out"; head -c 16 /dev/zero; } > "$out.pad"
}

for f in "$ev"/tdx/*quote*; do seed tdx_quote "$(basename "$f")" "$f"; done
for f in "$ev"/snp/*report*.bin "$ev"/snp/*attestation.bin "$ev"/snp/*report.hex; do
  seed snp_report "$(basename "$f")" "$f"
done
# The SNP report inside the Azure HCL report (offset 0x20).
mkdir -p "$here/corpus/snp_report"
dd if="$ev/snp/kinvolk__azure_hcl_report_snp.bin" of="$here/corpus/snp_report/azure_hcl_inner.bin" bs=1 skip=32 count=1184 status=none
for dir in "$here"/corpus/*/; do echo "$(basename "$dir"): $(find "$dir" -type f | wc -l) files"; done
