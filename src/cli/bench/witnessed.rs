//! `bench --witnesses N`: how long a receipt waits for a witnessed
//! checkpoint covering it, beside the receipt latency itself.
//!
//! The witnesses are real: N child processes of this binary's `witness
//! serve`, each with its own fresh key and data directory, on loopback,
//! witnessing the dev log by its vkey. The signatories then put a policy
//! naming them (a quorum of `--witness-quorum`, default a majority) in the
//! log, and the bench waits for the first witnessed checkpoint before the
//! clock starts, so that what is measured is the steady state, not the
//! witnesses' first contact.
//!
//! While the clients run, a follower asks the node for the next witnessed
//! checkpoint (`GetCheckpoint{witnessed, min_tree_size: last + 1}`, which
//! waits server-side) and notes when each witnessed size appears. Every
//! receipt is attributed to the first witnessed size that covers its
//! entry: its receipt→witnessed time is from the receipt's arrival at the
//! client to that size's appearance at the follower. A witnessed checkpoint
//! published and replaced before the follower's next call is not seen, so
//! its receipts count towards the later one: a pessimistic error of at
//! most one round.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ceasefire_core::cosignature::Cosigner;
use ceasefire_grpc::client;
use ceasefire_grpc::proto::{GetCheckpointRequest, SetWitnessPolicy};
use ceasefire_testkit::harness::{self, command};
use ceasefire_testkit::scenario::witnesses::k_of_n_policy;
use ceasefire_testkit::scenario::{bodies, Scenario};
use ceasefire_testkit::witness::WitnessProcess;
use tokio::sync::watch;

use super::clients::LedgerConnection;
use crate::keyfile::KeyFile;

/// How long a witness may take to open its store and listen.
const WITNESS_START_BOUND: Duration = Duration::from_secs(60);

/// How long the first witnessed checkpoint (the policy's own) may take.
const FIRST_WITNESSED_BOUND: Duration = Duration::from_secs(60);

/// How long, after the last receipt, the follower waits for a witnessed
/// checkpoint covering the whole run; receipts still uncovered then are
/// reported as such.
pub const DRAIN_BOUND: Duration = Duration::from_secs(30);

/// The deadline of each follower call: the node waits until then for the
/// next witnessed size, then answers NOT_YET_WITNESSED and the follower
/// asks again (so it notices the end of the run within this).
const FOLLOW_CALL_DEADLINE: Duration = Duration::from_millis(500);

/// The follower's pause after a call that failed at once.
const FOLLOW_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The group the bench's policy names.
const GROUP: &str = "bench";

/// The running witnesses.
pub struct BenchWitnesses {
    processes: Vec<WitnessProcess>,
    cosigners: Vec<Cosigner>,
    pub quorum: u32,
}

