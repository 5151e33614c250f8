#!/usr/bin/env bash
# Boots the dait guest image under QEMU (UEFI, OVMF) with the agent in simulated-TEE mode, forwards the agent's
# port to 127.0.0.1 only, waits (bounded) until the agent serves, fetches the attestation endpoint, has the tenant
# CLI verify the evidence (pinning the simulated root the guest printed) and run one encrypted, replayable chat
# (the image's engine is declared deterministic) whose receipt it verifies, `deterministic` and seed included.
# The chat is answered by the engine inside the guest. The guest's state directory is a state volume (an ext4
# disk labelled dait-state, made here): after the chat the guest is cut off and booted again with it, and the new
# boot's agent must serve the chat's receipt again, byte for byte (GET /v1/receipts). QEMU is stopped on every exit.
# The guest has a TPM 2.0 (swtpm, SHA-256 and SHA-384 banks; stopped on every exit like QEMU): the firmware and
# the UKI's stub measure the boot into it, the development image prints the firmware's TPM event log on the
# console, and `dait-measure check-tpm-log` replays it and compares the RTMR1/RTMR2 that TDVF would build from it
# with the values predicted from the UKI (docs/MEASUREMENTS.md, "The UKI's measurements under QEMU"); a
# difference fails the boot test.
# When the image version (ImageVersion in image/mkosi.conf) has a published reference file,
# measurements/reference/<version>.json, the tenant checks the evidence against it (dait-tenant --policy): the
# runtime events the agent measured (model, engine, agent configuration) must be the reference's.
#
# Usage: scripts/boot.sh [--image DIR]
#   --image DIR   the output directory of scripts/image.sh (default image/mkosi.output)
# Environment:
#   DAIT_BOOT_ACCEL    tcg (default) or kvm. KVM is faster where the host allows it to run a stock kernel;
#                      TCG works everywhere.
#   DAIT_BOOT_TIMEOUT  seconds to wait for the agent to serve (default 600: under TCG the engine loads its model
#                      and the agent hashes it before serving)
#   DAIT_BOOT_CHAT_TIMEOUT  seconds the tenant CLI allows the chat (default 1200: under TCG the guest's engine
#                      evaluates the prompt at about 5 s per token; the chat sends a short system message so the
#                      template's longer default one is not evaluated)
#   DAIT_BOOT_MEMORY   guest memory (default 2048M)
#   DAIT_BOOT_KEEP     if set, a directory to copy the console log and fetched files into
#   DAIT_BOOT_REFERENCE  reference file for dait-tenant --policy instead of the image version's; set and empty:
#                      none (the default policy, which pins no measurements; the chat then needs
#                      dait-tenant --dangerous-any-measurement, which the script passes)
#
# Launch binding (docs/PROTOCOL.md §10.1): with a reference file the script prints the values that bind the
# reference's runtime configuration at launch (`dait-measure launch-binding --reference`) and what a TDX or SEV-SNP
# host passes to QEMU with them. It does not pass them to this guest: the development image's agent runs the
# simulated TEE with its simulated RTMR3, and handing it a launch value would change the image's measured
# configuration. A host operator launches a guest whose kernel cannot extend RTMR3 with
#   TDX:     -object tdx-guest,id=tdx0,mrconfigid=<base64 of the 48-byte mrconfigid>
#   SEV-SNP: -object sev-snp-guest,id=sev0,host-data=<base64 of the 32-byte host_data>
# (QEMU takes both as base64; the script prints them that way too), and the agent refuses to start unless its
# runtime configuration hashes to the value.
#
# The image's agent reaches its engine, llama-server with the model on the image's verity root, at 127.0.0.1:8000
# inside the guest. The guest has no route out (QEMU user networking, restrict=on); the only forward is the
# agent's port, from the host's loopback in. No plaintext leaves the guest.
#
# Needs qemu-system-x86_64, OVMF and mkfs.ext4 (installed when missing) and swtpm with swtpm_setup
# (scripts/install-tools.sh).
#
# Exit codes: 0 the agent served and every check passed, 1 a check failed or it never served, 2 usage error.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

