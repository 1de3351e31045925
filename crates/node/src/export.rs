//! Writing a store as a C2SP tlog-tiles directory: an incremental export.
//!
//! The checkpoint exported is the latest witnessed one the store recorded
//! (the operator's signature and a quorum's cosignatures), when there is
//! one, else the store's own; the export holds exactly that checkpoint's
//! tree. A witnessed checkpoint may lag the head: tlog-tiles readers fetch
//! the partial tiles of the width its size gives, so those are the ones
//! written, and entries beyond it wait for a later witnessed checkpoint.
//!
//! The writing itself is [`TilesWriter`], shared by this one-shot export,
//! the export of a running server read over gRPC (`export --server`), and
//! the mirror a running node keeps (`crate::tiles_publisher`): one way to
//! write tiles. Where the bytes go is a [`TileSink`] (a directory,
//! [`DirSink`], today).
//!
//! Invariants of every writer:
//! - Every tile and bundle file is immutable: its name fixes its content. One
//!   already present with other content means the directory holds another
//!   log, and the writer refuses, naming the file. A full tile is written
//!   once and never again. Partial files of earlier checkpoints stay
//!   (clients holding an older checkpoint still need them).
//! - Only the `checkpoint` and the projection file are ever replaced.
//! - Every file is written to a temporary file, synced, then renamed; every
//!   data file is on disk (and its directory synced) before the `checkpoint`
//!   that needs it is renamed into place.
//! - Nothing is published that does not verify: the tree rebuilt from the
//!   tiles has the checkpoint's root before the `checkpoint` is written
//!   (and [`export`] checks each full tile's root against the store's node
//!   one level up as well).

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ceasefire_core::checkpoint::{self, CheckpointBody, CheckpointError};
use ceasefire_core::merkle::{self, hash_leaf, Hash, SubtreeSource};
use ceasefire_core::tiles::*;

use crate::storage::{Store, StoreError};

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
    #[error("{}: is at tree size {exported}, ahead of the store's latest witnessed checkpoint at {witnessed}; an export never goes back (it would hide entries): export again once the witnesses have cosigned at least {exported} entries", .path.display())]
    AheadOfWitnessed {
        path: PathBuf,
        exported: u64,
        witnessed: u64,
    },
    /// The I/O error is part of the message, not a `source`: callers print
    /// the whole chain, and it would say it twice.
    #[error("{}: cannot {action}: {cause}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        cause: io::Error,
    },
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> ExportError {
    let path = path.to_path_buf();
    move |cause| ExportError::Io {
        path,
        action,
        cause,
    }
}

/// What an export did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// The tree exported: the size of the checkpoint read at the start.
    pub tree_size: u64,
    /// Whether that checkpoint is the store's witnessed one.
    pub witnessed: bool,
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

/// What an export exports: the store's witnessed checkpoint or else its
/// own, and its projection head if that is as of an entry of the
/// checkpoint's tree.
struct Head {
    note: String,
    body: CheckpointBody,
    witnessed: bool,
    projection: Option<(u64, Hash)>,
}

