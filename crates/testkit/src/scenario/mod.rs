//! Scenarios: an agreement, the people, places and promises in it, and every
//! event they sign, each built one way.
//!
//! A [`Scenario`] names an agreement (its id, checkpoint origin, operator
//! key, signatories and threshold), the other parties (monitors, observers)
//! with their keys, the zones and the commitments. From it come signed
//! events: the genesis and the governance that sets up everything else
//! ([`Scenario::bootstrap`]), observations with sensible defaults
//! ([`Scenario::observation`]), and any other body of [`bodies`] signed by
//! its author ([`Scenario::signed`]) or by the signatories
//! ([`Scenario::govern`]). Every event is new: created now, with a fresh
//! random nonce. [`RawLog`] turns signed events into the leaves of a log
//! built without a server. [`witnesses`] makes witness keys, the policy
//! naming them and notes they cosigned.
//!
//! The development ledger of `serve --dev` is a scenario too
//! ([`Scenario::dev`]): the binary and the tests start the same one.

pub mod bodies;
mod dev;
mod observation;
mod raw_log;
pub mod witnesses;

use ceasefire_core::checkpoint::NoteVerifier;
use ceasefire_grpc::client::{new_event, now_timestamp, sign};
use ceasefire_grpc::proto::{
    event::Body, CommitmentKind, DefineCommitment, DefineZone, Event, LatLon, Party, Polygon, Role,
    SignedEvent, ZoneKind,
};
use ed25519_dalek::{SigningKey, VerifyingKey};

pub use dev::{
    BOOTSTRAP_ENTRIES, DEV_AGREEMENT_ID, DEV_COMMITMENT, DEV_MONITOR, DEV_ORIGIN, DEV_SIGNATORY,
    DEV_ZONE,
};
pub use observation::ObservationBuilder;
pub use raw_log::{checkpoint_note, RawLog};

// ---------------------------------------------------------------------------
// Keys, places and times

/// The key whose seed is 32 times `seed`: the same every run, for tests that
/// need to know their keys (or to tell two apart by a byte).
pub fn seeded_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// A fresh random key, as `keygen` makes them.
pub fn random_key() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// A key's public half as the messages carry it (32 bytes).
pub fn public_key(key: &SigningKey) -> Vec<u8> {
    key.verifying_key().to_bytes().to_vec()
}

/// A polygon from (lat, lon) pairs, in order.
pub fn polygon(vertices: &[(f64, f64)]) -> Polygon {
    Polygon {
        vertices: vertices
            .iter()
            .map(|&(lat, lon)| LatLon { lat, lon })
            .collect(),
    }
}

/// The square of `size` degrees whose south-west corner is (lat, lon).
pub fn square(lat: f64, lon: f64, size: f64) -> Polygon {
    polygon(&[
        (lat, lon),
        (lat, lon + size),
        (lat + size, lon + size),
        (lat + size, lon),
    ])
}

/// The mean of a polygon's vertices: inside any convex zone, so where a
/// scenario's observations happen unless told otherwise.
pub fn centre(boundary: &Polygon) -> LatLon {
    let count = boundary.vertices.len().max(1) as f64;
    let (lat, lon) = boundary
        .vertices
        .iter()
        .fold((0.0, 0.0), |(lat, lon), vertex| {
            (lat + vertex.lat, lon + vertex.lon)
        });
    LatLon {
        lat: lat / count,
        lon: lon / count,
    }
}

/// `seconds` before now, in whole seconds (negative: after now). Times in
/// the past keep events inside the ledger's clock skew.
pub fn seconds_ago(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: now_timestamp().seconds - seconds,
        nanos: 0,
    }
}

// ---------------------------------------------------------------------------
// Parties, zones, commitments

/// A party of a scenario and its keys (the first signs its events).
#[derive(Clone)]
pub struct Member {
    /// Events name their author by it.
    pub party_id: String,
    /// For people reading the log ("Party PARTY_ID" unless named).
    pub name: String,
    /// What the rules let it do: govern, report, or read.
    pub role: Role,
    /// Its registered keys, the one it signs with first.
    pub keys: Vec<SigningKey>,
}

impl Member {
    /// A party named "Party PARTY_ID" with one key.
    pub fn new(party_id: &str, role: Role, key: SigningKey) -> Member {
        Member {
            party_id: party_id.into(),
            name: format!("Party {party_id}"),
            role,
            keys: vec![key],
        }
    }

    pub fn named(self, name: &str) -> Member {
        Member {
            name: name.into(),
            ..self
        }
    }

