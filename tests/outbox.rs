//! Submissions that survive bad links: the binary's `submit` (with and
//! without `--outbox`) against the binary's `serve --dev` (child processes,
//! real sled data directories, real keys).
//!
//! - A report counts once: running `submit` again on the same file (or on
//!   part of a failed NDJSON file) answers the same seqs and appends nothing,
//!   even with a fresh outbox and a fresh `createdAt`.
//! - An unreachable server leaves events pending, never "refused", with a
//!   non-zero exit and one line saying how to resend; the next run sends them.
//! - A bad outbox directory is one line and a non-zero exit.
//! - The kill test: cycle after cycle, a client adds a new NDJSON file (and
//!   sometimes an old one again) to one outbox while the harness SIGKILLs
//!   the client and the server at seeded random moments and restarts the
//!   server on the same data directory and port. At the end one last run
//!   sends what is pending, and the log, read over gRPC, holds every event
//!   exactly once (counted by content), at the seq the outbox recorded.
//!
//! `CEASEFIRE_OUTBOX_CYCLES` sets the kill test's cycles (default
//! [`DEFAULT_CYCLES`], about 20 s in a debug build); `CEASEFIRE_OUTBOX_SEED`
//! replays a run's choices (the moments a kill lands also depend on timing).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ceasefire_core::leaf::Leaf;
use ceasefire_core::rules::decode_event;
use ceasefire_grpc::client::{self as grpc_client, ClientTls};
use ceasefire_grpc::proto::event::Body;
use ceasefire_testkit::fixture::get_entries;
use ceasefire_testkit::harness::{
    command, free_port, run_bounded, seed_from, tree_size, Output, Rng, Serve,
};

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// Generous bounds: these wait for processes, never time anything.
const START_BOUND: Duration = Duration::from_secs(60);
const RUN_BOUND: Duration = Duration::from_secs(120);

/// Kill-test cycles when `CEASEFIRE_OUTBOX_CYCLES` is not set.
const DEFAULT_CYCLES: u64 = 20;
/// A kill lands this long (ms) after the cycle's client started.
const KILL_AT_MS: std::ops::RangeInclusive<u64> = 0..=700;
/// A killed server stays down this long (ms) before its restart.
const DOWNTIME_MS: std::ops::RangeInclusive<u64> = 0..=600;

/// An observation of the development commitment, as a bare event without
/// header (submit fills it in), its window an hour before the test began
/// (the same for every call: the same narrative is the same report).
fn observation(narrative: &str) -> String {
    static TEST_START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let now = *TEST_START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    });
    let time = |seconds_ago: i64| prost_types::Timestamp {
        seconds: now - seconds_ago,
        nanos: 0,
    };
    serde_json::json!({"observation": {
        "observedFrom": time(7200).to_string(),
        "observedUntil": time(3600).to_string(),
        "location": {"point": {"lat": 48.51, "lon": 37.62}, "accuracyM": 250},
        "commitmentId": "dev-ceasefire",
        "finding": "FINDING_VIOLATION",
        "category": "CATEGORY_EXPLOSION",
        "quantity": 1,
        "narrative": narrative,
    }})
    .to_string()
}

/// Writes an NDJSON file of observations with these narratives.
fn write_reports(path: &Path, narratives: &[String]) {
    let lines: Vec<String> = narratives.iter().map(|text| observation(text)).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// `serve --dev` on `data`, listening on `listen`, its stderr in `work`.
async fn serve(data: &Path, listen: &str, work: &Path) -> Serve {
    let run = format!("serve-{}.stderr", free_port().unwrap());
    let mut serve = Serve::start(
        command(
            BINARY,
            &[
                &"serve",
                &"--dev",
                &"--data-dir",
                &data,
                &"--listen",
                &listen,
            ],
        ),
        format!("http://{listen}"),
        work.join(run),
    )
    .unwrap();
    serve.wait_ready(START_BOUND).await.unwrap();
    serve
}

fn monitor_key(data: &Path) -> PathBuf {
    data.join("dev-keys").join("monitor.key")
}

/// `submit --server URL ARGS`, to its end.
fn submit(url: &str, args: &[&dyn AsRef<std::ffi::OsStr>], work: &Path) -> Output {
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"submit", &"--server", &url];
    all.extend_from_slice(args);
    run_bounded(command(BINARY, &all), work, RUN_BOUND)
}

