//! Channels and receipts: the per-channel head (last call_seq, cumulative, last receipt hash),
//! the check of each incoming channel state, and the signing and logging of each receipt.
//!
//! At most one call per channel is in flight: the tenant signs the next state only after it has
//! checked the previous receipt, so a second call with the same turn is answered `stale_state`.
//!
//! Across restarts a channel keeps its sequence: the head is restored from the receipt log. A channel
//! belongs to the host's operator account (`ChannelState::host`, the keyset's `host_account`), not to
//! one boot's key, so its states are still accepted after a restart; new receipts are signed by (and
//! name) the current boot's receipt key, which the tenant re-attests (PROTOCOL.md §4). A final state
//! (`is_final`, a cooperative close) is never served.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use dait_chain_client::{
    Address, B256, ChannelHead, Domain, HostSigningKey, Receipt, SignedChannelState, SignedReceipt,
    amount,
};

use crate::http::error::CallError;
use crate::receipt_log::{ReceiptLog, RecordHeader, Replay};
use dait_chain_client::WireMessage as _;

/// The default bound on the channels held live (see [`Channels::with_bound`]).
pub const DEFAULT_MAX_CHANNELS: usize = 100_000;

#[derive(Debug)]
struct Slot {
    head: ChannelHead,
    tenant: Option<Address>,
    busy: bool,
    /// The tick of its last use (its key in `Inner::order`).
    used: u64,
}

/// A channel evicted from the live map: its last receipt's fields, all it needs to continue (its
/// host is this agent's operator account).
#[derive(Debug, Clone, Copy)]
struct Evicted {
    last_call_seq: u64,
    last_receipt_hash: B256,
    cumulative: u128,
    tenant: Address,
}

#[derive(Debug, Default)]
struct Inner {
    /// Live channels, at most `max` of them unless more have a call in flight.
    live: HashMap<B256, Slot>,
    /// Live channels by last use, oldest first.
    order: BTreeMap<u64, B256>,
    /// Channels with a receipt that are not live: the heads replayed at start and those evicted.
    evicted: HashMap<B256, Evicted>,
    /// The highest-turn tenant-signed state each channel's calls were served on: what the host claims with.
    states: HashMap<B256, SignedChannelState>,
    /// Channels closing or closed (a final state was counter-signed, or the chain settled them): no more calls.
    closed: HashSet<B256>,
    tick: u64,
    max: usize,
}

impl Inner {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Mark `channel_id` (live) as just used.
    fn touch(&mut self, channel_id: B256) {
        let tick = self.next_tick();
        if let Some(slot) = self.live.get_mut(&channel_id) {
            self.order.remove(&slot.used);
            slot.used = tick;
            self.order.insert(tick, channel_id);
        }
    }

    fn remove_live(&mut self, channel_id: &B256) {
        if let Some(slot) = self.live.remove(channel_id) {
            self.order.remove(&slot.used);
        }
    }

    /// Evict least recently used channels without a call in flight until at most `max` are live.
    /// A channel with a receipt keeps its head in `evicted`; one without (never committed) is
    /// simply dropped, as it is indistinguishable from a new channel.
    fn evict(&mut self) {
        while self.live.len() > self.max {
            let Some(victim) = self
                .order
                .values()
                .copied()
                .find(|id| self.live.get(id).is_some_and(|s| !s.busy))
            else {
                // Every live channel has a call in flight: over the bound until one finishes.
                return;
            };
            let Some(slot) = self.live.remove(&victim) else {
                return;
            };
            self.order.remove(&slot.used);
            if let Some(tenant) = slot.tenant {
                self.evicted.insert(
                    victim,
                    Evicted {
                        last_call_seq: slot.head.last_call_seq,
                        last_receipt_hash: slot.head.last_receipt_hash,
                        cumulative: slot.head.cumulative,
                        tenant,
                    },
                );
            }
        }
    }
}

/// All channels this agent serves.
///
/// At most a bound of them are *live* (their full state, their in-flight flag and their place in
/// the least-recently-used order). Past the bound the least recently used channel with no call in
/// flight is evicted: its last receipt's fields (the same fields the receipt log's replay restores
/// at start) move to a compact index, and the channel becomes live again, with the same head, on its
/// next call. A channel is never evicted while it has a call in flight, so its sequence is never
/// lost or forked.
#[derive(Debug)]
pub struct Channels {
    inner: Mutex<Inner>,
}

