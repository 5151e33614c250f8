//! The TDX quote on the wire: [`TdxQuote::parse`] reads a DCAP quote v4 or v5 with the crate's
//! bounds-checked [`Reader`] into borrowed, typed fields. No cryptography happens here.
//!
//! Layout references: Intel TDX DCAP Quoting Library API, "Quote Format" (v4: header 48 bytes, TD report
//! 584 bytes, u32 signature data length, signature data; v5: a body descriptor `u16 type, u32 size` before
//! the body, type 2 = TDX 1.0 / 584 bytes, type 3 = TDX 1.5 / 648 bytes).

use crate::wire::{ParseError, Reader, decode_hex_or_raw};

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

/// Decodes a quote file: raw binary, or ASCII hex (see [`decode_hex_or_raw`]).
pub fn decode_quote_file(bytes: &[u8]) -> Vec<u8> {
    decode_hex_or_raw(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
