//! How the stand-in serves: the binary (its address line, SIGTERM, its HTTP/2 option) and the
//! HTTP/2 stream limit per connection.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use open_clanker_testkit::{StandInConfig, Stats};

mod common;

use common::{anthropic, anthropic_body, client, openai_body, stats_over_http};

#[test]
fn the_binary_prints_its_address_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_open-clanker-standin"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "bin-key",
            "--delay-ms",
            "0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .expect(&line)
        .to_string();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth("bin-key")
            .json(&openai_body("hi", false))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "{exit:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stand-in did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Against a stand-in at `base` (Anthropic root) allowing `limit` HTTP/2 streams per connection:
/// `limit` hanging answers on one h2c connection get their first chunk, one more waits until one
/// of them is dropped.
async fn check_http2_stream_limit(base: &str, key: &str, limit: usize) {
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let send = |text: String| {
        h2.post(format!("{base}/v1/messages"))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&anthropic_body(&text, true))
            .send()
    };
    let mut held = Vec::new();
    for i in 0..limit {
        let response = send(format!("held {i} #hang")).await.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        let mut chunks = response.bytes_stream();
        chunks.next().await.unwrap().unwrap();
        held.push(chunks);
    }
    let extra = tokio::spawn(send("one more #hang".into()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !extra.is_finished(),
        "a stream past the limit was answered at once"
    );
    held.pop();
    let response = tokio::time::timeout(Duration::from_secs(5), extra)
        .await
        .expect("the waiting stream starts once another ends")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn http2_streams_per_connection_are_limited_and_connections_counted() {
    let s = open_clanker_testkit::spawn(StandInConfig {
        http2_max_concurrent_streams: Some(2),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(s.connections(), 0);
    check_http2_stream_limit(&s.anthropic_base_url(), "test-key", 2).await;
    assert_eq!(s.connections(), 1, "h2c: one connection");
    // HTTP/1.1 is unaffected: three answers at once, a connection each.
    let mut held = Vec::new();
    for i in 0..3 {
        let response = anthropic(&s, anthropic_body(&format!("h1 {i} #hang"), true))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_11);
        let mut chunks = response.bytes_stream();
        chunks.next().await.unwrap().unwrap();
        held.push(chunks);
    }
    assert_eq!(s.connections(), 4);
    let stats: Stats = stats_over_http(&s).await;
    assert_eq!(stats.connections, 5, "the stats request's own connection");
}

#[tokio::test]
async fn the_binary_sets_the_http2_stream_limit() {
    /// Kills the stand-in even when the test fails.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_open-clanker-standin"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--http2-max-concurrent-streams",
                "1",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect(&line)
        .to_string();
    tokio::time::timeout(
        Duration::from_secs(20),
        check_http2_stream_limit(&base, "test-key", 1),
    )
    .await
    .expect("the check finishes");
    drop(child);
    // 0 would allow no stream at all: refused.
    let refused = Command::new(env!("CARGO_BIN_EXE_open-clanker-standin"))
        .args(["--http2-max-concurrent-streams", "0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("http2-max-concurrent-streams"),
        "{refused:?}"
    );
}
