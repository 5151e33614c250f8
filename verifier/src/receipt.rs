//! The tenant's SPUR-IC checks on each receipt, and the channel state it counter-signs (PROTOCOL.md §4).
//!
//! A [`Channel`] holds what the tenant last agreed to: the latest channel state it signed. For each call,
//! [`Channel::check`] runs every check on the host's receipt against what the tenant itself saw (request
//! bytes, the normalised response, both ciphertexts) and returns a [`VerifiedReceipt`];
//! [`Channel::accept`] then advances the channel and signs the next [`ChannelState`] with the tenant's
//! wallet key. `check` does not change the channel, so a failed check leaves the last agreed state intact
//! for a dispute.
//!
//! Each receipt must also name what the evidence attests ([`VerifiedBundle::runtime`]): SHA-256 of its
//! `model_id` equal to the `model-id` event, its `weight_hash` to the `model-weights` event, its
//! `engine_build` to the `engine-build` event (each its own error); a bundle whose evidence attests no
//! runtime events fails every receipt with [`ReceiptError::RuntimeUnattested`].
//!
//! The receipt wire types are defined once, in `dait-chain-client`, and re-exported here.

use dait_chain_client::{
    B256, CallBinding, DecodeError, Domain, HostVerifyingKey, NormalizeError, NormalizedResponse,
    ReceiptChain, SignatureError, TenantSigner, Usage, ciphertext_hash, request_hash,
};
pub use dait_chain_client::{
    ChannelState, Receipt, SignedChannelState, SignedReceipt, WireMessage,
};

use sha2::{Digest as _, Sha256};

use crate::bundle::{AttestedRuntime, VerifiedBundle};

/// Why a receipt failed the SPUR-IC checks. Any of these means: stop, keep the receipt, dispute.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The attested receipt key is not a valid P-256 point (cannot open a channel).
    #[error("the attested receipt key is invalid")]
    BadHostKey(#[source] SignatureError),
    /// The receipt did not decode.
    #[error("the receipt is malformed")]
    Decode(#[source] DecodeError),
    /// A bundle verified to resume the channel signs under another EIP-712 domain (chain or settlement).
    #[error("the new bundle's keyset names another chain or settlement contract")]
    DomainChanged,
    /// The receipt's `engine_build` is not the `engine-build` event the evidence attests (or the evidence
    /// attests no single such event).
    #[error("the receipt's engine_build differs from the attested engine-build event")]
    EngineBuild,
    /// SHA-256 of the receipt's `model_id` is not the `model-id` event the evidence attests (or the
    /// evidence attests no single such event).
    #[error("the receipt's model_id differs from the attested model-id event")]
    ModelId,
    /// The response carried no receipt.
    #[error("the response carried no receipt")]
    Missing,
    /// The per-token prices changed within the channel.
    #[error("the per-token prices changed within the channel")]
    PriceChanged,
    /// The receipt's replay parameters are not the call's (PROTOCOL.md §6, "Replayable calls"): a call
    /// sent replayable must have `deterministic = true` and the seed it asked for (its `seed`, else 0),
    /// every other call `deterministic = false` and `seed = 0`. Checked by [`check_replay_parameters`].
    #[error(
        "the receipt's replay parameters (deterministic={deterministic}, seed={seed}) are not the call's"
    )]
    ReplayParameters {
        /// The receipt's `deterministic`.
        deterministic: bool,
        /// The receipt's `seed`.
        seed: u64,
    },
    /// The response received could not be normalised, so its hash cannot be recomputed.
    #[error("the response cannot be normalised")]
    ResponseUnreadable(#[source] NormalizeError),
    /// The state a channel is restored from does not agree with the receipt given as its last one (its
    /// hash, `call_seq`, `cumulative` or channel), or names receipts without one ([`Channel::restore`]).
    #[error("the restored channel state does not match its last receipt")]
    RestoredState,
    /// The receipt was checked against another state of the channel than the current one.
    #[error("the receipt was checked against another channel state")]
    StaleCheck,
    /// The evidence attests no runtime events (no runtime event log bound to the attested register: an SNP
    /// bundle, or an empty or foreign log), so no receipt's model, weights or engine can be checked.
    #[error("the evidence attests no runtime events (model, weights, engine build)")]
    RuntimeUnattested,
    /// A sequence, signature, binding or amount rule failed (chain-client's SPUR-IC checks; each rule has its
    /// own variant there: `WrongChannel`, `Final`, `CallSeq`, `PrevReceiptHash`, `HostSignature`,
    /// `KeysetHash`, `HostKeyId`, `RequestHash`, `ResponseHash`, `RequestCtHash`, `ResponseCtHash`, `Amount`,
    /// `Cumulative`, `OverEscrowCap`, `UnsupportedVersion`; and `WrongHost` from [`Channel::resume`]).
    #[error(transparent)]
    Rule(#[from] dait_chain_client::ReceiptError),
    /// `tokens_in`/`tokens_out` differ from the usage the engine reported in the response.
    #[error("token counts differ from the response's usage")]
    TokensMismatch,
    /// The receipt's `weight_hash` is not the `model-weights` event the evidence attests (or the evidence
    /// attests no single such event).
    #[error("the receipt's weight_hash differs from the attested model-weights event")]
    WeightHash,
}

/// What the tenant itself observed for one call; the receipt must agree with it.
#[derive(Clone, Debug)]
pub struct CallEvidence<'a> {
    /// The request body exactly as sent inside OHTTP.
    pub request_body: &'a [u8],
    /// The response as received, normalised (its usage, if reported, must equal the receipt's tokens).
    pub response: &'a NormalizedResponse,
    /// The encapsulated request as sent.
    pub request_ct: &'a [u8],
    /// `H256("dait/v1/ciphertext" || response message as received)` (streams are hashed as they arrive).
    pub response_ct_hash: B256,
}

