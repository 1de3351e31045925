//! Why an event or a request is refused, in terms a caller can match on.
//!
//! Every refusal names one [`ReasonCode`] (`proto/ceasefire/v1/errors.proto`)
//! and carries the metadata docs/spec.md section 6 gives that reason
//! ([`metadata_keys`]). The gRPC status code is not stored beside it: it is
//! a function of the reason ([`RejectionKind::of`]), so the two can never
//! disagree. The core knows nothing of gRPC; the server turns a
//! [`Rejection`] into a status whose `google.rpc.ErrorInfo` is
//! `{ reason: reason_name(reason), domain: ERROR_DOMAIN, metadata }`.
//!
//! The message says what is wrong and, where it helps, what to do; it is for
//! people, and its wording is not part of the contract. The reason and the
//! metadata are.

use std::collections::BTreeMap;
use std::fmt;

pub use crate::proto::ReasonCode;

/// `google.rpc.ErrorInfo.domain` of every reason: the protobuf package
/// whose `ReasonCode` defines it.
pub const ERROR_DOMAIN: &str = "ceasefire.v1";

/// What every `ReasonCode` value name starts with, and `ErrorInfo.reason`
/// leaves out.
const REASON_PREFIX: &str = "REASON_CODE_";

/// The class of a refusal: one gRPC status code each. Derived from the
/// reason ([`RejectionKind::of`]), never chosen separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    /// Undecodable, missing field, out of bounds, unknown reference, oversize.
    InvalidArgument,
    /// A signature does not verify.
    Unauthenticated,
    /// Key not registered, revoked, wrong role, below threshold.
    PermissionDenied,
    /// Replayed nonce with different bytes.
    AlreadyExists,
    /// The event belongs to another agreement, or the ledger is not ready for it.
    FailedPrecondition,
    /// A position or size beyond the tree; a message over the size limit.
    OutOfRange,
    /// No such (zone, commitment) pair.
    NotFound,
    /// Too many open streams of one kind.
    ResourceExhausted,
    /// The server is stopping, or its sequencer stopped.
    Unavailable,
    /// A fault of the server, not of the request.
    Internal,
    /// Only for [`ReasonCode::Unspecified`], which is never sent: a status
    /// without a reason says no more than gRPC's UNKNOWN.
    Unknown,
}

impl RejectionKind {
    /// The one gRPC code of `reason` (docs/spec.md section 6, "Refusals";
    /// a test holds this match to that table).
    pub fn of(reason: ReasonCode) -> RejectionKind {
        use RejectionKind::*;
        match reason {
            ReasonCode::Unspecified => Unknown,
            ReasonCode::MessageTooLarge => OutOfRange,
            ReasonCode::MessageUndecodable => Internal,
            ReasonCode::PayloadTooLarge
            | ReasonCode::SignatureMalformed
            | ReasonCode::SignatureCountInvalid
            | ReasonCode::SignerDuplicated
            | ReasonCode::PayloadUndecodable
            | ReasonCode::NonCanonicalPayload => InvalidArgument,
            ReasonCode::WrongAgreement => FailedPrecondition,
            ReasonCode::SignatureInvalid => Unauthenticated,
            ReasonCode::NonceReused => AlreadyExists,
            ReasonCode::LedgerNotStarted | ReasonCode::OperatorKeyMismatch => FailedPrecondition,
            ReasonCode::KeyNotRegistered
            | ReasonCode::KeyRevoked
            | ReasonCode::AuthorNotRegistered
            | ReasonCode::WrongRole
            | ReasonCode::SignerNotAuthor
            | ReasonCode::AuthorNotSigner
            | ReasonCode::BelowThreshold
            | ReasonCode::NotOriginalAuthor => PermissionDenied,
            ReasonCode::FieldMissing
            | ReasonCode::FieldMalformed
            | ReasonCode::FieldOutOfBounds
            | ReasonCode::TimeInFuture
            | ReasonCode::KeyUnacceptable
            | ReasonCode::DuplicateInList
            | ReasonCode::GenesisMisplaced
            | ReasonCode::PartyAlreadyRegistered
            | ReasonCode::KeyAlreadyRegistered
            | ReasonCode::PartyUnknown
            | ReasonCode::KeyNotOfParty
            | ReasonCode::KeyAlreadyRevoked
            | ReasonCode::DefinitionVersionInvalid
            | ReasonCode::ZoneBoundaryInvalid
            | ReasonCode::ZoneUnknown
            | ReasonCode::CommitmentUnknown
            | ReasonCode::ZoneNotBound
            | ReasonCode::OutsideZone
            | ReasonCode::TargetUnknown
            | ReasonCode::TargetHashMismatch
            | ReasonCode::TargetNotObservation
            | ReasonCode::TargetRetracted
            | ReasonCode::AmendmentCorrectionMismatch => InvalidArgument,
            ReasonCode::RangeInvalid => InvalidArgument,
            ReasonCode::BeyondTree => OutOfRange,
            ReasonCode::PageTokenInvalid => InvalidArgument,
            ReasonCode::PairNotFound => NotFound,
            ReasonCode::StreamLimitReached => ResourceExhausted,
            ReasonCode::ServerUnavailable => Unavailable,
            ReasonCode::InternalError => Internal,
            ReasonCode::NoWitnessPolicy => FailedPrecondition,
            ReasonCode::NotYetWitnessed => Unavailable,
        }
    }

