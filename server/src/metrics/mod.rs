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
use std::sync::{LazyLock, Mutex, PoisonError};

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prometheus::{
    CounterVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

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

mod channels;
mod http;
mod turns;

#[cfg(test)]
mod tests;

pub use channels::metered_channel;
pub use http::{observe, observe_grpc};
pub use turns::{EngineMetrics, TurnMetrics};