/// The seqs of the JSON receipts `submit` printed, in order.
fn receipt_seqs(output: &Output) -> Vec<u64> {
    assert!(output.status.success(), "submit failed: {}", output.stderr);
    output
        .stdout
        .lines()
        .map(|line| {
            let receipt: serde_json::Value = serde_json::from_str(line).unwrap();
            receipt["seq"].as_str().unwrap().parse().unwrap()
        })
        .collect()
}

/// The states and seqs of an outbox report (`STATE NAME [seq N] ...`).
fn outbox_lines(stdout: &str) -> Vec<(String, Option<u64>, String)> {
    stdout
        .lines()
        .filter(|line| {
            line.starts_with("accepted")
                || line.starts_with("pending")
                || line.starts_with("refused")
        })
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let seq = (words[0] == "accepted").then(|| words[3].parse().unwrap());
            let source = line[line.rfind('(').unwrap() + 1..line.len() - 1].to_string();
            (words[0].to_string(), seq, source)
        })
        .collect()
}

/// Every observation narrative in the log, with its seqs.
async fn narratives_in_log(url: &str) -> BTreeMap<String, Vec<u64>> {
    let channel = grpc_client::channel(url, &ClientTls::default())
        .await
        .unwrap();
    let mut client = grpc_client::ledger_client(channel);
    let size = tree_size(url).await.unwrap();
    let mut found: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for entry in get_entries(&mut client, 0, size).await.unwrap() {
        let leaf = Leaf::decode(&entry.leaf).unwrap();
        let event = decode_event(&leaf.payload).unwrap();
        if let Some(Body::Observation(observation)) = event.body {
            found
                .entry(observation.narrative)
                .or_default()
                .push(leaf.seq);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_submit_on_the_same_file_gives_the_same_seqs() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    let server = serve(&data, &listen, work.path()).await;
    let key = monitor_key(&data);
    let narratives: Vec<String> = (1..=3).map(|i| format!("rerun report {i}")).collect();
    let file = work.path().join("day.ndjson");
    write_reports(&file, &narratives);

    let first = receipt_seqs(&submit(&server.url, &[&"--key", &key, &file], work.path()));
    assert_eq!(first.len(), 3);
    let size = tree_size(&server.url).await.unwrap();
    // createdAt is filled in anew on every run: still the same report.
    let again = receipt_seqs(&submit(&server.url, &[&"--key", &key, &file], work.path()));
    assert_eq!(again, first);

    // Part of a failed batch sent again, with one new report.
    let partial = work.path().join("partial.ndjson");
    write_reports(
        &partial,
        &[narratives[1].clone(), "rerun report 4".to_string()],
    );
    let resent = receipt_seqs(&submit(
        &server.url,
        &[&"--key", &key, &partial],
        work.path(),
    ));
    assert_eq!(resent[0], first[1]);
    assert_eq!(resent[1], size, "the new report is appended at the end");

    // A fresh outbox signs with yet another createdAt: the same seqs.
    let outbox = work.path().join("outbox");
    let output = submit(
        &server.url,
        &[&"--outbox", &outbox, &"--key", &key, &file],
        work.path(),
    );
    assert!(output.status.success(), "{}", output.stderr);
    let seqs: Vec<u64> = outbox_lines(&output.stdout)
        .into_iter()
        .map(|(state, seq, _)| {
            assert_eq!(state, "accepted");
            seq.unwrap()
        })
        .collect();
    assert_eq!(seqs, first);
    // And again through the outbox: nothing is signed or sent twice.
    let output = submit(
        &server.url,
        &[&"--outbox", &outbox, &"--key", &key, &file],
        work.path(),
    );
    assert!(output.status.success(), "{}", output.stderr);
    assert_eq!(outbox_lines(&output.stdout).len(), 3);

    assert_eq!(tree_size(&server.url).await.unwrap(), size + 1);
    let log = narratives_in_log(&server.url).await;
    for narrative in &narratives {
        assert_eq!(log[narrative].len(), 1, "{narrative} is in the log twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_leaves_events_pending_not_refused() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    let mut server = serve(&data, &listen, work.path()).await;
    let url = server.url.clone();
    let key = monitor_key(&data);
    let outbox = work.path().join("outbox");
    // A first run while the link is up: the outbox learns its ledger.
    let first = work.path().join("first.json");
    write_reports(&first, &["while up".to_string()]);
    let output = submit(
        &url,
        &[&"--outbox", &outbox, &"--key", &key, &first],
        work.path(),
    );
    assert!(output.status.success(), "{}", output.stderr);
    server.kill().unwrap();

    let later = work.path().join("later.ndjson");
    write_reports(&later, &["while down 1".into(), "while down 2".into()]);
    let output = submit(
        &url,
        &[
            &"--outbox",
            &outbox,
            &"--retry-for",
            &"1",
            &"--key",
            &key,
            &later,
        ],
        work.path(),
    );
    assert!(!output.status.success());
    // ("Connection refused" is the socket's word; no event is.)
    assert!(
        !output.stderr.contains("event refused"),
        "{}",
        output.stderr
    );
    let states: Vec<String> = outbox_lines(&output.stdout)
        .into_iter()
        .map(|(state, _, _)| state)
        .collect();
    assert_eq!(states, ["pending", "pending"]);
    let last = output.last_stderr_line();
    assert!(
        last.contains("2 events pending in")
            && last.contains(&url)
            && last.contains("again to resend"),
        "{last}"
    );
    assert_eq!(output.stderr.trim().lines().count(), 1, "{}", output.stderr);

    // (`status --outbox DIR` reads as well as `--outbox DIR status`.)
    let status = submit(&url, &[&"status", &"--outbox", &outbox], work.path());
    assert!(status.status.success(), "{}", status.stderr);
    assert!(
        status
            .stdout
            .ends_with("2 pending, 1 accepted, 0 refused\n"),
        "{}",
        status.stdout
    );

    // Without an outbox, an unsent event is not called refused either.
    let direct = submit(&url, &[&"--key", &key, &later], work.path());
    assert!(!direct.status.success());
    assert!(
        !direct.stderr.contains("event 1 refused"),
        "{}",
        direct.stderr
    );
    assert!(direct.last_stderr_line().contains("cannot connect"));

    // The link is back: a run with no new file sends what is pending.
    let _server = serve(&data, &listen, work.path()).await;
    let output = submit(&url, &[&"--outbox", &outbox], work.path());
    assert!(output.status.success(), "{}", output.stderr);
    let lines = outbox_lines(&output.stdout);
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|(state, _, _)| state == "accepted"));
    let log = narratives_in_log(&url).await;
    for narrative in ["while up", "while down 1", "while down 2"] {
        assert_eq!(log[narrative].len(), 1, "{narrative}");
    }
}

#[test]
fn a_bad_outbox_is_one_line_and_changes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let file = dir.join("report.json");
    std::fs::write(&file, observation("never sent")).unwrap();
    let one_line = |args: &[&dyn AsRef<std::ffi::OsStr>], needle: &str| {
        let output = submit("http://127.0.0.1:9", args, dir);
        assert!(!output.status.success(), "succeeded: {}", output.stdout);
        assert_eq!(output.stderr.trim().lines().count(), 1, "{}", output.stderr);
        assert!(
            output.stderr.contains(needle),
            "{:?} lacks {needle:?}",
            output.stderr
        );
    };
    // A file is not an outbox, nor can one be made under a file.
    one_line(&[&"--outbox", &file, &file], "is not a directory");
    one_line(
        &[&"--outbox", &dir.join("report.json/outbox"), &file],
        "cannot create the outbox",
    );
    one_line(&[&"--outbox", &file, &"status"], "there is no outbox at");
    one_line(
        &[&"--outbox", &dir.join("nowhere"), &"status"],
        "there is no outbox at",
    );
    one_line(&[&"status"], "give --outbox DIR");
    // --retry-for belongs to the outbox: clap's usage error (exit 2).
    let usage = submit("http://127.0.0.1:9", &[&"--retry-for", &"5", &file], dir);
    assert_eq!(usage.status.code(), Some(2));
    assert!(usage.stderr.contains("--outbox <DIR>"), "{}", usage.stderr);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        observation("never sent")
    );
    assert!(!dir.join("nowhere").exists());
}

