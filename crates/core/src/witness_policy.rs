//! The witness policy: which witnesses cosign the log's checkpoints, and how
//! many of them a verifier demands before it believes a checkpoint.
//!
//! A policy enters the log as a `SetWitnessPolicy` governance event (signed
//! by the threshold of signatories, like every governance event), and can be
//! written as the Sigsum/C2SP policy text that witness tooling reads:
//!
//! ```text
//! witness <name> <vkey> [<url>]
//! group <name> <threshold | any | all> <member>...
//! quorum <name>
//! ```
//!
//! Invariants:
//! - Every name (witness or group) is unique, and a group only names members
//!   defined before it, so a policy has no cycles and evaluates in one pass.
//! - No two witnesses share a key: one key counted twice would let one party
//!   make up two votes of a quorum.
//! - The event and the text go through the one validation
//!   ([`WitnessPolicy::from_event`]), so a policy accepted in one form is
//!   accepted in the other.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::{validate_key_name, CheckpointBody, CheckpointError, NoteVerifier};
use crate::cosignature::{open_cosigned, Cosigned, CosignerVerifier};
use crate::proto::{SetWitnessPolicy, Witness, WitnessGroup};
use crate::rejection::{ReasonCode, Rejection};
use crate::signing::is_acceptable_public_key;

/// Most witnesses a policy names. Public witness networks run a few dozen
/// witnesses; a quorum over more would mean posting every checkpoint to
/// more servers than any log does today.
pub const MAX_POLICY_WITNESSES: usize = 64;
/// Most groups a policy defines (each group is at least one line of text).
pub const MAX_POLICY_GROUPS: usize = 64;
/// Longest witness URL, in bytes; the same bound as evidence URIs.
pub const MAX_WITNESS_URL_BYTES: usize = crate::rules::MAX_URI_BYTES;

/// One witness of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyWitness {
    pub verifier: CosignerVerifier,
    /// Its tlog-witness submission prefix. Always present in a policy from
    /// the log (the ledger must reach it); optional in a policy file used
    /// only to verify.
    pub url: Option<String>,
}

/// K of N over earlier names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyGroup {
    pub name: String,
    pub threshold: u32,
    pub members: Vec<String>,
}

/// A validated witness policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessPolicy {
    pub witnesses: Vec<PolicyWitness>,
    pub groups: Vec<PolicyGroup>,
    pub quorum: String,
}

/// What a checkpoint's cosignatures amount to under a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumVerdict {
    pub satisfied: bool,
    /// Witnesses whose cosignature verified, in policy order.
    pub cosigned: Vec<Cosigned>,
    /// Witnesses of the policy without a valid cosignature, in policy order.
    pub missing: Vec<String>,
}

/// Why a policy text was refused: the line (from 1) and what is wrong, or
/// the rule the policy as a whole breaks.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicyTextError {
    Line { line: usize, reason: String },
    Invalid(Rejection),
}

impl fmt::Display for PolicyTextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line { line, reason } => write!(f, "policy line {line}: {reason}"),
            Self::Invalid(rejection) => write!(f, "policy: {}", rejection.message),
        }
    }
}

impl std::error::Error for PolicyTextError {}

fn invalid(code: ReasonCode, field: impl Into<String>, message: impl Into<String>) -> Rejection {
    Rejection::field(code, field, message)
}

fn check_name(field: &str, name: &str) -> Result<(), Rejection> {
    if name.is_empty() {
        return Err(invalid(
            ReasonCode::FieldMissing,
            field,
            format!("{field} is required"),
        ));
    }
    validate_key_name(name).map_err(|_| {
        invalid(
            ReasonCode::FieldMalformed,
            field,
            format!(
                "{field} {name:?} is not a key name: 1 to 255 bytes, no whitespace, '+' or control characters"
            ),
        )
    })
}

fn check_url(field: &str, url: &str) -> Result<(), Rejection> {
    if url.len() > MAX_WITNESS_URL_BYTES {
        return Err(invalid(
            ReasonCode::FieldOutOfBounds,
            field,
            format!(
                "{field} is {} bytes, over the limit of {MAX_WITNESS_URL_BYTES}",
                url.len()
            ),
        ));
    }
    let host = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let valid = host.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(invalid(
            ReasonCode::FieldMalformed,
            field,
            format!("{field} {url:?} is not an http:// or https:// URL with a host"),
        ));
    }
    Ok(())
}

