//! Receipt batches (PROTOCOL.md §11) end to end through the typed EVM client, on a local anvil (osaka), with the
//! tree, proofs and sample rule of the core's `batch` module (feature `evm`; issue 10):
//!
//! - batches of 1, 2, 3, 5, 8, 100 and 1,000 receipts, each signed by the host's attested key as the agent signs
//!   them: `commitReceipts(root, count, total)` of the core's tree; after `commitRevealWindow` blocks the
//!   contract's `sampleIndices` equals the core's rule for the sample block's hash; `revealReceipts` with the
//!   core's proofs is accepted and credits the host (events and `credits`);
//! - the rejections, each with its contract error and, where the core checks the same thing, the core's
//!   `BatchError`: a flipped sibling hash, a changed sibling sum, a sum word of 2^128, a sum that overflows, a
//!   total that is not the leaves' sum, a non-sampled leaf, a key the operator never attested, a reveal before
//!   the window opens and after it closed (then `forfeitBatch`, once), an empty batch, a batch committed twice;
//! - gas: commit and reveal for every size above and for 10,000 receipts (built with only the sampled receipts
//!   signed: the contract checks no other signature, so the gas is the same), printed with `--nocapture`:
//!
//! ```sh
//! cargo test -p dait-chain-client --features evm --test evm_batches -- --nocapture
//! ```
//!
//! Signing 10,000 receipts is timed by an ignored test (`-- --ignored`). Anvil comes from
//! `scripts/install-chain-tools.sh` (or `DAIT_ANVIL`); without it these tests fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::fmt::Debug;
use std::time::Instant;

use alloy::eips::BlockNumberOrTag;
use alloy::providers::Provider as _;
use dait_chain_client::batch::{self, BatchError, SumNode, SumProof, SumTree};
use dait_chain_client::evm::anvil::{Anvil, Hardfork};
use dait_chain_client::evm::{
    BatchStatus, EvmError, Outcome, Reveal, Settlement, SettlementEvent, Token, account_address,
    connect_http, convert,
};
use dait_chain_client::{
    Address, B256, Domain, HostSignature, HostSigningKey, Keyset, Receipt, SignedReceipt,
    WireMessage, amount,
};

mod common;
use common::{
    COMMIT_REVEAL_WINDOW, DAY, E18, HOST_OP, HOST_SECRET, OWNER, REVEAL_WINDOW, SAMPLE_SIZE,
    TOKEN_DEPLOYER, TestResult, load, now, params, unhex,
};

/// A P-256 key no operator attested.
const STRANGER_SECRET: [u8; 32] = [0x33; 32];

/// The name of the contract error `result` failed with; panics when it succeeded or failed otherwise.
fn revert<T: Debug>(result: Result<T, EvmError>) -> &'static str {
    match result {
        Err(e) => e
            .revert_name()
            .unwrap_or_else(|| panic!("not a contract revert: {e:?}")),
        Ok(v) => panic!("expected a revert, got {v:?}"),
    }
}

// ---------- a deployment with an attested host ----------

/// A settlement whose host operator (anvil's first account, the vectors' `host_account`) is registered and has
/// attested the vectors' keyset (receipt key [`HOST_SECRET`]).
struct Chain {
    chain: Anvil,
    /// Sends as the host operator.
    host_op: Settlement,
    /// Sends as anyone else (reveals and forfeits may come from anybody).
    reporter: Settlement,
    host: Address,
    keyset_hash: B256,
}

