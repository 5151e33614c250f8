//! TEE backends: who produces the CPU evidence that binds `report_data` to the platform.
//!
//! The backend is chosen by configuration ([`crate::config::TeeKind`]); a missing device fails at
//! startup, with no fallback. The simulated backend exists only with the `simulated-tee` feature and
//! tags its evidence [`Platform::Simulated`], which the default verification policy rejects.

use std::path::Path;

pub use dait_chain_client::proto::{CpuEvidence, Platform, TpmEvidence};
use dait_chain_client::runtime_log::{self, EventLog};

use crate::config::TeeKind;

pub mod gpu;
mod nvml;
mod tsm;

#[cfg(feature = "simulated-tee")]
pub mod simulated;

#[cfg(feature = "vtpm")]
pub mod vtpm;

pub use nvml::NvmlAttester;
pub use tsm::{TDX_MEASUREMENTS_DIR, TSM_REPORT_DIR, TsmBackend};

/// Errors of the TEE backends.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TeeError {
    /// The configured backend is not compiled into this build.
    #[error("TEE backend {0} is not available in this build (enable the `simulated-tee` feature)")]
    NotCompiled(&'static str),
    /// The platform device is missing.
    #[error("TEE device missing: {path} does not exist")]
    DeviceMissing {
        /// The path that was looked for.
        path: &'static str,
    },
    /// The simulated platform root key is missing from the state directory (run `dait-host init`).
    #[error("simulated platform root key missing; run `dait-host init --tee simulated`")]
    RootMissing,
    /// A key file is malformed.
    #[error("malformed key file {0}")]
    BadKeyFile(&'static str),
    /// The device returned evidence of the wrong form.
    #[error("device returned malformed evidence: {0}")]
    BadEvidence(&'static str),
    /// The device changed the report while it was read (configfs-tsm generation moved).
    #[error("concurrent configfs-tsm report use detected")]
    Race,
    /// I/O with the device or the state directory.
    #[error("TEE i/o on {0}")]
    Io(&'static str, #[source] std::io::Error),
    /// Signing failed.
    #[error("signing failed")]
    Sign,
    /// The backend cannot do this operation.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// The SNP report in `outblob` does not parse.
    #[error("malformed SNP report from the device")]
    SnpReport(#[source] dait_verifier::wire::ParseError),
    /// The host's SNP certificate table (configfs-tsm `auxblob`) is malformed.
    #[error("malformed SNP certificate table from the host")]
    SnpCertTable(#[source] dait_verifier::snp::cert_table::CertTableError),
    /// The host supplied no certificate for the key that signed the SNP report (`auxblob` empty, or a table
    /// without it), so the evidence could not be verified.
    #[error(
        "the host supplied no {0} certificate with the SNP report (configure the host's certificate table)"
    )]
    SnpCertMissing(&'static str),
    /// GPU evidence failed.
    #[error("GPU evidence")]
    Gpu(#[from] gpu::GpuError),
    /// The guest's RTMR3 was already extended before the agent's first event (an earlier start in this boot): the
    /// agent's event log could not replay to it.
    #[error(
        "RTMR3 is not zero before the agent's first runtime event (restart the guest, not only the agent)"
    )]
    RuntimeRegisterInUse,
    /// A TPM operation failed (`--tpm`).
    #[error("vTPM: {0}")]
    Tpm(
        &'static str,
        #[source] Box<dyn std::error::Error + Send + Sync + 'static>,
    ),
    /// The runtime vTPM PCR is not in its reset state (all zero) at start: something extended it before the
    /// agent, so its value would not replay from the agent's event log. The agent refuses to start.
    #[error(
        "vTPM PCR {pcr} is not in its reset state at start (SHA-256 bank {value}); the runtime events must be its only extends"
    )]
    TpmPcrNotReset {
        /// The PCR.
        pcr: u8,
        /// Hex of its SHA-256 bank.
        value: String,
    },
    /// The TPM did not answer within the agent's bound.
    #[error("vTPM: no answer in time")]
    TpmTimeout,
    /// `--tpm` was given to a build without the `vtpm` feature.
    #[error("the vTPM (--tpm) is not available in this build (enable the `vtpm` feature)")]
    VtpmNotCompiled,
}

/// A source of CPU evidence.
pub trait TeeBackend: Send + Sync {
    /// The platform this backend attests.
    fn platform(&self) -> Platform;
    /// CPU evidence whose `report_data` field is `report_data`.
    fn evidence(&self, report_data: &[u8; 64]) -> Result<CpuEvidence, TeeError>;
    /// Extend the runtime measurement register (TDX RTMR3; the simulated RTMR3) with the last
    /// event of `log`. [`TeeError::Unsupported`] where the guest cannot: the agent then needs the launch-time
    /// binding ([`TeeBackend::launch_field`]).
    fn extend_runtime(&self, log: &EventLog) -> Result<(), TeeError>;
    /// The launch-time field the host fixed for this guest (TDX `MRCONFIGID`, SNP `HOST_DATA`; the simulated
    /// `MRCONFIGID`), as the platform reports it (all zero when the host set none).
    fn launch_field(&self) -> Result<LaunchField, TeeError>;
    /// The vTPM quote for `report_data` (qualified by `tpm_qualifying_data(report_data)`), where the agent
    /// has a vTPM (`--tpm`); `None` otherwise.
    fn tpm_quote(&self, _report_data: &[u8; 64]) -> Result<Option<TpmEvidence>, TeeError> {
        Ok(None)
    }
}

/// A launch-time field of the CPU evidence that binds the runtime configuration (PROTOCOL.md §10.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchField {
    /// SEV-SNP `HOST_DATA` (attestation report offset 0xC0, 32 bytes).
    HostData([u8; 32]),
    /// TDX `MRCONFIGID` (TD report body, 48 bytes); the simulated guest's likewise.
    MrConfigId([u8; 48]),
}

