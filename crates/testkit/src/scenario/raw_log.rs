//! Logs built without a server: signed events made into leaves the way the
//! sequencer makes them (`core::leaf`), their root and a checkpoint over
//! them, and their replay through every rule (`core::replay`). For tests
//! that need the bytes of a log the node never wrote: a fork, an entry
//! slipped in, a log signed by a revoked key.

use ceasefire_core::checkpoint::{sign_checkpoint, CheckpointBody, NoteSigner};
use ceasefire_core::leaf::Leaf;
use ceasefire_core::merkle::{self, Hash, MemorySource};
use ceasefire_core::replay::Replay;
use ceasefire_core::signing::canonical_signatures;
use ceasefire_grpc::proto::SignedEvent;
use ed25519_dalek::SigningKey;

/// The leaves of a log, in order.
#[derive(Clone, Debug, Default)]
pub struct RawLog {
    leaves: Vec<Vec<u8>>,
}

impl RawLog {
    pub fn new() -> RawLog {
        RawLog::default()
    }

    /// A log that starts with these leaves (a real log's, say).
    pub fn from_leaves(leaves: Vec<Vec<u8>>) -> RawLog {
        RawLog { leaves }
    }

    /// Appends `signed` as the next entry: the next seq, the previous
    /// leaf's hash, a `received_at` of now (and after the previous one's),
    /// the payload verbatim and the signatures in the leaf's order. Returns
    /// the new leaf.
    pub fn append(&mut self, signed: &SignedEvent) -> &[u8] {
        let (seq, prev_leaf_hash, after) = match self.leaves.last() {
            Some(previous) => {
                let previous_leaf = Leaf::decode(previous)
                    .unwrap_or_else(|error| panic!("the last leaf does not decode: {error}"));
                (
                    previous_leaf.seq + 1,
                    merkle::hash_leaf(previous),
                    previous_leaf.received_at_micros + 1,
                )
            }
            None => (0, [0; 32], 0),
        };
        let signatures = canonical_signatures(
            signed
                .signatures
                .iter()
                .map(|wire| (wire.public_key.clone(), wire.signature.clone())),
        )
        .unwrap_or_else(|rejection| panic!("the event's signatures: {rejection:?}"));
        let leaf = Leaf {
            seq,
            prev_leaf_hash,
            received_at_micros: ceasefire_grpc::now_micros().max(after),
            payload: signed.payload.clone(),
            signatures,
        };
        self.leaves.push(leaf.encode());
        self.leaves.last().expect("just pushed")
    }

    pub fn leaves(&self) -> &[Vec<u8>] {
        &self.leaves
    }

    pub fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// The Merkle root of every leaf.
    pub fn root(&self) -> Hash {
        let tree =
            MemorySource::from_leaf_hashes(self.leaves.iter().map(|leaf| merkle::hash_leaf(leaf)));
        merkle::root(&tree, self.size()).expect("a memory tree holds every subtree")
    }

    /// A checkpoint note of exactly these leaves, signed by `key`.
    pub fn checkpoint(&self, origin: &str, key: &SigningKey) -> String {
        checkpoint_note(origin, self.size(), self.root(), key)
    }

    /// Every leaf checked and folded from entry 0, as an auditor does; a
    /// log that breaks a rule is a bug in the test that built it.
    pub fn replay(&self) -> Replay {
        let mut replay = Replay::new();
        for leaf in &self.leaves {
            replay
                .apply(leaf, false)
                .unwrap_or_else(|error| panic!("the built log does not replay: {error}"));
        }
        replay
    }
}

/// A checkpoint note claiming `tree_size` and `root_hash`, signed by `key`
/// (the operator's, or an impostor's).
pub fn checkpoint_note(origin: &str, tree_size: u64, root_hash: Hash, key: &SigningKey) -> String {
    let body = CheckpointBody {
        origin: origin.into(),
        tree_size,
        root_hash,
    };
    let signer = NoteSigner::new(origin, key.clone())
        .unwrap_or_else(|error| panic!("origin {origin:?}: {error}"));
    sign_checkpoint(&body, &signer).unwrap_or_else(|error| panic!("cannot sign: {error}"))
}

#[cfg(test)]
mod tests {
    use ceasefire_core::checkpoint::open_checkpoint;
    use ceasefire_grpc::proto::Role;

    use super::*;
    use crate::scenario::{
        bodies, seeded_key, square, Commitment, Member, Scenario, Zone, BOOTSTRAP_ENTRIES,
    };

    /// Two of three signatories govern, two monitors, two zones, one
    /// commitment over both.
    fn two_of_three() -> Scenario {
        Scenario::new("kit-agreement", "example.org/kit")
            .with_signatory("north", seeded_key(1))
            .with_member(Member::new("south", Role::Signatory, seeded_key(2)).named("South"))
            .with_signatory("mediator", seeded_key(3))
            .with_threshold(2)
            .with_monitor("alpha", seeded_key(4))
            .with_monitor("bravo", seeded_key(5))
            .with_zone(Zone::new("west", square(10.0, 20.0, 1.0)))
            .with_zone(Zone::new("east", square(10.0, 21.0, 1.0)))
            .with_commitment(Commitment::new("truce", &["west", "east"]))
    }

    #[test]
    fn every_kind_of_event_a_scenario_builds_replays_through_the_rules() {
        let scenario = two_of_three();
        let mut log = RawLog::new();
        for signed in scenario.bootstrap() {
            log.append(&signed);
        }
        assert_eq!(
            log.size(),
            1 + 2 + 2 + 1,
            "genesis, monitors, zones, commitment"
        );
        let report = scenario.observation().signed();
        let reported = Leaf::decode(log.append(&report)).unwrap();
        let target = (
            reported.seq,
            merkle::hash_leaf(&log.leaves()[reported.seq as usize]),
        );
        let corrected = scenario.observation().in_zone("east").quantity(1).message();
        log.append(&scenario.signed(
            "alpha",
            bodies::correction(target.0, &target.1, corrected, "one, not three"),
        ));
        log.append(&scenario.signed("south", bodies::dispute(target.0, &target.1, "not us")));
        let second = scenario.observation().by("bravo").at(10.5, 20.5).signed();
        log.append(&second);
        log.append(&scenario.govern(bodies::add_key("bravo", &seeded_key(6))));
        log.append(&scenario.govern(bodies::revoke_key("bravo", &seeded_key(5), "lost")));
        log.append(
            &scenario.govern(
                Zone::new("west", square(10.0, 20.0, 0.5))
                    .with(|zone| zone.version = 2)
                    .body(),
            ),
        );
        log.append(
            &scenario.govern(
                Commitment::new("truce", &["east"])
                    .with(|commitment| commitment.version = 2)
                    .body(),
            ),
        );

        let replay = log.replay();
        assert_eq!(replay.size(), log.size());
        assert_eq!(replay.projection.as_of_seq, Some(log.size() - 1));
        let note = log.checkpoint(scenario.origin(), scenario.operator());
        let body = open_checkpoint(&note, &scenario.note_verifier()).unwrap();
        assert_eq!((body.tree_size, body.root_hash), (log.size(), log.root()));
    }

    #[test]
    fn the_development_ledger_bootstraps_its_four_entries_and_takes_an_observation() {
        let dev = Scenario::dev_with_random_keys();
        let mut log = RawLog::new();
        for signed in dev.bootstrap() {
            log.append(&signed);
        }
        assert_eq!(log.size(), BOOTSTRAP_ENTRIES);
        log.append(&dev.observation().signed());
        assert_eq!(log.replay().size(), BOOTSTRAP_ENTRIES + 1);
    }
}
