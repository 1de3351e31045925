//! The auditor: verify a whole ledger from its bytes, trusting nobody.
//!
//! Entries come from a [`LogSource`] (a server, a tlog-tiles export, or the
//! node's data-directory snapshot); everything else is the pure core: each leaf's
//! signatures are checked strictly, in parallel (`rayon`, same rule as the
//! server), then [`Replay`] checks encoding, chain, time order, nonces and
//! the rules in order and folds the projection. The Merkle root of the
//! leaves must be the checkpoint's, the checkpoint must be signed by the
//! operator key named in the genesis (or given), and the projection digest
//! must be the one the source serves. A pinned checkpoint must be a prefix
//! of the new one; a fork or a shrink is reported with both checkpoints.
//!
//! Nothing here uses the server's code paths: an auditor trusts the core,
//! which is small and specified (docs/spec.md), not the operator's service.
//! This crate does not link sled or the node (`cargo tree -p ceasefire-audit`).

#![forbid(unsafe_code)]

mod pipeline;
pub mod sources;
pub mod tiles;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ceasefire_core::checkpoint::{open_checkpoint, parse_unverified, CheckpointBody, NoteVerifier};
use ceasefire_core::merkle::{self, Hash, MemorySource, SubtreeSource};
use pipeline::Replayed;

/// Inclusion proofs sampled from a server.
const SAMPLED_INCLUSION_PROOFS: u64 = 16;

/// A source's finding that the log it holds is wrong (an entry missing, a
/// bundle malformed), as opposed to a failure to read it at all
/// ([`SourceError::Defect`]); the audit reports it as a failure at the entry.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct LogDefect {
    /// The entry it concerns, when the source knows; else the next one due.
    pub seq: Option<u64>,
    pub reason: String,
}

/// Why a source could not hand over the next leaf: the copy it reads is
/// wrong (a verdict on the log, exit 1) or could not be read at all (no
/// verdict, exit 2). Sources say which; the audit matches on it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source holds a wrong log at this place (a missing entry, a
    /// malformed bundle): the audit fails at that entry.
    #[error(transparent)]
    Defect(#[from] LogDefect),
    /// The source could not be read (network, permissions, a missing file):
    /// the audit could not run.
    #[error("{0:#}")]
    Unreadable(#[from] anyhow::Error),
}

/// The leaves of a log, in order, as a source reads them.
pub type Leaves<'a> = Box<dyn Iterator<Item = Result<Vec<u8>, SourceError>> + 'a>;

/// Where the auditor reads a log from.
pub trait LogSource {
    /// A short description for messages ("server http://...").
    fn describe(&self) -> String;
    /// The latest signed checkpoint note.
    fn checkpoint_note(&mut self) -> anyhow::Result<String>;
    /// The projection (as_of_seq, digest) the source serves, if any. Read
    /// before the checkpoint, so it is never ahead of it.
    fn served_projection(&mut self) -> anyhow::Result<Option<(u64, Hash)>>;
    /// Leaves `0..size`, in order.
    fn leaves(&mut self, size: u64) -> anyhow::Result<Leaves<'_>>;
    /// A consistency proof from the source, if it serves them.
    fn consistency_proof(
        &mut self,
        old_size: u64,
        new_size: u64,
    ) -> anyhow::Result<Option<Vec<Hash>>>;
    /// An inclusion proof from the source, if it serves them.
    fn inclusion_proof(&mut self, seq: u64, size: u64) -> anyhow::Result<Option<Vec<Hash>>>;
    /// Compares tree hashes the source stores with the tree the auditor
    /// rebuilt from the leaves; returns the first mismatch, if any.
    fn stored_tree_mismatch(
        &mut self,
        _tree: &MemorySource,
        _size: u64,
    ) -> anyhow::Result<Option<String>> {
        Ok(None)
    }
}

/// What to check beyond the log itself.
#[derive(Default)]
pub struct AuditOptions {
    /// Verify checkpoints with this key instead of the genesis's.
    pub operator_key: Option<ed25519_dalek::VerifyingKey>,
    /// Keep the verified checkpoint here; demand consistency with the one kept.
    pub pin: Option<PathBuf>,
    /// Called with (entries done, total) as the audit goes.
    pub progress: Option<Box<dyn FnMut(u64, u64)>>,
}

/// The log does not hold up: where and why. The exit code 1 cases.
#[derive(Debug, thiserror::Error)]
pub enum AuditFailure {
    #[error("entry {seq}: {reason}")]
    Entry { seq: u64, reason: String },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("projection: {0}")]
    Projection(String),
    #[error("proof: {0}")]
    Proof(String),
    #[error("stored tree: {0}")]
    Tree(String),
    #[error("the log forked: the pinned checkpoint is not a prefix of the current one\n--- pinned\n{pinned}--- current\n{current}")]
    Fork { pinned: String, current: String },
    #[error("the log shrank from {pinned_size} to {current_size} entries\n--- pinned\n{pinned}--- current\n{current}")]
    Shrank {
        pinned_size: u64,
        current_size: u64,
        pinned: String,
        current: String,
    },
}