    /// The key its events are signed with.
    pub fn key(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// The party record a genesis or a registration carries.
    pub fn party(&self) -> Party {
        let keys: Vec<&SigningKey> = self.keys.iter().collect();
        Party {
            name: self.name.clone(),
            ..bodies::party(&self.party_id, self.role, &keys)
        }
    }
}

/// A zone definition: version 1 of a contact-line sector named "Zone ID"
/// unless told otherwise.
#[derive(Clone)]
pub struct Zone {
    /// The message itself: its governance event carries it whole.
    definition: DefineZone,
}

impl Zone {
    pub fn new(zone_id: &str, boundary: Polygon) -> Zone {
        Zone {
            definition: DefineZone {
                zone_id: zone_id.into(),
                version: 1,
                name: format!("Zone {zone_id}"),
                kind: ZoneKind::ContactLineSector as i32,
                boundary: Some(boundary),
            },
        }
    }

    /// Another name, a redefinition's version, or a field made wrong.
    pub fn with(mut self, change: impl FnOnce(&mut DefineZone)) -> Zone {
        change(&mut self.definition);
        self
    }

    pub fn id(&self) -> &str {
        &self.definition.zone_id
    }

    /// The definition, for a governance event.
    pub fn body(&self) -> Body {
        Body::DefineZone(self.definition.clone())
    }

    /// Where the scenario's observations in this zone are made.
    pub fn centre(&self) -> Option<LatLon> {
        self.definition.boundary.as_ref().map(centre)
    }
}

/// A commitment definition: version 1 of a ceasefire named "Commitment ID",
/// a window of 7 days, a quorum of 2, in force since an hour ago, unless
/// told otherwise.
#[derive(Clone)]
pub struct Commitment {
    /// The message itself: its governance event carries it whole.
    definition: DefineCommitment,
}

impl Commitment {
    pub fn new(commitment_id: &str, zone_ids: &[&str]) -> Commitment {
        Commitment {
            definition: DefineCommitment {
                commitment_id: commitment_id.into(),
                version: 1,
                name: format!("Commitment {commitment_id}"),
                kind: CommitmentKind::Ceasefire as i32,
                zone_ids: zone_ids.iter().map(|zone| zone.to_string()).collect(),
                window_seconds: 7 * 24 * 3600,
                corroboration_quorum: 2,
                effective_from: Some(seconds_ago(3600)),
            },
        }
    }

    /// Another name or kind, a redefinition's version, or a field made
    /// wrong.
    pub fn with(mut self, change: impl FnOnce(&mut DefineCommitment)) -> Commitment {
        change(&mut self.definition);
        self
    }

    pub fn window(mut self, window_seconds: u64) -> Commitment {
        self.definition.window_seconds = window_seconds;
        self
    }

    pub fn quorum(mut self, corroboration_quorum: u32) -> Commitment {
        self.definition.corroboration_quorum = corroboration_quorum;
        self
    }

    pub fn effective_from(mut self, effective_from: prost_types::Timestamp) -> Commitment {
        self.definition.effective_from = Some(effective_from);
        self
    }

    pub fn id(&self) -> &str {
        &self.definition.commitment_id
    }

    /// The zones it binds, in order.
    pub fn zone_ids(&self) -> &[String] {
        &self.definition.zone_ids
    }

    /// The definition, for a governance event.
    pub fn body(&self) -> Body {
        Body::DefineCommitment(self.definition.clone())
    }
}

// ---------------------------------------------------------------------------
// The scenario

/// An agreement and everyone and everything in it; see the module docs.
#[derive(Clone)]
pub struct Scenario {
    /// Every event names it; a ledger refuses another agreement's.
    agreement_id: String,
    /// The checkpoint notes' key name.
    origin: String,
    /// The genesis's title.
    title: String,
    /// Signs the ledger's checkpoints; the genesis names it.
    operator: SigningKey,
    /// Distinct signatories governance needs.
    threshold: u32,
    /// Signatories first (in the genesis, in this order), then the parties
    /// the setup registers, in order.
    members: Vec<Member>,
    /// Defined by the setup in this order; observations default to the
    /// first zone of the first commitment.
    zones: Vec<Zone>,
    /// Defined by the setup after the zones; observations default to the
    /// first.
    commitments: Vec<Commitment>,
}

impl Scenario {
    /// An agreement with no one in it yet, a random operator key and a
    /// threshold of 1.
    pub fn new(agreement_id: &str, origin: &str) -> Scenario {
        Scenario {
            agreement_id: agreement_id.into(),
            origin: origin.into(),
            title: format!("Agreement {agreement_id} (test)"),
            operator: random_key(),
            threshold: 1,
            members: Vec::new(),
            zones: Vec::new(),
            commitments: Vec::new(),
        }
    }

    pub fn with_title(self, title: &str) -> Scenario {
        Scenario {
            title: title.into(),
            ..self
        }
    }

    pub fn with_operator(self, operator: SigningKey) -> Scenario {
        Scenario { operator, ..self }
    }

    pub fn with_threshold(self, threshold: u32) -> Scenario {
        Scenario { threshold, ..self }
    }

    /// Adds a party (a signatory goes into the genesis, any other role is
    /// registered by the setup).
    pub fn with_member(mut self, member: Member) -> Scenario {
        self.members.push(member);
        self
    }

    pub fn with_signatory(self, party_id: &str, key: SigningKey) -> Scenario {
        self.with_member(Member::new(party_id, Role::Signatory, key))
    }

