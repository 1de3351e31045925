//! Building RFC 9162 inclusion and consistency proofs (and roots of any
//! range) from stored complete subtrees, reading one stored node per piece.

use std::error::Error;
use std::fmt;

use super::{aligned_pieces, fold_from_right, hash_children, Hash, SubtreeSource};

/// Why a proof could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError<E> {
    /// The store failed to produce a subtree the proof needs.
    Source(E),
    /// The leaf is not in a tree of that size, so there is nothing to prove.
    IndexOutOfRange { index: u64, size: u64 },
    /// Consistency only runs forward: the old tree must not be the larger one.
    SizeOutOfRange { old_size: u64, new_size: u64 },
}

impl<E: fmt::Display> fmt::Display for ProofError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofError::Source(error) => write!(f, "could not read a stored subtree: {error}"),
            ProofError::IndexOutOfRange { index, size } => write!(
                f,
                "cannot prove leaf {index} in a tree of {size} leaves: \
                 the index must be below the tree size"
            ),
            ProofError::SizeOutOfRange { old_size, new_size } => write!(
                f,
                "cannot prove consistency from tree size {old_size} to {new_size}: \
                 the old size must not exceed the new size"
            ),
        }
    }
}

impl<E: Error + 'static> Error for ProofError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ProofError::Source(error) => Some(error),
            _ => None,
        }
    }
}

/// The split point `k` of the RFC recursion: the largest power of two strictly
/// below `count`. Callers guarantee `count >= 2`.
fn split_point(count: u64) -> u64 {
    1 << (u64::BITS - 1 - (count - 1).leading_zeros())
}

/// The hash of the perfect subtree of `2^level` leaves starting at
/// `first_leaf`. An aligned one is a single stored read; an unaligned one is
/// not stored anywhere, so it is rebuilt from its halves.
fn perfect_subtree_hash<S: SubtreeSource>(
    source: &S,
    level: u8,
    first_leaf: u64,
) -> Result<Hash, S::Error> {
    let width = 1u64 << level;
    if level == 0 || first_leaf.is_multiple_of(width) {
        return source.subtree_hash(level, first_leaf >> level);
    }
    let left = perfect_subtree_hash(source, level - 1, first_leaf)?;
    let right = perfect_subtree_hash(source, level - 1, first_leaf + width / 2)?;
    Ok(hash_children(&left, &right))
}

/// MTH of the leaves `[start, end)`; an empty (or inverted) range has no
/// leaves and so hashes to [`empty_root`].
///
/// Every node of the RFC 6962 recursion starts at a multiple of its largest
/// tile, and for such ranges this reads exactly one stored subtree per set bit
/// of `end - start`. Other ranges still get their true MTH, but the tiles are
/// not stored nodes there, so they are rebuilt from further down.
pub fn range_root<S: SubtreeSource>(source: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let count = end.saturating_sub(start);
    let mut tile_hashes = Vec::with_capacity(count.count_ones() as usize);
    for (level, first_leaf) in aligned_pieces(start, count) {
        tile_hashes.push(perfect_subtree_hash(source, level, first_leaf)?);
    }
    Ok(fold_from_right(&tile_hashes))
}

/// The root of the tree made of the first `tree_size` leaves.
pub fn root<S: SubtreeSource>(source: &S, tree_size: u64) -> Result<Hash, S::Error> {
    range_root(source, 0, tree_size)
}

/// The RFC 9162 section 2.1.3.1 inclusion proof for leaf `index` in the tree of
/// `tree_size` leaves, sibling nearest the leaf first.
pub fn inclusion_proof<S: SubtreeSource>(
    source: &S,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    // Walk down from the root, collecting the sibling of each node on the
    // leaf's path; the RFC lists them bottom-up, hence the reverse at the end.
    let mut siblings = Vec::new();
    let (mut start, mut end) = (0, tree_size);
    while end - start > 1 {
        let middle = start + split_point(end - start);
        if index < middle {
            siblings.push(range_root(source, middle, end).map_err(ProofError::Source)?);
            end = middle;
        } else {
            siblings.push(range_root(source, start, middle).map_err(ProofError::Source)?);
            start = middle;
        }
    }
    siblings.reverse();
    Ok(siblings)
}

/// The RFC 9162 section 2.1.4.1 consistency proof that the tree of `old_size`
/// leaves is a prefix of the tree of `new_size` leaves. It is empty when
/// `old_size` is 0 or equals `new_size`, as there is nothing to prove.
pub fn consistency_proof<S: SubtreeSource>(
    source: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old_size > new_size {
        return Err(ProofError::SizeOutOfRange { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start:end], b) walked top-down. `on_left_edge` is the
    // RFC's `b`: while the node still starts at leaf 0 its hash is the old root,
    // which the verifier already has, so the node itself is left out.
    let mut siblings = Vec::new();
    let (mut start, mut end) = (0, new_size);
    let mut on_left_edge = true;
    while old_size != end {
        let middle = start + split_point(end - start);
        if old_size <= middle {
            siblings.push(range_root(source, middle, end).map_err(ProofError::Source)?);
            end = middle;
        } else {
            siblings.push(range_root(source, start, middle).map_err(ProofError::Source)?);
            start = middle;
            on_left_edge = false;
        }
    }
    let old_tree_node = if on_left_edge {
        None
    } else {
        Some(range_root(source, start, end).map_err(ProofError::Source)?)
    };
    Ok(old_tree_node
        .into_iter()
        .chain(siblings.into_iter().rev())
        .collect())
}
