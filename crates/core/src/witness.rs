//! A witness's verdict on one `add-checkpoint` request (C2SP tlog-witness,
//! <https://c2sp.org/tlog-witness>): the request body's syntax, and whether
//! the checkpoint may be cosigned given what the witness cosigned before.
//!
//! Pure: no I/O and no clock. The service around it (`ceasefire-witness`)
//! holds the per-log lock, reads the latest recorded tree head, calls
//! [`decide`], writes the new head durably and only then cosigns
//! ([`Advance::cosign`], with the time passed in).
//!
//! Invariants:
//! - An [`Advance`] is returned only for a checkpoint one of the log's
//!   trusted keys signed, whose old size is the witness's recorded size, and
//!   which a consistency proof (or, at equal sizes, an identical root) shows
//!   to extend the recorded tree head. Recording every advance before
//!   answering therefore means the witness never cosigns two roots for one
//!   size, nor a tree smaller than one it cosigned.
//! - Every refusal is a [`Refusal`] variant carrying the HTTP status the spec
//!   gives it ([`Refusal::status`]), so a caller matches on the case, never on
//!   a message.
//! - The checks run in the spec's order: syntax (400), origin (404), log
//!   signature (403), old size above the checkpoint's (400), old size against
//!   the record (409), equal sizes with another root (409), proof (422).

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::checkpoint::{
    open_checkpoint_text, parse_root_hash, parse_tree_size, parse_unverified, CheckpointBody,
    CheckpointError, NoteVerifier, MAX_NOTE_BYTES,
};
use crate::cosignature::Cosigner;
use crate::merkle::{verify_consistency, Hash, VerifyError};

/// Most consistency proof lines a request may carry: the spec's "MUST NOT
/// send more than 63", which is the longest RFC 6962 proof of a tree whose
/// size fits in 64 bits.
pub const MAX_PROOF_LINES: usize = 63;

/// Longest old size line: `old `, the 20 digits of `u64::MAX`, a newline.
const MAX_OLD_LINE_BYTES: usize = 4 + 20 + 1;

/// One proof line: the 44 characters of a base64 SHA-256 hash and a newline.
const PROOF_LINE_BYTES: usize = 44 + 1;

/// Largest request body worth reading: the longest old size line, one proof
/// line more than allowed (so that a 64-line proof is refused by name, not
/// by size), the blank line and the largest note we agree to open. A body
/// past this cannot be a request the witness would accept.
pub const MAX_REQUEST_BYTES: usize =
    MAX_OLD_LINE_BYTES + (MAX_PROOF_LINES + 1) * PROOF_LINE_BYTES + 1 + MAX_NOTE_BYTES;

/// The media type of a 409 answer's body: the witness's tree size in decimal
/// and a newline.
pub const TLOG_SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Error messages quote what they found, but never more than this many
/// characters of it, so a hostile request cannot blow up a log line.
const EXCERPT_CHARS: usize = 64;

fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// An `add-checkpoint` request body, parsed but not verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpointRequest<'a> {
    /// The tree size the client believes the witness has cosigned last.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The checkpoint: a signed note, exactly as sent.
    pub note: &'a str,
    /// The checkpoint as the note claims it, before any signature is
    /// checked: only its origin is used, to find the log's keys.
    pub claimed: CheckpointBody,
}