impl Chain {
    async fn start() -> Result<Self, Box<dyn Error>> {
        let chain = Anvil::start(Hardfork::Osaka)?;
        let token = Token::deploy_test_token(connect_http(
            chain.url(),
            Some(&Anvil::DEV_KEYS[TOKEN_DEPLOYER]),
        )?)
        .await?;
        let owner = account_address(&Anvil::DEV_KEYS[OWNER])?;
        let host_provider = connect_http(chain.url(), Some(&Anvil::DEV_KEYS[HOST_OP]))?;
        // Deployed by the first account at nonce 0: the vectors' settlement address, which their keyset names.
        let host_op =
            Settlement::deploy(host_provider.clone(), &params(token.address(), owner)).await?;
        let reporter = Settlement::at(
            host_op.address(),
            connect_http(chain.url(), Some(&Anvil::DEV_KEYS[OWNER]))?,
        )
        .await?;
        let host = account_address(&Anvil::DEV_KEYS[HOST_OP])?;

        let host_token = Token::at(token.address(), host_provider);
        host_token.mint(host, 1_000 * E18).await?;
        host_token.approve(host_op.address(), None).await?;
        host_op.register_host(&[B256([0x9a; 32])]).await?;

        let release = B256([0x2e; 32]);
        let t = now(&host_op).await?;
        reporter
            .publish_release(release, B256([1; 32]), t - 10, t + 365 * DAY)
            .await?;
        chain.increase_time(3601)?;
        let kv = load("keyset");
        let host_key_id = HostSigningKey::from_bytes(&HOST_SECRET)?
            .verifying_key()
            .key_id();
        let epoch = host_op.current_epoch().await?;
        host_op
            .submit_attestation(
                &convert::keyset_bytes(&Keyset::decode(&unhex(&kv["encoded"]))?),
                host_key_id,
                epoch,
                B256([0xbb; 32]),
                release,
                "https://h/a",
            )
            .await?;
        assert_eq!(host_op.host_key(host_key_id).await?.0, host);
        Ok(Self {
            chain,
            host_op,
            reporter,
            host,
            keyset_hash: B256::from_slice(&unhex(&kv["keyset_hash"])).unwrap(),
        })
    }

    fn domain(&self) -> Domain {
        self.host_op.domain()
    }

    /// `credits(host)`: (amount, receipts, batches, forfeited).
    async fn credits(&self) -> Result<(u128, u64, u32, u32), EvmError> {
        let c = self
            .host_op
            .instance()
            .credits(self.host.into())
            .call()
            .await
            .map_err(EvmError::from)?;
        Ok((c.amount, c.receipts, c.batches, c.forfeited))
    }

    /// Commits `b` as the host operator and checks the event and the stored batch.
    async fn commit(&self, b: &Batch) -> Result<Outcome, Box<dyn Error>> {
        let (root, count, total) = (b.tree.root(), b.tree.count(), b.tree.total());
        let out = self.host_op.commit_receipts(root, count, total).await?;
        match &out.events[..] {
            [SettlementEvent::ReceiptsCommitted(e)] => {
                assert_eq!(Address::from(e.host), self.host);
                assert_eq!(B256::from(e.root), root);
                assert_eq!(
                    (e.count, e.total, e.commitBlock),
                    (count, total, out.block_number)
                );
            }
            other => panic!("commitReceipts logged {other:?}"),
        }
        let info = self.host_op.batch(self.host, root).await?;
        assert_eq!(
            (info.count, info.total, info.commit_block, info.status),
            (count, total, out.block_number, BatchStatus::Committed)
        );
        Ok(out)
    }

    /// The sample of a batch committed in `commit_block`, once its sample block is mined: the contract's, after
    /// checking it equals the core's rule for the sample block's hash.
    async fn sample(&self, b: &Batch, commit_block: u64) -> Result<Vec<u32>, Box<dyn Error>> {
        let seed_block = self
            .host_op
            .provider()
            .get_block_by_number(BlockNumberOrTag::Number(
                commit_block + COMMIT_REVEAL_WINDOW,
            ))
            .await?
            .ok_or("no sample block")?;
        let seed = B256::from(seed_block.header.hash);
        let root = b.tree.root();
        let core = batch::sample_indices(&seed, &self.host, &root, b.tree.count(), SAMPLE_SIZE)?;
        let chain = self.host_op.sample_indices(self.host, root).await?;
        assert_eq!(
            chain,
            core.iter().map(|i| u64::from(*i)).collect::<Vec<_>>(),
            "sample of {} receipts",
            b.tree.count()
        );
        assert_eq!(core.len(), b.tree.count().min(SAMPLE_SIZE) as usize);
        assert_eq!(core.first(), Some(&(b.tree.count() - 1)));
        Ok(core)
    }
}

// ---------- batches ----------

