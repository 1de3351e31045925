//! `ceasefire-ledger witness` as a real child process on 127.0.0.1: its key
//! commands, a config file naming a ceasefire genesis and a vkey, restarts
//! after SIGKILL, a second process on one data directory, a damaged store,
//! and the crash harness.
//!
//! The crash harness: clients push checkpoints of two branches of one
//! forked log (both signed by the log's key, as a misbehaving log would)
//! concurrently, while the witness is killed with SIGKILL at random moments
//! and restarted, cycle after cycle. Every 200 any client ever got is kept
//! and checked at the end: every cosignature verifies; one root per size;
//! past the fork point, one branch only; no tree smaller than one whose
//! cosignature a client had already received; and after every restart the
//! witness's recorded size is at least every size it had cosigned (it
//! records before it answers). `CEASEFIRE_WITNESS_CRASH_CYCLES` sets the
//! cycles (default 8), `CEASEFIRE_WITNESS_CRASH_SEED` replays a run's
//! random choices (the fork point and the kill delays).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ceasefire_core::cosignature::{open_cosigned, CosignerVerifier};
use ceasefire_core::merkle::Hash;
use ceasefire_ledger::signed_file::SignedEventFile;
use ceasefire_testkit::harness::{command, free_port, run_bounded, seed_from, Rng};
use ceasefire_testkit::scenario::{seeded_key, Scenario};
use ceasefire_testkit::witness::{TestLog, WitnessProcess};
use ceasefire_witness::{AddCheckpointError, WitnessClient};

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");
const WITNESS_NAME: &str = "witness.example/crash";
const START_WAIT: Duration = Duration::from_secs(30);
const COMMAND_WAIT: Duration = Duration::from_secs(30);

/// `witness keygen` in `dir`: the key file and the vkey it printed.
fn keygen(dir: &Path, name: &str) -> (std::path::PathBuf, CosignerVerifier) {
    let key = dir.join("witness.key");
    let output = run_bounded(
        command(
            BINARY,
            &[&"witness", &"keygen", &"--name", &name, &"--out", &key],
        ),
        dir,
        COMMAND_WAIT,
    );
    assert!(output.status.success(), "{}", output.stderr);
    let vkey = output.stdout.trim();
    (key, CosignerVerifier::from_vkey(vkey).unwrap())
}

/// A config file for a witness of `logs` (TOML `[[log]]` lines).
fn write_config(dir: &Path, key: &Path, logs: &str) -> std::path::PathBuf {
    let path = dir.join("witness.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"{WITNESS_NAME}\"\nkey-file = \"{}\"\ndata-dir = \"{}\"\n{logs}",
            key.display(),
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()))
}

async fn spawn(dir: &Path, config: &Path, addr: SocketAddr) -> WitnessProcess {
    let mut witness =
        WitnessProcess::spawn(BINARY, config, addr, dir.join("witness.stderr")).unwrap();
    witness.wait_ready(START_WAIT).await.unwrap();
    witness
}

fn client(addr: SocketAddr) -> WitnessClient {
    WitnessClient::new(&format!("http://{addr}"))
        .unwrap()
        .with_timeout(Duration::from_secs(5))
}

fn assert_cosigned(note: &str, lines: &str, log: &TestLog, witness: &CosignerVerifier) {
    let cosigned = ceasefire_core::cosignature::add_signature_lines(note, lines);
    let (_, by) = open_cosigned(&cosigned, &log.verifier(), std::slice::from_ref(witness))
        .unwrap_or_else(|error| panic!("{error}: {lines:?}"));
    assert_eq!(by.len(), 1);
}

/// The witness's size for `log` (see `witness_size` in the crate's tests):
/// old size 1 with the checkpoint at 1. `None` if the witness cosigned it
/// (its size was 1).
async fn probe_size(client: &WitnessClient, log: &TestLog) -> Option<u64> {
    match client.add_checkpoint(1, &[], &log.checkpoint(1)).await {
        Err(AddCheckpointError::Conflict { witness_size }) => Some(witness_size),
        Ok(_) => None,
        Err(error) => panic!("probing the witness's size: {error}"),
    }
}

