//! Known-answer vectors of the compliance projection (docs/spec.md,
//! section 9), as language-neutral JSON in `testdata/projection/`.
//!
//! Each scenario writes a small log entry by entry (real events, signed
//! with fixed seeds, fixed `received_at` values, fixed nonces), replays it
//! through `core::replay::Replay` (every check `verify` makes, signatures
//! included) and records, per entry, the leaf, its status changes and the
//! projection head (as_of_seq, log time, digest), and at chosen entries the
//! whole state: every pair's summary and the rollups.
//!
//! By default the test rebuilds every file in memory and asserts that it
//! equals the committed one byte for byte, so a change to the fold (or to
//! the leaf bytes) fails here. To rewrite the files after a deliberate
//! change:
//!
//! ```text
//! CEASEFIRE_UPDATE_VECTORS=1 cargo test --test projection_vectors
//! ```
//!
//! The digests are also recomputed here from the recorded summaries with
//! the encoding of the spec (not with `Projection::digest`), and each
//! scenario asserts the changes its notes describe, so a vector says what
//! its description claims.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ceasefire_core::leaf::Leaf;
use ceasefire_core::projection::{severity, PairSummary, StatusChange};
use ceasefire_core::replay::{Replay, ReplayedEntry};
use ceasefire_core::rules::{micros_timestamp as timestamp, timestamp_micros};
use ceasefire_core::signing::canonical_signatures;
use ceasefire_grpc::client::sign;
use ceasefire_grpc::proto::{
    event::Body, Amendment, AmendmentKind, Category, CommitmentKind, ComplianceStatus,
    DefineCommitment, DefineZone, Dispute, Event, Finding, Genesis, LatLon, Location, Observation,
    Party, Polygon, RegisterParty, Role, ZoneKind,
};
use ceasefire_testkit::scenario::seeded_key;
use ed25519_dalek::SigningKey;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Set to rewrite the files instead of checking them.
const UPDATE_VAR: &str = "CEASEFIRE_UPDATE_VECTORS";

const AGREEMENT: &str = "vector-agreement";
const ORIGIN: &str = "vectors.example/ceasefire-ledger";
const SIGNATORY: &str = "signatory-a";
const MISSION_A: &str = "mission-a";
const MISSION_B: &str = "mission-b";
const MISSION_C: &str = "mission-c";

const ZONE_A: &str = "zone-a";
const ZONE_B: &str = "zone-b";
const ZONE_C: &str = "zone-c";
const ZONE_WIDE: &str = "zone-wide";

/// 2026-01-01T00:00:00Z, in microseconds: the bootstrap's log time.
const T0: i64 = 1_767_225_600_000_000;
const SECOND: i64 = 1_000_000;

/// Log time `seconds` after [`T0`].
fn at(seconds: i64) -> i64 {
    T0 + seconds * SECOND
}

const UNSPECIFIED: i32 = ComplianceStatus::Unspecified as i32;
const COMPLIANT: i32 = ComplianceStatus::Compliant as i32;
const UNOBSERVED: i32 = ComplianceStatus::Unobserved as i32;
const OBSTRUCTED: i32 = ComplianceStatus::Obstructed as i32;
const REPORTED: i32 = ComplianceStatus::ViolationReported as i32;
const CONFIRMED: i32 = ComplianceStatus::ViolationConfirmed as i32;

use Finding::{AccessDenied as ACCESS_DENIED, Compliance as COMPLIANCE, Violation as VIOLATION};

const EXPLOSION: Category = Category::Explosion;
const SMALL_ARMS: Category = Category::SmallArmsFire;
const WEAPON_FORWARD: Category = Category::WeaponInViolationOfWithdrawalLine;
const WEAPON_MISSING: Category = Category::WeaponMissingFromHoldingArea;
const FORCES: Category = Category::ForcesInDisengagementArea;
const MOVEMENT: Category = Category::RestrictionOfMovement;
const PATROL: Category = Category::RoutinePatrol;

// ---------------------------------------------------------------------------
// The JSON files.

#[derive(Serialize)]
struct VectorFile {
    description: String,
    spec: &'static str,
    regenerate: &'static str,
    /// The parties of the log and the Ed25519 seeds of their keys.
    parties: Vec<PartyVector>,
    /// The projection before any entry.
    empty: HeadVector,
    entries: Vec<EntryVector>,
    /// The whole state after some entries (always after the last).
    states: Vec<StateVector>,
}

#[derive(Serialize)]
struct PartyVector {
    party_id: String,
    role: &'static str,
    seed: String,
    public_key: String,
}

#[derive(Serialize)]
struct HeadVector {
    /// `null` before any entry (the digest then encodes 2^64 - 1).
    as_of_seq: Option<u64>,
    log_time_micros: i64,
    digest: String,
}

#[derive(Serialize)]
struct EntryVector {
    seq: u64,
    received_at_micros: i64,
    /// What the entry is and what it does to the projection (informative).
    note: String,
    /// The leaf bytes (docs/spec.md section 3), hex.
    leaf: String,
    leaf_hash: String,
    /// The status changes folding this entry emits, in index order.
    changes: Vec<ChangeVector>,
    /// The projection head after the entry.
    log_time_micros: i64,
    digest: String,
}

#[derive(Serialize)]
struct ChangeVector {
    seq: u64,
    index: u32,
    zone_id: String,
    commitment_id: String,
    old_status: i32,
    new_status: i32,
    old_disputed: bool,
    new_disputed: bool,
    /// The pair after the change.
    pair: SummaryVector,
}

#[derive(Serialize)]
struct SummaryVector {
    status: i32,
    disputed: bool,
    observations: u32,
    violations: u32,
    counts_by_category: Vec<CategoryVector>,
    distinct_reporters: u32,
    distinct_violation_reporters: u32,
    last_violation_at_micros: Option<i64>,
    last_observation_at_micros: Option<i64>,
    updated_seq: u64,
}

#[derive(Serialize)]
struct CategoryVector {
    category: i32,
    count: u32,
}

#[derive(Serialize)]
struct PairVector {
    zone_id: String,
    commitment_id: String,
    #[serde(flatten)]
    summary: SummaryVector,
}

#[derive(Serialize)]
struct StateVector {
    as_of_seq: u64,
    log_time_micros: i64,
    digest: String,
    /// Every pair, in (zone_id, commitment_id) order.
    pairs: Vec<PairVector>,
    /// Every zone some pair names, in zone_id order: its most severe status.
    zones: Vec<ZoneVector>,
    /// Every commitment some pair names, in commitment_id order.
    commitments: Vec<CommitmentVector>,
}

#[derive(Serialize)]
struct ZoneVector {
    zone_id: String,
    status: i32,
}

#[derive(Serialize)]
struct CommitmentVector {
    commitment_id: String,
    /// Statuses with at least one zone, ascending by status value.
    zones_by_status: Vec<StatusCountVector>,
}

#[derive(Serialize)]
struct StatusCountVector {
    status: i32,
    zones: u32,
}

fn summary_vector(summary: &PairSummary) -> SummaryVector {
    SummaryVector {
        status: summary.status as i32,
        disputed: summary.disputed,
        observations: summary.observations,
        violations: summary.violations,
        counts_by_category: summary
            .counts_by_category
            .iter()
            .map(|&(category, count)| CategoryVector {
                category: category as i32,
                count,
            })
            .collect(),
        distinct_reporters: summary.distinct_reporters,
        distinct_violation_reporters: summary.distinct_violation_reporters,
        last_violation_at_micros: summary.last_violation_at_micros,
        last_observation_at_micros: summary.last_observation_at_micros,
        updated_seq: summary.updated_seq,
    }
}

fn change_vector(change: &StatusChange) -> ChangeVector {
    ChangeVector {
        seq: change.seq,
        index: change.index,
        zone_id: change.zone_id.clone(),
        commitment_id: change.commitment_id.clone(),
        old_status: change.old_status as i32,
        new_status: change.new_status as i32,
        old_disputed: change.old_disputed,
        new_disputed: change.new_disputed,
        pair: summary_vector(&change.pair),
    }
}

// ---------------------------------------------------------------------------
// The digest, from the spec's encoding (docs/spec.md section 9), over what
// the JSON records: an independent check of `Projection::digest`.

