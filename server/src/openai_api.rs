//! An OpenAI-compatible HTTP endpoint on the gateway's port: `POST /v1/chat/completions` (streamed
//! SSE or one JSON answer) and `GET /v1/models`, so any OpenAI SDK or tool can use the gateway as its
//! base URL. Turns run on the same [`Engine`] pipeline as the gRPC `Chat` RPC.
//!
//! Sessions: a request names a gateway session with the header `x-openclanker-session` (a session
//! id), `x-openclanker-session-key` (a key, created on first use), or the body's `user` field (taken
//! as the key `openai:<user>`). Then only the last message (from the user) is the turn's text and the
//! history comes from the store. Without any of these the request is stateless: its `messages` are
//! the whole context and nothing is stored.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use open_clanker_core::{
    ChatBackend, ChatMessage, ProviderKind, Role, SessionRef, TurnError, TurnEvent, TurnRequest,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Config;
use open_clanker_engine::Engine;

pub const SESSION_HEADER: &str = "x-openclanker-session";
pub const SESSION_KEY_HEADER: &str = "x-openclanker-session-key";

#[derive(Clone)]
struct Api {
    engine: Arc<Engine>,
    config: Arc<Config>,
    configured: Vec<ProviderKind>,
}

/// The routes, to merge into the gateway's router.
pub fn router(
    engine: Arc<Engine>,
    config: Arc<Config>,
    configured: Vec<ProviderKind>,
) -> axum::Router {
    axum::Router::new()
        .route("/v1/chat/completions", post(completions))
        .route("/v1/models", get(models))
        .with_state(Api {
            engine,
            config,
            configured,
        })
}

/// An error in OpenAI's JSON shape with the matching HTTP status.
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    message: String,
    param: Option<&'static str>,
}

impl ApiError {
    fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            message: message.into(),
            param,
        }
    }

    fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<TurnError> for ApiError {
    fn from(e: TurnError) -> Self {
        let (status, kind, code) = match &e {
            TurnError::InvalidArgument(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", None)
            }
            TurnError::NotFound(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("not_found"),
            ),
            TurnError::FailedPrecondition(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("provider_not_configured"),
            ),
            TurnError::ResourceExhausted(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
            ),
            TurnError::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                Some("invalid_api_key"),
            ),
            TurnError::PermissionDenied(_) => (StatusCode::FORBIDDEN, "permission_error", None),
            TurnError::Unavailable(_) => (StatusCode::BAD_GATEWAY, "server_error", None),
            TurnError::DeadlineExceeded(_) => {
                (StatusCode::GATEWAY_TIMEOUT, "server_error", Some("timeout"))
            }
            TurnError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        };
        Self {
            status,
            kind,
            code,
            message: e.to_string(),
            param: None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct CompletionBody {
    model: Option<String>,
    messages: Option<Vec<InMessage>>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Text of a message's `content`: a string, or an array of `{"type":"text","text":...}` parts.
fn content_text(content: &Option<Value>, index: usize) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    (Some(other), _) => {
                        return Err(ApiError::invalid(
                            format!(
                                "messages[{index}]: content parts of type {other:?} are not supported; send text"
                            ),
                            Some("messages"),
                        ));
                    }
                    _ => {
                        return Err(ApiError::invalid(
                            format!("messages[{index}]: malformed content part"),
                            Some("messages"),
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(ApiError::invalid(
            format!("messages[{index}].content must be a string or an array of text parts"),
            Some("messages"),
        )),
    }
}

fn role(name: &str, index: usize) -> Result<Role, ApiError> {
    match name {
        "system" | "developer" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        other => Err(ApiError::invalid(
            format!(
                "messages[{index}].role {other:?} is not supported (system, developer, user, assistant)"
            ),
            Some("messages"),
        )),
    }
}

/// Splits `provider/model`, or infers the provider from a bare model name.
fn route_model(model: &str, api: &Api) -> (Option<String>, Option<String>) {
    if let Some((prefix, rest)) = model.split_once('/')
        && let Ok(kind) = prefix.parse::<ProviderKind>()
    {
        return (Some(kind.to_string()), Some(rest.to_string()));
    }
    let lower = model.to_ascii_lowercase();
    let inferred = if lower.starts_with("claude") {
        Some(ProviderKind::Anthropic)
    } else if ["gpt", "o1", "o3", "o4", "chatgpt"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        Some(ProviderKind::OpenAi)
    } else {
        None
    };
    // A model matching a provider's configured default also picks that provider.
    let by_default = ProviderKind::ALL
        .into_iter()
        .find(|k| api.config.providers.get(*k).model == model);
    let provider = inferred.or(by_default).map(|k| k.to_string());
    (provider, Some(model.to_string()))
}

fn header(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()))
            .map_err(|_| ApiError::invalid(format!("header {name} is not valid text"), None)),
    }
}

async fn completions(
    State(api): State<Api>,
    caller: Option<axum::Extension<crate::security::Caller>>,
    headers: HeaderMap,
    body: Result<Json<CompletionBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text(), None))?;
    let model = body
        .model
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("you must provide a model parameter", Some("model")))?;
    let messages = body
        .messages
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("messages must be a non-empty array", Some("messages")))?;
    let mut parsed = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        parsed.push(ChatMessage::new(
            role(&m.role, i)?,
            content_text(&m.content, i)?,
        ));
    }
    let last = parsed
        .pop()
        .unwrap_or_else(|| ChatMessage::new(Role::User, ""));
    if last.role != Role::User {
        return Err(ApiError::invalid(
            "the last message must be from the user",
            Some("messages"),
        ));
    }
    let session = if let Some(id) = header(&headers, SESSION_HEADER)? {
        SessionRef::Id(id)
    } else if let Some(key) = header(&headers, SESSION_KEY_HEADER)? {
        SessionRef::Key(key)
    } else if let Some(user) = body.user.filter(|u| !u.trim().is_empty()) {
        SessionRef::Key(format!("openai:{}", user.trim()))
    } else {
        SessionRef::Stateless(parsed)
    };
    let (provider, model_name) = route_model(model.trim(), &api);
    let events = api
        .engine
        .start_turn(TurnRequest {
            session,
            text: last.content,
            provider,
            model: model_name,
            caller: caller.and_then(|axum::Extension(c)| c.key),
        })
        .await?;
    let id = format!("chatcmpl-{}", uuid_like());
    if body.stream {
        let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
        Ok(stream_answer(events, id, model, include_usage).into_response())
    } else {
        whole_answer(events, id, model).await
    }
}

