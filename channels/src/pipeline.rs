//! One incoming chat message, start to finish, the same for every platform: access control
//! (pairing codes for strangers), commands, and the turn through [`ChatBackend`] with its answer
//! relayed into the chat.

use open_clanker_core::now_ms;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use tokio::sync::OwnedMutexGuard;

use open_clanker_core::{
    AccessError, AccessStore, ChatBackend, NewPairing, SessionRef, TurnRequest,
};

use crate::access::{AccessPolicy, Resolved, Who};
use crate::backoff::retry;
use crate::commands::{self, Command, Parsed};
use crate::pairing;
use crate::relay::{self, RelayConfig, RelayOutcome};
use crate::session::session_key;
use crate::sink::{ReplySink, SendError};
use crate::status::StatusHandle;

/// What a channel needs from the gateway.
#[derive(Clone)]
pub struct ChannelContext {
    /// Runs turns (the gateway's chat engine).
    pub backend: Arc<dyn ChatBackend>,
    /// The stored allowlist and pairing codes.
    pub access: Arc<dyn AccessStore>,
}

/// An incoming chat message, as a platform module hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The chat (Telegram chat id; Discord channel id).
    pub chat_id: String,
    /// The author's user id.
    pub sender_id: String,
    /// A readable name for the owner's listings (`@name (Full Name)`).
    pub sender_label: String,
    /// A group or guild channel rather than a direct message.
    pub is_group: bool,
    /// Mentions the bot, replies to it, or is a command for it (always true in DMs).
    pub addressed: bool,
    /// The text, with the bot's mention removed.
    pub text: String,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Dropped without a reply.
    Ignored(&'static str),
    /// A stranger was sent a pairing code.
    PairingSent { code: String },
    /// A stranger was told to come back later (too many pending codes).
    PairingRefused,
    /// A command was answered.
    Command(Command),
    /// A turn ran and its answer was relayed.
    Answered(RelayOutcome),
    /// Something failed; the message says what.
    Failed(String),
}

/// Per-key async locks: one turn at a time per session, so answers never interleave.
#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    /// Waits for `key`'s lock.
    pub fn lock_owned(
        &self,
        key: &str,
    ) -> impl Future<Output = OwnedMutexGuard<()>> + Send + 'static {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            if map.len() > 1024 {
                // Forget the locks nobody holds or waits for.
                map.retain(|_, l| Arc::strong_count(l) > 1);
            }
            map.entry(key.to_owned()).or_default().clone()
        };
        lock.lock_owned()
    }
}

/// A message's place in its session's queue ([`Pipeline::reserve`]).
pub struct Reservation(Pin<Box<dyn Future<Output = OwnedMutexGuard<()>> + Send>>);

/// Handles the messages of one channel.
pub struct Pipeline {
    channel: String,
    ctx: ChannelContext,
    policy: AccessPolicy,
    relay: RelayConfig,
    locks: KeyedLocks,
    status: Option<StatusHandle>,
}

impl Pipeline {
    pub fn new(
        channel: &str,
        ctx: ChannelContext,
        policy: AccessPolicy,
        relay: RelayConfig,
        status: Option<StatusHandle>,
    ) -> Self {
        Self {
            channel: channel.to_owned(),
            ctx,
            policy,
            relay,
            locks: KeyedLocks::default(),
            status,
        }
    }

    /// The channel's name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The access rules.
    pub fn policy(&self) -> &AccessPolicy {
        &self.policy
    }

    /// Sends a short reply, waiting out rate limits.
    async fn say<S: ReplySink>(&self, sink: &S, text: &str) -> Result<(), SendError> {
        for part in crate::split::split_markdown(text, sink.max_len()) {
            retry(self.relay.retry, || sink.send(&part)).await?;
        }
        Ok(())
    }

    fn send_failed(&self, e: &SendError) -> Outcome {
        let message = format!("could not reply: {e}");
        if let Some(status) = &self.status {
            status.error(&message);
        }
        tracing::warn!(channel = %self.channel, error = %e, "could not reply");
        Outcome::Failed(message)
    }

