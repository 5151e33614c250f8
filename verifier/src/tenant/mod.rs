//! The tenant's client: verify a host, talk to it over OHTTP, check every receipt (feature `tenant`).
//!
//! A [`Session`] is one channel with one verified host: [`Session::open`] fetches the evidence bundle for a
//! fresh nonce over TLS, verifies it under a [`crate::bundle::Policy`], checks that the TLS key the host
//! presented is the attested one and pins it. Each [`Session::call`] seals an OpenAI-compatible request to
//! the attested HPKE key with the latest counter-signed channel state, opens the reply, runs the SPUR-IC
//! receipt checks ([`crate::receipt`]) and signs the next channel state. A failed check stops the session
//! and writes the offending receipt under the state directory, so it can be disputed.
//!
//! [`proxy`] serves the same flow as a local OpenAI-compatible HTTP endpoint.

mod ohttp;
pub mod proxy;
mod session;
mod store;
mod tls;
mod transport;
mod wallet;

pub use session::{
    CallOutcome, DEFAULT_CALL_TIMEOUT, Session, SessionConfig, StreamCall, StreamItem, verify_host,
};
pub use store::DisputeRecord;
pub use transport::HostClient;
pub use wallet::{Wallet, WalletError};

use crate::bundle::VerifyError;
use crate::receipt::ReceiptError;

/// An error code the host returned inside the encrypted response (PROTOCOL.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostErrorCode {
    /// `bad_request` (400).
    BadRequest,
    /// `bad_state_signature` (401).
    BadStateSignature,
    /// A code this client does not know.
    Other,
    /// `over_escrow_cap` (402).
    OverEscrowCap,
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
            "over_escrow_cap" => Self::OverEscrowCap,
            "stale_state" => Self::StaleState,
            "unknown_state" => Self::UnknownState,
            "upstream" => Self::Upstream,
            "wrong_channel" => Self::WrongChannel,
            _ => Self::Other,
        }
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
    /// The request body is not a JSON object the proxy can send.
    #[error("the request body is not a JSON object")]
    BadRequestBody,
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
