//! The outbox of `submit --outbox DIR`: signed events kept on disk until the
//! ledger has answered them, so a report survives a dropped link or a crash
//! of the submitting machine and is resent as the very same bytes.
//!
//! ```text
//! DIR/ledger.json               the ledger the outbox belongs to (from its genesis)
//! DIR/pending/NAME.json         signed, not yet answered: sent again by the next run
//! DIR/accepted/NAME.json        the ledger's receipt came back (its seq inside)
//! DIR/refused/NAME.json         the ledger refused it (the reason inside)
//! ```
//!
//! `NAME` is `NNNNNN-KEY`: a counter, so events are sent in the order they
//! were added, and the start of the entry's [`report key`](bare_report_key),
//! so a file added twice adds nothing the second time.
//!
//! Invariants:
//! - An event is signed once, when it is added, and only those bytes are
//!   ever sent: the ledger answers an identical resubmission with the
//!   original entry, so a resend never counts twice.
//! - Every write is durable before it counts: a sibling `.tmp` file is
//!   written and fsynced, renamed into place, and the directory fsynced. An
//!   event is in `pending/` before it is first sent.
//! - A state change writes the new file first and removes the old one
//!   after. A crash between leaves both; [`Outbox::open`] keeps the answered
//!   one, so an answer once recorded is never lost (and an event recorded
//!   as pending is at worst sent once more, which is harmless).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::signed_file::SignedEventFile;
use ceasefire_grpc::proto::SignedEvent;

/// The `type` of an entry file.
pub const OUTBOX_ENTRY_TYPE: &str = "ceasefire-ledger-outbox-entry";

/// Hex digits of the report key in an entry's file name: enough to tell
/// entries apart by eye; the full key is inside the file.
const NAME_KEY_DIGITS: usize = 16;

/// Where an entry stands with the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Pending,
    Accepted,
    Refused,
}

impl State {
    const ALL: [State; 3] = [State::Pending, State::Accepted, State::Refused];

    /// Its directory under the outbox, and the word reports use.
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Accepted => "accepted",
            State::Refused => "refused",
        }
    }
}

/// What an entry file holds.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    #[serde(rename = "type")]
    kind: String,
    /// The report key, in full (hex): what makes two additions one entry.
    pub key: String,
    /// Where the event came from ("FILE event N"), for people.
    pub source: String,
    /// The signed event as a signed-event file: the exact bytes sent.
    pub signed_event: serde_json::Value,
    /// Whether `submit` derived the event's nonce: then a `NONCE_REUSED`
    /// naming an entry by the same author and nonce is this report, sent
    /// before the outbox kept it.
    #[serde(default)]
    pub nonce_derived: bool,
    /// Accepted: the entry's seq in the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Accepted: the checked receipt, as proto3 JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<serde_json::Value>,
    /// Refused: the ledger's reason, as one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

impl Record {
    /// The signed event to send.
    pub fn signed(&self) -> anyhow::Result<SignedEvent> {
        Ok(SignedEventFile::from_json(self.signed_event.clone())?.signed)
    }
}

/// One entry: its file name (without `.json`), state and record.
#[derive(Clone)]
pub struct Entry {
    pub name: String,
    pub state: State,
    pub record: Record,
}

/// The ledger an outbox belongs to, as its genesis names it: events in it
/// are signed for this agreement, and receipts are checked with this key.
/// A watch cursor (`crate::watch_cursor`) names its ledger the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerRecord {
    pub agreement_id: String,
    pub origin: String,
    /// The operator's public key, base64.
    pub operator_public_key: String,
}

/// An outbox directory, opened (and its leftovers of a crash cleaned up).
pub struct Outbox {
    dir: PathBuf,
}

/// The report key of a bare event: its author and nonce. `submit` derives
/// the nonce from what the author wrote, so the same report added again
/// (with another `createdAt` filled in) finds its first entry.
pub fn bare_report_key(author: &str, nonce: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"ceasefire-ledger/outbox-key/bare\0");
    hash.update((author.len() as u64).to_be_bytes());
    hash.update(author.as_bytes());
    hash.update(nonce);
    hex::encode(hash.finalize())
}

