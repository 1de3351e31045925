//! The Ledger service over real gRPC: a node on a local port with a sled
//! store in a temporary directory, bootstrapped like `serve --dev`.
//!
//! Every receipt, entry and proof is checked with the crate's verifiers
//! (merkle, checkpoint, leaf), with leaf hashes recomputed here with sha2.

use std::collections::BTreeSet;
use std::time::Duration;

use ceasefire_core::checkpoint::CheckpointBody;
use ceasefire_core::leaf::Leaf;
use ceasefire_core::merkle::{self, verify_consistency, verify_inclusion, Hash};
use ceasefire_core::signing::{sign_event, EVENT_SIGNATURE_DOMAIN};
use ceasefire_grpc::client::sign;
use ceasefire_grpc::proto::{
    event::Body, submit_result::Outcome, Event, Evidence, GetConsistencyProofRequest,
    GetInclusionProofRequest, Receipt, Signature, SignedEvent, SubmitResult,
};
use ceasefire_node::node::{self, NodeConfig};
use ceasefire_node::sequencer::SequencerConfig;
use ceasefire_testkit::fixture::{
    checkpoint, connect, get_entries, hash32, leaf_hash, node_config, proof_hashes,
    streamed_receipt, Client, TestNode,
};
use ceasefire_testkit::scenario::{Scenario, BOOTSTRAP_ENTRIES, DEV_SIGNATORY};
use ed25519_dalek::{Signer, SigningKey};
use prost::Message;
use tonic::Code;

async fn submit_ok(client: &mut Client, signed: &SignedEvent) -> Receipt {
    client
        .submit(signed.clone())
        .await
        .unwrap_or_else(|status| panic!("submit refused: {status:?}"))
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_get_contiguous_seqs_and_valid_receipts() {
    const TASKS: usize = 8;
    const PER_TASK: usize = 25;
    let node = TestNode::start().await;
    assert_eq!(node.checkpoint().await.tree_size, BOOTSTRAP_ENTRIES);

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let mut client = node.new_client().await;
        let scenario = node.scenario.clone();
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for i in 0..PER_TASK {
                let signed = scenario
                    .observation()
                    .narrative(&format!("task {task} report {i}"))
                    .signed();
                let receipt = submit_ok(&mut client, &signed).await;
                receipts.push((signed, receipt));
            }
            receipts
        }));
    }
    let mut seqs = BTreeSet::new();
    let mut leaf_hashes = BTreeSet::new();
    for task in tasks {
        for (signed, receipt) in task.await.expect("a submitting task panicked") {
            node.check_receipt(&receipt, &signed);
            assert!(seqs.insert(receipt.seq), "seq {} given twice", receipt.seq);
            assert!(leaf_hashes.insert(receipt.leaf_hash.clone()));
        }
    }
    let total = (TASKS * PER_TASK) as u64;
    let expected: BTreeSet<u64> = (BOOTSTRAP_ENTRIES..BOOTSTRAP_ENTRIES + total).collect();
    assert_eq!(
        seqs, expected,
        "seqs are not contiguous after the bootstrap"
    );
    assert_eq!(
        node.checkpoint().await.tree_size,
        BOOTSTRAP_ENTRIES + total,
        "the log holds entries no receipt accounts for"
    );
    node.shutdown().await;
}

