//! The example scenario of examples/scenario/, replayed through the CLI only
//! (the real binary, a real server process, real keys), then the resulting
//! store is checked end to end.

use std::process::Command;

use ceasefire_node::storage::Store;
use ceasefire_testkit::harness::free_port;

#[test]
fn the_example_scenario_runs_through_the_cli_and_a_revoked_key_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/scenario/replay.sh"
        ))
        .env("BIN", env!("CARGO_BIN_EXE_ceasefire-ledger"))
        .env("WORK", work.path())
        .env("PORT", free_port().unwrap().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "replay failed:\n{stderr}");

    // One receipt per accepted event: 5 zones, 4 commitments, 2 missions,
    // 12 + 10 observations, 1 revocation.
    let receipts: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(receipts.len(), 34, "{stdout}");
    let seqs: Vec<u64> = receipts
        .iter()
        .map(|receipt| receipt["seq"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs, (1..=34).collect::<Vec<u64>>());

    assert!(
        stderr.contains("PermissionDenied") && stderr.contains("was revoked at entry 34"),
        "the revoked key's report was not refused as expected:\n{stderr}"
    );

    // The day's compliance table: mission Alpha and mission Bravo both
    // reported explosions in sector 2, so the ceasefire violation there is
    // confirmed (quorum 2); in sector 1 only Bravo reported one.
    let row = |zone: &str| {
        stderr
            .lines()
            .find(|line| line.starts_with(zone))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("sector-2")[1], "VIOLATION_CONFIRMED", "{stderr}");
    assert_eq!(row("sector-1")[1], "VIOLATION_REPORTED", "{stderr}");
    assert_eq!(row("disengagement-area-1")[3], "OBSTRUCTED", "{stderr}");

    // The server has stopped; the store verifies and holds genesis + 34.
    let store = Store::open(&work.path().join("data")).unwrap();
    let head = store.verify().unwrap();
    assert_eq!(head.size, 35);
}
