//! A local OpenAI-compatible endpoint that runs the whole tenant flow for each request.
//!
//! Serves, on a loopback address:
//! - `POST /v1/chat/completions` and `POST /v1/completions`, streamed (`"stream": true`) or not: the body is
//!   sent unchanged, encrypted, to the verified host; the reply comes back as the engine produced it, after
//!   its receipt passed every check. Non-streamed replies carry the receipt in `X-DAIT-Receipt` and the new
//!   channel state in `X-DAIT-State`; streamed replies carry the receipt in an SSE comment line
//!   (`: x-dait-receipt <base64url>`) sent just before `data: [DONE]`, which is held back until the receipt
//!   verified. A failed check ends the stream with an error event instead.
//! - `GET /dait/receipts`: every verified receipt of the channel, as JSON.
//! - `GET /dait/state`: the latest channel state the tenant signed, as JSON.
//! - `POST /dait/resume`: re-verifies the host after it restarted and continues the channel with its new
//!   receipt key (`Session::resume`: same `host_account`, from the last co-signed state). A call, streamed or
//!   not, whose TLS handshake fails (the pinned key is gone: a new boot) does this once by itself and is
//!   sent again; nothing was sent to the host before the handshake.
//! - `GET /healthz`.
//!
//! One proxy is one channel; requests on it are serialised.
//!
//! In redundant mode ([`spawn_redundant`], `dait-tenant proxy --redundant N`) the proxy serves from N hosts,
//! each on its own channel ([`crate::redundant`]): a non-streamed replayable request goes to all of them
//! and the majority's answer comes back with `X-DAIT-Agreement: k/N` and `X-DAIT-Host`; a disagreement adds
//! `X-DAIT-Dispute: <file>`, the dispute evidence written under the state directory and listed by
//! `GET /dait/disputes`. No majority: 502 `dait_no_majority`. A request that is not replayable, or
//! streamed: 400 `not_replayable`, before anything is sent. `GET /dait/state` lists one state per host.

use dait_chain_client::WireMessage as _;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use dait_verifier::receipt::{SignedChannelState, VerifiedReceipt};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, watch};

use crate::redundant::{Redundant, RedundantError, list_disputes};
use crate::session::{CallOutcome, Session, StreamItem};
use crate::{HostErrorCode, TenantError};

/// Largest request body the proxy accepts.
const MAX_REQUEST: usize = 4 << 20;

type Body = BoxBody<Bytes, Infallible>;

/// Where the proxy sends requests.
enum Backend {
    /// One host, one channel.
    Single(Arc<Mutex<Session>>),
    /// N hosts, majority on the response hash.
    Redundant(Arc<Redundant>),
}

struct Shared {
    backend: Backend,
    receipts: std::sync::Mutex<Vec<Value>>,
    state: std::sync::Mutex<Value>,
}