impl WitnessPolicy {
    /// Validates the event's policy. `require_urls` is true for the log's
    /// own policy (the ledger posts to each witness) and false for a policy
    /// file read only to verify.
    pub fn from_event(event: &SetWitnessPolicy, require_urls: bool) -> Result<Self, Rejection> {
        if event.witnesses.is_empty() {
            return Err(invalid(
                ReasonCode::FieldMissing,
                "set_witness_policy.witnesses",
                "set_witness_policy.witnesses: a policy names at least one witness",
            ));
        }
        if event.witnesses.len() > MAX_POLICY_WITNESSES {
            return Err(invalid(
                ReasonCode::FieldOutOfBounds,
                "set_witness_policy.witnesses",
                format!(
                    "set_witness_policy.witnesses lists {}, over the limit of {MAX_POLICY_WITNESSES}",
                    event.witnesses.len()
                ),
            ));
        }
        if event.groups.len() > MAX_POLICY_GROUPS {
            return Err(invalid(
                ReasonCode::FieldOutOfBounds,
                "set_witness_policy.groups",
                format!(
                    "set_witness_policy.groups lists {}, over the limit of {MAX_POLICY_GROUPS}",
                    event.groups.len()
                ),
            ));
        }
        let mut names = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut witnesses = Vec::with_capacity(event.witnesses.len());
        for (index, witness) in event.witnesses.iter().enumerate() {
            let field = format!("set_witness_policy.witnesses[{index}]");
            witnesses.push(Self::check_witness(&field, witness, require_urls)?);
            if !names.insert(witness.name.as_str()) {
                return Err(duplicate(&format!("{field}.name"), &witness.name));
            }
            if !keys.insert(witness.public_key.as_slice()) {
                return Err(invalid(
                    ReasonCode::DuplicateInList,
                    format!("{field}.public_key"),
                    format!("{field}.public_key is the key of an earlier witness; each witness has its own key"),
                ));
            }
        }
        let mut groups = Vec::with_capacity(event.groups.len());
        for (index, group) in event.groups.iter().enumerate() {
            let field = format!("set_witness_policy.groups[{index}]");
            groups.push(Self::check_group(&field, group, &names)?);
            if !names.insert(group.name.as_str()) {
                return Err(duplicate(&format!("{field}.name"), &group.name));
            }
        }
        if !names.contains(event.quorum.as_str()) {
            return Err(if event.quorum.is_empty() {
                invalid(
                    ReasonCode::FieldMissing,
                    "set_witness_policy.quorum",
                    "set_witness_policy.quorum is required",
                )
            } else {
                invalid(
                    ReasonCode::FieldMalformed,
                    "set_witness_policy.quorum",
                    format!(
                        "set_witness_policy.quorum names {:?}, which is no witness or group of the policy",
                        event.quorum
                    ),
                )
            });
        }
        Ok(WitnessPolicy {
            witnesses,
            groups,
            quorum: event.quorum.clone(),
        })
    }

    fn check_witness(
        field: &str,
        witness: &Witness,
        require_url: bool,
    ) -> Result<PolicyWitness, Rejection> {
        check_name(&format!("{field}.name"), &witness.name)?;
        let key_field = format!("{field}.public_key");
        let key: [u8; 32] = witness.public_key.as_slice().try_into().map_err(|_| {
            invalid(
                ReasonCode::FieldMalformed,
                &key_field,
                format!(
                    "{key_field} must be 32 bytes, got {}",
                    witness.public_key.len()
                ),
            )
        })?;
        let unacceptable = || {
            invalid(
                ReasonCode::KeyUnacceptable,
                &key_field,
                format!("{key_field} is not an acceptable Ed25519 key (non-canonical or of small order)"),
            )
        };
        if !is_acceptable_public_key(&key) {
            return Err(unacceptable());
        }
        let key = VerifyingKey::from_bytes(&key).map_err(|_| unacceptable())?;
        let verifier = CosignerVerifier::new(&witness.name, &key).map_err(|_| unacceptable())?;
        let url_field = format!("{field}.url");
        let url = if witness.url.is_empty() {
            if require_url {
                return Err(invalid(
                    ReasonCode::FieldMissing,
                    &url_field,
                    format!("{url_field} is required: the ledger sends checkpoints there"),
                ));
            }
            None
        } else {
            check_url(&url_field, &witness.url)?;
            Some(witness.url.clone())
        };
        Ok(PolicyWitness { verifier, url })
    }

