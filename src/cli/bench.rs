//! `bench`: start a development node and measure ingest.
//!
//! Every event is built and signed before the clock starts (observations by
//! the dev monitor, distinct nonces, times in the past, inside the dev zone),
//! and every client has its own gRPC connection, opened before the clock too.
//! Each client then submits its share as fast as it can or, with `--rate`,
//! at a steady share of the offered load, and records each event's latency
//! from send to receipt: one unary Submit call at a time, or, with
//! `--stream`, on one SubmitStream with up to `--window` events in flight.
//!
//! Batches are counted from the receipts: each carries the checkpoint
//! committed with its batch, so the distinct checkpoint sizes are the batches
//! (one sync each) that the run's events went into; nothing else writes.
//!
//! After the node is stopped, the same run measures this machine's
//! single-thread strict verification rate over a real signed payload, the
//! way the server checks it, so the ratio of the two is visible.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use rand_core::RngCore;
use rayon::prelude::*;

use crate::client;
use crate::core::signing::{verify_event_signature, EventSignature};
use crate::dev;
use crate::node::{self, NodeConfig};
use crate::proto::{
    event::Body, Category, Event, Finding, LatLon, Location, Observation, SignedEvent,
};
use crate::sequencer::{SequencerConfig, StartupCheck};

/// How long the single-thread verify measurement runs.
const VERIFY_SECONDS: f64 = 1.5;

/// Distinct error messages shown when submissions fail.
const FAILURES_SHOWN: usize = 5;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Concurrent clients, each on its own gRPC connection.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Observations submitted in total, shared among the clients.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// The node's most entries committed in one batch (one sync).
    #[arg(long, default_value_t = SequencerConfig::default().max_batch)]
    max_batch: usize,
    /// The node's wait for more submissions before committing a batch (ms).
    #[arg(long, default_value_t = 0)]
    batch_delay_ms: u64,
    /// Directory for the node's ledger (default: a fresh temporary directory,
    /// removed afterwards). An existing dev ledger there is reused and kept.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the temporary data directory and print where it is.
    #[arg(long)]
    keep_data: bool,
    /// Steady offered load in events/s, spread over the clients (default:
    /// unlimited, each client submits as soon as its last call returned).
    #[arg(long)]
    rate: Option<f64>,
    /// Submit on one SubmitStream per client instead of unary calls.
    #[arg(long)]
    stream: bool,
    /// With --stream: events each client keeps in flight on its stream.
    #[arg(long, default_value_t = 32, requires = "stream")]
    window: usize,
    /// Then audit the resulting log (as `verify --data-dir` does) and print
    /// its entries/s beside this machine's strict-verify rate on all cores.
    #[arg(long)]
    audit: bool,
    /// Also print the figures as one JSON object (last line of stdout).
    #[arg(long)]
    json: bool,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.events == 0 {
        bail!("--events must be at least 1");
    }
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if args.max_batch == 0 {
        bail!("--max-batch must be at least 1");
    }
    if args.window == 0 {
        bail!("--window must be at least 1");
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of events per second, got {rate}");
        }
    }
    let data = DataDir::new(args.data_dir.clone(), args.keep_data)?;
    let result = bench(&args, &data.path).await;
    if data.kept() {
        eprintln!("ledger data kept in {}", data.path.display());
    }
    result
}

/// The data directory, removed on drop when it is a temporary one not kept.
struct DataDir {
    path: PathBuf,
    temporary: bool,
    keep: bool,
}

