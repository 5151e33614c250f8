//! Tests on real confidential-computing hardware, run by `just test-hw` (docs/HARDWARE.md). Each is
//! `#[ignore]`d, so the ordinary `cargo test` skips it.
//!
//! Each test looks for its hardware first. Absent, it prints `skipped: no <device>` and returns; present, it
//! collects real evidence through the agent (the agent built as `dait-host attest --tee tdx|snp` builds it: a
//! fresh keyset, the configfs-tsm backend at `/sys/kernel/config/tsm/report`) for a fresh random nonce,
//! verifies it with the verifier, and prints what it ran on. Hardware whose evidence the agent cannot collect
//! yet makes its test fail, never pass. The CPU tests build the agent with `--gpus 0`; the GPU test goes through
//! the agent's NVML attester on its own. The vTPM test needs the `vtpm` and `simulated-tee` features (its CPU
//! evidence is simulated, its TPM real; it resets PCR 23 first).
//!
//! Settings (environment):
//! - `DAIT_PCCS_URL` (default Intel PCS) and `DAIT_PCCS_CA_FILE`: where the TDX bundle test's agent fetches
//!   Intel's collateral, exactly as `serve` does; the bundle is then verified with the collateral it carries.
//! - `DAIT_COLLATERAL_DIR`: given Intel collateral for the TDX quote (a directory of the PCS files, or a
//!   dcap-qvl JSON bundle; see `TdxCollateral::load`), for a guest that reaches no PCS or PCCS: the quote test
//!   requires it, and the bundle test then verifies against it instead of fetching.
//! - `DAIT_HW_ACCEPT_TCB`: TCB statuses to accept besides `UpToDate` (comma-separated, e.g.
//!   `SWHardeningNeeded,OutOfDate`); `DAIT_HW_ALLOW_ADVISORIES`: advisory IDs to tolerate (comma-separated).
//! - `DAIT_HW_TPM`: the vTPM test's TPM as a TCTI (default `device:/dev/tpmrm0`; e.g. a swtpm's
//!   `swtpm:host=127.0.0.1,port=2321` to try the test without one).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;

use dait_agent::http::App;
use dait_agent::tee::TSM_REPORT_DIR;
use dait_chain_client::Freshness;
use dait_chain_client::proto::cpu_evidence::Evidence;
use dait_verifier::UnixTime;
use dait_verifier::bundle::{Policy, VerifyError, verify_bundle, verify_bundle_with_collateral};
use dait_verifier::collateral::TdxCollateral;
use dait_verifier::tdx::{TcbStatus, TdxPolicy, verify_quote};

/// Whether this machine has the configfs-tsm report interface with provider `want`; when not, prints
/// `skipped: no <what> (...)`. Reading the provider creates (and removes) a report entry, which needs root.
fn tsm_provider_is(want: &str, what: &str) -> bool {
    let root = Path::new(TSM_REPORT_DIR);
    if !root.is_dir() {
        eprintln!("skipped: no {what} (no {TSM_REPORT_DIR} with provider {want})");
        return false;
    }
    let probe = root.join("dait-hw-probe");
    if let Err(e) = std::fs::create_dir(&probe)
        && e.kind() != std::io::ErrorKind::AlreadyExists
    {
        panic!("{TSM_REPORT_DIR} exists but a report entry cannot be created ({e}); run as root");
    }
    let provider = std::fs::read_to_string(probe.join("provider"));
    let _ = std::fs::remove_dir(&probe);
    let provider = provider.unwrap_or_else(|e| panic!("reading the configfs-tsm provider: {e}"));
    if provider.trim() != want {
        eprintln!(
            "skipped: no {what} ({TSM_REPORT_DIR} has provider {}, not {want})",
            provider.trim()
        );
        return false;
    }
    true
}

/// The agent as `dait-host attest --tee <tee>` builds it.
fn agent(tee: &str) -> (App, tempfile::TempDir) {
    use clap::Parser as _;
    use dait_agent::config::{Cli, Command};
    let state = tempfile::tempdir().unwrap();
    let args = [
        "dait-host",
        "serve",
        "--tee",
        tee,
        "--state-dir",
        state.path().to_str().unwrap(),
        "--gpus",
        "0",
    ];
    let Command::Serve { raw } = Cli::try_parse_from(args).unwrap().command else {
        unreachable!()
    };
    let config = raw.validate().unwrap();
    let app = dait_agent::build_app(&config, dait_agent::Mode::Attest)
        .unwrap_or_else(|e| panic!("building the agent with --tee {tee}: {}", chain(e)));
    (Arc::try_unwrap(app).unwrap(), state)
}

