//! Reason codes end to end (docs/spec.md section 6, "Refusals" and "Error
//! details"): what a client of a real node over gRPC reads from a refusal.
//! Every status a handler returns carries, in `grpc-status-details-bin`, a
//! `google.rpc.Status` with the same code and message and exactly one
//! `google.rpc.ErrorInfo { reason, domain: "ceasefire.v1", metadata }`;
//! SubmitStream's `Refusal` carries what Submit's status would.
//!
//! Which rule answers which event is tested in the core
//! (`crates/core/tests/rules_table.rs`); here, that the answer reaches the
//! wire intact.

use std::collections::HashMap;
use std::time::Duration;

use ceasefire_core::rejection::{metadata_keys, reason_name, ReasonCode, RejectionKind};
use ceasefire_grpc::client::sign;
use ceasefire_grpc::errors;
use ceasefire_grpc::proto::{
    submit_result::Outcome, GetCommitmentStatusRequest, GetConsistencyProofRequest,
    GetHistoryRequest, GetInclusionProofRequest, GetPairStatusRequest, GetZoneStatusRequest,
    ListStatusesRequest, Refusal, SignedEvent, StatusFilter, SubscribeRequest,
};
use ceasefire_node::node::{self, NodeConfig};
use ceasefire_testkit::fixture::{get_entries, node_config, TestNode};
use ceasefire_testkit::scenario::{
    random_key, Scenario, BOOTSTRAP_ENTRIES, DEV_COMMITMENT, DEV_MONITOR, DEV_SIGNATORY, DEV_ZONE,
};
use prost::Message;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Checks that `status` is the refusal `reason` describes (its code, one
/// ErrorInfo in our domain, the google.rpc.Status agreeing with the
/// status, exactly the spec's metadata keys) and returns its metadata.
fn refused(status: &Status, reason: ReasonCode) -> HashMap<String, String> {
    let name = reason_name(reason);
    assert_eq!(
        status.code() as i32,
        RejectionKind::of(reason).code(),
        "{name}: {status:?}"
    );
    let rpc = tonic_types::Status::decode(status.details())
        .unwrap_or_else(|error| panic!("{name}: details are no google.rpc.Status: {error}"));
    assert_eq!(rpc.code, status.code() as i32, "{name}: {rpc:?}");
    assert_eq!(rpc.message, status.message(), "{name}: {rpc:?}");
    assert_eq!(rpc.details.len(), 1, "{name}: {rpc:?}");
    assert_eq!(
        rpc.details[0].type_url, "type.googleapis.com/google.rpc.ErrorInfo",
        "{name}"
    );
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("{name}: no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, name, "{status:?}");
    assert_eq!(info.domain, "ceasefire.v1");
    assert_eq!(errors::reason(status), reason);
    let keys = metadata_keys(reason);
    for key in keys.always {
        assert!(
            info.metadata.contains_key(*key),
            "{name} lacks {key}: {info:?}"
        );
    }
    for key in info.metadata.keys() {
        assert!(
            keys.always.contains(&key.as_str()) || keys.conditional.contains(&key.as_str()),
            "{name} carries {key}, which the spec does not give it: {info:?}"
        );
    }
    info.metadata.clone()
}

fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// `payload` (altered on purpose) signed again by `key`.
fn resigned(payload: Vec<u8>, key: &ed25519_dalek::SigningKey) -> SignedEvent {
    ceasefire_grpc::client::sign_payload(payload, &[key])
}

/// Events Submit refuses, each with its reason and metadata: a replayed
/// nonce (of `accepted`, entry `seq`), a non-canonical payload, a forged
/// signature, an observation by a signatory, an oversized payload.
fn refused_events(
    node: &TestNode,
    accepted: &SignedEvent,
    seq: u64,
) -> Vec<(SignedEvent, ReasonCode, HashMap<String, String>)> {
    let mut replayed = ceasefire_core::rules::decode_event(&accepted.payload).unwrap();
    replayed.created_at.as_mut().unwrap().seconds -= 1;
    let mut non_canonical = node.signed_observation("non-canonical").payload;
    non_canonical.extend_from_slice(&[0x0a, 0x00]);
    let mut forged = node.signed_observation("forged");
    forged.signatures[0].signature[0] ^= 1;
    let monitor_key = ceasefire_core::key_text(node.monitor().verifying_key().as_bytes());
    let by_signatory = node
        .scenario
        .observation()
        .by(DEV_SIGNATORY)
        .narrative("not a monitor")
        .signed_by(&[node.signatory()]);
    let oversized = SignedEvent {
        payload: vec![0; ceasefire_core::leaf::MAX_PAYLOAD_BYTES + 1],
        ..node.signed_observation("oversized")
    };
    vec![
        (
            sign(&replayed, &[node.monitor()]),
            ReasonCode::NonceReused,
            metadata(&[("author", DEV_MONITOR), ("seq", &seq.to_string())]),
        ),
        (
            resigned(non_canonical, node.monitor()),
            ReasonCode::NonCanonicalPayload,
            metadata(&[]),
        ),
        (
            forged,
            ReasonCode::SignatureInvalid,
            metadata(&[("public_key", &monitor_key)]),
        ),
        (
            by_signatory,
            ReasonCode::WrongRole,
            metadata(&[("party_id", DEV_SIGNATORY), ("role", "ROLE_SIGNATORY")]),
        ),
        (
            oversized,
            ReasonCode::PayloadTooLarge,
            metadata(&[
                (
                    "size",
                    &(ceasefire_core::leaf::MAX_PAYLOAD_BYTES + 1).to_string(),
                ),
                (
                    "limit",
                    &ceasefire_core::leaf::MAX_PAYLOAD_BYTES.to_string(),
                ),
            ]),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_refusal_carries_its_reason_and_metadata() {
    let node = TestNode::start().await;
    let mut client = node.client.clone();
    let accepted = node.signed_observation("the original");
    let seq = client
        .submit(accepted.clone())
        .await
        .unwrap()
        .into_inner()
        .seq;
    assert_eq!(seq, BOOTSTRAP_ENTRIES);
    for (event, reason, expected) in refused_events(&node, &accepted, seq) {
        let status = client
            .submit(event)
            .await
            .expect_err(&format!("{} was accepted", reason_name(reason)));
        assert_eq!(refused(&status, reason), expected, "{status:?}");
        // What the CLI prints: the code, the reason, the message, one line.
        let line = errors::describe(&status);
        assert!(
            line.starts_with(&format!("{:?} {}: ", status.code(), reason_name(reason))),
            "{line}"
        );
        assert!(!line.contains('\n'), "{line}");
    }
    // No refusal changed the log.
    assert_eq!(
        node.checkpoint().await.tree_size,
        BOOTSTRAP_ENTRIES + 1,
        "a refusal changed the log"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_stream_refusal_is_what_submit_answers() {
    let node = TestNode::start().await;
    let mut client = node.client.clone();
    let accepted = node.signed_observation("the original");
    let seq = client
        .submit(accepted.clone())
        .await
        .unwrap()
        .into_inner()
        .seq;
    let cases = refused_events(&node, &accepted, seq);
    let mut events = vec![node.signed_observation("streamed and accepted")];
    events.extend(cases.iter().map(|(event, ..)| event.clone()));
    let mut stream = client
        .submit_stream(futures::stream::iter(events))
        .await
        .unwrap()
        .into_inner();
    let mut answers = Vec::new();
    while let Some(answer) = stream.message().await.unwrap() {
        answers.push(answer);
    }
    assert_eq!(answers.len(), cases.len() + 1);
    assert!(matches!(answers[0].outcome, Some(Outcome::Receipt(_))));
    for ((event, reason, expected), answer) in cases.into_iter().zip(&answers[1..]) {
        let Some(Outcome::Refusal(refusal)) = &answer.outcome else {
            panic!("{}: not refused: {answer:?}", reason_name(reason));
        };
        assert_eq!(refusal.reason, reason as i32, "{refusal:?}");
        assert_eq!(
            refusal.code,
            RejectionKind::of(reason).code(),
            "{refusal:?}"
        );
        assert_eq!(refusal.metadata, expected, "{refusal:?}");
        // Field for field what Submit answers for the same event.
        let status = client.submit(event).await.unwrap_err();
        refused(&status, reason);
        assert_eq!(*refusal, errors::refusal(&status));
        assert_eq!(
            *refusal,
            Refusal {
                code: status.code() as i32,
                message: status.message().to_string(),
                reason: reason as i32,
                metadata: expected,
            }
        );
        assert_eq!(errors::describe_refusal(refusal), errors::describe(&status));
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_api_edge_cases_name_their_reason() {
    let node = TestNode::start().await;
    let mut client = node.client.clone();
    let size = node.checkpoint().await.tree_size;
    let tree_size = metadata(&[("tree_size", &size.to_string())]);

    let beyond = get_entries(&mut client, size, size + 5).await.unwrap_err();
    assert_eq!(refused(&beyond, ReasonCode::BeyondTree), tree_size);
    let empty = get_entries(&mut client, 2, 2).await.unwrap_err();
    assert!(refused(&empty, ReasonCode::RangeInvalid).is_empty());
    let zero_end = get_entries(&mut client, 0, 0).await.unwrap_err();
    refused(&zero_end, ReasonCode::RangeInvalid);

    let inverted = client
        .get_consistency_proof(GetConsistencyProofRequest {
            old_size: 3,
            new_size: 2,
        })
        .await
        .unwrap_err();
    assert!(refused(&inverted, ReasonCode::RangeInvalid).is_empty());
    let future = client
        .get_consistency_proof(GetConsistencyProofRequest {
            old_size: 1,
            new_size: size + 1,
        })
        .await
        .unwrap_err();
    assert_eq!(refused(&future, ReasonCode::BeyondTree), tree_size);

    for (seq, tree) in [(0, size + 1), (size, 0), (3, 3)] {
        let status = client
            .get_inclusion_proof(GetInclusionProofRequest {
                seq,
                tree_size: tree,
            })
            .await
            .unwrap_err();
        assert_eq!(
            refused(&status, ReasonCode::BeyondTree),
            tree_size,
            "seq {seq} tree_size {tree}"
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_errors_name_their_reason() {
    let node = TestNode::start().await;
    let mut compliance = node.compliance().await;
    let not_found = [
        compliance
            .get_pair_status(GetPairStatusRequest {
                zone_id: "nowhere".into(),
                commitment_id: DEV_COMMITMENT.into(),
            })
            .await
            .map(drop),
        compliance
            .get_zone_status(GetZoneStatusRequest {
                zone_id: "nowhere".into(),
            })
            .await
            .map(drop),
        compliance
            .get_commitment_status(GetCommitmentStatusRequest {
                commitment_id: "nothing".into(),
            })
            .await
            .map(drop),
        compliance
            .get_history(GetHistoryRequest {
                zone_id: DEV_ZONE.into(),
                commitment_id: "nothing".into(),
                ..Default::default()
            })
            .await
            .map(drop),
    ];
    for answer in not_found {
        let status = answer.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert!(refused(&status, ReasonCode::PairNotFound).is_empty());
    }

    let bad_filter = StatusFilter {
        statuses: vec![1, 99],
        ..Default::default()
    };
    let status = compliance
        .list_statuses(ListStatusesRequest {
            filter: Some(bad_filter.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused(&status, ReasonCode::FieldMalformed),
        metadata(&[("field", "filter.statuses[1]")])
    );
    let status = compliance
        .subscribe(SubscribeRequest {
            filter: Some(bad_filter),
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(&status, ReasonCode::FieldMalformed);

    let status = compliance
        .subscribe(SubscribeRequest {
            from_seq: 1_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused(&status, ReasonCode::BeyondTree),
        metadata(&[("tree_size", &BOOTSTRAP_ENTRIES.to_string())])
    );
    drop(compliance);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ended_by_shutdown_says_where_to_resume() {
    let node = TestNode::start().await;
    let mut client = node.client.clone();
    client
        .submit(node.signed_observation("a change"))
        .await
        .unwrap();
    let mut compliance = node.compliance().await;
    let mut stream = compliance
        .subscribe(SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    // Read every change there is (the bootstrap's and the observation's).
    while let Ok(Ok(Some(change))) =
        tokio::time::timeout(Duration::from_millis(500), stream.message()).await
    {
        last = Some((change.seq, change.index));
    }
    let (seq, index) = last.expect("no change was streamed");
    drop(client);
    let shutdown = tokio::spawn(node.shutdown());
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the subscription did not end with the shutdown")
        .expect_err("the subscription ended as if complete");
    assert_eq!(
        refused(&ended, ReasonCode::ServerUnavailable),
        metadata(&[
            ("resume_seq", &seq.to_string()),
            ("resume_index", &(index + 1).to_string()),
        ])
    );
    drop((stream, compliance));
    shutdown.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_over_the_limit_names_the_limit() {
    use ceasefire_node::server::{MAX_CONCURRENT_STREAMS_PER_CONNECTION, MAX_SUBSCRIPTIONS};
    let node = TestNode::start().await;
    // Subscriptions stay open: fill the limit over a few connections.
    let per_connection = MAX_CONCURRENT_STREAMS_PER_CONNECTION as usize / 2;
    let mut open = Vec::new();
    let mut clients = Vec::new();
    while open.len() < MAX_SUBSCRIPTIONS {
        let mut compliance = node.compliance().await;
        for _ in 0..per_connection.min(MAX_SUBSCRIPTIONS - open.len()) {
            open.push(
                compliance
                    .subscribe(SubscribeRequest::default())
                    .await
                    .expect("Subscribe refused under the limit")
                    .into_inner(),
            );
        }
        clients.push(compliance);
    }
    let mut compliance = node.compliance().await;
    let status = compliance
        .subscribe(SubscribeRequest::default())
        .await
        .expect_err("a subscription over the limit was opened");
    assert_eq!(
        refused(&status, ReasonCode::StreamLimitReached),
        metadata(&[
            ("stream", "Subscribe"),
            ("limit", &MAX_SUBSCRIPTIONS.to_string()),
        ])
    );
    drop((open, clients, compliance));
    node.shutdown().await;
}

/// Why `config` does not start: a node's bootstrap goes through the
/// sequencer's own refusals, and `start` names the one that refused it.
async fn refused_start(config: NodeConfig) -> String {
    match node::start(config).await {
        Ok(_) => panic!("the node started"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_without_a_genesis_is_refused_as_not_started() {
    // LEDGER_NOT_STARTED: before the genesis, the sequencer takes nothing else.
    let scenario = Scenario::dev_with_random_keys();
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        bootstrap: scenario.bootstrap()[1..].to_vec(),
        ..node_config(dir.path(), &scenario)
    };
    assert_eq!(
        refused_start(config).await,
        "bootstrap entry 0 was refused: this ledger has no genesis yet: entry 0 must be a genesis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genesis_naming_another_operator_key_is_refused() {
    // OPERATOR_KEY_MISMATCH: the genesis names the scenario's operator key,
    // the node signs with another.
    let scenario = Scenario::dev_with_random_keys();
    let dir = tempfile::tempdir().unwrap();
    let other = random_key();
    let config = NodeConfig {
        operator_key: other.clone(),
        ..node_config(dir.path(), &scenario)
    };
    assert_eq!(
        refused_start(config).await,
        format!(
            "bootstrap entry 0 was refused: the operator key given ({}) is not the one the \
             genesis names ({})",
            ceasefire_core::key_text(other.verifying_key().as_bytes()),
            ceasefire_core::key_text(scenario.operator().verifying_key().as_bytes()),
        )
    );
    // Nothing was written: the right key then starts the ledger.
    TestNode::start_in(dir, scenario).await.shutdown().await;
}

#[test]
fn reasons_without_error_info_read_as_unspecified() {
    // A framework status (no details) reads as UNSPECIFIED, printed by code.
    let status = Status::out_of_range("message too large");
    assert_eq!(errors::reason(&status), ReasonCode::Unspecified);
    assert_eq!(errors::describe(&status), "OutOfRange: message too large");
    let refusal = errors::refusal(&status);
    assert_eq!(refusal.reason, 0);
    assert!(refusal.metadata.is_empty());
}
