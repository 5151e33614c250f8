//! Replayable calls (`x-dait-replayable: 1`, PROTOCOL.md §6): refused, each with its own
//! `not_replayable` message, no receipt and the channel unchanged, by an agent whose engine is not
//! declared deterministic and for sampling that is not replayable; served with the seed the receipt
//! names sent to the engine (the in-test engine records what it was asked). The tenant library sends
//! them ([`dait_tenant::CallOptions::replayable`]) to the real binary and checks what their receipts
//! claim.
//!
//! `replayable_calls_on_the_real_engine_hash_the_same` runs against the real CPU engine at
//! `DAIT_ENGINE_URL`, or the one that `scripts/engine.sh start` started, through a recording
//! pass-through; without either it is skipped, and it FAILS instead when `DAIT_REQUIRE_ENGINE=1`.
#![cfg(feature = "simulated-tee")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use dait_chain_client::Receipt;
use serde_json::{Value, json};

/// Upper bound on a test with the in-test engine.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Upper bound on the real-engine test.
const REAL_ENGINE_TIMEOUT: Duration = Duration::from_secs(300);

/// A chat request: one user message, 8 tokens at most, and the members of `extra`.
fn chat(prompt: &str, extra: Value) -> Value {
    let mut v =
        json!({"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": 8});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// The in-test engine (recording its requests), the agent in front of it with `flags`, a
/// connection, and a tenant that marks its calls replayable.
async fn setup(flags: &[&str]) -> (Agent, Conn, Tenant, Arc<EngineStats>) {
    let (engine, stats) = start_engine(VLLM_LIKE).await;
    let agent = agent_at(engine, true, flags).await;
    let mut conn = Conn::connect(agent.addr, true).await.unwrap();
    let info = host_info(&mut conn).await;
    let mut tenant = Tenant::new(&info, 1_000_000, 1);
    tenant.replayable = true;
    (agent, conn, tenant, stats)
}

/// Asserts the encrypted `not_replayable` answer (422) with `reason`, and no receipt.
fn assert_not_replayable(r: &CallResult, reason: &str) {
    r.assert_error(422, "not_replayable");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["message"], format!("not replayable: {reason}"));
}

/// A non-streamed call of `request` that is refused as not replayable for `reason`, before the
/// engine is asked.
async fn assert_refused(
    conn: &mut Conn,
    tenant: &Tenant,
    stats: &EngineStats,
    request: &Value,
    reason: &str,
) {
    let asked = stats.requests().len();
    let r = tenant.call(conn, CHAT, &bytes(request)).await;
    assert_not_replayable(&r, reason);
    assert_eq!(
        stats.requests().len(),
        asked,
        "{request}: the engine was asked"
    );
}

/// A served call: status 200, its receipt accepted by the tenant's checks; returns the receipt.
fn accepted(tenant: &mut Tenant, r: &CallResult, streamed: bool) -> Receipt {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    tenant.accept(r, streamed).unwrap();
    r.receipt.as_ref().unwrap().receipt.clone()
}

