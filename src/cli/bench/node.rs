//! The node under test: the real binary (`serve --dev`) as a child process,
//! so that what is measured is what an operator runs, and its resident
//! memory is its own, not shared with the benchmark's clients.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use ceasefire_grpc::client;
use ceasefire_grpc::proto::GetCheckpointRequest;

/// How long the node may take to start serving, or to stop after SIGTERM.
const START_OR_STOP_BOUND: Duration = Duration::from_secs(120);

/// A running `serve --dev` child, killed if dropped while running.
pub struct BenchNode {
    child: Child,
    pub url: String,
    /// Where the child's logs go (warnings and errors only).
    log: PathBuf,
}

impl BenchNode {
    /// Starts `serve --dev` on `data_dir` with the given batching, and waits
    /// until it answers with at least the dev bootstrap in its log.
    pub async fn start(
        data_dir: &Path,
        max_batch: usize,
        batch_delay_ms: u64,
    ) -> anyhow::Result<BenchNode> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("cannot find a free loopback port")?
            .port();
        let log = data_dir.join("bench-serve.log");
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(std::env::current_exe().context("cannot find this binary")?)
            .arg("serve")
            .arg("--dev")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--max-batch", &max_batch.to_string()])
            .args(["--batch-delay-ms", &batch_delay_ms.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context("cannot start the node (serve --dev)")?;
        let mut node = BenchNode {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + START_OR_STOP_BOUND;
        loop {
            if let Some(status) = node.child.try_wait()? {
                bail!("the node exited with {status}: {}", node.last_log_line());
            }
            if node.tree_size().await.is_ok_and(|size| size > 0) {
                return Ok(node);
            }
            if Instant::now() > deadline {
                bail!("the node did not start serving within {START_OR_STOP_BOUND:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The size of the log, from the node's latest checkpoint.
    pub async fn tree_size(&self) -> anyhow::Result<u64> {
        let mut ledger = client::connect(&self.url).await?;
        Ok(ledger
            .get_checkpoint(GetCheckpointRequest {})
            .await?
            .into_inner()
            .tree_size)
    }

    fn last_log_line(&self) -> String {
        std::fs::read_to_string(&self.log)
            .ok()
            .and_then(|text| text.lines().last().map(str::to_string))
            .unwrap_or_else(|| format!("(nothing in {})", self.log.display()))
    }

    /// Stops the node as an operator does (SIGTERM: it finishes and syncs
    /// the batch in flight) and checks that it exits cleanly.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) with the pid of a child we have not yet reaped.
        #[allow(unsafe_code)]
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        if sent != 0 {
            bail!(
                "cannot signal the node: {}",
                std::io::Error::last_os_error()
            );
        }
        let deadline = Instant::now() + START_OR_STOP_BOUND;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the node exited with {status}: {}", self.last_log_line());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the node did not stop within {START_OR_STOP_BOUND:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory of process `pid` in bytes (Linux `/proc`), if readable.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
