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
use std::error::Error;
use std::fmt;

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

/// The split point `k` of the RFC recursion: the largest power of two strictly
/// below `count`. Callers guarantee `count >= 2`.
fn split_point(count: u64) -> u64 {
    1 << (u64::BITS - 1 - (count - 1).leading_zeros())
}

/// The complete aligned-size pieces of `count` leaves starting at `start`, as
/// `(level, first leaf)`, largest first: one per set bit of `count`. This is how
/// the RFC recursion decomposes a range, since each split peels off the
/// largest power of two.
fn tiles(start: u64, count: u64) -> impl Iterator<Item = (u8, u64)> {
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
    for (level, first_leaf) in tiles(start, count) {
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

/// The right edge of a growing tree: what a sequencer keeps in memory, one
/// hash per set bit of the size (O(log n)), enough to compute the root and to
/// hash every subtree the next append completes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Roots of the complete subtrees of `size`'s binary decomposition,
    /// largest (leftmost) first.
    subtree_roots: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuild from stored subtrees for a tree of `size` leaves (reads one
    /// subtree per set bit of `size`), e.g. when a sequencer restarts.
    pub fn load<S: SubtreeSource>(source: &S, size: u64) -> Result<Self, S::Error> {
        let mut subtree_roots = Vec::with_capacity(size.count_ones() as usize);
        for (level, first_leaf) in tiles(0, size) {
            subtree_roots.push(source.subtree_hash(level, first_leaf >> level)?);
        }
        Ok(Self {
            size,
            subtree_roots,
        })
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The roots of the complete subtrees making up the tree, largest first;
    /// the same nodes [`Frontier::load`] reads.
    pub fn subtree_roots(&self) -> &[Hash] {
        &self.subtree_roots
    }

    /// The tree's root hash ([`empty_root`] while empty).
    pub fn root(&self) -> Hash {
        fold_from_right(&self.subtree_roots)
    }

    /// Append one leaf hash; returns every complete subtree this append
    /// completes, as `(level, index, hash)`, level 0 (the leaf itself) first.
    /// These are exactly the nodes a store must persist so that a
    /// [`SubtreeSource`] can answer for every complete aligned subtree.
    ///
    /// # Panics
    ///
    /// If the tree already holds `u64::MAX` leaves, the most a `u64` size can
    /// count; use [`Frontier::try_push`] where a size may come from untrusted
    /// storage.
    pub fn push(&mut self, leaf_hash: Hash) -> Vec<(u8, u64, Hash)> {
        match self.try_push(leaf_hash) {
            Some(completed) => completed,
            None => panic!("Merkle tree is full: it already holds u64::MAX leaves"),
        }
    }

    /// [`Frontier::push`], returning `None` instead of panicking when the tree
    /// already holds `u64::MAX` leaves.
    pub fn try_push(&mut self, leaf_hash: Hash) -> Option<Vec<(u8, u64, Hash)>> {
        let position = self.size;
        let new_size = position.checked_add(1)?;
        let mut completed = vec![(0, position, leaf_hash)];
        let mut hash = leaf_hash;
        // Each trailing one bit of `position` is a left sibling waiting on the
        // frontier; merging with it completes the parent one level up.
        for level in 1..=position.trailing_ones() as u8 {
            let Some(left) = self.subtree_roots.pop() else {
                break;
            };
            hash = hash_children(&left, &hash);
            completed.push((level, position >> level, hash));
        }
        self.subtree_roots.push(hash);
        self.size = new_size;
        Some(completed)
    }
}

/// What proves one batch of appends: the [`Frontier`] the batch started
/// from and every complete subtree its appends completed.
///
/// That is all an inclusion proof of a batch entry needs in the tree that
/// ends with the batch. Walking down from the root, a sibling on the right of
/// the path lies wholly inside the batch; one on the left is a complete
/// aligned subtree that either holds batch leaves (so the batch completed it)
/// or ends at or before the batch's first leaf, in which case it is exactly
/// one of the starting frontier's subtrees. So a sequencer can hand every
/// caller of a batch its proof without reading a stored node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchSubtrees {
    /// The first leaf of the batch (the tree size it started from).
    first: u64,
    /// One past its last leaf: the size of the tree the proofs are for.
    end: u64,
    nodes: std::collections::HashMap<(u8, u64), Hash>,
}

impl BatchSubtrees {
    /// A batch about to extend the tree whose right edge is `before`.
    pub fn starting_from(before: &Frontier) -> Self {
        let nodes = tiles(0, before.size())
            .zip(before.subtree_roots())
            .map(|((level, first_leaf), hash)| ((level, first_leaf >> level), *hash))
            .collect();
        Self {
            first: before.size(),
            end: before.size(),
            nodes,
        }
    }

    /// Records what one [`Frontier::push`] of the batch completed.
    pub fn record(&mut self, completed: &[(u8, u64, Hash)]) {
        for &(level, index, hash) in completed {
            if level == 0 {
                self.end = self.end.max(index + 1);
            }
            self.nodes.insert((level, index), hash);
        }
    }

    /// Whether leaf `index` was appended by this batch.
    fn covers(&self, index: u64) -> bool {
        (self.first..self.end).contains(&index)
    }

    /// The inclusion proof of batch leaf `index` in the tree that ends with
    /// this batch; `None` for a leaf outside the batch.
    pub fn inclusion_proof(&self, index: u64) -> Option<Vec<Hash>> {
        if !self.covers(index) {
            return None;
        }
        inclusion_proof(self, index, self.end).ok()
    }
}

impl SubtreeSource for BatchSubtrees {
    type Error = MissingSubtree;

    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MissingSubtree> {
        self.nodes
            .get(&(level, index))
            .copied()
            .ok_or(MissingSubtree { level, index })
    }
}

/// A [`MemorySource`] was asked for a subtree it does not hold, i.e. one
/// beyond the leaves it has been given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingSubtree {
    pub level: u8,
    pub index: u64,
}

impl fmt::Display for MissingSubtree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no complete subtree at level {}, index {} is held: \
             it would need leaves beyond those loaded",
            self.level, self.index
        )
    }
}

