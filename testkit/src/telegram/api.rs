//! The Telegram stand-in's Bot API: the token check, injected failures, JSON and multipart
//! parameters, long polling, and sending and editing messages as Telegram checks them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::html::parse_html;
use super::records::{Call, Failure, MESSAGE_LIMIT, SentMessage};
use super::state::{Shared, lock};
use super::wire::{bot_message_json, bot_user_json};

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

pub(super) async fn api(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telegram::spawn;

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
