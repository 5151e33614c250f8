//! Entry points for the fuzz targets under `agent/fuzz/`: the agent's own untrusted input once a
//! request is decapsulated (the inner Binary HTTP request, its JSON body, the `x-dait-state`
//! field). They run the server's own decoding and checks (`http::call`) and the channel-state check
//! (`receipt::Channels`) on a fresh channel map, with no network, engine or TEE. Not a stable API.

use std::sync::Arc;

use dait_chain_client::{Address, B256, Domain};

use crate::http::call::{decode_inner, engine_body, parse_state};
use crate::http::error::CallError;
use crate::receipt::{Channels, ReceiptParams};

/// The EIP-712 domain the entry points check channel states against; seeds sign for it.
pub const DOMAIN: Domain = Domain {
    chain_id: 31337,
    settlement: Address([0x5e; 20]),
};

/// The host key id of the entry points' receipts.
pub const HOST_KEY_ID: B256 = B256([0x4b; 32]);

/// The operator account the entry points check channel states against (their `host`); seeds name it.
pub const HOST_ACCOUNT: Address = Address([0x4b; 20]);

/// Receipt fields of the entry points (prices that make the escrow bound matter).
fn params() -> ReceiptParams {
    ReceiptParams {
        host_key_id: HOST_KEY_ID,
        keyset_hash: B256([0x6b; 32]),
        model_id: "fuzz".to_owned(),
        weight_hash: B256::ZERO,
        price_in: 1,
        price_out: 2,
        engine_build: B256::ZERO,
    }
}

/// Runs a decapsulated inner request through what a call does before it reaches the engine: the
/// Binary HTTP decode, method and path, the `x-dait-state` decode, the JSON body checks and the
/// escrow bound, the body sent to the engine, and the channel-state check against [`DOMAIN`] and
/// [`HOST_ACCOUNT`]. Returns the request's `stream` flag when every check passed. Must never panic.
pub fn inner_request(data: &[u8]) -> Result<bool, CallError> {
    let inner = decode_inner(data, &params(), true)?;
    let _ = engine_body(&inner);
    let lease = Arc::new(Channels::default()).begin(
        &inner.state,
        &DOMAIN,
        HOST_ACCOUNT,
        inner.worst_case,
    )?;
    drop(lease);
    Ok(inner.stream)
}

