//! The [`Store`] handle itself: the connection pool, the writer and the file lock it holds.

use sea_orm::DatabaseConnection;

use crate::{lock, writer};

/// The session and message store. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: DatabaseConnection,
    pub(crate) backend: &'static str,
    /// Sessions and messages are written by one task, in batches ([`writer`]).
    pub(crate) writer: writer::Writer,
    /// Held while any clone of a store opened with [`Store::connect_exclusive`] lives.
    pub(crate) _lock: Option<std::sync::Arc<lock::FileLock>>,
}

impl std::fmt::Debug for Store {
    // Only the backend: nothing that could ever reveal connection details.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub(crate) fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}