/// Decodes every entry and checks the chain and the clock; returns the
/// leaf hashes in order.
fn check_chain(entries: &[ceasefire_grpc::proto::LogEntry]) -> Vec<Hash> {
    let mut previous_hash = [0u8; 32];
    let mut previous_time = i64::MIN;
    let mut hashes = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        assert_eq!(entry.seq, index as u64, "entries out of order");
        let leaf = Leaf::decode(&entry.leaf)
            .unwrap_or_else(|error| panic!("entry {} does not decode: {error}", entry.seq));
        assert_eq!(leaf.seq, entry.seq, "leaf seq differs from LogEntry.seq");
        assert_eq!(
            leaf.prev_leaf_hash, previous_hash,
            "entry {} does not chain to its predecessor",
            entry.seq
        );
        assert!(
            leaf.received_at_micros >= previous_time,
            "received_at goes down at entry {}",
            entry.seq
        );
        assert_eq!(leaf.encode(), entry.leaf, "leaf is not canonical");
        Event::decode(leaf.payload.as_slice()).expect("payload is not an Event");
        previous_hash = leaf_hash(&entry.leaf);
        previous_time = leaf.received_at_micros;
        hashes.push(previous_hash);
    }
    hashes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_entries_returns_a_chained_log_that_rebuilds_the_root() {
    let node = TestNode::start().await;
    let mut client = node.client.clone();
    for i in 0..13 {
        submit_ok(
            &mut client,
            &node.signed_observation(&format!("report {i}")),
        )
        .await;
    }
    let body = node.checkpoint().await;
    let size = body.tree_size;
    assert_eq!(size, BOOTSTRAP_ENTRIES + 13);

    let entries = node.read_log().await;
    let hashes = check_chain(&entries);
    // The first entry is the genesis, the fifth the first observation.
    let genesis = Event::decode(Leaf::decode(&entries[0].leaf).unwrap().payload.as_slice())
        .expect("entry 0 is not an Event");
    assert!(matches!(genesis.body, Some(Body::Genesis(_))));

    // The root, rebuilt two independent ways.
    let source = merkle::MemorySource::from_leaf_hashes(hashes.iter().copied());
    assert_eq!(merkle::root(&source, size).unwrap(), body.root_hash);
    let mut frontier = merkle::Frontier::new();
    for hash in &hashes {
        frontier.push(*hash);
    }
    assert_eq!(frontier.root(), body.root_hash);

    // `end` beyond the tree is answered up to the tree's size.
    let tail = get_entries(&mut client, 2, size + 1_000).await.unwrap();
    assert_eq!(tail.len() as u64, size - 2);
    assert_eq!(tail, entries[2..]);
    let tail = get_entries(&mut client, 0, u64::MAX).await.unwrap();
    assert_eq!(tail, entries);
    // A middle range is exactly that range.
    let middle = get_entries(&mut client, 3, 7).await.unwrap();
    assert_eq!(middle, entries[3..7]);
    let last = get_entries(&mut client, size - 1, size).await.unwrap();
    assert_eq!(last, entries[entries.len() - 1..]);

    // start at or beyond the tree: OUT_OF_RANGE.
    for (start, end) in [(size, size + 1), (size + 10, size + 20)] {
        let status = get_entries(&mut client, start, end).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::OutOfRange,
            "[{start}, {end}): {status:?}"
        );
    }
    // end <= start: INVALID_ARGUMENT.
    for (start, end) in [(3, 3), (5, 2), (0, 0)] {
        let status = get_entries(&mut client, start, end).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "[{start}, {end}): {status:?}"
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_and_inclusion_proofs_verify_between_checkpoints() {
    let node = TestNode::start().await;
    let verifier = node.scenario.note_verifier();
    let mut client = node.client.clone();
    // Rounds of different sizes, so the checkpoints cover powers of two and
    // sizes on either side of them (4, 5, 7, 8, 9, 12, 16, 17, 21, 32, 33).
    let mut checkpoints: Vec<CheckpointBody> = vec![node.checkpoint().await];
    for round in [1usize, 2, 1, 1, 3, 4, 1, 4, 11, 1] {
        let submissions: Vec<SignedEvent> = (0..round)
            .map(|i| node.signed_observation(&format!("round of {round}, report {i}")))
            .collect();
        // Submitted concurrently, so rounds may be committed as one batch.
        let mut handles = Vec::new();
        for signed in submissions {
            let mut client = client.clone();
            handles.push(tokio::spawn(async move {
                submit_ok(&mut client, &signed).await
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        checkpoints.push(checkpoint(&mut client, &verifier).await);
    }
    let sizes: Vec<u64> = checkpoints.iter().map(|c| c.tree_size).collect();
    assert_eq!(sizes, [4, 5, 7, 8, 9, 12, 16, 17, 21, 32, 33]);

    for old in &checkpoints {
        for new in &checkpoints {
            let request = GetConsistencyProofRequest {
                old_size: old.tree_size,
                new_size: new.tree_size,
            };
            let result = client.get_consistency_proof(request).await;
            if old.tree_size > new.tree_size {
                let status = result.unwrap_err();
                assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
                continue;
            }
            let proof = result.expect("GetConsistencyProof failed").into_inner();
            assert_eq!(
                (proof.old_size, proof.tree_size),
                (old.tree_size, new.tree_size)
            );
            let hashes = proof_hashes(&proof.hashes);
            if old.tree_size == new.tree_size {
                assert!(hashes.is_empty(), "proof between equal sizes is not empty");
            }
            verify_consistency(
                old.tree_size,
                new.tree_size,
                &old.root_hash,
                &new.root_hash,
                &hashes,
            )
            .unwrap_or_else(|error| {
                panic!(
                    "consistency {} -> {}: {error}",
                    old.tree_size, new.tree_size
                )
            });
            // The proof binds the roots: a wrong old root fails.
            if old.tree_size < new.tree_size {
                let mut wrong = old.root_hash;
                wrong[0] ^= 1;
                assert!(verify_consistency(
                    old.tree_size,
                    new.tree_size,
                    &wrong,
                    &new.root_hash,
                    &hashes
                )
                .is_err());
            }
        }
    }

    // From size 0 the proof is empty; new_size 0 means the current size.
    let head = checkpoints.last().unwrap().clone();
    for new_size in [0, 1, 5, head.tree_size] {
        let proof = client
            .get_consistency_proof(GetConsistencyProofRequest {
                old_size: 0,
                new_size,
            })
            .await
            .expect("consistency from 0 failed")
            .into_inner();
        assert!(
            proof.hashes.is_empty(),
            "proof from 0 to {new_size} is not empty"
        );
    }
    let proof = client
        .get_consistency_proof(GetConsistencyProofRequest {
            old_size: 8,
            new_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proof.tree_size, head.tree_size);
    verify_consistency(
        8,
        head.tree_size,
        &checkpoints[3].root_hash,
        &head.root_hash,
        &proof_hashes(&proof.hashes),
    )
    .unwrap();
    // Beyond the head: OUT_OF_RANGE.
    let status = client
        .get_consistency_proof(GetConsistencyProofRequest {
            old_size: 1,
            new_size: head.tree_size + 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    // Inclusion of every entry, in the current tree (tree_size 0 and the
    // explicit size) and in every earlier checkpoint that holds it.
    let entries = get_entries(&mut client, 0, head.tree_size).await.unwrap();
    for entry in &entries {
        let hash = leaf_hash(&entry.leaf);
        for tree_size in [0, head.tree_size] {
            let proof = client
                .get_inclusion_proof(GetInclusionProofRequest {
                    seq: entry.seq,
                    tree_size,
                })
                .await
                .expect("GetInclusionProof failed")
                .into_inner();
            assert_eq!(
                (proof.leaf_index, proof.tree_size),
                (entry.seq, head.tree_size)
            );
            verify_inclusion(
                &hash,
                entry.seq,
                head.tree_size,
                &proof_hashes(&proof.hashes),
                &head.root_hash,
            )
            .unwrap_or_else(|error| panic!("inclusion of {}: {error}", entry.seq));
        }
        for old in checkpoints.iter().filter(|c| c.tree_size > entry.seq) {
            let proof = client
                .get_inclusion_proof(GetInclusionProofRequest {
                    seq: entry.seq,
                    tree_size: old.tree_size,
                })
                .await
                .unwrap()
                .into_inner();
            verify_inclusion(
                &hash,
                entry.seq,
                old.tree_size,
                &proof_hashes(&proof.hashes),
                &old.root_hash,
            )
            .unwrap_or_else(|error| {
                panic!("inclusion of {} in {}: {error}", entry.seq, old.tree_size)
            });
        }
    }
    // tree_size beyond the head, or a seq outside the tree: OUT_OF_RANGE.
    for (seq, tree_size) in [
        (0, head.tree_size + 1),
        (head.tree_size, 0),
        (5, 5),
        (u64::MAX, 0),
    ] {
        let status = client
            .get_inclusion_proof(GetInclusionProofRequest { seq, tree_size })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::OutOfRange,
            "seq {seq}, tree_size {tree_size}: {status:?}"
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_serves_the_same_log_and_continues_the_chain() {
    let node = TestNode::start().await;
    let mut client = node.client.clone();
    for i in 0..10 {
        submit_ok(
            &mut client,
            &node.signed_observation(&format!("before {i}")),
        )
        .await;
    }
    let before = node.checkpoint().await;
    let entries_before = node.read_log().await;
    drop(client);

    let node = node.restart().await;
    let verifier = node.scenario.note_verifier();
    let mut client = node.client.clone();
    let after = node.checkpoint().await;
    assert_eq!(after, before, "checkpoint changed across the restart");
    let entries_after = node.read_log().await;
    assert_eq!(
        entries_after, entries_before,
        "entries changed across the restart"
    );
    let hashes = check_chain(&entries_after);
    for (seq, hash) in hashes.iter().enumerate() {
        let proof = client
            .get_inclusion_proof(GetInclusionProofRequest {
                seq: seq as u64,
                tree_size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        verify_inclusion(
            hash,
            seq as u64,
            after.tree_size,
            &proof_hashes(&proof.hashes),
            &after.root_hash,
        )
        .unwrap();
    }

    // A new submission continues the chain from the last entry.
    let signed = node.signed_observation("after the restart");
    let receipt = submit_ok(&mut client, &signed).await;
    node.check_receipt(&receipt, &signed);
    assert_eq!(receipt.seq, before.tree_size);
    let leaf = Leaf::decode(&receipt.leaf).unwrap();
    assert_eq!(leaf.prev_leaf_hash, *hashes.last().unwrap());
    let last_time = Leaf::decode(&entries_after.last().unwrap().leaf)
        .unwrap()
        .received_at_micros;
    assert!(leaf.received_at_micros >= last_time);
    let grown = checkpoint(&mut client, &verifier).await;
    assert_eq!(grown.tree_size, before.tree_size + 1);
    let proof = client
        .get_consistency_proof(GetConsistencyProofRequest {
            old_size: before.tree_size,
            new_size: grown.tree_size,
        })
        .await
        .unwrap()
        .into_inner();
    verify_consistency(
        before.tree_size,
        grown.tree_size,
        &before.root_hash,
        &grown.root_hash,
        &proof_hashes(&proof.hashes),
    )
    .unwrap();
    // Nonces survive the restart: an old entry resubmitted is still itself.
    let replay = signed_event_of(&entries_before[BOOTSTRAP_ENTRIES as usize].leaf);
    let receipt = submit_ok(&mut client, &replay).await;
    assert_eq!(receipt.seq, BOOTSTRAP_ENTRIES);
    assert_eq!(
        checkpoint(&mut client, &verifier).await.tree_size,
        grown.tree_size
    );

    drop(client);
    // And once more, with the new entry, given a fresh dev bootstrap as
    // `serve --dev` does on every start: ignored for an existing log.
    let (dir, scenario) = node.stop().await;
    let node = TestNode::start_in(dir, scenario).await;
    assert_eq!(node.checkpoint().await, grown);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_directory_without_a_genesis_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let result = node::start(NodeConfig {
        bootstrap: Vec::new(),
        ..node_config(dir.path(), &Scenario::dev_with_random_keys())
    })
    .await;
    let error = result
        .err()
        .expect("a node started with no ledger and no genesis");
    assert!(
        format!("{error:#}").contains("genesis"),
        "unhelpful error: {error:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_receipt_given_before_a_shutdown_survives_it() {
    const TASKS: usize = 4;
    let TestNode {
        node: running,
        dir,
        scenario,
        client,
    } = TestNode::start().await;
    drop(client);
    let (receipts, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let mut client = connect(&running).await;
        let scenario = scenario.clone();
        let receipts = receipts.clone();
        tasks.push(tokio::spawn(async move {
            // Submit until the node stops answering.
            for i in 0..10_000 {
                let signed = scenario
                    .observation()
                    .narrative(&format!("task {task}, {i}"))
                    .signed();
                match client.submit(signed.clone()).await {
                    Ok(receipt) => {
                        let _ = receipts.send((signed, receipt.into_inner()));
                    }
                    Err(_) => return,
                }
            }
            panic!("the node never stopped answering");
        }));
    }
    drop(receipts);
    // Shut down while submissions are in flight, once some have landed.
    let mut landed = Vec::new();
    while landed.len() < 20 {
        landed.push(arrived.recv().await.expect("the submitters stopped early"));
    }
    tokio::time::timeout(Duration::from_secs(20), running.shutdown())
        .await
        .expect("shutdown under load did not finish within 20 s")
        .expect("shutdown under load failed");
    for task in tasks {
        task.await.expect("a submitter panicked");
    }
    while let Some(receipt) = arrived.recv().await {
        landed.push(receipt);
    }

    let node = TestNode::resume(dir, scenario).await;
    let mut client = node.client.clone();
    let head = node.checkpoint().await;
    let entries = get_entries(&mut client, 0, head.tree_size).await.unwrap();
    check_chain(&entries);
    for (signed, receipt) in &landed {
        node.check_receipt(receipt, signed);
        let entry = entries
            .get(receipt.seq as usize)
            .unwrap_or_else(|| panic!("receipted entry {} was lost", receipt.seq));
        assert_eq!(
            entry.leaf, receipt.leaf,
            "receipted entry {} changed",
            receipt.seq
        );
        // The receipt's checkpoint is a prefix of the recovered log.
        let old = receipt.checkpoint.as_ref().unwrap();
        let proof = client
            .get_consistency_proof(GetConsistencyProofRequest {
                old_size: old.tree_size,
                new_size: head.tree_size,
            })
            .await
            .unwrap()
            .into_inner();
        verify_consistency(
            old.tree_size,
            head.tree_size,
            &hash32(&old.root_hash),
            &head.root_hash,
            &proof_hashes(&proof.hashes),
        )
        .unwrap();
    }
    drop(client);
    node.shutdown().await;
}

/// The entry at `seq` as a SignedEvent, rebuilt from its leaf.
fn signed_event_of(leaf: &[u8]) -> SignedEvent {
    let leaf = Leaf::decode(leaf).unwrap();
    SignedEvent {
        payload: leaf.payload,
        signatures: leaf
            .signatures
            .iter()
            .map(|s| Signature {
                public_key: s.public_key.to_vec(),
                signature: s.signature.to_vec(),
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_is_idempotent_and_a_replayed_nonce_is_refused() {
    let node = TestNode::start().await;
    let mut client = node.client.clone();
    let event = node.scenario.observation().narrative("seen once").event();
    let signed = sign(&event, &[node.monitor()]);
    let first = submit_ok(&mut client, &signed).await;
    node.check_receipt(&first, &signed);
    let size = node.checkpoint().await;

    let again = submit_ok(&mut client, &signed).await;
    node.check_receipt(&again, &signed);
    assert_eq!(again.seq, first.seq);
    assert_eq!(again.leaf_hash, first.leaf_hash);
    assert_eq!(again.leaf, first.leaf);
    assert_eq!(
        node.checkpoint().await,
        size,
        "the log grew on a resubmission"
    );

    // After other entries, the receipt carries a newer checkpoint and proof.
    submit_ok(&mut client, &node.signed_observation("another")).await;
    let later = submit_ok(&mut client, &signed).await;
    node.check_receipt(&later, &signed);
    assert_eq!(later.seq, first.seq);
    assert_eq!(later.leaf_hash, first.leaf_hash);
    assert_eq!(
        later.checkpoint.as_ref().unwrap().tree_size,
        size.tree_size + 1
    );
    let size = node.checkpoint().await;

    // The same identical event twice at once (likely one batch): one entry.
    let twin = node.signed_observation("twins");
    let (mut one, mut two) = (client.clone(), client.clone());
    let (a, b) = tokio::join!(submit_ok(&mut one, &twin), submit_ok(&mut two, &twin));
    assert_eq!((a.seq, &a.leaf_hash), (b.seq, &b.leaf_hash));
    assert_eq!(a.seq, size.tree_size);
    let size = node.checkpoint().await;
    assert_eq!(size.tree_size, a.seq + 1);

    // Bootstrap entries are idempotent too: the genesis is still entry 0.
    let genesis = get_entries(&mut client, 0, 1).await.unwrap().remove(0);
    let receipt = submit_ok(&mut client, &signed_event_of(&genesis.leaf)).await;
    assert_eq!(receipt.seq, 0);
    assert_eq!(receipt.leaf, genesis.leaf);

    // Same author and nonce, different bytes: ALREADY_EXISTS.
    let replay = node
        .scenario
        .observation()
        .narrative("seen differently")
        .nonce(&event.nonce)
        .signed();
    let status = client.submit(replay.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    // Even when the first one is still in the same batch.
    let (x, y) = {
        let (first, second) = one_nonce_two_payloads(&node);
        let (mut one, mut two) = (client.clone(), client.clone());
        tokio::join!(one.submit(first), two.submit(second))
    };
    let codes = [
        x.as_ref().map(|_| Code::Ok).unwrap_or_else(|s| s.code()),
        y.as_ref().map(|_| Code::Ok).unwrap_or_else(|s| s.code()),
    ];
    assert!(
        codes.contains(&Code::Ok) && codes.contains(&Code::AlreadyExists),
        "two events with one nonce: {codes:?}"
    );
    let size = node.checkpoint().await;

    // After a restart, with nothing of the run left in memory: both still
    // hold.
    let (dir, scenario) = node.stop().await;
    let node = TestNode::resume(dir, scenario).await;
    let mut client = node.client.clone();
    let again = submit_ok(&mut client, &signed).await;
    assert_eq!((again.seq, &again.leaf), (first.seq, &first.leaf));
    let status = client.submit(replay).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    submit_ok(&mut client, &node.signed_observation("after the restart")).await;
    assert_eq!(node.checkpoint().await.tree_size, size.tree_size + 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_sorts_out_duplicates_and_replays() {
    // A long batch window, so that submissions sent together are sequenced
    // in one batch (the receipts' checkpoints show that they were).
    let node = TestNode::start_with(SequencerConfig {
        batch_delay: Duration::from_millis(500),
        ..SequencerConfig::default()
    })
    .await;
    let mut client = node.client.clone();
    let durable = node.signed_observation("already durable");
    let durable_receipt = submit_ok(&mut client, &durable).await;
    let size = node.checkpoint().await.tree_size;

    let twin = node.signed_observation("twin");
    let (first, second) = one_nonce_two_payloads(&node);
    let single = node.signed_observation("single");
    let submissions = [
        twin.clone(),
        twin.clone(),
        first,
        second,
        single,
        durable.clone(),
    ];
    let results = futures::future::join_all(submissions.iter().map(|signed| {
        let mut client = client.clone();
        let signed = signed.clone();
        async move { client.submit(signed).await.map(|r| r.into_inner()) }
    }))
    .await;
    let ok = |index: usize| -> &Receipt {
        results[index]
            .as_ref()
            .unwrap_or_else(|status| panic!("submission {index} refused: {status:?}"))
    };
    for (index, signed) in submissions.iter().enumerate() {
        if let Ok(receipt) = &results[index] {
            node.check_receipt(receipt, signed);
        }
    }
    // Identical twins: one entry.
    assert_eq!(ok(0).seq, ok(1).seq);
    assert_eq!(ok(0).leaf_hash, ok(1).leaf_hash);
    // One nonce, two payloads: exactly one is taken.
    let pair_codes: Vec<Code> = results[2..4]
        .iter()
        .map(|result| result.as_ref().map_or_else(|s| s.code(), |_| Code::Ok))
        .collect();
    assert!(
        pair_codes.contains(&Code::Ok) && pair_codes.contains(&Code::AlreadyExists),
        "two events with one nonce in one batch: {pair_codes:?}"
    );
    let pair_receipt = results[2..4].iter().find_map(|r| r.as_ref().ok()).unwrap();
    // A durable entry resubmitted is itself.
    assert_eq!(ok(5).seq, durable_receipt.seq);
    assert_eq!(ok(5).leaf_hash, durable_receipt.leaf_hash);

    let new_seqs: BTreeSet<u64> = [ok(0).seq, pair_receipt.seq, ok(4).seq].into();
    assert_eq!(new_seqs, (size..size + 3).collect());
    for receipt in [ok(0), ok(1), pair_receipt, ok(4)] {
        assert_eq!(
            receipt.checkpoint.as_ref().unwrap().tree_size,
            size + 3,
            "the submissions were not sequenced in one batch"
        );
    }
    assert_eq!(node.checkpoint().await.tree_size, size + 3);
    check_chain(&node.read_log().await);
    node.shutdown().await;
}

/// Submits `signed`, expects `code`, and checks the log did not change.
async fn assert_refused(node: &TestNode, what: &str, signed: SignedEvent, code: Code) {
    let before = node.checkpoint().await;
    let status = node
        .client
        .clone()
        .submit(signed)
        .await
        .expect_err(&format!("{what}: accepted"));
    assert_eq!(status.code(), code, "{what}: {status:?}");
    let after = node.checkpoint().await;
    assert_eq!(after, before, "{what}: the log changed");
}

fn wire(key: &SigningKey, signature: [u8; 64]) -> Signature {
    Signature {
        public_key: key.verifying_key().to_bytes().to_vec(),
        signature: signature.to_vec(),
    }
}

/// Two valid observations by the monitor with one nonce and different
/// narratives ("first of a pair", "second of a pair").
fn one_nonce_two_payloads(node: &TestNode) -> (SignedEvent, SignedEvent) {
    let first = node.signed_observation("first of a pair");
    let nonce = Event::decode(first.payload.as_slice()).unwrap().nonce;
    let second = node.scenario.observation().narrative("second of a pair");
    (first, second.nonce(&nonce).signed())
}

/// A valid observation by the monitor carrying `items` evidence references
/// with 2,000-byte URIs: about 2 KiB of payload each.
fn evidence_heavy(node: &TestNode, items: usize) -> SignedEvent {
    let evidence = (0..items)
        .map(|i| Evidence {
            sha256: vec![i as u8; 32],
            media_type: "image/jpeg".into(),
            uri: format!("https://evidence.example.org/{i:04}/{}", "a".repeat(1_960)),
        })
        .collect();
    node.scenario
        .observation()
        .narrative("large evidence list")
        .evidence(evidence)
        .signed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_get_precise_codes_and_change_nothing() {
    let node = TestNode::start().await;
    let monitor = node.monitor().clone();
    let signatory = node.signatory().clone();
    let observation = |narrative: &str| node.scenario.observation().narrative(narrative);
    let good = observation("good").signed();

    // Payload that is not an Event (a truncated varint), validly signed.
    let garbage = vec![0xff; 8];
    let signature = sign_event(&garbage, &monitor);
    let signed = SignedEvent {
        payload: garbage,
        signatures: vec![wire(&monitor, signature.signature)],
    };
    assert_refused(&node, "garbage payload", signed, Code::InvalidArgument).await;

    let signed = SignedEvent {
        payload: good.payload.clone(),
        signatures: Vec::new(),
    };
    assert_refused(&node, "no signatures", signed, Code::InvalidArgument).await;

    let mut signed = good.clone();
    signed.signatures[0].public_key.pop();
    assert_refused(&node, "31-byte public key", signed, Code::InvalidArgument).await;

    let mut signed = good.clone();
    signed.signatures[0].signature.pop();
    assert_refused(&node, "63-byte signature", signed, Code::InvalidArgument).await;

    for byte in [0, 40] {
        let mut signed = good.clone();
        signed.signatures[0].signature[byte] ^= 0x01;
        assert_refused(
            &node,
            "flipped signature byte",
            signed,
            Code::Unauthenticated,
        )
        .await;
    }

    let other = observation("other").signed();
    let signed = SignedEvent {
        payload: good.payload.clone(),
        signatures: other.signatures.clone(),
    };
    assert_refused(
        &node,
        "signature over another payload",
        signed,
        Code::Unauthenticated,
    )
    .await;

    // Raw Ed25519 over the payload, without the domain tag.
    assert_eq!(EVENT_SIGNATURE_DOMAIN, b"ceasefire-ledger:event:v1\n");
    let raw = monitor.sign(&good.payload).to_bytes();
    let signed = SignedEvent {
        payload: good.payload.clone(),
        signatures: vec![wire(&monitor, raw)],
    };
    assert_refused(&node, "no domain tag", signed, Code::Unauthenticated).await;

    let stranger = SigningKey::from_bytes(&[0x5a; 32]);
    let signed = observation("by a stranger").signed_by(&[&stranger]);
    assert_refused(&node, "unregistered key", signed, Code::PermissionDenied).await;
    // A registered key of the wrong party beside the author's.
    let signed = observation("co-signed").signed_by(&[&monitor, &signatory]);
    assert_refused(&node, "another party's key", signed, Code::PermissionDenied).await;

    let mut event = observation("elsewhere").event();
    event.agreement_id = "another-agreement".into();
    let signed = sign(&event, &[&monitor]);
    assert_refused(&node, "wrong agreement", signed, Code::FailedPrecondition).await;

    // Over the 32 KiB payload cap but under the gRPC message limit, and
    // valid in every other way (evidence URIs are 2 KiB each; the same
    // observation with fewer of them is accepted below).
    let signed = evidence_heavy(&node, 17);
    assert!(signed.payload.len() > 32 * 1024);
    assert!(signed.encoded_len() < ceasefire_grpc::MAX_GRPC_MESSAGE_BYTES);
    assert_refused(&node, "payload over 32 KiB", signed, Code::InvalidArgument).await;
    let signed = observation(&"x".repeat(33 * 1024)).signed();
    assert!(signed.payload.len() > 32 * 1024);
    assert_refused(
        &node,
        "narrative over 32 KiB",
        signed,
        Code::InvalidArgument,
    )
    .await;

    // Over the gRPC message limit: refused (whatever the code), nothing written.
    let signed = observation(&"x".repeat(100 * 1024)).signed();
    let before = node.checkpoint().await;
    let status = node.client.clone().submit(signed).await.unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    assert_eq!(
        node.checkpoint().await,
        before,
        "oversize message: the log changed"
    );

    // Over the narrative cap (4 KiB) but under the payload cap.
    let signed = observation(&"x".repeat(5 * 1024)).signed();
    assert_refused(&node, "narrative over 4 KiB", signed, Code::InvalidArgument).await;

    let mut signed = good.clone();
    signed.signatures.push(signed.signatures[0].clone());
    assert_refused(&node, "the same key twice", signed, Code::InvalidArgument).await;

    let many: Vec<SigningKey> = (0..33u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let many: Vec<&SigningKey> = many.iter().collect();
    let signed = observation("33 signatures").signed_by(&many);
    assert_refused(&node, "33 signatures", signed, Code::InvalidArgument).await;

    let signed = observation("short nonce").nonce(&[1, 2, 3, 4]).signed();
    assert_refused(&node, "4-byte nonce", signed, Code::InvalidArgument).await;

    let mut event = observation("no time").event();
    event.created_at = None;
    let signed = sign(&event, &[&monitor]);
    assert_refused(&node, "no created_at", signed, Code::InvalidArgument).await;

    let signed = observation("not a monitor").by(DEV_SIGNATORY).signed();
    assert_refused(
        &node,
        "observation by a signatory",
        signed,
        Code::PermissionDenied,
    )
    .await;

    let mut event = observation("from the future").event();
    event.created_at.as_mut().unwrap().seconds += 3600;
    let future_nonce = event.nonce.clone();
    let signed = sign(&event, &[&monitor]);
    assert_refused(
        &node,
        "created_at an hour ahead",
        signed,
        Code::InvalidArgument,
    )
    .await;

    let signed = observation("ends in the future")
        .with(|o| o.observed_until.as_mut().unwrap().seconds += 3600)
        .signed();
    assert_refused(
        &node,
        "observed_until an hour ahead",
        signed,
        Code::InvalidArgument,
    )
    .await;

    let signed = observation("far away")
        .with(|o| o.location.as_mut().unwrap().point.as_mut().unwrap().lat = 10.0)
        .signed();
    assert_refused(&node, "outside every zone", signed, Code::InvalidArgument).await;

    let second_genesis = node.scenario.genesis();
    assert!(matches!(
        Event::decode(second_genesis.payload.as_slice())
            .unwrap()
            .body,
        Some(Body::Genesis(_))
    ));
    assert_refused(
        &node,
        "a second genesis",
        second_genesis,
        Code::InvalidArgument,
    )
    .await;

    // A refused event consumed nothing: its nonce is still free, and the
    // ledger still takes good events, right after the last entry.
    let size = node.checkpoint().await.tree_size;
    let signed = observation("from the present")
        .nonce(&future_nonce)
        .signed();
    let mut client = node.client.clone();
    let receipt = submit_ok(&mut client, &signed).await;
    assert_eq!(receipt.seq, size);
    let receipt = submit_ok(&mut client, &good).await;
    assert_eq!(receipt.seq, size + 1);
    // Just under the payload cap: accepted.
    let large = evidence_heavy(&node, 15);
    assert!(large.payload.len() > 30 * 1024 && large.payload.len() <= 32 * 1024);
    let receipt = submit_ok(&mut client, &large).await;
    assert_eq!(receipt.seq, size + 2);
    node.check_receipt(&receipt, &large);
    assert_eq!(node.checkpoint().await.tree_size, size + 3);
    // Nothing refused reached the log.
    let entries = node.read_log().await;
    assert_eq!(entries.len() as u64, BOOTSTRAP_ENTRIES + 3);
    check_chain(&entries);
    node.shutdown().await;
}

/// Sends `events` on one SubmitStream and collects every answer, then the
/// status that ended the stream (`Ok(())` for a clean end).
async fn submit_stream(
    client: &mut Client,
    events: Vec<SignedEvent>,
) -> (Vec<SubmitResult>, Result<(), tonic::Status>) {
    let mut answers = client
        .submit_stream(futures::stream::iter(events))
        .await
        .expect("SubmitStream refused")
        .into_inner();
    let mut results = Vec::new();
    loop {
        match answers.message().await {
            Ok(Some(answer)) => results.push(answer),
            Ok(None) => return (results, Ok(())),
            Err(status) => return (results, Err(status)),
        }
    }
}

fn streamed_refusal(answer: &SubmitResult) -> Code {
    match &answer.outcome {
        Some(Outcome::Refusal(refusal)) => Code::from_i32(refusal.code),
        other => panic!("event {}: expected a refusal, got {other:?}", answer.index),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_stream_answers_every_event_in_order_and_goes_on_after_refusals() {
    let node = TestNode::start().await;
    let before = node.checkpoint().await.tree_size;

    let fresh: Vec<SignedEvent> = (0..300)
        .map(|i| node.signed_observation(&format!("bulk report {i}")))
        .collect();
    let mut forged = fresh[7].clone();
    forged.signatures[0].signature[5] ^= 0x01;
    let by_signatory = node
        .scenario
        .observation()
        .narrative("not a monitor")
        .signed_by(&[node.signatory()]);
    let replayed_nonce = node
        .scenario
        .observation()
        .narrative("other bytes")
        .nonce(&Event::decode(fresh[3].payload.as_slice()).unwrap().nonce)
        .signed();

    // 0..100 fresh, then four refusals and one identical resubmission, then
    // 200 more fresh: the stream goes on after each refusal.
    let mut events: Vec<SignedEvent> = fresh[..100].to_vec();
    let refused_at = events.len();
    events.push(SignedEvent {
        payload: vec![0xff; 8],
        ..fresh[0].clone()
    });
    events.push(forged);
    events.push(by_signatory);
    events.push(replayed_nonce);
    let resubmitted_at = events.len();
    events.push(fresh[3].clone());
    events.extend(fresh[100..].iter().cloned());

    let mut client = node.client.clone();
    let (answers, end) = submit_stream(&mut client, events.clone()).await;
    end.expect("the stream ended with an error");
    assert_eq!(answers.len(), events.len(), "not every event was answered");
    for (position, answer) in answers.iter().enumerate() {
        assert_eq!(answer.index, position as u64, "answers out of order");
    }
    let refusals: Vec<Code> = answers[refused_at..resubmitted_at]
        .iter()
        .map(streamed_refusal)
        .collect();
    assert_eq!(
        refusals,
        [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::AlreadyExists
        ]
    );
    let original = streamed_receipt(&answers[3]);
    let again = streamed_receipt(&answers[resubmitted_at]);
    assert_eq!((again.seq, &again.leaf), (original.seq, &original.leaf));

    // Every fresh event got its receipt, in the order sent, contiguous.
    let fresh_answers = answers[..refused_at]
        .iter()
        .chain(&answers[resubmitted_at + 1..]);
    for (expected_seq, (answer, signed)) in (before..).zip(fresh_answers.zip(&fresh)) {
        let receipt = streamed_receipt(answer);
        node.check_receipt(receipt, signed);
        assert_eq!(receipt.seq, expected_seq);
    }
    let after = node.checkpoint().await.tree_size;
    assert_eq!(
        after,
        before + fresh.len() as u64,
        "refused events were written"
    );
    check_chain(&node.read_log().await);
    node.shutdown().await;
}
