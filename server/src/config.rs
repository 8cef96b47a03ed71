//! Configuration: a TOML file (optional) overlaid with environment variables, then validated.
//!
//! Precedence, lowest first: built-in defaults, the TOML file, `OPEN_CLANKER_*` variables, and the
//! provider SDKs' own variables (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`, `OPENAI_API_KEY`,
//! `OPENAI_BASE_URL`). Secrets are never printed: [`Config`]'s `Debug` redacts them.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use open_clanker_core::{ProviderKind, redact};
use serde::{Deserialize, Serialize};

/// The default gRPC / HTTP port.
pub const DEFAULT_PORT: u16 = 18789;
/// The file looked for in the working directory when no config path is given.
pub const LOCAL_CONFIG_FILE: &str = "open-clanker.toml";

/// A problem found in the configuration, named by its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path (`gateway.listen`) or environment variable name.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why the configuration could not be loaded; every problem found is listed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("invalid configuration{}:\n{}", source_suffix(.source_name), list(.problems))]
    Invalid {
        source_name: Option<String>,
        problems: Vec<Problem>,
    },
}

fn source_suffix(source_name: &Option<String>) -> String {
    source_name
        .as_ref()
        .map(|s| format!(" in {s}"))
        .unwrap_or_default()
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The whole configuration.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub chat: ChatConfig,
    pub providers: ProvidersConfig,
    pub channels: crate::channels::ChannelsConfig,
    pub auth: crate::security::AuthConfig,
    pub tls: crate::security::TlsConfig,
    pub limits: crate::security::LimitsConfig,
    /// USD per million tokens by model, over the built-in table ([`open_clanker_engine::pricing::DEFAULTS`]).
    pub pricing: std::collections::BTreeMap<String, open_clanker_engine::pricing::Price>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("gateway", &self.gateway)
            .field("log", &self.log)
            .field("store", &self.store)
            .field("chat", &self.chat)
            .field("providers", &self.providers)
            .field("channels", &self.channels)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("limits", &self.limits)
            .field("pricing", &self.pricing)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory for the SQLite database; see [`default_data_dir`] when empty.
    pub data_dir: Option<PathBuf>,
    /// A database URL (`sqlite://...` or `postgres://...`); overrides `data_dir`.
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
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

    fn get_mut(&mut self, kind: ProviderKind) -> &mut ProviderSection {
        match kind {
            ProviderKind::Anthropic => &mut self.anthropic,
            ProviderKind::OpenAi => &mut self.openai,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSection {
    /// Prefer the environment variable (`ANTHROPIC_API_KEY` / `OPENAI_API_KEY`) over this.
    pub api_key: Option<String>,
    /// Defaults to the official endpoint; set for proxies and OpenAI-compatible servers.
    pub base_url: Option<String>,
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

    /// The API key, when one is set and not blank.
    pub fn key(&self) -> Option<&str> {
        self.api_key.as_deref().filter(|k| !k.trim().is_empty())
    }
}

impl Default for ProviderSection {
    fn default() -> Self {
        Self::with_model("")
    }
}

impl fmt::Debug for ProviderSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSection")
            .field("api_key", &self.key().map(|_| "<redacted>"))
            .field(
                "base_url",
                &self.base_url.as_deref().map(redact::redact_url),
            )
            .field("model", &self.model)
            .field("max_tokens", &self.max_tokens)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("max_retries", &self.max_retries)
            .field("http2_prior_knowledge", &self.http2_prior_knowledge)
            .field(
                "max_streams_per_connection",
                &self.max_streams_per_connection,
            )
            .finish()
    }
}

/// `OPEN_CLANKER_*` overrides.
#[derive(Debug, Default, Deserialize)]
struct EnvOverrides {
    listen: Option<String>,
    shutdown_grace_secs: Option<u64>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    default_provider: Option<String>,
    system_prompt: Option<String>,
    max_message_chars: Option<usize>,
    anthropic_model: Option<String>,
    openai_model: Option<String>,
    anthropic_http2_prior_knowledge: Option<bool>,
    openai_http2_prior_knowledge: Option<bool>,
    anthropic_max_streams_per_connection: Option<u32>,
    openai_max_streams_per_connection: Option<u32>,
    fallback: Option<String>,
}

/// The official SDKs' variables.
#[derive(Default, Deserialize)]
struct SdkEnv {
    anthropic_api_key: Option<String>,
    anthropic_base_url: Option<String>,
    openai_api_key: Option<String>,
    openai_base_url: Option<String>,
}

/// Where the configuration came from, for messages.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub config: Config,
    /// The file read, if any.
    pub path: Option<PathBuf>,
}

