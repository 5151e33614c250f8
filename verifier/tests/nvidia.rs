//! NVIDIA H100 SPDM evidence from the evidence set: outcomes the source repositories assert, and negatives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use dait_testdata::read;

use dait_verifier::UnixTime;
use dait_verifier::nvidia::{
    self, GpuEvidenceInput, GpuPolicy, IndexOutcome, NvidiaError, NvidiaRoots, spdm,
};
use dait_verifier::rim::{self, RimError};
use dait_verifier::wire::ParseError;
use dait_verifier::x509::{self, X509Error};

fn read_hex(rel: &str) -> Vec<u8> {
    hex::decode(String::from_utf8(read(rel)).unwrap().trim()).unwrap()
}

fn nonce(h: &str) -> [u8; 32] {
    hex::decode(h).unwrap().try_into().unwrap()
}

const R2025: &str = "nvidia/nvtrust__h100_2025_report.hex";
const C2025: &str = "nvidia/nvtrust__h100_2025_cert_chain.pem";
const R2023: &str = "nvidia/nvtrust__h100_2023_report.hex";
const C2023: &str = "nvidia/nvtrust__h100_2023_cert_chain.pem";
const DRIVER_RIM: &str = "nvidia/nvtrust__driver_rim_545.00_test_no_gpu.swidtag";
const VBIOS_RIM: &str = "nvidia/nvtrust__vbios_rim_96.00.5E.00.01_test_no_gpu.swidtag";
/// trustee test expected_report_data / nvtrust sample nonce for the 2025 report.
const NONCE_2025: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
/// nvtrust BaseSettings.NONCE at commit 08a5068, for the 2023 report.
const NONCE_2023: &str = "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e";
/// Inside the RIM signers' validity (they expired 2025-06-26): 2024-06-01T00:00:00Z.
const PINNED: UnixTime = UnixTime::from_secs(1_717_200_000);

fn roots() -> NvidiaRoots {
    NvidiaRoots::pinned()
}

/// No OCSP response exists in the evidence set, and the 2025 report has no matching RIMs.
fn no_ocsp() -> GpuPolicy {
    GpuPolicy {
        require_ocsp: false,
        ..GpuPolicy::default()
    }
}

fn no_ocsp_no_rim() -> GpuPolicy {
    GpuPolicy {
        require_ocsp: false,
        require_rim_match: false,
        ..GpuPolicy::default()
    }
}

struct Sample {
    spdm: Vec<u8>,
    chain: Vec<u8>,
    driver: Vec<u8>,
    vbios: Vec<u8>,
}

impl Sample {
    fn y2023() -> Self {
        Self {
            spdm: read_hex(R2023),
            chain: read(C2023),
            driver: read(DRIVER_RIM),
            vbios: read(VBIOS_RIM),
        }
    }
    fn y2025() -> Self {
        Self {
            spdm: read_hex(R2025),
            chain: read(C2025),
            driver: read(DRIVER_RIM),
            vbios: read(VBIOS_RIM),
        }
    }
    fn input(&self) -> GpuEvidenceInput<'_> {
        GpuEvidenceInput {
            spdm: &self.spdm,
            cert_chain_pem: &self.chain,
            driver_rim: Some(&self.driver),
            vbios_rim: Some(&self.vbios),
            ocsp_responses: &[],
        }
    }
    fn input_without_rims(&self) -> GpuEvidenceInput<'_> {
        GpuEvidenceInput {
            driver_rim: None,
            vbios_rim: None,
            ..self.input()
        }
    }
}

