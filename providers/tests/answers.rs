//! The provider clients' answers from the stand-in provider (and a few fixed fixtures), over real
//! HTTP on the loopback interface: text, usage, stop reasons, request shaping, and h2c.

use open_clanker_providers::{
    ChatMessage, CompletionRequest, ProviderError, ProviderKind, Role, StreamEvent, Usage, build,
};
use serde_json::json;

mod common;

use common::{KEY, base_url, config, fixture_server, provider, request, run, standin};

#[tokio::test]
async fn anthropic_streams_text_usage_and_stop_reason() {
    let s = standin().await;
    let p = provider(ProviderKind::Anthropic, &s);
    let mut req = request("hello there world");
    req.system = Some("Be brief.".into());
    req.temperature = Some(0.5);
    let out = run(p.as_ref(), req).await.unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text(), "echo: hello there world");
    assert_eq!(out.deltas(), 4, "one delta per word");
    // 3 words of the message + 2 of the system prompt; 4 deltas.
    assert_eq!(
        out.usage(),
        Some(Usage {
            input_tokens: 5,
            output_tokens: 4
        })
    );
    assert_eq!(out.done(), Some(Some("end_turn".into())));
    // Usage comes right before Done.
    let n = out.events.len();
    assert!(matches!(out.events[n - 2], StreamEvent::Usage(_)));

    let recorded = s.requests();
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("x-api-key"), Some("<redacted>"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.body,
        json!({
            "model": "stand-in-model",
            "max_tokens": 1024,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "hello there world"}],
            "stream": true,
            "temperature": 0.5,
        })
    );
}

#[tokio::test]
async fn openai_streams_text_usage_and_stop_reason() {
    let s = standin().await;
    let p = provider(ProviderKind::OpenAi, &s);
    let mut req = request("hello there world");
    req.system = Some("Be brief.".into());
    let out = run(p.as_ref(), req).await.unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text(), "echo: hello there world");
    assert_eq!(
        out.usage(),
        Some(Usage {
            input_tokens: 5,
            output_tokens: 4
        })
    );
    assert_eq!(out.done(), Some(Some("stop".into())));

    let r = &s.requests()[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.header("authorization"), Some("<redacted>"));
    assert_eq!(
        r.body,
        json!({
            "model": "stand-in-model",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hello there world"},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 1024,
        })
    );
}

#[tokio::test]
async fn long_answers_and_max_tokens() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        let p = provider(kind, &s);
        let out = run(p.as_ref(), request("#tokens=200")).await.unwrap();
        assert_eq!(out.deltas(), 200, "{kind}");
        assert!(out.text().starts_with("tok0 tok1 ") && out.text().ends_with(" tok199"));

        let mut req = request("#tokens=50");
        req.max_tokens = 7;
        let out = run(p.as_ref(), req).await.unwrap();
        assert_eq!(out.deltas(), 7, "{kind}");
        let expected = match kind {
            ProviderKind::Anthropic => "max_tokens",
            ProviderKind::OpenAi => "length",
        };
        assert_eq!(out.done(), Some(Some(expected.into())), "{kind}");
    }
}

#[tokio::test]
async fn anthropic_message_shaping_reaches_the_wire() {
    let s = standin().await;
    let p = provider(ProviderKind::Anthropic, &s);
    let req = CompletionRequest {
        model: "stand-in-model".into(),
        system: Some("Be brief.".into()),
        messages: vec![
            ChatMessage::new(Role::Assistant, "Hi! I am the assistant."),
            ChatMessage::new(Role::System, "Answer in French."),
            ChatMessage::new(Role::User, "first"),
            ChatMessage::new(Role::User, ""),
            ChatMessage::new(Role::User, "second"),
            ChatMessage::new(Role::Assistant, "an answer"),
            ChatMessage::new(Role::Assistant, "   "),
            ChatMessage::new(Role::User, "last question"),
        ],
        max_tokens: 64,
        temperature: None,
    };
    // The stand-in rejects (400) what Anthropic rejects: a success shows the shaping is right.
    let out = run(p.as_ref(), req).await.unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text(), "echo: last question");
    let body = &s.requests()[0].body;
    assert_eq!(body["system"], "Be brief.\n\nAnswer in French.");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "first\n\nsecond"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "last question"},
        ])
    );
}

