//! The sequencer: the one writer that gives entries their seq.
//!
//! Submissions arrive already decoded and with every signature verified (the
//! gRPC handlers do that in parallel). The sequencer runs on its own thread,
//! takes whatever is queued (up to [`SequencerConfig::max_batch`]), checks
//! each event against the rules and the log, builds its leaf, and commits the
//! whole batch with one atomic sled write and one sync (group commit). Only
//! then does any caller in the batch get an answer.
//!
//! State is split the way it lives: [`recovery::Recovered`] is what is
//! durable; [`Batch`] is what is in flight and is thrown away if the commit
//! fails (except the projection, which a batch folds in place). After a
//! failed commit the sequencer stops taking submissions (fail-stop): what is
//! on disk is then uncertain, the projection in memory may be ahead of it,
//! and only a restart, which re-verifies the store, may decide it.

mod batch;
pub mod recovery;
pub mod restore;

use std::sync::Arc;
use std::time::Duration;

use ceasefire_grpc::now_micros;

use tokio::sync::{mpsc, oneshot, watch};

use crate::storage::{ProjectionHead, Store};
use batch::Batch;
use ceasefire_core::checkpoint::{sign_checkpoint, CheckpointBody, NoteSigner};
use ceasefire_core::merkle::{BatchSubtrees, Hash};
use ceasefire_core::projection::{PairKey, PairSummary, Projection};
use ceasefire_core::rejection::Rejection;
use ceasefire_core::rules::CommitmentState;
use ceasefire_core::signing::EventSignature;
use ceasefire_core::witness_policy::WitnessPolicy;
use ceasefire_grpc::proto::Event;
pub use recovery::{recover, Recovered, StartupCheck};

/// How the sequencer batches.
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Most entries in one commit. Bounds the work a commit holds up callers
    /// for; 4,096 entries of ~1 KiB is a few MiB of sled batch.
    pub max_batch: usize,
    /// How long to wait for more submissions after the first of a batch. 0
    /// commits at once: batches still form while the previous sync runs.
    pub batch_delay: Duration,
    /// Submissions that may wait for the sequencer; beyond it callers wait
    /// (backpressure) instead of the queue growing.
    pub queue_depth: usize,
    /// Where batch sizes, sync times and the tree size are counted.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        SequencerConfig {
            max_batch: 4096,
            batch_delay: Duration::ZERO,
            queue_depth: 16_384,
            metrics: None,
        }
    }
}

/// A decoded, signature-verified event waiting for its seq (or for its
/// verdict only).
pub struct Submission {
    pub payload: Vec<u8>,
    pub signatures: Vec<EventSignature>,
    pub event: Event,
    pub intent: Intent,
}

/// What a submission asks of the sequencer, and where its answer goes.
pub enum Intent {
    /// Append it: answered once its batch is durable.
    Append(oneshot::Sender<Result<Sequenced, SubmitError>>),
    /// Only decide it, as if it were appended at this point of the queue
    /// (`CheckSubmission`): the same nonce check and step as an append, on a
    /// scratch copy of the batch's rules' state, answered at once; nothing
    /// is staged, indexed or folded, so the nonce stays unused.
    Check(oneshot::Sender<Result<Checked, SubmitError>>),
}

impl Intent {
    /// Answers the caller that the ledger cannot decide now.
    fn unavailable(self, reason: &str) {
        let error = SubmitError::Unavailable(reason.to_string());
        match self {
            Intent::Append(reply) => drop(reply.send(Err(error))),
            Intent::Check(reply) => drop(reply.send(Err(error))),
        }
    }
}

/// A checked event that Submit would accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The size of the log it was checked against (the entries sequenced
    /// before it, those of the batch in flight included).
    pub checked_at_size: u64,
    /// The seq of the identical signed event already in the log, which
    /// Submit would answer with instead of appending.
    pub existing_seq: Option<u64>,
}

