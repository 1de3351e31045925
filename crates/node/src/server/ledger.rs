//! The `ceasefire.v1.Ledger` service: Submit, SubmitStream and the read API
//! of docs/spec.md.
//!
//! Both submit calls run the same per-event path ([`LedgerService::submit_event`]),
//! and CheckSubmission runs it too, up to the sequencer, which decides the
//! event without appending it:
//! size limit, canonical signature list, decoding, agreement, strict
//! signature checks on the rayon pool, the sequencer, and a receipt whose
//! proof comes from the answering batch (memory) or, for an identical
//! resubmission of an older entry, from the store.
//!
//! Verification takes permits from the connection's budget
//! ([`super::VERIFY_BUDGET_PER_CONNECTION`], one per signature), so one
//! client's flood of forged events cannot queue ahead of everyone else's.
//! SubmitStream and GetEntries streams are counted ([`super::MAX_SUBMIT_STREAMS`],
//! [`super::MAX_ENTRY_STREAMS`]); GetEntries reads the store a chunk at a
//! time on the blocking pool and waits for its reader without holding a
//! thread.
//!
//! Every event's outcome is logged once, at info, where it is counted
//! ([`LedgerService::receipt`]): "accepted" with its author and seq,
//! "refused" with its author (when its payload decoded) and the reason.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::{watch, Semaphore};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::compliance::stopping;
use super::{
    beyond_tree, internal, read_store, refused, rejection_status, submit_status, unavailable,
    ConnectionInfo, StreamLimit, MAX_ENTRY_STREAMS, MAX_SUBMIT_STREAMS,
};
use crate::metrics::Metrics;
use crate::sequencer::{Pending, Sequenced, SequencerHandle, SignedCheckpoint};
use crate::storage::Store;
use crate::witnessing::WitnessingHandle;
use ceasefire_core::leaf::MAX_PAYLOAD_BYTES;
use ceasefire_core::merkle::Hash;
use ceasefire_core::rejection::{ReasonCode, Rejection};
use ceasefire_core::rules::{decode_event, wrong_agreement};
use ceasefire_core::signing::{canonical_signatures, verify_all, EventSignature};
use ceasefire_grpc::errors::{describe, refusal};
use ceasefire_grpc::proto::Event;
use ceasefire_grpc::proto::{
    ledger_server::Ledger, submit_result::Outcome, Checkpoint, GetCheckpointRequest,
    GetConsistencyProofRequest, GetEntriesRequest, GetInclusionProofRequest, LogEntry, Proof,
    Receipt, SignedEvent, SubmissionCheck, SubmitResult, WitnessStatus,
};

/// Entries a GetEntries stream reads ahead of a slow reader; bounds the
/// memory one reader can hold (~64 x 36 KiB worst case).
const ENTRY_STREAM_BUFFER: usize = 64;

/// Entries a GetEntries stream reads from the store per blocking read. The
/// reading task then sends them while holding no thread: a reader that
/// stops reading would otherwise pin one of the blocking pool's 512
/// threads, and a few hundred such readers would starve every store read
/// (proofs, history, subscriptions catching up). Large enough that the
/// hand-off (~10 us) is small beside the reads.
const ENTRY_READ_CHUNK: u64 = 32;

/// Longest a `GetCheckpoint` waits for `min_tree_size`: long enough for a
/// quorum of witnesses to cosign (milliseconds to seconds), short enough
/// that a forgotten call does not hold a server task for long. A client's
/// own deadline ends the wait sooner.
const MAX_CHECKPOINT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a `GetCheckpoint` may wait: [`MAX_CHECKPOINT_WAIT`], or less
/// when the client set a deadline (`grpc-timeout`). The wait then ends a
/// tenth before it (at most half a second), so that the client gets the
/// refusal that says what is missing (NOT_YET_WITNESSED with the witnessed
/// size) rather than its own timer's bare cancellation.
fn checkpoint_wait<T>(request: &Request<T>) -> std::time::Duration {
    let client_timeout = request
        .metadata()
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_grpc_timeout);
    match client_timeout {
        Some(timeout) => {
            let margin = (timeout / 10).min(std::time::Duration::from_millis(500));
            (timeout - margin).min(MAX_CHECKPOINT_WAIT)
        }
        None => MAX_CHECKPOINT_WAIT,
    }
}

