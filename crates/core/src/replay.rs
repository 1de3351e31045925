//! Replaying a log from entry 0: every check a verifier makes, in order.
//!
//! [`Replay::apply`] takes leaf bytes one at a time and checks the leaf
//! encoding, its seq, the hash chain, that `received_at` never goes down,
//! (optionally) every signature and nonce uniqueness (any reuse is a
//! defect here); then it takes the entry through [`step`], the sequencer's
//! own step: the rules (entry 0 must found the log as a genesis), the
//! governance state, the observation index and the compliance projection.
//! The auditor runs it over a downloaded log; the server runs it to rebuild
//! its projection. Both therefore reach the same verdicts and digests.
//!
//! The work that needs no earlier entry (decoding the leaf and the event,
//! hashing, signatures) is [`PreparedEntry`]: a caller may prepare many
//! entries in parallel, ahead of the replay, and hand them to
//! [`Replay::apply_prepared`] in order. The checks are the same and come in
//! the same order either way, so the first failure named is too.
//!
//! What it remembers grows with the log (nonces, observation records, the
//! observations its windows count): that
//! is the price of checking everything from the bytes alone.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt;

use super::leaf::Leaf;
use super::merkle::{hash_leaf, Hash};
use super::projection::{MemoryWindows, Projection, StatusChange};
use super::rules::{decode_event, Accepted, EntryIndex, LedgerState, ObservationRecord};
use super::signing::verify_all;
use super::step::{step, Entry, Fold, Stepped};
use crate::proto::Event;

/// Why a log does not verify, at which entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayError {
    pub seq: u64,
    pub reason: String,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {}: {}", self.seq, self.reason)
    }
}

impl std::error::Error for ReplayError {}

/// One entry, replayed.
pub struct ReplayedEntry {
    pub seq: u64,
    pub leaf_hash: Hash,
    pub leaf: Leaf,
    pub event: Event,
    /// `None` for the genesis.
    pub accepted: Option<Accepted>,
    pub changes: Vec<StatusChange>,
}

/// The in-memory index a replay keeps of the log so far (and any caller of
/// the step that holds a log in memory: tests, the fuzz fixture).
#[derive(Clone, Default)]
pub struct MemoryIndex {
    /// Leaf hash of every entry so far, by seq.
    pub leaf_hashes: Vec<Hash>,
    /// The observation records the step returned, by the seq they describe.
    pub observations: HashMap<u64, ObservationRecord>,
}

impl MemoryIndex {
    /// Records an accepted entry: its leaf hash, as the next seq's, and the
    /// observation record its step returned (an observation's own, an
    /// amendment's target's as amended), under the seq it describes.
    pub fn record<F>(&mut self, leaf_hash: Hash, stepped: &Stepped<F>) {
        if let Some((seq, record)) = &stepped.record {
            self.observations.insert(*seq, record.clone());
        }
        self.leaf_hashes.push(leaf_hash);
    }
}

impl EntryIndex for MemoryIndex {
    type Error = Infallible;

    fn leaf_hash(&self, seq: u64) -> Result<Option<Hash>, Infallible> {
        Ok(self.leaf_hashes.get(seq as usize).copied())
    }

    fn observation(&self, seq: u64) -> Result<Option<ObservationRecord>, Infallible> {
        Ok(self.observations.get(&seq).cloned())
    }
}

/// One leaf with everything computed that does not depend on earlier
/// entries. Its failures are kept, not reported: [`Replay::apply_prepared`]
/// reports them in the order `apply` checks them.
pub struct PreparedEntry {
    leaf_hash: Hash,
    /// The leaf, or why it does not decode.
    decoded: Result<DecodedLeaf, String>,
}

struct DecodedLeaf {
    leaf: Leaf,
    /// `Ok` as well when the caller has already checked them.
    signatures: Result<(), String>,
    event: Result<Event, String>,
}

