//! The warning `submit` gives when an accepted observation will not count
//! in its commitment's status: observed before the commitment is in force
//! (`observed_until < effective_from`), or already out of its window when
//! received (`observed_until + window < received_at`), the two conditions of
//! docs/spec.md section 9.4 under which the fold does not count it.
//!
//! The commitment's terms come from the ledger (`Compliance/GetCommitment`:
//! its current definition), asked once per commitment per run and only for
//! an observation accepted. A warning is advice: an observation whose terms
//! cannot be read gets none.

use std::collections::HashMap;

use ceasefire_core::rules::{micros_timestamp, timestamp_micros};
use ceasefire_grpc::proto::{
    compliance_client::ComplianceClient, event::Body, Event, GetCommitmentRequest,
};
use tonic::transport::Channel;

/// Longest a run waits for a commitment's terms.
const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What decides whether an observation counts: a commitment's window and
/// when it came into force, as its current definition says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitmentTerms {
    pub window_seconds: u64,
    pub effective_from_micros: i64,
}

/// The terms of the commitments a run's observations name, asked on first need.
pub struct Commitments {
    client: ComplianceClient<Channel>,
    /// By commitment id; `None` when the ledger did not say.
    terms: HashMap<String, Option<CommitmentTerms>>,
}

impl Commitments {
    pub fn new(client: ComplianceClient<Channel>) -> Commitments {
        Commitments {
            client,
            terms: HashMap::new(),
        }
    }

    /// The warning for `event`, accepted (or checked) with log time
    /// `received_at_micros`, if it is an observation that will not count.
    pub async fn warning(&mut self, event: &Event, received_at_micros: i64) -> Option<String> {
        let Some(Body::Observation(observation)) = &event.body else {
            return None;
        };
        let commitment_id = &observation.commitment_id;
        if !self.terms.contains_key(commitment_id) {
            let terms = self.read_terms(commitment_id).await;
            self.terms.insert(commitment_id.clone(), terms);
        }
        let terms = self.terms.get(commitment_id)?.as_ref()?;
        let observed_until =
            timestamp_micros("observed_until", &observation.observed_until).ok()?;
        why_not_counted(commitment_id, terms, observed_until, received_at_micros)
    }

    /// Asks the ledger, for at most [`ASK_TIMEOUT`]: a warning never holds
    /// a submission up on a bad link.
    async fn read_terms(&mut self, commitment_id: &str) -> Option<CommitmentTerms> {
        let asked = self.client.get_commitment(GetCommitmentRequest {
            commitment_id: commitment_id.to_string(),
        });
        let definition = tokio::time::timeout(ASK_TIMEOUT, asked)
            .await
            .ok()?
            .ok()?
            .into_inner()
            .definition?;
        Some(CommitmentTerms {
            window_seconds: definition.window_seconds,
            effective_from_micros: timestamp_micros("effective_from", &definition.effective_from)
                .ok()?,
        })
    }
}

/// Why an observation observed until `observed_until` and received at
/// `received_at` does not count under `terms` (section 9.4, `count`).
pub fn why_not_counted(
    commitment_id: &str,
    terms: &CommitmentTerms,
    observed_until: i64,
    received_at: i64,
) -> Option<String> {
    let time = |micros: i64| micros_timestamp(micros).to_string();
    if observed_until < terms.effective_from_micros {
        return Some(format!(
            "it will not count in the status of commitment {commitment_id}: observed until {}, \
             before the commitment is in force (from {})",
            time(observed_until),
            time(terms.effective_from_micros)
        ));
    }
    let window = i64::try_from(terms.window_seconds)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    let counts_until = observed_until.saturating_add(window);
    if counts_until < received_at {
        return Some(format!(
            "it will not count in the status of commitment {commitment_id}: observed until {}, \
             outside its window of {} s (it would count until {}; the ledger's time is {}); \
             give a recent observedUntil, or one relative to now (\"now-5m\")",
            time(observed_until),
            terms.window_seconds,
            time(counts_until),
            time(received_at)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn counts_inside_the_window_and_once_in_force_only() {
        let terms = CommitmentTerms {
            window_seconds: 24 * 3600,
            effective_from_micros: 100 * HOUR,
        };
        assert_eq!(why_not_counted("c", &terms, 110 * HOUR, 120 * HOUR), None);
        // Inclusive: exactly at the window's end still counts.
        assert_eq!(why_not_counted("c", &terms, 110 * HOUR, 134 * HOUR), None);
        let late = why_not_counted("c", &terms, 110 * HOUR, 134 * HOUR + 1).unwrap();
        assert!(late.contains("commitment c") && late.contains("window of 86400 s"));
        let early = why_not_counted("c", &terms, 99 * HOUR, 100 * HOUR).unwrap();
        assert!(
            early.contains("before the commitment is in force"),
            "{early}"
        );
    }
}
