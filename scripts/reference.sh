#!/usr/bin/env bash
# Writes the reference measurements of a built image, measurements/reference/<ImageVersion>.json, with
# `dait-measure reference` (see docs/MEASUREMENTS.md, "Release 0.1.0"), or with --check regenerates them into a
# temporary file and compares that with the committed one.
#
# Usage: scripts/reference.sh [--image DIR] [--check] [--rtmr0 SHAPE=HEX]... [--rtmr1 HEX] [--rtmr2 HEX]
#   --image DIR        the output directory of scripts/image.sh (default image/mkosi.output)
#   --check            do not write: regenerate into a temporary file, print every differing field, exit 1 on a
#                      difference
#   --rtmr0 SHAPE=HEX  RTMR0 of a TDX shape, replayed from the CCEL log of a boot of this image on that shape
#                      (`dait-measure replay --event-log /sys/firmware/acpi/tables/data/CCEL`). The TDX section and
#                      its shapes are written only for shapes given here; without any, the file has no TDX section
#                      and the predicted MRTD/RTMR1/RTMR2 are printed for reference only.
#   --rtmr1/--rtmr2 HEX  RTMR1/RTMR2 from the same replayed boot, replacing the direct-boot predictions (systemd-stub
#                      measures the UKI's sections itself; see docs/MEASUREMENTS.md)
# Environment:
#   DAIT_REFERENCE_AGENT  the dait-host binary whose `runtime-events` gives the runtime events (default: the
#                         image's own agent, DIR/<name>_<version>.dait-host)
#   DAIT_CACHE_DIR        cache root for the firmware (default ${XDG_CACHE_HOME:-$HOME/.cache}/dait)
#   DAIT_TDVF_VERSION     Debian `ovmf` package version whose OVMF.fd is the TDX firmware (default pinned below;
#                         image/packages.lock locks its .deb, taken from scripts/image.sh's .deb cache when there)
#   DAIT_REFERENCE_SNP    build (default): the SNP launch digests need the AmdSev OVMF, which scripts/ovmf.sh builds
#                         once (~10-25 min) and caches; auto: use it when cached, otherwise (--check only) compare
#                         every field but the SNP ones (the AmdSev firmware, the SNP shapes and digests) and print
#                         `skipped: no cached AmdSev OVMF`: what CI does on a fresh machine
#
# Exit codes: 0 written / unchanged, 1 --check found a difference, 2 usage error or missing input.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
# Every error here is a usage error or a missing input (exit 2); exit 1 means --check found a difference.
die_status=2

image_dir="image/mkosi.output"
check=0
rtmr0=()
pinned=()
while (($#)); do
    case "$1" in
        --image) image_dir="${2:?--image needs a directory}"; shift ;;
        --check) check=1 ;;
        --rtmr0) rtmr0+=("${2:?--rtmr0 needs SHAPE=HEX}"); shift ;;
        --rtmr1|--rtmr2) pinned+=("$1" "${2:?$1 needs HEX}"); shift ;;
        -h|--help) print_help; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
    shift
done

# --- the image's artefacts ------------------------------------------------------------------------------------
[[ -d "$image_dir" ]] || die "no image output at $image_dir: run scripts/image.sh (just image) first"
version="$(image_version)"
base="$image_dir/$(image_name)"
for suffix in efi cmdline roothash manifest dait-host engine.env model.gguf; do
    [[ -s "$base.$suffix" ]] || die "missing $base.$suffix: run scripts/image.sh (just image) first"
done
if [[ -s "$image_dir/SHA256SUMS" ]]; then
    (cd "$image_dir" && sha256sum --quiet --ignore-missing -c SHA256SUMS) >&2 \
        || die "$image_dir does not match its SHA256SUMS"
fi
# The command line the UKI carries (its .cmdline section, written out by mkosi), without a trailing newline.
cmdline="$(cat "$base.cmdline")"
cmdline="${cmdline%$'\n'}"
roothash="$(tr -d '[:space:]' <"$base.roothash")"
[[ "$cmdline" == *"roothash=$roothash"* ]] || die "the command line does not carry roothash=$roothash"
# The same bytes as the UKI's own .cmdline section (which ends in a NUL), where binutils can read it.
if command -v objcopy >/dev/null; then
    section="$(objcopy -O binary --only-section=.cmdline "$base.efi" /dev/stdout | tr -d '\0')"
    [[ "$section" == "$cmdline" ]] || die "$base.cmdline differs from the .cmdline section of $base.efi"
fi

# --- firmware -------------------------------------------------------------------------------------------------
cache="$(cache_dir)"
# SNP: the AmdSev OVMF with the kernel-hashes table, built once by scripts/ovmf.sh.
snp_mode="${DAIT_REFERENCE_SNP:-build}"
case "$snp_mode" in
    build) ovmf_amdsev="$(scripts/ovmf.sh)" ;;
    auto)
        ((check)) || die "DAIT_REFERENCE_SNP=auto is for --check only: a written reference needs the SNP digests"
        ovmf_amdsev="$(scripts/ovmf.sh --cached)" || ovmf_amdsev=""
        ;;
    *) die "DAIT_REFERENCE_SNP must be build or auto, not $snp_mode" ;;