impl DataDir {
    fn new(given: Option<PathBuf>, keep: bool) -> anyhow::Result<DataDir> {
        if let Some(path) = given {
            return Ok(DataDir {
                path,
                temporary: false,
                keep: true,
            });
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "ceasefire-ledger-bench-{}-{stamp}",
            std::process::id()
        ));
        std::fs::create_dir(&path)
            .with_context(|| format!("cannot create the data directory {}", path.display()))?;
        Ok(DataDir {
            path,
            temporary: true,
            keep,
        })
    }

    /// Whether a temporary directory is left behind on purpose.
    fn kept(&self) -> bool {
        self.temporary && self.keep
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.temporary && !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// What one client saw.
#[derive(Default)]
struct ClientResult {
    /// Latency of every successful call, microseconds.
    latencies_us: Vec<u64>,
    /// Checkpoint tree size of every receipt (one per batch).
    checkpoint_sizes: Vec<u64>,
    /// Error message of every failed call.
    failures: Vec<String>,
    /// How far sends started behind the `--rate` schedule.
    max_lag: Duration,
    late_sends: usize,
}

/// The figures of one run.
struct Figures {
    events: usize,
    clients: usize,
    ok: usize,
    failures: Vec<String>,
    wall: Duration,
    latencies_us: Vec<u64>,
    batch_sizes: Vec<u64>,
    size_before: u64,
    size_after: u64,
    payload_bytes: usize,
    max_lag: Duration,
    late_sends: usize,
}

async fn bench(args: &BenchArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let keys = dev::ensure_dev_keys(data_dir)?;
    let node = node::start(NodeConfig {
        data_dir: data_dir.to_path_buf(),
        listen: ([127, 0, 0, 1], 0).into(),
        operator_key: keys.operator.key.clone(),
        bootstrap: dev::bootstrap_events(&keys),
        sequencer: SequencerConfig {
            max_batch: args.max_batch,
            batch_delay: Duration::from_millis(args.batch_delay_ms),
            ..SequencerConfig::default()
        },
        startup_check: StartupCheck::Full,
        tls: None,
        metrics_listen: None,
        max_payload_bytes: crate::core::leaf::MAX_PAYLOAD_BYTES,
    })
    .await?;
    let ingest = drive(args, &node, &keys.monitor.key).await;
    let stopped = node
        .shutdown()
        .await
        .context("the node did not stop cleanly");
    let (figures, sample) = ingest?;
    stopped?;

    // Measured after the node has stopped, so nothing competes for the core.
    let one_thread_sample = sample.clone();
    let (verified, verify_elapsed) =
        tokio::task::spawn_blocking(move || measure_verify(&one_thread_sample))
            .await
            .context("the verify measurement failed")??;
    let verify_rate = verified as f64 / verify_elapsed.as_secs_f64();

    report(args, &figures, verified, verify_elapsed, verify_rate);
    if args.audit {
        let data_dir = data_dir.to_path_buf();
        let (audit_rate, entries, all_cores_rate) =
            tokio::task::spawn_blocking(move || audit_throughput(&data_dir, &sample))
                .await
                .context("the audit measurement failed")??;
        println!(
            "  audit             {entries} entries at {audit_rate:.0} entries/s (verify --data-dir, all checks)"
        );
        println!(
            "  verify_strict     {all_cores_rate:.0} /s on all {} cores",
            rayon::current_num_threads()
        );
        println!(
            "  audit ratio       {:.2} (audit entries/s / all-core verify/s)",
            audit_rate / all_cores_rate
        );
    }
    if !figures.failures.is_empty() {
        bail!(
            "{} of {} submissions failed",
            figures.failures.len(),
            figures.events
        );
    }
    if figures.size_after - figures.size_before != figures.ok as u64 {
        bail!(
            "the log grew by {} entries, but {} receipts came back",
            figures.size_after - figures.size_before,
            figures.ok
        );
    }
    Ok(())
}

/// Prepares the events and connections, runs the clients, collects figures.
/// Returns one signed event too, for the verify measurement.
async fn drive(
    args: &BenchArgs,
    node: &node::Node,
    monitor: &SigningKey,
) -> anyhow::Result<(Figures, SignedEvent)> {
    let clients = args.clients.min(args.events);
    let events = build_events(args.events, monitor);
    let sample = events[0].clone();
    let payload_bytes = events[0].payload.len();
    let mut shares: Vec<Vec<SignedEvent>> = vec![Vec::new(); clients];
    for (index, event) in events.into_iter().enumerate() {
        shares[index % clients].push(event);
    }
    let url = node.url();
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(client::connect(&url).await?);
    }
    let size_before = head_size(node)?;

    // Client i sends its k-th event at start + (k * clients + i) / rate.
    let interval = args.rate.map(|rate| Duration::from_secs_f64(1.0 / rate));
    let start = tokio::time::Instant::now() + Duration::from_millis(5);
    let mut tasks = Vec::with_capacity(clients);
    for (index, (connection, share)) in connections.into_iter().zip(shares).enumerate() {
        let schedule = Schedule {
            start,
            interval,
            client: index,
            clients,
        };
        tasks.push(if args.stream {
            tokio::spawn(stream_client(connection, share, schedule, args.window))
        } else {
            tokio::spawn(unary_client(connection, share, schedule))
        });
    }
    let mut results = Vec::with_capacity(clients);
    for task in tasks {
        results.push(task.await.context("a client task failed")?);
    }
    let wall = start.elapsed();
    let size_after = head_size(node)?;

    let mut latencies_us = Vec::with_capacity(args.events);
    let mut failures = Vec::new();
    let mut per_checkpoint: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut max_lag, mut late_sends) = (Duration::ZERO, 0);
    for result in results {
        latencies_us.extend(result.latencies_us);
        failures.extend(result.failures);
        for size in result.checkpoint_sizes {
            *per_checkpoint.entry(size).or_default() += 1;
        }
        max_lag = max_lag.max(result.max_lag);
        late_sends += result.late_sends;
    }
    latencies_us.sort_unstable();
    Ok((
        Figures {
            events: args.events,
            clients,
            ok: latencies_us.len(),
            failures,
            wall,
            latencies_us,
            batch_sizes: per_checkpoint.into_values().collect(),
            size_before,
            size_after,
            payload_bytes,
            max_lag,
            late_sends,
        },
        sample,
    ))
}

