//! `serve`: run the ledger until SIGINT or SIGTERM.
//!
//! Every option is a flag, an environment variable (`CEASEFIRE_LEDGER_*`)
//! and a key of the optional TOML file given with `--config`, spelled as
//! the flag is (`--data-dir`: `data-dir`); a flag or variable wins over
//! the file, the file over the default. The global `--log-format` is the
//! file's `log-format`; `main` reads the file before logging starts
//! (`Cli::with_config_file`). `tests/operators.rs` checks that every flag
//! `serve --help` shows has its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use super::ListenAddress;
use crate::dev;
use crate::keyfile::KeyFile;
use crate::signed_file::SignedEventFile;
use ceasefire_node::node::{self, NodeConfig};
use ceasefire_node::sequencer::{SequencerConfig, StartupCheck};
use ceasefire_node::server::TlsFiles;
use ceasefire_node::storage::DB_DIR_NAME;

/// How often the server hands glibc's free heap pages back to the system.
/// glibc gives threads that allocate at once arenas of their own (up to
/// eight per core) and returns an arena's free pages only from its top, so
/// under ingest the node's resident memory grew ~80 MiB past what it used
/// (`bench` continuing a 360k-entry log by 100k: 276 MiB by default). Two
/// arenas instead cost 13-17% of ingest throughput (malloc contention
/// between the runtime and the verifying threads); a trim each second took
/// it to ~163 MiB with no change in throughput measurable above the noise.
const MALLOC_TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// Starts a thread that trims glibc's heap every [`MALLOC_TRIM_INTERVAL`]
/// for the life of the process.
pub fn trim_malloc_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| loop {
                std::thread::sleep(MALLOC_TRIM_INTERVAL);
                // SAFETY: malloc_trim only releases free memory; glibc
                // locks each arena while it trims it.
                #[allow(unsafe_code)]
                unsafe {
                    libc::malloc_trim(0);
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the malloc trimming thread");
        }
    }
}

const DEFAULT_DATA_DIR: &str = "ceasefire-data";
const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

#[derive(clap::Args, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// A TOML file setting any of the options below by their long names
    /// (e.g. `data-dir = "/var/lib/ceasefire-ledger"`).
    #[arg(long, env = "CEASEFIRE_LEDGER_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Directory holding the ledger, created if missing [default: ceasefire-data].
    #[arg(long, env = "CEASEFIRE_LEDGER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address for gRPC, IP:PORT or HOST:PORT [default: 127.0.0.1:50051].
    #[arg(long, env = "CEASEFIRE_LEDGER_LISTEN")]
    listen: Option<ListenAddress>,
    /// Development mode: on an empty data directory, create keys in
    /// DATA_DIR/dev-keys and a development genesis, zone and commitment.
    #[arg(long, env = "CEASEFIRE_LEDGER_DEV")]
    #[serde(default)]
    dev: bool,
    /// A genesis signed by enough signatories (from `init` + `sign`) to start an empty ledger.
    #[arg(long, env = "CEASEFIRE_LEDGER_GENESIS", conflicts_with = "dev")]
    genesis: Option<PathBuf>,
    /// The operator's key file, which signs checkpoints [default with --dev:
    /// DATA_DIR/dev-keys/operator.key].
    #[arg(long, env = "CEASEFIRE_LEDGER_OPERATOR_KEY")]
    operator_key: Option<PathBuf>,
    /// Most entries committed in one batch, with one sync [default: 4096].
    #[arg(long, env = "CEASEFIRE_LEDGER_MAX_BATCH")]
    max_batch: Option<usize>,
    /// Milliseconds to wait for more submissions before committing a batch [default: 0].
    #[arg(long, env = "CEASEFIRE_LEDGER_BATCH_DELAY_MS")]
    batch_delay_ms: Option<u64>,
    /// How much of the store to verify before serving it [default: full].
    #[arg(long, env = "CEASEFIRE_LEDGER_STARTUP_CHECK", value_enum)]
    startup_check: Option<StartupCheck>,
    /// Largest event payload accepted, in bytes, at most 32768 [default: 32768].
    #[arg(long, env = "CEASEFIRE_LEDGER_MAX_PAYLOAD_BYTES")]
    max_payload_bytes: Option<usize>,
    /// Address for Prometheus metrics (`GET /metrics`), IP:PORT or
    /// HOST:PORT [default: not served].
    #[arg(long, env = "CEASEFIRE_LEDGER_METRICS_LISTEN")]
    metrics_listen: Option<ListenAddress>,
    /// TLS certificate chain (PEM) for the gRPC port [default: plaintext].
    #[arg(long, env = "CEASEFIRE_LEDGER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the gRPC port.
    #[arg(long, env = "CEASEFIRE_LEDGER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "CEASEFIRE_LEDGER_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Keep a C2SP tlog-tiles mirror of the log in this directory, current
    /// as batches commit (the witnessed checkpoint where the log has a
    /// witness policy), for a static file host to serve [default: none].
    #[arg(long, env = "CEASEFIRE_LEDGER_TILES_DIR", value_name = "DIR")]
    tiles_dir: Option<PathBuf>,
    /// The file's `log-format`: on the command line it is the global
    /// `--log-format`, which `Cli` holds.
    #[arg(skip)]
    #[serde(default)]
    log_format: Option<super::LogFormat>,
}

impl ServeArgs {
    /// The config file's log format, once [`ServeArgs::with_file`] read it.
    pub(super) fn log_format(&self) -> Option<super::LogFormat> {
        self.log_format
    }

