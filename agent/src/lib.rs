//! `dait-host`: the agent inside the confidential VM that turns an OpenAI-compatible inference
//! engine into an attested, private, metered service.
//!
//! # What it does
//! - At start it measures what it serves (model id, weight hash, engine build, prices, whether the
//!   engine is declared deterministic) into the runtime event log and register, and generates a per-boot keyset in memory: receipt key
//!   (P-256), OHTTP key (X25519), TLS key and self-signed certificate (its SPKI is in the keyset).
//!   `dait-host runtime-events` prints the same events ([`RuntimeEvents`]) without a TEE, for the
//!   release's reference file. Where the TEE cannot extend the register, the host must have bound them at
//!   launch (TDX `MRCONFIGID`, SEV-SNP `HOST_DATA`): the agent checks its own report and refuses to start
//!   otherwise (PROTOCOL.md §10.1).
//! - `GET /v1/attestation?nonce=` returns an evidence bundle whose `report_data` binds the keyset
//!   hash and the tenant's nonce (PROTOCOL.md §3, §7), with each NVIDIA GPU's report for its
//!   `gpu_nonce` (`--gpus N`, through NVML: [`tee::gpu`]; the GPUs are set ready only after the agent
//!   verified their evidence at start).
//! - `POST /v1/ohttp` takes an Oblivious HTTP request (chunked OHTTP for streaming), checks the
//!   tenant's signed channel state, forwards the call to the engine on loopback, encrypts the
//!   answer and returns a signed receipt, logged durably before the response is released. A call
//!   marked replayable (`x-dait-replayable: 1`) is served only with `--engine-deterministic` and
//!   replayable sampling, with the seed sent to the engine named in its receipt (PROTOCOL.md §6).
//! - `GET /healthz` says the process is up; `GET /readyz` checks the named conditions of
//!   [`ready`] (engine, receipt log, TEE, GPUs). `--metrics-listen` serves Prometheus [`metrics`] on a
//!   separate listener.
//!
//! # Example
//! ```no_run
//! use clap::Parser;
//! let cli = dait_agent::config::Cli::parse_from([
//!     "dait-host", "init", "--tee", "simulated", "--state-dir", "state",
//! ]);
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! rt.block_on(dait_agent::run(cli.command)).unwrap();
//! ```
//!
//! # Feature flags
//! | feature | default | what |
//! |---|---|---|
//! | `simulated-tee` | no | the simulated TEE backend (`--tee simulated`), development and CI only |
//!
//! # Security
//! - Trust: the CPU TEE (TDX or SNP) and its firmware; the measured image; the engine running in
//!   the same VM. The host operator, its network and proxies are not trusted: they see ciphertext.
//! - No keyset key is ever written to disk. The simulated platform root (`sim-root.key`) is the
//!   stand-in for a CPU vendor key, exists only with `simulated-tee`, and its evidence is tagged
//!   `SIMULATED`, which the default verification policy rejects.
//! - Prompts, completions and decrypted bodies are never logged. Every decapsulation failure is
//!   the same opaque `400` with an empty body.
//! - The agent never panics on a request; errors after decryption travel encrypted.

pub mod collateral;
pub mod config;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod hpke;
pub mod http;
pub mod key;
pub mod metrics;
pub mod ready;
pub mod receipt;
pub mod receipt_log;
/// The settlement contract (feature `settlement`): `serve`'s settlement task, the cooperative close's
/// counter-signature, `register` and `attest-epoch`.
#[cfg(feature = "settlement")]
pub mod settlement;
pub mod tee;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dait_chain_client::runtime_log::{self, EventLog};
use dait_chain_client::{Address, B256, Freshness};
use sha2::{Digest, Sha256};

use crate::config::{Command, Config, ConfigError};
use crate::http::App;
use crate::metrics::Metrics;
use crate::ready::Readiness;
use crate::receipt::{Channels, ReceiptParams};

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: a runtime failure (TEE device missing, I/O, key or log error).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: i32 = 2;

