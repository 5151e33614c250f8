//! The agent's GPU evidence path (issue 9 item 3) with a test attester that serves the real H100 attestation
//! reports and certificate chains of the evidence set, as NVML returns them (the SPDM request and response in one
//! buffer, the chain as PEM).
//!
//! A real report cannot carry our nonce: the GPU signed it over the nonce it was given when it was captured. So the
//! bundle the agent assembles from it verifies up to exactly that check: each GPU's SPDM nonce is not
//! `gpu_nonce(report_data, i)` (`NvidiaError::NonceMismatch`), while with the nonce the report does carry the same
//! evidence passes the device chain to NVIDIA's pinned root, the SPDM signature and the FWID. The start-up rule
//! (count, CC mode, developer-tools mode), an attester error, and the ready state set only after the agent's own
//! verification are checked each with its own error. The NVML attester itself needs a GPU: `hardware.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use dait_agent::tee::TeeError;
use dait_agent::tee::gpu::{
    GpuAttester, GpuError, GpuInventory, GpuReport, Gpus, SPDM_REQUEST_LEN, self_check_policy,
};
use dait_chain_client::Freshness;
use dait_verifier::UnixTime;
use dait_verifier::bundle::{Policy, VerifyError, verify_bundle};
use dait_verifier::nvidia::{GpuEvidenceInput, GpuSetError, NvidiaError, NvidiaRoots, verify_gpu};
use nvml_wrapper::error::NvmlError;

const NONCE: Freshness = Freshness::TenantNonce([0x6b; 32]);

/// The evidence set's H100 samples: (report hex, PEM chain).
const H100_2025: (&str, &str) = (
    "nvidia/nvtrust__h100_2025_report.hex",
    "nvidia/nvtrust__h100_2025_cert_chain.pem",
);
const H100_2023: (&str, &str) = (
    "nvidia/nvtrust__h100_2023_report.hex",
    "nvidia/nvtrust__h100_2023_cert_chain.pem",
);

fn real_report((report, chain): (&str, &str)) -> GpuReport {
    let text = String::from_utf8(dait_testdata::read(report)).unwrap();
    GpuReport {
        attestation_report: hex::decode(text.trim()).unwrap(),
        cert_chain: dait_testdata::read(chain),
    }
}

/// Serves one real report per GPU index; records the nonces it was asked for and whether the GPUs were set ready.
struct RealReports {
    inventory: GpuInventory,
    reports: Vec<GpuReport>,
    fail_report: bool,
    asked: Mutex<Vec<(u32, [u8; 32])>>,
    ready: std::sync::Arc<AtomicBool>,
}

impl RealReports {
    fn new(samples: &[(&str, &str)]) -> Self {
        let reports: Vec<GpuReport> = samples.iter().map(|s| real_report(*s)).collect();
        Self {
            inventory: GpuInventory {
                count: u32::try_from(reports.len()).unwrap(),
                cc_enabled: true,
                dev_tools: false,
                ready: false,
            },
            reports,
            fail_report: false,
            asked: Mutex::new(Vec::new()),
            ready: std::sync::Arc::default(),
        }
    }
}

/// The attester the agent owns; the test keeps another handle on the same [`RealReports`].
struct Handle(std::sync::Arc<RealReports>);

impl GpuAttester for Handle {
    fn inventory(&self) -> Result<GpuInventory, GpuError> {
        Ok(self.0.inventory)
    }

    fn report(&self, index: u32, nonce: &[u8; 32]) -> Result<GpuReport, GpuError> {
        self.0.asked.lock().unwrap().push((index, *nonce));
        if self.0.fail_report {
            return Err(GpuError::Nvml {
                op: "attestation report",
                source: NvmlError::GpuLost,
            });
        }
        Ok(self.0.reports[usize::try_from(index).unwrap()].clone())
    }

