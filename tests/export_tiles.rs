//! The tiles export through a real node: the dev bootstrap, observations
//! submitted over gRPC, exports of its store while it runs, read back by the
//! auditor's tiles reader. A witnessed checkpoint the store recorded (the
//! node's own, collected from real witnesses, or one planted on its stopped
//! store) is the one exported, with the tiles of its size.

use std::fs;
use std::path::Path;

use ceasefire_audit::tiles::TilesReader;
use ceasefire_core::checkpoint::{self, CheckpointBody};
use ceasefire_core::checkpoint::{sign_checkpoint, NoteSigner};
use ceasefire_core::merkle::{hash_leaf, Hash, SubtreeSource};
use ceasefire_core::tiles::*;
use ceasefire_grpc::proto::{Checkpoint, GetCheckpointRequest, ReasonCode};
use ceasefire_node::export::{export, ExportError, ExportSummary};
use ceasefire_node::storage::Store;
use ceasefire_testkit::fixture::TestNode;
use ceasefire_testkit::harness::free_port;
use ceasefire_testkit::scenario::witnesses::{cosigned_note, k_of_n_policy, three_witnesses};
use ceasefire_testkit::scenario::{bodies, DEV_ORIGIN};
use ceasefire_witness::config::{trusted_logs, LogSpec};
use ceasefire_witness::WitnessConfig;
use futures::StreamExt as _;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Submits `count` observations numbered from `from`, 16 at a time over 8
/// connections.
async fn submit(node: &TestNode, count: u64, from: u64) {
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(node.new_client().await);
    }
    let results: Vec<_> = futures::stream::iter(from..from + count)
        .map(|number| {
            let mut client = clients[(number % 8) as usize].clone();
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

async fn run_export(store: &Arc<Store>, dir: &Path) -> Result<ExportSummary, ExportError> {
    let store = store.clone();
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || export(&store, &dir))
        .await
        .unwrap()
}

/// Everything the reader gives back is what the store holds.
fn check_directory(store: &Store, dir: &Path, size: u64) {
    let reader = TilesReader::open(dir).unwrap();
    let body = checkpoint::parse_unverified(&reader.checkpoint_note().unwrap()).unwrap();
    assert_eq!(body.tree_size, size);
    assert_eq!(
        reader.checkpoint_note().unwrap(),
        store.checkpoint_note().unwrap().unwrap()
    );
    for tile in tiles_for_size(size) {
        let bytes = fs::read(dir.join(tile.path())).unwrap();
        assert_eq!(bytes.len(), usize::from(tile.width) * HASH_SIZE);
        let hashes = reader
            .tile_hashes(tile.level, tile.index, tile.width)
            .unwrap();
        for (i, hash) in hashes.iter().enumerate() {
            let index = tile.index * 256 + i as u64;
            assert_eq!(
                store.subtree_hash(tile.level * 8, index).unwrap(),
                *hash,
                "{} hash {i}",
                tile.path()
            );
        }
    }
    let leaves: Vec<Vec<u8>> = reader.leaves(size).map(Result::unwrap).collect();
    let stored: Vec<Vec<u8>> = store.leaves(0, size).map(|item| item.unwrap().1).collect();
    assert_eq!(leaves.len() as u64, size);
    assert!(
        leaves == stored,
        "the bundles do not hold the store's leaves"
    );
    assert_eq!(reader.root(size).unwrap(), body.root_hash);
    let projection = store.load_projection().unwrap().unwrap().head;
    assert_eq!(
        reader.projection().unwrap(),
        Some((projection.as_of_seq.unwrap(), projection.digest))
    );
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|path| path.to_string()).collect()
}

fn written(summary: &ExportSummary) -> BTreeSet<String> {
    summary.written.iter().cloned().collect()
}

