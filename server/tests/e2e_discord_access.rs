//! The Discord channel end to end, who gets in: pairing, refused bot tokens and `doctor`, through
//! the real gateway binary, the Discord stand-in and the stand-in provider, all on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;
use open_clanker_testkit::discord::{self, DiscordStandIn};

type Setup = ChatGateway<DiscordStandIn>;

/// A gateway with Discord pointed at a fresh stand-in and `extra` environment, once connected.
async fn setup(extra: &[(&str, &str)]) -> Setup {
    Setup::discord(extra, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_pairs_and_is_answered_after_approval() {
    let s = setup(&[]).await;
    let chat = discord::dm_channel_id(77);
    s.platform.push_dm(77, "hello?");
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

    s.platform.push_dm(77, "now?");
    s.wait_text(chat, 1, "echo: now?").await;
    assert_eq!(s.provider.request_count(), 1);
}

/// Each channel has its own few pairing places, a stranger holds at most one, and an unanswered
/// code lapses after ten minutes: strangers filling Telegram's places block neither Discord nor,
/// for long, anyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_places_are_per_channel_one_per_sender_and_short_lived() {
    let tg = spawn_telegram(TELEGRAM_TOKEN).await;
    let tg_api = tg.api_url();
    let s = setup(&telegram_env(TELEGRAM_TOKEN, &tg_api)).await;
    polling(&tg).await;
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
    s.platform.push_dm(77, "hello from discord");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_leaves_the_gateway_serving() {
    let dc = spawn_discord("the-real-token").await;
    let s = Setup::start(dc, DISCORD_TOKEN, &[], None).await;
    let (dc, gw) = (&s.platform, &s.gw);
    let status = last_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || gw.status_json(),
        |status| channel(status, "discord")["last_error"] != "",
    )
    .await;
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
    let (exit, _, logs) = s.gw.terminate();
    assert!(exit.success(), "{logs}");
    assert_eq!(logs.matches("rejected the bot token").count(), 1, "{logs}");
    assert!(!logs.contains(DISCORD_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_by_the_gateway_is_one_clear_error() {
    let dc = spawn_discord(DISCORD_TOKEN).await;
    dc.reject_identify(true);
    let s = Setup::start(dc, DISCORD_TOKEN, &[], None).await;
    let (dc, gw) = (&s.platform, &s.gw);
    assert!(dc.wait_until(WAIT, |dc| !dc.identifies().is_empty()).await);
    let last_error = last_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            channel(&gw.status_json(), "discord")["last_error"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        },
        |last_error| !last_error.is_empty(),
    )
    .await;
    assert!(last_error.contains("4004"), "{last_error}");
    assert!(gw.cli(&["health"]).status.success());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(dc.identifies().len(), 1, "no retry with a refused token");
    let (exit, _, logs) = s.gw.terminate();
    assert!(exit.success(), "{logs}");
    assert!(!logs.contains(DISCORD_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_discord_token() {
    let provider = standin().await;
    let dc = spawn_discord(DISCORD_TOKEN).await;
    let home = tempfile::tempdir().unwrap();
    let anthropic = provider.anthropic_base_url();
    let api = dc.api_url();
    let doctor = |token: &str| {
        let env = standin_env(&anthropic, &discord_env(token, &api));
        run_in(home.path(), &["doctor"], &env)
    };
    let out = doctor(DISCORD_TOKEN);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!(
            "channel discord: token accepted: bot {}",
            discord_bot_name()
        )),
        "{text}"
    );
    assert!(!text.contains(DISCORD_TOKEN), "{text}");

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
