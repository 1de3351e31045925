//! `serve`: run the ledger until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::dev;
use crate::keyfile::KeyFile;
use crate::node::{self, NodeConfig};
use crate::sequencer::{SequencerConfig, StartupCheck};
use crate::signed_file::SignedEventFile;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Directory holding the ledger (created if missing).
    #[arg(
        long,
        env = "CEASEFIRE_LEDGER_DATA_DIR",
        default_value = "ceasefire-data"
    )]
    data_dir: PathBuf,
    /// Address to listen on for gRPC.
    #[arg(
        long,
        env = "CEASEFIRE_LEDGER_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    listen: SocketAddr,
    /// Development mode: on an empty data directory, create keys in
    /// DATA_DIR/dev-keys and a development genesis, zone and commitment.
    #[arg(long, env = "CEASEFIRE_LEDGER_DEV")]
    dev: bool,
    /// A genesis signed by enough signatories (from `init` + `sign`) to start an empty ledger.
    #[arg(long, env = "CEASEFIRE_LEDGER_GENESIS", conflicts_with = "dev")]
    genesis: Option<PathBuf>,
    /// The operator's key file, which signs checkpoints (default with --dev:
    /// DATA_DIR/dev-keys/operator.key).
    #[arg(long, env = "CEASEFIRE_LEDGER_OPERATOR_KEY")]
    operator_key: Option<PathBuf>,
    /// Most entries committed in one batch (one sync).
    #[arg(long, env = "CEASEFIRE_LEDGER_MAX_BATCH", default_value_t = SequencerConfig::default().max_batch)]
    max_batch: usize,
    /// Milliseconds to wait for more submissions before committing a batch.
    #[arg(long, env = "CEASEFIRE_LEDGER_BATCH_DELAY_MS", default_value_t = 0)]
    batch_delay_ms: u64,
    /// How much of the store to verify before serving it.
    #[arg(long, env = "CEASEFIRE_LEDGER_STARTUP_CHECK", value_enum, default_value_t = StartupCheck::Full)]
    startup_check: StartupCheck,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (operator_key, bootstrap) = if args.dev {
        let keys = dev::ensure_dev_keys(&args.data_dir)?;
        let operator = match &args.operator_key {
            Some(path) => KeyFile::load(path)?.key,
            None => keys.operator.key.clone(),
        };
        (operator, dev::bootstrap_events(&keys))
    } else {
        let Some(path) = &args.operator_key else {
            bail!("--operator-key FILE is required (or use --dev for a development ledger)");
        };
        let bootstrap = match &args.genesis {
            Some(genesis) => vec![SignedEventFile::load(genesis)?.signed],
            None => Vec::new(),
        };
        (KeyFile::load(path)?.key, bootstrap)
    };
    let mut node = node::start(NodeConfig {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        operator_key,
        bootstrap,
        sequencer: SequencerConfig {
            max_batch: args.max_batch.max(1),
            batch_delay: Duration::from_millis(args.batch_delay_ms),
            ..SequencerConfig::default()
        },
        startup_check: args.startup_check,
    })
    .await?;
    tracing::info!(address = %node.local_addr, data_dir = %args.data_dir.display(), "serving");
    if args.dev {
        eprintln!(
            "ceasefire-ledger (dev) listening on {}; keys in {}",
            node.url(),
            dev::dev_keys_dir(&args.data_dir).display()
        );
    }
    tokio::select! {
        result = node.wait() => return result.context("the server stopped"),
        () = shutdown_signal() => {}
    }
    tracing::info!("shutting down: finishing in-flight batches");
    node.shutdown().await
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return interrupt.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or_default();
}
