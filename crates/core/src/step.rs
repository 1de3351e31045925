//! One entry through the rules and the fold: check, apply, index, fold.
//!
//! [`step`] is the only code that takes an entry through the rules: the
//! sequencer's batch (which decides new entries), start-up recovery (which
//! replays the governance entries of a store) and [`Replay`] (which an
//! auditor and `rebuild-projections` run over a whole log) all call it, so
//! the server and an auditor cannot disagree on what an entry does. In order:
//!
//! 1. **check**: the genesis founds the state ([`LedgerState::from_genesis`],
//!    then the caller's `found`); any later entry is checked against the
//!    state ([`LedgerState::check`]). Both read only.
//! 2. **apply**: the genesis's state, or a governance change, becomes the
//!    rules' state.
//! 3. **index**: the observation record the entry writes is handed back for
//!    the caller's index (an observation's own; an amendment's target's,
//!    as amended).
//! 4. **fold**: the entry is folded into the compliance projection, with
//!    the rules' state after it.
//!
//! What each kind of entry changes is decided in one exhaustive match (and
//! the fold's in another): a new kind of event does not compile until both
//! say what it does.
//!
//! What differs between the callers is a parameter, not a copy: where
//! earlier entries are looked up (any [`EntryIndex`]: the store, a batch's
//! overlay of it, a replay's memory), where the windows live and whether
//! the projection is folded at all ([`Fold`]), and what the caller builds
//! from a genesis (`found`: the sequencer's checkpoint signer). What differs
//! by nature stays with the callers: nonce reuse (the sequencer answers an
//! identical resubmission with its original receipt, a replay takes any
//! reuse for a defect), the leaf chain (the sequencer makes it, a replay
//! checks it), and writing the returned record into their own index.
//!
//! A refused entry changes nothing: the state, the projection and the
//! windows are written only after the entry is accepted. The rules' state
//! is a [`Cow`]: a batch lends the durable state, and the first governance
//! entry it accepts clones it (the durable state is replaced only when the
//! batch commits); a replay owns its state and it changes in place.
//!
//! [`Replay`]: crate::replay::Replay

use std::borrow::Cow;

use super::leaf::Leaf;
use super::merkle::Hash;
use super::projection::{Folded, Projection};
use super::rejection::Rejection;
use super::rules::{Accepted, EntryContext, EntryIndex, LedgerState, ObservationRecord};
use super::windows::Windows;
use crate::proto::Event;

/// One entry as a step takes it: decoded, its signatures verified.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'e> {
    /// Its place in the log (the sequencer's next seq, the replay's count,
    /// the store's governance index).
    pub seq: u64,
    /// Its leaf: when it was received, and by whose keys it is signed.
    pub leaf: &'e Leaf,
    /// The hash of the leaf's bytes.
    pub leaf_hash: Hash,
    /// The leaf's payload, decoded.
    pub event: &'e Event,
}

impl Entry<'_> {
    /// Where the entry stands, as the rules and the fold see it.
    pub fn context(&self) -> EntryContext {
        EntryContext {
            seq: self.seq,
            received_at_micros: self.leaf.received_at_micros,
            leaf_hash: self.leaf_hash,
        }
    }

    /// The keys whose signatures the leaf carries (verified before the step).
    pub fn signers(&self) -> Vec<[u8; 32]> {
        self.leaf.signatures.iter().map(|s| s.public_key).collect()
    }
}

/// Whether a step folds the entry into a projection, and into which.
pub enum Fold<'f, W> {
    /// Fold into `projection`, whose windows are `windows` (the sequencer's
    /// store under its batch, a replay's memory).
    Into {
        projection: &'f mut Projection,
        windows: &'f mut W,
    },
    /// Fold nothing. Start-up recovery steps through the governance entries
    /// only, to rebuild the rules' state; a fold of those alone would be the
    /// projection of no log, so recovery loads the stored projection or
    /// rebuilds it from every entry (through a [`Replay`](crate::replay::Replay)).
    Nothing,
}

