//! Telegram over the Bot API (teloxide): long polling by default, or a webhook served on the
//! gateway's own port.
//!
//! [`start`] spawns the channel: `getMe` (a rejected token stops the channel with one clear error;
//! network errors are retried with backoff), then `deleteWebhook` + `getUpdates` long polling (or
//! `setWebhook` with a secret token), `setMyCommands`, and one task per incoming message through the
//! common [`Pipeline`]. Point it at any Bot API server with [`TelegramSettings::api_url`] (tests use
//! a stand-in on 127.0.0.1).

mod sink;
mod webhook;

use std::time::Duration;

use teloxide::payloads::{GetUpdatesSetters, SetWebhookSetters};
use teloxide::prelude::Requester;
use teloxide::types::{AllowedUpdate, BotCommand, Me, Message, Update, UpdateKind};
use teloxide::{ApiError, Bot, RequestError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

pub use sink::TelegramSink;
pub use webhook::{SECRET_HEADER, webhook_router};

use open_clanker_core::redact::{RedactedUrl, redact_url};
use open_clanker_core::{ExposeSecret, SecretString};

use crate::access::AccessPolicy;
use crate::backoff::Backoff;
use crate::commands::Command;
use crate::pipeline::{ChannelContext, Inbound};
use crate::relay::RelayConfig;
use crate::runtime::{Failure, Platform, Runtime, http_client, parse_url};
use crate::sink::redact_token;
use crate::status::StatusBoard;

pub use crate::runtime::{StartError, Started};

/// The channel's name (session keys `telegram:<chat id>`, the allowlist, the CLI).
pub const NAME: &str = "telegram";
/// The official Bot API endpoint.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";
/// The platform's name in messages.
const TITLE: &str = "Telegram";

/// How updates arrive.
#[derive(Clone, PartialEq, Eq)]
pub enum Mode {
    /// `getUpdates` long polling, `timeout` seconds per request.
    Polling { timeout: Duration },
    /// Telegram posts updates to `url` (public, https) with `secret` in [`SECRET_HEADER`]; the
    /// gateway serves the URL's path ([`Started::webhook`]).
    Webhook { url: String, secret: String },
}

/// `polling (25s)` or `webhook (<url>)`: the webhook's secret is not shown.
impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Polling { timeout } => write!(f, "polling ({timeout:?})"),
            Mode::Webhook { url, .. } => write!(f, "webhook ({url})"),
        }
    }
}

/// Everything the Telegram channel needs.
#[derive(Clone, Debug)]
pub struct TelegramSettings {
    /// From @BotFather.
    pub token: SecretString,
    /// The Bot API server, e.g. [`DEFAULT_API_URL`].
    pub api_url: RedactedUrl,
    pub access: AccessPolicy,
    pub mode: Mode,
    pub relay: RelayConfig,
    /// Let Telegram show previews of the links in answers. Off by default: Telegram fetches a
    /// previewed link, so an answer could make it send data to any address unclicked.
    pub link_previews: bool,
}

/// Telegram as a [`Platform`].
pub struct Telegram;

impl Platform for Telegram {
    const NAME: &'static str = NAME;
    const TITLE: &'static str = TITLE;
    type Settings = TelegramSettings;

    fn access(settings: &TelegramSettings) -> &AccessPolicy {
        &settings.access
    }

    fn start(
        settings: TelegramSettings,
        ctx: ChannelContext,
        board: &StatusBoard,
        cancel: CancellationToken,
    ) -> Result<Started, StartError> {
        start(settings, ctx, board, cancel)
    }
}

/// Asks the Bot API who the bot is (`getMe`), for `open-clanker doctor`: the bot's username when
/// the token is accepted, else a message that never contains the token.
pub async fn check_token(token: &str, api_url: &str, timeout: Duration) -> Result<String, String> {
    let url = reqwest::Url::parse(api_url)
        .map_err(|e| format!("invalid Telegram api_url {:?}: {e}", redact_url(api_url)))?;
    let client = reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let bot = Bot::with_client(token.to_owned(), client).set_api_url(url);
    match bot.get_me().await {
        Ok(me) => Ok(me
            .user
            .username
            .clone()
            .unwrap_or_else(|| me.user.first_name.clone())),
        Err(e) => Err(redact_token(
            &e.to_string(),
            &SecretString::new(token.to_owned()),
        )),
    }
}

