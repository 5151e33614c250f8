//! Receipt batches (PROTOCOL.md §11): the Merkle sum tree whose root and total a host commits on chain
//! (`commitReceipts(root, count, total)`), the proofs it reveals for sampled leaves, their verification and the
//! sample index rule. The reference is the settlement contract (`contracts/DaitSettlement.sol`:
//! `_merkleSumRoot`, `_node`, `_sampleIndex`); the tests and `tests/vectors/batch.json` pin the same layout.
//!
//! Nodes are pairs (hash, sum):
//!
//! - leaf `i < count`: `hash = keccak(0x00 || receipt_hash_i)`, `sum = amount_i`;
//! - a subtree whose whole leaf range starts at or after `count` is padding, `(0, 0)`, never hashed;
//! - inner node: `hash = keccak(0x01 || left.hash || right.hash || u128be(left.sum) || u128be(right.sum))`,
//!   `sum = left.sum + right.sum` (below 2^128, or the batch is invalid);
//! - `depth = ceil(log2(count))` (one leaf is its own root); root and total are the top node's.
//!
//! A proof for leaf `index` is `depth` siblings from the leaf up; at level `l` the node is `index >> l` and its
//! sibling is on the right when the node is even. On chain it is `2 × depth` words: sibling hash, then sibling
//! sum as a `uint256` ([`SumProof::to_words`]).

use alloc::vec::Vec;

use crate::eip712::{Domain, keccak, word_address, word_u128};
use crate::types::{Address, B256};
use crate::wire::Receipt;

/// Prefix byte of a leaf hash.
pub const LEAF_PREFIX: u8 = 0x00;
/// Prefix byte of an inner node hash.
pub const NODE_PREFIX: u8 = 0x01;

/// Why a batch could not be built or a proof does not verify. Each rule has its own variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// A batch has at least one receipt (the contract's `EmptyBatch`).
    #[error("a batch has no receipts")]
    Empty,
    /// The leaf index is not below the batch's count.
    #[error("leaf index {index} is not below the count {count}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u32,
        /// The batch's count.
        count: u32,
    },
    /// A sibling sum word is not below 2^128 (the contract's `MalformedInput`).
    #[error("sibling sum at level {level} is not a 128-bit amount")]
    MalformedSum {
        /// The proof level (0 = the leaf's sibling).
        level: u32,
    },
    /// A sibling whose leaf range lies entirely at or after `count` is not `(0, 0)`.
    #[error("padding sibling at level {level} is not zero")]
    NonZeroPadding {
        /// The proof level.
        level: u32,
    },
    /// The proof has the wrong number of siblings (or words) for the batch's depth.
    #[error("proof has {actual} siblings, the batch's depth is {expected}")]
    ProofLength {
        /// `depth` siblings (`2 × depth` words).
        expected: usize,
        /// What the proof has.
        actual: usize,
    },
    /// The proof does not lead to the committed root (the contract's `BadProof`).
    #[error("proof does not lead to the committed root")]
    RootMismatch,
    /// A node's sum reached 2^128.
    #[error("sum of amounts overflows 128 bits")]
    SumOverflow,
    /// More receipts than a batch may hold (`count` is a `uint32` on chain).
    #[error("a batch holds at most 2^32 - 1 receipts")]
    TooManyLeaves,
    /// The proof's sum is not the committed total (the contract's `TotalMismatch`).
    #[error("proof sum does not equal the committed total")]
    TotalMismatch,
}

/// A node of the Merkle sum tree: a hash and the sum of the amounts below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SumNode {
    /// The node hash.
    pub hash: B256,
    /// The sum of the leaf amounts below it.
    pub sum: u128,
}

impl SumNode {
    /// A padding subtree: `(0, 0)`.
    pub const PADDING: Self = Self {
        hash: B256::ZERO,
        sum: 0,
    };