/// A receipt that passed every check for its call. Only [`Channel::check`] constructs it.
#[derive(Clone, Debug)]
pub struct VerifiedReceipt {
    signed: SignedReceipt,
    hash: B256,
    /// The channel state before this receipt (what it was checked against) and after it.
    before: ChannelState,
    after: ChannelState,
}

impl VerifiedReceipt {
    /// The receipt.
    pub fn receipt(&self) -> &Receipt {
        &self.signed.receipt
    }
    /// The receipt with the host's signature.
    pub fn signed(&self) -> &SignedReceipt {
        &self.signed
    }
    /// The receipt hash (its EIP-712 signing digest).
    pub fn hash(&self) -> &B256 {
        &self.hash
    }
}

/// One channel between this tenant and one host operator account (the keyset's `host_account`), served by the
/// receipt key of the bundle verified last.
#[derive(Clone, Debug)]
pub struct Channel {
    chain: ReceiptChain,
    host_key: HostVerifyingKey,
    keyset_hash: B256,
    state: SignedChannelState,
    prices: Option<(u128, u128)>,
    runtime: Option<AttestedRuntime>,
}

impl Channel {
    /// Opens a channel with the host of `bundle`: `channel_id` is derived from the domain, the tenant's
    /// address, the keyset's `host_account` and `salt` (PROTOCOL.md §4); the opening state (turn 0) is signed
    /// at once. A zero `host_account` opens an off-chain channel only (no contract accepts it).
    pub fn open(
        bundle: &VerifiedBundle,
        signer: &TenantSigner,
        salt: &B256,
        escrow_cap: u128,
    ) -> Result<Self, ReceiptError> {
        let domain = bundle.domain();
        let tenant = signer.address();
        let host = bundle.keyset().host_account;
        let channel_id = dait_chain_client::channel_id(&domain, &tenant, &host, salt);
        let state = ChannelState::open(channel_id, escrow_cap, tenant, host);
        let host_key =
            HostVerifyingKey::from_sec1(bundle.receipt_key()).map_err(ReceiptError::BadHostKey)?;
        let tenant_signature = signer.sign_state(&state, &domain);
        Ok(Self {
            chain: ReceiptChain::new(domain, host_key, *bundle.keyset_hash(), state.clone()),
            host_key,
            keyset_hash: *bundle.keyset_hash(),
            state: SignedChannelState {
                state,
                tenant_signature,
                host_signature: None,
            },
            prices: None,
            runtime: bundle.runtime().cloned(),
        })
    }

