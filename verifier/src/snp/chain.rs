//! The AMD certificate chain: the pinned ARKs, AMD's certificates per generation, ARK → ASK/ASVK →
//! VCEK/VLEK signatures and validity, and the binding of a report to its VCEK/VLEK (SPL extensions, hwID).

use sev::certs::snp::{Certificate, Verifiable as _};
use sha2::Digest as _;
use x509_cert::der::Decode as _;

use super::{SigningKey, SnpCert, SnpError, SnpPolicy, SnpReport, TcbVersion};
use crate::collateral::UnixTime;

/// SHA-384 of the SubjectPublicKeyInfo (DER) of AMD's ARK-Milan. Provenance: `amd_milan_ark.pem` of the
/// evidence set (AMD KDS `vcek/v1/Milan/cert_chain`, as shipped by virtee/sev `src/certs/snp/builtin/milan`),
/// CN=ARK-Milan, serial 0x010000, valid 2020-10-22..2045-10-22.
pub const ARK_MILAN_SPKI_SHA384: &str = "1249f67f15cf229a4069195e1a9ce537d1765ef706a1f4a123c36be9518786515d25ecc007f366b564d2b3f31c48082e";
/// ARK-Genoa: `amd_genoa_ark.pem` (AMD KDS `vcek/v1/Genoa/cert_chain`), serial 0x020000, valid
/// 2022-01-26..2047-01-26.
pub const ARK_GENOA_SPKI_SHA384: &str = "32ab53a6ce5ec14926207396e5c475ae768a6a9831b7e860b5acf2e1c1dff222bc5a8bfc43eb5e06393189c1f246d880";
/// ARK-Turin: `amd_turin_ark.pem` (AMD KDS `vcek/v1/Turin/cert_chain`), serial 0x030000, valid
/// 2023-05-15..2048-05-15.
pub const ARK_TURIN_SPKI_SHA384: &str = "3475f08a9727f8ac9a1deaea5f2a2097aa59d64d05c2a678c229c873e6359d3a6926287a2a22cd5f88a385e333a2fcc5";

/// EPYC generation, identified by the pinned ARK the chain ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SnpProduct {
    /// EPYC 7xx3 (Zen 3).
    Milan,
    /// EPYC 9xx4 (Zen 4).
    Genoa,
    /// EPYC 9xx5 (Zen 5): TCB_VERSION has an FMC field and a different layout.
    Turin,
}

impl SnpProduct {
    /// Every generation, oldest first: the order AMD's certificates are tried in.
    pub const ALL: [Self; 3] = [Self::Milan, Self::Genoa, Self::Turin];

    /// The product whose pinned ARK key has this SPKI SHA-384, if any.
    pub fn from_ark_spki_sha384(digest: &[u8]) -> Option<Self> {
        let hex = hex::encode(digest);
        [
            (ARK_MILAN_SPKI_SHA384, Self::Milan),
            (ARK_GENOA_SPKI_SHA384, Self::Genoa),
            (ARK_TURIN_SPKI_SHA384, Self::Turin),
        ]
        .into_iter()
        .find(|(pin, _)| *pin == hex)
        .map(|(_, p)| p)
    }
}

/// AMD's ARK certificate (PEM) for a generation, as shipped by the `sev` crate; its key is checked against
/// the pinned fingerprints like any other ARK.
pub fn amd_ark_pem(product: SnpProduct) -> &'static [u8] {
    match product {
        SnpProduct::Milan => sev::certs::snp::builtin::milan::ARK,
        SnpProduct::Genoa => sev::certs::snp::builtin::genoa::ARK,
        SnpProduct::Turin => sev::certs::snp::builtin::turin::ARK,
    }
}

/// AMD's ASK certificate (PEM) for a generation (VCEK chains), as shipped by the `sev` crate.
pub fn amd_ask_pem(product: SnpProduct) -> &'static [u8] {
    match product {
        SnpProduct::Milan => sev::certs::snp::builtin::milan::ASK,
        SnpProduct::Genoa => sev::certs::snp::builtin::genoa::ASK,
        SnpProduct::Turin => sev::certs::snp::builtin::turin::ASK,
    }
}

/// The AMD certificates a report is checked against, PEM or DER each.
#[derive(Debug, Clone, Copy)]
pub struct SnpCerts<'a> {
    /// ARK (must be one of the pinned roots).
    pub ark: &'a [u8],
    /// ASK, or ASVK for a VLEK.
    pub ask: &'a [u8],
    /// VCEK or VLEK.
    pub vek: &'a [u8],
}

