//! Prometheus metrics, served as text on their own HTTP port.
//!
//! One [`Metrics`] per node, shared by the handlers (submissions by outcome),
//! the sequencer (batch sizes, sync latency, tree size), the streams
//! (subscribers) and start-up (verify duration). The HTTP endpoint is
//! deliberately tiny: `GET /metrics` and nothing else, so it adds no surface
//! beyond reading counters.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubmissionLabels {
    /// "accepted" or "refused".
    pub outcome: String,
    /// The gRPC status code name ("Ok", "InvalidArgument", ...).
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WitnessLabels {
    /// The witness's name in the policy.
    pub witness: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WitnessRequestLabels {
    pub witness: String,
    /// "cosigned" or "failed".
    pub outcome: String,
}

#[derive(Debug)]
pub struct Metrics {
    pub submissions: Family<SubmissionLabels, Counter>,
    pub batch_entries: Histogram,
    pub sync_seconds: Histogram,
    pub tree_size: Gauge,
    pub subscribers: Gauge,
    pub verify_on_start_seconds: Gauge<f64, AtomicU64>,
    /// The size of the latest checkpoint a quorum of witnesses cosigned.
    pub witnessed_tree_size: Gauge,
    /// The largest size each witness cosigned.
    pub witness_cosigned_size: Family<WitnessLabels, Gauge>,
    /// Requests to each witness by outcome.
    pub witness_requests: Family<WitnessRequestLabels, Counter>,
    /// The size of the checkpoint the tiles mirror last published
    /// (`serve --tiles-dir`): its lag behind `tree_size` is the mirror's.
    pub tiles_published_tree_size: Gauge,
    /// Publications of the tiles mirror that failed (each is retried).
    pub tiles_publish_failures: Counter,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let submissions = Family::<SubmissionLabels, Counter>::default();
        // 1 to 4096 entries: the range of max_batch.
        let batch_entries = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        // 50 us to ~100 ms: a virtual disk syncs in ~0.2 ms, a physical one slower.
        let sync_seconds = Histogram::new(exponential_buckets(0.00005, 2.0, 12));
        let tree_size = Gauge::default();
        let subscribers = Gauge::default();
        let verify_on_start_seconds = Gauge::<f64, AtomicU64>::default();
        let mut registry = Registry::with_prefix("ceasefire_ledger");
        registry.register(
            "submissions",
            "Submit calls by outcome and gRPC status code (the bootstrap entries included)",
            submissions.clone(),
        );
        registry.register(
            "batch_entries",
            "Entries committed per batch (one sync each)",
            batch_entries.clone(),
        );
        registry.register(
            "sync_seconds",
            "Time to make a batch durable (flush + fdatasync)",
            sync_seconds.clone(),
        );
        registry.register("tree_size", "Entries in the log", tree_size.clone());
        registry.register(
            "subscribers",
            "Open compliance subscriptions",
            subscribers.clone(),
        );
        registry.register(
            "verify_on_start_seconds",
            "Time the start-up store verification took",
            verify_on_start_seconds.clone(),
        );
        let witnessed_tree_size = Gauge::default();
        let witness_cosigned_size = Family::<WitnessLabels, Gauge>::default();
        let witness_requests = Family::<WitnessRequestLabels, Counter>::default();
        registry.register(
            "witnessed_tree_size",
            "Size of the latest checkpoint a quorum of the policy's witnesses cosigned",
            witnessed_tree_size.clone(),
        );
        registry.register(
            "witness_cosigned_size",
            "Largest tree size each witness has cosigned for this ledger",
            witness_cosigned_size.clone(),
        );
        registry.register(
            "witness_requests",
            "add-checkpoint requests to each witness by outcome",
            witness_requests.clone(),
        );
        let tiles_published_tree_size = Gauge::default();
        let tiles_publish_failures = Counter::default();
        registry.register(
            "tiles_published_tree_size",
            "Size of the checkpoint the tiles mirror (--tiles-dir) last published",
            tiles_published_tree_size.clone(),
        );
        registry.register(
            "tiles_publish_failures",
            "Failed publications of the tiles mirror (each is retried)",
            tiles_publish_failures.clone(),
        );
        Arc::new(Metrics {
            submissions,
            batch_entries,
            sync_seconds,
            tree_size,
            subscribers,
            verify_on_start_seconds,
            witnessed_tree_size,
            witness_cosigned_size,
            witness_requests,
            tiles_published_tree_size,
            tiles_publish_failures,
            registry,
        })
    }

    pub fn count_submission(&self, code: tonic::Code) {
        let outcome = if code == tonic::Code::Ok {
            "accepted"
        } else {
            "refused"
        };
        self.submissions
            .get_or_create(&SubmissionLabels {
                outcome: outcome.into(),
                code: format!("{code:?}"),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Largest request head the metrics endpoint reads: a GET line and headers.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// How long a metrics client may take to send its request.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let mut socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(error) => {
                // Out of file descriptors, typically: wait instead of spinning.
                tracing::warn!(%error, "metrics endpoint cannot accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, async move {
            let mut request = Vec::with_capacity(1024);
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                match socket.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => request.extend_from_slice(&buffer[..read]),
                }
                if request.len() > MAX_REQUEST_BYTES {
                    return;
                }
            }
            let line = request
                .split(|byte| *byte == b'\r')
                .next()
                .unwrap_or_default();
            let (status, content_type, body) = if line.starts_with(b"GET /metrics ") {
                (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics.render(),
                )
            } else {
                (
                    "404 Not Found",
                    "text/plain",
                    "only GET /metrics is served\n".to_string(),
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
            })
            .await;
        });
    }
}
