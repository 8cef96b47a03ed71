//! The OpenAI Chat Completions side: `POST /v1/chat/completions`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{Answer, Ending, Plan, Shared, Wire};

const PATH: &str = "/v1/chat/completions";

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = shared.record("POST", PATH, &headers, &body);
    let request_id = format!("req_standin_{}", shared.next_id());
    if let Some(response) = check_key(&shared, &headers, &request_id) {
        return response;
    }
    let Some(body) = parsed else {
        return error_response(
            400,
            "We could not parse the JSON body of your request.",
            "invalid_request_error",
            None,
            None,
            &request_id,
        );
    };
    let request = match validate(&body) {
        Ok(request) => request,
        Err(message) => {
            return error_response(
                400,
                &message,
                "invalid_request_error",
                None,
                None,
                &request_id,
            );
        }
    };
    let answer = match shared.plan(
        &request.last_user_text,
        request.input_tokens,
        request.max_tokens,
    ) {
        Plan::Fail {
            status,
            retry_after,
        } => {
            let (kind, code) = error_kind(status);
            let message = format!("stand-in: simulated HTTP {status}");
            return error_response(status, &message, kind, code, retry_after, &request_id);
        }
        Plan::Answer(answer) => answer,
    };
    let id = format!("chatcmpl-standin{}", shared.next_id());
    let created = crate::unix_now();
    let finish_reason = if answer.truncated { "length" } else { "stop" };
    let extra = [("x-request-id", request_id.clone())];
    if !request.stream {
        return match answer.ending {
            Ending::Complete => {
                let body = json!({
                    "id": id,
                    "object": "chat.completion",
                    "created": created,
                    "model": request.model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": answer.text(), "refusal": null},
                        "logprobs": null,
                        "finish_reason": finish_reason,
                    }],
                    "usage": usage(&answer),
                    "system_fingerprint": null,
                });
                let mut response = axum::Json(body).into_response();
                if let Ok(v) = request_id.parse() {
                    response.headers_mut().insert("x-request-id", v);
                }
                response
            }
            Ending::ErrorEvent => error_response(
                503,
                "The server is overloaded or not ready yet.",
                "server_error",
                None,
                None,
                &request_id,
            ),
            ending => crate::unfinished_response(&shared, ending),
        };
    }
    let wire = OpenAiWire {
        id,
        model: request.model,
        created,
        include_usage: request.include_usage,
        usage: usage(&answer),
        finish_reason,
    };
    crate::stream_response(
        &shared,
        answer,
        wire,
        "text/event-stream; charset=utf-8",
        &extra,
    )
}

/// The refusal of a request without the right key, if it gets one.
fn check_key(shared: &Shared, headers: &HeaderMap, request_id: &str) -> Option<Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if bearer != Some(shared.config.api_key.as_str()) {
        let message = match bearer {
            Some(key) => format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask(key)
            ),
            None => "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).".to_string(),
        };
        let code = if bearer.is_some() {
            Some("invalid_api_key")
        } else {
            None
        };
        return Some(error_response(
            401,
            &message,
            "invalid_request_error",
            code,
            None,
            request_id,
        ));
    }
    None
}

/// `GET /v1/models` in OpenAI's format.
pub(crate) fn models(shared: &Shared, headers: &HeaderMap) -> Response {
    let request_id = format!("req_standin_{}", shared.next_id());
    if let Some(response) = check_key(shared, headers, &request_id) {
        return response;
    }
    axum::Json(json!({
        "object": "list",
        "data": [{"id": crate::MODEL, "object": "model", "created": 1735689600, "owned_by": "open-clanker"}],
    }))
    .into_response()
}

fn usage(answer: &Answer) -> Value {
    json!({
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens(),
        "total_tokens": answer.input_tokens + answer.output_tokens(),
    })
}

/// `sk-abc...xy` style masking, as the real service echoes a wrong key.
fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 12 {
        return "*".repeat(chars.len().min(8));
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
}

struct Request {
    model: String,
    max_tokens: Option<u64>,
    stream: bool,
    include_usage: bool,
    last_user_text: String,
    input_tokens: u64,
}

