# Sourced by the image and boot scripts. Finds the Debian mirror this machine's apt already uses, so that no
# mirror is written into the repository: DAIT_DEBIAN_MIRROR and DAIT_DEBIAN_SECURITY_MIRROR override it.
#
#   debian_mirrors                  sets DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR, or fails
#   render_sources TEMPLATE OUT     writes OUT from TEMPLATE with @DEBIAN_MIRROR@ / @DEBIAN_SECURITY_MIRROR@ filled in

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
        echo "no Debian mirror found in this machine's apt sources; set DAIT_DEBIAN_MIRROR" >&2
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
