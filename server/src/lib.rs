//! Open Clanker's gateway: configuration, the front ends (gRPC, gRPC-Web, the OpenAI-compatible
//! endpoint, the page, the chat channels) wired to the turn engine, and the CLI.
//!
//! The binary (`open-clanker`) is a thin `main` over [`cli`].

pub mod access_api;
pub mod channels;
pub mod cli;
pub mod config;
pub mod contract;
pub mod doctor;
pub mod gateway;
pub mod grpc;
pub mod metrics;
pub mod openai_api;
pub mod security;
pub mod telemetry;
pub mod web;
