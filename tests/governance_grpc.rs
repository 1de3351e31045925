//! Governance and validation over real gRPC: a catalogue of bad events.
//!
//! Each test builds its own ledger through the real interface: a genesis
//! naming three signatories with a threshold of 2, signed by two of them and
//! written by `node::start`; then, over Submit, two monitors, two adjacent
//! zones and two commitments, each signed by two signatories. Every refusal
//! is checked for its exact gRPC status code, a distinctive part of its
//! message (copied from crates/core/src/rules.rs), and for changing nothing: the
//! checkpoint's size and root and the compliance projection's version are
//! the same after it. Each group of refusals sits beside accepted events it
//! contrasts with, and each test ends with a full audit of the log.

use ceasefire_audit::{audit, sources::ServerSource, AuditError, AuditFailure, AuditOptions};
use ceasefire_core::checkpoint::CheckpointBody;
use ceasefire_core::leaf::Leaf;
use ceasefire_core::merkle::verify_inclusion;
use ceasefire_core::signing::verify_all;
use ceasefire_grpc::client::sign;
use ceasefire_grpc::proto::{
    compliance_client::ComplianceClient, event::Body, AmendmentKind, Event,
    GetInclusionProofRequest, GetPairStatusRequest, LatLon, ListStatusesRequest, Observation,
    PairStatus, Party, Polygon, ProjectionVersion, Receipt, RegisterParty, Role, SignedEvent,
};
use ceasefire_node::node::{self, Node, NodeConfig};
use ceasefire_testkit::fixture::{
    checkpoint, connect, get_entries, leaf_hash, node_config, proof_hashes, TestNode,
};
use ceasefire_testkit::scenario::bodies::{self, add_key, party, register};
use ceasefire_testkit::scenario::{
    polygon, public_key, seconds_ago, seeded_key, square, Commitment, Scenario, Zone,
    DEV_AGREEMENT_ID,
};
use ed25519_dalek::SigningKey;
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::Code;

const AGREEMENT: &str = "accord-2026";
const ORIGIN: &str = "ledger.example.org/accord-2026";
const TITLE: &str = "Accord of 2026 (test)";
const SIGNATORY_A: &str = "signatory-a";
const SIGNATORY_B: &str = "signatory-b";
const SIGNATORY_C: &str = "signatory-c";
const MONITOR_A: &str = "monitor-a";
const MONITOR_B: &str = "monitor-b";
/// lat 48..49, lon 37..38.
const WEST: &str = "sector-west";
/// lat 48..49, lon 38..39: shares the edge lon = 38 with WEST.
const EAST: &str = "sector-east";
/// Binds WEST then EAST, in that order.
const CEASEFIRE: &str = "ceasefire";
/// Binds EAST only.
const WITHDRAWAL: &str = "withdrawal";

/// Entries `Ledger::start` writes: genesis, 2 monitors, 2 zones, 2 commitments.
const SETUP_ENTRIES: u64 = 7;

/// The agreement: three signatories (threshold 2: signatory-a authors the
/// governance, a and b sign it), two monitors, zones WEST and EAST,
/// commitments CEASEFIRE and WITHDRAWAL; the keys fixed by their seeds.
fn accord() -> Scenario {
    Scenario::new(AGREEMENT, ORIGIN)
        .with_title(TITLE)
        .with_operator(seeded_key(0x10))
        .with_signatory(SIGNATORY_A, seeded_key(0x21))
        .with_signatory(SIGNATORY_B, seeded_key(0x22))
        .with_signatory(SIGNATORY_C, seeded_key(0x23))
        .with_threshold(2)
        .with_monitor(MONITOR_A, seeded_key(0x31))
        .with_monitor(MONITOR_B, seeded_key(0x32))
        .with_zone(Zone::new(WEST, square(48.0, 37.0, 1.0)))
        .with_zone(Zone::new(EAST, square(48.0, 38.0, 1.0)))
        .with_commitment(Commitment::new(CEASEFIRE, &[WEST, EAST]))
        .with_commitment(Commitment::new(WITHDRAWAL, &[EAST]))
}

/// A genesis of this agreement naming `signatories`, by `author`.
fn genesis(author: &str, signatories: Vec<Party>, threshold: u32, operator: &SigningKey) -> Event {
    let body = bodies::genesis(
        ORIGIN,
        TITLE,
        signatories,
        threshold,
        &operator.verifying_key(),
    );
    accord().event(author, body)
}

// This file's reasons, and its zones and commitments by version.

fn revoke_key(party_id: &str, key: &SigningKey) -> Body {
    bodies::revoke_key(party_id, key, "key compromised")
}

fn define_zone(zone_id: &str, version: u32, boundary: Option<Polygon>) -> Body {
    Zone::new(zone_id, Polygon::default())
        .with(|zone| {
            zone.version = version;
            zone.boundary = boundary;
        })
        .body()
}

fn define_commitment(commitment_id: &str, version: u32, zone_ids: &[&str]) -> Body {
    Commitment::new(commitment_id, zone_ids)
        .with(|commitment| commitment.version = version)
        .body()
}

fn amendment(
    target_seq: u64,
    target_leaf_hash: &[u8],
    kind: AmendmentKind,
    correction: Option<Observation>,
) -> Body {
    bodies::amendment(
        target_seq,
        target_leaf_hash,
        kind,
        correction,
        "reported in error",
    )
}

fn retract(target: &Receipt) -> Body {
    amendment(target.seq, &target.leaf_hash, AmendmentKind::Retract, None)
}

fn dispute(target_seq: u64, target_leaf_hash: &[u8]) -> Body {
    bodies::dispute(target_seq, target_leaf_hash, "our forces were not there")
}

/// The [`accord`] ledger: its genesis written by `node::start`, the rest
/// submitted.
struct Ledger {
    node: TestNode,
    compliance: ComplianceClient<Channel>,
    /// Receipts of the setup entries after the genesis, in order.
    setup: Vec<Receipt>,
}

impl Ledger {
    async fn start() -> Ledger {
        let scenario = accord();
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let config = NodeConfig {
            bootstrap: vec![scenario.genesis()],
            ..node_config(dir.path(), &scenario)
        };
        let node = TestNode::start_config(dir, scenario, config).await;
        let compliance = node.compliance().await;
        let mut ledger = Ledger {
            node,
            compliance,
            setup: Vec::new(),
        };
        assert_eq!(ledger.checkpoint().await.tree_size, 1);
        for signed in ledger.node.scenario.setup() {
            let receipt = ledger.accept(&signed).await;
            ledger.setup.push(receipt);
        }
        assert_eq!(ledger.checkpoint().await.tree_size, SETUP_ENTRIES);
        ledger
    }

    fn scenario(&self) -> &Scenario {
        &self.node.scenario
    }

    /// signatory-a, signatory-b, signatory-c.
    fn signatory(&self, index: usize) -> &SigningKey {
        self.key([SIGNATORY_A, SIGNATORY_B, SIGNATORY_C][index])
    }

    fn key(&self, party_id: &str) -> &SigningKey {
        self.scenario().key(party_id)
    }

    /// An event of this agreement, created now, with a fresh nonce.
    fn event(&self, author: &str, body: Body) -> Event {
        self.scenario().event(author, body)
    }

    /// A governance event by signatory-a, signed by signatories a and b.
    fn govern(&self, body: Body) -> SignedEvent {
        self.scenario().govern(body)
    }

