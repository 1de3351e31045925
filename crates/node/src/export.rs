//! Writing a store as a C2SP tlog-tiles directory: an incremental export.
//!
//! The checkpoint exported is the latest witnessed one the store recorded
//! (the operator's signature and a quorum's cosignatures), when there is
//! one, else the store's own; the export holds exactly that checkpoint's
//! tree. A witnessed checkpoint may lag the head: tlog-tiles readers fetch
//! the partial tiles of the width its size gives, so those are the ones
//! written, and entries beyond it wait for a later witnessed checkpoint.
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
/// tree than the one exported (going back would hide entries; `witnessed`
/// says whether the export's checkpoint is a witnessed one, which may lag
/// an earlier export made before anything was witnessed).
fn check_existing_checkpoint(
    store: &Store,
    dir: &Path,
    body: &CheckpointBody,
    witnessed: bool,
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
    if old.tree_size > body.tree_size && witnessed {
        return Err(ExportError::AheadOfWitnessed {
            path,
            exported: old.tree_size,
            witnessed: body.tree_size,
        });
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
    fs::create_dir_all(dir).map_err(io_error(dir, "create the directory"))?;
    check_existing_checkpoint(store, dir, &body, witnessed)?;

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
    summary.witnessed = witnessed;
    summary.projection = projection;
    Ok(summary)
}
