//! `bench`: measure a real node under load, and this machine's own limits
//! beside it, in one run.
//!
//! The node is the real binary (`serve --dev` on a fresh data directory, a
//! child process: what an operator runs, with its memory its own). Every
//! event is built and signed before the clock starts (observations by the
//! dev monitor, distinct nonces, times in the past, inside the dev zone),
//! and every client has its own gRPC connection, opened before the clock
//! too. Each client then submits its share as fast as it can or, with
//! `--rate`, at a steady share of the offered load, and records each
//! event's latency to its receipt: one unary Submit call at a time, or,
//! with `--stream`, on one SubmitStream with up to `--window` events in
//! flight ([`clients`]). Latency counts from the send or, under `--rate`,
//! from the event's scheduled send time, so that waiting for the previous
//! call or for stream credit when the node falls behind is counted; the
//! schedule lag is taken when each event actually leaves the client.
//!
//! Batches are counted from the receipts: each carries the checkpoint
//! committed with its batch, so the distinct checkpoint sizes are the batches
//! (one sync each) that the run's events went into; nothing else writes.
//! The node's resident memory is read as the log passes each power of ten
//! above its starting size (from 1,000), beside the log size the node
//! reports right then, and at the end.
//!
//! After the node has stopped (SIGTERM, as an operator would), the same run
//! measures this machine's single-thread strict verification rate over a
//! real signed payload (`verify_strict` with the key decoded once: the
//! primitive's own rate, the highest reference), so the ratio of the two is
//! visible; inclusion proofs read from the final store for tree sizes from
//! 1,000 up; the store's bytes per entry; and, with `--audit`, an audit of
//! the whole log beside the all-core verify rate ([`measure`]).
//!
//! With `--witnesses N`, N real witnesses (`witness serve` child processes
//! on loopback) cosign the log under a policy the signatories put in it
//! before the clock starts, and the run also measures, for every receipt,
//! the time until a witnessed checkpoint covering its entry appears,
//! beside the witnessed checkpoints' rate and size ([`witnessed`]).
//!
//! `--abuse` runs another benchmark: honest clients' receipt latency and
//! rate with no abuse, then while one client floods the node with forged
//! signatures, holds thousands of idle streams, and sends oversized
//! messages, with the node's memory before and after each ([`abuse`]).

mod abuse;
mod clients;
mod measure;
mod node;
mod witnessed;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::dev;
use ceasefire_grpc::client;
use ceasefire_grpc::proto::SignedEvent;
use ceasefire_node::sequencer::SequencerConfig;
use ceasefire_testkit::scenario::Scenario;
use clients::{ClientResult, Schedule};
use node::BenchNode;
use witnessed::{BenchWitnesses, WitnessedFigures};

/// How often the acknowledged count is checked for the next memory
/// milestone (the node's memory is read only when one is passed).
const MEMORY_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// The first log size at which the node's memory is read, on a fresh log.
const FIRST_MEMORY_MILESTONE: u64 = 1_000;

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
    /// Also run this many witnesses (`witness serve` child processes on
    /// loopback), put a policy naming them in the log first, and measure
    /// the time from each receipt to a witnessed checkpoint covering it.
    #[arg(long)]
    witnesses: Option<usize>,
    /// With --witnesses: how many of them must cosign a checkpoint
    /// [default: a majority].
    #[arg(long, requires = "witnesses")]
    witness_quorum: Option<u32>,
    /// Then audit the resulting log (as `verify --data-dir` does) and print
    /// its entries/s beside this machine's strict-verify rate on all cores.
    #[arg(long)]
    audit: bool,
    /// Instead of measuring ingest, measure honest clients while the node is
    /// abused: a forged-signature flood, thousands of idle streams,
    /// oversized messages (a fixed, short run with its own clients and the
    /// node's default batching: the load, node and audit flags are refused).
    #[arg(
        long,
        conflicts_with_all = [
            "clients", "events", "max_batch", "batch_delay_ms", "rate", "stream",
            "window", "audit", "witnesses", "witness_quorum",
        ]
    )]
    abuse: bool,
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
    if args.witnesses == Some(0) {
        bail!("--witnesses must be at least 1");
    }
    if let Some(witnesses) = args.witnesses {
        witnessed::quorum(witnesses, args.witness_quorum)?;
    }
    let data = DataDir::new(args.data_dir.clone(), args.keep_data)?;
    let result = if args.abuse {
        abuse::run(&data.path, args.json).await
    } else {
        bench(&args, &data.path).await
    };
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
    /// The node's resident bytes by the log size the node reported right
    /// after reading them (as the log passed each power of ten, and at the
    /// end).
    memory: BTreeMap<u64, u64>,
    /// With `--witnesses`: receipt→witnessed.
    witnessed: Option<WitnessedFigures>,
}

