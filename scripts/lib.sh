# shellcheck shell=bash
# The helpers the repository's bash scripts share. Sourced, never run:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
#   repo                    the repository root (absolute); scripts `cd "$repo"` themselves where they need to
#   log MSG...              "[NAME] MSG" on stderr, NAME being the script's file name without .sh
#   die MSG...              log "error: MSG" and exit with $die_status (1; a script may set another)
#   usage_error MSG...      log MSG and exit 2
#   print_help              print the script's header comment (every comment line from line 2 to the first
#                           line that is not a comment), for -h/--help
#   apt_install [-t RELEASE] PKG...
#                           install the Debian packages that are not installed yet, as root or with `sudo -n`
#                           (-t: from that release; a package installed from another one is left as it is);
#                           runs `apt-get update` once per script
#   cache_dir               print the cache root: DAIT_CACHE_DIR, default ${XDG_CACHE_HOME:-$HOME/.cache}/dait
#   free_port               print a free TCP port on 127.0.0.1
#   mkosi_setting KEY       print KEY's value in image/mkosi.conf (fails when it has none)
#   image_version           the image version, ImageVersion in image/mkosi.conf (0.3.0)
#   image_name              the file name stem of every output of scripts/image.sh, <ImageId>_<ImageVersion>
#                           (dait_0.3.0): image/mkosi.output/dait_0.3.0.raw, .efi, .roothash, ...
#   output_sums DIR         sha256sum of every file directly in DIR except logs and SHA256SUMS, sorted by name

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die_status=1
_lib_name="$(basename "$0" .sh)"
_lib_apt_updated=0

log() { printf '[%s] %s\n' "$_lib_name" "$*" >&2; }

die() {
    log "error: $*"
    exit "$die_status"
}

usage_error() {
    log "$*"
    exit 2
}

print_help() { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; }

apt_install() {
    local release=()
    if [[ "${1:-}" == -t ]]; then
        release=(-t "${2:?apt_install -t needs a release}")
        shift 2
    fi
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null 2>&1 || die "missing Debian packages ${missing[*]} and no apt-get to install them"
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "missing Debian packages ${missing[*]}: install them as root"
        sudo=(sudo -n)
    fi
    log "installing Debian packages: ${missing[*]}"
    if ((!_lib_apt_updated)); then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        _lib_apt_updated=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${release[@]}" \
        "${missing[@]}" >/dev/null
}

cache_dir() { printf '%s\n' "${DAIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dait}"; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

mkosi_setting() {
    local value
    value="$(sed -n "s/^$1=//p" "$repo/image/mkosi.conf" | head -n1)"
    [[ -n "$value" ]] || die "image/mkosi.conf sets no $1"
    printf '%s\n' "$value"
}

image_version() { mkosi_setting ImageVersion; }

image_name() {
    local id version
    id="$(mkosi_setting ImageId)" && version="$(mkosi_setting ImageVersion)" || return 1
    printf '%s_%s\n' "$id" "$version"
}

output_sums() {
    (cd "$1" && find . -maxdepth 1 -type f ! -name '*.log' ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort |
        xargs -r sha256sum)
}