/// Starts the Telegram channel; it registers itself on `board` as [`NAME`].
pub fn start(
    settings: TelegramSettings,
    ctx: ChannelContext,
    board: &StatusBoard,
    cancel: CancellationToken,
) -> Result<Started, StartError> {
    let rt = Runtime::new::<Telegram>(ctx, settings.access.clone(), settings.relay, board);
    let api_url = parse_url(TITLE, "api_url", &settings.api_url)?;
    let (poll, updates, webhook) = match &settings.mode {
        Mode::Polling { timeout } => (*timeout, Updates::Polling { timeout: *timeout }, None),
        Mode::Webhook { url, secret } => {
            let url = parse_url(TITLE, "webhook_url", url)?;
            let (tx, rx) = mpsc::channel(256);
            let route = webhook_router(url.path(), secret, tx);
            let secret = secret.clone();
            (
                Duration::ZERO,
                Updates::Webhook { url, secret, rx },
                Some(route),
            )
        }
    };
    // Long polls must end before the client gives up on them.
    let client = http_client(poll + Duration::from_secs(30))?;
    let bot = Bot::with_client(settings.token.expose_secret().clone(), client).set_api_url(api_url);
    let channel = Channel { bot, settings, rt };
    let task = tokio::spawn(channel.run(updates, cancel));
    Ok(Started { task, webhook })
}

/// Where the updates come from.
enum Updates {
    /// `getUpdates`, `timeout` per request.
    Polling { timeout: Duration },
    /// Telegram posts them to `url` with `secret`; the webhook route passes them to `rx`.
    Webhook {
        url: reqwest::Url,
        secret: String,
        rx: mpsc::Receiver<Update>,
    },
}

struct Channel {
    bot: Bot,
    settings: TelegramSettings,
    rt: Runtime,
}

impl Channel {
    fn redact(&self, text: &str) -> String {
        redact_token(text, &self.settings.token)
    }

    fn classify(&self, e: &RequestError) -> Failure {
        match e {
            RequestError::Api(ApiError::InvalidToken) => Failure::Fatal(
                "Telegram rejected the bot token (401 Unauthorized): check TELEGRAM_BOT_TOKEN \
                 (channels.telegram.bot_token)"
                    .to_owned(),
            ),
            RequestError::RetryAfter(wait) => Failure::Wait(
                wait.duration(),
                format!("rate limited for {}s", wait.seconds()),
            ),
            RequestError::Api(ApiError::TerminatedByOtherGetUpdates) => Failure::Retry(
                "another program is polling this bot (409 Conflict): run one gateway per bot token"
                    .to_owned(),
            ),
            other => Failure::Retry(self.redact(&other.to_string())),
        }
    }

    /// [`Runtime::until_ok`] with the Bot API's failures.
    async fn until_ok<T, F, Fut>(
        &self,
        what: &str,
        cancel: &CancellationToken,
        backoff: &mut Backoff,
        call: F,
    ) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::IntoFuture<Output = Result<T, RequestError>>,
    {
        self.rt
            .until_ok(what, cancel, backoff, call, |e| self.classify(e))
            .await
    }

    async fn run(self, updates: Updates, cancel: CancellationToken) {
        self.rt.serve(self.receive(updates, &cancel)).await;
    }

    /// `getMe`, then the updates until shutdown (or a rejected token).
    async fn receive(&self, updates: Updates, cancel: &CancellationToken) {
        let mut backoff = Backoff::default();
        let Some(me) = self
            .until_ok("getMe", cancel, &mut backoff, || self.bot.get_me())
            .await
        else {
            return;
        };
        let bot_name = format!("@{}", me.username());
        self.rt.status().connected(&bot_name);
        info!(channel = NAME, bot = %bot_name, api = %redact_url(&self.settings.api_url), "Telegram bot connected");

        let commands: Vec<BotCommand> = Command::MENU
            .iter()
            .map(|(name, what)| BotCommand::new(*name, *what))
            .collect();
        if let Err(e) = self.bot.set_my_commands(commands).await {
            debug!(channel = NAME, error = %self.redact(&e.to_string()), "setMyCommands failed");
        }

        match updates {
            Updates::Polling { timeout } => {
                let ok = self
                    .until_ok("deleteWebhook", cancel, &mut backoff, || {
                        self.bot.delete_webhook()
                    })
                    .await;
                if ok.is_some() {
                    self.poll(&me, timeout, cancel, &mut backoff).await;
                }
            }
            Updates::Webhook {
                url,
                secret,
                mut rx,
            } => {
                let ok = self
                    .until_ok("setWebhook", cancel, &mut backoff, || {
                        self.bot
                            .set_webhook(url.clone())
                            .secret_token(secret.clone())
                            .allowed_updates(vec![AllowedUpdate::Message])
                    })
                    .await;
                if ok.is_some() {
                    info!(channel = NAME, url = %url, "receiving Telegram updates by webhook");
                    loop {
                        let update = tokio::select! {
                            _ = cancel.cancelled() => break,
                            u = rx.recv() => u,
                        };
                        match update {
                            Some(update) => self.dispatch(update, &me).await,
                            None => break,
                        }
                    }
                }
            }
        }
    }

