//! `GET /v1/receipts/<channel_id>/<call_seq>`: a receipt from the receipt log, again. A receipt logged but never
//! delivered (the agent crashed, or the tenant left, between logging and answering) is then not lost to the
//! tenant, and a tenant that lost its own copy gets it back.
//!
//! Only the channel's tenant may ask: the request carries `x-dait-state`, any `SignedChannelState` of the
//! channel (base64url protobuf, as on a call), whose tenant signature must recover the channel's tenant as the
//! log records it. Answers: `200` with the protobuf `SignedReceipt` exactly as logged and served
//! (`application/vnd.dait.receipt`); `400` for a malformed path or state; `403` for a state of another channel
//! or a bad signature; `404` when the log holds no such receipt of that tenant (another tenant cannot tell
//! whether it exists); `503` without a receipt log.

use std::sync::Arc;

use dait_chain_client::{B256, SignedChannelState, WireMessage as _};
use http::{HeaderMap, StatusCode};

use super::routes::{empty, full};
use super::{App, Body};
use crate::receipt_log::RecordHeader;

/// The path prefix.
pub const PREFIX: &str = "/v1/receipts/";

/// The content type of the answer.
pub const RECEIPT_TYPE: &str = "application/vnd.dait.receipt";

/// `(channel_id, call_seq)` from the rest of the path (`<64 hex>/<decimal>`).
fn parse(rest: &str) -> Option<(B256, u64)> {
    let (id, seq) = rest.split_once('/')?;
    let channel = B256::from_hex(id)?;
    let seq: u64 = seq.parse().ok()?;
    (seq > 0).then_some((channel, seq))
}

/// Looks the receipt up in the log (its index, then one positioned read); `Ok(None)` when absent.
fn lookup(
    app: &App,
    channel: B256,
    call_seq: u64,
) -> Result<Option<(RecordHeader, Vec<u8>)>, crate::receipt_log::ReceiptLogError> {
    let Some(log) = &app.receipt_log else {
        return Ok(None);
    };
    Ok(log
        .get(&channel.0, call_seq)?
        .map(|r| (r.header, r.signed_receipt)))
}

/// `GET /v1/receipts/<channel_id>/<call_seq>`.
pub(super) async fn handle(
    app: &Arc<App>,
    rest: &str,
    headers: &HeaderMap,
) -> http::Response<Body> {
    let Some((channel, call_seq)) = parse(rest) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let Some(state) = headers
        .get("x-dait-state")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| SignedChannelState::from_header_value(v.trim()).ok())
    else {
        return empty(StatusCode::BAD_REQUEST);
    };
    if state.state.channel_id != channel {
        return empty(StatusCode::FORBIDDEN);
    }
    let Ok(tenant) = state.verify_tenant(&app.keys.domain) else {
        return empty(StatusCode::FORBIDDEN);
    };
    if app.receipt_log.is_none() {
        return empty(StatusCode::SERVICE_UNAVAILABLE);
    }
    let a = Arc::clone(app);
    let found = tokio::task::spawn_blocking(move || lookup(&a, channel, call_seq)).await;
    let (header, bytes) = match found {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => return empty(StatusCode::NOT_FOUND),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "receipt log unreadable");
            return empty(StatusCode::INTERNAL_SERVER_ERROR);
        }
        Err(_) => return empty(StatusCode::INTERNAL_SERVER_ERROR),
    };
    // Another signer learns nothing: the same 404 as for a receipt that does not exist.
    if header.tenant != tenant.0 {
        return empty(StatusCode::NOT_FOUND);
    }
    full(StatusCode::OK, Some(RECEIPT_TYPE), bytes)
}
