//! Checking RFC 9162 inclusion and consistency proofs: never panics, and
//! refuses any proof whose length is not the one the RFC prescribes.

use std::error::Error;
use std::fmt;

use super::{hash_children, Hash};

/// Why a proof was rejected. Every variant means "do not trust this claim";
/// they differ only in what is worth checking next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The claimed leaf index cannot be in a tree of the claimed size.
    IndexOutOfRange { index: u64, size: u64 },
    /// The proof has the wrong number of hashes for the claimed index and
    /// sizes, which usually means it was made for a different index or size.
    WrongProofLength { expected: usize, got: usize },
    /// The proof has the right shape but does not lead to the given root(s).
    RootMismatch,
    /// The claimed old tree is larger than the claimed new one.
    SizeOutOfRange { old_size: u64, new_size: u64 },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::IndexOutOfRange { index, size } => write!(
                f,
                "leaf index {index} is outside a tree of {size} leaves; \
                 check that the index and tree size belong to the same checkpoint"
            ),
            VerifyError::WrongProofLength { expected, got } => write!(
                f,
                "proof has {got} hashes but must have exactly {expected} for this \
                 index and tree size; it was probably made for a different one"
            ),
            VerifyError::RootMismatch => write!(
                f,
                "proof does not hash to the expected root: the leaf is not in this \
                 tree, or the proof, the leaf hash or the root is wrong"
            ),
            VerifyError::SizeOutOfRange { old_size, new_size } => write!(
                f,
                "old tree size {old_size} is larger than new tree size {new_size}; \
                 a log only grows, so check the order of the sizes"
            ),
        }
    }
}

impl Error for VerifyError {}

/// Bit length of `value`: the number of levels at which two leaf paths differ
/// once `value` is the XOR of their indices.
fn bit_length(value: u64) -> u32 {
    u64::BITS - value.leading_zeros()
}

/// The RFC length of an inclusion proof: one hash per level below the point
/// where the paths to `index` and to the last leaf part (`inner`), plus one per
/// left sibling above it (`border`). Requires `index < tree_size`.
fn inclusion_proof_len(index: u64, tree_size: u64) -> usize {
    let inner = bit_length(index ^ (tree_size - 1));
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// The RFC length of a consistency proof: the inclusion path of the old tree's
/// last leaf, minus the levels inside the old tree's rightmost complete
/// subtree, plus that subtree's hash unless it is the whole old tree.
/// Requires `0 < old_size < new_size`.
fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    let shared_levels = old_size.trailing_zeros();
    let inner = bit_length((old_size - 1) ^ (new_size - 1));
    let border = (old_size - 1).checked_shr(inner).unwrap_or(0).count_ones();
    let seed = usize::from(!old_size.is_power_of_two());
    seed + (inner.saturating_sub(shared_levels) + border) as usize
}

/// Checks an inclusion proof with the algorithm of RFC 9162 section 2.1.3.2.
///
/// The root is what vouches for the tree size: a proof checked against a root
/// taken from a signed checkpoint proves membership in that checkpoint's tree,
/// so take `tree_size` and `root` from the same checkpoint.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= tree_size {
        return Err(VerifyError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    let expected = inclusion_proof_len(index, tree_size);
    let wrong_length = VerifyError::WrongProofLength {
        expected,
        got: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    let mut node_index = index;
    let mut last_index = tree_size - 1;
    let mut computed = *leaf_hash;
    for sibling in proof {
        // Cannot trigger after the length check; kept because the RFC's
        // algorithm relies on it, not on a separately computed length.
        if last_index == 0 {
            return Err(wrong_length);
        }
        if node_index & 1 == 1 || node_index == last_index {
            computed = hash_children(sibling, &computed);
            // A node on the right edge with no right sibling moves up
            // unchanged until it becomes someone's right child.
            while node_index != 0 && node_index & 1 == 0 {
                node_index >>= 1;
                last_index >>= 1;
            }
        } else {
            computed = hash_children(&computed, sibling);
        }
        node_index >>= 1;
        last_index >>= 1;
    }
    if last_index != 0 {
        return Err(wrong_length);
    }
    if computed != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Checks a consistency proof with the algorithm of RFC 9162 section 2.1.4.2.
///
/// Two cases carry no proof: equal sizes must have equal roots, and the empty
/// tree is a prefix of every tree, so `old_size == 0` accepts any roots. As with
/// [`verify_inclusion`], sizes and roots should come from signed checkpoints.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if old_size > new_size {
        return Err(VerifyError::SizeOutOfRange { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(VerifyError::WrongProofLength {
                expected: 0,
                got: proof.len(),
            });
        }
        if old_size == new_size && old_root != new_root {
            return Err(VerifyError::RootMismatch);
        }
        return Ok(());
    }
    let expected = consistency_proof_len(old_size, new_size);
    let wrong_length = VerifyError::WrongProofLength {
        expected,
        got: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    // When the old tree is a perfect tree, its root is the starting node and
    // the proof leaves it out; otherwise the proof's first hash is that node.
    let (seed, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (first, rest),
            None => return Err(wrong_length),
        }
    };
    let mut node_index = old_size - 1;
    let mut last_index = new_size - 1;
    while node_index & 1 == 1 {
        node_index >>= 1;
        last_index >>= 1;
    }
    let mut computed_old = *seed;
    let mut computed_new = *seed;
    for hash in rest {
        // Cannot trigger after the length check; kept as in the RFC.
        if last_index == 0 {
            return Err(wrong_length);
        }
        if node_index & 1 == 1 || node_index == last_index {
            computed_old = hash_children(hash, &computed_old);
            computed_new = hash_children(hash, &computed_new);
            while node_index != 0 && node_index & 1 == 0 {
                node_index >>= 1;
                last_index >>= 1;
            }
        } else {
            // Leaves appended after the old tree only feed the new root.
            computed_new = hash_children(&computed_new, hash);
        }
        node_index >>= 1;
        last_index >>= 1;
    }
    if last_index != 0 {
        return Err(wrong_length);
    }
    if computed_old != *old_root || computed_new != *new_root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}
