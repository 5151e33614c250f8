//! SPUR-IC sequence rules (PROTOCOL.md §4): the tenant's [`ReceiptChain`] checks each receipt, and the agent's
//! [`ChannelHead`] checks each incoming [`SignedChannelState`].

use crate::eip712::Domain;
use crate::hash::amount;
use crate::keys::{HostVerifyingKey, SignatureError};
use crate::types::{Address, B256};
use crate::wire::{ChannelState, PROTOCOL_VERSION, Receipt, SignedChannelState, SignedReceipt};

/// Why the tenant rejects a receipt. Each SPUR-IC rule has its own variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// `amount != tokens_in*price_in + tokens_out*price_out` (or that sum overflows).
    #[error("amount {actual} does not equal tokens times prices")]
    Amount {
        /// The receipt's amount.
        actual: u128,
    },
    /// `call_seq` is not the last one plus one.
    #[error("call_seq {actual}, expected {expected}")]
    CallSeq {
        /// last + 1.
        expected: u64,
        /// The receipt's call_seq.
        actual: u64,
    },
    /// `cumulative` is not the previous cumulative plus `amount`.
    #[error("cumulative does not equal previous cumulative plus amount")]
    Cumulative,
    /// The channel's state is final (the tenant signed it to close): no receipt can follow it.
    #[error("the channel state is final")]
    Final,
    /// The host signature does not verify under the attested receipt key.
    #[error("host signature rejected")]
    HostSignature(#[source] SignatureError),
    /// `host_key_id` is not the attested receipt key's.
    #[error("host_key_id is not the attested key's")]
    HostKeyId,
    /// `keyset_hash` is not the verified bundle's.
    #[error("keyset_hash is not the attested keyset's")]
    KeysetHash,
    /// `cumulative` exceeds the channel's escrow cap.
    #[error("cumulative exceeds the escrow cap")]
    OverEscrowCap,
    /// `prev_receipt_hash` is not the hash of the last receipt.
    #[error("prev_receipt_hash does not match the last receipt")]
    PrevReceiptHash,
    /// `request_hash` differs from the hash of the request the tenant sent.
    #[error("request_hash does not match the request sent")]
    RequestHash,
    /// `request_ct_hash` differs from the hash of the OHTTP request sent.
    #[error("request_ct_hash does not match the encrypted request sent")]
    RequestCtHash,
    /// `response_hash` differs from the hash of the normalised response received.
    #[error("response_hash does not match the response received")]
    ResponseHash,
    /// `response_ct_hash` differs from the hash of the OHTTP response received.
    #[error("response_ct_hash does not match the encrypted response received")]
    ResponseCtHash,
    /// `version` is not 1.
    #[error("unsupported receipt version {0}")]
    UnsupportedVersion(u32),
    /// `channel_id` is not this channel's.
    #[error("receipt is for another channel")]
    WrongChannel,
    /// A newly verified keyset names another operator account than the channel's `host`.
    #[error("the keyset's host_account is not the channel's host")]
    WrongHost,
}

/// What the tenant computed itself for one call, to compare with the receipt's hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallBinding {
    /// [`crate::request_hash`] of the request body sent.
    pub request_hash: B256,
    /// Normalised response hash of the response received.
    pub response_hash: B256,
    /// [`crate::ciphertext_hash`] of the OHTTP request sent.
    pub request_ct_hash: B256,
    /// [`crate::ciphertext_hash`] of the OHTTP response received.
    pub response_ct_hash: B256,
}

/// The tenant's view of a channel: applies the SPUR-IC checks to each receipt in order.
///
/// A receipt must be signed by the receipt key of the bundle the tenant verified last and name that key and
/// keyset. The channel belongs to the host's operator account (`state.host`), not to one key: after the agent
/// restarts, the tenant verifies the new bundle and continues the same chain with
/// [`ReceiptChain::resume_with_key`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptChain {
    domain: Domain,
    host_key: HostVerifyingKey,
    keyset_hash: B256,
    state: ChannelState,
}

