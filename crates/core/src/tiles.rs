//! The C2SP tlog-tiles layout of a log: paths, which tiles a tree has, and
//! building and combining hash tiles. Pure: the export that writes a
//! directory lives in the node (`ceasefire_node::export`), the reader an
//! auditor uses in `ceasefire_audit::tiles`.
//!
//!
//! Layout (C2SP `tlog-tiles.md`, tile height 8, SHA-256; paths relative to
//! the directory):
//!
//! | path | content |
//! |---|---|
//! | `checkpoint` | the signed checkpoint note, exactly as the store holds it |
//! | `tile/<L>/<N>` | full hash tile: 256 hashes of 32 bytes (8,192 bytes) |
//! | `tile/<L>/<N>.p/<W>` | partial hash tile: its first `W` (1..255) hashes |
//! | `tile/entries/<N>` | full entry bundle: leaves `N*256 ..= N*256+255` |
//! | `tile/entries/<N>.p/<W>` | partial entry bundle: its first `W` leaves |
//! | `ceasefire-ledger/projection` | `{"as_of_seq": N, "digest": "<hex>"}` (ours, not C2SP) |
//!
//! - Level `L` tile `N` holds the Merkle Tree Hashes of the complete subtrees
//!   at tree level `8L` with indices `N*256 .. N*256+255` (level 0: leaf
//!   hashes); in our store these are `subtree_hash(8L, N*256 + i)`.
//! - `<N>` is written in groups of three decimal digits, all but the last
//!   prefixed with `x`: 1234067 is `x001/x234/067`.
//! - For a tree of size `s`, level `L` has `(s >> 8L) / 256` full tiles and,
//!   if `(s >> 8L) % 256` is not zero, one partial tile of that width; the
//!   levels stop at the first `L` with `s >> 8L == 0`. Entry bundles follow
//!   level 0. (C2SP: "The partial tile at level l for a tree of size s has
//!   floor(s / 256**l) mod 256 entries. Empty tiles MUST NOT be served.")
//! - An entry bundle is each leaf (docs/spec.md section 3, always < 64 KiB)
//!   as a big-endian `u16` length followed by the leaf bytes.
//!

use crate::merkle::{self, hash_children, Hash};

/// Tree levels covered by one tile.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile, entries in a full bundle.
pub const TILE_WIDTH: u16 = 1 << TILE_HEIGHT;
/// Bytes of one hash in a tile.
pub const HASH_SIZE: usize = 32;
/// Highest tile level a tree of up to 2^64 - 1 leaves can have.
pub const MAX_TILE_LEVEL: u8 = 7;
/// The checkpoint's path in the directory.
pub const CHECKPOINT_PATH: &str = "checkpoint";
/// Our projection head's path in the directory (not part of C2SP).
pub const PROJECTION_PATH: &str = "ceasefire-ledger/projection";

pub const TILE_FULL: usize = TILE_WIDTH as usize;

/// `x >> shift`, zero once everything is shifted out (no overflow panic).
pub fn shr(x: u64, shift: u32) -> u64 {
    x.checked_shr(shift).unwrap_or(0)
}