/// A durable entry, as answered to its submitter.
#[derive(Clone, Debug)]
pub struct Sequenced {
    pub seq: u64,
    pub leaf_hash: Hash,
    pub leaf: Vec<u8>,
    /// A checkpoint covering the entry (the one committed with its batch).
    pub checkpoint: Arc<SignedCheckpoint>,
    /// What proves the entries of the batch that answered, against
    /// `checkpoint`, from memory. An identical resubmission of an older
    /// entry is not among them: its proof is read from the store.
    pub batch: Arc<BatchSubtrees>,
}

/// A checkpoint and the note that signs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub body: CheckpointBody,
    pub note: String,
}

/// The read model as of a durable batch: what the Compliance service serves.
#[derive(Clone, Debug)]
pub struct ProjectionView {
    pub head: ProjectionHead,
    /// Entries in the log it describes (as_of_seq + 1).
    pub tree_size: u64,
    pub pairs: std::collections::BTreeMap<PairKey, PairSummary>,
    /// Where the newest status change is in the change log, (seq, index):
    /// a subscriber whose cursor is past it has nothing to read.
    pub last_change: Option<(u64, u32)>,
    /// Every commitment as defined in the log it describes (what decides
    /// which observations count), shared until a definition changes.
    pub commitments: Commitments,
}

/// Commitments by id, as the rules' state holds them.
pub type Commitments = Arc<std::collections::BTreeMap<String, CommitmentState>>;

fn commitments_of(state: Option<&ceasefire_core::rules::LedgerState>) -> Commitments {
    Arc::new(
        state
            .map(|state| state.commitments.clone())
            .unwrap_or_default(),
    )
}

impl ProjectionView {
    fn new(
        head: ProjectionHead,
        projection: &Projection,
        tree_size: u64,
        last_change: Option<(u64, u32)>,
        commitments: Commitments,
    ) -> ProjectionView {
        ProjectionView {
            head,
            tree_size,
            last_change,
            commitments,
            pairs: projection
                .pairs
                .iter()
                .map(|(key, pair)| (key.clone(), pair.summary.clone()))
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The event breaks a rule; nothing was written.
    #[error("{0}")]
    Rejected(Rejection),
    /// The ledger cannot accept writes now (storage failed, shutting down).
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
}

/// A queued submission's answer: resolves once its batch is durable (or
/// it was refused).
pub struct Pending {
    answer: oneshot::Receiver<Result<Sequenced, SubmitError>>,
}

impl std::future::Future for Pending {
    type Output = Result<Sequenced, SubmitError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.answer)
            .poll(context)
            .map(|answer| {
                answer
                    .map_err(|_| SubmitError::Unavailable("the sequencer has stopped".into()))
                    .and_then(|answer| answer)
            })
    }
}

/// The handle the server holds: where to send submissions, where to read
/// the latest checkpoint.
#[derive(Clone)]
pub struct SequencerHandle {
    submissions: mpsc::Sender<Submission>,
    checkpoints: watch::Receiver<Option<Arc<SignedCheckpoint>>>,
    /// The agreement, once the genesis is durable: lets handlers refuse
    /// another agreement's events before verifying their signatures.
    agreement_id: Arc<std::sync::OnceLock<String>>,
    /// The read model after each durable batch.
    views: watch::Receiver<Arc<ProjectionView>>,
    /// The witness policy in force in the durable log, and the seq of the
    /// event that set it.
    witness_policies: watch::Receiver<Option<ActivePolicy>>,
    /// Why the sequencer fail-stopped, once it has: health turns
    /// NOT_SERVING on it.
    failure: watch::Receiver<Option<String>>,
}

/// A witness policy and the seq of the governance event that set it.
pub type ActivePolicy = Arc<(u64, WitnessPolicy)>;

