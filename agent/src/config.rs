//! Command line and configuration: a raw, parsed form ([`RawConfig`]) and a validated one ([`Config`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Default address the agent listens on.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// `dait-host`: the agent inside the confidential VM.
#[derive(Debug, Parser)]
#[command(name = "dait-host", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write one evidence bundle for a tenant nonce to a file.
    Attest {
        /// Common configuration.
        #[command(flatten)]
        raw: RawConfig,
        /// Tenant nonce, 64 hex characters (32 bytes).
        #[arg(long)]
        nonce: String,
        /// Output file for the protobuf `EvidenceBundle`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Create the state directory (and, for the simulated TEE, the simulated platform root key).
    Init {
        /// Common configuration.
        #[command(flatten)]
        raw: RawConfig,
    },
    /// Print the runtime events `serve` would measure at start, one `name=sha256hex` per line, in order
    /// (the `--runtime-event` arguments of `dait-measure reference`). Opens no TEE and writes nothing.
    RuntimeEvents {
        /// Common configuration (the same flags and environment as `serve`).
        #[command(flatten)]
        raw: RawConfig,
    },
    /// Register the operator's GPUs on the settlement contract, approving their stake (feature `settlement`).
    #[cfg(feature = "settlement")]
    Register(crate::settlement::RegisterArgs),
    /// Attest a keyset made for it for the chain's current epoch: write the bundle bound to the epoch nonce and
    /// record its hash with `submitAttestation` (feature `settlement`; a serving agent attests its own keyset).
    #[cfg(feature = "settlement")]
    AttestEpoch(Box<crate::settlement::AttestEpochArgs>),
    /// Serve the tenant endpoints over TLS.
    Serve {
        /// Common configuration.
        #[command(flatten)]
        raw: RawConfig,
    },
}

/// Which TEE backend produces CPU evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TeeKind {
    /// Simulated evidence (development and CI only; needs the `simulated-tee` feature).
    Simulated,
    /// AMD SEV-SNP through configfs-tsm.
    Snp,
    /// Intel TDX through configfs-tsm.
    Tdx,
}

