//! Checking before submitting, and examples that hold on any date.
//!
//! - `CheckSubmission` over gRPC against a real node: an event Submit would
//!   accept is answered without appending (the tree size unchanged) and
//!   without using its nonce (Submit of the same event after it is
//!   accepted, and a check after that names the entry); an event Submit
//!   would refuse is refused with exactly Submit's status (code, message,
//!   ErrorInfo reason and metadata) and the log unchanged: a bad
//!   signature, an unknown author, a rule violation, an oversized narrative,
//!   a payload over the limit, a reused nonce, a time in the future; a
//!   message over the gRPC limit is the framework's OUT_OF_RANGE for both.
//! - `Compliance/GetCommitment` (where the window warning reads a
//!   commitment's terms): the current definition, a redefinition once
//!   durable, after a restart; an unknown commitment is NOT_FOUND.
//! - `submit --dry-run` (the binary against `serve --dev`): one line per
//!   event, exit 1 if any would be refused, nothing appended; a later
//!   submit of the same file counts once; bad flag combinations.
//! - The README's quick start run as written: the example observation
//!   (times relative to now) shows in `status`; an observation out of its
//!   commitment's window is accepted with a one-line warning naming the
//!   commitment and its window; a malformed relative time is one line.

use std::path::Path;
use std::time::Duration;

use ceasefire_grpc::errors;
use ceasefire_grpc::proto::{
    event::Body, DefineCommitment, GetCommitmentRequest, SignedEvent, SubmissionCheck,
};
use ceasefire_testkit::fixture::TestNode;
use ceasefire_testkit::harness::{command, run_bounded, tree_size, Output, Serve};
use ceasefire_testkit::scenario::{BOOTSTRAP_ENTRIES, DEV_COMMITMENT, DEV_SIGNATORY};
use prost::Message;
use tonic::Status;
use tonic_types::StatusExt;

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/dev/observation.json");

/// Generous bounds: these wait for processes, never time anything.
const START_BOUND: Duration = Duration::from_secs(60);
const RUN_BOUND: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// CheckSubmission over gRPC

/// What a refusal says: code, message, ErrorInfo reason and metadata.
fn refusal(status: &Status) -> (tonic::Code, String, String, Vec<(String, String)>) {
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    let mut metadata: Vec<_> = info.metadata.clone().into_iter().collect();
    metadata.sort();
    (
        status.code(),
        status.message().to_string(),
        info.reason.clone(),
        metadata,
    )
}

#[tokio::test]
async fn an_accepted_check_appends_nothing_and_leaves_the_nonce_unused() {
    let node = TestNode::start().await;
    let mut client = node.client.clone();
    let event = node.signed_observation("checked before it is sent");

    let check = client
        .check_submission(event.clone())
        .await
        .expect("the check refused an event Submit accepts")
        .into_inner();
    assert_eq!(
        check,
        SubmissionCheck {
            checked_at_size: BOOTSTRAP_ENTRIES,
            existing_seq: None
        }
    );
    // Checked again: the same answer, nothing was kept of the first check.
    let again = client.check_submission(event.clone()).await.unwrap();
    assert_eq!(again.into_inner(), check);
    assert_eq!(node.checkpoint().await.tree_size, BOOTSTRAP_ENTRIES);
    assert_eq!(node.read_log().await.len() as u64, BOOTSTRAP_ENTRIES);

    // The nonce is unused: Submit appends it.
    let receipt = client.submit(event.clone()).await.unwrap().into_inner();
    assert_eq!(receipt.seq, BOOTSTRAP_ENTRIES);
    node.check_receipt(&receipt, &event);
    // Now it is in the log: a check names its entry, and appends nothing.
    let existing = client.check_submission(event).await.unwrap().into_inner();
    assert_eq!(
        existing,
        SubmissionCheck {
            checked_at_size: BOOTSTRAP_ENTRIES + 1,
            existing_seq: Some(BOOTSTRAP_ENTRIES)
        }
    );
    assert_eq!(node.checkpoint().await.tree_size, BOOTSTRAP_ENTRIES + 1);
    node.shutdown().await;
}

