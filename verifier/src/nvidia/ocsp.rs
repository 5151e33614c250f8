//! OCSP (RFC 6960) responses for the certificates of a GPU chain, verified offline at an injected time.

use der::{Decode as _, Encode as _};
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use x509_cert::Certificate;
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspResponse, OcspResponseStatus, SingleResponse};

use crate::UnixTime;
use crate::x509::{self as x, X509Error};

/// The largest OCSP response accepted.
pub const MAX_OCSP_LEN: usize = 16 * 1024;
const OID_OCSP_BASIC: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const OID_EKU: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.29.37");
const OID_KP_OCSP_SIGNING: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");

/// Why an OCSP response was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OcspError {
    /// Not a DER OCSPResponse / BasicOCSPResponse.
    #[error("malformed OCSP response")]
    Malformed,
    /// responseStatus is not `successful`, or the response type is not id-pkix-ocsp-basic.
    #[error("OCSP response status is not successful")]
    NotSuccessful,
    /// The response holds no SingleResponse for this certificate.
    #[error("OCSP response does not cover the certificate")]
    NoMatchingResponse,
    /// The response's signature does not verify, or its delegated signer is not authorised by the issuer.
    #[error("OCSP response signature or signer is invalid")]
    BadSignature(#[source] X509Error),
    /// The responder says the certificate is revoked.
    #[error("certificate is revoked")]
    Revoked,
    /// A delegated responder certificate lacks the id-kp-OCSPSigning extended key usage.
    #[error("delegated OCSP responder is not authorised for OCSP signing")]
    UnauthorizedResponder,
    /// The responder does not know the certificate.
    #[error("certificate status is unknown to the responder")]
    Unknown,
    /// `now` is before thisUpdate or after nextUpdate (or there is no nextUpdate).
    #[error("OCSP response is outside its validity window")]
    Stale,
    /// A CertID hash algorithm other than SHA-256/384/512.
    #[error("unsupported CertID hash algorithm")]
    UnsupportedHash,
}

/// What a verified OCSP response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OcspGood {
    /// thisUpdate, Unix seconds.
    pub this_update: u64,
    /// nextUpdate, Unix seconds.
    pub next_update: u64,
}

fn hash_by(oid: &der::asn1::ObjectIdentifier, data: &[u8]) -> Result<Vec<u8>, OcspError> {
    if *oid == x::OID_SHA256 {
        Ok(Sha256::digest(data).to_vec())
    } else if *oid == x::OID_SHA384 {
        Ok(Sha384::digest(data).to_vec())
    } else if *oid == x::OID_SHA512 {
        Ok(Sha512::digest(data).to_vec())
    } else {
        Err(OcspError::UnsupportedHash)
    }
}

fn matches(
    single: &SingleResponse,
    cert: &Certificate,
    issuer: &Certificate,
) -> Result<bool, OcspError> {
    let id = &single.cert_id;
    if id.serial_number != cert.tbs_certificate.serial_number {
        return Ok(false);
    }
    let alg = id.hash_algorithm.oid;
    let name_der = issuer
        .tbs_certificate
        .subject
        .to_der()
        .map_err(|_| OcspError::Malformed)?;
    let key_bits = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    Ok(hash_by(&alg, &name_der)? == id.issuer_name_hash.as_bytes()
        && hash_by(&alg, key_bits)? == id.issuer_key_hash.as_bytes())
}

fn is_ocsp_signer(cert: &Certificate) -> bool {
    let Some(value) = x::extension(cert, &OID_EKU) else {
        return false;
    };
    let Ok(eku) = x509_cert::ext::pkix::ExtendedKeyUsage::from_der(value) else {
        return false;
    };
    eku.0.contains(&OID_KP_OCSP_SIGNING)
}

