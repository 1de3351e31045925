//! The witness's durable state: for each log, the latest checkpoint it
//! cosigned, as the note the log signed.
//!
//! Layout of the data directory:
//! - `witness.lock`: held (an exclusive `flock`) by the one process that
//!   owns the store, and holding its process id for the error another one
//!   prints;
//! - `logs/<hex SHA-256 of the origin>`: one file per log, the note exactly
//!   as received. Hashing the origin gives every origin a safe, fixed-length
//!   file name whatever characters it holds.
//!
//! Invariants:
//! - A record is on stable storage before [`Store::record`] returns: the
//!   note is written to a temporary file, synced, renamed over the log's
//!   file, and the directory is synced. A crash leaves the old note or the
//!   new one, never a mix (a leftover temporary file is removed on open).
//! - Two processes never share a store: [`Store::open`] takes the lock or
//!   refuses, and the lock lasts as long as the [`Store`].
//! - What is served was verified: on open every stored note must verify
//!   with a key configured for its origin, and sit in its origin's file;
//!   otherwise the store is refused, naming the file.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use ceasefire_core::checkpoint::{parse_unverified, CheckpointError};
use ceasefire_core::witness::{TreeHead, TrustedLog};
use sha2::{Digest, Sha256};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "witness.lock";

/// The directory of per-log files in the data directory.
pub const LOGS_DIR: &str = "logs";

/// Suffix of a note being written, before its rename.
const TEMP_SUFFIX: &str = ".tmp";

/// Largest stored file read back: a stored note is one the witness accepted,
/// so it is at most the note limit.
const MAX_STORED_BYTES: u64 = ceasefire_core::checkpoint::MAX_NOTE_BYTES as u64;

/// Why the store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the witness data directory {} is in use by another witness process{} \
         (it holds {}); stop it, or give this one another --data-dir",
        dir.display(),
        holder.as_ref().map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
        lock.display()
    )]
    Locked {
        dir: PathBuf,
        lock: PathBuf,
        holder: Option<String>,
    },
    /// `error` is in the message, not a `source`, so the one line `main`
    /// prints says it once.
    #[error("{}: {action}: {error}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        error: std::io::Error,
    },
    #[error("{}: not a stored checkpoint: {reason}", path.display())]
    NotACheckpoint {
        path: PathBuf,
        reason: CheckpointError,
    },
    #[error(
        "{}: holds a checkpoint of {origin:?}, whose file is {expected}: the file was \
         moved or edited",
        path.display()
    )]
    Misplaced {
        path: PathBuf,
        origin: String,
        expected: String,
    },
    #[error(
        "{}: the stored checkpoint of {origin:?} does not verify with the key(s) \
         configured for it ({reason}); was the log's key changed? keep the old key \
         in the configuration beside the new one",
        path.display()
    )]
    DoesNotVerify {
        path: PathBuf,
        origin: String,
        reason: CheckpointError,
    },
    #[error(
        "{}: unexpected file in the witness store (only one file per log, named by \
         the hex SHA-256 of its origin, belongs there)",
        path.display()
    )]
    Unexpected { path: PathBuf },
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |error| StoreError::Io {
        path,
        action,
        error,
    }
}

/// The file name of `origin`'s record: the hex SHA-256 of the origin.
pub fn file_name(origin: &str) -> String {
    hex::encode(Sha256::digest(origin.as_bytes()))
}

/// A log's record as found on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The latest tree head the witness cosigned.
    pub head: TreeHead,
    /// The note it cosigned, as the log signed it.
    pub note: String,
}

/// The open store: the lock, and where the records go.
#[derive(Debug)]
pub struct Store {
    /// The data directory, for messages.
    dir: PathBuf,
    /// `dir/logs`, synced after every rename in it.
    logs_dir: PathBuf,
    /// The locked lock file; closing it (dropping the store) releases the
    /// lock, so it lives exactly as long as the store.
    _lock: File,
}

