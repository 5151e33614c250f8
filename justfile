# dait tasks. Recipes call scripts in scripts/; CI (.ci/run) calls `just test`.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Every shell script of the repository, for shellcheck (its settings: .shellcheckrc, image/.shellcheckrc): the
# scripts, the fuzz corpus seeders, the CI entry point and the image's own scripts.
shell_scripts := (
    "scripts/*.sh verifier/fuzz/*.sh agent/fuzz/*.sh measurements/scripts/*.sh .ci/run " +
    "image/mkosi.extra/usr/lib/dait/wait-engine image/mkosi.extra/usr/lib/dait/start-agent " +
    "image/mkosi.conf.d/10-simulated/extra/usr/lib/dait/print-sim-root " +
    "image/mkosi.conf.d/10-simulated/extra/usr/lib/dait/report-rss " +
    "image/mkosi.profiles/gpu/mkosi.postinst.chroot"
)

default:
    @just --list

# Install everything the tests and the demo need (idempotent; quick when already installed).
setup:
    scripts/install-tools.sh

# The full CI test: fmt, clippy -D warnings, tests with the real engine (required), wasm32 build, docs.
test: setup
    scripts/test.sh

# Fast static checks: fmt, spelling, shellcheck, clippy -D warnings, the wasm32 build of the chain-client core.
check: setup
    cargo fmt --all -- --check
    PATH="$HOME/.local/bin:$PATH" typos
    shellcheck {{ shell_scripts }}
    cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
    cargo build -p dait-chain-client --no-default-features --target wasm32-unknown-unknown --locked

# Lint every shell script (part of `just check` and of `just test`).
shellcheck:
    shellcheck {{ shell_scripts }}

# The hardware tests (TDX or SNP guest, NVIDIA GPU, vTPM; docs/HARDWARE.md): each collects real evidence through
# the agent and verifies it, or prints `skipped: no <device>`. Run on the confidential VM itself, as root.
test-hw:
    scripts/test-hw.sh

# The local end-to-end demo: engine + agent (simulated TEE) + tenant proxy, a plain and a streamed chat.
demo: setup
    scripts/demo.sh

# Replay a receipt bit for bit on a local engine of the release's build: RECEIPT REQUEST HOSTKEY (docs/AUDIT.md).
audit *args:
    scripts/audit.sh {{ args }}

# The real CPU inference engine: install | start | stop | url | status | model.
engine *args="status":
    scripts/engine.sh {{ args }}

# Benchmarks: the engine (tokens/s, first-token latency, determinism) and the workspace's cargo benches.
bench: setup
    scripts/bench.sh

# Uses the engine that `just engine start` started when it runs, else an in-process fake engine; settings
# DAIT_SOAK_* (agent/benches/soak.rs). A bench: CI does not run it.
# Soak and crash loop (docs/PERFORMANCE.md): 10 min under load, kill -9 every 30 s, receipts and RSS checked.
soak:
    DAIT_ENGINE_URL="${DAIT_ENGINE_URL:-$(scripts/engine.sh url 2>/dev/null || true)}" \
        cargo bench -p dait-agent --features simulated-tee --bench soak --locked

# Regenerate the protocol test vectors (chain-client/tests/vectors/*.json); CI checks they are unchanged.
vectors:
    DAIT_WRITE_VECTORS=1 cargo test -p dait-chain-client --test vectors --locked
    git diff --exit-code -- chain-client/tests/vectors

# Regenerate the committed reference measurements and fail if they changed.
measure:
    DAIT_REGENERATE_REFERENCE=1 cargo test -p dait-measure --test cli --locked
    git diff --exit-code -- measurements/reference

# Write measurements/reference/<ImageVersion>.json from the built image (`just reference --check` compares instead).
reference *args="":
    scripts/reference.sh {{ args }}

# SNP launch digest against sev-snp-measure on a real AmdSev OVMF (builds the firmware once, ~10-25 min).
measure-check:
    DAIT_OVMF_AMDSEV="$(scripts/ovmf.sh)" cargo test -p dait-measure --locked -- --include-ignored

# Build the measured guest image into image/mkosi.output/.
image:
    scripts/image.sh

# Write image/packages.lock from the last image build (--build: first build cold from the mirror's current packages).
image-lock *args="":
    scripts/image-lock.sh {{ args }}

# The release of the current ImageVersion: image outputs, reference, lock, the locked .debs and the pinned sources,
# one SHA256SUMS (docs/RELEASING.md). Needs a built image (`just image`) whose reference matches.
release *args="":
    scripts/release.sh {{ args }}

# Two clean image builds; fails unless every output's sha256 matches.
image-check:
    scripts/image-check.sh

# Boot the image under QEMU (simulated TEE): attestation, one encrypted chat, receipt verified by dait-tenant.
boot: image
    scripts/boot.sh

# Every fuzz target (the evidence parsers, the agent's decapsulated request) for SECS seconds each (default 60),
# seeded from the real evidence and from requests built by the test tenant.
fuzz-smoke secs="60":
    scripts/fuzz-smoke.sh {{ secs }}

# Refresh verifier/fuzz/Cargo.lock and agent/fuzz/Cargo.lock after a change to the workspace's dependencies:
# versions already locked stay, new dependencies are added and unused ones dropped. CI builds the fuzz crates with
# --locked.
fuzz-lock:
    cargo metadata --manifest-path verifier/fuzz/Cargo.toml --format-version 1 >/dev/null
    cargo metadata --manifest-path agent/fuzz/Cargo.toml --format-version 1 >/dev/null
