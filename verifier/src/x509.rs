//! The small X.509 path check that NVIDIA device chains, RIM signer chains and OCSP responders need.
//!
//! What it does: decode DER/PEM certificates (`x509-cert`), check each certificate's signature with the next
//! certificate's key (ECDSA P-256/P-384 with SHA-256/384, RSA PKCS#1 v1.5 with SHA-256/384/512), check the
//! issuer/subject names line up, check every validity window at an injected time, and require that the last
//! certificate's public key is a pinned trust anchor (SHA-256 of its SubjectPublicKeyInfo) and that it signs
//! itself.
//!
//! What it does not do: name constraints, policy mappings, key usage (NVIDIA's RIM chain asserts key usages a
//! strict RFC 5280 validator rejects, see the evidence notes), revocation by CRL. Revocation is OCSP, handled in
//! [`crate::nvidia::ocsp`].

use base64::Engine as _;
use der::{Decode as _, Encode as _, Reader as _, Tagged as _};
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use x509_cert::Certificate;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

/// The most certificates a chain may hold.
pub const MAX_CHAIN_CERTS: usize = 8;
/// The largest DER certificate accepted.
pub const MAX_CERT_DER_LEN: usize = 16 * 1024;
/// The largest PEM text accepted for a chain.
pub const MAX_PEM_CHAIN_LEN: usize = 64 * 1024;

/// OID of ecdsa-with-SHA256 (RFC 5758 §3.2).
pub const OID_ECDSA_SHA256: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// OID of ecdsa-with-SHA384 (RFC 5758 §3.2).
pub const OID_ECDSA_SHA384: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
/// OID of sha256WithRSAEncryption (RFC 4055 §5).
pub const OID_RSA_SHA256: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
/// OID of sha384WithRSAEncryption (RFC 4055 §5).
pub const OID_RSA_SHA384: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
/// OID of sha512WithRSAEncryption (RFC 4055 §5).
pub const OID_RSA_SHA512: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_EC_PUBLIC_KEY: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_RSA_ENCRYPTION: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_SECP256R1: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_SECP384R1: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// OID of SHA-256 (RFC 5754 §2).
pub const OID_SHA256: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// OID of SHA-384 (RFC 5754 §2).
pub const OID_SHA384: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
/// OID of SHA-512 (RFC 5754 §2).
pub const OID_SHA512: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
/// OID of SHA-1 (OCSP CertID hashes commonly use it).
pub const OID_SHA1: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.14.3.2.26");

/// Why a certificate or a chain was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum X509Error {
    /// The certificate at `index` is not valid DER X.509.
    #[error("certificate {index} is not valid DER X.509")]
    BadCertificate {
        /// Position in the chain, leaf = 0.
        index: usize,
    },
    /// The PEM text is malformed (no certificate block, bad base64, unterminated block).
    #[error("malformed PEM certificate text")]
    BadPem,
    /// The chain is empty.
    #[error("empty certificate chain")]
    EmptyChain,
    /// The certificate at `index` is outside its validity window at the given time.
    #[error("certificate {index} is not valid at the given time")]
    Expired {
        /// Position in the chain, leaf = 0.
        index: usize,
    },
    /// The issuer name of the certificate at `index` is not the subject of the next certificate.
    #[error("certificate {index} was not issued by the next certificate in the chain")]
    IssuerMismatch {
        /// Position in the chain, leaf = 0.
        index: usize,
    },
    /// The signature on the certificate at `index` does not verify with its issuer's key.
    #[error("signature on certificate {index} does not verify")]
    BadSignature {
        /// Position in the chain, leaf = 0.
        index: usize,
    },
    /// A public key that cannot be used (unknown curve, malformed point or modulus).
    #[error("unsupported or malformed public key")]
    BadPublicKey,
    /// A signature algorithm this module does not implement.
    #[error("unsupported signature algorithm")]
    UnsupportedAlgorithm,
    /// A signature that does not verify.
    #[error("signature does not verify")]
    SignatureMismatch,
    /// A value too large for its cap.
    #[error("{what} above its limit")]
    TooLarge {
        /// What was too large.
        what: &'static str,
    },
    /// A certificate that issues another is not a CA (basicConstraints cA is absent or false).
    #[error("certificate {index} issues another but is not a CA")]
    NotCa {
        /// Position in the chain, leaf = 0.
        index: usize,
    },
    /// More CA certificates follow a CA than its pathLenConstraint allows.
    #[error("certificate {index}'s path length constraint is exceeded")]
    PathLenExceeded {
        /// Position in the chain, leaf = 0.
        index: usize,
    },
    /// The last certificate's key is not the pinned trust anchor.
    #[error("chain does not end at the pinned root")]
    UntrustedRoot,
}

