//! Per-call cost of the protocol core on this machine (a benchmark, not a test).
//!
//! `cargo run --release -p dait-chain-client --example hot_path`
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use dait_chain_client::WireMessage as _;
use dait_chain_client::{
    Address, B256, ChannelHead, ChannelState, Domain, HostSigningKey, NormalizedResponse, Receipt,
    ReceiptChain, SignedChannelState, SignedReceipt, StreamNormalizer, TenantSigner, Usage,
};

fn time(name: &str, iters: u32, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let per = start.elapsed() / iters;
    println!("{name:<44} {:>9.2} us", per.as_secs_f64() * 1e6);
}

fn main() {
    let host = HostSigningKey::from_bytes(&[0x11; 32]).unwrap();
    let tenant = TenantSigner::from_bytes(&[0x22; 32]).unwrap();
    let domain = Domain {
        chain_id: 31337,
        settlement: Address([0x5e; 20]),
    };
    let hk = host.verifying_key().key_id();
    let host_account = Address([0xa0; 20]);
    let open = ChannelState::open(B256([1; 32]), u128::MAX, tenant.address(), host_account);
    let receipt = Receipt {
        version: 1,
        channel_id: open.channel_id,
        call_seq: 1,
        host_key_id: hk,
        keyset_hash: B256([2; 32]),
        model_id: "smollm2-135m-instruct".into(),
        weight_hash: B256([3; 32]),
        request_hash: B256([4; 32]),
        response_hash: B256([5; 32]),
        request_ct_hash: B256([6; 32]),
        response_ct_hash: B256([7; 32]),
        tokens_in: 100,
        tokens_out: 200,
        price_in: 3,
        price_out: 5,
        amount: 1300,
        cumulative: 1300,
        prev_receipt_hash: B256::ZERO,
        timestamp: 1_767_225_600,
        seed: 0,
        engine_build: B256([8; 32]),
        deterministic: true,
    };
    let signed = host.sign_receipt(receipt.clone(), &domain);
    let header = signed.to_header_value();
    let state = SignedChannelState {
        tenant_signature: tenant.sign_state(&open, &domain),
        state: open.clone(),
        host_signature: None,
    };
    let chain = ReceiptChain::new(domain, host.verifying_key(), B256([2; 32]), open.clone());
    let head = ChannelHead::open(open.channel_id, host_account);

    time("receipt EIP-712 digest", 20_000, || {
        black_box(black_box(&receipt).signing_digest(&domain));
    });
    time("host: sign receipt (digest + P-256)", 2_000, || {
        black_box(host.sign_receipt(black_box(receipt.clone()), &domain));
    });
    time("host: receipt to base64url header", 20_000, || {
        black_box(black_box(&signed).to_header_value());
    });
    time(
        "host: decode + check X-DAIT-State (k1 recover)",
        2_000,
        || {
            let s = SignedChannelState::from_header_value(&state.to_header_value()).unwrap();
            black_box(head.check_state(&s, &domain, 1000).unwrap());
        },
    );
    time(
        "tenant: decode header + SPUR-IC check (P-256)",
        2_000,
        || {
            let s = SignedReceipt::from_header_value(black_box(&header)).unwrap();
            black_box(chain.check(&s).unwrap());
        },
    );
    time("tenant: sign next state (secp256k1)", 2_000, || {
        black_box(tenant.sign_state(black_box(&open), &domain));
    });

    // A 200-token answer (~1 KiB of text): as a body, and as 200 SSE chunks.
    let word = "token ";
    let text: String = word.repeat(200);
    let body = serde_json::json!({"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}).to_string();
    let mut sse = String::new();
    for _ in 0..200 {
        let c = serde_json::json!({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": null}]});
        sse.push_str(&format!("data: {c}\n\n"));
    }
    sse.push_str("data: [DONE]\n\n");
    let usage = Usage {
        prompt_tokens: 100,
        completion_tokens: 200,
    };
    time("response hash from a body (200 tokens)", 2_000, || {
        black_box(
            NormalizedResponse::from_body(black_box(body.as_bytes()))
                .unwrap()
                .response_hash(usage)
                .unwrap(),
        );
    });
    let per_chunk_iters = 500;
    let start = Instant::now();
    for _ in 0..per_chunk_iters {
        let mut s = StreamNormalizer::new();
        for chunk in sse.split_inclusive("\n\n") {
            s.push(chunk.as_bytes()).unwrap();
        }
        black_box(s.finish().unwrap().response_hash(usage).unwrap());
    }
    let per_chunk = start.elapsed().as_secs_f64() / f64::from(per_chunk_iters) / 201.0;
    println!(
        "{:<44} {:>9.2} us",
        "stream normaliser, per SSE chunk",
        per_chunk * 1e6
    );
}