esac
skip_snp=0
if [[ -z "$ovmf_amdsev" ]]; then
    skip_snp=1
    echo "skipped: no cached AmdSev OVMF: the SNP launch digests and the AmdSev firmware are not compared" \
        "(scripts/ovmf.sh builds it once, ~10-25 min; every other field is)" >&2
fi
# TDX: Debian trixie's OVMF.fd (the 4 MiB combined image, which carries the TDVF metadata; OVMF_CODE_4M.fd alone is
# a split image without it). The package version is pinned so the reference is reproducible; the .deb comes
# through a private apt configuration (the system's apt sources are left alone) into the cache.
tdvf_version="${DAIT_TDVF_VERSION:-2025.02-8+deb13u1}"
tdvf_dir="$cache/tdvf-trixie/$tdvf_version"
tdvf="$tdvf_dir/OVMF.fd"
if [[ ! -s "$tdvf" ]]; then
    # The locked .deb when scripts/image.sh has fetched it (sha256-checked), else the mirror's.
    if ! { grep -q "^ovmf all $tdvf_version " image/packages.lock 2>/dev/null &&
        deb="$(python3 scripts/deb-lock.py path image/packages.lock ovmf --cache "$cache/debs" 2>/dev/null)"; }; then
        command -v apt-get >/dev/null || die "apt-get is needed to fetch the ovmf package"
        log "fetching Debian's ovmf $tdvf_version"
        # shellcheck source=scripts/debian-mirror.sh
        source scripts/debian-mirror.sh
        deb="$(trixie_download "$cache/tdvf-trixie/apt" "ovmf=$tdvf_version")" \
            || die "ovmf $tdvf_version is not in the mirror's trixie (set DAIT_TDVF_VERSION to one that is)"
    fi
    rm -rf "$tdvf_dir.tmp"
    mkdir -p "${tdvf_dir%/*}"
    dpkg-deb -x "$deb" "$tdvf_dir.tmp"
    mkdir -p "$tdvf_dir"
    install -m 0644 "$tdvf_dir.tmp/usr/share/ovmf/OVMF.fd" "$tdvf"
    rm -rf "$tdvf_dir.tmp"
fi

# --- tools ----------------------------------------------------------------------------------------------------
cargo build -q -p dait-measure --features cli --locked
measure="$repo/target/debug/dait-measure"
agent="${DAIT_REFERENCE_AGENT:-$base.dait-host}"
[[ -x "$agent" ]] || die "no agent binary at $agent"

