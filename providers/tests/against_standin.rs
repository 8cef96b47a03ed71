//! The provider clients against the stand-in provider (and a few fixed fixtures), over real HTTP
//! on the loopback interface.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use open_clanker_providers::{
    ChatMessage, CompletionRequest, EventStream, Provider, ProviderConfig, ProviderError,
    ProviderKind, Role, StreamEvent, Usage, build,
};
use open_clanker_testkit::{StandIn, StandInConfig};
use serde_json::json;

const KEY: &str = "test-key";
/// A key that must never show up in an error.
const SECRET: &str = "sk-SECRET-d1st1nct1ve-k3y-0000111122223333";

async fn standin_with_key(key: &str) -> StandIn {
    open_clanker_testkit::spawn(StandInConfig {
        api_key: key.into(),
        ..Default::default()
    })
    .await
    .expect("stand-in starts")
}

async fn standin() -> StandIn {
    standin_with_key(KEY).await
}

fn base_url(kind: ProviderKind, standin: &StandIn) -> String {
    match kind {
        ProviderKind::Anthropic => standin.anthropic_base_url(),
        ProviderKind::OpenAi => standin.openai_base_url(),
    }
}

/// A config for the stand-in with short delays so the suite stays fast.
fn config(kind: ProviderKind, base_url: String, key: &str) -> ProviderConfig {
    let mut config = ProviderConfig::new(kind, key).with_base_url(base_url);
    config.connect_timeout = Duration::from_secs(2);
    config.idle_timeout = Duration::from_secs(10);
    config.max_retries = 2;
    config.retry_base_delay = Duration::from_millis(10);
    config
}

fn provider(kind: ProviderKind, standin: &StandIn) -> std::sync::Arc<dyn Provider> {
    build(config(kind, base_url(kind, standin), KEY)).expect("provider builds")
}

fn request(text: &str) -> CompletionRequest {
    CompletionRequest {
        model: "stand-in-model".into(),
        system: None,
        messages: vec![ChatMessage::new(Role::User, text)],
        max_tokens: 1024,
        temperature: None,
    }
}

/// Everything a stream yields: the events before the end, and the error it ended with, if any.
struct Outcome {
    events: Vec<StreamEvent>,
    error: Option<ProviderError>,
}

impl Outcome {
    fn text(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::TextDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    fn deltas(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, StreamEvent::TextDelta(_)))
            .count()
    }

    fn usage(&self) -> Option<Usage> {
        self.events.iter().find_map(|e| match e {
            StreamEvent::Usage(u) => Some(*u),
            _ => None,
        })
    }

    fn done(&self) -> Option<Option<String>> {
        self.events.iter().find_map(|e| match e {
            StreamEvent::Done { stop_reason } => Some(stop_reason.clone()),
            _ => None,
        })
    }
}

/// Reads a stream to its end, checking that nothing follows `Done` or an error.
async fn collect(mut stream: EventStream) -> Outcome {
    let mut events = Vec::new();
    let mut error = None;
    while let Some(item) = stream.next().await {
        assert!(error.is_none(), "an item after the error: {item:?}");
        assert!(
            !matches!(events.last(), Some(StreamEvent::Done { .. })),
            "an item after Done: {item:?}"
        );
        match item {
            Ok(event) => events.push(event),
            Err(e) => error = Some(e),
        }
    }
    Outcome { events, error }
}

async fn run(
    provider: &dyn Provider,
    request: CompletionRequest,
) -> Result<Outcome, ProviderError> {
    Ok(collect(provider.stream(request).await?).await)
}

fn assert_no_secret(error: &ProviderError) {
    let display = error.to_string();
    let debug = format!("{error:?}");
    assert!(!display.contains(SECRET), "key in Display: {display}");
    assert!(!debug.contains(SECRET), "key in Debug: {debug}");
    // Not even a large piece of it.
    assert!(
        !display.contains(&SECRET[3..20]),
        "part of the key in Display: {display}"
    );
}

