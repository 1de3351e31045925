//! Event signatures: Ed25519 over a domain-tagged payload, verified strictly.
//!
//! The signed message is `"ceasefire-ledger:event:v1\n" || payload` (docs/spec.md
//! "Signature"). The tag stops a signature made for anything else (another
//! protocol, a checkpoint) from ever counting as a signature on an event.
//! Verification is `verify_strict` only: batch verification uses the cofactored
//! equation and could accept what strict verification rejects, and the server
//! and every auditor must reach the same verdict on every signature.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use super::rejection::{ReasonCode, Rejection};

/// Domain separation tag prefixed to every signed event payload.
pub const EVENT_SIGNATURE_DOMAIN: &[u8] = b"ceasefire-ledger:event:v1\n";

/// Most signatures one event may carry. Governance needs M of N signatories;
/// 32 leaves room for large agreements while keeping a leaf far below the
/// 64 KiB bound of tlog-tiles entry bundles (32 x 96 bytes = 3 KiB).
pub const MAX_SIGNATURES: usize = 32;

/// One signature on an event, as it appears in a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventSignature {
    pub public_key: [u8; 32],
    pub signature: [u8; 64],
}

/// The message an event signature covers.
pub fn signed_message(payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(EVENT_SIGNATURE_DOMAIN.len() + payload.len());
    message.extend_from_slice(EVENT_SIGNATURE_DOMAIN);
    message.extend_from_slice(payload);
    message
}

/// Signs an encoded event with the domain tag.
pub fn sign_event(payload: &[u8], key: &SigningKey) -> EventSignature {
    EventSignature {
        public_key: key.verifying_key().to_bytes(),
        signature: key.sign(&signed_message(payload)).to_bytes(),
    }
}

/// Turns wire signatures into the leaf's canonical list: right lengths, at
/// least one, at most [`MAX_SIGNATURES`], sorted by public key, no key twice
/// (a signatory's signature can never be counted twice toward a threshold).
pub fn canonical_signatures(
    wire: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
) -> Result<Vec<EventSignature>, Rejection> {
    let mut signatures = Vec::new();
    for (index, (public_key, signature)) in wire.into_iter().enumerate() {
        let public_key: [u8; 32] = public_key.as_slice().try_into().map_err(|_| {
            Rejection::field(
                ReasonCode::SignatureMalformed,
                format!("signatures[{index}].public_key"),
                format!(
                    "signature {index}: public_key must be 32 bytes, got {}",
                    public_key.len()
                ),
            )
        })?;
        let signature: [u8; 64] = signature.as_slice().try_into().map_err(|_| {
            Rejection::field(
                ReasonCode::SignatureMalformed,
                format!("signatures[{index}].signature"),
                format!(
                    "signature {index}: signature must be 64 bytes, got {}",
                    signature.len()
                ),
            )
        })?;
        signatures.push(EventSignature {
            public_key,
            signature,
        });
        if signatures.len() > MAX_SIGNATURES {
            return Err(Rejection::new(
                ReasonCode::SignatureCountInvalid,
                format!("too many signatures: at most {MAX_SIGNATURES}"),
            )
            .with("limit", MAX_SIGNATURES));
        }
    }
    if signatures.is_empty() {
        return Err(Rejection::new(
            ReasonCode::SignatureCountInvalid,
            "the event carries no signature",
        )
        .with("limit", MAX_SIGNATURES));
    }
    signatures.sort_by_key(|a| a.public_key);
    if let Some(pair) = signatures
        .windows(2)
        .find(|pair| pair[0].public_key == pair[1].public_key)
    {
        return Err(Rejection::new(
            ReasonCode::SignerDuplicated,
            format!(
                "key {} signs twice: each key may sign an event once",
                crate::key_text(pair[0].public_key)
            ),
        )
        .with("public_key", crate::key_text(pair[0].public_key)));
    }
    Ok(signatures)
}

/// Whether `bytes` is a key the ledger accepts for registration: a canonical
/// encoding of a curve point that is not of small order. Every signing key must
/// be registered first, so non-canonical or weak keys can never sign an event.
pub fn is_acceptable_public_key(bytes: &[u8; 32]) -> bool {
    let compressed = curve25519_dalek::edwards::CompressedEdwardsY(*bytes);
    match compressed.decompress() {
        Some(point) => point.compress().to_bytes() == *bytes && !point.is_small_order(),
        None => false,
    }
}

/// Decoded public keys kept per thread (each verifying thread has its own,
/// so threads never wait for each other). Decoding a key is a square root
/// in the field, about a tenth of a strict verification on these machines,
/// and events are signed by the few keys of registered parties. Past this
/// many keys (a flood of events under random keys) the cache starts over,
/// so it never holds more than ~0.5 MiB per thread (224 bytes an entry,
/// in a table that keeps its 2,048 buckets).
const DECODED_KEYS_PER_THREAD: usize = 1024;

