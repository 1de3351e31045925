//! A split view is caught (issue 13): an operator who shows two clients two
//! different logs gets the witnesses' cosignatures on one of them only, and
//! `verify` refuses the other, naming what it was shown and who refused it.
//!
//! Everything is a real process on loopback: three `witness serve`s (each
//! its own key and data directory, witnessing the ledger's origin by its
//! vkey) and `serve --dev` ledgers. One genesis, a 2-of-3 witness policy
//! naming the three witnesses at their real URLs, witnessed; then the
//! ledger is stopped and its data directory copied twice. View A (served
//! from one copy) and view B (from the other, the same operator key) get
//! different observations. The witnesses cosign A, the first they see, and
//! refuse B: B's ledger says so in its witnesses' statuses, the witnesses'
//! own HTTP answers say so (409 with their size, 422 for a proof from A's
//! tree to B's), and `verify --server` passes A and fails B, with the log's
//! policy and with `--witness-policy FILE`.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ceasefire_core::checkpoint::NoteVerifier;
use ceasefire_core::cosignature::{open_cosigned, CosignerVerifier};
use ceasefire_core::merkle::Hash;
use ceasefire_core::witness_policy::WitnessPolicy;
use ceasefire_grpc::client::{self, ClientTls};
use ceasefire_grpc::proto::{
    ledger_client::LedgerClient, Checkpoint, GetCheckpointRequest, GetConsistencyProofRequest,
    ReasonCode,
};
use ceasefire_ledger::dev;
use ceasefire_testkit::harness::{command, copy_dir, run_bounded, Output, Serve};
use ceasefire_testkit::scenario::{bodies, Scenario, BOOTSTRAP_ENTRIES};
use ceasefire_testkit::witness::{start_log_witnesses, witness_policy, LogWitness};
use ceasefire_witness::{AddCheckpointError, WitnessClient};
use tonic::transport::Channel;

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// Generous bounds: a loaded machine is slow, never wrong.
const START_WAIT: Duration = Duration::from_secs(60);
const WITNESSING_WAIT: Duration = Duration::from_secs(60);
const COMMAND_WAIT: Duration = Duration::from_secs(120);

/// The witnesses, in the policy's order.
const WITNESS_NAMES: [&str; 3] = ["north.example/w", "south.example/w", "mediator.example/w"];
const GROUP: &str = "signatories";

/// Observations each view gets: A's, then B's (more, so that B's tree
/// passes A's size and B's own proof from A's size can be offered).
const A_OBSERVATIONS: u64 = 6;
const B_OBSERVATIONS: u64 = 9;

/// A client of `witness`'s add-checkpoint endpoint, as the ledger has.
fn witness_client(witness: &LogWitness) -> WitnessClient {
    WitnessClient::new(&witness.url())
        .expect("a witness URL")
        .with_timeout(Duration::from_secs(10))
}

/// `serve --dev` on `data` (whose dev keys exist), ready, with a client.
async fn serve(data: &Path, stderr: PathBuf) -> (Serve, LedgerClient<Channel>) {
    let mut serve = Serve::spawn(BINARY, data, &["--dev"], stderr).expect("cannot run serve");
    serve
        .wait_ready(START_WAIT)
        .await
        .expect("serve did not start");
    let channel = client::channel(&serve.url, &ClientTls::default())
        .await
        .expect("cannot connect to serve");
    (serve, client::ledger_client(channel))
}

async fn stop(mut serve: Serve) {
    let status: ExitStatus = serve
        .terminate(START_WAIT)
        .await
        .expect("serve did not stop");
    assert!(
        status.success(),
        "serve exited with {status}:\n{}",
        serve.stderr()
    );
}

/// Submits `count` observations tagged `view`, one at a time (each its own
/// batch, so each receipt's checkpoint is the tree right after it); returns
/// the receipts' checkpoints.
async fn observe(
    ledger: &mut LedgerClient<Channel>,
    scenario: &Scenario,
    view: &str,
    count: u64,
) -> Vec<Checkpoint> {
    let mut checkpoints = Vec::new();
    for number in 0..count {
        let event = scenario
            .observation()
            .narrative(&format!("{view} report {number}"))
            .signed();
        let receipt = ledger
            .submit(event)
            .await
            .unwrap_or_else(|status| panic!("{view}: an observation was refused: {status}"))
            .into_inner();
        let checkpoint = receipt.checkpoint.expect("a receipt's checkpoint");
        assert_eq!(
            checkpoint.tree_size,
            receipt.seq + 1,
            "not one entry per batch"
        );
        checkpoints.push(checkpoint);
    }
    checkpoints
}

