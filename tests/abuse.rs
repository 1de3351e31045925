//! Abuse: one client floods the node with forged signatures, holds
//! thousands of idle streams, sends oversized messages, or opens connections
//! and sends nothing (or half a frame). A real node (TestNode: sled store,
//! sequencer, tonic server on 127.0.0.1:0) and real keys; honest clients,
//! each on its own connection, submit throughout.
//!
//! What is asserted is correctness, never speed: every honest submission
//! gets a receipt that checks out (leaf, leaf hash, signed checkpoint,
//! inclusion proof), every abusive call gets its precise code and message,
//! each limit answers as documented, and the log holds exactly the honest
//! entries. One assertion is about order, not time: an honest event sent
//! while a flood of forged ones is being verified is answered before most
//! of the flood (the per-connection verification budget), which would fail
//! if verification were first come, first served. Latency and memory
//! figures are printed by `ceasefire-ledger bench --abuse`.
//!
//! Counts are bounded for a debug build on two cores (signature
//! verification is slow there): about a thousand forged events, about
//! three thousand stream openings, two silent connections. Every wait is
//! bounded.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ceasefire_ledger::client::{self, sign};
use ceasefire_ledger::core::checkpoint::open_checkpoint;
use ceasefire_ledger::core::leaf::Leaf;
use ceasefire_ledger::core::merkle::verify_inclusion;
use ceasefire_ledger::proto::{
    compliance_client::ComplianceClient, event::Body, submit_result::Outcome, GetCheckpointRequest,
    GetEntriesRequest, GetHistoryRequest, GetInclusionProofRequest, Receipt, SignedEvent,
    StatusFilter, SubmitResult, SubscribeRequest,
};
use ceasefire_ledger::server::{
    HANDSHAKE_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT,
    MAX_CONCURRENT_STREAMS_PER_CONNECTION, MAX_ENTRY_STREAMS, MAX_GRPC_MESSAGE_BYTES,
    MAX_SUBMIT_STREAMS, MAX_SUBSCRIPTIONS, VERIFY_BUDGET_PER_CONNECTION,
};
use common::{hash32, leaf_hash, note_verifier, observation, proof_hashes, Client, TestNode};
use ed25519_dalek::{SigningKey, VerifyingKey};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// The longest any single call may take before the test calls it a hang
/// (generous: the calls compete with a flood on two cores, in debug).
const CALL_WAIT: Duration = Duration::from_secs(60);

/// Honest clients running beside each abuse.
const HONEST_CLIENTS: usize = 2;

// ---------------------------------------------------------------------------
// Honest clients and what they must get

/// Checks everything a receipt promises: the leaf is the submitted payload
/// under `seq`, the leaf hash is SHA-256(0x00 || leaf), the checkpoint note
/// verifies with the operator key, and the inclusion proof leads from the
/// leaf hash to its root.
fn check_receipt(receipt: &Receipt, submitted: &SignedEvent, operator: &VerifyingKey) {
    let leaf = Leaf::decode(&receipt.leaf).expect("the receipt's leaf does not decode");
    assert_eq!(leaf.seq, receipt.seq, "leaf seq differs from the receipt's");
    assert_eq!(
        leaf.payload, submitted.payload,
        "leaf payload is not verbatim"
    );
    assert_eq!(receipt.leaf_hash, leaf_hash(&receipt.leaf).to_vec());
    let message = receipt
        .checkpoint
        .as_ref()
        .expect("receipt has no checkpoint");
    let body = open_checkpoint(&message.note, &note_verifier(operator))
        .unwrap_or_else(|error| panic!("receipt checkpoint does not verify: {error}"));
    assert!(
        body.tree_size > receipt.seq,
        "checkpoint does not cover seq"
    );
    let proof = receipt
        .inclusion_proof
        .as_ref()
        .expect("no inclusion proof");
    assert_eq!(
        (proof.leaf_index, proof.tree_size),
        (receipt.seq, body.tree_size)
    );
    verify_inclusion(
        &hash32(&receipt.leaf_hash),
        receipt.seq,
        body.tree_size,
        &proof_hashes(&proof.hashes),
        &body.root_hash,
    )
    .unwrap_or_else(|error| panic!("receipt for seq {}: {error}", receipt.seq));
}

