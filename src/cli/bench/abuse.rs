//! `bench --abuse`: what honest clients see while one client abuses the
//! node, and what the abuse costs the node in memory, side by side in one
//! run.
//!
//! The node is the real binary in a child process ([`BenchNode`]), so its
//! resident memory is its own. A few honest clients, each on its own
//! connection, submit valid observations one call at a time (a closed loop)
//! for a fixed time in each phase, and every receipt's latency from send to
//! receipt is kept; the node's memory is read before each phase, mid-way
//! through its honest clients' run, and after. The phases:
//!
//! - **quiet**: no abuse, the reference.
//! - **idle streams**: thousands of streams opened and left idle over a few
//!   connections (Subscribe, SubmitStream that sends nothing, GetEntries
//!   whose reader grants no flow-control window), and connections that send
//!   nothing at all; the node's memory is read after each kind, and streams
//!   over a limit are counted by their refusal code.
//! - **forged flood**: one abusive connection keeps as many unary Submits
//!   of events with a flipped signature bit in flight as the node's
//!   per-connection stream limit leaves room for beside a SubmitStream full
//!   of them; every one must come back UNAUTHENTICATED.
//! - **oversized**: messages over the 64 KiB gRPC limit and payloads between
//!   the 32 KiB payload cap and that limit, on Submit and SubmitStream.
//!
//! Speed and latency are printed, never judged: the machine is shared with
//! the abusers and the node. What is judged is correctness: every honest
//! event gets a receipt, every abusive call its refusal, and the log grows
//! by exactly the honest receipts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;

use super::clients::{build_events, LedgerConnection};
use super::measure::percentile;
use super::node::{resident_bytes, BenchNode};
use ceasefire_core::leaf::MAX_PAYLOAD_BYTES;
use ceasefire_grpc::client;
use ceasefire_grpc::proto::{
    compliance_client::ComplianceClient, GetEntriesRequest, SignedEvent, StatusFilter,
    SubscribeRequest,
};
use ceasefire_node::sequencer::SequencerConfig;
use ceasefire_node::server::{MAX_CONCURRENT_STREAMS_PER_CONNECTION, MAX_GRPC_MESSAGE_BYTES};
use ceasefire_testkit::scenario::Scenario;

/// How long the honest clients are measured in each phase.
const PHASE: Duration = Duration::from_secs(3);

/// Honest clients, each on its own connection, one call in flight each.
const HONEST_CLIENTS: usize = 4;

/// Pre-signed events per honest client per phase; far more than a client
/// submits in [`PHASE`] one call at a time.
const HONEST_POOL: usize = 6_000;

/// The node's batch delay: `serve`'s default (its max batch is `serve`'s
/// default too, [`SequencerConfig`]'s), as an operator runs it. The honest
/// clients have at most [`HONEST_CLIENTS`] events waiting at once and
/// forged events never reach a batch, so the batching is not what this
/// benchmark measures.
const NODE_BATCH_DELAY_MS: u64 = 0;

/// Forged unary Submits the abusive connection keeps in flight: every
/// stream the node allows one connection
/// ([`MAX_CONCURRENT_STREAMS_PER_CONNECTION`]) but the one its forged
/// SubmitStream takes. More would only queue in this client.
const FORGED_IN_FLIGHT: usize = MAX_CONCURRENT_STREAMS_PER_CONNECTION as usize - 1;

/// Distinct forged events, sent round and round (each costs the node a full
/// verification every time).
const FORGED_POOL: usize = 512;

/// Idle streams of each kind opened in the idle phase (more than the node's
/// limits for the kinds it limits, so the refusals show), and connections
/// that send nothing.
const IDLE_SUBSCRIPTIONS: usize = 1_000;
const IDLE_SUBMIT_STREAMS: usize = 600;
const IDLE_ENTRY_READERS: usize = 600;
const IDLE_CONNECTIONS: usize = 1_000;

/// Streams opened per connection in the idle phase: below the node's limit
/// of concurrent streams per connection, so none of them waits for a slot.
const STREAMS_PER_CONNECTION: usize = 100;
const _: () = assert!(STREAMS_PER_CONNECTION <= MAX_CONCURRENT_STREAMS_PER_CONNECTION as usize);

