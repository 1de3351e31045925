//! The guide to writing events (docs/events.md) cannot rot: every ```json
//! block in it is submitted with `submit --dry-run` (the binary, parsing it
//! as `submit` does, against `serve --dev`), signed with the key the
//! comment above the block names, and the ledger's answer must be the one
//! the comment states (`<!-- dry-run monitor: accepted -->`, `<!-- dry-run
//! signatory: refused TARGET_UNKNOWN -->`). A block without such a comment,
//! or a comment without a block, fails the test.

use std::path::Path;
use std::time::Duration;

use ceasefire_testkit::harness::{command, run_bounded, tree_size, Serve};
use ceasefire_testkit::scenario::BOOTSTRAP_ENTRIES;

const BINARY: &str = env!("CARGO_BIN_EXE_ceasefire-ledger");
const GUIDE: &str = include_str!("../docs/events.md");

/// Generous bounds: these wait for processes, never time anything.
const START_BOUND: Duration = Duration::from_secs(60);
const RUN_BOUND: Duration = Duration::from_secs(120);

/// One example of the guide: who signs it, what the ledger must answer.
struct Example {
    line: usize,
    key: String,
    expected: String,
    json: String,
}

/// Every ```json block and the `<!-- dry-run KEY: EXPECTED -->` line above it.
fn examples(guide: &str) -> Vec<Example> {
    let lines: Vec<&str> = guide.lines().collect();
    let mut examples = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        if let Some(annotation) = line
            .strip_prefix("<!-- dry-run ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        {
            let (key, expected) = annotation
                .split_once(": ")
                .unwrap_or_else(|| panic!("line {}: bad annotation {line:?}", index + 1));
            assert_eq!(
                lines.get(index + 1).copied(),
                Some("```json"),
                "line {}: the annotation is not followed by a ```json block",
                index + 1
            );
            let end = (index + 2..lines.len())
                .find(|&end| lines[end] == "```")
                .unwrap_or_else(|| panic!("line {}: the block never ends", index + 2));
            examples.push(Example {
                line: index + 2,
                key: key.to_string(),
                expected: expected.to_string(),
                json: lines[index + 2..end].join("\n"),
            });
            index = end;
        } else {
            assert_ne!(
                line,
                "```json",
                "line {}: a JSON example without a dry-run annotation",
                index + 1
            );
        }
        index += 1;
    }
    examples
}

#[tokio::test]
async fn every_example_of_the_guide_gets_the_answer_it_states() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let mut serve =
        Serve::spawn(BINARY, &data, &["--dev"], work.path().join("serve.stderr")).unwrap();
    let url = serve.url.clone();
    serve.wait_ready(START_BOUND).await.unwrap();

    let examples = examples(GUIDE);
    assert!(examples.len() >= 10, "the guide lost its examples");
    for example in &examples {
        let Example {
            line,
            key,
            expected,
            json,
        } = example;
        let file = work.path().join(format!("example-{line}.json"));
        std::fs::write(&file, json).unwrap();
        let key_file = data.join("dev-keys").join(format!("{key}.key"));
        let output = run(&url, &key_file, &file, work.path());
        let answer = output.stdout.trim_end();
        if expected == "accepted" {
            assert!(
                output.status.success() && answer == "event 1 would be accepted",
                "docs/events.md line {line}: expected accepted, got {answer:?}: {}",
                output.stderr
            );
        } else {
            let reason = expected
                .strip_prefix("refused ")
                .unwrap_or_else(|| panic!("line {line}: unknown expectation {expected:?}"));
            assert!(
                !output.status.success()
                    && answer.starts_with("event 1 would be refused: ")
                    && answer.contains(&format!(" {reason}: ")),
                "docs/events.md line {line}: expected {reason}, got {answer:?}: {}",
                output.stderr
            );
        }
    }
    // Dry runs all: nothing was appended.
    assert_eq!(tree_size(&url).await.unwrap(), BOOTSTRAP_ENTRIES);
}

fn run(url: &str, key: &Path, file: &Path, work: &Path) -> ceasefire_testkit::harness::Output {
    run_bounded(
        command(
            BINARY,
            &[
                &"submit",
                &"--dry-run",
                &"--key",
                &key,
                &file,
                &"--server",
                &url,
            ],
        ),
        work,
        RUN_BOUND,
    )
}

#[test]
fn an_unannotated_example_is_caught() {
    let result = std::panic::catch_unwind(|| examples("text\n```json\n{}\n```\n"));
    assert!(result.is_err());
    let found = examples("<!-- dry-run monitor: accepted -->\n```json\n{\"a\": 1}\n```\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].key, "monitor");
    assert_eq!(found[0].json, "{\"a\": 1}");
}
