//! Persistence of sessions and messages for Open Clanker.
//!
//! [`Store`] wraps a sea-orm connection (SQLite by default; PostgreSQL with the `postgres` feature),
//! applies the schema migrations when it connects and speaks only in the domain types of
//! `open_clanker_core`. It knows nothing about gRPC or providers.
//!
//! Paging uses opaque keyset tokens: a token is only meaningful to the call (and sort order) that
//! produced it, and an empty token is the same as none.

#![warn(missing_docs)]

mod access;
mod connect;
mod entity;
mod error;
mod handle;
mod health;
mod lock;
mod messages;
mod migration;
mod paging;
mod records;
mod sessions;
mod spend;
mod usage;
mod writer;

pub use open_clanker_core::{AccessError, AccessStore, AllowedSender, NewPairing, PairingRequest};
pub use open_clanker_core::{MessageStatus, Role, Session, StoredMessage, Usage};

pub use error::StoreError;
pub use handle::Store;
pub use health::StoreStats;
pub use paging::Page;
pub use records::{CRASH, NewMessage, STREAMING};
pub use usage::{DailyUsage, utc_day};
