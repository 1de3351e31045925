//! Golden vectors for the normative bytes (DESIGN.md section 3, docs/spec.md):
//! the event signature, the leaf and its hash, and the signed checkpoint.
//!
//! Each vector is checked three ways: against the hex written here (which
//! docs/spec.md cites), against the crate's encoder, and against bytes built
//! here by hand from the spec (literal prefix, big-endian integers, SHA-256
//! with sha2, Ed25519 with ed25519-dalek), so a change to the crate that
//! alters a normative byte fails here. The hex values were cross-checked
//! with Python's hashlib and `cryptography` (Ed25519 is deterministic).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ceasefire_core::checkpoint::{
    key_id, open_checkpoint, sign_checkpoint, CheckpointBody, NoteSigner, NoteVerifier,
};
use ceasefire_core::leaf::{Leaf, LEAF_PREFIX};
use ceasefire_core::merkle::{empty_root, hash_leaf};
use ceasefire_core::signing::{
    canonical_signatures, sign_event, signed_message, verify_event_signature,
    EVENT_SIGNATURE_DOMAIN,
};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The event payload of the vectors: any bytes will do for the leaf and the
/// signature, which never look inside the payload.
const PAYLOAD: &[u8] = b"ceasefire-ledger golden payload";
const SIGNER_SEED: [u8; 32] = [0x01; 32];
const SECOND_SIGNER_SEED: [u8; 32] = [0x03; 32];
const SEQ: u64 = 1;
const PREV_LEAF_HASH: [u8; 32] = [0x11; 32];
const RECEIVED_AT_MICROS: i64 = 1_764_000_000_000_000;

/// Ed25519 public key of seed [0x01; 32].
const SIGNER_PUBLIC_KEY_HEX: &str =
    "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
/// Ed25519 over "ceasefire-ledger:event:v1\n" || PAYLOAD with seed [0x01; 32].
const EVENT_SIGNATURE_HEX: &str = "368797b6a30490571d78b2f21a8572ce119d4aa50fe2fc2d56c495711463480258a6f9e7a6f93c972aa483aab490ed9584d9c7a11900b7c6b7af75ff0ae5c505";
/// The leaf: seq 1, prev [0x11; 32], received_at 1764000000000000, PAYLOAD,
/// one signature (the one above).
const LEAF_HEX: &str = concat!(
    "6365617365666972652d6c65646765723a6c6561663a76310a", // "ceasefire-ledger:leaf:v1\n"
    "0000000000000001",                                   // seq
    "1111111111111111111111111111111111111111111111111111111111111111", // prev_leaf_hash
    "0006445941624000",                                   // received_at
    "0000001f",                                           // payload_len (31)
    "6365617365666972652d6c656467657220676f6c64656e207061796c6f6164", // payload
    "01",                                                 // sig_count
    "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c", // public_key
    "368797b6a30490571d78b2f21a8572ce119d4aa50fe2fc2d56c495711463480258a6f9e7a6f93c972aa483aab490ed9584d9c7a11900b7c6b7af75ff0ae5c505", // signature
);
/// SHA-256(0x00 || leaf).
const LEAF_HASH_HEX: &str = "25751185ed427a4611558390bc685c2e1ff3b8cbda3ba270143bae3040b8014c";
/// The same leaf signed by seeds [0x01; 32] and [0x03; 32] (sorted by key).
const TWO_SIGNATURE_LEAF_HASH_HEX: &str =
    "b4acca1a164823f8c411d9c6c60d0088fd0b0f1186d98616ced264cea8fe5969";

const OPERATOR_SEED: [u8; 32] = [0x02; 32];
const ORIGIN: &str = "example.org/ceasefire-ledger";
const OPERATOR_PUBLIC_KEY_HEX: &str =
    "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";
/// SHA-256(ORIGIN || "\n" || 0x01 || operator public key)[..4].
const OPERATOR_KEY_ID_HEX: &str = "ead1bfd5";
/// The verifier key in the `name+hexid+base64(0x01 || key)` form.
const OPERATOR_VERIFIER_KEY: &str =
    "example.org/ceasefire-ledger+ead1bfd5+AYE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU";
