//! Shared helpers for the integration tests: a real node (sled store,
//! sequencer, tonic server) on `127.0.0.1:0` in a temporary directory,
//! bootstrapped exactly as `serve --dev` does it, and a client talking to it
//! over real gRPC.
//!
//! Not every test binary uses every helper.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use ceasefire_core::checkpoint::{open_checkpoint, CheckpointBody, NoteVerifier};
use ceasefire_core::leaf::Leaf;
use ceasefire_core::merkle::{verify_inclusion, Hash};
use ceasefire_grpc::client::{self, now_timestamp, random_nonce, sign};
use ceasefire_grpc::proto::{
    compliance_client::ComplianceClient, event::Body, ledger_client::LedgerClient,
    submit_result::Outcome, Category, Event, Finding, GetCheckpointRequest, GetEntriesRequest,
    LatLon, Location, LogEntry, Observation, Receipt, SignedEvent, SubmitResult,
};
use ceasefire_ledger::dev::{self, DevKeys};
use ceasefire_node::node::{self, Node, NodeConfig};
use ceasefire_node::sequencer::{SequencerConfig, StartupCheck};
use ed25519_dalek::{SigningKey, VerifyingKey};
use tempfile::TempDir;
use tonic::transport::Channel;

pub type Client = LedgerClient<Channel>;

/// Entries the dev bootstrap writes: genesis, monitor, zone, commitment.
pub const BOOTSTRAP_ENTRIES: u64 = 4;

/// A running node, its data directory, the dev keys and a connected client.
pub struct TestNode {
    pub node: Node,
    /// Dropped (and deleted) last: the node's store lives in it.
    pub dir: TempDir,
    pub keys: DevKeys,
    pub client: Client,
}

impl TestNode {
    /// Starts a node on a fresh temporary directory with the dev bootstrap.
    pub async fn start() -> TestNode {
        TestNode::start_with(SequencerConfig::default()).await
    }

    /// [`TestNode::start`] with a given batching configuration.
    pub async fn start_with(sequencer: SequencerConfig) -> TestNode {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let keys = dev::ensure_dev_keys(dir.path()).expect("cannot create the dev keys");
        let bootstrap = dev::bootstrap_events(&keys);
        let node = start_node_with(dir.path(), &keys, bootstrap, sequencer).await;
        let client = connect(&node).await;
        TestNode {
            node,
            dir,
            keys,
            client,
        }
    }

    /// Shuts the node down and starts it again on the same directory, with
    /// an empty bootstrap (the log is not empty, so none is needed).
    pub async fn restart(self) -> TestNode {
        let TestNode {
            node,
            dir,
            keys: _,
            client,
        } = self;
        // Close our connection first so the graceful shutdown has nothing
        // to wait for.
        drop(client);
        tokio::time::timeout(Duration::from_secs(20), node.shutdown())
            .await
            .expect("the node did not shut down within 20 s")
            .expect("the node failed to shut down");
        // Keys are loaded from the files the first start wrote.
        let keys = dev::ensure_dev_keys(dir.path()).expect("cannot load the dev keys");
        let node = start_node(dir.path(), &keys, Vec::new()).await;
        let client = connect(&node).await;
        TestNode {
            node,
            dir,
            keys,
            client,
        }
    }

    /// Stops the node cleanly (and checks that it does).
    pub async fn shutdown(self) {
        let TestNode { node, client, .. } = self;
        drop(client);
        tokio::time::timeout(Duration::from_secs(20), node.shutdown())
            .await
            .expect("the node did not shut down within 20 s")
            .expect("the node failed to shut down");
    }

    /// A second, independent connection to the node.
    pub async fn new_client(&self) -> Client {
        connect(&self.node).await
    }

    /// A connection to the node's Compliance service.
    pub async fn compliance(&self) -> ComplianceClient<Channel> {
        ComplianceClient::connect(self.node.url())
            .await
            .expect("cannot connect to the Compliance service")
    }

    /// Shuts the node down (checking that it does) and hands back its
    /// directory and keys, the store closed, for tests that open the store
    /// themselves; [`TestNode::resume`] starts a node on them again.
    pub async fn stop(self) -> (TempDir, DevKeys) {
        let TestNode {
            node,
            dir,
            keys,
            client,
        } = self;
        drop(client);
        tokio::time::timeout(Duration::from_secs(20), node.shutdown())
            .await
            .expect("the node did not shut down within 20 s")
            .expect("the node failed to shut down");
        (dir, keys)
    }

    /// Starts a node on the directory of a node [`TestNode::stop`] stopped.
    pub async fn resume(dir: TempDir, keys: DevKeys) -> TestNode {
        let node = start_node(dir.path(), &keys, Vec::new()).await;
        let client = connect(&node).await;
        TestNode {
            node,
            dir,
            keys,
            client,
        }
    }

