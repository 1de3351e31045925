//! Compliance projection: a pure fold of the log into a status per
//! (zone, commitment) pair.
//!
//! Folding entries 0..=s always gives the same state, on any machine: the
//! only clock is the log's own (the latest `received_at` folded), iteration
//! is over ordered maps, and nothing reads the environment. The server folds
//! each entry as it commits it; an auditor folds the log it downloaded; both
//! call [`Projection::fold`] and compare [`Projection::digest`].
//!
//! Per pair, counting observations in the commitment's window (by their
//! `observed_until`, against log time), not retracted, and not made before
//! the commitment's `effective_from`:
//! UNOBSERVED (none), OBSTRUCTED (only ACCESS_DENIED), COMPLIANT (no
//! violation), VIOLATION_REPORTED (violations from fewer distinct parties
//! than the quorum), VIOLATION_CONFIRMED (from at least the quorum). The
//! `disputed` flag is set while a counted violation is disputed.
//!
//! The observations themselves live in [`Windows`] (the server's store, an
//! auditor's memory): what this type holds is O(pairs), whatever the
//! windows hold, which keeps a server's memory flat as its log grows.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::merkle::Hash;
use super::rules::{Accepted, EntryContext, GovernanceChange, LedgerState, ObservationRecord};
pub use super::windows::{CountedObservation, MemoryWindows, WindowKey, Windows};
use crate::proto::{
    event::Body, AmendmentKind, Category, ComplianceStatus, Event, Finding, Observation,
};

/// Domain tag of the digest encoding; versions it.
const DIGEST_DOMAIN: &[u8] = b"ceasefire-ledger:projection:v1\n";

/// A pair's place: (zone id, commitment id).
pub type PairKey = (String, String);

/// What is served about a pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairSummary {
    /// Stored as its number, like every enum here (crate::enum_number).
    #[serde(with = "crate::enum_number")]
    pub status: ComplianceStatus,
    pub disputed: bool,
    pub observations: u32,
    pub violations: u32,
    /// (category, count), ascending by category.
    #[serde(with = "crate::enum_number::counts")]
    pub counts_by_category: Vec<(Category, u32)>,
    pub distinct_reporters: u32,
    pub distinct_violation_reporters: u32,
    pub last_violation_at_micros: Option<i64>,
    pub last_observation_at_micros: Option<i64>,
    pub updated_seq: u64,
}

impl PairSummary {
    /// A pair with nothing in its window, as last changed by entry `seq`.
    pub fn unobserved(seq: u64) -> PairSummary {
        PairSummary {
            status: ComplianceStatus::Unobserved,
            disputed: false,
            observations: 0,
            violations: 0,
            counts_by_category: Vec::new(),
            distinct_reporters: 0,
            distinct_violation_reporters: 0,
            last_violation_at_micros: None,
            last_observation_at_micros: None,
            updated_seq: seq,
        }
    }
}

/// A pair: its summary, and what its next summary is computed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairState {
    pub summary: PairSummary,
    /// Running tallies of the window, so a summary costs O(log) per entry,
    /// not a scan of the window; derived, rebuilt by [`Projection::restore`].
    stats: WindowStats,
    /// When the window's first observation leaves it; `None` while empty.
    next_expiry: Option<i64>,
}

impl PairState {
    fn new(summary: PairSummary) -> PairState {
        PairState {
            summary,
            stats: WindowStats::default(),
            next_expiry: None,
        }
    }
}

/// Tallies of a window: what its summary is computed from. Everything here
/// is bounded by categories and parties, not by the window's size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct WindowStats {
    observations: u32,
    violations: u32,
    access_denied: u32,
    disputed_violations: u32,
    /// By category: `Category`'s order is its numbers' (a test checks).
    categories: BTreeMap<Category, u32>,
    reporters: BTreeMap<String, u32>,
    violation_reporters: BTreeMap<String, u32>,
    /// The latest `observed_until` counted, of any finding and of violations.
    latest_observation: Option<i64>,
    latest_violation: Option<i64>,
}

fn tally<K: Ord>(counts: &mut BTreeMap<K, u32>, key: K, add: bool) {
    if add {
        *counts.entry(key).or_default() += 1;
    } else if let std::collections::btree_map::Entry::Occupied(mut entry) = counts.entry(key) {
        *entry.get_mut() -= 1;
        if *entry.get() == 0 {
            entry.remove();
        }
    }
}

impl WindowStats {
    /// Adds (`add`) or removes one observation. A removal leaves the latest
    /// times as they were: [`Projection::take_out`] finds the new ones.
    fn count(&mut self, observation: &CountedObservation, observed_until: i64, add: bool) {
        let step = |value: &mut u32| {
            *value = if add {
                *value + 1
            } else {
                value.saturating_sub(1)
            };
        };
        step(&mut self.observations);
        tally(&mut self.categories, observation.category, add);
        tally(&mut self.reporters, observation.reporter.clone(), add);
        if add {
            self.latest_observation = self.latest_observation.max(Some(observed_until));
        }
        match observation.finding {
            Finding::Violation => {
                step(&mut self.violations);
                if observation.disputed {
                    step(&mut self.disputed_violations);
                }
                tally(
                    &mut self.violation_reporters,
                    observation.reporter.clone(),
                    add,
                );
                if add {
                    self.latest_violation = self.latest_violation.max(Some(observed_until));
                }
            }
            Finding::AccessDenied => step(&mut self.access_denied),
            // The rules refuse an unspecified finding: never counted.
            Finding::Compliance | Finding::Unspecified => {}
        }
    }

    /// The summary of the window, `updated_seq` carried over (the caller bumps it).
    fn summary(&self, quorum: u32, updated_seq: u64) -> PairSummary {
        let distinct_violation_reporters = self.violation_reporters.len() as u32;
        let status = if self.observations == 0 {
            ComplianceStatus::Unobserved
        } else if self.violations > 0 {
            if distinct_violation_reporters >= quorum {
                ComplianceStatus::ViolationConfirmed
            } else {
                ComplianceStatus::ViolationReported
            }
        } else if self.access_denied == self.observations {
            ComplianceStatus::Obstructed
        } else {
            ComplianceStatus::Compliant
        };
        PairSummary {
            status,
            disputed: self.disputed_violations > 0,
            observations: self.observations,
            violations: self.violations,
            counts_by_category: self
                .categories
                .iter()
                .map(|(category, count)| (*category, *count))
                .collect(),
            distinct_reporters: self.reporters.len() as u32,
            distinct_violation_reporters,
            last_violation_at_micros: self.latest_violation,
            last_observation_at_micros: self.latest_observation,
            updated_seq,
        }
    }
}

/// One status change of the read model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub seq: u64,
    /// Position among the changes caused by `seq` (pairs in key order).
    pub index: u32,
    pub zone_id: String,
    pub commitment_id: String,
    /// `Unspecified` when the pair is new.
    #[serde(with = "crate::enum_number")]
    pub old_status: ComplianceStatus,
    /// `Unspecified` when the pair is dropped.
    #[serde(with = "crate::enum_number")]
    pub new_status: ComplianceStatus,
    pub old_disputed: bool,
    pub new_disputed: bool,
    pub pair: PairSummary,
}