#[tokio::test]
async fn keygen_vkey_and_serve_from_a_config_with_a_genesis_and_a_vkey() {
    let dir = tempfile::tempdir().unwrap();
    let (key, verifier) = keygen(dir.path(), WITNESS_NAME);
    // `witness vkey` prints what keygen printed.
    let output = run_bounded(
        command(
            BINARY,
            &[
                &"witness",
                &"vkey",
                &"--key",
                &key,
                &"--name",
                &WITNESS_NAME,
            ],
        ),
        dir.path(),
        COMMAND_WAIT,
    );
    assert!(output.status.success(), "{}", output.stderr);
    assert_eq!(output.stdout.trim(), verifier.vkey());
    // keygen never overwrites.
    let output = run_bounded(
        command(
            BINARY,
            &[&"witness", &"keygen", &"--name", &"w", &"--out", &key],
        ),
        dir.path(),
        COMMAND_WAIT,
    );
    assert!(!output.status.success());
    assert!(output
        .last_stderr_line()
        .starts_with("error: cannot create key file"));

    // A ceasefire ledger, named by its signed genesis file.
    let scenario = Scenario::dev_with_random_keys();
    let genesis = scenario.genesis();
    let file = SignedEventFile {
        event: ceasefire_core::rules::decode_event(&genesis.payload).unwrap(),
        signed: genesis,
    };
    let genesis_path = dir.path().join("genesis.json");
    file.save(&genesis_path).unwrap();
    let mut ledger = TestLog::new(scenario.origin(), scenario.operator().clone());
    ledger.grow(9, "ledger");
    // Another C2SP log, named by its vkey.
    let mut other = TestLog::new("sigsum.example/log-7", seeded_key(77));
    other.grow(5, "other");
    let config = write_config(
        dir.path(),
        &key,
        &format!(
            "[[log]]\ngenesis = \"{}\"\n[[log]]\nvkey = \"{}\"\n",
            genesis_path.display(),
            other.vkey()
        ),
    );
    let addr = loopback();
    let mut witness = spawn(dir.path(), &config, addr).await;
    let client = client(addr);
    for (old, new) in [(0, 4), (4, 9)] {
        let note = ledger.checkpoint(new);
        let lines = client
            .add_checkpoint(old, &ledger.proof(old, new), &note)
            .await
            .unwrap();
        assert_cosigned(&note, lines.as_str(), &ledger, &verifier);
    }
    let note = other.checkpoint_with_extensions(5, &["extension"]);
    let lines = client.add_checkpoint(0, &[], &note).await.unwrap();
    assert_cosigned(&note, lines.as_str(), &other, &verifier);
    let stderr = witness.stderr();
    assert!(stderr.contains(&verifier.vkey()), "{stderr}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    witness.kill().unwrap();
}

#[tokio::test]
async fn a_witness_killed_and_restarted_goes_on_from_its_last_cosigned_size() {
    let dir = tempfile::tempdir().unwrap();
    let (key, verifier) = keygen(dir.path(), WITNESS_NAME);
    let mut log = TestLog::new("example.org/restarted", seeded_key(60));
    log.grow(30, "main");
    let config = write_config(
        dir.path(),
        &key,
        &format!("[[log]]\nvkey = \"{}\"\n", log.vkey()),
    );
    let addr = loopback();
    let mut old = 0;
    for new in [5, 12, 30] {
        let mut witness = spawn(dir.path(), &config, addr).await;
        let client = client(addr);
        if old > 0 {
            assert_eq!(probe_size(&client, &log).await, Some(old));
        }
        let note = log.checkpoint(new);
        let lines = client
            .add_checkpoint(old, &log.proof(old, new), &note)
            .await
            .unwrap();
        assert_cosigned(&note, lines.as_str(), &log, &verifier);
        witness.kill().unwrap();
        old = new;
    }
    // A stale client is told the size; nothing smaller is ever cosigned.
    let mut witness = spawn(dir.path(), &config, addr).await;
    assert_eq!(
        client(addr)
            .add_checkpoint(12, &log.proof(12, 20), &log.checkpoint(20))
            .await,
        Err(AddCheckpointError::Conflict { witness_size: 30 })
    );
    witness.kill().unwrap();
}

#[tokio::test]
async fn a_second_process_on_one_data_directory_is_refused_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), WITNESS_NAME);
    let log = TestLog::new("example.org/locked", seeded_key(61));
    let config = write_config(
        dir.path(),
        &key,
        &format!("[[log]]\nvkey = \"{}\"\n", log.vkey()),
    );
    let mut first = spawn(dir.path(), &config, loopback()).await;
    let mut second = WitnessProcess::spawn(
        BINARY,
        &config,
        loopback(),
        dir.path().join("second.stderr"),
    )
    .unwrap();
    let status = second.exit_status(START_WAIT).await.unwrap();
    assert!(!status.success());
    let stderr = second.stderr();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: the witness data directory"),
        "{stderr}"
    );
    assert!(
        last.contains(&format!(
            "in use by another witness process (pid {})",
            first.pid()
        )),
        "{stderr}"
    );
    first.kill().unwrap();
    // Killed, its lock is gone with it.
    let mut third = spawn(dir.path(), &config, loopback()).await;
    third.kill().unwrap();
}

