//! The typed EVM client against the committed settlement contract on a local anvil (feature `evm`):
//!
//! - one definition of every digest: the contract's `domainSeparator`, `receiptDigest` and `channelId` equal the
//!   Rust core's and the JSON vectors' (the settlement lands at the vectors' address: deployed by anvil's first
//!   account at nonce 0, as the JavaScript tests do), and its version 2 `channelStateDigest` equals an
//!   independent EIP-712 hash of the same struct (`alloy`'s);
//! - a channel end to end through the typed client: deploy, mint, approve, register, publish a release, attest
//!   the vectors' keyset, open, claim with a tenant-signed state, a second claim rejected as `StaleState`, a claim
//!   with the host's receipt on top, a cooperative close counter-signed with P-256, the events read back;
//! - a receipt batch committed, sampled and revealed, another forfeited, and an equivocation slashed;
//! - the rest: ownership handover, release revocation, the epoch nonce, a unilateral close and its
//!   finalisation, unbonding and withdrawal;
//! - on a Prague chain (no P256VERIFY) every host signature fails closed with `BadHostSignature`;
//! - HTTPS to the node through a TLS proxy, trusting only the roots of a CA file.
//!
//! Anvil comes from `scripts/install-chain-tools.sh` (or `DAIT_ANVIL`); without it these tests fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::providers::DynProvider;
use alloy::sol_types::SolStruct;
use dait_chain_client::evm::anvil::{Anvil, AnvilError, Hardfork};
use dait_chain_client::evm::bindings::DaitSettlement::{
    ChannelState as OnchainChannelState, DaitSettlementErrors,
};
use dait_chain_client::evm::{
    BatchStatus, ChannelStatus, EvmError, HostStatus, Reveal, Settlement, SettlementEvent, Token,
    account_address, connect_http, connect_https, convert,
};
use dait_chain_client::{
    Address, B256, ChannelState, Domain, HostSigningKey, Keyset, Receipt, SignedReceipt,
    TenantSigner, WireMessage, amount, channel_id,
};

mod common;
use common::{
    DAY, E18, HOST_OP, HOST_SECRET, OWNER, TOKEN_DEPLOYER, TestResult, b256, load, now, params,
    unhex,
};

const TENANT_SECRET: [u8; 32] = [0x22; 32];

// ---------- a deployment ----------

struct Deployment {
    chain: Anvil,
    settlement: Settlement,
    token: Token,
}

impl Deployment {
    /// A client of the same contracts that sends from `secret`.
    async fn as_account(&self, secret: &[u8; 32]) -> Result<(Settlement, Token), EvmError> {
        let provider = connect_http(self.chain.url(), Some(secret))?;
        let settlement = Settlement::at(self.settlement.address(), provider.clone()).await?;
        Ok((settlement, Token::at(self.token.address(), provider)))
    }
}

fn provider(chain: &Anvil, secret: &[u8; 32]) -> Result<DynProvider, EvmError> {
    connect_http(chain.url(), Some(secret))
}

/// Token from anvil's second account, settlement from its first at nonce 0 (the vectors' address).
async fn deploy(hardfork: Hardfork) -> Result<Deployment, Box<dyn Error>> {
    let chain = Anvil::start(hardfork)?;
    let token =
        Token::deploy_test_token(provider(&chain, &Anvil::DEV_KEYS[TOKEN_DEPLOYER])?).await?;
    let owner = account_address(&Anvil::DEV_KEYS[OWNER])?;
    let settlement = Settlement::deploy(
        provider(&chain, &Anvil::DEV_KEYS[HOST_OP])?,
        &params(token.address(), owner),
    )
    .await?;
    Ok(Deployment {
        chain,
        settlement,
        token,
    })
}

// ---------- tests ----------

