//! Crash harness: the real binary on a real data directory, killed with
//! SIGKILL at random moments under concurrent load, restarted, and checked.
//!
//! Each cycle, [`CLIENTS`] clients submit observations continuously (each
//! event new: fresh nonce, distinct narrative) to `serve --dev`; once the
//! cycle's first receipt is in, the harness waits a random delay and sends
//! SIGKILL, so the kill lands anywhere in the commit path (batch staging,
//! sled's write, its sync, the head record's write, sending receipts). Some
//! cycles (one in four, at random) also kill the restarted server again
//! during its recovery. After each restart the harness checks:
//!
//! 1. **Nothing acknowledged is lost.** Every receipt any client ever got is
//!    in the log at its seq, with the same leaf bytes and leaf hash, and the
//!    payload that was submitted; its signed checkpoint (verified with the
//!    operator key) is a prefix of the log: the log is at least that long and
//!    its first `size` leaves have that root. So every batch a caller heard
//!    of is there whole.
//! 2. **The store verifies.** The server started, so its full start-up check
//!    (every leaf re-hashed, the chain, every stored tree node, the head, the
//!    head record, the governance replay) passed; the harness recomputes the
//!    chain and the root of everything GetEntries returns; and `verify
//!    --data-dir` exits 0 (after cycles 1, 2, 4, 8, ... and the last: a full
//!    audit of a growing log takes seconds in a debug build).
//! 3. **No partial batch is visible.** GetEntries returns exactly as many
//!    entries as the latest signed checkpoint says, and nothing beyond;
//!    every entry after the bootstrap is an event the harness submitted,
//!    once; receipts that share a checkpoint share one `received_at` (one
//!    batch); the log extends the one checked after the previous cycle.
//!    Entries committed whose callers got no answer (killed between the sync
//!    and the reply) are allowed, and counted.
//!
//! `CEASEFIRE_CRASH_CYCLES` sets the cycles (default 5, for CI);
//! `CEASEFIRE_CRASH_SEED` replays the random choices of a run (the kill
//! delays and early kills; the moment a kill lands in the server's work
//! also depends on timing). `.ci/crash` runs 25 cycles. Every wait is
//! bounded, and a server left running is killed when the test ends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ceasefire_core::checkpoint::{open_checkpoint, NoteVerifier};
use ceasefire_core::leaf::Leaf;
use ceasefire_core::merkle::Hash;
use ceasefire_grpc::client::{self, ClientTls};
use ceasefire_grpc::proto::{Receipt, SignedEvent};
use ceasefire_ledger::dev;
use ceasefire_node::storage::Store;
use ceasefire_testkit::fixture::{get_entries, leaf_hash, Client};
use ceasefire_testkit::harness::{command, run_bounded, seed_from, Rng, Serve, Started};
use ceasefire_testkit::scenario::{Scenario, BOOTSTRAP_ENTRIES};
use sha2::{Digest, Sha256};
use tonic::Code;

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// Concurrent submitting clients.
const CLIENTS: usize = 6;
/// Cycles when `CEASEFIRE_CRASH_CYCLES` is not set.
const DEFAULT_CYCLES: u64 = 5;
/// The kill comes this long (ms) after the cycle's first receipt.
const KILL_DELAY_MS: std::ops::RangeInclusive<u64> = 0..=1000;
/// An early kill comes this long (ms) after the restarted binary was spawned.
const EARLY_KILL_MS: std::ops::RangeInclusive<u64> = 0..=120;
/// How long the binary may take to start serving (it re-verifies the store).
const START_WAIT: Duration = Duration::from_secs(60);
/// How long one Submit may take before the test calls it a hang (generous:
/// six clients share two cores with a debug-build server, and a hang is
/// failed by this test only before the kill; after it, see [`Ended`]).
const CALL_WAIT: Duration = Duration::from_secs(60);
/// How long the first receipt of a cycle may take.
const FIRST_RECEIPT_WAIT: Duration = Duration::from_secs(30);
/// How long `verify --data-dir` may take.
const VERIFY_WAIT: Duration = Duration::from_secs(300);

/// How a submitting client ended: the call that failed, and whether the
/// harness had begun the kill by then. Every event is valid, so a failure
/// before the kill is a server error (or a hang past [`CALL_WAIT`]) and
/// fails the test; at or after it, only a transport's codes may end a
/// call (a connection reset surfaces as UNAVAILABLE, UNKNOWN, INTERNAL or
/// CANCELLED depending on where in the call it lands; a call the transport
/// never saw end, as the test's own deadline).
struct Ended {
    status: tonic::Status,
    /// `killed` was set when the call failed. It is set just before
    /// SIGKILL, so a call the kill broke always sees it set.
    after_kill: bool,
}