async fn bench(args: &BenchArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let dev = dev::scenario(&dev::ensure_dev_keys(data_dir)?);
    let node = BenchNode::start(data_dir, args.max_batch, args.batch_delay_ms).await?;
    let witnesses = match args.witnesses {
        Some(count) => {
            let quorum = witnessed::quorum(count, args.witness_quorum)?;
            let witnesses = BenchWitnesses::start(data_dir, &dev, count, quorum).await?;
            let witnessed_size = witnesses.adopt(&node.url, &dev).await?;
            Some((witnesses, witnessed_size))
        }
        None => None,
    };
    let ingest = drive(args, &node, &dev, witnesses.as_ref()).await;
    let stopped = node.stop().await.context("the node did not stop cleanly");
    if let Some((witnesses, _)) = witnesses {
        witnesses.stop();
    }
    let (figures, sample) = ingest?;
    stopped?;

    // Measured after the node has stopped, so nothing competes for the core.
    let one_thread_sample = sample.clone();
    let (verified, verify_elapsed) =
        tokio::task::spawn_blocking(move || measure::measure_verify(&one_thread_sample))
            .await
            .context("the verify measurement failed")??;
    let verify_rate = verified as f64 / verify_elapsed.as_secs_f64();
    let sizes: Vec<u64> = [1_000, 10_000, 100_000, 1_000_000, 10_000_000]
        .into_iter()
        .filter(|&size| size <= figures.size_after)
        .chain([figures.size_after])
        .collect();
    let path = data_dir.to_path_buf();
    let proofs = tokio::task::spawn_blocking(move || measure::proof_timings(&path, &sizes))
        .await
        .context("the proof measurement failed")??;
    let disk = measure::disk_bytes(&data_dir.join(ceasefire_node::storage::DB_DIR_NAME))
        .context("cannot measure the store on disk")?;

    report(
        args,
        &figures,
        verified,
        verify_elapsed,
        verify_rate,
        &proofs,
        disk,
    );
    if args.audit {
        let data_dir = data_dir.to_path_buf();
        let (audit_rate, entries, all_cores_rate) =
            tokio::task::spawn_blocking(move || measure::audit_throughput(&data_dir, &sample))
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
    if let Some(witnessed) = figures.witnessed.as_ref().filter(|w| w.uncovered > 0) {
        bail!(
            "{} of {} receipts were never covered by a witnessed checkpoint",
            witnessed.uncovered,
            figures.ok
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

/// Prepares the events and connections, runs the clients while sampling
/// the node's memory (and, with witnesses, following the witnessed
/// checkpoint from `witnesses`' size), collects figures. Returns one signed
/// event too, for the verify measurement.
async fn drive(
    args: &BenchArgs,
    node: &BenchNode,
    dev: &Scenario,
    witnesses: Option<&(BenchWitnesses, u64)>,
) -> anyhow::Result<(Figures, SignedEvent)> {
    let clients = args.clients.min(args.events);
    let events = clients::build_events(args.events, dev);
    let sample = events[0].clone();
    let payload_bytes = events[0].payload.len();
    let mut shares: Vec<Vec<SignedEvent>> = vec![Vec::new(); clients];
    for (index, event) in events.into_iter().enumerate() {
        shares[index % clients].push(event);
    }
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(client::connect(&node.url).await?);
    }
    let size_before = node.tree_size().await?;

    let acknowledged = Arc::new(AtomicU64::new(0));
    let clients_done = Arc::new(AtomicBool::new(false));
    let sampling = tokio::spawn(sample_memory(
        node.pid(),
        client::connect(&node.url).await?,
        size_before,
        acknowledged.clone(),
        clients_done.clone(),
    ));
    let (run_ended, run_end) = tokio::sync::watch::channel(None);
    let following = match witnesses {
        Some((_, witnessed_size)) => Some(tokio::spawn(witnessed::follow(
            client::connect(&node.url).await?,
            *witnessed_size,
            run_end,
        ))),
        None => None,
    };
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
        let acknowledged = acknowledged.clone();
        tasks.push(if args.stream {
            tokio::spawn(clients::stream_client(
                connection,
                share,
                schedule,
                args.window,
                acknowledged,
            ))
        } else {
            tokio::spawn(clients::unary_client(
                connection,
                share,
                schedule,
                acknowledged,
            ))
        });
    }
    let mut results = Vec::with_capacity(clients);
    for task in tasks {
        results.push(task.await.context("a client task failed")?);
    }
    let wall = start.elapsed();
    clients_done.store(true, Ordering::Relaxed);
    let size_after = node.tree_size().await?;
    let mut memory = sampling.await.unwrap_or_default();
    if let Some(resident) = node::resident_bytes(node.pid()) {
        memory.insert(size_after, resident);
    }
    run_ended.send_replace(Some(size_after));
    let appearances = match following {
        Some(following) => following.await.context("the witnessed follower failed")?,
        None => Vec::new(),
    };

    let mut latencies_us = Vec::with_capacity(args.events);
    let mut failures = Vec::new();
    let mut receipts = Vec::with_capacity(args.events);
    let mut per_checkpoint: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut max_lag, mut late_sends) = (Duration::ZERO, 0);
    for result in results {
        let ClientResult {
            latencies_us: latencies,
            checkpoint_sizes,
            receipts: arrivals,
            failures: failed,
            max_lag: lag,
            late_sends: late,
        } = result;
        latencies_us.extend(latencies);
        failures.extend(failed);
        receipts.extend(arrivals);
        for size in checkpoint_sizes {
            *per_checkpoint.entry(size).or_default() += 1;
        }
        max_lag = max_lag.max(lag);
        late_sends += late;
    }
    latencies_us.sort_unstable();
    let witnessed = match witnesses {
        Some((witnesses, witnessed_size)) => Some(witnessed::figures(
            witnesses,
            &receipts,
            &appearances,
            *witnessed_size,
            start.into_std(),
            witnessed::witness_states(&node.url).await?,
        )),
        None => None,
    };
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
            memory,
            witnessed,
        },
        sample,
    ))
}

