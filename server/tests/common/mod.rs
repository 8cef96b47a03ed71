//! Helpers for the end-to-end tests: they run the real `open-clanker` binary against local
//! stand-ins. Each test file takes what it needs with `use common::*`.
#![allow(dead_code)]

mod chat;
mod gateway;
mod http;
mod metrics;
mod standin;
mod wait;

// Each test file uses some of these, none all of them.
#[allow(unused_imports)]
pub use chat::*;
#[allow(unused_imports)]
pub use gateway::*;
#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use metrics::*;
#[allow(unused_imports)]
pub use standin::*;
#[allow(unused_imports)]
pub use wait::*;
