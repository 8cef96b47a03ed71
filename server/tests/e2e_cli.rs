//! End to end through the real binary: gateway + CLI against a stand-in provider on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streams_persists_and_survives_a_restart() {
    let provider = standin().await;
    let home = tempfile::tempdir().unwrap();
    let anthropic = provider.anthropic_base_url();
    let openai = provider.openai_base_url();
    let env = standin_env_both(&anthropic, &openai, &[]);
    let gw = Gateway::start(home.path(), &env);

    // A first message creates a session and streams the answer to stdout.
    let out = gw.cli(&["chat", "hello there"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "echo: hello there\n");
    let session = session_from(&stderr(&out));

    // A follow-up in the same session carries the history to the provider.
    let out = gw.cli(&[
        "chat",
        "--session",
        &session,
        "--provider",
        "openai",
        "second",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "echo: second\n");
    let last = provider.requests().pop().expect("a recorded request");
    let messages = last.body["messages"].as_array().expect("messages").clone();
    let contents: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents, ["hello there", "echo: hello there", "second"]);

    // Status over gRPC.
    let out = gw.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["store"]["backend"], "sqlite");
    assert_eq!(status["store"]["sessions"], 1);
    assert_eq!(status["store"]["messages"], 4);
    assert_eq!(status["providers"][0]["configured"], true);
    assert!(!stdout(&out).contains(KEY));

    // Health, over the gRPC health service and plain HTTP.
    assert!(gw.cli(&["health"]).status.success());
    let (line, body) = http_get(&gw.addr, "/health");
    assert!(line.contains("200"), "{line}");
    assert!(body.contains("ok"), "{body}");

    // SIGTERM: a clean, quick exit.
    let (exit, took, logs) = gw.terminate();
    assert!(exit.success(), "exit {exit:?}\n{logs}");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(!logs.contains(KEY), "the key leaked into the logs");

    // Restart on the same data directory: the history is still there.
    let gw = Gateway::start(home.path(), &env);
    let out = gw.cli(&["sessions", "show", &session]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    for needle in [
        "user: hello there",
        "assistant: echo: hello there",
        "user: second",
        "assistant: echo: second",
    ] {
        assert!(shown.contains(needle), "{needle:?} missing from:\n{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_loses_nothing() {
    // Only Anthropic is configured.
    let s = Stack::start(&[]).await;
    let gw = &s.gw;
    let provider = &s.provider;

    let out = gw.cli(&["chat", "keep me"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let session = session_from(&stderr(&out));

    let cases: &[(&[&str], &str)] = &[
        (&["chat", "   "], "text is empty"),
        (&["chat", "--session", "no-such-session", "hi"], "not found"),
        (&["chat", "--provider", "openai", "hi"], "OPENAI_API_KEY"),
        (&["chat", "--provider", "gemini", "hi"], "unknown provider"),
        (&["sessions", "show", "no-such-session"], "not found"),
    ];
    for (args, needle) in cases {
        let out = gw.cli(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = stderr(&out);
        assert!(err.contains(needle), "{args:?}: {needle:?} not in {err:?}");
    }
    let long = "x".repeat(40_000);
    let out = gw.cli(&["chat", &long]);
    assert!(
        stderr(&out).contains("the limit is 32000"),
        "{}",
        stderr(&out)
    );

    // Provider failures: a rejected key is named, never shown; nothing is retried on 401.
    let before = provider.request_count();
    let out = gw.cli(&["chat", "--session", &session, "#status=401"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("ANTHROPIC_API_KEY"), "{err}");
    assert!(!err.contains(KEY), "{err}");
    assert_eq!(
        provider.request_count(),
        before + 1,
        "401 must not be retried"
    );

    // A stream cut midway: the caller is told, the partial answer is stored as interrupted.
    // (In a session of its own: the unanswered "#status=401" above stays in its session's
    // context, merged with the next user message, as the provider would see it.)
    let out = gw.cli(&["chat", "--key", "cut", "#tokens=10 #cut=3"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).starts_with("tok0 tok1 tok2"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("UNAVAILABLE"), "{}", stderr(&out));
    let cut_session = session_from(&stderr(&out));

    // The gateway kept serving and nothing stored was lost.
    let out = gw.cli(&["sessions", "show", &session]);
    let shown = stdout(&out);
    assert!(shown.contains("user: keep me"), "{shown}");
    assert!(shown.contains("assistant: echo: keep me"), "{shown}");
    assert!(shown.contains("user: #status=401"), "{shown}");
    let shown = stdout(&gw.cli(&["sessions", "show", &cut_session]));
    assert!(shown.contains("[interrupted]: tok0 tok1 tok2"), "{shown}");
    assert!(gw.cli(&["health"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_open_stream_finish() {
    let s = Stack::start(&[]).await;
    let gw = &s.gw;
    let chat = gw
        .cli_command(&["chat", "#tokens=15 #delay=100"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let the answer start, then ask the gateway to stop.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (exit, _took, logs) = s.gw.terminate();
    assert!(exit.success(), "{logs}");
    let out = chat.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let words: Vec<String> = (0..15).map(|i| format!("tok{i}")).collect();
    assert_eq!(stdout(&out).trim_end(), words.join(" "));
}

#[test]
fn config_commands() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("oc.toml");
    let path_s = path.to_str().unwrap();
    let out = command(home.path())
        .args(["config-generate", "--output", path_s])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = command(home.path())
        .args(["config-validate", "--config", path_s])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid"));

    // Refuses to overwrite.
    let out = command(home.path())
        .args(["config-generate", "--output", path_s])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"));

    std::fs::write(
        &path,
        "[gateway]\nlisten = \"everywhere\"\n[chat]\ndefault_provider = \"gemini\"\n",
    )
    .unwrap();
    let out = command(home.path())
        .args(["config-validate", "--config", path_s])
        .env("OPENAI_API_KEY", KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("gateway.listen"), "{err}");
    assert!(err.contains("chat.default_provider"), "{err}");
    assert!(!err.contains(KEY));

    // A gateway with a broken config does not start, and says why.
    let out = command(home.path())
        .args(["gateway", "--config", path_s])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("gateway.listen"));

    // A missing explicit config file is an error, not silently ignored.
    let out = command(home.path())
        .args(["config-validate", "--config", "/nonexistent/oc.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent/oc.toml"));
}
