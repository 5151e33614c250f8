//! dait's wire protocol core: the messages that cross between tenant, agent and chain, their hashes, their
//! EIP-712 signing digests and their signatures.
//!
//! # What it does
//!
//! - **Wire types** ([`proto`]): the protobuf messages of PROTOCOL.md §8 (`Keyset`, `Freshness`, `Receipt`,
//!   `SignedReceipt`, `ChannelState`, `SignedChannelState`, `EvidenceBundle` and its parts), and typed, validated
//!   views of them ([`Keyset`], [`Freshness`], [`Receipt`], [`SignedReceipt`], [`ChannelState`],
//!   [`SignedChannelState`]) whose decoding caps sizes, rejects non-canonical or unknown encodings and checks
//!   every fixed-size field ([`DecodeError`] names the field). They encode and decode through one trait,
//!   [`WireMessage`] (protobuf, and the base64url form of the `x-dait-receipt`/`x-dait-state` headers).
//! - **Hashes** (PROTOCOL.md §1–4, §11): [`keyset_hash`], [`host_key_id`], [`report_data`], [`gpu_nonce`],
//!   [`gpu_id_hash`], [`tpm_qualifying_data`], [`request_hash`], [`ciphertext_hash`], [`bundle_hash`],
//!   [`channel_id`], and with the `json` feature the normalised `response_hash` ([`NormalizedResponse`], [`StreamNormalizer`]).
//! - **EIP-712 digests** (PROTOCOL.md §5): [`Receipt::signing_digest`] (= the receipt hash) and
//!   [`ChannelState::signing_digest`] under a [`Domain`], so an EVM contract can recompute them from calldata.
//! - **Keys and signatures**: the host's P-256 [`HostSigningKey`] / [`HostVerifyingKey`] (RIP-7212
//!   `P256VERIFY`-compatible `r || s`) and the tenant's secp256k1 [`TenantSigner`] / [`recover_tenant`]
//!   (`ecrecover`-compatible `r || s || v`). Signing is RFC 6979 deterministic and low-s; verification rejects
//!   high-s.
//! - **Runtime event log** ([`runtime_log`], PROTOCOL.md §10): the events the agent measures at boot, the RTMR
//!   extend rule and the log's replay; with the `json` feature its encoding and strict decoding.
//! - **SPUR-IC rules**: [`ReceiptChain`] (tenant: one [`ReceiptError`] variant per rule) and [`ChannelHead`]
//!   (agent: checks an incoming [`SignedChannelState`], one [`StateError`] variant per rule). A channel
//!   belongs to the host's operator account (`ChannelState::host`), so it goes on across agent restarts
//!   ([`ReceiptChain::resume_with_key`]).
//! - **Receipt batches** ([`batch`], PROTOCOL.md §11): the Merkle sum tree a host commits on chain, its
//!   proofs and their verification, and the sample index rule, as the settlement contract computes them.
//! - **EVM settlement client** (feature `evm`, std only): `evm::Settlement`, a typed `alloy` client of the
//!   settlement contract (`contracts/`, bindings generated from its committed artefacts): every contract
//!   function with the core's types, reverts decoded into the contract's custom errors (`evm::EvmError`), event
//!   queries, and `evm::anvil`, a local chain for tests.
//!
//! # Example
//!
//! ```
//! use dait_chain_client::{
//!     Address, B256, ChannelHead, ChannelState, Domain, HostSigningKey, Receipt, ReceiptChain,
//!     SignedChannelState, SignedReceipt, TenantSigner, WireMessage, amount, channel_id,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Keys: in production the host key comes from `HostSigningKey::generate(&mut OsRng)` at boot.
//! let host = HostSigningKey::from_bytes(&[0x11; 32])?;
//! let tenant = TenantSigner::from_bytes(&[0x22; 32])?;
//! let host_key_id = host.verifying_key().key_id();
//! // The operator's chain account, the keyset's `host_account`: the channel belongs to it.
//! let host_account = Address([0xa0; 20]);
//! let domain = Domain { chain_id: 31337, settlement: Address([0x5e; 20]) };
//! let keyset_hash = B256([0x33; 32]);
//!
//! // Tenant opens a channel and signs the open state.
//! let channel = channel_id(&domain, &tenant.address(), &host_account, &B256([0x44; 32]));
//! let open = ChannelState::open(channel, 1_000_000, tenant.address(), host_account);
//! let signed_state = SignedChannelState {
//!     tenant_signature: tenant.sign_state(&open, &domain),
//!     state: open.clone(),
//!     host_signature: None,
//! };
//!
//! // Agent: check the state, serve the call, sign the receipt.
//! let head = ChannelHead::open(channel, host_account);
//! let accepted = head.check_state(&signed_state, &domain, amount(10, 3, 100, 5).ok_or("overflow")?)?;
//! let receipt = Receipt {
//!     version: 1, channel_id: channel, call_seq: accepted.next_call_seq, host_key_id, keyset_hash,
//!     model_id: "smollm2".into(), weight_hash: B256([1; 32]), request_hash: B256([2; 32]),
//!     response_hash: B256([3; 32]), request_ct_hash: B256([4; 32]), response_ct_hash: B256([5; 32]),
//!     tokens_in: 10, tokens_out: 20, price_in: 3, price_out: 5, amount: 130, cumulative: 130,
//!     prev_receipt_hash: B256::ZERO, timestamp: 1_700_000_000, seed: 0, engine_build: B256([6; 32]),
//!     deterministic: true,
//! };
//! let header = host.sign_receipt(receipt, &domain).to_header_value();
//!
//! // Tenant: decode and run the SPUR-IC checks.
//! let mut chain = ReceiptChain::new(domain, host.verifying_key(), keyset_hash, open);
//! let receipt_hash = chain.apply(&SignedReceipt::from_header_value(&header)?)?;
//! assert_eq!(chain.state().turn, 1);
//! assert_eq!(chain.state().last_receipt_hash, receipt_hash);
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `std` | yes | `std` support in the dependencies; enables `json` |
//! | `json` | via `std` | [`NormalizedResponse`], [`StreamNormalizer`], [`canonicalize`] (RFC 8785) using `serde_json`; the runtime event log's JSON form ([`runtime_log::EventLog::encode`], [`runtime_log::replay`]) |
//! | `evm` | no | `evm`: the typed client of the EVM settlement contract over JSON-RPC (`alloy` 2.5.0 pinned; HTTP, or HTTPS with rustls/ring trusting the roots of a CA file), its `sol!` bindings, conversions from the core's types, and the `evm::anvil` test chain; enables `std` |
//!
//! Without default features the crate is `no_std` + `alloc`, builds for `wasm32-unknown-unknown`, and pulls in
//! no OS randomness: key generation takes the RNG as a parameter. `evm` is the only feature that adds a network
//! stack (`alloy`, `reqwest`, `tokio`); nothing else depends on it.
//!
//! # Security
//!
//! - Decoding never trusts its input: sizes are capped ([`MAX_BUNDLE_LEN`], [`MAX_RECEIPT_LEN`], …), only the
//!   canonical protobuf encoding is accepted, and decoding checks structure only. Signatures are checked by
//!   [`SignedReceipt::verify`], [`ReceiptChain`] and [`ChannelHead::check_state`], never by `decode`.
//! - A receipt is only as good as the binding of its host key to attested evidence: callers must take the
//!   [`HostVerifyingKey`] and keyset hash from a verified evidence bundle, not from the receipt.
//! - Secret keys ([`HostSigningKey`], [`TenantSigner`]) have no `Debug` and no export, and are zeroized on drop
//!   (by the underlying `ecdsa` signing keys).
//! - Signatures are deterministic (RFC 6979), so a weak RNG at signing time cannot leak the key; the RNG passed
//!   to `generate` must be a CSPRNG.
//! - The response hash covers the normalised text, finish reasons and token usage only: it proves *what* was
//!   generated, not the exact bytes of the engine's response.
//! - The `evm` client trusts its RPC node for what it reads (views, logs); the contract itself recomputes every
//!   digest and checks every signature from calldata, so a lying node can hide state but not forge a payment.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod batch;
mod channel;
mod eip712;
#[cfg(feature = "evm")]
pub mod evm;
mod hash;
mod keys;
#[cfg(feature = "std")]
mod p256_table;
pub mod proto;
#[cfg(feature = "json")]
pub mod replay;
#[cfg(feature = "json")]
mod response;
pub mod runtime_log;
#[cfg(test)]
mod testutil;
mod types;
mod wire;

