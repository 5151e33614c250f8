//! The dait tenant's client: verify a host, talk to it over Oblivious HTTP, check every receipt.
//!
//! # What it does
//! A [`Session`] is one channel with one verified host: [`Session::open`] fetches the evidence bundle for a
//! fresh nonce over TLS, verifies it under a [`dait_verifier::bundle::Policy`], checks that the TLS key the
//! host presented is the attested one and pins it. Each [`Session::call`] seals an OpenAI-compatible request
//! to the attested HPKE key with the latest counter-signed channel state, opens the reply, runs the SPUR-IC
//! receipt checks ([`dait_verifier::receipt`]) and signs the next channel state. [`Session::call_stream`]
//! does the same for a streamed reply (chunked OHTTP), whose authenticated final chunk carries the receipt.
//! [`Session::call_with_options`] with [`CallOptions::replayable`] sends a call an auditor can replay: the
//! host serves it in its deterministic engine configuration with a fixed seed, or refuses it, and its
//! receipt must say so (`deterministic = true` and the seed asked for).
//! A failed check stops the session and writes the offending receipt under the state directory, so it can
//! be disputed.
//!
//! [`Session::resume_from_store`] continues a channel used before from the state directory after the tenant's
//! own process restarted (the host verified afresh, the same account and domain required), and fetches a receipt
//! the host logged but the tenant never received ([`Session::catch_up`]).
//!
//! - [`verify_host`]: only the verification, for a client that wants the attested keys.
//! - [`close`]: the cooperative close's counter-signature, obtained from the verified host and checked.
//! - [`proxy`]: the same flow served as a local OpenAI-compatible HTTP endpoint.
//! - [`redundant`]: M-of-N serving: a replayable request sent to N hosts, each on its own channel, and the
//!   answer a majority agrees on (by response hash); disagreements are written as dispute evidence.
//! - [`Wallet`]: the tenant's secp256k1 key, which signs the channel states.
//! - [`EngineClient`]: plain HTTP to an OpenAI-compatible engine the caller runs itself (an auditor's replay).
//! - `chain` (feature `chain`): the settlement contract over JSON-RPC: open, inspect, close, challenge and
//!   finalize a channel, and the on-chain check of a host (`chain::check_host`).
//! - `cli` (feature `cli`): the `dait-tenant` command line (`verify`, `chat`, `proxy`, `channel`).
//!
//! The checks themselves are the offline `dait-verifier` library's; this crate adds the network (tokio,
//! hyper, rustls, OHTTP) and the state kept on disk.
//!
//! # Example
//! ```no_run
//! use dait_tenant::{DEFAULT_CALL_TIMEOUT, Session, SessionConfig, Wallet};
//! use dait_verifier::bundle::Policy;
//!
//! # async fn chat() -> Result<(), Box<dyn std::error::Error>> {
//! let config = SessionConfig {
//!     host_url: "https://host.example:8443".to_owned(),
//!     // The default policy accepts real TDX/SNP evidence only; `Policy::from_reference` pins a release.
//!     policy: Policy::new(),
//!     escrow_cap: 1_000_000,
//!     state_dir: "tenant-state".into(),
//!     call_timeout: DEFAULT_CALL_TIMEOUT,
//! };
//! let wallet = Wallet::load_or_create("tenant-state/wallet.key".as_ref())?;
//! let mut session = Session::open(config, wallet).await?;
//! let request = br#"{"model":"default","messages":[{"role":"user","content":"Hello"}]}"#;
//! let outcome = session.call("/v1/chat/completions", request.to_vec()).await?;
//! println!("{}", String::from_utf8_lossy(&outcome.body));
//! println!("receipt for call {}", outcome.receipt.receipt().call_seq);
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//! | feature | default | what it adds |
//! |---|---|---|
//! | `cli` | yes | the `dait-tenant` binary (clap, anyhow, tracing-subscriber); library users turn default features off |
//! | `chain` | yes (with `cli`) | the `chain` module: the settlement contract through `dait-chain-client`'s `evm` client (alloy) |
//!
//! # Security
//! - The host is trusted only through its evidence: the bundle must verify under the caller's policy and be
//!   bound to a nonce this client chose for the session.
//! - The host's TLS certificate is trusted only through the attested SPKI; no CA is consulted, and a
//!   certificate for another key fails the handshake ([`TenantError::TlsSpkiMismatch`]).
//! - Requests are sealed to the attested HPKE key, so anything between the tenant and the TEE (the host's
//!   own proxies included) sees ciphertext only.
//! - Every receipt must name the model, weights and engine build the evidence attests: SHA-256 of its
//!   `model_id`, its `weight_hash` and its `engine_build` equal to the bundle's bound runtime events
//!   `model-id`, `model-weights` and `engine-build` ([`dait_verifier::bundle::VerifiedBundle::runtime`]).
//!   Evidence that attests no runtime events (an SNP bundle, whose log is not bound to its report; an
//!   empty log) fails every receipt.
//! - `dait-tenant` without `--policy` pins no measurements, so `chat` and `proxy` refuse to send a prompt
//!   unless told `--dangerous-any-measurement`; `verify` still reports (`"reference": null`).
//!   `--min-gpus N` requires N verified GPUs ([`dait_verifier::bundle::Policy::min_gpus`]).
//! - A receipt that fails any check stops the session; the receipt and the last agreed state are kept for a
//!   dispute. A streamed reply without its authenticated final chunk is a failure, never a short success.
//! - The wallet key file is created owner-only (mode 0600); the key is never logged (its `Debug` shows the
//!   address only).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "chain")]
pub mod chain;
#[cfg(feature = "cli")]
pub mod cli;
pub mod close;
mod ohttp;
pub mod proxy;
pub mod redundant;
mod session;
mod store;
mod tls;
mod transport;
mod wallet;