/// A child process killed on drop (so a failing test leaves none behind).
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_lands_exactly_once_across_client_and_server_kills() {
    let seed = seed_from("CEASEFIRE_OUTBOX_SEED");
    let cycles: u64 = std::env::var("CEASEFIRE_OUTBOX_CYCLES")
        .map(|text| text.parse().expect("CEASEFIRE_OUTBOX_CYCLES is a number"))
        .unwrap_or(DEFAULT_CYCLES);
    eprintln!("outbox kill test: seed {seed} (CEASEFIRE_OUTBOX_SEED), {cycles} cycles");
    let mut rng = Rng::new(seed);
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    let mut server = serve(&data, &listen, work.path()).await;
    let url = server.url.clone();
    let key = monitor_key(&data);
    let outbox = work.path().join("outbox");
    let mut expected: Vec<String> = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    let (mut client_kills, mut server_kills) = (0, 0);
    let mut rerun: Vec<PathBuf> = Vec::new();

    for cycle in 1..=cycles {
        let narratives: Vec<String> = (1..=rng.between(1..=4))
            .map(|index| format!("outbox cycle {cycle} report {index}"))
            .collect();
        let file = work.path().join(format!("cycle-{cycle}.ndjson"));
        write_reports(&file, &narratives);
        expected.extend(narratives);
        files.push(file.clone());
        // A killed run is run again, as a mission would (it may have died
        // before it wrote every event of its files into the outbox).
        let mut args: Vec<PathBuf> = std::mem::take(&mut rerun);
        args.push(file);
        if files.len() > 1 && rng.below(3) == 0 {
            // An old file again: its reports must not count twice.
            args.push(files[rng.below(files.len() as u64 - 1) as usize].clone());
        }
        let client_kill = (rng.below(2) == 0).then(|| rng.between(KILL_AT_MS));
        let server_kill = (rng.below(2) == 0).then(|| rng.between(KILL_AT_MS));
        let downtime = Duration::from_millis(rng.between(DOWNTIME_MS));

        let stderr = work.path().join(format!("client-{cycle}.stderr"));
        let mut client = {
            let mut command = command(
                BINARY,
                &[
                    &"submit",
                    &"--server",
                    &url,
                    &"--outbox",
                    &outbox,
                    &"--retry-for",
                    &"60",
                    &"--key",
                    &key,
                ],
            );
            command
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr).unwrap());
            Client(spawn(command))
        };
        let started = Instant::now();
        let mut events: Vec<(u64, &str)> = Vec::new();
        events.extend(client_kill.map(|at| (at, "client")));
        events.extend(server_kill.map(|at| (at, "server")));
        events.sort();
        for (at, what) in events {
            let due = started + Duration::from_millis(at);
            tokio::time::sleep(due.saturating_duration_since(Instant::now())).await;
            if what == "client" {
                let _ = client.0.kill();
                client_kills += 1;
            } else {
                server.kill().unwrap();
                server_kills += 1;
                tokio::time::sleep(downtime).await;
                server = serve(&data, &listen, work.path()).await;
            }
        }
        let status = wait_bounded(&mut client.0, RUN_BOUND);
        if client_kill.is_some() {
            rerun = args;
        } else {
            assert!(
                status.success(),
                "cycle {cycle} (seed {seed}): submit failed:\n{}",
                std::fs::read_to_string(&stderr).unwrap()
            );
        }
    }

    // One last run sends whatever a killed client left pending.
    let mut last: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--outbox", &outbox, &"--key", &key];
    last.extend(rerun.iter().map(|file| file as &dyn AsRef<std::ffi::OsStr>));
    let output = submit(&url, &last, work.path());
    assert!(output.status.success(), "seed {seed}: {}", output.stderr);
    let status = submit(&url, &[&"--outbox", &outbox, &"status"], work.path());
    assert!(status.status.success(), "{}", status.stderr);
    let lines = outbox_lines(&status.stdout);
    assert_eq!(
        lines.len(),
        expected.len(),
        "seed {seed}: {}",
        status.stdout
    );

    let log = narratives_in_log(&url).await;
    for narrative in &expected {
        let seqs = log.get(narrative).cloned().unwrap_or_default();
        assert_eq!(seqs.len(), 1, "seed {seed}: {narrative:?} at seqs {seqs:?}");
    }
    assert_eq!(
        log.keys()
            .filter(|text| text.starts_with("outbox cycle"))
            .count(),
        expected.len()
    );
    // The seq the outbox recorded is where each report is.
    for (state, seq, source) in lines {
        assert_eq!(state, "accepted", "seed {seed}: {source}");
        let (file, index) = source.split_once(" event ").unwrap();
        let cycle = file
            .rsplit("cycle-")
            .next()
            .unwrap()
            .trim_end_matches(".ndjson");
        let narrative = format!("outbox cycle {cycle} report {index}");
        assert_eq!(log[&narrative], vec![seq.unwrap()], "seed {seed}: {source}");
    }
    eprintln!(
        "outbox kill test: {} reports, {client_kills} client kills, {server_kills} server kills",
        expected.len()
    );
}

fn spawn(mut command: Command) -> Child {
    command.spawn().expect("cannot run the binary")
}

/// Waits for `child` to exit; panics past `bound`.
fn wait_bounded(child: &mut Child, bound: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "submit did not finish within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
