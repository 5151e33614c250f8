//! OCSP for GPU certificate chains. The evidence set holds no real OCSP response, so these tests build
//! RFC 6960 responses with their own test CA (`rcgen` certificates, DER encoded with `x509-ocsp`, signed
//! with P-384), and check that the real chain rejects a response not signed by its issuer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use dait_testdata::read as evidence;
use std::time::Duration;

use der::asn1::{BitString, GeneralizedTime, OctetString};
use der::{Decode as _, Encode as _};
use p384::ecdsa::signature::Signer as _;
use p384::pkcs8::DecodePrivateKey as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use sha2::{Digest as _, Sha384};
use x509_cert::Certificate;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspResponse, OcspResponseStatus,
    ResponderId, ResponseBytes, ResponseData, RevokedInfo, SingleResponse, Version,
};

use dait_verifier::UnixTime;
use dait_verifier::nvidia::ocsp::{self, OcspError};
use dait_verifier::nvidia::{self, GpuEvidenceInput, GpuPolicy, NvidiaError, NvidiaRoots};
use dait_verifier::x509::{self, X509Error};

const NOW: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

struct Pki {
    ca: Certificate,
    ca_key: p384::ecdsa::SigningKey,
    leaf: Certificate,
    responder: Certificate,
    responder_key: p384::ecdsa::SigningKey,
    other_key: p384::ecdsa::SigningKey,
}

fn signing_key(kp: &KeyPair) -> p384::ecdsa::SigningKey {
    p384::ecdsa::SigningKey::from_pkcs8_der(&kp.serialize_der()).unwrap()
}

fn pki() -> Pki {
    let alg = &rcgen::PKCS_ECDSA_P384_SHA384;
    let ca_kp = KeyPair::generate_for(alg).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Test GPU CA");
    let ca = ca_params.self_signed(&ca_kp).unwrap();

    let leaf_kp = KeyPair::generate_for(alg).unwrap();
    let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "Test GPU leaf");
    leaf_params.serial_number = Some(rcgen::SerialNumber::from(vec![0x11, 0x22, 0x33]));
    let leaf = leaf_params.signed_by(&leaf_kp, &ca, &ca_kp).unwrap();

    let resp_kp = KeyPair::generate_for(alg).unwrap();
    let mut resp_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    resp_params
        .distinguished_name
        .push(DnType::CommonName, "Test OCSP responder");
    resp_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
    let responder = resp_params.signed_by(&resp_kp, &ca, &ca_kp).unwrap();

    let other_kp = KeyPair::generate_for(alg).unwrap();
    Pki {
        ca: Certificate::from_der(ca.der()).unwrap(),
        ca_key: signing_key(&ca_kp),
        leaf: Certificate::from_der(leaf.der()).unwrap(),
        responder: Certificate::from_der(responder.der()).unwrap(),
        responder_key: signing_key(&resp_kp),
        other_key: signing_key(&other_kp),
    }
}

fn gt(secs: u64) -> OcspGeneralizedTime {
    OcspGeneralizedTime(GeneralizedTime::from_unix_duration(Duration::from_secs(secs)).unwrap())
}

fn sha384_alg() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: x509::OID_SHA384,
        parameters: None,
    }
}

struct Build<'a> {
    cert: &'a Certificate,
    issuer: &'a Certificate,
    status: CertStatus,
    this_update: u64,
    next_update: Option<u64>,
    key: &'a p384::ecdsa::SigningKey,
    include: Option<&'a Certificate>,
}

fn build(b: Build<'_>) -> Vec<u8> {
    let issuer_name = b.issuer.tbs_certificate.subject.to_der().unwrap();
    let issuer_key = b
        .issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let cert_id = CertId {
        hash_algorithm: sha384_alg(),
        issuer_name_hash: OctetString::new(Sha384::digest(&issuer_name).to_vec()).unwrap(),
        issuer_key_hash: OctetString::new(Sha384::digest(issuer_key).to_vec()).unwrap(),
        serial_number: b.cert.tbs_certificate.serial_number.clone(),
    };
    let tbs = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByName(b.issuer.tbs_certificate.subject.clone()),
        produced_at: gt(b.this_update),
        responses: vec![SingleResponse {
            cert_id,
            cert_status: b.status,
            this_update: gt(b.this_update),
            next_update: b.next_update.map(gt),
            single_extensions: None,
        }],
        response_extensions: None,
    };
    let sig: p384::ecdsa::DerSignature = b.key.sign(&tbs.to_der().unwrap());
    let basic = BasicOcspResponse {
        tbs_response_data: tbs,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: x509::OID_ECDSA_SHA384,
            parameters: None,
        },
        signature: BitString::from_bytes(sig.as_bytes()).unwrap(),
        certs: b.include.map(|c| vec![c.clone()]),
    };
    OcspResponse {
        response_status: OcspResponseStatus::Successful,
        response_bytes: Some(ResponseBytes {
            response_type: der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1"),
            response: OctetString::new(basic.to_der().unwrap()).unwrap(),
        }),
    }
    .to_der()
    .unwrap()
}

fn good<'a>(p: &'a Pki) -> Build<'a> {
    Build {
        cert: &p.leaf,
        issuer: &p.ca,
        status: CertStatus::good(),
        this_update: NOW - 3600,
        next_update: Some(NOW + 86_400),
        key: &p.ca_key,
        include: None,
    }
}