/// Checkpoint of size 5 with root SHA-256(""), signed with seed [0x02; 32].
const CHECKPOINT_NOTE: &str = concat!(
    "example.org/ceasefire-ledger\n",
    "5\n",
    "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
    "\n",
    "\u{2014} example.org/ceasefire-ledger 6tG/1YHlbzYpnSwrOn64P7aDtnVKjB5TmLhtxD8JpyYTVpGlc3a2ybhMWlANO0loL2B3T99cO7Gk0JNDWeedDzpqOgk=\n",
);

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The leaf bytes built by hand from the spec's table.
fn leaf_by_hand(signatures: &[([u8; 32], [u8; 64])]) -> Vec<u8> {
    let mut leaf = Vec::new();
    leaf.extend_from_slice(b"ceasefire-ledger:leaf:v1\n");
    leaf.extend_from_slice(&SEQ.to_be_bytes());
    leaf.extend_from_slice(&PREV_LEAF_HASH);
    leaf.extend_from_slice(&RECEIVED_AT_MICROS.to_be_bytes());
    leaf.extend_from_slice(&(PAYLOAD.len() as u32).to_be_bytes());
    leaf.extend_from_slice(PAYLOAD);
    leaf.push(signatures.len() as u8);
    let mut sorted = signatures.to_vec();
    sorted.sort();
    for (public_key, signature) in sorted {
        leaf.extend_from_slice(&public_key);
        leaf.extend_from_slice(&signature);
    }
    leaf
}

/// Ed25519 over the domain-tagged payload, made with ed25519-dalek directly.
fn signature_by_hand(seed: [u8; 32]) -> ([u8; 32], [u8; 64]) {
    let key = SigningKey::from_bytes(&seed);
    let mut message = b"ceasefire-ledger:event:v1\n".to_vec();
    message.extend_from_slice(PAYLOAD);
    (
        key.verifying_key().to_bytes(),
        key.sign(&message).to_bytes(),
    )
}

#[test]
fn event_signature_golden_vector() {
    let key = SigningKey::from_bytes(&SIGNER_SEED);
    assert_eq!(
        hex::encode(key.verifying_key().to_bytes()),
        SIGNER_PUBLIC_KEY_HEX
    );
    assert_eq!(EVENT_SIGNATURE_DOMAIN, b"ceasefire-ledger:event:v1\n");
    assert_eq!(
        signed_message(PAYLOAD),
        [b"ceasefire-ledger:event:v1\n".as_slice(), PAYLOAD].concat()
    );
    let signature = sign_event(PAYLOAD, &key);
    assert_eq!(hex::encode(signature.signature), EVENT_SIGNATURE_HEX);
    assert_eq!(
        (signature.public_key, signature.signature),
        signature_by_hand(SIGNER_SEED)
    );
    // It verifies strictly over the tagged message, and only there.
    let public = VerifyingKey::from_bytes(&signature.public_key).unwrap();
    let tagged = [EVENT_SIGNATURE_DOMAIN, PAYLOAD].concat();
    public
        .verify_strict(&tagged, &Signature::from_bytes(&signature.signature))
        .unwrap();
    assert!(public
        .verify_strict(PAYLOAD, &Signature::from_bytes(&signature.signature))
        .is_err());
    verify_event_signature(PAYLOAD, &signature).unwrap();
}

