//! Property tests: encode/decode round trips, and decoding arbitrary bytes never panics.
#![allow(clippy::unwrap_used, missing_docs)]

use dait_chain_client::WireMessage as _;
use dait_chain_client::batch::{BatchError, SumNode, SumProof, SumTree, sample_indices};
use dait_chain_client::{
    Address, B256, ChannelState, Domain, HostSignature, HostSigningKey, Keyset, NormalizedResponse,
    Receipt, SignedChannelState, SignedReceipt, StreamNormalizer, TenantSignature, Usage,
    decode_bundle,
};
use proptest::prelude::*;

fn b256() -> impl Strategy<Value = B256> {
    any::<[u8; 32]>().prop_map(B256)
}

fn address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>().prop_map(Address)
}

prop_compose! {
    fn receipt()(
        ids in (b256(), any::<u64>(), b256(), b256(), "\\PC{0,40}", b256()),
        hashes in (b256(), b256(), b256(), b256()),
        tokens in (any::<u64>(), any::<u64>(), any::<u128>(), any::<u128>(), any::<u128>(), any::<u128>()),
        tail in (b256(), any::<u64>(), any::<u64>(), b256(), any::<bool>()),
    ) -> Receipt {
        Receipt {
            version: 1,
            channel_id: ids.0, call_seq: ids.1, host_key_id: ids.2, keyset_hash: ids.3, model_id: ids.4,
            weight_hash: ids.5,
            request_hash: hashes.0, response_hash: hashes.1, request_ct_hash: hashes.2, response_ct_hash: hashes.3,
            tokens_in: tokens.0, tokens_out: tokens.1, price_in: tokens.2, price_out: tokens.3, amount: tokens.4,
            cumulative: tokens.5,
            prev_receipt_hash: tail.0, timestamp: tail.1, seed: tail.2, engine_build: tail.3, deterministic: tail.4,
        }
    }
}

