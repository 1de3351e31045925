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
//! Witnessed logs (C2SP tlog-cosignature, docs/spec.md section 10): when a
//! witness policy applies to the checkpoint (the verifier's own, else the
//! one the log itself had set by the checkpoint's size), the checkpoint must
//! carry valid cosignatures of the policy's quorum, or the audit fails with
//! [`AuditFailure::NotWitnessed`]. A cosignature line that names a policy
//! witness and does not verify fails the checkpoint. The checkpoint an audit
//! accepts, and pins, is therefore always one the quorum cosigned.
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
use ceasefire_core::witness_policy::WitnessPolicy;
use ceasefire_grpc::proto::WitnessStatus;
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
    /// The checkpoint note to audit: the latest witnessed one where the
    /// source has one (it carries the cosignatures), else the latest signed.
    fn checkpoint_note(&mut self) -> anyhow::Result<String>;
    /// The projection (as_of_seq, digest) the source serves, if any, for an
    /// entry of the checkpoint [`LogSource::checkpoint_note`] hands over
    /// (`None` when the source's projection is beyond it, as it is when a
    /// witnessed checkpoint lags the log). Called first: a source that hands
    /// over its latest checkpoint reads the projection before it, so that
    /// the projection is never ahead of it.
    fn served_projection(&mut self) -> anyhow::Result<Option<(u64, Hash)>>;
    /// What the source says about each witness of the log's policy, as of
    /// the checkpoint it handed over (a server's `Checkpoint.witnesses`).
    /// Unsigned: named in a failure for the reader, never part of a verdict.
    fn witness_statuses(&self) -> Vec<WitnessStatus> {
        Vec::new()
    }
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
    /// Demand this policy's quorum of cosignatures (a policy file the
    /// verifier trusts) instead of the log's own policy, and even on a log
    /// that set none.
    pub witness_policy: Option<WitnessPolicy>,
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
    /// The source's copy is damaged where no entry is at fault (a store's
    /// head, checkpoint or projection record that does not read).
    #[error("damaged: {0}")]
    Damaged(String),
    /// The checkpoint lacks its witnesses' quorum (boxed: it is the
    /// largest failure, and every `Result` of the audit carries its size).
    #[error("{0}")]
    NotWitnessed(Box<NotWitnessed>),
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

/// A checkpoint a witness policy applies to, without its quorum of valid
/// cosignatures: what it is, what the policy demands, who cosigned and who
/// did not, and what the source said of each witness.
#[derive(Debug)]
pub struct NotWitnessed {
    pub size: u64,
    /// The checkpoint's root hash (base64).
    pub root: String,
    /// The checkpoint note as the source handed it over.
    pub note: String,
    /// Where the policy came from and its quorum rule.
    pub rule: String,
    /// Witnesses whose cosignature verified, in policy order.
    pub cosigned: Vec<String>,
    /// Witnesses of the policy without a valid cosignature, in policy order.
    pub missing: Vec<String>,
    /// What the source said of each witness, `(name, account)`: unsigned,
    /// for the reader only.
    pub server_says: Vec<(String, String)>,
}

impl std::fmt::Display for NotWitnessed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cosigned = if self.cosigned.is_empty() {
            "nobody".to_string()
        } else {
            self.cosigned.join(", ")
        };
        let said_of = |name: &str| self.server_says.iter().find(|(said_of, _)| said_of == name);
        let missing = self
            .missing
            .iter()
            .map(|name| match said_of(name) {
                Some((_, account)) => format!("{name} (the server says: {account})"),
                // A source that gives accounts, but none of this witness.
                None if !self.server_says.is_empty() => {
                    format!("{name} (the server says nothing of it)")
                }
                None => name.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        write!(
            f,
            "the checkpoint at tree size {} (root {}) is not witnessed: {}; cosigned by {cosigned}; missing: {missing}\n--- checkpoint\n{}",
            self.size, self.root, self.rule, self.note
        )
    }
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

/// A source's error: its finding that the log it holds is damaged
/// ([`LogDefect`]) is a verdict, anything else a failure to run.
fn source_error(error: anyhow::Error) -> AuditError {
    match error.downcast::<LogDefect>() {
        Ok(LogDefect {
            seq: Some(seq),
            reason,
        }) => AuditFailure::Entry { seq, reason }.into(),
        Ok(LogDefect { seq: None, reason }) => AuditFailure::Damaged(reason).into(),
        Err(error) => could_not_run(error),
    }
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
    /// The witnesses whose valid cosignature the checkpoint carries, in
    /// policy order (empty when no witness policy applies).
    pub witnessed_by: Vec<WitnessedBy>,
    /// The policy's witnesses without a valid cosignature on it.
    pub witnesses_missing: Vec<String>,
    /// The witness policy applied, as policy text; `None` when none applies
    /// (the log set none and the verifier gave none).
    pub witness_policy: Option<String>,
    /// Where that policy came from: "the log (entry N)" or "the verifier".
    pub witness_policy_from: Option<String>,
    /// Its quorum in short: "2 of 3 needed: quorum signatories".
    pub witness_quorum: Option<String>,
    pub seconds: f64,
    pub entries_per_second: f64,
}

/// One valid cosignature on the accepted checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WitnessedBy {
    pub name: String,
    /// When the witness says it cosigned (Unix seconds).
    pub timestamp: u64,
}

