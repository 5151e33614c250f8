#!/usr/bin/env bash
# The full test run, as CI runs it (`just test`, `.ci/run`):
#   1. rustfmt check, spelling (typos) and shellcheck
#   2. clippy on every target, warnings are errors: once with every feature, then each crate alone with its
#      default features (what ships: the agent without `simulated-tee`, the verifier without the tenant client)
#   3. the workspace tests, with the real inference engine started here (DAIT_ENGINE_URL) and required
#      (DAIT_REQUIRE_ENGINE=1: end-to-end tests fail instead of skipping when it is missing), with every feature
#      and then each crate alone with its default features; with every feature this includes the chain-client's
#      EVM client tests (feature `evm`) on a local anvil, which `just setup` installs (scripts/install-tools.sh,
#      scripts/install-chain-tools.sh) and whose absence fails them; the vTPM tests' swtpm is required too
#      (DAIT_REQUIRE_SWTPM=1; install-tools.sh installs it)
#   4. the wasm32 build of the chain-client core, and the fuzz crates (verifier/fuzz, agent/fuzz, outside the
#      workspace) built on the stable toolchain without instrumentation, so their targets keep compiling
#   5. the settlement contract (chain-client/contracts): its committed artefacts equal a fresh compile, and its
#      tests pass on a local anvil chain
#   6. the API docs, warnings are errors
#   7. the guest image (scripts/image.sh: the agent's static release build, llama-server and the mkosi image)
#   8. the image booted under QEMU (scripts/boot.sh): attestation endpoint, one encrypted chat through the
#      engine inside the guest, its receipt verified by the tenant CLI
#   9. the image's measurements equal the committed reference of its ImageVersion (scripts/reference.sh --check;
#      the SNP digests only when the AmdSev OVMF is cached, else `skipped: ...` for them), and the package lock's
#      checker test (scripts/image-lock-test.sh)
# The engine is stopped on exit, also when a step fails (unless it was running before). A failing step stops the run, unless
# DAIT_TEST_KEEP_GOING=1, which runs every step and fails at the end (to see all failures at once).
# DAIT_TEST_IMAGE=0 leaves out steps 7 and 8 (they take the most time: about 15 min on a fresh 2-core machine, a
# few minutes with mkosi's caches warm); CI runs them.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "$0")/.."

# A fresh clone builds everything once: no incremental state and no debug info (a panic still names its file and
# line), for quicker links and a target directory half the size.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-0}"
export CARGO_PROFILE_TEST_DEBUG="${CARGO_PROFILE_TEST_DEBUG:-0}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# A whole run writes about 12 GB here (the target directory, mkosi's cache and output, the engine's model); a disk
# with less free fails some step with "No space left on device", so say so first.
avail_kb="$(df -Pk . | awk 'NR == 2 { print $4 }')"
if [ "${avail_kb:-0}" -lt $((14 * 1024 * 1024)) ]; then
    log "warning: $((avail_kb / 1024)) MiB free on this disk; a whole run writes about 12 GB"
fi

keep_going="${DAIT_TEST_KEEP_GOING:-0}"
failed=()
summary=()
# Each step's output is also kept in a file of its own, so that a failure's cause can be repeated under the summary:
# a CI log is often read from its end.
logs="$(mktemp -d "${TMPDIR:-/tmp}/dait-test.XXXXXX")"
causes=()

# step NAME COMMAND...: runs one step, timed. The command runs in this shell (engine_up exports its settings), its
# output copied to the step's log on the way.
step() {
    local name="$1" start=$SECONDS rc=0 log="$logs/$((${#summary[@]} + 1)).log"
    shift
    printf '\n==> %s\n' "$name" >&2
    "$@" > >(tee "$log" >&2) 2>&1 || rc=$?
    summary+=("$(printf '%-8s %4ss  %s' "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)" "$((SECONDS - start))" "$name")")
    if [ "$rc" -ne 0 ]; then
        failed+=("$name")
        causes+=("$log")
        [ "$keep_going" = 1 ] || finish
    fi
}

# cause LOG: the lines of a failed step's output that name what failed (a test, a compiler error, the disk or the
# memory running out), at most 12, each cut to 240 characters; where none does, the step's last 8 lines.
cause() {
    local lines
    lines="$(grep -aE 'panicked at|^error(\[E[0-9]+\])?:|^test .+ \.\.\. FAILED|^failures:$|^    [A-Za-z0-9_:]+$|No space left|[Kk]illed|signal: 9|SIGKILL|out of memory|could not compile|Disk quota|^Diff in ' \
        "$1" | head -n 12 | cut -c1-240)" || true
    if [ -n "$lines" ]; then
        printf '%s\n' "$lines"
    else
        tail -n 8 "$1" | cut -c1-240
    fi
}

