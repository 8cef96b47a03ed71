//! Who may talk to the assistant on a channel: the stored allowlist and the pending pairing codes
//! ([`AccessStore`] for [`Store`]), with their tables and the migration that creates them.

use open_clanker_core::{AccessError, AccessStore, AllowedSender, NewPairing, PairingRequest};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_pk_auto, string};

use open_clanker_core::now_ms;

use crate::error::{StoreError, truncate_chars};
use crate::handle::Store;

/// Longest stored label, in characters.
const LABEL_MAX_CHARS: usize = 100;

/// The `channel_allowlist` table.
pub(crate) mod allowlist {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "channel_allowlist")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub channel: String,
        pub sender: String,
        pub label: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `channel_pairings` table.
pub(crate) mod pairings {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "channel_pairings")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub channel: String,
        pub sender: String,
        pub label: String,
        pub code: String,
        pub created_at: i64,
        pub expires_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(DeriveIden)]
enum ChannelAllowlist {
    Table,
    Id,
    Channel,
    Sender,
    Label,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChannelPairings {
    Table,
    Id,
    Channel,
    Sender,
    Label,
    Code,
    CreatedAt,
    ExpiresAt,
}

/// Adds `channel_allowlist` and `channel_pairings`.
pub(crate) struct CreateChannelAccess;

impl MigrationName for CreateChannelAccess {
    fn name(&self) -> &str {
        "m20250201_000001_create_channel_access"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateChannelAccess {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChannelAllowlist::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ChannelAllowlist::Id))
                    .col(string(ChannelAllowlist::Channel))
                    .col(string(ChannelAllowlist::Sender))
                    .col(string(ChannelAllowlist::Label))
                    .col(big_integer(ChannelAllowlist::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_channel_allowlist_channel_sender")
                    .table(ChannelAllowlist::Table)
                    .col(ChannelAllowlist::Channel)
                    .col(ChannelAllowlist::Sender)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChannelPairings::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ChannelPairings::Id))
                    .col(string(ChannelPairings::Channel))
                    .col(string(ChannelPairings::Sender))
                    .col(string(ChannelPairings::Label))
                    .col(string(ChannelPairings::Code))
                    .col(big_integer(ChannelPairings::CreatedAt))
                    .col(big_integer(ChannelPairings::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        // A code names one pairing of a channel.
        manager
            .create_index(
                Index::create()
                    .name("idx_channel_pairings_channel_code")
                    .table(ChannelPairings::Table)
                    .col(ChannelPairings::Channel)
                    .col(ChannelPairings::Code)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Serves `pending_pairing` (a sender's code).
        manager
            .create_index(
                Index::create()
                    .name("idx_channel_pairings_channel_sender")
                    .table(ChannelPairings::Table)
                    .col(ChannelPairings::Channel)
                    .col(ChannelPairings::Sender)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(ChannelPairings::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(ChannelAllowlist::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

fn access_error(err: impl Into<StoreError>) -> AccessError {
    match err.into() {
        StoreError::NotFound(m) => AccessError::NotFound(m),
        other => AccessError::Storage(other.to_string()),
    }
}

fn db_error(err: DbErr) -> AccessError {
    access_error(StoreError::from(err))
}

/// A label as stored: no control characters, at most [`LABEL_MAX_CHARS`] characters.
fn clean_label(label: &str) -> String {
    let cleaned: String = label
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate_chars(cleaned.trim(), LABEL_MAX_CHARS).to_owned()
}

fn allowed_from(m: allowlist::Model) -> AllowedSender {
    AllowedSender {
        channel: m.channel,
        sender: m.sender,
        label: m.label,
        created_at_ms: m.created_at,
    }
}

fn pairing_from(m: pairings::Model) -> PairingRequest {
    PairingRequest {
        channel: m.channel,
        sender: m.sender,
        label: m.label,
        code: m.code,
        created_at_ms: m.created_at,
        expires_at_ms: m.expires_at,
    }
}

/// Deletes the codes that expired by `now`.
async fn delete_expired(db: &impl ConnectionTrait, now: i64) -> Result<(), DbErr> {
    pairings::Entity::delete_many()
        .filter(pairings::Column::ExpiresAt.lte(now))
        .exec(db)
        .await?;
    Ok(())
}

/// Inserts or updates an allowlist row and drops the sender's pending pairings.
async fn upsert_allowed(
    db: &impl ConnectionTrait,
    channel: &str,
    sender: &str,
    label: &str,
    now: i64,
) -> Result<AllowedSender, DbErr> {
    let label = clean_label(label);
    let existing = allowlist::Entity::find()
        .filter(allowlist::Column::Channel.eq(channel))
        .filter(allowlist::Column::Sender.eq(sender))
        .one(db)
        .await?;
    match existing {
        Some(row) if !label.is_empty() && row.label != label => {
            allowlist::Entity::update_many()
                .col_expr(allowlist::Column::Label, Expr::value(label))
                .filter(allowlist::Column::Id.eq(row.id))
                .exec(db)
                .await?;
        }
        Some(_) => {}
        None => {
            allowlist::Entity::insert(allowlist::ActiveModel {
                id: NotSet,
                channel: Set(channel.to_owned()),
                sender: Set(sender.to_owned()),
                label: Set(label),
                created_at: Set(now),
            })
            .exec_without_returning(db)
            .await?;
        }
    }
    pairings::Entity::delete_many()
        .filter(pairings::Column::Channel.eq(channel))
        .filter(pairings::Column::Sender.eq(sender))
        .exec(db)
        .await?;
    let stored = allowlist::Entity::find()
        .filter(allowlist::Column::Channel.eq(channel))
        .filter(allowlist::Column::Sender.eq(sender))
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("allowlist row vanished".to_owned()))?;
    Ok(allowed_from(stored))
}

#[async_trait::async_trait]
impl AccessStore for Store {
    async fn is_allowed(&self, channel: &str, sender: &str) -> Result<bool, AccessError> {
        let found = allowlist::Entity::find()
            .filter(allowlist::Column::Channel.eq(channel))
            .filter(allowlist::Column::Sender.eq(sender))
            .count(&self.db)
            .await
            .map_err(db_error)?;
        Ok(found > 0)
    }

    async fn allow(
        &self,
        channel: &str,
        sender: &str,
        label: &str,
    ) -> Result<AllowedSender, AccessError> {
        let txn = self.db.begin().await.map_err(db_error)?;
        let allowed = upsert_allowed(&txn, channel, sender, label, now_ms())
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(allowed)
    }

    async fn revoke(&self, channel: &str, sender: &str) -> Result<bool, AccessError> {
        let deleted = allowlist::Entity::delete_many()
            .filter(allowlist::Column::Channel.eq(channel))
            .filter(allowlist::Column::Sender.eq(sender))
            .exec(&self.db)
            .await
            .map_err(db_error)?
            .rows_affected;
        Ok(deleted > 0)
    }

    async fn list_allowed(&self, channel: Option<&str>) -> Result<Vec<AllowedSender>, AccessError> {
        let mut query = allowlist::Entity::find();
        if let Some(channel) = channel {
            query = query.filter(allowlist::Column::Channel.eq(channel));
        }
        let rows = query
            .order_by_asc(allowlist::Column::CreatedAt)
            .order_by_asc(allowlist::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(allowed_from).collect())
    }

    async fn create_pairing(
        &self,
        pairing: NewPairing,
        max_pending: u32,
    ) -> Result<PairingRequest, AccessError> {
        let now = now_ms();
        // Writes first: the transaction takes SQLite's write lock at once (see `append_message`).
        let txn = self.db.begin().await.map_err(db_error)?;
        delete_expired(&txn, now).await.map_err(db_error)?;
        let existing = pairings::Entity::find()
            .filter(pairings::Column::Channel.eq(pairing.channel.as_str()))
            .filter(pairings::Column::Sender.eq(pairing.sender.as_str()))
            .order_by_desc(pairings::Column::ExpiresAt)
            .one(&txn)
            .await
            .map_err(db_error)?;
        if let Some(existing) = existing {
            txn.commit().await.map_err(db_error)?;
            return Ok(pairing_from(existing));
        }
        let pending = pairings::Entity::find()
            .filter(pairings::Column::Channel.eq(pairing.channel.as_str()))
            .count(&txn)
            .await
            .map_err(db_error)?;
        if pending >= u64::from(max_pending) {
            txn.rollback().await.map_err(db_error)?;
            return Err(AccessError::TooManyPending(format!(
                "channel {} already has {pending} pending pairing codes (at most {max_pending})",
                pairing.channel
            )));
        }
        let code = pairing.code.to_ascii_uppercase();
        let taken = pairings::Entity::find()
            .filter(pairings::Column::Channel.eq(pairing.channel.as_str()))
            .filter(pairings::Column::Code.eq(code.as_str()))
            .count(&txn)
            .await
            .map_err(db_error)?;
        if taken > 0 {
            txn.rollback().await.map_err(db_error)?;
            return Err(AccessError::Conflict(
                "that pairing code is in use; generate another".to_owned(),
            ));
        }
        let model = pairings::Model {
            id: 0,
            channel: pairing.channel,
            sender: pairing.sender,
            label: clean_label(&pairing.label),
            code,
            created_at: now,
            expires_at: pairing.expires_at_ms,
        };
        pairings::Entity::insert(pairings::ActiveModel {
            id: NotSet,
            channel: Set(model.channel.clone()),
            sender: Set(model.sender.clone()),
            label: Set(model.label.clone()),
            code: Set(model.code.clone()),
            created_at: Set(model.created_at),
            expires_at: Set(model.expires_at),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(pairing_from(model))
    }

    async fn pending_pairing(
        &self,
        channel: &str,
        sender: &str,
    ) -> Result<Option<PairingRequest>, AccessError> {
        let row = pairings::Entity::find()
            .filter(pairings::Column::Channel.eq(channel))
            .filter(pairings::Column::Sender.eq(sender))
            .filter(pairings::Column::ExpiresAt.gt(now_ms()))
            .order_by_desc(pairings::Column::ExpiresAt)
            .one(&self.db)
            .await
            .map_err(db_error)?;
        Ok(row.map(pairing_from))
    }

    async fn list_pairings(
        &self,
        channel: Option<&str>,
    ) -> Result<Vec<PairingRequest>, AccessError> {
        let now = now_ms();
        delete_expired(&self.db, now).await.map_err(db_error)?;
        let mut query = pairings::Entity::find().filter(pairings::Column::ExpiresAt.gt(now));
        if let Some(channel) = channel {
            query = query.filter(pairings::Column::Channel.eq(channel));
        }
        let rows = query
            .order_by_asc(pairings::Column::CreatedAt)
            .order_by_asc(pairings::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(pairing_from).collect())
    }

    async fn approve_pairing(
        &self,
        channel: &str,
        code: &str,
    ) -> Result<AllowedSender, AccessError> {
        let now = now_ms();
        let code = code.trim().to_ascii_uppercase();
        let txn = self.db.begin().await.map_err(db_error)?;
        delete_expired(&txn, now).await.map_err(db_error)?;
        let Some(found) = pairings::Entity::find()
            .filter(pairings::Column::Channel.eq(channel))
            .filter(pairings::Column::Code.eq(code.as_str()))
            .one(&txn)
            .await
            .map_err(db_error)?
        else {
            txn.rollback().await.map_err(db_error)?;
            return Err(AccessError::NotFound(format!(
                "no pending pairing code {:?} on {channel} (codes expire after a few minutes; \
                 `open-clanker pairing list` shows the pending ones)",
                truncate_chars(&code, 16)
            )));
        };
        let allowed = upsert_allowed(&txn, channel, &found.sender, &found.label, now)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(allowed)
    }
}
