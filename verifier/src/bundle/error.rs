//! Why a bundle was rejected.

use dait_chain_client::DecodeError;

use super::Platform;
use crate::collateral::CollateralError;
use crate::nvidia::GpuSetError;
use crate::snp::SnpError;
use crate::tdx::TdxError;
use crate::tpm::TpmError;

/// Why a bundle was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The simulated attestation key is not certified by the allowed simulated root (another root, or a
    /// bad certification signature).
    #[error("the simulated attestation key is not certified by the allowed root")]
    AttestationKeyNotCertified,
    /// The collateral (carried or given) is malformed or incomplete.
    #[error("collateral")]
    Collateral(#[from] CollateralError),
    /// The bundle or its keyset did not decode.
    #[error("the evidence bundle is malformed")]
    Decode(#[from] DecodeError),
    /// `SHA-256(event_log)` differs from the digest in the signed (simulated) report, or the runtime event
    /// log does not replay to the quote's RTMR3.
    #[error("the event log does not match the report")]
    EventLogMismatch,
    /// The bundle was made for another freshness (another nonce or epoch) than the one requested.
    #[error("the evidence is for another nonce or epoch")]
    FreshnessMismatch,
    /// The runtime event log is not the agent's JSON array, or an event's digest is not its data's.
    #[error("the runtime event log is malformed")]
    MalformedEventLog,
    /// The runtime event log does not hash to the launch-time field the host fixed (TDX `MRCONFIGID`, SNP
    /// `HOST_DATA`, the simulated `MRCONFIGID`; PROTOCOL.md §10.1), or a TDX quote whose RTMR3 was never
    /// extended carries a log bound to nothing.
    #[error("the runtime event log does not hash to the launch-time {field}")]
    LaunchBindingMismatch {
        /// `MRCONFIGID` or `HOST_DATA`.
        field: &'static str,
    },
    /// A GPU's evidence failed (the index names the GPU).
    #[error("GPU evidence")]
    Gpu(#[from] GpuSetError),
    /// The bundle carries fewer GPUs than the policy requires.
    #[error("{present} GPUs present, the policy requires {required}")]
    GpuCount {
        /// GPUs in the bundle.
        present: usize,
        /// The policy's minimum.
        required: usize,
    },
    /// `report_data` in the signed report is not the one recomputed from the keyset and the freshness.
    #[error("report_data does not bind this keyset and freshness")]
    KeysetBinding,
    /// The keyset claims a creation time after `now` (plus the allowed skew).
    #[error("the keyset was created in the future")]
    KeysetFromFuture,
    /// A public key in the evidence is not a valid point.
    #[error("{field}: not a valid P-256 public key")]
    MalformedKey {
        /// The field.
        field: &'static str,
    },
    /// The signed report is malformed (wrong platform tag or field length).
    #[error("the simulated report is malformed: {field}")]
    MalformedReport {
        /// The field.
        field: &'static str,
    },
    /// A vTPM PCR differs from the policy's value, or the quote does not carry it.
    #[error("vTPM PCR {index} does not match the policy")]
    PcrMismatch {
        /// The PCR index.
        index: u8,
    },
    /// The report's signature by the attestation key does not verify.
    #[error("the report signature does not verify")]
    ReportSignature,
    /// The runtime event log (model, engine and agent configuration) of simulated evidence does not replay
    /// to the policy's runtime measurements ([`Policy::runtime_rtmr3`]): an event changed, missing, extra
    /// or out of order.
    ///
    /// [`Policy::runtime_rtmr3`]: super::Policy::runtime_rtmr3
    #[error("runtime measurements: the event log does not replay to the reference's RTMR3")]
    RuntimeMeasurementMismatch,
    /// The evidence is simulated and the policy does not allow simulated evidence.
    #[error("simulated evidence is rejected by this policy")]
    SimulatedEvidence,
    /// The SNP report or its AMD chain failed.
    #[error("SNP evidence")]
    Snp(#[from] SnpError),
    /// The SNP certificate chain is incomplete (no VCEK/VLEK in the evidence, or no ASK/ARK in the
    /// evidence, the collateral or the pinned roots).
    #[error("SNP certificate chain: {field} missing")]
    SnpChainMissing {
        /// What is missing.
        field: &'static str,
    },
    /// The policy refuses evidence of this platform (no reference values for it).
    #[error("{0:?} evidence is refused by this policy")]
    PlatformRefused(Platform),
    /// The TDX quote failed.
    #[error("TDX evidence")]
    Tdx(#[from] TdxError),
    /// The TDX quote came without collateral (neither in the bundle nor given).
    #[error("no TDX collateral in the bundle or given")]
    TdxCollateralMissing,
    /// The vTPM quote failed.
    #[error("vTPM evidence")]
    Tpm(#[from] TpmError),
    /// The vTPM quote is signed by another attestation key than the one the policy pins
    /// ([`TpmPolicy::ak_name`]).
    ///
    /// [`TpmPolicy::ak_name`]: super::TpmPolicy::ak_name
    #[error("the vTPM quote is signed by another attestation key than the pinned one")]
    TpmAkMismatch,
    /// The policy requires vTPM evidence and the bundle has none.
    #[error("the policy requires vTPM evidence")]
    TpmMissing,
    /// The bundle's runtime event log does not replay to the quoted runtime PCR (SHA-256 bank): an event
    /// changed, missing, extra or out of order, or the PCR was extended by something else.
    #[error("the runtime event log does not replay to the quoted vTPM PCR {pcr}")]
    TpmRuntimeMismatch {
        /// The runtime PCR.
        pcr: u8,
    },
}
