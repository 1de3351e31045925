//! The gRPC edge: tonic services over the sequencer and the store.
//!
//! Handlers do the stateless work in parallel (size limits, decoding,
//! strict signature verification on the rayon pool, proof reads on the
//! blocking pool) and leave ordering to the one sequencer. Every error a
//! client sees is a [`Rejection`] (a `ReasonCode`, a message, metadata)
//! made a status by [`rejection_status`]: the reason's one gRPC code, and
//! the reason in a `google.rpc.ErrorInfo` (docs/spec.md section 6).
//!
//! **Limits.** What one client can make the server hold or do is bounded,
//! each limit a constant beside its reason: message size
//! ([`MAX_GRPC_MESSAGE_BYTES`]), streams per connection
//! ([`MAX_CONCURRENT_STREAMS_PER_CONNECTION`]), open streams of each kind
//! that holds data for its client ([`MAX_SUBSCRIPTIONS`],
//! [`MAX_SUBMIT_STREAMS`], [`MAX_ENTRY_STREAMS`]: over them a call is
//! answered RESOURCE_EXHAUSTED), signatures under verification per
//! connection ([`VERIFY_BUDGET_PER_CONNECTION`]), and silence
//! ([`KEEPALIVE_INTERVAL`], [`HANDSHAKE_TIMEOUT`], [`IDLE_TIMEOUT`]). `tests/abuse.rs` holds each of them to
//! its word; `bench --abuse` prints what honest clients see meanwhile.

mod compliance;
mod connection;
mod ledger;
mod paging;
pub mod rpc_metrics;

use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::Status;

use anyhow::Context;

use crate::metrics::Metrics;
use crate::sequencer::{SequencerHandle, SubmitError};
use crate::storage::{Store, StoreError};
use ceasefire_core::rejection::{ReasonCode, Rejection, ERROR_DOMAIN};
use ceasefire_grpc::proto::compliance_server::ComplianceServer;
use ceasefire_grpc::proto::ledger_server::LedgerServer;
pub use compliance::{change_message, pair_status, ComplianceService};
pub use connection::{
    ConnectionInfo, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, VERIFY_BUDGET_PER_CONNECTION,
};
pub use ledger::LedgerService;

pub use ceasefire_grpc::MAX_GRPC_MESSAGE_BYTES;

/// Calls (HTTP/2 streams) one connection may have open at once. tonic
/// passes no value to hyper, which then allows any number, so one
/// connection could hold thousands of calls. A client over the limit waits
/// for a slot (HTTP/2 clients queue), it is not refused. RFC 9113 asks for
/// no less than 100; honest clients use one call per connection (unary
/// submitters, `watch`, the auditor) or a few.
pub const MAX_CONCURRENT_STREAMS_PER_CONNECTION: u32 = 128;

/// Open `Subscribe` streams, over all connections. An idle subscription
/// costs about 20 KiB (its task, channel and HTTP/2 stream); a slow one up
/// to its 256-change buffer, a catch-up chunk and hyper's 400 KiB send
/// buffer (under 1 MiB). And every durable batch wakes every subscription
/// to read the store, even when the batch changed no status: with 1,024
/// idle subscriptions, honest receipts/s fell ninefold on two cores (`bench
/// --abuse`). 256 is still far more than the parties, missions and auditors
/// of one agreement (a public audience belongs behind a relay).
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// Open `SubmitStream` streams, over all connections. An idle one costs
/// about 10 to 20 KiB; a busy one holds its window of 256 events (being
/// verified, queued or awaiting their batch: ~0.25 MiB of typical
/// observations, up to 16 MiB at the payload cap). Bulk submitters are missions, each with one stream;
/// 256 of them bounds the total without limiting an honest deployment
/// (`bench --stream` opens one per client, 64 by default).
pub const MAX_SUBMIT_STREAMS: usize = 256;

/// Open `GetEntries` streams, over all connections. A reader that does not
/// read holds its reading task, one chunk being sent, a 64-entry buffer
/// and what hyper took before the window closed (about 150 KiB with
/// typical entries, measured; a few MiB at the largest). Readers are
/// auditors and exporters, each reading one range after another; 64 at
/// once is more than an agreement has.
pub const MAX_ENTRY_STREAMS: usize = 64;

