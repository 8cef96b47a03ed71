//! What the Telegram stand-in's users see: the bot's identity, Telegram's message limit, and the
//! records of calls and sent messages it keeps for tests.

use std::time::Duration;

use serde_json::Value;

/// The bot's user id in `getMe`.
pub const BOT_ID: i64 = 7_000_000_001;
/// The bot's user name in `getMe`.
pub const BOT_USERNAME: &str = "clanker_test_bot";
/// Telegram's longest message, after entity parsing.
pub const MESSAGE_LIMIT: usize = 4096;

/// A failure to answer the next call of a method with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `429 Too Many Requests: retry after N` with `parameters.retry_after`.
    RetryAfter(u64),
    /// `400 Bad Request: can't parse entities: ...`.
    CantParseEntities,
    /// Any status and description.
    Status(u16, String),
}

/// One Bot API call as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The Bot API method as called (Telegram ignores its case: teloxide sends `SendMessage`).
    pub method: String,
    /// The parameters (JSON body, or the multipart fields as strings).
    pub params: Value,
    /// When it arrived, from the stand-in's start.
    pub at: Duration,
    /// The HTTP status answered.
    pub status: u16,
}

/// A message the bot sent, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The chat it is in.
    pub chat_id: i64,
    /// Its id in that chat.
    pub message_id: i64,
    /// The text as sent (HTML when `parse_mode` is HTML).
    pub raw: String,
    /// What a person sees: tags removed, entities decoded.
    pub text: String,
    /// `HTML`, `MarkdownV2`, or none (plain text).
    pub parse_mode: Option<String>,
    /// The message it replies to.
    pub reply_to: Option<i64>,
    /// The last send or edit asked for no link preview.
    pub link_preview_disabled: bool,
    /// Successful edits.
    pub edits: usize,
}