/// Why a request body is not an `add-checkpoint` request (all are 400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The body is longer than [`MAX_REQUEST_BYTES`].
    TooLarge { len: usize, max: usize },
    /// The body is not UTF-8 (a signed note is text); `offset` is the first
    /// byte that is not.
    NotUtf8 { offset: usize },
    /// The first line is not `old <size>` ending in a newline.
    MissingOldSize { found: String },
    /// The old size is not ASCII decimal without leading zeros, or does not
    /// fit in a u64.
    BadOldSize { found: String },
    /// A proof line (counted from 1) is not the standard base64 of 32 bytes.
    BadProofLine { line: usize, found: String },
    /// More than [`MAX_PROOF_LINES`] proof lines.
    TooManyProofLines { max: usize },
    /// No empty line ends the proof lines, so there is no checkpoint.
    MissingBlankLine,
    /// What follows the blank line is not a signed checkpoint.
    NotACheckpoint(CheckpointError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => {
                write!(
                    f,
                    "request body is {len} bytes, more than the {max}-byte limit"
                )
            }
            Self::NotUtf8 { offset } => {
                write!(f, "request body is not UTF-8 (byte {offset})")
            }
            Self::MissingOldSize { found } => write!(
                f,
                "request body must start with an \"old <size>\" line ending in a newline, \
                 found {found:?}"
            ),
            Self::BadOldSize { found } => write!(
                f,
                "old size {found:?} is not a decimal u64 without sign or leading zeros"
            ),
            Self::BadProofLine { line, found } => write!(
                f,
                "consistency proof line {line} ({found:?}) is not the standard base64 \
                 encoding of a 32-byte hash"
            ),
            Self::TooManyProofLines { max } => {
                write!(f, "more than {max} consistency proof lines")
            }
            Self::MissingBlankLine => write!(
                f,
                "no empty line after the old size and proof lines, so no checkpoint follows"
            ),
            Self::NotACheckpoint(error) => write!(f, "the checkpoint is malformed: {error}"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Splits one newline-terminated line off `rest`.
fn next_line(rest: &str) -> Option<(&str, &str)> {
    rest.split_once('\n')
}

/// Parses an `add-checkpoint` request body. The checkpoint's signatures are
/// not looked at here; its text is parsed only to learn which log it claims
/// to come from.
pub fn parse_request(body: &[u8]) -> Result<AddCheckpointRequest<'_>, RequestError> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLarge {
            len: body.len(),
            max: MAX_REQUEST_BYTES,
        });
    }
    let body = std::str::from_utf8(body).map_err(|error| RequestError::NotUtf8 {
        offset: error.valid_up_to(),
    })?;
    let (old_line, mut rest) = next_line(body).ok_or_else(|| RequestError::MissingOldSize {
        found: excerpt(body),
    })?;
    let size_text = old_line
        .strip_prefix("old ")
        .ok_or_else(|| RequestError::MissingOldSize {
            found: excerpt(old_line),
        })?;
    let old_size = parse_tree_size(size_text).map_err(|_| RequestError::BadOldSize {
        found: excerpt(size_text),
    })?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = next_line(rest).ok_or(RequestError::MissingBlankLine)?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(RequestError::TooManyProofLines {
                max: MAX_PROOF_LINES,
            });
        }
        let hash = parse_root_hash(line).map_err(|_| RequestError::BadProofLine {
            line: proof.len() + 1,
            found: excerpt(line),
        })?;
        proof.push(hash);
    }
    let note = rest;
    let claimed = parse_unverified(note).map_err(RequestError::NotACheckpoint)?;
    Ok(AddCheckpointRequest {
        old_size,
        proof,
        note,
        claimed,
    })
}

/// The request body [`parse_request`] reads: what a client sends.
pub fn format_request(old_size: u64, proof: &[Hash], note: &str) -> String {
    let mut body = String::with_capacity(32 + proof.len() * PROOF_LINE_BYTES + note.len());
    body.push_str(&format!("old {old_size}\n"));
    for hash in proof {
        body.push_str(&BASE64.encode(hash));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

/// The keys a witness trusts for one log, which its origin names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedLog {
    origin: String,
    keys: Vec<NoteVerifier>,
}

/// Why a set of keys cannot be a [`TrustedLog`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedLogError {
    /// No key at all: nothing could ever be cosigned.
    NoKeys { origin: String },
    /// A key signs under another name than the origin; checkpoints are
    /// opened only with keys named after their origin.
    KeyNameIsNotOrigin { origin: String, key_name: String },
}

impl fmt::Display for TrustedLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoKeys { origin } => write!(f, "log {origin:?} has no key"),
            Self::KeyNameIsNotOrigin { origin, key_name } => write!(
                f,
                "a key of log {origin:?} is named {key_name:?}: a log key's name must be \
                 the log's origin"
            ),
        }
    }
}

impl std::error::Error for TrustedLogError {}

impl TrustedLog {
    /// A log whose checkpoints are trusted when any of `keys` signed them.
    pub fn new(origin: &str, keys: Vec<NoteVerifier>) -> Result<Self, TrustedLogError> {
        if keys.is_empty() {
            return Err(TrustedLogError::NoKeys {
                origin: origin.to_owned(),
            });
        }
        if let Some(key) = keys.iter().find(|key| key.name() != origin) {
            return Err(TrustedLogError::KeyNameIsNotOrigin {
                origin: origin.to_owned(),
                key_name: key.name().to_owned(),
            });
        }
        Ok(Self {
            origin: origin.to_owned(),
            keys,
        })
    }