impl Store {
    /// Opens (creating if missing) the store in `dir`, takes its lock, and
    /// reads back the record of every log in `logs`, each verified with that
    /// log's keys. A record of a log no longer configured is left on disk
    /// untouched (it applies again if the log is configured again).
    pub fn open(
        dir: &Path,
        logs: &[TrustedLog],
    ) -> Result<(Store, HashMap<String, Recorded>), StoreError> {
        fs::create_dir_all(dir).map_err(io_error(dir, "cannot create the data directory"))?;
        let lock = take_lock(dir)?;
        let logs_dir = dir.join(LOGS_DIR);
        if !logs_dir.is_dir() {
            fs::create_dir(&logs_dir).map_err(io_error(&logs_dir, "cannot create"))?;
            sync_dir(dir)?;
        }
        let store = Store {
            dir: dir.to_path_buf(),
            logs_dir,
            _lock: lock,
        };
        let by_origin: HashMap<&str, &TrustedLog> =
            logs.iter().map(|log| (log.origin(), log)).collect();
        let mut recorded = HashMap::new();
        let entries = fs::read_dir(&store.logs_dir)
            .map_err(io_error(&store.logs_dir, "cannot list the directory"))?;
        for entry in entries {
            let entry = entry.map_err(io_error(&store.logs_dir, "cannot list the directory"))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TEMP_SUFFIX) {
                // A write that never reached its rename: never answered.
                fs::remove_file(&path).map_err(io_error(&path, "cannot remove"))?;
                continue;
            }
            if name.len() != 64 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(StoreError::Unexpected { path });
            }
            let note = read_note(&path)?;
            let claimed = parse_unverified(&note).map_err(|reason| StoreError::NotACheckpoint {
                path: path.clone(),
                reason,
            })?;
            let expected = file_name(&claimed.origin);
            if expected != name {
                return Err(StoreError::Misplaced {
                    path,
                    origin: claimed.origin,
                    expected,
                });
            }
            let Some(log) = by_origin.get(claimed.origin.as_str()) else {
                tracing::warn!(
                    origin = %claimed.origin,
                    file = %path.display(),
                    "a stored checkpoint of a log this witness no longer witnesses; left as it is"
                );
                continue;
            };
            let (checkpoint, _) = log
                .open(&note)
                .map_err(|reason| StoreError::DoesNotVerify {
                    path: path.clone(),
                    origin: claimed.origin.clone(),
                    reason,
                })?;
            recorded.insert(
                claimed.origin,
                Recorded {
                    head: TreeHead::from(&checkpoint),
                    note,
                },
            );
        }
        sync_dir(&store.logs_dir)?;
        Ok((store, recorded))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Durably records `note` as the latest checkpoint cosigned for
    /// `origin`: write a temporary file, sync it, rename it over the log's
    /// file, sync the directory. Blocking; the caller holds the log's lock.
    pub fn record(&self, origin: &str, note: &str) -> Result<(), StoreError> {
        let name = file_name(origin);
        let path = self.logs_dir.join(&name);
        let temp = self.logs_dir.join(format!("{name}{TEMP_SUFFIX}"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(io_error(&temp, "cannot create"))?;
        file.write_all(note.as_bytes())
            .map_err(io_error(&temp, "cannot write"))?;
        file.sync_all().map_err(io_error(&temp, "cannot sync"))?;
        drop(file);
        fs::rename(&temp, &path).map_err(io_error(&path, "cannot rename the new record into"))?;
        sync_dir(&self.logs_dir)
    }
}

/// Takes the exclusive lock on `dir/witness.lock` and writes our process id
/// in it, or says who holds it.
fn take_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error(&path, "cannot open the lock file"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(StoreError::Locked {
                dir: dir.to_path_buf(),
                lock: path,
                holder: (!holder.is_empty()).then(|| holder.to_owned()),
            });
        }
        Err(fs::TryLockError::Error(error)) => {
            return Err(StoreError::Io {
                path,
                action: "cannot lock the lock file",
                error,
            })
        }
    }
    // The pid is for the error message of a second process only; the lock
    // itself is the flock, released by the kernel when this process dies.
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(io_error(&path, "cannot write the lock file"))?;
    Ok(file)
}

fn read_note(path: &Path) -> Result<String, StoreError> {
    let file = File::open(path).map_err(io_error(path, "cannot open"))?;
    let mut bytes = Vec::new();
    file.take(MAX_STORED_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path, "cannot read"))?;
    if bytes.len() as u64 > MAX_STORED_BYTES {
        return Err(StoreError::NotACheckpoint {
            path: path.to_path_buf(),
            reason: CheckpointError::NoteTooLarge {
                len: bytes.len(),
                max: MAX_STORED_BYTES as usize,
            },
        });
    }
    String::from_utf8(bytes).map_err(|_| StoreError::NotACheckpoint {
        path: path.to_path_buf(),
        reason: CheckpointError::MalformedBody("the file is not UTF-8"),
    })
}

