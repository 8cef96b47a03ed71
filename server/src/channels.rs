//! The chat channels (Telegram and Discord) as gateway services: their configuration
//! (`[channels.*]` and the environment), and starting and stopping them beside the gRPC server.
//!
//! A channel whose token is absent is simply off. One that fails (a rejected token, an unreachable
//! API) logs one clear error, shows it in `GetStatus`, and the rest of the gateway keeps serving.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use open_clanker_channels::discord::{self, Discord, DiscordSettings};
use open_clanker_channels::relay::RelayConfig;
use open_clanker_channels::telegram::{self, Mode, Telegram, TelegramSettings};
use open_clanker_channels::{
    AccessPolicy, ChannelContext, DmPolicy, GroupPolicy, Platform, StatusBoard,
};
use open_clanker_core::{AccessStore, ChatBackend, SecretString, redact};
use serde::{Deserialize, Deserializer, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, Problem};
use crate::engine::Engine;

/// `[channels]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    pub telegram: TelegramConfig,
    pub discord: DiscordConfig,
}

/// How Telegram updates arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramConfig {
    /// From @BotFather; better in `TELEGRAM_BOT_TOKEN`. No token: the channel is off.
    pub bot_token: Option<String>,
    /// The Bot API server.
    pub api_url: String,
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
    pub webhook_secret: Option<String>,
    /// Seconds one long poll (`getUpdates`) waits for updates.
    pub poll_timeout_secs: u64,
    /// Let Telegram preview the links in answers (it fetches them, unclicked).
    pub link_previews: bool,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        Self {
            bot_token: None,
            api_url: telegram::DEFAULT_API_URL.to_owned(),
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
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }
}

impl fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("bot_token", &self.token().map(|_| "<redacted>"))
            .field("api_url", &redact::redact_url(&self.api_url))
            .field("dm_policy", &self.dm_policy)
            .field("allow_from", &self.allow_from)
            .field("group_policy", &self.group_policy)
            .field("group_allow_from", &self.group_allow_from)
            .field("require_mention", &self.require_mention)
            .field("mode", &self.mode)
            .field("webhook_url", &self.webhook_url)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("poll_timeout_secs", &self.poll_timeout_secs)
            .field("link_previews", &self.link_previews)
            .finish()
    }
}

/// `[channels.discord]`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordConfig {
    /// From the Developer Portal; better in `DISCORD_BOT_TOKEN`. No token: the channel is off.
    pub bot_token: Option<String>,
    /// The REST API base (tests point it at a stand-in); `https://discord.com` when unset.
    pub api_url: Option<String>,
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
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }
}

impl fmt::Debug for DiscordConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordConfig")
            .field("bot_token", &self.token().map(|_| "<redacted>"))
            .field("api_url", &self.api_url.as_deref().map(redact::redact_url))
            .field("dm_policy", &self.dm_policy)
            .field("allow_from", &self.allow_from)
            .field("group_policy", &self.group_policy)
            .field("group_allow_from", &self.group_allow_from)
            .field("require_mention", &self.require_mention)
            .field("link_previews", &self.link_previews)
            .finish()
    }
}

/// The channels' environment variables.
#[derive(Default, Deserialize)]
struct ChannelEnv {
    telegram_bot_token: Option<String>,
    telegram_webhook_secret: Option<String>,
    discord_bot_token: Option<String>,
    open_clanker_telegram_api_url: Option<String>,
    open_clanker_telegram_mode: Option<String>,
    open_clanker_telegram_dm_policy: Option<String>,
    open_clanker_telegram_allow_from: Option<String>,
    open_clanker_telegram_webhook_url: Option<String>,
    open_clanker_telegram_link_previews: Option<bool>,
    open_clanker_discord_api_url: Option<String>,
    open_clanker_discord_dm_policy: Option<String>,
    open_clanker_discord_allow_from: Option<String>,
    open_clanker_discord_link_previews: Option<bool>,
}

/// Parses a config word (`"pairing"`) the way the file does.
fn word<T: serde::de::DeserializeOwned>(
    var: &str,
    value: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match serde_json::from_value(serde_json::Value::String(value.trim().to_ascii_lowercase())) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(Problem {
                key: var.to_owned(),
                message: e.to_string(),
            });
            None
        }
    }
}