/// Verifies the whole log of `source`.
pub fn audit(
    source: &mut dyn LogSource,
    mut options: AuditOptions,
) -> Result<AuditReport, AuditError> {
    let started = Instant::now();
    let served_projection = source.served_projection().map_err(source_error)?;
    let note = source.checkpoint_note().map_err(source_error)?;
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

    // The quorum of witnesses, where a policy applies: before the pin is
    // replaced (at the end), so a pin only ever holds a witnessed checkpoint.
    // After the pin comparison, so that a fork is named as one even when the
    // forked checkpoint is not witnessed.
    let policy = match options.witness_policy.take() {
        Some(policy) => Some(("the verifier".to_string(), policy)),
        None => state
            .witness_policy
            .as_ref()
            .map(|(seq, policy)| (format!("the log (entry {seq})"), policy.clone())),
    };
    let (witnessed_by, witnesses_missing) = match &policy {
        Some((from, policy)) => check_witnesses(source, policy, from, &verifier, &note, &body)?,
        None => (Vec::new(), Vec::new()),
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
        witnessed_by,
        witnesses_missing,
        witness_policy: policy.as_ref().map(|(_, policy)| policy.to_text()),
        witness_policy_from: policy.as_ref().map(|(from, _)| from.clone()),
        witness_quorum: policy.as_ref().map(|(_, policy)| quorum_in_short(policy)),
        seconds,
        entries_per_second: size as f64 / seconds.max(Duration::from_micros(1).as_secs_f64()),
    })
}

/// Judges the checkpoint's cosignatures under `policy` (which came `from`
/// the log or the verifier). Returns who cosigned and who is missing when
/// the quorum is met; a cosignature that names a policy witness but does
/// not verify fails the checkpoint, and a quorum not met is
/// [`AuditFailure::NotWitnessed`], naming what the source says about each
/// witness.
fn check_witnesses(
    source: &dyn LogSource,
    policy: &WitnessPolicy,
    from: &str,
    verifier: &NoteVerifier,
    note: &str,
    body: &CheckpointBody,
) -> Result<(Vec<WitnessedBy>, Vec<String>), AuditFailure> {
    let (_, verdict) = policy.judge(note, verifier).map_err(|error| {
        AuditFailure::Checkpoint(format!(
            "a cosignature of a witness of the policy of {from} does not verify: {error}"
        ))
    })?;
    if !verdict.satisfied {
        return Err(AuditFailure::NotWitnessed(Box::new(NotWitnessed {
            size: body.tree_size,
            root: ceasefire_core::key_text(body.root_hash),
            note: note.to_string(),
            rule: format!(
                "the witness policy of {from} demands {}",
                quorum_rule(policy)
            ),
            cosigned: verdict.cosigned.into_iter().map(|c| c.name).collect(),
            missing: verdict.missing,
            server_says: source
                .witness_statuses()
                .iter()
                .map(|status| (status.name.clone(), status_account(status)))
                .collect(),
        })));
    }
    let by = verdict
        .cosigned
        .into_iter()
        .map(|cosigned| WitnessedBy {
            name: cosigned.name,
            timestamp: cosigned.timestamp,
        })
        .collect();
    Ok((by, verdict.missing))
}

