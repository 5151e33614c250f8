//! The settlement task of `dait-host serve` (feature `settlement`, with `--chain-rpc`): what the host does on
//! the settlement contract while it serves.
//!
//! Every `--settle-interval` it
//! 1. **attests** the boot's keyset for the chain's current epoch when it has not yet (at start, after each
//!    epoch rotation): the bundle bound to the epoch nonce, `submitAttestation` with its hash, and that exact
//!    bundle served at `GET /v1/attestation?nonce=<epoch nonce>&epoch=<epoch>` (its signatures are randomised,
//!    so a fresh one would not match the recorded hash);
//! 2. **reads the contract's events** from where it stopped: `ChannelOpened` for this operator gives a channel's
//!    salt (what `claim` needs), `ChannelSettled` marks a channel closed (no more calls), and `CloseStarted`
//!    (a unilateral close) is answered at once with the best state the host holds, when it is above the
//!    chain's turn: `claimWithReceipt` with the tenant's latest signed state plus the logged receipt on top of
//!    it, else `claim` with the state alone; an open channel whose deadline is within `--claim-before` is claimed
//!    the same way (and again when a later state comes), so a tenant that never closes still pays;
//! 3. **commits receipt batches**: once `--batch-size` receipts of the log are in no batch, or the oldest of them
//!    has waited `--batch-age`, their Merkle sum tree's root is committed (`commitReceipts`);
//! 4. **reveals** each committed batch once its sample block exists: the contract's sample of leaves, each with
//!    its receipt and proof (`revealReceipts`), which credits the batch as useful work.
//!
//! What it must not forget survives a restart in `settlement.json` in the state directory, written whole and
//! synced before it is relied on: how many log records are batched, each batch (its leaves are records of the
//! log, so a batch is rebuilt from the log), the channels' salts, the event cursor and the tenants' latest signed
//! states. A batch is stored before its commit is sent; after a restart a batch the chain already holds is not
//! sent again. A failed step is logged and retried at the next tick; the calls are served regardless. The
//! tenants' states are taken into the store first, every round, so that a chain that does not answer does not
//! keep them from the disk; an attestation that fails (a release revoked, the operator out of gas) does not
//! keep the host from answering closes and committing its receipts.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use dait_chain_client::batch::{SumNode, SumTree};
use dait_chain_client::evm::{
    BatchStatus, ChannelStatus, OnchainChannelState, Reveal, Settlement, SettlementEvent,
};
use dait_chain_client::{
    Address, B256, Freshness, SignedChannelState, SignedReceipt, WireMessage as _,
};
use serde::{Deserialize, Serialize};

use super::{SettlementError, attest_epoch, chain};
use crate::http::App;
use crate::receipt_log::{ReceiptLog, ReceiptLogError, Record};

/// The store's file in the state directory.
pub const STORE_FILE: &str = "settlement.json";

/// The settlement task's settings (flags of `serve`).
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// The release (64 hex) the epoch attestations name; it must be published and unrevoked on the contract.
    #[arg(long, env = "DAIT_RELEASE_ID", value_name = "HEX")]
    pub release_id: Option<String>,
    /// Where tenants fetch the attested bundle; recorded on chain with each attestation.
    #[arg(long, env = "DAIT_BUNDLE_URI", default_value = "")]
    pub bundle_uri: String,
    /// Seconds between the settlement task's rounds.
    #[arg(long, env = "DAIT_SETTLE_INTERVAL", default_value_t = 5.0)]
    pub settle_interval: f64,
    /// Receipts per committed batch (a batch is committed once this many wait).
    #[arg(long, env = "DAIT_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: u32,
    /// Seconds the oldest unbatched receipt may wait before a smaller batch is committed.
    #[arg(long, env = "DAIT_BATCH_AGE", default_value_t = 3600)]
    pub batch_age: u64,
    /// Seconds before an open channel's deadline at which it is claimed with the best state held.
    #[arg(long, env = "DAIT_CLAIM_BEFORE", default_value_t = 86_400)]
    pub claim_before: u64,
}