/// Submits `signed` and expects a receipt within [`CALL_WAIT`].
async fn submit_ok(client: &mut Client, signed: &SignedEvent, what: &str) -> Receipt {
    tokio::time::timeout(CALL_WAIT, client.submit(signed.clone()))
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {CALL_WAIT:?}"))
        .unwrap_or_else(|status| panic!("{what}: refused: {status:?}"))
        .into_inner()
}

/// Honest clients, each on its own connection, submitting one fresh
/// observation after another until stopped.
struct Honest {
    stop: Arc<AtomicBool>,
    receipts: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(SignedEvent, Receipt)>>>,
}

impl Honest {
    async fn start(node: &TestNode) -> Honest {
        let stop = Arc::new(AtomicBool::new(false));
        let receipts = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for client_index in 0..HONEST_CLIENTS {
            let mut client = node.new_client().await;
            let monitor = node.monitor().clone();
            let (stop, receipts) = (stop.clone(), receipts.clone());
            tasks.push(tokio::spawn(async move {
                let mut submitted = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let narrative = format!("honest {client_index} report {}", submitted.len());
                    let signed = sign(&observation(&narrative), &[&monitor]);
                    let receipt = submit_ok(&mut client, &signed, &narrative).await;
                    receipts.fetch_add(1, Ordering::Relaxed);
                    submitted.push((signed, receipt));
                }
                submitted
            }));
        }
        let honest = Honest {
            stop,
            receipts,
            tasks,
        };
        // Every honest client is up before any abuse starts.
        honest.wait_for_receipts(HONEST_CLIENTS).await;
        honest
    }

    /// Waits (bounded) until the honest clients have `count` receipts in all.
    async fn wait_for_receipts(&self, count: usize) {
        let deadline = Instant::now() + CALL_WAIT;
        while self.receipts.load(Ordering::Relaxed) < count {
            assert!(
                Instant::now() < deadline,
                "honest clients got {} receipts in {CALL_WAIT:?}, expected {count}",
                self.receipts.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the clients and checks every receipt they got.
    async fn finish(self, node: &TestNode) -> Vec<(SignedEvent, Receipt)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("an honest client panicked"));
        }
        let operator = node.operator_key();
        for (signed, receipt) in &all {
            check_receipt(receipt, signed, &operator);
        }
        all
    }
}

/// The log holds its first `before` entries and then exactly the honest
/// entries, each where its receipt says: nothing abusive was written, not
/// even in part. Reads the whole log with GetEntries (many chunks).
async fn assert_log_is_exactly(node: &TestNode, before: u64, honest: &[(SignedEvent, Receipt)]) {
    let entries = node.read_log().await;
    assert_eq!(
        entries.len() as u64,
        before + honest.len() as u64,
        "the log holds entries no honest receipt accounts for"
    );
    let by_seq: BTreeMap<u64, &(SignedEvent, Receipt)> = honest
        .iter()
        .map(|submitted| (submitted.1.seq, submitted))
        .collect();
    assert_eq!(by_seq.len(), honest.len(), "a seq was given twice");
    for entry in &entries[before as usize..] {
        let (signed, receipt) = by_seq
            .get(&entry.seq)
            .unwrap_or_else(|| panic!("entry {} is no honest receipt's", entry.seq));
        assert_eq!(
            entry.leaf, receipt.leaf,
            "entry {} differs from its receipt",
            entry.seq
        );
        assert_eq!(Leaf::decode(&entry.leaf).unwrap().payload, signed.payload);
    }
}

/// A valid observation signed by the monitor and `signatures - 1` other
/// keys, the signature that sorts last (and so is verified last) with one
/// bit flipped: every signature costs the node a verification.
fn forged(narrative: &str, node: &TestNode, signatures: usize) -> SignedEvent {
    let others: Vec<SigningKey> = (1..signatures)
        .map(|_| SigningKey::generate(&mut rand_core::OsRng))
        .collect();
    let keys: Vec<&SigningKey> = std::iter::once(node.monitor()).chain(&others).collect();
    let mut signed = sign(&observation(narrative), &keys);
    signed
        .signatures
        .sort_by(|a, b| a.public_key.cmp(&b.public_key));
    signed.signatures.last_mut().unwrap().signature[5] ^= 0x01;
    signed
}

