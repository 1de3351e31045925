//! The `ceasefire.v1.Ledger` service: Submit and the read API of docs/spec.md.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{rejection_status, store_status, submit_status};
use crate::core::leaf::MAX_PAYLOAD_BYTES;
use crate::core::merkle::Hash;
use crate::core::rejection::Rejection;
use crate::core::rules::decode_event;
use crate::core::signing::{canonical_signatures, verify_all};
use crate::metrics::Metrics;
use crate::proto::{
    ledger_server::Ledger, Checkpoint, GetCheckpointRequest, GetConsistencyProofRequest,
    GetEntriesRequest, GetInclusionProofRequest, LogEntry, Proof, Receipt, SignedEvent,
};
use crate::sequencer::{SequencerHandle, SignedCheckpoint};
use crate::storage::Store;

/// Entries a GetEntries stream reads ahead of a slow reader; bounds the
/// memory one reader can hold (~64 x 36 KiB worst case).
const ENTRY_STREAM_BUFFER: usize = 64;

pub struct LedgerService {
    /// Read side: leaves and tree nodes for the read API and proofs.
    store: Arc<Store>,
    /// Write side: the one writer, and the latest checkpoint it published.
    sequencer: SequencerHandle,
    /// Counts submissions by outcome.
    metrics: Arc<Metrics>,
    /// This server's payload cap (never above the format's).
    max_payload_bytes: usize,
}

impl LedgerService {
    pub fn new(
        store: Arc<Store>,
        sequencer: SequencerHandle,
        metrics: Arc<Metrics>,
        max_payload_bytes: usize,
    ) -> LedgerService {
        LedgerService {
            store,
            sequencer,
            metrics,
            max_payload_bytes: max_payload_bytes.min(MAX_PAYLOAD_BYTES),
        }
    }

    fn current_checkpoint(&self) -> Result<Arc<SignedCheckpoint>, Status> {
        self.sequencer
            .checkpoint()
            .ok_or_else(|| Status::failed_precondition("the ledger has no genesis yet"))
    }

    /// Runs a store read on the blocking pool (sled reads may touch disk).
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Store) -> Result<T, crate::storage::StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || read(&store))
            .await
            .map_err(|error| Status::internal(format!("read task failed: {error}")))?
            .map_err(store_status)
    }
}

pub(crate) fn checkpoint_message(checkpoint: &SignedCheckpoint) -> Checkpoint {
    Checkpoint {
        note: checkpoint.note.clone(),
        tree_size: checkpoint.body.tree_size,
        root_hash: checkpoint.body.root_hash.to_vec(),
    }
}

fn hashes(proof: Vec<Hash>) -> Vec<Vec<u8>> {
    proof.into_iter().map(|hash| hash.to_vec()).collect()
}

/// Checks signatures off the async reactor, on the rayon pool, which keeps
/// one thread per core busy however many calls arrive at once.
async fn verify_off_reactor(
    payload: Arc<Vec<u8>>,
    signatures: Arc<Vec<crate::core::signing::EventSignature>>,
) -> Result<(), Status> {
    let (done, verdict) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = done.send(verify_all(&payload, &signatures));
    });
    verdict
        .await
        .map_err(|_| Status::internal("signature verification was dropped"))?
        .map_err(rejection_status)
}

type EntryStream = Pin<Box<dyn Stream<Item = Result<LogEntry, Status>> + Send>>;

impl LedgerService {
    async fn submit_inner(
        &self,
        request: Request<SignedEvent>,
    ) -> Result<Response<Receipt>, Status> {
        let SignedEvent {
            payload,
            signatures,
        } = request.into_inner();
        if payload.len() > self.max_payload_bytes {
            return Err(rejection_status(Rejection::invalid(format!(
                "payload is {} bytes, over the limit of {}",
                payload.len(),
                self.max_payload_bytes
            ))));
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
                return Err(rejection_status(Rejection::precondition(format!(
                    "event is for agreement {:?}, this ledger is {:?}",
                    event.agreement_id, agreement_id
                ))));
            }
        }
        let span = tracing::info_span!("submit", author = %event.author);
        async move {
            let payload = Arc::new(payload);
            let signatures = Arc::new(signatures);
            verify_off_reactor(payload.clone(), signatures.clone()).await?;
            let payload = Arc::try_unwrap(payload).unwrap_or_else(|shared| (*shared).clone());
            let signatures = Arc::try_unwrap(signatures).unwrap_or_else(|shared| (*shared).clone());
            let sequenced = self
                .sequencer
                .submit(payload, signatures, event)
                .await
                .map_err(submit_status)?;
            let tree_size = sequenced.checkpoint.body.tree_size;
            let seq = sequenced.seq;
            let proof = self
                .read(move |store| store.inclusion_proof(seq, tree_size))
                .await?;
            tracing::debug!(seq, "receipt");
            Ok(Response::new(Receipt {
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
            }))
        }
        .instrument(span)
        .await
    }
}

#[tonic::async_trait]
impl Ledger for LedgerService {
    async fn submit(&self, request: Request<SignedEvent>) -> Result<Response<Receipt>, Status> {
        let answer = self.submit_inner(request).await;
        self.metrics.count_submission(match &answer {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        });
        answer
    }

    async fn get_checkpoint(
        &self,
        _request: Request<GetCheckpointRequest>,
    ) -> Result<Response<Checkpoint>, Status> {
        Ok(Response::new(checkpoint_message(
            self.current_checkpoint()?.as_ref(),
        )))
    }

    type GetEntriesStream = EntryStream;

    async fn get_entries(
        &self,
        request: Request<GetEntriesRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        let GetEntriesRequest { start, end } = request.into_inner();
        let size = self.current_checkpoint()?.body.tree_size;
        if end <= start {
            return Err(Status::invalid_argument(format!(
                "empty range: end ({end}) must be greater than start ({start})"
            )));
        }
        if start >= size {
            return Err(Status::out_of_range(format!(
                "start {start} is at or beyond the tree size {size}"
            )));
        }
        let end = end.min(size);
        let (sender, receiver) = tokio::sync::mpsc::channel(ENTRY_STREAM_BUFFER);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            for item in store.leaves(start, end) {
                let message = item
                    .map(|(seq, leaf)| LogEntry { seq, leaf })
                    .map_err(store_status);
                let failed = message.is_err();
                // A closed channel means the reader went away: stop reading.
                if sender.blocking_send(message).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
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
            return Err(Status::out_of_range(format!(
                "tree_size {tree_size} is beyond the current tree size {size}"
            )));
        }
        if seq >= tree_size {
            return Err(Status::out_of_range(format!(
                "entry {seq} is not in a tree of {tree_size} entries"
            )));
        }
        let proof = self
            .read(move |store| store.inclusion_proof(seq, tree_size))
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
            return Err(Status::out_of_range(format!(
                "new_size {new_size} is beyond the current tree size {size}"
            )));
        }
        if old_size > new_size {
            return Err(Status::invalid_argument(format!(
                "old_size {old_size} is greater than new_size {new_size}"
            )));
        }
        let proof = self
            .read(move |store| store.consistency_proof(old_size, new_size))
            .await?;
        Ok(Response::new(Proof {
            hashes: hashes(proof),
            tree_size: new_size,
            leaf_index: 0,
            old_size,
        }))
    }
}
