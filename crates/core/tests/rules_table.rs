//! The rules, tested where they live: one table of (ledger state, event,
//! signers, expected reason or acceptance), judged by the core alone (no
//! gRPC, no sled), in the order docs/spec.md section 6 ("Which check wins")
//! gives the server: the signature list, decoding, the agreement, strict
//! verification, then `LedgerState::from_genesis` or `LedgerState::check`.
//!
//! Every reason the core can produce has a row (a test checks it), every
//! refusal carries exactly the metadata keys the spec gives its reason, and
//! rows name the metadata values that matter (the field path, the seq, the
//! key, the party).

use std::borrow::Cow;
use std::collections::BTreeSet;

use ceasefire_core::leaf::Leaf;
use ceasefire_core::merkle::{hash_leaf, Hash};
use ceasefire_core::proto::{
    event::Body, AddKey, Amendment, AmendmentKind, Category, CommitmentKind, DefineCommitment,
    DefineZone, Dispute, Event, Evidence, Finding, Genesis, LatLon, Location, Observation, Party,
    Polygon, RegisterParty, RevokeKey, Role, ZoneKind,
};
use ceasefire_core::rejection::{reason_name, ReasonCode, Rejection, RejectionKind};
use ceasefire_core::replay::MemoryIndex;
use ceasefire_core::rules::{decode_event, micros_timestamp, Accepted, EntryContext, LedgerState};
use ceasefire_core::signing::{canonical_signatures, sign_event, verify_all};
use ceasefire_core::step::{step, Entry, Fold};
use ceasefire_core::windows::MemoryWindows;
use ed25519_dalek::SigningKey;
use prost::Message;

const AGREEMENT: &str = "test-agreement";
const ORIGIN: &str = "ledger.example/test";
/// The ledger's clock when every row is judged.
const NOW: i64 = 1_700_000_000_000_000;
/// When rows' events were made: a minute before.
const CREATED: i64 = NOW - 60_000_000;

/// Deterministic keys, one per seed.
fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}
fn public(seed: u8) -> Vec<u8> {
    key(seed).verifying_key().to_bytes().to_vec()
}
fn key_text(seed: u8) -> String {
    ceasefire_core::key_text(public(seed))
}

// The parties of the test ledger and their keys' seeds.
const SIG_A: u8 = 1;
const SIG_B: u8 = 2;
const SIG_C: u8 = 3;
const MON_A: u8 = 10;
const MON_B: u8 = 11;
const OBSERVER: u8 = 12;
/// Added to mon-a at seq 4, revoked at seq 5.
const MON_A_OLD: u8 = 13;
const OPERATOR: u8 = 99;
/// Registered to no one.
const STRANGER: u8 = 50;

/// The identity point: a canonical encoding, of small order.
fn small_order_key() -> Vec<u8> {
    let mut key = vec![0; 32];
    key[0] = 1;
    key
}

fn event(author: &str, body: Body) -> Event {
    Event {
        agreement_id: AGREEMENT.into(),
        author: author.into(),
        created_at: Some(micros_timestamp(CREATED)),
        nonce: b"nonce-0123456789".to_vec(),
        body: Some(body),
    }
}

fn party(id: &str, role: Role, keys: &[u8]) -> Party {
    Party {
        party_id: id.into(),
        name: format!("Party {id}"),
        role: role as i32,
        public_keys: keys.iter().map(|seed| public(*seed)).collect(),
    }
}

fn genesis_body() -> Genesis {
    Genesis {
        origin: ORIGIN.into(),
        title: "Test agreement".into(),
        signatories: vec![
            party("sig-a", Role::Signatory, &[SIG_A]),
            party("sig-b", Role::Signatory, &[SIG_B]),
            party("sig-c", Role::Signatory, &[SIG_C]),
        ],
        threshold: 2,
        operator_public_key: public(OPERATOR),
        max_clock_skew_seconds: 0,
    }
}

fn genesis_with(change: impl FnOnce(&mut Genesis)) -> Event {
    let mut genesis = genesis_body();
    change(&mut genesis);
    event("sig-a", Body::Genesis(genesis))
}

fn register(party: Party) -> Event {
    event(
        "sig-a",
        Body::RegisterParty(RegisterParty { party: Some(party) }),
    )
}

fn add_key(party_id: &str, public_key: Vec<u8>) -> Event {
    event(
        "sig-a",
        Body::AddKey(AddKey {
            party_id: party_id.into(),
            public_key,
        }),
    )
}

fn revoke_key(party_id: &str, public_key: Vec<u8>) -> Event {
    event(
        "sig-a",
        Body::RevokeKey(RevokeKey {
            party_id: party_id.into(),
            public_key,
            reason: "lost".into(),
        }),
    )
}

/// A square of one degree with its south-west corner at (lat, lon).
fn square(lat: f64, lon: f64) -> Polygon {
    Polygon {
        vertices: [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0)]
            .iter()
            .map(|(dlat, dlon)| LatLon {
                lat: lat + dlat,
                lon: lon + dlon,
            })
            .collect(),
    }
}

fn define_zone(zone_id: &str, version: u32, boundary: Option<Polygon>) -> Event {
    event(
        "sig-a",
        Body::DefineZone(DefineZone {
            zone_id: zone_id.into(),
            version,
            name: format!("Zone {zone_id}"),
            kind: ZoneKind::BufferZone as i32,
            boundary,
        }),
    )
}

fn commitment(commitment_id: &str, version: u32, zone_ids: &[&str]) -> DefineCommitment {
    DefineCommitment {
        commitment_id: commitment_id.into(),
        version,
        name: format!("Commitment {commitment_id}"),
        kind: CommitmentKind::Ceasefire as i32,
        zone_ids: zone_ids.iter().map(|id| id.to_string()).collect(),
        window_seconds: 86_400,
        corroboration_quorum: 1,
        effective_from: Some(micros_timestamp(NOW - 86_400_000_000)),
    }
}

fn define_commitment(change: impl FnOnce(&mut DefineCommitment)) -> Event {
    let mut define = commitment("new-commitment", 1, &["zone-n"]);
    change(&mut define);
    event("sig-a", Body::DefineCommitment(define))
}

