//! Storage: the log, its Merkle tree and its indexes in one sled tree.
//!
//! Layout (one sled `Tree`, so a whole batch commits with one atomic
//! `apply_batch`; big-endian integers keep keys in seq order):
//!
//! | key                          | value                                   |
//! |------------------------------|-----------------------------------------|
//! | `v`                          | the layout version, [`STORE_LAYOUT`]    |
//! | `h`                          | [`DurableHead`]: size, root, last leaf hash, last received_at |
//! | `c`                          | the signed checkpoint note for the head |
//! | `W`                          | the latest witnessed checkpoint note (operator signature and a quorum's cosignatures), if any |
//! | `e` first seq                | an entry chunk (`chunks.rs`): consecutive entries' leaf bytes (verbatim) and observation records |
//! | `n` block level, block index   | a node block (`node_blocks.rs`): the tree's complete subtrees, 4 levels over 16 nodes |
//! | `a` author 0x00 nonce        | seq of the author's event with that nonce |
//! | `o` seq                      | the corrected [`ObservationRecord`] of an amended observation (overrides its chunk's) |
//! | `g` seq                      | empty: seqs of governance events, replayed on open |
//! | `P`, `q`, `w`, `s`, `S`      | the compliance projection: see `projection.rs` |
//!
//! Invariants: the head names exactly the leaves `0..size`, held by chunks
//! that follow each other without gap or overlap; every complete subtree of
//! those leaves is stored, in its node block;
//! nothing of a batch is visible unless
//! all of it is. A batch is acknowledged only after [`Durability`] has synced it
//! and the head record (`head_record.rs`, a file beside the sled directory)
//! has recorded it; a store whose sled head does not extend that record (sled
//! silently recovered an older state from a damaged log) is refused on open.
//! Proofs read O(log n) stored nodes; nothing here holds the log in memory.

pub mod chunks;
mod durability;
mod head_record;
mod node_blocks;
mod projection;
mod records;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chunks::{Chunk, ChunkEntry, CHUNK_TARGET_BYTES};
pub use durability::Durability;
pub use head_record::RECORD_FILE_NAME;
use head_record::{HeadRecord, Recorded};
use node_blocks::{Block, Place};
pub use projection::{ProjectionHead, ProjectionWrite, StoreWindows, StoredProjection};

use ceasefire_core::leaf::Leaf;
use ceasefire_core::merkle::{self, Frontier, Hash, SubtreeSource};
use ceasefire_core::rules::{EntryIndex, ObservationRecord};

/// Name of the sled directory inside the data directory.
pub const DB_DIR_NAME: &str = "ledger.sled";

/// sled's page cache. Its default (1 GiB) let the node's memory grow with
/// the log; what is hot is small (the right edge of the tree, the latest
/// chunks, the nonce and window index pages being written), so 32 MiB
/// holds it with room to spare.
const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// The layout this code reads and writes. A store in another layout is
/// refused on open rather than misread.
pub const STORE_LAYOUT: &[u8] = b"entry-chunks-1";

const LAYOUT_KEY: &[u8] = b"v";
const HEAD_KEY: &[u8] = b"h";
const CHECKPOINT_KEY: &[u8] = b"c";
const WITNESSED_KEY: &[u8] = b"W";
const NONCE_PREFIX: u8 = b'a';
const OBSERVATION_PREFIX: u8 = b'o';
const GOVERNANCE_PREFIX: u8 = b'g';

/// Stored entries read lazily, in seq order.
pub type EntryIter<T> = Box<dyn Iterator<Item = Result<(u64, T), StoreError>> + Send + 'static>;

/// Errors a caller must tell apart: an I/O failure may go away on retry; a
/// corrupt store never does and must not be served.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("sled failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("the store does not verify at entry {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
    /// A record of the projection (summaries, windows, change log) does not
    /// decode: no entry is at fault, and the log itself may be whole.
    #[error("{0} is unreadable: the stored projection is damaged (`rebuild-projections` rebuilds it from the log)")]
    CorruptProjection(String),
    #[error("the store's head record is unreadable: {0}")]
    BadHead(String),
    #[error("entry {seq} is not in the log (size {size})")]
    OutOfRange { seq: u64, size: u64 },
    /// The store was written in another layout (by another version).
    #[error(
        "{} holds a ledger in storage layout {found:?}, this version reads {:?}: \
         open it with the version that wrote it and export it",
        path.display(),
        String::from_utf8_lossy(STORE_LAYOUT)
    )]
    OtherLayout { path: PathBuf, found: String },
    /// sled refused (or panicked while) recovering its files.
    #[error("sled cannot open {}: {reason}", path.display())]
    Unopenable { path: PathBuf, reason: String },
    /// The head record outside sled cannot be read.
    #[error("{}: {reason}", path.display())]
    BadRecord { path: PathBuf, reason: String },
    /// sled holds fewer entries than were durable and acknowledged.
    #[error(
        "{} records {recorded} durable entries but the store holds {found}: \
         entries from {found} on were lost (sled recovered an older state from a damaged log); \
         restore the data directory from a backup",
        path.display()
    )]
    LostEntries {
        path: PathBuf,
        recorded: u64,
        found: u64,
    },
    /// sled's first `size` entries are not the ones that were durable.
    #[error(
        "{} records root {recorded} for the first {size} entries, the store has root {found} \
         (its log holds {store_size}): the store is not the log that was acknowledged",
        path.display()
    )]
    RecordMismatch {
        path: PathBuf,
        size: u64,
        store_size: u64,
        recorded: String,
        found: String,
    },
}

