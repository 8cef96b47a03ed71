//! The Telegram channel end to end: the real gateway binary, the Telegram Bot API stand-in and the
//! stand-in provider, all on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;
use open_clanker_testkit::telegram::{BOT_USERNAME, Failure, TelegramStandIn};

type Setup = ChatGateway<TelegramStandIn>;

/// A gateway with Telegram pointed at a fresh stand-in.
async fn setup(extra: &[(&str, &str)]) -> Setup {
    Setup::telegram(extra, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_dm_gets_a_streamed_reply_that_is_stored() {
    let s = setup(&[("OPEN_CLANKER_TELEGRAM_ALLOW_FROM", "42")]).await;
    s.polling().await;
    let status = s.status();
    assert_eq!(status["channels"][0]["name"], "telegram");
    assert_eq!(status["channels"][0]["connected"], true, "{status}");
    assert_eq!(
        status["channels"][0]["bot_name"],
        format!("@{BOT_USERNAME}")
    );
    assert_eq!(status["channels"][1]["name"], "discord");
    assert_eq!(status["channels"][1]["enabled"], false);

    s.platform.push_text(
        42,
        42,
        "one two three four five six seven **eight** #delay=300",
    );
    let answer = "echo: one two three four five six seven eight #delay=300";
    let messages = s.wait_text(42, 0, answer).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].text, answer, "the Markdown is rendered");
    assert_eq!(messages[0].parse_mode.as_deref(), Some("HTML"));
    assert!(
        messages[0].raw.contains("<b>eight</b>"),
        "{}",
        messages[0].raw
    );
    // Streamed: a first message, then edits at a throttled pace.
    assert!(messages[0].edits >= 1, "{:#?}", s.platform.calls());
    let edits = s.platform.calls_of("editMessageText");
    for pair in edits.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(1400),
            "edits too fast: {edits:#?}"
        );
    }
    assert!(!s.platform.calls_of("sendChatAction").is_empty());
    assert_eq!(s.platform.calls_of("sendMessage").len(), 1);
    assert_eq!(s.platform.pending_updates(), 0, "the update was confirmed");

    // Stored in the chat's session, found by its key.
    let (id, count) = s.session("telegram:42").expect("session telegram:42");
    assert_eq!(count, 2);
    let (ok, out, err) = s.cli(&["sessions", "show", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("user: one two three"), "{out}");
    assert!(
        out.contains(&format!(
            "assistant: {}",
            answer.replace("eight", "**eight**")
        )),
        "{out}"
    );
    let (exit, _, logs) = s.gw.terminate();
    assert!(exit.success(), "{logs}");
    assert!(
        !logs.contains(TELEGRAM_TOKEN),
        "the bot token leaked into the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_pairs_and_is_answered_after_approval() {
    let s = setup(&[]).await;
    s.polling().await;
    s.platform.push_text(77, 77, "hello?");
    let messages = s.settled(77, 1).await;
    let code = code_in(&messages[0].text);
    assert!(
        messages[0]
            .text
            .contains(&format!("open-clanker pairing approve telegram {code}"))
    );
    assert_eq!(
        s.provider.request_count(),
        0,
        "a stranger's message reached the model"
    );
    assert!(
        s.session("telegram:77").is_none(),
        "nothing is stored for strangers"
    );

    // The same stranger asking again gets the same code.
    s.platform.push_text(77, 77, "please");
    let messages = s.settled(77, 2).await;
    assert_eq!(code_in(&messages[1].text), code);

    let (ok, out, err) = s.cli(&["pairing", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&code) && out.contains("77") && out.contains("@user77"),
        "{out}"
    );

    // Bad channel and unknown code are refused with clear errors.
    let (ok, _, err) = s.cli(&["pairing", "approve", "slack", &code]);
    assert!(!ok && err.contains("unknown channel"), "{err}");
    let (ok, _, err) = s.cli(&["pairing", "approve", "telegram", "ZZZZ2222"]);
    assert!(!ok && err.to_lowercase().contains("not found"), "{err}");

    let (ok, out, err) = s.cli(&["pairing", "approve", "telegram", &code.to_lowercase()]);
    assert!(ok, "{err}");
    assert!(out.contains("77"), "{out}");
    let (ok, _, _) = s.cli(&["pairing", "approve", "telegram", &code]);
    assert!(!ok, "a code is used once");
    let (ok, out, _) = s.cli(&["pairing", "allowed"]);
    assert!(ok && out.contains("77") && out.contains("pairing"), "{out}");

    s.platform.push_text(77, 77, "now?");
    s.wait_text(77, 2, "echo: now?").await;
    assert_eq!(s.provider.request_count(), 1);

    // Revoked: back to pairing.
    let (ok, _, err) = s.cli(&["pairing", "revoke", "telegram", "77"]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.cli(&["pairing", "revoke", "telegram", "77"]);
    assert!(!ok && err.to_lowercase().contains("not"), "{err}");
    s.platform.push_text(77, 77, "still there?");
    let messages = s.settled(77, 4).await;
    assert_ne!(code_in(&messages[3].text), code, "a fresh code");
    assert_eq!(s.provider.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_answers_are_split_and_reset_starts_afresh() {
    let s = setup(&[("OPEN_CLANKER_TELEGRAM_ALLOW_FROM", "42")]).await;
    s.polling().await;
    s.platform.push_text(42, 42, "#tokens=1500");
    let answer: String = (0..1500)
        .map(|i| format!("tok{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let complete = s
        .platform
        .wait_until(WAIT, |t| {
            t.messages(42)
                .last()
                .is_some_and(|m| m.text.ends_with("tok1499"))
        })
        .await;
    assert!(complete, "{:#?}", s.platform.messages(42));
    let messages = s.platform.messages(42);
    assert!(answer.len() > 2 * 4096);
    assert_eq!(
        messages.len(),
        3,
        "{:?}",
        messages.iter().map(|m| m.text.len()).collect::<Vec<_>>()
    );
    for m in &messages {
        assert!(m.text.chars().count() <= 4096);
        assert!(!m.text.starts_with(' ') && !m.text.ends_with(' '));
    }
    let joined: Vec<&str> = messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(joined.join(" "), answer, "words are whole and in order");

    let (_, count) = s.session("telegram:42").unwrap();
    assert_eq!(count, 2);
    s.platform.push_text(42, 42, "/reset");
    let messages = s.settled(42, 4).await;
    assert!(
        messages[3].text.contains("Fresh start"),
        "{}",
        messages[3].text
    );
    let (_, count) = s.session("telegram:42").unwrap();
    assert_eq!(count, 0, "history cleared");
    s.platform.push_text(42, 42, "again");
    s.wait_text(42, 4, "echo: again").await;
    // The provider saw no earlier history after the reset.
    let last = s.provider.requests().pop().unwrap();
    assert_eq!(
        last.body["messages"].as_array().unwrap().len(),
        1,
        "{}",
        last.body
    );

    s.platform.push_text(42, 42, "/status");
    let messages = s.settled(42, 6).await;
    assert!(
        messages[5].text.contains("telegram:42") && messages[5].text.contains("2 messages"),
        "{}",
        messages[5].text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out_and_refused_html_falls_back_to_plain_text() {
    let s = setup(&[("OPEN_CLANKER_TELEGRAM_ALLOW_FROM", "42")]).await;
    s.polling().await;
    s.platform.fail_next("sendMessage", Failure::RetryAfter(2));
    s.platform.push_text(42, 42, "hi");
    s.wait_text(42, 0, "echo: hi").await;
    let sends = s.platform.calls_of("sendMessage");
    assert_eq!(sends[0].status, 429);
    let ok = sends
        .iter()
        .find(|c| c.status == 200)
        .expect("a successful send");
    assert!(
        ok.at - sends[0].at >= Duration::from_secs(2),
        "retry_after honoured: {sends:#?}"
    );

    s.platform
        .fail_next("sendMessage", Failure::CantParseEntities);
    s.platform.push_text(42, 42, "plain *please*");
    let messages = s.wait_text(42, 1, "echo: plain *please*").await;
    assert_eq!(messages[1].parse_mode, None, "resent without formatting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_answer_mentions_with_per_sender_sessions() {
    let s = Setup::telegram(
        &[("OPEN_CLANKER_TELEGRAM_DM_POLICY", "allowlist")],
        Some("[channels.telegram]\ngroup_allow_from = [-100]\n"),
    )
    .await;
    s.polling().await;
    s.platform.push_text(-100, 5, "talking among ourselves");
    let asked = s
        .platform
        .push_text(-100, 5, &format!("@{BOT_USERNAME} what is up"));
    let messages = s.wait_text(-100, 0, "echo: what is up").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].reply_to, Some(asked));
    // Another member replies to the bot: answered in their own session.
    s.platform
        .push_message(-100, 6, "and me", Some(messages[0].message_id));
    s.wait_text(-100, 1, "echo: and me").await;
    assert_eq!(s.session("telegram:-100:5").unwrap().1, 2);
    assert_eq!(s.session("telegram:-100:6").unwrap().1, 2);
    assert_eq!(s.provider.request_count(), 2);
    // Another group is not on the list.
    s.platform
        .push_text(-200, 5, &format!("@{BOT_USERNAME} hi"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(s.platform.messages(-200).is_empty());
    // Under the allowlist DM policy a stranger is ignored: no code, no model.
    s.platform.push_text(9, 9, "anyone?");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(s.platform.messages(9).is_empty());
    assert_eq!(s.provider.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_leaves_the_gateway_serving() {
    let tg = spawn_telegram("999:the-real-token").await;
    let s = Setup::start(tg, TELEGRAM_TOKEN, &[], None).await;
    let (tg, gw) = (&s.platform, &s.gw);
    assert!(
        tg.wait_until(WAIT, |t| !t.calls_of("getMe").is_empty())
            .await
    );
    let status = last_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || gw.status_json(),
        |status| status["channels"][0]["last_error"] != "",
    )
    .await;
    let tg_status = &status["channels"][0];
    assert_eq!(tg_status["enabled"], true);
    assert_eq!(tg_status["connected"], false);
    assert!(
        tg_status["last_error"]
            .as_str()
            .unwrap()
            .contains("rejected the bot token"),
        "{status}"
    );
    assert!(gw.cli(&["health"]).status.success());
    let out = gw.cli(&["chat", "still here?"]);
    assert_eq!(stdout(&out), "echo: still here?\n");
    let out = gw.cli(&["status"]);
    assert!(
        stdout(&out).contains("rejected the bot token"),
        "{}",
        stdout(&out)
    );
    // One attempt, no hammering.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(tg.calls_of("getMe").len(), 1);
    assert!(tg.calls_of("getUpdates").is_empty());
    let (exit, _, logs) = s.gw.terminate();
    assert!(exit.success(), "{logs}");
    assert_eq!(logs.matches("rejected the bot token").count(), 1, "{logs}");
    assert!(!logs.contains(TELEGRAM_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_serves_the_secret_path_on_the_gateway_port() {
    let s = setup(&[
        ("OPEN_CLANKER_TELEGRAM_ALLOW_FROM", "42"),
        ("OPEN_CLANKER_TELEGRAM_MODE", "webhook"),
        (
            "OPEN_CLANKER_TELEGRAM_WEBHOOK_URL",
            "https://bot.example.com/tg/hook-1234",
        ),
        ("TELEGRAM_WEBHOOK_SECRET", "s3cret-token_1"),
    ])
    .await;
    assert!(
        s.platform
            .wait_until(WAIT, |t| !t.calls_of("setWebhook").is_empty())
            .await
    );
    let set = &s.platform.calls_of("setWebhook")[0];
    assert_eq!(set.params["url"], "https://bot.example.com/tg/hook-1234");
    assert_eq!(set.params["secret_token"], "s3cret-token_1");
    assert!(s.platform.calls_of("getUpdates").is_empty());

    let update = serde_json::json!({
        "update_id": 1,
        "message": {
            "message_id": 5, "date": 0,
            "chat": {"id": 42, "type": "private", "first_name": "A"},
            "from": {"id": 42, "is_bot": false, "first_name": "A"},
            "text": "via webhook"
        }
    })
    .to_string();
    let json = ("content-type", "application/json");
    let (line, _, _) = http_request(
        &s.gw.addr,
        "POST",
        "/tg/hook-1234",
        &[json, (telegram_secret_header(), "wrong")],
        &update,
    );
    assert!(line.contains("401"), "{line}");
    let (line, _, _) = http_request(&s.gw.addr, "POST", "/tg/hook-1234", &[json], &update);
    assert!(line.contains("401"), "{line}");
    assert!(s.platform.messages(42).is_empty());
    let (line, _, _) = http_request(
        &s.gw.addr,
        "POST",
        "/tg/hook-1234",
        &[json, (telegram_secret_header(), "s3cret-token_1")],
        &update,
    );
    assert!(line.contains("200"), "{line}");
    s.wait_text(42, 0, "echo: via webhook").await;
}

fn telegram_secret_header() -> &'static str {
    "X-Telegram-Bot-Api-Secret-Token"
}

/// Telegram fetches the first link of a message to preview it: every message the bot sends or
/// edits asks for no preview (`link_preview_options.is_disabled`), unless `link_previews` allows
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_ask_for_no_link_preview_unless_allowed() {
    let link = "see https://attacker.example/collect?data=secret";
    for previews in [None, Some("true")] {
        let mut env = vec![("OPEN_CLANKER_TELEGRAM_ALLOW_FROM", "42")];
        env.extend(previews.map(|on| ("OPEN_CLANKER_TELEGRAM_LINK_PREVIEWS", on)));
        let s = setup(&env).await;
        s.polling().await;
        s.platform.push_text(42, 42, &format!("{link} #delay=300"));
        let messages = s
            .wait_text(42, 0, &format!("echo: {link} #delay=300"))
            .await;
        let disabled = previews.is_none();
        assert_eq!(messages[0].link_preview_disabled, disabled, "{messages:#?}");
        assert!(
            messages[0].edits >= 1,
            "streamed: {:#?}",
            s.platform.calls()
        );
        // A stranger's pairing message goes out the same way.
        s.platform
            .push_text(9, 9, "hello? https://attacker.example/");
        s.settled(9, 1).await;
        let sent: Vec<_> = ["sendMessage", "editMessageText"]
            .iter()
            .flat_map(|method| s.platform.calls_of(method))
            .collect();
        assert!(sent.len() >= 3, "{sent:#?}");
        for call in sent {
            assert_eq!(call.status, 200, "{call:#?}");
            let is_disabled = call.params["link_preview_options"]["is_disabled"].as_bool();
            assert_eq!(is_disabled.unwrap_or(false), disabled, "{call:#?}");
        }
    }
}
