//! What a plain and a streamed call share once the request is decrypted: decoding the inner
//! Binary HTTP request and its escrow bound, the body sent to the engine, opening the channel's
//! lease, and signing and logging the receipt.

use dait_chain_client::WireMessage as _;
use std::io::Cursor;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dait_chain_client::{B256, NormalizedResponse, SignedChannelState, Usage, request_hash};
use serde_json::{Map, Value};
use tracing::{debug, warn};

use super::error::CallError;
use super::{App, DEFAULT_MAX_TOKENS, PROMPT_TOKEN_MARGIN, STATE_HEADER};
use crate::engine::{ask_for_usage, response_hash};
use crate::receipt::{CallFacts, Lease, ReceiptParams};

/// A decoded inner request.
pub(crate) struct Inner {
    /// The engine path (`/v1/chat/completions` or `/v1/completions`).
    pub(super) path: &'static str,
    /// The tenant's signed channel state.
    pub(crate) state: SignedChannelState,
    /// The body as the tenant sent it (what the receipt's `request_hash` covers).
    pub(super) body: Vec<u8>,
    /// The body as JSON.
    pub(super) json: Map<String, Value>,
    /// `"stream": true`.
    pub(crate) stream: bool,
    /// The most this call can cost, for the escrow check.
    pub(crate) worst_case: u128,
}

/// Decode the decrypted inner request and bound its cost.
pub(crate) fn decode_inner(plaintext: &[u8], params: &ReceiptParams) -> Result<Inner, CallError> {
    let msg = bhttp::Message::read_bhttp::<_, Cursor<&[u8]>>(&mut Cursor::new(plaintext))
        .map_err(|_| CallError::BadRequest("inner message is not binary HTTP"))?;
    let control = msg.control();
    if control.method() != Some(b"POST") {
        return Err(CallError::BadRequest("inner method must be POST"));
    }
    let path = match control.path() {
        Some(b"/v1/chat/completions") => "/v1/chat/completions",
        Some(b"/v1/completions") => "/v1/completions",
        _ => {
            return Err(CallError::BadRequest(
                "inner path must be /v1/chat/completions or /v1/completions",
            ));
        }
    };
    let state = parse_state(
        msg.header()
            .get(STATE_HEADER)
            .ok_or(CallError::BadRequest("missing x-dait-state"))?,
    )?;
    let body = msg.content().to_vec();
    let json: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|_| CallError::BadRequest("body is not a JSON object"))?;
    let stream = match json.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(CallError::BadRequest("stream must be a boolean")),
    };
    let max_tokens = match json
        .get("max_tokens")
        .or_else(|| json.get("max_completion_tokens"))
    {
        None | Some(Value::Null) => DEFAULT_MAX_TOKENS,
        Some(v) => v.as_u64().filter(|n| *n > 0).ok_or(CallError::BadRequest(
            "max_tokens must be a positive integer",
        ))?,
    };
    let n = match json.get("n") {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or(CallError::BadRequest("n must be a positive integer"))?,
    };
    let prompt_bound = (body.len() as u64).saturating_add(PROMPT_TOKEN_MARGIN);
    let worst_case = dait_chain_client::amount(
        prompt_bound,
        params.price_in,
        max_tokens.saturating_mul(n),
        params.price_out,
    )
    .unwrap_or(u128::MAX);
    Ok(Inner {
        path,
        state,
        body,
        json,
        stream,
        worst_case,
    })
}

/// Decode the `x-dait-state` field's value (the tenant's signed channel state).
pub(crate) fn parse_state(value: &[u8]) -> Result<SignedChannelState, CallError> {
    let text = std::str::from_utf8(value)
        .map_err(|_| CallError::BadRequest("x-dait-state is not text"))?;
    SignedChannelState::from_header_value(text)
        .map_err(|_| CallError::BadRequest("x-dait-state does not decode"))
}

/// The body sent to the engine: the tenant's JSON, with `max_tokens` set if absent.
pub(crate) fn engine_body(inner: &Inner) -> Bytes {
    let mut json = inner.json.clone();
    if !json.contains_key("max_tokens") && !json.contains_key("max_completion_tokens") {
        json.insert("max_tokens".into(), DEFAULT_MAX_TOKENS.into());
    }
    if inner.stream {
        ask_for_usage(&mut json);
    }
    Bytes::from(Value::Object(json).to_string())
}

/// Check the tenant's channel state and reserve the channel for this call.
pub(super) fn begin(app: &App, inner: &Inner) -> Result<Lease, CallError> {
    app.channels.begin(
        &inner.state,
        &app.keys.domain,
        app.keys.host_key_id,
        inner.worst_case,
    )
}

/// Refuse a call at once, before it reaches the engine, while the receipt log cannot make its
/// receipt durable (out of space, this probes for space at most once a second).
pub(super) async fn receipt_log_writable(app: &App) -> Result<(), CallError> {
    let log = app
        .receipt_log
        .as_ref()
        .ok_or(CallError::Internal("no receipt log"))?;
    Ok(log.ensure_writable().await?)
}

/// Sign the receipt of a finished call, log it durably and advance the channel; returns the
/// receipt's header value.
pub(super) async fn commit_receipt(
    app: &App,
    inner: &Inner,
    lease: Lease,
    normalised: &NormalizedResponse,
    usage: Usage,
    request_ct_hash: B256,
) -> Result<String, CallError> {
    let facts = CallFacts {
        request_hash: request_hash(&inner.body),
        response_hash: response_hash(normalised, usage)?,
        request_ct_hash,
        response_ct_hash: B256::ZERO,
        tokens_in: usage.prompt_tokens,
        tokens_out: usage.completion_tokens,
        timestamp: now(),
    };
    let receipt_log = app
        .receipt_log
        .as_ref()
        .ok_or(CallError::Internal("no receipt log"))?;
    let signed = lease
        .commit(
            &facts,
            &app.params,
            &app.keys.receipt,
            &app.keys.domain,
            receipt_log,
        )
        .await?;
    app.metrics
        .metered(usage.prompt_tokens, usage.completion_tokens);
    Ok(signed.to_header_value())
}

/// Log a failed call once, at the level its kind deserves (tenant mistakes at `debug`).
pub(super) fn log_call_error(e: &CallError) {
    match e {
        CallError::Internal(what) => tracing::error!(what, "internal error"),
        CallError::Upstream(err) => warn!(error = %err, "upstream failed"),
        other => debug!(error = %other, "call rejected"),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
