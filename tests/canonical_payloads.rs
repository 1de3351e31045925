//! Canonical payloads only (docs/spec.md section 1), end to end.
//!
//! Each non-canonical form is made from a fresh, valid observation by the
//! dev monitor and signed with the monitor's registered key, so the only
//! thing wrong with it is its encoding: prost decodes every one of them to
//! a valid event (it skips the unknown field, keeps the last author and the
//! last body, reads fields in any order), which the ledger used to sign
//! into its log. A real node refuses each with INVALID_ARGUMENT and a
//! message naming what is wrong, on Submit and on SubmitStream, and its log
//! (tree size and root) does not move; the canonical originals are then
//! accepted. The auditor refuses a log that holds such an entry, at that
//! entry, with the same reason.

use ceasefire_audit::{audit, AuditError, AuditFailure, AuditOptions, Leaves, LogSource};
use ceasefire_core::checkpoint::{sign_checkpoint, CheckpointBody, NoteSigner};
use ceasefire_core::leaf::{Leaf, MAX_PAYLOAD_BYTES};
use ceasefire_core::merkle::{self, Hash, MemorySource};
use ceasefire_core::signing::sign_event;
use ceasefire_grpc::client::sign_payload;
use ceasefire_grpc::proto::{submit_result::Outcome, Dispute, Event, SignedEvent, SubmitResult};
use ceasefire_testkit::fixture::{streamed_receipt, Client, TestNode};
use ceasefire_testkit::scenario::Scenario;
use ed25519_dalek::SigningKey;
use prost::Message;
use tonic::Code;

// ---- the non-canonical forms ---------------------------------------------------

fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

/// A length-delimited field.
fn len_field(number: u32, content: &[u8]) -> Vec<u8> {
    [
        varint(u64::from(number) << 3 | 2),
        varint(content.len() as u64),
        content.to_vec(),
    ]
    .concat()
}

/// The top-level fields of a canonical payload: (number, encoded field).
fn fields(payload: &[u8]) -> Vec<(u32, Vec<u8>)> {
    fn read(bytes: &[u8], pos: &mut usize) -> u64 {
        let mut value = 0;
        let mut shift = 0;
        loop {
            let byte = bytes[*pos];
            *pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                return value;
            }
        }
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < payload.len() {
        let start = pos;
        let key = read(payload, &mut pos);
        match key & 7 {
            0 => {
                read(payload, &mut pos);
            }
            2 => {
                let len = read(payload, &mut pos) as usize;
                pos += len;
            }
            other => panic!("wire type {other} in an event"),
        }
        out.push(((key >> 3) as u32, payload[start..pos].to_vec()));
    }
    out
}

/// `payload` signed by `key`, bytes as they are.
fn signed(payload: Vec<u8>, key: &SigningKey) -> SignedEvent {
    sign_payload(payload, &[key])
}

/// A non-canonical form of a valid event and the exact refusal message.
struct Form {
    name: &'static str,
    /// The canonical payload it was made from.
    canonical: Vec<u8>,
    payload: Vec<u8>,
    message: String,
}

const NOT_CANONICAL: &str = "payload is not the canonical encoding of its ceasefire.v1.Event: ";