    fn check_group(
        field: &str,
        group: &WitnessGroup,
        defined: &BTreeSet<&str>,
    ) -> Result<PolicyGroup, Rejection> {
        check_name(&format!("{field}.name"), &group.name)?;
        let mut seen = BTreeSet::new();
        for (index, member) in group.members.iter().enumerate() {
            let member_field = format!("{field}.members[{index}]");
            if !defined.contains(member.as_str()) {
                return Err(invalid(
                    ReasonCode::FieldMalformed,
                    member_field,
                    format!("{field} names {member:?}, which is no witness or earlier group"),
                ));
            }
            if !seen.insert(member.as_str()) {
                return Err(duplicate(&member_field, member));
            }
        }
        if group.threshold == 0 || group.threshold as usize > group.members.len() {
            return Err(invalid(
                ReasonCode::FieldOutOfBounds,
                format!("{field}.threshold"),
                format!(
                    "{field}.threshold must be 1 to its {} members, got {}",
                    group.members.len(),
                    group.threshold
                ),
            ));
        }
        Ok(PolicyGroup {
            name: group.name.clone(),
            threshold: group.threshold,
            members: group.members.clone(),
        })
    }

    /// The event that states this policy.
    pub fn to_event(&self) -> SetWitnessPolicy {
        SetWitnessPolicy {
            witnesses: self
                .witnesses
                .iter()
                .map(|witness| Witness {
                    name: witness.verifier.name().to_owned(),
                    public_key: witness.verifier.public_key().as_bytes().to_vec(),
                    url: witness.url.clone().unwrap_or_default(),
                })
                .collect(),
            groups: self
                .groups
                .iter()
                .map(|group| WitnessGroup {
                    name: group.name.clone(),
                    threshold: group.threshold,
                    members: group.members.clone(),
                })
                .collect(),
            quorum: self.quorum.clone(),
        }
    }