    /// A log with one key, its origin the key's name.
    pub fn from_key(key: NoteVerifier) -> Self {
        Self {
            origin: key.name().to_owned(),
            keys: vec![key],
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn keys(&self) -> &[NoteVerifier] {
        &self.keys
    }

    /// Opens `note` with the first trusted key whose signature verifies, and
    /// returns the checkpoint and the exact text that key signed. Signature
    /// lines of other keys are ignored, as signed-note requires; if no
    /// trusted key verifies, the error is the most telling one (a bad
    /// signature under a trusted key before "no signature from it").
    pub fn open<'a>(&self, note: &'a str) -> Result<(CheckpointBody, &'a str), CheckpointError> {
        let mut failure = None;
        for key in &self.keys {
            match open_checkpoint_text(note, key) {
                Ok(opened) => return Ok(opened),
                Err(error) => {
                    let telling = !matches!(error, CheckpointError::UnknownKey { .. });
                    if failure.is_none() || telling {
                        failure = Some(error);
                    }
                }
            }
        }
        Err(failure.unwrap_or_else(|| CheckpointError::UnknownKey {
            name: self.origin.clone(),
            key_id: [0; 4],
        }))
    }
}

/// A tree head: what the witness records for a log, the latest it cosigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: Hash,
}

impl From<&CheckpointBody> for TreeHead {
    fn from(body: &CheckpointBody) -> Self {
        Self {
            size: body.tree_size,
            root: body.root_hash,
        }
    }
}

/// The checkpoint may be cosigned: record `head`, then sign `text`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advance<'a> {
    /// The tree head to record as the latest cosigned.
    pub head: TreeHead,
    /// The checkpoint as the log signed it.
    pub checkpoint: CheckpointBody,
    /// The exact text the log's key signed, extension lines included: what
    /// the cosignature covers.
    pub text: &'a str,
    /// False when `head` is the one already recorded (the same checkpoint
    /// again): there is nothing new to write before cosigning.
    pub record: bool,
}

impl Advance<'_> {
    /// The cosignature line (newline included) of `cosigner` at
    /// `unix_seconds`. Call it only once `head` is durably recorded.
    pub fn cosign(&self, cosigner: &Cosigner, unix_seconds: u64) -> String {
        cosigner.cosign(self.text, unix_seconds)
    }
}

/// Why the witness will not cosign, each with the status the spec gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the body is not an `add-checkpoint` request.
    Malformed(RequestError),
    /// 404: the witness does not witness this origin.
    UnknownOrigin { origin: String },
    /// 403: no trusted key of the log signed the checkpoint.
    NotSignedByLog {
        origin: String,
        reason: CheckpointError,
    },
    /// 400: the old size is larger than the checkpoint's size.
    OldSizeAboveCheckpoint { old_size: u64, checkpoint_size: u64 },
    /// 409: the old size is not the size the witness last cosigned (0 if it
    /// never cosigned this log); the answer tells the client that size.
    OldSizeMismatch { old_size: u64, witness_size: u64 },
    /// 409: the checkpoint has the size the witness last cosigned but
    /// another root: the log shows two trees of one size, a fork.
    RootMismatch {
        size: u64,
        witness_root: Hash,
        checkpoint_root: Hash,
    },
    /// 422: the proof does not show the checkpoint's tree extending the one
    /// the witness last cosigned (or is not empty when the old size is 0).
    InconsistentProof {
        old_size: u64,
        checkpoint_size: u64,
        reason: VerifyError,
    },
}

