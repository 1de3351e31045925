//! The ledger fixture: a real node (sled store, sequencer, tonic server) on
//! `127.0.0.1:0` over a temporary directory, started the way `serve` starts
//! one (`node::start`), with a client talking to it over real gRPC; and the
//! checks of what a node answers (checkpoint notes, whole logs, receipts),
//! done with the core's verifiers and leaf hashes recomputed here.
//!
//! A [`TestNode`] runs a [`Scenario`]: by default the development ledger
//! with fresh keys, which it keeps in memory. A directory that the real
//! binary will open again (`serve --dev`) needs its keys on disk: make them
//! with `ceasefire_ledger::dev::ensure_dev_keys` and start the node with
//! [`TestNode::start_in`].

use std::path::Path;
use std::time::Duration;

use ceasefire_core::checkpoint::{open_checkpoint, CheckpointBody, NoteVerifier};
use ceasefire_core::leaf::Leaf;
use ceasefire_core::merkle::{verify_inclusion, Hash};
use ceasefire_grpc::client;
use ceasefire_grpc::proto::{
    compliance_client::ComplianceClient, ledger_client::LedgerClient, submit_result::Outcome,
    GetCheckpointRequest, GetEntriesRequest, LogEntry, Receipt, Role, SignedEvent, SubmitResult,
};
use ceasefire_node::node::{self, Node, NodeConfig};
use ceasefire_node::sequencer::SequencerConfig;
use ed25519_dalek::{SigningKey, VerifyingKey};
use tempfile::TempDir;
use tonic::transport::Channel;

use crate::scenario::Scenario;

pub type Client = LedgerClient<Channel>;

/// How long a node may take to shut down before the test calls it a hang.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(20);

/// A running node, its data directory, its scenario and a connected client.
pub struct TestNode {
    pub node: Node,
    /// Dropped (and deleted) last: the node's store lives in it.
    pub dir: TempDir,
    /// Who is who: the keys that sign its events and its checkpoints.
    pub scenario: Scenario,
    pub client: Client,
}

impl TestNode {
    /// A development ledger with fresh keys on a fresh temporary directory.
    pub async fn start() -> TestNode {
        TestNode::start_with(SequencerConfig::default()).await
    }

    /// [`TestNode::start`] with a given batching configuration.
    pub async fn start_with(sequencer: SequencerConfig) -> TestNode {
        let scenario = Scenario::dev_with_random_keys();
        let dir = temporary_dir();
        let config = NodeConfig {
            sequencer,
            ..node_config(dir.path(), &scenario)
        };
        TestNode::start_config(dir, scenario, config).await
    }

    /// `scenario`'s ledger, bootstrapped, on `dir`.
    pub async fn start_in(dir: TempDir, scenario: Scenario) -> TestNode {
        let config = node_config(dir.path(), &scenario);
        TestNode::start_config(dir, scenario, config).await
    }

    /// A node of `scenario` with `config` (on `dir`, whose path it names).
    pub async fn start_config(dir: TempDir, scenario: Scenario, config: NodeConfig) -> TestNode {
        let node = node::start(config).await.expect("the node did not start");
        let client = connect(&node).await;
        TestNode {
            node,
            dir,
            scenario,
            client,
        }
    }

    /// Shuts the node down and starts it again on the same directory, with
    /// no bootstrap (the log is not empty, so none is needed).
    pub async fn restart(self) -> TestNode {
        let (dir, scenario) = self.stop().await;
        TestNode::resume(dir, scenario).await
    }

    /// Stops the node cleanly (and checks that it does).
    pub async fn shutdown(self) {
        self.stop().await;
    }

    /// Shuts the node down (checking that it does) and hands back its
    /// directory, the store closed, and its scenario, for tests that open
    /// the store themselves; [`TestNode::resume`] starts a node on them.
    pub async fn stop(self) -> (TempDir, Scenario) {
        let TestNode {
            node,
            dir,
            scenario,
            client,
        } = self;
        // Close our connection first so the graceful shutdown has nothing
        // to wait for.
        drop(client);
        tokio::time::timeout(SHUTDOWN_WAIT, node.shutdown())
            .await
            .unwrap_or_else(|_| panic!("the node did not shut down within {SHUTDOWN_WAIT:?}"))
            .expect("the node failed to shut down");
        (dir, scenario)
    }

