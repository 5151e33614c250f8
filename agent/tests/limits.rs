//! The agent's limits and timeouts, each shown to act: the connection and in-flight bounds answer a
//! fast `503` with `Retry-After`, a client that stalls in its TLS handshake, its headers or its body
//! is cut off at the configured timeout, and a stalled engine gives the tenant an `upstream` error,
//! with no receipt, within the upstream timeouts. Past the channel bound, evicted channels continue
//! their sequence; requests and engine answers over their size caps are refused with no receipt;
//! attestation is cached per freshness and fresh evidence is rate-limited per client address.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait of any exchange in these tests: a limit that does not act fails the test here.
const BOUND: Duration = Duration::from_secs(5);

/// Send raw bytes on a fresh connection and read until the agent closes it (within [`BOUND`]);
/// returns what it answered and how long that took.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> (String, Duration) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    tcp.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(BOUND, tcp.read_to_end(&mut buf))
        .await
        .expect("the agent neither answered nor closed the connection")
        .ok();
    (
        String::from_utf8_lossy(&buf).to_ascii_lowercase(),
        started.elapsed(),
    )
}

/// A plain connection to `a` and a tenant (one channel, escrow 1,000,000) for its attested keys.
async fn tenant_of(a: &Agent) -> (Conn, Tenant) {
    let mut conn = Conn::connect(a.addr, false).await.unwrap();
    let info = host_info(&mut conn).await;
    (conn, Tenant::new(&info, 1_000_000, 1))
}

/// One call, streamed or not, bounded by [`BOUND`], and how long it took.
async fn timed_call(t: &Tenant, conn: &mut Conn, stream: bool) -> (CallResult, Duration) {
    let started = Instant::now();
    let body = chat_body("hi", 5, stream);
    let r = if stream {
        tokio::time::timeout(BOUND, t.stream(conn, CHAT, &body))
            .await
            .expect("streamed call hung")
    } else {
        tokio::time::timeout(BOUND, t.call(conn, CHAT, &body))
            .await
            .expect("plain call hung")
    };
    (r, started.elapsed())
}

/// A call took at least `at_least` (the timeout acted, not something earlier) and under 2 s (it acted,
/// not the test's bound).
fn assert_took(took: Duration, at_least: Duration) {
    assert!(
        took >= at_least && took < Duration::from_secs(2),
        "{took:?}"
    );
}

const HEALTHZ_CLOSE: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