/// A valid observation by the dev monitor with a narrative of `bytes`
/// bytes: valid in every way but its size.
fn sized(node: &TestNode, bytes: usize) -> SignedEvent {
    let mut event = observation("");
    match &mut event.body {
        Some(Body::Observation(observation)) => observation.narrative = "x".repeat(bytes),
        _ => unreachable!("an observation"),
    }
    sign(&event, &[node.monitor()])
}

fn refusal(answer: &SubmitResult) -> (Code, &str) {
    match &answer.outcome {
        Some(Outcome::Refusal(refusal)) => (Code::from_i32(refusal.code), &refusal.message),
        other => panic!("event {}: expected a refusal, got {other:?}", answer.index),
    }
}

fn streamed_receipt(answer: &SubmitResult) -> &Receipt {
    match &answer.outcome {
        Some(Outcome::Receipt(receipt)) => receipt,
        other => panic!("event {}: expected a receipt, got {other:?}", answer.index),
    }
}

const FORGED_MESSAGE: &str = "does not verify over this payload";

// ---------------------------------------------------------------------------
// 1. A flood of forged signatures from one client

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_signatures_is_refused_and_does_not_queue_ahead_of_honest_events() {
    /// Forged unary Submits in flight at once on the abusive connection
    /// (the node takes 128 at a time from one connection), and forged
    /// events on one SubmitStream of the same connection.
    const FORGED_UNARY: usize = 60;
    const FORGED_STREAMED: usize = 60;
    /// Signatures on each forged event, all verified (the bad one sorts
    /// last): the node spends 8 verifications on each.
    const SIGNATURES: usize = 8;
    /// With the budget, the abusive connection has at most 64 signatures (8
    /// events) under verification when an honest event arrives; without
    /// it, the 128 unary calls and the stream's 256-event window all queue
    /// ahead of it. An honest event's wait is counted in forged answers
    /// returned meanwhile (its batch's sync included).
    const MOST_FORGED_ANSWERS_DURING_AN_HONEST_EVENT: usize =
        4 * VERIFY_BUDGET_PER_CONNECTION / SIGNATURES;

    let node = TestNode::start().await;
    let before = node.checkpoint().await.tree_size;
    let honest = Honest::start(&node).await;

    let abuser: Client = node.new_client().await;
    let answered = Arc::new(AtomicUsize::new(0));
    let mut unary = Vec::new();
    for i in 0..FORGED_UNARY {
        let (mut abuser, answered) = (abuser.clone(), answered.clone());
        let event = forged(&format!("forged unary {i}"), &node, SIGNATURES);
        unary.push(tokio::spawn(async move {
            let answer = tokio::time::timeout(CALL_WAIT, abuser.submit(event)).await;
            answered.fetch_add(1, Ordering::Relaxed);
            answer
        }));
    }
    let streamed: Vec<SignedEvent> = (0..FORGED_STREAMED)
        .map(|i| forged(&format!("forged streamed {i}"), &node, SIGNATURES))
        .collect();
    let stream = {
        let (mut abuser, answered) = (abuser.clone(), answered.clone());
        tokio::spawn(async move {
            let mut answers = abuser
                .submit_stream(futures::stream::iter(streamed))
                .await
                .expect("SubmitStream refused")
                .into_inner();
            let mut results = Vec::new();
            loop {
                match tokio::time::timeout(CALL_WAIT, answers.message()).await {
                    Ok(Ok(Some(answer))) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                        results.push(answer);
                    }
                    Ok(Ok(None)) => return Ok(results),
                    Ok(Err(status)) => return Err(status),
                    Err(_) => panic!("the forged stream hung after {} answers", results.len()),
                }
            }
        })
    };

    // Once the flood is being answered, honest events sent on a connection
    // of their own are each answered before most of the flood is.
    let total = FORGED_UNARY + FORGED_STREAMED;
    let deadline = Instant::now() + CALL_WAIT;
    while answered.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no forged event was answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut prober = node.new_client().await;
    let mut probes = Vec::new();
    for probe in 0..3 {
        let sent_at = answered.load(Ordering::Relaxed);
        assert!(
            total - sent_at > 2 * MOST_FORGED_ANSWERS_DURING_AN_HONEST_EVENT,
            "the flood ended too early to measure ({sent_at} of {total} answered)"
        );
        let signed = node.signed_observation(&format!("probe {probe}"));
        let receipt = submit_ok(&mut prober, &signed, "an honest probe").await;
        check_receipt(&receipt, &signed, &node.operator_key());
        let meanwhile = answered.load(Ordering::Relaxed) - sent_at;
        assert!(
            meanwhile <= MOST_FORGED_ANSWERS_DURING_AN_HONEST_EVENT,
            "an honest event waited while {meanwhile} forged events were answered \
             (at most {MOST_FORGED_ANSWERS_DURING_AN_HONEST_EVENT} expected): \
             verification is not fair between connections"
        );
        probes.push((signed, receipt));
    }

    // Every forged event: UNAUTHENTICATED, naming the signature.
    for call in unary {
        let status = call
            .await
            .unwrap()
            .expect("a forged Submit got no answer")
            .expect_err("a forged event was accepted");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(status.message().contains(FORGED_MESSAGE), "{status:?}");
    }
    let results = stream
        .await
        .unwrap()
        .expect("the forged stream ended with an error");
    assert_eq!(
        results.len(),
        FORGED_STREAMED,
        "not every forged event was answered"
    );
    for (position, answer) in results.iter().enumerate() {
        assert_eq!(answer.index, position as u64, "answers out of order");
        let (code, message) = refusal(answer);
        assert_eq!(code, Code::Unauthenticated, "{message}");
        assert!(message.contains(FORGED_MESSAGE), "{message}");
    }

    let mut submitted = honest.finish(&node).await;
    submitted.extend(probes);
    assert_log_is_exactly(&node, before, &submitted).await;
    node.shutdown().await;
}