/// A `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Events of one SubmitStream in flight at once (read, being verified,
/// queued or waiting for their batch, until their answer is handed on). Enough to keep batches full from a single bulk
/// submitter (a batch syncs in about a millisecond); beyond it the stream's
/// HTTP/2 flow control holds the client back. Bounds one stream's memory to
/// 256 events (about 0.25 MiB for typical observations, 16 MiB at the payload cap).
const SUBMIT_STREAM_WINDOW: usize = 256;

#[derive(Clone)]
pub struct LedgerService {
    /// Read side: leaves and tree nodes for the read API and proofs.
    store: Arc<Store>,
    /// Write side: the one writer, and the latest checkpoint it published.
    sequencer: SequencerHandle,
    /// Counts submissions by outcome.
    metrics: Arc<Metrics>,
    /// The latest witnessed checkpoint and what is known of each witness.
    witnessing: WitnessingHandle,
    /// This server's payload cap (never above the format's).
    max_payload_bytes: usize,
    /// Turns true when the server stops: submit streams stop reading.
    shutting_down: watch::Receiver<bool>,
    /// At most [`MAX_SUBMIT_STREAMS`] SubmitStreams open at once.
    submit_streams: StreamLimit,
    /// At most [`MAX_ENTRY_STREAMS`] GetEntries streams open at once.
    entry_streams: StreamLimit,
}

impl LedgerService {
    pub fn new(
        store: Arc<Store>,
        sequencer: SequencerHandle,
        metrics: Arc<Metrics>,
        witnessing: WitnessingHandle,
        max_payload_bytes: usize,
        shutting_down: watch::Receiver<bool>,
    ) -> LedgerService {
        LedgerService {
            store,
            sequencer,
            metrics,
            witnessing,
            max_payload_bytes: max_payload_bytes.min(MAX_PAYLOAD_BYTES),
            shutting_down,
            submit_streams: StreamLimit::new(
                MAX_SUBMIT_STREAMS,
                "SubmitStream",
                "SubmitStreams",
                "retry later, or submit with unary Submit calls",
            ),
            entry_streams: StreamLimit::new(
                MAX_ENTRY_STREAMS,
                "GetEntries",
                "GetEntries streams",
                "retry later",
            ),
        }
    }

    /// The latest witnessed checkpoint covering `min_tree_size` entries,
    /// waiting for one until `deadline`.
    async fn witnessed_checkpoint(
        &self,
        min_tree_size: u64,
        deadline: tokio::time::Instant,
    ) -> Result<Arc<SignedCheckpoint>, Status> {
        if self.witnessing.policy().is_none() {
            return Err(refused(
                ReasonCode::NoWitnessPolicy,
                "the log has no witness policy: its checkpoints carry the operator's signature only",
            ));
        }
        let mut witnessed = self.witnessing.watch_witnessed();
        let covers = |c: &Option<Arc<SignedCheckpoint>>| {
            c.as_ref()
                .is_some_and(|c| c.body.tree_size >= min_tree_size.max(1))
        };
        if let Ok(Ok(checkpoint)) =
            tokio::time::timeout_at(deadline, witnessed.wait_for(covers)).await
        {
            if let Some(checkpoint) = checkpoint.clone() {
                return Ok(checkpoint);
            }
        }
        let rejection = match self.witnessing.witnessed() {
            Some(latest) => Rejection::new(
                ReasonCode::NotYetWitnessed,
                format!(
                    "the latest witnessed checkpoint covers {} entries, not {min_tree_size}; the witnesses' quorum has not cosigned a larger one yet",
                    latest.body.tree_size
                ),
            )
            .with("witnessed_size", latest.body.tree_size),
            None => Rejection::new(
                ReasonCode::NotYetWitnessed,
                "no checkpoint has been witnessed yet: the witnesses' quorum has not cosigned one",
            ),
        };
        Err(rejection_status(rejection))
    }

    fn current_checkpoint(&self) -> Result<Arc<SignedCheckpoint>, Status> {
        self.sequencer.checkpoint().ok_or_else(|| {
            refused(
                ReasonCode::LedgerNotStarted,
                "the ledger has no genesis yet",
            )
        })
    }
}

