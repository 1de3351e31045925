//! Witness cosignatures: C2SP `tlog-cosignature` v1, the Ed25519 kind.
//!
//! A cosignature is a witness's statement "as of this time, the largest tree
//! of this log that I have checked to be consistent with everything I saw
//! before has this root". It is an ordinary signed-note signature line added
//! after the log's own, so a checkpoint that carries cosignatures is still a
//! checkpoint every note reader opens.
//!
//! Bytes (C2SP tlog-cosignature, "Ed25519 signed message"):
//! - key ID = SHA-256(name || "\n" || 0x04 || public key)[..4];
//! - signed message = "cosignature/v1\n" || "time <unix seconds>\n" || the
//!   checkpoint text (every line up to the blank line, each newline included);
//! - the line is `— <name> base64(key ID || u64 big-endian time || signature)`.
//!
//! Invariants:
//! - A [`Cosigned`] returned by [`open_cosigned`] is a signature that
//!   `verify_strict` accepted over exactly that message, from a key the caller
//!   trusts, on a checkpoint the log's own key signed.
//! - A line that names a trusted cosigner (name and key ID) but does not
//!   verify spoils the whole note, as a bad log signature does: such a line is
//!   either damage or an attempt to pass a forgery, and never silently "not
//!   counted".

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use std::fmt;

use crate::checkpoint::{
    check_named_key, encode_vkey, hex_id, open_checkpoint, parse_note, parse_vkey, typed_key_id,
    validate_key_name, CheckpointBody, CheckpointError, NoteVerifier, SIG_LINE_PREFIX,
};

/// The key-ID and vkey type byte of an Ed25519 cosigner (tlog-cosignature):
/// distinct from a log's 0x01, so a key can never be taken for the other role.
pub const SIG_TYPE_COSIGNATURE_V1: u8 = 0x04;

/// First line of every signed message: the domain separation of v1.
const HEADER: &str = "cosignature/v1\n";

/// The spec caps timestamps at 2^63 - 1 so they fit a signed 64-bit time.
const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// The key ID of an Ed25519 cosigner key under `name`.
pub fn cosigner_key_id(name: &str, public_key: &VerifyingKey) -> [u8; 4] {
    typed_key_id(name, SIG_TYPE_COSIGNATURE_V1, public_key)
}

/// The bytes a cosigner signs for `checkpoint_text` at `timestamp`.
pub fn signed_message(checkpoint_text: &str, timestamp: u64) -> Vec<u8> {
    format!("{HEADER}time {timestamp}\n{checkpoint_text}").into_bytes()
}

/// A witness's public key, as a log, a verifier or a policy knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignerVerifier {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl CosignerVerifier {
    pub fn new(name: &str, public_key: &VerifyingKey) -> Result<Self, CheckpointError> {
        check_named_key(name, public_key)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: cosigner_key_id(name, public_key),
            key: *public_key,
        })
    }

    /// Reads `<name>+<hex key id>+base64(0x04 || key)`.
    pub fn from_vkey(vkey: &str) -> Result<Self, CheckpointError> {
        let (name, key) = parse_vkey(vkey, SIG_TYPE_COSIGNATURE_V1, cosigner_key_id)?;
        Self::new(&name, &key)
    }

    /// The vkey other witness tooling reads (`litewitness`, `torchwood`).
    pub fn vkey(&self) -> String {
        encode_vkey(&self.name, &self.key_id, SIG_TYPE_COSIGNATURE_V1, &self.key)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks one signature blob (after the key ID) over `checkpoint_text`
    /// and returns its timestamp.
    fn verify(&self, checkpoint_text: &str, blob: &[u8]) -> Result<u64, CheckpointError> {
        let bad = || CheckpointError::BadSignature {
            name: self.name.clone(),
            key_id: self.key_id,
        };
        let (time, signature) = blob.split_first_chunk::<8>().ok_or_else(bad)?;
        let timestamp = u64::from_be_bytes(*time);
        let signature = <&[u8; 64]>::try_from(signature).map_err(|_| bad())?;
        if timestamp > MAX_TIMESTAMP {
            return Err(bad());
        }
        self.key
            .verify_strict(
                &signed_message(checkpoint_text, timestamp),
                &Signature::from_bytes(signature),
            )
            .map_err(|_| bad())?;
        Ok(timestamp)
    }
}

/// A witness's private key and name.
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    key_id: [u8; 4],
    key: SigningKey,
}

/// Written by hand so that no secret material can reach a log through `{:?}`.
impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.name)
            .field("key_id", &hex_id(&self.key_id))
            .finish_non_exhaustive()
    }
}

