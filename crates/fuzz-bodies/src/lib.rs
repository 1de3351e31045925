//! The bodies of the fuzz targets: one function per decoder that takes bytes
//! from outside (a peer, a downloaded log, a file a person wrote).
//!
//! Each cargo-fuzz target in `fuzz/fuzz_targets/` is a one-line call to a
//! function here, and `crates/fuzz-bodies/tests/regressions.rs` calls the same functions on
//! every seed (`fuzz/seeds/<target>/`) and every crash ever found
//! (`fuzz/regressions/<target>/`). So a crash the fuzzer finds replays as an
//! ordinary test, in the ordinary build, for as long as the file is kept.
//! `.ci/fuzz` runs the targets for a bounded time; see its header.
//!
//! Contract of every target function:
//! - It accepts any bytes. Bad input is refused by the code under test with
//!   an error, and the function returns normally.
//! - It panics only when a property of the code under test fails, i.e. on a
//!   real bug: a panic inside the decoders, or one of the `assert!`s below.
//! - It is deterministic: keys come from fixed seeds, the clock is a
//!   constant, nothing is random and nothing touches the file system or the
//!   network, so an input always takes the same path and a crash reproduces.
//! - It returns whether the input was accepted all the way (a leaf decoded, a
//!   note opened, ...). The fuzzer ignores that; tests use it to show that the
//!   seeds are valid inputs and that hostile inputs are refused.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use ed25519_dalek::{Signer as _, SigningKey};
use prost::Message as _;

use ceasefire_core::canonical;
use ceasefire_core::checkpoint::{
    key_id, open_checkpoint, parse_unverified, sign_checkpoint, CheckpointBody, CheckpointError,
    NoteSigner, NoteVerifier, MAX_NOTE_BYTES,
};
use ceasefire_core::geo::{self, Point};
use ceasefire_core::leaf::{Leaf, MAX_PAYLOAD_BYTES};
use ceasefire_core::merkle::{
    consistency_proof, empty_root, hash_leaf, inclusion_proof, root, verify_consistency,
    verify_inclusion, Frontier, Hash, MemorySource,
};
use ceasefire_core::projection::{MemoryWindows, Projection};
use ceasefire_core::proto::{
    event::Body, AmendmentKind, Category, CommitmentKind, DefineCommitment, DefineZone, Dispute,
    Event, Finding, Genesis, LatLon, Location, Observation, Party, Polygon, RegisterParty, Role,
    ZoneKind,
};
use ceasefire_core::rejection::{ReasonCode, RejectionKind};
use ceasefire_core::replay::{MemoryIndex, Replay};
use ceasefire_core::rules::{
    decode_event, Accepted, EntryContext, EntryIndex, LedgerState, ObservationRecord,
};
use ceasefire_core::signing::{sign_event, MAX_SIGNATURES};
use ceasefire_core::tlog_proof::{verify_receipt, TlogProof};
use ceasefire_ledger::event_json::{event_from_json, json_values, message_to_json};
use ceasefire_ledger::relative_time;
use ceasefire_ledger::signed_file::SignedEventFile;

/// A fuzz target: its name (the file under `fuzz/fuzz_targets/` and the
/// directory under `fuzz/seeds/` and `fuzz/regressions/`) and its body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]) -> bool,
}

/// Every target, in the order `.ci/fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "leaf",
        run: leaf,
    },
    Target {
        name: "event",
        run: event,
    },
    Target {
        name: "checkpoint",
        run: checkpoint,
    },
    Target {
        name: "merkle",
        run: merkle,
    },
    Target {
        name: "submit_json",
        run: submit_json,
    },
    Target {
        name: "tlog_proof",
        run: tlog_proof,
    },
];

// ---- leaf -------------------------------------------------------------------

/// `Leaf::decode`: never panics, and accepts only canonical bytes: whatever it
/// accepts encodes back to exactly the input, so one leaf hash names one entry.
pub fn leaf(data: &[u8]) -> bool {
    let Ok(leaf) = Leaf::decode(data) else {
        return false;
    };
    assert_eq!(
        leaf.encode(),
        data,
        "Leaf::decode accepted bytes that do not re-encode to themselves"
    );
    assert_eq!(leaf.leaf_hash(), hash_leaf(data));
    assert!(leaf.payload.len() <= MAX_PAYLOAD_BYTES);
    assert!((1..=MAX_SIGNATURES).contains(&leaf.signatures.len()));
    assert!(
        leaf.signatures
            .windows(2)
            .all(|pair| pair[0].public_key < pair[1].public_key),
        "Leaf::decode accepted signatures not strictly ascending by key"
    );
    true
}

// ---- event decoding and validation -------------------------------------------

/// Agreement of the event fixture.
const AGREEMENT_ID: &str = "fuzz-agreement";
/// Origin (and checkpoint key name) of the fixture: the one of docs/spec.md's
/// checkpoint vector, so that vector opens with [`checkpoint_verifier`].
const ORIGIN: &str = "example.org/ceasefire-ledger";
/// Operator key seed of docs/spec.md's checkpoint vector.
const OPERATOR_SEED: [u8; 32] = [0x02; 32];
const SIGNATORY_A_SEED: [u8; 32] = [0x11; 32];
const SIGNATORY_B_SEED: [u8; 32] = [0x12; 32];
const MONITOR_SEED: [u8; 32] = [0x21; 32];
const SIGNATORY_A: &str = "party-north";
const SIGNATORY_B: &str = "party-south";
const MONITOR: &str = "mission-alpha";
const ZONE: &str = "sector-1";
const COMMITMENT: &str = "ceasefire";
/// The fixture's clock: entry `seq` is received at `T0 + 60 * seq` seconds.
const T0_SECONDS: i64 = 1_764_000_000;
/// Entries in the fixture's log before the fuzzed one.
const FIXTURE_ENTRIES: u64 = 5;