/// Errors of the agent's commands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// Invalid configuration.
    #[error("configuration")]
    Config(#[from] ConfigError),
    /// The GPUs fail the start-up rule (count, CC mode) or their evidence does not verify.
    #[error("GPU")]
    Gpu(#[from] tee::gpu::GpuError),
    /// The TEE backend failed.
    #[error("TEE")]
    Tee(#[from] tee::TeeError),
    /// Key generation failed.
    #[error("keys")]
    Key(#[from] key::KeyError),
    /// The receipt log failed.
    #[error("receipt log")]
    ReceiptLog(#[from] receipt_log::ReceiptLogError),
    /// I/O.
    #[error("{0}")]
    Io(&'static str, #[source] std::io::Error),
    /// A command-line value is malformed.
    #[error("invalid argument {0}")]
    Usage(&'static str),
    /// The settlement task cannot start (feature `settlement`).
    #[cfg(feature = "settlement")]
    #[error("settlement")]
    Settlement(#[source] Box<settlement::SettlementError>),
    /// The guest cannot extend its runtime register and the host launched it with a launch-time field that
    /// does not bind this runtime configuration (PROTOCOL.md §10.1): the agent refuses to start.
    #[error(
        "the runtime configuration is not the one the host bound at launch: {field} is {found}, this configuration needs {expected} (dait-measure launch-binding)"
    )]
    LaunchBindingMismatch {
        /// `MRCONFIGID` or `HOST_DATA`.
        field: &'static str,
        /// Hex of the field in the report.
        found: String,
        /// Hex of the value this runtime configuration binds to.
        expected: String,
    },
    /// On real hardware the guest can neither extend its runtime register nor find a launch-time binding (the
    /// field is all zero): it would serve an unbound runtime configuration, so it refuses to start.
    #[error(
        "the runtime configuration is unbound: {what}, and the host set no {field}; launch the guest with {field} = {expected} (dait-measure launch-binding)"
    )]
    UnboundRuntime {
        /// Why the runtime register could not be extended.
        what: &'static str,
        /// `MRCONFIGID` or `HOST_DATA`.
        field: &'static str,
        /// Hex of the value this runtime configuration binds to.
        expected: String,
    },
}

impl AgentError {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) | Self::Usage(_) => EXIT_USAGE,
            #[cfg(feature = "settlement")]
            Self::Settlement(e) if matches!(**e, settlement::SettlementError::Usage(_)) => {
                EXIT_USAGE
            }
            _ => EXIT_FAILURE,
        }
    }
}

/// SHA-256 of a file, streamed.
pub fn file_sha256(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(h.finalize().into())
}

/// What the agent measures into the runtime register at start, computed from the configuration alone (no TEE):
/// `build_app` extends exactly these events, and `dait-host runtime-events` prints them for a reference file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeEvents {
    /// SHA-256 of the model weights file (zero without one); also the receipts' `weight_hash`.
    pub weight_hash: B256,
    /// SHA-256 of the engine build identifier; also the receipts' `engine_build`.
    pub engine_build: B256,
    /// `(name, SHA-256 of the content)` in the order the agent extends them, the order
    /// `measurements/reference/<release>.json` lists them. Each measures
    /// [`runtime_log::event_data`] (`name ":" hex(sha256)`), so a reference file predicts the register.
    pub events: [(&'static str, [u8; 32]); 4],
}

impl RuntimeEvents {
    /// The events of a validated configuration; reads (hashes) the model weights file if one is set.
    pub fn from_config(config: &Config) -> Result<Self, AgentError> {
        let weight_hash = match &config.model_path {
            Some(p) => B256(file_sha256(p).map_err(|e| AgentError::Io("model weights", e))?),
            None => B256::ZERO,
        };
        let engine_build = B256(Sha256::digest(config.engine_build.as_bytes()).into());
        let events = [
            (
                runtime_log::MODEL_ID,
                Sha256::digest(config.model_id.as_bytes()).into(),
            ),
            (runtime_log::MODEL_WEIGHTS, weight_hash.0),
            (runtime_log::ENGINE_BUILD, engine_build.0),
            (
                runtime_log::AGENT_CONFIG,
                Sha256::digest(agent_config_line(config).as_bytes()).into(),
            ),
        ];
        Ok(Self {
            weight_hash,
            engine_build,
            events,
        })
    }

    /// One `name=sha256hex` line per event, in order: the `--runtime-event` arguments of
    /// `dait-measure reference`.
    pub fn to_lines(&self) -> String {
        self.events
            .iter()
            .map(|(name, sha256)| format!("{name}={}\n", hex::encode(sha256)))
            .collect()
    }
}

/// The content of the `agent-config` runtime event (PROTOCOL.md §10): the prices, the EIP-712 domain
/// and whether the engine is declared deterministic (`--engine-deterministic`, which replayable calls
/// need), e.g. `price_in=2 price_out=3 chain_id=31337 settlement=0x00…00 engine_deterministic=1`.
pub fn agent_config_line(config: &Config) -> String {
    format!(
        "price_in={} price_out={} chain_id={} settlement=0x{} engine_deterministic={}",
        config.price_in,
        config.price_out,
        config.chain_id,
        hex::encode(config.settlement),
        u8::from(config.engine_deterministic)
    )
}

/// Whether to open the receipt log (`serve`) or not (`attest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serve: open and replay the receipt log.
    Serve,
    /// Produce evidence only.
    Attest,
}

