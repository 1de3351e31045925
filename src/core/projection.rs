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
//! `observed_until`, against log time) and not retracted:
//! UNOBSERVED (none), OBSTRUCTED (only ACCESS_DENIED), COMPLIANT (no
//! violation), VIOLATION_REPORTED (violations from fewer distinct parties
//! than the quorum), VIOLATION_CONFIRMED (from at least the quorum). The
//! `disputed` flag is set while a counted violation is disputed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::merkle::Hash;
use super::rules::{
    timestamp_micros, Accepted, EntryContext, GovernanceChange, LedgerState, ObservationRecord,
};
use crate::proto::{event::Body, AmendmentKind, ComplianceStatus, Event, Finding, Observation};

/// Domain tag of the digest encoding; versions it.
const DIGEST_DOMAIN: &[u8] = b"ceasefire-ledger:projection:v1\n";

/// A pair's place: (zone id, commitment id).
pub type PairKey = (String, String);

/// One observation as a pair counts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountedObservation {
    pub reporter: String,
    pub finding: i32,
    pub category: i32,
    pub observed_until_micros: i64,
    /// When it leaves the window: observed_until + the commitment's window.
    pub expires_at_micros: i64,
    pub disputed: bool,
}

/// What is served about a pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairSummary {
    pub status: i32,
    pub disputed: bool,
    pub observations: u32,
    pub violations: u32,
    /// (category, count), ascending by category.
    pub counts_by_category: Vec<(i32, u32)>,
    pub distinct_reporters: u32,
    pub distinct_violation_reporters: u32,
    pub last_violation_at_micros: Option<i64>,
    pub last_observation_at_micros: Option<i64>,
    pub updated_seq: u64,
}

impl PairSummary {
    fn unobserved(seq: u64) -> PairSummary {
        PairSummary {
            status: ComplianceStatus::Unobserved as i32,
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

/// A pair: its summary and the observations its window counts, by seq.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairState {
    pub summary: PairSummary,
    pub window: BTreeMap<u64, CountedObservation>,
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
    pub old_status: i32,
    pub new_status: i32,
    pub old_disputed: bool,
    pub new_disputed: bool,
    pub pair: PairSummary,
}

/// What folding one entry did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    /// Status changes, in pair order (their `index`).
    pub changes: Vec<StatusChange>,
    /// Every pair whose state changed in any way, or was dropped (a store
    /// rewrites or deletes exactly these).
    pub touched: BTreeSet<PairKey>,
}

/// The whole projection after some prefix of the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Projection {
    /// The last entry folded; `None` before any.
    pub as_of_seq: Option<u64>,
    /// Log time: the latest `received_at` folded.
    pub log_time_micros: i64,
    pub pairs: BTreeMap<PairKey, PairState>,
    /// When each counted observation leaves its window: (expires_at, seq).
    expiries: BTreeMap<(i64, u64), PairKey>,
    /// Where each counted observation is counted.
    located: BTreeMap<u64, PairKey>,
}

/// Severity for rollups: a zone's status is its most severe pair's.
pub fn severity(status: i32) -> u8 {
    match ComplianceStatus::try_from(status) {
        Ok(ComplianceStatus::ViolationConfirmed) => 5,
        Ok(ComplianceStatus::ViolationReported) => 4,
        Ok(ComplianceStatus::Obstructed) => 3,
        Ok(ComplianceStatus::Unobserved) => 2,
        Ok(ComplianceStatus::Compliant) => 1,
        _ => 0,
    }
}

impl Projection {
    pub fn new() -> Projection {
        Projection::default()
    }

    /// Rebuilds a projection from stored pairs (indexes are derived).
    pub fn from_pairs(
        as_of_seq: Option<u64>,
        log_time_micros: i64,
        pairs: BTreeMap<PairKey, PairState>,
    ) -> Projection {
        let mut projection = Projection {
            as_of_seq,
            log_time_micros,
            pairs,
            ..Projection::default()
        };
        for (key, pair) in &projection.pairs {
            for (seq, observation) in &pair.window {
                projection
                    .expiries
                    .insert((observation.expires_at_micros, *seq), key.clone());
                projection.located.insert(*seq, key.clone());
            }
        }
        projection
    }