    /// The leaf of one receipt: `(keccak(0x00 || receipt_hash), amount)`.
    pub fn leaf(receipt_hash: &B256, amount: u128) -> Self {
        Self {
            hash: leaf_hash(receipt_hash),
            sum: amount,
        }
    }

    /// The leaf of `receipt` under `domain` (its receipt hash and its amount).
    pub fn of_receipt(receipt: &Receipt, domain: &Domain) -> Self {
        Self::leaf(&receipt.signing_digest(domain), receipt.amount)
    }

    /// The inner node over `left` and `right`; [`BatchError::SumOverflow`] when the sum reaches 2^128.
    pub fn parent(left: &Self, right: &Self) -> Result<Self, BatchError> {
        Ok(Self {
            hash: node_hash(left, right),
            sum: left
                .sum
                .checked_add(right.sum)
                .ok_or(BatchError::SumOverflow)?,
        })
    }
}

/// `keccak(0x00 || receipt_hash)`.
pub fn leaf_hash(receipt_hash: &B256) -> B256 {
    keccak(&[&[LEAF_PREFIX], &receipt_hash.0])
}

/// `keccak(0x01 || left.hash || right.hash || u128be(left.sum) || u128be(right.sum))`.
pub fn node_hash(left: &SumNode, right: &SumNode) -> B256 {
    keccak(&[
        &[NODE_PREFIX],
        &left.hash.0,
        &right.hash.0,
        &left.sum.to_be_bytes(),
        &right.sum.to_be_bytes(),
    ])
}

/// `ceil(log2(count))`: the number of levels above the leaves (0 for one leaf).
pub fn depth(count: u32) -> u32 {
    match count {
        0 | 1 => 0,
        // `count - 1` has its highest set bit at ceil(log2(count)) - 1.
        n => u32::BITS - (n - 1).leading_zeros(),
    }
}

/// Whether the subtree at `level` numbered `node` starts at or after `count` (a padding subtree).
fn is_padding(node: u64, level: u32, count: u32) -> bool {
    // node < 2^32 and level <= 32, so the shift stays below 2^64.
    node.checked_shl(level)
        .is_none_or(|first| first >= u64::from(count))
}

/// The Merkle sum tree of one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SumTree {
    count: u32,
    /// `levels[l]` holds the nodes of level `l` (0 = leaves) that are not padding, left to right.
    levels: Vec<Vec<SumNode>>,
}

impl SumTree {
    /// Builds the tree over `leaves`, in batch order. Fails on an empty batch, more than `u32::MAX` leaves, or
    /// a sum that reaches 2^128.
    pub fn build(leaves: &[SumNode]) -> Result<Self, BatchError> {
        let count = u32::try_from(leaves.len()).map_err(|_| BatchError::TooManyLeaves)?;
        if count == 0 {
            return Err(BatchError::Empty);
        }
        let mut levels = Vec::new();
        let mut below: Vec<SumNode> = leaves.to_vec();
        for _ in 0..depth(count) {
            let row = below
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => SumNode::parent(l, r),
                    [l] => SumNode::parent(l, &SumNode::PADDING),
                    _ => Err(BatchError::Empty),
                })
                .collect::<Result<Vec<_>, _>>()?;
            levels.push(below);
            below = row;
        }
        levels.push(below);
        Ok(Self { count, levels })
    }

    /// Builds the tree over `receipts` under `domain` (leaf `i` is receipt `i`).
    pub fn from_receipts<'a>(
        receipts: impl IntoIterator<Item = &'a Receipt>,
        domain: &Domain,
    ) -> Result<Self, BatchError> {
        let leaves: Vec<SumNode> = receipts
            .into_iter()
            .map(|r| SumNode::of_receipt(r, domain))
            .collect();
        Self::build(&leaves)
    }

    /// Number of receipts.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// `ceil(log2(count))`.
    pub fn depth(&self) -> u32 {
        depth(self.count)
    }

    fn top(&self) -> SumNode {
        self.levels
            .last()
            .and_then(|row| row.first())
            .copied()
            .unwrap_or(SumNode::PADDING)
    }

    /// The root hash (what `commitReceipts` takes as `root`).
    pub fn root(&self) -> B256 {
        self.top().hash
    }

    /// The sum of all amounts (what `commitReceipts` takes as `total`).
    pub fn total(&self) -> u128 {
        self.top().sum
    }

    /// Leaf `index`.
    pub fn leaf(&self, index: u32) -> Result<SumNode, BatchError> {
        self.levels
            .first()
            .and_then(|leaves| leaves.get(index as usize))
            .copied()
            .ok_or(BatchError::IndexOutOfRange {
                index,
                count: self.count,
            })
    }

    /// The proof for leaf `index`: its siblings from the leaf up.
    pub fn proof(&self, index: u32) -> Result<SumProof, BatchError> {
        if index >= self.count {
            return Err(BatchError::IndexOutOfRange {
                index,
                count: self.count,
            });
        }
        let siblings = self
            .levels
            .iter()
            .take(self.depth() as usize)
            .enumerate()
            .map(|(level, row)| {
                let sibling = (u64::from(index) >> level) ^ 1;
                usize::try_from(sibling)
                    .ok()
                    .and_then(|i| row.get(i))
                    .copied()
                    .unwrap_or(SumNode::PADDING)
            })
            .collect();
        Ok(SumProof { index, siblings })
    }
}

