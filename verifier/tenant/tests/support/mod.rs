//! Simulated evidence bundles for this crate's tests, built by the verifier's own fixture
//! (`dait_verifier::bundle::fixture`): the integration tests take it with `mod support;`, the unit tests through
//! a `#[path]` module in `lib.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use dait_chain_client::{Address, Freshness, Keyset};
use dait_verifier::bundle::fixture::Fixture;
pub use dait_verifier::bundle::fixture::key;

/// A keyset with receipt key 3 that attests `tls_spki`; tests change the other fields as they need.
pub fn keyset(tls_spki: &[u8]) -> Keyset {
    Keyset {
        receipt_key: key(3).verifying_key().to_sec1(),
        ohttp_key_config: vec![0; 4],
        tls_spki: tls_spki.to_vec(),
        chain_id: 31337,
        settlement: Address::ZERO,
        created_at: 1_700_000_000,
        boot_id: [0; 16],
        host_account: Address::ZERO,
    }
}

/// A simulated evidence bundle for `keyset` and `freshness`, with `event_log`, certified by root key 1
/// through attestation key 2 (PROTOCOL.md §7).
pub fn simulated_bundle(keyset: &Keyset, freshness: &Freshness, event_log: &[u8]) -> Vec<u8> {
    Fixture {
        keyset: keyset.clone(),
        freshness: *freshness,
        event_log: event_log.to_vec(),
        ..Fixture::new()
    }
    .encode()
}