/// Build everything a server needs from a validated configuration.
pub fn build_app(config: &Config, mode: Mode) -> Result<Arc<App>, AgentError> {
    let expected_gpus = config.expected_gpus()?;
    let tee = tee::open(config.tee, &config.state_dir, config.simulated_mrconfigid)?;
    let tee = tee::with_vtpm(tee, config.tpm.as_deref())?;

    // The GPUs are counted and their CC mode checked before anything is extended into the runtime register,
    // which a later start in the same boot could not replay; their evidence is verified once bound.
    let gpus = open_gpus(config.tee, expected_gpus)?;
    let runtime = RuntimeEvents::from_config(config)?;
    let event_log = bind_runtime(tee.as_ref(), &runtime)?;
    let RuntimeEvents {
        weight_hash,
        engine_build,
        ..
    } = runtime;
    if let Some(g) = &gpus {
        set_gpus_ready(g)?;
    }

    let host_account = match &config.host_key_path {
        Some(p) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(p)
                    .map_err(|e| AgentError::Io("operator account key", e))?,
            );
            key::host_account_from_file(&text)?
        }
        None => Address::ZERO,
    };
    let keys = key::BootKeys::generate(config.chain_id, config.settlement, host_account)?;

    let engine = config.upstream.clone().map(|u| {
        engine::EngineClient::with_timeouts(u, engine::UpstreamTimeouts::from(&config.limits))
            .with_max_body(config.limits.max_response_bytes)
    });
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::new(engine.clone(), mode == Mode::Serve));
    let (receipt_log, channels) = match mode {
        Mode::Serve => {
            std::fs::create_dir_all(&config.state_dir)
                .map_err(|e| AgentError::Io("state dir", e))?;
            let observer = Box::new(LogObserver {
                metrics: Arc::clone(&metrics),
                readiness: Arc::clone(&readiness),
            });
            let (log, replay) = match config.dangerous_truncate_receipt_log_at {
                None => receipt_log::ReceiptLog::open_observed(&config.state_dir, observer)?,
                Some(offset) => receipt_log::ReceiptLog::dangerous_open_truncating_at(
                    &config.state_dir,
                    offset,
                    observer,
                )?,
            };
            tracing::info!(
                records = replay.records,
                channels = replay.heads.len(),
                truncated_bytes = replay.truncated,
                moved_aside_bytes = replay.moved_aside.as_ref().map_or(0, |m| m.bytes),
                "receipt log replayed"
            );
            (
                Some(log),
                Channels::from_replay(&replay, config.limits.max_channels),
            )
        }
        Mode::Attest => (None, Channels::with_bound(config.limits.max_channels)),
    };

    let params = ReceiptParams {
        host_key_id: keys.host_key_id,
        keyset_hash: keys.keyset_hash,
        model_id: config.model_id.clone(),
        weight_hash,
        price_in: u128::from(config.price_in),
        price_out: u128::from(config.price_out),
        engine_build,
    };
    let app = Arc::new(App {
        keys,
        tee,
        event_log: event_log.encode(),
        channels: Arc::new(channels),
        receipt_log,
        engine,
        params,
        engine_deterministic: config.engine_deterministic,
        metrics,
        readiness,
        limits: config.limits,
        gates: http::Gates::new(&config.limits),
        evidence: http::EvidenceGate::new(&config.limits),
        collateral: Arc::default(),
        gpus,
        gpu_collateral: Arc::default(),
    });
    if mode == Mode::Serve {
        // Readiness needs one evidence generation at start; a failure leaves the agent unready
        // (`tee_unusable`) until an attestation succeeds.
        if let Err(e) = http::bundle(&app, &Freshness::TenantNonce([0; 32])) {
            tracing::error!(error = %e, "evidence generation failed at start");
        }
    }
    Ok(app)
}

