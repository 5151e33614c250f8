//! Typed, validated views of the protobuf messages, and their decoding rules.
//!
//! Decoding (PROTOCOL.md §8) caps the input size, rejects any input that does not re-encode to exactly the same
//! bytes (unknown fields, repeated or out-of-order fields, explicit default values), and checks the length of
//! every fixed-size field, naming the field in the error.

use alloc::string::String;
use alloc::vec::Vec;

use base64::Engine as _;
use prost::Message as _;

use crate::keys::{HostSignature, TenantSignature};
use crate::proto;
use crate::types::{Address, B256};

/// Largest accepted encoded [`Keyset`].
pub const MAX_KEYSET_LEN: usize = 16 * 1024;
/// Largest accepted encoded [`SignedReceipt`] (and [`Receipt`]).
pub const MAX_RECEIPT_LEN: usize = 4 * 1024;
/// Largest accepted encoded [`SignedChannelState`] (and [`ChannelState`]).
pub const MAX_STATE_LEN: usize = 1024;
/// Largest accepted encoded [`proto::EvidenceBundle`].
pub const MAX_BUNDLE_LEN: usize = 4 * 1024 * 1024;
/// Longest accepted [`Receipt::model_id`], in bytes.
pub const MAX_MODEL_ID_LEN: usize = 256;
/// The `version` field of `Keyset`, `Receipt` and `EvidenceBundle`, the only one this crate speaks. PROTOCOL.md
/// version 2 changed `ChannelState` (which has no version field: its EIP-712 type hash and its 20-byte field 7
/// tell the versions apart) and left these messages at 1.
pub const PROTOCOL_VERSION: u32 = 1;

/// Why bytes could not be decoded into a typed message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Base64url text was malformed.
    #[error("invalid base64url in {what}")]
    Base64 {
        /// The message being decoded.
        what: &'static str,
    },
    /// A field has the wrong length.
    #[error("{field}: expected {expected} bytes, got {actual}")]
    InvalidLength {
        /// Field name (protobuf name).
        field: &'static str,
        /// Required length.
        expected: usize,
        /// Length found.
        actual: usize,
    },
    /// A field has a value outside its domain.
    #[error("{field}: invalid value")]
    InvalidValue {
        /// Field name (protobuf name).
        field: &'static str,
    },
    /// A required sub-message is absent.
    #[error("{field}: missing")]
    Missing {
        /// Field name (protobuf name).
        field: &'static str,
    },
    /// The bytes are valid protobuf but not the canonical encoding of the message (unknown, duplicated or
    /// out-of-order fields, or explicitly encoded default values).
    #[error("{what}: not the canonical encoding (unknown or non-canonical fields)")]
    NonCanonical {
        /// The message being decoded.
        what: &'static str,
    },
    /// Protobuf decoding failed (truncated or malformed input).
    #[error("{what}: malformed protobuf")]
    Protobuf {
        /// The message being decoded.
        what: &'static str,
        /// The cause.
        #[source]
        source: prost::DecodeError,
    },
    /// The input exceeds the size cap.
    #[error("{what}: {actual} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The message being decoded.
        what: &'static str,
        /// The cap.
        max: usize,
        /// Input length.
        actual: usize,
    },
    /// A string field is longer than allowed.
    #[error("{field}: {actual} bytes exceeds the limit of {max}")]
    TooLong {
        /// Field name (protobuf name).
        field: &'static str,
        /// The cap.
        max: usize,
        /// Field length.
        actual: usize,
    },
    /// The `version` field is not one this crate supports.
    #[error("{what}: unsupported version {version}")]
    UnsupportedVersion {
        /// The message being decoded.
        what: &'static str,
        /// The version found.
        version: u32,
    },
}

/// Decodes `bytes` as `M`, capped at `max` bytes, and requires the canonical encoding.
pub(crate) fn decode_canonical<M: prost::Message + Default>(
    what: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<M, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            what,
            max,
            actual: bytes.len(),
        });
    }
    let msg = M::decode(bytes).map_err(|source| DecodeError::Protobuf { what, source })?;
    if msg.encoded_len() != bytes.len() || msg.encode_to_vec() != bytes {
        return Err(DecodeError::NonCanonical { what });
    }
    Ok(msg)
}

