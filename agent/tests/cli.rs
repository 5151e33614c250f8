//! The `dait-host` command line: `init`, `attest`, startup failures and the documented exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Command, Output};

use dait_chain_client::proto::{SimulatedReportBody, cpu_evidence};
use prost::Message;

const BIN: &str = env!("CARGO_BIN_EXE_dait-host");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("DAIT_TEE_KIND")
        .env_remove("DAIT_STATE_DIR")
        .env("DAIT_LOG", "error")
        .output()
        .unwrap()
}

#[test]
fn init_then_attest_writes_a_bound_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let out = run(&["init", "--tee", "simulated", "--state-dir", state]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root_pub = std::fs::read_to_string(dir.path().join("state/sim-root.pub")).unwrap();
    assert_eq!(root_pub.trim().len(), 130, "hex of a 65-byte SEC1 point");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("state/sim-root.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the simulated root secret is private to its owner"
        );
    }

    let nonce = "11".repeat(32);
    let bundle_path = dir.path().join("bundle.bin");
    let out = run(&[
        "attest",
        "--tee",
        "simulated",
        "--state-dir",
        state,
        "--nonce",
        &nonce,
        "--out",
        bundle_path.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = dait_chain_client::decode_bundle(&std::fs::read(&bundle_path).unwrap()).unwrap();
    let Some(cpu_evidence::Evidence::Simulated(r)) = bundle.cpu.unwrap().evidence else {
        panic!("not simulated")
    };
    let body = SimulatedReportBody::decode(&r.body[..]).unwrap();
    let expected = dait_chain_client::report_data(
        &dait_chain_client::keyset_hash(&bundle.keyset),
        &dait_chain_client::Freshness::TenantNonce([0x11; 32]),
    );
    assert_eq!(body.report_data, expected.to_vec());
    // attest does not touch the receipt log.
    assert!(!dir.path().join("state/receipts.log").exists());
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    // No TEE kind.
    assert_eq!(run(&["serve", "--state-dir", state]).status.code(), Some(2));
    // Malformed nonce.
    let out = run(&[
        "attest",
        "--tee",
        "simulated",
        "--state-dir",
        state,
        "--nonce",
        "xyz",
        "--out",
        "/dev/null",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // Unknown TEE kind (clap).
    assert_eq!(
        run(&["serve", "--tee", "sgx", "--state-dir", state])
            .status
            .code(),
        Some(2)
    );
    // Bad upstream URL.
    let out = run(&[
        "serve",
        "--tee",
        "simulated",
        "--state-dir",
        state,
        "--upstream",
        "ftp://x",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn runtime_failures_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    // Simulated TEE without `init`: no platform root.
    let out = run(&["serve", "--tee", "simulated", "--state-dir", state]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dait-host init"));
    // Hardware TEE without its device: refuses to start, no fallback.
    if !std::path::Path::new(dait_agent::tee::TSM_REPORT_DIR).exists() {
        for tee in ["tdx", "snp"] {
            let out = run(&["serve", "--tee", tee, "--state-dir", state]);
            assert_eq!(out.status.code(), Some(1));
            assert!(String::from_utf8_lossy(&out.stderr).contains("TEE device missing"));
        }
    }
}