fn validate(body: &Value) -> Result<Request, String> {
    if !body.is_object() {
        return Err("Invalid request: expected a JSON object.".into());
    }
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => return Err("you must provide a model parameter".into()),
    };
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err("[] is too short - 'messages'".into()),
        _ => return Err("Missing required parameter: 'messages'.".into()),
    };
    let mut texts = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        match message.get("role").and_then(Value::as_str) {
            Some("system" | "developer" | "user" | "assistant" | "tool") => {}
            Some(other) => {
                return Err(format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'tool', and 'developer'. ('messages[{i}].role')"
                ));
            }
            None => return Err(format!("Missing required parameter: 'messages[{i}].role'.")),
        }
        match message.get("content") {
            Some(Value::String(s)) => texts.push(s.clone()),
            Some(Value::Array(_)) => texts.push(crate::content_text(message.get("content"))),
            Some(Value::Null) | None
                if message.get("role").and_then(Value::as_str) == Some("assistant") => {}
            _ => {
                return Err(format!(
                    "Invalid value for 'content': expected a string, got null. ('messages[{i}].content')"
                ));
            }
        }
    }
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .filter_map(|name| body.get(*name).filter(|v| !v.is_null()))
        .map(|v| {
            v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1."
                    .to_string()
            })
        })
        .next()
        .transpose()?;
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("Invalid type for 'stream': expected a boolean.".into()),
    };
    let stream_options = body.get("stream_options").filter(|v| !v.is_null());
    if stream_options.is_some() && !stream {
        return Err(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
        );
    }
    if let Some(t) = body.get("temperature")
        && !t.is_null()
        && !t.as_f64().is_some_and(|t| (0.0..=2.0).contains(&t))
    {
        return Err("Invalid 'temperature': expected a number between 0 and 2.".into());
    }
    let include_usage = stream_options
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Request {
        model,
        max_tokens,
        stream,
        include_usage,
        last_user_text: crate::last_user_text(messages),
        input_tokens: crate::script::count_words(texts.iter().map(String::as_str)),
    })
}

/// The documented error `type` and `code` for an HTTP status.
fn error_kind(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => (
            "invalid_request_error",
            Some("unsupported_country_region_territory"),
        ),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

/// An error answer: `{"error":{"message","type","param","code"}}`.
fn error_response(
    status: u16,
    message: &str,
    kind: &str,
    code: Option<&str>,
    retry_after: Option<u64>,
    request_id: &str,
) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = request_id.parse() {
        headers.insert("x-request-id", v);
    }
    if let Some(seconds) = retry_after
        && let Ok(v) = seconds.to_string().parse()
    {
        headers.insert("retry-after", v);
    }
    response
}

struct OpenAiWire {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Value,
    finish_reason: &'static str,
}

impl OpenAiWire {
    fn chunk(&self, choices: Value, usage: Value) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if self.include_usage {
            chunk["usage"] = usage;
        }
        crate::sse_event(None, &chunk)
    }
}

impl Wire for OpenAiWire {
    fn prologue(&self) -> Vec<Bytes> {
        vec![self.chunk(
            json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}]),
            Value::Null,
        )]
    }

    fn delta(&self, text: &str) -> Bytes {
        self.chunk(
            json!([{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]),
            Value::Null,
        )
    }

    fn error_event(&self) -> Bytes {
        crate::sse_event(
            None,
            &json!({"error": {"message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": null, "code": null}}),
        )
    }

    fn epilogue(&self) -> Vec<Bytes> {
        let mut chunks = vec![self.chunk(
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": self.finish_reason}]),
            Value::Null,
        )];
        if self.include_usage {
            chunks.push(self.chunk(json!([]), self.usage.clone()));
        }
        chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let ok = json!({"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi you"}], "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 5});
        let r = validate(&ok).unwrap();
        assert_eq!(r.last_user_text, "hi you");
        assert_eq!(r.input_tokens, 3);
        assert!(r.stream && r.include_usage);
        assert_eq!(r.max_tokens, Some(5));
        let bad = [
            json!({"messages": [{"role": "user", "content": "x"}]}),
            json!({"model": "m", "messages": []}),
            json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
            json!({"model": "m", "messages": [{"role": "user"}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
        ];
        for body in bad {
            assert!(validate(&body).is_err(), "{body}");
        }
    }

    #[test]
    fn masking_never_shows_the_whole_key() {
        assert_eq!(mask("short"), "*****");
        let masked = mask("sk-0123456789abcdef");
        assert!(masked.starts_with("sk-") && masked.ends_with("ef") && !masked.contains("0123"));
    }
}