impl ReceiptChain {
    /// Starts checking from `state` (the open state, or the last counter-signed one when resuming). The host key
    /// and keyset hash are those of the verified evidence bundle.
    pub fn new(
        domain: Domain,
        host_key: HostVerifyingKey,
        keyset_hash: B256,
        state: ChannelState,
    ) -> Self {
        Self {
            domain,
            host_key,
            keyset_hash,
            state,
        }
    }

    /// The state after the last accepted receipt (what the tenant signs next).
    pub fn state(&self) -> &ChannelState {
        &self.state
    }

    /// The receipt key receipts are checked against.
    pub fn host_key(&self) -> &HostVerifyingKey {
        &self.host_key
    }

    /// The keyset hash receipts must carry.
    pub fn keyset_hash(&self) -> &B256 {
        &self.keyset_hash
    }

    /// Continues the channel with a newly verified receipt key and keyset (the agent restarted and attested a
    /// new boot key). `host_account` is the new keyset's: it must be the channel's `host`, or the new key
    /// belongs to another operator and nothing changes ([`ReceiptError::WrongHost`]). The sequence goes on
    /// from the last accepted state; receipts signed by the old key are no longer accepted.
    pub fn resume_with_key(
        &mut self,
        host_account: &Address,
        host_key: HostVerifyingKey,
        keyset_hash: B256,
    ) -> Result<(), ReceiptError> {
        if *host_account != self.state.host {
            return Err(ReceiptError::WrongHost);
        }
        self.host_key = host_key;
        self.keyset_hash = keyset_hash;
        Ok(())
    }

    /// The state that closes the channel cooperatively: the current one with `is_final` set. The tenant signs
    /// it; the host may counter-sign it.
    pub fn final_state(&self) -> ChannelState {
        ChannelState {
            is_final: true,
            ..self.state.clone()
        }
    }

    /// The EIP-712 domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// Checks `signed` against the chain without changing it; returns the receipt hash and the next state.
    pub fn check(&self, signed: &SignedReceipt) -> Result<(B256, ChannelState), ReceiptError> {
        let r = &signed.receipt;
        if r.version != PROTOCOL_VERSION {
            return Err(ReceiptError::UnsupportedVersion(r.version));
        }
        if r.channel_id != self.state.channel_id {
            return Err(ReceiptError::WrongChannel);
        }
        if self.state.is_final {
            return Err(ReceiptError::Final);
        }
        // The receipt names the current boot's key, the one the tenant verified last; the channel itself
        // belongs to the operator account (`state.host`), which the caller matched with the keyset.
        if r.host_key_id != self.host_key.key_id() {
            return Err(ReceiptError::HostKeyId);
        }
        if r.keyset_hash != self.keyset_hash {
            return Err(ReceiptError::KeysetHash);
        }
        let expected = self
            .state
            .turn
            .checked_add(1)
            .ok_or(ReceiptError::CallSeq {
                expected: 0,
                actual: r.call_seq,
            })?;
        if r.call_seq != expected {
            return Err(ReceiptError::CallSeq {
                expected,
                actual: r.call_seq,
            });
        }
        if r.prev_receipt_hash != self.state.last_receipt_hash {
            return Err(ReceiptError::PrevReceiptHash);
        }
        let digest = r.signing_digest(&self.domain);
        self.host_key
            .verify_prehash(&digest, &signed.host_signature)
            .map_err(ReceiptError::HostSignature)?;
        if amount(r.tokens_in, r.price_in, r.tokens_out, r.price_out) != Some(r.amount) {
            return Err(ReceiptError::Amount { actual: r.amount });
        }
        if self.state.cumulative.checked_add(r.amount) != Some(r.cumulative) {
            return Err(ReceiptError::Cumulative);
        }
        if r.cumulative > self.state.escrow_cap {
            return Err(ReceiptError::OverEscrowCap);
        }
        let next = ChannelState {
            turn: r.call_seq,
            cumulative: r.cumulative,
            last_receipt_hash: digest,
            ..self.state.clone()
        };
        Ok((digest, next))
    }

