# shellcheck shell=bash
# Sourced (after scripts/lib.sh) by the image, boot, ovmf and reference scripts. Finds the Debian mirror this
# machine's apt already uses, so that no mirror is written into the repository: DAIT_DEBIAN_MIRROR and
# DAIT_DEBIAN_SECURITY_MIRROR override it.
#
#   debian_mirrors                  sets DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR, or fails
#   render_sources TEMPLATE OUT     writes OUT from TEMPLATE with @DEBIAN_MIRROR@ / @DEBIAN_SECURITY_MIRROR@ filled in
#   trixie_download DIR PKG=VERSION downloads one Debian trixie package into DIR/dl/ through a private apt
#                                   configuration kept in DIR (the machine's own apt configuration is left alone)
#                                   and prints the .deb's path
#   trixie_indices DIR              updates the same private apt configuration and prints the Packages indices it
#                                   fetched (signature-checked by apt), one ARCHIVE=FILE a line, ARCHIVE being
#                                   debian or debian-security (the archive roots of scripts/deb-lock.py)

# Prints "URI SUITE" for every deb source of the machine, deb822 and one-line formats alike.
_apt_uri_suites() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        awk '
            /^[[:space:]]*$/ { if (uri != "" && suites != "") { n = split(suites, s, " "); for (i = 1; i <= n; i++) print uri, s[i] }
                               uri = ""; suites = ""; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
            END { if (uri != "" && suites != "") { n = split(suites, s, " "); for (i = 1; i <= n; i++) print uri, s[i] } }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ } print $(i), $(i + 1) }' "$f"
    done
}

debian_mirrors() {
    DEBIAN_MIRROR="${DAIT_DEBIAN_MIRROR:-}"
    DEBIAN_SECURITY_MIRROR="${DAIT_DEBIAN_SECURITY_MIRROR:-}"
    local uri suite
    while read -r uri suite; do
        uri="${uri%/}"
        case "$suite" in
            */updates|*-security) [[ -n "$DEBIAN_SECURITY_MIRROR" ]] || DEBIAN_SECURITY_MIRROR="$uri" ;;
            *) [[ -n "$DEBIAN_MIRROR" ]] || DEBIAN_MIRROR="$uri" ;;
        esac
    done < <(_apt_uri_suites)
    if [[ -z "$DEBIAN_MIRROR" ]]; then
        log "no Debian mirror found in this machine's apt sources; set DAIT_DEBIAN_MIRROR"
        return 1
    fi
    # A machine without a security source: the archive's usual layout puts it beside the main archive.
    [[ -n "$DEBIAN_SECURITY_MIRROR" ]] || DEBIAN_SECURITY_MIRROR="$DEBIAN_MIRROR-security"
    export DEBIAN_MIRROR DEBIAN_SECURITY_MIRROR
}

render_sources() {
    local template="$1" out="$2"
    debian_mirrors || return 1
    mkdir -p "$(dirname "$out")"
    sed -e "s|@DEBIAN_SECURITY_MIRROR@|$DEBIAN_SECURITY_MIRROR|g" -e "s|@DEBIAN_MIRROR@|$DEBIAN_MIRROR|g" \
        -e "/^# Template:/d" "$template" >"$out.tmp"
    mv "$out.tmp" "$out"
}

# The private apt configuration of trixie_download and trixie_indices in DIR: sets _trixie_opts and updates.
_trixie_apt() {
    local dir="$1"
    debian_mirrors || return 1
    mkdir -p "$dir/lists/partial" "$dir/archives/partial" "$dir/etc/sources.list.d" "$dir/etc/preferences.d" \
        "$dir/dl"
    : >"$dir/etc/sources.list"
    cat >"$dir/etc/sources.list.d/trixie.sources" <<SOURCES
Types: deb
URIs: $DEBIAN_MIRROR
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $DEBIAN_SECURITY_MIRROR
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    _trixie_opts=(
        -o "Dir::Etc::SourceList=$dir/etc/sources.list"
        -o "Dir::Etc::SourceParts=$dir/etc/sources.list.d"
        -o "Dir::Etc::Preferences=$dir/etc/preferences"
        -o "Dir::Etc::PreferencesParts=$dir/etc/preferences.d"
        -o "Dir::State::Lists=$dir/lists"
        -o "Dir::Cache=$dir"
        -o "APT::Sandbox::User=root"
    )
    apt-get "${_trixie_opts[@]}" -qq update
}

trixie_indices() {
    local dir="$1" f archive
    _trixie_apt "$dir" || return 1
    # apt may keep its lists compressed (lz4, gz): apt-helper writes them out plain for the reader.
    mkdir -p "$dir/indices"
    for f in "$dir"/lists/*_binary-amd64_Packages*; do
        [[ -f "$f" ]] || continue
        archive=debian
        [[ "$(basename "$f")" == *_dists_trixie-security_* ]] && archive=debian-security
        local plain
        plain="$dir/indices/$(basename "${f%_Packages*}")_Packages"
        /usr/lib/apt/apt-helper cat-file "$f" >"$plain" || return 1
        printf '%s=%s\n' "$archive" "$plain"
    done
}

trixie_download() {
    local dir="$1" spec="$2"
    _trixie_apt "$dir" || return 1
    local opts=("${_trixie_opts[@]}")
    local name="${spec%%=*}" version="${spec#*=}"
    rm -f "$dir/dl/${name}_"*.deb
    (cd "$dir/dl" && apt-get "${opts[@]}" -qq download "$spec") || return 1
    # apt writes an epoch's colon as %3a in the file name; the version after the epoch is enough to find it.
    local deb
    deb="$(compgen -G "$dir/dl/${name}_*${version#*:}_*.deb" | head -n1)"
    [[ -n "$deb" ]] || return 1
    printf '%s\n' "$deb"
}