caller_dir="$PWD"
cd "$repo"

image_dir="$repo/image/mkosi.output"
while (($#)); do
    case "$1" in
        --image) image_dir="${2:?--image needs a directory}"; shift ;;
        -h|--help) print_help; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
    shift
done

accel="${DAIT_BOOT_ACCEL:-tcg}"
timeout_s="${DAIT_BOOT_TIMEOUT:-600}"
chat_timeout_s="${DAIT_BOOT_CHAT_TIMEOUT:-1200}"
memory="${DAIT_BOOT_MEMORY:-2048M}"
case "$accel" in tcg|kvm) ;; *) usage_error "DAIT_BOOT_ACCEL must be tcg or kvm" ;; esac

# --- the reference measurements the tenant checks against ---------------------------------------------------
image_version="$(image_version)"
if [[ -n "${DAIT_BOOT_REFERENCE+set}" ]]; then
    reference="$DAIT_BOOT_REFERENCE"
    if [[ -n "$reference" ]]; then
        [[ "$reference" == /* ]] || reference="$caller_dir/$reference"
        [[ -f "$reference" ]] || usage_error "DAIT_BOOT_REFERENCE: no file at $reference"
    fi
else
    reference="measurements/reference/$image_version.json"
    [[ -f "$reference" ]] || reference=""
fi
policy_args=()
if [[ -n "$reference" ]]; then
    policy_args=(--policy "$reference")
    log "reference measurements: $reference (image version $image_version)"
else
    # Nothing pinned: the tenant sends a prompt only when told to (receipts are still checked against the
    # model, weights and engine build the evidence attests).
    policy_args=(--dangerous-any-measurement)
    log "no reference measurements (image version $image_version): the tenant pins no measurements"
fi

if [[ -n "$reference" ]]; then
    cargo build --locked --quiet -p dait-measure --features cli
    while read -r field value; do
        # shellcheck disable=SC2001,SC2059 # the format is the value's bytes as \xNN escapes
        b64="$(printf "$(sed 's/../\\x&/g' <<<"$value")" | base64 -w0)"
        case "$field" in
            mrconfigid) log "launch binding (TDX): -object tdx-guest,id=tdx0,mrconfigid=$b64 (hex $value)" ;;
            host_data) log "launch binding (SEV-SNP): -object sev-snp-guest,id=sev0,host-data=$b64 (hex $value)" ;;
        esac
    done < <("$repo/target/debug/dait-measure" launch-binding --reference "$reference")
fi

disk="$image_dir/$(image_name).raw"
[[ -f "$disk" ]] || die "no image at $disk: run scripts/image.sh first"

# --- QEMU and OVMF ------------------------------------------------------------------------------------------
# Debian bookworm's backports carry a QEMU and OVMF recent enough for the trixie kernel; on a newer Debian the
# release's own packages are used.
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
if ! command -v qemu-system-x86_64 >/dev/null || [[ ! -f "$ovmf_code" ]]; then
    target=()
    if grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release; then
        if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            log "adding the bookworm-backports repository (not preferred over bookworm unless asked for)"
            # shellcheck source=scripts/debian-mirror.sh
            source "$repo/scripts/debian-mirror.sh"
            debian_mirrors || die "no Debian mirror configured"
            cat >/etc/apt/sources.list.d/bookworm-backports.sources <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        fi
        target=(-t bookworm-backports)
    fi
    apt_install "${target[@]}" qemu-system-x86 ovmf
fi

{ command -v swtpm && command -v swtpm_setup; } >/dev/null ||
    die "swtpm and swtpm_setup are needed for the guest's TPM (Debian packages swtpm, swtpm-tools; scripts/install-tools.sh)"

work="$(mktemp -d)"
qemu_pid=""
swtpm_pid=""
stop_process() {
    local pid="$1"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    stop_process "$qemu_pid"
    stop_process "$swtpm_pid"
    if [[ -n "${DAIT_BOOT_KEEP:-}" ]]; then
        { mkdir -p "$DAIT_BOOT_KEEP" && cp -r "$work"/. "$DAIT_BOOT_KEEP"/; } 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT INT TERM

# --- the guest's TPM -------------------------------------------------------------------------------------------
# A fresh swtpm state per boot, manufactured with the SHA-256 and SHA-384 PCR banks active (the SHA-384 digests
# are the ones TDVF extends into the RTMRs), served on a UNIX socket QEMU connects to.
start_swtpm() {
    rm -rf "$work/tpm"
    mkdir -p "$work/tpm"
    swtpm_setup --tpm2 --tpmstate "$work/tpm" --pcr-banks sha256,sha384 --overwrite >"$work/swtpm-setup.log" 2>&1 ||
        { cat "$work/swtpm-setup.log" >&2; die "swtpm_setup failed"; }
    swtpm socket --tpm2 --tpmstate "dir=$work/tpm" --ctrl "type=unixio,path=$work/tpm/swtpm.sock" \
        --log "file=$work/swtpm.log" --terminate </dev/null >/dev/null 2>&1 &
    swtpm_pid=$!
    for _ in $(seq 100); do [[ -S "$work/tpm/swtpm.sock" ]] && break; sleep 0.1; done
    [[ -S "$work/tpm/swtpm.sock" ]] || die "swtpm did not create its socket within 10 s"
}

# --- the state volume ---------------------------------------------------------------------------------------
# The agent's state directory on a disk of its own (docs/IMAGE.md, "The state volume"): ext4 labelled dait-state,
# made here as a host operator makes it. The guest is stopped and booted again with it below.
mkfs_ext4="$(command -v mkfs.ext4 || echo /sbin/mkfs.ext4)"
[[ -x "$mkfs_ext4" ]] || { apt_install e2fsprogs; mkfs_ext4="$(command -v mkfs.ext4 || echo /sbin/mkfs.ext4)"; }
truncate -s 64M "$work/state.img"
"$mkfs_ext4" -q -F -L dait-state "$work/state.img" || die "mkfs.ext4 failed for the state volume"

# --- boot -----------------------------------------------------------------------------------------------------
accel_args=(-accel tcg)
cpu=max
if [[ "$accel" == kvm ]]; then accel_args=(-accel kvm); cpu=host; fi
cp "$ovmf_vars" "$work/vars.fd"
# Boots the guest with its console in $1 and waits (bounded) until the agent serves; sets port, base, console
# and boot_ms.
boot_guest() {
    console="$1"
    port="$(free_port)"
    start_swtpm
    log "booting $disk ($accel, $memory); agent port 8443 -> 127.0.0.1:$port"
    # The NIC runs without its option ROM (romfile=): OVMF would load the ROM's UEFI driver and measure it into
    # PCR 2, a device-model detail that no prediction from the image covers (a TD host should leave it out too).
    local start_ns end_ns deadline served=0
    start_ns=$(date +%s%N)
    qemu-system-x86_64 \
        -machine q35,smm=off "${accel_args[@]}" -cpu "$cpu" -smp 2 -m "$memory" \
        -nodefaults -no-user-config -display none -monitor none \
        -serial "file:$console" \
        -drive "if=pflash,format=raw,unit=0,readonly=on,file=$ovmf_code" \
        -drive "if=pflash,format=raw,unit=1,file=$work/vars.fd" \
        -drive "if=virtio,format=raw,file=$disk,snapshot=on" \
        -drive "if=virtio,format=raw,file=$work/state.img" \
        -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:8443" \
        -device virtio-net-pci,netdev=n0,romfile= \
        -device virtio-rng-pci \
        -chardev "socket,id=tpmchr,path=$work/tpm/swtpm.sock" \
        -tpmdev emulator,id=tpm0,chardev=tpmchr \
        -device tpm-crb,tpmdev=tpm0 \
        </dev/null >"$work/qemu.log" 2>&1 &
    qemu_pid=$!
    base="https://127.0.0.1:$port"
    deadline=$(($(date +%s) + timeout_s))
    while (($(date +%s) < deadline)); do
        kill -0 "$qemu_pid" 2>/dev/null || { cat "$work/qemu.log" >&2; tail -n 40 "$console" >&2; die "QEMU exited"; }
        if curl -ksf --max-time 5 "$base/healthz" -o /dev/null; then served=1; break; fi
        sleep 1
    done
    if ((!served)); then
        tail -n 60 "$console" >&2
        die "the agent did not serve within ${timeout_s} s"
    fi
    end_ns=$(date +%s%N)
    boot_ms=$(((end_ns - start_ns) / 1000000))
    log "agent serving after ${boot_ms} ms (QEMU start to first /healthz 200, $accel)"
}
boot_guest "$work/console.log"

# --- the UKI's measurements: the firmware's TPM event log against the prediction ------------------------------
# The development image prints the log once (early in the boot; wait at most 60 s more for it): base64 lines,
# each prefixed "dait-tpm-log: " (console output from others may come in between or before the prefix), between
# a "begin" and an "end sha256 <hex>" line.
tpm_lines() { grep -ao 'dait-tpm-log: .*' "$console" | tr -d '\r' | cut -d' ' -f2- || true; }
for _ in $(seq 60); do tpm_lines | grep -q '^end ' && break; sleep 1; done
tpm_log_sha="$(tpm_lines | sed -n 's/^end sha256 \([0-9a-f]\{64\}\)$/\1/p' | tail -n1)"
[[ -n "$tpm_log_sha" ]] || die "no TPM event log on the guest console (dait-tpm-log.service)"
tpm_lines | sed -n '/^begin /,/^end /p' | sed '1d;$d' | base64 -d >"$work/tpm-eventlog.bin" 2>/dev/null ||
    die "the TPM event log on the console is not base64"
[[ "$(sha256sum "$work/tpm-eventlog.bin" | cut -c1-64)" == "$tpm_log_sha" ]] ||
    die "the TPM event log read from the console does not have the sha256 the guest printed"
log "TPM event log: $(stat -c %s "$work/tpm-eventlog.bin") bytes, sha256 $tpm_log_sha"
cargo build --locked --quiet -p dait-measure --features cli
uki="$image_dir/$(image_name).efi"
[[ -f "$uki" ]] || die "no UKI at $uki"
"$repo/target/debug/dait-measure" check-tpm-log --event-log "$work/tpm-eventlog.bin" --uki "$uki" --disk "$disk" \
    --events >"$work/tpm-check.out" 2>&1 ||
    { cat "$work/tpm-check.out" >&2; die "the UKI's measurements in the TPM event log differ from the prediction"; }
grep -E '^(rtmr|ok|separators)' "$work/tpm-check.out" | sed 's/^/    /' >&2
log "TPM event log: RTMR1 and RTMR2 folded from it are the ones predicted for $(basename "$uki")"

# The simulated platform root the guest created at boot (printed on its console by the development image).
sim_root="$(grep -ao 'dait-sim-root.pub: [0-9a-f]*' "$console" | tail -n1 | cut -d' ' -f2 || true)"
[[ "$sim_root" =~ ^04[0-9a-f]{128}$ ]] || die "no simulated root public key on the guest console"
printf '%s\n' "$sim_root" >"$work/sim-root.pub"
log "simulated platform root: $sim_root"

# --- attestation ----------------------------------------------------------------------------------------------
nonce="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
code="$(curl -ks --max-time 60 -o "$work/bundle.bin" -w '%{http_code} %{content_type}' \
    "$base/v1/attestation?nonce=$nonce")"
[[ "$code" == "200 application/vnd.dait.bundle"* ]] || die "attestation endpoint answered '$code'"
[[ -s "$work/bundle.bin" ]] || die "empty evidence bundle"
log "attestation bundle: $(stat -c %s "$work/bundle.bin") bytes, sha256 $(sha256sum "$work/bundle.bin" | cut -c1-64)"

# --- the tenant CLI: verify the evidence, then one encrypted chat whose receipt it verifies --------------------
log "building dait-tenant"
cargo build --locked --quiet -p dait-tenant --bin dait-tenant
tenant="$repo/target/debug/dait-tenant"
"$tenant" verify --host "$base" "${policy_args[@]}" --dangerous-allow-simulated "$work/sim-root.pub" \
    >"$work/verify.out" 2>&1 ||
    { cat "$work/verify.out" >&2; die "dait-tenant rejected the evidence (reference: ${reference:-none})"; }
log "dait-tenant verify: ok (reference: ${reference:-none})"
sed 's/^/    /' "$work/verify.out" >&2
chat_start=$(date +%s%N)
"$tenant" chat --host "$base" "${policy_args[@]}" --dangerous-allow-simulated "$work/sim-root.pub" \
    --wallet-key "$work/wallet.key" --state-dir "$work/tenant" --max-tokens 8 --timeout "$chat_timeout_s" \
    --replayable --system "Be brief." "Say hello." >"$work/chat.out" 2>&1 ||
    { cat "$work/chat.out" >&2; die "the encrypted chat or its receipt check failed"; }
log "dait-tenant chat: ok, replayable, receipt verified ($((($(date +%s%N) - chat_start) / 1000000)) ms)"
sed 's/^/    /' "$work/chat.out" >&2

# --- what the guest reported ----------------------------------------------------------------------------------
# The development image prints the resident memory of the agent and the engine every 30 s; wait (at most 40 s)
# for a report taken after the chat.
rss_count() { grep -ac 'dait-host VmRSS:' "$console" || true; }
before="$(rss_count)"
for _ in $(seq 40); do (($(rss_count) > before)) && break; sleep 1; done
for process in dait-host llama-server; do
    rss="$(grep -ao "$process VmRSS: *[0-9]* kB" "$console" | tail -n1 || true)"
    if [[ -n "$rss" ]]; then log "in the guest, after the chat: $rss"; else log "no $process memory report"; fi
done
engine_ready="$(grep -ao 'engine at [0-9.:]* ready after [0-9]* s' "$console" | tail -n1 || true)"
[[ -n "$engine_ready" ]] && log "guest: $engine_ready"

# --- the receipt log across a reboot -------------------------------------------------------------------------
# The guest is cut off (no shutdown: the receipt was on disk before the tenant got it) and booted again with the
# same state volume; the new boot's agent must serve the tenant's receipt again, byte for byte, from its log.
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
channel_dir="$(find "$work/tenant/channels" -mindepth 1 -maxdepth 1 -type d | head -n1)"
[[ -n "$channel_dir" && -f "$channel_dir/state.pb" && -s "$channel_dir/receipts.b64" ]] ||
    die "the tenant's state directory holds no channel state and receipt"
channel="$(basename "$channel_dir")"
want="$(head -n1 "$channel_dir/receipts.b64" | tr -d '=\n')"
log "cutting the guest off and booting it again with the same state volume"
stop_process "$qemu_pid"
stop_process "$swtpm_pid"
boot_guest "$work/console-2.log"
code="$(curl -ks --max-time 60 -H "x-dait-state: $(b64url <"$channel_dir/state.pb")" -o "$work/receipt-1.pb" \
    -w '%{http_code}' "$base/v1/receipts/$channel/1")"
[[ "$code" == 200 ]] || die "after the reboot, GET /v1/receipts/$channel/1 answered $code"
[[ "$(b64url <"$work/receipt-1.pb")" == "$want" ]] ||
    die "after the reboot the agent served another receipt 1 than the tenant holds"
log "state volume: after the reboot the agent served receipt 1 of channel $channel again, byte for byte"
log "ok"