/// Finds the config file: an explicit path (from `--config` or `OPEN_CLANKER_CONFIG`) must exist;
/// otherwise `./open-clanker.toml`, then `$XDG_CONFIG_HOME/open-clanker/config.toml` (or
/// `~/.config/...`) are used when present; with none the built-in defaults apply.
pub fn resolve_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let local = PathBuf::from(LOCAL_CONFIG_FILE);
    if local.is_file() {
        return Some(local);
    }
    let user = config_home().map(|d| d.join("open-clanker").join("config.toml"));
    user.filter(|p| p.is_file())
}

fn config_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
}

/// The data directory used when none is configured: `$XDG_DATA_HOME/open-clanker`, else
/// `~/.local/share/open-clanker`, else `./data`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("open-clanker"))
        .unwrap_or_else(|| PathBuf::from("data"))
}

/// Loads the configuration from `path` (if any) and the process environment, and validates it.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let path = resolve_path(explicit);
    let text = match &path {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
            path: p.clone(),
            message: e.to_string(),
        })?),
        None => None,
    };
    let source_name = path.as_ref().map(|p| p.display().to_string());
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let config = from_sources(text.as_deref(), &vars).map_err(|problems| ConfigError::Invalid {
        source_name,
        problems,
    })?;
    Ok(Loaded { config, path })
}