/// When a client's events are due under `--rate`.
#[derive(Clone, Copy)]
struct Schedule {
    start: tokio::time::Instant,
    /// Between consecutive sends of all clients; `None`: as fast as possible.
    interval: Option<Duration>,
    client: usize,
    clients: usize,
}

impl Schedule {
    /// Waits until event `k` of this client is due and notes how late it is.
    async fn wait_for(&self, k: usize, result: &mut ClientResult) {
        let Some(interval) = self.interval else {
            return;
        };
        let due = self.start + interval.mul_f64((k * self.clients + self.client) as f64);
        tokio::time::sleep_until(due).await;
        let lag = tokio::time::Instant::now().saturating_duration_since(due);
        result.max_lag = result.max_lag.max(lag);
        if lag > Duration::from_millis(1) {
            result.late_sends += 1;
        }
    }
}

type LedgerConnection = crate::proto::ledger_client::LedgerClient<tonic::transport::Channel>;

impl ClientResult {
    fn with_capacity(events: usize) -> ClientResult {
        ClientResult {
            latencies_us: Vec::with_capacity(events),
            checkpoint_sizes: Vec::with_capacity(events),
            ..ClientResult::default()
        }
    }

    /// Records one event's answer, `sent` being when it left the client.
    fn record(&mut self, sent: Instant, answer: Result<crate::proto::Receipt, String>) {
        let latency = sent.elapsed();
        match answer {
            Ok(receipt) => match receipt.checkpoint {
                Some(checkpoint) if receipt.seq < checkpoint.tree_size => {
                    self.latencies_us.push(latency.as_micros() as u64);
                    self.checkpoint_sizes.push(checkpoint.tree_size);
                }
                _ => self
                    .failures
                    .push("a receipt without a checkpoint covering it".into()),
            },
            Err(message) => self.failures.push(message),
        }
    }
}

