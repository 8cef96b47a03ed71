//! The chat pipeline: the one code path every front end (gRPC `Chat`, channels, ...) runs a turn on.
//!
//! A turn validates its input, resolves the session, stores the user's message *before* the provider
//! is called, streams the provider's answer to the caller and stores it when it ends. An answer cut
//! off midway (provider failure, caller gone, shutdown) is stored with what arrived, marked
//! interrupted.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use open_clanker_core::{
    ChatBackend, ChatMessage, MessageStatus, ProviderKind, Role, Session, SessionRef,
    StoredMessage, TurnError, TurnEvent, TurnRequest, TurnStream, Usage,
};
use open_clanker_providers::{CompletionRequest, Provider, ProviderError, StreamEvent};
use open_clanker_store::{NewMessage, Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, warn};

use crate::config::Config;
use crate::pricing::{PriceTable, cap_micros, usd};

/// Longest accepted model name.
const MAX_MODEL_CHARS: usize = 200;
/// Longest accepted session key.
pub const MAX_KEY_CHARS: usize = 256;

/// One configured provider.
pub struct ProviderEntry {
    pub client: Arc<dyn Provider>,
    pub default_model: String,
    pub max_tokens: u32,
}

/// A provider and model a turn may be answered by.
#[derive(Clone)]
struct Candidate {
    kind: ProviderKind,
    client: Arc<dyn Provider>,
    model: String,
    max_tokens: u32,
}

/// Today's spend across all sessions, kept in memory for the daily cap and loaded from the
/// store's ledger when the UTC day changes.
#[derive(Default)]
struct DaySpend {
    today: tokio::sync::Mutex<Option<(String, i64)>>,
}

impl DaySpend {
    async fn current(&self, store: &Store) -> Result<i64, TurnError> {
        let day = open_clanker_store::utc_day(now_ms());
        let mut today = self.today.lock().await;
        match &*today {
            Some((d, v)) if *d == day => Ok(*v),
            _ => {
                let v = store.spend_on(&day).await.map_err(store_error)?;
                *today = Some((day, v));
                Ok(v)
            }
        }
    }

