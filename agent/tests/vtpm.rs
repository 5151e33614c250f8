//! The vTPM path (`--tpm`, feature `vtpm`) against a real software TPM (`swtpm socket --tpm2`, the harness in
//! `common/swtpm.rs`): the real `dait-host` (simulated CPU TEE) extends its runtime events into PCR 23 and
//! serves a TPM2_Quote in every bundle, which the verifier accepts; a quote that does not fit the bundle fails
//! with its own error: a changed runtime event, another nonce, another attestation key. Where `swtpm` is
//! missing each test prints `skipped: no swtpm`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    Conn, Swtpm, VLLM_LIKE, fetch_bundle, init_simulated, serve_command, spawn_listening,
    start_engine, swtpm_available,
};
use dait_agent::tee::TeeBackend as _;
use dait_agent::tee::simulated::SimulatedBackend;
use dait_agent::tee::vtpm::VtpmBackend;
use dait_chain_client::proto::{self, SimulatedReportBody, cpu_evidence};
use dait_chain_client::runtime_log::{self, EventLog, RUNTIME_VTPM_PCR};
use dait_chain_client::{Freshness, encode_bundle};
use dait_measure::ReferenceMeasurements;
use dait_measure::reference::RuntimeEvent;
use dait_verifier::bundle::{Policy, UnixTime, VerifiedBundle, VerifyError, verify_bundle};
use dait_verifier::tpm::{TpmError, tpm_name};
use prost::Message as _;

const NONCE: [u8; 32] = [0x31; 32];
const OTHER_NONCE: [u8; 32] = [0x32; 32];

/// What one run of the agent on a swtpm served.
struct Served {
    tpm: Swtpm,
    state: tempfile::TempDir,
    /// The bundle for [`NONCE`].
    bundle: proto::EvidenceBundle,
    /// The bundle for [`OTHER_NONCE`] (the same agent, so the same keyset and log).
    other: proto::EvidenceBundle,
}

/// Starts `dait-host serve --tee simulated --tpm <swtpm>`, fetches the bundles for [`NONCE`] and
/// [`OTHER_NONCE`], and stops it (at most 30 s).
async fn serve_on_swtpm(tpm: Swtpm) -> Served {
    let state = tempfile::tempdir().unwrap();
    init_simulated(state.path());
    let (engine, _) = start_engine(VLLM_LIKE).await;
    let mut cmd = serve_command(state.path(), &format!("http://{engine}"));
    cmd.args(["--model-id", "vtpm-model", "--tpm", &tpm.tcti()]);
    let (mut child, addr, _stdout) = spawn_listening(&mut cmd).await;
    let mut conn = Conn::connect(addr, true).await.unwrap();
    let bundle = fetch_bundle(&mut conn, NONCE).await;
    let other = fetch_bundle(&mut conn, OTHER_NONCE).await;
    drop(conn);
    child.start_kill().unwrap();
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("dait-host did not stop")
        .unwrap();
    Served {
        tpm,
        state,
        bundle,
        other,
    }
}

/// The simulated root the agent's state directory pins, with a quote required.
fn policy(state: &Path) -> Policy {
    let root = std::fs::read_to_string(state.join("sim-root.pub")).unwrap();
    let mut policy = Policy::new()
        .dangerous_allow_simulated(&hex::decode(root.trim()).unwrap())
        .unwrap();
    policy.tpm.required = true;
    policy
}

fn verify(bundle: &proto::EvidenceBundle, policy: &Policy) -> Result<VerifiedBundle, VerifyError> {
    verify_bundle(
        &encode_bundle(bundle),
        policy,
        &Freshness::TenantNonce(NONCE),
        UnixTime::now(),
    )
}

