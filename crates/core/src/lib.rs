//! ceasefire-core: everything that defines what the log *is*, with no I/O.
//!
//! Nothing under `core` touches sled, tonic, the file system, the network or
//! the clock. The server and the auditor both build on it, so they agree on
//! every byte and every verdict by construction.

#![forbid(unsafe_code)]

/// Generated protobuf messages of `ceasefire.v1` (`proto/`): messages only,
/// no gRPC (the services are in `ceasefire-grpc`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/ceasefire.v1.rs"));

    /// The compiled descriptor set of `proto/`, for gRPC reflection and for
    /// reading events written as proto3 JSON.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/ceasefire_descriptor.bin"));
}

pub mod canonical;
pub mod checkpoint;
pub mod cosignature;
mod enum_number;
pub mod error_chain;
pub mod geo;
pub mod leaf;
pub mod merkle;
pub mod projection;
pub mod rejection;
pub mod replay;
pub mod rules;
pub mod signing;
pub mod step;
#[cfg(test)]
mod test_leaf;
pub mod tiles;
pub mod tlog_proof;
pub mod windows;
pub mod witness;
pub mod witness_policy;

/// How keys appear in messages and JSON: standard base64, as proto3 JSON
/// writes `bytes` fields, so a key in an error can be pasted into an event.
pub fn key_text(key: impl AsRef<[u8]>) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key.as_ref())
}