/// Oversized events: a message well over the node's gRPC message limit
/// (refused from its length prefix), and a payload over the payload cap
/// whose message is still under that limit (read, then refused).
const OVER_MESSAGE_BYTES: usize = 100 * 1024;
const OVER_PAYLOAD_BYTES: usize = 40 * 1024;
const _: () = assert!(OVER_MESSAGE_BYTES > MAX_GRPC_MESSAGE_BYTES);
const _: () = assert!(
    OVER_PAYLOAD_BYTES > MAX_PAYLOAD_BYTES && OVER_PAYLOAD_BYTES + 1024 < MAX_GRPC_MESSAGE_BYTES
);

/// Time given to an abuse to build up before the node's memory is read.
const BUILD_UP: Duration = Duration::from_millis(300);

/// Oversized calls the abusive connection keeps in flight.
const OVERSIZED_IN_FLIGHT: usize = 32;

/// Time given to the node to notice streams and connections that went away
/// before its memory is read again.
const SETTLE: Duration = Duration::from_millis(500);

/// One phase's figures.
struct Phase {
    name: &'static str,
    honest: Honest,
    resident_before: u64,
    /// Mid-way through the honest clients' run, with the abuse in place.
    resident_during: u64,
    /// After the abuse stopped and the node had [`SETTLE`] to clean up.
    resident_after: u64,
    /// Abusive calls by outcome ("Unauthenticated", "OutOfRange", ...).
    abuse: BTreeMap<String, u64>,
    /// A line on what the abuse was.
    note: String,
}

/// What the honest clients saw in one phase.
#[derive(Default)]
struct Honest {
    latencies_us: Vec<u64>,
    failures: Vec<String>,
    elapsed: Duration,
    /// A client ran out of pre-signed events before the phase ended.
    exhausted: bool,
    /// The node's resident bytes mid-way through the phase.
    resident_mid: u64,
}

pub async fn run(data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let dev = crate::dev::scenario(&crate::dev::ensure_dev_keys(data_dir)?);
    let node = BenchNode::start(
        data_dir,
        SequencerConfig::default().max_batch,
        NODE_BATCH_DELAY_MS,
    )
    .await?;
    let result = phases(&node, &dev).await;
    let stopped = node.stop().await.context("the node did not stop cleanly");
    let (phases, grown, receipts) = result?;
    stopped?;
    report(&phases, json);
    let failures: usize = phases.iter().map(|phase| phase.honest.failures.len()).sum();
    if failures > 0 {
        bail!("{failures} honest submissions failed");
    }
    if grown != receipts {
        bail!("the log grew by {grown} entries, but honest clients got {receipts} receipts");
    }
    Ok(())
}

/// Runs every phase; returns them, how much the log grew, and the honest
/// receipts given.
async fn phases(node: &BenchNode, dev: &Scenario) -> anyhow::Result<(Vec<Phase>, u64, u64)> {
    let mut honest_connections = Vec::with_capacity(HONEST_CLIENTS);
    for _ in 0..HONEST_CLIENTS {
        honest_connections.push(client::connect(&node.url).await?);
    }
    let dev_for_pool = dev.clone();
    let forged: Arc<Vec<SignedEvent>> = Arc::new(
        tokio::task::spawn_blocking(move || {
            build_events(FORGED_POOL, &dev_for_pool)
                .into_iter()
                .map(|mut event| {
                    event.signatures[0].signature[5] ^= 0x01;
                    event
                })
                .collect()
        })
        .await?,
    );
    let size_before = node.tree_size().await?;
    let mut phases = Vec::new();

    let resident_before = resident(node);
    let honest = honest_phase(node, &honest_connections, dev).await?;
    phases.push(Phase {
        name: "quiet",
        resident_during: honest.resident_mid,
        honest,
        resident_before,
        resident_after: resident(node),
        abuse: BTreeMap::new(),
        note: "no abuse".into(),
    });

    // Idle streams first, while the allocator has little freed memory to
    // reuse, so that their cost shows in the node's resident memory.
    phases.push(idle_streams(node, &honest_connections, dev).await?);
    phases.push(forged_flood(node, &honest_connections, dev, forged).await?);
    phases.push(oversized(node, &honest_connections, dev).await?);

    let grown = node.tree_size().await? - size_before;
    let receipts = phases
        .iter()
        .map(|phase| phase.honest.latencies_us.len() as u64)
        .sum();
    Ok((phases, grown, receipts))
}

fn resident(node: &BenchNode) -> u64 {
    resident_bytes(node.pid()).unwrap_or(0)
}

