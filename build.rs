//! Compiles `proto/` with protox (pure Rust: no system `protoc`) and feeds
//! the descriptor set to tonic's codegen. The same descriptor set is written
//! to OUT_DIR so the binary can offer gRPC reflection and proto3 JSON input.

use std::{env, fs, path::PathBuf};

const PROTO_FILES: &[&str] = &[
    "ceasefire/v1/events.proto",
    "ceasefire/v1/errors.proto",
    "ceasefire/v1/ledger.proto",
    "ceasefire/v1/compliance.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTO_FILES, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("ceasefire_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