/// After this long without a frame from a client, the server sends it an
/// HTTP/2 PING; without an answer within [`KEEPALIVE_TIMEOUT`], the
/// connection is closed. Frees what dead peers and clients that stopped
/// mid-frame hold (their streams count against the limits above) within
/// 20 s, at the cost of one small frame each way per idle connection every
/// 15 s.
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);

/// How long a keepalive PING may go unanswered: a loaded client's reactor
/// answers within milliseconds; seconds allow for a congested link.
pub const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the accept loop waits after accept fails (out of file
/// descriptors, typically) before trying again: the pending connection
/// stays in the backlog, so retrying at once would spin a core.
const ACCEPT_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// A limit on open streams of one kind, over all connections: each open
/// stream holds a permit until it ends; past the limit a call is answered
/// RESOURCE_EXHAUSTED, naming the limit and what to do.
#[derive(Clone)]
pub(crate) struct StreamLimit {
    permits: Arc<tokio::sync::Semaphore>,
    limit: usize,
    /// The RPC whose streams these are ("Subscribe"), for the metadata.
    rpc: &'static str,
    /// What the streams are ("subscriptions"), for the message.
    kind: &'static str,
    /// What the client may do about it, for the message.
    advice: &'static str,
}

impl StreamLimit {
    pub(crate) fn new(
        limit: usize,
        rpc: &'static str,
        kind: &'static str,
        advice: &'static str,
    ) -> StreamLimit {
        StreamLimit {
            permits: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
            rpc,
            kind,
            advice,
        }
    }

    /// A permit for one more stream, or RESOURCE_EXHAUSTED (`STREAM_LIMIT_REACHED`).
    pub(crate) fn open(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            rejection_status(
                Rejection::new(
                    ReasonCode::StreamLimitReached,
                    format!(
                        "this server already has {} open {}, its limit; {}",
                        self.limit, self.kind, self.advice
                    ),
                )
                .with("stream", self.rpc)
                .with("limit", self.limit),
            )
        })
    }
}

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
    /// The witnessed checkpoints `GetCheckpoint` serves.
    pub witnessing: crate::witnessing::WitnessingHandle,
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
    let sequencer_failure = sequencer.watch_failure();
    let ledger = LedgerServer::new(LedgerService::new(
        store.clone(),
        sequencer.clone(),
        options.metrics.clone(),
        options.witnessing.clone(),
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
    // Reflection in both versions: v1 is the standard, but many clients
    // (older grpcurl, Postman, some language runtimes) speak only v1alpha.
    let reflection = reflection_builder()
        .build_v1()
        .context("cannot build the reflection service")?;
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .context("cannot build the v1alpha reflection service")?;
    let mut stop = shutting_down;
    let mut failure = sequencer_failure;
    let shutdown = async move {
        // A sequencer that fail-stopped takes no more submissions: the
        // Ledger service says NOT_SERVING from then on (reads still work,
        // and Compliance serves on), so a balancer or an operator sees it.
        tokio::select! {
            () = compliance::stopping(&mut stop) => {}
            Some(reason) = fail_stopped(&mut failure) => {
                tracing::error!(
                    %reason,
                    "the ledger takes no more submissions: health says NOT_SERVING for the Ledger service"
                );
                health
                    .set_not_serving::<LedgerServer<LedgerService>>()
                    .await;
                compliance::stopping(&mut stop).await;
            }
        }
        health
            .set_not_serving::<LedgerServer<LedgerService>>()
            .await;
        health
            .set_not_serving::<ComplianceServer<ComplianceService>>()
            .await;
    };
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    if let Some(tls) = &options.tls {
        builder = builder
            .tls_config(tls.server_config()?)
            .context("invalid TLS configuration")?;
    }
    builder
        .layer(rpc_metrics::RpcMetricsLayer::new(options.metrics.clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(ledger)
        .add_service(compliance)
        .serve_with_incoming_shutdown(accept(listener, severed), shutdown)
        .await
        .context("the gRPC server failed")
}

/// Resolves with the reason once the sequencer fail-stops; `None` if it
/// ends without (its sender dropped at shutdown). The reason is cloned out:
/// the watch's guard must not be held across an await.
async fn fail_stopped(
    failure: &mut tokio::sync::watch::Receiver<Option<String>>,
) -> Option<String> {
    failure
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|reason| reason.clone())
}

/// What reflection serves: our protos and the health service's.
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ceasefire_grpc::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// The accepted connections, each [`connection::Severable`]. A failed
/// accept is logged and retried after [`ACCEPT_RETRY_DELAY`] (tonic would
/// retry at once, forever, while the process is out of file descriptors).
fn accept(
    listener: TcpListener,
    severed: tokio::sync::watch::Receiver<bool>,
) -> impl futures::Stream<Item = std::io::Result<connection::Severable>> {
    futures::stream::unfold(listener, move |listener| {
        let severed = severed.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        // Replies are small: without this, Nagle's algorithm
                        // holds them for the client's delayed ACK (~40 ms).
                        let _ = stream.set_nodelay(true);
                        let stream = connection::Severable::new(stream, severed);
                        return Some((Ok(stream), listener));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot accept a connection; retrying");
                        tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    }
                }
            }
        }
    })
}