impl Error for MissingSubtree {}

/// Every complete aligned subtree of a tree, held in memory: for tests, and
/// for an auditor that rebuilds a log from its leaves to check the log's
/// claims independently of the log's own store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemorySource {
    /// `levels[L][i]` is the subtree at level `L`, index `i`.
    levels: Vec<Vec<Hash>>,
}

impl MemorySource {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tree of these leaf hashes, in order.
    pub fn from_leaf_hashes<I: IntoIterator<Item = Hash>>(leaf_hashes: I) -> Self {
        let mut source = Self::new();
        for leaf_hash in leaf_hashes {
            source.push(leaf_hash);
        }
        source
    }

    /// Append one leaf hash, storing every subtree it completes.
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut hash = leaf_hash;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            // A node with an even count in its row is a right child: its
            // parent is now complete too.
            match row.as_slice() {
                [.., left, right] if row.len().is_multiple_of(2) => {
                    hash = hash_children(left, right)
                }
                _ => return,
            }
            level += 1;
        }
    }

    /// Number of leaves held.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// All stored subtrees, `levels()[L][i]` being level `L`, index `i`.
    pub fn levels(&self) -> &[Vec<Hash>] {
        &self.levels
    }
}

impl SubtreeSource for MemorySource {
    type Error = MissingSubtree;

    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MissingSubtree> {
        let row = self.levels.get(usize::from(level));
        usize::try_from(index)
            .ok()
            .and_then(|position| row?.get(position))
            .copied()
            .ok_or(MissingSubtree { level, index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::OnceLock;

    // ---- Reference implementation: the RFC 6962 recursion, verbatim. ----

    fn reference_split(count: usize) -> usize {
        let mut split = 1;
        while split * 2 < count {
            split *= 2;
        }
        split
    }

    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            count => {
                let split = reference_split(count);
                hash_children(
                    &reference_root(&leaves[..split]),
                    &reference_root(&leaves[split..]),
                )
            }
        }
    }

    fn reference_path(index: usize, leaves: &[Hash]) -> Vec<Hash> {
        if leaves.len() <= 1 {
            return Vec::new();
        }
        let split = reference_split(leaves.len());
        let (mut path, sibling) = if index < split {
            (
                reference_path(index, &leaves[..split]),
                reference_root(&leaves[split..]),
            )
        } else {
            (
                reference_path(index - split, &leaves[split..]),
                reference_root(&leaves[..split]),
            )
        };
        path.push(sibling);
        path
    }

    fn reference_subproof(old_size: usize, leaves: &[Hash], whole_old_tree: bool) -> Vec<Hash> {
        if old_size == leaves.len() {
            return if whole_old_tree {
                Vec::new()
            } else {
                vec![reference_root(leaves)]
            };
        }
        let split = reference_split(leaves.len());
        let (mut proof, sibling) = if old_size <= split {
            (
                reference_subproof(old_size, &leaves[..split], whole_old_tree),
                reference_root(&leaves[split..]),
            )
        } else {
            (
                reference_subproof(old_size - split, &leaves[split..], false),
                reference_root(&leaves[..split]),
            )
        };
        proof.push(sibling);
        proof
    }

    fn reference_consistency(old_size: usize, leaves: &[Hash]) -> Vec<Hash> {
        if old_size == 0 || old_size == leaves.len() {
            Vec::new()
        } else {
            reference_subproof(old_size, leaves, true)
        }
    }

    // ---- Helpers. ----

    fn hash_from_hex(text: &str) -> Hash {
        hex::decode(text)
            .expect("valid hex")
            .try_into()
            .expect("32 bytes")
    }

    fn flip_bit(hash: &Hash, bit: usize) -> Hash {
        let mut flipped = *hash;
        flipped[bit / 8] ^= 1 << (bit % 8);
        flipped
    }

    fn test_leaf_hashes(count: usize) -> Vec<Hash> {
        (0..count)
            .map(|position| hash_leaf(format!("leaf {position}").as_bytes()))
            .collect()
    }

    /// A store holding only what `Frontier::push` reported, keyed like one.
    #[derive(Default)]
    struct MapSource(HashMap<(u8, u64), Hash>);

    impl SubtreeSource for MapSource {
        type Error = MissingSubtree;
        fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MissingSubtree> {
            self.0
                .get(&(level, index))
                .copied()
                .ok_or(MissingSubtree { level, index })
        }
    }

    /// Logs every read, to check which stored nodes a computation touches.
    struct RecordingSource<'a> {
        inner: &'a MemorySource,
        reads: RefCell<Vec<(u8, u64)>>,
    }

    impl<'a> RecordingSource<'a> {
        fn new(inner: &'a MemorySource) -> Self {
            Self {
                inner,
                reads: RefCell::new(Vec::new()),
            }
        }

        fn take_sorted_reads(&self) -> Vec<(u8, u64)> {
            let mut reads = self.reads.take();
            reads.sort_unstable();
            reads
        }
    }

