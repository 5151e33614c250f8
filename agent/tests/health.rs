//! `/healthz`, `/readyz` and the metrics listener: the metrics are scraped and parsed as
//! OpenMetrics text after real calls, and `/readyz` turns unready and back for each cause a test
//! can drive (the engine stopped and restarted; evidence generation failing and recovering; the
//! receipt log's disk refusing writes, then a restart).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use dait_agent::tee::{CpuEvidence, Platform, TeeBackend, TeeError};
use dait_chain_client::runtime_log::EventLog;
use tokio::net::TcpListener;

async fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = get(addr, false, "/metrics").await;
    assert_eq!(status, 200);
    parse_openmetrics(std::str::from_utf8(&body).unwrap()).unwrap()
}

/// The agent's metrics listener, in-process.
async fn metrics_listener(app: &Arc<dait_agent::http::App>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(dait_agent::http::serve_metrics(app.clone(), listener));
    addr
}

fn requests(s: &Scrape, route: &str, outcome: &str) -> f64 {
    s.value(
        "dait_requests_total",
        &[("route", route), ("outcome", outcome)],
    )
}

#[tokio::test]
async fn metrics_count_calls_tokens_and_latencies() {
    let (a, mut conn, info) = connected_agent(VLLM_LIKE, false).await;
    let m = metrics_listener(&a.app).await;
    let before = scrape(m).await;
    // Evidence at start and for host_info's attestation.
    assert_eq!(
        before.value("dait_evidence_duration_seconds_count", &[]),
        2.0
    );
    assert_eq!(requests(&before, "attestation", "ok"), 1.0);
    assert_eq!(before.value("dait_open_channels", &[]), 0.0);

    let mut t = Tenant::new(&info, 1_000_000, 1);
    let (mut tokens_in, mut tokens_out) = (0u64, 0u64);
    for (body, streamed) in [
        (chat_body("one two three", 3, false), false),
        (chat_body("four five", 4, false), false),
        (chat_body("six seven eight", 2, true), true),
    ] {
        let r = if streamed {
            t.stream(&mut conn, CHAT, &body).await
        } else {
            t.call(&mut conn, CHAT, &body).await
        };
        assert_eq!(r.status, 200);
        let rec = &r.receipt.as_ref().unwrap().receipt;
        tokens_in += rec.tokens_in;
        tokens_out += rec.tokens_out;
        t.accept(&r, streamed).unwrap();
    }
    // A tenant mistake (stream=true in a plain request), an undecryptable request, a health
    // check and an unknown path.
    t.call(&mut conn, CHAT, &chat_body("again", 1, true))
        .await
        .assert_error(400, "bad_request");
    let (status, _) = conn
        .send("POST", "/v1/ohttp", Some("message/ohttp-req"), vec![1; 64])
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(
        conn.send("GET", "/healthz", None, vec![]).await.unwrap().0,
        200
    );
    assert_eq!(
        conn.send("GET", "/nope", None, vec![]).await.unwrap().0,
        404
    );

    // The streamed call counts itself when its task ends, just after the tenant read it.
    let mut after = scrape(m).await;
    for _ in 0..50 {
        if requests(&after, "ohttp", "ok") == 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = scrape(m).await;
    }
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(requests(&after, "ohttp", "ok"), 3.0);
    assert_eq!(requests(&after, "ohttp", "bad_request"), 1.0);
    assert_eq!(requests(&after, "ohttp", "undecryptable"), 1.0);
    assert_eq!(requests(&after, "healthz", "ok"), 1.0);
    assert_eq!(requests(&after, "other", "not_found"), 1.0);
    assert_eq!(
        delta("dait_metered_tokens_total", &[("direction", "in")]),
        tokens_in as f64
    );
    assert_eq!(
        delta("dait_metered_tokens_total", &[("direction", "out")]),
        tokens_out as f64
    );
    assert!(tokens_in > 0 && tokens_out > 0);
    // Plain: the two answered calls and the refused one (decapsulated); the undecryptable one is
    // not a call.
    assert_eq!(
        delta("dait_call_duration_seconds_count", &[("mode", "plain")]),
        3.0
    );
    assert_eq!(
        delta("dait_call_duration_seconds_count", &[("mode", "stream")]),
        1.0
    );
    assert!(delta("dait_call_duration_seconds_sum", &[("mode", "plain")]) > 0.0);
    // Three receipts, each durable before its answer: one to three group-commit batches.
    let syncs = delta("dait_receipt_log_sync_duration_seconds_count", &[]);
    assert!((1.0..=3.0).contains(&syncs), "{syncs}");
    assert_eq!(after.value("dait_open_channels", &[]), 1.0);
    assert_eq!(delta("dait_evidence_duration_seconds_count", &[]), 0.0);
    assert_eq!(after.types["dait_requests"], "counter");
    assert_eq!(after.types["dait_call_duration_seconds"], "histogram");
    assert_eq!(after.types["dait_open_channels"], "gauge");
    // No label carries anything but the agent's own names.
    for (_, labels) in after.samples.keys() {
        for (k, v) in labels {
            assert!(
                ["route", "outcome", "mode", "direction", "le"].contains(&k.as_str()),
                "{k}={v}"
            );
            assert!(v.len() < 32, "{k}={v}");
        }
    }
}

