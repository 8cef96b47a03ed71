//! The turn metrics: active streams, time to first token, turn duration and tokens, reported by
//! the engine through its observer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use open_clanker_core::{MessageStatus, Usage};

use super::{METRICS, failover, model_label, record_cost, rejected};

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

    fn observe(&self, provider: &str, outcome: &str) {
        if !self.finished.swap(true, Ordering::Relaxed) {
            METRICS
                .turn
                .with_label_values(&[provider, outcome])
                .observe(self.started.elapsed().as_secs_f64());
        }
    }
}

/// What the engine reports of the turn.
impl open_clanker_engine::TurnObserver for TurnMetrics {
    /// Call on every piece of the answer; only the first one is timed.
    fn first_token(&self, provider: &str) {
        if !self.first_token.swap(true, Ordering::Relaxed) {
            METRICS
                .ttft
                .with_label_values(&[provider])
                .observe(self.started.elapsed().as_secs_f64());
        }
    }

    /// Call once the answer is stored: `status` is the stored answer's, `failed` tells whether the
    /// turn ended with an error.
    fn finish(
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
