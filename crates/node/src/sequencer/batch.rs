//! One batch in flight: the entries staged since the last commit.
//!
//! Each new entry goes through the core's [`step`], the check, apply, index
//! and fold that start-up recovery and an auditor's replay run too: with
//! the batch's overlay of the store as its index, the store's windows under
//! the batch's writes, and the checkpoint signer built from a genesis. What
//! stays here is what only the live log does: an identical resubmission is
//! answered with its original receipt (any other reuse of a nonce is
//! refused), the leaf is made (seq, chain, `received_at`), and anything
//! before the genesis is refused as premature.
//!
//! A check (`CheckSubmission`, [`Intent::Check`]) takes the same path up to
//! the step, which it runs on a scratch copy of the batch's rules' state
//! without folding; it is answered at once and leaves nothing in the batch,
//! so the verdict is the one an append at that point would get and the
//! nonce stays unused.
//!
//! Everything here is provisional. Entries staged earlier in a batch are
//! visible to later ones (a party registered at seq 10 may sign seq 11 of the
//! same batch), through the batch's own overlay of the store. If the commit
//! fails, the batch is dropped and nothing of it is on disk; the one piece
//! of in-memory state it changed in place, the projection (folding a copy
//! per batch would cost a clone of every pair), is why a failed commit
//! stops the sequencer for good (fail-stop).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{
    checkpoint_signer, Checked, Intent, Recovered, Sequenced, SignedCheckpoint, Submission,
    SubmitError,
};
use crate::storage::{
    DurableHead, ProjectionHead, ProjectionWrite, StagedEntry, Store, StoreError, StoreWindows,
};
use ceasefire_core::checkpoint::NoteSigner;
use ceasefire_core::leaf::Leaf;
use ceasefire_core::merkle::{hash_leaf, BatchSubtrees, Frontier, Hash};
use ceasefire_core::projection::{PairKey, Projection, StatusChange};
use ceasefire_core::rejection::{ReasonCode, Rejection};
use ceasefire_core::rules::{EntryIndex, LedgerState, ObservationRecord};
use ceasefire_core::step::{step, Entry, Fold, Stepped};
use ceasefire_grpc::proto::event::Body;

type Reply = oneshot::Sender<Result<Sequenced, SubmitError>>;
type CheckReply = oneshot::Sender<Result<Checked, SubmitError>>;

/// Who is waiting on the batch, and for which entry.
enum Waiter {
    /// A new entry, `entries[index]`.
    New { reply: Reply, index: usize },
    /// An identical resubmission of the existing entry `seq`.
    Existing { reply: Reply, seq: u64 },
}

pub(super) struct Batch<'a> {
    received_at_micros: i64,
    /// The durable log this batch extends.
    base_size: u64,
    /// The rules' state with this batch applied: the durable state, lent,
    /// until a genesis or governance entry makes a working copy (the step
    /// clones it then; the durable state changes only after the commit).
    /// `None` before the genesis.
    state: Option<Cow<'a, LedgerState>>,
    head: DurableHead,
    frontier: Frontier,
    entries: Vec<StagedEntry>,
    leaf_hashes: Vec<Hash>,
    /// The tree nodes the batch completed and the frontier it started from:
    /// what proves the batch's entries to their callers without reading
    /// the store.
    subtrees: BatchSubtrees,
    waiters: Vec<Waiter>,
    /// (author, nonce) of entries in this batch, to their index.
    nonces: HashMap<(String, Vec<u8>), usize>,
    /// Observation records written by this batch, newest last.
    observations: HashMap<u64, ObservationRecord>,
    /// Payload and signatures of each staged entry, to tell an identical
    /// resubmission from a replayed nonce.
    payloads: Vec<Vec<u8>>,
    signature_lists: Vec<Vec<ceasefire_core::signing::EventSignature>>,
    /// The durable projection, folded forward in place. A failed commit
    /// stops the sequencer, so it is never read in a state that was not
    /// committed.
    projection: &'a mut Projection,
    /// The projection's windows: the store's, under the batch's writes.
    windows: StoreWindows<'a>,
    /// Pairs the batch changed and the status changes it caused.
    touched_pairs: std::collections::BTreeSet<PairKey>,
    changes: Vec<StatusChange>,
}

