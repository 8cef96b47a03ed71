//! `open-clanker doctor` against a healthy and a broken setup.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_healthy_setup_and_explains_a_broken_one() {
    let provider = standin().await;
    let home = tempfile::tempdir().unwrap();
    let url = provider.anthropic_base_url();
    let tg_token = "4242:doctor-test-token";
    let tg = spawn_telegram(tg_token).await;
    let tg_url = tg.api_url();

    let env = standin_env(&url, &telegram_env(tg_token, &tg_url));
    let out = run_in(home.path(), &["doctor"], &env);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("channel telegram: token accepted"), "{text}");
    assert!(!text.contains(tg_token), "{text}");
    assert!(
        text.contains("provider anthropic") && text.contains("key accepted"),
        "{text}"
    );
    assert!(text.contains("all good"), "{text}");
    assert!(!text.contains(KEY));

    // Wrong key, unusable data dir, port taken by something else, listening on every interface.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let file = home.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = command(home.path())
        .arg("doctor")
        .env("ANTHROPIC_API_KEY", "sk-wrong-key-123")
        .env("ANTHROPIC_BASE_URL", &url)
        .env(
            "OPEN_CLANKER_LISTEN",
            taken.local_addr().unwrap().to_string(),
        )
        .env("OPEN_CLANKER_DATA_DIR", file.join("data"))
        .env("TELEGRAM_BOT_TOKEN", "4242:a-rejected-token")
        .env("OPEN_CLANKER_TELEGRAM_API_URL", &tg_url)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    for needle in [
        "FAIL provider anthropic",
        "ANTHROPIC_API_KEY",
        "FAIL data directory",
        "OPEN_CLANKER_DATA_DIR",
        "FAIL listen address",
        "FAIL channel telegram",
        "TELEGRAM_BOT_TOKEN",
        "problem(s) found",
        "docs/TROUBLESHOOTING.md",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(!text.contains("sk-wrong-key-123"), "{text}");
    assert!(!text.contains("a-rejected-token"), "{text}");

    let out = command(home.path())
        .arg("doctor")
        .env("OPEN_CLANKER_LISTEN", format!("0.0.0.0:{}", unused_port()))
        .env("OPEN_CLANKER_ALLOW_UNAUTHENTICATED", "true")
        .env("OPEN_CLANKER_DATA_DIR", home.path().join("data"))
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(!out.status.success());
    assert!(text.contains("no provider is configured"), "{text}");
    assert!(text.contains("FAIL exposure"), "{text}");

    // A malformed config file is reported with its key, and nothing else is attempted.
    let bad = home.path().join("bad.toml");
    std::fs::write(&bad, "[chat]\nmax_message_chars = \"lots\"\n").unwrap();
    let out = command(home.path())
        .args(["doctor", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("chat.max_message_chars"),
        "{}",
        stdout(&out)
    );
}
