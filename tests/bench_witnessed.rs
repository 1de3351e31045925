//! `bench --witnesses`: the witnessed benchmark runs end to end at a tiny
//! size (a real `serve --dev` node and three real `witness serve`
//! processes, children of the bench, on loopback), and refuses bad witness
//! flags with one line before starting anything. Its figures are printed,
//! never asserted: what is checked is that every receipt was covered by a
//! witnessed checkpoint and the report says so.

use std::time::Duration;

use ceasefire_testkit::harness::{command, last_line, run_bounded};

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// A hang guard for a debug build on two shared cores, not a speed bound.
const RUN_BOUND: Duration = Duration::from_secs(300);

#[test]
fn a_tiny_witnessed_run_covers_every_receipt() {
    let scratch = tempfile::tempdir().unwrap();
    let output = run_bounded(
        command(
            BINARY,
            &[
                &"bench",
                &"--witnesses",
                &"3",
                &"--events",
                &"60",
                &"--clients",
                &"2",
                &"--stream",
                &"--rate",
                &"200",
                &"--json",
            ],
        ),
        scratch.path(),
        RUN_BOUND,
    );
    assert!(
        output.status.success(),
        "{}\n{}",
        output.stdout,
        output.stderr
    );
    assert!(output.stdout.contains("quorum 2 of 3"), "{}", output.stdout);
    assert!(
        output.stdout.contains("to witnessed (ms)"),
        "{}",
        output.stdout
    );
    let json: serde_json::Value = serde_json::from_str(last_line(&output.stdout)).unwrap();
    assert_eq!(json["ok"], 60, "{json}");
    let witnessed = &json["witnessed"];
    assert_eq!(witnessed["witnesses"], 3, "{json}");
    assert_eq!(witnessed["quorum"], 2, "{json}");
    assert_eq!(witnessed["receipts_witnessed"], 60, "{json}");
    assert_eq!(witnessed["receipts_not_witnessed"], 0, "{json}");
    assert!(
        witnessed["witnessed_checkpoints"].as_u64().unwrap() >= 1,
        "{json}"
    );
    for figure in ["p50", "p99", "max"] {
        assert!(
            witnessed["receipt_to_witnessed_ms"][figure].is_number(),
            "{json}"
        );
    }
}

#[test]
fn bad_witness_flags_are_refused_with_one_line() {
    let scratch = tempfile::tempdir().unwrap();
    let bench = |args: &[&str]| {
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"bench"];
        all.extend(args.iter().map(|arg| arg as &dyn AsRef<std::ffi::OsStr>));
        run_bounded(command(BINARY, &all), scratch.path(), RUN_BOUND)
    };
    for (args, message) in [
        (
            &["--witnesses", "0"][..],
            "error: --witnesses must be at least 1",
        ),
        (
            &["--witnesses", "3", "--witness-quorum", "4"],
            "error: --witness-quorum must be between 1 and --witnesses (3), got 4",
        ),
        (
            &["--witnesses", "3", "--witness-quorum", "0"],
            "error: --witness-quorum must be between 1 and --witnesses (3), got 0",
        ),
    ] {
        let output = bench(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {}", output.stderr);
        assert_eq!(output.stderr.trim(), message, "{args:?}");
    }
    // Clap's usage errors (exit 2): a quorum with no witnesses, and
    // witnesses beside --abuse, which runs its own fixed measurement.
    for (args, needle) in [
        (
            &["--witness-quorum", "2"][..],
            "the following required arguments were not provided",
        ),
        (
            &["--abuse", "--witnesses", "3"],
            "'--abuse' cannot be used with",
        ),
    ] {
        let output = bench(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", output.stderr);
        assert!(
            output.stderr.contains(needle),
            "{args:?}: {}",
            output.stderr
        );
    }
}