/// Configuration as given on the command line or in the environment, not yet validated.
#[derive(Debug, Clone, Args)]
pub struct RawConfig {
    /// TEE backend.
    #[arg(long = "tee", env = "DAIT_TEE_KIND", value_enum)]
    pub tee: Option<TeeKind>,
    /// State directory (receipt log; simulated platform root).
    #[arg(long, env = "DAIT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Address to listen on (TLS).
    #[arg(long, env = "DAIT_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Address of the operator's metrics listener (plaintext HTTP, `GET /metrics`, no
    /// authentication); off when absent. Bind it to loopback or an operator-only network.
    #[arg(long, env = "DAIT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Base URL of the OpenAI-compatible engine on loopback, e.g. `http://127.0.0.1:8000`.
    #[arg(long, env = "DAIT_UPSTREAM")]
    pub upstream: Option<String>,
    /// Model id put into receipts.
    #[arg(long, env = "DAIT_MODEL_ID", default_value = "default")]
    pub model_id: String,
    /// Model weights file; its SHA-256 is the weight hash.
    #[arg(long, env = "DAIT_MODEL_PATH")]
    pub model_path: Option<PathBuf>,
    /// Price per input token, in the channel's smallest unit.
    #[arg(long, env = "DAIT_PRICE_IN", default_value_t = 0)]
    pub price_in: u64,
    /// Price per output token, in the channel's smallest unit.
    #[arg(long, env = "DAIT_PRICE_OUT", default_value_t = 0)]
    pub price_out: u64,
    /// EIP-712 domain chain id.
    #[arg(long, env = "DAIT_CHAIN_ID", default_value_t = 31337)]
    pub chain_id: u64,
    /// EIP-712 domain settlement contract address (0x + 40 hex).
    #[arg(
        long,
        env = "DAIT_SETTLEMENT",
        default_value = "0x0000000000000000000000000000000000000000"
    )]
    pub settlement: String,
    /// Chain RPC endpoint: with the `settlement` feature, `serve` runs the settlement task against it
    /// (attestations, receipt batches, answers to unilateral closes). Needs `--host-key-path`.
    #[arg(long, env = "DAIT_CHAIN_RPC")]
    pub chain_rpc: Option<String>,
    /// The operator's chain account key file (hex secp256k1 secret); gives `host_account`, the account
    /// every channel of this host belongs to (PROTOCOL.md §4). Not the TEE key. Without it the account is
    /// zero: channels work off chain (simulated and demo setups), and no contract accepts them.
    #[arg(long, env = "DAIT_HOST_KEY_PATH")]
    pub host_key_path: Option<PathBuf>,
    /// The settlement task of `serve` (with `--chain-rpc`).
    #[cfg(feature = "settlement")]
    #[command(flatten)]
    pub settle: crate::settlement::service::ServiceArgs,
    /// The operator's declaration that the engine runs in a deterministic configuration (the
    /// development engine with `--n_batch 1`; vLLM with `--enforce-eager`, a fixed `--seed` and
    /// batch-invariant kernels): only then are replayable calls (`x-dait-replayable: 1`) served.
    /// Measured into the `agent-config` runtime event, so a verifier sees it.
    #[arg(long, env = "DAIT_ENGINE_DETERMINISTIC", value_parser = clap::builder::BoolishValueParser::new())]
    pub engine_deterministic: bool,
    /// Engine build identifier; its SHA-256 is the receipt's `engine_build`.
    #[arg(long, env = "DAIT_ENGINE_BUILD", default_value = "")]
    pub engine_build: String,
    /// `serve` only, loses data: the receipt log is damaged at this byte offset (as its error
    /// said); move everything from there aside to `receipts.log.corrupt-at-<offset>` and start
    /// with the records before it. Command line only (no environment variable), for one start.
    #[arg(long, value_name = "OFFSET")]
    pub dangerous_truncate_receipt_log_at: Option<u64>,
    /// `--tee simulated` only: the `MRCONFIGID` (96 hex) the simulated guest is launched with, as a TDX host
    /// sets it. With it the simulated guest cannot extend its RTMR3 and must find its runtime configuration
    /// bound here (PROTOCOL.md §10.1); `dait-measure launch-binding` prints the value.
    #[arg(long, env = "DAIT_SIMULATED_MRCONFIGID", value_name = "HEX")]
    pub simulated_mrconfigid: Option<String>,
    /// The number of NVIDIA GPUs the agent attests: `serve` and `attest` refuse to start unless confidential-computing
    /// mode is on and exactly this many GPUs are present, and set them ready only after their evidence verified.
    /// `0` is the explicit CPU-only mode (bundles carry no GPU evidence). Required with `--tee tdx|snp`; the
    /// simulated TEE defaults to 0.
    #[arg(long, env = "DAIT_GPUS", value_name = "N")]
    pub gpus: Option<u32>,
    /// The vTPM, as a TSS TCTI (`device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`): the runtime events
    /// are also extended into PCR 23 and each bundle carries a quote (feature `vtpm`; without a usable TPM
    /// the agent does not start).
    #[arg(long, env = "DAIT_TPM", value_name = "TCTI")]
    pub tpm: Option<String>,
    /// Limits and timeouts.
    #[command(flatten)]
    pub limits: RawLimits,
    /// Where the collateral embedded in the bundles is fetched.
    #[command(flatten)]
    pub collateral: CollateralUrls,
}

/// The collateral services (`http(s)://host[:port][/prefix]`), each defaulting to the vendor's public one.
/// An `https` service is trusted through the roots of `DAIT_PCCS_CA_FILE` (default the system bundle).
#[derive(Debug, Clone, Args)]
pub struct CollateralUrls {
    /// Intel PCS or a PCCS (TDX: TCB Info, QE Identity, CRLs).
    #[arg(long, env = crate::collateral::PCCS_URL_ENV, default_value = crate::collateral::DEFAULT_PCCS_URL)]
    pub pccs_url: String,
    /// AMD Key Distribution Service (SNP: VCEK, ASK/ARK, CRL).
    #[arg(long, env = crate::collateral::amd::AMD_KDS_URL_ENV, default_value = crate::collateral::amd::DEFAULT_AMD_KDS_URL)]
    pub amd_kds_url: String,
    /// NVIDIA RIM service (GPU driver and VBIOS reference integrity manifests).
    #[arg(long, env = crate::collateral::nvidia::NVIDIA_RIM_URL_ENV, default_value = crate::collateral::nvidia::DEFAULT_NVIDIA_RIM_URL)]
    pub nvidia_rim_url: String,
    /// NVIDIA OCSP responder (GPU device certificate chains).
    #[arg(long, env = crate::collateral::nvidia::NVIDIA_OCSP_URL_ENV, default_value = crate::collateral::nvidia::DEFAULT_NVIDIA_OCSP_URL)]
    pub nvidia_ocsp_url: String,
}

