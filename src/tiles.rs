//! The log as a C2SP tlog-tiles directory: an incremental export from the
//! store, and a reader for auditors.
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
//! Invariants of [`export`]:
//! - Every tile and bundle file is immutable: its name fixes its content. One
//!   already present with other content means the directory holds another
//!   log, and the export refuses, naming the file. Partial files of earlier
//!   exports stay (clients holding an older checkpoint still need them).
//! - Only the `checkpoint` and the projection file are ever replaced.
//! - Every file is written to a temporary file, synced, then renamed; every
//!   data file is on disk (and its directory synced) before the `checkpoint`
//!   that needs it is renamed into place.
//! - Nothing is written that does not verify: each full tile's root equals
//!   the store's node one level up, and the tree rebuilt from the tiles has
//!   the checkpoint's root, before the `checkpoint` is written.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use crate::core::checkpoint::{self, CheckpointBody, CheckpointError};
use crate::core::merkle::{self, hash_children, hash_leaf, Hash, SubtreeSource};
use crate::storage::{Store, StoreError};

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
/// Largest leaf an entry bundle can carry (its length prefix is a `u16`).
pub const MAX_BUNDLE_ENTRY_BYTES: usize = u16::MAX as usize;

const TILE_FULL: usize = TILE_WIDTH as usize;

