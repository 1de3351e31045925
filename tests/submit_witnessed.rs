//! `submit --wait-witnessed`: the binary submits to a real node (tonic on
//! 127.0.0.1:0, a sled tempdir) whose 2-of-3 witness policy names three real
//! witnesses, each the binary's `witness serve` as a child process. The node
//! collects their cosignatures; submit waits for a witnessed checkpoint
//! covering its entries, checks it and names the cosigners (one wait for an
//! NDJSON batch). With two witnesses down it gives up at its timeout naming
//! them and the size witnessing reached (and the server's GetCheckpoint
//! answers NOT_YET_WITNESSED at the caller's deadline); a log without a
//! policy is refused before anything is submitted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ceasefire_core::witness_policy::WitnessPolicy;
use ceasefire_grpc::errors::{error_info, reason};
use ceasefire_grpc::proto::{GetCheckpointRequest, ReasonCode, SetWitnessPolicy};
use ceasefire_ledger::dev;
use ceasefire_testkit::fixture::TestNode;
use ceasefire_testkit::harness::{command, run_bounded, Output};
use ceasefire_testkit::scenario::{bodies, BOOTSTRAP_ENTRIES};
use ceasefire_testkit::witness::{start_log_witnesses, witness_policy};

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// Generous bounds: these wait for processes, never time anything.
const RUN_BOUND: Duration = Duration::from_secs(120);

const WITNESS_NAMES: [&str; 3] = ["north.example/w", "south.example/w", "mediator.example/w"];

/// An observation of the development commitment, as a bare event.
const OBSERVATION: &str = include_str!("../examples/dev/observation.json");

/// A development ledger with its keys on disk (for `submit --key`).
async fn dev_node() -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let keys = dev::ensure_dev_keys(dir.path()).unwrap();
    TestNode::start_in(dir, dev::scenario(&keys)).await
}

fn monitor_key(node: &TestNode) -> PathBuf {
    dev::dev_keys_dir(node.dir.path()).join("monitor.key")
}

