//! Errors of a call after decryption, returned inside the encrypted response as
//! `{"error": {"code": "...", "message": "..."}}` (PROTOCOL.md §6), and the opaque outer errors.

use dait_chain_client::StateError;
use serde_json::json;

use crate::receipt_log::{LogState, ReceiptLogError};

/// Why a decrypted call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The inner request is malformed (BHTTP, method, path, JSON, state encoding).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The channel state was rejected.
    #[error("channel state rejected")]
    State(#[from] StateError),
    /// Another call on this channel is in flight.
    #[error("another call on this channel is in flight")]
    Busy,
    /// The state is for a channel of another tenant.
    #[error("channel belongs to another tenant")]
    WrongTenant,
    /// The real cost would exceed the escrow cap.
    #[error("real cost exceeds the escrow cap")]
    OverEscrowCap,
    /// A call marked replayable (`x-dait-replayable: 1`) that this agent cannot serve replayably: its
    /// engine is not declared deterministic, or the request's sampling is not replayable (PROTOCOL.md
    /// §6, "Replayable calls").
    #[error("not replayable: {0}")]
    NotReplayable(&'static str),
    /// No upstream engine is configured.
    #[error("no upstream configured")]
    NoUpstream,
    /// The engine failed.
    #[error("upstream failed")]
    Upstream(#[from] crate::engine::EngineError),
    /// An internal failure (logged once).
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The tenant closed its connection before its streamed answer was complete: no receipt is made,
    /// and nothing is sent (logged at `debug`: any client can cause it).
    #[error("the tenant disconnected")]
    TenantGone,
    /// The receipt log cannot make a receipt durable, so no call is taken (the receipt log logs
    /// why, once).
    #[error("the host's receipt log is not writable: {0}")]
    ReceiptLog(LogState),
}

impl From<ReceiptLogError> for CallError {
    fn from(e: ReceiptLogError) -> Self {
        match e {
            ReceiptLogError::Unwritable(state) => Self::ReceiptLog(state),
            _ => Self::Internal("receipt log"),
        }
    }
}

impl CallError {
    /// The PROTOCOL.md §6 code and HTTP status.
    pub fn code(&self) -> (&'static str, u16) {
        match self {
            Self::BadRequest(_) => ("bad_request", 400),
            Self::State(e) => e.code(),
            Self::Busy => ("stale_state", 409),
            Self::WrongTenant => ("wrong_channel", 409),
            Self::OverEscrowCap => ("over_escrow_cap", 402),
            Self::NotReplayable(_) => ("not_replayable", 422),
            Self::NoUpstream | Self::Upstream(_) => ("upstream", 502),
            Self::Internal(_) => ("internal", 500),
            // Never sent: there is nobody to send it to (499, as the client-closed-request convention).
            Self::TenantGone => ("tenant_gone", 499),
            Self::ReceiptLog(_) => ("receipt_log_unwritable", 503),
        }
    }

    /// The encrypted error body. Messages are static (never echo request content).
    pub fn body(&self) -> Vec<u8> {
        let (code, _) = self.code();
        let message = match self {
            Self::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        json!({"error": {"code": code, "message": message}})
            .to_string()
            .into_bytes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(CallError::BadRequest("x").code(), ("bad_request", 400));
        assert_eq!(CallError::Busy.code().1, 409);
        assert_eq!(
            CallError::State(StateError::OverEscrowCap).code(),
            ("over_escrow_cap", 402)
        );
        assert_eq!(CallError::NoUpstream.code(), ("upstream", 502));
        assert_eq!(CallError::TenantGone.code(), ("tenant_gone", 499));
        let full = CallError::from(ReceiptLogError::Unwritable(LogState::NoSpace));
        assert_eq!(full.code(), ("receipt_log_unwritable", 503));
        assert!(full.to_string().contains("no space"), "{full}");
        assert!(matches!(
            CallError::from(ReceiptLogError::Closed),
            CallError::Internal(_)
        ));
        let e = CallError::NotReplayable("n must be absent or 1");
        assert_eq!(e.code(), ("not_replayable", 422));
        let b: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(b["error"]["code"], "not_replayable");
        assert_eq!(
            b["error"]["message"],
            "not replayable: n must be absent or 1"
        );
        let b: serde_json::Value =
            serde_json::from_slice(&CallError::Internal("secret detail").body()).unwrap();
        assert_eq!(b["error"]["message"], "internal error");
    }
}
