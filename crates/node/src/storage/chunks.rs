//! Entry chunks: consecutive log entries stored under one sled key.
//!
//! What an entry brings that never changes once it is durable lives in its
//! chunk: the leaf bytes (verbatim) and the observation record the rules
//! accepted for it, if any. (Its tree nodes are in `node_blocks.rs`.)
//!
//! **Why chunks.** sled 0.34 copies a whole tree node and logs a delta for
//! every key it inserts, so its cost is per key, not per byte: a layout of
//! one key per leaf and one per record spent most of the sequencer's time
//! inside sled. A batch now writes its entries as chunks of at most
//! [`CHUNK_TARGET_BYTES`] (or one entry, if larger); a chunk never spans two
//! batches, so under light load a chunk is a batch of a few entries. That
//! size keeps a sled leaf node (at most 17 keys) of typical chunks under
//! sled's 128 KiB inline limit; a node of many near-cap leaves goes to a
//! separate blob file, which `durability.rs` syncs like the rest.
//!
//! **Finding things.** A chunk's key is `e` and its first seq ([`key`]); the
//! chunk holding `seq` is the last chunk key at or before `key(seq)`.
//!
//! Value layout (integers big-endian):
//!
//! ```text
//! count u16 || count+1 offsets u32 (into the sections, relative to their start)
//! sections: per entry
//!   leaf_len u32 || leaf || record (the rest; empty if none)
//! ```

use ceasefire_core::rules::ObservationRecord;

use super::records;

/// Most leaf bytes in a chunk of more than one entry. About 15 typical
/// observations; 17 such chunks (sled's largest leaf node) stay under the
/// 128 KiB that sled 0.34 logs inline with its default 512 KiB segments.
pub const CHUNK_TARGET_BYTES: usize = 7 * 1024;

/// The byte that starts every chunk key.
pub const KEY_PREFIX: u8 = b'e';

/// The key of the chunk whose first entry is `first_seq`.
pub fn key(first_seq: u64) -> [u8; 9] {
    super::seq_key(KEY_PREFIX, first_seq)
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
    pub record: Option<&'a ObservationRecord>,
}

/// Encodes consecutive entries as one chunk.
pub fn encode(entries: &[ChunkEntry]) -> Vec<u8> {
    let sections: Vec<Vec<u8>> = entries
        .iter()
        .map(|entry| {
            let mut section = Vec::with_capacity(4 + entry.leaf.len() + 100);
            section.extend_from_slice(&(entry.leaf.len() as u32).to_be_bytes());
            section.extend_from_slice(entry.leaf);
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
    /// The record bytes, empty if none (decode with [`StoredEntry::record`]).
    record: &'a [u8],
}

impl StoredEntry<'_> {
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
        Ok(StoredEntry {
            leaf,
            record: &section[4 + leaf_len..],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_with_their_records() {
        let record = ObservationRecord {
            author: "mission".into(),
            leaf_hash: [7; 32],
            commitment_id: "ceasefire".into(),
            zone_id: "sector".into(),
            observed_until_micros: 1_700_000_000_000_000,
            retracted: false,
        };
        let leaves: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 10 + i]).collect();
        let entries: Vec<ChunkEntry> = (0..5)
            .map(|i| ChunkEntry {
                leaf: &leaves[i],
                record: (i % 2 == 0).then_some(&record),
            })
            .collect();
        let bytes = encode(&entries);
        let chunk = Chunk::parse(11, &bytes).unwrap();
        assert_eq!((chunk.len(), chunk.end_seq()), (5, 16));
        for (i, seq) in (11..16).enumerate() {
            let entry = chunk.entry(seq).unwrap();
            assert_eq!(entry.leaf, leaves[i].as_slice());
            assert_eq!(
                entry.record().unwrap(),
                (i % 2 == 0).then(|| record.clone())
            );
        }
        assert!(chunk.entry(10).is_err());
        assert!(chunk.entry(16).is_err());
        assert_eq!(first_seq_of(&key(11)), Some(11));
        assert_eq!(first_seq_of(b"h"), None);
    }

    #[test]
    fn damaged_chunks_are_refused_not_misread() {
        let leaf = vec![1u8; 40];
        let bytes = encode(&[ChunkEntry {
            leaf: &leaf,
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
