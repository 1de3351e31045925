//! The compliance projection as the store keeps it, in the same sled tree
//! as the log, so a batch's entries and what they did to the projection
//! commit together.
//!
//! | key                          | value                                   |
//! |------------------------------|-----------------------------------------|
//! | `P`                          | [`ProjectionHead`]: as_of_seq, log time, digest |
//! | `q` zone 0x00 commitment     | the pair's [`PairSummary`], JSON |
//! | `w` zone 0x00 commitment 0x00 observed_until seq | a [`CountedObservation`] in the pair's window (`records.rs`) |
//! | `s` seq index(u32)           | a [`StatusChange`], JSON: the change log streams read |
//! | `S` zone 0x00 commitment 0x00 seq index | empty: the change log by pair, for history |
//!
//! Identifiers never hold a 0x00 byte (`core::rules`), so a pair's keys
//! share a prefix no other pair's start with. `observed_until` is stored
//! with its sign bit flipped so that byte order is time order: a pair's
//! window keys come in expiry order, as [`Windows`] reads them.
//!
//! Windows live only here: the projection in memory is O(pairs)
//! ([`ceasefire_core::projection`]). [`StoreWindows`] is how a batch reads
//! them, with its own writes not yet committed on top.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{records, Store, StoreError};
use ceasefire_core::merkle::Hash;
use ceasefire_core::projection::{PairKey, PairSummary, Projection, StatusChange};
use ceasefire_core::windows::{CountedObservation, MemoryWindows, WindowKey, Windows};

const PROJECTION_HEAD_KEY: &[u8] = b"P";
const PAIR_PREFIX: u8 = b'q';
const WINDOW_PREFIX: u8 = b'w';
const CHANGE_PREFIX: u8 = b's';
const PAIR_CHANGE_PREFIX: u8 = b'S';

/// Which prefix of the log the stored projection is, and its digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProjectionHead {
    pub as_of_seq: Option<u64>,
    pub log_time_micros: i64,
    pub digest: Hash,
}

impl ProjectionHead {
    /// The head of `projection` as it now is.
    pub fn of(projection: &Projection) -> ProjectionHead {
        ProjectionHead {
            as_of_seq: projection.as_of_seq,
            log_time_micros: projection.log_time_micros,
            digest: projection.digest(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(49);
        out.push(u8::from(self.as_of_seq.is_some()));
        out.extend_from_slice(&self.as_of_seq.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.log_time_micros.to_be_bytes());
        out.extend_from_slice(&self.digest);
        out
    }

    fn decode(bytes: &[u8]) -> Option<ProjectionHead> {
        if bytes.len() != 49 || bytes[0] > 1 {
            return None;
        }
        let seq = u64::from_be_bytes(bytes[1..9].try_into().ok()?);
        Some(ProjectionHead {
            as_of_seq: (bytes[0] == 1).then_some(seq),
            log_time_micros: i64::from_be_bytes(bytes[9..17].try_into().ok()?),
            digest: bytes[17..49].try_into().ok()?,
        })
    }
}

/// The projection as stored: its head and every pair's summary (the
/// windows stay in the store; see [`StoreWindows`]).
pub struct StoredProjection {
    pub head: ProjectionHead,
    pub summaries: BTreeMap<PairKey, PairSummary>,
}

/// The projection's part of a batch: its new head, the pair summaries it
/// changed (`None`: the pair was dropped), its window writes (`None`:
/// removed), and the status changes it caused. Proportional to what the
/// batch changed, never to the size of a window.
pub struct ProjectionWrite<'p> {
    pub head: ProjectionHead,
    pub summaries: Vec<(&'p PairKey, Option<&'p PairSummary>)>,
    pub window_writes: &'p BTreeMap<WindowKey, Option<CountedObservation>>,
    pub changes: &'p [StatusChange],
}

fn pair_key((zone_id, commitment_id): &PairKey) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + zone_id.len() + commitment_id.len());
    key.push(PAIR_PREFIX);
    key.extend_from_slice(zone_id.as_bytes());
    key.push(0);
    key.extend_from_slice(commitment_id.as_bytes());
    key
}

