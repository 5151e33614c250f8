#!/usr/bin/env bash
# Installs sev-snp-measure (the reference implementation of SEV-SNP launch digests) into the project's virtual
# environment `.dait/` (gitignored) and prints the path of its command. Idempotent.
#   DAIT_VENV   the virtual environment (default: .dait at the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."

version="0.0.13"
venv="${DAIT_VENV:-$PWD/.dait}"
bin="$venv/bin/sev-snp-measure"
if [[ -x "$bin" ]] && "$venv/bin/python" -m pip show sev-snp-measure 2>/dev/null | grep -qx "Version: $version"; then
    printf '%s\n' "$bin"
    exit 0
fi
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "sev-snp-measure==$version" >&2
printf '%s\n' "$bin"