pub(crate) fn checkpoint_message(checkpoint: &SignedCheckpoint) -> Checkpoint {
    Checkpoint {
        note: checkpoint.note.clone(),
        tree_size: checkpoint.body.tree_size,
        root_hash: checkpoint.body.root_hash.to_vec(),
        witnesses: Vec::new(),
        witness_policy: String::new(),
    }
}

fn hashes(proof: Vec<Hash>) -> Vec<Vec<u8>> {
    proof.into_iter().map(|hash| hash.to_vec()).collect()
}

/// The verification budget of the connection a call came on; `None` for
/// calls made in-process (the bootstrap entries).
fn verify_budget<T>(request: &Request<T>) -> Option<Arc<Semaphore>> {
    request
        .extensions()
        .get::<ConnectionInfo>()
        .map(|connection| connection.verify_budget.clone())
}

/// Checks signatures off the async reactor, on the rayon pool, which keeps
/// one thread per core busy however many calls arrive at once. First takes
/// one permit per signature from the connection's `budget`, held until the
/// job is done (even if the caller has gone).
async fn verify_off_reactor(
    payload: Arc<Vec<u8>>,
    signatures: Arc<Vec<EventSignature>>,
    budget: Option<Arc<Semaphore>>,
) -> Result<(), Status> {
    let permit = match budget {
        // At most MAX_SIGNATURES (canonical_signatures checked), within the budget.
        Some(budget) => Some(
            budget
                .acquire_many_owned(signatures.len() as u32)
                .await
                .map_err(|_| internal("the verification budget was closed"))?,
        ),
        None => None,
    };
    let (done, verdict) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = done.send(verify_all(&payload, &signatures));
        drop(permit);
    });
    verdict
        .await
        .map_err(|_| internal("signature verification was dropped"))?
        .map_err(rejection_status)
}

type EntryStream = Pin<Box<dyn Stream<Item = Result<LogEntry, Status>> + Send>>;
type SubmitResultStream = Pin<Box<dyn Stream<Item = Result<SubmitResult, Status>> + Send>>;

/// An event whose signatures verified, ready for the sequencer.
struct VerifiedEvent {
    payload: Vec<u8>,
    signatures: Vec<EventSignature>,
    event: Event,
    /// The event's span (its author), for the stages after verification.
    span: tracing::Span,
}

/// An event queued at the sequencer: its durable answer, once it comes.
struct QueuedEvent {
    answer: Pending,
    span: tracing::Span,
    /// Who signed it as its author, for the log line of its outcome.
    author: String,
}

/// A refused event: the status its client gets and, when its payload
/// decoded, its author, for the log line of the refusal.
struct Refused {
    status: Status,
    author: Option<String>,
}

impl From<Status> for Refused {
    /// A refusal before the author is known (size, encoding).
    fn from(status: Status) -> Refused {
        Refused {
            status,
            author: None,
        }
    }
}

impl LedgerService {
    /// One event, from arrival to receipt, counted by outcome.
    async fn submit_event(
        &self,
        event: SignedEvent,
        budget: Option<Arc<Semaphore>>,
    ) -> Result<Receipt, Status> {
        let queued = match self.verify_event(event, budget).await {
            Ok(verified) => self.enqueue(verified).await,
            Err(refused) => Err(refused),
        };
        self.receipt(queued).await
    }

