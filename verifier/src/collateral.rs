//! Collateral as data: the Intel PCS files a TDX quote is checked against, and the injected clock.
//!
//! Nothing here fetches. Collateral arrives either as one JSON bundle in the `QuoteCollateralV3` layout
//! (hex strings for the CRLs and signatures, the signed `tcbInfo`/`enclaveIdentity` bodies as strings) or as
//! the raw files Intel's Provisioning Certification Service serves (TCB Info and QE Identity JSON, the two
//! CRLs in DER, the issuer chains in PEM). Both become the same [`TdxCollateral`]. The `load` module reads
//! either from local files ([`TdxCollateral::load`], [`TdxCollateral::from_pcs_dir`]).

use serde::Deserialize;
use serde_json::value::RawValue;

mod load;

pub use load::LoadError;

/// Seconds since the Unix epoch, UTC. Every verification takes one; nothing reads the system clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(u64);

impl UnixTime {
    /// The instant `secs` seconds after 1970-01-01T00:00:00Z.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }

    /// Seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// The system clock, for callers that verify against the present; a clock before 1970 reads as the epoch.
    pub fn now() -> Self {
        Self(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    /// Parses an RFC 3339 timestamp in UTC, `YYYY-MM-DDTHH:MM:SSZ` (fractional seconds are ignored;
    /// offsets other than `Z`/`+00:00` are refused).
    pub fn parse_rfc3339(s: &str) -> Result<Self, CollateralError> {
        let bad = CollateralError::BadTime;
        let b = s.as_bytes();
        let num = |from: usize, to: usize| -> Result<u64, CollateralError> {
            let part = b.get(from..to).ok_or(bad)?;
            let text = core::str::from_utf8(part).map_err(|_| bad)?;
            if !text.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad);
            }
            text.parse::<u64>().map_err(|_| bad)
        };
        let sep = |at: usize, want: &[u8]| b.get(at).is_some_and(|c| want.contains(c));
        if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
            return Err(bad);
        }
        let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
        let (hour, min, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
        let mut rest = b.get(19..).ok_or(bad)?;
        if let Some((b'.', frac)) = rest.split_first() {
            let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            rest = frac.get(digits..).ok_or(bad)?;
        }
        if !matches!(rest, b"Z" | b"z" | b"+00:00") {
            return Err(bad);
        }
        if year < 1970 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month)
        {
            return Err(bad);
        }
        if hour > 23 || min > 59 || sec > 60 {
            return Err(bad);
        }
        let days = days_from_civil(year, month, day).ok_or(bad)?;
        let secs = days
            .checked_mul(86_400)
            .and_then(|d| d.checked_add(hour.checked_mul(3600)?))
            .and_then(|d| d.checked_add(min.checked_mul(60)?))
            .and_then(|d| d.checked_add(sec))
            .ok_or(bad)?;
        Ok(Self(secs))
    }
}

fn is_leap(y: u64) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days from 1970-01-01 to the given civil date (year >= 1970), by counting.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let mut days: u64 = 0;
    for year in 1970..y {
        days = days.checked_add(if is_leap(year) { 366 } else { 365 })?;
    }
    for month in 1..m {
        days = days.checked_add(days_in_month(y, month))?;
    }
    days.checked_add(d.checked_sub(1)?)
}

/// Why collateral could not be loaded.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CollateralError {
    /// A timestamp is not RFC 3339 UTC.
    #[error("timestamp is not RFC 3339 UTC")]
    BadTime,
    /// A field is not valid hex.
    #[error("{field} is not valid hex")]
    Hex {
        /// The field.
        field: &'static str,
    },
    /// The JSON document does not have the expected shape.
    #[error("{document} is not valid JSON of the expected shape")]
    Json {
        /// The document.
        document: &'static str,
    },
    /// A required field is absent or empty.
    #[error("{field} is missing")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// The quote's PCK leaf certificate (certification data type 6 → 5) is absent or does not carry the
    /// SGX extensions (FMSPC) or a known PCK CA issuer.
    #[error("the quote's PCK certificate gives no FMSPC or PCK CA")]
    PckCertificate,
    /// A PEM or text field is not UTF-8.
    #[error("{field} is not UTF-8")]
    Utf8 {
        /// The field.
        field: &'static str,
    },
}