fn flip_last_byte(path: &Path) -> Vec<u8> {
    let original = fs::read(path).unwrap();
    let mut changed = original.clone();
    *changed.last_mut().unwrap() ^= 1;
    fs::write(path, changed).unwrap();
    original
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_are_exact_incremental_and_refuse_another_log() {
    let node = TestNode::start().await;
    let store = node.node.store.clone();
    let bootstrap = store.head().unwrap().size;
    submit(&node, 300 - bootstrap, 0).await;
    assert_eq!(store.head().unwrap().size, 300);

    let export_dir = tempfile::tempdir().unwrap();
    let dir = export_dir.path().join("tiles");
    let first = run_export(&store, &dir).await.unwrap();
    assert_eq!(first.tree_size, 300);
    assert_eq!(
        written(&first),
        set(&[
            "checkpoint",
            "ceasefire-ledger/projection",
            "tile/0/000",
            "tile/0/001.p/44",
            "tile/1/000.p/1",
            "tile/entries/000",
            "tile/entries/001.p/44",
        ])
    );
    assert_eq!(first.files_written, 7);
    assert_eq!(first.files_unchanged, 0);
    assert_eq!(bytes_on_disk(&first, &dir), first.bytes_written);
    assert_eq!(first.written.last().map(String::as_str), Some("checkpoint"));
    assert_eq!(first.projection.map(|(seq, _)| seq), Some(299));
    check_directory(&store, &dir, 300);
    let checkpoint_at_300 = fs::read_to_string(dir.join("checkpoint")).unwrap();

    // Nothing new: nothing written.
    let again = run_export(&store, &dir).await.unwrap();
    assert_eq!(again.files_written, 0, "{:?}", again.written);
    assert_eq!(again.files_unchanged, 7);
    assert_eq!(again.bytes_written, 0);

    // Past the next tile boundary: partials grow into full tiles.
    submit(&node, 220, 1000).await;
    assert_eq!(store.head().unwrap().size, 520);
    let second = run_export(&store, &dir).await.unwrap();
    assert_eq!(second.tree_size, 520);
    assert_eq!(
        written(&second),
        set(&[
            "checkpoint",
            "ceasefire-ledger/projection",
            "tile/0/001",
            "tile/0/002.p/8",
            "tile/1/000.p/2",
            "tile/entries/001",
            "tile/entries/002.p/8",
        ])
    );
    assert_eq!(second.files_unchanged, 2);
    assert_eq!(
        second.written.last().map(String::as_str),
        Some("checkpoint")
    );
    check_directory(&store, &dir, 520);
    // The older tree is still readable from the partials it left.
    let reader = TilesReader::open(&dir).unwrap();
    let old = checkpoint::parse_unverified(&checkpoint_at_300).unwrap();
    assert_eq!(reader.root(300).unwrap(), old.root_hash);
    assert_eq!(reader.leaves(300).count(), 300);

    let third = run_export(&store, &dir).await.unwrap();
    assert_eq!(third.files_written, 0, "{:?}", third.written);
    assert_eq!(third.files_unchanged, 9);

    // A changed full tile or bundle: refused, naming it, nothing written.
    for relative in ["tile/0/000", "tile/entries/001"] {
        let path = dir.join(relative);
        let original = flip_last_byte(&path);
        let error = run_export(&store, &dir).await.unwrap_err();
        match &error {
            ExportError::Conflict { path: named, .. } => assert_eq!(named, &path),
            other => panic!("{relative}: {other}"),
        }
        assert!(error.to_string().contains(relative), "{error}");
        fs::write(&path, original).unwrap();
    }
    // A stale partial of another log beside a tile about to be written.
    let other_dir = export_dir.path().join("other");
    fs::create_dir_all(&other_dir).unwrap();
    let partial = "tile/0/000.p/3";
    write(&other_dir, partial, &tile_bytes(&leaf_hashes(3)));
    let error = run_export(&store, &other_dir).await.unwrap_err();
    assert!(error.to_string().contains(partial), "{error}");
    assert!(!other_dir.join("checkpoint").exists());

    // A checkpoint of another log (same origin, other root) in the directory.
    let foreign_dir = export_dir.path().join("foreign");
    let signer = NoteSigner::new(
        DEV_ORIGIN,
        ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng),
    )
    .unwrap();
    let foreign = sign_checkpoint(
        &CheckpointBody {
            origin: DEV_ORIGIN.into(),
            tree_size: 10,
            root_hash: [9; 32],
        },
        &signer,
    )
    .unwrap();
    write(&foreign_dir, CHECKPOINT_PATH, foreign.as_bytes());
    let error = run_export(&store, &foreign_dir).await.unwrap_err();
    assert!(error.to_string().contains("another root"), "{error}");
    assert_eq!(
        fs::read_to_string(foreign_dir.join(CHECKPOINT_PATH)).unwrap(),
        foreign
    );
    // A directory ahead of the store is refused too.
    let ahead = sign_checkpoint(
        &CheckpointBody {
            origin: DEV_ORIGIN.into(),
            tree_size: 10_000,
            root_hash: [9; 32],
        },
        &signer,
    )
    .unwrap();
    write(&foreign_dir, CHECKPOINT_PATH, ahead.as_bytes());
    let error = run_export(&store, &foreign_dir).await.unwrap_err();
    assert!(error.to_string().contains("ahead of this store"), "{error}");

    drop(store);
    node.shutdown().await;
}

