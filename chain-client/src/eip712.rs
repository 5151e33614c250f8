//! EIP-712 signing digests (PROTOCOL.md §5): fixed field order, exact type strings, Keccak-256.

use sha3::{Digest as _, Keccak256};

use crate::types::{Address, B256};
use crate::wire::{ChannelState, Receipt};

/// The EIP-712 domain type string.
pub const DOMAIN_TYPE: &str =
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";
/// Domain `name`.
pub const DOMAIN_NAME: &str = "dait";
/// Domain `version`.
pub const DOMAIN_VERSION: &str = "1";
/// The receipt type string; members in this order are the struct hash's words.
pub const RECEIPT_TYPE: &str = "Receipt(uint32 version,bytes32 channelId,uint64 callSeq,bytes32 hostKeyId,\
bytes32 keysetHash,string modelId,bytes32 weightHash,bytes32 requestHash,bytes32 responseHash,\
bytes32 requestCtHash,bytes32 responseCtHash,uint64 tokensIn,uint64 tokensOut,uint128 priceIn,\
uint128 priceOut,uint128 amount,uint128 cumulative,bytes32 prevReceiptHash,uint64 timestamp,uint64 seed,\
bytes32 engineBuild,bool deterministic)";
/// The channel state type string.
pub const CHANNEL_STATE_TYPE: &str = "ChannelState(bytes32 channelId,uint64 turn,uint128 cumulative,\
uint128 escrowCap,bytes32 lastReceiptHash,address tenant,bytes32 hostKeyId)";

/// The EIP-712 domain the host and the tenant sign under: name `"dait"`, version `"1"`, and the keyset's chain
/// id and settlement contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Domain {
    /// `chainId` (uint256; a u64 here).
    pub chain_id: u64,
    /// `verifyingContract`.
    pub settlement: Address,
}

pub(crate) fn keccak(parts: &[&[u8]]) -> B256 {
    let mut h = Keccak256::new();
    for p in parts {
        h.update(p);
    }
    B256(h.finalize().into())
}

/// `word(x)` for an unsigned integer.
pub(crate) fn word_u128(x: u128) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[16..].copy_from_slice(&x.to_be_bytes());
    w
}

/// `word(x)` for an address.
pub(crate) fn word_address(a: &Address) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(&a.0);
    w
}

fn word_bool(b: bool) -> [u8; 32] {
    word_u128(u128::from(b))
}

/// `keccak(type string)`.
pub fn type_hash(type_string: &str) -> B256 {
    keccak(&[type_string.as_bytes()])
}

impl Domain {
    /// `domainSeparator = keccak(typeHash || keccak(name) || keccak(version) || word(chainId) ||
    /// word(verifyingContract))`.
    pub fn separator(&self) -> B256 {
        keccak(&[
            &type_hash(DOMAIN_TYPE).0,
            &keccak(&[DOMAIN_NAME.as_bytes()]).0,
            &keccak(&[DOMAIN_VERSION.as_bytes()]).0,
            &word_u128(u128::from(self.chain_id)),
            &word_address(&self.settlement),
        ])
    }

    /// `keccak(0x19 || 0x01 || domainSeparator || structHash)`.
    pub fn digest(&self, struct_hash: &B256) -> B256 {
        keccak(&[&[0x19, 0x01], &self.separator().0, &struct_hash.0])
    }
}

impl Receipt {
    /// EIP-712 `hashStruct(receipt)` under [`RECEIPT_TYPE`].
    pub fn struct_hash(&self) -> B256 {
        keccak(&[
            &type_hash(RECEIPT_TYPE).0,
            &word_u128(u128::from(self.version)),
            &self.channel_id.0,
            &word_u128(u128::from(self.call_seq)),
            &self.host_key_id.0,
            &self.keyset_hash.0,
            &keccak(&[self.model_id.as_bytes()]).0,
            &self.weight_hash.0,
            &self.request_hash.0,
            &self.response_hash.0,
            &self.request_ct_hash.0,
            &self.response_ct_hash.0,
            &word_u128(u128::from(self.tokens_in)),
            &word_u128(u128::from(self.tokens_out)),
            &word_u128(self.price_in),
            &word_u128(self.price_out),
            &word_u128(self.amount),
            &word_u128(self.cumulative),
            &self.prev_receipt_hash.0,
            &word_u128(u128::from(self.timestamp)),
            &word_u128(u128::from(self.seed)),
            &self.engine_build.0,
            &word_bool(self.deterministic),
        ])
    }

    /// The EIP-712 digest the host signs. This is also the receipt hash (`prev_receipt_hash` of the next call).
    pub fn signing_digest(&self, domain: &Domain) -> B256 {
        domain.digest(&self.struct_hash())
    }
}

impl ChannelState {
    /// EIP-712 `hashStruct(state)` under [`CHANNEL_STATE_TYPE`].
    pub fn struct_hash(&self) -> B256 {
        keccak(&[
            &type_hash(CHANNEL_STATE_TYPE).0,
            &self.channel_id.0,
            &word_u128(u128::from(self.turn)),
            &word_u128(self.cumulative),
            &word_u128(self.escrow_cap),
            &self.last_receipt_hash.0,
            &word_address(&self.tenant),
            &self.host_key_id.0,
        ])
    }

    /// The EIP-712 digest the tenant signs and the host counter-signs.
    pub fn signing_digest(&self, domain: &Domain) -> B256 {
        domain.digest(&self.struct_hash())
    }
}

/// The receipt hash: the receipt's EIP-712 digest.
pub fn receipt_hash(receipt: &Receipt, domain: &Domain) -> B256 {
    receipt.signing_digest(domain)
}