/// The simulated report's `report_data` of `bundle` (what its quote must be qualified with).
fn report_data(bundle: &proto::EvidenceBundle) -> [u8; 64] {
    let Some(cpu_evidence::Evidence::Simulated(report)) = bundle.cpu.clone().unwrap().evidence
    else {
        panic!("not simulated evidence")
    };
    let body = SimulatedReportBody::decode(&report.body[..]).unwrap();
    body.report_data.try_into().unwrap()
}

/// A quote made by `tpm` (PCRs in their reset state) after extending `events` (kind, data) the agent's
/// way, for `report_data`: what a host that lies about its runtime, or uses another TPM, could serve.
fn quote_on(
    tpm: &Swtpm,
    state: &Path,
    events: &[(String, String)],
    report_data: &[u8; 64],
) -> proto::TpmEvidence {
    let inner = Box::new(SimulatedBackend::open(state).unwrap());
    let backend = VtpmBackend::open(inner, &tpm.tcti()).unwrap();
    let mut log = EventLog::default();
    for (kind, data) in events {
        log.record(kind, data);
        backend.extend_runtime(&log).unwrap();
    }
    backend.tpm_quote(report_data).unwrap().unwrap()
}

fn events_of(bundle: &proto::EvidenceBundle) -> Vec<(String, String)> {
    EventLog::decode(&bundle.event_log)
        .unwrap()
        .events()
        .iter()
        .map(|e| (e.kind.clone(), e.data.clone()))
        .collect()
}

#[tokio::test]
async fn agent_on_swtpm_serves_a_quote_the_verifier_accepts() {
    if !swtpm_available() {
        return;
    }
    let served = serve_on_swtpm(Swtpm::start()).await;
    let tpm = served
        .bundle
        .tpm
        .clone()
        .expect("the bundle carries a quote");
    let ak_name = tpm_name(&tpm.ak_public);
    // A reference file for this configuration (a release's, its runtime events replaced by the agent's):
    // the policy made from it pins PCR 23 to the value the reference predicts.
    let mut reference = ReferenceMeasurements::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../measurements/reference/0.3.0.json"
    )))
    .unwrap();
    reference.runtime.events = events_of(&served.bundle)
        .iter()
        .map(|(_, data)| {
            let (name, sha) = data.split_once(':').unwrap();
            RuntimeEvent {
                name: name.to_owned(),
                sha256: sha.parse().unwrap(),
            }
        })
        .collect();
    let root = std::fs::read_to_string(served.state.path().join("sim-root.pub")).unwrap();
    let mut policy = Policy::from_reference(&reference)
        .unwrap()
        .dangerous_allow_simulated(&hex::decode(root.trim()).unwrap())
        .unwrap();
    assert_eq!(
        policy.tpm.pcrs,
        [(RUNTIME_VTPM_PCR, reference.expected_runtime_pcr_sha256().0)]
    );
    policy.tpm.required = true;
    policy.tpm.ak_name = Some(ak_name.clone());
    let verified = verify(&served.bundle, &policy).unwrap();

    let quote = verified.tpm().expect("the quote verified");
    let log = EventLog::decode(&served.bundle.event_log).unwrap();
    assert_eq!(log.events().len(), runtime_log::EVENT_NAMES.len());
    assert_eq!(quote.pcr(RUNTIME_VTPM_PCR), Some(&log.vtpm_pcr_sha256()));
    assert_ne!(log.vtpm_pcr_sha256(), [0u8; 32]);
    let quoted: Vec<u8> = quote.pcrs().iter().map(|(i, _)| *i).collect();
    assert_eq!(quoted, [0, 1, 2, 3, 4, 5, 6, 7, 11, RUNTIME_VTPM_PCR]);
    assert!(
        verified.runtime().is_some(),
        "the log is attested through the pinned key"
    );

    // PCR 23 now holds the agent's events: a second start on the same TPM refuses, naming the value.
    let out = tokio::time::timeout(Duration::from_secs(60), {
        let mut cmd = serve_command(served.state.path(), "http://127.0.0.1:9");
        cmd.args(["--tpm", &served.tpm.tcti()])
            .env("DAIT_LOG", "error")
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap().wait_with_output()
    })
    .await
    .expect("dait-host neither started nor refused within 60 s")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "it listened: {stderr}");
    assert!(
        stderr.contains(&format!("PCR {RUNTIME_VTPM_PCR} is not in its reset state"))
            && stderr.contains(&hex::encode(log.vtpm_pcr_sha256())),
        "{stderr}"
    );

    // The same TPM after a reset gives the same attestation key.
    let tpm = served.tpm.restart();
    let again = quote_on(
        &tpm,
        served.state.path(),
        &events_of(&served.bundle),
        &report_data(&served.bundle),
    );
    assert_eq!(tpm_name(&again.ak_public), ak_name);
}

