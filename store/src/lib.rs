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
mod entity;
mod lock;
mod migration;
mod usage;
mod writer;

use std::path::Path;
use std::time::Duration;

use open_clanker_core::now_ms;

use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ColumnTrait, Condition, ConnectOptions, Database, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

pub use open_clanker_core::{AccessError, AccessStore, AllowedSender, NewPairing, PairingRequest};
pub use open_clanker_core::{MessageStatus, Role, Session, StoredMessage, Usage};

use entity::{messages, sessions};
pub use usage::{DailyUsage, utc_day};

/// How long a SQLite connection waits for a lock held by another connection before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Pool size for a SQLite file (WAL lets readers run beside the one writer).
const SQLITE_FILE_MAX_CONNECTIONS: u32 = 4;
/// Pool size for PostgreSQL.
#[cfg(feature = "postgres")]
const POSTGRES_MAX_CONNECTIONS: u32 = 10;

/// Default and maximum page sizes of [`Store::list_sessions`].
const SESSIONS_PAGE_DEFAULT: u32 = 50;
const SESSIONS_PAGE_MAX: u32 = 500;
/// Default and maximum page sizes of [`Store::history`].
const HISTORY_PAGE_DEFAULT: u32 = 100;
const HISTORY_PAGE_MAX: u32 = 1000;
/// Longest automatic session title, in characters, including the trailing "…" when cut.
const TITLE_MAX_CHARS: usize = 60;

/// The file name of the default SQLite database inside a data directory.
const SQLITE_FILE_NAME: &str = "open-clanker.db";

/// The stop reason of an answer still streaming, stored (marked interrupted) by
/// [`Store::start_answer`] until [`Store::finish_answer`] stores its end.
pub const STREAMING: &str = "streaming";
/// The stop reason [`Store::connect_exclusive`] gives an answer the process streaming it left
/// behind (it was killed, or the machine went down).
pub const CRASH: &str = "crash";

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

/// A message to append to a session with [`Store::append_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The session the message belongs to; it must exist.
    pub session_id: String,
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// The provider that produced it (assistant messages).
    pub provider: Option<String>,
    /// The model that produced it (assistant messages).
    pub model: Option<String>,
    /// Token counts reported by the provider (zero when unknown).
    pub usage: Usage,
    /// Whether the message is whole.
    pub status: MessageStatus,
    /// The provider's stop reason, if any.
    pub stop_reason: Option<String>,
    /// What the message cost, in millionths of a US dollar; added to the session's total and,
    /// for messages with a provider and model, to the day's usage ledger.
    pub cost_micros: i64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass this to the same call to get the next page; `None` when this is the last page.
    pub next_page_token: Option<String>,
}

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

