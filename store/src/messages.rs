//! Messages: appending, the answers stored while they stream, a session's history (paged) and its
//! most recent messages.

use open_clanker_core::{MessageStatus, StoredMessage};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entity::messages;
use crate::error::{StoreError, writer_mismatch};
use crate::handle::Store;
use crate::paging::{
    HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX, Page, clamp_page_size, decode_message_token,
    encode_message_token, split_page,
};
use crate::records::{NewMessage, STREAMING, message_from_model};
use crate::writer;

impl Store {
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
}