/// A running proxy.
#[derive(Debug)]
pub struct ProxyHandle {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ProxyHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the accept loop ends (it ends on [`Self::shutdown`] or a listener error).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Starts serving `session` on `listener`.
pub fn spawn(listener: TcpListener, session: Session) -> Result<ProxyHandle, TenantError> {
    let state = state_json(session.state());
    serve(
        listener,
        Shared {
            backend: Backend::Single(Arc::new(Mutex::new(session))),
            receipts: std::sync::Mutex::new(Vec::new()),
            state: std::sync::Mutex::new(state),
        },
    )
}

/// Starts serving `redundant` (N hosts, majority on the response hash) on `listener`.
pub async fn spawn_redundant(
    listener: TcpListener,
    redundant: Redundant,
) -> Result<ProxyHandle, TenantError> {
    let states = Value::Array(redundant.states().await.iter().map(state_json).collect());
    serve(
        listener,
        Shared {
            backend: Backend::Redundant(Arc::new(redundant)),
            receipts: std::sync::Mutex::new(Vec::new()),
            state: std::sync::Mutex::new(states),
        },
    )
}

fn serve(listener: TcpListener, shared: Shared) -> Result<ProxyHandle, TenantError> {
    let addr = listener.local_addr().map_err(TenantError::Io)?;
    let shared = Arc::new(shared);
    let (shutdown, mut stop) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.changed() => break,
            };
            let (stream, _) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "proxy accept failed");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| handle(shared.clone(), request));
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "proxy connection ended with an error");
                }
            });
        }
    });
    Ok(ProxyHandle {
        addr,
        shutdown,
        task,
    })
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let response = match (request.method(), path.as_str()) {
        (&Method::POST, "/v1/chat/completions" | "/v1/completions") => {
            completion(shared, &path, request.into_body()).await
        }
        (&Method::GET, "/dait/receipts") => {
            let receipts = shared
                .receipts
                .lock()
                .map(|r| r.clone())
                .unwrap_or_default();
            json_response(StatusCode::OK, &Value::Array(receipts))
        }
        (&Method::GET, "/dait/state") => {
            let state = shared
                .state
                .lock()
                .map(|s| s.clone())
                .unwrap_or(Value::Null);
            json_response(StatusCode::OK, &state)
        }
        (&Method::GET, "/dait/disputes") => disputes(&shared),
        (&Method::POST, "/dait/resume") => resume(&shared).await,
        (&Method::GET, "/healthz") => plain(StatusCode::OK, ""),
        _ => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint on the dait tenant proxy",
        ),
    };
    Ok(response)
}

async fn completion(shared: Arc<Shared>, path: &str, body: Incoming) -> Response<Body> {
    let body = match http_body_util::Limited::new(body, MAX_REQUEST)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "request body unreadable or too large",
            );
        }
    };
    let stream = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => map.get("stream").and_then(Value::as_bool).unwrap_or(false),
        _ => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body must be a JSON object",
            );
        }
    };
    let session = match &shared.backend {
        Backend::Single(session) => session.clone(),
        Backend::Redundant(redundant) => {
            let redundant = redundant.clone();
            return redundant_completion(&shared, &redundant, path, body).await;
        }
    };
    if stream {
        streamed(shared, session, path.to_owned(), body).await
    } else {
        let mut session = session.lock().await;
        let mut result = session.call(path, body.clone()).await;
        if matches!(result, Err(TenantError::TlsHandshake(_))) && session.resume(None).await.is_ok()
        {
            result = session.call(path, body.clone()).await;
        }
        if is_stale(&result) && catch_up(&shared, &mut session).await {
            result = session.call(path, body).await;
        }
        match result {
            Ok(outcome) => {
                record(&shared, &outcome);
                let mut response = Response::new(full(outcome.body));
                *response.status_mut() = StatusCode::OK;
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                if let Ok(v) = header::HeaderValue::from_str(&outcome.receipt_b64) {
                    headers.insert("x-dait-receipt", v);
                }
                if let Ok(v) = header::HeaderValue::from_str(&outcome.state.to_header_value()) {
                    headers.insert("x-dait-state", v);
                }
                response
            }
            Err(error) => tenant_error_response(&error),
        }
    }
}

