//! Safe defaults through the real binary: tokens, the loopback rule, rate and size limits.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

const OLD: &str = "old-token-0123456789abcdef";
const NEW: &str = "new-token-fedcba9876543210";

#[test]
fn refuses_to_listen_beyond_loopback_without_tokens() {
    let home = tempfile::tempdir().unwrap();
    let out = command(home.path())
        .args(["gateway"])
        .env("OPEN_CLANKER_LISTEN", "0.0.0.0:0")
        .env("OPEN_CLANKER_DATA_DIR", home.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("auth.tokens"), "{err}");
    assert!(err.contains("OPEN_CLANKER_API_TOKENS"), "{err}");
    // A setup error points to the guide of causes and fixes.
    assert!(err.contains("docs/TROUBLESHOOTING.md"), "{err}");

    // The explicit opt-out starts, loudly.
    let gw = Gateway::start(
        home.path(),
        &[
            ("OPEN_CLANKER_LISTEN", "0.0.0.0:0"),
            ("OPEN_CLANKER_ALLOW_UNAUTHENTICATED", "true"),
        ],
    );
    let (_, _, logs) = gw.terminate();
    assert!(logs.contains("WITHOUT API TOKENS"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rotate_and_limits_answer_clearly() {
    let tokens = format!("old:{OLD},new:{NEW}");
    let s = Stack::start(&[
        ("OPEN_CLANKER_API_TOKENS", tokens.as_str()),
        ("OPEN_CLANKER_TURNS_PER_MINUTE", "3"),
        ("OPEN_CLANKER_MAX_REQUEST_BYTES", "2048"),
    ])
    .await;
    let gw = &s.gw;

    let out = gw.cli_as(None, &["status"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("missing API token"),
        "{}",
        stderr(&out)
    );
    let out = gw.cli_as(Some("wrong-token-000000000000"), &["status"]);
    assert!(
        stderr(&out).contains("invalid API token"),
        "{}",
        stderr(&out)
    );
    // Both tokens work at once: one can be rotated out without downtime.
    for t in [OLD, NEW] {
        let out = gw.cli_as(Some(t), &["status"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Health stays open, over gRPC and HTTP.
    assert!(gw.cli_as(None, &["health"]).status.success());
    assert!(http_get(&gw.addr, "/health").0.contains("200"));
    // The OpenAI-compatible endpoint answers 401 in OpenAI's shape.
    let (status, head, body) = http_request(&gw.addr, "GET", "/v1/models", &[], "");
    assert!(status.contains("401"), "{status}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    assert!(body.contains("authentication_error"), "{body}");
    let bearer = format!("Bearer {NEW}");
    let (status, _, body) = http_request(
        &gw.addr,
        "GET",
        "/v1/models",
        &[("authorization", &bearer)],
        "",
    );
    assert!(status.contains("200"), "{status} {body}");

    // An oversized request is refused before anything is stored.
    let big = "y".repeat(3000);
    let out = gw.cli_as(Some(NEW), &["chat", &big]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("limits.max_request_bytes"),
        "{}",
        stderr(&out)
    );
    let body = format!(
        r#"{{"model":"claude-sonnet-4-5","messages":[{{"role":"user","content":"{big}"}}]}}"#
    );
    let (status, _, answer) = http_request(
        &gw.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        &body,
    );
    assert!(status.contains("413"), "{status} {answer}");

    // Three turns a minute per token, then RESOURCE_EXHAUSTED with a retry hint.
    for i in 0..3 {
        let out = gw.cli_as(Some(OLD), &["chat", &format!("turn {i}")]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = gw.cli_as(Some(OLD), &["chat", "one too many"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("rate limit") && err.contains("retry after"),
        "{err}"
    );
    // The other token has its own budget.
    assert!(
        gw.cli_as(Some(NEW), &["chat", "still fine"])
            .status
            .success()
    );

    let (_, _, logs) = s.gw.terminate();
    for secret in [OLD, NEW, KEY] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_turn_limit_refuses_the_extra_turn() {
    let s = Stack::start(&[("OPEN_CLANKER_MAX_CONCURRENT_TURNS", "1")]).await;
    let gw = &s.gw;
    let slow = gw
        .cli_command(&["chat", "#tokens=10 #delay=100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let out = gw.cli(&["chat", "me too"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("limit of 1 turns"),
        "{}",
        stderr(&out)
    );
    let slow = slow.wait_with_output().unwrap();
    assert!(slow.status.success(), "{}", stderr(&slow));
    // Once the first turn is done the next one runs.
    assert!(gw.cli(&["chat", "now me"]).status.success());
}