#[tokio::test]
async fn connections_over_the_limit_get_a_fast_503_then_are_served_again() {
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let a = agent_at(
        engine,
        false,
        &["--max-connections", "2", "--retry-after", "3"],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = Conn::connect(a.addr, false).await.unwrap();
        assert_eq!(
            c.send("GET", "/healthz", None, vec![]).await.unwrap().0,
            200
        );
        held.push(c);
    }
    let (resp, took) = raw_exchange(a.addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(resp.starts_with("http/1.1 503"), "{resp}");
    assert!(resp.contains("retry-after: 3\r\n"), "{resp}");
    assert!(took < Duration::from_secs(1), "refusal took {took:?}");

    // Once the held connections close, their slots serve new ones.
    drop(held);
    let deadline = Instant::now() + BOUND;
    loop {
        let (resp, _) = raw_exchange(a.addr, HEALTHZ_CLOSE).await;
        if resp.starts_with("http/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "slots not released: {resp}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tls_connection_over_the_limit_gets_503() {
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let a = agent_at(engine, true, &["--max-connections", "1"]).await;
    let mut held = Conn::connect(a.addr, true).await.unwrap();
    assert_eq!(
        held.send("GET", "/healthz", None, vec![]).await.unwrap().0,
        200
    );
    let mut over = Conn::connect(a.addr, true).await.unwrap();
    let started = Instant::now();
    assert_eq!(
        over.send("GET", "/healthz", None, vec![]).await.unwrap().0,
        503
    );
    // At once, not queued behind the held connection (which stays open for the whole test).
    assert!(started.elapsed() < BOUND);
}

#[tokio::test]
async fn calls_over_the_in_flight_limit_get_a_fast_503_and_no_receipt() {
    // The engine holds each call long enough that a refusal "at once" is told apart from one that waited for
    // the slot even on a loaded machine.
    let slow = EngineMode {
        delay: Duration::from_millis(4000),
        ..VLLM_LIKE
    };
    let (engine, stats) = start_engine(slow).await;
    let a = agent_at(
        engine,
        false,
        &["--max-in-flight", "1", "--retry-after", "2"],
    )
    .await;
    let mut c1 = Conn::connect(a.addr, false).await.unwrap();
    let info = host_info(&mut c1).await;
    let t1 = Tenant::new(&info, 1_000_000, 1);
    let t2 = Tenant::new(&info, 1_000_000, 2);
    let seen = stats.calls.load(std::sync::atomic::Ordering::Relaxed);
    let first =
        tokio::spawn(async move { t1.call(&mut c1, CHAT, &chat_body("hi", 5, false)).await });
    let deadline = Instant::now() + BOUND;
    while stats.calls.load(std::sync::atomic::Ordering::Relaxed) == seen {
        assert!(
            Instant::now() < deadline,
            "the engine never got the first call"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The slot is taken: a second call is refused at once, before decapsulation.
    let mut c2 = Conn::connect(a.addr, false).await.unwrap();
    let started = Instant::now();
    let refused = t2.try_call(&mut c2, CHAT, &chat_body("hi", 5, false)).await;
    assert_eq!(refused.err().map(|(status, _)| status), Some(503));
    assert!(started.elapsed() < Duration::from_millis(3000));
    let (resp, _) = raw_exchange(
        a.addr,
        b"POST /v1/ohttp HTTP/1.1\r\nhost: x\r\ncontent-type: message/ohttp-req\r\n\
          content-length: 3\r\nconnection: close\r\n\r\nabc",
    )
    .await;
    assert!(resp.starts_with("http/1.1 503"), "{resp}");
    assert!(resp.contains("retry-after: 2\r\n"), "{resp}");

    let r1 = first.await.unwrap();
    assert_eq!(r1.status, 200);
    assert!(r1.receipt.is_some());

    // A stream holds its slot until its last chunk, after its response has begun.
    let mut c3 = Conn::connect(a.addr, false).await.unwrap();
    let t3 = Tenant::new(&info, 1_000_000, 3);
    let seen = stats.calls.load(std::sync::atomic::Ordering::Relaxed);
    let streamed =
        tokio::spawn(async move { t3.stream(&mut c3, CHAT, &chat_body("hi", 5, true)).await });
    let deadline = Instant::now() + BOUND;
    while stats.calls.load(std::sync::atomic::Ordering::Relaxed) == seen {
        assert!(Instant::now() < deadline, "the engine never got the stream");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut c2 = Conn::connect(a.addr, false).await.unwrap();
    let refused = t2.try_call(&mut c2, CHAT, &chat_body("hi", 5, false)).await;
    assert_eq!(refused.err().map(|(status, _)| status), Some(503));
    assert!(streamed.await.unwrap().receipt.is_some());
    // The slot is free again; the refused tenant's channel was not touched.
    let mut c2 = Conn::connect(a.addr, false).await.unwrap();
    let r2 = t2.call(&mut c2, CHAT, &chat_body("hi", 5, false)).await;
    assert_eq!(r2.status, 200);
    assert_eq!(r2.receipt.unwrap().receipt.call_seq, 1);
}

#[tokio::test]
async fn half_a_header_line_is_cut_off_at_the_header_timeout() {
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let a = agent_at(engine, false, &["--header-read-timeout", "300ms"]).await;
    let (_, took) = raw_exchange(a.addr, b"GET /heal").await;
    assert!(took >= Duration::from_millis(250), "cut off after {took:?}");
    assert!(took < Duration::from_secs(2), "cut off after {took:?}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_at_the_header_timeout() {
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let a = agent_at(engine, false, &["--header-read-timeout", "300ms"]).await;
    let (resp, took) = raw_exchange(a.addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(resp.starts_with("http/1.1 200"), "{resp}");
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_off_at_its_timeout() {
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let a = agent_at(engine, true, &["--tls-handshake-timeout", "300ms"]).await;
    let (_, took) = raw_exchange(a.addr, b"").await;
    assert!(took >= Duration::from_millis(250), "cut off after {took:?}");
    assert!(took < Duration::from_secs(2), "cut off after {took:?}");
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_at_the_body_timeout() {
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let a = agent_at(engine, false, &["--body-read-timeout", "300ms"]).await;
    let (resp, took) = raw_exchange(
        a.addr,
        b"POST /v1/ohttp HTTP/1.1\r\nhost: x\r\ncontent-type: message/ohttp-req\r\n\
          content-length: 100\r\n\r\nonly ten b",
    )
    .await;
    assert!(resp.starts_with("http/1.1 408"), "{resp}");
    assert!(
        took >= Duration::from_millis(250),
        "answered after {took:?}"
    );
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
}

#[tokio::test]
async fn a_silent_engine_gives_upstream_at_the_first_byte_timeout() {
    let engine = start_stalled_engine(b"", b"").await;
    let flags = [
        "--upstream-first-byte-timeout",
        "300ms",
        "--upstream-deadline",
        "10s",
    ];
    let a = agent_at(engine, false, &flags).await;
    let (mut conn, t) = tenant_of(&a).await;

    let (r, took) = timed_call(&t, &mut conn, false).await;
    r.assert_error(502, "upstream");
    assert!(took < Duration::from_secs(2));

    let (r, took) = timed_call(&t, &mut conn, true).await;
    r.assert_error(502, "upstream");
    assert!(took < Duration::from_secs(2));
}

#[tokio::test]
async fn an_engine_stalling_mid_answer_gives_upstream_at_the_deadline() {
    let sse = b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok0 \"},\"finish_reason\":null}]}\n\n";
    let mut stream_reply =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    stream_reply.extend_from_slice(format!("{:x}\r\n", sse.len()).as_bytes());
    stream_reply.extend_from_slice(sse);
    stream_reply.extend_from_slice(b"\r\n");
    let engine = start_stalled_engine(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"id\"",
        &stream_reply,
    )
    .await;
    let flags = [
        "--upstream-first-byte-timeout",
        "300ms",
        "--upstream-deadline",
        "600ms",
    ];
    let a = agent_at(engine, false, &flags).await;
    let (mut conn, t) = tenant_of(&a).await;

    let (r, took) = timed_call(&t, &mut conn, false).await;
    r.assert_error(502, "upstream");
    assert_took(took, Duration::from_millis(550));

    // A stream that started: its token arrives, then it ends with the error trailer and no receipt.
    let (r, took) = timed_call(&t, &mut conn, true).await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("tok0"));
    assert_eq!(r.trailer_error.as_deref(), Some(&b"upstream"[..]));
    assert!(r.receipt.is_none());
    assert_took(took, Duration::from_millis(550));
}

#[tokio::test]
async fn an_engine_that_does_not_accept_gives_upstream_at_the_connect_timeout() {
    // A listener with a full accept queue, never accepting: further connection attempts get no
    // answer to their SYN, so connecting hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let engine = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(engine)).await {
            Ok(Ok(s)) => fillers.push(s),
            _ => break,
        }
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    let flags = [
        "--upstream-connect-timeout",
        "300ms",
        "--upstream-first-byte-timeout",
        "10s",
    ];
    let a = agent_at(engine, false, &flags).await;
    let (mut conn, t) = tenant_of(&a).await;
    let (r, took) = timed_call(&t, &mut conn, false).await;
    r.assert_error(502, "upstream");
    assert_took(took, Duration::from_millis(250));
    drop(listener);
}

#[tokio::test]
async fn evicted_channels_continue_their_sequence() {
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let a = agent_at(engine, false, &["--max-channels", "2"]).await;
    let mut conn = Conn::connect(a.addr, false).await.unwrap();
    let info = host_info(&mut conn).await;
    let mut tenants: Vec<Tenant> = (0..3).map(|i| Tenant::new(&info, 1_000_000, i)).collect();
    let mut cumulative = [0u128; 3];
    for round in 1..=4u64 {
        for (i, t) in tenants.iter_mut().enumerate() {
            let r = t.call(&mut conn, CHAT, &chat_body("hello", 3, false)).await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let receipt = r.receipt.clone().expect("receipt").receipt;
            // Gapless, chained to the previous receipt (SPUR-IC) and cumulative, though the
            // channel was evicted since its last call.
            assert_eq!(receipt.call_seq, round);
            cumulative[i] += receipt.amount;
            assert_eq!(receipt.cumulative, cumulative[i]);
            t.accept(&r, false).expect("receipt continues the channel");
            assert!(a.app.channels.live() <= 2);
        }
    }
    assert_eq!(a.app.channels.len(), 3);
}

/// A raw `POST /v1/ohttp` of `len` bytes of garbage.
fn ohttp_post(len: usize) -> Vec<u8> {
    let mut req = format!(
        "POST /v1/ohttp HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         content-type: message/ohttp-req\r\ncontent-length: {len}\r\n\r\n"
    )
    .into_bytes();
    req.resize(req.len() + len, 0x41);
    req
}

#[tokio::test]
async fn a_request_over_the_size_cap_gets_413() {
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let a = agent_at(engine, false, &["--max-request-bytes", "1000"]).await;
    let (resp, _) = raw_exchange(a.addr, &ohttp_post(1001)).await;
    assert!(resp.starts_with("http/1.1 413"), "{resp}");
    // At the cap it is read (and, being garbage, is the opaque 400).
    let (resp, _) = raw_exchange(a.addr, &ohttp_post(1000)).await;
    assert!(resp.starts_with("http/1.1 400"), "{resp}");
    // A real call fits.
    let (mut conn, t) = tenant_of(&a).await;
    let r = t.call(&mut conn, CHAT, &chat_body("hi", 5, false)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.receipt.is_some());
}

#[tokio::test]
async fn an_engine_answer_over_the_size_cap_is_an_upstream_error_without_receipt() {
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let a = agent_at(engine, false, &["--max-response-bytes", "64"]).await;
    let (mut conn, t) = tenant_of(&a).await;
    let r = t.call(&mut conn, CHAT, &chat_body("hi", 5, false)).await;
    r.assert_error(502, "upstream");
    // No receipt and no channel state: the turn is still the tenant's to use.
    assert!(a.app.channels.is_empty());
}

/// `GET /v1/attestation?<query>` on a fresh connection from the loopback address `from`; returns
/// the status and the lowercased answer head.
async fn attest_from(addr: std::net::SocketAddr, from: [u8; 4], query: &str) -> (u16, String) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind((from, 0).into()).unwrap();
    let mut tcp = sock.connect(addr).await.unwrap();
    let req =
        format!("GET /v1/attestation?{query} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(BOUND, tcp.read_to_end(&mut buf))
        .await
        .expect("no answer")
        .ok();
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head)
}

fn nonce_query(n: u32) -> String {
    format!("nonce={}", hex::encode([n.to_be_bytes(); 8].concat()))
}

fn evidence_count(a: &Agent) -> f64 {
    parse_openmetrics(&a.app.metrics.encode())
        .unwrap()
        .value("dait_evidence_duration_seconds_count", &[])
}

#[tokio::test]
async fn fresh_nonce_flood_from_one_address_gets_429_while_another_is_served() {
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let a = agent_at(
        engine,
        false,
        &["--attestation-rate", "1", "--attestation-burst", "3"],
    )
    .await;
    let flooder = [127, 0, 0, 1];
    let mut statuses = Vec::new();
    for n in 0..10 {
        let (status, head) = attest_from(a.addr, flooder, &nonce_query(n)).await;
        if status == 429 {
            assert!(
                head.contains("retry-after: 1\r\n") || head.ends_with("retry-after: 1"),
                "{head}"
            );
        }
        statuses.push(status);
    }
    // The burst, then refusals (a token refills each second, which a slow machine may see once).
    assert_eq!(statuses[..4], [200, 200, 200, 429], "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 5,
        "{statuses:?}"
    );
    // Another address has its own bucket.
    assert_eq!(
        attest_from(a.addr, [127, 0, 0, 2], &nonce_query(100))
            .await
            .0,
        200
    );
    // A freshness already answered comes from the cache, even with the bucket empty.
    assert_eq!(attest_from(a.addr, flooder, &nonce_query(0)).await.0, 200);
}

#[tokio::test]
async fn cached_evidence_calls_the_tee_once_per_window() {
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let a = agent_at(engine, false, &["--attestation-cache-window", "500ms"]).await;
    let epoch = format!("epoch=9&{}", nonce_query(9));
    let before = evidence_count(&a);
    for i in 0..5u8 {
        assert_eq!(attest_from(a.addr, [127, 0, 0, 1 + i], &epoch).await.0, 200);
    }
    assert_eq!(evidence_count(&a) - before, 1.0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(attest_from(a.addr, [127, 0, 0, 1], &epoch).await.0, 200);
    assert_eq!(evidence_count(&a) - before, 2.0);
}
