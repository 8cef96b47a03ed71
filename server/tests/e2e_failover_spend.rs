//! Failover to the next provider before the first token, prices stored per message, and spend
//! caps refusing a turn before any provider call — through the real binary.

mod common;

use common::*;

/// A config with no retries (so failures are immediate), a price of 0.1 USD per token for the
/// Anthropic default model, and `extra` appended.
fn write_config(home: &std::path::Path, extra: &str) -> String {
    let path = home.join("oc.toml");
    std::fs::write(
        &path,
        format!(
            "[providers.anthropic]\nmax_retries = 0\n[providers.openai]\nmax_retries = 0\n\
             [pricing.\"claude-sonnet-4-5\"]\ninput_per_mtok = 100000.0\noutput_per_mtok = 100000.0\n{extra}"
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_before_the_first_token_only() {
    let provider = standin().await;
    let home = tempfile::tempdir().unwrap();
    let config = write_config(home.path(), "");
    let (a, o) = (provider.anthropic_base_url(), provider.openai_base_url());
    let gw = Gateway::start(
        home.path(),
        &standin_env_both(
            &a,
            &o,
            &[
                ("OPEN_CLANKER_CONFIG", config.as_str()),
                ("OPEN_CLANKER_FALLBACK", "openai/gpt-4.1-mini"),
            ],
        ),
    );

    // Anthropic answers 503 once: the turn moves to OpenAI, which answers.
    let out = gw.cli(&["chat", "#fail=1 #status=503 hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("echo: "), "{}", stdout(&out));
    let session = session_from(&stderr(&out));
    let paths: Vec<String> = provider.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/v1/messages", "/v1/chat/completions"]);
    let shown = stdout(&gw.cli(&["sessions", "show", &session]));
    assert!(shown.contains("assistant: echo:"), "{shown}");
    // The stored answer names who really answered.
    let status = gw.status_json();
    let usage = status["usage_today"].as_array().unwrap();
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(usage[0]["provider"], "openai");
    assert_eq!(usage[0]["model"], "gpt-4.1-mini");

    // A 401 is not transient: no failover, the error names the key to check.
    provider.clear_requests();
    let out = gw.cli(&["chat", "#status=401"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("ANTHROPIC_API_KEY"),
        "{}",
        stderr(&out)
    );
    assert_eq!(provider.request_count(), 1);

    // After the first token a failure ends the turn: no second provider is asked.
    provider.clear_requests();
    let out = gw.cli(&["chat", "#tokens=5 #cut=2"]);
    assert!(!out.status.success());
    assert_eq!(provider.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_is_priced_stored_and_capped() {
    let provider = standin().await;
    let home = tempfile::tempdir().unwrap();
    let config = write_config(
        home.path(),
        "[limits]\nmax_usd_per_session = 0.5\nmax_usd_per_day = 1.0\n",
    );
    let a = provider.anthropic_base_url();
    let gw = Gateway::start(
        home.path(),
        &standin_env(&a, &[("OPEN_CLANKER_CONFIG", config.as_str())]),
    );
    // "hi": one input word, two output words ("echo:", "hi"): 3 tokens at 0.1 USD.
    let out = gw.cli(&["chat", "--key", "s1", "hi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&gw.cli(&["sessions", "list", "--prefix", "s1"]));
    assert!(listed.contains("$0.3000"), "{listed}");

    // Second turn: the session has spent 0.3 < 0.5, so it runs and goes over.
    assert!(gw.cli(&["chat", "--key", "s1", "hi"]).status.success());
    let before = provider.request_count();
    let out = gw.cli(&["chat", "--key", "s1", "hi again"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("RESOURCE_EXHAUSTED") || err.contains("resource"),
        "{err}"
    );
    assert!(err.contains("limits.max_usd_per_session"), "{err}");
    assert_eq!(
        provider.request_count(),
        before,
        "no provider call over the cap"
    );
    // The refused turn stored nothing.
    let id = stdout(&gw.cli(&["sessions", "list", "--prefix", "s1"]))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let shown = stdout(&gw.cli(&["sessions", "show", &id]));
    assert!(!shown.contains("hi again"), "{shown}");

    // The day: s1 spent 0.3 + 0.6 (the second turn's context is 4 words); a new session runs
    // once more (1.2 in all), then the daily cap holds.
    assert!(gw.cli(&["chat", "--key", "s2", "hi"]).status.success());
    let out = gw.cli(&["chat", "--key", "s3", "hi"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("limits.max_usd_per_day"),
        "{}",
        stderr(&out)
    );
    let status = gw.status_json();
    let spent = status["spend_today_usd"].as_f64().unwrap();
    assert!((spent - 1.2).abs() < 1e-9, "{spent}");
}
