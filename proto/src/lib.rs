//! The `openclanker.v1` gRPC contract: prost messages and tonic client/server stubs generated from
//! `proto/openclanker/v1` at build time.

pub mod codec;

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("openclanker.v1");

    /// Encoded `FileDescriptorSet` of the contract, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/openclanker_descriptor.bin"));
}

pub use v1::*;
