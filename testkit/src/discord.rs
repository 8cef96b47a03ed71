//! A stand-in Discord for tests: the REST API (`/api/v10/...`, axum) and the gateway (a websocket,
//! tokio-tungstenite), both on 127.0.0.1, speaking Discord's documented wire format.
//!
//! Point a bot's REST calls at [`DiscordStandIn::api_url`] (serenity:
//! `HttpBuilder::new(token).proxy(api_url)`); `GET /api/v10/gateway` and `/gateway/bot` answer with
//! [`DiscordStandIn::gateway_url`], so the websocket follows.
//!
//! REST: `GET /gateway`, `GET /gateway/bot`, `GET /users/@me`, `POST /channels/{id}/messages`
//! (a full Message object back; `content` must be 1-2000 characters; `flags` may only hold
//! SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS, IS_VOICE_MESSAGE and IS_COMPONENTS_V2), `PATCH
//! /channels/{id}/messages/{id}` (`flags` may only set or unset SUPPRESS_EMBEDS; absent, the
//! message keeps its flags), `POST /channels/{id}/typing` (204). A wrong `Authorization: Bot
//! <token>` gets `401 {"message": "401: Unauthorized", "code": 0}`. [`DiscordStandIn::fail_next`]
//! answers the next call of a route with a 429 (`retry_after` in the body, `Retry-After` and the
//! `X-RateLimit-*` headers Discord documents) or any status.
//!
//! Gateway: HELLO (op 10) on connect; IDENTIFY (op 2) checks the token (else close code 4004
//! "Authentication failed") and answers with the READY dispatch; HEARTBEAT (op 1) gets HEARTBEAT_ACK
//! (op 11); RESUME (op 6) of a known session replays what it missed and sends RESUMED (else op 9
//! INVALID_SESSION). Messages pushed by tests ([`DiscordStandIn::push_dm`],
//! [`DiscordStandIn::push_guild`], [`DiscordStandIn::push`]) go out as MESSAGE_CREATE dispatches to
//! the identified session; pushed while no session is connected, they wait for the next one (each
//! is delivered once). [`DiscordStandIn::drop_connections`] cuts the websockets without a close
//! frame, as a network failure would.
//!
//! Everything received is recorded: REST calls ([`DiscordStandIn::calls`]), IDENTIFY and RESUME
//! payloads ([`DiscordStandIn::identifies`], [`DiscordStandIn::resumes`]), and the channels as a
//! person would see them ([`DiscordStandIn::messages`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The bot's user id.
pub const BOT_ID: u64 = 1_180_000_000_000_000_001;
/// The bot's user name.
pub const BOT_USERNAME: &str = "Clanker Test";
/// The bot's discriminator (bots still have one).
pub const BOT_DISCRIMINATOR: &str = "4242";
/// The application id (READY's `application.id`).
pub const APPLICATION_ID: u64 = 1_180_000_000_000_000_002;
/// Discord's longest message content.
pub const MESSAGE_LIMIT: usize = 2000;
/// Close code for a rejected token.
pub const AUTHENTICATION_FAILED: u16 = 4004;

/// GUILD_MESSAGES (1 << 9).
pub const INTENT_GUILD_MESSAGES: u64 = 1 << 9;
/// DIRECT_MESSAGES (1 << 12).
pub const INTENT_DIRECT_MESSAGES: u64 = 1 << 12;
/// MESSAGE_CONTENT (1 << 15), privileged.
pub const INTENT_MESSAGE_CONTENT: u64 = 1 << 15;
/// Message flag: do not include any embeds (link previews) when serializing this message.
pub const SUPPRESS_EMBEDS: u64 = 1 << 2;
/// Message flag: do not trigger push and desktop notifications.
pub const SUPPRESS_NOTIFICATIONS: u64 = 1 << 12;
/// Message flag: a voice message.
pub const IS_VOICE_MESSAGE: u64 = 1 << 13;
/// Message flag: the message's layout is made of components.
pub const IS_COMPONENTS_V2: u64 = 1 << 15;

