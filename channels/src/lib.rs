//! Chat platforms as Open Clanker channels: Telegram (teloxide) and Discord (serenity).
//!
//! A channel is an internal service of the gateway. An incoming chat message becomes a turn in that
//! chat's session through [`open_clanker_core::ChatBackend`] (the same pipeline the gRPC `Chat` RPC
//! uses), and the answer is streamed back by editing one message. This crate knows nothing of gRPC,
//! the store or the providers: it is handed an `Arc<dyn ChatBackend>` and an
//! `Arc<dyn AccessStore>`.
//!
//! The platform-independent machinery, shared by every channel:
//!
//! | module | job |
//! |---|---|
//! | [`access`] | DM and group policies ([`access::AccessPolicy::decide`]) |
//! | [`pairing`] | pairing codes (alphabet, CSPRNG, lifetime, cap) and what strangers are told |
//! | [`commands`] | `/start`, `/help`, `/new`, `/reset`, `/status` |
//! | [`session`] | session keys: one per DM chat, one per sender in a group |
//! | [`split`] | Markdown-aware splitting at a platform's limit |
//! | [`markdown`] | Markdown to Telegram HTML (escaped, always balanced) and plain text |
//! | [`sink`] | the [`ReplySink`] a platform implements, and the [`SendError`] its calls return |
//! | [`backoff`] | exponential backoff with jitter; retries that honour `retry_after` |
//! | [`relay`] | the throttled stream-by-editing relay of an answer into a [`ReplySink`] |
//! | [`pipeline`] | one incoming message, start to finish: access, pairing, commands, the turn |
//! | [`status`] | what `GetStatus` reports per channel |
//! | [`runtime`] | what every platform runs on: start-up errors, retried calls, dispatch, shutdown |
//!
//! A platform module ([`telegram`], [`discord`]) implements [`runtime::Platform`], turns its updates
//! into [`pipeline::Inbound`] messages handed to [`runtime::Runtime::dispatch`], and implements
//! [`ReplySink`] for its API.

pub mod access;
pub mod backoff;
pub mod commands;
pub mod discord;
pub mod markdown;
pub mod pairing;
pub mod pipeline;
pub mod relay;
pub mod runtime;
pub mod session;
pub mod sink;
pub mod split;
pub mod status;
pub mod telegram;

pub use access::{AccessPolicy, DmPolicy, GroupPolicy};
pub use pipeline::{ChannelContext, Inbound, Pipeline};
pub use runtime::{Platform, StartError, Started};
pub use sink::{ReplySink, SendError};
pub use status::{ChannelStatus, StatusBoard, StatusHandle};

/// The channels this build knows, by the names used in session keys, the allowlist and the CLI.
pub const KNOWN_CHANNELS: [&str; 2] = ["telegram", "discord"];

/// True for a name in [`KNOWN_CHANNELS`].
pub fn is_known_channel(name: &str) -> bool {
    KNOWN_CHANNELS.contains(&name)
}
