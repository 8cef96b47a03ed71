//! The errors of the provider clients and how HTTP answers map onto them.

use open_clanker_core::ExposeSecret as _;
use std::sync::Arc;
use std::time::Duration;

use open_clanker_core::{ProviderKind, redact};

use crate::ProviderConfig;

/// Why a provider call failed.
///
/// Each variant maps onto one gRPC status code (the server does the mapping). No variant's
/// `Display` or `Debug` text ever contains the API key: every message built from what a provider
/// sent back is passed through a redactor that knows the key.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the credentials (HTTP 401 or 403). Never retried.
    #[error(
        "{provider} refused the request as unauthorized (HTTP {status}): {message}. Check {env}",
        env = .provider.api_key_env()
    )]
    Unauthorized {
        /// Which provider answered.
        provider: ProviderKind,
        /// The HTTP status (401 or 403).
        status: u16,
        /// What the provider said.
        message: String,
    },

    /// The provider is rate limiting (HTTP 429 after all retries, or a `rate_limit_error` event
    /// in the stream).
    #[error("{provider} is rate limiting requests{}: {message}", retry_hint(.retry_after))]
    RateLimited {
        /// Which provider answered.
        provider: ProviderKind,
        /// How long the provider asked to wait, when it said.
        retry_after: Option<Duration>,
        /// What the provider said.
        message: String,
    },

    /// The provider could not be reached or answered with a server error (5xx, including
    /// Anthropic's 529 "overloaded" and an `overloaded_error` event in the stream), after all
    /// retries.
    #[error("{provider} is unavailable: {message}")]
    Unavailable {
        /// Which provider was asked.
        provider: ProviderKind,
        /// What went wrong, including the number of attempts.
        message: String,
    },

    /// No answer (or no further data of an answer) arrived in time.
    #[error("{provider} timed out: {message}")]
    Timeout {
        /// Which provider was asked.
        provider: ProviderKind,
        /// What timed out.
        message: String,
    },

    /// The provider rejected the request (a 4xx other than 401, 403, 408 and 429), e.g. an
    /// unknown model or too many tokens. Never retried.
    #[error("{provider} rejected the request (HTTP {status}): {message}")]
    BadRequest {
        /// Which provider answered.
        provider: ProviderKind,
        /// The HTTP status.
        status: u16,
        /// The provider's own error message, taken from its JSON error body.
        message: String,
    },

    /// The request was found unusable before anything was sent, e.g. no message with content.
    #[error("invalid request for {provider}: {message}")]
    InvalidRequest {
        /// Which provider the request was meant for.
        provider: ProviderKind,
        /// What is wrong with it.
        message: String,
    },

    /// The answer's stream was malformed or broke off, or the provider sent an `error` event
    /// while streaming.
    #[error("{provider} stream failed: {message}")]
    Stream {
        /// Which provider was streaming.
        provider: ProviderKind,
        /// What went wrong.
        message: String,
    },

    /// The provider configuration is unusable (bad base URL, API key that is not a valid header
    /// value, a config of the wrong kind).
    #[error("invalid provider configuration: {0}")]
    Config(String),
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) if d.subsec_millis() == 0 => format!(" (retry after {}s)", d.as_secs()),
        Some(d) => format!(" (retry after {}ms)", d.as_millis()),
        None => String::new(),
    }
}

impl ProviderError {
    /// The provider concerned, when the error came from (or was meant for) one.
    pub fn provider(&self) -> Option<ProviderKind> {
        match self {
            ProviderError::Unauthorized { provider, .. }
            | ProviderError::RateLimited { provider, .. }
            | ProviderError::Unavailable { provider, .. }
            | ProviderError::Timeout { provider, .. }
            | ProviderError::BadRequest { provider, .. }
            | ProviderError::InvalidRequest { provider, .. }
            | ProviderError::Stream { provider, .. } => Some(*provider),
            ProviderError::Config(_) => None,
        }
    }

