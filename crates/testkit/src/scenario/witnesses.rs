//! Witnesses for tests: cosigner keys, the `SetWitnessPolicy` that names
//! them, and checkpoint notes they cosigned, made with the core's own
//! `Cosigner::cosign` and `add_signature_lines` over a node's real
//! checkpoint note. Nothing here collects cosignatures from a running
//! witness: tests plant the notes (`Store::record_witnessed`).

use ceasefire_core::cosignature::{add_signature_lines, Cosigner};
use ceasefire_grpc::proto::{SetWitnessPolicy, Witness, WitnessGroup};

use super::seeded_key;

/// A witness named `name` whose key has the seed `seed` (see [`seeded_key`]).
pub fn seeded_witness(name: &str, seed: u8) -> Cosigner {
    Cosigner::new(name, seeded_key(seed))
        .unwrap_or_else(|error| panic!("witness name {name:?}: {error}"))
}

/// The three witnesses of the tests' policies: north, south and a mediator.
pub fn three_witnesses() -> [Cosigner; 3] {
    [
        seeded_witness("north.example/w", 0x71),
        seeded_witness("south.example/w", 0x72),
        seeded_witness("mediator.example/w", 0x73),
    ]
}

/// A policy whose quorum is `threshold` of `witnesses`, as the group
/// `group`. Each witness's URL is a closed local port: the log's own policy
/// must name one (the ledger posts its checkpoints there), and no test
/// witness listens.
pub fn k_of_n_policy(witnesses: &[Cosigner], threshold: u32, group: &str) -> SetWitnessPolicy {
    SetWitnessPolicy {
        witnesses: witnesses
            .iter()
            .map(|witness| Witness {
                name: witness.name().into(),
                public_key: witness.verifier().public_key().as_bytes().to_vec(),
                url: format!("http://127.0.0.1:9/{}", witness.name()),
            })
            .collect(),
        groups: vec![WitnessGroup {
            name: group.into(),
            threshold,
            members: witnesses
                .iter()
                .map(|witness| witness.name().to_owned())
                .collect(),
        }],
        quorum: group.into(),
    }
}

/// The checkpoint text of a signed note: every line before the blank line,
/// each with its newline (what a cosignature signs).
pub fn checkpoint_text(note: &str) -> &str {
    let (text, _) = note
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("not a signed note: {note:?}"));
    &note[..text.len() + 1]
}

/// `note` with a cosignature of each of `witnesses`, made at `timestamp`.
pub fn cosigned_note(note: &str, witnesses: &[&Cosigner], timestamp: u64) -> String {
    let text = checkpoint_text(note);
    let lines: String = witnesses
        .iter()
        .map(|witness| witness.cosign(text, timestamp))
        .collect();
    add_signature_lines(note, &lines)
}