impl Refusal {
    /// The HTTP status code of the answer.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) | Self::OldSizeAboveCheckpoint { .. } => 400,
            Self::NotSignedByLog { .. } => 403,
            Self::UnknownOrigin { .. } => 404,
            Self::OldSizeMismatch { .. } | Self::RootMismatch { .. } => 409,
            Self::InconsistentProof { .. } => 422,
        }
    }

    /// For a 409: the tree size the witness last cosigned, which the answer
    /// carries as its `text/x.tlog.size` body.
    pub fn witness_size(&self) -> Option<u64> {
        match self {
            Self::OldSizeMismatch { witness_size, .. } => Some(*witness_size),
            Self::RootMismatch { size, .. } => Some(*size),
            _ => None,
        }
    }

    /// Whether a log key signed what was refused. Such a refusal can be
    /// evidence of log misbehaviour (a fork, or a proof that does not hold),
    /// so the service logs it with the checkpoint; a stale client gives the
    /// same 409, which is why it is "possible".
    pub fn is_signed_evidence(&self) -> bool {
        matches!(
            self,
            Self::OldSizeAboveCheckpoint { .. }
                | Self::OldSizeMismatch { .. }
                | Self::RootMismatch { .. }
                | Self::InconsistentProof { .. }
        )
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(error) => write!(f, "{error}"),
            Self::UnknownOrigin { origin } => {
                write!(
                    f,
                    "this witness does not witness the log {:?}",
                    excerpt(origin)
                )
            }
            Self::NotSignedByLog { origin, reason } => write!(
                f,
                "no key this witness trusts for {:?} signed the checkpoint: {reason}",
                excerpt(origin)
            ),
            Self::OldSizeAboveCheckpoint {
                old_size,
                checkpoint_size,
            } => write!(
                f,
                "old size {old_size} is larger than the checkpoint's size {checkpoint_size}"
            ),
            Self::OldSizeMismatch {
                old_size,
                witness_size,
            } => write!(
                f,
                "old size {old_size} is not the size this witness last cosigned, \
                 {witness_size}: send a proof from {witness_size}"
            ),
            Self::RootMismatch {
                size,
                witness_root,
                checkpoint_root,
            } => write!(
                f,
                "this witness cosigned size {size} with root {}, and this checkpoint \
                 has root {} at that size",
                BASE64.encode(witness_root),
                BASE64.encode(checkpoint_root)
            ),
            Self::InconsistentProof {
                old_size,
                checkpoint_size,
                reason,
            } => write!(
                f,
                "the consistency proof from size {old_size} to {checkpoint_size} does not \
                 verify: {reason}"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// The checkpoint of `request`, if a trusted key of `log` signed it, with
/// the text that key signed. `log` is `None` when the witness does not know
/// the claimed origin (404). Reads nothing of the witness's state, so a
/// service may run it before taking the log's lock.
pub fn verify_checkpoint<'a>(
    request: &AddCheckpointRequest<'a>,
    log: Option<&TrustedLog>,
) -> Result<(CheckpointBody, &'a str), Refusal> {
    let Some(log) = log else {
        return Err(Refusal::UnknownOrigin {
            origin: request.claimed.origin.clone(),
        });
    };
    log.open(request.note)
        .map_err(|reason| Refusal::NotSignedByLog {
            origin: log.origin.clone(),
            reason,
        })
}

/// The checks against the witness's record: `checkpoint` (from
/// [`verify_checkpoint`]) against `latest`, the tree head last cosigned for
/// its log (`None` if never), with the request's old size and proof. The
/// caller must hold the log's lock from this call until the advance is
/// recorded.
pub fn check_consistency<'a>(
    request: &AddCheckpointRequest<'_>,
    checkpoint: CheckpointBody,
    text: &'a str,
    latest: Option<TreeHead>,
) -> Result<Advance<'a>, Refusal> {
    let head = TreeHead::from(&checkpoint);
    let old_size = request.old_size;
    if old_size > head.size {
        return Err(Refusal::OldSizeAboveCheckpoint {
            old_size,
            checkpoint_size: head.size,
        });
    }
    let witness_size = latest.map_or(0, |latest| latest.size);
    if old_size != witness_size {
        return Err(Refusal::OldSizeMismatch {
            old_size,
            witness_size,
        });
    }
    // Equal sizes must have equal roots whatever the proof says; the proof
    // (which must then be empty) is checked after.
    if let Some(latest) = latest {
        if latest.size == head.size && latest.root != head.root {
            return Err(Refusal::RootMismatch {
                size: head.size,
                witness_root: latest.root,
                checkpoint_root: head.root,
            });
        }
    }
    // With nothing cosigned there is no old root: the empty tree is a prefix
    // of every tree, and verify_consistency then only requires an empty
    // proof (its root arguments are compared only at equal non-zero sizes,
    // excluded here by passing the checkpoint's own root).
    let old_root = latest.map_or(head.root, |latest| latest.root);
    verify_consistency(old_size, head.size, &old_root, &head.root, &request.proof).map_err(
        |reason| Refusal::InconsistentProof {
            old_size,
            checkpoint_size: head.size,
            reason,
        },
    )?;
    Ok(Advance {
        head,
        checkpoint,
        text,
        record: latest != Some(head),
    })
}

