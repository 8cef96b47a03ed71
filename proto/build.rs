//! Compiles `openclanker/v1/*.proto` with protox (pure Rust, no `protoc` needed) and generates the
//! prost messages and tonic stubs. The encoded descriptor set is kept for server reflection.

use std::path::PathBuf;

use prost::Message;

const FILES: &[&str] = &[
    "openclanker/v1/types.proto",
    "openclanker/v1/chat.proto",
    "openclanker/v1/session.proto",
    "openclanker/v1/gateway.proto",
    "openclanker/v1/access.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(FILES, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("openclanker_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Small per-call buffers (see src/codec.rs).
        .codec_path("crate::codec::SmallBufferCodec")
        .compile_fds(fds)?;
    Ok(())
}