/// The prefix every window key of `pair` starts with.
fn window_prefix(pair: &PairKey) -> Vec<u8> {
    let mut key = pair_key(pair);
    key[0] = WINDOW_PREFIX;
    key.push(0);
    key
}

fn window_key(key: &WindowKey) -> Vec<u8> {
    let mut bytes = window_prefix(&key.pair);
    let time_order = (key.observed_until_micros as u64) ^ (1 << 63);
    bytes.extend_from_slice(&time_order.to_be_bytes());
    bytes.extend_from_slice(&key.seq.to_be_bytes());
    bytes
}

/// The [`WindowKey`] of a stored window key under `pair`'s prefix.
fn parse_window_key(pair: &PairKey, prefix_len: usize, bytes: &[u8]) -> Option<WindowKey> {
    let rest = bytes.get(prefix_len..)?;
    if rest.len() != 16 {
        return None;
    }
    let time_order = u64::from_be_bytes(rest[..8].try_into().ok()?);
    Some(WindowKey {
        pair: pair.clone(),
        observed_until_micros: (time_order ^ (1 << 63)) as i64,
        seq: u64::from_be_bytes(rest[8..].try_into().ok()?),
    })
}

fn change_key(seq: u64, index: u32) -> [u8; 13] {
    let mut key = [0u8; 13];
    key[0] = CHANGE_PREFIX;
    key[1..9].copy_from_slice(&seq.to_be_bytes());
    key[9..].copy_from_slice(&index.to_be_bytes());
    key
}

fn pair_change_key(change: &StatusChange) -> Vec<u8> {
    let mut key = pair_change_prefix(&(change.zone_id.clone(), change.commitment_id.clone()));
    key.extend_from_slice(&change.seq.to_be_bytes());
    key.extend_from_slice(&change.index.to_be_bytes());
    key
}

/// The prefix every change-index key of `pair` starts with.
fn pair_change_prefix(pair: &PairKey) -> Vec<u8> {
    let mut prefix = pair_key(pair);
    prefix[0] = PAIR_CHANGE_PREFIX;
    prefix.push(0);
    prefix
}

/// The bounds of a pair's change index after `after` through `through_seq`.
fn pair_history_range(
    pair: &PairKey,
    after: Option<(u64, u32)>,
    through_seq: u64,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let prefix = pair_change_prefix(pair);
    let at = |seq: u64, index: u32| {
        let mut key = prefix.clone();
        key.extend_from_slice(&seq.to_be_bytes());
        key.extend_from_slice(&index.to_be_bytes());
        key
    };
    let from = match after {
        Some((seq, index)) => Bound::Excluded(at(seq, index)),
        None => Bound::Included(prefix.clone()),
    };
    (from, Bound::Included(at(through_seq, u32::MAX)))
}

/// A page of changes from a pair's change-index keys (in order, already
/// bounded), each change read through `get`: at most `limit` changes, and
/// whether another key follows. Pulls at most `limit + 1` keys.
fn history_page<K: AsRef<[u8]>>(
    keys: impl Iterator<Item = sled::Result<(K, sled::IVec)>>,
    limit: usize,
    mut get: impl FnMut(u64, u32) -> Result<Option<sled::IVec>, StoreError>,
) -> Result<(Vec<StatusChange>, bool), StoreError> {
    let mut changes = Vec::with_capacity(limit.min(1024));
    for item in keys {
        let (key, _) = item?;
        if changes.len() == limit {
            return Ok((changes, true));
        }
        let key = key.as_ref();
        let malformed = || corrupt_record("pair change index key");
        let at = key.len().checked_sub(12).ok_or_else(malformed)?;
        let seq = u64::from_be_bytes(key[at..at + 8].try_into().map_err(|_| malformed())?);
        let index = u32::from_be_bytes(key[at + 8..].try_into().map_err(|_| malformed())?);
        let change = get(seq, index)?.ok_or_else(|| corrupt_record("change log entry"))?;
        changes.push(serde_json::from_slice(&change).map_err(|_| corrupt_record("status change"))?);
    }
    Ok((changes, false))
}

