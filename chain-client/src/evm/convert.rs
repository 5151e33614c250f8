//! Conversions between the core's types and the contract's: [`Address`] and [`B256`] to and from `alloy`'s, a
//! [`Receipt`] to the contract's `Receipt` struct, host signatures to `(r, s)`, P-256 keys to `(x, y)`, a
//! [`Domain`] to `alloy`'s EIP-712 domain, a [`Keyset`] to its bytes, and the core's `ChannelState` to the
//! contract's.

use alloy::primitives::{self, FixedBytes, keccak256};

use super::bindings::DaitSettlement;
use alloy::sol_types::Eip712Domain;

use crate::{
    Address, B256, ChannelState, DOMAIN_NAME, DOMAIN_VERSION, Domain, HostSignature,
    HostVerifyingKey, Keyset, Receipt, TenantSignature, WireMessage,
};

impl From<Address> for primitives::Address {
    fn from(a: Address) -> Self {
        Self::from(a.0)
    }
}

impl From<primitives::Address> for Address {
    fn from(a: primitives::Address) -> Self {
        Self(a.into_array())
    }
}

impl From<B256> for primitives::B256 {
    fn from(b: B256) -> Self {
        Self::from(b.0)
    }
}

impl From<primitives::B256> for B256 {
    fn from(b: primitives::B256) -> Self {
        Self(b.0)
    }
}

/// The contract's `Receipt`: every member of PROTOCOL.md §5's `Receipt`, with `modelId` as `keccak(utf8 bytes)`
/// (what enters the struct hash), so `receiptDigest` of it equals [`Receipt::signing_digest`].
impl From<&Receipt> for DaitSettlement::Receipt {
    fn from(r: &Receipt) -> Self {
        Self {
            version: r.version,
            channelId: r.channel_id.into(),
            callSeq: r.call_seq,
            hostKeyId: r.host_key_id.into(),
            keysetHash: r.keyset_hash.into(),
            modelIdHash: keccak256(r.model_id.as_bytes()),
            weightHash: r.weight_hash.into(),
            requestHash: r.request_hash.into(),
            responseHash: r.response_hash.into(),
            requestCtHash: r.request_ct_hash.into(),
            responseCtHash: r.response_ct_hash.into(),
            tokensIn: r.tokens_in,
            tokensOut: r.tokens_out,
            priceIn: r.price_in,
            priceOut: r.price_out,
            amount: r.amount,
            cumulative: r.cumulative,
            prevReceiptHash: r.prev_receipt_hash.into(),
            timestamp: r.timestamp,
            seed: r.seed,
            engineBuild: r.engine_build.into(),
            deterministic: r.deterministic,
        }
    }
}

/// The contract's `ChannelState` (protocol version 2: the channel names the host's operator account and carries
/// `isFinal`) from the core's state; its EIP-712 digest is the core's [`ChannelState::signing_digest`].
impl From<&ChannelState> for DaitSettlement::ChannelState {
    fn from(state: &ChannelState) -> Self {
        Self {
            channelId: state.channel_id.into(),
            turn: state.turn,
            cumulative: state.cumulative,
            escrowCap: state.escrow_cap,
            lastReceiptHash: state.last_receipt_hash.into(),
            tenant: state.tenant.into(),
            host: state.host.into(),
            isFinal: state.is_final,
        }
    }
}

/// A host signature `r || s` as the contract's two `bytes32` words.
pub fn host_signature_words(sig: &HostSignature) -> (FixedBytes<32>, FixedBytes<32>) {
    let (r, s) = sig.0.split_at(32);
    (FixedBytes::from_slice(r), FixedBytes::from_slice(s))
}

/// A host P-256 public key as the contract's `(x, y)` words (the SEC1 uncompressed point without its `04` tag).
pub fn host_key_words(key: &HostVerifyingKey) -> (FixedBytes<32>, FixedBytes<32>) {
    let sec1 = key.to_sec1();
    (
        FixedBytes::from_slice(&sec1[1..33]),
        FixedBytes::from_slice(&sec1[33..65]),
    )
}

/// A tenant signature as the contract's `bytes` (`r || s || v`, `v` 27 or 28).
pub fn tenant_signature_bytes(sig: &TenantSignature) -> primitives::Bytes {
    primitives::Bytes::copy_from_slice(&sig.0)
}

/// The EIP-712 domain as `alloy`'s type (name `"dait"`, version `"1"`, chain id, the settlement as verifying
/// contract), e.g. for `SolStruct::eip712_signing_hash`; its separator equals [`Domain::separator`].
pub fn eip712_domain(domain: &Domain) -> Eip712Domain {
    Eip712Domain::new(
        Some(DOMAIN_NAME.into()),
        Some(DOMAIN_VERSION.into()),
        Some(primitives::U256::from(domain.chain_id)),
        Some(domain.settlement.into()),
        None,
    )
}

/// A keyset document's exact bytes, as `submitAttestation` takes them.
pub fn keyset_bytes(keyset: &Keyset) -> primitives::Bytes {
    primitives::Bytes::from(keyset.encode())
}

/// The core's [`Address`] of an `alloy` address (also `Address::from`).
pub fn address(a: primitives::Address) -> Address {
    a.into()
}

/// The core's [`B256`] of an `alloy` word (also `B256::from`).
pub fn b256(b: primitives::B256) -> B256 {
    b.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostSigningKey;

    #[test]
    fn byte_types_round_trip() {
        let a = Address([7; 20]);
        assert_eq!(Address::from(primitives::Address::from(a)), a);
        let b = B256([9; 32]);
        assert_eq!(B256::from(primitives::B256::from(b)), b);
    }

    #[test]
    fn domain_separator_equals_alloys() {
        let domain = Domain {
            chain_id: 31337,
            settlement: Address([0x5e; 20]),
        };
        assert_eq!(
            B256::from(eip712_domain(&domain).separator()),
            domain.separator()
        );
    }

    #[test]
    fn key_and_signature_words() -> Result<(), crate::SignatureError> {
        let key = HostSigningKey::from_bytes(&[0x11; 32])?;
        let vk = key.verifying_key();
        let (x, y) = host_key_words(&vk);
        let sec1 = vk.to_sec1();
        assert_eq!(sec1[0], 4);
        assert_eq!(x.as_slice(), &sec1[1..33]);
        assert_eq!(y.as_slice(), &sec1[33..]);
        let sig = key.sign_prehash(&B256([1; 32]));
        let (r, s) = host_signature_words(&sig);
        assert_eq!([r.as_slice(), s.as_slice()].concat(), sig.0);
        Ok(())
    }
}
