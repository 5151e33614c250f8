//! The release reference `measurements/reference/0.1.0.json` as the verifier uses it: it loads and validates,
//! `Policy::from_reference` accepts it, an SNP report carrying a shape's expected values passes the report policy
//! and each field changed is rejected with its own error; TDX evidence is refused, since the release pins no
//! RTMR0 (see docs/MEASUREMENTS.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::PathBuf;

use dait_measure::ReferenceMeasurements;
use dait_measure::reference::Platform as ShapePlatform;
use dait_verifier::bundle::{Platform, Policy};
use dait_verifier::snp::{SnpError, SnpProduct, SnpReport, check_policy};

fn release() -> ReferenceMeasurements {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../measurements/reference/0.1.0.json");
    let reference = ReferenceMeasurements::load(&path).unwrap();
    reference.validate().unwrap();
    assert_eq!(reference.release, "0.1.0");
    reference
}

/// The fields of an SNP report the reference pins.
#[derive(Clone, Copy)]
struct Values {
    measurement: [u8; 48],
    host_data: [u8; 32],
    guest_policy: u64,
}

fn expected(reference: &ReferenceMeasurements, shape: &str) -> Values {
    let snp = reference.snp.as_ref().unwrap();
    Values {
        measurement: reference.snp_measurement(shape).unwrap().0,
        host_data: snp.host_data[0].0,
        guest_policy: snp.guest_policy,
    }
}

/// An SNP ATTESTATION_REPORT (version 2, VMPL 0; signature not checked here) with `values` at their offsets
/// (SEV-SNP ABI spec, table 22).
fn report_bytes(values: Values) -> Vec<u8> {
    let mut report = vec![0u8; dait_measure::reported::SNP_REPORT_LEN];
    report[0..4].copy_from_slice(&2u32.to_le_bytes());
    report[0x08..0x10].copy_from_slice(&values.guest_policy.to_le_bytes());
    report[0x90..0xc0].copy_from_slice(&values.measurement);
    report[0xc0..0xe0].copy_from_slice(&values.host_data);
    report
}

fn check(policy: &Policy, values: Values) -> Result<(), SnpError> {
    let bytes = report_bytes(values);
    let report = SnpReport::parse(&bytes).unwrap();
    check_policy(&report, SnpProduct::Genoa, &policy.snp)
}

#[test]
fn release_reference_becomes_a_policy_that_refuses_tdx() {
    let reference = release();
    let policy = Policy::from_reference(&reference).unwrap();
    assert!(!policy.allows_simulated());
    // No TDX section (RTMR0 is not predicted): TDX evidence is refused outright, never checked without RTMR0.
    assert!(reference.tdx.is_none());
    assert!(policy.refused_platforms.contains(&Platform::Tdx));
    assert!(!policy.refused_platforms.contains(&Platform::Snp));
    // Every SNP shape's launch digest is allowed, and nothing else.
    let shapes: Vec<[u8; 48]> = reference
        .shapes
        .iter()
        .filter(|s| s.platform == ShapePlatform::Snp)
        .map(|s| reference.snp_measurement(&s.name).unwrap().0)
        .collect();
    assert!(shapes.len() >= 2);
    let measurements: Vec<[u8; 48]> = policy.snp.shapes.iter().map(|s| s.measurement).collect();
    assert_eq!(measurements, shapes);
    // The release's shapes run at VMPL 0 (no vmpl field), which each shape now carries.
    assert!(policy.snp.shapes.iter().all(|s| s.vmpl == 0));
    assert_eq!(policy.snp.vmpl, None);
    assert_eq!(
        policy.snp.guest_policy,
        Some(reference.snp.as_ref().unwrap().guest_policy)
    );
    assert!(!policy.snp.dangerous_allow_debug);
    // The runtime events pin the vTPM PCR and the simulated RTMR3 replay.
    assert_eq!(reference.runtime.events.len(), 4);
    assert_eq!(
        policy.tpm.pcrs,
        vec![(
            reference.runtime.vtpm_pcr,
            reference.expected_runtime_pcr_sha256().0
        )]
    );
    assert_eq!(policy.runtime_rtmr3, Some(reference.expected_rtmr3().0));
}

#[test]
fn release_policy_accepts_each_shape_and_rejects_each_field_changed() {
    let reference = release();
    let policy = Policy::from_reference(&reference).unwrap();
    for shape in reference.shapes.iter().map(|s| s.name.as_str()) {
        let good = expected(&reference, shape);
        check(&policy, good).unwrap();

        let mut measurement = good;
        measurement.measurement[47] ^= 1;
        assert_eq!(
            check(&policy, measurement),
            Err(SnpError::MeasurementMismatch)
        );
        let mut host_data = good;
        host_data.host_data[0] ^= 1;
        assert_eq!(check(&policy, host_data), Err(SnpError::HostDataMismatch));
        // A policy bit other than DEBUG (SMT, bit 16): an exact match is required.
        let mut guest_policy = good;
        guest_policy.guest_policy ^= 1 << 16;
        assert_eq!(
            check(&policy, guest_policy),
            Err(SnpError::GuestPolicyMismatch)
        );
        // DEBUG set: refused before any value is compared.
        let mut debug = good;
        debug.guest_policy |= 1 << 19;
        assert_eq!(check(&policy, debug), Err(SnpError::Debug));
    }
}

/// Issue 9, item 8: an SNP report at VMPL 1 (a guest under an SVSM) passes only under a reference that names
/// VMPL 1 for its shape, and a VMPL 0 report no longer passes there; the other shape keeps VMPL 0.
#[test]
fn vmpl_1_report_passes_only_where_its_shape_names_vmpl_1() {
    let release = release();
    let shapes: Vec<String> = release
        .snp
        .as_ref()
        .unwrap()
        .shapes
        .iter()
        .map(|v| v.shape.clone())
        .collect();
    let (svsm, plain) = (&shapes[0], &shapes[1]);
    let mut svsm_reference = release.clone();
    svsm_reference.snp.as_mut().unwrap().shapes[0].vmpl = 1;
    svsm_reference.validate().unwrap();
    let at_vmpl1 = Policy::from_reference(&svsm_reference).unwrap();
    let at_vmpl0 = Policy::from_reference(&release).unwrap();

    let check_at = |policy: &Policy, shape: &str, vmpl: u32| {
        let bytes = report_bytes(expected(&release, shape));
        let mut report = SnpReport::parse(&bytes).unwrap();
        report.vmpl = vmpl;
        check_policy(&report, SnpProduct::Genoa, &policy.snp)
    };
    assert_eq!(check_at(&at_vmpl1, svsm, 1), Ok(()));
    assert_eq!(
        check_at(&at_vmpl0, svsm, 1),
        Err(SnpError::VmplMismatch {
            expected: 0,
            found: 1
        })
    );
    assert_eq!(
        check_at(&at_vmpl1, svsm, 0),
        Err(SnpError::VmplMismatch {
            expected: 1,
            found: 0
        })
    );
    assert_eq!(check_at(&at_vmpl1, plain, 0), Ok(()));
    assert_eq!(
        check_at(&at_vmpl1, plain, 1),
        Err(SnpError::VmplMismatch {
            expected: 0,
            found: 1
        })
    );
    // VMPL 2 and 3 are accepted by no shape.
    for vmpl in [2, 3] {
        assert!(check_at(&at_vmpl1, svsm, vmpl).is_err());
    }
}