    /// Checks `signed` and, if every rule holds, advances the chain. Returns the receipt hash.
    pub fn apply(&mut self, signed: &SignedReceipt) -> Result<B256, ReceiptError> {
        let (digest, next) = self.check(signed)?;
        self.state = next;
        Ok(digest)
    }

    /// [`Self::apply`] after comparing the receipt's four content hashes with what the tenant computed.
    pub fn apply_call(
        &mut self,
        signed: &SignedReceipt,
        call: &CallBinding,
    ) -> Result<B256, ReceiptError> {
        check_binding(&signed.receipt, call)?;
        self.apply(signed)
    }
}

/// Compares a receipt's request/response hashes and ciphertext hashes with the tenant's own.
pub fn check_binding(r: &Receipt, call: &CallBinding) -> Result<(), ReceiptError> {
    if r.request_hash != call.request_hash {
        return Err(ReceiptError::RequestHash);
    }
    if r.response_hash != call.response_hash {
        return Err(ReceiptError::ResponseHash);
    }
    if r.request_ct_hash != call.request_ct_hash {
        return Err(ReceiptError::RequestCtHash);
    }
    if r.response_ct_hash != call.response_ct_hash {
        return Err(ReceiptError::ResponseCtHash);
    }
    Ok(())
}

/// Why the agent rejects an incoming channel state. Maps to the error codes of PROTOCOL.md §6 through
/// [`StateError::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// `cumulative` differs from the last receipt's.
    #[error("cumulative does not match the last receipt")]
    CumulativeMismatch,
    /// `last_receipt_hash` differs from the last receipt's hash.
    #[error("last_receipt_hash does not match the last receipt")]
    LastReceiptHash,
    /// The state's cumulative already exceeds its escrow cap.
    #[error("state cumulative exceeds its escrow cap")]
    CumulativeOverCap,
    /// This call's worst case plus `cumulative` exceeds `escrow_cap` (or overflows).
    #[error("worst-case cost exceeds the escrow cap")]
    OverEscrowCap,
    /// `turn` is lower than the agent's last call_seq (a replayed or old state).
    #[error("stale state: turn {turn}, expected {expected}")]
    Stale {
        /// The state's turn.
        turn: u64,
        /// The agent's last call_seq.
        expected: u64,
    },
    /// The tenant signature does not verify or does not recover `tenant`.
    #[error("tenant signature rejected")]
    TenantSignature(#[source] SignatureError),
    /// `turn` is higher than the agent's last call_seq.
    #[error("unknown state: turn {turn}, expected {expected}")]
    Unknown {
        /// The state's turn.
        turn: u64,
        /// The agent's last call_seq.
        expected: u64,
    },
    /// The state is final (`is_final`, signed to close the channel): no call is served on it.
    #[error("the channel state is final")]
    Final,
    /// `channel_id` is not the channel this head tracks.
    #[error("state is for another channel")]
    WrongChannel,
    /// `host` is not this host's operator account.
    #[error("state names another host account")]
    WrongHost,
}

impl StateError {
    /// The error code of PROTOCOL.md §6 and its HTTP status.
    pub const fn code(&self) -> (&'static str, u16) {
        match self {
            Self::Stale { .. } => ("stale_state", 409),
            Self::Unknown { .. } | Self::LastReceiptHash | Self::CumulativeMismatch => {
                ("unknown_state", 409)
            }
            Self::WrongChannel | Self::WrongHost => ("wrong_channel", 409),
            Self::Final => ("channel_final", 409),
            Self::TenantSignature(_) => ("bad_state_signature", 401),
            Self::OverEscrowCap | Self::CumulativeOverCap => ("over_escrow_cap", 402),
        }
    }
}

