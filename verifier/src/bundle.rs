//! Evidence-bundle verification: the bundle's CPU evidence, the binding of the keyset and the freshness into
//! `report_data`, and the policy (PROTOCOL.md §2, §3, §7).
//!
//! [`verify_bundle`] is a pure function of the bundle bytes, a [`Policy`], the freshness the caller expects
//! and the current time. It returns a [`VerifiedBundle`], which only it can construct, holding the attested
//! keys a tenant then uses: the receipt key, the OHTTP key configuration, the TLS SPKI.
//!
//! Each CPU platform is one arm of the match in [`verify_bundle`]; simulated evidence is verified here, and
//! TDX and SNP are reported as [`VerifyError::UnsupportedPlatform`] until their verifiers are plugged in.
//!
//! Simulated evidence (development and CI only) is a report signed by a per-boot attestation key, which is
//! certified by a simulated platform root. The default [`Policy`] rejects it whatever its signatures; only
//! [`Policy::dangerous_allow_simulated`], given that root's public key, accepts it.

use dait_chain_client::proto::{self, cpu_evidence::Evidence};
use dait_chain_client::{B256, DecodeError, Domain, Freshness, Keyset};
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest as _, Sha256};

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

/// What the verifier accepts. The default accepts no simulated evidence.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// The simulated platform root accepted by [`Policy::dangerous_allow_simulated`], SEC1 uncompressed.
    simulated_root: Option<[u8; 65]>,
}

impl Policy {
    /// The secure default: real hardware evidence only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts simulated evidence certified by `root_public_key` (P-256, SEC1 uncompressed or compressed).
    /// Simulated evidence proves nothing about the host: use this only in development and tests.
    pub fn dangerous_allow_simulated(
        mut self,
        root_public_key: &[u8],
    ) -> Result<Self, VerifyError> {
        let key = p256::PublicKey::from_sec1_bytes(root_public_key).map_err(|_| {
            VerifyError::MalformedKey {
                field: "policy.simulated_root",
            }
        })?;
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key, false);
        let bytes =
            <[u8; 65]>::try_from(point.as_bytes()).map_err(|_| VerifyError::MalformedKey {
                field: "policy.simulated_root",
            })?;
        self.simulated_root = Some(bytes);
        Ok(self)
    }

    /// Whether this policy accepts simulated evidence.
    pub fn allows_simulated(&self) -> bool {
        self.simulated_root.is_some()
    }
}

/// Why a bundle was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The simulated attestation key is not certified by the allowed simulated root (another root, or a
    /// bad certification signature).
    #[error("the simulated attestation key is not certified by the allowed root")]
    AttestationKeyNotCertified,
    /// The bundle or its keyset did not decode.
    #[error("the evidence bundle is malformed")]
    Decode(#[from] DecodeError),
    /// `SHA-256(event_log)` differs from the digest in the signed report.
    #[error("the event log does not match the digest in the report")]
    EventLogMismatch,
    /// The bundle was made for another freshness (another nonce or epoch) than the one requested.
    #[error("the evidence is for another nonce or epoch")]
    FreshnessMismatch,
    /// `report_data` in the signed report is not the one recomputed from the keyset and the freshness.
    #[error("report_data does not bind this keyset and freshness")]
    KeysetBinding,
    /// The keyset claims a creation time after `now` (plus the allowed skew).
    #[error("the keyset was created in the future")]
    KeysetFromFuture,
    /// A public key in the evidence is not a valid point.
    #[error("{field}: not a valid P-256 public key")]
    MalformedKey {
        /// The field.
        field: &'static str,
    },
    /// The signed report is malformed (wrong platform tag or field length).
    #[error("the simulated report is malformed: {field}")]
    MalformedReport {
        /// The field.
        field: &'static str,
    },
    /// The report's signature by the attestation key does not verify.
    #[error("the report signature does not verify")]
    ReportSignature,
    /// The evidence is simulated and the policy does not allow simulated evidence.
    #[error("simulated evidence is rejected by this policy")]
    SimulatedEvidence,
    /// The bundle's CPU evidence is for a platform this build cannot verify yet.
    #[error("no verifier for {0:?} evidence in this build")]
    UnsupportedPlatform(Platform),
}

/// A bundle whose evidence verified under a policy. Only [`verify_bundle`] constructs it.
#[derive(Clone, Debug)]
pub struct VerifiedBundle {
    platform: Platform,
    keyset: Keyset,
    keyset_hash: B256,
    host_key_id: B256,
    freshness: Freshness,
    report_data: [u8; 64],
}

