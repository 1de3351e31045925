//! The ceasefire-ledger node: everything that runs the log on one machine.
//!
//! Layers, inside out (ARCHITECTURE.md has the map):
//! - [`storage`]: the log, tree and indexes in sled, synced to disk.
//! - [`sequencer`]: the one writer, batching and committing.
//! - [`server`]: the gRPC services.
//! - [`node`]: all of the above wired into a running service.
//! - [`export`]: the store written as a C2SP tlog-tiles directory.
//! - [`tiles_publisher`]: the tiles mirror `serve --tiles-dir` keeps current.
//! - [`data_dir_source`]: the auditor's view of a data directory.
//! - [`metrics`]: Prometheus metrics and their endpoint.

#![forbid(unsafe_code)]

pub mod data_dir_source;
pub mod export;
pub mod metrics;
pub mod node;
pub mod sequencer;
pub mod server;
pub mod storage;
pub mod tiles_publisher;
pub mod witnessing;

pub use data_dir_source::DataDirSource;
