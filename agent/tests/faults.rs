//! Faults, each on the real `dait-host` binary, each asserting what the tenant sees and what the
//! receipt log holds afterwards (replayed once the agent stopped): an engine that stalls (a call it
//! never answers; a stream it stops after the first event) while other tenants are served; the state
//! directory's disk full (a size-capped tmpfs in a user and mount namespace), then freed again; and a
//! failed `fdatasync` of the receipt log (an `LD_PRELOAD` shim, `faults/fsync_fail.c`), then a
//! restart. The other faults of issue 11 have their tests next to the feature: the engine dying
//! mid-stream in `e2e.rs`, a corrupted log record in `receipt_log.rs`, the SIGTERM drain in
//! `shutdown.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use dait_agent::receipt_log::{LOG_FILE, ReceiptLog, read_records};
use dait_chain_client::{SignedReceipt, WireMessage as _};
use tokio::process::Child;

/// Bound on each test.
const TEST_TIMEOUT: Duration = Duration::from_secs(100);

/// Bound on one exchange that a fault must not hang.
const BOUND: Duration = Duration::from_secs(10);

/// The request text at which the in-test engine stalls.
const STALL: &str = "stall on this";

async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test timed out");
}

/// Stops the agent (`kill -9`) and waits for it.
async fn stop(mut child: Child) {
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

/// The receipt log in `state` (its agent stopped) holds exactly the `acknowledged` receipts, byte
/// for byte, and the library's replay accepts it (no damage, no torn tail, `call_seq` gapless) with
/// each channel's head at its last acknowledged receipt.
fn assert_log_holds(state: &Path, acknowledged: &[SignedReceipt]) {
    let (records, _) = read_records(&state.join(LOG_FILE)).unwrap();
    let mut logged: Vec<Vec<u8>> = records.into_iter().map(|r| r.signed_receipt).collect();
    let mut expected: Vec<Vec<u8>> = acknowledged.iter().map(|r| r.encode()).collect();
    logged.sort();
    expected.sort();
    assert!(
        logged == expected,
        "the log holds {} receipts, {} were acknowledged (or their bytes differ)",
        logged.len(),
        expected.len()
    );
    let (log, replay) = ReceiptLog::open(state).unwrap();
    drop(log);
    assert_eq!(replay.records, acknowledged.len() as u64);
    assert_eq!(replay.truncated, 0);
    let mut last: HashMap<[u8; 32], u64> = HashMap::new();
    for r in acknowledged {
        let seq = last.entry(r.receipt.channel_id.0).or_default();
        *seq = (*seq).max(r.receipt.call_seq);
    }
    assert_eq!(replay.heads.len(), last.len());
    for (channel, seq) in last {
        assert_eq!(replay.heads[&channel].call_seq, seq);
    }
}

/// `dait-host serve` on `state` in front of the engine at `engine`, prices 1 and 2, with `flags`.
fn serve(state: &Path, engine: SocketAddr, flags: &[&str]) -> tokio::process::Command {
    let mut cmd = serve_command(state, &format!("http://{engine}"));
    cmd.args(["--price-in", "1", "--price-out", "2"])
        .args(flags)
        .env("DAIT_LOG", "error");
    cmd
}

/// A call on a fresh connection: the result and how long it took.
async fn timed_call(t: &Tenant, addr: SocketAddr, streamed: bool) -> (CallResult, Duration) {
    let mut conn = Conn::connect(addr, true).await.unwrap();
    let started = Instant::now();
    let body = chat_body(STALL, 3, streamed);
    let r = if streamed {
        t.stream(&mut conn, CHAT, &body).await
    } else {
        t.call(&mut conn, CHAT, &body).await
    };
    (r, started.elapsed())
}

/// One answered call (plain or streamed) that the tenant accepts; returns its receipt.
async fn answered(t: &mut Tenant, conn: &mut Conn, streamed: bool) -> SignedReceipt {
    let body = chat_body("hello there", 3, streamed);
    let r = if streamed {
        t.stream(conn, CHAT, &body).await
    } else {
        t.call(conn, CHAT, &body).await
    };
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    t.accept(&r, streamed).unwrap();
    r.receipt.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_engine_gives_upstream_in_time_logs_nothing_and_others_are_served() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        init_simulated(&state);
        let stalling = EngineMode {
            stall: Some(STALL),
            ..VLLM_LIKE
        };
        let (engine, _) = start_engine(stalling).await;
        let flags = [
            "--upstream-first-byte-timeout",
            "1500ms",
            "--upstream-deadline",
            "2500ms",
        ];
        let (child, addr, _out) = spawn_listening(&mut serve(&state, engine, &flags)).await;
        let mut conn = Conn::connect(addr, true).await.unwrap();
        let info = host_info(&mut conn).await;
        let mut stalled = Tenant::new(&info, 1_000_000, 1);
        let mut other = Tenant::new(&info, 1_000_000, 2);
        let mut acknowledged = vec![answered(&mut stalled, &mut conn, false).await];

        for streamed in [false, true] {
            let t = stalled;
            let call = tokio::spawn(async move {
                let (r, took) = timed_call(&t, addr, streamed).await;
                (t, r, took)
            });
            // Meanwhile another tenant is served, plain and streamed.
            for other_streamed in [false, true] {
                acknowledged.push(answered(&mut other, &mut conn, other_streamed).await);
            }
            assert!(
                !call.is_finished(),
                "the other tenant was served only after the stalled call ended"
            );
            let (t, r, took) = tokio::time::timeout(BOUND, call)
                .await
                .expect("the stalled call hung")
                .unwrap();
            stalled = t;
            eprintln!("stalled call (streamed: {streamed}) ended after {took:?}");
            if streamed {
                // Its head and first event arrived, then the deadline ended it with the
                // authenticated error trailer and no receipt.
                assert_eq!(r.status, 200);
                assert!(String::from_utf8_lossy(&r.body).contains("tok0"));
                assert_eq!(r.trailer_error.as_deref(), Some(&b"upstream"[..]));
                assert!(r.receipt.is_none());
                assert!(took >= Duration::from_millis(2400), "{took:?}");
            } else {
                // No answer at all: the first-byte timeout.
                r.assert_error(502, "upstream");
                assert!(took >= Duration::from_millis(1400), "{took:?}");
                assert!(took < Duration::from_millis(2400), "{took:?}");
            }
        }
        // The stalled calls used no turn: the channel's next call is call_seq 2.
        let next = answered(&mut stalled, &mut conn, false).await;
        assert_eq!(next.receipt.call_seq, 2);
        acknowledged.push(next);
        stop(child).await;
        assert_log_holds(&state, &acknowledged);
    })
    .await;
}