    pub fn operator_key(&self) -> VerifyingKey {
        self.keys.operator.key.verifying_key()
    }

    pub fn monitor(&self) -> &SigningKey {
        &self.keys.monitor.key
    }

    pub fn signatory(&self) -> &SigningKey {
        &self.keys.signatory.key
    }

    /// The current checkpoint, its note verified with the operator key.
    pub async fn checkpoint(&self) -> CheckpointBody {
        let mut client = self.client.clone();
        checkpoint(&mut client, &self.operator_key()).await
    }

    /// Every entry of the log, read with GetEntries.
    pub async fn read_log(&self) -> Vec<LogEntry> {
        let mut client = self.client.clone();
        read_log(&mut client, &self.operator_key()).await
    }

    /// A fresh observation by the dev monitor, signed by the monitor key.
    pub fn signed_observation(&self, narrative: &str) -> SignedEvent {
        sign(&observation(narrative), &[self.monitor()])
    }
}

/// Starts a node on `data_dir` listening on an ephemeral local port.
pub async fn start_node(data_dir: &Path, keys: &DevKeys, bootstrap: Vec<SignedEvent>) -> Node {
    start_node_with(data_dir, keys, bootstrap, SequencerConfig::default()).await
}

pub async fn start_node_with(
    data_dir: &Path,
    keys: &DevKeys,
    bootstrap: Vec<SignedEvent>,
    sequencer: SequencerConfig,
) -> Node {
    node::start(NodeConfig {
        data_dir: data_dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        operator_key: keys.operator.key.clone(),
        bootstrap,
        sequencer,
        startup_check: StartupCheck::Full,
        tls: None,
        metrics_listen: None,
        max_payload_bytes: ceasefire_core::leaf::MAX_PAYLOAD_BYTES,
    })
    .await
    .expect("the node did not start")
}

pub async fn connect(node: &Node) -> Client {
    client::connect(&node.url())
        .await
        .expect("cannot connect to the node")
}

/// The verifier for the dev ledger's checkpoints.
pub fn note_verifier(operator: &VerifyingKey) -> NoteVerifier {
    NoteVerifier::new(dev::DEV_ORIGIN, operator).expect("the dev origin is a valid key name")
}

/// The current checkpoint's body, after verifying its note with the operator
/// key; also checks that the message's convenience copies match the note.
pub async fn checkpoint(client: &mut Client, operator: &VerifyingKey) -> CheckpointBody {
    let message = client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .expect("GetCheckpoint failed")
        .into_inner();
    let body = open_checkpoint(&message.note, &note_verifier(operator))
        .unwrap_or_else(|error| panic!("checkpoint note does not verify: {error}"));
    assert_eq!(body.origin, dev::DEV_ORIGIN);
    assert_eq!(message.tree_size, body.tree_size, "tree_size copy differs");
    assert_eq!(message.root_hash, body.root_hash, "root_hash copy differs");
    body
}

/// GetEntries over `[start, end)`, collected; the error if the call or the
/// stream fails.
pub async fn get_entries(
    client: &mut Client,
    start: u64,
    end: u64,
) -> Result<Vec<LogEntry>, tonic::Status> {
    let mut stream = client
        .get_entries(GetEntriesRequest { start, end })
        .await?
        .into_inner();
    let mut entries = Vec::new();
    while let Some(entry) = stream.message().await? {
        entries.push(entry);
    }
    Ok(entries)
}

/// Every entry of the current tree.
pub async fn read_log(client: &mut Client, operator: &VerifyingKey) -> Vec<LogEntry> {
    let size = checkpoint(client, operator).await.tree_size;
    let entries = get_entries(client, 0, size)
        .await
        .expect("GetEntries over the whole log failed");
    assert_eq!(
        entries.len() as u64,
        size,
        "GetEntries returned a short log"
    );
    entries
}

/// An observation event by the dev monitor inside the dev zone, with times
/// in the past (the server refuses times more than 300 s ahead of its clock)
/// and a fresh nonce.
pub fn observation(narrative: &str) -> Event {
    observation_event(dev::DEV_MONITOR, narrative)
}

/// [`observation`] with another author.
pub fn observation_event(author: &str, narrative: &str) -> Event {
    let now = now_timestamp();
    let minutes_ago = |minutes: i64| prost_types::Timestamp {
        seconds: now.seconds - minutes * 60,
        nanos: 0,
    };
    Event {
        agreement_id: dev::DEV_AGREEMENT_ID.into(),
        author: author.into(),
        created_at: Some(now),
        nonce: random_nonce(),
        body: Some(Body::Observation(Observation {
            observed_from: Some(minutes_ago(20)),
            observed_until: Some(minutes_ago(5)),
            location: Some(Location {
                point: Some(LatLon {
                    lat: 48.51,
                    lon: 37.62,
                }),
                accuracy_m: 250.0,
            }),
            zone_id: String::new(),
            commitment_id: dev::DEV_COMMITMENT.into(),
            finding: Finding::Violation as i32,
            category: Category::Explosion as i32,
            quantity: 3,
            attributed_side: String::new(),
            evidence: Vec::new(),
            narrative: narrative.into(),
        })),
    }
}

