//! Intel TDX quotes (DCAP quote v4 and v5; TDX 1.0 and 1.5 TD report bodies).
//!
//! [`TdxQuote::parse`] reads the quote with the crate's bounds-checked [`Reader`] into borrowed, typed
//! fields (no cryptography). [`verify_quote`] hands the exact quote bytes and the collateral to `dcap-qvl`
//! (PCK chain to the pinned Intel SGX Root CA, CRLs, QE report, quote signature, TCB Info and QE Identity
//! signatures and validity, TCB level matching), maps its outcome and errors into [`TcbStatus`] and
//! [`TdxError`] here and nowhere else, and then applies a [`TdxPolicy`].
//!
//! Layout references: Intel TDX DCAP Quoting Library API, "Quote Format" (v4: header 48 bytes, TD report
//! 584 bytes, u32 signature data length, signature data; v5: a body descriptor `u16 type, u32 size` before
//! the body, type 2 = TDX 1.0 / 584 bytes, type 3 = TDX 1.5 / 648 bytes).
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use crate::collateral::{TdxCollateral, UnixTime};
use crate::wire::{ParseError, Reader};

/// TEE type of a TDX quote (header `tee_type`).
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Attestation key type 2: ECDSA-256 with P-256.
pub const ATTESTATION_KEY_ECDSA_P256: u16 = 2;
/// Intel's QE vendor ID.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// Cap on the signature-data length (real quotes carry about 4.3 KiB).
pub const MAX_SIGNATURE_DATA_LEN: usize = 64 * 1024;
/// Cap on a certification-data body (the PCK chain PEM).
pub const MAX_CERT_DATA_LEN: usize = 60 * 1024;
/// Size of a TDX 1.0 TD report body.
pub const TD10_BODY_LEN: usize = 584;
/// Size of a TDX 1.5 TD report body.
pub const TD15_BODY_LEN: usize = 648;
/// TD attribute bit 0 (TUD.DEBUG): the TD is debuggable.
pub const TD_ATTR_DEBUG: u64 = 1;

/// The DCAP quote header (Quote Format, "Quote Header", 48 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteHeader<'a> {
    /// Quote version: 4 or 5.
    pub version: u16,
    /// Attestation key type (2 = ECDSA P-256).
    pub attestation_key_type: u16,
    /// TEE type (0x81 = TDX).
    pub tee_type: u32,
    /// QE security version (v4: reserved).
    pub qe_svn: u16,
    /// PCE security version (v4: reserved).
    pub pce_svn: u16,
    /// QE vendor ID.
    pub qe_vendor_id: &'a [u8; 16],
    /// Custom user data (the first 16 bytes are the platform's QE identifier).
    pub user_data: &'a [u8; 20],
}

/// Which TD report body the quote carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TdBodyKind {
    /// TDX 1.0 (584 bytes; v4 quotes, or v5 with body type 2).
    Td10,
    /// TDX 1.5 (648 bytes; v5 with body type 3): adds TEE_TCB_SVN2 and MRSERVICETD.
    Td15,
}

/// The TD report body (Quote Format, "TD Quote Body"). 48-byte registers are SHA-384 values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdReport<'a> {
    /// TDX 1.0 or 1.5.
    pub kind: TdBodyKind,
    /// TEE_TCB_SVN: TDX module and SEAM loader security versions.
    pub tee_tcb_svn: &'a [u8; 16],
    /// MRSEAM: measurement of the TDX module.
    pub mr_seam: &'a [u8; 48],
    /// MRSIGNERSEAM: signer of the TDX module (zero for Intel).
    pub mr_signer_seam: &'a [u8; 48],
    /// SEAMATTRIBUTES.
    pub seam_attributes: &'a [u8; 8],
    /// TDATTRIBUTES (little-endian bit field; bit 0 = debug).
    pub td_attributes: &'a [u8; 8],
    /// XFAM: extended features allowed.
    pub xfam: &'a [u8; 8],
    /// MRTD: build-time measurement of the TD.
    pub mr_td: &'a [u8; 48],
    /// MRCONFIGID: software-defined configuration ID.
    pub mr_config_id: &'a [u8; 48],
    /// MROWNER.
    pub mr_owner: &'a [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: &'a [u8; 48],
    /// RTMR0..RTMR3: run-time measurement registers.
    pub rtmr: [&'a [u8; 48]; 4],
    /// REPORTDATA: 64 bytes chosen by the TD.
    pub report_data: &'a [u8; 64],
    /// TEE_TCB_SVN2 (TDX 1.5 only).
    pub tee_tcb_svn2: Option<&'a [u8; 16]>,
    /// MRSERVICETD (TDX 1.5 only).
    pub mr_service_td: Option<&'a [u8; 48]>,
}

impl TdReport<'_> {
    /// TD attributes as a little-endian integer.
    pub fn td_attributes_u64(&self) -> u64 {
        u64::from_le_bytes(*self.td_attributes)
    }

    /// Whether the TD is debuggable (TUD.DEBUG set): its memory and state are open to the host.
    pub fn is_debug(&self) -> bool {
        self.td_attributes_u64() & TD_ATTR_DEBUG != 0
    }

    /// XFAM as a little-endian integer.
    pub fn xfam_u64(&self) -> u64 {
        u64::from_le_bytes(*self.xfam)
    }
}

/// The quote's signature data (ECDSA quote signature data, "QE Certification Data" type 6 with a PCK chain
/// of type 5 inside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteSignatureData<'a> {
    /// ECDSA P-256 signature (r||s) over header and body.
    pub quote_signature: &'a [u8; 64],
    /// The attestation key (raw x||y).
    pub attestation_key: &'a [u8; 64],
    /// QE report (SGX report body, 384 bytes).
    pub qe_report: &'a [u8; 384],
    /// PCK signature over the QE report.
    pub qe_report_signature: &'a [u8; 64],
    /// QE authentication data.
    pub qe_auth_data: &'a [u8],
    /// Certification data type of the inner block (5 = PCK chain PEM).
    pub cert_data_type: u16,
    /// The inner certification data (PCK leaf, PCK CA, root; PEM, sometimes NUL-terminated).
    pub pck_chain_pem: &'a [u8],
}

