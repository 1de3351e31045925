//! A running ledger node: store, recovery, sequencer and gRPC server, wired.
//!
//! `serve` and the integration tests start nodes the same way, through
//! [`start`], so the tests exercise exactly what operators run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use tonic::Request;

use crate::metrics::Metrics;
use crate::sequencer::{self, SequencerConfig, StartupCheck};
use crate::server::{self, LedgerService, ServerOptions, TlsFiles};
use crate::storage::{Store, DB_DIR_NAME, RECORD_FILE_NAME};
use ceasefire_grpc::proto::{ledger_server::Ledger, SignedEvent};

/// How long shutdown waits for open calls and streams before cutting them:
/// long enough for a batch in flight (milliseconds) and for streaming clients
/// to read their last messages, short enough for a service manager's stop
/// timeout.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Signs checkpoints; must be the key the genesis names.
    pub operator_key: ed25519_dalek::SigningKey,
    /// Entries to write first when the log is empty (a genesis, then
    /// anything else signed with it); ignored for an existing log.
    pub bootstrap: Vec<SignedEvent>,
    pub sequencer: SequencerConfig,
    pub startup_check: StartupCheck,
    /// TLS for the gRPC port (plaintext when `None`).
    pub tls: Option<TlsFiles>,
    /// Where to serve Prometheus metrics (`None`: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// Payload cap for Submit (at most the format's 32 KiB).
    pub max_payload_bytes: usize,
    /// Keep a C2SP tlog-tiles mirror of the log here (`None`: no mirror);
    /// see `crate::tiles_publisher`.
    pub tiles_dir: Option<PathBuf>,
}

impl NodeConfig {
    /// A node with the defaults for everything but what it cannot do without.
    pub fn new(
        data_dir: PathBuf,
        listen: SocketAddr,
        operator_key: ed25519_dalek::SigningKey,
    ) -> Self {
        NodeConfig {
            data_dir,
            listen,
            operator_key,
            bootstrap: Vec::new(),
            sequencer: SequencerConfig::default(),
            startup_check: StartupCheck::Full,
            tls: None,
            metrics_listen: None,
            max_payload_bytes: ceasefire_core::leaf::MAX_PAYLOAD_BYTES,
            tiles_dir: None,
        }
    }
}

/// A node serving on `local_addr` until [`Node::shutdown`].
pub struct Node {
    pub local_addr: SocketAddr,
    /// Where metrics are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    /// Whether clients must use TLS (for [`Node::url`]).
    tls: bool,
    pub store: Arc<Store>,
    /// Set to true to stop: the server stops accepting and ends streams.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Set to true after the grace period: open connections are cut.
    sever: tokio::sync::watch::Sender<bool>,
    /// The metrics endpoint, stopped with the node (its port is released).
    metrics_task: Option<tokio::task::JoinHandle<()>>,
    /// The collection of cosignatures (`crate::witnessing`); it holds the
    /// store, so it is awaited before the store is closed.
    witnessing_task: tokio::task::JoinHandle<()>,
    /// The tiles mirror's publisher, if `NodeConfig::tiles_dir` asked for
    /// one; it holds the store too.
    tiles_task: Option<tokio::task::JoinHandle<()>>,
    /// What the tiles mirror last published (stays at its default without one).
    pub tiles_published: tokio::sync::watch::Receiver<crate::tiles_publisher::Published>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    sequencer_thread: std::thread::JoinHandle<()>,
}

/// Opens the store, verifies it, writes the bootstrap entries into an empty
/// log, and starts serving.
///
/// A start that fails leaves nothing behind: a data directory with no
/// store is refused before anything is created when there is nothing to
/// bootstrap it with, and a store (and data directory) this call created
/// is removed again when a later step fails (an address in use, a
/// bootstrap refused for a wrong operator key).
pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
    let data_dir = config.data_dir.clone();
    let creates_data_dir = !data_dir.exists();
    let creates_store = !data_dir.join(DB_DIR_NAME).exists();
    if creates_store && config.bootstrap.is_empty() {
        bail!(
            "{} holds no ledger: start with --genesis FILE (a signed genesis) or --dev",
            data_dir.display()
        );
    }
    let started = start_created(config).await;
    if started.is_err() {
        // Nothing was served from what this start created: a retry must
        // find the directory as it was.
        if creates_data_dir {
            let _ = std::fs::remove_dir_all(&data_dir);
        } else if creates_store {
            let _ = std::fs::remove_dir_all(data_dir.join(DB_DIR_NAME));
            let _ = std::fs::remove_file(data_dir.join(RECORD_FILE_NAME));
        }
    }
    started
}