    async fn add(&self, micros: i64) {
        let day = open_clanker_store::utc_day(now_ms());
        let mut today = self.today.lock().await;
        match &mut *today {
            Some((d, v)) if *d == day => *v += micros,
            // Another day: reload from the ledger next time.
            _ => *today = None,
        }
    }
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs turns over the store and the configured providers.
pub struct Engine {
    store: Store,
    providers: HashMap<ProviderKind, ProviderEntry>,
    default_provider: ProviderKind,
    system_prompt: Option<String>,
    max_message_chars: usize,
    history_max_messages: u32,
    history_max_chars: usize,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// One permit per running turn (`limits.max_concurrent_turns`).
    turns: Arc<Semaphore>,
    max_turns: usize,
    prices: Arc<PriceTable>,
    /// `chat.fallback`, parsed.
    fallback: Vec<(ProviderKind, Option<String>)>,
    session_cap: Option<i64>,
    day_cap: Option<i64>,
    day_spend: Arc<DaySpend>,
    /// `limits.turns_per_minute` per chat-channel sender (session keys `telegram:…`, `discord:…`);
    /// API callers are limited per token at the door (`security::guard`).
    sender_limiter: Option<governor::DefaultKeyedRateLimiter<String>>,
    per_minute: u32,
}

/// Session keys that stand for one person on a chat channel.
const CHANNEL_KEY_PREFIXES: &[&str] = &["telegram:", "discord:"];

impl Engine {
    pub fn new(
        config: &Config,
        store: Store,
        providers: HashMap<ProviderKind, ProviderEntry>,
    ) -> Self {
        let prompt = config.chat.system_prompt.trim();
        Self {
            store,
            providers,
            default_provider: config.default_provider(),
            system_prompt: (!prompt.is_empty()).then(|| prompt.to_string()),
            max_message_chars: config.chat.max_message_chars,
            history_max_messages: config.chat.history_max_messages,
            history_max_chars: config.chat.history_max_chars,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            turns: Arc::new(Semaphore::new(config.limits.max_concurrent_turns)),
            max_turns: config.limits.max_concurrent_turns,
            prices: Arc::new(PriceTable::new(&config.pricing)),
            fallback: config
                .chat
                .fallback
                .iter()
                .filter_map(|entry| {
                    let (p, m) = match entry.split_once('/') {
                        Some((p, m)) => (p, Some(m.trim().to_string()).filter(|m| !m.is_empty())),
                        None => (entry.as_str(), None),
                    };
                    p.trim().parse::<ProviderKind>().ok().map(|k| (k, m))
                })
                .collect(),
            session_cap: cap_micros(config.limits.max_usd_per_session),
            day_cap: cap_micros(config.limits.max_usd_per_day),
            day_spend: Arc::new(DaySpend::default()),
            sender_limiter: std::num::NonZeroU32::new(config.limits.turns_per_minute)
                .map(|n| governor::RateLimiter::keyed(governor::Quota::per_minute(n))),
            per_minute: config.limits.turns_per_minute,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Asks every running turn to stop now and store what it has, then waits for them.
    pub async fn interrupt_all(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Waits until no turn is running (new turns may still start).
    pub fn running_turns(&self) -> usize {
        self.tasks.len()
    }

    fn check_text(&self, text: &str) -> Result<(), TurnError> {
        if text.trim().is_empty() {
            return Err(TurnError::InvalidArgument("text is empty".into()));
        }
        let chars = text.chars().count();
        if chars > self.max_message_chars {
            return Err(TurnError::InvalidArgument(format!(
                "text is {chars} characters long; the limit is {} (chat.max_message_chars)",
                self.max_message_chars
            )));
        }
        Ok(())
    }

    fn resolve_provider(
        &self,
        name: Option<&str>,
        model: Option<&str>,
    ) -> Result<(ProviderKind, &ProviderEntry, String), TurnError> {
        let kind = match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => n
                .parse::<ProviderKind>()
                .map_err(|e| TurnError::InvalidArgument(e.0))?,
            None => self.default_provider,
        };
        let entry = self.providers.get(&kind).ok_or_else(|| {
            TurnError::FailedPrecondition(format!(
                "provider {kind} is not configured: set {} (or providers.{kind}.api_key in the config file)",
                kind.api_key_env()
            ))
        })?;
        let model = match model.map(str::trim).filter(|m| !m.is_empty()) {
            Some(m) if m.chars().count() > MAX_MODEL_CHARS || m.chars().any(char::is_control) => {
                return Err(TurnError::InvalidArgument(format!(
                    "model name must be at most {MAX_MODEL_CHARS} printable characters"
                )));
            }
            Some(m) => m.to_string(),
            None => entry.default_model.clone(),
        };
        Ok((kind, entry, model))
    }

    /// The requested provider and model, then the configured fallbacks that are set up.
    fn chain(&self, kind: ProviderKind, entry: &ProviderEntry, model: String) -> Vec<Candidate> {
        let mut chain = vec![Candidate {
            kind,
            client: entry.client.clone(),
            model,
            max_tokens: entry.max_tokens,
        }];
        for (k, m) in &self.fallback {
            let Some(e) = self.providers.get(k) else {
                continue;
            };
            let model = m.clone().unwrap_or_else(|| e.default_model.clone());
            if chain.iter().any(|c| c.kind == *k && c.model == model) {
                continue;
            }
            chain.push(Candidate {
                kind: *k,
                client: e.client.clone(),
                model,
                max_tokens: e.max_tokens,
            });
        }
        chain
    }

    /// Refuses a turn over a spend cap, before anything is stored or sent.
    async fn check_spend(&self, session: Option<&Session>) -> Result<(), TurnError> {
        if let (Some(cap), Some(s)) = (self.session_cap, session)
            && s.cost_micros >= cap
        {
            return Err(TurnError::ResourceExhausted(format!(
                "this session has spent ${:.4} of its ${:.2} cap (limits.max_usd_per_session); start a new session or raise the cap",
                usd(s.cost_micros),
                usd(cap)
            )));
        }
        if let Some(cap) = self.day_cap {
            let spent = self.day_spend.current(&self.store).await?;
            if spent >= cap {
                return Err(TurnError::ResourceExhausted(format!(
                    "today's spend ${:.4} reached the ${:.2} daily cap (limits.max_usd_per_day); it resets at 00:00 UTC",
                    usd(spent),
                    usd(cap)
                )));
            }
        }
        Ok(())
    }

    async fn resolve_session(&self, session: &SessionRef) -> Result<(Session, bool), TurnError> {
        match session {
            SessionRef::Id(id) => {
                check_id(id)?;
                match self.store.get_session(id).await.map_err(store_error)? {
                    Some(s) => Ok((s, false)),
                    None => Err(TurnError::NotFound(format!("session {id:?} not found"))),
                }
            }
            SessionRef::Key(key) => {
                check_key(key)?;
                match self.store.session_by_key(key).await.map_err(store_error)? {
                    Some(s) => Ok((s, false)),
                    None => Ok((
                        self.store
                            .create_session(Some(key), "")
                            .await
                            .map_err(store_error)?,
                        true,
                    )),
                }
            }
            SessionRef::New => Ok((
                self.store
                    .create_session(None, "")
                    .await
                    .map_err(store_error)?,
                true,
            )),
            SessionRef::Stateless(_) => Err(TurnError::Internal(
                "a stateless turn has no session".into(),
            )),
        }
    }

    /// The context for the provider: the newest history that fits the budget, oldest first.
    fn context(&self, history: Vec<ChatMessage>, text: &str) -> Vec<ChatMessage> {
        let mut budget = self.history_max_chars;
        let mut kept: Vec<ChatMessage> = Vec::new();
        for m in history.into_iter().rev() {
            if m.content.is_empty() || m.role == Role::System {
                continue;
            }
            let len = m.content.chars().count();
            if len > budget {
                break;
            }
            budget -= len;
            kept.push(m);
        }
        kept.reverse();
        // A conversation sent to a model starts with the user.
        while kept.first().is_some_and(|m| m.role != Role::User) {
            kept.remove(0);
        }
        kept.push(ChatMessage::new(Role::User, text));
        kept
    }
}

/// Session ids are UUIDs; anything much longer is not an id at all.
fn check_id(id: &str) -> Result<(), TurnError> {
    if id.trim().is_empty() {
        return Err(TurnError::InvalidArgument("session_id is empty".into()));
    }
    if id.len() > 64 || id.chars().any(char::is_control) {
        return Err(TurnError::InvalidArgument(format!(
            "session_id {:?} is not a session id",
            id.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

pub fn check_key(key: &str) -> Result<(), TurnError> {
    if key.trim().is_empty() {
        return Err(TurnError::InvalidArgument("session key is empty".into()));
    }
    if key.chars().count() > MAX_KEY_CHARS || key.chars().any(char::is_control) {
        return Err(TurnError::InvalidArgument(format!(
            "session key must be at most {MAX_KEY_CHARS} printable characters"
        )));
    }
    Ok(())
}

/// Maps a store failure onto a turn error.
pub fn store_error(e: StoreError) -> TurnError {
    match e {
        StoreError::NotFound(m) => TurnError::NotFound(m),
        StoreError::InvalidPageToken(m) => TurnError::InvalidArgument(m),
        other => TurnError::Unavailable(format!("the store failed: {other}")),
    }
}

/// Maps a provider failure onto a turn error; the texts never contain keys.
pub fn provider_error(e: &ProviderError) -> TurnError {
    let text = e.to_string();
    match e {
        ProviderError::Unauthorized { .. } => TurnError::FailedPrecondition(text),
        ProviderError::RateLimited { .. } => TurnError::ResourceExhausted(text),
        ProviderError::Unavailable { .. } | ProviderError::Stream { .. } => {
            TurnError::Unavailable(text)
        }
        ProviderError::Timeout { .. } => TurnError::DeadlineExceeded(text),
        ProviderError::BadRequest { .. } | ProviderError::InvalidRequest { .. } => {
            TurnError::InvalidArgument(text)
        }
        ProviderError::Config(_) => TurnError::FailedPrecondition(text),
    }
}

#[async_trait::async_trait]
impl ChatBackend for Engine {
    async fn start_turn(&self, request: TurnRequest) -> Result<TurnStream, TurnError> {
        if self.shutdown.is_cancelled() {
            return Err(TurnError::Unavailable(
                "the gateway is shutting down".into(),
            ));
        }
        self.check_text(&request.text)?;
        if let (SessionRef::Key(key), Some(limiter)) = (&request.session, &self.sender_limiter)
            && CHANNEL_KEY_PREFIXES.iter().any(|p| key.starts_with(p))
            && let Err(not_until) = limiter.check_key(key)
        {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            crate::metrics::rejected("rate_limited");
            return Err(TurnError::ResourceExhausted(format!(
                "too many messages: {} per minute at most; retry after {}s",
                self.per_minute,
                wait.as_secs().max(1)
            )));
        }
        let permit = self.turns.clone().try_acquire_owned().map_err(|_| {
            crate::metrics::rejected("concurrent_turns");
            TurnError::ResourceExhausted(format!(
                "the gateway is running its limit of {} turns (limits.max_concurrent_turns); retry shortly",
                self.max_turns
            ))
        })?;
        let (kind, entry, model) =
            self.resolve_provider(request.provider.as_deref(), request.model.as_deref())?;
        // Created before the store work so its spans are children (traces); `session` is filled in
        // once known.
        let span = tracing::info_span!(
            "turn",
            session = tracing::field::Empty,
            provider = %kind,
            model = %model,
            otel.status_code = tracing::field::Empty
        );
        let (session_id, session_created, user_message_id, system, messages) =
            if let SessionRef::Stateless(given) = request.session {
                let (system, history): (Vec<ChatMessage>, Vec<ChatMessage>) =
                    given.into_iter().partition(|m| m.role == Role::System);
                let system = if system.is_empty() {
                    self.system_prompt.clone()
                } else {
                    Some(
                        system
                            .into_iter()
                            .map(|m| m.content)
                            .collect::<Vec<_>>()
                            .join("\n\n"),
                    )
                };
                self.check_spend(None).await?;
                let messages = self.context(history, &request.text);
                (String::new(), false, 0, system, messages)
            } else {
                let (session, created) = self
                    .resolve_session(&request.session)
                    .instrument(tracing::info_span!(parent: &span, "store.resolve_session"))
                    .await?;
                self.check_spend(Some(&session)).await?;
                // A session this turn created has no history: skip the query (one store round
                // trip less before the first token).
                let history = if created {
                    Vec::new()
                } else {
                    self.store
                        .recent_messages(&session.id, self.history_max_messages)
                        .instrument(tracing::info_span!(parent: &span, "store.history"))
                        .await
                        .map_err(store_error)?
                        .into_iter()
                        .map(|m| ChatMessage::new(m.role, m.content))
                        .collect()
                };
                let user = self
                    .store
                    .append_message(NewMessage {
                        session_id: session.id.clone(),
                        role: Role::User,
                        content: request.text.clone(),
                        provider: None,
                        model: None,
                        usage: Usage::default(),
                        status: MessageStatus::Complete,
                        stop_reason: None,
                        cost_micros: 0,
                    })
                    .instrument(tracing::info_span!(
                        parent: &span,
                        "store.append_message",
                        role = "user"
                    ))
                    .await
                    .map_err(store_error)?;
                let messages = self.context(history, &request.text);
                (
                    session.id,
                    created,
                    user.id,
                    self.system_prompt.clone(),
                    messages,
                )
            };
        let chain = self.chain(kind, entry, model.clone());
        let (tx, rx) = mpsc::channel(64);
        let started = TurnEvent::Started {
            session_id: session_id.clone(),
            session_created,
            user_message_id,
            provider: kind.to_string(),
            model: model.clone(),
        };
        span.record("session", session_id.as_str());
        let turn = Turn {
            metrics: crate::metrics::TurnMetrics::start(kind.as_str()),
            store: (!session_id.is_empty()).then(|| self.store.clone()),
            chain,
            answered_by: 0,
            system,
            messages,
            session_id,
            tx,
            shutdown: self.shutdown.clone(),
            prices: self.prices.clone(),
            day_spend: self.day_spend.clone(),
            _permit: permit,
        };
        self.tasks
            .spawn(async move { turn.run(started).await }.instrument(span));
        Ok(ReceiverStream::new(rx).boxed())
    }

    async fn session_by_key(&self, key: &str) -> Result<Option<Session>, TurnError> {
        check_key(key)?;
        self.store.session_by_key(key).await.map_err(store_error)
    }

    async fn reset_session(&self, session_id: &str) -> Result<(), TurnError> {
        check_id(session_id)?;
        self.store
            .reset_session(session_id)
            .await
            .map(|_| ())
            .map_err(store_error)
    }
}

/// The answer of a stateless turn, shaped like a stored message (id 0).
fn unstored(m: NewMessage) -> StoredMessage {
    StoredMessage {
        id: 0,
        session_id: m.session_id,
        role: m.role,
        content: m.content,
        provider: m.provider,
        model: m.model,
        usage: m.usage,
        status: m.status,
        stop_reason: m.stop_reason,
        created_at_ms: now_ms(),
        cost_micros: m.cost_micros,
    }
}

/// One running turn.
struct Turn {
    /// `None` for a stateless turn: nothing is stored.
    store: Option<Store>,
    /// The requested provider and model, then the fallbacks.
    chain: Vec<Candidate>,
    /// Index into `chain` of the candidate that is answering.
    answered_by: usize,
    system: Option<String>,
    messages: Vec<ChatMessage>,
    session_id: String,
    tx: mpsc::Sender<TurnEvent>,
    shutdown: CancellationToken,
    prices: Arc<PriceTable>,
    day_spend: Arc<DaySpend>,
    /// Held until the turn ends.
    _permit: OwnedSemaphorePermit,
    /// Counts the turn as an active stream until it ends (Prometheus).
    metrics: crate::metrics::TurnMetrics,
}

/// How one provider's attempt ended.
enum Attempt {
    /// Nothing reached the caller yet: another provider may take over.
    FailedBeforeFirstToken(ProviderError),
    Ended(End),
}

/// How the answer ended.
enum End {
    Done(Option<String>),
    Failed(TurnError),
    CallerGone,
    Shutdown,
}

impl Turn {
    async fn run(mut self, started: TurnEvent) {
        let begun = std::time::Instant::now();
        // The caller may already be gone; the user's message is stored either way.
        let _ = self.tx.send(started).await;
        let mut text = String::new();
        let mut usage = Usage::default();
        let end = self.relay(&mut text, &mut usage).await;
        let answered = self.chain[self.answered_by].clone();
        let (status, stop_reason, error) = match end {
            End::Done(reason) => (MessageStatus::Complete, reason, None),
            End::Failed(e) => (
                MessageStatus::Interrupted,
                Some("error".to_string()),
                Some(e),
            ),
            End::CallerGone => (
                MessageStatus::Interrupted,
                Some("cancelled".to_string()),
                None,
            ),
            End::Shutdown => (
                MessageStatus::Interrupted,
                Some("shutdown".to_string()),
                Some(TurnError::Unavailable(
                    "the gateway shut down before the answer was complete".into(),
                )),
            ),
        };
        let stored = if status == MessageStatus::Complete || !text.is_empty() {
            let cost_micros = self.prices.cost_micros(&answered.model, usage);
            let message = NewMessage {
                session_id: self.session_id.clone(),
                role: Role::Assistant,
                content: text,
                provider: Some(answered.kind.to_string()),
                model: Some(answered.model.clone()),
                usage,
                status,
                stop_reason,
                cost_micros,
            };
            self.day_spend.add(cost_micros).await;
            crate::metrics::record_cost(answered.kind.as_str(), &answered.model, usd(cost_micros));
            let stored = match &self.store {
                Some(store) => {
                    store
                        .append_message(message)
                        .instrument(tracing::info_span!(
                            "store.append_message",
                            role = "assistant"
                        ))
                        .await
                }
                None => Ok(unstored(message)),
            };
            match stored {
                Ok(m) => Some(m),
                Err(e) => {
                    warn!(error = %e, "could not store the answer");
                    let _ = self
                        .tx
                        .send(TurnEvent::Failed {
                            error: store_error(e),
                            partial: None,
                        })
                        .await;
                    return;
                }
            }
        } else {
            None
        };
        let elapsed_ms = begun.elapsed().as_millis() as u64;
        self.metrics.finish(
            answered.kind.as_str(),
            &answered.model,
            status,
            error.is_some(),
            &usage,
        );
        match (error, stored) {
            (None, Some(m)) if status == MessageStatus::Complete => {
                info!(
                    elapsed_ms,
                    input_tokens = usage.input_tokens,
                    output_tokens = usage.output_tokens,
                    "turn completed"
                );
                let _ = self.tx.send(TurnEvent::Completed(m)).await;
            }
            (None, _) => debug!(elapsed_ms, "caller went away; partial answer kept"),
            (Some(error), partial) => {
                warn!(elapsed_ms, error = %error, "turn failed");
                tracing::Span::current().record("otel.status_code", "ERROR");
                let _ = self.tx.send(TurnEvent::Failed { error, partial }).await;
            }
        }
    }

    fn request(&self, c: &Candidate) -> CompletionRequest {
        CompletionRequest {
            model: c.model.clone(),
            system: self.system.clone(),
            messages: self.messages.clone(),
            max_tokens: c.max_tokens,
            temperature: None,
        }
    }

    /// Streams the answer to the caller. A provider that fails before its first token with a
    /// transient error (429, 5xx, timeout, broken stream) hands the turn to the next candidate;
    /// after the first token a failure ends the turn.
    async fn relay(&mut self, text: &mut String, usage: &mut Usage) -> End {
        let mut index = 0;
        loop {
            self.answered_by = index;
            let candidate = self.chain[index].clone();
            let end = self
                .relay_one(&candidate, text, usage)
                .instrument(tracing::info_span!(
                    "provider.stream",
                    provider = %candidate.kind,
                    model = %candidate.model
                ))
                .await;
            let next = index + 1;
            match end {
                Attempt::FailedBeforeFirstToken(e)
                    if e.is_transient() && next < self.chain.len() =>
                {
                    let to = &self.chain[next];
                    warn!(
                        from = %format!("{}/{}", candidate.kind, candidate.model),
                        to = %format!("{}/{}", to.kind, to.model),
                        error = %e,
                        "provider failed before the first token; failing over"
                    );
                    crate::metrics::failover(
                        &format!("{}/{}", candidate.kind, candidate.model),
                        &format!("{}/{}", to.kind, to.model),
                    );
                    index = next;
                }
                Attempt::FailedBeforeFirstToken(e) => return End::Failed(provider_error(&e)),
                Attempt::Ended(end) => return end,
            }
        }
    }

    async fn relay_one(&self, c: &Candidate, text: &mut String, usage: &mut Usage) -> Attempt {
        let mut events = tokio::select! {
            r = c.client.stream(self.request(c)) => match r {
                Ok(s) => s,
                Err(e) => return Attempt::FailedBeforeFirstToken(e),
            },
            _ = self.tx.closed() => return Attempt::Ended(End::CallerGone),
            _ = self.shutdown.cancelled() => return Attempt::Ended(End::Shutdown),
        };
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                _ = self.tx.closed() => return Attempt::Ended(End::CallerGone),
                _ = self.shutdown.cancelled() => return Attempt::Ended(End::Shutdown),
            };
            match next {
                Some(Ok(StreamEvent::TextDelta(delta))) => {
                    if delta.is_empty() {
                        continue;
                    }
                    text.push_str(&delta);
                    self.metrics.first_token(c.kind.as_str());
                    if self.tx.send(TurnEvent::Delta(delta)).await.is_err() {
                        return Attempt::Ended(End::CallerGone);
                    }
                }
                Some(Ok(StreamEvent::Usage(u))) => {
                    *usage = u;
                    if self.tx.send(TurnEvent::Usage(u)).await.is_err() {
                        return Attempt::Ended(End::CallerGone);
                    }
                }
                Some(Ok(StreamEvent::Done { stop_reason })) => {
                    return Attempt::Ended(End::Done(stop_reason));
                }
                Some(Err(e)) if text.is_empty() => return Attempt::FailedBeforeFirstToken(e),
                Some(Err(e)) => return Attempt::Ended(End::Failed(provider_error(&e))),
                None => {
                    return Attempt::Ended(End::Failed(TurnError::Unavailable(format!(
                        "{} ended the answer without finishing it",
                        c.kind
                    ))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chat_channel_senders_are_rate_limited_per_key() {
        let mut config = Config::default();
        config.limits.turns_per_minute = 2;
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let engine = Engine::new(&config, store, HashMap::new());
        let turn = |key: &str| TurnRequest {
            session: SessionRef::Key(key.to_string()),
            text: "hi".into(),
            provider: None,
            model: None,
        };
        // No provider is configured: the first two get that error, the third the rate limit.
        for _ in 0..2 {
            let err = engine.start_turn(turn("telegram:42")).await.err().unwrap();
            assert!(matches!(err, TurnError::FailedPrecondition(_)), "{err:?}");
        }
        let err = engine.start_turn(turn("telegram:42")).await.err().unwrap();
        assert!(
            matches!(&err, TurnError::ResourceExhausted(m) if m.contains("retry after")),
            "{err:?}"
        );
        // Another sender, and keys that are not chat senders, have their own budgets.
        let other = engine.start_turn(turn("telegram:43")).await.err().unwrap();
        assert!(
            matches!(other, TurnError::FailedPrecondition(_)),
            "{other:?}"
        );
        for _ in 0..3 {
            let err = engine.start_turn(turn("my-app")).await.err().unwrap();
            assert!(matches!(err, TurnError::FailedPrecondition(_)), "{err:?}");
        }
    }
}