/// A parsed TDX quote borrowing from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdxQuote<'a> {
    /// Header.
    pub header: QuoteHeader<'a>,
    /// v5 body descriptor type (2 or 3); None for v4.
    pub body_type: Option<u16>,
    /// TD report body.
    pub body: TdReport<'a>,
    /// Signature data.
    pub signature: QuoteSignatureData<'a>,
    /// The quote without trailing padding (header through signature data): what is verified.
    pub bytes: &'a [u8],
    /// Zero bytes after the signature data (real quotes come zero-padded to a buffer size).
    pub padding: usize,
}

fn parse_body<'a>(r: &mut Reader<'a>, kind: TdBodyKind) -> Result<TdReport<'a>, ParseError> {
    let tee_tcb_svn = r.take_array("td_report.tee_tcb_svn")?;
    let mr_seam = r.take_array("td_report.mr_seam")?;
    let mr_signer_seam = r.take_array("td_report.mr_signer_seam")?;
    let seam_attributes = r.take_array("td_report.seam_attributes")?;
    let td_attributes = r.take_array("td_report.td_attributes")?;
    let xfam = r.take_array("td_report.xfam")?;
    let mr_td = r.take_array("td_report.mr_td")?;
    let mr_config_id = r.take_array("td_report.mr_config_id")?;
    let mr_owner = r.take_array("td_report.mr_owner")?;
    let mr_owner_config = r.take_array("td_report.mr_owner_config")?;
    let rtmr = [
        r.take_array("td_report.rtmr0")?,
        r.take_array("td_report.rtmr1")?,
        r.take_array("td_report.rtmr2")?,
        r.take_array("td_report.rtmr3")?,
    ];
    let report_data = r.take_array("td_report.report_data")?;
    let (tee_tcb_svn2, mr_service_td) = match kind {
        TdBodyKind::Td10 => (None, None),
        TdBodyKind::Td15 => (
            Some(r.take_array("td_report.tee_tcb_svn2")?),
            Some(r.take_array("td_report.mr_service_td")?),
        ),
    };
    Ok(TdReport {
        kind,
        tee_tcb_svn,
        mr_seam,
        mr_signer_seam,
        seam_attributes,
        td_attributes,
        xfam,
        mr_td,
        mr_config_id,
        mr_owner,
        mr_owner_config,
        rtmr,
        report_data,
        tee_tcb_svn2,
        mr_service_td,
    })
}

fn parse_signature_data<'a>(mut r: Reader<'a>) -> Result<QuoteSignatureData<'a>, ParseError> {
    let quote_signature = r.take_array("signature_data.quote_signature")?;
    let attestation_key = r.take_array("signature_data.attestation_key")?;
    let outer_type = r.u16_le("signature_data.cert_data_type")?;
    if outer_type != 6 {
        return Err(ParseError::InvalidValue {
            field: "signature_data.cert_data_type",
        });
    }
    let outer_len = r.u32_le("signature_data.cert_data_size")?;
    let mut c = r.sub(
        "signature_data.cert_data",
        usize::try_from(outer_len).unwrap_or(usize::MAX),
        MAX_SIGNATURE_DATA_LEN,
    )?;
    r.finish("signature_data")?;
    let qe_report = c.take_array("qe_cert_data.qe_report")?;
    let qe_report_signature = c.take_array("qe_cert_data.qe_report_signature")?;
    let auth_len = c.u16_le("qe_cert_data.qe_auth_data_size")?;
    let qe_auth_data = c.take("qe_cert_data.qe_auth_data", usize::from(auth_len))?;
    let cert_data_type = c.u16_le("qe_cert_data.cert_data_type")?;
    if cert_data_type != 5 {
        return Err(ParseError::InvalidValue {
            field: "qe_cert_data.cert_data_type",
        });
    }
    let chain_len = c.u32_le("qe_cert_data.cert_data_size")?;
    let chain = c.sub(
        "qe_cert_data.pck_chain",
        usize::try_from(chain_len).unwrap_or(usize::MAX),
        MAX_CERT_DATA_LEN,
    )?;
    c.finish("qe_cert_data")?;
    Ok(QuoteSignatureData {
        quote_signature,
        attestation_key,
        qe_report,
        qe_report_signature,
        qe_auth_data,
        cert_data_type,
        pck_chain_pem: chain.rest(),
    })
}

impl<'a> TdxQuote<'a> {
    /// Parses a TDX quote (v4 or v5). Zero bytes after the signature data are accepted as padding and
    /// counted in [`TdxQuote::padding`]; any non-zero byte there is [`ParseError::TrailingBytes`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(bytes);
        let version = r.u16_le("header.version")?;
        if version != 4 && version != 5 {
            return Err(ParseError::UnsupportedVersion {
                structure: "TDX quote",
                version: u32::from(version),
            });
        }
        let attestation_key_type = r.u16_le("header.attestation_key_type")?;
        if attestation_key_type != ATTESTATION_KEY_ECDSA_P256 {
            return Err(ParseError::InvalidValue {
                field: "header.attestation_key_type",
            });
        }
        let tee_type = r.u32_le("header.tee_type")?;
        if tee_type != TEE_TYPE_TDX {
            return Err(ParseError::InvalidValue {
                field: "header.tee_type",
            });
        }
        let qe_svn = r.u16_le("header.qe_svn")?;
        let pce_svn = r.u16_le("header.pce_svn")?;
        let qe_vendor_id = r.take_array("header.qe_vendor_id")?;
        let user_data = r.take_array("header.user_data")?;
        let header = QuoteHeader {
            version,
            attestation_key_type,
            tee_type,
            qe_svn,
            pce_svn,
            qe_vendor_id,
            user_data,
        };