/// A batch as the store keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct StoredBatch {
    /// Merkle sum root (0x hex).
    root: String,
    /// Index of its first record in the receipt log.
    first: u64,
    /// Number of receipts.
    count: u32,
    /// Sum of their amounts (decimal).
    total: String,
    /// The commit's block, once mined.
    commit_block: Option<u64>,
    /// `pending` (stored, commit not confirmed), `committed`, `revealed`, `forfeited`.
    status: String,
}

/// A channel of this operator, from its `ChannelOpened` event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct StoredChannel {
    /// The salt (0x hex).
    salt: String,
    /// The tenant (0x hex).
    tenant: String,
    /// Settled on chain.
    settled: bool,
    /// The channel's deadline (unix seconds).
    #[serde(default)]
    deadline: u64,
}

/// What survives a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Store {
    /// The first `batched` records of the receipt log are in a batch.
    batched: u64,
    batches: Vec<StoredBatch>,
    /// Channel id (0x hex) → channel.
    channels: BTreeMap<String, StoredChannel>,
    /// The next block whose events are read.
    next_block: u64,
    /// Channel id (0x hex) → the tenant's latest signed state (base64url protobuf).
    states: BTreeMap<String, String>,
}

impl Store {
    fn load(path: &Path) -> Result<Self, SettlementError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|_| SettlementError::Store("malformed"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(_) => Err(SettlementError::Store("unreadable")),
        }
    }

    /// Writes the whole store to a temporary file, syncs it, renames it over the store and syncs the directory.
    fn save(&self, path: &Path) -> Result<(), SettlementError> {
        let tmp = path.with_extension("json.tmp");
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|_| SettlementError::Store("encode"))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|_| SettlementError::Store("write"))
    }

    /// The held state of `channel`, decoded.
    fn state(&self, channel: &B256) -> Option<SignedChannelState> {
        self.states
            .get(&channel.to_string())
            .and_then(|t| SignedChannelState::from_header_value(t).ok())
    }
}

/// The task's fixed inputs.
#[derive(Debug, Clone)]
pub struct Service {
    release_id: B256,
    bundle_uri: String,
    interval: Duration,
    batch_size: u32,
    batch_age: Duration,
    claim_before: Duration,
    store_path: PathBuf,
}

impl Service {
    /// Checks the flags; `state_dir` holds the store.
    pub fn new(args: &ServiceArgs, state_dir: &Path) -> Result<Self, SettlementError> {
        let release_id =
            args.release_id
                .as_deref()
                .and_then(B256::from_hex)
                .ok_or(SettlementError::Usage(
                    "--release-id (64 hex) is needed with --chain-rpc",
                ))?;
        if !(args.settle_interval > 0.0 && args.settle_interval <= 3600.0) {
            return Err(SettlementError::Usage("--settle-interval (0 < s <= 3600)"));
        }
        if args.batch_size == 0 {
            return Err(SettlementError::Usage("--batch-size (at least 1)"));
        }
        Ok(Self {
            release_id,
            bundle_uri: args.bundle_uri.clone(),
            interval: Duration::from_secs_f64(args.settle_interval),
            batch_size: args.batch_size,
            batch_age: Duration::from_secs(args.batch_age),
            claim_before: Duration::from_secs(args.claim_before),
            store_path: state_dir.join(STORE_FILE),
        })
    }
}

/// The running task's memory (beyond the store).
#[derive(Debug)]
struct Round {
    store: Store,
    /// The epoch whose attestation this boot submitted.
    attested: Option<u64>,
    /// When the oldest unbatched record was first seen.
    waiting_since: Option<Instant>,
    /// The held turn each channel near its deadline was last claimed at, this boot.
    claimed_turn: BTreeMap<B256, u64>,
}

