//! Prometheus metrics, served in the text exposition format on `GET /metrics` of the gateway's
//! port (open unless `auth.protect_metrics`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `open_clanker_requests_total` | counter | `method` (gRPC path or HTTP route), `code` (gRPC status name or HTTP status) |
//! | `open_clanker_request_errors_total` | counter | same; every code but `OK` / below 400 |
//! | `open_clanker_active_streams` | gauge | turns streaming right now (every entry point) |
//! | `open_clanker_time_to_first_token_seconds` | histogram | `provider` |
//! | `open_clanker_turn_duration_seconds` | histogram | `provider`, `outcome` (`completed`, `failed`, `cancelled`) |
//! | `open_clanker_tokens_total` | counter | `provider`, `model`, `type` (`input`, `output`) |
//! | `open_clanker_cost_usd_total` | counter | `provider`, `model` |
//! | `open_clanker_channel_messages_total` | counter | `channel`, `direction` (`in`, `out`) |
//! | `open_clanker_rejected_requests_total` | counter | `reason` |
//! | `open_clanker_provider_failovers_total` | counter | `from`, `to` |
//! | `open_clanker_build_info` | gauge (1) | `version` |
//!
//! Label values are bounded so a caller cannot grow the registry: unknown gRPC paths and HTTP paths
//! that match no route count as `other`, and past [`MAX_MODELS`] distinct model names further ones
//! count as `other`.
//!
//! The hooks other modules call: [`rejected`], [`failover`], [`record_cost`],
//! [`channel_message`] (or [`metered_channel`] around a channel's context) and [`TurnMetrics`]
//! (the engine).

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use open_clanker_channels::ChannelContext;
use open_clanker_core::{
    ChatBackend, MessageStatus, Session, TurnError, TurnEvent, TurnRequest, TurnStream, Usage,
};
use prometheus::{
    CounterVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::contract::is_grpc_path;

/// Distinct model names counted under their own label; further ones count as `other`.
pub const MAX_MODELS: usize = 64;

/// What `GET /metrics` answers with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const TTFT_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 60.0,
];
const TURN_BUCKETS: &[f64] = &[
    0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 240.0, 480.0,
];

/// gRPC methods served besides the `openclanker.v1` ones (read from the descriptor set).
struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    errors: IntCounterVec,
    active: IntGauge,
    ttft: HistogramVec,
    turn: HistogramVec,
    tokens: IntCounterVec,
    cost: CounterVec,
    channel: IntCounterVec,
    rejected: IntCounterVec,
    failovers: IntCounterVec,
    models: Mutex<HashSet<String>>,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    register(
        registry,
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )
        .expect("valid metric"),
    )
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    let requests = counter(
        &r,
        "open_clanker_requests_total",
        "Requests answered, by gRPC method or HTTP route and by gRPC status or HTTP status.",
        &["method", "code"],
    );
    let errors = counter(
        &r,
        "open_clanker_request_errors_total",
        "Requests answered with an error (gRPC status other than OK, HTTP status 400 or more).",
        &["method", "code"],
    );
    let active = register(
        &r,
        IntGauge::new(
            "open_clanker_active_streams",
            "Turns streaming an answer right now (gRPC Chat, /v1/chat/completions and channels).",
        )
        .expect("valid metric"),
    );
    let ttft = histogram(
        &r,
        "open_clanker_time_to_first_token_seconds",
        "Time from the provider call to the first piece of the answer.",
        &["provider"],
        TTFT_BUCKETS,
    );
    let turn = histogram(
        &r,
        "open_clanker_turn_duration_seconds",
        "Time from the provider call until the answer is stored, by how the turn ended.",
        &["provider", "outcome"],
        TURN_BUCKETS,
    );
    let tokens = counter(
        &r,
        "open_clanker_tokens_total",
        "Tokens reported by the providers, by type (input or output).",
        &["provider", "model", "type"],
    );
    let cost = register(
        &r,
        CounterVec::new(
            Opts::new(
                "open_clanker_cost_usd_total",
                "What the answers cost, in US dollars, from the configured prices.",
            ),
            &["provider", "model"],
        )
        .expect("valid metric"),
    );
    let channel = counter(
        &r,
        "open_clanker_channel_messages_total",
        "Chat channel messages handed to the assistant (in) and answers given back (out).",
        &["channel", "direction"],
    );
    let rejected = counter(
        &r,
        "open_clanker_rejected_requests_total",
        "Requests refused before any work: missing or invalid API token, rate limits, size limits.",
        &["reason"],
    );
    let failovers = counter(
        &r,
        "open_clanker_provider_failovers_total",
        "Turns moved from one provider to the next entry of the fallback chain.",
        &["from", "to"],
    );
    let build = register(
        &r,
        IntGaugeVec::new(
            Opts::new("open_clanker_build_info", "The running version (always 1)."),
            &["version"],
        )
        .expect("valid metric"),
    );
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    Metrics {
        registry: r,
        requests,
        errors,
        active,
        ttft,
        turn,
        tokens,
        cost,
        channel,
        rejected,
        failovers,
        models: Mutex::new(HashSet::new()),
    }
});