        let (body_type, body) = if version == 4 {
            let mut b = r.sub("td_report", TD10_BODY_LEN, TD10_BODY_LEN)?;
            let body = parse_body(&mut b, TdBodyKind::Td10)?;
            b.finish("td_report")?;
            (None, body)
        } else {
            let body_type = r.u16_le("body_descriptor.type")?;
            let size = r.u32_le("body_descriptor.size")?;
            let (kind, want) = match body_type {
                2 => (TdBodyKind::Td10, TD10_BODY_LEN),
                3 => (TdBodyKind::Td15, TD15_BODY_LEN),
                other => {
                    return Err(ParseError::UnsupportedVersion {
                        structure: "TD quote body type",
                        version: u32::from(other),
                    });
                }
            };
            if usize::try_from(size).ok() != Some(want) {
                return Err(ParseError::InvalidValue {
                    field: "body_descriptor.size",
                });
            }
            let mut b = r.sub("td_report", want, want)?;
            let body = parse_body(&mut b, kind)?;
            b.finish("td_report")?;
            (Some(body_type), body)
        };

        let sig_len = r.u32_le("signature_data_len")?;
        let sig = r.sub(
            "signature_data",
            usize::try_from(sig_len).unwrap_or(usize::MAX),
            MAX_SIGNATURE_DATA_LEN,
        )?;
        let signature = parse_signature_data(sig)?;
        let used = r.offset();
        let padding = r.remaining();
        r.finish_zero_padded("TDX quote")?;
        let exact = bytes
            .get(..used)
            .ok_or(ParseError::Internal("quote length"))?;
        Ok(Self {
            header,
            body_type,
            body,
            signature,
            bytes: exact,
            padding,
        })
    }

    /// The PCK chain PEM without a trailing NUL.
    pub fn pck_chain_pem(&self) -> &'a [u8] {
        let pem = self.signature.pck_chain_pem;
        let end = pem
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |i| i.saturating_add(1));
        pem.get(..end).unwrap_or(pem)
    }
}

/// TCB status of the platform as the collateral grades it (Intel PCS TCB Info `tcbStatus`, converged with
/// the QE Identity and, for TDX 1.5, the TDX module status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum TcbStatus {
    /// Configuration and software hardening are needed.
    ConfigurationAndSwHardeningNeeded,
    /// Platform configuration is needed.
    ConfigurationNeeded,
    /// The TCB is out of date.
    OutOfDate,
    /// The TCB is out of date and configuration is needed.
    OutOfDateConfigurationNeeded,
    /// The TCB is revoked (dcap-qvl refuses these outright; kept for completeness).
    Revoked,
    /// Software hardening is needed.
    SwHardeningNeeded,
    /// TDX 1.5: launched on an out-of-date TCB whose current TCB is up to date; relaunch advised.
    TdRelaunchAdvised,
    /// TDX 1.5: relaunch advised, and configuration is needed.
    TdRelaunchAdvisedConfigurationNeeded,
    /// Up to date.
    UpToDate,
}

impl TcbStatus {
    /// The PCS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigurationAndSwHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            Self::ConfigurationNeeded => "ConfigurationNeeded",
            Self::OutOfDate => "OutOfDate",
            Self::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            Self::Revoked => "Revoked",
            Self::SwHardeningNeeded => "SWHardeningNeeded",
            Self::TdRelaunchAdvised => "TDRelaunchAdvised",
            Self::TdRelaunchAdvisedConfigurationNeeded => "TDRelaunchAdvisedConfigurationNeeded",
            Self::UpToDate => "UpToDate",
        }
    }

    /// The one place dcap-qvl's status strings are mapped.
    fn from_qvl(s: &str) -> Option<Self> {
        Some(match s {
            "UpToDate" => Self::UpToDate,
            "SWHardeningNeeded" => Self::SwHardeningNeeded,
            "ConfigurationNeeded" => Self::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => Self::ConfigurationAndSwHardeningNeeded,
            "OutOfDate" => Self::OutOfDate,
            "OutOfDateConfigurationNeeded" => Self::OutOfDateConfigurationNeeded,
            "Revoked" => Self::Revoked,
            "TDRelaunchAdvised" => Self::TdRelaunchAdvised,
            "TDRelaunchAdvisedConfigurationNeeded" => Self::TdRelaunchAdvisedConfigurationNeeded,
            _ => return None,
        })
    }
}

impl core::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A measurement register a [`TdxPolicy`] can pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TdxRegister {
    /// MRCONFIGID.
    MrConfigId,
    /// MROWNER.
    MrOwner,
    /// MROWNERCONFIG.
    MrOwnerConfig,
    /// MRSEAM.
    MrSeam,
    /// MRTD.
    MrTd,
    /// RTMR0..RTMR3 (index).
    Rtmr(u8),
}

