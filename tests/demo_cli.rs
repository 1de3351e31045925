//! `ceasefire-ledger demo`, the newcomer's first command, run as they would:
//! it must exit 0, show the compliance table, and end with a passing audit.

use ceasefire_testkit::harness::command;

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

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

    // A non-empty directory is refused with one line and a non-zero exit.
    let again = command(BINARY, &[&"demo", &"--data-dir", &data_dir])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let message = String::from_utf8_lossy(&again.stderr);
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(message.contains("is not empty"), "{message}");
}
