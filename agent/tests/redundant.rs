//! M-of-N redundant serving through the tenant's proxy (`dait-tenant proxy --redundant N`): three real
//! `dait-host` agents, each declaring its engine deterministic, one of them in front of an engine that
//! answers differently. The majority's answer comes back with `x-dait-agreement: 2/3`, and the
//! divergent host's signed receipt is written as dispute evidence, where it still verifies. A request
//! that is not replayable is refused by the proxy before anything is sent; three different answers are
//! a 502 with the dispute recorded.
//!
//! `two_real_engines_outvote_a_different_one` runs two of the agents against the real CPU engine at
//! `DAIT_ENGINE_URL`, or the one that `scripts/engine.sh start` started; without either it is skipped,
//! and it FAILS instead when `DAIT_REQUIRE_ENGINE=1`.
#![cfg(feature = "simulated-tee")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
mod redundant_hosts;

use std::path::Path;
use std::time::Duration;

use common::{CHAT, EngineMode, EngineStats, VLLM_LIKE, real_engine_url, start_engine};
use dait_chain_client::WireMessage as _;
use dait_chain_client::{HostVerifyingKey, SignedReceipt, request_hash};
use dait_tenant::redundant::{DISPUTES_DIR, DisputeEvidence};
use http::Method;
use redundant_hosts::{Host, redundant_proxy, request, start_host};
use serde_json::{Value, json};

/// Upper bound on a test with the in-test engines.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Upper bound on the real-engine test.
const REAL_ENGINE_TIMEOUT: Duration = Duration::from_secs(400);

/// An in-test engine that generates `tokens` tokens (the others generate 5: another length default).
fn engine_with(tokens: u64) -> EngineMode {
    EngineMode {
        tokens,
        ..VLLM_LIKE
    }
}