    fn set_ready(&self) -> Result<(), GpuError> {
        self.0.ready.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// The agent as `dait-host attest` builds it, its GPUs those of `attester`, and the policy that accepts its
/// simulated CPU evidence.
fn agent_with(
    attester: std::sync::Arc<RealReports>,
) -> (dait_agent::http::App, Policy, tempfile::TempDir) {
    let (mut app, state) = common::simulated_app(&[], dait_agent::Mode::Attest);
    let count = attester.inventory.count;
    app.gpus = Some(Gpus::open(Box::new(Handle(attester)), count).unwrap());
    let root = std::fs::read_to_string(state.path().join("sim-root.pub")).unwrap();
    let policy = Policy::new()
        .dangerous_allow_simulated(&hex::decode(root.trim()).unwrap())
        .unwrap();
    (app, policy, state)
}

#[test]
fn bundle_carries_each_gpu_in_order_and_fails_only_the_nonce() {
    let attester = std::sync::Arc::new(RealReports::new(&[H100_2025, H100_2023]));
    let (app, policy, _state) = agent_with(attester.clone());
    let bytes = dait_agent::http::bundle(&app, &NONCE).unwrap();

    // The attester was asked for GPU i's report with gpu_nonce(report_data, i), in order.
    let rd = app.keys.report_data(&NONCE);
    let asked = attester.asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        [
            (0, dait_chain_client::gpu_nonce(&rd, 0).0),
            (1, dait_chain_client::gpu_nonce(&rd, 1).0)
        ]
    );
    // Position i of the bundle is GPU i: its request and response, its chain as DER.
    let bundle = dait_chain_client::decode_bundle(&bytes).unwrap();
    assert_eq!(bundle.gpus.len(), 2);
    for (g, sample) in bundle.gpus.iter().zip([H100_2025, H100_2023]) {
        let real = real_report(sample);
        assert_eq!(g.spdm_request.len(), SPDM_REQUEST_LEN);
        assert_eq!(
            [g.spdm_request.as_slice(), g.spdm_response.as_slice()].concat(),
            real.attestation_report
        );
        assert_eq!(
            g.cert_chain,
            dait_verifier::x509::pem_to_der(&real.cert_chain).unwrap()
        );
    }

    let gpu_bytes: usize = bundle.gpus.iter().map(prost::Message::encoded_len).sum();
    eprintln!(
        "figure: bundle with 2 real H100 GPU evidences {} bytes, of which GPUs {gpu_bytes} bytes",
        bytes.len()
    );

    // The verifier passes the simulated CPU evidence and the keyset binding, and fails GPU 0 at its nonce.
    match verify_bundle(&bytes, &policy, &NONCE, UnixTime::now()) {
        Err(VerifyError::Gpu(GpuSetError {
            index: 0,
            source: NvidiaError::NonceMismatch,
        })) => {}
        other => panic!("expected GPU 0's nonce to fail, got {other:?}"),
    }
    // With the nonce each report does carry, the same evidence passes the device chain to NVIDIA's pinned root,
    // the SPDM signature and the FWID: the nonce is the one check an emulation cannot pass.
    let started = std::time::Instant::now();
    for g in &bundle.gpus {
        let spdm = [g.spdm_request.as_slice(), g.spdm_response.as_slice()].concat();
        let carried: [u8; 32] = g.spdm_request[4..36].try_into().unwrap();
        let chain = g.cert_chain.concat();
        let input = GpuEvidenceInput {
            spdm: &spdm,
            cert_chain_pem: &chain,
            driver_rim: None,
            vbios_rim: None,
            ocsp_responses: &[],
        };
        let v = verify_gpu(
            &input,
            &carried,
            &self_check_policy(),
            &NvidiaRoots::pinned(),
            UnixTime::now(),
        )
        .unwrap();
        assert_eq!(v.nonce(), &carried);
    }
    eprintln!(
        "figure: the agent's self-check policy on 2 real H100 evidences (chain, SPDM signature, FWID) {:?}",
        started.elapsed()
    );
}

#[test]
fn gpus_are_set_ready_only_after_their_evidence_verifies() {
    let attester = std::sync::Arc::new(RealReports::new(&[H100_2025]));
    let gpus = Gpus::open(Box::new(Handle(attester.clone())), 1).unwrap();
    match gpus.verify_and_set_ready(UnixTime::now()) {
        Err(GpuError::Verify(GpuSetError {
            index: 0,
            source: NvidiaError::NonceMismatch,
        })) => {}
        other => panic!("expected the agent's own check to fail at the nonce, got {other:?}"),
    }
    assert!(
        !attester.ready.load(Ordering::SeqCst),
        "the GPUs were set ready"
    );
    // It asked for a fresh nonce, not a fixed one.
    let asked = attester.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_ne!(asked[0].1, [0u8; 32]);
}

#[test]
fn start_refuses_a_wrong_count_cc_off_and_developer_tools_mode() {
    let open = |f: &dyn Fn(&mut GpuInventory), expected: u32| {
        let mut a = RealReports::new(&[H100_2025]);
        f(&mut a.inventory);
        Gpus::open(Box::new(Handle(std::sync::Arc::new(a))), expected)
    };
    assert!(matches!(
        open(&|_| {}, 2),
        Err(GpuError::Count {
            found: 1,
            expected: 2
        })
    ));
    assert!(matches!(
        open(&|i| i.cc_enabled = false, 1),
        Err(GpuError::CcOff)
    ));
    assert!(matches!(
        open(&|i| i.dev_tools = true, 1),
        Err(GpuError::CcDevTools)
    ));
    assert!(open(&|_| {}, 1).is_ok());
}

#[tokio::test]
async fn an_attester_error_fails_the_bundle_and_readiness() {
    let mut a = RealReports::new(&[H100_2025]);
    a.fail_report = true;
    let (app, _policy, _state) = agent_with(std::sync::Arc::new(a));
    assert!(matches!(
        dait_agent::http::bundle(&app, &NONCE),
        Err(TeeError::Gpu(GpuError::Nvml {
            op: "attestation report",
            source: NvmlError::GpuLost
        }))
    ));
    let codes: Vec<&str> = app
        .readiness
        .failures()
        .await
        .iter()
        .map(|f| f.code)
        .collect();
    assert!(codes.contains(&"gpus_unusable"), "{codes:?}");
    assert!(!codes.contains(&"tee_unusable"), "{codes:?}");
}

/// `dait-host serve` for `args`, its output.
fn serve(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dait-host"))
        .arg("serve")
        .args(args)
        .env_remove("DAIT_GPUS")
        .env_remove("DAIT_TEE_KIND")
        .env("DAIT_LOG", "error")
        .output()
        .unwrap()
}

#[test]
fn the_binary_needs_a_gpu_count_on_hardware_and_nvml_for_gpus() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    // A hardware TEE without --gpus: a usage error, before any device is touched.
    for tee in ["tdx", "snp"] {
        let out = serve(&["--tee", tee, "--state-dir", state]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--gpus"),
            "{out:?}"
        );
    }
    // --gpus 1 without an NVIDIA driver: refuses to start, naming NVML.
    if std::path::Path::new("/dev/nvidiactl").exists() {
        eprintln!("skipped: an NVIDIA driver is present (this checks its absence)");
        return;
    }
    common::init_simulated(dir.path());
    let out = serve(&[
        "--tee",
        "simulated",
        "--state-dir",
        state,
        "--gpus",
        "1",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GPU: NVML init"), "{err}");
}
