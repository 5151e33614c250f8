//! `kill -9` of the real `dait-host` binary in the middle of a burst of requests: after a restart,
//! every receipt a tenant received is in the receipt log, the log is gapless per channel, and the
//! next call continues each channel's sequence: the channel belongs to the operator account (the
//! same `--host-key-path` at both starts), so each tenant resumes it with the new boot's key and
//! accepts the next receipt (PROTOCOL.md §4).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use dait_chain_client::WireMessage as _;
use dait_chain_client::{B256, SignedReceipt};
use tokio::process::Child;

async fn start_agent(state: &Path, upstream: SocketAddr) -> (Child, SocketAddr) {
    let mut cmd = serve_command(state, &format!("http://{upstream}"));
    cmd.args(["--price-in", "1", "--price-out", "2"])
        .arg("--host-key-path")
        .arg(operator_key(state))
        .env("DAIT_LOG", "warn");
    let (child, addr, _) = spawn_listening(&mut cmd).await;
    (child, addr)
}

/// The operator's account key file (next to the state directory, the same at every start).
fn operator_key(state: &Path) -> std::path::PathBuf {
    let path = state.with_extension("operator-key");
    if !path.exists() {
        std::fs::write(&path, format!("{}\n", "ac".repeat(32))).unwrap();
    }
    path
}

/// What each tenant saw acknowledged: (call_seq, receipt hash, encoded signed receipt).
type Acks = Arc<Mutex<HashMap<usize, Vec<(u64, B256, Vec<u8>)>>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_keeps_every_acknowledged_receipt() {
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("test timed out");
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    init_simulated(&state);
    assert!(state.join("sim-root.pub").exists());

    let (engine, _) = start_engine(EngineMode {
        tokens: 3,
        ..VLLM_LIKE
    })
    .await;
    let (mut child, addr) = start_agent(&state, engine).await;
    let mut conn = Conn::connect(addr, true).await.unwrap();
    let info = Arc::new(host_info(&mut conn).await);
    assert!(
        !info.keyset.host_account.is_zero(),
        "the operator account is set"
    );

    // A burst: 8 tenants, each on its own channel, calling back to back.
    const TENANTS: usize = 8;
    let acks: Acks = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..TENANTS {
        let info = info.clone();
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = Tenant::new(&info, u128::MAX / 2, i as u8);
            let Ok(mut conn) = Conn::connect(addr, true).await else {
                return t;
            };
            loop {
                let body = chat_body(&format!("tenant {i} says hello"), 3, false);
                let Ok(r) = t.try_call(&mut conn, CHAT, &body).await else {
                    break;
                };
                let signed = r.receipt.clone().expect("receipt");
                let hash = t.accept(&r, false).expect("receipt passes SPUR-IC");
                acks.lock().unwrap().entry(i).or_default().push((
                    signed.receipt.call_seq,
                    hash,
                    signed.encode(),
                ));
            }
            t
        }));
    }
    // Let the burst run until enough receipts were acknowledged, then kill -9 while calls are in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n: usize = acks.lock().unwrap().values().map(Vec::len).sum();
        if n >= 60 || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "agent should have died from SIGKILL");
    let mut tenants = Vec::new();
    for t in tasks {
        // Connection errors end each loop; a panic here is a failed receipt check.
        tenants.push(t.await.unwrap());
    }

    // Every acknowledged receipt is in the log, byte for byte.
    let log = state.join(dait_agent::receipt_log::LOG_FILE);
    let (records, _) = dait_agent::receipt_log::read_records(&log).unwrap();
    let logged: HashMap<([u8; 32], u64), &dait_agent::receipt_log::Record> = records
        .iter()
        .map(|r| ((r.header.channel_id, r.header.call_seq), r))
        .collect();
    let acks = acks.lock().unwrap().clone();
    let total: usize = acks.values().map(Vec::len).sum();
    assert!(
        total >= 8,
        "too few receipts acknowledged before the kill: {total}"
    );
    for (i, list) in &acks {
        let channel = tenants[*i].chain.state().channel_id;
        for (seq, hash, bytes) in list {
            let rec = logged
                .get(&(channel.0, *seq))
                .unwrap_or_else(|| panic!("acknowledged receipt {seq} of tenant {i} missing"));
            assert_eq!(&rec.signed_receipt, bytes);
            assert_eq!(rec.header.receipt_hash, hash.0);
        }
    }

    // Restart: the log replays, and each channel continues its sequence.
    let (mut child, addr) = start_agent(&state, engine).await;
    let mut conn = Conn::connect(addr, true).await.unwrap();
    let info2 = host_info(&mut conn).await;
    assert_ne!(
        info2.keyset_hash, info.keyset_hash,
        "a new boot has a new keyset"
    );
    assert_ne!(info2.keyset.host_key_id(), info.keyset.host_key_id());
    assert_eq!(
        info2.keyset.host_account, info.keyset.host_account,
        "the same operator account"
    );
    for (i, t) in tenants.iter_mut().enumerate() {
        // A new boot has a new OHTTP key and receipt key: the tenant re-attests, encrypts to the new
        // key and continues the channel with the new receipt key (same operator account).
        t.key_config = info2.keyset.ohttp_key_config.clone();
        t.chain
            .resume_with_key(
                &info2.keyset.host_account,
                info2.host_key,
                info2.keyset_hash,
            )
            .unwrap();
        let channel = t.chain.state().channel_id;
        let logged_head = records
            .iter()
            .filter(|r| r.header.channel_id == channel.0)
            .map(|r| r.header.call_seq)
            .max()
            .unwrap_or(0);
        let turn = t.chain.state().turn;
        let r = t
            .call(&mut conn, CHAT, &chat_body("after restart", 3, false))
            .await;
        if logged_head == turn {
            let signed: SignedReceipt = r.receipt.clone().expect("receipt after restart");
            let rec = &signed.receipt;
            assert_eq!(rec.call_seq, turn + 1, "tenant {i}: call_seq continues");
            assert_eq!(rec.prev_receipt_hash, t.chain.state().last_receipt_hash);
            assert_eq!(rec.cumulative, t.chain.state().cumulative + rec.amount);
            assert_eq!(rec.host_key_id, info2.keyset.host_key_id());
            signed.verify(&info2.host_key, &info2.domain).unwrap();
            // The tenant's SPUR-IC checks accept it: the channel goes on across the restart.
            let turn_before = t.chain.state().turn;
            t.accept(&r, false)
                .unwrap_or_else(|e| panic!("tenant {i}: receipt after restart rejected: {e}"));
            assert_eq!(t.chain.state().turn, turn_before + 1);
        } else {
            // The agent logged a receipt the tenant never received (killed before the response left).
            assert_eq!(
                logged_head,
                turn + 1,
                "tenant {i}: at most one unacknowledged receipt"
            );
            assert_eq!(r.error_code(), "stale_state");
        }
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;

    // The log is still gapless per channel after the restart's appends.
    let (records, _) = dait_agent::receipt_log::read_records(&log).unwrap();
    let mut last: HashMap<[u8; 32], u64> = HashMap::new();
    for r in &records {
        let prev = last
            .insert(r.header.channel_id, r.header.call_seq)
            .unwrap_or(0);
        assert_eq!(r.header.call_seq, prev + 1);
    }
}