    impl SubtreeSource for RecordingSource<'_> {
        type Error = MissingSubtree;
        fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MissingSubtree> {
            self.reads.borrow_mut().push((level, index));
            self.inner.subtree_hash(level, index)
        }
    }

    /// A tree of any size, even 2^64 - 1 leaves, whose leaves are all equal:
    /// every perfect subtree of a level then has the same hash, so it can be
    /// answered without storage, which lets the tests reach u64 edge cases.
    struct UniformSource {
        level_hashes: Vec<Hash>,
    }

    impl UniformSource {
        fn new(leaf_hash: Hash) -> Self {
            let mut level_hashes = vec![leaf_hash];
            for _ in 1..64 {
                let below = level_hashes[level_hashes.len() - 1];
                level_hashes.push(hash_children(&below, &below));
            }
            Self { level_hashes }
        }
    }

    impl SubtreeSource for UniformSource {
        type Error = MissingSubtree;
        fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MissingSubtree> {
            self.level_hashes
                .get(usize::from(level))
                .copied()
                .ok_or(MissingSubtree { level, index })
        }
    }

    // ---- Known-answer vectors from transparency-dev/merkle (Go):
    // testonly/constants.go, proof/verify_test.go, rfc6962/rfc6962_test.go,
    // proof/proof_test.go. ----

    const KAT_LEAF_INPUTS: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    const KAT_EMPTY_ROOT: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const KAT_SOME_HASH: &str = "abacaba000000000000000000000000000000000000000000060061e00123456";

    /// Roots of the trees of the first 1..=8 KAT leaves.
    const KAT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// Every complete subtree of the 8-leaf KAT tree, by level then index.
    const KAT_NODE_HASHES: [&[&str]; 4] = [
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        &[
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        &[
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    ];

    /// The compact-tree (frontier) nodes for sizes 0..=8, as (level, index)
    /// into `KAT_NODE_HASHES` (testonly/constants.go `CompactTrees`).
    const KAT_FRONTIERS: [&[(usize, usize)]; 9] = [
        &[],
        &[(0, 0)],
        &[(1, 0)],
        &[(1, 0), (0, 2)],
        &[(2, 0)],
        &[(2, 0), (0, 4)],
        &[(2, 0), (1, 2)],
        &[(2, 0), (1, 2), (0, 6)],
        &[(3, 0)],
    ];

    /// (leaf index, tree size, proof); verify_test.go numbers leaves from 1.
    const KAT_INCLUSION_PROOFS: [(u64, u64, &[&str]); 5] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (0, 1, &[]),
    ];

    /// (old size, new size, proof).
    const KAT_CONSISTENCY_PROOFS: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn kat_leaf_hashes() -> Vec<Hash> {
        KAT_LEAF_INPUTS
            .iter()
            .map(|input| hash_leaf(&hex::decode(input).expect("valid hex")))
            .collect()
    }

    fn kat_root(size: u64) -> Hash {
        match size {
            0 => hash_from_hex(KAT_EMPTY_ROOT),
            _ => hash_from_hex(KAT_ROOTS[size as usize - 1]),
        }
    }

    fn hashes_from_hex(texts: &[&str]) -> Vec<Hash> {
        texts.iter().map(|text| hash_from_hex(text)).collect()
    }

    #[test]
    fn kat_hashing_primitives() {
        // rfc6962/rfc6962_test.go
        assert_eq!(empty_root(), hash_from_hex(KAT_EMPTY_ROOT));
        assert_eq!(
            hash_leaf(b""),
            hash_from_hex("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        );
        assert_eq!(
            hash_leaf(b"L123456"),
            hash_from_hex("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
        );
        // The Go vector hashes 4-byte "children", which `hash_children`'s
        // types rule out, so it goes through the shared helper.
        assert_eq!(
            sha256_with_prefix(NODE_PREFIX, &[b"N123", b"N456"]),
            hash_from_hex("aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb")
        );
        let left = hash_leaf(b"Hello");
        let right = hash_leaf(b"World");
        assert_ne!(hash_children(&left, &right), hash_children(&right, &left));
        assert_ne!(
            hash_children(&left, &right),
            hash_leaf(&[left, right].concat())
        );
    }

    #[test]
    fn kat_node_hashes_and_roots() {
        let leaves = kat_leaf_hashes();
        let source = MemorySource::from_leaf_hashes(leaves.iter().copied());
        let expected_levels: Vec<Vec<Hash>> = KAT_NODE_HASHES
            .iter()
            .map(|level| hashes_from_hex(level))
            .collect();
        assert_eq!(source.levels(), expected_levels.as_slice());
        assert_eq!(source.size(), 8);
        for size in 0..=8u64 {
            assert_eq!(root(&source, size), Ok(kat_root(size)), "size {size}");
            assert_eq!(reference_root(&leaves[..size as usize]), kat_root(size));
        }
    }

    #[test]
    fn kat_frontier_nodes() {
        let leaves = kat_leaf_hashes();
        let mut frontier = Frontier::new();
        let mut pushed = MapSource::default();
        for (size, frontier_nodes) in KAT_FRONTIERS.iter().enumerate() {
            let expected: Vec<Hash> = frontier_nodes
                .iter()
                .map(|&(level, index)| hash_from_hex(KAT_NODE_HASHES[level][index]))
                .collect();
            assert_eq!(frontier.subtree_roots(), expected.as_slice(), "size {size}");
            assert_eq!(frontier.root(), kat_root(size as u64));
            if let Some(leaf) = leaves.get(size) {
                for (level, index, hash) in frontier.push(*leaf) {
                    pushed.0.insert((level, index), hash);
                }
            }
        }
        let mut expected_nodes = HashMap::new();
        for (level, hashes) in KAT_NODE_HASHES.iter().enumerate() {
            for (index, hash) in hashes.iter().enumerate() {
                expected_nodes.insert((level as u8, index as u64), hash_from_hex(hash));
            }
        }
        assert_eq!(pushed.0, expected_nodes);
    }

    /// Everything a verifier is told about one leaf, so probes can change one
    /// thing at a time with struct-update syntax.
    #[derive(Clone)]
    struct InclusionClaim {
        leaf: Hash,
        index: u64,
        size: u64,
        proof: Vec<Hash>,
        root: Hash,
    }

    impl InclusionClaim {
        fn verify(&self) -> Result<(), VerifyError> {
            verify_inclusion(&self.leaf, self.index, self.size, &self.proof, &self.root)
        }
    }

    /// Go's `corruptInclusionProof` probes. Go's empty-byte "garbage" and
    /// short "WrongLeaf" cannot exist as a 32-byte `Hash`, so fixed 32-byte
    /// stand-ins play those parts.
    fn corrupted_inclusion_claims(honest: &InclusionClaim) -> Vec<(&'static str, InclusionClaim)> {
        let garbage = [0u8; 32];
        let some_hash = hash_from_hex(KAT_SOME_HASH);
        let proof = honest.proof.as_slice();
        let with_proof = |proof: Vec<Hash>| InclusionClaim {
            proof,
            ..honest.clone()
        };
        let mut probes = vec![
            (
                "index - 1",
                InclusionClaim {
                    index: honest.index.wrapping_sub(1),
                    ..honest.clone()
                },
            ),
            (
                "index + 1",
                InclusionClaim {
                    index: honest.index + 1,
                    ..honest.clone()
                },
            ),
            (
                "index ^ 2",
                InclusionClaim {
                    index: honest.index ^ 2,
                    ..honest.clone()
                },
            ),
            (
                "size * 2",
                InclusionClaim {
                    size: honest.size * 2,
                    ..honest.clone()
                },
            ),
            (
                "size / 2",
                InclusionClaim {
                    size: honest.size / 2,
                    ..honest.clone()
                },
            ),
            (
                "wrong leaf",
                InclusionClaim {
                    leaf: hash_leaf(b"WrongLeaf"),
                    ..honest.clone()
                },
            ),
            (
                "empty root",
                InclusionClaim {
                    root: hash_from_hex(KAT_EMPTY_ROOT),
                    ..honest.clone()
                },
            ),
            (
                "random root",
                InclusionClaim {
                    root: some_hash,
                    ..honest.clone()
                },
            ),
            ("trailing garbage", with_proof([proof, &[garbage]].concat())),
            (
                "trailing root",
                with_proof([proof, &[honest.root]].concat()),
            ),
            (
                "preceding garbage",
                with_proof([&[garbage], proof].concat()),
            ),
            (
                "preceding root",
                with_proof([&[honest.root], proof].concat()),
            ),
        ];
        for position in 0..proof.len() {
            let mut modified = proof.to_vec();
            modified[position][0] ^= 8;
            probes.push(("modified proof bit 3", with_proof(modified)));
        }
        if let Some((_, shorter)) = proof.split_last() {
            probes.push(("removed component", with_proof(shorter.to_vec())));
        }
        if let [first, rest @ ..] = proof {
            if !rest.is_empty() {
                let inserted = [&[*first, some_hash], rest].concat();
                probes.push(("inserted component", with_proof(inserted)));
            }
        }
        probes
    }

    #[test]
    fn kat_inclusion_proofs() {
        let leaves = kat_leaf_hashes();
        let source = MemorySource::from_leaf_hashes(leaves.iter().copied());
        for (index, size, proof_hex) in KAT_INCLUSION_PROOFS {
            let expected = hashes_from_hex(proof_hex);
            assert_eq!(inclusion_proof(&source, index, size), Ok(expected.clone()));
            let honest = InclusionClaim {
                leaf: leaves[index as usize],
                index,
                size,
                proof: expected,
                root: kat_root(size),
            };
            assert_eq!(honest.verify(), Ok(()));
            for (description, probe) in corrupted_inclusion_claims(&honest) {
                assert!(
                    probe.verify().is_err(),
                    "{description} verified for leaf {index} of {size}"
                );
            }
            // Beyond Go's single bit: every bit of every hash matters.
            for position in 0..honest.proof.len() {
                for bit in 0..256 {
                    let mut tampered = honest.clone();
                    tampered.proof[position] = flip_bit(&tampered.proof[position], bit);
                    assert_eq!(tampered.verify(), Err(VerifyError::RootMismatch));
                }
            }
        }
    }

    #[test]
    fn kat_inclusion_rejects_degenerate_inputs() {
        // proof/verify_test.go TestVerifyInclusionSingleEntry and TestVerifyInclusion.
        let data_hash = hash_leaf(b"data");
        let empty = hash_from_hex(KAT_EMPTY_ROOT);
        let some_hash = hash_from_hex(KAT_SOME_HASH);
        assert_eq!(verify_inclusion(&data_hash, 0, 1, &[], &data_hash), Ok(()));
        assert!(verify_inclusion(&data_hash, 0, 1, &[], &empty).is_err());
        assert!(verify_inclusion(&empty, 0, 1, &[], &data_hash).is_err());
        for (index, size) in [(0, 0), (0, 1), (1, 0), (2, 1)] {
            assert!(verify_inclusion(&some_hash, index, size, &[], &empty).is_err());
        }
        assert_eq!(
            verify_inclusion(&some_hash, 2, 1, &[], &empty),
            Err(VerifyError::IndexOutOfRange { index: 2, size: 1 })
        );
    }

    #[derive(Clone)]
    struct ConsistencyClaim {
        old_size: u64,
        new_size: u64,
        old_root: Hash,
        new_root: Hash,
        proof: Vec<Hash>,
    }

    impl ConsistencyClaim {
        fn verify(&self) -> Result<(), VerifyError> {
            verify_consistency(
                self.old_size,
                self.new_size,
                &self.old_root,
                &self.new_root,
                &self.proof,
            )
        }
    }

    /// Go's `corruptConsistencyProof` probes, with the same 32-byte stand-ins.
    fn corrupted_consistency_claims(
        honest: &ConsistencyClaim,
    ) -> Vec<(&'static str, ConsistencyClaim)> {
        let garbage = [0u8; 32];
        let wrong_root = hash_leaf(b"WrongRoot");
        let proof = honest.proof.as_slice();
        let (old_root, new_root) = (honest.old_root, honest.new_root);
        let with_proof = |proof: Vec<Hash>| ConsistencyClaim {
            proof,
            ..honest.clone()
        };
        let with_sizes = |old_size: u64, new_size: u64| ConsistencyClaim {
            old_size,
            new_size,
            ..honest.clone()
        };
        let with_roots = |old_root: Hash, new_root: Hash| ConsistencyClaim {
            old_root,
            new_root,
            ..honest.clone()
        };
        let (old, new) = (honest.old_size, honest.new_size);
        let mut probes = vec![
            ("old - 1", with_sizes(old - 1, new)),
            ("old + 1", with_sizes(old + 1, new)),
            ("old ^ 2", with_sizes(old ^ 2, new)),
            ("new * 2", with_sizes(old, new * 2)),
            ("new / 2", with_sizes(old, new / 2)),
            ("wrong old root", with_roots(wrong_root, new_root)),
            ("wrong new root", with_roots(old_root, wrong_root)),
            ("swapped roots", with_roots(new_root, old_root)),
            ("empty proof", with_proof(Vec::new())),
            ("trailing garbage", with_proof([proof, &[garbage]].concat())),
            (
                "trailing old root",
                with_proof([proof, &[old_root]].concat()),
            ),
            (
                "trailing new root",
                with_proof([proof, &[new_root]].concat()),
            ),
            (
                "preceding garbage",
                with_proof([&[garbage], proof].concat()),
            ),
            (
                "preceding old root",
                with_proof([&[old_root], proof].concat()),
            ),
            (
                "preceding new root",
                with_proof([&[new_root], proof].concat()),
            ),
            (
                "preceding proof[0]",
                with_proof([&proof[..1], proof].concat()),
            ),
        ];
        if let Some((_, shorter)) = proof.split_last() {
            probes.push(("truncated proof", with_proof(shorter.to_vec())));
        }
        for position in 0..proof.len() {
            let mut modified = proof.to_vec();
            modified[position][0] ^= 16;
            probes.push(("modified proof bit 4", with_proof(modified)));
        }
        probes
    }

    #[test]
    fn kat_consistency_proofs() {
        let leaves = kat_leaf_hashes();
        let source = MemorySource::from_leaf_hashes(leaves.iter().copied());
        for (old_size, new_size, proof_hex) in KAT_CONSISTENCY_PROOFS {
            let expected = hashes_from_hex(proof_hex);
            assert_eq!(
                consistency_proof(&source, old_size, new_size),
                Ok(expected.clone())
            );
            let honest = ConsistencyClaim {
                old_size,
                new_size,
                old_root: kat_root(old_size),
                new_root: kat_root(new_size),
                proof: expected,
            };
            assert_eq!(honest.verify(), Ok(()));
            // As in Go, only non-trivial proofs are corrupted: an empty proof
            // between equal sizes has no "size - 1" that must fail.
            if honest.proof.is_empty() {
                continue;
            }
            for (description, probe) in corrupted_consistency_claims(&honest) {
                assert!(
                    probe.verify().is_err(),
                    "{description} verified for {old_size} -> {new_size}"
                );
            }
            for position in 0..honest.proof.len() {
                for bit in 0..256 {
                    let mut tampered = honest.clone();
                    tampered.proof[position] = flip_bit(&tampered.proof[position], bit);
                    assert_eq!(tampered.verify(), Err(VerifyError::RootMismatch));
                }
            }
        }
    }

    #[test]
    fn kat_consistency_edge_cases() {
        // proof/verify_test.go TestVerifyConsistency.
        let root1 = hash_leaf(b"don't care 1");
        let root2 = hash_leaf(b"don't care 2");
        let empty = hash_from_hex(KAT_EMPTY_ROOT);
        let no_proof: &[Hash] = &[];
        let one_hash: &[Hash] = &[empty];
        let cases = [
            (0, 0, root1, root2, no_proof, false),
            (1, 1, root1, root2, no_proof, false),
            (0, 0, root1, root1, no_proof, true),
            (0, 1, root1, root2, no_proof, true),
            (1, 1, root2, root2, no_proof, true),
            (1, 0, root1, root2, no_proof, false),
            (2, 1, root1, root2, no_proof, false),
            (1, 2, root1, root2, no_proof, false),
            (0, 0, empty, root2, no_proof, false),
            (1, 1, empty, root2, no_proof, false),
            (0, 0, empty, empty, one_hash, false),
            (0, 1, empty, empty, one_hash, false),
            (1, 1, empty, empty, one_hash, false),
        ];
        for (old_size, new_size, old_root, new_root, proof, accepted) in cases {
            assert_eq!(
                verify_consistency(old_size, new_size, &old_root, &new_root, proof).is_ok(),
                accepted,
                "{old_size} -> {new_size}, {} proof hashes",
                proof.len()
            );
        }
        assert_eq!(
            verify_consistency(2, 1, &root1, &root2, &[]),
            Err(VerifyError::SizeOutOfRange {
                old_size: 2,
                new_size: 1
            })
        );
        assert_eq!(
            verify_consistency(1, 2, &root1, &root2, &[]),
            Err(VerifyError::WrongProofLength {
                expected: 1,
                got: 0
            })
        );
    }

    /// proof/proof_test.go lists which stored nodes each proof needs; reading
    /// exactly those (in any order) shows proofs cost O(log n) reads.
    #[test]
    fn kat_proofs_read_exactly_the_needed_nodes() {
        type Reads = &'static [(u8, u64)];
        let inclusion_cases: &[(u64, u64, Reads)] = &[
            (1, 0, &[]),
            (2, 0, &[(0, 1)]),
            (2, 1, &[(0, 0)]),
            (3, 1, &[(0, 0), (0, 2)]),
            (7, 0, &[(0, 1), (1, 1), (0, 6), (1, 2)]),
            (7, 1, &[(0, 0), (1, 1), (0, 6), (1, 2)]),
            (7, 2, &[(0, 3), (1, 0), (0, 6), (1, 2)]),
            (7, 3, &[(0, 2), (1, 0), (0, 6), (1, 2)]),
            (7, 4, &[(0, 5), (0, 6), (2, 0)]),
            (7, 5, &[(0, 4), (0, 6), (2, 0)]),
            (7, 6, &[(1, 2), (2, 0)]),
            (4, 2, &[(0, 3), (1, 0)]),
            (5, 3, &[(0, 2), (1, 0), (0, 4)]),
            (6, 3, &[(0, 2), (1, 0), (1, 2)]),
            (6, 4, &[(0, 5), (2, 0)]),
            (15, 10, &[(0, 11), (1, 4), (0, 14), (1, 6), (3, 0)]),
            (
                31,
                24,
                &[(0, 25), (1, 13), (0, 30), (1, 14), (3, 2), (4, 0)],
            ),
            (
                95,
                81,
                &[
                    (0, 80),
                    (1, 41),
                    (2, 21),
                    (0, 94),
                    (1, 46),
                    (2, 22),
                    (4, 4),
                    (6, 0),
                ],
            ),
        ];
        let consistency_cases: &[(u64, u64, Reads)] = &[
            (1, 2, &[(0, 1)]),
            (1, 4, &[(0, 1), (1, 1)]),
            (1, 6, &[(0, 1), (1, 1), (1, 2)]),
            (2, 3, &[(0, 2)]),
            (2, 8, &[(1, 1), (2, 1)]),
            (3, 7, &[(0, 2), (0, 3), (1, 0), (0, 6), (1, 2)]),
            (4, 7, &[(0, 6), (1, 2)]),
            (5, 7, &[(0, 4), (0, 5), (0, 6), (2, 0)]),
            (6, 7, &[(1, 2), (0, 6), (2, 0)]),
            (7, 8, &[(0, 6), (0, 7), (1, 2), (2, 0)]),
            (1, 1, &[]),
            (2, 2, &[]),
            (3, 3, &[]),
            (4, 4, &[]),
            (5, 5, &[]),
            (7, 7, &[]),
            (8, 8, &[]),
            (2, 4, &[(1, 1)]),
            (3, 5, &[(0, 2), (0, 3), (1, 0), (0, 4)]),
            (3, 6, &[(0, 2), (0, 3), (1, 0), (1, 2)]),
            (4, 6, &[(1, 2)]),
            (1, 7, &[(0, 1), (1, 1), (0, 6), (1, 2)]),
            (10, 15, &[(1, 4), (1, 5), (0, 14), (1, 6), (3, 0)]),
            (24, 31, &[(3, 2), (0, 30), (1, 14), (2, 6), (4, 0)]),
            (
                81,
                95,
                &[
                    (0, 80),
                    (0, 81),
                    (1, 41),
                    (2, 21),
                    (0, 94),
                    (1, 46),
                    (2, 22),
                    (4, 4),
                    (6, 0),
                ],
            ),
        ];
        let memory = MemorySource::from_leaf_hashes(test_leaf_hashes(128));
        let source = RecordingSource::new(&memory);
        for &(size, index, reads) in inclusion_cases {
            assert!(inclusion_proof(&source, index, size).is_ok());
            let mut expected = reads.to_vec();
            expected.sort_unstable();
            assert_eq!(
                source.take_sorted_reads(),
                expected,
                "inclusion {index} of {size}"
            );
        }
        for &(old_size, new_size, reads) in consistency_cases {
            assert!(consistency_proof(&source, old_size, new_size).is_ok());
            let mut expected = reads.to_vec();
            expected.sort_unstable();
            assert_eq!(
                source.take_sorted_reads(),
                expected,
                "consistency {old_size} -> {new_size}"
            );
        }
        for (size, index) in [(0, 0), (0, 1), (1, 2), (0, 3), (7, 8)] {
            assert_eq!(
                inclusion_proof(&source, index, size),
                Err(ProofError::IndexOutOfRange { index, size })
            );
        }
        for (old_size, new_size) in [(5, 0), (9, 8)] {
            assert_eq!(
                consistency_proof(&source, old_size, new_size),
                Err(ProofError::SizeOutOfRange { old_size, new_size })
            );
        }
        assert!(source.take_sorted_reads().is_empty());
        for size in 0..=128 {
            assert!(root(&source, size).is_ok());
            assert_eq!(source.take_sorted_reads().len(), size.count_ones() as usize);
        }
    }

    // ---- Exhaustive checks on small trees. ----

    #[test]
    fn range_root_matches_reference_for_every_small_range() {
        let leaves = test_leaf_hashes(40);
        let source = MemorySource::from_leaf_hashes(leaves.iter().copied());
        for start in 0..=leaves.len() {
            for end in start..=leaves.len() {
                assert_eq!(
                    range_root(&source, start as u64, end as u64),
                    Ok(reference_root(&leaves[start..end])),
                    "[{start}, {end})"
                );
            }
        }
        assert_eq!(range_root(&source, 9, 3), Ok(empty_root()));
        assert_eq!(
            root(&source, 41),
            Err(MissingSubtree {
                level: 0,
                index: 40
            })
        );
    }

    #[test]
    fn every_small_proof_matches_reference_and_verifies() {
        let leaves = test_leaf_hashes(48);
        let source = MemorySource::from_leaf_hashes(leaves.iter().copied());
        let roots: Vec<Hash> = (0..=leaves.len())
            .map(|size| reference_root(&leaves[..size]))
            .collect();
        for new_size in 0..=leaves.len() {
            let new = new_size as u64;
            for index in 0..new_size {
                let proof = inclusion_proof(&source, index as u64, new).expect("stored");
                assert_eq!(proof, reference_path(index, &leaves[..new_size]));
                assert_eq!(
                    verify_inclusion(&leaves[index], index as u64, new, &proof, &roots[new_size]),
                    Ok(())
                );
            }
            for old_size in 0..=new_size {
                let old = old_size as u64;
                let proof = consistency_proof(&source, old, new).expect("stored");
                assert_eq!(proof, reference_consistency(old_size, &leaves[..new_size]));
                assert_eq!(
                    verify_consistency(old, new, &roots[old_size], &roots[new_size], &proof),
                    Ok(())
                );
            }
        }
    }

    #[test]
    fn verification_reports_actionable_errors() {
        let leaves = test_leaf_hashes(7);
        let source = MemorySource::from_leaf_hashes(leaves.iter().copied());
        let root_hash = reference_root(&leaves);
        let proof = inclusion_proof(&source, 2, 7).expect("stored");
        assert_eq!(
            verify_inclusion(&leaves[2], 2, 7, &proof[1..], &root_hash),
            Err(VerifyError::WrongProofLength {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(
            verify_inclusion(&leaves[2], 7, 7, &proof, &root_hash),
            Err(VerifyError::IndexOutOfRange { index: 7, size: 7 })
        );
        assert_eq!(
            verify_consistency(3, 3, &root_hash, &root_hash, &proof),
            Err(VerifyError::WrongProofLength {
                expected: 0,
                got: 3
            })
        );
        let message = VerifyError::WrongProofLength {
            expected: 3,
            got: 2,
        }
        .to_string();
        assert!(message.contains('3') && message.contains('2'), "{message}");
        assert!(VerifyError::IndexOutOfRange { index: 9, size: 4 }
            .to_string()
            .contains("9"));

        let missing = inclusion_proof(&source, 3, 9).expect_err("only 7 leaves stored");
        assert!(matches!(missing, ProofError::Source(MissingSubtree { .. })));
        assert!(missing.source().is_some());
        assert!(missing.to_string().contains("stored subtree"), "{missing}");
        let backwards: ProofError<MissingSubtree> = ProofError::SizeOutOfRange {
            old_size: 5,
            new_size: 2,
        };
        assert!(backwards.source().is_none());
        assert!(backwards.to_string().contains("5"), "{backwards}");
    }

    // ---- u64 edge cases. ----

    #[test]
    fn proofs_work_at_the_limits_of_u64_sizes() {
        let leaf = hash_leaf(b"same leaf everywhere");
        let source = UniformSource::new(leaf);
        let half = 1u64 << 63;
        for (index, size) in [
            (0, half + 1),
            (half, half + 1),
            (12_345, u64::MAX),
            (half, u64::MAX),
            (u64::MAX - 1, u64::MAX),
        ] {
            let proof = inclusion_proof(&source, index, size).expect("uniform");
            let root_hash = root(&source, size).expect("uniform");
            assert_eq!(
                verify_inclusion(&leaf, index, size, &proof, &root_hash),
                Ok(()),
                "{index} of {size}"
            );
        }
        for (old_size, new_size) in [
            (1, u64::MAX),
            (3, half + 1),
            (half, u64::MAX),
            ((1 << 62) + 5, half),
            (u64::MAX - 1, u64::MAX),
        ] {
            let proof = consistency_proof(&source, old_size, new_size).expect("uniform");
            let old_root = root(&source, old_size).expect("uniform");
            let new_root = root(&source, new_size).expect("uniform");
            assert_eq!(
                verify_consistency(old_size, new_size, &old_root, &new_root, &proof),
                Ok(()),
                "{old_size} -> {new_size}"
            );
        }
        let mut full = Frontier::load(&source, u64::MAX).expect("uniform");
        assert_eq!(full.subtree_roots().len(), 64);
        assert_eq!(Ok(full.root()), root(&source, u64::MAX));
        assert_eq!(full.try_push(leaf), None);
        assert_eq!(full.size(), u64::MAX);
        let mut almost_full = Frontier::load(&source, u64::MAX - 1).expect("uniform");
        assert_eq!(almost_full.try_push(leaf).map(|nodes| nodes.len()), Some(1));
        assert_eq!(almost_full, full);
    }

    #[test]
    #[should_panic(expected = "u64::MAX leaves")]
    fn push_onto_a_full_tree_panics() {
        let source = UniformSource::new(hash_leaf(b"x"));
        let mut full = Frontier::load(&source, u64::MAX).expect("uniform");
        full.push(hash_leaf(b"one too many"));
    }

    // ---- Frontier against the reference and against a store fed by push. ----

    #[test]
    fn frontier_matches_reference_and_reloads_from_pushed_nodes() {
        let leaves = test_leaf_hashes(400);
        let mut frontier = Frontier::new();
        let mut store = MapSource::default();
        assert_eq!(frontier.root(), empty_root());
        assert_eq!(Frontier::load(&store, 0), Ok(Frontier::default()));
        for (position, leaf) in leaves.iter().enumerate() {
            let completed = frontier.push(*leaf);
            assert_eq!(completed.first(), Some(&(0, position as u64, *leaf)));
            for (expected_level, &(level, index, hash)) in completed.iter().enumerate() {
                assert_eq!(usize::from(level), expected_level);
                assert!(
                    store.0.insert((level, index), hash).is_none(),
                    "node ({level}, {index}) reported twice"
                );
            }
            let size = position as u64 + 1;
            assert_eq!(frontier.size(), size);
            assert_eq!(frontier.root(), reference_root(&leaves[..=position]));
            assert_eq!(Frontier::load(&store, size), Ok(frontier.clone()));
            assert_eq!(root(&store, size), Ok(frontier.root()));
        }
        // What push reported is exactly every complete aligned subtree.
        let memory = MemorySource::from_leaf_hashes(leaves.iter().copied());
        let mut every_subtree = HashMap::new();
        for (level, hashes) in memory.levels().iter().enumerate() {
            for (index, hash) in hashes.iter().enumerate() {
                every_subtree.insert((level as u8, index as u64), *hash);
            }
        }
        assert_eq!(store.0, every_subtree);
    }

    // ---- Property tests on trees of up to PROPERTY_MAX_SIZE leaves. ----

    const PROPERTY_MAX_SIZE: u64 = 300;

    struct Fixture {
        leaves: Vec<Hash>,
        source: MemorySource,
        /// `roots[n]` is the reference root of the first `n` leaves.
        roots: Vec<Hash>,
    }

    /// One stored tree serves every smaller size too, since a smaller tree's
    /// complete subtrees are all complete subtrees of the larger one.
    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let leaves = test_leaf_hashes(PROPERTY_MAX_SIZE as usize);
            let source = MemorySource::from_leaf_hashes(leaves.iter().copied());
            let roots = (0..=leaves.len())
                .map(|size| reference_root(&leaves[..size]))
                .collect();
            Fixture {
                leaves,
                source,
                roots,
            }
        })
    }

    fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
        (1..=PROPERTY_MAX_SIZE).prop_flat_map(|size| (Just(size), 0..size))
    }

    fn old_and_new_size() -> impl Strategy<Value = (u64, u64)> {
        (2..=PROPERTY_MAX_SIZE).prop_flat_map(|new_size| (1..new_size, Just(new_size)))
    }

    proptest! {
        // A different size is checked against *that* size's root. Checked
        // against the original root it can legitimately pass: e.g. a proof for
        // leaf 0 of 3 also hashes to the 3-leaf root when read as leaf 0 of 4,
        // because a bare root does not commit to a size. Hence checkpoints
        // sign the size together with the root.
        #[test]
        fn inclusion_proofs_verify_and_every_tampering_fails(
            (size, index) in size_and_index(),
            bit in 0usize..256,
            other_index in 0..PROPERTY_MAX_SIZE,
            other_size in 1..=PROPERTY_MAX_SIZE,
        ) {
            let fixture = fixture();
            let leaf = fixture.leaves[index as usize];
            let root_hash = fixture.roots[size as usize];
            let proof = inclusion_proof(&fixture.source, index, size).expect("stored");
            prop_assert_eq!(
                &proof,
                &reference_path(index as usize, &fixture.leaves[..size as usize])
            );
            prop_assert_eq!(root(&fixture.source, size), Ok(root_hash));
            prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root_hash), Ok(()));

            for position in 0..proof.len() {
                let mut tampered = proof.clone();
                tampered[position] = flip_bit(&tampered[position], (bit + 37 * position) % 256);
                prop_assert_eq!(
                    verify_inclusion(&leaf, index, size, &tampered, &root_hash),
                    Err(VerifyError::RootMismatch)
                );
            }
            prop_assert_eq!(
                verify_inclusion(&leaf, index, size, &proof, &flip_bit(&root_hash, bit)),
                Err(VerifyError::RootMismatch)
            );
            prop_assert_eq!(
                verify_inclusion(&flip_bit(&leaf, bit), index, size, &proof, &root_hash),
                Err(VerifyError::RootMismatch)
            );
            let other_index = other_index % size;
            if other_index != index {
                prop_assert!(verify_inclusion(&leaf, other_index, size, &proof, &root_hash).is_err());
                let other_leaf = fixture.leaves[other_index as usize];
                prop_assert!(
                    verify_inclusion(&other_leaf, other_index, size, &proof, &root_hash).is_err()
                );
            }
            if other_size != size {
                let other_root = fixture.roots[other_size as usize];
                prop_assert!(
                    verify_inclusion(&leaf, index, other_size, &proof, &other_root).is_err()
                );
            }
        }

        #[test]
        fn a_batch_proves_its_own_entries_without_the_store(
            (first, end) in old_and_new_size(),
        ) {
            let fixture = fixture();
            let mut frontier = Frontier::new();
            for leaf in &fixture.leaves[..first as usize] {
                frontier.push(*leaf);
            }
            let mut batch = BatchSubtrees::starting_from(&frontier);
            for leaf in &fixture.leaves[first as usize..end as usize] {
                batch.record(&frontier.push(*leaf));
            }
            prop_assert_eq!(batch.end, end);
            prop_assert_eq!(batch.inclusion_proof(first - 1), None);
            prop_assert_eq!(batch.inclusion_proof(end), None);
            for index in first..end {
                prop_assert_eq!(
                    batch.inclusion_proof(index),
                    Some(reference_path(index as usize, &fixture.leaves[..end as usize]))
                );
            }
        }

        #[test]
        fn consistency_proofs_verify_and_every_tampering_fails(
            (old_size, new_size) in old_and_new_size(),
            bit in 0usize..256,
            other_old_size in 1..PROPERTY_MAX_SIZE,
            other_new_size in 2..=PROPERTY_MAX_SIZE,
        ) {
            let fixture = fixture();
            let old_root = fixture.roots[old_size as usize];
            let new_root = fixture.roots[new_size as usize];
            let proof = consistency_proof(&fixture.source, old_size, new_size).expect("stored");
            prop_assert_eq!(
                &proof,
                &reference_consistency(old_size as usize, &fixture.leaves[..new_size as usize])
            );
            prop_assert_eq!(
                verify_consistency(old_size, new_size, &old_root, &new_root, &proof),
                Ok(())
            );

            for position in 0..proof.len() {
                let mut tampered = proof.clone();
                tampered[position] = flip_bit(&tampered[position], (bit + 37 * position) % 256);
                prop_assert_eq!(
                    verify_consistency(old_size, new_size, &old_root, &new_root, &tampered),
                    Err(VerifyError::RootMismatch)
                );
            }
            prop_assert_eq!(
                verify_consistency(old_size, new_size, &flip_bit(&old_root, bit), &new_root, &proof),
                Err(VerifyError::RootMismatch)
            );
            prop_assert_eq!(
                verify_consistency(old_size, new_size, &old_root, &flip_bit(&new_root, bit), &proof),
                Err(VerifyError::RootMismatch)
            );
            if other_old_size != old_size {
                let other_root = fixture.roots[other_old_size as usize];
                prop_assert!(
                    verify_consistency(other_old_size, new_size, &other_root, &new_root, &proof)
                        .is_err()
                );
            }
            if other_new_size != new_size {
                let other_root = fixture.roots[other_new_size as usize];
                prop_assert!(
                    verify_consistency(old_size, other_new_size, &old_root, &other_root, &proof)
                        .is_err()
                );
            }
        }
    }
}