    /// A violation reported by `author` under CEASEFIRE at (lat, lon), the
    /// zone left for the ledger to derive.
    fn report(&self, author: &str, lat: f64, lon: f64) -> Event {
        self.scenario()
            .observation()
            .by(author)
            .at(lat, lon)
            .event()
    }

    /// A violation by monitor-a at (lat, lon), signed by its key.
    fn report_a(&self, lat: f64, lon: f64) -> SignedEvent {
        self.scenario().observation().at(lat, lon).signed()
    }

    /// A report by monitor-a at the centre of WEST, changed by `change`.
    fn report_with(&self, change: impl FnOnce(&mut Observation)) -> SignedEvent {
        self.scenario().observation().with(change).signed()
    }

    /// The current checkpoint, its note verified with the operator key.
    async fn checkpoint(&self) -> CheckpointBody {
        self.node.checkpoint().await
    }

    /// The version (as_of_seq, digest, log time) of the compliance projection.
    async fn projection(&self) -> ProjectionVersion {
        self.compliance
            .clone()
            .list_statuses(ListStatusesRequest {
                filter: None,
                ..Default::default()
            })
            .await
            .expect("ListStatuses failed")
            .into_inner()
            .version
            .expect("ListStatuses answered without a version")
    }

    async fn pair(&self, zone_id: &str, commitment_id: &str) -> PairStatus {
        self.compliance
            .clone()
            .get_pair_status(GetPairStatusRequest {
                zone_id: zone_id.into(),
                commitment_id: commitment_id.into(),
            })
            .await
            .unwrap_or_else(|status| {
                panic!("GetPairStatus({zone_id}, {commitment_id}): {status:?}")
            })
            .into_inner()
            .pair
            .expect("GetPairStatus answered without a pair")
    }

    /// Observations counted for (WEST, CEASEFIRE), (EAST, CEASEFIRE) and
    /// (EAST, WITHDRAWAL).
    async fn counts(&self) -> [u32; 3] {
        [
            self.pair(WEST, CEASEFIRE).await.observations,
            self.pair(EAST, CEASEFIRE).await.observations,
            self.pair(EAST, WITHDRAWAL).await.observations,
        ]
    }

    /// Submits an event that must be accepted as the next entry, and checks
    /// its receipt: the leaf holds the payload verbatim under the next seq,
    /// the leaf hash is SHA-256(0x00 || leaf), and the inclusion proof leads
    /// to the root of the receipt's checkpoint, whose note verifies.
    async fn accept(&self, signed: &SignedEvent) -> Receipt {
        let size = self.checkpoint().await.tree_size;
        let receipt = self
            .node
            .client
            .clone()
            .submit(signed.clone())
            .await
            .unwrap_or_else(|status| panic!("refused: {:?}: {}", status.code(), status.message()))
            .into_inner();
        assert_eq!(receipt.seq, size, "an accepted event is not the next entry");
        self.node.check_receipt(&receipt, signed);
        receipt
    }

    /// Audits the whole log with the auditor (every signature, every rule,
    /// the root, the checkpoint and the projection digest), then stops.
    async fn audit_and_shutdown(self) {
        let size = self.checkpoint().await.tree_size;
        let mut source = ServerSource::connect(&self.node.node.url(), &Default::default())
            .await
            .expect("the auditor cannot connect");
        let report =
            tokio::task::spawn_blocking(move || audit(&mut source, AuditOptions::default()))
                .await
                .expect("the audit panicked")
                .unwrap_or_else(|error| panic!("the log does not audit: {error}"));
        assert_eq!(report.entries, size);
        assert_eq!(report.agreement_id, AGREEMENT);
        assert!(
            report.projection_checked,
            "the projection digest was not checked"
        );
        self.shutdown().await;
    }

    /// Audits the whole log as [`Ledger::audit_and_shutdown`] does, on a log
    /// whose witness policy (the last, set at entry `policy_seq`) names
    /// witnesses that never cosign: the audit replays every entry and then
    /// refuses the checkpoint as not witnessed, naming the `missing`
    /// witnesses and what the server says of each (the collector's error).
    async fn audit_unwitnessed_and_shutdown(self, policy_seq: u64, missing: &[&str]) {
        let size = self.checkpoint().await.tree_size;
        let mut source = ServerSource::connect(&self.node.node.url(), &Default::default())
            .await
            .expect("the auditor cannot connect");
        let result =
            tokio::task::spawn_blocking(move || audit(&mut source, AuditOptions::default()))
                .await
                .expect("the audit panicked");
        let not_witnessed = match result {
            Err(AuditError::Failed(AuditFailure::NotWitnessed(not_witnessed))) => not_witnessed,
            Err(other) => panic!("expected a refusal as not witnessed, got: {other}"),
            Ok(report) => panic!("an unwitnessed log passed the audit: {report:?}"),
        };
        // The latest checkpoint: the whole log was replayed before it.
        assert_eq!(not_witnessed.size, size);
        assert!(not_witnessed.cosigned.is_empty(), "{not_witnessed}");
        assert_eq!(not_witnessed.missing, missing, "{not_witnessed}");
        assert!(
            not_witnessed.rule.contains(&format!(
                "the witness policy of the log (entry {policy_seq})"
            )),
            "{not_witnessed}"
        );
        for name in missing {
            let (_, account) = not_witnessed
                .server_says
                .iter()
                .find(|(said_of, _)| said_of == name)
                .unwrap_or_else(|| panic!("the server says nothing of {name}: {not_witnessed}"));
            assert!(!account.is_empty(), "{not_witnessed}");
        }
        let message = not_witnessed.to_string();
        assert!(message.contains("is not witnessed"), "{message}");
        self.shutdown().await;
    }

    async fn shutdown(self) {
        let Ledger {
            node, compliance, ..
        } = self;
        drop(compliance);
        node.shutdown().await;
    }
}