    /// Fills what flags and the environment left unset from the config file.
    pub(super) fn with_file(self) -> anyhow::Result<ServeArgs> {
        let Some(path) = &self.config else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        let file: ServeArgs = toml::from_str(&text).map_err(|error| {
            // toml's own rendering spans several lines; keep errors to one.
            // The line holding the span's start: the newlines before it,
            // plus one (counting `lines()` misses a line the span starts).
            let line = error
                .span()
                .map(|span| text[..span.start].matches('\n').count() + 1);
            anyhow::anyhow!(
                "the config file {}{} is invalid: {}",
                path.display(),
                line.map(|line| format!(" (line {line})"))
                    .unwrap_or_default(),
                error.message().trim().replace('\n', " ")
            )
        })?;
        Ok(ServeArgs {
            config: self.config,
            data_dir: self.data_dir.or(file.data_dir),
            listen: self.listen.or(file.listen),
            dev: self.dev || file.dev,
            genesis: self.genesis.or(file.genesis),
            operator_key: self.operator_key.or(file.operator_key),
            max_batch: self.max_batch.or(file.max_batch),
            batch_delay_ms: self.batch_delay_ms.or(file.batch_delay_ms),
            startup_check: self.startup_check.or(file.startup_check),
            max_payload_bytes: self.max_payload_bytes.or(file.max_payload_bytes),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_client_ca: self.tls_client_ca.or(file.tls_client_ca),
            tiles_dir: self.tiles_dir.or(file.tiles_dir),
            log_format: file.log_format,
        })
    }
}

/// Runs `args`, whose config file `Cli::with_config_file` has read.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if args.dev && args.genesis.is_some() {
        bail!("--dev and --genesis exclude each other");
    }
    let dev_keys = dev::dev_keys_dir(&data_dir);
    let had_data_dir = data_dir.exists();
    let had_dev_keys = dev_keys.exists();
    if args.dev && !had_dev_keys && data_dir.join(DB_DIR_NAME).join("db").exists() {
        bail!(
            "{} holds a ledger that was not started with --dev (it has no {}): \
             serve it without --dev, with --operator-key FILE",
            data_dir.display(),
            dev_keys.display()
        );
    }
    let started = start_node(&args, &data_dir).await;
    if started.is_err() && args.dev {
        // A failed start leaves nothing behind: not the keys made for it,
        // nor the directory made for them (`node::start` removes a store
        // it created).
        if !had_data_dir {
            let _ = std::fs::remove_dir_all(&data_dir);
        } else if !had_dev_keys {
            let _ = std::fs::remove_dir_all(&dev_keys);
        }
    }
    let mut node = started?;
    tracing::info!(
        url = %node.url(),
        metrics = %node.metrics_addr.map(|address| address.to_string()).unwrap_or_default(),
        data_dir = %data_dir.display(),
        "serving"
    );
    if args.dev {
        tracing::info!(
            keys = %dev::dev_keys_dir(&data_dir).display(),
            "development ledger: keys for the CLI are in the data directory"
        );
    }
    tokio::select! {
        result = node.wait() => return result.context("the server stopped"),
        () = shutdown_signal() => {}
    }
    tracing::info!("shutting down: finishing in-flight batches");
    node.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Loads the keys and the genesis (creating dev keys with `--dev`) and
/// starts the node.
async fn start_node(args: &ServeArgs, data_dir: &Path) -> anyhow::Result<node::Node> {
    let (operator_key, bootstrap) = if args.dev {
        let keys = dev::ensure_dev_keys(data_dir)?;
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
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: args.tls_client_ca.clone(),
        }),
        (None, None) if args.tls_client_ca.is_none() => None,
        _ => bail!("TLS needs both --tls-cert and --tls-key (and --tls-client-ca only with them)"),
    };
    let listen = match args.listen {
        Some(ListenAddress(listen)) => listen,
        None => DEFAULT_LISTEN.parse()?,
    };
    let defaults = SequencerConfig::default();
    let mut config = NodeConfig::new(data_dir.to_path_buf(), listen, operator_key);
    config.bootstrap = bootstrap;
    config.sequencer = SequencerConfig {
        max_batch: args.max_batch.unwrap_or(defaults.max_batch).max(1),
        batch_delay: Duration::from_millis(args.batch_delay_ms.unwrap_or(0)),
        ..defaults
    };
    config.startup_check = args.startup_check.unwrap_or(StartupCheck::Full);
    config.tls = tls;
    config.metrics_listen = args.metrics_listen.map(|ListenAddress(address)| address);
    config.tiles_dir = args.tiles_dir.clone();
    if let Some(cap) = args.max_payload_bytes {
        config.max_payload_bytes = cap;
    }
    // What the flags, variables and config file came to, beside what the
    // "serving" line says.
    tracing::info!(
        max_batch = config.sequencer.max_batch,
        batch_delay_ms = config.sequencer.batch_delay.as_millis() as u64,
        startup_check = ?config.startup_check,
        max_payload_bytes = config.max_payload_bytes,
        tls = config.tls.is_some(),
        mutual_tls = args.tls_client_ca.is_some(),
        tiles_dir = %config.tiles_dir.as_ref().map(|dir| dir.display().to_string()).unwrap_or_default(),
        "settings"
    );
    node::start(config).await
}

/// Resolves on SIGINT or SIGTERM (also `witness serve`'s stop).
pub(super) async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_in_deploy_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/ceasefire-ledger.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let args: ServeArgs = toml::from_str(&text).unwrap();
        assert!(args.data_dir.is_some() && args.operator_key.is_some());
    }

    #[test]
    fn an_unknown_config_key_is_an_error() {
        assert!(toml::from_str::<ServeArgs>("data-dri = \"x\"").is_err());
    }
}
