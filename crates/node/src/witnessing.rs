//! Witnessing: collects the cosignatures of the log's witnesses on its
//! checkpoints and publishes the latest checkpoint a quorum cosigned.
//!
//! Shape (one task per witness, one coordinator):
//! - The coordinator picks a *target*: the latest durable checkpoint when
//!   the previous target is witnessed (or has waited [`ROUND_PATIENCE`]).
//!   All witnesses are asked about the same target, because a quorum must
//!   cosign one tree size; chasing every batch would leave each witness on
//!   its own size and none with a quorum.
//! - Each witness task posts the target to its witness (C2SP tlog-witness
//!   `add-checkpoint`) with the consistency proof from the size it last
//!   cosigned, retries once on 409 with the size the witness gave, checks the
//!   cosignature it gets back, and reports it. A task busy with a slow or
//!   dead witness holds up nobody: the coordinator moves on with the quorum.
//! - When the cosignatures of one size satisfy the policy, the note with
//!   all of them is published (watch channel), recorded in the store and
//!   answered by `GetCheckpoint{witnessed}`.
//!
//! Invariants: the published witnessed size never goes down; a published
//! note always opens with the operator's key and satisfies the policy in
//! force (every line was verified before it was counted). Ingest never waits
//! on any of this: the sequencer only publishes checkpoints into a watch
//! channel this module reads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ceasefire_core::checkpoint::NoteVerifier;
use ceasefire_core::cosignature::{add_signature_lines, open_cosigned};
use ceasefire_core::witness_policy::PolicyWitness;
use ceasefire_witness::client::{AddCheckpointError, WitnessClient};
use ed25519_dalek::VerifyingKey;
use tokio::sync::{mpsc, watch};

use crate::metrics::{Metrics, WitnessLabels, WitnessRequestLabels};
use crate::sequencer::{ActivePolicy, SequencerHandle, SignedCheckpoint};
use crate::storage::Store;

/// How long a target may wait for its quorum before the coordinator offers
/// the witnesses a newer checkpoint. Witnesses answer in milliseconds; a
/// round that takes this long has too few witnesses up, and the ones that
/// are should keep cosigning the newest tree so the quorum forms as soon as
/// one more returns.
const ROUND_PATIENCE: Duration = Duration::from_secs(2);

/// Sizes whose cosignatures are kept while they wait for a quorum. With too
/// few witnesses up, the ones that are cosign a new target every
/// [`ROUND_PATIENCE`] and the returning ones are offered the newest: old
/// sizes will not complete, and an outage of days must not grow memory.
const MAX_PENDING_SIZES: usize = 64;

/// Per-request limit: a witness does one signature and one fsync; longer
/// than this is a witness to stop waiting for.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Backoff after a failed request, doubling up to [`MAX_BACKOFF`], so a
/// witness that is down costs a connection attempt every few seconds.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the ledger knows of one witness, for `GetCheckpoint` and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WitnessState {
    /// The largest size it cosigned for us (0: none yet).
    pub cosigned_size: u64,
    /// Why the last request failed; empty after a success.
    pub last_error: String,
}

/// What the server reads: the latest witnessed checkpoint and the witnesses'
/// states.
#[derive(Clone)]
pub struct WitnessingHandle {
    witnessed: watch::Receiver<Option<Arc<SignedCheckpoint>>>,
    states: Arc<Mutex<BTreeMap<String, WitnessState>>>,
    policies: watch::Receiver<Option<ActivePolicy>>,
}

impl WitnessingHandle {
    /// The latest witnessed checkpoint, if any.
    pub fn witnessed(&self) -> Option<Arc<SignedCheckpoint>> {
        self.witnessed.borrow().clone()
    }

    /// A receiver that changes with every newly witnessed checkpoint.
    pub fn watch_witnessed(&self) -> watch::Receiver<Option<Arc<SignedCheckpoint>>> {
        self.witnessed.clone()
    }

    /// The witness policy in force, if the log has one.
    pub fn policy(&self) -> Option<ActivePolicy> {
        self.policies.borrow().clone()
    }