/// A committed batch, ready to answer its callers.
pub(super) struct Committed {
    /// How long making the batch durable took.
    pub sync_time: std::time::Duration,
    pub projection_head: ProjectionHead,
    /// Where the batch's last status change is in the change log, if any.
    pub last_change: Option<(u64, u32)>,
    pub durable_head: DurableHead,
    pub frontier: Frontier,
    /// The new rules' state if the batch changed it.
    pub new_state: Option<LedgerState>,
    pub entries: usize,
    waiters: Vec<Waiter>,
    staged: Vec<(u64, Hash, Vec<u8>)>,
    subtrees: Arc<BatchSubtrees>,
}

impl<'a> Batch<'a> {
    pub fn new(store: &'a Store, durable: &'a mut Recovered, received_at_micros: i64) -> Batch<'a> {
        let Recovered {
            head,
            frontier,
            state,
            projection,
        } = durable;
        Batch {
            received_at_micros,
            base_size: head.size,
            state: state.as_ref().map(Cow::Borrowed),
            head: *head,
            subtrees: BatchSubtrees::starting_from(frontier),
            frontier: frontier.clone(),
            projection,
            windows: StoreWindows::new(store),
            touched_pairs: Default::default(),
            changes: Vec::new(),
            entries: Vec::new(),
            leaf_hashes: Vec::new(),
            waiters: Vec::new(),
            nonces: HashMap::new(),
            observations: HashMap::new(),
            payloads: Vec::new(),
            signature_lists: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    pub fn head(&self) -> DurableHead {
        self.head
    }

    /// Stages one submission, or answers it at once if it is refused; a
    /// check ([`Intent::Check`]) is decided the same way and answered at
    /// once, and nothing of it is staged. Returns the checkpoint signer
    /// when the submission is a genesis to append.
    pub fn stage(
        &mut self,
        store: &Store,
        submission: Submission,
        operator_key: &ed25519_dalek::SigningKey,
    ) -> Result<Option<NoteSigner>, StoreError> {
        let Submission {
            payload,
            signatures,
            event,
            intent,
        } = submission;

        // Replays: the same author and nonce name the same event forever.
        // Only the identical signed bytes (payload and signatures) get the
        // original receipt back; anything else under a used nonce is refused.
        let nonce_key = (event.author.clone(), event.nonce.clone());
        if let Some(&index) = self.nonces.get(&nonce_key) {
            let seq = self.entries[index].seq;
            if self.payloads[index] == payload && self.signature_lists[index] == signatures {
                match intent {
                    Intent::Append(reply) => self.waiters.push(Waiter::New { reply, index }),
                    Intent::Check(reply) => self.answer_check(reply, Some(seq)),
                }
            } else {
                intent.refuse(replay_rejection(&event.author, seq));
            }
            return Ok(None);
        }
        if let Some(seq) = store.nonce_seq(&event.author, &event.nonce)? {
            let existing = store.leaf(seq)?.ok_or(StoreError::Corrupt {
                seq,
                reason: "the nonce index names a missing entry".into(),
            })?;
            let same = Leaf::decode(&existing)
                .map(|leaf| leaf.payload == payload && leaf.signatures == signatures)
                .unwrap_or(false);
            match intent {
                intent if !same => intent.refuse(replay_rejection(&event.author, seq)),
                Intent::Append(reply) => self.waiters.push(Waiter::Existing { reply, seq }),
                Intent::Check(reply) => self.answer_check(reply, Some(seq)),
            }
            return Ok(None);
        }

        let seq = self.head.size;
        let leaf = Leaf {
            seq,
            prev_leaf_hash: self.head.last_leaf_hash,
            received_at_micros: self.received_at_micros,
            payload,
            signatures,
        };
        let leaf_bytes = leaf.encode();
        let leaf_hash = hash_leaf(&leaf_bytes);

        // Before the genesis the ledger is not ready for anything else: the
        // event may be fine once there is one (the rules' own refusal,
        // INVALID_ARGUMENT, would say it never is).
        if self.state.is_none() && !matches!(event.body, Some(Body::Genesis(_))) {
            intent.refuse(Rejection::new(
                ReasonCode::LedgerNotStarted,
                "this ledger has no genesis yet: entry 0 must be a genesis",
            ));
            return Ok(None);
        }
        let signer = |state: &LedgerState| {
            checkpoint_signer(&state.agreement, operator_key)
                .map_err(|message| Rejection::new(ReasonCode::OperatorKeyMismatch, message))
        };
        let reply = match intent {
            Intent::Append(reply) => reply,
            Intent::Check(reply) => {
                match self.check_leaf(store, &leaf, leaf_hash, &event, signer)? {
                    Ok(()) => self.answer_check(reply, None),
                    Err(rejection) => Intent::Check(reply).refuse(rejection),
                }
                return Ok(None);
            }
        };
        // What signs the log's checkpoints: the genesis is refused unless
        // it names our operator key.
        match self.stage_leaf(store, leaf, leaf_bytes, leaf_hash, event, signer)? {
            Ok((index, genesis_signer)) => {
                self.waiters.push(Waiter::New { reply, index });
                Ok(genesis_signer)
            }
            Err(rejection) => {
                Intent::Append(reply).refuse(rejection);
                Ok(None)
            }
        }
    }

    /// The step's verdict on a made leaf, as [`Batch::stage_leaf`] would
    /// reach it, with nothing kept: the rules' state is a scratch copy (the
    /// batch's, lent; cloned by the step only if the event would change it)
    /// and nothing is folded, which never changes a verdict (the fold
    /// refuses nothing).
    fn check_leaf(
        &self,
        store: &Store,
        leaf: &Leaf,
        leaf_hash: Hash,
        event: &ceasefire_grpc::proto::Event,
        found: impl FnOnce(&LedgerState) -> Result<NoteSigner, Rejection>,
    ) -> Result<Result<(), Rejection>, StoreError> {
        let mut scratch = self.state.as_deref().map(Cow::Borrowed);
        let overlay = Overlay {
            store,
            base_size: self.base_size,
            leaf_hashes: &self.leaf_hashes,
            observations: &self.observations,
        };
        let stepped = step(
            &mut scratch,
            Entry {
                seq: leaf.seq,
                leaf,
                leaf_hash,
                event,
            },
            &overlay,
            Fold::<StoreWindows>::Nothing,
            found,
        )?;
        Ok(stepped.map(|_| ()))
    }

    /// Answers a check that Submit would accept, at the batch's head.
    fn answer_check(&self, reply: CheckReply, existing_seq: Option<u64>) {
        let _ = reply.send(Ok(Checked {
            checked_at_size: self.head.size,
            existing_seq,
        }));
    }

    /// Stages an entry of another copy of this log (`restore`), as it was
    /// written there: its own seq, chain and `received_at`, which must
    /// follow the batch's head, and a nonce never used before. Nobody waits
    /// on it. A refusal says why, for the caller to name the entry.
    pub fn stage_restored(
        &mut self,
        store: &Store,
        leaf_bytes: Vec<u8>,
    ) -> Result<Result<(), String>, StoreError> {
        let leaf = match Leaf::decode(&leaf_bytes) {
            Ok(leaf) => leaf,
            Err(error) => return Ok(Err(format!("not a leaf: {error:?}"))),
        };
        if leaf.seq != self.head.size {
            return Ok(Err(format!("it says it is entry {}", leaf.seq)));
        }
        if leaf.prev_leaf_hash != self.head.last_leaf_hash {
            return Ok(Err("it does not chain to the entry before it".into()));
        }
        if leaf.received_at_micros < self.head.last_received_at_micros {
            return Ok(Err("it was received before the entry before it".into()));
        }
        let event = match ceasefire_core::rules::decode_event(&leaf.payload) {
            Ok(event) => event,
            Err(rejection) => return Ok(Err(rejection.message)),
        };
        let nonce_key = (event.author.clone(), event.nonce.clone());
        let reused = match self.nonces.get(&nonce_key) {
            Some(index) => Some(self.entries[*index].seq),
            None => store.nonce_seq(&event.author, &event.nonce)?,
        };
        if let Some(seq) = reused {
            return Ok(Err(format!("it reuses the nonce of entry {seq}")));
        }
        let leaf_hash = hash_leaf(&leaf_bytes);
        Ok(self
            .stage_leaf(store, leaf, leaf_bytes, leaf_hash, event, |_| Ok(()))?
            .map(|_| ())
            .map_err(|rejection| rejection.message))
    }

    /// Takes a made leaf through the step and, if accepted, into the batch:
    /// its index among the batch's entries, and what `found` built from it
    /// if it is the genesis.
    fn stage_leaf<F>(
        &mut self,
        store: &Store,
        leaf: Leaf,
        leaf_bytes: Vec<u8>,
        leaf_hash: Hash,
        event: ceasefire_grpc::proto::Event,
        found: impl FnOnce(&LedgerState) -> Result<F, Rejection>,
    ) -> Result<Result<(usize, Option<F>), Rejection>, StoreError> {
        let seq = leaf.seq;
        let overlay = Overlay {
            store,
            base_size: self.base_size,
            leaf_hashes: &self.leaf_hashes,
            observations: &self.observations,
        };
        let stepped = step(
            &mut self.state,
            Entry {
                seq,
                leaf: &leaf,
                leaf_hash,
                event: &event,
            },
            &overlay,
            Fold::Into {
                projection: &mut *self.projection,
                windows: &mut self.windows,
            },
            found,
        )?;
        let Stepped {
            founded,
            record,
            is_governance,
            folded,
            ..
        } = match stepped {
            Ok(stepped) => stepped,
            Err(rejection) => return Ok(Err(rejection)),
        };
        if let Some((record_seq, record)) = &record {
            self.observations.insert(*record_seq, record.clone());
        }
        self.touched_pairs.extend(folded.touched);
        self.changes.extend(folded.changes);
        let completed = self.frontier.push(leaf_hash);
        self.subtrees.record(&completed);
        self.head = DurableHead {
            size: seq + 1,
            root: self.frontier.root(),
            last_leaf_hash: leaf_hash,
            last_received_at_micros: leaf.received_at_micros,
        };
        let index = self.entries.len();
        self.nonces
            .insert((event.author.clone(), event.nonce.clone()), index);
        self.payloads.push(leaf.payload);
        self.signature_lists.push(leaf.signatures);
        self.leaf_hashes.push(leaf_hash);
        self.entries.push(StagedEntry {
            seq,
            leaf: leaf_bytes,
            completed: completed.into_iter().map(|(_, _, hash)| hash).collect(),
            author: event.author,
            nonce: event.nonce,
            observation_records: record.into_iter().collect(),
            is_governance,
        });
        Ok(Ok((index, founded)))
    }

    /// Writes the batch and makes it durable. On failure the batch comes
    /// back so its callers can be told.
    pub fn commit(
        self,
        store: &Store,
        checkpoint_note: &str,
    ) -> Result<Committed, Box<(Batch<'a>, StoreError)>> {
        let projection_head = ProjectionHead::of(self.projection);
        let written = store.append(
            &self.entries,
            &self.head,
            checkpoint_note,
            &ProjectionWrite {
                head: projection_head,
                summaries: self
                    .touched_pairs
                    .iter()
                    .map(|key| {
                        (
                            key,
                            self.projection.pairs.get(key).map(|pair| &pair.summary),
                        )
                    })
                    .collect(),
                window_writes: self.windows.writes(),
                changes: &self.changes,
            },
        );
        let sync_time = match written {
            Ok(sync_time) => sync_time,
            Err(error) => return Err(Box::new((self, error))),
        };
        let staged = self
            .entries
            .into_iter()
            .zip(self.leaf_hashes)
            .map(|(entry, leaf_hash)| (entry.seq, leaf_hash, entry.leaf))
            .collect::<Vec<_>>();
        Ok(Committed {
            sync_time,
            projection_head,
            last_change: self.changes.last().map(|change| (change.seq, change.index)),
            durable_head: self.head,
            frontier: self.frontier,
            new_state: match self.state {
                Some(Cow::Owned(state)) => Some(state),
                Some(Cow::Borrowed(_)) | None => None,
            },
            entries: staged.len(),
            waiters: self.waiters,
            staged,
            subtrees: Arc::new(self.subtrees),
        })
    }

    /// Answers every caller of a batch that will not be committed.
    pub fn refuse_all(self, reason: &str) {
        for waiter in self.waiters {
            let reply = match waiter {
                Waiter::New { reply, .. } | Waiter::Existing { reply, .. } => reply,
            };
            let _ = reply.send(Err(SubmitError::Unavailable(reason.to_string())));
        }
    }
}

impl Committed {
    /// Answers every caller with its durable entry.
    pub fn answer(self, store: &Store, checkpoint: &Arc<SignedCheckpoint>) {
        for waiter in self.waiters {
            match waiter {
                Waiter::New { reply, index } => {
                    let (seq, leaf_hash, leaf) = &self.staged[index];
                    let _ = reply.send(Ok(Sequenced {
                        seq: *seq,
                        leaf_hash: *leaf_hash,
                        leaf: leaf.clone(),
                        checkpoint: checkpoint.clone(),
                        batch: self.subtrees.clone(),
                    }));
                }
                Waiter::Existing { reply, seq } => {
                    let answer = match store.leaf(seq) {
                        Ok(Some(leaf)) => Ok(Sequenced {
                            seq,
                            leaf_hash: hash_leaf(&leaf),
                            leaf,
                            checkpoint: checkpoint.clone(),
                            batch: self.subtrees.clone(),
                        }),
                        Ok(None) => Err(SubmitError::Unavailable(format!(
                            "entry {seq} vanished from the store"
                        ))),
                        Err(error) => Err(SubmitError::Unavailable(error.to_string())),
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    }
}

impl Intent {
    /// Answers the caller with the rules' refusal, whatever it asked.
    fn refuse(self, rejection: Rejection) {
        let error = SubmitError::Rejected(rejection);
        match self {
            Intent::Append(reply) => drop(reply.send(Err(error))),
            Intent::Check(reply) => drop(reply.send(Err(error))),
        }
    }
}

fn replay_rejection(author: &str, seq: u64) -> Rejection {
    Rejection::new(
        ReasonCode::NonceReused,
        format!("author {author:?} already used this nonce for entry {seq} with different bytes"),
    )
    .with("author", author)
    .with("seq", seq)
}

/// The store as seen from inside a batch: durable entries plus staged ones.
struct Overlay<'b> {
    store: &'b Store,
    base_size: u64,
    leaf_hashes: &'b [Hash],
    observations: &'b HashMap<u64, ObservationRecord>,
}

impl EntryIndex for Overlay<'_> {
    type Error = StoreError;

    fn leaf_hash(&self, seq: u64) -> Result<Option<Hash>, StoreError> {
        if seq >= self.base_size {
            return Ok(self
                .leaf_hashes
                .get((seq - self.base_size) as usize)
                .copied());
        }
        self.store.leaf_hash(seq)
    }

    fn observation(&self, seq: u64) -> Result<Option<ObservationRecord>, StoreError> {
        match self.observations.get(&seq) {
            Some(record) => Ok(Some(record.clone())),
            None => self.store.observation(seq),
        }
    }
}
