//! The witness in-process over real HTTP on 127.0.0.1, real temporary
//! directories and real Ed25519 keys: every refusal with its status (and the
//! state left as it was), the happy path through the client, restarts, the
//! store's lock, a log configured by vkey whose checkpoints carry extension
//! lines, concurrent forks, and the client's errors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ceasefire_core::cosignature::{open_cosigned, Cosigner};
use ceasefire_core::merkle::Hash;
use ceasefire_core::witness::{format_request, TreeHead, TrustedLog, MAX_REQUEST_BYTES};
use ceasefire_testkit::scenario::seeded_key;
use ceasefire_testkit::witness::TestLog;
use ceasefire_witness::config::{trusted_logs, LogSpec};
use ceasefire_witness::{start, AddCheckpointError, RunningWitness, WitnessClient, WitnessConfig};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const ORIGIN: &str = "example.org/witnessed-log";
const OTHER_ORIGIN: &str = "example.org/second-log";

fn cosigner() -> Cosigner {
    Cosigner::new("witness.example/w1", seeded_key(40)).unwrap()
}

/// The log the tests witness, grown to 40 leaves.
fn main_log() -> TestLog {
    let mut log = TestLog::new(ORIGIN, seeded_key(41));
    log.grow(40, "main");
    log
}

/// The same log's other branch: the same first 2 leaves, then others.
fn forked_log() -> TestLog {
    let mut log = main_log().prefix(2);
    log.grow(40, "fork");
    log
}

fn second_log() -> TestLog {
    let mut log = TestLog::new(OTHER_ORIGIN, seeded_key(42));
    log.grow(10, "second");
    log
}

fn config(data_dir: &Path, logs: Vec<TrustedLog>) -> WitnessConfig {
    WitnessConfig::new(
        cosigner(),
        "127.0.0.1:0".parse().unwrap(),
        data_dir.to_path_buf(),
        logs,
    )
}

fn both_logs() -> Vec<TrustedLog> {
    vec![
        TrustedLog::from_key(main_log().verifier()),
        TrustedLog::from_key(second_log().verifier()),
    ]
}

/// What an HTTP answer was.
#[derive(Debug)]
struct Raw {
    status: u16,
    content_type: String,
    body: String,
}