/// Reasons a [`RawConfig`] is rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("missing setting {0}")]
    Missing(&'static str),
    /// A setting has the wrong form.
    #[error("invalid setting {0}")]
    Invalid(&'static str),
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// TEE backend.
    pub tee: TeeKind,
    /// State directory.
    pub state_dir: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Metrics listen address (none: no metrics listener).
    pub metrics_listen: Option<SocketAddr>,
    /// Upstream engine base URI (no trailing slash).
    pub upstream: Option<http::Uri>,
    /// Model id.
    pub model_id: String,
    /// Model weights file.
    pub model_path: Option<PathBuf>,
    /// Price per input token.
    pub price_in: u64,
    /// Price per output token.
    pub price_out: u64,
    /// EIP-712 chain id.
    pub chain_id: u64,
    /// EIP-712 verifying contract.
    pub settlement: [u8; 20],
    /// Chain RPC endpoint.
    pub chain_rpc: Option<String>,
    /// Operator account key file.
    pub host_key_path: Option<PathBuf>,
    /// The settlement task's settings.
    #[cfg(feature = "settlement")]
    pub settle: crate::settlement::service::ServiceArgs,
    /// Whether the engine is declared deterministic (replayable calls are served).
    pub engine_deterministic: bool,
    /// Engine build id.
    pub engine_build: String,
    /// Move the damaged receipt log aside from this offset and start (loses the receipts there).
    pub dangerous_truncate_receipt_log_at: Option<u64>,
    /// `--tee simulated` only: the simulated launch-time `MRCONFIGID`.
    pub simulated_mrconfigid: Option<[u8; 48]>,
    /// `--gpus`, as given.
    pub gpus: Option<u32>,
    /// The vTPM's TCTI (`--tpm`).
    pub tpm: Option<String>,
    /// Limits and timeouts.
    pub limits: Limits,
    /// The collateral services.
    pub collateral: CollateralUrls,
}

impl Config {
    /// The number of GPUs to attest: `--gpus`, which a hardware TEE needs (no GPU count is assumed on real
    /// hardware); the simulated TEE defaults to none.
    pub fn expected_gpus(&self) -> Result<u32, ConfigError> {
        match (self.gpus, self.tee) {
            (Some(n), _) => Ok(n),
            (None, TeeKind::Simulated) => Ok(0),
            (None, TeeKind::Snp | TeeKind::Tdx) => Err(ConfigError::Missing(
                "--gpus / DAIT_GPUS (the number of GPUs to attest; 0 for CPU only)",
            )),
        }
    }
}

impl RawConfig {
    /// Validate the settings.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let tee = self
            .tee
            .ok_or(ConfigError::Missing("--tee / DAIT_TEE_KIND"))?;
        let state_dir = self
            .state_dir
            .ok_or(ConfigError::Missing("--state-dir / DAIT_STATE_DIR"))?;
        let listen: SocketAddr = self
            .listen
            .parse()
            .map_err(|_| ConfigError::Invalid("--listen / DAIT_LISTEN"))?;
        let metrics_listen = match self.metrics_listen {
            None => None,
            Some(a) => Some(
                a.parse()
                    .map_err(|_| ConfigError::Invalid("--metrics-listen / DAIT_METRICS_LISTEN"))?,
            ),
        };
        let upstream = match self.upstream {
            None => None,
            Some(u) => {
                let uri: http::Uri = u
                    .trim_end_matches('/')
                    .parse()
                    .map_err(|_| ConfigError::Invalid("--upstream / DAIT_UPSTREAM"))?;
                if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                    return Err(ConfigError::Invalid("--upstream / DAIT_UPSTREAM"));
                }
                Some(uri)
            }
        };
        let settlement = parse_address(&self.settlement)
            .ok_or(ConfigError::Invalid("--settlement / DAIT_SETTLEMENT"))?;
        if self.chain_rpc.is_some() && self.host_key_path.is_none() {
            // Channels belong to the keyset's host_account, which a contract requires to be non-zero.
            return Err(ConfigError::Invalid(
                "--chain-rpc needs --host-key-path (the operator account channels settle to)",
            ));
        }
        if self.model_id.is_empty() {
            return Err(ConfigError::Invalid("--model-id"));
        }
        let simulated_mrconfigid = match &self.simulated_mrconfigid {
            None => None,
            Some(_) if tee != TeeKind::Simulated => {
                return Err(ConfigError::Invalid(
                    "--simulated-mrconfigid needs --tee simulated",
                ));
            }
            Some(text) => {
                let mut value = [0u8; 48];
                hex::decode_to_slice(text.trim(), &mut value)
                    .map_err(|_| ConfigError::Invalid("--simulated-mrconfigid (96 hex)"))?;
                Some(value)
            }
        };
        Ok(Config {
            tee,
            state_dir,
            listen,
            metrics_listen,
            upstream,
            model_id: self.model_id,
            model_path: self.model_path,
            price_in: self.price_in,
            price_out: self.price_out,
            chain_id: self.chain_id,
            settlement,
            chain_rpc: self.chain_rpc,
            host_key_path: self.host_key_path,
            #[cfg(feature = "settlement")]
            settle: self.settle,
            engine_deterministic: self.engine_deterministic,
            engine_build: self.engine_build,
            dangerous_truncate_receipt_log_at: self.dangerous_truncate_receipt_log_at,
            simulated_mrconfigid,
            gpus: self.gpus,
            tpm: self.tpm,
            limits: self.limits.validate()?,
            collateral: self.collateral,
        })
    }
}