/// A pinned trust anchor: the SHA-256 of a root's DER SubjectPublicKeyInfo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustAnchor {
    spki_sha256: [u8; 32],
}

impl TrustAnchor {
    /// Pins the key whose SubjectPublicKeyInfo hashes to `spki_sha256`.
    pub const fn from_spki_sha256(spki_sha256: [u8; 32]) -> Self {
        Self { spki_sha256 }
    }

    /// Pins the key of a DER certificate.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, X509Error> {
        let cert = parse_der(der, 0)?;
        Ok(Self {
            spki_sha256: spki_sha256(&cert)?,
        })
    }

    /// Pins the key of the first certificate of a PEM text.
    pub fn from_certificate_pem(pem: &[u8]) -> Result<Self, X509Error> {
        let ders = pem_to_der(pem)?;
        let first = ders.first().ok_or(X509Error::EmptyChain)?;
        Self::from_certificate_der(first)
    }

    /// The pinned hash.
    pub fn spki_sha256(&self) -> [u8; 32] {
        self.spki_sha256
    }
}

/// SHA-256 of a certificate's DER SubjectPublicKeyInfo.
pub fn spki_sha256(cert: &Certificate) -> Result<[u8; 32], X509Error> {
    let der = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| X509Error::BadPublicKey)?;
    Ok(Sha256::digest(&der).into())
}

/// Decodes one DER certificate; `index` names it in errors.
pub fn parse_der(der: &[u8], index: usize) -> Result<Certificate, X509Error> {
    if der.len() > MAX_CERT_DER_LEN {
        return Err(X509Error::TooLarge {
            what: "certificate",
        });
    }
    Certificate::from_der(der).map_err(|_| X509Error::BadCertificate { index })
}

/// Splits PEM text into the DER bytes of each `CERTIFICATE` block, in order.
pub fn pem_to_der(pem: &[u8]) -> Result<Vec<Vec<u8>>, X509Error> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    if pem.len() > MAX_PEM_CHAIN_LEN {
        return Err(X509Error::TooLarge { what: "PEM chain" });
    }
    let text = core::str::from_utf8(pem).map_err(|_| X509Error::BadPem)?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = rest
            .get(start.saturating_add(BEGIN.len())..)
            .ok_or(X509Error::BadPem)?;
        let end = after.find(END).ok_or(X509Error::BadPem)?;
        let body = after.get(..end).ok_or(X509Error::BadPem)?;
        out.push(decode_base64_lenient(body).ok_or(X509Error::BadPem)?);
        if out.len() > MAX_CHAIN_CERTS {
            return Err(X509Error::TooLarge {
                what: "chain length",
            });
        }
        rest = after
            .get(end.saturating_add(END.len())..)
            .ok_or(X509Error::BadPem)?;
    }
    if out.is_empty() {
        return Err(X509Error::BadPem);
    }
    Ok(out)
}

/// Base64 (standard alphabet, padded) with ASCII whitespace anywhere, as PEM and XML-DSig carry it.
pub(crate) fn decode_base64_lenient(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .ok()
}

/// Decodes a PEM chain (leaf first) into certificates.
pub fn parse_pem_chain(pem: &[u8]) -> Result<Vec<Certificate>, X509Error> {
    pem_to_der(pem)?
        .iter()
        .enumerate()
        .map(|(i, d)| parse_der(d, i))
        .collect()
}

/// Decodes a chain given either as PEM text or as concatenated DER certificates (leaf first).
pub fn parse_chain(bytes: &[u8]) -> Result<Vec<Certificate>, X509Error> {
    if bytes.first() != Some(&0x30) {
        return parse_pem_chain(bytes);
    }
    if bytes.len() > MAX_PEM_CHAIN_LEN {
        return Err(X509Error::TooLarge { what: "DER chain" });
    }
    let mut reader =
        der::SliceReader::new(bytes).map_err(|_| X509Error::BadCertificate { index: 0 })?;
    let mut out = Vec::new();
    while !reader.is_finished() {
        let index = out.len();
        if index >= MAX_CHAIN_CERTS {
            return Err(X509Error::TooLarge {
                what: "chain length",
            });
        }
        let tlv = reader
            .tlv_bytes()
            .map_err(|_| X509Error::BadCertificate { index })?;
        out.push(parse_der(tlv, index)?);
    }
    Ok(out)
}