/// The forms the issue names, each from a fresh observation: an unknown
/// field 1000 filling the payload to the 32 KiB limit, a field encoded
/// twice, two bodies of the oneof (prost keeps the last, here the valid
/// observation), fields out of order, and a non-minimal varint.
fn forms(scenario: &Scenario) -> Vec<Form> {
    let fresh = |narrative: &str| {
        scenario
            .observation()
            .narrative(narrative)
            .event()
            .encode_to_vec()
    };
    let mut forms = Vec::new();

    let canonical = fresh("unknown field 1000");
    // Key (2 bytes) and length (3 bytes), then opaque bytes up to the limit.
    let opaque = vec![0x5a; MAX_PAYLOAD_BYTES - canonical.len() - 5];
    assert!(opaque.len() > 32_000);
    let payload = [canonical.clone(), len_field(1000, &opaque)].concat();
    assert_eq!(payload.len(), MAX_PAYLOAD_BYTES);
    forms.push(Form {
        name: "an unknown field 1000 of 32 KB",
        message: format!(
            "{NOT_CANONICAL}unknown field 1000 (at byte {})",
            canonical.len()
        ),
        canonical,
        payload,
    });

    let canonical = fresh("author twice");
    let parts = fields(&canonical);
    assert_eq!((parts[0].0, parts[1].0), (1, 2));
    let at = parts[0].1.len() + parts[1].1.len();
    let payload = [&canonical[..at], &parts[1].1, &canonical[at..]].concat();
    forms.push(Form {
        name: "a field encoded twice",
        message: format!("{NOT_CANONICAL}field 2 (author) appears twice (at byte {at})"),
        canonical,
        payload,
    });

    let canonical = fresh("two bodies");
    let parts = fields(&canonical);
    let (body_number, body) = parts.last().unwrap().clone();
    assert_eq!(body_number, 16);
    let dispute = len_field(
        18,
        &Dispute {
            target_seq: 1,
            target_leaf_hash: vec![0; 32],
            reason: "a body prost drops".into(),
        }
        .encode_to_vec(),
    );
    let at = canonical.len() - body.len() + dispute.len();
    let payload = [&canonical[..canonical.len() - body.len()], &dispute, &body].concat();
    assert_eq!(
        Event::decode(payload.as_slice()).unwrap(),
        Event::decode(canonical.as_slice()).unwrap(),
        "prost reads the observation, the last body"
    );
    forms.push(Form {
        name: "two bodies of the oneof",
        message: format!(
            "{NOT_CANONICAL}two bodies of the oneof body: field 16 (observation) after field 18 (dispute) (at byte {at})"
        ),
        canonical,
        payload,
    });

    let canonical = fresh("out of order");
    let parts = fields(&canonical);
    assert_eq!(parts[3].0, 4);
    let payload = [
        &parts[0].1[..],
        &parts[1].1,
        &parts[2].1,
        &parts[4].1,
        &parts[3].1,
    ]
    .concat();
    let at = canonical.len() - parts[3].1.len();
    forms.push(Form {
        name: "fields out of order",
        message: format!(
            "{NOT_CANONICAL}fields out of order: 4 (nonce) after 16 (observation) (at byte {at})"
        ),
        canonical,
        payload,
    });

    let canonical = fresh("non-minimal varint");
    let agreement = scenario.agreement_id().as_bytes();
    assert!(agreement.len() < 0x80);
    assert_eq!(canonical[..2], [0x0a, agreement.len() as u8]);
    let payload = [
        &[0x0a, agreement.len() as u8 | 0x80, 0x00][..],
        &canonical[2..],
    ]
    .concat();
    forms.push(Form {
        name: "a non-minimal varint",
        message: format!(
            "{NOT_CANONICAL}non-minimal varint: the length of field 1 (agreement_id) (at byte 0)"
        ),
        canonical,
        payload,
    });

    for form in &forms {
        assert_eq!(
            Event::decode(form.payload.as_slice()).unwrap(),
            Event::decode(form.canonical.as_slice()).unwrap(),
            "{}: prost decodes the form to the valid event",
            form.name
        );
    }
    forms
}

/// (tree size, root) of the node's current checkpoint.
async fn head(node: &TestNode) -> (u64, Hash) {
    let checkpoint = node.checkpoint().await;
    (checkpoint.tree_size, checkpoint.root_hash)
}

// ---- the server ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_refuses_each_non_canonical_form_and_the_log_does_not_move() {
    let node = TestNode::start().await;
    let mut client: Client = node.client.clone();
    let monitor = node.monitor().clone();
    let forms = forms(&node.scenario);
    for form in &forms {
        let before = head(&node).await;
        let status = match client.submit(signed(form.payload.clone(), &monitor)).await {
            Ok(receipt) => panic!("{}: accepted as entry {}", form.name, receipt.get_ref().seq),
            Err(status) => status,
        };
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{}: {status:?}",
            form.name
        );
        assert_eq!(status.message(), form.message, "{}", form.name);
        assert_eq!(head(&node).await, before, "{}: the log moved", form.name);
    }
    // The canonical originals (same events, same nonces) are accepted: only
    // the encoding was wrong, and the refusals consumed nothing.
    let size = head(&node).await.0;
    for (offset, form) in forms.iter().enumerate() {
        let receipt = client
            .submit(signed(form.canonical.clone(), &monitor))
            .await
            .unwrap_or_else(|status| panic!("{}: canonical form refused: {status:?}", form.name))
            .into_inner();
        assert_eq!(receipt.seq, size + offset as u64);
        assert_eq!(Leaf::decode(&receipt.leaf).unwrap().payload, form.canonical);
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_stream_refuses_each_non_canonical_form_and_goes_on() {
    let node = TestNode::start().await;
    let mut client: Client = node.client.clone();
    let monitor = node.monitor().clone();
    let forms = forms(&node.scenario);
    let first = signed(
        node.scenario
            .observation()
            .narrative("before the forms")
            .event()
            .encode_to_vec(),
        &monitor,
    );
    let last = signed(
        node.scenario
            .observation()
            .narrative("after the forms")
            .event()
            .encode_to_vec(),
        &monitor,
    );
    let mut events = vec![first.clone()];
    events.extend(
        forms
            .iter()
            .map(|form| signed(form.payload.clone(), &monitor)),
    );
    events.push(last.clone());

    let (size, _) = head(&node).await;
    let answers: Vec<SubmitResult> = {
        let mut stream = client
            .submit_stream(futures::stream::iter(events.clone()))
            .await
            .expect("SubmitStream refused")
            .into_inner();
        let mut answers = Vec::new();
        while let Some(answer) = stream.message().await.expect("the stream failed") {
            answers.push(answer);
        }
        answers
    };
    assert_eq!(answers.len(), events.len(), "not every event was answered");
    for (index, answer) in answers.iter().enumerate() {
        assert_eq!(answer.index, index as u64);
    }
    assert_eq!(streamed_receipt(&answers[0]).seq, size);
    for (answer, form) in answers[1..=forms.len()].iter().zip(&forms) {
        match &answer.outcome {
            Some(Outcome::Refusal(refusal)) => {
                assert_eq!(
                    Code::from_i32(refusal.code),
                    Code::InvalidArgument,
                    "{}",
                    form.name
                );
                assert_eq!(refusal.message, form.message, "{}", form.name);
            }
            other => panic!("{}: expected a refusal, got {other:?}", form.name),
        }
    }
    assert_eq!(streamed_receipt(&answers[forms.len() + 1]).seq, size + 1);

    // Exactly the two canonical events were written.
    let log = node.read_log().await;
    assert_eq!(log.len() as u64, size + 2);
    let payloads: Vec<Vec<u8>> = log[size as usize..]
        .iter()
        .map(|entry| Leaf::decode(&entry.leaf).unwrap().payload)
        .collect();
    assert_eq!(payloads, [first.payload, last.payload]);
    node.shutdown().await;
}

// ---- the auditor ----------------------------------------------------------------

/// A log held in memory: its leaves and a checkpoint note over them.
struct MemoryLog {
    note: String,
    leaves: Vec<Vec<u8>>,
}

impl LogSource for MemoryLog {
    fn describe(&self) -> String {
        "a log in memory".into()
    }
    fn checkpoint_note(&mut self) -> anyhow::Result<String> {
        Ok(self.note.clone())
    }
    fn served_projection(&mut self) -> anyhow::Result<Option<(u64, Hash)>> {
        Ok(None)
    }
    fn leaves(&mut self, size: u64) -> anyhow::Result<Leaves<'_>> {
        Ok(Box::new(
            self.leaves.iter().take(size as usize).cloned().map(Ok),
        ))
    }
    fn consistency_proof(&mut self, _: u64, _: u64) -> anyhow::Result<Option<Vec<Hash>>> {
        Ok(None)
    }
    fn inclusion_proof(&mut self, _: u64, _: u64) -> anyhow::Result<Option<Vec<Hash>>> {
        Ok(None)
    }
}

