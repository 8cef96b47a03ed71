//! What a platform implements to answer in a chat: [`ReplySink`] and the [`SendError`] its calls
//! return (the relay and [`crate::backoff::retry`] decide by it what to do next), and
//! [`redact_token`], which keeps the bot token out of those errors.

use std::time::Duration;

use open_clanker_core::{ExposeSecret, SecretString};

/// Why a platform call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The platform's rate limit (HTTP 429): try again after this long.
    #[error("rate limited; retry after {0:?}")]
    RetryAfter(Duration),
    /// A network error or a server error: worth retrying.
    #[error("{0}")]
    Transient(String),
    /// The platform refused the call (bad request, forbidden, ...): retrying will not help.
    #[error("{0}")]
    Fatal(String),
}

/// The chat an answer goes to, as a platform sees it. The text handed to `send` and `edit` is
/// Markdown of at most [`ReplySink::max_len`] UTF-16 units; the sink renders it the way the
/// platform accepts (falling back to plain text when the platform rejects the formatting) and
/// treats "message not modified" as success.
#[async_trait::async_trait]
pub trait ReplySink: Send + Sync {
    /// What identifies a sent message (to edit it).
    type Handle: Clone + Send + Sync;

    /// The platform's longest message, in UTF-16 code units.
    fn max_len(&self) -> usize;

    /// Shows "typing…" in the chat.
    async fn typing(&self) -> Result<(), SendError>;

    /// Posts a new message.
    async fn send(&self, markdown: &str) -> Result<Self::Handle, SendError>;

    /// Replaces the text of a message posted by [`ReplySink::send`].
    async fn edit(&self, handle: &Self::Handle, markdown: &str) -> Result<(), SendError>;
}

/// `text` with the bot token replaced by `<token>`: an HTTP client's errors may carry the request
/// URL, and the Bot API has the token in its path. (The one place the token is read that is not
/// a request.)
pub fn redact_token(text: &str, token: &SecretString) -> String {
    let token = token.expose_secret();
    if token.is_empty() {
        text.to_owned()
    } else {
        text.replace(token.as_str(), "<token>")
    }
}
