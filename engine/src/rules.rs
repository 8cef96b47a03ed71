//! The engine's input rules (one for each thing a caller sends) and how store and provider
//! failures become turn errors.

use open_clanker_core::TurnError;
use open_clanker_providers::ProviderError;
use open_clanker_store::StoreError;

/// Longest accepted model name.
pub(crate) const MAX_MODEL_CHARS: usize = 200;
/// Longest accepted session key.
pub const MAX_KEY_CHARS: usize = 256;
/// Longest accepted session title.
pub const MAX_TITLE_CHARS: usize = 200;

/// A message's text: not blank, at most `limit` characters (`chat.max_message_chars`).
pub fn check_text(text: &str, limit: usize) -> Result<(), TurnError> {
    if text.trim().is_empty() {
        return Err(TurnError::InvalidArgument("text is empty".into()));
    }
    let chars = text.chars().count();
    if chars > limit {
        return Err(TurnError::InvalidArgument(format!(
            "text is {chars} characters long; the limit is {limit} (chat.max_message_chars)"
        )));
    }
    Ok(())
}

/// A session id, trimmed. Session ids are UUIDs; anything much longer is not an id at all.
pub fn check_id(id: &str) -> Result<&str, TurnError> {
    let id = id.trim();
    if id.is_empty() {
        return Err(TurnError::InvalidArgument("session_id is empty".into()));
    }
    if id.len() > 64 || id.chars().any(char::is_control) {
        return Err(TurnError::InvalidArgument(format!(
            "session_id {:?} is not a session id",
            id.chars().take(64).collect::<String>()
        )));
    }
    Ok(id)
}

/// A session key: not blank, at most [`MAX_KEY_CHARS`] printable characters.
pub fn check_key(key: &str) -> Result<(), TurnError> {
    if key.trim().is_empty() {
        return Err(TurnError::InvalidArgument("session key is empty".into()));
    }
    if key.chars().count() > MAX_KEY_CHARS || key.chars().any(char::is_control) {
        return Err(TurnError::InvalidArgument(format!(
            "session key must be at most {MAX_KEY_CHARS} printable characters"
        )));
    }
    Ok(())
}

/// Maps a store failure onto a turn error.
pub fn store_error(e: StoreError) -> TurnError {
    match e {
        StoreError::NotFound(m) => TurnError::NotFound(m),
        StoreError::InvalidPageToken(m) => TurnError::InvalidArgument(m),
        other => TurnError::Unavailable(format!("the store failed: {other}")),
    }
}

/// Maps a provider failure onto a turn error; the texts never contain keys.
pub fn provider_error(e: &ProviderError) -> TurnError {
    // The providers keep credentials out of their errors; a URL quoted in one loses its
    // credentials here too, before the text reaches the caller (or a chat).
    let text = open_clanker_core::redact::redact_urls_in(&e.to_string());
    match e {
        ProviderError::Unauthorized { .. } => TurnError::FailedPrecondition(text),
        ProviderError::RateLimited { .. } => TurnError::ResourceExhausted(text),
        ProviderError::Unavailable { .. } | ProviderError::Stream { .. } => {
            TurnError::Unavailable(text)
        }
        ProviderError::Timeout { .. } => TurnError::DeadlineExceeded(text),
        ProviderError::BadRequest { .. } | ProviderError::InvalidRequest { .. } => {
            TurnError::InvalidArgument(text)
        }
        ProviderError::Config(_) => TurnError::FailedPrecondition(text),
    }
}

/// A session title: at most [`MAX_TITLE_CHARS`] characters, trimmed.
pub fn check_title(title: &str) -> Result<&str, TurnError> {
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(TurnError::InvalidArgument(format!(
            "title must be at most {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(title.trim())
}
