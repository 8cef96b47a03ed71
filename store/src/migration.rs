//! Schema migrations, applied by [`crate::Store::connect`]. Portable across SQLite and PostgreSQL:
//! everything is built with sea-query, no backend-specific SQL.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_pk_auto, blob, string, string_null, text};

/// All migrations, oldest first. Never edit a released migration: add a new one.
pub(crate) struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateSessionsAndMessages),
            Box::new(crate::access::CreateChannelAccess),
            Box::new(crate::usage::AddSpend),
            Box::new(CreateStoreProbe),
            Box::new(IndexStreamingAnswers),
        ]
    }
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    Key,
    Title,
    CreatedAt,
    UpdatedAt,
    MessageCount,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    SessionId,
    Role,
    Content,
    Provider,
    Model,
    InputTokens,
    OutputTokens,
    Status,
    StopReason,
    CreatedAt,
}

/// The initial schema: `sessions` and `messages`.
struct CreateSessionsAndMessages;

impl MigrationName for CreateSessionsAndMessages {
    fn name(&self) -> &str {
        "m20250101_000001_create_sessions_and_messages"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateSessionsAndMessages {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .if_not_exists()
                    .col(string(Sessions::Id).primary_key())
                    .col(string_null(Sessions::Key))
                    .col(text(Sessions::Title))
                    .col(big_integer(Sessions::CreatedAt))
                    .col(big_integer(Sessions::UpdatedAt))
                    .col(big_integer(Sessions::MessageCount).default(0))
                    .to_owned(),
            )
            .await?;
        // Serves `session_by_key` (newest with a key) and the key-prefix filter.
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_key_created_at")
                    .table(Sessions::Table)
                    .col(Sessions::Key)
                    .col(Sessions::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Serves `list_sessions` (newest first, keyset paging on (created_at, id)).
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_created_at_id")
                    .table(Sessions::Table)
                    .col(Sessions::CreatedAt)
                    .col(Sessions::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Messages::Id))
                    .col(string(Messages::SessionId))
                    .col(string(Messages::Role))
                    .col(text(Messages::Content))
                    .col(string_null(Messages::Provider))
                    .col(string_null(Messages::Model))
                    .col(big_integer(Messages::InputTokens).default(0))
                    .col(big_integer(Messages::OutputTokens).default(0))
                    .col(string(Messages::Status))
                    .col(string_null(Messages::StopReason))
                    .col(big_integer(Messages::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_messages_session_id")
                            .from(Messages::Table, Messages::SessionId)
                            .to(Sessions::Table, Sessions::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Serves `history` and `recent_messages` (a session's messages by id).
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_session_id_id")
                    .table(Messages::Table)
                    .col(Messages::SessionId)
                    .col(Messages::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Messages::Table).if_exists().to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Sessions::Table).if_exists().to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        // SQLite and PostgreSQL both have transactional DDL: a failed first run leaves nothing behind.
        Some(true)
    }
}

#[derive(DeriveIden)]
enum StoreProbe {
    Table,
    Id,
    WrittenAt,
    Payload,
}

/// `store_probe`: one row the writer rewrites, while the store cannot write, to notice when it
/// can again (`writer::probe`).
struct CreateStoreProbe;

impl MigrationName for CreateStoreProbe {
    fn name(&self) -> &str {
        "m20251126_000001_create_store_probe"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateStoreProbe {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StoreProbe::Table)
                    .if_not_exists()
                    .col(big_integer(StoreProbe::Id).primary_key())
                    .col(big_integer(StoreProbe::WrittenAt))
                    .col(blob(StoreProbe::Payload))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(StoreProbe::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

/// A partial index of the answers still streaming (`stop_reason = 'streaming'`; a handful at most),
/// so that the sweep after a crash (`Store::connect_exclusive`) does not read every message at
/// start-up. Other messages are not in it: inserting them costs nothing more.
struct IndexStreamingAnswers;

impl MigrationName for IndexStreamingAnswers {
    fn name(&self) -> &str {
        "m20251126_000002_index_streaming_answers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for IndexStreamingAnswers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_streaming")
                    .table(Messages::Table)
                    .col(Messages::StopReason)
                    .and_where(Expr::col(Messages::StopReason).eq(crate::records::STREAMING))
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_messages_streaming")
                    .table(Messages::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