// nvidia-A2: nvtrust --test_no_gpu at 08a5068 succeeds with these RIMs; every active golden value matches.
#[test]
fn a2_2023_report_matches_its_rims() {
    let s = Sample::y2023();
    let v =
        nvidia::verify_gpu(&s.input(), &nonce(NONCE_2023), &no_ocsp(), &roots(), PINNED).unwrap();
    assert_eq!(v.driver_version(), Some("545.00"));
    assert_eq!(v.vbios_version(), Some("96.00.5E.00.01"));
    assert_eq!(v.measurements().len(), 64);
    assert!(
        v.fwid().is_none(),
        "the 2023 report's opaque data has no FWID"
    );
    let c = v.comparison().unwrap();
    assert_eq!(c.indices(IndexOutcome::Match).len(), 33);
    assert!(c.indices(IndexOutcome::Mismatch).is_empty());
    assert!(c.indices(IndexOutcome::MissingFromReport).is_empty());
    // Driver RIM active 0-based indices 7, 21..=40; VBIOS 0..=6, 8..=12 → SPDM indices + 1.
    let mut expected: Vec<u16> = (1..=7).chain(9..=13).chain([8]).chain(22..=41).collect();
    expected.sort_unstable();
    assert_eq!(c.indices(IndexOutcome::Match), expected);
}

// nvidia-A1: trustee's claims for the 2025 report (measurements, versions, FWID) and its chain to the root.
#[test]
fn a1_2025_report_verifies_and_matches_trustee_claims() {
    let s = Sample::y2025();
    let v = nvidia::verify_gpu(
        &s.input_without_rims(),
        &nonce(NONCE_2025),
        &no_ocsp_no_rim(),
        &roots(),
        PINNED,
    )
    .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&read(
        "nvidia/trustee__expected_claims_for_nvtrust_h100_2025_report.json",
    ))
    .unwrap();
    let cfg = &claims["config"];
    assert_eq!(v.driver_version(), cfg["driver_version"].as_str());
    assert!(
        v.vbios_version()
            .unwrap()
            .eq_ignore_ascii_case(cfg["vbios_version"].as_str().unwrap())
    );
    assert_eq!(
        hex::encode(v.fwid().unwrap()),
        cfg["fwid"].as_str().unwrap()
    );
    assert!(v.fwid_checked());
    let m = claims["measurements"].as_object().unwrap();
    assert_eq!(m.len(), 64);
    for (index, value) in v.measurements() {
        assert_eq!(
            hex::encode(value),
            m[&index.to_string()].as_str().unwrap(),
            "block {index}"
        );
    }
    // Today (2026-11-22) the device chain is still valid (to 9999).
    let today = UnixTime::from_secs(1_795_305_600);
    nvidia::verify_gpu(
        &s.input_without_rims(),
        &nonce(NONCE_2025),
        &no_ocsp_no_rim(),
        &roots(),
        today,
    )
    .unwrap();
}

// nvidia-A1: the 2023 test RIMs do not match the 2025 report (collector check: 0-based RIM indices below).
#[test]
fn a1_2025_report_does_not_match_the_2023_rims() {
    let s = Sample::y2025();
    let err = nvidia::verify_gpu(&s.input(), &nonce(NONCE_2025), &no_ocsp(), &roots(), PINNED)
        .unwrap_err();
    assert!(
        matches!(err, NvidiaError::RimVersionMismatch { which: "driver" }),
        "{err:?}"
    );

    let ev = spdm::parse(&s.spdm).unwrap();
    let d = rim::parse_rim(&s.driver).unwrap();
    let b = rim::parse_rim(&s.vbios).unwrap();
    let c = nvidia::compare_measurements(&ev.response.blocks, &[&d.measurements, &b.measurements])
        .unwrap();
    let rim_indices: Vec<u16> = c
        .indices(IndexOutcome::Mismatch)
        .iter()
        .map(|i| i - 1)
        .collect();
    assert_eq!(
        rim_indices,
        [
            1, 2, 3, 7, 9, 11, 21, 22, 25, 26, 27, 29, 30, 31, 32, 34, 36, 37, 39, 40
        ]
    );
}

#[test]
fn wrong_nonce_is_rejected() {
    let s = Sample::y2023();
    let err = nvidia::verify_gpu(&s.input(), &nonce(NONCE_2025), &no_ocsp(), &roots(), PINNED)
        .unwrap_err();
    assert!(matches!(err, NvidiaError::NonceMismatch), "{err:?}");
}

