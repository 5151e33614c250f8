//! Replays of receipts for calls served by the real engine: a genuine receipt matches, and each altered receipt,
//! request, weights file or build id fails with its own error. They run against the engine at
//! `DAIT_ENGINE_URL` or the one `scripts/engine.sh start` started; without either they are skipped, and they
//! FAIL instead when `DAIT_REQUIRE_ENGINE=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use dait_audit::{AuditError, Check, NotReplayable, Verdict, replay};
use dait_chain_client::{HostSignature, SignatureError};
use support::{Engine, REQUEST, Served, engine, serve};

/// Upper bound on any one test (the engine serves one request at a time; parallel tests queue).
const TEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Serves [`REQUEST`] on the real engine and runs `check` on it; skips without an engine.
async fn with_served<F: AsyncFnOnce(Engine, Served)>(check: F) {
    let Some(engine) = engine() else {
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let served = serve(&engine, REQUEST).await;
        check(engine, served).await;
    })
    .await
    .expect("the test finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genuine_receipt_replays_to_a_match() {
    with_served(async |engine, served| {
        let report = replay(&served.audit(&engine, served.receipt.clone(), REQUEST)).await;
        assert_eq!(report.verdict(), Verdict::Match, "{}", report.to_json());
        assert!(report.result.is_ok());
        assert_eq!(
            report.replayed_response_hash,
            Some(served.receipt.receipt.response_hash)
        );
        let json = report.to_json();
        assert_eq!(json["verdict"], "match");
        assert!(json["check"].is_null());
        assert!(json["replay_ms"].as_u64().is_some());
        assert_eq!(
            json["engine_usage"]["completion_tokens"],
            served.receipt.receipt.tokens_out
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_response_hash_is_a_mismatch() {
    with_served(async |engine, served| {
        let receipt = served.resigned(|r| r.response_hash.0[31] ^= 1);
        let report = replay(&served.audit(&engine, receipt, REQUEST)).await;
        assert!(
            matches!(report.result, Err(AuditError::ResponseHash { .. })),
            "{}",
            report.to_json()
        );
        assert_eq!(report.verdict(), Verdict::Mismatch);
        assert_eq!(
            report.replayed_response_hash,
            Some(served.receipt.receipt.response_hash)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_seed_is_a_mismatch() {
    with_served(async |engine, served| {
        let receipt = served.resigned(|r| r.seed = 8);
        let report = replay(&served.audit(&engine, receipt, REQUEST)).await;
        assert!(
            matches!(
                report.result,
                Err(AuditError::Seed {
                    receipt: 8,
                    request: 7
                })
            ),
            "{}",
            report.to_json()
        );
        assert_eq!(report.verdict(), Verdict::Mismatch);
        assert_eq!(report.replay_ms, None, "no replay for a contradicted seed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_usage_is_its_own_mismatch() {
    with_served(async |engine, served| {
        let receipt = served.resigned(|r| r.tokens_out += 1);
        let report = replay(&served.audit(&engine, receipt, REQUEST)).await;
        assert!(
            matches!(report.result, Err(AuditError::Usage { .. })),
            "{}",
            report.to_json()
        );
        assert_eq!(
            (report.check(), report.verdict()),
            (Some(Check::Usage), Verdict::Mismatch)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_signature_bit_is_a_signature_error() {
    with_served(async |engine, served| {
        let mut receipt = served.receipt.clone();
        let mut sig = receipt.host_signature.to_bytes();
        sig[10] ^= 0x01;
        receipt.host_signature = HostSignature(sig);
        let report = replay(&served.audit(&engine, receipt, REQUEST)).await;
        assert!(
            matches!(
                report.result,
                Err(AuditError::Signature(SignatureError::Mismatch))
            ),
            "{}",
            report.to_json()
        );
        assert_eq!(report.verdict(), Verdict::Refused);
        // Another host's key: its id is not the receipt's.
        let mut audit = served.audit(&engine, served.receipt.clone(), REQUEST);
        audit.host_key.key = dait_verifier::bundle::fixture::key(9).verifying_key();
        let report = replay(&audit).await;
        assert!(matches!(report.result, Err(AuditError::HostKey { .. })));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_request_is_a_request_hash_error() {
    with_served(async |engine, served| {
        let other = REQUEST.replace("three", "four");
        let report = replay(&served.audit(&engine, served.receipt.clone(), &other)).await;
        assert!(
            matches!(report.result, Err(AuditError::RequestHash { .. })),
            "{}",
            report.to_json()
        );
        // The same JSON with another byte (a trailing newline) is another request.
        let report =
            replay(&served.audit(&engine, served.receipt.clone(), &format!("{REQUEST}\n"))).await;
        assert_eq!(report.check(), Some(Check::RequestHash));
        assert_eq!(report.verdict(), Verdict::Refused);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_weights_file_is_a_weights_error() {
    with_served(async |engine, served| {
        let other = std::env::temp_dir().join(format!(
            "dait-audit-other-weights-{}.gguf",
            std::process::id()
        ));
        std::fs::write(&other, b"GGUF other weights").unwrap();
        let mut audit = served.audit(&engine, served.receipt.clone(), REQUEST);
        audit.weights = other.clone();
        let report = replay(&audit).await;
        std::fs::remove_file(&other).unwrap();
        assert!(
            matches!(report.result, Err(AuditError::Weights { .. })),
            "{}",
            report.to_json()
        );
        assert_eq!(report.verdict(), Verdict::Refused);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_engine_build_is_a_build_error() {
    with_served(async |engine, served| {
        let mut audit = served.audit(&engine, served.receipt.clone(), REQUEST);
        audit.engine_build = "llama.cpp-llama-server/llama-cpp-python-0.3.36".to_owned();
        let report = replay(&audit).await;
        assert!(
            matches!(report.result, Err(AuditError::EngineBuild { .. })),
            "{}",
            report.to_json()
        );
        assert_eq!(report.verdict(), Verdict::Refused);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_deterministic_is_refused() {
    with_served(async |engine, served| {
        let receipt = served.resigned(|r| {
            r.deterministic = false;
            r.seed = 0;
        });
        let report = replay(&served.audit(&engine, receipt, REQUEST)).await;
        assert!(
            matches!(report.result, Err(AuditError::NotDeterministic)),
            "{}",
            report.to_json()
        );
        assert_eq!(report.verdict(), Verdict::Refused);
        assert_eq!(report.to_json()["check"], "deterministic");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreplayable_request_is_refused() {
    with_served(async |engine, served| {
        // A receipt that claims determinism for a request without temperature 0 or a seed.
        let request = r#"{"model":"smollm2-135m-instruct-q4_1","messages":[{"role":"user","content":"Hi"}],"max_tokens":4}"#;
        let receipt = served.resigned(|r| {
            r.request_hash = dait_chain_client::request_hash(request.as_bytes());
            r.seed = 0;
        });
        let report = replay(&served.audit(&engine, receipt, request)).await;
        assert!(
            matches!(
                report.result,
                Err(AuditError::NotReplayable(NotReplayable::Rule(
                    dait_chain_client::replay::NotReplayable::Sampling
                )))
            ),
            "{}",
            report.to_json()
        );
        assert_eq!(report.verdict(), Verdict::Refused);
    })
    .await;
}
