#!/usr/bin/env bash
# Builds llama.cpp's C++ OpenAI-compatible server, `llama-server`, for the guest image: from the llama.cpp that
# is vendored in the PyPI source distribution of llama-cpp-python (the same llama.cpp the test engine of
# scripts/engine.sh runs), pinned by version and sha256. Prints the path of the built binary on stdout.
#
# Usage: scripts/llama-server.sh [--clean] [--dir DIR]
#   --clean    rebuild even when the cached binary matches this script and the source
#   --dir DIR  build directory (default target/llama-server). The build only depends on the directory through
#              the compiler's prefix maps, which remove it, so any fixed directory gives the same bytes.
# Environment:
#   DAIT_CACHE_DIR  where the downloaded source distribution is kept (default ${XDG_CACHE_HOME:-$HOME/.cache}/dait)
#
# What makes the binary reproducible and fit for the image:
#   - the source is the sdist, checked against its sha256 before it is unpacked;
#   - CPU backend only, built in (BUILD_SHARED_LIBS=OFF, GGML_BACKEND_DL=OFF), no OpenMP (no libgomp in the
#     image; ggml's own thread pool is used), no OpenSSL, no web UI download, no tests, examples or other tools;
#   - GGML_NATIVE=OFF and the instruction set named explicitly (ggml's defaults for it switch off whenever
#     SOURCE_DATE_EPOCH is set): x86-64 with SSE4.2, AVX, AVX2, BMI2, FMA and F16C, never AVX-512 or AVX-VNNI,
#     fixed at build time (no runtime dispatch), so the binary does not depend on the build machine's CPU and
#     runs under QEMU TCG `-cpu max`. These are the instructions the test engine's build (GGML_NATIVE=OFF
#     without SOURCE_DATE_EPOCH) uses too;
#   - libstdc++ and libgcc are linked statically; only glibc (libc, libm) is dynamic, and it is in the image;
#   - -ffile-prefix-map for the source and build directories, no git lookup (GIT_CEILING_DIRECTORIES), fixed
#     SOURCE_DATE_EPOCH, umask, locale and time zone; stripped, with a sha1 build id.
#
# Exit codes: 0 built (or cached), 1 failed, 2 usage error.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

LLAMA_CPP_PYTHON_VERSION="0.3.36"
SDIST="llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
SDIST_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

clean=0
dir="$repo/target/llama-server"
while (($#)); do
    case "$1" in
        --clean) clean=1 ;;
        --dir) dir="${2:?--dir needs a directory}"; shift ;;
        -h|--help) print_help; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
    shift
done
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

umask 022
# The image's own SourceDateEpoch (image/mkosi.conf).
SOURCE_DATE_EPOCH="$(mkosi_setting SourceDateEpoch)"
export LC_ALL=C.UTF-8 TZ=UTC SOURCE_DATE_EPOCH
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

# --- the source ---------------------------------------------------------------------------------------------
cache="$(cache_dir)/llama-server"
mkdir -p "$cache"
have_sdist() { [[ -f "$cache/$SDIST" ]] && echo "$SDIST_SHA256  $cache/$SDIST" | sha256sum -c --quiet - 2>/dev/null; }
if ! have_sdist; then
    python3 -m pip --version >/dev/null 2>&1 || die "pip is needed to download $SDIST"
    log "downloading $SDIST"
    rm -rf "$cache/dl" && mkdir -p "$cache/dl"
    # pip reads the sdist's metadata through its build backend, which it fetches as a wheel into an isolated
    # environment; only llama-cpp-python itself is taken as source.
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
        -d "$cache/dl" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" || die "pip download failed"
    mv "$cache/dl/$SDIST" "$cache/$SDIST" || die "pip did not download $SDIST"
    rm -rf "$cache/dl"
    have_sdist || die "$SDIST does not have the pinned sha256 $SDIST_SHA256"
fi

# --- cache check --------------------------------------------------------------------------------------------
# The binary is rebuilt when this script, the source, SOURCE_DATE_EPOCH or the compiler changes.
bin="$dir/out/llama-server"
key="$( { sha256sum "$0" | cut -d' ' -f1; echo "$SDIST_SHA256"; echo "$SOURCE_DATE_EPOCH"; c++ --version | head -n1; } |
    sha256sum | cut -d' ' -f1)"
if ((!clean)) && [[ -x "$bin" && "$(cat "$dir/out/key" 2>/dev/null)" == "$key" ]]; then
    log "cached $bin"
    printf '%s\n' "$bin"
    exit 0
fi

# --- the build ----------------------------------------------------------------------------------------------
src="$dir/src"
build="$dir/build"
rm -rf "$src" "$build" "$dir/out"
mkdir -p "$src" "$build" "$dir/out"
tar -xzf "$cache/$SDIST" -C "$src" --strip-components=1 --no-same-owner
llama="$src/vendor/llama.cpp"
[[ -f "$llama/tools/server/server.cpp" ]] || die "no tools/server in the vendored llama.cpp"

# The build directory lies inside this repository: without the ceiling, llama.cpp's build info would record
# this repository's git commit.
export GIT_CEILING_DIRECTORIES="$dir"
maps="-ffile-prefix-map=$llama=/llama.cpp -ffile-prefix-map=$build=/build"
cmake_args=(
    -S "$llama" -B "$build"
    -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_C_FLAGS=$maps"
    "-DCMAKE_CXX_FLAGS=$maps"
    "-DCMAKE_EXE_LINKER_FLAGS=-static-libstdc++ -static-libgcc -Wl,--build-id=sha1 -s"
    -DBUILD_SHARED_LIBS=OFF
    -DGGML_NATIVE=OFF
    -DGGML_SSE42=ON
    -DGGML_AVX=ON
    -DGGML_AVX2=ON
    -DGGML_BMI2=ON
    -DGGML_FMA=ON
    -DGGML_F16C=ON
    -DGGML_AVX_VNNI=OFF
    -DGGML_AVX512=OFF
    -DGGML_BACKEND_DL=OFF
    -DGGML_CPU_ALL_VARIANTS=OFF
    -DGGML_OPENMP=OFF
    -DGGML_CCACHE=OFF
    -DLLAMA_CURL=OFF
    -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_UI=OFF
    -DLLAMA_USE_PREBUILT_UI=OFF
    -DLLAMA_BUILD_TOOLS=ON
    -DLLAMA_BUILD_SERVER=ON
)
log "building llama-server from llama-cpp-python $LLAMA_CPP_PYTHON_VERSION ($CMAKE_BUILD_PARALLEL_LEVEL jobs)"
start=$(date +%s)
cmake "${cmake_args[@]}" >"$dir/cmake.log" 2>&1 || { tail -n 30 "$dir/cmake.log" >&2; die "cmake configure failed"; }
cmake --build "$build" --target llama-server >>"$dir/cmake.log" 2>&1 \
    || { tail -n 30 "$dir/cmake.log" >&2; die "cmake build failed"; }
install -m 0755 "$build/bin/llama-server" "$bin"
printf '%s\n' "$key" >"$dir/out/key"
log "built in $(($(date +%s) - start)) s, sha256 $(sha256sum "$bin" | cut -d' ' -f1)"
printf '%s\n' "$bin"