#[tokio::test]
async fn digests_on_chain_equal_the_core_and_the_vectors() -> TestResult {
    let d = deploy(Hardfork::Osaka).await?;
    let rv = load("receipt");
    let domain = d.settlement.domain();
    assert_eq!(
        d.settlement.address(),
        Address::from_slice(&unhex(&rv["domain"]["settlement"])).unwrap()
    );
    assert_eq!(
        domain,
        Domain {
            chain_id: 31337,
            settlement: d.settlement.address()
        }
    );

    let separator = d.settlement.domain_separator().await?;
    assert_eq!(separator, b256(&rv["domain_separator"]));
    assert_eq!(separator, domain.separator());

    let host_key = HostSigningKey::from_bytes(&HOST_SECRET)?.verifying_key();
    for v in rv["receipts"].as_array().unwrap() {
        let signed = SignedReceipt::decode(&unhex(&v["signed_encoded"]))?;
        let on_chain = d.settlement.receipt_digest(&signed.receipt).await?;
        assert_eq!(on_chain, b256(&v["receipt_hash"]));
        assert_eq!(on_chain, signed.receipt.signing_digest(&domain));
        assert!(
            d.settlement
                .verify_host_signature(on_chain, &signed.host_signature, &host_key)
                .await?
        );
    }
    // A flipped bit fails with the contract's own error.
    let v0 = &rv["receipts"][0];
    let mut sig = SignedReceipt::decode(&unhex(&v0["signed_encoded"]))?.host_signature;
    sig.0[5] ^= 1;
    let err = d
        .settlement
        .verify_host_signature(b256(&v0["receipt_hash"]), &sig, &host_key)
        .await
        .unwrap_err();
    assert_eq!(err.revert_name(), Some("BadHostSignature"), "{err:?}");

    // Channel id: the contract's (version 2, operator account) equals the core's hash with the account's word.
    let sv = load("channel_state");
    let tenant = TenantSigner::from_bytes(&TENANT_SECRET)?.address();
    let host = account_address(&Anvil::DEV_KEYS[HOST_OP])?;
    let salt = b256(&sv["salt"]);
    let id = d.settlement.channel_id(tenant, host, salt).await?;
    assert_eq!(id, channel_id(&domain, &tenant, &host, &salt));
    assert_eq!(id, b256(&sv["channel_id"]));

    // Version 2 channel state digests: the contract's equal the core's, alloy's EIP-712 hash of the same struct
    // and every state of the vectors (whose host is this operator account and whose domain is this deployment).
    let state = ChannelState {
        channel_id: id,
        turn: 3,
        cumulative: 123,
        escrow_cap: E18,
        last_receipt_hash: b256(&rv["receipts"][1]["receipt_hash"]),
        tenant,
        host,
        is_final: false,
    };
    let alloy_domain = convert::eip712_domain(&domain);
    for is_final in [false, true] {
        let state = ChannelState {
            is_final,
            ..state.clone()
        };
        let onchain = OnchainChannelState::from(&state);
        let digest = d.settlement.channel_state_digest(&onchain).await?;
        assert_eq!(digest, state.signing_digest(&domain));
        assert_eq!(
            digest,
            B256::from(onchain.eip712_signing_hash(&alloy_domain))
        );
    }
    for v in sv["states"].as_array().unwrap() {
        let state = ChannelState::decode(&unhex(&v["encoded"]))?;
        let digest = d.settlement.channel_state_digest(&(&state).into()).await?;
        assert_eq!(digest, b256(&v["digest"]));
    }
    Ok(())
}

/// A receipt of `channel` on top of `prev`, signed by the vectors' host key.
fn receipt(
    channel: B256,
    call_seq: u64,
    prev: B256,
    cumulative_before: u128,
    keyset_hash: B256,
) -> Receipt {
    let (tokens_in, tokens_out, price_in, price_out) = (12, 9, 1_000_000_000, 3_000_000_000);
    let amount = amount(tokens_in, price_in, tokens_out, price_out).unwrap();
    let seq = call_seq.to_le_bytes()[0];
    Receipt {
        version: 1,
        channel_id: channel,
        call_seq,
        host_key_id: HostSigningKey::from_bytes(&HOST_SECRET)
            .unwrap()
            .verifying_key()
            .key_id(),
        keyset_hash,
        model_id: "smollm2-135m-instruct-q4_1".into(),
        weight_hash: B256([0xa1; 32]),
        request_hash: B256([seq; 32]),
        response_hash: B256([seq ^ 0xff; 32]),
        request_ct_hash: B256([0xc1; 32]),
        response_ct_hash: B256([0xc2; 32]),
        tokens_in,
        tokens_out,
        price_in,
        price_out,
        amount,
        cumulative: cumulative_before + amount,
        prev_receipt_hash: prev,
        timestamp: 1_767_225_600 + call_seq,
        seed: 7,
        engine_build: B256([0xeb; 32]),
        deterministic: true,
    }
}