fn corrupt_record(what: &str) -> StoreError {
    StoreError::CorruptProjection(format!("a stored {what}"))
}

/// Adds the projection's part of a batch to a sled batch.
pub(super) fn write(
    batch: &mut sled::Batch,
    projection: &ProjectionWrite,
) -> Result<(), StoreError> {
    for (key, summary) in &projection.summaries {
        match summary {
            Some(summary) => batch.insert(
                pair_key(key),
                serde_json::to_vec(summary).map_err(std::io::Error::other)?,
            ),
            None => batch.remove(pair_key(key)),
        }
    }
    for (key, observation) in projection.window_writes {
        match observation {
            Some(observation) => {
                batch.insert(window_key(key), records::encode_counted(observation))
            }
            None => batch.remove(window_key(key)),
        }
    }
    for change in projection.changes {
        batch.insert(
            &change_key(change.seq, change.index),
            serde_json::to_vec(change).map_err(std::io::Error::other)?,
        );
        batch.insert(pair_change_key(change), &[]);
    }
    batch.insert(PROJECTION_HEAD_KEY, projection.head.encode());
    Ok(())
}

impl Store {
    /// The stored projection, if any: its head and every pair's summary.
    pub fn load_projection(&self) -> Result<Option<StoredProjection>, StoreError> {
        let Some(head) = self.tree.get(PROJECTION_HEAD_KEY)? else {
            return Ok(None);
        };
        let head =
            ProjectionHead::decode(&head).ok_or_else(|| corrupt_record("projection head"))?;
        let mut summaries = BTreeMap::new();
        for item in self.tree.scan_prefix([PAIR_PREFIX]) {
            let (key, value) = item?;
            let text =
                String::from_utf8(key[1..].to_vec()).map_err(|_| corrupt_record("pair key"))?;
            let (zone_id, commitment_id) = text
                .split_once('\0')
                .ok_or_else(|| corrupt_record("pair key"))?;
            let summary: PairSummary =
                serde_json::from_slice(&value).map_err(|_| corrupt_record("pair summary"))?;
            summaries.insert((zone_id.to_string(), commitment_id.to_string()), summary);
        }
        Ok(Some(StoredProjection { head, summaries }))
    }

    /// The pair's stored window, in key order (`reverse`: from the last).
    fn stored_window(
        &self,
        pair: &PairKey,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<(WindowKey, CountedObservation), StoreError>> + '_> {
        let prefix = window_prefix(pair);
        let prefix_len = prefix.len();
        let pair = pair.clone();
        let scan = self.tree.scan_prefix(prefix);
        let read = move |item: sled::Result<(sled::IVec, sled::IVec)>| {
            let (key, value) = item?;
            let key = parse_window_key(&pair, prefix_len, &key)
                .ok_or_else(|| corrupt_record("window key"))?;
            let observation =
                records::decode_counted(&value).ok_or_else(|| corrupt_record("window entry"))?;
            Ok((key, observation))
        };
        if reverse {
            Box::new(scan.rev().map(read))
        } else {
            Box::new(scan.map(read))
        }
    }

