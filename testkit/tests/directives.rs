//! The stand-in's controls, with a plain HTTP client: `#fail`, delays, cuts, errors and hangs, the
//! default delay, the recorded requests, and shutting down with streams open.

use std::time::{Duration, Instant};

use futures::StreamExt;
use open_clanker_testkit::{RecordedRequest, StandInConfig, Stats};

mod common;

use common::{
    anthropic, anthropic_body, client, openai, openai_body, parse_sse, standin, stats_over_http,
};

#[tokio::test]
async fn fail_counts_per_text() {
    let s = standin().await;
    let statuses = |text: &'static str| {
        let s = &s;
        async move {
            let mut out = Vec::new();
            for _ in 0..3 {
                out.push(
                    anthropic(s, anthropic_body(text, false))
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16(),
                );
            }
            out
        }
    };
    assert_eq!(statuses("a #fail=2").await, [503, 503, 200]);
    assert_eq!(statuses("b #fail=1 #status=429").await, [429, 200, 200]);
    assert_eq!(
        statuses("a #fail=2").await,
        [200, 200, 200],
        "the counter is per text and kept"
    );
}

#[tokio::test]
async fn delays_cuts_errors_and_hangs() {
    let s = standin().await;
    // #delay: 3 deltas 100 ms apart.
    let started = Instant::now();
    let body = openai(&s, openai_body("a b #delay=100", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert!(body.ends_with("data: [DONE]\n\n"));

    // #cut: the body breaks.
    let response = anthropic(&s, anthropic_body("a b c #cut=2", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut received = Vec::new();
    let mut chunks = response.bytes_stream();
    let mut broke = false;
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    assert!(broke, "the connection must break");
    let text = String::from_utf8(received).unwrap();
    assert_eq!(text.matches("event: content_block_delta").count(), 2);
    assert!(!text.contains("message_stop"));

    // #sse_error.
    let body = anthropic(&s, anthropic_body("x #sse_error", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = parse_sse(&body);
    assert_eq!(events.last().unwrap().0, "error");
    assert!(events.last().unwrap().1.contains("overloaded_error"));
    let body = openai(&s, openai_body("x #sse_error", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(parse_sse(&body).last().unwrap().1.contains("\"error\""));
    assert!(!body.contains("[DONE]"));

    // #hang: one delta, then silence until the client leaves.
    let response = openai(&s, openai_body("#hang", true)).send().await.unwrap();
    let mut chunks = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("echo:") {
        text.push_str(&String::from_utf8_lossy(
            &chunks.next().await.unwrap().unwrap(),
        ));
    }
    let next = tokio::time::timeout(Duration::from_millis(300), chunks.next()).await;
    assert!(next.is_err(), "nothing more arrives");
    assert_eq!(s.active_streams(), 1);
    drop(chunks);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.active_streams() > 0 {
        assert!(
            Instant::now() < deadline,
            "the hanging stream must end when the client leaves"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_default_delay_applies() {
    let s = open_clanker_testkit::spawn(StandInConfig {
        api_key: "other".into(),
        default_delay: Duration::from_millis(60),
        ..Default::default()
    })
    .await
    .unwrap();
    let started = Instant::now();
    let response = client()
        .post(format!("{}/chat/completions", s.openai_base_url()))
        .bearer_auth("other")
        .json(&openai_body("a b c", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(240),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn requests_are_recorded_and_served_over_http() {
    let s = standin().await;
    anthropic(&s, anthropic_body("hi", false))
        .send()
        .await
        .unwrap();
    openai(&s, openai_body("hi", false)).send().await.unwrap();
    let recorded = s.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].path, "/v1/messages");
    assert_eq!(recorded[0].header("x-api-key"), Some("<redacted>"));
    assert_eq!(recorded[0].body, anthropic_body("hi", false));
    assert_eq!(recorded[1].path, "/v1/chat/completions");
    assert_eq!(recorded[1].header("Authorization"), Some("<redacted>"));

    let url = format!("{}/_standin/requests", s.anthropic_base_url());
    let over_http: Vec<RecordedRequest> = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http, recorded);
    let stats: Stats = stats_over_http(&s).await;
    assert_eq!(
        stats,
        Stats {
            requests: 2,
            active_streams: 0,
            connections: s.connections(),
        }
    );
    assert_eq!(client().delete(&url).send().await.unwrap().status(), 204);
    assert_eq!(s.request_count(), 0);
    assert_eq!(s.requests(), vec![]);
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let s = standin().await;
    let response = anthropic(&s, anthropic_body("#hang", true))
        .send()
        .await
        .unwrap();
    let mut chunks = response.bytes_stream();
    chunks.next().await.unwrap().unwrap();
    let addr = s.addr();
    let started = Instant::now();
    s.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The hanging answer ends (broken), and nothing listens any more.
    let rest = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(_)) = chunks.next().await {}
    })
    .await;
    assert!(rest.is_ok());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
