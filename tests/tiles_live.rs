//! Tiles of a live ledger, through the real interfaces: `export --tiles
//! --server` reading a running node over gRPC; `serve --tiles-dir` keeping a
//! mirror current while observations arrive (full tiles written once, the
//! mirror verifiable after every publication, resumed after a restart,
//! witnessed where the log has a witness policy); and `restore` rebuilding
//! a working store from an export (export, destroy, restore, serve, verify,
//! the same compliance digest). Nodes are real (tonic on 127.0.0.1:0, sled
//! in a temporary directory, ed25519 keys); the CLI runs as a child process.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ceasefire_core::checkpoint::parse_unverified;
use ceasefire_core::tiles::CHECKPOINT_PATH;
use ceasefire_grpc::proto::{GetCheckpointRequest, ListStatusesRequest};
use ceasefire_node::export::export;
use ceasefire_node::node::{self, NodeConfig};
use ceasefire_node::tiles_publisher::Published;
use ceasefire_testkit::fixture::{node_config, TestNode};
use ceasefire_testkit::harness::{command, copy_dir, free_port, run_bounded, Output};
use ceasefire_testkit::scenario::witnesses::{k_of_n_policy, three_witnesses};
use ceasefire_testkit::scenario::{bodies, Scenario};
use ceasefire_witness::config::{trusted_logs, LogSpec};
use ceasefire_witness::WitnessConfig;
use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// Bound on one CLI run: a hang guard, not a timing assertion.
const CLI_BOUND: Duration = Duration::from_secs(120);

/// Bound on the mirror catching up: a hang guard.
const MIRROR_BOUND: Duration = Duration::from_secs(60);

/// Runs the binary to its end on a blocking thread (the node under test
/// runs on this runtime).
async fn cli(args: &[&dyn AsRef<OsStr>]) -> Output {
    let command = command(BINARY, args);
    tokio::task::spawn_blocking(move || {
        let scratch = tempfile::tempdir().unwrap();
        run_bounded(command, scratch.path(), CLI_BOUND)
    })
    .await
    .unwrap()
}

