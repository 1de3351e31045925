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

use crate::proto::{ledger_server::Ledger, SignedEvent};
use crate::sequencer::{self, SequencerConfig, StartupCheck};
use crate::server::{self, LedgerService};
use crate::storage::Store;

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
}

/// A node serving on `local_addr` until [`Node::shutdown`].
pub struct Node {
    pub local_addr: SocketAddr,
    pub store: Arc<Store>,
    /// Set to true to stop: the server stops accepting and ends streams.
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    sequencer_thread: std::thread::JoinHandle<()>,
}

/// Opens the store, verifies it, writes the bootstrap entries into an empty
/// log, and starts serving.
pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
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
    let (handle, sequencer_thread) = sequencer::start(
        store.clone(),
        recovered,
        config.operator_key,
        config.sequencer,
    )
    .map_err(anyhow::Error::msg)?;
    let service = LedgerService::new(store.clone(), handle.clone());
    if empty {
        for (index, event) in config.bootstrap.into_iter().enumerate() {
            service
                .submit(Request::new(event))
                .await
                .map_err(|status| anyhow::anyhow!("{}", status.message()))
                .with_context(|| format!("bootstrap entry {index} was refused"))?;
        }
    }
    let (shutdown, shutting_down) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(server::serve(
        listener,
        store.clone(),
        handle,
        shutting_down,
    ));
    drop(service);
    Ok(Node {
        local_addr,
        store,
        shutdown,
        server,
        sequencer_thread,
    })
}

impl Node {
    /// The URL clients use to reach this node.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Stops accepting calls, lets in-flight ones finish (their batches are
    /// committed and synced first), and waits for the sequencer to stop.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.server.await??;
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
        Ok(())
    }
}
