//! The rules of the ledger: which events are accepted, signed by whom.
//!
//! [`LedgerState`] is the small, governance-defined part of the log's state
//! (agreement, parties and their keys, zones, commitments). It grows with the
//! number of parties and definitions, never with the number of observations.
//! What grows with the log (observations that amendments and disputes refer
//! to) is looked up through [`EntryIndex`], which the store answers from disk
//! and an auditor from whatever it keeps.
//!
//! Checking is separate from applying: [`LedgerState::check`] reads only and
//! returns an [`Accepted`] change; [`LedgerState::apply`] commits it. A refused
//! event therefore changes nothing. Signatures are verified before `check`
//! (they need no state); `check` decides whether the verified signers were
//! allowed to sign this event at this seq.

use std::collections::{BTreeMap, BTreeSet};

use super::geo::{self, Point};
use super::merkle::Hash;
use super::rejection::{ReasonCode, Rejection};
use super::signing::is_acceptable_public_key;
use super::witness_policy::WitnessPolicy;
use crate::proto::{
    event::Body, AmendmentKind, Category, CommitmentKind, Event, Finding, Genesis, Observation,
    Party, Role, ZoneKind,
};

/// Largest accepted narrative, in bytes: a few paragraphs. Reports are short;
/// detail belongs in evidence, referenced by digest.
pub const MAX_NARRATIVE_BYTES: usize = 4096;
/// Largest free-text reason (amendment, dispute, revocation) in bytes.
pub const MAX_REASON_BYTES: usize = 2048;
/// Largest name or title in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest origin in bytes: the origin is the operator key's name in signed
/// notes, and key names are at most 255 bytes
/// ([`MAX_KEY_NAME_BYTES`](crate::checkpoint::MAX_KEY_NAME_BYTES)).
pub const MAX_ORIGIN_BYTES: usize = crate::checkpoint::MAX_KEY_NAME_BYTES;
/// Evidence items per observation; each is a digest and a short URI.
pub const MAX_EVIDENCE_ITEMS: usize = 32;
/// Largest evidence URI in bytes.
pub const MAX_URI_BYTES: usize = 2048;
/// Nonce length bounds: 8 bytes make accidental reuse unlikely for a careful
/// author; 64 bytes is room for a UUID or a hash with a prefix.
pub const NONCE_BYTES: std::ops::RangeInclusive<usize> = 8..=64;
/// Default allowed clock skew between an author's clock and the server's.
pub const DEFAULT_MAX_CLOCK_SKEW_SECONDS: u32 = 300;
/// Largest positional uncertainty of an observation: 100 km.
pub const MAX_ACCURACY_METRES: f64 = 100_000.0;
/// Longest evaluation window of a commitment: ten years.
pub const MAX_WINDOW_SECONDS: u64 = 10 * 366 * 24 * 3600;
/// Largest corroboration quorum.
pub const MAX_QUORUM: u32 = 64;

/// What the ledger remembers of an observation, for amendments, disputes and
/// projections that refer back to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservationRecord {
    pub author: String,
    pub leaf_hash: Hash,
    pub commitment_id: String,
    pub zone_id: String,
    /// The end of what was observed: with the pair, where the projection
    /// counts it in its window.
    pub observed_until_micros: i64,
    pub retracted: bool,
}

/// Lookups into the log so far that the rules need but that grow with it.
pub trait EntryIndex {
    type Error;
    /// Leaf hash of entry `seq`, if the log has it.
    fn leaf_hash(&self, seq: u64) -> Result<Option<Hash>, Self::Error>;
    /// The observation at `seq`, if that entry is one.
    fn observation(&self, seq: u64) -> Result<Option<ObservationRecord>, Self::Error>;
}

/// Where an entry stands in the log: given by the sequencer, never by the author.
#[derive(Clone, Copy, Debug)]
pub struct EntryContext {
    pub seq: u64,
    pub received_at_micros: i64,
    pub leaf_hash: Hash,
}

/// A key a party has held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyState {
    /// Seq of the RevokeKey event; the key signs nothing after it.
    pub revoked_seq: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartyState {
    pub name: String,
    pub role: Role,
    pub keys: BTreeMap<[u8; 32], KeyState>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ZoneState {
    pub version: u32,
    pub name: String,
    pub kind: ZoneKind,
    pub boundary: Vec<Point>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitmentState {
    pub version: u32,
    pub name: String,
    pub kind: CommitmentKind,
    pub zone_ids: Vec<String>,
    pub window_seconds: u64,
    pub corroboration_quorum: u32,
    pub effective_from_micros: i64,
}

/// The agreement as fixed by the genesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreementInfo {
    pub agreement_id: String,
    pub origin: String,
    pub title: String,
    pub threshold: u32,
    pub operator_public_key: [u8; 32],
    pub max_clock_skew_micros: i64,
}

/// The governance state after some prefix of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerState {
    pub agreement: AgreementInfo,
    pub parties: BTreeMap<String, PartyState>,
    /// Every key ever registered, to its party: a key belongs to one party
    /// forever, so a revoked key can never come back under another name.
    pub key_owners: BTreeMap<[u8; 32], String>,
    pub zones: BTreeMap<String, ZoneState>,
    pub commitments: BTreeMap<String, CommitmentState>,
    /// The witness policy in force and the seq of the event that set it;
    /// `None` until a `SetWitnessPolicy`. Verifiers demand its quorum on any
    /// checkpoint of a tree that contains that event.
    pub witness_policy: Option<(u64, WitnessPolicy)>,
}