fn seconds_timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn received_at_micros(seq: u64) -> i64 {
    (T0_SECONDS + 60 * seq as i64) * 1_000_000
}

fn public_key(seed: [u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(&seed).verifying_key().to_bytes()
}

/// An event of the fixture's agreement, created when entry `seq` is received.
fn fixture_event(author: &str, seq: u64, nonce: u8, body: Body) -> Event {
    Event {
        agreement_id: AGREEMENT_ID.into(),
        author: author.into(),
        created_at: Some(seconds_timestamp(T0_SECONDS + 60 * seq as i64)),
        nonce: vec![nonce; 16],
        body: Some(body),
    }
}

fn party(party_id: &str, name: &str, role: Role, seed: [u8; 32]) -> Party {
    Party {
        party_id: party_id.into(),
        name: name.into(),
        role: role as i32,
        public_keys: vec![public_key(seed).to_vec()],
    }
}

fn fixture_observation(lat: f64, lon: f64, finding: Finding, narrative: &str) -> Observation {
    Observation {
        observed_from: Some(seconds_timestamp(T0_SECONDS - 1800)),
        observed_until: Some(seconds_timestamp(T0_SECONDS - 600)),
        location: Some(Location {
            point: Some(LatLon { lat, lon }),
            accuracy_m: 250.0,
        }),
        zone_id: String::new(),
        commitment_id: COMMITMENT.into(),
        finding: finding as i32,
        category: Category::Explosion as i32,
        quantity: 3,
        attributed_side: String::new(),
        evidence: Vec::new(),
        narrative: narrative.into(),
    }
}

/// The fixture's first entries, with the seeds of the keys that sign each:
/// a genesis (two signatories, threshold 2), a monitor's registration, a
/// zone, a commitment over it, and one observation, so every kind of event
/// has something to refer to.
fn fixture_prefix() -> Vec<(Event, Vec<[u8; 32]>)> {
    let both = vec![SIGNATORY_A_SEED, SIGNATORY_B_SEED];
    let vertex = |lat, lon| LatLon { lat, lon };
    vec![
        (
            fixture_event(
                SIGNATORY_A,
                0,
                1,
                Body::Genesis(Genesis {
                    origin: ORIGIN.into(),
                    title: "Fuzzing fixture agreement".into(),
                    signatories: vec![
                        party(
                            SIGNATORY_A,
                            "Party North",
                            Role::Signatory,
                            SIGNATORY_A_SEED,
                        ),
                        party(
                            SIGNATORY_B,
                            "Party South",
                            Role::Signatory,
                            SIGNATORY_B_SEED,
                        ),
                    ],
                    threshold: 2,
                    operator_public_key: public_key(OPERATOR_SEED).to_vec(),
                    max_clock_skew_seconds: 0,
                }),
            ),
            both.clone(),
        ),
        (
            fixture_event(
                SIGNATORY_A,
                1,
                2,
                Body::RegisterParty(RegisterParty {
                    party: Some(party(
                        MONITOR,
                        "Monitoring mission Alpha",
                        Role::Monitor,
                        MONITOR_SEED,
                    )),
                }),
            ),
            both.clone(),
        ),
        (
            fixture_event(
                SIGNATORY_A,
                2,
                3,
                Body::DefineZone(DefineZone {
                    zone_id: ZONE.into(),
                    version: 1,
                    name: "Contact line sector 1".into(),
                    kind: ZoneKind::ContactLineSector as i32,
                    boundary: Some(Polygon {
                        vertices: vec![
                            vertex(48.0, 37.0),
                            vertex(48.0, 38.0),
                            vertex(49.0, 38.0),
                            vertex(49.0, 37.0),
                        ],
                    }),
                }),
            ),
            both.clone(),
        ),
        (
            fixture_event(
                SIGNATORY_A,
                3,
                4,
                Body::DefineCommitment(DefineCommitment {
                    commitment_id: COMMITMENT.into(),
                    version: 1,
                    name: "Ceasefire".into(),
                    kind: CommitmentKind::Ceasefire as i32,
                    zone_ids: vec![ZONE.into()],
                    window_seconds: 24 * 3600,
                    corroboration_quorum: 2,
                    effective_from: Some(seconds_timestamp(T0_SECONDS - 7 * 24 * 3600)),
                }),
            ),
            both,
        ),
        (
            fixture_event(
                MONITOR,
                4,
                5,
                Body::Observation(fixture_observation(
                    48.51,
                    37.62,
                    Finding::Violation,
                    "Three explosions heard north-east of the patrol position.",
                )),
            ),
            vec![MONITOR_SEED],
        ),
    ]
}

/// The leaf of `payload` as entry `seq` after `prev_leaf_hash`, signed.
fn fixture_leaf(seq: u64, prev_leaf_hash: Hash, payload: Vec<u8>, seeds: &[[u8; 32]]) -> Leaf {
    let mut signatures: Vec<_> = seeds
        .iter()
        .map(|seed| sign_event(&payload, &SigningKey::from_bytes(seed)))
        .collect();
    signatures.sort_by_key(|signature| signature.public_key);
    Leaf {
        seq,
        prev_leaf_hash,
        received_at_micros: received_at_micros(seq),
        payload,
        signatures,
    }
}

/// The fixture's log replayed: what the rules know when entry
/// [`FIXTURE_ENTRIES`] arrives.
struct EventFixture {
    leaves: Vec<Vec<u8>>,
    state: LedgerState,
    projection: Projection,
    windows: MemoryWindows,
    index: MemoryIndex,
    /// Signer lists a fuzzed event is checked with: none, the monitor, one
    /// signatory, both signatories (the threshold), a signatory and the
    /// monitor. Signatures are verified before the rules run, so the rules
    /// take the signers' keys, not signatures.
    signer_sets: Vec<Vec<[u8; 32]>>,
}

fn event_fixture() -> &'static EventFixture {
    static FIXTURE: OnceLock<EventFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut replay = Replay::new();
        let mut leaves = Vec::new();
        let mut prev_leaf_hash = [0; 32];
        for (seq, (event, seeds)) in (0..).zip(fixture_prefix()) {
            let leaf = fixture_leaf(seq, prev_leaf_hash, event.encode_to_vec(), &seeds);
            let bytes = leaf.encode();
            let entry = replay
                .apply(&bytes, false)
                .unwrap_or_else(|error| panic!("the fuzzing fixture does not replay: {error}"));
            prev_leaf_hash = entry.leaf_hash;
            leaves.push(bytes);
        }
        let (a, b, m) = (
            public_key(SIGNATORY_A_SEED),
            public_key(SIGNATORY_B_SEED),
            public_key(MONITOR_SEED),
        );
        EventFixture {
            leaves,
            index: replay.index().clone(),
            state: replay.state.expect("the fixture has a genesis"),
            projection: replay.projection,
            windows: replay.windows,
            signer_sets: vec![vec![], vec![m], vec![a], vec![a, b], vec![a, m]],
        }
    })
}