/// Submits `signed`, expects a refusal with `code` whose message contains
/// `message`, and checks that nothing changed: the checkpoint (size and root)
/// and the compliance projection's version are the same as before.
async fn assert_refused(ledger: &Ledger, signed: SignedEvent, code: Code, message: &str) {
    let before = ledger.checkpoint().await;
    let projection = ledger.projection().await;
    let status = match ledger.node.client.clone().submit(signed).await {
        Ok(receipt) => panic!(
            "expected {code:?} ({message:?}), but it was accepted as entry {}",
            receipt.into_inner().seq
        ),
        Err(status) => status,
    };
    assert_eq!(
        status.code(),
        code,
        "expected {code:?} ({message:?}), got {:?}: {}",
        status.code(),
        status.message()
    );
    assert!(
        status.message().contains(message),
        "{code:?} as expected, but the message {:?} does not contain {message:?}",
        status.message()
    );
    assert_eq!(
        ledger.checkpoint().await,
        before,
        "refused ({message:?}) but the log changed"
    );
    assert_eq!(
        ledger.projection().await,
        projection,
        "refused ({message:?}) but the projection changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_keys_thresholds_and_revocation_are_enforced() {
    let ledger = Ledger::start().await;
    let (a, b, c) = (
        ledger.signatory(0),
        ledger.signatory(1),
        ledger.signatory(2),
    );
    let (monitor_a, monitor_b) = (ledger.key(MONITOR_A), ledger.key(MONITOR_B));
    let first = ledger.accept(&ledger.report_a(48.5, 37.5)).await;

    // Wrong role.
    let signed = sign(&ledger.report(SIGNATORY_A, 48.5, 37.5), &[a]);
    let message = "observations must come from a monitor; \"signatory-a\" is a signatory";
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let signed = sign(&ledger.report(MONITOR_A, 48.5, 37.5), &[a]);
    let message = "does not belong to the author \"monitor-a\"";
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let signed = sign(
        &ledger.report(MONITOR_A, 48.5, 37.5),
        &[monitor_a, monitor_b],
    );
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let monitor_c = seeded_key(0x33);
    let register_c = register(party("monitor-c", Role::Monitor, &[&monitor_c]));
    let message = "governance events are authored by a signatory; \"monitor-a\" is a monitor";
    let signed = sign(&ledger.event(MONITOR_A, register_c.clone()), &[monitor_a]);
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let signed = sign(&ledger.event(MONITOR_A, register_c.clone()), &[a, b]);
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let signed = sign(
        &ledger.event(SIGNATORY_A, register_c.clone()),
        &[a, b, monitor_a],
    );
    let message = "governance events are signed by signatories only; \"monitor-a\" is a monitor";
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let signed = sign(
        &ledger.event(MONITOR_B, dispute(first.seq, &first.leaf_hash)),
        &[monitor_b],
    );
    let message = "disputes must come from a signatory; \"monitor-b\" is a monitor";
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    // An observer reads; it neither reports nor disputes.
    let observer = seeded_key(0x51);
    let body = register(party("observer-x", Role::Observer, &[&observer]));
    ledger.accept(&ledger.govern(body)).await;
    let signed = sign(&ledger.report("observer-x", 48.5, 37.5), &[&observer]);
    let message = "observations must come from a monitor; \"observer-x\"";
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let signed = sign(
        &ledger.event("observer-x", dispute(first.seq, &first.leaf_hash)),
        &[&observer],
    );
    let message = "disputes must come from a signatory; \"observer-x\"";
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    // Contrast: one signatory alone may dispute.
    let signed = sign(
        &ledger.event(SIGNATORY_C, dispute(first.seq, &first.leaf_hash)),
        &[c],
    );
    ledger.accept(&signed).await;

    // Unknown author; unregistered key.
    let signed = sign(&ledger.report("monitor-z", 48.5, 37.5), &[monitor_a]);
    let message = "author \"monitor-z\" is not a registered party";
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let signed = sign(&ledger.event("signatory-z", register_c.clone()), &[a, b]);
    let message = "author \"signatory-z\" is not a registered party";
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let stranger = seeded_key(0x66);
    let message = "is not registered to any party";
    let signed = sign(&ledger.report(MONITOR_A, 48.5, 37.5), &[&stranger]);
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let signed = sign(
        &ledger.report(MONITOR_A, 48.5, 37.5),
        &[monitor_a, &stranger],
    );
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let signed = sign(
        &ledger.event(SIGNATORY_A, register_c.clone()),
        &[a, b, &stranger],
    );
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;

    // Below the threshold: any one signatory alone.
    let message = "governance needs 2 distinct signatories, this event has 1";
    for (author, key) in [(SIGNATORY_A, a), (SIGNATORY_B, b), (SIGNATORY_C, c)] {
        let signed = sign(&ledger.event(author, register_c.clone()), &[key]);
        assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    }
    // Two keys of one signatory count once.
    let a2 = seeded_key(0x24);
    ledger
        .accept(&ledger.govern(add_key(SIGNATORY_A, &a2)))
        .await;
    let signed = sign(&ledger.event(SIGNATORY_A, register_c.clone()), &[a, &a2]);
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    // The same key twice is malformed, even beside a second signatory.
    let mut signed = sign(&ledger.event(SIGNATORY_A, register_c.clone()), &[a, b]);
    signed.signatures.push(signed.signatures[0].clone());
    assert_refused(&ledger, signed, Code::InvalidArgument, "signs twice").await;
    let mut signed = sign(&ledger.event(SIGNATORY_A, register_c.clone()), &[a]);
    signed.signatures.push(signed.signatures[0].clone());
    assert_refused(&ledger, signed, Code::InvalidArgument, "signs twice").await;
    // Contrast: the second key with another signatory; all three together.
    let signed = sign(&ledger.event(SIGNATORY_A, register_c.clone()), &[&a2, c]);
    ledger.accept(&signed).await;
    let body = define_zone("sector-north", 1, Some(square(49.0, 37.0, 1.0)));
    ledger
        .accept(&sign(&ledger.event(SIGNATORY_B, body), &[a, b, c]))
        .await;

    // Another agreement: a second, independent ledger (the dev bootstrap).
    let other = TestNode::start().await;
    let theirs = other.signed_observation("accepted over there");
    other
        .client
        .clone()
        .submit(theirs.clone())
        .await
        .expect("the dev ledger refused its own observation");
    let message = "event is for agreement \"dev-agreement\", this ledger is \"accord-2026\"";
    assert_refused(&ledger, theirs, Code::FailedPrecondition, message).await;
    let mut ours = ledger.report(MONITOR_A, 48.5, 37.5);
    ours.agreement_id = DEV_AGREEMENT_ID.into();
    let signed = sign(&ours, &[monitor_a]);
    assert_refused(&ledger, signed, Code::FailedPrecondition, message).await;
    // Keys registered over there sign nothing here.
    let message = "is not registered to any party";
    let signed = sign(&ledger.report(MONITOR_A, 48.5, 37.5), &[other.monitor()]);
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let body = register(party("monitor-d", Role::Monitor, &[&seeded_key(0x35)]));
    let signed = sign(&ledger.event(SIGNATORY_A, body), &[a, other.signatory()]);
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    other.shutdown().await;

    // Revocation: what the key signed before stays; nothing after.
    let before = ledger
        .accept(&sign(&ledger.report(MONITOR_B, 48.5, 38.5), &[monitor_b]))
        .await;
    let revocation = ledger
        .accept(&ledger.govern(revoke_key(MONITOR_B, monitor_b)))
        .await;
    let message = format!("of \"monitor-b\" was revoked at entry {}", revocation.seq);
    let signed = sign(&ledger.report(MONITOR_B, 48.5, 38.5), &[monitor_b]);
    assert_refused(&ledger, signed, Code::PermissionDenied, &message).await;
    let signed = sign(&ledger.event(MONITOR_B, retract(&before)), &[monitor_b]);
    assert_refused(&ledger, signed, Code::PermissionDenied, &message).await;
    let message = format!("was already revoked at entry {}", revocation.seq);
    let signed = ledger.govern(revoke_key(MONITOR_B, monitor_b));
    assert_refused(&ledger, signed, Code::InvalidArgument, &message).await;
    // A key belongs to one party forever: neither it nor another party's
    // key can be added (again).
    let message = "is already registered to \"monitor-b\"; keys are never reused";
    let signed = ledger.govern(add_key(MONITOR_B, monitor_b));
    assert_refused(&ledger, signed, Code::InvalidArgument, message).await;
    let signed = ledger.govern(add_key(MONITOR_A, monitor_b));
    assert_refused(&ledger, signed, Code::InvalidArgument, message).await;
    let message = "is already registered to \"monitor-a\"; keys are never reused";
    let signed = ledger.govern(add_key(MONITOR_B, monitor_a));
    assert_refused(&ledger, signed, Code::InvalidArgument, message).await;
    // The entry signed before the revocation is still in the log, still
    // verifies, and is included in the current tree.
    let now = ledger.checkpoint().await;
    let entry = get_entries(&mut ledger.node.client.clone(), before.seq, before.seq + 1)
        .await
        .expect("GetEntries failed");
    assert_eq!(entry.len(), 1);
    assert_eq!(
        entry[0].leaf, before.leaf,
        "the entry changed after the revocation"
    );
    let leaf = Leaf::decode(&entry[0].leaf).unwrap();
    assert_eq!(leaf.signatures.len(), 1);
    assert_eq!(
        leaf.signatures[0].public_key.to_vec(),
        public_key(monitor_b)
    );
    verify_all(&leaf.payload, &leaf.signatures).expect("the old signature no longer verifies");
    let proof = ledger
        .node
        .client
        .clone()
        .get_inclusion_proof(GetInclusionProofRequest {
            seq: before.seq,
            tree_size: 0,
        })
        .await
        .expect("GetInclusionProof failed")
        .into_inner();
    assert_eq!(proof.tree_size, now.tree_size);
    verify_inclusion(
        &leaf_hash(&entry[0].leaf),
        before.seq,
        now.tree_size,
        &proof_hashes(&proof.hashes),
        &now.root_hash,
    )
    .expect("the pre-revocation entry is not in the current tree");
    // And it still counts; its author may still retract it, with a new key.
    assert_eq!(ledger.pair(EAST, CEASEFIRE).await.observations, 1);
    let b2 = seeded_key(0x34);
    ledger.accept(&ledger.govern(add_key(MONITOR_B, &b2))).await;
    ledger
        .accept(&sign(&ledger.event(MONITOR_B, retract(&before)), &[&b2]))
        .await;
    assert_eq!(ledger.pair(EAST, CEASEFIRE).await.observations, 0);

    ledger.audit_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_are_validated_and_placed_in_zones() {
    let ledger = Ledger::start().await;
    let monitor_a = ledger.key(MONITOR_A);
    let invalid = Code::InvalidArgument;
    ledger.accept(&ledger.report_a(48.5, 37.5)).await;

    // Coordinates.
    for (lat, lon, message) in [
        (
            f64::NAN,
            37.5,
            "observation.location.point: coordinates must be finite",
        ),
        (
            48.5,
            f64::NAN,
            "observation.location.point: coordinates must be finite",
        ),
        (
            48.5,
            f64::INFINITY,
            "observation.location.point: coordinates must be finite",
        ),
        (
            f64::NEG_INFINITY,
            37.5,
            "observation.location.point: coordinates must be finite",
        ),
        (
            91.0,
            37.5,
            "observation.location.point: latitude 91 is outside [-90, 90]",
        ),
        (-90.5, 37.5, "latitude -90.5 is outside [-90, 90]"),
        (
            48.5,
            -181.0,
            "observation.location.point: longitude -181 is outside [-180, 180]",
        ),
        (48.5, 180.5, "longitude 180.5 is outside [-180, 180]"),
    ] {
        assert_refused(&ledger, ledger.report_a(lat, lon), invalid, message).await;
    }
    // Accuracy: 0 to 100 km, finite.
    let message = "observation.location.accuracy_m must be 0 to 100000, got";
    for accuracy in [-1.0, -0.001, f64::NAN, f64::INFINITY, 100_000.5] {
        let signed = ledger.report_with(|o| o.location.as_mut().unwrap().accuracy_m = accuracy);
        assert_refused(&ledger, signed, invalid, message).await;
    }
    for accuracy in [0.0, 100_000.0] {
        let signed = ledger.report_with(|o| o.location.as_mut().unwrap().accuracy_m = accuracy);
        ledger.accept(&signed).await;
    }

    // Times (the default skew is 300 s).
    let signed = ledger.report_with(|o| o.observed_until.as_mut().unwrap().seconds += 24 * 3600);
    let message = "s in the future (allowed skew 300 s)";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.report_with(|o| {
        std::mem::swap(&mut o.observed_from, &mut o.observed_until);
    });
    let message = "observation: observed_from is after observed_until";
    assert_refused(&ledger, signed, invalid, message).await;
    let mut late = ledger.report(MONITOR_A, 48.5, 37.5);
    late.created_at.as_mut().unwrap().seconds += 24 * 3600;
    let message = "s ahead of the ledger clock (allowed skew 300 s)";
    assert_refused(&ledger, sign(&late, &[monitor_a]), invalid, message).await;
    let signed = ledger.report_with(|o| o.observed_from = None);
    let message = "observation.observed_from is required";
    assert_refused(&ledger, signed, invalid, message).await;
    // Contrast: within the skew, and an instant (from == until).
    let mut soon = ledger
        .scenario()
        .observation()
        .with(|o| {
            // A minute from now.
            o.observed_until = Some(seconds_ago(-60));
            o.observed_from = o.observed_until;
        })
        .event();
    soon.created_at.as_mut().unwrap().seconds += 60;
    ledger.accept(&sign(&soon, &[monitor_a])).await;

    // Narrative: 4096 bytes at most.
    let signed = ledger.report_with(|o| o.narrative = "x".repeat(4097));
    let message = "observation.narrative is 4097 bytes, over the limit of 4096";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.report_with(|o| o.narrative = "é".repeat(2049));
    let message = "observation.narrative is 4098 bytes, over the limit of 4096";
    assert_refused(&ledger, signed, invalid, message).await;
    ledger
        .accept(&ledger.report_with(|o| o.narrative = "x".repeat(4096)))
        .await;

    // Unknown and missing enum values.
    let signed = ledger.report_with(|o| o.finding = 99);
    let message = "observation.finding: unknown value 99";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.report_with(|o| o.category = 99);
    let message = "observation.category: unknown value 99";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.report_with(|o| o.finding = 0);
    assert_refused(&ledger, signed, invalid, "observation.finding is required").await;
    let signed = ledger.report_with(|o| o.category = 0);
    assert_refused(&ledger, signed, invalid, "observation.category is required").await;

    // Empty required fields.
    let mut event = ledger.report(MONITOR_A, 48.5, 37.5);
    event.author = String::new();
    let signed = sign(&event, &[monitor_a]);
    assert_refused(&ledger, signed, invalid, "author is required").await;
    let mut event = ledger.report(MONITOR_A, 48.5, 37.5);
    event.nonce = Vec::new();
    let signed = sign(&event, &[monitor_a]);
    let message = "nonce must be 8 to 64 bytes, got 0";
    assert_refused(&ledger, signed, invalid, message).await;
    let mut event = ledger.report(MONITOR_A, 48.5, 37.5);
    event.body = None;
    let signed = sign(&event, &[monitor_a]);
    assert_refused(&ledger, signed, invalid, "event has no body").await;
    let signed = ledger.report_with(|o| o.commitment_id = String::new());
    let message = "observation.commitment_id is required";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.report_with(|o| o.location = None);
    let message = "observation.location is required";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.report_with(|o| o.location.as_mut().unwrap().point = None);
    let message = "observation.location.point is required";
    assert_refused(&ledger, signed, invalid, message).await;

    // Zones and commitments.
    let signed = ledger.report_with(|o| o.commitment_id = "truce".into());
    let message = "observation.commitment_id: unknown commitment \"truce\"";
    assert_refused(&ledger, signed, invalid, message).await;
    let message =
        "observation.location (10, 37.5) is outside every zone of commitment \"ceasefire\"";
    assert_refused(&ledger, ledger.report_a(10.0, 37.5), invalid, message).await;
    let signed = ledger.report_with(|o| o.commitment_id = WITHDRAWAL.into());
    let message =
        "observation.location (48.5, 37.5) is outside every zone of commitment \"withdrawal\"";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.report_with(|o| {
        o.commitment_id = WITHDRAWAL.into();
        o.zone_id = WEST.into();
    });
    let message =
        "observation.zone_id: zone \"sector-west\" is not bound by commitment \"withdrawal\"";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.report_with(|o| o.zone_id = EAST.into());
    let message = "observation.location (48.5, 37.5) is outside zone \"sector-east\"";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.report_with(|o| o.zone_id = "sector-south".into());
    let message = "observation.zone_id: unknown zone \"sector-south\"";
    assert_refused(&ledger, signed, invalid, message).await;

    // Contrast: the zone, when omitted, is derived from the location and the
    // observation counts there (and only there).
    let counted = |before: [u32; 3], after: [u32; 3]| -> [i64; 3] {
        [0, 1, 2].map(|i| i64::from(after[i]) - i64::from(before[i]))
    };
    let cases: [(&str, SignedEvent, [i64; 3], &str); 5] = [
        (
            "east, derived",
            ledger.report_a(48.5, 38.5),
            [0, 1, 0],
            EAST,
        ),
        (
            "west, derived",
            ledger.report_a(48.2, 37.9),
            [1, 0, 0],
            WEST,
        ),
        // On the shared edge: the first of the commitment's zones, in order.
        ("shared edge", ledger.report_a(48.5, 38.0), [1, 0, 0], WEST),
        (
            "shared edge, withdrawal",
            ledger.report_with(|o| {
                o.commitment_id = WITHDRAWAL.into();
                o.location.as_mut().unwrap().point = Some(LatLon {
                    lat: 48.5,
                    lon: 38.0,
                });
            }),
            [0, 0, 1],
            EAST,
        ),
        (
            "east, given",
            ledger.report_with(|o| {
                o.zone_id = EAST.into();
                o.location.as_mut().unwrap().point = Some(LatLon {
                    lat: 48.5,
                    lon: 38.0,
                });
            }),
            [0, 1, 0],
            EAST,
        ),
    ];
    for (what, signed, expected, zone) in cases {
        let before = ledger.counts().await;
        let receipt = ledger.accept(&signed).await;
        let after = ledger.counts().await;
        assert_eq!(
            counted(before, after),
            expected,
            "{what}: counted in the wrong pair"
        );
        let commitment = if expected[2] == 1 {
            WITHDRAWAL
        } else {
            CEASEFIRE
        };
        let pair = ledger.pair(zone, commitment).await;
        assert_eq!(pair.updated_seq, receipt.seq, "{what}");
    }

    ledger.audit_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amendments_and_disputes_name_an_observation_of_their_own() {
    let ledger = Ledger::start().await;
    let (a, c) = (ledger.signatory(0), ledger.signatory(2));
    let (monitor_a, monitor_b) = (ledger.key(MONITOR_A), ledger.key(MONITOR_B));
    let invalid = Code::InvalidArgument;
    let governance = ledger.setup[0].clone();
    let first = ledger.accept(&ledger.report_a(48.5, 37.5)).await;
    let second = ledger.accept(&ledger.report_a(48.5, 38.5)).await;
    let theirs = ledger
        .accept(&sign(&ledger.report(MONITOR_B, 48.5, 37.6), &[monitor_b]))
        .await;
    assert_eq!(ledger.counts().await, [2, 1, 0]);
    let by_a = |body: Body| sign(&ledger.event(MONITOR_A, body), &[monitor_a]);

    // By someone other than the observation's author.
    let signed = sign(&ledger.event(MONITOR_B, retract(&first)), &[monitor_b]);
    let message = format!(
        "only the author \"monitor-a\" may amend entry {}",
        first.seq
    );
    assert_refused(&ledger, signed, Code::PermissionDenied, &message).await;
    let signed = sign(&ledger.event(SIGNATORY_A, retract(&first)), &[a]);
    let message = "amendments must come from a monitor; \"signatory-a\" is a signatory";
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let signed = sign(&ledger.event(MONITOR_A, retract(&first)), &[monitor_b]);
    let message = "does not belong to the author \"monitor-a\"";
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;

    // Of something that is not an observation, or not the named one.
    let signed = by_a(retract(&governance));
    let message = format!(
        "amendment.target_seq {} is not an observation",
        governance.seq
    );
    assert_refused(&ledger, signed, invalid, &message).await;
    let signed = by_a(amendment(
        first.seq,
        &second.leaf_hash,
        AmendmentKind::Retract,
        None,
    ));
    let message = format!(
        "amendment.target_leaf_hash does not match entry {}",
        first.seq
    );
    assert_refused(&ledger, signed, invalid, &message).await;
    let signed = by_a(amendment(
        first.seq,
        &first.leaf_hash[..31],
        AmendmentKind::Retract,
        None,
    ));
    let message = "amendment.target_leaf_hash must be 32 bytes, got 31";
    assert_refused(&ledger, signed, invalid, message).await;
    let size = ledger.checkpoint().await.tree_size;
    let signed = by_a(amendment(
        size + 5,
        &first.leaf_hash,
        AmendmentKind::Retract,
        None,
    ));
    let message = format!("amendment.target_seq {} is not an earlier entry", size + 5);
    assert_refused(&ledger, signed, invalid, &message).await;

    // Malformed amendments.
    let correction = ledger.scenario().observation().at(48.5, 37.7).message();
    let signed = by_a(amendment(
        first.seq,
        &first.leaf_hash,
        AmendmentKind::Retract,
        Some(correction.clone()),
    ));
    let message = "amendment.correction must be empty for a retraction";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = by_a(amendment(
        first.seq,
        &first.leaf_hash,
        AmendmentKind::Correct,
        None,
    ));
    let message = "amendment.correction is required for a correction";
    assert_refused(&ledger, signed, invalid, message).await;
    let mut bad_correction = correction.clone();
    bad_correction.location.as_mut().unwrap().point = Some(LatLon {
        lat: 91.0,
        lon: 37.5,
    });
    let signed = by_a(amendment(
        first.seq,
        &first.leaf_hash,
        AmendmentKind::Correct,
        Some(bad_correction),
    ));
    let message = "amendment.correction.location.point: latitude 91 is outside";
    assert_refused(&ledger, signed, invalid, message).await;
    let mut body = retract(&first);
    if let Body::Amendment(amendment) = &mut body {
        amendment.kind = 99;
    }
    let message = "amendment.kind: unknown value 99";
    assert_refused(&ledger, by_a(body), invalid, message).await;
    let mut body = retract(&first);
    if let Body::Amendment(amendment) = &mut body {
        amendment.reason = String::new();
    }
    assert_refused(&ledger, by_a(body), invalid, "amendment.reason is required").await;

    // A retraction: the observation stops counting; it cannot be retracted
    // or corrected again, and the retraction itself is no observation.
    let retraction = ledger.accept(&by_a(retract(&first))).await;
    assert_eq!(ledger.counts().await, [1, 1, 0]);
    let message = format!("entry {} was already retracted", first.seq);
    assert_refused(&ledger, by_a(retract(&first)), invalid, &message).await;
    let signed = by_a(amendment(
        first.seq,
        &first.leaf_hash,
        AmendmentKind::Correct,
        Some(correction.clone()),
    ));
    assert_refused(&ledger, signed, invalid, &message).await;
    let message = format!(
        "amendment.target_seq {} is not an observation",
        retraction.seq
    );
    assert_refused(&ledger, by_a(retract(&retraction)), invalid, &message).await;
    // A correction moves the observation from EAST to WEST.
    let signed = by_a(amendment(
        second.seq,
        &second.leaf_hash,
        AmendmentKind::Correct,
        Some(correction),
    ));
    ledger.accept(&signed).await;
    assert_eq!(ledger.counts().await, [2, 0, 0]);

    // Disputes: by one signatory, of an observation.
    let by_c = |body: Body| sign(&ledger.event(SIGNATORY_C, body), &[c]);
    assert!(!ledger.pair(WEST, CEASEFIRE).await.disputed);
    let signed = by_c(dispute(governance.seq, &governance.leaf_hash));
    let message = format!(
        "dispute.target_seq {} is not an observation",
        governance.seq
    );
    assert_refused(&ledger, signed, invalid, &message).await;
    let signed = by_c(dispute(theirs.seq, &first.leaf_hash));
    let message = format!(
        "dispute.target_leaf_hash does not match entry {}",
        theirs.seq
    );
    assert_refused(&ledger, signed, invalid, &message).await;
    let mut body = dispute(theirs.seq, &theirs.leaf_hash);
    if let Body::Dispute(dispute) = &mut body {
        dispute.reason = " ".into();
    }
    assert_refused(&ledger, by_c(body), invalid, "dispute.reason is required").await;
    let signed = sign(
        &ledger.event(MONITOR_A, dispute(theirs.seq, &theirs.leaf_hash)),
        &[monitor_a],
    );
    let message = "disputes must come from a signatory; \"monitor-a\" is a monitor";
    assert_refused(&ledger, signed, Code::PermissionDenied, message).await;
    let receipt = ledger
        .accept(&by_c(dispute(theirs.seq, &theirs.leaf_hash)))
        .await;
    let pair = ledger.pair(WEST, CEASEFIRE).await;
    assert!(
        pair.disputed,
        "a disputed violation does not mark its pair: {pair:?}"
    );
    assert_eq!(pair.updated_seq, receipt.seq);

    ledger.audit_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_zones_and_commitments_are_validated() {
    let ledger = Ledger::start().await;
    let invalid = Code::InvalidArgument;

    // Parties.
    let monitor_c = seeded_key(0x33);
    let mut bad = party("monitor-c", Role::Monitor, &[&monitor_c]);
    bad.role = 99;
    let message = "register_party.party.role: unknown value 99";
    assert_refused(
        &ledger,
        ledger.govern(register(bad.clone())),
        invalid,
        message,
    )
    .await;
    bad.role = Role::Unspecified as i32;
    let message = "register_party.party.role is required";
    assert_refused(&ledger, ledger.govern(register(bad)), invalid, message).await;
    let message = "register_party.party.public_keys: a party needs at least one key";
    let signed = ledger.govern(register(party("monitor-c", Role::Monitor, &[])));
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.govern(Body::RegisterParty(RegisterParty { party: None }));
    assert_refused(&ledger, signed, invalid, "register_party.party is required").await;
    let signed = ledger.govern(register(party(
        "monitor-c",
        Role::Monitor,
        &[&monitor_c, &monitor_c],
    )));
    assert_refused(
        &ledger,
        signed,
        invalid,
        "register_party.party.public_keys lists",
    )
    .await;
    let signed = ledger.govern(register(party("Monitor C", Role::Monitor, &[&monitor_c])));
    let message = "register_party.party.party_id \"Monitor C\" is not an identifier";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.govern(register(party(MONITOR_A, Role::Monitor, &[&monitor_c])));
    let message = "party \"monitor-a\" is already registered";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.govern(register(party(
        "monitor-c",
        Role::Monitor,
        &[ledger.key(MONITOR_A)],
    )));
    let message = "is already registered to \"monitor-a\"";
    assert_refused(&ledger, signed, invalid, message).await;
    let mut bad = party("monitor-c", Role::Monitor, &[]);
    bad.public_keys = vec![vec![7; 31]];
    let message = "register_party.party.public_keys[0] must be 32 bytes, got 31";
    assert_refused(
        &ledger,
        ledger.govern(register(bad.clone())),
        invalid,
        message,
    )
    .await;
    // The identity point: of small order.
    let mut identity = vec![0u8; 32];
    identity[0] = 1;
    bad.public_keys = vec![identity];
    let message = "is not an acceptable Ed25519 key";
    assert_refused(&ledger, ledger.govern(register(bad)), invalid, message).await;
    ledger
        .accept(&ledger.govern(register(party("monitor-c", Role::Monitor, &[&monitor_c]))))
        .await;

    // Keys.
    let signed = ledger.govern(add_key(MONITOR_B, ledger.key(MONITOR_A)));
    let message = "is already registered to \"monitor-a\"; keys are never reused";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.govern(add_key(MONITOR_B, ledger.signatory(2)));
    let message = "is already registered to \"signatory-c\"; keys are never reused";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.govern(add_key("monitor-z", &seeded_key(0x36)));
    let message = "add_key.party_id: unknown party \"monitor-z\"";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.govern(revoke_key(MONITOR_B, ledger.key(MONITOR_A)));
    assert_refused(&ledger, signed, invalid, "is not a key of \"monitor-b\"").await;
    ledger
        .accept(&ledger.govern(add_key(MONITOR_B, &seeded_key(0x36))))
        .await;

    // Polygons.
    let zone = |boundary: Polygon| ledger.govern(define_zone("crossing-1", 1, Some(boundary)));
    for (boundary, message) in [
        // A bow tie with unequal lobes (edges 0 and 2 cross).
        (
            polygon(&[(48.0, 37.0), (49.0, 39.0), (48.0, 39.0), (50.0, 37.0)]),
            "define_zone.boundary: the polygon intersects itself (edges 0 and 2)",
        ),
        // A symmetric bow tie: its lobes' signed areas cancel, but the
        // intersection test runs first and names the crossing edges.
        (
            polygon(&[(48.0, 37.0), (49.0, 38.0), (48.0, 38.0), (49.0, 37.0)]),
            "define_zone.boundary: the polygon intersects itself (edges 0 and 2)",
        ),
        (
            polygon(&[(48.0, 37.0), (48.5, 37.5), (49.0, 38.0)]),
            "define_zone.boundary: the polygon is degenerate",
        ),
        // Four points on a line: the closing edge runs back over the others.
        (
            polygon(&[(48.0, 37.0), (48.0, 37.5), (48.0, 38.0), (48.0, 38.5)]),
            "define_zone.boundary: the polygon intersects itself (edges 1 and 3)",
        ),
        (
            polygon(&[(48.0, 37.0), (49.0, 38.0)]),
            "define_zone.boundary: a polygon needs at least 3 vertices, got 2",
        ),
        (
            polygon(&[]),
            "define_zone.boundary: a polygon needs at least 3 vertices, got 0",
        ),
        (
            polygon(&[(48.0, 37.0), (95.0, 37.5), (48.0, 38.0)]),
            "define_zone.boundary: vertex 1: latitude 95 is outside [-90, 90]",
        ),
        (
            polygon(&[(48.0, 37.0), (49.0, 37.5), (48.0, -181.0)]),
            "define_zone.boundary: vertex 2: longitude -181 is outside [-180, 180]",
        ),
        (
            polygon(&[(f64::NAN, 37.0), (49.0, 37.5), (48.0, 38.0)]),
            "define_zone.boundary: vertex 0: coordinates must be finite",
        ),
        (
            polygon(&[(48.0, 37.0), (49.0, 37.5), (48.0, 37.0), (48.0, 38.0)]),
            "define_zone.boundary: vertices 0 and 2 are the same point",
        ),
        (
            polygon(&[(48.0, -100.0), (49.0, 0.0), (48.0, 100.0)]),
            "more than 180 degrees of longitude",
        ),
    ] {
        assert_refused(&ledger, zone(boundary), invalid, message).await;
    }
    let signed = ledger.govern(define_zone("crossing-1", 1, None));
    assert_refused(&ledger, signed, invalid, "define_zone.boundary is required").await;
    let mut body = define_zone("crossing-1", 1, Some(square(47.0, 37.0, 0.1)));
    if let Body::DefineZone(define) = &mut body {
        define.kind = 99;
    }
    let message = "define_zone.kind: unknown value 99";
    assert_refused(&ledger, ledger.govern(body), invalid, message).await;
    let signed = ledger.govern(define_zone("", 1, Some(square(47.0, 37.0, 0.1))));
    assert_refused(&ledger, signed, invalid, "define_zone.zone_id is required").await;
    ledger
        .accept(&zone(polygon(&[(47.0, 37.0), (47.0, 37.1), (47.1, 37.05)])))
        .await;

    // Versions: 1 for a new id, then previous + 1.
    let message = "zone \"sector-west\" is at version 1: a redefinition must be version 2, got 1";
    let signed = ledger.govern(define_zone(WEST, 1, Some(square(48.0, 37.0, 1.0))));
    assert_refused(&ledger, signed, invalid, message).await;
    let message = "zone \"sector-west\" is at version 1: a redefinition must be version 2, got 3";
    let signed = ledger.govern(define_zone(WEST, 3, Some(square(48.0, 37.0, 1.0))));
    assert_refused(&ledger, signed, invalid, message).await;
    let message = "zone \"sector-south\" is new: its version must be 1, got 2";
    let signed = ledger.govern(define_zone(
        "sector-south",
        2,
        Some(square(47.0, 37.0, 1.0)),
    ));
    assert_refused(&ledger, signed, invalid, message).await;
    let message = "zone \"sector-south\" is new: its version must be 1, got 0";
    let signed = ledger.govern(define_zone(
        "sector-south",
        0,
        Some(square(47.0, 37.0, 1.0)),
    ));
    assert_refused(&ledger, signed, invalid, message).await;
    // Version 2 shrinks WEST to its eastern half (lon 37.5 to 38): the
    // western half is then outside every zone.
    let inside_old_only = ledger.report_a(48.5, 37.2);
    let half = polygon(&[(48.0, 37.5), (48.0, 38.0), (49.0, 38.0), (49.0, 37.5)]);
    ledger
        .accept(&ledger.govern(define_zone(WEST, 2, Some(half))))
        .await;
    let message = "zone \"sector-west\" is at version 2: a redefinition must be version 3, got 2";
    let signed = ledger.govern(define_zone(WEST, 2, Some(square(48.0, 37.0, 1.0))));
    assert_refused(&ledger, signed, invalid, message).await;
    let message =
        "observation.location (48.5, 37.2) is outside every zone of commitment \"ceasefire\"";
    assert_refused(&ledger, inside_old_only, invalid, message).await;
    let signed = ledger.report_with(|o| {
        o.zone_id = WEST.into();
        o.location.as_mut().unwrap().point = Some(LatLon {
            lat: 48.2,
            lon: 37.2,
        });
    });
    let message = "observation.location (48.2, 37.2) is outside zone \"sector-west\"";
    assert_refused(&ledger, signed, invalid, message).await;
    let before = ledger.counts().await;
    ledger.accept(&ledger.report_a(48.2, 37.7)).await;
    assert_eq!(ledger.counts().await[0], before[0] + 1);

    // Commitments bind existing zones, each once.
    let signed = ledger.govern(define_commitment(
        "disengagement",
        1,
        &[EAST, "sector-south"],
    ));
    let message = "define_commitment.zone_ids: unknown zone \"sector-south\"";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.govern(define_commitment("disengagement", 1, &[WEST, EAST, WEST]));
    let message = "define_commitment.zone_ids lists \"sector-west\" twice";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.govern(define_commitment("disengagement", 1, &[]));
    let message = "define_commitment.zone_ids: a commitment binds at least one zone";
    assert_refused(&ledger, signed, invalid, message).await;
    let signed = ledger.govern(define_commitment(CEASEFIRE, 1, &[WEST]));
    let message =
        "commitment \"ceasefire\" is at version 1: a redefinition must be version 2, got 1";
    assert_refused(&ledger, signed, invalid, message).await;
    let mut body = define_commitment("disengagement", 1, &[WEST]);
    if let Body::DefineCommitment(define) = &mut body {
        define.kind = 99;
    }
    let message = "define_commitment.kind: unknown value 99";
    assert_refused(&ledger, ledger.govern(body), invalid, message).await;
    let signed = ledger.govern(define_commitment("disengagement", 1, &["crossing-1", EAST]));
    ledger.accept(&signed).await;
    let pair = ledger.pair("crossing-1", "disengagement").await;
    assert_eq!(pair.observations, 0);

    ledger.audit_and_shutdown().await;
}

/// Starts a node on a fresh directory with `genesis` as its bootstrap.
async fn start_with_genesis(genesis: SignedEvent) -> (anyhow::Result<Node>, TempDir) {
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let started = node::start(NodeConfig {
        bootstrap: vec![genesis],
        ..node_config(dir.path(), &accord())
    })
    .await;
    (started, dir)
}

/// The genesis follows the governance rules too: the node refuses to start
/// on one that breaks them (the Submit path, through `node::start`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genesis_must_meet_its_own_threshold_and_rules() {
    let operator = seeded_key(0x10);
    let [a, b, c] = [seeded_key(0x21), seeded_key(0x22), seeded_key(0x23)];
    let a2 = seeded_key(0x24);
    let three = || {
        vec![
            party(SIGNATORY_A, Role::Signatory, &[&a, &a2]),
            party(SIGNATORY_B, Role::Signatory, &[&b]),
            party(SIGNATORY_C, Role::Signatory, &[&c]),
        ]
    };
    let cases: Vec<(&str, SignedEvent, &str)> = vec![
        (
            "1 of 3",
            sign(&genesis(SIGNATORY_A, three(), 2, &operator), &[&a]),
            "governance needs 2 distinct signatories, this event has 1",
        ),
        (
            "two keys of one signatory",
            sign(&genesis(SIGNATORY_A, three(), 2, &operator), &[&a, &a2]),
            "governance needs 2 distinct signatories, this event has 1",
        ),
        (
            "co-signed by a key it does not name",
            sign(
                &genesis(SIGNATORY_A, three(), 2, &operator),
                &[&a, &b, &seeded_key(0x66)],
            ),
            "is not registered to any party",
        ),
        (
            "authored by a party it does not name",
            sign(&genesis("signatory-z", three(), 2, &operator), &[&a, &b]),
            "the genesis author \"signatory-z\" must be one of its signatories",
        ),
        (
            "threshold above the signatories",
            sign(&genesis(SIGNATORY_A, three(), 4, &operator), &[&a, &b, &c]),
            "genesis threshold must be between 1 and the 3 signatories, got 4",
        ),
        (
            "threshold 0",
            sign(&genesis(SIGNATORY_A, three(), 0, &operator), &[&a, &b]),
            "genesis threshold must be between 1 and the 3 signatories, got 0",
        ),
        (
            "no signatories",
            sign(&genesis(SIGNATORY_A, Vec::new(), 1, &operator), &[&a]),
            "genesis names no signatories",
        ),
        (
            "another operator key",
            sign(
                &genesis(SIGNATORY_A, three(), 2, &seeded_key(0x11)),
                &[&a, &b],
            ),
            "is not the one the genesis names",
        ),
        (
            "an author who does not sign",
            sign(&genesis(SIGNATORY_B, three(), 2, &operator), &[&a, &c]),
            "the author \"signatory-b\" must sign its own event",
        ),
    ];
    for (what, signed, message) in cases {
        let (started, _dir) = start_with_genesis(signed).await;
        let error = match started {
            Ok(_) => panic!("{what}: the node started"),
            Err(error) => format!("{error:#}"),
        };
        assert!(
            error.contains("bootstrap entry 0 was refused") && error.contains(message),
            "{what}: {error:?} does not contain {message:?}"
        );
    }
    // Contrast: 3 of 3, with a 2-of-3 threshold, and 2 of 3 by keys of
    // distinct signatories (one of them a second key).
    for (author, keys) in [
        (SIGNATORY_B, vec![&a, &b, &c]),
        (SIGNATORY_A, vec![&a2, &c]),
    ] {
        let signed = sign(&genesis(author, three(), 2, &operator), &keys);
        let (started, _dir) = start_with_genesis(signed).await;
        let node = started.expect("a valid genesis was refused");
        let mut client = connect(&node).await;
        let checkpoint = checkpoint(&mut client, &accord().note_verifier()).await;
        assert_eq!(checkpoint.tree_size, 1);
        drop(client);
        node.shutdown().await.expect("the node failed to shut down");
    }
}

/// A node that refused its bootstrap must leave its directory usable: the
/// operator fixes the genesis and starts again, in the same process. (The
/// release races with `node::start` returning, so the test tries 10 times.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_genesis_leaves_the_directory_free_for_a_valid_one() {
    let accord = accord();
    for round in 0..10 {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let config = |genesis: SignedEvent| NodeConfig {
            bootstrap: vec![genesis],
            ..node_config(dir.path(), &accord)
        };
        let below = sign(
            &accord.event(SIGNATORY_A, accord.genesis_body()),
            &[accord.key(SIGNATORY_A)],
        );
        let error = node::start(config(below))
            .await
            .err()
            .expect("a genesis below its threshold was accepted");
        assert!(format!("{error:#}").contains("governance needs 2 distinct signatories"));
        let node = node::start(config(accord.genesis()))
            .await
            .unwrap_or_else(|error| {
                panic!("round {round}: the refused node still holds the directory: {error:#}")
            });
        let mut client = connect(&node).await;
        let checkpoint = checkpoint(&mut client, &accord.note_verifier()).await;
        assert_eq!(
            checkpoint.tree_size, 1,
            "the refused genesis left entries behind"
        );
        drop(client);
        node.shutdown().await.expect("the node failed to shut down");
    }
}

/// A witness policy is governance: the threshold of signatories sets it, one
/// signature does not, an invalid policy is refused naming its field, and a
/// later policy replaces it. The audit replays both, then demands the
/// quorum of the one in force: its witness (a closed port) never cosigned,
/// so the log is refused as not witnessed, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_policy_is_set_by_the_signatories_and_validated() {
    use ceasefire_core::cosignature::Cosigner;
    use ceasefire_core::witness_policy::WitnessPolicy;
    use ceasefire_grpc::proto::{SetWitnessPolicy, Witness, WitnessGroup};

    let ledger = Ledger::start().await;
    let witnesses: Vec<Cosigner> = ["north.example/w", "south.example/w", "mediator.example/w"]
        .iter()
        .zip(0x61u8..)
        .map(|(name, seed)| Cosigner::new(name, seeded_key(seed)).unwrap())
        .collect();
    let policy = SetWitnessPolicy {
        witnesses: witnesses
            .iter()
            .map(|w| Witness {
                name: w.name().into(),
                public_key: w.verifier().public_key().as_bytes().to_vec(),
                url: "http://127.0.0.1:9/".into(),
            })
            .collect(),
        groups: vec![WitnessGroup {
            name: "signatories".into(),
            threshold: 2,
            members: witnesses.iter().map(|w| w.name().to_owned()).collect(),
        }],
        quorum: "signatories".into(),
    };

    // One signatory alone is below the threshold of 2.
    let event = ledger.event(SIGNATORY_A, Body::SetWitnessPolicy(policy.clone()));
    let alone = sign(&event, &[ledger.signatory(0)]);
    assert_refused(&ledger, alone, Code::PermissionDenied, "signatories").await;

    // Invalid policies name their field and change nothing.
    let mut bad = policy.clone();
    bad.groups[0].threshold = 4;
    let message = "set_witness_policy.groups[0].threshold must be 1 to its 3 members, got 4";
    let signed = ledger.govern(Body::SetWitnessPolicy(bad));
    assert_refused(&ledger, signed, Code::InvalidArgument, message).await;
    let mut bad = policy.clone();
    bad.witnesses[2].public_key = bad.witnesses[0].public_key.clone();
    let message = "set_witness_policy.witnesses[2].public_key is the key of an earlier witness";
    let signed = ledger.govern(Body::SetWitnessPolicy(bad));
    assert_refused(&ledger, signed, Code::InvalidArgument, message).await;
    let mut bad = policy.clone();
    bad.quorum = "nobody".into();
    let signed = ledger.govern(Body::SetWitnessPolicy(bad));
    assert_refused(
        &ledger,
        signed,
        Code::InvalidArgument,
        "set_witness_policy.quorum",
    )
    .await;

    // Accepted with two signatories, then replaced by a 1-of-1 policy.
    ledger
        .accept(&ledger.govern(Body::SetWitnessPolicy(policy.clone())))
        .await;
    let mut replacement = policy.clone();
    replacement.witnesses.truncate(1);
    replacement.groups.clear();
    replacement.quorum = witnesses[0].name().into();
    let replaced = ledger
        .accept(&ledger.govern(Body::SetWitnessPolicy(replacement.clone())))
        .await;
    // The text form states the same policy.
    let parsed = WitnessPolicy::from_event(&replacement, true).unwrap();
    assert_eq!(
        WitnessPolicy::parse_text(&parsed.to_text())
            .unwrap()
            .to_event(),
        replacement
    );
    ledger
        .audit_unwitnessed_and_shutdown(replaced.seq, &[witnesses[0].name()])
        .await;
}
