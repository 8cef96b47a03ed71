//! Helpers shared by the provider clients' tests against the stand-in: stand-ins and configs,
//! requests, reading a stream to its end, fixed-answer fixtures and a closed port.

// Each test file uses some of these.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use open_clanker_providers::{
    ChatMessage, CompletionRequest, EventStream, Provider, ProviderConfig, ProviderError,
    ProviderKind, Role, StreamEvent, Usage, build,
};
use open_clanker_testkit::{StandIn, StandInConfig};

pub const KEY: &str = "test-key";
/// A key that must never show up in an error.
pub const SECRET: &str = "sk-SECRET-d1st1nct1ve-k3y-0000111122223333";

pub async fn standin_with_key(key: &str) -> StandIn {
    open_clanker_testkit::spawn(StandInConfig {
        api_key: key.into(),
        ..Default::default()
    })
    .await
    .expect("stand-in starts")
}

pub async fn standin() -> StandIn {
    standin_with_key(KEY).await
}

pub fn base_url(kind: ProviderKind, standin: &StandIn) -> String {
    match kind {
        ProviderKind::Anthropic => standin.anthropic_base_url(),
        ProviderKind::OpenAi => standin.openai_base_url(),
    }
}

/// A config for the stand-in with short delays so the suite stays fast.
pub fn config(kind: ProviderKind, base_url: String, key: &str) -> ProviderConfig {
    let mut config = ProviderConfig::new(kind, key).with_base_url(base_url);
    config.connect_timeout = Duration::from_secs(2);
    config.idle_timeout = Duration::from_secs(10);
    config.max_retries = 2;
    config.retry_base_delay = Duration::from_millis(10);
    config
}

pub fn provider(kind: ProviderKind, standin: &StandIn) -> std::sync::Arc<dyn Provider> {
    build(config(kind, base_url(kind, standin), KEY)).expect("provider builds")
}

pub fn request(text: &str) -> CompletionRequest {
    CompletionRequest {
        model: "stand-in-model".into(),
        system: None,
        messages: vec![ChatMessage::new(Role::User, text)],
        max_tokens: 1024,
        temperature: None,
    }
}

/// Everything a stream yields: the events before the end, and the error it ended with, if any.
pub struct Outcome {
    pub events: Vec<StreamEvent>,
    pub error: Option<ProviderError>,
}

impl Outcome {
    pub fn text(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::TextDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn deltas(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, StreamEvent::TextDelta(_)))
            .count()
    }

    pub fn usage(&self) -> Option<Usage> {
        self.events.iter().find_map(|e| match e {
            StreamEvent::Usage(u) => Some(*u),
            _ => None,
        })
    }

    pub fn done(&self) -> Option<Option<String>> {
        self.events.iter().find_map(|e| match e {
            StreamEvent::Done { stop_reason } => Some(stop_reason.clone()),
            _ => None,
        })
    }
}

/// Reads a stream to its end, checking that nothing follows `Done` or an error.
pub async fn collect(mut stream: EventStream) -> Outcome {
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

pub async fn run(
    provider: &dyn Provider,
    request: CompletionRequest,
) -> Result<Outcome, ProviderError> {
    Ok(collect(provider.stream(request).await?).await)
}

pub fn assert_no_secret(error: &ProviderError) {
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
pub async fn fixture_server(status: u16, content_type: &'static str, body: String) -> SocketAddr {
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
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}