fn id_list(value: &str) -> Vec<String> {
    value
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Applies `TELEGRAM_BOT_TOKEN`, `TELEGRAM_WEBHOOK_SECRET`, `DISCORD_BOT_TOKEN` and the
/// `OPEN_CLANKER_TELEGRAM_*` / `OPEN_CLANKER_DISCORD_*` variables (empty ones already removed).
pub fn apply_env(config: &mut Config, env: &[(String, String)]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let e: ChannelEnv = match envy::from_iter(env.iter().cloned()) {
        Ok(e) => e,
        Err(err) => {
            problems.push(Problem {
                key: "environment (channels)".into(),
                message: err.to_string(),
            });
            return problems;
        }
    };
    let tg = &mut config.channels.telegram;
    if e.telegram_bot_token.is_some() {
        tg.bot_token = e.telegram_bot_token;
    }
    if e.telegram_webhook_secret.is_some() {
        tg.webhook_secret = e.telegram_webhook_secret;
    }
    if let Some(url) = e.open_clanker_telegram_api_url {
        tg.api_url = url;
    }
    if let Some(url) = e.open_clanker_telegram_webhook_url {
        tg.webhook_url = Some(url);
    }
    if let Some(m) = e.open_clanker_telegram_mode
        && let Some(m) = word("OPEN_CLANKER_TELEGRAM_MODE", &m, &mut problems)
    {
        tg.mode = m;
    }
    if let Some(p) = e.open_clanker_telegram_dm_policy
        && let Some(p) = word("OPEN_CLANKER_TELEGRAM_DM_POLICY", &p, &mut problems)
    {
        tg.dm_policy = p;
    }
    if let Some(list) = e.open_clanker_telegram_allow_from {
        tg.allow_from = id_list(&list);
    }
    if let Some(on) = e.open_clanker_telegram_link_previews {
        tg.link_previews = on;
    }
    let dc = &mut config.channels.discord;
    if e.discord_bot_token.is_some() {
        dc.bot_token = e.discord_bot_token;
    }
    if e.open_clanker_discord_api_url.is_some() {
        dc.api_url = e.open_clanker_discord_api_url;
    }
    if let Some(p) = e.open_clanker_discord_dm_policy
        && let Some(p) = word("OPEN_CLANKER_DISCORD_DM_POLICY", &p, &mut problems)
    {
        dc.dm_policy = p;
    }
    if let Some(list) = e.open_clanker_discord_allow_from {
        dc.allow_from = id_list(&list);
    }
    if let Some(on) = e.open_clanker_discord_link_previews {
        dc.link_previews = on;
    }
    problems
}

fn http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Every problem of the `[channels]` section, by key path.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| {
        problems.push(Problem {
            key: key.into(),
            message,
        })
    };
    let tg = &config.channels.telegram;
    if !http_url(&tg.api_url) {
        bad(
            "channels.telegram.api_url",
            format!(
                "{:?} must start with http:// or https://",
                redact::redact_url(&tg.api_url)
            ),
        );
    }
    if let Some(token) = tg.token()
        && (token.chars().any(char::is_whitespace) || !token.contains(':'))
    {
        bad(
            "channels.telegram.bot_token",
            "does not look like a bot token from @BotFather (\"123456:ABC-...\"); the value is not shown".into(),
        );
    }
    for (key, list) in [
        ("channels.telegram.allow_from", &tg.allow_from),
        ("channels.telegram.group_allow_from", &tg.group_allow_from),
    ] {
        if let Some(id) = list.iter().find(|id| id.parse::<i64>().is_err()) {
            bad(key, format!("{id:?} is not a numeric Telegram id"));
        }
    }
    if tg.poll_timeout_secs == 0 || tg.poll_timeout_secs > 50 {
        bad(
            "channels.telegram.poll_timeout_secs",
            "must be between 1 and 50".into(),
        );
    }
    if tg.mode == TelegramMode::Webhook {
        match tg.webhook_url.as_deref() {
            None | Some("") => bad(
                "channels.telegram.webhook_url",
                "is required in webhook mode (the public https URL Telegram posts to)".into(),
            ),
            Some(url) if !http_url(url) => bad(
                "channels.telegram.webhook_url",
                format!(
                    "{:?} must start with https:// (or http:// behind a proxy)",
                    redact::redact_url(url)
                ),
            ),
            Some(url) => {
                let path = url.splitn(4, '/').nth(3).unwrap_or("");
                if path.trim_matches('/').is_empty() {
                    bad(
                        "channels.telegram.webhook_url",
                        "needs a path (e.g. https://bot.example.com/telegram/<random>): it is served on the gateway's port".into(),
                    );
                }
            }
        }
        let secret = tg.webhook_secret.as_deref().unwrap_or("");
        if secret.is_empty()
            || secret.len() > 256
            || !secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bad(
                "channels.telegram.webhook_secret",
                "webhook mode needs a secret of 1-256 characters A-Z, a-z, 0-9, _ or - (TELEGRAM_WEBHOOK_SECRET)".into(),
            );
        }
    }
    let dc = &config.channels.discord;
    if let Some(url) = &dc.api_url
        && !http_url(url)
    {
        bad(
            "channels.discord.api_url",
            format!(
                "{:?} must start with http:// or https://",
                redact::redact_url(url)
            ),
        );
    }
    problems
}

