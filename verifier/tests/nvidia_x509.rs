//! The X.509 path check used for GPU and RIM chains, on chains built for the purpose (the real chains are
//! covered in nvidia.rs and nvidia_rim.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use der::Decode as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use x509_cert::Certificate;

use dait_verifier::x509::{self, TrustAnchor, X509Error};

fn params(cn: &str, ca: Option<BasicConstraints>) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    if let Some(bc) = ca {
        p.is_ca = IsCa::Ca(bc);
    }
    p
}

fn cert(c: &rcgen::Certificate) -> Certificate {
    Certificate::from_der(c.der()).unwrap()
}

const NOW: u64 = 1_767_225_600;

#[test]
fn leaf_issuing_a_certificate_is_rejected() {
    let alg = &rcgen::PKCS_ECDSA_P384_SHA384;
    let root_kp = KeyPair::generate_for(alg).unwrap();
    let root = params("root", Some(BasicConstraints::Unconstrained))
        .self_signed(&root_kp)
        .unwrap();
    let leaf_kp = KeyPair::generate_for(alg).unwrap();
    let leaf = params("leaf", None)
        .signed_by(&leaf_kp, &root, &root_kp)
        .unwrap();
    let below_kp = KeyPair::generate_for(alg).unwrap();
    let below = params("below", None)
        .signed_by(&below_kp, &leaf, &leaf_kp)
        .unwrap();
    let anchor = TrustAnchor::from_certificate_der(root.der()).unwrap();

    x509::verify_chain(&[cert(&leaf), cert(&root)], &anchor, NOW).unwrap();
    let err =
        x509::verify_chain(&[cert(&below), cert(&leaf), cert(&root)], &anchor, NOW).unwrap_err();
    assert!(matches!(err, X509Error::NotCa { index: 1 }), "{err:?}");
}

#[test]
fn path_length_constraint_is_enforced() {
    let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
    let root_kp = KeyPair::generate_for(alg).unwrap();
    let root = params("root", Some(BasicConstraints::Constrained(0)))
        .self_signed(&root_kp)
        .unwrap();
    let ica_kp = KeyPair::generate_for(alg).unwrap();
    let ica = params("ica", Some(BasicConstraints::Unconstrained))
        .signed_by(&ica_kp, &root, &root_kp)
        .unwrap();
    let leaf_kp = KeyPair::generate_for(alg).unwrap();
    let leaf = params("leaf", None)
        .signed_by(&leaf_kp, &ica, &ica_kp)
        .unwrap();
    let anchor = TrustAnchor::from_certificate_der(root.der()).unwrap();
    let err =
        x509::verify_chain(&[cert(&leaf), cert(&ica), cert(&root)], &anchor, NOW).unwrap_err();
    assert!(
        matches!(err, X509Error::PathLenExceeded { index: 2 }),
        "{err:?}"
    );
}

#[test]
fn p256_chain_verifies_and_a_flipped_signature_does_not() {
    let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
    let root_kp = KeyPair::generate_for(alg).unwrap();
    let root = params("root", Some(BasicConstraints::Unconstrained))
        .self_signed(&root_kp)
        .unwrap();
    let leaf_kp = KeyPair::generate_for(alg).unwrap();
    let leaf = params("leaf", None)
        .signed_by(&leaf_kp, &root, &root_kp)
        .unwrap();
    let anchor = TrustAnchor::from_certificate_der(root.der()).unwrap();
    x509::verify_chain(&[cert(&leaf), cert(&root)], &anchor, NOW).unwrap();
    let mut der = leaf.der().to_vec();
    let n = der.len();
    der[n - 5] ^= 1;
    let bad = Certificate::from_der(&der).unwrap();
    let err = x509::verify_chain(&[bad, cert(&root)], &anchor, NOW).unwrap_err();
    assert!(
        matches!(err, X509Error::BadSignature { index: 0 }),
        "{err:?}"
    );
}

/// The pinned anchor must end the chain as a self-issued root: an intermediate whose key is pinned but
/// which names another issuer is refused. (The anchor's self-signature is not checked: its key is the trust.)
#[test]
fn pinned_key_on_a_certificate_that_is_not_self_issued_is_rejected() {
    let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
    let root_kp = KeyPair::generate_for(alg).unwrap();
    let root = params("root", Some(BasicConstraints::Unconstrained))
        .self_signed(&root_kp)
        .unwrap();
    let ica_kp = KeyPair::generate_for(alg).unwrap();
    let ica = params("ica", Some(BasicConstraints::Unconstrained))
        .signed_by(&ica_kp, &root, &root_kp)
        .unwrap();
    let leaf_kp = KeyPair::generate_for(alg).unwrap();
    let leaf = params("leaf", None)
        .signed_by(&leaf_kp, &ica, &ica_kp)
        .unwrap();
    let ica_anchor = TrustAnchor::from_certificate_der(ica.der()).unwrap();
    let err = x509::verify_chain(&[cert(&leaf), cert(&ica)], &ica_anchor, NOW).unwrap_err();
    assert!(
        matches!(err, X509Error::IssuerMismatch { index: 1 }),
        "{err:?}"
    );
    let root_anchor = TrustAnchor::from_certificate_der(root.der()).unwrap();
    x509::verify_chain(&[cert(&leaf), cert(&ica), cert(&root)], &root_anchor, NOW).unwrap();
}
