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
    StoredMessage, TurnError, TurnEvent, TurnRequest, TurnStarted, TurnStream, Usage, now_ms,
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
    /// Each caller's share of `turns` (`limits.max_concurrent_turns_per_caller`).
    shares: Arc<crate::shares::CallerShares>,
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
            shares: crate::shares::CallerShares::new(config.limits.turns_per_caller()),
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

    /// The session a turn continues: `None` when it starts a new one (`New`, or a key nothing has
    /// used yet). An unknown id is an error.
    async fn find_session(&self, session: &SessionRef) -> Result<Option<Session>, TurnError> {
        match session {
            SessionRef::Id(id) => {
                check_id(id)?;
                match self.store.get_session(id).await.map_err(store_error)? {
                    Some(s) => Ok(Some(s)),
                    None => Err(TurnError::NotFound(format!("session {id:?} not found"))),
                }
            }
            SessionRef::Key(key) => {
                check_key(key)?;
                self.store.session_by_key(key).await.map_err(store_error)
            }
            SessionRef::New => Ok(None),
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
    // The providers keep credentials out of their errors; a URL quoted in one loses its
    // credentials here too, before the text reaches the caller (or a chat).
    let text = open_clanker_core::redact::redact_urls_in(&e.to_string());
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
        // The caller's share first: a caller at its share takes nothing from the others.
        let share = match &request.caller {
            Some(caller) => Some(self.shares.try_acquire(caller).ok_or_else(|| {
                crate::metrics::rejected("caller_share");
                TurnError::ResourceExhausted(format!(
                    "this caller is running {} turns at once, its share of the gateway (limits.max_concurrent_turns_per_caller); retry when one ends",
                    self.shares.per_caller()
                ))
            })?),
            None => None,
        };
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
        let (target, system, messages) = if let SessionRef::Stateless(given) = request.session {
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
            (Target::Stateless, system, messages)
        } else {
            let existing = self
                .find_session(&request.session)
                .instrument(tracing::info_span!(parent: &span, "store.resolve_session"))
                .await?;
            self.check_spend(existing.as_ref()).await?;
            // A session this turn creates has no history: no query.
            let history = match &existing {
                Some(session) => self
                    .store
                    .recent_messages(&session.id, self.history_max_messages)
                    .instrument(tracing::info_span!(parent: &span, "store.history"))
                    .await
                    .map_err(store_error)?
                    .into_iter()
                    .map(|m| ChatMessage::new(m.role, m.content))
                    .collect(),
                None => Vec::new(),
            };
            let target = match (existing, &request.session) {
                (Some(session), _) => Target::Existing(session.id),
                (None, SessionRef::Key(key)) => Target::Create(Some(key.clone())),
                (None, _) => Target::Create(None),
            };
            let messages = self.context(history, &request.text);
            (target, self.system_prompt.clone(), messages)
        };
        let chain = self.chain(kind, entry, model.clone());
        let stateless = matches!(target, Target::Stateless);
        // The user's message is committed before the provider is called: a write that fails
        // (a full disk, a lock held elsewhere) ends the turn here, before any request spends
        // credits, and the caller gets the store's error.
        let user = |session_id: String| NewMessage {
            session_id,
            role: Role::User,
            content: request.text.clone(),
            provider: None,
            model: None,
            usage: Usage::default(),
            status: MessageStatus::Complete,
            stop_reason: None,
            cost_micros: 0,
        };
        let write_span =
            || tracing::info_span!(parent: &span, "store.append_message", role = "user");
        let (session_id, session_created, user_message_id) = match target {
            Target::Stateless => (String::new(), false, 0),
            Target::Existing(id) => {
                let stored = self
                    .store
                    .append_message(user(id))
                    .instrument(write_span())
                    .await
                    .map_err(store_error)?;
                (stored.session_id, false, stored.id)
            }
            Target::Create(key) => {
                let (session, stored) = self
                    .store
                    .create_session_with_message(key.as_deref(), user(String::new()))
                    .instrument(write_span())
                    .await
                    .map_err(store_error)?;
                (session.id, true, stored.id)
            }
        };
        span.record("session", session_id.as_str());
        let (tx, rx) = mpsc::channel(64);
        // `started` (the stored ids) is the stream's first event; the channel is new and empty.
        let _ = tx.try_send(TurnEvent::Started(Box::new(TurnStarted {
            session_id: session_id.clone(),
            session_created,
            user_message_id,
            provider: kind.to_string(),
            model,
        })));
        let turn = Turn {
            metrics: crate::metrics::TurnMetrics::start(kind.as_str()),
            store: (!stateless).then(|| self.store.clone()),
            chain,
            answered_by: 0,
            system,
            messages,
            session_id,
            answer: None,
            tx,
            shutdown: self.shutdown.clone(),
            prices: self.prices.clone(),
            day_spend: self.day_spend.clone(),
            _permit: (permit, share),
        };
        self.tasks
            .spawn(async move { turn.run().await }.instrument(span.clone()));
        Ok(ReceiverStream::new(rx).boxed())
    }

    async fn session_by_key(&self, key: &str) -> Result<Option<Session>, TurnError> {
        check_key(key)?;
        self.store.session_by_key(key).await.map_err(store_error)
    }

    async fn new_session(&self, key: &str) -> Result<Session, TurnError> {
        check_key(key)?;
        self.store
            .create_session(Some(key), "")
            .await
            .map_err(store_error)
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

/// Where a turn's session comes from.
enum Target {
    Stateless,
    /// This session id (it exists).
    Existing(String),
    /// A new session, under this key if any.
    Create(Option<String>),
}

/// How long streamed text may wait before it is checkpointed (stored while the answer goes on):
/// at most one write per turn per period, none for an answer done within one, and a `kill -9`
/// loses at most about this much of an answer.
const CHECKPOINT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

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
    /// The answer's row and creation time, once a checkpoint stored its beginning.
    answer: Option<(i64, i64)>,
    tx: mpsc::Sender<TurnEvent>,
    shutdown: CancellationToken,
    prices: Arc<PriceTable>,
    day_spend: Arc<DaySpend>,
    /// Held until the turn ends: the gateway's slot and the caller's.
    _permit: (OwnedSemaphorePermit, Option<crate::shares::SharePermit>),
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
    /// The turn's task, started once the user's message is stored (and `started` queued for the
    /// caller). Its future is allocated once per open stream and sized by its largest state, so
    /// the phases around the long wait for the provider's words (opening the stream, checkpoints,
    /// storing the answer) are boxed: only while they run do they take memory, and an idle
    /// stream's task holds the relay's state alone (docs/BENCHMARKS.md, memory per stream).
    async fn run(mut self) {
        let begun = std::time::Instant::now();
        let mut text = String::new();
        let mut usage = Usage::default();
        let end = self.relay(&mut text, &mut usage).await;
        Box::pin(self.finish(begun, end, text, usage)).await;
    }

    /// Stores what has arrived of the answer while it streams, through the store's writer: the
    /// first time as a new message marked interrupted (stop reason `streaming`), then by updating
    /// that row. A failure only costs the checkpoint; the turn goes on.
    async fn checkpoint(&mut self, c: &Candidate, text: &str) {
        let Some(store) = &self.store else {
            return;
        };
        let span = tracing::info_span!("store.checkpoint_answer", bytes = text.len());
        let result = match self.answer {
            Some((id, _)) => {
                store
                    .update_answer(id, text.to_owned())
                    .instrument(span)
                    .await
            }
            None => store
                .start_answer(NewMessage {
                    session_id: self.session_id.clone(),
                    role: Role::Assistant,
                    content: text.to_owned(),
                    provider: Some(c.kind.to_string()),
                    model: Some(c.model.clone()),
                    usage: Usage::default(),
                    status: MessageStatus::Interrupted,
                    stop_reason: None,
                    cost_micros: 0,
                })
                .instrument(span)
                .await
                .map(|m| self.answer = Some((m.id, m.created_at_ms))),
        };
        if let Err(e) = result {
            debug!(error = %e, "could not checkpoint the answer; it is stored when it ends");
        }
    }

    /// Stores the answer (whole or partial) and sends the caller its last event.
    async fn finish(self, begun: std::time::Instant, end: End, text: String, usage: Usage) {
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
            let span = tracing::info_span!("store.append_message", role = "assistant");
            let stored = match (&self.store, self.answer) {
                // Checkpointed while it streamed: its row gets the whole answer.
                (Some(store), Some((id, created_at_ms))) => {
                    store
                        .finish_answer(id, created_at_ms, message)
                        .instrument(span)
                        .await
                }
                (Some(store), None) => store.append_message(message).instrument(span).await,
                (None, _) => Ok(unstored(message)),
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
                let _ = self.tx.send(TurnEvent::Completed(Box::new(m))).await;
            }
            (None, _) => debug!(elapsed_ms, "caller went away; partial answer kept"),
            (Some(error), partial) => {
                warn!(elapsed_ms, error = %error, "turn failed");
                tracing::Span::current().record("otel.status_code", "ERROR");
                let _ = self
                    .tx
                    .send(TurnEvent::Failed {
                        error,
                        partial: partial.map(Box::new),
                    })
                    .await;
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

    /// Sends the caller an event; `false` when the caller is gone. The channel almost always
    /// has room: only a caller that far behind is waited for, in a boxed future, so the wait
    /// does not enlarge every idle stream's task.
    async fn emit(&self, event: TurnEvent) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(event)) => {
                Box::pin(self.tx.send(event)).await.is_ok()
            }
        }
    }

    async fn relay_one(&mut self, c: &Candidate, text: &mut String, usage: &mut Usage) -> Attempt {
        let opening = c.client.stream(self.request(c));
        let mut events = tokio::select! {
            r = opening => match r {
                Ok(s) => s,
                Err(e) => return Attempt::FailedBeforeFirstToken(e),
            },
            _ = self.tx.closed() => return Attempt::Ended(End::CallerGone),
            _ = self.shutdown.cancelled() => return Attempt::Ended(End::Shutdown),
        };
        // Armed by text not stored yet: the checkpoint that stores it (boxed: nothing while
        // disarmed, so idle streams stay small).
        let mut checkpoint: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            let next = tokio::select! {
                next = events.next() => Some(next),
                _ = self.tx.closed() => return Attempt::Ended(End::CallerGone),
                _ = self.shutdown.cancelled() => return Attempt::Ended(End::Shutdown),
                _ = async { if let Some(due) = checkpoint.as_mut() { due.await } },
                    if checkpoint.is_some() => None,
            };
            let Some(next) = next else {
                checkpoint = None;
                Box::pin(self.checkpoint(c, text)).await;
                continue;
            };
            match next {
                Some(Ok(StreamEvent::TextDelta(delta))) => {
                    if delta.is_empty() {
                        continue;
                    }
                    text.push_str(&delta);
                    if checkpoint.is_none() && self.store.is_some() {
                        checkpoint = Some(Box::pin(tokio::time::sleep(CHECKPOINT_AFTER)));
                    }
                    self.metrics.first_token(c.kind.as_str());
                    if !self.emit(TurnEvent::Delta(delta)).await {
                        return Attempt::Ended(End::CallerGone);
                    }
                }
                Some(Ok(StreamEvent::Usage(u))) => {
                    *usage = u;
                    if !self.emit(TurnEvent::Usage(u)).await {
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
    use open_clanker_providers::EventStream;

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
            caller: None,
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

    /// A provider that answers "a", "b" (or never, when `hang`), `pause` between them, counting
    /// the answers it started and those dropped.
    struct Fake {
        hang: bool,
        pause: std::time::Duration,
        opened: Arc<std::sync::atomic::AtomicUsize>,
        dropped: Arc<std::sync::atomic::AtomicUsize>,
    }

    struct DropCount(Arc<std::sync::atomic::AtomicUsize>);
    impl Drop for DropCount {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[async_trait::async_trait]
    impl Provider for Fake {
        fn kind(&self) -> ProviderKind {
            ProviderKind::Anthropic
        }
        async fn stream(&self, _: CompletionRequest) -> Result<EventStream, ProviderError> {
            self.opened
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let guard = DropCount(self.dropped.clone());
            let events = if self.hang {
                Vec::new()
            } else {
                vec![
                    StreamEvent::TextDelta("a".into()),
                    StreamEvent::TextDelta("b".into()),
                    StreamEvent::Done { stop_reason: None },
                ]
            };
            let (hang, pause) = (self.hang, self.pause);
            Ok(futures::stream::unfold(
                (guard, events.into_iter()),
                move |(guard, mut events)| async move {
                    if !pause.is_zero() && events.len() == 2 {
                        tokio::time::sleep(pause).await;
                    }
                    match events.next() {
                        Some(e) => Some((Ok(e), (guard, events))),
                        None if hang => futures::future::pending().await,
                        None => None,
                    }
                },
            )
            .boxed())
        }
    }

    async fn engine_with_fake(
        store: Store,
        hang: bool,
    ) -> (
        Engine,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        engine_with_pause(store, hang, std::time::Duration::ZERO).await
    }

    async fn engine_with_pause(
        store: Store,
        hang: bool,
        pause: std::time::Duration,
    ) -> (
        Engine,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut providers = HashMap::new();
        providers.insert(
            ProviderKind::Anthropic,
            ProviderEntry {
                client: Arc::new(Fake {
                    hang,
                    pause,
                    opened: opened.clone(),
                    dropped: dropped.clone(),
                }),
                default_model: "m".into(),
                max_tokens: 16,
            },
        );
        (
            Engine::new(&Config::default(), store, providers),
            opened,
            dropped,
        )
    }

    fn new_turn(text: &str) -> TurnRequest {
        TurnRequest {
            session: SessionRef::New,
            text: text.into(),
            provider: None,
            model: None,
            caller: None,
        }
    }

    /// The caller sees `started` (the message is stored) before any of the answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn started_comes_before_the_answer_and_both_messages_are_stored() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let (engine, opened, _) = engine_with_fake(store.clone(), false).await;
        for _ in 0..20 {
            let events: Vec<TurnEvent> = engine
                .start_turn(new_turn("hi"))
                .await
                .unwrap()
                .collect()
                .await;
            let TurnEvent::Started(started) = &events[0] else {
                panic!("first event: {:?}", events[0]);
            };
            assert!(started.session_created && started.user_message_id > 0);
            assert!(
                matches!(&events[1], TurnEvent::Delta(d) if d == "a"),
                "{events:?}"
            );
            assert!(
                matches!(&events[2], TurnEvent::Delta(d) if d == "b"),
                "{events:?}"
            );
            let TurnEvent::Completed(answer) = &events[3] else {
                panic!("last event: {:?}", events[3]);
            };
            assert_eq!(
                (answer.content.as_str(), &answer.session_id),
                ("ab", &started.session_id)
            );
            let history = store
                .history(&started.session_id, 0, None)
                .await
                .unwrap()
                .items;
            assert_eq!(history.len(), 2);
            assert_eq!(history[0].id, started.user_message_id);
        }
        assert_eq!(opened.load(std::sync::atomic::Ordering::SeqCst), 20);
    }

    /// When the user's message cannot be stored, the caller gets the store's error, nothing is
    /// streamed, and the provider is never asked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_store_write_never_calls_the_provider() {
        use sea_orm::ConnectionTrait as _;
        let dir = tempfile::tempdir().unwrap();
        let url = Store::sqlite_url_for_dir(dir.path());
        let store = Store::connect(&url).await.unwrap();
        let raw = sea_orm::Database::connect(&url).await.unwrap();
        raw.execute_unprepared(
            "CREATE TRIGGER refuse BEFORE INSERT ON messages \
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
        )
        .await
        .unwrap();
        let (engine, opened, dropped) = engine_with_fake(store.clone(), true).await;
        for _ in 0..10 {
            let err = engine.start_turn(new_turn("hi")).await.err().unwrap();
            assert!(
                matches!(&err, TurnError::Unavailable(m) if m.contains("disk on fire")),
                "{err:?}"
            );
        }
        assert_eq!(opened.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(store.stats().await.unwrap().sessions, 0);
    }

    /// Counts the updates of `messages` rows (checkpoints and the answers finished in their row)
    /// in a table of its own, through a second connection.
    async fn count_message_updates(url: &str) -> sea_orm::DatabaseConnection {
        use sea_orm::ConnectionTrait as _;
        let raw = sea_orm::Database::connect(url).await.unwrap();
        raw.execute_unprepared(
            "CREATE TABLE updates (n INTEGER NOT NULL); INSERT INTO updates VALUES (0); \
             CREATE TRIGGER count_updates AFTER UPDATE ON messages \
             BEGIN UPDATE updates SET n = n + 1; END",
        )
        .await
        .unwrap();
        raw
    }

    async fn message_updates(raw: &sea_orm::DatabaseConnection) -> i64 {
        use sea_orm::ConnectionTrait as _;
        raw.query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT n FROM updates",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
    }

    /// An answer done within the checkpoint period costs no extra write: it is inserted once, as
    /// before. One that takes longer is stored while it streams and finished in the same row.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_answers_longer_than_the_checkpoint_period_are_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let url = Store::sqlite_url_for_dir(dir.path());
        let store = Store::connect(&url).await.unwrap();
        let raw = count_message_updates(&url).await;

        let (engine, _, _) = engine_with_fake(store.clone(), false).await;
        let events: Vec<TurnEvent> = engine
            .start_turn(new_turn("quick"))
            .await
            .unwrap()
            .collect()
            .await;
        assert!(
            matches!(events.last(), Some(TurnEvent::Completed(_))),
            "{events:?}"
        );
        assert_eq!(
            message_updates(&raw).await,
            0,
            "a quick answer was checkpointed"
        );

        let pause = CHECKPOINT_AFTER * 2;
        let (engine, _, _) = engine_with_pause(store.clone(), false, pause).await;
        let mut turn = engine.start_turn(new_turn("slow")).await.unwrap();
        let Some(TurnEvent::Started(started)) = turn.next().await else {
            panic!("no started event");
        };
        assert!(matches!(turn.next().await, Some(TurnEvent::Delta(d)) if d == "a"));
        // While "b" is awaited, "a" is checkpointed: in the history, marked interrupted.
        let began = std::time::Instant::now();
        let partial = loop {
            let history = store
                .history(&started.session_id, 0, None)
                .await
                .unwrap()
                .items;
            if let Some(m) = history.get(1) {
                break m.clone();
            }
            assert!(began.elapsed() < pause * 10, "no checkpoint");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(partial.content, "a");
        assert_eq!(partial.status, MessageStatus::Interrupted);
        assert_eq!(
            partial.stop_reason.as_deref(),
            Some(open_clanker_store::STREAMING)
        );
        let rest: Vec<TurnEvent> = turn.collect().await;
        let Some(TurnEvent::Completed(answer)) = rest.last() else {
            panic!("{rest:?}");
        };
        assert_eq!((answer.id, answer.content.as_str()), (partial.id, "ab"));
        let history = store
            .history(&started.session_id, 0, None)
            .await
            .unwrap()
            .items;
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].status, MessageStatus::Complete);
        // The checkpoint inserted the row; the end of the answer updated it, once.
        assert_eq!(message_updates(&raw).await, 1);
    }
}