/// The agent's view of a channel: the last receipt it issued (or the open state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelHead {
    /// The channel.
    pub channel_id: B256,
    /// This host's operator account (the keyset's `host_account`): the channel's `host`. It stays the same
    /// across restarts, while the receipt key changes with each boot.
    pub host: Address,
    /// call_seq of the last receipt; 0 before the first call.
    pub last_call_seq: u64,
    /// Hash of the last receipt; zero before the first call.
    pub last_receipt_hash: B256,
    /// Cumulative of the last receipt; 0 before the first call.
    pub cumulative: u128,
}

/// A channel state the agent accepted for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptedState {
    /// The tenant address the signature recovered to.
    pub tenant: Address,
    /// The state's escrow cap.
    pub escrow_cap: u128,
    /// The call_seq the next receipt must carry.
    pub next_call_seq: u64,
}

impl ChannelHead {
    /// A channel with no calls yet.
    pub fn open(channel_id: B256, host: Address) -> Self {
        Self {
            channel_id,
            host,
            last_call_seq: 0,
            last_receipt_hash: B256::ZERO,
            cumulative: 0,
        }
    }

    /// The head after `receipt` (whose hash is `receipt_hash`) of a channel of the operator account `host`.
    pub fn after(receipt: &Receipt, receipt_hash: B256, host: Address) -> Self {
        Self {
            channel_id: receipt.channel_id,
            host,
            last_call_seq: receipt.call_seq,
            last_receipt_hash: receipt_hash,
            cumulative: receipt.cumulative,
        }
    }

