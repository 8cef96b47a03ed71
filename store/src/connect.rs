//! Opening a store: parsing the database URL, connection options per backend, migrations, the
//! exclusive lock of a SQLite file and the sweep of answers a crashed process left streaming.

use std::path::Path;
use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DbBackend};
use sea_orm_migration::MigratorTrait;

use crate::error::{StoreError, truncate_chars};
use crate::handle::Store;
use crate::records::{CRASH, STREAMING};
use crate::{lock, migration, writer};

/// How long a SQLite connection waits for a lock held by another connection before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Pool size for a SQLite file (WAL lets readers run beside the one writer).
const SQLITE_FILE_MAX_CONNECTIONS: u32 = 4;
/// Pool size for PostgreSQL.
#[cfg(feature = "postgres")]
const POSTGRES_MAX_CONNECTIONS: u32 = 10;

/// The file name of the default SQLite database inside a data directory.
const SQLITE_FILE_NAME: &str = "open-clanker.db";

impl Store {
    /// Opens the database and applies migrations.
    ///
    /// `url` is a sea-orm/sqlx URL, e.g. `"sqlite:///abs/path/open-clanker.db?mode=rwc"` or
    /// `"sqlite::memory:"` (and `postgres://…` when built with the `postgres` feature). For a SQLite
    /// file the parent directory and the file are created when missing, and the connections use WAL
    /// journaling, `synchronous=NORMAL`, foreign keys and a 5 s busy timeout.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme).unwrap_or("");
        let options = match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => sqlite_options(url).await?,
            "postgres" | "postgresql" => postgres_options(url)?,
            "" => return Err(StoreError::InvalidUrl("missing URL scheme".to_owned())),
            _ => {
                return Err(StoreError::InvalidUrl(format!(
                    "unsupported scheme {:?} (expected \"sqlite:\" or \"postgres://\")",
                    truncate_chars(scheme, 20)
                )));
            }
        };

        let db = Database::connect(options)
            .await
            .map_err(|err| StoreError::Database(redact_password(&err.to_string(), url)))?;
        let backend = match db.get_database_backend() {
            DbBackend::Sqlite => "sqlite",
            DbBackend::Postgres => "postgres",
            other => {
                return Err(StoreError::InvalidUrl(format!(
                    "unsupported database backend {other:?}"
                )));
            }
        };
        migration::Migrator::up(&db, None)
            .await
            .map_err(|err| StoreError::Database(redact_password(&err.to_string(), url)))?;
        tracing::debug!(backend, "store connected and migrated");
        // A SQLite file's connections leave WAL checkpoints to the writer (see `sqlite_options`).
        let checkpoint = backend == "sqlite" && !is_sqlite_memory(url);
        let writer = writer::Writer::spawn(db.clone(), checkpoint);
        Ok(Store {
            db,
            backend,
            writer,
            _lock: None,
        })
    }

    /// Opens the store like [`Store::connect`] for the one process that serves it.
    ///
    /// For a SQLite file it first takes the lock file beside it (`<file>.lock`),
    /// held until the last clone of the store is dropped: a second process gets
    /// [`StoreError::InUse`] naming the holder's pid. Then answers left streaming by a process that
    /// died ([`STREAMING`]) get the stop reason [`CRASH`] (they are already marked interrupted).
    /// An in-memory database is private anyway; a PostgreSQL database may be shared by several
    /// gateways, so it is neither locked nor swept.
    pub async fn connect_exclusive(url: &str) -> Result<Store, StoreError> {
        let file = sqlite_file(url)?;
        let lock = file
            .as_deref()
            .map(lock::acquire)
            .transpose()?
            .map(std::sync::Arc::new);
        let mut store = Store::connect(url).await?;
        if lock.is_some() {
            store._lock = lock;
            let swept = store.mark_crashed_answers().await?;
            if swept > 0 {
                tracing::info!(
                    answers = swept,
                    "answers cut off when the gateway last stopped abruptly are marked interrupted (stop reason \"crash\")"
                );
            }
        }
        Ok(store)
    }

    /// The default SQLite URL for a data directory: `<dir>/open-clanker.db` (with `mode=rwc`).
    /// [`Store::connect`] creates the directory and the file when missing.
    pub fn sqlite_url_for_dir(dir: &Path) -> String {
        let path = dir.join(SQLITE_FILE_NAME);
        let mut encoded = String::new();
        // sqlx percent-decodes the path, and `?` starts the parameters: escape those.
        for c in path.to_string_lossy().chars() {
            match c {
                '%' => encoded.push_str("%25"),
                '?' => encoded.push_str("%3F"),
                '#' => encoded.push_str("%23"),
                c => encoded.push(c),
            }
        }
        format!("sqlite://{encoded}?mode=rwc")
    }
    /// Gives the answers left [`STREAMING`] the stop reason [`CRASH`]; how many. The values are
    /// literals, so that the partial index `idx_messages_streaming` serves the search.
    async fn mark_crashed_answers(&self) -> Result<u64, StoreError> {
        use sea_orm::ConnectionTrait as _;
        let done = self
            .db
            .execute_unprepared(&format!(
                "UPDATE messages SET stop_reason = '{CRASH}' WHERE stop_reason = '{STREAMING}'"
            ))
            .await?;
        Ok(done.rows_affected())
    }
}

