//! The auditor's source for a data directory: a private snapshot of the
//! store, opened read-only in a temporary directory (sled lets one process
//! open a store, and even opening writes, so the auditor never opens the
//! operator's files). It lives here, not in the audit crate, because it
//! needs the store; the audit itself only sees a [`LogSource`].
//!
//! The checkpoint it hands over is the latest witnessed one the store
//! recorded (operator signature and cosignatures), when there is one, else
//! the store's own. A witnessed checkpoint may lag the head: the audit then
//! covers its entries only, and the stored projection (as of the head) is
//! not compared, as it folds entries beyond it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use ceasefire_audit::{Leaves, LogDefect, LogSource, SourceError};
use ceasefire_core::checkpoint::parse_unverified;
use ceasefire_core::merkle::Hash;

use crate::storage::Store;

/// A data directory, read from a private snapshot (never written, and fine
/// while a server runs on it).
pub struct DataDirSource {
    data_dir: PathBuf,
    store: Store,
    /// Keeps the snapshot alive while the store is open.
    _snapshot: tempfile::TempDir,
}

impl DataDirSource {
    pub fn open(data_dir: &Path) -> anyhow::Result<DataDirSource> {
        let (store, snapshot) = Store::open_snapshot(data_dir)
            .with_context(|| format!("cannot read the ledger in {}", data_dir.display()))?;
        Ok(DataDirSource {
            data_dir: data_dir.to_path_buf(),
            store,
            _snapshot: snapshot,
        })
    }
}

impl LogSource for DataDirSource {
    fn describe(&self) -> String {
        format!("data directory {}", self.data_dir.display())
    }

    fn checkpoint_note(&mut self) -> anyhow::Result<String> {
        if let Some(witnessed) = self.store.witnessed_note()? {
            return Ok(witnessed);
        }
        self.store
            .checkpoint_note()?
            .ok_or_else(|| anyhow!("{} holds no checkpoint", self.data_dir.display()))
    }

    /// The stored projection. It is written with the store's checkpoint, so
    /// it is as of that checkpoint's last entry (anything else is the
    /// audit's finding); a witnessed checkpoint that lags the head holds
    /// only a prefix of what it folds, so it is not compared then.
    fn served_projection(&mut self) -> anyhow::Result<Option<(u64, Hash)>> {
        let stored = self.store.load_projection()?.and_then(|stored| {
            stored
                .head
                .as_of_seq
                .map(|as_of_seq| (as_of_seq, stored.head.digest))
        });
        let Some(witnessed) = self.store.witnessed_note()? else {
            return Ok(stored);
        };
        // An unreadable note is the audit's finding, not this one's.
        let size = parse_unverified(&witnessed).map_or(0, |body| body.tree_size);
        Ok(stored.filter(|(as_of_seq, _)| *as_of_seq < size))
    }

    fn leaves(&mut self, size: u64) -> anyhow::Result<Leaves<'_>> {
        let mut expected = 0u64;
        Ok(Box::new(self.store.leaves(0, size).map(move |item| {
            let (seq, leaf) = item.map_err(|error| SourceError::Unreadable(error.into()))?;
            if seq != expected {
                return Err(LogDefect {
                    seq: Some(expected),
                    reason: format!("entry {expected} is missing from the store"),
                }
                .into());
            }
            expected += 1;
            Ok(leaf)
        })))
    }

    /// The auditor rebuilds every root itself from the leaves; a data
    /// directory's stored nodes would prove nothing more.
    fn consistency_proof(&mut self, _: u64, _: u64) -> anyhow::Result<Option<Vec<Hash>>> {
        Ok(None)
    }

    fn inclusion_proof(&mut self, _: u64, _: u64) -> anyhow::Result<Option<Vec<Hash>>> {
        Ok(None)
    }
}