/// A wire message: a typed, validated view of a protobuf message, encoded and decoded one way for every type
/// (like rustls' `Codec`). Import the trait to call its methods: `use dait_chain_client::WireMessage;`.
pub trait WireMessage: Sized {
    /// The protobuf message (section 8 of PROTOCOL.md).
    type Proto: prost::Message + Default;
    /// The message's name in errors (the protobuf name in snake case).
    const NAME: &'static str;
    /// Largest accepted encoding, in bytes.
    const MAX_LEN: usize;

    /// The protobuf form.
    fn to_proto(&self) -> Self::Proto;

    /// Validates the protobuf form.
    fn from_proto(p: &Self::Proto) -> Result<Self, DecodeError>;

    /// Encodes to protobuf.
    fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// Decodes and validates: size cap ([`Self::MAX_LEN`]), canonical encoding, then [`Self::from_proto`].
    /// Signatures are not checked.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_proto(&decode_canonical(Self::NAME, bytes, Self::MAX_LEN)?)
    }

    /// base64url (no padding) of the encoding: the form of the `x-dait-receipt` and `x-dait-state` header values
    /// (PROTOCOL.md §6).
    fn to_header_value(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.encode())
    }

    /// Parses a header value ([`Self::to_header_value`]); text longer than the base64 of [`Self::MAX_LEN`]
    /// bytes is refused before decoding.
    fn from_header_value(text: &str) -> Result<Self, DecodeError> {
        // base64 expands 3 bytes into 4 characters; refuse text that cannot decode to at most `MAX_LEN` bytes.
        let cap = Self::MAX_LEN.saturating_mul(4) / 3 + 4;
        if text.len() > cap {
            return Err(DecodeError::TooLarge {
                what: Self::NAME,
                max: cap,
                actual: text.len(),
            });
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| DecodeError::Base64 { what: Self::NAME })?;
        Self::decode(&bytes)
    }
}

fn fixed<const N: usize>(field: &'static str, bytes: &[u8]) -> Result<[u8; N], DecodeError> {
    <[u8; N]>::try_from(bytes).map_err(|_| DecodeError::InvalidLength {
        field,
        expected: N,
        actual: bytes.len(),
    })
}

fn b256(field: &'static str, bytes: &[u8]) -> Result<B256, DecodeError> {
    fixed::<32>(field, bytes).map(B256)
}

fn address(field: &'static str, bytes: &[u8]) -> Result<Address, DecodeError> {
    fixed::<20>(field, bytes).map(Address)
}

fn u128_be(field: &'static str, bytes: &[u8]) -> Result<u128, DecodeError> {
    fixed::<16>(field, bytes).map(u128::from_be_bytes)
}

fn version(what: &'static str, version: u32) -> Result<u32, DecodeError> {
    if version == PROTOCOL_VERSION {
        Ok(version)
    } else {
        Err(DecodeError::UnsupportedVersion { what, version })
    }
}

/// Freshness of an attestation (PROTOCOL.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Freshness {
    /// Kind 1: a 32-byte nonce chosen by the tenant.
    TenantNonce([u8; 32]),
    /// Kind 2: the chain's epoch nonce.
    ChainEpoch {
        /// Epoch number.
        epoch: u64,
        /// The epoch's 32-byte nonce.
        nonce: [u8; 32],
    },
}

impl Freshness {
    /// The kind byte in `report_data`: 1 or 2.
    pub const fn kind(&self) -> u8 {
        match self {
            Self::TenantNonce(_) => 1,
            Self::ChainEpoch { .. } => 2,
        }
    }

    /// The epoch, or 0 for a tenant nonce.
    pub const fn epoch(&self) -> u64 {
        match self {
            Self::TenantNonce(_) => 0,
            Self::ChainEpoch { epoch, .. } => *epoch,
        }
    }

    /// The 32-byte nonce.
    pub const fn nonce(&self) -> &[u8; 32] {
        match self {
            Self::TenantNonce(n) | Self::ChainEpoch { nonce: n, .. } => n,
        }
    }

    /// The protobuf form.
    pub fn to_proto(&self) -> proto::Freshness {
        proto::Freshness {
            kind: u32::from(self.kind()),
            epoch: self.epoch(),
            nonce: self.nonce().to_vec(),
        }
    }

