//! EIP-712 signing digests (PROTOCOL.md §5): fixed field order, exact type strings, Keccak-256.

use sha3::{Digest as _, Keccak256};

use crate::types::{Address, B256, hex_array};
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
/// The channel state type string (PROTOCOL.md version 2: `host` is the operator account, `isFinal` marks the
/// state of a cooperative close).
pub const CHANNEL_STATE_TYPE: &str = "ChannelState(bytes32 channelId,uint64 turn,uint128 cumulative,\
uint128 escrowCap,bytes32 lastReceiptHash,address tenant,address host,bool isFinal)";

/// `keccak(RECEIPT_TYPE)`, precomputed (a unit test recomputes it).
const RECEIPT_TYPE_HASH: [u8; 32] =
    hex_array("dcc8bba606db3716656c48d57673682a7a796ddc7f6dde2dd308da712a6dc666");
/// `keccak(CHANNEL_STATE_TYPE)`, precomputed (a unit test recomputes it).
const CHANNEL_STATE_TYPE_HASH: [u8; 32] =
    hex_array("f1c828715f65138c7b63c9103ca0890db290cca2e20a384aeec0df5c4cc5ef59");
/// `keccak(DOMAIN_TYPE)`, precomputed (a unit test recomputes it).
const DOMAIN_TYPE_HASH: [u8; 32] =
    hex_array("8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f");
/// `keccak("dait")`, precomputed.
const DOMAIN_NAME_HASH: [u8; 32] =
    hex_array("549ae1897cfbf20d0afdc0bdc0d279473912e342c95d0e6d82c1bbd6a31a3831");
/// `keccak("1")`, precomputed.
const DOMAIN_VERSION_HASH: [u8; 32] =
    hex_array("c89efdaa54c0f20c7adf612882df0950f5a951637e0307cdcb4c672f298b8bc6");

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

pub(crate) fn word_bool(b: bool) -> [u8; 32] {
    word_u128(u128::from(b))
}

/// `keccak(type string)`.
pub fn type_hash(type_string: &str) -> B256 {
    keccak(&[type_string.as_bytes()])
}

/// The domain separator for any `name` and `version` (the crate fixes them to `"dait"` and `"1"`).
#[cfg(test)]
fn separator(name: &str, version: &str, chain_id: u64, contract: &Address) -> B256 {
    keccak(&[
        &type_hash(DOMAIN_TYPE).0,
        &keccak(&[name.as_bytes()]).0,
        &keccak(&[version.as_bytes()]).0,
        &word_u128(u128::from(chain_id)),
        &word_address(contract),
    ])
}

impl Domain {
    /// `domainSeparator = keccak(typeHash || keccak(name) || keccak(version) || word(chainId) ||
    /// word(verifyingContract))`.
    pub fn separator(&self) -> B256 {
        keccak(&[
            &DOMAIN_TYPE_HASH,
            &DOMAIN_NAME_HASH,
            &DOMAIN_VERSION_HASH,
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
            &RECEIPT_TYPE_HASH,
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
            &CHANNEL_STATE_TYPE_HASH,
            &self.channel_id.0,
            &word_u128(u128::from(self.turn)),
            &word_u128(self.cumulative),
            &word_u128(self.escrow_cap),
            &self.last_receipt_hash.0,
            &word_address(&self.tenant),
            &word_address(&self.host),
            &word_bool(self.is_final),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::keys::{TenantSigner, recover_tenant};

    fn h(s: &str) -> B256 {
        B256::from_hex(s).unwrap()
    }

    fn a(s: &str) -> Address {
        Address::from_hex(s).unwrap()
    }

    /// Independent check of the EIP-712 machinery against the "Ether Mail" example of the EIP-712 specification.
    /// The expected domain separator (0xf2ce…090f), struct hash (0xc52c…371e), digest (0xbe60…7bd2) and the
    /// signature by the key keccak("cow") (r = 0x4355…1c9d, s = 0x0729…1562, v = 28) are the published values
    /// that go-ethereum's `signer/core` tests and MetaMask's `eth-sig-util` tests assert; they were looked up in
    /// those projects' test sources, not produced by this crate.
    #[test]
    fn eip712_mail_example_matches_reference() {
        assert_eq!(
            type_hash(DOMAIN_TYPE),
            h("0x8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f")
        );
        let contract = a("0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC");
        let sep = separator("Ether Mail", "1", 1, &contract);
        assert_eq!(
            sep,
            h("0xf2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f")
        );

        let person_t = type_hash("Person(string name,address wallet)");
        let mail_t = type_hash(
            "Mail(Person from,Person to,string contents)Person(string name,address wallet)",
        );
        assert_eq!(
            mail_t,
            h("0xa0cedeb2dc280ba39b857546d74f5549c3a1d7bdc2dd96bf881f76108e23dac2")
        );
        let cow = a("0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826");
        let bob = a("0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB");
        let from = keccak(&[&person_t.0, &keccak(&[b"Cow"]).0, &word_address(&cow)]);
        let to = keccak(&[&person_t.0, &keccak(&[b"Bob"]).0, &word_address(&bob)]);
        let mail = keccak(&[&mail_t.0, &from.0, &to.0, &keccak(&[b"Hello, Bob!"]).0]);
        assert_eq!(
            mail,
            h("0xc52c0ee5d84264471806290a3f2c4cecfc5490626bf912d01f240d7a274b371e")
        );
        let digest = keccak(&[&[0x19, 0x01], &sep.0, &mail.0]);
        assert_eq!(
            digest,
            h("0xbe609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2")
        );

        // The same digest signed with keccak("cow") gives the published RFC 6979 signature.
        let signer = TenantSigner::from_bytes(&keccak(&[b"cow"]).0).unwrap();
        assert_eq!(signer.address(), cow);
        let sig = signer.sign_prehash(&digest);
        let expected = "4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d\
                        07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b91562";
        let mut rs = [0u8; 64];
        crate::types::hex_decode_into(expected, &mut rs).unwrap();
        assert_eq!(&sig.0[..64], &rs[..]);
        assert_eq!(sig.0[64], 28);
        assert_eq!(recover_tenant(&digest, &sig).unwrap(), cow);
    }

    #[test]
    fn precomputed_hashes() {
        assert_eq!(type_hash(RECEIPT_TYPE).0, RECEIPT_TYPE_HASH);
        assert_eq!(type_hash(CHANNEL_STATE_TYPE).0, CHANNEL_STATE_TYPE_HASH);
        assert_eq!(type_hash(DOMAIN_TYPE).0, DOMAIN_TYPE_HASH);
        assert_eq!(keccak(&[DOMAIN_NAME.as_bytes()]).0, DOMAIN_NAME_HASH);
        assert_eq!(keccak(&[DOMAIN_VERSION.as_bytes()]).0, DOMAIN_VERSION_HASH);
        let d = Domain {
            chain_id: 7,
            settlement: Address([3; 20]),
        };
        assert_eq!(
            d.separator(),
            separator(DOMAIN_NAME, DOMAIN_VERSION, 7, &Address([3; 20]))
        );
    }

    #[test]
    fn digests_depend_on_domain() {
        let d1 = Domain {
            chain_id: 1,
            settlement: Address([1; 20]),
        };
        let d2 = Domain {
            chain_id: 2,
            settlement: Address([1; 20]),
        };
        let d3 = Domain {
            chain_id: 1,
            settlement: Address([2; 20]),
        };
        assert_ne!(d1.separator(), d2.separator());
        assert_ne!(d1.separator(), d3.separator());
    }
}