/// The DM channel id the stand-in uses for direct messages with `user`.
pub fn dm_channel_id(user: u64) -> u64 {
    user + 900_000
}

/// A failure to answer the next call of a route with.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// `429 Too Many Requests` with `retry_after` (seconds) in the body and the headers.
    RetryAfter(f64),
    /// Any status with Discord's error JSON (`code`, `message`).
    Status(u16, u64, String),
}

/// One REST call as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The route's name in Discord's documentation: `getGateway`, `getGatewayBot`,
    /// `getCurrentUser`, `createMessage`, `editMessage`, `triggerTypingIndicator`, or `unknown`.
    pub route: String,
    /// `GET /api/v10/...` as received.
    pub request: String,
    /// The JSON body (`null` when none).
    pub body: Value,
    /// When it arrived, from the stand-in's start.
    pub at: Duration,
    /// The HTTP status answered.
    pub status: u16,
}

/// A message the bot posted, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The channel it is in.
    pub channel_id: u64,
    /// Its id.
    pub message_id: u64,
    /// The content as it is now.
    pub content: String,
    /// The message it replies to (`message_reference.message_id`).
    pub reply_to: Option<u64>,
    /// The `allowed_mentions` it was sent with.
    pub allowed_mentions: Option<String>,
    /// Its flags as they are now ([`SUPPRESS_EMBEDS`]: Discord shows no link previews).
    pub flags: u64,
    /// Successful edits.
    pub edits: usize,
}

/// A message from a test "user", delivered as MESSAGE_CREATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Where: a DM channel ([`dm_channel_id`]) or a guild channel.
    pub channel_id: u64,
    /// The guild, for guild channels.
    pub guild_id: Option<u64>,
    /// The author's user id.
    pub author: u64,
    /// The author is a bot.
    pub author_is_bot: bool,
    /// The content.
    pub text: String,
    /// The message (a user's or the bot's) it replies to.
    pub reply_to: Option<u64>,
}

struct Session {
    id: String,
    seq: u64,
    /// The connection now serving it (its generation).
    connection: Option<u64>,
}