/// Reads the checkpoint note and the projection head as a pair. The
/// projection head is written in the same batch as the store's checkpoint,
/// so read after it, it is as of the checkpoint's last entry or later; a
/// later one describes entries the export will not hold, so read both
/// again. A witnessed checkpoint lags the head by design: a projection
/// beyond it is left out at once.
fn read_head(store: &Store) -> Result<Head, ExportError> {
    if let Some(note) = store.witnessed_note()? {
        let body = checkpoint::parse_unverified(&note).map_err(ExportError::Checkpoint)?;
        let head = store.head()?.size;
        if body.tree_size > head {
            return Err(ExportError::Inconsistent(format!(
                "its witnessed checkpoint is at tree size {}, beyond its {head} entries",
                body.tree_size
            )));
        }
        let projection = store
            .load_projection()?
            .and_then(|stored| Some((stored.head.as_of_seq?, stored.head.digest)))
            .filter(|(as_of_seq, _)| *as_of_seq < body.tree_size);
        return Ok(Head {
            note,
            body,
            witnessed: true,
            projection,
        });
    }
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
                    witnessed: false,
                    projection: None,
                })
            }
            _ => {
                return Ok(Head {
                    note,
                    body,
                    witnessed: false,
                    projection,
                })
            }
        }
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Where tile bytes go. Paths are relative (`tile/0/000`, `checkpoint`).
/// A directory today ([`DirSink`]); an object store would be another.
pub trait TileSink: Send {
    /// Where `relative` lives, for messages.
    fn location(&self, relative: &str) -> PathBuf;
    /// The bytes at `relative`, if there are any.
    fn read(&self, relative: &str) -> Result<Option<Vec<u8>>, ExportError>;
    /// The widths `W` of the partial files `<base>.p/W` present.
    fn partial_widths(&self, base: &str) -> Result<Vec<u16>, ExportError>;
    /// Puts `bytes` at `relative`, whole or not at all (a reader never sees
    /// half a file).
    fn write(&mut self, relative: &str, bytes: &[u8]) -> Result<(), ExportError>;
    /// Makes everything written so far durable, before what refers to it.
    fn sync(&mut self) -> Result<(), ExportError>;
    /// Removes every partial file `<base>.p/W` (once the full `<base>` is
    /// published: C2SP readers fall back to the full tile, and ours does).
    fn remove_partials(&mut self, base: &str) -> Result<(), ExportError>;
}

/// A local directory: files written to a temporary name, synced, renamed;
/// the directories they went into synced by [`TileSink::sync`].
pub struct DirSink {
    dir: PathBuf,
    /// Directories holding renamed files (and their ancestors up to `dir`),
    /// to sync before the checkpoint.
    unsynced: BTreeSet<PathBuf>,
}