fn spec_digest(as_of_seq: Option<u64>, log_time_micros: i64, pairs: &[PairVector]) -> String {
    let mut out = Vec::new();
    out.extend_from_slice(b"ceasefire-ledger:projection:v1\n");
    out.extend_from_slice(&as_of_seq.unwrap_or(u64::MAX).to_be_bytes());
    out.extend_from_slice(&log_time_micros.to_be_bytes());
    out.extend_from_slice(&(pairs.len() as u64).to_be_bytes());
    for pair in pairs {
        for text in [&pair.zone_id, &pair.commitment_id] {
            let length = u8::try_from(text.len()).expect("identifiers are at most 64 bytes");
            out.push(length);
            out.extend_from_slice(text.as_bytes());
        }
        let summary = &pair.summary;
        out.extend_from_slice(&summary.status.to_be_bytes());
        out.push(u8::from(summary.disputed));
        for count in [
            summary.observations,
            summary.violations,
            summary.distinct_reporters,
            summary.distinct_violation_reporters,
        ] {
            out.extend_from_slice(&count.to_be_bytes());
        }
        for time in [
            summary.last_violation_at_micros,
            summary.last_observation_at_micros,
        ] {
            out.extend_from_slice(&time.unwrap_or(i64::MIN).to_be_bytes());
        }
        out.extend_from_slice(&summary.updated_seq.to_be_bytes());
        out.extend_from_slice(&(summary.counts_by_category.len() as u32).to_be_bytes());
        for entry in &summary.counts_by_category {
            out.extend_from_slice(&entry.category.to_be_bytes());
            out.extend_from_slice(&entry.count.to_be_bytes());
        }
    }
    hex::encode(Sha256::digest(&out))
}

// ---------------------------------------------------------------------------
// Building a log.

/// A square-cornered zone: latitude `lat..lat + height`, longitude
/// `lon..lon + width` (vertices counter-clockwise from the south-west).
fn zone_body(zone_id: &str, version: u32, lat: f64, lon: f64, height: f64, width: f64) -> Body {
    let vertex = |lat, lon| LatLon { lat, lon };
    Body::DefineZone(DefineZone {
        zone_id: zone_id.into(),
        version,
        name: format!("Zone {zone_id}"),
        kind: ZoneKind::ContactLineSector as i32,
        boundary: Some(Polygon {
            vertices: vec![
                vertex(lat, lon),
                vertex(lat, lon + width),
                vertex(lat + height, lon + width),
                vertex(lat + height, lon),
            ],
        }),
    })
}

/// The point observations in `zone_id` are made at: well inside the zone as
/// first defined (never near an edge, so containment is unambiguous).
fn centre(zone_id: &str) -> (f64, f64) {
    match zone_id {
        ZONE_A => (48.5, 37.5),
        ZONE_B => (49.5, 37.5),
        ZONE_C => (50.5, 37.5),
        other => panic!("no centre for {other}"),
    }
}

fn observation_at(
    zone_id: &str,
    (lat, lon): (f64, f64),
    commitment_id: &str,
    finding: Finding,
    category: Category,
    until: i64,
) -> Observation {
    Observation {
        observed_from: Some(timestamp(until - 60 * SECOND)),
        observed_until: Some(timestamp(until)),
        location: Some(Location {
            point: Some(LatLon { lat, lon }),
            accuracy_m: 100.0,
        }),
        zone_id: zone_id.into(),
        commitment_id: commitment_id.into(),
        finding: finding as i32,
        category: category as i32,
        quantity: 1,
        attributed_side: String::new(),
        evidence: Vec::new(),
        narrative: format!("{finding:?}: {category:?}"),
    }
}

/// An observation naming its zone, made at the zone's centre.
fn obs(
    zone_id: &str,
    commitment_id: &str,
    finding: Finding,
    category: Category,
    until: i64,
) -> Observation {
    observation_at(
        zone_id,
        centre(zone_id),
        commitment_id,
        finding,
        category,
        until,
    )
}

/// An observation naming no zone: the ledger derives it from the point.
fn obs_unzoned(
    point: (f64, f64),
    commitment_id: &str,
    finding: Finding,
    category: Category,
    until: i64,
) -> Observation {
    observation_at("", point, commitment_id, finding, category, until)
}

/// "Violation Explosion in zone-a/ceasefire until 1767225605000000", for notes.
fn describe(observation: &Observation) -> String {
    let until =
        timestamp_micros("observed_until", &observation.observed_until).expect("a valid time");
    let zone = if observation.zone_id.is_empty() {
        "(zone derived)"
    } else {
        &observation.zone_id
    };
    format!(
        "{:?} {:?} in {zone}/{} until {until}",
        Finding::try_from(observation.finding).expect("a finding"),
        Category::try_from(observation.category).expect("a category"),
        observation.commitment_id,
    )
}

/// One expected change: (zone, commitment, old status, new status, new disputed).
type Expected<'a> = (&'a str, &'a str, i32, i32, bool);

/// A log being written, replayed and recorded.
struct Scenario {
    description: String,
    replay: Replay,
    keys: BTreeMap<String, (Role, u8)>,
    next_party_seed: u8,
    entries: Vec<EntryVector>,
    states: Vec<StateVector>,
    last: Option<ReplayedEntry>,
}

impl Scenario {
    /// Genesis (signatory-a, threshold 1, default skew of 300 s) and three
    /// monitoring missions, all received at T0: entries 0 to 3.
    fn new(description: &str) -> Scenario {
        let mut scenario = Scenario {
            description: description.to_string(),
            replay: Replay::new(),
            keys: BTreeMap::new(),
            next_party_seed: 0x41,
            entries: Vec::new(),
            states: Vec::new(),
            last: None,
        };
        scenario
            .keys
            .insert(SIGNATORY.into(), (Role::Signatory, 0x11));
        let genesis = Body::Genesis(Genesis {
            origin: ORIGIN.into(),
            title: "Projection vectors".into(),
            signatories: vec![scenario.party(SIGNATORY)],
            threshold: 1,
            operator_public_key: seeded_key(0x0f).verifying_key().to_bytes().to_vec(),
            max_clock_skew_seconds: 0,
        });
        scenario.push(
            SIGNATORY,
            T0,
            genesis,
            "Genesis: signatory-a, threshold 1, skew 300 s. No pairs.",
        );
        for (party_id, seed) in [(MISSION_A, 0x21), (MISSION_B, 0x22), (MISSION_C, 0x23)] {
            scenario.keys.insert(party_id.into(), (Role::Monitor, seed));
            let register = Body::RegisterParty(RegisterParty {
                party: Some(scenario.party(party_id)),
            });
            scenario.push(
                SIGNATORY,
                T0,
                register,
                &format!("RegisterParty {party_id} (MONITOR)."),
            );
        }
        scenario
    }

    fn key(&self, party_id: &str) -> SigningKey {
        seeded_key(self.keys[party_id].1)
    }

    fn party(&self, party_id: &str) -> Party {
        Party {
            party_id: party_id.into(),
            name: format!("Party {party_id}"),
            role: self.keys[party_id].0 as i32,
            public_keys: vec![self.key(party_id).verifying_key().to_bytes().to_vec()],
        }
    }

    fn next_seq(&self) -> u64 {
        self.replay.size()
    }

    fn leaf_hash(&self, seq: u64) -> Vec<u8> {
        self.replay.leaf_hashes()[seq as usize].to_vec()
    }

    /// Appends the event `author` signs, received at `at`; returns its seq.
    fn push(&mut self, author: &str, at: i64, body: Body, note: &str) -> u64 {
        let seq = self.next_seq();
        let event = Event {
            agreement_id: AGREEMENT.into(),
            author: author.into(),
            created_at: Some(timestamp(at)),
            nonce: format!("nonce-{seq:08}").into_bytes(),
            body: Some(body),
        };
        let signed = sign(&event, &[&self.key(author)]);
        let signatures = canonical_signatures(
            signed
                .signatures
                .iter()
                .map(|s| (s.public_key.clone(), s.signature.clone())),
        )
        .expect("one signature");
        let leaf = Leaf {
            seq,
            prev_leaf_hash: self.replay.leaf_hashes().last().copied().unwrap_or([0; 32]),
            received_at_micros: at,
            payload: signed.payload,
            signatures,
        }
        .encode();
        let entry = self
            .replay
            .apply(&leaf, false)
            .unwrap_or_else(|error| panic!("the vector log is refused: {error}"));
        assert_eq!(
            hex::encode(entry.leaf_hash),
            hex::encode(ceasefire_testkit::fixture::leaf_hash(&leaf))
        );
        let projection = &self.replay.projection;
        assert_eq!(projection.as_of_seq, Some(seq));
        self.entries.push(EntryVector {
            seq,
            received_at_micros: at,
            note: note.to_string(),
            leaf: hex::encode(&leaf),
            leaf_hash: hex::encode(entry.leaf_hash),
            changes: entry.changes.iter().map(change_vector).collect(),
            log_time_micros: projection.log_time_micros,
            digest: hex::encode(projection.digest()),
        });
        self.last = Some(entry);
        seq
    }

