//! The gRPC edge: tonic services over the sequencer and the store.
//!
//! Handlers do the stateless work in parallel (size limits, decoding,
//! strict signature verification on the rayon pool, proof reads on the
//! blocking pool) and leave ordering to the one sequencer. Every refusal
//! maps a [`RejectionKind`] to its one gRPC status code.

mod compliance;
mod connection;
mod ledger;

use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::Status;

use anyhow::Context;

use crate::core::rejection::{Rejection, RejectionKind};
use crate::metrics::Metrics;
use crate::proto::compliance_server::ComplianceServer;
use crate::proto::ledger_server::LedgerServer;
use crate::sequencer::{SequencerHandle, SubmitError};
use crate::storage::{Store, StoreError};
pub use compliance::{change_message, pair_status, ComplianceService};
pub use ledger::LedgerService;

/// Largest gRPC message accepted: room for the largest legal event (payload
/// cap plus signatures) and nothing much more. Bigger messages are refused
/// by tonic before they are read into memory.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 64 * 1024;

/// TLS for the gRPC port: the server's certificate chain and key (PEM) and,
/// for mutual TLS, the CA that client certificates must chain to.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<std::path::PathBuf>,
}

impl TlsFiles {
    fn server_config(&self) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let mut config = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(read(&self.cert)?, read(&self.key)?),
        );
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        Ok(config)
    }
}

/// Everything the gRPC edge needs besides the store and the sequencer.
#[derive(Clone)]
pub struct ServerOptions {
    pub tls: Option<TlsFiles>,
    pub metrics: Arc<Metrics>,
    /// Payload cap (at most the format's `MAX_PAYLOAD_BYTES`).
    pub max_payload_bytes: usize,
}

/// Serves the ledger on `listener` until `shutting_down` turns true, then
/// reports NOT_SERVING, stops accepting, ends streams, lets in-flight calls
/// finish, and returns. Connections still open when `severed` turns true are
/// cut.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    sequencer: SequencerHandle,
    shutting_down: tokio::sync::watch::Receiver<bool>,
    severed: tokio::sync::watch::Receiver<bool>,
    options: ServerOptions,
) -> anyhow::Result<()> {
    let ledger = LedgerServer::new(LedgerService::new(
        store.clone(),
        sequencer.clone(),
        options.metrics.clone(),
        options.max_payload_bytes,
        shutting_down.clone(),
    ))
    .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let compliance = ComplianceServer::new(ComplianceService::new(
        store,
        sequencer,
        shutting_down.clone(),
        options.metrics.clone(),
    ));
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<LedgerServer<LedgerService>>().await;
    health
        .set_serving::<ComplianceServer<ComplianceService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build the reflection service")?;
    let mut stop = shutting_down;
    let shutdown = async move {
        compliance::stopping(&mut stop).await;
        health
            .set_not_serving::<LedgerServer<LedgerService>>()
            .await;
        health
            .set_not_serving::<ComplianceServer<ComplianceService>>()
            .await;
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &options.tls {
        builder = builder
            .tls_config(tls.server_config()?)
            .context("invalid TLS configuration")?;
    }
    builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(ledger)
        .add_service(compliance)
        .serve_with_incoming_shutdown(
            tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                move |stream| {
                    stream.map(|stream| {
                        // Replies are small: without this, Nagle's algorithm
                        // holds them for the client's delayed ACK (~40 ms).
                        let _ = stream.set_nodelay(true);
                        connection::Severable::new(stream, severed.clone())
                    })
                },
            ),
            shutdown,
        )
        .await
        .context("the gRPC server failed")
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