/// A valid observation of commitment "cf" in zone "zone-n".
fn observation_body() -> Observation {
    Observation {
        observed_from: Some(micros_timestamp(CREATED - 600_000_000)),
        observed_until: Some(micros_timestamp(CREATED)),
        location: Some(Location {
            point: Some(LatLon {
                lat: 10.5,
                lon: 20.5,
            }),
            accuracy_m: 50.0,
        }),
        zone_id: "zone-n".into(),
        commitment_id: "cf".into(),
        finding: Finding::Violation as i32,
        category: Category::Explosion as i32,
        quantity: 1,
        attributed_side: "north".into(),
        evidence: vec![Evidence {
            sha256: vec![7; 32],
            media_type: "image/jpeg".into(),
            uri: "https://evidence.example/1".into(),
        }],
        narrative: "An explosion was heard.".into(),
    }
}

fn observation_by(author: &str, change: impl FnOnce(&mut Observation)) -> Event {
    let mut observation = observation_body();
    change(&mut observation);
    event(author, Body::Observation(observation))
}

fn observation(change: impl FnOnce(&mut Observation)) -> Event {
    observation_by("mon-a", change)
}

/// The fake leaf hash of entry `seq` in the test log.
fn leaf_hash(seq: u64) -> Hash {
    hash_leaf(&seq.to_be_bytes())
}

fn amendment_by(author: &str, target_seq: u64, change: impl FnOnce(&mut Amendment)) -> Event {
    let mut amendment = Amendment {
        target_seq,
        target_leaf_hash: leaf_hash(target_seq).to_vec(),
        kind: AmendmentKind::Retract as i32,
        correction: None,
        reason: "mistaken".into(),
    };
    change(&mut amendment);
    event(author, Body::Amendment(amendment))
}

fn dispute_by(author: &str, target_seq: u64, change: impl FnOnce(&mut Dispute)) -> Event {
    let mut dispute = Dispute {
        target_seq,
        target_leaf_hash: leaf_hash(target_seq).to_vec(),
        reason: "did not happen".into(),
    };
    change(&mut dispute);
    event(author, Body::Dispute(dispute))
}

/// A signed event as it arrives: payload and (public key, signature) pairs.
#[derive(Clone)]
struct Wire {
    payload: Vec<u8>,
    signatures: Vec<(Vec<u8>, Vec<u8>)>,
}

fn wire(event: &Event, signers: &[u8]) -> Wire {
    let payload = event.encode_to_vec();
    let signatures = signers
        .iter()
        .map(|seed| {
            let signature = sign_event(&payload, &key(*seed));
            (signature.public_key.to_vec(), signature.signature.to_vec())
        })
        .collect();
    Wire {
        payload,
        signatures,
    }
}

/// The stateless checks every submission goes through first, in the
/// server's order; the event and its verified signers.
fn stateless(
    state: Option<&LedgerState>,
    wire: &Wire,
) -> Result<(Event, Vec<[u8; 32]>), Rejection> {
    let signatures = canonical_signatures(wire.signatures.iter().cloned())?;
    let event = decode_event(&wire.payload)?;
    if let Some(state) = state {
        if event.agreement_id != state.agreement.agreement_id {
            return Err(ceasefire_core::rules::wrong_agreement(
                &event.agreement_id,
                &state.agreement.agreement_id,
            ));
        }
    }
    verify_all(&wire.payload, &signatures)?;
    Ok((
        event,
        signatures
            .iter()
            .map(|signature| signature.public_key)
            .collect(),
    ))
}

/// The test ledger after its setup entries, ready for entry `seq`.
struct Ledger {
    state: LedgerState,
    index: MemoryIndex,
}

/// Takes `wire` through the stateless checks and then, as entry `seq`,
/// through the step (check, apply, index; no fold): the rules must accept
/// it. `state` is `None` before the genesis.
fn set_up(state: &mut Option<Cow<'_, LedgerState>>, index: &mut MemoryIndex, wire: &Wire) {
    let seq = index.leaf_hashes.len() as u64;
    fn accepted<T>(seq: u64, verdict: Result<T, Rejection>) -> T {
        verdict.unwrap_or_else(|rejection| panic!("setup entry {seq} refused: {rejection:?}"))
    }
    let (event, _) = accepted(seq, stateless(state.as_deref(), wire));
    let leaf = Leaf {
        seq,
        prev_leaf_hash: index.leaf_hashes.last().copied().unwrap_or([0; 32]),
        received_at_micros: NOW,
        payload: wire.payload.clone(),
        signatures: accepted(seq, canonical_signatures(wire.signatures.iter().cloned())),
    };
    let Ok(verdict) = step(
        state,
        Entry {
            seq,
            leaf: &leaf,
            leaf_hash: leaf_hash(seq),
            event: &event,
        },
        &*index,
        Fold::Nothing::<MemoryWindows>,
        |_| Ok(()),
    );
    let stepped = accepted(seq, verdict);
    index.record(leaf_hash(seq), &stepped);
}

impl Ledger {
    /// The ledger its genesis founds, as entry 0.
    fn found(genesis: &Wire) -> Ledger {
        let mut state = None;
        let mut index = MemoryIndex::default();
        set_up(&mut state, &mut index, genesis);
        Ledger {
            state: state.expect("the genesis founds the state").into_owned(),
            index,
        }
    }

    fn seq(&self) -> u64 {
        self.index.leaf_hashes.len() as u64
    }

    fn context(&self, seq: u64) -> EntryContext {
        EntryContext {
            seq,
            received_at_micros: NOW,
            leaf_hash: leaf_hash(seq),
        }
    }

    /// Judges `wire` as the next entry, changing nothing.
    fn judge(&self, wire: &Wire) -> Result<Accepted, Rejection> {
        let (event, signers) = stateless(Some(&self.state), wire)?;
        let Ok(verdict) =
            self.state
                .check(&event, &signers, &self.context(self.seq()), &self.index);
        verdict
    }

    /// Appends an event the rules must accept.
    fn append(&mut self, event: Event, signers: &[u8]) {
        let mut state = Some(Cow::Borrowed(&self.state));
        set_up(&mut state, &mut self.index, &wire(&event, signers));
        if let Some(Cow::Owned(changed)) = state {
            self.state = changed;
        }
    }
}

/// The genesis as entry 0, judged on an empty ledger.
fn judge_genesis(wire: &Wire, seq: u64) -> Result<LedgerState, Rejection> {
    let (event, signers) = stateless(None, wire)?;
    LedgerState::from_genesis(
        &event,
        &signers,
        &EntryContext {
            seq,
            received_at_micros: NOW,
            leaf_hash: leaf_hash(seq),
        },
    )
}

