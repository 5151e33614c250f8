//! Evidence-bundle verification: the bundle's CPU evidence, the binding of the keyset and the freshness into
//! `report_data`, and the policy (PROTOCOL.md §2, §3, §7).
//!
//! [`verify_bundle`] is a pure function of the bundle bytes, a [`Policy`], the freshness the caller expects
//! and the current time. It returns a [`VerifiedBundle`], which only it can construct, holding the attested
//! keys a tenant then uses: the receipt key, the OHTTP key configuration, the TLS SPKI.
//!
//! Order of checks, the first failure is the error: decode; freshness; keyset (decode, creation time);
//! the CPU evidence under its platform policy ([`crate::tdx::verify_quote`], [`crate::snp::verify_report`]
//! or the simulated report); the keyset binding (the CPU evidence's REPORTDATA equals `report_data`
//! recomputed from the keyset hash and the expected freshness); the event log (for simulated evidence: its
//! digest, then its replay against [`Policy::runtime_rtmr3`] when the policy has one); every GPU against
//! `gpu_nonce(report_data, i)`; the vTPM quote against `tpm_qualifying_data(report_data)`.
//!
//! A bound runtime event log (TDX: replayed to the quote's RTMR3; simulated: its digest signed into the
//! report) gives [`VerifiedBundle::runtime`], the model, weights and engine build it attests, which every
//! receipt must name ([`crate::receipt::Channel::check`]). An SNP bundle's log is not bound to its report
//! (yet), so it attests none; nor does an empty log.
//!
//! Collateral comes from the bundle (`EvidenceBundle.collateral`) or, overriding it, from the caller
//! ([`verify_bundle_with_collateral`]); nothing is fetched.
//!
//! Simulated evidence (development and CI only) is a report signed by a per-boot attestation key, which is
//! certified by a simulated platform root. The default [`Policy`] rejects it whatever its signatures; only
//! [`Policy::dangerous_allow_simulated`], given that root's public key, accepts it.
//!
//! One concern per file, re-exported here: `policy` ([`Policy`], [`Policy::from_reference`]), `verify`
//! (the orchestration: [`verify_bundle`], [`VerifiedBundle`]), `simulated` (simulated evidence), `runtime`
//! (the runtime event log's replay, [`AttestedRuntime`]), `error` ([`VerifyError`]); `fixture` builds simulated bundles for tests.

mod error;
#[doc(hidden)]
pub mod fixture;
mod policy;
mod runtime;
mod simulated;
mod verify;

pub use error::VerifyError;
pub use policy::{NvidiaRootsSetting, Policy, ReferenceError, TpmPolicy};
pub use runtime::AttestedRuntime;
pub use verify::{
    VerifiedBundle, verify_bundle, verify_bundle_gpus, verify_bundle_with_collateral,
};

/// Keysets created more than this far in the future (host clock ahead) are rejected.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

pub use crate::collateral::UnixTime;

/// The CPU TEE platform of a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Platform {
    /// Simulated evidence (development and CI only).
    Simulated,
    /// AMD SEV-SNP.
    Snp,
    /// Intel TDX.
    Tdx,
}