/// Submits `count` observations numbered from `from`, 16 at a time.
async fn submit(node: &TestNode, count: u64, from: u64) {
    let results: Vec<_> = futures::stream::iter(from..from + count)
        .map(|number| {
            let mut client = node.client.clone();
            let event = node
                .scenario
                .observation()
                .narrative(&format!("report {number}"))
                .signed();
            async move { client.submit(event).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for result in results {
        result.expect("an observation was refused");
    }
}

async fn head_size(node: &TestNode) -> u64 {
    node.node.store.head().unwrap().size
}

/// Every file under `dir` (relative path → bytes), temporary files aside.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                found.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

/// The two directories hold the same files with the same bytes (named,
/// not dumped, when they do not).
fn assert_same_files(left: &Path, right: &Path) {
    let (left, right) = (files(left), files(right));
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        right.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &left {
        assert!(right[path] == *bytes, "{path} differs");
    }
}

/// Each full tile and full bundle in `dir`: (SHA-256 of its bytes, inode).
/// A file rewritten in place or renamed over gets another inode.
fn full_files(dir: &Path) -> BTreeMap<String, ([u8; 32], u64)> {
    files(dir)
        .into_iter()
        .filter(|(path, _)| path.starts_with("tile/") && !path.contains(".p/"))
        .map(|(path, bytes)| {
            let inode = std::fs::metadata(dir.join(&path)).unwrap().ino();
            (path, (Sha256::digest(&bytes).into(), inode))
        })
        .collect()
}

/// Waits until the node's mirror has published `size` entries.
async fn mirror_reaches(node: &TestNode, size: u64) -> Published {
    let mut published = node.node.tiles_published.clone();
    let reached = tokio::time::timeout(
        MIRROR_BOUND,
        published.wait_for(|published| published.tree_size >= size),
    )
    .await
    .unwrap_or_else(|_| panic!("the mirror did not reach {size} entries"))
    .expect("the publisher stopped")
    .clone();
    reached
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        output.stdout,
        output.stderr
    );
}

/// A failure: non-zero, one error line, naming `needle`.
fn assert_refused(output: &Output, needle: &str) {
    assert!(!output.status.success(), "succeeded: {}", output.stdout);
    let line = output.last_stderr_line();
    assert!(line.starts_with("error: "), "{}", output.stderr);
    assert!(line.contains(needle), "{line:?} does not name {needle:?}");
}

async fn compliance_digest(node: &TestNode) -> (u64, Vec<u8>) {
    let version = node
        .compliance()
        .await
        .list_statuses(ListStatusesRequest {
            filter: None,
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .version
        .unwrap();
    (version.as_of_seq, version.digest)
}

async fn latest_note(node: &TestNode) -> String {
    node.client
        .clone()
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .unwrap()
        .into_inner()
        .note
}

/// A node of a fresh dev scenario keeping a mirror in `tiles`.
async fn start_mirrored(data: TempDir, scenario: Scenario, tiles: &Path, fresh: bool) -> TestNode {
    let mut config = NodeConfig {
        tiles_dir: Some(tiles.to_path_buf()),
        ..node_config(data.path(), &scenario)
    };
    if !fresh {
        config.bootstrap = Vec::new();
    }
    TestNode::start_config(data, scenario, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_reads_a_running_node_over_grpc_and_refuses_bad_inputs() {
    let node = TestNode::start().await;
    let before = head_size(&node).await;
    submit(&node, 300 - before, 0).await;
    let url = node.node.url();
    let scratch = tempfile::tempdir().unwrap();
    let tiles = scratch.path().join("tiles");

    let output = cli(&[&"export", &"--tiles", &tiles, &"--server", &url]).await;
    assert_success(&output, "export --server");
    assert!(
        output.stdout.starts_with("exported tree size 300 to "),
        "{}",
        output.stdout
    );
    // The same files, byte for byte, as an export of the node's own store.
    let from_store = scratch.path().join("from-store");
    let store = node.node.store.clone();
    let copy = from_store.clone();
    tokio::task::spawn_blocking(move || export(&store, &copy).unwrap())
        .await
        .unwrap();
    assert_same_files(&tiles, &from_store);
    let output = cli(&[&"verify", &"--tiles", &tiles]).await;
    assert_success(&output, "verify --tiles");

    // Incremental: only the new entries' files, and the checkpoint.
    submit(&node, 20, 1000).await;
    let output = cli(&[&"export", &"--tiles", &tiles, &"--server", &url]).await;
    assert_success(&output, "the second export");
    assert!(
        output.stdout.starts_with("exported tree size 320 to ")
            && output.stdout.contains(": 4 files written"),
        "{}",
        output.stdout
    );
    assert_eq!(
        std::fs::read_to_string(tiles.join(CHECKPOINT_PATH)).unwrap(),
        latest_note(&node).await
    );

    // Bad inputs: each one line, and the directory unchanged.
    let held = files(&tiles);
    let nobody = format!("http://127.0.0.1:{}", free_port().unwrap());
    let output = cli(&[&"export", &"--tiles", &tiles, &"--server", &nobody]).await;
    assert_refused(&output, "cannot reach");
    let output = cli(&[
        &"export",
        &"--tiles",
        &tiles,
        &"--server",
        &url,
        &"--data-dir",
        &node.dir.path(),
    ])
    .await;
    assert!(!output.status.success());
    assert!(
        output.stderr.contains("cannot be used with"),
        "{}",
        output.stderr
    );
    // Another log (a shorter one of the same origin) into this directory.
    let other = TestNode::start().await;
    let output = cli(&[
        &"export",
        &"--tiles",
        &tiles,
        &"--server",
        &other.node.url(),
    ])
    .await;
    assert_refused(&output, "is at tree size 320, ahead of");
    assert!(
        files(&tiles) == held,
        "the refused export changed the directory"
    );
    other.shutdown().await;

    // `--data-dir` of the running node reads a snapshot of its store.
    let snapshot = scratch.path().join("snapshot");
    let output = cli(&[
        &"export",
        &"--tiles",
        &snapshot,
        &"--data-dir",
        &node.dir.path(),
    ])
    .await;
    assert_success(&output, "export --data-dir of a running node");
    assert!(
        output.stderr.contains("exporting a snapshot copy"),
        "{}",
        output.stderr
    );
    // The same tree (the earlier export also kept its size-300 partials).
    let exported = files(&tiles);
    for (path, bytes) in files(&snapshot) {
        assert!(exported.get(&path) == Some(&bytes), "{path} differs");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_a_tiles_mirror_current_writes_full_tiles_once_and_resumes() {
    let scenario = Scenario::dev_with_random_keys();
    let mirror_home = tempfile::tempdir().unwrap();
    let mirror = mirror_home.path().join("mirror");
    let node = start_mirrored(tempfile::tempdir().unwrap(), scenario, &mirror, true).await;
    let first = mirror_reaches(&node, head_size(&node).await).await;
    assert!(!first.witnessed);

    // Rounds of ingest: after each, the mirror catches up, verifies, holds
    // the node's latest checkpoint, and every full tile seen before is
    // still the same file with the same bytes.
    let mut seen: BTreeMap<String, ([u8; 32], u64)> = BTreeMap::new();
    let mut number = 0;
    for round in 0..4 {
        // Ingest in two halves, the second while the mirror publishes the first.
        submit(&node, 75, number).await;
        submit(&node, 75, number + 75).await;
        number += 150;
        let size = head_size(&node).await;
        let published = mirror_reaches(&node, size).await;
        assert_eq!(published.tree_size, size);
        assert_eq!(
            node.node.metrics.tiles_published_tree_size.get(),
            size as i64
        );
        assert_eq!(
            std::fs::read_to_string(mirror.join(CHECKPOINT_PATH)).unwrap(),
            latest_note(&node).await,
            "round {round}"
        );
        let now = full_files(&mirror);
        for (path, before) in &seen {
            assert_eq!(
                now.get(path),
                Some(before),
                "{path} changed in round {round}"
            );
        }
        seen = now;
        let output = cli(&[&"verify", &"--tiles", &mirror]).await;
        assert_success(&output, "verify --tiles of the mirror");
    }
    let size = head_size(&node).await;
    assert_eq!(size, 604);
    for path in [
        "tile/0/000",
        "tile/0/001",
        "tile/entries/000",
        "tile/entries/001",
    ] {
        assert!(seen.contains_key(path), "{path} is missing: {seen:?}");
        // Its partials were superseded and removed (readers use the full one).
        assert!(
            !mirror.join(format!("{path}.p")).exists(),
            "{path}.p remains"
        );
    }
    assert!(mirror.join("tile/0/002.p").exists());

    // Restart: the publisher resumes from the directory's checkpoint,
    // rewriting nothing, and carries on.
    let (data, scenario) = node.stop().await;
    let node = start_mirrored(data, scenario, &mirror, false).await;
    submit(&node, 200, number).await;
    let size = head_size(&node).await;
    mirror_reaches(&node, size).await;
    let now = full_files(&mirror);
    for (path, before) in &seen {
        assert_eq!(
            now.get(path),
            Some(before),
            "{path} changed across the restart"
        );
    }
    assert!(now.contains_key("tile/0/002"), "{now:?}");
    let output = cli(&[&"verify", &"--tiles", &mirror]).await;
    assert_success(&output, "verify --tiles after the restart");
    assert!(
        output.stdout.contains(&format!("{size}")),
        "{}",
        output.stdout
    );

    // A node of another log refuses to start on this mirror, and leaves it be.
    let held = files(&mirror);
    let stranger = Scenario::dev_with_random_keys();
    let stranger_data = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        tiles_dir: Some(mirror.clone()),
        ..node_config(stranger_data.path(), &stranger)
    };
    let error = match node::start(config).await {
        Ok(_) => panic!("a node of another log started on this mirror"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("cannot publish tiles in") && error.contains("checkpoint"),
        "{error}"
    );
    assert!(
        files(&mirror) == held,
        "the refused node changed the mirror"
    );
    node.shutdown().await;

    // `serve --tiles-dir` naming a file: one line, no server.
    let not_a_dir = mirror_home.path().join("a-file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let data = mirror_home.path().join("data");
    let output = cli(&[
        &"serve",
        &"--dev",
        &"--data-dir",
        &data,
        &"--listen",
        &"127.0.0.1:0",
        &"--tiles-dir",
        &not_a_dir,
    ])
    .await;
    assert_refused(&output, "a-file: cannot create the directory: File exists");
    assert_eq!(
        output.stderr.matches("File exists").count(),
        1,
        "{}",
        output.stderr
    );
}

/// A log with a witness policy publishes only witnessed checkpoints, with
/// the cosignatures; `verify --tiles` accepts the mirror on its quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witnessed_log_mirrors_its_witnessed_checkpoints() {
    let witnesses = three_witnesses();
    let addrs: [std::net::SocketAddr; 3] =
        std::array::from_fn(|_| std::net::SocketAddr::from(([127, 0, 0, 1], free_port().unwrap())));
    let scenario = Scenario::dev_with_random_keys();
    let mirror_home = tempfile::tempdir().unwrap();
    let mirror = mirror_home.path().join("mirror");
    let node = start_mirrored(tempfile::tempdir().unwrap(), scenario, &mirror, true).await;
    let witness_dirs = tempfile::tempdir().unwrap();
    let mut running = Vec::new();
    for (cosigner, addr) in witnesses.iter().zip(&addrs).take(2) {
        let logs = trusted_logs(&[LogSpec::Vkey(node.scenario.note_verifier().encoded_key())])
            .expect("the node's vkey");
        let dir = witness_dirs.path().join(cosigner.name().replace('/', "-"));
        running.push(
            ceasefire_witness::start(WitnessConfig::new(cosigner.clone(), *addr, dir, logs))
                .await
                .expect("the witness did not start"),
        );
    }
    let mut policy = k_of_n_policy(&witnesses, 2, "signatories");
    for (witness, addr) in policy.witnesses.iter_mut().zip(&addrs) {
        witness.url = format!("http://{addr}");
    }
    node.client
        .clone()
        .submit(node.scenario.govern(bodies::set_witness_policy(policy)))
        .await
        .expect("the witness policy was refused");
    submit(&node, 40, 0).await;
    let size = head_size(&node).await;
    let published = mirror_reaches(&node, size).await;
    assert!(published.witnessed, "{published:?}");
    let note = std::fs::read_to_string(mirror.join(CHECKPOINT_PATH)).unwrap();
    assert!(
        note.contains(witnesses[0].name()) && note.contains(witnesses[1].name()),
        "{note}"
    );
    assert_eq!(
        parse_unverified(&note).unwrap().tree_size,
        published.tree_size
    );
    let output = cli(&[&"verify", &"--tiles", &mirror]).await;
    assert_success(&output, "verify --tiles of a witnessed mirror");
    for witness in running {
        witness.shutdown().await.expect("a witness did not stop");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_rebuilds_a_working_store_from_a_verified_export() {
    let node = TestNode::start().await;
    let before = head_size(&node).await;
    submit(&node, 300 - before, 0).await;
    let scratch = tempfile::tempdir().unwrap();
    let tiles = scratch.path().join("tiles");
    let output = cli(&[&"export", &"--tiles", &tiles, &"--server", &node.node.url()]).await;
    assert_success(&output, "export --server");
    let digest = compliance_digest(&node).await;
    let note = latest_note(&node).await;

    // Destroy the ledger.
    let (data, scenario) = node.stop().await;
    let old_path = data.path().to_path_buf();
    drop(data);
    assert!(!old_path.exists());

    // Bad inputs, each refused with one line, writing nothing.
    let occupied = tempfile::tempdir().unwrap();
    std::fs::write(occupied.path().join("keep.txt"), b"mine").unwrap();
    let output = cli(&[
        &"restore",
        &"--tiles",
        &tiles,
        &"--data-dir",
        &occupied.path(),
    ])
    .await;
    assert_refused(&output, "is not empty");
    assert_eq!(files(occupied.path()).len(), 1);
    let tampered = scratch.path().join("tampered");
    copy_dir(&tiles, &tampered);
    let bundle = tampered.join("tile/entries/000");
    let mut bytes = std::fs::read(&bundle).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&bundle, bytes).unwrap();
    let never = scratch.path().join("never");
    let output = cli(&[&"restore", &"--tiles", &tampered, &"--data-dir", &never]).await;
    assert_eq!(output.status.code(), Some(1), "{}", output.stderr);
    assert!(
        output.stderr.contains("does not verify, nothing restored"),
        "{}",
        output.stderr
    );
    assert!(!never.exists());
    let output = cli(&[
        &"restore",
        &"--tiles",
        &never,
        &"--data-dir",
        &scratch.path().join("x"),
    ])
    .await;
    assert_refused(&output, "checkpoint is missing");
    // No half-built store is left beside the destination.
    let leftovers: Vec<PathBuf> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains("ceasefire-restore"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Restore into an empty directory, serve it, verify it.
    let restored = tempfile::tempdir().unwrap();
    let output = cli(&[
        &"restore",
        &"--tiles",
        &tiles,
        &"--data-dir",
        &restored.path(),
    ])
    .await;
    assert_success(&output, "restore");
    assert!(
        output.stdout.starts_with("restored 300 entries"),
        "{}",
        output.stdout
    );
    let node = TestNode::resume(restored, scenario).await;
    assert_eq!(latest_note(&node).await, note);
    assert_eq!(compliance_digest(&node).await, digest);
    let output = cli(&[&"verify", &"--server", &node.node.url()]).await;
    assert_success(&output, "verify --server of the restored ledger");
    // A working store: it takes the next observation at seq 300.
    let receipt = node
        .client
        .clone()
        .submit(node.signed_observation("after the restore"))
        .await
        .expect("the restored ledger refused an observation")
        .into_inner();
    assert_eq!(receipt.seq, 300);
    node.shutdown().await;
}