/// With a witnessed checkpoint (short of the head), the export writes that
/// note and exactly its tree: the partial tiles of its width, which
/// tlog-tiles readers fetch for it. A directory an earlier export left ahead
/// of it is refused, and a later witnessed checkpoint grows it.
///
/// The log has a 2-of-3 witness policy whose witnesses are not up at first.
/// The witnessed checkpoint at 260 (short of the head, which the collector
/// never asks for) is planted on the stopped node's store, cosigned with
/// the witnesses' real keys; the one at 300 is the node's own, collected
/// from two of the witnesses (the witness service on the policy's ports)
/// once they are up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witnessed_checkpoint_is_exported_with_the_tiles_of_its_size() {
    let witnesses = three_witnesses();
    let addrs: [SocketAddr; 3] =
        std::array::from_fn(|_| SocketAddr::from(([127, 0, 0, 1], free_port().unwrap())));
    let node = TestNode::start().await;
    let mut policy = k_of_n_policy(&witnesses, 2, "signatories");
    for (witness, addr) in policy.witnesses.iter_mut().zip(&addrs) {
        witness.url = format!("http://{addr}");
    }
    node.client
        .clone()
        .submit(node.scenario.govern(bodies::set_witness_policy(policy)))
        .await
        .expect("the witness policy was refused");
    let store = node.node.store.clone();
    let before = store.head().unwrap().size;
    submit(&node, 260 - before, 0).await;
    let note_260 = store.checkpoint_note().unwrap().unwrap();
    submit(&node, 40, 1000).await;
    assert_eq!(store.head().unwrap().size, 300);
    let export_dir = tempfile::tempdir().unwrap();
    // Exported before anything was witnessed: the head, as ever.
    let unwitnessed = export_dir.path().join("unwitnessed");
    let summary = run_export(&store, &unwitnessed).await.unwrap();
    assert_eq!((summary.tree_size, summary.witnessed), (300, false));
    drop(store);

    let (data, scenario) = node.stop().await;
    let [north, south, _] = &witnesses;
    let witnessed_260 = cosigned_note(&note_260, &[north, south], 1_767_225_600);
    let store = Arc::new(Store::open(data.path()).expect("cannot open the stopped node's store"));
    store.record_witnessed(&witnessed_260).unwrap();
    let dir = export_dir.path().join("witnessed");
    let summary = run_export(&store, &dir).await.unwrap();
    assert_eq!((summary.tree_size, summary.witnessed), (260, true));
    assert_eq!(
        written(&summary),
        set(&[
            "checkpoint",
            "tile/0/000",
            "tile/0/001.p/4",
            "tile/1/000.p/1",
            "tile/entries/000",
            "tile/entries/001.p/4",
        ]),
        "the tiles of size 260, and no projection (the store's is as of 299)"
    );
    assert_eq!(summary.projection, None);
    assert_eq!(
        fs::read_to_string(dir.join(CHECKPOINT_PATH)).unwrap(),
        witnessed_260
    );
    let reader = TilesReader::open(&dir).unwrap();
    let body = checkpoint::parse_unverified(&witnessed_260).unwrap();
    assert_eq!(reader.root(260).unwrap(), body.root_hash);
    assert_eq!(reader.leaves(260).count(), 260);

    // The directory exported at 300 cannot go back to 260.
    let error = run_export(&store, &unwitnessed).await.unwrap_err();
    match &error {
        ExportError::AheadOfWitnessed {
            exported,
            witnessed,
            ..
        } => assert_eq!((*exported, *witnessed), (300, 260)),
        other => panic!("expected AheadOfWitnessed, got: {other}"),
    }
    assert!(
        error
            .to_string()
            .contains("export again once the witnesses"),
        "{error}"
    );
    drop(store);

    // The node starts again and serves the planted note as its witnessed
    // checkpoint; north and south come up and cosign the head.
    let node = TestNode::resume(data, scenario).await;
    assert_eq!(witnessed_checkpoint(&node, 0).await.note, witnessed_260);
    let witness_dirs = tempfile::tempdir().unwrap();
    let mut running = Vec::new();
    for (cosigner, addr) in witnesses.iter().zip(&addrs).take(2) {
        let logs = trusted_logs(&[LogSpec::Vkey(node.scenario.note_verifier().encoded_key())])
            .expect("the node's vkey");
        let witness_dir = witness_dirs.path().join(cosigner.name().replace('/', "-"));
        running.push(
            ceasefire_witness::start(WitnessConfig::new(
                cosigner.clone(),
                *addr,
                witness_dir,
                logs,
            ))
            .await
            .expect("the witness did not start"),
        );
    }
    let witnessed_300 = witnessed_checkpoint(&node, 300).await.note;
    assert_eq!(
        checkpoint::parse_unverified(&witnessed_300)
            .unwrap()
            .tree_size,
        300
    );
    let store = node.node.store.clone();
    let summary = run_export(&store, &dir).await.unwrap();
    assert_eq!((summary.tree_size, summary.witnessed), (300, true));
    assert_eq!(
        written(&summary),
        set(&[
            "checkpoint",
            "ceasefire-ledger/projection",
            "tile/0/001.p/44",
            "tile/entries/001.p/44",
        ]),
        "tile/1/000.p/1 is the same at both sizes"
    );
    assert_eq!(summary.projection.map(|(seq, _)| seq), Some(299));
    assert_eq!(
        fs::read_to_string(dir.join(CHECKPOINT_PATH)).unwrap(),
        witnessed_300
    );
    // Readers holding the 260 checkpoint still find its partials.
    assert!(dir.join("tile/entries/001.p/4").exists());
    let summary = run_export(&store, &unwitnessed).await.unwrap();
    assert_eq!((summary.tree_size, summary.witnessed), (300, true));

    drop(store);
    for witness in running {
        witness.shutdown().await.expect("a witness did not stop");
    }
    node.shutdown().await;
}