    /// Asserts the changes of the last entry.
    fn expect(&self, expected: &[Expected]) {
        let entry = self.last.as_ref().expect("an entry");
        let actual: Vec<(String, String, i32, i32, bool)> = entry
            .changes
            .iter()
            .map(|change| {
                (
                    change.zone_id.clone(),
                    change.commitment_id.clone(),
                    change.old_status as i32,
                    change.new_status as i32,
                    change.new_disputed,
                )
            })
            .collect();
        let expected: Vec<(String, String, i32, i32, bool)> = expected
            .iter()
            .map(|&(zone, commitment, old, new, disputed)| {
                (zone.into(), commitment.into(), old, new, disputed)
            })
            .collect();
        assert_eq!(actual, expected, "changes of entry {}", entry.seq);
        for (index, change) in entry.changes.iter().enumerate() {
            assert_eq!(change.index as usize, index);
            assert_eq!(change.seq, entry.seq);
        }
    }

    /// The current summary of a pair.
    fn summary(&self, zone_id: &str, commitment_id: &str) -> &PairSummary {
        &self
            .replay
            .projection
            .pairs
            .get(&(zone_id.to_string(), commitment_id.to_string()))
            .unwrap_or_else(|| panic!("no pair ({zone_id}, {commitment_id})"))
            .summary
    }

