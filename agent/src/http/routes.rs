//! The router: which path and method go where, the attestation endpoint, and the small fixed
//! responses every handler uses.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use dait_chain_client::{Freshness, ciphertext_hash, encode_bundle, proto};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tracing::{Instrument, info_span};

use super::{App, Body, plain, stream};

/// A response with a whole body.
pub(crate) fn full(
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

/// A response with no body.
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    full(status, None, Bytes::new())
}

/// The opaque answer to any decapsulation or decryption failure.
pub(super) fn opaque_400() -> Response<Body> {
    empty(StatusCode::BAD_REQUEST)
}

/// The `outcome` label of a request answered with `status` outside a call.
pub(super) fn outcome(status: StatusCode) -> &'static str {
    match status {
        StatusCode::OK => "ok",
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "not_ready",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        _ => "internal",
    }
}

/// Route one request. Never panics on input; every error becomes a response.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    let (route, resp) = match (req.method(), path) {
        (&Method::GET, "/healthz") => ("healthz", empty(StatusCode::OK)),
        (&Method::GET, "/readyz") => ("readyz", readyz(&app).await),
        (&Method::GET, "/v1/ohttp-keys") => (
            "ohttp_keys",
            full(
                StatusCode::OK,
                Some("application/ohttp-keys"),
                app.keys.hpke.config_list().to_vec(),
            ),
        ),
        (&Method::GET, "/v1/attestation") => {
            ("attestation", attestation(&app, req.uri().query()).await)
        }
        // Counts its own outcome, which a stream knows only at its end.
        (&Method::POST, "/v1/ohttp") => return Ok(ohttp(app, req).await),
        (&Method::GET, p) if p.starts_with(super::receipts::PREFIX) => {
            let rest = &p[super::receipts::PREFIX.len()..];
            (
                "receipt",
                super::receipts::handle(&app, rest, req.headers()).await,
            )
        }
        #[cfg(feature = "settlement")]
        (&Method::POST, crate::settlement::close::PATH) => (
            "channel_close",
            crate::settlement::close::handle(&app, req).await,
        ),
        (_, "/healthz" | "/readyz" | "/v1/ohttp-keys" | "/v1/attestation" | "/v1/ohttp") => {
            ("other", empty(StatusCode::METHOD_NOT_ALLOWED))
        }
        _ => ("other", empty(StatusCode::NOT_FOUND)),
    };
    app.metrics.request(route, outcome(resp.status()));
    Ok(resp)
}

/// `GET /readyz`: 200 when every readiness condition holds, else 503; the body lists the failing
/// conditions (`{"ready": false, "failing": [{"code", "message"}]}`).
async fn readyz(app: &App) -> Response<Body> {
    // A receipt log out of space looks for space again here too (at most once a second), so that
    // the agent turns ready without waiting for a call that a balancer would not send it.
    if let Some(log) = &app.receipt_log {
        let _ = log.ensure_writable().await;
    }
    let failing = app.readiness.failures().await;
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({"ready": failing.is_empty(), "failing": failing});
    full(status, Some("application/json"), body.to_string())
}

/// `nonce=<64 hex>`, with `epoch=<u64>` for the chain epoch's nonce (PROTOCOL.md §3).
fn parse_freshness(query: Option<&str>) -> Option<Freshness> {
    let q = query?;
    let v = q.split('&').find_map(|kv| kv.strip_prefix("nonce="))?;
    let mut nonce = [0u8; 32];
    hex::decode_to_slice(v, &mut nonce).ok()?;
    match q.split('&').find_map(|kv| kv.strip_prefix("epoch=")) {
        None => Some(Freshness::TenantNonce(nonce)),
        Some(e) => Some(Freshness::ChainEpoch {
            epoch: e.parse().ok()?,
            nonce,
        }),
    }
}

/// Build the evidence bundle for `freshness`.
pub fn bundle(app: &App, freshness: &Freshness) -> Result<Vec<u8>, crate::tee::TeeError> {
    let rd = app.keys.report_data(freshness);
    let started = std::time::Instant::now();
    let cpu = app
        .tee
        .evidence(&rd)
        .and_then(|cpu| Ok((cpu, app.tee.tpm_quote(&rd)?)));
    app.readiness.set_tee(cpu.is_ok());
    let gpus = match (&cpu, &app.gpus) {
        (Ok(_), Some(g)) => {
            let mut gpus = g.evidence(&rd);
            app.readiness.set_gpus(gpus.is_ok());
            if let Ok(gpus) = &mut gpus {
                app.gpu_collateral.fill(gpus);
            }
            gpus
        }
        _ => Ok(Vec::new()),
    };
    app.metrics.evidence(started.elapsed());
    let (cpu, tpm) = cpu?;
    Ok(encode_bundle(&proto::EvidenceBundle {
        tpm,
        ..bundle_of(app, freshness, cpu, gpus?)
    }))
}

