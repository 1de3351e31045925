//! Corruption: a flipped byte anywhere in a data directory must never make
//! the ledger serve a different log without a word.
//!
//! A real dev ledger of a few hundred entries is built (two runs, so sled's
//! log has a region its snapshot covers and a tail it replays on open, and
//! large entries, so it has blob files), stopped cleanly and its directory
//! kept as the original. Then, for chosen positions (sled's `db` log: first
//! segment header, first message, middle, last message, last byte; `conf`;
//! the snapshot; a blob; both slots of the `ledger.head` record; each dev
//! key) and for seeded random ones, one byte of a fresh copy is flipped and
//! the real binary is started on it with `serve --dev` (the mode that would
//! write a new genesis into a store that looks empty). The property, per
//! flip:
//!
//! - `serve` refuses to start: a non-zero exit whose last stderr line names
//!   an entry (`entry N`) or a file inside the data directory; or
//! - `serve` serves exactly the original log: the same signed checkpoint
//!   (size and root, verified with the original operator key), the same
//!   leaves, nothing beyond them;
//! - and `verify --data-dir` on the flipped copy either fails or verified
//!   exactly the original size and root. It runs on every refused flip of
//!   the store (it never reads the dev keys) and, since a full audit takes
//!   seconds in a debug build, on the first flips that `serve` survived
//!   (`CEASEFIRE_CORRUPTION_VERIFY_SERVED`, default 1).
//!
//! Anything else, a different log served or verified, fails the test, after
//! all flips ran, with the seed and each position. The counts of flips
//! refused at start-up, caught by verify only, and harmless are printed.
//!
//! What sled 0.34 does with a flipped byte, as this test found it: a bad
//! `conf`, snapshot or blob checksum is an open error; a bad message in the
//! log tail that it replays on open is taken for a torn write, and it opens
//! the older state before it (losing up to the whole tail) or panics
//! ("tried to serialize Uninitialized"); bytes of superseded log segments
//! are harmless. `storage/head_record.rs` turns the silent rollbacks into
//! refusals, `Store::open` the panics into errors naming the sled directory.
//!
//! A second test covers what a single flip cannot do to the record: the
//! sled directory swapped for an older copy or another ledger's, both slots
//! damaged, the record missing.
//!
//! `CEASEFIRE_CORRUPTION_SEED` replays a run; `CEASEFIRE_CORRUPTION_FLIPS`
//! sets the number of random flips (default 16, besides the chosen ones).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use ceasefire_core::checkpoint::NoteVerifier;
use ceasefire_core::merkle::Hash;
use ceasefire_grpc::proto::{Evidence, SignedEvent};
use ceasefire_ledger::dev;
use ceasefire_node::sequencer::{recover, StartupCheck};
use ceasefire_node::storage::{Store, StoreError, DB_DIR_NAME, RECORD_FILE_NAME};
use ceasefire_testkit::fixture::{checkpoint, get_entries, leaf_hash, Client, TestNode};
use ceasefire_testkit::harness::{
    command, copy_dir, last_line, run_bounded, seed_from, Rng, Serve, Started,
};
use ceasefire_testkit::scenario::Scenario;
use ceasefire_testkit::store_edit;

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// Default number of random flips; the chosen positions come on top.
const DEFAULT_FLIPS: u64 = 16;
/// Default number of flips that `serve` survives on which `verify` runs
/// too (a full audit takes seconds in a debug build; refusals always run it).
const DEFAULT_VERIFY_SERVED: usize = 1;
/// How long `serve` may take to start (or refuse) on a few hundred entries.
const START_WAIT: Duration = Duration::from_secs(30);
/// How long `verify --data-dir` may take on a few hundred entries.
const VERIFY_WAIT: Duration = Duration::from_secs(60);
/// How long `serve` may take to exit after SIGTERM.
const EXIT_WAIT: Duration = Duration::from_secs(15);

/// The ledger every flip is compared with.
struct Original {
    data: PathBuf,
    size: u64,
    root: Hash,
    leaves: Vec<Vec<u8>>,
    /// Opens its checkpoints: the dev origin and the original operator key.
    verifier: NoteVerifier,
}

