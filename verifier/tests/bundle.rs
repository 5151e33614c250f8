//! Whole-bundle verification around real evidence. A real quote's REPORTDATA cannot bind a keyset made
//! here, so each real bundle must pass every signature, chain, collateral and policy check and then fail
//! exactly at the keyset binding; policies from a reference file matching the real samples accept
//! their values up to that point and reject each changed field by name.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use dait_testdata::read;
use std::path::PathBuf;

use dait_chain_client::Freshness;
use dait_chain_client::proto::{self, cpu_evidence::Evidence};
use dait_measure::ReferenceMeasurements;
use dait_measure::reference::RuntimeEvent;
use dait_verifier::UnixTime;
use dait_verifier::bundle::fixture::Fixture;
use dait_verifier::bundle::{Policy, ReferenceError, VerifyError, verify_bundle_with_collateral};
use dait_verifier::collateral::TdxCollateral;
use dait_verifier::snp::SnpError;
use dait_verifier::tdx::{TdxError, TdxRegister, decode_quote_file};

/// dcap-qvl's v4 sample, UpToDate at min(nextUpdate) - 1 s.
const TDX_NOW: u64 = 1_752_919_234;
/// Inside every certificate's window of the dstack Milan sample.
const SNP_NOW: u64 = 1_793_491_200; // 2026-11-01T00:00:00Z

fn reference() -> ReferenceMeasurements {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/real-samples.json");
    let r = ReferenceMeasurements::load(&path).unwrap();
    r.validate().unwrap();
    r
}

/// The fixture's keyset and freshness around real CPU evidence, with no event log.
fn bundle(
    cpu: Evidence,
    collateral: Option<proto::Collateral>,
    created_at: u64,
) -> (Vec<u8>, Freshness) {
    let mut f = Fixture::new();
    f.keyset.created_at = created_at;
    f.event_log.clear();
    (f.encode_with_cpu(cpu, collateral), f.freshness)
}

fn tdx_collateral() -> proto::Collateral {
    TdxCollateral::from_bundle_json(&read("tdx/dcap-qvl__v4_b0c06f_collateral.json"))
        .unwrap()
        .to_proto()
}

fn tdx_bundle() -> (Vec<u8>, Freshness) {
    let quote = decode_quote_file(&read("tdx/dcap-qvl__v4_b0c06f_quote.bin"));
    bundle(
        Evidence::TdxQuote(quote),
        Some(tdx_collateral()),
        TDX_NOW - 60,
    )
}

fn verify_tdx(policy: &Policy) -> Result<dait_verifier::bundle::VerifiedBundle, VerifyError> {
    let (bytes, freshness) = tdx_bundle();
    verify_bundle_with_collateral(
        &bytes,
        policy,
        None,
        &freshness,
        UnixTime::from_secs(TDX_NOW),
    )
}

fn snp_bundle(chain_in_collateral: bool) -> (Vec<u8>, Freshness) {
    let vek = read("snp/dstack__milan_vcek.pem");
    let ask = read("snp/dstack__milan_ask.pem");
    let ark = read("snp/amd_milan_ark.pem");
    let (cert_chain, collateral) = if chain_in_collateral {
        let c = proto::Collateral {
            amd_chain: vec![ark, ask],
            ..Default::default()
        };
        (vec![vek], Some(c))
    } else {
        (vec![vek, ask, ark], None)
    };
    let report = read("snp/dstack__milan_v3_report.bin");
    bundle(
        Evidence::Snp(proto::SnpEvidence { report, cert_chain }),
        collateral,
        SNP_NOW - 60,
    )
}

fn verify_snp(policy: &Policy) -> Result<dait_verifier::bundle::VerifiedBundle, VerifyError> {
    let (bytes, freshness) = snp_bundle(false);
    verify_bundle_with_collateral(
        &bytes,
        policy,
        None,
        &freshness,
        UnixTime::from_secs(SNP_NOW),
    )
}

// ---- every crypto check passes, then the keyset binding fails ----------------------------------------

#[test]
fn real_tdx_bundle_fails_only_at_the_keyset_binding() {
    assert!(matches!(
        verify_tdx(&Policy::new()),
        Err(VerifyError::KeysetBinding)
    ));
}

#[test]
fn real_tdx_bundle_with_collateral_given_fails_only_at_the_keyset_binding() {
    let quote = decode_quote_file(&read("tdx/dcap-qvl__v4_b0c06f_quote.bin"));
    let (bytes, freshness) = bundle(Evidence::TdxQuote(quote), None, TDX_NOW - 60);
    let given = tdx_collateral();
    let r = verify_bundle_with_collateral(
        &bytes,
        &Policy::new(),
        Some(&given),
        &freshness,
        UnixTime::from_secs(TDX_NOW),
    );
    assert!(matches!(r, Err(VerifyError::KeysetBinding)));
}

