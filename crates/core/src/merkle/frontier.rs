//! The right edge of a growing tree (what the sequencer keeps in memory),
//! and the subtrees one batch of appends completed (what proves its entries
//! without reading the store).

use super::{
    aligned_pieces, fold_from_right, hash_children, inclusion_proof, Hash, MissingSubtree,
    SubtreeSource,
};

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
        for (level, first_leaf) in aligned_pieces(0, size) {
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
    pub(super) first: u64,
    /// One past its last leaf: the size of the tree the proofs are for.
    pub(super) end: u64,
    pub(super) nodes: std::collections::HashMap<(u8, u64), Hash>,
}

impl BatchSubtrees {
    /// A batch about to extend the tree whose right edge is `before`.
    pub fn starting_from(before: &Frontier) -> Self {
        let nodes = aligned_pieces(0, before.size())
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