    fn zone(&mut self, at: i64, zone_id: &str, version: u32, lat: f64, height: f64) -> u64 {
        let note = format!(
            "DefineZone {zone_id} v{version}: lat {lat}..{}, lon 37..38.",
            lat + height
        );
        self.push(
            SIGNATORY,
            at,
            zone_body(zone_id, version, lat, 37.0, height, 1.0),
            &note,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn commitment(
        &mut self,
        at: i64,
        commitment_id: &str,
        version: u32,
        zone_ids: &[&str],
        window_seconds: u64,
        quorum: u32,
        effective_from: i64,
        note: &str,
    ) -> u64 {
        let body = Body::DefineCommitment(DefineCommitment {
            commitment_id: commitment_id.into(),
            version,
            name: format!("Commitment {commitment_id}"),
            kind: CommitmentKind::Ceasefire as i32,
            zone_ids: zone_ids.iter().map(|zone| zone.to_string()).collect(),
            window_seconds,
            corroboration_quorum: quorum,
            effective_from: Some(timestamp(effective_from)),
        });
        let note = format!(
            "DefineCommitment {commitment_id} v{version}: zones {zone_ids:?}, window {window_seconds} s, quorum {quorum}, effective_from {effective_from}. {note}"
        );
        self.push(SIGNATORY, at, body, &note)
    }

    fn observe(&mut self, author: &str, at: i64, observation: Observation, note: &str) -> u64 {
        let note = format!(
            "Observation by {author}: {}. {note}",
            describe(&observation)
        );
        self.push(author, at, Body::Observation(observation), &note)
    }

    fn dispute(&mut self, at: i64, target_seq: u64, note: &str) -> u64 {
        let body = Body::Dispute(Dispute {
            target_seq,
            target_leaf_hash: self.leaf_hash(target_seq),
            reason: "contested".into(),
        });
        self.push(
            SIGNATORY,
            at,
            body,
            &format!("Dispute of entry {target_seq} by {SIGNATORY}. {note}"),
        )
    }

    fn retract(&mut self, author: &str, at: i64, target_seq: u64, note: &str) -> u64 {
        let body = Body::Amendment(Amendment {
            target_seq,
            target_leaf_hash: self.leaf_hash(target_seq),
            kind: AmendmentKind::Retract as i32,
            correction: None,
            reason: "reported in error".into(),
        });
        self.push(
            author,
            at,
            body,
            &format!("Amendment RETRACT of entry {target_seq} by {author}. {note}"),
        )
    }

    fn correct(
        &mut self,
        author: &str,
        at: i64,
        target_seq: u64,
        correction: Observation,
        note: &str,
    ) -> u64 {
        let note = format!(
            "Amendment CORRECT of entry {target_seq} by {author}: now {}. {note}",
            describe(&correction)
        );
        let body = Body::Amendment(Amendment {
            target_seq,
            target_leaf_hash: self.leaf_hash(target_seq),
            kind: AmendmentKind::Correct as i32,
            correction: Some(correction),
            reason: "corrected".into(),
        });
        self.push(author, at, body, &note)
    }

    /// An entry the projection ignores but for its log time: a new
    /// observer party registered.
    fn tick(&mut self, at: i64, note: &str) -> u64 {
        let party_id = format!("observer-{:02x}", self.next_party_seed);
        self.keys
            .insert(party_id.clone(), (Role::Observer, self.next_party_seed));
        self.next_party_seed += 1;
        let body = Body::RegisterParty(RegisterParty {
            party: Some(self.party(&party_id)),
        });
        self.push(
            SIGNATORY,
            at,
            body,
            &format!("RegisterParty {party_id} (OBSERVER): only advances log time. {note}"),
        )
    }

    /// Records the whole state after the last entry.
    fn snapshot(&mut self) {
        let projection = &self.replay.projection;
        let pairs: Vec<PairVector> = projection
            .pairs
            .iter()
            .map(|((zone_id, commitment_id), pair)| PairVector {
                zone_id: zone_id.clone(),
                commitment_id: commitment_id.clone(),
                summary: summary_vector(&pair.summary),
            })
            .collect();
        let mut zones: BTreeMap<String, ComplianceStatus> = BTreeMap::new();
        let mut commitments: BTreeMap<String, BTreeMap<i32, u32>> = BTreeMap::new();
        for ((zone_id, commitment_id), pair) in &projection.pairs {
            let status = pair.summary.status;
            let worst = zones.entry(zone_id.clone()).or_insert(status);
            if severity(status) > severity(*worst) {
                *worst = status;
            }
            *commitments
                .entry(commitment_id.clone())
                .or_default()
                .entry(status as i32)
                .or_default() += 1;
        }
        let as_of_seq = projection.as_of_seq.expect("after an entry");
        let digest = hex::encode(projection.digest());
        assert_eq!(
            spec_digest(Some(as_of_seq), projection.log_time_micros, &pairs),
            digest,
            "the spec's encoding and Projection::digest differ after entry {as_of_seq}"
        );
        if self.states.last().map(|state| state.as_of_seq) == Some(as_of_seq) {
            return;
        }
        self.states.push(StateVector {
            as_of_seq,
            log_time_micros: projection.log_time_micros,
            digest,
            pairs,
            zones: zones
                .into_iter()
                .map(|(zone_id, status)| ZoneVector {
                    zone_id,
                    status: status as i32,
                })
                .collect(),
            commitments: commitments
                .into_iter()
                .map(|(commitment_id, counts)| CommitmentVector {
                    commitment_id,
                    zones_by_status: counts
                        .into_iter()
                        .map(|(status, zones)| StatusCountVector { status, zones })
                        .collect(),
                })
                .collect(),
        });
    }

    fn finish(mut self) -> VectorFile {
        self.snapshot();
        let empty = ceasefire_core::projection::Projection::new();
        let empty_digest = hex::encode(empty.digest());
        assert_eq!(spec_digest(None, 0, &[]), empty_digest);
        let parties = self
            .keys
            .iter()
            .map(|(party_id, &(role, seed))| PartyVector {
                party_id: party_id.clone(),
                role: match role {
                    Role::Signatory => "SIGNATORY",
                    Role::Monitor => "MONITOR",
                    Role::Observer => "OBSERVER",
                    Role::Unspecified => unreachable!(),
                },
                seed: hex::encode([seed; 32]),
                public_key: hex::encode(seeded_key(seed).verifying_key().to_bytes()),
            })
            .collect();
        VectorFile {
            description: self.description,
            spec: "docs/spec.md section 9 (compliance projection)",
            regenerate: "CEASEFIRE_UPDATE_VECTORS=1 cargo test --test projection_vectors",
            parties,
            empty: HeadVector {
                as_of_seq: None,
                log_time_micros: 0,
                digest: empty_digest,
            },
            entries: self.entries,
            states: self.states,
        }
    }
}

// ---------------------------------------------------------------------------
// The scenarios.

fn window_expiry() -> VectorFile {
    let mut s = Scenario::new(
        "Window expiry by log time. Commitment ceasefire (window 60 s, quorum 1) over zone-a and zone-b. \
         An observation counts while observed_until + window >= log time (inclusive: it is still in at \
         exactly that log time, out 1 microsecond later); every entry's log time expires observations in \
         every pair, whatever the entry is; an observation already out of its window when received is never \
         counted; an observed_until ahead of log time (within the skew) counts and sets last_observation_at \
         ahead of log time; two pairs expiring in one entry give two changes, in (zone, commitment) order.",
    );
    s.zone(T0, ZONE_A, 1, 48.0, 1.0);
    s.zone(T0, ZONE_B, 1, 49.0, 1.0);
    s.commitment(
        T0,
        "ceasefire",
        1,
        &[ZONE_A, ZONE_B],
        60,
        1,
        T0,
        "Two pairs created.",
    );
    s.expect(&[
        (ZONE_A, "ceasefire", UNSPECIFIED, UNOBSERVED, false),
        (ZONE_B, "ceasefire", UNSPECIFIED, UNOBSERVED, false),
    ]);
    s.observe(
        MISSION_A,
        at(10),
        obs(ZONE_A, "ceasefire", COMPLIANCE, PATROL, at(5)),
        "Counted until log time passes T0+65 s.",
    );
    s.expect(&[(ZONE_A, "ceasefire", UNOBSERVED, COMPLIANT, false)]);
    s.observe(
        MISSION_B,
        at(20),
        obs(ZONE_B, "ceasefire", VIOLATION, SMALL_ARMS, at(15)),
        "Quorum 1: confirmed at once.",
    );
    s.expect(&[(ZONE_B, "ceasefire", UNOBSERVED, CONFIRMED, false)]);
    s.observe(
        MISSION_A,
        at(30),
        obs(ZONE_A, "ceasefire", COMPLIANCE, PATROL, at(40)),
        "observed_until 10 s ahead of log time: counted, last_observation_at is T0+40 s.",
    );
    s.expect(&[]);
    assert_eq!(
        s.summary(ZONE_A, "ceasefire").last_observation_at_micros,
        Some(at(40))
    );
    s.snapshot();
    s.tick(
        at(65),
        "Log time T0+65 s = T0+5 s + 60 s: the first zone-a report is still in (inclusive).",
    );
    s.expect(&[]);
    assert_eq!(s.summary(ZONE_A, "ceasefire").observations, 2);
    s.snapshot();
    s.tick(at(65) + 1, "One microsecond later it leaves: zone-a keeps one report, same status; its summary (and updated_seq) change.");
    s.expect(&[]);
    assert_eq!(s.summary(ZONE_A, "ceasefire").observations, 1);
    assert_eq!(s.summary(ZONE_A, "ceasefire").updated_seq, s.next_seq() - 1);
    s.snapshot();
    s.tick(
        at(76),
        "The zone-b violation (until T0+15 s) leaves: that pair, untouched by this entry, changes.",
    );
    s.expect(&[(ZONE_B, "ceasefire", CONFIRMED, UNOBSERVED, false)]);
    s.observe(
        MISSION_C,
        at(85),
        obs(ZONE_B, "ceasefire", VIOLATION, EXPLOSION, at(20)),
        "Accepted, but T0+20 s + 60 s < log time T0+85 s: never counted.",
    );
    s.expect(&[]);
    s.observe(
        MISSION_A,
        at(90),
        obs(ZONE_B, "ceasefire", VIOLATION, EXPLOSION, at(88)),
        "Counted.",
    );
    s.expect(&[(ZONE_B, "ceasefire", UNOBSERVED, CONFIRMED, false)]);
    s.tick(
        at(200),
        "Both windows empty at once: two changes, zone-a first.",
    );
    s.expect(&[
        (ZONE_A, "ceasefire", COMPLIANT, UNOBSERVED, false),
        (ZONE_B, "ceasefire", CONFIRMED, UNOBSERVED, false),
    ]);
    s.finish()
}

fn quorum() -> VectorFile {
    let mut s = Scenario::new(
        "Corroboration quorum: distinct author party ids of the violations counted in the window. \
         withdrawal (quorum 2) over zone-a: one mission's violations, however many, are REPORTED; \
         another mission's compliance or access-denied reports do not corroborate; a second mission's \
         violation CONFIRMS; retracting it goes back to REPORTED. ceasefire (quorum 1) over zone-b: one \
         violation is CONFIRMED at once. patrols (quorum 3) over zone-b: REPORTED until a third mission.",
    );
    s.zone(T0, ZONE_A, 1, 48.0, 1.0);
    s.zone(T0, ZONE_B, 1, 49.0, 1.0);
    s.commitment(T0, "withdrawal", 1, &[ZONE_A], 3600, 2, T0, "");
    s.commitment(T0, "ceasefire", 1, &[ZONE_B], 3600, 1, T0, "");
    s.commitment(T0, "patrols", 1, &[ZONE_B], 3600, 3, T0, "");
    s.observe(
        MISSION_A,
        at(10),
        obs(ZONE_A, "withdrawal", VIOLATION, WEAPON_FORWARD, at(5)),
        "One reporter of violations, quorum 2: reported.",
    );
    s.expect(&[(ZONE_A, "withdrawal", UNOBSERVED, REPORTED, false)]);
    s.observe(
        MISSION_A,
        at(20),
        obs(ZONE_A, "withdrawal", VIOLATION, WEAPON_MISSING, at(15)),
        "Same mission again: still one distinct reporter.",
    );
    s.expect(&[]);
    s.observe(
        MISSION_B,
        at(30),
        obs(ZONE_A, "withdrawal", COMPLIANCE, PATROL, at(25)),
        "A second reporter, but not of a violation.",
    );
    s.expect(&[]);
    s.observe(
        MISSION_B,
        at(40),
        obs(ZONE_A, "withdrawal", ACCESS_DENIED, MOVEMENT, at(35)),
        "Access denied does not corroborate either.",
    );
    s.expect(&[]);
    s.snapshot();
    let corroboration = s.observe(
        MISSION_B,
        at(50),
        obs(ZONE_A, "withdrawal", VIOLATION, WEAPON_FORWARD, at(45)),
        "Two distinct violation reporters: confirmed.",
    );
    s.expect(&[(ZONE_A, "withdrawal", REPORTED, CONFIRMED, false)]);
    s.observe(
        MISSION_C,
        at(60),
        obs(ZONE_B, "ceasefire", VIOLATION, EXPLOSION, at(55)),
        "Quorum 1: confirmed at once.",
    );
    s.expect(&[(ZONE_B, "ceasefire", UNOBSERVED, CONFIRMED, false)]);
    s.observe(
        MISSION_C,
        at(70),
        obs(ZONE_B, "patrols", VIOLATION, SMALL_ARMS, at(65)),
        "Quorum 3: reported.",
    );
    s.expect(&[(ZONE_B, "patrols", UNOBSERVED, REPORTED, false)]);
    s.observe(
        MISSION_A,
        at(80),
        obs(ZONE_B, "patrols", VIOLATION, SMALL_ARMS, at(75)),
        "Two of three.",
    );
    s.expect(&[]);
    s.observe(
        MISSION_B,
        at(90),
        obs(ZONE_B, "patrols", VIOLATION, SMALL_ARMS, at(85)),
        "Three of three: confirmed.",
    );
    s.expect(&[(ZONE_B, "patrols", REPORTED, CONFIRMED, false)]);
    s.retract(
        MISSION_B,
        at(100),
        corroboration,
        "One violation reporter left in zone-a/withdrawal: reported again.",
    );
    s.expect(&[(ZONE_A, "withdrawal", CONFIRMED, REPORTED, false)]);
    s.finish()
}

fn obstructed_compliant() -> VectorFile {
    let mut s = Scenario::new(
        "OBSTRUCTED vs COMPLIANT. access (window 100 s, quorum 1) over zone-a. Compliance among \
         access-denied reports is COMPLIANT; when it leaves the window, only ACCESS_DENIED remains: \
         OBSTRUCTED; a violation outranks access denied (CONFIRMED); retracting it gives OBSTRUCTED \
         again; when the window empties, UNOBSERVED.",
    );
    s.zone(T0, ZONE_A, 1, 48.0, 1.0);
    s.commitment(T0, "access", 1, &[ZONE_A], 100, 1, T0, "");
    s.observe(
        MISSION_A,
        at(10),
        obs(ZONE_A, "access", COMPLIANCE, PATROL, at(5)),
        "Leaves after log time T0+105 s.",
    );
    s.expect(&[(ZONE_A, "access", UNOBSERVED, COMPLIANT, false)]);
    s.observe(
        MISSION_B,
        at(50),
        obs(ZONE_A, "access", ACCESS_DENIED, MOVEMENT, at(45)),
        "Compliance and access denied: compliant.",
    );
    s.expect(&[]);
    s.observe(
        MISSION_C,
        at(60),
        obs(ZONE_A, "access", ACCESS_DENIED, MOVEMENT, at(55)),
        "",
    );
    s.expect(&[]);
    s.snapshot();
    s.tick(
        at(106),
        "The compliance report leaves: only access denied: obstructed.",
    );
    s.expect(&[(ZONE_A, "access", COMPLIANT, OBSTRUCTED, false)]);
    s.snapshot();
    let violation = s.observe(
        MISSION_A,
        at(110),
        obs(ZONE_A, "access", VIOLATION, FORCES, at(108)),
        "A violation among access-denied reports.",
    );
    s.expect(&[(ZONE_A, "access", OBSTRUCTED, CONFIRMED, false)]);
    s.retract(MISSION_A, at(120), violation, "");
    s.expect(&[(ZONE_A, "access", CONFIRMED, OBSTRUCTED, false)]);
    s.tick(
        at(150),
        "The first access-denied report leaves (T0+145 s < T0+150 s); one remains.",
    );
    s.expect(&[]);
    s.tick(at(156), "The last leaves: unobserved.");
    s.expect(&[(ZONE_A, "access", OBSTRUCTED, UNOBSERVED, false)]);
    s.finish()
}

fn dispute() -> VectorFile {
    let mut s = Scenario::new(
        "The disputed flag. ceasefire (window 3600 s, quorum 2) over zone-a. A dispute marks the counted \
         observation it names; a pair is disputed while a counted VIOLATION carries a mark. A change is \
         emitted when only the flag changes; a second dispute changes nothing; the mark of a non-violation \
         shows once a correction makes it a violation, and a correction keeps the mark; a dispute of an \
         observation not counted (out of its window, or retracted) is accepted and has no effect, and is \
         not remembered if a correction later brings that observation into the window; the flag clears \
         when the disputed violation leaves the window.",
    );
    s.zone(T0, ZONE_A, 1, 48.0, 1.0);
    s.commitment(T0, "ceasefire", 1, &[ZONE_A], 3600, 2, T0, "");
    let first = s.observe(
        MISSION_A,
        at(10),
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, at(5)),
        "",
    );
    s.expect(&[(ZONE_A, "ceasefire", UNOBSERVED, REPORTED, false)]);
    s.dispute(
        at(20),
        first,
        "Only the flag changes: a change REPORTED -> REPORTED, disputed false -> true.",
    );
    s.expect(&[(ZONE_A, "ceasefire", REPORTED, REPORTED, true)]);
    s.dispute(
        at(30),
        first,
        "Already marked: nothing changes, updated_seq stays.",
    );
    s.expect(&[]);
    let compliance = s.observe(
        MISSION_B,
        at(40),
        obs(ZONE_A, "ceasefire", COMPLIANCE, PATROL, at(35)),
        "",
    );
    s.expect(&[]);
    s.dispute(
        at(50),
        compliance,
        "Marks a compliance report: the pair's flag is unchanged.",
    );
    s.expect(&[]);
    s.snapshot();
    s.correct(
        MISSION_B,
        at(60),
        compliance,
        obs(ZONE_A, "ceasefire", VIOLATION, SMALL_ARMS, at(35)),
        "The marked report becomes a violation: two reporters, confirmed, still disputed.",
    );
    s.expect(&[(ZONE_A, "ceasefire", REPORTED, CONFIRMED, true)]);
    s.retract(
        MISSION_A,
        at(70),
        first,
        "The other disputed violation remains.",
    );
    s.expect(&[(ZONE_A, "ceasefire", CONFIRMED, REPORTED, true)]);
    s.correct(
        MISSION_B,
        at(80),
        compliance,
        obs(ZONE_A, "ceasefire", COMPLIANCE, PATROL, at(35)),
        "Back to compliance: the mark stays on it but marks no violation.",
    );
    s.expect(&[(ZONE_A, "ceasefire", REPORTED, COMPLIANT, false)]);
    s.snapshot();
    s.tick(at(4000), "Everything leaves the window.");
    s.expect(&[(ZONE_A, "ceasefire", COMPLIANT, UNOBSERVED, false)]);
    let late = s.observe(
        MISSION_C,
        at(5000),
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, at(1000)),
        "Out of its window on arrival: not counted.",
    );
    s.expect(&[]);
    s.dispute(
        at(5010),
        late,
        "Of an observation not counted: no effect, not remembered.",
    );
    s.expect(&[]);
    s.correct(
        MISSION_C,
        at(5020),
        late,
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, at(5000)),
        "Now in the window: counted, not disputed.",
    );
    s.expect(&[(ZONE_A, "ceasefire", UNOBSERVED, REPORTED, false)]);
    let retracted = s.observe(
        MISSION_A,
        at(5030),
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, at(5025)),
        "",
    );
    s.expect(&[(ZONE_A, "ceasefire", REPORTED, CONFIRMED, false)]);
    s.retract(MISSION_A, at(5040), retracted, "");
    s.expect(&[(ZONE_A, "ceasefire", CONFIRMED, REPORTED, false)]);
    s.dispute(
        at(5050),
        retracted,
        "Of a retracted observation: accepted, no effect.",
    );
    s.expect(&[]);
    s.dispute(at(5060), late, "Of the corrected observation, now counted.");
    s.expect(&[(ZONE_A, "ceasefire", REPORTED, REPORTED, true)]);
    s.snapshot();
    s.tick(
        at(8700),
        "The disputed violation (until T0+5000 s) leaves: the flag clears.",
    );
    s.expect(&[(ZONE_A, "ceasefire", REPORTED, UNOBSERVED, false)]);
    s.finish()
}

