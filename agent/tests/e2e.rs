//! End-to-end: the real `dait-host` binary (simulated TEE) between an OpenAI-compatible upstream and the
//! tenant side of `dait-verifier` (session and proxy), with ordinary HTTP requests to the proxy.
//!
//! - The in-test upstream versions always run (with the `simulated-tee` feature, which the workspace test
//!   command enables with `--all-features`).
//! - `real_engine_end_to_end` runs against the real CPU engine at `DAIT_ENGINE_URL`, or the one that
//!   `scripts/engine.sh start` started; without either it is skipped, and it FAILS instead when
//!   `DAIT_REQUIRE_ENGINE=1`.
//!
//! Every test bounds its time and stops what it started (child processes are killed on drop).
#![cfg(feature = "simulated-tee")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{CHAT, Tenant, init_simulated, serve_command_at, spawn_listening};
use dait_chain_client::WireMessage as _;
use dait_chain_client::{
    B256, Freshness, HostVerifyingKey, ReceiptError as Rule, SignedChannelState, SignedReceipt,
    StreamNormalizer,
};
use dait_tenant::{
    DEFAULT_CALL_TIMEOUT, HostClient, HostErrorCode, Session, SessionConfig, StreamItem,
    TenantError, Wallet, proxy,
};
use dait_verifier::bundle::{Policy, UnixTime, VerifyError, verify_bundle};
use dait_verifier::receipt::{CallEvidence, ReceiptError};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bound on any one test.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);
const PRICE_IN: u128 = 2;
const PRICE_OUT: u128 = 3;
/// A string that must never appear in the agent's log.
const MARKER: &str = "zebra-quartz-7781";

// ------------------------------------------------------------------------------------------ upstream

const WORDS: [&str; 8] = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
];

/// The deterministic usage of the in-test engine for a request body: prompt tokens are the words of the
/// messages (plus 3 per message) or of the prompt (plus 1); completion tokens are min(max_tokens, 6).
fn expected_usage(request: &Value) -> (u64, u64) {
    let words = |v: &Value| {
        v.as_str()
            .map_or(0, |s| s.split_whitespace().count() as u64)
    };
    let prompt = match request.get("messages").and_then(Value::as_array) {
        Some(messages) => messages.iter().map(|m| words(&m["content"]) + 3).sum(),
        None => words(&request["prompt"]) + 1,
    };
    let max = request
        .get("max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(16);
    (prompt, max.min(6))
}

fn expected_text(request: &Value) -> String {
    let (_, n) = expected_usage(request);
    WORDS[..n as usize].join(" ")
}

struct Upstream {
    addr: SocketAddr,
    calls: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| engine(counter.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream { addr, calls, task }
}

/// The in-test engine's body; its error is an engine failing mid-body (hyper then drops the connection).
type TestBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

async fn engine(
    calls: Arc<AtomicU64>,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let chat = req.uri().path() == CHAT;
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let n = calls.fetch_add(1, Ordering::SeqCst);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (prompt, completion) = expected_usage(&request);
    let max = request
        .get("max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(16);
    let finish = if completion == max { "length" } else { "stop" };
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    let id = format!("cmpl-{n}");
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let mut events = Vec::new();
        for (i, word) in WORDS[..completion as usize].iter().enumerate() {
            let piece = if i == 0 {
                (*word).to_owned()
            } else {
                format!(" {word}")
            };
            let choice = if chat {
                json!({"index": 0, "delta": {"content": piece}, "finish_reason": null})
            } else {
                json!({"index": 0, "text": piece, "finish_reason": null})
            };
            events.push(json!({"id": id, "created": n, "choices": [choice]}));
        }
        let last = if chat {
            json!({"index": 0, "delta": {}, "finish_reason": finish})
        } else {
            json!({"index": 0, "text": "", "finish_reason": finish})
        };
        events.push(json!({"id": id, "created": n, "choices": [last]}));
        if request.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)) {
            events.push(json!({"id": id, "created": n, "choices": [], "usage": usage}));
        }
        let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = events
            .into_iter()
            .map(|e| Ok(Frame::data(Bytes::from(format!("data: {e}\n\n")))))
            .collect();
        frames.push(Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))));
        // A prompt that mentions "slowly" gets its events 100 ms apart.
        let slow = body.windows(6).any(|w| w == b"slowly");
        // A prompt that mentions "perish" gets two events, then the engine's body fails, which
        // hyper turns into a connection dropped mid-body: an engine that died mid-stream.
        if body.windows(6).any(|w| w == b"perish") {
            let mut frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
                frames.into_iter().take(2).map(|f| Ok(f.unwrap())).collect();
            frames.push(Err(std::io::Error::other("the engine died")));
            // Paced, so that the head and the first events leave before the failure.
            let paced =
                futures::StreamExt::then(futures::stream::iter(frames), |frame| async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    frame
                });
            let body = StreamBody::new(paced);
            let mut response = Response::new(BodyExt::boxed(body));
            response
                .headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            return Ok(response);
        }
        let paced =
            futures::StreamExt::then(futures::stream::iter(frames), move |frame| async move {
                if slow {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                frame
            });
        let body = StreamBody::new(paced);
        let mut response = Response::new(BodyExt::boxed(BodyExt::map_err(body, |e| match e {})));
        response
            .headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        return Ok(response);
    }
    let text = expected_text(&request);
    let choice = if chat {
        json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish})
    } else {
        json!({"index": 0, "text": text, "finish_reason": finish})
    };
    let out = json!({"id": id, "object": "x", "created": n, "model": request["model"], "choices": [choice], "usage": usage});
    let mut response = Response::new(BodyExt::boxed(BodyExt::map_err(
        Full::new(Bytes::from(out.to_string())),
        |e| match e {},
    )));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(response)
}

// ------------------------------------------------------------------------------------------ dait-host

struct Host {
    url: String,
    addr: SocketAddr,
    root_pub: Vec<u8>,
    log: PathBuf,
    weights: PathBuf,
    dir: tempfile::TempDir,
    child: tokio::process::Child,
    _stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
}

impl Host {
    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("tenant")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn allow(&self) -> Policy {
        Policy::new()
            .dangerous_allow_simulated(&self.root_pub)
            .unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start_host(upstream: &str, model_path: Option<&Path>) -> Host {
    start_host_with(upstream, model_path, &[]).await
}

/// [`start_host`] with `extra` flags for `dait-host serve`.
async fn start_host_with(upstream: &str, model_path: Option<&Path>, extra: &[&str]) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("host");
    init_simulated(&state);
    let root_hex = std::fs::read_to_string(state.join("sim-root.pub")).unwrap();
    let root_pub = hex::decode(root_hex.trim()).unwrap();
    let weights = match model_path {
        Some(path) => path.to_path_buf(),
        None => {
            let path = dir.path().join("weights.bin");
            std::fs::write(&path, b"null-upstream weights").unwrap();
            path
        }
    };
    let log = dir.path().join("host.log");
    let (child, addr, stdout) =
        spawn_host(&state, "127.0.0.1:0", upstream, &weights, &log, extra).await;
    Host {
        url: format!("https://{addr}"),
        addr,
        root_pub,
        log,
        weights,
        dir,
        child,
        _stdout: stdout,
    }
}

/// `dait-host serve` on `state` with the test's model and prices.
async fn spawn_host(
    state: &Path,
    listen: &str,
    upstream: &str,
    weights: &Path,
    log: &Path,
    extra: &[&str],
) -> (
    tokio::process::Child,
    SocketAddr,
    tokio::io::BufReader<tokio::process::ChildStdout>,
) {
    let mut cmd = serve_command_at(state, upstream, listen);
    cmd.args(["--model-id", "test-model"])
        .arg("--model-path")
        .arg(weights)
        .args([
            "--price-in",
            &PRICE_IN.to_string(),
            "--price-out",
            &PRICE_OUT.to_string(),
        ])
        .args(extra)
        .env("DAIT_LOG", "debug")
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        );
    spawn_listening(&mut cmd).await
}

