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

use open_clanker_core::{Role, Session, StoredMessage};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Statement,
    TransactionTrait,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::entity::{messages, sessions};
use crate::{
    NewMessage, StoreError, now_ms, session_from_model, session_not_found, title_from_content,
    usage, utc_day,
};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;
/// WAL size (in 4 KiB pages) past which the writer truncates it: 16 MiB.
const WAL_RESTART_FRAMES: i64 = 4096;
/// Writes between two WAL checkpoints (about 1,000 pages, SQLite's own default, at 4–6 pages
/// per write).
const CHECKPOINT_EVERY: usize = 200;
/// Writes waiting for the writer before callers wait to hand theirs over.
const QUEUE: usize = 4096;

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
}

/// What a write produced.
#[derive(Debug)]
pub(crate) enum Written {
    Session(Session),
    Message(StoredMessage),
    Both(Session, StoredMessage),
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
        tokio::spawn(run(db, rx, checkpoint));
        Writer { tx }
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

async fn run(db: DatabaseConnection, mut rx: mpsc::Receiver<Job>, checkpoint: bool) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut since_checkpoint = 0;
    let wal = Arc::new(WalState::default());
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        since_checkpoint += batch.len();
        commit(&db, &mut batch).await;
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

/// Commits `batch` (emptying it) and answers every job in it.
async fn commit(db: &DatabaseConnection, batch: &mut Vec<Job>) {
    if batch.len() > 1 {
        match apply_batch(db, batch).await {
            Ok(results) => {
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
        Op::Append(message) => {
            if !bump_session(db, message, now).await? {
                return Ok(Err(session_not_found(&message.session_id)));
            }
            let id = insert_message(db, message, now).await?;
            Ok(Ok(Written::Message(stored(message, id, now))))
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
            let id = insert_message(db, message, now).await?;
            Ok(session_from_model(model)
                .map(|session| Written::Both(session, stored(message, id, now))))
        }
    }
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

/// Counts the message in its session (count, cost, last update; the title from the first user
/// message) in one statement. False when the session does not exist.
async fn bump_session(
    db: &impl ConnectionTrait,
    message: &NewMessage,
    now: i64,
) -> Result<bool, DbErr> {
    use sessions::Column as C;
    let col = |c: C| Expr::col((sessions::Entity, c));
    let mut update = sessions::Entity::update_many()
        .col_expr(C::UpdatedAt, Expr::value(now))
        .col_expr(C::MessageCount, col(C::MessageCount).add(1i64))
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

/// Inserts the message (and, for an answer, adds it to the day's usage ledger); its new id.
async fn insert_message(
    db: &impl ConnectionTrait,
    message: &NewMessage,
    now: i64,
) -> Result<i64, DbErr> {
    let input_tokens = i64::try_from(message.usage.input_tokens).unwrap_or(i64::MAX);
    let output_tokens = i64::try_from(message.usage.output_tokens).unwrap_or(i64::MAX);
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
    if let (Some(provider), Some(model)) = (&message.provider, &message.model) {
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