/// The whole registry in the Prometheus text format.
pub fn render() -> String {
    TextEncoder::new()
        .encode_to_string(&METRICS.registry.gather())
        .unwrap_or_default()
}

/// `GET /metrics`.
pub async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        render(),
    )
        .into_response()
}

/// A request refused before any work, e.g. `rate_limited`, `invalid_token`.
pub fn rejected(reason: &str) {
    METRICS.rejected.with_label_values(&[reason]).inc();
}

/// A turn moved from one provider (or `provider/model` entry) to the next of the fallback chain.
pub fn failover(from: &str, to: &str) {
    let (from, to) = (bounded_entry(from), bounded_entry(to));
    METRICS
        .failovers
        .with_label_values(&[from.as_str(), to.as_str()])
        .inc();
}

/// A `provider/model` entry with its model bounded like the `model` labels.
fn bounded_entry(entry: &str) -> String {
    match entry.split_once('/') {
        Some((provider, model)) => format!("{provider}/{}", model_label(model)),
        None => entry.to_string(),
    }
}

/// What an answer cost; zero, negative and non-finite amounts are ignored.
pub fn record_cost(provider: &str, model: &str, usd: f64) {
    if usd.is_finite() && usd > 0.0 {
        let model = model_label(model);
        METRICS
            .cost
            .with_label_values(&[provider, model.as_str()])
            .inc_by(usd);
    }
}

/// Which way a channel message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from the chat platform.
    In,
    /// Sent to the chat platform.
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// A message received on or sent to a chat channel (`telegram`, `discord`).
pub fn channel_message(channel: &str, direction: Direction) {
    METRICS
        .channel
        .with_label_values(&[channel, direction.as_str()])
        .inc();
}

/// A channel's context whose turns count as channel messages: each message the channel hands to
/// the assistant is one `in`, each answer it gets back one `out`. Wrap the context a channel is
/// started with (the channels crate knows nothing of the server's metrics).
pub fn metered_channel(channel: &'static str, ctx: ChannelContext) -> ChannelContext {
    ChannelContext {
        backend: Arc::new(MeteredBackend {
            channel,
            inner: ctx.backend,
        }),
        access: ctx.access,
    }
}

struct MeteredBackend {
    channel: &'static str,
    inner: Arc<dyn ChatBackend>,
}

#[async_trait::async_trait]
impl ChatBackend for MeteredBackend {
    async fn start_turn(&self, request: TurnRequest) -> Result<TurnStream, TurnError> {
        channel_message(self.channel, Direction::In);
        let events = self.inner.start_turn(request).await?;
        let channel = self.channel;
        Ok(events
            .inspect(move |event| {
                if matches!(event, TurnEvent::Completed(_)) {
                    channel_message(channel, Direction::Out);
                }
            })
            .boxed())
    }

    async fn session_by_key(&self, key: &str) -> Result<Option<Session>, TurnError> {
        self.inner.session_by_key(key).await
    }

    async fn reset_session(&self, session_id: &str) -> Result<(), TurnError> {
        self.inner.reset_session(session_id).await
    }

    async fn new_session(&self, key: &str) -> Result<Session, TurnError> {
        self.inner.new_session(key).await
    }
}