    /// Starts a node on the directory of a node [`TestNode::stop`] stopped.
    pub async fn resume(dir: TempDir, scenario: Scenario) -> TestNode {
        let config = NodeConfig {
            bootstrap: Vec::new(),
            ..node_config(dir.path(), &scenario)
        };
        TestNode::start_config(dir, scenario, config).await
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

    pub fn operator_key(&self) -> VerifyingKey {
        self.scenario.operator_key()
    }

    /// The key of the scenario's first monitor.
    pub fn monitor(&self) -> &SigningKey {
        self.scenario.first(Role::Monitor).key()
    }

    /// The key of the scenario's first signatory.
    pub fn signatory(&self) -> &SigningKey {
        self.scenario.first(Role::Signatory).key()
    }

    /// The current checkpoint, its note verified with the operator key.
    pub async fn checkpoint(&self) -> CheckpointBody {
        checkpoint(&mut self.client.clone(), &self.scenario.note_verifier()).await
    }

    /// Every entry of the log, read with GetEntries.
    pub async fn read_log(&self) -> Vec<LogEntry> {
        read_log(&mut self.client.clone(), &self.scenario.note_verifier()).await
    }

    /// [`check_receipt`] against this node's checkpoint key.
    pub fn check_receipt(&self, receipt: &Receipt, submitted: &SignedEvent) {
        check_receipt(receipt, submitted, &self.scenario.note_verifier());
    }

    /// A fresh observation by the first monitor, signed with its key.
    pub fn signed_observation(&self, narrative: &str) -> SignedEvent {
        self.scenario.observation().narrative(narrative).signed()
    }
}

fn temporary_dir() -> TempDir {
    tempfile::tempdir().expect("cannot create a temporary directory")
}

/// The configuration of a node of `scenario` on `data_dir`, listening on an
/// ephemeral local port, bootstrapped with the scenario's first entries;
/// everything else as `serve` defaults it.
pub fn node_config(data_dir: &Path, scenario: &Scenario) -> NodeConfig {
    NodeConfig {
        bootstrap: scenario.bootstrap(),
        ..NodeConfig::new(
            data_dir.to_path_buf(),
            "127.0.0.1:0".parse().expect("a socket address"),
            scenario.operator().clone(),
        )
    }
}

pub async fn connect(node: &Node) -> Client {
    client::connect(&node.url())
        .await
        .expect("cannot connect to the node")
}

/// The current checkpoint's body, after verifying its note with `verifier`
/// (the ledger's origin and operator key); also checks that the message's
/// convenience copies match the note.
pub async fn checkpoint(client: &mut Client, verifier: &NoteVerifier) -> CheckpointBody {
    let message = client
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .expect("GetCheckpoint failed")
        .into_inner();
    let body = open_checkpoint(&message.note, verifier)
        .unwrap_or_else(|error| panic!("checkpoint note does not verify: {error}"));
    assert_eq!(body.origin, verifier.name());
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
pub async fn read_log(client: &mut Client, verifier: &NoteVerifier) -> Vec<LogEntry> {
    let size = checkpoint(client, verifier).await.tree_size;
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

/// `SHA-256(0x00 || leaf)`, computed here with sha2 rather than through the
/// core, so tests check the core's leaf hashes independently.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// Proof hashes off the wire, each checked to be 32 bytes.
pub fn proof_hashes(hashes: &[Vec<u8>]) -> Vec<Hash> {
    hashes.iter().map(|hash| hash32(hash)).collect()
}

/// 32 bytes off the wire as a hash.
pub fn hash32(bytes: &[u8]) -> Hash {
    bytes
        .try_into()
        .unwrap_or_else(|_| panic!("expected 32 bytes, got {}", bytes.len()))
}

/// Checks everything a receipt promises: the leaf bytes are the submitted
/// payload under `seq`, the leaf hash is SHA-256(0x00 || leaf), the note
/// verifies with `verifier` and matches its copies, and the inclusion proof
/// leads from the leaf hash to the note's root.
pub fn check_receipt(receipt: &Receipt, submitted: &SignedEvent, verifier: &NoteVerifier) {
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
    let body = open_checkpoint(&message.note, verifier)
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