impl LaunchField {
    /// The value of the same field that binds the runtime event log replaying to `register`.
    pub fn binding_for(&self, register: &[u8; 48]) -> Self {
        match self {
            Self::HostData(_) => Self::HostData(runtime_log::launch_binding_host_data(register)),
            Self::MrConfigId(_) => {
                Self::MrConfigId(runtime_log::launch_binding_mrconfigid(register))
            }
        }
    }

    /// Whether the host left the field unset (all zero).
    pub fn is_unset(&self) -> bool {
        self.bytes().iter().all(|b| *b == 0)
    }

    /// The field's name in the platform's documentation.
    pub fn name(&self) -> &'static str {
        match self {
            Self::HostData(_) => "HOST_DATA",
            Self::MrConfigId(_) => "MRCONFIGID",
        }
    }

    /// The field's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::HostData(v) => v,
            Self::MrConfigId(v) => v,
        }
    }
}

/// Open the backend chosen by `kind`. `state_dir` holds the simulated platform root; `simulated_mrconfigid`
/// is the simulated guest's launch-time `MRCONFIGID` (`--tee simulated` only).
pub fn open(
    kind: TeeKind,
    state_dir: &Path,
    simulated_mrconfigid: Option<[u8; 48]>,
) -> Result<Box<dyn TeeBackend>, TeeError> {
    match kind {
        TeeKind::Simulated => open_simulated(state_dir, simulated_mrconfigid),
        TeeKind::Snp => Ok(Box::new(
            TsmBackend::open(Path::new(TSM_REPORT_DIR), Platform::Snp)?
                .with_vcek_cache(&state_dir.join(crate::collateral::CACHE_DIR)),
        )),
        TeeKind::Tdx => Ok(Box::new(TsmBackend::open(
            Path::new(TSM_REPORT_DIR),
            Platform::Tdx,
        )?)),
    }
}

