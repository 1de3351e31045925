//! Key files at rest: `keygen --encrypt` writes an age file encrypted to a
//! passphrase, and every command that loads a key file opens it with the
//! passphrase from `CEASEFIRE_KEY_PASSPHRASE`. The real binary, child
//! processes, real keys:
//!
//! - A whole ledger on encrypted keys: `init`, `sign` (the genesis, by an
//!   encrypted signatory key), `serve` (an encrypted operator key), `submit`
//!   (an encrypted signatory key; the receipt checked against the operator
//!   key the genesis names), and a witness's encrypted key.
//! - A wrong passphrase, an empty one, none with stdin not a terminal, a
//!   damaged file: one line, a non-zero exit, nothing written or changed
//!   (`serve` creates no data directory).
//! - The file on disk: owner-only, armored age, and neither the seed nor any
//!   encoding of it inside; no temporary file left beside it.
//! - The `age` tool opens our files and we open its files, when `age` and
//!   `python3` (which plays the terminal age asks on) are installed;
//!   SKIPPED otherwise.
//!
//! Scrypt's work factor is 10 here (a debug build would take seconds per
//! key at the default 18).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ceasefire_ledger::age;
use ceasefire_testkit::harness::{command, free_port, run_bounded, Output, Serve};

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");
const PASSPHRASE: &str = "correct horse battery staple";
const ENV: &str = "CEASEFIRE_KEY_PASSPHRASE";

/// Generous: it waits for processes, never times anything.
const BOUND: Duration = Duration::from_secs(120);

/// The binary with `args`, in `dir`, with `passphrase` in the environment
/// (or none), stdin not a terminal.
fn run(dir: &Path, passphrase: Option<&str>, args: &[&dyn AsRef<OsStr>]) -> Output {
    let mut command = command(BINARY, args);
    command.current_dir(dir).env_remove(ENV);
    if let Some(passphrase) = passphrase {
        command.env(ENV, passphrase);
    }
    let scratch = tempfile::tempdir().unwrap();
    run_bounded(command, scratch.path(), BOUND)
}

fn succeeded(output: Output) -> String {
    assert!(output.status.success(), "failed: {}", output.stderr);
    output.stdout.trim().to_string()
}

/// A non-zero exit, one line on stderr containing `needle`.
fn assert_one_line_error(output: &Output, needle: &str) {
    assert!(!output.status.success(), "succeeded: {}", output.stdout);
    assert_eq!(
        output.stderr.trim().lines().count(),
        1,
        "not one line: {}",
        output.stderr
    );
    assert!(
        output.stderr.contains(needle),
        "{:?} lacks {needle:?}",
        output.stderr
    );
}

/// `keygen --encrypt` of a key for `party` (or an operator's, without):
/// its public key.
fn encrypted_keygen(dir: &Path, name: &str, party: Option<&str>) -> String {
    let mut args: Vec<&dyn AsRef<OsStr>> = vec![
        &"keygen",
        &"--encrypt",
        &"--work-factor",
        &"10",
        &"--out",
        &name,
    ];
    if let Some(party) = &party {
        args.extend_from_slice(&[&"--party-id", party]);
    }
    succeeded(run(dir, Some(PASSPHRASE), &args))
}

/// The JSON inside an encrypted key file.
fn decrypted(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    serde_json::from_slice(&age::decrypt(&bytes, PASSPHRASE).unwrap()).unwrap()
}

