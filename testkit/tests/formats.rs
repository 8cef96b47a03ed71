//! The stand-in's wire formats, checked with a plain HTTP client: Anthropic's and OpenAI's streams,
//! their non-streamed objects, and the model lists.

use serde_json::{Value, json};

mod common;

use common::{anthropic, anthropic_body, client, openai, openai_body, parse_sse, standin};

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
