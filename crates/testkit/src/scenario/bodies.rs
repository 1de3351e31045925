//! One function per event body, every field a parameter or a documented
//! default, for the events a [`Scenario`](super::Scenario) does not build
//! by itself and for the malformed ones a test wants refused (build the
//! body, then change the field). Zone and commitment definitions are built
//! by [`Zone`](super::Zone) and [`Commitment`](super::Commitment).

use ceasefire_grpc::proto::{
    event::Body, AddKey, Amendment, AmendmentKind, Dispute, Genesis, Observation, Party,
    RegisterParty, RevokeKey, Role, SetWitnessPolicy,
};
use ed25519_dalek::{SigningKey, VerifyingKey};

use super::public_key;

/// A genesis naming `signatories`, `threshold` of them needed to govern,
/// and the operator key that signs checkpoints (no extra clock skew).
pub fn genesis(
    origin: &str,
    title: &str,
    signatories: Vec<Party>,
    threshold: u32,
    operator: &VerifyingKey,
) -> Body {
    Body::Genesis(Genesis {
        origin: origin.into(),
        title: title.into(),
        signatories,
        threshold,
        operator_public_key: operator.to_bytes().to_vec(),
        max_clock_skew_seconds: 0,
    })
}

/// A party record named "Party PARTY_ID" with these keys.
pub fn party(party_id: &str, role: Role, keys: &[&SigningKey]) -> Party {
    Party {
        party_id: party_id.into(),
        name: format!("Party {party_id}"),
        role: role as i32,
        public_keys: keys.iter().map(|key| public_key(key)).collect(),
    }
}

pub fn register(party: Party) -> Body {
    Body::RegisterParty(RegisterParty { party: Some(party) })
}

pub fn add_key(party_id: &str, key: &SigningKey) -> Body {
    Body::AddKey(AddKey {
        party_id: party_id.into(),
        public_key: public_key(key),
    })
}

pub fn revoke_key(party_id: &str, key: &SigningKey, reason: &str) -> Body {
    Body::RevokeKey(RevokeKey {
        party_id: party_id.into(),
        public_key: public_key(key),
        reason: reason.into(),
    })
}

/// An amendment of entry `target_seq`, whose leaf hash the author states
/// (as every body naming an entry does: take both from its receipt).
pub fn amendment(
    target_seq: u64,
    target_leaf_hash: &[u8],
    kind: AmendmentKind,
    correction: Option<Observation>,
    reason: &str,
) -> Body {
    Body::Amendment(Amendment {
        target_seq,
        target_leaf_hash: target_leaf_hash.to_vec(),
        kind: kind as i32,
        correction,
        reason: reason.into(),
    })
}

/// The retraction of the observation at `target_seq`.
pub fn retraction(target_seq: u64, target_leaf_hash: &[u8], reason: &str) -> Body {
    amendment(
        target_seq,
        target_leaf_hash,
        AmendmentKind::Retract,
        None,
        reason,
    )
}

/// The correction of the observation at `target_seq`.
pub fn correction(
    target_seq: u64,
    target_leaf_hash: &[u8],
    corrected: Observation,
    reason: &str,
) -> Body {
    amendment(
        target_seq,
        target_leaf_hash,
        AmendmentKind::Correct,
        Some(corrected),
        reason,
    )
}

/// A signatory's dispute of entry `target_seq`.
pub fn dispute(target_seq: u64, target_leaf_hash: &[u8], reason: &str) -> Body {
    Body::Dispute(Dispute {
        target_seq,
        target_leaf_hash: target_leaf_hash.to_vec(),
        reason: reason.into(),
    })
}

/// The witness policy `policy` (see `witnesses::k_of_n_policy`); governance.
pub fn set_witness_policy(policy: SetWitnessPolicy) -> Body {
    Body::SetWitnessPolicy(policy)
}