impl Cosigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        validate_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: cosigner_key_id(name, &key.verifying_key()),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier(&self) -> CosignerVerifier {
        CosignerVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// The signature line (newline included) cosigning `checkpoint_text` at
    /// `timestamp`, which is clamped to the spec's maximum.
    pub fn cosign(&self, checkpoint_text: &str, timestamp: u64) -> String {
        let timestamp = timestamp.min(MAX_TIMESTAMP);
        let signature = self.key.sign(&signed_message(checkpoint_text, timestamp));
        let mut blob = Vec::with_capacity(4 + 8 + 64);
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        format!("{SIG_LINE_PREFIX}{} {}\n", self.name, BASE64.encode(blob))
    }
}

/// A verified cosignature on a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosigned {
    /// The cosigner's name, as the trusted key gives it.
    pub name: String,
    /// When the witness says it cosigned (Unix seconds).
    pub timestamp: u64,
}

/// Opens `note` with the log's key, then checks every signature line that
/// names one of `cosigners`. Lines from keys in neither role are ignored, as
/// signed-note requires. Returns the checkpoint and the cosigners whose
/// signature verified, in the order of `cosigners`, each at most once.
pub fn open_cosigned(
    note: &str,
    log: &NoteVerifier,
    cosigners: &[CosignerVerifier],
) -> Result<(CheckpointBody, Vec<Cosigned>), CheckpointError> {
    let body = open_checkpoint(note, log)?;
    let parsed = parse_note(note)?;
    let mut cosigned = Vec::new();
    for cosigner in cosigners {
        let mut latest: Option<u64> = None;
        for line in parsed
            .signatures
            .iter()
            .filter(|line| line.name == cosigner.name && line.key_id == cosigner.key_id)
        {
            let timestamp = cosigner.verify(parsed.text, &line.signature)?;
            latest = Some(latest.map_or(timestamp, |seen| seen.max(timestamp)));
        }
        if let Some(timestamp) = latest {
            cosigned.push(Cosigned {
                name: cosigner.name.clone(),
                timestamp,
            });
        }
    }
    Ok((body, cosigned))
}