/// The codes a call broken by the kill may end with.
fn is_transport_code(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
    )
}

/// What one submitting client saw in one cycle.
struct Submitted {
    receipts: Vec<(SignedEvent, Receipt)>,
    /// The failure that ended the client.
    ended: Ended,
}

/// Submits fresh observations until a call fails; every payload is noted in
/// `submitted` before it is sent.
async fn submit_until_failure(
    mut ledger: Client,
    dev: Scenario,
    name: String,
    submitted: Arc<Mutex<HashSet<Vec<u8>>>>,
    first_receipt: Arc<tokio::sync::Notify>,
    killed: Arc<AtomicBool>,
) -> Submitted {
    let mut receipts = Vec::new();
    for i in 0u64.. {
        let signed = dev
            .observation()
            .narrative(&format!("{name} report {i}"))
            .signed();
        submitted
            .lock()
            .expect("the payload set is poisoned")
            .insert(signed.payload.clone());
        let status = match tokio::time::timeout(CALL_WAIT, ledger.submit(signed.clone())).await {
            Ok(Ok(receipt)) => {
                receipts.push((signed, receipt.into_inner()));
                first_receipt.notify_one();
                continue;
            }
            Ok(Err(status)) => status,
            Err(_) => tonic::Status::deadline_exceeded(format!(
                "the test's deadline: no answer to a Submit within {CALL_WAIT:?}"
            )),
        };
        let after_kill = killed.load(Ordering::SeqCst);
        return Submitted {
            receipts,
            ended: Ended { status, after_kill },
        };
    }
    unreachable!("a client submits until a call fails")
}

/// RFC 6962 roots of every prefix of a list of leaf hashes, computed here
/// (not with the crate's Merkle code): the right edge of complete subtrees.
struct Edge {
    /// (level, hash) of complete subtrees, left to right, levels decreasing.
    stack: Vec<(u32, Hash)>,
}

impl Edge {
    fn new() -> Edge {
        Edge { stack: Vec::new() }
    }

    fn push(&mut self, leaf_hash: Hash) {
        let mut node = (0u32, leaf_hash);
        while let Some(&(level, left)) = self.stack.last() {
            if level != node.0 {
                break;
            }
            self.stack.pop();
            node = (level + 1, children(&left, &node.1));
        }
        self.stack.push(node);
    }

    /// MTH of the leaves pushed so far.
    fn root(&self) -> Hash {
        let mut hashes = self.stack.iter().rev().map(|(_, hash)| *hash);
        match hashes.next() {
            None => Sha256::digest([]).into(),
            Some(first) => hashes.fold(first, |right, left| children(&left, &right)),
        }
    }
}