/// A streamed call: a task holds the session for the whole stream and feeds the response body.
async fn streamed(
    shared: Arc<Shared>,
    session: Arc<Mutex<Session>>,
    path: String,
    body: Vec<u8>,
) -> Response<Body> {
    let (head_tx, head_rx) = tokio::sync::oneshot::channel::<Result<(), TenantError>>();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let task_shared = shared.clone();
    tokio::spawn(async move {
        let mut session = session.lock_owned().await;
        // A failed TLS handshake (a new boot: the pinned key is gone) sent nothing to the host: resume the
        // channel with the host's new key once and send the call again, as for a non-streamed call.
        let mut first = session.call_stream(&path, body.clone()).await;
        if matches!(first, Err(TenantError::TlsHandshake(_))) {
            drop(first);
            first = match session.resume(None).await {
                Ok(()) => session.call_stream(&path, body.clone()).await,
                Err(error) => Err(error),
            };
        }
        if is_stale(&first) {
            drop(first);
            first = if catch_up(&task_shared, &mut session).await {
                session.call_stream(&path, body).await
            } else {
                Err(TenantError::Host {
                    code: HostErrorCode::StaleState,
                    status: 409,
                })
            };
        }
        let mut call = match first {
            Ok(call) => call,
            Err(error) => {
                let _ = head_tx.send(Err(error));
                return;
            }
        };
        // The stream is always driven to its end, even when the client has gone: the host has issued a
        // receipt for this call, and the channel can only continue once the tenant checked it.
        let mut client_gone = head_tx.send(Ok(())).is_err();
        let mut sse = SseHold::default();
        loop {
            match call.next().await {
                Some(Ok(StreamItem::Data(chunk))) => {
                    let out = sse.push(&chunk);
                    if !client_gone && !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                        client_gone = true;
                    }
                }
                Some(Ok(StreamItem::Done(outcome))) => {
                    record(&task_shared, &outcome);
                    let mut tail = sse.flush();
                    tail.extend_from_slice(
                        format!(": x-dait-receipt {}\n\n", outcome.receipt_b64).as_bytes(),
                    );
                    if sse.held_done {
                        tail.extend_from_slice(b"data: [DONE]\n\n");
                    }
                    let _ = tx.send(Bytes::from(tail)).await;
                    return;
                }
                Some(Err(error)) => {
                    let (_, value) = error_json(&error);
                    let mut tail = sse.flush();
                    tail.extend_from_slice(format!("data: {value}\n\n").as_bytes());
                    let _ = tx.send(Bytes::from(tail)).await;
                    return;
                }
                None => return,
            }
        }
    });
    match head_rx.await {
        Ok(Ok(())) => {
            let frames = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-cache"),
            );
            response
        }
        Ok(Err(error)) => tenant_error_response(&error),
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "stream task ended",
        ),
    }
}

/// A request in redundant mode: sent to every host, the majority's answer returned.
async fn redundant_completion(
    shared: &Shared,
    redundant: &Redundant,
    path: &str,
    body: Vec<u8>,
) -> Response<Body> {
    let result = redundant.call(path, body).await;
    let states = Value::Array(redundant.states().await.iter().map(state_json).collect());
    if let Ok(mut state) = shared.state.lock() {
        *state = states;
    }
    match result {
        Ok(agreed) => {
            if let Ok(mut receipts) = shared.receipts.lock() {
                for outcome in &agreed.accepted {
                    receipts.push(receipt_json(&outcome.receipt, &outcome.receipt_b64));
                }
            }
            let mut response = Response::new(full(agreed.outcome.body));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            for (name, value) in [
                ("x-dait-receipt", agreed.outcome.receipt_b64),
                ("x-dait-state", agreed.outcome.state.to_header_value()),
                (
                    "x-dait-agreement",
                    format!("{}/{}", agreed.agreeing, agreed.of),
                ),
                ("x-dait-host", agreed.host),
            ] {
                if let Ok(v) = header::HeaderValue::from_str(&value) {
                    headers.insert(name, v);
                }
            }
            insert_dispute_header(headers, agreed.evidence.as_deref());
            response
        }
        Err(RedundantError::NotReplayable(reason)) => error_response(
            StatusCode::BAD_REQUEST,
            "not_replayable",
            &format!("redundant mode sends replayable requests only: {reason}"),
        ),
        Err(error) => {
            tracing::warn!(error = %format_chain(&error), "redundant call failed");
            let mut response = error_response(
                StatusCode::BAD_GATEWAY,
                "dait_no_majority",
                &format_chain(&error),
            );
            if let RedundantError::NoMajority {
                agreeing,
                of,
                evidence,
            } = &error
            {
                let headers = response.headers_mut();
                if let Ok(v) = header::HeaderValue::from_str(&format!("{agreeing}/{of}")) {
                    headers.insert("x-dait-agreement", v);
                }
                insert_dispute_header(headers, evidence.as_deref());
            }
            response
        }
    }
}