/// The encoded evidence bundle of `cpu` evidence with the app's keyset and runtime event log, for
/// `freshness`. [`bundle`] gives it the evidence the TEE produced for this keyset and freshness.
pub fn assemble_bundle(app: &App, freshness: &Freshness, cpu: proto::CpuEvidence) -> Vec<u8> {
    assemble_bundle_with_gpus(app, freshness, cpu, Vec::new())
}

/// [`assemble_bundle`] with the GPUs' evidence, GPU `i` at position `i`.
pub fn assemble_bundle_with_gpus(
    app: &App,
    freshness: &Freshness,
    cpu: proto::CpuEvidence,
    gpus: Vec<proto::GpuEvidence>,
) -> Vec<u8> {
    encode_bundle(&bundle_of(app, freshness, cpu, gpus))
}

fn bundle_of(
    app: &App,
    freshness: &Freshness,
    cpu: proto::CpuEvidence,
    gpus: Vec<proto::GpuEvidence>,
) -> proto::EvidenceBundle {
    proto::EvidenceBundle {
        version: dait_chain_client::PROTOCOL_VERSION,
        keyset: app.keys.keyset_bytes.clone(),
        freshness: Some(freshness.to_proto()),
        cpu: Some(cpu),
        gpus,
        tpm: None,
        event_log: app.event_log.clone(),
        collateral: app.collateral.get(),
    }
}

async fn attestation(app: &Arc<App>, query: Option<&str>) -> Response<Body> {
    let Some(freshness) = parse_freshness(query) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    if let Some(b) = app.evidence.cached(&freshness) {
        return full(StatusCode::OK, Some(BUNDLE_TYPE), b);
    }
    if let Some(ip) = super::evidence::client_ip()
        && let Err(secs) = app.evidence.admit(ip)
    {
        let mut r = empty(StatusCode::TOO_MANY_REQUESTS);
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        return r;
    }
    let app2 = Arc::clone(app);
    let r = tokio::task::spawn_blocking(move || bundle(&app2, &freshness)).await;
    match r {
        Ok(Ok(b)) => {
            let b = Bytes::from(b);
            app.evidence.store(freshness, b.clone());
            full(StatusCode::OK, Some(BUNDLE_TYPE), b)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "evidence failed");
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
        Err(_) => empty(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// `POST /v1/ohttp`: read the encapsulated request and hand it to the plain or the streamed call,
/// by its content type.
async fn ohttp(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let chunked = match req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
    {
        Some(b"message/ohttp-req") => false,
        Some(b"message/ohttp-chunked-req") => true,
        _ => return outer_error(&app, StatusCode::UNSUPPORTED_MEDIA_TYPE),
    };
    let read = Limited::new(req.into_body(), app.limits.max_request_bytes).collect();
    let body = match tokio::time::timeout(app.limits.body_read_timeout, read).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return outer_error(&app, StatusCode::PAYLOAD_TOO_LARGE),
        Err(_) => return outer_error(&app, StatusCode::REQUEST_TIMEOUT),
    };
    // Admitted once its body is in (a slow sender holds a connection, never a call slot); over
    // the bound, a fast 503 before decapsulation: no call, no receipt.
    let Some(permit) = app.gates.call() else {
        app.metrics.request(OHTTP_ROUTE, OVERLOADED);
        return app.gates.overloaded();
    };
    let request_ct_hash = ciphertext_hash(&body);
    let span = info_span!(
        "call",
        request_id = %hex::encode(request_ct_hash.0.get(..8).unwrap_or_default()),
        model = %app.params.model_id,
        chunked
    );
    if chunked {
        stream::streaming(app, body, request_ct_hash, permit)
            .instrument(span)
            .await
    } else {
        let resp = plain::plain(app, body, request_ct_hash)
            .instrument(span)
            .await;
        drop(permit);
        resp
    }
}

/// A `/v1/ohttp` request refused before decapsulation, counted.
fn outer_error(app: &App, status: StatusCode) -> Response<Body> {
    app.metrics.request(OHTTP_ROUTE, outcome(status));
    empty(status)
}

/// The content type of an evidence bundle.
const BUNDLE_TYPE: &str = "application/vnd.dait.bundle";

/// The `route` label of `POST /v1/ohttp`.
pub(super) const OHTTP_ROUTE: &str = "ohttp";
/// The `outcome` label of a call refused for the in-flight bound.
pub(super) const OVERLOADED: &str = "overloaded";
/// The `outcome` label of a request that did not decapsulate (the opaque 400).
pub(super) const UNDECRYPTABLE: &str = "undecryptable";

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn nonce_query() {
        let h = "ab".repeat(32);
        assert_eq!(
            parse_freshness(Some(&format!("nonce={h}"))),
            Some(Freshness::TenantNonce([0xab; 32]))
        );
        assert_eq!(
            parse_freshness(Some(&format!("epoch=7&nonce={h}"))),
            Some(Freshness::ChainEpoch {
                epoch: 7,
                nonce: [0xab; 32]
            })
        );
        assert_eq!(parse_freshness(Some(&format!("nonce={h}&epoch=x"))), None);
        assert_eq!(parse_freshness(Some("nonce=zz")), None);
        assert_eq!(parse_freshness(None), None);
    }
}