/// Splits PEM text into certificate DER-or-PEM blobs (each `BEGIN..END CERTIFICATE` block).
pub fn split_pem_certs(pem: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = find(rest, BEGIN) {
        let Some(tail) = rest.get(start..) else { break };
        let Some(end) = find(tail, END) else { break };
        let stop = end.saturating_add(END.len());
        if let Some(block) = tail.get(..stop) {
            out.push(block);
        }
        rest = tail.get(stop..).unwrap_or(&[]);
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn load_cert(
    bytes: &[u8],
    which: SnpCert,
) -> Result<(Certificate, x509_cert::Certificate), SnpError> {
    let sev_cert = if find(bytes, b"-----BEGIN").is_some() {
        Certificate::from_pem(bytes)
    } else {
        Certificate::from_der(bytes)
    }
    .map_err(|_| SnpError::CertParse(which))?;
    let der = sev_cert.to_der().map_err(|_| SnpError::CertParse(which))?;
    let x = x509_cert::Certificate::from_der(&der).map_err(|_| SnpError::CertParse(which))?;
    Ok((sev_cert, x))
}

fn check_validity(
    cert: &x509_cert::Certificate,
    which: SnpCert,
    now: UnixTime,
) -> Result<(), SnpError> {
    let v = &cert.tbs_certificate.validity;
    let nb = v.not_before.to_unix_duration().as_secs();
    let na = v.not_after.to_unix_duration().as_secs();
    if now.as_secs() < nb || now.as_secs() > na {
        return Err(SnpError::Expired(which));
    }
    Ok(())
}

fn spki_sha384(cert: &x509_cert::Certificate) -> Result<Vec<u8>, SnpError> {
    use x509_cert::der::Encode as _;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| SnpError::CertParse(SnpCert::Ark))?;
    Ok(sha2::Sha384::digest(&spki).to_vec())
}

fn extension<'c>(cert: &'c x509_cert::Certificate, oid: &str) -> Option<&'c [u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id.to_string() == oid)
        .map(|e| e.extn_value.as_bytes())
}

/// Reads an SPL extension: a DER INTEGER 0..=255.
fn spl(cert: &x509_cert::Certificate, oid: &'static str) -> Result<u8, SnpError> {
    let raw = extension(cert, oid).ok_or(SnpError::MissingExtension(oid))?;
    let bad = SnpError::MissingExtension(oid);
    let (tag, rest) = raw.split_first().ok_or(bad.clone())?;
    let (len, body) = rest.split_first().ok_or(bad.clone())?;
    if *tag != 0x02 || usize::from(*len) != body.len() {
        return Err(bad);
    }
    match body {
        [v] if *v < 0x80 => Ok(*v),
        [0, v] if *v >= 0x80 => Ok(*v),
        _ => Err(bad),
    }
}

fn hw_id(cert: &x509_cert::Certificate) -> Result<&[u8], SnpError> {
    const OID: &str = "1.3.6.1.4.1.3704.1.4";
    let raw = extension(cert, OID).ok_or(SnpError::MissingExtension(OID))?;
    // Either the raw bytes, or a DER OCTET STRING around them.
    match raw {
        [0x04, len, body @ ..] if usize::from(*len) == body.len() && body.len() != 64 => Ok(body),
        _ => Ok(raw),
    }
}

fn subject_cn_contains(cert: &x509_cert::Certificate, needle: &str) -> bool {
    cert.tbs_certificate.subject.to_string().contains(needle)
}

/// A chain that verified: its generation and the VEK, as `sev` and as X.509.
pub(super) struct CheckedChain {
    pub(super) product: SnpProduct,
    pub(super) vek: Certificate,
    pub(super) vek_x: x509_cert::Certificate,
}