#[test]
fn flipped_request_nonce_bit_is_a_nonce_mismatch() {
    let mut s = Sample::y2023();
    s.spdm[4] ^= 1;
    let err = nvidia::verify_gpu(&s.input(), &nonce(NONCE_2023), &no_ocsp(), &roots(), PINNED)
        .unwrap_err();
    assert!(matches!(err, NvidiaError::NonceMismatch), "{err:?}");
}

#[test]
fn flipped_bits_in_signed_fields_break_the_signature() {
    let base = Sample::y2023();
    let ev = spdm::parse(&base.spdm).unwrap();
    let sig_at = ev.signed.len();
    let opaque_at = sig_at - ev.response.opaque.len();
    // A measurement value byte (block 2's digest), the response nonce, an opaque byte, the signature.
    let first_block_value = spdm::REQUEST_LEN + 8 + 7;
    let block2_value = first_block_value + 55;
    let response_nonce = spdm::REQUEST_LEN + 8 + 64 * 55;
    for pos in [
        block2_value,
        response_nonce,
        opaque_at + 5,
        sig_at + 3,
        sig_at + 95,
    ] {
        let mut s = Sample::y2023();
        s.spdm[pos] ^= 0x10;
        let err = nvidia::verify_gpu(&s.input(), &nonce(NONCE_2023), &no_ocsp(), &roots(), PINNED)
            .unwrap_err();
        assert!(
            matches!(err, NvidiaError::SignatureMismatch),
            "byte {pos}: {err:?}"
        );
    }
}

#[test]
fn truncation_at_every_field_boundary_is_a_parse_error() {
    let s = Sample::y2025();
    let bounds = spdm::field_boundaries(&s.spdm).unwrap();
    assert_eq!(*bounds.last().unwrap(), s.spdm.len());
    assert!(bounds.len() > 64 * 6);
    for cut in bounds
        .iter()
        .copied()
        .filter(|c| *c < s.spdm.len())
        .chain([0])
    {
        let t = Sample {
            spdm: s.spdm[..cut].to_vec(),
            ..Sample::y2025()
        };
        let err = nvidia::verify_gpu(
            &t.input(),
            &nonce(NONCE_2025),
            &no_ocsp_no_rim(),
            &roots(),
            PINNED,
        )
        .unwrap_err();
        assert!(
            matches!(err, NvidiaError::Parse(ParseError::Truncated { .. })),
            "cut {cut}: {err:?}"
        );
    }
    // And every other length too: never a panic, always a parse error.
    for cut in 0..s.spdm.len() {
        assert!(spdm::parse(&s.spdm[..cut]).is_err(), "cut {cut}");
    }
}

/// Real H100 evidence can end in zero bytes after the signature (issue 9, item 8; trustee's
/// `hopper_coco_report1` capture has one): they verify, are counted, and change nothing else.
#[test]
fn appended_zero_bytes_are_counted_as_padding() {
    let exact = Sample::y2023();
    let want = nvidia::verify_gpu(
        &exact.input(),
        &nonce(NONCE_2023),
        &no_ocsp(),
        &roots(),
        PINNED,
    )
    .unwrap();
    assert_eq!(want.padding(), 0);
    for n in [1, 3, 64, spdm::MAX_PADDING] {
        let mut s = Sample::y2023();
        s.spdm.resize(s.spdm.len() + n, 0);
        let v = nvidia::verify_gpu(&s.input(), &nonce(NONCE_2023), &no_ocsp(), &roots(), PINNED)
            .unwrap_or_else(|e| panic!("+{n} zero bytes: {e:?}"));
        assert_eq!(v.padding(), n);
        assert_eq!(v.measurements(), want.measurements());
        assert_eq!(v.comparison(), want.comparison());
        assert_eq!(
            spdm::parse(&s.spdm).unwrap().signed,
            spdm::parse(&exact.spdm).unwrap().signed
        );
    }
    let mut s = Sample::y2025();
    s.spdm.push(0);
    let v = nvidia::verify_gpu(
        &s.input_without_rims(),
        &nonce(NONCE_2025),
        &no_ocsp_no_rim(),
        &roots(),
        PINNED,
    )
    .unwrap();
    assert_eq!(v.padding(), 1);
}