/// The collateral for verifying one TDX quote: Intel PCS TCB Info, QE Identity, CRLs and issuer chains.
///
/// Build it with [`TdxCollateral::from_bundle_json`] or [`TdxCollateral::from_pcs_files`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxCollateral {
    pub(crate) inner: dcap_qvl::QuoteCollateralV3,
}

/// The JSON bundle layout (dcap-qvl's `QuoteCollateralV3`, with hex for binary fields).
#[derive(Deserialize)]
struct BundleJson {
    pck_crl_issuer_chain: String,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    tcb_info_signature: String,
    qe_identity_issuer_chain: String,
    qe_identity: String,
    qe_identity_signature: String,
    #[serde(default)]
    pck_certificate_chain: Option<String>,
}

#[derive(Deserialize)]
struct PcsTcbInfo<'a> {
    #[serde(rename = "tcbInfo", borrow)]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
struct PcsQeIdentity<'a> {
    #[serde(rename = "enclaveIdentity", borrow)]
    enclave_identity: &'a RawValue,
    signature: String,
}

fn unhex(field: &'static str, s: &str) -> Result<Vec<u8>, CollateralError> {
    let t = s.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    hex::decode(t).map_err(|_| CollateralError::Hex { field })
}

fn utf8(field: &'static str, b: &[u8]) -> Result<String, CollateralError> {
    core::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| CollateralError::Utf8 { field })
}

/// The raw files of a PCS collateral set, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct PcsFiles<'a> {
    /// `GET /tdx/certification/v4/tcb` body: `{"tcbInfo":{..},"signature":".."}`.
    pub tcb_info_json: &'a [u8],
    /// `GET /tdx/certification/v4/qe/identity` body: `{"enclaveIdentity":{..},"signature":".."}`.
    pub qe_identity_json: &'a [u8],
    /// PCK CRL (DER) for the quote's PCK CA (platform or processor).
    pub pck_crl_der: &'a [u8],
    /// Intel SGX Root CA CRL (DER).
    pub root_ca_crl_der: &'a [u8],
    /// The `TCB-Info-Issuer-Chain` (PEM, signing cert then root).
    pub tcb_info_issuer_chain_pem: &'a [u8],
    /// The `SGX-Enclave-Identity-Issuer-Chain` (PEM); usually the same as the TCB Info chain.
    pub qe_identity_issuer_chain_pem: &'a [u8],
    /// The `SGX-PCK-CRL-Issuer-Chain` (PEM, PCK CA then root).
    pub pck_crl_issuer_chain_pem: &'a [u8],
}

impl TdxCollateral {
    /// Loads a JSON bundle in the `QuoteCollateralV3` layout (hex-encoded CRLs and signatures).
    pub fn from_bundle_json(json: &[u8]) -> Result<Self, CollateralError> {
        let b: BundleJson = serde_json::from_slice(json).map_err(|_| CollateralError::Json {
            document: "collateral bundle",
        })?;
        Ok(Self {
            inner: dcap_qvl::QuoteCollateralV3 {
                pck_crl_issuer_chain: b.pck_crl_issuer_chain,
                root_ca_crl: unhex("root_ca_crl", &b.root_ca_crl)?,
                pck_crl: unhex("pck_crl", &b.pck_crl)?,
                tcb_info_issuer_chain: b.tcb_info_issuer_chain,
                tcb_info: b.tcb_info,
                tcb_info_signature: unhex("tcb_info_signature", &b.tcb_info_signature)?,
                qe_identity_issuer_chain: b.qe_identity_issuer_chain,
                qe_identity: b.qe_identity,
                qe_identity_signature: unhex("qe_identity_signature", &b.qe_identity_signature)?,
                pck_certificate_chain: b.pck_certificate_chain,
            },
        })
    }

