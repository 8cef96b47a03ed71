//! What the stand-in checks, with a plain HTTP client: keys and headers, the shape of requests,
//! and the documented error bodies of `#status`.

use serde_json::{Value, json};

mod common;

use common::{anthropic, anthropic_body, client, openai, openai_body, standin};

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
