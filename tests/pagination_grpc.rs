//! Pagination of ListStatuses and GetHistory over real gRPC (a node on a
//! local port, bootstrapped like `serve --dev`): walking the pages gives the
//! whole list in order, each item once; page sizes default and clamp; page
//! tokens bind the request they continue; walks stay consistent while the
//! log grows; and `status` shows every pair whatever the page size.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ceasefire_grpc::proto::{
    compliance_client::ComplianceClient, event::Body, AmendmentKind, ComplianceStatus,
    GetHistoryRequest, GetHistoryResponse, ListStatusesRequest, ListStatusesResponse, SignedEvent,
    StatusChange, StatusFilter,
};
use ceasefire_testkit::fixture::{Client, TestNode};
use ceasefire_testkit::harness;
use ceasefire_testkit::scenario::{
    bodies, seconds_ago, square, Commitment, Zone, BOOTSTRAP_ENTRIES, DEV_COMMITMENT, DEV_MONITOR,
    DEV_ZONE,
};
use tonic::transport::Channel;
use tonic::Code;

type Compliance = ComplianceClient<Channel>;
type Key = (String, String);

const UNOBSERVED: i32 = ComplianceStatus::Unobserved as i32;
const REPORTED: i32 = ComplianceStatus::ViolationReported as i32;

/// The server's page sizes (compliance.proto).
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// A square zone of one degree, latitude `lat..lat + 1`, longitude 37..38.
fn zone_body(zone_id: &str, lat: f64) -> Body {
    Zone::new(zone_id, square(lat, 37.0, 1.0)).body()
}

/// A commitment of a day's window and a quorum of one, in force since a day ago.
fn commitment_body(commitment_id: &str, zone_ids: &[String]) -> Body {
    let zone_ids: Vec<&str> = zone_ids.iter().map(String::as_str).collect();
    Commitment::new(commitment_id, &zone_ids)
        .window(24 * 3600)
        .quorum(1)
        .effective_from(seconds_ago(24 * 3600))
        .body()
}

fn key(zone_id: &str, commitment_id: &str) -> Key {
    (zone_id.to_string(), commitment_id.to_string())
}

fn dev_pair() -> Key {
    key(DEV_ZONE, DEV_COMMITMENT)
}

/// A dev node and the pairs it has, as defined here.
struct Ledger {
    node: TestNode,
    client: Client,
    compliance: Compliance,
    last_seq: u64,
    /// Every pair defined, the dev one included.
    pairs: BTreeSet<Key>,
    /// Zones defined here, for their latitude.
    zones: usize,
}

impl Ledger {
    async fn start() -> Ledger {
        let node = TestNode::start().await;
        let client = node.client.clone();
        let compliance = node.compliance().await;
        Ledger {
            node,
            client,
            compliance,
            last_seq: BOOTSTRAP_ENTRIES - 1,
            pairs: BTreeSet::from([dev_pair()]),
            zones: 0,
        }
    }

    async fn submit(&mut self, signed: SignedEvent) -> ceasefire_grpc::proto::Receipt {
        let receipt = self
            .client
            .submit(signed)
            .await
            .unwrap_or_else(|status| panic!("submission refused: {status:?}"))
            .into_inner();
        assert_eq!(receipt.seq, self.last_seq + 1, "seqs are not contiguous");
        self.last_seq = receipt.seq;
        receipt
    }

    async fn governance(&mut self, body: Body) {
        let signed = self.node.scenario.govern(body);
        self.submit(signed).await;
    }

    /// Defines `zones` and `commitments` binding each of them.
    async fn define(&mut self, zones: &[String], commitments: &[String]) {
        for zone in zones {
            // Distinct squares, all within latitude -80..80.
            let lat = -80.0 + self.zones as f64 * 1.5 % 160.0;
            self.zones += 1;
            self.governance(zone_body(zone, lat)).await;
        }
        for commitment in commitments {
            self.governance(commitment_body(commitment, zones)).await;
            for zone in zones {
                self.pairs.insert(key(zone, commitment));
            }
        }
    }