impl BenchWitnesses {
    /// Starts `count` witnesses of the log `dev` describes, their keys and
    /// state in fresh directories under `data_dir/bench-witnesses/`, and
    /// waits until each listens.
    pub async fn start(
        data_dir: &Path,
        dev: &Scenario,
        count: usize,
        quorum: u32,
    ) -> anyhow::Result<BenchWitnesses> {
        let binary = std::env::current_exe().context("cannot find this binary")?;
        let root = data_dir.join("bench-witnesses");
        // A reused data directory keeps its ledger, but each run's
        // witnesses are new: the policy below replaces any earlier one.
        if root.exists() {
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("cannot clear {}", root.display()))?;
        }
        let log_vkey = dev.note_verifier().encoded_key();
        let mut processes = Vec::with_capacity(count);
        let mut cosigners = Vec::with_capacity(count);
        for index in 1..=count {
            let name = format!("witness-{index}.bench.example/w");
            let dir = root.join(format!("witness-{index}"));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let key = KeyFile::generate(None);
            let key_path = dir.join("witness.key");
            key.save(&key_path)?;
            let cosigner = Cosigner::new(&name, key.key)
                .map_err(|error| anyhow::anyhow!("witness name {name:?}: {error}"))?;
            let port = harness::free_port().context("cannot find a free loopback port")?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let listen = addr.to_string();
            let data = dir.join("data");
            let mut witness_command = command(
                &binary,
                &[
                    &"witness",
                    &"serve",
                    &"--name",
                    &name,
                    &"--key",
                    &key_path,
                    &"--listen",
                    &listen,
                    &"--data-dir",
                    &data,
                    &"--log-vkey",
                    &log_vkey,
                ],
            );
            witness_command.env("RUST_LOG", "warn");
            let process = WitnessProcess::start(witness_command, addr, dir.join("stderr.log"))
                .with_context(|| format!("cannot start witness {name}"))?;
            processes.push(process);
            cosigners.push(cosigner);
        }
        for process in &mut processes {
            process.wait_ready(WITNESS_START_BOUND).await?;
        }
        Ok(BenchWitnesses {
            processes,
            cosigners,
            quorum,
        })
    }

    pub fn count(&self) -> usize {
        self.processes.len()
    }

    /// The policy naming these witnesses at their loopback URLs.
    fn policy(&self) -> SetWitnessPolicy {
        let mut policy = k_of_n_policy(&self.cosigners, self.quorum, GROUP);
        for (witness, process) in policy.witnesses.iter_mut().zip(&self.processes) {
            witness.url = process.url();
        }
        policy
    }

    /// Has the signatories put the policy in the log, then waits until a
    /// checkpoint holding it is witnessed; returns that witnessed size.
    pub async fn adopt(&self, url: &str, dev: &Scenario) -> anyhow::Result<u64> {
        let mut connection = client::connect(url).await?;
        let receipt = connection
            .submit(dev.govern(bodies::set_witness_policy(self.policy())))
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "the witness policy was refused: {}",
                    ceasefire_grpc::errors::describe(&status)
                )
            })?
            .into_inner();
        let mut request = tonic::Request::new(GetCheckpointRequest {
            witnessed: true,
            min_tree_size: receipt.seq + 1,
        });
        request.set_timeout(FIRST_WITNESSED_BOUND);
        let checkpoint = connection.get_checkpoint(request).await.map_err(|status| {
            anyhow::anyhow!(
                "the witnesses did not cosign the policy's checkpoint within {} s: {}\n{}",
                FIRST_WITNESSED_BOUND.as_secs(),
                ceasefire_grpc::errors::describe(&status),
                self.stderr()
            )
        })?;
        Ok(checkpoint.into_inner().tree_size)
    }

    /// Every witness's stderr, for a failure message.
    fn stderr(&self) -> String {
        self.processes
            .iter()
            .zip(&self.cosigners)
            .map(|(process, cosigner)| format!("{}: {}", cosigner.name(), process.stderr()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the witnesses (SIGKILL: their state is durable before they
    /// answer, and the bench is done with them).
    pub fn stop(mut self) {
        for process in &mut self.processes {
            let _ = process.kill();
        }
    }
}

/// When each witnessed size appeared, in order.
pub type Appearances = Vec<(Instant, u64)>;

/// Follows the node's witnessed checkpoint from `witnessed_size` until
/// `end` carries a size and a witnessed checkpoint covers it, or
/// [`DRAIN_BOUND`] has passed since it did.
pub async fn follow(
    mut connection: LedgerConnection,
    mut witnessed_size: u64,
    end: watch::Receiver<Option<u64>>,
) -> Appearances {
    let mut appearances = Vec::new();
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if let Some(final_size) = *end.borrow() {
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_BOUND);
            if witnessed_size >= final_size || Instant::now() >= deadline {
                return appearances;
            }
        }
        let mut request = tonic::Request::new(GetCheckpointRequest {
            witnessed: true,
            min_tree_size: witnessed_size + 1,
        });
        request.set_timeout(FOLLOW_CALL_DEADLINE);
        let asked = Instant::now();
        match connection.get_checkpoint(request).await {
            Ok(checkpoint) => {
                let size = checkpoint.into_inner().tree_size;
                if size > witnessed_size {
                    appearances.push((Instant::now(), size));
                    witnessed_size = size;
                }
            }
            // The call's deadline passed with no newer witnessed size: ask
            // again. An error that comes at once (the node refusing) would
            // repeat at once: pause.
            Err(_) if asked.elapsed() < FOLLOW_CALL_DEADLINE / 2 => {
                tokio::time::sleep(FOLLOW_ERROR_PAUSE).await
            }
            Err(_) => {}
        }
    }
}

/// The receipt→witnessed figures of one run.
pub struct WitnessedFigures {
    pub witnesses: usize,
    pub quorum: u32,
    /// Receipt→witnessed of every covered receipt, microseconds, sorted.
    pub latencies_us: Vec<u64>,
    /// Receipts no witnessed checkpoint covered within [`DRAIN_BOUND`].
    pub uncovered: usize,
    /// Witnessed sizes that appeared during the run.
    pub checkpoints: usize,
    /// Entries those checkpoints added, from the size witnessed before.
    pub entries: u64,
    /// From the clock's start to the last appearance.
    pub span: Duration,
    /// What the node last said of each witness: name, cosigned size, last error.
    pub states: Vec<(String, u64, String)>,
}

/// Attributes each receipt `(seq, arrival)` to the first appearance whose
/// size covers `seq`.
pub fn figures(
    witnesses: &BenchWitnesses,
    receipts: &[(u64, Instant)],
    appearances: &Appearances,
    witnessed_before: u64,
    start: Instant,
    states: Vec<(String, u64, String)>,
) -> WitnessedFigures {
    let mut latencies_us = Vec::with_capacity(receipts.len());
    let mut uncovered = 0;
    for &(seq, arrival) in receipts {
        let first = appearances.partition_point(|&(_, size)| size <= seq);
        match appearances.get(first) {
            Some(&(appeared, _)) => {
                latencies_us.push(appeared.saturating_duration_since(arrival).as_micros() as u64)
            }
            None => uncovered += 1,
        }
    }
    latencies_us.sort_unstable();
    let last = appearances.last();
    WitnessedFigures {
        witnesses: witnesses.count(),
        quorum: witnesses.quorum,
        latencies_us,
        uncovered,
        checkpoints: appearances.len(),
        entries: last.map_or(0, |&(_, size)| size.saturating_sub(witnessed_before)),
        span: last.map_or(Duration::ZERO, |&(appeared, _)| {
            appeared.saturating_duration_since(start)
        }),
        states,
    }
}

/// What the node says of each witness now: (name, cosigned size, last error).
pub async fn witness_states(url: &str) -> anyhow::Result<Vec<(String, u64, String)>> {
    let checkpoint = client::connect(url)
        .await?
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .map_err(|status| anyhow::anyhow!("{}", ceasefire_grpc::errors::describe(&status)))?
        .into_inner();
    Ok(checkpoint
        .witnesses
        .into_iter()
        .map(|state| (state.name, state.cosigned_size, state.last_error))
        .collect())
}

/// Checks `--witnesses` and `--witness-quorum`; returns the quorum.
pub fn quorum(witnesses: usize, quorum: Option<u32>) -> anyhow::Result<u32> {
    let majority = (witnesses / 2 + 1) as u32;
    let quorum = quorum.unwrap_or(majority);
    if quorum == 0 || quorum as usize > witnesses {
        bail!("--witness-quorum must be between 1 and --witnesses ({witnesses}), got {quorum}");
    }
    Ok(quorum)
}

impl WitnessedFigures {
    /// (p50, p90, p99, max) of receipt→witnessed, milliseconds.
    fn percentiles_ms(&self) -> (f64, f64, f64, f64) {
        use super::measure::percentile;
        let ms = |micros: u64| micros as f64 / 1e3;
        let sorted = &self.latencies_us;
        (
            ms(percentile(sorted, 0.50)),
            ms(percentile(sorted, 0.90)),
            ms(percentile(sorted, 0.99)),
            ms(sorted.last().copied().unwrap_or(0)),
        )
    }

    fn per_second(&self) -> f64 {
        self.checkpoints as f64 / self.span.as_secs_f64().max(f64::EPSILON)
    }

    fn mean_entries(&self) -> f64 {
        self.entries as f64 / self.checkpoints.max(1) as f64
    }

    /// The lines of the report, under the receipt latency.
    pub fn print(&self) {
        let (p50, p90, p99, max) = self.percentiles_ms();
        println!(
            "  witnesses         {} (`witness serve` processes on loopback), quorum {} of {}",
            self.witnesses, self.quorum, self.witnesses
        );
        println!(
            "  to witnessed (ms) p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2} (from the receipt's arrival)"
        );
        if self.uncovered > 0 {
            println!(
                "  not witnessed     {} receipts had no witnessed checkpoint within {} s of the last receipt",
                self.uncovered,
                DRAIN_BOUND.as_secs()
            );
        }
        println!(
            "  witnessed         {} checkpoints, {:.1}/s, mean {:.1} entries each",
            self.checkpoints,
            self.per_second(),
            self.mean_entries()
        );
        for (name, cosigned_size, last_error) in &self.states {
            let error = if last_error.is_empty() {
                String::new()
            } else {
                format!(", last error: {last_error}")
            };
            println!("  witness           {name} cosigned size {cosigned_size}{error}");
        }
    }

    /// The figures for `--json`.
    pub fn json(&self) -> serde_json::Value {
        let (p50, p90, p99, max) = self.percentiles_ms();
        serde_json::json!({
            "witnesses": self.witnesses,
            "quorum": self.quorum,
            "receipt_to_witnessed_ms": { "p50": p50, "p90": p90, "p99": p99, "max": max },
            "receipts_witnessed": self.latencies_us.len(),
            "receipts_not_witnessed": self.uncovered,
            "witnessed_checkpoints": self.checkpoints,
            "witnessed_checkpoints_per_second": self.per_second(),
            "mean_entries_per_witnessed_checkpoint": self.mean_entries(),
        })
    }
}
