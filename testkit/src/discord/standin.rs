//! The running Discord stand-in: starting it on two ports, and what a test does with it (push
//! messages, inject failures and cuts, read what was received).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use super::gateway::connection;
use super::records::{Call, Failure, Incoming, SentMessage, dm_channel_id};
use super::rest::{rest, unknown};
use super::state::{Shared, lock};
use super::wire::{bot_message_json, mentions_in, message_json, user_json};

/// A running Discord stand-in; stops when dropped.
pub struct DiscordStandIn {
    api_addr: SocketAddr,
    ws_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for DiscordStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordStandIn")
            .field("api", &self.api_addr)
            .field("gateway", &self.ws_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for DiscordStandIn {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.shared.cut.send_modify(|g| *g += 1);
    }
}

/// Starts a stand-in accepting `token`, with a 2 s heartbeat interval.
pub async fn spawn(token: &str) -> std::io::Result<DiscordStandIn> {
    spawn_with(token, Duration::from_secs(2)).await
}

/// Starts a stand-in accepting `token` that asks for heartbeats every `heartbeat`.
pub async fn spawn_with(token: &str, heartbeat: Duration) -> std::io::Result<DiscordStandIn> {
    let api = TcpListener::bind(("127.0.0.1", 0)).await?;
    let ws = TcpListener::bind(("127.0.0.1", 0)).await?;
    let api_addr = api.local_addr()?;
    let ws_addr = ws.local_addr()?;
    let (cut, _) = watch::channel(0);
    let shared = Arc::new(Shared {
        token: token.to_owned(),
        started: Instant::now(),
        ws_url: Mutex::new(format!("ws://{ws_addr}")),
        heartbeat_interval_ms: u64::try_from(heartbeat.as_millis()).unwrap_or(41_250),
        reject_identify: Mutex::new(false),
        calls: Mutex::new(Vec::new()),
        identifies: Mutex::new(Vec::new()),
        resumes: Mutex::new(Vec::new()),
        heartbeats: AtomicUsize::new(0),
        pending: Mutex::new(VecDeque::new()),
        new_event: Notify::new(),
        sessions: Mutex::new(HashMap::new()),
        current_session: Mutex::new(None),
        sent_events: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(1_190_000_000_000_000_000),
        next_connection: AtomicU64::new(1),
        connections: AtomicUsize::new(0),
        cut,
        sent: Mutex::new(Vec::new()),
        incoming: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/api/v10/gateway", get(rest))
        .route("/api/v10/gateway/bot", get(rest))
        .route("/api/v10/users/@me", get(rest))
        .route("/api/v10/channels/{channel}/messages", post(rest))
        .route(
            "/api/v10/channels/{channel}/messages/{message}",
            axum::routing::patch(rest),
        )
        .route("/api/v10/channels/{channel}/typing", post(rest))
        .fallback(unknown)
        .with_state(shared.clone());
    let (stop, mut stopped) = watch::channel(false);
    let mut stopped_ws = stopped.clone();
    tokio::spawn(async move {
        let graceful = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let _ = axum::serve(api, app).with_graceful_shutdown(graceful).await;
    });
    let gateway = shared.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stopped_ws.wait_for(|s| *s) => break,
                a = ws.accept() => a,
            };
            if let Ok((stream, _)) = accepted {
                tokio::spawn(connection(gateway.clone(), stream));
            }
        }
    });
    Ok(DiscordStandIn {
        api_addr,
        ws_addr,
        shared,
        stop,
    })
}

impl DiscordStandIn {
    /// `http://127.0.0.1:PORT`: what serenity's `HttpBuilder::proxy` takes (it replaces
    /// `https://discord.com`, keeping `/api/v10/...`).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// `ws://127.0.0.1:PORT`: the gateway URL `GET /gateway` hands out.
    pub fn gateway_url(&self) -> String {
        lock(&self.shared.ws_url).clone()
    }

    /// Hands out another gateway URL from now on (e.g. a closed port, to keep the bot away).
    pub fn set_gateway_url(&self, url: &str) {
        *lock(&self.shared.ws_url) = url.to_owned();
    }

    /// Closes every IDENTIFY with 4004 "Authentication failed", whatever its token.
    pub fn reject_identify(&self, reject: bool) {
        *lock(&self.shared.reject_identify) = reject;
    }