/// The test ledger: three signatories (threshold 2), two monitors and an
/// observer, a revoked key, two zones, two commitments, a live observation
/// (seq 10), a retracted one (seq 11) and the retraction (seq 12).
fn ledger() -> Ledger {
    let genesis = wire(&genesis_with(|_| {}), &[SIG_A, SIG_B]);
    let mut ledger = Ledger::found(&genesis);
    let governors = [SIG_A, SIG_B];
    ledger.append(
        register(party("mon-a", Role::Monitor, &[MON_A])),
        &governors,
    );
    ledger.append(
        register(party("mon-b", Role::Monitor, &[MON_B])),
        &governors,
    );
    ledger.append(
        register(party("observer", Role::Observer, &[OBSERVER])),
        &governors,
    );
    ledger.append(add_key("mon-a", public(MON_A_OLD)), &governors);
    ledger.append(revoke_key("mon-a", public(MON_A_OLD)), &governors);
    ledger.append(
        define_zone("zone-n", 1, Some(square(10.0, 20.0))),
        &governors,
    );
    ledger.append(
        define_zone("zone-s", 1, Some(square(0.0, 20.0))),
        &governors,
    );
    ledger.append(
        event(
            "sig-a",
            Body::DefineCommitment(commitment("cf", 1, &["zone-n"])),
        ),
        &governors,
    );
    ledger.append(
        event(
            "sig-a",
            Body::DefineCommitment(commitment("other", 1, &["zone-s"])),
        ),
        &governors,
    );
    ledger.append(observation(|_| {}), &[MON_A]);
    ledger.append(observation(|_| {}), &[MON_A]);
    ledger.append(amendment_by("mon-a", 11, |_| {}), &[MON_A]);
    assert_eq!(ledger.seq(), 13);
    ledger
}

/// Where a row's event is judged.
#[derive(Clone, Copy, Debug)]
enum At {
    /// As entry 0 of an empty ledger.
    Genesis,
    /// `LedgerState::from_genesis` at another seq.
    MisplacedGenesis(u64),
    /// As the next entry of [`ledger`].
    Next,
}

