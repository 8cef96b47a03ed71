//! The store's error type and the constructors of its common errors, used by every other module.

use sea_orm::DbErr;

/// Why a store operation failed. Every message is safe to show: none contains a password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or returned data that does not parse (e.g. an unknown role).
    #[error("database error: {0}")]
    Database(String),
    /// The database URL is malformed or names an unsupported backend.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// A file-system operation failed (e.g. creating the data directory).
    #[error("I/O error: {0}")]
    Io(String),
    /// The session (or other record) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A page token was not produced by this store or has been tampered with.
    #[error("invalid page token: {0}")]
    InvalidPageToken(String),
    /// Another process has the SQLite database open with [`Store::connect_exclusive`].
    ///
    /// [`Store::connect_exclusive`]: crate::Store::connect_exclusive
    #[error("another gateway is using {dir} ({holder})")]
    InUse {
        /// The directory of the database file.
        dir: String,
        /// `pid N` of the process holding it (`pid unknown` when it cannot be read).
        holder: String,
    },
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        StoreError::Database(err.to_string())
    }
}

/// The writer answered a write with another kind of result (a bug, never data-dependent).
pub(crate) fn writer_mismatch() -> StoreError {
    StoreError::Database("the store's writer answered with the wrong kind of result".to_owned())
}

pub(crate) fn session_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("session {:?} not found", truncate_chars(id, 100)))
}

/// At most `max` characters of `s`, cut on a char boundary.
pub(crate) fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}