/// `submit` with `args` against `node`, in a blocking thread (the node runs
/// on this runtime).
async fn submit(node: &TestNode, work: &Path, args: &[&str]) -> Output {
    let mut command = command(BINARY, &[&"submit", &"--server", &node.node.url()]);
    command.args(args).env("RUST_LOG", "warn");
    let scratch = work.to_path_buf();
    tokio::task::spawn_blocking(move || run_bounded(command, &scratch, RUN_BOUND))
        .await
        .unwrap()
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

fn seq_of(receipt: &serde_json::Value) -> u64 {
    receipt["seq"].as_str().unwrap().parse().unwrap()
}

fn write(work: &Path, name: &str, text: &str) -> PathBuf {
    let path = work.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The witnessed line checks out with the core's own verifier: the
/// operator's key and the policy's quorum; it covers `seq`.
fn assert_witnessed(
    line: &serde_json::Value,
    node: &TestNode,
    policy: &SetWitnessPolicy,
    seq: u64,
) {
    let witnessed = &line["witnessed"];
    let note = witnessed["note"].as_str().unwrap();
    let policy = WitnessPolicy::from_event(policy, true).unwrap();
    let (body, verdict) = policy.judge(note, &node.scenario.note_verifier()).unwrap();
    assert!(verdict.satisfied, "{line}");
    assert!(body.tree_size > seq, "{line}");
    assert_eq!(witnessed["treeSize"], body.tree_size.to_string());
    let cosigners: Vec<&str> = witnessed["cosigners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    let verified: Vec<&str> = verdict.cosigned.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(cosigners, verified);
    assert!(cosigners.len() >= 2, "{line}");
    assert_eq!(witnessed["quorum"], "quorum signatories: 2 of 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_waits_for_a_witnessed_checkpoint_and_gives_up_naming_the_witnesses_down() {
    let work = tempfile::tempdir().unwrap();
    let mut node = dev_node().await;
    let log_vkey = node.scenario.note_verifier().encoded_key();
    let mut witnesses =
        start_log_witnesses(Path::new(BINARY), work.path(), &WITNESS_NAMES, &log_vkey)
            .await
            .expect("cannot start the witnesses");
    let policy = witness_policy(&witnesses, 2, "signatories");
    let governed = node
        .scenario
        .govern(bodies::set_witness_policy(policy.clone()));
    node.client.submit(governed).await.unwrap();
    let key = monitor_key(&node);
    let key = key.to_str().unwrap();

    // One event: its receipt, then the witnessed checkpoint covering it.
    let single = write(work.path(), "one.json", OBSERVATION);
    let output = submit(
        &node,
        work.path(),
        &["--key", key, "--wait-witnessed", single.to_str().unwrap()],
    )
    .await;
    assert!(output.status.success(), "{}", output.stderr);
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 2, "{}", output.stdout);
    assert_eq!(seq_of(&lines[0]), BOOTSTRAP_ENTRIES + 1);
    assert_witnessed(&lines[1], &node, &policy, BOOTSTRAP_ENTRIES + 1);

    // A batch: three receipts, one wait, for the last of them. Three
    // reports, each its own (the same report again would count once).
    let compact: serde_json::Value = serde_json::from_str(OBSERVATION).unwrap();
    let reports: String = (1..=3)
        .map(|index| {
            let mut report = compact.clone();
            report["observation"]["narrative"] = format!("batch report {index}").into();
            format!("{report}\n")
        })
        .collect();
    let batch = write(work.path(), "three.ndjson", &reports);
    let output = submit(
        &node,
        work.path(),
        &[
            "--key",
            key,
            "--wait-witnessed",
            "--wait-timeout",
            "60",
            batch.to_str().unwrap(),
        ],
    )
    .await;
    assert!(output.status.success(), "{}", output.stderr);
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 4, "{}", output.stdout);
    let last_seq = seq_of(&lines[2]);
    assert_eq!(last_seq, BOOTSTRAP_ENTRIES + 4);
    assert!(lines[..3]
        .iter()
        .all(|line| line.get("witnessed").is_none()));
    assert_witnessed(&lines[3], &node, &policy, last_seq);
    let witnessed_size: u64 = lines[3]["witnessed"]["treeSize"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // South and the mediator down: one cosigner of the two needed. The
    // receipt still comes; the wait ends at its timeout, in one line that
    // says how far witnessing got and which witnesses fail.
    witnesses[1].kill().unwrap();
    witnesses[2].kill().unwrap();
    let mut report = compact.clone();
    report["observation"]["narrative"] = "after two witnesses went down".into();
    let new_report = write(work.path(), "down.json", &report.to_string());
    let output = submit(
        &node,
        work.path(),
        &[
            "--key",
            key,
            "--wait-witnessed",
            "--wait-timeout",
            "3",
            new_report.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!output.status.success(), "{}", output.stdout);
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 1, "the receipt: {}", output.stdout);
    let seq = seq_of(&lines[0]);
    let message = output.stderr.trim();
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains(&format!(
            "no witnessed checkpoint covers entry {seq} after 3 s"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "the latest witnessed checkpoint has {witnessed_size} entries"
        )),
        "{message}"
    );
    assert!(
        message.contains("north.example/w (cosigned size") && message.contains(", ok)"),
        "{message}"
    );
    for down in ["south.example/w", "mediator.example/w"] {
        assert!(
            message.contains(&format!(
                "{down} (cosigned size {witnessed_size}, failing: "
            )),
            "{message}"
        );
    }

    // The server's side of that wait: it answers just before the caller's
    // deadline, with the reason and the size reached, not tonic's CANCELLED.
    let mut request = tonic::Request::new(GetCheckpointRequest {
        witnessed: true,
        min_tree_size: seq + 1,
    });
    request.set_timeout(Duration::from_secs(2));
    let status = node.client.get_checkpoint(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), ReasonCode::NotYetWitnessed);
    let (_, metadata) = error_info(&status).unwrap();
    assert_eq!(metadata["witnessed_size"], witnessed_size.to_string());
    drop(witnesses);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_witness_policy_nothing_is_submitted_and_bad_flags_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let node = dev_node().await;
    let key = monitor_key(&node);
    let single = write(work.path(), "one.json", OBSERVATION);
    let size_before = node.checkpoint().await.tree_size;

    let output = submit(
        &node,
        work.path(),
        &[
            "--key",
            key.to_str().unwrap(),
            "--wait-witnessed",
            single.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!output.status.success());
    assert_eq!(output.stdout, "");
    let message = output.stderr.trim();
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("the ledger has no witness policy")
            && message.contains("nothing was submitted"),
        "{message}"
    );
    assert_eq!(node.checkpoint().await.tree_size, size_before);
    let status = node
        .client
        .clone()
        .get_checkpoint(GetCheckpointRequest {
            witnessed: true,
            min_tree_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(&status), ReasonCode::NoWitnessPolicy);

    // --wait-timeout needs --wait-witnessed, and at least a second.
    for args in [
        vec!["--wait-timeout", "5"],
        vec!["--wait-witnessed", "--wait-timeout", "0"],
        vec!["--wait-witnessed", "--wait-timeout", "soon"],
    ] {
        let mut all = vec!["--key", key.to_str().unwrap()];
        all.extend(args.iter());
        all.push(single.to_str().unwrap());
        let output = submit(&node, work.path(), &all).await;
        assert!(!output.status.success(), "{args:?}");
        assert!(
            output.stderr.contains("--wait-timeout"),
            "{}",
            output.stderr
        );
    }
    assert_eq!(node.checkpoint().await.tree_size, size_before);
    node.shutdown().await;
}
