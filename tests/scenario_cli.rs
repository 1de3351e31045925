//! The example scenario of examples/scenario/, replayed through the CLI only
//! (the real binary, a real server process, three real witness processes,
//! real keys), then the resulting store is checked end to end. The
//! signatories' 2-of-3 witness policy holds: a submission waits for its
//! witnessed checkpoint, and the closing audit names two cosigners.

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
        .env(
            "WITNESS_PORTS",
            (0..3)
                .map(|_| free_port().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(" "),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "replay failed:\n{stderr}");

    // One receipt per accepted event: 5 zones, 4 commitments, 2 missions,
    // the witness policy, 12 + 10 observations, 1 revocation; and after
    // mission Bravo's day, the witnessed checkpoint it waited for.
    let (witnessed, receipts): (Vec<serde_json::Value>, Vec<serde_json::Value>) = stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .partition(|line| line.get("witnessed").is_some());
    assert_eq!(receipts.len(), 35, "{stdout}");
    let seqs: Vec<u64> = receipts
        .iter()
        .map(|receipt| receipt["seq"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs, (1..=35).collect::<Vec<u64>>());
    let last_of_bravos_day = 34;
    assert_eq!(witnessed.len(), 1, "{stdout}");
    let witnessed = &witnessed[0]["witnessed"];
    let witnessed_size: u64 = witnessed["treeSize"].as_str().unwrap().parse().unwrap();
    assert!(witnessed_size > last_of_bravos_day, "{witnessed}");
    assert_eq!(witnessed["quorum"], "quorum signatories: 2 of 3");
    assert_eq!(
        witnessed["cosigners"].as_array().unwrap().len(),
        2,
        "{witnessed}"
    );

    assert!(
        stderr.contains("PermissionDenied") && stderr.contains("was revoked at entry 35"),
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

    // The audit at the end: the quorum of the signatories' witnesses.
    let audited = stderr
        .lines()
        .find(|line| line.trim_start().starts_with("witnessed by "))
        .unwrap_or_else(|| panic!("the audit names no cosigners:\n{stderr}"));
    assert!(
        audited.contains("(2 of 3 needed: quorum signatories)"),
        "{audited}"
    );
    let named = ["party-north", "party-south", "mediator"]
        .iter()
        .filter(|party| {
            audited
                .split(" (")
                .next()
                .unwrap()
                .contains(&format!("{party}.example/witness"))
        })
        .count();
    assert!(named >= 2, "{audited}");

    // The server has stopped; the store verifies and holds genesis + 35.
    let store = Store::open(&work.path().join("data")).unwrap();
    let head = store.verify().unwrap();
    assert_eq!(head.size, 36);
}
