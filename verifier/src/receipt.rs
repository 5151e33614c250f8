//! The tenant's SPUR-IC checks on each receipt, and the channel state it counter-signs (PROTOCOL.md §4).
//!
//! A [`Channel`] holds what the tenant last agreed to: the latest channel state it signed. For each call,
//! [`Channel::check`] runs every check on the host's receipt against what the tenant itself saw (request
//! bytes, the normalised response, both ciphertexts) and returns a [`VerifiedReceipt`];
//! [`Channel::accept`] then advances the channel and signs the next [`ChannelState`] with the tenant's
//! wallet key. `check` does not change the channel, so a failed check leaves the last agreed state intact
//! for a dispute.
//!
//! The receipt wire types are defined once, in `dait-chain-client`, and re-exported here.

pub use dait_chain_client::{ChannelState, Receipt, SignedChannelState, SignedReceipt};
use dait_chain_client::{
    B256, CallBinding, DecodeError, Domain, HostVerifyingKey, NormalizeError, NormalizedResponse, ReceiptChain,
    SignatureError, TenantSigner, Usage, ciphertext_hash, request_hash,
};

use crate::bundle::VerifiedBundle;

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
    /// The response carried no receipt.
    #[error("the response carried no receipt")]
    Missing,
    /// The per-token prices changed within the channel.
    #[error("the per-token prices changed within the channel")]
    PriceChanged,
    /// The response received could not be normalised, so its hash cannot be recomputed.
    #[error("the response cannot be normalised")]
    ResponseUnreadable(#[source] NormalizeError),
    /// A sequence, signature, binding or amount rule failed (chain-client's SPUR-IC checks; each rule has its
    /// own variant there: `WrongChannel`, `CallSeq`, `PrevReceiptHash`, `HostSignature`, `KeysetHash`,
    /// `HostKeyId`, `RequestHash`, `ResponseHash`, `RequestCtHash`, `ResponseCtHash`, `Amount`,
    /// `Cumulative`, `OverEscrowCap`, `UnsupportedVersion`).
    #[error(transparent)]
    Rule(#[from] dait_chain_client::ReceiptError),
    /// `tokens_in`/`tokens_out` differ from the usage the engine reported in the response.
    #[error("token counts differ from the response's usage")]
    TokensMismatch,
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

/// One channel between this tenant and one attested host key.
#[derive(Clone, Debug)]
pub struct Channel {
    chain: ReceiptChain,
    state: SignedChannelState,
    prices: Option<(u128, u128)>,
}

impl Channel {
    /// Opens a channel with the host of `bundle`: `channel_id` is derived from the domain, the tenant's
    /// address, the host key id and `salt` (PROTOCOL.md §4); the opening state (turn 0) is signed at once.
    pub fn open(
        bundle: &VerifiedBundle,
        signer: &TenantSigner,
        salt: &B256,
        escrow_cap: u128,
    ) -> Result<Self, ReceiptError> {
        let domain = bundle.domain();
        let tenant = signer.address();
        let channel_id = dait_chain_client::channel_id(&domain, &tenant, bundle.host_key_id(), salt);
        let state = ChannelState::open(channel_id, escrow_cap, tenant, *bundle.host_key_id());
        let host_key = HostVerifyingKey::from_sec1(bundle.receipt_key()).map_err(ReceiptError::BadHostKey)?;
        let tenant_signature = signer.sign_state(&state, &domain);
        Ok(Self {
            chain: ReceiptChain::new(domain, host_key, *bundle.keyset_hash(), state.clone()),
            state: SignedChannelState {
                state,
                tenant_signature,
                host_signature: None,
            },
            prices: None,
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
    /// the binding to what the tenant sent and received. Does not change the channel.
    pub fn check(
        &self,
        signed: SignedReceipt,
        call: &CallEvidence<'_>,
    ) -> Result<VerifiedReceipt, ReceiptError> {
        let (hash, _next) = self.chain.check(&signed)?;
        let r = &signed.receipt;
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
        if self.prices.is_some_and(|p| p != (r.price_in, r.price_out)) {
            return Err(ReceiptError::PriceChanged);
        }
        Ok(VerifiedReceipt { signed, hash })
    }

    /// Accepts a checked receipt: the channel advances to it and the tenant signs the new state. Fails only
    /// if `receipt` was checked against another state of the channel.
    pub fn accept(
        &mut self,
        receipt: &VerifiedReceipt,
        signer: &TenantSigner,
    ) -> Result<&SignedChannelState, ReceiptError> {
        self.chain.apply(receipt.signed())?;
        let state = self.chain.state().clone();
        let tenant_signature = signer.sign_state(&state, self.chain.domain());
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
