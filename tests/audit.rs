//! The auditor (`audit`, `verify`) against real logs.
//!
//! An honest log is built once per test process through a real node (the dev
//! bootstrap, a second monitor, 38 observations, an amendment, a dispute, and
//! late in the log a revocation of the second monitor's key), the node is
//! shut down, and the closed data directory and a tiles export of it are
//! kept. The honest log verifies from a server, the data directory and the
//! export, and `verify` exits 0 for each.
//!
//! Every tampering case edits a private copy of the real store (through sled,
//! as an attacker with the disk would) or of the real export, and must be
//! caught by `audit` at the right entry with a precise reason, and by the
//! `verify` binary with exit code 1. `verify` exits 2 when it cannot run.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use ceasefire_audit::sources::{ServerSource, TilesSource};
use ceasefire_audit::{audit, AuditError, AuditFailure, AuditOptions, AuditReport};
use ceasefire_core::checkpoint::{parse_unverified, CheckpointBody};
use ceasefire_core::leaf::Leaf;
use ceasefire_core::merkle::Hash;
use ceasefire_core::tiles;
use ceasefire_grpc::client::{sign, ClientTls};
use ceasefire_grpc::proto::{
    event::Body, GetCheckpointRequest, Observation, Receipt, Role, SignedEvent,
};
use ceasefire_ledger::dev;
use ceasefire_node::export::export;
use ceasefire_node::storage::{Store, StoreError, DB_DIR_NAME};
use ceasefire_node::DataDirSource;
use ceasefire_testkit::fixture::{Client, TestNode};
use ceasefire_testkit::harness::{command, copy_dir, free_port};
use ceasefire_testkit::scenario::{
    bodies, checkpoint_note, seeded_key, Member, RawLog, Scenario, BOOTSTRAP_ENTRIES,
    DEV_AGREEMENT_ID, DEV_MONITOR, DEV_ORIGIN, DEV_SIGNATORY,
};
use ceasefire_testkit::store_edit;
use tempfile::TempDir;

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// The second monitor, whose key is revoked late in the honest log.
const MONITOR_B: &str = "monitor-b";

/// The honest log, closed, and what the cases need to know about it.
struct Honest {
    /// Data directory: `ledger.sled` (closed) and `dev-keys/`. Never written
    /// after it is built: every case works on a copy.
    dir: PathBuf,
    /// A tiles export of it.
    tiles: PathBuf,
    /// Entries (the checkpoint's tree size).
    size: u64,
    /// The signed checkpoint note.
    note: String,
    root: Hash,
    /// Every leaf, in order.
    leaves: Vec<Vec<u8>>,
    /// The dev ledger's keys and the second monitor's, revoked at
    /// `revoked_at`.
    scenario: Scenario,
    revoked_at: u64,
}

fn honest() -> &'static Honest {
    static HONEST: OnceLock<Honest> = OnceLock::new();
    HONEST.get_or_init(|| {
        // Built on a runtime of its own, on a thread of its own: the tests
        // asking for it may already run inside a runtime.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("cannot start a runtime")
                .block_on(build_honest())
        })
        .join()
        .expect("building the honest log failed")
    })
}

async fn submit(client: &mut Client, signed: SignedEvent, seq: u64) -> Receipt {
    let receipt = client
        .submit(signed)
        .await
        .unwrap_or_else(|status| panic!("entry {seq} was refused: {status:?}"))
        .into_inner();
    assert_eq!(receipt.seq, seq, "seqs are not contiguous");
    receipt
}

