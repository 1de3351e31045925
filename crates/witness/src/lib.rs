//! ceasefire-witness: a C2SP tlog-witness (<https://c2sp.org/tlog-witness>)
//! for any C2SP log, ceasefire-ledger's among them, and the client a log
//! uses to collect its cosignatures.
//!
//! - [`config`]: what a witness runs with (its key, address, data
//!   directory, URL prefix, the logs it witnesses) and the TOML file;
//! - [`store`]: its durable state, one verified note per log, locked;
//! - [`service`]: one request, from body to answer, under the log's lock;
//! - [`http`]: the axum router (`POST {prefix}/add-checkpoint`);
//! - [`client`]: `add-checkpoint` over HTTP with keep-alive and timeouts.
//!
//! The verdicts themselves (syntax, signature, sizes, proofs) are
//! `ceasefire_core::witness`, pure; this crate adds the I/O. It links no
//! storage engine and no gRPC (`.ci/boundaries`), so a witness shares
//! nothing with the logs it watches but the core.
//!
//! [`start`] runs a witness in-process (tests, the `witness serve` command)
//! and returns a [`RunningWitness`] with its address and a shutdown.

#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod http;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use ceasefire_core::cosignature::CosignerVerifier;
use ceasefire_core::witness::TreeHead;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use client::{AddCheckpointError, Cosignatures, WitnessClient};
pub use config::WitnessConfig;

/// How long [`RunningWitness::shutdown`] waits for open connections to
/// finish their requests before it drops them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A witness serving in this process.
#[derive(Debug)]
pub struct RunningWitness {
    /// Where it listens (the real port when the config asked for port 0).
    addr: SocketAddr,
    /// `http://{addr}{prefix}`: what [`WitnessClient::new`] takes.
    url: String,
    /// Its public key, for verifying what it cosigns.
    verifier: CosignerVerifier,
    /// The service, for reading its state; weak, so that once the server
    /// and its connections are gone the store is closed (shutdown waits
    /// for that).
    witness: Weak<service::Witness>,
    /// Its store: held by the service and by any record being written;
    /// shutdown returns once nothing holds it (its lock is then released).
    store: Weak<store::Store>,
    /// Fired by [`RunningWitness::shutdown`] (or on drop): stop accepting,
    /// let open requests finish.
    shutdown: Option<oneshot::Sender<()>>,
    /// The server task; it ends when the server stops, and the store (and
    /// its lock) is released once every connection has ended.
    server: JoinHandle<std::io::Result<()>>,
}

/// Opens the store (verifying every record), binds `config.listen` and
/// serves until [`RunningWitness::shutdown`].
pub async fn start(config: WitnessConfig) -> anyhow::Result<RunningWitness> {
    config.validate()?;
    let WitnessConfig {
        cosigner,
        listen,
        data_dir,
        url_prefix,
        logs,
    } = config;
    let opened = {
        let logs = logs.clone();
        let data_dir = data_dir.clone();
        tokio::task::spawn_blocking(move || store::Store::open(&data_dir, &logs))
            .await
            .context("the thread opening the store failed")?
    };
    let (store, recorded) = opened?;
    for log in &logs {
        match recorded.get(log.origin()) {
            Some(record) => tracing::info!(
                origin = log.origin(),
                size = record.head.size,
                "witnessing; latest cosigned checkpoint read back"
            ),
            None => tracing::info!(origin = log.origin(), "witnessing; nothing cosigned yet"),
        }
    }
    let verifier = cosigner.verifier();
    let witness = Arc::new(service::Witness::new(cosigner, logs, store, &recorded));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let router = http::router(Arc::clone(&witness), &url_prefix);
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await
    });
    tracing::info!(
        url = %format!("http://{addr}{url_prefix}/add-checkpoint"),
        vkey = %verifier.vkey(),
        data_dir = %data_dir.display(),
        "witness serving"
    );
    Ok(RunningWitness {
        addr,
        url: format!("http://{addr}{url_prefix}"),
        verifier,
        store: witness.store_handle(),
        witness: Arc::downgrade(&witness),
        shutdown: Some(shutdown),
        server,
    })
}

impl RunningWitness {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The submission prefix as a URL, for [`WitnessClient::new`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client of this witness.
    pub fn client(&self) -> Result<WitnessClient, AddCheckpointError> {
        WitnessClient::new(&self.url)
    }

    /// The witness's key, to verify its cosignatures.
    pub fn verifier(&self) -> &CosignerVerifier {
        &self.verifier
    }

    /// The latest tree head cosigned for `origin`, if any.
    pub async fn latest(&self, origin: &str) -> Option<TreeHead> {
        self.witness.upgrade()?.latest(origin).await
    }

    /// Resolves if the server stops on its own (an accept loop error);
    /// `Ok` once it was shut down.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.server)
            .await
            .context("the witness server task failed")?
            .context("the witness server stopped")
    }

    /// Stops accepting, lets open requests finish (at most
    /// [`SHUTDOWN_GRACE`]), and returns once the server and the store are
    /// closed, so another witness may open the same data directory.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.server).await {
            Ok(result) => result
                .context("the witness server task failed")?
                .context("the witness server stopped with an error")?,
            Err(_) => {
                self.server.abort();
                anyhow::bail!("the witness's connections did not close within {SHUTDOWN_GRACE:?}");
            }
        }
        // Connection tasks end with the server; wait for the last one to let
        // go of the store (and its lock).
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while self.witness.strong_count() > 0 || self.store.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "the witness's store was still in use {SHUTDOWN_GRACE:?} after shutdown"
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

impl Drop for RunningWitness {
    /// A witness dropped without [`RunningWitness::shutdown`] still stops
    /// serving; its store is released when its last connection ends.
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