#[tokio::test]
async fn a_channel_end_to_end_through_the_typed_client() -> TestResult {
    let d = deploy(Hardfork::Osaka).await?;
    let domain = d.settlement.domain();
    let kv = load("keyset");
    let host_key = HostSigningKey::from_bytes(&HOST_SECRET)?;
    let tenant_key = TenantSigner::from_bytes(&TENANT_SECRET)?;
    let (host_op, owner_client) = (
        d.as_account(&Anvil::DEV_KEYS[HOST_OP]).await?,
        d.as_account(&Anvil::DEV_KEYS[OWNER]).await?,
    );
    let host = account_address(&Anvil::DEV_KEYS[HOST_OP])?;
    let tenant = tenant_key.address();
    d.chain.set_balance(tenant, 1000 * E18)?;
    let tenant_client = d.as_account(&TENANT_SECRET).await?;

    // Tokens: both sides mint and approve the settlement.
    for (who, (_, token)) in [(host, &host_op), (tenant, &tenant_client)] {
        token.mint(who, 1_000_000 * E18).await?;
        token.approve(d.settlement.address(), None).await?;
        assert_eq!(
            token.allowance(who, d.settlement.address()).await?,
            alloy::primitives::U256::MAX
        );
    }

    // Host registration.
    let gpu = B256([0x9a; 32]);
    let out = host_op.0.register_host(&[gpu]).await?;
    assert!(
        matches!(&out.events[..], [SettlementEvent::HostRegistered(e)] if Address::from(e.operator) == host)
    );
    assert_eq!(d.settlement.host(host).await?.stake, 100 * E18);
    let again = host_op
        .0
        .register_host(&[B256([0x9b; 32])])
        .await
        .unwrap_err();
    assert_eq!(again.revert_name(), Some("HostAlreadyRegistered"));

    // Release: only the owner publishes; usable after the delay.
    let release = B256([0x2e; 32]);
    let t = now(&d.settlement).await?;
    let not_owner = host_op
        .0
        .publish_release(release, B256([1; 32]), t - 10, t + 365 * DAY)
        .await
        .unwrap_err();
    assert_eq!(not_owner.revert_name(), Some("NotOwner"));
    owner_client
        .0
        .publish_release(release, B256([1; 32]), t - 10, t + 365 * DAY)
        .await?;
    let early = d.settlement.check_release(release).await.unwrap_err();
    assert_eq!(early.revert_name(), Some("ReleaseNotYetEffective"));
    d.chain.increase_time(3601)?;
    d.settlement.check_release(release).await?;

    // Attestation of the vectors' keyset (bound to this chain, this contract and the host operator).
    let epoch = d.settlement.current_epoch().await?;
    let nonce = d.settlement.epoch_nonce(epoch).await?;
    assert!(!nonce.recorded);
    let keyset_hash = b256(&kv["keyset_hash"]);
    let host_key_id = host_key.verifying_key().key_id();
    let out = host_op
        .0
        .submit_attestation(
            &convert::keyset_bytes(&Keyset::decode(&unhex(&kv["encoded"]))?),
            host_key_id,
            epoch,
            B256([0xbb; 32]),
            release,
            "https://h/a",
        )
        .await?;
    let ev = out.events.iter().find_map(|e| match e {
        SettlementEvent::AttestationSubmitted(a) => Some(a),
        _ => None,
    });
    let ev = ev.ok_or("no AttestationSubmitted")?;
    assert_eq!(B256::from(ev.keysetHash), keyset_hash);
    assert_eq!(B256::from(ev.epochNonce), nonce.nonce);
    assert!(d.settlement.epoch_nonce(epoch).await?.recorded);
    assert_eq!(d.settlement.host_key(host_key_id).await?, (host, epoch));

    // Open a channel.
    let salt = B256([0x5a; 32]);
    let escrow = E18;
    let deadline = now(&d.settlement).await? + 30 * DAY;
    let (id, _) = tenant_client
        .0
        .open_channel(host, salt, escrow, 100, 1_000_000_000_000, deadline)
        .await?;
    assert_eq!(id, channel_id(&domain, &tenant, &host, &salt));
    let info = d.settlement.channel(id).await?;
    assert_eq!(
        (info.escrow, info.turn, info.status),
        (escrow, 0, ChannelStatus::Open)
    );
    let out_of_range = tenant_client
        .0
        .open_channel(host, salt, escrow, 100, 1 << 96, deadline)
        .await;
    assert!(matches!(
        out_of_range,
        Err(EvmError::OutOfRange { ty: "uint96", .. })
    ));

    // Call 1: the host signs a receipt, the tenant counter-signs the state after it; anyone claims.
    let r1 = host_key.sign_receipt(receipt(id, 1, B256::ZERO, 0, keyset_hash), &domain);
    let h1 = r1.receipt.signing_digest(&domain);
    let mut state = ChannelState::open(id, escrow, tenant, host);
    state.turn = 1;
    state.cumulative = r1.receipt.cumulative;
    state.last_receipt_hash = h1;
    let onchain = OnchainChannelState::from(&state);
    let state_sig = tenant_key.sign_state(&state, &domain);
    let host_before = d.token.balance_of(host).await?;
    let out = host_op.0.claim(salt, &onchain, &state_sig).await?;
    assert!(matches!(&out.events[..], [SettlementEvent::Claimed(c)] if c.turn == 1));
    let paid = d.token.balance_of(host).await? - host_before;
    assert_eq!(paid, alloy::primitives::U256::from(r1.receipt.amount));

    // The same turn again: the contract's StaleState, decoded.
    let stale = host_op
        .0
        .claim(salt, &onchain, &state_sig)
        .await
        .unwrap_err();
    assert_eq!(stale.revert_name(), Some("StaleState"));
    assert!(matches!(
        stale.settlement_revert(),
        Some(DaitSettlementErrors::StaleState(_))
    ));
    // A signature over another state: BadTenantSignature.
    let mut other = onchain.clone();
    other.turn = 2;
    let bad = host_op.0.claim(salt, &other, &state_sig).await.unwrap_err();
    assert_eq!(bad.revert_name(), Some("BadTenantSignature"));

    // Call 2 on top of the co-signed state: claim with the host's receipt.
    let r2 = host_key.sign_receipt(
        receipt(id, 2, h1, r1.receipt.cumulative, keyset_hash),
        &domain,
    );
    let out = host_op
        .0
        .claim_with_receipt(salt, &onchain, &state_sig, &r2)
        .await?;
    assert!(matches!(&out.events[..], [SettlementEvent::Claimed(c)] if c.turn == 2));
    assert_eq!(d.settlement.channel(id).await?.paid, r2.receipt.cumulative);

    // Cooperative close: a final state counter-signed by the host's receipt key (P-256 on chain).
    let mut last = state.clone();
    last.turn = 2;
    last.cumulative = r2.receipt.cumulative;
    last.last_receipt_hash = r2.receipt.signing_digest(&domain);
    let not_final = OnchainChannelState::from(&last);
    let sig = tenant_key.sign_state(&last, &domain);
    let err = tenant_client
        .0
        .close_channel(salt, &not_final, &sig, host_key_id, None)
        .await
        .unwrap_err();
    assert_eq!(err.revert_name(), Some("NotFinal"));
    last.is_final = true;
    let fin = OnchainChannelState::from(&last);
    let digest = d.settlement.channel_state_digest(&fin).await?;
    assert_eq!(digest, last.signing_digest(&domain));
    let sig = tenant_key.sign_state(&last, &domain);
    let host_sig = host_key.sign_prehash(&digest);
    let tenant_before = d.token.balance_of(tenant).await?;
    let out = tenant_client
        .0
        .close_channel(salt, &fin, &sig, host_key_id, Some(&host_sig))
        .await?;
    let settled = out.events.iter().find_map(|e| match e {
        SettlementEvent::ChannelSettled(s) => Some(s),
        _ => None,
    });
    let settled = settled.ok_or("no ChannelSettled")?;
    assert!(settled.cooperative);
    let refund = d.token.balance_of(tenant).await? - tenant_before;
    assert_eq!(
        refund,
        alloy::primitives::U256::from(escrow - r2.receipt.cumulative)
    );
    assert_eq!(
        d.settlement.channel(id).await?.status,
        ChannelStatus::Closed
    );

    // The log, read back once and then empty.
    let mut cursor = d.settlement.event_cursor(0);
    let names: Vec<&str> = cursor
        .poll()
        .await?
        .iter()
        .map(|e| match &e.event {
            SettlementEvent::OwnershipTransferred(_) => "OwnershipTransferred",
            SettlementEvent::HostRegistered(_) => "HostRegistered",
            SettlementEvent::ReleasePublished(_) => "ReleasePublished",
            SettlementEvent::EpochNonceRecorded(_) => "EpochNonceRecorded",
            SettlementEvent::AttestationSubmitted(_) => "AttestationSubmitted",
            SettlementEvent::ChannelOpened(_) => "ChannelOpened",
            SettlementEvent::Claimed(_) => "Claimed",
            SettlementEvent::ChannelSettled(_) => "ChannelSettled",
            _ => "other",
        })
        .collect();
    assert_eq!(
        names,
        [
            "OwnershipTransferred",
            "HostRegistered",
            "ReleasePublished",
            "EpochNonceRecorded",
            "AttestationSubmitted",
            "ChannelOpened",
            "Claimed",
            "Claimed",
            "ChannelSettled"
        ]
    );
    assert!(cursor.poll().await?.is_empty());

    // Receipt batches of one receipt each: the root is the leaf, the proof is empty.
    let leaf = |r: &SignedReceipt| {
        let mut pre = vec![0u8];
        pre.extend_from_slice(&r.receipt.signing_digest(&domain).0);
        B256(alloy::primitives::keccak256(&pre).0)
    };
    let (root1, root2) = (leaf(&r1), leaf(&r2));
    host_op
        .0
        .commit_receipts(root1, 1, r1.receipt.amount)
        .await?;
    host_op
        .0
        .commit_receipts(root2, 1, r2.receipt.amount)
        .await?;
    let early = host_op
        .0
        .reveal_receipts(host, root1, &[])
        .await
        .unwrap_err();
    assert_eq!(early.revert_name(), Some("RevealTooEarly"));
    d.chain.mine(6)?;
    assert_eq!(d.settlement.sample_indices(host, root1).await?, [0]);
    let reveal = Reveal {
        receipt: r1.clone(),
        proof: Vec::new(),
    };
    let out = d.settlement.reveal_receipts(host, root1, &[reveal]).await?;
    assert!(matches!(
        &out.events[..],
        [SettlementEvent::ReceiptsRevealed(_)]
    ));
    assert_eq!(
        d.settlement.batch(host, root1).await?.status,
        BatchStatus::Revealed
    );
    let open = d.settlement.forfeit_batch(host, root2).await.unwrap_err();
    assert_eq!(open.revert_name(), Some("RevealStillOpen"));
    d.chain.mine(64)?;
    let out = d.settlement.forfeit_batch(host, root2).await?;
    assert!(matches!(
        &out.events[..],
        [SettlementEvent::BatchForfeited(_)]
    ));

    // Equivocation: a second, different receipt for call 1 by the same attested key.
    let mut twin = r1.receipt.clone();
    twin.response_hash = B256([0xee; 32]);
    let twin = host_key.sign_receipt(twin, &domain);
    let reporter = d.as_account(&Anvil::DEV_KEYS[OWNER]).await?;
    let same = reporter.0.slash_equivocation(&r1, &r1).await.unwrap_err();
    assert_eq!(same.revert_name(), Some("SameReceipt"));
    let out = reporter.0.slash_equivocation(&r1, &twin).await?;
    assert!(
        matches!(&out.events[..], [SettlementEvent::HostSlashed(s)] if Address::from(s.operator) == host)
    );
    assert_eq!(d.settlement.host(host).await?.status, HostStatus::Slashed);
    Ok(())
}

