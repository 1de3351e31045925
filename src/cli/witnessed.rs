//! Waiting for a witnessed checkpoint that covers receipts (`submit
//! --wait-witnessed`, and the demo): the checkpoint a quorum of the log's
//! witnesses cosigned (docs/spec.md section 10), its signatures and proofs
//! checked here rather than taken on the server's word.
//!
//! What is checked: the note opens with the operator's key and carries the
//! quorum of valid cosignatures under the policy the server states
//! (`Checkpoint.witness_policy`). That policy is the server's claim: a
//! server naming witnesses of its own is caught by `verify`, which holds
//! the policy to the log's own SetWitnessPolicy event (or a verifier's
//! file), not here. Its tree covers the last entry, which an
//! inclusion proof shows is in it; and every receipt's checkpoint is
//! consistent with it, so the trees the receipts were proved in are the
//! witnessed one or a prefix or extension of it.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use ceasefire_core::checkpoint::{open_checkpoint, CheckpointBody, NoteVerifier};
use ceasefire_core::merkle::{verify_consistency, verify_inclusion, Hash};
use ceasefire_core::witness_policy::{QuorumVerdict, WitnessPolicy};
use ceasefire_grpc::client::proof_hashes;
use ceasefire_grpc::proto::{
    ledger_client::LedgerClient, Checkpoint, GetCheckpointRequest, GetConsistencyProofRequest,
    GetInclusionProofRequest, ReasonCode, Receipt,
};
use tokio::time::Instant;
use tonic::transport::Channel;

/// Pause between two asks when the server answers NOT_YET_WITNESSED before
/// the deadline (its own wait is capped at 60 s, or it does not wait at all):
/// enough not to spin, short beside a witnessing round.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Bound on each question asked to explain a timeout. The server answers at
/// once, except that with no witnessed checkpoint at all it waits for one
/// until the deadline: a second is plenty on any network.
const STATE_QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// A witnessed checkpoint covering the receipts, checked.
pub struct Witnessed {
    /// As the server sent it (note, witnesses' states, policy text).
    pub checkpoint: Checkpoint,
    pub body: CheckpointBody,
    /// Who cosigned it, who did not, and whether that makes the quorum.
    pub verdict: QuorumVerdict,
    pub policy: WitnessPolicy,
}

impl Witnessed {
    /// The cosigners' names, in policy order.
    pub fn cosigners(&self) -> Vec<&str> {
        self.verdict
            .cosigned
            .iter()
            .map(|cosigned| cosigned.name.as_str())
            .collect()
    }

    /// The policy's quorum in words, e.g. "quorum signatories: 2 of 3".
    pub fn quorum(&self) -> String {
        match self
            .policy
            .groups
            .iter()
            .find(|group| group.name == self.policy.quorum)
        {
            Some(group) => format!(
                "quorum {}: {} of {}",
                group.name,
                group.threshold,
                group.members.len()
            ),
            None => format!("quorum {}", self.policy.quorum),
        }
    }

    /// One JSON line: the checkpoint, its cosigners and the missing witnesses.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "witnessed": {
                "treeSize": self.body.tree_size.to_string(),
                "rootHash": ceasefire_core::key_text(self.body.root_hash),
                "cosigners": self.cosigners(),
                "missing": self.verdict.missing,
                "quorum": self.quorum(),
                "note": self.checkpoint.note,
            }
        })
    }
}

/// Waits up to `timeout` for a witnessed checkpoint covering every entry of
/// `receipts` (each already checked against its own checkpoint), then
/// checks it. `operator` verifies the log's checkpoints.
pub async fn wait_for_witnessed(
    client: &mut LedgerClient<Channel>,
    operator: &NoteVerifier,
    receipts: &[Receipt],
    timeout: Duration,
) -> anyhow::Result<Witnessed> {
    let last = receipts
        .iter()
        .max_by_key(|receipt| receipt.seq)
        .ok_or_else(|| anyhow!("no receipt to wait for"))?;
    let checkpoint = ask_until_covered(client, last.seq, timeout).await?;
    let policy = WitnessPolicy::parse_text(&checkpoint.witness_policy).map_err(|error| {
        anyhow!("the server's witnessed checkpoint came with an unreadable witness policy: {error}")
    })?;
    let (body, verdict) = policy
        .judge(&checkpoint.note, operator)
        .map_err(|error| anyhow!("the witnessed checkpoint does not verify: {error}"))?;
    if !verdict.satisfied {
        bail!(
            "the server's witnessed checkpoint (size {}) lacks its quorum ({}): cosigned by {}; missing {}",
            body.tree_size,
            policy.quorum,
            names_or_none(verdict.cosigned.iter().map(|c| c.name.as_str())),
            names_or_none(verdict.missing.iter().map(String::as_str)),
        );
    }
    if body.tree_size <= last.seq {
        bail!(
            "the server's witnessed checkpoint has {} entries: it does not cover entry {}",
            body.tree_size,
            last.seq
        );
    }
    let witnessed = Witnessed {
        checkpoint,
        body,
        verdict,
        policy,
    };
    check_inclusion(client, last, &witnessed.body).await?;
    check_consistency(client, operator, receipts, &witnessed.body).await?;
    Ok(witnessed)
}

