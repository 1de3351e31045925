//! From the files `submit` is given to signed events, idempotently.
//!
//! The rule (README, "Submitting twice counts once"): a bare event that
//! leaves out its `nonce` gets one derived from its author and the event as
//! written ([`report_nonce`]), so the same report submitted again carries the
//! same `(author, nonce)`, which names one entry of the ledger forever. When
//! `createdAt` is left out too, it is filled in from the clock, so a second
//! run signs different bytes: the ledger answers those with `NONCE_REUSED`
//! naming the earlier entry, and [`earlier_submission`] fetches that entry's
//! exact signed bytes, whose resubmission returns the original receipt
//! (same seq). With `--outbox`, the bytes are signed once and kept, so a
//! resend is identical from the start.
//!
//! The nonce is derived from what the author wrote before anything is
//! filled in, so a field filled from the ledger or the clock never changes
//! it (a time written relative to now, `now-5m`, counts as its expression:
//! see [`crate::relative_time`]); it hashes the author's party id, not a key, so a key rotated between
//! two tries does not make a report count twice.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use ed25519_dalek::SigningKey;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::event_json::{event_from_json, json_values};
use crate::keyfile::KeyFile;
use crate::relative_time::{self, RelativeTime};
use crate::signed_file::SignedEventFile;
use ceasefire_core::leaf::Leaf;
use ceasefire_core::rules::decode_event;
use ceasefire_grpc::client::{self, now_timestamp};
use ceasefire_grpc::proto::{
    ledger_client::LedgerClient, Event, GetEntriesRequest, ReasonCode, Signature, SignedEvent,
};

/// Bytes of a derived nonce (the ledger takes 8 to 64; 16 bytes of a
/// SHA-256 leave collisions out of practical reach).
const REPORT_NONCE_BYTES: usize = 16;

/// One event of the input, as read.
pub struct InputEvent {
    /// How messages name it: "event N" for a single file, "FILE event N"
    /// for several.
    pub label: String,
    /// Where it came from ("FILE event N"), recorded in an outbox.
    pub source: String,
    pub value: serde_json::Value,
}

/// Reads every file (`-` for stdin): one JSON event each, or NDJSON.
pub fn read_inputs(files: &[PathBuf]) -> anyhow::Result<Vec<InputEvent>> {
    let mut inputs = Vec::new();
    for path in files {
        let values = if files.len() > 1 {
            read_values(path).with_context(|| format!("{}", path.display()))?
        } else {
            read_values(path)?
        };
        let name = if path.as_os_str() == "-" {
            "stdin".to_string()
        } else {
            path.display().to_string()
        };
        for (index, value) in values.into_iter().enumerate() {
            let source = format!("{name} event {}", index + 1);
            let label = if files.len() > 1 {
                source.clone()
            } else {
                format!("event {}", index + 1)
            };
            inputs.push(InputEvent {
                label,
                source,
                value,
            });
        }
    }
    Ok(inputs)
}

/// Splits one file into JSON values: one object, or one per line.
fn read_values(path: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    let values = json_values(&text)?;
    if values.is_empty() {
        bail!("{} holds no events", path.display());
    }
    Ok(values)
}

/// An input made ready to sign or send.
pub enum Prepared {
    /// A signed-event file: sent as it is.
    Signed(SignedEventFile),
    /// A bare event with its header complete but for `createdAt` when the
    /// file leaves it out (see [`sign_bare`]).
    Bare {
        event: Event,
        /// Whether submit derived the nonce (see [`earlier_submission`]).
        nonce_derived: bool,
    },
}

/// Reads `input` as a signed-event file or completes a bare event's header:
/// `agreementId` (from `agreement_id`, which the caller reads from the
/// genesis only if needed: see [`needs_agreement_id`]), `author` (the first
/// key's party) and the derived nonce.
pub fn prepare(
    input: &InputEvent,
    keys: &[KeyFile],
    agreement_id: Option<&str>,
) -> anyhow::Result<Prepared> {
    let label = &input.label;
    if SignedEventFile::is_signed_event_json(&input.value) {
        return Ok(Prepared::Signed(
            SignedEventFile::from_json(input.value.clone()).with_context(|| label.clone())?,
        ));
    }
    if keys.is_empty() {
        bail!("{label} is a bare event: give --key to sign it");
    }
    let resolved = relative_time::resolve(&input.value, &now_timestamp())
        .with_context(|| format!("{label} is not a valid event"))?;
    let mut event = event_from_json(&resolved.event.to_string())
        .with_context(|| format!("{label} is not a valid event"))?;
    // What the nonce derives from: the event before anything is filled in,
    // its relative times left out (they count by their expressions).
    let as_written = if resolved.relative_times.is_empty() {
        event.encode_to_vec()
    } else {
        event_from_json(&resolved.as_written.to_string())
            .with_context(|| format!("{label} is not a valid event"))?
            .encode_to_vec()
    };
    if event.agreement_id.is_empty() {
        event.agreement_id = agreement_id
            .ok_or_else(|| anyhow!("{label} leaves out agreementId and the ledger is unknown"))?
            .to_string();
    }
    if event.author.is_empty() {
        event.author = keys[0]
            .party_id
            .clone()
            .ok_or_else(|| anyhow!("{label} has no author and the key file names no party"))?;
    }
    let nonce_derived = event.nonce.is_empty();
    if nonce_derived {
        event.nonce = report_nonce(&event.author, &as_written, &resolved.relative_times);
    }
    Ok(Prepared::Bare {
        event,
        nonce_derived,
    })
}

