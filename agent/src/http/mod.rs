//! The tenant-facing HTTP server (PROTOCOL.md §6) and the request path: OHTTP decapsulation,
//! Binary HTTP decoding, channel-state check, forwarding to the engine, response encapsulation,
//! receipt signing and logging.

pub mod error;

use std::convert::Infallible;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dait_chain_client::{
    B256, Freshness, SignedChannelState, ciphertext_hash, encode_bundle, proto, request_hash,
};
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio_stream_shim::ReceiverStream;
use tracing::{Instrument, debug, info_span, warn};

use crate::engine::{EngineClient, EngineError, ask_for_usage, response_hash};
use crate::hpke::{ChunkWriter, MAX_REQUEST};
use crate::key::BootKeys;
use crate::receipt::{CallFacts, Channels, Lease, ReceiptParams};
use crate::receipt_log::ReceiptLog;
use crate::tee::TeeBackend;
use dait_chain_client::{NormalizedResponse, StreamNormalizer, Usage};
use error::CallError;

/// Response body type of the server.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Inner header carrying the channel state.
pub const STATE_HEADER: &[u8] = b"x-dait-state";
/// Inner header (or trailer, when streaming) carrying the receipt.
pub const RECEIPT_FIELD: &[u8] = b"x-dait-receipt";
/// Trailer sent instead of a receipt when a stream failed after it started.
pub const ERROR_TRAILER: &[u8] = b"x-dait-error";
/// Upper bound of prompt tokens assumed for the escrow check: body bytes plus this margin (a token
/// is at least one byte of the prompt text; the margin covers template tokens).
pub const PROMPT_TOKEN_MARGIN: u64 = 256;
/// How long a client may take to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// `max_tokens` the agent sets when the request has none, so the escrow bound holds.
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

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
    /// Engine client.
    pub engine: Option<EngineClient>,
    /// Fixed receipt fields.
    pub params: ReceiptParams,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn full(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut b = Response::builder().status(status);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    // INVARIANT: status and a static content type are always valid.
    b.body(Full::new(body.into()).boxed_unsync())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync()))
}

fn empty(status: StatusCode) -> Response<Body> {
    full(status, None, Bytes::new())
}

/// The opaque answer to any decapsulation or decryption failure.
fn opaque_400() -> Response<Body> {
    empty(StatusCode::BAD_REQUEST)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Route one request. Never panics on input; every error becomes a response.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    let resp = match (req.method(), path) {
        (&Method::GET, "/healthz") => empty(StatusCode::OK),
        (&Method::GET, "/v1/ohttp-keys") => full(
            StatusCode::OK,
            Some("application/ohttp-keys"),
            app.keys.hpke.config_list().to_vec(),
        ),
        (&Method::GET, "/v1/attestation") => attestation(&app, req.uri().query()).await,
        (&Method::POST, "/v1/ohttp") => ohttp(app, req).await,
        (_, "/healthz" | "/v1/ohttp-keys" | "/v1/attestation" | "/v1/ohttp") => {
            empty(StatusCode::METHOD_NOT_ALLOWED)
        }
        _ => empty(StatusCode::NOT_FOUND),
    };
    Ok(resp)
}

fn parse_nonce(query: Option<&str>) -> Option<[u8; 32]> {
    let q = query?;
    let v = q.split('&').find_map(|kv| kv.strip_prefix("nonce="))?;
    let mut n = [0u8; 32];
    hex::decode_to_slice(v, &mut n).ok()?;
    Some(n)
}

/// Build the evidence bundle for `freshness`.
pub fn bundle(app: &App, freshness: &Freshness) -> Result<Vec<u8>, crate::tee::TeeError> {
    let rd = app.keys.report_data(freshness);
    let cpu = app.tee.evidence(&rd)?;
    Ok(encode_bundle(&proto::EvidenceBundle {
        version: dait_chain_client::PROTOCOL_VERSION,
        keyset: app.keys.keyset_bytes.clone(),
        freshness: Some(freshness.to_proto()),
        cpu: Some(cpu),
        gpus: Vec::new(),
        tpm: None,
        event_log: app.event_log.clone(),
        collateral: None,
    }))
}