async fn build_honest() -> Honest {
    // The dev keys on disk, as `serve --dev` keeps them: the directory is a
    // development ledger the binary can serve again.
    let temporary = tempfile::tempdir().expect("cannot create a temporary directory");
    let keys = dev::ensure_dev_keys(temporary.path()).expect("cannot create the dev keys");
    let node = TestNode::start_in(temporary, dev::scenario(&keys)).await;
    let mut client = node.client.clone();
    let scenario = node.scenario.clone().with_member(
        Member::new(MONITOR_B, Role::Monitor, seeded_key(0xb0)).named("Second monitoring mission"),
    );
    let mut seq = BOOTSTRAP_ENTRIES;

    let register = scenario.govern(scenario.registration(MONITOR_B));
    submit(&mut client, register, seq).await;
    seq += 1;

    let mut receipts = Vec::new();
    for number in 0..36 {
        let author = if number % 3 == 2 {
            MONITOR_B
        } else {
            DEV_MONITOR
        };
        let observation = scenario
            .observation()
            .by(author)
            .narrative(&format!("report {number}"))
            .event();
        let signed = sign(&observation, &[scenario.key(author)]);
        let receipt = submit(&mut client, signed, seq).await;
        receipts.push((observation, receipt));
        seq += 1;
    }

    // The dev monitor corrects its first report; the signatory disputes
    // one of the second monitor's.
    let (first, first_receipt) = &receipts[0];
    let Some(Body::Observation(original)) = &first.body else {
        unreachable!("an observation")
    };
    let correction = Observation {
        quantity: 2,
        narrative: "report 0, corrected".into(),
        ..original.clone()
    };
    let amendment = bodies::correction(
        first_receipt.seq,
        &first_receipt.leaf_hash,
        correction,
        "two explosions, not three",
    );
    submit(&mut client, scenario.signed(DEV_MONITOR, amendment), seq).await;
    seq += 1;
    let (_, disputed) = &receipts[2];
    let dispute = bodies::dispute(
        disputed.seq,
        &disputed.leaf_hash,
        "no firing was heard there",
    );
    submit(&mut client, scenario.signed(DEV_SIGNATORY, dispute), seq).await;
    seq += 1;

    // Late in the log: the second monitor's key is revoked.
    let revoke = bodies::revoke_key(MONITOR_B, scenario.key(MONITOR_B), "the device was lost");
    submit(&mut client, scenario.govern(revoke), seq).await;
    let revoked_at = seq;
    seq += 1;
    for number in 36..38 {
        let observation = scenario
            .observation()
            .narrative(&format!("report {number}"))
            .signed();
        submit(&mut client, observation, seq).await;
        seq += 1;
    }

    let note = client
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .expect("GetCheckpoint failed")
        .into_inner()
        .note;
    let (temporary, _) = node.stop().await;

    // Kept, closed, under the target directory (integration tests may put
    // data there); earlier runs' copies are removed once they are stale.
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if let Ok(entries) = std::fs::read_dir(base) {
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .is_ok_and(|modified| {
                    modified.elapsed().unwrap_or_default() > Duration::from_secs(3600)
                });
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("audit-honest-")
                && stale
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let kept = base.join(format!("audit-honest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&kept);
    let dir = kept.join("data");
    copy_dir(temporary.path(), &dir);
    drop(temporary);

    let (store, snapshot) = Store::open_snapshot(&dir).expect("cannot open the honest store");
    let head = store.head().expect("no head");
    let leaves: Vec<Vec<u8>> = store
        .leaves(0, head.size)
        .map(|item| item.expect("cannot read a leaf").1)
        .collect();
    let tiles = kept.join("tiles");
    export(&store, &tiles).expect("cannot export the honest log");
    // The stored projection head is the fold of the leaves, in the layout
    // `projection_head` writes (tampering cases rely on it).
    let stored_projection = store
        .load_projection()
        .expect("cannot read the projection")
        .expect("no projection");
    let (encoded, digest) = projection_head(&RawLog::from_leaves(leaves.clone()));
    let stored = stored_projection.head;
    assert_eq!(
        digest, stored.digest,
        "the stored projection is not the fold of the log"
    );
    let mut expected = vec![1u8];
    expected.extend_from_slice(&stored.as_of_seq.expect("no as_of_seq").to_be_bytes());
    expected.extend_from_slice(&stored.log_time_micros.to_be_bytes());
    expected.extend_from_slice(&stored.digest);
    assert_eq!(
        encoded, expected,
        "the projection head is not encoded as stored"
    );
    drop(store);
    drop(snapshot);

    let body = parse_unverified(&note).expect("the checkpoint does not parse");
    assert_eq!(body.tree_size, seq, "the checkpoint does not cover the log");
    assert_eq!(leaves.len() as u64, seq);
    assert_eq!(head.size, seq);
    Honest {
        dir,
        tiles,
        size: seq,
        note,
        root: body.root_hash,
        leaves,
        scenario,
        revoked_at,
    }
}

// ---------------------------------------------------------------------------
// Files, stores, leaves, checkpoints.

/// A copy of the whole honest data directory (store and dev keys).
fn honest_copy() -> TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&honest().dir, copy.path());
    copy
}

/// A copy of the honest store, edited through sled (the store closed
/// before and after, as an attacker with the disk would do it).
fn tampered_store(edit: impl FnOnce(&sled::Tree)) -> TempDir {
    let copy = tempfile::tempdir().unwrap();
    let path = copy.path().join(DB_DIR_NAME);
    copy_dir(&honest().dir.join(DB_DIR_NAME), &path);
    {
        let db = sled::open(&path).expect("cannot open the copy with sled");
        let tree = db.open_tree("ledger").expect("no ledger tree");
        edit(&tree);
        tree.flush().unwrap();
        db.flush().unwrap();
    }
    copy
}

/// A copy of the honest tiles export with one file edited.
fn tampered_tiles(path: &str, edit: impl FnOnce(&mut Vec<u8>)) -> TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&honest().tiles, copy.path());
    let file = copy.path().join(path);
    let mut bytes = std::fs::read(&file).unwrap_or_else(|_| panic!("no {path} in the export"));
    edit(&mut bytes);
    std::fs::write(&file, bytes).unwrap();
    copy
}

use store_edit::leaf as get_leaf;

/// Re-encodes leaf `seq` after `change`.
fn edit_leaf(tree: &sled::Tree, seq: u64, change: impl FnOnce(&mut Leaf)) {
    let mut leaf = Leaf::decode(&get_leaf(tree, seq)).unwrap();
    change(&mut leaf);
    store_edit::set_leaf(tree, seq, &leaf.encode());
}

/// The stored projection head (`P`) of a store holding `log`: replays it
/// (every rule checked: a crafted log must be valid) and encodes
/// as_of_seq, log time and digest as the store does (present flag, u64, i64,
/// 32 bytes). Also returns the digest.
fn projection_head(log: &RawLog) -> (Vec<u8>, Hash) {
    let replay = log.replay();
    let projection = &replay.projection;
    let digest = projection.digest();
    let mut head = vec![1u8];
    head.extend_from_slice(&projection.as_of_seq.unwrap().to_be_bytes());
    head.extend_from_slice(&projection.log_time_micros.to_be_bytes());
    head.extend_from_slice(&digest);
    (head, digest)
}

/// Makes the store hold exactly `log` (leaves beyond are removed), with a
/// checkpoint signed by the operator and a matching projection head: a log
/// that is valid in itself.
fn rewrite_log(tree: &sled::Tree, log: &RawLog) {
    store_edit::replace_all_leaves(tree, log.leaves());
    let operator = honest().scenario.operator();
    tree.insert(b"c", log.checkpoint(DEV_ORIGIN, operator).as_bytes())
        .unwrap();
    tree.insert(b"P", projection_head(log).0).unwrap();
}

