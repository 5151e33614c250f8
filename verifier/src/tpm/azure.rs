//! The Azure confidential-VM specifics: the quote container of Azure's vTPM tooling, and the binding of
//! the attestation key to the HCL report.

use sha2::{Digest as _, Sha256};

use super::{
    AkPublic, MAX_ATTEST_LEN, MAX_PCRS, MAX_TPM2B, QuoteSignature, TpmError, TpmQuoteInput,
};
use crate::wire::{ParseError, Reader};

/// The quote container of Azure's vTPM tooling (bincode: `signature: Vec<u8>`, `message: Vec<u8>`,
/// `pcrs: Vec<[u8; 32]>`, lengths as u64 little-endian).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureQuote<'a> {
    /// Bare RSASSA-PKCS1-v1_5 SHA-256 signature.
    pub signature: &'a [u8],
    /// TPMS_ATTEST.
    pub message: &'a [u8],
    /// SHA-256 bank PCR values, ascending.
    pub pcrs: Vec<[u8; 32]>,
}

impl AzureQuote<'_> {
    /// The container as a [`TpmQuoteInput`].
    pub fn input(&self) -> TpmQuoteInput<'_> {
        TpmQuoteInput {
            attest: self.message,
            signature: QuoteSignature::RsaSsaSha256(self.signature),
            pcrs: &self.pcrs,
        }
    }
}

fn bincode_len(r: &mut Reader<'_>, field: &'static str, max: usize) -> Result<usize, ParseError> {
    let len = r.u64_le(field)?;
    let len = usize::try_from(len).map_err(|_| ParseError::TooLong {
        field,
        len: usize::MAX,
        max,
    })?;
    if len > max {
        return Err(ParseError::TooLong { field, len, max });
    }
    Ok(len)
}

/// Parses the Azure vTPM tooling's quote container, rejecting trailing bytes.
pub fn parse_azure_quote(bytes: &[u8]) -> Result<AzureQuote<'_>, ParseError> {
    let mut r = Reader::new(bytes);
    let n = bincode_len(&mut r, "azure_quote.signature.len", MAX_TPM2B)?;
    let signature = r.take("azure_quote.signature", n)?;
    let n = bincode_len(&mut r, "azure_quote.message.len", MAX_ATTEST_LEN)?;
    let message = r.take("azure_quote.message", n)?;
    let n = bincode_len(&mut r, "azure_quote.pcrs.len", MAX_PCRS)?;
    let mut pcrs = Vec::with_capacity(n);
    for _ in 0..n {
        pcrs.push(*r.take_array::<32>("azure_quote.pcrs")?);
    }
    r.finish("azure_quote")?;
    Ok(AzureQuote {
        signature,
        message,
        pcrs,
    })
}

/// Hardware report kind in an Azure HCL report (IGVM request data `report_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HclReportKind {
    /// AMD SEV-SNP attestation report (1,184 bytes).
    Snp,
    /// Intel TDX TDREPORT (1,024 bytes); needs a quote to be checked remotely.
    Tdx,
}

/// What [`verify_hcl_ak_binding`] established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HclBinding<'a> {
    /// The hardware report kind.
    pub kind: HclReportKind,
    /// The hardware report bytes (to be verified by the SNP or TDX verifier; this module does not).
    pub hardware_report: &'a [u8],
    /// The variable data (JSON) that the hardware report's report_data binds.
    pub variable_data: &'a [u8],
}

const HCL_HEADER_LEN: usize = 32;
const HCL_HW_REPORT_LEN: usize = 1184;

/// Checks an Azure HCL report: the hardware report's report_data starts with SHA-256 of the variable data
/// (hash type 1), and the variable data's `HCLAkPub` JWK is `ak`. The hardware report's own signature is NOT
/// checked here (hand [`HclBinding::hardware_report`] to the SNP verifier; a TDREPORT needs a TD quote).
pub fn verify_hcl_ak_binding<'a>(hcl: &'a [u8], ak: &AkPublic) -> Result<HclBinding<'a>, TpmError> {
    let mut r = Reader::new(hcl);
    let magic = r.take_array::<4>("hcl.signature")?;
    if magic != b"HCLA" {
        return Err(TpmError::Parse(ParseError::InvalidValue {
            field: "hcl.signature",
        }));
    }
    r.take("hcl.header", HCL_HEADER_LEN.saturating_sub(4))?;
    let hw = r.take("hcl.hardware_report", HCL_HW_REPORT_LEN)?;
    let _data_size = r.u32_le("hcl.igvm.data_size")?;
    let _version = r.u32_le("hcl.igvm.version")?;
    let report_type = r.u32_le("hcl.igvm.report_type")?;
    let hash_type = r.u32_le("hcl.igvm.report_data_hash_type")?;
    let var_len = usize::try_from(r.u32_le("hcl.igvm.variable_data_size")?)
        .map_err(|_| ParseError::Internal("u32"))?;
    let var = r.take("hcl.igvm.variable_data", var_len)?;
    // The rest of the HCL report buffer is padding; it is not covered by anything and is ignored.
    let (kind, rd_offset, hw_len) = match report_type {
        2 => (HclReportKind::Snp, 0x50usize, 1184usize),
        4 => (HclReportKind::Tdx, 128usize, 1024usize),
        _ => return Err(TpmError::Unsupported("HCL hardware report type")),
    };
    if hash_type != 1 {
        return Err(TpmError::Unsupported("HCL report data hash type"));
    }
    let report_data = hw
        .get(rd_offset..rd_offset.saturating_add(32))
        .ok_or(TpmError::Parse(ParseError::Internal("report_data range")))?;
    let var_hash: [u8; 32] = Sha256::digest(var).into();
    if var_hash.as_slice() != report_data {
        return Err(TpmError::ReportDataMismatch);
    }
    let hardware_report = hw
        .get(..hw_len)
        .ok_or(TpmError::Parse(ParseError::Internal("hardware report")))?;

    let json: serde_json::Value = serde_json::from_slice(var).map_err(|_| TpmError::BadHclData)?;
    let keys = json
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or(TpmError::BadHclData)?;
    let jwk = keys
        .iter()
        .find(|k| k.get("kid").and_then(|v| v.as_str()) == Some("HCLAkPub"))
        .ok_or(TpmError::BadHclData)?;
    let field = |name: &str| -> Result<Vec<u8>, TpmError> {
        use base64::Engine as _;
        let s = jwk
            .get(name)
            .and_then(|v| v.as_str())
            .ok_or(TpmError::BadHclData)?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|_| TpmError::BadHclData)
    };
    if jwk.get("kty").and_then(|v| v.as_str()) != Some("RSA") {
        return Err(TpmError::Unsupported("HCLAkPub key type"));
    }
    let n = field("n")?;
    let e = field("e")?;
    let AkPublic::Rsa(key) = ak else {
        return Err(TpmError::AkMismatch);
    };
    use rsa::traits::PublicKeyParts as _;
    if key.n().to_bytes_be() != strip_zeros(&n) || key.e().to_bytes_be() != strip_zeros(&e) {
        return Err(TpmError::AkMismatch);
    }
    Ok(HclBinding {
        kind,
        hardware_report,
        variable_data: var,
    })
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b.get(start..).unwrap_or_default().to_vec()
}