    /// Checks an incoming state for a call whose worst-case cost is `worst_case`
    /// (`prompt_tokens * price_in + max_tokens * price_out`, see [`crate::amount`]).
    pub fn check_state(
        &self,
        signed: &SignedChannelState,
        domain: &Domain,
        worst_case: u128,
    ) -> Result<AcceptedState, StateError> {
        let s = &signed.state;
        if s.host != self.host {
            return Err(StateError::WrongHost);
        }
        if s.channel_id != self.channel_id {
            return Err(StateError::WrongChannel);
        }
        let tenant = signed
            .verify_tenant(domain)
            .map_err(StateError::TenantSignature)?;
        if s.is_final {
            return Err(StateError::Final);
        }
        if s.turn < self.last_call_seq {
            return Err(StateError::Stale {
                turn: s.turn,
                expected: self.last_call_seq,
            });
        }
        if s.turn > self.last_call_seq {
            return Err(StateError::Unknown {
                turn: s.turn,
                expected: self.last_call_seq,
            });
        }
        if s.last_receipt_hash != self.last_receipt_hash {
            return Err(StateError::LastReceiptHash);
        }
        if s.cumulative != self.cumulative {
            return Err(StateError::CumulativeMismatch);
        }
        if s.cumulative > s.escrow_cap {
            return Err(StateError::CumulativeOverCap);
        }
        match s.cumulative.checked_add(worst_case) {
            Some(total) if total <= s.escrow_cap => {}
            _ => return Err(StateError::OverEscrowCap),
        }
        let next_call_seq = self
            .last_call_seq
            .checked_add(1)
            .ok_or(StateError::Unknown {
                turn: s.turn,
                expected: self.last_call_seq,
            })?;
        Ok(AcceptedState {
            tenant,
            escrow_cap: s.escrow_cap,
            next_call_seq,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::WireMessage as _;
    use crate::testutil::*;
    use crate::{HostSigningKey, TenantSigner};

    fn chain() -> ReceiptChain {
        ReceiptChain::new(
            DOMAIN,
            host().verifying_key(),
            crate::keyset_hash(&keyset().encode()),
            open_state(),
        )
    }

    /// Applies `edit` to a valid first receipt, re-signs it, and returns what the chain says.
    fn first_with(edit: impl FnOnce(&mut Receipt)) -> Result<B256, ReceiptError> {
        let mut r = receipt_after(&open_state(), 10, 20);
        edit(&mut r);
        chain().apply(&signed_receipt(r))
    }

    #[test]
    fn a_valid_sequence_is_accepted() {
        let mut c = chain();
        let r1 = signed_receipt(receipt_after(c.state(), 10, 20));
        let h1 = c.apply(&r1).unwrap();
        assert_eq!(h1, r1.receipt.signing_digest(&DOMAIN));
        let r2 = signed_receipt(receipt_after(c.state(), 5, 7));
        assert_eq!(r2.receipt.prev_receipt_hash, h1);
        let h2 = c.apply(&r2).unwrap();
        assert_eq!(c.state().turn, 2);
        assert_eq!(c.state().cumulative, 130 + 50);
        assert_eq!(c.state().last_receipt_hash, h2);
        // Replaying an accepted receipt fails on call_seq.
        assert!(matches!(
            c.apply(&r2),
            Err(ReceiptError::CallSeq {
                expected: 3,
                actual: 2
            })
        ));
    }

    #[test]
    fn rule_version() {
        assert!(matches!(
            first_with(|r| r.version = 2),
            Err(ReceiptError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn rule_channel() {
        assert!(matches!(
            first_with(|r| r.channel_id = B256([0xee; 32])),
            Err(ReceiptError::WrongChannel)
        ));
    }

    #[test]
    fn rule_host_key_id() {
        assert!(matches!(
            first_with(|r| r.host_key_id = B256([0xee; 32])),
            Err(ReceiptError::HostKeyId)
        ));
    }

    #[test]
    fn rule_keyset_hash() {
        assert!(matches!(
            first_with(|r| r.keyset_hash = B256([0xee; 32])),
            Err(ReceiptError::KeysetHash)
        ));
    }

    #[test]
    fn rule_call_seq() {
        assert!(matches!(
            first_with(|r| r.call_seq = 2),
            Err(ReceiptError::CallSeq {
                expected: 1,
                actual: 2
            })
        ));
        assert!(matches!(
            first_with(|r| r.call_seq = 0),
            Err(ReceiptError::CallSeq {
                expected: 1,
                actual: 0
            })
        ));
    }

    #[test]
    fn rule_prev_hash() {
        assert!(matches!(
            first_with(|r| r.prev_receipt_hash = B256([1; 32])),
            Err(ReceiptError::PrevReceiptHash)
        ));
    }

    #[test]
    fn rule_amount() {
        assert!(matches!(
            first_with(|r| r.amount += 1),
            Err(ReceiptError::Amount { .. })
        ));
        assert!(matches!(
            first_with(|r| {
                r.price_out = u128::MAX;
            }),
            Err(ReceiptError::Amount { .. })
        ));
    }

    #[test]
    fn rule_cumulative() {
        assert!(matches!(
            first_with(|r| r.cumulative += 1),
            Err(ReceiptError::Cumulative)
        ));
    }

    #[test]
    fn rule_escrow_cap() {
        assert!(matches!(
            first_with(|r| {
                r.tokens_out = 2_000;
                r.amount = 30 + 10_000;
                r.cumulative = r.amount;
            }),
            Err(ReceiptError::OverEscrowCap)
        ));
    }

    #[test]
    fn rule_host_signature() {
        let mut s = signed_receipt(receipt_after(&open_state(), 10, 20));
        s.host_signature.0[10] ^= 1;
        assert!(matches!(
            chain().apply(&s),
            Err(ReceiptError::HostSignature(SignatureError::Mismatch))
        ));
        // An altered field invalidates the signature (the receipt is not re-signed here).
        let mut s = signed_receipt(receipt_after(&open_state(), 10, 20));
        s.receipt.response_hash = B256([0xee; 32]);
        assert!(matches!(
            chain().apply(&s),
            Err(ReceiptError::HostSignature(SignatureError::Mismatch))
        ));
        // Signed by another key but naming the attested key id.
        let other = HostSigningKey::from_bytes(&[0x99; 32]).unwrap();
        let s = other.sign_receipt(receipt_after(&open_state(), 10, 20), &DOMAIN);
        assert!(matches!(
            chain().apply(&s),
            Err(ReceiptError::HostSignature(SignatureError::Mismatch))
        ));
        // Signed under another domain.
        let s = host().sign_receipt(
            receipt_after(&open_state(), 10, 20),
            &Domain {
                chain_id: 1,
                ..DOMAIN
            },
        );
        assert!(matches!(
            chain().apply(&s),
            Err(ReceiptError::HostSignature(SignatureError::Mismatch))
        ));
    }

    #[test]
    fn a_failed_check_does_not_advance() {
        let mut c = chain();
        let mut s = signed_receipt(receipt_after(c.state(), 10, 20));
        s.host_signature.0[0] ^= 0x80;
        assert!(c.apply(&s).is_err());
        assert_eq!(c.state(), &open_state());
    }

    #[test]
    fn call_binding_rules() {
        let r = receipt_after(&open_state(), 10, 20);
        let good = CallBinding {
            request_hash: r.request_hash,
            response_hash: r.response_hash,
            request_ct_hash: r.request_ct_hash,
            response_ct_hash: r.response_ct_hash,
        };
        let mut c = chain();
        let s = signed_receipt(r);
        let bad = B256([0xee; 32]);
        assert!(matches!(
            c.apply_call(
                &s,
                &CallBinding {
                    request_hash: bad,
                    ..good
                }
            ),
            Err(ReceiptError::RequestHash)
        ));
        assert!(matches!(
            c.apply_call(
                &s,
                &CallBinding {
                    response_hash: bad,
                    ..good
                }
            ),
            Err(ReceiptError::ResponseHash)
        ));
        assert!(matches!(
            c.apply_call(
                &s,
                &CallBinding {
                    request_ct_hash: bad,
                    ..good
                }
            ),
            Err(ReceiptError::RequestCtHash)
        ));
        assert!(matches!(
            c.apply_call(
                &s,
                &CallBinding {
                    response_ct_hash: bad,
                    ..good
                }
            ),
            Err(ReceiptError::ResponseCtHash)
        ));
        assert_eq!(c.state().turn, 0);
        c.apply_call(&s, &good).unwrap();
        assert_eq!(c.state().turn, 1);
    }

    // ---- agent side ----

    fn head_after_first() -> (ChannelHead, ChannelState) {
        let r = receipt_after(&open_state(), 10, 20);
        let h = r.signing_digest(&DOMAIN);
        let state = ChannelState {
            turn: 1,
            cumulative: r.cumulative,
            last_receipt_hash: h,
            ..open_state()
        };
        (ChannelHead::after(&r, h, HOST_ACCOUNT), state)
    }

    #[test]
    fn state_accepted_at_open_and_after_a_call() {
        let head = ChannelHead::open(open_state().channel_id, HOST_ACCOUNT);
        let ok = head
            .check_state(&signed_state(open_state()), &DOMAIN, 100)
            .unwrap();
        assert_eq!(ok.next_call_seq, 1);
        assert_eq!(ok.tenant, tenant().address());
        let (head, state) = head_after_first();
        let ok = head
            .check_state(&signed_state(state), &DOMAIN, 100)
            .unwrap();
        assert_eq!(ok.next_call_seq, 2);
    }

    #[test]
    fn state_stale() {
        let (head, _) = head_after_first();
        assert!(matches!(
            head.check_state(&signed_state(open_state()), &DOMAIN, 1),
            Err(StateError::Stale {
                turn: 0,
                expected: 1
            })
        ));
    }

    #[test]
    fn state_unknown() {
        let (_, state) = head_after_first();
        let head = ChannelHead::open(open_state().channel_id, HOST_ACCOUNT);
        assert!(matches!(
            head.check_state(&signed_state(state), &DOMAIN, 1),
            Err(StateError::Unknown {
                turn: 1,
                expected: 0
            })
        ));
    }

    #[test]
    fn state_wrong_channel() {
        let (head, state) = head_after_first();
        let s = signed_state(ChannelState {
            channel_id: B256([0xee; 32]),
            ..state
        });
        assert!(matches!(
            head.check_state(&s, &DOMAIN, 1),
            Err(StateError::WrongChannel)
        ));
    }

    #[test]
    fn state_wrong_host() {
        let (head, state) = head_after_first();
        let s = signed_state(ChannelState {
            host: Address([0xee; 20]),
            ..state
        });
        assert!(matches!(
            head.check_state(&s, &DOMAIN, 1),
            Err(StateError::WrongHost)
        ));
    }

    #[test]
    fn state_final_is_never_served() {
        let (head, state) = head_after_first();
        let s = signed_state(ChannelState {
            is_final: true,
            ..state
        });
        assert!(matches!(
            head.check_state(&s, &DOMAIN, 0),
            Err(StateError::Final)
        ));
        assert_eq!(StateError::Final.code(), ("channel_final", 409));
        // Also at open, and counter-signed by the host.
        let head = ChannelHead::open(open_state().channel_id, HOST_ACCOUNT);
        let mut s = signed_state(ChannelState {
            is_final: true,
            ..open_state()
        });
        s.host_signature = Some(host().cosign_state(&s.state, &DOMAIN));
        assert!(matches!(
            head.check_state(&s, &DOMAIN, 0),
            Err(StateError::Final)
        ));
    }

    #[test]
    fn no_receipt_after_a_final_state() {
        let mut c = chain();
        let r1 = signed_receipt(receipt_after(c.state(), 10, 20));
        c.apply(&r1).unwrap();
        let fin = c.final_state();
        assert!(fin.is_final);
        assert_eq!(fin.turn, 1);
        let mut closed = ReceiptChain::new(
            DOMAIN,
            host().verifying_key(),
            crate::keyset_hash(&keyset().encode()),
            fin.clone(),
        );
        let r2 = signed_receipt(receipt_after(c.state(), 1, 1));
        assert!(matches!(closed.apply(&r2), Err(ReceiptError::Final)));
        assert_eq!(closed.state(), &fin);
    }

    /// The agent restarted: a new boot key and keyset, the same operator account. The tenant continues the
    /// channel from its last state with the new key; receipts by the old key are refused from then on.
    #[test]
    fn resume_with_a_new_key_of_the_same_host() {
        let mut c = chain();
        let r1 = signed_receipt(receipt_after(c.state(), 10, 20));
        c.apply(&r1).unwrap();
        let boot2 = HostSigningKey::from_bytes(&[0x12; 32]).unwrap();
        let keyset2 = crate::Keyset {
            receipt_key: boot2.verifying_key().to_sec1(),
            boot_id: [0xb2; 16],
            ..keyset()
        };
        let ks2 = crate::keyset_hash(&keyset2.encode());
        // Another operator's keyset does not continue this channel.
        assert!(matches!(
            c.resume_with_key(&Address([0xee; 20]), boot2.verifying_key(), ks2),
            Err(ReceiptError::WrongHost)
        ));
        assert_eq!(c.host_key(), &host().verifying_key());
        c.resume_with_key(&keyset2.host_account, boot2.verifying_key(), ks2)
            .unwrap();
        let mut r2 = receipt_after(c.state(), 5, 7);
        r2.host_key_id = boot2.verifying_key().key_id();
        r2.keyset_hash = ks2;
        let s2 = boot2.sign_receipt(r2.clone(), &DOMAIN);
        // The same receipt signed by the old key (naming the old key) is refused.
        let old = signed_receipt(Receipt {
            host_key_id: host().verifying_key().key_id(),
            keyset_hash: crate::keyset_hash(&keyset().encode()),
            ..r2
        });
        assert!(matches!(c.check(&old), Err(ReceiptError::HostKeyId)));
        let h2 = c.apply(&s2).unwrap();
        assert_eq!(c.state().turn, 2);
        assert_eq!(c.state().last_receipt_hash, h2);
        assert_eq!(c.state().host, HOST_ACCOUNT);
        // The agent's head after that receipt accepts the tenant's next state.
        let head = ChannelHead::after(&s2.receipt, h2, HOST_ACCOUNT);
        assert_eq!(
            head.check_state(&signed_state(c.state().clone()), &DOMAIN, 0)
                .unwrap()
                .next_call_seq,
            3
        );
    }

    #[test]
    fn state_bad_signature() {
        let (head, state) = head_after_first();
        let mut s = signed_state(state.clone());
        s.tenant_signature.0[5] ^= 1;
        assert!(matches!(
            head.check_state(&s, &DOMAIN, 1),
            Err(StateError::TenantSignature(_))
        ));
        // Signed by someone other than the named tenant.
        let mallory = TenantSigner::from_bytes(&[0x77; 32]).unwrap();
        let s = SignedChannelState {
            tenant_signature: mallory.sign_state(&state, &DOMAIN),
            state,
            host_signature: None,
        };
        assert!(matches!(
            head.check_state(&s, &DOMAIN, 1),
            Err(StateError::TenantSignature(
                SignatureError::UnexpectedSigner
            ))
        ));
    }

    #[test]
    fn state_last_hash_and_cumulative_mismatch() {
        let (head, state) = head_after_first();
        let s = signed_state(ChannelState {
            last_receipt_hash: B256([0xee; 32]),
            ..state.clone()
        });
        assert!(matches!(
            head.check_state(&s, &DOMAIN, 1),
            Err(StateError::LastReceiptHash)
        ));
        let s = signed_state(ChannelState {
            cumulative: state.cumulative - 1,
            ..state
        });
        assert!(matches!(
            head.check_state(&s, &DOMAIN, 1),
            Err(StateError::CumulativeMismatch)
        ));
    }

    #[test]
    fn state_over_cap() {
        let (head, state) = head_after_first();
        let room = state.escrow_cap - state.cumulative;
        assert!(
            head.check_state(&signed_state(state.clone()), &DOMAIN, room)
                .is_ok()
        );
        assert!(matches!(
            head.check_state(&signed_state(state.clone()), &DOMAIN, room + 1),
            Err(StateError::OverEscrowCap)
        ));
        assert!(matches!(
            head.check_state(&signed_state(state.clone()), &DOMAIN, u128::MAX),
            Err(StateError::OverEscrowCap)
        ));
        let s = signed_state(ChannelState {
            escrow_cap: state.cumulative - 1,
            ..state
        });
        assert!(matches!(
            head.check_state(&s, &DOMAIN, 0),
            Err(StateError::CumulativeOverCap)
        ));
    }

    #[test]
    fn state_error_codes() {
        assert_eq!(
            StateError::Stale {
                turn: 0,
                expected: 1
            }
            .code(),
            ("stale_state", 409)
        );
        assert_eq!(
            StateError::Unknown {
                turn: 2,
                expected: 1
            }
            .code(),
            ("unknown_state", 409)
        );
        assert_eq!(StateError::WrongChannel.code(), ("wrong_channel", 409));
        assert_eq!(
            StateError::TenantSignature(SignatureError::Mismatch).code(),
            ("bad_state_signature", 401)
        );
        assert_eq!(StateError::OverEscrowCap.code(), ("over_escrow_cap", 402));
    }

    /// `{:#}` (anyhow) prints the message, then each source: a message must not repeat its source.
    #[test]
    fn signature_errors_print_their_cause_once() {
        let chain = |e: &dyn core::error::Error| alloc::format!("{e}: {}", e.source().unwrap());
        assert_eq!(
            chain(&ReceiptError::HostSignature(SignatureError::Mismatch)),
            "host signature rejected: signature verification failed"
        );
        assert_eq!(
            chain(&StateError::TenantSignature(SignatureError::HighS)),
            "tenant signature rejected: signature s is not low-s normalised"
        );
    }
}