/// A chat request: one user message, `max_tokens`, and the members of `extra`.
fn chat(prompt: &str, max_tokens: u64, extra: Value) -> Value {
    let mut v = json!({"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// A `dait-host` in front of a fresh in-test engine generating `tokens` tokens.
async fn host_with(tokens: u64) -> (Host, std::sync::Arc<EngineStats>) {
    let (engine, stats) = start_engine(engine_with(tokens)).await;
    (
        start_host(&format!("http://{engine}"), "test-model").await,
        stats,
    )
}

fn header<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// The evidence file the response names in `x-dait-dispute`.
fn evidence(state_dir: &Path, headers: &http::HeaderMap) -> DisputeEvidence {
    let name = header(headers, "x-dait-dispute").expect("x-dait-dispute");
    let text = std::fs::read(state_dir.join(DISPUTES_DIR).join(name)).unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// Checks `signed` (base64url) against `host`'s attested receipt key and returns the receipt.
async fn verified_receipt(host: &Host, signed: &str) -> dait_chain_client::Receipt {
    let tmp = tempfile::tempdir().unwrap();
    let (_, bundle) = dait_tenant::verify_host(&host.url, &host.config(tmp.path()).policy)
        .await
        .unwrap();
    let signed = SignedReceipt::from_header_value(signed).unwrap();
    let key = HostVerifyingKey::from_sec1(bundle.receipt_key()).unwrap();
    signed.verify(&key, &bundle.domain()).unwrap();
    signed.receipt
}

/// The text of a non-streamed chat answer.
fn text(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn with_timeout(limit: Duration, test: impl Future<Output = ()>) {
    tokio::time::timeout(limit, test)
        .await
        .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_majority_answer_is_returned_and_the_divergent_receipt_is_dispute_evidence() {
    with_timeout(TEST_TIMEOUT, async {
        let (a, a_engine) = host_with(5).await;
        let (divergent, d_engine) = host_with(4).await;
        let (b, b_engine) = host_with(5).await;
        let tenant = tempfile::tempdir().unwrap();
        let proxy = redundant_proxy(&[&a, &divergent, &b], 3, tenant.path()).await;
        let addr = proxy.local_addr();

        let greedy = chat("Say hello", 16, json!({"temperature": 0}));
        let (status, headers, body) = request(addr, Method::POST, CHAT, Some(&greedy)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(header(&headers, "x-dait-agreement"), Some("2/3"));
        assert_eq!(header(&headers, "x-dait-host"), Some(a.url.as_str()));
        assert_eq!(text(&body), "tok0 tok1 tok2 tok3 tok4 ");
        let returned = verified_receipt(&a, header(&headers, "x-dait-receipt").unwrap()).await;
        assert!(returned.deterministic);
        // Every engine got the request marked replayable, with the seed the receipts name.
        for stats in [&a_engine, &d_engine, &b_engine] {
            assert_eq!(stats.requests().len(), 1);
            assert_eq!(stats.requests()[0]["seed"], json!(0));
        }

        // The dispute evidence: the request hash, every host, and the divergent host's receipt, which
        // verifies under its attested key and names the request and the answer it gave.
        let e = evidence(tenant.path(), &headers);
        let hash = request_hash(greedy.to_string().as_bytes());
        assert_eq!(e.request_hash, hash.to_string());
        assert_eq!(e.agreement, "2/3");
        assert_eq!(
            e.majority_response_hash,
            Some(returned.response_hash.to_string())
        );
        assert_eq!(e.disagreeing, vec![divergent.url.clone()]);
        let hosts: Vec<(&str, bool)> = e
            .hosts
            .iter()
            .map(|h| (h.host.as_str(), h.agrees))
            .collect();
        assert_eq!(
            hosts,
            [
                (a.url.as_str(), true),
                (divergent.url.as_str(), false),
                (b.url.as_str(), true)
            ]
        );
        let odd = &e.hosts[1];
        let receipt = verified_receipt(&divergent, odd.signed_receipt.as_deref().unwrap()).await;
        assert_eq!(receipt.request_hash, hash);
        assert_eq!(Some(receipt.response_hash.to_string()), odd.response_hash);
        assert_ne!(receipt.response_hash, returned.response_hash);
        assert_eq!(
            (receipt.deterministic, receipt.seed, receipt.tokens_out),
            (true, 0, 4)
        );
        assert_eq!(odd.host_key_id, receipt.host_key_id.to_string());
        let (status, _, listed) = request(addr, Method::GET, "/dait/disputes", None).await;
        assert_eq!(status, 200);
        let listed: Value = serde_json::from_slice(&listed).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(
            listed[0]["file"].as_str(),
            header(&headers, "x-dait-dispute")
        );

        // Requests that are not replayable are refused by the proxy: no host is asked.
        for refused in [
            chat("Say hello", 16, json!({"temperature": 0.7})),
            chat("Say hello", 16, json!({"temperature": 0.7, "seed": 2.5})),
            chat("Say hello", 16, json!({"temperature": 0, "n": 2})),
            chat("Say hello", 16, json!({"temperature": 0, "stream": true})),
        ] {
            let (status, _, body) = request(addr, Method::POST, CHAT, Some(&refused)).await;
            assert_eq!(status, 400, "{refused}");
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["code"], "not_replayable", "{refused}");
        }
        for stats in [&a_engine, &d_engine, &b_engine] {
            assert_eq!(
                stats.requests().len(),
                1,
                "a refused request reached an engine"
            );
        }

        // Where every host agrees (3 tokens at most, so all give the same), no dispute is written; a
        // seeded request is sent with its own seed.
        let seeded = chat("Say hello", 3, json!({"temperature": 0.8, "seed": 11}));
        let (status, headers, body) = request(addr, Method::POST, CHAT, Some(&seeded)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(header(&headers, "x-dait-agreement"), Some("3/3"));
        assert_eq!(header(&headers, "x-dait-dispute"), None);
        assert_eq!(a_engine.requests()[1]["seed"], json!(11));
        let (_, _, listed) = request(addr, Method::GET, "/dait/disputes", None).await;
        assert_eq!(
            serde_json::from_slice::<Value>(&listed)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let (_, _, receipts) = request(addr, Method::GET, "/dait/receipts", None).await;
        assert_eq!(
            serde_json::from_slice::<Value>(&receipts)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            6
        );
        let (_, _, states) = request(addr, Method::GET, "/dait/state", None).await;
        let states: Value = serde_json::from_slice(&states).unwrap();
        let turns: Vec<u64> = states
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["turn"].as_u64().unwrap())
            .collect();
        assert_eq!(turns, [2, 2, 2]);

        // A host that fails counts as disagreeing: its error is in the evidence.
        drop(b);
        let (status, headers, _) = request(addr, Method::POST, CHAT, Some(&seeded)).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "x-dait-agreement"), Some("2/3"));
        let e = evidence(tenant.path(), &headers);
        assert!(
            e.hosts[2].error.is_some() && e.hosts[2].signed_receipt.is_none(),
            "{e:?}"
        );
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_different_answers_are_a_502_with_the_dispute_recorded() {
    with_timeout(TEST_TIMEOUT, async {
        let (a, _) = host_with(3).await;
        let (b, _) = host_with(4).await;
        let (c, _) = host_with(5).await;
        let tenant = tempfile::tempdir().unwrap();
        let proxy = redundant_proxy(&[&a, &b, &c], 3, tenant.path()).await;
        let greedy = chat("Say hello", 16, json!({"temperature": 0}));
        let (status, headers, body) =
            request(proxy.local_addr(), Method::POST, CHAT, Some(&greedy)).await;
        assert_eq!(status, 502);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "dait_no_majority");
        assert_eq!(header(&headers, "x-dait-agreement"), Some("1/3"));
        let e = evidence(tenant.path(), &headers);
        assert_eq!(e.majority_response_hash, None);
        assert_eq!(
            e.disagreeing,
            vec![a.url.clone(), b.url.clone(), c.url.clone()]
        );
        for (host, answer) in [&a, &b, &c].into_iter().zip(&e.hosts) {
            let receipt = verified_receipt(host, answer.signed_receipt.as_deref().unwrap()).await;
            assert_eq!(
                Some(receipt.response_hash.to_string()),
                answer.response_hash
            );
        }
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_real_engines_outvote_a_different_one() {
    let Some(url) = real_engine_url() else {
        return;
    };
    with_timeout(REAL_ENGINE_TIMEOUT, async {
        let model = "smollm2-135m-instruct-q4_1";
        let first = start_host(&url, model).await;
        let (engine, _) = start_engine(VLLM_LIKE).await;
        let other = start_host(&format!("http://{engine}"), model).await;
        let second = start_host(&url, model).await;
        let tenant = tempfile::tempdir().unwrap();
        let proxy = redundant_proxy(&[&first, &other, &second], 3, tenant.path()).await;
        let greedy = chat("Name three colours.", 12, json!({"temperature": 0}));
        let (status, headers, body) =
            request(proxy.local_addr(), Method::POST, CHAT, Some(&greedy)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(header(&headers, "x-dait-agreement"), Some("2/3"));
        assert_eq!(header(&headers, "x-dait-host"), Some(first.url.as_str()));
        assert!(!text(&body).starts_with("tok0"), "{}", text(&body));
        let e = evidence(tenant.path(), &headers);
        assert_eq!(e.disagreeing, vec![other.url.clone()]);
        let odd = &e.hosts[1];
        let receipt = verified_receipt(&other, odd.signed_receipt.as_deref().unwrap()).await;
        assert_eq!(
            receipt.request_hash,
            request_hash(greedy.to_string().as_bytes())
        );
        assert!(receipt.deterministic);
        proxy.shutdown().await;
    })
    .await;
}