#[test]
fn real_tdx_bundle_after_collateral_expiry_fails_on_collateral() {
    let (bytes, freshness) = tdx_bundle();
    let later = UnixTime::from_secs(TDX_NOW + 365 * 86_400);
    let r = verify_bundle_with_collateral(&bytes, &Policy::new(), None, &freshness, later);
    assert!(
        matches!(r, Err(VerifyError::Tdx(TdxError::CollateralExpired(_)))),
        "{r:?}"
    );
}

#[test]
fn real_tdx_bundle_with_flipped_signature_fails_on_signature() {
    let mut quote = decode_quote_file(&read("tdx/dcap-qvl__v4_b0c06f_quote.bin"));
    // First byte of the ECDSA quote signature (after the 4-byte signature-data length).
    quote[48 + 584 + 4] ^= 1;
    let (bytes, freshness) = bundle(
        Evidence::TdxQuote(quote),
        Some(tdx_collateral()),
        TDX_NOW - 60,
    );
    let r = verify_bundle_with_collateral(
        &bytes,
        &Policy::new(),
        None,
        &freshness,
        UnixTime::from_secs(TDX_NOW),
    );
    assert!(
        matches!(r, Err(VerifyError::Tdx(TdxError::Signature(_)))),
        "{r:?}"
    );
}

#[test]
fn real_snp_bundle_fails_only_at_the_keyset_binding() {
    assert!(matches!(
        verify_snp(&Policy::new()),
        Err(VerifyError::KeysetBinding)
    ));
}

#[test]
fn real_snp_bundle_with_chain_in_collateral_fails_only_at_the_keyset_binding() {
    let (bytes, freshness) = snp_bundle(true);
    let r = verify_bundle_with_collateral(
        &bytes,
        &Policy::new(),
        None,
        &freshness,
        UnixTime::from_secs(SNP_NOW),
    );
    assert!(matches!(r, Err(VerifyError::KeysetBinding)));
}

/// An AMD CRL in the collateral is checked: one not signed by the ARK (a real CRL, Intel's root CA CRL) and
/// bytes that are no CRL each fail with their own error, before the keyset binding.
#[test]
fn real_snp_bundle_with_a_foreign_or_malformed_amd_crl_is_rejected() {
    let vek = read("snp/dstack__milan_vcek.pem");
    let report = read("snp/dstack__milan_v3_report.bin");
    for (crl, expected) in [
        (tdx_collateral().root_ca_crl, SnpError::CrlSignature),
        (b"no CRL".to_vec(), SnpError::CrlMalformed),
    ] {
        let (bytes, freshness) = bundle(
            Evidence::Snp(proto::SnpEvidence {
                report: report.clone(),
                cert_chain: vec![vek.clone()],
            }),
            Some(proto::Collateral {
                amd_crl: crl,
                ..Default::default()
            }),
            SNP_NOW - 60,
        );
        let r = verify_bundle_with_collateral(
            &bytes,
            &Policy::new(),
            None,
            &freshness,
            UnixTime::from_secs(SNP_NOW),
        );
        assert!(
            matches!(&r, Err(VerifyError::Snp(e)) if *e == expected),
            "{r:?}"
        );
    }
}

#[test]
fn real_snp_bundle_with_pinned_amd_roots_fails_only_at_the_keyset_binding() {
    let report = read("snp/dstack__milan_v3_report.bin");
    let vek = read("snp/dstack__milan_vcek.pem");
    let (bytes, freshness) = bundle(
        Evidence::Snp(proto::SnpEvidence {
            report,
            cert_chain: vec![vek],
        }),
        None,
        SNP_NOW - 60,
    );
    let r = verify_bundle_with_collateral(
        &bytes,
        &Policy::new(),
        None,
        &freshness,
        UnixTime::from_secs(SNP_NOW),
    );
    assert!(matches!(r, Err(VerifyError::KeysetBinding)), "{r:?}");
}

#[test]
fn real_snp_bundle_with_flipped_measurement_fails_on_signature() {
    let mut report = read("snp/dstack__milan_v3_report.bin");
    report[0x90] ^= 1;
    let cert_chain = vec![
        read("snp/dstack__milan_vcek.pem"),
        read("snp/dstack__milan_ask.pem"),
        read("snp/amd_milan_ark.pem"),
    ];
    let (bytes, freshness) = bundle(
        Evidence::Snp(proto::SnpEvidence { report, cert_chain }),
        None,
        SNP_NOW - 60,
    );
    let r = verify_bundle_with_collateral(
        &bytes,
        &Policy::new(),
        None,
        &freshness,
        UnixTime::from_secs(SNP_NOW),
    );
    assert!(
        matches!(r, Err(VerifyError::Snp(SnpError::Signature))),
        "{r:?}"
    );
}

// ---- Policy::from_reference: accept the reference's values, reject each field changed ---------------

#[test]
fn reference_policy_accepts_the_real_samples_up_to_the_binding() {
    let policy = Policy::from_reference(&reference()).unwrap();
    assert!(matches!(
        verify_tdx(&policy),
        Err(VerifyError::KeysetBinding)
    ));
    assert!(matches!(
        verify_snp(&policy),
        Err(VerifyError::KeysetBinding)
    ));
}

