//! `watch --cursor-file`: a durable consumer of compliance changes. The
//! binary's `watch` runs as a child process against a real node (in-process
//! tonic server on 127.0.0.1, real sled directory, real keys) and is killed
//! with SIGKILL.
//!
//! - Killed while idle (every change printed and the cursor file caught up),
//!   then restarted after more changes: across the two runs every change is
//!   printed exactly once, in order.
//! - Killed in the middle of a burst: at-least-once, exactly as documented.
//!   The first run printed a prefix of the change log; the cursor file never
//!   names a position past what it printed; the second run starts exactly
//!   at the cursor, so the only repeats are the first run's changes from
//!   the cursor on, and nothing is skipped.
//! - Stopped with SIGTERM in the middle of a burst: the cursor is written
//!   on the way out, and the next run repeats nothing.
//! - A damaged cursor file, or one of another ledger, is refused with one
//!   line and a non-zero exit, and left byte for byte as it was.
//!
//! The changes are made by commitments over many zones: a commitment over
//! k zones is one entry with k changes, (seq, 0) .. (seq, k - 1).

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ceasefire_grpc::proto::{StatusFilter, SubscribeRequest};
use ceasefire_ledger::outbox::LedgerRecord;
use ceasefire_ledger::watch_cursor::WatchCursor;
use ceasefire_testkit::fixture::TestNode;
use ceasefire_testkit::harness::{command, run_bounded};
use ceasefire_testkit::scenario::{seconds_ago, square, Commitment, Zone};

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// Generous bounds: they wait for processes and files, never time anything.
const WAIT_BOUND: Duration = Duration::from_secs(60);

/// A change's place in the change log.
type Key = (u64, u32);

/// A dev node with `zones` extra zones, which no commitment covers yet.
struct Ledger {
    node: TestNode,
    zone_ids: Vec<String>,
    commitments: u32,
    /// The seq of the first commitment this test defines: where the watch
    /// starts, so the change log it sees is exactly the test's.
    first_seq: Option<u64>,
    /// Every change the test's commitments made, in change-log order.
    expected: Vec<Key>,
}

impl Ledger {
    async fn start(zones: usize) -> Ledger {
        let node = TestNode::start().await;
        let mut ledger = Ledger {
            node,
            zone_ids: Vec::new(),
            commitments: 0,
            first_seq: None,
            expected: Vec::new(),
        };
        for number in 0..zones {
            let zone_id = format!("zone-{number:03}");
            // Side by side in a row of small squares, away from the dev zone.
            let zone = Zone::new(&zone_id, square(10.0, number as f64 * 0.01, 0.005));
            ledger.govern(zone.body()).await;
            ledger.zone_ids.push(zone_id);
        }
        ledger
    }

    async fn govern(&mut self, body: ceasefire_grpc::proto::event::Body) -> u64 {
        let signed = self.node.scenario.govern(body);
        self.node
            .client
            .submit(signed)
            .await
            .expect("a governance event was refused")
            .into_inner()
            .seq
    }

    /// A commitment over the first `zones` zones: `zones` changes at its seq.
    async fn commitment(&mut self, zones: usize) -> u64 {
        self.commitments += 1;
        let ids: Vec<&str> = self.zone_ids[..zones].iter().map(String::as_str).collect();
        let commitment = Commitment::new(&format!("commitment-{}", self.commitments), &ids)
            .effective_from(seconds_ago(3600));
        let seq = self.govern(commitment.body()).await;
        self.first_seq.get_or_insert(seq);
        self.expected
            .extend((0..zones as u32).map(|index| (seq, index)));
        seq
    }