/// `core::rules::decode_event`, then every check the rules make on a decoded
/// event without I/O: as the next entry of a fixed log (against its
/// `LedgerState`, with several signer lists), and as entry 0 of a new log
/// (`LedgerState::from_genesis`); accepted events are applied and folded into
/// the compliance projection. Never panics; an accepted event satisfies the
/// rules of docs/spec.md section 7 that are restated below. Decoding accepts
/// exactly the canonical payloads (section 1): the bytes prost re-encodes to
/// themselves; the wire-format walker that explains a refusal agrees with
/// that round trip, and calls malformed only what prost cannot decode.
pub fn event(data: &[u8]) -> bool {
    let round_trips = Event::decode(data).is_ok_and(|event| event.encode_to_vec() == data);
    let walked = canonical::check_event(data);
    assert_eq!(
        walked.is_ok(),
        round_trips,
        "the canonical walker ({walked:?}) disagrees with prost's round trip"
    );
    if walked.as_ref().is_err_and(|error| error.is_malformed()) {
        assert!(
            Event::decode(data).is_err(),
            "the walker calls malformed ({walked:?}) what prost decodes"
        );
    }
    let event = match decode_event(data) {
        Ok(event) => event,
        Err(rejection) => {
            assert!(!round_trips, "a canonical payload is refused: {rejection}");
            assert_eq!(rejection.kind(), RejectionKind::InvalidArgument);
            assert!(
                matches!(
                    rejection.reason,
                    ReasonCode::PayloadUndecodable | ReasonCode::NonCanonicalPayload
                ),
                "{rejection:?}"
            );
            return false;
        }
    };
    assert!(round_trips, "a non-canonical payload is accepted");
    let fixture = event_fixture();
    let mut accepted_any = false;
    let context = EntryContext {
        seq: FIXTURE_ENTRIES,
        received_at_micros: received_at_micros(FIXTURE_ENTRIES),
        leaf_hash: hash_leaf(data),
    };
    for signers in &fixture.signer_sets {
        let Ok(verdict) = fixture
            .state
            .check(&event, signers, &context, &fixture.index);
        let Ok(accepted) = verdict else {
            continue;
        };
        accepted_any = true;
        check_accepted(&fixture.state, &fixture.index, &event, signers, &accepted);
        let mut state = fixture.state.clone();
        state.apply(&accepted);
        let mut projection = fixture.projection.clone();
        let mut windows = fixture.windows.clone();
        let Ok(_) = projection.fold(&event, Some(&accepted), &context, &state, &mut windows);
        projection.digest();
    }
    let genesis_context = EntryContext { seq: 0, ..context };
    for signers in &fixture.signer_sets {
        let Ok(state) = LedgerState::from_genesis(&event, signers, &genesis_context) else {
            continue;
        };
        accepted_any = true;
        let threshold = state.agreement.threshold as usize;
        assert!((1..=state.parties.len()).contains(&threshold));
        assert!(
            signing_parties(&state, signers).len() >= threshold,
            "a genesis was accepted below its threshold"
        );
        let mut projection = Projection::new();
        let Ok(_) = projection.fold(
            &event,
            None,
            &genesis_context,
            &state,
            &mut MemoryWindows::default(),
        );
        projection.digest();
    }
    accepted_any
}

/// The distinct parties whose keys are among `signers`.
fn signing_parties<'a>(state: &'a LedgerState, signers: &[[u8; 32]]) -> BTreeSet<&'a str> {
    signers
        .iter()
        .filter_map(|key| state.key_owners.get(key))
        .map(String::as_str)
        .collect()
}

/// Whether `commitment_id` binds `zone_id` and the zone contains `observation`'s point.
fn located_in(state: &LedgerState, record: &ObservationRecord, observation: &Observation) -> bool {
    let Some(point) = observation
        .location
        .as_ref()
        .and_then(|location| location.point.as_ref())
    else {
        return false;
    };
    let point = Point {
        lat: point.lat,
        lon: point.lon,
    };
    state
        .commitments
        .get(&record.commitment_id)
        .is_some_and(|commitment| commitment.zone_ids.contains(&record.zone_id))
        && state
            .zones
            .get(&record.zone_id)
            .is_some_and(|zone| geo::contains(&zone.boundary, point))
}