    /// The policy as Sigsum/C2SP policy text.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for witness in &self.witnesses {
            text.push_str(&format!(
                "witness {} {}",
                witness.verifier.name(),
                witness.verifier.vkey()
            ));
            if let Some(url) = &witness.url {
                text.push(' ');
                text.push_str(url);
            }
            text.push('\n');
        }
        for group in &self.groups {
            text.push_str(&format!(
                "group {} {} {}\n",
                group.name,
                group.threshold,
                group.members.join(" ")
            ));
        }
        text.push_str(&format!("quorum {}\n", self.quorum));
        text
    }

    /// Reads policy text. `#` starts a comment; blank lines are skipped;
    /// `log` lines are accepted and ignored, because the log's key comes from
    /// its genesis, not from the policy. URLs are optional here.
    pub fn parse_text(text: &str) -> Result<Self, PolicyTextError> {
        let mut event = SetWitnessPolicy::default();
        let mut quorum_line = None;
        let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
        for (number, raw) in text.lines().enumerate() {
            let line = number + 1;
            let fail = |reason: String| PolicyTextError::Line { line, reason };
            let content = raw.split('#').next().unwrap_or_default();
            let words: Vec<&str> = content.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                ["log", ..] => {}
                ["witness", name, vkey, rest @ ..] if rest.len() <= 1 => {
                    let verifier = CosignerVerifier::from_vkey(vkey)
                        .map_err(|error| fail(format!("witness {name}: {error}")))?;
                    if verifier.name() != *name {
                        return Err(fail(format!(
                            "witness {name}: its vkey is for the key name {:?}; use that name",
                            verifier.name()
                        )));
                    }
                    sizes.insert(name.to_string(), 1);
                    event.witnesses.push(Witness {
                        name: name.to_string(),
                        public_key: verifier.public_key().as_bytes().to_vec(),
                        url: rest.first().map(|url| url.to_string()).unwrap_or_default(),
                    });
                }
                ["group", name, threshold, members @ ..] if !members.is_empty() => {
                    let threshold = match *threshold {
                        "any" => 1,
                        "all" => members.len() as u32,
                        number => number.parse::<u32>().map_err(|_| {
                            fail(format!(
                                "group {name}: threshold {number:?} is not a number, any or all"
                            ))
                        })?,
                    };
                    sizes.insert(name.to_string(), members.len());
                    event.groups.push(WitnessGroup {
                        name: name.to_string(),
                        threshold,
                        members: members.iter().map(|member| member.to_string()).collect(),
                    });
                }
                ["quorum", name] => {
                    if quorum_line.replace(line).is_some() {
                        return Err(fail("a policy has one quorum line".into()));
                    }
                    event.quorum = name.to_string();
                }
                [keyword, ..] => {
                    return Err(fail(format!(
                        "expected `witness <name> <vkey> [<url>]`, `group <name> <k|any|all> <member>...` or `quorum <name>`, found {keyword:?} with {} words",
                        words.len()
                    )))
                }
            }
        }
        if quorum_line.is_none() {
            return Err(PolicyTextError::Invalid(invalid(
                ReasonCode::FieldMissing,
                "quorum",
                "the policy has no quorum line",
            )));
        }
        Self::from_event(&event, false).map_err(PolicyTextError::Invalid)
    }

    pub fn cosigners(&self) -> Vec<CosignerVerifier> {
        self.witnesses
            .iter()
            .map(|witness| witness.verifier.clone())
            .collect()
    }

    /// Whether cosignatures from `names` satisfy the quorum.
    pub fn is_satisfied_by(&self, names: &BTreeSet<&str>) -> bool {
        let mut satisfied: BTreeMap<&str, bool> = self
            .witnesses
            .iter()
            .map(|witness| {
                let name = witness.verifier.name();
                (name, names.contains(name))
            })
            .collect();
        for group in &self.groups {
            let count = group
                .members
                .iter()
                .filter(|member| satisfied.get(member.as_str()).copied().unwrap_or(false))
                .count();
            satisfied.insert(&group.name, count >= group.threshold as usize);
        }
        satisfied
            .get(self.quorum.as_str())
            .copied()
            .unwrap_or(false)
    }

    /// Opens `note` with the log's key and judges its cosignatures.
    pub fn judge(
        &self,
        note: &str,
        log: &NoteVerifier,
    ) -> Result<(CheckpointBody, QuorumVerdict), CheckpointError> {
        let (body, cosigned) = open_cosigned(note, log, &self.cosigners())?;
        let names: BTreeSet<&str> = cosigned.iter().map(|c| c.name.as_str()).collect();
        let satisfied = self.is_satisfied_by(&names);
        let missing = self
            .witnesses
            .iter()
            .map(|witness| witness.verifier.name())
            .filter(|name| !names.contains(name))
            .map(str::to_owned)
            .collect();
        Ok((
            body,
            QuorumVerdict {
                satisfied,
                cosigned,
                missing,
            },
        ))
    }
}