impl StoreError {
    /// Whether the write failed for want of space (ENOSPC, or EDQUOT: a
    /// quota full): a fault of the disk, not of the store, which space
    /// freed and a restart cure.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io(error) | StoreError::Sled(sled::Error::Io(error)) => {
                io_is_disk_full(error)
            }
            _ => false,
        }
    }

    /// The same error with paths under `from` named under `to` instead (for
    /// errors found in a private copy of a data directory).
    fn relocated(self, from: &Path, to: &Path) -> StoreError {
        let relocate = |path: PathBuf| match path.strip_prefix(from) {
            Ok(rest) => to.join(rest),
            Err(_) => path,
        };
        match self {
            StoreError::Unopenable { path, reason } => StoreError::Unopenable {
                path: relocate(path),
                reason,
            },
            StoreError::BadRecord { path, reason } => StoreError::BadRecord {
                path: relocate(path),
                reason,
            },
            StoreError::OtherLayout { path, found } => StoreError::OtherLayout {
                path: relocate(path),
                found,
            },
            StoreError::LostEntries {
                path,
                recorded,
                found,
            } => StoreError::LostEntries {
                path: relocate(path),
                recorded,
                found,
            },
            StoreError::RecordMismatch {
                path,
                size,
                store_size,
                recorded,
                found,
            } => StoreError::RecordMismatch {
                path: relocate(path),
                size,
                store_size,
                recorded,
                found,
            },
            other => other,
        }
    }
}

/// Whether an I/O error is ENOSPC or EDQUOT, also where it is a sled
/// error wrapped in an I/O error (as `Durability` hands sled's flush on).
fn io_is_disk_full(error: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    if matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT))
    {
        return true;
    }
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<sled::Error>())
    {
        Some(sled::Error::Io(inner)) => io_is_disk_full(inner),
        _ => false,
    }
}