    pub fn with_monitor(self, party_id: &str, key: SigningKey) -> Scenario {
        self.with_member(Member::new(party_id, Role::Monitor, key))
    }

    pub fn with_zone(mut self, zone: Zone) -> Scenario {
        self.zones.push(zone);
        self
    }

    pub fn with_commitment(mut self, commitment: Commitment) -> Scenario {
        self.commitments.push(commitment);
        self
    }

    pub fn agreement_id(&self) -> &str {
        &self.agreement_id
    }

    /// The checkpoint origin (the note's key name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The operator's signing key.
    pub fn operator(&self) -> &SigningKey {
        &self.operator
    }

    pub fn operator_key(&self) -> VerifyingKey {
        self.operator.verifying_key()
    }

    /// Opens this ledger's checkpoint notes.
    pub fn note_verifier(&self) -> NoteVerifier {
        NoteVerifier::new(&self.origin, &self.operator_key())
            .unwrap_or_else(|error| panic!("origin {:?}: {error}", self.origin))
    }

    pub fn member(&self, party_id: &str) -> &Member {
        find(&self.members, "party", party_id, |member| &member.party_id)
    }

    /// The key `party_id` signs with.
    pub fn key(&self, party_id: &str) -> &SigningKey {
        self.member(party_id).key()
    }

    /// The first party with `role` (the one events default to).
    pub fn first(&self, role: Role) -> &Member {
        self.members
            .iter()
            .find(|member| member.role == role)
            .unwrap_or_else(|| panic!("no {role:?} in the scenario"))
    }

    pub fn signatories(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|member| member.role == Role::Signatory)
    }

    pub fn zone(&self, zone_id: &str) -> &Zone {
        find(&self.zones, "zone", zone_id, Zone::id)
    }

    pub fn commitment(&self, commitment_id: &str) -> &Commitment {
        find(
            &self.commitments,
            "commitment",
            commitment_id,
            Commitment::id,
        )
    }

    // -----------------------------------------------------------------------
    // Events

    /// An event of this agreement by `author`, created now, fresh nonce.
    pub fn event(&self, author: &str, body: Body) -> Event {
        new_event(&self.agreement_id, author, body)
    }

    /// [`Scenario::event`] signed with the author's key.
    pub fn signed(&self, author: &str, body: Body) -> SignedEvent {
        sign(&self.event(author, body), &[self.key(author)])
    }

    /// A governance event: authored by the first signatory and signed by
    /// the first `threshold` of them.
    pub fn govern(&self, body: Body) -> SignedEvent {
        let governors: Vec<&Member> = self.signatories().take(self.threshold as usize).collect();
        let author = governors
            .first()
            .unwrap_or_else(|| panic!("the scenario has no signatory to govern"));
        let keys: Vec<&SigningKey> = governors.iter().map(|member| member.key()).collect();
        sign(&self.event(&author.party_id, body), &keys)
    }

    /// The genesis body: every signatory, the threshold, the operator key.
    pub fn genesis_body(&self) -> Body {
        bodies::genesis(
            &self.origin,
            &self.title,
            self.signatories().map(Member::party).collect(),
            self.threshold,
            &self.operator_key(),
        )
    }

    /// The genesis, signed by as many signatories as the threshold needs.
    pub fn genesis(&self) -> SignedEvent {
        self.govern(self.genesis_body())
    }

    /// The registration of a party of the scenario.
    pub fn registration(&self, party_id: &str) -> Body {
        bodies::register(self.member(party_id).party())
    }

    /// Everything after the genesis, governed: the registration of every
    /// party that is not a signatory, then the zones, then the commitments.
    pub fn setup(&self) -> Vec<SignedEvent> {
        let registrations = self
            .members
            .iter()
            .filter(|member| member.role != Role::Signatory)
            .map(|member| bodies::register(member.party()));
        let zones = self.zones.iter().map(Zone::body);
        let commitments = self.commitments.iter().map(Commitment::body);
        registrations
            .chain(zones)
            .chain(commitments)
            .map(|body| self.govern(body))
            .collect()
    }

    /// The genesis and the setup: a node's first entries.
    pub fn bootstrap(&self) -> Vec<SignedEvent> {
        let mut events = vec![self.genesis()];
        events.extend(self.setup());
        events
    }

    /// An observation by the first monitor under the first commitment, at
    /// the centre of its first zone; see [`ObservationBuilder`].
    pub fn observation(&self) -> ObservationBuilder<'_> {
        ObservationBuilder::new(self)
    }
}

/// The item of `items` whose id is `id`; a scenario that lacks it is a bug
/// in the test.
fn find<'a, T>(items: &'a [T], what: &str, id: &str, id_of: impl Fn(&T) -> &str) -> &'a T {
    items
        .iter()
        .find(|item| id_of(item) == id)
        .unwrap_or_else(|| panic!("no {what} {id:?} in the scenario"))
}