    /// Status changes from `from` through `through` (both (seq, index),
    /// inclusive), in change-log order, read lazily. The upper bound is the
    /// caller's: a batch is readable in sled before it is durable, so a
    /// reader that must see only durable changes bounds itself by the last
    /// change of a published view.
    pub fn changes_between(
        &self,
        from: (u64, u32),
        through: (u64, u32),
    ) -> impl Iterator<Item = Result<StatusChange, StoreError>> + Send + 'static {
        self.tree
            .range(change_key(from.0, from.1)..=change_key(through.0, through.1))
            .map(|item| {
                let (_, value) = item?;
                serde_json::from_slice(&value).map_err(|_| corrupt_record("status change"))
            })
    }

    /// Where the newest status change is in the change log, (seq, index).
    pub fn last_change(&self) -> Result<Option<(u64, u32)>, StoreError> {
        let Some(item) = self.tree.scan_prefix([CHANGE_PREFIX]).next_back() else {
            return Ok(None);
        };
        let (key, _) = item?;
        let malformed = || corrupt_record("change log key");
        let seq = u64::from_be_bytes(
            key.get(1..9)
                .ok_or_else(malformed)?
                .try_into()
                .map_err(|_| malformed())?,
        );
        let index = u32::from_be_bytes(
            key.get(9..13)
                .ok_or_else(malformed)?
                .try_into()
                .map_err(|_| malformed())?,
        );
        Ok(Some((seq, index)))
    }

    /// One page of a pair's status changes, oldest first: those after
    /// `after` ((seq, index), exclusive; `None`: from the first) with seq at
    /// most `through_seq`, at most `limit` of them; and whether another such
    /// change follows. Reads at most `limit + 1` keys of the pair's index
    /// and `limit` changes, starting at `after`: never the pair's earlier
    /// changes, never the log after `through_seq`.
    pub fn pair_history_page(
        &self,
        key: &PairKey,
        after: Option<(u64, u32)>,
        through_seq: u64,
        limit: usize,
    ) -> Result<(Vec<StatusChange>, bool), StoreError> {
        let (from, through) = pair_history_range(key, after, through_seq);
        history_page(self.tree.range((from, through)), limit, |seq, index| {
            Ok(self.tree.get(change_key(seq, index))?)
        })
    }
    /// Replaces the whole stored projection (after a rebuild from the log)
    /// atomically: summaries, windows and change log.
    pub fn replace_projection(
        &self,
        projection: &Projection,
        windows: &MemoryWindows,
        changes: &[StatusChange],
    ) -> Result<(), StoreError> {
        let window_writes = windows
            .entries()
            .map(|(key, observation)| (key.clone(), Some(observation.clone())))
            .collect();
        let mut batch = sled::Batch::default();
        for prefix in [
            PAIR_PREFIX,
            WINDOW_PREFIX,
            CHANGE_PREFIX,
            PAIR_CHANGE_PREFIX,
        ] {
            for item in self.tree.scan_prefix([prefix]) {
                batch.remove(item?.0);
            }
        }
        write(
            &mut batch,
            &ProjectionWrite {
                head: ProjectionHead::of(projection),
                summaries: projection
                    .pairs
                    .iter()
                    .map(|(key, pair)| (key, Some(&pair.summary)))
                    .collect(),
                window_writes: &window_writes,
                changes,
            },
        )?;
        self.tree.apply_batch(batch)?;
        self.make_durable()
    }
}

/// The store's windows as a batch sees them: what is committed, under the
/// batch's own writes (`pending`), which later entries of the batch must
/// see and which [`StoreWindows::writes`] hands to the commit.
pub struct StoreWindows<'s> {
    store: &'s Store,
    /// Writes since the last commit, by key: `None` removes.
    pending: BTreeMap<WindowKey, Option<CountedObservation>>,
}

impl<'s> StoreWindows<'s> {
    pub fn new(store: &'s Store) -> StoreWindows<'s> {
        StoreWindows {
            store,
            pending: BTreeMap::new(),
        }
    }

    /// The writes made through it, for the batch to commit.
    pub fn writes(&self) -> &BTreeMap<WindowKey, Option<CountedObservation>> {
        &self.pending
    }

    /// The pending writes of one pair, in key order.
    fn pending_of<'p>(
        &'p self,
        pair: &PairKey,
    ) -> impl DoubleEndedIterator<Item = (&'p WindowKey, &'p Option<CountedObservation>)> {
        let bound = |observed_until_micros, seq| WindowKey {
            pair: pair.clone(),
            observed_until_micros,
            seq,
        };
        self.pending
            .range(bound(i64::MIN, 0)..=bound(i64::MAX, u64::MAX))
    }

