//! The accept loops: TLS with the keyset's certificate (what `dait-host serve` runs), plaintext for
//! in-process tests, and one HTTP/1.1 connection served by the router (or, over the connection
//! limit, answered `503`).

use std::convert::Infallible;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::debug;

use super::admission::Admission;
use super::evidence::CLIENT_IP;
use super::{App, handle};

/// The pause after a failed `accept` (no descriptor free, for one).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(10);

/// The `route` label of a connection refused for the connection limit.
const CONNECTION_ROUTE: &str = "connection";

/// Accept connections on `listener` and serve them over TLS until the task is cancelled.
pub async fn serve_tls(app: Arc<App>, listener: TcpListener) -> std::io::Result<()> {
    let cfg = app
        .keys
        .tls
        .server_config()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors or memory: back off a little rather than spin.
                debug!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let admission = app.gates.connection();
        if matches!(admission, Admission::Drop) {
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = Arc::clone(&app);
        tokio::spawn(CLIENT_IP.scope(peer.ip(), async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(app.limits.tls_handshake_timeout, acceptor.accept(tcp)).await
            else {
                return;
            };
            serve_admitted(app, admission, tls).await;
        }));
    }
}

/// Serve without TLS. Only for in-process tests and benchmarks: the keyset's TLS pin is not
/// used, so this is never what the `dait-host` binary runs.
pub async fn dangerous_serve_plaintext(
    app: Arc<App>,
    listener: TcpListener,
) -> std::io::Result<()> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        let admission = app.gates.connection();
        if matches!(admission, Admission::Drop) {
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let app = Arc::clone(&app);
        tokio::spawn(CLIENT_IP.scope(peer.ip(), serve_admitted(app, admission, tcp)));
    }
}

/// Serve an admitted connection, or answer a refused one; its permit is released at the end.
async fn serve_admitted<S>(app: Arc<App>, admission: Admission, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match admission {
        Admission::Serve(permit) => {
            serve_connection(app, io).await;
            drop(permit);
        }
        Admission::Refuse(permit) => {
            refuse_connection(app, io).await;
            drop(permit);
        }
        Admission::Drop => {}
    }
}

/// The HTTP/1.1 connection settings: keep-alive, a timer, and the header-read timeout (which also
/// bounds how long a kept-alive connection may idle before its next request).
fn builder(app: &App) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(app.limits.header_read_timeout)
        .keep_alive(true);
    b
}

async fn serve_connection<S>(app: Arc<App>, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let builder = builder(&app);
    let svc = hyper::service::service_fn(move |req| handle(Arc::clone(&app), req));
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    if let Err(e) = conn.await {
        debug!(error = %e, "connection ended with an error");
    }
}

/// Read one request and answer it `503` with `Retry-After`, then close.
async fn refuse_connection<S>(app: Arc<App>, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = builder(&app);
    builder.keep_alive(false);
    let svc = hyper::service::service_fn(move |_req| {
        let app = Arc::clone(&app);
        async move {
            app.metrics.request(CONNECTION_ROUTE, "overloaded");
            Ok::<_, Infallible>(app.gates.overloaded())
        }
    });
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    if let Err(e) = conn.await {
        debug!(error = %e, "refused connection ended with an error");
    }
}