fn retract() -> VectorFile {
    let mut s = Scenario::new(
        "Retraction. ceasefire (window 600 s, quorum 1) over zone-a and zone-b. A retraction removes the \
         observation from its window at once; the latest times fall back to what remains (null when \
         nothing does); retracting an observation that already left its window changes nothing.",
    );
    s.zone(T0, ZONE_A, 1, 48.0, 1.0);
    s.zone(T0, ZONE_B, 1, 49.0, 1.0);
    s.commitment(T0, "ceasefire", 1, &[ZONE_A, ZONE_B], 600, 1, T0, "");
    let violation = s.observe(
        MISSION_A,
        at(10),
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, at(5)),
        "",
    );
    s.expect(&[(ZONE_A, "ceasefire", UNOBSERVED, CONFIRMED, false)]);
    let latest = s.observe(
        MISSION_B,
        at(20),
        obs(ZONE_A, "ceasefire", COMPLIANCE, PATROL, at(15)),
        "",
    );
    s.expect(&[]);
    let earlier = s.observe(
        MISSION_B,
        at(30),
        obs(ZONE_A, "ceasefire", COMPLIANCE, PATROL, at(8)),
        "Received later, observed earlier: last_observation_at stays T0+15 s.",
    );
    s.expect(&[]);
    s.snapshot();
    s.retract(
        MISSION_A,
        at(40),
        violation,
        "No violation left: compliant, last_violation_at null.",
    );
    s.expect(&[(ZONE_A, "ceasefire", CONFIRMED, COMPLIANT, false)]);
    s.retract(
        MISSION_B,
        at(50),
        latest,
        "The latest report goes: last_observation_at falls back to T0+8 s.",
    );
    s.expect(&[]);
    assert_eq!(
        s.summary(ZONE_A, "ceasefire").last_observation_at_micros,
        Some(at(8))
    );
    s.snapshot();
    s.retract(
        MISSION_B,
        at(55),
        earlier,
        "The window is empty: unobserved.",
    );
    s.expect(&[(ZONE_A, "ceasefire", COMPLIANT, UNOBSERVED, false)]);
    let gone = s.observe(
        MISSION_C,
        at(60),
        obs(ZONE_B, "ceasefire", COMPLIANCE, PATROL, at(55)),
        "",
    );
    s.expect(&[(ZONE_B, "ceasefire", UNOBSERVED, COMPLIANT, false)]);
    s.tick(at(700), "It leaves its window.");
    s.expect(&[(ZONE_B, "ceasefire", COMPLIANT, UNOBSERVED, false)]);
    s.retract(
        MISSION_C,
        at(710),
        gone,
        "Retracting what already left: nothing changes.",
    );
    s.expect(&[]);
    s.finish()
}