#[tokio::test]
async fn a_refused_check_answers_what_submit_answers() {
    let node = TestNode::start().await;
    let mut client = node.client.clone();
    let scenario = &node.scenario;

    // One accepted observation, whose nonce the replay below reuses.
    let first = node.signed_observation("the first report");
    client.submit(first.clone()).await.unwrap();
    let first_nonce = ceasefire_grpc::proto::Event::decode(first.payload.as_slice())
        .unwrap()
        .nonce;

    let mut bad_signature = node.signed_observation("a forged signature");
    bad_signature.signatures[0].signature[0] ^= 1;
    // Authored by a party the ledger does not know (signed by a key it does).
    let mut stranger = scenario.observation().event();
    stranger.author = "no-such-mission".into();
    let unknown_author = ceasefire_grpc::client::sign(&stranger, &[node.monitor()]);
    let wrong_role = scenario.signed(DEV_SIGNATORY, scenario.observation().body());
    let long_narrative = scenario.observation().narrative(&"n".repeat(4097)).signed();
    let oversized_payload = SignedEvent {
        payload: vec![0; 40_000],
        signatures: first.signatures.clone(),
    };
    let reused_nonce = scenario
        .observation()
        .narrative("another report under the first one's nonce")
        .nonce(&first_nonce)
        .signed();
    let in_future = scenario
        .observation()
        .created_at(prost_types::Timestamp {
            seconds: 4_000_000_000,
            nanos: 0,
        })
        .signed();

    let cases = [
        ("a bad signature", bad_signature, "SIGNATURE_INVALID"),
        ("an unknown author", unknown_author, "AUTHOR_NOT_REGISTERED"),
        ("a signatory's observation", wrong_role, "WRONG_ROLE"),
        (
            "a narrative over 4096 bytes",
            long_narrative,
            "FIELD_OUT_OF_BOUNDS",
        ),
        (
            "a payload over the limit",
            oversized_payload,
            "PAYLOAD_TOO_LARGE",
        ),
        ("a reused nonce", reused_nonce, "NONCE_REUSED"),
        ("a time in the future", in_future, "TIME_IN_FUTURE"),
    ];
    for (what, event, reason) in cases {
        let size_before = node.checkpoint().await.tree_size;
        let checked = client
            .check_submission(event.clone())
            .await
            .expect_err(what);
        assert_eq!(
            node.checkpoint().await.tree_size,
            size_before,
            "{what}: a refused check changed the log"
        );
        let submitted = client.submit(event).await.expect_err(what);
        assert_eq!(refusal(&checked).2, reason, "{what}: {checked:?}");
        // A clock refusal's message says how far ahead the time is, which
        // moves with the clock between the two calls: its numbers aside.
        let clock_aside = |status: &Status| {
            let (code, message, reason, metadata) = refusal(status);
            let message = if reason == "TIME_IN_FUTURE" {
                message.replace(|c: char| c.is_ascii_digit(), "")
            } else {
                message
            };
            (code, message, reason, metadata)
        };
        assert_eq!(
            clock_aside(&checked),
            clock_aside(&submitted),
            "{what}: the check's refusal is not Submit's"
        );
        assert_eq!(errors::reason(&checked), errors::reason(&submitted));
    }
    // Over the gRPC message limit: the framework's refusal, before any
    // handler, for both calls alike.
    let oversized_message = SignedEvent {
        payload: vec![0; 70_000],
        signatures: first.signatures.clone(),
    };
    let checked = client
        .check_submission(oversized_message.clone())
        .await
        .unwrap_err();
    let submitted = client.submit(oversized_message).await.unwrap_err();
    assert_eq!(checked.code(), tonic::Code::OutOfRange, "{checked:?}");
    assert_eq!(checked.code(), submitted.code());
    assert_eq!(node.checkpoint().await.tree_size, BOOTSTRAP_ENTRIES + 1);
    node.shutdown().await;
}

