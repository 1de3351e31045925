//! ceasefire-ledger, the binary's library: the edge people touch. The
//! layers it drives are crates (ARCHITECTURE.md has the map):
//! `ceasefire_core` (bytes and rules, no I/O), `ceasefire_grpc` (the wire),
//! `ceasefire_audit` (the auditor, on the core alone) and `ceasefire_node`
//! (storage, sequencer, server, export).
//!
//! Here: [`cli`] (every subcommand, the bench and the demo), [`dev`] (the
//! development bootstrap), and the files people write and read:
//! [`keyfile`] (plain, or encrypted at rest as [`age`] files to a
//! [`passphrase`]), [`signed_file`], [`event_json`], the [`outbox`] of
//! `submit --outbox`, the [`watch_cursor`] of `watch --cursor-file`, and
//! [`durable_file`] (whole-file writes that survive a
//! crash).

// One call into libc needs `unsafe`, allowed where it stands with its
// reason: `malloc_trim` (cli/serve.rs). The other is the test kit's `kill`.
#![deny(unsafe_code)]

pub mod age;
pub mod cli;
pub mod dev;
pub mod durable_file;
pub mod event_json;
pub mod keyfile;
pub mod outbox;
pub mod passphrase;
pub mod relative_time;
pub mod signed_file;
pub mod watch_cursor;