/// Checks that `cert` is inside its validity window at `now` (seconds since the Unix epoch).
pub fn check_validity(cert: &Certificate, now: u64, index: usize) -> Result<(), X509Error> {
    let v = &cert.tbs_certificate.validity;
    let nb = v.not_before.to_unix_duration().as_secs();
    let na = v.not_after.to_unix_duration().as_secs();
    if now < nb || now > na {
        return Err(X509Error::Expired { index });
    }
    Ok(())
}

/// The DER bytes of the `tbsCertificate` exactly as they were signed (re-encoded by `der`, which is
/// canonical DER and therefore byte-identical for any certificate `der` accepts).
fn tbs_der(cert: &Certificate) -> Result<Vec<u8>, X509Error> {
    cert.tbs_certificate
        .to_der()
        .map_err(|_| X509Error::BadCertificate { index: 0 })
}

/// Verifies `signature` (DER ECDSA or RSA PKCS#1 v1.5 bytes, as in X.509) over `msg` with `spki`.
pub fn verify_signature(
    spki: &SubjectPublicKeyInfoOwned,
    algorithm: &der::asn1::ObjectIdentifier,
    msg: &[u8],
    signature: &[u8],
) -> Result<(), X509Error> {
    let key_alg = spki.algorithm.oid;
    let key_bytes = spki
        .subject_public_key
        .as_bytes()
        .ok_or(X509Error::BadPublicKey)?;
    if key_alg == OID_EC_PUBLIC_KEY {
        let curve: der::asn1::ObjectIdentifier = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as().ok())
            .ok_or(X509Error::BadPublicKey)?;
        let hash = if *algorithm == OID_ECDSA_SHA384 {
            EcdsaHash::Sha384
        } else if *algorithm == OID_ECDSA_SHA256 {
            EcdsaHash::Sha256
        } else {
            return Err(X509Error::UnsupportedAlgorithm);
        };
        verify_ecdsa(&curve, key_bytes, msg, hash, EcdsaSig::Der(signature))
    } else if key_alg == OID_RSA_ENCRYPTION {
        use rsa::pkcs1::DecodeRsaPublicKey as _;
        use rsa::signature::Verifier as _;
        let key =
            rsa::RsaPublicKey::from_pkcs1_der(key_bytes).map_err(|_| X509Error::BadPublicKey)?;
        let sig = rsa::pkcs1v15::Signature::try_from(signature)
            .map_err(|_| X509Error::SignatureMismatch)?;
        let ok = if *algorithm == OID_RSA_SHA256 {
            rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
                .verify(msg, &sig)
                .is_ok()
        } else if *algorithm == OID_RSA_SHA384 {
            rsa::pkcs1v15::VerifyingKey::<Sha384>::new(key)
                .verify(msg, &sig)
                .is_ok()
        } else if *algorithm == OID_RSA_SHA512 {
            rsa::pkcs1v15::VerifyingKey::<Sha512>::new(key)
                .verify(msg, &sig)
                .is_ok()
        } else {
            return Err(X509Error::UnsupportedAlgorithm);
        };
        if ok {
            Ok(())
        } else {
            Err(X509Error::SignatureMismatch)
        }
    } else {
        Err(X509Error::BadPublicKey)
    }
}

/// An ECDSA signature in one of its two encodings.
#[derive(Clone, Copy, Debug)]
pub enum EcdsaSig<'a> {
    /// ASN.1 DER `Ecdsa-Sig-Value` (X.509, OCSP).
    Der(&'a [u8]),
    /// Raw big-endian r‖s, each the field size (SPDM, XML-DSig).
    Raw(&'a [u8]),
}

/// The digest of an ECDSA signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcdsaHash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
}

/// Verifies an ECDSA signature over `msg` (hashed with `hash`) for a key on `curve` given as an uncompressed
/// SEC1 point. Backend: `ring` (already in the build for TDX through dcap-qvl; several times faster than the
/// pure-Rust P-384 here).
pub fn verify_ecdsa(
    curve: &der::asn1::ObjectIdentifier,
    sec1_point: &[u8],
    msg: &[u8],
    hash: EcdsaHash,
    sig: EcdsaSig<'_>,
) -> Result<(), X509Error> {
    use ring::signature as rs;
    let p384 = *curve == OID_SECP384R1;
    if !p384 && *curve != OID_SECP256R1 {
        return Err(X509Error::BadPublicKey);
    }
    let alg: &'static rs::EcdsaVerificationAlgorithm = match (p384, hash, sig) {
        (true, EcdsaHash::Sha384, EcdsaSig::Der(_)) => &rs::ECDSA_P384_SHA384_ASN1,
        (true, EcdsaHash::Sha384, EcdsaSig::Raw(_)) => &rs::ECDSA_P384_SHA384_FIXED,
        (true, EcdsaHash::Sha256, EcdsaSig::Der(_)) => &rs::ECDSA_P384_SHA256_ASN1,
        (false, EcdsaHash::Sha256, EcdsaSig::Der(_)) => &rs::ECDSA_P256_SHA256_ASN1,
        (false, EcdsaHash::Sha256, EcdsaSig::Raw(_)) => &rs::ECDSA_P256_SHA256_FIXED,
        (false, EcdsaHash::Sha384, EcdsaSig::Der(_)) => &rs::ECDSA_P256_SHA384_ASN1,
        _ => return Err(X509Error::UnsupportedAlgorithm),
    };
    let bytes = match sig {
        EcdsaSig::Der(d) | EcdsaSig::Raw(d) => d,
    };
    rs::UnparsedPublicKey::new(alg, sec1_point)
        .verify(msg, bytes)
        .map_err(|_| X509Error::SignatureMismatch)
}

