//! A stand-in Telegram Bot API server for tests, speaking the documented JSON
//! (`{"ok":true,"result":...}` / `{"ok":false,"error_code":...,"description":...}`).
//!
//! Point a bot at [`TelegramStandIn::api_url`] (teloxide: `Bot::set_api_url`). It serves
//! `/bot<token>/<method>` for `getMe`, `getUpdates` (long polling: `offset` confirms, `timeout`
//! holds the request until an update is queued), `sendMessage`, `editMessageText`,
//! `sendChatAction`, `deleteWebhook`, `setWebhook`, `setMyCommands` and `deleteMyCommands`, with
//! JSON or multipart bodies. A wrong token gets `401 Unauthorized`.
//!
//! Like Telegram it checks HTML (`parse_mode: "HTML"`): only Telegram's tags, properly nested,
//! and `&`, `<`, `>` escaped, else `400 Bad Request: can't parse entities: ...`; a text longer than
//! 4096 characters after entity parsing gets `400 Bad Request: message is too long`; an edit that
//! changes nothing gets `400 Bad Request: message is not modified ...`. Each send and edit records
//! whether it asked for no link preview (`link_preview_options.is_disabled`, or the older
//! `disable_web_page_preview`): Telegram previews the first link of a text unless told not to.
//!
//! Tests queue incoming messages ([`TelegramStandIn::push_text`]), inject failures
//! ([`TelegramStandIn::fail_next`]: a 429 with `retry_after`, a 400, any status), read every call
//! ([`TelegramStandIn::calls`]) and the chat as a person would see it
//! ([`TelegramStandIn::messages`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

/// The bot's user id in `getMe`.
pub const BOT_ID: i64 = 7_000_000_001;
/// The bot's user name in `getMe`.
pub const BOT_USERNAME: &str = "clanker_test_bot";
/// Telegram's longest message, after entity parsing.
pub const MESSAGE_LIMIT: usize = 4096;

/// A failure to answer the next call of a method with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `429 Too Many Requests: retry after N` with `parameters.retry_after`.
    RetryAfter(u64),
    /// `400 Bad Request: can't parse entities: ...`.
    CantParseEntities,
    /// Any status and description.
    Status(u16, String),
}

/// One Bot API call as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The Bot API method as called (Telegram ignores its case: teloxide sends `SendMessage`).
    pub method: String,
    /// The parameters (JSON body, or the multipart fields as strings).
    pub params: Value,
    /// When it arrived, from the stand-in's start.
    pub at: Duration,
    /// The HTTP status answered.
    pub status: u16,
}

/// A message the bot sent, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The chat it is in.
    pub chat_id: i64,
    /// Its id in that chat.
    pub message_id: i64,
    /// The text as sent (HTML when `parse_mode` is HTML).
    pub raw: String,
    /// What a person sees: tags removed, entities decoded.
    pub text: String,
    /// `HTML`, `MarkdownV2`, or none (plain text).
    pub parse_mode: Option<String>,
    /// The message it replies to.
    pub reply_to: Option<i64>,
    /// The last send or edit asked for no link preview.
    pub link_preview_disabled: bool,
    /// Successful edits.
    pub edits: usize,
}

struct Shared {
    token: String,
    started: Instant,
    calls: Mutex<Vec<Call>>,
    updates: Mutex<VecDeque<Value>>,
    new_update: Notify,
    next_update_id: AtomicI64,
    next_message_id: AtomicI64,
    sent: Mutex<Vec<SentMessage>>,
    failures: Mutex<HashMap<String, VecDeque<Failure>>>,
    /// Messages the test "users" sent, by (chat, message id), for replies.
    incoming: Mutex<HashMap<(i64, i64), Value>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

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

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn chat_json(chat_id: i64) -> Value {
    if chat_id < 0 {
        json!({ "id": chat_id, "type": "supergroup", "title": format!("Group {chat_id}") })
    } else {
        json!({ "id": chat_id, "type": "private", "first_name": format!("User{chat_id}"), "username": format!("user{chat_id}") })
    }
}

fn user_json(id: i64) -> Value {
    json!({ "id": id, "is_bot": false, "first_name": format!("User{id}"), "username": format!("user{id}") })
}

fn bot_user_json() -> Value {
    json!({ "id": BOT_ID, "is_bot": true, "first_name": "Clanker", "username": BOT_USERNAME })
}

fn bot_message_json(chat_id: i64, message_id: i64, text: &str) -> Value {
    json!({
        "message_id": message_id,
        "date": unix_now(),
        "chat": chat_json(chat_id),
        "from": bot_user_json(),
        "text": text,
    })
}

fn ok(result: Value) -> (StatusCode, Value) {
    (StatusCode::OK, json!({ "ok": true, "result": result }))
}

fn error(code: u16, description: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        json!({ "ok": false, "error_code": code, "description": description }),
    )
}

fn failure_response(f: &Failure) -> (StatusCode, Value) {
    match f {
        Failure::RetryAfter(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            json!({
                "ok": false,
                "error_code": 429,
                "description": format!("Too Many Requests: retry after {secs}"),
                "parameters": { "retry_after": secs },
            }),
        ),
        Failure::CantParseEntities => error(
            400,
            "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0",
        ),
        Failure::Status(code, description) => error(*code, description),
    }
}