fn flip48(d: &mut dait_measure::hexbytes::HexBytes<48>) {
    d.0[0] ^= 1;
}

fn tdx_reject(change: impl FnOnce(&mut ReferenceMeasurements)) -> TdxError {
    let mut r = reference();
    change(&mut r);
    match verify_tdx(&Policy::from_reference(&r).unwrap()) {
        Err(VerifyError::Tdx(e)) => e,
        other => panic!("expected a TDX policy error, got {other:?}"),
    }
}

fn tdx(r: &mut ReferenceMeasurements) -> &mut dait_measure::reference::TdxReference {
    r.tdx.as_mut().unwrap()
}

fn snp(r: &mut ReferenceMeasurements) -> &mut dait_measure::reference::SnpReference {
    r.snp.as_mut().unwrap()
}

fn mismatch(register: TdxRegister) -> TdxError {
    TdxError::MeasurementMismatch { register }
}

#[test]
fn reference_policy_rejects_each_tdx_field_changed() {
    assert_eq!(
        tdx_reject(|r| flip48(&mut tdx(r).shapes[0].mrtd)),
        mismatch(TdxRegister::MrTd)
    );
    assert_eq!(
        tdx_reject(|r| flip48(&mut tdx(r).shapes[0].rtmr0)),
        mismatch(TdxRegister::Rtmr(0))
    );
    assert_eq!(
        tdx_reject(|r| flip48(&mut tdx(r).rtmr1)),
        mismatch(TdxRegister::Rtmr(1))
    );
    assert_eq!(
        tdx_reject(|r| flip48(&mut tdx(r).rtmr2)),
        mismatch(TdxRegister::Rtmr(2))
    );
    assert_eq!(
        tdx_reject(|r| flip48(&mut tdx(r).mr_config_id[0])),
        mismatch(TdxRegister::MrConfigId)
    );
    assert_eq!(
        tdx_reject(|r| flip48(&mut tdx(r).mr_owner[0])),
        mismatch(TdxRegister::MrOwner)
    );
    assert_eq!(
        tdx_reject(|r| flip48(&mut tdx(r).mr_owner_config[0])),
        mismatch(TdxRegister::MrOwnerConfig)
    );
    // A runtime event (model weights) the TD did not extend: RTMR3 replay differs.
    assert_eq!(
        tdx_reject(|r| r.runtime.events.push(RuntimeEvent {
            name: "model-weights".into(),
            sha256: dait_measure::hexbytes::HexBytes([0xaa; 32]),
        })),
        mismatch(TdxRegister::Rtmr(3))
    );
    assert!(matches!(
        tdx_reject(|r| tdx(r).td_attributes.0[3] ^= 0x01),
        TdxError::TdAttributes(_)
    ));
    assert_eq!(
        tdx_reject(|r| tdx(r).xfam.as_mut().unwrap().0[0] ^= 0x01),
        TdxError::XfamMismatch
    );
}

#[test]
fn reference_with_a_debug_td_is_refused() {
    let mut r = reference();
    r.tdx.as_mut().unwrap().td_attributes.0[0] |= 0x01;
    assert!(matches!(
        Policy::from_reference(&r),
        Err(ReferenceError::DebugTdAttributes)
    ));
    let mut r = reference();
    r.snp.as_mut().unwrap().guest_policy |= 1 << 19;
    assert!(matches!(
        Policy::from_reference(&r),
        Err(ReferenceError::DebugGuestPolicy)
    ));
}

fn snp_reject(change: impl FnOnce(&mut ReferenceMeasurements)) -> SnpError {
    let mut r = reference();
    change(&mut r);
    match verify_snp(&Policy::from_reference(&r).unwrap()) {
        Err(VerifyError::Snp(e)) => e,
        other => panic!("expected an SNP policy error, got {other:?}"),
    }
}

#[test]
fn reference_policy_rejects_each_snp_field_changed() {
    assert_eq!(
        snp_reject(|r| flip48(&mut snp(r).shapes[0].measurement)),
        SnpError::MeasurementMismatch
    );
    assert_eq!(
        snp_reject(|r| snp(r).host_data[0].0[0] ^= 1),
        SnpError::HostDataMismatch
    );
    assert_eq!(
        snp_reject(|r| snp(r).guest_policy ^= 1 << 16),
        SnpError::GuestPolicyMismatch
    );
}

#[test]
fn reference_without_a_platform_section_refuses_that_platform() {
    let mut r = reference();
    r.snp = None;
    r.shapes
        .retain(|s| s.platform != dait_measure::reference::Platform::Snp);
    let policy = Policy::from_reference(&r).unwrap();
    assert!(matches!(
        verify_snp(&policy),
        Err(VerifyError::PlatformRefused(
            dait_verifier::bundle::Platform::Snp
        ))
    ));
    assert!(matches!(
        verify_tdx(&policy),
        Err(VerifyError::KeysetBinding)
    ));
}