#[tokio::test]
async fn get_commitment_answers_the_current_definition() {
    let node = TestNode::start().await;
    let mut compliance = node.compliance().await;
    let ask = |commitment_id: &str| GetCommitmentRequest {
        commitment_id: commitment_id.into(),
    };
    let defined = node.scenario.commitment(DEV_COMMITMENT).clone();
    let Body::DefineCommitment(expected) = defined.body() else {
        unreachable!()
    };
    let answer = compliance
        .get_commitment(ask(DEV_COMMITMENT))
        .await
        .unwrap()
        .into_inner();
    let micros = |definition: &DefineCommitment| {
        ceasefire_core::rules::timestamp_micros("effective_from", &definition.effective_from)
            .unwrap()
    };
    let definition = answer.definition.unwrap();
    assert_eq!(micros(&definition), micros(&expected));
    assert_eq!(
        DefineCommitment {
            effective_from: None,
            ..definition
        },
        DefineCommitment {
            effective_from: None,
            ..expected.clone()
        }
    );
    assert_eq!(answer.version.unwrap().as_of_seq, BOOTSTRAP_ENTRIES - 1);

    // Redefined: the new terms, once the redefinition is durable.
    let redefined = defined.with(|commitment| {
        commitment.version = 2;
        commitment.window_seconds = 3600;
    });
    node.client
        .clone()
        .submit(node.scenario.govern(redefined.body()))
        .await
        .unwrap();
    let answer = compliance
        .get_commitment(ask(DEV_COMMITMENT))
        .await
        .unwrap()
        .into_inner();
    let definition = answer.definition.unwrap();
    assert_eq!((definition.version, definition.window_seconds), (2, 3600));
    assert_eq!(answer.version.unwrap().as_of_seq, BOOTSTRAP_ENTRIES);

    let unknown = compliance
        .get_commitment(ask("no-such-commitment"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert_eq!(refusal(&unknown).2, "PAIR_NOT_FOUND");
    // And across a restart, from the recovered state.
    let node = node.restart().await;
    let mut compliance = node.compliance().await;
    let answer = compliance
        .get_commitment(ask(DEV_COMMITMENT))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.definition.unwrap().window_seconds, 3600);
    node.shutdown().await;
}

// ---------------------------------------------------------------------------
// The binary

/// `serve --dev` on a fresh data directory under `work`.
async fn serve_dev(work: &Path) -> (Serve, String) {
    let data = work.join("ceasefire-data");
    let mut serve = Serve::spawn(BINARY, &data, &["--dev"], work.join("serve.stderr")).unwrap();
    serve.wait_ready(START_BOUND).await.unwrap();
    let url = serve.url.clone();
    (serve, url)
}

fn key(work: &Path, name: &str) -> std::path::PathBuf {
    work.join("ceasefire-data").join("dev-keys").join(name)
}

/// `ARGS --server URL`, run to its end.
fn run(url: &str, args: &[&dyn AsRef<std::ffi::OsStr>], work: &Path) -> Output {
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = args.to_vec();
    all.extend_from_slice(&[&"--server", &url]);
    run_bounded(command(BINARY, &all), work, RUN_BOUND)
}

fn receipt_seq(output: &Output) -> u64 {
    assert!(output.status.success(), "submit failed: {}", output.stderr);
    let receipt: serde_json::Value =
        serde_json::from_str(output.stdout.lines().next().unwrap()).unwrap();
    receipt["seq"].as_str().unwrap().parse().unwrap()
}

/// The warnings `submit` printed.
fn warnings(output: &Output) -> Vec<&str> {
    output
        .stderr
        .lines()
        .filter(|line| line.starts_with("warning: "))
        .collect()
}

/// An observation of the development commitment with these times.
fn observation(from: &str, until: &str, narrative: &str) -> String {
    serde_json::json!({"observation": {
        "observedFrom": from,
        "observedUntil": until,
        "location": {"point": {"lat": 48.51, "lon": 37.62}, "accuracyM": 250},
        "commitmentId": "dev-ceasefire",
        "finding": "FINDING_COMPLIANCE",
        "category": "CATEGORY_ROUTINE_PATROL",
        "narrative": narrative,
    }})
    .to_string()
}

#[tokio::test]
async fn the_readme_quick_start_shows_the_observation_in_status() {
    let work = tempfile::tempdir().unwrap();
    let (_serve, url) = serve_dev(work.path()).await;
    let monitor = key(work.path(), "monitor.key");
    let signatory = key(work.path(), "signatory.key");

    // As the README writes it: submit, the same again, a signatory's.
    let first = run(
        &url,
        &[&"submit", &"--key", &monitor, &EXAMPLE],
        work.path(),
    );
    assert_eq!(receipt_seq(&first), BOOTSTRAP_ENTRIES);
    assert!(warnings(&first).is_empty(), "{}", first.stderr);
    // A second later its relative times resolve to other instants (a day
    // later, to another day): still the same report, the same seq.
    std::thread::sleep(Duration::from_millis(1100));
    let again = run(
        &url,
        &[&"submit", &"--key", &monitor, &EXAMPLE],
        work.path(),
    );
    assert_eq!(
        receipt_seq(&again),
        BOOTSTRAP_ENTRIES,
        "the same file counts once"
    );
    let refused = run(
        &url,
        &[&"submit", &"--key", &signatory, &EXAMPLE],
        work.path(),
    );
    assert!(!refused.status.success());
    assert!(
        refused
            .last_stderr_line()
            .starts_with("error: event 1 refused: PermissionDenied WRONG_ROLE: "),
        "{}",
        refused.stderr
    );

    // The observation counts: the sector is no longer unobserved.
    let status = run(&url, &[&"status"], work.path());
    assert!(status.status.success(), "{}", status.stderr);
    let sector = status
        .stdout
        .lines()
        .find(|line| line.starts_with("dev-sector"))
        .unwrap_or_else(|| panic!("no dev-sector row:\n{}", status.stdout));
    assert!(
        sector.contains("VIOLATION_REPORTED"),
        "the example observation does not show in status:\n{}",
        status.stdout
    );
    assert_eq!(tree_size(&url).await.unwrap(), BOOTSTRAP_ENTRIES + 1);
}

#[tokio::test]
async fn submit_dry_run_appends_nothing_and_the_submit_after_it_counts_once() {
    let work = tempfile::tempdir().unwrap();
    let (_serve, url) = serve_dev(work.path()).await;
    let monitor = key(work.path(), "monitor.key");
    let signatory = key(work.path(), "signatory.key");

    let checked = run(
        &url,
        &[&"submit", &"--dry-run", &"--key", &monitor, &EXAMPLE],
        work.path(),
    );
    assert!(checked.status.success(), "{}", checked.stderr);
    assert_eq!(checked.stdout, "event 1 would be accepted\n");
    assert_eq!(tree_size(&url).await.unwrap(), BOOTSTRAP_ENTRIES);

    // The dry run used no nonce: the submission after it is appended, once.
    let submitted = run(
        &url,
        &[&"submit", &"--key", &monitor, &EXAMPLE],
        work.path(),
    );
    assert_eq!(receipt_seq(&submitted), BOOTSTRAP_ENTRIES);
    let after = run(
        &url,
        &[&"submit", &"--dry-run", &"--key", &monitor, &EXAMPLE],
        work.path(),
    );
    assert!(after.status.success(), "{}", after.stderr);
    assert!(
        after.stdout.starts_with(&format!(
            "event 1 would be accepted: it is already in the ledger as seq {BOOTSTRAP_ENTRIES}"
        )),
        "{}",
        after.stdout
    );

    // A refusal: its code, reason and message; exit 1; nothing appended.
    let refused = run(
        &url,
        &[&"submit", &"--dry-run", &"--key", &signatory, &EXAMPLE],
        work.path(),
    );
    assert_eq!(refused.status.code(), Some(1), "{}", refused.stderr);
    assert!(
        refused
            .stdout
            .starts_with("event 1 would be refused: PermissionDenied WRONG_ROLE: "),
        "{}",
        refused.stdout
    );
    assert_eq!(
        refused.last_stderr_line(),
        "error: 1 of 1 events would be refused (dry run: nothing was submitted)"
    );

    // NDJSON: every event checked, each on its line, the good one not sent.
    let batch = work.path().join("batch.ndjson");
    let long = "n".repeat(4097);
    std::fs::write(
        &batch,
        [
            observation("now-30m", "now-10m", "a fine report"),
            observation("now-30m", "now-10m", &long),
        ]
        .join("\n"),
    )
    .unwrap();
    let mixed = run(
        &url,
        &[&"submit", &"--dry-run", &"--key", &monitor, &batch],
        work.path(),
    );
    assert_eq!(mixed.status.code(), Some(1));
    let lines: Vec<&str> = mixed.stdout.lines().collect();
    assert_eq!(lines[0], "event 1 would be accepted", "{}", mixed.stdout);
    assert!(
        lines[1].starts_with("event 2 would be refused: InvalidArgument FIELD_OUT_OF_BOUNDS: "),
        "{}",
        mixed.stdout
    );
    assert_eq!(tree_size(&url).await.unwrap(), BOOTSTRAP_ENTRIES + 1);
}

#[tokio::test]
async fn an_observation_outside_its_window_is_accepted_with_a_warning() {
    let work = tempfile::tempdir().unwrap();
    let (_serve, url) = serve_dev(work.path()).await;
    let monitor = key(work.path(), "monitor.key");
    // The development ceasefire's window is a day, in force for a week.
    let stale = work.path().join("stale.json");
    std::fs::write(&stale, observation("now-50h", "now-49h", "two days late")).unwrap();

    let checked = run(
        &url,
        &[&"submit", &"--dry-run", &"--key", &monitor, &stale],
        work.path(),
    );
    assert!(checked.status.success(), "{}", checked.stderr);
    assert_eq!(warnings(&checked).len(), 1, "{}", checked.stderr);

    let submitted = run(&url, &[&"submit", &"--key", &monitor, &stale], work.path());
    assert_eq!(receipt_seq(&submitted), BOOTSTRAP_ENTRIES);
    let warning = warnings(&submitted);
    assert_eq!(warning.len(), 1, "{}", submitted.stderr);
    assert!(
        warning[0].starts_with(&format!(
            "warning: event 1 (seq {BOOTSTRAP_ENTRIES}) was accepted, but it will not count in \
             the status of commitment dev-ceasefire: observed until "
        )) && warning[0].contains("outside its window of 86400 s"),
        "{}",
        warning[0]
    );
    // And it indeed does not count.
    let status = run(&url, &[&"status"], work.path());
    assert!(
        status
            .stdout
            .lines()
            .any(|line| line.starts_with("dev-sector") && line.contains("UNOBSERVED")),
        "{}",
        status.stdout
    );

    // Through an outbox too.
    let stale_too = work.path().join("stale-too.json");
    std::fs::write(
        &stale_too,
        observation("now-50h", "now-49h", "two days late, by the outbox"),
    )
    .unwrap();
    let outbox = work.path().join("outbox");
    let sent = run(
        &url,
        &[
            &"submit",
            &"--outbox",
            &outbox,
            &"--key",
            &monitor,
            &stale_too,
        ],
        work.path(),
    );
    assert!(sent.status.success(), "{}", sent.stderr);
    let warning = warnings(&sent);
    assert_eq!(warning.len(), 1, "{}", sent.stderr);
    assert!(
        warning[0].contains(&format!(
            "(seq {}) was accepted, but it will not count in the status of commitment \
             dev-ceasefire",
            BOOTSTRAP_ENTRIES + 1
        )),
        "{}",
        warning[0]
    );

    // Observed before the commitment was in force: the other warning.
    let early = work.path().join("early.json");
    std::fs::write(
        &early,
        observation("now-9d", "now-8d", "before the ceasefire"),
    )
    .unwrap();
    let submitted = run(&url, &[&"submit", &"--key", &monitor, &early], work.path());
    assert!(submitted.status.success(), "{}", submitted.stderr);
    let warning = warnings(&submitted);
    assert_eq!(warning.len(), 1, "{}", submitted.stderr);
    assert!(
        warning[0].contains("before the commitment is in force"),
        "{}",
        warning[0]
    );
}

#[tokio::test]
async fn bad_dry_runs_and_relative_times_are_one_line_and_change_nothing() {
    let work = tempfile::tempdir().unwrap();
    let (_serve, url) = serve_dev(work.path()).await;
    let monitor = key(work.path(), "monitor.key");

    for flags in [
        vec!["--outbox", "outbox"],
        vec!["--wait-witnessed"],
        vec!["--receipts", "receipts"],
    ] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"submit", &"--dry-run"];
        for flag in &flags {
            args.push(flag);
        }
        args.extend_from_slice(&[&"--key", &monitor, &EXAMPLE]);
        let output = run(&url, &args, work.path());
        assert_eq!(
            output.status.code(),
            Some(2),
            "{flags:?}: {}",
            output.stderr
        );
        let first = output.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: the argument '--dry-run' cannot be used with"),
            "{flags:?}: {first}"
        );
    }

    let bad = work.path().join("bad.json");
    std::fs::write(&bad, observation("now-20m", "now-5w", "weeks are no unit")).unwrap();
    let output = run(&url, &[&"submit", &"--key", &monitor, &bad], work.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        output.stderr.trim_end(),
        "error: event 1 is not a valid event: observation.observedUntil: \"now-5w\": \
         the unit must be s, m, h or d (now-15m)"
    );
    assert_eq!(tree_size(&url).await.unwrap(), BOOTSTRAP_ENTRIES);
}
