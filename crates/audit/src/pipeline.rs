//! Reading, preparing and replaying a log at once, so every core works.
//!
//! Three stages joined by small bounded queues, each a thread of its own:
//!
//! 1. the caller's thread reads leaves from the source in chunks (sources
//!    are not `Send`: a gRPC client or a sled iterator stays where it was
//!    made);
//! 2. a preparer hands each chunk to the rayon pool, which decodes, hashes
//!    and strictly verifies every leaf in parallel ([`PreparedEntry`]);
//! 3. the replayer applies the prepared entries in order
//!    ([`Replay::apply_prepared`]): the chain, the nonces, the rules, the
//!    projection.
//!
//! While the replayer works through chunk k, the pool verifies chunk k+1 and
//! the reader fetches chunk k+2. Signature checks dominate the cost, and
//! they all run on the pool; the replay, one core's worth at most, overlaps
//! them instead of following them. The verdict is the sequential one: each
//! entry is applied only after every earlier one, and a source's defect is
//! reported only once every entry before it has been checked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use rayon::prelude::*;

use super::{could_not_run, source_error, AuditError, AuditFailure, LogSource, SourceError};
use ceasefire_core::merkle::Hash;
use ceasefire_core::replay::{PreparedEntry, Replay};
use ceasefire_core::rules::Accepted;

/// Leaves per chunk: enough to spread over every core and to amortise the
/// hand-offs, small enough that the chunks in flight (at most
/// [`CHUNKS_IN_FLIGHT`] in each of the two queues, plus one in each of the
/// three stages) stay within a few MiB for typical leaves (~0.5 KiB). At
/// the payload cap (~35 KiB leaves, and prepared entries hold their
/// payload again) that is a few hundred MiB: the auditor's worst case.
const CHUNK_LEAVES: usize = 1024;

/// Chunks a stage may run ahead of the next one.
const CHUNKS_IN_FLIGHT: usize = 2;

/// What the source gave for one chunk: leaves, and the defect that ended it.
struct Chunk<T> {
    leaves: Vec<T>,
    /// The source found the log wrong right after these leaves: (entry if
    /// known, reason). Reported once the leaves before it have replayed.
    defect: Option<(Option<u64>, String)>,
}

/// A replayed log and what the audit needs from the way through it.
pub(super) struct Replayed {
    pub replay: Replay,
    /// Entries the source held and that replayed.
    pub entries: u64,
    pub observations: u64,
    /// The projection digest right after entry `served_as_of`, if reached.
    pub projection_at_served: Option<Hash>,
}

/// Reads the first `size` leaves of `source` and replays them, taking the
/// projection digest after entry `served_as_of`. `progress` hears (entries
/// replayed, size) as the replay advances.
pub(super) fn replay_log(
    source: &mut dyn LogSource,
    size: u64,
    served_as_of: Option<u64>,
    mut progress: Option<&mut Box<dyn FnMut(u64, u64)>>,
) -> Result<Replayed, AuditError> {
    let replayed_count = AtomicU64::new(0);
    let (to_preparer, for_preparer) = sync_channel::<Chunk<Vec<u8>>>(CHUNKS_IN_FLIGHT);
    let (to_replayer, for_replayer) = sync_channel::<Chunk<PreparedEntry>>(CHUNKS_IN_FLIGHT);
    std::thread::scope(|scope| {
        let preparer = scope.spawn(move || prepare(for_preparer, to_replayer));
        let replayer = scope.spawn(|| replay(for_replayer, served_as_of, &replayed_count));
        let read = read_chunks(source, size, to_preparer, || {
            if let Some(report) = progress.as_mut() {
                report(replayed_count.load(Ordering::Relaxed), size);
            }
        });
        let _ = preparer.join();
        let replayed = replayer
            .join()
            .map_err(|_| could_not_run(anyhow::anyhow!("the replay thread panicked")))?;
        // A failure found in the log beats a failure to read the rest of it.
        let replayed = replayed?;
        read?;
        if let Some(report) = progress.as_mut() {
            report(replayed.entries, size);
        }
        Ok(replayed)
    })
}

/// Stage 1: reads chunks until the source ends, fails, or the next stage
/// stops listening (it found a failure). `after_chunk` runs after each send.
fn read_chunks(
    source: &mut dyn LogSource,
    size: u64,
    to_preparer: SyncSender<Chunk<Vec<u8>>>,
    mut after_chunk: impl FnMut(),
) -> Result<(), AuditError> {
    let mut leaves = source.leaves(size).map_err(source_error)?;
    loop {
        let mut chunk = Chunk {
            leaves: Vec::with_capacity(CHUNK_LEAVES),
            defect: None,
        };
        for item in leaves.by_ref().take(CHUNK_LEAVES) {
            match item {
                Ok(leaf) => chunk.leaves.push(leaf),
                Err(SourceError::Defect(defect)) => {
                    chunk.defect = Some((defect.seq, defect.reason));
                    break;
                }
                Err(SourceError::Unreadable(error)) => return Err(could_not_run(error)),
            }
        }
        let last = chunk.leaves.len() < CHUNK_LEAVES || chunk.defect.is_some();
        if to_preparer.send(chunk).is_err() {
            return Ok(());
        }
        after_chunk();
        if last {
            return Ok(());
        }
    }
}

/// Stage 2: prepares each chunk's leaves on the rayon pool.
fn prepare(for_preparer: Receiver<Chunk<Vec<u8>>>, to_replayer: SyncSender<Chunk<PreparedEntry>>) {
    for chunk in for_preparer {
        let prepared = chunk
            .leaves
            .par_iter()
            .map(|leaf| PreparedEntry::new(leaf, false))
            .collect();
        let chunk = Chunk {
            leaves: prepared,
            defect: chunk.defect,
        };
        if to_replayer.send(chunk).is_err() {
            return;
        }
    }
}

/// Stage 3: applies the prepared entries in order.
fn replay(
    for_replayer: Receiver<Chunk<PreparedEntry>>,
    served_as_of: Option<u64>,
    replayed_count: &AtomicU64,
) -> Result<Replayed, AuditError> {
    let mut replayed = Replayed {
        replay: Replay::new(),
        entries: 0,
        observations: 0,
        projection_at_served: None,
    };
    for chunk in for_replayer {
        for prepared in chunk.leaves {
            let seq = replayed.replay.size();
            let entry =
                replayed
                    .replay
                    .apply_prepared(prepared)
                    .map_err(|error| AuditFailure::Entry {
                        seq: error.seq,
                        reason: error.reason,
                    })?;
            if matches!(entry.accepted, Some(Accepted::Observation(_))) {
                replayed.observations += 1;
            }
            if served_as_of == Some(seq) {
                replayed.projection_at_served = Some(replayed.replay.projection.digest());
            }
        }
        replayed.entries = replayed.replay.size();
        replayed_count.store(replayed.entries, Ordering::Relaxed);
        if let Some((seq, reason)) = chunk.defect {
            return Err(AuditFailure::Entry {
                seq: seq.unwrap_or(replayed.entries),
                reason,
            }
            .into());
        }
    }
    Ok(replayed)
}