/// `x >> shift`, zero once everything is shifted out (no overflow panic).
fn shr(x: u64, shift: u32) -> u64 {
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

fn with_width(base: String, width: u16) -> String {
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
fn perfect_root(hashes: &[Hash]) -> Hash {
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
fn root_from_right_edge<E>(
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
struct TileBuilder {
    pending: Vec<Vec<Hash>>,
    /// Full tiles completed so far at each level: the pending tile's index.
    full: Vec<u64>,
}

/// A full tile the builder completed, with its root (the hash it
/// contributes to the level above).
struct CompletedTile {
    id: TileId,
    hashes: Vec<Hash>,
    root: Hash,
}

impl TileBuilder {
    fn push(&mut self, leaf_hash: Hash, completed: &mut Vec<CompletedTile>) {
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
    fn partials(&self) -> impl Iterator<Item = (TileId, &[Hash])> + '_ {
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
    fn pending(&self, level: u8) -> Vec<Hash> {
        self.pending
            .get(usize::from(level))
            .cloned()
            .unwrap_or_default()
    }
}

fn tile_bytes(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// What `ceasefire-ledger/projection` holds.
#[derive(Deserialize)]
struct ProjectionFile {
    as_of_seq: u64,
    digest: String,
}

/// Why an export was refused or failed. Nothing after the failing file was
/// written, and the `checkpoint` never is unless everything else was.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read the store: {0}")]
    Store(#[from] StoreError),
    #[error("the store holds no checkpoint (an empty log): nothing to export")]
    NoCheckpoint,
    #[error("the store's checkpoint does not parse: {0}")]
    Checkpoint(#[source] CheckpointError),
    #[error(
        "the store is inconsistent ({0}); refusing to export it (run `ceasefire-ledger verify`)"
    )]
    Inconsistent(String),
    #[error("entry {seq} is {len} bytes, more than an entry bundle can carry (65535)")]
    LeafTooLarge { seq: u64, len: usize },
    #[error("{}: {reason}; the directory holds a different log (or was altered), refusing to overwrite it", .path.display())]
    Conflict { path: PathBuf, reason: String },
    #[error("{}: cannot {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> ExportError {
    let path = path.to_path_buf();
    move |source| ExportError::Io {
        path,
        action,
        source,
    }
}

/// What an export did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// The tree exported: the size of the store's checkpoint read at the start.
    pub tree_size: u64,
    pub files_written: u64,
    /// Files the tree needs that were already there with the right content.
    pub files_unchanged: u64,
    pub bytes_written: u64,
    /// Paths written, relative to the directory, in the order written.
    pub written: Vec<String>,
    /// The projection head in the directory after the export, if the store
    /// has one for a prefix of the exported tree.
    pub projection: Option<(u64, Hash)>,
}

/// What an export exports: the store's checkpoint, and its projection head
/// if that is as of an entry of the checkpoint's tree.
struct Head {
    note: String,
    body: CheckpointBody,
    projection: Option<(u64, Hash)>,
}

/// Reads the checkpoint note and the projection head as a pair. The
/// projection head is written in the same batch as the checkpoint, so read
/// after it, it is as of the checkpoint's last entry or later; a later one
/// describes entries the export will not hold, so read both again.
fn read_head(store: &Store) -> Result<Head, ExportError> {
    const ATTEMPTS: usize = 16;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let note = store.checkpoint_note()?.ok_or(ExportError::NoCheckpoint)?;
        let body = checkpoint::parse_unverified(&note).map_err(ExportError::Checkpoint)?;
        let projection = store
            .load_projection()?
            .and_then(|stored| Some((stored.head.as_of_seq?, stored.head.digest)));
        match projection {
            Some((as_of_seq, _)) if as_of_seq >= body.tree_size && attempt < ATTEMPTS => continue,
            Some((as_of_seq, _)) if as_of_seq >= body.tree_size => {
                return Ok(Head {
                    note,
                    body,
                    projection: None,
                })
            }
            _ => {
                return Ok(Head {
                    note,
                    body,
                    projection,
                })
            }
        }
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes files into the export directory, atomically, counting.
struct Writer<'d> {
    dir: &'d Path,
    summary: ExportSummary,
    /// Directories holding renamed files (and their ancestors up to `dir`),
    /// to sync before the checkpoint.
    unsynced: BTreeSet<PathBuf>,
}

impl<'d> Writer<'d> {
    fn new(dir: &'d Path) -> Writer<'d> {
        Writer {
            dir,
            summary: ExportSummary::default(),
            unsynced: BTreeSet::new(),
        }
    }

    fn existing(&self, path: &Path) -> Result<Option<Vec<u8>>, ExportError> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(path, "read")(error)),
        }
    }

    /// A tile or bundle: written if absent, left if identical, refused if
    /// different. `base` is the path without `.p/W`, `entry_ends[i]` the byte
    /// offset after entry `i` of `bytes`. A new file is also checked against
    /// the other widths of the same tile already there.
    fn put_immutable(
        &mut self,
        base: &str,
        width: u16,
        bytes: &[u8],
        entry_ends: &[usize],
    ) -> Result<(), ExportError> {
        let relative = with_width(base.to_string(), width);
        let path = self.dir.join(&relative);
        match self.existing(&path)? {
            Some(existing) if existing == bytes => {
                self.summary.files_unchanged += 1;
                return Ok(());
            }
            Some(existing) => {
                return Err(ExportError::Conflict {
                    path,
                    reason: format!(
                        "exists with other content ({} bytes, this log's is {} bytes)",
                        existing.len(),
                        bytes.len()
                    ),
                })
            }
            None => {}
        }
        self.check_other_widths(base, width, bytes, entry_ends)?;
        self.write(&relative, bytes)
    }

    /// Every partial of the same tile must be a prefix of `bytes`, or `bytes`
    /// a prefix of it; a full tile there must start with `bytes`.
    fn check_other_widths(
        &self,
        base: &str,
        width: u16,
        bytes: &[u8],
        entry_ends: &[usize],
    ) -> Result<(), ExportError> {
        let partial_dir = self.dir.join(format!("{base}.p"));
        let mut others = Vec::new();
        match fs::read_dir(&partial_dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(io_error(&partial_dir, "list"))?;
                    let name = entry.file_name();
                    let Some(other) = name.to_str().and_then(|name| name.parse::<u16>().ok())
                    else {
                        continue; // our temporary files, or anything else
                    };
                    if (1..TILE_WIDTH).contains(&other) && other != width {
                        others.push((other, entry.path()));
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(&partial_dir, "list")(error)),
        }
        if width < TILE_WIDTH {
            others.push((TILE_WIDTH, self.dir.join(base)));
        }
        for (other, path) in others {
            let Some(existing) = self.existing(&path)? else {
                continue;
            };
            let consistent = if other < width {
                existing.as_slice() == &bytes[..entry_ends[usize::from(other) - 1]]
            } else {
                existing.starts_with(bytes)
            };
            if !consistent {
                return Err(ExportError::Conflict {
                    path,
                    reason: format!(
                        "does not agree with this log's {} of width {width}",
                        if base.starts_with("tile/entries/") {
                            "entry bundle"
                        } else {
                            "tile"
                        }
                    ),
                });
            }
        }
        Ok(())
    }

    /// The checkpoint or the projection: replaced when different.
    fn put_mutable(&mut self, relative: &str, bytes: &[u8]) -> Result<(), ExportError> {
        let path = self.dir.join(relative);
        if self.existing(&path)?.as_deref() == Some(bytes) {
            self.summary.files_unchanged += 1;
            return Ok(());
        }
        self.write(relative, bytes)
    }

    fn write(&mut self, relative: &str, bytes: &[u8]) -> Result<(), ExportError> {
        let path = self.dir.join(relative);
        let parent = path.parent().unwrap_or(self.dir).to_path_buf();
        fs::create_dir_all(&parent).map_err(io_error(&parent, "create the directory"))?;
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = parent.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = fs::File::create(&temp).map_err(io_error(&temp, "create"))?;
            file.write_all(bytes).map_err(io_error(&temp, "write"))?;
            file.sync_all().map_err(io_error(&temp, "sync"))?;
            fs::rename(&temp, &path).map_err(io_error(&path, "rename a temporary file to"))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result?;
        let mut directory = Some(parent.as_path());
        while let Some(current) = directory {
            self.unsynced.insert(current.to_path_buf());
            if current == self.dir {
                break;
            }
            directory = current.parent();
        }
        self.summary.files_written += 1;
        self.summary.bytes_written += bytes.len() as u64;
        self.summary.written.push(relative.to_string());
        Ok(())
    }

    /// Syncs every directory a rename went into, so the files are durable
    /// under their names.
    fn sync_directories(&mut self) -> Result<(), ExportError> {
        for directory in std::mem::take(&mut self.unsynced) {
            let result = fs::File::open(&directory).and_then(|handle| handle.sync_all());
            match result {
                Ok(()) => {}
                // Some file systems cannot sync a directory; nothing to do there.
                Err(error) if error.kind() == io::ErrorKind::InvalidInput => {}
                Err(error) => return Err(io_error(&directory, "sync")(error)),
            }
        }
        Ok(())
    }
}

/// Refuses a directory whose checkpoint is for another log, or for a larger
/// tree than the one exported (going back would hide entries).
fn check_existing_checkpoint(
    store: &Store,
    dir: &Path,
    body: &CheckpointBody,
) -> Result<(), ExportError> {
    let path = dir.join(CHECKPOINT_PATH);
    let text = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error(&path, "read")(error)),
    };
    let conflict = |reason: String| ExportError::Conflict {
        path: path.clone(),
        reason,
    };
    let text = String::from_utf8(text).map_err(|_| conflict("is not UTF-8 text".into()))?;
    let old = checkpoint::parse_unverified(&text)
        .map_err(|error| conflict(format!("is not a checkpoint: {error}")))?;
    if old.origin != body.origin {
        return Err(conflict(format!(
            "is for origin {:?}, this log's is {:?}",
            old.origin, body.origin
        )));
    }
    if old.tree_size > body.tree_size {
        return Err(conflict(format!(
            "is at tree size {}, ahead of this store's {}",
            old.tree_size, body.tree_size
        )));
    }
    let ours = merkle::root(store, old.tree_size)?;
    if ours != old.root_hash {
        return Err(conflict(format!(
            "has another root at tree size {} than this log",
            old.tree_size
        )));
    }
    Ok(())
}

