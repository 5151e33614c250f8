//! Intel TDX quotes (DCAP quote v4 and v5; TDX 1.0 and 1.5 TD report bodies).
//!
//! [`TdxQuote::parse`] reads the quote with the crate's bounds-checked [`Reader`](crate::wire::Reader)
//! into borrowed, typed fields (no cryptography). [`verify_quote`] hands the exact quote bytes and the
//! collateral to `dcap-qvl` (PCK chain to the pinned Intel SGX Root CA, CRLs, QE report, quote signature,
//! TCB Info and QE Identity signatures and validity, TCB level matching), maps its outcome and errors into
//! [`TcbStatus`] and [`TdxError`] in one place, and then applies a [`TdxPolicy`].
//!
//! One concern per file, all re-exported here: `quote` (the wire format), `qvl` (the dcap-qvl adapter),
//! `policy` ([`TdxPolicy`], [`check_policy`] and the pinned root, `roots/intel_sgx_root_ca.der`), `tcb`
//! ([`TcbStatus`]), `error` ([`TdxError`]); this file holds [`VerifiedTdxQuote`] and [`verify_quote`].

mod error;
mod policy;
mod quote;
mod qvl;
mod tcb;

pub use error::{TdxError, TdxErrorCategory};
pub use policy::{INTEL_SGX_ROOT_CA_DER, TdxPolicy, TdxRegister, TdxShape, check_policy};
pub use quote::{
    ATTESTATION_KEY_ECDSA_P256, INTEL_QE_VENDOR_ID, MAX_CERT_DATA_LEN, MAX_SIGNATURE_DATA_LEN,
    QuoteHeader, QuoteSignatureData, TD_ATTR_DEBUG, TD10_BODY_LEN, TD15_BODY_LEN, TEE_TYPE_TDX,
    TdBodyKind, TdReport, TdxQuote, decode_quote_file,
};
pub use qvl::{TdxCryptoOutcome, verify_crypto};
pub use tcb::{ParseTcbStatusError, TcbStatus};

use crate::collateral::{TdxCollateral, UnixTime};

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
