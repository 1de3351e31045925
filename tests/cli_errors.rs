//! Bad input to the offline CLI commands: each gets one line on stderr and
//! a non-zero exit, and writes nothing.

use std::path::Path;
use std::process::Output;

use ceasefire_testkit::harness::command;

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

fn run(args: &[&str], dir: &Path) -> Output {
    command(BINARY, &[])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn assert_one_line_error(output: &Output, needle: &str) {
    assert!(!output.status.success(), "succeeded: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
}

#[test]
fn offline_commands_refuse_bad_input_with_one_line() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let keygen = run(&["keygen", "--party-id", "party-a", "--out", "a.key"], dir);
    assert!(keygen.status.success());
    let public_key = String::from_utf8(keygen.stdout).unwrap().trim().to_string();

    // keygen never overwrites a key.
    assert_one_line_error(
        &run(&["keygen", "--out", "a.key"], dir),
        "cannot create key file",
    );

    // init: a malformed signatory, a key that is not base64, a short key.
    let init = |signatory: &str| {
        run(
            &[
                "init",
                "--agreement-id",
                "agreement",
                "--origin",
                "example.org/ledger",
                "--signatory",
                signatory,
                "--threshold",
                "1",
                "--operator-public-key",
                &public_key,
                "--out",
                "genesis.json",
            ],
            dir,
        )
    };
    assert_one_line_error(&init("party-a"), "expected PARTY_ID,PUBLIC_KEY_BASE64");
    assert_one_line_error(&init("party-a,not base64!,Party A"), "is not base64");
    assert_one_line_error(&init("party-a,AAAA,Party A"), "a public key is 32 bytes");
    assert!(!dir.join("genesis.json").exists());

    // init refuses what the ledger would refuse as entry 0 (here an origin
    // with a space, a threshold above the signatories, an agreement id out
    // of its alphabet), before writing anything.
    let signatory = format!("party-a,{public_key},Party A");
    let init_with = |agreement: &str, origin: &str, threshold: &str| {
        run(
            &[
                "init",
                "--agreement-id",
                agreement,
                "--origin",
                origin,
                "--signatory",
                &signatory,
                "--threshold",
                threshold,
                "--operator-public-key",
                &public_key,
                "--out",
                "genesis.json",
            ],
            dir,
        )
    };
    assert_one_line_error(
        &init_with("agreement", "example.org/a ledger", "1"),
        "FIELD_MALFORMED: genesis.origin",
    );
    assert_one_line_error(
        &init_with("agreement", "example.org/ledger", "2"),
        "genesis threshold must be between 1 and the 1 signatories",
    );
    assert_one_line_error(
        &init_with("Agreement!", "example.org/ledger", "1"),
        "the genesis would be refused",
    );
    assert!(!dir.join("genesis.json").exists());

    // sign: a bare event needs --out; an edited signed file is refused.
    std::fs::write(dir.join("event.json"), r#"{"author": "party-a"}"#).unwrap();
    assert_one_line_error(
        &run(&["sign", "--key", "a.key", "event.json"], dir),
        "give --out",
    );
    assert!(init(&format!("party-a,{public_key},Party A"))
        .status
        .success());
    let edited = std::fs::read_to_string(dir.join("genesis.json"))
        .unwrap()
        .replace("example.org/ledger", "example.org/other");
    std::fs::write(dir.join("genesis.json"), edited).unwrap();
    assert_one_line_error(
        &run(&["sign", "--key", "a.key", "genesis.json"], dir),
        "does not match the signed payload",
    );

    // submit: unreadable JSON is refused before any connection is made.
    std::fs::write(dir.join("bad.json"), "{ not json").unwrap();
    assert_one_line_error(
        &run(&["submit", "--key", "a.key", "bad.json"], dir),
        "event 1 is not valid JSON",
    );

    // verify: a directory with no ledger means it could not run: exit 2.
    let missing = run(&["verify", "--data-dir", "nowhere"], dir);
    assert_eq!(missing.status.code(), Some(2));
}

/// `bench --abuse` runs a fixed measurement: load and node flags beside it
/// are refused (clap's usage error, exit 2) before any node starts.
#[test]
fn bench_abuse_refuses_the_load_flags() {
    let work = tempfile::tempdir().unwrap();
    for flag in [
        &["--clients", "4"][..],
        &["--events", "100"],
        &["--stream"],
        &["--rate", "100"],
        &["--max-batch", "8"],
        &["--audit"],
    ] {
        let mut args = vec!["bench", "--abuse"];
        args.extend_from_slice(flag);
        let output = run(&args, work.path());
        assert_eq!(output.status.code(), Some(2), "{flag:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("'--abuse' cannot be used with") && stderr.contains(flag[0]),
            "{flag:?}: {stderr}"
        );
    }
}