/// Records the runtime events in order and binds them into the evidence (PROTOCOL.md §10.1): each extended into
/// the runtime register where `tee` can (the simulated TEE; TDX with the kernel's tsm-mr `rtmr3:sha384`), else
/// checked against the launch-time field of the agent's own report. Returns the event log.
pub fn bind_runtime(
    tee: &dyn tee::TeeBackend,
    runtime: &RuntimeEvents,
) -> Result<EventLog, AgentError> {
    let mut event_log = EventLog::default();
    let mut unsupported = None;
    for (kind, sha256) in runtime.events {
        event_log.record(kind, &runtime_log::event_data(kind, &sha256));
        match tee.extend_runtime(&event_log) {
            Ok(()) => {}
            Err(tee::TeeError::Unsupported(what)) => unsupported = Some(what),
            Err(e) => return Err(e.into()),
        }
    }
    match unsupported {
        Some(what) => check_launch_binding(tee, &event_log, what)?,
        None => tracing::info!("runtime configuration extended into the runtime register"),
    }
    Ok(event_log)
}

/// The GPUs of `--gpus N` (PROTOCOL.md §7): none for `--gpus 0` (CPU only, chosen explicitly); otherwise NVML
/// must show CC mode on and exactly N GPUs.
fn open_gpus(kind: config::TeeKind, expected: u32) -> Result<Option<tee::gpu::Gpus>, AgentError> {
    if expected == 0 {
        if kind != config::TeeKind::Simulated {
            tracing::warn!("--gpus 0: CPU-only mode, the evidence carries no GPU");
        }
        return Ok(None);
    }
    let attester = tee::NvmlAttester::open()?;
    Ok(Some(tee::gpu::Gpus::open(Box::new(attester), expected)?))
}

/// Each GPU's evidence verified by the agent itself, then the GPUs set ready to take work.
fn set_gpus_ready(gpus: &tee::gpu::Gpus) -> Result<(), AgentError> {
    let verified = gpus.verify_and_set_ready(dait_verifier::UnixTime::now())?;
    for (index, gpu) in verified.iter().enumerate() {
        tracing::info!(
            index,
            driver = gpu.driver_version().unwrap_or("-"),
            vbios = gpu.vbios_version().unwrap_or("-"),
            "GPU evidence verified"
        );
    }
    tracing::info!(gpus = gpus.count(), "GPUs set ready");
    Ok(())
}

/// The launch-binding path (PROTOCOL.md §10.1), taken when the guest cannot extend its runtime register
/// (`what` says why): the launch-time field of the agent's own report must be the binding value of the event
/// log's register. A field that differs refuses the start, and so does an unset (all-zero) one: the agent
/// never serves an unbound runtime configuration. (The simulated TEE launched without a value extends its
/// simulated RTMR3 and never comes here: development only.)
fn check_launch_binding(
    tee: &dyn tee::TeeBackend,
    event_log: &EventLog,
    what: &'static str,
) -> Result<(), AgentError> {
    let found = tee.launch_field()?;
    let expected = found.binding_for(&event_log.register());
    if found == expected {
        tracing::info!(
            field = found.name(),
            "runtime configuration bound at launch"
        );
        return Ok(());
    }
    if found.is_unset() {
        return Err(AgentError::UnboundRuntime {
            what,
            field: found.name(),
            expected: hex::encode(expected.bytes()),
        });
    }
    Err(AgentError::LaunchBindingMismatch {
        field: found.name(),
        found: hex::encode(found.bytes()),
        expected: hex::encode(expected.bytes()),
    })
}