    /// Continues a channel the tenant used before (its process restarted) from `state`, the last state it
    /// signed, with the host of a newly verified `bundle`: the bundle's keyset must name the state's `host`
    /// account ([`dait_chain_client::ReceiptError::WrongHost`]) and the state must not be final
    /// ([`dait_chain_client::ReceiptError::Final`]). `last` is the receipt of `state.turn` (none at turn 0):
    /// its hash under the bundle's domain, `call_seq`, `cumulative` and channel must be the state's
    /// ([`ReceiptError::RestoredState`]), and its prices are the channel's from then on. The caller checks
    /// that the tenant's signature on `state` recovers its own address under the bundle's domain (which ties
    /// the state to that domain). Receipts are then checked against the bundle's key, keyset and runtime.
    pub fn restore(
        bundle: &VerifiedBundle,
        state: SignedChannelState,
        last: Option<&Receipt>,
    ) -> Result<Self, ReceiptError> {
        let domain = bundle.domain();
        if bundle.keyset().host_account != state.state.host {
            return Err(dait_chain_client::ReceiptError::WrongHost.into());
        }
        if state.state.is_final {
            return Err(dait_chain_client::ReceiptError::Final.into());
        }
        let s = &state.state;
        let prices = match (s.turn, last) {
            (0, None) if s.cumulative == 0 && s.last_receipt_hash == B256::ZERO => None,
            (turn, Some(r))
                if turn > 0
                    && r.call_seq == turn
                    && r.cumulative == s.cumulative
                    && r.channel_id == s.channel_id
                    && dait_chain_client::receipt_hash(r, &domain) == s.last_receipt_hash =>
            {
                Some((r.price_in, r.price_out))
            }
            _ => return Err(ReceiptError::RestoredState),
        };
        let host_key =
            HostVerifyingKey::from_sec1(bundle.receipt_key()).map_err(ReceiptError::BadHostKey)?;
        Ok(Self {
            chain: ReceiptChain::new(domain, host_key, *bundle.keyset_hash(), state.state.clone()),
            host_key,
            keyset_hash: *bundle.keyset_hash(),
            state,
            prices,
            runtime: bundle.runtime().cloned(),
        })
    }

    /// The latest state the tenant signed (sent as `x-dait-state` with the next call).
    pub fn state(&self) -> &SignedChannelState {
        &self.state
    }

    /// The channel id.
    pub fn id(&self) -> &B256 {
        &self.state.state.channel_id
    }

    /// The EIP-712 domain of the channel.
    pub fn domain(&self) -> &Domain {
        self.chain.domain()
    }

    /// Continues the channel with the host of a newly verified `bundle`, after the agent restarted with a new
    /// boot key (PROTOCOL.md §4): the bundle's keyset must name the channel's `host` account
    /// ([`dait_chain_client::ReceiptError::WrongHost`]) and the same EIP-712 domain
    /// ([`ReceiptError::DomainChanged`]). From then on receipts must be signed by the new receipt key, name the
    /// new keyset and the runtime the new bundle attests; the sequence goes on from the last state the tenant
    /// signed, which is unchanged. On an error the channel is unchanged.
    pub fn resume(&mut self, bundle: &VerifiedBundle) -> Result<(), ReceiptError> {
        if bundle.domain() != *self.chain.domain() {
            return Err(ReceiptError::DomainChanged);
        }
        let host_key =
            HostVerifyingKey::from_sec1(bundle.receipt_key()).map_err(ReceiptError::BadHostKey)?;
        self.chain.resume_with_key(
            &bundle.keyset().host_account,
            host_key,
            *bundle.keyset_hash(),
        )?;
        self.host_key = host_key;
        self.keyset_hash = *bundle.keyset_hash();
        self.runtime = bundle.runtime().cloned();
        Ok(())
    }

    /// The state that closes the channel cooperatively: the last agreed state with `is_final` set, signed by
    /// the tenant (the host may counter-sign it). No call is served on it.
    pub fn close(&self, signer: &TenantSigner) -> SignedChannelState {
        let state = self.chain.final_state();
        SignedChannelState {
            tenant_signature: signer.sign_state(&state, self.chain.domain()),
            state,
            host_signature: None,
        }
    }

    /// Decodes a base64url `SignedReceipt` (the `x-dait-receipt` field) and checks it.
    pub fn check_header(
        &self,
        receipt_b64: &[u8],
        call: &CallEvidence<'_>,
    ) -> Result<VerifiedReceipt, ReceiptError> {
        let text = std::str::from_utf8(receipt_b64).map_err(|_| {
            ReceiptError::Decode(DecodeError::Base64 {
                what: "signed_receipt",
            })
        })?;
        let signed = SignedReceipt::from_header_value(text.trim()).map_err(ReceiptError::Decode)?;
        self.check(signed, call)
    }

    /// Runs the SPUR-IC checks on `signed` for `call`: the sequence, signature and amount rules first, then
    /// the receipt's model, weights and engine build against the attested runtime events, then the binding
    /// to what the tenant sent and received. Does not change the channel.
    pub fn check(
        &self,
        signed: SignedReceipt,
        call: &CallEvidence<'_>,
    ) -> Result<VerifiedReceipt, ReceiptError> {
        let (hash, after) = self.chain.check(&signed)?;
        let r = &signed.receipt;
        check_runtime(r, self.runtime.as_ref())?;
        let metered = Usage {
            prompt_tokens: r.tokens_in,
            completion_tokens: r.tokens_out,
        };
        let response_hash = match call.response.response_hash(metered) {
            Ok(hash) => hash,
            Err(NormalizeError::UsageMismatch) => return Err(ReceiptError::TokensMismatch),
            Err(e) => return Err(ReceiptError::ResponseUnreadable(e)),
        };
        dait_chain_client::check_binding(
            r,
            &CallBinding {
                request_hash: request_hash(call.request_body),
                response_hash,
                request_ct_hash: ciphertext_hash(call.request_ct),
                response_ct_hash: call.response_ct_hash,
            },
        )?;
        self.verified(signed, hash, after)
    }