impl Default for Channels {
    fn default() -> Self {
        Self::with_bound(DEFAULT_MAX_CHANNELS)
    }
}

impl Channels {
    /// An empty map holding at most `max_channels` (at least 1) channels live.
    pub fn with_bound(max_channels: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                max: max_channels.max(1),
                ..Inner::default()
            }),
        }
    }

    /// Restore heads from a replayed log; each becomes live on its first call.
    pub fn from_replay(replay: &Replay, max_channels: usize) -> Self {
        let evicted = replay
            .heads
            .values()
            .map(|h| {
                (
                    B256(h.channel_id),
                    Evicted {
                        last_call_seq: h.call_seq,
                        last_receipt_hash: B256(h.receipt_hash),
                        cumulative: h.cumulative,
                        tenant: Address(h.tenant),
                    },
                )
            })
            .collect();
        Self {
            inner: Mutex::new(Inner {
                evicted,
                max: max_channels.max(1),
                ..Inner::default()
            }),
        }
    }

    /// Number of channels held (live and evicted).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .map_or(0, |s| s.live.len() + s.evicted.len())
    }

    /// Number of channels held live.
    pub fn live(&self) -> usize {
        self.inner.lock().map_or(0, |s| s.live.len())
    }

    /// Whether no channel is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The head of a channel, if known, for this agent's operator account `host`.
    pub fn head(&self, channel_id: &B256, host: Address) -> Option<ChannelHead> {
        let inner = self.inner.lock().ok()?;
        if let Some(s) = inner.live.get(channel_id) {
            return Some(s.head);
        }
        inner.evicted.get(channel_id).map(|e| ChannelHead {
            channel_id: *channel_id,
            host,
            last_call_seq: e.last_call_seq,
            last_receipt_hash: e.last_receipt_hash,
            cumulative: e.cumulative,
        })
    }

    /// The latest tenant-signed state of every channel that had a call (the highest turn accepted for a call).
    pub fn tenant_states(&self) -> Vec<SignedChannelState> {
        self.inner
            .lock()
            .map(|s| s.states.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Mark a channel closing or closed: every later call on it is refused as `channel_final`.
    pub fn mark_closed(&self, channel_id: B256) {
        if let Ok(mut s) = self.inner.lock() {
            s.closed.insert(channel_id);
        }
    }

    /// Whether the channel was marked with [`Channels::mark_closed`].
    pub fn is_closed(&self, channel_id: &B256) -> bool {
        self.inner
            .lock()
            .is_ok_and(|s| s.closed.contains(channel_id))
    }

    /// Check `signed` for a call whose worst-case cost is `worst_case`, and reserve the channel.
    /// `host` is this agent's operator account: the state must name it.
    pub fn begin(
        self: &Arc<Self>,
        signed: &SignedChannelState,
        domain: &Domain,
        host: Address,
        worst_case: u128,
    ) -> Result<Lease, CallError> {
        let channel_id = signed.state.channel_id;
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| CallError::Internal("channel lock"))?;
        let inner = &mut *guard;
        if inner.closed.contains(&channel_id) {
            return Err(CallError::State(dait_chain_client::StateError::Final));
        }
        if !inner.live.contains_key(&channel_id) {
            let slot = match inner.evicted.remove(&channel_id) {
                Some(e) => Slot {
                    head: ChannelHead {
                        channel_id,
                        host,
                        last_call_seq: e.last_call_seq,
                        last_receipt_hash: e.last_receipt_hash,
                        cumulative: e.cumulative,
                    },
                    tenant: Some(e.tenant),
                    busy: false,
                    used: 0,
                },
                None => Slot {
                    head: ChannelHead::open(channel_id, host),
                    tenant: None,
                    busy: false,
                    used: 0,
                },
            };
            inner.live.insert(channel_id, slot);
        }
        inner.touch(channel_id);
        let Some(slot) = inner.live.get_mut(&channel_id) else {
            return Err(CallError::Internal("channel slot"));
        };
        if slot.busy {
            return Err(CallError::Busy);
        }
        let result = slot.head.check_state(signed, domain, worst_case);
        let accepted = match result {
            Ok(a) => a,
            Err(e) => {
                if slot.tenant.is_none() && slot.head.last_call_seq == 0 {
                    inner.remove_live(&channel_id);
                }
                inner.evict();
                return Err(CallError::State(e));
            }
        };
        if slot.tenant.is_some_and(|t| t != accepted.tenant) {
            inner.evict();
            return Err(CallError::WrongTenant);
        }
        slot.busy = true;
        let head = slot.head;
        match inner.states.get(&channel_id) {
            Some(held) if held.state.turn >= signed.state.turn => {}
            _ => {
                inner.states.insert(channel_id, signed.clone());
            }
        }
        let lease = Lease {
            channels: Arc::clone(self),
            head,
            tenant: accepted.tenant,
            escrow_cap: accepted.escrow_cap,
            done: false,
        };
        inner.evict();
        Ok(lease)
    }
}

