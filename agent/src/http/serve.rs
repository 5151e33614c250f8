//! The accept loops: TLS with the keyset's certificate (what `dait-host serve` runs), plaintext for
//! in-process tests, and one HTTP/1.1 connection served by the router (or, over the connection
//! limit, answered `503`); and the graceful shutdown that drains them.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::admission::Admission;
use super::evidence::CLIENT_IP;
use super::{App, handle};

/// The pause after a failed `accept` (no descriptor free, for one).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(10);

/// The `route` label of a connection refused for the connection limit.
const CONNECTION_ROUTE: &str = "connection";

/// The `outcome` label of a connection closed for `--max-connections-per-address`.
const ADDRESS_LIMIT: &str = "address_limit";

/// Accept connections on `listener` and serve them over TLS until the task is cancelled.
pub async fn serve_tls(app: Arc<App>, listener: TcpListener) -> std::io::Result<()> {
    serve_tls_until(app, listener, std::future::pending()).await
}

/// [`serve_tls`] until `stop` completes, then shut down gracefully: close the listener (new
/// connections are refused), close idle connections, let the calls in flight finish, and return
/// once they did or `limits.shutdown_drain` passed (the caller then exits, cutting what still runs).
pub async fn serve_tls_until(
    app: Arc<App>,
    listener: TcpListener,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // Each connection holds a receiver: `true` asks it to finish its current response and close,
    // and the sender's `closed()` is every connection having ended.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::select! {
        r = accept_tls(Arc::clone(&app), listener, stop_rx) => r?,
        () = stop => {}
    }
    // The listener was dropped with the accept loop: the port refuses new connections.
    drain(&app, &stop_tx).await;
    Ok(())
}

/// Ask every connection to close after its current response, then wait, at most the drain
/// deadline, for the connections to end and the calls in flight (whose receipts are logged before
/// their answers leave) to finish.
async fn drain(app: &App, stop_tx: &watch::Sender<bool>) {
    let deadline = app.limits.shutdown_drain;
    info!(?deadline, "shutting down: draining calls in flight");
    stop_tx.send_replace(true);
    let drained = async {
        stop_tx.closed().await;
        app.gates.calls_finished().await;
    };
    match tokio::time::timeout(deadline, drained).await {
        Ok(()) => info!("drained"),
        Err(_) => warn!(
            connections = stop_tx.receiver_count(),
            "drain deadline passed; cutting the calls still running"
        ),
    }
}

async fn accept_tls(
    app: Arc<App>,
    listener: TcpListener,
    stop_rx: watch::Receiver<bool>,
) -> std::io::Result<()> {
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
        let Some(admission) = admit(&app, peer.ip()) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = Arc::clone(&app);
        let stop_rx = stop_rx.clone();
        tokio::spawn(CLIENT_IP.scope(peer.ip(), async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(app.limits.tls_handshake_timeout, acceptor.accept(tcp)).await
            else {
                return;
            };
            serve_admitted(app, admission, tls, stop_rx).await;
        }));
    }
}

/// Serve without TLS. Only for in-process tests and benchmarks: the keyset's TLS pin is not
/// used, so this is never what the `dait-host` binary runs.
pub async fn dangerous_serve_plaintext(
    app: Arc<App>,
    listener: TcpListener,
) -> std::io::Result<()> {
    // Never asked to stop: the connections end with their clients.
    let (_stop_tx, stop_rx) = watch::channel(false);
    loop {
        let (tcp, peer) = listener.accept().await?;
        let Some(admission) = admit(&app, peer.ip()) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app = Arc::clone(&app);
        tokio::spawn(CLIENT_IP.scope(
            peer.ip(),
            serve_admitted(app, admission, tcp, stop_rx.clone()),
        ));
    }
}

/// What an accepted connection from `ip` may do; `None`: close it at once (over the overflow, or
/// its address at `--max-connections-per-address`, which is counted).
fn admit(app: &App, ip: std::net::IpAddr) -> Option<Admission> {
    match app.gates.connection(ip) {
        Admission::Drop => None,
        Admission::AddressLimit => {
            app.metrics.request(CONNECTION_ROUTE, ADDRESS_LIMIT);
            None
        }
        a => Some(a),
    }
}

/// Serve an admitted connection, or answer a refused one; its permit is released at the end.
async fn serve_admitted<S>(app: Arc<App>, admission: Admission, io: S, stop: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match admission {
        Admission::Serve(permit) => {
            serve_connection(app, io, stop).await;
            drop(permit);
        }
        Admission::Refuse(permit) => {
            refuse_connection(app, io, stop).await;
            drop(permit);
        }
        Admission::Drop | Admission::AddressLimit => {}
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

async fn serve_connection<S>(app: Arc<App>, io: S, stop: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let builder = builder(&app);
    let svc = hyper::service::service_fn(move |req| handle(Arc::clone(&app), req));
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    if let Err(e) = until_stopped(conn, stop).await {
        debug!(error = %e, "connection ended with an error");
    }
}

/// Serve `conn` to its end; once `stop` turns `true`, it finishes the response under way (a
/// stream to its last chunk) and closes, or closes at once if idle.
async fn until_stopped<I, S>(
    conn: hyper::server::conn::http1::Connection<I, S>,
    mut stop: watch::Receiver<bool>,
) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            // An error is the sender gone: the server itself ended, so stop too.
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Read one request and answer it `503` with `Retry-After`, then close.
async fn refuse_connection<S>(app: Arc<App>, io: S, stop: watch::Receiver<bool>)
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
    if let Err(e) = until_stopped(conn, stop).await {
        debug!(error = %e, "refused connection ended with an error");
    }
}
