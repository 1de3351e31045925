//! Entry chunks: consecutive log entries stored under one sled key.
//!
//! Everything about an entry that never changes once it is durable lives
//! in its chunk: the leaf bytes (verbatim), the hashes of the complete
//! subtrees its append completed (its own leaf hash first, then one per
//! trailing one bit of its seq: exactly what `Frontier::push` returns), and
//! the observation record the rules accepted for it, if any.
//!
//! **Why chunks.** sled 0.34 copies a whole tree node and logs a delta for
//! every key it inserts, so its cost is per key, not per byte: a layout of
//! one key per leaf, one per tree node and one per record spent most of the
//! sequencer's time inside sled. A batch now writes its entries as a few
//! chunks of about [`CHUNK_TARGET_BYTES`]. That size keeps a sled leaf node
//! (at most 17 keys) under sled's 128 KiB inline limit, so chunks are never
//! moved to separate blob files.
//!
//! **Finding things.** A chunk's key is `e` and its first seq ([`key`]); the
//! chunk holding `seq` is the last chunk key at or before `key(seq)`. Subtree `(level, index)` was
//! completed by entry `((index + 1) << level) - 1`, and is that entry's
//! `level`-th hash.
//!
//! Value layout (integers big-endian):
//!
//! ```text
//! count u16 || count+1 offsets u32 (into the sections, relative to their start)
//! sections: per entry
//!   leaf_len u32 || leaf || (1 + trailing_ones(seq)) x hash 32 || record (rest; empty if none)
//! ```

use crate::core::merkle::Hash;
use crate::core::rules::ObservationRecord;

use super::records;

/// Bytes after which a batch starts a new chunk. About 15 typical
/// observations; 17 chunks (sled's largest leaf node) stay under the
/// 128 KiB that sled 0.34 logs inline with its default 512 KiB segments.
pub const CHUNK_TARGET_BYTES: usize = 7 * 1024;

/// The byte that starts every chunk key.
pub const KEY_PREFIX: u8 = b'e';

/// The key of the chunk whose first entry is `first_seq`.
pub fn key(first_seq: u64) -> [u8; 9] {
    let mut key = [KEY_PREFIX; 9];
    key[1..].copy_from_slice(&first_seq.to_be_bytes());
    key
}

/// The first seq of a chunk key; `None` for a key that is not a chunk's.
pub fn first_seq_of(key: &[u8]) -> Option<u64> {
    match key {
        [KEY_PREFIX, seq @ ..] => Some(u64::from_be_bytes(seq.try_into().ok()?)),
        _ => None,
    }
}

/// One entry, as a chunk stores it.
pub struct ChunkEntry<'a> {
    pub leaf: &'a [u8],
    /// Subtrees completed by this entry, level 0 (its leaf hash) first.
    pub completed: &'a [Hash],
    pub record: Option<&'a ObservationRecord>,
}

/// Subtrees entry `seq` completes: itself and one per trailing one bit.
pub fn completed_count(seq: u64) -> usize {
    1 + seq.trailing_ones() as usize
}

/// Encodes entries `first_seq..` as one chunk.
pub fn encode(entries: &[ChunkEntry]) -> Vec<u8> {
    let sections: Vec<Vec<u8>> = entries
        .iter()
        .map(|entry| {
            let mut section = Vec::with_capacity(4 + entry.leaf.len() + 32 * entry.completed.len());
            section.extend_from_slice(&(entry.leaf.len() as u32).to_be_bytes());
            section.extend_from_slice(entry.leaf);
            for hash in entry.completed {
                section.extend_from_slice(hash);
            }
            if let Some(record) = entry.record {
                section.extend_from_slice(&records::encode(record));
            }
            section
        })
        .collect();
    let mut out = Vec::with_capacity(
        2 + 4 * (sections.len() + 1) + sections.iter().map(Vec::len).sum::<usize>(),
    );
    out.extend_from_slice(&(sections.len() as u16).to_be_bytes());
    let mut offset = 0u32;
    out.extend_from_slice(&offset.to_be_bytes());
    for section in &sections {
        offset += section.len() as u32;
        out.extend_from_slice(&offset.to_be_bytes());
    }
    for section in sections {
        out.extend_from_slice(&section);
    }
    out
}

/// Why a stored chunk cannot be read: it is damaged.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// One entry read from a chunk, borrowing its bytes.
pub struct StoredEntry<'a> {
    pub leaf: &'a [u8],
    /// The completed subtrees' hashes, 32 bytes each, level 0 first.
    hashes: &'a [u8],
    /// The record bytes, empty if none (decode with [`StoredEntry::record`]).
    record: &'a [u8],
}

impl StoredEntry<'_> {
    /// The hash of the subtree at `level` this entry completed, if it did.
    pub fn completed(&self, level: u8) -> Option<Hash> {
        let at = 32 * usize::from(level);
        self.hashes.get(at..at + 32)?.try_into().ok()
    }

    /// Every subtree it completed, level 0 first.
    pub fn all_completed(&self) -> impl Iterator<Item = Hash> + '_ {
        self.hashes
            .chunks_exact(32)
            .map(|hash| hash.try_into().unwrap_or([0; 32]))
    }

    pub fn record(&self) -> Result<Option<ObservationRecord>, Malformed> {
        if self.record.is_empty() {
            return Ok(None);
        }
        records::decode(self.record)
            .map(Some)
            .ok_or(Malformed("an observation record is unreadable"))
    }
}