/// What an accepted entry did, for the caller to record.
#[derive(Clone, Debug, PartialEq)]
pub struct Stepped<F> {
    /// What the rules accepted; `None` for the genesis, which founds the
    /// state instead.
    pub accepted: Option<Accepted>,
    /// What `found` built from the genesis; `None` for any other entry.
    pub founded: Option<F>,
    /// The observation record this entry writes, under its seq, for the
    /// caller's index: an observation's own, or an amendment's target's as
    /// amended (a correction's new place, a retraction's mark). A dispute
    /// writes none: its mark is in the windows.
    pub record: Option<(u64, ObservationRecord)>,
    /// Whether the entry founded or changed the rules' state: the genesis
    /// or a governance event (what the store indexes for recovery to replay).
    pub is_governance: bool,
    /// The fold's status changes and touched pairs; empty with [`Fold::Nothing`].
    pub folded: Folded,
}

/// Checks `entry` against `state` and, if the rules accept it, applies it
/// to `state`, returns the record it indexes and folds it per `fold`.
///
/// `state` is `None` before the genesis: the entry must then be one, and
/// `found` builds what the caller needs from the state it founds (or
/// refuses the genesis: nothing has changed yet). Any other entry is
/// checked against `state`, with earlier entries looked up in `index`.
///
/// The outer error is a failed read of `index` or of the windows, passed
/// through: the state and the projection may then be partly changed, and
/// the caller must stop (the sequencer fails stop; a replay's reads do not
/// fail).
pub fn step<I, W, F>(
    state: &mut Option<Cow<'_, LedgerState>>,
    entry: Entry<'_>,
    index: &I,
    fold: Fold<'_, W>,
    found: impl FnOnce(&LedgerState) -> Result<F, Rejection>,
) -> Result<Result<Stepped<F>, Rejection>, I::Error>
where
    I: EntryIndex,
    W: Windows<Error = I::Error>,
{
    let event = entry.event;
    let context = entry.context();
    let signers = entry.signers();

    // Check (reading only), and found the state at the genesis.
    let (rules, accepted, founded) = match state {
        None => {
            let founding = LedgerState::from_genesis(event, &signers, &context)
                .and_then(|rules| found(&rules).map(|founded| (rules, founded)));
            match founding {
                Ok((rules, founded)) => (state.insert(Cow::Owned(rules)), None, Some(founded)),
                Err(rejection) => return Ok(Err(rejection)),
            }
        }
        Some(rules) => match rules.check(event, &signers, &context, index)? {
            Ok(accepted) => (rules, Some(accepted), None),
            Err(rejection) => return Ok(Err(rejection)),
        },
    };

    // Apply and index: what each kind of accepted entry changes.
    let (record, is_governance) = match &accepted {
        // The genesis founded the state above.
        None => (None, true),
        Some(change @ Accepted::Governance(_)) => {
            // A lent state is cloned here, so the lender's never changes.
            rules.to_mut().apply(change);
            (None, true)
        }
        Some(Accepted::Observation(record)) => (Some((context.seq, record.clone())), false),
        Some(Accepted::Amendment {
            target_seq,
            corrected,
            ..
        }) => (Some((*target_seq, corrected.clone())), false),
        Some(Accepted::Dispute { .. }) => (None, false),
    };

    // Fold, with the rules' state after the entry.
    let folded = match fold {
        Fold::Into {
            projection,
            windows,
        } => projection.fold(event, accepted.as_ref(), &context, rules, windows)?,
        Fold::Nothing => Folded::default(),
    };

    Ok(Ok(Stepped {
        accepted,
        founded,
        record,
        is_governance,
        folded,
    }))
}

#[cfg(test)]
mod tests {
    //! A small log (genesis, governance, observations, a dispute, an
    //! amendment) taken through [`step`] by hand and through [`Replay`]: the
    //! same verdicts, state, records, changes and digests; and what a
    //! refused entry, a lent state, [`Fold::Nothing`] and `found` do.

    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::merkle::hash_leaf;
    use crate::proto::{
        event::Body, Amendment, AmendmentKind, Category, CommitmentKind, DefineCommitment,
        DefineZone, Dispute, Finding, Genesis, LatLon, Location, Observation, Party, Polygon,
        RegisterParty, Role, ZoneKind,
    };
    use crate::replay::{MemoryIndex, Replay};
    use crate::rules::micros_timestamp as timestamp;
    use crate::test_leaf::signed_leaf;
    use crate::windows::MemoryWindows;

