//! The operator's listener (`--metrics-listen`): plaintext HTTP/1.1 serving `GET /metrics` in the
//! OpenMetrics text format, apart from the tenant-facing listener. It has no authentication: bind
//! it to loopback or to a network only the operator reaches.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tracing::debug;

use super::routes::{empty, full};
use super::{App, Body};
use crate::metrics::CONTENT_TYPE;

/// Accept connections on `listener` and serve `/metrics` until the task is cancelled.
pub async fn serve_metrics(app: Arc<App>, listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "metrics accept failed");
                continue;
            }
        };
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(Arc::clone(&app), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc);
            if let Err(e) = conn.await {
                debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            app.metrics.set_open_channels(app.channels.len());
            full(StatusCode::OK, Some(CONTENT_TYPE), app.metrics.encode())
        }
        (_, "/metrics") => empty(StatusCode::METHOD_NOT_ALLOWED),
        _ => empty(StatusCode::NOT_FOUND),
    })
}
