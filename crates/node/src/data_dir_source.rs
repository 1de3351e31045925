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
//!
//! Damage is a verdict, not a failure to run: a store sled cannot recover,
//! a damaged head record or chunk is reported as [`OpenError::Damaged`] or
//! as a [`LogDefect`] (the auditor's exit 1, naming the file, entry or
//! slot); only a directory that cannot be read at all is
//! [`OpenError::CannotStart`] (exit 2).

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use ceasefire_audit::{Leaves, LogDefect, LogSource, SourceError};
use ceasefire_core::checkpoint::parse_unverified;
use ceasefire_core::merkle::Hash;

use crate::storage::{Store, StoreError, DB_DIR_NAME};

/// Why a data directory could not be opened for an audit, split the way
/// an auditor's exit code splits.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Verification cannot start: no such directory, no ledger in it, no
    /// permission to read it, a store of another version. Says which.
    #[error("{0}")]
    CannotStart(String),
    /// The store is there but damaged: a verdict on it, naming the file,
    /// entry or record slot at fault.
    #[error("{0}")]
    Damaged(String),
}

/// Why `path` cannot be read, a missing permission said in words.
fn unreadable(path: &Path, error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::PermissionDenied {
        format!("no permission to read {} ({error})", path.display())
    } else {
        format!("cannot read {}: {error}", path.display())
    }
}

/// Whether a store error is a verdict on the store (its bytes are wrong)
/// rather than a failure to read it.
fn is_damage(error: &StoreError) -> bool {
    match error {
        StoreError::Io(_) | StoreError::OtherLayout { .. } => false,
        StoreError::Sled(sled::Error::Io(_)) => false,
        StoreError::BadRecord { reason, .. } => !reason.starts_with("unreadable: "),
        _ => true,
    }
}

/// A store error met while reading: damage becomes the audit's finding
/// ([`LogDefect`], at its entry where the error names one), anything else
/// an error that stops the audit without a verdict.
fn read_error(error: StoreError) -> anyhow::Error {
    match error {
        StoreError::Corrupt { seq, reason } => LogDefect {
            seq: Some(seq),
            reason,
        }
        .into(),
        error if is_damage(&error) => LogDefect {
            seq: None,
            reason: error.to_string(),
        }
        .into(),
        error => error.into(),
    }
}

/// A data directory, read from a private snapshot (never written, and fine
/// while a server runs on it).
pub struct DataDirSource {
    data_dir: PathBuf,
    store: Store,
    /// Keeps the snapshot alive while the store is open.
    _snapshot: tempfile::TempDir,
}

impl DataDirSource {
    pub fn open(data_dir: &Path) -> Result<DataDirSource, OpenError> {
        let shown = data_dir.display();
        let cannot_start = |reason: String| OpenError::CannotStart(reason);
        match std::fs::metadata(data_dir) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => return Err(cannot_start(format!("{shown} is not a directory"))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(cannot_start(format!("no such directory: {shown}")))
            }
            Err(error) => return Err(cannot_start(unreadable(data_dir, &error))),
        }
        let sled_dir = data_dir.join(DB_DIR_NAME);
        match std::fs::read_dir(&sled_dir) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(cannot_start(format!(
                    "{shown} holds no ledger (no {DB_DIR_NAME} in it)"
                )))
            }
            Err(error) => return Err(cannot_start(unreadable(&sled_dir, &error))),
        }
        let (store, snapshot) = Store::open_snapshot(data_dir).map_err(|error| {
            if is_damage(&error) {
                OpenError::Damaged(format!("the store in {shown} is damaged: {error}"))
            } else {
                cannot_start(format!("cannot read the ledger in {shown}: {error}"))
            }
        })?;
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
        if let Some(witnessed) = self.store.witnessed_note().map_err(read_error)? {
            return Ok(witnessed);
        }
        self.store
            .checkpoint_note()
            .map_err(read_error)?
            .ok_or_else(|| anyhow!("{} holds no checkpoint", self.data_dir.display()))
    }

    /// The stored projection. It is written with the store's checkpoint, so
    /// it is as of that checkpoint's last entry (anything else is the
    /// audit's finding); a witnessed checkpoint that lags the head holds
    /// only a prefix of what it folds, so it is not compared then.
    fn served_projection(&mut self) -> anyhow::Result<Option<(u64, Hash)>> {
        let stored = self
            .store
            .load_projection()
            .map_err(read_error)?
            .and_then(|stored| {
                stored
                    .head
                    .as_of_seq
                    .map(|as_of_seq| (as_of_seq, stored.head.digest))
            });
        let Some(witnessed) = self.store.witnessed_note().map_err(read_error)? else {
            return Ok(stored);
        };
        // An unreadable note is the audit's finding, not this one's.
        let size = parse_unverified(&witnessed).map_or(0, |body| body.tree_size);
        Ok(stored.filter(|(as_of_seq, _)| *as_of_seq < size))
    }

    fn leaves(&mut self, size: u64) -> anyhow::Result<Leaves<'_>> {
        let mut expected = 0u64;
        Ok(Box::new(self.store.leaves(0, size).map(move |item| {
            let (seq, leaf) =
                item.map_err(|error| match read_error(error).downcast::<LogDefect>() {
                    Ok(defect) => SourceError::Defect(defect),
                    Err(error) => SourceError::Unreadable(error),
                })?;
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