/// The honest clients for one [`PHASE`], each one call at a time; the
/// node's memory is read half-way through.
async fn honest_phase(
    node: &BenchNode,
    connections: &[LedgerConnection],
    dev: &Scenario,
) -> anyhow::Result<Honest> {
    let dev = dev.clone();
    let pools = tokio::task::spawn_blocking(move || {
        (0..HONEST_CLIENTS)
            .map(|_| build_events(HONEST_POOL, &dev))
            .collect::<Vec<_>>()
    })
    .await?;
    let started = Instant::now();
    let deadline = started + PHASE;
    let mut tasks = Vec::new();
    for (connection, pool) in connections.iter().cloned().zip(pools) {
        let mut connection = connection;
        tasks.push(tokio::spawn(async move {
            let mut honest = Honest::default();
            let mut pool = pool.into_iter();
            while Instant::now() < deadline {
                let Some(event) = pool.next() else {
                    honest.exhausted = true;
                    break;
                };
                let sent = Instant::now();
                match connection.submit(event).await {
                    Ok(receipt) => {
                        let receipt = receipt.into_inner();
                        let covered = receipt
                            .checkpoint
                            .as_ref()
                            .is_some_and(|checkpoint| receipt.seq < checkpoint.tree_size);
                        if covered {
                            honest.latencies_us.push(sent.elapsed().as_micros() as u64);
                        } else {
                            honest
                                .failures
                                .push("a receipt whose checkpoint does not cover it".into());
                        }
                    }
                    Err(status) => {
                        honest
                            .failures
                            .push(format!("{:?}: {}", status.code(), status.message()))
                    }
                }
            }
            honest
        }));
    }
    tokio::time::sleep_until((started + PHASE / 2).into()).await;
    let resident_mid = resident(node);
    let mut honest = Honest {
        resident_mid,
        ..Honest::default()
    };
    for task in tasks {
        let client = task.await.context("an honest client failed")?;
        honest.latencies_us.extend(client.latencies_us);
        honest.failures.extend(client.failures);
        honest.exhausted |= client.exhausted;
    }
    honest.elapsed = started.elapsed();
    honest.latencies_us.sort_unstable();
    Ok(honest)
}

type Outcomes = Arc<Mutex<BTreeMap<String, u64>>>;

fn count(outcomes: &Outcomes, outcome: String) {
    *outcomes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(outcome)
        .or_default() += 1;
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

/// One abusive connection: [`FORGED_IN_FLIGHT`] unary forged Submits and a
/// SubmitStream of forged events, for as long as the honest phase runs.
async fn forged_flood(
    node: &BenchNode,
    honest_connections: &[LedgerConnection],
    dev: &Scenario,
    forged: Arc<Vec<SignedEvent>>,
) -> anyhow::Result<Phase> {
    let abuser = client::connect(&node.url).await?;
    let outcomes: Outcomes = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let resident_before = resident(node);
    let mut tasks = Vec::new();
    for caller in 0..FORGED_IN_FLIGHT {
        let (mut connection, forged, outcomes, stop) = (
            abuser.clone(),
            forged.clone(),
            outcomes.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut next = caller;
            while !stop.load(Ordering::Relaxed) {
                let event = forged[next % forged.len()].clone();
                next += FORGED_IN_FLIGHT;
                let outcome = match connection.submit(event).await {
                    Ok(_) => "Ok (a forged event accepted!)".to_string(),
                    Err(status) => code_name(status.code()),
                };
                count(&outcomes, outcome);
            }
        }));
    }
    {
        let (mut connection, forged, outcomes, stop) = (
            abuser.clone(),
            forged.clone(),
            outcomes.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let sending = stop.clone();
            let events =
                futures::stream::iter((0..).map(move |index| forged[index % forged.len()].clone()))
                    .take_while(move |_| futures::future::ready(!sending.load(Ordering::Relaxed)));
            let answers = connection.submit_stream(events).await;
            let mut answers = match answers {
                Ok(answers) => answers.into_inner(),
                Err(status) => {
                    count(&outcomes, format!("stream {}", code_name(status.code())));
                    return;
                }
            };
            loop {
                match answers.message().await {
                    Ok(Some(answer)) => count(
                        &outcomes,
                        match answer.outcome {
                            Some(ceasefire_grpc::proto::submit_result::Outcome::Refusal(
                                refusal,
                            )) => code_name(tonic::Code::from_i32(refusal.code)),
                            _ => "Ok (a forged event accepted!)".to_string(),
                        },
                    ),
                    Ok(None) => break,
                    Err(status) => {
                        count(
                            &outcomes,
                            format!("stream ended {}", code_name(status.code())),
                        );
                        break;
                    }
                }
            }
        }));
    }
    // Let the flood build up before the honest clients start.
    tokio::time::sleep(BUILD_UP).await;
    let honest = honest_phase(node, honest_connections, dev).await?;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    tokio::time::sleep(SETTLE).await;
    let abuse = take(&outcomes);
    let refused: u64 = abuse.values().sum();
    Ok(Phase {
        name: "forged flood",
        resident_during: honest.resident_mid,
        honest,
        resident_before,
        resident_after: resident(node),
        note: format!(
            "one connection: {FORGED_IN_FLIGHT} unary Submits in flight and a SubmitStream, \
             all forged; {refused} answered"
        ),
        abuse,
    })
}

