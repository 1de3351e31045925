//! Prometheus metrics, served as text on their own HTTP port.
//!
//! One [`Metrics`] per node, shared by the handlers (submissions by outcome),
//! the sequencer (batch sizes, sync latency, tree size), the streams
//! (subscribers), start-up (verify duration) and the gRPC port's layer
//! (latency per RPC, `crate::server::rpc_metrics`); the process's own
//! metrics (memory, CPU, file descriptors, start time) are read from
//! `/proc/self` at each scrape ([`ProcessCollector`]). The HTTP endpoint is
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `package.Service/Method`, or "unknown" for a path naming no method.
    pub method: String,
    /// The gRPC status code name ("Ok", "InvalidArgument", ...;
    /// "Cancelled" when the response ended without one).
    pub code: String,
}

/// A histogram of request durations in seconds: 100 us (a checkpoint read
/// over loopback) doubling to ~13 s (a slow disk under a full batch, or a
/// short stream); longer streams land in +Inf.
fn rpc_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
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
    /// Every call of the gRPC port by method and code: its duration.
    pub rpc_duration: Family<RpcLabels, Histogram, fn() -> Histogram>,
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
        // The process's metrics under their conventional names
        // (process_*), ours under the ledger's prefix.
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("ceasefire_ledger");
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
        let rpc_duration = Family::<RpcLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            rpc_duration_histogram,
        );
        registry.register(
            "grpc_request_duration_seconds",
            "Duration of gRPC calls by method and status code, to the end of the response",
            rpc_duration.clone(),
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
            rpc_duration,
            registry: root,
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

/// The process's own metrics, read from `/proc/self` at each scrape, under
/// the names Prometheus client libraries give them: resident memory, CPU
/// seconds, open file descriptors (and their limit), start time. Elsewhere
/// than Linux it adds nothing.
#[derive(Debug)]
struct ProcessCollector;

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let Some(process) = ProcessStats::read() else {
            return Ok(());
        };
        let gauges: [(&str, &str, Option<f64>); 4] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                Some(process.resident_bytes),
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                Some(process.open_fds),
            ),
            (
                "process_max_fds",
                "The limit on open file descriptors",
                process.max_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                Some(process.start_time_seconds),
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let cpu = ConstCounter::new(process.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        Ok(())
    }
}

/// The unit of /proc's times: USER_HZ, which the kernel fixes at 100 for
/// user space on every architecture Linux runs on (what
/// `sysconf(_SC_CLK_TCK)` answers; this crate calls no unsafe code).
#[cfg(target_os = "linux")]
const USER_HZ: f64 = 100.0;

/// One reading of the process's statistics.
struct ProcessStats {
    resident_bytes: f64,
    cpu_seconds: f64,
    open_fds: f64,
    max_fds: Option<f64>,
    start_time_seconds: f64,
}

impl ProcessStats {
    /// `None` where `/proc` is not (or not readable): nothing is reported.
    #[cfg(target_os = "linux")]
    fn read() -> Option<ProcessStats> {
        let ticks = USER_HZ;
        // proc(5): the fields after the command name, which is in
        // parentheses and may itself hold spaces and parentheses.
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        // Field 3 (state) is fields[0]: utime is field 14, stime 15,
        // starttime 22 (in ticks since boot).
        let field = |number: usize| fields.get(number - 3)?.parse::<f64>().ok();
        let cpu_seconds = (field(14)? + field(15)?) / ticks;
        // In kB, whatever the page size.
        let resident_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()?
            .lines()
            .find_map(|line| {
                let kilobytes = line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?;
                kilobytes.trim().parse::<f64>().ok()
            })?
            * 1024.0;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        let start_time_seconds = boot_time + field(22)? / ticks;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()?
            .lines()
            .find_map(|line| {
                let limits = line.strip_prefix("Max open files")?;
                limits.split_whitespace().next()?.parse::<f64>().ok()
            });
        Some(ProcessStats {
            resident_bytes,
            cpu_seconds,
            open_fds,
            max_fds,
            start_time_seconds,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn read() -> Option<ProcessStats> {
        None
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
