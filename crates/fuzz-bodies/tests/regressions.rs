//! Every input the fuzzers ever needed to remember, replayed as tests.
//!
//! Runs each fuzz target body (`ceasefire_fuzz_bodies`) over every file
//! in `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/`, so a crash
//! found by `.ci/fuzz` (which copies it into `fuzz/regressions/`) stays fixed
//! in the ordinary `cargo test`. Then checks that the seed files are the
//! corpus `ceasefire_fuzz_bodies::seed_corpus` makes from real data and that each seed is
//! a valid input, and feeds each target hand-written hostile inputs (empty,
//! truncated, huge length prefixes) that must be refused without a panic.
//!
//! `FUZZ_BLESS=1 cargo test -p ceasefire-fuzz-bodies --test regressions` rewrites the seed files
//! after a deliberate change to the formats or the fixture.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ceasefire_core::checkpoint::{
    open_checkpoint, parse_unverified, CheckpointError, MAX_NOTE_BYTES,
};
use ceasefire_core::leaf::{Leaf, LeafError, MAX_PAYLOAD_BYTES};
use ceasefire_core::merkle::{
    consistency_proof, hash_leaf, inclusion_proof, verify_consistency, verify_inclusion, Hash,
    MemorySource, ProofError, VerifyError,
};
use ceasefire_core::rules::decode_event;
use ceasefire_fuzz_bodies::{self as fuzzing, seed_corpus, Seed, TARGETS};
use ceasefire_ledger::event_json::{event_from_json, json_values};
use ceasefire_ledger::signed_file::SignedEventFile;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; none when it does not exist (a target that
/// never crashed has no regressions directory).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn run(target: &str) -> fn(&[u8]) -> bool {
    TARGETS
        .iter()
        .find(|t| t.name == target)
        .unwrap_or_else(|| panic!("no fuzz target {target}"))
        .run
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    seed_corpus()
        .into_iter()
        .find(|seed| seed.target == target && seed.name == name)
        .unwrap_or_else(|| panic!("no seed {target}/{name}"))
        .bytes
}