/// Writes the tree of the store's current checkpoint into `dir` as C2SP
/// tlog-tiles (see the module documentation), reusing what an earlier
/// export left there.
pub fn export(store: &Store, dir: &Path) -> Result<ExportSummary, ExportError> {
    let Head {
        note,
        body,
        projection,
    } = read_head(store)?;
    let size = body.tree_size;
    if merkle::root(store, size)? != body.root_hash {
        return Err(ExportError::Inconsistent(format!(
            "its tree at size {size} does not have its checkpoint's root"
        )));
    }
    fs::create_dir_all(dir).map_err(io_error(dir, "create the directory"))?;
    check_existing_checkpoint(store, dir, &body)?;

    let mut writer = Writer::new(dir);
    let mut builder = TileBuilder::default();
    let mut completed = Vec::new();
    let mut leaves = store.leaves(0, size);
    let tile_ends: Vec<usize> = (1..=TILE_FULL).map(|count| count * HASH_SIZE).collect();
    let mut bundle_start = 0u64;
    while bundle_start < size {
        let bundle_end = size.min(bundle_start + u64::from(TILE_WIDTH));
        let mut bundle = Vec::new();
        let mut entry_ends = Vec::with_capacity(TILE_FULL);
        for seq in bundle_start..bundle_end {
            let (found, leaf) = match leaves.next() {
                Some(item) => item?,
                None => return Err(ExportError::Inconsistent(format!("entry {seq} is missing"))),
            };
            if found != seq {
                return Err(ExportError::Inconsistent(format!("entry {seq} is missing")));
            }
            let length = u16::try_from(leaf.len()).map_err(|_| ExportError::LeafTooLarge {
                seq,
                len: leaf.len(),
            })?;
            bundle.extend_from_slice(&length.to_be_bytes());
            bundle.extend_from_slice(&leaf);
            entry_ends.push(bundle.len());
            builder.push(hash_leaf(&leaf), &mut completed);
        }
        for tile in completed.drain(..) {
            // The full tile's root is the store's node one level up: the
            // store's tree and its leaves agree here.
            let above = u32::from(tile.id.level + 1) * u32::from(TILE_HEIGHT);
            if above < 64 {
                let stored = store.subtree_hash(above as u8, tile.id.index)?;
                if stored != tile.root {
                    return Err(ExportError::Inconsistent(format!(
                        "its tree node (level {above}, index {}) is not the hash of its leaves",
                        tile.id.index
                    )));
                }
            }
            writer.put_immutable(
                &tile_path(tile.id.level, tile.id.index, TILE_WIDTH),
                TILE_WIDTH,
                &tile_bytes(&tile.hashes),
                &tile_ends,
            )?;
        }
        let index = bundle_start / u64::from(TILE_WIDTH);
        let width = (bundle_end - bundle_start) as u16;
        writer.put_immutable(&bundle_path(index, TILE_WIDTH), width, &bundle, &entry_ends)?;
        bundle_start = bundle_end;
    }

    // The tree rebuilt from the tiles must be the checkpoint's.
    let root = root_from_right_edge(size, |level| Ok::<_, ExportError>(builder.pending(level)))?;
    if root != body.root_hash {
        return Err(ExportError::Inconsistent(format!(
            "its leaves do not hash to its checkpoint's root at size {size}"
        )));
    }
    for (tile, hashes) in builder.partials() {
        writer.put_immutable(
            &tile_path(tile.level, tile.index, TILE_WIDTH),
            tile.width,
            &tile_bytes(hashes),
            &tile_ends,
        )?;
    }
    if let Some((as_of_seq, digest)) = projection {
        let json = format!(
            "{{\"as_of_seq\": {as_of_seq}, \"digest\": \"{}\"}}\n",
            hex::encode(digest)
        );
        writer.put_mutable(PROJECTION_PATH, json.as_bytes())?;
    }
    writer.sync_directories()?;
    writer.put_mutable(CHECKPOINT_PATH, note.as_bytes())?;
    writer.sync_directories()?;

    let mut summary = writer.summary;
    summary.tree_size = size;
    summary.projection = projection;
    Ok(summary)
}

