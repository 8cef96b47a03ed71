//! The running Telegram stand-in: starting it, and what a test does with it (queue messages and
//! updates, inject failures, read the calls and the chats).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::any;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::api::api;
use super::records::{Call, Failure, SentMessage};
use super::state::{Shared, lock};
use super::wire::{bot_message_json, chat_json, unix_now, user_json};

/// A running Telegram stand-in; stops when dropped.
pub struct TelegramStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for TelegramStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramStandIn")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for TelegramStandIn {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts a stand-in on 127.0.0.1 (a free port) accepting `token`.
pub async fn spawn(token: &str) -> std::io::Result<TelegramStandIn> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        token: token.to_owned(),
        started: Instant::now(),
        calls: Mutex::new(Vec::new()),
        updates: Mutex::new(VecDeque::new()),
        new_update: Notify::new(),
        next_update_id: AtomicI64::new(100),
        next_message_id: AtomicI64::new(1000),
        sent: Mutex::new(Vec::new()),
        failures: Mutex::new(HashMap::new()),
        incoming: Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/{bot}/{method}", any(api))
        .with_state(shared.clone());
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(async move {
        let graceful = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(graceful)
            .await;
    });
    Ok(TelegramStandIn { addr, shared, stop })
}

impl TelegramStandIn {
    /// `http://127.0.0.1:PORT`: the Bot API URL to give the bot.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a text message from user `from` in chat `chat_id` (a negative id is a group);
    /// returns its message id.
    pub fn push_text(&self, chat_id: i64, from: i64, text: &str) -> i64 {
        self.push_message(chat_id, from, text, None)
    }

    /// Queues a text message, optionally replying to message `reply_to` of that chat.
    pub fn push_message(&self, chat_id: i64, from: i64, text: &str, reply_to: Option<i64>) -> i64 {
        let message_id = self.shared.next_message_id.fetch_add(1, Ordering::SeqCst);
        let mut message = json!({
            "message_id": message_id,
            "date": unix_now(),
            "chat": chat_json(chat_id),
            "from": user_json(from),
            "text": text,
        });
        if let Some(reply_to) = reply_to {
            let original = lock(&self.shared.incoming)
                .get(&(chat_id, reply_to))
                .cloned()
                .or_else(|| {
                    lock(&self.shared.sent)
                        .iter()
                        .find(|m| m.chat_id == chat_id && m.message_id == reply_to)
                        .map(|m| bot_message_json(m.chat_id, m.message_id, &m.text))
                });
            if let Some(original) = original {
                message["reply_to_message"] = original;
            }
        }
        lock(&self.shared.incoming).insert((chat_id, message_id), message.clone());
        self.push_update(json!({ "message": message }));
        message_id
    }

    /// Queues any update (its `update_id` is filled in).
    pub fn push_update(&self, mut update: Value) {
        let id = self.shared.next_update_id.fetch_add(1, Ordering::SeqCst);
        update["update_id"] = json!(id);
        lock(&self.shared.updates).push_back(update);
        self.shared.new_update.notify_waiters();
    }

    /// Answers the next call of `method` with `failure` (queued failures are used in order).
    pub fn fail_next(&self, method: &str, failure: Failure) {
        lock(&self.shared.failures)
            .entry(method.to_ascii_lowercase())
            .or_default()
            .push_back(failure);
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    /// The calls of one method.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .collect()
    }

    /// The messages the bot sent to `chat_id`, oldest first, as they are now.
    pub fn messages(&self, chat_id: i64) -> Vec<SentMessage> {
        lock(&self.shared.sent)
            .iter()
            .filter(|m| m.chat_id == chat_id)
            .cloned()
            .collect()
    }

    /// Updates queued and not yet confirmed by a `getUpdates` offset.
    pub fn pending_updates(&self) -> usize {
        lock(&self.shared.updates).len()
    }

    /// Waits (up to `limit`) until `check` holds; returns whether it did.
    pub async fn wait_until(&self, limit: Duration, mut check: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if check(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
