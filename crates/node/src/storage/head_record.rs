//! The head record: a second, independent record of the last durable
//! checkpoint, kept outside sled, so that a store which silently went back
//! in time is refused instead of served.
//!
//! **Why.** sled 0.34 recovers on open by replaying the log messages written
//! after its last snapshot, and it takes the first message whose CRC fails
//! for the torn end of a write cut short by a crash: it stops there, zeroes
//! the rest of that segment, and opens the state from before that message,
//! without an error. That is right for a torn write, but a flipped bit in the
//! middle of the tail looks just the same, and sled then opens an *older*,
//! perfectly self-consistent store (`tests/corruption.rs` saw it drop from
//! one to 126 of 306 acknowledged entries this way; a bad blob that a tail
//! message points to does the same). Every check a store can make
//! of itself ([`super::Store::verify`], the governance replay, `verify
//! --data-dir`) passes on it; a server would serve a shorter log and then
//! write other entries at the acknowledged seqs, a fork of what its receipts
//! promised. Rolled back to empty, `serve --dev` would even write a new
//! genesis. Only a record kept outside sled can tell.
//!
//! **What.** The file [`RECORD_FILE_NAME`] in the data directory holds two
//! slots of [`SLOT_LEN`] bytes:
//!
//! ```text
//! "CFLHEAD1" || generation u64 || size u64 || root 32 || SHA-256 of the 56 bytes before
//! ```
//!
//! Each durable batch writes its (size, root) into the slot after the one
//! written last, after sled's sync and before any receipt is sent, and
//! `fdatasync`s the file: one small write and one sync per batch (the file
//! never changes length, so no metadata is synced). A write torn by a crash,
//! or a slot damaged later, fails its checksum, and the other slot, one batch
//! older, is used: it is still a size and root the log must extend. With
//! both slots unreadable the store is refused, naming the file.
//!
//! **The check**, on every open of a store (so by `serve`, `verify
//! --data-dir`, `export` and `rebuild-projections` alike): sled's head must
//! hold at least the recorded size, and the root of sled's first `size`
//! leaves, computed from the stored subtrees (O(log n) reads, see
//! `core::merkle::root`), must be the recorded root. sled may be ahead of the
//! record (killed between its sync and the record's: a whole batch nobody
//! was told of), never behind it or on another branch.
//!
//! A new store gets the file (synced) when it is first opened, before its
//! first batch; so a store that holds entries and has no file lost it, and
//! is refused like a damaged one. `rebuild-projections --adopt-head` takes
//! such a store's head as it is, for an operator who has audited the log;
//! private snapshots (auditors, exports) adopt it too, since their readers
//! check the log themselves. The record defends against damage and crashes,
//! not against a hand in the data directory. It is local: neither the log
//! format nor any wire format changes.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use ceasefire_core::merkle::Hash;

/// Name of the record, next to the sled directory in the data directory.
pub const RECORD_FILE_NAME: &str = "ledger.head";

const MAGIC: &[u8; 8] = b"CFLHEAD1";
/// Bytes of one slot: magic, generation, size, root, checksum.
pub const SLOT_LEN: usize = 8 + 8 + 8 + 32 + 32;
const BODY_LEN: usize = SLOT_LEN - 32;

/// A durable log size and its root, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub size: u64,
    pub root: Hash,
}

/// Why the record cannot be read.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// Neither slot holds a record whose checksum holds.
    Unreadable,
}

/// The open record file, written by the store's single writer.
pub struct HeadRecord {
    file: File,
    path: PathBuf,
    /// Generation of the slot written last; the next write goes to the other.
    generation: u64,
}

fn encode_slot(generation: u64, recorded: &Recorded) -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    slot[..8].copy_from_slice(MAGIC);
    slot[8..16].copy_from_slice(&generation.to_be_bytes());
    slot[16..24].copy_from_slice(&recorded.size.to_be_bytes());
    slot[24..56].copy_from_slice(&recorded.root);
    let checksum: [u8; 32] = Sha256::digest(&slot[..BODY_LEN]).into();
    slot[BODY_LEN..].copy_from_slice(&checksum);
    slot
}