struct Shared {
    token: String,
    started: Instant,
    ws_url: Mutex<String>,
    heartbeat_interval_ms: u64,
    reject_identify: Mutex<bool>,
    calls: Mutex<Vec<Call>>,
    identifies: Mutex<Vec<Value>>,
    resumes: Mutex<Vec<Value>>,
    heartbeats: AtomicUsize,
    /// MESSAGE_CREATE payloads waiting for a session.
    pending: Mutex<VecDeque<Value>>,
    new_event: Notify,
    sessions: Mutex<HashMap<String, Session>>,
    /// The session that receives events.
    current_session: Mutex<Option<String>>,
    /// Dispatches sent per session, for RESUME replays: (session, seq, payload).
    sent_events: Mutex<Vec<(String, u64, Value)>>,
    next_id: AtomicU64,
    next_connection: AtomicU64,
    connections: AtomicUsize,
    /// Bumped to cut every websocket.
    cut: watch::Sender<u64>,
    sent: Mutex<Vec<SentMessage>>,
    incoming: Mutex<HashMap<u64, Value>>,
    failures: Mutex<HashMap<String, VecDeque<Failure>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

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

fn iso_now() -> String {
    // RFC 3339 from the Unix time, without a date library.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn user_json(id: u64) -> Value {
    json!({
        "id": id.to_string(),
        "username": format!("user{id}"),
        "global_name": format!("User {id}"),
        "discriminator": "0",
        "avatar": null,
        "public_flags": 0,
    })
}

fn bot_user_json() -> Value {
    json!({
        "id": BOT_ID.to_string(),
        "username": BOT_USERNAME,
        "global_name": null,
        "discriminator": BOT_DISCRIMINATOR,
        "avatar": null,
        "bot": true,
        "verified": true,
        "mfa_enabled": false,
        "flags": 0,
        "public_flags": 0,
    })
}

/// The user ids mentioned as `<@ID>` or `<@!ID>` in `text`.
fn mentions_in(text: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for part in text.split("<@").skip(1) {
        let part = part.strip_prefix('!').unwrap_or(part);
        if let Some((id, _)) = part.split_once('>')
            && let Ok(id) = id.parse::<u64>()
            && !out.contains(&id)
        {
            out.push(id);
        }
    }
    out
}

fn message_json(
    id: u64,
    channel: u64,
    guild: Option<u64>,
    author: Value,
    content: &str,
    mentions: Vec<u64>,
) -> Value {
    let mentions: Vec<Value> = mentions
        .into_iter()
        .map(|m| {
            if m == BOT_ID {
                bot_user_json()
            } else {
                user_json(m)
            }
        })
        .collect();
    let mut message = json!({
        "id": id.to_string(),
        "channel_id": channel.to_string(),
        "author": author,
        "content": content,
        "timestamp": iso_now(),
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": mentions,
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": false,
        "type": 0,
        "flags": 0,
        "components": [],
    });
    if let Some(guild) = guild {
        message["guild_id"] = json!(guild.to_string());
    }
    message
}

fn bot_message_json(id: u64, channel: u64, guild: Option<u64>, content: &str) -> Value {
    message_json(id, channel, guild, bot_user_json(), content, Vec::new())
}

fn error_json(status: u16, code: u64, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(json!({ "message": message, "code": code })),
    )
        .into_response()
}

fn failure_response(f: &Failure) -> Response {
    match f {
        Failure::RetryAfter(secs) => {
            let reset = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
                + secs;
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({
                    "message": "You are being rate limited.",
                    "retry_after": secs,
                    "global": false,
                })),
            )
                .into_response();
            let headers = response.headers_mut();
            let mut set = |k: &'static str, v: String| {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    headers.insert(k, v);
                }
            };
            set("retry-after", format!("{}", secs.ceil() as u64));
            set("x-ratelimit-limit", "5".into());
            set("x-ratelimit-remaining", "0".into());
            set("x-ratelimit-reset", format!("{reset:.3}"));
            set("x-ratelimit-reset-after", format!("{secs:.3}"));
            set("x-ratelimit-bucket", "stand-in-bucket".into());
            set("x-ratelimit-scope", "user".into());
            response
        }
        Failure::Status(status, code, message) => error_json(*status, *code, message),
    }
}

fn route_name(method: &Method, path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_start_matches("/api/v10/").split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["gateway"]) => "getGateway",
        ("GET", ["gateway", "bot"]) => "getGatewayBot",
        ("GET", ["users", "@me"]) => "getCurrentUser",
        ("POST", ["channels", _, "messages"]) => "createMessage",
        ("PATCH", ["channels", _, "messages", _]) => "editMessage",
        ("POST", ["channels", _, "typing"]) => "triggerTypingIndicator",
        _ => "unknown",
    }
}

async fn unknown() -> Response {
    error_json(404, 0, "404: Not Found")
}

async fn rest(
    State(shared): State<Arc<Shared>>,
    Path(ids): Path<HashMap<String, String>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = shared.started.elapsed();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let route = route_name(&method, uri.path());
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bot {}", shared.token));
    let response = if !authorized {
        error_json(401, 0, "401: Unauthorized")
    } else if let Some(f) = lock(&shared.failures)
        .get_mut(route)
        .and_then(VecDeque::pop_front)
    {
        failure_response(&f)
    } else {
        handle(&shared, route, &ids, &body)
    };
    lock(&shared.calls).push(Call {
        route: route.to_owned(),
        request: format!("{method} {}", uri.path()),
        body,
        at,
        status: response.status().as_u16(),
    });
    response
}