/// `<N>` of a tile path: groups of three digits, all but the last `x`-prefixed.
pub fn index_path(index: u64) -> String {
    let mut groups = vec![index % 1000];
    let mut rest = index / 1000;
    while rest > 0 {
        groups.push(rest % 1000);
        rest /= 1000;
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(position, group)| {
            if position < last {
                format!("x{group:03}")
            } else {
                format!("{group:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

pub fn with_width(base: String, width: u16) -> String {
    if width >= TILE_WIDTH {
        base
    } else {
        format!("{base}.p/{width}")
    }
}

/// `tile/<L>/<N>[.p/<W>]`: the path of a hash tile (`width` 256 is full).
pub fn tile_path(level: u8, index: u64, width: u16) -> String {
    with_width(format!("tile/{level}/{}", index_path(index)), width)
}

/// `tile/entries/<N>[.p/<W>]`: the path of an entry bundle (`width` 256 is full).
pub fn bundle_path(index: u64, width: u16) -> String {
    with_width(format!("tile/entries/{}", index_path(index)), width)
}

/// One hash tile: level `L`, index `N`, width `W` (256 for a full tile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TileId {
    pub level: u8,
    pub index: u64,
    pub width: u16,
}

impl TileId {
    pub fn path(&self) -> String {
        tile_path(self.level, self.index, self.width)
    }

    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }
}

/// Every hash tile a tree of `size` leaves has, level by level, full tiles
/// then the partial one. Entry bundles are the level-0 tiles' indices and
/// widths.
pub fn tiles_for_size(size: u64) -> Vec<TileId> {
    let mut tiles = Vec::new();
    for level in 0..=MAX_TILE_LEVEL {
        let count = shr(size, u32::from(TILE_HEIGHT) * u32::from(level));
        if count == 0 {
            break;
        }
        let full = count / u64::from(TILE_WIDTH);
        tiles.extend((0..full).map(|index| TileId {
            level,
            index,
            width: TILE_WIDTH,
        }));
        let width = (count % u64::from(TILE_WIDTH)) as u16;
        if width > 0 {
            tiles.push(TileId {
                level,
                index: full,
                width,
            });
        }
    }
    tiles
}

/// MTH of a power-of-two run of consecutive subtree hashes.
pub fn perfect_root(hashes: &[Hash]) -> Hash {
    match hashes {
        [single] => *single,
        _ => {
            let (left, right) = hashes.split_at(hashes.len() / 2);
            hash_children(&perfect_root(left), &perfect_root(right))
        }
    }
}

/// The root of the tree of `size` leaves from the rightmost tile of each
/// level: `right_edge(L)` gives the first `(size >> 8L) % 256` hashes of
/// level-`L` tile `(size >> 8L) / 256` (only asked for levels where that is
/// not zero). Every full tile lies left of these, inside subtrees whose
/// hashes the higher tiles hold, so nothing else is needed.
pub fn root_from_right_edge<E>(
    size: u64,
    mut right_edge: impl FnMut(u8) -> Result<Vec<Hash>, E>,
) -> Result<Hash, E> {
    if size == 0 {
        return Ok(merkle::empty_root());
    }
    let mut cached: Vec<Option<Vec<Hash>>> = vec![None; usize::from(MAX_TILE_LEVEL) + 1];
    let mut pieces = Vec::new();
    // One perfect subtree per set bit of `size`, largest (leftmost) first.
    for bit in (0..u64::BITS).rev().filter(|bit| (size >> bit) & 1 == 1) {
        let level = (bit / u32::from(TILE_HEIGHT)) as u8;
        let level_shift = u32::from(level) * u32::from(TILE_HEIGHT);
        let first_leaf = shr(size, bit + 1) << (bit + 1);
        let tile_start = shr(size, level_shift + u32::from(TILE_HEIGHT)) << TILE_HEIGHT;
        let offset = ((first_leaf >> level_shift) - tile_start) as usize;
        let count = 1usize << (bit - level_shift);
        let slot = &mut cached[usize::from(level)];
        if slot.is_none() {
            *slot = Some(right_edge(level)?);
        }
        let hashes = slot.as_deref().unwrap_or_default();
        // Callers hand over tiles of the width asked for; a shorter one
        // cannot hold this piece, and the empty root then fails any check.
        match hashes.get(offset..offset + count) {
            Some(run) => pieces.push(perfect_root(run)),
            None => return Ok(merkle::empty_root()),
        }
    }
    Ok(pieces
        .into_iter()
        .rev()
        .reduce(|right, left| hash_children(&left, &right))
        .unwrap_or_else(merkle::empty_root))
}

/// Hash tiles built bottom-up from leaf hashes pushed in order: the pending
/// (rightmost, unfinished) tile of every level, and the full ones as they
/// complete. Holds at most 255 hashes per level.
#[derive(Default)]
pub struct TileBuilder {
    pending: Vec<Vec<Hash>>,
    /// Full tiles completed so far at each level: the pending tile's index.
    full: Vec<u64>,
}

/// A full tile the builder completed, with its root (the hash it
/// contributes to the level above).
pub struct CompletedTile {
    pub id: TileId,
    pub hashes: Vec<Hash>,
    pub root: Hash,
}

impl TileBuilder {
    /// The builder of a tree of `size` leaves, from its right edge:
    /// `right_edge(L)` gives the first `(size >> 8L) % 256` hashes of
    /// level-`L` tile `(size >> 8L) / 256` (asked for every level with
    /// leaves), which are exactly the pending tiles. Lets a writer carry on
    /// from a tree it already wrote without reading it again.
    pub fn resume<E>(
        size: u64,
        mut right_edge: impl FnMut(u8) -> Result<Vec<Hash>, E>,
    ) -> Result<TileBuilder, E> {
        let mut builder = TileBuilder::default();
        for level in 0..=MAX_TILE_LEVEL {
            let count = shr(size, u32::from(TILE_HEIGHT) * u32::from(level));
            if count == 0 {
                break;
            }
            let width = (count % u64::from(TILE_WIDTH)) as usize;
            let mut pending = if width == 0 {
                Vec::new()
            } else {
                right_edge(level)?
            };
            pending.truncate(width);
            pending.reserve(TILE_FULL - pending.len());
            builder.pending.push(pending);
            builder.full.push(count / u64::from(TILE_WIDTH));
        }
        Ok(builder)
    }

    pub fn push(&mut self, leaf_hash: Hash, completed: &mut Vec<CompletedTile>) {
        let mut hash = leaf_hash;
        let mut level = 0usize;
        loop {
            if self.pending.len() == level {
                self.pending.push(Vec::with_capacity(TILE_FULL));
                self.full.push(0);
            }
            self.pending[level].push(hash);
            if self.pending[level].len() < TILE_FULL {
                return;
            }
            let hashes = std::mem::replace(&mut self.pending[level], Vec::with_capacity(TILE_FULL));
            let root = perfect_root(&hashes);
            completed.push(CompletedTile {
                id: TileId {
                    level: level as u8,
                    index: self.full[level],
                    width: TILE_WIDTH,
                },
                hashes,
                root,
            });
            self.full[level] += 1;
            hash = root;
            level += 1;
        }
    }

    /// The partial tiles of the tree pushed so far (levels with a
    /// non-empty pending tile).
    pub fn partials(&self) -> impl Iterator<Item = (TileId, &[Hash])> + '_ {
        self.pending
            .iter()
            .enumerate()
            .filter(|(_, hashes)| !hashes.is_empty())
            .map(|(level, hashes)| {
                (
                    TileId {
                        level: level as u8,
                        index: self.full[level],
                        width: hashes.len() as u16,
                    },
                    hashes.as_slice(),
                )
            })
    }

    /// The pending tile at `level` (empty if none).
    pub fn pending(&self, level: u8) -> Vec<Hash> {
        self.pending
            .get(usize::from(level))
            .cloned()
            .unwrap_or_default()
    }
}

pub fn tile_bytes(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{hash_leaf, MemorySource, SubtreeSource};

    fn leaf_hashes(count: u64) -> Vec<Hash> {
        (0..count)
            .map(|seq| hash_leaf(format!("leaf {seq}").as_bytes()))
            .collect()
    }

    #[test]
    fn a_resumed_builder_carries_on_as_if_it_had_pushed_everything() {
        let hashes = leaf_hashes(256 * 256 + 300);
        for split in [0u64, 1, 255, 256, 257, 256 * 256, 256 * 256 + 299] {
            let mut whole = TileBuilder::default();
            let mut whole_completed = Vec::new();
            for hash in &hashes {
                whole.push(*hash, &mut whole_completed);
            }
            let mut first = TileBuilder::default();
            let mut first_completed = Vec::new();
            for hash in &hashes[..split as usize] {
                first.push(*hash, &mut first_completed);
            }
            let mut resumed =
                TileBuilder::resume(split, |level| Ok::<_, ()>(first.pending(level))).unwrap();
            let mut completed = Vec::new();
            for hash in &hashes[split as usize..] {
                resumed.push(*hash, &mut completed);
            }
            // The resumed builder completes exactly the tiles the first did not.
            let ids = |tiles: &[CompletedTile]| tiles.iter().map(|t| t.id).collect::<Vec<_>>();
            let mut both = ids(&first_completed);
            both.extend(ids(&completed));
            both.sort();
            let mut expected = ids(&whole_completed);
            expected.sort();
            assert_eq!(both, expected, "split at {split}");
            let partials = |builder: &TileBuilder| {
                builder
                    .partials()
                    .map(|(id, hashes)| (id, hashes.to_vec()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(partials(&resumed), partials(&whole), "split at {split}");
        }
    }

    #[test]
    fn index_paths_group_three_digits_with_x_prefixes() {
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(7), "007");
        assert_eq!(index_path(999), "999");
        assert_eq!(index_path(1000), "x001/000");
        assert_eq!(index_path(1234067), "x001/x234/067");
        assert_eq!(index_path(u64::MAX), "x018/x446/x744/x073/x709/x551/615");
        assert_eq!(tile_path(0, 1234067, 256), "tile/0/x001/x234/067");
        assert_eq!(tile_path(3, 1234067, 1), "tile/3/x001/x234/067.p/1");
        assert_eq!(tile_path(1, 0, 255), "tile/1/000.p/255");
        assert_eq!(bundle_path(1, 44), "tile/entries/001.p/44");
        assert_eq!(bundle_path(1000, 256), "tile/entries/x001/000");
    }

    #[test]
    fn the_tiles_of_a_tree_are_the_ones_c2sp_lists() {
        // tlog-tiles: "a tree of size 70,000 will be represented by 273 full
        // level 0 tiles, one partial level 0 tile of width 112, one full
        // level 1 tile, one partial level 1 tile of width 17, and one partial
        // level 2 tile of width 1."
        let tiles = tiles_for_size(70_000);
        let full = |level| {
            tiles
                .iter()
                .filter(|t| t.level == level && t.is_full())
                .count()
        };
        let partial = |level| {
            tiles
                .iter()
                .filter(|t| t.level == level && !t.is_full())
                .map(|t| (t.index, t.width))
                .collect::<Vec<_>>()
        };
        assert_eq!(full(0), 273);
        assert_eq!(partial(0), vec![(273, 112)]);
        assert_eq!(full(1), 1);
        assert_eq!(partial(1), vec![(1, 17)]);
        assert_eq!(full(2), 0);
        assert_eq!(partial(2), vec![(0, 1)]);
        assert_eq!(tiles.len(), 277);
        // "a tree of size 256 will be represented by a full level 0 tile and
        // a partial level 1 tile of width 1."
        assert_eq!(
            tiles_for_size(256),
            vec![
                TileId {
                    level: 0,
                    index: 0,
                    width: 256
                },
                TileId {
                    level: 1,
                    index: 0,
                    width: 1
                },
            ]
        );
        assert!(tiles_for_size(0).is_empty());
        assert_eq!(
            tiles_for_size(1),
            vec![TileId {
                level: 0,
                index: 0,
                width: 1
            }]
        );
    }

    /// Builds tiles leaf by leaf and checks, at every size, that they are
    /// exactly `tiles_for_size`, hold the tree's subtree hashes, and rebuild
    /// the RFC 6962 root.
    fn check_builder_up_to(count: u64, check_every: impl Fn(u64) -> bool) {
        let hashes = leaf_hashes(count);
        let memory = MemorySource::from_leaf_hashes(hashes.iter().copied());
        let mut builder = TileBuilder::default();
        let mut completed = Vec::new();
        let mut all_full = Vec::new();
        for (seq, hash) in hashes.iter().enumerate() {
            builder.push(*hash, &mut completed);
            for tile in completed.drain(..) {
                for (i, hash) in tile.hashes.iter().enumerate() {
                    let index = tile.id.index * 256 + i as u64;
                    assert_eq!(
                        memory.subtree_hash(tile.id.level * 8, index).unwrap(),
                        *hash
                    );
                }
                assert_eq!(
                    memory
                        .subtree_hash((tile.id.level + 1) * 8, tile.id.index)
                        .unwrap(),
                    tile.root
                );
                all_full.push(tile.id);
            }
            let size = seq as u64 + 1;
            if !check_every(size) {
                continue;
            }
            let mut ids = all_full.clone();
            ids.extend(builder.partials().map(|(id, _)| id));
            ids.sort();
            let mut expected = tiles_for_size(size);
            expected.sort();
            assert_eq!(ids, expected, "tiles at size {size}");
            for (id, partial) in builder.partials() {
                for (i, hash) in partial.iter().enumerate() {
                    let index = id.index * 256 + i as u64;
                    assert_eq!(memory.subtree_hash(id.level * 8, index).unwrap(), *hash);
                }
            }
            let root =
                root_from_right_edge(size, |level| Ok::<_, ()>(builder.pending(level))).unwrap();
            assert_eq!(root, merkle::root(&memory, size).unwrap(), "root at {size}");
        }
    }

    #[test]
    fn built_tiles_hold_the_subtree_hashes_and_rebuild_every_root() {
        check_builder_up_to(1100, |_| true);
    }

    #[test]
    fn built_tiles_rebuild_roots_across_a_level_two_boundary() {
        let sizes = [65_535, 65_536, 65_537, 65_792, 70_000];
        check_builder_up_to(70_000, |size| sizes.contains(&size));
        assert_eq!(
            root_from_right_edge(0, |_| Ok::<_, ()>(Vec::new())).unwrap(),
            merkle::empty_root()
        );
    }
}