/// Runs the settlement task until the process ends. Fails at once only when the store cannot be read (a
/// malformed store is never overwritten).
pub async fn run(
    app: Arc<App>,
    settlement: Settlement,
    service: Service,
) -> Result<(), SettlementError> {
    let store = Store::load(&service.store_path)?;
    let mut round = Round {
        store,
        attested: None,
        waiting_since: None,
        claimed_turn: BTreeMap::new(),
    };
    let mut tick = tokio::time::interval(service.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What the file holds: a round whose write failed is written again by the next, changed or not.
    let mut saved = round.store.clone();
    loop {
        tick.tick().await;
        if let Err(e) = step(&app, &settlement, &service, &mut round).await {
            tracing::warn!(error = %format!("{:#}", anyhow::Error::new(e)), "settlement round failed; retrying next round");
        }
        if round.store != saved {
            match round.store.save(&service.store_path) {
                Ok(()) => saved = round.store.clone(),
                Err(e) => {
                    tracing::error!(error = %e, "settlement store not written; retrying next round")
                }
            }
        }
    }
}

/// One round: the tenants' states, the attestation, events, claims, batches.
async fn step(
    app: &Arc<App>,
    s: &Settlement,
    service: &Service,
    round: &mut Round,
) -> Result<(), SettlementError> {
    keep_states(app, round);
    if let Err(e) = attest(app, s, service, round).await {
        tracing::warn!(error = %format!("{:#}", anyhow::Error::new(e)), "epoch attestation failed; retrying next round");
    }
    events(app, s, round).await?;
    claim_near_deadline(app, s, service, round).await?;
    commit(app, s, service, round).await?;
    reveal(app, s, round).await
}

/// The tenants' latest signed states, kept for claims.
fn keep_states(app: &App, round: &mut Round) {
    for signed in app.channels.tenant_states() {
        let key = signed.state.channel_id.to_string();
        let higher = round
            .store
            .state(&signed.state.channel_id)
            .is_none_or(|held| held.state.turn < signed.state.turn);
        if higher {
            round.store.states.insert(key, signed.to_header_value());
        }
    }
}

async fn attest(
    app: &Arc<App>,
    s: &Settlement,
    service: &Service,
    round: &mut Round,
) -> Result<(), SettlementError> {
    let epoch = s.current_epoch().await.map_err(chain("currentEpoch"))?;
    if round.attested == Some(epoch) {
        return Ok(());
    }
    let a = attest_epoch(app, s, service.release_id, &service.bundle_uri).await?;
    app.evidence.pin(
        Freshness::ChainEpoch {
            epoch: a.epoch,
            nonce: a.nonce.0,
        },
        Bytes::from(a.bundle),
    );
    round.attested = Some(a.epoch);
    tracing::info!(epoch = a.epoch, bundle_hash = %a.bundle_hash, tx = %a.outcome.tx_hash, "keyset attested for the epoch");
    Ok(())
}

async fn events(app: &Arc<App>, s: &Settlement, round: &mut Round) -> Result<(), SettlementError> {
    let latest = s.block_number().await.map_err(chain("blockNumber"))?;
    if round.store.next_block == 0 {
        // A new store reads events from the current block on: a channel opened before the agent first ran
        // with this store is learned from its calls' states when its salt is needed (see `answer_close`).
        round.store.next_block = latest;
    }
    if latest < round.store.next_block {
        return Ok(());
    }
    let logged = s
        .events(round.store.next_block, Some(latest))
        .await
        .map_err(chain("events"))?;
    let host = app.keys.host_account;
    let mut closes = Vec::new();
    for e in logged {
        match e.event {
            SettlementEvent::ChannelOpened(o) if Address::from(o.host) == host => {
                round.store.channels.insert(
                    B256::from(o.channelId).to_string(),
                    StoredChannel {
                        salt: B256::from(o.salt).to_string(),
                        tenant: Address::from(o.tenant).to_string(),
                        settled: false,
                        deadline: o.deadline.to(),
                    },
                );
            }
            SettlementEvent::CloseStarted(c) => {
                let id = B256::from(c.channelId);
                if round.store.channels.contains_key(&id.to_string()) {
                    app.channels.mark_closed(id);
                    closes.push(id);
                }
            }
            SettlementEvent::ChannelSettled(c) => {
                let id = B256::from(c.channelId);
                if let Some(ch) = round.store.channels.get_mut(&id.to_string()) {
                    ch.settled = true;
                    app.channels.mark_closed(id);
                }
            }
            _ => {}
        }
    }
    for id in closes {
        if !claim_best(app, s, round, id).await? {
            tracing::info!(channel = %id, "unilateral close at the host's latest state; nothing to answer");
        }
    }
    round.store.next_block = latest.saturating_add(1);
    Ok(())
}

/// Claims channel `id` with the best state held when it is above the chain's turn: `claimWithReceipt` with the
/// tenant's latest signed state plus the logged receipt on top of it, else `claim` with the state alone. The turn
/// is read from the chain, not from an event, so a round retried after a failure never sends a claim that already
/// landed. Returns whether a claim was sent.
async fn claim_best(
    app: &Arc<App>,
    s: &Settlement,
    round: &Round,
    id: B256,
) -> Result<bool, SettlementError> {
    let info = s.channel(id).await.map_err(chain("channels"))?;
    if !matches!(info.status, ChannelStatus::Open | ChannelStatus::Closing) {
        return Ok(false);
    }
    let chain_turn = info.turn;
    let (Some(channel), Some(state)) = (
        round.store.channels.get(&id.to_string()),
        round.store.state(&id),
    ) else {
        tracing::warn!(channel = %id, "no signed state of the channel held; nothing to claim");
        return Ok(false);
    };
    let salt = B256::from_hex(&channel.salt).ok_or(SettlementError::Store("salt"))?;
    let tenant_signature = state.tenant_signature;
    let onchain = OnchainChannelState::from(&state.state);
    // The receipt on top of the held state, if the log has it, pays the last call too.
    let next = state.state.turn.saturating_add(1);
    let on_top = logged_receipt(app, &id, next).await;
    let outcome = match on_top {
        Some(r) if next > chain_turn => s
            .claim_with_receipt(salt, &onchain, &tenant_signature, &r)
            .await
            .map_err(chain("claimWithReceipt"))?,
        _ if state.state.turn > chain_turn => s
            .claim(salt, &onchain, &tenant_signature)
            .await
            .map_err(chain("claim"))?,
        _ => return Ok(false),
    };
    tracing::info!(channel = %id, status = ?info.status, chain_turn, held_turn = state.state.turn, tx = %outcome.tx_hash, "channel claimed");
    Ok(true)
}

/// Open channels whose deadline is within `--claim-before`: claimed with the best state held, and again whenever a
/// later state comes (calls go on until the deadline), so a tenant that never closes still pays for what it
/// acknowledged.
async fn claim_near_deadline(
    app: &Arc<App>,
    s: &Settlement,
    service: &Service,
    round: &mut Round,
) -> Result<(), SettlementError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let due: Vec<(B256, u64)> = round
        .store
        .channels
        .iter()
        .filter(|(_, c)| {
            !c.settled && c.deadline <= now.saturating_add(service.claim_before.as_secs())
        })
        .filter_map(|(id, _)| {
            let id = B256::from_hex(id)?;
            let held = round.store.state(&id)?.state.turn;
            (round.claimed_turn.get(&id).is_none_or(|t| *t < held)).then_some((id, held))
        })
        .collect();
    for (id, held) in due {
        claim_best(app, s, round, id).await?;
        round.claimed_turn.insert(id, held);
    }
    Ok(())
}