/// The running channels.
pub struct Channels {
    board: StatusBoard,
    cancel: CancellationToken,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
    /// The channels' routes on the gateway's port (the Telegram webhook).
    routes: Vec<axum::Router>,
}

impl fmt::Debug for Channels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channels")
            .field("status", &self.board.snapshot())
            .finish_non_exhaustive()
    }
}

/// The Telegram settings from the configuration, when a token is set.
pub fn telegram_settings(c: &TelegramConfig) -> Option<TelegramSettings> {
    let token = SecretString::new(c.token()?.to_owned());
    let mode = match c.mode {
        TelegramMode::Polling => Mode::Polling {
            timeout: Duration::from_secs(c.poll_timeout_secs),
        },
        TelegramMode::Webhook => Mode::Webhook {
            url: c.webhook_url.clone().unwrap_or_default(),
            secret: c.webhook_secret.clone().unwrap_or_default(),
        },
    };
    Some(TelegramSettings {
        token,
        api_url: c.api_url.clone(),
        access: AccessPolicy {
            dm: c.dm_policy,
            allow_from: c.allow_from.clone(),
            group: c.group_policy,
            group_allow_from: c.group_allow_from.clone(),
            require_mention: c.require_mention,
        },
        mode,
        relay: RelayConfig::default(),
        link_previews: c.link_previews,
    })
}

/// The Discord settings from the configuration, when a token is set.
pub fn discord_settings(c: &DiscordConfig) -> Option<DiscordSettings> {
    let token = SecretString::new(c.token()?.to_owned());
    Some(DiscordSettings {
        token,
        api_url: c
            .api_url
            .clone()
            .unwrap_or_else(|| discord::DEFAULT_API_URL.to_owned()),
        access: AccessPolicy {
            dm: c.dm_policy,
            allow_from: c.allow_from.clone(),
            group: c.group_policy,
            group_allow_from: c.group_allow_from.clone(),
            require_mention: c.require_mention,
        },
        relay: RelayConfig::default(),
        link_previews: c.link_previews,
    })
}

/// Starts the channels that have a token. Never fails: a channel that cannot start reports why in
/// its status and the log.
pub fn start(config: &Config, engine: Arc<Engine>) -> Channels {
    let backend: Arc<dyn ChatBackend> = engine.clone();
    let access: Arc<dyn AccessStore> = Arc::new(engine.store().clone());
    let ctx = ChannelContext { backend, access };
    let mut channels = Channels {
        board: StatusBoard::new(),
        cancel: CancellationToken::new(),
        tasks: Vec::new(),
        routes: Vec::new(),
    };
    channels.launch::<Telegram>(telegram_settings(&config.channels.telegram), &ctx);
    channels.launch::<Discord>(discord_settings(&config.channels.discord), &ctx);
    channels
}