    /// The first committed observation of the pair, in the given direction,
    /// that the batch has not rewritten and that `wanted` accepts.
    fn first_stored(
        &self,
        pair: &PairKey,
        reverse: bool,
        wanted: impl Fn(&CountedObservation) -> bool,
    ) -> Result<Option<(WindowKey, CountedObservation)>, StoreError> {
        for item in self.store.stored_window(pair, reverse) {
            let (key, observation) = item?;
            if !self.pending.contains_key(&key) && wanted(&observation) {
                return Ok(Some((key, observation)));
            }
        }
        Ok(None)
    }
}

impl Windows for StoreWindows<'_> {
    type Error = StoreError;

    fn get(&self, key: &WindowKey) -> Result<Option<CountedObservation>, StoreError> {
        if let Some(pending) = self.pending.get(key) {
            return Ok(pending.clone());
        }
        match self.store.tree.get(window_key(key))? {
            Some(bytes) => records::decode_counted(&bytes)
                .map(Some)
                .ok_or_else(|| corrupt_record("window entry")),
            None => Ok(None),
        }
    }

    fn first(&self, pair: &PairKey) -> Result<Option<(WindowKey, CountedObservation)>, StoreError> {
        let stored = self.first_stored(pair, false, |_| true)?;
        let pending = self.pending_of(pair).find_map(|(key, observation)| {
            observation
                .as_ref()
                .map(|observation| (key.clone(), observation.clone()))
        });
        Ok(match (stored, pending) {
            (Some(stored), Some(pending)) => {
                Some(std::cmp::min_by(stored, pending, |a, b| a.0.cmp(&b.0)))
            }
            (stored, pending) => stored.or(pending),
        })
    }

    fn older_than(
        &self,
        pair: &PairKey,
        observed_until_micros: i64,
    ) -> Result<Vec<(WindowKey, CountedObservation)>, StoreError> {
        let mut older = Vec::new();
        for item in self.store.stored_window(pair, false) {
            let (key, observation) = item?;
            if key.observed_until_micros >= observed_until_micros {
                break;
            }
            if !self.pending.contains_key(&key) {
                older.push((key, observation));
            }
        }
        older.extend(
            self.pending_of(pair)
                .take_while(|(key, _)| key.observed_until_micros < observed_until_micros)
                .filter_map(|(key, observation)| {
                    observation
                        .as_ref()
                        .map(|observation| (key.clone(), observation.clone()))
                }),
        );
        older.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(older)
    }

    fn latest(&self, pair: &PairKey, violations_only: bool) -> Result<Option<i64>, StoreError> {
        let wanted =
            |observation: &CountedObservation| !violations_only || observation.is_violation();
        let stored = self.first_stored(pair, true, wanted)?;
        let pending = self
            .pending_of(pair)
            .rev()
            .find(|(_, observation)| observation.as_ref().is_some_and(wanted))
            .map(|(key, _)| key.observed_until_micros);
        Ok(stored
            .map(|(key, _)| key.observed_until_micros)
            .max(pending))
    }

    fn for_each_in(
        &self,
        pair: &PairKey,
        visit: &mut dyn FnMut(&WindowKey, &CountedObservation),
    ) -> Result<(), StoreError> {
        for item in self.store.stored_window(pair, false) {
            let (key, observation) = item?;
            if !self.pending.contains_key(&key) {
                visit(&key, &observation);
            }
        }
        for (key, observation) in self.pending_of(pair) {
            if let Some(observation) = observation {
                visit(key, observation);
            }
        }
        Ok(())
    }

    fn insert(&mut self, key: WindowKey, observation: CountedObservation) {
        self.pending.insert(key, Some(observation));
    }

    fn remove(&mut self, key: &WindowKey) {
        self.pending.insert(key.clone(), None);
    }
}

#[cfg(test)]
mod tests {
    //! History pages read from where their position is: the keys and
    //! changes one page pulls from sled are counted.

    use std::cell::Cell;

    use ceasefire_core::proto::ComplianceStatus;

    use super::*;

    fn change(pair: &PairKey, seq: u64, index: u32) -> StatusChange {
        StatusChange {
            seq,
            index,
            zone_id: pair.0.clone(),
            commitment_id: pair.1.clone(),
            old_status: ComplianceStatus::Compliant,
            new_status: ComplianceStatus::Unobserved,
            old_disputed: false,
            new_disputed: false,
            pair: PairSummary::unobserved(seq),
        }
    }