#[test]
fn appended_non_zero_byte_is_rejected() {
    for tail in [&[1u8][..], &[0x80], &[0, 0, 0, 7], &[0xff, 0]] {
        let mut s = Sample::y2025();
        let end = s.spdm.len();
        s.spdm.extend_from_slice(tail);
        let err = nvidia::verify_gpu(
            &s.input_without_rims(),
            &nonce(NONCE_2025),
            &no_ocsp_no_rim(),
            &roots(),
            PINNED,
        )
        .unwrap_err();
        let first = tail.iter().position(|b| *b != 0).unwrap();
        assert_eq!(
            err,
            NvidiaError::Parse(ParseError::NonZeroPadding {
                structure: "spdm.measurements_response",
                offset: end + first,
            }),
            "{tail:?}"
        );
    }
}

#[test]
fn padding_over_the_cap_is_rejected() {
    let mut s = Sample::y2025();
    s.spdm.resize(s.spdm.len() + spdm::MAX_PADDING + 1, 0);
    let err = nvidia::verify_gpu(
        &s.input_without_rims(),
        &nonce(NONCE_2025),
        &no_ocsp_no_rim(),
        &roots(),
        PINNED,
    )
    .unwrap_err();
    assert_eq!(
        err,
        NvidiaError::Parse(ParseError::TooLong {
            field: "spdm.padding",
            len: spdm::MAX_PADDING + 1,
            max: spdm::MAX_PADDING,
        })
    );
}

#[test]
fn chain_before_its_validity_is_rejected() {
    // 2020-01-01: before every certificate's notBefore (2020-10-17 and later).
    let s = Sample::y2025();
    let err = nvidia::verify_gpu(
        &s.input(),
        &nonce(NONCE_2025),
        &no_ocsp_no_rim(),
        &roots(),
        UnixTime::from_secs(1_577_836_800),
    )
    .unwrap_err();
    assert!(
        matches!(err, NvidiaError::Chain(X509Error::Expired { .. })),
        "{err:?}"
    );
}

#[test]
fn expired_rims_are_rejected_today() {
    let s = Sample::y2023();
    let today = UnixTime::from_secs(1_795_305_600);
    let err = nvidia::verify_gpu(&s.input(), &nonce(NONCE_2023), &no_ocsp(), &roots(), today)
        .unwrap_err();
    assert!(
        matches!(
            err,
            NvidiaError::Rim {
                which: "driver",
                source: RimError::Chain(X509Error::Expired { index: 0 })
            }
        ),
        "{err:?}"
    );
}

#[test]
fn wrong_device_root_is_rejected() {
    let s = Sample::y2023();
    let wrong = NvidiaRoots {
        device_identity: roots().rim_signing,
        ..roots()
    };
    let err =
        nvidia::verify_gpu(&s.input(), &nonce(NONCE_2023), &no_ocsp(), &wrong, PINNED).unwrap_err();
    assert!(
        matches!(err, NvidiaError::Chain(X509Error::UntrustedRoot)),
        "{err:?}"
    );
}

#[test]
fn other_gpus_chain_does_not_verify_the_report() {
    let mut s = Sample::y2023();
    s.chain = read(C2025);
    let err = nvidia::verify_gpu(&s.input(), &nonce(NONCE_2023), &no_ocsp(), &roots(), PINNED)
        .unwrap_err();
    assert!(matches!(err, NvidiaError::SignatureMismatch), "{err:?}");
}