    /// Validates the protobuf form: kind 1 (epoch must be 0) or 2, nonce 32 bytes.
    pub fn from_proto(p: &proto::Freshness) -> Result<Self, DecodeError> {
        let nonce = fixed::<32>("freshness.nonce", &p.nonce)?;
        match (p.kind, p.epoch) {
            (1, 0) => Ok(Self::TenantNonce(nonce)),
            (1, _) => Err(DecodeError::InvalidValue {
                field: "freshness.epoch",
            }),
            (2, epoch) => Ok(Self::ChainEpoch { epoch, nonce }),
            _ => Err(DecodeError::InvalidValue {
                field: "freshness.kind",
            }),
        }
    }
}

/// The keyset document (PROTOCOL.md §2). Its hash is taken over the exact bytes served, so keep the bytes you
/// decoded from (or encoded) and hash those with [`crate::keyset_hash`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Keyset {
    /// Receipt signing key, P-256 SEC1 uncompressed.
    pub receipt_key: [u8; 65],
    /// RFC 9458 §3 OHTTP key configuration.
    pub ohttp_key_config: Vec<u8>,
    /// DER SubjectPublicKeyInfo of the TLS key.
    pub tls_spki: Vec<u8>,
    /// EIP-712 chain id.
    pub chain_id: u64,
    /// EIP-712 verifying contract.
    pub settlement: Address,
    /// Unix seconds.
    pub created_at: u64,
    /// Random per boot.
    pub boot_id: [u8; 16],
    /// Operator's chain account (may be zero).
    pub host_account: Address,
}

impl Keyset {
    /// `H256(receipt_key)`.
    pub fn host_key_id(&self) -> B256 {
        crate::hash::host_key_id(&self.receipt_key)
    }

    /// The EIP-712 domain the host signs under.
    pub fn domain(&self) -> crate::Domain {
        crate::Domain {
            chain_id: self.chain_id,
            settlement: self.settlement,
        }
    }
}

impl WireMessage for Keyset {
    type Proto = proto::Keyset;
    const NAME: &'static str = "keyset";
    const MAX_LEN: usize = MAX_KEYSET_LEN;

    /// The protobuf form.
    fn to_proto(&self) -> Self::Proto {
        proto::Keyset {
            version: PROTOCOL_VERSION,
            receipt_key: self.receipt_key.to_vec(),
            ohttp_key_config: self.ohttp_key_config.clone(),
            tls_spki: self.tls_spki.clone(),
            chain_id: self.chain_id,
            settlement: self.settlement.0.to_vec(),
            created_at: self.created_at,
            boot_id: self.boot_id.to_vec(),
            host_account: self.host_account.0.to_vec(),
        }
    }

    /// Validates the protobuf form.
    fn from_proto(p: &Self::Proto) -> Result<Self, DecodeError> {
        version(Self::NAME, p.version)?;
        let receipt_key = fixed::<65>("keyset.receipt_key", &p.receipt_key)?;
        if receipt_key[0] != 0x04 {
            return Err(DecodeError::InvalidValue {
                field: "keyset.receipt_key",
            });
        }
        if p.ohttp_key_config.is_empty() {
            return Err(DecodeError::Missing {
                field: "keyset.ohttp_key_config",
            });
        }
        if p.tls_spki.is_empty() {
            return Err(DecodeError::Missing {
                field: "keyset.tls_spki",
            });
        }
        Ok(Self {
            receipt_key,
            ohttp_key_config: p.ohttp_key_config.clone(),
            tls_spki: p.tls_spki.clone(),
            chain_id: p.chain_id,
            settlement: address("keyset.settlement", &p.settlement)?,
            created_at: p.created_at,
            boot_id: fixed::<16>("keyset.boot_id", &p.boot_id)?,
            host_account: address("keyset.host_account", &p.host_account)?,
        })
    }
}