impl VerifiedBundle {
    /// The platform the evidence came from.
    pub fn platform(&self) -> Platform {
        self.platform
    }
    /// The attested receipt key (P-256, SEC1 uncompressed).
    pub fn receipt_key(&self) -> &[u8; 65] {
        &self.keyset.receipt_key
    }
    /// The attested OHTTP key configuration (RFC 9458 §3).
    pub fn ohttp_key_config(&self) -> &[u8] {
        &self.keyset.ohttp_key_config
    }
    /// The attested TLS SubjectPublicKeyInfo (DER).
    pub fn tls_spki(&self) -> &[u8] {
        &self.keyset.tls_spki
    }
    /// `keyset_hash` over the keyset bytes as served.
    pub fn keyset_hash(&self) -> &B256 {
        &self.keyset_hash
    }
    /// `host_key_id = H256(receipt_key)`.
    pub fn host_key_id(&self) -> &B256 {
        &self.host_key_id
    }
    /// The EIP-712 domain the host signs under.
    pub fn domain(&self) -> Domain {
        self.keyset.domain()
    }
    /// The decoded keyset.
    pub fn keyset(&self) -> &Keyset {
        &self.keyset
    }
    /// The freshness the evidence is bound to.
    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }
    /// The verified `report_data`.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report_data
    }
}

/// Verifies an encoded `EvidenceBundle` for `expected` freshness under `policy` at time `now`.
pub fn verify_bundle(
    bundle_bytes: &[u8],
    policy: &Policy,
    expected: &Freshness,
    now: UnixTime,
) -> Result<VerifiedBundle, VerifyError> {
    let bundle = dait_chain_client::decode_bundle(bundle_bytes)?;
    let freshness =
        Freshness::from_proto(bundle.freshness.as_ref().ok_or(DecodeError::Missing {
            field: "evidence_bundle.freshness",
        })?)?;
    if freshness != *expected {
        return Err(VerifyError::FreshnessMismatch);
    }
    let keyset = Keyset::decode(&bundle.keyset)?;
    let keyset_hash = dait_chain_client::keyset_hash(&bundle.keyset);
    if keyset.created_at > now.as_secs().saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(VerifyError::KeysetFromFuture);
    }
    let expected_report_data = dait_chain_client::report_data(&keyset_hash, expected);

    let evidence = bundle
        .cpu
        .as_ref()
        .and_then(|c| c.evidence.as_ref())
        .ok_or(DecodeError::Missing {
            field: "evidence_bundle.cpu",
        })?;
    let platform = match evidence {
        Evidence::Simulated(report) => {
            verify_simulated(report, &bundle, policy, &expected_report_data)?;
            Platform::Simulated
        }
        Evidence::TdxQuote(_) => return Err(VerifyError::UnsupportedPlatform(Platform::Tdx)),
        Evidence::Snp(_) => return Err(VerifyError::UnsupportedPlatform(Platform::Snp)),
    };

    let host_key_id = keyset.host_key_id();
    Ok(VerifiedBundle {
        platform,
        keyset,
        keyset_hash,
        host_key_id,
        freshness,
        report_data: expected_report_data,
    })
}

/// Simulated evidence: policy first (so it is rejected whatever its signatures), then the chain
/// root → attestation key → report, then the report's content.
fn verify_simulated(
    report: &proto::SimulatedReport,
    bundle: &proto::EvidenceBundle,
    policy: &Policy,
    expected_report_data: &[u8; 64],
) -> Result<(), VerifyError> {
    let root = policy
        .simulated_root
        .as_ref()
        .ok_or(VerifyError::SimulatedEvidence)?;
    let attestation_key =
        <[u8; 65]>::try_from(report.attestation_key.as_slice()).map_err(|_| {
            VerifyError::MalformedKey {
                field: "simulated_report.attestation_key",
            }
        })?;
    p256_verify(
        root,
        &dait_chain_client::simulated_key_digest(&attestation_key),
        &report.attestation_key_signature,
    )
    .map_err(|e| e.unwrap_or(VerifyError::AttestationKeyNotCertified))?;
    p256_verify(
        &attestation_key,
        &dait_chain_client::simulated_report_digest(&report.body),
        &report.signature,
    )
    .map_err(|e| e.unwrap_or(VerifyError::ReportSignature))?;

    let body: proto::SimulatedReportBody = prost_decode(&report.body)?;
    if body.platform != proto::Platform::Simulated as i32 {
        return Err(VerifyError::MalformedReport {
            field: "simulated_report_body.platform",
        });
    }
    if body.report_data.as_slice() != expected_report_data.as_slice() {
        return Err(VerifyError::KeysetBinding);
    }
    let digest: [u8; 32] = Sha256::digest(&bundle.event_log).into();
    if body.event_log_digest.as_slice() != digest.as_slice() {
        return Err(VerifyError::EventLogMismatch);
    }
    Ok(())
}