/// An error with its sources, `a: b: c`.
fn chain(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The default policy, with the TCB statuses and advisories the operator accepts for this machine.
fn policy() -> Policy {
    let mut p = Policy::new();
    for s in env_list("DAIT_HW_ACCEPT_TCB") {
        let status: TcbStatus = s
            .parse()
            .unwrap_or_else(|_| panic!("DAIT_HW_ACCEPT_TCB: unknown TCB status {s}"));
        p.tdx.accepted_tcb_statuses.push(status);
    }
    p.tdx.allowed_advisories = env_list("DAIT_HW_ALLOW_ADVISORIES");
    p
}

/// A fresh random tenant nonce.
fn fresh_nonce() -> Freshness {
    Freshness::TenantNonce(rand::random())
}

/// The agent's bundle for a fresh nonce.
fn collect(app: &App) -> (Vec<u8>, Freshness) {
    let freshness = fresh_nonce();
    let bytes = dait_agent::http::bundle(app, &freshness)
        .unwrap_or_else(|e| panic!("the agent's evidence: {}", chain(e)));
    (bytes, freshness)
}

fn tdx_collateral() -> TdxCollateral {
    let Some(dir) = std::env::var_os("DAIT_COLLATERAL_DIR") else {
        panic!(
            "DAIT_COLLATERAL_DIR is not set: this test checks the quote alone against given Intel \
             collateral for this platform (TCB Info, QE Identity, PCK CRL, root CA CRL and issuer chains \
             from Intel PCS or a PCCS); see docs/HARDWARE.md"
        )
    };
    TdxCollateral::load(Path::new(&dir))
        .unwrap_or_else(|e| panic!("DAIT_COLLATERAL_DIR: {}", chain(e)))
}

#[test]
#[ignore = "needs a TDX guest (configfs-tsm, provider tdx_guest)"]
fn tdx_guest_quote_verifies() {
    if !tsm_provider_is("tdx_guest", "tdx guest") {
        return;
    }
    let collateral = tdx_collateral();
    let (app, _state) = agent("tdx");
    let (bytes, freshness) = collect(&app);
    let Some(Evidence::TdxQuote(quote)) = dait_chain_client::decode_bundle(&bytes)
        .unwrap()
        .cpu
        .and_then(|c| c.evidence)
    else {
        panic!("the agent's TDX bundle carries no TDX quote");
    };
    // The quote alone: PCK chain, QE report, signature, collateral, TCB level, default policy, and its
    // REPORTDATA binding the agent's keyset and this nonce.
    let tdx = TdxPolicy {
        report_data: Some(app.keys.report_data(&freshness)),
        ..policy().tdx
    };
    let v = verify_quote(&quote, &collateral, &tdx, UnixTime::now())
        .unwrap_or_else(|e| panic!("the TDX quote from this guest: {}", chain(e)));
    eprintln!(
        "ran on: TDX guest (quote v{}, {:?} body, TCB {:?}, advisories {:?}, MRTD {}, MRSEAM {})",
        v.version(),
        v.body_kind(),
        v.tcb_status(),
        v.advisory_ids(),
        hex::encode(v.mr_td()),
        hex::encode(v.mr_seam())
    );
}

#[test]
#[ignore = "needs a TDX guest (configfs-tsm, provider tdx_guest)"]
fn tdx_guest_bundle_verifies() {
    if !tsm_provider_is("tdx_guest", "tdx guest") {
        return;
    }
    let (app, state) = agent("tdx");
    let given = std::env::var_os("DAIT_COLLATERAL_DIR").map(|_| tdx_collateral().to_proto());
    let app = Arc::new(app);
    let source = match &given {
        Some(_) => "DAIT_COLLATERAL_DIR".to_owned(),
        None => {
            // The agent's own collateral, fetched as `serve` fetches it, and embedded in every bundle.
            use dait_agent::collateral::{
                DEFAULT_PCCS_URL, PCCS_URL_ENV, PcsClient, ca_file, refresh_once,
            };
            let url = std::env::var(PCCS_URL_ENV).unwrap_or_else(|_| DEFAULT_PCCS_URL.to_owned());
            let client = PcsClient::new(&url, &ca_file(), &state.path().join("collateral"))
                .unwrap_or_else(|e| panic!("the collateral client for {url}: {}", chain(e)));
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(refresh_once(&app, &client, UnixTime::now()))
                .unwrap_or_else(|e| {
                    panic!(
                        "fetching Intel's collateral from {url} (set DAIT_PCCS_URL to a PCCS, or \
                         DAIT_COLLATERAL_DIR to given collateral): {}",
                        chain(e)
                    )
                });
            format!("fetched from {url}, carried in the bundle")
        }
    };
    let (bytes, freshness) = collect(&app);
    match verify_bundle_with_collateral(
        &bytes,
        &policy(),
        given.as_ref(),
        &freshness,
        UnixTime::now(),
    ) {
        Ok(v) => eprintln!(
            "ran on: TDX guest (bundle verified: keyset {}, runtime {:?}, collateral {source})",
            v.keyset_hash(),
            v.runtime()
        ),
        Err(VerifyError::EventLogMismatch) => panic!(
            "the quote verified but the runtime event log does not replay to RTMR3: RTMR3 was extended by \
             something else in this boot (docs/HARDWARE.md)"
        ),
        Err(e) => panic!("the agent's TDX bundle: {}", chain(e)),
    }
}

#[test]
#[ignore = "needs an SEV-SNP guest (configfs-tsm, provider sev_guest)"]
fn snp_guest_bundle_verifies() {
    if !tsm_provider_is("sev_guest", "sev-snp guest") {
        return;
    }
    let (app, _state) = agent("snp");
    let (bytes, freshness) = collect(&app);
    // The VCEK (or VLEK) comes from the host's certificate table (auxblob); ASK and ARK from the table or
    // AMD's pinned certificates.
    let v = verify_bundle(&bytes, &policy(), &freshness, UnixTime::now())
        .unwrap_or_else(|e| panic!("the agent's SNP bundle: {}", chain(e)));
    let snp = v.snp().expect("an SNP bundle verifies to an SNP report");
    eprintln!(
        "ran on: SEV-SNP guest ({:?}, report v{}, signed by {:?}, VMPL {}, reported TCB {:?}, measurement {})",
        snp.product(),
        snp.version(),
        snp.signing_key(),
        snp.vmpl(),
        snp.reported_tcb(),
        hex::encode(snp.measurement())
    );
}

#[test]
#[ignore = "needs an NVIDIA GPU in confidential-computing mode"]
fn nvidia_gpu_evidence() {
    use dait_agent::tee::NvmlAttester;
    use dait_agent::tee::gpu::{self, GpuAttester as _, Gpus};
    if !Path::new("/dev/nvidia0").exists() {
        eprintln!("skipped: no nvidia gpu (no /dev/nvidia0)");
        return;
    }
    let attester = match NvmlAttester::open() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "skipped: no nvidia gpu (libnvidia-ml does not load: {})",
                chain(e)
            );
            return;
        }
    };
    let inventory = attester
        .inventory()
        .unwrap_or_else(|e| panic!("NVML inventory: {}", chain(e)));
    if !inventory.cc_enabled {
        eprintln!(
            "skipped: no nvidia gpu in confidential-computing mode ({} GPUs, CC mode off; docs/HARDWARE.md)",
            inventory.count
        );
        return;
    }
    // The ids `dait-host register` puts on chain when given no --gpu-id: one NVML UUID per GPU, each hashed.
    let uuids = attester
        .uuids()
        .unwrap_or_else(|e| panic!("NVML UUIDs: {}", chain(e)));
    assert_eq!(uuids.len() as u32, inventory.count);
    for (i, u) in uuids.iter().enumerate() {
        assert!(u.starts_with("GPU-"), "GPU {i}: UUID {u}");
        eprintln!(
            "ran on: NVIDIA GPU {i} UUID {u}, gpu_id_hash {}",
            dait_chain_client::gpu_id_hash(u)
        );
    }
    // The agent's start-up path: the rule (count, CC mode, not developer-tools mode), its own verification of each
    // GPU's evidence, then the ready state.
    let gpus = Gpus::open(Box::new(attester), inventory.count)
        .unwrap_or_else(|e| panic!("the GPU start-up rule: {}", chain(e)));
    gpus.verify_and_set_ready(UnixTime::now())
        .unwrap_or_else(|e| panic!("the agent's own GPU check: {}", chain(e)));
    // The per-request path: every GPU's report for gpu_nonce(report_data, i), in order, verified.
    let report_data: [u8; 64] = std::array::from_fn(|_| rand::random());
    let evidence = gpus
        .evidence(&report_data)
        .unwrap_or_else(|e| panic!("the agent's GPU evidence: {}", chain(e)));
    let verified = gpu::verify(&evidence, &report_data, UnixTime::now())
        .unwrap_or_else(|e| panic!("the GPU evidence from this machine: {}", chain(e)));
    for (i, v) in verified.iter().enumerate() {
        eprintln!(
            "ran on: NVIDIA GPU {i} of {} (driver {}, VBIOS {}, FWID {}, {} measurements, padding {}, attestation key \
             SPKI SHA-256 {})",
            inventory.count,
            v.driver_version().unwrap_or("-"),
            v.vbios_version().unwrap_or("-"),
            v.fwid().map(hex::encode).unwrap_or_default(),
            v.measurements().len(),
            v.padding(),
            hex::encode(v.leaf_spki_sha256())
        );
    }
}

