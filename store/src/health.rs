//! What the store reports about itself for health and status: whether the database answers and
//! can write, whether its file is sound, and how many sessions and messages it holds.

use sea_orm::{DbBackend, EntityTrait, PaginatorTrait};

use crate::entity::{messages, sessions};
use crate::error::StoreError;
use crate::handle::Store;

/// Counts for health and status reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// `"sqlite"` or `"postgres"`.
    pub backend: &'static str,
    /// Number of sessions.
    pub sessions: u64,
    /// Number of messages over all sessions.
    pub messages: u64,
}

impl Store {
    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await.map_err(StoreError::from)
    }

    /// Why the store cannot write, when the last write the database was asked for failed (a full
    /// disk, a read-only file, a lock held by another process); `None` when it can. While it
    /// cannot, the store retries a small write every 2 seconds, so this clears by itself once the
    /// cause is gone.
    pub fn write_error(&self) -> Option<String> {
        self.writer.health().error()
    }

    /// Checks the database file for corruption (`PRAGMA integrity_check` on SQLite; PostgreSQL
    /// guards its own pages, so there it only pings). `Ok(())` when sound.
    pub async fn check_integrity(&self) -> Result<(), StoreError> {
        use sea_orm::ConnectionTrait as _;
        if self.db.get_database_backend() != DbBackend::Sqlite {
            return self.ping().await;
        }
        let rows = self
            .db
            .query_all_raw(sea_orm::Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA integrity_check",
            ))
            .await?;
        let findings: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get_by_index::<String>(0).ok())
            .collect();
        if findings.len() == 1 && findings[0] == "ok" {
            Ok(())
        } else {
            Err(StoreError::Database(format!(
                "integrity check failed: {}",
                findings.join("; ")
            )))
        }
    }
    /// The backend and the numbers of sessions and messages.
    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        let sessions = sessions::Entity::find().count(&self.db).await?;
        let messages = messages::Entity::find().count(&self.db).await?;
        Ok(StoreStats {
            backend: self.backend,
            sessions,
            messages,
        })
    }
}
