//! The accept loops: TLS with the keyset's certificate (what `dait-host serve` runs), plaintext for
//! in-process tests, and one HTTP/1.1 connection served by the router.

use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::debug;

use super::{App, TLS_HANDSHAKE_TIMEOUT, handle};

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