    /// The stateless checks, in parallel with every other call: size,
    /// canonical signature list, decoding (canonical payloads only,
    /// docs/spec.md section 1), agreement, and strict signature
    /// verification on the rayon pool, within the connection's `budget`.
    async fn verify_event(
        &self,
        event: SignedEvent,
        budget: Option<Arc<Semaphore>>,
    ) -> Result<VerifiedEvent, Refused> {
        let SignedEvent {
            payload,
            signatures,
        } = event;
        if payload.len() > self.max_payload_bytes {
            return Err(rejection_status(
                Rejection::new(
                    ReasonCode::PayloadTooLarge,
                    format!(
                        "payload is {} bytes, over the limit of {}",
                        payload.len(),
                        self.max_payload_bytes
                    ),
                )
                .with("size", payload.len())
                .with("limit", self.max_payload_bytes),
            )
            .into());
        }
        let signatures = canonical_signatures(
            signatures
                .into_iter()
                .map(|signature| (signature.public_key, signature.signature)),
        )
        .map_err(rejection_status)?;
        let event = decode_event(&payload).map_err(rejection_status)?;
        // Refuse another agreement's event before spending time on signatures.
        if let Some(agreement_id) = self.sequencer.agreement_id() {
            if event.agreement_id != agreement_id {
                return Err(Refused {
                    status: rejection_status(wrong_agreement(&event.agreement_id, agreement_id)),
                    author: Some(event.author),
                });
            }
        }
        let span = tracing::info_span!("submit", author = %event.author);
        let payload = Arc::new(payload);
        let signatures = Arc::new(signatures);
        if let Err(status) = verify_off_reactor(payload.clone(), signatures.clone(), budget)
            .instrument(span.clone())
            .await
        {
            return Err(Refused {
                status,
                author: Some(event.author),
            });
        }
        Ok(VerifiedEvent {
            payload: Arc::try_unwrap(payload).unwrap_or_else(|shared| (*shared).clone()),
            signatures: Arc::try_unwrap(signatures).unwrap_or_else(|shared| (*shared).clone()),
            event,
            span,
        })
    }

    /// Queues a verified event at the sequencer. Events queued in some
    /// order are sequenced in that order.
    async fn enqueue(&self, verified: VerifiedEvent) -> Result<QueuedEvent, Refused> {
        let VerifiedEvent {
            payload,
            signatures,
            event,
            span,
        } = verified;
        let author = event.author.clone();
        match self.sequencer.enqueue(payload, signatures, event).await {
            Ok(answer) => Ok(QueuedEvent {
                answer,
                span,
                author,
            }),
            Err(error) => Err(Refused {
                status: submit_status(error),
                author: Some(author),
            }),
        }
    }

    /// Waits for a queued event's durable entry and builds its receipt;
    /// counts and logs the outcome, whatever stage it came from.
    async fn receipt(&self, queued: Result<QueuedEvent, Refused>) -> Result<Receipt, Status> {
        let answer = match queued {
            Ok(QueuedEvent {
                answer,
                span,
                author,
            }) => async {
                let sequenced = answer.await.map_err(submit_status)?;
                self.receipt_for(sequenced).await
            }
            .instrument(span)
            .await
            .map_err(|status| Refused {
                status,
                author: Some(author.clone()),
            })
            .inspect(|receipt| tracing::info!(%author, seq = receipt.seq, "accepted")),
            Err(refused) => Err(refused),
        };
        self.metrics.count_submission(match &answer {
            Ok(_) => tonic::Code::Ok,
            Err(refused) => refused.status.code(),
        });
        answer.map_err(|Refused { status, author }| {
            tracing::info!(
                author = %author.as_deref().unwrap_or("(payload not decoded)"),
                reason = %describe(&status),
                "refused"
            );
            status
        })
    }

    /// The receipt of a durable entry. Its proof comes from the batch that
    /// answered when the entry is one of its own, else from the store.
    async fn receipt_for(&self, sequenced: Sequenced) -> Result<Receipt, Status> {
        let tree_size = sequenced.checkpoint.body.tree_size;
        let seq = sequenced.seq;
        let proof = match sequenced.batch.inclusion_proof(seq) {
            Some(proof) => proof,
            None => {
                read_store(&self.store, move |store| {
                    store.inclusion_proof(seq, tree_size)
                })
                .await?
            }
        };
        tracing::debug!(seq, "receipt");
        Ok(Receipt {
            seq,
            leaf_hash: sequenced.leaf_hash.to_vec(),
            checkpoint: Some(checkpoint_message(&sequenced.checkpoint)),
            inclusion_proof: Some(Proof {
                hashes: hashes(proof),
                tree_size,
                leaf_index: seq,
                old_size: 0,
            }),
            leaf: sequenced.leaf,
        })
    }
}