/// The quorum in short, as people read it: "2 of 3 needed: quorum signatories"
/// (a group's threshold of its members; one witness is 1 of 1).
fn quorum_in_short(policy: &WitnessPolicy) -> String {
    match policy
        .groups
        .iter()
        .find(|group| group.name == policy.quorum)
    {
        Some(group) => format!(
            "{} of {} needed: quorum {}",
            group.threshold,
            group.members.len(),
            group.name
        ),
        None => format!("1 of 1 needed: quorum {}", policy.quorum),
    }
}

/// The quorum rule in full: the quorum, then each group it depends on,
/// defined once (`quorum top; top = 2 of (north.example/w, signatories);
/// signatories = 2 of (...)`), so the text stays linear in the policy
/// even where groups share members.
fn quorum_rule(policy: &WitnessPolicy) -> String {
    let mut needed = std::collections::BTreeSet::from([policy.quorum.as_str()]);
    let mut definitions = Vec::new();
    // Groups only name earlier names: walking them from the last finds
    // every group the quorum depends on in one pass.
    for group in policy.groups.iter().rev() {
        if needed.contains(group.name.as_str()) {
            needed.extend(group.members.iter().map(String::as_str));
            definitions.push(format!(
                "{} = {} of ({})",
                group.name,
                group.threshold,
                group.members.join(", ")
            ));
        }
    }
    // Found from the quorum down: the order a reader follows.
    std::iter::once(format!("quorum {}", policy.quorum))
        .chain(definitions)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A server's account of one witness, in words.
fn status_account(status: &WitnessStatus) -> String {
    let cosigned = match status.cosigned_size {
        0 => "has cosigned no checkpoint of this log".to_string(),
        size => format!("cosigned up to tree size {size}"),
    };
    if status.last_error.is_empty() {
        cosigned
    } else {
        format!("{cosigned}; its last request failed: {}", status.last_error)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use ceasefire_core::cosignature::Cosigner;
    use ed25519_dalek::SigningKey;

    fn vkey(name: &str, seed: u8) -> String {
        Cosigner::new(name, SigningKey::from_bytes(&[seed; 32]))
            .unwrap()
            .verifier()
            .vkey()
    }

    #[test]
    fn the_quorum_is_stated_from_the_top_each_group_once() {
        let policy = WitnessPolicy::parse_text(&format!(
            "witness a.example/w {}\nwitness b.example/w {}\nwitness c.example/w {}\n\
             group pair 2 a.example/w b.example/w\n\
             group unused any c.example/w\n\
             group top all pair c.example/w\nquorum top\n",
            vkey("a.example/w", 1),
            vkey("b.example/w", 2),
            vkey("c.example/w", 3)
        ))
        .unwrap();
        assert_eq!(
            quorum_rule(&policy),
            "quorum top; top = 2 of (pair, c.example/w); pair = 2 of (a.example/w, b.example/w)"
        );
        assert_eq!(quorum_in_short(&policy), "2 of 2 needed: quorum top");

        let one = WitnessPolicy::parse_text(&format!(
            "witness a.example/w {}\nquorum a.example/w\n",
            vkey("a.example/w", 1)
        ))
        .unwrap();
        assert_eq!(quorum_rule(&one), "quorum a.example/w");
        assert_eq!(quorum_in_short(&one), "1 of 1 needed: quorum a.example/w");
    }

    #[test]
    fn a_missing_witness_is_named_with_what_the_server_says() {
        let message = NotWitnessed {
            size: 12,
            root: "ROOT".into(),
            note: "NOTE\n".into(),
            rule: "the witness policy of the log (entry 4) demands quorum a.example/w".into(),
            cosigned: vec![],
            missing: vec!["a.example/w".into(), "b.example/w".into()],
            server_says: vec![("a.example/w".into(), "cosigned up to tree size 10".into())],
        }
        .to_string();
        assert_eq!(
            message,
            "the checkpoint at tree size 12 (root ROOT) is not witnessed: the witness policy of the log (entry 4) demands quorum a.example/w; \
             cosigned by nobody; missing: a.example/w (the server says: cosigned up to tree size 10), b.example/w (the server says nothing of it)\n--- checkpoint\nNOTE\n"
        );
    }
}
