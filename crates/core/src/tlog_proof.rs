//! Receipts as evidence: C2SP `tlog-proof` v1 files (<https://c2sp.org/tlog-proof>)
//! holding one entry of our log, its index, its inclusion proof and the
//! checkpoint (with any cosignatures) it is proved against, and the checks
//! that make such a file stand on its own (docs/spec.md section 11).
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the leaf bytes (docs/spec.md section 3)>
//! index <seq>
//! <inclusion proof, one base64 SHA-256 hash a line, leaf's sibling first>
//!
//! <the checkpoint note, verbatim, its signature lines included>
//! ```
//!
//! The spec's `extra` line carries opaque data "necessary to reconstruct the
//! record hash"; ours is the whole leaf, so a receipt file is the entry and
//! its proof together and needs nothing else to check. It is not trusted for
//! being there: [`verify_receipt`] hashes it and proves that hash into the
//! signed tree.
//!
//! Invariants:
//! - [`TlogProof::parse`] accepts exactly the texts [`TlogProof::to_text`]
//!   writes (one text per proof: canonical decimal, canonical base64, `\n`
//!   line ends), and never panics on any input.
//! - [`verify_receipt`] opens the checkpoint with the log's key before it
//!   looks at the checkpoint's text, as signed-note requires, and answers a
//!   [`ReceiptError`] variant per check so a caller can say which one failed.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::checkpoint::{open_checkpoint, CheckpointBody, CheckpointError, NoteVerifier};
use crate::leaf::{Leaf, LeafError};
use crate::merkle::{verify_consistency, verify_inclusion, Hash, VerifyError};
use crate::proto::Event;
use crate::rules::decode_event;
use crate::signing::verify_all;
use crate::witness_policy::{QuorumVerdict, WitnessPolicy};

/// The first line of every tlog-proof v1 file.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The file extension the spec recommends (SHOULD) for stored proofs.
pub const TLOG_PROOF_EXTENSION: &str = "tlog-proof";

/// Most proof hashes we parse: an inclusion proof in a tree of up to 2^64
/// leaves has at most 64, so more can only be an attack or damage.
pub const MAX_PROOF_HASHES: usize = 64;

/// Largest file we agree to read: the largest note the checkpoint parser
/// takes, plus a base64 leaf (under 64 KiB of bytes, see `leaf.rs`) and a
/// full proof, with room to spare.
pub const MAX_TLOG_PROOF_BYTES: usize = crate::checkpoint::MAX_NOTE_BYTES + 128 * 1024;

/// Error messages quote what they found, never more than this many characters.
const EXCERPT_CHARS: usize = 48;

/// One tlog-proof file, parsed. It proves nothing until verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// The `extra` line's bytes; ours are the entry's leaf bytes.
    pub extra: Option<Vec<u8>>,
    /// The entry's zero-based index in the log: our `seq`.
    pub index: u64,
    /// RFC 9162 audit path from the leaf's sibling up to the root's child.
    pub inclusion_proof: Vec<Hash>,
    /// The checkpoint note, verbatim, ending in its last signature line's newline.
    pub checkpoint: String,
}

/// Why a text is not a tlog-proof v1 file. Lines count from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlogProofError {
    /// Longer than [`MAX_TLOG_PROOF_BYTES`].
    TooLarge { len: usize, max: usize },
    /// The first line is not `c2sp.org/tlog-proof@v1`.
    MissingHeader { found: String },
    /// The `extra` line's data is not canonical standard base64.
    MalformedExtra,
    /// No `index N` line where one must be.
    MissingIndex { line: usize, found: String },
    /// The index is not ASCII decimal without leading zeros, or overflows u64.
    NonCanonicalIndex { found: String },
    /// A proof line is not the canonical base64 of 32 bytes.
    MalformedProofHash { line: usize, found: String },
    /// More than [`MAX_PROOF_HASHES`] proof lines.
    TooManyProofHashes { max: usize },
    /// The file ends before the blank line and the checkpoint after it.
    MissingCheckpoint,
}

