//! What the engine reports as it runs turns, for whoever counts it: the server turns it into
//! Prometheus metrics, the engine itself knows nothing of `/metrics`.

use open_clanker_core::{MessageStatus, Usage};

/// Receives the engine's events.
pub trait Observer: Send + Sync + 'static {
    /// A turn refused before any work: `rate_limited`, `caller_share` or `concurrent_turns`.
    fn rejected(&self, reason: &'static str);
    /// A provider failed before its first token and another took the turn over (both as
    /// `provider/model`).
    fn failover(&self, from: &str, to: &str);
    /// What an answer cost, in USD.
    fn cost(&self, provider: &str, model: &str, usd: f64);
    /// A turn handed to its first provider; what this returns lives as long as the turn.
    fn turn_started(&self, provider: &str) -> Box<dyn TurnObserver>;
}

/// Observes one running turn; dropped when the turn ends (a turn dropped without
/// [`TurnObserver::finish`] failed: its answer could not be stored).
pub trait TurnObserver: Send + Sync {
    /// Called on every piece of the answer; only the first one matters for its timing.
    fn first_token(&self, provider: &str);
    /// Called once the answer is stored, with the provider and model that answered.
    fn finish(
        &self,
        provider: &str,
        model: &str,
        status: MessageStatus,
        failed: bool,
        usage: &Usage,
    );
}

/// Observes nothing: for tools and tests that run the engine without metrics.
pub struct Unobserved;

impl Observer for Unobserved {
    fn rejected(&self, _: &'static str) {}
    fn failover(&self, _: &str, _: &str) {}
    fn cost(&self, _: &str, _: &str, _: f64) {}
    fn turn_started(&self, _: &str) -> Box<dyn TurnObserver> {
        Box::new(Unobserved)
    }
}

impl TurnObserver for Unobserved {
    fn first_token(&self, _: &str) {}
    fn finish(&self, _: &str, _: &str, _: MessageStatus, _: bool, _: &Usage) {}
}