/// Why a TDX quote was not accepted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TdxError {
    /// An advisory is not in the policy's allow-list.
    #[error("advisory {0} is not allowed by the policy")]
    AdvisoryNotAllowed(String),
    /// A certificate in the PCK, TCB-signing or QE-identity chain does not verify to the trust anchor, is
    /// revoked or is outside its validity window.
    #[error("certificate chain does not verify: {0}")]
    Chain(&'static str),
    /// The collateral (TCB Info, QE Identity, CRL) is expired or not yet valid at the given time.
    #[error("collateral is not valid at the given time: {0}")]
    CollateralExpired(&'static str),
    /// The collateral is malformed, signed wrongly or does not belong to this platform.
    #[error("collateral is invalid: {0}")]
    CollateralInvalid(&'static str),
    /// The TD is debuggable and the policy forbids it.
    #[error("the TD is debuggable")]
    Debug,
    /// The quote could not be parsed.
    #[error("malformed quote: {0}")]
    Malformed(#[from] ParseError),
    /// A measurement register differs from the policy's expected value.
    #[error("{register:?} does not match the expected value")]
    MeasurementMismatch {
        /// The register.
        register: TdxRegister,
    },
    /// dcap-qvl rejected the quote for a reason this crate has no category for.
    #[error("quote verification failed: {0}")]
    Other(&'static str),
    /// REPORTDATA differs from the expected value (wrong nonce or key binding).
    #[error("REPORTDATA does not match the expected value")]
    ReportDataMismatch,
    /// The quote or QE report signature does not verify.
    #[error("signature does not verify: {0}")]
    Signature(&'static str),
    /// The TCB status is not in the policy's accepted set.
    #[error("TCB status {0} is not accepted by the policy")]
    TcbNotAccepted(TcbStatus),
    /// No TCB level of the TCB Info matches the platform (TCB not supported).
    #[error("no TCB level of the TCB Info matches the platform")]
    TcbNotSupported,
    /// The TCB is revoked.
    #[error("the TCB is revoked")]
    TcbRevoked,
    /// A TD attribute is not allowed (migratable, profiling, reserved bits, SEPT_VE_DISABLE clear, service TD).
    #[error("TD attributes are not allowed: {0}")]
    TdAttributes(&'static str),
    /// dcap-qvl reported a TCB status this crate does not know.
    #[error("unknown TCB status from the verifier")]
    UnknownTcbStatus,
    /// XFAM differs from the expected value.
    #[error("XFAM does not match the expected value")]
    XfamMismatch,
}

/// The broad class of a [`TdxError`], for callers that report or count failures by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum TdxErrorCategory {
    /// A certificate chain or trust-anchor failure.
    Chain,
    /// Collateral outside its validity window.
    CollateralExpired,
    /// Collateral malformed, wrongly signed or for another platform.
    CollateralInvalid,
    /// The quote is malformed.
    Malformed,
    /// The quote is genuine but the policy refuses it (debug, measurements, REPORTDATA, attributes).
    Policy,
    /// A quote or QE report signature failure.
    Signature,
    /// The TCB level: unsupported, revoked, not accepted, or an advisory not allowed.
    Tcb,
    /// Anything else dcap-qvl reported.
    Other,
}

impl TdxError {
    /// The broad class of this error.
    pub fn category(&self) -> TdxErrorCategory {
        match self {
            Self::Chain(_) => TdxErrorCategory::Chain,
            Self::CollateralExpired(_) => TdxErrorCategory::CollateralExpired,
            Self::CollateralInvalid(_) => TdxErrorCategory::CollateralInvalid,
            Self::Malformed(_) => TdxErrorCategory::Malformed,
            Self::Debug
            | Self::MeasurementMismatch { .. }
            | Self::ReportDataMismatch
            | Self::TdAttributes(_)
            | Self::XfamMismatch => TdxErrorCategory::Policy,
            Self::Signature(_) => TdxErrorCategory::Signature,
            Self::AdvisoryNotAllowed(_)
            | Self::TcbNotAccepted(_)
            | Self::TcbNotSupported
            | Self::TcbRevoked
            | Self::UnknownTcbStatus => TdxErrorCategory::Tcb,
            Self::Other(_) => TdxErrorCategory::Other,
        }
    }
}

/// The one place dcap-qvl's `anyhow` errors become [`TdxError`]: by the messages it documents in its
/// verification steps (checked against dcap-qvl 0.7).
fn map_qvl_error(e: &anyhow::Error) -> TdxError {
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let has = |needle: &str| chain.iter().any(|m| m.contains(needle));
    if has("No matching TCB level") || has("TDX module identity") || has("TDX module TCB level") {
        return TdxError::TcbNotSupported;
    }
    if has("Revoked") && has("TCB status") {
        return TdxError::TcbRevoked;
    }
    if has("TCBInfo expired") || has("TCBInfo issue date is in the future") {
        return TdxError::CollateralExpired("TCB Info");
    }
    if has("QE Identity expired") || has("QE Identity issue date is in the future") {
        return TdxError::CollateralExpired("QE Identity");
    }
    if has("Signature is invalid for qe_report") {
        return TdxError::Signature("QE report");
    }
    if has("QE report hash mismatch") {
        return TdxError::Signature("QE report does not bind the attestation key");
    }
    if has("Signature is invalid for tcb_info") {
        return TdxError::CollateralInvalid("TCB Info signature");
    }
    if has("Signature is invalid for qe_identity") {
        return TdxError::CollateralInvalid("QE Identity signature");
    }
    if has("ISV enclave report signature")
        || has("Signature is invalid for quote")
        || has("ISV report")
    {
        return TdxError::Signature("quote");
    }
    if has("CertExpired") || has("CertNotValidYet") || (has("expired") && has("ert")) {
        return TdxError::Chain("certificate outside its validity window");
    }
    if has("InvalidCrlSignatureForPublicKey") {
        return TdxError::Chain("CRL not signed by the trust anchor");
    }
    if has("CrlExpired") || (has("CRL") && has("xpired")) {
        return TdxError::CollateralExpired("CRL");
    }
    if has("CertRevoked") {
        return TdxError::Chain("certificate revoked");
    }
    if has("UnknownIssuer")
        || has("BadSignature")
        || has("InvalidSignatureForPublicKey")
        || has("root ca")
    {
        return TdxError::Chain("unknown issuer or bad certificate signature");
    }
    if has("PCK certificate")
        || has("Certificate chain is too short")
        || has("Failed to extract PCK")
    {
        return TdxError::Chain("PCK chain");
    }
    if has("Fmspc mismatch") || has("non-TDX TCB info") || has("QE Identity id/version") {
        return TdxError::CollateralInvalid("collateral does not match the quote");
    }
    if has("Failed to decode TcbInfo") || has("Failed to decode QeIdentity") || has("CRL") {
        return TdxError::CollateralInvalid("malformed collateral");
    }
    if has("MRSIGNER")
        || has("ISVPRODID")
        || has("QE ISVSVN")
        || has("MISCSELECT")
        || has("QE report attributes")
    {
        return TdxError::Chain("QE report does not match the QE Identity");
    }
    if has("Debug mode is enabled") {
        return TdxError::Debug;
    }
    if has("TD profiling") {
        return TdxError::TdAttributes("profiling enabled");
    }
    if has("TD migration") {
        return TdxError::TdAttributes("migratable");
    }
    if has("Reserved bits in TD attributes") {
        return TdxError::TdAttributes("reserved bits set");
    }
    if has("SEPT_VE_DISABLE") {
        return TdxError::TdAttributes("SEPT_VE_DISABLE clear");
    }
    if has("SERVTD_EXT") || has("MR service TD") {
        return TdxError::TdAttributes("service TD");
    }
    if has("decode quote") || has("quote version") || has("attestation key type") || has("TEE type")
    {
        return TdxError::Malformed(ParseError::InvalidValue { field: "quote" });
    }
    TdxError::Other("unclassified dcap-qvl error")
}

/// One accepted VM shape: its MRTD and, when pinned, its RTMR0 (both depend on the VM shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdxShape {
    /// MRTD.
    pub mr_td: [u8; 48],
    /// RTMR0 for this shape, when pinned.
    pub rtmr0: Option<[u8; 48]>,
}

/// What a TDX quote must satisfy beyond its signatures. Defaults are secure: a debug TD is rejected, only
/// `UpToDate` is accepted, no advisory is allowed, and no measurement is pinned (set them from the
/// published reference values). A list that is empty means "not pinned"; a non-empty list means "one of".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxPolicy {
    /// Accept a debuggable TD (never in production).
    pub dangerous_allow_debug: bool,
    /// TCB statuses that are accepted.
    pub accepted_tcb_statuses: Vec<TcbStatus>,
    /// Advisory IDs (e.g. `INTEL-SA-00837`) that are tolerated.
    pub allowed_advisories: Vec<String>,
    /// Accepted VM shapes (MRTD, RTMR0).
    pub shapes: Vec<TdxShape>,
    /// Expected RTMR0..RTMR3, independent of shape (RTMR3 usually comes from the event-log replay instead).
    pub rtmr: [Option<[u8; 48]>; 4],
    /// Allowed MRCONFIGID values.
    pub mr_config_id: Vec<[u8; 48]>,
    /// Allowed MROWNER values.
    pub mr_owner: Vec<[u8; 48]>,
    /// Allowed MROWNERCONFIG values.
    pub mr_owner_config: Vec<[u8; 48]>,
    /// Allowed MRSEAM values (TDX module builds).
    pub mr_seam: Vec<[u8; 48]>,
    /// Required TD attributes (exact).
    pub td_attributes: Option<u64>,
    /// Required XFAM (exact).
    pub xfam: Option<u64>,
    /// Expected REPORTDATA (the key binding and freshness).
    pub report_data: Option<[u8; 64]>,
    /// The trust anchor: DER of the Intel SGX Root CA (pinned by default).
    pub root_ca_der: Vec<u8>,
}

impl Default for TdxPolicy {
    fn default() -> Self {
        Self {
            dangerous_allow_debug: false,
            accepted_tcb_statuses: vec![TcbStatus::UpToDate],
            allowed_advisories: Vec::new(),
            shapes: Vec::new(),
            rtmr: [None; 4],
            mr_config_id: Vec::new(),
            mr_owner: Vec::new(),
            mr_owner_config: Vec::new(),
            mr_seam: Vec::new(),
            td_attributes: None,
            xfam: None,
            report_data: None,
            root_ca_der: INTEL_SGX_ROOT_CA_DER.to_vec(),
        }
    }
}

/// Intel SGX Root CA (DER, 659 bytes), the trust anchor of every PCK chain: CN=Intel SGX Root CA,
/// O=Intel Corporation, valid 2018-05-21..2049-12-31, as Intel publishes it with its DCAP collateral
/// (byte-identical to the copy dcap-qvl embeds and to `tdx/intel_sgx_root_ca.der` of the evidence set, which a
/// test checks).
pub static INTEL_SGX_ROOT_CA_DER: &[u8] = &[
    0x30, 0x82, 0x02, 0x8f, 0x30, 0x82, 0x02, 0x34, 0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x14, 0x22,
    0x65, 0x0c, 0xd6, 0x5a, 0x9d, 0x34, 0x89, 0xf3, 0x83, 0xb4, 0x95, 0x52, 0xbf, 0x50, 0x1b, 0x39,
    0x27, 0x06, 0xac, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02, 0x30,
    0x68, 0x31, 0x1a, 0x30, 0x18, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x11, 0x49, 0x6e, 0x74, 0x65,
    0x6c, 0x20, 0x53, 0x47, 0x58, 0x20, 0x52, 0x6f, 0x6f, 0x74, 0x20, 0x43, 0x41, 0x31, 0x1a, 0x30,
    0x18, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x11, 0x49, 0x6e, 0x74, 0x65, 0x6c, 0x20, 0x43, 0x6f,
    0x72, 0x70, 0x6f, 0x72, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x31, 0x14, 0x30, 0x12, 0x06, 0x03, 0x55,
    0x04, 0x07, 0x0c, 0x0b, 0x53, 0x61, 0x6e, 0x74, 0x61, 0x20, 0x43, 0x6c, 0x61, 0x72, 0x61, 0x31,
    0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x08, 0x0c, 0x02, 0x43, 0x41, 0x31, 0x0b, 0x30, 0x09,
    0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, 0x55, 0x53, 0x30, 0x1e, 0x17, 0x0d, 0x31, 0x38, 0x30,
    0x35, 0x32, 0x31, 0x31, 0x30, 0x34, 0x35, 0x31, 0x30, 0x5a, 0x17, 0x0d, 0x34, 0x39, 0x31, 0x32,
    0x33, 0x31, 0x32, 0x33, 0x35, 0x39, 0x35, 0x39, 0x5a, 0x30, 0x68, 0x31, 0x1a, 0x30, 0x18, 0x06,
    0x03, 0x55, 0x04, 0x03, 0x0c, 0x11, 0x49, 0x6e, 0x74, 0x65, 0x6c, 0x20, 0x53, 0x47, 0x58, 0x20,
    0x52, 0x6f, 0x6f, 0x74, 0x20, 0x43, 0x41, 0x31, 0x1a, 0x30, 0x18, 0x06, 0x03, 0x55, 0x04, 0x0a,
    0x0c, 0x11, 0x49, 0x6e, 0x74, 0x65, 0x6c, 0x20, 0x43, 0x6f, 0x72, 0x70, 0x6f, 0x72, 0x61, 0x74,
    0x69, 0x6f, 0x6e, 0x31, 0x14, 0x30, 0x12, 0x06, 0x03, 0x55, 0x04, 0x07, 0x0c, 0x0b, 0x53, 0x61,
    0x6e, 0x74, 0x61, 0x20, 0x43, 0x6c, 0x61, 0x72, 0x61, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55,
    0x04, 0x08, 0x0c, 0x02, 0x43, 0x41, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13,
    0x02, 0x55, 0x53, 0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04, 0x0b, 0xa9,
    0xc4, 0xc0, 0xc0, 0xc8, 0x61, 0x93, 0xa3, 0xfe, 0x23, 0xd6, 0xb0, 0x2c, 0xda, 0x10, 0xa8, 0xbb,
    0xd4, 0xe8, 0x8e, 0x48, 0xb4, 0x45, 0x85, 0x61, 0xa3, 0x6e, 0x70, 0x55, 0x25, 0xf5, 0x67, 0x91,
    0x8e, 0x2e, 0xdc, 0x88, 0xe4, 0x0d, 0x86, 0x0b, 0xd0, 0xcc, 0x4e, 0xe2, 0x6a, 0xac, 0xc9, 0x88,
    0xe5, 0x05, 0xa9, 0x53, 0x55, 0x8c, 0x45, 0x3f, 0x6b, 0x09, 0x04, 0xae, 0x73, 0x94, 0xa3, 0x81,
    0xbb, 0x30, 0x81, 0xb8, 0x30, 0x1f, 0x06, 0x03, 0x55, 0x1d, 0x23, 0x04, 0x18, 0x30, 0x16, 0x80,
    0x14, 0x22, 0x65, 0x0c, 0xd6, 0x5a, 0x9d, 0x34, 0x89, 0xf3, 0x83, 0xb4, 0x95, 0x52, 0xbf, 0x50,
    0x1b, 0x39, 0x27, 0x06, 0xac, 0x30, 0x52, 0x06, 0x03, 0x55, 0x1d, 0x1f, 0x04, 0x4b, 0x30, 0x49,
    0x30, 0x47, 0xa0, 0x45, 0xa0, 0x43, 0x86, 0x41, 0x68, 0x74, 0x74, 0x70, 0x73, 0x3a, 0x2f, 0x2f,
    0x63, 0x65, 0x72, 0x74, 0x69, 0x66, 0x69, 0x63, 0x61, 0x74, 0x65, 0x73, 0x2e, 0x74, 0x72, 0x75,
    0x73, 0x74, 0x65, 0x64, 0x73, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65, 0x73, 0x2e, 0x69, 0x6e, 0x74,
    0x65, 0x6c, 0x2e, 0x63, 0x6f, 0x6d, 0x2f, 0x49, 0x6e, 0x74, 0x65, 0x6c, 0x53, 0x47, 0x58, 0x52,
    0x6f, 0x6f, 0x74, 0x43, 0x41, 0x2e, 0x64, 0x65, 0x72, 0x30, 0x1d, 0x06, 0x03, 0x55, 0x1d, 0x0e,
    0x04, 0x16, 0x04, 0x14, 0x22, 0x65, 0x0c, 0xd6, 0x5a, 0x9d, 0x34, 0x89, 0xf3, 0x83, 0xb4, 0x95,
    0x52, 0xbf, 0x50, 0x1b, 0x39, 0x27, 0x06, 0xac, 0x30, 0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01,
    0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x01, 0x06, 0x30, 0x12, 0x06, 0x03, 0x55, 0x1d, 0x13, 0x01,
    0x01, 0xff, 0x04, 0x08, 0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x01, 0x30, 0x0a, 0x06, 0x08,
    0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02, 0x03, 0x49, 0x00, 0x30, 0x46, 0x02, 0x21, 0x00,
    0xe5, 0xbf, 0xe5, 0x09, 0x11, 0xf9, 0x2f, 0x42, 0x89, 0x20, 0xdc, 0x36, 0x8a, 0x30, 0x2e, 0xe3,
    0xd1, 0x2e, 0xc5, 0x86, 0x7f, 0xf6, 0x22, 0xec, 0x64, 0x97, 0xf7, 0x80, 0x60, 0xc1, 0x3c, 0x20,
    0x02, 0x21, 0x00, 0xe0, 0x9d, 0x25, 0xac, 0x7a, 0x0c, 0xb3, 0xe5, 0xe8, 0xe6, 0x8f, 0xec, 0x5f,
    0xa3, 0xbd, 0x41, 0x6c, 0x47, 0x44, 0x0b, 0xd9, 0x50, 0x63, 0x9d, 0x45, 0x0e, 0xdc, 0xbe, 0xa4,
    0x57, 0x6a, 0xa2,
];

/// A quote that verified under a policy. Only [`verify_quote`] constructs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTdxQuote {
    tcb_status: TcbStatus,
    advisory_ids: Vec<String>,
    version: u16,
    kind: TdBodyKind,
    mr_td: [u8; 48],
    rtmr: [[u8; 48]; 4],
    mr_config_id: [u8; 48],
    mr_owner: [u8; 48],
    mr_owner_config: [u8; 48],
    mr_seam: [u8; 48],
    report_data: [u8; 64],
    td_attributes: u64,
    xfam: u64,
    tee_tcb_svn: [u8; 16],
    tee_tcb_svn2: Option<[u8; 16]>,
}

impl VerifiedTdxQuote {
    /// TCB status.
    pub fn tcb_status(&self) -> TcbStatus {
        self.tcb_status
    }
    /// Advisory IDs that apply to the platform's TCB level.
    pub fn advisory_ids(&self) -> &[String] {
        &self.advisory_ids
    }
    /// Quote version (4 or 5).
    pub fn version(&self) -> u16 {
        self.version
    }
    /// TDX 1.0 or 1.5 body.
    pub fn body_kind(&self) -> TdBodyKind {
        self.kind
    }
    /// MRTD.
    pub fn mr_td(&self) -> &[u8; 48] {
        &self.mr_td
    }
    /// RTMR0..RTMR3.
    pub fn rtmr(&self) -> &[[u8; 48]; 4] {
        &self.rtmr
    }
    /// MRCONFIGID.
    pub fn mr_config_id(&self) -> &[u8; 48] {
        &self.mr_config_id
    }
    /// MROWNER.
    pub fn mr_owner(&self) -> &[u8; 48] {
        &self.mr_owner
    }
    /// MROWNERCONFIG.
    pub fn mr_owner_config(&self) -> &[u8; 48] {
        &self.mr_owner_config
    }
    /// MRSEAM.
    pub fn mr_seam(&self) -> &[u8; 48] {
        &self.mr_seam
    }
    /// REPORTDATA.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report_data
    }
    /// TD attributes.
    pub fn td_attributes(&self) -> u64 {
        self.td_attributes
    }
    /// XFAM.
    pub fn xfam(&self) -> u64 {
        self.xfam
    }
    /// TEE_TCB_SVN.
    pub fn tee_tcb_svn(&self) -> &[u8; 16] {
        &self.tee_tcb_svn
    }
    /// TEE_TCB_SVN2 (TDX 1.5).
    pub fn tee_tcb_svn2(&self) -> Option<&[u8; 16]> {
        self.tee_tcb_svn2.as_ref()
    }
}

/// The outcome of the cryptographic part alone (dcap-qvl), before policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxCryptoOutcome {
    /// TCB status.
    pub tcb_status: TcbStatus,
    /// Advisory IDs.
    pub advisory_ids: Vec<String>,
}

