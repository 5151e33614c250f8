//! NVIDIA RIMs from the evidence set: XML-DSig, signer chain, golden values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use dait_testdata::read;

use dait_verifier::UnixTime;
use dait_verifier::nvidia::NvidiaRoots;
use dait_verifier::rim::{self, RimError};
use dait_verifier::x509::{TrustAnchor, X509Error};

const DRIVER_RIM: &str = "nvidia/nvtrust__driver_rim_545.00_test_no_gpu.swidtag";
const VBIOS_RIM: &str = "nvidia/nvtrust__vbios_rim_96.00.5E.00.01_test_no_gpu.swidtag";
const VBIOS_RIM_PROD: &str = "nvidia/nvtrust__vbios_rim_96.00.5E.00.01_PROD.swidtag";
/// Inside every RIM signer's validity window (leaf 2023-06-27 .. 2025-06-26): 2024-06-01T00:00:00Z.
const PINNED: UnixTime = UnixTime::from_secs(1_717_200_000);

fn roots() -> NvidiaRoots {
    NvidiaRoots::pinned()
}

#[test]
fn sample_rims_verify_at_pinned_time() {
    for (file, version, active) in [
        (DRIVER_RIM, "545.00", 21),
        (VBIOS_RIM, "96.00.5E.00.01", 12),
        (VBIOS_RIM_PROD, "96.00.5E.00.01", 12),
    ] {
        let v = rim::verify_rim(&read(file), &roots().rim_signing, PINNED)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(v.version(), version, "{file}");
        assert_eq!(v.measurements().len(), 64, "{file}");
        assert_eq!(
            v.measurements().iter().filter(|m| m.active).count(),
            active,
            "{file}"
        );
        assert!(
            v.signer_subject().contains("HCC RIM L4 Signer"),
            "{}",
            v.signer_subject()
        );
    }
}

#[test]
fn rim_root_pin_matches_the_evidence_root_certificate() {
    let pem = read("nvidia/nvidia_rim_root.pem");
    assert_eq!(
        TrustAnchor::from_certificate_pem(&pem).unwrap(),
        roots().rim_signing
    );
    let pem = read("nvidia/nvidia_device_identity_root.pem");
    assert_eq!(
        TrustAnchor::from_certificate_pem(&pem).unwrap(),
        roots().device_identity
    );
}

#[test]
fn expired_rim_signer_is_rejected_today() {
    // 2026-11-22: the L4 signer expired 2025-06-26.
    let now = UnixTime::from_secs(1_795_305_600);
    let err = rim::verify_rim(&read(DRIVER_RIM), &roots().rim_signing, now).unwrap_err();
    assert!(
        matches!(err, RimError::Chain(X509Error::Expired { index: 0 })),
        "{err:?}"
    );
}

#[test]
fn rim_with_wrong_root_is_rejected() {
    let err = rim::verify_rim(&read(DRIVER_RIM), &roots().device_identity, PINNED).unwrap_err();
    assert!(
        matches!(err, RimError::Chain(X509Error::UntrustedRoot)),
        "{err:?}"
    );
}

#[test]
fn changed_golden_value_breaks_the_digest() {
    let text = String::from_utf8(read(DRIVER_RIM)).unwrap();
    // Index 7 is active in the driver RIM; change one nibble of its golden value.
    let needle = "ns2:Hash0=\"0e0ee161";
    assert!(text.contains(needle));
    let changed = text.replacen(needle, "ns2:Hash0=\"1e0ee161", 1);
    let err = rim::verify_rim(changed.as_bytes(), &roots().rim_signing, PINNED).unwrap_err();
    assert!(matches!(err, RimError::DigestMismatch), "{err:?}");
}

#[test]
fn flipped_signature_bit_is_rejected() {
    let text = String::from_utf8(read(DRIVER_RIM)).unwrap();
    let start = text.find("<ds:SignatureValue>").unwrap() + "<ds:SignatureValue>".len();
    let mut bytes = text.into_bytes();
    // Base64 'A'..'Z' etc: switch one character to another valid one.
    bytes[start + 10] = if bytes[start + 10] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let err = rim::verify_rim(&bytes, &roots().rim_signing, PINNED).unwrap_err();
    assert!(matches!(err, RimError::SignatureMismatch), "{err:?}");
}

#[test]
fn changed_signed_info_is_rejected() {
    let text = String::from_utf8(read(DRIVER_RIM)).unwrap();
    // Re-formatting the digest value (whitespace inside base64) keeps the digest but changes SignedInfo bytes.
    let start = text.find("<ds:DigestValue>").unwrap() + "<ds:DigestValue>".len();
    let mut changed = text.clone();
    changed.insert(start + 4, '\n');
    let err = rim::verify_rim(changed.as_bytes(), &roots().rim_signing, PINNED).unwrap_err();
    assert!(matches!(err, RimError::SignatureMismatch), "{err:?}");
}

#[test]
fn truncated_rim_is_rejected() {
    let bytes = read(DRIVER_RIM);
    for cut in [0, 1, 100, bytes.len() / 2, bytes.len() - 30] {
        let err = rim::verify_rim(&bytes[..cut], &roots().rim_signing, PINNED).unwrap_err();
        assert!(matches!(err, RimError::Xml(_)), "cut {cut}: {err:?}");
    }
}