impl PreparedEntry {
    /// Decodes and hashes `leaf_bytes`, and verifies its signatures unless
    /// `signatures_checked` says the caller has.
    pub fn new(leaf_bytes: &[u8], signatures_checked: bool) -> PreparedEntry {
        let decoded = Leaf::decode(leaf_bytes)
            .map_err(|error| error.to_string())
            .map(|leaf| DecodedLeaf {
                signatures: if signatures_checked {
                    Ok(())
                } else {
                    verify_all(&leaf.payload, &leaf.signatures).map_err(|r| r.message)
                },
                event: decode_event(&leaf.payload).map_err(|r| r.message),
                leaf,
            });
        PreparedEntry {
            leaf_hash: hash_leaf(leaf_bytes),
            decoded,
        }
    }
}

/// A log being replayed from entry 0.
#[derive(Default)]
pub struct Replay {
    /// The rules' state; `None` until the genesis is replayed.
    pub state: Option<LedgerState>,
    pub projection: Projection,
    /// The observations the projection's windows count.
    pub windows: MemoryWindows,
    index: MemoryIndex,
    nonces: HashSet<(String, Vec<u8>)>,
    last_received_at_micros: i64,
}

impl Replay {
    pub fn new() -> Replay {
        Replay::default()
    }

    /// Entries replayed so far.
    pub fn size(&self) -> u64 {
        self.index.leaf_hashes.len() as u64
    }

    /// Leaf hashes of every entry replayed, in order.
    pub fn leaf_hashes(&self) -> &[Hash] {
        &self.index.leaf_hashes
    }

    /// What the replay has indexed of the log so far.
    pub fn index(&self) -> &MemoryIndex {
        &self.index
    }

    /// Checks and folds the next entry. `signatures_checked` says the caller
    /// has already verified this leaf's signatures; otherwise they are
    /// verified here.
    pub fn apply(
        &mut self,
        leaf_bytes: &[u8],
        signatures_checked: bool,
    ) -> Result<ReplayedEntry, ReplayError> {
        self.apply_prepared(PreparedEntry::new(leaf_bytes, signatures_checked))
    }

    /// Checks and folds the next entry, prepared in advance.
    pub fn apply_prepared(
        &mut self,
        prepared: PreparedEntry,
    ) -> Result<ReplayedEntry, ReplayError> {
        let seq = self.size();
        let fail = |reason: String| ReplayError { seq, reason };
        let PreparedEntry { leaf_hash, decoded } = prepared;
        let DecodedLeaf {
            leaf,
            signatures,
            event,
        } = decoded.map_err(fail)?;
        if leaf.seq != seq {
            return Err(fail(format!("leaf says it is entry {}", leaf.seq)));
        }
        let expected_prev = self.index.leaf_hashes.last().copied().unwrap_or([0; 32]);
        if leaf.prev_leaf_hash != expected_prev {
            return Err(fail(
                "prev_leaf_hash is not the previous entry's leaf hash".into(),
            ));
        }
        if seq > 0 && leaf.received_at_micros < self.last_received_at_micros {
            return Err(fail("received_at goes backwards".into()));
        }
        signatures.map_err(fail)?;
        let event = event.map_err(fail)?;
        if !self
            .nonces
            .insert((event.author.clone(), event.nonce.clone()))
        {
            return Err(fail(format!(
                "author {:?} reuses a nonce of an earlier entry",
                event.author
            )));
        }
        let mut state = self.state.take().map(Cow::Owned);
        let Ok(verdict) = step(
            &mut state,
            Entry {
                seq,
                leaf: &leaf,
                leaf_hash,
                event: &event,
            },
            &self.index,
            Fold::Into {
                projection: &mut self.projection,
                windows: &mut self.windows,
            },
            |_| Ok(()),
        );
        // A refused entry left the state as it was.
        self.state = state.map(Cow::into_owned);
        let stepped = verdict.map_err(|r| fail(r.message))?;
        self.index.record(leaf_hash, &stepped);
        self.last_received_at_micros = leaf.received_at_micros;
        Ok(ReplayedEntry {
            seq,
            leaf_hash,
            leaf,
            event,
            accepted: stepped.accepted,
            changes: stepped.folded.changes,
        })
    }
}