fn correct() -> VectorFile {
    let mut s = Scenario::new(
        "Correction: the observation is taken out of the window it was counted in (if any) and the \
         corrected observation is counted, under the original seq and author, wherever and whenever the \
         correction says, by the same rules as a new observation (effective_from, window) at the \
         correction's log time. ceasefire (600 s, quorum 1) over zone-a and zone-b; withdrawal (600 s, \
         quorum 1) over zone-c. Corrections change the finding; move the report to another zone (two \
         pairs change, in pair order); move its time (latest times follow); move it, disputed, to \
         another commitment (the mark goes with it); bring an expired report back into the window; push \
         it out of the window; a derived zone is derived again from the corrected location.",
    );
    s.zone(T0, ZONE_A, 1, 48.0, 1.0);
    s.zone(T0, ZONE_B, 1, 49.0, 1.0);
    s.zone(T0, ZONE_C, 1, 50.0, 1.0);
    s.commitment(T0, "ceasefire", 1, &[ZONE_A, ZONE_B], 600, 1, T0, "");
    s.commitment(T0, "withdrawal", 1, &[ZONE_C], 600, 1, T0, "");
    let report = s.observe(
        MISSION_A,
        at(10),
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, at(5)),
        "",
    );
    s.expect(&[(ZONE_A, "ceasefire", UNOBSERVED, CONFIRMED, false)]);
    s.correct(
        MISSION_A,
        at(20),
        report,
        obs(ZONE_A, "ceasefire", COMPLIANCE, PATROL, at(5)),
        "Same place, now compliance.",
    );
    s.expect(&[(ZONE_A, "ceasefire", CONFIRMED, COMPLIANT, false)]);
    s.correct(
        MISSION_A,
        at(30),
        report,
        obs(ZONE_B, "ceasefire", VIOLATION, SMALL_ARMS, at(5)),
        "Moved to zone-b: two changes, zone-a first.",
    );
    s.expect(&[
        (ZONE_A, "ceasefire", COMPLIANT, UNOBSERVED, false),
        (ZONE_B, "ceasefire", UNOBSERVED, CONFIRMED, false),
    ]);
    s.correct(
        MISSION_A,
        at(40),
        report,
        obs(ZONE_B, "ceasefire", VIOLATION, SMALL_ARMS, at(35)),
        "Later time: latest times move, no status change.",
    );
    s.expect(&[]);
    assert_eq!(
        s.summary(ZONE_B, "ceasefire").last_violation_at_micros,
        Some(at(35))
    );
    s.dispute(at(50), report, "");
    s.expect(&[(ZONE_B, "ceasefire", CONFIRMED, CONFIRMED, true)]);
    s.correct(
        MISSION_A,
        at(60),
        report,
        obs(ZONE_C, "withdrawal", VIOLATION, WEAPON_FORWARD, at(35)),
        "Moved to another commitment, its dispute with it.",
    );
    s.expect(&[
        (ZONE_B, "ceasefire", CONFIRMED, UNOBSERVED, false),
        (ZONE_C, "withdrawal", UNOBSERVED, CONFIRMED, true),
    ]);
    s.snapshot();
    s.tick(
        at(700),
        "It leaves its window (T0+35 s + 600 s < T0+700 s).",
    );
    s.expect(&[(ZONE_C, "withdrawal", CONFIRMED, UNOBSERVED, false)]);
    s.correct(
        MISSION_A,
        at(710),
        report,
        obs(ZONE_C, "withdrawal", VIOLATION, WEAPON_FORWARD, at(705)),
        "Back in a window; its mark was dropped when it left: not disputed.",
    );
    s.expect(&[(ZONE_C, "withdrawal", UNOBSERVED, CONFIRMED, false)]);
    s.correct(
        MISSION_A,
        at(720),
        report,
        obs(ZONE_C, "withdrawal", VIOLATION, WEAPON_FORWARD, at(50)),
        "An observed_until whose window ended before log time: taken out, not counted.",
    );
    s.expect(&[(ZONE_C, "withdrawal", CONFIRMED, UNOBSERVED, false)]);
    let derived = s.observe(
        MISSION_B,
        at(730),
        obs_unzoned(centre(ZONE_B), "ceasefire", VIOLATION, EXPLOSION, at(725)),
        "No zone given: derived zone-b.",
    );
    s.expect(&[(ZONE_B, "ceasefire", UNOBSERVED, CONFIRMED, false)]);
    s.correct(
        MISSION_B,
        at(740),
        derived,
        obs_unzoned(centre(ZONE_A), "ceasefire", VIOLATION, EXPLOSION, at(725)),
        "Corrected location, no zone given: derived again, zone-a.",
    );
    s.expect(&[
        (ZONE_A, "ceasefire", UNOBSERVED, CONFIRMED, false),
        (ZONE_B, "ceasefire", CONFIRMED, UNOBSERVED, false),
    ]);
    s.finish()
}

fn effective_from() -> VectorFile {
    let mut s = Scenario::new(
        "effective_from: an observation counts only if observed_until >= effective_from (microseconds, \
         inclusive), checked when it is counted (as observed or as corrected). A redefinition that moves \
         effective_from does not re-evaluate observations already counted (or already refused); only later \
         observations and corrections see the new value. ceasefire (3600 s, quorum 1) over zone-a, in force \
         from T0+100 s.",
    );
    s.zone(T0, ZONE_A, 1, 48.0, 1.0);
    s.commitment(T0, "ceasefire", 1, &[ZONE_A], 3600, 1, at(100), "");
    let early = s.observe(
        MISSION_A,
        at(60),
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, at(50)),
        "Before effective_from: not counted.",
    );
    s.expect(&[]);
    s.observe(
        MISSION_A,
        at(110),
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, at(100) - 1),
        "One microsecond before effective_from: not counted.",
    );
    s.expect(&[]);
    s.observe(
        MISSION_B,
        at(120),
        obs(ZONE_A, "ceasefire", COMPLIANCE, PATROL, at(100)),
        "Exactly at effective_from: counted.",
    );
    s.expect(&[(ZONE_A, "ceasefire", UNOBSERVED, COMPLIANT, false)]);
    s.correct(
        MISSION_A,
        at(130),
        early,
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, at(125)),
        "Corrected to after effective_from: counted.",
    );
    s.expect(&[(ZONE_A, "ceasefire", COMPLIANT, CONFIRMED, false)]);
    s.snapshot();
    s.commitment(at(140), "ceasefire", 2, &[ZONE_A], 3600, 1, at(200), "Both counted observations are before the new effective_from and stay counted; the summary is unchanged, so is updated_seq.");
    s.expect(&[]);
    assert_eq!(s.summary(ZONE_A, "ceasefire").updated_seq, s.next_seq() - 2);
    let refused = s.observe(
        MISSION_C,
        at(150),
        obs(ZONE_A, "ceasefire", VIOLATION, SMALL_ARMS, at(145)),
        "Before the new effective_from: not counted.",
    );
    s.expect(&[]);
    s.commitment(
        at(160),
        "ceasefire",
        3,
        &[ZONE_A],
        3600,
        1,
        T0,
        "effective_from moved back to T0: the refused observation is not counted now either.",
    );
    s.expect(&[]);
    s.correct(
        MISSION_C,
        at(170),
        refused,
        obs(ZONE_A, "ceasefire", VIOLATION, SMALL_ARMS, at(146)),
        "Corrected: counted under effective_from T0.",
    );
    s.expect(&[]);
    assert_eq!(s.summary(ZONE_A, "ceasefire").observations, 3);
    s.finish()
}

fn redefine_unbind() -> VectorFile {
    let mut s = Scenario::new(
        "A redefinition that unbinds a zone drops its pair: a last change to UNSPECIFIED (0) whose pair \
         summary is all zeros and null times with updated_seq = the redefinition's seq, and its window is \
         discarded. Binding the zone again creates a new, empty pair (UNSPECIFIED -> UNOBSERVED): earlier \
         observations are not counted again unless corrected. ceasefire (600 s, quorum 1).",
    );
    s.zone(T0, ZONE_A, 1, 48.0, 1.0);
    s.zone(T0, ZONE_B, 1, 49.0, 1.0);
    s.commitment(T0, "ceasefire", 1, &[ZONE_A, ZONE_B], 600, 1, T0, "");
    let in_b = s.observe(
        MISSION_A,
        at(10),
        obs(ZONE_B, "ceasefire", VIOLATION, EXPLOSION, at(5)),
        "",
    );
    s.expect(&[(ZONE_B, "ceasefire", UNOBSERVED, CONFIRMED, false)]);
    let in_a = s.observe(
        MISSION_B,
        at(20),
        obs(ZONE_A, "ceasefire", COMPLIANCE, PATROL, at(15)),
        "",
    );
    s.expect(&[(ZONE_A, "ceasefire", UNOBSERVED, COMPLIANT, false)]);
    s.snapshot();
    s.commitment(
        at(30),
        "ceasefire",
        2,
        &[ZONE_A],
        600,
        1,
        T0,
        "zone-b unbound: its pair is dropped.",
    );
    s.expect(&[(ZONE_B, "ceasefire", CONFIRMED, UNSPECIFIED, false)]);
    s.snapshot();
    s.dispute(at(40), in_b, "Its pair is gone: no effect.");
    s.expect(&[]);
    s.commitment(
        at(50),
        "ceasefire",
        3,
        &[ZONE_B, ZONE_A],
        600,
        1,
        T0,
        "zone-b bound again: a new, empty pair.",
    );
    s.expect(&[(ZONE_B, "ceasefire", UNSPECIFIED, UNOBSERVED, false)]);
    s.snapshot();
    s.correct(
        MISSION_A,
        at(60),
        in_b,
        obs(ZONE_B, "ceasefire", VIOLATION, EXPLOSION, at(5)),
        "Same content, counted again.",
    );
    s.expect(&[(ZONE_B, "ceasefire", UNOBSERVED, CONFIRMED, false)]);
    s.commitment(
        at(70),
        "ceasefire",
        4,
        &[ZONE_B],
        600,
        1,
        T0,
        "zone-a unbound.",
    );
    s.expect(&[(ZONE_A, "ceasefire", COMPLIANT, UNSPECIFIED, false)]);
    s.correct(MISSION_B, at(80), in_a, obs(ZONE_B, "ceasefire", COMPLIANCE, PATROL, at(15)), "The zone-a report (in no window since its pair was dropped) corrected into zone-b: counted there.");
    s.expect(&[]);
    assert_eq!(s.summary(ZONE_B, "ceasefire").observations, 2);
    s.finish()
}