/// The model name as a label: itself for the first [`MAX_MODELS`] names seen, `other` after.
fn model_label(model: &str) -> String {
    let mut seen = METRICS
        .models
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    bounded_label(&mut seen, model)
}

fn bounded_label(seen: &mut HashSet<String>, model: &str) -> String {
    if seen.contains(model) {
        return model.to_string();
    }
    if seen.len() < MAX_MODELS {
        seen.insert(model.to_string());
        return model.to_string();
    }
    "other".to_string()
}

/// The metrics of one running turn: counts it as an active stream until dropped, times the first
/// token and the whole turn, and adds its tokens. The provider and model are those that answered
/// (after any failover).
pub struct TurnMetrics {
    /// The first provider tried; counted when the turn ends without [`TurnMetrics::finish`].
    provider: String,
    started: Instant,
    first_token: AtomicBool,
    finished: AtomicBool,
}

impl TurnMetrics {
    /// Call when the turn is handed to its first provider.
    pub fn start(provider: &str) -> Self {
        METRICS.active.inc();
        Self {
            provider: provider.to_string(),
            started: Instant::now(),
            first_token: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        }
    }

    /// Call on every piece of the answer; only the first one is timed.
    pub fn first_token(&self, provider: &str) {
        if !self.first_token.swap(true, Ordering::Relaxed) {
            METRICS
                .ttft
                .with_label_values(&[provider])
                .observe(self.started.elapsed().as_secs_f64());
        }
    }

    /// Call once the answer is stored: `status` is the stored answer's, `failed` tells whether the
    /// turn ended with an error.
    pub fn finish(
        &self,
        provider: &str,
        model: &str,
        status: MessageStatus,
        failed: bool,
        usage: &Usage,
    ) {
        let outcome = if failed {
            "failed"
        } else if status == MessageStatus::Complete {
            "completed"
        } else {
            "cancelled"
        };
        self.observe(provider, outcome);
        if usage.input_tokens > 0 || usage.output_tokens > 0 {
            let model = model_label(model);
            for (kind, n) in [
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
            ] {
                METRICS
                    .tokens
                    .with_label_values(&[provider, model.as_str(), kind])
                    .inc_by(n);
            }
        }
    }

    fn observe(&self, provider: &str, outcome: &str) {
        if !self.finished.swap(true, Ordering::Relaxed) {
            METRICS
                .turn
                .with_label_values(&[provider, outcome])
                .observe(self.started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for TurnMetrics {
    fn drop(&mut self) {
        // A turn that ends without `finish` (its answer could not be stored) failed.
        let provider = std::mem::take(&mut self.provider);
        self.observe(&provider, "failed");
        METRICS.active.dec();
    }
}

/// The engine's events, counted here.
pub struct EngineMetrics;

impl open_clanker_engine::Observer for EngineMetrics {
    fn rejected(&self, reason: &'static str) {
        rejected(reason);
    }

    fn failover(&self, from: &str, to: &str) {
        failover(from, to);
    }

    fn cost(&self, provider: &str, model: &str, usd: f64) {
        record_cost(provider, model, usd);
    }

    fn turn_started(&self, provider: &str) -> Box<dyn open_clanker_engine::TurnObserver> {
        Box::new(TurnMetrics::start(provider))
    }
}

impl open_clanker_engine::TurnObserver for TurnMetrics {
    fn first_token(&self, provider: &str) {
        TurnMetrics::first_token(self, provider);
    }

    fn finish(
        &self,
        provider: &str,
        model: &str,
        status: MessageStatus,
        failed: bool,
        usage: &Usage,
    ) {
        TurnMetrics::finish(self, provider, model, status, failed, usage);
    }
}

/// `/<package>.<Service>/<Method>`.
/// The `method` label of a gRPC path: itself when the gateway serves it, `other` otherwise.
fn grpc_label(path: &str) -> String {
    if crate::contract::is_served(path) {
        path.to_string()
    } else {
        "other".to_string()
    }
}

/// The canonical name of a `grpc-status` value.
fn grpc_code_name(value: &[u8]) -> &'static str {
    let code = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok());
    match code {
        Some(n) => open_clanker_proto::code_name(tonic::Code::from_i32(n)),
        None => "UNKNOWN",
    }
}

fn count(method: &str, code: &str, error: bool) {
    METRICS.requests.with_label_values(&[method, code]).inc();
    if error {
        METRICS.errors.with_label_values(&[method, code]).inc();
    }
}

fn count_grpc(method: &str, code: &'static str) {
    count(method, code, code != "OK");
}

fn grpc_status(headers: &HeaderMap) -> Option<&'static str> {
    headers
        .get("grpc-status")
        .map(|v| grpc_code_name(v.as_bytes()))
}

/// Set by [`observe_grpc`] on requests it counts itself, so [`observe`] does not count them again.
#[derive(Clone, Default)]
struct Counted(Arc<AtomicBool>);

/// Middleware around every route (outside the security guard, so refusals count too): counts each
/// request by method and code when its response starts. gRPC calls that reach the services are
/// left to [`observe_grpc`], which sees their final status in the trailers.
pub async fn observe(mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let method = if is_grpc_path(path) {
        grpc_label(path)
    } else {
        req.extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string())
            .unwrap_or_else(|| "other".to_string())
    };
    let counted = Counted::default();
    req.extensions_mut().insert(counted.clone());
    let response = next.run(req).await;
    if !counted.0.load(Ordering::Relaxed) {
        match grpc_status(response.headers()) {
            Some(code) => count_grpc(&method, code),
            None => {
                let status = response.status();
                count(&method, status.as_str(), status.as_u16() >= 400);
            }
        }
    }
    response
}