/// The session and message store. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    backend: &'static str,
    /// Sessions and messages are written by one task, in batches ([`writer`]).
    writer: writer::Writer,
    /// Held while any clone of a store opened with [`Store::connect_exclusive`] lives.
    _lock: Option<std::sync::Arc<lock::FileLock>>,
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

    /// Creates a session with a fresh UUID v7 id.
    pub async fn create_session(
        &self,
        key: Option<&str>,
        title: &str,
    ) -> Result<Session, StoreError> {
        let op = writer::Op::CreateSession {
            id: uuid::Uuid::now_v7().to_string(),
            key: key.map(str::to_owned),
            title: title.to_owned(),
        };
        match self.writer.write(op).await? {
            writer::Written::Session(session) => Ok(session),
            _ => Err(writer_mismatch()),
        }
    }

    /// Creates a session (fresh UUID v7 id, optional `key`) together with its first message, in
    /// one transaction: the turn that opens a conversation writes once. `message.session_id` is
    /// ignored (the new session's id is used). The title comes from a user message as in
    /// [`Store::append_message`].
    pub async fn create_session_with_message(
        &self,
        key: Option<&str>,
        mut message: NewMessage,
    ) -> Result<(Session, StoredMessage), StoreError> {
        message.session_id = uuid::Uuid::now_v7().to_string();
        let op = writer::Op::CreateWithMessage {
            key: key.map(str::to_owned),
            message,
        };
        match self.writer.write(op).await? {
            writer::Written::Both(session, message) => Ok((session, message)),
            _ => Err(writer_mismatch()),
        }
    }

    /// Stores the beginning of an answer that is still streaming, so that a crash does not lose
    /// it: counted in its session, with the status interrupted and the stop reason [`STREAMING`]
    /// (whatever `message` says), without cost or usage yet. [`Store::update_answer`] stores more
    /// of it, [`Store::finish_answer`] its end, in the same row.
    pub async fn start_answer(&self, mut message: NewMessage) -> Result<StoredMessage, StoreError> {
        message.status = MessageStatus::Interrupted;
        message.stop_reason = Some(STREAMING.to_owned());
        message.cost_micros = 0;
        match self.writer.write(writer::Op::StartAnswer(message)).await? {
            writer::Written::Message(message) => Ok(message),
            _ => Err(writer_mismatch()),
        }
    }

    /// Replaces the text of an answer begun with [`Store::start_answer`] while it streams (never
    /// once it is finished).
    pub async fn update_answer(&self, id: i64, content: String) -> Result<(), StoreError> {
        match self
            .writer
            .write(writer::Op::UpdateAnswer { id, content })
            .await?
        {
            writer::Written::Done => Ok(()),
            _ => Err(writer_mismatch()),
        }
    }

    /// Stores the end of an answer begun with [`Store::start_answer`] (`id`, created at
    /// `created_at_ms`) in its row: text, status, stop reason, usage and cost; the cost goes to the
    /// session and the day's ledger as with [`Store::append_message`]. If the row is gone (the
    /// session was reset meanwhile) the answer is appended instead.
    pub async fn finish_answer(
        &self,
        id: i64,
        created_at_ms: i64,
        message: NewMessage,
    ) -> Result<StoredMessage, StoreError> {
        let op = writer::Op::FinishAnswer {
            id,
            created_at_ms,
            message,
        };
        match self.writer.write(op).await? {
            writer::Written::Message(message) => Ok(message),
            _ => Err(writer_mismatch()),
        }
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

    /// The session with this id, if any.
    pub async fn get_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        sessions::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .map(session_from_model)
            .transpose()
    }

    /// The newest session with this key.
    pub async fn session_by_key(&self, key: &str) -> Result<Option<Session>, StoreError> {
        sessions::Entity::find()
            .filter(sessions::Column::Key.eq(key))
            .order_by_desc(sessions::Column::CreatedAt)
            .order_by_desc(sessions::Column::Id)
            .one(&self.db)
            .await?
            .map(session_from_model)
            .transpose()
    }

    /// Lists sessions, newest created first.
    ///
    /// `key_prefix` keeps only sessions whose key starts with it (an exact, case-sensitive match;
    /// `%` and `_` are ordinary characters; `None` or `""` means no filter). `page_token` is the
    /// `next_page_token` of the previous page. `page_size` is clamped to 1..=500; 0 means 50.
    pub async fn list_sessions(
        &self,
        page_size: u32,
        page_token: Option<&str>,
        key_prefix: Option<&str>,
    ) -> Result<Page<Session>, StoreError> {
        let size = clamp_page_size(page_size, SESSIONS_PAGE_DEFAULT, SESSIONS_PAGE_MAX);
        let after = page_token
            .filter(|t| !t.is_empty())
            .map(decode_session_token)
            .transpose()?;
        let query = sessions_query(key_prefix, after);
        let rows = query
            .order_by_desc(sessions::Column::CreatedAt)
            .order_by_desc(sessions::Column::Id)
            .limit(u64::from(size) + 1)
            .all(&self.db)
            .await?;
        let (rows, more) = split_page(rows, size);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => Some(encode_session_token(last.created_at, &last.id)),
            _ => None,
        };
        let items = rows
            .into_iter()
            .map(session_from_model)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// A session's messages, oldest first.
    ///
    /// `page_size` is clamped to 1..=1000; 0 means 100. `page_token` is the `next_page_token` of the
    /// previous page. [`StoreError::NotFound`] when the session does not exist.
    pub async fn history(
        &self,
        session_id: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<StoredMessage>, StoreError> {
        let size = clamp_page_size(page_size, HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX);
        let after = page_token
            .filter(|t| !t.is_empty())
            .map(decode_message_token)
            .transpose()?;
        self.require_session(session_id).await?;
        let mut query = messages::Entity::find().filter(messages::Column::SessionId.eq(session_id));
        if let Some(after) = after {
            query = query.filter(messages::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(messages::Column::Id)
            .limit(u64::from(size) + 1)
            .all(&self.db)
            .await?;
        let (rows, more) = split_page(rows, size);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => Some(encode_message_token(last.id)),
            _ => None,
        };
        let items = rows
            .into_iter()
            .map(message_from_model)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// The newest `limit` messages of a session, returned oldest first (to build provider context).
    /// Empty when the session has no messages or does not exist, or when `limit` is 0.
    pub async fn recent_messages(
        &self,
        session_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut rows = messages::Entity::find()
            .filter(messages::Column::SessionId.eq(session_id))
            .order_by_desc(messages::Column::Id)
            .limit(u64::from(limit))
            .all(&self.db)
            .await?;
        rows.reverse();
        rows.into_iter().map(message_from_model).collect()
    }

    /// Inserts a message and bumps the session's `updated_at` and message count, in one transaction.
    ///
    /// [`StoreError::NotFound`] if the session is gone. If the session's title is empty and the
    /// message is from the user, the title becomes the message's first non-blank line, at most 60
    /// characters including a trailing "…" when cut.
    pub async fn append_message(&self, message: NewMessage) -> Result<StoredMessage, StoreError> {
        match self.writer.write(writer::Op::Append(message)).await? {
            writer::Written::Message(message) => Ok(message),
            _ => Err(writer_mismatch()),
        }
    }

    /// Deletes a session's messages and returns how many were removed. The session itself (id, key,
    /// title) stays, with a message count of 0. [`StoreError::NotFound`] when the session is unknown.
    pub async fn reset_session(&self, id: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin().await?;
        let touched = sessions::Entity::update_many()
            .col_expr(sessions::Column::UpdatedAt, Expr::value(now_ms()))
            .col_expr(sessions::Column::MessageCount, Expr::value(0i64))
            .filter(sessions::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        if touched.rows_affected == 0 {
            txn.rollback().await?;
            return Err(session_not_found(id));
        }
        let removed = messages::Entity::delete_many()
            .filter(messages::Column::SessionId.eq(id))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        Ok(removed)
    }

    /// Deletes a session and its messages; `false` when it did not exist.
    pub async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        // The foreign key cascades too; deleting explicitly does not depend on it being enforced.
        messages::Entity::delete_many()
            .filter(messages::Column::SessionId.eq(id))
            .exec(&txn)
            .await?;
        let deleted = sessions::Entity::delete_many()
            .filter(sessions::Column::Id.eq(id))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        Ok(deleted > 0)
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

    /// [`StoreError::NotFound`] unless the session exists.
    async fn require_session(&self, id: &str) -> Result<(), StoreError> {
        let found = sessions::Entity::find()
            .filter(sessions::Column::Id.eq(id))
            .count(&self.db)
            .await?;
        if found == 0 {
            Err(session_not_found(id))
        } else {
            Ok(())
        }
    }
}

/// The filtered, not yet ordered, query of [`Store::list_sessions`]: sessions whose key starts with
/// `key_prefix` (when not empty) and that sort after `after` (newest first).
fn sessions_query(
    key_prefix: Option<&str>,
    after: Option<(i64, String)>,
) -> Select<sessions::Entity> {
    use sea_orm::sea_query::ExprTrait as _;

    let mut query = sessions::Entity::find();
    if let Some(prefix) = key_prefix.filter(|p| !p.is_empty()) {
        // SUBSTR compares characters exactly on both SQLite and PostgreSQL, unlike LIKE (no
        // wildcards to escape, and SQLite's LIKE ignores ASCII case) or a range compare (which
        // depends on the collation on PostgreSQL).
        let len = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
        let head = Func::cust("SUBSTR")
            .arg(Expr::col((sessions::Entity, sessions::Column::Key)))
            .arg(1i32)
            .arg(len);
        query = query
            .filter(sessions::Column::Key.is_not_null())
            .filter(Expr::from(head).eq(prefix));
    }
    if let Some((created_at, id)) = after {
        query = query.filter(
            Condition::any()
                .add(sessions::Column::CreatedAt.lt(created_at))
                .add(
                    Condition::all()
                        .add(sessions::Column::CreatedAt.eq(created_at))
                        .add(sessions::Column::Id.lt(id)),
                ),
        );
    }
    query
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

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(hex_value(pair[0])? << 4 | hex_value(pair[1])?))
        .collect()
}

/// Token prefixes: a version and the listing it belongs to.
const SESSION_TOKEN_PREFIX: &str = "s1:";
const MESSAGE_TOKEN_PREFIX: &str = "m1:";
/// Tokens longer than this are refused before decoding.
const MAX_TOKEN_LEN: usize = 1024;

fn encode_session_token(created_at: i64, id: &str) -> String {
    hex_encode(format!("{SESSION_TOKEN_PREFIX}{created_at}:{id}").as_bytes())
}

fn decode_session_token(token: &str) -> Result<(i64, String), StoreError> {
    let text = token_text(token, SESSION_TOKEN_PREFIX)?;
    let (created_at, id) = text.split_once(':').ok_or_else(bad_token)?;
    let created_at = created_at.parse::<i64>().map_err(|_| bad_token())?;
    if id.is_empty() {
        return Err(bad_token());
    }
    Ok((created_at, id.to_owned()))
}

fn encode_message_token(id: i64) -> String {
    hex_encode(format!("{MESSAGE_TOKEN_PREFIX}{id}").as_bytes())
}

fn decode_message_token(token: &str) -> Result<i64, StoreError> {
    token_text(token, MESSAGE_TOKEN_PREFIX)?
        .parse::<i64>()
        .map_err(|_| bad_token())
}

/// The text inside a token, after checking its prefix.
fn token_text(token: &str, prefix: &str) -> Result<String, StoreError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(bad_token());
    }
    let bytes = hex_decode(token).ok_or_else(bad_token)?;
    let text = String::from_utf8(bytes).map_err(|_| bad_token())?;
    text.strip_prefix(prefix)
        .map(str::to_owned)
        .ok_or_else(bad_token)
}