# --- runtime events -------------------------------------------------------------------------------------------
# The image's agent, with the environment its unit gives it: the profile's host.env and the image's engine.env
# (both EnvironmentFile=; engine.env is generated by scripts/image.sh, which copies it to DIR/<name>.engine.env)
# plus the unit's own settings. Nothing else from this shell reaches it (env -i), so the events are the image's.
# The one change: DAIT_MODEL_PATH names the model's path inside the guest, so it is pointed at the copy of the
# same file in DIR (<name>.model.gguf); the agent measures the file's content, not its path.
host_env="image/mkosi.conf.d/10-simulated/extra/usr/lib/dait/host.env"
engine_env="$base.engine.env"
unit="image/mkosi.extra/usr/lib/systemd/system/dait-host.service"
[[ -f "$host_env" && -f "$unit" ]] || die "missing $host_env or $unit"
agent_env=()
while IFS= read -r line; do
    [[ -z "$line" || "$line" == \#* ]] && continue
    [[ "$line" == DAIT_MODEL_PATH=* ]] && line="DAIT_MODEL_PATH=$base.model.gguf"
    agent_env+=("$line")
done < <(cat "$host_env" "$engine_env"; sed -n 's/^Environment=//p' "$unit")
# The unit's ExecStart flags are the ones `serve` gets; the measured events depend on none of --listen/--upstream,
# but they are passed the same way so the configuration validates as it does in the image.
# shellcheck disable=SC2016  # the variables are the agent's environment, expanded by the inner bash
events="$(env -i "${agent_env[@]}" bash -c '"$0" runtime-events --tee "$DAIT_TEE_KIND" --state-dir "$DAIT_STATE_DIR" \
    --listen "$DAIT_LISTEN" --upstream "$DAIT_UPSTREAM"' "$agent")" \
    || die "$agent runtime-events failed (an agent built before the subcommand existed? set DAIT_REFERENCE_AGENT)"
event_args=()
while IFS= read -r line; do
    [[ -n "$line" ]] && event_args+=(--runtime-event "$line")
done <<<"$events"
((${#event_args[@]})) || die "the agent printed no runtime events"

# --- VM shapes ------------------------------------------------------------------------------------------------
# name,platform,vcpus,cpu_type,memory_mib,firmware. The SNP launch digest depends on vcpus and cpu_type (one VMSA
# per vCPU, the CPU model's signature in it), not on memory.
# shellcheck disable=SC2054  # each element is one comma-separated shape
shapes=(
    snp-milan-8,snp,8,EPYC-Milan,32768,ovmf-amdsev
    snp-genoa-16,snp,16,EPYC-Genoa,65536,ovmf-amdsev
)
((skip_snp)) && shapes=()
# TDX shapes: only with a replayed RTMR0 (see the header).
((${#pinned[@]} == 0 || ${#rtmr0[@]} > 0)) || die "--rtmr1/--rtmr2 need the --rtmr0 of the same boot"
tdx_shape=tdx-16,tdx,16,host,65536,tdvf
tdx_args=()
for pair in "${rtmr0[@]}"; do
    name="${pair%%=*}"
    [[ "$name" == "${tdx_shape%%,*}" ]] || die "--rtmr0 $pair: the TDX shape is ${tdx_shape%%,*}"
    shapes+=("$tdx_shape")
    tdx_args+=(--rtmr0 "$pair")
done
# Without the SNP shapes and no TDX one given, `dait-measure reference` (which wants a shape) gets the TDX shape with
# a placeholder RTMR0; its TDX section and shape are dropped from the regenerated file before comparing.
tdx_placeholder=0
if ((${#shapes[@]} == 0)); then
    shapes+=("$tdx_shape")
    tdx_args+=(--rtmr0 "${tdx_shape%%,*}=$(printf '0%.0s' {1..96})")
    tdx_placeholder=1
fi

# --- boot as measured -------------------------------------------------------------------------------------------
# Direct boot of the UKI: QEMU -kernel <uki> -append "<the UKI's own command line>", no -initrd (the UKI carries
# its initrd). SNP: kernel-hashes=on puts SHA-256 of the UKI, of an empty initrd and of the command line (with
# NUL) into the launch digest; the command line passed is the one the UKI embeds, so whatever systemd-stub picks
# (its .cmdline section, or the load options when Secure Boot is off) the kernel gets the measured one.
# TDX: RTMR1 gets the UKI's Authenticode hash, RTMR2 the same command line.
boot_args=(--kernel "$base.efi" --cmdline "$cmdline" --uki "$base.efi")
firmware_args=(--firmware "tdvf=$tdvf")
((skip_snp)) || firmware_args=(--firmware "ovmf-amdsev=$ovmf_amdsev" "${firmware_args[@]}")
shape_args=()
for shape in "${shapes[@]}"; do shape_args+=(--shape "$shape"); done

log "TDX predictions for $base.efi (firmware: Debian ovmf $tdvf_version):"
"$measure" tdx --firmware "$tdvf" "${boot_args[@]:0:4}" >&2

out="measurements/reference/$version.json"
target="$out"
if ((check)); then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    target="$tmp/$version.json"
fi
"$measure" reference --release "$version" "${boot_args[@]}" "${firmware_args[@]}" "${shape_args[@]}" \
    "${tdx_args[@]}" "${pinned[@]}" --verity-root-hash "$roothash" --package-manifest "$base.manifest" \
    --agent "$base.dait-host" "${event_args[@]}" --out "$target"

if ((check)); then
    [[ -f "$out" ]] || { log "no committed $out"; exit 1; }
    # One line per differing field: its JSON path, the committed value, the regenerated one.
    if python3 - "$out" "$target" "$skip_snp" "$tdx_placeholder" <<'PY'
import json, sys

def without_snp(doc):
    """The reference less what needs the AmdSev OVMF: its firmware entry, the SNP shapes, the SNP section."""
    doc.pop("snp", None)
    artefacts = doc.get("artefacts", {})
    artefacts["firmware"] = [f for f in artefacts.get("firmware", []) if f.get("kind") != "ovmf-amdsev"]
    doc["shapes"] = [s for s in doc.get("shapes", []) if s.get("platform") != "snp"]
    return doc

def flat(value, path, into):
    if isinstance(value, dict):
        for key, item in value.items():
            flat(item, f"{path}.{key}" if path else key, into)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            flat(item, f"{path}[{index}]", into)
    else:
        into[path] = value
    return into

committed, regenerated = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
if sys.argv[3] == "1":
    committed, regenerated = without_snp(committed), without_snp(regenerated)
if sys.argv[4] == "1":
    regenerated.pop("tdx", None)
    regenerated["shapes"] = [s for s in regenerated["shapes"] if s.get("platform") != "tdx"]
committed, regenerated = flat(committed, "", {}), flat(regenerated, "", {})
differ = False
for path in sorted(committed.keys() | regenerated.keys()):
    old, new = committed.get(path, "(absent)"), regenerated.get(path, "(absent)")
    if old != new:
        differ = True
        print(f"MISMATCH {path}: committed {json.dumps(old)}, image gives {json.dumps(new)}")
sys.exit(1 if differ else 0)
PY
    then
        log "$out matches $image_dir"
        exit 0
    fi
    log "$out differs from what $image_dir gives"
    exit 1
fi
log "wrote $out"
