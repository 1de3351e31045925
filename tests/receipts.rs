//! Receipts as evidence (issue 14): `submit --receipts DIR` writes each
//! receipt as a C2SP tlog-proof file, `verify --receipt FILE` checks one
//! with the node stopped (nothing but the signed genesis file or the
//! operator key, and a witness policy file when given), and `receipt
//! refresh` moves one to a newer checkpoint only if it is consistent with
//! the receipt's own.
//!
//! Real parts: a node in-process (tonic on 127.0.0.1:0, a sled tempdir),
//! the binary as a child process for every command, and for the witnessed
//! case three `witness serve` processes under a 2-of-3 policy. Tampered
//! files (the leaf, the index, a proof line, the checkpoint's signature, a
//! wrong key) each fail with exit 1 naming the check; a receipt that cannot
//! be checked (no file, no key, a bad key file) is exit 2. A fork, one
//! data directory served as two diverging logs under the same key, cannot
//! refresh a receipt of one branch from the other.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ceasefire_core::checkpoint::open_checkpoint;
use ceasefire_core::merkle::verify_consistency;
use ceasefire_core::rules::decode_event;
use ceasefire_core::tlog_proof::TlogProof;
use ceasefire_core::witness_policy::WitnessPolicy;
use ceasefire_ledger::dev;
use ceasefire_ledger::signed_file::SignedEventFile;
use ceasefire_testkit::fixture::TestNode;
use ceasefire_testkit::harness::{command, copy_dir, run_bounded, Output};
use ceasefire_testkit::scenario::{bodies::set_witness_policy, BOOTSTRAP_ENTRIES};
use ceasefire_testkit::witness::{start_log_witnesses, witness_policy};

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// Generous bound on one command: it waits for processes, never times anything.
const RUN_BOUND: Duration = Duration::from_secs(120);

/// An observation of the development commitment, as a bare event.
const OBSERVATION: &str = include_str!("../examples/dev/observation.json");

/// A development ledger whose keys are on disk (for `submit --key`), and a
/// separate directory for what a mission keeps: receipts, the genesis file.
struct Mission {
    node: TestNode,
    work: tempfile::TempDir,
}

impl Mission {
    async fn start() -> Mission {
        let dir = tempfile::tempdir().unwrap();
        let keys = dev::ensure_dev_keys(dir.path()).unwrap();
        let node = TestNode::start_in(dir, dev::scenario(&keys)).await;
        let work = tempfile::tempdir().unwrap();
        let mission = Mission { node, work };
        mission.write_genesis_file();
        mission
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn receipts(&self) -> PathBuf {
        self.path("receipts")
    }

    /// The signed genesis, as `init` and `sign` leave it for the signatories.
    fn write_genesis_file(&self) {
        let signed = self.node.scenario.bootstrap().remove(0);
        let event = decode_event(&signed.payload).unwrap();
        SignedEventFile { event, signed }
            .save(&self.path("genesis.json"))
            .unwrap();
    }

    fn operator_key(&self) -> String {
        BASE64.encode(self.node.operator_key().as_bytes())
    }

    /// `submit --key monitor.key --receipts DIR` of `count` observations
    /// (one NDJSON file, each narrative its own); the seqs it printed.
    async fn submit(&self, count: usize) -> Vec<u64> {
        self.submit_with(count, &[]).await
    }

    /// [`Mission::submit`] with more flags (before the file).
    async fn submit_with(&self, count: usize, flags: &[&str]) -> Vec<u64> {
        let lines: Vec<String> = (0..count)
            .map(|index| {
                let mut event: serde_json::Value = serde_json::from_str(OBSERVATION).unwrap();
                event["observation"]["narrative"] =
                    format!("Receipt test {index}: shelling heard to the north.").into();
                event.to_string()
            })
            .collect();
        let file = self.path("events.ndjson");
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let key = dev::dev_keys_dir(self.node.dir.path()).join("monitor.key");
        let receipts = self.receipts();
        let url = self.node.node.url();
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"submit",
            &"--server",
            &url,
            &"--key",
            &key,
            &"--receipts",
            &receipts,
        ];
        args.extend(flags.iter().map(|flag| flag as &dyn AsRef<std::ffi::OsStr>));
        args.push(&file);
        let output = run(self.work.path(), &args).await;
        assert!(output.status.success(), "{}", output.stderr);
        output
            .stdout
            .lines()
            .filter(|line| !line.starts_with("{\"witnessed\""))
            .map(|line| {
                let receipt: serde_json::Value = serde_json::from_str(line).unwrap();
                receipt["seq"].as_str().unwrap().parse().unwrap()
            })
            .collect()
    }