/// A Merkle sum proof for one leaf.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SumProof {
    /// The leaf index.
    pub index: u32,
    /// The siblings, from the leaf's up to the root's children.
    pub siblings: Vec<SumNode>,
}

impl SumProof {
    /// The contract's calldata form: per level the sibling hash, then the sibling sum as a `uint256` word.
    pub fn to_words(&self) -> Vec<[u8; 32]> {
        self.siblings
            .iter()
            .flat_map(|s| [s.hash.0, word_u128(s.sum)])
            .collect()
    }

    /// Reads the calldata form. A sum word must be below 2^128 ([`BatchError::MalformedSum`]); an odd number
    /// of words is [`BatchError::ProofLength`].
    pub fn from_words(index: u32, words: &[[u8; 32]]) -> Result<Self, BatchError> {
        if !words.len().is_multiple_of(2) {
            return Err(BatchError::ProofLength {
                expected: words.len().div_ceil(2),
                actual: words.len(),
            });
        }
        let siblings = words
            .chunks_exact(2)
            .zip(0u32..)
            .map(|(pair, level)| {
                let (hash, sum) = match pair {
                    [h, s] => (h, s),
                    _ => {
                        return Err(BatchError::ProofLength {
                            expected: 2,
                            actual: pair.len(),
                        });
                    }
                };
                let (high, low) = sum.split_at(16);
                if high.iter().any(|b| *b != 0) {
                    return Err(BatchError::MalformedSum { level });
                }
                let mut be = [0u8; 16];
                be.copy_from_slice(low);
                Ok(SumNode {
                    hash: B256(*hash),
                    sum: u128::from_be_bytes(be),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { index, siblings })
    }

    /// Folds `leaf` up the proof in a batch of `count` leaves; returns the root node it leads to. Checks the
    /// proof's length against the depth, that padding siblings are `(0, 0)`, and that no sum overflows.
    pub fn fold(&self, leaf: &SumNode, count: u32) -> Result<SumNode, BatchError> {
        if count == 0 {
            return Err(BatchError::Empty);
        }
        if self.index >= count {
            return Err(BatchError::IndexOutOfRange {
                index: self.index,
                count,
            });
        }
        let expected = depth(count) as usize;
        if self.siblings.len() != expected {
            return Err(BatchError::ProofLength {
                expected,
                actual: self.siblings.len(),
            });
        }
        let mut acc = *leaf;
        for (sibling, level) in self.siblings.iter().zip(0u32..) {
            let node = u64::from(self.index) >> level;
            if is_padding(node ^ 1, level, count) && *sibling != SumNode::PADDING {
                return Err(BatchError::NonZeroPadding { level });
            }
            acc = if node & 1 == 0 {
                SumNode::parent(&acc, sibling)?
            } else {
                SumNode::parent(sibling, &acc)?
            };
        }
        Ok(acc)
    }

    /// Verifies that `leaf` is leaf `self.index` of the batch committed as `(root, count, total)`, as
    /// `revealReceipts` does.
    pub fn verify(
        &self,
        leaf: &SumNode,
        root: &B256,
        count: u32,
        total: u128,
    ) -> Result<(), BatchError> {
        let top = self.fold(leaf, count)?;
        if top.hash != *root {
            return Err(BatchError::RootMismatch);
        }
        if top.sum != total {
            return Err(BatchError::TotalMismatch);
        }
        Ok(())
    }
}

/// Sample `j` of a batch: `count - 1` for `j = 0` (its proof holds every padding subtree, so nothing can
/// hide after the last leaf), else `uint256(keccak(abi.encode(seed, host, root, j))) mod count`. `seed` is
/// `blockhash(commitBlock + commitRevealWindow)`.
pub fn sample_index(
    seed: &B256,
    host: &Address,
    root: &B256,
    count: u32,
    j: u64,
) -> Result<u32, BatchError> {
    let last = count.checked_sub(1).ok_or(BatchError::Empty)?;
    if j == 0 {
        return Ok(last);
    }
    let h = keccak(&[
        &seed.0,
        &word_address(host),
        &root.0,
        &word_u128(u128::from(j)),
    ]);
    let modulus = u64::from(count);
    let rem =
        h.0.iter()
            .fold(0u64, |r, b| ((r << 8) | u64::from(*b)) % modulus);
    // INVARIANT: rem < count <= u32::MAX.
    u32::try_from(rem).map_err(|_| BatchError::TooManyLeaves)
}

/// The leaves to reveal, in order: `k = min(sample_size, count)` samples ([`sample_index`] for `j = 0..k`).
pub fn sample_indices(
    seed: &B256,
    host: &Address,
    root: &B256,
    count: u32,
    sample_size: u32,
) -> Result<Vec<u32>, BatchError> {
    (0..u64::from(sample_size.min(count)))
        .map(|j| sample_index(seed, host, root, count, j))
        .collect()
}

/// The contract's storage key of a batch: `keccak(abi.encode(host, root))`.
pub fn batch_key(host: &Address, root: &B256) -> B256 {
    keccak(&[&word_address(host), &root.0])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use alloc::vec;

    fn leaves(n: u32) -> Vec<SumNode> {
        (0..n)
            .map(|i| SumNode::leaf(&keccak(&[&i.to_be_bytes()]), u128::from(i) * 10 + 1))
            .collect()
    }

    /// The tree computed the slow way: the full width, padding by its leaf range, as the README states it.
    fn reference_root(leaves: &[SumNode]) -> SumNode {
        let count = leaves.len() as u32;
        let d = depth(count);
        let mut row: Vec<Option<SumNode>> = (0..1u64 << d)
            .map(|i| leaves.get(i as usize).copied())
            .collect();
        for level in 0..d {
            row = row
                .chunks(2)
                .enumerate()
                .map(|(i, pair)| {
                    if ((i as u64) << (level + 1)) >= u64::from(count) {
                        return None;
                    }
                    let l = pair[0].unwrap_or(SumNode::PADDING);
                    let r = pair[1].unwrap_or(SumNode::PADDING);
                    Some(SumNode::parent(&l, &r).unwrap())
                })
                .collect();
        }
        row[0].unwrap()
    }

    #[test]
    fn depth_is_ceil_log2() {
        for (count, d) in [
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (8, 3),
            (9, 4),
            (1000, 10),
        ] {
            assert_eq!(depth(count), d, "count {count}");
        }
        assert_eq!(depth(u32::MAX), 32);
    }

    #[test]
    fn one_leaf_is_its_own_root() {
        let l = leaves(1);
        let t = SumTree::build(&l).unwrap();
        assert_eq!(t.root(), l[0].hash);
        assert_eq!(t.total(), l[0].sum);
        let p = t.proof(0).unwrap();
        assert!(p.siblings.is_empty());
        p.verify(&l[0], &t.root(), 1, t.total()).unwrap();
    }

    #[test]
    fn layout_of_a_three_leaf_tree() {
        let l = leaves(3);
        let t = SumTree::build(&l).unwrap();
        let left = SumNode::parent(&l[0], &l[1]).unwrap();
        let right = SumNode::parent(&l[2], &SumNode::PADDING).unwrap();
        // The padded node is hashed with a zero right child.
        assert_eq!(
            right.hash,
            keccak(&[
                &[1],
                &l[2].hash.0,
                &[0; 32],
                &l[2].sum.to_be_bytes(),
                &[0; 16]
            ])
        );
        let top = SumNode::parent(&left, &right).unwrap();
        assert_eq!(t.root(), top.hash);
        assert_eq!(t.total(), 1 + 11 + 21);
        assert_eq!(t.proof(2).unwrap().siblings, vec![SumNode::PADDING, left]);
    }

    #[test]
    fn every_proof_verifies_against_the_reference_tree() {
        for n in 1..=17 {
            let l = leaves(n);
            let t = SumTree::build(&l).unwrap();
            let reference = reference_root(&l);
            assert_eq!(
                (t.root(), t.total()),
                (reference.hash, reference.sum),
                "n {n}"
            );
            for i in 0..n {
                let p = t.proof(i).unwrap();
                p.verify(&l[i as usize], &t.root(), n, t.total()).unwrap();
                let words = p.to_words();
                assert_eq!(words.len(), 2 * t.depth() as usize);
                assert_eq!(SumProof::from_words(i, &words).unwrap(), p);
            }
        }
    }

    #[test]
    fn tampered_proofs_fail_with_their_own_errors() {
        let l = leaves(5);
        let t = SumTree::build(&l).unwrap();
        let (root, total) = (t.root(), t.total());
        let p = t.proof(1).unwrap();
        // A flipped bit in a sibling hash.
        let mut bad = p.clone();
        bad.siblings[1].hash.0[0] ^= 1;
        assert_eq!(
            bad.verify(&l[1], &root, 5, total),
            Err(BatchError::RootMismatch)
        );
        // Another leaf at this index.
        assert_eq!(
            p.verify(&l[2], &root, 5, total),
            Err(BatchError::RootMismatch)
        );
        // A sibling sum moved: the hash no longer matches.
        let mut bad = p.clone();
        bad.siblings[0].sum += 1;
        assert_eq!(
            bad.verify(&l[1], &root, 5, total),
            Err(BatchError::RootMismatch)
        );
        // Wrong index for the same siblings (the order of hashing changes).
        let mut bad = p.clone();
        bad.index = 0;
        assert_eq!(
            bad.verify(&l[1], &root, 5, total),
            Err(BatchError::RootMismatch)
        );
        // The right root with another total.
        assert_eq!(
            p.verify(&l[1], &root, 5, total + 1),
            Err(BatchError::TotalMismatch)
        );
        // Too short or too long.
        let mut bad = p.clone();
        bad.siblings.pop();
        assert_eq!(
            bad.verify(&l[1], &root, 5, total),
            Err(BatchError::ProofLength {
                expected: 3,
                actual: 2
            })
        );
        // Index past the count.
        let mut bad = p.clone();
        bad.index = 5;
        assert_eq!(
            bad.verify(&l[1], &root, 5, total),
            Err(BatchError::IndexOutOfRange { index: 5, count: 5 })
        );
        assert_eq!(
            t.proof(5),
            Err(BatchError::IndexOutOfRange { index: 5, count: 5 })
        );
    }

    /// A leaf hidden after `count` would inflate the total: the last leaf's proof must show zero padding.
    #[test]
    fn padding_must_be_zero() {
        let l = leaves(5);
        let t = SumTree::build(&l).unwrap();
        let p = t.proof(4).unwrap();
        // Level 0 and 1 siblings of leaf 4 are padding.
        assert_eq!(p.siblings[0], SumNode::PADDING);
        assert_eq!(p.siblings[1], SumNode::PADDING);
        let hidden = SumNode::leaf(&B256([9; 32]), 1_000);
        let mut bad = p.clone();
        bad.siblings[0] = hidden;
        assert_eq!(
            bad.verify(&l[4], &t.root(), 5, t.total()),
            Err(BatchError::NonZeroPadding { level: 0 })
        );
        // Even a consistent tree with the hidden leaf at index 5 fails when committed with count 5.
        let mut six = l.clone();
        six.push(hidden);
        let t6 = SumTree::build(&six).unwrap();
        assert_eq!(
            t6.proof(4)
                .unwrap()
                .verify(&l[4], &t6.root(), 5, t6.total()),
            Err(BatchError::NonZeroPadding { level: 0 })
        );
    }

    #[test]
    fn sums_overflow_is_an_error() {
        let big = [
            SumNode::leaf(&B256([1; 32]), u128::MAX),
            SumNode::leaf(&B256([2; 32]), 1),
        ];
        assert_eq!(SumTree::build(&big), Err(BatchError::SumOverflow));
        // A proof whose sibling sum overflows the running sum.
        let l = leaves(2);
        let t = SumTree::build(&l).unwrap();
        let mut p = t.proof(0).unwrap();
        p.siblings[0].sum = u128::MAX;
        assert_eq!(
            p.verify(&l[0], &t.root(), 2, t.total()),
            Err(BatchError::SumOverflow)
        );
        // A sum word of 2^128 or more.
        let mut words = t.proof(0).unwrap().to_words();
        words[1][15] = 1;
        assert_eq!(
            SumProof::from_words(0, &words),
            Err(BatchError::MalformedSum { level: 0 })
        );
        assert!(matches!(
            SumProof::from_words(0, &words[..1]),
            Err(BatchError::ProofLength { .. })
        ));
    }

    #[test]
    fn empty_batch() {
        assert_eq!(SumTree::build(&[]), Err(BatchError::Empty));
        let z = B256::ZERO;
        assert_eq!(
            sample_index(&z, &Address::ZERO, &z, 0, 0),
            Err(BatchError::Empty)
        );
    }

    #[test]
    fn sample_rule() {
        let seed = B256([0x5e; 32]);
        let host = Address([0xa0; 20]);
        let root = B256([0x0f; 32]);
        let idx = sample_indices(&seed, &host, &root, 10, 8).unwrap();
        assert_eq!(idx.len(), 8);
        assert_eq!(idx[0], 9);
        for (j, i) in idx.iter().enumerate().skip(1) {
            let h = keccak(&[
                &seed.0,
                &word_address(&host),
                &root.0,
                &word_u128(j as u128),
            ]);
            // The big-endian 256-bit value mod 10 is decided by the value itself; check with u128 halves.
            let hi = u128::from_be_bytes(h.0[..16].try_into().unwrap());
            let lo = u128::from_be_bytes(h.0[16..].try_into().unwrap());
            // (hi * 2^128 + lo) mod 10, with 2^128 mod 10 = 6.
            let expected = ((hi % 10) * 6 + lo % 10) % 10;
            assert_eq!(u128::from(*i), expected, "j {j}");
        }
        // Fewer receipts than the sample size: every index is sampled once per j, k = count.
        assert_eq!(sample_indices(&seed, &host, &root, 3, 8).unwrap().len(), 3);
        assert_eq!(sample_indices(&seed, &host, &root, 1, 8).unwrap(), vec![0]);
    }
}
