//! The records the store reads and writes: a message to append, the stop reasons of streaming
//! answers, and the conversion of database rows into the domain types of `open_clanker_core`.

use open_clanker_core::{MessageStatus, Role, Session, StoredMessage, Usage};

use crate::entity::{messages, sessions};
use crate::error::StoreError;

/// Longest automatic session title, in characters, including the trailing "…" when cut.
pub(crate) const TITLE_MAX_CHARS: usize = 60;

/// The stop reason of an answer still streaming, stored (marked interrupted) by
/// [`Store::start_answer`] until [`Store::finish_answer`] stores its end.
///
/// [`Store::start_answer`]: crate::Store::start_answer
/// [`Store::finish_answer`]: crate::Store::finish_answer
pub const STREAMING: &str = "streaming";
/// The stop reason [`Store::connect_exclusive`] gives an answer the process streaming it left
/// behind (it was killed, or the machine went down).
///
/// [`Store::connect_exclusive`]: crate::Store::connect_exclusive
pub const CRASH: &str = "crash";

/// A message to append to a session with [`Store::append_message`].
///
/// [`Store::append_message`]: crate::Store::append_message
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

/// The automatic title for a session: the first non-blank line of `content`, trimmed, at most
/// [`TITLE_MAX_CHARS`] characters including the "…" that marks a cut.
pub(crate) fn title_from_content(content: &str) -> String {
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

pub(crate) fn corrupt(table: &str, id: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("corrupt row in table {table} (id {id}): {what}"))
}

pub(crate) fn session_from_model(model: sessions::Model) -> Result<Session, StoreError> {
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

pub(crate) fn message_from_model(model: messages::Model) -> Result<StoredMessage, StoreError> {
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
}