/// The fields of a multipart/form-data body, as strings.
fn multipart_fields(content_type: &str, body: &[u8]) -> Value {
    let Some(boundary) = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
    else {
        return json!({});
    };
    let boundary = format!("--{}", boundary.trim_matches('"'));
    let text = String::from_utf8_lossy(body);
    let mut fields = serde_json::Map::new();
    for part in text.split(boundary.as_str()) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let parsed = serde_json::from_str::<Value>(value).unwrap_or_else(|_| json!(value));
        fields.insert(name.to_owned(), parsed);
    }
    Value::Object(fields)
}

fn params(headers: &HeaderMap, body: &Bytes) -> Value {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("multipart/form-data") {
        multipart_fields(content_type, body)
    } else if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    }
}

async fn api(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = params(&headers, &body);
    let at = shared.started.elapsed();
    let (status, answer) = if bot.strip_prefix("bot") != Some(shared.token.as_str()) {
        error(401, "Unauthorized")
    } else if let Some(f) = lock(&shared.failures)
        .get_mut(&method.to_ascii_lowercase())
        .and_then(VecDeque::pop_front)
    {
        failure_response(&f)
    } else {
        handle(&shared, &method, &params).await
    };
    lock(&shared.calls).push(Call {
        method,
        params,
        at,
        status: status.as_u16(),
    });
    (status, axum::Json(answer)).into_response()
}

fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

async fn handle(shared: &Shared, method: &str, p: &Value) -> (StatusCode, Value) {
    // Method names are case-insensitive.
    match method.to_ascii_lowercase().as_str() {
        "getme" => {
            let mut me = bot_user_json();
            me["can_join_groups"] = json!(true);
            me["can_read_all_group_messages"] = json!(false);
            me["supports_inline_queries"] = json!(false);
            me["can_connect_to_business"] = json!(false);
            me["has_main_web_app"] = json!(false);
            ok(me)
        }
        "getupdates" => {
            let offset = p.get("offset").and_then(as_i64).unwrap_or(0);
            let timeout = p.get("timeout").and_then(as_i64).unwrap_or(0).clamp(0, 50);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout as u64);
            loop {
                let notified = shared.new_update.notified();
                {
                    let mut queue = lock(&shared.updates);
                    // An offset confirms every update before it.
                    while queue
                        .front()
                        .is_some_and(|u| u["update_id"].as_i64().unwrap_or(0) < offset)
                    {
                        queue.pop_front();
                    }
                    if !queue.is_empty() {
                        return ok(Value::Array(queue.iter().cloned().collect()));
                    }
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return ok(json!([]));
                }
            }
        }
        "sendmessage" | "editmessagetext" => send_or_edit(shared, method, p),
        "sendchataction" | "deletewebhook" | "setwebhook" | "setmycommands"
        | "deletemycommands" => ok(json!(true)),
        _ => error(404, "Not Found: method not found"),
    }
}