/// True for a SQLite URL of a private in-memory database.
fn is_sqlite_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// The database file of a `sqlite:` URL; `None` for an in-memory database or another backend.
fn sqlite_file(url: &str) -> Result<Option<std::path::PathBuf>, StoreError> {
    use sea_orm::sqlx::sqlite::SqliteConnectOptions;
    let scheme = url.split_once(':').map(|(scheme, _)| scheme).unwrap_or("");
    if !scheme.eq_ignore_ascii_case("sqlite") || is_sqlite_memory(url) {
        return Ok(None);
    }
    let parsed: SqliteConnectOptions = url
        .parse()
        .map_err(|err| StoreError::InvalidUrl(format!("{err}")))?;
    Ok(Some(parsed.get_filename().to_path_buf()))
}

/// Connect options for a `sqlite:` URL; creates the parent directory of a database file.
async fn sqlite_options(url: &str) -> Result<ConnectOptions, StoreError> {
    use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

    let parsed: SqliteConnectOptions = url
        .parse()
        .map_err(|err| StoreError::InvalidUrl(format!("{err}")))?;
    let in_memory = is_sqlite_memory(url);

    let mut options = ConnectOptions::new(url);
    options.sqlx_logging(false);
    if in_memory {
        // Every connection to a private in-memory database is a new database, and closing the last
        // one loses it: keep exactly one, forever.
        options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
        options
            .map_sqlx_sqlite_opts(|opts| opts.foreign_keys(true).busy_timeout(SQLITE_BUSY_TIMEOUT));
    } else {
        let path = parsed.get_filename();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await.map_err(|err| {
                StoreError::Io(format!(
                    "cannot create directory {}: {err}",
                    parent.display()
                ))
            })?;
        }
        options
            .max_connections(SQLITE_FILE_MAX_CONNECTIONS)
            .min_connections(1);
        options.map_sqlx_sqlite_pool_opts(|pool| pool.after_release(discard_if_in_transaction));
        options.map_sqlx_sqlite_opts(|opts| {
            opts.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                // No checkpoint inside a commit (an fsync in a turn's path): the writer runs
                // them beside itself (`writer::wal_checkpoint`); closing the last connection
                // checkpoints what is left.
                .pragma("wal_autocheckpoint", "0")
        });
    }
    Ok(options)
}

/// Keeps a SQLite connection out of the pool when it comes back still in a transaction.
///
/// SQLite rolls a whole transaction back by itself when a statement or the `COMMIT` fails with
/// `SQLITE_FULL`, `SQLITE_IOERR` or `SQLITE_NOMEM` (a full disk). The `ROLLBACK` that follows
/// then fails ("no transaction is active"), so sqlx still counts the connection as inside a
/// transaction: its next `BEGIN` becomes a `SAVEPOINT`, whose commit commits nothing and whose
/// rollback leaves SQLite's transaction open, holding the write lock for good ("database is
/// locked" for every other connection until a restart). A connection in that state is closed
/// instead (closing it ends whatever SQLite still has open) and the pool opens a fresh one. Not
/// for an in-memory database: closing its one connection would lose the database.
fn discard_if_in_transaction(
    conn: &mut sea_orm::sqlx::SqliteConnection,
    _: sea_orm::sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn Future<Output = Result<bool, sea_orm::sqlx::Error>> + Send + '_>> {
    use sea_orm::sqlx::Connection as _;
    Box::pin(async move {
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        // A transaction dropped without commit queues its rollback: let it run first.
        conn.ping().await?;
        if conn.is_in_transaction() {
            tracing::debug!(
                "a database connection came back inside a failed transaction; closing it"
            );
            return Ok(false);
        }
        Ok(true)
    })
}

/// Connect options for a `postgres://` URL.
#[cfg(feature = "postgres")]
fn postgres_options(url: &str) -> Result<ConnectOptions, StoreError> {
    let mut options = ConnectOptions::new(url);
    options
        .sqlx_logging(false)
        .max_connections(POSTGRES_MAX_CONNECTIONS);
    Ok(options)
}

/// Without the `postgres` feature a PostgreSQL URL is refused.
#[cfg(not(feature = "postgres"))]
fn postgres_options(_url: &str) -> Result<ConnectOptions, StoreError> {
    Err(StoreError::InvalidUrl(
        "PostgreSQL support is not compiled in (build open-clanker-store with the `postgres` feature)"
            .to_owned(),
    ))
}

/// `message` without the secrets of `url`: its password (plain and percent-decoded) and
/// credential-like parameters wherever they occur, and any URL in it without its credentials.
fn redact_password(message: &str, url: &str) -> String {
    open_clanker_core::redact::scrub(message, url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        let url = "postgres://app:s%40cret@db.example:5432/clanker";
        let msg = "failed to connect to postgres://app:s%40cret@db.example with s@cret";
        let redacted = redact_password(msg, url);
        assert!(!redacted.contains("s%40cret"), "{redacted}");
        assert!(!redacted.contains("s@cret"), "{redacted}");
        assert_eq!(redact_password("plain", "sqlite::memory:"), "plain");
    }

    #[test]
    fn sqlite_urls_escape_special_characters() {
        let url = Store::sqlite_url_for_dir(Path::new("/data/a?b%c"));
        assert_eq!(url, "sqlite:///data/a%3Fb%25c/open-clanker.db?mode=rwc");
    }
}