/// What folding one entry did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    /// Status changes, in pair order (their `index`).
    pub changes: Vec<StatusChange>,
    /// Every pair whose summary may have changed, or that was dropped (a
    /// store rewrites or deletes exactly these summaries).
    pub touched: BTreeSet<PairKey>,
}

/// The whole projection after some prefix of the log, but for the windows'
/// contents (see [`Windows`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Projection {
    /// The last entry folded; `None` before any.
    pub as_of_seq: Option<u64>,
    /// Log time: the latest `received_at` folded.
    pub log_time_micros: i64,
    pub pairs: BTreeMap<PairKey, PairState>,
    /// Each non-empty window's next expiry: (expires_at, pair).
    expiries: BTreeSet<(i64, PairKey)>,
}

/// Severity for rollups: a zone's status is its most severe pair's.
pub fn severity(status: ComplianceStatus) -> u8 {
    match status {
        ComplianceStatus::ViolationConfirmed => 5,
        ComplianceStatus::ViolationReported => 4,
        ComplianceStatus::Obstructed => 3,
        ComplianceStatus::Unobserved => 2,
        ComplianceStatus::Compliant => 1,
        ComplianceStatus::Unspecified => 0,
    }
}

/// Where an observation with this record is counted.
fn window_key(seq: u64, record: &ObservationRecord) -> WindowKey {
    WindowKey {
        pair: (record.zone_id.clone(), record.commitment_id.clone()),
        observed_until_micros: record.observed_until_micros,
        seq,
    }
}

/// The window length of a pair's commitment.
fn pair_window(rules: &LedgerState, pair: &PairKey) -> i64 {
    rules
        .commitments
        .get(&pair.1)
        .map_or(0, |commitment| window_micros(commitment.window_seconds))
}

impl Projection {
    pub fn new() -> Projection {
        Projection::default()
    }

    /// A projection as stored: its position, every pair's summary, and the
    /// windows that hold its observations. The rest (tallies, expiries) is
    /// derived from the windows, with the window lengths of `rules`.
    pub fn restore<W: Windows>(
        as_of_seq: Option<u64>,
        log_time_micros: i64,
        summaries: BTreeMap<PairKey, PairSummary>,
        rules: Option<&LedgerState>,
        windows: &W,
    ) -> Result<Projection, W::Error> {
        let mut projection = Projection {
            as_of_seq,
            log_time_micros,
            ..Projection::default()
        };
        for (key, summary) in summaries {
            let mut pair = PairState::new(summary);
            windows.for_each_in(&key, &mut |window_key, observation| {
                pair.stats
                    .count(observation, window_key.observed_until_micros, true)
            })?;
            projection.pairs.insert(key.clone(), pair);
            if let Some(rules) = rules {
                projection.reschedule(&key, rules, windows)?;
            }
        }
        Ok(projection)
    }

    /// Whether every pair's summary is what its windows give. The digest
    /// covers the summaries only, so a restored projection must also pass
    /// this: windows that disagree with them (damaged, or written by other
    /// code) would otherwise change the next summaries silently.
    pub fn windows_agree(&self, rules: &LedgerState) -> bool {
        self.pairs.iter().all(|(key, pair)| {
            let quorum = rules
                .commitments
                .get(&key.1)
                .map_or(1, |commitment| commitment.corroboration_quorum);
            pair.stats.summary(quorum, pair.summary.updated_seq) == pair.summary
        })
    }

    /// Folds entry `context.seq`. `accepted` is what the rules accepted
    /// (`None` for the genesis) and `rules` the rules' state after it.
    pub fn fold<W: Windows>(
        &mut self,
        event: &Event,
        accepted: Option<&Accepted>,
        context: &EntryContext,
        rules: &LedgerState,
        windows: &mut W,
    ) -> Result<Folded, W::Error> {
        let seq = context.seq;
        self.log_time_micros = self.log_time_micros.max(context.received_at_micros);
        let mut touched = BTreeSet::new();
        let mut created = BTreeSet::new();
        let mut dropped = BTreeMap::new();
        // Every kind of accepted entry is named: a new one does not compile
        // until it is decided here.
        match (accepted, &event.body) {
            // The genesis binds no pair.
            (None, _) => {}
            (
                Some(Accepted::Governance(GovernanceChange::DefineCommitment {
                    commitment_id,
                    commitment,
                })),
                _,
            ) => {
                // Pairs of zones the commitment no longer binds are dropped.
                let unbound: Vec<PairKey> = self
                    .pairs
                    .keys()
                    .filter(|(zone, commitment_of)| {
                        commitment_of == commitment_id && !commitment.zone_ids.contains(zone)
                    })
                    .cloned()
                    .collect();
                for key in unbound {
                    touched.insert(key.clone());
                    if let Some(pair) = self.pairs.remove(&key) {
                        dropped.insert(key.clone(), pair.summary.clone());
                        if let Some(expiry) = pair.next_expiry {
                            self.expiries.remove(&(expiry, key.clone()));
                        }
                        let mut counted = Vec::new();
                        windows.for_each_in(&key, &mut |window_key, _| {
                            counted.push(window_key.clone())
                        })?;
                        for window_key in &counted {
                            windows.remove(window_key);
                        }
                    }
                }
                for zone_id in &commitment.zone_ids {
                    let key = (zone_id.clone(), commitment_id.clone());
                    if !self.pairs.contains_key(&key) {
                        self.pairs
                            .insert(key.clone(), PairState::new(PairSummary::unobserved(seq)));
                        created.insert(key.clone());
                    }
                    // The window length may have changed, and every expiry with it.
                    self.reschedule(&key, rules, windows)?;
                    touched.insert(key);
                }
            }
            // Parties, keys, zones and the witness policy bind no pair.
            (
                Some(Accepted::Governance(
                    GovernanceChange::RegisterParty { .. }
                    | GovernanceChange::AddKey { .. }
                    | GovernanceChange::RevokeKey { .. }
                    | GovernanceChange::DefineZone { .. }
                    | GovernanceChange::SetWitnessPolicy { .. },
                )),
                _,
            ) => {}
            (Some(Accepted::Observation(record)), Some(Body::Observation(observation))) => {
                if let Some(key) = self.count(seq, record, observation, false, rules, windows)? {
                    touched.insert(key);
                }
            }
            (
                Some(Accepted::Amendment {
                    target_seq,
                    kind,
                    original,
                    corrected,
                }),
                Some(Body::Amendment(amendment)),
            ) => {
                let was_disputed =
                    self.uncount(*target_seq, original, &mut touched, rules, windows)?;
                if *kind == AmendmentKind::Correct {
                    if let Some(correction) = &amendment.correction {
                        if let Some(key) = self.count(
                            *target_seq,
                            corrected,
                            correction,
                            was_disputed,
                            rules,
                            windows,
                        )? {
                            touched.insert(key);
                        }
                    }
                }
            }
            (Some(Accepted::Dispute { target_seq, target }), _) => {
                let key = window_key(*target_seq, target);
                if let Some(mut observation) = windows.get(&key)? {
                    if let Some(pair) = self.pairs.get_mut(&key.pair) {
                        if observation.is_violation() && !observation.disputed {
                            pair.stats.disputed_violations += 1;
                        }
                    }
                    observation.disputed = true;
                    touched.insert(key.pair.clone());
                    windows.insert(key, observation);
                }
            }
            // The rules accept an observation or an amendment only from an
            // event of that kind: another body never comes with one.
            (Some(Accepted::Observation(_) | Accepted::Amendment { .. }), _) => {}
        }
        self.expire(&mut touched, rules, windows)?;
        self.as_of_seq = Some(seq);
        let changes = self.summarise(seq, &touched, &created, &dropped, rules);
        Ok(Folded { changes, touched })
    }