/// The logged receipt `call_seq` of `channel`, if the log holds it.
async fn logged_receipt(app: &Arc<App>, channel: &B256, call_seq: u64) -> Option<SignedReceipt> {
    let log = app.receipt_log.clone()?;
    let channel = channel.0;
    let record = tokio::task::spawn_blocking(move || log.get(&channel, call_seq))
        .await
        .ok()?
        .ok()??;
    SignedReceipt::decode(&record.signed_receipt).ok()
}

/// How many receipts the log holds.
fn logged(app: &App) -> u64 {
    app.receipt_log.as_ref().map_or(0, ReceiptLog::record_count)
}

/// Records `first..first+count` of the receipt log.
async fn records(app: &Arc<App>, first: u64, count: u32) -> Result<Vec<Record>, SettlementError> {
    let Some(log) = app.receipt_log.clone() else {
        return Err(SettlementError::Store("batch past the receipt log"));
    };
    tokio::task::spawn_blocking(move || log.range(first, u64::from(count)))
        .await
        .map_err(|_| SettlementError::Store("receipt log read"))?
        .map_err(|e| match e {
            ReceiptLogError::OutOfRange { .. } => {
                SettlementError::Store("batch past the receipt log")
            }
            _ => SettlementError::Store("receipt log unreadable"),
        })
}

