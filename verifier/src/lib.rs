//! Verifies dait evidence and receipts offline; the tenant's client.
#![forbid(unsafe_code)]

pub mod wire;