/// Runs dcap-qvl on the exact quote bytes (debug and other TD attributes are left to [`TdxPolicy`] and
/// [`check_policy`], except the attribute checks dcap-qvl always makes).
pub fn verify_crypto(
    quote: &TdxQuote<'_>,
    collateral: &TdxCollateral,
    root_ca_der: &[u8],
    now: UnixTime,
) -> Result<TdxCryptoOutcome, TdxError> {
    let verifier = dcap_qvl::verify::QuoteVerifier::new(root_ca_der.to_vec()).allow_debug(true);
    let report = verifier
        .verify(quote.bytes, &collateral.inner, now.as_secs())
        .map_err(|e| map_qvl_error(&e))?;
    let tcb_status = TcbStatus::from_qvl(&report.status).ok_or(TdxError::UnknownTcbStatus)?;
    Ok(TdxCryptoOutcome {
        tcb_status,
        advisory_ids: report.advisory_ids,
    })
}

/// Applies the policy to a parsed quote whose signatures verified with `outcome`.
pub fn check_policy(
    quote: &TdxQuote<'_>,
    outcome: &TdxCryptoOutcome,
    policy: &TdxPolicy,
) -> Result<(), TdxError> {
    let body = &quote.body;
    if body.is_debug() && !policy.dangerous_allow_debug {
        return Err(TdxError::Debug);
    }
    if outcome.tcb_status == TcbStatus::Revoked {
        return Err(TdxError::TcbRevoked);
    }
    if !policy.accepted_tcb_statuses.contains(&outcome.tcb_status) {
        return Err(TdxError::TcbNotAccepted(outcome.tcb_status));
    }
    if let Some(adv) = outcome
        .advisory_ids
        .iter()
        .find(|a| !policy.allowed_advisories.contains(a))
    {
        return Err(TdxError::AdvisoryNotAllowed(adv.clone()));
    }
    if !policy.shapes.is_empty() {
        let same_mrtd: Vec<&TdxShape> = policy
            .shapes
            .iter()
            .filter(|s| &s.mr_td == body.mr_td)
            .collect();
        if same_mrtd.is_empty() {
            return Err(TdxError::MeasurementMismatch {
                register: TdxRegister::MrTd,
            });
        }
        if !same_mrtd
            .iter()
            .any(|s| s.rtmr0.is_none_or(|r| &r == body.rtmr[0]))
        {
            return Err(TdxError::MeasurementMismatch {
                register: TdxRegister::Rtmr(0),
            });
        }
    }
    for (i, (want, got)) in policy.rtmr.iter().zip(body.rtmr.iter()).enumerate() {
        if want.as_ref().is_some_and(|w| w != *got) {
            let index = u8::try_from(i).map_err(|_| TdxError::Other("RTMR index"))?;
            return Err(TdxError::MeasurementMismatch {
                register: TdxRegister::Rtmr(index),
            });
        }
    }
    type AllowList<'p, 'q> = (TdxRegister, &'p Vec<[u8; 48]>, &'q [u8; 48]);
    let lists: [AllowList<'_, '_>; 4] = [
        (
            TdxRegister::MrConfigId,
            &policy.mr_config_id,
            body.mr_config_id,
        ),
        (TdxRegister::MrOwner, &policy.mr_owner, body.mr_owner),
        (
            TdxRegister::MrOwnerConfig,
            &policy.mr_owner_config,
            body.mr_owner_config,
        ),
        (TdxRegister::MrSeam, &policy.mr_seam, body.mr_seam),
    ];
    for (register, allowed, got) in lists {
        if !allowed.is_empty() && !allowed.iter().any(|a| a == got) {
            return Err(TdxError::MeasurementMismatch { register });
        }
    }
    if policy
        .td_attributes
        .is_some_and(|a| a != body.td_attributes_u64())
    {
        return Err(TdxError::TdAttributes("not the required value"));
    }
    if policy.xfam.is_some_and(|x| x != body.xfam_u64()) {
        return Err(TdxError::XfamMismatch);
    }
    if policy
        .report_data
        .as_ref()
        .is_some_and(|r| r != body.report_data)
    {
        return Err(TdxError::ReportDataMismatch);
    }
    Ok(())
}

