//! Simulated evidence bundles built in memory, for this crate's tests: the integration tests take it with
//! `mod support;`, the unit tests through a `#[path]` module in `lib.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use dait_chain_client::WireMessage as _;
use dait_chain_client::proto::{self, cpu_evidence::Evidence};
use dait_chain_client::{Address, Freshness, HostSigningKey, Keyset, keyset_hash, report_data};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

/// The test key with the scalar `[n; 32]`: 1 is the simulated root, 2 its attestation key, 3 the receipt key.
pub fn key(n: u8) -> HostSigningKey {
    HostSigningKey::from_bytes(&[n; 32]).unwrap()
}

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
    let (root, attestation) = (key(1), key(2));
    let keyset = keyset.encode();
    let body = proto::SimulatedReportBody {
        platform: proto::Platform::Simulated as i32,
        report_data: report_data(&keyset_hash(&keyset), freshness).to_vec(),
        measurements: vec![vec![0; 48]; 5],
        event_log_digest: Sha256::digest(event_log).to_vec(),
    }
    .encode_to_vec();
    let attestation_key = attestation.verifying_key().to_sec1();
    let report = proto::SimulatedReport {
        signature: attestation
            .sign_prehash(&dait_chain_client::simulated_report_digest(&body))
            .to_bytes()
            .to_vec(),
        body,
        attestation_key: attestation_key.to_vec(),
        attestation_key_signature: root
            .sign_prehash(&dait_chain_client::simulated_key_digest(&attestation_key))
            .to_bytes()
            .to_vec(),
    };
    dait_chain_client::encode_bundle(&proto::EvidenceBundle {
        version: 1,
        keyset,
        freshness: Some(freshness.to_proto()),
        cpu: Some(proto::CpuEvidence {
            evidence: Some(Evidence::Simulated(report)),
        }),
        gpus: vec![],
        tpm: None,
        event_log: event_log.to_vec(),
        collateral: None,
    })
}