fn uuid_like() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens") | Some("length") => "length",
        Some("tool_use") | Some("tool_calls") => "tool_calls",
        Some("content_filter") | Some("refusal") => "content_filter",
        _ => "stop",
    }
}

fn usage_json(u: open_clanker_core::Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

async fn whole_answer(
    mut events: open_clanker_core::TurnStream,
    id: String,
    model: String,
) -> Result<Response, ApiError> {
    while let Some(event) = events.next().await {
        match event {
            TurnEvent::Completed(m) => {
                let body = json!({
                    "id": id,
                    "object": "chat.completion",
                    "created": now_secs(),
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": m.content},
                        "finish_reason": finish_reason(m.stop_reason.as_deref()),
                    }],
                    "usage": usage_json(m.usage),
                });
                return Ok(Json(body).into_response());
            }
            TurnEvent::Failed { error, .. } => return Err(error.into()),
            _ => {}
        }
    }
    Err(TurnError::Internal("the turn ended without an answer".into()).into())
}

fn stream_answer(
    events: open_clanker_core::TurnStream,
    id: String,
    model: String,
    include_usage: bool,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let created = now_secs();
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let stream = events.flat_map(move |event| {
        let out: Vec<Value> = match event {
            TurnEvent::Started(_) => {
                vec![chunk(json!({"role": "assistant", "content": ""}), None)]
            }
            TurnEvent::Delta(text) => vec![chunk(json!({"content": text}), None)],
            TurnEvent::Usage(_) => Vec::new(),
            TurnEvent::Completed(m) => {
                let mut v = vec![chunk(
                    json!({}),
                    Some(finish_reason(m.stop_reason.as_deref())),
                )];
                if include_usage {
                    let mut last = chunk(json!({}), None);
                    last["choices"] = json!([]);
                    last["usage"] = usage_json(m.usage);
                    v.push(last);
                }
                v
            }
            TurnEvent::Failed { error, .. } => vec![ApiError::from(error).body()],
        };
        futures::stream::iter(
            out.into_iter()
                .map(|v| Ok(Event::default().data(v.to_string())))
                .collect::<Vec<_>>(),
        )
    });
    let done = futures::stream::once(async { Ok(Event::default().data("[DONE]")) });
    Sse::new(stream.chain(done))
}

async fn models(State(api): State<Api>) -> Json<Value> {
    let data: Vec<Value> = api
        .configured
        .iter()
        .map(|&kind| {
            json!({
                "id": format!("{kind}/{}", api.config.providers.get(kind).model),
                "object": "model",
                "created": 0,
                "owned_by": kind.to_string(),
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_parts_are_joined_and_images_refused() {
        let parts = Some(json!([{"type":"text","text":"a"},{"type":"text","text":"b"}]));
        assert_eq!(content_text(&parts, 0).ok(), Some("ab".to_string()));
        let image = Some(json!([{"type":"image_url","image_url":{"url":"x"}}]));
        let err = content_text(&image, 2)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(
            err.contains("messages[2]") && err.contains("image_url"),
            "{err}"
        );
        assert!(content_text(&Some(json!(5)), 0).is_err());
    }

    #[test]
    fn finish_reasons_follow_openai() {
        assert_eq!(finish_reason(Some("end_turn")), "stop");
        assert_eq!(finish_reason(Some("max_tokens")), "length");
        assert_eq!(finish_reason(None), "stop");
    }

    #[test]
    fn errors_have_openai_shape_and_status() {
        let e = ApiError::from(TurnError::ResourceExhausted("slow down".into()));
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        let body = e.body();
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(body["error"]["message"], "slow down");
    }
}
