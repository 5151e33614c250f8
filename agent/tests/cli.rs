//! The `dait-host` command line: `init`, `attest`, `runtime-events`, startup failures, exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

use dait_chain_client::proto::{self, SimulatedReportBody, cpu_evidence};
use prost::Message;

const BIN: &str = env!("CARGO_BIN_EXE_dait-host");

/// `dait-host ARGS`, without the caller's TEE and state settings in the environment.
fn run(args: &[&str]) -> Output {
    run_with_env(args, &[])
}

/// `dait-host ARGS` with `env` added.
fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("DAIT_TEE_KIND")
        .env_remove("DAIT_STATE_DIR")
        .env_remove("DAIT_ENGINE_DETERMINISTIC")
        .envs(env.iter().copied())
        .env("DAIT_LOG", "error")
        .output()
        .unwrap()
}

/// Asserts exit code 0, showing stderr otherwise.
fn assert_success(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dait-host attest --tee simulated` for `nonce` (hex) into the file `out`, with `env` added.
fn run_attest(state: &str, nonce: &str, out: &str, env: &[(&str, &str)]) -> Output {
    let args = [
        "attest",
        "--tee",
        "simulated",
        "--state-dir",
        state,
        "--nonce",
        nonce,
        "--out",
        out,
    ];
    run_with_env(&args, env)
}

/// A [`run_attest`] that must succeed: the bundle it wrote and the bundle's simulated report.
fn attest(
    state: &str,
    nonce: &str,
    out: &Path,
    env: &[(&str, &str)],
) -> (proto::EvidenceBundle, SimulatedReportBody) {
    assert_success(&run_attest(state, nonce, out.to_str().unwrap(), env));
    let bundle = dait_chain_client::decode_bundle(&std::fs::read(out).unwrap()).unwrap();
    let Some(cpu_evidence::Evidence::Simulated(r)) = bundle.cpu.clone().unwrap().evidence else {
        panic!("not simulated")
    };
    let report = SimulatedReportBody::decode(&r.body[..]).unwrap();
    (bundle, report)
}

#[test]
fn init_then_attest_writes_a_bound_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let out = run(&["init", "--tee", "simulated", "--state-dir", state]);
    assert_success(&out);
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

    let bundle_path = dir.path().join("bundle.bin");
    let (bundle, body) = attest(state, &"11".repeat(32), &bundle_path, &[]);
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
    let out = run_attest(state, "xyz", "/dev/null", &[]);
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
    if !Path::new(dait_agent::tee::TSM_REPORT_DIR).exists() {
        for tee in ["tdx", "snp"] {
            let out = run(&["serve", "--tee", tee, "--state-dir", state, "--gpus", "0"]);
            assert_eq!(out.status.code(), Some(1));
            assert!(String::from_utf8_lossy(&out.stderr).contains("TEE device missing"));
        }
    }
}

/// `name=sha256hex` lines as printed by `runtime-events`.
fn event_lines(out: &Output) -> Vec<(String, String)> {
    assert_success(out);
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| {
            let (name, hex) = line.split_once('=').unwrap();
            assert_eq!(hex.len(), 64, "{line}");
            (name.to_owned(), hex.to_owned())
        })
        .collect()
}

#[test]
fn runtime_events_replay_to_the_register_a_started_agent_reports() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let weights = dir.path().join("model.gguf");
    std::fs::write(&weights, b"not really weights").unwrap();
    let env = [
        ("DAIT_MODEL_ID", "smollm2"),
        ("DAIT_MODEL_PATH", weights.to_str().unwrap()),
        ("DAIT_ENGINE_BUILD", "llama-cpp-python 0.3.36"),
        ("DAIT_PRICE_IN", "3"),
        ("DAIT_PRICE_OUT", "5"),
        ("DAIT_ENGINE_DETERMINISTIC", "true"),
    ];
    let printed = event_lines(&run_with_env(
        &["runtime-events", "--tee", "simulated", "--state-dir", state],
        &env,
    ));
    let names: Vec<&str> = printed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["model-id", "model-weights", "engine-build", "agent-config"]
    );
    assert_eq!(
        printed[1].1,
        hex::encode(sha2::Sha256::digest(b"not really weights"))
    );
    assert!(
        !dir.path().join("state").exists(),
        "runtime-events opens no TEE and writes nothing"
    );

    // The same configuration, started: its event log and the simulated RTMR3 are what the lines predict.
    let out = run_with_env(&["init", "--tee", "simulated", "--state-dir", state], &env);
    assert_success(&out);
    let bundle_path = dir.path().join("bundle.bin");
    let (bundle, body) = attest(state, &"22".repeat(32), &bundle_path, &env);
    let log: serde_json::Value = serde_json::from_slice(&bundle.event_log).unwrap();
    let logged: Vec<(String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (name, hex) = e["data"].as_str().unwrap().split_once(':').unwrap();
            assert_eq!(e["kind"].as_str(), Some(name));
            (name.to_owned(), hex.to_owned())
        })
        .collect();
    assert_eq!(logged, printed);
    // Replayed as a reference file lists them (dait-measure's rule), the lines give the reported RTMR3.
    let mut rtmr3 = [0u8; 48];
    for (name, hex) in &printed {
        let data = dait_measure::reference::runtime_event_data(name, &hex.parse().unwrap());
        let digest: [u8; 48] = sha2::Sha384::digest(data).into();
        rtmr3 = dait_measure::reference::extend_sha384(&rtmr3, &digest);
    }
    assert_eq!(
        body.measurements.last().map(Vec::as_slice),
        Some(&rtmr3[..])
    );

    // A changed price changes only the agent-config event.
    let mut cheaper = env;
    cheaper[4] = ("DAIT_PRICE_OUT", "4");
    let changed = event_lines(&run_with_env(
        &["runtime-events", "--tee", "simulated", "--state-dir", state],
        &cheaper,
    ));
    assert_eq!(changed[..3], printed[..3]);
    assert_ne!(changed[3], printed[3]);
    // So does the engine's declared determinism (off: the variable false, or absent).
    let mut undeclared = env;
    undeclared[5] = ("DAIT_ENGINE_DETERMINISTIC", "false");
    let off = event_lines(&run_with_env(
        &["runtime-events", "--tee", "simulated", "--state-dir", state],
        &undeclared,
    ));
    assert_eq!(off[..3], printed[..3]);
    assert_ne!(off[3], printed[3]);
    let absent = event_lines(&run_with_env(
        &["runtime-events", "--tee", "simulated", "--state-dir", state],
        &env[..5],
    ));
    assert_eq!(absent, off);
}

#[test]
fn runtime_events_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    // No TEE kind: the same validation as `serve`.
    let out = run_with_env(&["runtime-events", "--state-dir", state], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    // A weights file that cannot be read: nothing printed, runtime failure.
    let missing = dir.path().join("missing.gguf");
    let out = run_with_env(
        &["runtime-events", "--tee", "tdx", "--state-dir", state],
        &[("DAIT_MODEL_PATH", missing.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("model weights"), "{stderr}");
    // Each cause in the chain is printed once.
    let cause = std::fs::File::open(&missing).unwrap_err().to_string();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("dait-host: "))
        .unwrap();
    assert_eq!(line.matches("model weights").count(), 1, "{line}");
    assert_eq!(line.matches(&cause).count(), 1, "{line}");
}