    const AGREEMENT: &str = "step-agreement";
    const SIGNATORY: &str = "signatory";
    const MONITOR: &str = "monitor";
    const ZONE: &str = "zone-z";
    const COMMITMENT: &str = "ceasefire";
    const T0: i64 = 1_700_000_000_000_000;
    const SECOND: i64 = 1_000_000;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32])
    }

    fn party(party_id: &str, role: Role, key: &SigningKey) -> Party {
        Party {
            party_id: party_id.into(),
            name: format!("Party {party_id}"),
            role: role as i32,
            public_keys: vec![key.verifying_key().to_bytes().to_vec()],
        }
    }

    fn genesis() -> Body {
        Body::Genesis(Genesis {
            origin: "step.example/log".into(),
            title: "Step test".into(),
            signatories: vec![party(SIGNATORY, Role::Signatory, &key(1))],
            threshold: 1,
            operator_public_key: key(9).verifying_key().to_bytes().to_vec(),
            max_clock_skew_seconds: 0,
        })
    }

    fn monitor() -> Body {
        Body::RegisterParty(RegisterParty {
            party: Some(party(MONITOR, Role::Monitor, &key(2))),
        })
    }

    fn zone() -> Body {
        let vertex = |lat, lon| LatLon { lat, lon };
        Body::DefineZone(DefineZone {
            zone_id: ZONE.into(),
            version: 1,
            name: "Zone Z".into(),
            kind: ZoneKind::ContactLineSector as i32,
            boundary: Some(Polygon {
                vertices: vec![
                    vertex(48.0, 37.0),
                    vertex(48.0, 38.0),
                    vertex(49.0, 38.0),
                    vertex(49.0, 37.0),
                ],
            }),
        })
    }

    fn commitment() -> Body {
        Body::DefineCommitment(DefineCommitment {
            commitment_id: COMMITMENT.into(),
            version: 1,
            name: "Ceasefire".into(),
            kind: CommitmentKind::Ceasefire as i32,
            zone_ids: vec![ZONE.into()],
            window_seconds: 3600,
            corroboration_quorum: 1,
            effective_from: Some(timestamp(T0)),
        })
    }

    fn observation(finding: Finding, lat: f64, until: i64) -> Observation {
        Observation {
            observed_from: Some(timestamp(until - 60 * SECOND)),
            observed_until: Some(timestamp(until)),
            location: Some(Location {
                point: Some(LatLon { lat, lon: 37.5 }),
                accuracy_m: 100.0,
            }),
            zone_id: String::new(),
            commitment_id: COMMITMENT.into(),
            finding: finding as i32,
            category: Category::SmallArmsFire as i32,
            quantity: 1,
            attributed_side: String::new(),
            evidence: Vec::new(),
            narrative: "seen".into(),
        }
    }

    /// One signed entry: its leaf, hash and event.
    struct Signed {
        leaf: Leaf,
        bytes: Vec<u8>,
        leaf_hash: Hash,
        event: Event,
    }

    impl Signed {
        fn entry(&self) -> Entry<'_> {
            Entry {
                seq: self.leaf.seq,
                leaf: &self.leaf,
                leaf_hash: self.leaf_hash,
                event: &self.event,
            }
        }
    }

    /// Leaves signed in a chain, as a sequencer would write them.
    #[derive(Default)]
    struct Writer {
        leaf_hashes: Vec<Hash>,
        nonce: u64,
    }

    impl Writer {
        /// The next leaf: `body` by `author`, received at `at`; the chain
        /// moves on only when it is kept ([`Writer::keep`]).
        fn sign(&mut self, author: &str, at: i64, body: Body) -> Signed {
            self.nonce += 1;
            let signer = if author == MONITOR { key(2) } else { key(1) };
            let (event, leaf) = signed_leaf(
                AGREEMENT,
                author,
                self.nonce,
                at,
                body,
                &signer,
                self.leaf_hashes.len() as u64,
                self.leaf_hashes.last().copied().unwrap_or([0; 32]),
            );
            let bytes = leaf.encode();
            let leaf_hash = hash_leaf(&bytes);
            Signed {
                leaf,
                bytes,
                leaf_hash,
                event,
            }
        }

        fn keep(&mut self, signed: &Signed) {
            self.leaf_hashes.push(signed.leaf_hash);
        }
    }

    /// Everything a caller of [`step`] keeps.
    #[derive(Default)]
    struct Stepper {
        state: Option<LedgerState>,
        projection: Projection,
        windows: MemoryWindows,
        index: MemoryIndex,
    }

    impl Stepper {
        /// Steps `signed`, folding; on acceptance indexes it as a caller does.
        fn step(&mut self, signed: &Signed) -> Result<Stepped<()>, Rejection> {
            let mut state = self.state.take().map(Cow::Owned);
            let Ok(verdict) = step(
                &mut state,
                signed.entry(),
                &self.index,
                Fold::Into {
                    projection: &mut self.projection,
                    windows: &mut self.windows,
                },
                |_| Ok(()),
            );
            self.state = state.map(Cow::into_owned);
            let stepped = verdict?;
            self.index.record(signed.leaf_hash, &stepped);
            Ok(stepped)
        }
    }

    /// The log: genesis, a monitor, a zone, a commitment binding it (0..=3),
    /// then a violation (4), a dispute of it (5), a correction moving it
    /// (6) and a compliant observation (7).
    fn log() -> Vec<Signed> {
        let mut writer = Writer::default();
        let mut signed = Vec::new();
        let mut push = |writer: &mut Writer, author: &str, at: i64, body: Body| {
            let entry = writer.sign(author, at, body);
            writer.keep(&entry);
            signed.push(entry);
            writer.leaf_hashes.last().copied().unwrap_or_default()
        };
        push(&mut writer, SIGNATORY, T0, genesis());
        push(&mut writer, SIGNATORY, T0, monitor());
        push(&mut writer, SIGNATORY, T0, zone());
        push(&mut writer, SIGNATORY, T0, commitment());
        let at = T0 + 60 * SECOND;
        let violation = Body::Observation(observation(Finding::Violation, 48.5, at));
        let violation_hash = push(&mut writer, MONITOR, at, violation);
        let dispute = Body::Dispute(Dispute {
            target_seq: 4,
            target_leaf_hash: violation_hash.to_vec(),
            reason: "contested".into(),
        });
        push(&mut writer, SIGNATORY, at + SECOND, dispute);
        let correction = Body::Amendment(Amendment {
            target_seq: 4,
            target_leaf_hash: violation_hash.to_vec(),
            kind: AmendmentKind::Correct as i32,
            correction: Some(observation(Finding::Violation, 48.6, at - 30 * SECOND)),
            reason: "moved".into(),
        });
        push(&mut writer, MONITOR, at + 2 * SECOND, correction);
        let compliant = Body::Observation(observation(Finding::Compliance, 48.5, at + 10 * SECOND));
        push(&mut writer, MONITOR, at + 10 * SECOND, compliant);
        signed
    }

    #[test]
    fn step_gives_what_replay_gives() {
        use crate::proto::ComplianceStatus::{Unobserved, Unspecified, ViolationConfirmed};
        // What the log does to its one pair, entry by entry (docs/spec.md
        // section 9), written out rather than computed: (old status, new
        // status, old disputed, new disputed).
        let expected = [
            vec![],
            vec![],
            vec![],
            // The commitment makes the pair.
            vec![(Unspecified, Unobserved, false, false)],
            // A violation, at a quorum of one, confirms it.
            vec![(Unobserved, ViolationConfirmed, false, false)],
            // The dispute marks it disputed.
            vec![(ViolationConfirmed, ViolationConfirmed, false, true)],
            // The correction moves it within the zone and the window.
            vec![],
            // A compliance report does not clear a violation in its window.
            vec![],
        ];
        let log = log();
        assert_eq!(log.len(), expected.len());
        let mut replay = Replay::new();
        let mut stepper = Stepper::default();
        for (signed, expected) in log.into_iter().zip(expected) {
            let replayed = replay.apply(&signed.bytes, false).expect("the log replays");
            let stepped = stepper.step(&signed).expect("the log steps");
            assert_eq!(
                stepped.accepted, replayed.accepted,
                "entry {}",
                replayed.seq
            );
            assert_eq!(stepped.folded.changes, replayed.changes);
            let changes: Vec<_> = replayed
                .changes
                .iter()
                .map(|c| (c.old_status, c.new_status, c.old_disputed, c.new_disputed))
                .collect();
            assert_eq!(changes, expected, "entry {}", replayed.seq);
            assert_eq!(stepper.state, replay.state);
            assert_eq!(stepper.projection, replay.projection);
            assert_eq!(stepper.projection.digest(), replay.projection.digest());
            assert_eq!(stepper.windows, replay.windows);
        }
        // The commitment made its pair, and the observations changed it.
        assert!(stepper
            .projection
            .pairs
            .contains_key(&(ZONE.into(), COMMITMENT.into())));
        assert_eq!(stepper.projection.as_of_seq, Some(7));
    }

    #[test]
    fn step_names_what_each_entry_indexes() {
        let mut stepper = Stepper::default();
        let stepped: Vec<Stepped<()>> = log()
            .iter()
            .map(|signed| stepper.step(signed).expect("the log steps"))
            .collect();
        let kinds: Vec<(bool, Option<u64>)> = stepped
            .iter()
            .map(|stepped| (stepped.is_governance, stepped.record.as_ref().map(|r| r.0)))
            .collect();
        assert_eq!(
            kinds,
            [
                (true, None),     // genesis
                (true, None),     // a party
                (true, None),     // a zone
                (true, None),     // a commitment
                (false, Some(4)), // an observation: its own record
                (false, None),    // a dispute: none
                (false, Some(4)), // an amendment: its target's, corrected
                (false, Some(7)),
            ]
        );
        assert_eq!(stepped[0].accepted, None);
        assert_eq!(stepped[0].founded, Some(()));
        assert!(stepped[1..].iter().all(|stepped| stepped.founded.is_none()));
        let (_, corrected) = stepped[6].record.clone().unwrap();
        assert_eq!(corrected.observed_until_micros, T0 + 30 * SECOND);
        assert_eq!(corrected.leaf_hash, stepper.index.leaf_hashes[4]);
        // The pair's first change came with the commitment.
        assert_eq!(stepped[3].folded.changes.len(), 1);
        assert_eq!(stepped[3].folded.changes[0].seq, 3);
    }

    #[test]
    fn a_refused_entry_changes_nothing() {
        let entries = log();
        let mut stepper = Stepper::default();
        for signed in &entries[..5] {
            stepper.step(signed).expect("the log steps");
        }
        let durable = stepper.state.clone().unwrap();
        let projection = stepper.projection.clone();
        let windows = stepper.windows.clone();

        let mut writer = Writer {
            leaf_hashes: stepper.index.leaf_hashes.clone(),
            nonce: 100,
        };
        let at = T0 + 120 * SECOND;
        let refused = [
            // An observation outside every zone of its commitment.
            (
                writer.sign(
                    MONITOR,
                    at,
                    Body::Observation(observation(Finding::Violation, 10.0, at)),
                ),
                "observation.location (10, 37.5) is outside every zone of commitment \"ceasefire\"",
            ),
            // A governance event (which would copy the state): a party
            // registered twice.
            (
                writer.sign(SIGNATORY, at, monitor()),
                "register_party.party.party_id: party \"monitor\" is already registered",
            ),
            // A second genesis.
            (
                writer.sign(SIGNATORY, at, genesis()),
                "this ledger already has its genesis (entry 0)",
            ),
        ];
        for (signed, message) in &refused {
            let mut state = Some(Cow::Borrowed(&durable));
            let Ok(verdict) = step(
                &mut state,
                signed.entry(),
                &stepper.index,
                Fold::Into {
                    projection: &mut stepper.projection,
                    windows: &mut stepper.windows,
                },
                |_| Ok(()),
            );
            assert_eq!(verdict.unwrap_err().message, *message);
            assert!(
                matches!(state, Some(Cow::Borrowed(_))),
                "the state was not copied"
            );
            assert_eq!(stepper.projection, projection);
            assert_eq!(stepper.windows, windows);
        }
        assert_eq!(stepper.state.as_ref(), Some(&durable));
    }

    #[test]
    fn a_lent_state_is_copied_by_governance_only() {
        let entries = log();
        let mut stepper = Stepper::default();
        for signed in &entries[..2] {
            stepper.step(signed).expect("the log steps");
        }
        let durable = stepper.state.clone().unwrap();
        let mut state = Some(Cow::Borrowed(&durable));
        let Ok(verdict) = step(
            &mut state,
            entries[2].entry(),
            &stepper.index,
            Fold::Nothing::<MemoryWindows>,
            |_| Ok(()),
        );
        assert!(verdict.expect("a zone is accepted").is_governance);
        let Some(Cow::Owned(working)) = state else {
            panic!("a governance entry must copy a lent state");
        };
        assert!(working.zones.contains_key(ZONE));
        assert!(durable.zones.is_empty(), "the lender's state never changes");

        // An observation leaves a lent state lent.
        for signed in &entries[2..4] {
            stepper.step(signed).expect("the log steps");
        }
        let durable = stepper.state.clone().unwrap();
        let mut state = Some(Cow::Borrowed(&durable));
        let Ok(verdict) = step(
            &mut state,
            entries[4].entry(),
            &stepper.index,
            Fold::Into {
                projection: &mut stepper.projection,
                windows: &mut stepper.windows,
            },
            |_| Ok(()),
        );
        assert!(verdict
            .expect("the observation is accepted")
            .record
            .is_some());
        assert!(matches!(state, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn folding_nothing_applies_the_rules_only() {
        let entries = log();
        let mut folded = Stepper::default();
        let mut state = None;
        let mut index = MemoryIndex::default();
        for signed in &entries {
            let expected = folded.step(signed).expect("the log steps");
            let Ok(verdict) = step(
                &mut state,
                signed.entry(),
                &index,
                Fold::Nothing::<MemoryWindows>,
                |_| Ok(()),
            );
            let stepped = verdict.expect("the log steps");
            assert_eq!(stepped.accepted, expected.accepted);
            assert_eq!(stepped.record, expected.record);
            assert_eq!(stepped.folded, Folded::default());
            index.record(signed.leaf_hash, &stepped);
        }
        assert_eq!(state.map(Cow::into_owned), folded.state);
    }

    #[test]
    fn found_builds_from_the_genesis_or_refuses_it() {
        let entries = log();
        let genesis = entries[0].entry();
        let index = MemoryIndex::default();
        let mut projection = Projection::new();
        let mut windows = MemoryWindows::default();

        let mut state = None;
        let Ok(verdict) = step(
            &mut state,
            genesis,
            &index,
            Fold::Into {
                projection: &mut projection,
                windows: &mut windows,
            },
            |_| {
                Err::<(), _>(Rejection::new(
                    crate::proto::ReasonCode::OperatorKeyMismatch,
                    "not this operator",
                ))
            },
        );
        assert_eq!(verdict.unwrap_err().message, "not this operator");
        assert!(state.is_none());
        assert_eq!(projection, Projection::new());

        let Ok(verdict) = step(
            &mut state,
            genesis,
            &index,
            Fold::Into {
                projection: &mut projection,
                windows: &mut windows,
            },
            |rules| Ok(rules.agreement.origin.clone()),
        );
        let stepped = verdict.expect("the genesis is accepted");
        assert_eq!(stepped.founded.as_deref(), Some("step.example/log"));
        assert!(state.is_some());
        assert_eq!(projection.as_of_seq, Some(0));

        // Before the genesis, only a genesis: the rules say so.
        let mut state = None;
        let Ok(verdict) = step(
            &mut state,
            entries[1].entry(),
            &index,
            Fold::Nothing::<MemoryWindows>,
            |_| Ok(()),
        );
        assert!(verdict.is_err());
        assert!(state.is_none());
    }
}