    /// Takes `msg`'s place in its session's queue now, so that messages of one session are
    /// handled in the order they arrived even when each runs on its own task: call it in arrival
    /// order, then [`Pipeline::handle_in_turn`] on any task.
    pub async fn reserve(&self, msg: &Inbound) -> Reservation {
        let key = session_key(&self.channel, &msg.chat_id, &msg.sender_id, msg.is_group);
        let mut wait: Pin<Box<dyn Future<Output = OwnedMutexGuard<()>> + Send>> =
            Box::pin(self.locks.lock_owned(&key));
        // Polling once queues the waiter (tokio's mutex is FIFO) without waiting for the lock.
        let ready = futures::poll!(wait.as_mut());
        Reservation(match ready {
            Poll::Ready(guard) => Box::pin(std::future::ready(guard)),
            Poll::Pending => wait,
        })
    }

    /// Handles one message; `bot_name` is the bot's user name (for `/command@bot_name`).
    pub async fn handle<S: ReplySink>(
        &self,
        msg: Inbound,
        bot_name: Option<&str>,
        sink: &S,
    ) -> Outcome {
        let place = self.reserve(&msg).await;
        self.handle_in_turn(place, msg, bot_name, sink).await
    }

    /// [`Pipeline::handle`] with a place taken earlier by [`Pipeline::reserve`].
    pub async fn handle_in_turn<S: ReplySink>(
        &self,
        place: Reservation,
        msg: Inbound,
        bot_name: Option<&str>,
        sink: &S,
    ) -> Outcome {
        let _turn = place.0.await;
        let text = msg.text.trim();
        if text.is_empty() {
            return Outcome::Ignored("no text");
        }
        let parsed = commands::parse(text, bot_name);
        if parsed == Parsed::OtherBot {
            return Outcome::Ignored("a command for another bot");
        }
        let who = Who {
            chat_id: &msg.chat_id,
            sender_id: &msg.sender_id,
            is_group: msg.is_group,
            addressed: msg.addressed,
        };
        let decision = self.policy.decide(who);
        let stored = match decision {
            crate::access::Decision::LookUp { .. } => {
                match self
                    .ctx
                    .access
                    .is_allowed(&self.channel, &msg.sender_id)
                    .await
                {
                    Ok(allowed) => allowed,
                    Err(e) => {
                        tracing::error!(channel = %self.channel, error = %e, "cannot read the allowlist");
                        return Outcome::Failed(format!("cannot read the allowlist: {e}"));
                    }
                }
            }
            _ => false,
        };
        match AccessPolicy::resolve(decision, stored) {
            Resolved::Allow => {}
            Resolved::Ignore(reason) => {
                tracing::debug!(
                    channel = %self.channel,
                    chat = %msg.chat_id,
                    sender = %msg.sender_id,
                    reason = reason.as_str(),
                    "message ignored"
                );
                return Outcome::Ignored(reason.as_str());
            }
            Resolved::Pair => return self.pair(&msg, sink).await,
        }

        let key = session_key(&self.channel, &msg.chat_id, &msg.sender_id, msg.is_group);
        match parsed {
            Parsed::Command(command) => self.command(command, &key, sink).await,
            _ => {
                let caller = format!("{}:{}", self.channel, msg.sender_id);
                self.turn(&key, &caller, text, sink).await
            }
        }
    }