/// A server that answers every request with a fixed response.
async fn fixture_server(status: u16, content_type: &'static str, body: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move {
            axum::response::Response::builder()
                .status(status)
                .header("content-type", content_type)
                .body(axum::body::Body::from(body))
                .unwrap()
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A port on which nothing listens.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

// ---------------------------------------------------------------------------------------------
// Answers

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

// ---------------------------------------------------------------------------------------------
// Errors before the answer

#[tokio::test]
async fn unauthorized_is_not_retried_and_names_the_env_var() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        s.clear_requests();
        let p = build(config(kind, base_url(kind, &s), SECRET)).unwrap();
        let error = run(p.as_ref(), request("hi")).await.err().expect("401");
        assert!(
            matches!(error, ProviderError::Unauthorized { status: 401, .. }),
            "{error:?}"
        );
        assert_eq!(s.request_count(), 1, "{kind}: 401 must not be retried");
        assert!(error.to_string().contains(kind.api_key_env()), "{error}");
        assert_no_secret(&error);
        assert!(!error.is_transient());
    }
}

#[tokio::test]
async fn rate_limit_is_retried_honouring_retry_after() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        s.clear_requests();
        let p = provider(kind, &s);
        let text = format!("{kind} #fail=1 #status=429");
        let started = Instant::now();
        let out = run(p.as_ref(), request(&text)).await.unwrap();
        let elapsed = started.elapsed();
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.text(), format!("echo: {text}"));
        assert_eq!(s.request_count(), 2, "{kind}");
        // retry-after: 1 outweighs the 10 ms back-off.
        assert!(
            elapsed >= Duration::from_millis(950),
            "{kind}: retried after {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(5), "{kind}: {elapsed:?}");
    }
}

#[tokio::test]
async fn rate_limit_after_all_retries() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        s.clear_requests();
        let p = provider(kind, &s);
        let error = run(p.as_ref(), request("#status=429 #retry_after=0"))
            .await
            .err()
            .unwrap();
        match &error {
            ProviderError::RateLimited {
                retry_after,
                message,
                ..
            } => {
                assert_eq!(*retry_after, Some(Duration::ZERO));
                assert!(message.contains("3 attempts"), "{message}");
            }
            other => panic!("{kind}: {other:?}"),
        }
        assert_eq!(s.request_count(), 3, "{kind}");
        assert!(error.is_transient());
    }
}

#[tokio::test]
async fn server_errors_are_retried_then_unavailable() {
    let s = standin().await;
    let cases = [
        (ProviderKind::Anthropic, "#status=503"),
        (ProviderKind::Anthropic, "#status=529"),
        (ProviderKind::OpenAi, "#status=500"),
        (ProviderKind::OpenAi, "#status=503"),
    ];
    for (kind, text) in cases {
        s.clear_requests();
        let p = provider(kind, &s);
        let error = run(p.as_ref(), request(text)).await.err().unwrap();
        assert!(
            matches!(error, ProviderError::Unavailable { .. }),
            "{kind} {text}: {error:?}"
        );
        assert_eq!(s.request_count(), 3, "{kind} {text}: 1 try + 2 retries");
        let shown = error.to_string();
        assert!(shown.contains("3 attempts"), "{shown}");
        assert!(
            shown.contains("simulated HTTP"),
            "the provider's message is kept: {shown}"
        );
    }
}

#[tokio::test]
async fn a_transient_failure_then_success() {
    let s = standin().await;
    let p = provider(ProviderKind::Anthropic, &s);
    let out = run(p.as_ref(), request("#fail=2 #status=529"))
        .await
        .unwrap();
    assert!(out.error.is_none());
    assert_eq!(s.request_count(), 3);
    // With max_retries 1 the same needs would fail.
    let mut c = config(ProviderKind::OpenAi, s.openai_base_url(), KEY);
    c.max_retries = 1;
    let p = build(c).unwrap();
    let error = run(p.as_ref(), request("#fail=2")).await.err().unwrap();
    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn bad_requests_surface_the_providers_message() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        s.clear_requests();
        let p = provider(kind, &s);
        let error = run(p.as_ref(), request("#status=400")).await.err().unwrap();
        match &error {
            ProviderError::BadRequest {
                status: 400,
                message,
                ..
            } => {
                assert!(
                    message.contains("stand-in: simulated HTTP 400"),
                    "{message}"
                );
            }
            other => panic!("{kind}: {other:?}"),
        }
        assert_eq!(s.request_count(), 1, "{kind}: 400 must not be retried");
        let error = run(p.as_ref(), request("#status=404")).await.err().unwrap();
        assert!(
            matches!(error, ProviderError::BadRequest { status: 404, .. }),
            "{error:?}"
        );
        assert_eq!(s.request_count(), 2, "{kind}: 404 must not be retried");
    }
    // A genuinely invalid request, as the stand-in validates it like Anthropic does.
    let p = provider(ProviderKind::Anthropic, &s);
    let mut req = request("hi");
    req.temperature = Some(1.5);
    let error = run(p.as_ref(), req).await.err().unwrap();
    assert!(error.to_string().contains("temperature"), "{error}");
    // Nothing to send is refused before any request.
    s.clear_requests();
    let error = run(p.as_ref(), request("   ")).await.err().unwrap();
    assert!(
        matches!(error, ProviderError::InvalidRequest { .. }),
        "{error:?}"
    );
    assert_eq!(s.request_count(), 0);
}

