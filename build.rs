//! Compiles `proto/` with protox (no system `protoc`) and writes the descriptor set that server
//! reflection serves.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/roster/v1/user.proto",
        "proto/roster/v1/user_service.proto",
        "proto/roster/v1/role_service.proto",
        "proto/roster/v1/task_service.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("roster_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::grpc::codec::RosterCodec")
        .compile_fds(fds)?;
    Ok(())
}
