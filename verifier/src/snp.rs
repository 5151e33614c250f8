//! AMD SEV-SNP attestation reports (ABI report versions 2 and 3) and their VCEK/VLEK certificate chains.
//!
//! [`SnpReport::parse`] reads the 1184-byte `ATTESTATION_REPORT` (SEV-SNP Firmware ABI Specification,
//! Table "ATTESTATION_REPORT Structure") with the crate's bounds-checked [`Reader`](crate::wire::Reader).
//! [`verify_report`] checks, in this order: the ARK against the pinned AMD roots (Milan, Genoa, Turin); ARK
//! self-signature, ARK → ASK (or ASVK) → VCEK (or VLEK) with the `sev` crate (RSASSA-PSS/SHA-384); every
//! certificate's validity at the injected time; the report signature (ECDSA P-384/SHA-384) with `p384` over
//! the RAW report bytes `0x000..0x2A0` (the `sev` crate re-encodes its parsed struct before hashing, so it
//! is not used for this step); the reported TCB against the VCEK's SPL extensions; CHIP_ID against the hwID
//! extension; then the [`SnpPolicy`].
//!
//! One concern per file, all re-exported here: `report` (the wire format), `chain` (the pinned roots, AMD's
//! certificates, the chain and the VEK binding), `policy` ([`SnpPolicy`], [`check_policy`]), `error`
//! ([`SnpError`]), `crl` (AMD's CRL, signed by the ARK); this file holds the report signature,
//! [`VerifiedSnpReport`] and [`verify_report`].
//! [`cert_table`] parses the certificate table a host hands its guest with the report (configfs-tsm
//! `auxblob`), from which the agent takes the bundle's chain.

pub mod cert_table;
mod chain;
pub mod crl;
mod error;
mod policy;
mod report;

pub use chain::{
    ARK_GENOA_SPKI_SHA384, ARK_MILAN_SPKI_SHA384, ARK_TURIN_SPKI_SHA384, SnpCerts, SnpProduct,
    amd_ark_pem, amd_ask_pem, check_vek_binding, split_pem_certs, verify_chain,
};
pub use error::{SnpCert, SnpError};
pub use policy::{SnpPolicy, SnpShape, check_policy};
pub use report::{
    POLICY_DEBUG, POLICY_MIGRATE_MA, POLICY_SMT, REPORT_LEN, SIGNED_LEN, SigningKey, SnpReport,
    TcbVersion,
};

use p384::ecdsa::signature::Verifier as _;

use crate::collateral::UnixTime;
use chain::{binding, check_chain};

/// A report that verified under a policy. Only [`verify_report`] constructs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSnpReport {
    product: SnpProduct,
    version: u32,
    signing_key: SigningKey,
    measurement: [u8; 48],
    host_data: [u8; 32],
    report_data: [u8; 64],
    chip_id: [u8; 64],
    reported_tcb: TcbVersion,
    policy: u64,
    vmpl: u32,
}

impl VerifiedSnpReport {
    /// EPYC generation (from the pinned root).
    pub fn product(&self) -> SnpProduct {
        self.product
    }
    /// Report version.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// VCEK or VLEK.
    pub fn signing_key(&self) -> SigningKey {
        self.signing_key
    }
    /// Launch measurement.
    pub fn measurement(&self) -> &[u8; 48] {
        &self.measurement
    }
    /// HOST_DATA.
    pub fn host_data(&self) -> &[u8; 32] {
        &self.host_data
    }
    /// REPORT_DATA.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report_data
    }
    /// CHIP_ID.
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.chip_id
    }
    /// Reported TCB (equal to the VCEK's).
    pub fn reported_tcb(&self) -> TcbVersion {
        self.reported_tcb
    }
    /// Guest policy.
    pub fn guest_policy(&self) -> u64 {
        self.policy
    }
    /// VMPL.
    pub fn vmpl(&self) -> u32 {
        self.vmpl
    }
}

fn le72_to_be48(field: &[u8; 72]) -> Option<[u8; 48]> {
    let (low, high) = field.split_at(48);
    if high.iter().any(|b| *b != 0) {
        return None;
    }
    let mut out = [0u8; 48];
    for (o, i) in out.iter_mut().zip(low.iter().rev()) {
        *o = *i;
    }
    Some(out)
}