/// A reserved channel for one call. Dropping it without [`Lease::commit`] releases the channel
/// unchanged (no receipt, no call_seq used).
#[derive(Debug)]
pub struct Lease {
    channels: Arc<Channels>,
    head: ChannelHead,
    tenant: Address,
    escrow_cap: u128,
    done: bool,
}

/// What the agent measured about one call.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts {
    /// `H256("dait/v1/request" || body)`.
    pub request_hash: B256,
    /// Normalised response hash.
    pub response_hash: B256,
    /// Request ciphertext hash.
    pub request_ct_hash: B256,
    /// Response ciphertext hash (see `docs/AGENT.md`).
    pub response_ct_hash: B256,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Unix seconds.
    pub timestamp: u64,
    /// The seed sent to the engine when the call was replayable (the receipt then says
    /// `deterministic = true` and this `seed`); `None` for every other call (`false`, seed 0).
    pub replay_seed: Option<u64>,
}

/// Fixed receipt fields of this agent.
#[derive(Debug, Clone)]
pub struct ReceiptParams {
    /// Current host key id.
    pub host_key_id: B256,
    /// Current keyset hash.
    pub keyset_hash: B256,
    /// Model id.
    pub model_id: String,
    /// Weight hash.
    pub weight_hash: B256,
    /// Price per prompt token.
    pub price_in: u128,
    /// Price per completion token.
    pub price_out: u128,
    /// Engine build hash.
    pub engine_build: B256,
}

impl Lease {
    /// The channel head at reservation.
    pub fn head(&self) -> &ChannelHead {
        &self.head
    }

    /// Build, sign and durably log the receipt for this call, then advance the channel.
    pub async fn commit(
        self,
        facts: &CallFacts,
        params: &ReceiptParams,
        key: &HostSigningKey,
        domain: &Domain,
        log: &ReceiptLog,
    ) -> Result<SignedReceipt, CallError> {
        let amount = amount(
            facts.tokens_in,
            params.price_in,
            facts.tokens_out,
            params.price_out,
        )
        .ok_or(CallError::OverEscrowCap)?;
        let cumulative = self
            .head
            .cumulative
            .checked_add(amount)
            .filter(|c| *c <= self.escrow_cap)
            .ok_or(CallError::OverEscrowCap)?;
        let call_seq = self
            .head
            .last_call_seq
            .checked_add(1)
            .ok_or(CallError::Internal("call_seq overflow"))?;
        let receipt = Receipt {
            version: dait_chain_client::PROTOCOL_VERSION,
            channel_id: self.head.channel_id,
            call_seq,
            host_key_id: params.host_key_id,
            keyset_hash: params.keyset_hash,
            model_id: params.model_id.clone(),
            weight_hash: params.weight_hash,
            request_hash: facts.request_hash,
            response_hash: facts.response_hash,
            request_ct_hash: facts.request_ct_hash,
            response_ct_hash: facts.response_ct_hash,
            tokens_in: facts.tokens_in,
            tokens_out: facts.tokens_out,
            price_in: params.price_in,
            price_out: params.price_out,
            amount,
            cumulative,
            prev_receipt_hash: self.head.last_receipt_hash,
            timestamp: facts.timestamp,
            seed: facts.replay_seed.unwrap_or(0),
            engine_build: params.engine_build,
            deterministic: facts.replay_seed.is_some(),
        };
        let receipt_hash = receipt.signing_digest(domain);
        let signed = key.sign_receipt(receipt, domain);
        let header = RecordHeader {
            channel_id: self.head.channel_id.0,
            call_seq,
            cumulative,
            receipt_hash: receipt_hash.0,
            host_key_id: params.host_key_id.0,
            tenant: self.tenant.0,
        };
        let bytes = signed.encode();
        let log = log.clone();
        // Logging and advancing the head run in their own task: if the caller's future is dropped
        // (the tenant hung up), a receipt that reached the log still advances the channel.
        let task =
            tokio::spawn(async move { self.finish(header, bytes, receipt_hash, &log).await });
        task.await
            .map_err(|_| CallError::Internal("receipt commit task"))??;
        Ok(signed)
    }