/// An event the rules accept, with what applying it changes.
#[derive(Clone, Debug, PartialEq)]
pub enum Accepted {
    /// A governance event; `apply` updates the state.
    Governance(GovernanceChange),
    /// A new observation (or the correction carried by an amendment).
    Observation(ObservationRecord),
    /// An amendment of the observation at `target_seq`.
    Amendment {
        target_seq: u64,
        kind: AmendmentKind,
        /// The target's record before the amendment.
        original: ObservationRecord,
        /// For a correction, the target's record as corrected.
        corrected: ObservationRecord,
    },
    /// A dispute of the observation at `target_seq`, whose record is `target`.
    Dispute {
        target_seq: u64,
        target: ObservationRecord,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum GovernanceChange {
    RegisterParty {
        party_id: String,
        party: PartyState,
    },
    AddKey {
        party_id: String,
        key: [u8; 32],
    },
    RevokeKey {
        party_id: String,
        key: [u8; 32],
        seq: u64,
    },
    DefineZone {
        zone_id: String,
        zone: ZoneState,
    },
    DefineCommitment {
        commitment_id: String,
        commitment: CommitmentState,
    },
    SetWitnessPolicy {
        policy: WitnessPolicy,
        seq: u64,
    },
}

/// Decodes an event payload, which must be the canonical encoding of the
/// event it decodes to (docs/spec.md section 1; [`canonical`](crate::canonical)).
/// Every place that reads a payload to judge it (the server on submission,
/// a replay, the node's recovery) goes through here, so none accepts bytes
/// another can refuse.
pub fn decode_event(payload: &[u8]) -> Result<Event, Rejection> {
    crate::canonical::decode_event(payload).map_err(|error| {
        if error.is_malformed() {
            Rejection::new(
                ReasonCode::PayloadUndecodable,
                format!("payload is not a ceasefire.v1.Event: {error}"),
            )
        } else {
            Rejection::new(
                ReasonCode::NonCanonicalPayload,
                format!("payload is not the canonical encoding of its ceasefire.v1.Event: {error}"),
            )
        }
    })
}

/// Microseconds since the epoch of a protobuf timestamp, checked.
pub fn timestamp_micros(
    field: &str,
    timestamp: &Option<prost_types::Timestamp>,
) -> Result<i64, Rejection> {
    let timestamp = timestamp.as_ref().ok_or_else(|| missing(field))?;
    if !(0..1_000_000_000).contains(&timestamp.nanos) {
        return Err(Rejection::field(
            ReasonCode::FieldMalformed,
            format!("{field}.nanos"),
            format!("{field}: nanos out of range"),
        ));
    }
    // Year 1970 to 9999: anything else is a mistake, and the bound keeps the
    // arithmetic far from overflow.
    if !(0..=253_402_300_799).contains(&timestamp.seconds) {
        return Err(Rejection::field(
            ReasonCode::FieldOutOfBounds,
            format!("{field}.seconds"),
            format!(
                "{field}: {} seconds is outside 1970..9999",
                timestamp.seconds
            ),
        ));
    }
    Ok(timestamp.seconds * 1_000_000 + i64::from(timestamp.nanos / 1_000))
}

/// A protobuf timestamp of microseconds since the epoch (the inverse of
/// [`timestamp_micros`]).
pub fn micros_timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// `field` is required and absent, blank or unspecified (`FIELD_MISSING`).
fn missing(field: &str) -> Rejection {
    Rejection::field(
        ReasonCode::FieldMissing,
        field,
        format!("{field} is required"),
    )
}

fn check_identifier(field: &str, value: &str) -> Result<(), Rejection> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else if value.is_empty() {
        Err(missing(field))
    } else {
        Err(Rejection::field(
            ReasonCode::FieldMalformed,
            field,
            format!(
                "{field} {value:?} is not an identifier: use 1-64 of a-z 0-9 . _ -, starting with a letter or digit"
            ),
        ))
    }
}

fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), Rejection> {
    if required && value.trim().is_empty() {
        return Err(missing(field));
    }
    if value.len() > max {
        return Err(Rejection::field(
            ReasonCode::FieldOutOfBounds,
            field,
            format!("{field} is {} bytes, over the limit of {max}", value.len()),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Rejection::field(
            ReasonCode::FieldMalformed,
            field,
            format!("{field} contains control characters"),
        ));
    }
    Ok(())
}

fn check_enum<E: TryFrom<i32>>(field: &str, value: i32) -> Result<E, Rejection> {
    if value == 0 {
        return Err(missing(field));
    }
    E::try_from(value).map_err(|_| {
        Rejection::field(
            ReasonCode::FieldMalformed,
            field,
            format!("{field}: unknown value {value}"),
        )
    })
}

fn public_key_array(field: &str, bytes: &[u8]) -> Result<[u8; 32], Rejection> {
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| not_32_bytes(field, bytes.len()))?;
    if !is_acceptable_public_key(&key) {
        return Err(Rejection::field(
            ReasonCode::KeyUnacceptable,
            field,
            format!(
                "{field} {} is not an acceptable Ed25519 key (non-canonical or of small order)",
                crate::key_text(key)
            ),
        ));
    }
    Ok(key)
}

fn hash_array(field: &str, bytes: &[u8]) -> Result<Hash, Rejection> {
    bytes
        .try_into()
        .map_err(|_| not_32_bytes(field, bytes.len()))
}

/// A key or digest of the wrong length (`FIELD_MALFORMED`).
fn not_32_bytes(field: &str, length: usize) -> Rejection {
    Rejection::field(
        ReasonCode::FieldMalformed,
        field,
        format!("{field} must be 32 bytes, got {length}"),
    )
}