/// Verifies a TDX quote against collateral at `now` and applies `policy`.
///
/// Order: parse (our reader; trailing zero padding allowed), then dcap-qvl (signatures, chains, CRLs,
/// collateral validity, TCB level), then the policy (debug, TCB status, advisories, measurements,
/// REPORTDATA).
pub fn verify_quote(
    quote: &[u8],
    collateral: &TdxCollateral,
    policy: &TdxPolicy,
    now: UnixTime,
) -> Result<VerifiedTdxQuote, TdxError> {
    let parsed = TdxQuote::parse(quote)?;
    let outcome = verify_crypto(&parsed, collateral, &policy.root_ca_der, now)?;
    check_policy(&parsed, &outcome, policy)?;
    let b = &parsed.body;
    Ok(VerifiedTdxQuote {
        tcb_status: outcome.tcb_status,
        advisory_ids: outcome.advisory_ids,
        version: parsed.header.version,
        kind: b.kind,
        mr_td: *b.mr_td,
        rtmr: [*b.rtmr[0], *b.rtmr[1], *b.rtmr[2], *b.rtmr[3]],
        mr_config_id: *b.mr_config_id,
        mr_owner: *b.mr_owner,
        mr_owner_config: *b.mr_owner_config,
        mr_seam: *b.mr_seam,
        report_data: *b.report_data,
        td_attributes: b.td_attributes_u64(),
        xfam: b.xfam_u64(),
        tee_tcb_svn: *b.tee_tcb_svn,
        tee_tcb_svn2: b.tee_tcb_svn2.copied(),
    })
}