    /// A direct message from `user`; returns its id.
    pub fn push_dm(&self, user: u64, text: &str) -> u64 {
        self.push(Incoming {
            channel_id: dm_channel_id(user),
            guild_id: None,
            author: user,
            author_is_bot: false,
            text: text.to_owned(),
            reply_to: None,
        })
    }

    /// A message from `user` in a guild channel; returns its id. Mentions written in the text
    /// (`<@ID>`, `<@!ID>`) fill the `mentions` array, as Discord does.
    pub fn push_guild(&self, guild: u64, channel: u64, user: u64, text: &str) -> u64 {
        self.push(Incoming {
            channel_id: channel,
            guild_id: Some(guild),
            author: user,
            author_is_bot: false,
            text: text.to_owned(),
            reply_to: None,
        })
    }

    /// Any incoming message; returns its id.
    pub fn push(&self, m: Incoming) -> u64 {
        let id = self.shared.next_id.fetch_add(1, Ordering::SeqCst);
        let mut author = user_json(m.author);
        author["bot"] = json!(m.author_is_bot);
        let mut message = message_json(
            id,
            m.channel_id,
            m.guild_id,
            author,
            &m.text,
            mentions_in(&m.text),
        );
        if let Some(reply_to) = m.reply_to {
            let original = lock(&self.shared.incoming)
                .get(&reply_to)
                .cloned()
                .or_else(|| {
                    lock(&self.shared.sent)
                        .iter()
                        .find(|s| s.message_id == reply_to)
                        .map(|s| {
                            bot_message_json(s.message_id, s.channel_id, m.guild_id, &s.content)
                        })
                });
            message["message_reference"] = json!({
                "message_id": reply_to.to_string(),
                "channel_id": m.channel_id.to_string(),
            });
            message["type"] = json!(19);
            if let Some(mut original) = original {
                original["referenced_message"] = Value::Null;
                message["referenced_message"] = original;
            }
        }
        if let Some(guild) = m.guild_id {
            message["member"] = json!({
                "roles": [], "joined_at": "2024-01-01T00:00:00.000000+00:00",
                "deaf": false, "mute": false, "flags": 0,
            });
            message["guild_id"] = json!(guild.to_string());
        }
        lock(&self.shared.incoming).insert(id, message.clone());
        lock(&self.shared.pending).push_back(message);
        self.shared.new_event.notify_waiters();
        id
    }

    /// Answers the next call of `route` (see [`Call::route`]) with `failure`; queued failures are
    /// used in order.
    pub fn fail_next(&self, route: &str, failure: Failure) {
        lock(&self.shared.failures)
            .entry(route.to_owned())
            .or_default()
            .push_back(failure);
    }

    /// Cuts every websocket without a close frame.
    pub fn drop_connections(&self) {
        self.shared.cut.send_modify(|g| *g += 1);
    }

    /// Every REST call so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    /// The calls of one route.
    pub fn calls_of(&self, route: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.route == route)
            .collect()
    }

    /// The IDENTIFY payloads (`d`) received, oldest first.
    pub fn identifies(&self) -> Vec<Value> {
        lock(&self.shared.identifies).clone()
    }

    /// The RESUME payloads (`d`) received, oldest first.
    pub fn resumes(&self) -> Vec<Value> {
        lock(&self.shared.resumes).clone()
    }

    /// Heartbeats received.
    pub fn heartbeats(&self) -> usize {
        self.shared.heartbeats.load(Ordering::SeqCst)
    }

    /// Websockets open now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// A session is identified (or resumed) and connected.
    pub fn ready(&self) -> bool {
        let current = lock(&self.shared.current_session).clone();
        current.is_some_and(|id| {
            lock(&self.shared.sessions)
                .get(&id)
                .is_some_and(|s| s.connection.is_some())
        })
    }

    /// Incoming messages not yet delivered to a session.
    pub fn pending(&self) -> usize {
        lock(&self.shared.pending).len()
    }

    /// The messages the bot posted in `channel`, oldest first, as they are now.
    pub fn messages(&self, channel: u64) -> Vec<SentMessage> {
        lock(&self.shared.sent)
            .iter()
            .filter(|m| m.channel_id == channel)
            .cloned()
            .collect()
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
