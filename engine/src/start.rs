//! Starting a turn: the checks that refuse it before any work (shutdown, text, the sender's
//! rate, the caller's share, the gateway's budget, the provider, the spend caps), then the
//! session and its context, then the user's message stored before the provider is asked.

use futures::StreamExt;
use open_clanker_core::{
    Caller, ChatMessage, MessageStatus, Role, Session, SessionRef, TurnError, TurnEvent,
    TurnRequest, TurnStarted, TurnStream, Usage,
};
use open_clanker_store::NewMessage;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use crate::Engine;
use crate::rules::{check_id, check_key, check_text, store_error};
use crate::turn::Turn;

impl Engine {
    /// The session a turn continues: `None` when it starts a new one (`New`, or a key nothing has
    /// used yet). An unknown id is an error.
    pub(crate) async fn find_session(
        &self,
        session: &SessionRef,
    ) -> Result<Option<Session>, TurnError> {
        match session {
            SessionRef::Id(id) => {
                let id = check_id(id)?;
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
    pub(crate) fn context(&self, history: Vec<ChatMessage>, text: &str) -> Vec<ChatMessage> {
        let mut budget = self.settings.history_max_chars;
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

    /// Starts a turn: `started` (the stored ids) is the stream's first event.
    pub(crate) async fn run_turn(&self, request: TurnRequest) -> Result<TurnStream, TurnError> {
        if self.shutdown.is_cancelled() {
            return Err(TurnError::Unavailable(
                "the gateway is shutting down".into(),
            ));
        }
        check_text(&request.text, self.settings.max_message_chars)?;
        let caller = request.caller.as_ref().map(Caller::key);
        // A chat sender's turn rate (API callers are limited per request at the door).
        if let (Some(Caller::ChatSender { .. }), Some(key), Some(limiter)) =
            (&request.caller, &caller, &self.sender_limiter)
            && let Err(not_until) = limiter.check_key(key)
        {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            self.observer.rejected("rate_limited");
            return Err(TurnError::ResourceExhausted(format!(
                "too many messages: {} per minute at most; retry after {}s",
                self.settings.turns_per_minute,
                wait.as_secs().max(1)
            )));
        }
        // The caller's share first: a caller at its share takes nothing from the others.
        let share = match &caller {
            Some(caller) => Some(self.shares.try_acquire(caller).ok_or_else(|| {
                self.observer.rejected("caller_share");
                TurnError::ResourceExhausted(format!(
                    "this caller is running {} turns at once, its share of the gateway (limits.max_concurrent_turns_per_caller); retry when one ends",
                    self.shares.per_caller()
                ))
            })?),
            None => None,
        };
        let permit = self.turns.clone().try_acquire_owned().map_err(|_| {
            self.observer.rejected("concurrent_turns");
            TurnError::ResourceExhausted(format!(
                "the gateway is running its limit of {} turns (limits.max_concurrent_turns); retry shortly",
                self.settings.max_concurrent_turns
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
                    .recent_messages(&session.id, self.settings.history_max_messages)
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
            metrics: self.observer.turn_started(kind.as_str()),
            observer: self.observer.clone(),
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
}

/// Where a turn's session comes from.
enum Target {
    Stateless,
    /// This session id (it exists).
    Existing(String),
    /// A new session, under this key if any.
    Create(Option<String>),
}
