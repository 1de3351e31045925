//! ceasefire-ledger: an append-only, hash-chained, signed log of ceasefire
//! monitoring reports, with compliance projections and an offline auditor.
//!
//! Layers, inside out (ARCHITECTURE.md has the map):
//! - [`core`]: the bytes and the rules; no I/O.
//! - [`storage`]: the log, tree and indexes in sled, synced to disk.
//! - [`sequencer`]: the one writer, batching and committing.
//! - [`server`]: the gRPC services.
//! - [`node`]: all of the above wired into a running service.
//! - [`audit`]: the auditor, on the core alone.
//! - [`cli`], [`client`], [`keyfile`], [`signed_file`], [`event_json`], [`dev`]: the edge people touch.
//! - [`fuzzing`]: the bodies of the fuzz targets in `fuzz/`, also run as tests.

pub mod audit;
pub mod cli;
pub mod client;
pub mod core;
pub mod dev;
pub mod event_json;
pub mod fuzzing;
pub mod keyfile;
pub mod metrics;
pub mod node;
pub mod proto;
pub mod sequencer;
pub mod server;
pub mod signed_file;
pub mod storage;
pub mod tiles;
