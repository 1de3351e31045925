//! The auditor demands the witnesses' quorum (C2SP tlog-cosignature).
//!
//! Logs are made by a real node over a real sled directory, with the dev
//! scenario's signatories setting a 2-of-3 witness policy through
//! governance (or no policy).
//!
//! Where a test needs a particular witnessed note (one cosignature, a
//! forged one, a quorum on a checkpoint short of the head), the node is
//! stopped and the note is planted with `Store::record_witnessed`: real
//! cosignatures (`Cosigner::cosign`, real Ed25519 keys) over the node's own
//! checkpoint notes, as the collector would record them. Audits run from
//! the data directory, a tiles export, and through the `verify` binary.
//!
//! Against a server, the witnessing is the node's own: a real node posts
//! its checkpoints to real witnesses (the witness service, in-process, on
//! loopback ports the policy names) and answers `GetCheckpoint{witnessed}`
//! with what they cosigned.
//!
//! A quorum passes and is reported; fewer cosignatures fail naming who is
//! missing (and what the server says of them); a forged cosignature fails the
//! checkpoint; a policy file is demanded on a log without a policy, and a bad
//! one is refused before any work; a pin never takes an unwitnessed
//! checkpoint; a server's older witnessed checkpoint does not cover the log
//! it now shows.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ceasefire_audit::sources::{ServerSource, TilesSource};
use ceasefire_audit::{audit, AuditError, AuditFailure, AuditOptions, AuditReport};
use ceasefire_core::checkpoint::parse_unverified;
use ceasefire_core::cosignature::{add_signature_lines, Cosigner};
use ceasefire_core::witness_policy::WitnessPolicy;
use ceasefire_grpc::client::ClientTls;
use ceasefire_grpc::proto::{Checkpoint, GetCheckpointRequest, ReasonCode, SetWitnessPolicy};
use ceasefire_node::storage::Store;
use ceasefire_node::DataDirSource;
use ceasefire_testkit::fixture::TestNode;
use ceasefire_testkit::harness::{command, free_port};
use ceasefire_testkit::scenario::witnesses::{
    checkpoint_text, cosigned_note, k_of_n_policy, seeded_witness, three_witnesses,
};
use ceasefire_testkit::scenario::{bodies, BOOTSTRAP_ENTRIES};
use ceasefire_witness::config::{trusted_logs, LogSpec};
use ceasefire_witness::{RunningWitness, WitnessConfig};
use tempfile::TempDir;
use tonic::Request;

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");

/// The seq of the policy event: the first entry after the dev bootstrap.
const POLICY_SEQ: u64 = BOOTSTRAP_ENTRIES;

/// The witnesses of `three_witnesses`, in the policy's order.
const WITNESS_NAMES: [&str; 3] = ["north.example/w", "south.example/w", "mediator.example/w"];

/// The human line of a 2-of-3 quorum met by north and south.
const NORTH_AND_SOUTH: &str = "witnessed by north.example/w, south.example/w (2 of 3 needed: quorum signatories); missing: mediator.example/w";

/// A stopped node's log and the checkpoints it signed on the way.
struct Log {
    /// Its data directory, the store closed.
    dir: TempDir,
    /// north, south, mediator: the policy's witnesses when it has one.
    witnesses: [Cosigner; 3],
    /// A checkpoint note the node signed after the policy, short of the head.
    early_note: String,
    /// The note of the head.
    head_note: String,
}

impl Log {
    /// Entries in the tree of `note`.
    fn size(note: &str) -> u64 {
        parse_unverified(note).expect("a checkpoint note").tree_size
    }

    /// Records `note` as the store's witnessed checkpoint.
    fn plant(&self, note: &str) {
        let store = Store::open(self.dir.path()).expect("cannot open the stopped node's store");
        store
            .record_witnessed(note)
            .expect("cannot record a witnessed note");
    }

    /// `note` cosigned by the witnesses at `indexes` (0 north, 1 south, 2 mediator).
    fn cosigned(&self, note: &str, indexes: &[usize]) -> String {
        let by: Vec<&Cosigner> = indexes.iter().map(|&i| &self.witnesses[i]).collect();
        cosigned_note(note, &by, now())
    }