#[tokio::test]
async fn agent_without_a_usable_tpm_refuses_to_start() {
    let state = tempfile::tempdir().unwrap();
    init_simulated(state.path());
    // Nothing listens on port 9 of 127.0.0.1 (discard): the TPM cannot be opened.
    let out = tokio::time::timeout(Duration::from_secs(60), {
        let mut cmd = serve_command(state.path(), "http://127.0.0.1:9");
        cmd.args(["--tpm", "swtpm:host=127.0.0.1,port=9"])
            .env("DAIT_LOG", "error")
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap().wait_with_output()
    })
    .await
    .expect("dait-host neither started nor refused within 60 s")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "it listened: {stderr}");
    assert!(stderr.contains("vTPM"), "{stderr}");
}

#[tokio::test]
async fn quote_for_another_nonce_is_rejected() {
    if !swtpm_available() {
        return;
    }
    let served = serve_on_swtpm(Swtpm::start()).await;
    let policy = policy(served.state.path());
    verify(&served.bundle, &policy).unwrap();
    let mut forged = served.bundle.clone();
    forged.tpm = served.other.tpm.clone();
    assert!(matches!(
        verify(&forged, &policy),
        Err(VerifyError::Tpm(TpmError::NonceMismatch))
    ));
}

#[tokio::test]
async fn quote_over_a_changed_runtime_event_is_rejected() {
    if !swtpm_available() {
        return;
    }
    let served = serve_on_swtpm(Swtpm::start()).await;
    let policy = policy(served.state.path());
    let mut events = events_of(&served.bundle);
    events[0].1 = runtime_log::event_data(&events[0].0, &[0x55; 32]);
    // The same TPM, reset: the same key, the right nonce, the log's events but one.
    let tpm = served.tpm.restart();
    let mut forged = served.bundle.clone();
    forged.tpm = Some(quote_on(
        &tpm,
        served.state.path(),
        &events,
        &report_data(&served.bundle),
    ));
    assert!(matches!(
        verify(&forged, &policy),
        Err(VerifyError::TpmRuntimeMismatch {
            pcr: RUNTIME_VTPM_PCR
        })
    ));
}

#[tokio::test]
async fn quote_by_another_attestation_key_is_rejected_when_the_key_is_pinned() {
    if !swtpm_available() {
        return;
    }
    let served = serve_on_swtpm(Swtpm::start()).await;
    let mut policy = policy(served.state.path());
    policy.tpm.ak_name = Some(tpm_name(&served.bundle.tpm.as_ref().unwrap().ak_public));
    // Another TPM, the same events, the right nonce: complete but for the key.
    let other_tpm = Swtpm::start();
    let mut forged = served.bundle.clone();
    forged.tpm = Some(quote_on(
        &other_tpm,
        served.state.path(),
        &events_of(&served.bundle),
        &report_data(&served.bundle),
    ));
    assert!(matches!(
        verify(&forged, &policy),
        Err(VerifyError::TpmAkMismatch)
    ));
    policy.tpm.ak_name = None;
    verify(&forged, &policy).expect("without the pin the other TPM's quote is complete");
}
