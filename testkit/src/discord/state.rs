//! The state the REST API and the gateway of the Discord stand-in share.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde_json::Value;
use tokio::sync::{Notify, watch};

use super::records::{Call, Failure, SentMessage};

pub(super) struct Session {
    pub(super) id: String,
    pub(super) seq: u64,
    /// The connection now serving it (its generation).
    pub(super) connection: Option<u64>,
}

pub(super) struct Shared {
    pub(super) token: String,
    pub(super) started: Instant,
    pub(super) ws_url: Mutex<String>,
    pub(super) heartbeat_interval_ms: u64,
    pub(super) reject_identify: Mutex<bool>,
    pub(super) calls: Mutex<Vec<Call>>,
    pub(super) identifies: Mutex<Vec<Value>>,
    pub(super) resumes: Mutex<Vec<Value>>,
    pub(super) heartbeats: AtomicUsize,
    /// MESSAGE_CREATE payloads waiting for a session.
    pub(super) pending: Mutex<VecDeque<Value>>,
    pub(super) new_event: Notify,
    pub(super) sessions: Mutex<HashMap<String, Session>>,
    /// The session that receives events.
    pub(super) current_session: Mutex<Option<String>>,
    /// Dispatches sent per session, for RESUME replays: (session, seq, payload).
    pub(super) sent_events: Mutex<Vec<(String, u64, Value)>>,
    pub(super) next_id: AtomicU64,
    pub(super) next_connection: AtomicU64,
    pub(super) connections: AtomicUsize,
    /// Bumped to cut every websocket.
    pub(super) cut: watch::Sender<u64>,
    pub(super) sent: Mutex<Vec<SentMessage>>,
    pub(super) incoming: Mutex<HashMap<u64, Value>>,
    pub(super) failures: Mutex<HashMap<String, VecDeque<Failure>>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
