//! Replaying a log from entry 0: every check a verifier makes, in order.
//!
//! [`Replay::apply`] takes leaf bytes one at a time and checks the leaf
//! encoding, its seq, the hash chain, that `received_at` never goes down,
//! (optionally) every signature, nonce uniqueness, and the rules; then it
//! folds the entry into the governance state and the compliance projection.
//! The auditor runs it over a downloaded log; the server runs it to rebuild
//! its projection. Both therefore reach the same verdicts and digests.
//!
//! What it remembers grows with the log (nonces, observation records): that
//! is the price of checking everything from the bytes alone.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt;

use super::leaf::Leaf;
use super::merkle::{hash_leaf, Hash};
use super::projection::{Projection, StatusChange};
use super::rules::{
    decode_event, Accepted, EntryContext, EntryIndex, LedgerState, ObservationRecord,
};
use super::signing::verify_all;
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

/// The in-memory index a replay keeps of the log so far.
#[derive(Default)]
struct MemoryIndex {
    leaf_hashes: Vec<Hash>,
    observations: HashMap<u64, ObservationRecord>,
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

/// A log being replayed from entry 0.
#[derive(Default)]
pub struct Replay {
    /// The rules' state; `None` until the genesis is replayed.
    pub state: Option<LedgerState>,
    pub projection: Projection,
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

    /// Checks and folds the next entry. `signatures_checked` says the caller
    /// has already verified this leaf's signatures (e.g. in parallel);
    /// otherwise they are verified here.
    pub fn apply(
        &mut self,
        leaf_bytes: &[u8],
        signatures_checked: bool,
    ) -> Result<ReplayedEntry, ReplayError> {
        let seq = self.size();
        let fail = |reason: String| ReplayError { seq, reason };
        let leaf = Leaf::decode(leaf_bytes).map_err(|error| fail(error.to_string()))?;
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
        if !signatures_checked {
            verify_all(&leaf.payload, &leaf.signatures).map_err(|r| fail(r.message))?;
        }
        let event = decode_event(&leaf.payload).map_err(|r| fail(r.message))?;
        if !self
            .nonces
            .insert((event.author.clone(), event.nonce.clone()))
        {
            return Err(fail(format!(
                "author {:?} reuses a nonce of an earlier entry",
                event.author
            )));
        }
        let leaf_hash = hash_leaf(leaf_bytes);
        let context = EntryContext {
            seq,
            received_at_micros: leaf.received_at_micros,
            leaf_hash,
        };
        let signers: Vec<[u8; 32]> = leaf.signatures.iter().map(|s| s.public_key).collect();
        let accepted = match &mut self.state {
            None => {
                self.state = Some(
                    LedgerState::from_genesis(&event, &signers, &context)
                        .map_err(|r| fail(r.message))?,
                );
                None
            }
            Some(state) => {
                let Ok(verdict) = state.check(&event, &signers, &context, &self.index);
                let accepted = verdict.map_err(|r| fail(r.message))?;
                state.apply(&accepted);
                Some(accepted)
            }
        };
        let state = self.state.as_ref().expect("set above");
        match &accepted {
            Some(Accepted::Observation(record)) => {
                self.index.observations.insert(seq, record.clone());
            }
            Some(Accepted::Amendment {
                target_seq,
                corrected,
                ..
            }) => {
                self.index
                    .observations
                    .insert(*target_seq, corrected.clone());
            }
            _ => {}
        }
        let changes = self
            .projection
            .fold(&event, accepted.as_ref(), &context, state)
            .changes;
        self.index.leaf_hashes.push(leaf_hash);
        self.last_received_at_micros = leaf.received_at_micros;
        Ok(ReplayedEntry {
            seq,
            leaf_hash,
            leaf,
            event,
            accepted,
            changes,
        })
    }
}
