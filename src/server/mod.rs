//! The gRPC edge: tonic services over the sequencer and the store.
//!
//! Handlers do the stateless work in parallel (size limits, decoding,
//! strict signature verification on the rayon pool, proof reads on the
//! blocking pool) and leave ordering to the one sequencer. Every refusal
//! maps a [`RejectionKind`] to its one gRPC status code.

mod compliance;
mod ledger;

use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::Status;

use crate::core::rejection::{Rejection, RejectionKind};
use crate::proto::compliance_server::ComplianceServer;
use crate::proto::ledger_server::LedgerServer;
use crate::sequencer::{SequencerHandle, SubmitError};
use crate::storage::{Store, StoreError};
pub use compliance::ComplianceService;
pub use ledger::LedgerService;

/// Largest gRPC message accepted: room for the largest legal event (payload
/// cap plus signatures) and nothing much more. Bigger messages are refused
/// by tonic before they are read into memory.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 64 * 1024;

/// Serves the ledger on `listener` until `shutting_down` turns true, then
/// stops accepting, ends streams, lets in-flight calls finish, and returns.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    sequencer: SequencerHandle,
    shutting_down: tokio::sync::watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let ledger = LedgerServer::new(LedgerService::new(store.clone(), sequencer.clone()))
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let compliance = ComplianceServer::new(ComplianceService::new(
        store,
        sequencer,
        shutting_down.clone(),
    ));
    let mut stop = shutting_down;
    let shutdown = async move { compliance::stopping(&mut stop).await };
    tonic::transport::Server::builder()
        .add_service(ledger)
        .add_service(compliance)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
}

pub(crate) fn rejection_status(rejection: Rejection) -> Status {
    let code = match rejection.kind {
        RejectionKind::InvalidArgument => tonic::Code::InvalidArgument,
        RejectionKind::Unauthenticated => tonic::Code::Unauthenticated,
        RejectionKind::PermissionDenied => tonic::Code::PermissionDenied,
        RejectionKind::AlreadyExists => tonic::Code::AlreadyExists,
        RejectionKind::FailedPrecondition => tonic::Code::FailedPrecondition,
    };
    Status::new(code, rejection.message)
}

pub(crate) fn submit_status(error: SubmitError) -> Status {
    match error {
        SubmitError::Rejected(rejection) => rejection_status(rejection),
        SubmitError::Unavailable(reason) => Status::unavailable(reason),
    }
}

pub(crate) fn store_status(error: StoreError) -> Status {
    match error {
        StoreError::OutOfRange { .. } => Status::out_of_range(error.to_string()),
        other => {
            tracing::error!(error = %other, "store read failed");
            Status::internal(other.to_string())
        }
    }
}
