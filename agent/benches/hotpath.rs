//! Per-request crypto hot path of the agent, timed in-process (no criterion, to keep builds light):
//! OHTTP decapsulation + response encapsulation + receipt signing, the channel-state check
//! (secp256k1 recovery), and the per-chunk cost of a streamed response (chunked-OHTTP seal,
//! BHTTP framing, SSE normalisation).
//!
//! Run: `cargo bench -p dait-agent --bench hotpath`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use dait_agent::hpke::HpkeKey;
use dait_agent::receipt::Channels;
use dait_chain_client::WireMessage as _;
use dait_chain_client::{
    Address, B256, ChannelHead, ChannelState, Domain, HostSigningKey, Receipt, SignedChannelState,
    StreamNormalizer, TenantSigner,
};

/// Median and p99 of `iters` timed runs of `f` (after a warm-up), in microseconds.
fn time<F: FnMut()>(name: &str, iters: usize, mut f: F) -> f64 {
    for _ in 0..iters / 10 + 1 {
        f();
    }
    let mut v: Vec<Duration> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let p50 = us(v[v.len() / 2]);
    let p99 = us(v[v.len() * 99 / 100]);
    println!("{name:<48} p50 {p50:>9.2} us   p99 {p99:>9.2} us   ({iters} runs)");
    p50
}

fn receipt() -> Receipt {
    Receipt {
        version: 1,
        channel_id: B256([1; 32]),
        call_seq: 7,
        host_key_id: B256([2; 32]),
        keyset_hash: B256([3; 32]),
        model_id: "smollm2-135m-instruct-q4_1".into(),
        weight_hash: B256([4; 32]),
        request_hash: B256([5; 32]),
        response_hash: B256([6; 32]),
        request_ct_hash: B256([7; 32]),
        response_ct_hash: B256::ZERO,
        tokens_in: 37,
        tokens_out: 120,
        price_in: 2,
        price_out: 3,
        amount: 434,
        cumulative: 5000,
        prev_receipt_hash: B256([8; 32]),
        timestamp: 1_800_000_000,
        seed: 0,
        engine_build: B256([9; 32]),
        deterministic: false,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hpke = HpkeKey::generate().unwrap();
    let key = HostSigningKey::generate(&mut rand::rngs::OsRng);
    let domain = Domain {
        chain_id: 31337,
        settlement: Address([0xaa; 20]),
    };
    let request = vec![b'x'; 600];
    let response = vec![b'y'; 1200];
    let client = || ohttp::ClientRequest::from_encoded_config(hpke.config()).unwrap();
    let (enc, _) = client().encapsulate(&request).unwrap();

    println!("agent crypto hot path (600-byte request, 1200-byte response)");
    let d = time("ohttp decapsulate", 2000, || {
        black_box(hpke.decapsulate(black_box(&enc)).unwrap());
    });
    let (_, sealer) = hpke.decapsulate(&enc).unwrap();
    drop(sealer);
    let s = time("ohttp decapsulate + response encapsulate", 2000, || {
        let (_pt, sealer) = hpke.decapsulate(black_box(&enc)).unwrap();
        black_box(sealer.seal(black_box(&response)).unwrap());
    });
    let r = time("receipt sign (EIP-712 digest + P-256)", 2000, || {
        black_box(key.sign_receipt(black_box(receipt()), &domain));
    });
    let tenant = TenantSigner::generate(&mut rand::rngs::OsRng);
    let state = ChannelState::open(B256([1; 32]), 1_000_000, tenant.address(), Address([2; 20]));
    let signed = SignedChannelState {
        tenant_signature: tenant.sign_state(&state, &domain),
        state,
        host_signature: None,
    };
    let head = ChannelHead::open(B256([1; 32]), Address([2; 20]));
    let c = time("channel-state check (secp256k1 recover)", 2000, || {
        black_box(head.check_state(black_box(&signed), &domain, 100).unwrap());
    });
    // `Channels::begin`: the same check under the channel map's lock, the slot reserved, the tenant's state kept
    // for claims (cloned when its turn is new; here the first run keeps it, as a channel's first call does), and
    // the lease dropped; then the clone alone, what each call with a new turn adds.
    let channels = std::sync::Arc::new(Channels::default());
    let b = time("channel begin + lease drop (check included)", 2000, || {
        let lease = channels
            .begin(black_box(&signed), &domain, Address([2; 20]), 100)
            .unwrap();
        drop(black_box(lease));
    });
    let k = time(
        "signed channel state clone (kept for claims)",
        20_000,
        || {
            black_box(black_box(&signed).clone());
        },
    );
    println!(
        "{:<48} {:>13.2} us   (clone / check: {:.5})",
        "begin's bookkeeping beyond the check",
        b - c,
        k / c
    );
    let header = signed.to_header_value();
    let p = time("channel-state decode (base64url + protobuf)", 2000, || {
        black_box(SignedChannelState::from_header_value(black_box(&header)).unwrap());
    });
    println!(
        "{:<48} {:>13.2} us",
        "total per request (decap+encap+sign+check+decode)",
        s + r + c + p
    );
    let _ = d;

    // Streaming: one SSE event of a typical engine chunk, sealed as one chunked-OHTTP chunk.
    let event = br#"data: {"id":"chatcmpl-60cf","model":"m","created":1795324381,"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" Paris"},"logprobs":null,"finish_reason":null}]}

"#;
    let per_chunk = rt.block_on(async {
        use futures::io::AsyncWriteExt;
        let buf = common::SharedSink::default();
        let mut w2 = client().encapsulate_stream(buf.clone()).unwrap();
        w2.write_all(&request).await.unwrap();
        w2.close().await.unwrap();
        let enc = buf.take();
        let (_pt, sealer) = hpke.decapsulate_chunked(&enc).await.unwrap();
        let (mut writer, mut rx) = sealer.split();
        let mut norm = StreamNormalizer::new();
        let n = 20_000;
        // Warm-up.
        for _ in 0..1000 {
            writer.write(event).await.unwrap();
            while rx.try_recv().is_ok() {}
        }
        let t = Instant::now();
        for _ in 0..n {
            norm.push(black_box(event)).unwrap();
            let mut framed = Vec::with_capacity(event.len() + 4);
            framed.extend_from_slice(&[0x40 | ((event.len() >> 8) as u8), event.len() as u8]);
            framed.extend_from_slice(event);
            writer.write(&framed).await.unwrap();
            while let Ok(c) = rx.try_recv() {
                black_box(c);
            }
        }
        t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    });
    println!(
        "{:<48} mean {per_chunk:>8.2} us   (20000 chunks of {} bytes)",
        "stream chunk: normalise + frame + seal",
        event.len()
    );
}