    /// Counts an observation at `seq` in its pair unless it is already
    /// outside the window; returns the pair.
    fn count<W: Windows>(
        &mut self,
        seq: u64,
        record: &ObservationRecord,
        observation: &Observation,
        disputed: bool,
        rules: &LedgerState,
        windows: &mut W,
    ) -> Result<Option<PairKey>, W::Error> {
        let key = window_key(seq, record);
        let Some(commitment) = rules.commitments.get(&record.commitment_id) else {
            return Ok(None);
        };
        // What was seen before the commitment took effect does not count.
        if key.observed_until_micros < commitment.effective_from_micros {
            return Ok(None);
        }
        let expires_at = key
            .observed_until_micros
            .saturating_add(window_micros(commitment.window_seconds));
        if expires_at < self.log_time_micros {
            return Ok(None);
        }
        let Some(pair) = self.pairs.get_mut(&key.pair) else {
            return Ok(None);
        };
        // The rules refused any other finding or category (they are typed
        // from here on): this never skips an observation they accepted.
        let (Ok(finding), Ok(category)) = (
            Finding::try_from(observation.finding),
            Category::try_from(observation.category),
        ) else {
            return Ok(None);
        };
        let counted = CountedObservation {
            reporter: record.author.clone(),
            finding,
            category,
            disputed,
        };
        pair.stats.count(&counted, key.observed_until_micros, true);
        let pair_key = key.pair.clone();
        windows.insert(key, counted);
        self.schedule(&pair_key, expires_at);
        Ok(Some(pair_key))
    }

    /// Stops counting the observation at `seq`, whose record was `record`;
    /// returns whether it was disputed.
    fn uncount<W: Windows>(
        &mut self,
        seq: u64,
        record: &ObservationRecord,
        touched: &mut BTreeSet<PairKey>,
        rules: &LedgerState,
        windows: &mut W,
    ) -> Result<bool, W::Error> {
        let key = window_key(seq, record);
        let Some(observation) = windows.get(&key)? else {
            return Ok(false);
        };
        self.take_out(&key, &observation, windows)?;
        // It may have been the next to leave.
        self.reschedule(&key.pair, rules, windows)?;
        touched.insert(key.pair);
        Ok(observation.disputed)
    }

    /// Removes a counted observation from its window and its pair's
    /// tallies, and finds the pair's latest times again if it held them.
    fn take_out<W: Windows>(
        &mut self,
        key: &WindowKey,
        observation: &CountedObservation,
        windows: &mut W,
    ) -> Result<(), W::Error> {
        windows.remove(key);
        let Some(pair) = self.pairs.get_mut(&key.pair) else {
            return Ok(());
        };
        let stats = &mut pair.stats;
        stats.count(observation, key.observed_until_micros, false);
        if stats.latest_observation == Some(key.observed_until_micros) {
            stats.latest_observation = match stats.observations {
                0 => None,
                _ => windows.latest(&key.pair, false)?,
            };
        }
        if observation.is_violation() && stats.latest_violation == Some(key.observed_until_micros) {
            stats.latest_violation = match stats.violations {
                0 => None,
                _ => windows.latest(&key.pair, true)?,
            };
        }
        Ok(())
    }

    /// Notes that the pair holds an observation leaving at `expires_at`.
    fn schedule(&mut self, pair_key: &PairKey, expires_at: i64) {
        let Some(pair) = self.pairs.get_mut(pair_key) else {
            return;
        };
        if pair.next_expiry.is_some_and(|next| next <= expires_at) {
            return;
        }
        if let Some(next) = pair.next_expiry.replace(expires_at) {
            self.expiries.remove(&(next, pair_key.clone()));
        }
        self.expiries.insert((expires_at, pair_key.clone()));
    }

    /// Sets the pair's next expiry from its window's first observation.
    fn reschedule<W: Windows>(
        &mut self,
        pair_key: &PairKey,
        rules: &LedgerState,
        windows: &W,
    ) -> Result<(), W::Error> {
        let Some(pair) = self.pairs.get_mut(pair_key) else {
            return Ok(());
        };
        if let Some(next) = pair.next_expiry.take() {
            self.expiries.remove(&(next, pair_key.clone()));
        }
        if let Some((first, _)) = windows.first(pair_key)? {
            let expires_at = first
                .observed_until_micros
                .saturating_add(pair_window(rules, pair_key));
            pair.next_expiry = Some(expires_at);
            self.expiries.insert((expires_at, pair_key.clone()));
        }
        Ok(())
    }

    /// Drops every observation whose window ended before log time.
    fn expire<W: Windows>(
        &mut self,
        touched: &mut BTreeSet<PairKey>,
        rules: &LedgerState,
        windows: &mut W,
    ) -> Result<(), W::Error> {
        let due: Vec<(i64, PairKey)> = self
            .expiries
            .iter()
            .take_while(|(expires_at, _)| *expires_at < self.log_time_micros)
            .cloned()
            .collect();
        for (expires_at, pair_key) in due {
            self.expiries.remove(&(expires_at, pair_key.clone()));
            if let Some(pair) = self.pairs.get_mut(&pair_key) {
                pair.next_expiry = None;
            }
            // Gone: observed_until + window < log time, that is
            // observed_until < log time - window (saturating alike).
            let cutoff = self
                .log_time_micros
                .saturating_sub(pair_window(rules, &pair_key));
            for (key, observation) in windows.older_than(&pair_key, cutoff)? {
                self.take_out(&key, &observation, windows)?;
                touched.insert(pair_key.clone());
            }
            self.reschedule(&pair_key, rules, windows)?;
        }
        Ok(())
    }

