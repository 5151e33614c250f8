//! Simulated evidence (development and CI only): a report signed by a per-boot attestation key, which a
//! simulated platform root certifies.

use dait_chain_client::B256;
use dait_chain_client::proto;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest as _, Sha256};

use super::runtime::{LaunchField, check_launch_binding, replay_runtime_log};
use super::{Policy, VerifyError};

/// Simulated evidence: policy first (so it is rejected whatever its signatures), then the chain
/// root → attestation key → report, then the report's content.
pub(super) fn verify_simulated(
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
    if !body.mr_config_id.is_empty() {
        // Launched with a MRCONFIGID: the log must hash to it (PROTOCOL.md §10.1).
        let field = <&[u8; 48]>::try_from(body.mr_config_id.as_slice()).map_err(|_| {
            VerifyError::MalformedReport {
                field: "simulated_report_body.mr_config_id",
            }
        })?;
        check_launch_binding(&bundle.event_log, LaunchField::MrConfigId(field))?;
    }
    if let Some(expected) = &policy.runtime_rtmr3 {
        // An empty log is a log without events (the TDX path skips it; its RTMR3 is pinned in the quote).
        let replayed = if bundle.event_log.is_empty() {
            [0u8; 48]
        } else {
            replay_runtime_log(&bundle.event_log)?
        };
        if replayed != *expected {
            return Err(VerifyError::RuntimeMeasurementMismatch);
        }
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

#[cfg(test)]
mod tests {
    use dait_chain_client::proto;
    use dait_measure::ReferenceMeasurements;
    use dait_measure::reference::RuntimeEvent;

    use super::*;
    use crate::UnixTime;
    use crate::bundle::fixture::{Fixture, NOW, key, runtime_events, runtime_log};
    use crate::bundle::{Platform, VerifiedBundle, verify_bundle};
    use dait_chain_client::WireMessage as _;

    /// The synthetic reference with `events` as its runtime events.
    fn reference(events: Vec<RuntimeEvent>) -> ReferenceMeasurements {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../measurements/reference/0.0.0-synthetic.json");
        let mut r = ReferenceMeasurements::load(&path).unwrap();
        r.runtime.events = events;
        r
    }

    fn allow_with_reference(f: &Fixture, events: Vec<RuntimeEvent>) -> Policy {
        Policy::from_reference(&reference(events))
            .unwrap()
            .dangerous_allow_simulated(&f.root_public())
            .unwrap()
    }

    /// A simulated bundle whose log records `served` (signed into the report) under a reference of the
    /// agent's default events.
    fn verify_served(served: &[RuntimeEvent]) -> Result<VerifiedBundle, VerifyError> {
        let mut f = Fixture::new();
        f.event_log = runtime_log(served);
        f.verify(&allow_with_reference(&f, runtime_events()))
    }

    #[test]
    fn simulated_bundle_verifies_with_its_root() {
        let f = Fixture::new();
        let v = f.verify(&f.allow()).unwrap();
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
            f.verify(&Policy::new()),
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
            f.verify(&other),
            Err(VerifyError::AttestationKeyNotCertified)
        ));
    }

    #[test]
    fn report_data_for_another_keyset_is_rejected() {
        let mut f = Fixture::new();
        f.bound_keyset_hash = Some(B256([0xee; 32]));
        assert!(matches!(
            f.verify(&f.allow()),
            Err(VerifyError::KeysetBinding)
        ));
    }

    #[test]
    fn flipped_report_signature_is_rejected() {
        let mut f = Fixture::new();
        f.flip_report_signature = true;
        assert!(matches!(
            f.verify(&f.allow()),
            Err(VerifyError::ReportSignature)
        ));
    }

    #[test]
    fn altered_event_log_is_rejected() {
        let f = Fixture::new();
        let mut bundle = dait_chain_client::decode_bundle(&f.encode()).unwrap();
        bundle.event_log.push(b'x');
        let bytes = dait_chain_client::encode_bundle(&bundle);
        let r = verify_bundle(&bytes, &f.allow(), &f.freshness, UnixTime::from_secs(NOW));
        assert!(matches!(r, Err(VerifyError::EventLogMismatch)));
    }

    #[test]
    fn wrong_platform_tag_is_rejected() {
        let mut f = Fixture::new();
        f.platform = proto::Platform::Tdx;
        assert!(matches!(
            f.verify(&f.allow()),
            Err(VerifyError::MalformedReport { .. })
        ));
    }

    /// A simulated bundle launched with `mr_config_id` serving the agent's default events.
    fn launched_with(mr_config_id: Vec<u8>) -> Result<VerifiedBundle, VerifyError> {
        let mut f = Fixture::new();
        f.event_log = runtime_log(&runtime_events());
        f.mr_config_id = mr_config_id;
        f.verify(&allow_with_reference(&f, runtime_events()))
    }

    #[test]
    fn launch_bound_simulated_bundle_verifies() {
        let register = replay_runtime_log(&runtime_log(&runtime_events())).unwrap();
        let field = dait_chain_client::runtime_log::launch_binding_mrconfigid(&register);
        let v = launched_with(field.to_vec()).unwrap();
        assert_eq!(v.runtime().unwrap().weight_hash, Some(B256([2; 32])));
    }

    #[test]
    fn event_log_not_hashing_to_the_launch_mrconfigid_is_rejected() {
        let mut other = runtime_events();
        other[0].sha256.0[0] ^= 1;
        let register = replay_runtime_log(&runtime_log(&other)).unwrap();
        let other_field = dait_chain_client::runtime_log::launch_binding_mrconfigid(&register);
        for (case, field) in [
            ("another configuration", other_field.to_vec()),
            ("zero", vec![0; 48]),
            ("the register itself", register.to_vec()),
        ] {
            let r = launched_with(field);
            assert!(
                matches!(
                    r,
                    Err(VerifyError::LaunchBindingMismatch {
                        field: "MRCONFIGID"
                    })
                ),
                "{case}: {r:?}"
            );
        }
        assert!(matches!(
            launched_with(vec![1; 32]),
            Err(VerifyError::MalformedReport {
                field: "simulated_report_body.mr_config_id"
            })
        ));
    }

    #[test]
    fn simulated_runtime_log_matching_the_reference_verifies() {
        let v = verify_served(&runtime_events()).unwrap();
        assert_eq!(v.platform(), Platform::Simulated);
        let policy = Policy::from_reference(&reference(runtime_events())).unwrap();
        assert_eq!(
            policy.runtime_rtmr3,
            Some(replay_runtime_log(&runtime_log(&runtime_events())).unwrap())
        );
        // No runtime events in the reference: an empty log (or `[]`) matches.
        for log in [Vec::new(), b"[]".to_vec()] {
            let mut f = Fixture::new();
            f.event_log = log;
            f.verify(&allow_with_reference(&f, Vec::new())).unwrap();
        }
    }

    #[test]
    fn simulated_runtime_log_unlike_the_reference_is_rejected() {
        let mut changed = runtime_events();
        changed[1].sha256.0[31] ^= 1;
        let mut missing = runtime_events();
        missing.remove(3);
        let mut extra = runtime_events();
        extra.push(RuntimeEvent {
            name: "model-weights".to_owned(),
            sha256: dait_measure::HexBytes([9; 32]),
        });
        let mut reordered = runtime_events();
        reordered.swap(1, 2);
        for (case, served) in [
            ("changed", changed),
            ("missing", missing),
            ("extra", extra),
            ("reordered", reordered),
            ("none", Vec::new()),
        ] {
            let r = verify_served(&served);
            assert!(
                matches!(r, Err(VerifyError::RuntimeMeasurementMismatch)),
                "{case}: {r:?}"
            );
        }
    }

    #[test]
    fn simulated_runtime_log_under_a_reference_must_be_well_formed() {
        let mut f = Fixture::new();
        f.event_log = b"simulated event log".to_vec();
        assert!(matches!(
            f.verify(&allow_with_reference(&f, runtime_events())),
            Err(VerifyError::MalformedEventLog)
        ));
        // A stated digest that is not its data's.
        let log = String::from_utf8(runtime_log(&runtime_events())).unwrap();
        let data = String::from_utf8(dait_measure::reference::runtime_event_data(
            "model-id",
            &dait_measure::HexBytes([1; 32]),
        ))
        .unwrap();
        f.event_log = log
            .replacen(&data, &data.replace(":01", ":02"), 1)
            .into_bytes();
        assert!(matches!(
            f.verify(&allow_with_reference(&f, runtime_events())),
            Err(VerifyError::MalformedEventLog)
        ));
    }

    #[test]
    fn simulated_evidence_under_a_reference_still_needs_the_dangerous_opt_in() {
        let mut f = Fixture::new();
        f.event_log = runtime_log(&runtime_events());
        let policy = Policy::from_reference(&reference(runtime_events())).unwrap();
        assert!(!policy.allows_simulated());
        assert!(matches!(
            f.verify(&policy),
            Err(VerifyError::SimulatedEvidence)
        ));
    }
}
