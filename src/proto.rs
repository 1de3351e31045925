//! Generated protobuf types and gRPC stubs for `ceasefire.v1` (see `proto/`).

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("ceasefire.v1");

/// The compiled descriptor set of `proto/`, for gRPC reflection and for
/// reading events written as proto3 JSON.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ceasefire_descriptor");