    fn summarise(
        &mut self,
        seq: u64,
        touched: &BTreeSet<PairKey>,
        created: &BTreeSet<PairKey>,
        dropped: &BTreeMap<PairKey, PairSummary>,
        rules: &LedgerState,
    ) -> Vec<StatusChange> {
        let mut changes = Vec::new();
        for key in touched {
            let Some(pair) = self.pairs.get_mut(key) else {
                // A pair the commitment no longer binds: its last change.
                if let Some(old) = dropped.get(key) {
                    changes.push(StatusChange {
                        seq,
                        index: changes.len() as u32,
                        zone_id: key.0.clone(),
                        commitment_id: key.1.clone(),
                        old_status: old.status,
                        new_status: ComplianceStatus::Unspecified,
                        old_disputed: old.disputed,
                        new_disputed: false,
                        pair: PairSummary {
                            status: ComplianceStatus::Unspecified,
                            ..PairSummary::unobserved(seq)
                        },
                    });
                }
                continue;
            };
            let quorum = rules
                .commitments
                .get(&key.1)
                .map_or(1, |commitment| commitment.corroboration_quorum);
            let mut summary = pair.stats.summary(quorum, pair.summary.updated_seq);
            let old = &pair.summary;
            let is_new = created.contains(key);
            if summary != *old || is_new {
                summary.updated_seq = seq;
            }
            if is_new || summary.status != old.status || summary.disputed != old.disputed {
                changes.push(StatusChange {
                    seq,
                    index: changes.len() as u32,
                    zone_id: key.0.clone(),
                    commitment_id: key.1.clone(),
                    old_status: if is_new {
                        ComplianceStatus::Unspecified
                    } else {
                        old.status
                    },
                    new_status: summary.status,
                    old_disputed: old.disputed && !is_new,
                    new_disputed: summary.disputed,
                    pair: summary.clone(),
                });
            }
            pair.summary = summary;
        }
        changes
    }

    /// SHA-256 of the canonical encoding of what is served: log position and
    /// every pair's summary (see ARCHITECTURE.md, "Digest"). Windows are
    /// working state whose every effect shows in the summaries; leaving them
    /// out keeps the digest O(pairs) per batch, not O(observations).
    pub fn digest(&self) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update(DIGEST_DOMAIN);
        hasher.update(self.as_of_seq.map_or(u64::MAX, |seq| seq).to_be_bytes());
        hasher.update(self.log_time_micros.to_be_bytes());
        hasher.update((self.pairs.len() as u64).to_be_bytes());
        for ((zone_id, commitment_id), pair) in &self.pairs {
            let summary = &pair.summary;
            for text in [zone_id, commitment_id] {
                hasher.update([text.len() as u8]);
                hasher.update(text.as_bytes());
            }
            // The enums' numbers (docs/spec.md 9.1, 9.9).
            hasher.update((summary.status as i32).to_be_bytes());
            hasher.update([u8::from(summary.disputed)]);
            hasher.update(summary.observations.to_be_bytes());
            hasher.update(summary.violations.to_be_bytes());
            hasher.update(summary.distinct_reporters.to_be_bytes());
            hasher.update(summary.distinct_violation_reporters.to_be_bytes());
            for time in [
                summary.last_violation_at_micros,
                summary.last_observation_at_micros,
            ] {
                hasher.update(time.unwrap_or(i64::MIN).to_be_bytes());
            }
            hasher.update(summary.updated_seq.to_be_bytes());
            hasher.update((summary.counts_by_category.len() as u32).to_be_bytes());
            for (category, count) in &summary.counts_by_category {
                hasher.update((*category as i32).to_be_bytes());
                hasher.update(count.to_be_bytes());
            }
        }
        hasher.finalize().into()
    }
}

fn window_micros(window_seconds: u64) -> i64 {
    i64::try_from(window_seconds)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}

#[cfg(test)]
mod tests {
    //! The fold by hand: a small log built entry by entry (real leaves,
    //! signed, replayed through [`Replay`]), with every status, summary and
    //! change computed by hand; then determinism and `restore`.

    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::proto::{
        Amendment, Category, CommitmentKind, DefineCommitment, DefineZone, Dispute, Genesis,
        LatLon, Location, Party, Polygon, RegisterParty, Role, ZoneKind,
    };
    use crate::replay::{Replay, ReplayedEntry};
    use crate::test_leaf::signed_leaf;

    const AGREEMENT: &str = "test-agreement";
    const SIGNATORY: &str = "signatory";
    const M1: &str = "mission-a";
    const M2: &str = "mission-b";
    const ZONE_Z: &str = "zone-z";
    const ZONE_Y: &str = "zone-y";
    const LONG: &str = "c-long";
    const SHORT: &str = "c-short";
    /// Log time of the bootstrap entries.
    const T0: i64 = 1_700_000_000_000_000;
    const SECOND: i64 = 1_000_000;

    const UNSPECIFIED: ComplianceStatus = ComplianceStatus::Unspecified;
    const COMPLIANT: ComplianceStatus = ComplianceStatus::Compliant;
    const UNOBSERVED: ComplianceStatus = ComplianceStatus::Unobserved;
    const OBSTRUCTED: ComplianceStatus = ComplianceStatus::Obstructed;
    const REPORTED: ComplianceStatus = ComplianceStatus::ViolationReported;
    const CONFIRMED: ComplianceStatus = ComplianceStatus::ViolationConfirmed;