/// Whether this process may make a user and mount namespace and mount a tmpfs in it (util-linux
/// `unshare`). Without, the disk-full test is skipped, except under CI (`CI` set), where it fails.
fn user_namespaces(scratch: &Path) -> bool {
    let ok = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=1m tmpfs "$0""#)
        .arg(scratch)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var_os("CI").is_some() {
        panic!("no user namespaces, which CI must have for the disk-full test");
    }
    ok
}

/// `cmd` (a [`serve_command`] on `mnt`) run inside a new user and mount namespace where a tmpfs of
/// `size` is mounted on `mnt` and the state directory `init` is copied into it. The network
/// namespace is the test's, so the agent still listens on 127.0.0.1. `unshare` and `sh` exec, so
/// the child is the agent itself.
fn in_tmpfs(
    cmd: &tokio::process::Command,
    size: &str,
    mnt: &Path,
    init: &Path,
) -> tokio::process::Command {
    let serve = cmd.as_std();
    let mut wrapped = tokio::process::Command::new("unshare");
    wrapped
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(
            r#"mount -t tmpfs -o "size=$1" tmpfs "$2" && cp -a "$3/." "$2/" && shift 3 && exec "$@""#,
        )
        .args(["sh", size])
        .arg(mnt)
        .arg(init)
        .arg(serve.get_program())
        .args(serve.get_args())
        .envs(serve.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    wrapped
}

/// Fills the file system of `path` (created) until a write fails for want of space.
fn fill(path: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 64 << 10];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
            assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_calls_keeps_what_is_durable_and_recovers_once_space_is_freed() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        if !user_namespaces(&mnt) {
            eprintln!("skipped: no user namespaces");
            return;
        }
        let init = dir.path().join("init");
        init_simulated(&init);
        let (engine, stats) = start_engine(VLLM_LIKE).await;
        // The longest model id makes receipts as large as they get: fewer calls fill the log.
        let model_id = "m".repeat(dait_chain_client::MAX_MODEL_ID_LEN);
        let mut cmd = in_tmpfs(
            &serve(&mnt, engine, &["--model-id", &model_id]),
            "4m",
            &mnt,
            &init,
        );
        let stderr = dir.path().join("agent.log");
        cmd.stderr(std::fs::File::create(&stderr).unwrap());
        let (child, addr, _out) = spawn_listening(&mut cmd).await;
        // The tmpfs, as the agent sees it.
        let state = PathBuf::from(format!(
            "/proc/{}/root{}",
            child.id().unwrap(),
            mnt.display()
        ));
        await_readyz(addr, true, &[]).await;

        // The disk fills up; the log goes on in its preallocated space, then runs out. Tenants call
        // in parallel until each is refused.
        let filler = state.join("filler");
        fill(&filler);
        let mut conn = Conn::connect(addr, true).await.unwrap();
        let info = Arc::new(host_info(&mut conn).await);
        let tasks: Vec<_> = (0..8)
            .map(|i| tokio::spawn(call_until_refused(addr, info.clone(), i)))
            .collect();
        let mut tenants = Vec::new();
        for task in tasks {
            tenants.push(task.await.unwrap());
        }
        let mut acknowledged: Vec<SignedReceipt> =
            tenants.iter().flat_map(|(_, r)| r.clone()).collect();
        assert!(acknowledged.len() > 100, "{}", acknowledged.len());
        // (The first connection idled past the agent's header timeout meanwhile.)
        let mut conn = Conn::connect(addr, true).await.unwrap();

        // The failed write was rolled back: the file ends with the last acknowledged record.
        let (records, end) = read_records(&state.join(LOG_FILE)).unwrap();
        assert_eq!(records.len(), acknowledged.len());
        assert_eq!(std::fs::metadata(state.join(LOG_FILE)).unwrap().len(), end);
        // Unready, naming the lack of space; what is already durable is still served.
        let (status, failing) = readyz_failing(addr, true).await;
        assert_eq!(status, 503);
        assert_eq!(failing.len(), 1, "{failing:?}");
        assert_eq!(failing[0].0, "receipt_log_unwritable");
        assert!(failing[0].1.contains("no space"), "{failing:?}");
        assert_eq!(get(addr, true, "/healthz").await.0, 200);
        assert_eq!(get(addr, true, "/v1/ohttp-keys").await.0, 200);
        fetch_bundle(&mut conn, [0x77; 32]).await;
        // A new call is refused at once, without reaching the engine.
        let seen = stats.calls.load(Ordering::SeqCst);
        let started = Instant::now();
        let (t, _) = &tenants[0];
        let r = t.call(&mut conn, CHAT, &chat_body("hello", 1, false)).await;
        r.assert_error(503, "receipt_log_unwritable");
        assert!(String::from_utf8_lossy(&r.body).contains("no space"));
        assert!(started.elapsed() < BOUND / 2);
        assert_eq!(stats.calls.load(Ordering::SeqCst), seen);

        // Space is freed: without a restart the agent turns ready, and each channel continues
        // where it stopped (the refused calls used no turn).
        std::fs::remove_file(&filler).unwrap();
        let freed = Instant::now();
        await_readyz(addr, true, &[]).await;
        eprintln!(
            "disk full after {} receipts; ready again {:?} after space was freed",
            acknowledged.len(),
            freed.elapsed()
        );
        for (t, receipts) in &mut tenants {
            let r = answered(t, &mut conn, false).await;
            assert_eq!(r.receipt.call_seq, receipts.len() as u64 + 1);
            acknowledged.push(r);
        }
        // The log leaves with the tmpfs: copy it out, then replay it.
        let copy = dir.path().join("after");
        std::fs::create_dir(&copy).unwrap();
        std::fs::copy(state.join(LOG_FILE), copy.join(LOG_FILE)).unwrap();
        stop(child).await;
        assert_log_holds(&copy, &acknowledged);
        let log = std::fs::read_to_string(&stderr).unwrap();
        assert!(log.contains("out of space"), "{log}");
    })
    .await;
}