/// The functions the channel test does not reach: ownership handover, revocation, the epoch nonce, a unilateral
/// close and its finalisation, unbonding and withdrawal.
#[tokio::test]
async fn ownership_revocation_epoch_nonce_unilateral_close_and_unbonding() -> TestResult {
    let d = deploy(Hardfork::Osaka).await?;
    let (owner, _) = d.as_account(&Anvil::DEV_KEYS[OWNER]).await?;
    let (next_owner, _) = d.as_account(&Anvil::DEV_KEYS[TOKEN_DEPLOYER]).await?;
    let (host_op, host_token) = d.as_account(&Anvil::DEV_KEYS[HOST_OP]).await?;
    let tenant_key = TenantSigner::from_bytes(&TENANT_SECRET)?;
    let (tenant, host) = (
        tenant_key.address(),
        account_address(&Anvil::DEV_KEYS[HOST_OP])?,
    );
    d.chain.set_balance(tenant, 1000 * E18)?;
    let (tenant_client, tenant_token) = d.as_account(&TENANT_SECRET).await?;

    // Two-step ownership handover.
    let new_owner = account_address(&Anvil::DEV_KEYS[TOKEN_DEPLOYER])?;
    owner.transfer_ownership(new_owner).await?;
    assert_eq!(d.settlement.pending_owner().await?, new_owner);
    let err = host_op.accept_ownership().await.unwrap_err();
    assert_eq!(err.revert_name(), Some("NotPendingOwner"));
    let out = next_owner.accept_ownership().await?;
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, SettlementEvent::OwnershipTransferred(_)))
    );
    assert_eq!(d.settlement.owner().await?, new_owner);

    // The new owner publishes and revokes a release.
    let release = B256([0x3e; 32]);
    let t = now(&d.settlement).await?;
    next_owner
        .publish_release(release, B256([2; 32]), t, t + DAY)
        .await?;
    let out = next_owner.revoke_release(release).await?;
    assert!(matches!(
        &out.events[..],
        [SettlementEvent::ReleaseRevokedEvent(_)]
    ));
    assert_eq!(
        d.settlement
            .check_release(release)
            .await
            .unwrap_err()
            .revert_name(),
        Some("ReleaseRevoked")
    );

    // The epoch nonce: recorded once per epoch.
    let epoch = d.settlement.current_epoch().await?;
    let out = tenant_client.record_epoch_nonce().await?;
    let recorded = out.events.iter().find_map(|e| match e {
        SettlementEvent::EpochNonceRecorded(r) => Some(B256::from(r.nonce)),
        _ => None,
    });
    let nonce = d.settlement.epoch_nonce(epoch).await?;
    assert!(nonce.recorded);
    assert_eq!(recorded, Some(nonce.nonce));
    assert!(tenant_client.record_epoch_nonce().await?.events.is_empty());

    // A channel closed unilaterally: the challenge window, then the whole escrow back to the tenant.
    for (who, token) in [(host, &host_token), (tenant, &tenant_token)] {
        token.mint(who, 1_000 * E18).await?;
        token.approve(d.settlement.address(), None).await?;
    }
    let gpu = B256([0x9c; 32]);
    host_op.register_host(&[gpu]).await?;
    let salt = B256([0x5b; 32]);
    let deadline = now(&d.settlement).await? + 30 * DAY;
    let (id, _) = tenant_client
        .open_channel(host, salt, E18, 10, 1_000, deadline)
        .await?;
    let out = tenant_client.start_close(tenant, host, salt).await?;
    assert!(matches!(
        &out.events[..],
        [SettlementEvent::CloseStarted(_)]
    ));
    assert_eq!(
        d.settlement.channel(id).await?.status,
        ChannelStatus::Closing
    );
    let early = d.settlement.finalize(tenant, host, salt).await.unwrap_err();
    assert_eq!(early.revert_name(), Some("WindowNotOver"));
    d.chain.increase_time(DAY + 1)?;
    let before = d.token.balance_of(tenant).await?;
    d.settlement.finalize(tenant, host, salt).await?;
    assert_eq!(
        d.token.balance_of(tenant).await? - before,
        alloy::primitives::U256::from(E18)
    );
    assert_eq!(
        d.settlement.channel(id).await?.status,
        ChannelStatus::Closed
    );

    // Unbonding: the stake comes back after the delay.
    let out = host_op.begin_unbonding().await?;
    assert!(matches!(
        &out.events[..],
        [SettlementEvent::UnbondingStarted(_)]
    ));
    let early = host_op.withdraw_stake(&[gpu]).await.unwrap_err();
    assert_eq!(early.revert_name(), Some("UnbondingNotOver"));
    d.chain.increase_time(7 * DAY + 1)?;
    let before = d.token.balance_of(host).await?;
    host_op.withdraw_stake(&[gpu]).await?;
    assert_eq!(
        d.token.balance_of(host).await? - before,
        alloy::primitives::U256::from(100 * E18)
    );
    assert_eq!(d.settlement.host(host).await?.stake, 0);
    Ok(())
}