#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod support;

pub use session::{
    CallOptions, CallOutcome, DEFAULT_CALL_TIMEOUT, ResumeError, Session, SessionConfig,
    StreamCall, StreamItem, verify_host, verify_host_with_collateral,
};
pub use store::DisputeRecord;
pub use transport::{CloseAnswer, EngineClient, HostClient};
pub use wallet::{Wallet, WalletError};

use dait_verifier::bundle::VerifyError;
use dait_verifier::receipt::ReceiptError;

/// An error code the host returned inside the encrypted response (PROTOCOL.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostErrorCode {
    /// `bad_request` (400).
    BadRequest,
    /// `bad_state_signature` (401).
    BadStateSignature,
    /// `channel_final` (409): the state is final (signed to close the channel); the host serves no call on it.
    ChannelFinal,
    /// `malformed_state` (400, `POST /v1/channel/close`): the body is not a signed channel state.
    MalformedState,
    /// `not_final` (400, `POST /v1/channel/close`): the state sent to close is not final.
    NotFinal,
    /// `not_replayable` (422): a call sent replayable that the host cannot serve replayably (its engine is
    /// not declared deterministic, or the request's sampling is not replayable).
    NotReplayable,
    /// A code this client does not know.
    Other,
    /// `over_escrow_cap` (402).
    OverEscrowCap,
    /// `receipt_log_unwritable` (503): the host cannot make a receipt durable now (its disk is full, or a
    /// write or sync failed); the call was not served and the channel is unchanged. Retry later.
    ReceiptLogUnwritable,
    /// `stale_state` (409): the state's turn is behind the host's last call.
    StaleState,
    /// `unknown_state` (409): the state's turn is ahead of the host's last call.
    UnknownState,
    /// `upstream` (502).
    Upstream,
    /// `wrong_channel` (409).
    WrongChannel,
}

impl HostErrorCode {
    /// Maps the wire string.
    pub fn from_code(code: &str) -> Self {
        match code {
            "bad_request" => Self::BadRequest,
            "bad_state_signature" => Self::BadStateSignature,
            "channel_final" => Self::ChannelFinal,
            "malformed_state" => Self::MalformedState,
            "not_final" => Self::NotFinal,
            "not_replayable" => Self::NotReplayable,
            "over_escrow_cap" => Self::OverEscrowCap,
            "receipt_log_unwritable" => Self::ReceiptLogUnwritable,
            "stale_state" => Self::StaleState,
            "unknown_state" => Self::UnknownState,
            "upstream" => Self::Upstream,
            "wrong_channel" => Self::WrongChannel,
            _ => Self::Other,
        }
    }

    /// The wire string ([`Self::from_code`]'s inverse); `None` for [`Self::Other`], whose string was not kept.
    pub fn as_code(self) -> Option<&'static str> {
        Some(match self {
            Self::BadRequest => "bad_request",
            Self::BadStateSignature => "bad_state_signature",
            Self::ChannelFinal => "channel_final",
            Self::MalformedState => "malformed_state",
            Self::NotFinal => "not_final",
            Self::NotReplayable => "not_replayable",
            Self::OverEscrowCap => "over_escrow_cap",
            Self::ReceiptLogUnwritable => "receipt_log_unwritable",
            Self::StaleState => "stale_state",
            Self::UnknownState => "unknown_state",
            Self::Upstream => "upstream",
            Self::WrongChannel => "wrong_channel",
            Self::Other => return None,
        })
    }
}