impl fmt::Display for TlogProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => {
                write!(f, "the file is {len} bytes, more than the {max}-byte limit")
            }
            Self::MissingHeader { found } => write!(
                f,
                "line 1 is {found:?}, not {TLOG_PROOF_HEADER:?}: not a tlog-proof v1 file"
            ),
            Self::MalformedExtra => {
                write!(f, "line 2: the extra data is not canonical standard base64")
            }
            Self::MissingIndex { line, found } => {
                write!(f, "line {line} is {found:?}, expected \"index <N>\"")
            }
            Self::NonCanonicalIndex { found } => write!(
                f,
                "index {found:?} is not a decimal u64 without sign or leading zeros"
            ),
            Self::MalformedProofHash { line, found } => write!(
                f,
                "line {line}: proof hash {found:?} is not the standard base64 of 32 bytes"
            ),
            Self::TooManyProofHashes { max } => {
                write!(f, "the inclusion proof has more than {max} hashes")
            }
            Self::MissingCheckpoint => write!(
                f,
                "the file ends before the blank line and the checkpoint that must follow the proof"
            ),
        }
    }
}

impl std::error::Error for TlogProofError {}

fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Canonical base64 only: decoding must give bytes that encode back to the
/// same text, so one proof has one file.
fn canonical_base64(text: &str) -> Option<Vec<u8>> {
    let bytes = BASE64.decode(text).ok()?;
    (BASE64.encode(&bytes) == text).then_some(bytes)
}

impl TlogProof {
    /// The file's text, exactly as the spec lays it out.
    pub fn to_text(&self) -> String {
        let mut text = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            text.push_str(&format!("extra {}\n", BASE64.encode(extra)));
        }
        text.push_str(&format!("index {}\n", self.index));
        for hash in &self.inclusion_proof {
            text.push_str(&BASE64.encode(hash));
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&self.checkpoint);
        text
    }

    /// Parses a file's text. The checkpoint is taken verbatim (everything
    /// after the blank line); its syntax and signatures are checked when it
    /// is opened with a key.
    pub fn parse(text: &str) -> Result<TlogProof, TlogProofError> {
        if text.len() > MAX_TLOG_PROOF_BYTES {
            return Err(TlogProofError::TooLarge {
                len: text.len(),
                max: MAX_TLOG_PROOF_BYTES,
            });
        }
        let mut lines = Lines {
            rest: text,
            number: 0,
        };
        let header = lines.next().unwrap_or(text);
        if header != TLOG_PROOF_HEADER {
            return Err(TlogProofError::MissingHeader {
                found: excerpt(header),
            });
        }
        let missing_index = |lines: &Lines| TlogProofError::MissingIndex {
            line: lines.number + 1,
            found: excerpt(lines.rest),
        };
        let mut line = lines.next().ok_or_else(|| missing_index(&lines))?;
        let mut extra = None;
        if let Some(data) = line.strip_prefix("extra ") {
            extra = Some(canonical_base64(data).ok_or(TlogProofError::MalformedExtra)?);
            line = lines.next().ok_or_else(|| missing_index(&lines))?;
        }
        let index_text =
            line.strip_prefix("index ")
                .ok_or_else(|| TlogProofError::MissingIndex {
                    line: lines.number,
                    found: excerpt(line),
                })?;
        let index =
            parse_canonical_u64(index_text).ok_or_else(|| TlogProofError::NonCanonicalIndex {
                found: excerpt(index_text),
            })?;
        let mut inclusion_proof = Vec::new();
        loop {
            let line = lines.next().ok_or(TlogProofError::MissingCheckpoint)?;
            if line.is_empty() {
                break;
            }
            if inclusion_proof.len() == MAX_PROOF_HASHES {
                return Err(TlogProofError::TooManyProofHashes {
                    max: MAX_PROOF_HASHES,
                });
            }
            let hash = canonical_base64(line)
                .and_then(|bytes| Hash::try_from(bytes).ok())
                .ok_or_else(|| TlogProofError::MalformedProofHash {
                    line: lines.number,
                    found: excerpt(line),
                })?;
            inclusion_proof.push(hash);
        }
        let rest = lines.rest;
        if rest.is_empty() {
            return Err(TlogProofError::MissingCheckpoint);
        }
        Ok(TlogProof {
            extra,
            index,
            inclusion_proof,
            checkpoint: rest.to_owned(),
        })
    }
}

/// The lines before the checkpoint, each of which must end in a newline.
struct Lines<'a> {
    /// What is left of the text after the lines read so far.
    rest: &'a str,
    /// The number (from 1) of the last line read.
    number: usize,
}

impl<'a> Lines<'a> {
    /// The next line without its newline; None when no newline is left.
    fn next(&mut self) -> Option<&'a str> {
        let (line, after) = self.rest.split_once('\n')?;
        self.rest = after;
        self.number += 1;
        Some(line)
    }
}

/// ASCII decimal, no sign, no leading zeros (except "0"), fits in a u64.
fn parse_canonical_u64(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical {
        text.parse().ok()
    } else {
        None
    }
}