fn duplicate(field: &str, name: &str) -> Rejection {
    invalid(
        ReasonCode::DuplicateInList,
        field,
        format!("{field}: the name {name:?} is already used in this policy"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{sign_checkpoint, NoteSigner};
    use crate::cosignature::{add_signature_lines, Cosigner};
    use ed25519_dalek::SigningKey;

    fn cosigner(name: &str, seed: u8) -> Cosigner {
        Cosigner::new(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    fn witness(cosigner: &Cosigner) -> Witness {
        Witness {
            name: cosigner.name().into(),
            public_key: cosigner.verifier().public_key().as_bytes().to_vec(),
            url: format!("http://127.0.0.1:1/{}", cosigner.name()),
        }
    }

    fn two_of_three() -> (Vec<Cosigner>, SetWitnessPolicy) {
        let cosigners = vec![
            cosigner("north.example/w", 1),
            cosigner("south.example/w", 2),
            cosigner("mediator.example/w", 3),
        ];
        let event = SetWitnessPolicy {
            witnesses: cosigners.iter().map(witness).collect(),
            groups: vec![WitnessGroup {
                name: "signatories".into(),
                threshold: 2,
                members: cosigners.iter().map(|c| c.name().to_owned()).collect(),
            }],
            quorum: "signatories".into(),
        };
        (cosigners, event)
    }

    #[test]
    fn text_round_trips_and_reads_any_and_all() {
        let (_, event) = two_of_three();
        let policy = WitnessPolicy::from_event(&event, true).unwrap();
        let text = policy.to_text();
        assert!(text.starts_with("witness north.example/w north.example/w+"));
        assert!(text.ends_with("group signatories 2 north.example/w south.example/w mediator.example/w\nquorum signatories\n"));
        assert_eq!(WitnessPolicy::parse_text(&text).unwrap(), policy);
        assert_eq!(policy.to_event(), event);

        let any = text.replace("signatories 2", "signatories any");
        assert_eq!(
            WitnessPolicy::parse_text(&any).unwrap().groups[0].threshold,
            1
        );
        let all = format!(
            "# comment\nlog whatever\n\n{}",
            text.replace("signatories 2", "signatories all")
        );
        assert_eq!(
            WitnessPolicy::parse_text(&all).unwrap().groups[0].threshold,
            3
        );
    }

    #[test]
    fn quorum_follows_groups() {
        let (_, mut event) = two_of_three();
        event.groups.push(WitnessGroup {
            name: "north-and-two".into(),
            threshold: 2,
            members: vec!["north.example/w".into(), "signatories".into()],
        });
        event.quorum = "north-and-two".into();
        let policy = WitnessPolicy::from_event(&event, true).unwrap();
        let set = |names: &[&'static str]| names.iter().copied().collect::<BTreeSet<&str>>();
        assert!(policy.is_satisfied_by(&set(&["north.example/w", "south.example/w"])));
        assert!(!policy.is_satisfied_by(&set(&["south.example/w", "mediator.example/w"])));
        assert!(!policy.is_satisfied_by(&set(&["north.example/w"])));
        assert!(!policy.is_satisfied_by(&set(&[])));
    }

    #[test]
    fn judge_counts_only_valid_cosignatures_of_policy_witnesses() {
        let (cosigners, event) = two_of_three();
        let policy = WitnessPolicy::from_event(&event, true).unwrap();
        let log = NoteSigner::new("example.org/log", SigningKey::from_bytes(&[9; 32])).unwrap();
        let body = CheckpointBody {
            origin: "example.org/log".into(),
            tree_size: 3,
            root_hash: [1; 32],
        };
        let note = sign_checkpoint(&body, &log).unwrap();
        let text = body.to_text();
        let stranger = cosigner("stranger.example/w", 4);
        let one = add_signature_lines(
            &note,
            &format!(
                "{}{}",
                cosigners[2].cosign(&text, 5),
                stranger.cosign(&text, 5)
            ),
        );
        let (_, verdict) = policy.judge(&one, &log.verifier()).unwrap();
        assert!(!verdict.satisfied);
        assert_eq!(verdict.missing, vec!["north.example/w", "south.example/w"]);
        let two = add_signature_lines(&one, &cosigners[0].cosign(&text, 6));
        let (_, verdict) = policy.judge(&two, &log.verifier()).unwrap();
        assert!(verdict.satisfied);
        assert_eq!(
            verdict
                .cosigned
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            vec!["north.example/w", "mediator.example/w"]
        );
        assert_eq!(verdict.missing, vec!["south.example/w"]);
    }

    #[test]
    fn invalid_policies_name_the_field() {
        type Change = Box<dyn Fn(&mut SetWitnessPolicy)>;
        let (_, base) = two_of_three();
        let cases: Vec<(Change, ReasonCode, &str)> = vec![
            (
                Box::new(|e| e.witnesses.clear()),
                ReasonCode::FieldMissing,
                "set_witness_policy.witnesses",
            ),
            (
                Box::new(|e| e.witnesses[1].name = "north.example/w".into()),
                ReasonCode::DuplicateInList,
                "set_witness_policy.witnesses[1].name",
            ),
            (
                Box::new(|e| e.witnesses[1].public_key = e.witnesses[0].public_key.clone()),
                ReasonCode::DuplicateInList,
                "set_witness_policy.witnesses[1].public_key",
            ),
            (
                Box::new(|e| e.witnesses[0].public_key = vec![1; 31]),
                ReasonCode::FieldMalformed,
                "set_witness_policy.witnesses[0].public_key",
            ),
            (
                Box::new(|e| e.witnesses[0].public_key = vec![0; 32]),
                ReasonCode::KeyUnacceptable,
                "set_witness_policy.witnesses[0].public_key",
            ),
            (
                Box::new(|e| e.witnesses[0].name = "has space".into()),
                ReasonCode::FieldMalformed,
                "set_witness_policy.witnesses[0].name",
            ),
            (
                Box::new(|e| e.witnesses[0].url = String::new()),
                ReasonCode::FieldMissing,
                "set_witness_policy.witnesses[0].url",
            ),
            (
                Box::new(|e| e.witnesses[0].url = "ftp://x".into()),
                ReasonCode::FieldMalformed,
                "set_witness_policy.witnesses[0].url",
            ),
            (
                Box::new(|e| e.witnesses[0].url = "http://".into()),
                ReasonCode::FieldMalformed,
                "set_witness_policy.witnesses[0].url",
            ),
            (
                Box::new(|e| e.groups[0].threshold = 4),
                ReasonCode::FieldOutOfBounds,
                "set_witness_policy.groups[0].threshold",
            ),
            (
                Box::new(|e| e.groups[0].threshold = 0),
                ReasonCode::FieldOutOfBounds,
                "set_witness_policy.groups[0].threshold",
            ),
            (
                Box::new(|e| e.groups[0].members.push("nobody".into())),
                ReasonCode::FieldMalformed,
                "set_witness_policy.groups[0].members[3]",
            ),
            (
                Box::new(|e| e.groups[0].members[1] = "north.example/w".into()),
                ReasonCode::DuplicateInList,
                "set_witness_policy.groups[0].members[1]",
            ),
            (
                Box::new(|e| e.groups[0].name = "north.example/w".into()),
                ReasonCode::DuplicateInList,
                "set_witness_policy.groups[0].name",
            ),
            (
                Box::new(|e| e.quorum = String::new()),
                ReasonCode::FieldMissing,
                "set_witness_policy.quorum",
            ),
            (
                Box::new(|e| e.quorum = "nobody".into()),
                ReasonCode::FieldMalformed,
                "set_witness_policy.quorum",
            ),
        ];
        for (change, code, field) in cases {
            let mut event = base.clone();
            change(&mut event);
            let rejection = WitnessPolicy::from_event(&event, true).unwrap_err();
            assert_eq!(
                (
                    rejection.reason,
                    rejection.metadata.get("field").map(String::as_str)
                ),
                (code, Some(field)),
                "{}",
                rejection.message
            );
        }
        // A group may not name a later group (no cycles).
        let mut event = base.clone();
        event.groups.insert(
            0,
            WitnessGroup {
                name: "early".into(),
                threshold: 1,
                members: vec!["signatories".into()],
            },
        );
        assert!(WitnessPolicy::from_event(&event, true).is_err());
    }

    #[test]
    fn bad_policy_text_names_the_line() {
        let (_, event) = two_of_three();
        let text = WitnessPolicy::from_event(&event, true).unwrap().to_text();
        let vkey = text
            .lines()
            .next()
            .unwrap()
            .split(' ')
            .nth(2)
            .unwrap()
            .to_owned();
        for (bad, line) in [
            ("witness onlyname\nquorum onlyname\n".to_string(), 1),
            (format!("witness other.name {vkey}\nquorum other.name\n"), 1),
            (format!("witness north.example/w {vkey}\ngroup g two north.example/w\nquorum g\n"), 2),
            (format!("witness north.example/w {vkey}\nquorum north.example/w\nquorum north.example/w\n"), 3),
            (format!("witness north.example/w {vkey}\nbogus line\n"), 2),
        ] {
            match WitnessPolicy::parse_text(&bad) {
                Err(PolicyTextError::Line { line: found, .. }) => assert_eq!(found, line, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            WitnessPolicy::parse_text(&format!("witness north.example/w {vkey}\n")),
            Err(PolicyTextError::Invalid(_))
        ));
        // Without URLs is fine in a file.
        let policy = WitnessPolicy::parse_text(&format!(
            "witness north.example/w {vkey}\nquorum north.example/w\n"
        ))
        .unwrap();
        assert_eq!(policy.witnesses[0].url, None);
    }
}