#[tokio::test]
async fn a_ledger_runs_on_encrypted_keys() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let signatory = encrypted_keygen(dir, "signatory.key", Some("party-a"));
    let operator = encrypted_keygen(dir, "operator.key", None);

    // The genesis, signed with the encrypted signatory key.
    succeeded(run(
        dir,
        None,
        &[
            &"init",
            &"--agreement-id",
            &"encrypted-keys",
            &"--origin",
            &"example.org/encrypted-keys",
            &"--signatory",
            &format!("party-a,{signatory},Party A"),
            &"--threshold",
            &"1",
            &"--operator-public-key",
            &operator,
            &"--out",
            &"genesis.json",
        ],
    ));
    run(
        dir,
        Some(PASSPHRASE),
        &[&"sign", &"--key", &"signatory.key", &"genesis.json"],
    );
    let genesis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("genesis.json")).unwrap()).unwrap();
    assert_eq!(
        genesis["signatures"].as_array().map(Vec::len),
        Some(1),
        "the genesis was not signed: {genesis}"
    );

    // serve with the encrypted operator key.
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    let mut serve_command = command(
        BINARY,
        &[
            &"serve",
            &"--genesis",
            &dir.join("genesis.json"),
            &"--operator-key",
            &dir.join("operator.key"),
            &"--data-dir",
            &dir.join("data"),
            &"--listen",
            &listen,
        ],
    );
    serve_command.env(ENV, PASSPHRASE);
    let url = format!("http://{listen}");
    let mut serve = Serve::start(serve_command, url.clone(), dir.join("serve.stderr")).unwrap();
    let size = serve
        .wait_ready(BOUND)
        .await
        .unwrap_or_else(|error| panic!("serve did not start: {error:#}\n{}", serve.stderr()));
    assert_eq!(size, 1, "the genesis is entry 0");

    // submit, signed with the encrypted signatory key; the receipt's
    // checkpoint is checked against the operator key of the genesis, so it
    // proves the server signs with the decrypted operator key.
    let zone = serde_json::json!({"defineZone": {
        "zoneId": "sector-1",
        "version": 1,
        "name": "Sector 1",
        "kind": "ZONE_KIND_CONTACT_LINE_SECTOR",
        "boundary": {"vertices": [
            {"lat": 48.0, "lon": 37.0}, {"lat": 48.0, "lon": 37.5},
            {"lat": 48.5, "lon": 37.5}, {"lat": 48.5, "lon": 37.0}
        ]}
    }});
    std::fs::write(dir.join("zone.json"), zone.to_string()).unwrap();
    let receipt = succeeded(run(
        dir,
        Some(PASSPHRASE),
        &[
            &"submit",
            &"--server",
            &url,
            &"--key",
            &"signatory.key",
            &"zone.json",
        ],
    ));
    let receipt: serde_json::Value = serde_json::from_str(&receipt).unwrap();
    assert_eq!(receipt["seq"], "1", "{receipt}");

    // A witness's key, encrypted, and loaded by `witness vkey`.
    succeeded(run(
        dir,
        Some(PASSPHRASE),
        &[
            &"witness",
            &"keygen",
            &"--name",
            &"witness.example/w1",
            &"--encrypt",
            &"--work-factor",
            &"10",
            &"--out",
            &"witness.key",
        ],
    ));
    assert!(age::is_age(
        &std::fs::read(dir.join("witness.key")).unwrap()
    ));
    let vkey = succeeded(run(
        dir,
        Some(PASSPHRASE),
        &[
            &"witness",
            &"vkey",
            &"--name",
            &"witness.example/w1",
            &"--key",
            &"witness.key",
        ],
    ));
    assert!(vkey.starts_with("witness.example/w1+"), "{vkey}");

    serve.terminate(BOUND).await.unwrap();
}