/// A receipt whose every check passed: what it proves.
#[derive(Clone, Debug)]
pub struct VerifiedReceipt {
    pub leaf: Leaf,
    pub leaf_hash: Hash,
    /// The event the leaf carries, decoded from its (canonical) payload.
    pub event: Event,
    /// The checkpoint the entry is proved in, opened with the log's key.
    pub checkpoint: CheckpointBody,
    /// The cosignatures judged under the policy the verifier gave, if any.
    pub witnessed: Option<QuorumVerdict>,
}

/// Why a receipt does not verify: one variant per check, in the order they run.
#[derive(Clone, Debug)]
pub enum ReceiptError {
    /// The file is not a tlog-proof v1 file.
    Format(TlogProofError),
    /// The checkpoint does not open with the log's key: the operator's
    /// signature is missing or bad, the origin is not the log's, or the note
    /// is malformed.
    Checkpoint(CheckpointError),
    /// The file has no `extra` line, so no entry to prove.
    NoEntry,
    /// The `extra` data is not a valid leaf.
    Leaf(LeafError),
    /// The `index` line and the leaf's own seq disagree.
    IndexMismatch { index: u64, leaf_seq: u64 },
    /// The inclusion proof does not put this leaf at this index in the
    /// checkpoint's tree.
    Inclusion { leaf_hash: Hash, error: VerifyError },
    /// A signature in the leaf does not verify over its payload.
    AuthorSignature(String),
    /// The leaf's payload is not a valid event.
    Payload(String),
    /// The checkpoint lacks the quorum of the verifier's witness policy.
    NotWitnessed {
        quorum: String,
        cosigned: Vec<String>,
        missing: Vec<String>,
    },
    /// (Refresh) the newer checkpoint is not consistent with the receipt's.
    Inconsistent {
        old_size: u64,
        new_size: u64,
        error: VerifyError,
    },
}

impl ReceiptError {
    /// The number of the check of docs/spec.md section 11 that failed (1 to
    /// 8, in the order they run); 9 for a refresh's consistency proof.
    /// Language-neutral, so the receipt vectors (`testdata/receipts/`) can
    /// state the verdict any implementation must reach.
    pub fn check(&self) -> u8 {
        match self {
            Self::Format(_) => 1,
            Self::Checkpoint(_) => 2,
            Self::NoEntry | Self::Leaf(_) => 3,
            Self::IndexMismatch { .. } => 4,
            Self::Inclusion { .. } => 5,
            Self::AuthorSignature(_) => 6,
            Self::Payload(_) => 7,
            Self::NotWitnessed { .. } => 8,
            Self::Inconsistent { .. } => 9,
        }
    }
}

impl fmt::Display for ReceiptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Format(error) => write!(f, "not a receipt file: {error}"),
            Self::Checkpoint(error) => write!(
                f,
                "the checkpoint's operator signature does not verify: {error}"
            ),
            Self::NoEntry => write!(
                f,
                "the receipt carries no entry (no \"extra\" line with the leaf)"
            ),
            Self::Leaf(error) => write!(f, "the entry (extra) is not a valid leaf: {error}"),
            Self::IndexMismatch { index, leaf_seq } => write!(
                f,
                "the index is {index} but the leaf's seq is {leaf_seq}: the index or the leaf was changed"
            ),
            Self::Inclusion { leaf_hash, error } => write!(
                f,
                "the inclusion proof does not prove the entry (leaf hash {}) in the checkpoint's tree: {error}",
                crate::key_text(leaf_hash)
            ),
            Self::AuthorSignature(message) => {
                write!(f, "the author's signature in the leaf does not verify: {message}")
            }
            Self::Payload(message) => write!(f, "the leaf's payload is not a valid event: {message}"),
            Self::NotWitnessed {
                quorum,
                cosigned,
                missing,
            } => write!(
                f,
                "the checkpoint is not witnessed: quorum {quorum} not met (cosigned by {}; missing {})",
                names_or_none(cosigned),
                names_or_none(missing)
            ),
            Self::Inconsistent {
                old_size,
                new_size,
                error,
            } => write!(
                f,
                "the checkpoint of size {new_size} is not consistent with the receipt's of size {old_size}: {error}"
            ),
        }
    }
}

impl std::error::Error for ReceiptError {}

