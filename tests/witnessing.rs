//! The ledger collects its witnesses' cosignatures, end to end: a real node
//! (in-process, real gRPC and sled) and three real `witness serve` child
//! processes, each with its key from `witness keygen`, its data directory
//! and its port, named by a 2-of-3 SetWitnessPolicy the signatories submit.
//!
//! What is shown: the quorum cosigns and `GetCheckpoint{witnessed}` serves
//! the note (and `verify --server` names the cosigners); one witness down
//! changes nothing but its status; two down stop the witnessed size (and
//! say so) while receipts stay immediate, and the witnesses' return catches
//! up; a restarted node serves its recorded witnessed checkpoint and then
//! resumes collecting from witnesses that kept their state (409 and retry);
//! a log without a policy refuses witnessed checkpoints.
//!
//! Nothing is timed: every wait is a generous bound on something that must
//! happen, and a "does not happen" is shown by the server's own refusal.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ceasefire_core::checkpoint::{parse_unverified, NoteVerifier};
use ceasefire_core::cosignature::{open_cosigned, CosignerVerifier};
use ceasefire_core::witness_policy::WitnessPolicy;
use ceasefire_grpc::errors::{error_info, reason};
use ceasefire_grpc::proto::{
    Checkpoint, GetCheckpointRequest, ReasonCode, SetWitnessPolicy, WitnessStatus,
};
use ceasefire_node::node::NodeConfig;
use ceasefire_testkit::fixture::{node_config, TestNode};
use ceasefire_testkit::harness::{command, run_bounded};
use ceasefire_testkit::scenario::bodies::set_witness_policy;
use ceasefire_testkit::scenario::Scenario;
use ceasefire_testkit::witness::{start_log_witnesses, witness_policy, LogWitness};
use ceasefire_witness::{AddCheckpointError, WitnessClient};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// The witnesses: as in the example scenario, each party runs one.
const WITNESS_NAMES: [&str; 3] = ["north.example/w", "south.example/w", "mediator.example/w"];

/// A generous bound on anything that must happen (a quorum forming, a
/// witness's status changing, a call answering).
const WAIT: Duration = Duration::from_secs(60);

/// The deadline of a witnessed-checkpoint call that is expected to fail:
/// the server waits until just before it, then answers NOT_YET_WITNESSED.
const SHORT_DEADLINE: Duration = Duration::from_secs(3);

/// A node with metrics served, three witnesses of its log, and the 2-of-3
/// policy naming them, accepted into the log.
struct WitnessedLedger {
    node: TestNode,
    witnesses: Vec<LogWitness>,
    policy: WitnessPolicy,
    /// Holds the witnesses' keys and data directories.
    _witness_dir: TempDir,
}

impl WitnessedLedger {
    async fn start() -> WitnessedLedger {
        let scenario = Scenario::dev_with_random_keys();
        let dir = tempfile::tempdir().unwrap();
        let config = with_metrics(node_config(dir.path(), &scenario));
        let node = TestNode::start_config(dir, scenario, config).await;
        let witness_dir = tempfile::tempdir().unwrap();
        let log_vkey = node.scenario.note_verifier().encoded_key();
        let witnesses = start_log_witnesses(
            Path::new(BINARY),
            witness_dir.path(),
            &WITNESS_NAMES,
            &log_vkey,
        )
        .await
        .expect("the witnesses did not start");
        let event = witness_policy(&witnesses, 2, "parties");
        let policy = WitnessPolicy::from_event(&event, true).unwrap();
        submit_policy(&node, event).await;
        WitnessedLedger {
            node,
            witnesses,
            policy,
            _witness_dir: witness_dir,
        }
    }

    fn operator(&self) -> NoteVerifier {
        self.node.scenario.note_verifier()
    }

    fn verifiers(&self) -> Vec<CosignerVerifier> {
        self.witnesses.iter().map(|w| w.verifier.clone()).collect()
    }