fn take(outcomes: &Outcomes) -> BTreeMap<String, u64> {
    std::mem::take(
        &mut *outcomes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
}

/// Opens `total` streams with `open`, [`STREAMS_PER_CONNECTION`] to a
/// connection (each made with `configure`), and keeps those the node
/// accepted; a refusal is counted as `kind` and its code.
async fn open_streams<T, Opened>(
    node: &BenchNode,
    total: usize,
    configure: impl Fn(tonic::transport::Endpoint) -> tonic::transport::Endpoint,
    kind: &str,
    outcomes: &Outcomes,
    open: impl Fn(tonic::transport::Channel) -> Opened,
) -> anyhow::Result<Vec<T>>
where
    Opened: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut streams = Vec::new();
    for connection in 0..total.div_ceil(STREAMS_PER_CONNECTION) {
        let endpoint = tonic::transport::Endpoint::from_shared(node.url.clone())?;
        let channel = configure(endpoint).connect().await?;
        let here = STREAMS_PER_CONNECTION.min(total - connection * STREAMS_PER_CONNECTION);
        for _ in 0..here {
            match open(channel.clone()).await {
                Ok(stream) => streams.push(stream),
                Err(status) => count(outcomes, format!("{kind} {}", code_name(status.code()))),
            }
        }
    }
    Ok(streams)
}

/// Thousands of idle streams and silent connections, held through an
/// honest phase.
async fn idle_streams(
    node: &BenchNode,
    honest_connections: &[LedgerConnection],
    dev: &Scenario,
) -> anyhow::Result<Phase> {
    let outcomes: Outcomes = Arc::default();
    let resident_before = resident(node);
    let size = node.tree_size().await?;

    // Memory after each kind, so each kind's cost per stream shows.
    let mut kinds: Vec<(&'static str, usize, u64)> = Vec::new();
    let subscriptions = open_streams(
        node,
        IDLE_SUBSCRIPTIONS,
        |endpoint| endpoint,
        "Subscribe",
        &outcomes,
        |channel| async move {
            let request = SubscribeRequest {
                filter: Some(StatusFilter::default()),
                from_seq: size,
                from_index: 0,
            };
            let stream = ComplianceClient::new(channel).subscribe(request).await?;
            Ok(stream.into_inner())
        },
    )
    .await?;
    tokio::time::sleep(SETTLE).await;
    kinds.push(("Subscribe", subscriptions.len(), resident(node)));

    // Each stream's events come from a channel kept open (nothing sent) and
    // closed at the end, which ends the stream on both sides.
    let submit_streams = open_streams(
        node,
        IDLE_SUBMIT_STREAMS,
        |endpoint| endpoint,
        "SubmitStream",
        &outcomes,
        |channel| async move {
            let (events, outgoing) = tokio::sync::mpsc::channel::<SignedEvent>(1);
            let stream = client::ledger_client(channel)
                .submit_stream(tokio_stream::wrappers::ReceiverStream::new(outgoing))
                .await?;
            Ok((events, stream.into_inner()))
        },
    )
    .await?;
    tokio::time::sleep(SETTLE).await;
    kinds.push(("SubmitStream", submit_streams.len(), resident(node)));

    // Readers that grant no flow-control window: the node can send them
    // nothing, so whatever it reads ahead for them stays in its memory.
    let entry_readers = open_streams(
        node,
        IDLE_ENTRY_READERS,
        |endpoint| endpoint.initial_stream_window_size(Some(0)),
        "GetEntries",
        &outcomes,
        |channel| async move {
            let request = GetEntriesRequest {
                start: 0,
                end: size,
            };
            let stream = client::ledger_client(channel).get_entries(request).await?;
            Ok(stream.into_inner())
        },
    )
    .await?;
    tokio::time::sleep(SETTLE).await;
    kinds.push(("GetEntries", entry_readers.len(), resident(node)));

    let address = node.url.trim_start_matches("http://").to_string();
    let mut silent = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        match tokio::net::TcpStream::connect(&address).await {
            Ok(socket) => silent.push(socket),
            Err(error) => count(&outcomes, format!("connect failed: {}", error.kind())),
        }
    }
    tokio::time::sleep(SETTLE).await;
    kinds.push(("silent connection", silent.len(), resident(node)));
    let honest = honest_phase(node, honest_connections, dev).await?;
    drop((subscriptions, submit_streams, entry_readers, silent));
    tokio::time::sleep(SETTLE).await;
    let mut previous = resident_before;
    let mut costs = Vec::new();
    for (kind, open, resident) in kinds {
        let per_item = resident.saturating_sub(previous) as f64 / open.max(1) as f64 / 1024.0;
        previous = resident;
        costs.push(format!("{open} {kind} ({per_item:.1} KiB each)"));
        *outcomes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(format!("{kind} open"))
            .or_default() = open as u64;
    }
    Ok(Phase {
        name: "idle streams",
        resident_during: honest.resident_mid,
        honest,
        resident_before,
        resident_after: resident(node),
        note: format!(
            "{} streams per connection; node memory per idle item: {}",
            STREAMS_PER_CONNECTION,
            costs.join(", ")
        ),
        abuse: take(&outcomes),
    })
}

