//! Streaming clients for AI providers: the Anthropic Messages API and the OpenAI Chat Completions
//! API (and OpenAI-compatible servers).
//!
//! A [`Provider`] sends a [`CompletionRequest`] and returns the answer as a stream of
//! [`StreamEvent`]s: text deltas, then the token usage, then `Done`. Requests that fail before the
//! answer starts (429, 5xx, connection failures and timeouts) are retried with back-off; once the
//! answer streams, a failure ends the stream with one [`ProviderError`].
//!
//! This crate knows nothing about gRPC; the server maps [`ProviderError`] onto status codes. No
//! error text, log line or `Debug` output carries the API key.
//!
//! ```no_run
//! # async fn demo() -> Result<(), open_clanker_providers::ProviderError> {
//! use futures::StreamExt;
//! use open_clanker_providers::*;
//!
//! let provider = build(ProviderConfig::new(ProviderKind::Anthropic, "sk-ant-..."))?;
//! let mut events = provider
//!     .stream(CompletionRequest {
//!         model: "claude-sonnet-4-5".into(),
//!         system: None,
//!         messages: vec![ChatMessage::new(Role::User, "Hello!")],
//!         max_tokens: 1024,
//!         temperature: None,
//!     })
//!     .await?;
//! while let Some(event) = events.next().await {
//!     if let StreamEvent::TextDelta(text) = event? {
//!         print!("{text}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use open_clanker_core::SecretString;
use open_clanker_core::redact::RedactedUrl;

mod anthropic;
mod dns;
mod error;
mod http;
mod openai;
mod pool;
#[cfg(test)]
mod proptests;
mod sse;

pub use anthropic::{ANTHROPIC_VERSION, AnthropicProvider};
pub use error::ProviderError;
pub use open_clanker_core::{ChatMessage, ProviderKind, Role, Usage};
pub use openai::OpenAiProvider;

/// How to reach one provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Which API to speak.
    pub kind: ProviderKind,
    /// The API key. Never logged, never in `Debug` output, never in error text.
    pub api_key: SecretString,
    /// The API root. Anthropic: without `/v1` (as `ANTHROPIC_BASE_URL`; requests go to
    /// `{base}/v1/messages`). OpenAI: with the version path (as `OPENAI_BASE_URL`; requests go to
    /// `{base}/chat/completions`). Trailing slashes are ignored.
    pub base_url: RedactedUrl,
    /// Longest wait for a TCP (and TLS) connection. Default 10 s.
    pub connect_timeout: Duration,
    /// Longest silence while waiting for the response or between bytes of it. Default 60 s.
    pub idle_timeout: Duration,
    /// How many times a failed request is retried (429, 5xx, failures before any response).
    /// Default 2.
    pub max_retries: u32,
    /// The first retry's back-off; it doubles each time, up to 8 s, with jitter. A `retry-after`
    /// header (up to 30 s) takes precedence. Default 500 ms.
    pub retry_base_delay: Duration,
    /// Speak HTTP/2 without negotiating it (h2c for `http://`): for a local server known to
    /// support it, so that all streams share one connection. HTTPS endpoints negotiate HTTP/2 by
    /// themselves (ALPN) and need no setting. Default false.
    pub http2_prior_knowledge: bool,
    /// Requests in flight on one HTTP/2 connection before another connection is opened (the
    /// provider's clients form a small pool; see the `pool` module). Keep it at or below the
    /// server's `SETTINGS_MAX_CONCURRENT_STREAMS`, beyond which requests wait for a free stream.
    /// Must be at least 1; unused over plain `http://` without `http2_prior_knowledge` (HTTP/1.1
    /// opens a connection per request). Default 100.
    pub max_streams_per_connection: u32,
}

impl ProviderConfig {
    /// A configuration with the provider's public base URL and the default timeouts and retries.
    pub fn new(kind: ProviderKind, api_key: impl Into<String>) -> Self {
        Self {
            kind,
            api_key: SecretString::new(api_key.into()),
            base_url: Self::default_base_url(kind).into(),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_retries: 2,
            retry_base_delay: Duration::from_millis(500),
            http2_prior_knowledge: false,
            max_streams_per_connection: Self::DEFAULT_MAX_STREAMS_PER_CONNECTION,
        }
    }

    /// The default of [`ProviderConfig::max_streams_per_connection`]: the concurrent-stream limit
    /// HTTP/2 servers commonly announce (RFC 9113 recommends at least 100).
    pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 100;

    /// The public API root of a provider, in the form [`ProviderConfig::base_url`] expects.
    pub fn default_base_url(kind: ProviderKind) -> &'static str {
        match kind {
            ProviderKind::Anthropic => "https://api.anthropic.com",
            ProviderKind::OpenAi => "https://api.openai.com/v1",
        }
    }

    /// The same configuration with another base URL.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = RedactedUrl::from(base_url.into());
        self
    }
}

/// One request for an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// The provider's model name.
    pub model: String,
    /// The system prompt, if any.
    pub system: Option<String>,
    /// The conversation, oldest first. Empty messages are dropped, consecutive messages of one
    /// role merged and `Role::System` messages joined to the system prompt before sending.
    pub messages: Vec<ChatMessage>,
    /// The most tokens the answer may have.
    pub max_tokens: u32,
    /// Sampling temperature; the provider's default when `None`.
    pub temperature: Option<f32>,
}