impl Host {
    /// Stops the host and starts it again on the same state directory (its receipt log and simulated
    /// platform) with `extra` flags: a new boot, with a new keyset, at a new address (or the same one when
    /// `same_port`).
    async fn restart(&mut self, upstream: &str, extra: &[&str], same_port: bool) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
        let state = self.dir.path().join("host");
        let listen = if same_port {
            self.addr.to_string()
        } else {
            "127.0.0.1:0".to_owned()
        };
        let (child, addr, stdout) =
            spawn_host(&state, &listen, upstream, &self.weights, &self.log, extra).await;
        self.child = child;
        self.addr = addr;
        self.url = format!("https://{addr}");
        self._stdout = stdout;
    }
}

async fn open_session(host: &Host, url: &str, cap: u128) -> Session {
    let config = SessionConfig {
        host_url: url.to_owned(),
        policy: host.allow(),
        escrow_cap: cap,
        state_dir: host.state_dir(),
        call_timeout: DEFAULT_CALL_TIMEOUT,
    };
    Session::open(config, Wallet::generate()).await.unwrap()
}

/// Runs `test` within [`TEST_TIMEOUT`] against a `dait-host` in front of a fresh in-test upstream;
/// `test` gets the upstream's call counter and the host.
async fn with_host<F, Fut>(test: F)
where
    F: FnOnce(Arc<AtomicU64>, Host) -> Fut,
    Fut: Future<Output = ()>,
{
    tokio::time::timeout(TEST_TIMEOUT, async {
        let upstream = start_upstream().await;
        let host = start_host(&format!("http://{}", upstream.addr), None).await;
        test(upstream.calls.clone(), host).await;
    })
    .await
    .expect("test timed out");
}

/// The tenant's local proxy over `session`; also what its receipts are checked against: the verified
/// bundle and the tenant's address.
async fn spawn_proxy(
    session: Session,
) -> (
    proxy::ProxyHandle,
    dait_verifier::bundle::VerifiedBundle,
    dait_chain_client::Address,
) {
    let bundle = session.bundle().clone();
    let tenant = session.state().state.tenant;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    (proxy::spawn(listener, session).unwrap(), bundle, tenant)
}

/// Asserts that the host refused a call with `code` and the inner `status`.
fn assert_host_error(err: &TenantError, code: HostErrorCode, status: u16) {
    assert!(
        matches!(err, TenantError::Host { code: c, status: s } if *c == code && *s == status),
        "{err:?}"
    );
}

/// Posts `body` as `content_type` to the host's OHTTP endpoint and asserts the opaque answer to
/// anything that does not decrypt: 400 with an empty body.
async fn assert_opaque_400(session: &Session, content_type: &str, body: Vec<u8>) {
    let response = session
        .host()
        .send(Method::POST, "/v1/ohttp", Some(content_type), body)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert!(bytes.is_empty(), "the 400 must be opaque");
}

// ------------------------------------------------------------------------------------------ HTTP client

