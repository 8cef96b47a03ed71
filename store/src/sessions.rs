//! Sessions: creating, finding, listing (paged, filtered by key prefix), resetting and deleting.

use open_clanker_core::{Session, StoredMessage, now_ms};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Select, TransactionTrait,
};

use crate::entity::{messages, sessions};
use crate::error::{StoreError, session_not_found, writer_mismatch};
use crate::handle::Store;
use crate::paging::{
    Page, SESSIONS_PAGE_DEFAULT, SESSIONS_PAGE_MAX, clamp_page_size, decode_session_token,
    encode_session_token, split_page,
};
use crate::records::{NewMessage, session_from_model};
use crate::writer;

impl Store {
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
    /// [`StoreError::NotFound`] unless the session exists.
    pub(crate) async fn require_session(&self, id: &str) -> Result<(), StoreError> {
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

#[cfg(test)]
mod tests {
    use sea_orm::DbBackend;

    use super::*;

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
}