pub(super) fn check_chain(certs: &SnpCerts<'_>, now: UnixTime) -> Result<CheckedChain, SnpError> {
    let (ark, ark_x) = load_cert(certs.ark, SnpCert::Ark)?;
    let (ask, ask_x) = load_cert(certs.ask, SnpCert::Ask)?;
    let (vek, vek_x) = load_cert(certs.vek, SnpCert::Vek)?;
    // The root is pinned, not merely self-signed.
    let product =
        SnpProduct::from_ark_spki_sha384(&spki_sha384(&ark_x)?).ok_or(SnpError::UntrustedRoot)?;
    // Signatures down the chain (sev: RSASSA-PSS SHA-384).
    (&ark, &ark)
        .verify()
        .map_err(|_| SnpError::ChainSignature(SnpCert::Ark))?;
    (&ark, &ask)
        .verify()
        .map_err(|_| SnpError::ChainSignature(SnpCert::Ask))?;
    (&ask, &vek)
        .verify()
        .map_err(|_| SnpError::ChainSignature(SnpCert::Vek))?;
    // Validity at `now`.
    check_validity(&ark_x, SnpCert::Ark, now)?;
    check_validity(&ask_x, SnpCert::Ask, now)?;
    check_validity(&vek_x, SnpCert::Vek, now)?;
    Ok(CheckedChain {
        product,
        vek,
        vek_x,
    })
}

/// Verifies the chain alone: the ARK is a pinned AMD root, ARK → ASK/ASVK → VCEK/VLEK signatures hold and
/// every certificate is valid at `now`. Returns the product generation of the root.
pub fn verify_chain(certs: &SnpCerts<'_>, now: UnixTime) -> Result<SnpProduct, SnpError> {
    check_chain(certs, now).map(|c| c.product)
}

/// Checks that the report belongs to the VCEK/VLEK certificate `vek` (PEM or DER): the certificate kind
/// matches the report's signing key, the reported TCB equals the SPL extensions, and (VCEK) CHIP_ID equals
/// the hwID extension. No signature is checked here.
pub fn check_vek_binding(
    report: &SnpReport<'_>,
    vek: &[u8],
    product: SnpProduct,
    policy: &SnpPolicy,
) -> Result<TcbVersion, SnpError> {
    let (_, vek_x) = load_cert(vek, SnpCert::Vek)?;
    binding(report, &vek_x, product, policy)
}

pub(super) fn binding(
    report: &SnpReport<'_>,
    vek_x: &x509_cert::Certificate,
    product: SnpProduct,
    policy: &SnpPolicy,
) -> Result<TcbVersion, SnpError> {
    let signing_key = report.signing_key().ok_or(SnpError::SigningKeyMismatch)?;
    let kind_ok = match signing_key {
        SigningKey::Vcek => subject_cn_contains(vek_x, "SEV-VCEK"),
        SigningKey::Vlek => subject_cn_contains(vek_x, "SEV-VLEK"),
        SigningKey::None => false,
    };
    if !kind_ok {
        return Err(SnpError::SigningKeyMismatch);
    }
    let tcb = TcbVersion::decode(report.reported_tcb, product);
    let pairs: [(&'static str, &'static str, u8); 4] = [
        ("bootloader", "1.3.6.1.4.1.3704.1.3.1", tcb.bootloader),
        ("tee", "1.3.6.1.4.1.3704.1.3.2", tcb.tee),
        ("snp", "1.3.6.1.4.1.3704.1.3.3", tcb.snp),
        ("microcode", "1.3.6.1.4.1.3704.1.3.8", tcb.microcode),
    ];
    for (component, oid, got) in pairs {
        if spl(vek_x, oid)? != got {
            return Err(SnpError::TcbMismatch { component });
        }
    }
    if let Some(fmc) = tcb.fmc
        && spl(vek_x, "1.3.6.1.4.1.3704.1.3.9")? != fmc
    {
        return Err(SnpError::TcbMismatch { component: "fmc" });
    }
    // CHIP_ID == hwID (VCEK only; a VLEK is not chip-bound).
    if signing_key == SigningKey::Vcek {
        if report.chip_id_masked() {
            if !policy.allow_masked_chip_id {
                return Err(SnpError::ChipIdMasked);
            }
        } else {
            // Milan/Genoa: hwID is the 64-byte CHIP_ID. Turin: hwID is 8 bytes, the leading bytes of CHIP_ID.
            let hw = hw_id(vek_x)?;
            if hw.is_empty() || report.chip_id.get(..hw.len()) != Some(hw) {
                return Err(SnpError::ChipIdMismatch);
            }
        }
    }
    Ok(tcb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_roots_are_not_products() {
        assert_eq!(SnpProduct::from_ark_spki_sha384(&[0u8; 48]), None);
    }
}