/// `inner` with the vTPM named by `tcti` beside it (`--tpm`), or `inner` alone without one.
pub fn with_vtpm(
    inner: Box<dyn TeeBackend>,
    tcti: Option<&str>,
) -> Result<Box<dyn TeeBackend>, TeeError> {
    match tcti {
        None => Ok(inner),
        Some(tcti) => open_vtpm(inner, tcti),
    }
}

#[cfg(feature = "vtpm")]
fn open_vtpm(inner: Box<dyn TeeBackend>, tcti: &str) -> Result<Box<dyn TeeBackend>, TeeError> {
    Ok(Box::new(vtpm::VtpmBackend::open(inner, tcti)?))
}

#[cfg(not(feature = "vtpm"))]
fn open_vtpm(_inner: Box<dyn TeeBackend>, _tcti: &str) -> Result<Box<dyn TeeBackend>, TeeError> {
    Err(TeeError::VtpmNotCompiled)
}

#[cfg(feature = "simulated-tee")]
fn open_simulated(
    state_dir: &Path,
    mrconfigid: Option<[u8; 48]>,
) -> Result<Box<dyn TeeBackend>, TeeError> {
    Ok(Box::new(
        simulated::SimulatedBackend::open(state_dir)?.with_launch_mrconfigid(mrconfigid),
    ))
}

#[cfg(not(feature = "simulated-tee"))]
fn open_simulated(
    _state_dir: &Path,
    _mrconfigid: Option<[u8; 48]>,
) -> Result<Box<dyn TeeBackend>, TeeError> {
    Err(TeeError::NotCompiled("simulated"))
}

/// Prepare the state directory for `kind` (`dait-host init`). For the simulated TEE, create the
/// simulated platform root key (if absent) and write its public key as `sim-root.pub`.
pub fn init(kind: TeeKind, state_dir: &Path) -> Result<(), TeeError> {
    std::fs::create_dir_all(state_dir).map_err(|e| TeeError::Io("state dir", e))?;
    match kind {
        TeeKind::Simulated => init_simulated(state_dir),
        TeeKind::Snp | TeeKind::Tdx => {
            TsmBackend::open(Path::new(TSM_REPORT_DIR), Platform::Tdx)?;
            Ok(())
        }
    }
}

#[cfg(feature = "simulated-tee")]
fn init_simulated(state_dir: &Path) -> Result<(), TeeError> {
    simulated::init_root(state_dir).map(|_| ())
}

#[cfg(not(feature = "simulated-tee"))]
fn init_simulated(_state_dir: &Path) -> Result<(), TeeError> {
    Err(TeeError::NotCompiled("simulated"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[cfg(not(feature = "simulated-tee"))]
    #[test]
    fn simulated_needs_feature() {
        let dir = std::env::temp_dir();
        assert!(matches!(
            open(TeeKind::Simulated, &dir, None),
            Err(TeeError::NotCompiled("simulated"))
        ));
    }

    #[cfg(all(feature = "simulated-tee", not(feature = "vtpm")))]
    #[test]
    fn vtpm_needs_feature() {
        let dir = tempfile::tempdir().unwrap();
        simulated::init_root(dir.path()).unwrap();
        let inner = open(TeeKind::Simulated, dir.path(), None).unwrap();
        assert!(matches!(
            with_vtpm(inner, Some("device:/dev/tpmrm0")),
            Err(TeeError::VtpmNotCompiled)
        ));
    }

    #[test]
    fn hardware_backend_without_device_fails() {
        if Path::new(TSM_REPORT_DIR).exists() {
            // Inside a real confidential VM the device is there, so its absence cannot be tested.
            eprintln!("skipped: a configfs-tsm device is present (this checks its absence)");
            return;
        }
        let dir = std::env::temp_dir();
        assert!(matches!(
            open(TeeKind::Tdx, &dir, None),
            Err(TeeError::DeviceMissing { .. })
        ));
        assert!(matches!(
            open(TeeKind::Snp, &dir, None),
            Err(TeeError::DeviceMissing { .. })
        ));
    }
}