    /// Gives a stranger a pairing code (the pending one if they have it).
    async fn pair<S: ReplySink>(&self, msg: &Inbound, sink: &S) -> Outcome {
        let access = &self.ctx.access;
        let mut result = access
            .pending_pairing(&self.channel, &msg.sender_id)
            .await
            .map(|p| p.ok_or(AccessError::NotFound(String::new())));
        if matches!(result, Ok(Err(_))) {
            // No pending code: make one (a fresh code if it collides with a pending one).
            result = Ok(Err(AccessError::NotFound(String::new())));
            for _ in 0..5 {
                let created = access
                    .create_pairing(
                        NewPairing {
                            channel: self.channel.clone(),
                            sender: msg.sender_id.clone(),
                            label: msg.sender_label.clone(),
                            code: pairing::generate_code(),
                            expires_at_ms: now_ms()
                                + i64::try_from(pairing::CODE_TTL.as_millis()).unwrap_or(0),
                        },
                        pairing::MAX_PENDING_PER_CHANNEL,
                    )
                    .await;
                match created {
                    Err(AccessError::Conflict(_)) => continue,
                    other => {
                        result = Ok(other);
                        break;
                    }
                }
            }
        }
        match result {
            Ok(Ok(p)) => {
                tracing::info!(
                    channel = %self.channel,
                    sender = %msg.sender_id,
                    label = %msg.sender_label,
                    "pairing code sent to an unknown sender; approve with `open-clanker pairing list` / `pairing approve`"
                );
                match self
                    .say(sink, &pairing::pairing_message(&self.channel, &p.code))
                    .await
                {
                    Ok(()) => Outcome::PairingSent { code: p.code },
                    Err(e) => self.send_failed(&e),
                }
            }
            Ok(Err(AccessError::TooManyPending(m))) => {
                tracing::warn!(channel = %self.channel, sender = %msg.sender_id, "{m}");
                match self.say(sink, pairing::TOO_MANY_PENDING).await {
                    Ok(()) => Outcome::PairingRefused,
                    Err(e) => self.send_failed(&e),
                }
            }
            Ok(Err(e)) | Err(e) => {
                tracing::error!(channel = %self.channel, error = %e, "cannot record a pairing code");
                Outcome::Failed(format!("cannot record a pairing code: {e}"))
            }
        }
    }

    async fn command<S: ReplySink>(&self, command: Command, key: &str, sink: &S) -> Outcome {
        let backend = &self.ctx.backend;
        let reply = match command {
            Command::Start | Command::Help => commands::help_text(),
            Command::New => match backend.session_by_key(key).await {
                Ok(None) => "New conversation: there was none before.".to_owned(),
                Ok(Some(previous)) => match backend.new_session(key).await {
                    Ok(_) => format!(
                        "New conversation. The previous one is kept as session {} \
                         (`open-clanker sessions show {}`).",
                        previous.id, previous.id
                    ),
                    Err(e) => relay::failure_note(&e),
                },
                Err(e) => relay::failure_note(&e),
            },
            Command::Reset => match backend.session_by_key(key).await {
                Ok(Some(session)) => match backend.reset_session(&session.id).await {
                    Ok(()) => "Fresh start: I have forgotten this conversation.".to_owned(),
                    Err(e) => relay::failure_note(&e),
                },
                Ok(None) => "Fresh start: there was nothing to forget.".to_owned(),
                Err(e) => relay::failure_note(&e),
            },
            Command::Status => {
                let bot = self
                    .status
                    .as_ref()
                    .map(|s| s.get().bot_name)
                    .unwrap_or_default();
                match backend.session_by_key(key).await {
                    Ok(Some(s)) => format!(
                        "Session `{key}` ({}): {} messages.\nChannel {} as {bot}.",
                        s.id, s.message_count, self.channel
                    ),
                    Ok(None) => format!(
                        "Session `{key}`: no messages yet.\nChannel {} as {bot}.",
                        self.channel
                    ),
                    Err(e) => relay::failure_note(&e),
                }
            }
        };
        match self.say(sink, &reply).await {
            Ok(()) => Outcome::Command(command),
            Err(e) => self.send_failed(&e),
        }
    }