#[test]
fn chain_with_a_certificate_removed_is_rejected() {
    let s = Sample::y2025();
    let ders = x509::pem_to_der(&s.chain).unwrap();
    assert_eq!(ders.len(), 5);
    let mut pem = String::new();
    for (i, d) in ders.iter().enumerate() {
        if i == 2 {
            continue;
        }
        use base64::Engine as _;
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        pem.push_str(&base64::engine::general_purpose::STANDARD.encode(d));
        pem.push_str("\n-----END CERTIFICATE-----\n");
    }
    let t = Sample {
        chain: pem.into_bytes(),
        ..Sample::y2025()
    };
    let err = nvidia::verify_gpu(
        &t.input(),
        &nonce(NONCE_2025),
        &no_ocsp_no_rim(),
        &roots(),
        PINNED,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            NvidiaError::Chain(X509Error::IssuerMismatch { index: 1 })
        ),
        "{err:?}"
    );
}

#[test]
fn fwid_of_another_gpu_is_rejected() {
    let leaf_2023 = x509::parse_pem_chain(&read(C2023)).unwrap().remove(0);
    let leaf_2025 = x509::parse_pem_chain(&read(C2025)).unwrap().remove(0);
    let fwid_2025 = hex::decode(
        "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d",
    )
    .unwrap();
    nvidia::check_fwid(&leaf_2025, &fwid_2025).unwrap();
    assert!(matches!(
        nvidia::check_fwid(&leaf_2023, &fwid_2025),
        Err(NvidiaError::FwidMismatch)
    ));
    let root = x509::parse_pem_chain(&read(C2023)).unwrap().pop().unwrap();
    assert!(matches!(
        nvidia::check_fwid(&root, &fwid_2025),
        Err(NvidiaError::FwidMissing)
    ));
}

#[test]
fn changed_golden_value_is_a_measurement_mismatch() {
    let s = Sample::y2023();
    let ev = spdm::parse(&s.spdm).unwrap();
    let mut d = rim::parse_rim(&s.driver).unwrap();
    let b = rim::parse_rim(&s.vbios).unwrap();
    let c = nvidia::compare_measurements(&ev.response.blocks, &[&d.measurements, &b.measurements])
        .unwrap();
    assert!(c.indices(IndexOutcome::Mismatch).is_empty());
    d.measurements[7].alternatives[0][0] ^= 1;
    let c = nvidia::compare_measurements(&ev.response.blocks, &[&d.measurements, &b.measurements])
        .unwrap();
    assert_eq!(c.indices(IndexOutcome::Mismatch), [8]);
    // The signed RIM cannot be changed that way: its digest breaks (see nvidia_rim.rs); through verify_gpu a
    // changed document is a RIM error.
    let changed = String::from_utf8(s.driver.clone()).unwrap().replacen(
        "ns2:Hash0=\"0e0ee161",
        "ns2:Hash0=\"1e0ee161",
        1,
    );
    let t = Sample {
        driver: changed.into_bytes(),
        ..Sample::y2023()
    };
    let err = nvidia::verify_gpu(&t.input(), &nonce(NONCE_2023), &no_ocsp(), &roots(), PINNED)
        .unwrap_err();
    assert!(
        matches!(
            err,
            NvidiaError::Rim {
                which: "driver",
                source: RimError::DigestMismatch
            }
        ),
        "{err:?}"
    );
}

#[test]
fn rim_index_defined_twice_is_a_conflict() {
    let s = Sample::y2023();
    let ev = spdm::parse(&s.spdm).unwrap();
    let d = rim::parse_rim(&s.driver).unwrap();
    let err =
        nvidia::compare_measurements(&ev.response.blocks, &[&d.measurements, &d.measurements])
            .unwrap_err();
    assert!(
        matches!(err, NvidiaError::RimConflict { rim_index: 7 }),
        "{err:?}"
    );
}

#[test]
fn missing_rims_fail_when_required() {
    let s = Sample::y2023();
    let err = nvidia::verify_gpu(
        &s.input_without_rims(),
        &nonce(NONCE_2023),
        &no_ocsp(),
        &roots(),
        PINNED,
    )
    .unwrap_err();
    assert!(
        matches!(err, NvidiaError::RimMissing { which: "driver" }),
        "{err:?}"
    );
}

