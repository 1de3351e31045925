//! docs/spec.md section 6 and the code cannot drift apart: the reason
//! tables are read from the spec itself and compared, row by row, with
//! `RejectionKind::of` (the gRPC code of each reason) and `metadata_keys`
//! (the ErrorInfo metadata of each reason).

use std::collections::{BTreeMap, BTreeSet};

use ceasefire_core::rejection::{metadata_keys, reason_name, ReasonCode, RejectionKind};

const SPEC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/spec.md"));

/// Every reason a client can be sent (all but UNSPECIFIED).
fn reasons() -> Vec<ReasonCode> {
    (1..)
        .map_while(|value| ReasonCode::try_from(value).ok())
        .collect()
}

/// The body rows of the table whose header line is `header`, as cells.
fn table(header: &str) -> Vec<Vec<String>> {
    let mut lines = SPEC.lines().skip_while(|line| line.trim() != header);
    assert!(
        lines.next().is_some(),
        "no table {header:?} in docs/spec.md"
    );
    lines
        .skip(1) // |---|---|
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_string())
                .collect()
        })
        .collect()
}

/// The `code` spans of `text`, in order.
fn code_spans(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(index, _)| index % 2 == 1)
        .map(|(_, span)| span.to_string())
        .collect()
}

/// `text` without its parenthesised remarks.
fn without_parentheses(text: &str) -> String {
    let mut depth = 0;
    text.chars()
        .filter(|c| {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    return false;
                }
                _ => {}
            }
            depth == 0
        })
        .collect()
}

#[test]
fn every_reason_has_the_grpc_code_the_spec_gives_it() {
    let rows = table("| reason | gRPC code | when |");
    let spec: BTreeMap<String, String> = rows
        .iter()
        .map(|row| {
            let name = code_spans(&row[0]).concat();
            let code = code_spans(&row[1]).concat();
            (name, code)
        })
        .collect();
    assert_eq!(spec.len(), rows.len(), "a reason is listed twice");
    for reason in reasons() {
        let name = reason_name(reason);
        let Some(code) = spec.get(name) else {
            panic!("docs/spec.md section 6 has no row for {name}");
        };
        assert_eq!(
            RejectionKind::of(reason).name(),
            code,
            "{name}: the code and docs/spec.md disagree"
        );
    }
    let known: BTreeSet<&str> = reasons().into_iter().map(reason_name).collect();
    for name in spec.keys() {
        assert!(
            known.contains(name.as_str()),
            "docs/spec.md lists {name}, which errors.proto does not define"
        );
    }
}

/// docs/spec.md section 6's metadata table, parsed: each reason's keys it
/// always carries, and those it carries only when the row says so.
struct SpecMetadata {
    always: BTreeMap<String, BTreeSet<String>>,
    conditional: BTreeMap<String, BTreeSet<String>>,
}

fn spec_metadata() -> SpecMetadata {
    let mut always: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut conditional: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut otherwise_none = false;
    for row in table("| reason | metadata keys |") {
        if row[0] == "every other reason" {
            assert_eq!(row[1], "none");
            otherwise_none = true;
            continue;
        }
        let cell = without_parentheses(&row[1]);
        // "`a`, and `b` when ...": keys in a clause with "when" are
        // conditional; "when ...: `a`, `b`" makes all that follow so.
        let (mut keys, mut maybe) = (BTreeSet::new(), BTreeSet::new());
        match cell.split_once(':') {
            Some((condition, listed)) if condition.trim_start().starts_with("when") => {
                maybe.extend(code_spans(listed));
            }
            _ => {
                for clause in cell.split(", and ") {
                    if clause.contains(" when ") {
                        maybe.extend(code_spans(clause));
                    } else {
                        keys.extend(code_spans(clause));
                    }
                }
            }
        }
        for name in code_spans(&row[0]) {
            assert!(
                always.insert(name.clone(), keys.clone()).is_none(),
                "{name} is listed twice"
            );
            conditional.insert(name, maybe.clone());
        }
    }
    assert!(
        otherwise_none,
        "the metadata table has no 'every other reason' row"
    );
    SpecMetadata {
        always,
        conditional,
    }
}

#[test]
fn every_reason_carries_the_metadata_the_spec_gives_it() {
    let SpecMetadata {
        always,
        conditional,
    } = spec_metadata();
    let known: BTreeSet<&str> = reasons().into_iter().map(reason_name).collect();
    for name in always.keys() {
        assert!(
            known.contains(name.as_str()),
            "the table lists unknown {name}"
        );
    }
    for reason in std::iter::once(ReasonCode::Unspecified).chain(reasons()) {
        let name = reason_name(reason);
        let code = metadata_keys(reason);
        let strings = |keys: &[&str]| keys.iter().map(|key| key.to_string()).collect();
        let (code_always, code_conditional): (BTreeSet<String>, BTreeSet<String>) =
            (strings(code.always), strings(code.conditional));
        assert_eq!(
            code_always,
            always.get(name).cloned().unwrap_or_default(),
            "{name}: the metadata keys of the code and docs/spec.md disagree"
        );
        assert_eq!(
            code_conditional,
            conditional.get(name).cloned().unwrap_or_default(),
            "{name}: the conditional metadata keys of the code and docs/spec.md disagree"
        );
    }
}

#[test]
fn the_spec_tables_parse_as_expected() {
    // Guards the parser: a few rows read by hand.
    let spec = table("| reason | gRPC code | when |");
    assert_eq!(spec.len(), reasons().len());
    let metadata = spec_metadata();
    let keys = |keys: &[&str]| -> BTreeSet<String> { keys.iter().map(|k| k.to_string()).collect() };
    assert_eq!(metadata.always["NONCE_REUSED"], keys(&["author", "seq"]));
    assert_eq!(metadata.conditional["NONCE_REUSED"], keys(&[]));
    assert_eq!(metadata.always["OUTSIDE_ZONE"], keys(&["commitment_id"]));
    assert_eq!(metadata.conditional["OUTSIDE_ZONE"], keys(&["zone_id"]));
}
