//! What a TDX quote must satisfy beyond its signatures: [`TdxPolicy`] and [`check_policy`].

use super::{TcbStatus, TdxCryptoOutcome, TdxError, TdxQuote};

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
pub static INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("roots/intel_sgx_root_ca.der");

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