/// Encodes the RFC 6960 `OCSPRequest` (unsigned, no nonce) for `cert` issued by `issuer`, CertID hashed
/// with SHA-384 as NVIDIA's verifiers ask: what a client POSTs to the responder.
pub fn encode_request(cert: &Certificate, issuer: &Certificate) -> Result<Vec<u8>, OcspError> {
    use x509_ocsp::{CertId, OcspRequest, Request, TbsRequest};
    let name_der = issuer
        .tbs_certificate
        .subject
        .to_der()
        .map_err(|_| OcspError::Malformed)?;
    let key_bits = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let octets = |v: Vec<u8>| der::asn1::OctetString::new(v).map_err(|_| OcspError::Malformed);
    let request = OcspRequest {
        tbs_request: TbsRequest {
            version: x509_ocsp::Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: CertId {
                    hash_algorithm: x509_cert::spki::AlgorithmIdentifierOwned {
                        oid: x::OID_SHA384,
                        parameters: None,
                    },
                    issuer_name_hash: octets(Sha384::digest(&name_der).to_vec())?,
                    issuer_key_hash: octets(Sha384::digest(key_bits).to_vec())?,
                    serial_number: cert.tbs_certificate.serial_number.clone(),
                },
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    };
    request.to_der().map_err(|_| OcspError::Malformed)
}

/// Verifies `response_der` for `cert` issued by `issuer` at `now` (Unix seconds): signature by the issuer or by
/// a responder certificate the issuer signed for OCSP signing (RFC 6960 §4.2.2.2), status good, and
/// thisUpdate ≤ now ≤ nextUpdate.
pub fn verify(
    response_der: &[u8],
    cert: &Certificate,
    issuer: &Certificate,
    now: UnixTime,
) -> Result<OcspGood, OcspError> {
    let now = now.as_secs();
    if response_der.len() > MAX_OCSP_LEN {
        return Err(OcspError::Malformed);
    }
    let resp = OcspResponse::from_der(response_der).map_err(|_| OcspError::Malformed)?;
    if resp.response_status != OcspResponseStatus::Successful {
        return Err(OcspError::NotSuccessful);
    }
    let bytes = resp.response_bytes.ok_or(OcspError::NotSuccessful)?;
    if bytes.response_type != OID_OCSP_BASIC {
        return Err(OcspError::NotSuccessful);
    }
    let basic =
        BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(|_| OcspError::Malformed)?;

    // The signer: the issuer itself, or a delegated responder certificate it issued.
    let delegated = basic.certs.as_ref().and_then(|c| c.first());
    let signer = match delegated {
        Some(d)
            if d.tbs_certificate.subject_public_key_info
                != issuer.tbs_certificate.subject_public_key_info =>
        {
            x::verify_issued_by(d, issuer, 0).map_err(OcspError::BadSignature)?;
            x::check_validity(d, now, 0).map_err(OcspError::BadSignature)?;
            if !is_ocsp_signer(d) {
                return Err(OcspError::UnauthorizedResponder);
            }
            d
        }
        _ => issuer,
    };
    let tbs = basic
        .tbs_response_data
        .to_der()
        .map_err(|_| OcspError::Malformed)?;
    let sig = basic.signature.as_bytes().ok_or(OcspError::Malformed)?;
    x::verify_signature(
        &signer.tbs_certificate.subject_public_key_info,
        &basic.signature_algorithm.oid,
        &tbs,
        sig,
    )
    .map_err(OcspError::BadSignature)?;

    let mut found = None;
    for single in &basic.tbs_response_data.responses {
        if matches(single, cert, issuer)? {
            found = Some(single);
            break;
        }
    }
    let single = found.ok_or(OcspError::NoMatchingResponse)?;
    let this_update = single.this_update.0.to_unix_duration().as_secs();
    let next_update = single
        .next_update
        .map(|t| t.0.to_unix_duration().as_secs())
        .ok_or(OcspError::Stale)?;
    if now < this_update || now > next_update {
        return Err(OcspError::Stale);
    }
    match single.cert_status {
        CertStatus::Good(_) => Ok(OcspGood {
            this_update,
            next_update,
        }),
        CertStatus::Revoked(_) => Err(OcspError::Revoked),
        CertStatus::Unknown(_) => Err(OcspError::Unknown),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// The request for the real H100 leaf names it by serial and its issuer by SHA-384 of name and key.
    #[test]
    fn request_names_the_certificate_and_its_issuer() {
        let chain = x::parse_chain(&dait_testdata::read(
            "nvidia/nvtrust__h100_2023_cert_chain.pem",
        ))
        .unwrap();
        let der = encode_request(&chain[0], &chain[1]).unwrap();
        let req = x509_ocsp::OcspRequest::from_der(&der).unwrap();
        let [one] = req.tbs_request.request_list.as_slice() else {
            panic!("one request expected")
        };
        let id = &one.req_cert;
        assert_eq!(id.hash_algorithm.oid, x::OID_SHA384);
        assert_eq!(id.serial_number, chain[0].tbs_certificate.serial_number);
        assert_eq!(
            id.issuer_name_hash.as_bytes(),
            &Sha384::digest(chain[1].tbs_certificate.subject.to_der().unwrap())[..]
        );
        assert_eq!(id.issuer_key_hash.as_bytes().len(), 48);
        assert!(req.optional_signature.is_none());
    }
}
