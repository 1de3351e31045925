//! `serve --tiles-dir DIR`: a C2SP tlog-tiles mirror of the log, kept
//! current as batches commit, so a static file host serves the log without
//! any export job.
//!
//! The checkpoint published is the latest witnessed one where the log has a
//! witness policy (`crate::witnessing`), else the latest the operator
//! signed (the sequencer's checkpoint watch). Each new one is published by
//! the one tiles writer ([`crate::export::TilesWriter`]): the leaves it
//! adds are read from the store, the full tiles and bundles they complete
//! are written once, then the partial ones, and the `checkpoint` last
//! (renamed into place after everything it needs is synced).
//!
//! Invariants:
//! - Ingest never waits for the mirror: the publisher only reads watch
//!   channels and the store, and does its file work on a blocking thread.
//!   It lags by as many batches as it takes to write one checkpoint's tiles
//!   (the latest checkpoint wins; the ones in between are skipped).
//! - What the directory's `checkpoint` claims is always there: a failed
//!   write (a full disk) leaves the last published checkpoint in place, and
//!   the next attempt resumes from it, rewriting whatever is missing.
//! - The mirror never goes back, and never holds another log: at start it
//!   resumes from the directory's checkpoint after checking its origin and
//!   its root against the store, or refuses to start.
//! - Partial files are superseded: once a tile or bundle is full and the
//!   checkpoint that includes it is published, its `.p/` files are removed
//!   (C2SP readers, ours included, read a missing partial from the start of
//!   the full tile), so the mirror stays the size of the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ceasefire_core::checkpoint::CheckpointBody;
use ceasefire_core::merkle::{self, Hash, SubtreeSource};
use ceasefire_core::tiles::{shr, TILE_HEIGHT, TILE_WIDTH};
use tokio::sync::watch;

use crate::export::{
    check_tile_against_store, existing_checkpoint, other_root, DirSink, ExportError, TileSink,
    TilesWriter,
};
use crate::metrics::Metrics;
use crate::sequencer::{SequencerHandle, SignedCheckpoint};
use crate::storage::Store;
use crate::witnessing::WitnessingHandle;

/// Wait after a failed publication before trying again, doubling up to
/// [`MAX_RETRY`]: a full disk or a broken mount should cost a log line
/// every half minute, not a busy loop.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The mirror's state between publications.
struct Mirror<S: TileSink> {
    /// The writer, at the size of the last published checkpoint (or
    /// beyond it, after a failed attempt: then `None`, and the next attempt
    /// resumes from the sink's checkpoint).
    writer: Option<TilesWriter<S>>,
    /// The note last published: a witnessed note for a size already
    /// published by the operator alone is published again.
    published: Option<String>,
}

/// What a published checkpoint covers, for whoever watches the mirror.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub tree_size: u64,
    /// Whether it is a witnessed checkpoint.
    pub witnessed: bool,
}

/// A writer resuming from what the sink holds: its `checkpoint` must be for
/// this log (same origin, same root at its size in the store) and not
/// beyond the store.
fn resume<S: TileSink>(
    store: &Store,
    sink: S,
    origin: Option<&str>,
) -> Result<(TilesWriter<S>, Option<String>), ExportError> {
    let Some(old) = existing_checkpoint(&sink)? else {
        return Ok((TilesWriter::new(sink), None));
    };
    let path = sink.location(ceasefire_core::tiles::CHECKPOINT_PATH);
    if let Some(origin) = origin {
        if old.origin != origin {
            return Err(ExportError::Conflict {
                path,
                reason: format!("is for origin {:?}, this log's is {origin:?}", old.origin),
            });
        }
    }
    let head = store.head()?.size;
    if old.tree_size > head {
        return Err(ExportError::Conflict {
            path,
            reason: format!(
                "is at tree size {}, ahead of this store's {head} entries",
                old.tree_size
            ),
        });
    }
    if merkle::root(store, old.tree_size)? != old.root_hash {
        return Err(other_root(&sink, old.tree_size));
    }
    let note = sink
        .read(ceasefire_core::tiles::CHECKPOINT_PATH)?
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let size = old.tree_size;
    let bundle_start = size - size % u64::from(TILE_WIDTH);
    let bundle = store
        .leaves(bundle_start, size)
        .map(|item| item.map(|(_, leaf)| leaf))
        .collect::<Result<Vec<_>, _>>()?;
    let writer = TilesWriter::resume(sink, size, |level| right_edge(store, size, level), bundle)?;
    Ok((writer, note))
}

/// The pending level-`level` tile of a tree of `size` leaves, from the
/// store's tree nodes.
fn right_edge(store: &Store, size: u64, level: u8) -> Result<Vec<Hash>, ExportError> {
    let count = shr(size, u32::from(TILE_HEIGHT) * u32::from(level));
    let first = count - count % u64::from(TILE_WIDTH);
    (first..count)
        .map(|index| Ok(store.subtree_hash(level * TILE_HEIGHT, index)?))
        .collect()
}