    /// The HTTP status the provider answered with, when the error is an HTTP error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProviderError::Unauthorized { status, .. }
            | ProviderError::BadRequest { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether asking again later may succeed (rate limits, outages, timeouts, broken streams).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Unavailable { .. }
                | ProviderError::Timeout { .. }
                | ProviderError::Stream { .. }
        )
    }
}

/// The longest provider-supplied text kept in an error message.
const MAX_MESSAGE_CHARS: usize = 600;

/// Removes the API key, and the credentials of the base URL (its password, credential-like query
/// parameters; see [`open_clanker_core::redact`]), from text that came from outside (error
/// bodies, transport errors) and shortens it, so it is safe to log and to show. Any URL quoted in
/// the text loses its credentials too.
#[derive(Clone)]
pub(crate) struct Redactor {
    key: String,
    /// The base URL's secrets, longest first; shared by the clones each stream takes.
    url_secrets: Arc<[String]>,
}

impl Redactor {
    pub(crate) fn new(key: &str) -> Self {
        Self {
            key: key.trim().to_string(),
            url_secrets: Arc::new([]),
        }
    }

    /// A redactor for a provider's key and base URL.
    pub(crate) fn for_config(config: &ProviderConfig) -> Self {
        Self {
            url_secrets: redact::url_secrets(config.base_url.trim()).into(),
            ..Self::new(config.api_key.expose_secret())
        }
    }

    pub(crate) fn clean(&self, text: &str) -> String {
        let text = text.trim();
        // Keys shorter than this are not worth masking (and masking them would mangle text).
        let text = if self.key.len() >= 4 && text.contains(self.key.as_str()) {
            text.replace(self.key.as_str(), "[redacted]")
        } else {
            text.to_string()
        };
        let text = redact::mask_secrets(&redact::redact_urls_in(&text), &self.url_secrets);
        truncate_chars(&text, MAX_MESSAGE_CHARS)
    }
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The human-readable message of a provider's JSON error body.
///
/// Understands Anthropic (`{"type":"error","error":{"type","message"}}`), OpenAI
/// (`{"error":{"message","type","param","code"}}`) and the shapes common among OpenAI-compatible
/// servers (`{"error":"text"}`, `{"message":..}`, `{"detail":..}`); otherwise the raw body.
pub(crate) fn error_body_message(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "no error details in the response".to_string();
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_string();
    };
    let (message, kind) = error_object_message(&value);
    match (message, kind) {
        (Some(m), Some(k)) => format!("{m} ({k})"),
        (Some(m), None) => m,
        (None, Some(k)) => k,
        (None, None) => body.to_string(),
    }
}

