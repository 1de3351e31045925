//! Why an event is refused, in terms a caller can match on.
//!
//! The core knows nothing of gRPC; each [`RejectionKind`] corresponds to
//! exactly one gRPC status code (the server maps them one to one), and the
//! message says what is wrong and, where it helps, what to do.

use std::fmt;

/// The class of a refusal; one gRPC status code each (docs/spec.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionKind {
    /// Undecodable, missing field, out of range, unknown reference, oversize.
    InvalidArgument,
    /// A signature does not verify.
    Unauthenticated,
    /// Key not registered, revoked, wrong role, below threshold.
    PermissionDenied,
    /// Replayed nonce with different bytes.
    AlreadyExists,
    /// The event belongs to another agreement, or the ledger is not ready for it.
    FailedPrecondition,
}

/// A refused event: nothing of it was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub message: String,
}

impl Rejection {
    pub fn new(kind: RejectionKind, message: impl Into<String>) -> Self {
        Rejection {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(RejectionKind::InvalidArgument, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(RejectionKind::Unauthenticated, message)
    }
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(RejectionKind::PermissionDenied, message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(RejectionKind::AlreadyExists, message)
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(RejectionKind::FailedPrecondition, message)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rejection {}
