//! `kill -9` of the gateway in the middle of streamed answers: every user message the client saw
//! acknowledged (the stream's first event) is in the database, partial answers are absent or
//! marked interrupted, and the database is sound.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use open_clanker_store::{MessageStatus, Role, Store};
use open_clanker_testkit::{StandInConfig, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_acknowledged_message() {
    let provider = spawn(StandInConfig {
        api_key: KEY.to_string(),
        default_delay: Duration::ZERO,
        ..Default::default()
    })
    .await
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let url = provider.anthropic_base_url();
    let env = [
        ("ANTHROPIC_API_KEY", KEY),
        ("ANTHROPIC_BASE_URL", url.as_str()),
    ];
    let mut acknowledged = Vec::new();
    for round in 0..4 {
        let mut gw = Gateway::start(home.path(), &env);
        // Several streams at once, each killed at a different point of its answer.
        let mut chats = Vec::new();
        for i in 0..3 {
            let text = format!("round {round} chat {i} #tokens=40 #delay={}", 20 + 15 * i);
            let mut child = command(home.path())
                .args(["chat", &text])
                .env("OPEN_CLANKER_ADDR", &gw.addr)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // The CLI prints "session <id>" when the stream's first event (the stored ids) arrives.
            let stderr = child.stderr.take().unwrap();
            let mut line = String::new();
            BufReader::new(stderr).read_line(&mut line).unwrap();
            let session = line
                .strip_prefix("session ")
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or_else(|| panic!("no acknowledgement: {line:?}"))
                .to_string();
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
