//! The cursor file of `watch --cursor-file FILE`: where a durable consumer
//! of compliance changes resumes after a restart.
//!
//! ```json
//! {"type": "ceasefire-ledger-watch-cursor",
//!  "ledger": {"agreementId": "...", "origin": "...", "operatorPublicKey": "<base64>"},
//!  "nextSeq": 42, "nextIndex": 1}
//! ```
//!
//! `(nextSeq, nextIndex)` is the Subscribe cursor of the first change not
//! yet printed (docs/spec.md: the stream starts at that change and includes
//! it). The ledger is named as its genesis names it, so a cursor is never
//! taken to another ledger, whose change log it says nothing about.
//!
//! Invariants: the file is only ever replaced whole
//! ([`durable_file::replace`]), so a crash leaves the previous cursor or the
//! new one; and it never names a position past a change not yet printed
//! (`watch` writes it after printing), so a restart repeats at most the
//! changes printed since the last write and never skips one.

use std::path::Path;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::durable_file;
use crate::outbox::LedgerRecord;

/// The `type` of a cursor file.
pub const WATCH_CURSOR_TYPE: &str = "ceasefire-ledger-watch-cursor";

/// What a cursor file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchCursor {
    #[serde(rename = "type")]
    kind: String,
    /// The ledger whose change log the position is in.
    pub ledger: LedgerRecord,
    /// The entry of the first change not yet printed.
    pub next_seq: u64,
    /// Its place among that entry's changes.
    pub next_index: u32,
}

impl WatchCursor {
    pub fn new(ledger: LedgerRecord, next_seq: u64, next_index: u32) -> WatchCursor {
        WatchCursor {
            kind: WATCH_CURSOR_TYPE.into(),
            ledger,
            next_seq,
            next_index,
        }
    }

    /// The cursor in `path`, or `None` when there is no such file yet (a
    /// new consumer). Anything else that is not a whole cursor file is an
    /// error naming the file; the file is not touched.
    pub fn load(path: &Path) -> anyhow::Result<Option<WatchCursor>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => bail!("cannot read the cursor file {}: {error}", path.display()),
        };
        let not_a_cursor = |why: String| {
            anyhow!(
                "{} is not a watch cursor file ({why}); it was left as it is: \
                 repair it, or remove it to start a new cursor",
                path.display()
            )
        };
        let cursor: WatchCursor =
            serde_json::from_slice(&bytes).map_err(|error| not_a_cursor(error.to_string()))?;
        if cursor.kind != WATCH_CURSOR_TYPE {
            return Err(not_a_cursor(format!(
                "its type is {:?}, not {WATCH_CURSOR_TYPE:?}",
                cursor.kind
            )));
        }
        Ok(Some(cursor))
    }

    /// Replaces the file with this cursor, durably (synced before it returns).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)? + "\n";
        durable_file::replace(path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> LedgerRecord {
        LedgerRecord {
            agreement_id: "agreement".into(),
            origin: "ledger.example/agreement".into(),
            operator_public_key: "AAAA".into(),
        }
    }

    #[test]
    fn a_saved_cursor_loads_back_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor.json");
        assert_eq!(WatchCursor::load(&path).unwrap(), None);
        let cursor = WatchCursor::new(ledger(), 42, 3);
        cursor.save(&path).unwrap();
        assert_eq!(WatchCursor::load(&path).unwrap(), Some(cursor));
    }

    #[test]
    fn anything_else_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor.json");
        let whole = serde_json::to_string(&WatchCursor::new(ledger(), 42, 3)).unwrap();
        let other_type = whole.replace(WATCH_CURSOR_TYPE, "ceasefire-ledger-outbox-entry");
        for bad in ["", "{", "not json", &whole[..whole.len() / 2], &other_type] {
            std::fs::write(&path, bad).unwrap();
            let error = WatchCursor::load(&path).unwrap_err().to_string();
            assert!(error.contains("is not a watch cursor file"), "{error}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);
        }
    }
}
