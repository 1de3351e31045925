//! The Merkle tree's stored nodes, sixteen leaves' worth to a sled key.
//!
//! A tile `(t, n)` holds the complete subtrees at tree levels `4t .. 4t+3`
//! above the 16 level-`4t` nodes `16n .. 16n+15`: up to 16 + 8 + 4 + 2 = 30
//! hashes, rows from the bottom, each row left to right. A tile on the
//! tree's right edge holds only what is complete so far and is rewritten as
//! appends complete more; a full tile never changes again. This is the
//! shape of Go's tlog "stored hashes" and of C2SP tlog-tiles, with height 4.
//!
//! **Why.** One key per node made a proof read ~log2(n) sled keys, and
//! writing them was one sled insert per node (two per entry). Tiles make a
//! batch write a handful of keys (the right-edge tile at each tile level)
//! and a proof read about log16(n) small ones (five at a million entries),
//! whose upper levels stay in sled's cache however large the log grows.
//!
//! Value layout: `count u8` (complete level-`4t` nodes, 1..=16) then the
//! rows: `count >> j` hashes at level `4t + j`, for j = 0..4.

use ceasefire_core::merkle::Hash;

/// Tree levels per tile.
const TILE_HEIGHT: u8 = 4;
/// Level-`4t` nodes per tile.
const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// The byte that starts every tile key.
pub const KEY_PREFIX: u8 = b'n';

/// Which tile holds node `(level, index)`, and where in it: (tile level,
/// tile index, row, position in the row).
pub struct Place {
    pub tile_level: u8,
    pub tile_index: u64,
    row: u8,
    position: usize,
}

impl Place {
    pub fn of(level: u8, index: u64) -> Place {
        let row = level % TILE_HEIGHT;
        let row_width = TILE_WIDTH >> row;
        Place {
            tile_level: level / TILE_HEIGHT,
            tile_index: index / row_width,
            row,
            position: (index % row_width) as usize,
        }
    }
}

/// The key of tile `(tile_level, tile_index)`.
pub fn key(tile_level: u8, tile_index: u64) -> [u8; 10] {
    let mut key = [KEY_PREFIX; 10];
    key[1] = tile_level;
    key[2..].copy_from_slice(&tile_index.to_be_bytes());
    key
}

/// A tile's nodes, row by row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tile {
    rows: [Vec<Hash>; TILE_HEIGHT as usize],
}

/// Why a stored tile cannot be read: it is damaged.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

impl Tile {
    pub fn decode(bytes: &[u8]) -> Result<Tile, Malformed> {
        let (&count, mut rest) = bytes.split_first().ok_or(Malformed)?;
        if count == 0 || u64::from(count) > TILE_WIDTH {
            return Err(Malformed);
        }
        let mut tile = Tile::default();
        for (row, hashes) in tile.rows.iter_mut().enumerate() {
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
        Ok(tile)
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

    /// The node at `place`, if the tile holds it yet.
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
        let mut tiles: BTreeMap<(u8, u64), Tile> = BTreeMap::new();
        let mut nodes = Vec::new();
        for leaf in 0..300u64 {
            for (level, index, hash) in frontier.push(hash_leaf(&leaf.to_be_bytes())) {
                let place = Place::of(level, index);
                let tile = tiles
                    .entry((place.tile_level, place.tile_index))
                    .or_default();
                assert!(
                    tile.push(&place, hash),
                    "node ({level}, {index}) out of order"
                );
                nodes.push((level, index, hash));
            }
            // Every tile round-trips at every size a store writes it at.
            for tile in tiles.values() {
                assert_eq!(Tile::decode(&tile.encode()).as_ref(), Ok(tile));
            }
        }
        for (level, index, hash) in nodes {
            let place = Place::of(level, index);
            assert_eq!(
                tiles[&(place.tile_level, place.tile_index)].get(&place),
                Some(hash)
            );
        }
        // 300 leaves: tiles 0..=18 at tile level 0 (the last with 12 leaves),
        // 0..=1 at level 1, one at level 2.
        assert_eq!(tiles.keys().filter(|(level, _)| *level == 0).count(), 19);
        assert_eq!(tiles[&(0, 18)].rows[0].len(), 12);
        assert_eq!(tiles[&(0, 0)].encode().len(), 1 + 30 * 32);
    }

    #[test]
    fn damaged_tiles_are_refused() {
        let mut tile = Tile::default();
        for index in 0..3 {
            tile.push(&Place::of(0, index), [index as u8; 32]);
        }
        tile.push(&Place::of(1, 0), [9; 32]);
        let bytes = tile.encode();
        assert_eq!(Tile::decode(&bytes).as_ref(), Ok(&tile));
        for cut in 0..bytes.len() {
            assert_eq!(Tile::decode(&bytes[..cut]), Err(Malformed), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Tile::decode(&long), Err(Malformed));
        assert_eq!(Tile::decode(&[17]), Err(Malformed));
        assert!(!tile.push(&Place::of(0, 5), [0; 32]), "a gap was accepted");
    }
}