#[test]
fn leaf_golden_vector() {
    let key = SigningKey::from_bytes(&SIGNER_SEED);
    let leaf = Leaf {
        seq: SEQ,
        prev_leaf_hash: PREV_LEAF_HASH,
        received_at_micros: RECEIVED_AT_MICROS,
        payload: PAYLOAD.to_vec(),
        signatures: vec![sign_event(PAYLOAD, &key)],
    };
    let bytes = leaf.encode();
    assert_eq!(hex::encode(&bytes), LEAF_HEX);
    assert_eq!(bytes, leaf_by_hand(&[signature_by_hand(SIGNER_SEED)]));
    assert_eq!(LEAF_PREFIX, b"ceasefire-ledger:leaf:v1\n");
    // 25 + 8 + 32 + 8 + 4 + payload + 1 + 96.
    assert_eq!(bytes.len(), 77 + PAYLOAD.len() + 1 + 96);
    assert_eq!(Leaf::decode(&hex::decode(LEAF_HEX).unwrap()).unwrap(), leaf);

    let by_hand = sha256(&[&[0x00], &bytes]);
    assert_eq!(hex::encode(by_hand), LEAF_HASH_HEX);
    assert_eq!(hash_leaf(&bytes), by_hand);
    assert_eq!(leaf.leaf_hash(), by_hand);
    // The leaf hash is not the plain SHA-256 of the leaf.
    assert_ne!(sha256(&[&bytes]), by_hand);
}

#[test]
fn two_signature_leaf_golden_vector() {
    let first = SigningKey::from_bytes(&SIGNER_SEED);
    let second = SigningKey::from_bytes(&SECOND_SIGNER_SEED);
    let wire = |key: &SigningKey| {
        let signature = sign_event(PAYLOAD, key);
        (signature.public_key.to_vec(), signature.signature.to_vec())
    };
    // Given in either order, the leaf carries them sorted by public key.
    let forward = canonical_signatures([wire(&first), wire(&second)]).unwrap();
    let backward = canonical_signatures([wire(&second), wire(&first)]).unwrap();
    assert_eq!(forward, backward);
    assert!(forward[0].public_key < forward[1].public_key);
    let leaf = Leaf {
        seq: SEQ,
        prev_leaf_hash: PREV_LEAF_HASH,
        received_at_micros: RECEIVED_AT_MICROS,
        payload: PAYLOAD.to_vec(),
        signatures: forward,
    };
    let bytes = leaf.encode();
    assert_eq!(
        bytes,
        leaf_by_hand(&[
            signature_by_hand(SECOND_SIGNER_SEED),
            signature_by_hand(SIGNER_SEED)
        ])
    );
    assert_eq!(
        hex::encode(sha256(&[&[0x00], &bytes])),
        TWO_SIGNATURE_LEAF_HASH_HEX
    );
    assert_eq!(hex::encode(leaf.leaf_hash()), TWO_SIGNATURE_LEAF_HASH_HEX);
}