fn redefine_window_quorum() -> VectorFile {
    let mut s = Scenario::new(
        "A redefinition that keeps a zone keeps its pair and window, and re-evaluates the pair at once with \
         the new quorum and window length: a higher quorum turns CONFIRMED into REPORTED; a shorter window \
         expires, in that same entry, every observation with observed_until + new window < log time (equal \
         stays); a longer window does not bring back what already left. ceasefire over zone-a.",
    );
    s.zone(T0, ZONE_A, 1, 48.0, 1.0);
    s.commitment(T0, "ceasefire", 1, &[ZONE_A], 3600, 1, T0, "");
    s.observe(
        MISSION_A,
        at(20),
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, at(10)),
        "",
    );
    s.expect(&[(ZONE_A, "ceasefire", UNOBSERVED, CONFIRMED, false)]);
    s.observe(
        MISSION_B,
        at(110),
        obs(ZONE_A, "ceasefire", VIOLATION, SMALL_ARMS, at(100)),
        "",
    );
    s.expect(&[]);
    s.observe(
        MISSION_C,
        at(210),
        obs(ZONE_A, "ceasefire", COMPLIANCE, PATROL, at(200)),
        "",
    );
    s.expect(&[]);
    s.snapshot();
    s.commitment(
        at(300),
        "ceasefire",
        2,
        &[ZONE_A],
        3600,
        3,
        T0,
        "Two violation reporters, quorum 3: reported.",
    );
    s.expect(&[(ZONE_A, "ceasefire", CONFIRMED, REPORTED, false)]);
    s.commitment(
        at(310),
        "ceasefire",
        3,
        &[ZONE_A],
        3600,
        2,
        T0,
        "Quorum 2: confirmed.",
    );
    s.expect(&[(ZONE_A, "ceasefire", REPORTED, CONFIRMED, false)]);
    s.commitment(at(320), "ceasefire", 4, &[ZONE_A], 220, 2, T0, "Window 220 s at log time T0+320 s: the T0+10 s violation leaves, the T0+100 s one stays (100 + 220 = 320): one violation reporter, reported.");
    s.expect(&[(ZONE_A, "ceasefire", CONFIRMED, REPORTED, false)]);
    assert_eq!(s.summary(ZONE_A, "ceasefire").observations, 2);
    s.snapshot();
    s.tick(at(320) + 1, "The T0+100 s violation leaves: compliant.");
    s.expect(&[(ZONE_A, "ceasefire", REPORTED, COMPLIANT, false)]);
    s.commitment(
        at(330),
        "ceasefire",
        5,
        &[ZONE_A],
        3600,
        2,
        T0,
        "A longer window again: nothing comes back.",
    );
    s.expect(&[]);
    assert_eq!(s.summary(ZONE_A, "ceasefire").observations, 1);
    s.finish()
}

fn zone_rollup() -> VectorFile {
    let mut s = Scenario::new(
        "Rollups and zones. Two commitments bind zone-a, one of them zone-b too; a third binds zone-wide \
         (which overlaps zone-a and zone-b) before zone-a. A zone's status is its most severe pair's \
         (severity CONFIRMED > REPORTED > OBSTRUCTED > UNOBSERVED > COMPLIANT, the enum's numeric order); a \
         commitment counts its zones by status. An observation naming no zone goes to the first zone, in the \
         commitment's order, that contains its point. A zone redefinition (new boundary) changes no window: \
         observations keep the zone they were given; later ones are derived with the new boundary.",
    );
    s.zone(T0, ZONE_A, 1, 48.0, 1.0);
    s.zone(T0, ZONE_B, 1, 49.0, 1.0);
    s.zone(T0, ZONE_WIDE, 1, 48.0, 2.0);
    s.commitment(T0, "ceasefire", 1, &[ZONE_A, ZONE_B], 3600, 1, T0, "");
    s.commitment(T0, "withdrawal", 1, &[ZONE_A], 3600, 2, T0, "");
    s.commitment(T0, "access", 1, &[ZONE_WIDE, ZONE_A], 3600, 1, T0, "");
    s.expect(&[
        (ZONE_A, "access", UNSPECIFIED, UNOBSERVED, false),
        (ZONE_WIDE, "access", UNSPECIFIED, UNOBSERVED, false),
    ]);
    s.snapshot();
    s.observe(
        MISSION_A,
        at(10),
        obs(ZONE_A, "ceasefire", COMPLIANCE, PATROL, at(5)),
        "zone-a: COMPLIANT and UNOBSERVED pairs: the zone is UNOBSERVED.",
    );
    s.expect(&[(ZONE_A, "ceasefire", UNOBSERVED, COMPLIANT, false)]);
    s.snapshot();
    s.observe(
        MISSION_A,
        at(20),
        obs(ZONE_A, "withdrawal", VIOLATION, WEAPON_FORWARD, at(15)),
        "zone-a is VIOLATION_REPORTED.",
    );
    s.expect(&[(ZONE_A, "withdrawal", UNOBSERVED, REPORTED, false)]);
    s.observe(
        MISSION_B,
        at(30),
        obs_unzoned(centre(ZONE_A), "access", ACCESS_DENIED, MOVEMENT, at(25)),
        "The point is in zone-wide and zone-a; access lists zone-wide first.",
    );
    s.expect(&[(ZONE_WIDE, "access", UNOBSERVED, OBSTRUCTED, false)]);
    s.observe(
        MISSION_C,
        at(40),
        obs_unzoned(centre(ZONE_B), "ceasefire", COMPLIANCE, PATROL, at(35)),
        "Derived: zone-b (zone-a does not contain the point).",
    );
    s.expect(&[(ZONE_B, "ceasefire", UNOBSERVED, COMPLIANT, false)]);
    s.snapshot();
    s.zone(at(50), ZONE_A, 2, 50.0, 1.0);
    s.expect(&[]);
    s.observe(
        MISSION_C,
        at(60),
        obs_unzoned(centre(ZONE_C), "ceasefire", COMPLIANCE, PATROL, at(55)),
        "Derived with zone-a's new boundary: zone-a.",
    );
    s.expect(&[]);
    assert_eq!(s.summary(ZONE_A, "ceasefire").observations, 2);
    s.observe(
        MISSION_B,
        at(70),
        observation_at(
            ZONE_A,
            centre(ZONE_C),
            "withdrawal",
            VIOLATION,
            WEAPON_FORWARD,
            at(65),
        ),
        "In zone-a as redefined: a second reporter, confirmed.",
    );
    s.expect(&[(ZONE_A, "withdrawal", REPORTED, CONFIRMED, false)]);
    s.finish()
}