/// Decodes a quote file: raw binary, or ASCII hex (optionally `0x`-prefixed, surrounding whitespace allowed).
pub fn decode_quote_file(bytes: &[u8]) -> Vec<u8> {
    let text = core::str::from_utf8(bytes).ok().map(str::trim);
    if let Some(t) = text {
        let t = t.strip_prefix("0x").unwrap_or(t);
        if !t.is_empty()
            && t.len().is_multiple_of(2)
            && t.bytes().all(|c| c.is_ascii_hexdigit())
            && let Ok(v) = hex::decode(t)
        {
            return v;
        }
    }
    bytes.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping_round_trips() {
        for s in [
            TcbStatus::ConfigurationAndSwHardeningNeeded,
            TcbStatus::ConfigurationNeeded,
            TcbStatus::OutOfDate,
            TcbStatus::OutOfDateConfigurationNeeded,
            TcbStatus::Revoked,
            TcbStatus::SwHardeningNeeded,
            TcbStatus::TdRelaunchAdvised,
            TcbStatus::TdRelaunchAdvisedConfigurationNeeded,
            TcbStatus::UpToDate,
        ] {
            assert_eq!(TcbStatus::from_qvl(s.as_str()), Some(s));
        }
        assert_eq!(TcbStatus::from_qvl("Whatever"), None);
    }

    #[test]
    fn empty_and_wrong_version_are_refused() {
        assert!(matches!(
            TdxQuote::parse(&[]),
            Err(ParseError::Truncated {
                field: "header.version",
                ..
            })
        ));
        assert!(matches!(
            TdxQuote::parse(&[3, 0, 2, 0]),
            Err(ParseError::UnsupportedVersion {
                structure: "TDX quote",
                version: 3
            })
        ));
    }

    #[test]
    fn qvl_messages_map_to_their_categories() {
        let cases: [(&[&str], TdxErrorCategory); 14] = [
            (&["No matching TCB level found"], TdxErrorCategory::Tcb),
            (&["TCB status is invalid: Revoked"], TdxErrorCategory::Tcb),
            (&["TCBInfo expired"], TdxErrorCategory::CollateralExpired),
            (
                &["QE Identity expired"],
                TdxErrorCategory::CollateralExpired,
            ),
            (
                &["CrlExpired { time: UnixTime(1), next_update: UnixTime(0) }"],
                TdxErrorCategory::CollateralExpired,
            ),
            (
                &["Signature is invalid for qe_report in quote"],
                TdxErrorCategory::Signature,
            ),
            (
                &["ISV enclave report signature is invalid"],
                TdxErrorCategory::Signature,
            ),
            (&["QE report hash mismatch"], TdxErrorCategory::Signature),
            (
                &["Signature is invalid for tcb_info in quote_collateral"],
                TdxErrorCategory::CollateralInvalid,
            ),
            (&["Fmspc mismatch"], TdxErrorCategory::CollateralInvalid),
            (
                &[
                    "Failed to parse root CA CRL",
                    "InvalidCrlSignatureForPublicKey",
                ],
                TdxErrorCategory::Chain,
            ),
            (
                &["Failed to verify PCK", "UnknownIssuer"],
                TdxErrorCategory::Chain,
            ),
            (&["Debug mode is enabled"], TdxErrorCategory::Policy),
            (&["something new"], TdxErrorCategory::Other),
        ];
        for (chain, want) in cases {
            let mut e = anyhow::anyhow!(chain[chain.len() - 1]);
            for outer in chain.iter().rev().skip(1) {
                e = e.context(*outer);
            }
            assert_eq!(map_qvl_error(&e).category(), want, "{chain:?}");
        }
    }

    #[test]
    fn hex_files_decode() {
        assert_eq!(decode_quote_file(b"0x0102\n"), vec![1, 2]);
        assert_eq!(decode_quote_file(b"0a0B"), vec![10, 11]);
        assert_eq!(decode_quote_file(&[4, 0, 2]), vec![4, 0, 2]);
    }
}
