//! Fixtures shared by the unit tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloc::vec;

use crate::WireMessage as _;
use crate::{
    Address, B256, ChannelState, Domain, HostSigningKey, Keyset, Receipt, SignedChannelState,
    SignedReceipt, TenantSigner, proto,
};

pub(crate) const DOMAIN: Domain = Domain {
    chain_id: 31337,
    settlement: Address([0x5e; 20]),
};

/// The host's operator account (the keyset's `host_account`, the channel's `host`).
pub(crate) const HOST_ACCOUNT: Address = Address([0xa0; 20]);

pub(crate) fn host() -> HostSigningKey {
    HostSigningKey::from_bytes(&[0x11; 32]).unwrap()
}

pub(crate) fn tenant() -> TenantSigner {
    TenantSigner::from_bytes(&[0x22; 32]).unwrap()
}

pub(crate) fn keyset() -> Keyset {
    Keyset {
        receipt_key: host().verifying_key().to_sec1(),
        ohttp_key_config: vec![1, 0, 32, 7, 7, 7],
        tls_spki: vec![0x30, 0x2a],
        chain_id: DOMAIN.chain_id,
        settlement: DOMAIN.settlement,
        created_at: 1_700_000_000,
        boot_id: [0xb0; 16],
        host_account: HOST_ACCOUNT,
    }
}

pub(crate) fn open_state() -> ChannelState {
    ChannelState::open(B256([0xc1; 32]), 10_000, tenant().address(), HOST_ACCOUNT)
}

/// The receipt for call `call_seq` that follows `state`, with `tokens_in`/`tokens_out` at prices 3 and 5.
pub(crate) fn receipt_after(state: &ChannelState, tokens_in: u64, tokens_out: u64) -> Receipt {
    let amount = u128::from(tokens_in) * 3 + u128::from(tokens_out) * 5;
    Receipt {
        version: 1,
        channel_id: state.channel_id,
        call_seq: state.turn + 1,
        host_key_id: host().verifying_key().key_id(),
        keyset_hash: crate::keyset_hash(&keyset().encode()),
        model_id: "smollm2-135m".into(),
        weight_hash: B256([1; 32]),
        request_hash: B256([2; 32]),
        response_hash: B256([3; 32]),
        request_ct_hash: B256([4; 32]),
        response_ct_hash: B256([5; 32]),
        tokens_in,
        tokens_out,
        price_in: 3,
        price_out: 5,
        amount,
        cumulative: state.cumulative + amount,
        prev_receipt_hash: state.last_receipt_hash,
        timestamp: 1_700_000_100,
        seed: 7,
        engine_build: B256([6; 32]),
        deterministic: true,
    }
}

pub(crate) fn signed_receipt(r: Receipt) -> SignedReceipt {
    host().sign_receipt(r, &DOMAIN)
}

pub(crate) fn signed_state(state: ChannelState) -> SignedChannelState {
    SignedChannelState {
        tenant_signature: tenant().sign_state(&state, &DOMAIN),
        state,
        host_signature: None,
    }
}

pub(crate) fn bundle() -> proto::EvidenceBundle {
    proto::EvidenceBundle {
        version: 1,
        keyset: keyset().encode(),
        freshness: Some(crate::Freshness::TenantNonce([0xaa; 32]).to_proto()),
        cpu: Some(proto::CpuEvidence {
            evidence: Some(proto::cpu_evidence::Evidence::TdxQuote(vec![4, 0, 2, 0])),
        }),
        gpus: vec![],
        tpm: None,
        event_log: vec![],
        collateral: None,
    }
}