/// An observation of about 20 KB: ten evidence items with long URIs.
/// Sixteen of them overflow one sled node, so sled writes them as a blob.
fn large_observation(dev: &Scenario, tag: usize) -> SignedEvent {
    let evidence = (0..10)
        .map(|item| Evidence {
            sha256: vec![item as u8; 32],
            media_type: "image/jpeg".into(),
            uri: format!("https://evidence.example/{tag}/{item}/{}", "x".repeat(1900)),
        })
        .collect();
    dev.observation()
        .narrative(&format!("large report {tag}"))
        .evidence(evidence)
        .signed()
}

/// Submits `small` ordinary and `large` big observations from 6 concurrent
/// clients (so batches hold several entries), checking each receipt.
async fn submit_load(node: &TestNode, small: usize, large: usize) {
    let mut tasks = Vec::new();
    for task in 0..6 {
        let mut client: Client = node.new_client().await;
        let dev = node.scenario.clone();
        tasks.push(tokio::spawn(async move {
            for i in (task..small + large).step_by(6) {
                let signed = if i < small {
                    dev.observation().narrative(&format!("report {i}")).signed()
                } else {
                    large_observation(&dev, i)
                };
                let receipt = tokio::time::timeout(Duration::from_secs(20), client.submit(signed))
                    .await
                    .expect("a Submit hung")
                    .expect("a valid observation was refused")
                    .into_inner();
                assert_eq!(receipt.leaf_hash, leaf_hash(&receipt.leaf).to_vec());
            }
        }));
    }
    for task in tasks {
        task.await.expect("a submitting task panicked");
    }
}

/// Builds the original ledger in `dir/original` and stops it cleanly. Its
/// dev keys are on disk, as `serve --dev` keeps them, so that the binary
/// serves it again.
async fn build_original(dir: &Path) -> Original {
    let temp = tempfile::tempdir().expect("cannot create a temporary directory");
    let keys = dev::ensure_dev_keys(temp.path()).expect("cannot create the dev keys");
    let node = TestNode::start_in(temp, dev::scenario(&keys)).await;
    submit_load(&node, 150, 24).await;
    // A second run: sled writes a snapshot on open, so the rest of the log
    // is a tail that sled replays (and checks message by message) on open.
    let node = node.restart().await;
    submit_load(&node, 120, 8).await;
    let body = node.checkpoint().await;
    let leaves: Vec<Vec<u8>> = node
        .read_log()
        .await
        .into_iter()
        .map(|entry| entry.leaf)
        .collect();
    let (temp, dev) = node.stop().await;
    let data = dir.join("original");
    copy_dir(temp.path(), &data);
    Original {
        data,
        size: body.tree_size,
        root: body.root_hash,
        leaves,
        verifier: dev.note_verifier(),
    }
}