    /// A store whose change log holds `entries` entries, each changing
    /// three pairs (the middle one, `b`, at index 1).
    fn store_with_changes(entries: u64) -> (Store, tempfile::TempDir, Vec<PairKey>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let pairs: Vec<PairKey> = ["a", "b", "c"]
            .iter()
            .map(|zone| (zone.to_string(), "commitment".to_string()))
            .collect();
        let mut batch = sled::Batch::default();
        for seq in 0..entries {
            for (index, pair) in pairs.iter().enumerate() {
                let change = change(pair, seq, index as u32);
                batch.insert(
                    &change_key(seq, index as u32),
                    serde_json::to_vec(&change).unwrap(),
                );
                batch.insert(pair_change_key(&change), &[]);
            }
        }
        store.tree.apply_batch(batch).unwrap();
        (store, dir, pairs)
    }

    /// A page of `pair`'s history, and the (index keys, changes) it read.
    fn counted_page(
        store: &Store,
        pair: &PairKey,
        after: Option<(u64, u32)>,
        through_seq: u64,
        limit: usize,
    ) -> ((Vec<StatusChange>, bool), (usize, usize)) {
        let keys = Cell::new(0);
        let gets = Cell::new(0);
        let (from, through) = pair_history_range(pair, after, through_seq);
        let page = history_page(
            store
                .tree
                .range((from, through))
                .inspect(|_| keys.set(keys.get() + 1)),
            limit,
            |seq, index| {
                gets.set(gets.get() + 1);
                Ok(store.tree.get(change_key(seq, index))?)
            },
        )
        .unwrap();
        (page, (keys.get(), gets.get()))
    }

    #[test]
    fn a_history_page_reads_its_page_and_one_key_more() {
        let (store, _dir, pairs) = store_with_changes(5_000);
        let b = &pairs[1];
        // Deep in the history: page 40 of 100.
        let ((changes, more), (keys, gets)) = counted_page(&store, b, Some((3_999, 1)), 4_999, 100);
        assert_eq!(
            changes.iter().map(|c| (c.seq, c.index)).collect::<Vec<_>>(),
            (4_000..4_100).map(|seq| (seq, 1)).collect::<Vec<_>>()
        );
        assert!(more);
        assert_eq!(
            (keys, gets),
            (101, 100),
            "a page reads O(page), not O(position)"
        );
        // The same page through the store's own method.
        assert_eq!(
            store
                .pair_history_page(b, Some((3_999, 1)), 4_999, 100)
                .unwrap(),
            (changes, true)
        );

        // The version bounds the page: nothing after `through_seq`, and no
        // next page when the next change is after it.
        let ((changes, more), (keys, gets)) = counted_page(&store, b, Some((9, 1)), 14, 100);
        assert_eq!(changes.len(), 5);
        assert!(!more);
        assert_eq!((keys, gets), (5, 5));

        // The first page of the first pair and the last page of the last.
        let ((changes, more), (keys, _)) = counted_page(&store, &pairs[0], None, 4_999, 3);
        assert_eq!(
            changes.iter().map(|c| (c.seq, c.index)).collect::<Vec<_>>(),
            vec![(0, 0), (1, 0), (2, 0)]
        );
        assert!(more);
        assert_eq!(keys, 4);
        let ((changes, more), (keys, _)) =
            counted_page(&store, &pairs[2], Some((4_997, 2)), 4_999, 3);
        assert_eq!(changes.len(), 2);
        assert!(!more);
        assert_eq!(keys, 2);

        // Walking every page gives the whole history, each change once.
        let mut after = None;
        let mut walked = Vec::new();
        loop {
            let (changes, more) = store.pair_history_page(b, after, 4_999, 333).unwrap();
            after = changes.last().map(|c| (c.seq, c.index));
            walked.extend(changes.into_iter().map(|c| c.seq));
            if !more {
                break;
            }
        }
        assert_eq!(walked, (0..5_000).collect::<Vec<_>>());
    }
}