#[test]
fn checkpoint_golden_vector() {
    let operator = SigningKey::from_bytes(&OPERATOR_SEED);
    let public = operator.verifying_key();
    assert_eq!(hex::encode(public.to_bytes()), OPERATOR_PUBLIC_KEY_HEX);

    // The key id, from the formula.
    let id_by_hand: [u8; 4] = sha256(&[ORIGIN.as_bytes(), b"\n", &[0x01], public.as_bytes()])[..4]
        .try_into()
        .unwrap();
    assert_eq!(hex::encode(id_by_hand), OPERATOR_KEY_ID_HEX);
    assert_eq!(key_id(ORIGIN, &public), id_by_hand);
    let signer = NoteSigner::new(ORIGIN, operator.clone()).unwrap();
    assert_eq!(signer.key_id(), id_by_hand);
    assert_eq!(signer.verifier().encoded_key(), OPERATOR_VERIFIER_KEY);
    assert_eq!(
        OPERATOR_VERIFIER_KEY,
        format!(
            "{ORIGIN}+{}+{}",
            hex::encode(id_by_hand),
            BASE64.encode([&[0x01], public.as_bytes().as_slice()].concat())
        )
    );

    // The root of the empty tree is SHA-256("").
    let root = empty_root();
    assert_eq!(
        hex::encode(root),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let body = CheckpointBody {
        origin: ORIGIN.into(),
        tree_size: 5,
        root_hash: root,
    };
    let note = sign_checkpoint(&body, &signer).unwrap();
    assert_eq!(note, CHECKPOINT_NOTE);

    // The note, by hand: body text, blank line, one signature line.
    let text = format!("{ORIGIN}\n5\n{}\n", BASE64.encode(root));
    assert_eq!(body.to_text(), text);
    let signature = operator.sign(text.as_bytes()).to_bytes();
    let blob = [id_by_hand.as_slice(), signature.as_slice()].concat();
    let by_hand = format!("{text}\n\u{2014} {ORIGIN} {}\n", BASE64.encode(blob));
    assert_eq!(note, by_hand);

    // It opens with the operator's verifier, and not with another key.
    let verifier = NoteVerifier::new(ORIGIN, &public).unwrap();
    assert_eq!(open_checkpoint(CHECKPOINT_NOTE, &verifier).unwrap(), body);
    let stranger = SigningKey::from_bytes(&SIGNER_SEED).verifying_key();
    assert!(open_checkpoint(
        CHECKPOINT_NOTE,
        &NoteVerifier::new(ORIGIN, &stranger).unwrap()
    )
    .is_err());
    // A changed size in the text breaks the signature.
    let tampered = CHECKPOINT_NOTE.replacen("\n5\n", "\n6\n", 1);
    assert!(open_checkpoint(&tampered, &verifier).is_err());
}

/// The same vectors as data any language can load
/// (`testdata/golden/vectors.json`, cited by docs/spec.md section 8): the
/// file must hold exactly the values asserted above.
#[test]
fn the_vector_file_holds_the_vectors_checked_here() {
    let file: serde_json::Value =
        serde_json::from_str(include_str!("../testdata/golden/vectors.json")).unwrap();
    let text = |path: &str| {
        file.pointer(path)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_else(|| panic!("{path} missing from testdata/golden/vectors.json"))
            .to_string()
    };
    let number = |path: &str| {
        file.pointer(path)
            .and_then(serde_json::Value::as_i64)
            .unwrap()
    };
    assert_eq!(text("/event_signature/seed"), hex::encode(SIGNER_SEED));
    assert_eq!(text("/event_signature/public_key"), SIGNER_PUBLIC_KEY_HEX);
    assert_eq!(text("/event_signature/payload"), hex::encode(PAYLOAD));
    assert_eq!(
        text("/event_signature/signed_message_prefix").as_bytes(),
        EVENT_SIGNATURE_DOMAIN
    );
    assert_eq!(text("/event_signature/signature"), EVENT_SIGNATURE_HEX);
    assert_eq!(number("/leaf/seq") as u64, SEQ);
    assert_eq!(text("/leaf/prev_leaf_hash"), hex::encode(PREV_LEAF_HASH));
    assert_eq!(number("/leaf/received_at_micros"), RECEIVED_AT_MICROS);
    assert_eq!(text("/leaf/leaf"), LEAF_HEX);
    assert_eq!(text("/leaf/leaf_hash"), LEAF_HASH_HEX);
    assert_eq!(
        text("/leaf/two_signature_seeds/1"),
        hex::encode(SECOND_SIGNER_SEED)
    );
    assert_eq!(
        text("/leaf/two_signature_leaf_hash"),
        TWO_SIGNATURE_LEAF_HASH_HEX
    );
    assert_eq!(
        text("/checkpoint/operator_seed"),
        hex::encode(OPERATOR_SEED)
    );
    assert_eq!(
        text("/checkpoint/operator_public_key"),
        OPERATOR_PUBLIC_KEY_HEX
    );
    assert_eq!(text("/checkpoint/origin"), ORIGIN);
    assert_eq!(text("/checkpoint/key_id"), OPERATOR_KEY_ID_HEX);
    assert_eq!(text("/checkpoint/verifier_key"), OPERATOR_VERIFIER_KEY);
    assert_eq!(number("/checkpoint/tree_size"), 5);
    assert_eq!(text("/checkpoint/root_hash"), hex::encode(empty_root()));
    assert_eq!(text("/checkpoint/note"), CHECKPOINT_NOTE);
}