/// Why reading a tiles directory failed, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TilesError {
    #[error("{} is missing", .path.display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {len} bytes, but a tile of width {width} is exactly {expected}", .path.display())]
    TileLength {
        path: PathBuf,
        width: u16,
        len: usize,
        expected: usize,
    },
    #[error("{}: entry {entry} at byte {offset}: {problem}", .path.display())]
    BadEntry {
        path: PathBuf,
        entry: usize,
        offset: usize,
        problem: String,
    },
    #[error("{}: holds {found} entries, expected {expected} (truncated)", .path.display())]
    TooFewEntries {
        path: PathBuf,
        found: usize,
        expected: usize,
    },
    #[error("{}: {reason}", .path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("no tile has width {width} (1 to 256) or level {level} (0 to 7)")]
    BadTile { level: u8, width: u16 },
}

/// A tiles directory, read as an auditor would (nothing here is trusted:
/// check the checkpoint's signature and rebuild the tree from the leaves).
pub struct TilesReader {
    dir: PathBuf,
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>, TilesError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TilesError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Splits an entry bundle into exactly `expected` leaves.
fn parse_bundle(path: &Path, bytes: &[u8], expected: usize) -> Result<Vec<Vec<u8>>, TilesError> {
    let mut entries = Vec::with_capacity(expected);
    let mut offset = 0usize;
    let bad = |entry: usize, offset: usize, problem: String| TilesError::BadEntry {
        path: path.to_path_buf(),
        entry,
        offset,
        problem,
    };
    while offset < bytes.len() {
        let entry = entries.len();
        if entry == expected {
            return Err(bad(
                entry,
                offset,
                format!(
                    "{} bytes follow the bundle's {expected} entries",
                    bytes.len() - offset
                ),
            ));
        }
        let Some(prefix) = bytes.get(offset..offset + 2) else {
            return Err(bad(
                entry,
                offset,
                "the file ends inside the 2-byte length prefix".into(),
            ));
        };
        let length = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        let start = offset + 2;
        let Some(leaf) = bytes.get(start..start + length) else {
            return Err(bad(
                entry,
                offset,
                format!(
                    "length {length} runs past the end of the file ({} bytes)",
                    bytes.len()
                ),
            ));
        };
        entries.push(leaf.to_vec());
        offset = start + length;
    }
    if entries.len() < expected {
        return Err(TilesError::TooFewEntries {
            path: path.to_path_buf(),
            found: entries.len(),
            expected,
        });
    }
    Ok(entries)
}

impl TilesReader {
    /// A directory holding a `checkpoint`.
    pub fn open(dir: &Path) -> Result<TilesReader, TilesError> {
        let path = dir.join(CHECKPOINT_PATH);
        if !path.is_file() {
            return Err(TilesError::Missing { path });
        }
        Ok(TilesReader {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `checkpoint` file's text (unverified).
    pub fn checkpoint_note(&self) -> Result<String, TilesError> {
        let path = self.dir.join(CHECKPOINT_PATH);
        let bytes = read_file(&path)?.ok_or_else(|| TilesError::Missing { path: path.clone() })?;
        String::from_utf8(bytes).map_err(|_| TilesError::Malformed {
            path,
            reason: "is not UTF-8 text".into(),
        })
    }

    /// The first `width` hashes of level-`level` tile `index`: the `.p/W`
    /// file, or (C2SP lets logs delete partials once the full tile exists)
    /// the start of the full tile.
    pub fn tile_hashes(&self, level: u8, index: u64, width: u16) -> Result<Vec<Hash>, TilesError> {
        if !(1..=TILE_WIDTH).contains(&width) || level > MAX_TILE_LEVEL {
            return Err(TilesError::BadTile { level, width });
        }
        let path = self.dir.join(tile_path(level, index, width));
        let (path, bytes, file_width) = match read_file(&path)? {
            Some(bytes) => (path, bytes, width),
            None if width < TILE_WIDTH => {
                let full = self.dir.join(tile_path(level, index, TILE_WIDTH));
                match read_file(&full)? {
                    Some(bytes) => (full, bytes, TILE_WIDTH),
                    None => return Err(TilesError::Missing { path }),
                }
            }
            None => return Err(TilesError::Missing { path }),
        };
        let expected = usize::from(file_width) * HASH_SIZE;
        if bytes.len() != expected {
            return Err(TilesError::TileLength {
                path,
                width: file_width,
                len: bytes.len(),
                expected,
            });
        }
        Ok(bytes
            .chunks_exact(HASH_SIZE)
            .take(usize::from(width))
            .map(|chunk| {
                let mut hash = [0u8; HASH_SIZE];
                hash.copy_from_slice(chunk);
                hash
            })
            .collect())
    }

    /// The first `width` leaves of entry bundle `index` (the `.p/W` file,
    /// or the start of the full bundle).
    pub fn bundle(&self, index: u64, width: u16) -> Result<Vec<Vec<u8>>, TilesError> {
        if !(1..=TILE_WIDTH).contains(&width) {
            return Err(TilesError::BadTile { level: 0, width });
        }
        let path = self.dir.join(bundle_path(index, width));
        if let Some(bytes) = read_file(&path)? {
            return parse_bundle(&path, &bytes, usize::from(width));
        }
        if width < TILE_WIDTH {
            let full = self.dir.join(bundle_path(index, TILE_WIDTH));
            if let Some(bytes) = read_file(&full)? {
                let mut entries = parse_bundle(&full, &bytes, TILE_FULL)?;
                entries.truncate(usize::from(width));
                return Ok(entries);
            }
        }
        Err(TilesError::Missing { path })
    }

    /// Leaves `0..size` in order, read one bundle at a time: exactly `size`
    /// items, the last an error if a bundle is missing or malformed.
    pub fn leaves(&self, size: u64) -> impl Iterator<Item = Result<Vec<u8>, TilesError>> {
        BundleLeaves {
            reader: TilesReader {
                dir: self.dir.clone(),
            },
            size,
            next_seq: 0,
            current: Vec::new().into_iter(),
            done: false,
        }
    }

    /// The root of the tree of `size` leaves, rebuilt from the tiles of its
    /// right edge (each level's partial tile). Compare it with a verified
    /// checkpoint before trusting any tile.
    pub fn root(&self, size: u64) -> Result<Hash, TilesError> {
        root_from_right_edge(size, |level| {
            let count = shr(size, u32::from(level) * u32::from(TILE_HEIGHT));
            let width = (count % u64::from(TILE_WIDTH)) as u16;
            self.tile_hashes(level, count / u64::from(TILE_WIDTH), width)
        })
    }

    /// The projection head the export recorded: (as_of_seq, digest).
    pub fn projection(&self) -> Result<Option<(u64, Hash)>, TilesError> {
        let path = self.dir.join(PROJECTION_PATH);
        let Some(bytes) = read_file(&path)? else {
            return Ok(None);
        };
        let malformed = |reason: String| TilesError::Malformed {
            path: path.clone(),
            reason,
        };
        let file: ProjectionFile = serde_json::from_slice(&bytes)
            .map_err(|error| malformed(format!("is not a projection head: {error}")))?;
        let digest = hex::decode(&file.digest)
            .ok()
            .and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
            .ok_or_else(|| malformed("digest is not 64 hex digits".into()))?;
        Ok(Some((file.as_of_seq, digest)))
    }
}

struct BundleLeaves {
    reader: TilesReader,
    size: u64,
    next_seq: u64,
    current: std::vec::IntoIter<Vec<u8>>,
    done: bool,
}

impl Iterator for BundleLeaves {
    type Item = Result<Vec<u8>, TilesError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(leaf) = self.current.next() {
            self.next_seq += 1;
            return Some(Ok(leaf));
        }
        if self.next_seq >= self.size {
            self.done = true;
            return None;
        }
        let index = self.next_seq / u64::from(TILE_WIDTH);
        let width = (self.size - self.next_seq).min(u64::from(TILE_WIDTH)) as u16;
        match self.reader.bundle(index, width) {
            Ok(entries) => {
                self.current = entries.into_iter();
                self.next()
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::merkle::MemorySource;

    fn leaf_hashes(count: u64) -> Vec<Hash> {
        (0..count)
            .map(|seq| hash_leaf(format!("leaf {seq}").as_bytes()))
            .collect()
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

    fn bundle_bytes(leaves: &[&[u8]]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for leaf in leaves {
            bytes.extend_from_slice(&(leaf.len() as u16).to_be_bytes());
            bytes.extend_from_slice(leaf);
        }
        bytes
    }

    fn write(dir: &Path, relative: &str, bytes: &[u8]) {
        let path = dir.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn the_reader_names_missing_truncated_and_overrunning_bundles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        write(path, CHECKPOINT_PATH, b"not checked here\n");
        let reader = TilesReader::open(path).unwrap();
        let leaves = |size| reader.leaves(size).collect::<Vec<_>>();

        // Missing.
        let items = leaves(3);
        assert_eq!(items.len(), 1);
        match &items[0] {
            Err(TilesError::Missing { path }) => {
                assert!(path.ends_with("tile/entries/000.p/3"), "{path:?}")
            }
            other => panic!("{other:?}"),
        }

        // Exactly the leaves, and nothing for size 0.
        write(
            path,
            "tile/entries/000.p/3",
            &bundle_bytes(&[b"a", b"", b"ccc"]),
        );
        let items: Vec<Vec<u8>> = reader.leaves(3).map(Result::unwrap).collect();
        assert_eq!(items, vec![b"a".to_vec(), Vec::new(), b"ccc".to_vec()]);
        assert_eq!(leaves(0).len(), 0);

        // Truncated: fewer entries than the width.
        write(path, "tile/entries/000.p/3", &bundle_bytes(&[b"a", b"b"]));
        let error = leaves(3).pop().unwrap().unwrap_err();
        assert!(matches!(
            error,
            TilesError::TooFewEntries {
                found: 2,
                expected: 3,
                ..
            }
        ));
        assert!(error.to_string().contains("000.p/3"), "{error}");

        // A length prefix running past the end.
        let mut bytes = bundle_bytes(&[b"a", b"b"]);
        bytes.extend_from_slice(&[0x00, 0x05, b'x', b'y']);
        write(path, "tile/entries/000.p/3", &bytes);
        let error = leaves(3).pop().unwrap().unwrap_err();
        assert!(
            matches!(
                &error,
                TilesError::BadEntry {
                    entry: 2,
                    offset: 6,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("runs past the end"), "{error}");

        // A length prefix cut in half.
        let mut bytes = bundle_bytes(&[b"a", b"b"]);
        bytes.push(0x00);
        write(path, "tile/entries/000.p/3", &bytes);
        let error = leaves(3).pop().unwrap().unwrap_err();
        assert!(error.to_string().contains("length prefix"), "{error}");

        // Bytes after the last entry.
        let mut bytes = bundle_bytes(&[b"a", b"b", b"c"]);
        bytes.extend_from_slice(&[0x00, 0x00]);
        write(path, "tile/entries/000.p/3", &bytes);
        let error = leaves(3).pop().unwrap().unwrap_err();
        assert!(error.to_string().contains("follow the bundle"), "{error}");

        // A partial bundle that was deleted is read from the full one.
        let full: Vec<Vec<u8>> = (0..256u16).map(|i| i.to_be_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = full.iter().map(Vec::as_slice).collect();
        write(path, "tile/entries/000", &bundle_bytes(&refs));
        write(path, "tile/entries/001.p/1", &bundle_bytes(&[b"z"]));
        let items: Vec<Vec<u8>> = reader.leaves(257).map(Result::unwrap).collect();
        assert_eq!(items.len(), 257);
        assert_eq!(items[255], full[255]);
        assert_eq!(items[256], b"z".to_vec());
        fs::remove_file(path.join("tile/entries/000.p/3")).unwrap();
        let items: Vec<Vec<u8>> = reader.leaves(3).map(Result::unwrap).collect();
        assert_eq!(items, full[..3].to_vec());
    }

    #[test]
    fn the_reader_checks_tile_lengths_and_projection_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        assert!(matches!(
            TilesReader::open(path),
            Err(TilesError::Missing { .. })
        ));
        write(path, CHECKPOINT_PATH, b"x\n");
        let reader = TilesReader::open(path).unwrap();
        let hashes = leaf_hashes(256);
        write(path, "tile/0/000", &tile_bytes(&hashes));
        write(path, "tile/0/001.p/2", &tile_bytes(&hashes[..3]));
        assert_eq!(reader.tile_hashes(0, 0, 256).unwrap(), hashes);
        assert_eq!(reader.tile_hashes(0, 0, 5).unwrap(), hashes[..5].to_vec());
        let error = reader.tile_hashes(0, 1, 2).unwrap_err();
        assert!(
            matches!(
                error,
                TilesError::TileLength {
                    len: 96,
                    expected: 64,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("tile/0/001.p/2"), "{error}");
        assert!(matches!(
            reader.tile_hashes(0, 2, 1),
            Err(TilesError::Missing { .. })
        ));
        assert!(matches!(
            reader.tile_hashes(0, 0, 0),
            Err(TilesError::BadTile { .. })
        ));

        assert_eq!(reader.projection().unwrap(), None);
        let digest = [7u8; 32];
        write(
            path,
            PROJECTION_PATH,
            format!(
                "{{\"as_of_seq\": 9, \"digest\": \"{}\"}}",
                hex::encode(digest)
            )
            .as_bytes(),
        );
        assert_eq!(reader.projection().unwrap(), Some((9, digest)));
        write(
            path,
            PROJECTION_PATH,
            b"{\"as_of_seq\": 9, \"digest\": \"07\"}",
        );
        let error = reader.projection().unwrap_err();
        assert!(
            error.to_string().contains("ceasefire-ledger/projection"),
            "{error}"
        );
    }

    /// The real path: a node with the dev bootstrap, observations submitted
    /// over gRPC, exports of its store while it runs.
    mod through_a_node {
        use super::super::*;
        use super::{leaf_hashes, write};
        use crate::client::{self, now_timestamp, random_nonce};
        use crate::core::checkpoint::{sign_checkpoint, NoteSigner};
        use crate::dev;
        use crate::node::{self, Node, NodeConfig};
        use crate::proto::{
            event::Body, ledger_client::LedgerClient, Category, Event, Finding, LatLon, Location,
            Observation, SignedEvent,
        };
        use crate::sequencer::{SequencerConfig, StartupCheck};
        use futures::StreamExt as _;
        use std::collections::BTreeSet;
        use std::sync::Arc;

        fn observation(monitor: &ed25519_dalek::SigningKey, number: u64) -> SignedEvent {
            let now = now_timestamp();
            let minutes_ago = |minutes: i64| prost_types::Timestamp {
                seconds: now.seconds - minutes * 60,
                nanos: 0,
            };
            let event = Event {
                agreement_id: dev::DEV_AGREEMENT_ID.into(),
                author: dev::DEV_MONITOR.into(),
                created_at: Some(now),
                nonce: random_nonce(),
                body: Some(Body::Observation(Observation {
                    observed_from: Some(minutes_ago(20)),
                    observed_until: Some(minutes_ago(5)),
                    location: Some(Location {
                        point: Some(LatLon {
                            lat: 48.51,
                            lon: 37.62,
                        }),
                        accuracy_m: 250.0,
                    }),
                    zone_id: String::new(),
                    commitment_id: dev::DEV_COMMITMENT.into(),
                    finding: Finding::Violation as i32,
                    category: Category::Explosion as i32,
                    quantity: 1,
                    attributed_side: String::new(),
                    evidence: Vec::new(),
                    narrative: format!("report {number}"),
                })),
            };
            client::sign(&event, &[monitor])
        }

        async fn submit(node: &Node, monitor: &ed25519_dalek::SigningKey, count: u64, from: u64) {
            let mut clients = Vec::new();
            for _ in 0..8 {
                clients.push(LedgerClient::connect(node.url()).await.unwrap());
            }
            let results: Vec<_> = futures::stream::iter(from..from + count)
                .map(|number| {
                    let mut client = clients[(number % 8) as usize].clone();
                    let event = observation(monitor, number);
                    async move { client.submit(event).await }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            for result in results {
                result.expect("an observation was refused");
            }
        }

        async fn run_export(store: &Arc<Store>, dir: &Path) -> Result<ExportSummary, ExportError> {
            let store = store.clone();
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || export(&store, &dir))
                .await
                .unwrap()
        }

        /// Everything the reader gives back is what the store holds.
        fn check_directory(store: &Store, dir: &Path, size: u64) {
            let reader = TilesReader::open(dir).unwrap();
            let body = checkpoint::parse_unverified(&reader.checkpoint_note().unwrap()).unwrap();
            assert_eq!(body.tree_size, size);
            assert_eq!(
                reader.checkpoint_note().unwrap(),
                store.checkpoint_note().unwrap().unwrap()
            );
            for tile in tiles_for_size(size) {
                let bytes = fs::read(dir.join(tile.path())).unwrap();
                assert_eq!(bytes.len(), usize::from(tile.width) * HASH_SIZE);
                let hashes = reader
                    .tile_hashes(tile.level, tile.index, tile.width)
                    .unwrap();
                for (i, hash) in hashes.iter().enumerate() {
                    let index = tile.index * 256 + i as u64;
                    assert_eq!(
                        store.subtree_hash(tile.level * 8, index).unwrap(),
                        *hash,
                        "{} hash {i}",
                        tile.path()
                    );
                }
            }
            let leaves: Vec<Vec<u8>> = reader.leaves(size).map(Result::unwrap).collect();
            let stored: Vec<Vec<u8>> = store.leaves(0, size).map(|item| item.unwrap().1).collect();
            assert_eq!(leaves.len() as u64, size);
            assert!(
                leaves == stored,
                "the bundles do not hold the store's leaves"
            );
            assert_eq!(reader.root(size).unwrap(), body.root_hash);
            let projection = store.load_projection().unwrap().unwrap().head;
            assert_eq!(
                reader.projection().unwrap(),
                Some((projection.as_of_seq.unwrap(), projection.digest))
            );
        }

        fn set(paths: &[&str]) -> BTreeSet<String> {
            paths.iter().map(|path| path.to_string()).collect()
        }

        fn written(summary: &ExportSummary) -> BTreeSet<String> {
            summary.written.iter().cloned().collect()
        }

        fn flip_last_byte(path: &Path) -> Vec<u8> {
            let original = fs::read(path).unwrap();
            let mut changed = original.clone();
            *changed.last_mut().unwrap() ^= 1;
            fs::write(path, changed).unwrap();
            original
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn exports_are_exact_incremental_and_refuse_another_log() {
            let data = tempfile::tempdir().unwrap();
            let keys = dev::ensure_dev_keys(data.path()).unwrap();
            let node = node::start(NodeConfig {
                data_dir: data.path().to_path_buf(),
                listen: ([127, 0, 0, 1], 0).into(),
                operator_key: keys.operator.key.clone(),
                bootstrap: dev::bootstrap_events(&keys),
                sequencer: SequencerConfig::default(),
                startup_check: StartupCheck::Full,
                tls: None,
                metrics_listen: None,
                max_payload_bytes: crate::core::leaf::MAX_PAYLOAD_BYTES,
            })
            .await
            .unwrap();
            let store = node.store.clone();
            let bootstrap = store.head().unwrap().size;
            submit(&node, &keys.monitor.key, 300 - bootstrap, 0).await;
            assert_eq!(store.head().unwrap().size, 300);

            let export_dir = tempfile::tempdir().unwrap();
            let dir = export_dir.path().join("tiles");
            let first = run_export(&store, &dir).await.unwrap();
            assert_eq!(first.tree_size, 300);
            assert_eq!(
                written(&first),
                set(&[
                    "checkpoint",
                    "ceasefire-ledger/projection",
                    "tile/0/000",
                    "tile/0/001.p/44",
                    "tile/1/000.p/1",
                    "tile/entries/000",
                    "tile/entries/001.p/44",
                ])
            );
            assert_eq!(first.files_written, 7);
            assert_eq!(first.files_unchanged, 0);
            assert_eq!(bytes_on_disk(&first, &dir), first.bytes_written);
            assert_eq!(first.written.last().map(String::as_str), Some("checkpoint"));
            assert_eq!(first.projection.map(|(seq, _)| seq), Some(299));
            check_directory(&store, &dir, 300);
            let checkpoint_at_300 = fs::read_to_string(dir.join("checkpoint")).unwrap();

            // Nothing new: nothing written.
            let again = run_export(&store, &dir).await.unwrap();
            assert_eq!(again.files_written, 0, "{:?}", again.written);
            assert_eq!(again.files_unchanged, 7);
            assert_eq!(again.bytes_written, 0);

            // Past the next tile boundary: partials grow into full tiles.
            submit(&node, &keys.monitor.key, 220, 1000).await;
            assert_eq!(store.head().unwrap().size, 520);
            let second = run_export(&store, &dir).await.unwrap();
            assert_eq!(second.tree_size, 520);
            assert_eq!(
                written(&second),
                set(&[
                    "checkpoint",
                    "ceasefire-ledger/projection",
                    "tile/0/001",
                    "tile/0/002.p/8",
                    "tile/1/000.p/2",
                    "tile/entries/001",
                    "tile/entries/002.p/8",
                ])
            );
            assert_eq!(second.files_unchanged, 2);
            assert_eq!(
                second.written.last().map(String::as_str),
                Some("checkpoint")
            );
            check_directory(&store, &dir, 520);
            // The older tree is still readable from the partials it left.
            let reader = TilesReader::open(&dir).unwrap();
            let old = checkpoint::parse_unverified(&checkpoint_at_300).unwrap();
            assert_eq!(reader.root(300).unwrap(), old.root_hash);
            assert_eq!(reader.leaves(300).count(), 300);

            let third = run_export(&store, &dir).await.unwrap();
            assert_eq!(third.files_written, 0, "{:?}", third.written);
            assert_eq!(third.files_unchanged, 9);

            // A changed full tile or bundle: refused, naming it, nothing written.
            for relative in ["tile/0/000", "tile/entries/001"] {
                let path = dir.join(relative);
                let original = flip_last_byte(&path);
                let error = run_export(&store, &dir).await.unwrap_err();
                match &error {
                    ExportError::Conflict { path: named, .. } => assert_eq!(named, &path),
                    other => panic!("{relative}: {other}"),
                }
                assert!(error.to_string().contains(relative), "{error}");
                fs::write(&path, original).unwrap();
            }
            // A stale partial of another log beside a tile about to be written.
            let other_dir = export_dir.path().join("other");
            fs::create_dir_all(&other_dir).unwrap();
            let partial = "tile/0/000.p/3";
            write(&other_dir, partial, &tile_bytes(&leaf_hashes(3)));
            let error = run_export(&store, &other_dir).await.unwrap_err();
            assert!(error.to_string().contains(partial), "{error}");
            assert!(!other_dir.join("checkpoint").exists());

            // A checkpoint of another log (same origin, other root) in the directory.
            let foreign_dir = export_dir.path().join("foreign");
            let signer = NoteSigner::new(
                dev::DEV_ORIGIN,
                ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng),
            )
            .unwrap();
            let foreign = sign_checkpoint(
                &CheckpointBody {
                    origin: dev::DEV_ORIGIN.into(),
                    tree_size: 10,
                    root_hash: [9; 32],
                },
                &signer,
            )
            .unwrap();
            write(&foreign_dir, CHECKPOINT_PATH, foreign.as_bytes());
            let error = run_export(&store, &foreign_dir).await.unwrap_err();
            assert!(error.to_string().contains("another root"), "{error}");
            assert_eq!(
                fs::read_to_string(foreign_dir.join(CHECKPOINT_PATH)).unwrap(),
                foreign
            );
            // A directory ahead of the store is refused too.
            let ahead = sign_checkpoint(
                &CheckpointBody {
                    origin: dev::DEV_ORIGIN.into(),
                    tree_size: 10_000,
                    root_hash: [9; 32],
                },
                &signer,
            )
            .unwrap();
            write(&foreign_dir, CHECKPOINT_PATH, ahead.as_bytes());
            let error = run_export(&store, &foreign_dir).await.unwrap_err();
            assert!(error.to_string().contains("ahead of this store"), "{error}");

            drop(store);
            node.shutdown().await.unwrap();
        }

        /// Bytes of the files an export wrote, as they are now on disk.
        fn bytes_on_disk(summary: &ExportSummary, dir: &Path) -> u64 {
            summary
                .written
                .iter()
                .map(|relative| fs::metadata(dir.join(relative)).unwrap().len())
                .sum()
        }
    }
}