    /// Submits `count` observations; each must get its receipt at once
    /// (operator-signed, checked), whatever the witnesses do. The log's
    /// size after them.
    async fn submit_observations(&self, count: usize) -> u64 {
        let mut size = 0;
        for index in 0..count {
            let signed = self.node.signed_observation(&format!("shelling {index}"));
            let receipt =
                tokio::time::timeout(WAIT, self.node.client.clone().submit(signed.clone()))
                    .await
                    .expect("a submission waited on the witnesses")
                    .unwrap_or_else(|status| panic!("refused: {status:?}"))
                    .into_inner();
            self.node.check_receipt(&receipt, &signed);
            size = receipt.seq + 1;
        }
        size
    }

    /// The witnessed checkpoint covering `min_tree_size`, the call bounded
    /// by `deadline` (sent to the server as the gRPC deadline).
    async fn witnessed(
        &self,
        min_tree_size: u64,
        deadline: Duration,
    ) -> Result<Checkpoint, tonic::Status> {
        let mut request = tonic::Request::new(GetCheckpointRequest {
            witnessed: true,
            min_tree_size,
        });
        request.set_timeout(deadline);
        tokio::time::timeout(
            deadline + WAIT,
            self.node.client.clone().get_checkpoint(request),
        )
        .await
        .expect("GetCheckpoint ignored its deadline")
        .map(tonic::Response::into_inner)
    }

    /// [`Self::witnessed`], which must succeed; checks the note: it opens
    /// with the operator's key, covers `min_tree_size`, and carries the
    /// policy's quorum of valid cosignatures. The checkpoint and the names
    /// of its cosigners.
    async fn expect_witnessed(&self, min_tree_size: u64) -> (Checkpoint, Vec<String>) {
        let checkpoint = self
            .witnessed(min_tree_size, WAIT)
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "no witnessed checkpoint of {min_tree_size} entries: {status:?}\nwitnesses:\n{}",
                    self.witness_logs()
                )
            });
        let (body, cosigned) = open_cosigned(&checkpoint.note, &self.operator(), &self.verifiers())
            .unwrap_or_else(|error| panic!("the witnessed note does not open: {error}"));
        assert!(body.tree_size >= min_tree_size, "{body:?}");
        assert_eq!(checkpoint.tree_size, body.tree_size);
        assert!(cosigned.len() >= 2, "cosigned by {cosigned:?} only");
        let (_, verdict) = self
            .policy
            .judge(&checkpoint.note, &self.operator())
            .unwrap();
        assert!(verdict.satisfied, "{verdict:?}");
        assert_eq!(checkpoint.witness_policy, self.policy.to_text());
        let names = cosigned.into_iter().map(|c| c.name).collect();
        (checkpoint, names)
    }

    /// The latest (operator-signed) checkpoint's account of the witnesses.
    async fn statuses(&self) -> Vec<WitnessStatus> {
        self.node
            .client
            .clone()
            .get_checkpoint(GetCheckpointRequest::default())
            .await
            .expect("GetCheckpoint failed")
            .into_inner()
            .witnesses
    }

    /// Polls the witnesses' statuses until `holds` holds for them.
    async fn wait_for_statuses(
        &self,
        what: &str,
        holds: impl Fn(&[WitnessStatus]) -> bool,
    ) -> Vec<WitnessStatus> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let statuses = self.statuses().await;
            if holds(&statuses) {
                return statuses;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the witnesses' statuses never showed {what}: {statuses:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every witness's stderr, for failure messages.
    fn witness_logs(&self) -> String {
        self.witnesses
            .iter()
            .map(|w| format!("--- {}\n{}", w.name(), w.stderr()))
            .collect()
    }

    fn metrics_addr(&self) -> SocketAddr {
        self.node.node.metrics_addr.expect("metrics are served")
    }
}

fn with_metrics(config: NodeConfig) -> NodeConfig {
    NodeConfig {
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..config
    }
}

/// The signatories set the policy `event` (governance: the scenario's
/// threshold of them sign it).
async fn submit_policy(node: &TestNode, event: SetWitnessPolicy) {
    let signed = node.scenario.govern(set_witness_policy(event));
    let receipt = node
        .client
        .clone()
        .submit(signed.clone())
        .await
        .unwrap_or_else(|status| panic!("the policy was refused: {status:?}"))
        .into_inner();
    node.check_receipt(&receipt, &signed);
}