#[test]
fn wrong_missing_or_empty_passphrases_and_damage_fail_in_one_line() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    encrypted_keygen(dir, "signatory.key", Some("party-a"));
    let event = serde_json::json!({"agreementId": "a", "defineZone": {"zoneId": "z"}});
    std::fs::write(dir.join("event.json"), event.to_string()).unwrap();
    let sign = |passphrase: Option<&str>, key: &str| {
        run(
            dir,
            passphrase,
            &[
                &"sign",
                &"--key",
                &key,
                &"--out",
                &"signed.json",
                &"event.json",
            ],
        )
    };

    assert_one_line_error(
        &sign(Some("not the passphrase"), "signatory.key"),
        "cannot open the key file signatory.key: wrong passphrase (from CEASEFIRE_KEY_PASSPHRASE)",
    );
    assert_one_line_error(
        &sign(None, "signatory.key"),
        "the key file signatory.key is encrypted: set CEASEFIRE_KEY_PASSPHRASE to its passphrase \
         (stdin is not a terminal to ask on)",
    );
    assert_one_line_error(
        &sign(Some(""), "signatory.key"),
        "CEASEFIRE_KEY_PASSPHRASE is set but empty",
    );
    // One character of the armored payload changed: the right passphrase
    // opens the header, and the damage is named as damage.
    let armored = std::fs::read_to_string(dir.join("signatory.key")).unwrap();
    let lines: Vec<&str> = armored.lines().collect();
    let mut damaged_line: Vec<char> = lines[lines.len() - 3].chars().collect();
    damaged_line[10] = if damaged_line[10] == 'A' { 'B' } else { 'A' };
    let mut damaged_lines: Vec<String> = lines.iter().map(|line| line.to_string()).collect();
    let at = damaged_lines.len() - 3;
    damaged_lines[at] = damaged_line.into_iter().collect();
    std::fs::write(dir.join("damaged.key"), damaged_lines.join("\n") + "\n").unwrap();
    assert_one_line_error(
        &sign(Some(PASSPHRASE), "damaged.key"),
        "cannot open the key file damaged.key: damaged age file",
    );
    assert!(!dir.join("signed.json").exists(), "something was signed");

    // keygen --encrypt without a passphrase writes nothing; onto an
    // existing file it refuses before asking.
    assert_one_line_error(
        &run(dir, None, &[&"keygen", &"--encrypt", &"--out", &"new.key"]),
        "--encrypt needs a passphrase: set CEASEFIRE_KEY_PASSPHRASE",
    );
    assert!(!dir.join("new.key").exists());
    let before = std::fs::read(dir.join("signatory.key")).unwrap();
    assert_one_line_error(
        &run(
            dir,
            Some(PASSPHRASE),
            &[&"keygen", &"--encrypt", &"--out", &"signatory.key"],
        ),
        "cannot create key file signatory.key: it already exists (never overwritten)",
    );
    assert_eq!(std::fs::read(dir.join("signatory.key")).unwrap(), before);
    assert_eq!(
        leftovers(dir),
        Vec::<String>::new(),
        "a temporary file was left"
    );

    // serve with a wrong passphrase for its operator key: one line, and no
    // data directory.
    encrypted_keygen(dir, "operator.key", None);
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    let output = run(
        dir,
        Some("not the passphrase"),
        &[
            &"serve",
            &"--dev",
            &"--operator-key",
            &"operator.key",
            &"--data-dir",
            &"data",
            &"--listen",
            &listen,
        ],
    );
    assert!(!output.status.success());
    assert!(
        output
            .last_stderr_line()
            .contains("cannot open the key file operator.key: wrong passphrase"),
        "{}",
        output.stderr
    );
    assert!(!dir.join("data").exists(), "serve left a data directory");
}

/// Hidden temporary files in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.') || name.ends_with(".tmp"))
        .collect()
}