    /// Folds entry `context.seq`. `accepted` is what the rules accepted
    /// (`None` for the genesis) and `rules` the rules' state after it.
    pub fn fold(
        &mut self,
        event: &Event,
        accepted: Option<&Accepted>,
        context: &EntryContext,
        rules: &LedgerState,
    ) -> Folded {
        let seq = context.seq;
        self.log_time_micros = self.log_time_micros.max(context.received_at_micros);
        let mut touched = BTreeSet::new();
        let mut created = BTreeSet::new();
        match (accepted, &event.body) {
            (
                Some(Accepted::Governance(GovernanceChange::DefineCommitment {
                    commitment_id,
                    commitment,
                })),
                _,
            ) => {
                // Pairs of zones the commitment no longer binds are dropped.
                let dropped: Vec<PairKey> = self
                    .pairs
                    .keys()
                    .filter(|(zone, commitment_of)| {
                        commitment_of == commitment_id && !commitment.zone_ids.contains(zone)
                    })
                    .cloned()
                    .collect();
                for key in dropped {
                    touched.insert(key.clone());
                    if let Some(pair) = self.pairs.remove(&key) {
                        for (observation_seq, observation) in pair.window {
                            self.expiries
                                .remove(&(observation.expires_at_micros, observation_seq));
                            self.located.remove(&observation_seq);
                        }
                    }
                }
                let window_micros = window_micros(commitment.window_seconds);
                for zone_id in &commitment.zone_ids {
                    let key = (zone_id.clone(), commitment_id.clone());
                    if !self.pairs.contains_key(&key) {
                        self.pairs.insert(
                            key.clone(),
                            PairState {
                                summary: PairSummary::unobserved(seq),
                                window: BTreeMap::new(),
                            },
                        );
                        created.insert(key.clone());
                    }
                    // The window may have changed: re-time every counted observation.
                    let pair = self.pairs.get_mut(&key).expect("inserted above");
                    for (observation_seq, observation) in pair.window.iter_mut() {
                        self.expiries
                            .remove(&(observation.expires_at_micros, *observation_seq));
                        observation.expires_at_micros = observation
                            .observed_until_micros
                            .saturating_add(window_micros);
                        self.expiries.insert(
                            (observation.expires_at_micros, *observation_seq),
                            key.clone(),
                        );
                    }
                    touched.insert(key);
                }
            }
            (Some(Accepted::Observation(record)), Some(Body::Observation(observation))) => {
                if let Some(key) = self.count(seq, record, observation, false, rules) {
                    touched.insert(key);
                }
            }
            (
                Some(Accepted::Amendment {
                    target_seq,
                    kind,
                    corrected,
                }),
                Some(Body::Amendment(amendment)),
            ) => {
                let was_disputed = self.uncount(*target_seq, &mut touched);
                if *kind == AmendmentKind::Correct {
                    if let Some(correction) = &amendment.correction {
                        if let Some(key) =
                            self.count(*target_seq, corrected, correction, was_disputed, rules)
                        {
                            touched.insert(key);
                        }
                    }
                }
            }
            (Some(Accepted::Dispute { target_seq }), _) => {
                if let Some(key) = self.located.get(target_seq).cloned() {
                    if let Some(observation) = self
                        .pairs
                        .get_mut(&key)
                        .and_then(|pair| pair.window.get_mut(target_seq))
                    {
                        observation.disputed = true;
                    }
                    touched.insert(key);
                }
            }
            _ => {}
        }
        self.expire(&mut touched);
        self.as_of_seq = Some(seq);
        let changes = self.summarise(seq, &touched, &created, rules);
        Folded { changes, touched }
    }

    /// Counts an observation at `seq` in its pair unless it is already
    /// outside the window; returns the pair.
    fn count(
        &mut self,
        seq: u64,
        record: &ObservationRecord,
        observation: &Observation,
        disputed: bool,
        rules: &LedgerState,
    ) -> Option<PairKey> {
        let key = (record.zone_id.clone(), record.commitment_id.clone());
        let commitment = rules.commitments.get(&record.commitment_id)?;
        let observed_until =
            timestamp_micros("observed_until", &observation.observed_until).ok()?;
        let expires_at = observed_until.saturating_add(window_micros(commitment.window_seconds));
        if expires_at < self.log_time_micros {
            return None;
        }
        let pair = self.pairs.get_mut(&key)?;
        pair.window.insert(
            seq,
            CountedObservation {
                reporter: record.author.clone(),
                finding: observation.finding,
                category: observation.category,
                observed_until_micros: observed_until,
                expires_at_micros: expires_at,
                disputed,
            },
        );
        self.expiries.insert((expires_at, seq), key.clone());
        self.located.insert(seq, key.clone());
        Some(key)
    }

