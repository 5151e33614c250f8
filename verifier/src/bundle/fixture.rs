//! A simulated evidence bundle built in memory, for the tests and benches of this crate and of the crates
//! that verify bundles. Not part of the API (hidden from the docs).
//!
//! Its keys are fixed (root 1, attestation key 2, receipt key 3: [`key`]), so what it builds verifies only
//! under a policy that names its root through [`Policy::dangerous_allow_simulated`] ([`Fixture::allow`]).

use dait_chain_client::WireMessage as _;
use dait_chain_client::proto::{self, cpu_evidence::Evidence};
use dait_chain_client::{
    Address, B256, Freshness, HostSigningKey, Keyset, keyset_hash, report_data,
};
use dait_measure::reference::RuntimeEvent;
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use super::{Policy, UnixTime, VerifiedBundle, VerifyError, verify_bundle};

/// The time the fixture's bundles are verified at (Unix seconds).
pub const NOW: u64 = 1_750_000_000;

/// The P-256 key whose 32 secret bytes are all `n` (`n` from 1 to 254).
pub fn key(n: u8) -> HostSigningKey {
    #[allow(clippy::expect_used)]
    // INVARIANT: [n; 32] for n in 1..=254 is a non-zero scalar below the P-256 group order.
    HostSigningKey::from_bytes(&[n; 32]).expect("[n; 32] is a valid P-256 secret key")
}

/// The pieces of a simulated bundle; tests change one and encode.
pub struct Fixture {
    /// The simulated platform root, which certifies the attestation key.
    pub root: HostSigningKey,
    /// The attestation key, which signs the report.
    pub attestation: HostSigningKey,
    /// The receipt key the keyset names.
    pub receipt_key: HostSigningKey,
    /// The keyset.
    pub keyset: Keyset,
    /// The freshness the report binds.
    pub freshness: Freshness,
    /// Keyset hash bound into report_data (defaults to the real one).
    pub bound_keyset_hash: Option<B256>,
    /// The bundle's event log (its SHA-256 is signed into the report).
    pub event_log: Vec<u8>,
    /// The platform tag of the report body.
    pub platform: proto::Platform,
    /// Flip one bit of the report signature.
    pub flip_report_signature: bool,
    /// The report body's launch-time `MRCONFIGID` (empty: none).
    pub mr_config_id: Vec<u8>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// A bundle that verifies under [`Fixture::allow`] at [`NOW`] for [`Fixture::freshness`].
    pub fn new() -> Self {
        let receipt_key = key(3);
        Self {
            root: key(1),
            attestation: key(2),
            keyset: Keyset {
                receipt_key: receipt_key.verifying_key().to_sec1(),
                ohttp_key_config: vec![1, 2, 3],
                tls_spki: vec![4, 5, 6],
                chain_id: 31337,
                settlement: Address([9; 20]),
                created_at: NOW.saturating_sub(10),
                boot_id: [1; 16],
                host_account: Address::ZERO,
            },
            receipt_key,
            freshness: Freshness::TenantNonce([5; 32]),
            bound_keyset_hash: None,
            event_log: b"simulated event log".to_vec(),
            platform: proto::Platform::Simulated,
            flip_report_signature: false,
            mr_config_id: Vec::new(),
        }
    }

    /// The root's public key, SEC1 uncompressed.
    pub fn root_public(&self) -> [u8; 65] {
        self.root.verifying_key().to_sec1()
    }

    /// The default policy, accepting simulated evidence from this fixture's root.
    pub fn allow(&self) -> Policy {
        #[allow(clippy::expect_used)]
        // INVARIANT: root_public is a point of a valid key, which dangerous_allow_simulated accepts.
        Policy::new()
            .dangerous_allow_simulated(&self.root_public())
            .expect("the fixture's root is a valid P-256 key")
    }

    /// Verifies the encoded bundle under `policy` for the fixture's freshness at [`NOW`].
    pub fn verify(&self, policy: &Policy) -> Result<VerifiedBundle, VerifyError> {
        verify_bundle(
            &self.encode(),
            policy,
            &self.freshness,
            UnixTime::from_secs(NOW),
        )
    }

    /// The encoded bundle with the simulated report.
    pub fn encode(&self) -> Vec<u8> {
        let keyset_bytes = self.keyset.encode();
        let bound = self
            .bound_keyset_hash
            .unwrap_or_else(|| keyset_hash(&keyset_bytes));
        let body = proto::SimulatedReportBody {
            platform: self.platform as i32,
            report_data: report_data(&bound, &self.freshness).to_vec(),
            measurements: vec![vec![0; 48]; 5],
            event_log_digest: Sha256::digest(&self.event_log).to_vec(),
            mr_config_id: self.mr_config_id.clone(),
        }
        .encode_to_vec();
        let attestation_key = self.attestation.verifying_key().to_sec1();
        let mut signature = self
            .attestation
            .sign_prehash(&dait_chain_client::simulated_report_digest(&body))
            .to_bytes()
            .to_vec();
        if self.flip_report_signature
            && let Some(byte) = signature.get_mut(40)
        {
            *byte ^= 1;
        }
        let report = proto::SimulatedReport {
            body,
            signature,
            attestation_key: attestation_key.to_vec(),
            attestation_key_signature: self
                .root
                .sign_prehash(&dait_chain_client::simulated_key_digest(&attestation_key))
                .to_bytes()
                .to_vec(),
        };
        self.encode_with_cpu(Evidence::Simulated(report), None)
    }

    /// The encoded bundle of this keyset, freshness and event log around other CPU evidence (a real quote,
    /// say) and `collateral`.
    pub fn encode_with_cpu(
        &self,
        evidence: Evidence,
        collateral: Option<proto::Collateral>,
    ) -> Vec<u8> {
        dait_chain_client::encode_bundle(&proto::EvidenceBundle {
            version: 1,
            keyset: self.keyset.encode(),
            freshness: Some(self.freshness.to_proto()),
            cpu: Some(proto::CpuEvidence {
                evidence: Some(evidence),
            }),
            gpus: vec![],
            tpm: None,
            event_log: self.event_log.clone(),
            collateral,
        })
    }
}

/// Runtime events named as the agent names its default ones, in the order it extends them, with made-up
/// digests (`[1; 32]`, `[2; 32]`, ...).
pub fn runtime_events() -> Vec<RuntimeEvent> {
    ["model-id", "model-weights", "engine-build", "agent-config"]
        .iter()
        .zip(1u8..)
        .map(|(name, n)| RuntimeEvent {
            name: (*name).to_owned(),
            sha256: dait_measure::HexBytes([n; 32]),
        })
        .collect()
}

/// The runtime event log the agent serves for `events`, encoded by the protocol core's one definition
/// ([`dait_chain_client::runtime_log::EventLog`]).
pub fn runtime_log(events: &[RuntimeEvent]) -> Vec<u8> {
    let mut log = dait_chain_client::runtime_log::EventLog::default();
    for e in events {
        log.record(
            &e.name,
            &dait_chain_client::runtime_log::event_data(&e.name, &e.sha256.0),
        );
    }
    log.encode()
}
