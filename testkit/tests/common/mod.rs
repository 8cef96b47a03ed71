//! Helpers shared by the stand-in's tests: a stand-in, an HTTP client, requests in both API
//! formats, and an SSE body reader.

// Each test file uses some of these.
#![allow(dead_code)]

use std::time::Duration;

use open_clanker_testkit::{StandIn, StandInConfig, Stats};
use serde_json::{Value, json};

pub async fn standin() -> StandIn {
    open_clanker_testkit::spawn(StandInConfig::default())
        .await
        .unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn anthropic(s: &StandIn, body: Value) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}/v1/messages", s.anthropic_base_url()))
        .header("x-api-key", "test-key")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
}

pub fn openai(s: &StandIn, body: Value) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}/chat/completions", s.openai_base_url()))
        .bearer_auth("test-key")
        .json(&body)
}

/// The stand-in's `GET /_standin/stats`, over HTTP (it is a request and a connection itself).
pub async fn stats_over_http(s: &StandIn) -> Stats {
    client()
        .get(format!("{}/_standin/stats", s.anthropic_base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub fn anthropic_body(text: &str, stream: bool) -> Value {
    json!({"model": "claude-test", "max_tokens": 100, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

pub fn openai_body(text: &str, stream: bool) -> Value {
    let mut body = json!({"model": "gpt-test", "stream": stream,
                          "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": text}]});
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// (event name, data) pairs of an SSE body.
pub fn parse_sse(body: &str) -> Vec<(String, String)> {
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
