//! The Compliance service over real gRPC: a node on a local port with a sled
//! store in a temporary directory, bootstrapped like `serve --dev`, plus a
//! second monitoring mission and commitments of our own (short windows where
//! expiry is tested).
//!
//! Statuses are computed by hand; the served digest is checked against a
//! fold from scratch over GetEntries, a rebuild from the store and a
//! restart; streams are checked for resumption, filters, concurrency and
//! shutdown.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ceasefire_core::projection::StatusChange as CoreChange;
use ceasefire_core::replay::Replay;
use ceasefire_grpc::now_micros;
use ceasefire_grpc::proto::{
    compliance_client::ComplianceClient, event::Body, Category, CategoryCount, ComplianceStatus,
    Finding, GetCommitmentStatusRequest, GetHistoryRequest, GetPairStatusRequest,
    GetZoneStatusRequest, ListStatusesRequest, PairStatus, ProjectionVersion, Role, StatusChange,
    StatusFilter, SubscribeRequest,
};
use ceasefire_node::sequencer::recovery::rebuild_projection;
use ceasefire_node::storage::Store;
use ceasefire_testkit::fixture::{Client, TestNode};
use ceasefire_testkit::scenario::{
    bodies, random_key, seconds_ago, square, Commitment, Member, Scenario, Zone, BOOTSTRAP_ENTRIES,
    DEV_COMMITMENT, DEV_MONITOR, DEV_SIGNATORY, DEV_ZONE,
};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

type Compliance = ComplianceClient<Channel>;

const MISSION_B: &str = "mission-b";
const NORTH: &str = "north-sector";
const EAST: &str = "east-sector";
/// 2 s window, quorum 2, over the dev sector and the north sector.
const SHORT: &str = "short-ceasefire";
/// 24 h window, quorum 1, over the north sector.
const ACCESS: &str = "access-watch";
const SECOND: i64 = 1_000_000;

const UNSPECIFIED: i32 = ComplianceStatus::Unspecified as i32;
const COMPLIANT: i32 = ComplianceStatus::Compliant as i32;
const UNOBSERVED: i32 = ComplianceStatus::Unobserved as i32;
const OBSTRUCTED: i32 = ComplianceStatus::Obstructed as i32;
const REPORTED: i32 = ComplianceStatus::ViolationReported as i32;
const CONFIRMED: i32 = ComplianceStatus::ViolationConfirmed as i32;

/// How long any one streamed message may take to arrive.
const STREAM_WAIT: Duration = Duration::from_secs(10);

use ceasefire_core::rules::micros_timestamp as timestamp;
// The replayed changes are converted as the service converts them; the
// conversion itself is pinned by the hand-written statuses below.
use ceasefire_node::server::{change_message, pair_status as pair_message};

/// A square zone of one degree, latitude `lat..lat + 1`, longitude 37..38
/// (the dev sector is 48..49).
fn zone(zone_id: &str, lat: f64) -> Zone {
    Zone::new(zone_id, square(lat, 37.0, 1.0))
}

/// A commitment in force since yesterday: observations made before it do
/// not count.
fn commitment(commitment_id: &str, zone_ids: &[&str], window: u64, quorum: u32) -> Commitment {
    Commitment::new(commitment_id, zone_ids)
        .window(window)
        .quorum(quorum)
        .effective_from(seconds_ago(24 * 3600))
}

/// One observation, seen for the minute until `until` (microseconds) at
/// the centre of a zone the scenario knows, naming it.
fn observation(
    scenario: &Scenario,
    zone_id: &str,
    commitment_id: &str,
    finding: Finding,
    category: Category,
    until: i64,
) -> Body {
    scenario
        .observation()
        .in_zone(zone_id)
        .accuracy_m(100.0)
        .commitment(commitment_id)
        .finding(finding)
        .category(category)
        .quantity(1)
        .observed(timestamp(until - 60 * SECOND), timestamp(until))
        .narrative(&format!("{finding:?} seen"))
        .body()
}

/// A dev node with a second monitoring mission (`mission-b`, entry 4), and
/// clients of both services.
struct Ledger {
    node: TestNode,
    /// The dev ledger's parties, the second mission, and the zones this file
    /// defines (where their observations are made).
    scenario: Scenario,
    client: Client,
    compliance: Compliance,
    /// Leaf hash of every entry this test submitted, by seq.
    leaf_hashes: BTreeMap<u64, Vec<u8>>,
    last_seq: u64,
}

impl Ledger {
    async fn start() -> Ledger {
        let node = TestNode::start().await;
        let client = node.client.clone();
        let compliance = node.compliance().await;
        let scenario = node
            .scenario
            .clone()
            .with_member(
                Member::new(MISSION_B, Role::Monitor, random_key())
                    .named("Second monitoring mission"),
            )
            .with_zone(zone(NORTH, 49.0))
            .with_zone(zone(EAST, 50.0));
        let mut ledger = Ledger {
            node,
            scenario,
            client,
            compliance,
            leaf_hashes: BTreeMap::new(),
            last_seq: BOOTSTRAP_ENTRIES - 1,
        };
        let register = ledger.scenario.registration(MISSION_B);
        assert_eq!(ledger.governance(register).await, BOOTSTRAP_ENTRIES);
        ledger
    }

    /// Submits as `author`; returns the seq, which must be the next one.
    async fn submit(&mut self, author: &str, body: Body) -> u64 {
        let receipt = self
            .client
            .submit(self.scenario.signed(author, body))
            .await
            .unwrap_or_else(|status| panic!("submission by {author} refused: {status:?}"))
            .into_inner();
        assert_eq!(receipt.seq, self.last_seq + 1, "seqs are not contiguous");
        self.last_seq = receipt.seq;
        self.leaf_hashes.insert(receipt.seq, receipt.leaf_hash);
        receipt.seq
    }

    async fn governance(&mut self, body: Body) -> u64 {
        self.submit(DEV_SIGNATORY, body).await
    }

    async fn dispute(&mut self, target_seq: u64) -> u64 {
        let dispute = bodies::dispute(
            target_seq,
            &self.leaf_hashes[&target_seq],
            "the signatory contests this report",
        );
        self.submit(DEV_SIGNATORY, dispute).await
    }

    fn retraction(&self, target_seq: u64) -> Body {
        bodies::retraction(
            target_seq,
            &self.leaf_hashes[&target_seq],
            "reported in error",
        )
    }