async fn latest(ledger: &mut LedgerClient<Channel>) -> Checkpoint {
    ledger
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .expect("GetCheckpoint failed")
        .into_inner()
}

/// The ledger's witnessed checkpoint covering `size` entries, asked until
/// it comes (each ask waits a few seconds on the server).
async fn witnessed(ledger: &mut LedgerClient<Channel>, size: u64, serve: &Serve) -> Checkpoint {
    let deadline = Instant::now() + WITNESSING_WAIT;
    loop {
        let mut request = tonic::Request::new(GetCheckpointRequest {
            witnessed: true,
            min_tree_size: size,
        });
        request.set_timeout(Duration::from_secs(3));
        match ledger.get_checkpoint(request).await {
            Ok(answer) => return answer.into_inner(),
            Err(status) if Instant::now() < deadline => {
                let reason = ceasefire_grpc::errors::reason(&status);
                assert_eq!(
                    reason,
                    ReasonCode::NotYetWitnessed,
                    "GetCheckpoint{{witnessed}}: {status}"
                );
            }
            Err(status) => panic!(
                "no witnessed checkpoint of size {size} within {WITNESSING_WAIT:?}: {status}\n{}",
                serve.stderr()
            ),
        }
    }
}

/// Polls the ledger's latest checkpoint until `done` holds of it.
async fn wait_for_statuses(
    ledger: &mut LedgerClient<Channel>,
    serve: &Serve,
    what: &str,
    done: impl Fn(&Checkpoint) -> bool,
) -> Checkpoint {
    let deadline = Instant::now() + WITNESSING_WAIT;
    loop {
        let checkpoint = latest(ledger).await;
        if done(&checkpoint) {
            return checkpoint;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not within {WITNESSING_WAIT:?}: {:?}\n{}",
            checkpoint.witnesses,
            serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn root(checkpoint: &Checkpoint) -> Hash {
    checkpoint
        .root_hash
        .as_slice()
        .try_into()
        .expect("32 bytes")
}

/// `verify --server URL [EXTRA]` to its end.
fn verify(url: &str, extra: &[&dyn AsRef<std::ffi::OsStr>], scratch: &Path) -> Output {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"verify", &"--server", &url];
    args.extend_from_slice(extra);
    let mut command = command(BINARY, &args);
    command.env("RUST_LOG", "warn");
    run_bounded(command, scratch, COMMAND_WAIT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_view_is_cosigned_on_one_side_only_and_verify_refuses_the_other() {
    let root_dir = tempfile::tempdir().unwrap();
    let root_dir = root_dir.path();
    let genesis_data = root_dir.join("ledger");
    let keys = dev::ensure_dev_keys(&genesis_data).expect("cannot create the dev keys");
    let scenario = dev::scenario(&keys);
    let operator: NoteVerifier = scenario.note_verifier();

    let witnesses = start_log_witnesses(
        Path::new(BINARY),
        root_dir,
        &WITNESS_NAMES,
        &operator.encoded_key(),
    )
    .await
    .expect("cannot start the witnesses");
    let verifiers: Vec<CosignerVerifier> = witnesses.iter().map(|w| w.verifier.clone()).collect();
    let policy = witness_policy(&witnesses, 2, GROUP);
    let policy_file = root_dir.join("policy.txt");
    std::fs::write(
        &policy_file,
        WitnessPolicy::from_event(&policy, true)
            .expect("a valid policy")
            .to_text(),
    )
    .unwrap();

    // --- One genesis, its policy witnessed; then the ledger stops.
    let (ledger, mut client) = serve(&genesis_data, root_dir.join("genesis.stderr")).await;
    let receipt = client
        .submit(scenario.govern(bodies::set_witness_policy(policy)))
        .await
        .expect("the witness policy was refused")
        .into_inner();
    assert_eq!(receipt.seq, BOOTSTRAP_ENTRIES);
    let shared_size = BOOTSTRAP_ENTRIES + 1;
    let shared = witnessed(&mut client, shared_size, &ledger).await;
    assert_eq!(shared.tree_size, shared_size);
    drop(client);
    stop(ledger).await;
    let view_a = root_dir.join("view-a");
    let view_b = root_dir.join("view-b");
    copy_dir(&genesis_data, &view_a);
    copy_dir(&genesis_data, &view_b);

    // --- View A: seen first, cosigned by all three.
    let (serve_a, mut client_a) = serve(&view_a, root_dir.join("view-a.stderr")).await;
    observe(&mut client_a, &scenario, "view A", A_OBSERVATIONS).await;
    let a_size = shared_size + A_OBSERVATIONS;
    let a_witnessed = witnessed(&mut client_a, a_size, &serve_a).await;
    assert_eq!(a_witnessed.tree_size, a_size);
    let (_, cosigned) = open_cosigned(&a_witnessed.note, &operator, &verifiers)
        .expect("A's witnessed note does not verify");
    assert!(cosigned.len() >= 2, "{}", a_witnessed.note);
    // Every witness, not only the quorum, ends up holding A's tree.
    wait_for_statuses(
        &mut client_a,
        &serve_a,
        "all three witnesses at A's size",
        |c| {
            c.witnesses.len() == 3
                && c.witnesses
                    .iter()
                    .all(|w| w.cosigned_size == a_size && w.last_error.is_empty())
        },
    )
    .await;
    let a_head = latest(&mut client_a).await;
    assert_eq!(a_head.tree_size, a_size);

    // --- View B: the same operator, other observations.
    let (serve_b, mut client_b) = serve(&view_b, root_dir.join("view-b.stderr")).await;
    let b_checkpoints = observe(&mut client_b, &scenario, "view B", B_OBSERVATIONS).await;
    let b_size = shared_size + B_OBSERVATIONS;
    let b_at_a_size = b_checkpoints
        .iter()
        .find(|c| c.tree_size == a_size)
        .expect("B's checkpoint at A's size")
        .clone();
    assert_ne!(
        root(&b_at_a_size),
        root(&a_head),
        "the views did not diverge"
    );
    let b_head = latest(&mut client_b).await;
    assert_eq!(b_head.tree_size, b_size);

    // B's ledger asks the witnesses and is refused by every one: its
    // statuses say so, and nothing of B past the shared prefix is witnessed.
    // (Its first posts may be of trees smaller than A's, which its ledger
    // sees are behind the witness; the newest tree gets the witness's own
    // 409 or 422.)
    wait_for_statuses(&mut client_b, &serve_b, "every witness refusing B", |c| {
        c.witnesses.len() == 3
            && c.witnesses.iter().all(|w| {
                w.cosigned_size == 0
                    && (w.last_error.contains("409 Conflict") || w.last_error.contains("422"))
            })
    })
    .await;
    let mut request = tonic::Request::new(GetCheckpointRequest {
        witnessed: true,
        min_tree_size: b_size,
    });
    request.set_timeout(Duration::from_secs(3));
    match client_b.get_checkpoint(request).await {
        Ok(answer) => panic!("B was witnessed: {}", answer.into_inner().note),
        Err(status) => {
            assert_eq!(
                ceasefire_grpc::errors::reason(&status),
                ReasonCode::NotYetWitnessed,
                "{status}"
            );
            assert!(
                status.message().contains(&format!(
                    "the latest witnessed checkpoint covers {shared_size} entries, not {b_size}"
                )),
                "{status}"
            );
        }
    }
    let b_witnessed = witnessed(&mut client_b, 0, &serve_b).await;
    assert_eq!(
        b_witnessed.note, shared.note,
        "B's latest witnessed checkpoint is the prefix both views share"
    );

    // --- The witnesses' own answers to B's checkpoints (C2SP tlog-witness).
    let b_proof: Vec<Hash> = client_b
        .get_consistency_proof(GetConsistencyProofRequest {
            old_size: a_size,
            new_size: b_size,
        })
        .await
        .expect("GetConsistencyProof on B")
        .into_inner()
        .hashes
        .iter()
        .map(|hash| hash.as_slice().try_into().expect("32 bytes"))
        .collect();
    for witness in &witnesses {
        let client = witness_client(witness);
        let name = witness.name();
        // The same size with another root: 409 with the witness's size.
        match client.add_checkpoint(a_size, &[], &b_at_a_size.note).await {
            Err(AddCheckpointError::Conflict { witness_size }) => {
                assert_eq!(witness_size, a_size, "{name}")
            }
            other => panic!("{name}: B at A's size: expected 409, got {other:?}"),
        }
        // An old size that is not the witness's: 409 with its size.
        match client.add_checkpoint(shared_size, &[], &b_head.note).await {
            Err(AddCheckpointError::Conflict { witness_size }) => {
                assert_eq!(witness_size, a_size, "{name}")
            }
            other => panic!("{name}: B from the shared size: expected 409, got {other:?}"),
        }
        // From the witness's size, with B's proof: it does not lead from
        // the root the witness holds (A's) to B's, 422.
        match client.add_checkpoint(a_size, &b_proof, &b_head.note).await {
            Err(AddCheckpointError::Status { status, body }) => {
                assert_eq!(status, 422, "{name}: {body}")
            }
            other => panic!("{name}: B's proof from A's size: expected 422, got {other:?}"),
        }
        // A is still what it holds: A's head again is cosigned.
        let lines = client
            .add_checkpoint(a_size, &[], &a_head.note)
            .await
            .unwrap_or_else(|error| panic!("{name}: A's head again: {error}"));
        let (_, by) = open_cosigned(
            &lines.add_to(&a_head.note),
            &operator,
            std::slice::from_ref(&witness.verifier),
        )
        .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(by.len(), 1, "{name}");
    }

    // --- verify: A passes naming its cosigners; B fails naming what it was
    // shown and what each witness answered its ledger.
    let scratch = root_dir.join("verify");
    std::fs::create_dir_all(&scratch).unwrap();
    let policy_flag: [&dyn AsRef<std::ffi::OsStr>; 2] = [&"--witness-policy", &policy_file];
    for (extra, from) in [
        (&[][..], "the log (entry 4)"),
        (&policy_flag[..], "the verifier"),
    ] {
        let output = verify(&serve_a.url, extra, &scratch);
        assert!(
            output.status.success(),
            "verify A (policy of {from}): {}{}",
            output.stdout,
            output.stderr
        );
        let witnessed_line = output
            .stdout
            .lines()
            .find(|line| line.trim_start().starts_with("witnessed by "))
            .unwrap_or_else(|| panic!("no cosigners named: {}", output.stdout));
        let named = WITNESS_NAMES
            .iter()
            .filter(|name| {
                witnessed_line
                    .split(" (")
                    .next()
                    .is_some_and(|by| by.contains(*name))
            })
            .count();
        assert!(named >= 2, "{witnessed_line}");
        assert!(
            witnessed_line.contains("2 of 3 needed: quorum signatories"),
            "{witnessed_line}"
        );
        assert!(
            output
                .stdout
                .contains(&format!("witness policy from {from}")),
            "{}",
            output.stdout
        );
        assert!(
            output
                .stdout
                .contains(&format!("  entries        {a_size} (")),
            "{}",
            output.stdout
        );

        let output = verify(&serve_b.url, extra, &scratch);
        assert_eq!(
            output.status.code(),
            Some(1),
            "verify B (policy of {from}): {}{}",
            output.stdout,
            output.stderr
        );
        let stderr = &output.stderr;
        let shown = format!(
            "verification FAILED: the checkpoint at tree size {b_size} (root {}) is not witnessed",
            BASE64.encode(root(&b_head))
        );
        assert!(stderr.contains(&shown), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "the witness policy of {from} demands quorum {GROUP}"
            )),
            "{stderr}"
        );
        assert!(stderr.contains("cosigned by nobody"), "{stderr}");
        assert!(
            stderr.contains(&b_head.note),
            "the note it was shown: {stderr}"
        );
        for name in WITNESS_NAMES {
            let account = format!(
                "{name} (the server says: has cosigned no checkpoint of this log; its last request failed: "
            );
            assert!(stderr.contains(&account), "{name}: {stderr}");
        }
    }

    drop((client_a, client_b));
    stop(serve_a).await;
    stop(serve_b).await;
    let sizes_after: Vec<u64> = {
        // The witnesses are untouched by B: A's head at A's size is still
        // their latest (another 409 would name it).
        let mut sizes = Vec::new();
        for witness in &witnesses {
            match witness_client(witness)
                .add_checkpoint(0, &[], &b_at_a_size.note)
                .await
            {
                Err(AddCheckpointError::Conflict { witness_size }) => sizes.push(witness_size),
                other => panic!("{}: expected 409, got {other:?}", witness.name()),
            }
        }
        sizes
    };
    assert_eq!(sizes_after, [a_size; 3]);
}