/// A slot's generation and record, if its magic and checksum hold.
fn decode_slot(slot: &[u8]) -> Option<(u64, Recorded)> {
    if slot.len() != SLOT_LEN || &slot[..8] != MAGIC {
        return None;
    }
    let checksum: [u8; 32] = Sha256::digest(&slot[..BODY_LEN]).into();
    if slot[BODY_LEN..] != checksum {
        return None;
    }
    Some((
        u64::from_be_bytes(slot[8..16].try_into().ok()?),
        Recorded {
            size: u64::from_be_bytes(slot[16..24].try_into().ok()?),
            root: slot[24..56].try_into().ok()?,
        },
    ))
}

impl HeadRecord {
    /// Reads the record in `data_dir`: `Ok(None)` when there is no file,
    /// else the newest slot that reads.
    pub fn read(data_dir: &Path) -> Result<Option<(HeadRecord, Recorded)>, ReadError> {
        let path = data_dir.join(RECORD_FILE_NAME);
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(ReadError::Io(error)),
        };
        let mut bytes = Vec::with_capacity(2 * SLOT_LEN);
        file.read_to_end(&mut bytes).map_err(ReadError::Io)?;
        let newest = bytes
            .chunks(SLOT_LEN)
            .take(2)
            .filter_map(decode_slot)
            .max_by_key(|(generation, _)| *generation);
        match newest {
            Some((generation, recorded)) => Ok(Some((
                HeadRecord {
                    file,
                    path,
                    generation,
                },
                recorded,
            ))),
            None => Err(ReadError::Unreadable),
        }
    }

    /// Creates the record in `data_dir` for `recorded` (replacing any
    /// file there) and makes the file and its directory entry durable.
    pub fn create(data_dir: &Path, recorded: &Recorded) -> io::Result<HeadRecord> {
        let path = data_dir.join(RECORD_FILE_NAME);
        // Written whole under a temporary name, then renamed: a crash leaves
        // either no record or a complete one.
        let temporary = data_dir.join(format!("{RECORD_FILE_NAME}.new"));
        let mut bytes = [0u8; 2 * SLOT_LEN];
        bytes[..SLOT_LEN].copy_from_slice(&encode_slot(0, recorded));
        {
            let mut file = File::create(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &path)?;
        File::open(data_dir)?.sync_all()?;
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        Ok(HeadRecord {
            file,
            path,
            generation: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a new durable head in the older slot and syncs it. Returns
    /// once the record is on stable storage.
    pub fn write(&mut self, recorded: &Recorded) -> io::Result<()> {
        let generation = self.generation + 1;
        let offset = (generation % 2) * SLOT_LEN as u64;
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.write_all(&encode_slot(generation, recorded))?;
        self.file.sync_data()?;
        self.generation = generation;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(size: u64) -> Recorded {
        Recorded {
            size,
            root: [size as u8; 32],
        }
    }

    #[test]
    fn the_newest_slot_wins_and_a_damaged_one_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        assert!(HeadRecord::read(dir.path()).unwrap().is_none());
        let mut record = HeadRecord::create(dir.path(), &recorded(0)).unwrap();
        for size in 1..=5 {
            record.write(&recorded(size)).unwrap();
        }
        drop(record);
        let (_, read) = HeadRecord::read(dir.path()).unwrap().unwrap();
        assert_eq!(read, recorded(5));

        // Generation 5 sits in slot 1; damage it and slot 0 (size 4) answers.
        let path = dir.path().join(RECORD_FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[SLOT_LEN + 20] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let (mut record, read) = HeadRecord::read(dir.path()).unwrap().unwrap();
        assert_eq!(read, recorded(4));
        // The next write goes to the damaged slot, and wins again.
        record.write(&recorded(6)).unwrap();
        drop(record);
        let (_, read) = HeadRecord::read(dir.path()).unwrap().unwrap();
        assert_eq!(read, recorded(6));

        // Both slots damaged: unreadable, never "no record".
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 1;
        bytes[SLOT_LEN + 3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            HeadRecord::read(dir.path()),
            Err(ReadError::Unreadable)
        ));
        // A truncated file too.
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert!(matches!(
            HeadRecord::read(dir.path()),
            Err(ReadError::Unreadable)
        ));
    }
}