    /// The pair's status; checks the answer's version.
    async fn pair(&mut self, zone_id: &str, commitment_id: &str) -> PairStatus {
        let response = self
            .compliance
            .get_pair_status(GetPairStatusRequest {
                zone_id: zone_id.into(),
                commitment_id: commitment_id.into(),
            })
            .await
            .unwrap_or_else(|status| {
                panic!("GetPairStatus({zone_id}, {commitment_id}): {status:?}")
            })
            .into_inner();
        check_version(response.version.as_ref(), self.last_seq);
        let pair = response.pair.expect("PairStatusResponse without a pair");
        assert_eq!(
            (pair.zone_id.as_str(), pair.commitment_id.as_str()),
            (zone_id, commitment_id)
        );
        pair
    }

    /// A zone's rolled-up status and its (commitment, status) pairs.
    async fn zone(&mut self, zone_id: &str) -> (i32, Vec<(String, i32)>) {
        let response = self
            .compliance
            .get_zone_status(GetZoneStatusRequest {
                zone_id: zone_id.into(),
            })
            .await
            .unwrap_or_else(|status| panic!("GetZoneStatus({zone_id}): {status:?}"))
            .into_inner();
        check_version(response.version.as_ref(), self.last_seq);
        assert_eq!(response.zone_id, zone_id);
        let pairs = response
            .pairs
            .iter()
            .map(|pair| {
                assert_eq!(pair.zone_id, zone_id);
                (pair.commitment_id.clone(), pair.status)
            })
            .collect();
        (response.status, pairs)
    }

    /// A commitment's zones counted by status, and its (zone, status) pairs.
    async fn commitment(&mut self, commitment_id: &str) -> (Vec<(i32, u32)>, Vec<(String, i32)>) {
        let response = self
            .compliance
            .get_commitment_status(GetCommitmentStatusRequest {
                commitment_id: commitment_id.into(),
            })
            .await
            .unwrap_or_else(|status| panic!("GetCommitmentStatus({commitment_id}): {status:?}"))
            .into_inner();
        check_version(response.version.as_ref(), self.last_seq);
        assert_eq!(response.commitment_id, commitment_id);
        let counts: Vec<(i32, u32)> = response
            .zones_by_status
            .iter()
            .map(|count| (count.status, count.zones))
            .collect();
        let pairs: Vec<(String, i32)> = response
            .pairs
            .iter()
            .map(|pair| {
                assert_eq!(pair.commitment_id, commitment_id);
                (pair.zone_id.clone(), pair.status)
            })
            .collect();
        // The counts are the pairs' statuses, counted.
        let mut recount = BTreeMap::<i32, u32>::new();
        for (_, status) in &pairs {
            *recount.entry(*status).or_default() += 1;
        }
        assert_eq!(counts, recount.into_iter().collect::<Vec<_>>());
        (counts, pairs)
    }

