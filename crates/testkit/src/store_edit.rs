//! Editing a stored ledger below the store's API, the way an attacker with
//! the disk (or a damaged disk) would: leaves are changed, removed or added
//! inside their entry chunks (`ceasefire_node::storage::chunks`), and
//! nothing else is kept consistent. For the tests that tamper with stores
//! (`tests/audit.rs`, `tests/corruption.rs`).

use ceasefire_core::rules::ObservationRecord;
use ceasefire_node::storage::chunks::{self, Chunk, ChunkEntry};

/// One stored entry, owned.
struct Entry {
    seq: u64,
    leaf: Vec<u8>,
    record: Option<ObservationRecord>,
}

/// The chunk holding `seq`: its key and entries.
fn chunk_holding(tree: &sled::Tree, seq: u64) -> Option<(sled::IVec, Vec<Entry>)> {
    let (key, bytes) = tree
        .range(..=chunks::key(seq))
        .next_back()?
        .expect("sled failed");
    let first_seq = chunks::first_seq_of(&key)?;
    let chunk = Chunk::parse(first_seq, &bytes).expect("a stored chunk is damaged");
    if seq >= chunk.end_seq() {
        return None;
    }
    let entries = (first_seq..chunk.end_seq())
        .map(|seq| {
            let entry = chunk.entry(seq).expect("a stored entry is damaged");
            Entry {
                seq,
                leaf: entry.leaf.to_vec(),
                record: entry.record().expect("a stored record is damaged"),
            }
        })
        .collect();
    Some((key, entries))
}

/// Writes `entries` (consecutive seqs) as one chunk.
fn put_chunk(tree: &sled::Tree, entries: &[Entry]) {
    let Some(first) = entries.first() else {
        return;
    };
    let stored: Vec<ChunkEntry> = entries
        .iter()
        .map(|entry| ChunkEntry {
            leaf: &entry.leaf,
            record: entry.record.as_ref(),
        })
        .collect();
    tree.insert(chunks::key(first.seq), chunks::encode(&stored))
        .expect("sled failed");
}

/// The leaf bytes of entry `seq`.
pub fn leaf(tree: &sled::Tree, seq: u64) -> Vec<u8> {
    let (_, entries) =
        chunk_holding(tree, seq).unwrap_or_else(|| panic!("no entry {seq} in the store"));
    entries
        .into_iter()
        .find(|entry| entry.seq == seq)
        .map(|entry| entry.leaf)
        .unwrap_or_default()
}

/// Replaces the leaf bytes of entry `seq` (its stored tree nodes are kept),
/// or adds entry `seq` as a chunk of its own if the store does not hold it
/// (with no tree nodes: only readers of leaves are fooled).
pub fn set_leaf(tree: &sled::Tree, seq: u64, leaf: &[u8]) {
    match chunk_holding(tree, seq) {
        Some((_, mut entries)) => {
            for entry in entries.iter_mut().filter(|entry| entry.seq == seq) {
                entry.leaf = leaf.to_vec();
            }
            put_chunk(tree, &entries);
        }
        None => put_chunk(
            tree,
            &[Entry {
                seq,
                leaf: leaf.to_vec(),
                record: None,
            }],
        ),
    }
}

/// Removes entry `seq`, leaving the entries around it in chunks of their own.
pub fn remove_leaf(tree: &sled::Tree, seq: u64) {
    let (key, entries) =
        chunk_holding(tree, seq).unwrap_or_else(|| panic!("no entry {seq} in the store"));
    tree.remove(key).expect("sled failed");
    let (before, after): (Vec<Entry>, Vec<Entry>) = entries
        .into_iter()
        .filter(|entry| entry.seq != seq)
        .partition(|entry| entry.seq < seq);
    put_chunk(tree, &before);
    put_chunk(tree, &after);
}

/// Makes the store hold exactly `leaves` as entries `0..`, one chunk each
/// (the tree nodes are left as they were: only readers of leaves are fooled).
pub fn replace_all_leaves(tree: &sled::Tree, leaves: &[Vec<u8>]) {
    let keys: Vec<sled::IVec> = tree
        .scan_prefix([chunks::KEY_PREFIX])
        .map(|item| item.expect("sled failed").0)
        .collect();
    for key in keys {
        tree.remove(key).expect("sled failed");
    }
    for (seq, leaf) in leaves.iter().enumerate() {
        set_leaf(tree, seq as u64, leaf);
    }
}
