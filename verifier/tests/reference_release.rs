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
    assert_eq!(policy.snp.measurements, shapes);
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