/// `SHA-256(0x00 || leaf)`, computed here with sha2 rather than through the
/// crate, so tests check the crate's leaf hashes independently.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// Proof hashes off the wire, each checked to be 32 bytes.
pub fn proof_hashes(hashes: &[Vec<u8>]) -> Vec<Hash> {
    hashes
        .iter()
        .map(|hash| {
            hash.as_slice()
                .try_into()
                .unwrap_or_else(|_| panic!("proof hash of {} bytes", hash.len()))
        })
        .collect()
}

pub fn hash32(bytes: &[u8]) -> Hash {
    bytes
        .try_into()
        .unwrap_or_else(|_| panic!("expected 32 bytes, got {}", bytes.len()))
}

/// Checks everything a receipt promises: the leaf bytes are the submitted
/// payload under `seq`, the leaf hash is SHA-256(0x00 || leaf), the note
/// verifies with the operator key and matches its copies, and the inclusion
/// proof leads from the leaf hash to the note's root.
pub fn check_receipt(receipt: &Receipt, submitted: &SignedEvent, operator: &VerifyingKey) {
    let leaf = Leaf::decode(&receipt.leaf).expect("the receipt's leaf does not decode");
    assert_eq!(leaf.seq, receipt.seq, "leaf seq differs from the receipt's");
    assert_eq!(
        leaf.payload, submitted.payload,
        "leaf payload is not verbatim"
    );
    assert_eq!(
        receipt.leaf_hash,
        leaf_hash(&receipt.leaf).to_vec(),
        "leaf hash is not SHA-256(0x00 || leaf)"
    );
    let message = receipt
        .checkpoint
        .as_ref()
        .expect("receipt has no checkpoint");
    let body = open_checkpoint(&message.note, &note_verifier(operator))
        .unwrap_or_else(|error| panic!("receipt checkpoint does not verify: {error}"));
    assert_eq!(message.tree_size, body.tree_size, "tree_size copy differs");
    assert_eq!(
        message.root_hash,
        body.root_hash.to_vec(),
        "root_hash copy differs"
    );
    assert!(
        body.tree_size > receipt.seq,
        "checkpoint does not cover seq"
    );
    let proof = receipt
        .inclusion_proof
        .as_ref()
        .expect("receipt has no inclusion proof");
    assert_eq!(proof.leaf_index, receipt.seq);
    assert_eq!(proof.tree_size, body.tree_size);
    verify_inclusion(
        &hash32(&receipt.leaf_hash),
        receipt.seq,
        body.tree_size,
        &proof_hashes(&proof.hashes),
        &body.root_hash,
    )
    .unwrap_or_else(|error| panic!("receipt for seq {}: {error}", receipt.seq));
}

/// The receipt of a SubmitStream answer, or a panic naming the refusal.
pub fn streamed_receipt(answer: &SubmitResult) -> &Receipt {
    match &answer.outcome {
        Some(Outcome::Receipt(receipt)) => receipt,
        other => panic!("event {}: expected a receipt, got {other:?}", answer.index),
    }
}

/// Starts a node for a ledger of its own (not the dev one): `bootstrap`
/// starts with its signed genesis, which names `operator_key`'s public key.
pub async fn start_ledger_node(
    data_dir: &Path,
    operator_key: SigningKey,
    bootstrap: Vec<SignedEvent>,
) -> Node {
    node::start(NodeConfig {
        data_dir: data_dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        operator_key,
        bootstrap,
        sequencer: SequencerConfig::default(),
        startup_check: StartupCheck::Full,
        tls: None,
        metrics_listen: None,
        max_payload_bytes: ceasefire_core::leaf::MAX_PAYLOAD_BYTES,
    })
    .await
    .expect("the node did not start")
}

/// [`checkpoint`] for a ledger whose genesis names `origin`: the note is
/// verified with `operator` under that name, and its copies checked.
pub async fn checkpoint_of(
    client: &mut Client,
    origin: &str,
    operator: &VerifyingKey,
) -> CheckpointBody {
    let message = client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .expect("GetCheckpoint failed")
        .into_inner();
    let verifier = NoteVerifier::new(origin, operator).expect("the origin is not a key name");
    let body = open_checkpoint(&message.note, &verifier)
        .unwrap_or_else(|error| panic!("checkpoint note does not verify: {error}"));
    assert_eq!(body.origin, origin);
    assert_eq!(message.tree_size, body.tree_size, "tree_size copy differs");
    assert_eq!(message.root_hash, body.root_hash, "root_hash copy differs");
    body
}