/// Parse `0x` + 40 hex characters.
pub fn parse_address(s: &str) -> Option<[u8; 20]> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    let mut out = [0u8; 20];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

// ---- Limits and timeouts -------------------------------------------------------------------------

/// Limits and timeouts as given on the command line or in the environment (durations as `500ms`,
/// `10s`, `5m`; a bare number is seconds).
#[derive(Debug, Clone, Args)]
pub struct RawLimits {
    /// Most tenant connections open at once; more get a `503` with `Retry-After` and are closed.
    #[arg(long, env = "DAIT_MAX_CONNECTIONS", default_value_t = Limits::DEFAULT.max_connections)]
    pub max_connections: usize,
    /// Most tenant connections open at once from one client address; more are closed at once,
    /// before the TLS handshake. Does not bound a client with many addresses.
    #[arg(
        long,
        env = "DAIT_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = Limits::DEFAULT.max_connections_per_address
    )]
    pub max_connections_per_address: usize,
    /// Most OHTTP calls in flight at once; more get a `503` with `Retry-After` (no receipt).
    #[arg(long, env = "DAIT_MAX_IN_FLIGHT", default_value_t = Limits::DEFAULT.max_in_flight)]
    pub max_in_flight: usize,
    /// The `Retry-After` (seconds) of a `503` for a limit reached.
    #[arg(long, env = "DAIT_RETRY_AFTER", default_value_t = Limits::DEFAULT.retry_after_secs)]
    pub retry_after: u64,
    /// Most channels held live; past it the least recently used channel with no call in flight is
    /// evicted to a compact index of heads, and continues its sequence on its next call.
    #[arg(long, env = "DAIT_MAX_CHANNELS", default_value_t = Limits::DEFAULT.max_channels)]
    pub max_channels: usize,
    /// Largest encapsulated request body (bytes) of `POST /v1/ohttp`; a larger one gets `413`.
    #[arg(long, env = "DAIT_MAX_REQUEST_BYTES", default_value_t = Limits::DEFAULT.max_request_bytes)]
    pub max_request_bytes: usize,
    /// Largest non-streamed engine answer (bytes); a larger one fails the call with the `upstream`
    /// error and no receipt.
    #[arg(long, env = "DAIT_MAX_RESPONSE_BYTES", default_value_t = Limits::DEFAULT.max_response_bytes)]
    pub max_response_bytes: usize,
    /// How long an attestation bundle is served again for the same freshness (the chain epoch's
    /// nonce, or a tenant's nonce asked again) without a new TEE call.
    #[arg(long, env = "DAIT_ATTESTATION_CACHE_WINDOW", default_value = "60s")]
    pub attestation_cache_window: String,
    /// Fresh attestation bundles (not in the cache) one client address may ask for per second; more
    /// get `429` with `Retry-After`.
    #[arg(long, env = "DAIT_ATTESTATION_RATE", default_value_t = Limits::DEFAULT.attestation_rate)]
    pub attestation_rate: u32,
    /// Fresh attestation bundles one client address may ask for at once before the rate applies.
    #[arg(long, env = "DAIT_ATTESTATION_BURST", default_value_t = Limits::DEFAULT.attestation_burst)]
    pub attestation_burst: u32,
    /// Most client addresses whose attestation rate is tracked at once.
    #[arg(long, env = "DAIT_ATTESTATION_CLIENTS", default_value_t = Limits::DEFAULT.attestation_clients)]
    pub attestation_clients: usize,
    /// How long a client may take to finish the TLS handshake.
    #[arg(long, env = "DAIT_TLS_HANDSHAKE_TIMEOUT", default_value = "10s")]
    pub tls_handshake_timeout: String,
    /// How long a client may take to send a request's headers (also the idle time allowed between
    /// requests on a kept-alive connection).
    #[arg(long, env = "DAIT_HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: String,
    /// How long a client may take to send a request's body.
    #[arg(long, env = "DAIT_BODY_READ_TIMEOUT", default_value = "30s")]
    pub body_read_timeout: String,
    /// How long connecting to the engine may take.
    #[arg(long, env = "DAIT_UPSTREAM_CONNECT_TIMEOUT", default_value = "5s")]
    pub upstream_connect_timeout: String,
    /// How long the engine may take to start its answer (its response head) after the request.
    #[arg(long, env = "DAIT_UPSTREAM_FIRST_BYTE_TIMEOUT", default_value = "300s")]
    pub upstream_first_byte_timeout: String,
    /// How long one call to the engine may take in all, its whole answer (or stream) included.
    #[arg(long, env = "DAIT_UPSTREAM_DEADLINE", default_value = "600s")]
    pub upstream_deadline: String,
    /// After SIGTERM or SIGINT, how long calls in flight may take to finish before they are cut
    /// and the agent exits.
    #[arg(long, env = "DAIT_SHUTDOWN_DRAIN", default_value = "30s")]
    pub shutdown_drain: String,
}