#[tokio::test]
async fn a_stored_checkpoint_that_does_not_verify_stops_the_witness_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), WITNESS_NAME);
    let mut log = TestLog::new("example.org/tampered", seeded_key(62));
    log.grow(7, "main");
    let config = write_config(
        dir.path(),
        &key,
        &format!("[[log]]\nvkey = \"{}\"\n", log.vkey()),
    );
    let addr = loopback();
    let mut witness = spawn(dir.path(), &config, addr).await;
    client(addr)
        .add_checkpoint(0, &[], &log.checkpoint(7))
        .await
        .unwrap();
    witness.kill().unwrap();
    let stored = dir
        .path()
        .join("data/logs")
        .join(ceasefire_witness::store::file_name(log.origin()));
    let note = std::fs::read_to_string(&stored).unwrap();
    std::fs::write(&stored, note.replacen("\n7\n", "\n6\n", 1)).unwrap();
    let mut witness =
        WitnessProcess::spawn(BINARY, &config, addr, dir.path().join("again.stderr")).unwrap();
    assert!(!witness.exit_status(START_WAIT).await.unwrap().success());
    let stderr = witness.stderr();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{stderr}");
    assert!(last.contains(&stored.display().to_string()), "{stderr}");
    assert!(last.contains("does not verify"), "{stderr}");
}

/// One 200, as a client saw it.
#[derive(Clone, Debug)]
struct Cosigned {
    branch: usize,
    size: u64,
    root: Hash,
    /// When the request was sent and its answer received.
    sent: Instant,
    received: Instant,
}

/// Clients per branch.
const CLIENTS_PER_BRANCH: usize = 4;
/// Leaves of each branch: more than the clients can cosign in a run.
const LOG_SIZE: u64 = 20_000;
/// Cycles when `CEASEFIRE_WITNESS_CRASH_CYCLES` is not set.
const DEFAULT_CYCLES: u64 = 8;
/// The kill comes this long (ms) after the witness listens.
const KILL_DELAY_MS: std::ops::RangeInclusive<u64> = 30..=600;

/// Signed checkpoints by (branch, size), shared by the clients: signing is
/// most of a client's work in a debug build, and they ask for the same
/// sizes.
type Notes = Arc<Mutex<HashMap<(usize, u64), String>>>;

