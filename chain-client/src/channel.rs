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
    /// The host signature does not verify under the attested receipt key.
    #[error("host signature: {0}")]
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
        if r.host_key_id != self.host_key.key_id() || r.host_key_id != self.state.host_key_id {
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
    #[error("tenant signature: {0}")]
    TenantSignature(#[source] SignatureError),
    /// `turn` is higher than the agent's last call_seq.
    #[error("unknown state: turn {turn}, expected {expected}")]
    Unknown {
        /// The state's turn.
        turn: u64,
        /// The agent's last call_seq.
        expected: u64,
    },
    /// `channel_id` is not the channel this head tracks.
    #[error("state is for another channel")]
    WrongChannel,
    /// `host_key_id` is not this host's.
    #[error("state names another host key")]
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
    /// This host's key id.
    pub host_key_id: B256,
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
    pub fn open(channel_id: B256, host_key_id: B256) -> Self {
        Self {
            channel_id,
            host_key_id,
            last_call_seq: 0,
            last_receipt_hash: B256::ZERO,
            cumulative: 0,
        }
    }

    /// The head after `receipt` (whose hash is `receipt_hash`).
    pub fn after(receipt: &Receipt, receipt_hash: B256) -> Self {
        Self {
            channel_id: receipt.channel_id,
            host_key_id: receipt.host_key_id,
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
        if s.host_key_id != self.host_key_id {
            return Err(StateError::WrongHost);
        }
        if s.channel_id != self.channel_id {
            return Err(StateError::WrongChannel);
        }
        let tenant = signed
            .verify_tenant(domain)
            .map_err(StateError::TenantSignature)?;
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