/// Compiles `faults/fsync_fail.c` into `dir`; `None` without a C compiler.
fn fsync_shim(dir: &Path) -> Option<PathBuf> {
    let so = dir.join("fsync_fail.so");
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/faults/fsync_fail.c"
        ))
        .arg("-ldl")
        .output();
    match out {
        Err(_) => None,
        Ok(out) => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(so)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_poisons_the_log_until_a_restart() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let Some(shim) = fsync_shim(dir.path()) else {
            eprintln!("skipped: no cc");
            return;
        };
        let state = dir.path().join("state");
        init_simulated(&state);
        let (engine, stats) = start_engine(VLLM_LIKE).await;
        // The log's syncs: one when it is opened (its preallocation), then one per call (each call
        // is its own batch here); the fifth fails.
        const ANSWERED: usize = 3;
        let mut cmd = serve(&state, engine, &[]);
        cmd.env("LD_PRELOAD", &shim)
            .env("DAIT_FAULT_SYNC_PATH", format!("/{LOG_FILE}"))
            .env("DAIT_FAULT_SYNC_AFTER", (1 + ANSWERED).to_string());
        let (child, addr, _out) = spawn_listening(&mut cmd).await;
        let mut conn = Conn::connect(addr, true).await.unwrap();
        let info = host_info(&mut conn).await;
        let mut t = Tenant::new(&info, 1_000_000, 1);
        let mut acknowledged = Vec::new();
        for _ in 0..ANSWERED {
            acknowledged.push(answered(&mut t, &mut conn, false).await);
        }
        // The call whose sync fails: an error, no receipt.
        let r = t.call(&mut conn, CHAT, &chat_body("hello", 3, false)).await;
        r.assert_error(503, "receipt_log_unwritable");
        assert!(String::from_utf8_lossy(&r.body).contains("restart"));
        // Poisoned: unready, saying why, and every call is refused at once, before the engine,
        // however long one waits; evidence is still served.
        let (status, failing) = readyz_failing(addr, true).await;
        assert_eq!(status, 503);
        assert_eq!(failing.len(), 1, "{failing:?}");
        assert_eq!(failing[0].0, "receipt_log_unwritable");
        assert!(failing[0].1.contains("fdatasync failed"), "{failing:?}");
        let other = Tenant::new(&info, 1_000_000, 2);
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let mut conn = Conn::connect(addr, true).await.unwrap();
            let seen = stats.calls.load(Ordering::SeqCst);
            let started = Instant::now();
            let r = other
                .call(&mut conn, CHAT, &chat_body("hello", 3, false))
                .await;
            r.assert_error(503, "receipt_log_unwritable");
            assert!(started.elapsed() < BOUND / 2);
            assert_eq!(stats.calls.load(Ordering::SeqCst), seen);
        }
        fetch_bundle(&mut conn, [0x78; 32]).await;
        assert_eq!(readyz(addr, true).await.1, ["receipt_log_unwritable"]);
        drop(conn);
        stop(child).await;

        // The log after the process: every acknowledged receipt, and maybe the one whose sync
        // failed (written, its durability unknown; here the page cache still has it). The agent
        // never acknowledged that one.
        let (records, _) = read_records(&state.join(LOG_FILE)).unwrap();
        assert!(
            (ANSWERED..=ANSWERED + 1).contains(&records.len()),
            "{}",
            records.len()
        );
        let unacknowledged = records.get(ANSWERED).map(|r| r.header.call_seq);
        eprintln!("the record whose sync failed is in the log: {unacknowledged:?}");
        if unacknowledged.is_some() {
            assert_eq!(unacknowledged, Some(ANSWERED as u64 + 1));
            let mut kept = acknowledged.clone();
            kept.push(SignedReceipt::decode(&records[ANSWERED].signed_receipt).unwrap());
            assert_log_holds(&state, &kept);
        } else {
            assert_log_holds(&state, &acknowledged);
        }

        // Restarted without the shim: ready, and the channel goes on after whatever the log holds.
        let (child, addr, _out) = spawn_listening(&mut serve(&state, engine, &[])).await;
        await_readyz(addr, true, &[]).await;
        let mut conn = Conn::connect(addr, true).await.unwrap();
        t.key_config = host_info(&mut conn).await.keyset.ohttp_key_config.clone();
        let r = t.call(&mut conn, CHAT, &chat_body("after", 3, false)).await;
        match unacknowledged {
            // The host holds a receipt the tenant never saw: its state is one turn behind, as after
            // a crash between logging a receipt and answering.
            Some(_) => r.assert_error(409, "stale_state"),
            None => assert_eq!(r.receipt.unwrap().receipt.call_seq, ANSWERED as u64 + 1),
        }
        stop(child).await;
    })
    .await;
}
