//! `serve` refusing to start: each refusal is one line on stderr and a
//! non-zero exit, and leaves nothing behind (no data directory, dev keys,
//! empty store or head record that were not there before), so the next
//! start finds the directory as it was.
//!
//! Every case runs the real binary; the ledgers are real (a genesis signed
//! with the test kit's scenario keys, written as a signed-event file the
//! way `init` and `sign` write it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use ceasefire_grpc::proto::Event;
use ceasefire_ledger::keyfile::KeyFile;
use ceasefire_ledger::signed_file::SignedEventFile;
use ceasefire_node::storage::{DB_DIR_NAME, RECORD_FILE_NAME};
use ceasefire_testkit::harness::{command, Serve};
use ceasefire_testkit::scenario::Scenario;
use prost::Message;

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// How long a real start of a fresh ledger may take.
const START_WAIT: Duration = Duration::from_secs(30);

/// A genesis and the operator keys, as files in a work directory.
struct Files {
    work: tempfile::TempDir,
    scenario: Scenario,
}

impl Files {
    fn new() -> Files {
        let work = tempfile::tempdir().unwrap();
        let scenario = Scenario::dev_with_random_keys();
        let genesis = scenario.genesis();
        SignedEventFile {
            event: Event::decode(genesis.payload.as_slice()).unwrap(),
            signed: genesis,
        }
        .save(&work.path().join("genesis.json"))
        .unwrap();
        KeyFile {
            party_id: None,
            key: scenario.operator().clone(),
        }
        .save(&work.path().join("operator.key"))
        .unwrap();
        KeyFile::generate(None)
            .save(&work.path().join("wrong.key"))
            .unwrap();
        Files { work, scenario }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }
}

/// `serve ARGS`, run to its end (it must not start).
fn serve(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"serve"];
    all.extend_from_slice(args);
    command(BINARY, &all)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A refusal: non-zero, one line on stderr, saying `needle`.
#[track_caller]
fn refused(output: &Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "serve started:\n{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "not one line:\n{stderr}");
    assert!(
        lines[0].contains(needle),
        "{:?} does not say {needle:?}",
        lines[0]
    );
    lines[0].to_string()
}

/// What a directory holds, by name, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_start_on_an_address_in_use_leaves_no_directory_keys_or_store() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let files = Files::new();
    // A data directory that does not exist, and one that exists, empty.
    let fresh = files.path("fresh");
    let existing = files.path("existing");
    std::fs::create_dir(&existing).unwrap();
    for data in [&fresh, &existing] {
        let output = serve(&[&"--dev", &"--data-dir", data, &"--listen", &listen]);
        refused(&output, &format!("cannot listen on {listen}"));
        let genesis = serve(&[
            &"--genesis",
            &files.path("genesis.json"),
            &"--operator-key",
            &files.path("operator.key"),
            &"--data-dir",
            data,
            &"--listen",
            &listen,
        ]);
        refused(&genesis, &format!("cannot listen on {listen}"));
    }
    assert!(!fresh.exists(), "{:?}", listing(&fresh));
    assert_eq!(listing(&existing), Vec::<String>::new());
}

#[test]
fn a_missing_genesis_a_wrong_operator_key_or_no_genesis_leave_nothing() {
    let files = Files::new();
    let data = files.path("data");
    let missing = files.path("missing.json");
    let output = serve(&[
        &"--genesis",
        &missing,
        &"--operator-key",
        &files.path("operator.key"),
        &"--data-dir",
        &data,
        &"--listen",
        &"127.0.0.1:0",
    ]);
    refused(&output, &missing.display().to_string());
    assert!(!data.exists());

    let output = serve(&[
        &"--genesis",
        &files.path("genesis.json"),
        &"--operator-key",
        &files.path("wrong.key"),
        &"--data-dir",
        &data,
        &"--listen",
        &"127.0.0.1:0",
    ]);
    refused(&output, "is not the one the genesis names");
    assert!(!data.exists(), "{:?}", listing(&data));

    let output = serve(&[
        &"--operator-key",
        &files.path("operator.key"),
        &"--data-dir",
        &data,
        &"--listen",
        &"127.0.0.1:0",
    ]);
    refused(&output, "holds no ledger: start with --genesis FILE");
    assert!(!data.exists());

    // In an existing directory: it is left as it was (no store, no record).
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("README"), "the operator's own file").unwrap();
    let output = serve(&[
        &"--genesis",
        &files.path("genesis.json"),
        &"--operator-key",
        &files.path("wrong.key"),
        &"--data-dir",
        &data,
        &"--listen",
        &"127.0.0.1:0",
    ]);
    refused(&output, "is not the one the genesis names");
    assert_eq!(listing(&data), ["README"]);
}

/// `serve --dev` on a ledger started from a genesis says so plainly and
/// writes no dev keys into it; the ledger still serves with its own key.
#[tokio::test]
async fn serve_dev_on_a_ledger_not_made_with_dev_says_so() {
    let files = Files::new();
    let data = files.path("data");
    let genesis = files.path("genesis.json");
    let operator = files.path("operator.key");
    let real_start = |stderr: &str| {
        Serve::spawn(
            BINARY,
            &data,
            &[
                "--genesis",
                genesis.to_str().unwrap(),
                "--operator-key",
                operator.to_str().unwrap(),
            ],
            files.path(stderr),
        )
        .unwrap()
    };
    let mut first = real_start("first.log");
    assert_eq!(first.wait_ready(START_WAIT).await.unwrap(), 1);
    assert!(first.terminate(START_WAIT).await.unwrap().success());
    let before = listing(&data);
    assert_eq!(before, [RECORD_FILE_NAME, DB_DIR_NAME]);

    let output = serve(&[&"--dev", &"--data-dir", &data, &"--listen", &"127.0.0.1:0"]);
    let line = refused(&output, "holds a ledger that was not started with --dev");
    assert!(line.contains("--operator-key FILE"), "{line}");
    assert_eq!(listing(&data), before);

    let mut again = real_start("again.log");
    assert_eq!(again.wait_ready(START_WAIT).await.unwrap(), 1);
    assert!(again.terminate(START_WAIT).await.unwrap().success());
    let _ = files.scenario;
}

/// A config file error names the line the bad key is on (it was one short
/// for a key at the start of a line).
#[test]
fn a_config_file_error_names_the_right_line() {
    let files = Files::new();
    let config = files.path("serve.toml");
    std::fs::write(&config, "dev = true\n\n# a comment\nno-such-key = 1\n").unwrap();
    let output = serve(&[&"--config", &config]);
    let line = refused(&output, "no-such-key");
    assert!(line.contains("(line 4)"), "{line}");
    std::fs::write(&config, "dev = true\nmax-batch = \"many\"\n").unwrap();
    let line = refused(&serve(&[&"--config", &config]), "(line 2)");
    assert!(line.contains("invalid"), "{line}");
}