/// The stream's answer for the event at `index`: its receipt or its refusal.
/// The items of `stream`, each read only once a place in `window` is free,
/// and handed on with its place: the next item is read when some earlier
/// item's place is dropped. So however many stages an item goes through,
/// at most the window's places worth of items are held at once.
fn windowed<S: Stream + Unpin>(
    stream: S,
    window: Arc<Semaphore>,
) -> impl Stream<Item = (S::Item, tokio::sync::OwnedSemaphorePermit)> {
    futures::stream::unfold((stream, window), |(mut stream, window)| async move {
        // The semaphore is never closed, so acquiring only waits.
        let place = window.clone().acquire_owned().await.ok()?;
        let item = stream.next().await?;
        Some(((item, place), (stream, window)))
    })
}

fn submit_result(index: usize, answer: Result<Receipt, Status>) -> SubmitResult {
    SubmitResult {
        index: index as u64,
        outcome: Some(match answer {
            Ok(receipt) => Outcome::Receipt(receipt),
            // What Submit would have answered: the status's code, message,
            // and its ErrorInfo's reason and metadata.
            Err(status) => Outcome::Refusal(refusal(&status)),
        }),
    }
}

#[tonic::async_trait]
impl Ledger for LedgerService {
    async fn submit(&self, request: Request<SignedEvent>) -> Result<Response<Receipt>, Status> {
        let budget = verify_budget(&request);
        self.submit_event(request.into_inner(), budget)
            .await
            .map(Response::new)
    }

    /// The per-event path of Submit up to the sequencer, which decides the
    /// event in its queue's order and appends nothing (docs/spec.md
    /// section 6, "Checking a submission").
    async fn check_submission(
        &self,
        request: Request<SignedEvent>,
    ) -> Result<Response<SubmissionCheck>, Status> {
        let budget = verify_budget(&request);
        let VerifiedEvent {
            payload,
            signatures,
            event,
            span,
        } = self
            .verify_event(request.into_inner(), budget)
            .await
            .map_err(|refused| refused.status)?;
        let checked = self
            .sequencer
            .check(payload, signatures, event)
            .instrument(span)
            .await
            .map_err(submit_status)?;
        Ok(Response::new(SubmissionCheck {
            checked_at_size: checked.checked_at_size,
            existing_seq: checked.existing_seq,
        }))
    }

    type SubmitStreamStream = SubmitResultStream;

    /// Reads events while fewer than [`SUBMIT_STREAM_WINDOW`] are in flight,
    /// verifies them in parallel, queues them at the sequencer in the order
    /// sent (so a stream's events are sequenced in that order: an amendment
    /// may follow its observation), and answers them in that order. A broken
    /// or oversized message ends the stream with its status. When the server
    /// stops, no further event is read: those in flight are answered, then
    /// the stream ends with UNAVAILABLE. Over [`MAX_SUBMIT_STREAMS`] open
    /// streams, RESOURCE_EXHAUSTED.
    async fn submit_stream(
        &self,
        request: Request<Streaming<SignedEvent>>,
    ) -> Result<Response<SubmitResultStream>, Status> {
        // Held by the response stream: released when it ends or the client leaves.
        let permit = self.submit_streams.open()?;
        let budget = verify_budget(&request);
        let (verifier, queuer, answerer) = (self.clone(), self.clone(), self.clone());
        let mut stop = self.shutting_down.clone();
        // Set when shutdown, not the client, ended the reading.
        let cut_short = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cut_short_read = cut_short.clone();
        let events = request.into_inner().take_until(Box::pin(async move {
            stopping(&mut stop).await;
            cut_short.store(true, std::sync::atomic::Ordering::Relaxed);
        }));
        // Each event holds one of the window's places from being read until
        // its answer is handed to the response; each stage passes a broken
        // message's status along, which ends the answers there, and turns
        // everything else into the event's own answer.
        let window = Arc::new(Semaphore::new(SUBMIT_STREAM_WINDOW));
        let answers = windowed(events, window)
            .map(move |(event, place)| {
                let (service, budget) = (verifier.clone(), budget.clone());
                async move {
                    let verified =
                        async { Ok::<_, Status>(service.verify_event(event?, budget).await) };
                    (verified.await, place)
                }
            })
            .buffered(SUBMIT_STREAM_WINDOW)
            .then(move |(verified, place)| {
                let service = queuer.clone();
                async move {
                    let queued = async {
                        Ok::<_, Status>(match verified? {
                            Ok(verified) => service.enqueue(verified).await,
                            Err(refused) => Err(refused),
                        })
                    };
                    (queued.await, place)
                }
            })
            .map(move |(queued, place)| {
                let service = answerer.clone();
                async move {
                    let answer = async { Ok::<_, Status>(service.receipt(queued?).await) };
                    (answer.await, place)
                }
            })
            .buffered(SUBMIT_STREAM_WINDOW)
            .enumerate()
            .map(|(index, (answer, _place))| answer.map(|answer| submit_result(index, answer)));
        let ending = futures::stream::once(async move {
            cut_short_read
                .load(std::sync::atomic::Ordering::Relaxed)
                .then(|| {
                    Err(unavailable(
                        "the server is shutting down: events after the last answer were not \
                         read; submit them again (identical resubmission is idempotent)",
                    ))
                })
        })
        .filter_map(futures::future::ready);
        Ok(Response::new(Box::pin(answers.chain(ending).map(
            move |answer| {
                let _held = &permit;
                answer
            },
        ))))
    }

