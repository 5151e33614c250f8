#!/usr/bin/env bash
# Builds an OVMF with the SEV-SNP kernel-hashes table (OvmfPkg/AmdSev/AmdSevX64.dsc) from Debian's edk2 source
# package, once, into a cache directory outside the repository, and prints the path of the firmware file.
#
# Debian's ovmf package does not ship this build (its OVMF has no SEV hashes table, so direct boot with
# kernel-hashes cannot be measured with it). The SEV metadata section that tells the VMM where to put the kernel
# hashes for SNP (type 0x10, SNP_KERNEL_HASHES) exists from edk2-stable202302 on, so bookworm's edk2 (2022.11) is
# too old: the source package comes from trixie (2025.02), through a private apt configuration that leaves the
# system's apt sources alone. The AmdSev build normally embeds a grub with the `sevsecret` module, which
# bookworm's grub lacks; we build without grub (direct kernel boot does not need it).
#
# Idempotent: when the firmware is already in the cache it only prints its path.
# Usage: scripts/ovmf.sh [--cached]
#   --cached          only print the cached firmware's path; exit 1 (printing nothing) when it is not built yet
#   DAIT_CACHE_DIR    cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/dait)
#   DAIT_OVMF_JOBS    parallel build jobs (default 2)
#   DAIT_EDK2_SUITE   Debian suite of the edk2 source package (default trixie)
#   DAIT_EDK2_SOURCE  a directory with the edk2 source package's files (edk2_*.orig.tar.*, edk2_*.debian.tar.*: a
#                     release's sources/, docs/RELEASING.md), used instead of downloading it
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cache="$(cache_dir)"
suite="${DAIT_EDK2_SUITE:-trixie}"
dir="$cache/ovmf-$suite"
out="$dir/OVMF-amdsev.fd"
if [[ -s "$out" ]]; then
    printf '%s\n' "$out"
    exit 0
fi
[[ "${1:-}" == --cached ]] && exit 1
mkdir -p "$dir"
umask 022

# Build dependencies (Debian package names).
need=()
command -v nasm >/dev/null 2>&1 || need+=(nasm)
command -v iasl >/dev/null 2>&1 || need+=(acpica-tools)
command -v dpkg-source >/dev/null 2>&1 || need+=(dpkg-dev)
command -v gcc >/dev/null 2>&1 || need+=(build-essential)
[[ -e /usr/include/uuid/uuid.h ]] || need+=(uuid-dev)
apt_install "${need[@]}"

# Source package: a private apt configuration that lists the system's Debian sources as deb-src, so the system's
# own apt configuration is left untouched.
apt_dir="$dir/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/sources.list.d"
# The Debian mirror the system uses.
# shellcheck source=scripts/debian-mirror.sh
source "$repo/scripts/debian-mirror.sh"
debian_mirrors || exit 1
mirror="$DEBIAN_MIRROR"
cat >"$apt_dir/sources.list.d/edk2-src.sources" <<SOURCES
Types: deb-src
URIs: $mirror
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
apt_opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache::Archives=$apt_dir/archives"
    -o "APT::Sandbox::User=root"
)
src_root="$dir/src"
if ! compgen -G "$src_root/edk2-*/edksetup.sh" >/dev/null; then
    rm -rf "$src_root"
    mkdir -p "$src_root"
fi
if [[ -n "${DAIT_EDK2_SOURCE:-}" ]] && ! compgen -G "$src_root/edk2-*/edksetup.sh" >/dev/null; then
    log "unpacking the edk2 source package from $DAIT_EDK2_SOURCE"
    cp "$DAIT_EDK2_SOURCE"/edk2_*.orig.tar.* "$DAIT_EDK2_SOURCE"/edk2_*.debian.tar.* "$src_root/" ||
        die "no edk2_*.orig.tar.* and edk2_*.debian.tar.* in $DAIT_EDK2_SOURCE"