#[tokio::test]
async fn readyz_follows_the_engine() {
    let engine = StoppableEngine::start(VLLM_LIKE, "127.0.0.1:0".parse().unwrap()).await;
    let upstream = format!("http://{}", engine.addr);
    let a = serve_in_process(&["--upstream", &upstream], false).await;
    await_readyz(a.addr, false, &[]).await;

    let addr = engine.stop().await;
    await_readyz(a.addr, false, &["engine_unreachable"]).await;
    assert_eq!(get(a.addr, false, "/healthz").await.0, 200);

    let _engine = StoppableEngine::start(VLLM_LIKE, addr).await;
    await_readyz(a.addr, false, &[]).await;
    assert_eq!(get(a.addr, false, "/healthz").await.0, 200);
}

#[tokio::test]
async fn readyz_without_upstream_names_the_engine() {
    let a = serve_in_process(&[], false).await;
    await_readyz(a.addr, false, &["engine_unreachable"]).await;
    assert_eq!(get(a.addr, false, "/healthz").await.0, 200);
}

/// A TEE backend that fails its evidence while `fail` is set.
struct FlakyTee {
    inner: Box<dyn TeeBackend>,
    fail: Arc<AtomicBool>,
}

impl TeeBackend for FlakyTee {
    fn platform(&self) -> Platform {
        self.inner.platform()
    }
    fn evidence(&self, report_data: &[u8; 64]) -> Result<CpuEvidence, TeeError> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(TeeError::Unsupported("test: device failing"));
        }
        self.inner.evidence(report_data)
    }
    fn extend_runtime(&self, log: &EventLog) -> Result<(), TeeError> {
        self.inner.extend_runtime(log)
    }
    fn launch_field(&self) -> Result<dait_agent::tee::LaunchField, TeeError> {
        self.inner.launch_field()
    }
}

