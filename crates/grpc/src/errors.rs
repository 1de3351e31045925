//! Reading a refusal's reason from the wire (docs/spec.md section 6,
//! "Error details"): a status carries it in a `google.rpc.ErrorInfo` of
//! domain `ceasefire.v1` in its `grpc-status-details-bin`; a SubmitStream
//! [`Refusal`] carries the same reason and metadata in its own fields.

use std::collections::HashMap;

use ceasefire_core::rejection::{reason_from_name, ERROR_DOMAIN};
use tonic::Status;
use tonic_types::StatusExt;

use crate::proto::{ReasonCode, Refusal};

/// The `ErrorInfo` of `status` in this ledger's domain: its reason (the
/// name, as sent: a later server may send one this version does not know)
/// and metadata. `None` for a status without one (the gRPC framework's,
/// or an older server's).
pub fn error_info(status: &Status) -> Option<(String, HashMap<String, String>)> {
    status
        .get_error_details()
        .error_info()
        .filter(|info| info.domain == ERROR_DOMAIN)
        .map(|info| (info.reason.clone(), info.metadata.clone()))
}

/// The reason `status` names; `Unspecified` when it names none this version
/// knows (then only its code says what happened).
pub fn reason(status: &Status) -> ReasonCode {
    error_info(status)
        .and_then(|(reason, _)| reason_from_name(&reason))
        .unwrap_or(ReasonCode::Unspecified)
}

/// What SubmitStream answers for an event Submit would have refused with
/// `status`: its code, message, reason and metadata.
pub fn refusal(status: &Status) -> Refusal {
    let (reason, metadata) = error_info(status).unwrap_or_default();
    Refusal {
        code: status.code() as i32,
        message: status.message().to_string(),
        reason: reason_from_name(&reason).unwrap_or(ReasonCode::Unspecified) as i32,
        metadata,
    }
}

/// One line for people: the code, the reason when the status names one,
/// and the message (`InvalidArgument NON_CANONICAL_PAYLOAD: payload is ...`).
pub fn describe(status: &Status) -> String {
    match error_info(status) {
        Some((reason, _)) => format!("{:?} {reason}: {}", status.code(), status.message()),
        None => format!("{:?}: {}", status.code(), status.message()),
    }
}

/// [`describe`] for a SubmitStream refusal.
pub fn describe_refusal(refusal: &Refusal) -> String {
    let code = tonic::Code::from(refusal.code);
    match ReasonCode::try_from(refusal.reason) {
        Ok(reason) if reason != ReasonCode::Unspecified => format!(
            "{code:?} {}: {}",
            ceasefire_core::rejection::reason_name(reason),
            refusal.message
        ),
        _ => format!("{code:?}: {}", refusal.message),
    }
}
