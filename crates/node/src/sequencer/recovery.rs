//! Start-up: check the store against itself, then rebuild the in-memory
//! state the sequencer continues from.
//!
//! The store is the only source of truth. The governance state is not
//! stored in a second format: it is replayed from the log's own governance
//! events (few, indexed by seq), through the core's [`step`] that accepted
//! them, so it can never disagree with the log. That step folds nothing
//! ([`Fold::Nothing`]): a fold of the governance entries alone would be the
//! projection of no log. The stored projection is loaded and accepted only
//! if it is as of the log's last entry and its digest recomputes; otherwise
//! it is rebuilt from the whole log ([`rebuild_projection`], through a
//! [`Replay`], which steps every entry and folds it).

use std::borrow::Cow;

use crate::storage::{DurableHead, Store, StoreError, StoreWindows};
use ceasefire_core::leaf::Leaf;
use ceasefire_core::merkle::Frontier;
use ceasefire_core::projection::Projection;
use ceasefire_core::replay::Replay;
use ceasefire_core::rules::{decode_event, LedgerState};
use ceasefire_core::step::{step, Entry, Fold};

/// What the sequencer needs to continue an existing log.
pub struct Recovered {
    pub head: DurableHead,
    pub frontier: Frontier,
    /// `None` for an empty log, which accepts only a genesis.
    pub state: Option<LedgerState>,
    /// The compliance projection as of the last entry.
    pub projection: Projection,
}

/// How much of the store to check before serving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartupCheck {
    /// Re-hash every leaf and tree node (time grows with the log): catches any corruption.
    Full,
    /// Check only that the head agrees with the stored tree's right edge.
    Head,
}

pub fn recover(store: &Store, check: StartupCheck) -> Result<Recovered, StoreError> {
    let head = match check {
        StartupCheck::Full => store.verify()?,
        StartupCheck::Head => {
            let head = store.head()?;
            check_last_leaf(store, &head)?;
            head
        }
    };
    let frontier = store.frontier(head.size)?;
    if frontier.root() != head.root {
        return Err(StoreError::Corrupt {
            seq: head.size.saturating_sub(1),
            reason: "the head's root does not match the stored tree".into(),
        });
    }
    let mut state: Option<Cow<'_, LedgerState>> = None;
    for seq in store.governance_seqs() {
        let seq = seq?;
        let corrupt = |reason: String| StoreError::Corrupt { seq, reason };
        let bytes = store
            .leaf(seq)?
            .ok_or_else(|| corrupt("governance entry is missing".into()))?;
        let leaf = Leaf::decode(&bytes).map_err(|error| corrupt(error.to_string()))?;
        let event = decode_event(&leaf.payload).map_err(|error| corrupt(error.message))?;
        let founding = state.is_none();
        let entry = Entry {
            seq,
            leaf: &leaf,
            leaf_hash: ceasefire_core::merkle::hash_leaf(&bytes),
            event: &event,
        };
        // The rules' state only: the projection is loaded or rebuilt below.
        let stepped = step(
            &mut state,
            entry,
            store,
            Fold::<StoreWindows>::Nothing,
            |_| Ok(()),
        )?;
        if let Err(rejection) = stepped {
            return Err(corrupt(if founding {
                format!("genesis no longer validates: {rejection}")
            } else {
                format!("entry no longer validates: {rejection}")
            }));
        }
    }
    let state = state.map(Cow::into_owned);
    if head.size > 0 && state.is_none() {
        return Err(StoreError::Corrupt {
            seq: 0,
            reason: "the log has entries but no genesis".into(),
        });
    }
    let projection = match stored_projection(store, &head, state.as_ref())? {
        Some(projection) => projection,
        None => {
            tracing::warn!("the stored projection is missing or stale: rebuilding it from the log");
            rebuild_projection(store)?
        }
    };
    Ok(Recovered {
        head,
        frontier,
        state,
        projection,
    })
}

/// The head's last entry is stored and is the one the head names. sled can
/// recover a damaged log into a state that keeps the head but lost the
/// pages holding the last leaves (`tests/corruption.rs` saw it); the full
/// check finds the gap wherever it is, this O(1) check for `--startup-check
/// head` finds it at the tail, where such losses start.
fn check_last_leaf(store: &Store, head: &DurableHead) -> Result<(), StoreError> {
    let Some(seq) = head.size.checked_sub(1) else {
        return Ok(());
    };
    let corrupt = |reason: &str| StoreError::Corrupt {
        seq,
        reason: reason.into(),
    };
    match store.leaf(seq)? {
        None => Err(corrupt("the head's last entry is missing")),
        Some(bytes) if ceasefire_core::merkle::hash_leaf(&bytes) != head.last_leaf_hash => Err(
            corrupt("the head's last entry is not the one the head names"),
        ),
        Some(_) => Ok(()),
    }
}

/// The stored projection, if it is as of the log's last entry, its digest
/// recomputes and its windows give its summaries.
fn stored_projection(
    store: &Store,
    head: &DurableHead,
    rules: Option<&LedgerState>,
) -> Result<Option<Projection>, StoreError> {
    let Some(stored) = store.load_projection()? else {
        return Ok((head.size == 0).then(Projection::new));
    };
    let stored_head = stored.head;
    if stored_head.as_of_seq.map_or(0, |seq| seq + 1) != head.size {
        return Ok(None);
    }
    let projection = Projection::restore(
        stored_head.as_of_seq,
        stored_head.log_time_micros,
        stored.summaries,
        rules,
        &StoreWindows::new(store),
    )?;
    let agrees = rules.is_none_or(|rules| projection.windows_agree(rules));
    Ok((agrees && projection.digest() == stored_head.digest).then_some(projection))
}

/// Folds the whole log from entry 0 into a new projection and stores it in
/// place of the old one (with its change log). Returns the new projection.
pub fn rebuild_projection(store: &Store) -> Result<Projection, StoreError> {
    let head = store.head()?;
    let mut replay = Replay::new();
    let mut changes = Vec::new();
    for item in store.leaves(0, head.size) {
        let (seq, leaf) = item?;
        // The store's signatures were verified when the entries were accepted.
        let entry = replay
            .apply(&leaf, true)
            .map_err(|error| StoreError::Corrupt {
                seq,
                reason: error.reason,
            })?;
        changes.extend(entry.changes);
    }
    store.replace_projection(&replay.projection, &replay.windows, &changes)?;
    Ok(replay.projection)
}
