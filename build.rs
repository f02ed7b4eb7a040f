//! Compiles `proto/` with protox (no system `protoc`) and writes the descriptor set that server
//! reflection serves.
use std::{env, path::PathBuf};

/// What roster serves (and reflection lists).
const SERVED: [&str; 8] = [
    "proto/roster/v1/user.proto",
    "proto/roster/v1/user_service.proto",
    "proto/roster/v1/role_service.proto",
    "proto/roster/v1/task_service.proto",
    "proto/roster/v1/event_service.proto",
    "proto/roster/v1/moderation_service.proto",
    "proto/roster/v1/device_service.proto",
    "proto/roster/v1/token_service.proto",
];

/// What products serve and roster calls: generated, but not listed by roster's reflection.
const PRODUCT: [&str; 1] = ["proto/roster/product/v1/product_hook.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let served = protox::compile(SERVED, ["proto"])?;
    std::fs::write(
        out.join("roster_descriptor.bin"),
        prost::Message::encode_to_vec(&served),
    )?;
    for fds in [served, protox::compile(PRODUCT, ["proto"])?] {
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .codec_path("crate::grpc::codec::RosterCodec")
            .compile_fds(fds)?;
    }
    Ok(())
}