/// What an answer's stream yields: any number of `TextDelta`s, at most one `Usage`, then `Done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next piece of the answer's text.
    TextDelta(String),
    /// The token counts of the request and answer (not sent by every OpenAI-compatible server).
    Usage(Usage),
    /// The answer is complete. `stop_reason` is the provider's own word, e.g. `end_turn`,
    /// `max_tokens` (Anthropic) or `stop`, `length` (OpenAI).
    Done {
        /// Why the model stopped, as the provider put it.
        stop_reason: Option<String>,
    },
}

/// An answer's events. Ends after `Done`, or with one `Err` if the stream breaks. Dropping it
/// closes the connection (and so cancels the answer).
pub type EventStream = futures::stream::BoxStream<'static, Result<StreamEvent, ProviderError>>;

/// A client of one AI provider.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Which provider this is.
    fn kind(&self) -> ProviderKind;

    /// Sends the request (retrying as configured) and returns the answer's events. The stream
    /// ends after `Done`, or with one `Err` if the stream breaks.
    async fn stream(&self, request: CompletionRequest) -> Result<EventStream, ProviderError>;
}

/// The client for `config.kind`: an [`AnthropicProvider`] or an [`OpenAiProvider`].
pub fn build(config: ProviderConfig) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(match config.kind {
        ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(config)?),
        ProviderKind::OpenAi => Arc::new(OpenAiProvider::new(config)?),
    })
}

/// Checks that a provider answers and accepts the key, without spending tokens: one request to
/// its model list (`GET /v1/models` for Anthropic, `GET {base}/models` for OpenAI), not retried.
/// A refused key gives [`ProviderError::Unauthorized`]; a wrong base URL typically
/// [`ProviderError::BadRequest`] (404) or [`ProviderError::Unavailable`].
pub async fn check_key(config: ProviderConfig) -> Result<(), ProviderError> {
    match config.kind {
        ProviderKind::Anthropic => AnthropicProvider::new(config)?.check_key().await,
        ProviderKind::OpenAi => OpenAiProvider::new(config)?.check_key().await,
    }
}

/// The shaping both APIs get: the system prompt joined with any `Role::System` messages (blank
/// line between), empty (or blank) messages dropped, consecutive messages of one role merged with
/// a blank line.
pub(crate) fn merge_messages(
    system: Option<&str>,
    messages: &[ChatMessage],
) -> (Option<String>, Vec<ChatMessage>) {
    let mut system_parts: Vec<&str> = system
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .into_iter()
        .collect();
    let mut merged: Vec<ChatMessage> = Vec::with_capacity(messages.len());
    for message in messages {
        if message.content.trim().is_empty() {
            continue;
        }
        if message.role == Role::System {
            system_parts.push(message.content.trim());
            continue;
        }
        match merged.last_mut() {
            Some(last) if last.role == message.role => {
                last.content.push_str("\n\n");
                last.content.push_str(&message.content);
            }
            _ => merged.push(message.clone()),
        }
    }
    let system = (!system_parts.is_empty()).then(|| system_parts.join("\n\n"));
    (system, merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = ProviderConfig::new(ProviderKind::Anthropic, "k");
        assert_eq!(c.base_url.as_str(), "https://api.anthropic.com");
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.max_retries, 2);
        assert_eq!(c.retry_base_delay, Duration::from_millis(500));
        assert_eq!(c.max_streams_per_connection, 100);
        assert_eq!(
            ProviderConfig::new(ProviderKind::OpenAi, "k")
                .base_url
                .as_str(),
            "https://api.openai.com/v1"
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let c = ProviderConfig::new(ProviderKind::OpenAi, "sk-very-secret-123456");
        let text = format!("{c:?}");
        assert!(!text.contains("sk-very-secret-123456"), "{text}");
        assert!(text.contains("REDACTED"), "{text}");
    }

    #[test]
    fn build_picks_the_client_and_checks_the_config() {
        let p = build(ProviderConfig::new(ProviderKind::Anthropic, "k")).unwrap();
        assert_eq!(p.kind(), ProviderKind::Anthropic);
        let p = build(ProviderConfig::new(ProviderKind::OpenAi, "k")).unwrap();
        assert_eq!(p.kind(), ProviderKind::OpenAi);
        let e = AnthropicProvider::new(ProviderConfig::new(ProviderKind::OpenAi, "k")).unwrap_err();
        assert!(matches!(e, ProviderError::Config(_)));
        let bad = ProviderConfig::new(ProviderKind::OpenAi, "k").with_base_url("ftp://example");
        assert!(matches!(build(bad), Err(ProviderError::Config(_))));
        let e = build(ProviderConfig::new(
            ProviderKind::Anthropic,
            "bad\nkey-secret",
        ))
        .err()
        .unwrap();
        assert!(matches!(e, ProviderError::Config(_)));
        assert!(!e.to_string().contains("key-secret"), "{e}");
        let mut zero = ProviderConfig::new(ProviderKind::OpenAi, "k");
        zero.max_streams_per_connection = 0;
        let e = build(zero).err().unwrap();
        assert!(
            matches!(&e, ProviderError::Config(m) if m.contains("max_streams_per_connection")),
            "{e:?}"
        );
    }

    #[test]
    fn merging_keeps_order_and_trims_nothing_inside() {
        let (system, messages) = merge_messages(
            Some("  "),
            &[
                ChatMessage::new(Role::User, "a\n"),
                ChatMessage::new(Role::User, "b"),
            ],
        );
        assert_eq!(system, None);
        assert_eq!(messages, vec![ChatMessage::new(Role::User, "a\n\n\nb")]);
    }
}
