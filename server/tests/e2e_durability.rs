//! `kill -9` of the gateway in the middle of streamed answers: every user message the client saw
//! acknowledged (the stream's first event) is in the database, partial answers are absent or
//! marked interrupted, and the database is sound.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use open_clanker_store::{MessageStatus, Role, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_acknowledged_message() {
    let provider = standin().await;
    let home = tempfile::tempdir().unwrap();
    let url = provider.anthropic_base_url();
    let env = standin_env(&url, &[]);
    let mut acknowledged = Vec::new();
    for round in 0..4 {
        let mut gw = Gateway::start(home.path(), &env);
        // Several streams at once, each killed at a different point of its answer.
        let mut chats = Vec::new();
        for i in 0..3 {
            let text = format!("round {round} chat {i} #tokens=40 #delay={}", 20 + 15 * i);
            let (child, session) = start_chat(&gw, &text);
            acknowledged.push((session, text));
            chats.push(child);
        }
        tokio::time::sleep(Duration::from_millis(150 + 100 * round)).await;
        signal(gw.pid(), "KILL");
        let _ = wait_timeout(&mut gw.child, Duration::from_secs(10));
        for mut c in chats {
            let _ = wait_timeout(&mut c, Duration::from_secs(10));
        }
    }

    let store = Store::connect(&Store::sqlite_url_for_dir(&home.path().join("data")))
        .await
        .unwrap();
    store.check_integrity().await.expect("a sound database");
    for (session, text) in &acknowledged {
        let history = store.history(session, 0, None).await.unwrap().items;
        assert_eq!(history[0].role, Role::User, "{history:?}");
        assert_eq!(&history[0].content, text);
        for m in &history[1..] {
            assert_eq!(m.role, Role::Assistant);
            assert!(
                m.status == MessageStatus::Interrupted || m.content.split(' ').count() == 40,
                "a stored answer is whole or marked interrupted: {m:?}"
            );
        }
    }
    // And the gateway starts again on that database and serves.
    let gw = Gateway::start(home.path(), &env);
    assert!(gw.cli(&["chat", "after the crash"]).status.success());
}

/// `open-clanker sessions show <id>`: the assistant's lines (`[id] assistant...: text`).
fn assistant_lines(gw: &Gateway, session: &str) -> Vec<String> {
    let out = gw.cli(&["sessions", "show", session]);
    stdout(&out)
        .lines()
        .filter(|l| l.contains("] assistant"))
        .map(str::to_string)
        .collect()
}

/// Starts `open-clanker chat <text>` and returns it with its session id: the CLI prints
/// "session <id>" when the stream's first event (the stored ids) arrives.
fn start_chat(gw: &Gateway, text: &str) -> (std::process::Child, String) {
    let mut child = gw
        .cli_command(&["chat", text])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let session = line
        .strip_prefix("session ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no acknowledgement: {line:?}"))
        .to_string();
    (child, session)
}

/// Polls `sessions show` until the answer being streamed is in the history (a checkpoint: marked
/// interrupted until it is complete).
fn wait_for_checkpoint(gw: &Gateway, session: &str) -> String {
    poll(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "the answer being streamed never reached the history",
        || {
            assistant_lines(gw, session)
                .into_iter()
                .find(|l| l.contains("[interrupted]: tok0 tok1"))
        },
    )
}

/// Issue 12: `kill -9` in the middle of an answer keeps what was streamed so far (checkpointed
/// while it streams), marked interrupted; the restarted gateway marks it cut by a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_answer_keeps_the_partial_answer_marked_interrupted() {
    let provider = standin().await;
    let home = tempfile::tempdir().unwrap();
    let url = provider.anthropic_base_url();
    let env = standin_env(&url, &[]);
    let mut gw = Gateway::start(home.path(), &env);
    // 300 words, 50 ms apart: 15 s, far longer than the test waits.
    let (mut chat, session) = start_chat(&gw, "a slow answer #tokens=300 #delay=50");
    wait_for_checkpoint(&gw, &session);
    signal(gw.pid(), "KILL");
    let _ = wait_timeout(&mut gw.child, Duration::from_secs(10));
    let _ = wait_timeout(&mut chat, Duration::from_secs(10));

    let gw = Gateway::start(home.path(), &env);
    let store = Store::connect(&Store::sqlite_url_for_dir(&home.path().join("data")))
        .await
        .unwrap();
    let history = store.history(&session, 0, None).await.unwrap().items;
    assert_eq!(history.len(), 2, "{history:?}");
    let answer = &history[1];
    assert_eq!(answer.role, Role::Assistant);
    assert_eq!(answer.status, MessageStatus::Interrupted, "{answer:?}");
    assert_eq!(answer.stop_reason.as_deref(), Some("crash"), "{answer:?}");
    let full: Vec<String> = (0..300).map(|i| format!("tok{i}")).collect();
    let full = full.join(" ");
    assert!(answer.content.starts_with("tok0 tok1"), "{answer:?}");
    assert!(
        full.starts_with(&answer.content) && answer.content.len() < full.len(),
        "not a prefix of the answer: {answer:?}"
    );
    let sessions = store.get_session(&session).await.unwrap().unwrap();
    assert_eq!(sessions.message_count, 2);
    // Through the API too, and the gateway goes on serving that session.
    let lines = assistant_lines(&gw, &session);
    assert!(lines[0].contains("[interrupted]"), "{lines:?}");
    let out = gw.cli(&["chat", "--session", &session, "and now?"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Issue 12: an answer checkpointed while it streams is completed in the same row (not stored a
/// second time), counted once in its session and in the day's usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpointed_answer_is_completed_in_the_same_row() {
    let s = Stack::start(&[]).await;
    let gw = &s.gw;
    let home = &s.home;
    // 60 words, 50 ms apart: 3 s, checkpointed on the way.
    let (mut chat, session) = start_chat(gw, "a long answer #tokens=60 #delay=50");
    let seen = wait_for_checkpoint(gw, &session);
    let status = wait_timeout(&mut chat, Duration::from_secs(30));
    assert!(status.success());

    let lines = assistant_lines(gw, &session);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let id = |l: &str| l.split(']').next().unwrap().to_string();
    assert_eq!(id(&lines[0]), id(&seen), "the answer moved to another row");
    assert!(!lines[0].contains("[interrupted]"), "{lines:?}");
    let full: Vec<String> = (0..60).map(|i| format!("tok{i}")).collect();
    assert!(lines[0].ends_with(&full.join(" ")), "{lines:?}");

    let status = gw.status_json();
    assert_eq!(status["store"]["messages"], 2, "{status}");
    assert_eq!(status["usage_today"][0]["turns"], 1, "{status}");
    assert_eq!(status["usage_today"][0]["output_tokens"], 60, "{status}");
    let (st, _, log) = s.gw.terminate();
    assert!(st.success(), "{log}");
    let store = Store::connect(&Store::sqlite_url_for_dir(&home.path().join("data")))
        .await
        .unwrap();
    let history = store.history(&session, 0, None).await.unwrap().items;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1].status, MessageStatus::Complete);
    assert_eq!(history[1].usage.output_tokens, 60);
    assert_eq!(
        store
            .get_session(&session)
            .await
            .unwrap()
            .unwrap()
            .message_count,
        2
    );
}