/// Every file of the directory with its length, relative paths, sorted.
fn files(root: &Path) -> Vec<(PathBuf, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
        for entry in std::fs::read_dir(dir).expect("cannot read a directory") {
            let entry = entry.expect("cannot read a directory entry");
            let path = entry.path();
            if entry.file_type().expect("no file type").is_dir() {
                walk(root, &path, out);
            } else {
                let len = entry.metadata().expect("no metadata").len();
                out.push((path.strip_prefix(root).unwrap().to_path_buf(), len));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// One byte to flip: which file, where, and with which bit.
#[derive(Clone, Debug)]
struct Flip {
    file: PathBuf,
    offset: u64,
    mask: u8,
    why: String,
}

/// The chosen positions: the start of each kind of file, sled's log at its
/// first segment header, first message and last written byte, the middle of
/// what is written, and a byte of each dev key's secret.
fn chosen_flips(original: &Original, rng: &mut Rng) -> Vec<Flip> {
    let mut flips = Vec::new();
    let mut add = |file: &Path, offset: u64, why: &str, rng: &mut Rng| {
        flips.push(Flip {
            file: file.to_path_buf(),
            offset,
            mask: 1 << rng.below(8),
            why: why.into(),
        });
    };
    let db = Path::new("ledger.sled/db");
    let db_bytes = std::fs::read(original.data.join(db)).expect("no sled log");
    let last_written = db_bytes.iter().rposition(|byte| *byte != 0).unwrap_or(0) as u64;
    add(db, 0, "db: first segment header", rng);
    add(db, 40, "db: first message", rng);
    add(db, last_written / 2, "db: middle of the written log", rng);
    add(db, last_written, "db: last written byte", rng);
    add(
        db,
        last_written.saturating_sub(64),
        "db: the last message",
        rng,
    );
    for (file, len) in files(&original.data) {
        let name = file.to_string_lossy().into_owned();
        if name == "ledger.sled/db" || len == 0 {
            continue;
        }
        if name == "ledger.sled/conf" {
            add(&file, 0, "conf: first byte", rng);
            add(&file, len - 1, "conf: its checksum", rng);
        } else if name.starts_with("ledger.sled/snap.") {
            add(&file, len / 2, "snapshot: middle", rng);
        } else if name.starts_with("ledger.sled/blobs/") {
            add(&file, len / 2, "blob: middle", rng);
        } else if name == "ledger.head" {
            // Two 88-byte slots; one holds the last batch, the other the one before.
            add(&file, 20, "head record: slot 0", rng);
            add(&file, 88 + 20, "head record: slot 1", rng);
        } else if name.ends_with(".key") {
            // Inside the base64 secret, which ends the JSON object.
            add(&file, len - 8, "key file: secret", rng);
        } else {
            add(&file, len / 2, "other file: middle", rng);
        }
    }
    // One blob is enough of each kind.
    let mut seen_blob = false;
    flips.retain(|flip| {
        if flip.why.starts_with("blob") {
            let keep = !seen_blob;
            seen_blob = true;
            keep
        } else {
            true
        }
    });
    flips
}

/// Random positions: half anywhere in any file (weighted by size), half on
/// a written (non-zero) byte of sled's log, where the entries are.
fn random_flips(original: &Original, rng: &mut Rng, count: u64) -> Vec<Flip> {
    let all = files(&original.data);
    let total: u64 = all.iter().map(|(_, len)| len).sum();
    let db_bytes = std::fs::read(original.data.join("ledger.sled/db")).expect("no sled log");
    let mut flips = Vec::new();
    for i in 0..count {
        let mask = 1 << rng.below(8);
        if i % 2 == 0 {
            let mut at = rng.below(total);
            for (file, len) in &all {
                if at < *len {
                    flips.push(Flip {
                        file: file.clone(),
                        offset: at,
                        mask,
                        why: "random".into(),
                    });
                    break;
                }
                at -= len;
            }
        } else {
            let mut offset = rng.below(db_bytes.len() as u64);
            for _ in 0..256 {
                if db_bytes[offset as usize] != 0 {
                    break;
                }
                offset = rng.below(db_bytes.len() as u64);
            }
            flips.push(Flip {
                file: "ledger.sled/db".into(),
                offset,
                mask,
                why: "random written byte of db".into(),
            });
        }
    }
    flips
}

fn flip_byte(path: &Path, offset: u64, mask: u8) {
    let mut bytes = std::fs::read(path).expect("cannot read the file to flip");
    bytes[offset as usize] ^= mask;
    std::fs::write(path, bytes).expect("cannot write the flipped file");
}

/// Whether a refusal line names an entry (`entry N`) or a file inside
/// `data` (the data directory alone is not enough: every error names it).
fn names_seq_or_file(line: &str, data: &Path) -> bool {
    let names_entry = line.match_indices("entry ").any(|(at, text)| {
        line[at + text.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    });
    let inside = format!("{}/", data.display());
    let names_file = line.match_indices(&inside).any(|(at, text)| {
        line[at + text.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric())
    });
    names_entry || names_file
}

/// What one flip did.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Outcome {
    /// `serve` refused to start, naming the entry or the file.
    Refused,
    /// `serve` served the original log; `verify` failed.
    CaughtByVerify,
    /// `serve` served the original log and `verify` passed it.
    Harmless,
}

/// Fails the flip with a message (a violation of the property).
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

/// Runs `serve` (and, when `run_verify` or when `serve` refuses, `verify`)
/// on copies of the original with `flip` applied, and checks the property:
/// the outcome and a one-line account, or the violation.
async fn try_flip(
    original: &Original,
    scratch: &Path,
    flip: &Flip,
    run_verify: bool,
) -> Result<(Outcome, String), String> {
    let case = scratch.join("case");
    if case.exists() {
        std::fs::remove_dir_all(&case).expect("cannot clear the previous case");
    }
    // Two copies: sled's recovery in `serve` may rewrite what it finds
    // (it zeroes the log after a bad message), and verify must see the flip
    // as made.
    let data = case.join("data");
    let pristine = case.join("pristine");
    copy_dir(&original.data, &data);
    flip_byte(&data.join(&flip.file), flip.offset, flip.mask);
    copy_dir(&data, &pristine);
    let context = format!(
        "flip of {:#04x} at {}:{} ({})",
        flip.mask,
        flip.file.display(),
        flip.offset,
        flip.why
    );

    let mut serve = Serve::spawn(BINARY, &data, &["--dev"], case.join("serve.stderr"))
        .expect("cannot run serve");
    let started = serve
        .started(START_WAIT)
        .await
        .unwrap_or_else(|error| panic!("{context}: {error:#}"));
    let refusal =
        match started {
            Started::Exited(status) => {
                let stderr = serve.stderr();
                let line = last_line(&stderr).to_string();
                ensure!(
                    !status.success(),
                    "{context}: serve exited 0 without serving:\n{stderr}"
                );
                ensure!(
                    line.starts_with("error: ") && names_seq_or_file(&line, &data),
                    "{context}: serve refused without naming the entry or the file: {line}"
                );
                Some(line)
            }
            Started::Serving(_) => {
                let channel = ceasefire_grpc::client::channel(&serve.url, &Default::default())
                    .await
                    .expect("cannot connect to serve");
                let mut client = ceasefire_grpc::client::ledger_client(channel);
                let body = checkpoint(&mut client, &original.verifier).await;
                ensure!(
                body.tree_size == original.size && body.root_hash == original.root,
                "{context}: serve SILENTLY serves a different log: {} entries (the original: {}){}",
                body.tree_size,
                original.size,
                if body.root_hash == original.root { "" } else { ", another root" }
            );
                let entries = get_entries(&mut client, 0, original.size + 16)
                    .await
                    .map_err(|status| format!("{context}: GetEntries failed: {status}"))?;
                ensure!(
                    entries.len() as u64 == original.size,
                    "{context}: serve serves {} entries under a checkpoint of {}",
                    entries.len(),
                    original.size
                );
                for (entry, leaf) in entries.iter().zip(&original.leaves) {
                    ensure!(
                        &entry.leaf == leaf,
                        "{context}: serve SILENTLY serves a different entry {}",
                        entry.seq
                    );
                }
                drop(client);
                let status = serve
                    .terminate(EXIT_WAIT)
                    .await
                    .unwrap_or_else(|error| panic!("{context}: {error:#}"));
                ensure!(
                    status.success(),
                    "{context}: serve exited with {status} after SIGTERM:\n{}",
                    serve.stderr()
                );
                None
            }
        };

    // verify refuses fast when the store does not open; a full audit of an
    // intact store takes seconds in a debug build, so it runs only on a
    // sample of the flips serve took in its stride.
    // `verify` never reads the dev keys: a flip there says nothing about it.
    let in_store = !flip.file.starts_with("dev-keys");
    let verify_failed = if in_store && (refusal.is_some() || run_verify) {
        let verify = run_bounded(
            command(BINARY, &[&"verify", &"--json", &"--data-dir", &pristine]),
            &case,
            VERIFY_WAIT,
        );
        if verify.status.success() {
            let report: serde_json::Value = serde_json::from_str(verify.stdout.trim())
                .map_err(|error| format!("{context}: verify printed no JSON ({error})"))?;
            let root = base64::engine::general_purpose::STANDARD.encode(original.root);
            ensure!(
                report["entries"] == original.size && report["root_hash"] == root,
                "{context}: verify PASSED a different log: {} entries, root {} (the original: {} entries, root {root})",
                report["entries"],
                report["root_hash"],
                original.size
            );
            Some(None)
        } else {
            Some(Some(verify.last_stderr_line().to_string()))
        }
    } else {
        None
    };
    let verify_account = match &verify_failed {
        None => "verify not run".to_string(),
        Some(None) => "verify passed the original log".to_string(),
        Some(Some(line)) => format!("verify failed: {line}"),
    };
    Ok(match (refusal, verify_failed) {
        (Some(line), _) => (
            Outcome::Refused,
            format!("{context}: refused: {line}; {verify_account}"),
        ),
        (None, Some(Some(_))) => (
            Outcome::CaughtByVerify,
            format!("{context}: served the original log; {verify_account}"),
        ),
        (None, _) => (
            Outcome::Harmless,
            format!("{context}: harmless, served the original log; {verify_account}"),
        ),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_refused_or_harmless_and_never_serves_another_log() {
    let seed = seed_from("CEASEFIRE_CORRUPTION_SEED");
    let random: u64 = std::env::var("CEASEFIRE_CORRUPTION_FLIPS")
        .ok()
        .map(|text| text.parse().expect("CEASEFIRE_CORRUPTION_FLIPS is a count"))
        .unwrap_or(DEFAULT_FLIPS);
    let verify_served: usize = std::env::var("CEASEFIRE_CORRUPTION_VERIFY_SERVED")
        .ok()
        .map(|text| {
            text.parse()
                .expect("CEASEFIRE_CORRUPTION_VERIFY_SERVED is a count")
        })
        .unwrap_or(DEFAULT_VERIFY_SERVED);
    eprintln!("corruption: seed {seed} (CEASEFIRE_CORRUPTION_SEED={seed} replays this run)");
    let mut rng = Rng::new(seed);
    let scratch = tempfile::tempdir().expect("cannot create a temporary directory");
    let started = std::time::Instant::now();
    let original = build_original(scratch.path()).await;
    eprintln!(
        "corruption: the original built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = std::time::Instant::now();
    let layout = files(&original.data);
    eprintln!(
        "corruption: original log of {} entries; files: {}",
        original.size,
        layout
            .iter()
            .map(|(file, len)| format!("{} ({len} B)", file.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        original.size >= 300,
        "the original is too small to be a test"
    );
    assert!(
        layout
            .iter()
            .any(|(file, _)| file.starts_with("ledger.sled/blobs")),
        "the original has no sled blob files: large entries no longer make any"
    );

    let mut flips = chosen_flips(&original, &mut rng);
    flips.extend(random_flips(&original, &mut rng, random));
    let mut counts = [0usize; 3];
    let mut violations = Vec::new();
    let mut verified_served = 0;
    for flip in &flips {
        let run_verify = verified_served < verify_served;
        let flip_started = std::time::Instant::now();
        match try_flip(&original, scratch.path(), flip, run_verify).await {
            Ok((outcome, account)) => {
                eprintln!(
                    "corruption: {account} [{:.2} s]",
                    flip_started.elapsed().as_secs_f64()
                );
                counts[outcome as usize] += 1;
                if outcome != Outcome::Refused && run_verify && !flip.file.starts_with("dev-keys") {
                    verified_served += 1;
                }
            }
            Err(violation) => {
                eprintln!("corruption: VIOLATION: {violation}");
                violations.push(violation);
            }
        }
    }
    eprintln!(
        "corruption: seed {seed}: {} flips in {:.1} s: {} refused at start-up, {} caught by verify only, \
         {} harmless (the original log served; {verified_served} of the flips serve survived also verified)",
        flips.len(),
        started.elapsed().as_secs_f64(),
        counts[Outcome::Refused as usize],
        counts[Outcome::CaughtByVerify as usize],
        counts[Outcome::Harmless as usize]
    );
    assert!(
        violations.is_empty(),
        "seed {seed}: {} of {} flips broke the property (CEASEFIRE_CORRUPTION_SEED={seed} replays them):\n{}",
        violations.len(),
        flips.len(),
        violations.join("\n")
    );
}

/// A copy of `data` whose sled directory is replaced by `sled_from`'s.
fn with_sled_of(data: &Path, sled_from: &Path) -> tempfile::TempDir {
    let case = tempfile::tempdir().expect("cannot create a temporary directory");
    copy_dir(data, case.path());
    let sled = case.path().join(DB_DIR_NAME);
    std::fs::remove_dir_all(&sled).expect("cannot remove the sled directory");
    copy_dir(&sled_from.join(DB_DIR_NAME), &sled);
    case
}

/// The head record's other cases, on whole stores rather than bytes: the
/// sled directory swapped for an older copy of itself (a partial restore)
/// or for another ledger's; both slots of the record damaged; the record
/// deleted (as for a store written before the record existed: accepted, and
/// recorded again). And a store that kept its head but lost its last leaf,
/// refused by `--startup-check head` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_its_head_record_or_its_head_is_refused() {
    let node = TestNode::start().await;
    submit_load(&node, 12, 0).await;
    let (dir, dev) = node.stop().await;
    let older = tempfile::tempdir().expect("cannot create a temporary directory");
    copy_dir(dir.path(), older.path());
    let node = TestNode::resume(dir, dev).await;
    submit_load(&node, 12, 0).await;
    let size = node.checkpoint().await.tree_size;
    let (dir, _dev) = node.stop().await;
    let other = TestNode::start().await;
    submit_load(&other, 40, 0).await;
    let other_size = other.checkpoint().await.tree_size;
    let (other_dir, _other_dev) = other.stop().await;
    let record = |case: &Path| case.join(RECORD_FILE_NAME).display().to_string();

    // An older copy of the same sled directory: the entries since are lost.
    let case = with_sled_of(dir.path(), older.path());
    match Store::open(case.path()).err() {
        Some(
            error @ StoreError::LostEntries {
                recorded, found, ..
            },
        ) => {
            assert_eq!((recorded, found), (size, size - 12));
            assert!(error.to_string().contains(&record(case.path())), "{error}");
        }
        other => panic!("an older sled directory was not refused: {other:?}"),
    }

    // Another, longer ledger's sled directory: long enough, but not this log.
    let case = with_sled_of(dir.path(), other_dir.path());
    match Store::open(case.path()).err() {
        Some(StoreError::RecordMismatch {
            size: recorded,
            store_size,
            ..
        }) => assert_eq!((recorded, store_size), (size, other_size)),
        other => panic!("another ledger's sled directory was not refused: {other:?}"),
    }

    // Both slots damaged: the store is refused, naming the record.
    let case = tempfile::tempdir().expect("cannot create a temporary directory");
    copy_dir(dir.path(), case.path());
    flip_byte(&case.path().join(RECORD_FILE_NAME), 30, 0x01);
    flip_byte(&case.path().join(RECORD_FILE_NAME), 88 + 30, 0x01);
    match Store::open(case.path()).err() {
        Some(error @ StoreError::BadRecord { .. }) => {
            assert!(error.to_string().contains(&record(case.path())), "{error}")
        }
        other => panic!("a record with both slots damaged was accepted: {other:?}"),
    }

    // No record: refused, naming it; adopted on request, and recorded for
    // the next open.
    let case = tempfile::tempdir().expect("cannot create a temporary directory");
    copy_dir(dir.path(), case.path());
    std::fs::remove_file(case.path().join(RECORD_FILE_NAME)).expect("no record to remove");
    match Store::open(case.path()).err() {
        Some(error @ StoreError::BadRecord { .. }) => {
            let text = error.to_string();
            assert!(text.contains(&record(case.path())), "{text}");
            assert!(text.contains(&format!("holds {size} entries")), "{text}");
        }
        other => panic!("a store with entries and no record was accepted: {other:?}"),
    }
    assert!(!case.path().join(RECORD_FILE_NAME).exists());
    let scratch = tempfile::tempdir().expect("cannot create a temporary directory");
    let data_dir = case.path();
    let rebuild = |extra: &[&str]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"rebuild-projections", &"--data-dir", &data_dir];
        args.extend(extra.iter().map(|arg| arg as &dyn AsRef<std::ffi::OsStr>));
        run_bounded(command(BINARY, &args), scratch.path(), VERIFY_WAIT)
    };
    let refused = rebuild(&[]);
    assert!(!refused.status.success(), "{}", refused.stdout);
    assert!(
        refused.last_stderr_line().contains("--adopt-head"),
        "{}",
        refused.stderr
    );
    let adopted = rebuild(&["--adopt-head"]);
    assert!(adopted.status.success(), "{}", adopted.stderr);
    assert!(case.path().join(RECORD_FILE_NAME).exists());
    let store = Store::open(case.path()).expect("the adopted store does not open");
    assert_eq!(
        store.verify().expect("the store does not verify").size,
        size
    );
    drop(store);
    let swapped = with_sled_of(case.path(), older.path());
    assert!(
        matches!(
            Store::open(swapped.path()).err(),
            Some(StoreError::LostEntries { .. })
        ),
        "the record written for a store without one does not guard it"
    );

    // The head and the record intact but the last leaf gone (what sled's
    // recovery of a damaged log was seen to do): both start-up checks
    // refuse it, at that entry.
    let case = tempfile::tempdir().expect("cannot create a temporary directory");
    copy_dir(dir.path(), case.path());
    {
        let db = sled::open(case.path().join(DB_DIR_NAME)).expect("cannot open the copy");
        let tree = db.open_tree("ledger").expect("no ledger tree");
        store_edit::remove_leaf(&tree, size - 1);
        db.flush().expect("cannot flush the copy");
    }
    let store = Store::open(case.path()).expect("the record check passes: the head is intact");
    for check in [StartupCheck::Head, StartupCheck::Full] {
        match recover(&store, check).err() {
            Some(StoreError::Corrupt { seq, .. }) => assert_eq!(seq, size - 1, "{check:?}"),
            other => panic!("{check:?}: a store without its last leaf was accepted: {other:?}"),
        }
    }
}