fn bad_token() -> StoreError {
    StoreError::InvalidPageToken(
        "not a token returned by this listing; start again without a page token".to_owned(),
    )
}

/// The writer answered a write with another kind of result (a bug, never data-dependent).
fn writer_mismatch() -> StoreError {
    StoreError::Database("the store's writer answered with the wrong kind of result".to_owned())
}

fn session_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("session {:?} not found", truncate_chars(id, 100)))
}

/// `requested` clamped to `1..=max`, with 0 meaning `default`.
fn clamp_page_size(requested: u32, default: u32, max: u32) -> u32 {
    if requested == 0 {
        default
    } else {
        requested.min(max)
    }
}

/// Splits the `size + 1` rows fetched for a page into the page and whether more follow.
fn split_page<T>(mut rows: Vec<T>, size: u32) -> (Vec<T>, bool) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let more = rows.len() > size;
    rows.truncate(size);
    (rows, more)
}

/// The automatic title for a session: the first non-blank line of `content`, trimmed, at most
/// [`TITLE_MAX_CHARS`] characters including the "…" that marks a cut.
fn title_from_content(content: &str) -> String {
    let line = content
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("");
    if line.chars().count() <= TITLE_MAX_CHARS {
        return line.to_owned();
    }
    let mut title: String = line.chars().take(TITLE_MAX_CHARS - 1).collect();
    title.truncate(title.trim_end().len());
    title.push('…');
    title
}