/// Why a tenant operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenantError {
    /// The response body could not be read.
    #[error("reading the host's response body failed")]
    BodyRead,
    /// The host URL is not `https://host:port`.
    #[error("the host URL must be https://host[:port]")]
    BadHostUrl,
    /// The encoded inner message was not valid Binary HTTP.
    #[error("binary HTTP encoding failed")]
    Bhttp(#[source] bhttp::Error),
    /// The evidence bundle did not verify.
    #[error("the host's evidence was rejected")]
    Bundle(#[from] VerifyError),
    /// A receipt failed the SPUR-IC checks; the session stopped and the receipt was stored for a dispute.
    #[error("receipt check failed; the session is stopped: dispute this call{}", DisputeAt(.record))]
    ReceiptRejected {
        /// The check that failed.
        #[source]
        error: ReceiptError,
        /// The directory holding the offending receipt and the last agreed state (`None` if writing it
        /// failed).
        record: Option<std::path::PathBuf>,
    },
    /// A newly verified bundle cannot continue the channel (another host account or domain): see
    /// `Session::resume`.
    #[error("the host's new evidence cannot continue this channel")]
    CannotResume(#[source] ReceiptError),
    /// Connecting to the host failed.
    #[error("connecting to the host failed")]
    Connect(#[source] std::io::Error),
    /// The host answered with an error inside the encrypted response.
    #[error("the host refused the call: {code:?} (HTTP {status})")]
    Host {
        /// The error code.
        code: HostErrorCode,
        /// The inner HTTP status.
        status: u16,
    },
    /// The outer HTTP status was not 200 (an opaque 400 means the host could not decrypt the request).
    #[error("the host answered HTTP {status}")]
    HostStatus {
        /// The status.
        status: u16,
    },
    /// HTTP to the host failed.
    #[error("HTTP to the host failed")]
    Http(#[source] hyper::Error),
    /// An invariant of this library broke.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// Reading or writing the state directory failed.
    #[error("state directory I/O failed")]
    Io(#[source] std::io::Error),
    /// A channel stored in the state directory cannot be continued (`Session::resume_from_store`).
    #[error("the stored channel cannot be resumed")]
    Resume(#[from] ResumeError),
    /// A successful response carried no receipt.
    #[error("the response carried no x-dait-receipt")]
    MissingReceipt,
    /// OHTTP encapsulation failed, or the key configuration is unusable.
    #[error("OHTTP failed")]
    Ohttp(#[source] ::ohttp::Error),
    /// The response could not be decrypted or authenticated.
    #[error("the response failed to decrypt")]
    ResponseDecrypt,
    /// Sealing a chunked request failed.
    #[error("sealing the request failed")]
    Seal(#[source] std::io::Error),
    /// An earlier receipt check failed, so this session accepts no more calls.
    #[error("the session is stopped after a failed receipt check; dispute it")]
    SessionStopped,
    /// The request body is not a JSON object the proxy can send (for a call sent replayable: not a JSON
    /// object, or its `seed` is not an integer from 0 to 2^63-1).
    #[error("the request body is not a JSON object")]
    BadRequestBody,
    /// A started stream ended, authenticated, with the host's `x-dait-error` trailer instead of a
    /// receipt (its engine failed mid-stream): the data received is not billed, and the channel state is
    /// unchanged, so the next call continues at the same turn.
    #[error("the host ended the stream with an error: {code:?}")]
    StreamFailed {
        /// The error code of the trailer.
        code: HostErrorCode,
    },
    /// A streamed response ended without its authenticated final chunk.
    #[error("the streamed response was truncated (no authenticated final chunk)")]
    StreamTruncated,
    /// The host did not answer in time.
    #[error("the host did not answer in time")]
    Timeout,
    /// Building the TLS client failed.
    #[error("TLS configuration failed")]
    TlsConfig(#[source] rustls::Error),
    /// The TLS handshake failed (for a pinned client: the host presented another key).
    #[error("TLS handshake with the host failed")]
    TlsHandshake(#[source] std::io::Error),
    /// The TLS key the host presented is not the attested `tls_spki`.
    #[error("the host's TLS key is not the attested one")]
    TlsSpkiMismatch,
    /// The inner message was a request, or lacked a status.
    #[error("the inner message is not an HTTP response")]
    UnexpectedInnerMessage,
    /// The tenant's wallet key could not be loaded or created.
    #[error("wallet key failed")]
    Wallet(#[from] WalletError),
}

/// Formats where a dispute record was written.
struct DisputeAt<'a>(&'a Option<std::path::PathBuf>);

impl std::fmt::Display for DisputeAt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(dir) => write!(f, " with the record in {}", dir.display()),
            None => f.write_str(" (writing the record failed)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HostErrorCode;

    #[test]
    fn host_error_codes_round_trip() {
        for code in [
            "bad_request",
            "bad_state_signature",
            "malformed_state",
            "not_final",
            "not_replayable",
            "over_escrow_cap",
            "receipt_log_unwritable",
            "stale_state",
            "unknown_state",
            "upstream",
            "wrong_channel",
        ] {
            let parsed = HostErrorCode::from_code(code);
            assert_ne!(parsed, HostErrorCode::Other, "{code}");
            assert_eq!(parsed.as_code(), Some(code));
        }
        assert_eq!(HostErrorCode::from_code("internal"), HostErrorCode::Other);
        assert_eq!(HostErrorCode::Other.as_code(), None);
    }
}
