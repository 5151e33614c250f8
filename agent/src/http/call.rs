//! What a plain and a streamed call share once the request is decrypted: decoding the inner
//! Binary HTTP request and its escrow bound, whether it is a replayable call and with which seed,
//! the body sent to the engine, opening the channel's lease, and signing and logging the receipt.

use dait_chain_client::WireMessage as _;
use std::io::Cursor;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dait_chain_client::replay;
use dait_chain_client::{B256, NormalizedResponse, SignedChannelState, Usage, request_hash};
use serde_json::{Map, Value};
use tracing::{debug, warn};

use super::error::CallError;
use super::{App, DEFAULT_MAX_TOKENS, PROMPT_TOKEN_MARGIN, REPLAYABLE_HEADER, STATE_HEADER};
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
    /// The body as JSON, with `seed` set to [`Inner::replay_seed`] when the call is replayable.
    pub(super) json: Map<String, Value>,
    /// `"stream": true`.
    pub(crate) stream: bool,
    /// The most this call can cost, for the escrow check.
    pub(crate) worst_case: u128,
    /// The seed sent to the engine when the call is replayable; `None` otherwise.
    pub(crate) replay_seed: Option<u64>,
}

/// Decode the decrypted inner request, bound its cost, and decide whether it is served as a
/// replayable call (only when `engine_deterministic`, the operator's declaration).
pub(crate) fn decode_inner(
    plaintext: &[u8],
    params: &ReceiptParams,
    engine_deterministic: bool,
) -> Result<Inner, CallError> {
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
    let replayable = match msg.header().get(REPLAYABLE_HEADER) {
        None => false,
        Some(b"1") => true,
        Some(_) => return Err(CallError::BadRequest("x-dait-replayable must be 1")),
    };
    let body = msg.content().to_vec();
    let mut json: Map<String, Value> = serde_json::from_slice(&body)
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
    let replay_seed = if replayable {
        let seed = replay_seed(&json, engine_deterministic)?;
        json.insert("seed".into(), seed.into());
        Some(seed)
    } else {
        None
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
        replay_seed,
    })
}