/// `note` with `lines` (signature lines, each ending in a newline) added
/// after its own, skipping any line it already carries. The note must be a
/// well-formed signed note, which ends in a newline.
pub fn add_signature_lines(note: &str, lines: &str) -> String {
    let mut out = note.to_owned();
    for line in lines.split_inclusive('\n') {
        let already = note.split_inclusive('\n').any(|existing| existing == line);
        if !already && line.starts_with(SIG_LINE_PREFIX) && line.ends_with('\n') {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{sign_checkpoint, NoteSigner};
    use sha2::{Digest, Sha256};

    fn log_signer() -> NoteSigner {
        NoteSigner::new("example.org/log", SigningKey::from_bytes(&[7; 32])).unwrap()
    }

    fn body() -> CheckpointBody {
        CheckpointBody {
            origin: "example.org/log".into(),
            tree_size: 5,
            root_hash: [9; 32],
        }
    }

    fn witness(name: &str, seed: u8) -> Cosigner {
        Cosigner::new(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    /// Known answer computed here from the spec's definitions with sha2 and
    /// ed25519-dalek directly, not through the module's own helpers.
    #[test]
    fn known_answer_from_the_spec_definitions() {
        let seed = [0x42u8; 32];
        let key = SigningKey::from_bytes(&seed);
        let name = "witness.example/w1";
        let mut preimage = name.as_bytes().to_vec();
        preimage.push(b'\n');
        preimage.push(0x04);
        preimage.extend_from_slice(key.verifying_key().as_bytes());
        let digest = Sha256::digest(&preimage);
        let expected_id = [digest[0], digest[1], digest[2], digest[3]];

        let text = "example.org/log\n5\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n";
        assert_eq!(text, body().to_text());
        let timestamp: u64 = 1_700_000_000;
        let message = format!("cosignature/v1\ntime 1700000000\n{text}");
        let signature = key.sign(message.as_bytes()).to_bytes();
        let mut blob = expected_id.to_vec();
        blob.extend_from_slice(&[0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00]);
        blob.extend_from_slice(&signature);
        let expected_line = format!("\u{2014} {name} {}\n", BASE64.encode(&blob));

        let cosigner = Cosigner::new(name, key.clone()).unwrap();
        assert_eq!(cosigner.verifier().key_id(), expected_id);
        assert_eq!(cosigner.cosign(text, timestamp), expected_line);

        let mut typed = vec![0x04];
        typed.extend_from_slice(key.verifying_key().as_bytes());
        let expected_vkey = format!(
            "{name}+{}+{}",
            hex::encode(expected_id),
            BASE64.encode(typed)
        );
        assert_eq!(cosigner.verifier().vkey(), expected_vkey);
        assert_eq!(
            CosignerVerifier::from_vkey(&expected_vkey).unwrap(),
            cosigner.verifier()
        );
    }

    #[test]
    fn cosigned_note_opens_and_names_its_cosigners() {
        let log = log_signer();
        let note = sign_checkpoint(&body(), &log).unwrap();
        let (a, b, c) = (witness("w.a", 1), witness("w.b", 2), witness("w.c", 3));
        let text = body().to_text();
        let lines = format!("{}{}", a.cosign(&text, 10), c.cosign(&text, 12));
        let cosigned_note = add_signature_lines(&note, &lines);
        // Idempotent: the same lines twice add nothing.
        assert_eq!(add_signature_lines(&cosigned_note, &lines), cosigned_note);
        let trusted = [a.verifier(), b.verifier(), c.verifier()];
        let (opened, cosigned) = open_cosigned(&cosigned_note, &log.verifier(), &trusted).unwrap();
        assert_eq!(opened, body());
        assert_eq!(
            cosigned,
            vec![
                Cosigned {
                    name: "w.a".into(),
                    timestamp: 10
                },
                Cosigned {
                    name: "w.c".into(),
                    timestamp: 12
                }
            ]
        );
        // The log's plain verifier still opens the cosigned note.
        assert_eq!(
            open_checkpoint(&cosigned_note, &log.verifier()).unwrap(),
            body()
        );
    }

    #[test]
    fn a_cosignature_over_another_checkpoint_spoils_the_note() {
        let log = log_signer();
        let note = sign_checkpoint(&body(), &log).unwrap();
        let a = witness("w.a", 1);
        let other = CheckpointBody {
            tree_size: 6,
            ..body()
        };
        let forged = add_signature_lines(&note, &a.cosign(&other.to_text(), 10));
        assert_eq!(
            open_cosigned(&forged, &log.verifier(), &[a.verifier()]),
            Err(CheckpointError::BadSignature {
                name: "w.a".into(),
                key_id: a.verifier().key_id()
            })
        );
        // A verifier that does not trust w.a ignores the line.
        assert_eq!(
            open_cosigned(&forged, &log.verifier(), &[]).unwrap().1,
            vec![]
        );
    }

    #[test]
    fn a_log_key_is_not_a_cosigner_key() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let log = NoteSigner::new("same.name", key.clone()).unwrap();
        let cosigner = Cosigner::new("same.name", key).unwrap();
        assert_ne!(log.key_id(), cosigner.verifier().key_id());
        assert_eq!(
            CosignerVerifier::from_vkey(&log.verifier().encoded_key()),
            Err(CheckpointError::InvalidVkey(
                "the key is of another signature type"
            ))
        );
        assert_eq!(
            NoteVerifier::from_vkey(&log.verifier().encoded_key()).unwrap(),
            log.verifier()
        );
    }

    #[test]
    fn bad_vkeys_are_refused_with_a_reason() {
        let good = witness("w.a", 1).verifier().vkey();
        let (name, rest) = good.split_once('+').unwrap();
        let (id, key) = rest.split_once('+').unwrap();
        for (vkey, reason) in [
            (
                "w.a".to_string(),
                "expected <name>+<hex key id>+<base64 key>",
            ),
            (
                format!("{name}+zz{}+{key}", &id[2..]),
                "the key ID is not 8 hexadecimal digits",
            ),
            (
                format!("{name}+00000000+{key}"),
                "the key ID does not match the name and key",
            ),
            (
                format!("other+{id}+{key}"),
                "the key ID does not match the name and key",
            ),
            (format!("{name}+{id}+!!"), "the key is not standard base64"),
            (format!("{name}+{id}+BAA="), "an Ed25519 key is 32 bytes"),
        ] {
            assert_eq!(
                CosignerVerifier::from_vkey(&vkey),
                Err(CheckpointError::InvalidVkey(reason)),
                "{vkey}"
            );
        }
    }

    #[test]
    fn truncated_or_oversized_blobs_are_bad_signatures() {
        let a = witness("w.a", 1);
        let text = body().to_text();
        let line = a.cosign(&text, 10);
        let b64 = line.trim_end().rsplit_once(' ').unwrap().1;
        let blob = BASE64.decode(b64).unwrap();
        for cut in [4, 11, 12, 40, blob.len() - 1] {
            assert!(a.verifier().verify(&text, &blob[4..cut]).is_err());
        }
        let mut future = blob.clone();
        future[4] = 0x80;
        assert!(a.verifier().verify(&text, &future[4..]).is_err());
        assert_eq!(a.verifier().verify(&text, &blob[4..]), Ok(10));
    }
}
