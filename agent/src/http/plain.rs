//! A call answered in one piece: `message/ohttp-req` in, a known-length BHTTP response with the
//! receipt header, encapsulated as `message/ohttp-res`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use dait_chain_client::{B256, NormalizedResponse};
use http::{Response, StatusCode};
use tracing::debug;

use super::call::{
    begin, commit_receipt, decode_inner, engine_body, log_call_error, receipt_log_writable,
};
use super::error::CallError;
use super::routes::{OHTTP_ROUTE, UNDECRYPTABLE, empty, full, opaque_400};
use super::{App, Body, RECEIPT_FIELD};
use crate::engine::EngineError;
use crate::metrics::CallMode;

/// Decapsulate, run the call, and encapsulate its answer (an error after decryption travels
/// encrypted, with its status inside).
pub(super) async fn plain(app: Arc<App>, body: Bytes, request_ct_hash: B256) -> Response<Body> {
    let started = Instant::now();
    let (pt, sealer) = match app.keys.hpke.decapsulate(&body) {
        Ok(x) => x,
        Err(e) => {
            debug!(error = %e, "decapsulation failed");
            app.metrics.request(OHTTP_ROUTE, UNDECRYPTABLE);
            return opaque_400();
        }
    };
    let (mut outcome, inner_bytes) = match plain_call(&app, pt.as_bytes(), request_ct_hash).await {
        Ok((resp_body, receipt)) => ("ok", inner_response(200, &resp_body, Some(&receipt))),
        Err(e) => {
            log_call_error(&e);
            (e.code().0, inner_response(e.code().1, &e.body(), None))
        }
    };
    drop(pt);
    let resp = match sealer.seal(&inner_bytes) {
        Ok(ct) => full(StatusCode::OK, Some("message/ohttp-res"), ct),
        Err(e) => {
            tracing::error!(error = %e, "response encapsulation failed");
            outcome = "internal";
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
    };
    app.metrics.request(OHTTP_ROUTE, outcome);
    app.metrics.call(CallMode::Plain, started.elapsed());
    resp
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

/// Forward the decrypted request and sign its receipt; returns the engine's body and the receipt's
/// header value.
async fn plain_call(
    app: &App,
    plaintext: &[u8],
    request_ct_hash: B256,
) -> Result<(Bytes, String), CallError> {
    let inner = decode_inner(plaintext, &app.params, app.engine_deterministic)?;
    if inner.stream {
        return Err(CallError::BadRequest(
            "stream=true needs a chunked OHTTP request",
        ));
    }
    let engine = app.engine.as_ref().ok_or(CallError::NoUpstream)?;
    receipt_log_writable(app).await?;
    let lease = begin(app, &inner)?;
    let resp = engine.post_json(inner.path, engine_body(&inner)).await?;
    let normalised = NormalizedResponse::from_body(&resp).map_err(EngineError::Normalize)?;
    let usage = normalised.reported_usage.ok_or(EngineError::NoUsage)?;
    let receipt = commit_receipt(app, &inner, lease, &normalised, usage, request_ct_hash).await?;
    Ok((resp, receipt))
}