/// Restates, independently of `rules.rs`'s code, what docs/spec.md section 7
/// says an accepted event must satisfy.
fn check_accepted(
    state: &LedgerState,
    index: &MemoryIndex,
    event: &Event,
    signers: &[[u8; 32]],
    accepted: &Accepted,
) {
    let author = &state.parties[&event.author];
    let by_author_only = || signers.iter().all(|key| author.keys.contains_key(key));
    match (accepted, &event.body) {
        (Accepted::Governance(_), _) => {
            assert_eq!(
                author.role,
                Role::Signatory,
                "governance by a non-signatory"
            );
            let parties = signing_parties(state, signers);
            assert!(parties.contains(event.author.as_str()));
            assert!(parties.len() >= state.agreement.threshold as usize);
            assert!(signers.iter().all(|key| {
                state
                    .key_owners
                    .get(key)
                    .is_some_and(|owner| state.parties[owner].role == Role::Signatory)
            }));
        }
        (Accepted::Observation(record), Some(Body::Observation(observation))) => {
            assert_eq!(author.role, Role::Monitor);
            assert!(by_author_only(), "an observation signed by another party");
            assert_eq!(record.author, event.author);
            assert!(
                located_in(state, record, observation),
                "an accepted observation is outside the zone it was filed under"
            );
        }
        (
            Accepted::Amendment {
                target_seq,
                kind,
                original,
                corrected,
            },
            Some(Body::Amendment(amendment)),
        ) => {
            assert!(by_author_only(), "an amendment signed by another party");
            assert_eq!(author.role, Role::Monitor);
            let Ok(target) = index.observation(*target_seq);
            let target = target.expect("an amendment names an observation");
            assert_eq!(
                &target, original,
                "an amendment carries another record than its target's"
            );
            assert_eq!(
                target.author, event.author,
                "an amendment by another author"
            );
            assert!(!target.retracted);
            match (kind, &amendment.correction) {
                (AmendmentKind::Retract, None) => assert!(corrected.retracted),
                (AmendmentKind::Correct, Some(correction)) => assert!(
                    located_in(state, corrected, correction),
                    "an accepted correction is outside the zone it was filed under"
                ),
                other => panic!("an amendment was accepted as {other:?}"),
            }
        }
        (Accepted::Dispute { target_seq, target }, Some(Body::Dispute(_))) => {
            assert_eq!(author.role, Role::Signatory);
            assert!(by_author_only(), "a dispute signed by another party");
            let Ok(stored) = index.observation(*target_seq);
            assert_eq!(
                stored.as_ref(),
                Some(target),
                "a dispute carries another record than its target's"
            );
        }
        (accepted, body) => panic!("{accepted:?} was accepted for the body {body:?}"),
    }
}

// ---- signed-note checkpoints ---------------------------------------------------

/// The fixture's operator, signing under [`ORIGIN`]: docs/spec.md's
/// checkpoint vector is one of its notes.
fn checkpoint_signer() -> &'static NoteSigner {
    static SIGNER: OnceLock<NoteSigner> = OnceLock::new();
    SIGNER.get_or_init(|| {
        NoteSigner::new(ORIGIN, SigningKey::from_bytes(&OPERATOR_SEED)).expect("a valid key name")
    })
}

/// The verifier the checkpoint target opens notes with.
pub fn checkpoint_verifier() -> NoteVerifier {
    checkpoint_signer().verifier()
}

/// A signature line for `text` by `signer`, in signed-note syntax. Written
/// out here (the module's own signer is private) so that the fuzzer can put
/// any text under a valid signature and reach the checkpoint parser behind
/// the signature check.
fn signature_line(text: &str, name: &str, key: &SigningKey) -> String {
    use base64::Engine as _;
    let mut blob = key_id(name, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&key.sign(text.as_bytes()).to_bytes());
    format!(
        "\u{2014} {name} {}\n",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// `core::checkpoint`: `parse_unverified` and `open_checkpoint` (with a fixed
/// verifier) never panic, and:
/// - a note that opens parses to the same body unverified, and re-signing
///   that body gives a note that opens to it again;
/// - any body the parser returns formats (`to_text`) to a text that parses
///   back to it, signed or not;
/// - the input taken as a note text and signed by the verifier's key opens
///   exactly when it parses (and names the right origin): the signature
///   check and the parser agree on where the signed text ends.
///
/// Returns whether the input opened as it is.
pub fn checkpoint(data: &[u8]) -> bool {
    let note = String::from_utf8_lossy(data);
    let signer = checkpoint_signer();
    let verifier = signer.verifier();
    let unverified = parse_unverified(&note);
    let opened = open_checkpoint(&note, &verifier);
    if let Ok(body) = &opened {
        assert_eq!(body.origin, verifier.name());
        assert_eq!(
            unverified.as_ref(),
            Ok(body),
            "a note opens to another body than it parses to"
        );
        let resigned = sign_checkpoint(body, signer).expect("the origin is the signer's name");
        assert_eq!(open_checkpoint(&resigned, &verifier).as_ref(), Ok(body));
    }
    if let Ok(body) = &unverified {
        let text = body.to_text();
        let note = format!(
            "{text}\n{}",
            signature_line(&text, "witness", &signer_key())
        );
        // Dropping extension lines can leave room for a longer signature
        // line than the input had, so only a note within the limit must parse.
        if note.len() <= MAX_NOTE_BYTES {
            assert_eq!(
                parse_unverified(&note).as_ref(),
                Ok(body),
                "to_text of a parsed body does not parse back to it"
            );
        }
        if let Ok(own) = NoteSigner::new(&body.origin, signer_key()) {
            let signed = sign_checkpoint(body, &own).expect("the origin is the signer's name");
            assert_eq!(open_checkpoint(&signed, &own.verifier()).as_ref(), Ok(body));
        }
    }
    let mut text = note.into_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let signed = format!("{text}\n{}", signature_line(&text, ORIGIN, &signer_key()));
    let expected = parse_unverified(&signed).and_then(|body| {
        if body.origin == ORIGIN {
            Ok(body)
        } else {
            Err(CheckpointError::OriginMismatch {
                expected: ORIGIN.into(),
                found: body.origin,
            })
        }
    });
    assert_eq!(
        open_checkpoint(&signed, &verifier),
        expected,
        "a validly signed note opens differently from how it parses"
    );
    opened.is_ok()
}

fn signer_key() -> SigningKey {
    SigningKey::from_bytes(&OPERATOR_SEED)
}

// ---- Merkle proofs ---------------------------------------------------------------

/// Reads the fuzzer's bytes as numbers and hashes; past the end it reads
/// zeros, so every input is a complete one.
struct Input<'a> {
    bytes: &'a [u8],
}

impl Input<'_> {
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let n = N.min(self.bytes.len());
        out[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        out
    }

    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }
}