/// A receipt (PROTOCOL.md §4); field docs give the EIP-712 member name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// `version` (uint32); 1.
    pub version: u32,
    /// `channelId` (bytes32).
    pub channel_id: B256,
    /// `callSeq` (uint64): 1, 2, … gapless.
    pub call_seq: u64,
    /// `hostKeyId` (bytes32).
    pub host_key_id: B256,
    /// `keysetHash` (bytes32).
    pub keyset_hash: B256,
    /// `modelId` (string), at most [`MAX_MODEL_ID_LEN`] bytes.
    pub model_id: String,
    /// `weightHash` (bytes32).
    pub weight_hash: B256,
    /// `requestHash` (bytes32).
    pub request_hash: B256,
    /// `responseHash` (bytes32).
    pub response_hash: B256,
    /// `requestCtHash` (bytes32).
    pub request_ct_hash: B256,
    /// `responseCtHash` (bytes32).
    pub response_ct_hash: B256,
    /// `tokensIn` (uint64).
    pub tokens_in: u64,
    /// `tokensOut` (uint64).
    pub tokens_out: u64,
    /// `priceIn` (uint128).
    pub price_in: u128,
    /// `priceOut` (uint128).
    pub price_out: u128,
    /// `amount` (uint128) = tokens_in*price_in + tokens_out*price_out.
    pub amount: u128,
    /// `cumulative` (uint128).
    pub cumulative: u128,
    /// `prevReceiptHash` (bytes32); zero for call 1.
    pub prev_receipt_hash: B256,
    /// `timestamp` (uint64), unix seconds.
    pub timestamp: u64,
    /// `seed` (uint64).
    pub seed: u64,
    /// `engineBuild` (bytes32).
    pub engine_build: B256,
    /// `deterministic` (bool).
    pub deterministic: bool,
}

impl WireMessage for Receipt {
    type Proto = proto::Receipt;
    const NAME: &'static str = "receipt";
    const MAX_LEN: usize = MAX_RECEIPT_LEN;

    /// The protobuf form.
    fn to_proto(&self) -> Self::Proto {
        proto::Receipt {
            version: self.version,
            channel_id: self.channel_id.0.to_vec(),
            call_seq: self.call_seq,
            host_key_id: self.host_key_id.0.to_vec(),
            keyset_hash: self.keyset_hash.0.to_vec(),
            model_id: self.model_id.clone(),
            weight_hash: self.weight_hash.0.to_vec(),
            request_hash: self.request_hash.0.to_vec(),
            response_hash: self.response_hash.0.to_vec(),
            request_ct_hash: self.request_ct_hash.0.to_vec(),
            response_ct_hash: self.response_ct_hash.0.to_vec(),
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            price_in: self.price_in.to_be_bytes().to_vec(),
            price_out: self.price_out.to_be_bytes().to_vec(),
            amount: self.amount.to_be_bytes().to_vec(),
            cumulative: self.cumulative.to_be_bytes().to_vec(),
            prev_receipt_hash: self.prev_receipt_hash.0.to_vec(),
            timestamp: self.timestamp,
            seed: self.seed,
            engine_build: self.engine_build.0.to_vec(),
            deterministic: self.deterministic,
        }
    }

    /// Validates the protobuf form (version, fixed lengths, model id length).
    fn from_proto(p: &Self::Proto) -> Result<Self, DecodeError> {
        version(Self::NAME, p.version)?;
        if p.model_id.len() > MAX_MODEL_ID_LEN {
            return Err(DecodeError::TooLong {
                field: "receipt.model_id",
                max: MAX_MODEL_ID_LEN,
                actual: p.model_id.len(),
            });
        }
        Ok(Self {
            version: p.version,
            channel_id: b256("receipt.channel_id", &p.channel_id)?,
            call_seq: p.call_seq,
            host_key_id: b256("receipt.host_key_id", &p.host_key_id)?,
            keyset_hash: b256("receipt.keyset_hash", &p.keyset_hash)?,
            model_id: p.model_id.clone(),
            weight_hash: b256("receipt.weight_hash", &p.weight_hash)?,
            request_hash: b256("receipt.request_hash", &p.request_hash)?,
            response_hash: b256("receipt.response_hash", &p.response_hash)?,
            request_ct_hash: b256("receipt.request_ct_hash", &p.request_ct_hash)?,
            response_ct_hash: b256("receipt.response_ct_hash", &p.response_ct_hash)?,
            tokens_in: p.tokens_in,
            tokens_out: p.tokens_out,
            price_in: u128_be("receipt.price_in", &p.price_in)?,
            price_out: u128_be("receipt.price_out", &p.price_out)?,
            amount: u128_be("receipt.amount", &p.amount)?,
            cumulative: u128_be("receipt.cumulative", &p.cumulative)?,
            prev_receipt_hash: b256("receipt.prev_receipt_hash", &p.prev_receipt_hash)?,
            timestamp: p.timestamp,
            seed: p.seed,
            engine_build: b256("receipt.engine_build", &p.engine_build)?,
            deterministic: p.deterministic,
        })
    }
}

