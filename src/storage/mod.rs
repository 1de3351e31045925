//! Storage: the log, its Merkle tree and its indexes in one sled tree.
//!
//! Layout (one sled `Tree`, so a whole batch commits with one atomic
//! `apply_batch`; big-endian integers keep keys in seq order):
//!
//! | key                          | value                                   |
//! |------------------------------|-----------------------------------------|
//! | `h`                          | [`DurableHead`]: size, root, last leaf hash, last received_at |
//! | `c`                          | the signed checkpoint note for the head |
//! | `l` seq                      | leaf bytes (docs/spec.md), verbatim     |
//! | `n` level index              | hash of the complete subtree at (level, index) |
//! | `a` author 0x00 nonce        | seq of the author's event with that nonce |
//! | `o` seq                      | [`ObservationRecord`] of an observation |
//! | `g` seq                      | empty: seqs of governance events, replayed on open |
//! | `P`                          | [`ProjectionHead`]: as_of_seq, log time, digest |
//! | `q` zone 0x00 commitment     | the pair's [`PairSummary`], JSON |
//! | `w` zone 0x00 commitment 0x00 seq | an observation in the pair's window, JSON |
//! | `s` seq index(u32)           | a [`StatusChange`], JSON: the change log streams read |
//! | `S` zone 0x00 commitment 0x00 seq index | empty: the change log by pair, for history |
//!
//! Invariants: the head names exactly the leaves `0..size`; every complete
//! subtree of those leaves is stored; nothing of a batch is visible unless
//! all of it is. A batch is acknowledged only after [`Durability`] has synced it.
//! Proofs read O(log n) stored nodes; nothing here holds the log in memory.

mod durability;
mod records;

use std::path::Path;
use std::sync::Mutex;

pub use durability::Durability;

use crate::core::leaf::Leaf;
use crate::core::merkle::{self, Frontier, Hash, SubtreeSource};
use crate::core::projection::{
    CountedObservation, PairKey, PairState, PairSummary, StatusChange, WindowWrite,
};
use crate::core::rules::{EntryIndex, ObservationRecord};

/// Name of the sled directory inside the data directory.
pub const DB_DIR_NAME: &str = "ledger.sled";

const HEAD_KEY: &[u8] = b"h";
const CHECKPOINT_KEY: &[u8] = b"c";
const LEAF_PREFIX: u8 = b'l';
const NODE_PREFIX: u8 = b'n';
const NONCE_PREFIX: u8 = b'a';
const OBSERVATION_PREFIX: u8 = b'o';
const GOVERNANCE_PREFIX: u8 = b'g';
const PROJECTION_HEAD_KEY: &[u8] = b"P";
const PAIR_PREFIX: u8 = b'q';
const WINDOW_PREFIX: u8 = b'w';
const CHANGE_PREFIX: u8 = b's';
const PAIR_CHANGE_PREFIX: u8 = b'S';

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
    #[error("the store's head record is unreadable: {0}")]
    BadHead(String),
    #[error("entry {seq} is not in the log (size {size})")]
    OutOfRange { seq: u64, size: u64 },
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

/// Which prefix of the log the stored projection is, and its digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProjectionHead {
    pub as_of_seq: Option<u64>,
    pub log_time_micros: i64,
    pub digest: Hash,
}

impl ProjectionHead {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(49);
        out.push(u8::from(self.as_of_seq.is_some()));
        out.extend_from_slice(&self.as_of_seq.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.log_time_micros.to_be_bytes());
        out.extend_from_slice(&self.digest);
        out
    }

    fn decode(bytes: &[u8]) -> Option<ProjectionHead> {
        if bytes.len() != 49 || bytes[0] > 1 {
            return None;
        }
        let seq = u64::from_be_bytes(bytes[1..9].try_into().ok()?);
        Some(ProjectionHead {
            as_of_seq: (bytes[0] == 1).then_some(seq),
            log_time_micros: i64::from_be_bytes(bytes[9..17].try_into().ok()?),
            digest: bytes[17..49].try_into().ok()?,
        })
    }
}

