#!/usr/bin/env bash
# Writes image/packages.lock: every Debian package the image, its initrd and mkosi's tools tree installed in the
# last build (their dpkg status in image/mkosi.cache), plus the .debs the scripts fetch themselves (mkosi, the
# ovmf whose OVMF.fd is the TDX firmware), each with its exact version, the .deb's sha256 and pool path from the
# mirror's signature-checked Packages indices. scripts/image.sh then installs exactly these (docs/RELEASING.md).
#
# Usage: scripts/image-lock.sh [--build]
#   --build   first build the image cold from the mirror's current packages (scripts/image.sh --clean --unlocked),
#             then lock what it installed: a new package set, so a new release and a regenerated reference
# Environment: the mirror and cache settings of scripts/image.sh.
#
# Exit codes: 0 written, 1 failed, 2 usage error.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

build=0
while (($#)); do
    case "$1" in
        --build) build=1 ;;
        -h|--help) print_help; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
    shift
done

if ((build)); then
    scripts/image.sh --clean --unlocked >/dev/null || die "the unlocked image build failed"
fi

trees=image/mkosi.cache
status_args=()
for spec in "image=debian~trixie~x86-64.cache" "initrd=debian~trixie~x86-64~default-initrd.cache" \
    "tools=tools.cache"; do
    status="$trees/${spec#*=}/var/lib/dpkg/status"
    [[ -s "$status" ]] || die "no $status: build the image first (scripts/image.sh, or this script with --build)"
    status_args+=(--status "${spec%%=*}=$status")
done

# The versions the scripts fetch themselves: their defaults in scripts/image.sh and scripts/reference.sh.
mkosi_version="$(sed -n 's/.*DAIT_MKOSI_VERSION:-\([^}]*\)}.*/\1/p' scripts/image.sh | head -n1)"
tdvf_version="$(sed -n 's/.*DAIT_TDVF_VERSION:-\([^}]*\)}.*/\1/p' scripts/reference.sh | head -n1)"
[[ -n "$mkosi_version" && -n "$tdvf_version" ]] || die "cannot read the mkosi and ovmf versions from the scripts"

# shellcheck source=scripts/debian-mirror.sh
source scripts/debian-mirror.sh
index_args=()
while IFS= read -r index; do index_args+=(--index "$index"); done < <(trixie_indices "$(cache_dir)/apt-trixie")
((${#index_args[@]})) || die "no Packages indices from the mirror"

python3 scripts/deb-lock.py resolve "${status_args[@]}" --extra "host=mkosi=$mkosi_version" \
    --extra "host=ovmf=$tdvf_version" "${index_args[@]}" --out image/packages.lock
git diff --stat -- image/packages.lock >&2 || true
