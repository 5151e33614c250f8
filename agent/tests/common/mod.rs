//! Test support, shared by the tests and the benches: an in-test OpenAI-compatible engine, an
//! HTTP/1.1 client over plain TCP or TLS, a minimal tenant (OHTTP + BHTTP + channel state signing +
//! SPUR-IC receipt checks), and the agent under test, in-process or as the real binary.
// Each test and bench uses a part of it.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

mod attack;
mod client;
mod engine;
mod host;
mod kds;
mod local;
mod metrics;
mod nvidia;
mod pcs;
mod swtpm;
mod tenant;

pub use attack::*;
pub use client::*;
pub use engine::*;
pub use host::*;
pub use kds::*;
pub use local::*;
pub use metrics::*;
pub use nvidia::*;
pub use pcs::*;
pub use swtpm::*;
pub use tenant::*;
