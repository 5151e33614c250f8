//! Why a TDX quote was not accepted, and the broad class of each reason.

use super::{TcbStatus, TdxRegister};
use crate::wire::ParseError;

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
    #[error("malformed quote")]
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