/// The whole verdict on one request: [`verify_checkpoint`] then
/// [`check_consistency`].
pub fn decide<'a>(
    request: &AddCheckpointRequest<'a>,
    log: Option<&TrustedLog>,
    latest: Option<TreeHead>,
) -> Result<Advance<'a>, Refusal> {
    let (checkpoint, text) = verify_checkpoint(request, log)?;
    check_consistency(request, checkpoint, text, latest)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::checkpoint::{sign_checkpoint, sign_note_text, NoteSigner};
    use crate::cosignature::open_cosigned;
    use crate::merkle::{consistency_proof, hash_leaf, root, MemorySource};

    const ORIGIN: &str = "example.org/witnessed";

    fn log_signer() -> NoteSigner {
        NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[3; 32])).unwrap()
    }

    fn trusted() -> TrustedLog {
        TrustedLog::from_key(log_signer().verifier())
    }

    fn witness() -> Cosigner {
        Cosigner::new("witness.example/w1", SigningKey::from_bytes(&[4; 32])).unwrap()
    }

    /// A log of `size` leaves; `fork` changes leaf 2's contents.
    fn tree(size: u64, fork: bool) -> MemorySource {
        MemorySource::from_leaf_hashes((0..size).map(|i| {
            let tag = if fork && i == 2 { "fork" } else { "main" };
            hash_leaf(format!("{tag} leaf {i}").as_bytes())
        }))
    }

    fn head(size: u64, fork: bool) -> TreeHead {
        TreeHead {
            size,
            root: root(&tree(size, fork), size).unwrap(),
        }
    }

    fn note(size: u64, fork: bool) -> String {
        let body = CheckpointBody {
            origin: ORIGIN.into(),
            tree_size: size,
            root_hash: head(size, fork).root,
        };
        sign_checkpoint(&body, &log_signer()).unwrap()
    }

    fn proof(old: u64, new: u64, fork: bool) -> Vec<Hash> {
        consistency_proof(&tree(new, fork), old, new).unwrap()
    }

    fn body(old: u64, new: u64, fork: bool) -> String {
        format_request(old, &proof(old, new, fork), &note(new, fork))
    }

    fn verdict(body: &str, latest: Option<TreeHead>) -> Result<TreeHead, Refusal> {
        let request = parse_request(body.as_bytes()).map_err(Refusal::Malformed)?;
        decide(&request, Some(&trusted()), latest).map(|advance| advance.head)
    }

    #[test]
    fn a_first_checkpoint_and_its_successors_advance() {
        assert_eq!(verdict(&body(0, 5, false), None), Ok(head(5, false)));
        assert_eq!(
            verdict(&body(5, 13, false), Some(head(5, false))),
            Ok(head(13, false))
        );
        // A power-of-two old size has the shorter proof.
        assert_eq!(
            verdict(&body(8, 13, false), Some(head(8, false))),
            Ok(head(13, false))
        );
    }

    #[test]
    fn the_same_checkpoint_again_is_cosigned_without_a_new_record() {
        let text = body(5, 5, false);
        let request = parse_request(text.as_bytes()).unwrap();
        let advance = decide(&request, Some(&trusted()), Some(head(5, false))).unwrap();
        assert!(!advance.record);
        let advance = decide(&request, Some(&trusted()), Some(head(3, false)));
        assert!(matches!(
            advance,
            Err(Refusal::OldSizeMismatch {
                old_size: 5,
                witness_size: 3
            })
        ));
    }

    #[test]
    fn the_cosignature_covers_the_signed_text_and_verifies() {
        let text = body(0, 7, false);
        let request = parse_request(text.as_bytes()).unwrap();
        let advance = decide(&request, Some(&trusted()), None).unwrap();
        assert!(advance.record);
        let line = advance.cosign(&witness(), 1_700_000_000);
        let cosigned = crate::cosignature::add_signature_lines(request.note, &line);
        let (opened, by) =
            open_cosigned(&cosigned, &log_signer().verifier(), &[witness().verifier()]).unwrap();
        assert_eq!(TreeHead::from(&opened), head(7, false));
        assert_eq!(by.len(), 1);
        assert_eq!(by[0].timestamp, 1_700_000_000);
    }

    #[test]
    fn extension_lines_stay_under_the_cosignature() {
        let checkpoint = CheckpointBody {
            origin: ORIGIN.into(),
            tree_size: 4,
            root_hash: head(4, false).root,
        };
        let text = format!("{}ext line one\n", checkpoint.to_text());
        let note = sign_note_text(&text, &log_signer());
        let body = format_request(0, &[], &note);
        let request = parse_request(body.as_bytes()).unwrap();
        let advance = decide(&request, Some(&trusted()), None).unwrap();
        assert_eq!(advance.text, text);
        let cosigned =
            crate::cosignature::add_signature_lines(&note, &advance.cosign(&witness(), 10));
        let (_, by) =
            open_cosigned(&cosigned, &log_signer().verifier(), &[witness().verifier()]).unwrap();
        assert_eq!(by.len(), 1);
    }

    #[test]
    fn an_unknown_origin_is_404() {
        let text = body(0, 3, false);
        let request = parse_request(text.as_bytes()).unwrap();
        let refusal = decide(&request, None, None).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::UnknownOrigin {
                origin: ORIGIN.into()
            }
        );
        assert_eq!(refusal.status(), 404);
    }

    #[test]
    fn a_checkpoint_no_trusted_key_signed_is_403() {
        let stranger = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[9; 32])).unwrap();
        let checkpoint = CheckpointBody {
            origin: ORIGIN.into(),
            tree_size: 3,
            root_hash: head(3, false).root,
        };
        let forged = sign_checkpoint(&checkpoint, &stranger).unwrap();
        let text = format_request(0, &proof(0, 3, false), &forged);
        let refusal = verdict(&text, None).unwrap_err();
        assert_eq!(refusal.status(), 403);
        assert!(matches!(
            refusal,
            Refusal::NotSignedByLog {
                reason: CheckpointError::UnknownKey { .. },
                ..
            }
        ));
        // A line under the trusted key that does not verify: a bad signature.
        let good = note(3, false);
        let tampered = good.replace(&BASE64.encode(head(3, false).root), &BASE64.encode([1; 32]));
        let refusal = verdict(&format_request(0, &[], &tampered), None).unwrap_err();
        assert!(matches!(
            refusal,
            Refusal::NotSignedByLog {
                reason: CheckpointError::BadSignature { .. },
                ..
            }
        ));
    }

    #[test]
    fn any_trusted_key_will_do_and_strangers_are_ignored() {
        let stranger = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[9; 32])).unwrap();
        let log =
            TrustedLog::new(ORIGIN, vec![stranger.verifier(), log_signer().verifier()]).unwrap();
        let text = body(0, 3, false);
        let request = parse_request(text.as_bytes()).unwrap();
        assert_eq!(
            decide(&request, Some(&log), None).unwrap().head,
            head(3, false)
        );
        // A co-signing stranger's line beside the log's does not matter.
        let extra = Cosigner::new("someone.else", SigningKey::from_bytes(&[5; 32]))
            .unwrap()
            .cosign(request.note.split("\n\n").next().unwrap(), 1);
        let noted = crate::cosignature::add_signature_lines(request.note, &extra);
        let text = format_request(0, &[], &noted);
        assert_eq!(verdict(&text, None), Ok(head(3, false)));
    }

    #[test]
    fn trusted_logs_need_keys_named_after_the_origin() {
        assert_eq!(
            TrustedLog::new(ORIGIN, vec![]),
            Err(TrustedLogError::NoKeys {
                origin: ORIGIN.into()
            })
        );
        let other = NoteSigner::new("other.example", SigningKey::from_bytes(&[9; 32])).unwrap();
        assert!(matches!(
            TrustedLog::new(ORIGIN, vec![other.verifier()]),
            Err(TrustedLogError::KeyNameIsNotOrigin { .. })
        ));
    }

    #[test]
    fn an_old_size_above_the_checkpoint_is_400() {
        let text = format_request(9, &[], &note(5, false));
        let refusal = verdict(&text, Some(head(9, false))).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::OldSizeAboveCheckpoint {
                old_size: 9,
                checkpoint_size: 5
            }
        );
        assert_eq!(refusal.status(), 400);
    }

    #[test]
    fn an_old_size_other_than_the_record_is_409_with_the_size() {
        let refusal = verdict(&body(3, 8, false), Some(head(5, false))).unwrap_err();
        assert_eq!(refusal.status(), 409);
        assert_eq!(refusal.witness_size(), Some(5));
        // Never cosigned: the witness's size is 0.
        let refusal = verdict(&body(3, 8, false), None).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::OldSizeMismatch {
                old_size: 3,
                witness_size: 0
            }
        );
        // A smaller tree than the one cosigned, with an honest old size.
        let refusal = verdict(&body(4, 6, false), Some(head(8, false))).unwrap_err();
        assert_eq!(refusal.witness_size(), Some(8));
    }

    #[test]
    fn the_same_size_with_another_root_is_409() {
        let refusal = verdict(&body(6, 6, true), Some(head(6, false))).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::RootMismatch {
                size: 6,
                witness_root: head(6, false).root,
                checkpoint_root: head(6, true).root
            }
        );
        assert_eq!(refusal.status(), 409);
        assert_eq!(refusal.witness_size(), Some(6));
        // Even a recorded empty tree keeps its root.
        let zero = TreeHead {
            size: 0,
            root: [7; 32],
        };
        let refusal = verdict(&format_request(0, &[], &note(0, false)), Some(zero)).unwrap_err();
        assert_eq!(refusal.status(), 409);
    }

    #[test]
    fn a_proof_that_does_not_verify_is_422() {
        // A fork's checkpoint with the main tree's proof, and the reverse.
        let fork_note = note(9, true);
        let text = format_request(5, &proof(5, 9, false), &fork_note);
        let refusal = verdict(&text, Some(head(5, false))).unwrap_err();
        assert_eq!(refusal.status(), 422);
        let refusal = verdict(&body(5, 9, true), Some(head(5, false))).unwrap_err();
        assert!(matches!(
            refusal,
            Refusal::InconsistentProof {
                old_size: 5,
                checkpoint_size: 9,
                reason: VerifyError::RootMismatch
            }
        ));
        // Too short a proof.
        let mut short = proof(5, 9, false);
        short.pop();
        let text = format_request(5, &short, &note(9, false));
        assert!(matches!(
            verdict(&text, Some(head(5, false))),
            Err(Refusal::InconsistentProof {
                reason: VerifyError::WrongProofLength { .. },
                ..
            })
        ));
    }

    #[test]
    fn a_proof_with_old_size_zero_or_equal_sizes_must_be_empty() {
        let text = format_request(0, &[[1; 32]], &note(4, false));
        assert_eq!(verdict(&text, None).unwrap_err().status(), 422);
        let text = format_request(4, &[[1; 32]], &note(4, false));
        assert_eq!(
            verdict(&text, Some(head(4, false))).unwrap_err().status(),
            422
        );
    }

    #[test]
    fn the_checks_run_in_the_spec_order() {
        // Unknown origin before a bad signature; a bad signature before any
        // size check; old > size before the record; the record before the proof.
        let text = format_request(7, &[[1; 32]], &note(5, false));
        let request = parse_request(text.as_bytes()).unwrap();
        assert_eq!(decide(&request, None, None).unwrap_err().status(), 404);
        let stranger = TrustedLog::from_key(
            NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[9; 32]))
                .unwrap()
                .verifier(),
        );
        assert_eq!(
            decide(&request, Some(&stranger), None)
                .unwrap_err()
                .status(),
            403
        );
        assert_eq!(verdict(&text, None).unwrap_err().status(), 400);
        let text = format_request(3, &[[1; 32]], &note(5, false));
        assert_eq!(verdict(&text, None).unwrap_err().status(), 409);
    }

    fn malformed(body: &str) -> RequestError {
        match parse_request(body.as_bytes()) {
            Err(error) => error,
            Ok(request) => panic!("parsed {body:?} as {request:?}"),
        }
    }

    #[test]
    fn malformed_bodies_are_refused_by_name() {
        let note = note(3, false);
        let hash = BASE64.encode([5u8; 32]);
        assert!(matches!(
            malformed(&format!("old 0\n{note}").replace("\n\n", "\n")),
            RequestError::MissingBlankLine | RequestError::BadProofLine { .. }
        ));
        assert_eq!(malformed("old 0\n"), RequestError::MissingBlankLine);
        assert_eq!(
            malformed(&format!("old 0\n{hash}\n")),
            RequestError::MissingBlankLine
        );
        assert!(matches!(
            malformed(&format!("new 0\n\n{note}")),
            RequestError::MissingOldSize { .. }
        ));
        assert!(matches!(
            malformed("old 0"),
            RequestError::MissingOldSize { .. }
        ));
        assert!(matches!(malformed(""), RequestError::MissingOldSize { .. }));
        for size in [
            "01",
            "00",
            "+1",
            "-1",
            "1 ",
            " 1",
            "",
            "1e3",
            "18446744073709551616",
        ] {
            assert_eq!(
                malformed(&format!("old {size}\n\n{note}")),
                RequestError::BadOldSize {
                    found: size.to_owned()
                },
                "{size:?}"
            );
        }
        assert!(matches!(
            malformed(&format!("old  1\n\n{note}")),
            RequestError::BadOldSize { .. }
        ));
        assert!(matches!(
            malformed(&format!("old 0\r\n\r\n{note}")),
            RequestError::BadOldSize { .. }
        ));
        for line in [
            "!!",
            "AAAA",
            &hash[..43],
            &format!("{hash}="),
            &hash.replace('=', ""),
        ] {
            assert_eq!(
                malformed(&format!("old 2\n{hash}\n{line}\n\n{note}")),
                RequestError::BadProofLine {
                    line: 2,
                    found: line.to_owned()
                },
                "{line:?}"
            );
        }
        assert_eq!(
            malformed(&format!(
                "old 2\n{}\n{note}",
                format!("{hash}\n").repeat(64)
            )),
            RequestError::TooManyProofLines { max: 63 }
        );
        assert!(matches!(
            malformed("old 0\n\nnot a note\n"),
            RequestError::NotACheckpoint(CheckpointError::MissingBlankLine)
        ));
        assert!(matches!(
            malformed(&format!("old 0\n\n{}", note.replace("\n3\n", "\n03\n"))),
            RequestError::NotACheckpoint(CheckpointError::NonCanonicalTreeSize { .. })
        ));
        assert!(matches!(
            malformed("old 0\n\n"),
            RequestError::NotACheckpoint(_)
        ));
        let mut bytes = format!("old 0\n\n{note}").into_bytes();
        bytes[10] = 0xff;
        assert_eq!(
            parse_request(&bytes).unwrap_err(),
            RequestError::NotUtf8 { offset: 10 }
        );
        let huge = vec![b'a'; MAX_REQUEST_BYTES + 1];
        assert!(matches!(
            parse_request(&huge).unwrap_err(),
            RequestError::TooLarge { .. }
        ));
    }

    #[test]
    fn sixty_three_proof_lines_are_syntax_enough() {
        let hash = BASE64.encode([5u8; 32]);
        let text = format!(
            "old 2\n{}\n{}",
            format!("{hash}\n").repeat(63),
            note(3, false)
        );
        let request = parse_request(text.as_bytes()).unwrap();
        assert_eq!(request.proof.len(), 63);
        // And the largest acceptable request fits the byte limit.
        assert!(text.len() + (MAX_NOTE_BYTES - note(3, false).len()) < MAX_REQUEST_BYTES);
    }

    #[test]
    fn format_and_parse_agree() {
        let proof = proof(5, 13, false);
        let note = note(13, false);
        let text = format_request(5, &proof, &note);
        let request = parse_request(text.as_bytes()).unwrap();
        assert_eq!(request.old_size, 5);
        assert_eq!(request.proof, proof);
        assert_eq!(request.note, note);
        assert_eq!(request.claimed.tree_size, 13);
        assert!(format_request(0, &[], &note).starts_with("old 0\n\n"));
    }

    #[test]
    fn refusal_messages_say_what_to_do() {
        let refusal = Refusal::OldSizeMismatch {
            old_size: 3,
            witness_size: 8,
        };
        assert_eq!(
            refusal.to_string(),
            "old size 3 is not the size this witness last cosigned, 8: send a proof from 8"
        );
        let long = Refusal::UnknownOrigin {
            origin: "x".repeat(1000),
        };
        assert!(long.to_string().len() < 200, "{long}");
    }
}
