//! The `dait-audit` binary: its exit codes (0 match, 1 mismatch or refused, 2 usage or input error) and its
//! JSON verdict, with the files in the forms dait-tenant writes them. The match needs the real engine (skipped
//! without one, like tests/replay.rs); the rest never reaches an engine.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use dait_chain_client::WireMessage as _;
use dait_chain_client::{B256, Receipt, request_hash};
use dait_verifier::bundle::fixture::Fixture;
use serde_json::Value;
use support::{ENGINE_BUILD, REQUEST, engine, serve};

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("dait-audit-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The host key file as `dait-tenant verify` prints it (the fields the replay reads).
fn host_key_json(fixture: &Fixture) -> Vec<u8> {
    let domain = fixture.keyset.domain();
    serde_json::to_vec_pretty(&serde_json::json!({
        "verified": true,
        "receipt_key": format!("0x{}", hex::encode(fixture.receipt_key.verifying_key().to_sec1())),
        "chain_id": domain.chain_id,
        "settlement": domain.settlement.to_string(),
    }))
    .unwrap()
}

/// Runs the binary (bounded: its own `--timeout` bounds the engine; nothing else waits).
fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dait-audit"))
        .args(args)
        .output()
        .unwrap()
}

fn replay_args(
    receipt: &Path,
    request: &Path,
    host_key: &Path,
    engine: &str,
    weights: &Path,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["replay".into(), "--receipt".into(), receipt.into()];
    args.extend(["--request".into(), request.into()]);
    args.extend(["--host-key".into(), host_key.into()]);
    args.extend(["--engine".into(), engine.into()]);
    args.extend(["--weights".into(), weights.into()]);
    args.extend([
        "--engine-build".into(),
        ENGINE_BUILD.into(),
        "--json".into(),
    ]);
    args
}

fn verdict(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn usage_errors_exit_2() {
    let out = run::<&str>(&[]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["replay", "--receipt", "x"]);
    assert_eq!(out.status.code(), Some(2));
    let dir = TempDir::new("usage");
    let junk = dir.write("receipt.b64", b"not a receipt\n");
    let out = run(&replay_args(
        &junk,
        &junk,
        &junk,
        "http://127.0.0.1:9",
        &junk,
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--receipt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A receipt that does not claim determinism is refused before any engine is asked (the engine URL is a
/// closed port, the weights file is not read).
#[test]
fn not_deterministic_exits_1_refused() {
    let fixture = Fixture::new();
    let receipt = Receipt {
        version: 1,
        channel_id: B256([0xc1; 32]),
        call_seq: 3,
        host_key_id: fixture.receipt_key.verifying_key().key_id(),
        keyset_hash: dait_chain_client::keyset_hash(&fixture.keyset.encode()),
        model_id: "smollm2-135m-instruct-q4_1".into(),
        weight_hash: B256([1; 32]),
        request_hash: request_hash(REQUEST.as_bytes()),
        response_hash: B256([2; 32]),
        request_ct_hash: B256([3; 32]),
        response_ct_hash: B256::ZERO,
        tokens_in: 10,
        tokens_out: 16,
        price_in: 0,
        price_out: 0,
        amount: 0,
        cumulative: 0,
        prev_receipt_hash: B256([4; 32]),
        timestamp: 1_750_000_000,
        seed: 0,
        engine_build: B256([5; 32]),
        deterministic: false,
    };
    let signed = fixture
        .receipt_key
        .sign_receipt(receipt, &fixture.keyset.domain());
    let dir = TempDir::new("refused");
    let receipt = dir.write(
        "receipt.b64",
        format!("{}\n", signed.to_header_value()).as_bytes(),
    );
    let request = dir.write("request.json", REQUEST.as_bytes());
    let key = dir.write("host.json", &host_key_json(&fixture));
    let missing = dir.0.join("no-weights");
    let out = run(&replay_args(
        &receipt,
        &request,
        &key,
        "http://127.0.0.1:9",
        &missing,
    ));
    assert_eq!(out.status.code(), Some(1));
    let v = verdict(&out);
    assert_eq!(v["verdict"], "refused");
    assert_eq!(v["check"], "deterministic");
    assert_eq!(v["call_seq"], 3);
    assert!(v["replay_ms"].is_null());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("Name three colours"),
        "the verdict never carries the request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genuine_receipt_exits_0_and_changed_one_exits_1() {
    let Some(engine) = engine() else {
        return;
    };
    let served = tokio::time::timeout(Duration::from_secs(300), serve(&engine, REQUEST))
        .await
        .expect("the engine serves within 300 s");
    let dir = TempDir::new("match");
    // The receipt as hex, the key as `dait-tenant verify` prints it.
    let receipt = dir.write(
        "receipt.hex",
        hex::encode(served.receipt.encode()).as_bytes(),
    );
    let request = dir.write("request.json", REQUEST.as_bytes());
    let key = dir.write("host.json", &host_key_json(&served_fixture()));
    let out = tokio::task::spawn_blocking({
        let (receipt, request, key, url, weights) = (
            receipt.clone(),
            request.clone(),
            key.clone(),
            engine.url.clone(),
            engine.weights.clone(),
        );
        move || run(&replay_args(&receipt, &request, &key, &url, &weights))
    })
    .await
    .unwrap();
    let v = verdict(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["verdict"], "match");
    assert_eq!(
        v["response_hash"],
        served.receipt.receipt.response_hash.to_string()
    );

    let changed = served.resigned(|r| r.response_hash.0[0] ^= 0x80);
    let receipt = dir.write("changed.pb", changed.encode().as_slice());
    let out = tokio::task::spawn_blocking(move || {
        run(&replay_args(
            &receipt,
            &request,
            &key,
            &engine.url,
            &engine.weights,
        ))
    })
    .await
    .unwrap();
    let v = verdict(&out);
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert_eq!(v["verdict"], "mismatch");
    assert_eq!(v["check"], "response_hash");
}

/// The fixture whose receipt key `serve` signs with (the same fixed keys every time).
fn served_fixture() -> Fixture {
    Fixture::new()
}
