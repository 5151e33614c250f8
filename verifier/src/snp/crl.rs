//! AMD's certificate revocation list for a product generation (KDS `vcek/v1/{product}/crl`): a DER X.509 CRL
//! signed by the ARK with RSASSA-PSS/SHA-384 that lists revoked ASKs (and VCEKs). [`verify_crl`] checks its
//! issuer, signature and validity window; [`check_not_revoked`] looks a certificate's serial up in it.

use der::{Decode as _, Encode as _};
use sha2::Sha384;
use x509_cert::crl::CertificateList;

use super::{SnpCert, SnpError};
use crate::collateral::UnixTime;

/// The largest CRL accepted.
pub const MAX_CRL_LEN: usize = 64 * 1024;
/// id-RSASSA-PSS (RFC 4055).
const OID_RSASSA_PSS: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// A CRL whose issuer, signature and validity held at a given time.
#[derive(Debug, Clone)]
pub struct VerifiedAmdCrl {
    crl: CertificateList,
    next_update: UnixTime,
}

impl VerifiedAmdCrl {
    /// The CRL's `nextUpdate`.
    pub fn next_update(&self) -> UnixTime {
        self.next_update
    }

    /// How many certificates it revokes.
    pub fn revoked(&self) -> usize {
        self.crl
            .tbs_cert_list
            .revoked_certificates
            .as_ref()
            .map_or(0, Vec::len)
    }
}

fn load(bytes: &[u8], which: SnpCert) -> Result<x509_cert::Certificate, SnpError> {
    let der = if bytes.starts_with(b"-----BEGIN") {
        crate::x509::pem_to_der(bytes)
            .ok()
            .and_then(|v| v.into_iter().next())
            .ok_or(SnpError::CertParse(which))?
    } else {
        bytes.to_vec()
    };
    x509_cert::Certificate::from_der(&der).map_err(|_| SnpError::CertParse(which))
}

/// Verifies `crl_der` against the ARK `ark` (PEM or DER; the caller pins it, as the chain check does): the
/// issuer is the ARK's subject, the RSASSA-PSS/SHA-384 signature verifies with the ARK's key, and
/// `thisUpdate ≤ now < nextUpdate`.
pub fn verify_crl(crl_der: &[u8], ark: &[u8], now: UnixTime) -> Result<VerifiedAmdCrl, SnpError> {
    use rsa::pkcs1::DecodeRsaPublicKey as _;
    use rsa::signature::Verifier as _;
    if crl_der.len() > MAX_CRL_LEN {
        return Err(SnpError::CrlMalformed);
    }
    let crl = CertificateList::from_der(crl_der).map_err(|_| SnpError::CrlMalformed)?;
    let ark = load(ark, SnpCert::Ark)?;
    if crl.tbs_cert_list.issuer != ark.tbs_certificate.subject {
        return Err(SnpError::CrlSignature);
    }
    if crl.signature_algorithm.oid != OID_RSASSA_PSS {
        return Err(SnpError::CrlSignature);
    }
    let key_bits = ark
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or(SnpError::CertParse(SnpCert::Ark))?;
    let key = rsa::RsaPublicKey::from_pkcs1_der(key_bits)
        .map_err(|_| SnpError::CertParse(SnpCert::Ark))?;
    let tbs = crl
        .tbs_cert_list
        .to_der()
        .map_err(|_| SnpError::CrlMalformed)?;
    let sig_bytes = crl.signature.as_bytes().ok_or(SnpError::CrlMalformed)?;
    let sig = rsa::pss::Signature::try_from(sig_bytes).map_err(|_| SnpError::CrlSignature)?;
    rsa::pss::VerifyingKey::<Sha384>::new(key)
        .verify(&tbs, &sig)
        .map_err(|_| SnpError::CrlSignature)?;
    let this_update = crl.tbs_cert_list.this_update.to_unix_duration().as_secs();
    let next_update = crl
        .tbs_cert_list
        .next_update
        .map(|t| t.to_unix_duration().as_secs())
        .ok_or(SnpError::CrlStale)?;
    if now.as_secs() < this_update || now.as_secs() >= next_update {
        return Err(SnpError::CrlStale);
    }
    Ok(VerifiedAmdCrl {
        crl,
        next_update: UnixTime::from_secs(next_update),
    })
}

/// Fails with [`SnpError::Revoked`] when `cert` (PEM or DER) is listed in `crl`.
pub fn check_not_revoked(
    crl: &VerifiedAmdCrl,
    cert: &[u8],
    which: SnpCert,
) -> Result<(), SnpError> {
    let cert = load(cert, which)?;
    let serial = &cert.tbs_certificate.serial_number;
    let revoked = crl
        .crl
        .tbs_cert_list
        .revoked_certificates
        .iter()
        .flatten()
        .any(|r| r.serial_number == *serial);
    if revoked {
        Err(SnpError::Revoked(which))
    } else {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::snp::{SnpProduct, amd_ark_pem};

    #[test]
    fn malformed_and_foreign_crls_are_told_apart() {
        let ark = amd_ark_pem(SnpProduct::Milan);
        assert_eq!(
            verify_crl(b"not a crl", ark, UnixTime::now()).unwrap_err(),
            SnpError::CrlMalformed
        );
        // A real CRL (Intel's root CA CRL of the evidence set) issued by someone else than the ARK.
        let intel = crate::collateral::TdxCollateral::from_bundle_json(&dait_testdata::read(
            "tdx/dcap-qvl__v4_b0c06f_collateral.json",
        ))
        .unwrap()
        .to_proto()
        .root_ca_crl;
        assert_eq!(
            verify_crl(&intel, ark, UnixTime::now()).unwrap_err(),
            SnpError::CrlSignature
        );
    }
}
