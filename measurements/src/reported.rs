//! Measurement values a platform reported, read from a JSON file or straight out of a TDX quote or SNP report at
//! their fixed offsets (no signature checks: that is the verifier's job; this is for explaining a mismatch).

use serde::{Deserialize, Serialize};

use crate::hexbytes::{HexBytes, Sha256Digest, Sha384Digest};
use crate::reference::Platform;

/// Reported values; the fields of the other platform stay `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportedValues {
    /// Which platform reported them.
    pub platform: Platform,
    /// TDX MRTD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrtd: Option<Sha384Digest>,
    /// TDX RTMR0..RTMR3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr: Option<[Sha384Digest; 4]>,
    /// TDX MRCONFIGID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_config_id: Option<Sha384Digest>,
    /// TDX MROWNER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_owner: Option<Sha384Digest>,
    /// TDX MROWNERCONFIG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_owner_config: Option<Sha384Digest>,
    /// TDX TD attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub td_attributes: Option<HexBytes<8>>,
    /// TDX XFAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfam: Option<HexBytes<8>>,
    /// SNP launch measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<Sha384Digest>,
    /// SNP HOST_DATA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_data: Option<Sha256Digest>,
    /// SNP guest policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_policy: Option<u64>,
    /// SNP VMPL the report was requested from; absent means 0, as in the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmpl: Option<u32>,
}

impl ReportedValues {
    /// Values reported by `platform`, none of them known yet.
    pub fn new(platform: Platform) -> Self {
        Self {
            platform,
            mrtd: None,
            rtmr: None,
            mr_config_id: None,
            mr_owner: None,
            mr_owner_config: None,
            td_attributes: None,
            xfam: None,
            measurement: None,
            host_data: None,
            guest_policy: None,
            vmpl: None,
        }
    }
}

/// Why a quote or report could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportedError {
    /// Not a TDX quote (TEE type is not 0x81).
    #[error("not a TDX quote (tee type {0:#x})")]
    NotTdx(u32),
    /// Cut short.
    #[error("{field} truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Which field.
        field: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A quote version or v5 body type this code does not read.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u32),
}

/// Size of an SNP ATTESTATION_REPORT (SEV-SNP ABI spec, table 22).
pub const SNP_REPORT_LEN: usize = 0x4a0;

fn field<const N: usize>(
    bytes: &[u8],
    at: usize,
    name: &'static str,
) -> Result<[u8; N], ReportedError> {
    let end = at.saturating_add(N);
    bytes
        .get(at..end)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(ReportedError::Truncated {
            field: name,
            need: end,
            have: bytes.len(),
        })
}

/// Reads the TD report fields of a TDX quote (Intel TDX DCAP quote v4 §A.3; v5 with body types 2 and 3).
pub fn tdx_quote_fields(quote: &[u8]) -> Result<ReportedValues, ReportedError> {
    let version = u16::from_le_bytes(field::<2>(quote, 0, "quote.header.version")?);
    let tee_type = u32::from_le_bytes(field::<4>(quote, 4, "quote.header.tee_type")?);
    if tee_type != 0x81 {
        return Err(ReportedError::NotTdx(tee_type));
    }
    let body: usize = match version {
        4 => 48,
        5 => {
            let body_type = u16::from_le_bytes(field::<2>(quote, 48, "quote.body.type")?);
            if !matches!(body_type, 2 | 3) {
                return Err(ReportedError::UnsupportedVersion(u32::from(body_type)));
            }
            54
        }
        other => return Err(ReportedError::UnsupportedVersion(u32::from(other))),
    };
    let at = |offset: usize| body.saturating_add(offset);
    let digest =
        |offset: usize, name: &'static str| field::<48>(quote, at(offset), name).map(HexBytes);
    Ok(ReportedValues {
        td_attributes: Some(HexBytes(field::<8>(
            quote,
            at(120),
            "td_report.td_attributes",
        )?)),
        xfam: Some(HexBytes(field::<8>(quote, at(128), "td_report.xfam")?)),
        mrtd: Some(digest(136, "td_report.mrtd")?),
        mr_config_id: Some(digest(184, "td_report.mr_config_id")?),
        mr_owner: Some(digest(232, "td_report.mr_owner")?),
        mr_owner_config: Some(digest(280, "td_report.mr_owner_config")?),
        rtmr: Some([
            digest(328, "td_report.rtmr0")?,
            digest(376, "td_report.rtmr1")?,
            digest(424, "td_report.rtmr2")?,
            digest(472, "td_report.rtmr3")?,
        ]),
        ..ReportedValues::new(Platform::Tdx)
    })
}

/// Reads the measurement fields of an SNP ATTESTATION_REPORT (versions 2 to 5).
pub fn snp_report_fields(report: &[u8]) -> Result<ReportedValues, ReportedError> {
    if report.len() < SNP_REPORT_LEN {
        return Err(ReportedError::Truncated {
            field: "snp report",
            need: SNP_REPORT_LEN,
            have: report.len(),
        });
    }
    let version = u32::from_le_bytes(field::<4>(report, 0, "snp_report.version")?);
    if !(2..=5).contains(&version) {
        return Err(ReportedError::UnsupportedVersion(version));
    }
    Ok(ReportedValues {
        guest_policy: Some(u64::from_le_bytes(field::<8>(
            report,
            0x08,
            "snp_report.policy",
        )?)),
        measurement: Some(HexBytes(field::<48>(
            report,
            0x90,
            "snp_report.measurement",
        )?)),
        host_data: Some(HexBytes(field::<32>(report, 0xc0, "snp_report.host_data")?)),
        vmpl: Some(u32::from_le_bytes(field::<4>(
            report,
            0x30,
            "snp_report.vmpl",
        )?)),
        ..ReportedValues::new(Platform::Snp)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn rejects_short_and_foreign_input() {
        assert!(matches!(
            tdx_quote_fields(&[4, 0]),
            Err(ReportedError::Truncated { .. })
        ));
        let mut quote = vec![0u8; 700];
        quote[0] = 4;
        assert!(matches!(
            tdx_quote_fields(&quote),
            Err(ReportedError::NotTdx(0))
        ));
        quote[4] = 0x81;
        quote[0] = 3;
        assert!(matches!(
            tdx_quote_fields(&quote),
            Err(ReportedError::UnsupportedVersion(3))
        ));
        quote[0] = 4;
        assert!(tdx_quote_fields(&quote).is_ok());
        assert!(matches!(
            tdx_quote_fields(&quote[..560]),
            Err(ReportedError::Truncated { .. })
        ));
        let mut report = vec![0u8; SNP_REPORT_LEN];
        assert!(matches!(
            snp_report_fields(&report),
            Err(ReportedError::UnsupportedVersion(0))
        ));
        report[0] = 2;
        assert!(snp_report_fields(&report).is_ok());
        assert!(matches!(
            snp_report_fields(&report[..100]),
            Err(ReportedError::Truncated { .. })
        ));
    }
}