/// The message and the error type (or code) of a JSON error value, in any of the known shapes.
pub(crate) fn error_object_message(value: &serde_json::Value) -> (Option<String>, Option<String>) {
    let text = |v: Option<&serde_json::Value>| -> Option<String> {
        match v? {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    if let Some(error) = value.get("error") {
        if let Some(s) = text(Some(error)) {
            return (Some(s), None);
        }
        let message = text(error.get("message"));
        let kind = text(error.get("type")).or_else(|| text(error.get("code")));
        if message.is_some() || kind.is_some() {
            return (message, kind);
        }
    }
    let message = text(value.get("message")).or_else(|| text(value.get("detail")));
    (message, None)
}

/// The error for a non-success HTTP answer, after `attempts` tries.
pub(crate) fn from_status(
    provider: ProviderKind,
    status: u16,
    message: String,
    retry_after: Option<Duration>,
    attempts: u32,
) -> ProviderError {
    let tries = if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    };
    match status {
        401 | 403 => ProviderError::Unauthorized {
            provider,
            status,
            message,
        },
        429 => ProviderError::RateLimited {
            provider,
            retry_after,
            message: format!("HTTP 429{tries}: {message}"),
        },
        408 => ProviderError::Timeout {
            provider,
            message: format!("HTTP 408 (request timeout){tries}: {message}"),
        },
        400..=499 => ProviderError::BadRequest {
            provider,
            status,
            message,
        },
        500..=599 => ProviderError::Unavailable {
            provider,
            message: format!("HTTP {status}{tries}: {message}"),
        },
        300..=399 => ProviderError::Config(format!(
            "{provider} answered with a redirect (HTTP {status}); check the base URL: {message}"
        )),
        _ => ProviderError::Unavailable {
            provider,
            message: format!("unexpected HTTP status {status}{tries}: {message}"),
        },
    }
}

/// The error for an `error` object that arrived inside the stream.
pub(crate) fn from_stream_error(
    provider: ProviderKind,
    error: &serde_json::Value,
    redactor: &Redactor,
) -> ProviderError {
    let (message, kind) = error_object_message(error);
    let kind = kind.unwrap_or_default();
    let text = match message {
        Some(m) if kind.is_empty() => m,
        Some(m) => format!("{m} ({kind})"),
        None if kind.is_empty() => "the provider sent an error event without details".to_string(),
        None => kind.clone(),
    };
    let message = redactor.clean(&text);
    let code = error
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(|c| c.as_str())
        .unwrap_or_default();
    let limited = |s: &str| s.contains("rate_limit");
    // Overloaded is the provider's capacity, not the caller's rate: like an HTTP 529, it is
    // reported as unavailable.
    let overloaded = |s: &str| s.contains("overloaded");
    if limited(&kind) || limited(code) {
        ProviderError::RateLimited {
            provider,
            retry_after: None,
            message,
        }
    } else if overloaded(&kind) || overloaded(code) {
        ProviderError::Unavailable {
            provider,
            message: format!("overloaded while streaming: {message}"),
        }
    } else {
        ProviderError::Stream {
            provider,
            message: format!("error event in the stream: {message}"),
        }
    }
}

/// The whole chain of an error's causes as one line (reqwest's own text alone says little).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-ant-SECRET-distinctive-0123456789";

    #[test]
    fn anthropic_error_body() {
        let body =
            r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-nope"}}"#;
        assert_eq!(
            error_body_message(body),
            "model: claude-nope (not_found_error)"
        );
    }

    #[test]
    fn openai_error_body() {
        let body = r#"{"error":{"message":"The model `gpt-nope` does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#;
        assert_eq!(
            error_body_message(body),
            "The model `gpt-nope` does not exist (invalid_request_error)"
        );
    }

    #[test]
    fn other_error_bodies() {
        assert_eq!(
            error_body_message(r#"{"error":"model not loaded"}"#),
            "model not loaded"
        );
        assert_eq!(error_body_message(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(
            error_body_message("<html>Bad gateway</html>"),
            "<html>Bad gateway</html>"
        );
        assert_eq!(error_body_message(""), "no error details in the response");
        assert_eq!(error_body_message("[1,2]"), "[1,2]");
    }

    #[test]
    fn status_mapping() {
        let p = ProviderKind::Anthropic;
        let m = || "msg".to_string();
        assert!(matches!(
            from_status(p, 401, m(), None, 1),
            ProviderError::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(
            from_status(p, 403, m(), None, 1),
            ProviderError::Unauthorized { status: 403, .. }
        ));
        assert!(matches!(
            from_status(p, 429, m(), Some(Duration::from_secs(3)), 3),
            ProviderError::RateLimited {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            from_status(p, 404, m(), None, 1),
            ProviderError::BadRequest { status: 404, .. }
        ));
        assert!(matches!(
            from_status(p, 400, m(), None, 1),
            ProviderError::BadRequest { status: 400, .. }
        ));
        assert!(matches!(
            from_status(p, 408, m(), None, 1),
            ProviderError::Timeout { .. }
        ));
        assert!(matches!(
            from_status(p, 529, m(), None, 3),
            ProviderError::Unavailable { .. }
        ));
        assert!(matches!(
            from_status(p, 503, m(), None, 3),
            ProviderError::Unavailable { .. }
        ));
        assert!(matches!(
            from_status(p, 301, m(), None, 1),
            ProviderError::Config(_)
        ));
        let text = from_status(p, 503, m(), None, 3).to_string();
        assert!(text.contains("3 attempts"), "{text}");
    }

    #[test]
    fn unauthorized_names_the_env_var() {
        let e = from_status(
            ProviderKind::Anthropic,
            401,
            "invalid x-api-key".into(),
            None,
            1,
        );
        assert!(e.to_string().contains("ANTHROPIC_API_KEY"), "{e}");
        let e = from_status(ProviderKind::OpenAi, 401, "bad key".into(), None, 1);
        assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
    }

    #[test]
    fn rate_limit_display_has_retry_hint() {
        let e = from_status(
            ProviderKind::OpenAi,
            429,
            "slow down".into(),
            Some(Duration::from_secs(2)),
            3,
        );
        let text = e.to_string();
        assert!(
            text.contains("retry after 2s") && text.contains("slow down"),
            "{text}"
        );
    }

    #[test]
    fn stream_error_events() {
        let r = Redactor::new(KEY);
        let overloaded: serde_json::Value = serde_json::json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}});
        assert!(matches!(
            from_stream_error(ProviderKind::Anthropic, &overloaded, &r),
            ProviderError::Unavailable { .. }
        ));
        let limited: serde_json::Value = serde_json::json!({"type":"error","error":{"type":"rate_limit_error","message":"slow"}});
        assert!(matches!(
            from_stream_error(ProviderKind::Anthropic, &limited, &r),
            ProviderError::RateLimited { .. }
        ));
        let api: serde_json::Value =
            serde_json::json!({"type":"error","error":{"type":"api_error","message":"boom"}});
        let e = from_stream_error(ProviderKind::Anthropic, &api, &r);
        assert!(matches!(e, ProviderError::Stream { .. }), "{e:?}");
        assert!(e.to_string().contains("boom"));
        let openai: serde_json::Value = serde_json::json!({"error":{"message":"x","type":"requests","code":"rate_limit_exceeded"}});
        assert!(matches!(
            from_stream_error(ProviderKind::OpenAi, &openai, &r),
            ProviderError::RateLimited { .. }
        ));
    }

    #[test]
    fn redactor_removes_the_key_and_truncates() {
        let r = Redactor::new(KEY);
        let text = r.clean(&format!("Incorrect API key provided: {KEY}. Try again"));
        assert!(!text.contains(KEY), "{text}");
        assert!(text.contains("[redacted]"));
        let long = "é".repeat(5000);
        let text = r.clean(&long);
        assert!(text.chars().count() <= MAX_MESSAGE_CHARS + 1);
        // A tiny key is not used to mangle text.
        assert_eq!(Redactor::new("a").clean("banana"), "banana");
    }

    #[test]
    fn redactor_removes_the_base_url_credentials() {
        let config = ProviderConfig::new(ProviderKind::OpenAi, KEY)
            .with_base_url("http://proxy-user:hunter2-PW%21@127.0.0.1:9/v1");
        let r = Redactor::for_config(&config);
        let text = r.clean(
            "could not connect to http://proxy-user:hunter2-PW%21@127.0.0.1:9/v1/chat: \
             the upstream said hunter2-PW! and https://x.example/?api_key=abc123",
        );
        for leak in ["hunter2-PW", "abc123", "proxy-user"] {
            assert!(!text.contains(leak), "{leak}: {text}");
        }
        assert!(text.contains("127.0.0.1:9/v1/chat"), "{text}");
    }

    #[test]
    fn no_variant_displays_the_key() {
        let r = Redactor::new(KEY);
        let dirty = format!("echo {KEY}");
        let p = ProviderKind::OpenAi;
        let errors = [
            from_status(p, 401, r.clean(&dirty), None, 1),
            from_status(p, 429, r.clean(&dirty), None, 2),
            from_status(p, 400, r.clean(&dirty), None, 1),
            from_status(p, 500, r.clean(&dirty), None, 3),
            from_stream_error(p, &serde_json::json!({"error": dirty.clone()}), &r),
        ];
        for e in errors {
            assert!(!e.to_string().contains(KEY), "{e}");
            assert!(!format!("{e:?}").contains(KEY), "{e:?}");
        }
    }
}
