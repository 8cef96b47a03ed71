//! Chat platforms (Telegram, Discord): their stand-ins, a gateway whose channel talks to one, and
//! waiting for what the bot sent there.

use std::fmt::{Debug, Display};
use std::time::Duration;

use open_clanker_testkit::StandIn;
use open_clanker_testkit::discord::{self, DiscordStandIn};
use open_clanker_testkit::telegram::{self, TelegramStandIn};

use super::gateway::{Gateway, stderr, stdout};
use super::standin::Stack;
use super::wait::{WAIT, poll_async, wait_for};

/// The bot token the Telegram tests give the gateway.
pub const TELEGRAM_TOKEN: &str = "123456:TEST-token_abcdefghij";
/// The bot token the Discord tests give the gateway.
pub const DISCORD_TOKEN: &str = "MTE4MDAwMDAwMDAwMDAwMDAwMQ.e2e-test.discord_token_abcdefghij";

/// What the tests need of a chat platform's stand-in.
pub trait Platform {
    /// A chat (Telegram) or channel (Discord) id.
    type Chat: Copy + Display;
    /// A message the bot sent, as it is now.
    type Message: Clone + PartialEq + Debug;
    /// The environment that points a gateway at this stand-in's API `api` with the bot token
    /// `token`.
    fn env<'a>(token: &'a str, api: &'a str) -> [(&'a str, &'a str); 2];
    /// The URL of its API.
    fn api(&self) -> String;
    /// The bot's messages in `chat`, in order.
    fn sent(&self, chat: Self::Chat) -> Vec<Self::Message>;
    /// What a person reads in `message`.
    fn text(message: &Self::Message) -> &str;
    /// Every API call it answered, for a failure message.
    fn calls_text(&self) -> String;
}

impl Platform for TelegramStandIn {
    type Chat = i64;
    type Message = telegram::SentMessage;
    fn env<'a>(token: &'a str, api: &'a str) -> [(&'a str, &'a str); 2] {
        [
            ("TELEGRAM_BOT_TOKEN", token),
            ("OPEN_CLANKER_TELEGRAM_API_URL", api),
        ]
    }
    fn api(&self) -> String {
        self.api_url()
    }
    fn sent(&self, chat: i64) -> Vec<telegram::SentMessage> {
        self.messages(chat)
    }
    fn text(message: &telegram::SentMessage) -> &str {
        &message.text
    }
    fn calls_text(&self) -> String {
        format!("{:#?}", self.calls())
    }
}

impl Platform for DiscordStandIn {
    type Chat = u64;
    type Message = discord::SentMessage;
    fn env<'a>(token: &'a str, api: &'a str) -> [(&'a str, &'a str); 2] {
        [
            ("DISCORD_BOT_TOKEN", token),
            ("OPEN_CLANKER_DISCORD_API_URL", api),
        ]
    }
    fn api(&self) -> String {
        self.api_url()
    }
    fn sent(&self, channel: u64) -> Vec<discord::SentMessage> {
        self.messages(channel)
    }
    fn text(message: &discord::SentMessage) -> &str {
        &message.content
    }
    fn calls_text(&self) -> String {
        format!("{:#?}", self.calls())
    }
}

/// A Telegram Bot API stand-in on 127.0.0.1 that accepts the bot token `token`.
pub async fn spawn_telegram(token: &str) -> TelegramStandIn {
    telegram::spawn(token).await.expect("telegram stand-in")
}

/// A Discord stand-in (REST and gateway websocket) on 127.0.0.1 that accepts `token`.
pub async fn spawn_discord(token: &str) -> DiscordStandIn {
    discord::spawn(token).await.expect("discord stand-in")
}

/// The environment that points a gateway's Telegram channel at the stand-in's API `api`.
pub fn telegram_env<'a>(token: &'a str, api: &'a str) -> [(&'a str, &'a str); 2] {
    TelegramStandIn::env(token, api)
}

/// The environment that points a gateway's Discord channel at the stand-in's API `api`.
pub fn discord_env<'a>(token: &'a str, api: &'a str) -> [(&'a str, &'a str); 2] {
    DiscordStandIn::env(token, api)
}

/// Waits until the Telegram channel polls the stand-in for updates.
pub async fn polling(tg: &TelegramStandIn) {
    assert!(
        tg.wait_until(WAIT, |t| !t.calls_of("getUpdates").is_empty())
            .await,
        "the channel never polled: {:?}",
        tg.calls()
    );
}