/// Syncs a directory, so that a rename or a creation in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(dir, "cannot sync the directory"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ceasefire_core::checkpoint::{sign_checkpoint, CheckpointBody, NoteSigner};
    use ed25519_dalek::SigningKey;

    fn signer(origin: &str, seed: u8) -> NoteSigner {
        NoteSigner::new(origin, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    fn note(signer: &NoteSigner, size: u64) -> String {
        let body = CheckpointBody {
            origin: signer.name().to_owned(),
            tree_size: size,
            root_hash: [size as u8; 32],
        };
        sign_checkpoint(&body, signer).unwrap()
    }

    #[test]
    fn records_survive_reopening_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let a = signer("a.example/log", 1);
        let b = signer("b.example/log", 2);
        let logs = [
            TrustedLog::from_key(a.verifier()),
            TrustedLog::from_key(b.verifier()),
        ];
        let (store, recorded) = Store::open(dir.path(), &logs).unwrap();
        assert!(recorded.is_empty());
        store.record("a.example/log", &note(&a, 3)).unwrap();
        store.record("a.example/log", &note(&a, 5)).unwrap();
        store.record("b.example/log", &note(&b, 1)).unwrap();
        drop(store);
        let (_store, recorded) = Store::open(dir.path(), &logs).unwrap();
        assert_eq!(recorded["a.example/log"].head.size, 5);
        assert_eq!(recorded["a.example/log"].note, note(&a, 5));
        assert_eq!(recorded["b.example/log"].head.size, 1);
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_lives() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &[]).unwrap();
        let error = Store::open(dir.path(), &[]).unwrap_err();
        assert!(matches!(error, StoreError::Locked { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("in use by another witness process"),
            "{message}"
        );
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(store);
        Store::open(dir.path(), &[]).unwrap();
    }

    #[test]
    fn a_record_that_does_not_verify_is_refused_naming_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = signer("a.example/log", 1);
        let logs = [TrustedLog::from_key(a.verifier())];
        let (store, _) = Store::open(dir.path(), &logs).unwrap();
        store.record("a.example/log", &note(&a, 3)).unwrap();
        drop(store);
        let path = dir.path().join(LOGS_DIR).join(file_name("a.example/log"));
        let stored = fs::read_to_string(&path).unwrap();
        fs::write(&path, stored.replacen("\n3\n", "\n4\n", 1)).unwrap();
        let error = Store::open(dir.path(), &logs).unwrap_err();
        assert!(matches!(error, StoreError::DoesNotVerify { .. }), "{error}");
        assert!(error.to_string().contains(&path.display().to_string()));
        // The log's key changed: the old record no longer verifies either.
        fs::write(&path, &stored).unwrap();
        let rotated = [TrustedLog::from_key(signer("a.example/log", 9).verifier())];
        assert!(matches!(
            Store::open(dir.path(), &rotated),
            Err(StoreError::DoesNotVerify { .. })
        ));
        // With both keys configured it opens.
        let both = [TrustedLog::new(
            "a.example/log",
            vec![signer("a.example/log", 9).verifier(), a.verifier()],
        )
        .unwrap()];
        assert_eq!(
            Store::open(dir.path(), &both).unwrap().1["a.example/log"]
                .head
                .size,
            3
        );
    }

    #[test]
    fn misplaced_damaged_and_stray_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = signer("a.example/log", 1);
        let logs = [TrustedLog::from_key(a.verifier())];
        drop(Store::open(dir.path(), &logs).unwrap());
        let logs_dir = dir.path().join(LOGS_DIR);
        let wrong = logs_dir.join(file_name("other"));
        fs::write(&wrong, note(&a, 2)).unwrap();
        assert!(matches!(
            Store::open(dir.path(), &logs),
            Err(StoreError::Misplaced { .. })
        ));
        fs::write(&wrong, "garbage").unwrap();
        assert!(matches!(
            Store::open(dir.path(), &logs),
            Err(StoreError::NotACheckpoint { .. })
        ));
        fs::remove_file(&wrong).unwrap();
        fs::write(logs_dir.join("notes.txt"), "x").unwrap();
        assert!(matches!(
            Store::open(dir.path(), &logs),
            Err(StoreError::Unexpected { .. })
        ));
        fs::remove_file(logs_dir.join("notes.txt")).unwrap();
        // A leftover temporary file (a crash before the rename) is removed.
        let temp = logs_dir.join(format!("{}{TEMP_SUFFIX}", file_name("a.example/log")));
        fs::write(&temp, "half a note").unwrap();
        let (_, recorded) = Store::open(dir.path(), &logs).unwrap();
        assert!(recorded.is_empty());
        assert!(!temp.exists());
    }

    #[test]
    fn a_record_of_a_log_no_longer_witnessed_is_kept_but_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = signer("a.example/log", 1);
        let (store, _) = Store::open(dir.path(), &[TrustedLog::from_key(a.verifier())]).unwrap();
        store.record("a.example/log", &note(&a, 3)).unwrap();
        drop(store);
        let (_, recorded) = Store::open(dir.path(), &[]).unwrap();
        assert!(recorded.is_empty());
        assert!(dir
            .path()
            .join(LOGS_DIR)
            .join(file_name("a.example/log"))
            .exists());
    }
}