#[test]
fn every_seed_and_regression_input_replays_without_a_panic() {
    let mut failures = Vec::new();
    for target in TARGETS {
        let seeds = files_in(&fuzz_dir().join("seeds").join(target.name));
        assert!(
            !seeds.is_empty(),
            "fuzz/seeds/{} is empty: every target needs seeds",
            target.name
        );
        let regressions = files_in(&fuzz_dir().join("regressions").join(target.name));
        for path in seeds.iter().chain(&regressions) {
            let bytes = std::fs::read(path).expect("a readable input file");
            if catch_unwind(AssertUnwindSafe(|| (target.run)(&bytes))).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that panic: {failures:?}");
}

#[test]
fn seed_files_are_the_generated_corpus() {
    let bless = std::env::var_os("FUZZ_BLESS").is_some();
    let mut stale = Vec::new();
    for Seed {
        target,
        name,
        bytes,
    } in seed_corpus()
    {
        assert!(
            TARGETS.iter().any(|t| t.name == target),
            "seed for {target}"
        );
        let path = fuzz_dir().join("seeds").join(target).join(name);
        if std::fs::read(&path).ok().as_ref() == Some(&bytes) {
            continue;
        }
        if bless {
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, &bytes).expect("write a seed");
        } else {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "seed files missing or out of date (rerun with FUZZ_BLESS=1 after a deliberate change): {stale:?}"
    );
}

#[test]
fn every_seed_is_a_valid_input_of_its_target() {
    let corpus = seed_corpus();
    for target in TARGETS {
        assert!(
            corpus
                .iter()
                .filter(|seed| seed.target == target.name)
                .count()
                >= 3,
            "{} needs a few seeds",
            target.name
        );
    }
    for seed in &corpus {
        assert!(
            run(seed.target)(&seed.bytes),
            "seed {}/{} is not accepted by its target",
            seed.target,
            seed.name
        );
    }
    // The seeds named after docs/spec.md section 8 are its vectors.
    assert_eq!(
        hex::encode(hash_leaf(&seed("leaf", "spec-leaf"))),
        "25751185ed427a4611558390bc685c2e1ff3b8cbda3ba270143bae3040b8014c"
    );
    assert_eq!(
        hex::encode(hash_leaf(&seed("leaf", "spec-leaf-two-signatures"))),
        "b4acca1a164823f8c411d9c6c60d0088fd0b0f1186d98616ced264cea8fe5969"
    );
    assert!(String::from_utf8(seed("checkpoint", "spec-checkpoint"))
        .unwrap()
        .ends_with("6tG/1YHlbzYpnSwrOn64P7aDtnVKjB5TmLhtxD8JpyYTVpGlc3a2ybhMWlANO0loL2B3T99cO7Gk0JNDWeedDzpqOgk=\n"));
}

// ---- hostile inputs, per target ------------------------------------------------

/// `bytes` with the 4 bytes at `offset` replaced by `value`, big-endian.
fn with_u32(bytes: &[u8], offset: usize, value: u32) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
    out
}

#[test]
fn hostile_leaves_are_refused() {
    let leaf = seed("leaf", "spec-leaf");
    // prefix 25, seq 8, prev 32, received_at 8: the payload length is at 73.
    let payload_len_at = 25 + 8 + 32 + 8;
    let sig_count_at = payload_len_at + 4 + 31;
    let mut cases: Vec<(Vec<u8>, LeafError)> = vec![
        (Vec::new(), LeafError::Truncated),
        (
            with_u32(&leaf, payload_len_at, u32::MAX),
            LeafError::PayloadTooLarge(u32::MAX as usize),
        ),
        (
            with_u32(&leaf, payload_len_at, 1 << 31),
            LeafError::PayloadTooLarge(1 << 31),
        ),
        // Claims more payload than there are bytes.
        (with_u32(&leaf, payload_len_at, 4096), LeafError::Truncated),
    ];
    let mut oversize = leaf[..payload_len_at].to_vec();
    oversize.extend_from_slice(&(MAX_PAYLOAD_BYTES as u32 + 1).to_be_bytes());
    oversize.resize(oversize.len() + MAX_PAYLOAD_BYTES + 1 + 97, 0);
    cases.push((oversize, LeafError::PayloadTooLarge(MAX_PAYLOAD_BYTES + 1)));
    let mut no_signature = leaf.clone();
    no_signature[sig_count_at] = 0;
    no_signature.truncate(sig_count_at + 1);
    cases.push((no_signature, LeafError::NoSignatures));
    let mut many = leaf.clone();
    many[sig_count_at] = 255;
    cases.push((many, LeafError::TooManySignatures(255)));
    let mut trailing = leaf.clone();
    trailing.push(0);
    cases.push((trailing, LeafError::TrailingBytes(1)));
    for (bytes, error) in cases {
        assert_eq!(Leaf::decode(&bytes), Err(error));
        assert!(!fuzzing::leaf(&bytes));
    }
    for len in 0..leaf.len() {
        assert_eq!(Leaf::decode(&leaf[..len]), Err(LeafError::Truncated));
        assert!(!fuzzing::leaf(&leaf[..len]));
    }
}

#[test]
fn hostile_events_are_refused() {
    // An empty payload is a valid (empty) protobuf message, which the rules refuse.
    assert!(decode_event(&[]).is_ok());
    assert!(!fuzzing::event(&[]));
    let undecodable: Vec<Vec<u8>> = vec![
        // Field 16 (observation), length-delimited, length 2^35 - 1.
        vec![0x82, 0x01, 0xff, 0xff, 0xff, 0xff, 0x7f],
        // A varint (unknown field 99) longer than any varint can be.
        [[0x98, 0x06].as_slice(), &[0xff; 11]].concat(),
        // author (field 2) that is not UTF-8.
        vec![0x12, 0x02, 0xff, 0xfe],
        // 10,000 nested unknown groups (field 99): refused at the recursion
        // limit, not by overflowing the stack.
        [0x9b, 0x06].repeat(10_000),
    ];
    for bytes in &undecodable {
        assert!(decode_event(bytes).is_err(), "{bytes:02x?} decodes");
        assert!(!fuzzing::event(bytes));
    }
    // docs/spec.md section 1: only canonical payloads decode. The known
    // answers of testdata/canonical/ go through the target (whose walker and
    // round trip must agree); the non-canonical ones are refused.
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fuzz_dir().join("../testdata/canonical/vectors.json"))
            .expect("testdata/canonical/vectors.json"),
    )
    .expect("the vectors are JSON");
    for vector in vectors["vectors"].as_array().expect("a vectors array") {
        let payload = hex::decode(vector["payload"].as_str().unwrap()).unwrap();
        let canonical = vector["canonical"].as_bool().unwrap();
        assert_eq!(
            decode_event(&payload).is_ok(),
            canonical,
            "{}",
            vector["name"]
        );
        if !canonical {
            assert!(!fuzzing::event(&payload), "{}", vector["name"]);
        }
    }
    let observation = seed("event", "next-observation");
    assert!(fuzzing::event(&observation));
    let mut unknown = observation.clone();
    unknown.extend_from_slice(&[0xc2, 0x3e, 0x02, 0x00, 0x00]);
    assert!(
        !fuzzing::event(&unknown),
        "an unknown field 1000 is accepted"
    );
    for len in 0..observation.len() {
        assert!(
            !fuzzing::event(&observation[..len]),
            "an observation cut at byte {len} is accepted"
        );
    }
}