/// Tells the metrics how long each receipt-log batch's write and sync took, and readiness whether
/// the log takes appends.
struct LogObserver {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

impl receipt_log::SyncObserver for LogObserver {
    fn synced(&self, elapsed: std::time::Duration, _ok: bool) {
        self.metrics.receipt_log_sync(elapsed);
    }

    fn state(&self, state: receipt_log::LogState) {
        self.readiness.set_receipt_log(state);
    }
}

/// Run one command.
pub async fn run(command: Command) -> Result<(), AgentError> {
    match command {
        Command::Init { raw } => {
            let config = raw.validate()?;
            tee::init(config.tee, &config.state_dir)?;
            println!("initialised {}", config.state_dir.display());
            #[cfg(feature = "simulated-tee")]
            if config.tee == config::TeeKind::Simulated {
                println!(
                    "simulated platform root: {}",
                    config
                        .state_dir
                        .join(tee::simulated::ROOT_PUB_FILE)
                        .display()
                );
            }
            Ok(())
        }
        Command::Attest { raw, nonce, out } => {
            let config = raw.validate()?;
            let mut n = [0u8; 32];
            hex::decode_to_slice(nonce.trim(), &mut n)
                .map_err(|_| AgentError::Usage("--nonce (64 hex)"))?;
            let app = build_app(&config, Mode::Attest)?;
            let bytes = http::bundle(&app, &Freshness::TenantNonce(n))?;
            write_file(&out, &bytes)?;
            println!("keyset_hash {}", app.keys.keyset_hash);
            Ok(())
        }
        Command::RuntimeEvents { raw } => {
            let config = raw.validate()?;
            print!("{}", RuntimeEvents::from_config(&config)?.to_lines());
            Ok(())
        }
        Command::Serve { raw } => {
            let config = raw.validate()?;
            serve(&config).await
        }
        #[cfg(feature = "settlement")]
        Command::Register(args) => settlement::run_register(args).await,
        #[cfg(feature = "settlement")]
        Command::AttestEpoch(args) => settlement::run_attest_epoch(*args).await,
    }
}

fn write_file(path: &PathBuf, bytes: &[u8]) -> Result<(), AgentError> {
    std::fs::write(path, bytes).map_err(|e| AgentError::Io("output file", e))
}

/// `dait-host serve`: build the app, listen with TLS until SIGINT or SIGTERM.
pub async fn serve(config: &Config) -> Result<(), AgentError> {
    let cache = config.state_dir.join(collateral::CACHE_DIR);
    let urls = &config.collateral;
    let kds = match config.tee {
        config::TeeKind::Snp => {
            let kds = collateral::amd::KdsClient::new(&urls.amd_kds_url, &collateral::ca_file(), &cache)
                .map_err(|e| tracing::warn!(error = %e, "no AMD KDS client; bundles carry no AMD collateral"))
                .ok();
            if let Some(k) = &kds {
                // The VCEK into the cache before the first evidence, for a host that gives no certificate table.
                collateral::amd::prefetch_vcek(k).await;
            }
            kds
        }
        _ => None,
    };
    let app = build_app(config, Mode::Serve)?;
    match app.tee.platform() {
        dait_chain_client::proto::Platform::Tdx => {
            match collateral::PcsClient::new(&urls.pccs_url, &collateral::ca_file(), &cache) {
                Ok(client) => {
                    tokio::spawn(collateral::keep_fresh(Arc::clone(&app), client));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no TDX collateral client; bundles carry none")
                }
            }
        }
        dait_chain_client::proto::Platform::Snp => {
            if let Some(k) = kds {
                tokio::spawn(collateral::keep_fresh(Arc::clone(&app), k));
            }
        }
        _ => {}
    }
    if app.gpus.is_some() {
        match collateral::nvidia::NvidiaClient::new(
            &urls.nvidia_rim_url,
            &urls.nvidia_ocsp_url,
            &collateral::ca_file(),
            &cache,
        ) {
            Ok(client) => {
                tokio::spawn(collateral::keep_fresh(Arc::clone(&app), client));
            }
            Err(e) => {
                tracing::warn!(error = %e, "no NVIDIA collateral client; GPU evidence carries none")
            }
        }
    }
    #[cfg(feature = "settlement")]
    start_settlement(config, &app).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| AgentError::Io("listen", e))?;
    let local = listener
        .local_addr()
        .map_err(|e| AgentError::Io("listen", e))?;
    let metrics = match config.metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| AgentError::Io("metrics listen", e))?;
            let local = l
                .local_addr()
                .map_err(|e| AgentError::Io("metrics listen", e))?;
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                if let Err(e) = http::serve_metrics(app, l).await {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            });
            format!(" metrics=http://{local}")
        }
        None => String::new(),
    };
    // One machine-readable line on stdout, for scripts and tests.
    println!(
        "listening https://{local} keyset_hash={} host_key_id={} host_account={} chain_rpc={}{metrics}",
        app.keys.keyset_hash,
        app.keys.host_key_id,
        app.keys.host_account,
        config.chain_rpc.as_deref().unwrap_or("-")
    );
    tracing::info!(%local, upstream = ?config.upstream.as_ref().map(ToString::to_string), "serving");
    // On SIGINT or SIGTERM: refuse new connections, drain the calls in flight (at most
    // `--shutdown-drain`), then return, and the process exits 0, cutting whatever still runs.
    http::serve_tls_until(app, listener, shutdown())
        .await
        .map_err(|e| AgentError::Io("serve", e))
}