#[test]
fn default_policy_requires_ocsp() {
    let s = Sample::y2023();
    let err = nvidia::verify_gpu(
        &s.input(),
        &nonce(NONCE_2023),
        &GpuPolicy::default(),
        &roots(),
        PINNED,
    )
    .unwrap_err();
    assert!(
        matches!(err, NvidiaError::OcspMissing { index: 0 }),
        "{err:?}"
    );
}

#[test]
fn vbios_rim_in_the_driver_slot_is_a_version_mismatch() {
    let s = Sample::y2023();
    let t = Sample {
        driver: s.vbios.clone(),
        ..Sample::y2023()
    };
    let err = nvidia::verify_gpu(&t.input(), &nonce(NONCE_2023), &no_ocsp(), &roots(), PINNED)
        .unwrap_err();
    assert!(
        matches!(err, NvidiaError::RimVersionMismatch { which: "driver" }),
        "{err:?}"
    );
}

#[test]
fn several_gpus_each_against_their_own_nonce() {
    let a = Sample::y2023();
    let b = Sample::y2025();
    let inputs = [a.input_without_rims(), b.input_without_rims()];
    let v = nvidia::verify_gpus(
        &inputs,
        &[nonce(NONCE_2023), nonce(NONCE_2025)],
        &no_ocsp_no_rim(),
        &roots(),
        PINNED,
    )
    .unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].nonce(), &nonce(NONCE_2025));
    let err = nvidia::verify_gpus(
        &inputs,
        &[nonce(NONCE_2023), nonce(NONCE_2023)],
        &no_ocsp_no_rim(),
        &roots(),
        PINNED,
    )
    .unwrap_err();
    assert_eq!(err.index, 1);
    assert!(matches!(err.source, NvidiaError::NonceMismatch));
    let err = nvidia::verify_gpus(
        &inputs,
        &[nonce(NONCE_2023)],
        &no_ocsp_no_rim(),
        &roots(),
        PINNED,
    )
    .unwrap_err();
    assert!(matches!(
        err.source,
        NvidiaError::NonceCountMismatch { gpus: 2, nonces: 1 }
    ));
}

#[test]
fn parsed_fields_match_the_collector_notes() {
    let s = Sample::y2025();
    let ev = spdm::parse(&s.spdm).unwrap();
    assert_eq!(s.spdm.len(), 4117);
    assert_eq!(ev.request.operation, 0xff);
    assert_eq!(ev.request.slot_id, 0);
    assert_eq!(ev.response.blocks.len(), 64);
    assert_eq!(ev.response.opaque.len(), 422);
    let nonzero: Vec<u8> = ev
        .response
        .blocks
        .iter()
        .filter(|b| b.value.iter().any(|x| *x != 0))
        .map(|b| b.index)
        .collect();
    assert_eq!(
        nonzero,
        [
            2, 3, 4, 5, 6, 7, 8, 10, 12, 22, 23, 26, 27, 28, 30, 31, 32, 33, 34, 35, 36, 37, 38,
            39, 40, 41
        ]
    );
    let o = nvidia::opaque::parse(ev.response.opaque).unwrap();
    assert_eq!(o.project().as_deref(), Some("1010"));
    assert_eq!(o.project_sku().as_deref(), Some("0200"));
    assert_eq!(o.chip_sku().as_deref(), Some("882"));
    assert_eq!(
        o.get(nvidia::opaque::TYPE_BOARD_ID),
        Some(&[0xb1, 0x03, 0, 0][..])
    );
    assert_eq!(o.get(nvidia::opaque::TYPE_NVDEC0_STATUS), Some(&[0x55][..]));
}