// ---------------------------------------------------------------------------
// Running the auditor.

fn audit_data_dir(dir: &Path, pin: Option<PathBuf>) -> Result<AuditReport, AuditError> {
    let mut source = DataDirSource::open(dir).expect("cannot open the data directory");
    audit(
        &mut source,
        AuditOptions {
            pin,
            ..AuditOptions::default()
        },
    )
}

fn audit_tiles(dir: &Path) -> Result<AuditReport, AuditError> {
    let mut source = TilesSource::open(dir).expect("cannot open the tiles");
    audit(&mut source, AuditOptions::default())
}

/// The `ceasefire-ledger` binary with `args` (no `CEASEFIRE_LEDGER_*`
/// settings inherited), run to its end.
fn cli<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    command(BINARY, &[])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("cannot run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `verify FLAG SOURCE --json`, which must exit 0 with `"ok": true`.
#[track_caller]
fn cli_verifies(flag: &str, source: &OsStr) -> serde_json::Value {
    let output = cli([
        OsStr::new("verify"),
        OsStr::new(flag),
        source,
        OsStr::new("--json"),
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "verify {flag} failed:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("verify --json printed no JSON");
    assert_eq!(report["ok"], true, "{report}");
    report
}

/// `verify FLAG SOURCE --json` must exit 1 with `"ok": false` and a failure
/// holding every needle.
#[track_caller]
fn cli_fails(flag: &str, source: &Path, needles: &[&str]) {
    let output = cli([
        OsStr::new("verify"),
        OsStr::new(flag),
        source.as_os_str(),
        OsStr::new("--json"),
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "verify {flag} should fail with exit code 1:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("verify --json printed no JSON");
    assert_eq!(report["ok"], false, "{report}");
    let failure = report["failure"].as_str().expect("no failure text");
    for needle in needles {
        assert!(
            failure.contains(needle),
            "the failure {failure:?} does not say {needle:?}"
        );
    }
}

/// The failure of an audit that must fail (not succeed, not fail to run).
#[track_caller]
fn failure(result: Result<AuditReport, AuditError>) -> AuditFailure {
    match result {
        Err(AuditError::Failed(failure)) => failure,
        Err(AuditError::CouldNotRun(error)) => {
            panic!("the audit should fail on the log, but it could not run: {error:#}")
        }
        Ok(report) => panic!("the tampered log verified: {report:?}"),
    }
}

/// An audit that must fail at entry `seq` with a reason holding `needle`.
#[track_caller]
fn expect_entry(result: Result<AuditReport, AuditError>, seq: u64, needle: &str) -> String {
    match failure(result) {
        AuditFailure::Entry { seq: at, reason } => {
            assert_eq!(at, seq, "the failure names the wrong entry: {reason}");
            assert!(
                reason.contains(needle),
                "the reason {reason:?} does not say {needle:?}"
            );
            reason
        }
        other => panic!("expected a failure at entry {seq} ({needle}), got: {other}"),
    }
}

#[track_caller]
fn expect_checkpoint(result: Result<AuditReport, AuditError>, needle: &str) -> String {
    match failure(result) {
        AuditFailure::Checkpoint(message) => {
            assert!(
                message.contains(needle),
                "the checkpoint failure {message:?} does not say {needle:?}"
            );
            message
        }
        other => panic!("expected a checkpoint failure ({needle}), got: {other}"),
    }
}

/// A data-directory audit and `verify --data-dir` must both fail at `seq`.
#[track_caller]
fn caught_at(dir: &Path, seq: u64, needle: &str) {
    expect_entry(audit_data_dir(dir, None), seq, needle);
    cli_fails("--data-dir", dir, &[&format!("entry {seq}: "), needle]);
}

// ---------------------------------------------------------------------------
// The honest log.

#[test]
fn the_honest_log_verifies_from_its_data_directory_and_a_tiles_export() {
    let honest = honest();
    let root = ceasefire_core::key_text(honest.root);
    for report in [
        audit_data_dir(&honest.dir, None).expect("the honest data directory does not verify"),
        audit_tiles(&honest.tiles).expect("the honest export does not verify"),
    ] {
        assert_eq!(report.entries, honest.size, "{}", report.source);
        assert_eq!(report.checkpoint, honest.note);
        assert_eq!(report.root_hash, root);
        assert_eq!(report.agreement_id, DEV_AGREEMENT_ID);
        assert_eq!(report.origin, DEV_ORIGIN);
        assert_eq!(report.parties, 3, "signatory and two monitors");
        assert_eq!(report.observations, 38);
        assert_eq!(report.projection_as_of_seq, Some(honest.size - 1));
        assert!(report.projection_checked, "{}", report.source);
        assert_eq!(report.pin, "none");
    }

    for (flag, source) in [("--data-dir", &honest.dir), ("--tiles", &honest.tiles)] {
        let report = cli_verifies(flag, source.as_os_str());
        assert_eq!(report["entries"], honest.size, "{report}");
        assert_eq!(report["root_hash"], root.as_str(), "{report}");
        assert_eq!(report["projection_checked"], true, "{report}");
    }

    // An export written by the `export` command verifies too (from a copy:
    // opening a store writes to it).
    let data = honest_copy();
    let tiles = tempfile::tempdir().unwrap();
    let output = cli([
        OsStr::new("export"),
        OsStr::new("--tiles"),
        tiles.path().as_os_str(),
        OsStr::new("--data-dir"),
        data.path().as_os_str(),
    ]);
    assert!(
        output.status.success(),
        "export failed: {}",
        text(&output.stderr)
    );
    let report = cli_verifies("--tiles", tiles.path().as_os_str());
    assert_eq!(report["entries"], honest.size, "{report}");
    assert_eq!(report["root_hash"], root.as_str(), "{report}");
}

/// Runs an audit of a server on a blocking thread, as `verify` does.
async fn audit_server(url: &str, pin: Option<PathBuf>) -> Result<AuditReport, AuditError> {
    let mut source = ServerSource::connect(url, &ClientTls::default())
        .await
        .expect("cannot connect to the server");
    tokio::task::spawn_blocking(move || {
        audit(
            &mut source,
            AuditOptions {
                pin,
                ..AuditOptions::default()
            },
        )
    })
    .await
    .expect("the audit panicked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_honest_log_verifies_from_a_server_and_stays_consistent_with_its_pin() {
    let honest = honest();
    let pins = tempfile::tempdir().unwrap();
    let pin = pins.path().join("pin");
    let pinned = audit_data_dir(&honest.dir, Some(pin.clone())).expect("the data dir fails");
    assert_eq!(pinned.pin, "pinned");
    assert_eq!(std::fs::read_to_string(&pin).unwrap(), honest.note);

    let data = honest_copy();
    let keys = dev::ensure_dev_keys(data.path()).expect("cannot load the dev keys");
    let node = TestNode::resume(data, dev::scenario(&keys)).await;
    let url = node.node.url();

    let report = audit_server(&url, Some(pin.clone()))
        .await
        .expect("the honest server does not verify");
    assert_eq!(report.entries, honest.size);
    assert_eq!(report.checkpoint, honest.note);
    assert_eq!(report.pin, "consistent");
    assert!(report.projection_checked);
    assert!(
        report.proofs_checked > 16,
        "{} proofs",
        report.proofs_checked
    );
    assert_eq!(report.observations, 38);

    let command_url = url.clone();
    let report =
        tokio::task::spawn_blocking(move || cli_verifies("--server", OsStr::new(&command_url)))
            .await
            .unwrap();
    assert_eq!(report["entries"], honest.size, "{report}");

    // The log grows: the pinned checkpoint is a prefix of the new one, and
    // the server proves it.
    let mut client = node.client.clone();
    for number in 0..3 {
        client
            .submit(node.signed_observation(&format!("later report {number}")))
            .await
            .expect("a later observation was refused");
    }
    let report = audit_server(&url, Some(pin.clone()))
        .await
        .expect("the grown server does not verify");
    assert_eq!(report.entries, honest.size + 3);
    assert_eq!(report.pin, "consistent");
    assert_ne!(std::fs::read_to_string(&pin).unwrap(), honest.note);
    node.shutdown().await;
}

// ---------------------------------------------------------------------------
// Tampered entries.

#[test]
fn a_flipped_payload_byte_is_caught_at_its_entry() {
    let dir = tampered_store(|tree| edit_leaf(tree, 20, |leaf| leaf.payload[10] ^= 0x01));
    caught_at(dir.path(), 20, "does not verify over this payload");
}

#[test]
fn a_flipped_signature_byte_is_caught_at_its_entry() {
    let dir =
        tampered_store(|tree| edit_leaf(tree, 21, |leaf| leaf.signatures[0].signature[7] ^= 0x80));
    caught_at(dir.path(), 21, "does not verify over this payload");
}

#[test]
fn a_changed_prev_leaf_hash_is_caught_at_its_entry() {
    let dir = tampered_store(|tree| edit_leaf(tree, 22, |leaf| leaf.prev_leaf_hash[31] ^= 0x01));
    caught_at(
        dir.path(),
        22,
        "prev_leaf_hash is not the previous entry's leaf hash",
    );
}

#[test]
fn received_at_going_backwards_is_caught_at_its_entry() {
    let dir = tampered_store(|tree| {
        let previous = Leaf::decode(&get_leaf(tree, 22)).unwrap();
        edit_leaf(tree, 23, |leaf| {
            leaf.received_at_micros = previous.received_at_micros - 1;
        });
    });
    caught_at(dir.path(), 23, "received_at goes backwards");
}

#[test]
fn two_swapped_entries_are_caught_at_the_first() {
    let dir = tampered_store(|tree| {
        let (first, second) = (get_leaf(tree, 24), get_leaf(tree, 25));
        store_edit::set_leaf(tree, 24, &second);
        store_edit::set_leaf(tree, 25, &first);
    });
    caught_at(dir.path(), 24, "leaf says it is entry 25");
}

/// A hole in the store is a verdict on the log (exit 1, naming the entry),
/// not a failure to run: the checkpoint commits to an entry the operator's
/// store no longer holds.
#[test]
fn a_deleted_entry_is_caught_at_its_seq() {
    let dir = tampered_store(|tree| {
        store_edit::remove_leaf(tree, 26);
    });
    caught_at(dir.path(), 26, "missing");
}

#[test]
fn a_deleted_last_entry_is_caught_as_a_short_log() {
    let size = honest().size;
    let dir = tampered_store(|tree| {
        store_edit::remove_leaf(tree, size - 1);
    });
    let message = format!(
        "the checkpoint claims {size} entries but the source holds {}",
        size - 1
    );
    expect_checkpoint(audit_data_dir(dir.path(), None), &message);
    cli_fails("--data-dir", dir.path(), &[&message]);
}

/// An entry the signed checkpoint does not cover is not part of the log the
/// operator committed to: the audit verifies exactly the checkpoint's
/// entries and reports that size (no receipt can name the extra entry: a
/// receipt carries a checkpoint containing it). The store's own check (the
/// node's startup verification) does flag it.
#[test]
fn an_entry_appended_beyond_the_checkpoint_is_not_part_of_the_audited_log() {
    let honest = honest();
    let n = honest.size;
    let dir = tampered_store(|tree| {
        let mut log = RawLog::from_leaves(vec![get_leaf(tree, n - 1)]);
        let extra = log.append(
            &honest
                .scenario
                .observation()
                .narrative("slipped in")
                .signed(),
        );
        store_edit::set_leaf(tree, n, extra);
    });
    let report = audit_data_dir(dir.path(), None).expect("the committed log still verifies");
    assert_eq!(report.entries, n, "the audit went beyond the checkpoint");
    assert_eq!(report.checkpoint, honest.note);
    assert_eq!(report.root_hash, ceasefire_core::key_text(honest.root));
    assert_eq!(report.observations, 38);
    let json = cli_verifies("--data-dir", dir.path().as_os_str());
    assert_eq!(json["entries"], n, "{json}");

    // The copy has sled's files only (an attacker's edit of them), no head
    // record: take its head as it is.
    let store = Store::open_adopting_head(dir.path()).unwrap();
    match store.verify() {
        Err(StoreError::Corrupt { seq, reason }) => {
            assert_eq!(seq, n);
            assert!(reason.contains("beyond the head"), "{reason}");
        }
        other => panic!("the store check missed the extra entry: {other:?}"),
    }
}

/// The same extra entry, with the checkpoint rewritten to cover it: the
/// attacker computes the new root but cannot sign, so the operator's old
/// signature line is all the note carries.
#[test]
fn an_appended_entry_with_an_unsigned_checkpoint_is_caught() {
    let honest = honest();
    let n = honest.size;
    let mut log = RawLog::from_leaves(honest.leaves.clone());
    log.append(
        &honest
            .scenario
            .observation()
            .narrative("slipped in")
            .signed(),
    );
    let signature_line = honest.note.split_once("\n\n").unwrap().1;
    let forged_note = format!(
        "{}\n{signature_line}",
        CheckpointBody {
            origin: DEV_ORIGIN.into(),
            tree_size: n + 1,
            root_hash: log.root(),
        }
        .to_text()
    );
    assert_eq!(parse_unverified(&forged_note).unwrap().tree_size, n + 1);
    let dir = tampered_store(|tree| {
        store_edit::set_leaf(tree, n, &log.leaves()[n as usize]);
        tree.insert(b"c", forged_note.as_bytes()).unwrap();
    });
    let message = expect_checkpoint(
        audit_data_dir(dir.path(), None),
        "not signed by the operator key",
    );
    assert!(message.contains(DEV_ORIGIN), "{message}");
    cli_fails(
        "--data-dir",
        dir.path(),
        &["not signed by the operator key"],
    );
}

/// A valid, well-chained leaf signed by the key revoked earlier, covered by
/// a checkpoint the operator key signed: only the rules can catch it.
#[test]
fn an_entry_signed_by_a_revoked_key_is_caught_at_its_entry() {
    let honest = honest();
    let n = honest.size;
    let mut log = RawLog::from_leaves(honest.leaves.clone());
    log.append(
        &honest
            .scenario
            .observation()
            .by(MONITOR_B)
            .narrative("reported with a lost device")
            .signed(),
    );
    let dir = tampered_store(|tree| {
        store_edit::set_leaf(tree, n, &log.leaves()[n as usize]);
        let note = log.checkpoint(DEV_ORIGIN, honest.scenario.operator());
        tree.insert(b"c", note.as_bytes()).unwrap();
    });
    let needle = format!("was revoked at entry {}", honest.revoked_at);
    caught_at(dir.path(), n, &needle);
}

// ---------------------------------------------------------------------------
// Tampered checkpoints and pins.

#[test]
fn a_checkpoint_with_a_wrong_root_is_caught() {
    let honest = honest();
    let dir = tampered_store(|tree| {
        let note = checkpoint_note(
            DEV_ORIGIN,
            honest.size,
            [0x42; 32],
            honest.scenario.operator(),
        );
        tree.insert(b"c", note.as_bytes()).unwrap();
    });
    let message = expect_checkpoint(audit_data_dir(dir.path(), None), "is not the Merkle root");
    assert!(
        message.contains(&ceasefire_core::key_text(honest.root))
            && message.contains(&format!("of the {} entries", honest.size)),
        "{message}"
    );
    cli_fails("--data-dir", dir.path(), &["is not the Merkle root"]);
}

#[test]
fn a_checkpoint_signed_by_another_key_is_caught() {
    let honest = honest();
    let dir = tampered_store(|tree| {
        let impostor = seeded_key(0x66);
        let note = checkpoint_note(DEV_ORIGIN, honest.size, honest.root, &impostor);
        tree.insert(b"c", note.as_bytes()).unwrap();
    });
    expect_checkpoint(
        audit_data_dir(dir.path(), None),
        "not signed by the operator key",
    );
    cli_fails(
        "--data-dir",
        dir.path(),
        &["not signed by the operator key"],
    );
}

/// A pin of the honest log, in a fresh directory.
fn honest_pin() -> (TempDir, PathBuf) {
    let pins = tempfile::tempdir().unwrap();
    let pin = pins.path().join("pin");
    let report = audit_data_dir(&honest().dir, Some(pin.clone())).expect("the honest log fails");
    assert_eq!(report.pin, "pinned");
    (pins, pin)
}

fn cli_with_pin(dir: &Path, pin: &Path) -> Output {
    cli([
        OsStr::new("verify"),
        OsStr::new("--data-dir"),
        dir.as_os_str(),
        OsStr::new("--pin"),
        pin.as_os_str(),
    ])
}

/// Entries 0..30 are the honest ones; from 30 on, other valid entries, one
/// more than the pinned log, under a checkpoint the operator signed.
#[test]
fn a_fork_is_caught_against_the_pin_with_both_checkpoints() {
    let honest = honest();
    let (_pins, pin) = honest_pin();
    let mut fork = RawLog::from_leaves(honest.leaves[..30].to_vec());
    while fork.size() <= honest.size {
        let number = fork.size();
        let report = honest.scenario.observation();
        fork.append(
            &report
                .narrative(&format!("rewritten report {number}"))
                .signed(),
        );
    }
    let forked_note = fork.checkpoint(DEV_ORIGIN, honest.scenario.operator());
    let dir = tampered_store(|tree| rewrite_log(tree, &fork));
    // The fork is a valid log on its own.
    let report = audit_data_dir(dir.path(), None).expect("the fork is not valid on its own");
    assert_eq!(report.entries, honest.size + 1);

    match failure(audit_data_dir(dir.path(), Some(pin.clone()))) {
        AuditFailure::Fork { pinned, current } => {
            assert_eq!(pinned, honest.note);
            assert_eq!(current, forked_note);
        }
        other => panic!("expected a fork, got: {other}"),
    }
    assert_eq!(
        std::fs::read_to_string(&pin).unwrap(),
        honest.note,
        "a failed audit replaced the pin"
    );
    let output = cli_with_pin(dir.path(), &pin);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the log forked"), "{stderr}");
    assert!(
        stderr.contains(&honest.note) && stderr.contains(&forked_note),
        "both checkpoints should be shown:\n{stderr}"
    );
}

/// The checkpoint re-signed at 5 entries less than the pin (the leaves
/// beyond it are left in the store, where the audit does not read them).
#[test]
fn a_shrunk_log_is_caught_against_the_pin() {
    let honest = honest();
    let (_pins, pin) = honest_pin();
    let shrunk = RawLog::from_leaves(honest.leaves[..honest.leaves.len() - 5].to_vec());
    let shrunk_note = shrunk.checkpoint(DEV_ORIGIN, honest.scenario.operator());
    let dir = tampered_store(|tree| {
        tree.insert(b"c", shrunk_note.as_bytes()).unwrap();
        tree.insert(b"P", projection_head(&shrunk).0).unwrap();
    });
    match failure(audit_data_dir(dir.path(), Some(pin.clone()))) {
        AuditFailure::Shrank {
            pinned_size,
            current_size,
            pinned,
            current,
        } => {
            assert_eq!((pinned_size, current_size), (honest.size, honest.size - 5));
            assert_eq!(pinned, honest.note);
            assert_eq!(current, shrunk_note);
        }
        other => panic!("expected a shrink, got: {other}"),
    }
    let output = cli_with_pin(dir.path(), &pin);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let message = format!(
        "the log shrank from {} to {} entries",
        honest.size,
        honest.size - 5
    );
    assert!(stderr.contains(&message), "{stderr}");
    assert!(
        stderr.contains(&honest.note) && stderr.contains(&shrunk_note),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// Tampered projections.

#[test]
fn a_wrong_projection_digest_is_caught_in_a_data_directory() {
    let honest = honest();
    let dir = tampered_store(|tree| {
        let mut head = tree
            .get(b"P")
            .unwrap()
            .expect("no projection head")
            .to_vec();
        *head.last_mut().unwrap() ^= 0x01;
        tree.insert(b"P", head).unwrap();
    });
    let needle = format!("the served digest as of entry {} is", honest.size - 1);
    match failure(audit_data_dir(dir.path(), None)) {
        AuditFailure::Projection(message) => assert!(message.contains(&needle), "{message}"),
        other => panic!("expected a projection failure, got: {other}"),
    }
    cli_fails("--data-dir", dir.path(), &["projection: ", &needle]);
}

#[test]
fn a_wrong_projection_digest_is_caught_in_a_tiles_export() {
    let honest = honest();
    let dir = tampered_tiles(tiles::PROJECTION_PATH, |bytes| {
        let text = String::from_utf8(bytes.clone()).unwrap();
        let at = text.find("\"digest\": \"").expect("no digest") + 11;
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    });
    let needle = format!("the served digest as of entry {} is", honest.size - 1);
    match failure(audit_tiles(dir.path())) {
        AuditFailure::Projection(message) => assert!(message.contains(&needle), "{message}"),
        other => panic!("expected a projection failure, got: {other}"),
    }
    cli_fails("--tiles", dir.path(), &["projection: ", &needle]);
}

// ---------------------------------------------------------------------------
// Tampered tiles.

/// Where each leaf of an entry bundle starts (after its length prefix).
fn bundle_offsets(bundle: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut offset = 0;
    while offset < bundle.len() {
        let length = usize::from(u16::from_be_bytes([bundle[offset], bundle[offset + 1]]));
        offsets.push(offset + 2);
        offset += 2 + length;
    }
    offsets
}

fn honest_bundle_path() -> String {
    tiles::bundle_path(0, honest().size as u16)
}

/// Bytes of a leaf before its payload (prefix, seq, prev hash, time, length).
const LEAF_HEADER: usize = 25 + 8 + 32 + 8 + 4;

#[test]
fn a_flipped_byte_in_an_entry_bundle_is_caught_at_its_entry() {
    let dir = tampered_tiles(&honest_bundle_path(), |bundle| {
        let start = bundle_offsets(bundle)[17];
        bundle[start + LEAF_HEADER + 5] ^= 0x01;
    });
    expect_entry(
        audit_tiles(dir.path()),
        17,
        "does not verify over this payload",
    );
    cli_fails("--tiles", dir.path(), &["entry 17: ", "does not verify"]);
}

/// A broken length prefix leaves the bundle unparseable from entry 17 on:
/// that is a verdict on the export (exit 1), naming the entry, not a failure
/// to run.
#[test]
fn a_broken_length_prefix_in_an_entry_bundle_is_caught_at_its_entry() {
    let dir = tampered_tiles(&honest_bundle_path(), |bundle| {
        let start = bundle_offsets(bundle)[17];
        bundle[start - 2] ^= 0x80;
    });
    let bundle = honest_bundle_path();
    expect_entry(audit_tiles(dir.path()), 17, &bundle);
    cli_fails("--tiles", dir.path(), &["entry 17", &bundle]);
}

#[test]
fn a_flipped_hash_in_a_hash_tile_is_caught_naming_the_tile() {
    let path = tiles::tile_path(0, 0, honest().size as u16);
    let dir = tampered_tiles(&path, |tile| tile[10 * 32 + 3] ^= 0x01);
    let needle = format!("{path}: hash 10 is not the tree's node (level 0, index 10)");
    match failure(audit_tiles(dir.path())) {
        AuditFailure::Tree(message) => assert_eq!(message, needle),
        other => panic!("expected a stored tree failure, got: {other}"),
    }
    cli_fails("--tiles", dir.path(), &["stored tree: ", &needle]);
}

// ---------------------------------------------------------------------------
// Could not run.

#[test]
fn verify_exits_2_when_it_cannot_reach_its_source() {
    let closed_port = free_port().unwrap();
    let server = format!("http://127.0.0.1:{closed_port}");
    let nowhere = tempfile::tempdir().unwrap();
    let missing = nowhere.path().join("missing");
    let cases: [(&str, &OsStr); 3] = [
        ("--server", OsStr::new(&server)),
        ("--data-dir", missing.as_os_str()),
        ("--tiles", missing.as_os_str()),
    ];
    for (flag, source) in cases {
        let output = cli([OsStr::new("verify"), OsStr::new(flag), source]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "verify {flag}: {stderr}");
        assert!(
            stderr.contains("could not verify"),
            "verify {flag}: {stderr}"
        );
        // And under --json, an object saying the same.
        let (code, value, line) = cli_json(&[OsStr::new(flag), source]);
        assert_eq!(code, Some(2), "verify {flag} --json: {line}");
        assert_eq!(
            (&value["ok"], &value["exit_code"]),
            (&false.into(), &2.into())
        );
        assert_eq!(
            line,
            format!("could not verify: {}", value["error"].as_str().unwrap())
        );
    }
}

// ---------------------------------------------------------------------------
// Damage is a verdict; only a source that cannot be read is "could not run".

/// `verify ARGS --json`: its exit code, its JSON object (every exit prints
/// one) and its last stderr line.
fn cli_json(args: &[&OsStr]) -> (Option<i32>, serde_json::Value, String) {
    let mut all = vec![OsStr::new("verify")];
    all.extend_from_slice(args);
    all.push(OsStr::new("--json"));
    let output = cli(all);
    let stderr = text(&output.stderr);
    let value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "verify {args:?} --json printed no JSON object ({error}):\n{}{stderr}",
            text(&output.stdout)
        )
    });
    let last = stderr.lines().last().unwrap_or_default().to_string();
    (output.status.code(), value, last)
}

/// `verify --data-dir DIR --json` must exit 1 (a verdict) with a JSON
/// failure and a stderr line that both say every needle.
#[track_caller]
fn damage_is_a_verdict(dir: &Path, needles: &[&str]) {
    let (code, value, line) = cli_json(&[OsStr::new("--data-dir"), dir.as_os_str()]);
    assert_eq!(code, Some(1), "{value} / {line}");
    assert_eq!(
        (&value["ok"], &value["exit_code"]),
        (&false.into(), &1.into())
    );
    let failure = value["failure"].as_str().expect("no failure text");
    for needle in needles {
        assert!(
            failure.contains(needle),
            "{failure:?} does not say {needle:?}"
        );
        assert!(line.contains(needle), "{line:?} does not say {needle:?}");
    }
    assert!(line.starts_with("verification FAILED: "), "{line}");
}

#[test]
fn a_damaged_entry_chunk_is_a_verdict_naming_the_entry() {
    // Garbage where the chunk holding entry 20 starts.
    let dir = tampered_store(|tree| {
        let key = tree
            .range(..=ceasefire_node::storage::chunks::key(20))
            .next_back()
            .unwrap()
            .unwrap()
            .0;
        tree.insert(key, &b"not a chunk"[..]).unwrap();
    });
    let (code, value, line) = cli_json(&[OsStr::new("--data-dir"), dir.path().as_os_str()]);
    assert_eq!(code, Some(1), "{value} / {line}");
    let failure = value["failure"].as_str().unwrap();
    assert!(
        failure.starts_with("entry ") && failure.contains("its stored chunk is damaged"),
        "{failure}"
    );
}

#[test]
fn a_damaged_head_record_is_a_verdict_naming_the_file() {
    use ceasefire_node::storage::RECORD_FILE_NAME;
    let dir = honest_copy();
    let record = dir.path().join(RECORD_FILE_NAME);
    let mut bytes = std::fs::read(&record).expect("the honest store has a head record");
    // One byte in each of the two slots (88 bytes each).
    bytes[30] ^= 0x01;
    bytes[88 + 30] ^= 0x01;
    std::fs::write(&record, bytes).unwrap();
    damage_is_a_verdict(
        dir.path(),
        &[
            &record.display().to_string(),
            "neither slot of the head record reads",
        ],
    );
}

#[test]
fn a_damaged_sled_file_is_a_verdict_naming_the_sled_directory() {
    let dir = honest_copy();
    let conf = dir.path().join(DB_DIR_NAME).join("conf");
    let mut bytes = std::fs::read(&conf).expect("sled keeps a conf file");
    bytes[2] ^= 0x01;
    std::fs::write(&conf, bytes).unwrap();
    damage_is_a_verdict(
        dir.path(),
        &[
            &dir.path().join(DB_DIR_NAME).display().to_string(),
            "sled cannot open",
        ],
    );
}

#[test]
fn a_damaged_stored_head_is_a_verdict() {
    let dir = tampered_store(|tree| {
        tree.insert(b"h", &b"short"[..]).unwrap();
    });
    damage_is_a_verdict(dir.path(), &["head record is unreadable: 5 bytes"]);
}

/// Exit 2 only when verification cannot start, saying which, with a JSON
/// object all the same.
#[test]
fn verify_cannot_start_on_a_missing_or_empty_directory_and_says_which() {
    let work = tempfile::tempdir().unwrap();
    let missing = work.path().join("missing");
    let file = work.path().join("file");
    std::fs::write(&file, "not a directory").unwrap();
    let cases: [(&Path, String); 3] = [
        (
            &missing,
            format!("no such directory: {}", missing.display()),
        ),
        (
            work.path(),
            format!(
                "{} holds no ledger (no {DB_DIR_NAME} in it)",
                work.path().display()
            ),
        ),
        (&file, format!("{} is not a directory", file.display())),
    ];
    for (dir, says) in cases {
        let (code, value, line) = cli_json(&[OsStr::new("--data-dir"), dir.as_os_str()]);
        assert_eq!(code, Some(2), "{value} / {line}");
        assert_eq!(
            (&value["ok"], &value["exit_code"]),
            (&false.into(), &2.into())
        );
        assert_eq!(value["error"], says.as_str());
        assert_eq!(line, format!("could not verify: {says}"));
    }
}

/// A pin that could not be read, or not be written after the audit, stops
/// `verify` before the work: nothing is audited, nothing written.
#[test]
fn a_bad_pin_path_is_refused_before_the_audit() {
    let work = tempfile::tempdir().unwrap();
    let no_parent = work.path().join("no-such-dir").join("pin");
    let not_utf8 = work.path().join("binary-pin");
    std::fs::write(&not_utf8, [0xff, 0xfe, 0x00]).unwrap();
    let cases: [(&Path, String); 3] = [
        (
            &no_parent,
            format!(
                "--pin {}: its directory {} does not exist",
                no_parent.display(),
                work.path().join("no-such-dir").display()
            ),
        ),
        (
            work.path(),
            format!(
                "--pin {}: is a directory, not a file",
                work.path().display()
            ),
        ),
        (
            &not_utf8,
            format!("--pin {}: cannot read it: ", not_utf8.display()),
        ),
    ];
    // A source that does not exist either: the pin is checked first.
    let missing = work.path().join("missing");
    for (pin, says) in cases {
        let (code, value, line) = cli_json(&[
            OsStr::new("--data-dir"),
            missing.as_os_str(),
            OsStr::new("--pin"),
            pin.as_os_str(),
        ]);
        assert_eq!(code, Some(2), "{value} / {line}");
        let error = value["error"].as_str().unwrap();
        assert!(error.starts_with(&says), "{error:?} is not {says:?}");
        assert!(line.contains(&says), "{line}");
    }
    assert!(!no_parent.parent().unwrap().exists());
}

#[test]
fn a_usage_error_of_verify_json_is_a_json_object_too() {
    let (code, value, line) = cli_json(&[OsStr::new("--no-such-flag")]);
    assert_eq!(code, Some(2), "{value} / {line}");
    assert_eq!(value["ok"], false);
    let error = value["error"].as_str().unwrap();
    assert!(error.contains("--no-such-flag"), "{error}");
}

/// `verify … | head` closes the pipe before verify writes its report: the
/// verdict stands in the exit code, and nothing panics.
#[test]
fn a_closed_stdout_is_no_panic() {
    for json in [false, true] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut command = command(BINARY, &[]);
        command
            .args([
                OsStr::new("verify"),
                OsStr::new("--data-dir"),
                honest().dir.as_os_str(),
            ])
            .env("RUST_LOG", "warn")
            .stdout(writer);
        if json {
            command.arg("--json");
        }
        let output = command.output().expect("cannot run the binary");
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "json {json}: {stderr}");
        assert!(!stderr.contains("panicked"), "json {json}: {stderr}");
    }
}

/// A data directory this user may not read: exit 2, saying so. Needs root
/// (to drop to `nobody` with `setpriv`); elsewhere it prints SKIPPED.
#[test]
fn verify_without_permission_says_so() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("data");
    copy_dir(&honest().dir, &dir);
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BINARY])
        .args([
            OsStr::new("verify"),
            OsStr::new("--data-dir"),
            dir.as_os_str(),
        ])
        .arg("--json")
        .env("RUST_LOG", "warn")
        .output();
    let output = match output {
        Ok(output) if !text(&output.stderr).contains("setpriv:") => output,
        other => {
            // Straight to stderr: the harness captures `println!` of a
            // passing test, and a skip must be seen.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED verify_without_permission_says_so: cannot run as another user: {other:?}"
            );
            return;
        }
    };
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let says = format!("no permission to read {}", dir.join(DB_DIR_NAME).display());
    assert!(stderr.contains(&says), "{stderr}");
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        value["error"].as_str().unwrap().starts_with(&says),
        "{value}"
    );
}
