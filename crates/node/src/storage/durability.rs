//! Making a sled commit durable: flush, then fdatasync sled's files.
//!
//! sled 0.34's `flush()` writes its log with `sync_file_range`, which survives
//! a killed process but not a power cut (no metadata, no disk cache flush),
//! and it writes large values to `blobs/` files without syncing them at all.
//! A receipt promises the entry survives both, so after every flush we
//! `fdatasync` the log file, and `fsync` each blob file that appeared since
//! the last sync together with the blob directory that names it.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Syncs one sled database directory to stable storage.
pub struct Durability {
    /// sled's single log file, opened once: `fdatasync` needs only a handle.
    log_file: File,
    /// Where sled puts values too large for a log segment.
    blob_dir: PathBuf,
    /// Blob files already synced, so each is synced once.
    synced_blobs: BTreeSet<std::ffi::OsString>,
}

impl Durability {
    pub fn new(db_dir: &Path) -> io::Result<Durability> {
        let log_file = File::open(db_dir.join("db"))?;
        // The directory entries themselves (db, conf, blobs/) must be durable too.
        File::open(db_dir)?.sync_all()?;
        let mut durability = Durability {
            log_file,
            blob_dir: db_dir.join("blobs"),
            synced_blobs: BTreeSet::new(),
        };
        durability.sync_new_blobs()?;
        Ok(durability)
    }

    /// Flushes sled and syncs its files; returns once everything committed
    /// before the call is on stable storage.
    pub fn make_durable(&mut self, db: &sled::Db) -> io::Result<()> {
        db.flush().map_err(io::Error::other)?;
        self.log_file.sync_data()?;
        self.sync_new_blobs()
    }

    fn sync_new_blobs(&mut self) -> io::Result<()> {
        let entries = match std::fs::read_dir(&self.blob_dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        let mut present = BTreeSet::new();
        let mut synced_any = false;
        for entry in entries {
            let name = entry?.file_name();
            if !self.synced_blobs.contains(&name) {
                match File::open(self.blob_dir.join(&name)) {
                    Ok(file) => file.sync_all()?,
                    // sled removes blobs it has rewritten; a vanished one needs no sync.
                    Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(error),
                }
                synced_any = true;
            }
            present.insert(name);
        }
        if synced_any {
            File::open(&self.blob_dir)?.sync_all()?;
        }
        self.synced_blobs = present;
        Ok(())
    }
}