pub use channel::{
    AcceptedState, CallBinding, ChannelHead, ReceiptChain, ReceiptError, StateError, check_binding,
};
pub use eip712::{
    CHANNEL_STATE_TYPE, DOMAIN_NAME, DOMAIN_TYPE, DOMAIN_VERSION, Domain, RECEIPT_TYPE,
    receipt_hash, type_hash,
};
pub use hash::{
    amount, bundle_hash, channel_id, ciphertext_hash, gpu_id_hash, gpu_nonce, host_key_id,
    keyset_hash, model_id_hash, report_data, request_hash, response_hash_of_canonical,
    simulated_key_digest, simulated_report_digest, tag, tagged_sha256, tpm_qualifying_data,
};
pub use keys::{
    HostSignature, HostSigningKey, HostVerifyingKey, SignatureError, TenantSignature, TenantSigner,
    recover_tenant,
};
#[cfg(feature = "json")]
pub use response::{
    ChoiceKind, MAX_SSE_LINE, NormalizeError, NormalizedChoice, NormalizedResponse,
    StreamNormalizer, Usage, canonicalize,
};
pub use types::{Address, B256};
pub use wire::{
    ChannelState, DecodeError, Freshness, Keyset, MAX_BUNDLE_LEN, MAX_KEYSET_LEN, MAX_MODEL_ID_LEN,
    MAX_RECEIPT_LEN, MAX_STATE_LEN, PROTOCOL_VERSION, Receipt, SignedChannelState, SignedReceipt,
    WireMessage, decode_bundle, encode_bundle,
};