#[tokio::test]
async fn prague_has_no_p256verify_and_host_signatures_fail_closed() -> TestResult {
    let d = deploy(Hardfork::Prague).await?;
    let rv = load("receipt");
    let host_key = HostSigningKey::from_bytes(&HOST_SECRET)?.verifying_key();
    let v = &rv["receipts"][0];
    let signed = SignedReceipt::decode(&unhex(&v["signed_encoded"]))?;
    // The digests do not need the precompile.
    assert_eq!(
        d.settlement.receipt_digest(&signed.receipt).await?,
        b256(&v["receipt_hash"])
    );
    let err = d
        .settlement
        .verify_host_signature(b256(&v["receipt_hash"]), &signed.host_signature, &host_key)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.settlement_revert(),
            Some(DaitSettlementErrors::BadHostSignature(_))
        ),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_address_without_code_is_no_settlement() -> TestResult {
    let chain = Anvil::start(Hardfork::Osaka)?;
    let nobody = Address([0x42; 20]);
    let err = Settlement::at(nobody, provider(&chain, &Anvil::DEV_KEYS[0])?)
        .await
        .unwrap_err();
    assert!(
        matches!(err, EvmError::NoContract { address } if address == nobody),
        "{err:?}"
    );
    Ok(())
}

/// A TLS-terminating proxy in front of `chain` with a fresh self-signed certificate for 127.0.0.1; returns the
/// proxy's `https://` URL and the certificate (PEM), the only root a client needs.
async fn tls_proxy(chain: &Anvil) -> Result<(String, String), Box<dyn Error>> {
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?.self_signed(&key_pair)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into()),
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let upstream = chain.url().trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut node) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut node).await;
            });
        }
    });
    Ok((format!("https://{addr}"), cert.pem()))
}

