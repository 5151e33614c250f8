//! A streamed call: `message/ohttp-chunked-req` in, the engine's server-sent events out as chunked
//! OHTTP (`message/ohttp-chunked-res`) carrying an indeterminate-length BHTTP response that ends
//! with the receipt trailer, or with an `x-dait-error` trailer and no receipt when the stream failed
//! after it started (so a truncated stream is detectable).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use dait_chain_client::{B256, NormalizedResponse, StreamNormalizer, Usage};
use futures::StreamExt;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::{Instrument, debug};

use super::bhttp::{indeterminate_chunk, indeterminate_head, indeterminate_tail};
use super::call::{
    Inner, begin, commit_receipt, decode_inner, engine_body, log_call_error, receipt_log_writable,
};
use super::error::CallError;
use super::routes::{OHTTP_ROUTE, UNDECRYPTABLE, opaque_400};
use super::{App, Body, ERROR_TRAILER, RECEIPT_FIELD};
use crate::engine::{EngineClient, EngineError};
use crate::hpke::ChunkWriter;
use crate::metrics::CallMode;
use crate::receipt::Lease;

/// Decapsulate and answer at once with a chunked response; the call runs in its own task and
/// writes the response's chunks as the engine produces them.
/// The call holds `permit` (its in-flight slot) until its last chunk is written.
pub(super) async fn streaming(
    app: Arc<App>,
    body: Bytes,
    request_ct_hash: B256,
    permit: OwnedSemaphorePermit,
) -> Response<Body> {
    let started = Instant::now();
    let (pt, sealer) = match app.keys.hpke.decapsulate_chunked(&body).await {
        Ok(x) => x,
        Err(e) => {
            debug!(error = %e, "chunked decapsulation failed");
            app.metrics.request(OHTTP_ROUTE, UNDECRYPTABLE);
            return opaque_400();
        }
    };
    let (mut writer, rx) = sealer.split();
    let writable = receipt_log_writable(&app).await;
    let prepared = (|| {
        let inner = decode_inner(pt.as_bytes(), &app.params, app.engine_deterministic)?;
        if !inner.stream {
            return Err(CallError::BadRequest(
                "a chunked OHTTP request needs stream=true",
            ));
        }
        if app.engine.is_none() {
            return Err(CallError::NoUpstream);
        }
        writable?;
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
                    app.metrics.request(OHTTP_ROUTE, e.code().0);
                    app.metrics.call(CallMode::Stream, started.elapsed());
                    drop(permit);
                }
                .instrument(span),
            );
        }
        Ok((inner, lease)) => {
            tokio::spawn(
                async move {
                    let outcome =
                        match stream_call(&app, inner, lease, &mut writer, request_ct_hash).await {
                            Ok(()) => "ok",
                            Err(e) => {
                                log_call_error(&e);
                                e.code().0
                            }
                        };
                    let _ = writer.finish().await;
                    app.metrics.request(OHTTP_ROUTE, outcome);
                    app.metrics.call(CallMode::Stream, started.elapsed());
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }
    chunked_response(rx)
}

/// The outer response: each sealed chunk the writer sends, as it comes.
fn chunked_response(mut rx: mpsc::Receiver<Vec<u8>>) -> Response<Body> {
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
        .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c))));
    let body = StreamBody::new(stream).boxed_unsync();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "message/ohttp-chunked-res")
        .body(body)
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync()))
}

/// A whole error response (head, the error body, empty trailer), for a call that failed before
/// the engine answered.
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
    let Some(engine) = app.engine.as_ref() else {
        return Err(CallError::NoUpstream);
    };
    let deadline = tokio::time::Instant::now() + engine.timeouts().deadline;
    let resp = match engine.post(inner.path, engine_body(&inner)).await {
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
    // The events from the one that ends the stream (`[DONE]`) on, held back and written with the
    // trailer: a tenant that has the end of the answer has its receipt in the same chunk, and one
    // that left before it is seen gone before the receipt is signed and logged.
    let mut held = Vec::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                failed = Some(CallError::Upstream(EngineError::Timeout("deadline")));
                break;
            }
        };
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
        if observer.is_done() {
            held.extend_from_slice(&data);
            continue;
        }
        if writer.write(&indeterminate_chunk(&data)).await.is_err() {
            // The tenant went away; no receipt for an undelivered stream.
            return Err(CallError::TenantGone);
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
                finish_stream(
                    app,
                    &inner,
                    lease,
                    engine,
                    &normalised,
                    request_ct_hash,
                    deadline,
                    writer.tenant(),
                )
                .await
            }
            Err(e) => Err(CallError::Upstream(EngineError::Normalize(e))),
        },
    };
    let mut end = if held.is_empty() {
        Vec::new()
    } else {
        indeterminate_chunk(&held)
    };
    match outcome {
        Ok(receipt) => {
            end.extend_from_slice(&indeterminate_tail(&[(RECEIPT_FIELD, receipt.as_bytes())]));
            writer
                .write(&end)
                .await
                .map_err(|_| CallError::Internal("stream write"))
        }
        Err(e) => {
            let (code, _) = e.code();
            end.extend_from_slice(&indeterminate_tail(&[(ERROR_TRAILER, code.as_bytes())]));
            let _ = writer.write(&end).await;
            Err(e)
        }
    }
}

/// Meter a complete stream (the engine's own `usage`, or counted when it sent none, by `deadline`)
/// and sign its receipt, unless the tenant left before it (no receipt for an answer it cannot
/// have received whole).
#[allow(clippy::too_many_arguments)]
async fn finish_stream(
    app: &App,
    inner: &Inner,
    lease: Lease,
    engine: &EngineClient,
    normalised: &NormalizedResponse,
    request_ct_hash: B256,
    deadline: tokio::time::Instant,
    tenant: crate::hpke::Tenant,
) -> Result<String, CallError> {
    let usage: Usage = match normalised.reported_usage {
        Some(u) => u,
        None => {
            let meter = engine.meter_stream(inner.path, &inner.json, normalised);
            tokio::time::timeout_at(deadline, meter)
                .await
                .map_err(|_| EngineError::Timeout("deadline"))??
        }
    };
    if tenant.gone() {
        return Err(CallError::TenantGone);
    }
    commit_receipt(app, inner, lease, normalised, usage, request_ct_hash).await
}