/// An observation of the dev monitor with a narrative of `bytes` bytes,
/// signed: valid in every way but its size.
fn sized_event(dev: &Scenario, bytes: usize) -> SignedEvent {
    dev.observation().narrative(&"x".repeat(bytes)).signed()
}

/// One abusive connection sending messages over the gRPC limit and payloads
/// over the payload cap, on Submit and on SubmitStreams.
async fn oversized(
    node: &BenchNode,
    honest_connections: &[LedgerConnection],
    dev: &Scenario,
) -> anyhow::Result<Phase> {
    let over_message = Arc::new(sized_event(dev, OVER_MESSAGE_BYTES));
    let over_payload = Arc::new(sized_event(dev, OVER_PAYLOAD_BYTES));
    let abuser = client::connect(&node.url).await?;
    let outcomes: Outcomes = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let resident_before = resident(node);
    let mut tasks = Vec::new();
    for caller in 0..OVERSIZED_IN_FLIGHT {
        let (mut connection, outcomes, stop) = (abuser.clone(), outcomes.clone(), stop.clone());
        let (over_message, over_payload) = (over_message.clone(), over_payload.clone());
        tasks.push(tokio::spawn(async move {
            let mut round = caller;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let (what, event) = match round % 3 {
                    0 => ("Submit > 64 KiB", (*over_message).clone()),
                    1 => ("Submit payload 40 KiB", (*over_payload).clone()),
                    _ => {
                        // A stream: one payload over the cap (answered, the
                        // stream goes on), then a message over the limit
                        // (ends the stream).
                        let events = futures::stream::iter(vec![
                            (*over_payload).clone(),
                            (*over_message).clone(),
                        ]);
                        match connection.submit_stream(events).await {
                            Ok(answers) => {
                                let mut answers = answers.into_inner();
                                loop {
                                    match answers.message().await {
                                        Ok(Some(answer)) => count(
                                            &outcomes,
                                            match answer.outcome {
                                                Some(
                                                    ceasefire_grpc::proto::submit_result::Outcome::Refusal(
                                                        refusal,
                                                    ),
                                                ) => format!(
                                                    "SubmitStream payload 40 KiB {}",
                                                    code_name(tonic::Code::from_i32(refusal.code))
                                                ),
                                                _ => "SubmitStream payload 40 KiB Ok (accepted!)"
                                                    .into(),
                                            },
                                        ),
                                        Ok(None) => {
                                            count(
                                                &outcomes,
                                                "SubmitStream > 64 KiB not refused".into(),
                                            );
                                            break;
                                        }
                                        Err(status) => {
                                            count(
                                                &outcomes,
                                                format!(
                                                    "SubmitStream > 64 KiB {}",
                                                    code_name(status.code())
                                                ),
                                            );
                                            break;
                                        }
                                    }
                                }
                            }
                            Err(status) => count(
                                &outcomes,
                                format!("SubmitStream {}", code_name(status.code())),
                            ),
                        }
                        continue;
                    }
                };
                let outcome = match connection.submit(event).await {
                    Ok(_) => "Ok (accepted!)".to_string(),
                    Err(status) => code_name(status.code()),
                };
                count(&outcomes, format!("{what} {outcome}"));
            }
        }));
    }
    tokio::time::sleep(BUILD_UP).await;
    let honest = honest_phase(node, honest_connections, dev).await?;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    tokio::time::sleep(SETTLE).await;
    Ok(Phase {
        name: "oversized",
        resident_during: honest.resident_mid,
        honest,
        resident_before,
        resident_after: resident(node),
        note: format!(
            "one connection, {OVERSIZED_IN_FLIGHT} callers: {} KiB messages and {} KiB \
             payloads on Submit and SubmitStream",
            OVER_MESSAGE_BYTES / 1024,
            OVER_PAYLOAD_BYTES / 1024
        ),
        abuse: take(&outcomes),
    })
}