#[tokio::test]
async fn https_to_the_node_trusts_only_the_ca_file() -> TestResult {
    use alloy::providers::Provider as _;
    let chain = Anvil::start(Hardfork::Osaka)?;
    let (url, pem) = tls_proxy(&chain).await?;
    let dir = std::env::temp_dir().join(format!("dait-evm-https-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (ca, other_ca, empty) = (
        dir.join("ca.pem"),
        dir.join("other.pem"),
        dir.join("empty.pem"),
    );
    std::fs::write(&ca, &pem)?;
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    std::fs::write(
        &other_ca,
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?
            .self_signed(&other)?
            .pem(),
    )?;
    std::fs::write(&empty, "")?;

    // Reads and a transaction over TLS.
    assert_eq!(connect_https(&url, &ca, None)?.get_chain_id().await?, 31337);
    let token = Token::deploy_test_token(connect_https(
        &url,
        &ca,
        Some(&Anvil::DEV_KEYS[TOKEN_DEPLOYER]),
    )?)
    .await?;
    let holder = Address([0x77; 20]);
    token.mint(holder, 5).await?;
    assert_eq!(
        token.balance_of(holder).await?,
        alloy::primitives::U256::from(5)
    );

    // A node whose certificate the CA file did not sign is refused; so are plain http and an empty CA file.
    assert!(
        connect_https(&url, &other_ca, None)?
            .get_chain_id()
            .await
            .is_err()
    );
    assert!(matches!(
        connect_https(chain.url(), &ca, None),
        Err(EvmError::Url)
    ));
    assert!(matches!(
        connect_https(&url, &empty, None),
        Err(EvmError::NoRoots { .. })
    ));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn a_missing_anvil_is_an_error() {
    let missing = PathBuf::from("/nonexistent/anvil");
    let err = Anvil::start_binary(&missing, Hardfork::Osaka, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, AnvilError::NotFound(p) if p == missing));
}
