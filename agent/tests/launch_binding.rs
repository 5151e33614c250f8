//! The launch-binding path (PROTOCOL.md §10.1) with the real `dait-host` binary: a simulated guest launched
//! with a `MRCONFIGID` serves only the runtime configuration that hashes to it, and a tenant's verifier checks
//! the same equality on the bundle it serves.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{
    BIN, Conn, VLLM_LIKE, fetch_bundle, init_simulated, serve_command, spawn_listening,
    start_engine,
};
use dait_chain_client::Freshness;
use dait_chain_client::proto::{SimulatedReportBody, cpu_evidence};
use dait_chain_client::runtime_log;
use dait_verifier::bundle::{Policy, UnixTime, verify_bundle};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

/// The flags of the runtime configuration under test.
const CONFIG: [&str; 6] = [
    "--model-id",
    "launch-model",
    "--price-in",
    "2",
    "--engine-build",
    "test-engine",
];

/// The `MRCONFIGID` that binds the runtime configuration `flags` (after `--tee simulated --state-dir`), from
/// the events `dait-host runtime-events` prints.
fn mrconfigid_for(state: &Path, flags: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .args(["runtime-events", "--tee", "simulated", "--state-dir"])
        .arg(state)
        .args(flags)
        .env("DAIT_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (name, sha) = line.split_once('=').unwrap();
            let mut value = [0u8; 32];
            hex::decode_to_slice(sha, &mut value).unwrap();
            runtime_log::event_data(name, &value)
        })
        .collect();
    assert_eq!(data.len(), runtime_log::EVENT_NAMES.len());
    hex::encode(runtime_log::launch_binding_mrconfigid(
        &runtime_log::replay_data(&data),
    ))
}

/// `dait-host serve` launched with `mrconfigid` and the configuration [`CONFIG`], waited for (at most 60 s)
/// when it must refuse to start.
async fn serve_refused(state: &Path, upstream: &str, mrconfigid: &str) -> Output {
    let mut cmd = serve_command(state, upstream);
    cmd.args(CONFIG)
        .args(["--simulated-mrconfigid", mrconfigid])
        .env("DAIT_LOG", "error")
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("dait-host neither started nor refused within 60 s")
        .unwrap()
}

#[tokio::test]
async fn guest_launched_with_its_configuration_serves_a_bundle_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    init_simulated(dir.path());
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let upstream = format!("http://{engine}");
    let mrconfigid = mrconfigid_for(dir.path(), &CONFIG);

    let mut cmd = serve_command(dir.path(), &upstream);
    cmd.args(CONFIG)
        .args(["--simulated-mrconfigid", &mrconfigid]);
    let (mut child, addr, _stdout) = spawn_listening(&mut cmd).await;

    let nonce = [0x17; 32];
    let mut conn = Conn::connect(addr, true).await.unwrap();
    let bundle = fetch_bundle(&mut conn, nonce).await;
    let Some(cpu_evidence::Evidence::Simulated(report)) = bundle.cpu.clone().unwrap().evidence
    else {
        panic!("not simulated evidence")
    };
    let body = SimulatedReportBody::decode(&report.body[..]).unwrap();
    assert_eq!(hex::encode(&body.mr_config_id), mrconfigid);
    assert_eq!(body.measurements[4], vec![0u8; 48], "RTMR3 is not extended");

    let root = std::fs::read_to_string(dir.path().join("sim-root.pub")).unwrap();
    let policy = Policy::new()
        .dangerous_allow_simulated(&hex::decode(root.trim()).unwrap())
        .unwrap();
    let bytes = dait_chain_client::encode_bundle(&bundle);
    let verified = verify_bundle(
        &bytes,
        &policy,
        &Freshness::TenantNonce(nonce),
        UnixTime::now(),
    )
    .unwrap();
    let runtime = verified
        .runtime()
        .expect("the launch-bound log is attested");
    assert_eq!(
        runtime.model_id_sha256,
        Some(Sha256::digest(b"launch-model").into())
    );
    child.start_kill().unwrap();
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("dait-host did not stop")
        .unwrap();
}

#[tokio::test]
async fn guest_launched_with_another_configuration_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    init_simulated(dir.path());
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let upstream = format!("http://{engine}");
    let expected = mrconfigid_for(dir.path(), &CONFIG);
    let mut other_flags = CONFIG;
    other_flags[1] = "another-model";
    let other = mrconfigid_for(dir.path(), &other_flags);
    assert_ne!(other, expected);

    let mut flipped = hex::decode(&expected).unwrap();
    flipped[47] ^= 1;
    for (case, value) in [
        ("another model's value", other),
        ("one bit flipped", hex::encode(flipped)),
    ] {
        let out = serve_refused(dir.path(), &upstream, &value).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        assert!(out.stdout.is_empty(), "{case}: it listened");
        assert!(
            stderr.contains("the runtime configuration is not the one the host bound at launch")
                && stderr.contains(&format!("MRCONFIGID is {value}"))
                && stderr.contains(&format!("needs {expected}")),
            "{case}: {stderr}"
        );
    }
    // A guest launched with the field unset has nothing binding its configuration either.
    let out = serve_refused(dir.path(), &upstream, &"00".repeat(48)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "unset: {stderr}");
    assert!(out.stdout.is_empty(), "unset: it listened");
    assert!(
        stderr.contains("the runtime configuration is unbound")
            && stderr.contains(&format!("launch the guest with MRCONFIGID = {expected}")),
        "unset: {stderr}"
    );
}

#[test]
fn launch_value_is_checked_as_a_setting() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    for (tee, value) in [("simulated", "abcd"), ("tdx", &"11".repeat(48))] {
        let out = std::process::Command::new(BIN)
            .args(["runtime-events", "--tee", tee, "--state-dir", state])
            .args(["--simulated-mrconfigid", value])
            .env("DAIT_LOG", "error")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{tee}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("--simulated-mrconfigid"));
    }
}