async fn with_timeout(limit: Duration, test: impl Future<Output = ()>) {
    tokio::time::timeout(limit, test)
        .await
        .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_engine_deterministic_refuses_every_replayable_call() {
    with_timeout(TEST_TIMEOUT, async {
        let (_agent, mut conn, mut tenant, stats) = setup(&[]).await;
        let reason = "the engine is not declared deterministic";
        let greedy = chat("hello there", json!({"temperature": 0}));
        assert_refused(&mut conn, &tenant, &stats, &greedy, reason).await;
        let seeded = chat("hello there", json!({"temperature": 0.9, "seed": 7}));
        assert_refused(&mut conn, &tenant, &stats, &seeded, reason).await;
        // Streamed: the same error as the whole (encrypted) answer, no receipt trailer.
        let mut streamed = greedy.clone();
        streamed["stream"] = json!(true);
        let state = tenant.state_header();
        let r = tenant
            .stream_with(&mut conn, CHAT, &state, &bytes(&streamed), 0)
            .await
            .unwrap();
        assert_not_replayable(&r, reason);
        assert!(stats.requests().is_empty());

        // The channel goes on at the same turn; a call not marked replayable claims no seed.
        tenant.replayable = false;
        let r = tenant.call(&mut conn, CHAT, &bytes(&seeded)).await;
        let receipt = accepted(&mut tenant, &r, false);
        assert_eq!(receipt.call_seq, 1);
        assert_eq!((receipt.deterministic, receipt.seed), (false, 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_unreplayable_request_is_refused_with_its_own_error_and_the_channel_goes_on() {
    with_timeout(TEST_TIMEOUT, async {
        let (_agent, mut conn, mut tenant, stats) = setup(&["--engine-deterministic"]).await;
        let sampling = "needs temperature 0 or a seed";
        for request in [
            chat("hi", json!({"temperature": 0.9})),
            chat("hi", json!({})),
            chat("hi", json!({"temperature": "0"})),
        ] {
            assert_refused(&mut conn, &tenant, &stats, &request, sampling).await;
        }
        let n = "n must be absent or 1";
        for request in [
            chat("hi", json!({"temperature": 0, "n": 2})),
            chat("hi", json!({"seed": 7, "n": 3})),
        ] {
            assert_refused(&mut conn, &tenant, &stats, &request, n).await;
        }
        let malformed = "seed must be an integer from 0 to 2^63-1";
        for seed in [json!(-1), json!(1.5), json!("7"), json!(1u64 << 63)] {
            let request = chat("hi", json!({"temperature": 0, "seed": seed}));
            assert_refused(&mut conn, &tenant, &stats, &request, malformed).await;
        }
        let mut streamed = chat("hi", json!({"temperature": 0.9, "stream": true}));
        let state = tenant.state_header();
        let r = tenant
            .stream_with(&mut conn, CHAT, &state, &bytes(&streamed), 0)
            .await
            .unwrap();
        assert_not_replayable(&r, sampling);
        assert!(stats.requests().is_empty());

        // Nothing was billed or logged: the first served call is call 1 of the channel.
        streamed["temperature"] = json!(0);
        let r = tenant.stream(&mut conn, CHAT, &bytes(&streamed)).await;
        let receipt = accepted(&mut tenant, &r, true);
        assert_eq!(receipt.call_seq, 1);
        assert_eq!((receipt.deterministic, receipt.seed), (true, 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_gets_the_seed_the_receipt_names() {
    with_timeout(TEST_TIMEOUT, async {
        let (_agent, mut conn, mut tenant, stats) = setup(&["--engine-deterministic"]).await;
        // (marked replayable, request, seed the engine must get, receipt's deterministic and seed)
        let cases = [
            (
                true,
                chat("a", json!({"temperature": 0})),
                Some(0),
                (true, 0),
            ),
            (
                true,
                chat("b", json!({"temperature": 0, "seed": 5})),
                Some(5),
                (true, 5),
            ),
            (
                true,
                chat("c", json!({"temperature": 0.9, "seed": 7})),
                Some(7),
                (true, 7),
            ),
            (
                true,
                chat("d", json!({"seed": 11, "stream": true})),
                Some(11),
                (true, 11),
            ),
            // Not marked: forwarded as it is, and the receipt claims no seed.
            (
                false,
                chat("e", json!({"temperature": 0.9, "seed": 7})),
                Some(7),
                (false, 0),
            ),
            (
                false,
                chat("f", json!({"temperature": 0})),
                None,
                (false, 0),
            ),
        ];
        for (i, (replayable, request, engine_seed, claimed)) in cases.into_iter().enumerate() {
            tenant.replayable = replayable;
            let streamed = request["stream"] == json!(true);
            let r = if streamed {
                tenant.stream(&mut conn, CHAT, &bytes(&request)).await
            } else {
                tenant.call(&mut conn, CHAT, &bytes(&request)).await
            };
            let receipt = accepted(&mut tenant, &r, streamed);
            assert_eq!((receipt.deterministic, receipt.seed), claimed, "{request}");
            let asked = stats.requests();
            assert_eq!(asked.len(), i + 1);
            let sent = asked.last().unwrap();
            assert_eq!(sent["messages"], request["messages"]);
            assert_eq!(
                sent.get("seed").and_then(Value::as_u64),
                engine_seed,
                "{request}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_library_sends_replayable_calls_and_checks_their_receipts() {
    use dait_tenant::{
        CallOptions, DEFAULT_CALL_TIMEOUT, HostErrorCode, Session, SessionConfig, StreamItem,
        TenantError, Wallet,
    };
    with_timeout(TEST_TIMEOUT, async {
        let (engine, stats) = start_engine(LLAMA_LIKE).await;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("host");
        init_simulated(&state);
        let root = hex::decode(
            std::fs::read_to_string(state.join("sim-root.pub"))
                .unwrap()
                .trim(),
        )
        .unwrap();
        let mut cmd = serve_command(&state, &format!("http://{engine}"));
        cmd.args([
            "--engine-deterministic",
            "--price-in",
            "2",
            "--price-out",
            "3",
        ])
        .stderr(std::process::Stdio::null());
        let (_child, addr, _stdout) = spawn_listening(&mut cmd).await;
        let config = SessionConfig {
            host_url: format!("https://{addr}"),
            policy: dait_verifier::bundle::Policy::new()
                .dangerous_allow_simulated(&root)
                .unwrap(),
            escrow_cap: 1_000_000,
            state_dir: dir.path().join("tenant"),
            call_timeout: DEFAULT_CALL_TIMEOUT,
        };
        let mut session = Session::open(config, Wallet::generate()).await.unwrap();
        let replayable = CallOptions::replayable();

        let greedy = bytes(&chat("one", json!({"temperature": 0})));
        let outcome = session
            .call_with_options(CHAT, greedy.clone(), replayable)
            .await
            .unwrap();
        let r = outcome.receipt.receipt();
        assert_eq!((r.call_seq, r.deterministic, r.seed), (1, true, 0));

        // Streamed and seeded (the engine sends no usage: the agent meters it with the same seed).
        let seeded = bytes(&chat(
            "two",
            json!({"temperature": 0.9, "seed": 9, "stream": true}),
        ));
        let mut call = session
            .call_stream_with_options(CHAT, seeded, replayable)
            .await
            .unwrap();
        let mut done = None;
        while let Some(item) = call.next().await {
            if let StreamItem::Done(outcome) = item.unwrap() {
                done = Some(outcome);
            }
        }
        let r = done.unwrap().receipt.receipt().clone();
        assert_eq!((r.call_seq, r.deterministic, r.seed), (2, true, 9));
        assert!(
            stats.requests()[1..]
                .iter()
                .all(|sent| sent["seed"] == json!(9))
        );

        // Refused by the host: its own error, and the session goes on at the same turn.
        let sampled = bytes(&chat("three", json!({"temperature": 0.9})));
        let err = session
            .call_with_options(CHAT, sampled, replayable)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                TenantError::Host {
                    code: HostErrorCode::NotReplayable,
                    status: 422
                }
            ),
            "{err:?}"
        );
        // A seed that no replayable call can have is not sent at all.
        let asked = stats.requests().len();
        let malformed = bytes(&chat("four", json!({"seed": "7"})));
        let err = session
            .call_with_options(CHAT, malformed, replayable)
            .await
            .unwrap_err();
        assert!(matches!(err, TenantError::BadRequestBody), "{err:?}");
        assert_eq!(stats.requests().len(), asked);

        // A call not marked replayable: its receipt claims no seed.
        let outcome = session.call(CHAT, greedy).await.unwrap();
        let r = outcome.receipt.receipt();
        assert_eq!((r.call_seq, r.deterministic, r.seed), (3, false, 0));
        assert!(!session.is_stopped());
    })
    .await;
}

/// The engine build id the real-engine test's agent names (its SHA-256 is the receipts' `engine_build`).
const ENGINE_BUILD: &str = "llama-cpp-python (development engine, scripts/engine.sh)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayable_calls_on_the_real_engine_hash_the_same_and_replay_to_a_match() {
    let Some(url) = real_engine_url() else {
        return;
    };
    with_timeout(REAL_ENGINE_TIMEOUT, async {
        let (proxy, stats) = start_recording_proxy(&url).await;
        let upstream = format!("http://{proxy}");
        let weights =
            dait_testdata::engine_model().expect("the engine's weights file (DAIT_ENGINE_MODEL)");
        let flags = [
            "--upstream",
            &upstream,
            "--price-in",
            "1",
            "--price-out",
            "4",
            "--model-id",
            "smollm2-135m-instruct-q4_1",
            "--model-path",
            weights.to_str().unwrap(),
            "--engine-build",
            ENGINE_BUILD,
            "--engine-deterministic",
        ];
        let agent = serve_in_process(&flags, true).await;
        let mut conn = Conn::connect(agent.addr, true).await.unwrap();
        let info = host_info(&mut conn).await;
        let mut tenant = Tenant::new(&info, u128::MAX / 2, 1);
        tenant.replayable = true;

        let mut greedy = chat("Name three colours.", json!({"temperature": 0}));
        greedy["max_tokens"] = json!(16);
        let mut seeded = chat(
            "Write one line about the sea.",
            json!({"temperature": 0.9, "seed": 7}),
        );
        seeded["max_tokens"] = json!(16);
        // Interleaved, so each repeat follows another request.
        let mut receipts = Vec::new();
        let mut signed = Vec::new();
        for request in [&greedy, &seeded, &greedy, &seeded] {
            let r = tenant.call(&mut conn, CHAT, &bytes(request)).await;
            receipts.push(accepted(&mut tenant, &r, false));
            signed.push((r.receipt.unwrap(), bytes(request)));
        }
        // Streamed, the seeded request is the same computation as non-streamed.
        let mut streamed = seeded.clone();
        streamed["stream"] = json!(true);
        let r = tenant.stream(&mut conn, CHAT, &bytes(&streamed)).await;
        let stream_receipt = accepted(&mut tenant, &r, true);
        signed.push((r.receipt.unwrap(), bytes(&streamed)));

        let claims = |r: &Receipt| (r.deterministic, r.seed);
        assert_eq!(claims(&receipts[0]), (true, 0));
        assert_eq!(claims(&receipts[1]), (true, 7));
        assert_eq!(claims(&receipts[2]), (true, 0));
        assert_eq!(claims(&receipts[3]), (true, 7));
        assert_eq!(claims(&stream_receipt), (true, 7));
        assert_eq!(receipts[0].response_hash, receipts[2].response_hash);
        assert_eq!(receipts[1].response_hash, receipts[3].response_hash);
        assert_eq!(receipts[1].response_hash, stream_receipt.response_hash);
        assert_ne!(receipts[0].response_hash, receipts[1].response_hash);
        assert_eq!(receipts[0].request_hash, receipts[2].request_hash);

        // An auditor replays each receipt on the engine (its own, here the same one) from the disclosed
        // request, the host's key, the weights file and the build id: a match, bit for bit.
        let host_key = dait_audit::inputs::HostKey {
            key: info.host_key,
            domain: info.domain,
        };
        for (receipt, request) in &signed {
            let report = dait_audit::replay(&dait_audit::Audit {
                receipt: receipt.clone(),
                request: request.clone(),
                host_key,
                weights: weights.clone(),
                engine_build: ENGINE_BUILD.to_owned(),
                engine_url: url.clone(),
                timeout: dait_audit::DEFAULT_REPLAY_TIMEOUT,
            })
            .await;
            assert_eq!(
                report.verdict(),
                dait_audit::Verdict::Match,
                "{}",
                report.to_json()
            );
        }

        // What the engine was asked: every completion request carried the receipt's seed.
        let asked = stats.requests();
        assert!(asked.len() >= 5, "{asked:?}");
        for sent in &asked {
            let expected = if sent["messages"] == greedy["messages"] {
                0
            } else {
                assert_eq!(sent["messages"], seeded["messages"]);
                7
            };
            assert_eq!(sent["seed"].as_u64(), Some(expected), "{sent}");
        }
    })
    .await;
}