    async fn get_checkpoint(
        &self,
        request: Request<GetCheckpointRequest>,
    ) -> Result<Response<Checkpoint>, Status> {
        let wait = checkpoint_wait(&request);
        let deadline = tokio::time::Instant::now() + wait;
        let GetCheckpointRequest {
            witnessed,
            min_tree_size,
        } = request.into_inner();
        let latest = self.current_checkpoint()?;
        let checkpoint = if witnessed {
            self.witnessed_checkpoint(min_tree_size, deadline).await?
        } else if min_tree_size > latest.body.tree_size {
            let mut checkpoints = self.sequencer.watch_checkpoints();
            let reached = tokio::time::timeout_at(
                deadline,
                checkpoints.wait_for(|c| {
                    c.as_ref()
                        .is_some_and(|c| c.body.tree_size >= min_tree_size)
                }),
            )
            .await;
            match reached {
                Ok(Ok(checkpoint)) => checkpoint.clone().unwrap_or(latest),
                _ => {
                    let size = self.current_checkpoint()?.body.tree_size;
                    return Err(beyond_tree(
                        size,
                        format!(
                            "min_tree_size {min_tree_size} was not reached within {:.1} s: the log holds {size} entries",
                            wait.as_secs_f64()
                        ),
                    ));
                }
            }
        } else {
            latest
        };
        let mut message = checkpoint_message(&checkpoint);
        message.witnesses = self
            .witnessing
            .states()
            .into_iter()
            .map(|(name, state)| WitnessStatus {
                name,
                cosigned_size: state.cosigned_size,
                last_error: state.last_error,
            })
            .collect();
        message.witness_policy = self
            .witnessing
            .policy()
            .map(|policy| policy.1.to_text())
            .unwrap_or_default();
        Ok(Response::new(message))
    }

    type GetEntriesStream = EntryStream;

