//! A local HTTP/1.1 server on 127.0.0.1 for the collateral services (Intel PCS, AMD KDS, NVIDIA RIM service
//! and OCSP responder): each request, its body read, is answered by a handler; [`LocalServer::stop`] closes
//! the listener and every connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use tokio::net::TcpListener;

/// Answers one request from its head and body.
pub type Handler = dyn Fn(&http::request::Parts, &[u8]) -> Response<Full<Bytes>> + Send + Sync;

/// The running server.
pub struct LocalServer {
    pub addr: SocketAddr,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl LocalServer {
    /// Starts on 127.0.0.1:0.
    pub async fn start(handler: Arc<Handler>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let count = requests.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (handler, count) = (handler.clone(), count.clone());
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |r: hyper::Request<hyper::body::Incoming>| {
                            count.fetch_add(1, Ordering::Relaxed);
                            let handler = handler.clone();
                            async move {
                                let (parts, body) = r.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                Ok::<_, Infallible>(handler(&parts, &body))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Closes the listener and every connection.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Runs `f` with a bound: no test waits forever on a local service.
pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(60), f)
        .await
        .expect("the test took over 60 s")
}

/// A 200 answer of `body` as `content_type`.
pub fn ok(content_type: &str, body: &[u8]) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", content_type)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap()
}

/// A 404 answer.
pub fn not_found() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .body(Full::new(Bytes::new()))
        .unwrap()
}