    /// Stops counting the observation at `seq`; returns whether it was disputed.
    fn uncount(&mut self, seq: u64, touched: &mut BTreeSet<PairKey>) -> bool {
        let Some(key) = self.located.remove(&seq) else {
            return false;
        };
        let removed = self
            .pairs
            .get_mut(&key)
            .and_then(|pair| pair.window.remove(&seq));
        touched.insert(key);
        match removed {
            Some(observation) => {
                self.expiries.remove(&(observation.expires_at_micros, seq));
                observation.disputed
            }
            None => false,
        }
    }

    /// Drops every observation whose window ended before log time.
    fn expire(&mut self, touched: &mut BTreeSet<PairKey>) {
        while let Some((&(expires_at, seq), _)) = self.expiries.first_key_value() {
            if expires_at >= self.log_time_micros {
                break;
            }
            if let Some(key) = self.expiries.remove(&(expires_at, seq)) {
                if let Some(pair) = self.pairs.get_mut(&key) {
                    pair.window.remove(&seq);
                }
                self.located.remove(&seq);
                touched.insert(key);
            }
        }
    }

    fn summarise(
        &mut self,
        seq: u64,
        touched: &BTreeSet<PairKey>,
        created: &BTreeSet<PairKey>,
        rules: &LedgerState,
    ) -> Vec<StatusChange> {
        let mut changes = Vec::new();
        for key in touched {
            let Some(pair) = self.pairs.get_mut(key) else {
                continue;
            };
            let quorum = rules
                .commitments
                .get(&key.1)
                .map_or(1, |commitment| commitment.corroboration_quorum);
            let mut summary = summarise_window(&pair.window, quorum, pair.summary.updated_seq);
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
                        ComplianceStatus::Unspecified as i32
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

    /// SHA-256 of the canonical encoding (see ARCHITECTURE.md, "Projection digest").
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
            hasher.update(summary.status.to_be_bytes());
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
                hasher.update(category.to_be_bytes());
                hasher.update(count.to_be_bytes());
            }
            hasher.update((pair.window.len() as u64).to_be_bytes());
            for (seq, observation) in &pair.window {
                hasher.update(seq.to_be_bytes());
                hasher.update([u8::from(observation.disputed)]);
                hasher.update(observation.expires_at_micros.to_be_bytes());
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

/// The summary of a window, `updated_seq` carried over (the caller bumps it).
fn summarise_window(
    window: &BTreeMap<u64, CountedObservation>,
    quorum: u32,
    updated_seq: u64,
) -> PairSummary {
    let mut counts: BTreeMap<i32, u32> = BTreeMap::new();
    let mut reporters = BTreeSet::new();
    let mut violation_reporters = BTreeSet::new();
    let mut summary = PairSummary::unobserved(updated_seq);
    let mut access_denied = 0u32;
    for observation in window.values() {
        summary.observations += 1;
        *counts.entry(observation.category).or_default() += 1;
        reporters.insert(observation.reporter.as_str());
        summary.last_observation_at_micros = summary
            .last_observation_at_micros
            .max(Some(observation.observed_until_micros));
        if observation.finding == Finding::Violation as i32 {
            summary.violations += 1;
            violation_reporters.insert(observation.reporter.as_str());
            summary.last_violation_at_micros = summary
                .last_violation_at_micros
                .max(Some(observation.observed_until_micros));
            summary.disputed |= observation.disputed;
        } else if observation.finding == Finding::AccessDenied as i32 {
            access_denied += 1;
        }
    }
    summary.counts_by_category = counts.into_iter().collect();
    summary.distinct_reporters = reporters.len() as u32;
    summary.distinct_violation_reporters = violation_reporters.len() as u32;
    summary.status = if summary.observations == 0 {
        ComplianceStatus::Unobserved
    } else if summary.violations > 0 {
        if summary.distinct_violation_reporters >= quorum {
            ComplianceStatus::ViolationConfirmed
        } else {
            ComplianceStatus::ViolationReported
        }
    } else if access_denied == summary.observations {
        ComplianceStatus::Obstructed
    } else {
        ComplianceStatus::Compliant
    } as i32;
    summary
}