/// One unary Submit at a time.
async fn unary_client(
    mut connection: LedgerConnection,
    share: Vec<SignedEvent>,
    schedule: Schedule,
) -> ClientResult {
    let mut result = ClientResult::with_capacity(share.len());
    tokio::time::sleep_until(schedule.start).await;
    for (k, event) in share.into_iter().enumerate() {
        schedule.wait_for(k, &mut result).await;
        let sent = Instant::now();
        let answer = connection
            .submit(event)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| format!("{:?}: {}", status.code(), status.message()));
        result.record(sent, answer);
    }
    result
}

/// One SubmitStream with up to `window` events in flight; answers come back
/// in the order sent, so each is matched with the oldest send time.
async fn stream_client(
    mut connection: LedgerConnection,
    share: Vec<SignedEvent>,
    schedule: Schedule,
    window: usize,
) -> ClientResult {
    use crate::proto::submit_result::Outcome;
    let mut result = ClientResult::with_capacity(share.len());
    let expected = share.len();
    let (events, outgoing) = tokio::sync::mpsc::channel::<SignedEvent>(window);
    let (sent_times, mut send_order) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let credit = std::sync::Arc::new(tokio::sync::Semaphore::new(window));
    let answers = connection
        .submit_stream(tokio_stream::wrappers::ReceiverStream::new(outgoing))
        .await;
    let mut answers = match answers {
        Ok(response) => response.into_inner(),
        Err(status) => {
            result.failures = vec![format!("SubmitStream: {status}"); expected];
            return result;
        }
    };
    let sender_credit = credit.clone();
    let sender = tokio::spawn(async move {
        let mut lag = ClientResult::default();
        tokio::time::sleep_until(schedule.start).await;
        for (k, event) in share.into_iter().enumerate() {
            schedule.wait_for(k, &mut lag).await;
            let Ok(permit) = sender_credit.acquire().await else {
                break;
            };
            permit.forget();
            let _ = sent_times.send(Instant::now());
            if events.send(event).await.is_err() {
                break;
            }
        }
        lag
    });
    while result.latencies_us.len() + result.failures.len() < expected {
        let answer = match answers.message().await {
            Ok(Some(answer)) => answer,
            Ok(None) => break,
            Err(status) => {
                result
                    .failures
                    .push(format!("{:?}: {}", status.code(), status.message()));
                break;
            }
        };
        let Some(sent) = send_order.recv().await else {
            break;
        };
        credit.add_permits(1);
        result.record(
            sent,
            match answer.outcome {
                Some(Outcome::Receipt(receipt)) => Ok(receipt),
                Some(Outcome::Refusal(refusal)) => Err(format!(
                    "{:?}: {}",
                    tonic::Code::from_i32(refusal.code),
                    refusal.message
                )),
                None => Err("an answer with neither receipt nor refusal".into()),
            },
        );
    }
    credit.close();
    if let Ok(lag) = sender.await {
        result.max_lag = lag.max_lag;
        result.late_sends = lag.late_sends;
    }
    let answered = result.latencies_us.len() + result.failures.len();
    result.failures.extend(std::iter::repeat_n(
        "never answered".to_string(),
        expected - answered,
    ));
    result
}

fn head_size(node: &node::Node) -> anyhow::Result<u64> {
    Ok(node
        .store
        .head()
        .context("cannot read the store's head")?
        .size)
}