#[test]
fn shared_work_across_gpus_does_not_hide_a_bad_gpu() {
    let good = Sample::y2023();
    let mut flipped = Sample::y2023();
    let last = flipped.spdm.len() - 1;
    flipped.spdm[last] ^= 1;
    let changed_rim = Sample {
        driver: String::from_utf8(good.driver.clone())
            .unwrap()
            .replacen("ns2:Hash0=\"0e0ee161", "ns2:Hash0=\"1e0ee161", 1)
            .into_bytes(),
        ..Sample::y2023()
    };
    let n = nonce(NONCE_2023);
    let ok = nvidia::verify_gpus(
        &[good.input(), good.input(), good.input()],
        &[n, n, n],
        &no_ocsp(),
        &roots(),
        PINNED,
    )
    .unwrap();
    assert_eq!(ok.len(), 3);
    let err = nvidia::verify_gpus(
        &[good.input(), flipped.input()],
        &[n, n],
        &no_ocsp(),
        &roots(),
        PINNED,
    )
    .unwrap_err();
    assert_eq!(err.index, 1);
    assert!(
        matches!(err.source, NvidiaError::SignatureMismatch),
        "{err:?}"
    );
    let err = nvidia::verify_gpus(
        &[good.input(), changed_rim.input()],
        &[n, n],
        &no_ocsp(),
        &roots(),
        PINNED,
    )
    .unwrap_err();
    assert_eq!(err.index, 1);
    assert!(
        matches!(
            err.source,
            NvidiaError::Rim {
                which: "driver",
                source: RimError::DigestMismatch
            }
        ),
        "{err:?}"
    );
    // A later GPU verified at a time its RIMs are expired is judged on its own: a fresh call.
    let today = UnixTime::from_secs(1_795_305_600);
    let err = nvidia::verify_gpus(&[good.input()], &[n], &no_ocsp(), &roots(), today).unwrap_err();
    assert!(matches!(err.source, NvidiaError::Rim { .. }), "{err:?}");
}

#[test]
fn der_chain_is_accepted_like_pem() {
    let s = Sample::y2025();
    let der: Vec<u8> = x509::pem_to_der(&s.chain).unwrap().concat();
    let t = Sample {
        chain: der.clone(),
        ..Sample::y2025()
    };
    nvidia::verify_gpu(
        &t.input_without_rims(),
        &nonce(NONCE_2025),
        &no_ocsp_no_rim(),
        &roots(),
        PINNED,
    )
    .unwrap();
    let mut cut = der;
    cut.truncate(cut.len() - 1);
    let t = Sample {
        chain: cut,
        ..Sample::y2025()
    };
    let err = nvidia::verify_gpu(
        &t.input_without_rims(),
        &nonce(NONCE_2025),
        &no_ocsp_no_rim(),
        &roots(),
        PINNED,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            NvidiaError::Chain(X509Error::BadCertificate { index: 4 })
        ),
        "{err:?}"
    );
}

/// Every NVIDIA and vTPM sample of the manifest is covered by a test here or in tpm.rs, and the files those
/// tests read are the ones the manifest pins (same SHA-256). A new sample makes this fail until it is covered.
#[test]
fn manifest_samples_of_these_kinds_are_covered() {
    use sha2::Digest as _;
    let covered = [
        (
            "nvidia-A1-nvtrust-h100-2025",
            "a1_2025_report_verifies_and_matches_trustee_claims",
        ),
        (
            "nvidia-A2-nvtrust-h100-2023-with-rims",
            "a2_2023_report_matches_its_rims",
        ),
        (
            "vtpm-A1-kinvolk-azure",
            "tpm.rs: sample_quote_verifies_with_its_nonce_and_pcrs",
        ),
    ];
    let manifest: serde_json::Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    let pinned: std::collections::HashMap<&str, &str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["sha256"].as_str().unwrap()))
        .collect();
    let mut seen = 0;
    for s in manifest["samples"].as_array().unwrap() {
        let kind = s["kind"].as_str().unwrap();
        if kind != "nvidia" && kind != "vtpm" {
            continue;
        }
        let id = s["id"].as_str().unwrap();
        assert!(
            covered.iter().any(|(c, _)| *c == id),
            "manifest sample {id} has no test"
        );
        seen += 1;
        for (_, path) in s["files"].as_object().unwrap() {
            let Some(path) = path.as_str().filter(|p| pinned.contains_key(p)) else {
                continue;
            };
            let digest = hex::encode(sha2::Sha256::digest(read(path)));
            assert_eq!(digest, pinned[path], "{path} differs from the manifest");
        }
    }
    assert_eq!(seen, covered.len());
}