struct Row {
    name: &'static str,
    at: At,
    wire: Wire,
    /// `None`: accepted.
    expect: Option<ReasonCode>,
    /// Metadata values the refusal must carry.
    metadata: Vec<(&'static str, String)>,
}

fn row(name: &'static str, event: Event, signers: &[u8]) -> Row {
    Row {
        name,
        at: At::Next,
        wire: wire(&event, signers),
        expect: None,
        metadata: Vec::new(),
    }
}

impl Row {
    fn refused(mut self, reason: ReasonCode) -> Row {
        self.expect = Some(reason);
        self
    }
    fn meta(mut self, key: &'static str, value: impl ToString) -> Row {
        self.metadata.push((key, value.to_string()));
        self
    }
    fn field(self, path: &str) -> Row {
        self.meta("field", path)
    }
    fn at(mut self, at: At) -> Row {
        self.at = at;
        self
    }
    fn tamper(mut self, change: impl FnOnce(&mut Wire)) -> Row {
        change(&mut self.wire);
        self
    }
}

fn genesis_row(name: &'static str, change: impl FnOnce(&mut Genesis), signers: &[u8]) -> Row {
    row(name, genesis_with(change), signers).at(At::Genesis)
}

const GOV: [u8; 2] = [SIG_A, SIG_B];

fn rows() -> Vec<Row> {
    use ReasonCode as R;
    let mut rows = vec![
        // ---- Accepted ----
        genesis_row("a valid genesis", |_| {}, &GOV),
        genesis_row(
            "an origin of 255 bytes",
            |genesis| genesis.origin = "o".repeat(255),
            &GOV,
        ),
        row("a valid observation", observation(|_| {}), &[MON_A]),
        row(
            "an observation naming no zone gets the one containing it",
            observation(|o| o.zone_id.clear()),
            &[MON_A],
        ),
        row(
            "a valid registration",
            register(party("mon-c", Role::Monitor, &[20])),
            &GOV,
        ),
        row(
            "three signatories sign governance",
            add_key("mon-b", public(21)),
            &[SIG_A, SIG_B, SIG_C],
        ),
        row(
            "a zone redefined at version 2",
            define_zone("zone-n", 2, Some(square(10.0, 20.0))),
            &GOV,
        ),
        row(
            "a correction",
            amendment_by("mon-a", 10, |a| {
                a.kind = AmendmentKind::Correct as i32;
                a.correction = Some(observation_body());
            }),
            &[MON_A],
        ),
        row(
            "a dispute by a signatory",
            dispute_by("sig-b", 10, |_| {}),
            &[SIG_B],
        ),
        // ---- The signature list (before the payload is decoded) ----
        row("a public key of 31 bytes", observation(|_| {}), &[MON_A])
            .tamper(|w| {
                w.signatures[0].0.pop();
            })
            .refused(R::SignatureMalformed)
            .field("signatures[0].public_key"),
        row(
            "a signature of 63 bytes",
            observation(|_| {}),
            &[MON_B, MON_A],
        )
        .tamper(|w| w.signatures[1].1.truncate(63))
        .refused(R::SignatureMalformed)
        .field("signatures[1].signature"),
        row("no signature", observation(|_| {}), &[])
            .refused(R::SignatureCountInvalid)
            .meta("limit", 32),
        row("33 signatures", observation(|_| {}), &[MON_A])
            .tamper(|w| {
                w.signatures = (100..133u8)
                    .map(|seed| {
                        let signature = sign_event(&w.payload, &key(seed));
                        (signature.public_key.to_vec(), signature.signature.to_vec())
                    })
                    .collect()
            })
            .refused(R::SignatureCountInvalid)
            .meta("limit", 32),
        row("one key signs twice", observation(|_| {}), &[MON_A, MON_A])
            .refused(R::SignerDuplicated)
            .meta("public_key", key_text(MON_A)),
        row(
            "a malformed signature wins over an undecodable payload",
            observation(|_| {}),
            &[MON_A],
        )
        .tamper(|w| {
            w.payload = vec![0x0a, 0x05, b'a'];
            w.signatures[0].1.push(0);
        })
        .refused(R::SignatureMalformed)
        .field("signatures[0].signature"),
        // ---- The payload ----
        row("a truncated payload", observation(|_| {}), &[MON_A])
            .tamper(|w| w.payload = vec![0x0a, 0x05, b'a'])
            .refused(R::PayloadUndecodable),
        row(
            "a payload with a field out of order",
            observation(|_| {}),
            &[MON_A],
        )
        .tamper(|w| w.payload.extend_from_slice(&[0x0a, 0x00]))
        .refused(R::NonCanonicalPayload),
        // ---- The agreement, then the signatures ----
        row(
            "another agreement's event",
            {
                let mut event = observation(|_| {});
                event.agreement_id = "other-agreement".into();
                event
            },
            &[MON_A],
        )
        .refused(R::WrongAgreement)
        .meta("agreement_id", AGREEMENT),
        row(
            "another agreement wins over a bad signature",
            {
                let mut event = observation(|_| {});
                event.agreement_id = "other-agreement".into();
                event
            },
            &[MON_A],
        )
        .tamper(|w| w.signatures[0].1[0] ^= 1)
        .refused(R::WrongAgreement),
        row(
            "a signature over other bytes",
            observation(|_| {}),
            &[MON_A],
        )
        .tamper(|w| w.signatures[0].1[5] ^= 1)
        .refused(R::SignatureInvalid)
        .meta("public_key", key_text(MON_A)),
        row(
            "the first failing signature in key order answers",
            observation(|_| {}),
            &[MON_A, MON_B],
        )
        .tamper(|w| {
            for signature in &mut w.signatures {
                signature.1[5] ^= 1;
            }
        })
        .refused(R::SignatureInvalid)
        .meta("public_key", {
            let mut keys = [public(MON_A), public(MON_B)];
            keys.sort();
            ceasefire_core::key_text(&keys[0])
        }),
        row(
            "a public key that is no point",
            observation(|_| {}),
            &[MON_A],
        )
        .tamper(|w| w.signatures[0].0 = not_a_point())
        .refused(R::SignatureInvalid)
        .meta("public_key", ceasefire_core::key_text(not_a_point())),
        // ---- 9.1 the header ----
        row(
            "no author",
            {
                let mut event = observation(|_| {});
                event.author.clear();
                event
            },
            &[MON_A],
        )
        .refused(R::FieldMissing)
        .field("author"),
        row(
            "an author that is no identifier",
            {
                let mut event = observation(|_| {});
                event.author = "Mon A".into();
                event
            },
            &[MON_A],
        )
        .refused(R::FieldMalformed)
        .field("author"),
        row(
            "no created_at",
            {
                let mut event = observation(|_| {});
                event.created_at = None;
                event
            },
            &[MON_A],
        )
        .refused(R::FieldMissing)
        .field("created_at"),
        row(
            "created_at with negative nanos",
            {
                let mut event = observation(|_| {});
                event.created_at.as_mut().unwrap().nanos = -1;
                event
            },
            &[MON_A],
        )
        .refused(R::FieldMalformed)
        .field("created_at.nanos"),
        row(
            "created_at before 1970",
            {
                let mut event = observation(|_| {});
                event.created_at.as_mut().unwrap().seconds = -1;
                event
            },
            &[MON_A],
        )
        .refused(R::FieldOutOfBounds)
        .field("created_at.seconds"),
        row(
            "a nonce of 7 bytes",
            {
                let mut event = observation(|_| {});
                event.nonce.truncate(7);
                event
            },
            &[MON_A],
        )
        .refused(R::FieldOutOfBounds)
        .field("nonce"),
        row(
            "the header wins over an unregistered key",
            {
                let mut event = observation(|_| {});
                event.nonce.truncate(7);
                event
            },
            &[STRANGER],
        )
        .refused(R::FieldOutOfBounds)
        .field("nonce"),
        // ---- 9.2 the clock ----
        row(
            "created_at beyond the skew",
            {
                let mut event = observation(|_| {});
                event.created_at = Some(micros_timestamp(NOW + 301_000_000));
                event
            },
            &[MON_A],
        )
        .refused(R::TimeInFuture)
        .field("created_at")
        .meta("max_clock_skew_seconds", 300),
        // ---- 9.3 signing keys ----
        row("an unregistered key", observation(|_| {}), &[STRANGER])
            .refused(R::KeyNotRegistered)
            .meta("public_key", key_text(STRANGER)),
        row("a revoked key", observation(|_| {}), &[MON_A_OLD])
            .refused(R::KeyRevoked)
            .meta("public_key", key_text(MON_A_OLD))
            .meta("party_id", "mon-a")
            .meta("revoked_seq", 5),
        row(
            "an unregistered key wins over a missing body",
            {
                let mut event = observation(|_| {});
                event.body = None;
                event
            },
            &[STRANGER],
        )
        .refused(R::KeyNotRegistered),
        // ---- 9.4 to 9.6 ----
        row(
            "no body",
            {
                let mut event = observation(|_| {});
                event.body = None;
                event
            },
            &[MON_A],
        )
        .refused(R::FieldMissing)
        .field("body"),
        row(
            "an unregistered author",
            observation_by("nobody", |_| {}),
            &[MON_A],
        )
        .refused(R::AuthorNotRegistered)
        .meta("party_id", "nobody"),
        row(
            "a second genesis",
            event("sig-a", Body::Genesis(genesis_body())),
            &GOV,
        )
        .refused(R::GenesisMisplaced),
        // ---- 9.7 authority ----
        row(
            "an observation by a signatory",
            observation_by("sig-a", |_| {}),
            &[SIG_A],
        )
        .refused(R::WrongRole)
        .meta("party_id", "sig-a")
        .meta("role", "ROLE_SIGNATORY"),
        row(
            "an observation by an observer",
            observation_by("observer", |_| {}),
            &[OBSERVER],
        )
        .refused(R::WrongRole)
        .meta("party_id", "observer")
        .meta("role", "ROLE_OBSERVER"),
        row(
            "governance authored by a monitor",
            {
                let mut event = add_key("mon-b", public(21));
                event.author = "mon-a".into();
                event
            },
            &[MON_A, SIG_A, SIG_B],
        )
        .refused(R::WrongRole)
        .meta("party_id", "mon-a")
        .meta("role", "ROLE_MONITOR"),
        row(
            "governance signed by a monitor too",
            add_key("mon-b", public(21)),
            &[SIG_A, SIG_B, MON_A],
        )
        .refused(R::WrongRole)
        .meta("party_id", "mon-a")
        .meta("role", "ROLE_MONITOR"),
        row(
            "a dispute by a monitor",
            dispute_by("mon-a", 10, |_| {}),
            &[MON_A],
        )
        .refused(R::WrongRole)
        .meta("party_id", "mon-a")
        .meta("role", "ROLE_MONITOR"),
        row(
            "governance its author did not sign",
            {
                let mut event = add_key("mon-b", public(21));
                event.author = "sig-c".into();
                event
            },
            &GOV,
        )
        .refused(R::AuthorNotSigner)
        .meta("party_id", "sig-c"),
        row(
            "governance below the threshold",
            add_key("mon-b", public(21)),
            &[SIG_A],
        )
        .refused(R::BelowThreshold)
        .meta("threshold", 2)
        .meta("signatories", 1),
        row(
            "an observation signed by another monitor too",
            observation(|_| {}),
            &[MON_A, MON_B],
        )
        .refused(R::SignerNotAuthor)
        .meta("public_key", key_text(MON_B))
        .meta("party_id", "mon-a"),
        // ---- Governance content ----
        row(
            "a registration without a party",
            event("sig-a", Body::RegisterParty(RegisterParty { party: None })),
            &GOV,
        )
        .refused(R::FieldMissing)
        .field("register_party.party"),
        row(
            "a party with a blank name",
            register({
                let mut party = party("mon-c", Role::Monitor, &[20]);
                party.name = "  ".into();
                party
            }),
            &GOV,
        )
        .refused(R::FieldMissing)
        .field("register_party.party.name"),
        row(
            "a party without keys",
            register(party("mon-c", Role::Monitor, &[])),
            &GOV,
        )
        .refused(R::FieldMissing)
        .field("register_party.party.public_keys"),
        row(
            "a party without a role",
            register(party("mon-c", Role::Unspecified, &[20])),
            &GOV,
        )
        .refused(R::FieldMissing)
        .field("register_party.party.role"),
        row(
            "a party of an unknown role",
            register({
                let mut party = party("mon-c", Role::Monitor, &[20]);
                party.role = 42;
                party
            }),
            &GOV,
        )
        .refused(R::FieldMalformed)
        .field("register_party.party.role"),
        row(
            "a party name over 256 bytes",
            register({
                let mut party = party("mon-c", Role::Monitor, &[20]);
                party.name = "n".repeat(257);
                party
            }),
            &GOV,
        )
        .refused(R::FieldOutOfBounds)
        .field("register_party.party.name"),
        row(
            "a party with a small-order key",
            register({
                let mut party = party("mon-c", Role::Monitor, &[20]);
                party.public_keys.push(small_order_key());
                party
            }),
            &GOV,
        )
        .refused(R::KeyUnacceptable)
        .field("register_party.party.public_keys[1]"),
        row(
            "a party listing one key twice",
            register(party("mon-c", Role::Monitor, &[20, 21, 20])),
            &GOV,
        )
        .refused(R::DuplicateInList)
        .field("register_party.party.public_keys[2]"),
        row(
            "a party registered again",
            register(party("mon-a", Role::Monitor, &[20])),
            &GOV,
        )
        .refused(R::PartyAlreadyRegistered)
        .meta("party_id", "mon-a"),
        row(
            "a new party with another's key",
            register(party("mon-c", Role::Monitor, &[MON_B])),
            &GOV,
        )
        .refused(R::KeyAlreadyRegistered)
        .meta("public_key", key_text(MON_B))
        .meta("party_id", "mon-b"),
        row(
            "a revoked key added again",
            add_key("mon-b", public(MON_A_OLD)),
            &GOV,
        )
        .refused(R::KeyAlreadyRegistered)
        .meta("public_key", key_text(MON_A_OLD))
        .meta("party_id", "mon-a"),
        row(
            "a key of 31 bytes added",
            add_key("mon-b", vec![1; 31]),
            &GOV,
        )
        .refused(R::FieldMalformed)
        .field("add_key.public_key"),
        row(
            "a small-order key added",
            add_key("mon-b", small_order_key()),
            &GOV,
        )
        .refused(R::KeyUnacceptable)
        .field("add_key.public_key"),
        row(
            "a key added to no party",
            add_key("ghost", public(21)),
            &GOV,
        )
        .refused(R::PartyUnknown)
        .meta("party_id", "ghost"),
        row(
            "a key revoked from no party",
            revoke_key("ghost", public(21)),
            &GOV,
        )
        .refused(R::PartyUnknown)
        .meta("party_id", "ghost"),
        row(
            "a key revoked from a party without it",
            revoke_key("mon-a", public(MON_B)),
            &GOV,
        )
        .refused(R::KeyNotOfParty)
        .meta("public_key", key_text(MON_B))
        .meta("party_id", "mon-a"),
        row(
            "a key revoked twice",
            revoke_key("mon-a", public(MON_A_OLD)),
            &GOV,
        )
        .refused(R::KeyAlreadyRevoked)
        .meta("public_key", key_text(MON_A_OLD))
        .meta("revoked_seq", 5),
        row(
            "a key of 31 bytes revoked",
            revoke_key("mon-a", vec![1; 31]),
            &GOV,
        )
        .refused(R::FieldMalformed)
        .field("revoke_key.public_key"),
        row(
            "a new zone at version 2",
            define_zone("zone-x", 2, Some(square(30.0, 30.0))),
            &GOV,
        )
        .refused(R::DefinitionVersionInvalid)
        .meta("expected_version", 1),
        row(
            "a zone redefined at its own version",
            define_zone("zone-n", 1, Some(square(30.0, 30.0))),
            &GOV,
        )
        .refused(R::DefinitionVersionInvalid)
        .meta("expected_version", 2),
        row(
            "a commitment redefined at version 3",
            define_commitment(|c| {
                c.commitment_id = "cf".into();
                c.version = 3;
            }),
            &GOV,
        )
        .refused(R::DefinitionVersionInvalid)
        .meta("expected_version", 2),
        row(
            "a zone without a boundary",
            define_zone("zone-x", 1, None),
            &GOV,
        )
        .refused(R::FieldMissing)
        .field("define_zone.boundary"),
        row(
            "a zone of two vertices",
            define_zone(
                "zone-x",
                1,
                Some(Polygon {
                    vertices: square(30.0, 30.0).vertices[..2].to_vec(),
                }),
            ),
            &GOV,
        )
        .refused(R::ZoneBoundaryInvalid)
        .field("define_zone.boundary"),
        row(
            "a self-intersecting zone",
            define_zone(
                "zone-x",
                1,
                Some(Polygon {
                    vertices: [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0)]
                        .iter()
                        .map(|(lat, lon)| LatLon {
                            lat: 30.0 + lat,
                            lon: 30.0 + lon,
                        })
                        .collect(),
                }),
            ),
            &GOV,
        )
        .refused(R::ZoneBoundaryInvalid)
        .field("define_zone.boundary"),
        row(
            "a zone id that is no identifier",
            define_zone("Zone X", 1, Some(square(30.0, 30.0))),
            &GOV,
        )
        .refused(R::FieldMalformed)
        .field("define_zone.zone_id"),
        row(
            "a commitment binding no zone",
            define_commitment(|c| c.zone_ids.clear()),
            &GOV,
        )
        .refused(R::FieldMissing)
        .field("define_commitment.zone_ids"),
        row(
            "a commitment binding an unknown zone",
            define_commitment(|c| c.zone_ids.push("nowhere".into())),
            &GOV,
        )
        .refused(R::ZoneUnknown)
        .meta("zone_id", "nowhere"),
        row(
            "a commitment binding a zone twice",
            define_commitment(|c| {
                c.zone_ids = vec!["zone-n".into(), "zone-s".into(), "zone-n".into()]
            }),
            &GOV,
        )
        .refused(R::DuplicateInList)
        .field("define_commitment.zone_ids[2]"),
        row(
            "a commitment window of 0 s",
            define_commitment(|c| c.window_seconds = 0),
            &GOV,
        )
        .refused(R::FieldOutOfBounds)
        .field("define_commitment.window_seconds"),
        row(
            "a quorum of 65",
            define_commitment(|c| c.corroboration_quorum = 65),
            &GOV,
        )
        .refused(R::FieldOutOfBounds)
        .field("define_commitment.corroboration_quorum"),
        row(
            "a commitment without a kind",
            define_commitment(|c| c.kind = 0),
            &GOV,
        )
        .refused(R::FieldMissing)
        .field("define_commitment.kind"),
        row(
            "a commitment without effective_from",
            define_commitment(|c| c.effective_from = None),
            &GOV,
        )
        .refused(R::FieldMissing)
        .field("define_commitment.effective_from"),
        // ---- Observation content ----
        row(
            "observed_from after observed_until",
            observation(|o| o.observed_from = Some(micros_timestamp(CREATED + 1))),
            &[MON_A],
        )
        .refused(R::FieldOutOfBounds)
        .field("observation.observed_from"),
        row(
            "observed_until beyond the skew",
            observation(|o| o.observed_until = Some(micros_timestamp(NOW + 400_000_000))),
            &[MON_A],
        )
        .refused(R::TimeInFuture)
        .field("observation.observed_until")
        .meta("max_clock_skew_seconds", 300),
        row(
            "no observed_from",
            observation(|o| o.observed_from = None),
            &[MON_A],
        )
        .refused(R::FieldMissing)
        .field("observation.observed_from"),
        row("no location", observation(|o| o.location = None), &[MON_A])
            .refused(R::FieldMissing)
            .field("observation.location"),
        row(
            "no point",
            observation(|o| o.location.as_mut().unwrap().point = None),
            &[MON_A],
        )
        .refused(R::FieldMissing)
        .field("observation.location.point"),
        row(
            "a latitude of 91",
            observation(|o| o.location.as_mut().unwrap().point.as_mut().unwrap().lat = 91.0),
            &[MON_A],
        )
        .refused(R::FieldOutOfBounds)
        .field("observation.location.point"),
        row(
            "a longitude that is no number",
            observation(|o| o.location.as_mut().unwrap().point.as_mut().unwrap().lon = f64::NAN),
            &[MON_A],
        )
        .refused(R::FieldOutOfBounds)
        .field("observation.location.point"),
        row(
            "a negative accuracy",
            observation(|o| o.location.as_mut().unwrap().accuracy_m = -1.0),
            &[MON_A],
        )
        .refused(R::FieldOutOfBounds)
        .field("observation.location.accuracy_m"),
        row("no finding", observation(|o| o.finding = 0), &[MON_A])
            .refused(R::FieldMissing)
            .field("observation.finding"),
        row(
            "an unknown category",
            observation(|o| o.category = 99),
            &[MON_A],
        )
        .refused(R::FieldMalformed)
        .field("observation.category"),
        row(
            "a narrative over 4096 bytes",
            observation(|o| o.narrative = "x".repeat(4097)),
            &[MON_A],
        )
        .refused(R::FieldOutOfBounds)
        .field("observation.narrative"),
        row(
            "a control character in the narrative",
            observation(|o| o.narrative = "bell\u{7}".into()),
            &[MON_A],
        )
        .refused(R::FieldMalformed)
        .field("observation.narrative"),
        row(
            "33 evidence items",
            observation(|o| o.evidence = vec![o.evidence[0].clone(); 33]),
            &[MON_A],
        )
        .refused(R::FieldOutOfBounds)
        .field("observation.evidence"),
        row(
            "an evidence digest of 31 bytes",
            observation(|o| {
                o.evidence[0].sha256.pop();
            }),
            &[MON_A],
        )
        .refused(R::FieldMalformed)
        .field("observation.evidence[0].sha256"),
        row(
            "evidence without a media type",
            observation(|o| o.evidence[0].media_type.clear()),
            &[MON_A],
        )
        .refused(R::FieldMissing)
        .field("observation.evidence[0].media_type"),
        row(
            "no commitment id",
            observation(|o| o.commitment_id.clear()),
            &[MON_A],
        )
        .refused(R::FieldMissing)
        .field("observation.commitment_id"),
        row(
            "an unknown commitment",
            observation(|o| o.commitment_id = "ghost".into()),
            &[MON_A],
        )
        .refused(R::CommitmentUnknown)
        .meta("commitment_id", "ghost"),
        row(
            "an unknown zone",
            observation(|o| o.zone_id = "nowhere".into()),
            &[MON_A],
        )
        .refused(R::ZoneUnknown)
        .meta("zone_id", "nowhere"),
        row(
            "a zone the commitment does not bind",
            observation(|o| o.zone_id = "zone-s".into()),
            &[MON_A],
        )
        .refused(R::ZoneNotBound)
        .meta("zone_id", "zone-s")
        .meta("commitment_id", "cf"),
        row(
            "a location outside the named zone",
            observation(|o| o.location.as_mut().unwrap().point.as_mut().unwrap().lat = 40.0),
            &[MON_A],
        )
        .refused(R::OutsideZone)
        .meta("zone_id", "zone-n")
        .meta("commitment_id", "cf"),
        row(
            "a location outside every zone of the commitment",
            observation(|o| {
                o.zone_id.clear();
                o.location.as_mut().unwrap().point.as_mut().unwrap().lat = 40.0;
            }),
            &[MON_A],
        )
        .refused(R::OutsideZone)
        .meta("commitment_id", "cf"),
        // ---- Amendments and disputes ----
        row(
            "an amendment of a later entry",
            amendment_by("mon-a", 13, |_| {}),
            &[MON_A],
        )
        .refused(R::TargetUnknown)
        .meta("target_seq", 13),
        row(
            "an amendment naming another leaf hash",
            amendment_by("mon-a", 10, |a| a.target_leaf_hash = vec![0; 32]),
            &[MON_A],
        )
        .refused(R::TargetHashMismatch)
        .meta("target_seq", 10),
        row(
            "an amendment with a leaf hash of 31 bytes",
            amendment_by("mon-a", 10, |a| a.target_leaf_hash.truncate(31)),
            &[MON_A],
        )
        .refused(R::FieldMalformed)
        .field("amendment.target_leaf_hash"),
        row(
            "an amendment of a retraction",
            amendment_by("mon-a", 12, |_| {}),
            &[MON_A],
        )
        .refused(R::TargetNotObservation)
        .meta("target_seq", 12),
        row(
            "an amendment of another monitor's observation",
            amendment_by("mon-b", 10, |_| {}),
            &[MON_B],
        )
        .refused(R::NotOriginalAuthor)
        .meta("target_seq", 10)
        .meta("party_id", "mon-a"),
        row(
            "the original author wins over a retracted target",
            amendment_by("mon-b", 11, |_| {}),
            &[MON_B],
        )
        .refused(R::NotOriginalAuthor)
        .meta("target_seq", 11),
        row(
            "an amendment of a retracted observation",
            amendment_by("mon-a", 11, |_| {}),
            &[MON_A],
        )
        .refused(R::TargetRetracted)
        .meta("target_seq", 11),
        row(
            "an amendment without a reason",
            amendment_by("mon-a", 10, |a| a.reason.clear()),
            &[MON_A],
        )
        .refused(R::FieldMissing)
        .field("amendment.reason"),
        row(
            "an amendment without a kind",
            amendment_by("mon-a", 10, |a| a.kind = 0),
            &[MON_A],
        )
        .refused(R::FieldMissing)
        .field("amendment.kind"),
        row(
            "a retraction carrying a correction",
            amendment_by("mon-a", 10, |a| a.correction = Some(observation_body())),
            &[MON_A],
        )
        .refused(R::AmendmentCorrectionMismatch),
        row(
            "a correction carrying none",
            amendment_by("mon-a", 10, |a| a.kind = AmendmentKind::Correct as i32),
            &[MON_A],
        )
        .refused(R::AmendmentCorrectionMismatch),
        row(
            "a correction with an invalid observation",
            amendment_by("mon-a", 10, |a| {
                a.kind = AmendmentKind::Correct as i32;
                let mut correction = observation_body();
                correction.observed_until = None;
                a.correction = Some(correction);
            }),
            &[MON_A],
        )
        .refused(R::FieldMissing)
        .field("amendment.correction.observed_until"),
        row(
            "a dispute without a reason",
            dispute_by("sig-b", 10, |d| d.reason.clear()),
            &[SIG_B],
        )
        .refused(R::FieldMissing)
        .field("dispute.reason"),
        row(
            "a dispute's reason wins over its target",
            dispute_by("sig-b", 99, |d| d.reason.clear()),
            &[SIG_B],
        )
        .refused(R::FieldMissing)
        .field("dispute.reason"),
        row(
            "a dispute of a governance entry",
            dispute_by("sig-b", 1, |_| {}),
            &[SIG_B],
        )
        .refused(R::TargetNotObservation)
        .meta("target_seq", 1),
        row(
            "a dispute of a later entry",
            dispute_by("sig-b", 99, |_| {}),
            &[SIG_B],
        )
        .refused(R::TargetUnknown)
        .meta("target_seq", 99),
    ];
    rows.extend(genesis_rows());
    rows
}

