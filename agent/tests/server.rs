//! The agent's request path in-process: simulated TEE, the in-test engine, a tenant that speaks
//! OHTTP/BHTTP and checks every receipt (SPUR-IC), and the negative cases of PROTOCOL.md §6.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use dait_chain_client::WireMessage as _;
use dait_chain_client::{ReceiptError, SignedReceipt};
use serde_json::Value;

fn engine_usage(body: &[u8]) -> (u64, u64) {
    let v: Value = serde_json::from_slice(body).unwrap();
    (
        v["usage"]["prompt_tokens"].as_u64().unwrap(),
        v["usage"]["completion_tokens"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn plain_calls_build_a_receipt_chain() {
    let (a, mut conn, info) = connected_agent(VLLM_LIKE, false).await;
    let mut t = Tenant::new(&info, 1_000_000, 1);
    let mut cumulative = 0u128;
    for (i, path) in [CHAT, "/v1/completions", CHAT].iter().enumerate() {
        let body = if path.ends_with("chat/completions") {
            chat_body("hello there agent", 3, false)
        } else {
            br#"{"model":"m","prompt":"one two three","max_tokens":4}"#.to_vec()
        };
        let r = t.call(&mut conn, path, &body).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let rec = &r.receipt.as_ref().unwrap().receipt;
        assert_eq!(rec.call_seq, i as u64 + 1);
        assert_eq!((rec.tokens_in, rec.tokens_out), engine_usage(&r.body));
        assert_eq!(rec.model_id, "test-model");
        assert_eq!(
            rec.amount,
            u128::from(rec.tokens_in) * 2 + u128::from(rec.tokens_out) * 3
        );
        cumulative += rec.amount;
        assert_eq!(rec.cumulative, cumulative);
        t.accept(&r, false).unwrap();
    }
    // Every receipt is in the log, in order.
    let (records, _) =
        dait_agent::receipt_log::read_records(a.app.receipt_log.as_ref().unwrap().path()).unwrap();
    assert_eq!(records.len(), 3);
    let last = SignedReceipt::decode(&records[2].signed_receipt).unwrap();
    assert_eq!(last.receipt.call_seq, 3);
    assert_eq!(last.receipt.cumulative, cumulative);
}

async fn stream_equals_plain(mode: EngineMode) {
    let (_agent, mut conn, info) = connected_agent(mode, false).await;
    let mut t = Tenant::new(&info, 1_000_000, 2);
    let plain = t
        .call(&mut conn, CHAT, &chat_body("same prompt here", 4, false))
        .await;
    t.accept(&plain, false).unwrap();
    let streamed = t
        .stream(&mut conn, CHAT, &chat_body("same prompt here", 4, true))
        .await;
    assert_eq!(streamed.status, 200);
    assert!(String::from_utf8_lossy(&streamed.body).contains("data: [DONE]"));
    t.accept(&streamed, true).unwrap();
    let p = &plain.receipt.as_ref().unwrap().receipt;
    let s = &streamed.receipt.as_ref().unwrap().receipt;
    assert_eq!(s.call_seq, 2);
    assert_eq!((s.tokens_in, s.tokens_out), (p.tokens_in, p.tokens_out));
    assert_eq!(s.response_hash, p.response_hash);
    // A streamed completion (not chat) too.
    let body = br#"{"model":"m","prompt":"a b c d","max_tokens":3,"stream":true}"#;
    let r = t.stream(&mut conn, "/v1/completions", body).await;
    t.accept(&r, true).unwrap();
    assert_eq!(r.receipt.unwrap().receipt.tokens_out, 3);
}

#[tokio::test]
async fn stream_metered_from_engine_usage() {
    stream_equals_plain(VLLM_LIKE).await;
}

#[tokio::test]
async fn stream_metered_by_engine_tokenizer_when_no_usage() {
    stream_equals_plain(LLAMA_LIKE).await;
}

#[tokio::test]
async fn flipped_ciphertext_bit_is_an_opaque_400() {
    let (a, mut conn, info) = connected_agent(VLLM_LIKE, false).await;
    let t = Tenant::new(&info, 1_000_000, 3);
    let body = chat_body("x", 1, false);
    let mut outcomes = Vec::new();
    // A bit in the AEAD ciphertext, in the encapsulated key, and in the key id.
    for pos in [usize::MAX, 10, 0] {
        let e = t
            .call_with(&mut conn, CHAT, &t.state_header(), &body, |enc| {
                let i = if pos == usize::MAX {
                    enc.len() - 1
                } else {
                    pos
                };
                enc[i] ^= 1;
            })
            .await
            .err()
            .unwrap();
        outcomes.push(e);
    }
    for (status, body) in &outcomes {
        assert_eq!(*status, 400);
        assert!(body.is_empty());
    }
    // Chunked: a flipped bit anywhere is the same 400.
    let (status, body) = conn
        .send(
            "POST",
            "/v1/ohttp",
            Some("message/ohttp-chunked-req"),
            vec![1, 0, 32, 0, 1, 0, 1, 9, 9, 9],
        )
        .await
        .unwrap();
    assert_eq!((status, body.is_empty()), (400, true));
    // Nothing was forwarded, nothing was logged.
    assert!(
        a.app
            .channels
            .head(&t.chain.state().channel_id, t.chain.state().host)
            .is_none()
    );
}

#[tokio::test]
async fn stale_and_unknown_states_are_rejected() {
    let (_agent, mut conn, info) = connected_agent(VLLM_LIKE, false).await;
    let mut t = Tenant::new(&info, 1_000_000, 4);
    let old = t.state_header();
    let body = chat_body("hi", 2, false);
    let r = t.call_as(&mut conn, CHAT, &old, &body).await;
    t.accept(&r, false).unwrap();
    // Replaying the turn-0 state.
    let r = t.call_as(&mut conn, CHAT, &old, &body).await;
    r.assert_error(409, "stale_state");
    // A turn ahead of the agent.
    let mut ahead = t.chain.state().clone();
    ahead.turn += 1;
    let h = t.signed_state(ahead).to_header_value();
    let r = t.call_as(&mut conn, CHAT, &h, &body).await;
    r.assert_error(409, "unknown_state");
    // The right state still works: call_seq 2.
    let r = t.call(&mut conn, CHAT, &body).await;
    t.accept(&r, false).unwrap();
    assert_eq!(r.receipt.unwrap().receipt.call_seq, 2);
}

#[tokio::test]
async fn over_escrow_cap_is_402() {
    let (_agent, mut conn, info) = connected_agent(VLLM_LIKE, false).await;
    let t = Tenant::new(&info, 10, 5);
    let r = t.call(&mut conn, CHAT, &chat_body("hi", 100, false)).await;
    r.assert_error(402, "over_escrow_cap");
}

#[tokio::test]
async fn bad_signature_and_wrong_channel() {
    let (_agent, mut conn, info) = connected_agent(VLLM_LIKE, false).await;
    let t = Tenant::new(&info, 1_000_000, 6);
    let body = chat_body("hi", 2, false);
    // Signed by someone else than the state's tenant.
    let other = Tenant::new(&info, 1_000_000, 6);
    let mut forged = other.signed_state(t.chain.state().clone());
    forged.state = t.chain.state().clone();
    let r = t
        .call_as(&mut conn, CHAT, &forged.to_header_value(), &body)
        .await;
    r.assert_error(401, "bad_state_signature");
    // A state naming another host account.
    let mut s = t.chain.state().clone();
    s.host.0[0] ^= 1;
    let r = t
        .call_as(&mut conn, CHAT, &t.signed_state(s).to_header_value(), &body)
        .await;
    r.assert_error(409, "wrong_channel");
    // A final state (the tenant closed the channel): never served, whatever its turn.
    let mut s = t.chain.state().clone();
    s.is_final = true;
    let r = t
        .call_as(&mut conn, CHAT, &t.signed_state(s).to_header_value(), &body)
        .await;
    r.assert_error(409, "channel_final");
}

#[tokio::test]
async fn malformed_inner_requests_are_encrypted_400s() {
    let (_agent, mut conn, info) = connected_agent(VLLM_LIKE, false).await;
    let t = Tenant::new(&info, 1_000_000, 7);
    let body = chat_body("hi", 2, false);
    let r = t.call(&mut conn, "/v1/embeddings", &body).await;
    r.assert_error(400, "bad_request");
    let r = t.call_as(&mut conn, CHAT, "not-a-state", &body).await;
    r.assert_error(400, "bad_request");
    let r = t.call(&mut conn, CHAT, b"[1,2]").await;
    r.assert_error(400, "bad_request");
    // stream=true over non-chunked OHTTP.
    let r = t.call(&mut conn, CHAT, &chat_body("hi", 2, true)).await;
    r.assert_error(400, "bad_request");
    // Outer errors.
    assert_eq!(
        conn.send("GET", "/nope", None, vec![]).await.unwrap().0,
        404
    );
    assert_eq!(
        conn.send("POST", "/v1/ohttp", Some("text/plain"), vec![1])
            .await
            .unwrap()
            .0,
        415
    );
    assert_eq!(
        conn.send("GET", "/v1/attestation?nonce=12", None, vec![])
            .await
            .unwrap()
            .0,
        400
    );
    assert_eq!(
        conn.send("GET", "/healthz", None, vec![]).await.unwrap().0,
        200
    );
}

#[tokio::test]
async fn truncated_stream_is_detected() {
    let (_agent, mut conn, info) = connected_agent(VLLM_LIKE, false).await;
    let t = Tenant::new(&info, 1_000_000, 8);
    let body = chat_body("hello", 4, true);
    // Cutting only the final chunk (1 length byte + 16 tag bytes) loses the end marker.
    let e = t
        .stream_with(&mut conn, CHAT, &t.state_header(), &body, 17)
        .await;
    assert!(e.is_err(), "a stream without its final chunk must not open");
}

#[tokio::test]
async fn rejected_state_leaves_the_channel_usable() {
    // A failed check must not consume a call_seq or leave the channel reserved.
    let (_agent, mut conn, info) = connected_agent(VLLM_LIKE, false).await;
    let mut t = Tenant::new(&info, 1_000_000, 9);
    let r = t.call(&mut conn, CHAT, &chat_body("a", 2, false)).await;
    t.accept(&r, false).unwrap();
    let over = t
        .call(&mut conn, CHAT, &chat_body("a", 10_000_000, false))
        .await;
    assert_eq!(over.error_code(), "over_escrow_cap");
    let r = t.call(&mut conn, CHAT, &chat_body("a", 2, false)).await;
    assert_eq!(r.receipt.as_ref().unwrap().receipt.call_seq, 2);
    t.accept(&r, false).unwrap();
    // A receipt for another channel is refused by the tenant (sanity of the checker used here).
    let mut other = Tenant::new(&info, 1_000_000, 10);
    assert!(matches!(
        other.accept(&r, false),
        Err(ReceiptError::WrongChannel)
    ));
}

#[tokio::test]
async fn tls_certificate_matches_the_keyset_pin() {
    let (_agent, mut conn, info) = connected_agent(VLLM_LIKE, true).await;
    let cert = conn.peer_cert.clone().unwrap();
    let spki = &info.keyset.tls_spki;
    assert!(!spki.is_empty());
    assert!(
        cert.windows(spki.len()).any(|w| w == &spki[..]),
        "certificate does not carry the pinned SPKI"
    );
    let mut t = Tenant::new(&info, 1_000_000, 11);
    let r = t.call(&mut conn, CHAT, &chat_body("tls", 2, false)).await;
    t.accept(&r, false).unwrap();
}

#[tokio::test]
async fn attestation_binds_keyset_and_nonce() {
    use dait_chain_client::proto::{SimulatedReportBody, cpu_evidence};
    use prost::Message;
    let a = agent(VLLM_LIKE, false).await;
    let mut conn = Conn::connect(a.addr, false).await.unwrap();
    for nonce in [[1u8; 32], [2u8; 32]] {
        let bundle = fetch_bundle(&mut conn, nonce).await;
        assert_eq!(bundle.keyset, a.app.keys.keyset_bytes);
        let freshness = dait_chain_client::Freshness::TenantNonce(nonce);
        assert_eq!(bundle.freshness, Some(freshness.to_proto()));
        let Some(cpu_evidence::Evidence::Simulated(r)) = bundle.cpu.unwrap().evidence else {
            panic!("not simulated")
        };
        let report = SimulatedReportBody::decode(&r.body[..]).unwrap();
        let expected = dait_chain_client::report_data(
            &dait_chain_client::keyset_hash(&bundle.keyset),
            &freshness,
        );
        assert_eq!(report.report_data, expected.to_vec());
        // The event log is the one measured into the simulated RTMR3.
        let log: Value = serde_json::from_slice(&bundle.event_log).unwrap();
        use sha2::Digest as _;
        // Each event measures `name:hex(sha256(content))`, the reference file's contract, so the replay of a
        // reference listing the same events predicts the register.
        assert_eq!(log[0]["kind"], "model-id");
        let model_id_sha = hex::encode(sha2::Sha256::digest(b"test-model"));
        assert_eq!(log[0]["data"], format!("model-id:{model_id_sha}"));
        let kinds: Vec<&str> = log
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["model-id", "model-weights", "engine-build", "agent-config"]
        );
        let reference_events: Vec<dait_measure::reference::RuntimeEvent> = log
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let data = e["data"].as_str().unwrap();
                let (name, sha) = data.split_once(':').unwrap();
                dait_measure::reference::RuntimeEvent {
                    name: name.to_owned(),
                    sha256: sha.parse().unwrap(),
                }
            })
            .collect();
        let mut rtmr3 = [0u8; 48];
        for ev in &reference_events {
            let digest: [u8; 48] = sha2::Sha384::digest(
                dait_measure::reference::runtime_event_data(&ev.name, &ev.sha256),
            )
            .into();
            rtmr3 = dait_measure::reference::extend_sha384(&rtmr3, &digest);
        }
        assert_eq!(
            report.measurements.last().map(Vec::as_slice),
            Some(&rtmr3[..])
        );
    }
    let (status, body) = conn
        .send("GET", "/v1/ohttp-keys", None, vec![])
        .await
        .unwrap();
    assert_eq!(status, 200);
    let configs = ohttp::KeyConfig::decode_list(&body).unwrap();
    assert_eq!(configs.len(), 1);
}

#[tokio::test]
async fn stream_cut_short_upstream_gets_no_receipt() {
    let cut_short = EngineMode {
        cut_streams: true,
        ..VLLM_LIKE
    };
    let (a, mut conn, info) = connected_agent(cut_short, false).await;
    let t = Tenant::new(&info, 1_000_000, 13);
    let r = t.stream(&mut conn, CHAT, &chat_body("hi", 5, true)).await;
    assert_eq!(r.status, 200);
    assert!(r.receipt.is_none());
    assert_eq!(r.trailer_error.as_deref(), Some(&b"upstream"[..]));
    // No call_seq was used: the same state is still current.
    let head = a
        .app
        .channels
        .head(&t.chain.state().channel_id, t.chain.state().host);
    assert!(head.is_none_or(|h| h.last_call_seq == 0));
}