/// Decodes bytes as an `x-dait-state` field value and checks the state for a call of no cost on a
/// fresh channel map. Must never panic.
pub fn channel_state_header(data: &[u8]) -> Result<(), CallError> {
    let state = parse_state(data)?;
    let lease = Arc::new(Channels::default()).begin(&state, &DOMAIN, HOST_ACCOUNT, 0)?;
    drop(lease);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io::Cursor;

    use dait_chain_client::{ChannelState, SignedChannelState, TenantSigner, WireMessage as _};

    use super::*;

    /// A signed opening state for a channel with `escrow_cap`, as a tenant sends it.
    fn state_header(escrow_cap: u128) -> String {
        let signer = TenantSigner::from_bytes(&[7; 32]).unwrap();
        let channel_id = dait_chain_client::channel_id(
            &DOMAIN,
            &signer.address(),
            &HOST_ACCOUNT,
            &B256([1; 32]),
        );
        let state = ChannelState::open(channel_id, escrow_cap, signer.address(), HOST_ACCOUNT);
        SignedChannelState {
            tenant_signature: signer.sign_state(&state, &DOMAIN),
            state,
            host_signature: None,
        }
        .to_header_value()
    }

    /// An inner request as the tenant builds it.
    fn request(path: &str, state: Option<&str>, body: &[u8]) -> Vec<u8> {
        let mut m = bhttp::Message::request(
            b"POST".to_vec(),
            b"https".to_vec(),
            b"dait".to_vec(),
            path.as_bytes().to_vec(),
        );
        m.put_header("content-type", "application/json");
        if let Some(s) = state {
            m.put_header("x-dait-state", s);
        }
        m.write_content(body);
        let mut out = Vec::new();
        m.write_bhttp(bhttp::Mode::KnownLength, &mut out).unwrap();
        out
    }

    fn chat(stream: bool) -> Vec<u8> {
        serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 8,
            "stream": stream,
        })
        .to_string()
        .into_bytes()
    }

    fn code(r: Result<bool, CallError>) -> &'static str {
        r.map_or_else(|e| e.code().0, |_| "ok")
    }

    #[test]
    fn real_requests_pass_every_check() {
        let s = state_header(1_000_000);
        let plain = request("/v1/chat/completions", Some(&s), &chat(false));
        assert!(!inner_request(&plain).unwrap());
        let streamed = request("/v1/completions", Some(&s), &chat(true));
        assert!(inner_request(&streamed).unwrap());
        channel_state_header(s.as_bytes()).unwrap();
    }

    #[test]
    fn rejected_requests_are_errors() {
        let s = state_header(1_000_000);
        let chat = chat(false);
        assert_eq!(code(inner_request(b"")), "bad_request");
        assert_eq!(
            code(inner_request(&request("/v1/chat/completions", None, &chat))),
            "bad_request"
        );
        assert_eq!(
            code(inner_request(&request("/other", Some(&s), &chat))),
            "bad_request"
        );
        assert_eq!(
            code(inner_request(&request(
                "/v1/chat/completions",
                Some("not base64"),
                &chat
            ))),
            "bad_request"
        );
        assert_eq!(
            code(inner_request(&request(
                "/v1/chat/completions",
                Some(&s),
                b"[1]"
            ))),
            "bad_request"
        );
        // A cap too small for the call's worst case.
        let small = state_header(10);
        assert_eq!(
            code(inner_request(&request(
                "/v1/chat/completions",
                Some(&small),
                &chat
            ))),
            "over_escrow_cap"
        );
        // A state changed after the tenant signed it.
        let mut other = SignedChannelState::from_header_value(&s).unwrap();
        other.state.escrow_cap += 1;
        assert!(channel_state_header(other.to_header_value().as_bytes()).is_err());
        assert!(channel_state_header(&[0xff, 0xfe]).is_err());
        assert!(channel_state_header(b"").is_err());
    }

    #[test]
    fn every_truncation_and_bit_flip_is_handled() {
        let s = state_header(1_000_000);
        for real in [
            request("/v1/chat/completions", Some(&s), &chat(false)),
            request("/v1/completions", Some(&s), &chat(true)),
        ] {
            for n in 0..real.len() {
                let _ = inner_request(real.get(..n).unwrap());
                let mut flipped = real.clone();
                flipped[n] ^= 0x80;
                let _ = inner_request(&flipped);
            }
        }
        for n in 0..s.len() {
            let _ = channel_state_header(s.get(..n).unwrap().as_bytes());
        }
    }

    #[test]
    fn huge_lengths_and_numbers_are_handled() {
        // Known-length request whose first field length is the largest varint.
        let mut huge = vec![0x00, 0x04];
        huge.extend_from_slice(b"POST");
        huge.extend_from_slice(&[0xff; 8]);
        assert!(inner_request(&huge).is_err());
        // Indeterminate-length request that never ends its field section.
        let mut open = vec![0x02];
        open.extend_from_slice(&[0xbf, 0xff, 0xff, 0xff]);
        assert!(inner_request(&open).is_err());
        let s = state_header(u128::MAX);
        for body in [
            serde_json::json!({"max_tokens": u64::MAX, "n": u64::MAX}),
            serde_json::json!({"max_completion_tokens": 1, "n": 0}),
            serde_json::json!({"stream": "yes"}),
            serde_json::json!({"max_tokens": -1}),
        ] {
            let r = request(
                "/v1/chat/completions",
                Some(&s),
                body.to_string().as_bytes(),
            );
            let _ = code(inner_request(&r));
        }
        // The request round-trips through the bhttp crate as the tenant wrote it.
        let r = request("/v1/chat/completions", Some(&s), b"{}");
        let msg = bhttp::Message::read_bhttp::<_, Cursor<&[u8]>>(&mut Cursor::new(&r[..])).unwrap();
        assert_eq!(msg.header().get(b"x-dait-state"), Some(s.as_bytes()));
    }
}