async fn attestation(app: &Arc<App>, query: Option<&str>) -> Response<Body> {
    let Some(nonce) = parse_nonce(query) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let app2 = Arc::clone(app);
    let r =
        tokio::task::spawn_blocking(move || bundle(&app2, &Freshness::TenantNonce(nonce))).await;
    match r {
        Ok(Ok(b)) => full(StatusCode::OK, Some("application/vnd.dait.bundle"), b),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "evidence failed");
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
        Err(_) => empty(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

async fn ohttp(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let chunked = match req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
    {
        Some(b"message/ohttp-req") => false,
        Some(b"message/ohttp-chunked-req") => true,
        _ => return empty(StatusCode::UNSUPPORTED_MEDIA_TYPE),
    };
    let body = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return empty(StatusCode::PAYLOAD_TOO_LARGE),
    };
    let request_ct_hash = ciphertext_hash(&body);
    let span = info_span!(
        "call",
        request_id = %hex::encode(request_ct_hash.0.get(..8).unwrap_or_default()),
        model = %app.params.model_id,
        chunked
    );
    if chunked {
        streaming(app, body, request_ct_hash).instrument(span).await
    } else {
        plain(app, body, request_ct_hash).instrument(span).await
    }
}

/// A decoded inner request.
struct Inner {
    path: &'static str,
    state: SignedChannelState,
    body: Vec<u8>,
    json: Map<String, Value>,
    stream: bool,
    worst_case: u128,
}

fn decode_inner(plaintext: &[u8], params: &ReceiptParams) -> Result<Inner, CallError> {
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
    let state_text = msg
        .header()
        .get(STATE_HEADER)
        .ok_or(CallError::BadRequest("missing x-dait-state"))?;
    let state_text = std::str::from_utf8(state_text)
        .map_err(|_| CallError::BadRequest("x-dait-state is not text"))?;
    let state = SignedChannelState::from_header_value(state_text)
        .map_err(|_| CallError::BadRequest("x-dait-state does not decode"))?;
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

/// The body sent to the engine: the tenant's JSON, with `max_tokens` set if absent.
fn upstream_body(inner: &Inner) -> Bytes {
    let mut json = inner.json.clone();
    if !json.contains_key("max_tokens") && !json.contains_key("max_completion_tokens") {
        json.insert("max_tokens".into(), DEFAULT_MAX_TOKENS.into());
    }
    if inner.stream {
        ask_for_usage(&mut json);
    }
    Bytes::from(Value::Object(json).to_string())
}

fn receipt_log(app: &App) -> Result<&ReceiptLog, CallError> {
    app.receipt_log
        .as_ref()
        .ok_or(CallError::Internal("no receipt log"))
}

fn begin(app: &App, inner: &Inner) -> Result<Lease, CallError> {
    app.channels.begin(
        &inner.state,
        &app.keys.domain,
        app.keys.host_key_id,
        inner.worst_case,
    )
}

/// The known-length BHTTP response.
fn inner_response(status: u16, body: &[u8], receipt: Option<&str>) -> Vec<u8> {
    let code = bhttp::StatusCode::try_from(status).unwrap_or(bhttp::StatusCode::OK);
    let mut m = bhttp::Message::response(code);
    m.put_header("content-type", "application/json");
    if let Some(r) = receipt {
        m.put_header(RECEIPT_FIELD, r);
    }
    m.write_content(body);
    let mut out = Vec::with_capacity(body.len() + 256);
    // INVARIANT: writing to a Vec cannot fail.
    let _ = m.write_bhttp(bhttp::Mode::KnownLength, &mut out);
    out
}

fn log_call_error(e: &CallError) {
    match e {
        CallError::Internal(what) => tracing::error!(what, "internal error"),
        CallError::Upstream(err) => warn!(error = %err, "upstream failed"),
        other => debug!(error = %other, "call rejected"),
    }
}

async fn plain(app: Arc<App>, body: Bytes, request_ct_hash: B256) -> Response<Body> {
    let (pt, sealer) = match app.keys.hpke.decapsulate(&body) {
        Ok(x) => x,
        Err(e) => {
            debug!(error = %e, "decapsulation failed");
            return opaque_400();
        }
    };
    let inner_bytes = match plain_call(&app, pt.as_bytes(), request_ct_hash).await {
        Ok((resp_body, receipt)) => inner_response(200, &resp_body, Some(&receipt)),
        Err(e) => {
            log_call_error(&e);
            inner_response(e.code().1, &e.body(), None)
        }
    };
    drop(pt);
    match sealer.seal(&inner_bytes) {
        Ok(ct) => full(StatusCode::OK, Some("message/ohttp-res"), ct),
        Err(e) => {
            tracing::error!(error = %e, "response encapsulation failed");
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

async fn plain_call(
    app: &App,
    plaintext: &[u8],
    request_ct_hash: B256,
) -> Result<(Bytes, String), CallError> {
    let inner = decode_inner(plaintext, &app.params)?;
    if inner.stream {
        return Err(CallError::BadRequest(
            "stream=true needs a chunked OHTTP request",
        ));
    }
    let upstream = app.engine.as_ref().ok_or(CallError::NoUpstream)?;
    let lease = begin(app, &inner)?;
    let resp = upstream
        .post_json(inner.path, upstream_body(&inner))
        .await?;
    let normalised = NormalizedResponse::from_body(&resp).map_err(EngineError::Normalize)?;
    let usage = normalised.reported_usage.ok_or(EngineError::NoUsage)?;
    let facts = CallFacts {
        request_hash: request_hash(&inner.body),
        response_hash: response_hash(&normalised, usage)?,
        request_ct_hash,
        response_ct_hash: B256::ZERO,
        tokens_in: usage.prompt_tokens,
        tokens_out: usage.completion_tokens,
        timestamp: now(),
    };
    let signed = lease
        .commit(
            &facts,
            &app.params,
            &app.keys.receipt,
            &app.keys.domain,
            receipt_log(app)?,
        )
        .await?;
    Ok((resp, signed.to_header_value()))
}

/// QUIC variable-length integer (RFC 9000 §16), as Binary HTTP uses.
fn varint(v: u64, out: &mut Vec<u8>) {
    if v < (1 << 6) {
        out.push(v as u8);
    } else if v < (1 << 14) {
        out.extend_from_slice(&((v as u16) | 0x4000).to_be_bytes());
    } else if v < (1 << 30) {
        out.extend_from_slice(&((v as u32) | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

fn field(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    varint(name.len() as u64, out);
    out.extend_from_slice(name);
    varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// Start of an indeterminate-length BHTTP response (RFC 9292 §3.2): framing indicator 3,
/// status, header fields, end of the field section.
fn indeterminate_head(status: u16, content_type: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    varint(3, &mut out);
    varint(u64::from(status), &mut out);
    field(b"content-type", content_type, &mut out);
    varint(0, &mut out);
    out
}

/// One content chunk.
fn indeterminate_chunk(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    varint(data.len() as u64, &mut out);
    out.extend_from_slice(data);
    out
}

/// Content terminator, trailer fields, end of the trailer section.
fn indeterminate_tail(trailer: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    varint(0, &mut out);
    for (n, v) in trailer {
        field(n, v, &mut out);
    }
    varint(0, &mut out);
    out
}

fn chunked_response(rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Response<Body> {
    let stream = ReceiverStream(rx).map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c))));
    let body = StreamBody::new(stream).boxed_unsync();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "message/ohttp-chunked-res")
        .body(body)
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync()))
}

async fn streaming(app: Arc<App>, body: Bytes, request_ct_hash: B256) -> Response<Body> {
    let (pt, sealer) = match app.keys.hpke.decapsulate_chunked(&body).await {
        Ok(x) => x,
        Err(e) => {
            debug!(error = %e, "chunked decapsulation failed");
            return opaque_400();
        }
    };
    let (mut writer, rx) = sealer.split();
    let prepared = (|| {
        let inner = decode_inner(pt.as_bytes(), &app.params)?;
        if !inner.stream {
            return Err(CallError::BadRequest(
                "a chunked OHTTP request needs stream=true",
            ));
        }
        if app.engine.is_none() {
            return Err(CallError::NoUpstream);
        }
        let lease = begin(&app, &inner)?;
        Ok((inner, lease))
    })();
    drop(pt);
    let span = tracing::Span::current();
    match prepared {
        Err(e) => {
            log_call_error(&e);
            tokio::spawn(
                async move {
                    let _ = write_error(&mut writer, &e).await;
                    let _ = writer.finish().await;
                }
                .instrument(span),
            );
        }
        Ok((inner, lease)) => {
            tokio::spawn(
                async move {
                    if let Err(e) =
                        stream_call(&app, inner, lease, &mut writer, request_ct_hash).await
                    {
                        log_call_error(&e);
                    }
                    let _ = writer.finish().await;
                }
                .instrument(span),
            );
        }
    }
    chunked_response(rx)
}

async fn write_error(writer: &mut ChunkWriter, e: &CallError) -> std::io::Result<()> {
    let mut out = indeterminate_head(e.code().1, b"application/json");
    out.extend_from_slice(&indeterminate_chunk(&e.body()));
    out.extend_from_slice(&indeterminate_tail(&[]));
    writer.write(&out).await
}

/// Forward a streamed call. Errors before the engine answered become an error response; after
/// that, the stream ends with an `x-dait-error` trailer and no receipt.
async fn stream_call(
    app: &App,
    inner: Inner,
    lease: Lease,
    writer: &mut ChunkWriter,
    request_ct_hash: B256,
) -> Result<(), CallError> {
    let Some(upstream) = app.engine.as_ref() else {
        return Err(CallError::NoUpstream);
    };
    let resp = match upstream.post(inner.path, upstream_body(&inner)).await {
        Ok(r) => r,
        Err(e) => {
            let e = CallError::Upstream(e);
            let _ = write_error(writer, &e).await;
            return Err(e);
        }
    };
    writer
        .write(&indeterminate_head(200, b"text/event-stream"))
        .await
        .map_err(|_| CallError::Internal("stream write"))?;
    let mut observer = StreamNormalizer::new();
    let mut body = resp.into_body();
    let mut failed: Option<CallError> = None;
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(f) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Err(e) => {
                failed = Some(CallError::Upstream(e.into()));
                break;
            }
        };
        if data.is_empty() {
            continue;
        }
        if let Err(e) = observer.push(&data) {
            failed = Some(CallError::Upstream(EngineError::Normalize(e)));
            break;
        }
        if writer.write(&indeterminate_chunk(&data)).await.is_err() {
            // The tenant went away; no receipt for an undelivered stream.
            return Err(CallError::Internal("tenant disconnected"));
        }
    }
    let done = observer.is_done();
    let outcome = match failed {
        Some(e) => Err(e),
        None => match observer.finish() {
            // A stream without [DONE] or without a finish_reason on every choice was cut short
            // upstream: not a complete answer, no receipt.
            Ok(_) if !done => Err(CallError::Upstream(EngineError::Incomplete)),
            Ok(n)
                if n.choices.is_empty() || n.choices.iter().any(|c| c.finish_reason.is_none()) =>
            {
                Err(CallError::Upstream(EngineError::Incomplete))
            }
            Ok(normalised) => {
                finish_stream(app, &inner, lease, upstream, &normalised, request_ct_hash).await
            }
            Err(e) => Err(CallError::Upstream(EngineError::Normalize(e))),
        },
    };
    match outcome {
        Ok(receipt) => writer
            .write(&indeterminate_tail(&[(RECEIPT_FIELD, receipt.as_bytes())]))
            .await
            .map_err(|_| CallError::Internal("stream write")),
        Err(e) => {
            let (code, _) = e.code();
            let _ = writer
                .write(&indeterminate_tail(&[(ERROR_TRAILER, code.as_bytes())]))
                .await;
            Err(e)
        }
    }
}

async fn finish_stream(
    app: &App,
    inner: &Inner,
    lease: Lease,
    upstream: &EngineClient,
    normalised: &NormalizedResponse,
    request_ct_hash: B256,
) -> Result<String, CallError> {
    let usage: Usage = match normalised.reported_usage {
        Some(u) => u,
        None => {
            upstream
                .meter_stream(inner.path, &inner.json, normalised)
                .await?
        }
    };
    let facts = CallFacts {
        request_hash: request_hash(&inner.body),
        response_hash: response_hash(normalised, usage)?,
        request_ct_hash,
        response_ct_hash: B256::ZERO,
        tokens_in: usage.prompt_tokens,
        tokens_out: usage.completion_tokens,
        timestamp: now(),
    };
    let signed = lease
        .commit(
            &facts,
            &app.params,
            &app.keys.receipt,
            &app.keys.domain,
            receipt_log(app)?,
        )
        .await?;
    Ok(signed.to_header_value())
}

/// Accept connections on `listener` and serve them over TLS until the task is cancelled.
pub async fn serve_tls(app: Arc<App>, listener: TcpListener) -> std::io::Result<()> {
    let cfg = app
        .keys
        .tls
        .server_config()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "accept failed");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            serve_connection(app, tls).await;
        });
    }
}