/// Receipt `call_seq` of `channel`, on top of the previous one (its hash and cumulative), by `key`; the amount
/// varies with the output tokens, as served calls do.
fn receipt(
    channel: B256,
    call_seq: u64,
    prev: (B256, u128),
    key: &HostSigningKey,
    keyset_hash: B256,
) -> Receipt {
    let (tokens_in, price_in, price_out) = (12, 1_000_000_000, 3_000_000_000);
    let tokens_out = 1 + call_seq % 50;
    let amount = amount(tokens_in, price_in, tokens_out, price_out).unwrap();
    let seq = call_seq.to_be_bytes();
    let mut request_hash = [0xa5; 32];
    request_hash[24..].copy_from_slice(&seq);
    let mut response_hash = [0x5a; 32];
    response_hash[24..].copy_from_slice(&seq);
    Receipt {
        version: 1,
        channel_id: channel,
        call_seq,
        host_key_id: key.verifying_key().key_id(),
        keyset_hash,
        model_id: "smollm2-135m-instruct-q4_1".into(),
        weight_hash: B256([0xa1; 32]),
        request_hash: B256(request_hash),
        response_hash: B256(response_hash),
        request_ct_hash: B256([0xc1; 32]),
        response_ct_hash: B256([0xc2; 32]),
        tokens_in,
        tokens_out,
        price_in,
        price_out,
        amount,
        cumulative: prev.1 + amount,
        prev_receipt_hash: prev.0,
        timestamp: 1_767_225_600 + call_seq,
        seed: 7,
        engine_build: B256([0xeb; 32]),
        deterministic: true,
    }
}

/// A batch of one channel's receipts in call order, its core tree, and the receipts' signatures.
struct Batch {
    receipts: Vec<Receipt>,
    /// `signatures[i]` signs receipt `i`; empty for a batch built cheaply (only its sample gets signed).
    signatures: Vec<HostSignature>,
    tree: SumTree,
}

impl Batch {
    /// `count` receipts of the channel named by `tag`, signed by `key` one by one (as the agent signs them)
    /// when `sign_all`.
    fn new(
        tag: &str,
        count: u32,
        key: &HostSigningKey,
        keyset_hash: B256,
        domain: &Domain,
        sign_all: bool,
    ) -> Result<Self, BatchError> {
        let channel = B256(alloy::primitives::keccak256(format!("{tag} {count}")).0);
        let mut receipts = Vec::with_capacity(count as usize);
        let mut leaves = Vec::with_capacity(count as usize);
        let mut signatures = Vec::new();
        let mut prev = (B256::ZERO, 0);
        for call_seq in 1..=u64::from(count) {
            let r = receipt(channel, call_seq, prev, key, keyset_hash);
            let digest = r.signing_digest(domain);
            if sign_all {
                signatures.push(key.sign_prehash(&digest));
            }
            leaves.push(SumNode::leaf(&digest, r.amount));
            prev = (digest, r.cumulative);
            receipts.push(r);
        }
        let tree = SumTree::build(&leaves)?;
        assert_eq!(tree.total(), prev.1, "the total is the last cumulative");
        Ok(Self {
            receipts,
            signatures,
            tree,
        })
    }

    /// Receipt `i` with its signature (signed now by `key` for a cheap batch).
    fn signed(&self, i: u32, key: &HostSigningKey, domain: &Domain) -> SignedReceipt {
        let receipt = self.receipts[i as usize].clone();
        let host_signature = match self.signatures.get(i as usize) {
            Some(s) => *s,
            None => key.sign_prehash(&receipt.signing_digest(domain)),
        };
        SignedReceipt {
            receipt,
            host_signature,
        }
    }

    /// The reveal of leaf `i`: the signed receipt and the core's proof, checked by the core first.
    fn reveal(&self, i: u32, key: &HostSigningKey, domain: &Domain) -> Result<Reveal, BatchError> {
        let proof = self.tree.proof(i)?;
        proof.verify(
            &self.tree.leaf(i)?,
            &self.tree.root(),
            self.tree.count(),
            self.tree.total(),
        )?;
        Ok(Reveal {
            receipt: self.signed(i, key, domain),
            proof: words(&proof),
        })
    }

