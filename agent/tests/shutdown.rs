//! SIGTERM of the real `dait-host` binary: the listener closes at once, a call in flight still gets
//! its whole streamed answer and receipt (logged, so it is there after a restart) and the process
//! exits 0; a call longer than `--shutdown-drain` is cut and the exit still comes by the deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tokio::process::Child;

async fn start_agent(state: &Path, upstream: SocketAddr, drain: &str) -> (Child, SocketAddr) {
    let mut cmd = serve_command(state, &format!("http://{upstream}"));
    cmd.args([
        "--price-in",
        "1",
        "--price-out",
        "2",
        "--shutdown-drain",
        drain,
    ])
    .env("DAIT_LOG", "warn");
    let (child, addr, _) = spawn_listening(&mut cmd).await;
    (child, addr)
}

/// `kill -TERM` of the child.
fn sigterm(child: &Child) {
    let pid = child.id().expect("the agent is running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// An engine that answers each completion after `delay`.
async fn slow_engine(delay: Duration) -> SocketAddr {
    start_engine(EngineMode {
        tokens: 3,
        delay,
        ..VLLM_LIKE
    })
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_streamed_call_in_flight_then_exits_0() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        init_simulated(&state);
        let engine = slow_engine(Duration::from_millis(1500)).await;
        let (mut child, addr) = start_agent(&state, engine, "10s").await;
        let mut conn = Conn::connect(addr, true).await.unwrap();
        let info = host_info(&mut conn).await;
        let t = Tenant::new(&info, 1_000_000, 1);
        let call = tokio::spawn(async move {
            let r = t
                .stream(&mut conn, CHAT, &chat_body("drain me", 3, true))
                .await;
            (t, r)
        });
        // The call is at the engine (which waits 1.5 s) when the signal comes.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let signalled = Instant::now();
        sigterm(&child);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            Conn::connect(addr, true).await.is_err(),
            "a new connection during the drain must be refused"
        );

        let (mut t, r) = call.await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.trailer_error.is_none());
        let signed = r
            .receipt
            .clone()
            .expect("the drained stream has its receipt");
        t.accept(&r, true).expect("receipt passes SPUR-IC");
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
        assert!(signalled.elapsed() < Duration::from_secs(10));

        // The receipt is durable: in the log, and replayed by a restart, where the channel goes on.
        let log = state.join(dait_agent::receipt_log::LOG_FILE);
        let (records, _) = dait_agent::receipt_log::read_records(&log).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].header.call_seq, signed.receipt.call_seq);
        assert_eq!(
            records[0].signed_receipt,
            dait_chain_client::WireMessage::encode(&signed)
        );
        let (mut child, addr) = start_agent(&state, engine, "10s").await;
        let mut conn = Conn::connect(addr, true).await.unwrap();
        t.key_config = host_info(&mut conn).await.keyset.ohttp_key_config.clone();
        let r = t
            .call(&mut conn, CHAT, &chat_body("after restart", 3, false))
            .await;
        assert_eq!(r.receipt.expect("receipt").receipt.call_seq, 2);
        child.start_kill().unwrap();
        let _ = child.wait().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_longer_than_the_drain_is_cut_at_the_deadline() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        init_simulated(&state);
        let engine = slow_engine(Duration::from_secs(30)).await;
        let (mut child, addr) = start_agent(&state, engine, "1s").await;
        let mut conn = Conn::connect(addr, true).await.unwrap();
        let info = host_info(&mut conn).await;
        let t = Tenant::new(&info, 1_000_000, 2);
        let call = tokio::spawn(async move {
            t.try_call(&mut conn, CHAT, &chat_body("never finishes", 3, false))
                .await
                .err()
                .map(|(status, _)| status)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let signalled = Instant::now();
        sigterm(&child);
        let status = child.wait().await.unwrap();
        let took = signalled.elapsed();
        assert_eq!(status.code(), Some(0), "{status:?}");
        assert!(took >= Duration::from_millis(900), "exited after {took:?}");
        assert!(took < Duration::from_secs(5), "exited after {took:?}");
        // What the tenant sees: the connection closes without an answer.
        assert_eq!(call.await.unwrap(), Some(0), "the cut call has no answer");
        let log = state.join(dait_agent::receipt_log::LOG_FILE);
        let (records, _) = dait_agent::receipt_log::read_records(&log).unwrap();
        assert!(records.is_empty());
    })
    .await
    .expect("test timed out");
}