/// The named curve of an EC SubjectPublicKeyInfo, and its SEC1 point.
pub fn ec_key(
    spki: &SubjectPublicKeyInfoOwned,
) -> Result<(der::asn1::ObjectIdentifier, &[u8]), X509Error> {
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
        return Err(X509Error::BadPublicKey);
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as().ok())
        .ok_or(X509Error::BadPublicKey)?;
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or(X509Error::BadPublicKey)?;
    Ok((curve, point))
}

/// Verifies that `cert` was signed by `issuer`'s key; `index` names `cert` in errors.
pub fn verify_issued_by(
    cert: &Certificate,
    issuer: &Certificate,
    index: usize,
) -> Result<(), X509Error> {
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Err(X509Error::IssuerMismatch { index });
    }
    let tbs = tbs_der(cert)?;
    let sig = cert
        .signature
        .as_bytes()
        .ok_or(X509Error::BadSignature { index })?;
    verify_signature(
        &issuer.tbs_certificate.subject_public_key_info,
        &cert.signature_algorithm.oid,
        &tbs,
        sig,
    )
    .map_err(|e| match e {
        X509Error::SignatureMismatch => X509Error::BadSignature { index },
        other => other,
    })
}

/// Verifies a chain (leaf first): every signature by the next certificate, every validity window at `now`,
/// the last certificate self-issued with a key equal to `anchor` (its self-signature is not checked: the
/// pinned key is the trust).
pub fn verify_chain(
    chain: &[Certificate],
    anchor: &TrustAnchor,
    now: u64,
) -> Result<(), X509Error> {
    verify_chain_cached(chain, anchor, now, &mut SignatureCache::default())
}

/// Certificate signatures already verified, so that chains sharing intermediates (several GPUs of one
/// machine, RIMs signed by one signer) verify each signature once. Keyed by SHA-256 of the certificate's
/// DER and the issuer's SubjectPublicKeyInfo DER; only successes are remembered.
#[derive(Clone, Debug, Default)]
pub struct SignatureCache {
    ok: std::collections::HashSet<[u8; 32]>,
}

impl SignatureCache {
    fn key(cert: &Certificate, issuer: &Certificate) -> Result<[u8; 32], X509Error> {
        let c = cert
            .to_der()
            .map_err(|_| X509Error::BadCertificate { index: 0 })?;
        let i = issuer
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|_| X509Error::BadPublicKey)?;
        let mut h = Sha256::new();
        h.update((c.len() as u64).to_be_bytes());
        h.update(&c);
        h.update(&i);
        Ok(h.finalize().into())
    }

    /// [`verify_issued_by`], remembered.
    pub fn verify_issued_by(
        &mut self,
        cert: &Certificate,
        issuer: &Certificate,
        index: usize,
    ) -> Result<(), X509Error> {
        let key = Self::key(cert, issuer)?;
        if self.ok.contains(&key) {
            // Names are compared again: they are part of the certificate, but cheap and explicit.
            return if cert.tbs_certificate.issuer == issuer.tbs_certificate.subject {
                Ok(())
            } else {
                Err(X509Error::IssuerMismatch { index })
            };
        }
        verify_issued_by(cert, issuer, index)?;
        self.ok.insert(key);
        Ok(())
    }
}