fn now() -> UnixTime {
    UnixTime::from_secs(NOW)
}

#[test]
fn good_response_signed_by_the_issuer_verifies() {
    let p = pki();
    let r = build(good(&p));
    let g = ocsp::verify(&r, &p.leaf, &p.ca, now()).unwrap();
    assert_eq!(g.next_update, NOW + 86_400);
}

#[test]
fn good_response_from_a_delegated_responder_verifies() {
    let p = pki();
    let r = build(Build {
        key: &p.responder_key,
        include: Some(&p.responder),
        ..good(&p)
    });
    ocsp::verify(&r, &p.leaf, &p.ca, now()).unwrap();
}

#[test]
fn revoked_certificate_is_rejected() {
    let p = pki();
    let status = CertStatus::Revoked(RevokedInfo {
        revocation_time: gt(NOW - 7200),
        revocation_reason: None,
    });
    let r = build(Build { status, ..good(&p) });
    assert!(matches!(
        ocsp::verify(&r, &p.leaf, &p.ca, now()),
        Err(OcspError::Revoked)
    ));
}

#[test]
fn unknown_status_is_rejected() {
    let p = pki();
    let r = build(Build {
        status: CertStatus::unknown(),
        ..good(&p)
    });
    assert!(matches!(
        ocsp::verify(&r, &p.leaf, &p.ca, now()),
        Err(OcspError::Unknown)
    ));
}

#[test]
fn stale_and_future_responses_are_rejected() {
    let p = pki();
    let r = build(good(&p));
    assert!(matches!(
        ocsp::verify(&r, &p.leaf, &p.ca, UnixTime::from_secs(NOW + 86_401)),
        Err(OcspError::Stale)
    ));
    assert!(matches!(
        ocsp::verify(&r, &p.leaf, &p.ca, UnixTime::from_secs(NOW - 3601)),
        Err(OcspError::Stale)
    ));
    let r = build(Build {
        next_update: None,
        ..good(&p)
    });
    assert!(matches!(
        ocsp::verify(&r, &p.leaf, &p.ca, now()),
        Err(OcspError::Stale)
    ));
}

#[test]
fn response_signed_by_another_key_is_rejected() {
    let p = pki();
    let r = build(Build {
        key: &p.other_key,
        ..good(&p)
    });
    assert!(matches!(
        ocsp::verify(&r, &p.leaf, &p.ca, now()),
        Err(OcspError::BadSignature(X509Error::SignatureMismatch))
    ));
}

#[test]
fn delegated_responder_without_ocsp_signing_is_rejected() {
    let p = pki();
    // The leaf is issued by the CA but is not an OCSP signer; sign with a key that is not the leaf's either.
    let r = build(Build {
        key: &p.other_key,
        include: Some(&p.leaf),
        ..good(&p)
    });
    assert!(matches!(
        ocsp::verify(&r, &p.leaf, &p.ca, now()),
        Err(OcspError::UnauthorizedResponder)
    ));
}

#[test]
fn response_for_another_certificate_does_not_cover_this_one() {
    let p = pki();
    let r = build(Build {
        cert: &p.responder,
        ..good(&p)
    });
    assert!(matches!(
        ocsp::verify(&r, &p.leaf, &p.ca, now()),
        Err(OcspError::NoMatchingResponse)
    ));
}

#[test]
fn flipped_bit_and_truncation_are_rejected() {
    let p = pki();
    let r = build(good(&p));
    let mut flipped = r.clone();
    let last = flipped.len() - 10;
    flipped[last] ^= 1;
    assert!(ocsp::verify(&flipped, &p.leaf, &p.ca, now()).is_err());
    for cut in 0..r.len() {
        assert!(
            matches!(
                ocsp::verify(&r[..cut], &p.leaf, &p.ca, now()),
                Err(OcspError::Malformed)
            ),
            "cut {cut}"
        );
    }
}

#[test]
fn real_gpu_chain_rejects_a_response_not_signed_by_its_issuer() {
    let p = pki();
    let spdm = hex::decode(
        String::from_utf8(evidence("nvidia/nvtrust__h100_2025_report.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let chain_pem = evidence("nvidia/nvtrust__h100_2025_cert_chain.pem");
    let chain = x509::parse_pem_chain(&chain_pem).unwrap();
    // A response naming the real leaf and its real issuer, signed by a key that is not the issuer's.
    let r = build(Build {
        cert: &chain[0],
        issuer: &chain[1],
        key: &p.ca_key,
        ..good(&p)
    });
    let responses = [r.as_slice()];
    let input = GpuEvidenceInput {
        spdm: &spdm,
        cert_chain_pem: &chain_pem,
        driver_rim: None,
        vbios_rim: None,
        ocsp_responses: &responses,
    };
    let policy = GpuPolicy {
        require_rim_match: false,
        ..GpuPolicy::default()
    };
    let nonce: [u8; 32] =
        hex::decode("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
            .unwrap()
            .try_into()
            .unwrap();
    let err =
        nvidia::verify_gpu(&input, &nonce, &policy, &NvidiaRoots::pinned(), now()).unwrap_err();
    assert!(
        matches!(
            err,
            NvidiaError::Ocsp {
                index: 0,
                source: OcspError::BadSignature(_)
            }
        ),
        "{err:?}"
    );
}
