//! The Discord channel end to end: the real gateway binary, the Discord stand-in (REST + gateway
//! websocket) and the stand-in provider, all on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;
use open_clanker_testkit::discord::{
    self, BOT_DISCRIMINATOR, BOT_ID, BOT_USERNAME, DiscordStandIn, Failure, Incoming,
};
use open_clanker_testkit::telegram;
use open_clanker_testkit::{StandIn, StandInConfig, spawn};

const TOKEN: &str = "MTE4MDAwMDAwMDAwMDAwMDAwMQ.e2e-test.discord_token_abcdefghij";
const WAIT: Duration = Duration::from_secs(30);

struct Setup {
    provider: StandIn,
    dc: DiscordStandIn,
    gw: Gateway,
    _home: tempfile::TempDir,
}

async fn provider() -> StandIn {
    spawn(StandInConfig {
        api_key: KEY.to_string(),
        default_delay: Duration::ZERO,
        ..Default::default()
    })
    .await
    .expect("provider stand-in")
}

/// A gateway with Discord pointed at a fresh stand-in, `extra` environment and a config file.
async fn setup_with(extra: &[(&str, &str)], config: Option<&str>) -> Setup {
    let provider = provider().await;
    let dc = discord::spawn(TOKEN).await.expect("discord stand-in");
    let home = tempfile::tempdir().unwrap();
    if let Some(text) = config {
        std::fs::write(home.path().join("open-clanker.toml"), text).unwrap();
    }
    let anthropic = provider.anthropic_base_url();
    let api = dc.api_url();
    let mut env = vec![
        ("ANTHROPIC_API_KEY", KEY),
        ("ANTHROPIC_BASE_URL", anthropic.as_str()),
        ("DISCORD_BOT_TOKEN", TOKEN),
        ("OPEN_CLANKER_DISCORD_API_URL", api.as_str()),
    ];
    env.extend_from_slice(extra);
    let gw = Gateway::start(home.path(), &env);
    let s = Setup {
        provider,
        dc,
        gw,
        _home: home,
    };
    s.connected().await;
    s
}

async fn setup(extra: &[(&str, &str)]) -> Setup {
    setup_with(extra, None).await
}

