//! The Merkle tree's stored nodes, sixteen leaves' worth to a sled key.
//!
//! A block `(t, n)` holds the complete subtrees at tree levels `4t .. 4t+3`
//! above the 16 level-`4t` nodes `16n .. 16n+15`: up to 16 + 8 + 4 + 2 = 30
//! hashes, rows from the bottom, each row left to right. A block on the
//! tree's right edge holds only what is complete so far and is rewritten as
//! appends complete more; a full block never changes again. This is the
//! shape of Go's tlog "stored hashes" and of a C2SP tlog-tiles hash tile, with
//! height 4 (called a block here: "tile" means only the export's 256-wide tiles).
//!
//! **Why.** One key per node made a proof read ~log2(n) sled keys, and
//! writing them was one sled insert per node (two per entry). Blocks make a
//! batch write a handful of keys (the right-edge block at each block level)
//! and a proof read about log16(n) small ones (five at a million entries),
//! whose upper levels stay in sled's cache however large the log grows.
//!
//! Value layout: `count u8` (complete level-`4t` nodes, 1..=16) then the
//! rows: `count >> j` hashes at level `4t + j`, for j = 0..4.

use ceasefire_core::merkle::Hash;

/// Tree levels per block.
const BLOCK_HEIGHT: u8 = 4;
/// Level-`4t` nodes per block.
const TILE_WIDTH: u64 = 1 << BLOCK_HEIGHT;

/// The byte that starts every block key.
pub const KEY_PREFIX: u8 = b'n';

/// Which block holds node `(level, index)`, and where in it: (block level,
/// block index, row, position in the row).
pub struct Place {
    pub block_level: u8,
    pub block_index: u64,
    row: u8,
    position: usize,
}

impl Place {
    pub fn of(level: u8, index: u64) -> Place {
        let row = level % BLOCK_HEIGHT;
        let row_width = TILE_WIDTH >> row;
        Place {
            block_level: level / BLOCK_HEIGHT,
            block_index: index / row_width,
            row,
            position: (index % row_width) as usize,
        }
    }
}

/// The key of block `(block_level, block_index)`.
pub fn key(block_level: u8, block_index: u64) -> [u8; 10] {
    let mut key = [KEY_PREFIX; 10];
    key[1] = block_level;
    key[2..].copy_from_slice(&block_index.to_be_bytes());
    key
}

/// A block's nodes, row by row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Block {
    rows: [Vec<Hash>; BLOCK_HEIGHT as usize],
}

/// Why a stored block cannot be read: it is damaged.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

impl Block {
    pub fn decode(bytes: &[u8]) -> Result<Block, Malformed> {
        let (&count, mut rest) = bytes.split_first().ok_or(Malformed)?;
        if count == 0 || u64::from(count) > TILE_WIDTH {
            return Err(Malformed);
        }
        let mut block = Block::default();
        for (row, hashes) in block.rows.iter_mut().enumerate() {
            let len = (usize::from(count) >> row) * 32;
            let (row_bytes, after) = rest.split_at_checked(len).ok_or(Malformed)?;
            *hashes = row_bytes
                .chunks_exact(32)
                .map(|hash| hash.try_into().unwrap_or([0; 32]))
                .collect();
            rest = after;
        }
        if !rest.is_empty() {
            return Err(Malformed);
        }
        Ok(block)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 32 * 30);
        out.push(self.rows[0].len() as u8);
        for row in &self.rows {
            for hash in row {
                out.extend_from_slice(hash);
            }
        }
        out
    }

    /// The node at `place`, if the block holds it yet.
    pub fn get(&self, place: &Place) -> Option<Hash> {
        self.rows[usize::from(place.row)]
            .get(place.position)
            .copied()
    }

    /// Adds the node at `place`. Nodes complete left to right, bottom up,
    /// so it must be the next of its row; `false` if it is not.
    pub fn push(&mut self, place: &Place, hash: Hash) -> bool {
        let row = &mut self.rows[usize::from(place.row)];
        if row.len() != place.position {
            return false;
        }
        row.push(hash);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ceasefire_core::merkle::{hash_leaf, Frontier};
    use std::collections::BTreeMap;

    #[test]
    fn every_node_lands_in_one_place_and_reads_back() {
        let mut frontier = Frontier::new();
        let mut blocks: BTreeMap<(u8, u64), Block> = BTreeMap::new();
        let mut nodes = Vec::new();
        for leaf in 0..300u64 {
            for (level, index, hash) in frontier.push(hash_leaf(&leaf.to_be_bytes())) {
                let place = Place::of(level, index);
                let block = blocks
                    .entry((place.block_level, place.block_index))
                    .or_default();
                assert!(
                    block.push(&place, hash),
                    "node ({level}, {index}) out of order"
                );
                nodes.push((level, index, hash));
            }
            // Every block round-trips at every size a store writes it at.
            for block in blocks.values() {
                assert_eq!(Block::decode(&block.encode()).as_ref(), Ok(block));
            }
        }
        for (level, index, hash) in nodes {
            let place = Place::of(level, index);
            assert_eq!(
                blocks[&(place.block_level, place.block_index)].get(&place),
                Some(hash)
            );
        }
        // 300 leaves: blocks 0..=18 at block level 0 (the last with 12 leaves),
        // 0..=1 at level 1, one at level 2.
        assert_eq!(blocks.keys().filter(|(level, _)| *level == 0).count(), 19);
        assert_eq!(blocks[&(0, 18)].rows[0].len(), 12);
        assert_eq!(blocks[&(0, 0)].encode().len(), 1 + 30 * 32);
    }

    #[test]
    fn damaged_tiles_are_refused() {
        let mut block = Block::default();
        for index in 0..3 {
            block.push(&Place::of(0, index), [index as u8; 32]);
        }
        block.push(&Place::of(1, 0), [9; 32]);
        let bytes = block.encode();
        assert_eq!(Block::decode(&bytes).as_ref(), Ok(&block));
        for cut in 0..bytes.len() {
            assert_eq!(Block::decode(&bytes[..cut]), Err(Malformed), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Block::decode(&long), Err(Malformed));
        assert_eq!(Block::decode(&[17]), Err(Malformed));
        assert!(!block.push(&Place::of(0, 5), [0; 32]), "a gap was accepted");
    }
}