/// A stored chunk whose first entry is `first_seq`.
pub struct Chunk<'a> {
    first_seq: u64,
    offsets: &'a [u8],
    sections: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// Reads the header of a chunk; entries are decoded on access.
    pub fn parse(first_seq: u64, bytes: &'a [u8]) -> Result<Chunk<'a>, Malformed> {
        let count = bytes
            .get(..2)
            .map(|count| u16::from_be_bytes([count[0], count[1]]) as usize)
            .ok_or(Malformed("the chunk is empty"))?;
        if count == 0 {
            return Err(Malformed("the chunk holds no entry"));
        }
        let offsets = bytes
            .get(2..2 + 4 * (count + 1))
            .ok_or(Malformed("the chunk's offsets are cut short"))?;
        let sections = &bytes[2 + 4 * (count + 1)..];
        let chunk = Chunk {
            first_seq,
            offsets,
            sections,
        };
        if chunk.offset(0) != 0 || chunk.offset(count) != sections.len() {
            return Err(Malformed("the chunk's offsets do not span its entries"));
        }
        Ok(chunk)
    }

    /// Entries it holds (at least one: [`Chunk::parse`] refuses none).
    pub fn len(&self) -> usize {
        self.offsets.len() / 4 - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One past the last seq it holds.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.len() as u64
    }

    fn offset(&self, position: usize) -> usize {
        let at = 4 * position;
        u32::from_be_bytes([
            self.offsets[at],
            self.offsets[at + 1],
            self.offsets[at + 2],
            self.offsets[at + 3],
        ]) as usize
    }

    /// Entry `seq`, which must lie in `first_seq..end_seq`.
    pub fn entry(&self, seq: u64) -> Result<StoredEntry<'a>, Malformed> {
        let position = seq
            .checked_sub(self.first_seq)
            .filter(|&position| position < self.len() as u64)
            .ok_or(Malformed("the chunk does not hold the entry"))? as usize;
        let section = self
            .sections
            .get(self.offset(position)..self.offset(position + 1))
            .ok_or(Malformed("an entry's offsets are out of order"))?;
        let leaf_len = section
            .get(..4)
            .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
            .ok_or(Malformed("an entry is cut short"))?;
        let leaf = section
            .get(4..4 + leaf_len)
            .ok_or(Malformed("a leaf is cut short"))?;
        let hashes_end = 4 + leaf_len + 32 * completed_count(seq);
        let hashes = section
            .get(4 + leaf_len..hashes_end)
            .ok_or(Malformed("an entry's subtree hashes are cut short"))?;
        Ok(StoredEntry {
            leaf,
            hashes,
            record: &section[hashes_end..],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(seq: u64) -> Vec<Hash> {
        (0..completed_count(seq))
            .map(|level| [seq as u8 ^ level as u8; 32])
            .collect()
    }

    #[test]
    fn entries_round_trip_with_their_hashes_and_records() {
        let record = ObservationRecord {
            author: "mission".into(),
            leaf_hash: [7; 32],
            commitment_id: "ceasefire".into(),
            zone_id: "sector".into(),
            retracted: false,
        };
        let leaves: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 10 + i]).collect();
        let completed: Vec<Vec<Hash>> = (11..16).map(hashes).collect();
        let entries: Vec<ChunkEntry> = (0..5)
            .map(|i| ChunkEntry {
                leaf: &leaves[i],
                completed: &completed[i],
                record: (i % 2 == 0).then_some(&record),
            })
            .collect();
        let bytes = encode(&entries);
        let chunk = Chunk::parse(11, &bytes).unwrap();
        assert_eq!((chunk.len(), chunk.end_seq()), (5, 16));
        for (i, seq) in (11..16).enumerate() {
            let entry = chunk.entry(seq).unwrap();
            assert_eq!(entry.leaf, leaves[i].as_slice());
            assert_eq!(entry.all_completed().collect::<Vec<_>>(), completed[i]);
            assert_eq!(entry.completed(0), Some(completed[i][0]));
            assert_eq!(entry.completed(completed[i].len() as u8), None);
            assert_eq!(
                entry.record().unwrap(),
                (i % 2 == 0).then(|| record.clone())
            );
        }
        assert!(chunk.entry(10).is_err());
        assert!(chunk.entry(16).is_err());
    }

    #[test]
    fn damaged_chunks_are_refused_not_misread() {
        let leaf = vec![1u8; 40];
        let completed = hashes(3);
        let bytes = encode(&[ChunkEntry {
            leaf: &leaf,
            completed: &completed,
            record: None,
        }]);
        assert!(Chunk::parse(3, &bytes).unwrap().entry(3).is_ok());
        // Cut short anywhere: refused at parse or at the entry.
        for cut in 0..bytes.len() {
            let refused = match Chunk::parse(3, &bytes[..cut]) {
                Err(_) => true,
                Ok(chunk) => chunk.entry(3).is_err(),
            };
            assert!(refused, "a chunk cut at {cut} bytes was read");
        }
        // A leaf length pointing past the section.
        let mut long = bytes.clone();
        long[2 + 8] = 0xff;
        assert!(Chunk::parse(3, &long).unwrap().entry(3).is_err());
        // Trailing bytes that are not a record.
        let mut trailing = bytes.clone();
        trailing.push(9);
        let last = trailing.len() - 2 - 8;
        trailing[2 + 4..2 + 8].copy_from_slice(&(last as u32).to_be_bytes());
        let chunk = Chunk::parse(3, &trailing).unwrap();
        assert!(chunk.entry(3).unwrap().record().is_err());
    }
}