impl SequencerHandle {
    /// Queues a submission (waiting while the queue is full) and returns
    /// its durable answer to come. Submissions are sequenced in the order
    /// they were queued.
    pub async fn enqueue(
        &self,
        payload: Vec<u8>,
        signatures: Vec<EventSignature>,
        event: Event,
    ) -> Result<Pending, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.submissions
            .send(Submission {
                payload,
                signatures,
                event,
                intent: Intent::Append(reply),
            })
            .await
            .map_err(|_| SubmitError::Unavailable("the sequencer has stopped".into()))?;
        Ok(Pending { answer })
    }

    /// Queues a submission to be decided but not appended, behind every
    /// submission queued before it, and returns the verdict an append would
    /// get at that point (see [`Intent::Check`]).
    pub async fn check(
        &self,
        payload: Vec<u8>,
        signatures: Vec<EventSignature>,
        event: Event,
    ) -> Result<Checked, SubmitError> {
        let stopped = || SubmitError::Unavailable("the sequencer has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.submissions
            .send(Submission {
                payload,
                signatures,
                event,
                intent: Intent::Check(reply),
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// The ledger's agreement id; `None` before the genesis.
    pub fn agreement_id(&self) -> Option<&str> {
        self.agreement_id.get().map(String::as_str)
    }

    /// The latest durable checkpoint; `None` before the genesis.
    pub fn checkpoint(&self) -> Option<Arc<SignedCheckpoint>> {
        self.checkpoints.borrow().clone()
    }

    /// The read model as of the latest durable batch.
    pub fn projection(&self) -> Arc<ProjectionView> {
        self.views.borrow().clone()
    }

    /// A receiver that changes with every durable batch (for streams).
    pub fn watch_projection(&self) -> watch::Receiver<Arc<ProjectionView>> {
        self.views.clone()
    }

    /// A receiver of the latest durable checkpoint, changed by every batch.
    pub fn watch_checkpoints(&self) -> watch::Receiver<Option<Arc<SignedCheckpoint>>> {
        self.checkpoints.clone()
    }

    /// A receiver of the witness policy in force, changed when a
    /// `SetWitnessPolicy` becomes durable.
    pub fn watch_witness_policy(&self) -> watch::Receiver<Option<ActivePolicy>> {
        self.witness_policies.clone()
    }

    /// A receiver of why the sequencer fail-stopped (`None` while it takes
    /// submissions), set once, when it stops taking them.
    pub fn watch_failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.clone()
    }
}

fn active_policy(state: Option<&ceasefire_core::rules::LedgerState>) -> Option<ActivePolicy> {
    state
        .and_then(|state| state.witness_policy.clone())
        .map(Arc::new)
}

/// Starts the sequencer thread on a recovered store. The thread ends when
/// every [`SequencerHandle`] is dropped, after answering what it holds.
pub fn start(
    store: Arc<Store>,
    recovered: Recovered,
    operator_key: ed25519_dalek::SigningKey,
    config: SequencerConfig,
) -> Result<(SequencerHandle, std::thread::JoinHandle<()>), String> {
    let signer = match &recovered.state {
        Some(state) => Some(checkpoint_signer(&state.agreement, &operator_key)?),
        None => None,
    };
    let checkpoint = match &signer {
        Some(signer) => Some(Arc::new(sign(
            signer,
            recovered.head.size,
            recovered.head.root,
        ))),
        None => None,
    };
    let agreement_id = Arc::new(std::sync::OnceLock::new());
    if let Some(state) = &recovered.state {
        let _ = agreement_id.set(state.agreement.agreement_id.clone());
    }
    let (publish_policy, witness_policies) =
        watch::channel(active_policy(recovered.state.as_ref()));
    let (submissions, receiver) = mpsc::channel(config.queue_depth);
    let (publish, checkpoints) = watch::channel(checkpoint);
    let (publish_failure, failure) = watch::channel(None);
    let projection_head = ProjectionHead::of(&recovered.projection);
    let last_change = store
        .last_change()
        .map_err(|error| format!("cannot read the change log: {error}"))?;
    let commitments = commitments_of(recovered.state.as_ref());
    let (publish_view, views) = watch::channel(Arc::new(ProjectionView::new(
        projection_head,
        &recovered.projection,
        recovered.head.size,
        last_change,
        commitments.clone(),
    )));
    let sequencer = Sequencer {
        store,
        durable: recovered,
        operator_key,
        signer,
        config,
        publish,
        publish_view,
        publish_policy,
        last_change,
        commitments,
        agreement_id: agreement_id.clone(),
        failed: None,
        publish_failure,
    };
    let thread = std::thread::Builder::new()
        .name("sequencer".into())
        .spawn(move || sequencer.run(receiver))
        .map_err(|error| format!("could not start the sequencer thread: {error}"))?;
    Ok((
        SequencerHandle {
            submissions,
            checkpoints,
            agreement_id,
            views,
            witness_policies,
            failure,
        },
        thread,
    ))
}

fn checkpoint_signer(
    agreement: &ceasefire_core::rules::AgreementInfo,
    operator_key: &ed25519_dalek::SigningKey,
) -> Result<NoteSigner, String> {
    if operator_key.verifying_key().to_bytes() != agreement.operator_public_key {
        return Err(format!(
            "the operator key given ({}) is not the one the genesis names ({})",
            ceasefire_core::key_text(operator_key.verifying_key().as_bytes()),
            ceasefire_core::key_text(agreement.operator_public_key)
        ));
    }
    NoteSigner::new(&agreement.origin, operator_key.clone())
        .map_err(|error| format!("cannot sign checkpoints as {:?}: {error}", agreement.origin))
}

fn sign(signer: &NoteSigner, size: u64, root: Hash) -> SignedCheckpoint {
    let body = CheckpointBody {
        origin: signer.name().to_string(),
        tree_size: size,
        root_hash: root,
    };
    // The signer's name is the origin, so signing cannot fail.
    let note = sign_checkpoint(&body, signer).unwrap_or_default();
    SignedCheckpoint { body, note }
}

/// The writer: owns the durable state and is the only code that appends.
struct Sequencer {
    store: Arc<Store>,
    /// What is durable: head, tree edge and rules' state after the last commit.
    durable: Recovered,
    operator_key: ed25519_dalek::SigningKey,
    /// Signs checkpoints as the log's origin; `None` until the genesis.
    signer: Option<NoteSigner>,
    config: SequencerConfig,
    /// Announces each durable checkpoint.
    publish: watch::Sender<Option<Arc<SignedCheckpoint>>>,
    /// Announces the read model after each durable batch.
    publish_view: watch::Sender<Arc<ProjectionView>>,
    /// Announces a new witness policy once its event is durable.
    publish_policy: watch::Sender<Option<ActivePolicy>>,
    /// The newest status change durable, for the view.
    last_change: Option<(u64, u32)>,
    /// The durable commitments, for the view: rebuilt when a batch changes
    /// the rules' state, shared by every view until then.
    commitments: Commitments,
    /// Set once the genesis is durable; shared with every handle.
    agreement_id: Arc<std::sync::OnceLock<String>>,
    /// Set when a commit failed: every later submission is refused with it.
    failed: Option<String>,
    /// Announces the fail-stop (for health).
    publish_failure: watch::Sender<Option<String>>,
}

impl Sequencer {
    /// Stops taking submissions for good (see the module doc): every later
    /// one is refused with `reason`, and the stop is announced.
    fn fail_stop(&mut self, reason: String) {
        self.publish_failure.send_replace(Some(reason.clone()));
        self.failed = Some(reason);
    }

    fn run(mut self, mut receiver: mpsc::Receiver<Submission>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut submissions = vec![first];
            self.gather(&mut receiver, &mut submissions);
            if let Some(reason) = &self.failed {
                for submission in submissions {
                    submission.intent.unavailable(reason);
                }
                continue;
            }
            self.sequence(submissions);
        }
    }

    /// Takes what is queued, waiting up to `batch_delay` for more.
    fn gather(&self, receiver: &mut mpsc::Receiver<Submission>, into: &mut Vec<Submission>) {
        let deadline = std::time::Instant::now() + self.config.batch_delay;
        while into.len() < self.config.max_batch {
            match receiver.try_recv() {
                Ok(submission) => into.push(submission),
                Err(mpsc::error::TryRecvError::Empty) => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        break;
                    }
                    std::thread::sleep((deadline - now).min(Duration::from_micros(200)));
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
    }

    fn sequence(&mut self, submissions: Vec<Submission>) {
        let staging = std::time::Instant::now();
        let received_at = now_micros().max(self.durable.head.last_received_at_micros);
        let mut batch = Batch::new(&self.store, &mut self.durable, received_at);
        let mut genesis_signer = None;
        for submission in submissions {
            match batch.stage(&self.store, submission, &self.operator_key) {
                Ok(Some(signer)) => genesis_signer = Some(signer),
                Ok(None) => {}
                Err(error) => {
                    // Storage failed while reading: nothing is written yet.
                    tracing::error!(%error, "sequencer could not read the store");
                    let reason = format!("storage read failed: {error}");
                    batch.refuse_all(&reason);
                    self.fail_stop(reason);
                    return;
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        if let Some(signer) = genesis_signer {
            self.signer = Some(signer);
        }
        let Some(signer) = &self.signer else {
            // Staging before the genesis admits only a genesis, which yields
            // the signer; should that ever break, the batch has already
            // folded into the projection in memory, so stop like a failed
            // commit rather than run on a state the disk does not hold.
            let reason = "no checkpoint signer before the genesis".to_string();
            tracing::error!(%reason, "refusing further writes");
            batch.refuse_all(&reason);
            self.fail_stop(reason);
            return;
        };
        let head = batch.head();
        let checkpoint = Arc::new(sign(signer, head.size, head.root));
        let started = std::time::Instant::now();
        match batch.commit(&self.store, &checkpoint.note) {
            Ok(mut committed) => {
                tracing::debug!(
                    entries = committed.entries,
                    size = head.size,
                    stage_ms = (started - staging).as_secs_f64() * 1e3,
                    commit_ms = started.elapsed().as_secs_f64() * 1e3,
                    sync_ms = committed.sync_time.as_secs_f64() * 1e3,
                    "batch durable"
                );
                if let Some(metrics) = &self.config.metrics {
                    metrics.batch_entries.observe(committed.entries as f64);
                    metrics
                        .sync_seconds
                        .observe(committed.sync_time.as_secs_f64());
                    metrics.tree_size.set(head.size as i64);
                }
                self.durable.head = committed.durable_head;
                self.durable.frontier = std::mem::take(&mut committed.frontier);
                if let Some(state) = committed.new_state.take() {
                    let _ = self.agreement_id.set(state.agreement.agreement_id.clone());
                    let policy = active_policy(Some(&state));
                    self.publish_policy.send_if_modified(|current| {
                        let changed = current.as_ref().map(|active| active.0)
                            != policy.as_ref().map(|active| active.0);
                        if changed {
                            *current = policy;
                        }
                        changed
                    });
                    self.commitments = commitments_of(Some(&state));
                    self.durable.state = Some(state);
                }
                self.last_change = committed.last_change.or(self.last_change);
                self.publish.send_replace(Some(checkpoint.clone()));
                self.publish_view.send_replace(Arc::new(ProjectionView::new(
                    committed.projection_head,
                    &self.durable.projection,
                    head.size,
                    self.last_change,
                    self.commitments.clone(),
                )));
                committed.answer(&self.store, &checkpoint);
            }
            Err(failed) => {
                let (batch, error) = *failed;
                tracing::error!(%error, "batch commit failed; refusing further writes");
                let reason = if error.is_disk_full() {
                    format!(
                        "the disk holding the data directory {} is full ({error}): \
                         free space on it and restart the server",
                        self.store.data_dir().display()
                    )
                } else {
                    format!("storage write failed: {error}")
                };
                batch.refuse_all(&reason);
                self.fail_stop(reason);
            }
        }
    }
}