/// Most leaves of a tree the merkle target builds: deep enough for nine
/// levels, small enough to keep each run well under a millisecond.
const MAX_FUZZ_TREE: u16 = 300;
/// Most hashes in a raw proof the merkle target verifies: more than any real
/// proof of a u64-sized tree (64 for inclusion, 65 for consistency).
const MAX_RAW_PROOF: u8 = 70;

/// `core::merkle` verification and proofs. Input layout (big-endian, short
/// input padded with zeros):
///
/// ```text
/// raw claim:  index u64, tree_size u64, old_size u64, new_size u64,
///             leaf_hash 32, root_a 32, root_b 32, count u8, count x hash 32
/// tree:       leaves u16, salt 8, index u16, tree_size u16, new u16, old u16,
///             then one (position, mask) byte pair per proof hash flipped
/// ```
///
/// The raw claim (any sizes, any hashes) is verified as an inclusion proof
/// (`leaf_hash`, `index`, `tree_size`, `root_a`) and a consistency proof
/// (`old_size`, `new_size`, `root_a`, `root_b`): that must not panic. Then a
/// tree of distinct input-derived leaves is built in a `MemorySource`; its
/// roots must match a `Frontier`'s, and inclusion and consistency proofs
/// made by the module for input-chosen sizes must verify, and stop verifying
/// when one byte of any of their hashes (or of a root or the leaf hash) is
/// flipped, or a hash is dropped or added. One byte per hash, chosen by the
/// input, rather than all 32: each hash enters the verifier whole, so every
/// byte of it is the same test, and the fuzzer picks which.
///
/// Returns whether the raw claim verified as an inclusion proof, or as a
/// consistency proof that carries hashes.
pub fn merkle(data: &[u8]) -> bool {
    let mut input = Input { bytes: data };
    let raw_index = input.u64();
    let raw_tree_size = input.u64();
    let raw_old = input.u64();
    let raw_new = input.u64();
    let raw_leaf: Hash = input.array();
    let root_a: Hash = input.array();
    let root_b: Hash = input.array();
    let count = input.u8().min(MAX_RAW_PROOF);
    let raw_proof: Vec<Hash> = (0..count).map(|_| input.array()).collect();
    let included = verify_inclusion(&raw_leaf, raw_index, raw_tree_size, &raw_proof, &root_a);
    let consistent = verify_consistency(raw_old, raw_new, &root_a, &root_b, &raw_proof);

    let leaves = u64::from(input.u16() % (MAX_FUZZ_TREE + 1));
    let salt: [u8; 8] = input.array();
    let leaf_hashes: Vec<Hash> = (0..leaves)
        .map(|i| hash_leaf(&[i.to_be_bytes(), salt].concat()))
        .collect();
    let source = MemorySource::from_leaf_hashes(leaf_hashes.iter().copied());
    let mut frontier = Frontier::new();
    for leaf_hash in &leaf_hashes {
        frontier.push(*leaf_hash);
    }
    assert_eq!(root(&source, leaves), Ok(frontier.root()));

    // Proofs the store cannot answer (sizes beyond its leaves) are errors.
    let _ = inclusion_proof(&source, raw_index, raw_tree_size);
    let _ = consistency_proof(&source, raw_old, raw_new);
    if raw_tree_size > leaves {
        assert!(root(&source, raw_tree_size).is_err());
        assert!(Frontier::load(&source, raw_tree_size).is_err());
    }

    let index = u64::from(input.u16());
    let tree_size = u64::from(input.u16()) % (leaves + 1);
    let new_size = u64::from(input.u16()) % (leaves + 1);
    let old_size = u64::from(input.u16()) % (new_size + 1);
    let tree_root = root(&source, tree_size).expect("the source holds these leaves");
    assert_eq!(
        Frontier::load(&source, tree_size).map(|frontier| frontier.root()),
        Ok(tree_root)
    );
    if tree_size > 0 {
        let index = index % tree_size;
        let leaf_hash = leaf_hashes[index as usize];
        let proof = inclusion_proof(&source, index, tree_size).expect("index < tree_size");
        let verify = |leaf_hash: &Hash, proof: &[Hash], root: &Hash| {
            verify_inclusion(leaf_hash, index, tree_size, proof, root)
        };
        assert_eq!(
            verify(&leaf_hash, &proof, &tree_root),
            Ok(()),
            "an inclusion proof of leaf {index} in {tree_size} does not verify"
        );
        assert_altered_proofs_refused(&proof, tree_root, &mut input, |altered| {
            verify(&leaf_hash, altered, &tree_root).is_err()
        });
        assert!(verify(&flipped_copy(&leaf_hash, &mut input), &proof, &tree_root).is_err());
        assert!(verify(&leaf_hash, &proof, &flipped_copy(&tree_root, &mut input)).is_err());
        if let Some((_, shorter)) = proof.split_last() {
            assert!(verify(&leaf_hash, shorter, &tree_root).is_err());
        }
    }
    let old_root = root(&source, old_size).expect("the source holds these leaves");
    let new_root = root(&source, new_size).expect("the source holds these leaves");
    let proof = consistency_proof(&source, old_size, new_size).expect("old_size <= new_size");
    let verify = |old_root: &Hash, new_root: &Hash, proof: &[Hash]| {
        verify_consistency(old_size, new_size, old_root, new_root, proof)
    };
    assert_eq!(
        verify(&old_root, &new_root, &proof),
        Ok(()),
        "a consistency proof from {old_size} to {new_size} does not verify"
    );
    assert_altered_proofs_refused(&proof, new_root, &mut input, |altered| {
        verify(&old_root, &new_root, altered).is_err()
    });
    if old_size > 0 {
        // From the empty tree every pair of roots is consistent (RFC 9162);
        // from any other size both roots are bound by the proof.
        assert!(verify(&flipped_copy(&old_root, &mut input), &new_root, &proof).is_err());
        assert!(verify(&old_root, &flipped_copy(&new_root, &mut input), &proof).is_err());
    }
    if old_size == 0 {
        assert_eq!(old_root, empty_root());
    }
    // A consistency proof without hashes proves nothing about the input
    // (from size 0, or between equal sizes), so it does not count.
    included.is_ok() || consistent.is_ok() && !raw_proof.is_empty()
}