/// One channel's entry in `status --json`.
fn channel<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["channels"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

fn bot_name() -> String {
    format!("{BOT_USERNAME}#{BOT_DISCRIMINATOR}")
}

impl Setup {
    async fn connected(&self) {
        assert!(
            self.dc.wait_until(WAIT, |dc| dc.ready()).await,
            "the channel never identified: {:?}",
            self.dc.calls()
        );
        for _ in 0..100 {
            if channel(&self.status(), "discord")["connected"] == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not connected: {}", self.status());
    }

    /// Waits until `channel` has `n` messages from the bot and none changes for a moment.
    async fn settled(&self, channel: u64, n: usize) -> Vec<discord::SentMessage> {
        assert!(
            self.dc
                .wait_until(WAIT, |dc| dc.messages(channel).len() >= n)
                .await,
            "expected {n} messages in {channel}; calls: {:#?}",
            self.dc.calls()
        );
        let mut last = self.dc.messages(channel);
        loop {
            tokio::time::sleep(Duration::from_millis(1800)).await;
            let now = self.dc.messages(channel);
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// Waits until the bot's message `index` in `channel` reads `expected`.
    async fn wait_text(
        &self,
        channel: u64,
        index: usize,
        expected: &str,
    ) -> Vec<discord::SentMessage> {
        let done = self
            .dc
            .wait_until(WAIT, |dc| {
                dc.messages(channel)
                    .get(index)
                    .is_some_and(|m| m.content == expected)
            })
            .await;
        assert!(
            done,
            "message {index} of {channel} never read {expected:?}: {:#?}",
            self.dc.messages(channel)
        );
        self.dc.messages(channel)
    }

    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.gw.cli(args);
        (out.status.success(), stdout(&out), stderr(&out))
    }

    fn status(&self) -> serde_json::Value {
        let (ok, out, err) = self.cli(&["status", "--json"]);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    }

    /// The session id and message count of the session with this exact key.
    fn session(&self, key: &str) -> Option<(String, u64)> {
        let (ok, out, err) = self.cli(&["sessions", "list", "--prefix", key]);
        assert!(ok, "{err}");
        out.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.contains(&key)
                .then(|| (cols[0].to_string(), cols[1].parse().unwrap()))
        })
    }
}

/// The pairing code in a pairing message.
fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| {
            w.len() == 8
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        })
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_dm_gets_a_streamed_reply_that_is_stored() {
    let s = setup(&[("OPEN_CLANKER_DISCORD_ALLOW_FROM", "42")]).await;
    let status = s.status();
    let dc = channel(&status, "discord");
    assert_eq!(dc["enabled"], true);
    assert_eq!(dc["connected"], true, "{status}");
    assert_eq!(dc["bot_name"], bot_name());
    assert_eq!(channel(&status, "telegram")["enabled"], false);
    let (ok, out, _) = s.cli(&["status"]);
    assert!(ok && out.contains(&bot_name()), "{out}");
    let identify = &s.dc.identifies()[0];
    assert_eq!(
        identify["intents"].as_u64(),
        Some(
            discord::INTENT_GUILD_MESSAGES
                | discord::INTENT_DIRECT_MESSAGES
                | discord::INTENT_MESSAGE_CONTENT
        )
    );

    s.dc.push_dm(42, "one two three four five six seven **eight** #delay=300");
    let chat = discord::dm_channel_id(42);
    let answer = "echo: one two three four five six seven **eight** #delay=300";
    let messages = s.wait_text(chat, 0, answer).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(messages[0].edits >= 1, "streamed: {:#?}", s.dc.calls());
    let edits = s.dc.calls_of("editMessage");
    for pair in edits.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(1400),
            "edits too fast: {edits:#?}"
        );
    }
    assert!(!s.dc.calls_of("triggerTypingIndicator").is_empty());
    assert_eq!(s.dc.calls_of("createMessage").len(), 1);

    let key = format!("discord:{chat}");
    let (id, count) = s.session(&key).expect("session by its key");
    assert_eq!(count, 2);
    let (ok, out, err) = s.cli(&["sessions", "show", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("user: one two three"), "{out}");
    assert!(out.contains(&format!("assistant: {answer}")), "{out}");
    let (exit, _, logs) = s.gw.terminate();
    assert!(exit.success(), "{logs}");
    assert!(!logs.contains(TOKEN), "the bot token leaked into the logs");
    assert!(logs.contains("Discord bot connected"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_pairs_and_is_answered_after_approval() {
    let s = setup(&[]).await;
    let chat = discord::dm_channel_id(77);
    s.dc.push_dm(77, "hello?");
    let messages = s.settled(chat, 1).await;
    let code = code_in(&messages[0].content);
    assert!(
        messages[0]
            .content
            .contains(&format!("open-clanker pairing approve discord {code}")),
        "{}",
        messages[0].content
    );
    assert_eq!(
        s.provider.request_count(),
        0,
        "a stranger's message reached the model"
    );
    assert!(s.session(&format!("discord:{chat}")).is_none());

    let (ok, out, err) = s.cli(&["pairing", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&code) && out.contains("77") && out.contains("@user77"),
        "{out}"
    );
    let (ok, _, err) = s.cli(&["pairing", "approve", "telegram", &code]);
    assert!(!ok, "a Discord code is not a Telegram one: {err}");
    let (ok, out, err) = s.cli(&["pairing", "approve", "discord", &code]);
    assert!(ok, "{err}");
    assert!(out.contains("77"), "{out}");

    s.dc.push_dm(77, "now?");
    s.wait_text(chat, 1, "echo: now?").await;
    assert_eq!(s.provider.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_answers_are_split_and_reset_starts_afresh() {
    let s = setup(&[("OPEN_CLANKER_DISCORD_ALLOW_FROM", "42")]).await;
    let chat = discord::dm_channel_id(42);
    s.dc.push_dm(42, "#tokens=700");
    let answer: String = (0..700)
        .map(|i| format!("tok{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let complete =
        s.dc.wait_until(WAIT, |dc| {
            dc.messages(chat)
                .last()
                .is_some_and(|m| m.content.ends_with("tok699"))
        })
        .await;
    assert!(complete, "{:#?}", s.dc.messages(chat));
    let messages = s.dc.messages(chat);
    assert!(answer.len() > 2 * 2000);
    assert_eq!(
        messages.len(),
        3,
        "{:?}",
        messages.iter().map(|m| m.content.len()).collect::<Vec<_>>()
    );
    for m in &messages {
        assert!(m.content.chars().count() <= 2000);
        assert!(!m.content.starts_with(' ') && !m.content.ends_with(' '));
    }
    let joined: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(joined.join(" "), answer, "words are whole and in order");
    assert!(s.dc.calls().iter().all(|c| c.status < 400), "none refused");

    let key = format!("discord:{chat}");
    assert_eq!(s.session(&key).unwrap().1, 2);
    s.dc.push_dm(42, "/reset");
    let messages = s.settled(chat, 4).await;
    assert!(
        messages[3].content.contains("Fresh start"),
        "{}",
        messages[3].content
    );
    assert_eq!(s.session(&key).unwrap().1, 0, "history cleared");
    s.dc.push_dm(42, "again");
    s.wait_text(chat, 4, "echo: again").await;
    let last = s.provider.requests().pop().unwrap();
    assert_eq!(
        last.body["messages"].as_array().unwrap().len(),
        1,
        "no earlier history after the reset: {}",
        last.body
    );
    s.dc.push_dm(42, "/status");
    let messages = s.settled(chat, 6).await;
    assert!(
        messages[5].content.contains(&key) && messages[5].content.contains("2 messages"),
        "{}",
        messages[5].content
    );
    s.dc.push_dm(42, "/help");
    let messages = s.settled(chat, 7).await;
    assert!(
        messages[6].content.contains("/reset"),
        "{}",
        messages[6].content
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_waited_out() {
    let s = setup(&[("OPEN_CLANKER_DISCORD_ALLOW_FROM", "42")]).await;
    s.dc.fail_next("createMessage", Failure::RetryAfter(2.0));
    s.dc.push_dm(42, "hi");
    s.wait_text(discord::dm_channel_id(42), 0, "echo: hi").await;
    let sends = s.dc.calls_of("createMessage");
    assert_eq!(sends[0].status, 429);
    let ok = sends
        .iter()
        .find(|c| c.status == 200)
        .expect("a successful send");
    assert!(
        ok.at - sends[0].at >= Duration::from_secs(2),
        "retry_after honoured: {sends:#?}"
    );
    assert_eq!(s.dc.messages(discord::dm_channel_id(42)).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guild_channels_answer_mentions_and_replies_only() {
    let s = setup_with(
        &[("OPEN_CLANKER_DISCORD_DM_POLICY", "allowlist")],
        Some("[channels.discord]\ngroup_allow_from = [600]\n"),
    )
    .await;
    let (guild, chan) = (500, 600);
    s.dc.push_guild(guild, chan, 5, "talking among ourselves");
    let asked =
        s.dc.push_guild(guild, chan, 5, &format!("<@{BOT_ID}> what is up"));
    let messages = s.wait_text(chan, 0, "echo: what is up").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].reply_to, Some(asked), "answers as a reply");
    s.dc.push(Incoming {
        channel_id: chan,
        guild_id: Some(guild),
        author: 6,
        author_is_bot: false,
        text: "and me".into(),
        reply_to: Some(messages[0].message_id),
    });
    s.wait_text(chan, 1, "echo: and me").await;
    assert_eq!(s.session(&format!("discord:{chan}:5")).unwrap().1, 2);
    assert_eq!(s.session(&format!("discord:{chan}:6")).unwrap().1, 2);
    assert_eq!(
        s.provider.request_count(),
        2,
        "the unaddressed one was not sent"
    );
    // Another channel is not on the list.
    s.dc.push_guild(guild, 700, 5, &format!("<@!{BOT_ID}> hi"));
    // Under the allowlist DM policy a stranger is ignored: no code, no model.
    s.dc.push_dm(9, "anyone?");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(s.dc.messages(700).is_empty());
    assert!(s.dc.messages(discord::dm_channel_id(9)).is_empty());
    assert_eq!(s.provider.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_leaves_the_gateway_serving() {
    let provider = provider().await;
    let dc = discord::spawn("the-real-token").await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let anthropic = provider.anthropic_base_url();
    let api = dc.api_url();
    let gw = Gateway::start(
        home.path(),
        &[
            ("ANTHROPIC_API_KEY", KEY),
            ("ANTHROPIC_BASE_URL", anthropic.as_str()),
            ("DISCORD_BOT_TOKEN", TOKEN),
            ("OPEN_CLANKER_DISCORD_API_URL", api.as_str()),
        ],
    );
    let mut status = serde_json::Value::Null;
    for _ in 0..100 {
        let out = gw.cli(&["status", "--json"]);
        status = serde_json::from_str(&stdout(&out)).unwrap();
        if channel(&status, "discord")["last_error"] != "" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = channel(&status, "discord");
    assert_eq!(d["enabled"], true);
    assert_eq!(d["connected"], false);
    assert!(
        d["last_error"]
            .as_str()
            .unwrap()
            .contains("rejected the bot token"),
        "{status}"
    );
    assert!(gw.cli(&["health"]).status.success());
    let out = gw.cli(&["chat", "still here?"]);
    assert_eq!(stdout(&out), "echo: still here?\n");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(dc.calls_of("getCurrentUser").len(), 1, "one attempt");
    assert!(dc.identifies().is_empty());
    let (exit, _, logs) = gw.terminate();
    assert!(exit.success(), "{logs}");
    assert_eq!(logs.matches("rejected the bot token").count(), 1, "{logs}");
    assert!(!logs.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_by_the_gateway_is_one_clear_error() {
    let provider = provider().await;
    let dc = discord::spawn(TOKEN).await.unwrap();
    dc.reject_identify(true);
    let home = tempfile::tempdir().unwrap();
    let anthropic = provider.anthropic_base_url();
    let api = dc.api_url();
    let gw = Gateway::start(
        home.path(),
        &[
            ("ANTHROPIC_API_KEY", KEY),
            ("ANTHROPIC_BASE_URL", anthropic.as_str()),
            ("DISCORD_BOT_TOKEN", TOKEN),
            ("OPEN_CLANKER_DISCORD_API_URL", api.as_str()),
        ],
    );
    assert!(dc.wait_until(WAIT, |dc| !dc.identifies().is_empty()).await);
    let mut last_error = String::new();
    for _ in 0..100 {
        let out = gw.cli(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        last_error = channel(&status, "discord")["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !last_error.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last_error.contains("4004"), "{last_error}");
    assert!(gw.cli(&["health"]).status.success());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(dc.identifies().len(), 1, "no retry with a refused token");
    let (exit, _, logs) = gw.terminate();
    assert!(exit.success(), "{logs}");
    assert!(!logs.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_and_discord_run_side_by_side() {
    const TG_TOKEN: &str = "123456:TEST-token_abcdefghij";
    let tg = telegram::spawn(TG_TOKEN).await.unwrap();
    let tg_api = tg.api_url();
    let s = setup(&[
        ("OPEN_CLANKER_DISCORD_ALLOW_FROM", "42"),
        ("TELEGRAM_BOT_TOKEN", TG_TOKEN),
        ("OPEN_CLANKER_TELEGRAM_API_URL", tg_api.as_str()),
        ("OPEN_CLANKER_TELEGRAM_ALLOW_FROM", "43"),
    ])
    .await;
    assert!(
        tg.wait_until(WAIT, |t| !t.calls_of("getUpdates").is_empty())
            .await
    );
    let status = s.status();
    assert_eq!(channel(&status, "telegram")["connected"], true, "{status}");
    assert_eq!(channel(&status, "discord")["connected"], true, "{status}");
    s.dc.push_dm(42, "from discord");
    tg.push_text(43, 43, "from telegram");
    s.wait_text(discord::dm_channel_id(42), 0, "echo: from discord")
        .await;
    assert!(
        tg.wait_until(WAIT, |t| t
            .messages(43)
            .first()
            .is_some_and(|m| m.text == "echo: from telegram"))
            .await,
        "{:#?}",
        tg.messages(43)
    );
    assert!(
        s.session(&format!("discord:{}", discord::dm_channel_id(42)))
            .is_some()
    );
    assert!(s.session("telegram:43").is_some());
    let (exit, elapsed, logs) = s.gw.terminate();
    assert!(exit.success(), "{logs}");
    assert!(elapsed < Duration::from_secs(15), "stopped in {elapsed:?}");
    assert!(!logs.contains(TOKEN) && !logs.contains(TG_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_discord_token() {
    let provider = provider().await;
    let dc = discord::spawn(TOKEN).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let anthropic = provider.anthropic_base_url();
    let api = dc.api_url();
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let doctor = |token: &str| {
        command(home.path())
            .arg("doctor")
            .env("ANTHROPIC_API_KEY", KEY)
            .env("ANTHROPIC_BASE_URL", &anthropic)
            .env("OPEN_CLANKER_LISTEN", &listen)
            .env("OPEN_CLANKER_DATA_DIR", home.path().join("data"))
            .env("DISCORD_BOT_TOKEN", token)
            .env("OPEN_CLANKER_DISCORD_API_URL", &api)
            .output()
            .unwrap()
    };
    let out = doctor(TOKEN);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!(
            "channel discord: token accepted: bot {}",
            bot_name()
        )),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");

    let out = doctor("MTE4.rejected.token-xyz");
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("FAIL channel discord") && text.contains("DISCORD_BOT_TOKEN"),
        "{text}"
    );
    assert!(text.contains("rejected the bot token"), "{text}");
    assert!(!text.contains("rejected.token-xyz"), "{text}");
    assert!(
        dc.calls_of("getCurrentUser").len() == 2 && dc.identifies().is_empty(),
        "doctor only asks who the bot is"
    );
}

/// Discord fetches every link in a message to preview it, unless the message has the
/// SUPPRESS_EMBEDS flag: an answer the model was talked into writing must not make Discord send
/// data anywhere without a click. Every message the bot sends or edits carries the flag, unless
/// `link_previews` allows previews.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_suppress_link_previews_unless_allowed() {
    let link = "see https://attacker.example/collect?data=secret";
    for (previews, flags) in [(None, discord::SUPPRESS_EMBEDS), (Some("true"), 0)] {
        let mut env = vec![("OPEN_CLANKER_DISCORD_ALLOW_FROM", "42")];
        env.extend(previews.map(|on| ("OPEN_CLANKER_DISCORD_LINK_PREVIEWS", on)));
        let s = setup(&env).await;
        let chat = discord::dm_channel_id(42);
        s.dc.push_dm(42, &format!("{link} #delay=300"));
        let messages = s
            .wait_text(chat, 0, &format!("echo: {link} #delay=300"))
            .await;
        assert_eq!(messages[0].flags, flags, "{messages:#?}");
        assert!(messages[0].edits >= 1, "streamed: {:#?}", s.dc.calls());
        // A stranger's pairing message and a command's answer go out the same way.
        s.dc.push_dm(9, "hello? https://attacker.example/");
        s.settled(discord::dm_channel_id(9), 1).await;
        s.dc.push_dm(42, "/help");
        s.settled(chat, 2).await;
        let sent: Vec<_> = ["createMessage", "editMessage"]
            .iter()
            .flat_map(|route| s.dc.calls_of(route))
            .collect();
        assert!(sent.len() >= 4, "{sent:#?}");
        for call in sent {
            assert_eq!(call.status, 200, "{call:#?}");
            assert_eq!(call.body["flags"].as_u64(), Some(flags), "{call:#?}");
        }
    }
}

/// Each channel has its own few pairing places, a stranger holds at most one, and an unanswered
/// code lapses after ten minutes: strangers filling Telegram's places block neither Discord nor,
/// for long, anyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_places_are_per_channel_one_per_sender_and_short_lived() {
    const TG_TOKEN: &str = "123456:TEST-token_abcdefghij";
    let tg = telegram::spawn(TG_TOKEN).await.unwrap();
    let tg_api = tg.api_url();
    let s = setup(&[
        ("TELEGRAM_BOT_TOKEN", TG_TOKEN),
        ("OPEN_CLANKER_TELEGRAM_API_URL", tg_api.as_str()),
    ])
    .await;
    assert!(
        tg.wait_until(WAIT, |t| !t.calls_of("getUpdates").is_empty())
            .await
    );
    let tg_texts =
        |chat: i64| -> Vec<String> { tg.messages(chat).into_iter().map(|m| m.text).collect() };
    let tg_wait = |chat: i64, n: usize| {
        let tg = &tg;
        async move {
            assert!(
                tg.wait_until(WAIT, |t| t.messages(chat).len() >= n).await,
                "chat {chat}: {:#?}",
                tg.messages(chat)
            );
        }
    };

    // Three strangers take Telegram's three places.
    let mut codes = Vec::new();
    for id in [101, 102, 103] {
        tg.push_text(id, id, "hello?");
    }
    for id in [101, 102, 103] {
        tg_wait(id, 1).await;
        let text = &tg_texts(id)[0];
        assert!(text.contains("valid for 10 minutes"), "{text}");
        codes.push(code_in(text));
    }
    // A fourth is asked to try again later.
    tg.push_text(104, 104, "me too");
    tg_wait(104, 1).await;
    assert!(
        tg_texts(104)[0].contains("too many pairing requests"),
        "{:?}",
        tg_texts(104)
    );
    // One of the three asking again gets the same code, not a second place.
    tg.push_text(101, 101, "still waiting");
    tg_wait(101, 2).await;
    assert_eq!(code_in(&tg_texts(101)[1]), codes[0]);
    // Discord has places of its own.
    s.dc.push_dm(77, "hello from discord");
    let messages = s.settled(discord::dm_channel_id(77), 1).await;
    let discord_code = code_in(&messages[0].content);
    assert!(
        messages[0].content.contains("valid for 10 minutes"),
        "{}",
        messages[0].content
    );

    // Four codes wait, each lapsing within ten minutes.
    let (ok, out, err) = s.cli(&["pairing", "list"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for code in codes.iter().chain([&discord_code]) {
        assert!(out.contains(code.as_str()), "{code} missing: {out}");
    }
    for line in lines {
        let minutes: u64 = line
            .rsplit("expires in ")
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no expiry in {line:?}"));
        assert!(minutes <= 10, "{line}");
    }
    assert_eq!(
        s.provider.request_count(),
        0,
        "no stranger reached the model"
    );
}