fn prost_decode(bytes: &[u8]) -> Result<proto::SimulatedReportBody, VerifyError> {
    <proto::SimulatedReportBody as prost::Message>::decode(bytes).map_err(|_| {
        VerifyError::MalformedReport {
            field: "simulated_report.body",
        }
    })
}

/// Checks a prehashed P-256 `r || s` signature (low-s) over `digest` by `key`. `Err(Some(_))` is a
/// malformed key; `Err(None)` a signature that does not verify.
fn p256_verify(key: &[u8; 65], digest: &B256, signature: &[u8]) -> Result<(), Option<VerifyError>> {
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| {
        Some(VerifyError::MalformedKey {
            field: "p256 public key",
        })
    })?;
    let signature = p256::ecdsa::Signature::from_slice(signature).map_err(|_| None)?;
    if signature.normalize_s().is_some() {
        return Err(None);
    }
    key.verify_prehash(digest.as_bytes(), &signature)
        .map_err(|_| None)
}

/// A simulated bundle built in memory, for tests of this crate.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod fixture {
    use dait_chain_client::proto::{self, cpu_evidence::Evidence};
    use dait_chain_client::{Address, Freshness, HostSigningKey, Keyset, keyset_hash, report_data};
    use prost::Message as _;
    use sha2::{Digest as _, Sha256};

    /// The pieces of a simulated bundle; tests change one and encode.
    pub(crate) struct Fixture {
        pub root: HostSigningKey,
        pub attestation: HostSigningKey,
        pub receipt_key: HostSigningKey,
        pub keyset: Keyset,
        pub freshness: Freshness,
        /// Keyset hash bound into report_data (defaults to the real one).
        pub bound_keyset_hash: Option<dait_chain_client::B256>,
        pub event_log: Vec<u8>,
        pub platform: proto::Platform,
        pub flip_report_signature: bool,
    }

    pub(crate) const NOW: u64 = 1_750_000_000;

    impl Fixture {
        pub(crate) fn new() -> Self {
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
                    created_at: NOW - 10,
                    boot_id: [1; 16],
                    host_account: Address::ZERO,
                },
                receipt_key,
                freshness: Freshness::TenantNonce([5; 32]),
                bound_keyset_hash: None,
                event_log: b"simulated event log".to_vec(),
                platform: proto::Platform::Simulated,
                flip_report_signature: false,
            }
        }

        pub(crate) fn root_public(&self) -> [u8; 65] {
            self.root.verifying_key().to_sec1()
        }

        pub(crate) fn encode(&self) -> Vec<u8> {
            let keyset_bytes = self.keyset.encode();
            let bound = self
                .bound_keyset_hash
                .unwrap_or_else(|| keyset_hash(&keyset_bytes));
            let body = proto::SimulatedReportBody {
                platform: self.platform as i32,
                report_data: report_data(&bound, &self.freshness).to_vec(),
                measurements: vec![vec![0; 48]; 5],
                event_log_digest: Sha256::digest(&self.event_log).to_vec(),
            }
            .encode_to_vec();
            let attestation_key = self.attestation.verifying_key().to_sec1();
            let mut signature = self
                .attestation
                .sign_prehash(&dait_chain_client::simulated_report_digest(&body))
                .to_bytes()
                .to_vec();
            if self.flip_report_signature {
                signature[40] ^= 1;
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
            dait_chain_client::encode_bundle(&proto::EvidenceBundle {
                version: 1,
                keyset: keyset_bytes,
                freshness: Some(self.freshness.to_proto()),
                cpu: Some(proto::CpuEvidence {
                    evidence: Some(Evidence::Simulated(report)),
                }),
                gpus: vec![],
                tpm: None,
                event_log: self.event_log.clone(),
                collateral: None,
            })
        }
    }

    pub(crate) fn key(n: u8) -> HostSigningKey {
        HostSigningKey::from_bytes(&[n; 32]).unwrap()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::fixture::{Fixture, NOW, key};
    use super::*;

    fn allow(f: &Fixture) -> Policy {
        Policy::new()
            .dangerous_allow_simulated(&f.root_public())
            .unwrap()
    }

    fn verify(f: &Fixture, policy: &Policy) -> Result<VerifiedBundle, VerifyError> {
        verify_bundle(&f.encode(), policy, &f.freshness, UnixTime::from_secs(NOW))
    }

    #[test]
    fn simulated_bundle_verifies_with_its_root() {
        let f = Fixture::new();
        let v = verify(&f, &allow(&f)).unwrap();
        assert_eq!(v.platform(), Platform::Simulated);
        assert_eq!(v.receipt_key(), &f.keyset.receipt_key);
        assert_eq!(v.tls_spki(), f.keyset.tls_spki.as_slice());
        assert_eq!(v.ohttp_key_config(), f.keyset.ohttp_key_config.as_slice());
        assert_eq!(
            v.keyset_hash(),
            &dait_chain_client::keyset_hash(&f.keyset.encode())
        );
        assert_eq!(v.host_key_id(), &f.keyset.host_key_id());
        assert_eq!(v.domain().chain_id, 31337);
    }

    #[test]
    fn default_policy_rejects_simulated() {
        let f = Fixture::new();
        assert!(matches!(
            verify(&f, &Policy::new()),
            Err(VerifyError::SimulatedEvidence)
        ));
    }

    #[test]
    fn another_root_is_rejected() {
        let f = Fixture::new();
        let other = Policy::new()
            .dangerous_allow_simulated(&key(42).verifying_key().to_sec1())
            .unwrap();
        assert!(matches!(
            verify(&f, &other),
            Err(VerifyError::AttestationKeyNotCertified)
        ));
    }

    #[test]
    fn evidence_for_another_nonce_is_rejected() {
        let f = Fixture::new();
        let r = verify_bundle(
            &f.encode(),
            &allow(&f),
            &Freshness::TenantNonce([6; 32]),
            UnixTime::from_secs(NOW),
        );
        assert!(matches!(r, Err(VerifyError::FreshnessMismatch)));
    }

    #[test]
    fn report_data_for_another_keyset_is_rejected() {
        let mut f = Fixture::new();
        f.bound_keyset_hash = Some(B256([0xee; 32]));
        assert!(matches!(
            verify(&f, &allow(&f)),
            Err(VerifyError::KeysetBinding)
        ));
    }

    #[test]
    fn flipped_report_signature_is_rejected() {
        let mut f = Fixture::new();
        f.flip_report_signature = true;
        assert!(matches!(
            verify(&f, &allow(&f)),
            Err(VerifyError::ReportSignature)
        ));
    }

    #[test]
    fn altered_event_log_is_rejected() {
        let f = Fixture::new();
        let mut bundle = dait_chain_client::decode_bundle(&f.encode()).unwrap();
        bundle.event_log.push(b'x');
        let bytes = dait_chain_client::encode_bundle(&bundle);
        let r = verify_bundle(&bytes, &allow(&f), &f.freshness, UnixTime::from_secs(NOW));
        assert!(matches!(r, Err(VerifyError::EventLogMismatch)));
    }

    #[test]
    fn keyset_from_the_future_is_rejected() {
        let mut f = Fixture::new();
        f.keyset.created_at = NOW + MAX_CLOCK_SKEW_SECS + 1;
        assert!(matches!(
            verify(&f, &allow(&f)),
            Err(VerifyError::KeysetFromFuture)
        ));
    }

    #[test]
    fn wrong_platform_tag_is_rejected() {
        let mut f = Fixture::new();
        f.platform = proto::Platform::Tdx;
        assert!(matches!(
            verify(&f, &allow(&f)),
            Err(VerifyError::MalformedReport { .. })
        ));
    }

    #[test]
    fn tdx_evidence_is_unsupported_in_this_build() {
        let f = Fixture::new();
        let mut bundle = dait_chain_client::decode_bundle(&f.encode()).unwrap();
        bundle.cpu = Some(proto::CpuEvidence {
            evidence: Some(Evidence::TdxQuote(vec![1, 2, 3])),
        });
        let bytes = dait_chain_client::encode_bundle(&bundle);
        let r = verify_bundle(&bytes, &allow(&f), &f.freshness, UnixTime::from_secs(NOW));
        assert!(matches!(
            r,
            Err(VerifyError::UnsupportedPlatform(Platform::Tdx))
        ));
    }

    #[test]
    fn trailing_byte_and_truncation_are_malformed() {
        let f = Fixture::new();
        let mut bytes = f.encode();
        let policy = allow(&f);
        for cut in 0..bytes.len() {
            let r = verify_bundle(&bytes[..cut], &policy, &f.freshness, UnixTime::from_secs(NOW));
            assert!(r.is_err(), "truncated at {cut} accepted");
        }
        bytes.push(0);
        let r = verify_bundle(&bytes, &policy, &f.freshness, UnixTime::from_secs(NOW));
        assert!(matches!(r, Err(VerifyError::Decode(_))));
    }

    #[test]
    fn malformed_root_is_refused() {
        assert!(matches!(
            Policy::new().dangerous_allow_simulated(&[4; 65]),
            Err(VerifyError::MalformedKey { .. })
        ));
    }
}
