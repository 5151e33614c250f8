//! The in-test OpenAI-compatible engine: deterministic answers, usage in streams or not (like vLLM or
//! llama.cpp's server), and streams that an interrupted engine cuts short.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Behaviour of the in-test engine.
#[derive(Clone, Copy, Debug)]
pub struct EngineMode {
    /// Honour `stream_options.include_usage` (like vLLM); otherwise send no usage when streaming
    /// (like llama.cpp's server) and offer `/extras/tokenize/count`.
    pub usage_in_stream: bool,
    /// Number of completion tokens generated (capped by max_tokens).
    pub tokens: u64,
    /// End streams after the first token, without a finish reason or `[DONE]` (an engine that
    /// was interrupted).
    pub cut_streams: bool,
    /// How long to wait before answering a completion (a slow engine).
    pub delay: Duration,
    /// A completion whose request body contains this text stalls, while others are answered: a
    /// plain one gets no answer at all, a stream its head and first event, then nothing more.
    pub stall: Option<&'static str>,
}

/// An engine that reports usage in streams when asked, as vLLM does.
pub const VLLM_LIKE: EngineMode = EngineMode {
    usage_in_stream: true,
    tokens: 5,
    cut_streams: false,
    delay: Duration::ZERO,
    stall: None,
};

/// An engine that sends no usage in streams and offers its tokenizer, as llama.cpp's server does.
pub const LLAMA_LIKE: EngineMode = EngineMode {
    usage_in_stream: false,
    tokens: 5,
    cut_streams: false,
    delay: Duration::ZERO,
    stall: None,
};

/// Counts of what the engine saw.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub calls: AtomicU64,
    /// The JSON body of every completion request, in order of arrival.
    pub requests: std::sync::Mutex<Vec<Value>>,
}

impl EngineStats {
    /// The completion requests seen so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn prompt_tokens(body: &Value) -> u64 {
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        msgs.iter()
            .map(|m| words(m.get("content").and_then(Value::as_str).unwrap_or("")) + 2)
            .sum()
    } else {
        words(body.get("prompt").and_then(Value::as_str).unwrap_or("")) + 1
    }
}

/// The in-test engine's response body: whole, or a stream that stalls.
type EngineBody = UnsyncBoxBody<Bytes, Infallible>;

fn not_found() -> Response<EngineBody> {
    Response::builder()
        .status(404)
        .body(Full::new(Bytes::new()).boxed_unsync())
        .unwrap()
}

fn answer(content_type: &str, body: String) -> Response<EngineBody> {
    Response::builder()
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)).boxed_unsync())
        .unwrap()
}

/// A stream's head and its first event, then nothing, ever.
fn stalled_stream() -> Response<EngineBody> {
    let c =
        json!({"id":"x","choices":[{"index":0,"delta":{"content":"tok0 "},"finish_reason":null}]});
    let first = Ok(Frame::data(Bytes::from(format!("data: {c}\n\n"))));
    let events =
        futures::StreamExt::chain(futures::stream::iter([first]), futures::stream::pending());
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(StreamBody::new(events).boxed_unsync())
        .unwrap()
}

async fn engine(
    mode: EngineMode,
    stats: Arc<EngineStats>,
    req: Request<Incoming>,
) -> Result<Response<EngineBody>, Infallible> {
    stats.calls.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_owned();
    if path == "/v1/models" {
        // What the agent's readiness probe asks.
        return Ok(answer(
            "application/json",
            json!({"object": "list", "data": [{"id": "test-model", "object": "model"}]})
                .to_string(),
        ));
    }
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if path == "/extras/tokenize/count" {
        if mode.usage_in_stream {
            return Ok(not_found());
        }
        let n = words(v["input"].as_str().unwrap_or(""));
        return Ok(Response::new(
            Full::new(Bytes::from(json!({"count": n}).to_string())).boxed_unsync(),
        ));
    }
    tokio::time::sleep(mode.delay).await;
    if let Some(marker) = mode.stall
        && body.windows(marker.len()).any(|w| w == marker.as_bytes())
    {
        if v["stream"].as_bool() == Some(true) {
            return Ok(stalled_stream());
        }
        std::future::pending::<()>().await;
    }
    let chat = path == "/v1/chat/completions";
    if !chat && path != "/v1/completions" {
        return Ok(not_found());
    }
    stats.requests.lock().unwrap().push(v.clone());
    let max = v["max_tokens"].as_u64().unwrap_or(16);
    let k = mode.tokens.min(max);
    let finish = if k < mode.tokens { "length" } else { "stop" };
    let p = prompt_tokens(&v);
    let usage = json!({"prompt_tokens": p, "completion_tokens": k, "total_tokens": p + k});
    let toks: Vec<String> = (0..k).map(|i| format!("tok{i} ")).collect();
    if v["stream"].as_bool() == Some(true) {
        let mut out = String::new();
        if mode.cut_streams {
            let c = json!({"id":"x","choices":[{"index":0,"delta":{"content":"tok0 "},"finish_reason":null}]});
            return Ok(answer("text/event-stream", format!("data: {c}\n\n")));
        }
        for t in &toks {
            let c = if chat {
                json!({"id":"x","object":"chat.completion.chunk","created":1,"choices":[{"index":0,"delta":{"content":t},"finish_reason":null}]})
            } else {
                json!({"id":"x","object":"text_completion","created":1,"choices":[{"index":0,"text":t,"finish_reason":null}]})
            };
            out.push_str(&format!("data: {c}\n\n"));
        }
        let last = if chat {
            json!({"id":"x","choices":[{"index":0,"delta":{},"finish_reason":finish}]})
        } else {
            json!({"id":"x","choices":[{"index":0,"text":"","finish_reason":finish}]})
        };
        out.push_str(&format!("data: {last}\n\n"));
        if mode.usage_in_stream && v["stream_options"]["include_usage"].as_bool() == Some(true) {
            out.push_str(&format!(
                "data: {}\n\n",
                json!({"id":"x","choices":[],"usage":usage})
            ));
        }
        out.push_str("data: [DONE]\n\n");
        return Ok(answer("text/event-stream", out));
    }
    let text: String = toks.concat();
    let resp = if chat {
        json!({"id":"chatcmpl-1","object":"chat.completion","created":2,"choices":[{"index":0,"message":{"role":"assistant","content":text},"finish_reason":finish}],"usage":usage})
    } else {
        json!({"id":"cmpl-1","object":"text_completion","created":2,"choices":[{"index":0,"text":text,"finish_reason":finish}],"usage":usage})
    };
    Ok(answer("application/json", resp.to_string()))
}