    /// Checks a receipt the tenant never received with its call (the host logged it, then crashed or the
    /// tenant left before it arrived; fetched again from the host's receipt log): every rule that does not
    /// need the call itself (version, channel, not final, `call_seq`, `prev_receipt_hash`, the signature by
    /// the attested key, `host_key_id`, `keyset_hash`, `amount`, `cumulative`, the escrow cap, the prices
    /// and the receipt's model, weights and engine against the evidence). Its request and response hashes
    /// cannot be recomputed: accepting it takes the host's word that the call was made. Does not change
    /// the channel.
    pub fn check_unseen(&self, signed: SignedReceipt) -> Result<VerifiedReceipt, ReceiptError> {
        let (hash, after) = self.chain.check(&signed)?;
        self.unseen_rest(signed, hash, after)
    }

    /// [`Channel::check_unseen`] for a receipt signed by an earlier boot of the same host: `receipt_key`
    /// (SEC1) and `keyset_hash` are those of a bundle the caller verified for this channel before (the host
    /// logged the receipt, then restarted with a new key before delivering it). Its model, weights and
    /// engine are checked against the runtime the bundle verified last attests.
    pub fn check_unseen_by(
        &self,
        signed: SignedReceipt,
        receipt_key: &[u8],
        keyset_hash: B256,
    ) -> Result<VerifiedReceipt, ReceiptError> {
        let host_key =
            HostVerifyingKey::from_sec1(receipt_key).map_err(ReceiptError::BadHostKey)?;
        let earlier = ReceiptChain::new(
            *self.chain.domain(),
            host_key,
            keyset_hash,
            self.chain.state().clone(),
        );
        let (hash, after) = earlier.check(&signed)?;
        self.unseen_rest(signed, hash, after)
    }

    /// The checks of [`Channel::check_unseen`] after the chain's.
    fn unseen_rest(
        &self,
        signed: SignedReceipt,
        hash: B256,
        after: ChannelState,
    ) -> Result<VerifiedReceipt, ReceiptError> {
        check_runtime(&signed.receipt, self.runtime.as_ref())?;
        self.verified(signed, hash, after)
    }

    /// The last rule of every check (the channel's prices do not change) and the checked receipt.
    fn verified(
        &self,
        signed: SignedReceipt,
        hash: B256,
        after: ChannelState,
    ) -> Result<VerifiedReceipt, ReceiptError> {
        let r = &signed.receipt;
        if self.prices.is_some_and(|p| p != (r.price_in, r.price_out)) {
            return Err(ReceiptError::PriceChanged);
        }
        Ok(VerifiedReceipt {
            signed,
            hash,
            before: self.chain.state().clone(),
            after,
        })
    }

    /// Accepts a checked receipt: the channel advances to it and the tenant signs the new state. Fails with
    /// [`ReceiptError::StaleCheck`] if `receipt` was checked against another state of the channel.
    pub fn accept(
        &mut self,
        receipt: &VerifiedReceipt,
        signer: &TenantSigner,
    ) -> Result<&SignedChannelState, ReceiptError> {
        if receipt.before != *self.chain.state() {
            return Err(ReceiptError::StaleCheck);
        }
        let state = receipt.after.clone();
        let domain = *self.chain.domain();
        let tenant_signature = signer.sign_state(&state, &domain);
        self.chain = ReceiptChain::new(domain, self.host_key, self.keyset_hash, state.clone());
        let r = receipt.receipt();
        self.prices = Some((r.price_in, r.price_out));
        self.state = SignedChannelState {
            state,
            tenant_signature,
            host_signature: None,
        };
        Ok(&self.state)
    }
}

/// Checks a receipt's `deterministic` and `seed` against the call (PROTOCOL.md §6, "Replayable calls"):
/// `replay_seed` is `Some(seed)` for a call sent replayable (`x-dait-replayable: 1`), with the seed it
/// asked for (its `seed`, else 0), and `None` for any other call, whose receipt must claim no seed.
pub fn check_replay_parameters(r: &Receipt, replay_seed: Option<u64>) -> Result<(), ReceiptError> {
    let claimed = r.deterministic.then_some(r.seed);
    if claimed == replay_seed && (r.deterministic || r.seed == 0) {
        Ok(())
    } else {
        Err(ReceiptError::ReplayParameters {
            deterministic: r.deterministic,
            seed: r.seed,
        })
    }
}

