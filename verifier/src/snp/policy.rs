//! What an SNP report must satisfy beyond its signatures: [`SnpPolicy`] and [`check_policy`].

use super::{SnpError, SnpProduct, SnpReport, TcbVersion};

/// One accepted SNP launch: a VM shape's launch measurement and the VMPL its reports come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpShape {
    /// The launch measurement (`MEASUREMENT`).
    pub measurement: [u8; 48],
    /// The VMPL the shape's reports are requested from: 0, or 1 for a guest under an SVSM (which keeps
    /// VMPL 0, so the guest can only get VMPL 1 reports).
    pub vmpl: u32,
}

/// What an SNP report must satisfy beyond its signatures. Defaults: debug and migration agent rejected,
/// VMPL 0 required, CHIP_ID must not be masked; SMT is allowed (every production host enables it; set
/// `allow_smt: false` where the fleet runs without); no measurement pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpPolicy {
    /// Accept a guest policy with DEBUG set (never in production).
    pub dangerous_allow_debug: bool,
    /// Accept a guest policy with MIGRATE_MA set.
    pub allow_migration_agent: bool,
    /// Accept a guest policy with SMT set.
    pub allow_smt: bool,
    /// Accept a report with MASK_CHIP_ID (CHIP_ID not bound to the VCEK).
    pub allow_masked_chip_id: bool,
    /// Required VMPL of every report (None: any). Applies on top of the VMPL of a matching shape; the policy
    /// built from a reference leaves it `None` because each of its shapes names its VMPL.
    pub vmpl: Option<u32>,
    /// Minimum reported TCB.
    pub minimum_tcb: Option<TcbVersion>,
    /// Allowed launches, one per VM shape (empty = not pinned): the report's measurement must be one of
    /// theirs, and its VMPL that of a shape with that measurement.
    pub shapes: Vec<SnpShape>,
    /// Allowed HOST_DATA values (empty = not pinned).
    pub host_data: Vec<[u8; 32]>,
    /// Required guest policy value (exact), when pinned.
    pub guest_policy: Option<u64>,
    /// Expected REPORT_DATA.
    pub report_data: Option<[u8; 64]>,
}

impl Default for SnpPolicy {
    fn default() -> Self {
        Self {
            dangerous_allow_debug: false,
            allow_migration_agent: false,
            allow_smt: true,
            allow_masked_chip_id: false,
            vmpl: Some(0),
            minimum_tcb: None,
            shapes: Vec::new(),
            host_data: Vec::new(),
            guest_policy: None,
            report_data: None,
        }
    }
}

/// Applies the policy to a report whose signature and chain verified.
pub fn check_policy(
    report: &SnpReport<'_>,
    product: SnpProduct,
    policy: &SnpPolicy,
) -> Result<(), SnpError> {
    if report.debug_allowed() && !policy.dangerous_allow_debug {
        return Err(SnpError::Debug);
    }
    if report.migrate_ma_allowed() && !policy.allow_migration_agent {
        return Err(SnpError::MigrationAgent);
    }
    if report.smt_allowed() && !policy.allow_smt {
        return Err(SnpError::Smt);
    }
    if let Some(expected) = policy.vmpl
        && expected != report.vmpl
    {
        return Err(SnpError::VmplMismatch {
            expected,
            found: report.vmpl,
        });
    }
    if let Some(min) = &policy.minimum_tcb
        && !TcbVersion::decode(report.reported_tcb, product).at_least(min)
    {
        return Err(SnpError::TcbBelowMinimum);
    }
    if policy.guest_policy.is_some_and(|p| p != report.policy) {
        return Err(SnpError::GuestPolicyMismatch);
    }
    if !policy.shapes.is_empty() {
        let mut launches = policy
            .shapes
            .iter()
            .filter(|s| &s.measurement == report.measurement)
            .peekable();
        let first = launches.peek().ok_or(SnpError::MeasurementMismatch)?.vmpl;
        if !launches.any(|s| s.vmpl == report.vmpl) {
            return Err(SnpError::VmplMismatch {
                expected: first,
                found: report.vmpl,
            });
        }
    }
    if !policy.host_data.is_empty() && !policy.host_data.iter().any(|h| h == report.host_data) {
        return Err(SnpError::HostDataMismatch);
    }
    if policy
        .report_data
        .as_ref()
        .is_some_and(|d| d != report.report_data)
    {
        return Err(SnpError::ReportDataMismatch);
    }
    Ok(())
}