/// The sum tree over records `first..first+count` of the log.
async fn tree(
    app: &Arc<App>,
    first: u64,
    count: u32,
) -> Result<(SumTree, Vec<SignedReceipt>), SettlementError> {
    let receipts = records(app, first, count)
        .await?
        .iter()
        .map(|r| SignedReceipt::decode(&r.signed_receipt))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| SettlementError::Store("undecodable logged receipt"))?;
    let leaves: Vec<SumNode> = receipts
        .iter()
        .map(|r| SumNode::of_receipt(&r.receipt, &app.keys.domain))
        .collect();
    let tree = SumTree::build(&leaves).map_err(|_| SettlementError::Store("batch tree"))?;
    Ok((tree, receipts))
}

async fn commit(
    app: &Arc<App>,
    s: &Settlement,
    service: &Service,
    round: &mut Round,
) -> Result<(), SettlementError> {
    // A batch stored before a crash whose commit is not confirmed: the chain says whether it landed.
    for b in round
        .store
        .batches
        .iter_mut()
        .filter(|b| b.status == "pending")
    {
        let root = B256::from_hex(&b.root).ok_or(SettlementError::Store("root"))?;
        let info = s
            .batch(app.keys.host_account, root)
            .await
            .map_err(chain("batch"))?;
        if info.status == BatchStatus::None {
            let total: u128 = b
                .total
                .parse()
                .map_err(|_| SettlementError::Store("total"))?;
            let out = s
                .commit_receipts(root, b.count, total)
                .await
                .map_err(chain("commitReceipts"))?;
            b.commit_block = Some(out.block_number);
            tracing::info!(root = %root, count = b.count, tx = %out.tx_hash, "receipt batch committed");
        } else {
            b.commit_block = Some(info.commit_block);
        }
        b.status = "committed".into();
    }
    let waiting = logged(app).saturating_sub(round.store.batched);
    if waiting == 0 {
        round.waiting_since = None;
        return Ok(());
    }
    let since = *round.waiting_since.get_or_insert_with(Instant::now);
    if waiting < u64::from(service.batch_size) && since.elapsed() < service.batch_age {
        return Ok(());
    }
    let count =
        u32::try_from(waiting.min(u64::from(service.batch_size))).unwrap_or(service.batch_size);
    let first = round.store.batched;
    let (tree, _) = tree(app, first, count).await?;
    let (root, total) = (tree.root(), tree.total());
    // Stored (and synced) before it is sent, so a crash in between neither loses nor doubles it.
    round.store.batches.push(StoredBatch {
        root: root.to_string(),
        first,
        count,
        total: total.to_string(),
        commit_block: None,
        status: "pending".into(),
    });
    round.store.batched = first + u64::from(count);
    round.waiting_since = None;
    round.store.save(&service.store_path)?;
    let out = s
        .commit_receipts(root, count, total)
        .await
        .map_err(chain("commitReceipts"))?;
    if let Some(b) = round.store.batches.last_mut() {
        b.commit_block = Some(out.block_number);
        b.status = "committed".into();
    }
    tracing::info!(root = %root, count, total, tx = %out.tx_hash, "receipt batch committed");
    Ok(())
}