fn id_of(ids: &HashMap<String, String>, key: &str) -> Option<u64> {
    ids.get(key).and_then(|s| s.parse().ok())
}

fn handle(shared: &Shared, route: &str, ids: &HashMap<String, String>, body: &Value) -> Response {
    let ok = |v: Value| (StatusCode::OK, axum::Json(v)).into_response();
    match route {
        "getGateway" => ok(json!({ "url": lock(&shared.ws_url).clone() })),
        "getGatewayBot" => ok(json!({
            "url": lock(&shared.ws_url).clone(),
            "shards": 1,
            "session_start_limit": {
                "total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1,
            },
        })),
        "getCurrentUser" => ok(bot_user_json()),
        "triggerTypingIndicator" => StatusCode::NO_CONTENT.into_response(),
        "createMessage" | "editMessage" => {
            let Some(channel) = id_of(ids, "channel") else {
                return error_json(404, 10003, "Unknown Channel");
            };
            let content = body.get("content").and_then(Value::as_str).unwrap_or("");
            if content.trim().is_empty() {
                return error_json(400, 50006, "Cannot send an empty message");
            }
            if content.chars().count() > MESSAGE_LIMIT {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({
                        "message": "Invalid Form Body",
                        "code": 50035,
                        "errors": { "content": { "_errors": [{
                            "code": "BASE_TYPE_MAX_LENGTH",
                            "message": "Must be 2000 or fewer in length.",
                        }]}},
                    })),
                )
                    .into_response();
            }
            let allowed = body.get("allowed_mentions").map(Value::to_string);
            // What a bot may set: on create, four flags; on edit, SUPPRESS_EMBEDS only.
            let settable = if route == "createMessage" {
                SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_VOICE_MESSAGE | IS_COMPONENTS_V2
            } else {
                SUPPRESS_EMBEDS
            };
            let flags = match body.get("flags") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64() {
                    Some(bits) if bits & !settable == 0 => Some(bits),
                    _ => {
                        return (
                            StatusCode::BAD_REQUEST,
                            axum::Json(json!({
                                "message": "Invalid Form Body",
                                "code": 50035,
                                "errors": { "flags": { "_errors": [{
                                    "code": "MESSAGE_FLAGS_INVALID",
                                    "message": "Invalid flags.",
                                }]}},
                            })),
                        )
                            .into_response();
                    }
                },
            };
            let mut sent = lock(&shared.sent);
            if route == "createMessage" {
                let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
                let reply_to = body
                    .pointer("/message_reference/message_id")
                    .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
                sent.push(SentMessage {
                    channel_id: channel,
                    message_id: id,
                    content: content.to_owned(),
                    reply_to,
                    allowed_mentions: allowed,
                    flags: flags.unwrap_or(0),
                    edits: 0,
                });
                let mut message = bot_message_json(id, channel, None, content);
                message["flags"] = json!(flags.unwrap_or(0));
                return ok(message);
            }
            let Some(id) = id_of(ids, "message") else {
                return error_json(404, 10008, "Unknown Message");
            };
            let Some(m) = sent
                .iter_mut()
                .find(|m| m.channel_id == channel && m.message_id == id)
            else {
                return error_json(404, 10008, "Unknown Message");
            };
            m.content = content.to_owned();
            m.edits += 1;
            // Only SUPPRESS_EMBEDS can change; the other flags stay.
            if let Some(bits) = flags {
                m.flags = (m.flags & !SUPPRESS_EMBEDS) | bits;
            }
            let mut message = bot_message_json(id, channel, None, content);
            message["edited_timestamp"] = json!(iso_now());
            message["flags"] = json!(m.flags);
            ok(message)
        }
        _ => error_json(404, 0, "404: Not Found"),
    }
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn send(ws: &mut Ws, v: &Value) -> bool {
    ws.send(WsMessage::Text(v.to_string())).await.is_ok()
}

