//! The stand-in's wire formats and controls, checked with a plain HTTP client.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use open_clanker_testkit::{RecordedRequest, StandIn, StandInConfig, Stats};
use serde_json::{Value, json};

async fn standin() -> StandIn {
    open_clanker_testkit::spawn(StandInConfig::default())
        .await
        .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn anthropic(s: &StandIn, body: Value) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}/v1/messages", s.anthropic_base_url()))
        .header("x-api-key", "test-key")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
}

fn openai(s: &StandIn, body: Value) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}/chat/completions", s.openai_base_url()))
        .bearer_auth("test-key")
        .json(&body)
}

/// The stand-in's `GET /_standin/stats`, over HTTP (it is a request and a connection itself).
async fn stats_over_http(s: &StandIn) -> Stats {
    client()
        .get(format!("{}/_standin/stats", s.anthropic_base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn anthropic_body(text: &str, stream: bool) -> Value {
    json!({"model": "claude-test", "max_tokens": 100, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

fn openai_body(text: &str, stream: bool) -> Value {
    let mut body = json!({"model": "gpt-test", "stream": stream,
                          "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": text}]});
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// (event name, data) pairs of an SSE body.
fn parse_sse(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v.to_string();
                }
            }
            (event, data)
        })
        .collect()
}

#[tokio::test]
async fn anthropic_stream_has_the_documented_events() {
    let s = standin().await;
    let response = anthropic(&s, anthropic_body("hello world", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = response.text().await.unwrap();
    let events = parse_sse(&body);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &events {
        let data: Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            data["type"],
            name.as_str(),
            "the payload's type matches the event name"
        );
    }
    let start: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(start["message"]["model"], "claude-test");
    assert_eq!(start["message"]["usage"]["input_tokens"], 2);
    let texts: String = events[3..6]
        .iter()
        .map(|(_, d)| {
            let d: Value = serde_json::from_str(d).unwrap();
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(texts, "echo: hello world");
    let delta: Value = serde_json::from_str(&events[7].1).unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn openai_stream_has_chunks_usage_and_done() {
    let s = standin().await;
    let body = openai(&s, openai_body("hello world", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = parse_sse(&body);
    assert!(
        events.iter().all(|(name, _)| name.is_empty()),
        "OpenAI sends no event names"
    );
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-test");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "echo: hello world");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(finish["usage"].is_null());
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6})
    );

    // Without include_usage: no usage chunk and no usage fields.
    let mut plain = openai_body("hi", true);
    plain.as_object_mut().unwrap().remove("stream_options");
    let body = openai(&s, plain)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!body.contains("usage"), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn non_streamed_answers_are_the_real_objects() {
    let s = standin().await;
    let message: Value = anthropic(&s, anthropic_body("hi there", false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": "echo: hi there"}])
    );
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(
        message["usage"],
        json!({"input_tokens": 2, "output_tokens": 3})
    );

    let completion: Value = openai(&s, openai_body("#tokens=4", false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3"
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert_eq!(completion["usage"]["completion_tokens"], 4);

    // max_tokens cuts the answer.
    let mut body = anthropic_body("#tokens=10", false);
    body["max_tokens"] = json!(3);
    let message: Value = anthropic(&s, body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(message["content"][0]["text"], "tok0 tok1 tok2");
    assert_eq!(message["stop_reason"], "max_tokens");
    let mut body = openai_body("#tokens=10", false);
    body["max_tokens"] = json!(2);
    let completion: Value = openai(&s, body).send().await.unwrap().json().await.unwrap();
    assert_eq!(completion["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn keys_and_headers_are_checked() {
    let s = standin().await;
    let url = format!("{}/v1/messages", s.anthropic_base_url());
    let body = anthropic_body("hi", false);
    for key in [None, Some("wrong")] {
        let mut request = client()
            .post(&url)
            .header("anthropic-version", "2023-06-01")
            .json(&body);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], "authentication_error");
    }
    let response = client()
        .post(&url)
        .header("x-api-key", "test-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic-version")
    );

    let url = format!("{}/chat/completions", s.openai_base_url());
    for auth in [None, Some("Bearer wrong-key-0123456789")] {
        let mut request = client().post(&url).json(&openai_body("hi", false));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert!(error["error"].get("param").is_some() && error["error"].get("code").is_some());
        assert!(
            !error.to_string().contains("wrong-key-0123456789"),
            "the key is masked"
        );
    }
}

#[tokio::test]
async fn malformed_requests_get_invalid_request_errors() {
    let s = standin().await;
    let anthropic_bad = [
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": "x"}]}),
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": ""}]}),
        json!({"model": "", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    ];
    for body in anthropic_bad {
        let response = anthropic(&s, body.clone()).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error", "{body}");
    }
    let openai_bad = [
        json!({"model": "m", "messages": []}),
        json!({"messages": [{"role": "user", "content": "x"}]}),
    ];
    for body in openai_bad {
        let response = openai(&s, body.clone()).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error", "{body}");
    }
    // Not JSON at all.
    let response = client()
        .post(format!("{}/v1/messages", s.anthropic_base_url()))
        .header("x-api-key", "test-key")
        .header("anthropic-version", "2023-06-01")
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Every request was recorded, bad ones too.
    assert_eq!(s.request_count(), 7);
}

#[tokio::test]
async fn status_directives_use_the_documented_error_bodies() {
    let s = standin().await;
    let response = anthropic(&s, anthropic_body("#status=429", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error");

    let response = anthropic(&s, anthropic_body("#status=529", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 529);
    assert!(response.headers().get("retry-after").is_none());
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "overloaded_error");

    let response = openai(&s, openai_body("#status=429 #retry_after=7", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");

    let response = openai(&s, openai_body("#status=500", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "server_error");
}

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
async fn models_are_listed_in_both_formats() {
    let s = standin().await;
    let url = format!("{}/v1/models", s.anthropic_base_url());
    let list: Value = client()
        .get(&url)
        .header("x-api-key", "test-key")
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["type"], "model");
    assert_eq!(list["data"][0]["id"], open_clanker_testkit::MODEL);
    let list: Value = client()
        .get(&url)
        .bearer_auth("test-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["object"], "model");
    let response = client()
        .get(&url)
        .header("x-api-key", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(s.request_count(), 4);
    assert_eq!(s.requests()[0].method, "GET");
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