    /// A violation on the dev pair (UNOBSERVED -> VIOLATION_REPORTED) and
    /// its retraction (back): two changes of the dev pair, at these seqs.
    async fn toggle_dev_pair(&mut self) -> [u64; 2] {
        let observed = self.node.signed_observation("an explosion");
        let receipt = self.submit(observed).await;
        let retraction = bodies::amendment(
            receipt.seq,
            &receipt.leaf_hash,
            AmendmentKind::Retract,
            None,
            "reported in error",
        );
        let signed = self.node.scenario.signed(DEV_MONITOR, retraction);
        let retracted = self.submit(signed).await;
        [receipt.seq, retracted.seq]
    }
}

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:02}")).collect()
}

fn filter(zones: &[&str], commitments: &[&str], statuses: &[i32]) -> StatusFilter {
    StatusFilter {
        zone_ids: zones.iter().map(|id| id.to_string()).collect(),
        commitment_ids: commitments.iter().map(|id| id.to_string()).collect(),
        statuses: statuses.to_vec(),
    }
}

async fn list_page(
    compliance: &mut Compliance,
    filter: &StatusFilter,
    page_size: u32,
    page_token: &str,
) -> Result<ListStatusesResponse, tonic::Status> {
    compliance
        .list_statuses(ListStatusesRequest {
            filter: Some(filter.clone()),
            page_size,
            page_token: page_token.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn history_page(
    compliance: &mut Compliance,
    pair: &Key,
    page_size: u32,
    page_token: &str,
) -> Result<GetHistoryResponse, tonic::Status> {
    compliance
        .get_history(GetHistoryRequest {
            zone_id: pair.0.clone(),
            commitment_id: pair.1.clone(),
            page_size,
            page_token: page_token.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The most items a page of `page_size` holds.
fn limit(page_size: u32) -> usize {
    match page_size {
        0 => DEFAULT_PAGE,
        size => (size as usize).min(MAX_PAGE),
    }
}

fn keys_of(page: &ListStatusesResponse) -> Vec<Key> {
    page.pairs
        .iter()
        .map(|pair| key(&pair.zone_id, &pair.commitment_id))
        .collect()
}

/// Walks ListStatuses to the end with the page sizes given in turn (the
/// last repeating); checks each page's size and version; returns the keys
/// and the as_of_seq of each page.
async fn walk_statuses(
    compliance: &mut Compliance,
    filter: &StatusFilter,
    sizes: &[u32],
) -> (Vec<Key>, Vec<u64>) {
    let mut keys = Vec::new();
    let mut versions = Vec::new();
    let mut token = String::new();
    for page_number in 0.. {
        let size = sizes[page_number.min(sizes.len() - 1)];
        let page = list_page(compliance, filter, size, &token)
            .await
            .unwrap_or_else(|status| panic!("ListStatuses page {page_number}: {status:?}"));
        assert!(page.pairs.len() <= limit(size), "a page over its size");
        let version = page.version.as_ref().expect("a page without its version");
        assert_eq!(version.digest.len(), 32);
        versions.push(version.as_of_seq);
        keys.extend(keys_of(&page));
        if page.next_page_token.is_empty() {
            return (keys, versions);
        }
        assert_ne!(page.next_page_token, token, "the walk does not advance");
        token = page.next_page_token;
        assert!(page_number < 10_000, "the walk does not end");
    }
    unreachable!()
}

/// Walks a pair's history to the end; returns the changes and the
/// as_of_seq of each page.
async fn walk_history(
    compliance: &mut Compliance,
    pair: &Key,
    size: u32,
) -> (Vec<StatusChange>, Vec<u64>) {
    let mut changes = Vec::new();
    let mut versions = Vec::new();
    let mut token = String::new();
    loop {
        let page = history_page(compliance, pair, size, &token)
            .await
            .unwrap_or_else(|status| panic!("GetHistory: {status:?}"));
        assert!(page.changes.len() <= limit(size), "a page over its size");
        versions.push(page.version.expect("a page without its version").as_of_seq);
        changes.extend(page.changes);
        if page.next_page_token.is_empty() {
            return (changes, versions);
        }
        token = page.next_page_token;
        assert!(versions.len() < 10_000, "the walk does not end");
    }
}

fn change_keys(changes: &[StatusChange]) -> Vec<(u64, u32)> {
    changes
        .iter()
        .map(|change| (change.seq, change.index))
        .collect()
}

fn assert_invalid_token(result: Result<impl std::fmt::Debug, tonic::Status>, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    assert!(
        status.message().contains("page_token"),
        "{what}: the message does not name page_token: {}",
        status.message()
    );
    assert_eq!(
        ceasefire_grpc::errors::reason(&status),
        ceasefire_grpc::proto::ReasonCode::PageTokenInvalid,
        "{what}: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_statuses_pages_walk_every_pair_once_in_order() {
    let mut ledger = Ledger::start().await;
    // 40 zones by 26 commitments: 1,040 pairs, and the dev one.
    let zones = ids("zone", 40);
    let commitments = ids("pledge", 26);
    ledger.define(&zones, &commitments).await;
    let expected: Vec<Key> = ledger.pairs.iter().cloned().collect();
    assert_eq!(expected.len(), 1_041);
    let all = StatusFilter::default();
    let compliance = &mut ledger.compliance;

    // page_size 0 is 100; above 1000 is 1000; both with a next page.
    for (size, len) in [
        (0, DEFAULT_PAGE),
        (1, 1),
        (1000, MAX_PAGE),
        (1001, MAX_PAGE),
        (u32::MAX, MAX_PAGE),
    ] {
        let page = list_page(compliance, &all, size, "").await.unwrap();
        assert_eq!(page.pairs.len(), len, "page_size {size}");
        assert_eq!(keys_of(&page), expected[..len], "page_size {size}");
        assert!(!page.next_page_token.is_empty(), "page_size {size}");
        assert_eq!(
            page.version.as_ref().map(|version| version.as_of_seq),
            Some(ledger.last_seq)
        );
    }

    // Every walk is the whole list, in (zone, commitment) order, each pair
    // once, whatever the page sizes (which may change from page to page).
    for sizes in [&[0][..], &[7], &[1000], &[5000], &[1, 999, 3, 250]] {
        let (keys, versions) = walk_statuses(compliance, &all, sizes).await;
        assert_eq!(keys, expected, "page sizes {sizes:?}");
        assert!(versions.iter().all(|seq| *seq == ledger.last_seq));
    }
    let (_, versions) = walk_statuses(compliance, &all, &[0]).await;
    assert_eq!(versions.len(), 11, "1,041 pairs are 11 pages of 100");
    let (_, versions) = walk_statuses(compliance, &all, &[1000]).await;
    assert_eq!(versions.len(), 2, "1,041 pairs are 2 pages of 1000");
    // The last page is full, and has no token: nothing follows it.
    let (_, versions) = walk_statuses(compliance, &all, &[347]).await;
    assert_eq!(versions.len(), 3);

    // Filtered walks are the filtered list.
    let filters = [
        filter(&["zone-05", "zone-17", "no-such-zone"], &[], &[]),
        filter(&[], &["pledge-03"], &[]),
        filter(
            &["zone-39", "zone-00"],
            &["pledge-25", "pledge-00"],
            &[UNOBSERVED],
        ),
        filter(&[], &[], &[UNOBSERVED]),
        filter(&[], &[], &[REPORTED]),
        filter(&[DEV_ZONE], &[], &[]),
    ];
    for filter in &filters {
        let wanted: Vec<Key> = expected
            .iter()
            .filter(|(zone, commitment)| {
                (filter.zone_ids.is_empty() || filter.zone_ids.contains(zone))
                    && (filter.commitment_ids.is_empty()
                        || filter.commitment_ids.contains(commitment))
                    // Nothing was observed: every pair is UNOBSERVED.
                    && (filter.statuses.is_empty() || filter.statuses.contains(&UNOBSERVED))
            })
            .cloned()
            .collect();
        for sizes in [&[0][..], &[3], &[1]] {
            let (keys, _) = walk_statuses(compliance, filter, sizes).await;
            assert_eq!(keys, wanted, "filter {filter:?}, sizes {sizes:?}");
        }
    }

    // A token continues the same filter, its lists taken as sets.
    let zones_filter = filter(&["zone-05", "zone-17"], &[], &[]);
    let first = list_page(compliance, &zones_filter, 10, "").await.unwrap();
    let token = first.next_page_token.clone();
    let second = list_page(compliance, &zones_filter, 10, &token)
        .await
        .unwrap();
    let reordered = filter(&["zone-17", "zone-05", "zone-17"], &[], &[]);
    let same = list_page(compliance, &reordered, 10, &token).await.unwrap();
    assert_eq!(keys_of(&same), keys_of(&second));
    assert_eq!(keys_of(&second)[0], key("zone-05", "pledge-10"));

    // Tokens this server did not issue, or issued for another request, are
    // INVALID_ARGUMENT; they change nothing, and the good token still
    // gives the same page.
    let long = "A".repeat(4096);
    for garbage in [
        "garbage!",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AQ",
        long.as_str(),
    ] {
        assert_invalid_token(
            list_page(compliance, &zones_filter, 10, garbage).await,
            &format!("the token {garbage:.20?}"),
        );
    }
    for other in [
        filter(&["zone-05"], &[], &[]),
        filter(&["zone-05", "zone-17"], &["pledge-00"], &[]),
        filter(&["zone-05", "zone-17"], &[], &[UNOBSERVED]),
        StatusFilter::default(),
    ] {
        assert_invalid_token(
            list_page(compliance, &other, 10, &token).await,
            &format!("a token reused with filter {other:?}"),
        );
    }
    assert_invalid_token(
        history_page(compliance, &dev_pair(), 10, &token).await,
        "a ListStatuses token given to GetHistory",
    );
    let again = list_page(compliance, &zones_filter, 10, &token)
        .await
        .unwrap();
    assert_eq!(keys_of(&again), keys_of(&second));
    assert_eq!(again.next_page_token, second.next_page_token);
    assert_eq!(
        ledger.node.checkpoint().await.tree_size,
        ledger.last_seq + 1
    );

    ledger.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_history_pages_walk_every_change_once_in_order() {
    let mut ledger = Ledger::start().await;
    // The dev pair's creation (entry 3), then 30 changes.
    let mut expected = vec![(BOOTSTRAP_ENTRIES - 1, 0)];
    for _ in 0..15 {
        for seq in ledger.toggle_dev_pair().await {
            expected.push((seq, 0));
        }
    }
    // Another pair over the dev zone, for tokens used on the wrong pair.
    ledger
        .governance(commitment_body("other-pledge", &[DEV_ZONE.to_string()]))
        .await;
    let other = key(DEV_ZONE, "other-pledge");
    let compliance = &mut ledger.compliance;

    // One page of 1000 is the whole history: the unpaged answer.
    let whole = history_page(compliance, &dev_pair(), 1000, "")
        .await
        .unwrap();
    assert!(whole.next_page_token.is_empty());
    assert_eq!(change_keys(&whole.changes), expected);
    let statuses: Vec<i32> = whole
        .changes
        .iter()
        .map(|change| change.new_status)
        .collect();
    assert_eq!(statuses[..3], [UNOBSERVED, REPORTED, UNOBSERVED]);

    for size in [0, 1, 2, 4, 7, 31, 32, 5000] {
        let (changes, versions) = walk_history(compliance, &dev_pair(), size).await;
        assert_eq!(changes, whole.changes, "page_size {size}");
        assert!(versions.iter().all(|seq| *seq == ledger.last_seq));
        // 31 changes; a full last page has no token (31 is one page).
        let pages = 31usize.div_ceil(limit(size));
        assert_eq!(versions.len(), pages, "page_size {size}");
    }

    // Tokens: garbage, another pair's, a ListStatuses one.
    let first = history_page(compliance, &dev_pair(), 4, "").await.unwrap();
    let token = first.next_page_token.clone();
    assert!(!token.is_empty());
    let second = history_page(compliance, &dev_pair(), 4, &token)
        .await
        .unwrap();
    assert_eq!(change_keys(&second.changes), expected[4..8]);
    assert_invalid_token(
        history_page(compliance, &dev_pair(), 4, "not a token").await,
        "a garbage token",
    );
    assert_invalid_token(
        history_page(compliance, &other, 4, &token).await,
        "the dev pair's token for another pair",
    );
    // Checked before the pair: a token for a pair that does not exist is
    // refused as a token.
    assert_invalid_token(
        history_page(compliance, &key("nowhere", DEV_COMMITMENT), 4, &token).await,
        "the dev pair's token for no pair",
    );
    let list_token = list_page(compliance, &StatusFilter::default(), 1, "")
        .await
        .unwrap()
        .next_page_token;
    assert_invalid_token(
        history_page(compliance, &dev_pair(), 4, &list_token).await,
        "a ListStatuses token",
    );
    let again = history_page(compliance, &dev_pair(), 4, &token)
        .await
        .unwrap();
    assert_eq!(again.changes, second.changes);
    assert_eq!(again.next_page_token, second.next_page_token);
    // The other pair's history has its creation only.
    let (changes, _) = walk_history(compliance, &other, 1).await;
    assert_eq!(change_keys(&changes), vec![(ledger.last_seq, 0)]);

    ledger.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_stay_consistent_while_the_log_grows() {
    let mut ledger = Ledger::start().await;
    let zones = ids("zone", 10);
    ledger.define(&zones, &ids("pledge", 2)).await;
    let before: Vec<Key> = ledger.pairs.iter().cloned().collect();
    assert_eq!(before.len(), 21);
    let all = StatusFilter::default();

    // ListStatuses: page 1 (3 pairs), then a pair before the position and
    // one after it are defined, then the rest.
    let mut compliance = ledger.compliance.clone();
    let first = list_page(&mut compliance, &all, 3, "").await.unwrap();
    let first_version = first.version.as_ref().unwrap().as_of_seq;
    assert_eq!(keys_of(&first), before[..3]);
    ledger
        .define(&["aaa-sector".to_string()], &["aaa-pledge".to_string()])
        .await;
    ledger
        .define(&["zzz-sector".to_string()], &["zzz-pledge".to_string()])
        .await;
    let mut keys = keys_of(&first);
    let mut versions = vec![first_version];
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let page = list_page(&mut compliance, &all, 3, &token).await.unwrap();
        versions.push(page.version.as_ref().unwrap().as_of_seq);
        keys.extend(keys_of(&page));
        token = page.next_page_token;
    }
    let mut wanted = before.clone();
    wanted.push(key("zzz-sector", "zzz-pledge"));
    assert_eq!(keys, wanted, "new pairs appear after the position only");
    assert!(versions[1..].iter().all(|seq| *seq == ledger.last_seq));
    assert!(first_version < ledger.last_seq);

    // GetHistory: a page, new changes, the rest: every change up to the
    // last page's version, each once.
    ledger.toggle_dev_pair().await;
    let (expected_before, _) = walk_history(&mut compliance, &dev_pair(), 1000).await;
    assert_eq!(expected_before.len(), 3);
    let first = history_page(&mut compliance, &dev_pair(), 1, "")
        .await
        .unwrap();
    assert_eq!(first.changes, expected_before[..1]);
    let mut new_seqs = Vec::new();
    for _ in 0..3 {
        new_seqs.extend(ledger.toggle_dev_pair().await);
    }
    let mut changes = first.changes;
    let mut token = first.next_page_token;
    let mut last_version = 0;
    while !token.is_empty() {
        let page = history_page(&mut compliance, &dev_pair(), 2, &token)
            .await
            .unwrap();
        last_version = page.version.as_ref().unwrap().as_of_seq;
        changes.extend(page.changes);
        token = page.next_page_token;
    }
    assert_eq!(last_version, ledger.last_seq);
    let mut expected = change_keys(&expected_before);
    expected.extend(new_seqs.iter().map(|seq| (*seq, 0)));
    assert_eq!(change_keys(&changes), expected);

    // Walks while another client writes: each walk is in order, each pair
    // once, every pair there, versions never going back.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut client = ledger.node.new_client().await;
        let scenario = ledger.node.scenario.clone();
        tokio::spawn(async move {
            let mut written = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let signed = scenario.observation().narrative("during a walk").signed();
                client
                    .submit(signed)
                    .await
                    .expect("a write during the walks");
                written += 1;
            }
            written
        })
    };
    let every: Vec<Key> = ledger.pairs.iter().cloned().collect();
    let mut history_lengths = Vec::new();
    for _ in 0..5 {
        let (keys, versions) = walk_statuses(&mut compliance, &all, &[1]).await;
        assert_eq!(keys, every, "a walk while the log grows");
        assert!(versions.windows(2).all(|pair| pair[0] <= pair[1]));
        let (changes, versions) = walk_history(&mut compliance, &dev_pair(), 2).await;
        let keys = change_keys(&changes);
        assert!(
            keys.windows(2).all(|pair| pair[0] < pair[1]),
            "history out of order"
        );
        assert!(keys.iter().all(|(seq, _)| seq <= versions.last().unwrap()));
        history_lengths.push(keys.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(written > 0);
    // The pair's history only grows. (The first write takes the dev pair
    // to VIOLATION_REPORTED; with one reporter and a quorum of 2, later
    // writes change no status, so the lengths need not grow every time.)
    assert!(history_lengths.windows(2).all(|pair| pair[0] <= pair[1]));

    ledger.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_every_pair_when_they_span_pages() {
    let mut ledger = Ledger::start().await;
    let zones = ids("zone", 6);
    ledger.define(&zones, &ids("pledge", 3)).await;
    assert_eq!(ledger.pairs.len(), 19);
    let url = ledger.node.node.url();
    let scratch = tempfile::tempdir().unwrap();
    let scratch_path = scratch.path().to_path_buf();
    let (table, json) = tokio::task::spawn_blocking(move || {
        let run = |extra: &[&str]| {
            let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
                vec![&"status", &"--server", &url, &"--page-size", &"4"];
            for arg in extra {
                args.push(arg);
            }
            let output = harness::run_bounded(
                harness::command(env!("CARGO_BIN_EXE_ceasefire-ledger"), &args),
                &scratch_path,
                Duration::from_secs(60),
            );
            assert!(output.status.success(), "status failed:\n{}", output.stderr);
            output.stdout
        };
        (run(&[]), run(&["--json"]))
    })
    .await
    .unwrap();

    // The table: a row per zone, a column per commitment, every cell set
    // where a commitment binds the zone.
    for zone in zones.iter().map(String::as_str).chain([DEV_ZONE]) {
        let row = table
            .lines()
            .find(|line| line.starts_with(zone))
            .unwrap_or_else(|| panic!("no row for {zone}:\n{table}"));
        let cells = row
            .split_whitespace()
            .filter(|cell| *cell == "UNOBSERVED")
            .count();
        assert_eq!(cells, if zone == DEV_ZONE { 1 } else { 3 }, "{row}");
    }
    let header = table.lines().next().unwrap();
    for commitment in ids("pledge", 3)
        .iter()
        .map(String::as_str)
        .chain([DEV_COMMITMENT])
    {
        assert!(header.contains(commitment), "{header}");
    }
    assert!(
        table.contains(&format!("as of entry {}", ledger.last_seq)),
        "{table}"
    );

    // The JSON: one response with every pair.
    let response: serde_json::Value = serde_json::from_str(&json).unwrap();
    let listed: Vec<Key> = response["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            key(
                pair["zoneId"].as_str().unwrap(),
                pair["commitmentId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, ledger.pairs.iter().cloned().collect::<Vec<_>>());
    assert!(response
        .get("nextPageToken")
        .is_none_or(|token| token == ""));

    ledger.node.shutdown().await;
}
