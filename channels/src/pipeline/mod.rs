//! One incoming chat message, start to finish, the same for every platform: access control
//! (pairing codes for strangers), commands, and the turn through [`ChatBackend`] with its answer
//! relayed into the chat.

mod command;
mod pair;
mod queue;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use open_clanker_core::{AccessStore, Caller, ChatBackend, SessionRef, TurnRequest};

use crate::access::{AccessPolicy, Resolved, Who};
use crate::backoff::retry;
use crate::commands::{self, Command, Parsed};
use crate::relay::{self, RelayConfig, RelayOutcome};
use crate::session::session_key;
use crate::sink::{ReplySink, SendError};
use crate::status::StatusHandle;

pub use queue::{KeyedLocks, Reservation};

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
        self.locks.reserve(&key).await
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
        let _turn = place.turn().await;
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
                let caller = Caller::ChatSender {
                    channel: self.channel.clone(),
                    sender: msg.sender_id.clone(),
                };
                self.turn(&key, caller, text, sink).await
            }
        }
    }

    async fn turn<S: ReplySink>(&self, key: &str, caller: Caller, text: &str, sink: &S) -> Outcome {
        let started = self
            .ctx
            .backend
            .start_turn(TurnRequest {
                session: SessionRef::Key(key.to_owned()),
                text: text.to_owned(),
                provider: None,
                model: None,
                caller: Some(caller),
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