/// Start the in-test engine on 127.0.0.1:0; it stops when the runtime ends.
pub async fn start_engine(mode: EngineMode) -> (SocketAddr, Arc<EngineStats>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(EngineStats::default());
    let st = stats.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let st = st.clone();
            tokio::spawn(serve_engine_connection(mode, st, tcp));
        }
    });
    (addr, stats)
}

async fn serve_engine_connection(mode: EngineMode, stats: Arc<EngineStats>, tcp: TcpStream) {
    let svc = hyper::service::service_fn(move |r| engine(mode, stats.clone(), r));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
        .await;
}

/// The in-test engine on a fixed address, stopped (listener and every connection closed) by
/// [`StoppableEngine::stop`], and restartable on the same address.
pub struct StoppableEngine {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl StoppableEngine {
    /// Start on `addr` (`127.0.0.1:0` for any port).
    pub async fn start(mode: EngineMode, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(EngineStats::default());
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                conns.spawn(serve_engine_connection(mode, stats.clone(), tcp));
            }
        });
        Self { addr, task }
    }

    /// Close the listener and every connection.
    pub async fn stop(self) -> SocketAddr {
        let Self { addr, task } = self;
        task.abort();
        let _ = task.await;
        addr
    }
}

/// A stalled engine on 127.0.0.1:0: it accepts every connection, reads one request, writes raw
/// HTTP/1.1 bytes (`stream_reply` when the request asked for a stream, else `reply`; empty: nothing
/// at all) and then never says more, holding the connection open until the runtime ends.
pub async fn start_stalled_engine(reply: &[u8], stream_reply: &[u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let replies = Arc::new((reply.to_vec(), stream_reply.to_vec()));
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let replies = replies.clone();
            tokio::spawn(async move {
                let request = read_request(&mut tcp).await;
                let streamed = String::from_utf8_lossy(&request).contains("\"stream\":true");
                let reply = if streamed { &replies.1 } else { &replies.0 };
                let _ = tcp.write_all(reply).await;
                std::future::pending::<()>().await;
                drop(tcp);
            });
        }
    });
    addr
}

/// One whole HTTP/1.1 request with a `content-length` body (what the agent sends), as bytes.
async fn read_request(tcp: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return buf,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The real development engine's base URL for tests that need it, or `None` (skip) after printing
/// `skipped: no engine` ([`dait_testdata::engine_url`]).
pub fn real_engine_url() -> Option<String> {
    dait_testdata::engine_url()
}

/// A pass-through in front of the engine at `upstream` (`http://host:port`) on 127.0.0.1:0: every
/// request is forwarded as it is and answered with the engine's whole answer; the JSON body of every
/// completion request is recorded in the returned stats (what the engine was asked). It stops when
/// the runtime ends.
pub async fn start_recording_proxy(upstream: &str) -> (SocketAddr, Arc<EngineStats>) {
    let authority = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(EngineStats::default());
    let st = stats.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (st, authority) = (st.clone(), authority.clone());
            let svc =
                hyper::service::service_fn(move |r| forward(authority.clone(), st.clone(), r));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc),
            );
        }
    });
    (addr, stats)
}

async fn forward(
    authority: String,
    stats: Arc<EngineStats>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    stats.calls.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    if parts.uri.path().ends_with("completions") {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        stats.requests.lock().unwrap().push(v);
    }
    let tcp = TcpStream::connect(&authority).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut out = Request::builder()
        .method(parts.method)
        .uri(parts.uri)
        .header("host", &authority);
    if let Some(ct) = parts.headers.get("content-type") {
        out = out.header("content-type", ct);
    }
    let resp = sender
        .send_request(out.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}