/// Checks the report signature over the raw bytes 0x000..0x2A0 with a P-384 public key (SEC1 bytes).
pub fn verify_report_signature(report: &SnpReport<'_>, vek_sec1: &[u8]) -> Result<(), SnpError> {
    if report.signature_algo != 1 {
        return Err(SnpError::UnsupportedSignatureAlgorithm(
            report.signature_algo,
        ));
    }
    let r = le72_to_be48(report.signature_r).ok_or(SnpError::Signature)?;
    let s = le72_to_be48(report.signature_s).ok_or(SnpError::Signature)?;
    let sig = p384::ecdsa::Signature::from_scalars(r, s).map_err(|_| SnpError::Signature)?;
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(vek_sec1)
        .map_err(|_| SnpError::CertParse(SnpCert::Vek))?;
    key.verify(report.signed_bytes, &sig)
        .map_err(|_| SnpError::Signature)
}

/// Verifies an SNP report with its AMD chain at `now` and applies `policy`.
///
/// Order: parse; chain (pinned ARK, signatures, validity); report signature over the raw bytes; VEK binding
/// (key kind, reported TCB == SPL extensions, CHIP_ID == hwID); policy.
pub fn verify_report(
    report: &[u8],
    certs: &SnpCerts<'_>,
    policy: &SnpPolicy,
    now: UnixTime,
) -> Result<VerifiedSnpReport, SnpError> {
    let parsed = SnpReport::parse(report)?;
    let chain = check_chain(certs, now)?;
    verify_report_signature(&parsed, chain.vek.public_key_sec1())?;
    let tcb = binding(&parsed, &chain.vek_x, chain.product, policy)?;
    check_policy(&parsed, chain.product, policy)?;
    Ok(VerifiedSnpReport {
        product: chain.product,
        version: parsed.version,
        signing_key: parsed.signing_key().ok_or(SnpError::SigningKeyMismatch)?,
        measurement: *parsed.measurement,
        host_data: *parsed.host_data,
        report_data: *parsed.report_data,
        chip_id: *parsed.chip_id,
        reported_tcb: tcb,
        policy: parsed.policy,
        vmpl: parsed.vmpl,
    })
}

/// Verifies an SNP report as [`verify_report`] does, taking a missing ASK or ARK from AMD's certificates
/// ([`amd_ask_pem`], [`amd_ark_pem`]) of each generation in turn ([`SnpProduct::ALL`]). The first
/// generation whose chain signs the VEK gives the verdict; when none does, the first one's error is
/// returned. With both `ask` and `ark` given, this is [`verify_report`].
pub fn verify_report_with_amd_certs(
    report: &[u8],
    vek: &[u8],
    ask: Option<&[u8]>,
    ark: Option<&[u8]>,
    policy: &SnpPolicy,
    now: UnixTime,
) -> Result<VerifiedSnpReport, SnpError> {
    let mut first_error = None;
    for product in SnpProduct::ALL {
        let certs = SnpCerts {
            ark: ark.unwrap_or(amd_ark_pem(product)),
            ask: ask.unwrap_or(amd_ask_pem(product)),
            vek,
        };
        match verify_report(report, &certs, policy, now) {
            Err(e @ SnpError::ChainSignature(_)) if ask.is_none() || ark.is_none() => {
                first_error.get_or_insert(e);
            }
            verdict => return verdict,
        }
    }
    Err(first_error.unwrap_or(SnpError::ChainSignature(SnpCert::Vek)))
}

/// Decodes a report file: raw 1184 bytes, or ASCII hex.
pub fn decode_report_file(bytes: &[u8]) -> Vec<u8> {
    crate::tdx::decode_quote_file(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_fields_are_little_endian_with_zero_tail() {
        let mut f = [0u8; 72];
        f[0] = 1;
        let be = le72_to_be48(&f).expect("zero tail");
        assert_eq!(be[47], 1);
        f[60] = 1;
        assert!(le72_to_be48(&f).is_none());
    }
}