/// Serve without TLS. Only for in-process tests and benchmarks: the keyset's TLS pin is not
/// used, so this is never what the `dait-host` binary runs.
pub async fn dangerous_serve_plaintext(
    app: Arc<App>,
    listener: TcpListener,
) -> std::io::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let app = Arc::clone(&app);
        tokio::spawn(serve_connection(app, tcp));
    }
}

async fn serve_connection<S>(app: Arc<App>, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| handle(Arc::clone(&app), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    if let Err(e) = conn.await {
        debug!(error = %e, "connection ended with an error");
    }
}

/// A `Stream` over a channel receiver (tokio-stream is not needed for this one adapter).
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Wraps a receiver as a stream.
    pub struct ReceiverStream(pub tokio::sync::mpsc::Receiver<Vec<u8>>);

    impl futures::Stream for ReceiverStream {
        type Item = Vec<u8>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
            self.0.poll_recv(cx)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut v = Vec::new();
        varint(37, &mut v);
        varint(15293, &mut v);
        varint(494_878_333, &mut v);
        assert_eq!(hex::encode(&v), "257bbd9d7f3e7d");
    }

    #[test]
    fn indeterminate_response_parses_with_bhttp() {
        let mut m = indeterminate_head(200, b"text/event-stream");
        m.extend(indeterminate_chunk(b"data: a\n\n"));
        m.extend(indeterminate_chunk(b"data: b\n\n"));
        m.extend(indeterminate_tail(&[(RECEIPT_FIELD, b"abc")]));
        let msg = bhttp::Message::read_bhttp::<_, Cursor<&[u8]>>(&mut Cursor::new(&m[..])).unwrap();
        assert_eq!(msg.control().status().unwrap().code(), 200);
        assert_eq!(msg.content(), b"data: a\n\ndata: b\n\n");
        assert_eq!(msg.trailer().get(RECEIPT_FIELD), Some(&b"abc"[..]));
        // No content at all still parses.
        let mut e = indeterminate_head(502, b"application/json");
        e.extend(indeterminate_tail(&[]));
        let msg = bhttp::Message::read_bhttp::<_, Cursor<&[u8]>>(&mut Cursor::new(&e[..])).unwrap();
        assert_eq!(msg.control().status().unwrap().code(), 502);
    }

    #[test]
    fn nonce_query() {
        let h = "ab".repeat(32);
        assert_eq!(parse_nonce(Some(&format!("nonce={h}"))), Some([0xab; 32]));
        assert_eq!(parse_nonce(Some("nonce=zz")), None);
        assert_eq!(parse_nonce(None), None);
    }
}