    /// Takes the Intel fields of a bundle's `Collateral` message (PROTOCOL.md §8), which carry the
    /// `QuoteCollateralV3` fields as bytes and strings (no hex). An empty `pck_certificate_chain` means the
    /// chain is embedded in the quote.
    pub fn from_proto(c: &dait_chain_client::proto::Collateral) -> Result<Self, CollateralError> {
        let required: [(&'static str, bool); 6] = [
            ("collateral.tcb_info", c.tcb_info.is_empty()),
            (
                "collateral.tcb_info_signature",
                c.tcb_info_signature.is_empty(),
            ),
            ("collateral.qe_identity", c.qe_identity.is_empty()),
            (
                "collateral.qe_identity_signature",
                c.qe_identity_signature.is_empty(),
            ),
            ("collateral.pck_crl", c.pck_crl.is_empty()),
            ("collateral.root_ca_crl", c.root_ca_crl.is_empty()),
        ];
        if let Some((field, _)) = required.iter().find(|(_, empty)| *empty) {
            return Err(CollateralError::Missing { field });
        }
        Ok(Self {
            inner: dcap_qvl::QuoteCollateralV3 {
                pck_crl_issuer_chain: c.pck_crl_issuer_chain.clone(),
                root_ca_crl: c.root_ca_crl.clone(),
                pck_crl: c.pck_crl.clone(),
                tcb_info_issuer_chain: c.tcb_info_issuer_chain.clone(),
                tcb_info: c.tcb_info.clone(),
                tcb_info_signature: c.tcb_info_signature.clone(),
                qe_identity_issuer_chain: c.qe_identity_issuer_chain.clone(),
                qe_identity: c.qe_identity.clone(),
                qe_identity_signature: c.qe_identity_signature.clone(),
                pck_certificate_chain: (!c.pck_certificate_chain.is_empty())
                    .then(|| c.pck_certificate_chain.clone()),
            },
        })
    }

    /// The same collateral as a bundle's `Collateral` message (Intel fields only).
    pub fn to_proto(&self) -> dait_chain_client::proto::Collateral {
        let i = &self.inner;
        dait_chain_client::proto::Collateral {
            pck_crl_issuer_chain: i.pck_crl_issuer_chain.clone(),
            root_ca_crl: i.root_ca_crl.clone(),
            pck_crl: i.pck_crl.clone(),
            tcb_info_issuer_chain: i.tcb_info_issuer_chain.clone(),
            tcb_info: i.tcb_info.clone(),
            tcb_info_signature: i.tcb_info_signature.clone(),
            qe_identity_issuer_chain: i.qe_identity_issuer_chain.clone(),
            qe_identity: i.qe_identity.clone(),
            qe_identity_signature: i.qe_identity_signature.clone(),
            pck_certificate_chain: i.pck_certificate_chain.clone().unwrap_or_default(),
            ..Default::default()
        }
    }

    /// Loads the raw PCS files. The signed `tcbInfo` / `enclaveIdentity` bodies are kept byte for byte as
    /// served (the signature covers those exact bytes; nothing is re-serialised).
    pub fn from_pcs_files(files: &PcsFiles<'_>) -> Result<Self, CollateralError> {
        let tcb: PcsTcbInfo<'_> =
            serde_json::from_slice(files.tcb_info_json).map_err(|_| CollateralError::Json {
                document: "TCB Info",
            })?;
        let qe: PcsQeIdentity<'_> =
            serde_json::from_slice(files.qe_identity_json).map_err(|_| CollateralError::Json {
                document: "QE Identity",
            })?;
        Ok(Self {
            inner: dcap_qvl::QuoteCollateralV3 {
                pck_crl_issuer_chain: utf8("pck_crl_issuer_chain", files.pck_crl_issuer_chain_pem)?,
                root_ca_crl: files.root_ca_crl_der.to_vec(),
                pck_crl: files.pck_crl_der.to_vec(),
                tcb_info_issuer_chain: utf8(
                    "tcb_info_issuer_chain",
                    files.tcb_info_issuer_chain_pem,
                )?,
                tcb_info: tcb.tcb_info.get().to_owned(),
                tcb_info_signature: unhex("tcb_info signature", &tcb.signature)?,
                qe_identity_issuer_chain: utf8(
                    "qe_identity_issuer_chain",
                    files.qe_identity_issuer_chain_pem,
                )?,
                qe_identity: qe.enclave_identity.get().to_owned(),
                qe_identity_signature: unhex("qe_identity signature", &qe.signature)?,
                pck_certificate_chain: None,
            },
        })
    }

    /// The earliest `nextUpdate` of the TCB Info and QE Identity, as the collateral states it (None when
    /// the bodies do not carry a parseable one). Useful to pick a verification time inside the window.
    pub fn next_update(&self) -> Option<UnixTime> {
        #[derive(Deserialize)]
        struct Dates {
            #[serde(rename = "nextUpdate")]
            next_update: String,
        }
        let read = |s: &str| -> Option<UnixTime> {
            let d: Dates = serde_json::from_str(s).ok()?;
            UnixTime::parse_rfc3339(&d.next_update).ok()
        };
        let a = read(&self.inner.tcb_info)?;
        let b = read(&self.inner.qe_identity)?;
        Some(a.min(b))
    }
}

/// What a quote's PCK leaf certificate says about the platform: the collateral to fetch for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PckPlatform {
    /// FMSPC (family-model-stepping-platform-custom SKU) from the SGX extensions.
    pub fmspc: [u8; 6],
    /// Whether the PCK certificate was issued by the PCK Platform CA (else the Processor CA).
    pub platform_ca: bool,
}