#[test]
fn hostile_checkpoints_are_refused() {
    let verifier = fuzzing::checkpoint_verifier();
    let note = String::from_utf8(seed("checkpoint", "spec-checkpoint")).unwrap();
    let root = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let signature = "\u{2014} example.org/ceasefire-ledger AAAAAAAA\n";
    let cases: Vec<(String, CheckpointError)> = vec![
        (String::new(), CheckpointError::MissingBlankLine),
        ("\n\n".into(), CheckpointError::NoSignatures),
        (
            format!("{}\n\n{signature}", "x".repeat(MAX_NOTE_BYTES)),
            CheckpointError::NoteTooLarge {
                len: MAX_NOTE_BYTES + 2 + signature.len(),
                max: MAX_NOTE_BYTES,
            },
        ),
        (
            format!(
                "{}\n\n{}",
                note.split("\n\n").next().unwrap(),
                signature.repeat(101)
            ),
            CheckpointError::TooManySignatures { max: 100 },
        ),
        (
            format!("example.org/ceasefire-ledger\n18446744073709551616\n{root}\n\n{signature}"),
            CheckpointError::NonCanonicalTreeSize {
                found: "18446744073709551616".into(),
            },
        ),
        (
            format!("example.org/ceasefire-ledger\n05\n{root}\n\n{signature}"),
            CheckpointError::NonCanonicalTreeSize { found: "05".into() },
        ),
    ];
    for (text, error) in cases {
        assert_eq!(parse_unverified(&text), Err(error));
        assert!(open_checkpoint(&text, &verifier).is_err());
        assert!(!fuzzing::checkpoint(text.as_bytes()));
    }
    assert!(fuzzing::checkpoint(note.as_bytes()));
    for len in 0..note.len() {
        assert!(
            !fuzzing::checkpoint(&note.as_bytes()[..len]),
            "the note cut at byte {len} opens"
        );
    }
    let mut not_utf8 = note.into_bytes();
    not_utf8[3] = 0xff;
    assert!(!fuzzing::checkpoint(&not_utf8));
}

#[test]
fn hostile_receipts_are_refused() {
    let receipt = seed("tlog_proof", "fixture-observation");
    assert!(fuzzing::tlog_proof(&receipt));
    // Cut anywhere, the receipt no longer verifies (a cut inside the last
    // signature line spoils the checkpoint; before it, the file's layout).
    for len in 0..receipt.len() {
        assert!(
            !fuzzing::tlog_proof(&receipt[..len]),
            "the receipt cut at byte {len} verifies"
        );
    }
    let text = String::from_utf8(receipt).unwrap();
    let hash_line = text.lines().nth(3).unwrap();
    for hostile in [
        text.replacen("\nindex 4\n", "\nindex 18446744073709551616\n", 1),
        text.replacen("\nindex 4\n", "\nindex 04\n", 1),
        text.replacen("\nindex 4\n", "\nindex 5\n", 1),
        text.replacen(hash_line, &format!("{hash_line}\n").repeat(65), 1),
        text.replacen(hash_line, &format!("{hash_line}\n{hash_line}"), 1),
        text.replace('\n', "\r\n"),
        text.replacen("extra ", "extra  ", 1),
        format!("{text}\n"),
    ] {
        assert!(!fuzzing::tlog_proof(hostile.as_bytes()), "{hostile}");
    }
    let mut not_utf8 = text.into_bytes();
    not_utf8[30] = 0xff;
    assert!(!fuzzing::tlog_proof(&not_utf8));
}

