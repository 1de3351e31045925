//! Stamps the binary with what it was built from, for `--version`: the
//! package version, the git commit when built from a checkout, and the
//! log-format version it speaks (docs/spec.md), so an auditor or operator
//! comparing two binaries knows whether they should agree byte for byte.
//!
//! The protos are compiled by `crates/core/build.rs` (messages) and
//! `crates/grpc/build.rs` (services), not here.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|commit| commit.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    for path in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!(
        "cargo:rustc-env=CEASEFIRE_LEDGER_VERSION={} (commit {commit}; log format v1)",
        env!("CARGO_PKG_VERSION")
    );
}