/// Whether a send or edit asks for no link preview: `link_preview_options.is_disabled` (an object,
/// or its JSON text in a multipart body), or the older `disable_web_page_preview`.
fn link_preview_disabled(p: &Value) -> bool {
    let truthy = |v: &Value| v.as_bool().or_else(|| v.as_str().map(|s| s == "true"));
    let options = match p.get("link_preview_options") {
        Some(Value::String(text)) => serde_json::from_str(text).unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    options
        .get("is_disabled")
        .and_then(truthy)
        .or_else(|| p.get("disable_web_page_preview").and_then(truthy))
        .unwrap_or(false)
}

fn send_or_edit(shared: &Shared, method: &str, p: &Value) -> (StatusCode, Value) {
    let Some(chat_id) = p.get("chat_id").and_then(as_i64) else {
        return error(400, "Bad Request: chat_id is empty");
    };
    let raw = p
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let parse_mode = p
        .get("parse_mode")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let text = match parse_mode.as_deref() {
        Some("HTML") => match parse_html(&raw) {
            Ok(text) => text,
            Err(e) => return error(400, &format!("Bad Request: can't parse entities: {e}")),
        },
        Some(other) if other != "MarkdownV2" && other != "Markdown" => {
            return error(
                400,
                &format!("Bad Request: unsupported parse_mode {other:?}"),
            );
        }
        _ => raw.clone(),
    };
    if text.trim().is_empty() {
        return error(400, "Bad Request: message text is empty");
    }
    if text.chars().map(char::len_utf16).sum::<usize>() > MESSAGE_LIMIT {
        return error(
            400,
            if method.eq_ignore_ascii_case("sendMessage") {
                "Bad Request: message is too long"
            } else {
                "Bad Request: MESSAGE_TOO_LONG"
            },
        );
    }
    let link_preview_disabled = link_preview_disabled(p);
    let mut sent = lock(&shared.sent);
    if method.eq_ignore_ascii_case("sendMessage") {
        let message_id = shared.next_message_id.fetch_add(1, Ordering::SeqCst);
        let reply_to = p
            .get("reply_parameters")
            .and_then(|r| r.get("message_id"))
            .and_then(as_i64);
        sent.push(SentMessage {
            chat_id,
            message_id,
            raw,
            text: text.clone(),
            parse_mode,
            reply_to,
            link_preview_disabled,
            edits: 0,
        });
        return ok(bot_message_json(chat_id, message_id, &text));
    }
    let Some(message_id) = p.get("message_id").and_then(as_i64) else {
        return error(400, "Bad Request: message identifier is not specified");
    };
    let Some(message) = sent
        .iter_mut()
        .find(|m| m.chat_id == chat_id && m.message_id == message_id)
    else {
        return error(400, "Bad Request: message to edit not found");
    };
    if message.raw == raw && message.parse_mode == parse_mode {
        return error(
            400,
            "Bad Request: message is not modified: specified new message content and reply \
             markup are exactly the same as a current content and reply markup of the message",
        );
    }
    message.raw = raw;
    message.text = text.clone();
    message.parse_mode = parse_mode;
    message.link_preview_disabled = link_preview_disabled;
    message.edits += 1;
    ok(bot_message_json(chat_id, message_id, &text))
}

/// Parses Telegram HTML into the visible text, refusing what Telegram refuses.
pub fn parse_html(html: &str) -> Result<String, String> {
    const TAGS: [&str; 16] = [
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    ];
    let mut out = String::new();
    let mut stack: Vec<String> = Vec::new();
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < html.len() {
        let rest = &html[i..];
        if rest.starts_with('<') {
            let end = rest
                .find('>')
                .ok_or_else(|| format!("Unclosed start tag at byte offset {i}"))?;
            let tag = &rest[1..end];
            if let Some(name) = tag.strip_prefix('/') {
                let name = name.trim();
                match stack.pop() {
                    Some(open) if open == name => {}
                    _ => {
                        return Err(format!(
                            "Unmatched end tag at byte offset {i}, expected \"</{}>\", found \"</{name}>\"",
                            stack.last().cloned().unwrap_or_default()
                        ));
                    }
                }
            } else {
                let name = tag.split_whitespace().next().unwrap_or("").to_owned();
                if !TAGS.contains(&name.as_str()) {
                    return Err(format!(
                        "Unsupported start tag \"{name}\" at byte offset {i}"
                    ));
                }
                stack.push(name);
            }
            i += end + 1;
        } else if rest.starts_with('&') {
            let end = rest
                .find(';')
                .filter(|&e| e <= 10)
                .ok_or_else(|| format!("Unclosed entity at byte offset {i}"))?;
            let entity = &rest[1..end];
            let ch = match entity {
                "lt" => '<',
                "gt" => '>',
                "amp" => '&',
                "quot" => '"',
                _ => entity
                    .strip_prefix('#')
                    .and_then(|n| n.parse::<u32>().ok())
                    .and_then(char::from_u32)
                    .ok_or_else(|| {
                        format!("Unsupported HTML entity \"&{entity};\" at byte offset {i}")
                    })?,
            };
            out.push(ch);
            i += end + 1;
        } else if bytes[i] == b'>' {
            return Err(format!("Unexpected \">\" at byte offset {i}"));
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8();
        }
    }
    if let Some(open) = stack.pop() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{open}\""
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_checked_like_telegram_does() {
        assert_eq!(parse_html("<b>a</b> &amp; <i>b</i>").unwrap(), "a & b");
        assert_eq!(
            parse_html("<pre><code class=\"language-rust\">x &lt; y</code></pre>").unwrap(),
            "x < y"
        );
        assert!(parse_html("<b>a").unwrap_err().contains("end tag"));
        assert!(
            parse_html("<x>a</x>")
                .unwrap_err()
                .contains("Unsupported start tag")
        );
        assert!(parse_html("a & b").is_err());
        assert!(parse_html("<b><i>a</b></i>").is_err());
    }

    #[tokio::test]
    async fn long_polling_waits_for_updates_and_offsets_confirm() {
        let tg = spawn("1:tok").await.unwrap();
        let client = reqwest::Client::new();
        let url = format!("{}/bot1:tok/getUpdates", tg.api_url());
        let poll = {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                client
                    .post(&url)
                    .json(&json!({"timeout": 5}))
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        tg.push_text(42, 42, "hello");
        let answer = poll.await.unwrap();
        assert_eq!(answer["result"][0]["message"]["text"], "hello");
        let id = answer["result"][0]["update_id"].as_i64().unwrap();
        let answer: Value = client
            .post(&url)
            .json(&json!({"offset": id + 1, "timeout": 0}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["result"], json!([]));

        let bad: Value = client
            .post(format!("{}/bot9:nope/getMe", tg.api_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(bad["error_code"], 401);

        tg.fail_next("sendMessage", Failure::RetryAfter(1));
        let limited: Value = client
            .post(format!("{}/bot1:tok/sendMessage", tg.api_url()))
            .json(&json!({"chat_id": 42, "text": "x"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(limited["parameters"]["retry_after"], 1);
        assert!(tg.messages(42).is_empty());
        assert_eq!(tg.calls_of("sendMessage")[0].status, 429);
    }
}