    async fn finish(
        mut self,
        header: RecordHeader,
        bytes: Vec<u8>,
        receipt_hash: B256,
        log: &ReceiptLog,
    ) -> Result<(), CallError> {
        log.append(&header, &bytes).await.map_err(|e| {
            tracing::error!(error = %e, "receipt log append failed");
            CallError::from(e)
        })?;
        let mut inner = self
            .channels
            .inner
            .lock()
            .map_err(|_| CallError::Internal("channel lock"))?;
        // INVARIANT: a channel with a call in flight is never evicted, so its slot is live.
        if let Some(slot) = inner.live.get_mut(&self.head.channel_id) {
            slot.head = ChannelHead {
                channel_id: self.head.channel_id,
                host: self.head.host,
                last_call_seq: header.call_seq,
                last_receipt_hash: receipt_hash,
                cumulative: header.cumulative,
            };
            slot.tenant = Some(self.tenant);
            slot.busy = false;
        }
        inner.evict();
        drop(inner);
        self.done = true;
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Ok(mut inner) = self.channels.inner.lock() {
            let remove = match inner.live.get_mut(&self.head.channel_id) {
                Some(slot) => {
                    slot.busy = false;
                    slot.tenant.is_none() && slot.head.last_call_seq == 0
                }
                None => false,
            };
            if remove {
                inner.remove_live(&self.head.channel_id);
            }
            inner.evict();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use dait_chain_client::{ChannelState, SignedChannelState, StateError, TenantSigner};

    fn setup() -> (Arc<Channels>, SignedChannelState, Domain, Address) {
        let domain = Domain {
            chain_id: 1,
            settlement: Address([1; 20]),
        };
        let host = Address([2; 20]);
        let tenant = TenantSigner::generate(&mut rand::rngs::OsRng);
        let state = ChannelState::open(B256([3; 32]), 1000, tenant.address(), host);
        let signed = SignedChannelState {
            tenant_signature: tenant.sign_state(&state, &domain),
            state,
            host_signature: None,
        };
        (Arc::new(Channels::default()), signed, domain, host)
    }

    /// A new channel `id` of a fresh tenant, signed.
    fn channel(id: u8, domain: &Domain, host: Address) -> SignedChannelState {
        let tenant = TenantSigner::generate(&mut rand::rngs::OsRng);
        let state = ChannelState::open(B256([id; 32]), 1000, tenant.address(), host);
        SignedChannelState {
            tenant_signature: tenant.sign_state(&state, domain),
            state,
            host_signature: None,
        }
    }

    #[tokio::test]
    async fn a_channel_with_a_call_in_flight_is_never_evicted() {
        let (_, a, domain, host) = setup();
        let ch = Arc::new(Channels::with_bound(1));
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = ReceiptLog::open(dir.path()).unwrap();
        let key = HostSigningKey::generate(&mut rand::rngs::OsRng);
        let lease_a = ch.begin(&a, &domain, host, 10).unwrap();
        // Over the bound, but the only other channel has a call in flight: both stay live.
        let b = channel(9, &domain, host);
        let lease_b = ch.begin(&b, &domain, host, 10).unwrap();
        assert_eq!(ch.live(), 2);
        drop(lease_b);
        assert_eq!(ch.live(), 1);
        let (params, facts) = call(host, 1, 1, 1);
        lease_a
            .commit(&facts, &params, &key, &domain, &log)
            .await
            .unwrap();
        // A new channel evicts the idle one; its head is kept.
        let c = channel(10, &domain, host);
        let _lease_c = ch.begin(&c, &domain, host, 10).unwrap();
        assert_eq!(ch.live(), 1);
        assert_eq!(ch.len(), 2);
        let head = ch.head(&a.state.channel_id, host).unwrap();
        assert_eq!((head.last_call_seq, head.cumulative), (1, 2));
    }

    /// Receipt parameters at `price_out` and the facts of a call with `tokens_in` and `tokens_out`.
    fn call(
        _host: Address,
        price_out: u128,
        tokens_in: u64,
        tokens_out: u64,
    ) -> (ReceiptParams, CallFacts) {
        let params = ReceiptParams {
            host_key_id: B256([2; 32]),
            keyset_hash: B256([4; 32]),
            model_id: "m".into(),
            weight_hash: B256::ZERO,
            price_in: 1,
            price_out,
            engine_build: B256::ZERO,
        };
        let facts = CallFacts {
            request_hash: B256([5; 32]),
            response_hash: B256([6; 32]),
            request_ct_hash: B256([7; 32]),
            response_ct_hash: B256::ZERO,
            tokens_in,
            tokens_out,
            timestamp: 1,
            replay_seed: None,
        };
        (params, facts)
    }

    #[tokio::test]
    async fn the_receipt_claims_a_seed_only_for_a_replayable_call() {
        let (ch, signed, domain, host) = setup();
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = ReceiptLog::open(dir.path()).unwrap();
        let key = HostSigningKey::generate(&mut rand::rngs::OsRng);
        let (params, facts) = call(host, 1, 1, 1);
        let lease = ch.begin(&signed, &domain, host, 100).unwrap();
        let r = lease
            .commit(&facts, &params, &key, &domain, &log)
            .await
            .unwrap();
        assert_eq!((r.receipt.deterministic, r.receipt.seed), (false, 0));

        let (ch, signed, _, _) = setup();
        let replayed = CallFacts {
            replay_seed: Some(7),
            ..facts
        };
        let lease = ch.begin(&signed, &domain, host, 100).unwrap();
        let r = lease
            .commit(&replayed, &params, &key, &domain, &log)
            .await
            .unwrap();
        assert_eq!((r.receipt.deterministic, r.receipt.seed), (true, 7));
        let greedy = CallFacts {
            replay_seed: Some(0),
            ..facts
        };
        let (ch, signed, _, _) = setup();
        let lease = ch.begin(&signed, &domain, host, 100).unwrap();
        let r = lease
            .commit(&greedy, &params, &key, &domain, &log)
            .await
            .unwrap();
        assert_eq!((r.receipt.deterministic, r.receipt.seed), (true, 0));
    }

    #[test]
    fn one_call_per_channel_at_a_time() {
        let (ch, signed, domain, host) = setup();
        let lease = ch.begin(&signed, &domain, host, 10).unwrap();
        assert!(matches!(
            ch.begin(&signed, &domain, host, 10),
            Err(CallError::Busy)
        ));
        drop(lease);
        // Released without a receipt: the channel is free and unchanged.
        let lease = ch.begin(&signed, &domain, host, 10).unwrap();
        assert_eq!(lease.head().last_call_seq, 0);
    }

    #[test]
    fn failed_check_on_a_new_channel_leaves_no_slot() {
        let (ch, signed, domain, host) = setup();
        assert!(matches!(
            ch.begin(&signed, &domain, host, 10_000),
            Err(CallError::State(StateError::OverEscrowCap))
        ));
        assert!(ch.head(&signed.state.channel_id, host).is_none());
    }

    #[tokio::test]
    async fn commit_advances_the_head_and_logs() {
        let (ch, signed, domain, host) = setup();
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = ReceiptLog::open(dir.path()).unwrap();
        let key = HostSigningKey::generate(&mut rand::rngs::OsRng);
        let (params, facts) = call(host, 2, 3, 4);
        let lease = ch.begin(&signed, &domain, host, 100).unwrap();
        let r = lease
            .commit(&facts, &params, &key, &domain, &log)
            .await
            .unwrap();
        assert_eq!(r.receipt.amount, 11);
        let head = ch.head(&signed.state.channel_id, host).unwrap();
        assert_eq!(head.last_call_seq, 1);
        assert_eq!(head.cumulative, 11);
        assert_eq!(head.last_receipt_hash, r.receipt.signing_digest(&domain));
        // The turn-0 state is now stale.
        assert!(matches!(
            ch.begin(&signed, &domain, host, 10),
            Err(CallError::State(StateError::Stale { .. }))
        ));
        // A real cost past the cap gets no receipt.
        let (ch2, signed2, _, _) = setup();
        let lease = ch2.begin(&signed2, &domain, host, 10).unwrap();
        let big = CallFacts {
            tokens_out: 10_000,
            ..facts
        };
        assert!(matches!(
            lease.commit(&big, &params, &key, &domain, &log).await,
            Err(CallError::OverEscrowCap)
        ));
    }

    #[test]
    fn a_state_for_another_host_account_is_refused() {
        let (ch, signed, domain, _) = setup();
        assert!(matches!(
            ch.begin(&signed, &domain, Address([9; 20]), 10),
            Err(CallError::State(StateError::WrongHost))
        ));
        assert!(ch.is_empty());
    }

    #[test]
    fn a_final_state_is_never_served() {
        let (ch, _, domain, host) = setup();
        let tenant = TenantSigner::generate(&mut rand::rngs::OsRng);
        let state = ChannelState {
            is_final: true,
            ..ChannelState::open(B256([3; 32]), 1000, tenant.address(), host)
        };
        let signed = SignedChannelState {
            tenant_signature: tenant.sign_state(&state, &domain),
            state,
            host_signature: None,
        };
        assert!(matches!(
            ch.begin(&signed, &domain, host, 10),
            Err(CallError::State(StateError::Final))
        ));
        assert!(ch.is_empty());
    }

    /// A restart: the heads come back from the receipt log, and the channel goes on with the new
    /// boot's key, which the next receipt names.
    #[tokio::test]
    async fn heads_restored_from_the_log_continue_with_a_new_key() {
        let (ch, _, domain, host) = setup();
        let tenant = TenantSigner::generate(&mut rand::rngs::OsRng);
        let sign = |state: ChannelState| SignedChannelState {
            tenant_signature: tenant.sign_state(&state, &domain),
            state,
            host_signature: None,
        };
        let open = ChannelState::open(B256([3; 32]), 1000, tenant.address(), host);
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = ReceiptLog::open(dir.path()).unwrap();
        let key1 = HostSigningKey::generate(&mut rand::rngs::OsRng);
        let (params, facts) = call(host, 2, 3, 4);
        let lease = ch.begin(&sign(open.clone()), &domain, host, 100).unwrap();
        let r1 = lease
            .commit(&facts, &params, &key1, &domain, &log)
            .await
            .unwrap();
        drop(log);

        let (log, replay) = ReceiptLog::open(dir.path()).unwrap();
        assert_eq!(replay.heads.len(), 1);
        let restored = Arc::new(Channels::from_replay(&replay, 10));
        let head = restored.head(&open.channel_id, host).unwrap();
        assert_eq!((head.last_call_seq, head.host), (1, host));
        // The open state is stale; the state after receipt 1 is served, by the new key.
        assert!(matches!(
            restored.begin(&sign(open.clone()), &domain, host, 10),
            Err(CallError::State(StateError::Stale { .. }))
        ));
        let after1 = ChannelState {
            turn: 1,
            cumulative: r1.receipt.cumulative,
            last_receipt_hash: r1.receipt.signing_digest(&domain),
            ..open
        };
        let key2 = HostSigningKey::generate(&mut rand::rngs::OsRng);
        let params2 = ReceiptParams {
            host_key_id: key2.verifying_key().key_id(),
            ..params
        };
        let lease = restored.begin(&sign(after1), &domain, host, 100).unwrap();
        let r2 = lease
            .commit(&facts, &params2, &key2, &domain, &log)
            .await
            .unwrap();
        assert_eq!(r2.receipt.call_seq, 2);
        assert_eq!(
            r2.receipt.prev_receipt_hash,
            r1.receipt.signing_digest(&domain)
        );
        assert_eq!(r2.receipt.host_key_id, key2.verifying_key().key_id());
        r2.verify(&key2.verifying_key(), &domain).unwrap();
        // The log records the key that signed each receipt.
        let (records, _) =
            crate::receipt_log::read_records(&dir.path().join(crate::receipt_log::LOG_FILE))
                .unwrap();
        assert_eq!(
            records[1].header.host_key_id,
            key2.verifying_key().key_id().0
        );
    }
}