impl Channels {
    /// Starts platform `P` when it has settings (a token), else shows it as off.
    fn launch<P: Platform>(&mut self, settings: Option<P::Settings>, ctx: &ChannelContext) {
        let Some(settings) = settings else {
            self.board.register(P::NAME, false);
            return;
        };
        let access = P::access(&settings);
        info!(
            channel = P::NAME,
            dm_policy = access.dm.as_str(),
            group_policy = access.group.as_str(),
            "starting the {} channel",
            P::TITLE
        );
        let ctx = crate::metrics::metered_channel(P::NAME, ctx.clone());
        match P::start(settings, ctx, &self.board, self.cancel.child_token()) {
            Ok(started) => {
                self.routes.extend(started.webhook);
                self.tasks.push((P::NAME, started.task));
            }
            Err(e) => {
                error!(channel = P::NAME, error = %e, "the {} channel cannot start", P::TITLE);
                self.board
                    .register(P::NAME, true)
                    .disconnected(&e.to_string());
            }
        }
    }

    /// The channels' states, for `GetStatus`.
    pub fn status(&self) -> StatusBoard {
        self.board.clone()
    }

    /// Adds the channels' HTTP routes (the Telegram webhook) to the gateway's router. They check
    /// their own secret, so they go outside the API-token guard.
    pub fn mount(&mut self, router: axum::Router) -> axum::Router {
        std::mem::take(&mut self.routes)
            .into_iter()
            .fold(router, axum::Router::merge)
    }

