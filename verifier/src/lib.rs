//! Verifies dait evidence bundles and receipts offline: a pure verifier, with no network client.
//!
//! # What it does
//! - [`bundle`]: verifies an evidence bundle (its CPU evidence, the binding of the attested keyset and the
//!   tenant's nonce into `report_data`) under a [`bundle::Policy`], as a pure function of the bytes, the
//!   policy, the expected freshness and the time. The result, a [`bundle::VerifiedBundle`], carries the
//!   attested keys: receipt key, OHTTP key configuration, TLS SPKI.
//! - [`receipt`]: the tenant's SPUR-IC checks on every receipt and the channel state it counter-signs.
//! - Parsers for evidence as devices and hosts produce it, shared with the agent: e.g.
//!   [`snp::cert_table`], the SEV-SNP certificate table the agent turns into a bundle's certificate chain.
//! - The `dait-verify` binary (feature `cli`): verifies evidence files and whole bundles from the command line.
//!
//! The tenant's network client (TLS pinned to the attested key, Oblivious HTTP to the attested HPKE key,
//! sessions that check every receipt, a local OpenAI-compatible proxy) and the `dait-tenant` binary are the
//! `dait-tenant` crate (`verifier/tenant/`), built on this one.
//!
//! # Example
//! ```
//! use dait_verifier::bundle::{Policy, UnixTime, VerifyError, verify_bundle};
//! use dait_chain_client::Freshness;
//!
//! // Garbage is rejected as malformed, never accepted.
//! let result = verify_bundle(b"not a bundle", &Policy::new(), &Freshness::TenantNonce([7; 32]), UnixTime::from_secs(0));
//! assert!(matches!(result, Err(VerifyError::Decode(_))));
//! ```
//!
//! # Feature flags
//! | feature | default | what it adds |
//! |---|---|---|
//! | `cli` | no | the `dait-verify` binary (clap) |
//!
//! # Security
//! - Verification trusts only the policy: the default [`bundle::Policy`] rejects simulated evidence whatever
//!   its signatures; [`bundle::Policy::dangerous_allow_simulated`] accepts it for one named root, for
//!   development and tests. TDX, SNP, NVIDIA and vTPM evidence goes through [`tdx`], [`snp`], [`nvidia`] and [`tpm`]
//!   under the policy's per-platform parts; [`bundle::Policy::from_reference`] pins a release's measurements.
//! - Freshness: the bundle must be bound to the nonce the caller chose; evidence for another nonce fails.
//! - A receipt is accepted only if it passes every check in [`receipt`]; the caller (the tenant client) stops
//!   the channel on the first failure.
//! - Nothing here opens a connection, and verification never reads the clock: the bytes, the collateral and
//!   the time are the caller's ([`UnixTime::now`] is there for callers that want the present).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// The parser lints (dcap-qvl's set) hold for the whole library, which reads untrusted bytes throughout;
// unit tests may index, unwrap and panic.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod bundle;
pub mod collateral;
pub mod nvidia;
pub mod receipt;
pub mod rim;
pub mod snp;
pub mod tdx;
pub mod tpm;
pub mod wire;
pub mod x509;

#[doc(hidden)]
pub mod fuzzing;

pub use collateral::UnixTime;