    /// ListStatuses: (zone, commitment, status) of every pair matching.
    async fn list(&mut self, filter: StatusFilter) -> Vec<(String, String, i32)> {
        let response = self
            .compliance
            .list_statuses(ListStatusesRequest {
                filter: Some(filter),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("ListStatuses: {status:?}"))
            .into_inner();
        check_version(response.version.as_ref(), self.last_seq);
        response
            .pairs
            .iter()
            .map(|pair| {
                (
                    pair.zone_id.clone(),
                    pair.commitment_id.clone(),
                    pair.status,
                )
            })
            .collect()
    }

    /// The served version (as of ListStatuses), checked.
    async fn version(&mut self) -> ProjectionVersion {
        let response = self
            .compliance
            .list_statuses(ListStatusesRequest {
                filter: None,
                ..Default::default()
            })
            .await
            .expect("ListStatuses failed")
            .into_inner();
        check_version(response.version.as_ref(), self.last_seq);
        response.version.unwrap()
    }

    async fn history(&mut self, zone_id: &str, commitment_id: &str) -> Vec<StatusChange> {
        let response = self
            .compliance
            .get_history(GetHistoryRequest {
                zone_id: zone_id.into(),
                commitment_id: commitment_id.into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("GetHistory({zone_id}, {commitment_id}): {status:?}"))
            .into_inner();
        check_version(response.version.as_ref(), self.last_seq);
        response.changes
    }
}

/// Every answer is as of the last entry and carries a 32-byte digest.
fn check_version(version: Option<&ProjectionVersion>, last_seq: u64) {
    let version = version.expect("an answer without a version");
    assert_eq!(
        version.as_of_seq, last_seq,
        "the answer is not as of the last entry"
    );
    assert_eq!(version.digest.len(), 32, "the digest is not 32 bytes");
    assert!(version.log_time.is_some(), "the version has no log time");
}

fn filter(zones: &[&str], commitments: &[&str], statuses: &[i32]) -> StatusFilter {
    StatusFilter {
        zone_ids: zones.iter().map(|zone| zone.to_string()).collect(),
        commitment_ids: commitments.iter().map(|id| id.to_string()).collect(),
        statuses: statuses.to_vec(),
    }
}

fn all() -> StatusFilter {
    StatusFilter::default()
}

async fn subscribe(
    compliance: &mut Compliance,
    filter: StatusFilter,
    (from_seq, from_index): (u64, u32),
) -> Result<Streaming<StatusChange>, tonic::Status> {
    Ok(compliance
        .subscribe(SubscribeRequest {
            filter: Some(filter),
            from_seq,
            from_index,
        })
        .await?
        .into_inner())
}

/// The next `n` changes of a stream (each within [`STREAM_WAIT`]).
async fn take(stream: &mut Streaming<StatusChange>, n: usize) -> Vec<StatusChange> {
    let mut changes = Vec::with_capacity(n);
    while changes.len() < n {
        match tokio::time::timeout(STREAM_WAIT, stream.message()).await {
            Ok(Ok(Some(change))) => changes.push(change),
            Ok(Ok(None)) => panic!("the stream ended after {} of {n} changes", changes.len()),
            Ok(Err(status)) => panic!(
                "the stream failed after {} of {n} changes: {status:?}",
                changes.len()
            ),
            Err(_) => panic!(
                "no change within {STREAM_WAIT:?} after {} of {n}",
                changes.len()
            ),
        }
    }
    changes
}

/// Checks that nothing more arrives for a while.
async fn assert_quiet(stream: &mut Streaming<StatusChange>, wait: Duration) {
    if let Ok(next) = tokio::time::timeout(wait, stream.message()).await {
        panic!("expected no more changes, got {next:?}");
    }
}

/// A change's place and transition, for comparing with hand-made lists.
type Key = (u64, u32, String, String, i32, i32, bool, bool);

fn key_of(change: &StatusChange) -> Key {
    (
        change.seq,
        change.index,
        change.zone_id.clone(),
        change.commitment_id.clone(),
        change.old_status,
        change.new_status,
        change.old_disputed,
        change.new_disputed,
    )
}

fn keys(changes: &[StatusChange]) -> Vec<Key> {
    changes.iter().map(key_of).collect()
}

/// Folds the whole log, read with GetEntries, from scratch (every check,
/// signatures included); returns the replay and every change it made.
async fn replay_log(node: &TestNode) -> (Replay, Vec<StatusChange>) {
    let entries = node.read_log().await;
    let mut replay = Replay::new();
    let mut changes = Vec::new();
    for entry in &entries {
        let replayed = replay
            .apply(&entry.leaf, false)
            .unwrap_or_else(|error| panic!("the served log does not replay: {error}"));
        changes.extend(replayed.changes.iter().map(change_message));
    }
    (replay, changes)
}

/// (seq, index) strictly increasing; indexes of one seq 0, 1, 2, ...
fn assert_change_log_order(changes: &[StatusChange]) {
    for pair in changes.windows(2) {
        let (a, b) = ((pair[0].seq, pair[0].index), (pair[1].seq, pair[1].index));
        assert!(a < b, "changes out of order: {a:?} then {b:?}");
        if b.0 == a.0 {
            assert_eq!(b.1, a.1 + 1, "a gap in the changes of entry {}", a.0);
        } else {
            assert_eq!(b.1, 0, "the changes of entry {} do not start at 0", b.0);
        }
    }
}

/// A change as [`key_of`] gives it (arguments in the order of its fields).
#[allow(clippy::too_many_arguments)]
fn change(
    seq: u64,
    index: u32,
    zone_id: &str,
    commitment_id: &str,
    old: i32,
    new: i32,
    old_disputed: bool,
    new_disputed: bool,
) -> Key {
    (
        seq,
        index,
        zone_id.into(),
        commitment_id.into(),
        old,
        new,
        old_disputed,
        new_disputed,
    )
}

fn counts(pairs: &[(i32, u32)]) -> Vec<CategoryCount> {
    pairs
        .iter()
        .map(|&(category, count)| CategoryCount { category, count })
        .collect()
}

fn pairs_of(list: &[(&str, i32)]) -> Vec<(String, i32)> {
    list.iter()
        .map(|(id, status)| (id.to_string(), *status))
        .collect()
}

/// The scripted scenario, every status computed by hand and checked as it
/// goes; returns the ledger and the changes a subscriber saw live.
async fn scripted_scenario() -> (Ledger, Vec<StatusChange>) {
    let mut ledger = Ledger::start().await;
    let mut watcher = ledger.node.compliance().await;
    let mut live = subscribe(&mut watcher, all(), (0, 0)).await.unwrap();
    let mut expected = vec![change(
        3,
        0,
        DEV_ZONE,
        DEV_COMMITMENT,
        UNSPECIFIED,
        UNOBSERVED,
        false,
        false,
    )];

    // 5..=7: a zone, a 2 s commitment over two zones (two changes at 6, in
    // pair order), a 24 h quorum-1 commitment over the new zone.
    assert_eq!(ledger.governance(zone(NORTH, 49.0).body()).await, 5);
    let six = ledger
        .governance(commitment(SHORT, &[DEV_ZONE, NORTH], 2, 2).body())
        .await;
    assert_eq!(
        ledger
            .governance(commitment(ACCESS, &[NORTH], 86_400, 1).body())
            .await,
        7
    );
    expected.extend([
        change(
            six,
            0,
            DEV_ZONE,
            SHORT,
            UNSPECIFIED,
            UNOBSERVED,
            false,
            false,
        ),
        change(six, 1, NORTH, SHORT, UNSPECIFIED, UNOBSERVED, false, false),
        change(7, 0, NORTH, ACCESS, UNSPECIFIED, UNOBSERVED, false, false),
    ]);

    // New pairs are unobserved.
    let pair = ledger.pair(DEV_ZONE, SHORT).await;
    assert_eq!(
        pair,
        PairStatus {
            zone_id: DEV_ZONE.into(),
            commitment_id: SHORT.into(),
            status: UNOBSERVED,
            updated_seq: 6,
            ..PairStatus::default()
        }
    );
    assert_eq!(ledger.pair(DEV_ZONE, DEV_COMMITMENT).await.updated_seq, 3);
    assert_eq!(
        ledger.zone(DEV_ZONE).await,
        (
            UNOBSERVED,
            pairs_of(&[(DEV_COMMITMENT, UNOBSERVED), (SHORT, UNOBSERVED)])
        )
    );
    assert_eq!(
        ledger.commitment(SHORT).await,
        (
            vec![(UNOBSERVED, 2)],
            pairs_of(&[(DEV_ZONE, UNOBSERVED), (NORTH, UNOBSERVED)])
        )
    );
    assert_eq!(ledger.list(all()).await.len(), 4);

    // 8: a first violation (24 h window, quorum 2): reported.
    let first_until = now_micros() - 300 * SECOND;
    let first = ledger
        .submit(
            DEV_MONITOR,
            observation(
                &ledger.scenario,
                DEV_ZONE,
                DEV_COMMITMENT,
                Finding::Violation,
                Category::Explosion,
                first_until,
            ),
        )
        .await;
    assert_eq!(first, 8);
    expected.push(change(
        8,
        0,
        DEV_ZONE,
        DEV_COMMITMENT,
        UNOBSERVED,
        REPORTED,
        false,
        false,
    ));
    let explosion = Category::Explosion as i32;
    let small_arms = Category::SmallArmsFire as i32;
    assert_eq!(
        ledger.pair(DEV_ZONE, DEV_COMMITMENT).await,
        PairStatus {
            zone_id: DEV_ZONE.into(),
            commitment_id: DEV_COMMITMENT.into(),
            status: REPORTED,
            disputed: false,
            observations: 1,
            violations: 1,
            counts_by_category: counts(&[(explosion, 1)]),
            distinct_reporters: 1,
            distinct_violation_reporters: 1,
            last_violation_at: Some(timestamp(first_until)),
            last_observation_at: Some(timestamp(first_until)),
            updated_seq: 8,
        }
    );
    assert_eq!(ledger.zone(DEV_ZONE).await.0, REPORTED);

    // 9: corroborated by the second mission: confirmed.
    let second_until = now_micros() - 200 * SECOND;
    let second = ledger
        .submit(
            MISSION_B,
            observation(
                &ledger.scenario,
                DEV_ZONE,
                DEV_COMMITMENT,
                Finding::Violation,
                Category::SmallArmsFire,
                second_until,
            ),
        )
        .await;
    assert_eq!(second, 9);
    expected.push(change(
        9,
        0,
        DEV_ZONE,
        DEV_COMMITMENT,
        REPORTED,
        CONFIRMED,
        false,
        false,
    ));
    assert_eq!(
        ledger.pair(DEV_ZONE, DEV_COMMITMENT).await,
        PairStatus {
            zone_id: DEV_ZONE.into(),
            commitment_id: DEV_COMMITMENT.into(),
            status: CONFIRMED,
            disputed: false,
            observations: 2,
            violations: 2,
            counts_by_category: counts(&[(explosion, 1), (small_arms, 1)]),
            distinct_reporters: 2,
            distinct_violation_reporters: 2,
            last_violation_at: Some(timestamp(second_until)),
            last_observation_at: Some(timestamp(second_until)),
            updated_seq: 9,
        }
    );
    // Zone rollup: the most severe pair; commitment rollup: zones by status.
    assert_eq!(
        ledger.zone(DEV_ZONE).await,
        (
            CONFIRMED,
            pairs_of(&[(DEV_COMMITMENT, CONFIRMED), (SHORT, UNOBSERVED)])
        )
    );
    assert_eq!(
        ledger.commitment(DEV_COMMITMENT).await,
        (vec![(CONFIRMED, 1)], pairs_of(&[(DEV_ZONE, CONFIRMED)]))
    );

    // 10: the signatory disputes the first violation.
    assert_eq!(ledger.dispute(first).await, 10);
    expected.push(change(
        10,
        0,
        DEV_ZONE,
        DEV_COMMITMENT,
        CONFIRMED,
        CONFIRMED,
        false,
        true,
    ));
    let pair = ledger.pair(DEV_ZONE, DEV_COMMITMENT).await;
    assert_eq!(
        (pair.status, pair.disputed, pair.updated_seq),
        (CONFIRMED, true, 10)
    );

    // Only the author may retract: refused, nothing written.
    let foreign = ledger
        .scenario
        .signed(DEV_MONITOR, ledger.retraction(second));
    let refused = ledger.client.submit(foreign).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // 11: the corroboration is retracted by its author: reported again,
    // still disputed (the first violation is).
    let retraction = ledger.retraction(second);
    assert_eq!(ledger.submit(MISSION_B, retraction).await, 11);
    expected.push(change(
        11,
        0,
        DEV_ZONE,
        DEV_COMMITMENT,
        CONFIRMED,
        REPORTED,
        true,
        true,
    ));
    assert_eq!(
        ledger.pair(DEV_ZONE, DEV_COMMITMENT).await,
        PairStatus {
            zone_id: DEV_ZONE.into(),
            commitment_id: DEV_COMMITMENT.into(),
            status: REPORTED,
            disputed: true,
            observations: 1,
            violations: 1,
            counts_by_category: counts(&[(explosion, 1)]),
            distinct_reporters: 1,
            distinct_violation_reporters: 1,
            last_violation_at: Some(timestamp(first_until)),
            last_observation_at: Some(timestamp(first_until)),
            updated_seq: 11,
        }
    );
    assert_eq!(
        ledger.commitment(DEV_COMMITMENT).await.0,
        vec![(REPORTED, 1)]
    );

    // 12: only ACCESS_DENIED in the window: obstructed.
    let movement = Category::RestrictionOfMovement;
    let denied_until = now_micros() - 60 * SECOND;
    ledger
        .submit(
            DEV_MONITOR,
            observation(
                &ledger.scenario,
                NORTH,
                ACCESS,
                Finding::AccessDenied,
                movement,
                denied_until,
            ),
        )
        .await;
    expected.push(change(
        12, 0, NORTH, ACCESS, UNOBSERVED, OBSTRUCTED, false, false,
    ));
    let pair = ledger.pair(NORTH, ACCESS).await;
    assert_eq!(
        (pair.status, pair.observations, pair.violations),
        (OBSTRUCTED, 1, 0)
    );
    assert_eq!(pair.last_violation_at, None);
    assert_eq!(
        ledger.zone(NORTH).await,
        (
            OBSTRUCTED,
            pairs_of(&[(ACCESS, OBSTRUCTED), (SHORT, UNOBSERVED)])
        )
    );
    assert_eq!(ledger.commitment(ACCESS).await.0, vec![(OBSTRUCTED, 1)]);

    // 13: a compliance report: compliant. The zone is now as severe as its
    // unobserved pair.
    let patrol_until = now_micros() - 30 * SECOND;
    ledger
        .submit(
            MISSION_B,
            observation(
                &ledger.scenario,
                NORTH,
                ACCESS,
                Finding::Compliance,
                Category::RoutinePatrol,
                patrol_until,
            ),
        )
        .await;
    expected.push(change(
        13, 0, NORTH, ACCESS, OBSTRUCTED, COMPLIANT, false, false,
    ));
    assert_eq!(
        ledger.pair(NORTH, ACCESS).await,
        PairStatus {
            zone_id: NORTH.into(),
            commitment_id: ACCESS.into(),
            status: COMPLIANT,
            disputed: false,
            observations: 2,
            violations: 0,
            counts_by_category: counts(&[
                (Category::RestrictionOfMovement as i32, 1),
                (Category::RoutinePatrol as i32, 1),
            ]),
            distinct_reporters: 2,
            distinct_violation_reporters: 0,
            last_violation_at: None,
            last_observation_at: Some(timestamp(patrol_until)),
            updated_seq: 13,
        }
    );
    assert_eq!(ledger.zone(NORTH).await.0, UNOBSERVED);
    assert_eq!(ledger.commitment(ACCESS).await.0, vec![(COMPLIANT, 1)]);

    // 14: a violation on the 2 s window, observed until just now.
    let short_until = now_micros() - SECOND / 2;
    ledger
        .submit(
            DEV_MONITOR,
            observation(
                &ledger.scenario,
                DEV_ZONE,
                SHORT,
                Finding::Violation,
                Category::Explosion,
                short_until,
            ),
        )
        .await;
    expected.push(change(
        14, 0, DEV_ZONE, SHORT, UNOBSERVED, REPORTED, false, false,
    ));
    let pair = ledger.pair(DEV_ZONE, SHORT).await;
    assert_eq!(
        (pair.status, pair.observations, pair.updated_seq),
        (REPORTED, 1, 14)
    );
    assert_eq!(
        ledger.commitment(SHORT).await,
        (
            vec![(UNOBSERVED, 1), (REPORTED, 1)],
            pairs_of(&[(DEV_ZONE, REPORTED), (NORTH, UNOBSERVED)])
        )
    );
    // Nothing changes without an entry, however long it waits.
    let expires_at = short_until + 2 * SECOND;
    let wait = (expires_at + SECOND / 2 - now_micros()).max(0) as u64;
    tokio::time::sleep(Duration::from_micros(wait)).await;
    assert!(now_micros() > expires_at);
    assert_eq!(ledger.pair(DEV_ZONE, SHORT).await.status, REPORTED);

    // 15: an unrelated entry moves log time past the window: unobserved
    // again, with the change at 15.
    assert_eq!(ledger.governance(zone(EAST, 50.0).body()).await, 15);
    expected.push(change(
        15, 0, DEV_ZONE, SHORT, REPORTED, UNOBSERVED, false, false,
    ));
    assert_eq!(
        ledger.pair(DEV_ZONE, SHORT).await,
        PairStatus {
            zone_id: DEV_ZONE.into(),
            commitment_id: SHORT.into(),
            status: UNOBSERVED,
            updated_seq: 15,
            ..PairStatus::default()
        }
    );
    assert_eq!(ledger.commitment(SHORT).await.0, vec![(UNOBSERVED, 2)]);
    // The zone is still as severe as its disputed report.
    assert_eq!(
        ledger.zone(DEV_ZONE).await,
        (
            REPORTED,
            pairs_of(&[(DEV_COMMITMENT, REPORTED), (SHORT, UNOBSERVED)])
        )
    );

    // 16: compliance on the short window (observed until now).
    ledger
        .submit(
            MISSION_B,
            observation(
                &ledger.scenario,
                NORTH,
                SHORT,
                Finding::Compliance,
                Category::RoutinePatrol,
                now_micros(),
            ),
        )
        .await;
    expected.push(change(
        16, 0, NORTH, SHORT, UNOBSERVED, COMPLIANT, false, false,
    ));
    assert_eq!(
        ledger.commitment(SHORT).await,
        (
            vec![(COMPLIANT, 1), (UNOBSERVED, 1)],
            pairs_of(&[(DEV_ZONE, UNOBSERVED), (NORTH, COMPLIANT)])
        )
    );
    assert_eq!(ledger.zone(NORTH).await.0, COMPLIANT);

    // ListStatuses and its filters.
    let everything = ledger.list(all()).await;
    let owned =
        |zone: &str, commitment: &str, status| (zone.to_string(), commitment.to_string(), status);
    assert_eq!(
        everything,
        vec![
            owned(DEV_ZONE, DEV_COMMITMENT, REPORTED),
            owned(DEV_ZONE, SHORT, UNOBSERVED),
            owned(NORTH, ACCESS, COMPLIANT),
            owned(NORTH, SHORT, COMPLIANT),
        ]
    );
    assert_eq!(
        ledger.list(filter(&[], &[], &[COMPLIANT])).await,
        vec![
            owned(NORTH, ACCESS, COMPLIANT),
            owned(NORTH, SHORT, COMPLIANT)
        ]
    );
    assert_eq!(
        ledger.list(filter(&[DEV_ZONE], &[], &[])).await,
        everything[..2].to_vec()
    );
    assert_eq!(
        ledger.list(filter(&[], &[SHORT], &[])).await,
        vec![
            owned(DEV_ZONE, SHORT, UNOBSERVED),
            owned(NORTH, SHORT, COMPLIANT)
        ]
    );
    assert_eq!(
        ledger
            .list(filter(&[NORTH], &[SHORT], &[COMPLIANT, REPORTED]))
            .await,
        vec![owned(NORTH, SHORT, COMPLIANT)]
    );
    assert!(ledger.list(filter(&[EAST], &[], &[])).await.is_empty());
    assert!(ledger.list(filter(&[], &[], &[CONFIRMED])).await.is_empty());

    // Unknown pairs, zones and commitments.
    let mut compliance = ledger.compliance.clone();
    let missing = compliance
        .get_pair_status(GetPairStatusRequest {
            zone_id: EAST.into(),
            commitment_id: SHORT.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let missing = compliance
        .get_zone_status(GetZoneStatusRequest {
            zone_id: EAST.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let missing = compliance
        .get_commitment_status(GetCommitmentStatusRequest {
            commitment_id: "no-such-commitment".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let missing = compliance
        .get_history(GetHistoryRequest {
            zone_id: NORTH.into(),
            commitment_id: DEV_COMMITMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // The live subscriber saw exactly these changes, and nothing more.
    let seen = take(&mut live, expected.len()).await;
    assert_eq!(keys(&seen), expected, "the live subscriber's changes");
    assert_quiet(&mut live, Duration::from_millis(300)).await;
    for change in &seen {
        let pair = change.pair.as_ref().expect("a change without its pair");
        assert_eq!(pair.status, change.new_status);
        assert_eq!(pair.disputed, change.new_disputed);
        assert_eq!(pair.updated_seq, change.seq);
    }
    drop(live);
    (ledger, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_statuses_rollups_and_histories() {
    let (mut ledger, seen) = scripted_scenario().await;
    // Each pair's history is exactly the changes seen for it, in order.
    let mut pairs: Vec<(String, String)> = seen
        .iter()
        .map(|change| (change.zone_id.clone(), change.commitment_id.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(pairs.len(), 4);
    for (zone_id, commitment_id) in &pairs {
        let history = ledger.history(zone_id, commitment_id).await;
        let of_pair: Vec<StatusChange> = seen
            .iter()
            .filter(|change| change.zone_id == *zone_id && change.commitment_id == *commitment_id)
            .cloned()
            .collect();
        assert_eq!(history, of_pair, "history of ({zone_id}, {commitment_id})");
    }
    let transitions: Vec<(u64, i32, i32, bool)> = ledger
        .history(DEV_ZONE, DEV_COMMITMENT)
        .await
        .iter()
        .map(|change| {
            (
                change.seq,
                change.old_status,
                change.new_status,
                change.new_disputed,
            )
        })
        .collect();
    assert_eq!(
        transitions,
        vec![
            (3, UNSPECIFIED, UNOBSERVED, false),
            (8, UNOBSERVED, REPORTED, false),
            (9, REPORTED, CONFIRMED, false),
            (10, CONFIRMED, CONFIRMED, true),
            (11, CONFIRMED, REPORTED, true),
        ]
    );
    ledger.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_digest_is_a_replay_a_rebuild_and_survives_a_restart() {
    let (mut ledger, seen) = scripted_scenario().await;
    let served = ledger.version().await;

    // A fold from scratch over GetEntries, every check included.
    let (replay, replayed) = replay_log(&ledger.node).await;
    assert_eq!(replay.projection.as_of_seq, Some(ledger.last_seq));
    assert_eq!(
        served.digest,
        replay.projection.digest().to_vec(),
        "the served digest is not the digest of a replay of the served log"
    );
    assert_eq!(
        served.log_time,
        Some(timestamp(replay.projection.log_time_micros))
    );
    assert_eq!(
        replayed, seen,
        "the replay's changes differ from the streamed ones"
    );
    // Every served pair is the replayed pair.
    let listed = ledger
        .compliance
        .list_statuses(ListStatusesRequest {
            filter: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pairs;
    let expected: Vec<PairStatus> = replay
        .projection
        .pairs
        .iter()
        .map(|((zone, commitment), pair)| pair_message(zone, commitment, &pair.summary))
        .collect();
    assert_eq!(listed, expected);
    let history_before = ledger.history(DEV_ZONE, DEV_COMMITMENT).await;

    // rebuild-projections on the stopped node's store gives the same.
    let last_seq = ledger.last_seq;
    let Ledger {
        node,
        compliance,
        client,
        ..
    } = ledger;
    drop((compliance, client));
    let (dir, dev) = node.stop().await;
    {
        let store = Store::open(dir.path()).expect("cannot open the stopped node's store");
        let stored = store
            .load_projection()
            .unwrap()
            .expect("no stored projection");
        assert_eq!(stored.head.as_of_seq, Some(last_seq));
        assert_eq!(stored.head.digest.to_vec(), served.digest);
        let changes_before: Vec<CoreChange> = store
            .changes_between((0, 0), (u64::MAX, u32::MAX))
            .collect::<Result<_, _>>()
            .unwrap();
        let windows_before = stored_windows(&store, &stored.summaries);
        assert_eq!(
            changes_before
                .iter()
                .map(change_message)
                .collect::<Vec<_>>(),
            seen,
            "the stored change log differs from the streamed one"
        );
        let rebuilt = rebuild_projection(&store).expect("rebuild_projection failed");
        assert_eq!(
            rebuilt.digest().to_vec(),
            served.digest,
            "a rebuild gives another digest than the one served"
        );
        assert_eq!(rebuilt, replay.projection);
        let after = store.load_projection().unwrap().unwrap();
        assert_eq!(after.head.digest.to_vec(), served.digest);
        assert_eq!(
            after.summaries, stored.summaries,
            "the rebuild stored other pairs"
        );
        assert_eq!(
            stored_windows(&store, &after.summaries),
            windows_before,
            "the rebuild stored other windows than the batches wrote"
        );
        let changes_after: Vec<CoreChange> = store
            .changes_between((0, 0), (u64::MAX, u32::MAX))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            changes_after, changes_before,
            "the rebuild stored another change log"
        );
    }

    // A restarted node serves the same digest, history and changes.
    let node = TestNode::resume(dir, dev).await;
    let mut compliance = node.compliance().await;
    let version = compliance
        .list_statuses(ListStatusesRequest {
            filter: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .version;
    assert_eq!(
        version.as_ref(),
        Some(&served),
        "the restarted node serves another version"
    );
    let history_after = compliance
        .get_history(GetHistoryRequest {
            zone_id: DEV_ZONE.into(),
            commitment_id: DEV_COMMITMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .changes;
    assert_eq!(history_after, history_before);
    let mut stream = subscribe(&mut compliance, all(), (0, 0)).await.unwrap();
    assert_eq!(take(&mut stream, seen.len()).await, seen);
    assert_quiet(&mut stream, Duration::from_millis(200)).await;
    drop(stream);
    drop(compliance);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_subscription_sees_every_change_once_and_filters_apply() {
    const TRI: &str = "tri-watch";
    const PAIR: &str = "pair-watch";
    let mut ledger = Ledger::start().await;
    ledger.governance(zone(NORTH, 49.0).body()).await;
    ledger.governance(zone(EAST, 50.0).body()).await;
    // Three changes at one seq.
    let tri = ledger
        .governance(commitment(TRI, &[DEV_ZONE, NORTH, EAST], 86_400, 1).body())
        .await;

    // A subscriber reads two changes (stopping inside `tri`'s) and goes away.
    let mut first_client = ledger.node.compliance().await;
    let mut stream = subscribe(&mut first_client, all(), (0, 0)).await.unwrap();
    let mut seen = take(&mut stream, 2).await;
    assert_eq!(
        seen.iter().map(|c| (c.seq, c.index)).collect::<Vec<_>>(),
        vec![(3, 0), (tri, 0)]
    );
    drop(stream);
    drop(first_client);

    // Meanwhile: more changes, two of them at one seq.
    let until = now_micros() - 60 * SECOND;
    let scenario = ledger.scenario.clone();
    let violation = |zone: &str| {
        observation(
            &scenario,
            zone,
            TRI,
            Finding::Violation,
            Category::Explosion,
            until,
        )
    };
    ledger.submit(DEV_MONITOR, violation(DEV_ZONE)).await;
    let denied = observation(
        &ledger.scenario,
        EAST,
        TRI,
        Finding::AccessDenied,
        Category::RestrictionOfMovement,
        until,
    );
    ledger.submit(MISSION_B, denied).await;
    ledger
        .governance(commitment(PAIR, &[NORTH, EAST], 86_400, 2).body())
        .await;

    // Resume after the last change seen: it catches up, then follows live.
    let cursor = |seen: &[StatusChange]| {
        let last = seen.last().unwrap();
        (last.seq, last.index + 1)
    };
    let mut second_client = ledger.node.compliance().await;
    let mut stream = subscribe(&mut second_client, all(), cursor(&seen))
        .await
        .unwrap();
    seen.extend(take(&mut stream, 6).await);
    ledger
        .submit(
            DEV_MONITOR,
            observation(
                &ledger.scenario,
                NORTH,
                TRI,
                Finding::Compliance,
                Category::RoutinePatrol,
                until,
            ),
        )
        .await;
    seen.extend(take(&mut stream, 1).await);
    drop(stream);
    drop(second_client);

    // Gone again while the pair-watch violation is reported and confirmed.
    let east_violation = || {
        observation(
            &scenario,
            EAST,
            PAIR,
            Finding::Violation,
            Category::SmallArmsFire,
            until,
        )
    };
    ledger.submit(DEV_MONITOR, east_violation()).await;
    ledger.submit(MISSION_B, east_violation()).await;
    let mut third_client = ledger.node.compliance().await;
    let mut stream = subscribe(&mut third_client, all(), cursor(&seen))
        .await
        .unwrap();
    seen.extend(take(&mut stream, 2).await);
    assert_quiet(&mut stream, Duration::from_millis(300)).await;
    drop(stream);

    // Compared with the whole change log, streamed afterwards and replayed.
    let (_, replayed) = replay_log(&ledger.node).await;
    let mut compliance = ledger.compliance.clone();
    let mut stream = subscribe(&mut compliance, all(), (0, 0)).await.unwrap();
    let everything = take(&mut stream, replayed.len()).await;
    assert_quiet(&mut stream, Duration::from_millis(200)).await;
    drop(stream);
    assert_eq!(everything, replayed);
    assert_eq!(everything.len(), 11);
    assert_change_log_order(&everything);
    assert_eq!(
        seen, everything,
        "a resumed subscriber missed or repeated changes"
    );

    // A cursor past the last change of a seq continues with the next seq.
    let mut stream = subscribe(&mut compliance, all(), (tri, 3)).await.unwrap();
    let rest = take(&mut stream, everything.len() - 4).await;
    assert_eq!(rest, everything[4..]);
    drop(stream);

    // Filters: by zone, by commitment, by (new) status, and all at once.
    for filter in [
        filter(&[EAST], &[], &[]),
        filter(&[], &[PAIR], &[]),
        filter(&[], &[], &[CONFIRMED, OBSTRUCTED]),
        filter(&[EAST, NORTH], &[TRI], &[COMPLIANT, OBSTRUCTED]),
    ] {
        let expected: Vec<StatusChange> = everything
            .iter()
            .filter(|change| {
                (filter.zone_ids.is_empty() || filter.zone_ids.contains(&change.zone_id))
                    && (filter.commitment_ids.is_empty()
                        || filter.commitment_ids.contains(&change.commitment_id))
                    && (filter.statuses.is_empty() || filter.statuses.contains(&change.new_status))
            })
            .cloned()
            .collect();
        assert!(
            !expected.is_empty(),
            "a filter that matches nothing: {filter:?}"
        );
        let mut stream = subscribe(&mut compliance, filter.clone(), (0, 0))
            .await
            .unwrap();
        let got = take(&mut stream, expected.len()).await;
        assert_quiet(&mut stream, Duration::from_millis(200)).await;
        assert_eq!(got, expected, "filter {filter:?}");
    }

    // Bad requests.
    let size = ledger.last_seq + 1;
    let status = subscribe(&mut compliance, all(), (size + 1, 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let status = subscribe(&mut compliance, all(), (u64::MAX, 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let unknown = filter(&[], &[], &[COMPLIANT, 42]);
    let status = subscribe(&mut compliance, unknown.clone(), (0, 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let status = compliance
        .list_statuses(ListStatusesRequest {
            filter: Some(unknown),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // From the tree size: live changes only.
    let mut stream = subscribe(&mut compliance, all(), (size, 0)).await.unwrap();
    assert_quiet(&mut stream, Duration::from_millis(300)).await;
    let seq = ledger
        .submit(
            DEV_MONITOR,
            observation(
                &ledger.scenario,
                NORTH,
                PAIR,
                Finding::Compliance,
                Category::RoutinePatrol,
                until,
            ),
        )
        .await;
    let live = take(&mut stream, 1).await;
    assert_eq!(
        keys(&live),
        vec![change(
            seq, 0, NORTH, PAIR, UNOBSERVED, COMPLIANT, false, false
        )]
    );
    drop(stream);
    drop(third_client);
    drop(compliance);
    let Ledger {
        node,
        compliance,
        client,
        ..
    } = ledger;
    drop((compliance, client));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_subscribers_see_the_same_changes_in_order() {
    const SUBSCRIBERS: usize = 20;
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 20;
    const FLIP_A: &str = "flip-a";
    const FLIP_B: &str = "flip-b";
    const SENTINEL: &str = "zz-sentinel";
    let mut ledger = Ledger::start().await;
    ledger.governance(zone(NORTH, 49.0).body()).await;
    ledger
        .governance(commitment(FLIP_A, &[DEV_ZONE, NORTH], 1, 2).body())
        .await;
    ledger
        .governance(commitment(FLIP_B, &[DEV_ZONE, NORTH], 1, 1).body())
        .await;

    // Subscribers from the beginning, each on its own connection, each
    // reading until the sentinel pair (the last change of the log).
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut compliance = ledger.node.compliance().await;
        let mut stream = subscribe(&mut compliance, all(), (0, 0)).await.unwrap();
        subscribers.push(tokio::spawn(async move {
            let _connection = compliance;
            let mut changes = Vec::new();
            loop {
                let change = take(&mut stream, 1).await.remove(0);
                let last = change.commitment_id == SENTINEL;
                changes.push(change);
                if last {
                    return changes;
                }
            }
        }));
    }

    // Writers: violations and compliance alternating, observed until 0.7 s
    // ago on 1 s windows, so reports keep leaving their windows.
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let mut client = ledger.node.new_client().await;
        let author = if writer % 2 == 0 {
            DEV_MONITOR
        } else {
            MISSION_B
        };
        let scenario = ledger.scenario.clone();
        let zone = if writer / 2 == 0 { DEV_ZONE } else { NORTH };
        writers.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let commitment = if (i / 2) % 2 == 0 { FLIP_A } else { FLIP_B };
                let (finding, category) = if i % 2 == 0 {
                    (Finding::Violation, Category::Explosion)
                } else {
                    (Finding::Compliance, Category::RoutinePatrol)
                };
                let until = now_micros() - 700_000;
                let body = observation(&scenario, zone, commitment, finding, category, until);
                client
                    .submit(scenario.signed(author, body))
                    .await
                    .unwrap_or_else(|status| panic!("writer {writer}: {status:?}"));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }
    for writer in writers {
        writer.await.expect("a writer panicked");
    }
    let size = ledger.node.checkpoint().await.tree_size;
    assert_eq!(size, ledger.last_seq + 1 + (WRITERS * PER_WRITER) as u64);
    ledger.last_seq = size - 1;
    // The sentinel: a pair sorting after every other, so it is the last
    // change of its entry and of the log.
    ledger.governance(zone(SENTINEL, 60.0).body()).await;
    ledger
        .governance(commitment(SENTINEL, &[SENTINEL], 86_400, 1).body())
        .await;

    let mut lists = Vec::new();
    for subscriber in subscribers {
        let list = tokio::time::timeout(Duration::from_secs(30), subscriber)
            .await
            .expect("a subscriber did not reach the sentinel")
            .expect("a subscriber panicked");
        lists.push(list);
    }

    // The reference: a subscription from (0, 0) afterwards, and a replay.
    let (_, replayed) = replay_log(&ledger.node).await;
    let mut compliance = ledger.compliance.clone();
    let mut stream = subscribe(&mut compliance, all(), (0, 0)).await.unwrap();
    let reference = take(&mut stream, replayed.len()).await;
    assert_quiet(&mut stream, Duration::from_millis(200)).await;
    drop(stream);
    assert_eq!(reference, replayed);
    assert_eq!(reference.last().unwrap().commitment_id, SENTINEL);
    assert_change_log_order(&reference);
    // Setup and sentinel make 6 changes; the writers must have made some
    // (how many depends on timing: reports leave their 1 s windows while
    // others arrive; at least each pair's first report is a change).
    assert!(
        reference.len() > 6 + 2,
        "only {} changes: the writers hardly changed anything",
        reference.len()
    );
    for (number, list) in lists.iter().enumerate() {
        assert_change_log_order(list);
        assert_eq!(
            keys(list),
            keys(&reference),
            "subscriber {number} saw other changes"
        );
        assert_eq!(
            *list, reference,
            "subscriber {number} saw other pair states"
        );
    }
    drop(compliance);
    let Ledger {
        node,
        compliance,
        client,
        ..
    } = ledger;
    drop((compliance, client));
    node.shutdown().await;
}

/// Reads a stream to its end: the changes, then how it ended.
async fn drain(
    mut stream: Streaming<StatusChange>,
) -> (Vec<StatusChange>, Result<(), tonic::Status>) {
    let mut changes = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(change)) => changes.push(change),
            Ok(None) => return (changes, Ok(())),
            Err(status) => return (changes, Err(status)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_subscriptions_end_unavailable_when_the_node_shuts_down() {
    let node = TestNode::start().await;
    let mut compliance = node.compliance().await;
    // One caught up and waiting, one whose filter matches nothing.
    let mut waiting = subscribe(&mut compliance, all(), (0, 0)).await.unwrap();
    assert_eq!(take(&mut waiting, 1).await[0].seq, 3);
    let idle = subscribe(&mut compliance, filter(&["no-such-zone"], &[], &[]), (0, 0))
        .await
        .unwrap();
    let readers = [tokio::spawn(drain(waiting)), tokio::spawn(drain(idle))];
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), node.shutdown())
        .await
        .expect("the node did not shut down within 5 s with subscribers open");
    for reader in readers {
        let (changes, end) = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("a subscription did not end with the shutdown")
            .unwrap();
        assert!(changes.is_empty(), "unexpected changes: {changes:?}");
        let status = end.expect_err("the subscription ended as if complete");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_does_not_hold_shutdown_open() {
    const ZONES: usize = 40;
    const COMMITMENTS: usize = 50;
    let mut ledger = Ledger::start().await;
    let zone_ids: Vec<String> = (0..ZONES).map(|i| format!("z-{i:02}")).collect();
    for (i, zone_id) in zone_ids.iter().enumerate() {
        ledger
            .governance(zone(zone_id, i as f64 * 2.0 - 80.0).body())
            .await;
    }
    let zone_refs: Vec<&str> = zone_ids.iter().map(String::as_str).collect();
    for i in 0..COMMITMENTS {
        ledger
            .governance(commitment(&format!("c-{i:02}"), &zone_refs, 3600, 1).body())
            .await;
    }
    // ZONES x COMMITMENTS changes, far more than a small HTTP/2 window, the
    // tonic encoder's buffer and the subscription's buffer together hold.
    let channel = tonic::transport::Endpoint::from_shared(ledger.node.node.url())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .expect("cannot connect");
    let mut stalled_client = ComplianceClient::new(channel);
    let stalled = subscribe(&mut stalled_client, all(), (0, 0)).await.unwrap();
    // Give the server time to fill every buffer on the way.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let Ledger {
        node,
        compliance,
        client,
        ..
    } = ledger;
    drop((compliance, client));
    let shutdown = tokio::spawn(node.node.shutdown());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !shutdown.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held_open = !shutdown.is_finished();
    // The stalled subscriber reads at last (which, if the shutdown hung,
    // lets it finish), and learns how its stream ended.
    let (changes, end) = tokio::time::timeout(Duration::from_secs(10), drain(stalled))
        .await
        .expect("the stalled stream did not end even once read");
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("the node did not shut down even after the stream was read")
        .expect("the shutdown task panicked")
        .expect("the node failed to shut down");
    assert!(
        !held_open,
        "the node did not shut down within 5 s: a subscriber that stopped reading held it \
         open until it read again; it then got {} of {} changes and {:?}",
        changes.len(),
        ZONES * COMMITMENTS + 1,
        end.as_ref()
            .map_err(|status| (status.code(), status.message().to_string())),
    );
    assert!(changes.len() < ZONES * COMMITMENTS + 1);
    // Its final status could not reach it through a full window: after the
    // grace period the connection was cut, which the client sees as a
    // transport error (or UNAVAILABLE, had the status got through).
    let status = end.expect_err("the stalled stream ended as if complete");
    assert!(
        matches!(status.code(), Code::Unavailable | Code::Unknown),
        "{status:?}"
    );
    drop(node.dir);
}

/// Every observation the stored windows of these pairs count, in key order.
fn stored_windows(
    store: &Store,
    pairs: &std::collections::BTreeMap<(String, String), ceasefire_core::projection::PairSummary>,
) -> Vec<(
    ceasefire_core::windows::WindowKey,
    ceasefire_core::windows::CountedObservation,
)> {
    use ceasefire_core::windows::Windows;
    let windows = ceasefire_node::storage::StoreWindows::new(store);
    let mut counted = Vec::new();
    for pair in pairs.keys() {
        windows
            .for_each_in(pair, &mut |key, observation| {
                counted.push((key.clone(), observation.clone()))
            })
            .expect("cannot read the stored windows");
    }
    counted.sort_by(|a, b| a.0.cmp(&b.0));
    counted
}