/// Re-exported so callers pass RNGs of the same trait version.
pub use rand_core;

/// Entry points for fuzz targets (one line each in a `fuzz/` crate outside the workspace). Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::WireMessage as _;

    /// Decodes `data` as every small message and, if it decodes, checks it re-encodes to the same bytes.
    pub fn receipt(data: &[u8]) {
        if let Ok(r) = crate::SignedReceipt::decode(data) {
            assert_eq!(
                r.encode(),
                data,
                "decoded receipt must re-encode identically"
            );
        }
        if let Ok(s) = crate::SignedChannelState::decode(data) {
            assert_eq!(s.encode(), data, "decoded state must re-encode identically");
        }
        if let Ok(k) = crate::Keyset::decode(data) {
            assert_eq!(
                k.encode(),
                data,
                "decoded keyset must re-encode identically"
            );
        }
    }

    /// Decodes `data` as an evidence bundle.
    pub fn bundle(data: &[u8]) {
        if let Ok(b) = crate::decode_bundle(data) {
            assert_eq!(
                crate::encode_bundle(&b),
                data,
                "decoded bundle must re-encode identically"
            );
        }
    }

    /// Feeds `data` to the response normalisers (body and stream).
    #[cfg(feature = "json")]
    pub fn response(data: &[u8]) {
        let _ = crate::NormalizedResponse::from_body(data);
        let mut s = crate::StreamNormalizer::new();
        if s.push(data).is_ok() {
            let _ = s.finish();
        }
    }
}