impl PckPlatform {
    /// Reads the FMSPC and PCK CA from the PCK leaf certificate embedded in `quote` (nothing is verified
    /// here: the collateral fetched for it is checked with the quote afterwards).
    pub fn of_quote(quote: &[u8]) -> Result<Self, CollateralError> {
        let q =
            dcap_qvl::quote::Quote::parse(quote).map_err(|_| CollateralError::PckCertificate)?;
        let fmspc =
            dcap_qvl::intel::quote_fmspc(&q).map_err(|_| CollateralError::PckCertificate)?;
        let ca = dcap_qvl::intel::quote_ca(&q).map_err(|_| CollateralError::PckCertificate)?;
        Ok(Self {
            fmspc,
            platform_ca: matches!(ca, dcap_qvl::config::PckCa::Platform),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_known_instants() {
        assert_eq!(
            UnixTime::parse_rfc3339("1970-01-01T00:00:00Z"),
            Ok(UnixTime::from_secs(0))
        );
        assert_eq!(
            UnixTime::parse_rfc3339("2025-07-19T10:00:34Z"),
            Ok(UnixTime::from_secs(1_752_919_234))
        );
        assert_eq!(
            UnixTime::parse_rfc3339("2025-09-10T00:00:00.123Z"),
            Ok(UnixTime::from_secs(1_757_462_400))
        );
        assert_eq!(
            UnixTime::parse_rfc3339("2024-02-29T00:00:00+00:00"),
            Ok(UnixTime::from_secs(1_709_164_800))
        );
    }

    #[test]
    fn rfc3339_rejects_garbage() {
        for s in [
            "",
            "2025-02-30T00:00:00Z",
            "2025-07-19 10:00:34",
            "2025-07-19T10:00:34+02:00",
            "abcd-07-19T10:00:34Z",
        ] {
            assert_eq!(
                UnixTime::parse_rfc3339(s),
                Err(CollateralError::BadTime),
                "{s}"
            );
        }
    }

    #[test]
    fn pck_platform_is_read_from_real_quotes() {
        for (rel, fmspc) in [
            ("tdx/go-tdx-guest__spr-e4_v4_quote.bin", "50806f000000"),
            ("tdx/dcap-qvl__v4_b0c06f_quote.bin", "b0c06f000000"),
        ] {
            let p = PckPlatform::of_quote(&dait_testdata::read(rel)).unwrap();
            assert_eq!(hex::encode(p.fmspc), fmspc, "{rel}");
            assert!(p.platform_ca, "{rel}");
        }
        assert_eq!(
            PckPlatform::of_quote(&[0u8; 64]),
            Err(CollateralError::PckCertificate)
        );
    }
}