    /// Asks every channel to stop taking new messages.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Waits (at most `limit`) for the channels to finish.
    pub async fn join(self, limit: Duration) {
        self.cancel.cancel();
        for (name, task) in self.tasks {
            if tokio::time::timeout(limit, task).await.is_err() {
                warn!(channel = name, "channel did not stop in time");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_sources;
    use open_clanker_core::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn telegram_is_off_without_a_token_and_on_with_the_variable() {
        let c = from_sources(None, &[]).unwrap();
        assert!(telegram_settings(&c.channels.telegram).is_none());
        let c = from_sources(
            None,
            &env(&[
                ("TELEGRAM_BOT_TOKEN", "123:abc"),
                ("OPEN_CLANKER_TELEGRAM_API_URL", "http://127.0.0.1:9"),
                ("OPEN_CLANKER_TELEGRAM_ALLOW_FROM", "1, 2"),
            ]),
        )
        .unwrap();
        let s = telegram_settings(&c.channels.telegram).unwrap();
        assert_eq!(s.token.expose_secret(), "123:abc");
        assert_eq!(s.api_url, "http://127.0.0.1:9");
        assert_eq!(s.access.allow_from, ["1", "2"]);
        assert_eq!(s.access.dm, DmPolicy::Pairing);
        assert!(!format!("{c:?}").contains("123:abc"));
    }

    #[test]
    fn discord_is_off_without_a_token_and_on_with_the_variable() {
        let c = from_sources(None, &[]).unwrap();
        assert!(discord_settings(&c.channels.discord).is_none());
        let c = from_sources(
            Some("[channels.discord]\ngroup_allow_from = [\"123\"]\n"),
            &env(&[("DISCORD_BOT_TOKEN", "  MTE4.abc.def  ")]),
        )
        .unwrap();
        let s = discord_settings(&c.channels.discord).unwrap();
        assert_eq!(s.token.expose_secret(), "MTE4.abc.def");
        assert_eq!(s.api_url, discord::DEFAULT_API_URL);
        assert_eq!(s.access.dm, DmPolicy::Pairing);
        assert_eq!(s.access.group_allow_from, ["123"]);
        assert!(s.access.require_mention);
        let c = from_sources(
            None,
            &env(&[
                ("DISCORD_BOT_TOKEN", "MTE4.abc.def"),
                ("OPEN_CLANKER_DISCORD_API_URL", "http://127.0.0.1:9"),
                ("OPEN_CLANKER_DISCORD_DM_POLICY", "open"),
                ("OPEN_CLANKER_DISCORD_ALLOW_FROM", "1,2"),
            ]),
        )
        .unwrap();
        let s = discord_settings(&c.channels.discord).unwrap();
        assert_eq!(s.api_url, "http://127.0.0.1:9");
        assert_eq!(s.access.dm, DmPolicy::Open);
        assert_eq!(s.access.allow_from, ["1", "2"]);
        assert!(!format!("{c:?} {s:?}").contains("MTE4.abc.def"));
    }

    #[test]
    fn link_previews_are_off_unless_allowed() {
        let tokens = [
            ("TELEGRAM_BOT_TOKEN", "1:x"),
            ("DISCORD_BOT_TOKEN", "MTE4.a.b"),
        ];
        let c = from_sources(None, &env(&tokens)).unwrap();
        assert!(
            !telegram_settings(&c.channels.telegram)
                .unwrap()
                .link_previews
        );
        assert!(!discord_settings(&c.channels.discord).unwrap().link_previews);
        let c = from_sources(
            Some("[channels.telegram]\nlink_previews = true\n"),
            &env(&[
                tokens[0],
                tokens[1],
                ("OPEN_CLANKER_DISCORD_LINK_PREVIEWS", "true"),
            ]),
        )
        .unwrap();
        assert!(
            telegram_settings(&c.channels.telegram)
                .unwrap()
                .link_previews
        );
        assert!(discord_settings(&c.channels.discord).unwrap().link_previews);
        let c = from_sources(
            Some("[channels.telegram]\nlink_previews = true\n"),
            &env(&[tokens[0], ("OPEN_CLANKER_TELEGRAM_LINK_PREVIEWS", "false")]),
        )
        .unwrap();
        assert!(!c.channels.telegram.link_previews, "the variable wins");
        let problems = from_sources(
            None,
            &env(&[("OPEN_CLANKER_DISCORD_LINK_PREVIEWS", "maybe")]),
        )
        .unwrap_err();
        let said = format!("{} {}", problems[0].key, problems[0].message);
        assert!(
            said.contains("OPEN_CLANKER_DISCORD_LINK_PREVIEWS"),
            "{problems:?}"
        );
    }

    #[test]
    fn ids_may_be_numbers_or_strings() {
        let c = from_sources(
            Some("[channels.telegram]\nallow_from = [42, \"43\"]\ngroup_allow_from = [-100123]\ndm_policy = \"allowlist\"\n"),
            &[],
        )
        .unwrap();
        assert_eq!(c.channels.telegram.allow_from, ["42", "43"]);
        assert_eq!(c.channels.telegram.group_allow_from, ["-100123"]);
        assert_eq!(c.channels.telegram.dm_policy, DmPolicy::Allowlist);
    }

    #[test]
    fn problems_name_their_keys() {
        let problems = from_sources(
            Some("[channels.telegram]\nmode = \"webhook\"\napi_url = \"ftp://x\"\nallow_from = [\"alice\"]\n"),
            &env(&[("TELEGRAM_BOT_TOKEN", "not a token")]),
        )
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "channels.telegram.api_url",
            "channels.telegram.bot_token",
            "channels.telegram.allow_from",
            "channels.telegram.webhook_url",
            "channels.telegram.webhook_secret",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        assert!(!format!("{problems:?}").contains("not a token"));

        let problems =
            from_sources(Some("[channels.telegram]\ndm_policy = \"everyone\"\n"), &[]).unwrap_err();
        assert_eq!(
            problems[0].key, "channels.telegram.dm_policy",
            "{problems:?}"
        );
        let problems = from_sources(
            None,
            &env(&[("OPEN_CLANKER_TELEGRAM_DM_POLICY", "sometimes")]),
        )
        .unwrap_err();
        assert_eq!(problems[0].key, "OPEN_CLANKER_TELEGRAM_DM_POLICY");
    }

    #[test]
    fn webhook_mode_is_valid_with_url_and_secret() {
        let c = from_sources(
            Some("[channels.telegram]\nmode = \"webhook\"\nwebhook_url = \"https://bot.example.com/tg/hook\"\n"),
            &env(&[("TELEGRAM_BOT_TOKEN", "1:x"), ("TELEGRAM_WEBHOOK_SECRET", "s3cr3t_-")]),
        )
        .unwrap();
        let s = telegram_settings(&c.channels.telegram).unwrap();
        assert!(matches!(s.mode, Mode::Webhook { ref secret, .. } if secret == "s3cr3t_-"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