/// Asks for a witnessed checkpoint of more than `seq` entries until one
/// comes or `timeout` passes. The server waits for it within each call.
async fn ask_until_covered(
    client: &mut LedgerClient<Channel>,
    seq: u64,
    timeout: Duration,
) -> anyhow::Result<Checkpoint> {
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut request = tonic::Request::new(GetCheckpointRequest {
            witnessed: true,
            min_tree_size: seq + 1,
        });
        request.set_timeout(remaining.max(Duration::from_millis(1)));
        let status = match client.get_checkpoint(request).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) => status,
        };
        let reason = ceasefire_grpc::errors::reason(&status);
        if reason == ReasonCode::NoWitnessPolicy {
            bail!(
                "the ledger has no witness policy, so no checkpoint of it is ever witnessed \
                 (the signatories name the witnesses with a SetWitnessPolicy event)"
            );
        }
        let still_waiting = reason == ReasonCode::NotYetWitnessed
            || matches!(
                status.code(),
                tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
            );
        if !still_waiting {
            bail!(
                "cannot get a witnessed checkpoint: {}",
                ceasefire_grpc::errors::describe(&status)
            );
        }
        if Instant::now() >= deadline {
            return Err(timed_out(client, seq, timeout).await);
        }
        tokio::time::sleep(RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
}

/// The timeout's one line: how far witnessing got, and each witness's
/// state as the server reports it.
async fn timed_out(
    client: &mut LedgerClient<Channel>,
    seq: u64,
    timeout: Duration,
) -> anyhow::Error {
    let mut request = tonic::Request::new(GetCheckpointRequest {
        witnessed: true,
        min_tree_size: 0,
    });
    request.set_timeout(STATE_QUERY_TIMEOUT);
    let reached = match client.get_checkpoint(request).await {
        Ok(witnessed) => format!(
            "the latest witnessed checkpoint has {} entries",
            witnessed.into_inner().tree_size
        ),
        Err(_) => "no checkpoint has been witnessed yet".to_string(),
    };
    let mut request = tonic::Request::new(GetCheckpointRequest::default());
    request.set_timeout(STATE_QUERY_TIMEOUT);
    let witnesses = match client.get_checkpoint(request).await {
        Ok(latest) => latest
            .into_inner()
            .witnesses
            .iter()
            .map(|witness| {
                let state = if witness.last_error.is_empty() {
                    "ok".to_string()
                } else {
                    format!("failing: {}", witness.last_error)
                };
                format!(
                    "{} (cosigned size {}, {state})",
                    witness.name, witness.cosigned_size
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(status) => format!("unknown ({})", ceasefire_grpc::errors::describe(&status)),
    };
    anyhow!(
        "no witnessed checkpoint covers entry {seq} after {} s: {reached}; witnesses: {witnesses}",
        timeout.as_secs_f64()
    )
}

/// The last entry is in the witnessed tree.
async fn check_inclusion(
    client: &mut LedgerClient<Channel>,
    last: &Receipt,
    witnessed: &CheckpointBody,
) -> anyhow::Result<()> {
    let proof = client
        .get_inclusion_proof(GetInclusionProofRequest {
            seq: last.seq,
            tree_size: witnessed.tree_size,
        })
        .await
        .map_err(|status| {
            anyhow!(
                "cannot get the inclusion proof of entry {} in the witnessed tree: {}",
                last.seq,
                ceasefire_grpc::errors::describe(&status)
            )
        })?
        .into_inner();
    let leaf_hash: Hash = last
        .leaf_hash
        .as_slice()
        .try_into()
        .map_err(|_| anyhow!("the receipt's leaf hash is not 32 bytes"))?;
    verify_inclusion(
        &leaf_hash,
        last.seq,
        witnessed.tree_size,
        &proof_hashes(&proof.hashes)?,
        &witnessed.root_hash,
    )
    .with_context(|| {
        format!(
            "entry {} is not in the witnessed tree of size {}",
            last.seq, witnessed.tree_size
        )
    })
}

/// Each receipt's checkpoint (each distinct one once) is consistent with
/// the witnessed one, in whichever order their sizes come.
async fn check_consistency(
    client: &mut LedgerClient<Channel>,
    operator: &NoteVerifier,
    receipts: &[Receipt],
    witnessed: &CheckpointBody,
) -> anyhow::Result<()> {
    let mut heads = BTreeSet::new();
    for receipt in receipts {
        let note = &receipt
            .checkpoint
            .as_ref()
            .ok_or_else(|| anyhow!("the receipt of entry {} has no checkpoint", receipt.seq))?
            .note;
        let body = open_checkpoint(note, operator)?;
        heads.insert((body.tree_size, body.root_hash));
    }
    for (size, root) in heads {
        let (old, new) = if size <= witnessed.tree_size {
            ((size, root), (witnessed.tree_size, witnessed.root_hash))
        } else {
            ((witnessed.tree_size, witnessed.root_hash), (size, root))
        };
        let proof = if old.0 == new.0 {
            Vec::new()
        } else {
            client
                .get_consistency_proof(GetConsistencyProofRequest {
                    old_size: old.0,
                    new_size: new.0,
                })
                .await
                .map_err(|status| {
                    anyhow!(
                        "cannot get the consistency proof from size {} to {}: {}",
                        old.0,
                        new.0,
                        ceasefire_grpc::errors::describe(&status)
                    )
                })?
                .into_inner()
                .hashes
        };
        verify_consistency(old.0, new.0, &old.1, &new.1, &proof_hashes(&proof)?).with_context(|| {
            format!(
                "the receipt's checkpoint of size {size} is not consistent with the witnessed one of size {}",
                witnessed.tree_size
            )
        })?;
    }
    Ok(())
}

fn names_or_none<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