#[tokio::test]
async fn readyz_follows_evidence_generation() {
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let upstream = format!("http://{engine}");
    // The agent's app, rebuilt around a TEE backend that can be made to fail, served in-process.
    let fail = Arc::new(AtomicBool::new(false));
    let (built, _dir) = simulated_app(&["--upstream", &upstream], dait_agent::Mode::Serve);
    let flaky = Arc::new(dait_agent::http::App {
        tee: Box::new(FlakyTee {
            inner: built.tee,
            fail: fail.clone(),
        }),
        ..built
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(dait_agent::http::dangerous_serve_plaintext(
        flaky.clone(),
        listener,
    ));
    await_readyz(addr, false, &[]).await;

    fail.store(true, Ordering::Relaxed);
    let nonce = format!("/v1/attestation?nonce={}", "11".repeat(32));
    assert_eq!(get(addr, false, &nonce).await.0, 500);
    await_readyz(addr, false, &["tee_unusable"]).await;
    assert_eq!(get(addr, false, "/healthz").await.0, 200);

    fail.store(false, Ordering::Relaxed);
    assert_eq!(get(addr, false, &nonce).await.0, 200);
    await_readyz(addr, false, &[]).await;
    let s = scrape(metrics_listener(&flaky).await).await;
    assert_eq!(requests(&s, "attestation", "internal"), 1.0);
    assert_eq!(requests(&s, "attestation", "ok"), 1.0);
    assert_eq!(s.value("dait_evidence_duration_seconds_count", &[]), 3.0);
}
#[test]
fn strict_parser_rejects_malformed_expositions() {
    let good =
        "# HELP a_requests x\n# TYPE a_requests counter\na_requests_total{r=\"o\\\"k\"} 2\n# EOF\n";
    let s = parse_openmetrics(good).unwrap();
    assert_eq!(s.value("a_requests_total", &[("r", "o\"k")]), 2.0);
    for bad in [
        "# TYPE a counter\na_total 1\n",                   // no EOF
        "a_total 1\n# EOF\n",                              // no TYPE
        "# TYPE a counter\na 1\n# EOF\n",                  // counter without _total
        "# TYPE a counter\na_total{r=o} 1\n# EOF\n",       // unquoted label
        "# TYPE a counter\na_total 1\na_total 2\n# EOF\n", // repeated
        "# TYPE a counter\na_total one\n# EOF\n",          // bad value
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# EOF\n",
    ] {
        assert!(parse_openmetrics(bad).is_err(), "{bad:?}");
    }
}

/// `dait-host serve` whose files may not grow past 1 MiB (`prlimit`, with `SIGXFSZ` ignored so a
/// write past the limit fails with `EFBIG` instead of killing the process): the receipt log's
/// disk refusing writes. `None` without `prlimit` (util-linux).
fn serve_with_file_size_limit(
    state: &std::path::Path,
    upstream: &str,
) -> Option<tokio::process::Command> {
    let found = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        return None;
    }
    let mut cmd = tokio::process::Command::new("sh");
    cmd.args([
        "-c",
        r#"trap "" XFSZ; exec prlimit --fsize=1048576 -- "$@""#,
        "sh",
        BIN,
    ])
    .args(["serve", "--tee", "simulated", "--listen", "127.0.0.1:0"])
    .args(["--metrics-listen", "127.0.0.1:0", "--upstream", upstream])
    .arg("--state-dir")
    .arg(state)
    .stdout(std::process::Stdio::piped())
    .kill_on_drop(true);
    Some(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_receipt_log_that_cannot_write_until_a_restart() {
    tokio::time::timeout(Duration::from_secs(120), receipt_log_cannot_write())
        .await
        .expect("test timed out");
}

async fn receipt_log_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    init_simulated(&state);
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let upstream = format!("http://{engine}");
    // The longest model id makes each receipt as large as it gets, so that fewer calls fill the
    // 1 MiB the log may use.
    let model_id = "m".repeat(dait_chain_client::MAX_MODEL_ID_LEN);
    let Some(mut cmd) = serve_with_file_size_limit(&state, &upstream) else {
        eprintln!("skipped: no prlimit (util-linux)");
        return;
    };
    cmd.env("DAIT_MODEL_ID", &model_id).env("DAIT_LOG", "error");
    let (child, line, _out) = spawn_listening_line(&mut cmd).await;
    let addr = listening_addr(&line);
    let metrics: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("metrics=http://"))
        .unwrap_or_else(|| panic!("no metrics address in {line:?}"))
        .parse()
        .unwrap();
    await_readyz(addr, true, &[]).await;

    // Tenants call in parallel until the log's file reaches its limit and a write fails.
    const TENANTS: u8 = 8;
    let mut conn = Conn::connect(addr, true).await.unwrap();
    let info = Arc::new(host_info(&mut conn).await);
    let tasks: Vec<_> = (0..TENANTS)
        .map(|i| tokio::spawn(call_until_refused(addr, info.clone(), i)))
        .collect();
    let mut tenants = Vec::new();
    for task in tasks {
        tenants.push(task.await.unwrap());
    }
    let acknowledged = tenants.iter().map(|(_, r)| r.len() as u64).sum::<u64>();
    await_readyz(addr, true, &["receipt_log_unwritable"]).await;
    assert_eq!(get(addr, true, "/healthz").await.0, 200);
    let s = scrape(metrics).await;
    assert_eq!(requests(&s, "ohttp", "ok"), acknowledged as f64);
    assert_eq!(
        requests(&s, "ohttp", "receipt_log_unwritable"),
        f64::from(TENANTS)
    );
    assert!(s.value("dait_receipt_log_sync_duration_seconds_count", &[]) >= 1.0);
    drop(conn);
    drop(child);

    // The failure is final for that process; after a restart (the disk fixed) the agent is ready,
    // the log holds every acknowledged receipt and each channel continues.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut cmd = serve_command(&state, &upstream);
    cmd.env("DAIT_MODEL_ID", &model_id).env("DAIT_LOG", "error");
    let (_child, addr, _out) = spawn_listening(&mut cmd).await;
    await_readyz(addr, true, &[]).await;
    let (records, _) =
        dait_agent::receipt_log::read_records(&state.join(dait_agent::receipt_log::LOG_FILE))
            .unwrap();
    assert_eq!(records.len() as u64, acknowledged);
    let mut conn = Conn::connect(addr, true).await.unwrap();
    let info = host_info(&mut conn).await;
    for (t, receipts) in &mut tenants {
        // A new boot has a new OHTTP key: the tenant re-attests and encrypts to it.
        t.key_config = info.keyset.ohttp_key_config.clone();
        let r = t.call(&mut conn, CHAT, &chat_body("hello", 1, false)).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.receipt.as_ref().unwrap().receipt.call_seq,
            receipts.len() as u64 + 1
        );
    }
}