    /// The policy (of the log, when it has one) as policy text.
    fn policy_text(&self) -> String {
        WitnessPolicy::from_event(&k_of_n_policy(&self.witnesses, 2, "signatories"), true)
            .expect("a valid policy")
            .to_text()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is before 1970")
        .as_secs()
}

/// The dev ledger, with the 2-of-3 policy of `three_witnesses` when
/// `with_policy` (entry [`POLICY_SEQ`]), then five observations; the early
/// checkpoint is the receipt's of the second.
async fn build_log(with_policy: bool) -> Log {
    let node = TestNode::start().await;
    let mut client = node.client.clone();
    let witnesses = three_witnesses();
    if with_policy {
        let policy = k_of_n_policy(&witnesses, 2, "signatories");
        let receipt = client
            .submit(node.scenario.govern(bodies::set_witness_policy(policy)))
            .await
            .expect("the witness policy was refused")
            .into_inner();
        assert_eq!(receipt.seq, POLICY_SEQ);
    }
    let mut early_note = String::new();
    for number in 0..5 {
        let receipt = client
            .submit(node.signed_observation(&format!("report {number}")))
            .await
            .expect("an observation was refused")
            .into_inner();
        if number == 1 {
            early_note = receipt.checkpoint.expect("a receipt checkpoint").note;
        }
    }
    let head_note = client
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .expect("GetCheckpoint failed")
        .into_inner()
        .note;
    let (dir, _) = node.stop().await;
    assert!(Log::size(&early_note) < Log::size(&head_note));
    Log {
        dir,
        witnesses,
        early_note,
        head_note,
    }
}

// ---------------------------------------------------------------------------
// Running the auditor and the binary.

fn audit_data_dir(dir: &Path, options: AuditOptions) -> Result<AuditReport, AuditError> {
    let mut source = DataDirSource::open(dir).expect("cannot open the data directory");
    audit(&mut source, options)
}

fn audit_tiles(dir: &Path) -> Result<AuditReport, AuditError> {
    let mut source = TilesSource::open(dir).expect("cannot open the tiles");
    audit(&mut source, AuditOptions::default())
}

fn with_pin(pin: &Path) -> AuditOptions {
    AuditOptions {
        pin: Some(pin.to_path_buf()),
        ..AuditOptions::default()
    }
}

/// The failure of an audit that must fail on the log.
#[track_caller]
fn failure(result: Result<AuditReport, AuditError>) -> AuditFailure {
    match result {
        Err(AuditError::Failed(failure)) => failure,
        Err(AuditError::CouldNotRun(error)) => panic!("the audit could not run: {error:#}"),
        Ok(report) => panic!("the audit passed: {report:?}"),
    }
}

/// What a `NotWitnessed` failure says, checked for its size and the
/// witnesses it names; returns its message.
#[track_caller]
fn expect_not_witnessed(
    result: Result<AuditReport, AuditError>,
    size: u64,
    cosigned: &[&str],
    missing: &[&str],
) -> String {
    let failure = failure(result);
    let message = failure.to_string();
    match failure {
        AuditFailure::NotWitnessed(not_witnessed) => {
            assert_eq!(not_witnessed.size, size, "{message}");
            assert_eq!(not_witnessed.cosigned, cosigned, "{message}");
            assert_eq!(not_witnessed.missing, missing, "{message}");
            assert!(
                message.contains(&not_witnessed.note),
                "the message lacks the note"
            );
        }
        other => panic!("expected NotWitnessed, got: {other}"),
    }
    assert!(
        message.contains(&format!("tree size {size} (root ")),
        "{message}"
    );
    assert!(
        message.contains(
            "quorum signatories; signatories = 2 of (north.example/w, south.example/w, mediator.example/w)"
        ),
        "the message does not state the quorum: {message}"
    );
    message
}

/// The binary with `args`, run to its end.
fn cli<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    command(BINARY, &[])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("cannot run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `verify ARGS` must exit with `code`; returns stdout.
#[track_caller]
fn verify_exits(args: &[&OsStr], code: i32) -> String {
    let output = cli(std::iter::once(OsStr::new("verify")).chain(args.iter().copied()));
    assert_eq!(
        output.status.code(),
        Some(code),
        "verify {args:?}:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// `verify ARGS --json`, exit 0: the report.
#[track_caller]
fn verify_json(args: &[&OsStr]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push(OsStr::new("--json"));
    let stdout = verify_exits(&args, 0);
    serde_json::from_str(&stdout).expect("verify --json printed no JSON")
}

/// `verify ARGS --json` must exit 1 with a failure holding every needle;
/// returns the JSON it printed.
#[track_caller]
fn verify_fails(args: &[&OsStr], needles: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push(OsStr::new("--json"));
    let stdout = verify_exits(&args, 1);
    let report: serde_json::Value =
        serde_json::from_str(&stdout).expect("verify --json printed no JSON");
    let failure = report["failure"].as_str().expect("no failure text");
    for needle in needles {
        assert!(
            failure.contains(needle),
            "{failure:?} does not say {needle:?}"
        );
    }
    report
}

/// `export --tiles DIR --data-dir DATA` through the binary; returns stdout.
#[track_caller]
fn cli_export(data: &Path, tiles: &Path) -> String {
    let output = cli([
        OsStr::new("export"),
        OsStr::new("--tiles"),
        tiles.as_os_str(),
        OsStr::new("--data-dir"),
        data.as_os_str(),
    ]);
    assert!(
        output.status.success(),
        "export failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

// ---------------------------------------------------------------------------
// The quorum, met and not.

/// Two valid cosignatures of a 2-of-3 policy, on a checkpoint short of the
/// head: the data directory, its tiles export and `verify` accept that
/// checkpoint and name who cosigned it and who did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_of_cosignatures_is_accepted_and_reported() {
    let log = build_log(true).await;
    let witnessed = log.cosigned(&log.early_note, &[0, 1]);
    log.plant(&witnessed);
    let size = Log::size(&witnessed);

    let report = audit_data_dir(log.dir.path(), AuditOptions::default())
        .expect("a checkpoint the quorum cosigned fails");
    assert_eq!(report.entries, size, "the audit is of the witnessed tree");
    assert_eq!(report.checkpoint, witnessed);
    let by: Vec<&str> = report
        .witnessed_by
        .iter()
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(by, ["north.example/w", "south.example/w"]);
    assert!(report.witnessed_by.iter().all(|w| w.timestamp > 0));
    assert_eq!(report.witnesses_missing, ["mediator.example/w"]);
    assert_eq!(report.witness_policy, Some(log.policy_text()));
    assert_eq!(
        report.witness_policy_from.as_deref(),
        Some(format!("the log (entry {POLICY_SEQ})").as_str())
    );
    assert_eq!(
        report.witness_quorum.as_deref(),
        Some("2 of 3 needed: quorum signatories")
    );
    // The stored projection is as of the head, beyond the witnessed tree.
    assert!(!report.projection_checked);

    // The export writes the witnessed checkpoint and its tree, which
    // verifies with the same quorum.
    let tiles = tempfile::tempdir().unwrap();
    let exported = cli_export(log.dir.path(), tiles.path());
    assert!(
        exported.contains(&format!(
            "exported tree size {size} (the latest witnessed checkpoint)"
        )),
        "{exported}"
    );
    assert_eq!(
        std::fs::read_to_string(tiles.path().join("checkpoint")).unwrap(),
        witnessed
    );
    let report = audit_tiles(tiles.path()).expect("the witnessed export fails");
    assert_eq!(report.entries, size);
    assert_eq!(report.checkpoint, witnessed);
    assert_eq!(report.witnesses_missing, ["mediator.example/w"]);

    for (flag, source) in [("--data-dir", log.dir.path()), ("--tiles", tiles.path())] {
        let stdout = verify_exits(&[OsStr::new(flag), source.as_os_str()], 0);
        assert!(stdout.contains(NORTH_AND_SOUTH), "{stdout}");
        assert!(
            stdout.contains(&format!("witness policy from the log (entry {POLICY_SEQ})")),
            "{stdout}"
        );
        let json = verify_json(&[OsStr::new(flag), source.as_os_str()]);
        assert_eq!(json["entries"], size, "{json}");
        assert_eq!(json["witnessed_by"][0]["name"], "north.example/w", "{json}");
        assert_eq!(json["witnessed_by"][1]["name"], "south.example/w", "{json}");
        assert!(json["witnessed_by"][1]["timestamp"].as_u64() > Some(0));
        assert_eq!(
            json["witnesses_missing"],
            serde_json::json!(["mediator.example/w"])
        );
        assert_eq!(json["witness_policy"], log.policy_text().as_str(), "{json}");
    }
}

/// One cosignature of a 2-of-3 policy, or none at all: the checkpoint is
/// refused, naming it, the quorum, who cosigned and who is missing; `verify`
/// exits 1 from the data directory and from its export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_cosignatures_than_the_quorum_fail_naming_the_missing_witnesses() {
    let log = build_log(true).await;
    let size = Log::size(&log.head_note);

    // Nothing witnessed yet: the operator's checkpoint alone is not enough.
    let message = expect_not_witnessed(
        audit_data_dir(log.dir.path(), AuditOptions::default()),
        size,
        &[],
        &["north.example/w", "south.example/w", "mediator.example/w"],
    );
    assert!(message.contains("cosigned by nobody"), "{message}");

    let one = log.cosigned(&log.head_note, &[0]);
    log.plant(&one);
    let message = expect_not_witnessed(
        audit_data_dir(log.dir.path(), AuditOptions::default()),
        size,
        &["north.example/w"],
        &["south.example/w", "mediator.example/w"],
    );
    assert!(
        message.contains(&format!("policy of the log (entry {POLICY_SEQ})")),
        "{message}"
    );
    let needles = [
        "is not witnessed",
        "cosigned by north.example/w; missing: south.example/w, mediator.example/w",
    ];
    let json = verify_fails(
        &[OsStr::new("--data-dir"), log.dir.path().as_os_str()],
        &needles,
    );
    assert_eq!(
        json["witnesses_cosigned"],
        serde_json::json!(["north.example/w"])
    );
    assert_eq!(
        json["witnesses_missing"],
        serde_json::json!(["south.example/w", "mediator.example/w"])
    );

    let tiles = tempfile::tempdir().unwrap();
    cli_export(log.dir.path(), tiles.path());
    expect_not_witnessed(
        audit_tiles(tiles.path()),
        size,
        &["north.example/w"],
        &["south.example/w", "mediator.example/w"],
    );
    verify_fails(&[OsStr::new("--tiles"), tiles.path().as_os_str()], &needles);
}

/// A cosignature line under a policy witness's name and key ID that does
/// not verify spoils the checkpoint (it is damage or a forgery, never "not
/// counted"); one made with another key under that name carries another key
/// ID and counts for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cosignature_fails_the_checkpoint() {
    let log = build_log(true).await;
    let two = log.cosigned(&log.head_note, &[0, 1]);
    // South's line with one byte of its signature flipped.
    let forged: String = two
        .split_inclusive('\n')
        .map(|line| match line.strip_prefix("— south.example/w ") {
            Some(blob) => {
                let mut bytes = BASE64.decode(blob.trim_end()).unwrap();
                bytes[4 + 8 + 10] ^= 1;
                format!("— south.example/w {}\n", BASE64.encode(bytes))
            }
            None => line.to_string(),
        })
        .collect();
    assert_ne!(forged, two);
    log.plant(&forged);
    match failure(audit_data_dir(log.dir.path(), AuditOptions::default())) {
        AuditFailure::Checkpoint(message) => {
            assert!(message.contains("south.example/w"), "{message}");
            assert!(message.contains("does not verify"), "{message}");
        }
        other => panic!("expected a checkpoint failure, got: {other}"),
    }
    verify_fails(
        &[OsStr::new("--data-dir"), log.dir.path().as_os_str()],
        &["checkpoint: ", "south.example/w"],
    );

    // An impostor's key under south's name: not south's key ID, ignored.
    let impostor = seeded_witness("south.example/w", 0x99);
    let line = impostor.cosign(checkpoint_text(&log.head_note), now());
    let north = log.cosigned(&log.head_note, &[0]);
    log.plant(&add_signature_lines(&north, &line));
    expect_not_witnessed(
        audit_data_dir(log.dir.path(), AuditOptions::default()),
        Log::size(&log.head_note),
        &["north.example/w"],
        &["south.example/w", "mediator.example/w"],
    );
}

// ---------------------------------------------------------------------------
// The verifier's own policy.

/// A log without a policy verifies with "witnessed: none"; given a policy
/// file, `verify` demands its quorum of that log, and takes it in place of
/// the log's own policy where the log has one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_file_demands_its_quorum() {
    let log = build_log(false).await;
    let data = log.dir.path().as_os_str();
    let report = audit_data_dir(log.dir.path(), AuditOptions::default())
        .expect("a log without a policy fails");
    assert_eq!(report.witness_policy, None);
    assert!(report.witnessed_by.is_empty());
    let stdout = verify_exits(&[OsStr::new("--data-dir"), data], 0);
    assert!(
        stdout.contains("witnessed: none (the log has no witness policy)"),
        "{stdout}"
    );

    let files = tempfile::tempdir().unwrap();
    let policy_file = files.path().join("policy.txt");
    std::fs::write(&policy_file, log.policy_text()).unwrap();
    let policy = policy_file.as_os_str();
    let override_args = [
        OsStr::new("--data-dir"),
        data,
        OsStr::new("--witness-policy"),
        policy,
    ];
    verify_fails(
        &override_args,
        &[
            "is not witnessed",
            "the witness policy of the verifier demands quorum signatories",
            "cosigned by nobody",
        ],
    );

    log.plant(&log.cosigned(&log.head_note, &[1, 2]));
    let json = verify_json(&override_args);
    assert_eq!(json["witness_policy_from"], "the verifier", "{json}");
    assert_eq!(json["witnessed_by"][0]["name"], "south.example/w", "{json}");
    assert_eq!(
        json["witnessed_by"][1]["name"], "mediator.example/w",
        "{json}"
    );
    assert_eq!(
        json["witnesses_missing"],
        serde_json::json!(["north.example/w"])
    );
    // Without the file, the same log needs no witness.
    let json = verify_json(&[OsStr::new("--data-dir"), data]);
    assert_eq!(json["witness_policy"], serde_json::Value::Null, "{json}");

    // On a log with its own 2-of-3 policy, a file asking for north alone
    // replaces it: south and mediator's cosignatures no longer do.
    let log = build_log(true).await;
    log.plant(&log.cosigned(&log.head_note, &[1, 2]));
    let north_alone = files.path().join("north.txt");
    let north = log.witnesses[0].verifier();
    std::fs::write(
        &north_alone,
        format!(
            "witness {} {}\nquorum {}\n",
            north.name(),
            north.vkey(),
            north.name()
        ),
    )
    .unwrap();
    let options = AuditOptions {
        witness_policy: Some(
            WitnessPolicy::parse_text(&std::fs::read_to_string(&north_alone).unwrap()).unwrap(),
        ),
        ..AuditOptions::default()
    };
    match failure(audit_data_dir(log.dir.path(), options)) {
        AuditFailure::NotWitnessed(not_witnessed) => {
            assert_eq!(not_witnessed.missing, ["north.example/w"])
        }
        other => panic!("expected NotWitnessed, got: {other}"),
    }
    verify_fails(
        &[
            OsStr::new("--data-dir"),
            log.dir.path().as_os_str(),
            OsStr::new("--witness-policy"),
            north_alone.as_os_str(),
        ],
        &["quorum north.example/w;", "missing: north.example/w"],
    );
}

/// A policy file that does not read or does not parse is one line and exit
/// 2, before any source is touched (the server named here does not exist).
#[test]
fn a_bad_policy_file_is_refused_before_the_audit_starts() {
    let files = tempfile::tempdir().unwrap();
    let bad = files.path().join("bad.txt");
    std::fs::write(
        &bad,
        "# witnesses\nwitness north.example/w not-a-vkey\nquorum north.example/w\n",
    )
    .unwrap();
    let nowhere = format!("http://127.0.0.1:{}", free_port().unwrap());
    let missing = files.path().join("missing.txt");
    for (file, needle) in [
        (&bad, "policy line 2: witness north.example/w:"),
        (&missing, "cannot read it"),
    ] {
        let output = cli([
            OsStr::new("verify"),
            OsStr::new("--server"),
            OsStr::new(&nowhere),
            OsStr::new("--witness-policy"),
            file.as_os_str(),
        ]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "not one line: {stderr}");
        assert!(
            lines[0].contains(&format!("--witness-policy {}", file.display()))
                && lines[0].contains(needle),
            "{stderr}"
        );
    }
}

// ---------------------------------------------------------------------------
// Pins.

/// The pin holds the witnessed checkpoint an audit accepted; a later audit
/// that finds only an unwitnessed checkpoint fails and leaves the pin as it
/// was; a witnessed successor replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_is_never_replaced_by_an_unwitnessed_checkpoint() {
    let log = build_log(true).await;
    let pins = tempfile::tempdir().unwrap();
    let pin = pins.path().join("pin");

    // No witnessed checkpoint yet: nothing is pinned.
    failure(audit_data_dir(log.dir.path(), with_pin(&pin)));
    assert!(!pin.exists(), "an unwitnessed checkpoint was pinned");

    let early = log.cosigned(&log.early_note, &[0, 1]);
    log.plant(&early);
    let report = audit_data_dir(log.dir.path(), with_pin(&pin)).expect("the witnessed log fails");
    assert_eq!(report.pin, "pinned");
    assert_eq!(std::fs::read_to_string(&pin).unwrap(), early);

    // The head with one cosignature: refused, the pin stays.
    log.plant(&log.cosigned(&log.head_note, &[2]));
    expect_not_witnessed(
        audit_data_dir(log.dir.path(), with_pin(&pin)),
        Log::size(&log.head_note),
        &["mediator.example/w"],
        &["north.example/w", "south.example/w"],
    );
    let output = cli([
        OsStr::new("verify"),
        OsStr::new("--data-dir"),
        log.dir.path().as_os_str(),
        OsStr::new("--pin"),
        pin.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(
        std::fs::read_to_string(&pin).unwrap(),
        early,
        "the pin moved"
    );

    // Witnessed by a quorum: consistent with the pin, which moves to it.
    let head = log.cosigned(&log.head_note, &[0, 2]);
    log.plant(&head);
    let report = audit_data_dir(log.dir.path(), with_pin(&pin)).expect("the witnessed head fails");
    assert_eq!(report.pin, "consistent");
    assert_eq!(std::fs::read_to_string(&pin).unwrap(), head);
}

// ---------------------------------------------------------------------------
// A server and its witnesses.

/// The witness service (`ceasefire_witness::start`, in-process: a real HTTP
/// server over its own durable store, under `dir`) signing as `cosigner`,
/// listening on `addr`, witnessing the log of `node`.
async fn start_witness(
    cosigner: &Cosigner,
    addr: SocketAddr,
    node: &TestNode,
    dir: &Path,
) -> RunningWitness {
    let dir = dir.join(cosigner.name().replace('/', "-"));
    let logs = trusted_logs(&[LogSpec::Vkey(node.scenario.note_verifier().encoded_key())])
        .expect("the node's vkey");
    ceasefire_witness::start(WitnessConfig::new(cosigner.clone(), addr, dir, logs))
        .await
        .unwrap_or_else(|error| panic!("witness {}: {error:#}", cosigner.name()))
}

/// `k_of_n_policy` (2 of 3, group signatories) with the witnesses at `addrs`.
fn policy_at(witnesses: &[Cosigner; 3], addrs: &[SocketAddr; 3]) -> SetWitnessPolicy {
    let mut policy = k_of_n_policy(witnesses, 2, "signatories");
    for (witness, addr) in policy.witnesses.iter_mut().zip(addrs) {
        witness.url = format!("http://{addr}");
    }
    policy
}

/// The node's witnessed checkpoint covering `size` entries, asked until it
/// comes (each ask waits a few seconds on the node).
async fn witnessed_checkpoint(node: &TestNode, size: u64) -> Checkpoint {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = node.client.clone();
    loop {
        let mut request = Request::new(GetCheckpointRequest {
            witnessed: true,
            min_tree_size: size,
        });
        request.set_timeout(Duration::from_secs(3));
        match client.get_checkpoint(request).await {
            Ok(answer) => return answer.into_inner(),
            Err(status) => {
                assert_eq!(
                    ceasefire_grpc::errors::reason(&status),
                    ReasonCode::NotYetWitnessed,
                    "{status}"
                );
                assert!(
                    Instant::now() < deadline,
                    "tree size {size} not witnessed within a minute: {status}"
                );
            }
        }
    }
}

/// Audits the server at `url`, pinned to `pin` if given, under the
/// verifier's `witness_policy` if given (else the log's).
async fn audit_server(
    url: &str,
    pin: Option<&Path>,
    witness_policy: Option<WitnessPolicy>,
) -> Result<AuditReport, AuditError> {
    let mut source = ServerSource::connect(url, &ClientTls::default())
        .await
        .expect("cannot connect to the node");
    let pin = pin.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || {
        audit(
            &mut source,
            AuditOptions {
                pin,
                witness_policy,
                ..AuditOptions::default()
            },
        )
    })
    .await
    .expect("the audit panicked")
}

/// The server source asks the node for a witnessed checkpoint covering its
/// log. None yet (the witnesses are not up): the latest checkpoint is
/// audited and refused, naming what the node says of each witness. Two
/// witnesses up: their quorum's note is audited, reported and pinned. One
/// of them down and the log grown: the older witnessed checkpoint is not
/// enough, the new head is refused and the pin stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_is_asked_for_a_witnessed_checkpoint_covering_its_log() {
    let witnesses = three_witnesses();
    let addrs: [SocketAddr; 3] =
        std::array::from_fn(|_| SocketAddr::from(([127, 0, 0, 1], free_port().unwrap())));
    let node = TestNode::start().await;
    let url = node.node.url();
    let mut client = node.client.clone();
    let receipt = client
        .submit(
            node.scenario
                .govern(bodies::set_witness_policy(policy_at(&witnesses, &addrs))),
        )
        .await
        .expect("the witness policy was refused")
        .into_inner();
    assert_eq!(receipt.seq, POLICY_SEQ);
    for number in 0..3 {
        client
            .submit(node.signed_observation(&format!("report {number}")))
            .await
            .expect("an observation was refused");
    }
    let size = node.checkpoint().await.tree_size;
    let pins = tempfile::tempdir().unwrap();
    let pin = pins.path().join("pin");

    // No witness listens yet.
    let message = expect_not_witnessed(
        audit_server(&url, Some(&pin), None).await,
        size,
        &[],
        &["north.example/w", "south.example/w", "mediator.example/w"],
    );
    for (name, addr) in WITNESS_NAMES.iter().zip(&addrs) {
        let said = format!(
            "{name} (the server says: has cosigned no checkpoint of this log; its last request failed: cannot reach the witness at http://{addr}/add-checkpoint"
        );
        assert!(message.contains(&said), "{said:?} not in: {message}");
    }
    assert!(!pin.exists(), "an unwitnessed checkpoint was pinned");

    // North and south come up and cosign the head.
    let witness_dirs = tempfile::tempdir().unwrap();
    let north = start_witness(&witnesses[0], addrs[0], &node, witness_dirs.path()).await;
    let south = start_witness(&witnesses[1], addrs[1], &node, witness_dirs.path()).await;
    let witnessed = witnessed_checkpoint(&node, size).await;
    assert_eq!(witnessed.tree_size, size);
    let report = audit_server(&url, Some(&pin), None)
        .await
        .expect("the witnessed checkpoint fails");
    assert_eq!(report.checkpoint, witnessed.note);
    let by: Vec<&str> = report
        .witnessed_by
        .iter()
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(by, ["north.example/w", "south.example/w"]);
    assert_eq!(report.witnesses_missing, ["mediator.example/w"]);
    assert_eq!(
        report.witness_policy_from.as_deref(),
        Some(format!("the log (entry {POLICY_SEQ})").as_str())
    );
    assert!(
        report.projection_checked,
        "the projection is as of its last entry"
    );
    assert!(report.proofs_checked > 0);
    assert_eq!(std::fs::read_to_string(&pin).unwrap(), witnessed.note);
    let stdout = verify_exits(&[OsStr::new("--server"), OsStr::new(&url)], 0);
    assert!(stdout.contains(NORTH_AND_SOUTH), "{stdout}");

    // South goes down; the log grows; north alone cosigns the new head.
    south.shutdown().await.expect("south did not stop");
    for number in 3..5 {
        client
            .submit(node.signed_observation(&format!("report {number}")))
            .await
            .expect("an observation was refused");
    }
    let grown = node.checkpoint().await.tree_size;
    let message = expect_not_witnessed(
        audit_server(&url, Some(&pin), None).await,
        grown,
        &[],
        &["north.example/w", "south.example/w", "mediator.example/w"],
    );
    for said in [
        "north.example/w (the server says: cosigned up to tree size ".to_string(),
        format!(
            "south.example/w (the server says: cosigned up to tree size {size}; its last request failed: cannot reach the witness at http://{}/add-checkpoint",
            addrs[1]
        ),
        "mediator.example/w (the server says: has cosigned no checkpoint of this log; its last request failed: cannot reach".to_string(),
    ] {
        assert!(message.contains(&said), "{said:?} not in: {message}");
    }
    let latest = node
        .client
        .clone()
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        message.contains(&latest.note),
        "the message lacks the latest checkpoint"
    );
    assert_eq!(
        std::fs::read_to_string(&pin).unwrap(),
        witnessed.note,
        "the pin moved"
    );
    verify_fails(
        &[OsStr::new("--server"), OsStr::new(&url)],
        &[
            &format!("the checkpoint at tree size {grown} (root "),
            "is not witnessed",
        ],
    );