/// `X-DAIT-Dispute: <file name>` for dispute evidence that was written.
fn insert_dispute_header(headers: &mut header::HeaderMap, evidence: Option<&std::path::Path>) {
    let name = evidence
        .and_then(std::path::Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    if let Some(Ok(v)) = name.map(|n| header::HeaderValue::from_str(&n)) {
        headers.insert("x-dait-dispute", v);
    }
}

/// `GET /dait/disputes`: the dispute evidence of redundant mode, each with its file name.
fn disputes(shared: &Shared) -> Response<Body> {
    let Backend::Redundant(redundant) = &shared.backend else {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "dispute evidence is listed in redundant mode only",
        );
    };
    match list_disputes(redundant.state_dir()) {
        Ok(list) => {
            let items = list
                .into_iter()
                .map(|(file, evidence)| json!({"file": file, "evidence": evidence}))
                .collect();
            json_response(StatusCode::OK, &Value::Array(items))
        }
        Err(error) => {
            tracing::error!(%error, "listing the dispute evidence failed");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "listing the dispute evidence failed",
            )
        }
    }
}

/// Passes server-sent events through as they complete, holding back `data: [DONE]`.
#[derive(Default)]
struct SseHold {
    pending: Vec<u8>,
    held_done: bool,
}

impl SseHold {
    /// Returns the complete events in `chunk` (plus earlier partial ones), minus `[DONE]`.
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = find_event_end(&self.pending) {
            let event: Vec<u8> = self.pending.drain(..end).collect();
            let text = String::from_utf8_lossy(&event);
            if text.trim() == "data: [DONE]" || text.trim() == "data:[DONE]" {
                self.held_done = true;
            } else {
                out.extend_from_slice(&event);
            }
        }
        out
    }

    /// Whatever is left (an unterminated last event).
    fn flush(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

/// The end (exclusive, after the blank line) of the first complete event in `buf`.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| i.saturating_add(2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i.saturating_add(4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `POST /dait/resume`: continue the channel with the host's new key after it restarted.
async fn resume(shared: &Shared) -> Response<Body> {
    let Backend::Single(session) = &shared.backend else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "resume applies to a single-host proxy",
        );
    };
    let mut session = session.lock().await;
    match session.resume(None).await {
        Ok(()) => json_response(
            StatusCode::OK,
            &json!({
                "host_key_id": session.bundle().host_key_id().to_string(),
                "keyset_hash": session.bundle().keyset_hash().to_string(),
                "host": session.state().state.host.to_string(),
                "turn": session.state().state.turn,
            }),
        ),
        Err(error) => tenant_error_response(&error),
    }
}

/// Publishes an accepted call to `/dait/receipts` and `/dait/state`.
/// Whether the host refused a call as `stale_state`: it is a turn ahead of this tenant.
fn is_stale<T>(result: &Result<T, TenantError>) -> bool {
    matches!(
        result,
        Err(TenantError::Host {
            code: HostErrorCode::StaleState,
            ..
        })
    )
}

/// The host is a turn ahead (it logged a receipt this tenant never got: it crashed, or the connection broke,
/// before the answer arrived): takes that receipt from the host's log ([`Session::catch_up`]), records it, and
/// says whether the call may be sent again on top of it.
async fn catch_up(shared: &Shared, session: &mut Session) -> bool {
    match session.catch_up().await {
        Ok(Some(receipt)) => {
            if let Ok(mut receipts) = shared.receipts.lock() {
                receipts.push(receipt_json(&receipt, &receipt.signed().to_header_value()));
            }
            if let Ok(mut state) = shared.state.lock() {
                *state = state_json(session.state());
            }
            true
        }
        Ok(None) => false,
        Err(error) => {
            tracing::warn!(error = %format_chain(&error), "catching up with the host's receipt failed");
            false
        }
    }
}

fn record(shared: &Shared, outcome: &CallOutcome) {
    if let Ok(mut receipts) = shared.receipts.lock() {
        receipts.push(receipt_json(&outcome.receipt, &outcome.receipt_b64));
    }
    if let Ok(mut state) = shared.state.lock() {
        *state = state_json(&outcome.state);
    }
}