/// The one way a refusal reaches a client: the status code is the
/// reason's ([`Rejection::kind`]), and `grpc-status-details-bin` holds a
/// `google.rpc.Status` (the same code and message) whose one detail is the
/// `google.rpc.ErrorInfo { reason, domain: "ceasefire.v1", metadata }`
/// (docs/spec.md section 6, "Error details").
pub(crate) fn rejection_status(rejection: Rejection) -> Status {
    debug_assert!(
        rejection.check_metadata().is_ok(),
        "{:?}: {rejection:?}",
        rejection.check_metadata()
    );
    let code = tonic::Code::from(rejection.kind().code());
    let details = tonic_types::ErrorDetails::with_error_info(
        rejection.reason_name(),
        ERROR_DOMAIN,
        rejection
            .metadata
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
    );
    <Status as tonic_types::StatusExt>::with_error_details(code, rejection.message, details)
}

/// A refusal for `reason` without metadata, as a status.
pub(crate) fn refused(reason: ReasonCode, message: impl Into<String>) -> Status {
    rejection_status(Rejection::new(reason, message))
}

/// `OUT_OF_RANGE` (`BEYOND_TREE`): `message` names a position or size
/// beyond the tree of `tree_size` entries.
pub(crate) fn beyond_tree(tree_size: u64, message: String) -> Status {
    rejection_status(Rejection::new(ReasonCode::BeyondTree, message).with("tree_size", tree_size))
}

/// `INTERNAL` (`INTERNAL_ERROR`): a fault of the server, not of the request.
pub(crate) fn internal(message: impl Into<String>) -> Status {
    refused(ReasonCode::InternalError, message)
}

/// `UNAVAILABLE` (`SERVER_UNAVAILABLE`): retry later or elsewhere.
pub(crate) fn unavailable(message: impl Into<String>) -> Status {
    refused(ReasonCode::ServerUnavailable, message)
}

pub(crate) fn submit_status(error: SubmitError) -> Status {
    match error {
        SubmitError::Rejected(rejection) => rejection_status(rejection),
        SubmitError::Unavailable(reason) => unavailable(reason),
    }
}

/// Runs a store read on the blocking pool (sled reads may touch disk), its
/// failure as the status its caller answers.
pub(crate) async fn read_store<T: Send + 'static>(
    store: &Arc<Store>,
    read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || read(&store))
        .await
        .map_err(|error| internal(format!("read task failed: {error}")))?
        .map_err(store_status)
}

pub(crate) fn store_status(error: StoreError) -> Status {
    match error {
        StoreError::OutOfRange { size, .. } => beyond_tree(size, error.to_string()),
        other => {
            tracing::error!(error = %other, "store read failed");
            internal(other.to_string())
        }
    }
}