/// Sends the events the session has not had yet; false when the socket failed.
async fn flush(shared: &Shared, ws: &mut Ws, session: &str) -> bool {
    loop {
        let Some(event) = lock(&shared.pending).pop_front() else {
            return true;
        };
        let seq = {
            let mut sessions = lock(&shared.sessions);
            let Some(s) = sessions.get_mut(session) else {
                lock(&shared.pending).push_front(event);
                return true;
            };
            s.seq += 1;
            s.seq
        };
        lock(&shared.sent_events).push((session.to_owned(), seq, event.clone()));
        let frame = json!({ "op": 0, "t": "MESSAGE_CREATE", "s": seq, "d": event });
        if !send(ws, &frame).await {
            return false;
        }
    }
}

fn token_ok(shared: &Shared, token: &str) -> bool {
    token.strip_prefix("Bot ").unwrap_or(token) == shared.token
}

async fn close(ws: &mut Ws, code: u16, reason: &'static str) {
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
        .await;
}

async fn connection(shared: Arc<Shared>, stream: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let me = shared.next_connection.fetch_add(1, Ordering::SeqCst);
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let mut cut = shared.cut.subscribe();
    cut.borrow_and_update();
    let hello = json!({ "op": 10, "s": null, "t": null,
        "d": { "heartbeat_interval": shared.heartbeat_interval_ms } });
    let mut session: Option<String> = None;
    if send(&mut ws, &hello).await {
        loop {
            let notified = shared.new_event.notified();
            if let Some(id) = &session
                && !flush(&shared, &mut ws, id).await
            {
                break;
            }
            let frame = tokio::select! {
                _ = cut.changed() => break,
                _ = notified => continue,
                f = ws.next() => f,
            };
            let text = match frame {
                Some(Ok(WsMessage::Text(t))) => t,
                Some(Ok(WsMessage::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            };
            let Ok(payload) = serde_json::from_str::<Value>(&text) else {
                close(&mut ws, 4002, "Error while decoding payload.").await;
                break;
            };
            match payload["op"].as_u64() {
                Some(1) => {
                    shared.heartbeats.fetch_add(1, Ordering::SeqCst);
                    if !send(
                        &mut ws,
                        &json!({ "op": 11, "s": null, "t": null, "d": null }),
                    )
                    .await
                    {
                        break;
                    }
                }
                Some(2) => {
                    let d = payload["d"].clone();
                    let mut shown = d.clone();
                    shown["token"] = json!("<redacted>");
                    lock(&shared.identifies).push(shown);
                    let token = d["token"].as_str().unwrap_or("");
                    if session.is_some() {
                        close(&mut ws, 4005, "Already authenticated.").await;
                        break;
                    }
                    if *lock(&shared.reject_identify) || !token_ok(&shared, token) {
                        close(&mut ws, AUTHENTICATION_FAILED, "Authentication failed.").await;
                        break;
                    }
                    let id = format!("session-{me}");
                    lock(&shared.sessions).insert(
                        id.clone(),
                        Session {
                            id: id.clone(),
                            seq: 1,
                            connection: Some(me),
                        },
                    );
                    *lock(&shared.current_session) = Some(id.clone());
                    let ready = json!({ "op": 0, "t": "READY", "s": 1, "d": {
                        "v": 10,
                        "user": bot_user_json(),
                        "guilds": [],
                        "session_id": id,
                        "resume_gateway_url": lock(&shared.ws_url).clone(),
                        "shard": d.get("shard").cloned().unwrap_or(json!([0, 1])),
                        "application": { "id": APPLICATION_ID.to_string(), "flags": 0 },
                        "private_channels": [],
                    }});
                    if !send(&mut ws, &ready).await {
                        break;
                    }
                    session = Some(id);
                }
                Some(6) => {
                    let d = payload["d"].clone();
                    let mut shown = d.clone();
                    shown["token"] = json!("<redacted>");
                    lock(&shared.resumes).push(shown);
                    let id = d["session_id"].as_str().unwrap_or("").to_owned();
                    let since = d["seq"].as_u64().unwrap_or(0);
                    let known = token_ok(&shared, d["token"].as_str().unwrap_or(""))
                        && lock(&shared.sessions).get(&id).is_some_and(|s| s.id == id);
                    if !known {
                        let invalid = json!({ "op": 9, "s": null, "t": null, "d": false });
                        if !send(&mut ws, &invalid).await {
                            break;
                        }
                        continue;
                    }
                    let missed: Vec<(u64, Value)> = lock(&shared.sent_events)
                        .iter()
                        .filter(|(s, seq, _)| *s == id && *seq > since)
                        .map(|(_, seq, v)| (*seq, v.clone()))
                        .collect();
                    let mut ok = true;
                    for (seq, event) in missed {
                        let frame = json!({ "op": 0, "t": "MESSAGE_CREATE", "s": seq, "d": event });
                        ok = ok && send(&mut ws, &frame).await;
                    }
                    let seq = {
                        let mut sessions = lock(&shared.sessions);
                        let Some(s) = sessions.get_mut(&id) else {
                            break;
                        };
                        s.seq += 1;
                        s.connection = Some(me);
                        s.seq
                    };
                    *lock(&shared.current_session) = Some(id.clone());
                    let resumed = json!({ "op": 0, "t": "RESUMED", "s": seq, "d": {} });
                    if !ok || !send(&mut ws, &resumed).await {
                        break;
                    }
                    session = Some(id);
                }
                _ => {
                    close(&mut ws, 4001, "Unknown opcode.").await;
                    break;
                }
            }
        }
    }
    if let Some(id) = session
        && let Some(s) = lock(&shared.sessions).get_mut(&id)
        && s.connection == Some(me)
    {
        s.connection = None;
    }
    shared.connections.fetch_sub(1, Ordering::SeqCst);
    // Dropping `ws` without a close frame when cut.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_and_dates_read_like_discord() {
        assert_eq!(mentions_in("hi <@12> and <@!34> <@12>"), [12, 34]);
        assert!(mentions_in("<@nope> <@").is_empty());
        let now = iso_now();
        assert_eq!(now.len(), "2024-01-01T00:00:00.000000+00:00".len(), "{now}");
        assert!(now.starts_with("20"), "{now}");
    }

    #[tokio::test]
    async fn rest_checks_the_token_and_injects_rate_limits() {
        let dc = spawn("tok").await.unwrap();
        let client = reqwest::Client::new();
        let me = client
            .get(format!("{}/api/v10/users/@me", dc.api_url()))
            .header("authorization", "Bot wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 401);
        dc.fail_next("createMessage", Failure::RetryAfter(1.5));
        let url = format!("{}/api/v10/channels/5/messages", dc.api_url());
        let limited = client
            .post(&url)
            .header("authorization", "Bot tok")
            .json(&json!({ "content": "x" }))
            .send()
            .await
            .unwrap();
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers()["retry-after"], "2");
        assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
        let body: Value = limited.json().await.unwrap();
        assert_eq!(body["retry_after"], 1.5);
        let sent: Value = client
            .post(&url)
            .header("authorization", "Bot tok")
            .json(&json!({ "content": "x" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(sent["content"], "x");
        assert_eq!(dc.messages(5).len(), 1);
        let too_long = client
            .post(&url)
            .header("authorization", "Bot tok")
            .json(&json!({ "content": "y".repeat(2001) }))
            .send()
            .await
            .unwrap();
        assert_eq!(too_long.status(), 400);
        let statuses: Vec<u16> = dc.calls().iter().map(|c| c.status).collect();
        assert_eq!(statuses, [401, 429, 200, 400]);
    }
}