/// Why an audit ended without a verdict on the log (exit code 2), or with one.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Failed(#[from] AuditFailure),
    #[error("could not run: {0:#}")]
    CouldNotRun(anyhow::Error),
}

fn could_not_run(error: impl Into<anyhow::Error>) -> AuditError {
    AuditError::CouldNotRun(error.into())
}

/// What a successful audit establishes.
#[derive(Debug, serde::Serialize)]
pub struct AuditReport {
    pub source: String,
    pub entries: u64,
    pub agreement_id: String,
    pub origin: String,
    pub parties: usize,
    pub zones: usize,
    pub commitments: usize,
    pub observations: u64,
    pub checkpoint: String,
    pub root_hash: String,
    pub projection_as_of_seq: Option<u64>,
    pub projection_digest: String,
    /// Whether the source served a projection digest and it matched.
    pub projection_checked: bool,
    pub proofs_checked: u64,
    /// "pinned" (first run), "consistent" (with the previous pin) or "none".
    pub pin: String,
    pub seconds: f64,
    pub entries_per_second: f64,
}

/// Verifies the whole log of `source`.
pub fn audit(
    source: &mut dyn LogSource,
    mut options: AuditOptions,
) -> Result<AuditReport, AuditError> {
    let started = Instant::now();
    let served_projection = source.served_projection().map_err(could_not_run)?;
    let note = source.checkpoint_note().map_err(could_not_run)?;
    let claimed = parse_unverified(&note)
        .map_err(|error| AuditFailure::Checkpoint(format!("unreadable: {error}")))?;
    let size = claimed.tree_size;

    let Replayed {
        replay,
        entries: done,
        observations,
        projection_at_served,
    } = pipeline::replay_log(
        source,
        size,
        served_projection.map(|(as_of, _)| as_of),
        options.progress.as_mut(),
    )?;
    if done != size {
        return Err(AuditFailure::Checkpoint(format!(
            "the checkpoint claims {size} entries but the source holds {done}"
        ))
        .into());
    }
    let Some(state) = replay.state.as_ref() else {
        return Err(AuditFailure::Checkpoint("the log is empty: no genesis".into()).into());
    };

    // The checkpoint: signed by the operator key, for this origin, over this root.
    let operator_key = match options.operator_key {
        Some(key) => key,
        None => ed25519_dalek::VerifyingKey::from_bytes(&state.agreement.operator_public_key)
            .map_err(|_| AuditFailure::Entry {
                seq: 0,
                reason: "the genesis operator key is not a valid Ed25519 key".into(),
            })?,
    };
    let verifier = NoteVerifier::new(&state.agreement.origin, &operator_key)
        .map_err(|error| AuditFailure::Checkpoint(error.to_string()))?;
    let body = open_checkpoint(&note, &verifier).map_err(|error| {
        AuditFailure::Checkpoint(format!(
            "not signed by the operator key of origin {:?}: {error}",
            state.agreement.origin
        ))
    })?;
    let tree = MemorySource::from_leaf_hashes(replay.leaf_hashes().iter().copied());
    let root = merkle::root(&tree, size).map_err(could_not_run)?;
    if root != body.root_hash {
        return Err(AuditFailure::Checkpoint(format!(
            "its root {} is not the Merkle root {} of the {size} entries",
            ceasefire_core::key_text(body.root_hash),
            ceasefire_core::key_text(root)
        ))
        .into());
    }

    // Stored tree hashes (a tiles export's hash tiles) must be the leaves' too.
    if let Some(mismatch) = source
        .stored_tree_mismatch(&tree, size)
        .map_err(could_not_run)?
    {
        return Err(AuditFailure::Tree(mismatch).into());
    }

    // A pinned checkpoint must be a prefix of this one: checked before
    // anything else about the new state, so a fork or a shrink is named as such.
    let mut proofs_checked = 0;
    let pin_path = options.pin.take();
    let pin = match &pin_path {
        Some(path) => {
            let (outcome, checked) = check_pin(path, source, &verifier, &tree, &note, &body)?;
            proofs_checked += checked;
            outcome
        }
        None => "none".into(),
    };

    // The projection digest the source serves must be the one the fold gives.
    let projection_checked = match served_projection {
        Some((as_of, served)) => match projection_at_served {
            Some(ours) if ours == served => true,
            Some(ours) => {
                return Err(AuditFailure::Projection(format!(
                    "the served digest as of entry {as_of} is {}, the log folds to {}",
                    hex::encode(served),
                    hex::encode(ours)
                ))
                .into())
            }
            None => {
                return Err(AuditFailure::Projection(format!(
                    "the served projection is as of entry {as_of}, beyond the checkpoint's {size} entries"
                ))
                .into())
            }
        },
        None => false,
    };

    proofs_checked += sample_proofs(source, &tree, &body)?;
    // Only a log that passed every check replaces the pin.
    if let Some(path) = &pin_path {
        write_pin(path, &note)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(AuditReport {
        source: source.describe(),
        entries: size,
        agreement_id: state.agreement.agreement_id.clone(),
        origin: state.agreement.origin.clone(),
        parties: state.parties.len(),
        zones: state.zones.len(),
        commitments: state.commitments.len(),
        observations,
        checkpoint: note.clone(),
        root_hash: ceasefire_core::key_text(root),
        projection_as_of_seq: replay.projection.as_of_seq,
        projection_digest: hex::encode(replay.projection.digest()),
        projection_checked,
        proofs_checked,
        pin,
        seconds,
        entries_per_second: size as f64 / seconds.max(Duration::from_micros(1).as_secs_f64()),
    })
}

/// Checks a sample of the source's inclusion and consistency proofs
/// against the tree the auditor rebuilt (sources that serve none: 0).
fn sample_proofs(
    source: &mut dyn LogSource,
    tree: &MemorySource,
    body: &CheckpointBody,
) -> Result<u64, AuditError> {
    let size = body.tree_size;
    let mut checked = 0;
    let step = (size / SAMPLED_INCLUSION_PROOFS).max(1);
    for seq in (0..size).step_by(step as usize).chain(size.checked_sub(1)) {
        let Some(proof) = source.inclusion_proof(seq, size).map_err(could_not_run)? else {
            return Ok(0);
        };
        let leaf_hash = tree.subtree_hash(0, seq).map_err(could_not_run)?;
        merkle::verify_inclusion(&leaf_hash, seq, size, &proof, &body.root_hash).map_err(
            |error| AuditFailure::Proof(format!("inclusion of entry {seq} in {size}: {error}")),
        )?;
        checked += 1;
        let old_size = seq + 1;
        if let Some(proof) = source
            .consistency_proof(old_size, size)
            .map_err(could_not_run)?
        {
            let old_root = merkle::root(tree, old_size).map_err(could_not_run)?;
            merkle::verify_consistency(old_size, size, &old_root, &body.root_hash, &proof)
                .map_err(|error| {
                    AuditFailure::Proof(format!("consistency {old_size} -> {size}: {error}"))
                })?;
            checked += 1;
        }
    }
    Ok(checked)
}

/// Compares the pinned checkpoint with the verified one. Returns the
/// outcome and how many proofs were checked.
fn check_pin(
    path: &std::path::Path,
    source: &mut dyn LogSource,
    verifier: &NoteVerifier,
    tree: &MemorySource,
    note: &str,
    body: &CheckpointBody,
) -> Result<(String, u64), AuditError> {
    let mut checked = 0;
    let outcome = match std::fs::read_to_string(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => "pinned".to_string(),
        Err(error) => {
            return Err(could_not_run(anyhow::anyhow!(
                "cannot read the pin {}: {error}",
                path.display()
            )))
        }
        Ok(pinned_note) => {
            let pinned = open_checkpoint(&pinned_note, verifier).map_err(|error| {
                AuditFailure::Checkpoint(format!(
                    "the pinned checkpoint in {} is not this log's: {error}",
                    path.display()
                ))
            })?;
            if pinned.tree_size > body.tree_size {
                return Err(AuditFailure::Shrank {
                    pinned_size: pinned.tree_size,
                    current_size: body.tree_size,
                    pinned: pinned_note,
                    current: note.to_string(),
                }
                .into());
            }
            let fork = || AuditFailure::Fork {
                pinned: pinned_note.clone(),
                current: note.to_string(),
            };
            // Our own rebuild of the old root settles it...
            let old_root = merkle::root(tree, pinned.tree_size).map_err(could_not_run)?;
            if old_root != pinned.root_hash {
                return Err(fork().into());
            }
            // ...and the source must also prove it, where it serves proofs.
            if let Some(proof) = source
                .consistency_proof(pinned.tree_size, body.tree_size)
                .map_err(could_not_run)?
            {
                merkle::verify_consistency(
                    pinned.tree_size,
                    body.tree_size,
                    &pinned.root_hash,
                    &body.root_hash,
                    &proof,
                )
                .map_err(|_| fork())?;
                checked += 1;
            }
            "consistent".to_string()
        }
    };
    Ok((outcome, checked))
}

/// Pins a verified checkpoint (atomically: write a sibling, rename).
fn write_pin(path: &std::path::Path, note: &str) -> Result<(), AuditError> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, note)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|error| {
            could_not_run(anyhow::anyhow!(
                "cannot write the pin {}: {error}",
                path.display()
            ))
        })?;
    Ok(())
}