/// At most `max` characters of `s`, cut on a char boundary.
fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

fn corrupt(table: &str, id: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("corrupt row in table {table} (id {id}): {what}"))
}

fn session_from_model(model: sessions::Model) -> Result<Session, StoreError> {
    let message_count = u64::try_from(model.message_count).map_err(|_| {
        corrupt(
            "sessions",
            &model.id,
            format!("negative message_count {}", model.message_count),
        )
    })?;
    Ok(Session {
        id: model.id,
        key: model.key,
        title: model.title,
        created_at_ms: model.created_at,
        updated_at_ms: model.updated_at,
        message_count,
        cost_micros: model.cost_micros,
    })
}

fn message_from_model(model: messages::Model) -> Result<StoredMessage, StoreError> {
    let id = model.id.to_string();
    let role = model
        .role
        .parse::<Role>()
        .map_err(|err| corrupt("messages", &id, err))?;
    let status = model
        .status
        .parse::<MessageStatus>()
        .map_err(|err| corrupt("messages", &id, err))?;
    let input_tokens = u64::try_from(model.input_tokens).map_err(|_| {
        corrupt(
            "messages",
            &id,
            format!("negative input_tokens {}", model.input_tokens),
        )
    })?;
    let output_tokens = u64::try_from(model.output_tokens).map_err(|_| {
        corrupt(
            "messages",
            &id,
            format!("negative output_tokens {}", model.output_tokens),
        )
    })?;
    Ok(StoredMessage {
        id: model.id,
        session_id: model.session_id,
        role,
        content: model.content,
        provider: model.provider,
        model: model.model_name,
        usage: Usage {
            input_tokens,
            output_tokens,
        },
        status,
        stop_reason: model.stop_reason,
        created_at_ms: model.created_at,
        cost_micros: model.cost_micros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_cut_on_char_boundaries() {
        assert_eq!(
            title_from_content("  \n Hello there \nsecond"),
            "Hello there"
        );
        assert_eq!(title_from_content(""), "");
        let long = "é".repeat(100);
        let title = title_from_content(&long);
        assert_eq!(title.chars().count(), TITLE_MAX_CHARS);
        assert!(title.ends_with('…'));
        let exact = "x".repeat(TITLE_MAX_CHARS);
        assert_eq!(title_from_content(&exact), exact);
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = encode_session_token(1234, "abc:def");
        assert_eq!(
            decode_session_token(&token).unwrap(),
            (1234, "abc:def".to_owned())
        );
        assert_eq!(decode_message_token(&encode_message_token(42)).unwrap(), 42);
        for bad in [
            "zz",
            "abc",
            &encode_message_token(1),
            &hex_encode(b"s1:x:y"),
        ] {
            assert!(matches!(
                decode_session_token(bad),
                Err(StoreError::InvalidPageToken(_))
            ));
        }
        assert!(matches!(
            decode_message_token(&token),
            Err(StoreError::InvalidPageToken(_))
        ));
    }

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
    fn the_key_prefix_filter_is_portable_sql() {
        use sea_orm::QueryTrait;

        let query = sessions_query(Some("t%_"), Some((5, "x".to_owned())));
        let postgres = query.build(DbBackend::Postgres).to_string();
        assert!(
            postgres.contains(r#"SUBSTR("sessions"."key", 1, 3) = 't%_'"#),
            "{postgres}"
        );
        assert!(!postgres.contains("LIKE"), "{postgres}");
        let sqlite = query.build(DbBackend::Sqlite).to_string();
        assert!(
            sqlite.contains(r#"SUBSTR("sessions"."key", 1, 3) = 't%_'"#),
            "{sqlite}"
        );
    }

    #[test]
    fn page_sizes_are_clamped() {
        assert_eq!(clamp_page_size(0, 50, 500), 50);
        assert_eq!(clamp_page_size(7, 50, 500), 7);
        assert_eq!(clamp_page_size(9999, 50, 500), 500);
    }

    #[test]
    fn sqlite_urls_escape_special_characters() {
        let url = Store::sqlite_url_for_dir(Path::new("/data/a?b%c"));
        assert_eq!(url, "sqlite:///data/a%3Fb%25c/open-clanker.db?mode=rwc");
    }
}
