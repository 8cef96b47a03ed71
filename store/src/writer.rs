//! The single writer: every session and message write goes through one task, which commits the
//! writes waiting for it in one transaction (group commit).
//!
//! Why: a turn writes twice (the user's message, then the answer). With many turns at once,
//! pooled connections writing on their own contend for SQLite's one write lock, wait in its busy
//! handler (which sleeps) and commit one by one. One writer never contends with itself, and a
//! burst of N writes costs one `BEGIN`/`COMMIT` instead of N. A lone write is not delayed: the
//! writer takes what is waiting and does not wait for more.
//!
//! A write is acknowledged (its reply sent) only after its transaction committed. If a batch
//! fails as a whole (a constraint, a full disk), it is rolled back and every write in it is
//! retried alone, so one bad write cannot fail the others.
//!
//! The writer also knows whether the store can write ([`Health`]): a write the database refused
//! (a full disk, a read-only file, a lock held elsewhere) marks it unable, with a warning the
//! first time; the next write that commits marks it able again. While it is unable and no write
//! comes, it tries a small write of its own every [`PROBE_EVERY`], so it notices the space coming
//! back without traffic (a readiness probe on `/health` keeps traffic away meanwhile).

use open_clanker_core::{Role, Session, StoredMessage, now_ms};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Statement,
    TransactionTrait,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::entity::{messages, sessions, store_probe};
use crate::error::{StoreError, session_not_found};
use crate::records::{NewMessage, STREAMING, session_from_model, title_from_content};
use crate::usage::{self, utc_day};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;
/// WAL size (in 4 KiB pages) past which the writer truncates it: 16 MiB.
const WAL_RESTART_FRAMES: i64 = 4096;
/// Writes between two WAL checkpoints (about 1,000 pages, SQLite's own default, at 4–6 pages
/// per write).
const CHECKPOINT_EVERY: usize = 200;
/// Writes waiting for the writer before callers wait to hand theirs over.
const QUEUE: usize = 4096;
/// How often the writer tries a write of its own while the store cannot write and nothing else
/// is written.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(2);
/// What the probe writes: about as much as a few turns, so that a probe that fits is a good sign
/// that turns fit too.
const PROBE_BYTES: usize = 64 * 1024;

/// One write.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// A new, empty session.
    CreateSession {
        id: String,
        key: Option<String>,
        title: String,
    },
    /// A message in an existing session.
    Append(NewMessage),
    /// A new session with its first message (`message.session_id` is `id`).
    CreateWithMessage {
        key: Option<String>,
        message: NewMessage,
    },
    /// The beginning of an answer still streaming: counted in its session, not yet in the usage
    /// ledger (`status` and `stop_reason` as given: interrupted, [`STREAMING`]).
    StartAnswer(NewMessage),
    /// More of an answer still streaming (its row stays marked [`STREAMING`]).
    UpdateAnswer { id: i64, content: String },
    /// The end of an answer begun with [`Op::StartAnswer`]: its row gets the whole message, its
    /// cost goes to the session and the ledger. If the row is gone (the session was reset), the
    /// message is appended instead.
    FinishAnswer {
        id: i64,
        created_at_ms: i64,
        message: NewMessage,
    },
}

/// What a write produced.
#[derive(Debug)]
pub(crate) enum Written {
    Session(Session),
    Message(StoredMessage),
    Both(Session, StoredMessage),
    /// Nothing to report (an answer's checkpoint).
    Done,
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// The handle to the writer task; the task ends when the last handle is dropped, after the
/// writes already handed over are done.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
    health: Arc<Health>,
}

/// Whether the store can write: why not, since the last write the database refused, until one
/// commits again.
#[derive(Default)]
pub(crate) struct Health {
    error: Mutex<Option<String>>,
}