/// Until the clients are done, reads the node's resident memory each time
/// the acknowledged log size passes a power of ten (the first above
/// `size_before`, at least [`FIRST_MEMORY_MILESTONE`]), and keys it by the
/// log size the node reports right after the read, not by the milestone.
async fn sample_memory(
    pid: u32,
    mut connection: clients::LedgerConnection,
    size_before: u64,
    acknowledged: Arc<AtomicU64>,
    clients_done: Arc<AtomicBool>,
) -> BTreeMap<u64, u64> {
    let mut memory = BTreeMap::new();
    let mut next_milestone = FIRST_MEMORY_MILESTONE;
    while next_milestone <= size_before {
        next_milestone = next_milestone.saturating_mul(10);
    }
    while !clients_done.load(Ordering::Relaxed) {
        let acknowledged_size = size_before + acknowledged.load(Ordering::Relaxed);
        if acknowledged_size >= next_milestone {
            let resident = node::resident_bytes(pid);
            let observed = connection
                .get_checkpoint(ceasefire_grpc::proto::GetCheckpointRequest::default())
                .await
                .map(|checkpoint| checkpoint.into_inner().tree_size);
            if let (Some(resident), Ok(size)) = (resident, observed) {
                memory.insert(size, resident);
            }
            while next_milestone <= acknowledged_size {
                next_milestone = next_milestone.saturating_mul(10);
            }
        }
        tokio::time::sleep(MEMORY_SAMPLE_INTERVAL).await;
    }
    memory
}

fn report(
    args: &BenchArgs,
    figures: &Figures,
    verified: u64,
    verify_elapsed: Duration,
    verify_rate: f64,
    proofs: &[(u64, usize, f64)],
    disk_bytes: u64,
) {
    use measure::percentile;
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
            "  offered load      {rate:.0} events/s ({} sends more than {} ms behind schedule, worst {:.1} ms)",
            figures.late_sends,
            clients::LATE.as_millis(),
            figures.max_lag.as_secs_f64() * 1e3
        ),
        None => println!("  offered load      unlimited (closed loop)"),
    }
    println!("  wall time         {wall:.3} s");
    println!("  submissions/s     {throughput:.0}");
    let latency_from = if args.rate.is_some() {
        "from the scheduled send"
    } else {
        "from the send"
    };
    println!(
        "  latency (ms)      p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2} ({latency_from})"
    );
    if let Some(witnessed) = &figures.witnessed {
        witnessed.print();
    }
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
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    for (size, resident) in &figures.memory {
        println!(
            "  node memory       {:.1} MiB resident at log size {size}",
            mib(*resident)
        );
    }
    for (size, longest, micros) in proofs {
        println!(
            "  inclusion proof   {micros:.1} us (final store, tree size {size}, up to {longest} hashes)"
        );
    }
    let bytes_per_entry = disk_bytes as f64 / figures.size_after.max(1) as f64;
    println!(
        "  on disk           {:.1} MiB, {bytes_per_entry:.0} bytes per entry (payload {} bytes)",
        mib(disk_bytes),
        figures.payload_bytes
    );
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
        let mut json = serde_json::json!({
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
            "latency_from": if args.rate.is_some() { "scheduled send" } else { "send" },
            "batches": batches,
            "mean_batch": mean_batch,
            "largest_batch": max_batch,
            "syncs_per_second": syncs_per_second,
            "log_size_before": figures.size_before,
            "log_size_after": figures.size_after,
            "verify_strict_per_second": verify_rate,
            "ratio": ratio,
            "node_resident_bytes": figures.memory.iter()
                .map(|(size, bytes)| (size.to_string(), *bytes))
                .collect::<BTreeMap<String, u64>>(),
            "inclusion_proof_micros": proofs.iter()
                .map(|(size, _, micros)| (size.to_string(), *micros))
                .collect::<BTreeMap<String, f64>>(),
            "disk_bytes": disk_bytes,
            "disk_bytes_per_entry": bytes_per_entry,
        });
        if let Some(witnessed) = &figures.witnessed {
            json["witnessed"] = witnessed.json();
        }
        println!("{json}");
    }
}
