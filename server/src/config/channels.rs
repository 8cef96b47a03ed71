//! `[channels.telegram]` and `[channels.discord]`.

use serde::{Deserialize, Deserializer};

use open_clanker_channels::{DmPolicy, GroupPolicy};
use open_clanker_core::redact::RedactedUrl;
use open_clanker_core::{ExposeSecret, SecretString};

/// `[channels]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    pub telegram: TelegramConfig,
    pub discord: DiscordConfig,
}

/// How Telegram updates arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    #[default]
    Polling,
    Webhook,
}

/// User or chat ids, written as numbers or strings (`[123, "-100456"]`).
fn ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(i64),
        Text(String),
    }
    Ok(Vec::<Id>::deserialize(d)?
        .into_iter()
        .map(|id| match id {
            Id::Number(n) => n.to_string(),
            Id::Text(s) => s.trim().to_owned(),
        })
        .collect())
}

/// `[channels.telegram]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramConfig {
    /// From @BotFather; better in `TELEGRAM_BOT_TOKEN`. No token: the channel is off.
    pub bot_token: Option<SecretString>,
    /// The Bot API server.
    pub api_url: RedactedUrl,
    /// Direct messages from unknown senders: "pairing", "allowlist", "open" or "disabled".
    pub dm_policy: DmPolicy,
    /// Telegram user ids always allowed in direct messages.
    #[serde(deserialize_with = "ids")]
    pub allow_from: Vec<String>,
    /// Groups: "allowlist", "open" or "disabled".
    pub group_policy: GroupPolicy,
    /// Group chat ids (or user ids) answered in groups.
    #[serde(deserialize_with = "ids")]
    pub group_allow_from: Vec<String>,
    /// In groups, answer only when mentioned or replied to.
    pub require_mention: bool,
    /// "polling" or "webhook".
    pub mode: TelegramMode,
    /// Webhook mode: the public https URL Telegram posts to; its path is served on the gateway's port.
    pub webhook_url: Option<String>,
    /// Webhook mode: the secret Telegram sends back; better in `TELEGRAM_WEBHOOK_SECRET`.
    pub webhook_secret: Option<SecretString>,
    /// Seconds one long poll (`getUpdates`) waits for updates.
    pub poll_timeout_secs: u64,
    /// Let Telegram preview the links in answers (it fetches them, unclicked).
    pub link_previews: bool,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        Self {
            bot_token: None,
            api_url: open_clanker_channels::telegram::DEFAULT_API_URL.into(),
            dm_policy: DmPolicy::Pairing,
            allow_from: Vec::new(),
            group_policy: GroupPolicy::Allowlist,
            group_allow_from: Vec::new(),
            require_mention: true,
            mode: TelegramMode::Polling,
            webhook_url: None,
            webhook_secret: None,
            poll_timeout_secs: 25,
            link_previews: false,
        }
    }
}

impl TelegramConfig {
    /// The token, when set and not blank.
    pub fn token(&self) -> Option<&str> {
        self.bot_token
            .as_ref()
            .map(|t| t.expose_secret().trim())
            .filter(|t| !t.is_empty())
    }
}

/// `[channels.discord]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordConfig {
    /// From the Developer Portal; better in `DISCORD_BOT_TOKEN`. No token: the channel is off.
    pub bot_token: Option<SecretString>,
    /// The REST API base (tests point it at a stand-in); `https://discord.com` when unset.
    pub api_url: Option<RedactedUrl>,
    /// Direct messages from unknown senders: "pairing", "allowlist", "open" or "disabled".
    pub dm_policy: DmPolicy,
    /// Discord user ids always allowed in direct messages.
    #[serde(deserialize_with = "ids")]
    pub allow_from: Vec<String>,
    /// Guild channels: "allowlist", "open" or "disabled".
    pub group_policy: GroupPolicy,
    /// Guild channel ids (or user ids) answered in guilds.
    #[serde(deserialize_with = "ids")]
    pub group_allow_from: Vec<String>,
    /// In guild channels, answer only when mentioned or replied to.
    pub require_mention: bool,
    /// Let Discord show previews (embeds) of the links in answers (it fetches them, unclicked).
    pub link_previews: bool,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        Self {
            bot_token: None,
            api_url: None,
            dm_policy: DmPolicy::Pairing,
            allow_from: Vec::new(),
            group_policy: GroupPolicy::Allowlist,
            group_allow_from: Vec::new(),
            require_mention: true,
            link_previews: false,
        }
    }
}

impl DiscordConfig {
    /// The token, when set and not blank.
    pub fn token(&self) -> Option<&str> {
        self.bot_token
            .as_ref()
            .map(|t| t.expose_secret().trim())
            .filter(|t| !t.is_empty())
    }
}