impl DirSink {
    /// The directory, created if needed.
    pub fn create(dir: &Path) -> Result<DirSink, ExportError> {
        fs::create_dir_all(dir).map_err(io_error(dir, "create the directory"))?;
        Ok(DirSink {
            dir: dir.to_path_buf(),
            unsynced: BTreeSet::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl TileSink for DirSink {
    fn location(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    fn read(&self, relative: &str) -> Result<Option<Vec<u8>>, ExportError> {
        let path = self.dir.join(relative);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(&path, "read")(error)),
        }
    }

    fn partial_widths(&self, base: &str) -> Result<Vec<u16>, ExportError> {
        let partial_dir = self.dir.join(format!("{base}.p"));
        let mut widths = Vec::new();
        match fs::read_dir(&partial_dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(io_error(&partial_dir, "list"))?;
                    let name = entry.file_name();
                    // Our temporary files, or anything else, are not widths.
                    if let Some(width) = name.to_str().and_then(|name| name.parse::<u16>().ok()) {
                        widths.push(width);
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(&partial_dir, "list")(error)),
        }
        Ok(widths)
    }

    fn write(&mut self, relative: &str, bytes: &[u8]) -> Result<(), ExportError> {
        let path = self.dir.join(relative);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
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
        Ok(())
    }

    /// Syncs every directory a rename went into, so the files are durable
    /// under their names.
    fn sync(&mut self) -> Result<(), ExportError> {
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

    fn remove_partials(&mut self, base: &str) -> Result<(), ExportError> {
        let partial_dir = self.dir.join(format!("{base}.p"));
        match fs::remove_dir_all(&partial_dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io_error(&partial_dir, "remove")(error)),
        }
    }
}

/// Byte offsets after each hash of a full tile, for prefix checks.
fn tile_ends() -> Vec<usize> {
    (1..=TILE_FULL).map(|count| count * HASH_SIZE).collect()
}

/// Writes a log's tiles as its leaves arrive, in order: full tiles and full
/// entry bundles as soon as they complete (once: they never change), the
/// partial ones and the checkpoint when [`TilesWriter::publish`] is asked
/// to publish a checkpoint of the size pushed so far.
pub struct TilesWriter<S: TileSink> {
    sink: S,
    /// The hash tiles of the leaves pushed so far.
    builder: TileBuilder,
    /// Leaves pushed so far: the size of the tree a checkpoint may publish.
    size: u64,
    /// The entry bundle being filled (its leaves, length-prefixed), and the
    /// byte offset after each of its entries.
    bundle: Vec<u8>,
    bundle_ends: Vec<usize>,
    /// Full tiles completed by the last push, before they are written.
    completed: Vec<CompletedTile>,
    summary: ExportSummary,
}

impl<S: TileSink> TilesWriter<S> {
    /// A writer for a log from its first entry.
    pub fn new(sink: S) -> TilesWriter<S> {
        TilesWriter {
            sink,
            builder: TileBuilder::default(),
            size: 0,
            bundle: Vec::new(),
            bundle_ends: Vec::new(),
            completed: Vec::new(),
            summary: ExportSummary::default(),
        }
    }

    /// A writer carrying on from a tree of `size` leaves whose tiles are
    /// already written: `right_edge(L)` gives the hashes of the pending
    /// level-`L` tile (as [`TileBuilder::resume`] asks), and
    /// `bundle_leaves` the leaves of the unfinished entry bundle (leaves
    /// `size - size % 256 .. size`).
    pub fn resume(
        sink: S,
        size: u64,
        right_edge: impl FnMut(u8) -> Result<Vec<Hash>, ExportError>,
        bundle_leaves: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<TilesWriter<S>, ExportError> {
        let mut writer = TilesWriter::new(sink);
        writer.builder = TileBuilder::resume(size, right_edge)?;
        writer.size = size;
        let bundle_start = size - size % u64::from(TILE_WIDTH);
        for (seq, leaf) in (bundle_start..).zip(bundle_leaves) {
            writer.add_to_bundle(seq, &leaf)?;
        }
        if writer.bundle_ends.len() as u64 != size - bundle_start {
            return Err(ExportError::Inconsistent(format!(
                "the entry bundle of entries {bundle_start}..{size} is incomplete"
            )));
        }
        Ok(writer)
    }

    /// Leaves pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// The root of the tree of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let root: Result<Hash, std::convert::Infallible> =
            root_from_right_edge(self.size, |level| Ok(self.builder.pending(level)));
        root.unwrap_or_else(|never| match never {})
    }

    fn add_to_bundle(&mut self, seq: u64, leaf: &[u8]) -> Result<(), ExportError> {
        let length = u16::try_from(leaf.len()).map_err(|_| ExportError::LeafTooLarge {
            seq,
            len: leaf.len(),
        })?;
        self.bundle.extend_from_slice(&length.to_be_bytes());
        self.bundle.extend_from_slice(leaf);
        self.bundle_ends.push(self.bundle.len());
        Ok(())
    }

    /// Appends the next leaf; writes the full tiles and the full bundle it
    /// completes, after `check` has passed each full tile.
    pub fn push(
        &mut self,
        leaf: &[u8],
        mut check: impl FnMut(&CompletedTile) -> Result<(), ExportError>,
    ) -> Result<(), ExportError> {
        let seq = self.size;
        self.add_to_bundle(seq, leaf)?;
        self.builder.push(hash_leaf(leaf), &mut self.completed);
        self.size += 1;
        let ends = tile_ends();
        for tile in std::mem::take(&mut self.completed) {
            check(&tile)?;
            self.put_immutable(
                &tile_path(tile.id.level, tile.id.index, TILE_WIDTH),
                TILE_WIDTH,
                &tile_bytes(&tile.hashes),
                &ends,
            )?;
        }
        if self.bundle_ends.len() == TILE_FULL {
            let index = seq / u64::from(TILE_WIDTH);
            let bundle = std::mem::take(&mut self.bundle);
            let bundle_ends = std::mem::take(&mut self.bundle_ends);
            self.put_immutable(
                &bundle_path(index, TILE_WIDTH),
                TILE_WIDTH,
                &bundle,
                &bundle_ends,
            )?;
        }
        Ok(())
    }

    /// Publishes `note`, a checkpoint of exactly the leaves pushed: its
    /// tree rebuilt from the tiles must have its root; then the partial
    /// tiles and bundle of its size are written, the projection head (if
    /// given), everything synced, and the `checkpoint` last.
    pub fn publish(
        &mut self,
        note: &str,
        body: &CheckpointBody,
        projection: Option<(u64, Hash)>,
    ) -> Result<(), ExportError> {
        if body.tree_size != self.size {
            return Err(ExportError::Inconsistent(format!(
                "a checkpoint of {} entries, but {} were written",
                body.tree_size, self.size
            )));
        }
        if self.root() != body.root_hash {
            return Err(ExportError::Inconsistent(format!(
                "its leaves do not hash to its checkpoint's root at size {}",
                self.size
            )));
        }
        let ends = tile_ends();
        let partials: Vec<(TileId, Vec<u8>)> = self
            .builder
            .partials()
            .map(|(tile, hashes)| (tile, tile_bytes(hashes)))
            .collect();
        for (tile, bytes) in partials {
            self.put_immutable(
                &tile_path(tile.level, tile.index, TILE_WIDTH),
                tile.width,
                &bytes,
                &ends,
            )?;
        }
        if !self.bundle_ends.is_empty() {
            let index = self.size / u64::from(TILE_WIDTH);
            let bundle = std::mem::take(&mut self.bundle);
            let bundle_ends = std::mem::take(&mut self.bundle_ends);
            let written = self.put_immutable(
                &bundle_path(index, TILE_WIDTH),
                bundle_ends.len() as u16,
                &bundle,
                &bundle_ends,
            );
            self.bundle = bundle;
            self.bundle_ends = bundle_ends;
            written?;
        }
        if let Some((as_of_seq, digest)) = projection {
            let json = format!(
                "{{\"as_of_seq\": {as_of_seq}, \"digest\": \"{}\"}}\n",
                hex::encode(digest)
            );
            self.put_mutable(PROJECTION_PATH, json.as_bytes())?;
        }
        self.sink.sync()?;
        self.put_mutable(CHECKPOINT_PATH, note.as_bytes())?;
        self.sink.sync()?;
        self.summary.tree_size = self.size;
        self.summary.projection = projection;
        Ok(())
    }

    /// What was written since the last call.
    pub fn take_summary(&mut self) -> ExportSummary {
        std::mem::take(&mut self.summary)
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
        match self.sink.read(&relative)? {
            Some(existing) if existing == bytes => {
                self.summary.files_unchanged += 1;
                return Ok(());
            }
            Some(existing) => {
                return Err(ExportError::Conflict {
                    path: self.sink.location(&relative),
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
        let mut others: Vec<u16> = self
            .sink
            .partial_widths(base)?
            .into_iter()
            .filter(|other| (1..TILE_WIDTH).contains(other) && *other != width)
            .collect();
        if width < TILE_WIDTH {
            others.push(TILE_WIDTH);
        }
        for other in others {
            let relative = with_width(base.to_string(), other);
            let Some(existing) = self.sink.read(&relative)? else {
                continue;
            };
            let consistent = if other < width {
                existing.as_slice() == &bytes[..entry_ends[usize::from(other) - 1]]
            } else {
                existing.starts_with(bytes)
            };
            if !consistent {
                return Err(ExportError::Conflict {
                    path: self.sink.location(&relative),
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
        if self.sink.read(relative)?.as_deref() == Some(bytes) {
            self.summary.files_unchanged += 1;
            return Ok(());
        }
        self.write(relative, bytes)
    }

    fn write(&mut self, relative: &str, bytes: &[u8]) -> Result<(), ExportError> {
        self.sink.write(relative, bytes)?;
        self.summary.files_written += 1;
        self.summary.bytes_written += bytes.len() as u64;
        self.summary.written.push(relative.to_string());
        Ok(())
    }
}

/// What a directory's `checkpoint` says, if it has one: the tree a writer
/// finds there.
pub fn existing_checkpoint(sink: &dyn TileSink) -> Result<Option<CheckpointBody>, ExportError> {
    let Some(text) = sink.read(CHECKPOINT_PATH)? else {
        return Ok(None);
    };
    let conflict = |reason: String| ExportError::Conflict {
        path: sink.location(CHECKPOINT_PATH),
        reason,
    };
    let text = String::from_utf8(text).map_err(|_| conflict("is not UTF-8 text".into()))?;
    checkpoint::parse_unverified(&text)
        .map(Some)
        .map_err(|error| conflict(format!("is not a checkpoint: {error}")))
}

/// Refuses a directory whose checkpoint `old` is for another log than
/// `body`'s, or for a larger tree (going back would hide entries;
/// `witnessed` says whether `body` is a witnessed checkpoint, which may lag
/// an earlier export made before anything was witnessed). The caller still
/// compares the roots at the old size.
pub fn check_not_behind(
    sink: &dyn TileSink,
    old: &CheckpointBody,
    body: &CheckpointBody,
    witnessed: bool,
) -> Result<(), ExportError> {
    let path = sink.location(CHECKPOINT_PATH);
    if old.origin != body.origin {
        return Err(ExportError::Conflict {
            path,
            reason: format!(
                "is for origin {:?}, this log's is {:?}",
                old.origin, body.origin
            ),
        });
    }
    if old.tree_size > body.tree_size && witnessed {
        return Err(ExportError::AheadOfWitnessed {
            path,
            exported: old.tree_size,
            witnessed: body.tree_size,
        });
    }
    if old.tree_size > body.tree_size {
        return Err(ExportError::Conflict {
            path,
            reason: format!(
                "is at tree size {}, ahead of this store's {}",
                old.tree_size, body.tree_size
            ),
        });
    }
    Ok(())
}

/// The conflict of a directory whose checkpoint has another root than
/// this log at its size.
pub fn other_root(sink: &dyn TileSink, old_size: u64) -> ExportError {
    ExportError::Conflict {
        path: sink.location(CHECKPOINT_PATH),
        reason: format!("has another root at tree size {old_size} than this log"),
    }
}

/// Writes the tree of the store's witnessed checkpoint, or else its current
/// one, into `dir` as C2SP tlog-tiles (see the module documentation),
/// reusing what an earlier export left there.
pub fn export(store: &Store, dir: &Path) -> Result<ExportSummary, ExportError> {
    let Head {
        note,
        body,
        witnessed,
        projection,
    } = read_head(store)?;
    let size = body.tree_size;
    if merkle::root(store, size)? != body.root_hash {
        return Err(ExportError::Inconsistent(format!(
            "its tree at size {size} does not have its checkpoint's root"
        )));
    }
    let sink = DirSink::create(dir)?;
    if let Some(old) = existing_checkpoint(&sink)? {
        check_not_behind(&sink, &old, &body, witnessed)?;
        if merkle::root(store, old.tree_size)? != old.root_hash {
            return Err(other_root(&sink, old.tree_size));
        }
    }

    let mut writer = TilesWriter::new(sink);
    for item in store.leaves(0, size) {
        let (found, leaf) = item?;
        let seq = writer.size();
        if found != seq {
            return Err(ExportError::Inconsistent(format!("entry {seq} is missing")));
        }
        // The full tile's root is the store's node one level up: the
        // store's tree and its leaves agree here.
        writer.push(&leaf, |tile| check_tile_against_store(store, tile))?;
    }
    if writer.size() != size {
        return Err(ExportError::Inconsistent(format!(
            "entry {} is missing",
            writer.size()
        )));
    }
    writer.publish(&note, &body, projection)?;
    let mut summary = writer.take_summary();
    summary.witnessed = witnessed;
    Ok(summary)
}

/// A full tile's root must be the store's tree node one level up.
pub fn check_tile_against_store(store: &Store, tile: &CompletedTile) -> Result<(), ExportError> {
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
    Ok(())
}