/// [`start`], creating what it needs.
async fn start_created(config: NodeConfig) -> anyhow::Result<Node> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let data_dir = config.data_dir.clone();
    let check = config.startup_check;
    let started = Instant::now();
    let (store, recovered) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let store = Store::open(&data_dir)
            .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
        let recovered = sequencer::recover(&store, check)
            .with_context(|| format!("refusing to serve the store in {}", data_dir.display()))?;
        Ok((Arc::new(store), recovered))
    })
    .await??;
    if let Some(dir) = &config.tiles_dir {
        let origin = recovered
            .state
            .as_ref()
            .map(|state| state.agreement.origin.clone());
        let store = store.clone();
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            crate::tiles_publisher::check_dir(&store, &dir, origin.as_deref())
        })
        .await??;
    }
    let metrics = Metrics::new();
    metrics
        .verify_on_start_seconds
        .set(started.elapsed().as_secs_f64());
    metrics.tree_size.set(recovered.head.size as i64);
    tracing::info!(
        entries = recovered.head.size,
        check = ?config.startup_check,
        seconds = started.elapsed().as_secs_f64(),
        "store verified"
    );
    // Claim the address before writing anything: a node that cannot serve
    // must not have written a genesis.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let empty = recovered.head.size == 0;
    if empty && config.bootstrap.is_empty() {
        bail!(
            "{} holds no ledger: start with --genesis FILE (a signed genesis) or --dev",
            config.data_dir.display()
        );
    }
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot serve metrics on {address}"))?,
        ),
        None => None,
    };
    let operator_public_key = config.operator_key.verifying_key();
    let (handle, sequencer_thread) = sequencer::start(
        store.clone(),
        recovered,
        config.operator_key,
        SequencerConfig {
            metrics: Some(metrics.clone()),
            ..config.sequencer
        },
    )
    .map_err(anyhow::Error::msg)?;
    let (shutdown, shutting_down) = tokio::sync::watch::channel(false);
    let (witnessing, witnessing_task) = crate::witnessing::start(
        store.clone(),
        &handle,
        operator_public_key,
        metrics.clone(),
        shutting_down.clone(),
    );
    let (tiles_published, tiles_task) = match &config.tiles_dir {
        Some(dir) => {
            let (published, task) = crate::tiles_publisher::start(
                store.clone(),
                dir.clone(),
                handle.clone(),
                witnessing.clone(),
                metrics.clone(),
                shutting_down.clone(),
            );
            (published, Some(task))
        }
        None => (tokio::sync::watch::channel(Default::default()).1, None),
    };
    let service = LedgerService::new(
        store.clone(),
        handle.clone(),
        metrics.clone(),
        witnessing.clone(),
        config.max_payload_bytes,
        shutting_down.clone(),
    );
    if empty {
        let mut refused = None;
        for (index, event) in config.bootstrap.into_iter().enumerate() {
            if let Err(status) = service.submit(Request::new(event)).await {
                refused = Some(anyhow::anyhow!(
                    "bootstrap entry {index} was refused: {}",
                    status.message()
                ));
                break;
            }
        }
        if let Some(error) = refused {
            // Stop the sequencer and close the store before answering, so
            // the directory is free for the next attempt.
            let _ = shutdown.send(true);
            let _ = witnessing_task.await;
            if let Some(task) = tiles_task {
                let _ = task.await;
            }
            drop(service);
            drop(handle);
            drop(store);
            let _ = tokio::task::spawn_blocking(move || sequencer_thread.join()).await;
            return Err(error);
        }
    }
    let mut metrics_task = None;
    let metrics_addr = match metrics_listener {
        Some(listener) => {
            let address = listener.local_addr()?;
            metrics_task = Some(tokio::spawn(crate::metrics::serve_metrics(
                listener,
                metrics.clone(),
            )));
            Some(address)
        }
        None => None,
    };
    let (sever, severed) = tokio::sync::watch::channel(false);
    let options = ServerOptions {
        tls: config.tls.clone(),
        metrics: metrics.clone(),
        max_payload_bytes: config.max_payload_bytes,
        witnessing,
    };
    let server = tokio::spawn(server::serve(
        listener,
        store.clone(),
        handle,
        shutting_down,
        severed,
        options,
    ));
    drop(service);
    Ok(Node {
        local_addr,
        metrics_addr,
        metrics,
        tls: config.tls.is_some(),
        store,
        shutdown,
        sever,
        server,
        metrics_task,
        witnessing_task,
        tiles_task,
        tiles_published,
        sequencer_thread,
    })
}

impl Node {
    /// The URL clients use to reach this node.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Stops accepting calls, lets in-flight ones finish (their batches are
    /// committed and synced first), and waits for the sequencer to stop.
    /// Connections still open after [`SHUTDOWN_GRACE`] (a client that stopped
    /// reading its stream) are cut.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let served = match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.server).await {
            Ok(served) => served,
            Err(_) => {
                tracing::warn!("connections still open after the grace period: cutting them");
                let _ = self.sever.send(true);
                (&mut self.server).await
            }
        };
        // It holds the store; `shutdown` already told it to stop. Awaited
        // before the server's result is answered, so that even a failed
        // shutdown leaves nothing of ours holding the store.
        let _ = (&mut self.witnessing_task).await;
        if let Some(task) = self.tiles_task.take() {
            let _ = task.await;
        }
        served??;
        if let Some(task) = self.metrics_task.take() {
            task.abort();
            let _ = task.await;
        }
        drop(self.store);
        let thread = self.sequencer_thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the sequencer thread panicked"))?;
        Ok(())
    }

    /// Resolves when the server stops on its own (an error).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.server).await??;
        if let Some(task) = self.metrics_task.take() {
            task.abort();
            let _ = task.await;
        }
        Ok(())
    }
}