/// The receipt's model, weights and engine build against what the evidence attests; each its own error.
fn check_runtime(r: &Receipt, runtime: Option<&AttestedRuntime>) -> Result<(), ReceiptError> {
    let runtime = runtime.ok_or(ReceiptError::RuntimeUnattested)?;
    let model_id_sha256: [u8; 32] = Sha256::digest(r.model_id.as_bytes()).into();
    if runtime.model_id_sha256 != Some(model_id_sha256) {
        return Err(ReceiptError::ModelId);
    }
    if runtime.weight_hash != Some(r.weight_hash) {
        return Err(ReceiptError::WeightHash);
    }
    if runtime.engine_build != Some(r.engine_build) {
        return Err(ReceiptError::EngineBuild);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use dait_chain_client::{
        ReceiptError as Rule, StreamNormalizer, TenantSigner, ciphertext_hash, receipt_hash,
        request_hash,
    };

    use super::*;
    use crate::bundle::fixture::{Fixture, NOW, runtime_events, runtime_log};

    const REQUEST: &[u8] =
        br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":8}"#;
    const RESPONSE: &[u8] = br#"{"id":"x","created":1,"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#;
    const STREAM: &[u8] = b"data: {\"id\":\"y\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"y\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"y\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    const REQ_CT: &[u8] = b"request ciphertext";
    const HOST_ACCOUNT: dait_chain_client::Address = dait_chain_client::Address([0xa0; 20]);
    const RESP_CT: &[u8] = b"response ciphertext";

    struct Setup {
        fixture: Fixture,
        channel: Channel,
        tenant: TenantSigner,
        response: NormalizedResponse,
    }

    /// The runtime events the fixture's bundle attests: model "m", weights `[1; 32]`, engine `[2; 32]`.
    fn attested_events() -> Vec<dait_measure::reference::RuntimeEvent> {
        let mut events = runtime_events();
        events[0].sha256.0 = Sha256::digest(b"m").into();
        events[1].sha256.0 = [1; 32];
        events[2].sha256.0 = [2; 32];
        events
    }

    fn setup(cap: u128) -> Setup {
        let mut fixture = Fixture::new();
        fixture.event_log = runtime_log(&attested_events());
        fixture.keyset.host_account = HOST_ACCOUNT;
        let bundle = fixture.verify(&fixture.allow()).unwrap();
        let tenant = TenantSigner::from_bytes(&[7; 32]).unwrap();
        let channel = Channel::open(&bundle, &tenant, &B256([8; 32]), cap).unwrap();
        Setup {
            fixture,
            channel,
            tenant,
            response: NormalizedResponse::from_body(RESPONSE).unwrap(),
        }
    }

    /// The receipt an honest host would issue for the next call.
    fn honest(s: &Setup) -> Receipt {
        let last = &s.channel.state().state;
        let amount = 7 * 3 + 2 * 5;
        Receipt {
            version: 1,
            channel_id: last.channel_id,
            call_seq: last.turn + 1,
            host_key_id: s.fixture.receipt_key.verifying_key().key_id(),
            keyset_hash: dait_chain_client::keyset_hash(&s.fixture.keyset.encode()),
            model_id: "m".into(),
            weight_hash: B256([1; 32]),
            request_hash: request_hash(REQUEST),
            response_hash: s
                .response
                .response_hash(Usage {
                    prompt_tokens: 7,
                    completion_tokens: 2,
                })
                .unwrap(),
            request_ct_hash: ciphertext_hash(REQ_CT),
            response_ct_hash: ciphertext_hash(RESP_CT),
            tokens_in: 7,
            tokens_out: 2,
            price_in: 3,
            price_out: 5,
            amount,
            cumulative: last.cumulative + amount,
            prev_receipt_hash: last.last_receipt_hash,
            timestamp: NOW,
            seed: 0,
            engine_build: B256([2; 32]),
            deterministic: true,
        }
    }

    fn sign(s: &Setup, r: Receipt) -> SignedReceipt {
        s.fixture.receipt_key.sign_receipt(r, s.channel.domain())
    }

    fn evidence(s: &Setup) -> CallEvidence<'_> {
        CallEvidence {
            request_body: REQUEST,
            response: &s.response,
            request_ct: REQ_CT,
            response_ct_hash: ciphertext_hash(RESP_CT),
        }
    }

    fn check_with(
        s: &Setup,
        edit: impl FnOnce(&mut Receipt),
    ) -> Result<VerifiedReceipt, ReceiptError> {
        let mut r = honest(s);
        edit(&mut r);
        s.channel.check(sign(s, r), &evidence(s))
    }

    #[test]
    fn honest_receipts_chain_and_states_are_counter_signed() {
        let mut s = setup(1_000);
        for turn in 1..=3u64 {
            let signed = sign(&s, honest(&s));
            let v = s.channel.check(signed.clone(), &evidence(&s)).unwrap();
            assert_eq!(v.hash(), &receipt_hash(&signed.receipt, s.channel.domain()));
            let tenant = s.tenant.address();
            let state = s.channel.accept(&v, &s.tenant).unwrap().clone();
            assert_eq!(state.state.turn, turn);
            assert_eq!(state.state.cumulative, u128::from(turn) * 31);
            assert_eq!(state.state.last_receipt_hash, *v.hash());
            assert_eq!(state.verify_tenant(s.channel.domain()).unwrap(), tenant);
        }
    }

    #[test]
    fn streamed_response_hashes_like_the_plain_one() {
        let s = setup(1_000);
        let mut n = StreamNormalizer::new();
        n.push(STREAM).unwrap();
        let streamed = n.finish().unwrap();
        let mut r = honest(&s);
        // The stream reports no usage; the receipt's metered tokens enter the hash.
        r.response_hash = streamed
            .response_hash(Usage {
                prompt_tokens: 7,
                completion_tokens: 2,
            })
            .unwrap();
        assert_eq!(r.response_hash, honest(&s).response_hash);
        let call = CallEvidence {
            response: &streamed,
            ..evidence(&s)
        };
        s.channel.check(sign(&s, r), &call).unwrap();
    }

    #[test]
    fn channel_belongs_to_the_keysets_host_account() {
        let s = setup(1_000);
        let state = &s.channel.state().state;
        assert_eq!(state.host, HOST_ACCOUNT);
        assert!(!state.is_final);
        assert_eq!(
            *s.channel.id(),
            dait_chain_client::channel_id(
                s.channel.domain(),
                &s.tenant.address(),
                &HOST_ACCOUNT,
                &B256([8; 32])
            )
        );
    }

    /// The fixture's host restarted: receipt key 4, a new keyset, the same operator account.
    fn restarted(s: &Setup) -> Fixture {
        let mut f = Fixture::new();
        f.event_log = s.fixture.event_log.clone();
        f.receipt_key = crate::bundle::fixture::key(4);
        f.keyset = dait_chain_client::Keyset {
            receipt_key: f.receipt_key.verifying_key().to_sec1(),
            boot_id: [2; 16],
            ..s.fixture.keyset.clone()
        };
        f
    }

    #[test]
    fn resume_after_a_restart_continues_the_channel_with_the_new_key() {
        let mut s = setup(1_000);
        let v = s
            .channel
            .check(sign(&s, honest(&s)), &evidence(&s))
            .unwrap();
        s.channel.accept(&v, &s.tenant).unwrap();
        let before = s.channel.state().clone();
        let f2 = restarted(&s);
        let bundle2 = f2.verify(&f2.allow()).unwrap();
        s.channel.resume(&bundle2).unwrap();
        assert_eq!(
            s.channel.state(),
            &before,
            "the last agreed state is unchanged"
        );
        // The next receipt comes from the new boot: its key and keyset.
        let mut r = honest(&s);
        r.host_key_id = f2.receipt_key.verifying_key().key_id();
        r.keyset_hash = dait_chain_client::keyset_hash(&f2.keyset.encode());
        let old = sign(&s, r.clone());
        let new = f2.receipt_key.sign_receipt(r, s.channel.domain());
        assert!(matches!(
            s.channel.check(old, &evidence(&s)),
            Err(ReceiptError::Rule(Rule::HostSignature(_)))
        ));
        let v = s.channel.check(new, &evidence(&s)).unwrap();
        let state = s.channel.accept(&v, &s.tenant).unwrap();
        assert_eq!(state.state.turn, 2);
        assert_eq!(state.state.cumulative, 62);
    }

    #[test]
    fn resume_refuses_another_host_account_or_domain() {
        let mut s = setup(1_000);
        let mut f2 = restarted(&s);
        f2.keyset.host_account = dait_chain_client::Address([0xee; 20]);
        let other = f2.verify(&f2.allow()).unwrap();
        assert!(matches!(
            s.channel.resume(&other),
            Err(ReceiptError::Rule(Rule::WrongHost))
        ));
        let mut f3 = restarted(&s);
        f3.keyset.chain_id = 1;
        let other = f3.verify(&f3.allow()).unwrap();
        assert!(matches!(
            s.channel.resume(&other),
            Err(ReceiptError::DomainChanged)
        ));
        // Nothing changed: the original key's receipts still verify.
        s.channel
            .check(sign(&s, honest(&s)), &evidence(&s))
            .unwrap();
    }

    #[test]
    fn close_signs_a_final_state() {
        let s = setup(1_000);
        let closed = s.channel.close(&s.tenant);
        assert!(closed.state.is_final);
        assert_eq!(closed.state.turn, 0);
        assert_eq!(
            closed.verify_tenant(s.channel.domain()).unwrap(),
            s.tenant.address()
        );
    }

    #[test]
    fn wrong_channel() {
        let s = setup(1_000);
        let r = check_with(&s, |r| r.channel_id = B256([0xcc; 32]));
        assert!(matches!(r, Err(ReceiptError::Rule(Rule::WrongChannel))));
    }

    #[test]
    fn wrong_call_seq() {
        let s = setup(1_000);
        let r = check_with(&s, |r| r.call_seq = 2);
        assert!(matches!(
            r,
            Err(ReceiptError::Rule(Rule::CallSeq {
                expected: 1,
                actual: 2
            }))
        ));
    }

    #[test]
    fn wrong_prev_hash() {
        let s = setup(1_000);
        let r = check_with(&s, |r| r.prev_receipt_hash = B256([1; 32]));
        assert!(matches!(r, Err(ReceiptError::Rule(Rule::PrevReceiptHash))));
    }

    #[test]
    fn bad_signature() {
        let s = setup(1_000);
        let mut signed = sign(&s, honest(&s));
        signed.host_signature.0[10] ^= 1;
        let r = s.channel.check(signed, &evidence(&s));
        assert!(matches!(r, Err(ReceiptError::Rule(Rule::HostSignature(_)))));
    }

    #[test]
    fn signature_by_another_key() {
        let s = setup(1_000);
        let signed = crate::bundle::fixture::key(99).sign_receipt(honest(&s), s.channel.domain());
        let r = s.channel.check(signed, &evidence(&s));
        assert!(matches!(r, Err(ReceiptError::Rule(Rule::HostSignature(_)))));
    }

    #[test]
    fn wrong_keyset_hash() {
        let s = setup(1_000);
        let r = check_with(&s, |r| r.keyset_hash = B256([3; 32]));
        assert!(matches!(r, Err(ReceiptError::Rule(Rule::KeysetHash))));
    }

    #[test]
    fn wrong_host_key_id() {
        let s = setup(1_000);
        let r = check_with(&s, |r| r.host_key_id = B256([3; 32]));
        assert!(matches!(r, Err(ReceiptError::Rule(Rule::HostKeyId))));
    }

    #[test]
    fn wrong_request_hash() {
        let s = setup(1_000);
        let r = check_with(&s, |r| r.request_hash = request_hash(b"{}"));
        assert!(matches!(r, Err(ReceiptError::Rule(Rule::RequestHash))));
    }

    #[test]
    fn altered_response() {
        let s = setup(1_000);
        let altered =
            NormalizedResponse::from_body(&RESPONSE.replace_str("Hello", "Jello")).unwrap();
        let call = CallEvidence {
            response: &altered,
            ..evidence(&s)
        };
        let r = s.channel.check(sign(&s, honest(&s)), &call);
        assert!(matches!(r, Err(ReceiptError::Rule(Rule::ResponseHash))));
    }

    #[test]
    fn wrong_ciphertext_hashes() {
        let s = setup(1_000);
        let r = check_with(&s, |r| r.request_ct_hash = ciphertext_hash(b"other"));
        assert!(matches!(r, Err(ReceiptError::Rule(Rule::RequestCtHash))));
        let r = check_with(&s, |r| r.response_ct_hash = ciphertext_hash(b"other"));
        assert!(matches!(r, Err(ReceiptError::Rule(Rule::ResponseCtHash))));
    }

    #[test]
    fn wrong_amount_and_cumulative() {
        let s = setup(1_000);
        let r = check_with(&s, |r| {
            r.amount += 1;
            r.cumulative += 1;
        });
        assert!(matches!(r, Err(ReceiptError::Rule(Rule::Amount { .. }))));
        let r = check_with(&s, |r| r.cumulative += 1);
        assert!(matches!(r, Err(ReceiptError::Rule(Rule::Cumulative))));
    }

    #[test]
    fn over_escrow_cap() {
        let s = setup(30);
        let r = check_with(&s, |_| {});
        assert!(matches!(r, Err(ReceiptError::Rule(Rule::OverEscrowCap))));
    }

    #[test]
    fn tokens_differ_from_reported_usage() {
        let s = setup(1_000);
        let r = check_with(&s, |r| {
            r.tokens_out = 3;
            r.amount = 7 * 3 + 3 * 5;
            r.cumulative = r.amount;
        });
        assert!(matches!(r, Err(ReceiptError::TokensMismatch)));
    }

    #[test]
    fn price_change_within_the_channel() {
        let mut s = setup(1_000);
        let v = s
            .channel
            .check(sign(&s, honest(&s)), &evidence(&s))
            .unwrap();
        s.channel.accept(&v, &s.tenant).unwrap();
        let r = check_with(&s, |r| {
            r.price_in = 4;
            r.amount = 7 * 4 + 2 * 5;
            r.cumulative = 31 + r.amount;
        });
        assert!(matches!(r, Err(ReceiptError::PriceChanged)));
    }

    #[test]
    fn a_check_against_an_older_state_cannot_be_accepted() {
        let mut s = setup(1_000);
        let first = s
            .channel
            .check(sign(&s, honest(&s)), &evidence(&s))
            .unwrap();
        let again = s
            .channel
            .check(sign(&s, honest(&s)), &evidence(&s))
            .unwrap();
        s.channel.accept(&first, &s.tenant).unwrap();
        assert!(matches!(
            s.channel.accept(&again, &s.tenant),
            Err(ReceiptError::StaleCheck)
        ));
    }

    #[test]
    fn model_id_other_than_attested() {
        let s = setup(1_000);
        let r = check_with(&s, |r| r.model_id = "n".into());
        assert!(matches!(r, Err(ReceiptError::ModelId)), "{r:?}");
    }

    #[test]
    fn weight_hash_other_than_attested() {
        let s = setup(1_000);
        let r = check_with(&s, |r| r.weight_hash = B256([9; 32]));
        assert!(matches!(r, Err(ReceiptError::WeightHash)), "{r:?}");
    }

    #[test]
    fn engine_build_other_than_attested() {
        let s = setup(1_000);
        let r = check_with(&s, |r| r.engine_build = B256([9; 32]));
        assert!(matches!(r, Err(ReceiptError::EngineBuild)), "{r:?}");
    }

    #[test]
    fn an_attested_log_without_the_event_attests_nothing_for_it() {
        let mut s = setup(1_000);
        let mut events = attested_events();
        events.remove(2);
        s.fixture.event_log = runtime_log(&events);
        let bundle = s.fixture.verify(&s.fixture.allow()).unwrap();
        s.channel = Channel::open(&bundle, &s.tenant, &B256([8; 32]), 1_000).unwrap();
        let r = s.channel.check(sign(&s, honest(&s)), &evidence(&s));
        assert!(matches!(r, Err(ReceiptError::EngineBuild)), "{r:?}");
    }

    #[test]
    fn evidence_without_runtime_events_fails_every_receipt() {
        let mut s = setup(1_000);
        // Not a runtime event log: its digest is signed, but it attests no model.
        s.fixture.event_log = b"simulated event log".to_vec();
        let bundle = s.fixture.verify(&s.fixture.allow()).unwrap();
        assert!(bundle.runtime().is_none());
        s.channel = Channel::open(&bundle, &s.tenant, &B256([8; 32]), 1_000).unwrap();
        let r = s.channel.check(sign(&s, honest(&s)), &evidence(&s));
        assert!(matches!(r, Err(ReceiptError::RuntimeUnattested)), "{r:?}");
    }

    #[test]
    fn replay_parameters_must_be_the_calls() {
        let s = setup(1_000);
        let with = |deterministic, seed| Receipt {
            deterministic,
            seed,
            ..honest(&s)
        };
        let ok = |r: &Receipt, replay| check_replay_parameters(r, replay).is_ok();
        // A replayable call: deterministic, with the seed it asked for.
        assert!(ok(&with(true, 0), Some(0)));
        assert!(ok(&with(true, 7), Some(7)));
        // Any other call: not deterministic, and no seed claimed.
        assert!(ok(&with(false, 0), None));
        for (r, replay) in [
            (with(true, 7), Some(0)),
            (with(false, 0), Some(0)),
            (with(false, 7), Some(7)),
            (with(true, 0), None),
            (with(false, 7), None),
        ] {
            assert!(
                matches!(
                    check_replay_parameters(&r, replay),
                    Err(ReceiptError::ReplayParameters { deterministic, seed })
                        if (deterministic, seed) == (r.deterministic, r.seed)
                ),
                "{replay:?}"
            );
        }
    }

    #[test]
    fn undecodable_header() {
        let s = setup(1_000);
        let r = s.channel.check_header(b"!!not base64!!", &evidence(&s));
        assert!(matches!(r, Err(ReceiptError::Decode(_))));
        let good = sign(&s, honest(&s)).to_header_value();
        s.channel
            .check_header(good.as_bytes(), &evidence(&s))
            .unwrap();
    }

    trait ReplaceStr {
        fn replace_str(&self, from: &str, to: &str) -> Vec<u8>;
    }
    impl ReplaceStr for [u8] {
        fn replace_str(&self, from: &str, to: &str) -> Vec<u8> {
            String::from_utf8_lossy(self).replace(from, to).into_bytes()
        }
    }
}