    fn reveals(
        &self,
        indices: &[u32],
        key: &HostSigningKey,
        domain: &Domain,
    ) -> Result<Vec<Reveal>, BatchError> {
        indices
            .iter()
            .map(|i| self.reveal(*i, key, domain))
            .collect()
    }
}

fn words(proof: &SumProof) -> Vec<B256> {
    proof.to_words().into_iter().map(B256).collect()
}

/// The proof's words back into a core proof for leaf `index` (to check a tampered proof against the core).
fn core_proof(index: u32, words: &[B256]) -> Result<SumProof, BatchError> {
    SumProof::from_words(index, &words.iter().map(|w| w.0).collect::<Vec<_>>())
}

/// Commits, samples and reveals `b`; checks the reveal's event and the credit; returns (commit gas, reveal gas).
async fn commit_sample_reveal(
    c: &Chain,
    b: &Batch,
    key: &HostSigningKey,
) -> Result<(u64, u64), Box<dyn Error>> {
    let (root, count, total) = (b.tree.root(), b.tree.count(), b.tree.total());
    let commit = c.commit(b).await?;
    assert_eq!(
        revert(c.host_op.sample_indices(c.host, root).await),
        "RevealTooEarly"
    );
    c.chain.mine(COMMIT_REVEAL_WINDOW + 1)?;
    let indices = c.sample(b, commit.block_number).await?;
    let reveals = b.reveals(&indices, key, &c.domain())?;
    let before = c.credits().await?;
    let out = c.reporter.reveal_receipts(c.host, root, &reveals).await?;
    match &out.events[..] {
        [SettlementEvent::ReceiptsRevealed(e)] => {
            assert_eq!((Address::from(e.host), B256::from(e.root)), (c.host, root));
            assert_eq!((e.count, e.total), (count, total));
        }
        other => panic!("revealReceipts logged {other:?}"),
    }
    assert_eq!(
        c.host_op.batch(c.host, root).await?.status,
        BatchStatus::Revealed
    );
    let after = c.credits().await?;
    assert_eq!(
        after,
        (
            before.0 + total,
            before.1 + u64::from(count),
            before.2 + 1,
            before.3
        )
    );
    // Revealed once only.
    assert_eq!(
        revert(c.reporter.reveal_receipts(c.host, root, &reveals).await),
        "BatchNotCommitted"
    );
    Ok((commit.gas_used, out.gas_used))
}

fn report_gas(count: u32, depth: u32, (commit, reveal): (u64, u64), how: &str) {
    let k = count.min(SAMPLE_SIZE);
    eprintln!(
        "gas, {count} receipts ({how}): commitReceipts {commit}, revealReceipts ({k} leaves, depth {depth}) \
         {reveal}, commit + reveal per receipt {}",
        (commit + reveal).div_ceil(u64::from(count))
    );
}

// ---------- tests ----------

#[tokio::test]
async fn batches_of_signed_receipts_are_committed_sampled_revealed_and_credited() -> TestResult {
    let c = Chain::start().await?;
    let key = HostSigningKey::from_bytes(&HOST_SECRET)?;
    let domain = c.domain();
    let host_key = key.verifying_key();
    let mut credited = (0u128, 0u64);
    for count in [1, 2, 3, 5, 8, 100, 1_000] {
        let started = Instant::now();
        let b = Batch::new("signed", count, &key, c.keyset_hash, &domain, true)?;
        let built = started.elapsed();
        // The core's tree over the receipts themselves is the same, and every signature verifies.
        assert_eq!(SumTree::from_receipts(&b.receipts, &domain)?, b.tree);
        for i in [0, count / 2, count - 1] {
            b.signed(i, &key, &domain).verify(&host_key, &domain)?;
        }
        let gas = commit_sample_reveal(&c, &b, &key).await?;
        report_gas(
            count,
            b.tree.depth(),
            gas,
            &format!("all signed; built and signed in {built:.2?}"),
        );
        credited = (credited.0 + b.tree.total(), credited.1 + u64::from(count));
    }
    assert_eq!(c.credits().await?, (credited.0, credited.1, 7, 0));
    Ok(())
}