/// A verified receipt as JSON (hashes and ids `0x` hex, amounts as decimal strings).
pub fn receipt_json(receipt: &VerifiedReceipt, receipt_b64: &str) -> Value {
    let r = receipt.receipt();
    json!({
        "receipt_hash": receipt.hash().to_string(),
        "version": r.version,
        "channel_id": r.channel_id.to_string(),
        "call_seq": r.call_seq,
        "host_key_id": r.host_key_id.to_string(),
        "keyset_hash": r.keyset_hash.to_string(),
        "model_id": r.model_id,
        "weight_hash": r.weight_hash.to_string(),
        "request_hash": r.request_hash.to_string(),
        "response_hash": r.response_hash.to_string(),
        "request_ct_hash": r.request_ct_hash.to_string(),
        "response_ct_hash": r.response_ct_hash.to_string(),
        "tokens_in": r.tokens_in,
        "tokens_out": r.tokens_out,
        "price_in": r.price_in.to_string(),
        "price_out": r.price_out.to_string(),
        "amount": r.amount.to_string(),
        "cumulative": r.cumulative.to_string(),
        "prev_receipt_hash": r.prev_receipt_hash.to_string(),
        "timestamp": r.timestamp,
        "seed": r.seed,
        "engine_build": r.engine_build.to_string(),
        "deterministic": r.deterministic,
        "signed_receipt": receipt_b64,
    })
}

/// A signed channel state as JSON.
pub fn state_json(signed: &SignedChannelState) -> Value {
    let s = &signed.state;
    json!({
        "channel_id": s.channel_id.to_string(),
        "turn": s.turn,
        "cumulative": s.cumulative.to_string(),
        "escrow_cap": s.escrow_cap.to_string(),
        "last_receipt_hash": s.last_receipt_hash.to_string(),
        "tenant": s.tenant.to_string(),
        "host": s.host.to_string(),
        "is_final": s.is_final,
        "tenant_signature": format!("0x{}", hex::encode(signed.tenant_signature.to_bytes())),
        "signed_state": signed.to_header_value(),
    })
}

/// The proxy's status and OpenAI-style error body for a failed call.
fn error_json(error: &TenantError) -> (StatusCode, Value) {
    let (status, code) = match error {
        TenantError::Host { code, status } => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
            code.as_code().unwrap_or("host_error"),
        ),
        TenantError::ReceiptRejected { .. } => (StatusCode::BAD_GATEWAY, "dait_receipt_rejected"),
        TenantError::SessionStopped => (StatusCode::SERVICE_UNAVAILABLE, "dait_session_stopped"),
        TenantError::StreamTruncated => (StatusCode::BAD_GATEWAY, "dait_stream_truncated"),
        _ => (StatusCode::BAD_GATEWAY, "dait_host_error"),
    };
    let message = format_chain(error);
    (
        status,
        json!({"error": {"code": code, "message": message, "type": "dait"}}),
    )
}

/// `error: cause: cause…`.
pub(crate) fn format_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn tenant_error_response(error: &TenantError) -> Response<Body> {
    tracing::warn!(error = %format_chain(error), "call failed");
    let (status, value) = error_json(error);
    json_response(status, &value)
}

fn full(bytes: Vec<u8>) -> Body {
    BodyExt::boxed(Full::new(Bytes::from(bytes)))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full(text.as_bytes().to_vec()));
    *response.status_mut() = status;
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string().into_bytes()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message, "type": "dait"}}),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn sse_hold_passes_events_and_holds_done() {
        let mut hold = SseHold::default();
        let out = hold.push(b"data: {\"a\":1}\n\ndata: {\"b\"");
        assert_eq!(out, b"data: {\"a\":1}\n\n");
        let out = hold.push(b":2}\n\ndata: [DONE]\n\n");
        assert_eq!(out, b"data: {\"b\":2}\n\n");
        assert!(hold.held_done);
        assert!(hold.flush().is_empty());
    }
}