fn report(phases: &[Phase], json: bool) {
    let ms = |micros: u64| micros as f64 / 1e3;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!("ceasefire-ledger bench --abuse");
    println!(
        "  honest clients    {HONEST_CLIENTS}, each on its own connection, one unary Submit \
         in flight, {:.0} s per phase",
        PHASE.as_secs_f64()
    );
    println!(
        "  {:<14} {:>10} {:>9} {:>9} {:>9}   {:>28}",
        "phase", "receipts/s", "p50 ms", "p99 ms", "max ms", "node RSS MiB before/during/after"
    );
    for phase in phases {
        let latencies = &phase.honest.latencies_us;
        let rate = latencies.len() as f64 / phase.honest.elapsed.as_secs_f64().max(1e-9);
        println!(
            "  {:<14} {:>10.0} {:>9.2} {:>9.2} {:>9.2}   {:>8.1} / {:>6.1} / {:>6.1}{}",
            phase.name,
            rate,
            ms(percentile(latencies, 0.50)),
            ms(percentile(latencies, 0.99)),
            ms(latencies.last().copied().unwrap_or(0)),
            mib(phase.resident_before),
            mib(phase.resident_during),
            mib(phase.resident_after),
            if phase.honest.failures.is_empty() {
                String::new()
            } else {
                format!("   {} honest failures", phase.honest.failures.len())
            }
        );
    }
    for phase in phases.iter().filter(|phase| !phase.abuse.is_empty()) {
        println!("  {}: {}", phase.name, phase.note);
        for (outcome, count) in &phase.abuse {
            println!("      {count:>8}  {outcome}");
        }
    }
    for phase in phases {
        if phase.honest.exhausted {
            println!(
                "  note: in {}, an honest client used all {HONEST_POOL} of its events early",
                phase.name
            );
        }
        let mut shown = std::collections::BTreeSet::new();
        for failure in &phase.honest.failures {
            if shown.insert(failure) && shown.len() <= 5 {
                println!("  {} honest failure: {failure}", phase.name);
            }
        }
    }
    if json {
        let phases: Vec<serde_json::Value> = phases
            .iter()
            .map(|phase| {
                let latencies = &phase.honest.latencies_us;
                serde_json::json!({
                    "phase": phase.name,
                    "honest_receipts": latencies.len(),
                    "honest_failures": phase.honest.failures.len(),
                    "honest_receipts_per_second":
                        latencies.len() as f64 / phase.honest.elapsed.as_secs_f64().max(1e-9),
                    "honest_latency_ms_p50": ms(percentile(latencies, 0.50)),
                    "honest_latency_ms_p99": ms(percentile(latencies, 0.99)),
                    "honest_latency_ms_max": ms(latencies.last().copied().unwrap_or(0)),
                    "node_resident_bytes_before": phase.resident_before,
                    "node_resident_bytes_during": phase.resident_during,
                    "node_resident_bytes_after": phase.resident_after,
                    "abuse": phase.abuse,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "abuse": phases }));
    }
}
