//! What the hostile-client tests need beyond a tenant: raw TLS connections from a chosen loopback
//! address, the agent's resident memory, the descriptor limit, latency percentiles, and an engine
//! front that paces the events of marked streams (so that a tenant can cut a stream while the engine
//! is still producing it).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use super::{insecure_tls, tcp_from};

/// A TLS connection to `addr` from the local address `from`, without HTTP on it yet.
pub async fn tls_from(addr: SocketAddr, from: IpAddr) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(addr, from).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").unwrap();
    insecure_tls().connect(name, tcp).await
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`: resident now, `VmHWM`: the peak).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The peak resident memory of a process over a span of time: its `VmHWM`, reset at the start
/// (`/proc/<pid>/clear_refs`), or where that is not allowed, the largest `VmRSS` sampled every 10 ms.
pub struct PeakRss {
    pid: u32,
    sampler: Option<(
        tokio::task::JoinHandle<u64>,
        tokio::sync::watch::Sender<bool>,
    )>,
}

impl PeakRss {
    pub fn start(pid: u32) -> Self {
        if std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok() {
            return Self { pid, sampler: None };
        }
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut peak = 0;
            while !*stopped.borrow() {
                peak = peak.max(proc_status_kib(pid, "VmRSS"));
                let _ = tokio::time::timeout(Duration::from_millis(10), stopped.changed()).await;
            }
            peak
        });
        Self {
            pid,
            sampler: Some((task, stop)),
        }
    }

    /// The peak in KiB since [`PeakRss::start`].
    pub async fn finish(self) -> u64 {
        match self.sampler {
            None => proc_status_kib(self.pid, "VmHWM"),
            Some((task, stop)) => {
                stop.send_replace(true);
                task.await.unwrap().max(proc_status_kib(self.pid, "VmRSS"))
            }
        }
    }
}

/// Raise this process's soft limit of open descriptors to its hard limit (children started
/// afterwards inherit it) with `prlimit`, where present; returns the soft limit in force.
pub fn raise_nofile_limit() -> u64 {
    let read = || {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_owned();
        let mut fields = line.split_whitespace().skip(3);
        let mut next = || fields.next().unwrap().parse::<u64>().unwrap_or(u64::MAX);
        (next(), next())
    };
    let (soft, hard) = read();
    if soft < hard {
        let set = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={hard}:{hard}"))
            .status();
        if !matches!(set, Ok(s) if s.success()) {
            eprintln!("could not raise the descriptor limit (no prlimit?): it stays {soft}");
        }
    }
    read().0
}

/// The 50th and 99th percentiles (nearest rank) of `samples`.
pub fn p50_p99(samples: &[Duration]) -> (Duration, Duration) {
    let mut s = samples.to_vec();
    s.sort();
    let rank = |p: usize| s[(s.len() * p).div_ceil(100).clamp(1, s.len()) - 1];
    (rank(50), rank(99))
}

/// The marker in a request body that makes [`start_paced_front`] pace the streamed answer.
pub const PACE_MARKER: &str = "pace-this-stream";
/// The marker in a request body that makes [`start_paced_front`] answer, itself, a stream of
/// [`BULK_EVENTS`] one-token events (about 13 MB, cheap to make) that never finishes.
pub const BULK_MARKER: &str = "send-a-bulk-stream";
/// The events of a bulk stream.
pub const BULK_EVENTS: usize = 100_000;

type FrontBody = UnsyncBoxBody<Bytes, Infallible>;

/// A front on 127.0.0.1:0 for the engine at `engine`: it forwards each request, and when a request
/// carries [`PACE_MARKER`] and is answered with server-sent events, it sends the answer's events
/// one at a time, `pace` apart (an engine generating tokens); a request carrying [`BULK_MARKER`]
/// it answers itself. Stops when the runtime ends.
pub async fn start_paced_front(engine: SocketAddr, pace: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(move |req| forward(engine, pace, req));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc),
            );
        }
    });
    addr
}

async fn forward(
    engine: SocketAddr,
    pace: Duration,
    req: http::Request<Incoming>,
) -> Result<http::Response<FrontBody>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let carries = |marker: &str| body.windows(marker.len()).any(|w| w == marker.as_bytes());
    let paced = carries(PACE_MARKER);
    if carries(BULK_MARKER) {
        let event = r#"data: {"id":"x","object":"chat.completion.chunk","created":1,"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}"#;
        let events = format!("{event}\n\n").repeat(BULK_EVENTS);
        return Ok(http::Response::builder()
            .header(http::header::CONTENT_TYPE, "text/event-stream")
            .body(Full::new(Bytes::from(events)).boxed_unsync())
            .unwrap());
    }
    let tcp = TcpStream::connect(engine).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(http::Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    let sse = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let body = if paced && sse {
        let events: Vec<Bytes> = body
            .split_inclusive(|b| *b == b'\n')
            .filter(|l| l.starts_with(b"data:"))
            .map(|l| Bytes::from(format!("{}\n", String::from_utf8_lossy(l))))
            .collect();
        let stream = futures::StreamExt::then(futures::stream::iter(events), move |e| async move {
            tokio::time::sleep(pace).await;
            Ok::<_, Infallible>(Frame::data(e))
        });
        StreamBody::new(stream).boxed_unsync()
    } else {
        Full::new(body).boxed_unsync()
    };
    let mut parts = parts;
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok(http::Response::from_parts(parts, body))
}
