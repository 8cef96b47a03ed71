//! The configuration's sections, their defaults, and what the rest of the gateway reads from
//! them. Secrets are [`SecretString`]s: a `Debug` of any section never shows one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use open_clanker_core::redact::RedactedUrl;
use open_clanker_core::{ExposeSecret, ProviderKind, SecretString};
use serde::Deserialize;

use super::{DEFAULT_PORT, default_data_dir};

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub chat: ChatConfig,
    pub providers: ProvidersConfig,
    pub channels: super::ChannelsConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    /// USD per million tokens by model, over the built-in table ([`open_clanker_engine::pricing::DEFAULTS`]).
    pub pricing: std::collections::BTreeMap<String, open_clanker_engine::pricing::Price>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on for gRPC, gRPC-Web and HTTP.
    pub listen: String,
    /// Seconds open streams get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: format!("127.0.0.1:{DEFAULT_PORT}"),
            shutdown_grace_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// "human" or "json".
    pub format: LogFormat,
    /// A tracing filter such as "info" or "open_clanker=debug"; `RUST_LOG` wins when set.
    pub level: String,
    /// OTLP/gRPC receiver for traces, e.g. "http://127.0.0.1:4317"; traces are off when unset.
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` win when set.
    pub otlp_endpoint: Option<String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".into(),
            otlp_endpoint: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory for the SQLite database; see [`default_data_dir`] when empty.
    pub data_dir: Option<PathBuf>,
    /// A database URL (`sqlite://...` or `postgres://...`); overrides `data_dir`.
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Provider used when a request names none: "anthropic" or "openai".
    pub default_provider: String,
    /// System prompt sent with every turn; none when empty.
    pub system_prompt: String,
    /// Longest accepted user message, in characters.
    pub max_message_chars: usize,
    /// At most this many earlier messages are sent as context.
    pub history_max_messages: u32,
    /// Earlier messages are sent as context up to this many characters in total (newest first).
    pub history_max_chars: usize,
    /// Where a turn goes when its provider fails before the first token (429, 5xx, timeout,
    /// broken stream): "provider" or "provider/model" entries, tried in order.
    pub fallback: Vec<String>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            default_provider: "anthropic".into(),
            system_prompt: String::new(),
            max_message_chars: 32_000,
            history_max_messages: 50,
            history_max_chars: 60_000,
            fallback: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    pub anthropic: ProviderSection,
    pub openai: ProviderSection,
}

/// The model a provider uses when the config names none.
pub fn default_model(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Anthropic => "claude-sonnet-4-5",
        ProviderKind::OpenAi => "gpt-4.1-mini",
    }
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        Self {
            anthropic: ProviderSection::with_model(default_model(ProviderKind::Anthropic)),
            openai: ProviderSection::with_model(default_model(ProviderKind::OpenAi)),
        }
    }
}

impl ProvidersConfig {
    pub fn get(&self, kind: ProviderKind) -> &ProviderSection {
        match kind {
            ProviderKind::Anthropic => &self.anthropic,
            ProviderKind::OpenAi => &self.openai,
        }
    }