    async fn turn<S: ReplySink>(&self, key: &str, caller: &str, text: &str, sink: &S) -> Outcome {
        let started = self
            .ctx
            .backend
            .start_turn(TurnRequest {
                session: SessionRef::Key(key.to_owned()),
                text: text.to_owned(),
                provider: None,
                model: None,
                caller: Some(caller.to_owned()),
            })
            .await;
        let events = match started {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(channel = %self.channel, session = key, error = %e, "turn refused");
                return match self.say(sink, &relay::failure_note(&e)).await {
                    Ok(()) => Outcome::Failed(e.to_string()),
                    Err(send) => self.send_failed(&send),
                };
            }
        };
        let outcome = relay::relay(sink, events, self.relay).await;
        if let Some(e) = &outcome.send_error {
            return self.send_failed(e);
        }
        tracing::debug!(
            channel = %self.channel,
            session = key,
            messages = outcome.messages,
            edits = outcome.edits,
            "answer relayed"
        );
        Outcome::Answered(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use open_clanker_core::{
        AllowedSender, PairingRequest, Session, TurnError, TurnEvent, TurnStream,
    };

    use crate::access::IgnoreReason;
    use crate::relay::tests::{FakeSink, stored};

    /// A backend that echoes and counts turns, with sessions by key.
    #[derive(Default)]
    struct EchoBackend {
        turns: AtomicUsize,
        texts: Mutex<Vec<String>>,
        sessions: Mutex<HashMap<String, (String, u64)>>,
    }

    #[async_trait::async_trait]
    impl ChatBackend for EchoBackend {
        async fn start_turn(&self, request: TurnRequest) -> Result<TurnStream, TurnError> {
            self.turns.fetch_add(1, Ordering::SeqCst);
            self.texts.lock().unwrap().push(request.text.clone());
            let SessionRef::Key(key) = request.session else {
                return Err(TurnError::InvalidArgument("expected a key".into()));
            };
            let mut sessions = self.sessions.lock().unwrap();
            let entry = sessions
                .entry(key.clone())
                .or_insert((format!("id-{key}"), 0));
            entry.1 += 2;
            let answer = format!("echo: {}", request.text);
            Ok(Box::pin(futures::stream::iter(vec![
                TurnEvent::Delta(answer.clone()),
                TurnEvent::Completed(Box::new(stored(&answer))),
            ])))
        }
        async fn session_by_key(&self, key: &str) -> Result<Option<Session>, TurnError> {
            Ok(self
                .sessions
                .lock()
                .unwrap()
                .get(key)
                .map(|(id, n)| Session {
                    id: id.clone(),
                    key: Some(key.to_owned()),
                    title: String::new(),
                    created_at_ms: 0,
                    updated_at_ms: 0,
                    message_count: *n,
                    cost_micros: 0,
                }))
        }
        async fn reset_session(&self, session_id: &str) -> Result<(), TurnError> {
            for (id, n) in self.sessions.lock().unwrap().values_mut() {
                if id == session_id {
                    *n = 0;
                }
            }
            Ok(())
        }
        async fn new_session(&self, key: &str) -> Result<Session, TurnError> {
            let mut sessions = self.sessions.lock().unwrap();
            let number = sessions.len();
            let id = format!("id-{key}-{number}");
            sessions.insert(key.to_owned(), (id.clone(), 0));
            Ok(Session {
                id,
                key: Some(key.to_owned()),
                title: String::new(),
                created_at_ms: 0,
                updated_at_ms: 0,
                message_count: 0,
                cost_micros: 0,
            })
        }
    }

    /// An in-memory access store.
    #[derive(Default)]
    struct MemAccess {
        allowed: Mutex<Vec<(String, String)>>,
        pairings: Mutex<Vec<PairingRequest>>,
    }

    #[async_trait::async_trait]
    impl AccessStore for MemAccess {
        async fn is_allowed(&self, channel: &str, sender: &str) -> Result<bool, AccessError> {
            Ok(self
                .allowed
                .lock()
                .unwrap()
                .contains(&(channel.to_owned(), sender.to_owned())))
        }
        async fn allow(
            &self,
            channel: &str,
            sender: &str,
            label: &str,
        ) -> Result<AllowedSender, AccessError> {
            self.allowed
                .lock()
                .unwrap()
                .push((channel.to_owned(), sender.to_owned()));
            Ok(AllowedSender {
                channel: channel.into(),
                sender: sender.into(),
                label: label.into(),
                created_at_ms: 0,
            })
        }
        async fn revoke(&self, _: &str, _: &str) -> Result<bool, AccessError> {
            Ok(false)
        }
        async fn list_allowed(&self, _: Option<&str>) -> Result<Vec<AllowedSender>, AccessError> {
            Ok(vec![])
        }
        async fn create_pairing(
            &self,
            p: NewPairing,
            max: u32,
        ) -> Result<PairingRequest, AccessError> {
            let mut all = self.pairings.lock().unwrap();
            if all.len() >= max as usize {
                return Err(AccessError::TooManyPending("full".into()));
            }
            let req = PairingRequest {
                channel: p.channel,
                sender: p.sender,
                label: p.label,
                code: p.code,
                created_at_ms: 0,
                expires_at_ms: p.expires_at_ms,
            };
            all.push(req.clone());
            Ok(req)
        }
        async fn pending_pairing(
            &self,
            channel: &str,
            sender: &str,
        ) -> Result<Option<PairingRequest>, AccessError> {
            Ok(self
                .pairings
                .lock()
                .unwrap()
                .iter()
                .find(|p| p.channel == channel && p.sender == sender)
                .cloned())
        }
        async fn list_pairings(&self, _: Option<&str>) -> Result<Vec<PairingRequest>, AccessError> {
            Ok(self.pairings.lock().unwrap().clone())
        }
        async fn approve_pairing(
            &self,
            channel: &str,
            code: &str,
        ) -> Result<AllowedSender, AccessError> {
            let p = {
                let mut all = self.pairings.lock().unwrap();
                let i = all
                    .iter()
                    .position(|p| p.code == code)
                    .ok_or_else(|| AccessError::NotFound("no".into()))?;
                all.remove(i)
            };
            self.allow(channel, &p.sender, &p.label).await
        }
    }

    fn setup(policy: AccessPolicy) -> (Pipeline, Arc<EchoBackend>, Arc<MemAccess>) {
        let backend = Arc::new(EchoBackend::default());
        let access = Arc::new(MemAccess::default());
        let ctx = ChannelContext {
            backend: backend.clone(),
            access: access.clone(),
        };
        (
            Pipeline::new("telegram", ctx, policy, RelayConfig::default(), None),
            backend,
            access,
        )
    }

    fn dm(sender: &str, text: &str) -> Inbound {
        Inbound {
            chat_id: sender.into(),
            sender_id: sender.into(),
            sender_label: format!("@u{sender}"),
            is_group: false,
            addressed: true,
            text: text.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn strangers_get_one_code_and_never_reach_the_model() {
        let (p, backend, access) = setup(AccessPolicy::default());
        let sink = FakeSink::new(4096);
        let Outcome::PairingSent { code } = p.handle(dm("5", "hello"), None, &sink).await else {
            panic!("{:?}", sink.calls());
        };
        assert!(pairing::is_code(&code));
        assert!(sink.texts()[0].contains(&code));
        // Asking again gives the same code.
        let again = p.handle(dm("5", "/start"), None, &sink).await;
        assert_eq!(again, Outcome::PairingSent { code: code.clone() });
        assert_eq!(backend.turns.load(Ordering::SeqCst), 0);

        // Approved: answered.
        access.approve_pairing("telegram", &code).await.unwrap();
        let Outcome::Answered(out) = p.handle(dm("5", "hi"), None, &sink).await else {
            panic!()
        };
        assert_eq!(out.text, "echo: hi");
        assert_eq!(backend.turns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pending_cap_refuses_politely() {
        let (p, _, _) = setup(AccessPolicy::default());
        let sink = FakeSink::new(4096);
        for s in ["1", "2", "3"] {
            assert!(matches!(
                p.handle(dm(s, "hi"), None, &sink).await,
                Outcome::PairingSent { .. }
            ));
        }
        assert_eq!(
            p.handle(dm("4", "hi"), None, &sink).await,
            Outcome::PairingRefused
        );
    }

    #[tokio::test(start_paused = true)]
    async fn commands_reset_and_report_per_sender_sessions_in_groups() {
        let policy = AccessPolicy {
            group_allow_from: vec!["-100".into()],
            ..Default::default()
        };
        let (p, backend, _) = setup(policy);
        let sink = FakeSink::new(4096);
        let msg = |sender: &str, text: &str, addressed: bool| Inbound {
            chat_id: "-100".into(),
            sender_id: sender.into(),
            sender_label: String::new(),
            is_group: true,
            addressed,
            text: text.into(),
        };
        assert!(matches!(
            p.handle(msg("1", "hi", true), None, &sink).await,
            Outcome::Answered(_)
        ));
        assert!(matches!(
            p.handle(msg("2", "yo", true), None, &sink).await,
            Outcome::Answered(_)
        ));
        assert_eq!(
            p.handle(msg("2", "not for you", false), None, &sink).await,
            Outcome::Ignored(IgnoreReason::NotAddressed.as_str())
        );
        {
            let sessions = backend.sessions.lock().unwrap();
            assert!(sessions.contains_key("telegram:-100:1"));
            assert!(sessions.contains_key("telegram:-100:2"));
        }
        assert_eq!(
            p.handle(msg("1", "/reset@bot", true), Some("bot"), &sink)
                .await,
            Outcome::Command(Command::Reset)
        );
        assert_eq!(backend.sessions.lock().unwrap()["telegram:-100:1"].1, 0);
        assert_eq!(
            backend.sessions.lock().unwrap()["telegram:-100:2"].1,
            2,
            "others keep theirs"
        );
        assert_eq!(
            p.handle(msg("1", "/status@other", true), Some("bot"), &sink)
                .await,
            Outcome::Ignored("a command for another bot")
        );
        assert_eq!(
            p.handle(msg("2", "/status", true), Some("bot"), &sink)
                .await,
            Outcome::Command(Command::Status)
        );
        assert!(sink.texts().last().unwrap().contains("telegram:-100:2"));

        // `/new` opens another session under the key and says where the old one is.
        assert_eq!(
            p.handle(msg("2", "/new", true), Some("bot"), &sink).await,
            Outcome::Command(Command::New)
        );
        let (id, count) = backend.sessions.lock().unwrap()["telegram:-100:2"].clone();
        assert_eq!(count, 0);
        assert_ne!(id, "id-telegram:-100:2");
        assert!(
            sink.texts()
                .last()
                .unwrap()
                .contains("kept as session id-telegram:-100:2"),
            "{:?}",
            sink.texts().last()
        );
        // With no conversation yet there is nothing to keep.
        assert_eq!(
            p.handle(msg("3", "/new", true), Some("bot"), &sink).await,
            Outcome::Command(Command::New)
        );
        assert!(
            !backend
                .sessions
                .lock()
                .unwrap()
                .contains_key("telegram:-100:3")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn open_and_static_allowlists_skip_pairing() {
        let (p, backend, _) = setup(AccessPolicy {
            allow_from: vec!["9".into()],
            ..Default::default()
        });
        let sink = FakeSink::new(4096);
        assert!(matches!(
            p.handle(dm("9", "hi"), None, &sink).await,
            Outcome::Answered(_)
        ));
        assert_eq!(backend.turns.load(Ordering::SeqCst), 1);
        assert_eq!(
            p.handle(dm("9", "   "), None, &sink).await,
            Outcome::Ignored("no text")
        );
    }

    #[tokio::test]
    async fn a_sessions_messages_run_in_arrival_order() {
        let (p, backend, _) = setup(AccessPolicy {
            dm: crate::access::DmPolicy::Open,
            ..Default::default()
        });
        let p = Arc::new(p);
        let sink = Arc::new(FakeSink::new(4096));
        // Places taken in arrival order; the tasks then start in the opposite order.
        let first = p.reserve(&dm("1", "first")).await;
        let second = p.reserve(&dm("1", "second")).await;
        let (p2, s2) = (p.clone(), sink.clone());
        let late = tokio::spawn(async move {
            p2.handle_in_turn(second, dm("1", "second"), None, &*s2)
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            backend.texts.lock().unwrap().is_empty(),
            "the second waited for the first"
        );
        p.handle_in_turn(first, dm("1", "first"), None, &*sink)
            .await;
        late.await.unwrap();
        assert_eq!(*backend.texts.lock().unwrap(), ["first", "second"]);
    }
}