/// Brings the mirror to `target`: pushes the leaves it lacks from the store
/// and publishes the note.
fn publish<S: TileSink>(
    store: &Store,
    mirror: &mut Mirror<S>,
    target: &SignedCheckpoint,
    projection: Option<(u64, Hash)>,
    make_sink: &dyn Fn() -> Result<S, ExportError>,
) -> Result<(), ExportError> {
    let mut writer = match mirror.writer.take() {
        Some(writer) => writer,
        None => {
            let (writer, note) = resume(store, make_sink()?, Some(&target.body.origin))?;
            mirror.published = note;
            writer
        }
    };
    let size = target.body.tree_size;
    for item in store.leaves(writer.size(), size) {
        let (seq, leaf) = item?;
        if seq != writer.size() {
            return Err(ExportError::Inconsistent(format!(
                "entry {} is missing",
                writer.size()
            )));
        }
        writer.push(&leaf, |tile| check_tile_against_store(store, tile))?;
    }
    writer.publish(&target.note, &target.body, projection)?;
    let summary = writer.take_summary();
    // The partials of a tile that is now full only take space: a reader
    // holding an older checkpoint reads the start of the full tile. After
    // the checkpoint, so nothing a published checkpoint needs is missing;
    // one that fails is left for good (it is still correct).
    for full in summary
        .written
        .iter()
        .filter(|path| path.starts_with("tile/") && !path.contains(".p/"))
    {
        if let Err(error) = writer.sink_mut().remove_partials(full) {
            tracing::warn!(%error, "cannot remove the partial tiles of a full tile");
        }
    }
    tracing::debug!(
        tree_size = size,
        files = summary.files_written,
        bytes = summary.bytes_written,
        "tiles published"
    );
    mirror.published = Some(target.note.clone());
    mirror.writer = Some(writer);
    Ok(())
}

/// The checkpoint to publish now, if any: the latest witnessed one where a
/// witness policy applies, else the latest one. `None` also when it would
/// take the mirror back (a witness policy set after the operator's
/// checkpoints were published: the witnesses catch up).
fn target(
    sequencer: &SequencerHandle,
    witnessing: &WitnessingHandle,
) -> Option<(Arc<SignedCheckpoint>, bool)> {
    if witnessing.policy().is_some() {
        witnessing.witnessed().map(|witnessed| (witnessed, true))
    } else {
        sequencer.checkpoint().map(|latest| (latest, false))
    }
}

/// Checks, before the node serves, that `dir` can hold this log's mirror:
/// creatable, and its `checkpoint` (if any) this log's and within the
/// store. A node that cannot publish where it was told to must not start.
pub fn check_dir(store: &Store, dir: &Path, origin: Option<&str>) -> anyhow::Result<()> {
    let sink = DirSink::create(dir)
        .with_context(|| format!("cannot publish tiles in {}", dir.display()))?;
    resume(store, sink, origin)
        .with_context(|| format!("cannot publish tiles in {}", dir.display()))?;
    Ok(())
}

/// Starts the publisher. The task ends when `shutdown` turns true (or the
/// sequencer stops); it holds the store, so await it before closing that.
pub fn start(
    store: Arc<Store>,
    dir: PathBuf,
    sequencer: SequencerHandle,
    witnessing: WitnessingHandle,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> (watch::Receiver<Published>, tokio::task::JoinHandle<()>) {
    let (report, published) = watch::channel(Published::default());
    let task = tokio::spawn(async move {
        let mut checkpoints = sequencer.watch_checkpoints();
        let mut witnessed = witnessing.watch_witnessed();
        let mut policies = sequencer.watch_witness_policy();
        let mut mirror = Some(Mirror::<DirSink> {
            writer: None,
            published: None,
        });
        let mut retry = FIRST_RETRY;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wanted = target(&sequencer, &witnessing).filter(|(checkpoint, _)| {
                let mirror = mirror.as_ref();
                let behind = mirror
                    .and_then(|mirror| mirror.writer.as_ref())
                    .is_none_or(|writer| writer.size() <= checkpoint.body.tree_size);
                let new = mirror.and_then(|mirror| mirror.published.as_deref())
                    != Some(checkpoint.note.as_str());
                behind && new
            });
            let mut failed = false;
            if let Some((checkpoint, is_witnessed)) = wanted {
                let projection = projection_within(&sequencer, &checkpoint.body);
                let store = store.clone();
                let dir = dir.clone();
                let mut state = mirror.take().expect("the mirror is back after each round");
                let target = checkpoint.clone();
                let (state, result) = tokio::task::spawn_blocking(move || {
                    let make_sink = || DirSink::create(&dir);
                    let result = publish(&store, &mut state, &target, projection, &make_sink);
                    (state, result)
                })
                .await
                .expect("the tiles publisher panicked");
                mirror = Some(state);
                match result {
                    Ok(()) => {
                        retry = FIRST_RETRY;
                        metrics
                            .tiles_published_tree_size
                            .set(checkpoint.body.tree_size as i64);
                        let _ = report.send(Published {
                            tree_size: checkpoint.body.tree_size,
                            witnessed: is_witnessed,
                        });
                        // Another checkpoint may have come while writing.
                        continue;
                    }
                    Err(error) => {
                        metrics.tiles_publish_failures.inc();
                        tracing::error!(%error, tree_size = checkpoint.body.tree_size, "cannot publish tiles; retrying");
                        failed = true;
                    }
                }
            }
            if failed {
                tokio::select! {
                    _ = tokio::time::sleep(retry) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                retry = (retry * 2).min(MAX_RETRY);
                continue;
            }
            tokio::select! {
                changed = checkpoints.changed() => if changed.is_err() { return },
                changed = witnessed.changed() => if changed.is_err() { return },
                changed = policies.changed() => if changed.is_err() { return },
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    });
    (published, task)
}

/// The projection head to publish with `body`: the served one if it is as
/// of an entry the checkpoint holds (a witnessed checkpoint lags it, and
/// then the file keeps the last one that was).
fn projection_within(sequencer: &SequencerHandle, body: &CheckpointBody) -> Option<(u64, Hash)> {
    let view = sequencer.projection();
    let as_of_seq = view.head.as_of_seq?;
    (as_of_seq < body.tree_size).then_some((as_of_seq, view.head.digest))
}