/// Validated limits and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tenant connections open at once.
    pub max_connections: usize,
    /// Most tenant connections open at once from one client address.
    pub max_connections_per_address: usize,
    /// Most OHTTP calls in flight at once.
    pub max_in_flight: usize,
    /// `Retry-After` of a limit's `503`, in seconds.
    pub retry_after_secs: u64,
    /// Most channels held live.
    pub max_channels: usize,
    /// Largest encapsulated request body (bytes).
    pub max_request_bytes: usize,
    /// Largest non-streamed engine answer (bytes).
    pub max_response_bytes: usize,
    /// How long a bundle is served again for the same freshness.
    pub attestation_cache_window: Duration,
    /// Fresh bundles per second per client address.
    pub attestation_rate: u32,
    /// Fresh bundles at once per client address.
    pub attestation_burst: u32,
    /// Client addresses tracked at once.
    pub attestation_clients: usize,
    /// TLS handshake timeout.
    pub tls_handshake_timeout: Duration,
    /// Request header (and keep-alive idle) timeout.
    pub header_read_timeout: Duration,
    /// Request body timeout.
    pub body_read_timeout: Duration,
    /// Engine connect timeout.
    pub upstream_connect_timeout: Duration,
    /// Engine first-byte (response head) timeout.
    pub upstream_first_byte_timeout: Duration,
    /// Engine total call deadline.
    pub upstream_deadline: Duration,
    /// After SIGTERM or SIGINT, the most time calls in flight get to finish.
    pub shutdown_drain: Duration,
}