    /// Each witness of the policy in force, with what the ledger knows of it.
    pub fn states(&self) -> Vec<(String, WitnessState)> {
        let Some(policy) = self.policy() else {
            return Vec::new();
        };
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        policy
            .1
            .witnesses
            .iter()
            .map(|witness| {
                let name = witness.verifier.name().to_owned();
                let state = states.get(&name).cloned().unwrap_or_default();
                (name, state)
            })
            .collect()
    }
}

/// A cosignature a witness task verified, for the coordinator to count.
struct Cosignature {
    /// The seq of the policy the task worked for: a report a dismissed
    /// crew left in the channel must not count under the next policy.
    policy_seq: u64,
    witness: String,
    checkpoint: Arc<SignedCheckpoint>,
    line: String,
}

/// Starts collecting. `operator_key` is the key checkpoints are signed
/// with. The returned task ends when `shutdown` turns true (or the
/// sequencer stops), once every witness task has ended: await it before
/// closing the store, since the tasks hold it.
pub fn start(
    store: Arc<Store>,
    sequencer: &SequencerHandle,
    operator_key: VerifyingKey,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> (WitnessingHandle, tokio::task::JoinHandle<()>) {
    let recorded = recorded_witnessed(&store, sequencer, &operator_key);
    // The gauge states what is served from the start, not from the next
    // quorum: a restarted node serves its recorded witnessed checkpoint.
    if let Some(recorded) = &recorded {
        metrics
            .witnessed_tree_size
            .set(recorded.body.tree_size as i64);
    }
    let (publish, witnessed) = watch::channel(recorded);
    let states = Arc::new(Mutex::new(BTreeMap::new()));
    let policies = sequencer.watch_witness_policy();
    let handle = WitnessingHandle {
        witnessed,
        states: states.clone(),
        policies: policies.clone(),
    };
    let mut checkpoints = sequencer.watch_checkpoints();
    let task = tokio::spawn(async move {
        // The origin is the genesis's: wait for the first checkpoint.
        let first = tokio::select! {
            first = checkpoints.wait_for(Option::is_some) => {
                first.ok().and_then(|first| first.as_ref().map(|c| c.body.origin.clone()))
            }
            _ = shutdown.wait_for(|stop| *stop) => None,
        };
        let Some(origin) = first else {
            return;
        };
        let operator = match NoteVerifier::new(&origin, &operator_key) {
            Ok(verifier) => verifier,
            Err(error) => {
                tracing::error!(%error, "cannot verify this log's checkpoints; not collecting cosignatures");
                return;
            }
        };
        let coordinator = Coordinator {
            store,
            checkpoints,
            policies,
            operator,
            publish,
            states,
            metrics,
        };
        coordinator.run(shutdown).await
    });
    (handle, task)
}

/// The witnessed note the store holds, if it still opens with the
/// operator's key and its root is the log's at that size: a store edited by
/// hand or restored from elsewhere must not make us serve a stale claim.
fn recorded_witnessed(
    store: &Store,
    sequencer: &SequencerHandle,
    operator_key: &VerifyingKey,
) -> Option<Arc<SignedCheckpoint>> {
    let note = store.witnessed_note().ok().flatten()?;
    let policy = sequencer.watch_witness_policy().borrow().clone()?;
    let head = sequencer.checkpoint()?;
    let operator = NoteVerifier::new(&head.body.origin, operator_key).ok()?;
    let (body, verdict) = policy.1.judge(&note, &operator).ok()?;
    let root = store
        .frontier(body.tree_size)
        .ok()
        .filter(|_| body.tree_size <= head.body.tree_size)?
        .root();
    if !verdict.satisfied || root != body.root_hash {
        tracing::warn!(
            size = body.tree_size,
            "the recorded witnessed checkpoint no longer holds; collecting anew"
        );
        return None;
    }
    Some(Arc::new(SignedCheckpoint { body, note }))
}

struct Coordinator {
    store: Arc<Store>,
    checkpoints: watch::Receiver<Option<Arc<SignedCheckpoint>>>,
    policies: watch::Receiver<Option<ActivePolicy>>,
    operator: NoteVerifier,
    publish: watch::Sender<Option<Arc<SignedCheckpoint>>>,
    states: Arc<Mutex<BTreeMap<String, WitnessState>>>,
    metrics: Arc<Metrics>,
}

/// The witness tasks of one policy; dismissed when it changes or the node
/// stops.
struct Crew {
    policy: ActivePolicy,
    target: watch::Sender<Option<Arc<SignedCheckpoint>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Verified cosignature lines by tree size, then by witness.
    collected: BTreeMap<u64, (Arc<SignedCheckpoint>, BTreeMap<String, String>)>,
}

impl Crew {
    /// Ends every task and waits until each has dropped what it held (the
    /// store among them).
    async fn dismiss(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

impl Coordinator {
    /// Runs until `shutdown` turns true or the sequencer stops, then
    /// dismisses the witness tasks.
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let (report, mut reports) = mpsc::channel::<Cosignature>(64);
        let mut crew: Option<Crew> = None;
        let mut round_started = tokio::time::Instant::now();
        loop {
            let policy = self.policies.borrow_and_update().clone();
            if crew.as_ref().map(|c| c.policy.0) != policy.as_ref().map(|p| p.0) {
                if let Some(old) = crew.take() {
                    old.dismiss().await;
                }
                if let Some(policy) = &policy {
                    self.withdraw_unless_witnessed_under(policy);
                }
                crew = policy.map(|policy| self.hire(policy, &report));
                round_started = tokio::time::Instant::now();
            }
            // Whether a target waits for its quorum (then the round's
            // patience is what wakes the loop, to offer a newer one).
            let mut waiting = false;
            if let Some(crew) = crew.as_mut() {
                let witnessed_size = self.witnessed_size();
                let target_size = crew.target.borrow().as_ref().map(|t| t.body.tree_size);
                let latest = self.checkpoints.borrow_and_update().clone();
                let target_done = target_size.is_none_or(|size| size <= witnessed_size);
                let impatient = round_started.elapsed() >= ROUND_PATIENCE;
                if let Some(latest) = latest {
                    let newer = Some(latest.body.tree_size) > target_size
                        && latest.body.tree_size > witnessed_size;
                    // The tree must hold the policy's event, or the policy
                    // does not apply to it.
                    let covered = latest.body.tree_size > crew.policy.0;
                    if newer && covered && (target_done || impatient) {
                        crew.target.send_replace(Some(latest));
                        round_started = tokio::time::Instant::now();
                    }
                }
                if round_started.elapsed() >= ROUND_PATIENCE {
                    // Nothing newer to offer yet: be patient for another
                    // round rather than wake at once again.
                    round_started = tokio::time::Instant::now();
                }
                waiting = crew
                    .target
                    .borrow()
                    .as_ref()
                    .is_some_and(|target| target.body.tree_size > witnessed_size);
            }
            let go_on = tokio::select! {
                changed = self.policies.changed() => changed.is_ok(),
                changed = self.checkpoints.changed() => changed.is_ok(),
                Some(cosignature) = reports.recv() => {
                    if let Some(crew) = crew.as_mut() {
                        self.count(crew, cosignature);
                    }
                    true
                }
                _ = tokio::time::sleep_until(round_started + ROUND_PATIENCE), if waiting => true,
                _ = shutdown.wait_for(|stop| *stop) => false,
            };
            if !go_on {
                break;
            }
        }
        if let Some(crew) = crew {
            crew.dismiss().await;
        }
    }

    /// A new policy in force: the published note stays only if it is
    /// witnessed under it too (a note cosigned by the old witnesses proves
    /// nothing under new ones), as `recorded_witnessed` decides on start-up.
    fn withdraw_unless_witnessed_under(&self, policy: &ActivePolicy) {
        let published = self.publish.borrow().clone();
        let Some(published) = published else {
            return;
        };
        let holds = policy
            .1
            .judge(&published.note, &self.operator)
            .is_ok_and(|(_, verdict)| verdict.satisfied);
        if !holds {
            tracing::info!(
                size = published.body.tree_size,
                policy_seq = policy.0,
                "a new witness policy: the witnessed checkpoint lacks its quorum and is withdrawn until it cosigns one"
            );
            self.metrics.witnessed_tree_size.set(0);
            self.publish.send_replace(None);
        }
    }

    fn witnessed_size(&self) -> u64 {
        self.publish
            .borrow()
            .as_ref()
            .map_or(0, |checkpoint| checkpoint.body.tree_size)
    }

    /// Starts one task per witness of `policy`.
    fn hire(&self, policy: ActivePolicy, report: &mpsc::Sender<Cosignature>) -> Crew {
        let (target, targets) = watch::channel(None);
        {
            let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            states.clear();
        }
        let tasks = policy
            .1
            .witnesses
            .iter()
            .map(|witness| {
                let task = WitnessTask {
                    policy_seq: policy.0,
                    witness: witness.clone(),
                    store: self.store.clone(),
                    operator: self.operator.clone(),
                    targets: targets.clone(),
                    report: report.clone(),
                    states: self.states.clone(),
                    metrics: self.metrics.clone(),
                };
                tokio::spawn(task.run())
            })
            .collect();
        tracing::info!(
            witnesses = policy.1.witnesses.len(),
            quorum = %policy.1.quorum,
            policy_seq = policy.0,
            "collecting cosignatures"
        );
        Crew {
            policy,
            target,
            tasks,
            collected: BTreeMap::new(),
        }
    }

    /// Counts one verified cosignature; publishes the size it completes.
    fn count(&self, crew: &mut Crew, cosignature: Cosignature) {
        let size = cosignature.checkpoint.body.tree_size;
        if cosignature.policy_seq != crew.policy.0 || size <= self.witnessed_size() {
            return;
        }
        if !crew.collected.contains_key(&size) && crew.collected.len() >= MAX_PENDING_SIZES {
            crew.collected.pop_first();
        }
        let (checkpoint, lines) = crew
            .collected
            .entry(size)
            .or_insert_with(|| (cosignature.checkpoint.clone(), BTreeMap::new()));
        lines.insert(cosignature.witness, cosignature.line);
        let names: BTreeSet<&str> = lines.keys().map(String::as_str).collect();
        if !crew.policy.1.is_satisfied_by(&names) {
            return;
        }
        let all_lines: String = lines.values().map(String::as_str).collect();
        let note = add_signature_lines(&checkpoint.note, &all_lines);
        let witnessed = Arc::new(SignedCheckpoint {
            body: checkpoint.body.clone(),
            note,
        });
        if let Err(error) = self.store.record_witnessed(&witnessed.note) {
            // Serving it is still right; it is re-collected after a restart.
            tracing::warn!(%error, size, "could not record the witnessed checkpoint");
        }
        // Debug: under load this is every few milliseconds; the metric
        // `witnessed_tree_size` and GetCheckpoint are how people follow it.
        tracing::debug!(
            size,
            cosigners = ?names,
            "checkpoint witnessed"
        );
        self.metrics.witnessed_tree_size.set(size as i64);
        self.publish.send_replace(Some(witnessed));
        crew.collected = crew.collected.split_off(&(size + 1));
    }
}

/// One witness's worker: posts each new target, keeps the witness's size.
struct WitnessTask {
    policy_seq: u64,
    witness: PolicyWitness,
    /// Shared with the node; the coordinator dismisses (aborts and awaits)
    /// every task before it ends, so none outlives the node's store.
    store: Arc<Store>,
    operator: NoteVerifier,
    targets: watch::Receiver<Option<Arc<SignedCheckpoint>>>,
    report: mpsc::Sender<Cosignature>,
    states: Arc<Mutex<BTreeMap<String, WitnessState>>>,
    metrics: Arc<Metrics>,
}

impl WitnessTask {
    fn name(&self) -> &str {
        self.witness.verifier.name()
    }

    async fn run(mut self) {
        let Some(url) = self.witness.url.clone() else {
            self.set_error("the policy gives no URL for this witness".into());
            return;
        };
        let client =
            match WitnessClient::new(&url).map(|client| client.with_timeout(REQUEST_TIMEOUT)) {
                Ok(client) => client,
                Err(error) => {
                    self.set_error(format!("unusable URL {url:?}: {error}"));
                    return;
                }
            };
        // The witness's size as far as we know; 0 until it tells us more
        // (a 409 gives its size, and we retry once from there).
        let mut known_size = 0u64;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let target = self.targets.borrow_and_update().clone();
            let Some(target) = target.filter(|t| t.body.tree_size > known_size) else {
                if self.targets.changed().await.is_err() {
                    return;
                }
                continue;
            };
            match self.post(&client, &target, &mut known_size).await {
                Ok(line) => {
                    backoff = FIRST_BACKOFF;
                    self.count_outcome("cosigned");
                    let cosignature = Cosignature {
                        policy_seq: self.policy_seq,
                        witness: self.name().to_owned(),
                        checkpoint: target,
                        line,
                    };
                    if self.report.send(cosignature).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    self.count_outcome("failed");
                    self.set_error(error);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Posts `target` from `known_size`, once more from the witness's own
    /// size if it answers 409 with another one.
    async fn post(
        &self,
        client: &WitnessClient,
        target: &Arc<SignedCheckpoint>,
        known_size: &mut u64,
    ) -> Result<String, String> {
        let size = target.body.tree_size;
        let mut retried = false;
        loop {
            if *known_size > size {
                return Err(format!(
                    "the witness has cosigned size {known_size}, beyond this log's {size}: it saw a larger tree of this origin"
                ));
            }
            let proof = match self.store.consistency_proof(*known_size, size) {
                Ok(proof) => proof,
                Err(error) => return Err(format!("cannot read the proof: {error}")),
            };
            match client
                .add_checkpoint(*known_size, &proof, &target.note)
                .await
            {
                Ok(lines) => return self.accept(target, lines.as_str(), known_size),
                Err(AddCheckpointError::Conflict { witness_size })
                    if !retried && witness_size != *known_size =>
                {
                    tracing::debug!(
                        witness = self.name(),
                        witness_size,
                        "witness is at another size; retrying from it"
                    );
                    retried = true;
                    *known_size = witness_size;
                }
                Err(AddCheckpointError::Conflict { witness_size }) => {
                    // From its own size it still refuses: it holds another
                    // root at this size, or another tree (a fork of ours).
                    let error = format!(
                        "409 Conflict: the witness, at size {witness_size}, refuses this log's checkpoint of size {size}: it holds another root at that size or a tree this one does not extend"
                    );
                    tracing::warn!(witness = self.name(), size, %error, "witness refused");
                    *known_size = witness_size;
                    return Err(error);
                }
                Err(error) => {
                    tracing::warn!(witness = self.name(), size, %error, "witness refused or failed");
                    return Err(error.to_string());
                }
            }
        }
    }

    /// Checks the witness's answer: one of its lines must be a cosignature
    /// of `target` by the policy's key for this witness.
    fn accept(
        &self,
        target: &Arc<SignedCheckpoint>,
        lines: &str,
        known_size: &mut u64,
    ) -> Result<String, String> {
        let trusted = std::slice::from_ref(&self.witness.verifier);
        let line = lines
            .split_inclusive('\n')
            .find(|line| {
                open_cosigned(
                    &add_signature_lines(&target.note, line),
                    &self.operator,
                    trusted,
                )
                .is_ok_and(|(_, cosigned)| !cosigned.is_empty())
            })
            .ok_or("the witness answered no cosignature that verifies with its policy key")?;
        *known_size = target.body.tree_size;
        {
            let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            let state = states.entry(self.name().to_owned()).or_default();
            state.cosigned_size = target.body.tree_size;
            state.last_error.clear();
        }
        self.metrics
            .witness_cosigned_size
            .get_or_create(&WitnessLabels {
                witness: self.name().to_owned(),
            })
            .set(target.body.tree_size as i64);
        Ok(line.to_owned())
    }

    fn set_error(&self, error: String) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.entry(self.name().to_owned()).or_default().last_error = error;
    }

    fn count_outcome(&self, outcome: &str) {
        self.metrics
            .witness_requests
            .get_or_create(&WitnessRequestLabels {
                witness: self.name().to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}