/// A receipt with the host's signature. Decoding does not verify the signature: use
/// [`SignedReceipt::verify`] or [`crate::ReceiptChain`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// Host P-256 signature over [`Receipt::signing_digest`].
    pub host_signature: HostSignature,
}

impl WireMessage for SignedReceipt {
    type Proto = proto::SignedReceipt;
    const NAME: &'static str = "signed_receipt";
    const MAX_LEN: usize = MAX_RECEIPT_LEN;

    /// The protobuf form.
    fn to_proto(&self) -> Self::Proto {
        proto::SignedReceipt {
            receipt: Some(self.receipt.to_proto()),
            host_signature: self.host_signature.to_bytes().to_vec(),
        }
    }

    /// Validates the protobuf form.
    fn from_proto(p: &Self::Proto) -> Result<Self, DecodeError> {
        let receipt = p.receipt.as_ref().ok_or(DecodeError::Missing {
            field: "signed_receipt.receipt",
        })?;
        Ok(Self {
            receipt: Receipt::from_proto(receipt)?,
            host_signature: HostSignature(fixed::<64>(
                "signed_receipt.host_signature",
                &p.host_signature,
            )?),
        })
    }
}

/// Channel state (PROTOCOL.md §4); field docs give the EIP-712 member name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelState {
    /// `channelId` (bytes32).
    pub channel_id: B256,
    /// `turn` (uint64): call_seq of the last accepted receipt; 0 at open.
    pub turn: u64,
    /// `cumulative` (uint128): spent up to `turn`.
    pub cumulative: u128,
    /// `escrowCap` (uint128).
    pub escrow_cap: u128,
    /// `lastReceiptHash` (bytes32); zero at open.
    pub last_receipt_hash: B256,
    /// `tenant` (address).
    pub tenant: Address,
    /// `host` (address): the host's operator account, the keyset's `host_account` (PROTOCOL.md §4). The
    /// channel belongs to it, not to one boot's receipt key.
    pub host: Address,
    /// `isFinal` (bool): set only in the state the tenant signs to close the channel cooperatively; the agent
    /// serves no call on a final state.
    pub is_final: bool,
}

impl ChannelState {
    /// The state at open: turn 0, nothing spent, not final.
    pub fn open(channel_id: B256, escrow_cap: u128, tenant: Address, host: Address) -> Self {
        Self {
            channel_id,
            turn: 0,
            cumulative: 0,
            escrow_cap,
            last_receipt_hash: B256::ZERO,
            tenant,
            host,
            is_final: false,
        }
    }
}

impl WireMessage for ChannelState {
    type Proto = proto::ChannelState;
    const NAME: &'static str = "channel_state";
    const MAX_LEN: usize = MAX_STATE_LEN;

    /// The protobuf form.
    fn to_proto(&self) -> Self::Proto {
        proto::ChannelState {
            channel_id: self.channel_id.0.to_vec(),
            turn: self.turn,
            cumulative: self.cumulative.to_be_bytes().to_vec(),
            escrow_cap: self.escrow_cap.to_be_bytes().to_vec(),
            last_receipt_hash: self.last_receipt_hash.0.to_vec(),
            tenant: self.tenant.0.to_vec(),
            host: self.host.0.to_vec(),
            is_final: self.is_final,
        }
    }

    /// Validates the protobuf form.
    fn from_proto(p: &Self::Proto) -> Result<Self, DecodeError> {
        Ok(Self {
            channel_id: b256("channel_state.channel_id", &p.channel_id)?,
            turn: p.turn,
            cumulative: u128_be("channel_state.cumulative", &p.cumulative)?,
            escrow_cap: u128_be("channel_state.escrow_cap", &p.escrow_cap)?,
            last_receipt_hash: b256("channel_state.last_receipt_hash", &p.last_receipt_hash)?,
            tenant: address("channel_state.tenant", &p.tenant)?,
            host: address("channel_state.host", &p.host)?,
            is_final: p.is_final,
        })
    }
}