    /// The `google.rpc.Code` value (the number tonic's `Code` converts from).
    pub fn code(self) -> i32 {
        match self {
            RejectionKind::Unknown => 2,
            RejectionKind::InvalidArgument => 3,
            RejectionKind::NotFound => 5,
            RejectionKind::AlreadyExists => 6,
            RejectionKind::PermissionDenied => 7,
            RejectionKind::ResourceExhausted => 8,
            RejectionKind::FailedPrecondition => 9,
            RejectionKind::OutOfRange => 11,
            RejectionKind::Internal => 13,
            RejectionKind::Unavailable => 14,
            RejectionKind::Unauthenticated => 16,
        }
    }

    /// The `google.rpc.Code` name, as docs/spec.md writes it (`INVALID_ARGUMENT`).
    pub fn name(self) -> &'static str {
        match self {
            RejectionKind::Unknown => "UNKNOWN",
            RejectionKind::InvalidArgument => "INVALID_ARGUMENT",
            RejectionKind::NotFound => "NOT_FOUND",
            RejectionKind::AlreadyExists => "ALREADY_EXISTS",
            RejectionKind::PermissionDenied => "PERMISSION_DENIED",
            RejectionKind::ResourceExhausted => "RESOURCE_EXHAUSTED",
            RejectionKind::FailedPrecondition => "FAILED_PRECONDITION",
            RejectionKind::OutOfRange => "OUT_OF_RANGE",
            RejectionKind::Internal => "INTERNAL",
            RejectionKind::Unavailable => "UNAVAILABLE",
            RejectionKind::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// `ErrorInfo.reason` of a reason: its value name without `REASON_CODE_`
/// (`NONCE_REUSED`).
pub fn reason_name(reason: ReasonCode) -> &'static str {
    let name = reason.as_str_name();
    name.strip_prefix(REASON_PREFIX).unwrap_or(name)
}

/// The reason an `ErrorInfo.reason` names, if this version knows it.
pub fn reason_from_name(name: &str) -> Option<ReasonCode> {
    ReasonCode::from_str_name(&format!("{REASON_PREFIX}{name}"))
        .filter(|reason| *reason != ReasonCode::Unspecified)
}

/// The metadata keys of a reason (docs/spec.md section 6, "Error details"):
/// those it always carries, and those it carries only when their condition
/// holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataKeys {
    pub always: &'static [&'static str],
    pub conditional: &'static [&'static str],
}

/// The metadata keys `reason` carries (a test holds this match to the
/// spec's table).
pub fn metadata_keys(reason: ReasonCode) -> MetadataKeys {
    const fn always(keys: &'static [&'static str]) -> MetadataKeys {
        MetadataKeys {
            always: keys,
            conditional: &[],
        }
    }
    match reason {
        ReasonCode::PayloadTooLarge => always(&["size", "limit"]),
        ReasonCode::SignatureMalformed => always(&["field"]),
        ReasonCode::SignatureCountInvalid => always(&["limit"]),
        ReasonCode::SignerDuplicated
        | ReasonCode::SignatureInvalid
        | ReasonCode::KeyNotRegistered => always(&["public_key"]),
        ReasonCode::WrongAgreement => always(&["agreement_id"]),
        ReasonCode::NonceReused => always(&["author", "seq"]),
        ReasonCode::KeyRevoked => always(&["public_key", "party_id", "revoked_seq"]),
        ReasonCode::AuthorNotRegistered | ReasonCode::AuthorNotSigner => always(&["party_id"]),
        ReasonCode::WrongRole => always(&["party_id", "role"]),
        ReasonCode::SignerNotAuthor => always(&["public_key", "party_id"]),
        ReasonCode::BelowThreshold => always(&["threshold", "signatories"]),
        ReasonCode::NotOriginalAuthor => always(&["target_seq", "party_id"]),
        ReasonCode::FieldMissing
        | ReasonCode::FieldMalformed
        | ReasonCode::FieldOutOfBounds
        | ReasonCode::KeyUnacceptable
        | ReasonCode::DuplicateInList
        | ReasonCode::ZoneBoundaryInvalid => always(&["field"]),
        ReasonCode::TimeInFuture => always(&["field", "max_clock_skew_seconds"]),
        ReasonCode::PartyAlreadyRegistered | ReasonCode::PartyUnknown => always(&["party_id"]),
        ReasonCode::KeyAlreadyRegistered | ReasonCode::KeyNotOfParty => {
            always(&["public_key", "party_id"])
        }
        ReasonCode::KeyAlreadyRevoked => always(&["public_key", "revoked_seq"]),
        ReasonCode::DefinitionVersionInvalid => always(&["expected_version"]),
        ReasonCode::ZoneUnknown => always(&["zone_id"]),
        ReasonCode::CommitmentUnknown => always(&["commitment_id"]),
        ReasonCode::ZoneNotBound => always(&["zone_id", "commitment_id"]),
        ReasonCode::OutsideZone => MetadataKeys {
            always: &["commitment_id"],
            conditional: &["zone_id"],
        },
        ReasonCode::TargetUnknown
        | ReasonCode::TargetHashMismatch
        | ReasonCode::TargetNotObservation
        | ReasonCode::TargetRetracted => always(&["target_seq"]),
        ReasonCode::BeyondTree => always(&["tree_size"]),
        ReasonCode::StreamLimitReached => always(&["stream", "limit"]),
        ReasonCode::ServerUnavailable => MetadataKeys {
            always: &[],
            conditional: &["resume_seq", "resume_index"],
        },
        ReasonCode::NotYetWitnessed => MetadataKeys {
            always: &[],
            conditional: &["witnessed_size"],
        },
        ReasonCode::Unspecified
        | ReasonCode::MessageTooLarge
        | ReasonCode::MessageUndecodable
        | ReasonCode::PayloadUndecodable
        | ReasonCode::NonCanonicalPayload
        | ReasonCode::LedgerNotStarted
        | ReasonCode::OperatorKeyMismatch
        | ReasonCode::GenesisMisplaced
        | ReasonCode::AmendmentCorrectionMismatch
        | ReasonCode::RangeInvalid
        | ReasonCode::PageTokenInvalid
        | ReasonCode::PairNotFound
        | ReasonCode::NoWitnessPolicy
        | ReasonCode::InternalError => always(&[]),
    }
}