/// Asserts that `refuses` holds for `proof` with any one hash flipped and
/// for `proof` with `extra` appended.
fn assert_altered_proofs_refused(
    proof: &[Hash],
    extra: Hash,
    input: &mut Input,
    refuses: impl Fn(&[Hash]) -> bool,
) {
    for position in 0..proof.len() {
        let mut flipped = proof.to_vec();
        flip(&mut flipped[position], input);
        assert!(
            refuses(&flipped),
            "a proof with hash {position} flipped passed"
        );
    }
    assert!(
        refuses(&[proof, &[extra]].concat()),
        "a proof with a hash appended passed"
    );
}

/// Flips the input-chosen bits of an input-chosen byte of `hash` (never none).
fn flip(hash: &mut Hash, input: &mut Input) {
    let position = usize::from(input.u8()) % hash.len();
    hash[position] ^= input.u8() | 1;
}

fn flipped_copy(hash: &Hash, input: &mut Input) -> Hash {
    let mut copy = *hash;
    flip(&mut copy, input);
    copy
}

// ---- JSON submit input -----------------------------------------------------------

/// The "now" bare events' relative times resolve against: fixed, so a
/// finding replays (2026-12-01T00:00:00Z).
const FUZZ_NOW: prost_types::Timestamp = prost_types::Timestamp {
    seconds: 1_796_083_200,
    nanos: 0,
};

/// The path `submit` (and `sign`) take from a file's text to events:
/// `event_json::json_values` splits it into JSON values (one, or NDJSON);
/// each is a signed-event file (`SignedEventFile::from_json`) or a bare event
/// (`event_from_json`); `sign` also reads the whole text as one event.
/// Never panics, and what is read survives the trips the tools make with it:
/// a loaded signed-event file saves to one that loads to the same signed
/// event; a bare event encodes to a payload that decodes and re-encodes to
/// the same bytes, and its readable JSON (what `sign` shows and signed-event
/// files carry) reads back to the same event.
///
/// Returns whether the text held at least one value and every value was read.
pub fn submit_json(data: &[u8]) -> bool {
    // Files are read with `read_to_string`, which refuses anything not UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    if let Ok(event) = event_from_json(text) {
        check_bare_event(&event);
    }
    let Ok(values) = json_values(text) else {
        return false;
    };
    let mut all_read = !values.is_empty();
    for value in values {
        if SignedEventFile::is_signed_event_json(&value) {
            let Ok(file) = SignedEventFile::from_json(value) else {
                all_read = false;
                continue;
            };
            let saved = file.to_json().expect("a loaded file renders as JSON");
            let again =
                SignedEventFile::from_json(saved).expect("a saved signed-event file loads again");
            assert_eq!(again.signed, file.signed);
        } else {
            // As submit reads a bare event: its relative times (`now-5m`)
            // resolved first, here against a fixed instant.
            let read = relative_time::resolve(&value, &FUZZ_NOW)
                .and_then(|resolved| event_from_json(&resolved.event.to_string()));
            match read {
                Ok(event) => check_bare_event(&event),
                Err(_) => all_read = false,
            }
        }
    }
    all_read
}

fn check_bare_event(event: &Event) {
    let payload = event.encode_to_vec();
    let decoded = decode_event(&payload).expect("an encoded event decodes");
    assert_eq!(decoded.encode_to_vec(), payload);
    let json = message_to_json("ceasefire.v1.Event", event).expect("an event renders as JSON");
    let back = event_from_json(&json.to_string()).expect("an event's own JSON reads back");
    assert_eq!(
        back.encode_to_vec(),
        payload,
        "an event's JSON reads back as another event"
    );
}

// ---- tlog_proof ----------------------------------------------------------------