fn mixed() -> VectorFile {
    let mut s = Scenario::new(
        "A mixed scenario over two days: three zones, a ceasefire (window 1 day, quorum 2) over all three, \
         a heavy-weapons withdrawal (window 12 h, quorum 1) over zone-b and zone-c, effective from the \
         second hour; corroboration, access denied, disputes, a retraction, corrections across pairs, a \
         redefinition that shortens the ceasefire's window, raises its quorum and unbinds zone-c, and \
         expiry as the days pass.",
    );
    let hour = 3600;
    let h = |hours: i64, seconds: i64| at(hours * hour + seconds);
    s.zone(T0, ZONE_A, 1, 48.0, 1.0);
    s.zone(T0, ZONE_B, 1, 49.0, 1.0);
    s.zone(T0, ZONE_C, 1, 50.0, 1.0);
    s.commitment(
        T0,
        "ceasefire",
        1,
        &[ZONE_A, ZONE_B, ZONE_C],
        24 * 3600,
        2,
        T0,
        "",
    );
    s.commitment(
        T0,
        "withdrawal",
        1,
        &[ZONE_B, ZONE_C],
        12 * 3600,
        1,
        h(2, 0),
        "",
    );
    let a1 = s.observe(
        MISSION_A,
        h(1, 0),
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, h(0, 3000)),
        "",
    );
    s.expect(&[(ZONE_A, "ceasefire", UNOBSERVED, REPORTED, false)]);
    s.observe(
        MISSION_A,
        h(1, 10),
        obs(ZONE_B, "withdrawal", VIOLATION, WEAPON_FORWARD, h(0, 3500)),
        "Before the withdrawal's effective_from: not counted.",
    );
    s.expect(&[]);
    let b1 = s.observe(
        MISSION_B,
        h(2, 0),
        obs(ZONE_A, "ceasefire", VIOLATION, SMALL_ARMS, h(1, 3000)),
        "Corroborated: confirmed.",
    );
    s.expect(&[(ZONE_A, "ceasefire", REPORTED, CONFIRMED, false)]);
    s.observe(
        MISSION_C,
        h(3, 0),
        obs(ZONE_B, "ceasefire", COMPLIANCE, PATROL, h(2, 3000)),
        "",
    );
    s.expect(&[(ZONE_B, "ceasefire", UNOBSERVED, COMPLIANT, false)]);
    let w1 = s.observe(
        MISSION_B,
        h(4, 0),
        obs(ZONE_C, "withdrawal", VIOLATION, WEAPON_MISSING, h(3, 3000)),
        "",
    );
    s.expect(&[(ZONE_C, "withdrawal", UNOBSERVED, CONFIRMED, false)]);
    s.observe(
        MISSION_A,
        h(5, 0),
        obs(ZONE_C, "ceasefire", ACCESS_DENIED, MOVEMENT, h(4, 3000)),
        "",
    );
    s.expect(&[(ZONE_C, "ceasefire", UNOBSERVED, OBSTRUCTED, false)]);
    s.dispute(h(6, 0), b1, "");
    s.expect(&[(ZONE_A, "ceasefire", CONFIRMED, CONFIRMED, true)]);
    s.snapshot();
    s.retract(
        MISSION_A,
        h(7, 0),
        a1,
        "One violation reporter left: reported, still disputed.",
    );
    s.expect(&[(ZONE_A, "ceasefire", CONFIRMED, REPORTED, true)]);
    let c1 = s.observe(
        MISSION_C,
        h(8, 0),
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, h(7, 3000)),
        "Corroborated again.",
    );
    s.expect(&[(ZONE_A, "ceasefire", REPORTED, CONFIRMED, true)]);
    s.correct(
        MISSION_B,
        h(9, 0),
        b1,
        obs(ZONE_B, "ceasefire", VIOLATION, SMALL_ARMS, h(1, 3000)),
        "The disputed report moves to zone-b, its mark with it.",
    );
    s.expect(&[
        (ZONE_A, "ceasefire", CONFIRMED, REPORTED, false),
        (ZONE_B, "ceasefire", COMPLIANT, REPORTED, true),
    ]);
    s.observe(
        MISSION_A,
        h(10, 0),
        obs(ZONE_C, "withdrawal", COMPLIANCE, PATROL, h(9, 3000)),
        "",
    );
    s.expect(&[]);
    s.snapshot();
    s.tick(
        h(16, 0),
        "The withdrawal violation (until 3h50m) leaves its 12 h window.",
    );
    s.expect(&[(ZONE_C, "withdrawal", CONFIRMED, COMPLIANT, false)]);
    s.observe(
        MISSION_B,
        h(17, 0),
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, h(16, 3000)),
        "",
    );
    s.expect(&[(ZONE_A, "ceasefire", REPORTED, CONFIRMED, false)]);
    s.correct(
        MISSION_B,
        h(18, 0),
        w1,
        obs(ZONE_B, "withdrawal", VIOLATION, WEAPON_MISSING, h(17, 3000)),
        "The expired withdrawal report corrected to a recent time in zone-b: counted again.",
    );
    s.expect(&[(ZONE_B, "withdrawal", UNOBSERVED, CONFIRMED, false)]);
    s.commitment(
        h(20, 0),
        "ceasefire",
        2,
        &[ZONE_A, ZONE_B],
        6 * 3600,
        3,
        T0,
        "Window 6 h, quorum 3, zone-c unbound: reports until before 14h leave at once.",
    );
    s.expect(&[
        (ZONE_A, "ceasefire", CONFIRMED, REPORTED, false),
        (ZONE_B, "ceasefire", REPORTED, UNOBSERVED, false),
        (ZONE_C, "ceasefire", OBSTRUCTED, UNSPECIFIED, false),
    ]);
    s.snapshot();
    s.observe(
        MISSION_A,
        h(21, 0),
        obs(ZONE_A, "ceasefire", VIOLATION, EXPLOSION, h(20, 3000)),
        "",
    );
    s.expect(&[]);
    s.observe(MISSION_C, h(22, 0), obs(ZONE_A, "ceasefire", VIOLATION, SMALL_ARMS, h(21, 3000)), "Three distinct violation reporters (b, a, c): confirmed. The withdrawal compliance report in zone-c (until 9h50m) leaves its 12 h window.");
    s.expect(&[
        (ZONE_A, "ceasefire", REPORTED, CONFIRMED, false),
        (ZONE_C, "withdrawal", COMPLIANT, UNOBSERVED, false),
    ]);
    s.dispute(h(23, 0), c1, "c1 already left the window: the dispute has no effect. Log time 23h expires mission-b's report (until 16h50m) under the 6 h window: two violation reporters, reported.");
    s.expect(&[(ZONE_A, "ceasefire", CONFIRMED, REPORTED, false)]);
    s.tick(h(30, 0), "");
    s.tick(h(48, 0), "Everything has left.");
    s.finish()
}

// ---------------------------------------------------------------------------

/// Builds one scenario's vector file.
type Build = fn() -> VectorFile;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/projection")
}

#[test]
fn projection_vectors_match_the_committed_files() {
    let scenarios: [(&str, Build); 11] = [
        ("window_expiry", window_expiry),
        ("quorum", quorum),
        ("obstructed_compliant", obstructed_compliant),
        ("dispute", dispute),
        ("retract", retract),
        ("correct", correct),
        ("effective_from", effective_from),
        ("redefine_unbind", redefine_unbind),
        ("redefine_window_quorum", redefine_window_quorum),
        ("zone_rollup", zone_rollup),
        ("mixed", mixed),
    ];
    let update =
        std::env::var_os(UPDATE_VAR).is_some_and(|value| value != "0" && !value.is_empty());
    let dir = vectors_dir();
    let mut stale = Vec::new();
    let names: std::collections::BTreeSet<String> = scenarios
        .iter()
        .map(|(name, _)| format!("{name}.json"))
        .collect();
    for (name, build) in scenarios {
        let vector = build();
        let json = serde_json::to_string_pretty(&vector).expect("serializable") + "\n";
        let path = dir.join(format!("{name}.json"));
        if update {
            std::fs::create_dir_all(&dir).expect("cannot create testdata/projection");
            std::fs::write(&path, &json)
                .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == json => {}
            Ok(committed) => {
                let line = committed
                    .lines()
                    .zip(json.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| committed.lines().count().min(json.lines().count()));
                stale.push(format!("{} differs from line {}", path.display(), line + 1));
            }
            Err(error) => stale.push(format!("{}: {error}", path.display())),
        }
    }
    // Every file in the directory is one of ours: the independent
    // implementation reads them all, so none may go unchecked here.
    for entry in std::fs::read_dir(&dir).expect("cannot read testdata/projection") {
        let file = entry.expect("a directory entry").file_name();
        let file = file.to_string_lossy().into_owned();
        if !names.contains(&file) {
            stale.push(format!(
                "{file} is in testdata/projection but no scenario makes it"
            ));
        }
    }
    assert!(
        !update,
        "rewrote the projection vectors; run again without {UPDATE_VAR} to check them"
    );
    assert!(
        stale.is_empty(),
        "the projection vectors are not what the code gives:\n  {}\n\
         If the change to the fold is deliberate (it changes every log's digests), \
         rewrite them with {UPDATE_VAR}=1 cargo test --test projection_vectors \
         and update docs/spec.md section 9.",
        stale.join("\n  ")
    );
}