impl Limits {
    /// The defaults (those of the command line).
    pub const DEFAULT: Self = Self {
        max_connections: 512,
        max_connections_per_address: 64,
        max_in_flight: 256,
        retry_after_secs: 1,
        max_channels: crate::receipt::DEFAULT_MAX_CHANNELS,
        max_request_bytes: crate::hpke::MAX_REQUEST,
        max_response_bytes: crate::engine::MAX_UPSTREAM_BODY,
        attestation_cache_window: Duration::from_secs(60),
        attestation_rate: 10,
        attestation_burst: 20,
        attestation_clients: 10_000,
        tls_handshake_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        body_read_timeout: Duration::from_secs(30),
        upstream_connect_timeout: Duration::from_secs(5),
        upstream_first_byte_timeout: Duration::from_secs(300),
        upstream_deadline: Duration::from_secs(600),
        shutdown_drain: Duration::from_secs(30),
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl RawLimits {
    /// Validate the limits: counts and durations must be positive, and the first-byte timeout
    /// no longer than the deadline.
    pub fn validate(self) -> Result<Limits, ConfigError> {
        let d = |s: &str, what| parse_duration(s).ok_or(ConfigError::Invalid(what));
        let limits = Limits {
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            max_in_flight: self.max_in_flight,
            retry_after_secs: self.retry_after,
            max_channels: self.max_channels,
            max_request_bytes: self.max_request_bytes,
            max_response_bytes: self.max_response_bytes,
            attestation_cache_window: d(
                &self.attestation_cache_window,
                "--attestation-cache-window",
            )?,
            attestation_rate: self.attestation_rate,
            attestation_burst: self.attestation_burst,
            attestation_clients: self.attestation_clients,
            tls_handshake_timeout: d(&self.tls_handshake_timeout, "--tls-handshake-timeout")?,
            header_read_timeout: d(&self.header_read_timeout, "--header-read-timeout")?,
            body_read_timeout: d(&self.body_read_timeout, "--body-read-timeout")?,
            upstream_connect_timeout: d(
                &self.upstream_connect_timeout,
                "--upstream-connect-timeout",
            )?,
            upstream_first_byte_timeout: d(
                &self.upstream_first_byte_timeout,
                "--upstream-first-byte-timeout",
            )?,
            upstream_deadline: d(&self.upstream_deadline, "--upstream-deadline")?,
            shutdown_drain: d(&self.shutdown_drain, "--shutdown-drain")?,
        };
        if limits.max_connections == 0 {
            return Err(ConfigError::Invalid("--max-connections"));
        }
        if limits.max_connections_per_address == 0 {
            return Err(ConfigError::Invalid("--max-connections-per-address"));
        }
        if limits.max_in_flight == 0 {
            return Err(ConfigError::Invalid("--max-in-flight"));
        }
        if limits.max_channels == 0 {
            return Err(ConfigError::Invalid("--max-channels"));
        }
        if limits.max_request_bytes == 0 {
            return Err(ConfigError::Invalid("--max-request-bytes"));
        }
        if limits.max_response_bytes == 0 {
            return Err(ConfigError::Invalid("--max-response-bytes"));
        }
        if limits.attestation_rate == 0 {
            return Err(ConfigError::Invalid("--attestation-rate"));
        }
        if limits.attestation_burst == 0 {
            return Err(ConfigError::Invalid("--attestation-burst"));
        }
        if limits.attestation_clients == 0 {
            return Err(ConfigError::Invalid("--attestation-clients"));
        }
        if limits.upstream_first_byte_timeout > limits.upstream_deadline {
            return Err(ConfigError::Invalid("--upstream-first-byte-timeout"));
        }
        Ok(limits)
    }
}

/// Parse a positive duration: a number with `ms`, `s` or `m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (n, unit_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s, 1000)
    };
    let n: u64 = n.trim().parse().ok()?;
    let ms = n.checked_mul(unit_ms)?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

// ---- end of limits and timeouts ------------------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn raw(args: &[&str]) -> RawConfig {
        let mut v = vec!["dait-host", "serve"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Serve { raw } => raw,
            _ => unreachable!(),
        }
    }

    #[test]
    fn validates_full_config() {
        let c = raw(&[
            "--tee",
            "simulated",
            "--state-dir",
            "/tmp/x",
            "--upstream",
            "http://127.0.0.1:9000/",
            "--settlement",
            "0x00000000000000000000000000000000000000aa",
        ])
        .validate()
        .unwrap();
        assert_eq!(c.tee, TeeKind::Simulated);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.upstream.unwrap().to_string(), "http://127.0.0.1:9000/");
        assert_eq!(c.settlement[19], 0xaa);
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.dangerous_truncate_receipt_log_at, None);
        assert!(!c.engine_deterministic);
    }

    #[test]
    fn engine_deterministic_is_a_flag() {
        let base = ["--tee", "tdx", "--state-dir", "/tmp/x"];
        let mut a = base.to_vec();
        a.push("--engine-deterministic");
        assert!(raw(&a).validate().unwrap().engine_deterministic);
        // The replay seed is the tenant's, never the operator's: no such setting.
        let mut b = base.to_vec();
        b.extend(["--seed", "7"]);
        let mut v = vec!["dait-host", "serve"];
        v.extend(b);
        assert!(Cli::try_parse_from(v).is_err());
    }

    #[test]
    fn dangerous_truncate_offset_is_parsed() {
        let c = raw(&[
            "--tee",
            "tdx",
            "--state-dir",
            "/tmp/x",
            "--dangerous-truncate-receipt-log-at",
            "4096",
        ])
        .validate()
        .unwrap();
        assert_eq!(c.dangerous_truncate_receipt_log_at, Some(4096));
        let v = [
            "dait-host",
            "serve",
            "--dangerous-truncate-receipt-log-at",
            "-1",
        ];
        assert!(Cli::try_parse_from(v).is_err());
    }

    #[test]
    fn rejects_missing_tee() {
        let e = raw(&["--state-dir", "/tmp/x"]).validate().unwrap_err();
        assert!(matches!(e, ConfigError::Missing(_)));
    }

    #[test]
    fn rejects_bad_upstream_and_settlement() {
        let base = ["--tee", "tdx", "--state-dir", "/tmp/x"];
        let mut a = base.to_vec();
        a.extend(["--upstream", "https://example.invalid"]);
        assert!(matches!(raw(&a).validate(), Err(ConfigError::Invalid(_))));
        let mut b = base.to_vec();
        b.extend(["--settlement", "0x12"]);
        assert!(matches!(raw(&b).validate(), Err(ConfigError::Invalid(_))));
        let mut c = base.to_vec();
        c.extend(["--listen", "nope"]);
        assert!(matches!(raw(&c).validate(), Err(ConfigError::Invalid(_))));
        let mut d = base.to_vec();
        d.extend(["--metrics-listen", "localhost"]);
        assert!(matches!(raw(&d).validate(), Err(ConfigError::Invalid(_))));
        let mut f = base.to_vec();
        f.extend(["--chain-rpc", "http://127.0.0.1:8545"]);
        assert!(matches!(raw(&f).validate(), Err(ConfigError::Invalid(_))));
        f.extend(["--host-key-path", "/tmp/operator.key"]);
        assert!(raw(&f).validate().is_ok());
        let mut e = base.to_vec();
        e.extend(["--metrics-listen", "127.0.0.1:9100"]);
        assert_eq!(
            raw(&e).validate().unwrap().metrics_listen,
            Some("127.0.0.1:9100".parse().unwrap())
        );
    }

    #[test]
    fn limits_defaults_and_validation() {
        let base = ["--tee", "tdx", "--state-dir", "/tmp/x"];
        assert_eq!(raw(&base).validate().unwrap().limits, Limits::DEFAULT);
        let mut a = base.to_vec();
        a.extend(["--header-read-timeout", "250ms", "--max-in-flight", "3"]);
        a.extend(["--shutdown-drain", "5s"]);
        a.extend(["--max-channels", "7", "--max-request-bytes", "1000"]);
        a.extend(["--max-connections-per-address", "2"]);
        let l = raw(&a).validate().unwrap().limits;
        assert_eq!(l.max_connections_per_address, 2);
        assert_eq!(l.header_read_timeout, Duration::from_millis(250));
        assert_eq!(l.shutdown_drain, Duration::from_secs(5));
        assert_eq!(l.max_in_flight, 3);
        assert_eq!(l.max_channels, 7);
        assert_eq!(l.max_request_bytes, 1000);
        assert_eq!(l.max_response_bytes, Limits::DEFAULT.max_response_bytes);
        for bad in [
            ["--max-connections", "0"],
            ["--max-connections-per-address", "0"],
            ["--max-channels", "0"],
            ["--max-request-bytes", "0"],
            ["--max-response-bytes", "0"],
            ["--attestation-rate", "0"],
            ["--attestation-burst", "0"],
            ["--attestation-clients", "0"],
            ["--attestation-cache-window", "0s"],
            ["--body-read-timeout", "0s"],
            ["--upstream-deadline", "soon"],
            ["--shutdown-drain", "0s"],
            ["--upstream-first-byte-timeout", "20m"],
        ] {
            let mut b = base.to_vec();
            b.extend(bad);
            assert!(
                matches!(raw(&b).validate(), Err(ConfigError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("-1s"), None);
    }
}