/// `leaves` and one more leaf, chained after them, holding `payload` signed
/// by `key`, with a checkpoint signed by the operator: a log a server that
/// did not check canonicality could have written.
fn log_with(
    origin: &str,
    leaves: &[Vec<u8>],
    payload: &[u8],
    key: &SigningKey,
    operator: &SigningKey,
) -> MemoryLog {
    let previous = Leaf::decode(leaves.last().unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let leaf = Leaf {
        seq: previous.seq + 1,
        prev_leaf_hash: merkle::hash_leaf(leaves.last().unwrap()),
        received_at_micros: now.max(previous.received_at_micros),
        payload: payload.to_vec(),
        signatures: vec![sign_event(payload, key)],
    }
    .encode();
    let mut leaves = leaves.to_vec();
    leaves.push(leaf);
    let tree = MemorySource::from_leaf_hashes(leaves.iter().map(|leaf| merkle::hash_leaf(leaf)));
    let body = CheckpointBody {
        origin: origin.into(),
        tree_size: leaves.len() as u64,
        root_hash: merkle::root(&tree, leaves.len() as u64).unwrap(),
    };
    let note = sign_checkpoint(&body, &NoteSigner::new(origin, operator.clone()).unwrap()).unwrap();
    MemoryLog { note, leaves }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_refuses_a_log_holding_a_non_canonical_payload() {
    let node = TestNode::start().await;
    let honest: Vec<Vec<u8>> = node
        .read_log()
        .await
        .into_iter()
        .map(|entry| entry.leaf)
        .collect();
    let monitor = node.monitor().clone();
    let operator = node.scenario.operator().clone();
    let scenario = node.scenario.clone();
    node.shutdown().await;
    let seq = honest.len() as u64;

    for form in forms(&scenario) {
        // The canonical original makes a log that verifies...
        let mut log = log_with(
            scenario.origin(),
            &honest,
            &form.canonical,
            &monitor,
            &operator,
        );
        let report = audit(&mut log, AuditOptions::default())
            .unwrap_or_else(|error| panic!("{}: the honest log fails: {error}", form.name));
        assert_eq!(report.entries, seq + 1);
        // ...and the same event in a non-canonical form does not, at its
        // entry, for the reason the server gives.
        let mut log = log_with(
            scenario.origin(),
            &honest,
            &form.payload,
            &monitor,
            &operator,
        );
        match audit(&mut log, AuditOptions::default()) {
            Err(AuditError::Failed(AuditFailure::Entry { seq: at, reason })) => {
                assert_eq!(at, seq, "{}", form.name);
                assert_eq!(reason, form.message, "{}", form.name);
            }
            other => panic!(
                "{}: expected a failure at entry {seq}, got {other:?}",
                form.name
            ),
        }
    }
}