/// `core::tlog_proof` (receipt files, which people keep and pass around):
/// `TlogProof::parse` and `verify_receipt` (with the fixture's operator
/// key) never panic, and:
/// - a text that parses is exactly the text its proof formats to (one text
///   per proof, so a receipt cannot be re-spelled);
/// - a receipt that verifies carries its leaf at its index: the leaf decodes
///   to the `extra` bytes and its seq is the index.
///
/// Returns whether the input verified as a receipt.
pub fn tlog_proof(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(proof) = TlogProof::parse(text) else {
        return false;
    };
    assert_eq!(
        proof.to_text(),
        text,
        "a receipt file parses to a proof that formats to another text"
    );
    let Ok(verified) = verify_receipt(&proof, &checkpoint_verifier(), None) else {
        return false;
    };
    assert_eq!(verified.leaf.seq, proof.index);
    assert_eq!(Some(verified.leaf.encode()), proof.extra);
    true
}

// ---- seed corpus -----------------------------------------------------------------

/// One seed input: `fuzz/seeds/<target>/<name>`.
pub struct Seed {
    pub target: &'static str,
    pub name: &'static str,
    pub bytes: Vec<u8>,
}

/// The seed corpus, made from real data: docs/spec.md's leaf and checkpoint
/// vectors, the fuzzing fixture's log (events, leaves, its checkpoint, its
/// tree), and the JSON examples under `examples/`. Each seed is a valid input
/// of its target, so the fuzzer starts from inputs that go all the way and
/// mutates from there. `crates/fuzz-bodies/tests/regressions.rs` checks that the files
/// under `fuzz/seeds/` are these bytes (and rewrites them on request).
pub fn seed_corpus() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut add = |target, name, bytes| {
        seeds.push(Seed {
            target,
            name,
            bytes,
        })
    };

    // docs/spec.md section 8: the leaf (seed 01), and with seeds 01 and 03.
    let payload = b"ceasefire-ledger golden payload".to_vec();
    let golden = |seeds: &[[u8; 32]]| {
        let mut leaf = fixture_leaf(1, [0x11; 32], payload.clone(), seeds);
        leaf.received_at_micros = 1_764_000_000_000_000;
        leaf.encode()
    };
    add("leaf", "spec-leaf", golden(&[[0x01; 32]]));
    add(
        "leaf",
        "spec-leaf-two-signatures",
        golden(&[[0x01; 32], [0x03; 32]]),
    );
    let fixture = event_fixture();
    add("leaf", "fixture-genesis", fixture.leaves[0].clone());
    add("leaf", "fixture-observation", fixture.leaves[4].clone());

    // Events: the fixture's genesis (valid as entry 0), and a valid next
    // entry of every other kind.
    let (genesis, _) = fixture_prefix().swap_remove(0);
    add("event", "genesis", genesis.encode_to_vec());
    let next = |author: &str, body| fixture_event(author, FIXTURE_ENTRIES, 0x40, body);
    let vertex = |lat, lon| LatLon { lat, lon };
    let target_hash = fixture.index.leaf_hashes[4].to_vec();
    let next_events = [
        (
            "next-observation",
            next(
                MONITOR,
                Body::Observation(fixture_observation(
                    48.2,
                    37.3,
                    Finding::Compliance,
                    "Quiet patrol along the contact line.",
                )),
            ),
        ),
        (
            "amendment-correct",
            next(
                MONITOR,
                Body::Amendment(ceasefire_core::proto::Amendment {
                    target_seq: 4,
                    target_leaf_hash: target_hash.clone(),
                    kind: AmendmentKind::Correct as i32,
                    correction: Some(fixture_observation(
                        48.6,
                        37.7,
                        Finding::Violation,
                        "Corrected position of the explosions.",
                    )),
                    reason: "The first position was misread from the map.".into(),
                }),
            ),
        ),
        (
            "amendment-retract",
            next(
                MONITOR,
                Body::Amendment(ceasefire_core::proto::Amendment {
                    target_seq: 4,
                    target_leaf_hash: target_hash.clone(),
                    kind: AmendmentKind::Retract as i32,
                    correction: None,
                    reason: "Filed for the wrong day.".into(),
                }),
            ),
        ),
        (
            "dispute",
            next(
                SIGNATORY_B,
                Body::Dispute(Dispute {
                    target_seq: 4,
                    target_leaf_hash: target_hash,
                    reason: "No units of ours were in the area.".into(),
                }),
            ),
        ),
        (
            "add-key",
            next(
                SIGNATORY_A,
                Body::AddKey(ceasefire_core::proto::AddKey {
                    party_id: MONITOR.into(),
                    public_key: public_key([0x22; 32]).to_vec(),
                }),
            ),
        ),
        (
            "revoke-key",
            next(
                SIGNATORY_A,
                Body::RevokeKey(ceasefire_core::proto::RevokeKey {
                    party_id: MONITOR.into(),
                    public_key: public_key(MONITOR_SEED).to_vec(),
                    reason: "Key reported lost.".into(),
                }),
            ),
        ),
        (
            "register-party",
            next(
                SIGNATORY_A,
                Body::RegisterParty(RegisterParty {
                    party: Some(party(
                        "mission-bravo",
                        "Monitoring mission Bravo",
                        Role::Monitor,
                        [0x23; 32],
                    )),
                }),
            ),
        ),
        (
            "define-zone",
            next(
                SIGNATORY_A,
                Body::DefineZone(DefineZone {
                    zone_id: "crossing-1".into(),
                    version: 1,
                    name: "Crossing point 1".into(),
                    kind: ZoneKind::CrossingPoint as i32,
                    boundary: Some(Polygon {
                        vertices: vec![
                            vertex(47.50, 37.00),
                            vertex(47.50, 37.02),
                            vertex(47.52, 37.01),
                        ],
                    }),
                }),
            ),
        ),
        (
            "define-commitment",
            next(
                SIGNATORY_A,
                Body::DefineCommitment(DefineCommitment {
                    commitment_id: COMMITMENT.into(),
                    version: 2,
                    name: "Ceasefire, corroborated by one mission".into(),
                    kind: CommitmentKind::Ceasefire as i32,
                    zone_ids: vec![ZONE.into()],
                    window_seconds: 12 * 3600,
                    corroboration_quorum: 1,
                    effective_from: Some(seconds_timestamp(T0_SECONDS - 7 * 24 * 3600)),
                }),
            ),
        ),
    ];
    let mut signed_file = None;
    for (name, event) in next_events {
        if name == "next-observation" {
            let mut file = SignedEventFile::new(event.clone());
            file.add_signature(&SigningKey::from_bytes(&MONITOR_SEED))
                .expect("a first signature");
            signed_file = Some(file);
        }
        add("event", name, event.encode_to_vec());
    }

    // Checkpoints: docs/spec.md section 8's note, the fixture's tree head,
    // and that note with a witness cosignature after the operator's.
    let spec_note = sign_checkpoint(
        &CheckpointBody {
            origin: ORIGIN.into(),
            tree_size: 5,
            root_hash: empty_root(),
        },
        checkpoint_signer(),
    )
    .expect("the origin is the signer's name");
    let tree = MemorySource::from_leaf_hashes(fixture.index.leaf_hashes.iter().copied());
    let fixture_note = sign_checkpoint(
        &CheckpointBody {
            origin: ORIGIN.into(),
            tree_size: FIXTURE_ENTRIES,
            root_hash: root(&tree, FIXTURE_ENTRIES).expect("the fixture's tree"),
        },
        checkpoint_signer(),
    )
    .expect("the origin is the signer's name");
    let text = fixture_note
        .split_once("\n\n")
        .expect("a note has a blank line")
        .0;
    let cosigned = format!(
        "{fixture_note}{}",
        signature_line(
            &format!("{text}\n"),
            "witness.example",
            &SigningKey::from_bytes(&[0x31; 32])
        )
    );
    add("checkpoint", "spec-checkpoint", spec_note.into_bytes());
    add(
        "checkpoint",
        "fixture-checkpoint",
        fixture_note.clone().into_bytes(),
    );
    add("checkpoint", "cosigned", cosigned.clone().into_bytes());

    // Receipt files: fixture entries proved in the fixture's checkpoint,
    // operator-signed and cosigned.
    let receipt = |seq: u64, note: &str| {
        TlogProof {
            extra: Some(fixture.leaves[seq as usize].clone()),
            index: seq,
            inclusion_proof: inclusion_proof(&tree, seq, FIXTURE_ENTRIES).expect("in range"),
            checkpoint: note.to_owned(),
        }
        .to_text()
        .into_bytes()
    };
    add("tlog_proof", "fixture-genesis", receipt(0, &fixture_note));
    add(
        "tlog_proof",
        "fixture-observation",
        receipt(4, &fixture_note),
    );
    add(
        "tlog_proof",
        "fixture-last-cosigned",
        receipt(FIXTURE_ENTRIES - 1, &cosigned),
    );

    // Merkle: real proofs over the fixture's leaves as raw claims.
    let claim = |index: u64, size: u64, old: u64, new: u64, tree: &MemorySource, inclusion| {
        let mut bytes = Vec::new();
        for n in [index, size, old, new] {
            bytes.extend_from_slice(&n.to_be_bytes());
        }
        let leaf = tree.levels()[0][index as usize];
        let (root_a, root_b, proof) = if inclusion {
            let proof = inclusion_proof(tree, index, size).expect("in range");
            (root(tree, size).expect("held"), [0; 32], proof)
        } else {
            let proof = consistency_proof(tree, old, new).expect("in range");
            (
                root(tree, old).expect("held"),
                root(tree, new).expect("held"),
                proof,
            )
        };
        for hash in [leaf, root_a, root_b] {
            bytes.extend_from_slice(&hash);
        }
        bytes.push(proof.len() as u8);
        for hash in &proof {
            bytes.extend_from_slice(hash);
        }
        // The tree part: as many leaves as the claim's tree, mid-range sizes.
        bytes.extend_from_slice(&(new as u16).to_be_bytes());
        bytes.extend_from_slice(b"fuzzsalt");
        for n in [index, size, new, old] {
            bytes.extend_from_slice(&(n as u16).to_be_bytes());
        }
        bytes
    };
    let eleven = MemorySource::from_leaf_hashes((0u8..11).map(|i| hash_leaf(&[i])));
    add(
        "merkle",
        "fixture-inclusion-2-of-5",
        claim(2, 5, 0, 5, &tree, true),
    );
    add(
        "merkle",
        "fixture-consistency-3-to-5",
        claim(0, 5, 3, 5, &tree, false),
    );
    add(
        "merkle",
        "inclusion-6-of-11",
        claim(6, 11, 0, 11, &eleven, true),
    );
    add(
        "merkle",
        "consistency-6-to-11",
        claim(0, 11, 6, 11, &eleven, false),
    );

    // JSON: the dev and scenario examples, a two-event NDJSON, a signed-event file.
    add(
        "submit_json",
        "dev-observation",
        include_bytes!("../../../examples/dev/observation.json").to_vec(),
    );
    add(
        "submit_json",
        "scenario-zone",
        include_bytes!("../../../examples/scenario/governance/01-zone-sector-1.json").to_vec(),
    );
    let ndjson = include_str!("../../../examples/scenario/observations/mission-alpha.ndjson")
        .replace("@DAY@", "2026-11-25");
    add("submit_json", "scenario-ndjson", ndjson.into_bytes());
    let signed_file = signed_file.expect("made above");
    let json = signed_file.to_json().expect("a signed-event file renders");
    add(
        "submit_json",
        "signed-event-file",
        (serde_json::to_string_pretty(&json).expect("JSON") + "\n").into_bytes(),
    );
    seeds
}