#[test]
#[ignore = "needs a vTPM"]
fn vtpm_quote() {
    if std::env::var_os("DAIT_HW_TPM").is_none() && !Path::new("/dev/tpmrm0").exists() {
        eprintln!("skipped: no vtpm (no /dev/tpmrm0)");
        return;
    }
    vtpm::quote_verifies();
}

/// The agent's vTPM path on `/dev/tpmrm0`: the CPU evidence is simulated (any machine with a TPM runs it), the
/// TPM part is real.
#[cfg(all(feature = "vtpm", feature = "simulated-tee"))]
mod vtpm {
    use super::*;
    use dait_chain_client::runtime_log::{EventLog, RUNTIME_VTPM_PCR};
    use tss_esapi::handles::PcrHandle;
    use tss_esapi::interface_types::session_handles::AuthSession;

    pub(super) fn quote_verifies() {
        let tcti = std::env::var("DAIT_HW_TPM").unwrap_or_else(|_| "device:/dev/tpmrm0".into());
        let tcti = tcti.as_str();
        // The agent refuses a PCR 23 that is not in its reset state, and an earlier run extended it: reset it
        // (PCR 23 is resettable from locality 0 on PC Client TPMs). This machine is a test machine.
        let mut context = tss_esapi::Context::new(tcti.parse().unwrap())
            .unwrap_or_else(|e| panic!("opening {tcti} (root or the tss group): {e}"));
        context
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.pcr_reset(PcrHandle::Pcr23)
            })
            .unwrap_or_else(|e| panic!("resetting PCR 23: {e}"));
        drop(context);

        use clap::Parser as _;
        use dait_agent::config::{Cli, Command};
        let state = tempfile::tempdir().unwrap();
        let root = dait_agent::tee::simulated::init_root(state.path()).unwrap();
        let args = [
            "dait-host",
            "serve",
            "--tee",
            "simulated",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--tpm",
            tcti,
        ];
        let Command::Serve { raw } = Cli::try_parse_from(args).unwrap().command else {
            unreachable!()
        };
        let app = dait_agent::build_app(&raw.validate().unwrap(), dait_agent::Mode::Attest)
            .unwrap_or_else(|e| panic!("building the agent with --tpm {tcti}: {}", chain(e)));
        let (bytes, freshness) = collect(&app);
        let bundle = dait_chain_client::decode_bundle(&bytes).unwrap();
        let tpm = bundle.tpm.as_ref().expect("the bundle carries a quote");
        let ak_name = dait_verifier::tpm::tpm_name(&tpm.ak_public);
        let mut policy = Policy::new().dangerous_allow_simulated(&root).unwrap();
        policy.tpm.required = true;
        policy.tpm.ak_name = Some(ak_name.clone());
        let v = verify_bundle(&bytes, &policy, &freshness, UnixTime::now())
            .unwrap_or_else(|e| panic!("the agent's vTPM bundle: {}", chain(e)));
        let quote = v.tpm().expect("the quote verified");
        let expected = EventLog::decode(&bundle.event_log)
            .unwrap()
            .vtpm_pcr_sha256();
        assert_eq!(quote.pcr(RUNTIME_VTPM_PCR), Some(&expected));
        eprintln!(
            "ran on: vTPM ({tcti}, firmware {:#x}, AK name {}, PCR {RUNTIME_VTPM_PCR} {})",
            quote.firmware_version(),
            hex::encode(ak_name),
            hex::encode(expected)
        );
    }
}

#[cfg(not(all(feature = "vtpm", feature = "simulated-tee")))]
mod vtpm {
    pub(super) fn quote_verifies() {
        panic!(
            "a TPM is present (/dev/tpmrm0), but this test binary is built without the `vtpm` and \
             `simulated-tee` features (`just test-hw` adds them where libtss2-dev is installed): nothing can \
             be verified, so this test fails"
        );
    }
}