/// The projection as stored: its head and every pair.
pub struct StoredProjection {
    pub head: ProjectionHead,
    pub pairs: std::collections::BTreeMap<PairKey, PairState>,
}

/// The projection's part of a batch: its new head, the pair summaries it
/// changed (`None`: the pair was dropped), its window changes in order, and
/// the status changes it caused. Proportional to what the batch changed,
/// never to the size of a window.
pub struct ProjectionWrite<'p> {
    pub head: ProjectionHead,
    pub summaries: Vec<(&'p PairKey, Option<&'p PairSummary>)>,
    pub window_writes: &'p [WindowWrite],
    pub changes: &'p [StatusChange],
}

/// One accepted entry of a batch, ready to be written.
pub struct StagedEntry {
    pub seq: u64,
    pub leaf: Vec<u8>,
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
}

fn seq_key(prefix: u8, seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = prefix;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn node_key(level: u8, index: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[0] = NODE_PREFIX;
    key[1] = level;
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

fn pair_key((zone_id, commitment_id): &PairKey) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + zone_id.len() + commitment_id.len());
    key.push(PAIR_PREFIX);
    key.extend_from_slice(zone_id.as_bytes());
    key.push(0);
    key.extend_from_slice(commitment_id.as_bytes());
    key
}

fn window_key(pair: &PairKey, seq: u64) -> Vec<u8> {
    let mut key = pair_key(pair);
    key[0] = WINDOW_PREFIX;
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn change_key(seq: u64, index: u32) -> [u8; 13] {
    let mut key = [0u8; 13];
    key[0] = CHANGE_PREFIX;
    key[1..9].copy_from_slice(&seq.to_be_bytes());
    key[9..].copy_from_slice(&index.to_be_bytes());
    key
}

fn pair_change_key(change: &StatusChange) -> Vec<u8> {
    let mut key = pair_key(&(change.zone_id.clone(), change.commitment_id.clone()));
    key[0] = PAIR_CHANGE_PREFIX;
    key.push(0);
    key.extend_from_slice(&change.seq.to_be_bytes());
    key.extend_from_slice(&change.index.to_be_bytes());
    key
}

fn corrupt_record(what: &str) -> StoreError {
    StoreError::Corrupt {
        seq: 0,
        reason: format!("a stored {what} is unreadable"),
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

impl Store {
    /// Opens (creating if needed) the store in `data_dir`, for writing.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(DB_DIR_NAME);
        std::fs::create_dir_all(&path)?;
        let db = sled::Config::new()
            .path(&path)
            // Durability is ours to decide (see durability.rs); sled's
            // background flusher would only add unsynced writes.
            .flush_every_ms(None)
            .open()?;
        let tree = db.open_tree("ledger")?;
        let durability = Durability::new(&path)?;
        Ok(Store {
            db,
            tree,
            durability: Mutex::new(durability),
        })
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
        copy_dir(&source, &copy.path().join(DB_DIR_NAME))?;
        let store = Store::open(copy.path())?;
        Ok((store, copy))
    }

    /// The durable head; an empty head for a new store.
    pub fn head(&self) -> Result<DurableHead, StoreError> {
        match self.tree.get(HEAD_KEY)? {
            Some(bytes) => DurableHead::decode(&bytes),
            None => Ok(DurableHead::empty()),
        }
    }

    /// The checkpoint note stored with the head, if any.
    pub fn checkpoint_note(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .tree
            .get(CHECKPOINT_KEY)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Leaf bytes of entry `seq`.
    pub fn leaf(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree
            .get(seq_key(LEAF_PREFIX, seq))?
            .map(|v| v.to_vec()))
    }

    /// Leaves `start..end` in order, read lazily.
    pub fn leaves(
        &self,
        start: u64,
        end: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + Send + 'static {
        self.tree
            .range(seq_key(LEAF_PREFIX, start)..seq_key(LEAF_PREFIX, end.max(start)))
            .map(|item| {
                let (key, value) = item?;
                let seq = u64::from_be_bytes(key[1..9].try_into().unwrap_or_default());
                Ok((seq, value.to_vec()))
            })
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
    /// checkpoint, then makes it durable. Returns only once it is, with the
    /// time the sync took.
    pub fn append(
        &self,
        entries: &[StagedEntry],
        nodes: &[(u8, u64, Hash)],
        head: &DurableHead,
        checkpoint_note: &str,
        projection: &ProjectionWrite,
    ) -> Result<std::time::Duration, StoreError> {
        let mut batch = sled::Batch::default();
        Self::write_projection(&mut batch, projection)?;
        for entry in entries {
            batch.insert(&seq_key(LEAF_PREFIX, entry.seq), entry.leaf.as_slice());
            batch.insert(
                nonce_key(&entry.author, &entry.nonce),
                &entry.seq.to_be_bytes(),
            );
            for (seq, record) in &entry.observation_records {
                batch.insert(&seq_key(OBSERVATION_PREFIX, *seq), records::encode(record));
            }
            if entry.is_governance {
                batch.insert(&seq_key(GOVERNANCE_PREFIX, entry.seq), &[]);
            }
        }
        for (level, index, hash) in nodes {
            batch.insert(&node_key(*level, *index), hash);
        }
        batch.insert(HEAD_KEY, head.encode());
        batch.insert(CHECKPOINT_KEY, checkpoint_note.as_bytes());
        self.tree.apply_batch(batch)?;
        let started = std::time::Instant::now();
        self.make_durable()?;
        Ok(started.elapsed())
    }

    fn write_projection(
        batch: &mut sled::Batch,
        projection: &ProjectionWrite,
    ) -> Result<(), StoreError> {
        for (key, summary) in &projection.summaries {
            match summary {
                Some(summary) => batch.insert(
                    pair_key(key),
                    serde_json::to_vec(summary).map_err(std::io::Error::other)?,
                ),
                None => batch.remove(pair_key(key)),
            }
        }
        // In order: a later write of the same observation wins.
        for write in projection.window_writes {
            let key = window_key(&write.pair, write.seq);
            match &write.observation {
                Some(observation) => batch.insert(
                    key,
                    serde_json::to_vec(observation).map_err(std::io::Error::other)?,
                ),
                None => batch.remove(key),
            }
        }
        for change in projection.changes {
            batch.insert(
                &change_key(change.seq, change.index),
                serde_json::to_vec(change).map_err(std::io::Error::other)?,
            );
            batch.insert(pair_change_key(change), &[]);
        }
        batch.insert(PROJECTION_HEAD_KEY, projection.head.encode());
        Ok(())
    }

    /// The stored projection, if any: its head and every pair.
    pub fn load_projection(&self) -> Result<Option<StoredProjection>, StoreError> {
        let Some(head) = self.tree.get(PROJECTION_HEAD_KEY)? else {
            return Ok(None);
        };
        let head =
            ProjectionHead::decode(&head).ok_or_else(|| corrupt_record("projection head"))?;
        let mut pairs = std::collections::BTreeMap::new();
        for item in self.tree.scan_prefix([PAIR_PREFIX]) {
            let (key, value) = item?;
            let text =
                String::from_utf8(key[1..].to_vec()).map_err(|_| corrupt_record("pair key"))?;
            let (zone_id, commitment_id) = text
                .split_once('\0')
                .ok_or_else(|| corrupt_record("pair key"))?;
            let summary: PairSummary =
                serde_json::from_slice(&value).map_err(|_| corrupt_record("pair summary"))?;
            pairs.insert(
                (zone_id.to_string(), commitment_id.to_string()),
                PairState::stored(summary, Default::default()),
            );
        }
        for item in self.tree.scan_prefix([WINDOW_PREFIX]) {
            let (key, value) = item?;
            let malformed = || corrupt_record("window key");
            let seq_at = key.len().checked_sub(8).ok_or_else(malformed)?;
            let seq = u64::from_be_bytes(key[seq_at..].try_into().map_err(|_| malformed())?);
            let names =
                std::str::from_utf8(&key[1..seq_at.saturating_sub(1)]).map_err(|_| malformed())?;
            let (zone_id, commitment_id) = names.split_once('\0').ok_or_else(malformed)?;
            let observation: CountedObservation =
                serde_json::from_slice(&value).map_err(|_| corrupt_record("window entry"))?;
            pairs
                .get_mut(&(zone_id.to_string(), commitment_id.to_string()))
                .ok_or_else(|| corrupt_record("window entry of an unknown pair"))?
                .window
                .insert(seq, observation);
        }
        Ok(Some(StoredProjection { head, pairs }))
    }

    /// Status changes from (seq, index) on, in change-log order, read lazily.
    pub fn changes_from(
        &self,
        seq: u64,
        index: u32,
    ) -> impl Iterator<Item = Result<StatusChange, StoreError>> + Send + 'static {
        self.tree
            .range(change_key(seq, index)..)
            .take_while(|item| {
                item.as_ref()
                    .map_or(true, |(key, _)| key.first() == Some(&CHANGE_PREFIX))
            })
            .map(|item| {
                let (_, value) = item?;
                serde_json::from_slice(&value).map_err(|_| corrupt_record("status change"))
            })
    }

    /// Every status change of one pair, oldest first.
    pub fn pair_history(&self, key: &PairKey) -> Result<Vec<StatusChange>, StoreError> {
        let mut prefix = pair_key(key);
        prefix[0] = PAIR_CHANGE_PREFIX;
        prefix.push(0);
        let mut changes = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (key, _) = item?;
            let at = key.len() - 12;
            let seq = u64::from_be_bytes(key[at..at + 8].try_into().unwrap_or_default());
            let index = u32::from_be_bytes(key[at + 8..].try_into().unwrap_or_default());
            let change = self
                .tree
                .get(change_key(seq, index))?
                .ok_or_else(|| corrupt_record("change log entry"))?;
            changes.push(
                serde_json::from_slice(&change).map_err(|_| corrupt_record("status change"))?,
            );
        }
        Ok(changes)
    }

    /// Replaces the whole stored projection (after a rebuild) atomically.
    pub fn replace_projection(
        &self,
        head: ProjectionHead,
        pairs: &std::collections::BTreeMap<PairKey, PairState>,
        changes: &[StatusChange],
    ) -> Result<(), StoreError> {
        let window_writes: Vec<WindowWrite> = pairs
            .iter()
            .flat_map(|(key, pair)| {
                pair.window.iter().map(|(seq, observation)| WindowWrite {
                    pair: key.clone(),
                    seq: *seq,
                    observation: Some(observation.clone()),
                })
            })
            .collect();
        let mut batch = sled::Batch::default();
        for prefix in [
            PAIR_PREFIX,
            WINDOW_PREFIX,
            CHANGE_PREFIX,
            PAIR_CHANGE_PREFIX,
        ] {
            for item in self.tree.scan_prefix([prefix]) {
                batch.remove(item?.0);
            }
        }
        Self::write_projection(
            &mut batch,
            &ProjectionWrite {
                head,
                summaries: pairs
                    .iter()
                    .map(|(key, pair)| (key, Some(&pair.summary)))
                    .collect(),
                window_writes: &window_writes,
                changes,
            },
        )?;
        self.tree.apply_batch(batch)?;
        self.make_durable()
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
        for item in self.leaves(0, u64::MAX) {
            let (seq, bytes) = item?;
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
                match self.tree.get(node_key(level, index))? {
                    Some(stored) if stored.as_ref() == hash => {}
                    _ => {
                        return Err(corrupt(format!(
                        "stored tree node (level {level}, index {index}) does not match the leaves"
                    )))
                    }
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
        match self.tree.get(node_key(level, index))? {
            Some(bytes) => bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                seq: index << level,
                reason: format!("tree node (level {level}, index {index}) is not 32 bytes"),
            }),
            None => Err(StoreError::Corrupt {
                seq: index << level,
                reason: format!("tree node (level {level}, index {index}) is missing"),
            }),
        }
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

    fn observation(&self, seq: u64) -> Result<Option<ObservationRecord>, StoreError> {
        match self.tree.get(seq_key(OBSERVATION_PREFIX, seq))? {
            Some(bytes) => records::decode(&bytes)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt {
                    seq,
                    reason: "observation record is unreadable".into(),
                }),
            None => Ok(None),
        }
    }
}
