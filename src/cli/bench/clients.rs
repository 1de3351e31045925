//! The benchmark's clients: observations signed before the clock starts,
//! and the two ways of submitting them, one unary Submit at a time or a
//! window of events in flight on one SubmitStream. Each records every
//! event's latency to its receipt: from when it was sent or, under
//! `--rate`, from when it was due by the schedule, so that a node falling
//! behind shows in the latencies (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use ceasefire_grpc::proto::SignedEvent;
use ceasefire_testkit::scenario::Scenario;

/// What one client saw.
#[derive(Default)]
pub struct ClientResult {
    /// Latency of every successful call, microseconds: from the send or,
    /// under `--rate`, from the scheduled send time.
    pub latencies_us: Vec<u64>,
    /// Checkpoint tree size of every receipt (one per batch).
    pub checkpoint_sizes: Vec<u64>,
    /// Every receipt's entry and when it arrived (for receipt→witnessed).
    pub receipts: Vec<(u64, Instant)>,
    /// Error message of every failed call.
    pub failures: Vec<String>,
    /// How far behind the `--rate` schedule events actually left the
    /// client (for a stream: after waiting for window credit).
    pub max_lag: Duration,
    /// Events sent more than [`LATE`] behind the schedule.
    pub late_sends: usize,
}

/// A send this far behind its scheduled time counts as late.
pub const LATE: Duration = Duration::from_millis(1);

/// When a client's events are due under `--rate`.
#[derive(Clone, Copy)]
pub struct Schedule {
    pub start: tokio::time::Instant,
    /// Between consecutive sends of all clients; `None`: as fast as possible.
    pub interval: Option<Duration>,
    pub client: usize,
    pub clients: usize,
}

impl Schedule {
    /// Waits until event `k` of this client is due; returns when it was due
    /// (`None` without `--rate`).
    async fn wait_for(&self, k: usize) -> Option<Instant> {
        let interval = self.interval?;
        let due = self.start + interval.mul_f64((k * self.clients + self.client) as f64);
        tokio::time::sleep_until(due).await;
        Some(due.into_std())
    }
}

impl ClientResult {
    /// Called as an event actually leaves the client: notes how far behind
    /// its scheduled time `due` it is, and returns the instant its latency
    /// counts from (the scheduled time under `--rate`, else now).
    fn sending(&mut self, due: Option<Instant>) -> Instant {
        let now = Instant::now();
        let Some(due) = due else {
            return now;
        };
        let lag = now.saturating_duration_since(due);
        self.max_lag = self.max_lag.max(lag);
        if lag > LATE {
            self.late_sends += 1;
        }
        due
    }
}

pub type LedgerConnection =
    ceasefire_grpc::proto::ledger_client::LedgerClient<tonic::transport::Channel>;

impl ClientResult {
    fn with_capacity(events: usize) -> ClientResult {
        ClientResult {
            latencies_us: Vec::with_capacity(events),
            checkpoint_sizes: Vec::with_capacity(events),
            receipts: Vec::with_capacity(events),
            ..ClientResult::default()
        }
    }

    /// Records one event's answer, its latency counting from `since` (see
    /// [`ClientResult::sending`]); counts a receipt in `acknowledged`.
    fn record(
        &mut self,
        since: Instant,
        answer: Result<ceasefire_grpc::proto::Receipt, String>,
        acknowledged: &AtomicU64,
    ) {
        let arrived = Instant::now();
        let latency = arrived.saturating_duration_since(since);
        match answer {
            Ok(receipt) => match receipt.checkpoint {
                Some(checkpoint) if receipt.seq < checkpoint.tree_size => {
                    self.latencies_us.push(latency.as_micros() as u64);
                    self.checkpoint_sizes.push(checkpoint.tree_size);
                    self.receipts.push((receipt.seq, arrived));
                    acknowledged.fetch_add(1, Ordering::Relaxed);
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
pub async fn unary_client(
    mut connection: LedgerConnection,
    share: Vec<SignedEvent>,
    schedule: Schedule,
    acknowledged: Arc<AtomicU64>,
) -> ClientResult {
    let mut result = ClientResult::with_capacity(share.len());
    tokio::time::sleep_until(schedule.start).await;
    for (k, event) in share.into_iter().enumerate() {
        let due = schedule.wait_for(k).await;
        let since = result.sending(due);
        let answer = connection
            .submit(event)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| ceasefire_grpc::errors::describe(&status));
        result.record(since, answer, &acknowledged);
    }
    result
}

/// One SubmitStream with up to `window` events in flight; answers come back
/// in the order sent, so each is matched with the oldest send time. Under
/// `--rate`, an event whose window credit comes late is late: its schedule
/// lag is taken once it has credit, and its latency counts from when it
/// was due.
pub async fn stream_client(
    mut connection: LedgerConnection,
    share: Vec<SignedEvent>,
    schedule: Schedule,
    window: usize,
    acknowledged: Arc<AtomicU64>,
) -> ClientResult {
    use ceasefire_grpc::proto::submit_result::Outcome;
    let mut result = ClientResult::with_capacity(share.len());
    let expected = share.len();
    let (events, outgoing) = tokio::sync::mpsc::channel::<SignedEvent>(window);
    let (sent_times, mut send_order) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let credit = Arc::new(tokio::sync::Semaphore::new(window));
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
            let due = schedule.wait_for(k).await;
            let Ok(permit) = sender_credit.acquire().await else {
                break;
            };
            permit.forget();
            let _ = sent_times.send(lag.sending(due));
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
                    .push(ceasefire_grpc::errors::describe(&status));
                break;
            }
        };
        let Some(since) = send_order.recv().await else {
            break;
        };
        credit.add_permits(1);
        result.record(
            since,
            match answer.outcome {
                Some(Outcome::Receipt(receipt)) => Ok(receipt),
                Some(Outcome::Refusal(refusal)) => {
                    Err(ceasefire_grpc::errors::describe_refusal(&refusal))
                }
                None => Err("an answer with neither receipt nor refusal".into()),
            },
            &acknowledged,
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

/// Builds and signs `count` observations by the dev monitor (on every core:
/// this happens before the clock starts).
pub fn build_events(count: usize, dev: &Scenario) -> Vec<SignedEvent> {
    let now = ceasefire_grpc::now_micros();
    let timestamp = ceasefire_core::rules::micros_timestamp;
    let minute = 60 * 1_000_000;
    (0..count)
        .into_par_iter()
        .map(|index| {
            // Spread over the inner part of the dev sector (48..49, 37..38),
            // and over the last hour; each with a random nonce, as real
            // clients make them, so the store's nonce index is written and
            // read at random places.
            let step = (index % 1000) as f64 / 1000.0;
            let ended = now - 5 * minute - (index % 3_600) as i64 * 1_000_000;
            dev.observation()
                .created_at(timestamp(now - minute))
                .observed(timestamp(ended - 15 * minute), timestamp(ended))
                .at(48.1 + 0.8 * step, 37.9 - 0.8 * step)
                .quantity((index % 7) as u32 + 1)
                .narrative("Explosions heard 2-3 km north-east of the patrol position.")
                .signed()
        })
        .collect()
}
