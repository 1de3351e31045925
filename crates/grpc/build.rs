//! Generates the gRPC services of `proto/` (client and server) with tonic
//! from the descriptor set ceasefire-core's build compiled, pointing every
//! message at `ceasefire_core::proto`: one compile of `proto/`, and one
//! Rust type per message whichever crate uses it.

use std::{env, fs};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = env::var("DEP_CEASEFIRE_PROTO_DESCRIPTOR_SET")?;
    println!("cargo:rerun-if-changed={path}");
    let descriptors = prost_types::FileDescriptorSet::decode(fs::read(&path)?.as_slice())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(".ceasefire.v1", "::ceasefire_core::proto")
        .compile_fds(descriptors)?;
    Ok(())
}
