#!/usr/bin/env bash
# Cuts the release of the current ImageVersion (image/mkosi.conf) into one directory that a verifier can rebuild
# the image from, and compare, after the Debian mirror has moved on (docs/RELEASING.md):
#   image/               every output of scripts/image.sh (the files directly in its output directory)
#   reference.json       measurements/reference/<ImageVersion>.json, first checked against the image
#                        (scripts/reference.sh --check: the release fails when they differ)
#   packages.lock        image/packages.lock, which the image was built from
#   debs/                every locked .deb, named as in the Debian pool: DAIT_DEB_ARCHIVE=<release>/debs
#   sources/             the other pinned inputs: llama-cpp-python's sdist (scripts/llama-server.sh), the model's
#                        wheel (scripts/image.sh), the edk2 source package and the AmdSev OVMF built from it
#                        (scripts/ovmf.sh)
#   COMMIT               the repository commit the release was cut from
#   SHA256SUMS           the sha256 of every file above, by relative path (`sha256sum -c SHA256SUMS`)
#
# Usage: scripts/release.sh [--image DIR] [--out DIR]
#   --image DIR   the output directory of scripts/image.sh (default image/mkosi.output)
#   --out DIR     the release directory, which must not exist yet (default target/release-<ImageVersion>)
# Environment: DAIT_CACHE_DIR (the caches scripts/image.sh, scripts/llama-server.sh and scripts/ovmf.sh fill).
#
# Exit codes: 0 written, 1 failed (the reference differs, an input is missing), 2 usage error.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

image_dir="image/mkosi.output"
version="$(image_version)"
out="target/release-$version"
while (($#)); do
    case "$1" in
        --image) image_dir="${2:?--image needs a directory}"; shift ;;
        --out) out="${2:?--out needs a directory}"; shift ;;
        -h|--help) print_help; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
    shift
done
umask 022
cache="$(cache_dir)"
lock="image/packages.lock"
name="$(image_name)"

[[ ! -e "$out" ]] || die "$out exists: remove it or pass another --out"
[[ -s "$image_dir/$name.efi" && -s "$image_dir/SHA256SUMS" ]] ||
    die "no built image in $image_dir: run scripts/image.sh"
(cd "$image_dir" && sha256sum --quiet -c SHA256SUMS) || die "$image_dir does not match its SHA256SUMS"
# The image came from this lock: scripts/image.sh stamps mkosi's cached trees with the lock they were built from.
[[ "$(cat image/mkosi.cache/packages.lock.id 2>/dev/null)" == "$(sha256sum "$lock" | cut -d' ' -f1)" ]] ||
    die "the image in $image_dir was not built from $lock: run scripts/image.sh"
git diff --quiet HEAD -- image scripts measurements ||
    log "warning: the checkout has uncommitted changes to the image's inputs; COMMIT names HEAD"

log "checking measurements/reference/$version.json against $image_dir"
scripts/reference.sh --check --image "$image_dir" || die "the reference differs from the image: regenerate it"

# Hard links where the file systems allow (the release is large and every file in it is read-only input).
put() { ln "$1" "$2" 2>/dev/null || cp "$1" "$2"; }

mkdir -p "$out.tmp/image" "$out.tmp/debs" "$out.tmp/sources"
trap 'rm -rf "$out.tmp"' EXIT
while read -r _ file; do put "$image_dir/$file" "$out.tmp/image/$file"; done <"$image_dir/SHA256SUMS"
cp "$image_dir/SHA256SUMS" "$out.tmp/image/SHA256SUMS"
cp "measurements/reference/$version.json" "$out.tmp/reference.json"
cp "$lock" "$out.tmp/packages.lock"
python3 scripts/deb-lock.py fetch "$lock" --cache "$cache/debs" >/dev/null 2>&1 ||
    die "not every locked .deb is in $cache/debs: run scripts/image.sh"
while read -r pkg _arch _version sha _archive pool _trees; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    put "$cache/debs/$sha.deb" "$out.tmp/debs/${pool##*/}"
done <"$lock"

sdist="$(sed -n 's/^SDIST="\(.*\)"$/\1/p' scripts/llama-server.sh)"
llama_version="$(sed -n 's/^LLAMA_CPP_PYTHON_VERSION="\(.*\)"$/\1/p' scripts/llama-server.sh)"
sdist="${sdist//\$LLAMA_CPP_PYTHON_VERSION/$llama_version}"
wheel="$(sed -n 's/^model_wheel="\(.*\)"$/\1/p' scripts/image.sh)"
ovmf="$(scripts/ovmf.sh --cached)" || die "no cached AmdSev OVMF: run scripts/ovmf.sh"
sources=("$cache/llama-server/$sdist" "$cache/model/$wheel" "$ovmf")
sources+=("$(dirname "$ovmf")"/src/edk2_*.orig.tar.* "$(dirname "$ovmf")"/src/edk2_*.debian.tar.*)
for f in "${sources[@]}"; do
    [[ -s "$f" ]] || die "missing $f: build the image and the firmware first"
    put "$f" "$out.tmp/sources/${f##*/}"
done
compgen -G "$(dirname "$ovmf")/src/edk2_*.dsc" >/dev/null && cp "$(dirname "$ovmf")"/src/edk2_*.dsc "$out.tmp/sources/"

git rev-parse HEAD >"$out.tmp/COMMIT"
(cd "$out.tmp" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -r sha256sum >../SHA256SUMS.part)
mv "$out.tmp/../SHA256SUMS.part" "$out.tmp/SHA256SUMS"
mv "$out.tmp" "$out"
trap - EXIT
log "release $version in $out: $(find "$out" -type f | wc -l) files, $(du -sh --apparent-size "$out" | cut -f1)"
printf '%s\n' "$out"