    /// Appends `count` observations through gRPC, so the tree grows.
    async fn grow(&self, count: usize) {
        grow(&self.node, count, "later").await;
    }
}

async fn grow(node: &TestNode, count: usize, tag: &str) {
    for index in 0..count {
        let signed = node.signed_observation(&format!("{tag} report {index}"));
        let receipt = node
            .client
            .clone()
            .submit(signed.clone())
            .await
            .unwrap()
            .into_inner();
        node.check_receipt(&receipt, &signed);
    }
}

/// The binary with `args`, in a blocking thread (the node runs on this
/// runtime), run from `dir`.
async fn run(dir: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut command = command(BINARY, args);
    command.env("RUST_LOG", "warn").current_dir(dir);
    let scratch = dir.to_path_buf();
    tokio::task::spawn_blocking(move || run_bounded(command, &scratch, RUN_BOUND))
        .await
        .unwrap()
}

fn receipt_file(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq}.tlog-proof"))
}

fn read_proof(path: &Path) -> TlogProof {
    TlogProof::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_receipts_verify_offline_with_the_genesis_or_the_operator_key() {
    let mission = Mission::start().await;
    let seqs = mission.submit(3).await;
    assert_eq!(
        seqs,
        (BOOTSTRAP_ENTRIES..BOOTSTRAP_ENTRIES + 3).collect::<Vec<_>>()
    );
    let log = mission.node.read_log().await;
    let operator_key = mission.operator_key();
    let vkey = mission.node.scenario.note_verifier().encoded_key();
    // Offline from here: the node is gone.
    let Mission { node, work } = mission;
    node.shutdown().await;
    let receipts = work.path().join("receipts");
    let genesis = work.path().join("genesis.json");

    for &seq in &seqs {
        let path = receipt_file(&receipts, seq);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
        let proof = TlogProof::parse(&text).unwrap();
        assert_eq!(proof.index, seq);
        assert_eq!(proof.extra.as_deref(), Some(&log[seq as usize].leaf[..]));

        for key_flags in [
            [&"--genesis" as &dyn AsRef<std::ffi::OsStr>, &genesis],
            [&"--operator-key", &operator_key],
            [&"--operator-key", &vkey],
        ] {
            let output = run(
                work.path(),
                &[&"verify", &"--receipt", &path, key_flags[0], key_flags[1]],
            )
            .await;
            assert_eq!(code(&output), Some(0), "{}", output.stderr);
            assert!(
                output.stdout.starts_with("receipt OK: "),
                "{}",
                output.stdout
            );
            assert!(
                output
                    .stdout
                    .contains(&format!("seq {seq} of dev-agreement by dev-monitor")),
                "{}",
                output.stdout
            );
        }
        let output = run(
            work.path(),
            &[
                &"verify",
                &"--receipt",
                &path,
                &"--genesis",
                &genesis,
                &"--json",
            ],
        )
        .await;
        assert_eq!(code(&output), Some(0), "{}", output.stderr);
        let report: serde_json::Value = serde_json::from_str(output.stdout.trim()).unwrap();
        assert_eq!(report["ok"], true);
        assert_eq!(report["seq"], seq.to_string());
        assert_eq!(report["author"], "dev-monitor");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_file_of_another_entry_is_never_overwritten() {
    let mission = Mission::start().await;
    let receipts = mission.receipts();
    std::fs::create_dir_all(&receipts).unwrap();
    let occupied = receipt_file(&receipts, BOOTSTRAP_ENTRIES);
    std::fs::write(&occupied, "another ledger's evidence\n").unwrap();
    std::fs::write(mission.path("one.json"), OBSERVATION).unwrap();
    let key = dev::dev_keys_dir(mission.node.dir.path()).join("monitor.key");
    let output = run(
        mission.work.path(),
        &[
            &"submit",
            &"--server",
            &mission.node.node.url(),
            &"--key",
            &key,
            &"--receipts",
            &receipts,
            &mission.path("one.json"),
        ],
    )
    .await;
    assert_eq!(code(&output), Some(1), "{}", output.stderr);
    let line = output.last_stderr_line();
    assert!(
        line.contains(&format!("event 1 was accepted as seq {BOOTSTRAP_ENTRIES}"))
            && line.contains("is not a receipt file")
            && line.contains("it was not overwritten"),
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(&occupied).unwrap(),
        "another ledger's evidence\n"
    );
    mission.node.shutdown().await;
}

/// One change to a good receipt file, and what the failure must name.
struct Tampering {
    what: &'static str,
    change: fn(&str) -> String,
    names: &'static str,
}

/// Flips one bit of the byte at `offset_from_end` of the `extra` data.
fn flip_leaf_byte(text: &str) -> String {
    let line = text.lines().nth(1).unwrap();
    let mut leaf = BASE64.decode(line.strip_prefix("extra ").unwrap()).unwrap();
    let at = leaf.len() - 100; // inside the payload, before the signature
    leaf[at] ^= 1;
    text.replacen(line, &format!("extra {}", BASE64.encode(leaf)), 1)
}

/// Flips one bit of the first inclusion proof hash.
fn flip_proof_hash(text: &str) -> String {
    let line = text.lines().nth(3).unwrap();
    let mut hash = BASE64.decode(line).unwrap();
    hash[0] ^= 1;
    text.replacen(line, &BASE64.encode(hash), 1)
}

/// Flips one bit of the operator's signature on the checkpoint.
fn flip_checkpoint_signature(text: &str) -> String {
    let line = text.lines().last().unwrap();
    let (name, blob) = line.rsplit_once(' ').unwrap();
    let mut blob = BASE64.decode(blob).unwrap();
    blob[10] ^= 1;
    text.replacen(line, &format!("{name} {}", BASE64.encode(blob)), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_receipts_fail_naming_what_failed() {
    let mission = Mission::start().await;
    let seq = mission.submit(1).await[0];
    let Mission { node, work } = mission;
    node.shutdown().await;
    let dir = work.path();
    let good_path = receipt_file(&dir.join("receipts"), seq);
    let good = std::fs::read_to_string(&good_path).unwrap();
    let genesis = dir.join("genesis.json");

    let tamperings = [
        Tampering {
            what: "a byte of the leaf",
            change: flip_leaf_byte,
            names: "the inclusion proof does not prove the entry",
        },
        Tampering {
            what: "the index",
            change: |text| text.replacen("\nindex 4\n", "\nindex 3\n", 1),
            names: "the index is 3 but the leaf's seq is 4",
        },
        Tampering {
            what: "a proof line",
            change: flip_proof_hash,
            names: "the inclusion proof does not prove the entry",
        },
        Tampering {
            what: "the checkpoint's signature",
            change: flip_checkpoint_signature,
            names: "the checkpoint's operator signature does not verify",
        },
        Tampering {
            what: "the checkpoint's root",
            change: |text| {
                let root = text.split("\n\n").nth(1).unwrap().lines().nth(2).unwrap();
                text.replacen(root, &BASE64.encode([7u8; 32]), 1)
            },
            names: "the checkpoint's operator signature does not verify",
        },
        Tampering {
            what: "the header",
            change: |text| text.replacen("tlog-proof@v1", "tlog-proof@v9", 1),
            names: "not a receipt file: line 1",
        },
        Tampering {
            what: "the checkpoint, cut off",
            change: |text| text.split("\n\n").next().unwrap().to_owned() + "\n",
            names: "not a receipt file: the file ends before the blank line",
        },
    ];
    assert_eq!(good.matches("\nindex 4\n").count(), 1, "{good}");
    for tampering in &tamperings {
        let path = dir.join("tampered.tlog-proof");
        let changed = (tampering.change)(&good);
        assert_ne!(changed, good, "{} changed nothing", tampering.what);
        std::fs::write(&path, changed).unwrap();
        let output = run(
            dir,
            &[&"verify", &"--receipt", &path, &"--genesis", &genesis],
        )
        .await;
        assert_eq!(
            code(&output),
            Some(1),
            "{}: {}",
            tampering.what,
            output.stderr
        );
        let line = output.last_stderr_line();
        assert!(
            line.starts_with("receipt FAILED: ") && line.contains(tampering.names),
            "{}: {line}",
            tampering.what
        );
        assert_eq!(output.stderr.trim().lines().count(), 1, "{}", output.stderr);
    }

    // The right file, the wrong key: another operator's, or another log's genesis.
    let stranger = BASE64.encode(
        ed25519_dalek::SigningKey::from_bytes(&[42; 32])
            .verifying_key()
            .as_bytes(),
    );
    let output = run(
        dir,
        &[
            &"verify",
            &"--receipt",
            &good_path,
            &"--operator-key",
            &stranger,
        ],
    )
    .await;
    assert_eq!(code(&output), Some(1), "{}", output.stderr);
    assert!(
        output.last_stderr_line().contains(
            "the checkpoint's operator signature does not verify: note has no signature from key"
        ),
        "{}",
        output.stderr
    );
    let output = run(
        dir,
        &[
            &"verify",
            &"--receipt",
            &good_path,
            &"--operator-key",
            &stranger,
            &"--json",
        ],
    )
    .await;
    assert_eq!(code(&output), Some(1));
    let report: serde_json::Value = serde_json::from_str(output.stdout.trim()).unwrap();
    assert_eq!(report["ok"], false);
    assert!(report["failure"]
        .as_str()
        .unwrap()
        .contains("operator signature"));
    assert_eq!(report["check"], 2, "{report}");

    // Could not start: exit 2, saying why.
    let no_such_genesis = dir.join("no-such-genesis.json");
    std::fs::write(
        dir.join("not-a-genesis.json"),
        "{\"type\": \"something else\"}",
    )
    .unwrap();
    let not_genesis = dir.join("not-a-genesis.json");
    let missing = dir.join("missing.tlog-proof");
    let cases: [(&[&dyn AsRef<std::ffi::OsStr>], &str); 5] = [
        (
            &[&"verify", &"--receipt", &missing, &"--genesis", &genesis],
            "cannot read",
        ),
        (
            &[&"verify", &"--receipt", &good_path],
            "give --genesis FILE",
        ),
        (
            &[
                &"verify",
                &"--receipt",
                &good_path,
                &"--genesis",
                &not_genesis,
            ],
            "--genesis",
        ),
        (
            &[
                &"verify",
                &"--receipt",
                &good_path,
                &"--genesis",
                &no_such_genesis,
            ],
            "--genesis",
        ),
        (
            &[
                &"verify",
                &"--receipt",
                &good_path,
                &"--operator-key",
                &"not-a-key",
            ],
            "--operator-key is neither",
        ),
    ];
    for (args, names) in cases {
        let output = run(dir, args).await;
        assert_eq!(code(&output), Some(2), "{names}: {}", output.stderr);
        assert!(
            output
                .last_stderr_line()
                .starts_with("could not verify the receipt: ")
                && output.last_stderr_line().contains(names),
            "{names}: {}",
            output.stderr
        );
    }
    // Nothing was changed by any of it.
    assert_eq!(std::fs::read_to_string(&good_path).unwrap(), good);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_moves_a_receipt_to_a_consistent_newer_checkpoint_and_refuses_a_fork() {
    let mission = Mission::start().await;
    let seq = mission.submit(1).await[0];
    let path = receipt_file(&mission.receipts(), seq);
    let old = read_proof(&path);
    mission.grow(3).await;
    let genesis = mission.path("genesis.json");
    let url = mission.node.node.url();
    let output = run(
        mission.work.path(),
        &[
            &"receipt",
            &"refresh",
            &path,
            &"--server",
            &url,
            &"--genesis",
            &genesis,
        ],
    )
    .await;
    assert_eq!(code(&output), Some(0), "{}", output.stderr);
    assert!(
        output.stdout.contains(&format!(
            "entry {seq}, checkpoint size {} -> {} (consistent)",
            seq + 1,
            seq + 4
        )),
        "{}",
        output.stdout
    );
    let new = read_proof(&path);
    assert_eq!((new.index, &new.extra), (old.index, &old.extra));
    // The two checkpoints, each with the operator's key, and the log's own
    // consistency proof between them: the new one extends the old one.
    let verifier = mission.node.scenario.note_verifier();
    let old_body = open_checkpoint(&old.checkpoint, &verifier).unwrap();
    let new_body = open_checkpoint(&new.checkpoint, &verifier).unwrap();
    assert_eq!((old_body.tree_size, new_body.tree_size), (seq + 1, seq + 4));
    let proof = mission
        .node
        .client
        .clone()
        .get_consistency_proof(ceasefire_grpc::proto::GetConsistencyProofRequest {
            old_size: old_body.tree_size,
            new_size: new_body.tree_size,
        })
        .await
        .unwrap()
        .into_inner();
    verify_consistency(
        old_body.tree_size,
        new_body.tree_size,
        &old_body.root_hash,
        &new_body.root_hash,
        &ceasefire_testkit::fixture::proof_hashes(&proof.hashes),
    )
    .unwrap();
    let output = run(
        mission.work.path(),
        &[&"verify", &"--receipt", &path, &"--genesis", &genesis],
    )
    .await;
    assert_eq!(code(&output), Some(0), "{}", output.stderr);

    // A fork: the data directory copied and served as a second log under
    // the same key. Branch A accepts a report with its receipt; branch B
    // gets others in its place. B cannot refresh A's receipt.
    let Mission { node, work } = mission;
    let (dir, scenario) = node.stop().await;
    let fork_dir = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), fork_dir.path());
    let branch_a = TestNode::resume(dir, scenario.clone()).await;
    let branch_b = TestNode::resume(fork_dir, scenario).await;
    let mission = Mission {
        node: branch_a,
        work,
    };
    // Report 0 was submitted above and counts once (its old seq, on both
    // branches); report 1 is new, on branch A only.
    let a_seq = mission.submit(2).await[1];
    grow(&branch_b, 3, "branch B").await;
    let a_path = receipt_file(&mission.receipts(), a_seq);
    let before = std::fs::read(&a_path).unwrap();
    let output = run(
        mission.work.path(),
        &[
            &"receipt",
            &"refresh",
            &a_path,
            &"--server",
            &branch_b.node.url(),
            &"--genesis",
            &genesis,
        ],
    )
    .await;
    assert_eq!(code(&output), Some(1), "{}", output.stderr);
    let line = output.last_stderr_line();
    assert!(
        line.starts_with("refresh FAILED: ")
            && line.contains(&format!(
                "is not consistent with the receipt's of size {}",
                a_seq + 1
            )),
        "{line}"
    );
    assert_eq!(
        std::fs::read(&a_path).unwrap(),
        before,
        "a failed refresh changed the file"
    );

    // A server that is not there: exit 2, the file untouched.
    let output = run(
        mission.work.path(),
        &[
            &"receipt",
            &"refresh",
            &a_path,
            &"--server",
            &"http://127.0.0.1:1",
            &"--genesis",
            &genesis,
        ],
    )
    .await;
    assert_eq!(code(&output), Some(2), "{}", output.stderr);
    assert!(
        output.last_stderr_line().starts_with("could not refresh: "),
        "{}",
        output.stderr
    );
    assert_eq!(std::fs::read(&a_path).unwrap(), before);
    branch_b.shutdown().await;
    mission.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_refreshed_to_a_witnessed_checkpoint_verifies_under_the_policy() {
    let mission = Mission::start().await;
    let witness_dir = tempfile::tempdir().unwrap();
    let log_vkey = mission.node.scenario.note_verifier().encoded_key();
    let witnesses = start_log_witnesses(
        Path::new(BINARY),
        witness_dir.path(),
        &["north.example/w", "south.example/w", "mediator.example/w"],
        &log_vkey,
    )
    .await
    .expect("the witnesses did not start");
    let event = witness_policy(&witnesses, 2, "signatories");
    let policy_file = mission.path("policy.txt");
    std::fs::write(
        &policy_file,
        WitnessPolicy::from_event(&event, true).unwrap().to_text(),
    )
    .unwrap();
    let signed = mission.node.scenario.govern(set_witness_policy(event));
    mission.node.client.clone().submit(signed).await.unwrap();

    let seq = mission.submit(1).await[0];
    let path = receipt_file(&mission.receipts(), seq);
    let genesis = mission.path("genesis.json");
    let dir = mission.work.path();
    // The receipt came back at once, operator-signed only: under the policy
    // it is not (yet) witnessed evidence.
    let output = run(
        dir,
        &[
            &"verify",
            &"--receipt",
            &path,
            &"--genesis",
            &genesis,
            &"--witness-policy",
            &policy_file,
        ],
    )
    .await;
    assert_eq!(code(&output), Some(1), "{}", output.stderr);
    assert!(
        output
            .last_stderr_line()
            .contains("the checkpoint is not witnessed: quorum signatories not met"),
        "{}",
        output.stderr
    );

    // The server states its policy, so refresh asks for a witnessed checkpoint.
    let output = run(
        dir,
        &[
            &"receipt",
            &"refresh",
            &path,
            &"--server",
            &mission.node.node.url(),
            &"--genesis",
            &genesis,
            &"--timeout",
            &"60",
        ],
    )
    .await;
    assert_eq!(code(&output), Some(0), "{}", output.stderr);
    assert!(
        output.stdout.contains("(consistent), witnessed by "),
        "{}",
        output.stdout
    );
    let output = run(
        dir,
        &[
            &"verify",
            &"--receipt",
            &path,
            &"--genesis",
            &genesis,
            &"--witness-policy",
            &policy_file,
            &"--json",
        ],
    )
    .await;
    assert_eq!(code(&output), Some(0), "{}", output.stderr);
    let report: serde_json::Value = serde_json::from_str(output.stdout.trim()).unwrap();
    assert!(
        report["cosigners"].as_array().unwrap().len() >= 2,
        "{report}"
    );

    // `submit --wait-witnessed` writes witnessed receipts straight away.
    let seqs = mission
        .submit_with(2, &["--wait-witnessed", "--wait-timeout", "60"])
        .await;
    for seq in seqs {
        let path = receipt_file(&mission.receipts(), seq);
        let output = run(
            dir,
            &[
                &"verify",
                &"--receipt",
                &path,
                &"--genesis",
                &genesis,
                &"--witness-policy",
                &policy_file,
            ],
        )
        .await;
        assert_eq!(code(&output), Some(0), "{}", output.stderr);
        assert!(output.stdout.contains("witnessed by "), "{}", output.stdout);
    }
    drop(witnesses);
    mission.node.shutdown().await;
}
