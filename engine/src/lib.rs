//! The turn engine: the one core every front end (gRPC `Chat`, the OpenAI-compatible endpoint,
//! the chat channels, the CLI through gRPC) runs a turn through, and the session operations of
//! `SessionService`.
//!
//! A turn validates its input, resolves the session, stores the user's message *before* the
//! provider is called, streams the provider's answer to the caller and stores it when it ends.
//! An answer cut off midway (provider failure, caller gone, shutdown) is stored with what
//! arrived, marked interrupted.
//!
//! The engine knows the providers and the store, and nothing of gRPC, HTTP or the config file:
//! the server builds its [`Settings`] from the config and watches it through an [`Observer`].

use std::collections::HashMap;
use std::sync::Arc;

use open_clanker_core::ProviderKind;
use open_clanker_store::Store;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod observe;
pub mod pricing;
mod route;
mod rules;
mod sessions;
mod settings;
pub mod shares;
mod spend;
mod start;
mod turn;

#[cfg(test)]
mod tests;

pub use observe::{Observer, TurnObserver, Unobserved};
pub use rules::{
    MAX_KEY_CHARS, MAX_TITLE_CHARS, check_id, check_key, check_text, check_title, provider_error,
    store_error,
};
pub use settings::{Fallback, ProviderEntry, Settings};

/// Runs turns over the store and the configured providers.
pub struct Engine {
    store: Store,
    providers: HashMap<ProviderKind, ProviderEntry>,
    settings: Settings,
    /// `settings.system_prompt`, trimmed; `None` when blank.
    system_prompt: Option<String>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// One permit per running turn (`max_concurrent_turns`).
    turns: Arc<Semaphore>,
    /// Each caller's share of `turns` (`max_concurrent_turns_per_caller`).
    shares: Arc<shares::CallerShares>,
    prices: Arc<pricing::PriceTable>,
    session_cap: Option<i64>,
    day_cap: Option<i64>,
    day_spend: Arc<spend::DaySpend>,
    /// `turns_per_minute` per chat sender.
    sender_limiter: Option<governor::DefaultKeyedRateLimiter<String>>,
    observer: Arc<dyn Observer>,
}

impl Engine {
    pub fn new(
        settings: Settings,
        store: Store,
        providers: HashMap<ProviderKind, ProviderEntry>,
        observer: Arc<dyn Observer>,
    ) -> Self {
        let prompt = settings.system_prompt.trim();
        Self {
            store,
            providers,
            system_prompt: (!prompt.is_empty()).then(|| prompt.to_string()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            turns: Arc::new(Semaphore::new(settings.max_concurrent_turns)),
            shares: shares::CallerShares::new(settings.max_concurrent_turns_per_caller),
            prices: Arc::new(pricing::PriceTable::new(&settings.prices)),
            session_cap: pricing::cap_micros(settings.max_usd_per_session),
            day_cap: pricing::cap_micros(settings.max_usd_per_day),
            day_spend: Arc::new(spend::DaySpend::default()),
            sender_limiter: std::num::NonZeroU32::new(settings.turns_per_minute)
                .map(|n| governor::RateLimiter::keyed(governor::Quota::per_minute(n))),
            observer,
            settings,
        }
    }

    /// The store, for what is not a turn or a session (status, health, access lists).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The rules this engine runs by.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Asks every running turn to stop now and store what it has, then waits for them.
    pub async fn interrupt_all(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// How many turns are running.
    pub fn running_turns(&self) -> usize {
        self.tasks.len()
    }
}