/// Entry 0 (docs/spec.md section 6, step 9, "For the genesis").
fn genesis_rows() -> Vec<Row> {
    use ReasonCode as R;
    vec![
        row("entry 0 that is no genesis", observation(|_| {}), &[MON_A])
            .at(At::Genesis)
            .refused(R::GenesisMisplaced),
        genesis_row("a genesis after entry 0", |_| {}, &GOV)
            .at(At::MisplacedGenesis(3))
            .refused(R::GenesisMisplaced),
        row(
            "a genesis without an agreement id",
            {
                let mut event = genesis_with(|_| {});
                event.agreement_id.clear();
                event
            },
            &GOV,
        )
        .at(At::Genesis)
        .refused(R::FieldMissing)
        .field("agreement_id"),
        genesis_row("an empty origin", |g| g.origin.clear(), &GOV)
            .refused(R::FieldMissing)
            .field("genesis.origin"),
        genesis_row("an origin with a space", |g| g.origin = "a b".into(), &GOV)
            .refused(R::FieldMalformed)
            .field("genesis.origin"),
        genesis_row("an origin with a '+'", |g| g.origin = "a+b".into(), &GOV)
            .refused(R::FieldMalformed)
            .field("genesis.origin"),
        genesis_row(
            "an origin of 256 bytes",
            |g| g.origin = "o".repeat(256),
            &GOV,
        )
        .refused(R::FieldOutOfBounds)
        .field("genesis.origin"),
        genesis_row(
            "a title with a control character",
            |g| g.title = "a\u{0}".into(),
            &GOV,
        )
        .refused(R::FieldMalformed)
        .field("genesis.title"),
        genesis_row("no signatories", |g| g.signatories.clear(), &GOV)
            .refused(R::FieldMissing)
            .field("genesis.signatories"),
        genesis_row("a threshold of 0", |g| g.threshold = 0, &GOV)
            .refused(R::FieldOutOfBounds)
            .field("genesis.threshold"),
        genesis_row(
            "a threshold over the signatories",
            |g| g.threshold = 4,
            &GOV,
        )
        .refused(R::FieldOutOfBounds)
        .field("genesis.threshold"),
        genesis_row(
            "a small-order operator key",
            |g| g.operator_public_key = small_order_key(),
            &GOV,
        )
        .refused(R::KeyUnacceptable)
        .field("genesis.operator_public_key"),
        genesis_row(
            "an operator key of 31 bytes",
            |g| g.operator_public_key.truncate(31),
            &GOV,
        )
        .refused(R::FieldMalformed)
        .field("genesis.operator_public_key"),
        genesis_row(
            "a signatory id that is no identifier",
            |g| g.signatories[1].party_id = "Sig B".into(),
            &GOV,
        )
        .refused(R::FieldMalformed)
        .field("genesis.signatories[1].party_id"),
        genesis_row(
            "two signatories of one id",
            |g| g.signatories[2].party_id = "sig-a".into(),
            &GOV,
        )
        .refused(R::PartyAlreadyRegistered)
        .meta("party_id", "sig-a"),
        genesis_row(
            "two signatories sharing a key",
            |g| g.signatories[2].public_keys = vec![public(SIG_B)],
            &GOV,
        )
        .refused(R::KeyAlreadyRegistered)
        .meta("public_key", key_text(SIG_B))
        .meta("party_id", "sig-b"),
        row(
            "a genesis from the future",
            {
                let mut event = genesis_with(|_| {});
                event.created_at = Some(micros_timestamp(NOW + 301_000_000));
                event
            },
            &GOV,
        )
        .at(At::Genesis)
        .refused(R::TimeInFuture)
        .field("created_at")
        .meta("max_clock_skew_seconds", 300),
        row(
            "a genesis by a party it does not name",
            {
                let mut event = genesis_with(|_| {});
                event.author = "someone".into();
                event
            },
            &GOV,
        )
        .at(At::Genesis)
        .refused(R::AuthorNotRegistered)
        .meta("party_id", "someone"),
        genesis_row(
            "a genesis signed by a stranger",
            |_| {},
            &[SIG_A, SIG_B, STRANGER],
        )
        .refused(R::KeyNotRegistered)
        .meta("public_key", key_text(STRANGER)),
        genesis_row("a genesis its author did not sign", |_| {}, &[SIG_B, SIG_C])
            .refused(R::AuthorNotSigner)
            .meta("party_id", "sig-a"),
        genesis_row("a genesis below its threshold", |_| {}, &[SIG_A])
            .refused(R::BelowThreshold)
            .meta("threshold", 2)
            .meta("signatories", 1),
    ]
}