/// Checks the header every event carries, apart from the agreement id.
fn check_header(event: &Event) -> Result<(), Rejection> {
    check_identifier("author", &event.author)?;
    timestamp_micros("created_at", &event.created_at)?;
    if !NONCE_BYTES.contains(&event.nonce.len()) {
        return Err(Rejection::field(
            ReasonCode::FieldOutOfBounds,
            "nonce",
            format!(
                "nonce must be {} to {} bytes, got {}",
                NONCE_BYTES.start(),
                NONCE_BYTES.end(),
                event.nonce.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a party definition and returns its keys.
fn check_party(field: &str, party: &Party) -> Result<Vec<[u8; 32]>, Rejection> {
    check_identifier(&format!("{field}.party_id"), &party.party_id)?;
    check_text(&format!("{field}.name"), &party.name, MAX_NAME_BYTES, true)?;
    if party.public_keys.is_empty() {
        return Err(Rejection::field(
            ReasonCode::FieldMissing,
            format!("{field}.public_keys"),
            format!("{field}.public_keys: a party needs at least one key"),
        ));
    }
    let mut keys = Vec::new();
    for (index, key) in party.public_keys.iter().enumerate() {
        let key_field = format!("{field}.public_keys[{index}]");
        let key = public_key_array(&key_field, key)?;
        if keys.contains(&key) {
            return Err(Rejection::field(
                ReasonCode::DuplicateInList,
                key_field,
                format!("{field}.public_keys lists {} twice", crate::key_text(key)),
            ));
        }
        keys.push(key);
    }
    Ok(keys)
}

impl LedgerState {
    /// Validates a genesis event (seq 0) and the signatures on it, returning
    /// the state it founds. `signers` are keys whose signatures verified.
    pub fn from_genesis(
        event: &Event,
        signers: &[[u8; 32]],
        context: &EntryContext,
    ) -> Result<LedgerState, Rejection> {
        if context.seq != 0 {
            return Err(Rejection::new(
                ReasonCode::GenesisMisplaced,
                format!("a genesis event can only be entry 0, not {}", context.seq),
            ));
        }
        let state = Self::genesis_state(event)?;
        state.check_time(event, context)?;
        state.check_genesis_author(event)?;
        state.check_governance_signers(&event.author, signers)?;
        Ok(state)
    }

    /// What a genesis must satisfy before anyone signs it: every check of
    /// [`LedgerState::from_genesis`] but the clock and the signatures. `init`
    /// runs it, so it never writes a genesis the ledger would refuse.
    pub fn check_genesis_content(event: &Event) -> Result<(), Rejection> {
        Self::genesis_state(event)?.check_genesis_author(event)
    }

    /// The state a genesis founds, from its content alone.
    fn genesis_state(event: &Event) -> Result<LedgerState, Rejection> {
        let Some(Body::Genesis(genesis)) = &event.body else {
            return Err(Rejection::new(
                ReasonCode::GenesisMisplaced,
                "entry 0 must be a genesis event",
            ));
        };
        check_identifier("agreement_id", &event.agreement_id)?;
        check_header(event)?;
        Self::found(&event.agreement_id, genesis)
    }

    fn check_genesis_author(&self, event: &Event) -> Result<(), Rejection> {
        if !self.parties.contains_key(&event.author) {
            return Err(Rejection::new(
                ReasonCode::AuthorNotRegistered,
                format!(
                    "the genesis author {:?} must be one of its signatories",
                    event.author
                ),
            )
            .with("party_id", &event.author));
        }
        Ok(())
    }

    fn found(agreement_id: &str, genesis: &Genesis) -> Result<LedgerState, Rejection> {
        check_origin(&genesis.origin)?;
        check_text("genesis.title", &genesis.title, MAX_NAME_BYTES, false)?;
        if genesis.signatories.is_empty() {
            return Err(Rejection::field(
                ReasonCode::FieldMissing,
                "genesis.signatories",
                "genesis names no signatories",
            ));
        }
        let n = genesis.signatories.len() as u32;
        if genesis.threshold == 0 || genesis.threshold > n {
            return Err(Rejection::field(
                ReasonCode::FieldOutOfBounds,
                "genesis.threshold",
                format!(
                    "genesis threshold must be between 1 and the {n} signatories, got {}",
                    genesis.threshold
                ),
            ));
        }
        let operator_public_key =
            public_key_array("genesis.operator_public_key", &genesis.operator_public_key)?;
        let max_skew_seconds = match genesis.max_clock_skew_seconds {
            0 => DEFAULT_MAX_CLOCK_SKEW_SECONDS,
            seconds => seconds.min(24 * 3600),
        };
        let mut state = LedgerState {
            agreement: AgreementInfo {
                agreement_id: agreement_id.to_string(),
                origin: genesis.origin.clone(),
                title: genesis.title.clone(),
                threshold: genesis.threshold,
                operator_public_key,
                max_clock_skew_micros: i64::from(max_skew_seconds) * 1_000_000,
            },
            parties: BTreeMap::new(),
            key_owners: BTreeMap::new(),
            zones: BTreeMap::new(),
            commitments: BTreeMap::new(),
            witness_policy: None,
        };
        for (index, party) in genesis.signatories.iter().enumerate() {
            let field = format!("genesis.signatories[{index}]");
            let keys = check_party(&field, party)?;
            let change = state.register(&field, party, Role::Signatory, keys)?;
            state.apply_governance(change);
        }
        Ok(state)
    }

    /// Decides whether `event`, signed by `signers` (already verified), may
    /// be entry `context.seq`. Reads only.
    pub fn check<I: EntryIndex>(
        &self,
        event: &Event,
        signers: &[[u8; 32]],
        context: &EntryContext,
        index: &I,
    ) -> Result<Result<Accepted, Rejection>, I::Error> {
        if event.agreement_id != self.agreement.agreement_id {
            return Ok(Err(wrong_agreement(
                &event.agreement_id,
                &self.agreement.agreement_id,
            )));
        }
        if let Err(rejection) = check_header(event)
            .and_then(|()| self.check_time(event, context))
            .and_then(|()| self.check_signers_registered(signers, context.seq))
        {
            return Ok(Err(rejection));
        }
        let Some(body) = &event.body else {
            return Ok(Err(Rejection::field(
                ReasonCode::FieldMissing,
                "body",
                "event has no body",
            )));
        };
        let author = match self.parties.get(&event.author) {
            Some(author) => author,
            None => {
                return Ok(Err(Rejection::new(
                    ReasonCode::AuthorNotRegistered,
                    format!("author {:?} is not a registered party", event.author),
                )
                .with("party_id", &event.author)))
            }
        };
        Ok(match body {
            Body::Genesis(_) => Err(Rejection::new(
                ReasonCode::GenesisMisplaced,
                "this ledger already has its genesis (entry 0)",
            )),
            Body::RegisterParty(_)
            | Body::AddKey(_)
            | Body::RevokeKey(_)
            | Body::DefineZone(_)
            | Body::DefineCommitment(_)
            | Body::SetWitnessPolicy(_) => self
                .check_governance(event, author, signers, context)
                .map(Accepted::Governance),
            Body::Observation(observation) => self
                .check_signed_by_author(event, author, signers, Role::Monitor, "observations")
                .and_then(|()| self.check_observation("observation", observation, context))
                .map(|(commitment_id, zone_id, observed_until_micros)| {
                    Accepted::Observation(ObservationRecord {
                        author: event.author.clone(),
                        leaf_hash: context.leaf_hash,
                        commitment_id,
                        zone_id,
                        observed_until_micros,
                        retracted: false,
                    })
                }),
            Body::Amendment(amendment) => {
                if let Err(rejection) =
                    self.check_signed_by_author(event, author, signers, Role::Monitor, "amendments")
                {
                    return Ok(Err(rejection));
                }
                let target = match self.target_observation(
                    "amendment",
                    amendment.target_seq,
                    &amendment.target_leaf_hash,
                    context,
                    index,
                )? {
                    Ok(target) => target,
                    Err(rejection) => return Ok(Err(rejection)),
                };
                self.check_amendment(event, amendment, target, context)
            }
            Body::Dispute(dispute) => {
                if let Err(rejection) = self
                    .check_signed_by_author(event, author, signers, Role::Signatory, "disputes")
                    .and_then(|()| {
                        check_text("dispute.reason", &dispute.reason, MAX_REASON_BYTES, true)
                    })
                {
                    return Ok(Err(rejection));
                }
                match self.target_observation(
                    "dispute",
                    dispute.target_seq,
                    &dispute.target_leaf_hash,
                    context,
                    index,
                )? {
                    Ok((target_seq, target)) => Ok(Accepted::Dispute { target_seq, target }),
                    Err(rejection) => Err(rejection),
                }
            }
        })
    }

    /// Commits a change that [`check`](Self::check) accepted.
    pub fn apply(&mut self, accepted: &Accepted) {
        if let Accepted::Governance(change) = accepted {
            self.apply_governance(change.clone());
        }
    }

    /// Whether `key` could sign at `seq`: registered and not revoked before.
    pub fn key_is_active(&self, key: &[u8; 32], seq: u64) -> bool {
        self.key_owners
            .get(key)
            .and_then(|party_id| self.parties.get(party_id))
            .and_then(|party| party.keys.get(key))
            .is_some_and(|state| state.revoked_seq.is_none_or(|revoked| seq <= revoked))
    }

    fn apply_governance(&mut self, change: GovernanceChange) {
        match change {
            GovernanceChange::RegisterParty { party_id, party } => {
                for key in party.keys.keys() {
                    self.key_owners.insert(*key, party_id.clone());
                }
                self.parties.insert(party_id, party);
            }
            GovernanceChange::AddKey { party_id, key } => {
                if let Some(party) = self.parties.get_mut(&party_id) {
                    party.keys.insert(key, KeyState { revoked_seq: None });
                }
                self.key_owners.insert(key, party_id);
            }
            GovernanceChange::RevokeKey { party_id, key, seq } => {
                if let Some(state) = self
                    .parties
                    .get_mut(&party_id)
                    .and_then(|party| party.keys.get_mut(&key))
                {
                    state.revoked_seq = Some(seq);
                }
            }
            GovernanceChange::DefineZone { zone_id, zone } => {
                self.zones.insert(zone_id, zone);
            }
            GovernanceChange::DefineCommitment {
                commitment_id,
                commitment,
            } => {
                self.commitments.insert(commitment_id, commitment);
            }
            GovernanceChange::SetWitnessPolicy { policy, seq } => {
                self.witness_policy = Some((seq, policy));
            }
        }
    }

    fn check_time(&self, event: &Event, context: &EntryContext) -> Result<(), Rejection> {
        let created_at = timestamp_micros("created_at", &event.created_at)?;
        if created_at > context.received_at_micros + self.agreement.max_clock_skew_micros {
            return Err(self.in_future(
                "created_at",
                format!(
                    "created_at is {} s ahead of the ledger clock (allowed skew {} s)",
                    (created_at - context.received_at_micros) / 1_000_000,
                    self.agreement.max_clock_skew_micros / 1_000_000
                ),
            ));
        }
        Ok(())
    }

    /// `TIME_IN_FUTURE` for `field`, with the agreement's skew.
    fn in_future(&self, field: &str, message: String) -> Rejection {
        Rejection::field(ReasonCode::TimeInFuture, field, message).with(
            "max_clock_skew_seconds",
            self.agreement.max_clock_skew_micros / 1_000_000,
        )
    }

    fn check_signers_registered(&self, signers: &[[u8; 32]], seq: u64) -> Result<(), Rejection> {
        for key in signers {
            let Some(party_id) = self.key_owners.get(key) else {
                return Err(key_not_registered(key));
            };
            if !self.key_is_active(key, seq) {
                let revoked_seq = self.parties[party_id].keys[key]
                    .revoked_seq
                    .unwrap_or_default();
                return Err(Rejection::new(
                    ReasonCode::KeyRevoked,
                    format!(
                        "key {} of {party_id:?} was revoked at entry {revoked_seq}",
                        crate::key_text(key),
                    ),
                )
                .with("public_key", crate::key_text(key))
                .with("party_id", party_id)
                .with("revoked_seq", revoked_seq));
            }
        }
        Ok(())
    }

    /// Non-governance events: every signature is by the author's own keys,
    /// and the author has the role these events need.
    fn check_signed_by_author(
        &self,
        event: &Event,
        author: &PartyState,
        signers: &[[u8; 32]],
        role: Role,
        what: &str,
    ) -> Result<(), Rejection> {
        if author.role != role {
            return Err(wrong_role(
                &event.author,
                author.role,
                format!(
                    "{what} must come from {}; {:?} is {}",
                    role_name(role),
                    event.author,
                    role_name(author.role)
                ),
            ));
        }
        if let Some(key) = signers.iter().find(|key| !author.keys.contains_key(*key)) {
            return Err(Rejection::new(
                ReasonCode::SignerNotAuthor,
                format!(
                    "key {} does not belong to the author {:?}",
                    crate::key_text(key),
                    event.author
                ),
            )
            .with("public_key", crate::key_text(key))
            .with("party_id", &event.author));
        }
        Ok(())
    }

    /// Governance events need `threshold` distinct signatories, the author
    /// among them; every signer must be a signatory (two keys of one
    /// signatory count once).
    fn check_governance_signers(
        &self,
        author: &str,
        signers: &[[u8; 32]],
    ) -> Result<(), Rejection> {
        let mut signing_parties = BTreeSet::new();
        for key in signers {
            let party_id = self
                .key_owners
                .get(key)
                .ok_or_else(|| key_not_registered(key))?;
            let role = self.parties[party_id].role;
            if role != Role::Signatory {
                return Err(wrong_role(
                    party_id,
                    role,
                    format!(
                        "governance events are signed by signatories only; {party_id:?} is {}",
                        role_name(role)
                    ),
                ));
            }
            signing_parties.insert(party_id.as_str());
        }
        if !signing_parties.contains(author) {
            return Err(Rejection::new(
                ReasonCode::AuthorNotSigner,
                format!("the author {author:?} must sign its own event"),
            )
            .with("party_id", author));
        }
        if (signing_parties.len() as u32) < self.agreement.threshold {
            return Err(Rejection::new(
                ReasonCode::BelowThreshold,
                format!(
                    "governance needs {} distinct signatories, this event has {}",
                    self.agreement.threshold,
                    signing_parties.len()
                ),
            )
            .with("threshold", self.agreement.threshold)
            .with("signatories", signing_parties.len()));
        }
        Ok(())
    }

    fn check_governance(
        &self,
        event: &Event,
        author: &PartyState,
        signers: &[[u8; 32]],
        context: &EntryContext,
    ) -> Result<GovernanceChange, Rejection> {
        if author.role != Role::Signatory {
            return Err(wrong_role(
                &event.author,
                author.role,
                format!(
                    "governance events are authored by a signatory; {:?} is {}",
                    event.author,
                    role_name(author.role)
                ),
            ));
        }
        self.check_governance_signers(&event.author, signers)?;
        let seq = context.seq;
        match event.body.as_ref() {
            Some(Body::RegisterParty(register)) => {
                let party = register
                    .party
                    .as_ref()
                    .ok_or_else(|| missing("register_party.party"))?;
                let keys = check_party("register_party.party", party)?;
                let role = check_enum::<Role>("register_party.party.role", party.role)?;
                self.register("register_party.party", party, role, keys)
            }
            Some(Body::AddKey(add)) => {
                self.existing_party("add_key.party_id", &add.party_id)?;
                let key = public_key_array("add_key.public_key", &add.public_key)?;
                if let Some(owner) = self.key_owners.get(&key) {
                    return Err(key_already_registered(
                        &key,
                        owner,
                        format!(
                            "key {} is already registered to {owner:?}; keys are never reused",
                            crate::key_text(key)
                        ),
                    ));
                }
                Ok(GovernanceChange::AddKey {
                    party_id: add.party_id.clone(),
                    key,
                })
            }
            Some(Body::RevokeKey(revoke)) => {
                let party = self.existing_party("revoke_key.party_id", &revoke.party_id)?;
                check_text("revoke_key.reason", &revoke.reason, MAX_REASON_BYTES, false)?;
                let key: [u8; 32] =
                    revoke.public_key.as_slice().try_into().map_err(|_| {
                        not_32_bytes("revoke_key.public_key", revoke.public_key.len())
                    })?;
                match party.keys.get(&key) {
                    None => Err(Rejection::new(
                        ReasonCode::KeyNotOfParty,
                        format!(
                            "key {} is not a key of {:?}",
                            crate::key_text(key),
                            revoke.party_id
                        ),
                    )
                    .with("public_key", crate::key_text(key))
                    .with("party_id", &revoke.party_id)),
                    Some(KeyState {
                        revoked_seq: Some(at),
                        ..
                    }) => Err(Rejection::new(
                        ReasonCode::KeyAlreadyRevoked,
                        format!(
                            "key {} was already revoked at entry {at}",
                            crate::key_text(key)
                        ),
                    )
                    .with("public_key", crate::key_text(key))
                    .with("revoked_seq", at)),
                    Some(_) => Ok(GovernanceChange::RevokeKey {
                        party_id: revoke.party_id.clone(),
                        key,
                        seq,
                    }),
                }
            }
            Some(Body::SetWitnessPolicy(set)) => Ok(GovernanceChange::SetWitnessPolicy {
                policy: WitnessPolicy::from_event(set, true)?,
                seq,
            }),
            Some(Body::DefineZone(define)) => {
                check_identifier("define_zone.zone_id", &define.zone_id)?;
                self.check_version(
                    "zone",
                    &define.zone_id,
                    self.zones.get(&define.zone_id).map(|zone| zone.version),
                    define.version,
                )?;
                check_text("define_zone.name", &define.name, MAX_NAME_BYTES, true)?;
                let kind = check_enum::<ZoneKind>("define_zone.kind", define.kind)?;
                let boundary: Vec<Point> = define
                    .boundary
                    .as_ref()
                    .ok_or_else(|| missing("define_zone.boundary"))?
                    .vertices
                    .iter()
                    .map(|vertex| Point {
                        lat: vertex.lat,
                        lon: vertex.lon,
                    })
                    .collect();
                geo::check_polygon(&boundary).map_err(|reason| {
                    Rejection::field(
                        ReasonCode::ZoneBoundaryInvalid,
                        "define_zone.boundary",
                        format!("define_zone.boundary: {reason}"),
                    )
                })?;
                Ok(GovernanceChange::DefineZone {
                    zone_id: define.zone_id.clone(),
                    zone: ZoneState {
                        version: define.version,
                        name: define.name.clone(),
                        kind,
                        boundary,
                    },
                })
            }
            Some(Body::DefineCommitment(define)) => {
                check_identifier("define_commitment.commitment_id", &define.commitment_id)?;
                self.check_version(
                    "commitment",
                    &define.commitment_id,
                    self.commitments
                        .get(&define.commitment_id)
                        .map(|commitment| commitment.version),
                    define.version,
                )?;
                check_text("define_commitment.name", &define.name, MAX_NAME_BYTES, true)?;
                let kind = check_enum::<CommitmentKind>("define_commitment.kind", define.kind)?;
                if define.zone_ids.is_empty() {
                    return Err(Rejection::field(
                        ReasonCode::FieldMissing,
                        "define_commitment.zone_ids",
                        "define_commitment.zone_ids: a commitment binds at least one zone",
                    ));
                }
                let mut seen = BTreeSet::new();
                for (index, zone_id) in define.zone_ids.iter().enumerate() {
                    if !self.zones.contains_key(zone_id) {
                        return Err(Rejection::new(
                            ReasonCode::ZoneUnknown,
                            format!("define_commitment.zone_ids: unknown zone {zone_id:?}"),
                        )
                        .with("zone_id", zone_id));
                    }
                    if !seen.insert(zone_id) {
                        return Err(Rejection::field(
                            ReasonCode::DuplicateInList,
                            format!("define_commitment.zone_ids[{index}]"),
                            format!("define_commitment.zone_ids lists {zone_id:?} twice"),
                        ));
                    }
                }
                if !(1..=MAX_WINDOW_SECONDS).contains(&define.window_seconds) {
                    return Err(Rejection::field(
                        ReasonCode::FieldOutOfBounds,
                        "define_commitment.window_seconds",
                        format!(
                            "define_commitment.window_seconds must be 1 to {MAX_WINDOW_SECONDS}, got {}",
                            define.window_seconds
                        ),
                    ));
                }
                if !(1..=MAX_QUORUM).contains(&define.corroboration_quorum) {
                    return Err(Rejection::field(
                        ReasonCode::FieldOutOfBounds,
                        "define_commitment.corroboration_quorum",
                        format!(
                            "define_commitment.corroboration_quorum must be 1 to {MAX_QUORUM}, got {}",
                            define.corroboration_quorum
                        ),
                    ));
                }
                let effective_from_micros =
                    timestamp_micros("define_commitment.effective_from", &define.effective_from)?;
                Ok(GovernanceChange::DefineCommitment {
                    commitment_id: define.commitment_id.clone(),
                    commitment: CommitmentState {
                        version: define.version,
                        name: define.name.clone(),
                        kind,
                        zone_ids: define.zone_ids.clone(),
                        window_seconds: define.window_seconds,
                        corroboration_quorum: define.corroboration_quorum,
                        effective_from_micros,
                    },
                })
            }
            // Unreachable: `check` calls this for governance bodies only.
            _ => Err(Rejection::field(
                ReasonCode::FieldMissing,
                "body",
                "not a governance event",
            )),
        }
    }

    fn register(
        &self,
        field: &str,
        party: &Party,
        role: Role,
        keys: Vec<[u8; 32]>,
    ) -> Result<GovernanceChange, Rejection> {
        if self.parties.contains_key(&party.party_id) {
            return Err(Rejection::new(
                ReasonCode::PartyAlreadyRegistered,
                format!(
                    "{field}.party_id: party {:?} is already registered",
                    party.party_id
                ),
            )
            .with("party_id", &party.party_id));
        }
        for key in &keys {
            if let Some(owner) = self.key_owners.get(key) {
                return Err(key_already_registered(
                    key,
                    owner,
                    format!(
                        "{field}: key {} is already registered to {owner:?}",
                        crate::key_text(key)
                    ),
                ));
            }
        }
        Ok(GovernanceChange::RegisterParty {
            party_id: party.party_id.clone(),
            party: PartyState {
                name: party.name.clone(),
                role,
                keys: keys
                    .into_iter()
                    .map(|key| (key, KeyState { revoked_seq: None }))
                    .collect(),
            },
        })
    }

    fn existing_party(&self, field: &str, party_id: &str) -> Result<&PartyState, Rejection> {
        check_identifier(field, party_id)?;
        self.parties.get(party_id).ok_or_else(|| {
            Rejection::new(
                ReasonCode::PartyUnknown,
                format!("{field}: unknown party {party_id:?}"),
            )
            .with("party_id", party_id)
        })
    }

    fn check_version(
        &self,
        what: &str,
        id: &str,
        current: Option<u32>,
        proposed: u32,
    ) -> Result<(), Rejection> {
        let expected = current.map_or(1, |version| version + 1);
        if proposed == expected {
            return Ok(());
        }
        Err(Rejection::new(
            ReasonCode::DefinitionVersionInvalid,
            match current {
                None => format!("{what} {id:?} is new: its version must be 1, got {proposed}"),
                Some(version) => format!(
                    "{what} {id:?} is at version {version}: a redefinition must be version {expected}, got {proposed}"
                ),
            },
        )
        .with("expected_version", expected))
    }

    /// Checks an observation's content; returns (commitment_id, zone_id), the
    /// zone derived from the location when the observation names none.
    fn check_observation(
        &self,
        field: &str,
        observation: &Observation,
        context: &EntryContext,
    ) -> Result<(String, String, i64), Rejection> {
        let from = timestamp_micros(
            &format!("{field}.observed_from"),
            &observation.observed_from,
        )?;
        let until = timestamp_micros(
            &format!("{field}.observed_until"),
            &observation.observed_until,
        )?;
        if from > until {
            return Err(Rejection::field(
                ReasonCode::FieldOutOfBounds,
                format!("{field}.observed_from"),
                format!("{field}: observed_from is after observed_until"),
            ));
        }
        if until > context.received_at_micros + self.agreement.max_clock_skew_micros {
            return Err(self.in_future(
                &format!("{field}.observed_until"),
                format!(
                    "{field}.observed_until is {} s in the future (allowed skew {} s)",
                    (until - context.received_at_micros) / 1_000_000,
                    self.agreement.max_clock_skew_micros / 1_000_000
                ),
            ));
        }
        let location = observation
            .location
            .as_ref()
            .ok_or_else(|| missing(&format!("{field}.location")))?;
        let point = location
            .point
            .as_ref()
            .ok_or_else(|| missing(&format!("{field}.location.point")))?;
        let point = Point {
            lat: point.lat,
            lon: point.lon,
        };
        geo::check_point(point).map_err(|reason| {
            Rejection::field(
                ReasonCode::FieldOutOfBounds,
                format!("{field}.location.point"),
                format!("{field}.location.point: {reason}"),
            )
        })?;
        if !(location.accuracy_m.is_finite()
            && (0.0..=MAX_ACCURACY_METRES).contains(&location.accuracy_m))
        {
            return Err(Rejection::field(
                ReasonCode::FieldOutOfBounds,
                format!("{field}.location.accuracy_m"),
                format!(
                    "{field}.location.accuracy_m must be 0 to {MAX_ACCURACY_METRES}, got {}",
                    location.accuracy_m
                ),
            ));
        }
        check_enum::<Finding>(&format!("{field}.finding"), observation.finding)?;
        check_enum::<Category>(&format!("{field}.category"), observation.category)?;
        check_text(
            &format!("{field}.attributed_side"),
            &observation.attributed_side,
            MAX_NAME_BYTES,
            false,
        )?;
        check_text(
            &format!("{field}.narrative"),
            &observation.narrative,
            MAX_NARRATIVE_BYTES,
            false,
        )?;
        if observation.evidence.len() > MAX_EVIDENCE_ITEMS {
            return Err(Rejection::field(
                ReasonCode::FieldOutOfBounds,
                format!("{field}.evidence"),
                format!("{field}.evidence: at most {MAX_EVIDENCE_ITEMS} items"),
            ));
        }
        for (index, evidence) in observation.evidence.iter().enumerate() {
            hash_array(
                &format!("{field}.evidence[{index}].sha256"),
                &evidence.sha256,
            )?;
            check_text(
                &format!("{field}.evidence[{index}].media_type"),
                &evidence.media_type,
                MAX_NAME_BYTES,
                true,
            )?;
            check_text(
                &format!("{field}.evidence[{index}].uri"),
                &evidence.uri,
                MAX_URI_BYTES,
                false,
            )?;
        }
        check_identifier(
            &format!("{field}.commitment_id"),
            &observation.commitment_id,
        )?;
        let commitment = self
            .commitments
            .get(&observation.commitment_id)
            .ok_or_else(|| {
                Rejection::new(
                    ReasonCode::CommitmentUnknown,
                    format!(
                        "{field}.commitment_id: unknown commitment {:?}",
                        observation.commitment_id
                    ),
                )
                .with("commitment_id", &observation.commitment_id)
            })?;
        let zone_id = if observation.zone_id.is_empty() {
            commitment
                .zone_ids
                .iter()
                .find(|zone_id| geo::contains(&self.zones[*zone_id].boundary, point))
                .cloned()
                .ok_or_else(|| {
                    Rejection::new(
                        ReasonCode::OutsideZone,
                        format!(
                            "{field}.location ({}, {}) is outside every zone of commitment {:?}",
                            point.lat, point.lon, observation.commitment_id
                        ),
                    )
                    .with("commitment_id", &observation.commitment_id)
                })?
        } else {
            let zone = self.zones.get(&observation.zone_id).ok_or_else(|| {
                Rejection::new(
                    ReasonCode::ZoneUnknown,
                    format!("{field}.zone_id: unknown zone {:?}", observation.zone_id),
                )
                .with("zone_id", &observation.zone_id)
            })?;
            if !commitment.zone_ids.contains(&observation.zone_id) {
                return Err(Rejection::new(
                    ReasonCode::ZoneNotBound,
                    format!(
                        "{field}.zone_id: zone {:?} is not bound by commitment {:?}",
                        observation.zone_id, observation.commitment_id
                    ),
                )
                .with("zone_id", &observation.zone_id)
                .with("commitment_id", &observation.commitment_id));
            }
            if !geo::contains(&zone.boundary, point) {
                return Err(Rejection::new(
                    ReasonCode::OutsideZone,
                    format!(
                        "{field}.location ({}, {}) is outside zone {:?}",
                        point.lat, point.lon, observation.zone_id
                    ),
                )
                .with("commitment_id", &observation.commitment_id)
                .with("zone_id", &observation.zone_id));
            }
            observation.zone_id.clone()
        };
        Ok((observation.commitment_id.clone(), zone_id, until))
    }

    /// Finds the observation an amendment or dispute names, checking that the
    /// named leaf hash is that entry's.
    fn target_observation<I: EntryIndex>(
        &self,
        field: &str,
        target_seq: u64,
        target_leaf_hash: &[u8],
        context: &EntryContext,
        index: &I,
    ) -> Result<Result<(u64, ObservationRecord), Rejection>, I::Error> {
        let named_hash = match hash_array(&format!("{field}.target_leaf_hash"), target_leaf_hash) {
            Ok(hash) => hash,
            Err(rejection) => return Ok(Err(rejection)),
        };
        let target = |reason: ReasonCode, message: String| {
            Rejection::new(reason, message).with("target_seq", target_seq)
        };
        if target_seq >= context.seq {
            return Ok(Err(target(
                ReasonCode::TargetUnknown,
                format!("{field}.target_seq {target_seq} is not an earlier entry"),
            )));
        }
        let Some(actual_hash) = index.leaf_hash(target_seq)? else {
            return Ok(Err(target(
                ReasonCode::TargetUnknown,
                format!("{field}.target_seq {target_seq} is not in the log"),
            )));
        };
        if actual_hash != named_hash {
            return Ok(Err(target(
                ReasonCode::TargetHashMismatch,
                format!("{field}.target_leaf_hash does not match entry {target_seq}"),
            )));
        }
        Ok(match index.observation(target_seq)? {
            Some(record) => Ok((target_seq, record)),
            None => Err(target(
                ReasonCode::TargetNotObservation,
                format!("{field}.target_seq {target_seq} is not an observation"),
            )),
        })
    }

    fn check_amendment(
        &self,
        event: &Event,
        amendment: &crate::proto::Amendment,
        (target_seq, target): (u64, ObservationRecord),
        context: &EntryContext,
    ) -> Result<Accepted, Rejection> {
        if target.author != event.author {
            return Err(Rejection::new(
                ReasonCode::NotOriginalAuthor,
                format!(
                    "only the author {:?} may amend entry {target_seq}",
                    target.author
                ),
            )
            .with("target_seq", target_seq)
            .with("party_id", &target.author));
        }
        if target.retracted {
            return Err(Rejection::new(
                ReasonCode::TargetRetracted,
                format!("entry {target_seq} was already retracted"),
            )
            .with("target_seq", target_seq));
        }
        check_text(
            "amendment.reason",
            &amendment.reason,
            MAX_REASON_BYTES,
            true,
        )?;
        let kind = check_enum::<AmendmentKind>("amendment.kind", amendment.kind)?;
        let corrected = match (kind, &amendment.correction) {
            (AmendmentKind::Retract, None) => ObservationRecord {
                retracted: true,
                ..target.clone()
            },
            (AmendmentKind::Retract, Some(_)) => {
                return Err(Rejection::new(
                    ReasonCode::AmendmentCorrectionMismatch,
                    "amendment.correction must be empty for a retraction",
                ))
            }
            (AmendmentKind::Correct, Some(correction)) => {
                let (commitment_id, zone_id, observed_until_micros) =
                    self.check_observation("amendment.correction", correction, context)?;
                ObservationRecord {
                    commitment_id,
                    zone_id,
                    observed_until_micros,
                    ..target.clone()
                }
            }
            (AmendmentKind::Correct, None) => {
                return Err(Rejection::new(
                    ReasonCode::AmendmentCorrectionMismatch,
                    "amendment.correction is required for a correction",
                ))
            }
            // Unreachable: check_enum refused 0.
            (AmendmentKind::Unspecified, _) => return Err(missing("amendment.kind")),
        };
        Ok(Accepted::Amendment {
            target_seq,
            kind,
            original: target,
            corrected,
        })
    }
}

/// The origin is the checkpoint's first line and the operator key's name in
/// signed notes: 1 to [`MAX_ORIGIN_BYTES`] bytes, printable, no spaces and
/// no '+'.
fn check_origin(origin: &str) -> Result<(), Rejection> {
    let reason = if origin.is_empty() {
        ReasonCode::FieldMissing
    } else if origin.len() > MAX_ORIGIN_BYTES {
        ReasonCode::FieldOutOfBounds
    } else if origin
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '+')
    {
        ReasonCode::FieldMalformed
    } else {
        return Ok(());
    };
    Err(Rejection::field(
        reason,
        "genesis.origin",
        format!(
            "genesis.origin {origin:?} must be 1-{MAX_ORIGIN_BYTES} bytes with no spaces, control characters or '+'"
        ),
    ))
}

/// `WRONG_AGREEMENT`: the event names `named`, this ledger is `ours`.
pub fn wrong_agreement(named: &str, ours: &str) -> Rejection {
    Rejection::new(
        ReasonCode::WrongAgreement,
        format!("event is for agreement {named:?}, this ledger is {ours:?}"),
    )
    .with("agreement_id", ours)
}

fn key_not_registered(key: &[u8; 32]) -> Rejection {
    Rejection::new(
        ReasonCode::KeyNotRegistered,
        format!(
            "key {} is not registered to any party",
            crate::key_text(key)
        ),
    )
    .with("public_key", crate::key_text(key))
}

fn key_already_registered(key: &[u8; 32], owner: &str, message: String) -> Rejection {
    Rejection::new(ReasonCode::KeyAlreadyRegistered, message)
        .with("public_key", crate::key_text(key))
        .with("party_id", owner)
}

/// `WRONG_ROLE`: `party_id`, whose role is `role`, may not author or sign this.
fn wrong_role(party_id: &str, role: Role, message: String) -> Rejection {
    Rejection::new(ReasonCode::WrongRole, message)
        .with("party_id", party_id)
        .with("role", role.as_str_name())
}

/// A role with its article, for messages ("an observer").
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Unspecified => "a party without a role",
        Role::Monitor => "a monitor",
        Role::Signatory => "a signatory",
        Role::Observer => "an observer",
    }
}