#[tokio::test]
async fn connection_refused_is_retried_then_unavailable() {
    let addr = closed_port().await;
    for (kind, base) in [
        (ProviderKind::Anthropic, format!("http://{addr}")),
        (ProviderKind::OpenAi, format!("http://{addr}/v1")),
    ] {
        let p = build(config(kind, base, SECRET)).unwrap();
        let started = Instant::now();
        let error = run(p.as_ref(), request("hi")).await.err().unwrap();
        assert!(
            matches!(error, ProviderError::Unavailable { .. }),
            "{error:?}"
        );
        let shown = error.to_string();
        assert!(
            shown.contains("3 attempts") && shown.contains("could not connect"),
            "{shown}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_no_secret(&error);
    }
}

// ---------------------------------------------------------------------------------------------
// Errors while streaming

#[tokio::test]
async fn a_cut_stream_ends_with_a_stream_error_after_the_deltas() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        let p = provider(kind, &s);
        let out = run(p.as_ref(), request("one two three four five #cut=3"))
            .await
            .unwrap();
        assert_eq!(out.deltas(), 3, "{kind}");
        assert_eq!(out.text(), "echo: one two", "{kind}");
        assert!(out.done().is_none());
        assert!(
            matches!(out.error, Some(ProviderError::Stream { .. })),
            "{kind}: {:?}",
            out.error
        );
    }
}

#[tokio::test]
async fn an_error_event_ends_the_stream_with_an_error() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        let p = provider(kind, &s);
        let out = run(p.as_ref(), request("hello world #sse_error"))
            .await
            .unwrap();
        assert_eq!(out.text(), "echo:", "{kind}");
        assert!(out.done().is_none());
        let error = out.error.expect("an error");
        match kind {
            // overloaded_error
            ProviderKind::Anthropic => {
                assert!(
                    matches!(error, ProviderError::Unavailable { .. }),
                    "{error:?}"
                );
                assert!(error.to_string().contains("Overloaded"), "{error}");
            }
            ProviderKind::OpenAi => {
                assert!(matches!(error, ProviderError::Stream { .. }), "{error:?}");
                assert!(error.to_string().contains("server had an error"), "{error}");
            }
        }
    }
}

#[tokio::test]
async fn a_silent_stream_times_out() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        let mut c = config(kind, base_url(kind, &s), KEY);
        c.idle_timeout = Duration::from_millis(300);
        let p = build(c).unwrap();
        let started = Instant::now();
        let out = run(p.as_ref(), request("wait #hang")).await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(out.text(), "echo:", "{kind}");
        assert!(
            matches!(
                out.error,
                Some(ProviderError::Timeout { .. } | ProviderError::Stream { .. })
            ),
            "{kind}: {:?}",
            out.error
        );
        assert!(elapsed < Duration::from_secs(3), "{kind}: took {elapsed:?}");
    }
}