#[tokio::test]
async fn openai_message_shaping_reaches_the_wire() {
    let s = standin().await;
    let p = provider(ProviderKind::OpenAi, &s);
    let req = CompletionRequest {
        model: "stand-in-model".into(),
        system: None,
        messages: vec![
            ChatMessage::new(Role::User, "first"),
            ChatMessage::new(Role::System, "Answer in French."),
            ChatMessage::new(Role::User, "second"),
            ChatMessage::new(Role::Assistant, ""),
            ChatMessage::new(Role::Assistant, "an answer"),
            ChatMessage::new(Role::User, "last"),
        ],
        max_tokens: 64,
        temperature: Some(0.2),
    };
    let out = run(p.as_ref(), req).await.unwrap();
    assert_eq!(out.text(), "echo: last");
    let body = &s.requests()[0].body;
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "first\n\nsecond"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "last"},
        ])
    );
    assert!((body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
}

#[tokio::test]
async fn base_urls_with_trailing_slashes_work() {
    let s = standin().await;
    let bases = [
        (
            ProviderKind::Anthropic,
            format!("{}/", s.anthropic_base_url()),
        ),
        (
            ProviderKind::Anthropic,
            format!("{}/v1/", s.anthropic_base_url()),
        ),
        (ProviderKind::OpenAi, format!("{}//", s.openai_base_url())),
    ];
    for (kind, base) in bases {
        let p = build(config(kind, base.clone(), KEY)).unwrap();
        let out = run(p.as_ref(), request("hi")).await.unwrap();
        assert_eq!(out.text(), "echo: hi", "{kind} {base}");
    }
}

#[tokio::test]
async fn anthropic_tool_use_stream_yields_only_text() {
    // The documented shape of a streamed answer with a tool call (and a ping, and an event type
    // this client does not know).
    let body = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", let's check the weather."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San Francisco, CA\"}"}}

event: some_new_event
data: {"type":"some_new_event","whatever":true}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;
    let addr = fixture_server(200, "text/event-stream", body.to_string()).await;
    let p = build(config(
        ProviderKind::Anthropic,
        format!("http://{addr}"),
        KEY,
    ))
    .unwrap();
    let out = run(p.as_ref(), request("weather?")).await.unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text(), "Okay, let's check the weather.");
    assert_eq!(
        out.usage(),
        Some(Usage {
            input_tokens: 472,
            output_tokens: 89
        })
    );
    assert_eq!(out.done(), Some(Some("tool_use".into())));
}

#[tokio::test]
async fn openai_compatible_server_without_usage_or_done_ends_cleanly() {
    // Some compatible servers send no usage and close after the finishing chunk.
    let body = concat!(
        "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        ": keep-alive comment\n\n",
        "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}]}\n\n",
    );
    let addr = fixture_server(200, "text/event-stream", body.to_string()).await;
    let p = build(config(
        ProviderKind::OpenAi,
        format!("http://{addr}/v1"),
        KEY,
    ))
    .unwrap();
    let out = run(p.as_ref(), request("hi")).await.unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text(), "Hi there");
    assert_eq!(out.usage(), None);
    assert_eq!(out.done(), Some(Some("stop".into())));
}

#[tokio::test]
async fn a_json_answer_instead_of_a_stream_is_an_error() {
    let body = json!({"id": "x", "object": "chat.completion", "choices": []}).to_string();
    let addr = fixture_server(200, "application/json", body).await;
    let p = build(config(
        ProviderKind::OpenAi,
        format!("http://{addr}/v1"),
        KEY,
    ))
    .unwrap();
    let error = run(p.as_ref(), request("hi")).await.err().unwrap();
    assert!(matches!(error, ProviderError::Stream { .. }), "{error:?}");
    assert!(error.to_string().contains("text/event-stream"), "{error}");
}

/// With `http2_prior_knowledge` both clients speak h2c to the stand-in (an HTTP/1-only server
/// would refuse the HTTP/2 preface), and many streams at once all arrive whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_streams_over_h2c() {
    let s = standin().await;
    for kind in [ProviderKind::Anthropic, ProviderKind::OpenAi] {
        let mut c = config(kind, base_url(kind, &s), KEY);
        c.http2_prior_knowledge = true;
        let p = build(c).expect("provider builds");
        let runs = (0..20).map(|i| {
            let p = p.clone();
            async move { run(p.as_ref(), request(&format!("stream {i} here"))).await }
        });
        for (i, out) in futures::future::join_all(runs)
            .await
            .into_iter()
            .enumerate()
        {
            let out = out.unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert!(out.error.is_none(), "{kind}: {:?}", out.error);
            assert_eq!(out.text(), format!("echo: stream {i} here"), "{kind}");
        }
    }
}