#[tokio::test]
async fn ten_thousand_receipts_gas() -> TestResult {
    let c = Chain::start().await?;
    let key = HostSigningKey::from_bytes(&HOST_SECRET)?;
    let started = Instant::now();
    let b = Batch::new("cheap", 10_000, &key, c.keyset_hash, &c.domain(), false)?;
    let built = started.elapsed();
    assert_eq!(b.tree.depth(), 14);
    let gas = commit_sample_reveal(&c, &b, &key).await?;
    report_gas(
        10_000,
        b.tree.depth(),
        gas,
        &format!("sample signed only; built in {built:.2?}"),
    );
    assert_eq!(c.credits().await?.1, 10_000);
    Ok(())
}

/// How long the core takes to sign 10,000 receipts one by one (as the agent does), and the batch's gas with
/// every receipt signed. A measurement, not a check: `-- --ignored --nocapture`.
#[tokio::test]
#[ignore = "measurement: signs 10,000 receipts"]
async fn ten_thousand_signed_receipts() -> TestResult {
    let c = Chain::start().await?;
    let key = HostSigningKey::from_bytes(&HOST_SECRET)?;
    let started = Instant::now();
    let b = Batch::new("signed", 10_000, &key, c.keyset_hash, &c.domain(), true)?;
    let built = started.elapsed();
    let gas = commit_sample_reveal(&c, &b, &key).await?;
    report_gas(
        10_000,
        b.tree.depth(),
        gas,
        &format!("all signed; built and signed in {built:.2?}"),
    );
    Ok(())
}

