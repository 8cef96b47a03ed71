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
use open_clanker_channels::telegram::{Mode, Telegram, TelegramSettings};
use open_clanker_channels::{AccessPolicy, ChannelContext, Platform, StatusBoard};
use open_clanker_core::{AccessStore, ChatBackend, ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, DiscordConfig, TelegramConfig, TelegramMode};
use open_clanker_engine::Engine;

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
            secret: c
                .webhook_secret
                .as_ref()
                .map(|s| s.expose_secret().clone())
                .unwrap_or_default(),
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
            .as_deref()
            .unwrap_or(discord::DEFAULT_API_URL)
            .into(),
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
    use open_clanker_channels::DmPolicy;

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