/// Parses TOML text (if any), applies the given environment, and validates. Pure, for tests.
pub fn from_sources(
    toml_text: Option<&str>,
    env: &[(String, String)],
) -> Result<Config, Vec<Problem>> {
    let mut config = match toml_text {
        Some(text) => parse_toml(text).map_err(|p| vec![p])?,
        None => Config::default(),
    };
    // Empty variables count as unset: `FOO= open-clanker ...` must not blank a setting.
    let env: Vec<(String, String)> = env.iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
    let mut problems = Vec::new();
    // A `[providers.x]` section that names no model keeps the provider's default one.
    for kind in ProviderKind::ALL {
        let section = config.providers.get_mut(kind);
        if section.model.trim().is_empty() {
            section.model = default_model(kind).to_string();
        }
    }
    match envy::prefixed("OPEN_CLANKER_").from_iter::<_, EnvOverrides>(env.iter().cloned()) {
        Ok(o) => apply_overrides(&mut config, o),
        Err(e) => problems.push(Problem {
            key: "environment (OPEN_CLANKER_*)".into(),
            message: e.to_string(),
        }),
    }
    problems.extend(crate::security::apply_env(&mut config, &env));
    match envy::from_iter::<_, SdkEnv>(env.iter().cloned()) {
        Ok(sdk) => apply_sdk_env(&mut config, sdk),
        Err(e) => problems.push(Problem {
            key: "environment".into(),
            message: e.to_string(),
        }),
    }
    problems.extend(crate::channels::apply_env(&mut config, &env));
    problems.extend(validate(&config));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn parse_toml(text: &str) -> Result<Config, Problem> {
    let de = toml::Deserializer::parse(text).map_err(|e| Problem {
        key: "(syntax)".into(),
        message: one_line(&e.to_string()),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        Problem {
            key: if key == "." { "(root)".into() } else { key },
            message: one_line(&e.into_inner().to_string()),
        }
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn apply_overrides(c: &mut Config, o: EnvOverrides) {
    let EnvOverrides {
        listen,
        shutdown_grace_secs,
        log_format,
        log_level,
        data_dir,
        database_url,
        default_provider,
        system_prompt,
        max_message_chars,
        anthropic_model,
        openai_model,
        anthropic_http2_prior_knowledge,
        openai_http2_prior_knowledge,
        anthropic_max_streams_per_connection,
        openai_max_streams_per_connection,
        fallback,
    } = o;
    if let Some(list) = fallback {
        c.chat.fallback = list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    set(&mut c.gateway.listen, listen);
    set(&mut c.gateway.shutdown_grace_secs, shutdown_grace_secs);
    set(&mut c.log.format, log_format);
    set(&mut c.log.level, log_level);
    if data_dir.is_some() {
        c.store.data_dir = data_dir;
    }
    if database_url.is_some() {
        c.store.database_url = database_url;
    }
    set(&mut c.chat.default_provider, default_provider);
    set(&mut c.chat.system_prompt, system_prompt);
    set(&mut c.chat.max_message_chars, max_message_chars);
    set(&mut c.providers.anthropic.model, anthropic_model);
    set(&mut c.providers.openai.model, openai_model);
    set(
        &mut c.providers.anthropic.http2_prior_knowledge,
        anthropic_http2_prior_knowledge,
    );
    set(
        &mut c.providers.openai.http2_prior_knowledge,
        openai_http2_prior_knowledge,
    );
    set(
        &mut c.providers.anthropic.max_streams_per_connection,
        anthropic_max_streams_per_connection,
    );
    set(
        &mut c.providers.openai.max_streams_per_connection,
        openai_max_streams_per_connection,
    );
}

fn apply_sdk_env(c: &mut Config, sdk: SdkEnv) {
    let pairs = [
        (
            ProviderKind::Anthropic,
            sdk.anthropic_api_key,
            sdk.anthropic_base_url,
        ),
        (
            ProviderKind::OpenAi,
            sdk.openai_api_key,
            sdk.openai_base_url,
        ),
    ];
    for (kind, key, url) in pairs {
        let section = c.providers.get_mut(kind);
        if key.is_some() {
            section.api_key = key;
        }
        if url.is_some() {
            section.base_url = url;
        }
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// Every semantic problem of a parsed configuration.
pub fn validate(c: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| {
        problems.push(Problem {
            key: key.into(),
            message,
        })
    };
    if c.gateway.listen.parse::<SocketAddr>().is_err() {
        bad(
            "gateway.listen",
            format!(
                "{:?} is not an IP address with a port, e.g. \"127.0.0.1:{DEFAULT_PORT}\" or \"0.0.0.0:{DEFAULT_PORT}\"",
                c.gateway.listen
            ),
        );
    }
    if c.gateway.shutdown_grace_secs > 3600 {
        bad(
            "gateway.shutdown_grace_secs",
            "must be at most 3600 seconds".into(),
        );
    }
    if let Err(e) = c.log.level.parse::<tracing_subscriber::EnvFilter>() {
        bad(
            "log.level",
            format!("{:?} is not a log filter: {e}", c.log.level),
        );
    }
    if let Some(url) = &c.store.database_url
        && !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
    {
        bad(
            "store.database_url",
            "must start with sqlite: or postgres:// (the value is not shown: it may hold a password)".into(),
        );
    }
    if let Err(e) = c.chat.default_provider.parse::<ProviderKind>() {
        bad("chat.default_provider", e.0);
    }
    if c.chat.max_message_chars == 0 || c.chat.max_message_chars > 1_000_000 {
        bad(
            "chat.max_message_chars",
            "must be between 1 and 1000000".into(),
        );
    }
    if c.chat.history_max_messages > 10_000 {
        bad("chat.history_max_messages", "must be at most 10000".into());
    }
    for kind in ProviderKind::ALL {
        let s = c.providers.get(kind);
        let prefix = format!("providers.{kind}");
        if let Some(url) = &s.base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bad(
                    &format!("{prefix}.base_url"),
                    format!(
                        "{:?} must start with http:// or https://",
                        redact::redact_url(url)
                    ),
                );
            } else if url.contains(['?', '#']) {
                bad(
                    &format!("{prefix}.base_url"),
                    format!(
                        "{:?} must not have a query or a fragment (the API key goes in {})",
                        redact::redact_url(url),
                        kind.api_key_env()
                    ),
                );
            }
        }
        if s.model.trim().is_empty() {
            bad(&format!("{prefix}.model"), "must not be empty".into());
        }
        if s.max_tokens == 0 {
            bad(&format!("{prefix}.max_tokens"), "must be at least 1".into());
        }
        if s.connect_timeout_secs == 0 || s.idle_timeout_secs == 0 {
            bad(
                &format!("{prefix}.connect_timeout_secs / idle_timeout_secs"),
                "must be at least 1 second".into(),
            );
        }
        if s.max_retries > 10 {
            bad(
                &format!("{prefix}.max_retries"),
                "must be at most 10".into(),
            );
        }
        if s.max_streams_per_connection == 0 {
            bad(
                &format!("{prefix}.max_streams_per_connection"),
                "must be at least 1 (answers per HTTP/2 connection to the provider)".into(),
            );
        }
    }
    problems.extend(crate::security::validate(c));
    problems.extend(c.pricing.iter().filter_map(|(model, price)| {
        price.check().err().map(|message| Problem {
            key: format!("pricing.{model:?}"),
            message: message.into(),
        })
    }));
    for (i, entry) in c.chat.fallback.iter().enumerate() {
        let provider = entry.split_once('/').map_or(entry.as_str(), |(p, _)| p);
        if let Err(e) = provider.parse::<ProviderKind>() {
            problems.push(Problem {
                key: format!("chat.fallback[{i}]"),
                message: format!("{}; entries are \"provider\" or \"provider/model\"", e.0),
            });
        }
    }
    problems.extend(crate::telemetry::validate(c));
    problems.extend(crate::channels::validate(c));
    problems
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
                .filter_map(|entry| open_clanker_engine::Fallback::parse(entry))
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

/// A commented example configuration, valid as written (`config-generate`).
pub const TEMPLATE: &str = r#"# Open Clanker configuration.
#
# Every setting is optional: the values shown are the defaults. Environment variables override the
# file: OPEN_CLANKER_LISTEN, OPEN_CLANKER_DATA_DIR, OPEN_CLANKER_DATABASE_URL, OPEN_CLANKER_LOG_FORMAT,
# OPEN_CLANKER_LOG_LEVEL, OPEN_CLANKER_DEFAULT_PROVIDER, OPEN_CLANKER_SYSTEM_PROMPT,
# OPEN_CLANKER_MAX_MESSAGE_CHARS, OPEN_CLANKER_ANTHROPIC_MODEL, OPEN_CLANKER_OPENAI_MODEL,
# OPEN_CLANKER_ANTHROPIC_HTTP2_PRIOR_KNOWLEDGE, OPEN_CLANKER_OPENAI_HTTP2_PRIOR_KNOWLEDGE,
# OPEN_CLANKER_ANTHROPIC_MAX_STREAMS_PER_CONNECTION, OPEN_CLANKER_OPENAI_MAX_STREAMS_PER_CONNECTION,
# and the provider SDKs' own ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, OPENAI_API_KEY, OPENAI_BASE_URL.
# Keep API keys in the environment rather than in this file.

[gateway]
# One port serves gRPC, gRPC-Web and HTTP (GET /health).
listen = "127.0.0.1:18789"
# Seconds open streams get to finish after SIGTERM/SIGINT.
shutdown_grace_secs = 10

[log]
# "human" or "json". RUST_LOG overrides the level.
format = "human"
level = "info"
# Export traces (one span per turn, with store and provider children) to an OTLP/gRPC receiver
# such as an OpenTelemetry Collector; off when unset. OTEL_EXPORTER_OTLP_ENDPOINT wins;
# OTEL_SERVICE_NAME names the service (default "open-clanker").
# otlp_endpoint = "http://127.0.0.1:4317"

[store]
# SQLite database directory (default: $XDG_DATA_HOME/open-clanker or ~/.local/share/open-clanker).
# data_dir = "/var/lib/open-clanker"
# Or a full database URL, e.g. "postgres://user:password@db:5432/open_clanker".
# database_url = "sqlite:///var/lib/open-clanker/open-clanker.db?mode=rwc"

[chat]
# "anthropic" or "openai": used when a request names no provider.
default_provider = "anthropic"
# Sent as the system prompt of every turn; none when empty.
system_prompt = ""
# Longest accepted user message, in characters.
max_message_chars = 32000
# Context sent to the model: at most this many earlier messages and characters (newest kept).
history_max_messages = 50
history_max_chars = 60000
# When the provider fails before the first token (429, 5xx, timeout, broken stream), try these in
# order: "provider" or "provider/model", e.g. ["openai/gpt-4.1-mini"].
fallback = []

[providers.anthropic]
# api_key = "..."              # better: ANTHROPIC_API_KEY
# base_url = "https://api.anthropic.com"
model = "claude-sonnet-4-5"
max_tokens = 4096
connect_timeout_secs = 10
idle_timeout_secs = 120
max_retries = 2
# http2_prior_knowledge = false   # true: HTTP/2 without TLS (h2c) to a base_url that speaks it
# Over HTTP/2, answers streamed at once on one connection before another is opened; keep it at or
# below the provider's concurrent-stream limit (past it, answers wait for a free stream).
max_streams_per_connection = 100

[providers.openai]
# api_key = "..."              # better: OPENAI_API_KEY
# Any OpenAI-compatible server works: vLLM, llama.cpp, Ollama ("http://127.0.0.1:11434/v1").
# base_url = "https://api.openai.com/v1"
model = "gpt-4.1-mini"
max_tokens = 4096
connect_timeout_secs = 10
idle_timeout_secs = 120
max_retries = 2
# http2_prior_knowledge = false   # true: HTTP/2 without TLS (h2c) to a base_url that speaks it
# Over HTTP/2, answers streamed at once on one connection before another is opened; keep it at or
# below the provider's concurrent-stream limit (past it, answers wait for a free stream).
max_streams_per_connection = 100

[channels.telegram]
# Talk to the assistant on Telegram: create a bot with @BotFather and set its token, better in
# TELEGRAM_BOT_TOKEN. Without a token the channel is off.
# bot_token = "123456:ABC-..."
# The Bot API server (OPEN_CLANKER_TELEGRAM_API_URL).
api_url = "https://api.telegram.org"
# Direct messages from people on no allowlist: "pairing" (they get a code the owner approves with
# `open-clanker pairing approve telegram <code>`), "allowlist" (ignored), "open" (everyone is
# answered) or "disabled".
dm_policy = "pairing"
# Telegram user ids always allowed in direct messages (OPEN_CLANKER_TELEGRAM_ALLOW_FROM="1,2").
allow_from = []
# Groups: "allowlist" (only the groups or users in group_allow_from), "open" or "disabled".
group_policy = "allowlist"
group_allow_from = []
# In groups, answer only messages that mention the bot or reply to it.
require_mention = true
# "polling" (getUpdates long polling) or "webhook" (Telegram posts to webhook_url, whose path the
# gateway serves on its own port; put an https proxy in front).
mode = "polling"
# webhook_url = "https://bot.example.com/telegram/<random>"
# webhook_secret = "..."       # better: TELEGRAM_WEBHOOK_SECRET
poll_timeout_secs = 25
# Let Telegram preview the links in answers (OPEN_CLANKER_TELEGRAM_LINK_PREVIEWS). Off: Telegram
# fetches a previewed link, so an answer could send data to any address without a click.
link_previews = false

[channels.discord]
# Talk to the assistant on Discord: create a bot in the Developer Portal (enable the MESSAGE CONTENT
# intent) and set its token, better in DISCORD_BOT_TOKEN. Without a token the channel is off.
# bot_token = "..."
# The API server (OPEN_CLANKER_DISCORD_API_URL); the gateway URL comes from its GET /gateway.
# api_url = "https://discord.com"
# Direct messages from people on no allowlist: "pairing" (they get a code the owner approves with
# `open-clanker pairing approve discord <code>`), "allowlist" (ignored), "open" or "disabled".
dm_policy = "pairing"
# Discord user ids always allowed in direct messages (OPEN_CLANKER_DISCORD_ALLOW_FROM="1,2").
allow_from = []
# Guild channels: "allowlist" (only the channel or user ids in group_allow_from), "open" or "disabled".
group_policy = "allowlist"
group_allow_from = []
# In guild channels, answer only messages that mention the bot or reply to it.
require_mention = true
# Let Discord show previews (embeds) of the links in answers (OPEN_CLANKER_DISCORD_LINK_PREVIEWS).
# Off: answers are sent with SUPPRESS_EMBEDS, since Discord fetches every previewed link.
link_previews = false

[auth]
# Once any token is set, every API call (gRPC, gRPC-Web, /v1/*) needs
# "authorization: Bearer <token>"; /health and the gRPC health service stay open. Tokens are
# required when listening beyond loopback. Better than this file:
# OPEN_CLANKER_API_TOKENS="laptop:<token>,ci:<token>" (several, to rotate without downtime).
# [[auth.tokens]]
# name = "laptop"
# token = "<openssl rand -hex 32>"
# Listen beyond loopback without tokens anyway (not recommended).
allow_unauthenticated = false
# Browser origins allowed to use gRPC-Web from other sites ("*" for any); the gateway's own
# page needs none.
cors_allowed_origins = []
# Require a token for GET /metrics too.
protect_metrics = false
# Without tokens, only requests addressed to localhost, an IP address or one of these names are
# served (against DNS rebinding), e.g. ["gateway.lan"].
allowed_hosts = []

[tls]
# Serve the port over TLS (both files, PEM).
# cert_file = "/etc/open-clanker/tls.crt"
# key_file = "/etc/open-clanker/tls.key"

[limits]
# Largest decoded gRPC message or HTTP body, in bytes.
max_request_bytes = 1048576
# Turns running at once across every entry point.
max_concurrent_turns = 16384
# Turns one caller (API token, remote address, chat sender) may run at once; 0 = a quarter of
# max_concurrent_turns.
max_concurrent_turns_per_caller = 0
# HTTP/2 streams per connection.
max_streams_per_connection = 1024
# Turns per minute per API token (or per remote address without tokens); 0 = off.
turns_per_minute = 60
# Spend caps in USD (0 = none): a turn over a cap is refused before any provider call.
max_usd_per_session = 0.0
max_usd_per_day = 0.0

[pricing]
# USD per million tokens, over the built-in table of common models; a model matches its name or
# the longest entry it starts with. Unpriced models cost 0.
# "llama3.2" = { input_per_mtok = 0.0, output_per_mtok = 0.0 }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn template_parses_to_the_defaults() {
        let from_template = from_sources(Some(TEMPLATE), &[]).unwrap();
        let defaults = Config::default();
        assert_eq!(
            toml::to_string(&from_template).unwrap(),
            toml::to_string(&defaults).unwrap()
        );
    }

    #[test]
    fn no_file_gives_defaults() {
        let c = from_sources(None, &[]).unwrap();
        assert_eq!(c.gateway.listen, "127.0.0.1:18789");
        assert_eq!(c.default_provider(), ProviderKind::Anthropic);
        assert!(c.providers.anthropic.key().is_none());
    }

    #[test]
    fn environment_overrides_file() {
        let c = from_sources(
            Some("[gateway]\nlisten = \"127.0.0.1:1\"\n[providers.openai]\nmodel = \"a\"\n"),
            &env(&[
                ("OPEN_CLANKER_LISTEN", "0.0.0.0:9000"),
                ("OPEN_CLANKER_API_TOKENS", "ops:0123456789abcdef0123"),
                ("OPENAI_API_KEY", "sk-secret"),
                ("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
                ("OPEN_CLANKER_OPENAI_MODEL", "llama"),
                ("OPEN_CLANKER_OPENAI_HTTP2_PRIOR_KNOWLEDGE", "true"),
                ("OPEN_CLANKER_LOG_FORMAT", "json"),
                ("ANTHROPIC_API_KEY", ""),
            ]),
        )
        .unwrap();
        assert_eq!(c.gateway.listen, "0.0.0.0:9000");
        assert_eq!(c.providers.openai.key(), Some("sk-secret"));
        assert_eq!(c.providers.openai.model, "llama");
        assert!(c.providers.openai.http2_prior_knowledge);
        assert!(!c.providers.anthropic.http2_prior_knowledge);
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(
            c.providers.anthropic.key().is_none(),
            "empty variable is unset"
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-secret"), "{shown}");
        assert!(!shown.contains("0123456789abcdef0123"), "{shown}");
    }

    #[test]
    fn every_semantic_problem_is_listed_with_its_key() {
        let text = r#"
[gateway]
listen = "nowhere"
[chat]
default_provider = "gemini"
max_message_chars = 0
[providers.openai]
base_url = "ftp://x"
max_tokens = 0
"#;
        let problems = from_sources(Some(text), &[]).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "gateway.listen",
            "chat.default_provider",
            "chat.max_message_chars",
            "providers.openai.base_url",
            "providers.openai.max_tokens",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }

    #[test]
    fn max_streams_per_connection_from_file_and_environment() {
        let c = from_sources(None, &[]).unwrap();
        assert_eq!(c.providers.anthropic.max_streams_per_connection, 100);
        assert_eq!(c.providers.openai.max_streams_per_connection, 100);
        let c = from_sources(
            Some("[providers.anthropic]\nmax_streams_per_connection = 50\n"),
            &env(&[("OPEN_CLANKER_OPENAI_MAX_STREAMS_PER_CONNECTION", "8")]),
        )
        .unwrap();
        assert_eq!(c.providers.anthropic.max_streams_per_connection, 50);
        assert_eq!(c.providers.openai.max_streams_per_connection, 8);
        let c = from_sources(
            Some("[providers.anthropic]\nmax_streams_per_connection = 50\n"),
            &env(&[("OPEN_CLANKER_ANTHROPIC_MAX_STREAMS_PER_CONNECTION", "250")]),
        )
        .unwrap();
        assert_eq!(
            c.providers.anthropic.max_streams_per_connection, 250,
            "the environment wins"
        );
    }

    #[test]
    fn max_streams_per_connection_must_be_positive() {
        let key = "providers.openai.max_streams_per_connection";
        for text in [
            "[providers.openai]\nmax_streams_per_connection = 0\n",
            "[providers.openai]\nmax_streams_per_connection = -1\n",
        ] {
            let problems = from_sources(Some(text), &[]).unwrap_err();
            assert_eq!(problems.len(), 1, "{text}: {problems:?}");
            assert_eq!(problems[0].key, key, "{text}: {problems:?}");
        }
        let problems = from_sources(
            None,
            &env(&[("OPEN_CLANKER_ANTHROPIC_MAX_STREAMS_PER_CONNECTION", "0")]),
        )
        .unwrap_err();
        assert_eq!(
            problems[0].key, "providers.anthropic.max_streams_per_connection",
            "{problems:?}"
        );
        assert!(problems[0].message.contains("at least 1"), "{problems:?}");
        let problems = from_sources(
            None,
            &env(&[("OPEN_CLANKER_ANTHROPIC_MAX_STREAMS_PER_CONNECTION", "-5")]),
        )
        .unwrap_err();
        assert!(
            problems[0]
                .message
                .to_ascii_lowercase()
                .contains("max_streams_per_connection"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_partial_provider_section_keeps_the_default_model() {
        let c = from_sources(Some("[providers.anthropic]\nmax_retries = 0\n"), &[]).unwrap();
        assert_eq!(c.providers.anthropic.model, "claude-sonnet-4-5");
        assert_eq!(c.providers.anthropic.max_retries, 0);
        assert_eq!(c.providers.anthropic.max_tokens, 4096);
    }

    #[test]
    fn type_errors_and_unknown_keys_name_the_key() {
        let problems =
            from_sources(Some("[gateway]\nshutdown_grace_secs = \"soon\"\n"), &[]).unwrap_err();
        assert_eq!(
            problems[0].key, "gateway.shutdown_grace_secs",
            "{problems:?}"
        );

        let problems = from_sources(Some("[chat]\nsystem_promt = \"hi\"\n"), &[]).unwrap_err();
        assert!(problems[0].message.contains("system_promt"), "{problems:?}");

        let problems = from_sources(Some("[gateway\nlisten="), &[]).unwrap_err();
        assert_eq!(problems[0].key, "(syntax)");
    }

    #[test]
    fn bad_environment_values_are_reported() {
        let problems =
            from_sources(None, &env(&[("OPEN_CLANKER_SHUTDOWN_GRACE_SECS", "soon")])).unwrap_err();
        assert!(problems[0].key.contains("OPEN_CLANKER"), "{problems:?}");

        // A switch that is neither true nor false names its variable.
        let problems = from_sources(
            None,
            &env(&[("OPEN_CLANKER_ANTHROPIC_HTTP2_PRIOR_KNOWLEDGE", "maybe")]),
        )
        .unwrap_err();
        let said = format!("{} {}", problems[0].key, problems[0].message).to_ascii_uppercase();
        assert!(
            said.contains("ANTHROPIC_HTTP2_PRIOR_KNOWLEDGE"),
            "{problems:?}"
        );
    }

    #[test]
    fn database_url_problem_does_not_echo_the_url() {
        let problems = from_sources(
            None,
            &env(&[("OPEN_CLANKER_DATABASE_URL", "mysql://u:hunter2@h/db")]),
        )
        .unwrap_err();
        assert!(!problems[0].message.contains("hunter2"));
    }
}