/// Builds and signs `count` observations by the dev monitor (on every core:
/// this happens before the clock starts).
fn build_events(count: usize, monitor: &SigningKey) -> Vec<SignedEvent> {
    let now = crate::sequencer::now_micros();
    let timestamp = crate::core::rules::micros_timestamp;
    let minute = 60 * 1_000_000;
    // A run-unique prefix and the index: distinct within the run and from
    // any earlier run on the same data directory.
    let mut run_id = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut run_id);
    (0..count)
        .into_par_iter()
        .map(|index| {
            let mut nonce = run_id.to_vec();
            nonce.extend_from_slice(&(index as u64).to_be_bytes());
            // Spread over the inner part of the dev sector (48..49, 37..38).
            let step = (index % 1000) as f64 / 1000.0;
            let event = Event {
                agreement_id: dev::DEV_AGREEMENT_ID.into(),
                author: dev::DEV_MONITOR.into(),
                created_at: Some(timestamp(now - minute)),
                nonce,
                body: Some(Body::Observation(Observation {
                    observed_from: Some(timestamp(now - 20 * minute)),
                    observed_until: Some(timestamp(now - 5 * minute)),
                    location: Some(Location {
                        point: Some(LatLon {
                            lat: 48.1 + 0.8 * step,
                            lon: 37.9 - 0.8 * step,
                        }),
                        accuracy_m: 250.0,
                    }),
                    zone_id: String::new(),
                    commitment_id: dev::DEV_COMMITMENT.into(),
                    finding: Finding::Violation as i32,
                    category: Category::Explosion as i32,
                    quantity: (index % 7) as u32 + 1,
                    attributed_side: String::new(),
                    evidence: Vec::new(),
                    narrative: "Explosions heard 2-3 km north-east of the patrol position.".into(),
                })),
            };
            client::sign(&event, &[monitor])
        })
        .collect()
}

/// Strict verifications of `sample`'s signature on this thread for about
/// [`VERIFY_SECONDS`]: how many, and how long they took.
fn measure_verify(sample: &SignedEvent) -> anyhow::Result<(u64, Duration)> {
    let wire = sample
        .signatures
        .first()
        .context("the sample event carries no signature")?;
    let signature = EventSignature {
        public_key: wire
            .public_key
            .as_slice()
            .try_into()
            .context("the sample public key is not 32 bytes")?,
        signature: wire
            .signature
            .as_slice()
            .try_into()
            .context("the sample signature is not 64 bytes")?,
    };
    verify_event_signature(&sample.payload, &signature).map_err(|rejection| {
        anyhow::anyhow!("the sample does not verify: {}", rejection.message)
    })?;
    let budget = Duration::from_secs_f64(VERIFY_SECONDS);
    let started = Instant::now();
    let mut count = 0u64;
    loop {
        let verdict = verify_event_signature(
            std::hint::black_box(&sample.payload),
            std::hint::black_box(&signature),
        );
        std::hint::black_box(verdict.is_ok());
        count += 1;
        let elapsed = started.elapsed();
        if elapsed >= budget {
            return Ok((count, elapsed));
        }
    }
}