/// With `--chain-rpc`: connects to the settlement contract as the operator account and starts the settlement
/// task (`settlement::service`). A setting that is missing or malformed, or a contract that does not answer,
/// stops the start.
#[cfg(feature = "settlement")]
async fn start_settlement(config: &Config, app: &Arc<App>) -> Result<(), AgentError> {
    let (Some(rpc), Some(key_path)) = (&config.chain_rpc, &config.host_key_path) else {
        return Ok(());
    };
    let service = settlement::service::Service::new(&config.settle, &config.state_dir)
        .map_err(|e| AgentError::Settlement(Box::new(e)))?;
    let secret =
        settlement::read_operator_key(key_path).map_err(|e| AgentError::Settlement(Box::new(e)))?;
    let s = settlement::connect(rpc, Address(config.settlement), &secret)
        .await
        .map_err(|e| AgentError::Settlement(Box::new(e)))?;
    let app = Arc::clone(app);
    tokio::spawn(async move {
        if let Err(e) = settlement::service::run(app, s, service).await {
            tracing::error!(error = %e, "settlement task stopped");
        }
    });
    Ok(())
}

async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn config(extra: &[&str]) -> Config {
        let mut args = vec![
            "dait-host",
            "serve",
            "--tee",
            "tdx",
            "--state-dir",
            "/tmp/x",
            "--gpus",
            "0",
        ];
        args.extend_from_slice(extra);
        let Command::Serve { raw } = config::Cli::try_parse_from(args).unwrap().command else {
            unreachable!()
        };
        raw.validate().unwrap()
    }

    #[test]
    fn agent_config_line_names_the_deterministic_declaration() {
        let zero = "0".repeat(40);
        assert_eq!(
            agent_config_line(&config(&["--price-in", "2", "--price-out", "3"])),
            format!(
                "price_in=2 price_out=3 chain_id=31337 settlement=0x{zero} engine_deterministic=0"
            )
        );
        assert_eq!(
            agent_config_line(&config(&["--engine-deterministic"])),
            format!(
                "price_in=0 price_out=0 chain_id=31337 settlement=0x{zero} engine_deterministic=1"
            )
        );
    }
}
