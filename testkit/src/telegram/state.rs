//! The state the Telegram stand-in's Bot API shares with the handle tests hold.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicI64;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde_json::Value;
use tokio::sync::Notify;

use super::records::{Call, Failure, SentMessage};

pub(super) struct Shared {
    pub(super) token: String,
    pub(super) started: Instant,
    pub(super) calls: Mutex<Vec<Call>>,
    pub(super) updates: Mutex<VecDeque<Value>>,
    pub(super) new_update: Notify,
    pub(super) next_update_id: AtomicI64,
    pub(super) next_message_id: AtomicI64,
    pub(super) sent: Mutex<Vec<SentMessage>>,
    pub(super) failures: Mutex<HashMap<String, VecDeque<Failure>>>,
    /// Messages the test "users" sent, by (chat, message id), for replies.
    pub(super) incoming: Mutex<HashMap<(i64, i64), Value>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