    /// Checks that the server's change log from the first commitment on is
    /// `expected` (so the test's count of changes is the server's).
    async fn check_expected(&self) {
        let mut compliance = self.node.compliance().await;
        let mut stream = compliance
            .subscribe(SubscribeRequest {
                filter: Some(StatusFilter::default()),
                from_seq: self.first_seq.unwrap(),
                from_index: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let mut seen = Vec::new();
        while seen.len() < self.expected.len() {
            let change = tokio::time::timeout(WAIT_BOUND, stream.message())
                .await
                .expect("the server's stream stalled")
                .unwrap()
                .unwrap();
            seen.push((change.seq, change.index));
        }
        assert_eq!(seen, self.expected, "the server's change log");
    }

    fn url(&self) -> String {
        self.node.node.url()
    }
}

/// A running `watch --json`: its stdout read line by line by a thread.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn spawn(url: &str, cursor: &Path, from_seq: Option<u64>) -> Watch {
        let mut args: Vec<String> = vec![
            "watch".into(),
            "--json".into(),
            "--server".into(),
            url.into(),
            "--cursor-file".into(),
            cursor.display().to_string(),
        ];
        if let Some(seq) = from_seq {
            args.extend(["--from-seq".into(), seq.to_string()]);
        }
        let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|arg| arg as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        let mut child = command(BINARY, &args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run watch");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    /// The next `n` changes printed.
    fn changes(&self, n: usize) -> Vec<Key> {
        (0..n)
            .map(|_| {
                let line = self
                    .lines
                    .recv_timeout(WAIT_BOUND)
                    .expect("watch printed no change");
                key_of(&line)
            })
            .collect()
    }

    /// SIGKILL; then every change it had printed that was not read yet.
    fn kill(mut self) -> Vec<Key> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        // The reader thread ends at the pipe's end: the channel closes.
        self.lines.iter().map(|line| key_of(&line)).collect()
    }

    /// SIGTERM, as an operator stops it: it must exit 0; then every change
    /// it had printed that was not read yet.
    fn terminate(mut self) -> Vec<Key> {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "cannot send SIGTERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "watch ended with {status} on SIGTERM");
        self.lines.iter().map(|line| key_of(&line)).collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (seq, index) of a change printed as proto3 JSON (a zero index is left out).
fn key_of(line: &str) -> Key {
    let change: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON change: {line}"));
    let seq = change["seq"].as_str().unwrap().parse().unwrap();
    let index = change["index"].as_u64().unwrap_or(0) as u32;
    (seq, index)
}

/// The position a cursor file holds.
fn cursor_position(path: &Path) -> Option<Key> {
    let cursor = WatchCursor::load(path).expect("the cursor file is damaged")?;
    Some((cursor.next_seq, cursor.next_index))
}

/// Waits (bounded) until the cursor file holds `position`.
fn wait_for_cursor(path: &Path, position: Key) {
    let deadline = Instant::now() + WAIT_BOUND;
    while cursor_position(path) != Some(position) {
        assert!(
            Instant::now() < deadline,
            "the cursor file never reached {position:?} (it holds {:?})",
            cursor_position(path)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The position after `key`.
fn after(key: Key) -> Key {
    (key.0, key.1 + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_killed_while_idle_resumes_and_prints_every_change_exactly_once() {
    let mut ledger = Ledger::start(8).await;
    ledger.commitment(3).await;
    ledger.commitment(5).await;
    let scratch = tempfile::tempdir().unwrap();
    let cursor = scratch.path().join("cursor.json");

    let watch = Watch::spawn(&ledger.url(), &cursor, ledger.first_seq);
    let mut printed = tokio::task::block_in_place(|| watch.changes(8));
    // Idle: all printed, nothing more ready, so the cursor catches up.
    let last = *printed.last().unwrap();
    tokio::task::block_in_place(|| wait_for_cursor(&cursor, after(last)));
    printed.extend(tokio::task::block_in_place(|| watch.kill()));
    assert_eq!(
        printed.len(),
        8,
        "the first run printed more than it was given"
    );

    // While no one watches: two more commitments.
    ledger.commitment(4).await;
    ledger.commitment(8).await;
    ledger.check_expected().await;

    // The restart takes its position from the file (no --from-seq).
    let watch = Watch::spawn(&ledger.url(), &cursor, None);
    printed.extend(tokio::task::block_in_place(|| watch.changes(12)));
    let last = *printed.last().unwrap();
    tokio::task::block_in_place(|| wait_for_cursor(&cursor, after(last)));
    printed.extend(tokio::task::block_in_place(|| watch.kill()));
    assert_eq!(
        printed, ledger.expected,
        "across the two runs every change exactly once, in order"
    );

    // The file names this ledger.
    let saved = WatchCursor::load(&cursor).unwrap().unwrap();
    assert_eq!(
        saved.ledger.agreement_id,
        ledger.node.scenario.agreement_id()
    );
    assert_eq!(saved.ledger.origin, ledger.node.scenario.origin());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_killed_mid_burst_repeats_only_what_it_printed_after_its_cursor() {
    // 5 commitments over 40 zones: a backlog of 200 changes, read in a burst.
    let mut ledger = Ledger::start(40).await;
    for _ in 0..5 {
        ledger.commitment(40).await;
    }
    ledger.check_expected().await;
    let total = ledger.expected.len();
    let scratch = tempfile::tempdir().unwrap();
    let cursor = scratch.path().join("cursor.json");

    let watch = Watch::spawn(&ledger.url(), &cursor, ledger.first_seq);
    let mut first_run = tokio::task::block_in_place(|| watch.changes(70));
    first_run.extend(tokio::task::block_in_place(|| watch.kill()));
    // What the first run printed is the start of the change log.
    assert_eq!(first_run, ledger.expected[..first_run.len()]);
    // The cursor names the start or the place after a printed change,
    // never beyond what was printed.
    let position = cursor_position(&cursor).expect("the first run created its cursor file");
    let resume_at = if position == (ledger.first_seq.unwrap(), 0) {
        0
    } else {
        1 + first_run
            .iter()
            .position(|&key| after(key) == position)
            .unwrap_or_else(|| panic!("the cursor {position:?} is past what was printed"))
    };

    // More changes, then the restart: it starts exactly at the cursor.
    ledger.commitment(40).await;
    let total_after = ledger.expected.len();
    let watch = Watch::spawn(&ledger.url(), &cursor, None);
    let second_run = tokio::task::block_in_place(|| watch.changes(total_after - resume_at));
    let last = *second_run.last().unwrap();
    tokio::task::block_in_place(|| wait_for_cursor(&cursor, after(last)));
    let extra = tokio::task::block_in_place(|| watch.kill());
    assert!(extra.is_empty(), "the second run printed more: {extra:?}");
    assert_eq!(
        second_run,
        ledger.expected[resume_at..],
        "the second run starts at the cursor and skips nothing"
    );
    let repeated = first_run.len() - resume_at;
    // The cursor is written at least every 64 changes: a kill during that
    // write repeats the 64 just printed, and never more.
    assert!(repeated <= 64, "{repeated} repeats");
    eprintln!(
        "first run printed {} of {total}, its cursor was after {resume_at}: {repeated} repeated",
        first_run.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_stopped_with_sigterm_mid_burst_repeats_nothing() {
    let mut ledger = Ledger::start(40).await;
    for _ in 0..5 {
        ledger.commitment(40).await;
    }
    ledger.check_expected().await;
    let scratch = tempfile::tempdir().unwrap();
    let cursor = scratch.path().join("cursor.json");

    let watch = Watch::spawn(&ledger.url(), &cursor, ledger.first_seq);
    let mut printed = tokio::task::block_in_place(|| watch.changes(70));
    printed.extend(tokio::task::block_in_place(|| watch.terminate()));
    // The cursor is exactly after the last change printed.
    assert_eq!(
        cursor_position(&cursor),
        Some(after(*printed.last().unwrap())),
        "a clean stop writes the cursor"
    );

    // More changes, so the restarted watch has some to print (and is past
    // its start, where a signal is not yet caught, when it is stopped).
    ledger.commitment(40).await;
    let watch = Watch::spawn(&ledger.url(), &cursor, None);
    let rest = ledger.expected.len() - printed.len();
    printed.extend(tokio::task::block_in_place(|| watch.changes(rest)));
    printed.extend(tokio::task::block_in_place(|| watch.terminate()));
    assert_eq!(printed, ledger.expected, "every change exactly once");
}

/// `watch --cursor-file FILE` expected to refuse: one line naming `needle`,
/// a non-zero exit, and FILE unchanged.
fn assert_refused(url: &str, cursor: &Path, needle: &str, scratch: &Path) {
    let before = std::fs::read(cursor).ok();
    let output = run_bounded(
        command(
            BINARY,
            &[
                &"watch",
                &"--server",
                &url,
                &"--cursor-file",
                &cursor,
                &"--count",
                &"1",
            ],
        ),
        scratch,
        WAIT_BOUND,
    );
    assert!(
        !output.status.success(),
        "watch accepted {}",
        cursor.display()
    );
    assert_eq!(
        output.stderr.trim().lines().count(),
        1,
        "not one line: {}",
        output.stderr
    );
    assert!(
        output.stderr.contains(needle),
        "expected {needle:?} in: {}",
        output.stderr
    );
    assert_eq!(
        std::fs::read(cursor).ok(),
        before,
        "the cursor file {} was changed",
        cursor.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cursor_files_are_refused_and_left_as_they_are() {
    let mut ledger = Ledger::start(2).await;
    ledger.commitment(2).await;
    let url = ledger.url();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let file = |name: &str, content: &[u8]| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    };

    // A cursor of this ledger, as a first run writes it.
    let good = dir.join("good.json");
    let watch = Watch::spawn(&url, &good, ledger.first_seq);
    tokio::task::block_in_place(|| {
        watch.changes(2);
        wait_for_cursor(&good, (ledger.first_seq.unwrap(), 2));
        watch.kill();
    });
    let good_text = std::fs::read_to_string(&good).unwrap();

    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("empty.json", Vec::new()),
        ("garbage.json", b"\x00\x01not a cursor".to_vec()),
        (
            "torn.json",
            good_text.as_bytes()[..good_text.len() / 2].to_vec(),
        ),
        (
            "other-type.json",
            good_text
                .replace(
                    "ceasefire-ledger-watch-cursor",
                    "ceasefire-ledger-outbox-entry",
                )
                .into_bytes(),
        ),
    ];
    tokio::task::block_in_place(|| {
        for (name, content) in &damaged {
            let path = file(name, content);
            assert_refused(&url, &path, "is not a watch cursor file", dir);
        }
        // A directory where the file should be.
        let directory = dir.join("a-directory");
        std::fs::create_dir(&directory).unwrap();
        assert_refused(&url, &directory, "cannot read the cursor file", dir);
    });

    // Another agreement, and another ledger of the same agreement and origin
    // (a second dev ledger: only its operator key differs), written by a
    // real watch of that ledger.
    let saved = WatchCursor::load(&good).unwrap().unwrap();
    let other_agreement = dir.join("other-agreement.json");
    WatchCursor::new(
        LedgerRecord {
            agreement_id: "another-agreement".into(),
            ..saved.ledger.clone()
        },
        saved.next_seq,
        saved.next_index,
    )
    .save(&other_agreement)
    .unwrap();
    let mut other = Ledger::start(2).await;
    other.commitment(2).await;
    let other_ledger = dir.join("other-ledger.json");
    let watch = Watch::spawn(&other.url(), &other_ledger, other.first_seq);
    tokio::task::block_in_place(|| {
        watch.changes(2);
        wait_for_cursor(&other_ledger, (other.first_seq.unwrap(), 2));
        watch.kill();
    });
    tokio::task::block_in_place(|| {
        assert_refused(&url, &other_agreement, "\"another-agreement\"", dir);
        assert_refused(
            &url,
            &other_ledger,
            "give each ledger its own cursor file",
            dir,
        );
    });

    // A position this ledger has not reached (a cursor from its future).
    let future = dir.join("future.json");
    WatchCursor::new(saved.ledger.clone(), 1_000_000, 0)
        .save(&future)
        .unwrap();
    tokio::task::block_in_place(|| assert_refused(&url, &future, "1000000", dir));

    // A new cursor file where none can be written: refused before a change
    // is printed, and nothing is created.
    let nowhere = dir.join("no-such-directory").join("cursor.json");
    tokio::task::block_in_place(|| {
        assert_refused(&url, &nowhere, "cannot keep the watch position", dir)
    });
    assert!(!nowhere.parent().unwrap().exists());

    // The good file still works, and still says where it was.
    assert_eq!(std::fs::read_to_string(&good).unwrap(), good_text);
}