/// A 32-byte string that decodes to no curve point.
fn not_a_point() -> Vec<u8> {
    (1..=127u8)
        .map(|byte| [byte; 32])
        .find(|bytes| ed25519_dalek::VerifyingKey::from_bytes(bytes).is_err())
        .expect("some y has no point")
        .to_vec()
}

fn judge(ledger: &Ledger, row: &Row) -> Result<(), Rejection> {
    match row.at {
        At::Genesis => judge_genesis(&row.wire, 0).map(drop),
        At::MisplacedGenesis(seq) => judge_genesis(&row.wire, seq).map(drop),
        At::Next => ledger.judge(&row.wire).map(drop),
    }
}

#[test]
fn every_rule_answers_with_its_reason() {
    let ledger = ledger();
    let mut failures = Vec::new();
    for row in rows() {
        let verdict = judge(&ledger, &row);
        let problem = match (&verdict, row.expect) {
            (Ok(()), None) => None,
            (Ok(()), Some(expected)) => Some(format!("accepted, expected {expected:?}")),
            (Err(rejection), None) => Some(format!("refused: {rejection:?}")),
            (Err(rejection), Some(expected)) if rejection.reason != expected => Some(format!(
                "refused {:?}, expected {expected:?}: {rejection:?}",
                rejection.reason
            )),
            (Err(rejection), Some(_)) => rejection
                .check_metadata()
                .err()
                .or_else(|| {
                    row.metadata.iter().find_map(|(key, value)| {
                        (rejection.metadata.get(*key) != Some(value)).then(|| {
                            format!(
                                "metadata {key} is {:?}, expected {value:?}: {rejection:?}",
                                rejection.metadata.get(*key)
                            )
                        })
                    })
                })
                .or_else(|| {
                    (rejection.message.trim().is_empty()).then(|| "an empty message".to_string())
                }),
        };
        if let Some(problem) = problem {
            failures.push(format!("{}: {problem}", row.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The reasons the core never produces: the gRPC framework's, and those of
/// the server (its sequencer, its read API, its own faults).
const NOT_THE_CORES: [ReasonCode; 16] = [
    ReasonCode::Unspecified,
    ReasonCode::MessageTooLarge,
    ReasonCode::MessageUndecodable,
    ReasonCode::PayloadTooLarge,
    ReasonCode::NonceReused,
    ReasonCode::LedgerNotStarted,
    ReasonCode::OperatorKeyMismatch,
    ReasonCode::RangeInvalid,
    ReasonCode::BeyondTree,
    ReasonCode::PageTokenInvalid,
    ReasonCode::PairNotFound,
    ReasonCode::StreamLimitReached,
    ReasonCode::ServerUnavailable,
    ReasonCode::InternalError,
    ReasonCode::NoWitnessPolicy,
    ReasonCode::NotYetWitnessed,
];

#[test]
fn the_table_covers_every_reason_of_the_core() {
    let covered: BTreeSet<i32> = rows()
        .iter()
        .filter_map(|row| row.expect)
        .map(|reason| reason as i32)
        .collect();
    let mut missing = Vec::new();
    let mut value = 0;
    while let Ok(reason) = ReasonCode::try_from(value) {
        if !NOT_THE_CORES.contains(&reason) && !covered.contains(&value) {
            missing.push(reason_name(reason));
        }
        if NOT_THE_CORES.contains(&reason) && covered.contains(&value) {
            panic!("{} is listed as not the core's", reason_name(reason));
        }
        value += 1;
    }
    assert!(missing.is_empty(), "no row for {missing:?}");
}

#[test]
fn refusals_keep_their_grpc_class() {
    // The classes callers used to match on, now derived from the reason.
    let ledger = ledger();
    let refused = |row: Row| judge(&ledger, &row).unwrap_err();
    let revoked = refused(row("revoked", observation(|_| {}), &[MON_A_OLD]));
    assert_eq!(revoked.kind(), RejectionKind::PermissionDenied);
    assert_eq!(
        revoked.message,
        format!(
            "key {} of \"mon-a\" was revoked at entry 5",
            key_text(MON_A_OLD)
        )
    );
    let forged =
        refused(row("forged", observation(|_| {}), &[MON_A]).tamper(|w| w.signatures[0].1[0] ^= 1));
    assert_eq!(forged.kind(), RejectionKind::Unauthenticated);
    let foreign = refused(row(
        "foreign",
        {
            let mut event = observation(|_| {});
            event.agreement_id = "elsewhere".into();
            event
        },
        &[MON_A],
    ));
    assert_eq!(foreign.kind(), RejectionKind::FailedPrecondition);
    let origin = refused(genesis_row(
        "long origin",
        |g| g.origin = "o".repeat(256),
        &GOV,
    ));
    assert_eq!(origin.kind(), RejectionKind::InvalidArgument);
    assert!(origin
        .message
        .ends_with("must be 1-255 bytes with no spaces, control characters or '+'"));
}