    async fn poll(
        &self,
        me: &Me,
        timeout: Duration,
        cancel: &CancellationToken,
        backoff: &mut Backoff,
    ) {
        let mut offset: i32 = 0;
        let secs = u32::try_from(timeout.as_secs()).unwrap_or(50);
        loop {
            let updates = self
                .until_ok("getUpdates", cancel, backoff, || {
                    self.bot
                        .get_updates()
                        .offset(offset)
                        .timeout(secs)
                        .allowed_updates(vec![AllowedUpdate::Message])
                })
                .await;
            let Some(updates) = updates else { return };
            if !self.rt.status().get().connected {
                self.rt.status().reconnected();
            }
            for update in updates {
                offset = offset.max(
                    i32::try_from(update.id.0)
                        .unwrap_or(i32::MAX)
                        .saturating_add(1),
                );
                self.dispatch(update, me).await;
            }
        }
    }

    /// Hands a message to the pipeline on its own task (bounded in number).
    async fn dispatch(&self, update: Update, me: &Me) {
        let UpdateKind::Message(message) = update.kind else {
            return;
        };
        if let Some((inbound, sink)) = self.inbound(&message, me) {
            self.rt.dispatch(inbound, sink, me.username()).await;
        }
    }

    /// The pipeline's view of a Telegram message, and where to answer it.
    fn inbound(&self, message: &Message, me: &Me) -> Option<(Inbound, TelegramSink)> {
        if message.chat.is_channel() {
            return None;
        }
        let from = message.from.as_ref()?;
        if from.is_bot {
            return None;
        }
        let text = message.text()?;
        let is_group = !message.chat.is_private();
        let handle = format!("@{}", me.username());
        let mentioned = contains_ignore_case(text, &handle);
        let replied_to_me = message
            .reply_to_message()
            .and_then(|m| m.from.as_ref())
            .is_some_and(|u| u.id == me.user.id);
        let text = if mentioned {
            remove_ignore_case(text, &handle)
        } else {
            text.to_owned()
        };
        let label = match &from.username {
            Some(u) => format!("@{u} ({})", from.full_name()),
            None => from.full_name(),
        };
        let inbound = Inbound {
            chat_id: message.chat.id.0.to_string(),
            sender_id: from.id.0.to_string(),
            sender_label: label,
            is_group,
            addressed: !is_group || mentioned || replied_to_me,
            text,
        };
        let sink = TelegramSink {
            bot: self.bot.clone(),
            chat: message.chat.id,
            reply_to: is_group.then_some(message.id),
            thread: message.thread_id.filter(|_| message.is_topic_message),
            token: self.settings.token.clone(),
            plain: Default::default(),
            link_previews: self.settings.link_previews,
        };
        Some((inbound, sink))
    }
}

fn contains_ignore_case(text: &str, needle: &str) -> bool {
    text.to_lowercase().contains(&needle.to_lowercase())
}

/// `text` without any `needle` (ASCII case-insensitive: Telegram user names are ASCII).
fn remove_ignore_case(text: &str, needle: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if rest.len() >= needle.len()
            && rest.is_char_boundary(needle.len())
            && rest[..needle.len()].eq_ignore_ascii_case(needle)
        {
            rest = &rest[needle.len()..];
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_and_removed() {
        assert!(contains_ignore_case("hey @Clanker_Bot!", "@clanker_bot"));
        assert_eq!(
            remove_ignore_case("@CLANKER_bot what is 2+2?", "@clanker_bot"),
            "what is 2+2?"
        );
        assert_eq!(
            remove_ignore_case("/new@clanker_bot", "@clanker_bot"),
            "/new"
        );
        assert_eq!(remove_ignore_case("héllo @b", "@b"), "héllo");
    }

    #[test]
    fn settings_debug_hides_the_token() {
        let s = TelegramSettings {
            token: SecretString::new("123:secret".into()),
            api_url: DEFAULT_API_URL.into(),
            access: AccessPolicy::default(),
            mode: Mode::Webhook {
                url: "https://x/y".into(),
                secret: "s3cr3t".into(),
            },
            relay: RelayConfig::default(),
            link_previews: false,
        };
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn errors_never_show_the_token() {
        assert_eq!(
            redact_token(
                "GET /bot123:abc/getMe failed",
                &SecretString::new("123:abc".into())
            ),
            "GET /bot<token>/getMe failed"
        );
    }
}
