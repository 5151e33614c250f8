//! The seeds of the agent's fuzz targets (`agent/fuzz/`): inner requests built by the test tenant
//! (`common::Tenant::inner`, the bytes the agent decapsulates), plain and streamed, with a valid,
//! a missing, a malformed and a tampered `x-dait-state`, each signed for the fixed domain and host
//! key of `dait_agent::fuzzing` so the valid ones reach the channel-state check and pass it.
//!
//! Always checks each seed's outcome; with `DAIT_WRITE_FUZZ_SEEDS=DIR` it also writes them to
//! `DIR/agent_request/` and the state values to `DIR/channel_state_header/`
//! (`agent/fuzz/seed-requests.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use dait_agent::fuzzing::{DOMAIN, HOST_ACCOUNT, channel_state_header, inner_request};
use dait_chain_client::WireMessage as _;
use dait_chain_client::{B256, ChannelState, SignedChannelState, TenantSigner};

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";

/// A tenant's signed opening state for a channel with `escrow_cap`.
fn signed_state(signer: &TenantSigner, escrow_cap: u128) -> SignedChannelState {
    let channel_id =
        dait_chain_client::channel_id(&DOMAIN, &signer.address(), &HOST_ACCOUNT, &B256([3; 32]));
    let state = ChannelState::open(channel_id, escrow_cap, signer.address(), HOST_ACCOUNT);
    SignedChannelState {
        tenant_signature: signer.sign_state(&state, &DOMAIN),
        state,
        host_signature: None,
    }
}

/// One inner request seed: `(name, bytes, expected outcome)`; the outcome is `ok`, `ok-stream` or
/// the error code.
type RequestSeed = (&'static str, Vec<u8>, &'static str);

/// The request seeds, and the `x-dait-state` values `(name, value)` they use.
fn seeds() -> (Vec<RequestSeed>, Vec<(&'static str, String)>) {
    let signer = TenantSigner::from_bytes(&[9; 32]).unwrap();
    let good = signed_state(&signer, 10_000_000).to_header_value();
    let small = signed_state(&signer, 100).to_header_value();
    let mut tampered = signed_state(&signer, 10_000_000);
    tampered.state.escrow_cap += 1;
    let tampered = tampered.to_header_value();
    let completion = br#"{"model":"m","prompt":"Once upon a time","max_tokens":16,"n":2}"#;
    let requests = vec![
        (
            "plain-chat",
            Tenant::inner(CHAT, &good, &chat_body("Say hi.", 16, false)),
            "ok",
        ),
        (
            "stream-chat",
            Tenant::inner(CHAT, &good, &chat_body("Count to 3.", 32, true)),
            "ok-stream",
        ),
        (
            "plain-completion",
            Tenant::inner(COMPLETIONS, &good, completion),
            "ok",
        ),
        (
            "default-max-tokens",
            Tenant::inner(CHAT, &good, br#"{"messages":[]}"#),
            "ok",
        ),
        (
            "over-escrow-cap",
            Tenant::inner(CHAT, &small, &chat_body("hi", 1000, false)),
            "over_escrow_cap",
        ),
        (
            "bad-signature",
            Tenant::inner(CHAT, &tampered, &chat_body("hi", 8, false)),
            "bad_state_signature",
        ),
        (
            "bad-state",
            Tenant::inner(CHAT, "AAAA!!", &chat_body("hi", 8, false)),
            "bad_request",
        ),
        (
            "no-state",
            no_state(&chat_body("hi", 8, true)),
            "bad_request",
        ),
        (
            "bad-path",
            Tenant::inner("/v1/embeddings", &good, b"{}"),
            "bad_request",
        ),
        (
            "not-json",
            Tenant::inner(CHAT, &good, b"hello"),
            "bad_request",
        ),
        (
            "stream-not-bool",
            Tenant::inner(CHAT, &good, br#"{"stream":1}"#),
            "bad_request",
        ),
        (
            "zero-max-tokens",
            Tenant::inner(CHAT, &good, br#"{"max_tokens":0}"#),
            "bad_request",
        ),
    ];
    let states = vec![("good", good), ("small-cap", small), ("tampered", tampered)];
    (requests, states)
}

/// An inner request without the state field.
fn no_state(body: &[u8]) -> Vec<u8> {
    let mut m = bhttp::Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"dait".to_vec(),
        CHAT.as_bytes().to_vec(),
    );
    m.put_header("content-type", "application/json");
    m.write_content(body);
    let mut out = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut out).unwrap();
    out
}

#[test]
fn seeds_have_their_outcomes() {
    let (requests, states) = seeds();
    for (name, bytes, expected) in &requests {
        let got = match inner_request(bytes) {
            Ok(false) => "ok",
            Ok(true) => "ok-stream",
            Err(e) => e.code().0,
        };
        assert_eq!(got, *expected, "{name}");
    }
    for (name, value) in &states {
        let ok = channel_state_header(value.as_bytes()).is_ok();
        assert_eq!(ok, *name != "tampered", "{name}");
    }
    let Some(dir) = std::env::var_os("DAIT_WRITE_FUZZ_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("{name}.bin")), bytes).unwrap();
    };
    for (name, bytes, _) in &requests {
        write("agent_request", name, bytes);
    }
    for (name, value) in &states {
        write("channel_state_header", name, value.as_bytes());
    }
    println!(
        "wrote {} request and {} state seeds to {}",
        requests.len(),
        states.len(),
        dir.display()
    );
}