/// The report key of a signed-event file: its exact bytes (the same file
/// with one more signature is another submission).
pub fn signed_report_key(signed: &SignedEvent) -> String {
    let mut hash = Sha256::new();
    hash.update(b"ceasefire-ledger/outbox-key/signed\0");
    hash.update((signed.payload.len() as u64).to_be_bytes());
    hash.update(&signed.payload);
    let mut signatures: Vec<_> = signed.signatures.iter().collect();
    signatures.sort_by(|a, b| a.public_key.cmp(&b.public_key));
    for signature in signatures {
        hash.update(&signature.public_key);
        hash.update(&signature.signature);
    }
    hex::encode(hash.finalize())
}

impl Outbox {
    /// Opens `dir` as an outbox, creating it if needed. After a crash:
    /// removes half-written `.tmp` files, and a pending copy of an entry
    /// that was answered.
    pub fn open(dir: &Path) -> anyhow::Result<Outbox> {
        if dir.exists() && !dir.is_dir() {
            bail!("outbox {} is not a directory", dir.display());
        }
        for state in State::ALL {
            let sub = dir.join(state.name());
            fs::create_dir_all(&sub)
                .map_err(|error| anyhow!("cannot create the outbox {}: {error}", sub.display()))?;
        }
        let outbox = Outbox {
            dir: dir.to_path_buf(),
        };
        // A probe proves the outbox writable now, before anything is signed.
        outbox
            .write_durably(&outbox.dir.join(".probe"), b"")
            .map_err(|error| anyhow!("cannot write in the outbox {}: {error:#}", dir.display()))?;
        fs::remove_file(outbox.dir.join(".probe")).ok();
        for state in State::ALL {
            for file in outbox.files(state)? {
                if file.extension().is_some_and(|extension| extension == "tmp") {
                    fs::remove_file(&file).ok();
                }
            }
        }
        for name in outbox.names(State::Pending)? {
            let answered = [State::Accepted, State::Refused]
                .into_iter()
                .any(|state| outbox.path(state, &name).exists());
            if answered {
                fs::remove_file(outbox.path(State::Pending, &name))
                    .with_context(|| format!("cannot clean up {}", dir.display()))?;
            }
        }
        Ok(outbox)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every entry, in the order they were added.
    pub fn entries(&self) -> anyhow::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for state in State::ALL {
            for name in self.names(state)? {
                let path = self.path(state, &name);
                let text = fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let record: Record = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not an outbox entry", path.display()))?;
                if record.kind != OUTBOX_ENTRY_TYPE {
                    bail!("{} is not a {OUTBOX_ENTRY_TYPE}", path.display());
                }
                entries.push(Entry {
                    name,
                    state,
                    record,
                });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// The entry added with `key`, if any.
    pub fn find(&self, key: &str) -> anyhow::Result<Option<Entry>> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|entry| entry.record.key == key))
    }

    /// Adds `file` as a pending entry, durably, after every other entry.
    pub fn add(
        &self,
        key: String,
        source: String,
        file: &SignedEventFile,
        nonce_derived: bool,
    ) -> anyhow::Result<Entry> {
        let next = self
            .entries()?
            .iter()
            .filter_map(|entry| entry.name.split('-').next()?.parse::<u64>().ok())
            .max()
            .map_or(1, |last| last + 1);
        let name = format!("{next:06}-{}", &key[..NAME_KEY_DIGITS]);
        let record = Record {
            kind: OUTBOX_ENTRY_TYPE.into(),
            key,
            source,
            signed_event: file.to_json()?,
            nonce_derived,
            seq: None,
            receipt: None,
            refusal: None,
        };
        self.write_record(State::Pending, &name, &record)?;
        Ok(Entry {
            name,
            state: State::Pending,
            record,
        })
    }