/// Middleware on the gRPC services, inside gRPC-Web (so both protocols look alike here): counts
/// each call with the status it ends with, from the trailers of a streamed answer.
pub async fn observe_grpc(req: Request, next: Next) -> Response {
    if let Some(counted) = req.extensions().get::<Counted>() {
        counted.0.store(true, Ordering::Relaxed);
    }
    let method = grpc_label(req.uri().path());
    let response = next.run(req).await;
    if let Some(code) = grpc_status(response.headers()) {
        count_grpc(&method, code);
        return response;
    }
    response.map(|inner| {
        Body::new(Observed {
            inner,
            method: Some(method),
        })
    })
}

/// A gRPC response body that counts its call when the trailers pass (or when it is dropped
/// unfinished: the caller went away).
struct Observed {
    inner: Body,
    /// Taken once counted.
    method: Option<String>,
}

impl Observed {
    fn done(&mut self, code: &'static str) {
        if let Some(method) = self.method.take() {
            count_grpc(&method, code);
        }
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).unwrap_or("UNKNOWN");
                    self.done(code);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => self.done("UNKNOWN"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.done("CANCELLED");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use open_clanker_core::StoredMessage;

    #[test]
    fn grpc_methods_come_from_the_descriptor_set() {
        assert_eq!(
            grpc_label("/openclanker.v1.ChatService/Chat"),
            "/openclanker.v1.ChatService/Chat"
        );
        assert_eq!(
            grpc_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(grpc_label("/openclanker.v1.ChatService/Nope"), "other");
        assert_eq!(grpc_label("/x.y/z"), "other");
        assert!(is_grpc_path("/openclanker.v1.ChatService/Chat"));
        assert!(!is_grpc_path("/v1/chat/completions"));
        assert!(!is_grpc_path("/health"));
    }

    #[test]
    fn status_names() {
        assert_eq!(grpc_code_name(b"0"), "OK");
        assert_eq!(grpc_code_name(b"8"), "RESOURCE_EXHAUSTED");
        assert_eq!(grpc_code_name(b"16"), "UNAUTHENTICATED");
        assert_eq!(grpc_code_name(b"99"), "UNKNOWN");
        assert_eq!(grpc_code_name(b"x"), "UNKNOWN");
    }

    #[test]
    fn hooks_show_up_in_the_exposition() {
        failover("unit-a/x", "unit-b/y");
        channel_message("unit-chan", Direction::In);
        channel_message("unit-chan", Direction::Out);
        channel_message("unit-chan", Direction::Out);
        record_cost("unit-provider", "unit-model", 0.25);
        record_cost("unit-provider", "unit-model", f64::NAN);
        rejected("unit_reason");
        let text = render();
        for line in [
            "open_clanker_provider_failovers_total{from=\"unit-a/x\",to=\"unit-b/y\"} 1",
            "open_clanker_channel_messages_total{channel=\"unit-chan\",direction=\"out\"} 2",
            "open_clanker_cost_usd_total{model=\"unit-model\",provider=\"unit-provider\"} 0.25",
            "open_clanker_rejected_requests_total{reason=\"unit_reason\"} 1",
            "open_clanker_build_info{version=",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn a_turn_is_active_until_dropped_and_counted_once() {
        let usage = Usage {
            input_tokens: 7,
            output_tokens: 3,
        };
        let turn = TurnMetrics::start("unit-turn");
        turn.first_token("unit-turn");
        turn.first_token("unit-turn");
        turn.finish(
            "unit-turn",
            "unit-turn-model",
            MessageStatus::Complete,
            false,
            &usage,
        );
        drop(turn);
        let dropped = TurnMetrics::start("unit-turn");
        drop(dropped);
        let text = render();
        for line in [
            "open_clanker_time_to_first_token_seconds_count{provider=\"unit-turn\"} 1",
            "open_clanker_turn_duration_seconds_count{outcome=\"completed\",provider=\"unit-turn\"} 1",
            "open_clanker_turn_duration_seconds_count{outcome=\"failed\",provider=\"unit-turn\"} 1",
            "open_clanker_tokens_total{model=\"unit-turn-model\",provider=\"unit-turn\",type=\"input\"} 7",
            "open_clanker_tokens_total{model=\"unit-turn-model\",provider=\"unit-turn\",type=\"output\"} 3",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    /// Answers every turn with one delta and a completed message.
    struct Echo;

    #[async_trait::async_trait]
    impl ChatBackend for Echo {
        async fn start_turn(&self, request: TurnRequest) -> Result<TurnStream, TurnError> {
            if request.text == "refuse" {
                return Err(TurnError::InvalidArgument("no".into()));
            }
            let done = StoredMessage {
                id: 1,
                session_id: "s".into(),
                role: open_clanker_core::Role::Assistant,
                content: request.text.clone(),
                provider: None,
                model: None,
                usage: Usage::default(),
                status: MessageStatus::Complete,
                stop_reason: None,
                created_at_ms: 0,
                cost_micros: 0,
            };
            Ok(futures::stream::iter([
                TurnEvent::Delta(request.text),
                TurnEvent::Completed(Box::new(done)),
            ])
            .boxed())
        }

        async fn session_by_key(&self, _key: &str) -> Result<Option<Session>, TurnError> {
            Ok(None)
        }

        async fn reset_session(&self, _session_id: &str) -> Result<(), TurnError> {
            Ok(())
        }

        async fn new_session(&self, _key: &str) -> Result<Session, TurnError> {
            Err(TurnError::Internal("not used here".into()))
        }
    }

    #[tokio::test]
    async fn a_metered_channel_counts_messages_in_and_answers_out() {
        let ctx = metered_channel(
            "unit-metered",
            ChannelContext {
                backend: Arc::new(Echo),
                access: Arc::new(
                    open_clanker_store::Store::connect("sqlite::memory:")
                        .await
                        .unwrap(),
                ),
            },
        );
        let turn = |text: &str| TurnRequest {
            session: open_clanker_core::SessionRef::New,
            text: text.into(),
            provider: None,
            model: None,
            caller: None,
        };
        for text in ["one", "two"] {
            let events: Vec<TurnEvent> = ctx
                .backend
                .start_turn(turn(text))
                .await
                .unwrap()
                .collect()
                .await;
            assert_eq!(events.len(), 2);
        }
        assert!(ctx.backend.start_turn(turn("refuse")).await.is_err());
        let text = render();
        for line in [
            "open_clanker_channel_messages_total{channel=\"unit-metered\",direction=\"in\"} 3",
            "open_clanker_channel_messages_total{channel=\"unit-metered\",direction=\"out\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn model_labels_are_bounded() {
        let mut seen = HashSet::new();
        for i in 0..MAX_MODELS {
            assert_eq!(bounded_label(&mut seen, &format!("m{i}")), format!("m{i}"));
        }
        assert_eq!(bounded_label(&mut seen, "one-too-many"), "other");
        assert_eq!(bounded_label(&mut seen, "m0"), "m0");
    }
}
