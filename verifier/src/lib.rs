//! Verifies dait evidence and receipts offline; the tenant's client.
#![forbid(unsafe_code)]

pub mod collateral;
pub mod nvidia;
pub mod rim;
pub mod snp;
pub mod tdx;
pub mod tpm;
pub mod wire;
pub mod x509;

#[doc(hidden)]
pub mod fuzzing;

pub use collateral::UnixTime;
