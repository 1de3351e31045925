//! The leaf: the exact bytes stored and hashed for each log entry.
//!
//! Layout (docs/spec.md "Leaf"; big-endian integers):
//!
//! ```text
//! "ceasefire-ledger:leaf:v1\n"   25 bytes
//! seq                            u64
//! prev_leaf_hash                 32 bytes (zeros for seq 0)
//! received_at                    i64, microseconds since the Unix epoch
//! payload_len                    u32
//! payload                        payload_len bytes, verbatim
//! sig_count                      u8, at least 1
//! sig_count x (public_key 32 || signature 64), ascending by public_key, no repeats
//! ```
//!
//! Invariants: `decode(encode(x)) == x`, and `decode` accepts exactly the
//! byte strings `encode` can produce (one encoding per entry), so a leaf hash
//! names one entry and nothing else.

use std::fmt;

use super::merkle::{hash_leaf, Hash};
use super::signing::{EventSignature, MAX_SIGNATURES};

/// Literal prefix of every leaf; versions the whole layout.
pub const LEAF_PREFIX: &[u8; 25] = b"ceasefire-ledger:leaf:v1\n";

/// Largest event payload accepted. An observation's narrative is short and
/// evidence is referenced by digest, so 32 KiB is generous, and with
/// [`MAX_SIGNATURES`] it keeps every leaf below the 64 KiB that a tlog-tiles
/// entry bundle's 16-bit length prefix can carry.
pub const MAX_PAYLOAD_BYTES: usize = 32 * 1024;

/// Fixed-size part of a leaf before the payload.
const HEADER_LEN: usize = 25 + 8 + 32 + 8 + 4;

/// One decoded log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub seq: u64,
    pub prev_leaf_hash: Hash,
    pub received_at_micros: i64,
    pub payload: Vec<u8>,
    /// Sorted by public key, ascending, no duplicates, at least one.
    pub signatures: Vec<EventSignature>,
}

/// Why a byte string is not a leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafError {
    Truncated,
    BadPrefix,
    PayloadTooLarge(usize),
    NoSignatures,
    TooManySignatures(usize),
    SignaturesNotSorted,
    TrailingBytes(usize),
}

impl fmt::Display for LeafError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeafError::Truncated => write!(f, "leaf is truncated"),
            LeafError::BadPrefix => write!(f, "leaf does not start with the v1 leaf prefix"),
            LeafError::PayloadTooLarge(len) => write!(
                f,
                "leaf payload is {len} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit"
            ),
            LeafError::NoSignatures => write!(f, "leaf carries no signature"),
            LeafError::TooManySignatures(n) => {
                write!(
                    f,
                    "leaf carries {n} signatures, over the limit of {MAX_SIGNATURES}"
                )
            }
            LeafError::SignaturesNotSorted => write!(
                f,
                "leaf signatures are not strictly ascending by public key"
            ),
            LeafError::TrailingBytes(n) => write!(f, "leaf has {n} bytes after its last signature"),
        }
    }
}

impl std::error::Error for LeafError {}

impl Leaf {
    /// The leaf bytes of docs/spec.md, exactly.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(HEADER_LEN + self.payload.len() + 1 + 96 * self.signatures.len());
        out.extend_from_slice(LEAF_PREFIX);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.prev_leaf_hash);
        out.extend_from_slice(&self.received_at_micros.to_be_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out.push(self.signatures.len() as u8);
        for signature in &self.signatures {
            out.extend_from_slice(&signature.public_key);
            out.extend_from_slice(&signature.signature);
        }
        out
    }

    /// Parses leaf bytes, accepting only the canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Leaf, LeafError> {
        let mut reader = Reader { bytes };
        if reader.take(LEAF_PREFIX.len())? != LEAF_PREFIX {
            return Err(LeafError::BadPrefix);
        }
        let seq = u64::from_be_bytes(reader.array()?);
        let prev_leaf_hash: Hash = reader.array()?;
        let received_at_micros = i64::from_be_bytes(reader.array()?);
        let payload_len = u32::from_be_bytes(reader.array()?) as usize;
        if payload_len > MAX_PAYLOAD_BYTES {
            return Err(LeafError::PayloadTooLarge(payload_len));
        }
        let payload = reader.take(payload_len)?.to_vec();
        let sig_count = reader.take(1)?[0] as usize;
        if sig_count == 0 {
            return Err(LeafError::NoSignatures);
        }
        if sig_count > MAX_SIGNATURES {
            return Err(LeafError::TooManySignatures(sig_count));
        }
        let mut signatures = Vec::with_capacity(sig_count);
        for _ in 0..sig_count {
            signatures.push(EventSignature {
                public_key: reader.array()?,
                signature: reader.array()?,
            });
        }
        if signatures
            .windows(2)
            .any(|pair| pair[0].public_key >= pair[1].public_key)
        {
            return Err(LeafError::SignaturesNotSorted);
        }
        if !reader.bytes.is_empty() {
            return Err(LeafError::TrailingBytes(reader.bytes.len()));
        }
        Ok(Leaf {
            seq,
            prev_leaf_hash,
            received_at_micros,
            payload,
            signatures,
        })
    }

    /// `SHA-256(0x00 || leaf bytes)`.
    pub fn leaf_hash(&self) -> Hash {
        hash_leaf(&self.encode())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], LeafError> {
        if self.bytes.len() < len {
            return Err(LeafError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], LeafError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::sign_event;
    use ed25519_dalek::SigningKey;

    fn sample() -> Leaf {
        let key = SigningKey::from_bytes(&[0x42; 32]);
        Leaf {
            seq: 7,
            prev_leaf_hash: [0xab; 32],
            received_at_micros: 1_764_000_000_000_000,
            payload: b"an encoded event".to_vec(),
            signatures: vec![sign_event(b"an encoded event", &key)],
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let leaf = sample();
        assert_eq!(Leaf::decode(&leaf.encode()).unwrap(), leaf);
    }

    #[test]
    fn decode_refuses_every_non_canonical_form() {
        let bytes = sample().encode();
        assert_eq!(
            Leaf::decode(&bytes[..bytes.len() - 1]),
            Err(LeafError::Truncated)
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(Leaf::decode(&trailing), Err(LeafError::TrailingBytes(1)));
        let mut prefix = bytes.clone();
        prefix[0] ^= 1;
        assert_eq!(Leaf::decode(&prefix), Err(LeafError::BadPrefix));
        let mut no_sigs = sample();
        no_sigs.signatures.clear();
        assert_eq!(
            Leaf::decode(&no_sigs.encode()),
            Err(LeafError::NoSignatures)
        );
        let mut twice = sample();
        twice.signatures.push(twice.signatures[0]);
        assert_eq!(
            Leaf::decode(&twice.encode()),
            Err(LeafError::SignaturesNotSorted)
        );
    }
}