    pub(super) fn get_mut(&mut self, kind: ProviderKind) -> &mut ProviderSection {
        match kind {
            ProviderKind::Anthropic => &mut self.anthropic,
            ProviderKind::OpenAi => &mut self.openai,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSection {
    /// Prefer the environment variable (`ANTHROPIC_API_KEY` / `OPENAI_API_KEY`) over this.
    pub api_key: Option<SecretString>,
    /// Defaults to the official endpoint; set for proxies and OpenAI-compatible servers.
    pub base_url: Option<RedactedUrl>,
    /// Model used when a request names none.
    pub model: String,
    /// Upper bound on the answer's length, in tokens.
    pub max_tokens: u32,
    /// Seconds to wait for a connection.
    pub connect_timeout_secs: u64,
    /// Seconds of silence from the provider after which the answer is abandoned.
    pub idle_timeout_secs: u64,
    /// Retries on 429, 5xx and connection errors before the answer starts.
    pub max_retries: u32,
    /// HTTP/2 without negotiation (h2c) to a `base_url` known to speak it; HTTPS negotiates
    /// HTTP/2 by itself.
    pub http2_prior_knowledge: bool,
    /// Answers streamed at once over one HTTP/2 connection to the provider before another
    /// connection is opened (keep it at or below the server's concurrent-stream limit).
    pub max_streams_per_connection: u32,
}

impl ProviderSection {
    fn with_model(model: &str) -> Self {
        Self {
            api_key: None,
            base_url: None,
            model: model.into(),
            max_tokens: 4096,
            connect_timeout_secs: 10,
            idle_timeout_secs: 120,
            max_retries: 2,
            http2_prior_knowledge: false,
            max_streams_per_connection:
                open_clanker_providers::ProviderConfig::DEFAULT_MAX_STREAMS_PER_CONNECTION,
        }
    }

    /// The base URL the provider is reached at: `base_url`, or the official endpoint.
    pub fn url(&self, kind: ProviderKind) -> &str {
        self.base_url.as_deref().unwrap_or(
            open_clanker_providers::ProviderConfig::default_base_url(kind),
        )
    }

    /// The API key, when one is set and not blank.
    pub fn key(&self) -> Option<&str> {
        self.api_key
            .as_ref()
            .map(|k| k.expose_secret().as_str())
            .filter(|k| !k.trim().is_empty())
    }
}

impl Default for ProviderSection {
    fn default() -> Self {
        Self::with_model("")
    }
}

impl Config {
    pub fn listen_addr(&self) -> SocketAddr {
        self.gateway
            .listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))
    }

    /// What the turn engine runs by.
    pub fn engine_settings(&self) -> open_clanker_engine::Settings {
        open_clanker_engine::Settings {
            default_provider: self.default_provider(),
            system_prompt: self.chat.system_prompt.clone(),
            max_message_chars: self.chat.max_message_chars,
            history_max_messages: self.chat.history_max_messages,
            history_max_chars: self.chat.history_max_chars,
            max_concurrent_turns: self.limits.max_concurrent_turns,
            max_concurrent_turns_per_caller: self.limits.turns_per_caller(),
            turns_per_minute: self.limits.turns_per_minute,
            // Unknown providers are refused by validation.
            fallback: self
                .chat
                .fallback
                .iter()
                .filter_map(|entry| open_clanker_engine::Fallback::parse(entry).ok())
                .collect(),
            prices: self.pricing.clone(),
            max_usd_per_session: self.limits.max_usd_per_session,
            max_usd_per_day: self.limits.max_usd_per_day,
        }
    }

    pub fn default_provider(&self) -> ProviderKind {
        self.chat
            .default_provider
            .parse()
            .unwrap_or(ProviderKind::Anthropic)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.store.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.gateway.shutdown_grace_secs)
    }
}

/// Shortest accepted API token.
pub const MIN_TOKEN_CHARS: usize = 16;

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Named bearer tokens; several at once so one can be rotated without downtime. Prefer
    /// `OPEN_CLANKER_API_TOKENS="name:token,name2:token2"` over writing them here.
    pub tokens: Vec<ApiToken>,
    /// Listen beyond loopback without tokens anyway (not recommended; logged loudly).
    pub allow_unauthenticated: bool,
    /// Browser origins allowed to call the gateway through gRPC-Web (CORS), e.g.
    /// "https://chat.example.com"; "*" allows any. The gateway's own page needs no entry.
    pub cors_allowed_origins: Vec<String>,
    /// Require a token for `GET /metrics` too.
    pub protect_metrics: bool,
    /// Host names (besides `localhost` and IP addresses) that requests may name in `Host` when
    /// no tokens are set, e.g. "gateway.lan". Other names are refused (421): a web page must not
    /// reach a token-less gateway by pointing its own name at this address (DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Shown in logs and metrics instead of the token.
    pub name: String,
    pub token: SecretString,
}

/// `[tls]`: serve the port over TLS (gRPC over h2, gRPC-Web and HTTP over TLS).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest accepted request: decoded gRPC message or HTTP body, in bytes.
    pub max_request_bytes: usize,
    /// Turns running at once across every entry point; more are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent_turns: usize,
    /// Turns one caller (API token, remote address, chat sender) may run at once, so that one
    /// cannot take the whole budget; 0 = a quarter of `max_concurrent_turns`. The owner's
    /// loopback calls without tokens are not limited by it.
    pub max_concurrent_turns_per_caller: usize,
    /// HTTP/2 streams one connection may have open at once.
    pub max_streams_per_connection: u32,
    /// Turns a caller (API token, or the peer address of an unauthenticated remote caller) may
    /// start per minute; 0 turns the limit off. Loopback callers without tokens are not limited.
    pub turns_per_minute: u32,
    /// Spend cap per session in USD (0 = none): a turn in a session that has spent this much is
    /// refused with RESOURCE_EXHAUSTED before any provider call.
    pub max_usd_per_session: f64,
    /// Spend cap per UTC day in USD across all sessions (0 = none).
    pub max_usd_per_day: f64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 1024 * 1024,
            max_concurrent_turns: 16_384,
            max_concurrent_turns_per_caller: 0,
            max_streams_per_connection: 1024,
            turns_per_minute: 60,
            max_usd_per_session: 0.0,
            max_usd_per_day: 0.0,
        }
    }
}

impl LimitsConfig {
    /// The effective per-caller share of the concurrent-turn budget.
    pub fn turns_per_caller(&self) -> usize {
        match self.max_concurrent_turns_per_caller {
            0 => open_clanker_engine::shares::default_per_caller(self.max_concurrent_turns),
            n => n,
        }
    }
}