impl Health {
    /// Why the store cannot write; `None` when it can (as far as the last write tells).
    pub(crate) fn error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn failing(&self) -> bool {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// A write failed in the database: warns when that starts, then stays quiet.
    fn failed(&self, error: &str) {
        let mut current = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        if current.is_none() {
            tracing::warn!(
                error,
                "the store cannot write: turns fail until it can (retried every {}s; /health answers 503 meanwhile)",
                PROBE_EVERY.as_secs()
            );
        } else {
            tracing::debug!(error, "the store still cannot write");
        }
        *current = Some(error.to_owned());
    }

    /// A write committed.
    fn succeeded(&self) {
        let mut current = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(was) = current.take() {
            tracing::info!(was = %was, "the store can write again");
        }
    }

    /// Takes the outcome of one write into account.
    fn note(&self, result: &Result<Written, StoreError>) {
        match result {
            Ok(_) => self.succeeded(),
            Err(StoreError::Database(e)) => self.failed(e),
            // The write's own fault (e.g. its session is gone): says nothing about the store.
            Err(_) => {}
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Database("the store's writer has stopped".to_owned())
}

impl Writer {
    /// Starts the writer task on the current Tokio runtime. With `checkpoint`, the writer also
    /// starts a WAL checkpoint every [`CHECKPOINT_EVERY`] writes, on another connection, for a
    /// SQLite file whose connections do not checkpoint on commit (`wal_autocheckpoint=0`).
    pub(crate) fn spawn(db: DatabaseConnection, checkpoint: bool) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let health = Arc::new(Health::default());
        tokio::spawn(run(db, rx, checkpoint, health.clone()));
        Writer { tx, health }
    }

    /// Why the store cannot write, if it cannot.
    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    /// Hands `op` to the writer and waits until it is committed (or failed).
    pub(crate) async fn write(&self, op: Op) -> Result<Written, StoreError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Job { op, reply })
            .await
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

async fn run(
    db: DatabaseConnection,
    mut rx: mpsc::Receiver<Job>,
    checkpoint: bool,
    health: Arc<Health>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut since_checkpoint = 0;
    let wal = Arc::new(WalState::default());
    loop {
        let received = if health.failing() {
            match tokio::time::timeout(PROBE_EVERY, rx.recv_many(&mut batch, MAX_BATCH)).await {
                Ok(n) => n,
                Err(_) => {
                    match probe(&db).await {
                        Ok(()) => health.succeeded(),
                        Err(e) => health.failed(&StoreError::from(e).to_string()),
                    }
                    continue;
                }
            }
        } else {
            rx.recv_many(&mut batch, MAX_BATCH).await
        };
        if received == 0 {
            break;
        }
        since_checkpoint += batch.len();
        commit(&db, &mut batch, &health).await;
        if !checkpoint {
            continue;
        }
        if wal.restart.swap(false, Ordering::AcqRel) {
            // Between two batches no write of ours is under way: copy everything and start the
            // WAL over (this waits for readers, up to the busy timeout).
            if let Err(e) = db
                .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await
            {
                tracing::warn!(error = %e, "WAL truncation failed; the next checkpoint retries");
            }
            since_checkpoint = 0;
        } else if since_checkpoint >= CHECKPOINT_EVERY && !wal.running.swap(true, Ordering::AcqRel)
        {
            since_checkpoint = 0;
            tokio::spawn(wal_checkpoint(db.clone(), wal.clone()));
        }
    }
}

#[derive(Default)]
struct WalState {
    /// A `PASSIVE` checkpoint is running.
    running: AtomicBool,
    /// The WAL has grown past [`WAL_RESTART_FRAMES`]: the writer truncates it between batches.
    restart: AtomicBool,
}

/// Copies the WAL's pages into the database file (and syncs it) beside the writer, instead of
/// inside whichever commit crossed SQLite's threshold: a commit never waits for an fsync.
/// `PASSIVE` neither blocks the writer nor waits for readers. Under steady writes it never
/// catches up completely, so the WAL is never started over and keeps growing: past
/// [`WAL_RESTART_FRAMES`] it asks the writer for a `TRUNCATE` checkpoint between two batches.
async fn wal_checkpoint(db: DatabaseConnection, wal: Arc<WalState>) {
    let result = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "PRAGMA wal_checkpoint(PASSIVE)",
        ))
        .await;
    match result {
        // (busy, frames in the WAL, frames copied)
        Ok(Some(row)) => {
            let frames = row.try_get_by_index::<i64>(1).unwrap_or(0);
            if frames > WAL_RESTART_FRAMES {
                wal.restart.store(true, Ordering::Release);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; the next one retries"),
    }
    wal.running.store(false, Ordering::Release);
}

/// A write of the writer's own, to learn whether the store can write again: [`PROBE_BYTES`]
/// into the one row of `store_probe`.
async fn probe(db: &DatabaseConnection) -> Result<(), DbErr> {
    use sea_orm::sea_query::OnConflict;
    use store_probe::Column as C;
    let row = store_probe::ActiveModel {
        id: Set(1),
        written_at: Set(now_ms()),
        payload: Set(vec![0u8; PROBE_BYTES]),
    };
    store_probe::Entity::insert(row)
        .on_conflict(
            OnConflict::column(C::Id)
                .update_columns([C::WrittenAt, C::Payload])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Commits `batch` (emptying it) and answers every job in it.
async fn commit(db: &DatabaseConnection, batch: &mut Vec<Job>, health: &Health) {
    if batch.len() > 1 {
        match apply_batch(db, batch).await {
            Ok(results) => {
                health.succeeded();
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
                return;
            }
            Err(e) => tracing::debug!(
                error = %e,
                writes = batch.len(),
                "a batch of writes failed; retrying each write alone"
            ),
        }
    }
    for job in batch.drain(..) {
        let result = apply_alone(db, &job.op).await;
        health.note(&result);
        let _ = job.reply.send(result);
    }
}

/// All of `jobs` in one transaction. `Err` when the transaction failed (nothing was written);
/// otherwise each job's own outcome (a job can fail alone, e.g. its session is gone, without
/// having written anything).
async fn apply_batch(
    db: &DatabaseConnection,
    jobs: &[Job],
) -> Result<Vec<Result<Written, StoreError>>, DbErr> {
    let txn = db.begin().await?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(apply(&txn, &job.op).await?);
    }
    txn.commit().await?;
    Ok(results)
}

/// One job in its own transaction.
async fn apply_alone(db: &DatabaseConnection, op: &Op) -> Result<Written, StoreError> {
    let txn = db.begin().await?;
    match apply(&txn, op).await {
        Ok(Ok(written)) => {
            txn.commit().await?;
            Ok(written)
        }
        Ok(Err(e)) => {
            txn.rollback().await?;
            Err(e)
        }
        Err(e) => {
            let _ = txn.rollback().await;
            Err(e.into())
        }
    }
}

/// Runs one write. The outer error is the database's (it spoils the transaction); the inner one
/// is the write's own, raised before it changed anything.
async fn apply(db: &impl ConnectionTrait, op: &Op) -> Result<Result<Written, StoreError>, DbErr> {
    let now = now_ms();
    match op {
        Op::CreateSession { id, key, title } => {
            let model = sessions::Model {
                id: id.clone(),
                key: key.clone(),
                title: title.clone(),
                created_at: now,
                updated_at: now,
                message_count: 0,
                cost_micros: 0,
            };
            insert_session(db, &model).await?;
            Ok(session_from_model(model).map(Written::Session))
        }
        Op::Append(message) => append(db, message, now).await,
        Op::StartAnswer(message) => {
            if !bump_session(db, message, now, 1).await? {
                return Ok(Err(session_not_found(&message.session_id)));
            }
            let id = insert_message(db, message, now, false).await?;
            Ok(Ok(Written::Message(stored(message, id, now))))
        }
        Op::UpdateAnswer { id, content } => {
            // Only while it streams: a finished answer is never overwritten.
            messages::Entity::update_many()
                .col_expr(messages::Column::Content, Expr::value(content.as_str()))
                .filter(messages::Column::Id.eq(*id))
                .filter(messages::Column::StopReason.eq(STREAMING))
                .exec(db)
                .await?;
            Ok(Ok(Written::Done))
        }
        Op::FinishAnswer {
            id,
            created_at_ms,
            message,
        } => {
            use messages::Column as C;
            let (input_tokens, output_tokens) = tokens(message);
            let updated = messages::Entity::update_many()
                .col_expr(C::Content, Expr::value(message.content.as_str()))
                .col_expr(C::Provider, Expr::value(message.provider.clone()))
                .col_expr(C::ModelName, Expr::value(message.model.clone()))
                .col_expr(C::InputTokens, Expr::value(input_tokens))
                .col_expr(C::OutputTokens, Expr::value(output_tokens))
                .col_expr(C::Status, Expr::value(message.status.as_str()))
                .col_expr(C::StopReason, Expr::value(message.stop_reason.clone()))
                .col_expr(C::CostMicros, Expr::value(message.cost_micros))
                .filter(C::Id.eq(*id))
                .filter(C::SessionId.eq(message.session_id.as_str()))
                .exec(db)
                .await?;
            if updated.rows_affected == 0 {
                // Its session was reset meanwhile: the answer comes after, as before.
                return append(db, message, now).await;
            }
            // Counted in its session when it began; now its cost, and the day's ledger.
            bump_session(db, message, now, 0).await?;
            record_usage(db, message, now).await?;
            Ok(Ok(Written::Message(stored(message, *id, *created_at_ms))))
        }
        Op::CreateWithMessage { key, message } => {
            let title = if message.role == Role::User {
                title_from_content(&message.content)
            } else {
                String::new()
            };
            let model = sessions::Model {
                id: message.session_id.clone(),
                key: key.clone(),
                title,
                created_at: now,
                updated_at: now,
                message_count: 1,
                cost_micros: message.cost_micros,
            };
            insert_session(db, &model).await?;
            let id = insert_message(db, message, now, true).await?;
            Ok(session_from_model(model)
                .map(|session| Written::Both(session, stored(message, id, now))))
        }
    }
}

/// A message at the end of its session.
async fn append(
    db: &impl ConnectionTrait,
    message: &NewMessage,
    now: i64,
) -> Result<Result<Written, StoreError>, DbErr> {
    if !bump_session(db, message, now, 1).await? {
        return Ok(Err(session_not_found(&message.session_id)));
    }
    let id = insert_message(db, message, now, true).await?;
    Ok(Ok(Written::Message(stored(message, id, now))))
}

async fn insert_session(db: &impl ConnectionTrait, model: &sessions::Model) -> Result<(), DbErr> {
    let active = sessions::ActiveModel {
        id: Set(model.id.clone()),
        key: Set(model.key.clone()),
        title: Set(model.title.clone()),
        created_at: Set(model.created_at),
        updated_at: Set(model.updated_at),
        message_count: Set(model.message_count),
        cost_micros: Set(model.cost_micros),
    };
    sessions::Entity::insert(active)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Counts the message in its session (`count` more messages, its cost, the last update; the title
/// from the first user message) in one statement. False when the session does not exist.
async fn bump_session(
    db: &impl ConnectionTrait,
    message: &NewMessage,
    now: i64,
    count: i64,
) -> Result<bool, DbErr> {
    use sessions::Column as C;
    let col = |c: C| Expr::col((sessions::Entity, c));
    let mut update = sessions::Entity::update_many()
        .col_expr(C::UpdatedAt, Expr::value(now))
        .col_expr(C::MessageCount, col(C::MessageCount).add(count))
        .col_expr(C::CostMicros, col(C::CostMicros).add(message.cost_micros));
    if message.role == Role::User {
        let title = title_from_content(&message.content);
        if !title.is_empty() {
            update = update.col_expr(
                C::Title,
                Expr::case(col(C::Title).eq(""), title)
                    .finally(col(C::Title))
                    .into(),
            );
        }
    }
    let bumped = update
        .filter(C::Id.eq(message.session_id.as_str()))
        .exec(db)
        .await?;
    Ok(bumped.rows_affected > 0)
}

/// The message's token counts as stored.
fn tokens(message: &NewMessage) -> (i64, i64) {
    (
        i64::try_from(message.usage.input_tokens).unwrap_or(i64::MAX),
        i64::try_from(message.usage.output_tokens).unwrap_or(i64::MAX),
    )
}

/// Adds an answer (a message with a provider and a model) to the day's usage ledger.
async fn record_usage(
    db: &impl ConnectionTrait,
    message: &NewMessage,
    now: i64,
) -> Result<(), DbErr> {
    if let (Some(provider), Some(model)) = (&message.provider, &message.model) {
        let (input_tokens, output_tokens) = tokens(message);
        usage::record(
            db,
            utc_day(now),
            provider,
            model,
            input_tokens,
            output_tokens,
            message.cost_micros,
        )
        .await?;
    }
    Ok(())
}

/// Inserts the message (and, for an answer when `ledger`, adds it to the day's usage ledger); its
/// new id.
async fn insert_message(
    db: &impl ConnectionTrait,
    message: &NewMessage,
    now: i64,
    ledger: bool,
) -> Result<i64, DbErr> {
    let (input_tokens, output_tokens) = tokens(message);
    let active = messages::ActiveModel {
        id: NotSet,
        session_id: Set(message.session_id.clone()),
        role: Set(message.role.as_str().to_owned()),
        content: Set(message.content.clone()),
        provider: Set(message.provider.clone()),
        model_name: Set(message.model.clone()),
        input_tokens: Set(input_tokens),
        output_tokens: Set(output_tokens),
        status: Set(message.status.as_str().to_owned()),
        stop_reason: Set(message.stop_reason.clone()),
        created_at: Set(now),
        cost_micros: Set(message.cost_micros),
    };
    let id = messages::Entity::insert(active)
        .exec(db)
        .await?
        .last_insert_id;
    if ledger {
        record_usage(db, message, now).await?;
    }
    Ok(id)
}

fn stored(message: &NewMessage, id: i64, now: i64) -> StoredMessage {
    StoredMessage {
        id,
        session_id: message.session_id.clone(),
        role: message.role,
        content: message.content.clone(),
        provider: message.provider.clone(),
        model: message.model.clone(),
        usage: message.usage,
        status: message.status,
        stop_reason: message.stop_reason.clone(),
        created_at_ms: now,
        cost_micros: message.cost_micros,
    }
}
