//! Configuration: a TOML file (optional) overlaid with environment variables, then validated.
//!
//! Precedence, lowest first: built-in defaults, the TOML file, `OPEN_CLANKER_*` variables, and the
//! provider SDKs' own variables (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`, `OPENAI_API_KEY`,
//! `OPENAI_BASE_URL`). Secrets are never printed: [`Config`]'s `Debug` redacts them.
//!
//! The module is split by job: [`schema`] (the sections and their defaults), [`env`] (the
//! environment overlay), [`load`] (finding and reading the file), [`validate`] (every semantic
//! check, by key path) and `template.toml` (what `config-generate` writes).

use std::fmt;
use std::path::PathBuf;

mod channels;
mod env;
mod load;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

pub use channels::{ChannelsConfig, DiscordConfig, TelegramConfig, TelegramMode};
pub use load::{default_data_dir, from_sources, load, resolve_path};
pub use schema::{
    ApiToken, AuthConfig, ChatConfig, Config, GatewayConfig, LimitsConfig, LogConfig, LogFormat,
    MIN_TOKEN_CHARS, ProviderSection, ProvidersConfig, StoreConfig, TlsConfig, default_model,
};
pub use validate::validate;

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

/// Where the configuration came from, for messages.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub config: Config,
    /// The file read, if any.
    pub path: Option<PathBuf>,
}

/// A commented example configuration, valid as written (`config-generate`).
pub const TEMPLATE: &str = include_str!("template.toml");