/// The status of the witness `name`.
fn status_of<'a>(statuses: &'a [WitnessStatus], name: &str) -> &'a WitnessStatus {
    statuses
        .iter()
        .find(|status| status.name == name)
        .unwrap_or_else(|| panic!("no status for {name}: {statuses:#?}"))
}

/// GET /metrics of the node (HTTP/1.1, `Connection: close`): the body.
async fn metrics_text(address: SocketAddr) -> String {
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, socket.read_to_string(&mut response))
        .await
        .expect("GET /metrics hung")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The value of the series `series` (`name` or `name{labels}`).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Polls /metrics until `series` has a value for which `holds` (the
/// collector counts a request just after it records the witness's state).
async fn wait_for_metric(address: SocketAddr, series: &str, holds: impl Fn(f64) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = metrics_text(address).await;
        if metric(&text, series).is_some_and(&holds) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never reached the expected value:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `ceasefire-ledger verify --server URL --json`, as an auditor runs it:
/// its exit code and its JSON.
async fn verify_cli(url: String) -> (Option<i32>, serde_json::Value) {
    tokio::task::spawn_blocking(move || {
        let scratch = tempfile::tempdir().unwrap();
        let output = run_bounded(
            command(BINARY, &[&"verify", &"--server", &url, &"--json"]),
            scratch.path(),
            WAIT,
        );
        let json = serde_json::from_str(output.stdout.trim()).unwrap_or_else(|error| {
            panic!(
                "verify printed no JSON ({error}):\n{}\n{}",
                output.stdout, output.stderr
            )
        });
        (output.status.code(), json)
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------

/// The quorum cosigns: the witnessed checkpoint opens with the operator's
/// key and carries at least two valid cosignatures, every witness shows the
/// size it cosigned, and `verify --server` passes naming the cosigners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quorum_cosigns_and_the_auditor_names_the_cosigners() {
    let ledger = WitnessedLedger::start().await;
    let size = ledger.submit_observations(5).await;
    let (checkpoint, cosigners) = ledger.expect_witnessed(size).await;
    assert!(cosigners.len() >= 2);

    // All three witnesses are up: each cosigns (the third may be a round
    // behind the quorum, never absent).
    let statuses = ledger
        .wait_for_statuses("all three cosigning", |statuses| {
            statuses.len() == 3
                && statuses
                    .iter()
                    .all(|s| s.cosigned_size >= size && s.last_error.is_empty())
        })
        .await;
    let names: Vec<&str> = statuses.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, WITNESS_NAMES);

    // The metrics say the same.
    let text = metrics_text(ledger.metrics_addr()).await;
    let witnessed = metric(&text, "ceasefire_ledger_witnessed_tree_size").unwrap();
    assert!(witnessed >= checkpoint.tree_size as f64, "{text}");
    for name in WITNESS_NAMES {
        let series = format!(
            "ceasefire_ledger_witness_requests_total{{witness=\"{name}\",outcome=\"cosigned\"}}"
        );
        wait_for_metric(ledger.metrics_addr(), &series, |count| count >= 1.0).await;
    }
    // The auditor's CLI: the whole log, and the quorum on its checkpoint.
    let (code, report) = verify_cli(ledger.node.node.url()).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    let witnessed_by: Vec<&str> = report["witnessed_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert!(witnessed_by.len() >= 2, "{report:#}");
    assert!(witnessed_by.iter().all(|name| WITNESS_NAMES.contains(name)));
    assert_eq!(report["witness_quorum"], "2 of 3 needed: quorum parties");
    assert!(report["entries"].as_u64().unwrap() >= size);
    ledger.node.shutdown().await;
}

/// One witness of three killed: receipts stay immediate and the other two
/// keep witnessing new checkpoints; the dead one's status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_witness_down_changes_nothing_but_its_status() {
    let mut ledger = WitnessedLedger::start().await;
    let size = ledger.submit_observations(2).await;
    ledger.expect_witnessed(size).await;

    ledger.witnesses[2].kill().unwrap();
    let dead = WITNESS_NAMES[2];
    for round in 0..3 {
        let size = ledger.submit_observations(3).await;
        let (_, mut cosigners) = ledger.expect_witnessed(size).await;
        cosigners.sort();
        let mut alive = WITNESS_NAMES[..2].to_vec();
        alive.sort();
        assert_eq!(cosigners, alive, "round {round}: a dead witness cosigned");
    }
    let statuses = ledger
        .wait_for_statuses("the dead witness failing", |statuses| {
            !status_of(statuses, dead).last_error.is_empty()
        })
        .await;
    let size = ledger.node.checkpoint().await.tree_size;
    assert!(status_of(&statuses, dead).cosigned_size < size);
    for alive in &WITNESS_NAMES[..2] {
        assert_eq!(status_of(&statuses, alive).last_error, "", "{statuses:#?}");
    }
    ledger.node.shutdown().await;
}

/// Two of three killed: receipts stay immediate, the witnessed size stops
/// and the server says so (NOT_YET_WITNESSED naming it; statuses and
/// metrics); the two restarted on their data directories and ports kept
/// their state, and the newest checkpoint is witnessed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_witnesses_down_stop_witnessing_until_they_return() {
    let mut ledger = WitnessedLedger::start().await;
    let witnessed_size = ledger.submit_observations(3).await;
    let (witnessed, _) = ledger.expect_witnessed(witnessed_size).await;
    // Nothing is in flight: the witnessed checkpoint is the log's.
    assert_eq!(witnessed.tree_size, witnessed_size);
    ledger
        .wait_for_statuses("every witness at the witnessed size", |statuses| {
            statuses.iter().all(|s| s.cosigned_size == witnessed_size)
        })
        .await;

    ledger.witnesses[0].kill().unwrap();
    ledger.witnesses[1].kill().unwrap();
    let size = ledger.submit_observations(4).await;

    // The server waits for the caller's deadline, then names the size it has.
    let status = ledger
        .witnessed(size, SHORT_DEADLINE)
        .await
        .expect_err("witnessed with two of three witnesses down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), ReasonCode::NotYetWitnessed, "{status:?}");
    let (_, metadata) = error_info(&status).unwrap();
    assert_eq!(
        metadata.get("witnessed_size"),
        Some(&witnessed_size.to_string()),
        "{status:?}"
    );
    assert!(
        status
            .message()
            .contains(&format!("covers {witnessed_size} entries, not {size}")),
        "{status:?}"
    );
    // Without a floor, the last witnessed checkpoint is served as it was.
    let latest = ledger.witnessed(0, WAIT).await.unwrap();
    assert_eq!(latest.note, witnessed.note);

    // The survivor cosigns the new tree alone; the two dead say why.
    let statuses = ledger
        .wait_for_statuses("the survivor ahead and the dead failing", |statuses| {
            status_of(statuses, WITNESS_NAMES[2]).cosigned_size == size
                && WITNESS_NAMES[..2]
                    .iter()
                    .all(|dead| !status_of(statuses, dead).last_error.is_empty())
        })
        .await;
    for dead in &WITNESS_NAMES[..2] {
        assert_eq!(status_of(&statuses, dead).cosigned_size, witnessed_size);
    }
    let text = metrics_text(ledger.metrics_addr()).await;
    assert_eq!(
        metric(&text, "ceasefire_ledger_witnessed_tree_size"),
        Some(witnessed_size as f64),
        "{text}"
    );
    for dead in &WITNESS_NAMES[..2] {
        let failed = format!(
            "ceasefire_ledger_witness_requests_total{{witness=\"{dead}\",outcome=\"failed\"}}"
        );
        assert!(
            metric(&text, &failed).unwrap_or(0.0) >= 1.0,
            "{failed}:\n{text}"
        );
    }
    let survivor = format!(
        "ceasefire_ledger_witness_cosigned_size{{witness=\"{}\"}}",
        WITNESS_NAMES[2]
    );
    wait_for_metric(ledger.metrics_addr(), &survivor, |value| {
        value == size as f64
    })
    .await;

    // Restarted on their data directories: each kept the size it cosigned
    // (a request from size 0 is told 409 with it) ...
    let latest_note = ledger
        .node
        .client
        .clone()
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .unwrap()
        .into_inner()
        .note;
    for witness in &mut ledger.witnesses[..2] {
        witness.restart().await.unwrap();
        let client = WitnessClient::new(&witness.url()).unwrap();
        match client.add_checkpoint(0, &[], &latest_note).await {
            // At least the size it had cosigned (the collector may have
            // moved it on since it came back), never back to nothing.
            Err(AddCheckpointError::Conflict { witness_size }) => assert!(
                (witnessed_size..=size).contains(&witness_size),
                "{}: 409 with size {witness_size}",
                witness.name()
            ),
            other => panic!(
                "{}: expected 409 with its size, got {other:?}",
                witness.name()
            ),
        }
    }
    // ... and the ledger catches up: the newest checkpoint is witnessed.
    let size = ledger.submit_observations(1).await;
    ledger.expect_witnessed(size).await;
    ledger
        .wait_for_statuses("every witness back", |statuses| {
            statuses
                .iter()
                .all(|s| s.cosigned_size >= size && s.last_error.is_empty())
        })
        .await;
    ledger.node.shutdown().await;
}

/// A restarted node serves the witnessed checkpoint it recorded, even with
/// every witness down; when they return (each with its state, so the
/// collector starts from size 0, is told 409 with the witness's size and
/// retries from it) newer checkpoints are witnessed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_serves_its_recorded_witnessed_checkpoint() {
    let mut ledger = WitnessedLedger::start().await;
    let size = ledger.submit_observations(3).await;
    let (witnessed, _) = ledger.expect_witnessed(size).await;

    for witness in &mut ledger.witnesses {
        witness.kill().unwrap();
    }
    let (dir, scenario) = ledger.node.stop().await;
    let config = with_metrics(NodeConfig {
        bootstrap: Vec::new(),
        ..node_config(dir.path(), &scenario)
    });
    ledger.node = TestNode::start_config(dir, scenario, config).await;

    let served = ledger
        .witnessed(0, WAIT)
        .await
        .expect("the recorded checkpoint");
    assert_eq!(served.note, witnessed.note);
    let (again, _) = ledger.expect_witnessed(witnessed.tree_size).await;
    assert_eq!(again.note, witnessed.note);
    let text = metrics_text(ledger.metrics_addr()).await;
    assert_eq!(
        metric(&text, "ceasefire_ledger_witnessed_tree_size"),
        Some(witnessed.tree_size as f64),
        "{text}"
    );

    for witness in &mut ledger.witnesses {
        witness.restart().await.unwrap();
    }
    let size = ledger.submit_observations(2).await;
    let (_, cosigners) = ledger.expect_witnessed(size).await;
    assert!(cosigners.len() >= 2);
    ledger.node.shutdown().await;
}

/// A log that never set a witness policy has no witnessed checkpoint to
/// give: FAILED_PRECONDITION NO_WITNESS_POLICY, at once. (And a plain
/// checkpoint beyond the log is refused at the caller's deadline.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_without_a_policy_refuses_witnessed_checkpoints() {
    let node = TestNode::start().await;
    for min_tree_size in [0, 1, 1_000] {
        let status = node
            .client
            .clone()
            .get_checkpoint(GetCheckpointRequest {
                witnessed: true,
                min_tree_size,
            })
            .await
            .expect_err("a witnessed checkpoint without a policy");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(reason(&status), ReasonCode::NoWitnessPolicy, "{status:?}");
        assert!(status.message().contains("no witness policy"), "{status:?}");
    }
    // A size the log does not reach is waited for up to the caller's
    // deadline, then refused naming the log's size (not cancelled).
    let mut beyond = tonic::Request::new(GetCheckpointRequest {
        witnessed: false,
        min_tree_size: 1_000,
    });
    beyond.set_timeout(SHORT_DEADLINE);
    let status = node
        .client
        .clone()
        .get_checkpoint(beyond)
        .await
        .expect_err("a checkpoint beyond the log");
    assert_eq!(reason(&status), ReasonCode::BeyondTree, "{status:?}");
    let size = node.checkpoint().await.tree_size;
    assert!(
        status
            .message()
            .contains(&format!("the log holds {size} entries")),
        "{status:?}"
    );
    // The latest checkpoint is still served, with no witnesses named.
    let checkpoint = node
        .client
        .clone()
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(checkpoint.witnesses.is_empty());
    assert_eq!(checkpoint.witness_policy, "");
    parse_unverified(&checkpoint.note).unwrap();
    node.shutdown().await;
}
