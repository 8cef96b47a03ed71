//! The Discord stand-in's REST API: the token check, injected failures, and the routes a bot
//! uses (gateway discovery, the current user, creating and editing messages, typing).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::records::{
    Call, Failure, IS_COMPONENTS_V2, IS_VOICE_MESSAGE, MESSAGE_LIMIT, SUPPRESS_EMBEDS,
    SUPPRESS_NOTIFICATIONS, SentMessage,
};
use super::state::{Shared, lock};
use super::wire::{bot_message_json, bot_user_json, iso_now};

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

pub(super) async fn unknown() -> Response {
    error_json(404, 0, "404: Not Found")
}

pub(super) async fn rest(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discord::spawn;

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