    async fn get_entries(
        &self,
        request: Request<GetEntriesRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        let GetEntriesRequest { start, end } = request.into_inner();
        let size = self.current_checkpoint()?.body.tree_size;
        if end <= start {
            return Err(refused(
                ReasonCode::RangeInvalid,
                format!("empty range: end ({end}) must be greater than start ({start})"),
            ));
        }
        if start >= size {
            return Err(beyond_tree(
                size,
                format!("start {start} is at or beyond the tree size {size}"),
            ));
        }
        let end = end.min(size);
        // Held by the response stream: released when the client leaves.
        let permit = self.entry_streams.open()?;
        let (sender, receiver) = tokio::sync::mpsc::channel(ENTRY_STREAM_BUFFER);
        tokio::spawn(send_entries(self.store.clone(), start, end, sender));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver).map(move |entry| {
                let _held = &permit;
                entry
            }),
        )))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<GetInclusionProofRequest>,
    ) -> Result<Response<Proof>, Status> {
        let GetInclusionProofRequest { seq, tree_size } = request.into_inner();
        let size = self.current_checkpoint()?.body.tree_size;
        let tree_size = if tree_size == 0 { size } else { tree_size };
        if tree_size > size {
            return Err(beyond_tree(
                size,
                format!("tree_size {tree_size} is beyond the current tree size {size}"),
            ));
        }
        if seq >= tree_size {
            return Err(beyond_tree(
                size,
                format!("entry {seq} is not in a tree of {tree_size} entries"),
            ));
        }
        let proof = read_store(&self.store, move |store| {
            store.inclusion_proof(seq, tree_size)
        })
        .await?;
        Ok(Response::new(Proof {
            hashes: hashes(proof),
            tree_size,
            leaf_index: seq,
            old_size: 0,
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<Proof>, Status> {
        let GetConsistencyProofRequest { old_size, new_size } = request.into_inner();
        let size = self.current_checkpoint()?.body.tree_size;
        let new_size = if new_size == 0 { size } else { new_size };
        if new_size > size {
            return Err(beyond_tree(
                size,
                format!("new_size {new_size} is beyond the current tree size {size}"),
            ));
        }
        if old_size > new_size {
            return Err(refused(
                ReasonCode::RangeInvalid,
                format!("old_size {old_size} is greater than new_size {new_size}"),
            ));
        }
        let proof = read_store(&self.store, move |store| {
            store.consistency_proof(old_size, new_size)
        })
        .await?;
        Ok(Response::new(Proof {
            hashes: hashes(proof),
            tree_size: new_size,
            leaf_index: 0,
            old_size,
        }))
    }
}

/// Feeds one GetEntries stream: entries `start..end`, read from the store
/// [`ENTRY_READ_CHUNK`] at a time on the blocking pool and sent while
/// holding no thread, until the end, a failed read, or the reader leaving.
async fn send_entries(
    store: Arc<Store>,
    start: u64,
    end: u64,
    sender: tokio::sync::mpsc::Sender<Result<LogEntry, Status>>,
) {
    let mut next = start;
    while next < end {
        let chunk_end = end.min(next.saturating_add(ENTRY_READ_CHUNK));
        let read = read_store(&store, move |store| {
            store.leaves(next, chunk_end).collect::<Result<Vec<_>, _>>()
        });
        let chunk = match read.await {
            Ok(chunk) => chunk,
            Err(status) => {
                let _ = sender.send(Err(status)).await;
                return;
            }
        };
        if chunk.is_empty() {
            let _ = sender
                .send(Err(internal(format!(
                    "the store holds no entry {next} below the checkpoint's size"
                ))))
                .await;
            return;
        }
        for (seq, leaf) in chunk {
            next = seq + 1;
            // A closed channel means the reader went away: stop reading.
            if sender.send(Ok(LogEntry { seq, leaf })).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn a_client_deadline_shortens_the_checkpoint_wait_by_a_margin() {
        use std::time::Duration;
        assert_eq!(parse_grpc_timeout("5000m"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "m", "123456789S", "5s", "-5S", "5 S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
        let with_timeout = |value: &str| {
            let mut request = Request::new(());
            request
                .metadata_mut()
                .insert("grpc-timeout", value.parse().unwrap());
            checkpoint_wait(&request)
        };
        assert_eq!(with_timeout("5S"), Duration::from_millis(4500));
        assert_eq!(with_timeout("1S"), Duration::from_millis(900));
        assert_eq!(with_timeout("1H"), MAX_CHECKPOINT_WAIT);
        assert_eq!(with_timeout("bogus"), MAX_CHECKPOINT_WAIT);
        assert_eq!(checkpoint_wait(&Request::new(())), MAX_CHECKPOINT_WAIT);
    }

    #[test]
    fn a_window_reads_no_further_than_its_places() {
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = read.clone();
        let source = futures::stream::iter(0..10).inspect(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let mut items = Box::pin(windowed(source, Arc::new(Semaphore::new(3))));
        let mut held: Vec<_> = (0..3)
            .map(|expected| {
                let (item, place) = items.next().now_or_never().flatten().unwrap();
                assert_eq!(item, expected);
                place
            })
            .collect();
        // Every place held: the next item waits, and is not even read.
        assert!(items.next().now_or_never().is_none());
        assert_eq!(read.load(std::sync::atomic::Ordering::Relaxed), 3);
        // One answered: exactly one more is read.
        drop(held.remove(0));
        let (item, _place) = items.next().now_or_never().flatten().unwrap();
        assert_eq!(item, 3);
        assert!(items.next().now_or_never().is_none());
        assert_eq!(read.load(std::sync::atomic::Ordering::Relaxed), 4);
    }
}