/// One client: pushes its branch forward from what the witness says, and
/// now and then sends a stale or a conflicting request on purpose.
#[allow(clippy::too_many_arguments)]
async fn push(
    client: WitnessClient,
    branches: Arc<[TestLog; 2]>,
    notes: Notes,
    branch: usize,
    seed: u64,
    witness: CosignerVerifier,
    stop: Arc<AtomicBool>,
    cosigned: Arc<Mutex<Vec<Cosigned>>>,
) {
    let log = &branches[branch];
    let mut rng = Rng::new(seed);
    let mut known = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let old = match rng.below(10) {
            // A stale old size (409), or the same size again.
            0 => known.saturating_sub(rng.between(0..=3)),
            _ => known,
        };
        let new = (old + rng.between(0..=4)).min(LOG_SIZE);
        let note = notes
            .lock()
            .unwrap()
            .entry((branch, new))
            .or_insert_with(|| log.checkpoint(new))
            .clone();
        let sent = Instant::now();
        match client
            .add_checkpoint(old, &log.proof(old, new), &note)
            .await
        {
            Ok(lines) => {
                let received = Instant::now();
                assert_cosigned(&note, lines.as_str(), log, &witness);
                cosigned.lock().unwrap().push(Cosigned {
                    branch,
                    size: new,
                    root: log.head(new).root,
                    sent,
                    received,
                });
                known = new;
            }
            Err(AddCheckpointError::Conflict { witness_size }) => known = witness_size,
            // The witness holds the other branch.
            Err(AddCheckpointError::Status { status: 422, .. }) => {}
            // The witness is down (killed) or coming up.
            Err(AddCheckpointError::Transport { .. } | AddCheckpointError::Timeout { .. }) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(error) => panic!("client of branch {branch}: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_it_never_cosigns_two_roots_for_one_size_nor_goes_back() {
    let seed = seed_from("CEASEFIRE_WITNESS_CRASH_SEED");
    let cycles: u64 = std::env::var("CEASEFIRE_WITNESS_CRASH_CYCLES")
        .map(|text| {
            text.parse()
                .expect("CEASEFIRE_WITNESS_CRASH_CYCLES is a count")
        })
        .unwrap_or(DEFAULT_CYCLES);
    eprintln!("witness crash harness: seed {seed}, {cycles} cycles");
    let mut rng = Rng::new(seed);
    let fork_point = rng.between(2..=40);

    let dir = tempfile::tempdir().unwrap();
    let (key, witness_key) = keygen(dir.path(), WITNESS_NAME);
    let mut main = TestLog::new("example.org/forked", seeded_key(70));
    main.grow(LOG_SIZE, "main");
    let mut fork = main.prefix(fork_point);
    fork.grow(LOG_SIZE, "fork");
    let branches = Arc::new([main, fork]);
    let config = write_config(
        dir.path(),
        &key,
        &format!("[[log]]\nvkey = \"{}\"\n", branches[0].vkey()),
    );
    let addr = loopback();

    let stop = Arc::new(AtomicBool::new(false));
    let cosigned = Arc::new(Mutex::new(Vec::<Cosigned>::new()));
    let notes = Notes::default();
    let mut clients = Vec::new();
    for index in 0..2 * CLIENTS_PER_BRANCH {
        clients.push(tokio::spawn(push(
            client(addr),
            Arc::clone(&branches),
            Arc::clone(&notes),
            index % 2,
            seed.wrapping_add(index as u64 + 1),
            witness_key.clone(),
            Arc::clone(&stop),
            Arc::clone(&cosigned),
        )));
    }

    let prober = client(addr);
    let started = Instant::now();
    for cycle in 0..cycles {
        let mut witness = spawn(dir.path(), &config, addr).await;
        // Recorded before answered: the restarted witness is at least as
        // far as anything it cosigned before the kill.
        let highest = cosigned
            .lock()
            .unwrap()
            .iter()
            .map(|seen| seen.size)
            .max()
            .unwrap_or(0);
        let size = probe_size(&prober, &branches[0]).await.unwrap_or(1);
        assert!(
            size >= highest,
            "cycle {cycle} (seed {seed}): the witness restarted at size {size} after \
             cosigning {highest}"
        );
        let delay = rng.between(KILL_DELAY_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        witness.kill().unwrap();
    }
    // One last start, to read the final state, then stop the clients.
    let mut witness = spawn(dir.path(), &config, addr).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("a client did not stop")
            .unwrap();
    }
    let final_size = probe_size(&prober, &branches[0]).await.unwrap_or(1);
    witness.kill().unwrap();

    let mut seen = cosigned.lock().unwrap().clone();
    let count = seen.len();
    eprintln!(
        "{count} cosignatures in {:?}, final size {final_size}, fork point {fork_point}",
        started.elapsed()
    );
    assert!(count >= 20, "seed {seed}: only {count} cosignatures");
    // One root per size.
    seen.sort_by_key(|seen| seen.size);
    for pair in seen.windows(2) {
        if pair[0].size == pair[1].size {
            assert_eq!(
                pair[0].root, pair[1].root,
                "seed {seed}: two roots cosigned for size {}",
                pair[0].size
            );
        }
    }
    // Past the fork point, one branch.
    let past: Vec<usize> = seen
        .iter()
        .filter(|seen| seen.size > fork_point)
        .map(|seen| seen.branch)
        .collect();
    assert!(
        past.windows(2).all(|pair| pair[0] == pair[1]),
        "seed {seed}: both branches cosigned past the fork point {fork_point}"
    );
    // Never smaller after larger: no request sent after a cosignature of
    // size s was received was cosigned at a size below s.
    let mut by_received = seen.clone();
    by_received.sort_by_key(|seen| seen.received);
    let mut highest_before = Vec::with_capacity(by_received.len());
    let mut highest = 0;
    for seen in &by_received {
        highest = highest.max(seen.size);
        highest_before.push(highest);
    }
    for later in &seen {
        let earlier = by_received.partition_point(|seen| seen.received < later.sent);
        if earlier > 0 {
            assert!(
                later.size >= highest_before[earlier - 1],
                "seed {seed}: size {} cosigned after size {} was",
                later.size,
                highest_before[earlier - 1]
            );
        }
    }
    assert!(
        final_size >= highest,
        "seed {seed}: ended at {final_size} after {highest}"
    );
}