#[test]
fn hostile_merkle_claims_are_refused() {
    let junk: Vec<Hash> = (0u8..70).map(|i| [i; 32]).collect();
    for proof_len in [0, 1, 63, 64, 65, 70] {
        let proof = &junk[..proof_len];
        assert!(verify_inclusion(&[1; 32], u64::MAX - 1, u64::MAX, proof, &[2; 32]).is_err());
        assert!(verify_inclusion(&[1; 32], 0, u64::MAX, proof, &[2; 32]).is_err());
        assert!(verify_consistency(u64::MAX - 1, u64::MAX, &[1; 32], &[2; 32], proof).is_err());
        assert!(verify_consistency(1, u64::MAX, &[1; 32], &[2; 32], proof).is_err());
    }
    assert_eq!(
        verify_inclusion(&[1; 32], u64::MAX, u64::MAX, &[], &[2; 32]),
        Err(VerifyError::IndexOutOfRange {
            index: u64::MAX,
            size: u64::MAX
        })
    );
    assert_eq!(
        verify_consistency(u64::MAX, 1, &[1; 32], &[2; 32], &[]),
        Err(VerifyError::SizeOutOfRange {
            old_size: u64::MAX,
            new_size: 1
        })
    );
    // A store holding 5 leaves cannot prove anything about a larger tree.
    let source = MemorySource::from_leaf_hashes((0u8..5).map(|i| hash_leaf(&[i])));
    assert!(matches!(
        inclusion_proof(&source, 0, u64::MAX),
        Err(ProofError::Source(_))
    ));
    assert!(matches!(
        inclusion_proof(&source, 4, 6),
        Err(ProofError::Source(_))
    ));
    assert!(matches!(
        consistency_proof(&source, 3, u64::MAX),
        Err(ProofError::Source(_))
    ));
    // The target itself on maximal sizes and on cut-off real claims.
    assert!(!fuzzing::merkle(&[0xff; 4096]));
    for name in ["inclusion-6-of-11", "consistency-6-to-11"] {
        let claim = seed("merkle", name);
        assert!(fuzzing::merkle(&claim));
        // Sizes, hashes, proof count, proof hashes: cut anywhere, it fails.
        let count_at = 4 * 8 + 3 * 32;
        let end = count_at + 1 + 32 * usize::from(claim[count_at]);
        for len in 0..end {
            assert!(
                !fuzzing::merkle(&claim[..len]),
                "{name} cut at {len} verifies"
            );
        }
    }
}

#[test]
fn hostile_json_is_refused() {
    assert!(json_values("").unwrap().is_empty());
    assert!(!fuzzing::submit_json(b""));
    // Nesting far past serde_json's recursion limit: an error, not a stack overflow.
    let deep = "[".repeat(100_000);
    assert!(json_values(&deep).is_err());
    assert!(!fuzzing::submit_json(deep.as_bytes()));
    let deep_event = format!("{}{}", r#"{"observation":"#.repeat(10_000), "{}");
    assert!(event_from_json(&deep_event).is_err());
    assert!(!fuzzing::submit_json(deep_event.as_bytes()));
    for bad in [
        r#"{"nonce": "!!!"}"#,
        r#"{"observation": {"quantity": 1e400}}"#,
        r#"{"observation": {"quantity": -1}}"#,
        r#"{"createdAt": "99999-01-01T00:00:00Z"}"#,
        r#"{"observation": {"finding": "FINDING_MAYBE"}}"#,
        r#"{"author": "a"} {"athor": "b"}"#,
    ] {
        assert!(
            json_values(bad).is_ok_and(|values| values
                .iter()
                .any(|value| event_from_json(&value.to_string()).is_err()))
                || json_values(bad).is_err(),
            "{bad} is read"
        );
        assert!(!fuzzing::submit_json(bad.as_bytes()), "{bad} is read");
    }
    assert!(!fuzzing::submit_json(b"{\"author\": \"\xff\"}"));

    let file = seed("submit_json", "signed-event-file");
    assert!(fuzzing::submit_json(&file));
    let value: serde_json::Value = serde_json::from_slice(&file).unwrap();
    let payload = BASE64.decode(value["payload"].as_str().unwrap()).unwrap();
    let mut truncated = value.clone();
    truncated["payload"] = BASE64.encode(&payload[..payload.len() / 2]).into();
    let mut edited = value.clone();
    edited["event"]["author"] = "party-south".into();
    let mut not_base64 = value;
    not_base64["signatures"][0]["signature"] = "not base64!".into();
    for bad in [truncated, edited, not_base64] {
        assert!(SignedEventFile::from_json(bad.clone()).is_err());
        assert!(!fuzzing::submit_json(bad.to_string().as_bytes()));
    }
}
