//! Observability through the real binary: Prometheus metrics, OpenTelemetry traces over OTLP to a
//! local receiver stand-in, trace ids in the JSON logs, and no secret in any log line or span.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;

const TOKEN: &str = "ci-token-0123456789abcdef-observability";
const WRONG_TOKEN: &str = "wrong-token-fedcba9876543210-observability";
const WRONG_PROVIDER_KEY: &str = "sk-wrong-openai-key-0123456789abcdef";
const CHAT: &str = "/openclanker.v1.ChatService/Chat";

/// An OTLP/gRPC trace receiver stand-in that keeps every export request.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.got.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    async fn spawn() -> (String, Receiver) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Receiver::default();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        (format!("http://{addr}"), receiver)
    }

    fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.got.lock().unwrap().clone()
    }

    /// Every span received, with its resource's `service.name`.
    fn spans(&self) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for request in self.requests() {
            for rs in request.resource_spans {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| r.attributes.iter())
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for span in ss.spans {
                        out.push((service.clone(), span));
                    }
                }
            }
        }
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_turns_tokens_and_refusals() {
    let tokens = format!("ci:{TOKEN}");
    let s = Stack::start(&[
        ("OPEN_CLANKER_API_TOKENS", tokens.as_str()),
        ("OPEN_CLANKER_TURNS_PER_MINUTE", "4"),
    ])
    .await;
    let gw = &s.gw;

    // Three good turns, one the provider refuses (401), then the rate limit (4 a minute).
    for i in 0..3 {
        let out = gw.cli_as(Some(TOKEN), &["chat", &format!("hello there{i}")]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = gw.cli_as(Some(TOKEN), &["chat", "please fail #status=401"]);
    assert!(!out.status.success());
    let out = gw.cli_as(Some(TOKEN), &["chat", "one too many"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("rate limit"), "{}", stderr(&out));
    // A wrong token, a missing one, and plain HTTP routes.
    assert!(!gw.cli_as(Some(WRONG_TOKEN), &["status"]).status.success());
    assert!(gw.cli_as(Some(TOKEN), &["status"]).status.success());
    assert!(http_get(&gw.addr, "/health").0.contains("200"));
    let (status, _, _) = http_request(&gw.addr, "GET", "/v1/models", &[], "");
    assert!(status.contains("401"), "{status}");
    // gRPC-Web over HTTP/1.1: the status travels in the body's trailer frame.
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = http_request_bytes(
        &gw.addr,
        "POST",
        "/openclanker.v1.GatewayService/GetStatus",
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
            ("authorization", &bearer),
        ],
        &[0, 0, 0, 0, 0],
    );
    assert!(status.contains("200"), "{status}");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("grpc-status:0"), "{body:?}");

    // The last turn's task may still be dropping its permit when the CLI exits.
    let text = scrape_until(&gw.addr, Duration::from_secs(5), |status, text| {
        assert!(status.contains("200"), "{status}");
        metric(text, "open_clanker_active_streams", &[]) == Some(0.0)
    })
    .await;
    let value = |name: &str, labels: &[(&str, &str)]| metric(&text, name, labels);
    let requests = "open_clanker_requests_total";
    let errors = "open_clanker_request_errors_total";
    assert_eq!(
        value(requests, &[("method", CHAT), ("code", "OK")]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            requests,
            &[("method", CHAT), ("code", "FAILED_PRECONDITION")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(errors, &[("method", CHAT), ("code", "FAILED_PRECONDITION")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(errors, &[("method", CHAT), ("code", "RESOURCE_EXHAUSTED")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value(errors, &[("method", CHAT), ("code", "OK")]), None);
    let status_method = "/openclanker.v1.GatewayService/GetStatus";
    assert_eq!(
        value(
            requests,
            &[("method", status_method), ("code", "UNAUTHENTICATED")]
        ),
        Some(1.0),
        "{text}"
    );
    // Once over gRPC, once over gRPC-Web.
    assert_eq!(
        value(requests, &[("method", status_method), ("code", "OK")]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(requests, &[("method", "/health"), ("code", "200")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(requests, &[("method", "/v1/models"), ("code", "401")]),
        Some(1.0),
        "{text}"
    );
    let rejected = "open_clanker_rejected_requests_total";
    for (reason, n) in [
        ("rate_limited", 1.0),
        ("invalid_token", 1.0),
        ("missing_token", 1.0),
    ] {
        assert_eq!(value(rejected, &[("reason", reason)]), Some(n), "{text}");
    }

    // Turns: durations by outcome, time to first token, tokens, nothing streaming any more.
    let anthropic = ("provider", "anthropic");
    let durations = "open_clanker_turn_duration_seconds_count";
    assert_eq!(
        value(durations, &[anthropic, ("outcome", "completed")]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(durations, &[anthropic, ("outcome", "failed")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            "open_clanker_time_to_first_token_seconds_count",
            &[anthropic]
        ),
        Some(3.0),
        "{text}"
    );
    assert!(
        value(
            "open_clanker_time_to_first_token_seconds_bucket",
            &[anthropic, ("le", "+Inf")]
        ) == Some(3.0),
        "{text}"
    );
    // The stand-in answers "echo: hello thereN" in 3 deltas, each counted as an output token, and
    // counts the 2 words of each question as input.
    let model = ("model", "claude-sonnet-4-5");
    assert_eq!(
        value(
            "open_clanker_tokens_total",
            &[anthropic, model, ("type", "output")]
        ),
        Some(9.0),
        "{text}"
    );
    assert_eq!(
        value(
            "open_clanker_tokens_total",
            &[anthropic, model, ("type", "input")]
        ),
        Some(6.0),
        "{text}"
    );
    // claude-sonnet-4-5 is priced (the built-in table), so the answers cost something.
    let cost = value("open_clanker_cost_usd_total", &[anthropic, model]).unwrap_or(0.0);
    assert!(cost > 0.0 && cost < 0.01, "{text}");
    assert_eq!(
        value("open_clanker_active_streams", &[]),
        Some(0.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE open_clanker_turn_duration_seconds histogram"),
        "{text}"
    );
    assert_eq!(value("open_clanker_build_info", &[]), Some(1.0), "{text}");
    let _ = s.gw.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_token() {
    let home = tempfile::tempdir().unwrap();
    let tokens = format!("ci:{TOKEN}");
    let config = home.path().join("open-clanker.toml");
    std::fs::write(&config, "[auth]\nprotect_metrics = true\n").unwrap();
    let gw = Gateway::start(home.path(), &[("OPEN_CLANKER_API_TOKENS", tokens.as_str())]);
    let (status, _) = scrape(&gw.addr);
    assert!(status.contains("401"), "{status}");
    let bearer = format!("Bearer {TOKEN}");
    let (status, head, body) = http_request(
        &gw.addr,
        "GET",
        "/metrics",
        &[("authorization", &bearer)],
        "",
    );
    assert!(status.contains("200"), "{status}");
    assert!(head.to_ascii_lowercase().contains("text/plain"), "{head}");
    assert!(body.contains("open_clanker_build_info"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_is_traced_over_otlp_with_its_trace_id_in_the_logs() {
    let (endpoint, receiver) = Receiver::spawn().await;
    let s = Stack::start(&[
        ("OPEN_CLANKER_LOG_FORMAT", "json"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // Nothing is exported on a timer during the test: the spans must come from the flush at
        // shutdown.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
    ])
    .await;
    let gw = &s.gw;
    let out = gw.cli(&["chat", "trace me please"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = gw.cli(&["chat", "and fail #status=401"]);
    assert!(!out.status.success());
    let (status, _, logs) = s.gw.terminate();
    assert!(status.success(), "{logs}");

    let spans = receiver.spans();
    assert!(!spans.is_empty(), "no span arrived; logs:\n{logs}");
    assert!(
        spans.iter().all(|(service, _)| service == "open-clanker"),
        "{spans:?}"
    );
    let turns: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "turn")
        .collect();
    assert_eq!(turns.len(), 2, "{spans:?}");
    // The failed turn is marked as an error; the other one is not.
    let failed = |s: &Span| s.status.as_ref().is_some_and(|st| st.code == 2);
    assert_eq!(turns.iter().filter(|s| failed(s)).count(), 1, "{turns:?}");
    let turn = *turns.iter().find(|s| !failed(s)).unwrap();
    assert_ne!(turns[0].trace_id, turns[1].trace_id, "one trace per turn");
    assert!(turn.parent_span_id.is_empty(), "the turn is a root span");
    let children: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.parent_span_id == turn.span_id)
        .collect();
    let names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    for name in ["store.append_message", "provider.stream"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(
        children.iter().all(|s| s.trace_id == turn.trace_id),
        "{children:?}"
    );
    // The user's message and the answer are both stored inside the turn.
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "store.append_message")
            .count(),
        2,
        "{names:?}"
    );

    let trace_id = hex(&turn.trace_id);
    let completed = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "turn completed")
        .unwrap_or_else(|| panic!("no \"turn completed\" line in:\n{logs}"));
    assert_eq!(completed["trace_id"], trace_id.as_str(), "{completed}");
    assert_eq!(completed["span_id"].as_str().map(str::len), Some(16));
    // Lines outside any turn carry no trace id.
    let listening = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "open-clanker gateway listening")
        .expect("listening line");
    assert!(listening.get("trace_id").is_none(), "{listening}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs_or_the_traces() {
    let provider = standin().await;
    let (endpoint, receiver) = Receiver::spawn().await;
    let home = tempfile::tempdir().unwrap();
    let anthropic = provider.anthropic_base_url();
    let openai = provider.openai_base_url();
    let tokens = format!("ci:{TOKEN}");
    let gw = Gateway::start(
        home.path(),
        &standin_env(
            &anthropic,
            &[
                ("RUST_LOG", "trace"),
                ("OPEN_CLANKER_LOG_FORMAT", "json"),
                // The stand-in refuses this key with a 401.
                ("OPENAI_API_KEY", WRONG_PROVIDER_KEY),
                ("OPENAI_BASE_URL", openai.as_str()),
                ("OPEN_CLANKER_API_TOKENS", tokens.as_str()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ],
        ),
    );
    let out = gw.cli_as(Some(TOKEN), &["chat", "a fine question"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = gw.cli_as(
        Some(TOKEN),
        &["chat", "--provider", "openai", "who are you"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(!err.contains(WRONG_PROVIDER_KEY), "{err}");
    let out = gw.cli_as(Some(TOKEN), &["chat", "refuse me #status=401"]);
    assert!(!out.status.success());
    assert!(gw.cli_as(Some(TOKEN), &["status"]).status.success());
    let out = gw.cli_as(Some(WRONG_TOKEN), &["status"]);
    assert!(!out.status.success());
    let wrong = format!("Bearer {WRONG_TOKEN}");
    let (status, _, _) = http_request(
        &gw.addr,
        "GET",
        "/v1/models",
        &[("authorization", &wrong)],
        "",
    );
    assert!(status.contains("401"), "{status}");
    let (status, _) = scrape(&gw.addr);
    assert!(status.contains("200"), "{status}");
    let (_, _, logs) = gw.terminate();

    // The run was logged at trace level, as JSON.
    assert!(logs.lines().count() > 50, "{logs}");
    assert!(logs.contains("\"level\":\"TRACE\""), "no trace-level line");
    assert!(logs.contains("turn failed"), "{logs}");
    let spans = format!("{:?}", receiver.requests());
    assert!(spans.contains("provider.stream"), "no span exported");
    for secret in [KEY, WRONG_PROVIDER_KEY, TOKEN, WRONG_TOKEN] {
        for (what, text) in [("logs", &logs), ("exported spans", &spans)] {
            if let Some(at) = text.find(secret) {
                let from = at.saturating_sub(300);
                panic!(
                    "a secret leaked into the {what}: ...{}...",
                    &text[from..at].replace(secret, "<SECRET>")
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_messages_are_counted() {
    const BOT: &str = "123456:TEST-token_observability";
    let tg = spawn_telegram(BOT).await;
    let s = ChatGateway::start(tg, BOT, &[("OPEN_CLANKER_TELEGRAM_ALLOW_FROM", "42")], None).await;
    let (tg, gw) = (&s.platform, &s.gw);
    for (i, text) in ["hello bot", "and again"].into_iter().enumerate() {
        tg.push_text(42, 42, text);
        assert!(
            tg.wait_until(Duration::from_secs(30), |t| t
                .messages(42)
                .iter()
                .filter(|m| m.text.contains("echo:"))
                .count()
                > i)
                .await,
            "no answer on Telegram: {:#?}",
            tg.calls()
        );
    }
    let text = scrape_until(&gw.addr, Duration::from_secs(10), |_, text| {
        let out = metric(
            text,
            "open_clanker_channel_messages_total",
            &[("channel", "telegram"), ("direction", "out")],
        );
        out == Some(2.0)
    })
    .await;
    for direction in ["in", "out"] {
        assert_eq!(
            metric(
                &text,
                "open_clanker_channel_messages_total",
                &[("channel", "telegram"), ("direction", direction)]
            ),
            Some(2.0),
            "{text}"
        );
    }
    assert_eq!(
        metric(
            &text,
            "open_clanker_turn_duration_seconds_count",
            &[("provider", "anthropic"), ("outcome", "completed")]
        ),
        Some(2.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failovers_are_counted_and_the_answering_provider_timed() {
    let s = Stack::start_both(&[("OPEN_CLANKER_FALLBACK", "openai")]).await;
    let gw = &s.gw;
    // Anthropic answers 503 to its first try and both retries; OpenAI takes over.
    let out = gw.cli(&["chat", "fall over #fail=3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, text) = scrape(&gw.addr);
    assert_eq!(
        metric(
            &text,
            "open_clanker_provider_failovers_total",
            &[
                ("from", "anthropic/claude-sonnet-4-5"),
                ("to", "openai/gpt-4.1-mini")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    for name in [
        "open_clanker_time_to_first_token_seconds_count",
        "open_clanker_turn_duration_seconds_count",
    ] {
        assert_eq!(
            metric(&text, name, &[("provider", "openai")]),
            Some(1.0),
            "{name}: {text}"
        );
        assert_eq!(metric(&text, name, &[("provider", "anthropic")]), None);
    }
}