async fn raw(addr: SocketAddr, method: &str, path: &str, body: impl Into<Bytes>) -> Raw {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(body.into()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Raw {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn post(addr: SocketAddr, body: impl Into<Bytes>) -> Raw {
    raw(addr, "POST", "/add-checkpoint", body).await
}

/// Sends `old` with the proof to `new` of `log` and the checkpoint at `new`.
async fn submit(addr: SocketAddr, log: &TestLog, old: u64, new: u64) -> Raw {
    post(
        addr,
        format_request(old, &log.proof(old, new), &log.checkpoint(new)),
    )
    .await
}

/// The witness's size for `log`, asked the way a client with no state asks:
/// an old size of 1, which the witness never holds in these tests, with the
/// checkpoint at 1, answered by a 409 naming the size.
async fn witness_size(addr: SocketAddr, log: &TestLog) -> u64 {
    let answer = post(addr, format_request(1, &[], &log.checkpoint(1))).await;
    assert_eq!(answer.status, 409, "{answer:?}");
    assert_eq!(answer.content_type, "text/x.tlog.size");
    answer.body.strip_suffix('\n').unwrap().parse().unwrap()
}

/// Checks that `lines` is one cosignature by this witness on `note`.
fn assert_cosigned(note: &str, lines: &str, log: &TestLog) {
    let cosigned = ceasefire_core::cosignature::add_signature_lines(note, lines);
    let (_, by) = open_cosigned(&cosigned, &log.verifier(), &[cosigner().verifier()])
        .unwrap_or_else(|error| panic!("{error}: {lines:?}"));
    assert_eq!(by.len(), 1, "{lines:?}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(by[0].timestamp.abs_diff(now) < 60, "{by:?}");
}

#[tokio::test]
async fn every_bad_request_gets_its_status_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let witness = start(config(dir.path(), both_logs())).await.unwrap();
    let addr = witness.addr();
    let log = main_log();
    let fork = forked_log();
    let second = second_log();
    let answer = submit(addr, &log, 0, 5).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // (name, body, status, 409 size body)
    let mut stranger = TestLog::new(ORIGIN, seeded_key(99));
    stranger.grow(8, "main");
    let unknown = {
        let mut unknown = TestLog::new("example.org/unknown", seeded_key(41));
        unknown.grow(8, "main");
        unknown
    };
    let hash = ceasefire_core::key_text([5u8; 32]);
    let mut too_many = format!("old 5\n{}", format!("{hash}\n").repeat(64));
    too_many.push('\n');
    too_many.push_str(&log.checkpoint(8));
    let cases: Vec<(&str, String, u16, Option<u64>)> = vec![
        (
            "unknown origin",
            format_request(5, &unknown.proof(5, 8), &unknown.checkpoint(8)),
            404,
            None,
        ),
        (
            "signed by a key the witness does not trust for the origin",
            format_request(5, &stranger.proof(5, 8), &stranger.checkpoint(8)),
            403,
            None,
        ),
        (
            "old size not the witness's",
            format_request(3, &log.proof(3, 8), &log.checkpoint(8)),
            409,
            Some(5),
        ),
        (
            "proof of the other branch",
            format_request(5, &fork.proof(5, 8), &log.checkpoint(8)),
            422,
            None,
        ),
        (
            "a fork's checkpoint with its own proof",
            format_request(5, &fork.proof(5, 8), &fork.checkpoint(8)),
            422,
            None,
        ),
        (
            "same size, another root",
            format_request(5, &[], &fork.checkpoint(5)),
            409,
            Some(5),
        ),
        (
            "old size above the checkpoint's (a shrinking tree)",
            format_request(5, &[], &log.checkpoint(3)),
            400,
            None,
        ),
        (
            "a smaller tree than cosigned",
            format_request(3, &[], &log.checkpoint(3)),
            409,
            Some(5),
        ),
        (
            "a non-empty proof with old size 0",
            format_request(0, &[[7; 32]], &second.checkpoint(4)),
            422,
            None,
        ),
        (
            "no blank line",
            format!("old 5\n{}", log.checkpoint(8).replacen("\n\n", "\n", 1)),
            400,
            None,
        ),
        ("nothing after the old size", "old 5\n".into(), 400, None),
        (
            "no old size line",
            format!("\n{}", log.checkpoint(8)),
            400,
            None,
        ),
        (
            "old size with a leading zero",
            format!("old 05\n\n{}", log.checkpoint(8)),
            400,
            None,
        ),
        (
            "old size not decimal",
            format!("old five\n\n{}", log.checkpoint(8)),
            400,
            None,
        ),
        (
            "bad base64 proof line",
            format!("old 5\n!!not base64!!\n\n{}", log.checkpoint(8)),
            400,
            None,
        ),
        (
            "proof line of 31 bytes",
            format!(
                "old 5\n{}\n\n{}",
                ceasefire_core::key_text([1u8; 31]),
                log.checkpoint(8)
            ),
            400,
            None,
        ),
        ("64 proof lines", too_many, 400, None),
        ("not a note", "old 5\n\nhello\n".into(), 400, None),
        (
            "a note without signatures",
            format!(
                "old 5\n\n{}\n\n",
                log.checkpoint(8).split("\n\n").next().unwrap()
            ),
            400,
            None,
        ),
        ("empty body", String::new(), 400, None),
    ];
    for (name, body, status, size) in cases {
        let answer = post(addr, body).await;
        assert_eq!(answer.status, status, "{name}: {answer:?}");
        match size {
            Some(size) => {
                assert_eq!(answer.content_type, "text/x.tlog.size", "{name}");
                assert_eq!(answer.body, format!("{size}\n"), "{name}");
            }
            None => {
                assert!(answer.content_type.starts_with("text/plain"), "{name}");
                assert!(
                    answer.body.ends_with('\n') && answer.body.len() > 10,
                    "{name}: {answer:?}"
                );
            }
        }
        // Nothing moved: the main log is still at 5, the second at 0.
        assert_eq!(witness_size(addr, &log).await, 5, "after {name}");
        assert_eq!(witness_size(addr, &second).await, 0, "after {name}");
    }

    // Not UTF-8.
    let mut bytes = format_request(5, &log.proof(5, 8), &log.checkpoint(8)).into_bytes();
    let at = bytes.len() - 10;
    bytes[at] = 0xff;
    assert_eq!(post(addr, bytes).await.status, 400);
    // Over the size limit: 413, before the body is read whole.
    let huge = vec![b'a'; MAX_REQUEST_BYTES + 1];
    let answer = post(addr, huge).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("limit"), "{answer:?}");
    // Other paths and methods.
    let answer = raw(addr, "GET", "/add-checkpoint", "").await;
    assert_eq!(answer.status, 405, "{answer:?}");
    let answer = raw(addr, "PUT", "/add-checkpoint", "x").await;
    assert_eq!(answer.status, 405, "{answer:?}");
    let answer = raw(addr, "POST", "/add-checkpoint/", "x").await;
    assert_eq!(answer.status, 404, "{answer:?}");
    let answer = raw(addr, "POST", "/", "x").await;
    assert_eq!(answer.status, 404, "{answer:?}");
    let answer = raw(addr, "GET", "/checkpoint", "").await;
    assert_eq!(answer.status, 404, "{answer:?}");
    assert_eq!(witness_size(addr, &log).await, 5);
    assert_eq!(witness.latest(ORIGIN).await, Some(log.head(5)));
    assert_eq!(witness.latest(OTHER_ORIGIN).await, None);
    witness.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_chain_of_checkpoints_is_cosigned_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let witness = start(config(dir.path(), both_logs())).await.unwrap();
    let client = witness.client().unwrap();
    let log = main_log();
    let mut old = 0;
    for new in [2, 3, 4, 8, 13, 13, 16, 17, 31, 32] {
        let note = log.checkpoint(new);
        let lines = client
            .add_checkpoint(old, &log.proof(old, new), &note)
            .await
            .unwrap_or_else(|error| panic!("{old} -> {new}: {error}"));
        assert_cosigned(&note, lines.as_str(), &log);
        assert_eq!(lines.lines().count(), 1);
        old = new;
    }
    assert_eq!(witness.latest(ORIGIN).await, Some(log.head(32)));
    witness.shutdown().await.unwrap();

    // The same directory, a new witness: it goes on from 32.
    let witness = start(config(dir.path(), both_logs())).await.unwrap();
    let client = witness.client().unwrap();
    assert_eq!(witness.latest(ORIGIN).await, Some(log.head(32)));
    assert_eq!(
        client
            .add_checkpoint(13, &log.proof(13, 40), &log.checkpoint(40))
            .await,
        Err(AddCheckpointError::Conflict { witness_size: 32 })
    );
    let note = log.checkpoint(40);
    let lines = client
        .add_checkpoint(32, &log.proof(32, 40), &note)
        .await
        .unwrap();
    assert_cosigned(&note, lines.as_str(), &log);
    witness.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_witness_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let witness = start(config(dir.path(), both_logs())).await.unwrap();
    let error = start(config(dir.path(), both_logs())).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("in use by another witness process"),
        "{message}"
    );
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    witness.shutdown().await.unwrap();
    // Released by the shutdown.
    start(config(dir.path(), both_logs()))
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_non_ceasefire_log_with_extension_lines_is_witnessed() {
    // Another C2SP log: its own origin syntax, configured by its vkey only,
    // its checkpoints carrying an extension line (which the cosignature
    // covers).
    let mut log = TestLog::new("go.example.com/other-log/v2", seeded_key(50));
    log.grow(20, "other");
    let logs = trusted_logs(&[LogSpec::Vkey(log.vkey())]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let witness = start(config(dir.path(), logs)).await.unwrap();
    let client = witness.client().unwrap();
    let mut old = 0;
    for new in [6, 7, 20] {
        let note = log.checkpoint_with_extensions(new, &["timestamp 1712345678", "— not a sig"]);
        let lines = client
            .add_checkpoint(old, &log.proof(old, new), &note)
            .await
            .unwrap_or_else(|error| panic!("{old} -> {new}: {error}"));
        assert_cosigned(&note, lines.as_str(), &log);
        // Cut the extension lines off and the cosignature no longer holds.
        let stripped = log.checkpoint(new);
        let moved = ceasefire_core::cosignature::add_signature_lines(&stripped, lines.as_str());
        assert!(open_cosigned(&moved, &log.verifier(), &[cosigner().verifier()]).is_err());
        old = new;
    }
    witness.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_url_prefix_moves_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), both_logs());
    config.url_prefix = "/witness/v1".into();
    let witness = start(config).await.unwrap();
    assert!(witness.url().ends_with("/witness/v1"));
    let log = main_log();
    let answer = submit(witness.addr(), &log, 0, 3).await;
    assert_eq!(answer.status, 404, "{answer:?}");
    let lines = witness
        .client()
        .unwrap()
        .add_checkpoint(0, &[], &log.checkpoint(3))
        .await
        .unwrap();
    assert_cosigned(&log.checkpoint(3), lines.as_str(), &log);
    witness.shutdown().await.unwrap();
    let mut bad = self::config(dir.path(), both_logs());
    bad.url_prefix = "witness/".into();
    assert!(start(bad).await.is_err());
}

/// Many clients at once, half on each branch of a forked log, each pushing
/// its branch forward from whatever size the witness says: exactly one
/// branch wins past the fork point, one root per size, never a smaller tree
/// after a larger one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_forks_never_get_two_roots_for_one_size() {
    let dir = tempfile::tempdir().unwrap();
    let witness = start(config(dir.path(), both_logs())).await.unwrap();
    let branches = Arc::new([main_log(), forked_log()]);
    let mut tasks = Vec::new();
    for client_index in 0..16u64 {
        let client = witness.client().unwrap();
        let branches = Arc::clone(&branches);
        tasks.push(tokio::spawn(async move {
            let branch = &branches[(client_index % 2) as usize];
            let mut known = 0u64;
            let mut cosigned: Vec<(u64, Hash)> = Vec::new();
            for step in 0..30u64 {
                let new = (known + 1 + (client_index + step) % 3).min(40);
                match client
                    .add_checkpoint(known, &branch.proof(known, new), &branch.checkpoint(new))
                    .await
                {
                    Ok(lines) => {
                        assert_cosigned(&branch.checkpoint(new), lines.as_str(), branch);
                        cosigned.push((new, branch.head(new).root));
                        known = new;
                    }
                    Err(AddCheckpointError::Conflict { witness_size }) => {
                        known = witness_size.min(40);
                    }
                    // The witness holds the other branch.
                    Err(AddCheckpointError::Status { status: 422, .. }) => {}
                    Err(error) => panic!("client {client_index}: {error}"),
                }
            }
            cosigned
        }));
    }
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut count = 0;
    for task in tasks {
        for (size, root) in task.await.unwrap() {
            count += 1;
            let first = *roots.entry(size).or_insert(root);
            assert_eq!(first, root, "two roots cosigned for size {size}");
        }
    }
    assert!(count > 10, "only {count} cosignatures");
    // Past the fork point every cosigned root is from one branch.
    let winner: Vec<usize> = roots
        .iter()
        .filter(|(size, _)| **size > 2)
        .map(|(size, root)| {
            branches
                .iter()
                .position(|branch| branch.head(*size).root == *root)
                .unwrap()
        })
        .collect();
    assert!(
        winner.windows(2).all(|pair| pair[0] == pair[1]),
        "{winner:?}"
    );
    let latest = witness.latest(ORIGIN).await.unwrap();
    assert_eq!(latest.size, *roots.keys().last().unwrap());
    witness.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_client_tells_refusals_conflicts_and_silence_apart() {
    let dir = tempfile::tempdir().unwrap();
    let witness = start(config(dir.path(), both_logs())).await.unwrap();
    let client = witness.client().unwrap();
    let log = main_log();
    client
        .add_checkpoint(0, &[], &log.checkpoint(4))
        .await
        .unwrap();
    assert_eq!(
        client.add_checkpoint(0, &[], &log.checkpoint(6)).await,
        Err(AddCheckpointError::Conflict { witness_size: 4 })
    );
    match client
        .add_checkpoint(4, &[[1; 32]], &log.checkpoint(6))
        .await
    {
        Err(AddCheckpointError::Status { status: 422, body }) => {
            assert!(body.contains("does not verify"), "{body}")
        }
        other => panic!("{other:?}"),
    }
    let unknown = TestLog::new("nobody.example", seeded_key(7));
    assert!(matches!(
        client.add_checkpoint(0, &[], &unknown.checkpoint(0)).await,
        Err(AddCheckpointError::Status { status: 404, .. })
    ));
    let addr = witness.addr();
    witness.shutdown().await.unwrap();

    // Nobody listens any more.
    match client.add_checkpoint(4, &[], &log.checkpoint(4)).await {
        Err(AddCheckpointError::Transport { url, message }) => {
            assert!(url.contains(&addr.to_string()), "{url}");
            assert!(!message.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // Someone listens and never answers: a timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let client = WitnessClient::new(&format!("http://{silent_addr}"))
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    assert!(matches!(
        client.add_checkpoint(0, &[], &log.checkpoint(4)).await,
        Err(AddCheckpointError::Timeout { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    held.abort();
}

#[tokio::test]
async fn keep_alive_connections_do_not_hold_up_a_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let witness: RunningWitness = start(config(dir.path(), both_logs())).await.unwrap();
    let client = witness.client().unwrap();
    let log = main_log();
    client
        .add_checkpoint(0, &[], &log.checkpoint(4))
        .await
        .unwrap();
    // The client keeps its connection open; the shutdown must not wait it out.
    let started = std::time::Instant::now();
    witness.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        start(config(dir.path(), both_logs()))
            .await
            .unwrap()
            .latest(ORIGIN)
            .await,
        Some(TreeHead {
            size: 4,
            root: log.head(4).root
        })
    );
}

/// A record that cannot be written: the request is answered 503, no
/// cosignature is given, and the log stays refused (its state on disk is no
/// longer known) until a restart; the other logs go on.
#[tokio::test]
async fn a_failed_record_stops_that_log_until_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let witness = start(config(dir.path(), both_logs())).await.unwrap();
    let addr = witness.addr();
    let (log, second) = (main_log(), second_log());
    assert_eq!(submit(addr, &log, 0, 3).await.status, 200);
    assert_eq!(submit(addr, &second, 0, 4).await.status, 200);
    // Pull the directory of records from under the witness.
    std::fs::remove_dir_all(dir.path().join(ceasefire_witness::store::LOGS_DIR)).unwrap();
    let answer = submit(addr, &log, 3, 6).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("cannot record"), "{answer:?}");
    assert!(answer.body.contains("restarted"), "{answer:?}");
    // Even what needs no write is refused for that log now...
    assert_eq!(submit(addr, &log, 3, 3).await.status, 503);
    // ...while the other log's recorded checkpoint is still cosigned.
    assert_eq!(submit(addr, &second, 4, 4).await.status, 200);
    witness.shutdown().await.unwrap();
}