/// Whether `input` is a bare event that leaves out `agreementId` (then
/// signing it needs the ledger's genesis).
pub fn needs_agreement_id(input: &InputEvent) -> bool {
    !SignedEventFile::is_signed_event_json(&input.value)
        && input
            .value
            .get("agreementId")
            .or_else(|| input.value.get("agreement_id"))
            .and_then(|id| id.as_str())
            .is_none_or(str::is_empty)
}

/// The nonce of a report that leaves it out: SHA-256, domain-separated, of
/// the author and the event's encoding as written (no nonce, no
/// `createdAt` unless the file gives one, no relative time), then, if the
/// event has relative times, each one's path and expression; cut to
/// [`REPORT_NONCE_BYTES`]. An event without relative times hashes exactly
/// as before they existed, so its nonce never changed.
pub fn report_nonce(
    author: &str,
    event_as_written: &[u8],
    relative_times: &[RelativeTime],
) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(b"ceasefire-ledger/submit/report-nonce/v1\0");
    hash.update((author.len() as u64).to_be_bytes());
    hash.update(author.as_bytes());
    hash.update(event_as_written);
    if !relative_times.is_empty() {
        hash.update(b"\0relative-times\0");
        for relative in relative_times {
            for part in [&relative.path, &relative.expression] {
                hash.update((part.len() as u64).to_be_bytes());
                hash.update(part.as_bytes());
            }
        }
    }
    hash.finalize()[..REPORT_NONCE_BYTES].to_vec()
}

/// Signs a completed bare event with every key, filling in `createdAt`
/// (now) if the file left it out.
pub fn sign_bare(mut event: Event, keys: &[KeyFile]) -> SignedEventFile {
    event.created_at.get_or_insert_with(now_timestamp);
    let signing_keys: Vec<&SigningKey> = keys.iter().map(|file| &file.key).collect();
    let signed = client::sign(&event, &signing_keys);
    SignedEventFile { event, signed }
}

/// After a `NONCE_REUSED` refusal of `event`, whose nonce submit derived:
/// the signed bytes of the earlier entry the refusal names, if it is by
/// the same author with the same nonce and agreement: that is this report,
/// sent before (with another `createdAt`), and resubmitting those bytes
/// returns its original receipt. `None` when the refusal is anything else.
pub async fn earlier_submission(
    client: &mut LedgerClient<tonic::transport::Channel>,
    status: &tonic::Status,
    event: &Event,
) -> Option<SignedEvent> {
    if ceasefire_grpc::errors::reason(status) != ReasonCode::NonceReused {
        return None;
    }
    let (_, metadata) = ceasefire_grpc::errors::error_info(status)?;
    let seq: u64 = metadata.get("seq")?.parse().ok()?;
    let mut stream = client
        .get_entries(GetEntriesRequest {
            start: seq,
            end: seq + 1,
        })
        .await
        .ok()?
        .into_inner();
    let entry = stream.message().await.ok()??;
    let leaf = Leaf::decode(&entry.leaf).ok()?;
    let earlier = decode_event(&leaf.payload).ok()?;
    let same_report = earlier.author == event.author
        && earlier.nonce == event.nonce
        && earlier.agreement_id == event.agreement_id;
    same_report.then(|| SignedEvent {
        payload: leaf.payload.clone(),
        signatures: leaf
            .signatures
            .iter()
            .map(|signature| Signature {
                public_key: signature.public_key.to_vec(),
                signature: signature.signature.to_vec(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nonce_depends_on_author_and_content_only() {
        let event = |narrative: &str| {
            Event {
                author: String::new(),
                body: None,
                agreement_id: narrative.into(),
                ..Event::default()
            }
            .encode_to_vec()
        };
        let nonce = report_nonce("mission-a", &event("one"), &[]);
        assert_eq!(nonce.len(), REPORT_NONCE_BYTES);
        assert_eq!(nonce, report_nonce("mission-a", &event("one"), &[]));
        assert_ne!(nonce, report_nonce("mission-b", &event("one"), &[]));
        assert_ne!(nonce, report_nonce("mission-a", &event("two"), &[]));
        // The author's length is hashed: no ambiguity at the seam.
        assert_ne!(
            report_nonce("ab", b"c", &[]),
            report_nonce("a", b"bc", &[]),
            "author and event must not run together"
        );
        // An event without relative times keeps the nonce it always had
        // (a known answer: reports sent before relative times existed must
        // still count once).
        let known: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&"f5ad4c7b2b1b133ae9b2d7d4434526d4"[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(nonce, known);
        // Relative times count by their expressions.
        let relative = |expression: &str| RelativeTime {
            path: "observation.observedUntil".into(),
            expression: expression.into(),
        };
        let with_now = report_nonce("mission-a", &event("one"), &[relative("now")]);
        assert_ne!(with_now, nonce);
        assert_eq!(
            with_now,
            report_nonce("mission-a", &event("one"), &[relative("now")])
        );
        assert_ne!(
            with_now,
            report_nonce("mission-a", &event("one"), &[relative("now-5m")])
        );
    }
}
