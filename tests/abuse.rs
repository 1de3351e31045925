//! Abuse: one client floods the node with forged signatures, holds
//! thousands of idle streams, sends oversized messages, or opens connections
//! and sends nothing (or half a frame). A real node (TestNode: sled store,
//! sequencer, tonic server on 127.0.0.1:0) and real keys; honest clients,
//! each on its own connection, submit throughout.
//!
//! What is asserted is correctness, never speed: every honest submission
//! gets a receipt that checks out (leaf, leaf hash, signed checkpoint,
//! inclusion proof), every abusive call gets its precise code and message,
//! each limit answers as documented (the per-connection stream limit as the
//! server advertises it in its HTTP/2 SETTINGS), and the log holds exactly
//! the honest entries. Under a flood of forged signatures on one connection
//! an honest client on another keeps getting receipts (liveness; how long
//! it waits, which the per-connection verification budget keeps short, is
//! not asserted: that would race disk syncs against verification speed).
//! Latency and memory figures are printed by `ceasefire-ledger bench
//! --abuse`. Time is asserted only as a lower bound (a silent connection is
//! not cut before its limit); upper bounds are generous hang guards.
//!
//! Counts are bounded for a debug build on two cores (signature
//! verification is slow there): a flood that lasts as long as twenty honest
//! receipts take, about three thousand stream openings, two silent
//! connections. Every wait is bounded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ceasefire_core::leaf::Leaf;
use ceasefire_grpc::client::{self, sign};
use ceasefire_grpc::proto::{
    compliance_client::ComplianceClient, event::Body, submit_result::Outcome, GetCheckpointRequest,
    GetEntriesRequest, GetHistoryRequest, GetInclusionProofRequest, Receipt, SignedEvent,
    StatusFilter, SubmitResult, SubscribeRequest,
};
use ceasefire_node::server::{
    HANDSHAKE_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT,
    MAX_CONCURRENT_STREAMS_PER_CONNECTION, MAX_ENTRY_STREAMS, MAX_GRPC_MESSAGE_BYTES,
    MAX_SUBMIT_STREAMS, MAX_SUBSCRIPTIONS, VERIFY_BUDGET_PER_CONNECTION,
};
use ceasefire_testkit::fixture::{streamed_receipt, Client, TestNode};
use ceasefire_testkit::scenario::{DEV_COMMITMENT, DEV_ZONE};
use ed25519_dalek::SigningKey;
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
            let scenario = node.scenario.clone();
            let (stop, receipts) = (stop.clone(), receipts.clone());
            tasks.push(tokio::spawn(async move {
                let mut submitted = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let narrative = format!("honest {client_index} report {}", submitted.len());
                    let signed = scenario.observation().narrative(&narrative).signed();
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
        for (signed, receipt) in &all {
            node.check_receipt(receipt, signed);
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
    let mut signed = node
        .scenario
        .observation()
        .narrative(narrative)
        .signed_by(&keys);
    signed
        .signatures
        .sort_by(|a, b| a.public_key.cmp(&b.public_key));
    signed.signatures.last_mut().unwrap().signature[5] ^= 0x01;
    signed
}

/// A valid observation by the dev monitor with a narrative of `bytes`
/// bytes: valid in every way but its size.
fn sized(node: &TestNode, bytes: usize) -> SignedEvent {
    node.signed_observation(&"x".repeat(bytes))
}

fn refusal(answer: &SubmitResult) -> (Code, &str) {
    match &answer.outcome {
        Some(Outcome::Refusal(refusal)) => (Code::from_i32(refusal.code), &refusal.message),
        other => panic!("event {}: expected a refusal, got {other:?}", answer.index),
    }
}

const FORGED_MESSAGE: &str = "does not verify over this payload";

// ---------------------------------------------------------------------------
// 1. A flood of forged signatures from one client

/// Waits (bounded) until the flood has `count` answers in all. A flood task
/// that ended before it was stopped fails the test (with its panic, if any).
async fn wait_for_flood(
    answered: &AtomicUsize,
    count: usize,
    flood: &mut Vec<tokio::task::JoinHandle<usize>>,
) {
    let deadline = Instant::now() + CALL_WAIT;
    while answered.load(Ordering::Relaxed) < count {
        if let Some(position) = flood.iter().position(|task| task.is_finished()) {
            let ended = flood.swap_remove(position).await;
            panic!("a flood task ended before it was stopped: {ended:?}");
        }
        assert!(
            Instant::now() < deadline,
            "the flood had {} answers after {CALL_WAIT:?}, expected {count}",
            answered.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One connection floods the node with forged signatures (unary calls and
/// SubmitStreams, every forged event costing eight verifications) without
/// pause; an honest client on a connection of its own must keep getting
/// receipts meanwhile, and every forged event must be refused precisely.
///
/// What is asserted is liveness, not order: the prober gets [`PROBES`]
/// receipts, each within [`CALL_WAIT`], while the flood is demonstrably
/// running (answered before the first probe, and still being answered
/// after the last). The per-connection verification budget is what keeps
/// those waits short, but a bound on them (in time or in forged answers
/// per honest receipt) would compare the disk's sync time with the CPU's
/// verification speed and fail either way on a loaded two-core machine;
/// without the budget the probes would still be answered, only later, so
/// this test does not detect its removal. `ceasefire-ledger bench --abuse`
/// measures the waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_signatures_is_refused_and_honest_clients_keep_getting_receipts() {
    /// Unary Submits the abusive connection keeps in flight, each sending
    /// forged events one after another until stopped.
    const FLOOD_CALLS: usize = 16;
    /// SubmitStreams on the same connection, each sending forged events
    /// until stopped, [`STREAM_IN_FLIGHT`] unanswered at any time.
    const FLOOD_STREAMS: usize = 2;
    /// Enough for the connection to always have several times its budget
    /// waiting, few enough that each forged event is answered well within
    /// [`CALL_WAIT`]: the connection's events share its budget first come,
    /// first served, and a debug build verifies about ten forged events a
    /// second on two cores (a SubmitStream's whole 256-event window per
    /// stream would be minutes of work).
    const STREAM_IN_FLIGHT: usize = 16;
    /// Signatures on each forged event, all verified (the bad one sorts
    /// last): the node spends 8 verifications on each.
    const SIGNATURES: usize = 8;
    /// Distinct forged events, sent round-robin (each is refused the same
    /// way every time: it is never written, so never a resubmission).
    const FORGED_EVENTS: usize = 32;
    /// Receipts the honest prober must get while the flood runs.
    const PROBES: usize = 20;
    // The flood always has more signatures waiting than its connection's
    // budget lets it verify at once.
    const {
        assert!(
            (FLOOD_CALLS + FLOOD_STREAMS * STREAM_IN_FLIGHT) * SIGNATURES
                > 4 * VERIFY_BUDGET_PER_CONNECTION
        )
    };

    let node = TestNode::start().await;
    let before = node.checkpoint().await.tree_size;
    let honest = Honest::start(&node).await;

    let forged_events: Arc<Vec<SignedEvent>> = Arc::new(
        (0..FORGED_EVENTS)
            .map(|i| forged(&format!("forged {i}"), &node, SIGNATURES))
            .collect(),
    );
    let abuser: Client = node.new_client().await;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    for call in 0..FLOOD_CALLS {
        let (mut abuser, events) = (abuser.clone(), forged_events.clone());
        let (stop, answered) = (stop.clone(), answered.clone());
        flood.push(tokio::spawn(async move {
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                let event = events[(call + sent) % events.len()].clone();
                let status = tokio::time::timeout(CALL_WAIT, abuser.submit(event))
                    .await
                    .unwrap_or_else(|_| panic!("a forged Submit got no answer in {CALL_WAIT:?}"))
                    .expect_err("a forged event was accepted");
                // Every forged event: UNAUTHENTICATED, naming the signature.
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                assert!(status.message().contains(FORGED_MESSAGE), "{status:?}");
                answered.fetch_add(1, Ordering::Relaxed);
                sent += 1;
            }
            sent
        }));
    }
    for _ in 0..FLOOD_STREAMS {
        let (mut abuser, events) = (abuser.clone(), forged_events.clone());
        let (stop, answered) = (stop.clone(), answered.clone());
        flood.push(tokio::spawn(async move {
            // One more event after each answer; the sender dropped (which
            // ends the stream) once stopped.
            let (outgoing, events_out) = mpsc::channel(STREAM_IN_FLIGHT);
            for k in 0..STREAM_IN_FLIGHT {
                outgoing
                    .send(events[k % events.len()].clone())
                    .await
                    .expect("the stream's channel is closed");
            }
            let mut outgoing = Some(outgoing);
            let mut answers = tokio::time::timeout(
                CALL_WAIT,
                abuser.submit_stream(tokio_stream::wrappers::ReceiverStream::new(events_out)),
            )
            .await
            .expect("SubmitStream got no answer")
            .expect("SubmitStream refused")
            .into_inner();
            let mut count = 0;
            loop {
                match tokio::time::timeout(CALL_WAIT, answers.message()).await {
                    Err(_) => panic!("the forged stream hung after {count} answers"),
                    Ok(Err(status)) => {
                        panic!("the forged stream failed after {count} answers: {status:?}")
                    }
                    Ok(Ok(None)) => {
                        assert!(
                            outgoing.is_none(),
                            "the forged stream ended before it was stopped"
                        );
                        return count;
                    }
                    Ok(Ok(Some(answer))) => {
                        assert_eq!(answer.index, count as u64, "answers out of order");
                        let (code, message) = refusal(&answer);
                        assert_eq!(code, Code::Unauthenticated, "{message}");
                        assert!(message.contains(FORGED_MESSAGE), "{message}");
                        answered.fetch_add(1, Ordering::Relaxed);
                        count += 1;
                        if stop.load(Ordering::Relaxed) {
                            outgoing = None;
                        } else if let Some(outgoing) = &outgoing {
                            let next = events[(count + STREAM_IN_FLIGHT) % events.len()].clone();
                            outgoing
                                .send(next)
                                .await
                                .expect("the forged stream stopped taking events");
                        }
                    }
                }
            }
        }));
    }

    // The flood is being answered before the first probe...
    wait_for_flood(&answered, 1, &mut flood).await;
    let at_first_probe = answered.load(Ordering::Relaxed);
    let mut prober = node.new_client().await;
    let mut probes = Vec::new();
    for probe in 0..PROBES {
        let signed = node.signed_observation(&format!("probe {probe}"));
        let receipt = submit_ok(&mut prober, &signed, "an honest probe during the flood").await;
        node.check_receipt(&receipt, &signed);
        probes.push((signed, receipt));
    }
    // ... and still after the last one: every probe was answered during it.
    let at_last_probe = answered.load(Ordering::Relaxed);
    wait_for_flood(&answered, at_last_probe + 1, &mut flood).await;

    stop.store(true, Ordering::Relaxed);
    let mut forged_answers = 0;
    for task in flood {
        forged_answers += tokio::time::timeout(2 * CALL_WAIT, task)
            .await
            .expect("a flood task did not stop")
            .expect("a flood task panicked");
    }
    eprintln!(
        "flood: {PROBES} honest receipts while {} forged events were answered \
         ({forged_answers} in all)",
        at_last_probe - at_first_probe
    );

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
    // One event, only its narrative changed: every other byte stays put.
    let mut event = node.scenario.observation().event();
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
        node.check_receipt(receipt, signed);
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

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The SETTINGS frame type and its MAX_CONCURRENT_STREAMS parameter (RFC
/// 9113, sections 6.5 and 6.5.2).
const SETTINGS: u8 = 0x4;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// The (identifier, value) pairs of the SETTINGS frame a server opens every
/// connection with (RFC 9113, section 3.4), read off a raw socket after
/// sending the client preface and empty settings.
async fn advertised_settings(node: &TestNode) -> Vec<(u16, u32)> {
    let mut socket = tokio::net::TcpStream::connect(node.node.local_addr)
        .await
        .expect("cannot connect");
    let mut hello = PREFACE.to_vec();
    hello.extend_from_slice(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);
    socket
        .write_all(&hello)
        .await
        .expect("cannot send the preface");
    let mut header = [0u8; 9];
    tokio::time::timeout(CALL_WAIT, socket.read_exact(&mut header))
        .await
        .expect("the server sent no frame")
        .expect("the connection closed before the server's SETTINGS");
    assert_eq!(
        (header[3], header[4] & ACK),
        (SETTINGS, 0),
        "the server's first frame is not its SETTINGS: {header:?}"
    );
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    assert_eq!(length % 6, 0, "a SETTINGS payload of {length} bytes");
    let mut payload = vec![0u8; length];
    tokio::time::timeout(CALL_WAIT, socket.read_exact(&mut payload))
        .await
        .expect("the server's SETTINGS frame was cut short")
        .expect("the connection closed inside the server's SETTINGS");
    payload
        .chunks_exact(6)
        .map(|setting| {
            (
                u16::from_be_bytes([setting[0], setting[1]]),
                u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]),
            )
        })
        .collect()
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

    // The server announces its per-connection stream limit to every client
    // (which is what makes an HTTP/2 client hold calls past it back).
    let settings = advertised_settings(&node).await;
    assert!(
        settings.contains(&(
            SETTINGS_MAX_CONCURRENT_STREAMS,
            MAX_CONCURRENT_STREAMS_PER_CONNECTION
        )),
        "the server does not advertise SETTINGS_MAX_CONCURRENT_STREAMS = \
         {MAX_CONCURRENT_STREAMS_PER_CONNECTION}: {settings:?}"
    );

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
    let waiting =
        tokio::spawn(async move { queued.get_checkpoint(GetCheckpointRequest::default()).await });
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
            zone_id: DEV_ZONE.into(),
            commitment_id: DEV_COMMITMENT.into(),
            ..Default::default()
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
        node.check_receipt(receipt, signed);
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

/// How long a connection the server should cut may stay open before the
/// test calls it a hang (no assertion about when the cut comes, beyond
/// "not before its limit": a loaded machine may be late).
const CUT_WAIT: Duration = Duration::from_secs(90);

/// Reads what the server sends on a raw socket until it closes the
/// connection (at most [`CUT_WAIT`] after `connected`); returns how long that
/// took from `connected` and the (type, flags) of every whole frame it sent.
async fn until_closed(
    mut socket: tokio::net::TcpStream,
    connected: Instant,
) -> (Duration, Vec<(u8, u8)>) {
    let deadline = tokio::time::Instant::from_std(connected + CUT_WAIT);
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
            Err(_) => panic!("the connection was still open after {CUT_WAIT:?}"),
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
    let mut hello = PREFACE.to_vec();
    hello.extend_from_slice(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]); // empty
    hello.extend_from_slice(&[0, 0, 100, 0x1, 0x4, 0, 0, 0, 1]); // HEADERS, stream 1
    hello.extend_from_slice(&[0u8; 10]);
    partial.write_all(&hello).await.unwrap();
    let partial = tokio::spawn(until_closed(partial, partial_since));

    // Each is cut (until_closed fails the test if not within CUT_WAIT), and
    // not before its limit.
    assert!(CUT_WAIT > 2 * HANDSHAKE_TIMEOUT.max(KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT));
    let (elapsed, _) = silent.await.unwrap();
    assert!(
        elapsed >= HANDSHAKE_TIMEOUT,
        "a connection that sent nothing was cut after {elapsed:?}, before its limit \
         ({HANDSHAKE_TIMEOUT:?})"
    );
    let (elapsed, frames) = partial.await.unwrap();
    assert!(
        frames
            .iter()
            .any(|&(kind, flags)| kind == PING && flags & ACK == 0),
        "the server sent no keepalive PING before cutting the connection: {frames:?}"
    );
    assert!(
        elapsed >= KEEPALIVE_INTERVAL,
        "a connection stuck mid-frame was cut after {elapsed:?}, before the first \
         keepalive ping was due ({KEEPALIVE_INTERVAL:?})"
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
    node.check_receipt(streamed_receipt(&answer), &signed);
    drop(events);
    assert!(answers.message().await.unwrap().is_none());
    node.shutdown().await;
}