    const EXPLOSION: Category = Category::Explosion;
    const SMALL_ARMS: Category = Category::SmallArmsFire;
    const PATROL: Category = Category::RoutinePatrol;
    const MOVEMENT: Category = Category::RestrictionOfMovement;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32])
    }

    use crate::rules::micros_timestamp as timestamp;

    /// A log being written and replayed at once.
    struct Log {
        replay: Replay,
        leaves: Vec<Vec<u8>>,
        signatory: SigningKey,
        m1: SigningKey,
        m2: SigningKey,
        nonce: u64,
    }

    /// One change, as compared here.
    type Change = (
        u64,
        u32,
        &'static str,
        &'static str,
        ComplianceStatus,
        ComplianceStatus,
        bool,
        bool,
    );

    /// [`Change`] with owned ids.
    type OwnedChange = (
        u64,
        u32,
        String,
        String,
        ComplianceStatus,
        ComplianceStatus,
        bool,
        bool,
    );

    fn changes(entry: &ReplayedEntry) -> Vec<OwnedChange> {
        entry
            .changes
            .iter()
            .map(|change| {
                (
                    change.seq,
                    change.index,
                    change.zone_id.clone(),
                    change.commitment_id.clone(),
                    change.old_status,
                    change.new_status,
                    change.old_disputed,
                    change.new_disputed,
                )
            })
            .collect()
    }

    fn assert_changes(entry: &ReplayedEntry, expected: &[Change]) {
        let expected: Vec<_> = expected
            .iter()
            .map(|&(seq, index, zone, commitment, old, new, old_d, new_d)| {
                (
                    seq,
                    index,
                    zone.to_string(),
                    commitment.to_string(),
                    old,
                    new,
                    old_d,
                    new_d,
                )
            })
            .collect();
        assert_eq!(changes(entry), expected, "changes of entry {}", entry.seq);
        // Every change carries the pair as it now is.
        for change in &entry.changes {
            assert_eq!(change.pair.status, change.new_status);
            assert_eq!(change.pair.disputed, change.new_disputed);
            assert_eq!(change.pair.updated_seq, entry.seq);
        }
    }

    fn zone(zone_id: &str, lat: f64) -> Body {
        let vertex = |lat, lon| LatLon { lat, lon };
        Body::DefineZone(DefineZone {
            zone_id: zone_id.into(),
            version: 1,
            name: format!("Zone {zone_id}"),
            kind: ZoneKind::ContactLineSector as i32,
            boundary: Some(Polygon {
                vertices: vec![
                    vertex(lat, 37.0),
                    vertex(lat, 38.0),
                    vertex(lat + 1.0, 38.0),
                    vertex(lat + 1.0, 37.0),
                ],
            }),
        })
    }

    fn commitment(
        commitment_id: &str,
        version: u32,
        zone_ids: &[&str],
        window_seconds: u64,
        quorum: u32,
    ) -> Body {
        Body::DefineCommitment(DefineCommitment {
            commitment_id: commitment_id.into(),
            version,
            name: format!("Commitment {commitment_id}"),
            kind: CommitmentKind::Ceasefire as i32,
            zone_ids: zone_ids.iter().map(|zone| zone.to_string()).collect(),
            window_seconds,
            corroboration_quorum: quorum,
            effective_from: Some(timestamp(T0)),
        })
    }

    fn observation(
        zone_id: &str,
        commitment_id: &str,
        finding: Finding,
        category: Category,
        until: i64,
    ) -> Observation {
        let lat = if zone_id == ZONE_Z { 48.5 } else { 49.5 };
        Observation {
            observed_from: Some(timestamp(until - 60 * SECOND)),
            observed_until: Some(timestamp(until)),
            location: Some(Location {
                point: Some(LatLon { lat, lon: 37.5 }),
                accuracy_m: 100.0,
            }),
            zone_id: zone_id.into(),
            commitment_id: commitment_id.into(),
            finding: finding as i32,
            category: category as i32,
            quantity: 1,
            attributed_side: String::new(),
            evidence: Vec::new(),
            narrative: "seen".into(),
        }
    }

    fn party(party_id: &str, role: Role, key: &SigningKey) -> Party {
        Party {
            party_id: party_id.into(),
            name: format!("Party {party_id}"),
            role: role as i32,
            public_keys: vec![key.verifying_key().to_bytes().to_vec()],
        }
    }

    impl Log {
        /// Genesis, two monitors and two zones, all at T0 (entries 0..=4).
        fn new() -> Log {
            let mut log = Log {
                replay: Replay::new(),
                leaves: Vec::new(),
                signatory: key(1),
                m1: key(2),
                m2: key(3),
                nonce: 0,
            };
            let operator = key(4);
            let genesis = Body::Genesis(Genesis {
                origin: "test.example/log".into(),
                title: "Test agreement".into(),
                signatories: vec![party(SIGNATORY, Role::Signatory, &log.signatory)],
                threshold: 1,
                operator_public_key: operator.verifying_key().to_bytes().to_vec(),
                max_clock_skew_seconds: 0,
            });
            log.governance(T0, genesis);
            for (party_id, key) in [(M1, log.m1.clone()), (M2, log.m2.clone())] {
                let register = Body::RegisterParty(RegisterParty {
                    party: Some(party(party_id, Role::Monitor, &key)),
                });
                log.governance(T0, register);
            }
            log.governance(T0, zone(ZONE_Z, 48.0));
            log.governance(T0, zone(ZONE_Y, 49.0));
            log
        }

        fn key_of(&self, author: &str) -> SigningKey {
            match author {
                SIGNATORY => self.signatory.clone(),
                M1 => self.m1.clone(),
                M2 => self.m2.clone(),
                other => panic!("no key for {other}"),
            }
        }

        /// Appends an event by `author` received at `at`, and replays it.
        fn push(&mut self, author: &str, at: i64, body: Body) -> ReplayedEntry {
            self.nonce += 1;
            let (_, leaf) = signed_leaf(
                AGREEMENT,
                author,
                self.nonce,
                at,
                body,
                &self.key_of(author),
                self.replay.size(),
                self.replay.leaf_hashes().last().copied().unwrap_or([0; 32]),
            );
            let bytes = leaf.encode();
            let entry = self
                .replay
                .apply(&bytes, false)
                .unwrap_or_else(|error| panic!("the test log is refused: {error}"));
            self.leaves.push(bytes);
            entry
        }

        fn governance(&mut self, at: i64, body: Body) -> ReplayedEntry {
            self.push(SIGNATORY, at, body)
        }

        fn observe(&mut self, author: &str, at: i64, observation: Observation) -> ReplayedEntry {
            self.push(author, at, Body::Observation(observation))
        }

        fn leaf_hash(&self, seq: u64) -> Vec<u8> {
            self.replay.leaf_hashes()[seq as usize].to_vec()
        }

        fn dispute(&mut self, at: i64, target_seq: u64) -> ReplayedEntry {
            let dispute = Body::Dispute(Dispute {
                target_seq,
                target_leaf_hash: self.leaf_hash(target_seq),
                reason: "contested".into(),
            });
            self.push(SIGNATORY, at, dispute)
        }

        fn amend(
            &mut self,
            author: &str,
            at: i64,
            target_seq: u64,
            correction: Option<Observation>,
        ) -> ReplayedEntry {
            let kind = if correction.is_some() {
                AmendmentKind::Correct
            } else {
                AmendmentKind::Retract
            };
            let amendment = Body::Amendment(Amendment {
                target_seq,
                target_leaf_hash: self.leaf_hash(target_seq),
                kind: kind as i32,
                correction,
                reason: "amended".into(),
            });
            self.push(author, at, amendment)
        }

        fn pair(&self, zone_id: &str, commitment_id: &str) -> &PairState {
            self.replay
                .projection
                .pairs
                .get(&(zone_id.to_string(), commitment_id.to_string()))
                .unwrap_or_else(|| panic!("no pair ({zone_id}, {commitment_id})"))
        }

        fn summary(&self, zone_id: &str, commitment_id: &str) -> &PairSummary {
            &self.pair(zone_id, commitment_id).summary
        }

        /// The pair's window: its counted observations by seq.
        fn window(&self, zone_id: &str, commitment_id: &str) -> BTreeMap<u64, CountedObservation> {
            let pair = (zone_id.to_string(), commitment_id.to_string());
            self.replay
                .windows
                .entries()
                .filter(|(key, _)| key.pair == pair)
                .map(|(key, observation)| (key.seq, observation.clone()))
                .collect()
        }
    }

    /// The scripted log, checked by hand at every entry; returns it.
    fn scripted() -> Log {
        let mut log = Log::new();
        let at = |seconds: i64| T0 + seconds * SECOND;

        // 5: a commitment over one zone, quorum 2: one new pair.
        let entry = log.governance(T0, commitment(LONG, 1, &[ZONE_Z], 3600, 2));
        assert_eq!(entry.seq, 5);
        assert_changes(
            &entry,
            &[(5, 0, ZONE_Z, LONG, UNSPECIFIED, UNOBSERVED, false, false)],
        );
        assert_eq!(*log.summary(ZONE_Z, LONG), PairSummary::unobserved(5));

        // 6: another over two zones, quorum 1: two changes, in pair order.
        let entry = log.governance(T0, commitment(SHORT, 1, &[ZONE_Z, ZONE_Y], 60, 1));
        assert_changes(
            &entry,
            &[
                (6, 0, ZONE_Y, SHORT, UNSPECIFIED, UNOBSERVED, false, false),
                (6, 1, ZONE_Z, SHORT, UNSPECIFIED, UNOBSERVED, false, false),
            ],
        );

        // 7: a first violation: reported.
        let entry = log.observe(
            M1,
            at(1),
            observation(ZONE_Z, LONG, Finding::Violation, EXPLOSION, at(0)),
        );
        assert_changes(
            &entry,
            &[(7, 0, ZONE_Z, LONG, UNOBSERVED, REPORTED, false, false)],
        );
        assert_eq!(
            *log.summary(ZONE_Z, LONG),
            PairSummary {
                status: REPORTED,
                disputed: false,
                observations: 1,
                violations: 1,
                counts_by_category: vec![(EXPLOSION, 1)],
                distinct_reporters: 1,
                distinct_violation_reporters: 1,
                last_violation_at_micros: Some(at(0)),
                last_observation_at_micros: Some(at(0)),
                updated_seq: 7,
            }
        );

        // 8: the same mission again: still one reporter, no status change,
        // but the summary moves on.
        let entry = log.observe(
            M1,
            at(2),
            observation(ZONE_Z, LONG, Finding::Violation, SMALL_ARMS, at(1)),
        );
        assert_changes(&entry, &[]);
        let summary = log.summary(ZONE_Z, LONG);
        assert_eq!(summary.status, REPORTED);
        assert_eq!(summary.violations, 2);
        assert_eq!(summary.distinct_violation_reporters, 1);
        assert_eq!(
            summary.counts_by_category,
            vec![(EXPLOSION, 1), (SMALL_ARMS, 1)]
        );
        assert_eq!(summary.last_violation_at_micros, Some(at(1)));
        assert_eq!(summary.updated_seq, 8);

        // 9: the other mission reports compliance: two reporters, one of
        // them of violations; still reported.
        let entry = log.observe(
            M2,
            at(3),
            observation(ZONE_Z, LONG, Finding::Compliance, PATROL, at(2)),
        );
        assert_changes(&entry, &[]);
        assert_eq!(
            *log.summary(ZONE_Z, LONG),
            PairSummary {
                status: REPORTED,
                disputed: false,
                observations: 3,
                violations: 2,
                counts_by_category: vec![(EXPLOSION, 1), (SMALL_ARMS, 1), (PATROL, 1)],
                distinct_reporters: 2,
                distinct_violation_reporters: 1,
                last_violation_at_micros: Some(at(1)),
                last_observation_at_micros: Some(at(2)),
                updated_seq: 9,
            }
        );

        // 10: corroborated by the second mission: confirmed.
        let entry = log.observe(
            M2,
            at(4),
            observation(ZONE_Z, LONG, Finding::Violation, EXPLOSION, at(3)),
        );
        assert_changes(
            &entry,
            &[(10, 0, ZONE_Z, LONG, REPORTED, CONFIRMED, false, false)],
        );
        assert_eq!(log.summary(ZONE_Z, LONG).distinct_violation_reporters, 2);

        // 11: a signatory disputes the first violation.
        let entry = log.dispute(at(5), 7);
        assert_changes(
            &entry,
            &[(11, 0, ZONE_Z, LONG, CONFIRMED, CONFIRMED, false, true)],
        );
        assert!(log.window(ZONE_Z, LONG)[&7].disputed);

        // 12: the corroboration is retracted: reported again, still disputed.
        let entry = log.amend(M2, at(6), 10, None);
        assert_changes(
            &entry,
            &[(12, 0, ZONE_Z, LONG, CONFIRMED, REPORTED, true, true)],
        );
        assert!(!log.window(ZONE_Z, LONG).contains_key(&10));
        assert_eq!(log.summary(ZONE_Z, LONG).observations, 3);

        // 13: the disputed violation is corrected into a compliance report:
        // it keeps its dispute, which no longer marks a violation.
        let entry = log.amend(
            M1,
            at(7),
            7,
            Some(observation(
                ZONE_Z,
                LONG,
                Finding::Compliance,
                PATROL,
                at(0),
            )),
        );
        assert_changes(
            &entry,
            &[(13, 0, ZONE_Z, LONG, REPORTED, REPORTED, true, false)],
        );
        assert!(log.window(ZONE_Z, LONG)[&7].disputed);
        let summary = log.summary(ZONE_Z, LONG);
        assert_eq!(summary.violations, 1);
        assert_eq!(
            summary.counts_by_category,
            vec![(SMALL_ARMS, 1), (PATROL, 2)]
        );

        // 14, 15: access denied only: obstructed (the second changes nothing).
        let entry = log.observe(
            M1,
            at(8),
            observation(ZONE_Y, SHORT, Finding::AccessDenied, MOVEMENT, at(8)),
        );
        assert_changes(
            &entry,
            &[(14, 0, ZONE_Y, SHORT, UNOBSERVED, OBSTRUCTED, false, false)],
        );
        let entry = log.observe(
            M2,
            at(9),
            observation(ZONE_Y, SHORT, Finding::AccessDenied, MOVEMENT, at(9)),
        );
        assert_changes(&entry, &[]);

        // 16: a compliance report among them: compliant.
        let entry = log.observe(
            M2,
            at(10),
            observation(ZONE_Y, SHORT, Finding::Compliance, PATROL, at(10)),
        );
        assert_changes(
            &entry,
            &[(16, 0, ZONE_Y, SHORT, OBSTRUCTED, COMPLIANT, false, false)],
        );
        assert_eq!(log.summary(ZONE_Y, SHORT).violations, 0);
        assert_eq!(log.summary(ZONE_Y, SHORT).last_violation_at_micros, None);

        // 17: quorum 1: one violation is confirmed at once.
        let entry = log.observe(
            M1,
            at(11),
            observation(ZONE_Z, SHORT, Finding::Violation, EXPLOSION, at(11)),
        );
        assert_changes(
            &entry,
            &[(17, 0, ZONE_Z, SHORT, UNOBSERVED, CONFIRMED, false, false)],
        );

        // Windows of 60 s: 14 leaves at at(68), 15 at at(69), 16 at at(70),
        // 17 at at(71). 18, an unrelated entry at exactly at(70): 14 and 15
        // leave, 16 is still in (the window includes its end).
        let entry = log.governance(at(70), zone("zone-x", 50.0));
        assert_changes(&entry, &[]);
        assert_eq!(log.replay.projection.log_time_micros, at(70));
        let pair = log.pair(ZONE_Y, SHORT);
        let window = log.window(ZONE_Y, SHORT);
        assert_eq!(window.keys().copied().collect::<Vec<_>>(), vec![16]);
        assert_eq!(pair.summary.status, COMPLIANT);
        assert_eq!(pair.summary.updated_seq, 18);
        assert_eq!(log.summary(ZONE_Z, SHORT).updated_seq, 17);

        // 19, unrelated, at at(72): both remaining short-window reports
        // leave; two changes at 19, in pair order. The long window holds.
        let entry = log.governance(at(72), zone("zone-w", 51.0));
        assert_changes(
            &entry,
            &[
                (19, 0, ZONE_Y, SHORT, COMPLIANT, UNOBSERVED, false, false),
                (19, 1, ZONE_Z, SHORT, CONFIRMED, UNOBSERVED, false, false),
            ],
        );
        assert_eq!(*log.summary(ZONE_Y, SHORT), PairSummary::unobserved(19));
        assert_eq!(log.summary(ZONE_Z, LONG).status, REPORTED);

        // 20: a report whose window ended before log time is accepted but
        // not counted.
        let entry = log.observe(
            M1,
            at(73),
            observation(ZONE_Y, SHORT, Finding::Violation, EXPLOSION, at(0)),
        );
        assert_changes(&entry, &[]);
        assert_eq!(*log.summary(ZONE_Y, SHORT), PairSummary::unobserved(19));

        // 21: compliance on the long window, then 22: the long commitment
        // redefined with a 10 s window: everything older leaves at once,
        // and the quorum no longer matters.
        let entry = log.observe(
            M2,
            at(74),
            observation(ZONE_Z, LONG, Finding::Compliance, PATROL, at(73)),
        );
        assert_changes(&entry, &[]);
        let entry = log.governance(at(80), commitment(LONG, 2, &[ZONE_Z], 10, 2));
        assert_changes(
            &entry,
            &[(22, 0, ZONE_Z, LONG, REPORTED, COMPLIANT, false, false)],
        );
        let window = log.window(ZONE_Z, LONG);
        assert_eq!(window.keys().copied().collect::<Vec<_>>(), vec![21]);
        assert_eq!(log.pair(ZONE_Z, LONG).next_expiry, Some(at(83)));

        // 23: the short commitment no longer binds zone-y: that pair is
        // dropped (a last change to UNSPECIFIED), the other is kept.
        let before = log.replay.projection.pairs.len();
        let entry = log.governance(at(81), commitment(SHORT, 2, &[ZONE_Z], 60, 1));
        assert_changes(
            &entry,
            &[(23, 0, ZONE_Y, SHORT, UNOBSERVED, UNSPECIFIED, false, false)],
        );
        assert_eq!(log.replay.projection.pairs.len(), before - 1);
        assert!(!log
            .replay
            .projection
            .pairs
            .contains_key(&(ZONE_Y.to_string(), SHORT.to_string())));
        assert_eq!(log.summary(ZONE_Z, SHORT).status, UNOBSERVED);
        assert_eq!(log.replay.projection.as_of_seq, Some(23));
        log
    }

    #[test]
    fn statuses_follow_the_log_as_computed_by_hand() {
        scripted();
    }

    #[test]
    fn a_dropped_pair_is_reported_as_touched() {
        // The store deletes exactly the touched pairs that are gone.
        let mut log = scripted();
        let (event, accepted, context) = {
            let entry = log.governance(T0 + 82 * SECOND, commitment(SHORT, 3, &[ZONE_Y], 60, 1));
            let context = EntryContext {
                seq: entry.seq,
                received_at_micros: entry.leaf.received_at_micros,
                leaf_hash: entry.leaf_hash,
            };
            (entry.event, entry.accepted, context)
        };
        // Folding the same entry into the projection before it (rebuilt
        // from the replay of every entry but the last) reports the drop.
        let mut before = Replay::new();
        for leaf in &log.leaves[..log.leaves.len() - 1] {
            before.apply(leaf, true).unwrap();
        }
        let rules = log.replay.state.as_ref().unwrap();
        let Ok(folded) = before.projection.fold(
            &event,
            accepted.as_ref(),
            &context,
            rules,
            &mut before.windows,
        );
        let key = |zone: &str| (zone.to_string(), SHORT.to_string());
        assert_eq!(
            folded.touched,
            BTreeSet::from([key(ZONE_Y), key(ZONE_Z)]),
            "the dropped pair and the new one are touched"
        );
        assert!(!before.projection.pairs.contains_key(&key(ZONE_Z)));
        assert_eq!(
            before.projection.pairs[&key(ZONE_Y)].summary,
            PairSummary::unobserved(context.seq)
        );
        assert_eq!(before.projection.digest(), log.replay.projection.digest());
    }

    #[test]
    fn the_same_log_folds_to_the_same_digests_and_changes() {
        let log = scripted();
        let fold = || {
            let mut replay = Replay::new();
            let mut steps = Vec::new();
            for leaf in &log.leaves {
                let entry = replay.apply(leaf, false).expect("the log replays");
                steps.push((replay.projection.digest(), entry.changes));
            }
            (replay.projection, steps)
        };
        let (first, first_steps) = fold();
        let (second, second_steps) = fold();
        assert_eq!(first_steps, second_steps);
        assert_eq!(first, second);
        assert_eq!(first.digest(), second.digest());
        assert_eq!(first.digest(), log.replay.projection.digest());
        // Every prefix has its own digest (as_of_seq is part of it).
        let digests: BTreeSet<Hash> = first_steps.iter().map(|(digest, _)| *digest).collect();
        assert_eq!(digests.len(), log.leaves.len());
        // An empty projection has a digest too, and it is not any prefix's.
        assert!(!digests.contains(&Projection::new().digest()));
    }

    /// Every pair's summary, as a store keeps them.
    fn summaries(projection: &Projection) -> BTreeMap<PairKey, PairSummary> {
        projection
            .pairs
            .iter()
            .map(|(key, pair)| (key.clone(), pair.summary.clone()))
            .collect()
    }

    #[test]
    fn the_digest_covers_every_summary_and_the_log_position_only() {
        let log = scripted();
        let projection = &log.replay.projection;
        let rules = log.replay.state.as_ref();
        let key = (ZONE_Z.to_string(), LONG.to_string());
        let rebuild = |summaries, log_time_micros, windows: &MemoryWindows| {
            let Ok(restored) = Projection::restore(
                projection.as_of_seq,
                log_time_micros,
                summaries,
                rules,
                windows,
            );
            restored
        };
        let windows = &log.replay.windows;
        let log_time = projection.log_time_micros;
        assert_eq!(
            rebuild(summaries(projection), log_time, windows).digest(),
            projection.digest()
        );

        let mut disputed = summaries(projection);
        let summary = disputed.get_mut(&key).unwrap();
        summary.disputed = !summary.disputed;
        let mut bumped = summaries(projection);
        bumped.get_mut(&key).unwrap().updated_seq += 1;
        let mut recounted = summaries(projection);
        recounted.get_mut(&key).unwrap().counts_by_category[0].1 += 1;
        for (what, summaries) in [
            ("the disputed flag", disputed),
            ("updated_seq", bumped),
            ("a category count", recounted),
        ] {
            assert_ne!(
                rebuild(summaries, log_time, windows).digest(),
                projection.digest(),
                "the digest ignores {what}"
            );
        }
        assert_ne!(
            rebuild(summaries(projection), log_time + 1, windows).digest(),
            projection.digest(),
            "the digest ignores log time"
        );

        // Windows are working state: their effects show in the summaries,
        // and the digest stays O(pairs) however many observations count.
        let mut recategorised = windows.clone();
        let (counted_key, counted) = windows
            .entries()
            .find(|(window_key, _)| window_key.pair == key)
            .map(|(window_key, observation)| (window_key.clone(), observation.clone()))
            .expect("the long window holds an observation");
        recategorised.insert(
            counted_key,
            CountedObservation {
                category: Category::try_from(counted.category as i32 + 1).expect("a next category"),
                ..counted
            },
        );
        assert_eq!(
            rebuild(summaries(projection), log_time, &recategorised).digest(),
            projection.digest()
        );
        // Which is why a restore checks the windows against the summaries.
        let rules = rules.expect("after the genesis");
        assert!(rebuild(summaries(projection), log_time, windows).windows_agree(rules));
        assert!(!rebuild(summaries(projection), log_time, &recategorised).windows_agree(rules));
        assert!(
            !rebuild(summaries(projection), log_time, &MemoryWindows::default())
                .windows_agree(rules)
        );
    }

    #[test]
    fn a_restored_projection_is_the_folded_one_and_folds_on_alike() {
        let log = scripted();
        // Replay once, keeping what folding each entry needs.
        let mut replay = Replay::new();
        let mut steps = Vec::new();
        for leaf in &log.leaves {
            let entry = replay.apply(leaf, true).expect("the log replays");
            let context = EntryContext {
                seq: entry.seq,
                received_at_micros: entry.leaf.received_at_micros,
                leaf_hash: entry.leaf_hash,
            };
            steps.push((
                entry,
                context,
                replay.state.clone().expect("after the genesis"),
                replay.projection.clone(),
                replay.windows.clone(),
            ));
        }
        for split in 0..steps.len() {
            let (_, _, rules, folded, windows) = &steps[split];
            let Ok(mut restored) = Projection::restore(
                folded.as_of_seq,
                folded.log_time_micros,
                summaries(folded),
                Some(rules),
                windows,
            );
            // Equal in every part, tallies and expiries included, hence in digest.
            assert_eq!(restored, *folded, "restored after entry {split}");
            assert!(restored.windows_agree(rules), "after entry {split}");
            assert_eq!(restored.digest(), folded.digest());
            // Folding the rest onto it gives what the replay gave.
            let mut windows = windows.clone();
            for (entry, context, rules, expected, expected_windows) in &steps[split + 1..] {
                let Ok(folded) = restored.fold(
                    &entry.event,
                    entry.accepted.as_ref(),
                    context,
                    rules,
                    &mut windows,
                );
                assert_eq!(
                    folded.changes, entry.changes,
                    "changes of entry {} after a restore at {split}",
                    entry.seq
                );
                assert_eq!(restored, *expected);
                assert_eq!(windows, *expected_windows);
                assert_eq!(restored.digest(), expected.digest());
            }
        }
    }

    #[test]
    fn severity_orders_statuses_for_rollups() {
        let ordered = [
            UNSPECIFIED,
            COMPLIANT,
            UNOBSERVED,
            OBSTRUCTED,
            REPORTED,
            CONFIRMED,
        ];
        for pair in ordered.windows(2) {
            assert!(severity(pair[0]) < severity(pair[1]), "{pair:?}");
        }
    }

    /// The tallies are keyed by `Category` and give `counts_by_category`
    /// "ascending by category value" (docs/spec.md 9.6): the enum's order
    /// must be its numbers' order.
    #[test]
    fn categories_order_as_their_numbers() {
        let categories: Vec<Category> = (0..=i32::from(u8::MAX))
            .filter_map(|number| Category::try_from(number).ok())
            .collect();
        assert!(categories.len() >= 13, "{categories:?}");
        for pair in categories.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
    }

    /// The node stores summaries and changes as JSON: the enums are their
    /// numbers, byte for byte what the `i32` fields wrote, and a number the
    /// enum does not know is an error, not a panic.
    #[test]
    fn stored_json_writes_enums_as_their_numbers() {
        let summary = PairSummary {
            status: REPORTED,
            disputed: true,
            observations: 3,
            violations: 2,
            counts_by_category: vec![(EXPLOSION, 2), (PATROL, 1)],
            distinct_reporters: 2,
            distinct_violation_reporters: 1,
            last_violation_at_micros: Some(-5),
            last_observation_at_micros: None,
            updated_seq: 7,
        };
        let summary_json = concat!(
            r#"{"status":4,"disputed":true,"observations":3,"violations":2,"#,
            r#""counts_by_category":[[1,2],[11,1]],"distinct_reporters":2,"#,
            r#""distinct_violation_reporters":1,"last_violation_at_micros":-5,"#,
            r#""last_observation_at_micros":null,"updated_seq":7}"#
        );
        assert_eq!(serde_json::to_string(&summary).unwrap(), summary_json);
        assert_eq!(
            serde_json::from_str::<PairSummary>(summary_json).unwrap(),
            summary
        );
        let change = StatusChange {
            seq: 9,
            index: 1,
            zone_id: ZONE_Z.into(),
            commitment_id: LONG.into(),
            old_status: UNSPECIFIED,
            new_status: CONFIRMED,
            old_disputed: false,
            new_disputed: true,
            pair: summary.clone(),
        };
        let change_json = format!(
            r#"{{"seq":9,"index":1,"zone_id":"zone-z","commitment_id":"c-long","old_status":0,"new_status":5,"old_disputed":false,"new_disputed":true,"pair":{summary_json}}}"#
        );
        assert_eq!(serde_json::to_string(&change).unwrap(), change_json);
        assert_eq!(
            serde_json::from_str::<StatusChange>(&change_json).unwrap(),
            change
        );
        let counted = CountedObservation {
            reporter: M1.into(),
            finding: Finding::AccessDenied,
            category: MOVEMENT,
            disputed: false,
        };
        let counted_json = r#"{"reporter":"mission-a","finding":3,"category":6,"disputed":false}"#;
        assert_eq!(serde_json::to_string(&counted).unwrap(), counted_json);
        assert_eq!(
            serde_json::from_str::<CountedObservation>(counted_json).unwrap(),
            counted
        );

        for damaged in [
            summary_json.replace(r#""status":4"#, r#""status":6"#),
            summary_json.replace("[11,1]", "[99,1]"),
            summary_json.replace(r#""status":4"#, r#""status":"4""#),
        ] {
            assert!(
                serde_json::from_str::<PairSummary>(&damaged).is_err(),
                "{damaged}"
            );
        }
        assert!(serde_json::from_str::<StatusChange>(
            &change_json.replace(r#""new_status":5"#, r#""new_status":-1"#)
        )
        .is_err());
        assert!(serde_json::from_str::<CountedObservation>(
            &counted_json.replace(r#""finding":3"#, r#""finding":4"#)
        )
        .is_err());
    }
}
