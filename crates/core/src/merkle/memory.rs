//! A whole tree of complete aligned subtrees held in memory: for tests, and
//! for an auditor rebuilding a log from its leaves.

use std::error::Error;
use std::fmt;

use super::{hash_children, Hash, SubtreeSource};

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
