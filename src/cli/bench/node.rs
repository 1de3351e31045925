//! The node under test: the real binary (`serve --dev`) as a child process,
//! so that what is measured is what an operator runs, and its resident
//! memory is its own, not shared with the benchmark's clients. The child is
//! the test harness's [`Serve`]: started, waited for, stopped and, if the
//! bench fails, killed the same way as in the tests.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

use ceasefire_testkit::harness::{self, Serve};

/// How long the node may take to start serving, or to stop after SIGTERM.
const START_OR_STOP_BOUND: Duration = Duration::from_secs(120);

/// A running `serve --dev` child, killed if dropped while running.
pub struct BenchNode {
    serve: Serve,
    pub url: String,
}

impl BenchNode {
    /// Starts `serve --dev` on `data_dir` with the given batching, logging
    /// warnings and errors only (to `bench-serve.log` there), and waits
    /// until it answers.
    pub async fn start(
        data_dir: &Path,
        max_batch: usize,
        batch_delay_ms: u64,
    ) -> anyhow::Result<BenchNode> {
        let port = harness::free_port().context("cannot find a free loopback port")?;
        let listen = format!("127.0.0.1:{port}");
        let mut command = harness::command(
            std::env::current_exe().context("cannot find this binary")?,
            &[
                &"serve",
                &"--dev",
                &"--data-dir",
                &data_dir,
                &"--listen",
                &listen,
                &"--max-batch",
                &max_batch.to_string(),
                &"--batch-delay-ms",
                &batch_delay_ms.to_string(),
            ],
        );
        command.env("RUST_LOG", "warn");
        let mut serve = Serve::start(
            command,
            format!("http://{listen}"),
            data_dir.join("bench-serve.log"),
        )
        .context("cannot start the node (serve --dev)")?;
        serve.wait_ready(START_OR_STOP_BOUND).await?;
        let url = serve.url.clone();
        Ok(BenchNode { serve, url })
    }

    pub fn pid(&self) -> u32 {
        self.serve.pid()
    }

    /// The size of the log, from the node's latest checkpoint.
    pub async fn tree_size(&self) -> anyhow::Result<u64> {
        harness::tree_size(&self.url)
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))
    }

    /// Stops the node as an operator does (SIGTERM: it finishes and syncs
    /// the batch in flight) and checks that it exits cleanly.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let status = self.serve.terminate(START_OR_STOP_BOUND).await?;
        if !status.success() {
            bail!("the node exited with {status}:\n{}", self.serve.stderr());
        }
        Ok(())
    }
}

/// Resident memory of process `pid` in bytes (Linux `/proc`), if readable.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