finish() {
    local log
    printf '\n==> summary\n' >&2
    printf '%s\n' "${summary[@]}" >&2
    if [ "${#failed[@]}" -gt 0 ]; then
        sleep 1 # the last lines through tee
        for log in "${causes[@]}"; do
            printf -- '--- what failed (%s):\n' "$log" >&2
            cause "$log" >&2 || true
        done
        printf 'disk: %s\n' "$(df -h --output=avail,size,target . 2>/dev/null | tail -n 1 | tr -s ' ')" >&2
        printf 'memory: %s\n' "$(free -h 2>/dev/null | awk '/^Mem:/ { print $7 " available of " $2 }')" >&2
        printf 'failed: %s\n' "${failed[*]}" >&2
        exit 1
    fi
    printf 'disk left: %s\n' "$(df -h --output=avail . 2>/dev/null | tail -n 1 | tr -d ' ')" >&2
    exit 0
}

# shipped CARGO_COMMAND ARGS...: runs the cargo command on each workspace crate alone, with its default features:
# what ships (the production dait-host without `simulated-tee`, the verifier library without the tenant client),
# which the --all-features run above never builds on its own.
shipped() {
    local sub="$1" pkg
    shift
    for pkg in $(cargo metadata --no-deps --format-version 1 --locked |
        python3 -c 'import json, sys; print(" ".join(p["name"] for p in json.load(sys.stdin)["packages"]))'); do
        printf -- '--- %s (default features)\n' "$pkg" >&2
        cargo "$sub" -p "$pkg" "$@" || return 1
    done
}

# (Called as `step`'s "$@" || …, where set -e does not apply: each command checks its own status.)
# An engine that was already running (started by hand in this checkout) is used and left running.
engine_started=0
engine_up() {
    scripts/engine.sh install || return 1
    if ! DAIT_ENGINE_URL="$(scripts/engine.sh url 2>/dev/null)"; then
        engine_started=1
        DAIT_ENGINE_URL="$(scripts/engine.sh start)" || return 1
    fi
    export DAIT_ENGINE_URL
    export DAIT_REQUIRE_ENGINE=1
    # The vTPM tests fail instead of skipping without swtpm (scripts/install-tools.sh installs it).
    export DAIT_REQUIRE_SWTPM=1
}

stop_engine() {
    if [ "$engine_started" -eq 1 ]; then
        scripts/engine.sh stop >/dev/null 2>&1 || true
    fi
}
trap stop_engine EXIT

step "rustfmt" cargo fmt --all -- --check
step "spelling (typos)" env PATH="$HOME/.local/bin:$PATH" typos
step "shellcheck" env PATH="$HOME/.local/bin:$PATH" just shellcheck
step "clippy, all features" cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
step "clippy, each crate as it ships (default features)" shipped clippy --all-targets --locked -- -D warnings
step "engine (install, start)" engine_up
step "tests, all features (real engine required)" cargo test --workspace --all-features --locked
step "tests, each crate as it ships (default features)" shipped test --locked
step "wasm32 build of the chain-client core" \
    cargo build -p dait-chain-client --no-default-features --target wasm32-unknown-unknown --locked
step "fuzz crate build (stable, uninstrumented)" \
    cargo build --manifest-path verifier/fuzz/Cargo.toml --target-dir target --locked
step "agent fuzz crate build (stable, uninstrumented)" \
    cargo build --manifest-path agent/fuzz/Cargo.toml --target-dir target --locked
step "settlement contract: committed artefacts match a fresh compile" scripts/contracts.sh check
step "settlement contract: tests on anvil (started and stopped by the tests)" scripts/contracts.sh test
step "docs" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked
if [ "${DAIT_TEST_IMAGE:-1}" != 0 ]; then
    step "image (agent release build, llama-server build, mkosi)" scripts/image.sh
    # The guest runs its own engine (llama-server in the image); the host engine above is not used by the boot.
    step "boot (QEMU, simulated TEE): attestation, encrypted chat, receipt" scripts/boot.sh
    step "reference: the image equals measurements/reference/<ImageVersion>.json" \
        env DAIT_REFERENCE_SNP=auto scripts/reference.sh --check
fi
step "package lock checker" scripts/image-lock-test.sh
finish
