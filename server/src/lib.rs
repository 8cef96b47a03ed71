//! Open Clanker's gateway: configuration, the chat engine, the gRPC services and the CLI.
//!
//! The binary (`open-clanker`) is a thin `main` over [`cli`].

pub mod access_api;
pub mod channels;
pub mod cli;
pub mod config;
pub mod contract;
pub mod doctor;
pub mod engine;
pub mod gateway;
pub mod grpc;
pub mod metrics;
pub mod openai_api;
pub mod pricing;
pub mod security;
pub mod shares;
pub mod telemetry;
pub mod web;