/// The node's witnessed checkpoint covering `size` entries, asked until it
/// comes (each ask waits a few seconds on the node).
async fn witnessed_checkpoint(node: &TestNode, size: u64) -> Checkpoint {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = node.client.clone();
    loop {
        let mut request = tonic::Request::new(GetCheckpointRequest {
            witnessed: true,
            min_tree_size: size,
        });
        request.set_timeout(Duration::from_secs(3));
        match client.get_checkpoint(request).await {
            Ok(answer) => return answer.into_inner(),
            Err(status) => {
                assert_eq!(
                    ceasefire_grpc::errors::reason(&status),
                    ReasonCode::NotYetWitnessed,
                    "{status}"
                );
                assert!(
                    Instant::now() < deadline,
                    "tree size {size} not witnessed within a minute: {status}"
                );
            }
        }
    }
}

/// Bytes of the files an export wrote, as they are now on disk.
fn bytes_on_disk(summary: &ExportSummary, dir: &Path) -> u64 {
    summary
        .written
        .iter()
        .map(|relative| fs::metadata(dir.join(relative)).unwrap().len())
        .sum()
}

fn leaf_hashes(count: u64) -> Vec<Hash> {
    (0..count)
        .map(|seq| hash_leaf(format!("leaf {seq}").as_bytes()))
        .collect()
}

fn write(dir: &Path, relative: &str, bytes: &[u8]) {
    let path = dir.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}
