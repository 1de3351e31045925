//! The observations a compliance projection counts, and where they live.
//!
//! A pair's window holds every observation that counts for it: not
//! retracted, observed after the commitment took effect, and not yet
//! expired. Windows grow with the reports of a commitment's window (a week
//! of a mission's reports, say), not with the number of pairs, so the
//! projection does not keep them: it reads and writes them through
//! [`Windows`], and keeps in memory only what is O(pairs) (tallies, the
//! latest times, each pair's next expiry). The server's windows are in its
//! store, under the writes of the batch in flight; an auditor's are in
//! memory ([`MemoryWindows`]).
//!
//! An observation is found by its [`WindowKey`]: its pair, its
//! `observed_until` and its seq. Within a pair every observation has the
//! same window length, so key order is expiry order: a pair's next
//! observation to leave is its first, and the latest time it reports is
//! its last.

use std::collections::BTreeMap;
use std::convert::Infallible;

use serde::{Deserialize, Serialize};

use super::projection::PairKey;
use crate::proto::{Category, Finding};

/// Where an observation is counted: its pair, then expiry order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowKey {
    pub pair: PairKey,
    pub observed_until_micros: i64,
    pub seq: u64,
}

/// One observation as a pair counts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountedObservation {
    pub reporter: String,
    #[serde(with = "crate::enum_number")]
    pub finding: Finding,
    #[serde(with = "crate::enum_number")]
    pub category: Category,
    pub disputed: bool,
}

impl CountedObservation {
    pub fn is_violation(&self) -> bool {
        self.finding == Finding::Violation
    }
}

/// Reads and writes of the projection's windows. Reads see every write
/// made before them.
pub trait Windows {
    /// Why a read failed (I/O); passed through untouched.
    type Error;

    fn get(&self, key: &WindowKey) -> Result<Option<CountedObservation>, Self::Error>;

    /// The pair's first observation in key (expiry) order.
    fn first(&self, pair: &PairKey)
        -> Result<Option<(WindowKey, CountedObservation)>, Self::Error>;

    /// The pair's observations observed until before `observed_until`, in
    /// key order: those a window of some length has let go.
    fn older_than(
        &self,
        pair: &PairKey,
        observed_until_micros: i64,
    ) -> Result<Vec<(WindowKey, CountedObservation)>, Self::Error>;

    /// The pair's latest `observed_until`, among its violations only if
    /// `violations_only`.
    fn latest(&self, pair: &PairKey, violations_only: bool) -> Result<Option<i64>, Self::Error>;

    /// Calls `visit` with every observation of the pair, in no set order.
    fn for_each_in(
        &self,
        pair: &PairKey,
        visit: &mut dyn FnMut(&WindowKey, &CountedObservation),
    ) -> Result<(), Self::Error>;

    fn insert(&mut self, key: WindowKey, observation: CountedObservation);

    fn remove(&mut self, key: &WindowKey);
}

/// Windows held in memory: an auditor's, or a rebuild's before it is stored.
/// By pair, then by (observed_until, seq): a read finds its pair once and
/// then compares integers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryWindows {
    pairs: BTreeMap<PairKey, BTreeMap<(i64, u64), CountedObservation>>,
}

impl MemoryWindows {
    /// Every counted observation, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (WindowKey, &CountedObservation)> {
        self.pairs.iter().flat_map(|(pair, window)| {
            window
                .iter()
                .map(|(&(observed_until_micros, seq), observation)| {
                    (
                        WindowKey {
                            pair: pair.clone(),
                            observed_until_micros,
                            seq,
                        },
                        observation,
                    )
                })
        })
    }

    /// One pair's observations, in key order.
    fn window<'w>(
        &'w self,
        pair: &'w PairKey,
    ) -> impl DoubleEndedIterator<Item = (WindowKey, &'w CountedObservation)> + 'w {
        self.pairs.get(pair).into_iter().flat_map(move |window| {
            window
                .iter()
                .map(move |(&(observed_until_micros, seq), observation)| {
                    (
                        WindowKey {
                            pair: pair.clone(),
                            observed_until_micros,
                            seq,
                        },
                        observation,
                    )
                })
        })
    }
}

impl Windows for MemoryWindows {
    type Error = Infallible;

    fn get(&self, key: &WindowKey) -> Result<Option<CountedObservation>, Infallible> {
        Ok(self
            .pairs
            .get(&key.pair)
            .and_then(|window| window.get(&(key.observed_until_micros, key.seq)))
            .cloned())
    }

    fn first(&self, pair: &PairKey) -> Result<Option<(WindowKey, CountedObservation)>, Infallible> {
        Ok(self
            .window(pair)
            .next()
            .map(|(key, observation)| (key, observation.clone())))
    }

    fn older_than(
        &self,
        pair: &PairKey,
        observed_until_micros: i64,
    ) -> Result<Vec<(WindowKey, CountedObservation)>, Infallible> {
        Ok(self
            .window(pair)
            .take_while(|(key, _)| key.observed_until_micros < observed_until_micros)
            .map(|(key, observation)| (key, observation.clone()))
            .collect())
    }

    fn latest(&self, pair: &PairKey, violations_only: bool) -> Result<Option<i64>, Infallible> {
        Ok(self.pairs.get(pair).and_then(|window| {
            window
                .iter()
                .rev()
                .find(|(_, observation)| !violations_only || observation.is_violation())
                .map(|(&(observed_until_micros, _), _)| observed_until_micros)
        }))
    }

    fn for_each_in(
        &self,
        pair: &PairKey,
        visit: &mut dyn FnMut(&WindowKey, &CountedObservation),
    ) -> Result<(), Infallible> {
        for (key, observation) in self.window(pair) {
            visit(&key, observation);
        }
        Ok(())
    }

    fn insert(&mut self, key: WindowKey, observation: CountedObservation) {
        let WindowKey {
            pair,
            observed_until_micros,
            seq,
        } = key;
        self.pairs
            .entry(pair)
            .or_default()
            .insert((observed_until_micros, seq), observation);
    }

    fn remove(&mut self, key: &WindowKey) {
        if let Some(window) = self.pairs.get_mut(&key.pair) {
            window.remove(&(key.observed_until_micros, key.seq));
            if window.is_empty() {
                self.pairs.remove(&key.pair);
            }
        }
    }
}
