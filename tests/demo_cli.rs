//! `ceasefire-ledger demo`, the newcomer's first command, run as they would:
//! it must exit 0, show the compliance table, and end with a passing audit
//! of a checkpoint the signatories' witnesses cosigned (two of three).

use ceasefire_testkit::harness::command;

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// The witnesses of examples/scenario/governance/12-witness-policy.json.
const WITNESSES: [&str; 3] = [
    "party-north.example/witness",
    "party-south.example/witness",
    "mediator.example/witness",
];

fn line_starting(text: &str, start: &str) -> String {
    text.lines()
        .find(|line| line.starts_with(start))
        .unwrap_or_else(|| panic!("no line starts with {start:?}:\n{text}"))
        .to_string()
}

/// How many of the witnesses the line names before its parenthesis.
fn cosigners_named(line: &str) -> usize {
    let named = line.split(" (").next().unwrap_or_default();
    WITNESSES.iter().filter(|w| named.contains(*w)).count()
}

#[test]
fn the_demo_runs_the_scenario_and_its_audit_says_ok() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("demo-ledger");
    let output = command(BINARY, &[&"demo", &"--data-dir", &data_dir])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("audit OK"), "{stdout}");
    // Each signatory runs a witness; two of the three cosign the checkpoint
    // the demo waits for, and the audit names them.
    for witness in WITNESSES {
        assert!(
            stdout.contains(&format!("runs {witness} on http://127.0.0.1:")),
            "{stdout}"
        );
    }
    let witnessed = line_starting(&stdout, "checkpoint of ");
    assert!(
        witnessed.ends_with("(quorum signatories: 2 of 3)"),
        "{stdout}"
    );
    assert_eq!(cosigners_named(&witnessed), 2, "{witnessed}");
    let audited = line_starting(&stdout, "audit: witnessed by ");
    assert!(
        audited.contains("(2 of 3 needed: quorum signatories)"),
        "{stdout}"
    );
    assert!(cosigners_named(&audited) >= 2, "{audited}");
    // The corroborated violation, the disputed report and the obstruction.
    let row = |zone: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(zone))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("sector-2").contains("VIOLATION_CONFIRMED"), "{stdout}");
    assert!(row("sector-3").contains("VIOLATION_CONFIRMED*"), "{stdout}");
    assert!(
        row("disengagement-area-1").contains("OBSTRUCTED"),
        "{stdout}"
    );

    // The ledger it leaves behind verifies with the auditor command too.
    let verify = command(BINARY, &[&"verify", &"--json", &"--data-dir", &data_dir])
        .output()
        .unwrap();
    assert!(verify.status.success());
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(
        report["witness_quorum"],
        "2 of 3 needed: quorum signatories"
    );
    let witnessed_by = report["witnessed_by"].as_array().unwrap();
    assert!(witnessed_by.len() >= 2, "{report}");
    assert!(witnessed_by
        .iter()
        .all(|witness| WITNESSES.contains(&witness["name"].as_str().unwrap())));

    // A non-empty directory is refused with one line and a non-zero exit.
    let again = command(BINARY, &[&"demo", &"--data-dir", &data_dir])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let message = String::from_utf8_lossy(&again.stderr);
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(message.contains("is not empty"), "{message}");
}
