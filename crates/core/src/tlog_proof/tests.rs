//! Receipt files: the text round trips, every malformed form is refused by
//! name, and each tampering of a real receipt fails the check it breaks.

use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::*;
use crate::checkpoint::{sign_checkpoint, NoteSigner};
use crate::cosignature::{add_signature_lines, Cosigner};
use crate::merkle::{consistency_proof, inclusion_proof, root, MemorySource};
use crate::proto::{event::Body, Party, RegisterParty, SetWitnessPolicy, Witness, WitnessGroup};
use crate::test_leaf::signed_leaf;

const ORIGIN: &str = "receipts.example/log";

fn key(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32])
}

fn operator() -> NoteSigner {
    NoteSigner::new(ORIGIN, key(9)).unwrap()
}

/// A log of `size` signed leaves (each registering a party) and its tree.
struct TestLog {
    leaves: Vec<Vec<u8>>,
    tree: MemorySource,
}

impl TestLog {
    fn new(size: u64) -> TestLog {
        let mut log = TestLog {
            leaves: Vec::new(),
            tree: MemorySource::new(),
        };
        log.grow(size);
        log
    }

    fn grow(&mut self, more: u64) {
        for _ in 0..more {
            let seq = self.leaves.len() as u64;
            let body = Body::RegisterParty(RegisterParty {
                party: Some(Party {
                    party_id: format!("party-{seq}"),
                    ..Party::default()
                }),
            });
            let prev = self.tree.levels().first().and_then(|l| l.last()).copied();
            let (_, leaf) = signed_leaf(
                "agreement",
                "author",
                seq + 1,
                1_000_000 + seq as i64,
                body,
                &key(1),
                seq,
                prev.unwrap_or([0; 32]),
            );
            self.push(leaf.encode());
        }
    }

    fn push(&mut self, leaf: Vec<u8>) {
        self.tree.push(crate::merkle::hash_leaf(&leaf));
        self.leaves.push(leaf);
    }

    fn checkpoint(&self) -> String {
        let size = self.tree.size();
        let body = CheckpointBody {
            origin: ORIGIN.into(),
            tree_size: size,
            root_hash: root(&self.tree, size).unwrap(),
        };
        sign_checkpoint(&body, &operator()).unwrap()
    }

    fn receipt(&self, seq: u64) -> TlogProof {
        TlogProof {
            extra: Some(self.leaves[seq as usize].clone()),
            index: seq,
            inclusion_proof: inclusion_proof(&self.tree, seq, self.tree.size()).unwrap(),
            checkpoint: self.checkpoint(),
        }
    }
}

fn log_key() -> NoteVerifier {
    operator().verifier()
}

#[test]
fn a_receipt_round_trips_through_its_text() {
    let log = TestLog::new(7);
    for seq in [0, 3, 6] {
        let receipt = log.receipt(seq);
        let text = receipt.to_text();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "));
        assert!(text.contains(&format!("\nindex {seq}\n")));
        assert_eq!(TlogProof::parse(&text).unwrap(), receipt);
    }
    // A one-leaf tree: no proof lines, the blank line right after the index.
    let single = TestLog::new(1).receipt(0);
    assert!(single
        .to_text()
        .contains("\nindex 0\n\nreceipts.example/log\n1\n"));
    assert_eq!(TlogProof::parse(&single.to_text()).unwrap(), single);
    // Without extra data, as other logs write them.
    let bare = TlogProof {
        extra: None,
        ..log.receipt(2)
    };
    assert!(bare
        .to_text()
        .starts_with("c2sp.org/tlog-proof@v1\nindex 2\n"));
    assert_eq!(TlogProof::parse(&bare.to_text()).unwrap(), bare);
}

#[test]
fn the_spec_example_parses() {
    let text = "c2sp.org/tlog-proof@v1\nextra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6\nindex 73894\n\
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\nB95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n\n\
example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n\u{2014} example.com/fancylog hI2DJw==\n";
    let proof = TlogProof::parse(text).unwrap();
    assert_eq!(
        proof.extra.as_deref(),
        Some(&b"age-v1.2.1-darwin-arm64.tar.gz"[..])
    );
    assert_eq!(proof.index, 73894);
    assert_eq!(proof.inclusion_proof.len(), 2);
    assert!(proof
        .checkpoint
        .starts_with("example.com/fancylog\n109482\n"));
    assert_eq!(proof.to_text(), text);
}

/// Whether an error is the one a malformed case must give.
type IsExpected = fn(&TlogProofError) -> bool;

