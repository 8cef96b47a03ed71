//! What the engine is told by whoever builds it (the server, from its config): the providers it
//! may call and the rules it runs turns by. The engine reads no config file of its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use open_clanker_core::{ProviderKind, UnknownValue};
use open_clanker_providers::Provider;

use crate::pricing::Price;

/// One configured provider.
pub struct ProviderEntry {
    pub client: Arc<dyn Provider>,
    pub default_model: String,
    pub max_tokens: u32,
}

/// The rules turns run by.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The provider of a turn that names none.
    pub default_provider: ProviderKind,
    /// Sent as the system prompt when the caller sends none; blank means none.
    pub system_prompt: String,
    /// Longest accepted message, in characters.
    pub max_message_chars: usize,
    /// How many earlier messages of a session are read for the context.
    pub history_max_messages: u32,
    /// How many characters of earlier messages the context may hold.
    pub history_max_chars: usize,
    /// Turns running at once across all callers.
    pub max_concurrent_turns: usize,
    /// Turns one caller may run at once (at least 1).
    pub max_concurrent_turns_per_caller: usize,
    /// Turns a chat sender may start per minute; 0 means no limit. (API callers are limited per
    /// request at the door, before the engine.)
    pub turns_per_minute: u32,
    /// Who takes a turn over when its provider fails before the first token, in order.
    pub fallback: Vec<Fallback>,
    /// USD per million tokens by model, over the built-in table ([`crate::pricing::DEFAULTS`]).
    pub prices: BTreeMap<String, Price>,
    /// Spend caps in USD; 0 or less means none.
    pub max_usd_per_session: f64,
    pub max_usd_per_day: f64,
}

/// One entry of the fallback chain: a provider, and a model other than its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub provider: ProviderKind,
    pub model: Option<String>,
}

impl Fallback {
    /// `provider` or `provider/model` (a blank model means the provider's default). The one
    /// reading of a `chat.fallback` entry: config validation reports its error, the engine
    /// keeps what it returns.
    pub fn parse(entry: &str) -> Result<Self, UnknownValue> {
        let (p, m) = match entry.split_once('/') {
            Some((p, m)) => (p, Some(m.trim().to_string()).filter(|m| !m.is_empty())),
            None => (entry, None),
        };
        Ok(Self {
            provider: p.parse::<ProviderKind>()?,
            model: m,
        })
    }
}