async fn reveal(app: &Arc<App>, s: &Settlement, round: &mut Round) -> Result<(), SettlementError> {
    if !round.store.batches.iter().any(|b| b.status == "committed") {
        return Ok(());
    }
    let host = app.keys.host_account;
    for b in round
        .store
        .batches
        .iter_mut()
        .filter(|b| b.status == "committed")
    {
        let root = B256::from_hex(&b.root).ok_or(SettlementError::Store("root"))?;
        let info = s.batch(host, root).await.map_err(chain("batch"))?;
        match info.status {
            BatchStatus::Revealed => {
                b.status = "revealed".into();
                continue;
            }
            BatchStatus::Forfeited => {
                b.status = "forfeited".into();
                continue;
            }
            _ => {}
        }
        let indices = match s.sample_indices(host, root).await {
            Ok(i) => i,
            // The sample block is not mined yet.
            Err(e) if e.revert_name() == Some("RevealTooEarly") => continue,
            Err(e) => return Err(chain("sampleIndices")(e)),
        };
        let (tree, receipts) = tree(app, b.first, b.count).await?;
        if tree.root() != root {
            return Err(SettlementError::Store(
                "batch no longer matches the receipt log",
            ));
        }
        let reveals = indices
            .iter()
            .map(|i| {
                let i = u32::try_from(*i).map_err(|_| SettlementError::Store("sample index"))?;
                let proof = tree.proof(i).map_err(|_| SettlementError::Store("proof"))?;
                Ok(Reveal {
                    receipt: receipts[i as usize].clone(),
                    proof: proof.to_words().into_iter().map(B256).collect(),
                })
            })
            .collect::<Result<Vec<_>, SettlementError>>()?;
        match s.reveal_receipts(host, root, &reveals).await {
            Ok(out) => {
                b.status = "revealed".into();
                tracing::info!(root = %root, samples = reveals.len(), tx = %out.tx_hash, "receipt batch revealed");
            }
            Err(e) if e.revert_name() == Some("RevealTooLate") => {
                b.status = "forfeited".into();
                tracing::warn!(root = %root, "receipt batch missed its reveal window");
            }
            Err(e) => return Err(chain("revealReceipts")(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn store() -> Store {
        let mut s = Store {
            batched: 4,
            next_block: 17,
            ..Store::default()
        };
        s.batches.push(StoredBatch {
            root: B256([7; 32]).to_string(),
            first: 0,
            count: 4,
            total: "340282366920938463463374607431768211455".into(),
            commit_block: Some(12),
            status: "committed".into(),
        });
        s.channels.insert(
            B256([1; 32]).to_string(),
            StoredChannel {
                salt: B256([2; 32]).to_string(),
                tenant: Address([3; 20]).to_string(),
                settled: false,
                deadline: 1_900_000_000,
            },
        );
        s
    }

    #[test]
    fn the_store_round_trips_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        assert_eq!(Store::load(&path).unwrap(), Store::default());
        let s = store();
        s.save(&path).unwrap();
        assert_eq!(Store::load(&path).unwrap(), s);
        assert!(!path.with_extension("json.tmp").exists());
        // A total of 2^128 - 1 is kept exactly (decimal, not a JSON number).
        assert_eq!(
            Store::load(&path).unwrap().batches[0].total,
            u128::MAX.to_string()
        );
    }

    #[test]
    fn a_damaged_store_is_an_error_and_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        let mut bytes = serde_json::to_vec(&store()).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            Store::load(&path),
            Err(SettlementError::Store("malformed"))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn service_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let args = |release: Option<&str>, interval: f64, batch: u32| ServiceArgs {
            release_id: release.map(str::to_owned),
            bundle_uri: String::new(),
            settle_interval: interval,
            batch_size: batch,
            batch_age: 60,
            claim_before: 3600,
        };
        let good = "11".repeat(32);
        assert!(Service::new(&args(Some(&good), 5.0, 10), dir.path()).is_ok());
        for (bad, what) in [
            (args(None, 5.0, 10), "--release-id"),
            (args(Some("11"), 5.0, 10), "--release-id"),
            (args(Some(&good), 0.0, 10), "--settle-interval"),
            (args(Some(&good), f64::NAN, 10), "--settle-interval"),
            (args(Some(&good), 5.0, 0), "--batch-size"),
        ] {
            match Service::new(&bad, dir.path()) {
                Err(SettlementError::Usage(u)) => assert!(u.starts_with(what), "{u}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }
}
