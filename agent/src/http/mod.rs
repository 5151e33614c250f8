//! The tenant-facing HTTP server (PROTOCOL.md §6) and the request path: OHTTP decapsulation,
//! Binary HTTP decoding, channel-state check, forwarding to the engine, response encapsulation,
//! receipt signing and logging.
//!
//! | file | what |
//! |---|---|
//! | `routes.rs` | the router, the attestation endpoint and the small fixed responses |
//! | `call.rs` | what both forms of a call share: the decoded inner request, the lease, the receipt |
//! | `plain.rs` | a call answered in one piece (`message/ohttp-req`) |
//! | `stream.rs` | a streamed call (`message/ohttp-chunked-req`), ending with the receipt trailer |
//! | `bhttp.rs` | the indeterminate-length Binary HTTP encoder the streamed call writes |
//! | `serve.rs` | the accept loops (TLS, and plaintext for tests), one connection, the graceful shutdown |
//! | `admission.rs` | the connection and in-flight bounds, and their `503` with `Retry-After` |
//! | `ops.rs` | the operator's listener: `GET /metrics` |
//! | `error.rs` | the errors of a call after decryption |

mod admission;
mod bhttp;
pub(crate) mod call;
pub mod error;
mod evidence;
mod ops;
mod plain;
pub mod receipts;
mod routes;
mod serve;
mod stream;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

use crate::config::Limits;
use crate::engine::EngineClient;
use crate::key::BootKeys;
use crate::metrics::Metrics;
use crate::ready::Readiness;
use crate::receipt::{Channels, ReceiptParams};
use crate::receipt_log::ReceiptLog;
use crate::tee::TeeBackend;

pub use admission::{Gates, OVERFLOW_CONNECTIONS};
pub use evidence::{CACHED_BUNDLES, EvidenceGate};
pub use ops::serve_metrics;
pub use routes::{assemble_bundle, assemble_bundle_with_gpus, bundle, handle};
pub use serve::{dangerous_serve_plaintext, serve_tls, serve_tls_until};

/// Response body type of the server.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Inner header carrying the channel state.
pub const STATE_HEADER: &[u8] = b"x-dait-state";
/// Inner header marking a call replayable, with the value `1` (PROTOCOL.md §6, "Replayable calls").
pub const REPLAYABLE_HEADER: &[u8] = b"x-dait-replayable";
/// Inner header (or trailer, when streaming) carrying the receipt.
pub const RECEIPT_FIELD: &[u8] = b"x-dait-receipt";
/// Trailer sent instead of a receipt when a stream failed after it started.
pub const ERROR_TRAILER: &[u8] = b"x-dait-error";
/// Upper bound of prompt tokens assumed for the escrow check: body bytes plus this margin (a token
/// is at least one byte of the prompt text; the margin covers template tokens).
pub const PROMPT_TOKEN_MARGIN: u64 = 256;
/// `max_tokens` the agent sets when the request has none, so the escrow bound holds (the shared rule: a
/// replay sets the same).
pub use dait_chain_client::replay::DEFAULT_MAX_TOKENS;

/// Everything a request needs. Built once by [`crate::build_app`].
pub struct App {
    /// Boot keys.
    pub keys: BootKeys,
    /// CPU evidence source.
    pub tee: Box<dyn TeeBackend>,
    /// Encoded runtime event log.
    pub event_log: Vec<u8>,
    /// Channels.
    pub channels: Arc<Channels>,
    /// Receipt log (`None` when only producing evidence, `dait-host attest`).
    pub receipt_log: Option<ReceiptLog>,
    /// Engine client (`None` without `--upstream`).
    pub engine: Option<EngineClient>,
    /// Fixed receipt fields.
    pub params: ReceiptParams,
    /// The operator declared the engine deterministic (`--engine-deterministic`): replayable calls
    /// are served.
    pub engine_deterministic: bool,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` reports.
    pub readiness: Arc<Readiness>,
    /// Limits and timeouts.
    pub limits: Limits,
    /// The connection and in-flight bounds.
    pub gates: Gates,
    /// The attestation cache and the per-address limit on fresh evidence.
    pub evidence: EvidenceGate,
    /// The TDX collateral embedded in each bundle (empty on other platforms, and until fetched).
    pub collateral: Arc<crate::collateral::CollateralSlot>,
    /// The GPUs attested in each bundle (`None`: `--gpus 0`, CPU only).
    pub gpus: Option<crate::tee::gpu::Gpus>,
    /// The NVIDIA collateral (RIMs, OCSP) put into each GPU's evidence (empty until fetched).
    pub gpu_collateral: Arc<crate::collateral::nvidia::GpuCollateralSlot>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}