/// Audits the log in `data_dir` and measures, right after, the strict
/// verify rate on all cores: (audit entries/s, entries, verifies/s).
fn audit_throughput(
    data_dir: &std::path::Path,
    sample: &SignedEvent,
) -> anyhow::Result<(f64, u64, f64)> {
    let mut source = crate::audit::sources::DataDirSource::open(data_dir)?;
    let started = Instant::now();
    let report = crate::audit::audit(&mut source, Default::default())
        .map_err(|error| anyhow::anyhow!("the audit failed: {error}"))?;
    let audit_rate = report.entries as f64 / started.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    let counts: Vec<anyhow::Result<(u64, Duration)>> = (0..threads)
        .into_par_iter()
        .map(|_| measure_verify(sample))
        .collect();
    let mut all_cores_rate = 0.0;
    for count in counts {
        let (verified, elapsed) = count?;
        all_cores_rate += verified as f64 / elapsed.as_secs_f64();
    }
    Ok((audit_rate, report.entries, all_cores_rate))
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(
    args: &BenchArgs,
    figures: &Figures,
    verified: u64,
    verify_elapsed: Duration,
    verify_rate: f64,
) {
    let wall = figures.wall.as_secs_f64();
    let throughput = figures.ok as f64 / wall;
    let ms = |micros: u64| micros as f64 / 1e3;
    let latencies = &figures.latencies_us;
    let (p50, p90, p99, max) = (
        ms(percentile(latencies, 0.50)),
        ms(percentile(latencies, 0.90)),
        ms(percentile(latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or(0)),
    );
    let batches = figures.batch_sizes.len();
    let mean_batch = figures.ok as f64 / batches.max(1) as f64;
    let max_batch = figures.batch_sizes.iter().copied().max().unwrap_or(0);
    let syncs_per_second = batches as f64 / wall;
    let ratio = throughput / verify_rate;

    println!("ceasefire-ledger bench");
    println!(
        "  events            {} ({} ok, {} failed), {} bytes of payload each",
        figures.events,
        figures.ok,
        figures.failures.len(),
        figures.payload_bytes
    );
    if figures.clients < args.clients {
        println!(
            "  clients           {} (of {} asked: no more clients than events)",
            figures.clients, args.clients
        );
    } else {
        println!("  clients           {}", figures.clients);
    }
    println!(
        "  node              max batch {}, batch delay {} ms",
        args.max_batch, args.batch_delay_ms
    );
    if args.stream {
        println!(
            "  submission        SubmitStream, {} events in flight per client",
            args.window
        );
    } else {
        println!("  submission        unary Submit, one call in flight per client");
    }
    match args.rate {
        Some(rate) => println!(
            "  offered load      {rate:.0} events/s ({} sends more than 1 ms behind schedule, worst {:.1} ms)",
            figures.late_sends,
            figures.max_lag.as_secs_f64() * 1e3
        ),
        None => println!("  offered load      unlimited (closed loop)"),
    }
    println!("  wall time         {wall:.3} s");
    println!("  submissions/s     {throughput:.0}");
    println!("  latency (ms)      p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}");
    println!(
        "  batches           {batches} (mean {mean_batch:.1} events, largest {max_batch}), {syncs_per_second:.0} syncs/s"
    );
    println!(
        "  log size          {} -> {}",
        figures.size_before, figures.size_after
    );
    println!(
        "  verify_strict     {verify_rate:.0} /s on one thread ({verified} in {:.2} s)",
        verify_elapsed.as_secs_f64()
    );
    println!("  ratio             {ratio:.2} (submissions/s / single-thread verify/s)");
    if !figures.failures.is_empty() {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for failure in &figures.failures {
            *counts.entry(failure.as_str()).or_default() += 1;
        }
        println!("  failures:");
        for (message, count) in counts.iter().take(FAILURES_SHOWN) {
            println!("    {count} x {message}");
        }
        if counts.len() > FAILURES_SHOWN {
            println!(
                "    ... and {} other messages",
                counts.len() - FAILURES_SHOWN
            );
        }
    }
    if args.json {
        let json = serde_json::json!({
            "events": figures.events,
            "ok": figures.ok,
            "failed": figures.failures.len(),
            "clients": figures.clients,
            "payload_bytes": figures.payload_bytes,
            "max_batch": args.max_batch,
            "batch_delay_ms": args.batch_delay_ms,
            "rate": args.rate,
            "stream": args.stream,
            "window": args.stream.then_some(args.window),
            "late_sends": figures.late_sends,
            "max_schedule_lag_ms": figures.max_lag.as_secs_f64() * 1e3,
            "wall_seconds": wall,
            "submissions_per_second": throughput,
            "latency_ms": { "p50": p50, "p90": p90, "p99": p99, "max": max },
            "batches": batches,
            "mean_batch": mean_batch,
            "largest_batch": max_batch,
            "syncs_per_second": syncs_per_second,
            "log_size_before": figures.size_before,
            "log_size_after": figures.size_after,
            "verify_strict_per_second": verify_rate,
            "ratio": ratio,
        });
        println!("{json}");
    }
}
