//! Observations: the event most tests and the bench submit, with defaults
//! the ledger accepts and an override for each field a test varies.

use ceasefire_grpc::client::{now_timestamp, sign};
use ceasefire_grpc::proto::{
    event::Body, Category, Event, Evidence, Finding, LatLon, Location, Observation, Role,
    SignedEvent,
};
use ed25519_dalek::SigningKey;

use super::{seconds_ago, Scenario, Zone};

/// An observation being built: by default, by the scenario's first monitor,
/// created now, under its first commitment (the zone left for the ledger to
/// derive), at the centre of that commitment's first zone within 250 m,
/// seen from 20 to 5 minutes ago (the ledger refuses times ahead of its
/// clock), three explosions, a violation, "shelling reported".
#[must_use]
pub struct ObservationBuilder<'a> {
    /// Its agreement, and the keys and zones the overrides name.
    scenario: &'a Scenario,
    /// A party of the scenario, unless the test signs with other keys.
    author: String,
    /// Now when the builder was made, unless told otherwise.
    created_at: prost_types::Timestamp,
    /// `None`: a fresh random one.
    nonce: Option<Vec<u8>>,
    /// The body as built so far.
    observation: Observation,
}

impl<'a> ObservationBuilder<'a> {
    pub(super) fn new(scenario: &'a Scenario) -> ObservationBuilder<'a> {
        let author = scenario
            .members
            .iter()
            .find(|member| member.role == Role::Monitor)
            .map(|member| member.party_id.clone())
            .unwrap_or_default();
        let commitment = scenario.commitments.first();
        let point = commitment
            .and_then(|commitment| commitment.zone_ids().first())
            .and_then(|zone_id| scenario.zones.iter().find(|zone| zone.id() == zone_id))
            .and_then(Zone::centre);
        ObservationBuilder {
            scenario,
            author,
            created_at: now_timestamp(),
            nonce: None,
            observation: Observation {
                observed_from: Some(seconds_ago(20 * 60)),
                observed_until: Some(seconds_ago(5 * 60)),
                location: Some(Location {
                    point,
                    accuracy_m: 250.0,
                }),
                zone_id: String::new(),
                commitment_id: commitment
                    .map(|commitment| commitment.id().to_string())
                    .unwrap_or_default(),
                finding: Finding::Violation as i32,
                category: Category::Explosion as i32,
                quantity: 3,
                attributed_side: String::new(),
                evidence: Vec::new(),
                narrative: "shelling reported".into(),
            },
        }
    }

    /// Another author (a party of the scenario for [`Self::signed`]).
    pub fn by(self, author: &str) -> Self {
        ObservationBuilder {
            author: author.into(),
            ..self
        }
    }

    pub fn created_at(self, created_at: prost_types::Timestamp) -> Self {
        ObservationBuilder { created_at, ..self }
    }

    /// Another event's nonce (a replay), or a malformed one.
    pub fn nonce(self, nonce: &[u8]) -> Self {
        ObservationBuilder {
            nonce: Some(nonce.to_vec()),
            ..self
        }
    }

    pub fn narrative(self, narrative: &str) -> Self {
        self.with(|observation| observation.narrative = narrative.into())
    }

    /// At this point, the accuracy kept.
    pub fn at(self, lat: f64, lon: f64) -> Self {
        self.with(|observation| {
            observation
                .location
                .get_or_insert_with(Location::default)
                .point = Some(LatLon { lat, lon })
        })
    }

    /// Names the zone, and moves to its centre.
    pub fn in_zone(self, zone_id: &str) -> Self {
        let point = self
            .scenario
            .zone(zone_id)
            .centre()
            .unwrap_or_else(|| panic!("zone {zone_id:?} has no boundary"));
        self.at(point.lat, point.lon)
            .with(|observation| observation.zone_id = zone_id.into())
    }

    pub fn commitment(self, commitment_id: &str) -> Self {
        self.with(|observation| observation.commitment_id = commitment_id.into())
    }

    pub fn finding(self, finding: Finding) -> Self {
        self.with(|observation| observation.finding = finding as i32)
    }

    pub fn category(self, category: Category) -> Self {
        self.with(|observation| observation.category = category as i32)
    }

    pub fn quantity(self, quantity: u32) -> Self {
        self.with(|observation| observation.quantity = quantity)
    }

    pub fn accuracy_m(self, accuracy_m: f64) -> Self {
        self.with(|observation| {
            observation
                .location
                .get_or_insert_with(Location::default)
                .accuracy_m = accuracy_m
        })
    }

    /// Seen from `from` until `until`.
    pub fn observed(self, from: prost_types::Timestamp, until: prost_types::Timestamp) -> Self {
        self.with(|observation| {
            observation.observed_from = Some(from);
            observation.observed_until = Some(until);
        })
    }

    pub fn evidence(self, evidence: Vec<Evidence>) -> Self {
        self.with(|observation| observation.evidence = evidence)
    }

    /// Any other change, or a field made wrong on purpose.
    pub fn with(mut self, change: impl FnOnce(&mut Observation)) -> Self {
        change(&mut self.observation);
        self
    }

    /// The observation itself (as an amendment's correction carries it).
    pub fn message(self) -> Observation {
        self.observation
    }

    pub fn body(self) -> Body {
        Body::Observation(self.observation)
    }

    pub fn event(self) -> Event {
        let event = self
            .scenario
            .event(&self.author, Body::Observation(self.observation));
        Event {
            created_at: Some(self.created_at),
            nonce: self.nonce.unwrap_or(event.nonce),
            ..event
        }
    }

    /// Signed with the author's key.
    pub fn signed(self) -> SignedEvent {
        let key = self.scenario.key(&self.author).clone();
        self.signed_by(&[&key])
    }

    /// Signed with these keys (the author's or not).
    pub fn signed_by(self, keys: &[&SigningKey]) -> SignedEvent {
        sign(&self.event(), keys)
    }
}