fn children(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// A checkpoint note's (size, root), its signature verified.
fn open_note(note: &str, verifier: &NoteVerifier) -> (u64, Hash) {
    let body = open_checkpoint(note, verifier)
        .unwrap_or_else(|error| panic!("a checkpoint does not verify: {error}\n{note}"));
    (body.tree_size, body.root_hash)
}

/// What the harness knows across cycles.
struct Known {
    /// Opens the dev ledger's checkpoints (its origin, the operator key).
    verifier: NoteVerifier,
    /// Every receipt any client got, with the event it answered.
    receipts: Vec<(SignedEvent, Receipt)>,
    /// Every payload ever sent, answered or not.
    submitted: Arc<Mutex<HashSet<Vec<u8>>>>,
    /// (size, root) of the log checked after the previous cycle.
    last_checked: (u64, Hash),
    /// Receipt checkpoint notes already verified (a signature check costs
    /// milliseconds in a debug build), with their (size, root).
    notes: HashMap<String, (u64, Hash)>,
}

/// The checks after a restart (1 and 3 of the module doc, and the
/// recomputation of 2). Returns the log's size and how many of its entries
/// no client heard of.
async fn check_log(url: &str, known: &mut Known, cycle: u64) -> (u64, u64) {
    let channel = client::channel(url, &ClientTls::default())
        .await
        .expect("cannot connect to the restarted server");
    let mut ledger = client::ledger_client(channel);
    let note = ledger
        .get_checkpoint(ceasefire_grpc::proto::GetCheckpointRequest::default())
        .await
        .expect("GetCheckpoint failed")
        .into_inner()
        .note;
    let (size, root) = open_note(&note, &known.verifier);

    // Exactly the checkpoint's entries, in order, and nothing beyond.
    let entries = get_entries(&mut ledger, 0, size + 1000)
        .await
        .expect("GetEntries failed");
    assert_eq!(
        entries.len() as u64,
        size,
        "cycle {cycle}: GetEntries returned {} entries under a checkpoint of {size}",
        entries.len()
    );
    match get_entries(&mut ledger, size, size + 1000).await {
        Err(status) => assert_eq!(
            status.code(),
            Code::OutOfRange,
            "cycle {cycle}: reading past the checkpoint: {status:?}"
        ),
        Ok(beyond) => panic!(
            "cycle {cycle}: {} entries are visible past the checkpoint of {size}",
            beyond.len()
        ),
    }

    // The chain, the root of every prefix a receipt or the last cycle
    // named, and every entry an event the harness sent, once.
    let mut wanted: BTreeMap<u64, Option<Hash>> = BTreeMap::new();
    let receipt_notes = &mut known.notes;
    for (_, receipt) in &known.receipts {
        let note = &receipt
            .checkpoint
            .as_ref()
            .expect("a receipt without a checkpoint")
            .note;
        if !receipt_notes.contains_key(note) {
            let opened = open_note(note, &known.verifier);
            receipt_notes.insert(note.clone(), opened);
        }
        wanted.insert(receipt_notes[note].0, None);
    }
    wanted.insert(known.last_checked.0, None);
    let submitted = known
        .submitted
        .lock()
        .expect("the payload set is poisoned")
        .clone();
    let mut seen_payloads = HashSet::new();
    let mut edge = Edge::new();
    let mut prev_leaf_hash = [0u8; 32];
    let mut last_received_at = i64::MIN;
    let mut leaf_hashes = Vec::with_capacity(entries.len());
    if let Some(root) = wanted.get_mut(&0) {
        *root = Some(edge.root());
    }
    for (index, entry) in entries.iter().enumerate() {
        let seq = index as u64;
        assert_eq!(entry.seq, seq, "cycle {cycle}: entries out of order");
        let leaf = Leaf::decode(&entry.leaf)
            .unwrap_or_else(|error| panic!("cycle {cycle}: entry {seq} does not decode: {error}"));
        assert_eq!(
            leaf.seq, seq,
            "cycle {cycle}: entry {seq} names another seq"
        );
        assert_eq!(
            leaf.prev_leaf_hash, prev_leaf_hash,
            "cycle {cycle}: entry {seq} breaks the chain"
        );
        assert!(
            leaf.received_at_micros >= last_received_at,
            "cycle {cycle}: entry {seq} goes back in time"
        );
        if seq >= BOOTSTRAP_ENTRIES {
            assert!(
                submitted.contains(&leaf.payload),
                "cycle {cycle}: entry {seq} is not an event the harness submitted"
            );
            assert!(
                seen_payloads.insert(leaf.payload.clone()),
                "cycle {cycle}: entry {seq} repeats an earlier event"
            );
        }
        let hash = leaf_hash(&entry.leaf);
        edge.push(hash);
        leaf_hashes.push(hash);
        prev_leaf_hash = hash;
        last_received_at = leaf.received_at_micros;
        if let Some(root) = wanted.get_mut(&(seq + 1)) {
            *root = Some(edge.root());
        }
    }
    assert_eq!(
        edge.root(),
        root,
        "cycle {cycle}: the entries do not hash to the signed checkpoint's root"
    );

    // The log extends the one checked last time.
    let (last_size, last_root) = known.last_checked;
    assert_eq!(
        wanted.get(&last_size).copied().flatten(),
        Some(last_root),
        "cycle {cycle}: the log (size {size}) does not extend the one checked after the previous cycle (size {last_size})"
    );

    // Every receipt: its entry, unchanged, and its checkpoint, a prefix.
    let mut batches: HashMap<u64, i64> = HashMap::new();
    let mut acknowledged = HashSet::new();
    for (signed, receipt) in &known.receipts {
        let seq = receipt.seq;
        let note = &receipt.checkpoint.as_ref().expect("checked above").note;
        let (receipt_size, receipt_root) = known.notes[note];
        assert!(
            seq < receipt_size,
            "cycle {cycle}: receipt for {seq} under a checkpoint of {receipt_size}"
        );
        assert!(
            acknowledged.insert(seq),
            "cycle {cycle}: seq {seq} was acknowledged twice"
        );
        assert!(
            receipt_size <= size,
            "cycle {cycle}: acknowledged checkpoint of {receipt_size} entries, the log has {size}: acknowledged entries lost"
        );
        assert_eq!(
            wanted.get(&receipt_size).copied().flatten(),
            Some(receipt_root),
            "cycle {cycle}: the log's first {receipt_size} entries are not the acknowledged checkpoint's"
        );
        let entry = &entries[seq as usize];
        assert_eq!(
            entry.leaf, receipt.leaf,
            "cycle {cycle}: entry {seq} differs from its receipt"
        );
        assert_eq!(
            leaf_hashes[seq as usize].to_vec(),
            receipt.leaf_hash,
            "cycle {cycle}: entry {seq}'s leaf hash differs from its receipt"
        );
        let leaf = Leaf::decode(&entry.leaf).expect("decoded above");
        assert_eq!(
            leaf.payload, signed.payload,
            "cycle {cycle}: entry {seq} holds another event than the one acknowledged"
        );
        // One batch, one received_at.
        let at = *batches
            .entry(receipt_size)
            .or_insert(leaf.received_at_micros);
        assert_eq!(
            at, leaf.received_at_micros,
            "cycle {cycle}: receipts under one checkpoint ({receipt_size}) carry different received_at"
        );
    }
    known.last_checked = (size, root);
    let unanswered = size - BOOTSTRAP_ENTRIES - acknowledged.len() as u64;
    (size, unanswered)
}

/// `verify --data-dir`, which must exit 0 (the server may be running: it
/// reads a private copy).
fn verify_data_dir(data: &Path, scratch: &Path, cycle: u64) -> Duration {
    let started = Instant::now();
    let output = run_bounded(
        command(BINARY, &[&"verify", &"--data-dir", &data]),
        scratch,
        VERIFY_WAIT,
    );
    assert!(
        output.status.success(),
        "cycle {cycle}: verify --data-dir failed ({}):\n{}{}",
        output.status,
        output.stdout,
        output.stderr
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_acknowledged_and_shows_no_partial_batch() {
    let seed = seed_from("CEASEFIRE_CRASH_SEED");
    let cycles: u64 = std::env::var("CEASEFIRE_CRASH_CYCLES")
        .ok()
        .map(|text| text.parse().expect("CEASEFIRE_CRASH_CYCLES is a count"))
        .unwrap_or(DEFAULT_CYCLES);
    assert!(cycles >= 1, "CEASEFIRE_CRASH_CYCLES must be at least 1");
    eprintln!("crash: seed {seed}, {cycles} cycles (CEASEFIRE_CRASH_SEED={seed} CEASEFIRE_CRASH_CYCLES={cycles} replays the choices)");
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let data = dir.path().join("data");
    let log = |name: String| dir.path().join(name);

    let mut serve = Serve::spawn(BINARY, &data, &["--dev"], log("serve-0.stderr".into()))
        .expect("cannot run serve");
    let bootstrap_size = serve
        .wait_ready(START_WAIT)
        .await
        .expect("serve did not start");
    assert_eq!(bootstrap_size, BOOTSTRAP_ENTRIES);
    // The keys `serve --dev` wrote.
    let dev = dev::scenario(&dev::ensure_dev_keys(&data).expect("cannot load the dev keys"));
    let mut known = Known {
        verifier: dev.note_verifier(),
        receipts: Vec::new(),
        submitted: Arc::new(Mutex::new(HashSet::new())),
        last_checked: (0, Sha256::digest([]).into()),
        notes: HashMap::new(),
    };
    let mut early_kills = 0;
    let mut unanswered_total = 0;
    let mut verified = Vec::new();
    let mut size = bootstrap_size;

    for cycle in 1..=cycles {
        // Load.
        let cycle_started = Instant::now();
        let first_receipt = Arc::new(tokio::sync::Notify::new());
        let killed = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for client_index in 0..CLIENTS {
            let channel = client::channel(&serve.url, &ClientTls::default())
                .await
                .expect("cannot connect to the server");
            tasks.push(tokio::spawn(submit_until_failure(
                client::ledger_client(channel),
                dev.clone(),
                format!("cycle {cycle} client {client_index}"),
                known.submitted.clone(),
                first_receipt.clone(),
                killed.clone(),
            )));
        }
        tokio::time::timeout(FIRST_RECEIPT_WAIT, first_receipt.notified())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "cycle {cycle}: no receipt within {FIRST_RECEIPT_WAIT:?}:\n{}",
                    serve.stderr()
                )
            });

        let first_receipt_after = cycle_started.elapsed();
        // The crash.
        let delay = rng.between(KILL_DELAY_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        killed.store(true, Ordering::SeqCst);
        serve.kill().expect("cannot SIGKILL serve");
        let mut receipts_this_cycle = 0;
        for task in tasks {
            let submitted = tokio::time::timeout(CALL_WAIT + Duration::from_secs(30), task)
                .await
                .expect("a client did not stop after the kill")
                .expect("a client panicked");
            let Ended { status, after_kill } = &submitted.ended;
            // Every event is valid: only the kill may end a client.
            assert!(
                *after_kill,
                "cycle {cycle} (seed {seed}): a Submit of a valid event failed before the kill: \
                 {status:?}\n{}",
                serve.stderr()
            );
            assert!(
                is_transport_code(status.code()),
                "cycle {cycle} (seed {seed}): a Submit in flight at the kill ended with {status:?}, \
                 not a transport error"
            );
            receipts_this_cycle += submitted.receipts.len();
            known.receipts.extend(submitted.receipts);
        }

        // Restart, sometimes killing the recovery itself first.
        let early = rng.below(4) == 0;
        if early {
            let at = rng.between(EARLY_KILL_MS);
            let mut doomed = Serve::spawn(
                BINARY,
                &data,
                &["--dev"],
                log(format!("serve-{cycle}-early.stderr")),
            )
            .expect("cannot run serve");
            tokio::time::sleep(Duration::from_millis(at)).await;
            doomed.kill().expect("cannot SIGKILL serve");
            early_kills += 1;
        }
        let restart_started = Instant::now();
        serve = Serve::spawn(
            BINARY,
            &data,
            &["--dev"],
            log(format!("serve-{cycle}.stderr")),
        )
        .expect("cannot run serve");
        match serve.started(START_WAIT).await.expect("serve hung") {
            Started::Serving(_) => {}
            Started::Exited(status) => panic!(
                "cycle {cycle} (seed {seed}): the server refused to restart after SIGKILL ({status}):\n{}",
                serve.stderr()
            ),
        }

        let restart_time = restart_started.elapsed();
        // The checks.
        let check_started = Instant::now();
        let (new_size, unanswered) = check_log(&serve.url, &mut known, cycle).await;
        let check_time = check_started.elapsed();
        let verify_account = if cycle.is_power_of_two() || cycle == cycles {
            let time = verify_data_dir(&data, dir.path(), cycle);
            verified.push(cycle);
            format!("; verify --data-dir OK in {:.1} s", time.as_secs_f64())
        } else {
            String::new()
        };
        eprintln!(
            "crash: cycle {cycle}: killed {delay} ms after the first receipt ({:.2} s into the cycle){}; \
             {receipts_this_cycle} receipts; restarted in {:.2} s; log {size} -> {new_size} entries \
             ({unanswered} committed without an answer so far), checked in {:.2} s{verify_account}",
            first_receipt_after.as_secs_f64() + delay as f64 / 1000.0,
            if early { ", and once more during recovery" } else { "" },
            restart_time.as_secs_f64(),
            check_time.as_secs_f64(),
        );
        size = new_size;
        unanswered_total = unanswered;
    }

    // A clean stop, and the store as the last check saw it.
    let status = serve
        .terminate(Duration::from_secs(15))
        .await
        .expect("serve did not stop");
    assert!(
        status.success(),
        "serve exited with {status} after SIGTERM:\n{}",
        serve.stderr()
    );
    let store = Store::open(&data).expect("cannot open the store after the run");
    let head = store
        .verify()
        .expect("the store does not verify after the run");
    assert_eq!(
        (head.size, head.root),
        known.last_checked,
        "the stopped store is not the log last checked"
    );
    eprintln!(
        "crash: seed {seed}: {cycles} cycles ({early_kills} with a kill during recovery) in {:.1} s; \
         {} acknowledged receipts checked after every restart; {} entries in the final log checked \
         ({unanswered_total} committed without an answer); verify --data-dir OK after cycles {verified:?}",
        started.elapsed().as_secs_f64(),
        known.receipts.len(),
        head.size,
    );
}