/// Waits until `chat` has `n` messages from the bot and none changes for a moment; returns them.
pub async fn settled<P: Platform>(platform: &P, chat: P::Chat, n: usize) -> Vec<P::Message> {
    assert!(
        wait_for(WAIT, || platform.sent(chat).len() >= n).await,
        "expected {n} messages in chat {chat}; calls: {}",
        platform.calls_text()
    );
    // Let the final edits land.
    let mut last = platform.sent(chat);
    loop {
        tokio::time::sleep(Duration::from_millis(1800)).await;
        let now = platform.sent(chat);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Waits until the bot's message number `index` in `chat` reads `expected` (the final edit of a
/// streamed answer); returns the chat's messages.
pub async fn wait_text<P: Platform>(
    platform: &P,
    chat: P::Chat,
    index: usize,
    expected: &str,
) -> Vec<P::Message> {
    let done = wait_for(WAIT, || {
        platform
            .sent(chat)
            .get(index)
            .is_some_and(|m| P::text(m) == expected)
    })
    .await;
    assert!(
        done,
        "message {index} of chat {chat} never read {expected:?}: {:#?}",
        platform.sent(chat)
    );
    platform.sent(chat)
}

/// The pairing code in a pairing message.
pub fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| {
            w.len() == 8
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        })
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_string()
}

/// One channel's entry in `status --json`.
pub fn channel<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["channels"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

/// The Discord stand-in's bot as the gateway names it.
pub fn discord_bot_name() -> String {
    format!("{}#{}", discord::BOT_USERNAME, discord::BOT_DISCRIMINATOR)
}

/// A gateway whose channel for one chat platform talks to that platform's stand-in, answered by a
/// fresh provider stand-in. The fields drop in this order: the gateway stops before its home goes.
pub struct ChatGateway<P> {
    pub gw: Gateway,
    pub platform: P,
    pub provider: StandIn,
    pub home: tempfile::TempDir,
}

impl<P: Platform> ChatGateway<P> {
    /// Starts a gateway pointed at `platform` with the bot token `token`, `extra` environment and
    /// `config` as its `open-clanker.toml` when there is one.
    pub async fn start(
        platform: P,
        token: &str,
        extra: &[(&str, &str)],
        config: Option<&str>,
    ) -> ChatGateway<P> {
        let api = platform.api();
        let env = [&P::env(token, &api)[..], extra].concat();
        let Stack { gw, home, provider } = Stack::start_with(false, config, &env).await;
        ChatGateway {
            gw,
            platform,
            provider,
            home,
        }
    }

    /// [`settled`] on this gateway's platform.
    pub async fn settled(&self, chat: P::Chat, n: usize) -> Vec<P::Message> {
        settled(&self.platform, chat, n).await
    }

    /// [`wait_text`] on this gateway's platform.
    pub async fn wait_text(&self, chat: P::Chat, index: usize, expected: &str) -> Vec<P::Message> {
        wait_text(&self.platform, chat, index, expected).await
    }

    /// Runs a CLI command: whether it succeeded, its stdout and its stderr.
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.gw.cli(args);
        (out.status.success(), stdout(&out), stderr(&out))
    }

    /// `status --json`.
    pub fn status(&self) -> serde_json::Value {
        self.gw.status_json()
    }

    /// The session id and message count of the session with this exact key.
    pub fn session(&self, key: &str) -> Option<(String, u64)> {
        let (ok, out, err) = self.cli(&["sessions", "list", "--prefix", key]);
        assert!(ok, "{err}");
        out.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.contains(&key)
                .then(|| (cols[0].to_string(), cols[1].parse().unwrap()))
        })
    }
}

impl ChatGateway<TelegramStandIn> {
    /// A gateway with Telegram pointed at a fresh stand-in ([`TELEGRAM_TOKEN`]), `extra`
    /// environment and a config file when there is one.
    pub async fn telegram(extra: &[(&str, &str)], config: Option<&str>) -> Self {
        let tg = spawn_telegram(TELEGRAM_TOKEN).await;
        ChatGateway::start(tg, TELEGRAM_TOKEN, extra, config).await
    }

    /// Waits until the channel polls for updates.
    pub async fn polling(&self) {
        polling(&self.platform).await
    }
}

impl ChatGateway<DiscordStandIn> {
    /// A gateway with Discord pointed at a fresh stand-in ([`DISCORD_TOKEN`]), `extra` environment
    /// and a config file when there is one; returns once the channel is connected.
    pub async fn discord(extra: &[(&str, &str)], config: Option<&str>) -> Self {
        let dc = spawn_discord(DISCORD_TOKEN).await;
        let s = ChatGateway::start(dc, DISCORD_TOKEN, extra, config).await;
        s.connected().await;
        s
    }

    /// Waits until the stand-in saw the channel identify and `status` says it is connected.
    pub async fn connected(&self) {
        assert!(
            self.platform.wait_until(WAIT, |dc| dc.ready()).await,
            "the channel never identified: {:?}",
            self.platform.calls()
        );
        poll_async(
            Duration::from_secs(10),
            Duration::from_millis(50),
            "the Discord channel connected",
            || (channel(&self.status(), "discord")["connected"] == true).then_some(()),
        )
        .await;
    }
}