fn names_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Every check a receipt file stands on, with nothing but the log's key
/// (`log`: name = origin, the operator's key) and, optionally, a witness
/// policy whose quorum must have cosigned the checkpoint. In order:
/// the checkpoint's operator signature (and cosignatures under `policy`),
/// the leaf's syntax, index = seq, the inclusion of the leaf hash at that
/// index under the checkpoint's root, every signature in the leaf over its
/// payload, the payload as a canonical event, and finally the quorum.
///
/// What it does not check: that the signers were the author's registered
/// keys, or any other rule of the log, which need the entries before this
/// one; an audit of the log (docs/spec.md section 7) does.
pub fn verify_receipt(
    proof: &TlogProof,
    log: &NoteVerifier,
    policy: Option<&WitnessPolicy>,
) -> Result<VerifiedReceipt, ReceiptError> {
    let (checkpoint, witnessed) = open_receipt_checkpoint(&proof.checkpoint, log, policy)?;
    let leaf_bytes = proof.extra.as_deref().ok_or(ReceiptError::NoEntry)?;
    let leaf = Leaf::decode(leaf_bytes).map_err(ReceiptError::Leaf)?;
    if leaf.seq != proof.index {
        return Err(ReceiptError::IndexMismatch {
            index: proof.index,
            leaf_seq: leaf.seq,
        });
    }
    let leaf_hash = leaf.leaf_hash();
    verify_inclusion(
        &leaf_hash,
        proof.index,
        checkpoint.tree_size,
        &proof.inclusion_proof,
        &checkpoint.root_hash,
    )
    .map_err(|error| ReceiptError::Inclusion { leaf_hash, error })?;
    verify_all(&leaf.payload, &leaf.signatures)
        .map_err(|rejection| ReceiptError::AuthorSignature(rejection.to_string()))?;
    let event = decode_event(&leaf.payload)
        .map_err(|rejection| ReceiptError::Payload(rejection.to_string()))?;
    if let (Some(policy), Some(verdict)) = (policy, &witnessed) {
        if !verdict.satisfied {
            return Err(ReceiptError::NotWitnessed {
                quorum: policy.quorum.clone(),
                cosigned: verdict.cosigned.iter().map(|c| c.name.clone()).collect(),
                missing: verdict.missing.clone(),
            });
        }
    }
    Ok(VerifiedReceipt {
        leaf,
        leaf_hash,
        event,
        checkpoint,
        witnessed,
    })
}

/// Opens a checkpoint with the log's key, judging its cosignatures when a
/// policy is given (a cosignature by a policy witness that does not verify
/// spoils the note, as in docs/spec.md section 10.1).
fn open_receipt_checkpoint(
    note: &str,
    log: &NoteVerifier,
    policy: Option<&WitnessPolicy>,
) -> Result<(CheckpointBody, Option<QuorumVerdict>), ReceiptError> {
    match policy {
        Some(policy) => policy
            .judge(note, log)
            .map(|(body, verdict)| (body, Some(verdict)))
            .map_err(ReceiptError::Checkpoint),
        None => open_checkpoint(note, log)
            .map(|body| (body, None))
            .map_err(ReceiptError::Checkpoint),
    }
}

/// Moves a verified receipt to a newer checkpoint: `new_checkpoint` (opened
/// with `log`, and witnessed under `policy` if given) must be consistent
/// with the receipt's checkpoint by `consistency_proof`, and
/// `inclusion_proof` must prove the same entry in it. Returns the new file,
/// already verified as a whole. A checkpoint of the same size is accepted
/// when its root is the same (e.g. the same tree, now cosigned).
pub fn refresh_receipt(
    old: &TlogProof,
    log: &NoteVerifier,
    policy: Option<&WitnessPolicy>,
    new_checkpoint: &str,
    consistency_proof: &[Hash],
    inclusion_proof: Vec<Hash>,
) -> Result<(TlogProof, VerifiedReceipt), ReceiptError> {
    let before = verify_receipt(old, log, None)?;
    let (after, _) = open_receipt_checkpoint(new_checkpoint, log, policy)?;
    verify_consistency(
        before.checkpoint.tree_size,
        after.tree_size,
        &before.checkpoint.root_hash,
        &after.root_hash,
        consistency_proof,
    )
    .map_err(|error| ReceiptError::Inconsistent {
        old_size: before.checkpoint.tree_size,
        new_size: after.tree_size,
        error,
    })?;
    let refreshed = TlogProof {
        extra: old.extra.clone(),
        index: old.index,
        inclusion_proof,
        checkpoint: new_checkpoint.to_owned(),
    };
    let verified = verify_receipt(&refreshed, log, policy)?;
    Ok((refreshed, verified))
}

#[cfg(test)]
mod tests;