#[test]
fn the_encrypted_file_is_owner_only_armored_and_holds_no_secret() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let public_key = encrypted_keygen(dir, "party.key", Some("party-a"));
    let path = dir.join("party.key");
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(age::ARMOR_BEGIN.as_bytes()));

    let inside = decrypted(&path);
    assert_eq!(inside["type"], "ceasefire-ledger-ed25519-key");
    assert_eq!(inside["party_id"], "party-a");
    assert_eq!(inside["public_key"], public_key.as_str());
    let seed = BASE64
        .decode(inside["secret_key"].as_str().unwrap())
        .unwrap();
    assert_eq!(seed.len(), 32);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let armored_binary = {
        let body: String = text
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        BASE64.decode(body).unwrap()
    };
    for haystack in [&bytes, &armored_binary] {
        assert!(!contains(haystack, &seed), "the raw seed is in the file");
        assert!(!contains(haystack, BASE64.encode(&seed).as_bytes()));
        assert!(!contains(haystack, hex::encode(&seed).as_bytes()));
        assert!(
            !contains(haystack, b"secret_key"),
            "the JSON is in the clear"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    assert_eq!(leftovers(dir), Vec::<String>::new());

    // A plain key file is unchanged by all this: JSON, owner-only.
    run(dir, None, &[&"keygen", &"--out", &"plain.key"]);
    let plain = std::fs::read_to_string(dir.join("plain.key")).unwrap();
    assert!(plain.contains("\"secret_key\""));
    assert!(!age::is_age(plain.as_bytes()));
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// A program on PATH, if installed.
fn installed(program: &str) -> Option<PathBuf> {
    let output = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// Runs `args` on a pseudo-terminal, typing PASSPHRASE at each prompt for
/// one (the `age` tool reads a passphrase only from a terminal).
const TERMINAL: &str = r#"
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
seen = b""
while True:
    try:
        data = os.read(fd, 1024)
    except OSError:
        break
    if not data:
        break
    seen += data
    if b"passphrase" in data.lower():
        time.sleep(0.2)
        os.write(fd, os.environ["PASSPHRASE"].encode() + b"\n")
_, status = os.waitpid(pid, 0)
sys.stderr.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

fn on_terminal(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg("-c")
        .arg(TERMINAL)
        .args(args)
        .current_dir(dir)
        .env("PASSPHRASE", PASSPHRASE)
        .env_remove(ENV)
        .output()
        .unwrap()
}

#[test]
fn the_age_tool_opens_our_files_and_we_open_its() {
    let (Some(age_tool), Some(_)) = (installed("age"), installed("python3")) else {
        println!("SKIPPED: needs the age tool and python3 (apt-get install age)");
        return;
    };
    let age_tool = age_tool.display().to_string();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();

    // Ours, opened by age -d.
    let public_key = encrypted_keygen(dir, "ours.key", Some("party-a"));
    let output = on_terminal(dir, &[&age_tool, "-d", "-o", "ours.json", "ours.key"]);
    assert!(
        output.status.success(),
        "age -d failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let inside: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ours.json")).unwrap()).unwrap();
    assert_eq!(inside["public_key"], public_key.as_str());

    // Age's (age -p -a, its own work factor), opened by `witness vkey`,
    // which loads the key as every command does.
    succeeded(run(dir, None, &[&"keygen", &"--out", &"plain.key"]));
    let output = on_terminal(
        dir,
        &[&age_tool, "-p", "-a", "-o", "theirs.key", "plain.key"],
    );
    assert!(
        output.status.success(),
        "age -p failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let vkey = |key: &str, passphrase: Option<&str>| {
        run(
            dir,
            passphrase,
            &[&"witness", &"vkey", &"--name", &"w.example", &"--key", &key],
        )
    };
    assert_eq!(
        succeeded(vkey("theirs.key", Some(PASSPHRASE))),
        succeeded(vkey("plain.key", None))
    );
}

#[test]
fn a_passphrase_is_asked_on_the_terminal_with_echo_off() {
    let Some(_) = installed("python3") else {
        println!("SKIPPED: needs python3 to play the terminal");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // No CEASEFIRE_KEY_PASSPHRASE: keygen asks twice, vkey once.
    let keygen = on_terminal(
        dir,
        &[
            BINARY,
            "keygen",
            "--encrypt",
            "--work-factor",
            "10",
            "--out",
            "typed.key",
        ],
    );
    let seen = String::from_utf8_lossy(&keygen.stderr).into_owned();
    assert!(keygen.status.success(), "keygen failed: {seen}");
    assert!(seen.contains("New passphrase for typed.key: "), "{seen}");
    assert!(seen.contains("The same passphrase again: "), "{seen}");
    assert!(
        !seen.contains(PASSPHRASE),
        "the passphrase was echoed: {seen}"
    );
    decrypted(&dir.join("typed.key"));

    let vkey = on_terminal(
        dir,
        &[
            BINARY,
            "witness",
            "vkey",
            "--name",
            "w.example",
            "--key",
            "typed.key",
        ],
    );
    let seen = String::from_utf8_lossy(&vkey.stderr).into_owned();
    assert!(vkey.status.success(), "vkey failed: {seen}");
    assert!(seen.contains("Passphrase for typed.key: "), "{seen}");
    assert!(seen.contains("w.example+"), "{seen}");
    assert!(
        !seen.contains(PASSPHRASE),
        "the passphrase was echoed: {seen}"
    );
}