prop_compose! {
    fn state()(
        channel_id in b256(), turn in any::<u64>(), cumulative in any::<u128>(), escrow_cap in any::<u128>(),
        last_receipt_hash in b256(), tenant in address(), host in address(), is_final in any::<bool>(),
    ) -> ChannelState {
        ChannelState { channel_id, turn, cumulative, escrow_cap, last_receipt_hash, tenant, host, is_final }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn receipt_round_trip(r in receipt(), sig in any::<[u8; 32]>()) {
        prop_assert_eq!(Receipt::decode(&r.encode()).unwrap(), r.clone());
        let signed = SignedReceipt { receipt: r, host_signature: HostSignature([sig, sig].concat().try_into().unwrap()) };
        prop_assert_eq!(SignedReceipt::decode(&signed.encode()).unwrap(), signed.clone());
        prop_assert_eq!(SignedReceipt::from_header_value(&signed.to_header_value()).unwrap(), signed);
    }

    #[test]
    fn state_round_trip(s in state(), sig in any::<[u8; 32]>(), cosigned in any::<bool>()) {
        prop_assert_eq!(ChannelState::decode(&s.encode()).unwrap(), s.clone());
        let mut t = [0u8; 65];
        t[..32].copy_from_slice(&sig);
        t[64] = 27;
        let signed = SignedChannelState {
            state: s,
            tenant_signature: TenantSignature(t),
            host_signature: cosigned.then(|| HostSignature([sig, sig].concat().try_into().unwrap())),
        };
        prop_assert_eq!(SignedChannelState::decode(&signed.encode()).unwrap(), signed.clone());
        prop_assert_eq!(SignedChannelState::from_header_value(&signed.to_header_value()).unwrap(), signed);
    }

    #[test]
    fn keyset_round_trip(
        config in proptest::collection::vec(any::<u8>(), 1..64),
        spki in proptest::collection::vec(any::<u8>(), 1..128),
        chain_id in any::<u64>(), settlement in address(), created_at in any::<u64>(),
        boot_id in any::<[u8; 16]>(), host_account in address(),
    ) {
        let key = HostSigningKey::from_bytes(&[7; 32]).unwrap().verifying_key().to_sec1();
        let k = Keyset { receipt_key: key, ohttp_key_config: config, tls_spki: spki, chain_id, settlement, created_at, boot_id, host_account };
        prop_assert_eq!(Keyset::decode(&k.encode()).unwrap(), k);
    }

    #[test]
    fn signatures_verify_only_under_their_domain(r in receipt(), chain_id in 1u64..u64::MAX) {
        let host = HostSigningKey::from_bytes(&[9; 32]).unwrap();
        let vk = host.verifying_key();
        let r = Receipt { host_key_id: vk.key_id(), ..r };
        let d = Domain { chain_id, settlement: Address([1; 20]) };
        let signed = host.sign_receipt(r, &d);
        prop_assert!(signed.verify(&vk, &d).is_ok());
        let other = Domain { chain_id: chain_id - 1, ..d };
        prop_assert!(signed.verify(&vk, &other).is_err());
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Receipt::decode(&bytes);
        let _ = SignedReceipt::decode(&bytes);
        let _ = ChannelState::decode(&bytes);
        let _ = SignedChannelState::decode(&bytes);
        let _ = Keyset::decode(&bytes);
        let _ = decode_bundle(&bytes);
        let _ = NormalizedResponse::from_body(&bytes);
        let mut s = StreamNormalizer::new();
        if s.push(&bytes).is_ok() {
            let _ = s.finish();
        }
    }

    #[test]
    fn decoding_arbitrary_text_never_panics(text in "\\PC{0,512}") {
        let _ = SignedReceipt::from_header_value(&text);
        let _ = SignedChannelState::from_header_value(&text);
        let _ = B256::from_hex(&text);
    }

    #[test]
    fn mutated_receipts_never_panic(r in receipt(), pos in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = SignedReceipt { receipt: r, host_signature: HostSignature([1; 64]) }.encode();
        let i = pos % bytes.len();
        bytes[i] = byte;
        let _ = SignedReceipt::decode(&bytes);
    }

    #[test]
    fn stream_equals_body_for_any_text(pieces in proptest::collection::vec("\\PC{0,20}", 1..8), p in 0u64..1000, c in 0u64..1000) {
        let text: String = pieces.concat();
        let body = serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]});
        let mut sse = String::new();
        for piece in &pieces {
            let chunk = serde_json::json!({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
            sse.push_str(&format!("data: {chunk}\n\n"));
        }
        sse.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
        let usage = Usage { prompt_tokens: p, completion_tokens: c };
        let from_body = NormalizedResponse::from_body(body.to_string().as_bytes()).unwrap().response_hash(usage).unwrap();
        let mut s = StreamNormalizer::new();
        s.push(sse.as_bytes()).unwrap();
        prop_assert_eq!(s.finish().unwrap().response_hash(usage).unwrap(), from_body);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every leaf of any batch has a proof that verifies against the root and total, and a proof for another
    /// leaf (or with one sibling bit flipped) does not.
    #[test]
    fn batch_proofs_verify(
        amounts in proptest::collection::vec(0u128..1u128 << 100, 1..40),
        pick in any::<usize>(), flip in any::<(usize, u8)>(),
    ) {
        let leaves: Vec<SumNode> = amounts.iter().enumerate()
            .map(|(i, a)| SumNode::leaf(&B256([i as u8; 32]), *a)).collect();
        let tree = SumTree::build(&leaves).unwrap();
        let count = tree.count();
        prop_assert_eq!(tree.total(), amounts.iter().sum::<u128>());
        for (i, leaf) in leaves.iter().enumerate() {
            let proof = tree.proof(i as u32).unwrap();
            prop_assert!(proof.verify(leaf, &tree.root(), count, tree.total()).is_ok());
            prop_assert_eq!(&SumProof::from_words(i as u32, &proof.to_words()).unwrap(), &proof);
        }
        let i = pick % leaves.len();
        let mut proof = tree.proof(i as u32).unwrap();
        if !proof.siblings.is_empty() {
            let level = flip.0 % proof.siblings.len();
            let sibling = &mut proof.siblings[level];
            let was_padding = *sibling == SumNode::PADDING;
            sibling.hash.0[usize::from(flip.1) % 32] ^= 1;
            let err = proof.verify(&leaves[i], &tree.root(), count, tree.total()).unwrap_err();
            if was_padding {
                prop_assert_eq!(err, BatchError::NonZeroPadding { level: level as u32 });
            } else {
                prop_assert_eq!(err, BatchError::RootMismatch);
            }
        }
    }

    /// Sample indices are below the count, the first is the last leaf, and there are min(size, count).
    #[test]
    fn sample_indices_are_in_range(seed in b256(), host in address(), root in b256(), count in 1u32.., size in 1u32..65) {
        let idx = sample_indices(&seed, &host, &root, count, size).unwrap();
        prop_assert_eq!(idx.len() as u32, size.min(count));
        prop_assert_eq!(idx[0], count - 1);
        prop_assert!(idx.iter().all(|i| *i < count));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The fuzz entry points hold their own invariants (decode then re-encode is the identity) on random input.
    #[test]
    fn fuzz_entry_points(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        dait_chain_client::fuzzing::receipt(&bytes);
        dait_chain_client::fuzzing::bundle(&bytes);
        dait_chain_client::fuzzing::response(&bytes);
    }
}