#[tokio::test]
async fn slow_deltas_within_the_idle_timeout_are_fine() {
    let s = standin().await;
    let mut c = config(ProviderKind::OpenAi, s.openai_base_url(), KEY);
    c.idle_timeout = Duration::from_millis(500);
    let p = build(c).unwrap();
    // 6 deltas, 100 ms apart: 600 ms in all, more than the idle timeout but never idle that long.
    let out = run(p.as_ref(), request("#tokens=6 #delay=100"))
        .await
        .unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.deltas(), 6);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_upstream_answer() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        let p = provider(kind, &s);
        let mut stream = p.stream(request("#hang")).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first, StreamEvent::TextDelta("echo:".into()));
        assert_eq!(s.active_streams(), 1);
        drop(stream);
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.active_streams() > 0 {
            assert!(
                Instant::now() < deadline,
                "{kind}: the stand-in still streams"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The key never leaks

#[tokio::test]
async fn no_error_carries_the_api_key() {
    // The stand-in expects the secret, so the requests get past authentication.
    let s = standin_with_key(SECRET).await;
    let texts = [
        "#status=400",
        "#status=404",
        "#status=429 #retry_after=0",
        "#status=503",
        "#cut=1",
        "#sse_error",
    ];
    let mut seen = 0;
    for kind in ProviderKind::ALL {
        let p = build(config(kind, base_url(kind, &s), SECRET)).unwrap();
        for text in texts {
            let error = match run(p.as_ref(), request(text)).await {
                Err(e) => e,
                Ok(out) => out.error.expect(text),
            };
            assert_no_secret(&error);
            seen += 1;
        }
        // Timeout.
        let mut c = config(kind, base_url(kind, &s), SECRET);
        c.idle_timeout = Duration::from_millis(200);
        let error = run(build(c).unwrap().as_ref(), request("#hang"))
            .await
            .unwrap()
            .error
            .unwrap();
        assert_no_secret(&error);
        // A provider that echoes the key back in its error.
        let echo = json!({"error": {"message": format!("bad key {SECRET} given"), "type": "invalid_request_error"}});
        let addr = fixture_server(400, "application/json", echo.to_string()).await;
        let base = match kind {
            ProviderKind::Anthropic => format!("http://{addr}"),
            ProviderKind::OpenAi => format!("http://{addr}/v1"),
        };
        let error = run(
            build(config(kind, base, SECRET)).unwrap().as_ref(),
            request("hi"),
        )
        .await
        .err()
        .unwrap();
        assert!(error.to_string().contains("[redacted]"), "{error}");
        assert_no_secret(&error);
        // The provider's Debug output.
        assert!(!format!("{p:?}", p = config(kind, base_url(kind, &s), SECRET)).contains(SECRET));
    }
    // Wrong key (401) and config errors.
    let other = standin().await;
    for kind in ProviderKind::ALL {
        let p = build(config(kind, base_url(kind, &other), SECRET)).unwrap();
        assert_no_secret(&run(p.as_ref(), request("hi")).await.err().unwrap());
        let bad = config(kind, format!("not a url {SECRET}"), SECRET);
        assert_no_secret(&build(bad).err().unwrap());
        let bad = config(
            kind,
            base_url(kind, &other),
            &format!("{SECRET}\nsecond-line"),
        );
        assert_no_secret(&build(bad).err().unwrap());
    }
    assert_eq!(seen, 12);
}

// ---------------------------------------------------------------------------------------------
// Key check

#[tokio::test]
async fn check_key_probes_the_model_list() {
    use open_clanker_providers::check_key;
    let s = standin().await;
    for kind in ProviderKind::ALL {
        s.clear_requests();
        check_key(config(kind, base_url(kind, &s), KEY))
            .await
            .unwrap();
        let recorded = s.requests();
        assert_eq!(recorded.len(), 1);
        assert_eq!(
            (recorded[0].method.as_str(), recorded[0].path.as_str()),
            ("GET", "/v1/models")
        );

        let error = check_key(config(kind, base_url(kind, &s), SECRET))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProviderError::Unauthorized { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(kind.api_key_env()), "{error}");
        assert_no_secret(&error);
    }
    // A base URL missing its /v1 answers 404.
    let error = check_key(config(ProviderKind::OpenAi, s.anthropic_base_url(), KEY))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::BadRequest { status: 404, .. }),
        "{error:?}"
    );
    // Nothing listening: not retried.
    let addr = closed_port().await;
    let error = check_key(config(
        ProviderKind::Anthropic,
        format!("http://{addr}"),
        KEY,
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains("attempts"), "{error}");
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