    /// Moves `entry` to `state` with `record` (the answer in it): the new
    /// file is durable before the old one goes.
    pub fn settle(&self, entry: &mut Entry, state: State, record: Record) -> anyhow::Result<()> {
        self.write_record(state, &entry.name, &record)?;
        if entry.state != state {
            let old = self.path(entry.state, &entry.name);
            match fs::remove_file(&old) {
                // Another run on the same outbox settled it first (both
                // sent the same bytes, so both got the same answer).
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                result => result.with_context(|| format!("cannot remove {}", old.display()))?,
            }
            sync_dir(old.parent().expect("an entry file has a directory"))?;
        }
        entry.state = state;
        entry.record = record;
        Ok(())
    }

    /// The ledger this outbox belongs to, once a run has read its genesis.
    pub fn ledger(&self) -> anyhow::Result<Option<LedgerRecord>> {
        let path = self.dir.join("ledger.json");
        if !path.exists() {
            return Ok(None);
        }
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{} is not an outbox ledger record", path.display())
        })?))
    }

    pub fn save_ledger(&self, ledger: &LedgerRecord) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(ledger)? + "\n";
        self.write_durably(&self.dir.join("ledger.json"), text.as_bytes())
    }

    fn write_record(&self, state: State, name: &str, record: &Record) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(record)? + "\n";
        self.write_durably(&self.path(state, name), text.as_bytes())
    }

    /// Writes `path` so that after a crash it holds either its old content
    /// or all of `bytes`: a fsynced sibling renamed over it, the directory
    /// fsynced.
    fn write_durably(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        let temporary = path.with_extension("tmp");
        let mut file = File::create(&temporary)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))?;
        sync_dir(path.parent().expect("an outbox file has a directory"))
    }

    fn path(&self, state: State, name: &str) -> PathBuf {
        self.dir.join(state.name()).join(format!("{name}.json"))
    }

    fn files(&self, state: State) -> anyhow::Result<Vec<PathBuf>> {
        let sub = self.dir.join(state.name());
        let listing =
            fs::read_dir(&sub).with_context(|| format!("cannot read {}", sub.display()))?;
        let mut files = Vec::new();
        for item in listing {
            files.push(
                item.with_context(|| format!("cannot read {}", sub.display()))?
                    .path(),
            );
        }
        Ok(files)
    }

    /// The entry names in `state`'s directory.
    fn names(&self, state: State) -> anyhow::Result<Vec<String>> {
        Ok(self
            .files(state)?
            .iter()
            .filter(|file| {
                file.extension()
                    .is_some_and(|extension| extension == "json")
            })
            .filter_map(|file| Some(file.file_stem()?.to_str()?.to_string()))
            .collect())
    }
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ceasefire_grpc::proto::Event;

    fn sample(narrative_nonce: u8) -> SignedEventFile {
        SignedEventFile::new(Event {
            agreement_id: "agreement".into(),
            author: "party-a".into(),
            nonce: vec![narrative_nonce; 16],
            ..Event::default()
        })
    }

    #[test]
    fn entries_keep_their_order_and_an_answer_survives_a_crash_mid_move() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let first = outbox
            .add(
                bare_report_key("party-a", &[1; 16]),
                "a".into(),
                &sample(1),
                true,
            )
            .unwrap();
        let mut second = outbox
            .add(
                bare_report_key("party-a", &[2; 16]),
                "b".into(),
                &sample(2),
                true,
            )
            .unwrap();
        assert!(first.name < second.name);
        let mut record = second.record.clone();
        record.seq = Some(7);
        // A crash after the accepted file was written, before the pending
        // one was removed: both are on disk.
        outbox
            .write_record(State::Accepted, &second.name, &record)
            .unwrap();
        let reopened = Outbox::open(dir.path()).unwrap();
        let entries = reopened.entries().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].state, State::Accepted);
        assert_eq!(entries[1].record.seq, Some(7));
        let found = reopened.find(&second.record.key).unwrap().unwrap();
        assert_eq!(found.name, second.name);
        second.state = State::Accepted;
        reopened
            .settle(&mut second, State::Accepted, record)
            .unwrap();
    }

    #[test]
    fn a_file_is_not_an_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let error = Outbox::open(&file).err().unwrap().to_string();
        assert!(error.contains("is not a directory"), "{error}");
    }
}
