//! Credentials inside provider base URLs (`http://user:PASSWORD@host/v1`, `?api_key=...`) are
//! shown nowhere: not in GetStatus, `status` (text and JSON), `config-validate`, `doctor`, the
//! gateway's logs at trace level, nor in a failed turn's error (on the CLI, the OpenAI-compatible
//! endpoint, or in a Telegram chat).

mod common;

use common::*;

const OPENAI_PW: &str = "openai-PW-hunter2";
const ANTHROPIC_PW: &str = "anthropic-PW-hunter3";
const QUERY_SECRET: &str = "query-SECRET-4711";
const TG_TOKEN: &str = "123456:TEST-redaction_abcdefghij";

fn assert_no_secret(what: &str, text: &str) {
    for secret in [OPENAI_PW, ANTHROPIC_PW, QUERY_SECRET] {
        assert!(
            !text.contains(secret),
            "{what} shows the password {secret}:\n{text}"
        );
    }
}

fn output_text(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_in_base_urls_are_shown_nowhere() {
    let provider = standin().await;
    let tg = spawn_telegram(TG_TOKEN).await;
    let home = tempfile::tempdir().unwrap();
    let port = unused_port();
    // OpenAI at a closed port (every turn fails), Anthropic at the stand-in (turns succeed).
    let openai = format!("http://proxy-user:{OPENAI_PW}@127.0.0.1:{port}/v1");
    let standin = provider.anthropic_base_url();
    let anthropic = standin.replacen("http://", &format!("http://proxy-user:{ANTHROPIC_PW}@"), 1);
    let tg_api = tg.api_url();
    let [tg_token, tg_api] = telegram_env(TG_TOKEN, &tg_api);
    let env = standin_env_both(
        &anthropic,
        &openai,
        &[
            ("OPEN_CLANKER_DEFAULT_PROVIDER", "openai"),
            tg_token,
            tg_api,
            ("OPEN_CLANKER_TELEGRAM_ALLOW_FROM", "42"),
            ("RUST_LOG", "trace"),
        ],
    );
    let gw = Gateway::start(home.path(), &env);

    // GetStatus, through `status --json` and `status`: where each provider points, no password.
    let out = gw.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_no_secret("status --json", &output_text(&out));
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let base_url = |name: &str| {
        status["providers"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["name"] == name))
            .map(|p| p["base_url"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(
        base_url("openai"),
        format!("http://***@127.0.0.1:{port}/v1")
    );
    assert_eq!(
        base_url("anthropic"),
        standin.replacen("http://", "http://***@", 1)
    );
    let out = gw.cli(&["status"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_no_secret("status", &output_text(&out));
    assert!(
        stdout(&out).contains(&format!("http://***@127.0.0.1:{port}/v1")),
        "{}",
        stdout(&out)
    );

    // A failed turn's error says where it could not connect, without the password.
    let out = gw.cli(&["chat", "hello"]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert_no_secret("a failed chat", &output_text(&out));
    assert!(
        stderr(&out).contains(&format!("127.0.0.1:{port}")),
        "{}",
        stderr(&out)
    );
    // A turn through the URL with credentials works (the stand-in ignores Basic auth).
    let out = gw.cli(&["chat", "--provider", "anthropic", "hello"]);
    assert_eq!(stdout(&out), "echo: hello\n", "{}", stderr(&out));
    assert_no_secret("a chat", &output_text(&out));

    // The OpenAI-compatible endpoint's error.
    let (status_line, _, body) = http_request(
        &gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        r#"{"model":"openai/gpt-4.1-mini","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert!(!status_line.contains(" 200 "), "{status_line} {body}");
    assert_no_secret("/v1/chat/completions", &body);

    // A failed turn's note in a Telegram chat.
    polling(&tg).await;
    tg.push_text(42, 42, "are you there?");
    assert!(
        tg.wait_until(WAIT, |t| t
            .messages(42)
            .iter()
            .any(|m| m.text.contains("⚠️")))
            .await,
        "no error note in the chat: {:#?}",
        tg.messages(42)
    );
    for m in tg.messages(42) {
        assert_no_secret("the Telegram chat", &m.text);
    }

    // config-validate and doctor, with the same environment.
    let data = home.path().join("data-doctor");
    let env = [
        &env[..],
        &[("OPEN_CLANKER_DATA_DIR", data.to_str().unwrap())],
    ]
    .concat();
    let run = |args: &[&str]| run_in(home.path(), args, &env);
    let out = run(&["config-validate"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_no_secret("config-validate", &output_text(&out));
    let out = run(&["doctor"]);
    let text = output_text(&out);
    assert_no_secret("doctor", &text);
    assert!(
        text.contains(&format!("http://***@127.0.0.1:{port}")) && text.contains("***@"),
        "{text}"
    );

    // And the gateway's own logs, at trace level.
    let (exit, _, logs) = gw.terminate();
    assert!(exit.success(), "{logs}");
    assert!(logs.contains("TRACE"), "trace logging was on");
    assert_no_secret("the gateway's logs", &logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_in_a_base_url_query_is_shown_nowhere() {
    let home = tempfile::tempdir().unwrap();
    let port = unused_port();
    let openai = format!("http://127.0.0.1:{port}/v1?api_key={QUERY_SECRET}");
    let anthropic = format!("http://u:{ANTHROPIC_PW}@127.0.0.1:{port}/?Signature={QUERY_SECRET}");
    let env = standin_env_both(&anthropic, &openai, &[("RUST_LOG", "trace")]);
    let run = |args: &[&str]| run_in(home.path(), args, &env);
    // The gateway refuses such a base URL, and says which one without its secrets.
    for args in [&["config-validate"][..], &["doctor"], &["gateway"]] {
        let out = run(args);
        let text = output_text(&out);
        assert!(!out.status.success(), "{args:?}: {text}");
        assert_no_secret(&format!("{args:?}"), &text);
        assert!(
            text.contains("base_url") && text.contains("api_key=***"),
            "{args:?}: {text}"
        );
        assert!(text.contains("Signature=***"), "{args:?}: {text}");
    }
}