/// A sled error for a person: its corruption error names no file and
/// prints an empty backtrace.
fn sled_error_text(error: &sled::Error) -> String {
    match error {
        sled::Error::Corruption { at, .. } => format!(
            "sled found a damaged record{} (it does not say in which of its files: \
             conf, db, snap.*, blobs/*)",
            at.map(|at| format!(" at {at}")).unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

/// What a panic carried, as text.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// What is on disk after the last durable batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DurableHead {
    pub size: u64,
    pub root: Hash,
    /// Leaf hash of entry size-1 (zeros for an empty log): the next prev_leaf_hash.
    pub last_leaf_hash: Hash,
    /// received_at of entry size-1: the next entry's is never lower.
    pub last_received_at_micros: i64,
}

impl DurableHead {
    /// What the head record keeps of it.
    fn recorded(&self) -> Recorded {
        Recorded {
            size: self.size,
            root: self.root,
        }
    }

    pub fn empty() -> DurableHead {
        DurableHead {
            size: 0,
            root: merkle::empty_root(),
            last_leaf_hash: [0; 32],
            last_received_at_micros: 0,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&self.last_leaf_hash);
        out.extend_from_slice(&self.last_received_at_micros.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<DurableHead, StoreError> {
        if bytes.len() != 80 {
            return Err(StoreError::BadHead(format!(
                "{} bytes, expected 80",
                bytes.len()
            )));
        }
        let array = |range: std::ops::Range<usize>| bytes[range].try_into().unwrap_or_default();
        Ok(DurableHead {
            size: u64::from_be_bytes(array(0..8)),
            root: bytes[8..40].try_into().unwrap_or_default(),
            last_leaf_hash: bytes[40..72].try_into().unwrap_or_default(),
            last_received_at_micros: i64::from_be_bytes(array(72..80)),
        })
    }
}

/// One accepted entry of a batch, ready to be written.
pub struct StagedEntry {
    pub seq: u64,
    pub leaf: Vec<u8>,
    /// The complete subtrees its append completed, level 0 (its leaf hash)
    /// first: what `Frontier::push` returned for it.
    pub completed: Vec<Hash>,
    pub author: String,
    pub nonce: Vec<u8>,
    /// Observation records written by this entry: its own, or an amended target's.
    pub observation_records: Vec<(u64, ObservationRecord)>,
    pub is_governance: bool,
}

/// The ledger's sled store.
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    /// Syncs sled's files after each commit. A mutex because syncing is a
    /// writer-only, one-at-a-time act.
    durability: Mutex<Durability>,
    /// The last durable (size, root), recorded outside sled after each
    /// commit (see `head_record.rs`).
    record: Mutex<HeadRecord>,
}

/// The head stored in `tree`; an empty head for a new store.
fn head_of(tree: &sled::Tree) -> Result<DurableHead, StoreError> {
    match tree.get(HEAD_KEY)? {
        Some(bytes) => DurableHead::decode(&bytes),
        None => Ok(DurableHead::empty()),
    }
}

fn seq_key(prefix: u8, seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = prefix;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn malformed(seq: u64, error: chunks::Malformed) -> StoreError {
    StoreError::Corrupt {
        seq,
        reason: format!("its stored chunk is damaged: {}", error.0),
    }
}

fn nonce_key(author: &str, nonce: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + author.len() + nonce.len());
    key.push(NONCE_PREFIX);
    key.extend_from_slice(author.as_bytes());
    key.push(0);
    key.extend_from_slice(nonce);
    key
}

/// What opening does with a store that has entries but no head record.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MissingRecord {
    Refuse,
    Adopt,
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir`, for writing.
    ///
    /// Refuses a store sled cannot recover (naming its directory, also when
    /// sled panics on a damaged file) and one whose head does not extend the
    /// head record (see `head_record.rs`): sled silently recovered an older
    /// state, and serving it would lose acknowledged entries.
    ///
    /// A store that holds entries but has no head record is refused too:
    /// it cannot be told from one rolled back by damage. See
    /// [`Store::open_adopting_head`] for taking its head as it is.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(data_dir, MissingRecord::Refuse)
    }

    /// Like [`Store::open`], but a store without a head record is accepted
    /// as it is and recorded from now on. For an operator who lost the
    /// record and has audited the log (`rebuild-projections --adopt-head`),
    /// and for private snapshots, whose readers check the log themselves.
    pub fn open_adopting_head(data_dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(data_dir, MissingRecord::Adopt)
    }

    fn open_with(data_dir: &Path, missing: MissingRecord) -> Result<Store, StoreError> {
        let path = data_dir.join(DB_DIR_NAME);
        std::fs::create_dir_all(&path)?;
        let unopenable = |reason: String| StoreError::Unopenable {
            path: path.clone(),
            reason,
        };
        // sled 0.34 panics on some damaged logs instead of returning an
        // error (e.g. "tried to serialize Uninitialized" while writing the
        // snapshot of a log cut short by a bad message).
        let opened = std::panic::catch_unwind(|| -> sled::Result<(sled::Db, sled::Tree)> {
            let db = sled::Config::new()
                .path(&path)
                // Durability is ours to decide (see durability.rs); sled's
                // background flusher would only add unsynced writes.
                .flush_every_ms(None)
                .cache_capacity(SLED_CACHE_BYTES)
                .open()?;
            let tree = db.open_tree("ledger")?;
            Ok((db, tree))
        });
        let (db, tree) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(error)) => return Err(unopenable(sled_error_text(&error))),
            Err(panic) => {
                return Err(unopenable(format!(
                    "sled panicked while recovering it ({}): a file in it is damaged",
                    panic_text(panic.as_ref())
                )))
            }
        };
        let durability = Durability::new(&path)?;
        let head = head_of(&tree).map_err(|error| match error {
            StoreError::Sled(error) => unopenable(format!(
                "its head is unreadable: {}",
                sled_error_text(&error)
            )),
            other => other,
        })?;
        match tree.get(LAYOUT_KEY) {
            Ok(Some(layout)) if layout.as_ref() == STORE_LAYOUT => {}
            // A new store takes this layout; it is synced with its first batch.
            Ok(None) if head.size == 0 => {
                tree.insert(LAYOUT_KEY, STORE_LAYOUT)?;
            }
            Ok(found) => {
                return Err(StoreError::OtherLayout {
                    path: path.clone(),
                    found: found.map_or("(none: the first one)".into(), |layout| {
                        String::from_utf8_lossy(&layout).into_owned()
                    }),
                })
            }
            Err(error) => {
                return Err(unopenable(format!(
                    "its layout is unreadable: {}",
                    sled_error_text(&error)
                )))
            }
        }
        let current = head.recorded();
        let (record, recorded) = match HeadRecord::read(data_dir) {
            Ok(Some((record, recorded))) => (record, Some(recorded)),
            // The record is created, synced, with the store (before its
            // first batch), so a store with entries and no record lost it.
            Ok(None) if head.size > 0 && missing == MissingRecord::Refuse => {
                return Err(StoreError::BadRecord {
                    path: data_dir.join(RECORD_FILE_NAME),
                    reason: format!(
                        "missing, but the store holds {} entries: without it a store \
                         rolled back by damage cannot be told from a whole one; restore \
                         the file from a backup of this directory, or audit the log \
                         (`verify --data-dir`) and adopt its head with \
                         `rebuild-projections --adopt-head`",
                        head.size
                    ),
                })
            }
            Ok(None) => (HeadRecord::create(data_dir, &current)?, None),
            Err(error) => {
                return Err(StoreError::BadRecord {
                    path: data_dir.join(RECORD_FILE_NAME),
                    reason: match error {
                        head_record::ReadError::Io(error) => format!("unreadable: {error}"),
                        head_record::ReadError::Unreadable => {
                            "neither slot of the head record reads (damaged file): \
                             cannot tell which entries were acknowledged"
                                .into()
                        }
                    },
                })
            }
        };
        let store = Store {
            db,
            tree,
            durability: Mutex::new(durability),
            record: Mutex::new(record),
        };
        if let Some(recorded) = recorded {
            store.check_record(&head, &recorded)?;
        }
        Ok(store)
    }

    /// Refuses the store unless its log extends the recorded durable head.
    fn check_record(&self, head: &DurableHead, recorded: &Recorded) -> Result<(), StoreError> {
        let path = self
            .record
            .lock()
            .map_err(|_| std::io::Error::other("head record lock poisoned"))?
            .path()
            .to_path_buf();
        if head.size < recorded.size {
            return Err(StoreError::LostEntries {
                path,
                recorded: recorded.size,
                found: head.size,
            });
        }
        let root = if head.size == recorded.size {
            head.root
        } else {
            merkle::root(self, recorded.size)?
        };
        if root != recorded.root {
            return Err(StoreError::RecordMismatch {
                path,
                size: recorded.size,
                store_size: head.size,
                recorded: ceasefire_core::key_text(recorded.root),
                found: ceasefire_core::key_text(root),
            });
        }
        Ok(())
    }

    /// Opens a private copy of the store in `data_dir`, for readers that
    /// must never write to it (auditors, exports) and must work while a
    /// server holds it: sled lets one process open a store, and even opening
    /// may write. The copy is crash-consistent (sled recovers it as after a
    /// kill) and lives as long as the returned directory.
    pub fn open_snapshot(data_dir: &Path) -> Result<(Store, tempfile::TempDir), StoreError> {
        let source = data_dir.join(DB_DIR_NAME);
        if !source.join("db").exists() {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} holds no ledger", data_dir.display()),
            )));
        }
        let copy = tempfile::tempdir()?;
        // The record first: a server running on `data_dir` writes it after
        // each sled sync, so a record copied before sled's files never names
        // more than those files hold.
        match std::fs::copy(
            data_dir.join(RECORD_FILE_NAME),
            copy.path().join(RECORD_FILE_NAME),
        ) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error.into()),
        }
        copy_dir(&source, &copy.path().join(DB_DIR_NAME))?;
        let store = Store::open_adopting_head(copy.path())
            .map_err(|error| error.relocated(copy.path(), data_dir))?;
        Ok((store, copy))
    }

    /// The data directory the store is in (where its head record is).
    pub fn data_dir(&self) -> PathBuf {
        self.record
            .lock()
            .map(|record| record.path().parent().map(Path::to_path_buf))
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// The durable head; an empty head for a new store.
    pub fn head(&self) -> Result<DurableHead, StoreError> {
        head_of(&self.tree)
    }

    /// The checkpoint note stored with the head, if any.
    pub fn checkpoint_note(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .tree
            .get(CHECKPOINT_KEY)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// The latest witnessed checkpoint note recorded, if any.
    pub fn witnessed_note(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .tree
            .get(WITNESSED_KEY)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Records a witnessed checkpoint note, without a sync of its own (it
    /// is called on the async collector, up to hundreds of times a second):
    /// the sequencer's next durable batch, sled's periodic flush or the
    /// close at shutdown carries it. One lost in a crash is collected again
    /// from the witnesses, and nothing acknowledged depends on it.
    pub fn record_witnessed(&self, note: &str) -> Result<(), StoreError> {
        self.tree.insert(WITNESSED_KEY, note.as_bytes())?;
        Ok(())
    }

    /// The chunk holding entry `seq`: the last chunk starting at or before
    /// it, if it reaches that far.
    fn chunk_holding(&self, seq: u64) -> Result<Option<(u64, sled::IVec)>, StoreError> {
        let Some(item) = self.tree.range(..=chunks::key(seq)).next_back() else {
            return Ok(None);
        };
        let (key, value) = item?;
        let Some(first_seq) = chunks::first_seq_of(&key) else {
            return Ok(None);
        };
        let chunk = Chunk::parse(first_seq, &value).map_err(|error| malformed(first_seq, error))?;
        Ok((seq < chunk.end_seq()).then_some((first_seq, value)))
    }

    /// Reads one stored entry with `read`; `None` if the log lacks it.
    fn with_entry<T>(
        &self,
        seq: u64,
        read: impl FnOnce(&chunks::StoredEntry) -> Result<T, chunks::Malformed>,
    ) -> Result<Option<T>, StoreError> {
        let Some((first_seq, bytes)) = self.chunk_holding(seq)? else {
            return Ok(None);
        };
        let malformed = |error| malformed(seq, error);
        let chunk = Chunk::parse(first_seq, &bytes).map_err(malformed)?;
        let entry = chunk.entry(seq).map_err(malformed)?;
        read(&entry).map(Some).map_err(malformed)
    }

    /// Leaf bytes of entry `seq`.
    pub fn leaf(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_entry(seq, |entry| Ok(entry.leaf.to_vec()))
    }

    /// Leaves `start..end` in order, read lazily, a chunk at a time.
    pub fn leaves(&self, start: u64, end: u64) -> EntryIter<Vec<u8>> {
        self.read_entries(start, end, |entry| Ok(entry.leaf.to_vec()))
    }

    /// Entries `start..end` in order, each read with `read`, a chunk at a time.
    fn read_entries<T: Send + 'static>(
        &self,
        start: u64,
        end: u64,
        read: fn(&chunks::StoredEntry) -> Result<T, chunks::Malformed>,
    ) -> EntryIter<T> {
        let end = end.max(start);
        let from = match self.chunk_holding(start) {
            Ok(Some((first_seq, _))) => first_seq,
            Ok(None) => start,
            Err(error) => return Box::new(std::iter::once(Err(error))),
        };
        let entries = self
            .tree
            .range(chunks::key(from)..chunks::key(end))
            .flat_map(move |item| -> Vec<Result<(u64, T), StoreError>> {
                let (key, bytes) = match item {
                    Ok(item) => item,
                    Err(error) => return vec![Err(error.into())],
                };
                let first_seq = chunks::first_seq_of(&key).unwrap_or(from);
                let chunk = match Chunk::parse(first_seq, &bytes) {
                    Ok(chunk) => chunk,
                    Err(error) => return vec![Err(malformed(first_seq, error))],
                };
                (first_seq.max(start)..chunk.end_seq().min(end))
                    .map(|seq| {
                        chunk
                            .entry(seq)
                            .and_then(|entry| read(&entry))
                            .map(|value| (seq, value))
                            .map_err(|error| malformed(seq, error))
                    })
                    .collect()
            });
        Box::new(entries)
    }

    /// Seq of the event by `author` with `nonce`, if any.
    pub fn nonce_seq(&self, author: &str, nonce: &[u8]) -> Result<Option<u64>, StoreError> {
        Ok(self
            .tree
            .get(nonce_key(author, nonce))?
            .and_then(|bytes| bytes.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    /// Seqs of every governance event, in order: what rebuilds the rules' state.
    pub fn governance_seqs(&self) -> impl Iterator<Item = Result<u64, StoreError>> {
        self.tree.scan_prefix([GOVERNANCE_PREFIX]).map(|item| {
            let (key, _) = item?;
            Ok(u64::from_be_bytes(key[1..9].try_into().unwrap_or_default()))
        })
    }

    /// Inclusion proof of `seq` in the tree of `tree_size` leaves.
    pub fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<Vec<Hash>, StoreError> {
        merkle::inclusion_proof(self, seq, tree_size).map_err(|error| match error {
            merkle::ProofError::Source(error) => error,
            _ => StoreError::OutOfRange {
                seq,
                size: tree_size,
            },
        })
    }

    /// Consistency proof between two tree sizes (callers check the sizes).
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, StoreError> {
        merkle::consistency_proof(self, old_size, new_size).map_err(|error| match error {
            merkle::ProofError::Source(error) => error,
            _ => StoreError::OutOfRange {
                seq: old_size,
                size: new_size,
            },
        })
    }

    /// The right edge of the stored tree, for the sequencer to continue from.
    pub fn frontier(&self, size: u64) -> Result<Frontier, StoreError> {
        Frontier::load(self, size)
    }

    /// Writes a batch atomically, with its tree nodes, indexes, new head and
    /// checkpoint, then makes it durable and records the new head outside
    /// sled (`head_record.rs`). Returns only once both are on stable storage,
    /// with the time that took.
    pub fn append(
        &self,
        entries: &[StagedEntry],
        head: &DurableHead,
        checkpoint_note: &str,
        projection: &ProjectionWrite,
    ) -> Result<std::time::Duration, StoreError> {
        let mut batch = sled::Batch::default();
        projection::write(&mut batch, projection)?;
        let mut chunk: Vec<ChunkEntry> = Vec::new();
        let mut chunk_bytes = 0;
        for entry in entries {
            batch.insert(
                nonce_key(&entry.author, &entry.nonce),
                &entry.seq.to_be_bytes(),
            );
            let mut own_record = None;
            for (seq, record) in &entry.observation_records {
                if *seq == entry.seq {
                    own_record = Some(record);
                } else {
                    batch.insert(&seq_key(OBSERVATION_PREFIX, *seq), records::encode(record));
                }
            }
            if entry.is_governance {
                batch.insert(&seq_key(GOVERNANCE_PREFIX, entry.seq), &[]);
            }
            // Close the chunk before the entry that would take it past the
            // target (a chunk holds at least one entry, however large).
            if !chunk.is_empty() && chunk_bytes + entry.leaf.len() > CHUNK_TARGET_BYTES {
                let first_seq = entry.seq - chunk.len() as u64;
                batch.insert(&chunks::key(first_seq), chunks::encode(&chunk));
                chunk.clear();
                chunk_bytes = 0;
            }
            chunk.push(ChunkEntry {
                leaf: &entry.leaf,
                record: own_record,
            });
            chunk_bytes += entry.leaf.len();
        }
        if let Some(last) = entries.last() {
            let first_seq = last.seq + 1 - chunk.len() as u64;
            batch.insert(&chunks::key(first_seq), chunks::encode(&chunk));
        }
        for ((block_level, block_index), block) in self.grown_blocks(entries)? {
            batch.insert(&node_blocks::key(block_level, block_index), block.encode());
        }
        batch.insert(HEAD_KEY, head.encode());
        batch.insert(CHECKPOINT_KEY, checkpoint_note.as_bytes());
        self.tree.apply_batch(batch)?;
        let started = std::time::Instant::now();
        self.make_durable()?;
        self.record
            .lock()
            .map_err(|_| std::io::Error::other("head record lock poisoned"))?
            .write(&head.recorded())?;
        Ok(started.elapsed())
    }

    /// Node block `(block_level, block_index)`, if stored.
    fn stored_block(&self, block_level: u8, block_index: u64) -> Result<Option<Block>, StoreError> {
        match self.tree.get(node_blocks::key(block_level, block_index))? {
            Some(bytes) => Block::decode(&bytes)
                .map(Some)
                .map_err(|_| StoreError::Corrupt {
                    seq: block_index << (4 * u32::from(block_level) + 4).min(63),
                    reason: format!("node block ({block_level}, {block_index}) is damaged"),
                }),
            None => Ok(None),
        }
    }

    /// The node blocks the entries' tree nodes go into, each as stored plus
    /// the new nodes.
    fn grown_blocks(
        &self,
        entries: &[StagedEntry],
    ) -> Result<std::collections::BTreeMap<(u8, u64), Block>, StoreError> {
        let mut blocks = std::collections::BTreeMap::new();
        for entry in entries {
            for (level, hash) in (0u8..).zip(&entry.completed) {
                let index = entry.seq >> level;
                let place = Place::of(level, index);
                let block = match blocks.entry((place.block_level, place.block_index)) {
                    std::collections::btree_map::Entry::Occupied(block) => block.into_mut(),
                    std::collections::btree_map::Entry::Vacant(vacant) => vacant.insert(
                        self.stored_block(place.block_level, place.block_index)?
                            .unwrap_or_default(),
                    ),
                };
                if !block.push(&place, *hash) {
                    return Err(StoreError::Corrupt {
                        seq: entry.seq,
                        reason: format!(
                            "its tree node (level {level}, index {index}) does not follow \
                             what node block ({}, {}) holds",
                            place.block_level, place.block_index
                        ),
                    });
                }
            }
        }
        Ok(blocks)
    }

    fn make_durable(&self) -> Result<(), StoreError> {
        let mut durability = self
            .durability
            .lock()
            .map_err(|_| std::io::Error::other("durability lock poisoned"))?;
        Ok(durability.make_durable(&self.db)?)
    }

    /// Checks the whole store against itself: every leaf decodes, sits at
    /// its own seq, chains to the previous one, never goes back in time, and
    /// every stored tree node and the head's root are what the leaves give.
    /// Refuses with the first failing seq. Reads the log once, front to back.
    pub fn verify(&self) -> Result<DurableHead, StoreError> {
        let head = self.head()?;
        let mut frontier = Frontier::new();
        let mut prev_leaf_hash = [0u8; 32];
        let mut last_received_at = i64::MIN;
        let mut expected_seq = 0u64;
        // sled reports a damaged page it reads as an error: name the entry.
        let unreadable = |seq: u64, error: StoreError| StoreError::Corrupt {
            seq,
            reason: match error {
                StoreError::Sled(error) => {
                    format!("unreadable in {}: {}", DB_DIR_NAME, sled_error_text(&error))
                }
                other => format!("unreadable: {other}"),
            },
        };
        let entries = self.read_entries(0, u64::MAX, |entry| {
            entry.record()?;
            Ok(entry.leaf.to_vec())
        });
        // The block last read at each block level: the scan reads each once.
        let mut blocks: Vec<Option<(u64, Block)>> = Vec::new();
        for item in entries {
            let (seq, bytes) = item.map_err(|error| unreadable(expected_seq, error))?;
            let corrupt = |reason: String| StoreError::Corrupt { seq, reason };
            if seq != expected_seq {
                return Err(StoreError::Corrupt {
                    seq: expected_seq,
                    reason: "entry is missing".into(),
                });
            }
            if seq >= head.size {
                return Err(corrupt(format!(
                    "entry lies beyond the head (size {})",
                    head.size
                )));
            }
            let leaf = Leaf::decode(&bytes).map_err(|error| corrupt(error.to_string()))?;
            if leaf.seq != seq {
                return Err(corrupt(format!("leaf says it is entry {}", leaf.seq)));
            }
            if leaf.prev_leaf_hash != prev_leaf_hash {
                return Err(corrupt(
                    "prev_leaf_hash is not the previous entry's leaf hash".into(),
                ));
            }
            if leaf.received_at_micros < last_received_at {
                return Err(corrupt("received_at goes backwards".into()));
            }
            let leaf_hash = merkle::hash_leaf(&bytes);
            for (level, index, hash) in frontier.push(leaf_hash) {
                let place = Place::of(level, index);
                let slot = usize::from(place.block_level);
                if blocks.len() <= slot {
                    blocks.resize_with(slot + 1, || None);
                }
                if !matches!(&blocks[slot], Some((at, _)) if *at == place.block_index) {
                    blocks[slot] = self
                        .stored_block(place.block_level, place.block_index)
                        .map_err(|error| unreadable(seq, error))?
                        .map(|block| (place.block_index, block));
                }
                let stored = blocks[slot]
                    .as_ref()
                    .and_then(|(_, block)| block.get(&place));
                if stored != Some(hash) {
                    return Err(corrupt(format!(
                        "stored tree node (level {level}, index {index}) does not match the leaves"
                    )));
                }
            }
            prev_leaf_hash = leaf_hash;
            last_received_at = leaf.received_at_micros;
            expected_seq += 1;
        }
        if expected_seq != head.size {
            return Err(StoreError::Corrupt {
                seq: expected_seq,
                reason: format!(
                    "the head says {} entries, the log has {expected_seq}",
                    head.size
                ),
            });
        }
        if frontier.root() != head.root
            || prev_leaf_hash != head.last_leaf_hash
            || (head.size > 0 && last_received_at != head.last_received_at_micros)
        {
            return Err(StoreError::Corrupt {
                seq: head.size.saturating_sub(1),
                reason: "the head does not match the log's root, last leaf hash or time".into(),
            });
        }
        Ok(head)
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            match std::fs::copy(entry.path(), &target) {
                Ok(_) => {}
                // sled deletes old blobs and snapshots as it goes.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(())
}

impl SubtreeSource for Store {
    type Error = StoreError;

    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        let place = Place::of(level, index);
        self.stored_block(place.block_level, place.block_index)?
            .and_then(|block| block.get(&place))
            .ok_or_else(|| StoreError::Corrupt {
                seq: index.checked_shl(u32::from(level)).unwrap_or(u64::MAX),
                reason: format!("tree node (level {level}, index {index}) is missing"),
            })
    }
}

impl EntryIndex for Store {
    type Error = StoreError;

    fn leaf_hash(&self, seq: u64) -> Result<Option<Hash>, StoreError> {
        if seq >= self.head()?.size {
            return Ok(None);
        }
        self.subtree_hash(0, seq).map(Some)
    }

    /// The corrected record of an amended observation, else the record
    /// its chunk holds.
    fn observation(&self, seq: u64) -> Result<Option<ObservationRecord>, StoreError> {
        match self.tree.get(seq_key(OBSERVATION_PREFIX, seq))? {
            Some(bytes) => records::decode(&bytes)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt {
                    seq,
                    reason: "observation record is unreadable".into(),
                }),
            None => Ok(self.with_entry(seq, |entry| entry.record())?.flatten()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The chunked layout read back through every accessor: leaves, ranges,
    //! complete subtrees, records and their amendments, the full check.

    use super::*;
    use ceasefire_core::merkle::MemorySource;
    use ceasefire_core::signing::EventSignature;

    fn record(seq: u64) -> ObservationRecord {
        ObservationRecord {
            author: format!("mission-{}", seq % 3),
            leaf_hash: [seq as u8; 32],
            commitment_id: "ceasefire".into(),
            zone_id: "sector".into(),
            observed_until_micros: 1_000 + seq as i64,
            retracted: false,
        }
    }

    /// Appends `batches` (their sizes) of leaves with large and small
    /// payloads; every third entry is an observation, every seventh amends
    /// the entry before it. Returns the leaves.
    fn write_log(store: &Store, batches: &[usize]) -> Vec<Vec<u8>> {
        let mut frontier = Frontier::new();
        let mut leaves = Vec::new();
        let mut prev_leaf_hash = [0u8; 32];
        for (batch, &size) in batches.iter().enumerate() {
            let mut entries = Vec::new();
            for _ in 0..size {
                let seq = frontier.size();
                let leaf = Leaf {
                    seq,
                    prev_leaf_hash,
                    received_at_micros: 1_000 + batch as i64,
                    payload: vec![seq as u8; if seq.is_multiple_of(5) { 3_000 } else { 200 }],
                    signatures: vec![EventSignature {
                        public_key: [1; 32],
                        signature: [2; 64],
                    }],
                }
                .encode();
                prev_leaf_hash = merkle::hash_leaf(&leaf);
                let completed = frontier.push(prev_leaf_hash);
                let mut observation_records = Vec::new();
                if seq.is_multiple_of(3) {
                    observation_records.push((seq, record(seq)));
                }
                if seq.is_multiple_of(7) && seq > 0 {
                    let mut corrected = record(seq - 1);
                    corrected.retracted = true;
                    observation_records.push((seq - 1, corrected));
                }
                entries.push(StagedEntry {
                    seq,
                    leaf: leaf.clone(),
                    completed: completed.into_iter().map(|(_, _, hash)| hash).collect(),
                    author: "mission".into(),
                    nonce: seq.to_be_bytes().to_vec(),
                    observation_records,
                    is_governance: false,
                });
                leaves.push(leaf);
            }
            let head = DurableHead {
                size: frontier.size(),
                root: frontier.root(),
                last_leaf_hash: prev_leaf_hash,
                last_received_at_micros: 1_000 + batch as i64,
            };
            let projection = ProjectionWrite {
                head: ProjectionHead {
                    as_of_seq: head.size.checked_sub(1),
                    log_time_micros: head.last_received_at_micros,
                    digest: [0; 32],
                },
                summaries: Vec::new(),
                window_writes: &Default::default(),
                changes: &[],
            };
            store.append(&entries, &head, "note", &projection).unwrap();
        }
        leaves
    }

    #[test]
    fn a_chunked_log_reads_back_every_leaf_subtree_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let leaves = write_log(&store, &[1, 3, 40, 1, 2, 97, 5]);
        let size = leaves.len() as u64;
        assert_eq!(store.verify().unwrap().size, size);

        for (seq, leaf) in leaves.iter().enumerate() {
            assert_eq!(store.leaf(seq as u64).unwrap().as_ref(), Some(leaf));
        }
        assert_eq!(store.leaf(size).unwrap(), None);
        for (start, end) in [(0, size), (5, 6), (3, 44), (44, 200), (140, 149)] {
            let read: Vec<(u64, Vec<u8>)> = store.leaves(start, end).map(Result::unwrap).collect();
            let expected: Vec<(u64, Vec<u8>)> = (start..end.min(size))
                .map(|seq| (seq, leaves[seq as usize].clone()))
                .collect();
            assert_eq!(read, expected, "leaves({start}, {end})");
        }

        let tree =
            MemorySource::from_leaf_hashes(leaves.iter().map(|leaf| merkle::hash_leaf(leaf)));
        for (level, row) in tree.levels().iter().enumerate() {
            for (index, hash) in row.iter().enumerate() {
                assert_eq!(
                    store.subtree_hash(level as u8, index as u64).unwrap(),
                    *hash,
                    "subtree ({level}, {index})"
                );
            }
        }
        assert!(store.subtree_hash(0, size).is_err());
        assert!(store.subtree_hash(63, u64::MAX).is_err());
        for tree_size in [1, 2, 7, 64, size] {
            assert_eq!(store.frontier(tree_size).unwrap().size(), tree_size);
        }

        for seq in 0..size {
            let expected = if (seq + 1) % 7 == 0 {
                // Amended by the entry after it.
                Some(ObservationRecord {
                    retracted: true,
                    ..record(seq)
                })
            } else if seq.is_multiple_of(3) {
                Some(record(seq))
            } else {
                None
            };
            assert_eq!(store.observation(seq).unwrap(), expected, "record of {seq}");
        }
    }

    #[test]
    fn a_store_in_another_layout_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        write_log(&store, &[2]);
        store
            .tree
            .insert(LAYOUT_KEY, b"one-key-per-leaf".as_slice())
            .unwrap();
        store.make_durable().unwrap();
        drop(store);
        match Store::open(dir.path()) {
            Err(StoreError::OtherLayout { found, .. }) => assert_eq!(found, "one-key-per-leaf"),
            other => panic!("another layout was opened: {:?}", other.err()),
        }
    }
}