    // The verifier's own policy, naming a witness the node knows nothing of.
    let other = seeded_witness("other.example/w", 0x74).verifier();
    let policy = Some(
        WitnessPolicy::parse_text(&format!(
            "witness {} {}\nquorum {}\n",
            other.name(),
            other.vkey(),
            other.name()
        ))
        .unwrap(),
    );
    let message = failure(audit_server(&url, None, policy).await).to_string();
    assert!(
        message.contains("missing: other.example/w (the server says nothing of it)"),
        "{message}"
    );
    north.shutdown().await.expect("north did not stop");
    node.shutdown().await;
}

/// A node whose log has no witness policy says so (NO_WITNESS_POLICY); the
/// auditor then audits its latest checkpoint, which passes with no policy
/// and is refused under the verifier's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_a_policy_does_not_get_past_the_verifiers() {
    let node = TestNode::start().await;
    let url = node.node.url();
    let mut client = node.client.clone();
    client
        .submit(node.signed_observation("report"))
        .await
        .expect("an observation was refused");
    let mut request = Request::new(GetCheckpointRequest {
        witnessed: true,
        min_tree_size: 0,
    });
    request.set_timeout(Duration::from_secs(3));
    let status = client.get_checkpoint(request).await.unwrap_err();
    assert_eq!(
        ceasefire_grpc::errors::reason(&status),
        ReasonCode::NoWitnessPolicy,
        "{status}"
    );

    let report = audit_server(&url, None, None)
        .await
        .expect("a log without a policy fails");
    assert_eq!(report.witness_policy, None);
    let size = node.checkpoint().await.tree_size;
    assert_eq!(report.entries, size);

    let witnesses = three_witnesses();
    let policy = Some(
        WitnessPolicy::from_event(&k_of_n_policy(&witnesses, 2, "signatories"), true)
            .expect("a valid policy"),
    );
    let message = expect_not_witnessed(
        audit_server(&url, None, policy).await,
        size,
        &[],
        &["north.example/w", "south.example/w", "mediator.example/w"],
    );
    assert!(
        message.contains("the witness policy of the verifier demands quorum signatories"),
        "{message}"
    );
    node.shutdown().await;
}