/// The seed a call marked replayable is served with ([`dait_chain_client::replay::replay_seed`]); refused
/// ([`CallError::NotReplayable`]) unless the engine is declared deterministic and the request is
/// replayable.
pub(crate) fn replay_seed(
    json: &Map<String, Value>,
    engine_deterministic: bool,
) -> Result<u64, CallError> {
    if !engine_deterministic {
        return Err(CallError::NotReplayable(
            "the engine is not declared deterministic",
        ));
    }
    replay::replay_seed(json).map_err(|e| CallError::NotReplayable(e.reason()))
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
    replay::limit_tokens(&mut json);
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
        app.keys.host_account,
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
        replay_seed: inner.replay_seed,
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use dait_chain_client::{Address, ChannelState, Domain, TenantSigner};
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn seed_of(v: Value) -> Result<u64, &'static str> {
        replay_seed(&object(v), true).map_err(|e| match e {
            CallError::NotReplayable(why) => why,
            other => panic!("unexpected {other:?}"),
        })
    }

    #[test]
    fn replayable_only_with_the_declaration_and_each_refusal_says_why() {
        assert_eq!(seed_of(json!({"temperature": 0.9, "seed": 7})), Ok(7));
        assert_eq!(seed_of(json!({"temperature": 0})), Ok(0));
        // The rules are chain-client's (tested there); the refusal carries their reason.
        assert_eq!(
            seed_of(json!({"temperature": 0.9})),
            Err("needs temperature 0 or a seed")
        );
        assert_eq!(
            seed_of(json!({"temperature": 0, "n": 2})),
            Err("n must be absent or 1")
        );
        assert_eq!(
            seed_of(json!({"temperature": 0, "seed": -1})),
            Err("seed must be an integer from 0 to 2^63-1")
        );
        // Without the operator's declaration nothing is replayable, however it samples.
        assert!(matches!(
            replay_seed(&object(json!({"temperature": 0})), false),
            Err(CallError::NotReplayable(
                "the engine is not declared deterministic"
            ))
        ));
    }

    /// An inner request for `body` with a decodable channel state and the replayable header's `value`.
    fn inner_request(body: &[u8], replayable: Option<&str>) -> Vec<u8> {
        let tenant = TenantSigner::generate(&mut rand::rngs::OsRng);
        let domain = Domain {
            chain_id: 1,
            settlement: Address([1; 20]),
        };
        let state = ChannelState::open(B256([3; 32]), 1000, tenant.address(), Address([2; 20]));
        let signed = SignedChannelState {
            tenant_signature: tenant.sign_state(&state, &domain),
            state,
            host_signature: None,
        };
        let mut m = bhttp::Message::request(
            b"POST".to_vec(),
            b"https".to_vec(),
            b"dait".to_vec(),
            b"/v1/chat/completions".to_vec(),
        );
        m.put_header("x-dait-state", signed.to_header_value());
        if let Some(v) = replayable {
            m.put_header("x-dait-replayable", v);
        }
        m.write_content(body);
        let mut out = Vec::new();
        m.write_bhttp(bhttp::Mode::KnownLength, &mut out).unwrap();
        out
    }

    fn params() -> ReceiptParams {
        ReceiptParams {
            host_key_id: B256::ZERO,
            keyset_hash: B256::ZERO,
            model_id: "m".into(),
            weight_hash: B256::ZERO,
            price_in: 1,
            price_out: 1,
            engine_build: B256::ZERO,
        }
    }

    #[test]
    fn a_replayable_call_sends_its_seed_and_hashes_the_request_as_sent() {
        let body = br#"{"messages":[],"temperature":0}"#;
        let inner = decode_inner(&inner_request(body, Some("1")), &params(), true).unwrap();
        assert_eq!(inner.replay_seed, Some(0));
        assert_eq!(inner.body, body, "request_hash covers the tenant's bytes");
        let sent: Value = serde_json::from_slice(&engine_body(&inner)).unwrap();
        assert_eq!(sent["seed"], 0);
        assert_eq!(sent["temperature"], 0);

        let seeded = br#"{"messages":[],"temperature":0.9,"seed":7}"#;
        let inner = decode_inner(&inner_request(seeded, Some("1")), &params(), true).unwrap();
        assert_eq!(inner.replay_seed, Some(7));
        let sent: Value = serde_json::from_slice(&engine_body(&inner)).unwrap();
        assert_eq!(sent["seed"], 7);
    }

    #[test]
    fn a_call_not_marked_replayable_is_forwarded_as_it_is() {
        // Its own seed goes to the engine untouched, and the receipt claims none.
        let body = br#"{"messages":[],"temperature":0.9,"seed":7}"#;
        let inner = decode_inner(&inner_request(body, None), &params(), true).unwrap();
        assert_eq!(inner.replay_seed, None);
        let sent: Value = serde_json::from_slice(&engine_body(&inner)).unwrap();
        assert_eq!(sent["seed"], 7);
        let greedy = br#"{"messages":[],"temperature":0}"#;
        let inner = decode_inner(&inner_request(greedy, None), &params(), false).unwrap();
        let sent: Value = serde_json::from_slice(&engine_body(&inner)).unwrap();
        assert!(sent.get("seed").is_none());
    }

    #[test]
    fn the_replayable_header_must_be_1() {
        let body = br#"{"messages":[],"temperature":0}"#;
        for value in ["true", "0", ""] {
            assert!(matches!(
                decode_inner(&inner_request(body, Some(value)), &params(), true),
                Err(CallError::BadRequest("x-dait-replayable must be 1"))
            ));
        }
        assert!(matches!(
            decode_inner(&inner_request(body, Some("1")), &params(), false),
            Err(CallError::NotReplayable(_))
        ));
    }
}