fi
if ! compgen -G "$src_root/edk2-*/edksetup.sh" >/dev/null; then
    [[ -n "${DAIT_EDK2_SOURCE:-}" ]] || log "fetching the edk2 source package"
    [[ -n "${DAIT_EDK2_SOURCE:-}" ]] || apt-get "${apt_opts[@]}" update -qq
    # apt's own download is tried first. When a mirror lacks one of the files (seen: the .dsc of a point-release
    # revision), the others are fetched by their printed URIs, each checked against the SHA-256 of the signed
    # Sources index, and unpacked as dpkg-source would: the upstream tarball (which bundles the submodules), then
    # the debian/ tarball and its patch series (one of which lets BaseTools build without the brotli submodule).
    (
        cd "$src_root"
        if [[ -z "${DAIT_EDK2_SOURCE:-}" ]] &&
            apt-get "${apt_opts[@]}" source -qq --download-only edk2 >/dev/null 2>&1; then
            dpkg-source --no-check -x ./edk2_*.dsc >/dev/null
        else
            [[ -n "${DAIT_EDK2_SOURCE:-}" ]] ||
                apt-get "${apt_opts[@]}" source -qq --print-uris edk2 | while read -r uri name _size sum; do
                    uri="${uri//\'/}"
                    if curl -fsSL -o "$name.part" "${uri//%2b/+}"; then
                        printf '%s  %s\n' "${sum#SHA256:}" "$name.part" | sha256sum -c --quiet -
                        mv "$name.part" "$name"
                    else
                        rm -f "$name.part"
                        log "mirror has no $name"
                    fi
                done
            orig="$(compgen -G 'edk2_*.orig.tar.*' | head -n1)"
            [[ -n "$orig" ]] || die "no edk2 upstream tarball"
            tar xf "$orig"
            tree="$(compgen -G 'edk2-*/edksetup.sh' | head -n1)"
            tree="${tree%/edksetup.sh}"
            debian="$(compgen -G 'edk2_*.debian.tar.*' | head -n1)"
            if [[ -n "$debian" ]]; then
                tar xf "$debian" -C "$tree"
                while read -r patch _; do
                    [[ -z "$patch" || "$patch" == \#* ]] && continue
                    patch -s -p1 -d "$tree" <"$tree/debian/patches/$patch"
                done <"$tree/debian/patches/series"
            fi
        fi
    )
fi
src="$(compgen -G "$src_root/edk2-*/edksetup.sh" | head -n1)"
src="${src%/edksetup.sh}"
log "edk2 source: $src"

# Build without grub: drop the grub prebuild step and the grub image from the platform and the flash layout
# (direct kernel boot does not use it).
for f in "$src/OvmfPkg/AmdSev/AmdSevX64.dsc" "$src/OvmfPkg/AmdSev/AmdSevX64.fdf"; do
    sed -i -e '\#OvmfPkg/AmdSev/Grub/Grub.inf#d' -e '\#^ *PREBUILD *= *sh OvmfPkg/AmdSev/Grub/grub.sh#d' "$f"
done

jobs="${DAIT_OVMF_JOBS:-2}"
# The build runs in one fixed directory, whatever the cache's location: edk2's GenFw sizes each module's debug
# data by the absolute path of its build output, so a build under another path (another DAIT_CACHE_DIR, another
# user's home) gives different bytes in the modules whose padding that length crosses (seen: AtaBusDxe and
# VirtioBlkDxe, 64 bytes each, a different OVMF and so different SNP launch digests). One build at a time.
build_root=/tmp/dait-ovmf-build
exec 9>"$build_root.lock"
flock 9
rm -rf "$build_root"
mkdir -p "$build_root"
tree_name="${src##*/}"
cp -a "$src" "$build_root/$tree_name"
rm -rf "$build_root/$tree_name/Build"
(
    cd "$build_root/$tree_name"
    export PYTHON_COMMAND=python3
    make -s -C BaseTools -j"$jobs" >"$dir/basetools.log" 2>&1
    # edksetup.sh reads unset variables.
    set +u
    # shellcheck disable=SC1091
    source ./edksetup.sh >/dev/null
    set -u
    build -q -n "$jobs" -a X64 -t GCC5 -b RELEASE -p OvmfPkg/AmdSev/AmdSevX64.dsc \
        -D SECURE_BOOT_ENABLE=FALSE >"$dir/build.log" 2>&1
)
fd="$build_root/$tree_name/Build/AmdSev/RELEASE_GCC5/FV/OVMF.fd"
[[ -s "$fd" ]] || die "build produced no $fd; see $dir/build.log"
cp "$fd" "$out.tmp"
mv "$out.tmp" "$out"
rm -rf "$build_root"
log "built $(sha256sum "$out" | cut -d' ' -f1)"
printf '%s\n' "$out"
