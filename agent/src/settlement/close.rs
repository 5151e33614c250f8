//! The cooperative close (PROTOCOL.md §4; feature `settlement`): the tenant posts its tenant-signed final
//! `SignedChannelState` (`is_final`, the base64url header value `dait-tenant channel final-state` prints) to
//! `POST /v1/channel/close`; the agent checks it against its channel head and answers the same state with its
//! P-256 counter-signature over the state's digest (base64url), the host key id in `x-dait-host-key-id`.
//! A final state is never accepted for a call (the core's `ChannelHead` refuses it).
//!
//! Once a final state is counter-signed the channel is marked closed ([`crate::receipt::Channels::mark_closed`]):
//! every later call on it is refused as `channel_final`, so no receipt is made that the close would not pay.

use bytes::Bytes;
use dait_chain_client::{ChannelHead, SignedChannelState, StateError, WireMessage as _};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::http::{App, Body};

/// The endpoint's path.
pub const PATH: &str = "/v1/channel/close";

/// The largest body taken (a signed state's header value is a few hundred bytes).
const MAX_BODY: usize = 4096;

/// Why a final state is not counter-signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// The body is not a base64url `SignedChannelState`.
    #[error("malformed signed channel state")]
    Malformed,
    /// The state is not final (`is_final` unset).
    #[error("the state is not final")]
    NotFinal,
    /// The state does not match the channel's head, or its signature or host is wrong.
    #[error("state rejected")]
    State(#[from] StateError),
}

impl CloseError {
    /// The error code and HTTP status.
    pub const fn code(&self) -> (&'static str, u16) {
        match self {
            Self::Malformed => ("malformed_state", 400),
            Self::NotFinal => ("not_final", 400),
            Self::State(e) => e.code(),
        }
    }
}

/// Checks the tenant-signed final state `text` (base64url `SignedChannelState`) against `app`'s head of its
/// channel (turn, cumulative and last receipt hash equal the head's, the tenant's signature valid, `host` this
/// agent's operator account) and returns the state counter-signed by the receipt key.
pub fn countersign(app: &App, text: &str) -> Result<SignedChannelState, CloseError> {
    let signed =
        SignedChannelState::from_header_value(text.trim()).map_err(|_| CloseError::Malformed)?;
    let s = &signed.state;
    if !s.is_final {
        return Err(CloseError::NotFinal);
    }
    let host = app.keys.host_account;
    if s.host != host {
        return Err(StateError::WrongHost.into());
    }
    signed
        .verify_tenant(&app.keys.domain)
        .map_err(StateError::TenantSignature)?;
    let head = app
        .channels
        .head(&s.channel_id, host)
        .unwrap_or_else(|| ChannelHead::open(s.channel_id, host));
    if s.turn < head.last_call_seq {
        return Err(StateError::Stale {
            turn: s.turn,
            expected: head.last_call_seq,
        }
        .into());
    }
    if s.turn > head.last_call_seq {
        return Err(StateError::Unknown {
            turn: s.turn,
            expected: head.last_call_seq,
        }
        .into());
    }
    if s.last_receipt_hash != head.last_receipt_hash {
        return Err(StateError::LastReceiptHash.into());
    }
    if s.cumulative != head.cumulative {
        return Err(StateError::CumulativeMismatch.into());
    }
    let digest = s.signing_digest(&app.keys.domain);
    let host_signature = Some(app.keys.receipt.sign_prehash(&digest));
    Ok(SignedChannelState {
        host_signature,
        ..signed
    })
}

fn response(status: StatusCode, key_id: Option<String>, body: String) -> Response<Body> {
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain");
    if let Some(k) = key_id {
        b = b.header("x-dait-host-key-id", k);
    }
    b.body(Full::new(Bytes::from(body)).boxed_unsync())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync()))
}

/// `POST /v1/channel/close`.
pub async fn handle(app: &App, req: Request<Incoming>) -> Response<Body> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return response(StatusCode::PAYLOAD_TOO_LARGE, None, String::new()),
    };
    let result = std::str::from_utf8(&body)
        .map_err(|_| CloseError::Malformed)
        .and_then(|text| countersign(app, text));
    match result {
        Ok(signed) => {
            app.channels.mark_closed(signed.state.channel_id);
            tracing::info!(channel = %signed.state.channel_id, turn = signed.state.turn, "final state counter-signed");
            response(
                StatusCode::OK,
                Some(app.keys.host_key_id.to_string()),
                signed.to_header_value(),
            )
        }
        Err(e) => {
            tracing::debug!(error = %e, "final state refused");
            let (code, status) = e.code();
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            response(
                status,
                None,
                serde_json::json!({ "error": code }).to_string(),
            )
        }
    }
}