#[test]
fn malformed_files_are_refused_by_name() {
    let good = TestLog::new(5).receipt(2).to_text();
    let hash_line = good.lines().nth(3).unwrap().to_owned();
    let cases: Vec<(String, IsExpected)> = vec![
        ("".into(), |e| {
            matches!(e, TlogProofError::MissingHeader { .. })
        }),
        (good.replacen("tlog-proof@v1", "tlog-proof@v2", 1), |e| {
            matches!(e, TlogProofError::MissingHeader { .. })
        }),
        (
            good.replacen("tlog-proof@v1\n", "tlog-proof@v1\r\n", 1),
            |e| matches!(e, TlogProofError::MissingHeader { .. }),
        ),
        ("c2sp.org/tlog-proof@v1\n".into(), |e| {
            matches!(e, TlogProofError::MissingIndex { line: 2, .. })
        }),
        (good.replacen("\nextra ", "\nextra !", 1), |e| {
            matches!(e, TlogProofError::MalformedExtra)
        }),
        (good.replacen("\nindex 2\n", "\nindex: 2\n", 1), |e| {
            matches!(e, TlogProofError::MissingIndex { line: 3, .. })
        }),
        (good.replacen("\nindex 2\n", "\nindex 02\n", 1), |e| {
            matches!(e, TlogProofError::NonCanonicalIndex { .. })
        }),
        (good.replacen("\nindex 2\n", "\nindex -2\n", 1), |e| {
            matches!(e, TlogProofError::NonCanonicalIndex { .. })
        }),
        (
            good.replacen("\nindex 2\n", "\nindex 18446744073709551616\n", 1),
            |e| matches!(e, TlogProofError::NonCanonicalIndex { .. }),
        ),
        (
            good.replacen(&hash_line, &hash_line[..hash_line.len() - 4], 1),
            |e| matches!(e, TlogProofError::MalformedProofHash { line: 4, .. }),
        ),
        (
            good.replacen(&hash_line, &format!("{hash_line} "), 1),
            |e| matches!(e, TlogProofError::MalformedProofHash { line: 4, .. }),
        ),
        (good.split("\n\n").next().unwrap().to_owned() + "\n", |e| {
            matches!(e, TlogProofError::MissingCheckpoint)
        }),
        (
            good.split("\n\n").next().unwrap().to_owned() + "\n\n",
            |e| matches!(e, TlogProofError::MissingCheckpoint),
        ),
        (
            good.replacen(&hash_line, &format!("{hash_line}\n").repeat(65), 1),
            |e| matches!(e, TlogProofError::TooManyProofHashes { max: 64 }),
        ),
        ("x".repeat(MAX_TLOG_PROOF_BYTES + 1), |e| {
            matches!(e, TlogProofError::TooLarge { .. })
        }),
    ];
    for (text, expected) in cases {
        let error = TlogProof::parse(&text).unwrap_err();
        assert!(expected(&error), "{error:?} for {:?}", excerpt(&text));
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn a_receipt_verifies_with_the_log_key_alone() {
    let log = TestLog::new(6);
    for seq in 0..6 {
        let verified = verify_receipt(&log.receipt(seq), &log_key(), None).unwrap();
        assert_eq!(verified.leaf.seq, seq);
        assert_eq!(verified.checkpoint.tree_size, 6);
        assert_eq!(verified.event.author, "author");
        assert!(verified.witnessed.is_none());
    }
}

#[test]
fn each_tampering_fails_the_check_it_breaks() {
    let log = TestLog::new(6);
    let good = log.receipt(3);

    let mut leaf = good.clone();
    let last = leaf.extra.as_mut().unwrap().len() - 1;
    leaf.extra.as_mut().unwrap()[last - 70] ^= 1; // inside the signature block's key
    let error = verify_receipt(&leaf, &log_key(), None).unwrap_err();
    assert!(matches!(error, ReceiptError::Inclusion { .. }), "{error}");

    let mut truncated = good.clone();
    truncated.extra.as_mut().unwrap().pop();
    let error = verify_receipt(&truncated, &log_key(), None).unwrap_err();
    assert!(matches!(error, ReceiptError::Leaf(_)), "{error}");

    let no_entry = TlogProof {
        extra: None,
        ..good.clone()
    };
    let error = verify_receipt(&no_entry, &log_key(), None).unwrap_err();
    assert!(matches!(error, ReceiptError::NoEntry), "{error}");

    let index = TlogProof {
        index: 4,
        ..good.clone()
    };
    let error = verify_receipt(&index, &log_key(), None).unwrap_err();
    assert!(
        matches!(
            error,
            ReceiptError::IndexMismatch {
                index: 4,
                leaf_seq: 3
            }
        ),
        "{error}"
    );

    let mut proof = good.clone();
    proof.inclusion_proof[1][0] ^= 1;
    let error = verify_receipt(&proof, &log_key(), None).unwrap_err();
    assert!(
        matches!(
            error,
            ReceiptError::Inclusion {
                error: VerifyError::RootMismatch,
                ..
            }
        ),
        "{error}"
    );

    let mut short = good.clone();
    short.inclusion_proof.pop();
    let error = verify_receipt(&short, &log_key(), None).unwrap_err();
    assert!(
        matches!(
            error,
            ReceiptError::Inclusion {
                error: VerifyError::WrongProofLength { .. },
                ..
            }
        ),
        "{error}"
    );

    // One character of the operator's signature changed.
    let mut signature = good.clone();
    let at = signature.checkpoint.len() - 6;
    let flipped = if &signature.checkpoint[at..at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    signature.checkpoint.replace_range(at..at + 1, flipped);
    let error = verify_receipt(&signature, &log_key(), None).unwrap_err();
    assert!(
        matches!(
            error,
            ReceiptError::Checkpoint(CheckpointError::BadSignature { .. })
        ),
        "{error}"
    );

    let other_key = NoteSigner::new(ORIGIN, key(8)).unwrap().verifier();
    let error = verify_receipt(&good, &other_key, None).unwrap_err();
    assert!(
        matches!(
            error,
            ReceiptError::Checkpoint(CheckpointError::UnknownKey { .. })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("operator signature"));
}

#[test]
fn a_leaf_with_a_bad_author_signature_fails_even_when_included() {
    let mut log = TestLog::new(2);
    let (_, mut leaf) = signed_leaf(
        "agreement",
        "author",
        99,
        2_000_000,
        Body::RegisterParty(RegisterParty::default()),
        &key(1),
        2,
        [0; 32],
    );
    leaf.signatures[0].signature[0] ^= 1;
    log.push(leaf.encode());
    let error = verify_receipt(&log.receipt(2), &log_key(), None).unwrap_err();
    assert!(matches!(error, ReceiptError::AuthorSignature(_)), "{error}");
}

fn cosigners() -> Vec<Cosigner> {
    ["north.example/w", "south.example/w", "mediator.example/w"]
        .iter()
        .zip(1u8..)
        .map(|(name, seed)| Cosigner::new(name, key(20 + seed)).unwrap())
        .collect()
}

fn two_of_three() -> WitnessPolicy {
    let cosigners = cosigners();
    WitnessPolicy::from_event(
        &SetWitnessPolicy {
            witnesses: cosigners
                .iter()
                .map(|c| Witness {
                    name: c.name().into(),
                    public_key: c.verifier().public_key().as_bytes().to_vec(),
                    url: String::new(),
                })
                .collect(),
            groups: vec![WitnessGroup {
                name: "signatories".into(),
                threshold: 2,
                members: cosigners.iter().map(|c| c.name().to_owned()).collect(),
            }],
            quorum: "signatories".into(),
        },
        false,
    )
    .unwrap()
}

fn cosigned_by(note: &str, how_many: usize) -> String {
    let text = &note[..note.find("\n\n").unwrap() + 1];
    let lines: String = cosigners()
        .iter()
        .take(how_many)
        .map(|c| c.cosign(text, 1_700_000_000))
        .collect();
    add_signature_lines(note, &lines)
}

#[test]
fn with_a_policy_the_quorum_must_have_cosigned() {
    let log = TestLog::new(4);
    let policy = two_of_three();
    let mut receipt = log.receipt(1);
    receipt.checkpoint = cosigned_by(&receipt.checkpoint, 2);
    let verified = verify_receipt(&receipt, &log_key(), Some(&policy)).unwrap();
    assert!(verified.witnessed.unwrap().satisfied);
    // Cosignatures do not get in the way of a verifier without a policy.
    verify_receipt(&receipt, &log_key(), None).unwrap();

    receipt.checkpoint = cosigned_by(&log.checkpoint(), 1);
    let error = verify_receipt(&receipt, &log_key(), Some(&policy)).unwrap_err();
    let ReceiptError::NotWitnessed {
        cosigned, missing, ..
    } = &error
    else {
        panic!("{error}")
    };
    assert_eq!(cosigned, &["north.example/w"]);
    assert_eq!(missing, &["south.example/w", "mediator.example/w"]);
}

#[test]
fn a_refresh_moves_to_a_consistent_newer_checkpoint_only() {
    let mut log = TestLog::new(5);
    let old = log.receipt(2);
    log.grow(6);
    let new_checkpoint = log.checkpoint();
    let consistency = consistency_proof(&log.tree, 5, 11).unwrap();
    let inclusion = inclusion_proof(&log.tree, 2, 11).unwrap();
    let (refreshed, verified) = refresh_receipt(
        &old,
        &log_key(),
        None,
        &new_checkpoint,
        &consistency,
        inclusion.clone(),
    )
    .unwrap();
    assert_eq!(verified.checkpoint.tree_size, 11);
    assert_eq!(refreshed.extra, old.extra);
    assert_eq!(refreshed, log.receipt(2));

    // A bad consistency proof, or a tree that forked from the receipt's.
    let mut bad = consistency.clone();
    bad[0][0] ^= 1;
    let error = refresh_receipt(
        &old,
        &log_key(),
        None,
        &new_checkpoint,
        &bad,
        inclusion.clone(),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            ReceiptError::Inconsistent {
                old_size: 5,
                new_size: 11,
                ..
            }
        ),
        "{error}"
    );
    let fork = TestLog::new(11);
    let mut forked = TestLog::new(0);
    for leaf in &fork.leaves {
        forked.push(leaf.iter().rev().copied().collect());
    }
    let error = refresh_receipt(
        &old,
        &log_key(),
        None,
        &forked.checkpoint(),
        &consistency,
        inclusion.clone(),
    )
    .unwrap_err();
    assert!(
        matches!(error, ReceiptError::Inconsistent { .. }),
        "{error}"
    );

    // Under a policy, the new checkpoint must be witnessed.
    let policy = two_of_three();
    let error = refresh_receipt(
        &old,
        &log_key(),
        Some(&policy),
        &new_checkpoint,
        &consistency,
        inclusion.clone(),
    )
    .unwrap_err();
    assert!(
        matches!(error, ReceiptError::NotWitnessed { .. }),
        "{error}"
    );
    let (witnessed, _) = refresh_receipt(
        &old,
        &log_key(),
        Some(&policy),
        &cosigned_by(&new_checkpoint, 2),
        &consistency,
        inclusion,
    )
    .unwrap();
    verify_receipt(&witnessed, &log_key(), Some(&policy)).unwrap();
}

proptest! {
    #[test]
    fn parsing_never_panics(text in "(c2sp.org/tlog-proof@v1\n)?(extra [A-Za-z0-9+/=]{0,12}\n)?(index [0-9]{0,3}\n)?[A-Za-z0-9+/=\n\u{2014} ]{0,200}") {
        if let Ok(proof) = TlogProof::parse(&text) {
            prop_assert_eq!(proof.to_text(), text);
        }
    }

    #[test]
    fn any_proof_round_trips(
        extra in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        index in any::<u64>(),
        hashes in proptest::collection::vec(any::<[u8; 32]>(), 0..8),
        checkpoint in "[a-z]{1,8}\n[0-9]{1,3}\n[a-z]{1,8}\n\n\u{2014} [a-z]{1,8} [a-z]{1,8}\n",
    ) {
        let proof = TlogProof { extra, index, inclusion_proof: hashes, checkpoint };
        prop_assert_eq!(TlogProof::parse(&proof.to_text()).unwrap(), proof);
    }
}

// ---- known-answer vectors ----------------------------------------------------------

/// Where the vectors live, from this crate.
const VECTORS_PATH: &str = "../../testdata/receipts/vectors.json";

/// The operator of docs/spec.md section 8's checkpoint vector.
const VECTOR_ORIGIN: &str = "example.org/ceasefire-ledger";

fn vector_operator() -> NoteSigner {
    NoteSigner::new(VECTOR_ORIGIN, key(2)).unwrap()
}

/// A five-entry log as in [`TestLog`], checkpointed by the vector operator,
/// with entry 3 replaced by `entry_3` when given (the bad ones).
fn vector_receipt(entry_3: Option<Vec<u8>>, cosigned: usize) -> TlogProof {
    let mut log = TestLog::new(3);
    match entry_3 {
        Some(leaf) => log.push(leaf),
        None => log.grow(1),
    }
    log.grow(1);
    let body = CheckpointBody {
        origin: VECTOR_ORIGIN.into(),
        tree_size: 5,
        root_hash: root(&log.tree, 5).unwrap(),
    };
    let note = sign_checkpoint(&body, &vector_operator()).unwrap();
    TlogProof {
        extra: Some(log.leaves[3].clone()),
        index: 3,
        inclusion_proof: inclusion_proof(&log.tree, 3, 5).unwrap(),
        checkpoint: cosigned_by(&note, cosigned),
    }
}

/// Entry 3 of the vector log, with `change` applied to its leaf and the
/// leaf's signature made over whatever payload it then has (unless
/// `sign` is false, when the signature is spoiled instead).
fn vector_entry_3(change_payload: impl FnOnce(&mut Vec<u8>), sign: bool) -> Vec<u8> {
    let log = TestLog::new(4);
    let mut leaf = Leaf::decode(&log.leaves[3]).unwrap();
    change_payload(&mut leaf.payload);
    if sign {
        leaf.signatures = vec![crate::signing::sign_event(&leaf.payload, &key(1))];
    } else {
        leaf.signatures[0].signature[0] ^= 1;
    }
    leaf.encode()
}

/// Every vector: its name, whether the verifier holds the witness policy,
/// the file, and the check that fails (0: the receipt is accepted).
fn vectors() -> serde_json::Value {
    let good = vector_receipt(None, 0);
    let text = good.to_text();
    let mut flipped_signature = text.clone();
    let at = flipped_signature.len() - 8;
    let flipped = if &flipped_signature[at..at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    flipped_signature.replace_range(at..at + 1, flipped);
    let mut proof_changed = good.clone();
    proof_changed.inclusion_proof[0][31] ^= 1;
    let cases: Vec<(&str, bool, String)> = vec![
        ("valid", false, text.clone()),
        (
            "valid-cosigned-2-of-3",
            true,
            vector_receipt(None, 2).to_text(),
        ),
        (
            "not-tlog-proof-v1",
            false,
            text.replacen("tlog-proof@v1", "tlog-proof@v2", 1),
        ),
        ("checkpoint-signature-changed", false, flipped_signature),
        (
            "no-extra",
            false,
            TlogProof {
                extra: None,
                ..good.clone()
            }
            .to_text(),
        ),
        (
            "index-changed",
            false,
            TlogProof {
                index: 2,
                ..good.clone()
            }
            .to_text(),
        ),
        ("proof-hash-changed", false, proof_changed.to_text()),
        (
            "author-signature-bad",
            false,
            vector_receipt(Some(vector_entry_3(|_| {}, false)), 0).to_text(),
        ),
        (
            "payload-not-canonical",
            false,
            // An unknown field (number 99, varint 1) after the event's own.
            vector_receipt(
                Some(vector_entry_3(
                    |payload| payload.extend([0x98, 0x06, 0x01]),
                    true,
                )),
                0,
            )
            .to_text(),
        ),
        ("cosigned-1-of-3", true, vector_receipt(None, 1).to_text()),
    ];
    let receipts: Vec<serde_json::Value> = cases
        .into_iter()
        .map(|(name, policy, file)| {
            let check = match TlogProof::parse(&file) {
                Err(_) => 1,
                Ok(proof) => verify_receipt(
                    &proof,
                    &vector_operator().verifier(),
                    policy.then(two_of_three).as_ref(),
                )
                .err()
                .map_or(0, |error| error.check()),
            };
            serde_json::json!({"name": name, "policy": policy, "check": check, "file": file})
        })
        .collect();
    serde_json::json!({
        "description": "Receipt files (docs/spec.md section 11) of entry 3 of a five-entry log, \
            each with the check that fails: 0 when the receipt is accepted, else the number \
            of the first failing check of section 11. Verify with the key `vkey` (origin and \
            operator key); where `policy` is true, also under `witness_policy`.",
        "operator_seed": hex::encode([2u8; 32]),
        "vkey": vector_operator().verifier().encoded_key(),
        "witness_policy": two_of_three().to_text(),
        "receipts": receipts,
    })
}

#[test]
fn the_receipt_vectors_are_these_receipts_and_verdicts() {
    let vectors = vectors();
    let checks: Vec<u64> = vectors["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|receipt| receipt["check"].as_u64().unwrap())
        .collect();
    assert_eq!(checks, [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(VECTORS_PATH);
    let text = serde_json::to_string_pretty(&vectors).unwrap() + "\n";
    if std::env::var_os("CEASEFIRE_UPDATE_VECTORS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        text,
        "testdata/receipts/vectors.json is out of date: CEASEFIRE_UPDATE_VECTORS=1 cargo test -p ceasefire-core tlog_proof"
    );
}
