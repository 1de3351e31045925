//! The ledger's Merkle tree: root hashes, inclusion and consistency proofs,
//! their verification, and the append frontier a sequencer keeps in memory.
//!
//! It implements the Merkle Tree Hash (MTH) and the proofs of RFC 9162
//! section 2 (the same trees and proofs as RFC 6962 section 2) over SHA-256 with
//! the RFCs' domain separation: a leaf is `SHA-256(0x00 || leaf)`, an interior
//! node `SHA-256(0x01 || left || right)`, and the empty tree `SHA-256("")`.
//!
//! Invariants:
//! - Everything past [`hash_leaf`] works on leaf *hashes*, so a store can prove
//!   things without keeping leaf bodies around.
//! - Stored state is addressed only as complete, aligned subtrees: `(level,
//!   index)` covers leaves `[index << level, (index + 1) << level)`. Such a node
//!   never changes once the tree has grown past it, so an append-only store plus
//!   a [`Frontier`] can answer for every earlier tree size.
//! - Every root and proof produced here is exactly the RFC's, bit for bit, and
//!   verification neither panics nor accepts a proof whose length differs from
//!   the one the RFC prescribes for the given index and sizes.

use sha2::{Digest, Sha256};

mod frontier;
mod memory;
mod proof;
mod verify;

pub use frontier::{BatchSubtrees, Frontier};
pub use memory::{MemorySource, MissingSubtree};
pub use proof::{consistency_proof, inclusion_proof, range_root, root, ProofError};
pub use verify::{verify_consistency, verify_inclusion, VerifyError};

/// A SHA-256 output: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Domain-separation prefixes, so that no leaf can be passed off as an interior
/// node (the second-preimage attack RFC 6962 section 2.1 guards against).
const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

fn sha256_with_prefix(prefix: u8, parts: &[&[u8]]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([prefix]);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The RFC 6962 leaf hash, `SHA-256(0x00 || leaf)`: what callers hand to every
/// other function here.
pub fn hash_leaf(leaf: &[u8]) -> Hash {
    sha256_with_prefix(LEAF_PREFIX, &[leaf])
}

/// The RFC 6962 interior node hash, `SHA-256(0x01 || left || right)`.
pub fn hash_children(left: &Hash, right: &Hash) -> Hash {
    sha256_with_prefix(NODE_PREFIX, &[left, right])
}

/// The root of a tree with no leaves, `SHA-256("")`; it deliberately differs
/// from the hash of an empty leaf.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Where stored hashes come from. A "stored subtree" is a complete, aligned
/// subtree: level `L`, index `i` covers leaves `[i << L, (i + 1) << L)`, and
/// level 0 holds the leaf hashes themselves.
///
/// Only complete subtrees are asked for, because they are immutable: a store
/// that persists what [`Frontier::push`] returns can answer every read made
/// here for any tree size it has reached.
pub trait SubtreeSource {
    /// Why a read failed (I/O, a missing node, ...); passed through untouched.
    type Error;

    /// The hash of the complete subtree at `level`, `index`.
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// The complete aligned-size pieces of `count` leaves starting at `start`, as
/// `(level, first leaf)`, largest first: one per set bit of `count`. This is how
/// the RFC recursion decomposes a range, since each split peels off the
/// largest power of two.
fn aligned_pieces(start: u64, count: u64) -> impl Iterator<Item = (u8, u64)> {
    let mut first_leaf = start;
    (0..u64::BITS as u8)
        .rev()
        .filter(move |&level| (count >> level) & 1 == 1)
        .map(move |level| {
            let tile = (level, first_leaf);
            first_leaf += 1 << level;
            tile
        })
}

/// Combines hashes of consecutive pieces the way MTH nests them: the rightmost
/// two first, so `[a, b, c]` becomes `H(a, H(b, c))`.
fn fold_from_right(piece_hashes: &[Hash]) -> Hash {
    piece_hashes
        .iter()
        .rev()
        .copied()
        .reduce(|right, left| hash_children(&left, &right))
        .unwrap_or_else(empty_root)
}

#[cfg(test)]
mod tests;