// ---------------------------------------------------------------------------
// 2. Oversized messages and payloads

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_and_payloads_are_refused_and_the_connection_goes_on() {
    /// Oversized messages in flight at once on the abusive connection.
    const CONCURRENT_OVERSIZED: usize = 64;
    let node = TestNode::start().await;
    let operator = node.operator_key();
    let before = node.checkpoint().await.tree_size;
    let honest = Honest::start(&node).await;
    // Honest events sent on the abusive connection, between the abuse.
    let mut own = Vec::new();
    let mut abuser = node.new_client().await;

    let over_message = sized(&node, 100 * 1024);
    assert!(over_message.encoded_len() > MAX_GRPC_MESSAGE_BYTES);
    let over_payload = sized(&node, 40 * 1024);
    assert!(over_payload.payload.len() > 32 * 1024);
    assert!(over_payload.encoded_len() < MAX_GRPC_MESSAGE_BYTES);
    let assert_message_too_large = |status: &tonic::Status| {
        assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
        assert!(
            status.message().contains("message length too large")
                && status
                    .message()
                    .contains(&MAX_GRPC_MESSAGE_BYTES.to_string()),
            "{status:?}"
        );
    };
    let assert_payload_too_large = |code: Code, message: &str| {
        assert_eq!(code, Code::InvalidArgument, "{message}");
        assert!(message.contains("over the limit of 32768"), "{message}");
    };

    // Unary: each refused with its code; the connection goes on.
    let status = abuser.submit(over_message.clone()).await.unwrap_err();
    assert_message_too_large(&status);
    let signed = node.signed_observation("after a message over the limit");
    own.push((
        signed.clone(),
        submit_ok(&mut abuser, &signed, "after").await,
    ));
    let status = abuser.submit(over_payload.clone()).await.unwrap_err();
    assert_payload_too_large(status.code(), status.message());
    let signed = node.signed_observation("after a payload over the cap");
    own.push((
        signed.clone(),
        submit_ok(&mut abuser, &signed, "after").await,
    ));

    // The limit is the message's size: one byte over it is refused by the
    // transport, at it the event is read (and refused for its payload).
    let mut event = observation("");
    let mut at_limit = |bytes: usize| {
        match &mut event.body {
            Some(Body::Observation(observation)) => observation.narrative = "x".repeat(bytes),
            _ => unreachable!("an observation"),
        }
        sign(&event, &[node.monitor()])
    };
    let mut narrative = 60 * 1024;
    let mut exact = at_limit(narrative);
    for _ in 0..4 {
        narrative = narrative + MAX_GRPC_MESSAGE_BYTES - exact.encoded_len();
        exact = at_limit(narrative);
    }
    assert_eq!(exact.encoded_len(), MAX_GRPC_MESSAGE_BYTES);
    let status = abuser.submit(exact).await.unwrap_err();
    assert_payload_too_large(status.code(), status.message());
    let one_over = at_limit(narrative + 1);
    assert_eq!(one_over.encoded_len(), MAX_GRPC_MESSAGE_BYTES + 1);
    assert_message_too_large(&abuser.submit(one_over).await.unwrap_err());

    // Many at once on the same connection: every one refused, then an
    // honest event on it gets its receipt.
    let calls: Vec<_> = (0..CONCURRENT_OVERSIZED)
        .map(|i| {
            let (mut abuser, event) = (abuser.clone(), over_message.clone());
            let event = if i % 2 == 0 {
                event
            } else {
                over_payload.clone()
            };
            tokio::spawn(async move { tokio::time::timeout(CALL_WAIT, abuser.submit(event)).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let status = call
            .await
            .unwrap()
            .expect("an oversized call got no answer")
            .expect_err("an oversized event was accepted");
        if i % 2 == 0 {
            assert_message_too_large(&status);
        } else {
            assert_payload_too_large(status.code(), status.message());
        }
    }
    let signed = node.signed_observation("after many oversized calls");
    own.push((
        signed.clone(),
        submit_ok(&mut abuser, &signed, "after").await,
    ));

    // SubmitStream: a payload over the cap is answered and the stream goes
    // on; a message over the limit ends the stream with its status, after
    // the answers to what came before; what follows it is never read.
    let first = node.signed_observation("streamed first");
    let second = node.signed_observation("streamed second");
    let never = node.signed_observation("after the oversized message: never read");
    let events = vec![
        first.clone(),
        over_payload.clone(),
        second.clone(),
        over_message.clone(),
        never,
    ];
    let mut answers = abuser
        .submit_stream(futures::stream::iter(events))
        .await
        .expect("SubmitStream refused")
        .into_inner();
    let mut results = Vec::new();
    let end = loop {
        match tokio::time::timeout(CALL_WAIT, answers.message()).await {
            Ok(Ok(Some(answer))) => results.push(answer),
            Ok(Ok(None)) => break None,
            Ok(Err(status)) => break Some(status),
            Err(_) => panic!("the stream hung after {} answers", results.len()),
        }
    };
    let status = end.expect("a message over the limit did not end the stream");
    assert_message_too_large(&status);
    assert_eq!(
        results.len(),
        3,
        "answers before the oversized message: {results:?}"
    );
    own.push((first, streamed_receipt(&results[0]).clone()));
    let (code, message) = refusal(&results[1]);
    assert_payload_too_large(code, message);
    own.push((second, streamed_receipt(&results[2]).clone()));
    // The connection still takes streams and calls.
    let signed = node.signed_observation("a new stream after");
    let mut answers = abuser
        .submit_stream(futures::stream::iter(vec![signed.clone()]))
        .await
        .expect("SubmitStream refused after an oversized stream")
        .into_inner();
    let answer = answers.message().await.unwrap().expect("no answer");
    own.push((signed, streamed_receipt(&answer).clone()));
    assert!(answers.message().await.unwrap().is_none());
    let signed = node.signed_observation("a unary call after");
    own.push((
        signed.clone(),
        submit_ok(&mut abuser, &signed, "after").await,
    ));

    for (signed, receipt) in &own {
        check_receipt(receipt, signed, &operator);
    }
    let mut submitted = honest.finish(&node).await;
    submitted.extend(own);
    assert_log_is_exactly(&node, before, &submitted).await;
    node.shutdown().await;
}

// ---------------------------------------------------------------------------
// 3. Thousands of idle streams

/// A new connection to the node (a channel is one HTTP/2 connection).
async fn connection(node: &TestNode, endpoint: impl Fn(Endpoint) -> Endpoint) -> Channel {
    endpoint(Endpoint::from_shared(node.node.url()).unwrap())
        .connect()
        .await
        .expect("cannot connect")
}

/// An idle SubmitStream: nothing sent until the sender is used or dropped.
type IdleSubmit = (mpsc::Sender<SignedEvent>, tonic::Streaming<SubmitResult>);

async fn open_submit_stream(ledger: &mut Client) -> Result<IdleSubmit, tonic::Status> {
    let (events, outgoing) = mpsc::channel(1);
    let answers = tokio::time::timeout(
        CALL_WAIT,
        ledger.submit_stream(tokio_stream::wrappers::ReceiverStream::new(outgoing)),
    )
    .await
    .expect("SubmitStream got no answer")?;
    Ok((events, answers.into_inner()))
}

/// Checks that a call was refused for a stream limit, naming it.
fn assert_limit(result: Result<impl Sized, tonic::Status>, limit: usize, kind: &str) {
    let status = result
        .err()
        .unwrap_or_else(|| panic!("{kind}: opened past the limit"));
    assert_eq!(status.code(), Code::ResourceExhausted, "{kind}: {status:?}");
    let expected = format!("this server already has {limit} open {kind}, its limit");
    assert!(status.message().contains(&expected), "{kind}: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_streams_meet_their_limits_and_honest_clients_go_on() {
    /// Streams opened per connection: below the per-connection limit.
    const PER_CONNECTION: usize = 100;
    /// Attempts past each limit (refused, so they hold nothing).
    const EXTRA_SUBSCRIPTIONS: usize = 1_000;
    const EXTRA_SUBMIT_STREAMS: usize = 500;
    const EXTRA_ENTRY_STREAMS: usize = 500;
    assert!(PER_CONNECTION < MAX_CONCURRENT_STREAMS_PER_CONNECTION as usize);

    /// Entries written first, so that a GetEntries stream over the log
    /// outlasts what the node reads ahead into its buffers (a small log
    /// would be sent in one chunk and the stream end at once).
    const BULK: usize = 300;

    let node = TestNode::start().await;
    let operator = node.operator_key();
    let before = node.checkpoint().await.tree_size;
    let mut bulk_client = node.new_client().await;
    let bulk: Vec<SignedEvent> = (0..BULK)
        .map(|i| node.signed_observation(&format!("bulk {i}")))
        .collect();
    let mut answers = bulk_client
        .submit_stream(futures::stream::iter(bulk.clone()))
        .await
        .expect("SubmitStream refused")
        .into_inner();
    let mut own = Vec::new();
    for signed in bulk {
        let answer = tokio::time::timeout(CALL_WAIT, answers.message())
            .await
            .expect("the bulk stream hung")
            .expect("the bulk stream failed")
            .expect("the bulk stream ended early");
        own.push((signed, streamed_receipt(&answer).clone()));
    }
    let honest = Honest::start(&node).await;
    let size = node.checkpoint().await.tree_size;

    // One connection filled to its stream limit with idle SubmitStreams: a
    // further call on it waits for a slot (HTTP/2 clients queue), it is
    // not refused; closing one stream lets it through.
    let mut full = client::ledger_client(connection(&node, |endpoint| endpoint).await);
    let mut submit_streams = Vec::new();
    for _ in 0..MAX_CONCURRENT_STREAMS_PER_CONNECTION {
        submit_streams.push(
            open_submit_stream(&mut full)
                .await
                .expect("SubmitStream refused"),
        );
    }
    let mut queued = full.clone();
    let waiting = tokio::spawn(async move { queued.get_checkpoint(GetCheckpointRequest {}).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a call past the connection's {MAX_CONCURRENT_STREAMS_PER_CONNECTION} streams was \
         not held back"
    );
    let (events, mut answers) = submit_streams.pop().unwrap();
    drop(events);
    let end = tokio::time::timeout(CALL_WAIT, answers.message()).await;
    assert!(
        matches!(end, Ok(Ok(None))),
        "a SubmitStream closed by its client did not end cleanly: {end:?}"
    );
    drop(answers);
    tokio::time::timeout(CALL_WAIT, waiting)
        .await
        .expect("the queued call did not get its slot")
        .unwrap()
        .expect("the queued call failed");

    // SubmitStreams up to their limit over more connections, then refusals.
    while submit_streams.len() < MAX_SUBMIT_STREAMS {
        let mut ledger = client::ledger_client(connection(&node, |endpoint| endpoint).await);
        for _ in 0..PER_CONNECTION.min(MAX_SUBMIT_STREAMS - submit_streams.len()) {
            submit_streams.push(
                open_submit_stream(&mut ledger)
                    .await
                    .expect("SubmitStream refused"),
            );
        }
    }
    let mut refused_on = client::ledger_client(connection(&node, |endpoint| endpoint).await);
    for _ in 0..EXTRA_SUBMIT_STREAMS {
        assert_limit(
            open_submit_stream(&mut refused_on).await,
            MAX_SUBMIT_STREAMS,
            "SubmitStreams",
        );
    }

    // Subscriptions up to their limit, then refusals.
    let request = SubscribeRequest {
        filter: Some(StatusFilter::default()),
        from_seq: size,
        from_index: 0,
    };
    let mut subscriptions = Vec::new();
    while subscriptions.len() < MAX_SUBSCRIPTIONS {
        let mut compliance = ComplianceClient::new(connection(&node, |endpoint| endpoint).await);
        for _ in 0..PER_CONNECTION.min(MAX_SUBSCRIPTIONS - subscriptions.len()) {
            subscriptions.push(
                compliance
                    .subscribe(request.clone())
                    .await
                    .expect("Subscribe refused under the limit")
                    .into_inner(),
            );
        }
    }
    let mut compliance = ComplianceClient::new(connection(&node, |endpoint| endpoint).await);
    for _ in 0..EXTRA_SUBSCRIPTIONS {
        assert_limit(
            compliance.subscribe(request.clone()).await,
            MAX_SUBSCRIPTIONS,
            "subscriptions",
        );
    }

    // GetEntries readers that grant no flow-control window (the node can
    // send them nothing), up to their limit, then refusals.
    let mut readers = Vec::new();
    while readers.len() < MAX_ENTRY_STREAMS {
        let channel = connection(&node, |endpoint| {
            endpoint.initial_stream_window_size(Some(0))
        })
        .await;
        let mut ledger = client::ledger_client(channel);
        for _ in 0..PER_CONNECTION.min(MAX_ENTRY_STREAMS - readers.len()) {
            readers.push(
                ledger
                    .get_entries(GetEntriesRequest {
                        start: 0,
                        end: size,
                    })
                    .await
                    .expect("GetEntries refused under the limit")
                    .into_inner(),
            );
        }
    }
    for _ in 0..EXTRA_ENTRY_STREAMS {
        assert_limit(
            refused_on
                .get_entries(GetEntriesRequest {
                    start: 0,
                    end: size,
                })
                .await,
            MAX_ENTRY_STREAMS,
            "GetEntries streams",
        );
    }

    // With all of them held: honest clients go on, and reads that need the
    // store (on the blocking pool) are answered.
    let so_far = honest.receipts.load(Ordering::Relaxed);
    honest.wait_for_receipts(so_far + 10).await;
    let mut reader = node.new_client().await;
    let proof = tokio::time::timeout(
        CALL_WAIT,
        reader.get_inclusion_proof(GetInclusionProofRequest {
            seq: before,
            tree_size: 0,
        }),
    )
    .await
    .expect("GetInclusionProof hung")
    .expect("GetInclusionProof failed");
    assert_eq!(proof.into_inner().leaf_index, before);
    let mut compliance_reader = node.compliance().await;
    tokio::time::timeout(
        CALL_WAIT,
        compliance_reader.get_history(GetHistoryRequest {
            zone_id: ceasefire_ledger::dev::DEV_ZONE.into(),
            commitment_id: ceasefire_ledger::dev::DEV_COMMITMENT.into(),
        }),
    )
    .await
    .expect("GetHistory hung")
    .expect("GetHistory failed");

    // Clients leaving free their streams: each kind opens again.
    drop(subscriptions);
    drop(readers);
    for (events, answers) in submit_streams {
        drop(events);
        drop(answers);
    }
    let deadline = Instant::now() + CALL_WAIT;
    loop {
        let subscribe = compliance.subscribe(request.clone()).await;
        let entries = refused_on
            .get_entries(GetEntriesRequest { start: 0, end: 1 })
            .await;
        let submit = open_submit_stream(&mut refused_on).await;
        if subscribe.is_ok() && entries.is_ok() && submit.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "streams were not released after their clients left: {:?} {:?} {:?}",
            subscribe.err(),
            entries.err(),
            submit.err()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (signed, receipt) in &own {
        check_receipt(receipt, signed, &operator);
    }
    let mut submitted = honest.finish(&node).await;
    submitted.extend(own);
    assert_log_is_exactly(&node, before, &submitted).await;
    node.shutdown().await;
}

// ---------------------------------------------------------------------------
// 4. Connections that send nothing, or half a frame

/// HTTP/2 frame types (RFC 9113, section 6).
const PING: u8 = 0x6;
/// The PING flag of an answer.
const ACK: u8 = 0x1;

/// Reads what the server sends on a raw socket until it closes the
/// connection (bounded); returns how long that took from `connected` and
/// the (type, flags) of every whole frame it sent.
async fn until_closed(
    mut socket: tokio::net::TcpStream,
    connected: Instant,
) -> (Duration, Vec<(u8, u8)>) {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(90), socket.read(&mut buffer)).await {
            Err(_) => panic!("the connection was still open after 90 s"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(read)) => bytes.extend_from_slice(&buffer[..read]),
        }
    }
    let elapsed = connected.elapsed();
    let mut frames = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 9 {
        let length = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        frames.push((bytes[at + 3], bytes[at + 4]));
        at += 9 + length;
    }
    (elapsed, frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_nothing_or_half_a_frame_are_cut_and_live_idle_ones_are_not() {
    let node = TestNode::start().await;
    // A live client that opens a stream and then sends nothing for longer
    // than every limit below: its HTTP/2 stack answers the server's pings.
    let mut live = node.new_client().await;
    let (events, mut answers) = open_submit_stream(&mut live)
        .await
        .expect("SubmitStream refused");

    // Connects and sends nothing.
    let silent_since = Instant::now();
    let silent = tokio::net::TcpStream::connect(node.node.local_addr)
        .await
        .unwrap();
    let silent = tokio::spawn(until_closed(silent, silent_since));
    // Connects, sends the HTTP/2 preface and settings, then the first 10
    // bytes of a 100-byte HEADERS frame, and never answers anything.
    let partial_since = Instant::now();
    let mut partial = tokio::net::TcpStream::connect(node.node.local_addr)
        .await
        .unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS, empty
    hello.extend_from_slice(&[0, 0, 100, 0x1, 0x4, 0, 0, 0, 1]); // HEADERS, stream 1
    hello.extend_from_slice(&[0u8; 10]);
    partial.write_all(&hello).await.unwrap();
    let partial = tokio::spawn(until_closed(partial, partial_since));

    let (elapsed, _) = silent.await.unwrap();
    assert!(
        elapsed >= HANDSHAKE_TIMEOUT && elapsed < HANDSHAKE_TIMEOUT + Duration::from_secs(20),
        "a connection that sent nothing was cut after {elapsed:?} (limit {HANDSHAKE_TIMEOUT:?})"
    );
    let (elapsed, frames) = partial.await.unwrap();
    assert!(
        frames
            .iter()
            .any(|&(kind, flags)| kind == PING && flags & ACK == 0),
        "the server sent no keepalive PING before cutting the connection: {frames:?}"
    );
    let limit = KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT;
    assert!(
        elapsed >= KEEPALIVE_INTERVAL && elapsed < limit + Duration::from_secs(20),
        "a connection stuck mid-frame was cut after {elapsed:?} (limit {limit:?})"
    );

    // The live client, idle all along, is still connected: its stream
    // takes an event and answers with a receipt.
    let signed = node.signed_observation("after a long silence");
    events
        .send(signed.clone())
        .await
        .expect("the live stream is gone");
    let answer = tokio::time::timeout(CALL_WAIT, answers.message())
        .await
        .expect("the live stream hung")
        .expect("the live stream failed")
        .expect("the live stream ended");
    check_receipt(streamed_receipt(&answer), &signed, &node.operator_key());
    drop(events);
    assert!(answers.message().await.unwrap().is_none());
    node.shutdown().await;
}