#[tokio::test]
async fn batch_rejections_name_their_contract_errors() -> TestResult {
    let c = Chain::start().await?;
    let key = HostSigningKey::from_bytes(&HOST_SECRET)?;
    let stranger = HostSigningKey::from_bytes(&STRANGER_SECRET)?;
    let domain = c.domain();
    let host = c.host;

    // An empty batch: the core builds none, the contract takes none.
    assert_eq!(SumTree::build(&[]), Err(BatchError::Empty));
    assert_eq!(
        revert(c.host_op.commit_receipts(B256::ZERO, 0, 0).await),
        "EmptyBatch"
    );

    // Four batches of 20, committed in consecutive blocks: a good one; one signed by a key nobody attested;
    // one committed with a total one above its leaves' sum; one whose reveal overflows the 128-bit sum.
    let good = Batch::new("good", 20, &key, c.keyset_hash, &domain, true)?;
    let unattested = Batch::new("unattested", 20, &stranger, c.keyset_hash, &domain, true)?;
    let inflated = Batch::new("inflated", 20, &key, c.keyset_hash, &domain, true)?;
    let good_commit = c.commit(&good).await?;
    assert_eq!(
        revert(
            c.host_op
                .commit_receipts(good.tree.root(), 20, good.tree.total())
                .await
        ),
        "BatchExists"
    );
    // Before the window opens (the sample block is not mined yet): no sample, no reveal.
    assert_eq!(
        revert(c.host_op.sample_indices(host, good.tree.root()).await),
        "RevealTooEarly"
    );
    assert_eq!(
        revert(
            c.reporter
                .reveal_receipts(host, good.tree.root(), &[])
                .await
        ),
        "RevealTooEarly"
    );
    let unattested_commit = c.commit(&unattested).await?;
    let inflated_root = inflated.tree.root();
    let inflated_commit = c
        .host_op
        .commit_receipts(inflated_root, 20, inflated.tree.total() + 1)
        .await?;
    // Two leaves, the second receipt's amount is 2^128 - 1 (one input token at that price), the first's 1: the
    // core cannot build the tree; on chain the sum is checked at every level of the reveal.
    let big = {
        let mut r = receipt(B256([0x0f; 32]), 2, (B256::ZERO, 0), &key, c.keyset_hash);
        (r.tokens_in, r.price_in, r.tokens_out, r.price_out) = (1, u128::MAX, 0, 0);
        r.amount = amount(1, u128::MAX, 0, 0).unwrap();
        r.cumulative = u128::MAX;
        key.sign_receipt(r, &domain)
    };
    let big_leaf = SumNode::of_receipt(&big.receipt, &domain);
    let small_leaf = SumNode::leaf(&B256([0x51; 32]), 1);
    assert_eq!(
        SumTree::build(&[small_leaf, big_leaf]),
        Err(BatchError::SumOverflow)
    );
    let overflow_root = B256(alloy::primitives::keccak256("overflow").0);
    let overflow_commit = c
        .host_op
        .commit_receipts(overflow_root, 2, u128::MAX)
        .await?;
    // One block before the last batch's sample block: still too early.
    c.chain.mine(COMMIT_REVEAL_WINDOW - 1)?;
    assert_eq!(
        revert(c.host_op.sample_indices(host, overflow_root).await),
        "RevealTooEarly"
    );
    c.chain.mine(2)?;

    // The window is open for all four.
    let indices = c.sample(&good, good_commit.block_number).await?;
    let items = good.reveals(&indices, &key, &domain)?;
    let (root, total) = (good.tree.root(), good.tree.total());
    let leaf1 = good.tree.leaf(indices[1])?;
    assert_eq!(
        revert(c.reporter.forfeit_batch(host, root).await),
        "RevealStillOpen"
    );

    // A flipped bit in a sibling hash (leaf 1's level-0 sibling: a real leaf, 20 being even).
    let mut bad = items.clone();
    bad[1].proof[0].0[7] ^= 0x10;
    assert_eq!(
        core_proof(indices[1], &bad[1].proof)?.verify(&leaf1, &root, 20, total),
        Err(BatchError::RootMismatch)
    );
    assert_eq!(
        revert(c.reporter.reveal_receipts(host, root, &bad).await),
        "BadProof"
    );
    // A sibling sum one higher: the node hash covers the sums, so the proof leads elsewhere.
    let mut proof = core_proof(indices[1], &items[1].proof)?;
    proof.siblings[1].sum += 1;
    let mut bad = items.clone();
    bad[1].proof = words(&proof);
    assert_eq!(
        proof.verify(&leaf1, &root, 20, total),
        Err(BatchError::RootMismatch)
    );
    assert_eq!(
        revert(c.reporter.reveal_receipts(host, root, &bad).await),
        "BadProof"
    );
    // A sum word of 2^128 or more.
    let mut bad = items.clone();
    bad[1].proof[1].0[15] = 1;
    assert_eq!(
        core_proof(indices[1], &bad[1].proof),
        Err(BatchError::MalformedSum { level: 0 })
    );
    assert_eq!(
        revert(c.reporter.reveal_receipts(host, root, &bad).await),
        "MalformedInput"
    );
    // A leaf that is not sampled, with its own valid proof, in place of sample 1. In a tree of 20 the leaves
    // 16..20 have a padding sibling at level 2 and 0..16 a real one; the core names a real sibling where padding
    // belongs (`NonZeroPadding`) before it hashes, so the expected core error follows the two leaves' shapes (the
    // seed, hence the sample, comes from the chain). The contract says `BadProof` for both.
    let lower = |i: u32| i < 16;
    let unsampled: Vec<u32> = (0..20).filter(|i| !indices.contains(i)).collect();
    let other = unsampled
        .iter()
        .copied()
        .find(|&i| lower(i) == lower(indices[1]))
        .unwrap_or(unsampled[0]);
    let mut bad = items.clone();
    bad[1] = good.reveal(other, &key, &domain)?;
    let moved = SumProof {
        index: indices[1],
        ..good.tree.proof(other)?
    };
    let expected = if !lower(indices[1]) && lower(other) {
        BatchError::NonZeroPadding { level: 2 }
    } else {
        BatchError::RootMismatch
    };
    assert_eq!(
        moved.verify(&good.tree.leaf(other)?, &root, 20, total),
        Err(expected)
    );
    assert_eq!(
        revert(c.reporter.reveal_receipts(host, root, &bad).await),
        "BadProof"
    );
    // A proof one level short; one item missing.
    let mut bad = items.clone();
    let short = bad[2].proof.len() - 2;
    bad[2].proof.truncate(short);
    assert!(matches!(
        core_proof(indices[2], &bad[2].proof)?.verify(
            &good.tree.leaf(indices[2])?,
            &root,
            20,
            total
        ),
        Err(BatchError::ProofLength { .. })
    ));
    assert_eq!(
        revert(c.reporter.reveal_receipts(host, root, &bad).await),
        "BadProof"
    );
    assert_eq!(
        revert(c.reporter.reveal_receipts(host, root, &items[1..]).await),
        "WrongSampleCount"
    );
    // Sample 1 signed by the stranger key under the attested key's id.
    let mut bad = items.clone();
    bad[1].receipt.host_signature =
        stranger.sign_prehash(&bad[1].receipt.receipt.signing_digest(&domain));
    assert_eq!(
        revert(c.reporter.reveal_receipts(host, root, &bad).await),
        "BadHostSignature"
    );

    // A whole batch signed by a key the operator never attested: its proofs are right, its key is unknown.
    let u_indices = c
        .sample(&unattested, unattested_commit.block_number)
        .await?;
    let u_items = unattested.reveals(&u_indices, &stranger, &domain)?;
    assert_eq!(
        revert(
            c.reporter
                .reveal_receipts(host, unattested.tree.root(), &u_items)
                .await
        ),
        "UnknownHostKey"
    );

    // A total one above the leaves' sum: every proof folds to the root, and its sum is not the total.
    let i_indices = c.sample(&inflated, inflated_commit.block_number).await?;
    let i_items = inflated.reveals(&i_indices, &key, &domain)?;
    assert_eq!(
        core_proof(i_indices[0], &i_items[0].proof)?.verify(
            &inflated.tree.leaf(i_indices[0])?,
            &inflated_root,
            20,
            inflated.tree.total() + 1
        ),
        Err(BatchError::TotalMismatch)
    );
    assert_eq!(
        revert(
            c.reporter
                .reveal_receipts(host, inflated_root, &i_items)
                .await
        ),
        "TotalMismatch"
    );

    // A sum past 2^128 - 1: sample 0 is leaf 1 (the big receipt), its sibling's sum 1 overflows.
    assert_eq!(
        c.host_op.sample_indices(host, overflow_root).await?.first(),
        Some(&1)
    );
    let overflow_proof = SumProof {
        index: 1,
        siblings: vec![small_leaf],
    };
    assert_eq!(
        overflow_proof.verify(&big_leaf, &overflow_root, 2, u128::MAX),
        Err(BatchError::SumOverflow)
    );
    let item = Reveal {
        receipt: big.clone(),
        proof: words(&overflow_proof),
    };
    assert_eq!(
        revert(
            c.reporter
                .reveal_receipts(host, overflow_root, &[item.clone(), item])
                .await
        ),
        "TotalMismatch"
    );
    assert_eq!(
        overflow_commit.block_number,
        inflated_commit.block_number + 1
    );

    // The untampered sample is accepted.
    c.reporter.reveal_receipts(host, root, &items).await?;
    assert_eq!(c.credits().await?, (total, 20, 1, 0));

    // After the reveal window: too late to reveal; the batch is forfeited, once.
    c.chain.mine(REVEAL_WINDOW)?;
    assert_eq!(
        revert(c.reporter.sample_indices(host, inflated_root).await),
        "RevealTooLate"
    );
    assert_eq!(
        revert(
            c.reporter
                .reveal_receipts(host, inflated_root, &i_items)
                .await
        ),
        "RevealTooLate"
    );
    let out = c.reporter.forfeit_batch(host, inflated_root).await?;
    match &out.events[..] {
        [SettlementEvent::BatchForfeited(e)] => {
            assert_eq!(
                (Address::from(e.host), B256::from(e.root)),
                (host, inflated_root)
            );
            assert_eq!((e.count, e.total), (20, inflated.tree.total() + 1));
        }
        other => panic!("forfeitBatch logged {other:?}"),
    }
    assert_eq!(
        c.host_op.batch(host, inflated_root).await?.status,
        BatchStatus::Forfeited
    );
    assert_eq!(
        revert(c.reporter.forfeit_batch(host, inflated_root).await),
        "BatchNotCommitted"
    );
    assert_eq!(
        revert(c.reporter.forfeit_batch(host, root).await),
        "BatchNotCommitted"
    );
    assert_eq!(
        revert(c.reporter.forfeit_batch(host, B256([0x77; 32])).await),
        "BatchUnknown"
    );
    assert_eq!(c.credits().await?, (total, 20, 1, 1));
    Ok(())
}