/// A refused event or request: nothing of it was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Why, as a stable code; decides the gRPC code ([`Rejection::kind`]).
    pub reason: ReasonCode,
    /// For people: what is wrong and, where it helps, what to do.
    pub message: String,
    /// The `ErrorInfo` metadata: exactly the keys [`metadata_keys`] gives
    /// the reason, values as docs/spec.md section 6 writes them (integers
    /// in decimal, keys in standard base64, ids as in the event, roles as
    /// `Role` value names, `field` as a field path).
    pub metadata: BTreeMap<String, String>,
}

impl Rejection {
    /// A refusal for `reason`, without metadata (add it with [`Rejection::with`]).
    pub fn new(reason: ReasonCode, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
            metadata: BTreeMap::new(),
        }
    }

    /// A refusal about one field (the reasons whose metadata is `field`):
    /// `field` is its path from the message checked (`observation.location.point`).
    pub fn field(reason: ReasonCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(reason, message).with("field", field.into())
    }

    /// The same refusal with one more metadata entry.
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.metadata.insert(key.to_string(), value.to_string());
        self
    }

    /// The class, and so the gRPC code, of this refusal: derived from the reason.
    pub fn kind(&self) -> RejectionKind {
        RejectionKind::of(self.reason)
    }

    /// The reason as `ErrorInfo.reason` spells it (`NONCE_REUSED`).
    pub fn reason_name(&self) -> &'static str {
        reason_name(self.reason)
    }

    /// Whether the metadata has exactly the keys the spec gives the reason
    /// (the conditional ones may be absent); the offending key if not.
    pub fn check_metadata(&self) -> Result<(), String> {
        let keys = metadata_keys(self.reason);
        if let Some(missing) = keys
            .always
            .iter()
            .find(|key| !self.metadata.contains_key(**key))
        {
            return Err(format!("{} lacks metadata {missing:?}", self.reason_name()));
        }
        if let Some(extra) = self.metadata.keys().find(|key| {
            !keys.always.contains(&key.as_str()) && !keys.conditional.contains(&key.as_str())
        }) {
            return Err(format!(
                "{} carries metadata {extra:?} the spec does not give it",
                self.reason_name()
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_drop_the_prefix_and_come_back() {
        assert_eq!(reason_name(ReasonCode::NonceReused), "NONCE_REUSED");
        assert_eq!(
            reason_from_name("NONCE_REUSED"),
            Some(ReasonCode::NonceReused)
        );
        assert_eq!(reason_from_name("UNSPECIFIED"), None);
        assert_eq!(reason_from_name("NO_SUCH_REASON"), None);
        let mut value = 1;
        while let Ok(reason) = ReasonCode::try_from(value) {
            assert_eq!(reason_from_name(reason_name(reason)), Some(reason));
            assert_ne!(RejectionKind::of(reason), RejectionKind::Unknown);
            value += 1;
        }
    }

    #[test]
    fn metadata_is_checked_against_the_reason() {
        let refused = Rejection::new(ReasonCode::NonceReused, "m").with("author", "a");
        assert!(refused.check_metadata().is_err());
        assert!(refused.clone().with("seq", 3).check_metadata().is_ok());
        assert!(refused
            .with("seq", 3)
            .with("field", "x")
            .check_metadata()
            .is_err());
        let outside = Rejection::new(ReasonCode::OutsideZone, "m").with("commitment_id", "c");
        assert!(outside.check_metadata().is_ok());
        assert!(outside.with("zone_id", "z").check_metadata().is_ok());
    }
}