/// A channel state signed by the tenant and optionally counter-signed by the host. Decoding does not verify
/// the signatures: use [`crate::ChannelHead::check_state`] (agent) or [`SignedChannelState::verify_tenant`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SignedChannelState {
    /// The state.
    pub state: ChannelState,
    /// Tenant secp256k1 signature over [`ChannelState::signing_digest`].
    pub tenant_signature: TenantSignature,
    /// Host P-256 counter-signature over the same digest, if any.
    pub host_signature: Option<HostSignature>,
}

impl WireMessage for SignedChannelState {
    type Proto = proto::SignedChannelState;
    const NAME: &'static str = "signed_channel_state";
    const MAX_LEN: usize = MAX_STATE_LEN;

    /// The protobuf form.
    fn to_proto(&self) -> Self::Proto {
        proto::SignedChannelState {
            state: Some(self.state.to_proto()),
            tenant_signature: self.tenant_signature.to_bytes().to_vec(),
            host_signature: self
                .host_signature
                .map(|s| s.to_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    /// Validates the protobuf form.
    fn from_proto(p: &Self::Proto) -> Result<Self, DecodeError> {
        let state = p.state.as_ref().ok_or(DecodeError::Missing {
            field: "signed_channel_state.state",
        })?;
        let host_signature = if p.host_signature.is_empty() {
            None
        } else {
            Some(HostSignature(fixed::<64>(
                "signed_channel_state.host_signature",
                &p.host_signature,
            )?))
        };
        Ok(Self {
            state: ChannelState::from_proto(state)?,
            tenant_signature: TenantSignature(fixed::<65>(
                "signed_channel_state.tenant_signature",
                &p.tenant_signature,
            )?),
            host_signature,
        })
    }
}

/// Decodes an evidence bundle: size cap ([`MAX_BUNDLE_LEN`]), canonical encoding, version 1, a keyset and a
/// freshness present. The evidence itself is not interpreted here; that is the verifier's job.
pub fn decode_bundle(bytes: &[u8]) -> Result<proto::EvidenceBundle, DecodeError> {
    let b: proto::EvidenceBundle = decode_canonical("evidence_bundle", bytes, MAX_BUNDLE_LEN)?;
    version("evidence_bundle", b.version)?;
    if b.keyset.is_empty() {
        return Err(DecodeError::Missing {
            field: "evidence_bundle.keyset",
        });
    }
    let freshness = b.freshness.as_ref().ok_or(DecodeError::Missing {
        field: "evidence_bundle.freshness",
    })?;
    Freshness::from_proto(freshness)?;
    if b.cpu.as_ref().and_then(|c| c.evidence.as_ref()).is_none() {
        return Err(DecodeError::Missing {
            field: "evidence_bundle.cpu",
        });
    }
    Ok(b)
}

/// Encodes an evidence bundle.
pub fn encode_bundle(bundle: &proto::EvidenceBundle) -> Vec<u8> {
    bundle.encode_to_vec()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use alloc::vec;

    fn encoded_signed_receipt() -> Vec<u8> {
        signed_receipt(receipt_after(&open_state(), 10, 20)).encode()
    }

    #[test]
    fn receipt_round_trip() {
        let s = signed_receipt(receipt_after(&open_state(), 10, 20));
        let bytes = s.encode();
        assert_eq!(SignedReceipt::decode(&bytes).unwrap(), s);
        assert_eq!(
            SignedReceipt::from_header_value(&s.to_header_value()).unwrap(),
            s
        );
        assert!(!s.to_header_value().contains(['=', '+', '/']));
        assert_eq!(Receipt::decode(&s.receipt.encode()).unwrap(), s.receipt);
    }

    #[test]
    fn every_truncation_of_a_signed_receipt_fails() {
        let bytes = encoded_signed_receipt();
        for n in 0..bytes.len() {
            assert!(
                SignedReceipt::decode(&bytes[..n]).is_err(),
                "prefix of {n} bytes decoded"
            );
        }
        // Cut inside the receipt: a malformed protobuf. Cut at the boundary before the signature: the field.
        assert!(matches!(
            SignedReceipt::decode(&bytes[..bytes.len() / 2]),
            Err(DecodeError::Protobuf { .. })
        ));
        assert!(matches!(
            SignedReceipt::decode(&bytes[..bytes.len() - 66]),
            Err(DecodeError::InvalidLength {
                field: "signed_receipt.host_signature",
                expected: 64,
                actual: 0
            })
        ));
    }

    #[test]
    fn trailing_and_unknown_fields_are_rejected() {
        let mut bytes = encoded_signed_receipt();
        bytes.push(0);
        assert!(matches!(
            SignedReceipt::decode(&bytes),
            Err(DecodeError::Protobuf { .. })
        ));
        let mut bytes = encoded_signed_receipt();
        bytes.extend_from_slice(&[0xf8, 0x06, 0x01]); // field 111, varint 1
        assert!(matches!(
            SignedReceipt::decode(&bytes),
            Err(DecodeError::NonCanonical {
                what: "signed_receipt"
            })
        ));
    }

    #[test]
    fn explicit_default_is_not_canonical() {
        // `turn = 0` encoded explicitly (field 2, varint 0) in front of a canonical state.
        let mut bytes = vec![0x10, 0x00];
        bytes.extend_from_slice(&open_state().encode());
        assert!(matches!(
            ChannelState::decode(&bytes),
            Err(DecodeError::NonCanonical { .. })
        ));
    }

    #[test]
    fn fixed_fields_are_checked_by_name() {
        let mut p = receipt_after(&open_state(), 1, 1).to_proto();
        p.response_hash.pop();
        assert!(matches!(
            Receipt::decode(&p.encode_to_vec()),
            Err(DecodeError::InvalidLength {
                field: "receipt.response_hash",
                expected: 32,
                actual: 31
            })
        ));
        let mut p = receipt_after(&open_state(), 1, 1).to_proto();
        p.amount.push(0);
        assert!(matches!(
            Receipt::decode(&p.encode_to_vec()),
            Err(DecodeError::InvalidLength {
                field: "receipt.amount",
                expected: 16,
                actual: 17
            })
        ));
        let mut p = open_state().to_proto();
        p.tenant = vec![];
        assert!(matches!(
            ChannelState::decode(&p.encode_to_vec()),
            Err(DecodeError::InvalidLength {
                field: "channel_state.tenant",
                expected: 20,
                actual: 0
            })
        ));
        // A version 1 state (field 7 = a 32-byte host key id) is rejected by its length.
        let mut p = open_state().to_proto();
        p.host = vec![0xab; 32];
        assert!(matches!(
            ChannelState::decode(&p.encode_to_vec()),
            Err(DecodeError::InvalidLength {
                field: "channel_state.host",
                expected: 20,
                actual: 32
            })
        ));
    }

    #[test]
    fn version_and_model_id_limits() {
        let mut p = receipt_after(&open_state(), 1, 1).to_proto();
        p.version = 2;
        assert!(matches!(
            Receipt::decode(&p.encode_to_vec()),
            Err(DecodeError::UnsupportedVersion {
                what: "receipt",
                version: 2
            })
        ));
        let mut p = receipt_after(&open_state(), 1, 1).to_proto();
        p.model_id = "m".repeat(MAX_MODEL_ID_LEN + 1);
        assert!(matches!(
            Receipt::decode(&p.encode_to_vec()),
            Err(DecodeError::TooLong {
                field: "receipt.model_id",
                ..
            })
        ));
    }

    #[test]
    fn size_caps() {
        let big = vec![0u8; MAX_RECEIPT_LEN + 1];
        assert!(
            matches!(SignedReceipt::decode(&big), Err(DecodeError::TooLarge { actual, .. }) if actual == big.len())
        );
        let big = vec![0u8; MAX_BUNDLE_LEN + 1];
        assert!(matches!(
            decode_bundle(&big),
            Err(DecodeError::TooLarge { .. })
        ));
        let text = "A".repeat(MAX_STATE_LEN * 2);
        assert!(matches!(
            SignedChannelState::from_header_value(&text),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_base64() {
        assert!(matches!(
            SignedReceipt::from_header_value("a+b/"),
            Err(DecodeError::Base64 { .. })
        ));
    }

    #[test]
    fn missing_submessages() {
        let p = proto::SignedReceipt {
            receipt: None,
            host_signature: vec![0; 64],
        };
        assert!(matches!(
            SignedReceipt::decode(&p.encode_to_vec()),
            Err(DecodeError::Missing {
                field: "signed_receipt.receipt"
            })
        ));
        let p = proto::SignedChannelState {
            state: None,
            tenant_signature: vec![0; 65],
            host_signature: vec![],
        };
        assert!(matches!(
            SignedChannelState::decode(&p.encode_to_vec()),
            Err(DecodeError::Missing {
                field: "signed_channel_state.state"
            })
        ));
    }

    #[test]
    fn signed_state_round_trip() {
        let mut s = signed_state(open_state());
        assert_eq!(
            SignedChannelState::from_header_value(&s.to_header_value()).unwrap(),
            s
        );
        s.host_signature = Some(host().cosign_state(&s.state, &DOMAIN));
        assert_eq!(SignedChannelState::decode(&s.encode()).unwrap(), s);
        // A final state round-trips, and `is_final` is field 8 (a varint 1 at the end).
        let fin = ChannelState {
            is_final: true,
            ..open_state()
        };
        let bytes = fin.encode();
        assert_eq!(bytes[bytes.len() - 2..], [0x40, 0x01]);
        assert_eq!(ChannelState::decode(&bytes).unwrap(), fin);
        let mut p = s.to_proto();
        p.host_signature.pop();
        assert!(matches!(
            SignedChannelState::decode(&p.encode_to_vec()),
            Err(DecodeError::InvalidLength {
                field: "signed_channel_state.host_signature",
                ..
            })
        ));
    }

    #[test]
    fn keyset_round_trip_and_checks() {
        let k = keyset();
        let bytes = k.encode();
        assert_eq!(Keyset::decode(&bytes).unwrap(), k);
        assert_eq!(k.domain(), DOMAIN);
        assert_eq!(k.host_key_id(), host().verifying_key().key_id());
        let mut p = k.to_proto();
        p.receipt_key[0] = 2;
        assert!(matches!(
            Keyset::decode(&p.encode_to_vec()),
            Err(DecodeError::InvalidValue {
                field: "keyset.receipt_key"
            })
        ));
        let mut p = k.to_proto();
        p.ohttp_key_config.clear();
        assert!(matches!(
            Keyset::decode(&p.encode_to_vec()),
            Err(DecodeError::Missing {
                field: "keyset.ohttp_key_config"
            })
        ));
        let mut p = k.to_proto();
        p.boot_id.pop();
        assert!(matches!(
            Keyset::decode(&p.encode_to_vec()),
            Err(DecodeError::InvalidLength {
                field: "keyset.boot_id",
                ..
            })
        ));
    }

    #[test]
    fn freshness_rules() {
        let f = Freshness::ChainEpoch {
            epoch: 9,
            nonce: [1; 32],
        };
        assert_eq!(Freshness::from_proto(&f.to_proto()).unwrap(), f);
        let t = Freshness::TenantNonce([2; 32]);
        assert_eq!(Freshness::from_proto(&t.to_proto()).unwrap(), t);
        let mut p = t.to_proto();
        p.epoch = 1;
        assert!(matches!(
            Freshness::from_proto(&p),
            Err(DecodeError::InvalidValue {
                field: "freshness.epoch"
            })
        ));
        p.kind = 3;
        assert!(matches!(
            Freshness::from_proto(&p),
            Err(DecodeError::InvalidValue {
                field: "freshness.kind"
            })
        ));
        p.kind = 1;
        p.epoch = 0;
        p.nonce.pop();
        assert!(matches!(
            Freshness::from_proto(&p),
            Err(DecodeError::InvalidLength {
                field: "freshness.nonce",
                ..
            })
        ));
    }

    #[test]
    fn bundle_rules() {
        let b = bundle();
        assert_eq!(decode_bundle(&encode_bundle(&b)).unwrap(), b);
        let mut x = b.clone();
        x.keyset.clear();
        assert!(matches!(
            decode_bundle(&encode_bundle(&x)),
            Err(DecodeError::Missing {
                field: "evidence_bundle.keyset"
            })
        ));
        let mut x = b.clone();
        x.cpu = None;
        assert!(matches!(
            decode_bundle(&encode_bundle(&x)),
            Err(DecodeError::Missing {
                field: "evidence_bundle.cpu"
            })
        ));
        let mut x = b.clone();
        x.freshness = None;
        assert!(matches!(
            decode_bundle(&encode_bundle(&x)),
            Err(DecodeError::Missing {
                field: "evidence_bundle.freshness"
            })
        ));
        let mut x = b;
        x.version = 0;
        assert!(matches!(
            decode_bundle(&encode_bundle(&x)),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }
}