/// [`verify_chain`] with a [`SignatureCache`].
pub fn verify_chain_cached(
    chain: &[Certificate],
    anchor: &TrustAnchor,
    now: u64,
    cache: &mut SignatureCache,
) -> Result<(), X509Error> {
    if chain.is_empty() {
        return Err(X509Error::EmptyChain);
    }
    if chain.len() > MAX_CHAIN_CERTS {
        return Err(X509Error::TooLarge {
            what: "chain length",
        });
    }
    for (i, pair) in chain.windows(2).enumerate() {
        if let [cert, issuer] = pair {
            cache.verify_issued_by(cert, issuer, i)?;
        }
    }
    let last_index = chain.len().saturating_sub(1);
    let root = chain.last().ok_or(X509Error::EmptyChain)?;
    if spki_sha256(root)? != anchor.spki_sha256 {
        return Err(X509Error::UntrustedRoot);
    }
    // The root is trusted by its pinned key, not by its self-signature (RFC 5280 §6.1.1 (d): a trust
    // anchor is an input to path validation): checking that signature would prove nothing and cost one
    // P-384 verification per chain. Its name must still issue the next certificate (checked above) and it
    // must be valid at `now` and a CA (below).
    if root.tbs_certificate.subject != root.tbs_certificate.issuer {
        return Err(X509Error::IssuerMismatch { index: last_index });
    }
    for (i, cert) in chain.iter().enumerate() {
        check_validity(cert, now, i)?;
        if i > 0 {
            check_ca(cert, i)?;
        }
    }
    Ok(())
}

const OID_BASIC_CONSTRAINTS: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.19");

/// The certificate at `index` issues `index - 1` ... 0: it must be a CA, and the CAs below it (all but the
/// leaf) must not exceed its pathLenConstraint.
fn check_ca(cert: &Certificate, index: usize) -> Result<(), X509Error> {
    let value = extension(cert, &OID_BASIC_CONSTRAINTS).ok_or(X509Error::NotCa { index })?;
    let bc = x509_cert::ext::pkix::BasicConstraints::from_der(value)
        .map_err(|_| X509Error::BadCertificate { index })?;
    if !bc.ca {
        return Err(X509Error::NotCa { index });
    }
    if let Some(max) = bc.path_len_constraint
        && index.saturating_sub(1) > usize::from(max)
    {
        return Err(X509Error::PathLenExceeded { index });
    }
    Ok(())
}

/// The value of the extension `oid` in `cert`, if present.
pub fn extension<'c>(cert: &'c Certificate, oid: &der::asn1::ObjectIdentifier) -> Option<&'c [u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == *oid)
        .map(|e| e.extn_value.as_bytes())
}

/// Collects every `SEQUENCE { hashAlgorithm OID, digest OCTET STRING }` inside a DER value (depth-limited):
/// the FWID shape of TCG DICE (`FWID ::= SEQUENCE { hashAlg OID, digest OCTET STRING }`), wherever the
/// containing structure puts it.
pub fn find_fwids(der_value: &[u8]) -> Vec<(der::asn1::ObjectIdentifier, Vec<u8>)> {
    let mut out = Vec::new();
    collect_fwids(der_value, 0, &mut out);
    out
}

fn collect_fwids(bytes: &[u8], depth: u8, out: &mut Vec<(der::asn1::ObjectIdentifier, Vec<u8>)>) {
    if depth > 6 || out.len() > 16 {
        return;
    }
    let Ok(mut reader) = der::SliceReader::new(bytes) else {
        return;
    };
    let mut items: Vec<der::asn1::AnyRef<'_>> = Vec::new();
    while !reader.is_finished() {
        let Ok(any) = reader.decode::<der::asn1::AnyRef<'_>>() else {
            return;
        };
        items.push(any);
        if items.len() > 64 {
            return;
        }
    }
    if let [a, b] = items.as_slice()
        && a.tag() == der::Tag::ObjectIdentifier
        && b.tag() == der::Tag::OctetString
        && let Ok(oid) = a.decode_as::<der::asn1::ObjectIdentifier>()
    {
        out.push((oid, b.value().to_vec()));
        return;
    }
    for item in items {
        if item.tag().is_constructed() {
            collect_fwids(item.value(), depth.saturating_add(1), out);
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn pem_without_blocks_is_rejected() {
        assert!(matches!(pem_to_der(b"hello"), Err(X509Error::BadPem)));
        assert!(matches!(
            pem_to_der(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----"),
            Err(X509Error::BadPem)
        ));
    }

    #[test]
    fn garbage_der_is_rejected() {
        assert!(matches!(
            parse_der(&[0x30, 0x03, 1, 2, 3], 2),
            Err(X509Error::BadCertificate { index: 2 })
        ));
    }

    #[test]
    fn empty_chain_is_rejected() {
        assert!(matches!(
            verify_chain(&[], &TrustAnchor::from_spki_sha256([0; 32]), 0),
            Err(X509Error::EmptyChain)
        ));
    }
}
