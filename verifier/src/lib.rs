//! Verifies dait evidence bundles and receipts offline; with feature `tenant`, the tenant's client.
//!
//! # What it does
//! - [`bundle`]: verifies an evidence bundle (its CPU evidence, the binding of the attested keyset and the
//!   tenant's nonce into `report_data`) under a [`bundle::Policy`], as a pure function of the bytes, the
//!   policy, the expected freshness and the time. The result, a [`bundle::VerifiedBundle`], carries the
//!   attested keys: receipt key, OHTTP key configuration, TLS SPKI.
//! - [`receipt`]: the tenant's SPUR-IC checks on every receipt and the channel state it counter-signs.
//! - `tenant` (feature `tenant`): TLS pinned to the attested key, Oblivious HTTP to the attested HPKE key
//!   (chunked for streams), sessions that check every receipt, and a local OpenAI-compatible proxy.
//! - The `dait-tenant` binary (feature `cli`): `verify`, `chat` and `proxy` subcommands.
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
//! | `tenant` | no | the network client: TLS pinning, OHTTP, sessions, the proxy (tokio, hyper, rustls) |
//! | `cli` | no | the `dait-tenant` and `dait-verify` binaries (implies `tenant`) |
//!
//! # Security
//! - Verification trusts only the policy: the default [`bundle::Policy`] rejects simulated evidence whatever
//!   its signatures; [`bundle::Policy::dangerous_allow_simulated`] accepts it for one named root, for
//!   development and tests. TDX, SNP, NVIDIA and vTPM evidence goes through [`tdx`], [`snp`], [`nvidia`] and [`tpm`]
//!   under the policy's per-platform parts; [`bundle::Policy::from_reference`] pins a release's measurements.
//! - Freshness: the bundle must be bound to the nonce the caller chose; evidence for another nonce fails.
//! - The host's TLS certificate is trusted only through the attested SPKI; no CA is consulted.
//! - A receipt that fails any check stops the session; the receipt is kept for a dispute.
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
#[cfg(feature = "tenant")]
pub mod tenant;
pub mod tpm;
pub mod wire;
pub mod x509;

#[doc(hidden)]
pub mod fuzzing;

pub use collateral::UnixTime;