/// An ordinary HTTP/1.1 request to the proxy; returns status, headers and the whole body.
async fn http(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

fn chat(content: &str, max_tokens: u64, stream: bool) -> Value {
    json!({"model": "test-model", "messages": [{"role": "user", "content": content}],
           "max_tokens": max_tokens, "temperature": 0, "stream": stream})
}

fn completion(prompt: &str, max_tokens: u64, stream: bool) -> Value {
    json!({"model": "test-model", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": stream})
}

/// The text of a response body as the proxy returned it (JSON or server-sent events).
fn response_text(body: &[u8], streamed: bool) -> String {
    if streamed {
        let mut n = StreamNormalizer::new();
        n.push(body).unwrap();
        n.finish().unwrap().text()
    } else {
        dait_chain_client::NormalizedResponse::from_body(body)
            .unwrap()
            .text()
    }
}

/// Checks the proxy's receipts: call_seq 1..n, the prev-hash chain, signatures by the attested key, the
/// amounts and cumulative, and (when given) the tokens; then the counter-signed state. Returns the receipts.
async fn check_chain(
    proxy_addr: SocketAddr,
    bundle: &dait_verifier::bundle::VerifiedBundle,
    tenant: dait_chain_client::Address,
    expected_tokens: &[Option<(u64, u64)>],
) -> Vec<Value> {
    let (status, _, body) = http(proxy_addr, Method::GET, "/dait/receipts", None).await;
    assert_eq!(status, StatusCode::OK);
    let receipts: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(receipts.len(), expected_tokens.len());
    let key = HostVerifyingKey::from_sec1(bundle.receipt_key()).unwrap();
    let domain = bundle.domain();
    let mut prev = B256::ZERO.to_string();
    let mut cumulative = 0u128;
    for (i, (r, tokens)) in receipts.iter().zip(expected_tokens).enumerate() {
        assert_eq!(r["call_seq"], json!(i as u64 + 1), "call_seq");
        assert_eq!(
            r["prev_receipt_hash"].as_str().unwrap(),
            prev,
            "prev hash of call {}",
            i + 1
        );
        let signed =
            SignedReceipt::from_header_value(r["signed_receipt"].as_str().unwrap()).unwrap();
        let hash = signed.verify(&key, &domain).unwrap();
        assert_eq!(hash.to_string(), r["receipt_hash"].as_str().unwrap());
        assert_eq!(signed.receipt.keyset_hash, *bundle.keyset_hash());
        let (tin, tout) = (signed.receipt.tokens_in, signed.receipt.tokens_out);
        if let Some(expected) = tokens {
            assert_eq!((tin, tout), *expected, "tokens of call {}", i + 1);
        }
        let amount = u128::from(tin) * PRICE_IN + u128::from(tout) * PRICE_OUT;
        assert_eq!(signed.receipt.amount, amount);
        cumulative += amount;
        assert_eq!(signed.receipt.cumulative, cumulative);
        prev = hash.to_string();
    }
    let (status, _, body) = http(proxy_addr, Method::GET, "/dait/state", None).await;
    assert_eq!(status, StatusCode::OK);
    let state: Value = serde_json::from_slice(&body).unwrap();
    let signed =
        SignedChannelState::from_header_value(state["signed_state"].as_str().unwrap()).unwrap();
    assert_eq!(signed.state.turn, receipts.len() as u64);
    assert_eq!(signed.state.cumulative, cumulative);
    assert_eq!(signed.state.last_receipt_hash.to_string(), prev);
    assert_eq!(signed.state.host, bundle.keyset().host_account);
    assert!(!signed.state.is_final);
    assert_eq!(signed.verify_tenant(&domain).unwrap(), tenant);
    receipts
}

/// Sends the four kinds of request through the proxy and checks each reply; returns the request bodies.
async fn four_calls(proxy_addr: SocketAddr, check_text: bool) -> Vec<Value> {
    let requests = vec![
        chat("Say hello to the tenant", 4, false),
        chat("Say hello to the tenant", 4, true),
        completion("Once upon a time", 5, false),
        completion("Once upon a time", 5, true),
    ];
    for request in &requests {
        let streamed = request["stream"] == json!(true);
        let path = if request.get("messages").is_some() {
            CHAT
        } else {
            "/v1/completions"
        };
        let (status, headers, body) = http(proxy_addr, Method::POST, path, Some(request)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        if streamed {
            let text = String::from_utf8_lossy(&body).into_owned();
            let receipt_at = text.find(": x-dait-receipt ").expect("receipt comment");
            let done_at = text.rfind("data: [DONE]").expect("[DONE]");
            assert!(
                receipt_at < done_at,
                "[DONE] must follow the verified receipt"
            );
        } else {
            let receipt = headers
                .get("x-dait-receipt")
                .expect("X-DAIT-Receipt")
                .to_str()
                .unwrap();
            SignedReceipt::from_header_value(receipt).unwrap();
            assert!(headers.contains_key("x-dait-state"));
        }
        if check_text {
            assert_eq!(response_text(&body, streamed), expected_text(request));
        }
    }
    requests
}

// ------------------------------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_end_to_end_with_in_test_upstream() {
    with_host(|calls, host| async move {
        let session = open_session(&host, &host.url, 1_000_000).await;
        let (handle, bundle, tenant) = spawn_proxy(session).await;
        let addr = handle.local_addr();

        let requests = four_calls(addr, true).await;
        let expected: Vec<_> = requests.iter().map(|r| Some(expected_usage(r))).collect();
        check_chain(addr, &bundle, tenant, &expected).await;
        // Usage came from the engine for every call (streams asked for it): one upstream call per request.
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        handle.shutdown().await;
    })
    .await;
}

/// The real engine's weights file: `DAIT_ENGINE_MODEL`, else what `scripts/engine.sh model` prints; must be
/// known when `required`.
fn real_engine_model(required: bool) -> Option<PathBuf> {
    let model = dait_testdata::engine_model();
    assert!(
        !required || model.is_some(),
        "engine model path unknown (scripts/engine.sh model)"
    );
    model
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_engine_end_to_end() {
    let required = std::env::var("DAIT_REQUIRE_ENGINE").is_ok_and(|v| v == "1");
    // DAIT_ENGINE_URL, else the engine that scripts/engine.sh started (if it runs).
    let Some(engine) = common::real_engine_url() else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(300), async {
        let model = real_engine_model(required);
        let host = start_host(engine.trim_end_matches('/'), model.as_deref()).await;
        let session = open_session(&host, &host.url, 10_000_000).await;
        let (handle, bundle, tenant) = spawn_proxy(session).await;
        let addr = handle.local_addr();

        let requests = four_calls(addr, false).await;
        // Tokens of non-streamed calls equal the usage the engine reported in the body.
        let mut expected = Vec::new();
        let (_, _, receipts_body) = http(addr, Method::GET, "/dait/receipts", None).await;
        let receipts: Vec<Value> = serde_json::from_slice(&receipts_body).unwrap();
        assert_eq!(receipts.len(), requests.len());
        for request in &requests {
            let path = if request.get("messages").is_some() {
                CHAT
            } else {
                "/v1/completions"
            };
            // Ask the engine directly for its own usage (temperature 0 is deterministic on this engine).
            let mut plain = request.clone();
            plain["stream"] = json!(false);
            let direct = reqwest_like(&engine, path, &plain).await;
            let usage = &direct["usage"];
            expected.push(Some((
                usage["prompt_tokens"].as_u64().unwrap(),
                usage["completion_tokens"].as_u64().unwrap(),
            )));
        }
        check_chain(addr, &bundle, tenant, &expected).await;
        // Streamed and plain calls of the same request carry the same response hash.
        assert_eq!(receipts[0]["response_hash"], receipts[1]["response_hash"]);
        assert_eq!(receipts[2]["response_hash"], receipts[3]["response_hash"]);
        handle.shutdown().await;
    })
    .await
    .expect("test timed out");
}

/// A plain POST of JSON to the engine (no TLS), returning the JSON reply.
async fn reqwest_like(base: &str, path: &str, body: &Value) -> Value {
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let addr: SocketAddr = tokio::net::lookup_host(authority)
        .await
        .unwrap()
        .next()
        .unwrap();
    let (status, _, bytes) = http(addr, Method::POST, path, Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_ciphertext_bit_gets_an_opaque_400_and_nothing_in_clear_is_logged() {
    with_host(|_, host| async move {
        let mut session = open_session(&host, &host.url, 1_000_000).await;

        // A valid call carrying the marker: served, and the marker never reaches the log.
        let body = chat(MARKER, 3, false).to_string().into_bytes();
        session.call(CHAT, body.clone()).await.unwrap();

        // The same kind of request, sealed to the attested key, with one ciphertext bit flipped.
        let inner = Tenant::inner(CHAT, &session.state().to_header_value(), &body);
        let client =
            ohttp::ClientRequest::from_encoded_config(session.bundle().ohttp_key_config()).unwrap();
        let (mut sealed, _) = client.encapsulate(&inner).unwrap();
        let last = sealed.len() - 20;
        sealed[last] ^= 0x01;
        assert_opaque_400(&session, "message/ohttp-req", sealed).await;
        // A garbage body gets the very same answer.
        assert_opaque_400(&session, "message/ohttp-req", b"garbage".to_vec()).await;
        // A chunked (streamed) request with a flipped bit gets the same opaque 400.
        let mut chunked = Vec::new();
        {
            use futures::AsyncWriteExt as _;
            let client =
                ohttp::ClientRequest::from_encoded_config(session.bundle().ohttp_key_config())
                    .unwrap();
            let mut writer = client.encapsulate_stream(&mut chunked).unwrap();
            writer.write_all(&inner).await.unwrap();
            writer.close().await.unwrap();
        }
        let last = chunked.len() - 5;
        chunked[last] ^= 0x01;
        assert_opaque_400(&session, "message/ohttp-chunked-req", chunked).await;
        // The tenant library reports it as the outer status.
        let err = session
            .host()
            .post_ohttp("message/ohttp-req", b"garbage".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(err, TenantError::HostStatus { status: 400 }));

        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = host.log_text();
        assert!(
            !log.is_empty(),
            "the agent log should have lines at debug level"
        );
        assert!(!log.contains(MARKER), "plaintext reached the agent's log");
        assert!(
            !log.contains("alpha beta"),
            "completion text reached the agent's log"
        );
    })
    .await;
}

/// The host restarts with the same operator account (`--host-key-path`) and a new boot key: the tenant's
/// session verifies the new bundle, checks that it names the channel's account, and continues the channel
/// from its last co-signed state; receipts after the restart name the new key (PROTOCOL.md §4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_continues_the_channel_after_the_tenant_resumes() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let upstream = start_upstream().await;
        let up = format!("http://{}", upstream.addr);
        let keys = tempfile::tempdir().unwrap();
        let operator = keys.path().join("operator.key");
        std::fs::write(&operator, "ac".repeat(32)).unwrap();
        let other = keys.path().join("other.key");
        std::fs::write(&other, "bd".repeat(32)).unwrap();
        let with_key = |p: &Path| ["--host-key-path".to_owned(), p.display().to_string()];
        let flags = with_key(&operator);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut host = start_host_with(&up, None, &flags).await;
        let mut session = open_session(&host, &host.url, 1_000_000).await;
        let account = session.bundle().keyset().host_account;
        assert!(!account.is_zero());
        assert_eq!(session.state().state.host, account);
        let body = chat("before the restart", 3, false)
            .to_string()
            .into_bytes();
        let first = session.call(CHAT, body.clone()).await.unwrap();
        let key1 = *session.bundle().host_key_id();

        host.restart(&up, &flags, false).await;
        // The old pinned connection is gone; the channel resumes at the new address with the new key.
        session.resume(Some(&host.url)).await.unwrap();
        assert_ne!(*session.bundle().host_key_id(), key1, "a new boot key");
        assert_eq!(session.state().state.turn, 1);
        let second = session.call(CHAT, body.clone()).await.unwrap();
        let r = second.receipt.receipt();
        assert_eq!(r.call_seq, 2);
        assert_eq!(r.prev_receipt_hash, *first.receipt.hash());
        assert_eq!(r.host_key_id, *session.bundle().host_key_id());
        assert_eq!(second.state.state.host, account);

        // Another operator account on the same state: the tenant refuses to continue, nothing changes.
        let other_flags = with_key(&other);
        let other_flags: Vec<&str> = other_flags.iter().map(String::as_str).collect();
        host.restart(&up, &other_flags, false).await;
        let err = session.resume(Some(&host.url)).await.unwrap_err();
        assert!(
            matches!(
                err,
                TenantError::CannotResume(ReceiptError::Rule(Rule::WrongHost))
            ),
            "{err:?}"
        );
        assert_eq!(session.state().state.turn, 2);
    })
    .await
    .expect("test timed out");
}

/// The same through the tenant's proxy, the host restarting at the same address: the first call after the
/// restart fails its pinned TLS handshake (a new boot key), so the proxy re-verifies the host, resumes the
/// channel and sends the call again; the receipts go on across the two boot keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_resumes_the_channel_when_the_host_restarts() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let upstream = start_upstream().await;
        let up = format!("http://{}", upstream.addr);
        let keys = tempfile::tempdir().unwrap();
        let operator = keys.path().join("operator.key");
        std::fs::write(&operator, "ac".repeat(32)).unwrap();
        let flags = ["--host-key-path".to_owned(), operator.display().to_string()];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut host = start_host_with(&up, None, &flags).await;
        let session = open_session(&host, &host.url, 1_000_000).await;
        let (handle, _, _) = spawn_proxy(session).await;
        let addr = handle.local_addr();
        let body = chat("around a restart", 3, false);
        let (status, _, _) = http(addr, Method::POST, CHAT, Some(&body)).await;
        assert_eq!(status, StatusCode::OK);
        host.restart(&up, &flags, true).await;
        let (status, _, text) = http(addr, Method::POST, CHAT, Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
        let (_, _, receipts) = http(addr, Method::GET, "/dait/receipts", None).await;
        let receipts: Value = serde_json::from_slice(&receipts).unwrap();
        let receipts = receipts.as_array().unwrap();
        assert_eq!(receipts.len(), 2);
        assert_eq!(receipts[1]["call_seq"], 2);
        assert_eq!(
            receipts[1]["prev_receipt_hash"],
            receipts[0]["receipt_hash"]
        );
        assert_ne!(receipts[1]["host_key_id"], receipts[0]["host_key_id"]);
        let (_, _, state) = http(addr, Method::GET, "/dait/state", None).await;
        let state: Value = serde_json::from_slice(&state).unwrap();
        assert_eq!(state["turn"], 2);
        assert_eq!(state["is_final"], false);
        handle.shutdown().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_stale_state_is_refused() {
    with_host(|_, host| async move {
        let mut session = open_session(&host, &host.url, 1_000_000).await;
        let opening = session.state().clone();
        let body = chat("first call", 3, false).to_string().into_bytes();
        session.call(CHAT, body.clone()).await.unwrap();
        // Replaying the opening state (turn 0) after call 1 is stale.
        let err = session
            .call_with_state(CHAT, body.clone(), &opening)
            .await
            .unwrap_err();
        assert_host_error(&err, HostErrorCode::StaleState, 409);
        // The session is not stopped by a host refusal: the current state still works.
        let outcome = session.call(CHAT, body).await.unwrap();
        assert_eq!(outcome.receipt.receipt().call_seq, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_over_the_escrow_cap_is_refused() {
    with_host(|calls, host| async move {
        // The agent bounds prompt tokens by the body size (+256); max_tokens 100000 at price 3 is far over
        // the cap of 5000, which a small call fits in.
        let mut session = open_session(&host, &host.url, 5_000).await;
        let body = chat("two words", 100_000, false).to_string().into_bytes();
        let err = session.call(CHAT, body).await.unwrap_err();
        assert_host_error(&err, HostErrorCode::OverEscrowCap, 402);
        // The same over chunked OHTTP (a streamed request).
        let body = chat("two words", 100_000, true).to_string().into_bytes();
        let err = session
            .call_stream(CHAT, body)
            .await
            .map(|_| ())
            .unwrap_err();
        assert_host_error(&err, HostErrorCode::OverEscrowCap, 402);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "the engine must not run an unpaid call"
        );
        // Within the cap it is served.
        let body = chat("two words", 2, false).to_string().into_bytes();
        session.call(CHAT, body).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_receipts_from_the_real_host_are_detected() {
    with_host(|_, host| async move {
        let mut session = open_session(&host, &host.url, 1_000_000).await;
        let before = session.channel().clone();
        let body = chat("check my receipt", 4, false).to_string().into_bytes();
        let outcome = session.call(CHAT, body.clone()).await.unwrap();
        let response = dait_chain_client::NormalizedResponse::from_body(&outcome.body).unwrap();
        let evidence = CallEvidence {
            request_body: &body,
            response: &response,
            request_ct: &outcome.request_ct,
            response_ct_hash: B256::ZERO,
        };
        let genuine = outcome.receipt.signed().clone();
        // Control: the genuine receipt passes against the state before the call.
        before.check(genuine.clone(), &evidence).unwrap();

        let mut wrong_seq = genuine.clone();
        wrong_seq.receipt.call_seq = 2;
        assert!(matches!(
            before.check(wrong_seq, &evidence),
            Err(ReceiptError::Rule(Rule::CallSeq {
                expected: 1,
                actual: 2
            }))
        ));

        let mut wrong_channel = genuine.clone();
        wrong_channel.receipt.channel_id = B256([0x42; 32]);
        assert!(matches!(
            before.check(wrong_channel, &evidence),
            Err(ReceiptError::Rule(Rule::WrongChannel))
        ));

        let mut bad_signature = genuine.clone();
        bad_signature.host_signature.0[7] ^= 0x80;
        assert!(matches!(
            before.check(bad_signature, &evidence),
            Err(ReceiptError::Rule(Rule::HostSignature(_)))
        ));

        let mut inflated = genuine.clone();
        inflated.receipt.tokens_out += 1;
        assert!(matches!(
            before.check(inflated, &evidence),
            Err(ReceiptError::Rule(Rule::HostSignature(_)))
        ));

        let altered_body = String::from_utf8(outcome.body.clone())
            .unwrap()
            .replace("alpha", "omega");
        let altered =
            dait_chain_client::NormalizedResponse::from_body(altered_body.as_bytes()).unwrap();
        let altered_evidence = CallEvidence {
            response: &altered,
            ..evidence.clone()
        };
        assert!(matches!(
            before.check(genuine.clone(), &altered_evidence),
            Err(ReceiptError::Rule(Rule::ResponseHash))
        ));

        let other_request = CallEvidence {
            request_body: b"{}",
            ..evidence.clone()
        };
        assert!(matches!(
            before.check(genuine, &other_request),
            Err(ReceiptError::Rule(Rule::RequestHash))
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_for_another_nonce_and_simulated_evidence_under_the_default_policy_are_rejected() {
    with_host(|_, host| async move {
        let client = HostClient::new(&host.url).unwrap();
        let bundle = client.fetch_bundle(&[1; 32]).await.unwrap();
        // Control: it verifies for the nonce it was made for.
        verify_bundle(
            &bundle,
            &host.allow(),
            &Freshness::TenantNonce([1; 32]),
            UnixTime::now(),
        )
        .unwrap();
        let err = verify_bundle(
            &bundle,
            &host.allow(),
            &Freshness::TenantNonce([2; 32]),
            UnixTime::now(),
        )
        .unwrap_err();
        assert!(matches!(err, VerifyError::FreshnessMismatch));

        // The default policy rejects simulated evidence, through the whole session flow too.
        let err = verify_bundle(
            &bundle,
            &Policy::new(),
            &Freshness::TenantNonce([1; 32]),
            UnixTime::now(),
        )
        .unwrap_err();
        assert!(matches!(err, VerifyError::SimulatedEvidence));
        let config = SessionConfig {
            host_url: host.url.clone(),
            policy: Policy::new(),
            escrow_cap: 1,
            state_dir: host.state_dir(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
        };
        let err = Session::open(config, Wallet::generate()).await.unwrap_err();
        assert!(
            matches!(err, TenantError::Bundle(VerifyError::SimulatedEvidence)),
            "{err:?}"
        );

        // Another simulated root does not certify this host's attestation key.
        let other_root = dait_chain_client::HostSigningKey::from_bytes(&[9; 32])
            .unwrap()
            .verifying_key()
            .to_sec1();
        let policy = Policy::new()
            .dangerous_allow_simulated(&other_root)
            .unwrap();
        let err = verify_bundle(
            &bundle,
            &policy,
            &Freshness::TenantNonce([1; 32]),
            UnixTime::now(),
        )
        .unwrap_err();
        assert!(matches!(err, VerifyError::AttestationKeyNotCertified));

        // A client pinned to another TLS key refuses the host.
        let pinned = HostClient::pinned(&host.url, b"not the attested key").unwrap();
        let err = pinned.fetch_bundle(&[1; 32]).await.unwrap_err();
        assert!(matches!(err, TenantError::TlsHandshake(_)), "{err:?}");
    })
    .await;
}

/// A TCP relay to `target`. While `armed`, it withholds the host's last `cut` bytes: bytes are passed on
/// once `cut` newer ones follow them, or after 200 ms without new bytes (so the TLS handshake completes);
/// when the host closes the connection the withheld tail is dropped. A response written in one burst
/// thus loses its end (the final chunk, the receipt trailer, the TLS close).
async fn cutting_relay(
    target: SocketAddr,
    armed: Arc<AtomicBool>,
    cut: usize,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let armed = armed.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let upstream = TcpStream::connect(target).await.unwrap();
                let (mut client_read, mut client_write) = client.into_split();
                let (mut host_read, mut host_write) = upstream.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut host_write).await;
                });
                if armed {
                    let mut held: Vec<u8> = Vec::new();
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match tokio::time::timeout(
                            Duration::from_millis(200),
                            host_read.read(&mut buf),
                        )
                        .await
                        {
                            Ok(Ok(0) | Err(_)) => break,
                            Ok(Ok(n)) => {
                                held.extend_from_slice(&buf[..n]);
                                if held.len() > cut {
                                    let pass = held.len() - cut;
                                    if client_write.write_all(&held[..pass]).await.is_err() {
                                        break;
                                    }
                                    held.drain(..pass);
                                }
                            }
                            Err(_) => {
                                if client_write.write_all(&held).await.is_err() {
                                    break;
                                }
                                held.clear();
                            }
                        }
                    }
                } else {
                    let _ = tokio::io::copy(&mut host_read, &mut client_write).await;
                }
                let _ = client_write.shutdown().await;
                up.abort();
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_stream_is_detected() {
    with_host(|_, host| async move {
        let armed = Arc::new(AtomicBool::new(false));
        let (relay, relay_task) = cutting_relay(host.addr, armed.clone(), 120).await;
        let mut session = open_session(&host, &format!("https://{relay}"), 1_000_000).await;

        // Control: through the relay, unarmed, a stream completes and its receipt verifies.
        let body = chat("stream through the relay", 6, true)
            .to_string()
            .into_bytes();
        {
            let mut call = session.call_stream(CHAT, body.clone()).await.unwrap();
            let mut done = false;
            while let Some(item) = call.next().await {
                if let StreamItem::Done(_) = item.unwrap() {
                    done = true;
                }
            }
            assert!(done);
        }

        // Armed: the end of the response (final chunk with the receipt trailer) never arrives.
        armed.store(true, Ordering::SeqCst);
        let result = async {
            let mut call = session.call_stream(CHAT, body).await?;
            while let Some(item) = call.next().await {
                if let StreamItem::Done(_) = item? {
                    return Ok(true);
                }
            }
            Ok::<_, TenantError>(false)
        }
        .await;
        assert!(
            matches!(result, Err(TenantError::StreamTruncated)),
            "{result:?}"
        );
        relay_task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_client_leaving_mid_stream_does_not_break_the_channel() {
    with_host(|_, host| async move {
        let session = open_session(&host, &host.url, 1_000_000).await;
        let (handle, bundle, tenant) = spawn_proxy(session).await;
        let addr = handle.local_addr();

        // A client asks for a slow stream, reads its first bytes and hangs up.
        let request = chat("answer slowly please", 6, true);
        let body = request.to_string();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut first = [0u8; 64];
        let n = stream.read(&mut first).await.unwrap();
        assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
        drop(stream);

        // The proxy still finished that call and checked its receipt: the next call continues the chain.
        let next = chat("and now quickly", 3, false);
        let (status, _, body) = http(addr, Method::POST, CHAT, Some(&next)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        check_chain(addr, &bundle, tenant, &[Some(expected_usage(&request)), Some(expected_usage(&next))]).await;
        handle.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_call_slower_than_the_tenants_timeout_fails_with_its_own_error() {
    with_host(|_, host| async move {
        let config = SessionConfig {
            host_url: host.url.clone(),
            policy: host.allow(),
            escrow_cap: 1_000_000,
            state_dir: host.state_dir(),
            // The engine paces this stream's events 100 ms apart.
            call_timeout: Duration::from_millis(30),
        };
        let mut session = Session::open(config, Wallet::generate()).await.unwrap();
        let body = chat("answer slowly please", 6, true)
            .to_string()
            .into_bytes();
        // The timeout is meant to strike between two paced events; on a loaded machine it may strike
        // before the response head already, which is the same error.
        let outcome = match session.call_stream(CHAT, body).await {
            Err(e) => Some(Err(e)),
            Ok(mut call) => {
                let mut outcome = None;
                while let Some(item) = call.next().await {
                    outcome = Some(item);
                }
                outcome
            }
        };
        assert!(
            matches!(outcome, Some(Err(TenantError::Timeout))),
            "{outcome:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_dying_mid_stream_ends_it_with_an_error_no_receipt_and_the_same_turn() {
    with_host(|_, host| async move {
        let mut session = open_session(&host, &host.url, 1_000_000).await;
        // The engine sends two events, then its connection drops mid-body.
        let body = chat("perish after two words", 6, true)
            .to_string()
            .into_bytes();
        let mut data = Vec::new();
        let mut end = None;
        {
            let mut call = session.call_stream(CHAT, body).await.unwrap();
            while let Some(item) = call.next().await {
                match item {
                    Ok(StreamItem::Data(chunk)) => data.extend_from_slice(&chunk),
                    other => end = Some(other),
                }
            }
        }
        // What was delivered arrived, then the authenticated error trailer; no receipt.
        assert!(String::from_utf8_lossy(&data).contains("alpha"));
        assert!(
            matches!(
                end,
                Some(Err(TenantError::StreamFailed {
                    code: HostErrorCode::Upstream
                }))
            ),
            "{end:?}"
        );
        let log = host.dir.path().join("host").join("receipts.log");
        let (records, _) = dait_agent::receipt_log::read_records(&log).unwrap();
        assert!(records.is_empty(), "a failed stream logged a receipt");

        // The channel did not move: the next calls are turns 1 and 2.
        let plain = chat("and now quickly", 3, false).to_string().into_bytes();
        let outcome = session.call(CHAT, plain).await.unwrap();
        assert_eq!(outcome.receipt.receipt().call_seq, 1);
        let streamed = chat("and a stream", 3, true).to_string().into_bytes();
        let mut call = session.call_stream(CHAT, streamed).await.unwrap();
        let mut seq = None;
        while let Some(item) = call.next().await {
            if let StreamItem::Done(outcome) = item.unwrap() {
                seq = Some(outcome.receipt.receipt().call_seq);
            }
        }
        assert_eq!(seq, Some(2));
        let (records, _) = dait_agent::receipt_log::read_records(&log).unwrap();
        let seqs: Vec<u64> = records.iter().map(|r| r.header.call_seq).collect();
        assert_eq!(seqs, [1, 2]);

        // Once the host stopped, the library's replay finds those two and nothing else.
        let mut host = host;
        host.child.start_kill().unwrap();
        host.child.wait().await.unwrap();
        let (log, replay) =
            dait_agent::receipt_log::ReceiptLog::open(&host.dir.path().join("host")).unwrap();
        drop(log);
        assert_eq!((replay.records, replay.truncated), (2, 0));
        let channel = session.state().state.channel_id;
        assert_eq!(replay.heads[&channel.0].call_seq, 2);
    })
    .await;
}

/// Settlement end to end on a real anvil (feature `settlement`): the operator registers, `dait-host serve
/// --chain-rpc` attests its keyset for the epoch, the tenant opens a channel on chain and calls through its proxy
/// (the real engine), the host restarts in the middle and attests its new keyset, the channel goes on, a receipt
/// batch is committed and revealed by the agent's settlement task, a logged receipt is fetched again, and the
/// cooperative close pays the host the receipts' cumulative amount to the unit and refunds the rest.
#[cfg(feature = "settlement")]
mod settlement {
    use super::*;
    use dait_chain_client::evm::anvil::{Anvil, Hardfork};
    use dait_chain_client::evm::{
        BatchStatus, ChannelStatus, OnchainChannelState, Params, Settlement, SettlementEvent,
        Token, account_address, connect_http,
    };
    use dait_chain_client::{Address, ChannelState, HostSignature, TenantSigner};

    const E18: u128 = 1_000_000_000_000_000_000;
    const DAY: u64 = 86_400;
    const DEPLOYER: usize = 0;
    const OPERATOR: usize = 1;
    const OWNER: usize = 2;
    const TENANT_SECRET: [u8; 32] = [0x33; 32];
    const RELEASE: [u8; 32] = [0x3e; 32];
    const EPOCH_BLOCKS: u64 = 500;
    const COMMIT_REVEAL_WINDOW: u64 = 3;
    const ESCROW: u128 = 5 * E18;

    async fn until<F, Fut>(what: &str, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        for _ in 0..600 {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}");
    }

    async fn balance_of(token: &Token, who: Address) -> u128 {
        token
            .balance_of(who)
            .await
            .unwrap()
            .to_string()
            .parse()
            .unwrap()
    }

    fn amounts(receipts: &[Value]) -> u128 {
        receipts
            .iter()
            .map(|r| r["amount"].as_str().unwrap().parse::<u128>().unwrap())
            .sum()
    }

    /// A local chain with the token and the settlement deployed, a usable release, a funded operator and
    /// tenant, and the operator registered with one GPU through `dait-host register`.
    struct Net {
        anvil: Anvil,
        settlement: Settlement,
        token: Token,
        operator: Address,
        tenant: Address,
        as_tenant: Settlement,
        keys: tempfile::TempDir,
        now: u64,
    }

    impl Net {
        async fn start() -> Self {
            let anvil = Anvil::start(Hardfork::Osaka).unwrap();
            let deployer = connect_http(anvil.url(), Some(&Anvil::DEV_KEYS[DEPLOYER])).unwrap();
            let token = Token::deploy_test_token(deployer.clone()).await.unwrap();
            let operator = account_address(&Anvil::DEV_KEYS[OPERATOR]).unwrap();
            let tenant = account_address(&TENANT_SECRET).unwrap();
            let settlement = Settlement::deploy(
                deployer,
                &Params {
                    token: token.address(),
                    owner: account_address(&Anvil::DEV_KEYS[OWNER]).unwrap(),
                    stake_per_gpu: 100 * E18,
                    unbonding_delay: 7 * DAY,
                    challenge_window: DAY,
                    release_delay: 3600,
                    epoch_nonce_rotation_blocks: EPOCH_BLOCKS,
                    commit_reveal_window: COMMIT_REVEAL_WINDOW,
                    reveal_window: 200,
                    sample_size: 3,
                },
            )
            .await
            .unwrap();
            token.mint(operator, 1_000 * E18).await.unwrap();
            token.mint(tenant, 10 * E18).await.unwrap();
            anvil.set_balance(tenant, 10 * E18).unwrap();
            let as_owner = Settlement::at(
                settlement.address(),
                connect_http(anvil.url(), Some(&Anvil::DEV_KEYS[OWNER])).unwrap(),
            )
            .await
            .unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            as_owner
                .publish_release(B256(RELEASE), B256([1; 32]), now - 10, now + 365 * DAY)
                .await
                .unwrap();
            anvil.increase_time(3601).unwrap();
            anvil.mine(1).unwrap();
            let as_tenant = Settlement::at(
                settlement.address(),
                connect_http(anvil.url(), Some(&TENANT_SECRET)).unwrap(),
            )
            .await
            .unwrap();
            let net = Self {
                anvil,
                settlement,
                token,
                operator,
                tenant,
                as_tenant,
                keys: tempfile::tempdir().unwrap(),
                now,
            };
            std::fs::write(net.operator_key(), hex::encode(Anvil::DEV_KEYS[OPERATOR])).unwrap();
            std::fs::write(net.wallet_file(), hex::encode(TENANT_SECRET)).unwrap();
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_dait-host"))
                .args(["register", "--rpc-url", net.anvil.url(), "--settlement"])
                .arg(net.settlement.address().to_string())
                .arg("--host-key-path")
                .arg(net.operator_key())
                .args(["--gpu-id", "GPU-e2e-0001"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            net
        }

        fn operator_key(&self) -> PathBuf {
            self.keys.path().join("operator.key")
        }

        fn wallet_file(&self) -> PathBuf {
            self.keys.path().join("tenant.key")
        }

        /// `dait-host serve`'s settlement flags: a round every 0.2 s, batches of `batch` receipts.
        fn flags(&self, batch: u64) -> Vec<String> {
            [
                "--chain-rpc",
                self.anvil.url(),
                "--settlement",
                &self.settlement.address().to_string(),
                "--host-key-path",
                &self.operator_key().display().to_string(),
                "--release-id",
                &hex::encode(RELEASE),
                "--bundle-uri",
                "https://host.example/v1/attestation",
                "--settle-interval",
                "0.2",
                "--batch-size",
                &batch.to_string(),
            ]
            .map(str::to_owned)
            .to_vec()
        }

        /// The keyset hash the operator's attestation for `epoch` names (zero when there is none).
        async fn attested(&self, epoch: u64) -> B256 {
            let a = self
                .settlement
                .instance()
                .attestations(self.operator.into(), epoch)
                .call()
                .await
                .unwrap();
            B256(a.keysetHash.0)
        }

        /// The tenant opens a channel with `salt` on chain and a session on it with `host`.
        async fn open(&self, host: &Host, salt: B256) -> (B256, Session) {
            Token::at(self.token.address(), self.as_tenant.provider().clone())
                .approve(self.settlement.address(), Some(ESCROW))
                .await
                .unwrap();
            let (channel_id, _) = self
                .as_tenant
                .open_channel(self.operator, salt, ESCROW, 1_000, E18, self.now + 30 * DAY)
                .await
                .unwrap();
            let config = SessionConfig {
                host_url: host.url.clone(),
                policy: host.allow(),
                escrow_cap: ESCROW,
                state_dir: host.state_dir(),
                call_timeout: DEFAULT_CALL_TIMEOUT,
            };
            let wallet = Wallet::load_or_create(&self.wallet_file()).unwrap();
            let session = Session::open_with_salt(config, wallet, salt).await.unwrap();
            assert_eq!(session.channel().id(), &channel_id);
            (channel_id, session)
        }
    }

    async fn call(proxy: SocketAddr, i: u64) {
        let body = chat(&format!("count to {i}"), 4, i.is_multiple_of(2));
        let (status, _, text) = http(proxy, Method::POST, CHAT, Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
    }

    async fn proxy_receipts(proxy: SocketAddr) -> Vec<Value> {
        let (_, _, receipts) = http(proxy, Method::GET, "/dait/receipts", None).await;
        serde_json::from_slice(&receipts).unwrap()
    }

    async fn proxy_state(proxy: SocketAddr) -> SignedChannelState {
        let (_, _, state) = http(proxy, Method::GET, "/dait/state", None).await;
        let state: Value = serde_json::from_slice(&state).unwrap();
        SignedChannelState::from_header_value(state["signed_state"].as_str().unwrap()).unwrap()
    }

    /// The real engine's URL and whether CI requires it (`DAIT_REQUIRE_ENGINE=1`); `None`, after `skipped: no
    /// engine`, without one where it is not required.
    fn engine() -> Option<(String, bool)> {
        let required = std::env::var("DAIT_REQUIRE_ENGINE").is_ok_and(|v| v == "1");
        Some((common::real_engine_url()?, required))
    }

    /// A chain, a host serving with its settlement task (batches of 1,000 receipts) once its keyset is attested
    /// for the current epoch, and a channel opened on chain with `salt`, the tenant's proxy on it.
    async fn serving(
        engine: &str,
        required: bool,
        salt: B256,
    ) -> (Net, Host, B256, proxy::ProxyHandle) {
        let net = Net::start().await;
        let flags = net.flags(1_000);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let model = real_engine_model(required);
        let host = start_host_with(engine, model.as_deref(), &flags).await;
        let epoch = net.settlement.current_epoch().await.unwrap();
        until("the attestation", || async {
            net.attested(epoch).await != B256::ZERO
        })
        .await;
        let (channel_id, session) = net.open(&host, salt).await;
        let (handle, _, _) = spawn_proxy(session).await;
        (net, host, channel_id, handle)
    }

    async fn assert_channel_final(proxy: SocketAddr) {
        let body = chat("after the close", 2, false);
        let (status, _, text) = http(proxy, Method::POST, CHAT, Some(&body)).await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "{}",
            String::from_utf8_lossy(&text)
        );
        assert!(String::from_utf8_lossy(&text).contains("channel_final"));
    }

    /// Register, the agent attests each boot's keyset, a channel opened on chain, six calls through the proxy
    /// over the real engine with a host restart in the middle, a batch of four committed and revealed by the
    /// agent, a logged receipt fetched again, and the cooperative close paying the receipts' sum to the unit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn settles_a_channel_on_anvil_across_a_host_restart() {
        const BATCH: u64 = 4;
        let Some((engine, required)) = engine() else {
            return;
        };
        tokio::time::timeout(Duration::from_secs(420), async {
            let net = Net::start().await;
            let (settlement, operator) = (&net.settlement, net.operator);

            // The host serves with its settlement task: attests at once, batches of BATCH receipts.
            let flags = net.flags(BATCH);
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let model = real_engine_model(required);
            let mut host = start_host_with(&engine, model.as_deref(), &flags).await;
            let epoch = settlement.current_epoch().await.unwrap();
            until("the first attestation", || async {
                net.attested(epoch).await != B256::ZERO
            })
            .await;

            // The tenant opens a channel on chain and calls through its proxy.
            let salt = B256([0x5a; 32]);
            let (channel_id, session) = net.open(&host, salt).await;
            assert_eq!(&net.attested(epoch).await, session.bundle().keyset_hash());
            let first_keyset = *session.bundle().keyset_hash();
            let (handle, _, _) = spawn_proxy(session).await;
            let proxy = handle.local_addr();
            for i in 1..=3 {
                call(proxy, i).await;
            }

            // The host restarts (a new boot, a new keyset); its settlement task attests the new keyset for the
            // same epoch, and the channel goes on through the proxy.
            host.restart(&engine, &flags, true).await;
            until("the new boot's attestation", || async {
                let k = net.attested(epoch).await;
                k != B256::ZERO && k != first_keyset
            })
            .await;
            for i in 4..=6 {
                call(proxy, i).await;
            }
            let receipts = proxy_receipts(proxy).await;
            assert_eq!(receipts.len(), 6);
            assert_ne!(receipts[0]["host_key_id"], receipts[5]["host_key_id"]);
            let sum = amounts(&receipts);
            let latest = proxy_state(proxy).await;
            assert_eq!(latest.state.turn, 6);
            assert_eq!(latest.state.cumulative, sum);

            // The first BATCH receipts (three of the first boot, one of the second) are committed, then revealed
            // once the sample block is mined; the host is credited with them.
            let committed = || async {
                settlement
                    .events(0, None)
                    .await
                    .unwrap()
                    .into_iter()
                    .find_map(|e| match e.event {
                        SettlementEvent::ReceiptsCommitted(c)
                            if Address::from(c.host) == operator =>
                        {
                            Some((B256::from(c.root), c.count, c.total))
                        }
                        _ => None,
                    })
            };
            until("the batch commit", || async { committed().await.is_some() }).await;
            let (root, count, total) = committed().await.unwrap();
            assert_eq!(u64::from(count), BATCH);
            let first = amounts(&receipts[..BATCH as usize]);
            assert_eq!(total, first);
            net.anvil.mine(COMMIT_REVEAL_WINDOW + 1).unwrap();
            until("the batch reveal", || async {
                settlement.batch(operator, root).await.unwrap().status == BatchStatus::Revealed
            })
            .await;
            let credits = settlement
                .instance()
                .credits(operator.into())
                .call()
                .await
                .unwrap();
            assert_eq!((credits.receipts, credits.batches), (BATCH, 1));
            assert_eq!(credits.amount, first);

            // A logged receipt again, from the agent, for the channel's tenant only.
            let path = format!("/v1/receipts/{}/2", hex::encode(channel_id.0));
            let header = latest.to_header_value();
            let mut conn = common::Conn::connect(host.addr, true).await.unwrap();
            let (status, body) = conn
                .send_with_headers("GET", &path, None, &[("x-dait-state", &header)], vec![])
                .await
                .unwrap();
            assert_eq!(status, 200);
            let again = SignedReceipt::decode(&body).unwrap();
            assert_eq!(again.receipt.call_seq, 2);
            assert_eq!(
                again
                    .receipt
                    .signing_digest(&settlement.domain())
                    .to_string(),
                receipts[1]["receipt_hash"].as_str().unwrap()
            );

            // The cooperative close: the tenant signs the final state, the agent counter-signs it, the tenant
            // sends `closeChannel`; the host gets the cumulative amount to the unit, the tenant the rest.
            let signer = TenantSigner::from_bytes(&TENANT_SECRET).unwrap();
            let final_state = ChannelState {
                is_final: true,
                ..latest.state.clone()
            };
            let signed = SignedChannelState {
                tenant_signature: signer.sign_state(&final_state, &settlement.domain()),
                state: final_state.clone(),
                host_signature: None,
            };
            let (status, body) = conn
                .send(
                    "POST",
                    "/v1/channel/close",
                    Some("text/plain"),
                    signed.to_header_value().into_bytes(),
                )
                .await
                .unwrap();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let countersigned =
                SignedChannelState::from_header_value(std::str::from_utf8(&body).unwrap()).unwrap();
            let host_signature: HostSignature = countersigned.host_signature.unwrap();
            // The key that counter-signed: the current boot's, which signed the last receipt.
            let host_key_id = B256::from_slice(
                &hex::decode(
                    receipts[5]["host_key_id"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches("0x"),
                )
                .unwrap(),
            )
            .unwrap();
            let (host_before, tenant_before) = (
                balance_of(&net.token, operator).await,
                balance_of(&net.token, net.tenant).await,
            );
            net.as_tenant
                .close_channel(
                    salt,
                    &OnchainChannelState::from(&final_state),
                    &countersigned.tenant_signature,
                    host_key_id,
                    Some(&host_signature),
                )
                .await
                .unwrap();
            assert_eq!(balance_of(&net.token, operator).await - host_before, sum);
            assert_eq!(
                balance_of(&net.token, net.tenant).await - tenant_before,
                ESCROW - sum
            );
            assert_eq!(
                settlement.channel(channel_id).await.unwrap().status,
                ChannelStatus::Closed
            );
            // The agent serves no call on the closed channel.
            assert_channel_final(proxy).await;
            handle.shutdown().await;
            drop(host);
        })
        .await
        .expect("test timed out");
    }

    /// The tenant starts a unilateral close after three calls (the chain knows turn 0); the agent's settlement
    /// task answers within the window with its best state, the tenant's signed state of call 3 (turn 2) plus the
    /// logged receipt 3 on top (`claimWithReceipt`): the chain's turn becomes 3 and the host is paid the three
    /// receipts' sum at once; the agent serves no more calls on the channel; after the window `finalize`
    /// refunds the tenant the rest, to the unit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_agent_answers_a_unilateral_close_with_its_best_state() {
        let Some((engine, required)) = engine() else {
            return;
        };
        tokio::time::timeout(Duration::from_secs(300), async {
            let salt = B256([0x6b; 32]);
            let (net, host, channel_id, handle) = serving(&engine, required, salt).await;
            let proxy = handle.local_addr();
            for i in 1..=3 {
                call(proxy, i).await;
            }
            let receipts = proxy_receipts(proxy).await;
            let sum = amounts(&receipts);
            assert_eq!(receipts.len(), 3);

            let host_before = balance_of(&net.token, net.operator).await;
            net.as_tenant
                .start_close(net.tenant, net.operator, salt)
                .await
                .unwrap();
            until("the agent's claim", || async {
                net.settlement.channel(channel_id).await.unwrap().turn == 3
            })
            .await;
            let info = net.settlement.channel(channel_id).await.unwrap();
            assert_eq!(info.status, ChannelStatus::Closing);
            assert_eq!(info.paid, sum);
            assert_eq!(
                balance_of(&net.token, net.operator).await - host_before,
                sum
            );
            let claimed = net
                .settlement
                .events(0, None)
                .await
                .unwrap()
                .into_iter()
                .find_map(|e| match e.event {
                    SettlementEvent::Claimed(c) if B256::from(c.channelId) == channel_id => {
                        Some((c.turn, c.cumulative.to_string()))
                    }
                    _ => None,
                });
            assert_eq!(claimed, Some((3, sum.to_string())));
            assert_channel_final(proxy).await;

            net.anvil.increase_time(DAY + 1).unwrap();
            let tenant_before = balance_of(&net.token, net.tenant).await;
            net.as_tenant
                .finalize(net.tenant, net.operator, salt)
                .await
                .unwrap();
            assert_eq!(
                balance_of(&net.token, net.tenant).await - tenant_before,
                ESCROW - sum
            );
            assert_eq!(
                net.settlement.channel(channel_id).await.unwrap().status,
                ChannelStatus::Closed
            );
            handle.shutdown().await;
            drop(host);
        })
        .await
        .expect("test timed out");
    }

    /// The chain stops answering while the host serves: the calls go on, each settlement round fails and says
    /// so, and the tenant's latest signed state still reaches the settlement store on disk (what the host claims
    /// with after a crash), since the round takes the states before it asks the chain anything.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tenant_states_reach_the_store_while_the_chain_is_down() {
        let Some((engine, required)) = engine() else {
            return;
        };
        tokio::time::timeout(Duration::from_secs(300), async {
            let (net, host, channel_id, handle) =
                serving(&engine, required, B256([0x6b; 32])).await;
            let proxy = handle.local_addr();

            // The turn of the channel's state in the store, as the file holds it now.
            let store = host.dir.path().join("host").join("settlement.json");
            let stored_turn = || {
                let bytes = std::fs::read(&store).ok()?;
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                let state = v["states"][channel_id.to_string()].as_str()?;
                Some(
                    SignedChannelState::from_header_value(state)
                        .unwrap()
                        .state
                        .turn,
                )
            };
            // A call carries the state of the turn before it (the open state, turn 0, for the first call).
            call(proxy, 1).await;
            until("the first state in the store", || async {
                stored_turn() == Some(0)
            })
            .await;

            // The chain goes away; the host serves on.
            let Net { anvil, .. } = net;
            drop(anvil);
            for i in 2..=3 {
                call(proxy, i).await;
            }
            let latest = proxy_state(proxy).await;
            assert_eq!(latest.state.turn, 3);
            until(
                "the last call's state in the store, the chain down",
                || async { stored_turn() == Some(2) },
            )
            .await;
            until("a failed round in the log", || async {
                host.log_text().contains("settlement round failed")
            })
            .await;
        })
        .await
        .expect("test timed out");
    }
}
