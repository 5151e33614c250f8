//! Verifies dait evidence and receipts offline; the tenant's client.
#![forbid(unsafe_code)]

pub mod collateral;
pub mod snp;
pub mod tdx;
pub mod wire;

#[doc(hidden)]
pub mod fuzzing;

pub use collateral::UnixTime;