thread_local! {
    static DECODED_KEYS: std::cell::RefCell<std::collections::HashMap<[u8; 32], VerifyingKey>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The key `public_key` encodes, decoded once per thread. Decoding is a
/// pure function of the bytes, so a cached key gives the same verdicts.
fn decoded_key(public_key: &[u8; 32]) -> Result<VerifyingKey, Rejection> {
    DECODED_KEYS.with(|cache| {
        if let Some(key) = cache.borrow().get(public_key) {
            return Ok(*key);
        }
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| {
            Rejection::new(
                ReasonCode::SignatureInvalid,
                format!(
                    "public key {} is not a valid Ed25519 point",
                    crate::key_text(public_key)
                ),
            )
            .with("public_key", crate::key_text(public_key))
        })?;
        let mut cache = cache.borrow_mut();
        if cache.len() >= DECODED_KEYS_PER_THREAD {
            cache.clear();
        }
        cache.insert(*public_key, key);
        Ok(key)
    })
}

/// Strictly verifies one signature over the domain-tagged payload.
pub fn verify_event_signature(payload: &[u8], signature: &EventSignature) -> Result<(), Rejection> {
    let key = decoded_key(&signature.public_key)?;
    let sig = ed25519_dalek::Signature::from_bytes(&signature.signature);
    key.verify_strict(&signed_message(payload), &sig)
        .map_err(|_| {
            Rejection::new(
                ReasonCode::SignatureInvalid,
                format!(
                    "signature by key {} does not verify over this payload",
                    crate::key_text(signature.public_key)
                ),
            )
            .with("public_key", crate::key_text(signature.public_key))
        })
}

/// Verifies every signature; the first failure is the answer.
pub fn verify_all(payload: &[u8], signatures: &[EventSignature]) -> Result<(), Rejection> {
    signatures
        .iter()
        .try_for_each(|signature| verify_event_signature(payload, signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32])
    }

    #[test]
    fn a_signature_verifies_only_over_its_payload() {
        let signature = sign_event(b"payload", &key(1));
        assert!(verify_event_signature(b"payload", &signature).is_ok());
        assert!(verify_event_signature(b"payloaD", &signature).is_err());
    }

    #[test]
    fn a_cached_key_gives_the_verdicts_of_a_fresh_one() {
        let signature = sign_event(b"payload", &key(7));
        // First use decodes the key, the second finds it cached: same verdicts.
        for _ in 0..2 {
            assert!(verify_event_signature(b"payload", &signature).is_ok());
            assert!(verify_event_signature(b"other", &signature).is_err());
        }
        // An invalid key is refused every time (never cached).
        let mut bad = signature;
        bad.public_key = (1..=127u8)
            .map(|byte| [byte; 32])
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .expect("some y has no point");
        for _ in 0..2 {
            let refused = verify_event_signature(b"payload", &bad).unwrap_err();
            assert!(
                refused.message.contains("not a valid Ed25519 point"),
                "{refused:?}"
            );
        }
        // A full cache starts over and still verifies.
        for byte in 0..=255u8 {
            for other in 0..5u8 {
                let mut public_key = [byte; 32];
                public_key[0] = other;
                let _ = decoded_key(&public_key);
            }
        }
        assert!(verify_event_signature(b"payload", &signature).is_ok());
    }

    #[test]
    fn a_signature_without_the_domain_tag_is_refused() {
        let raw = key(1).sign(b"payload");
        let signature = EventSignature {
            public_key: key(1).verifying_key().to_bytes(),
            signature: raw.to_bytes(),
        };
        assert!(verify_event_signature(b"payload", &signature).is_err());
    }

    #[test]
    fn canonical_signatures_sort_and_refuse_duplicates() {
        let a = sign_event(b"p", &key(1));
        let b = sign_event(b"p", &key(2));
        let wire = |s: &EventSignature| (s.public_key.to_vec(), s.signature.to_vec());
        let sorted = canonical_signatures([wire(&b), wire(&a)]).unwrap();
        assert!(sorted[0].public_key < sorted[1].public_key);
        assert!(canonical_signatures([wire(&a), wire(&a)]).is_err());
        assert!(canonical_signatures(Vec::new()).is_err());
        assert!(canonical_signatures([(vec![0; 31], vec![0; 64])]).is_err());
    }

    #[test]
    fn small_order_and_non_canonical_keys_are_not_acceptable() {
        assert!(is_acceptable_public_key(&key(3).verifying_key().to_bytes()));
        // The identity point (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(!is_acceptable_public_key(&identity));
        // y = p + 1 is a non-canonical encoding of the identity.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        assert!(!is_acceptable_public_key(&non_canonical));
    }
}
