//! The Anthropic Messages API side: `POST /v1/messages`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{Answer, Ending, Plan, Shared, Wire};

const PATH: &str = "/v1/messages";

/// `POST /v1/messages`.
pub(crate) async fn messages(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = shared.record("POST", PATH, &headers, &body);
    let request_id = format!("req_standin_{}", shared.next_id());
    if let Some(response) = check_headers(&shared, &headers, &request_id) {
        return response;
    }
    let Some(body) = parsed else {
        return error_response(
            400,
            "There was an error parsing the body of your request: expected a JSON object",
            None,
            &request_id,
        );
    };
    let request = match validate(&body) {
        Ok(request) => request,
        Err(message) => return error_response(400, &message, None, &request_id),
    };
    let answer = match shared.plan(
        &request.last_user_text,
        request.input_tokens,
        Some(request.max_tokens),
    ) {
        Plan::Fail {
            status,
            retry_after,
        } => {
            let message = format!("stand-in: simulated HTTP {status}");
            return error_response(status, &message, retry_after, &request_id);
        }
        Plan::Answer(answer) => answer,
    };
    let message_id = format!("msg_standin_{}", shared.next_id());
    let extra = [("request-id", request_id.clone())];
    if !request.stream {
        return match answer.ending {
            Ending::Complete => {
                let mut response = axum::Json(message_object(&message_id, &request.model, &answer))
                    .into_response();
                if let Ok(v) = request_id.parse() {
                    response.headers_mut().insert("request-id", v);
                }
                response
            }
            Ending::ErrorEvent => error_response(529, "Overloaded", None, &request_id),
            ending => crate::unfinished_response(&shared, ending),
        };
    }
    let wire = AnthropicWire {
        id: message_id,
        model: request.model,
        input_tokens: answer.input_tokens,
        output_tokens: answer.output_tokens(),
        stop_reason: if answer.truncated {
            "max_tokens"
        } else {
            "end_turn"
        },
    };
    crate::stream_response(
        &shared,
        answer,
        wire,
        "text/event-stream; charset=utf-8",
        &extra,
    )
}

/// The refusal of a request without the right key or version header, if it gets one.
fn check_headers(shared: &Shared, headers: &HeaderMap, request_id: &str) -> Option<Response> {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(shared.config.api_key.as_str()) {
        return Some(error_response(401, "invalid x-api-key", None, request_id));
    }
    if headers.get("anthropic-version").is_none() {
        return Some(error_response(
            400,
            "anthropic-version: header is required",
            None,
            request_id,
        ));
    }
    None
}

/// `GET /v1/models` in Anthropic's format.
pub(crate) fn models(shared: &Shared, headers: &HeaderMap) -> Response {
    let request_id = format!("req_standin_{}", shared.next_id());
    if let Some(response) = check_headers(shared, headers, &request_id) {
        return response;
    }
    axum::Json(json!({
        "data": [{
            "type": "model",
            "id": crate::MODEL,
            "display_name": "Stand-in model",
            "created_at": "2025-01-01T00:00:00Z",
        }],
        "has_more": false,
        "first_id": crate::MODEL,
        "last_id": crate::MODEL,
    }))
    .into_response()
}

/// What the stand-in needs from a valid request.
struct Request {
    model: String,
    max_tokens: u64,
    stream: bool,
    last_user_text: String,
    input_tokens: u64,
}

/// Checks the body as the Messages API does (the parts a client can get wrong).
fn validate(body: &Value) -> Result<Request, String> {
    if !body.is_object() {
        return Err("body: expected an object".into());
    }
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        Some(Value::String(_)) => {
            return Err("model: String should have at least 1 character".into());
        }
        Some(_) => return Err("model: Input should be a valid string".into()),
        None => return Err("model: Field required".into()),
    };
    let max_tokens = match body.get("max_tokens") {
        None => return Err("max_tokens: Field required".into()),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => n,
            _ => return Err("max_tokens: Input should be a positive integer".into()),
        },
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("stream: Input should be a valid boolean".into()),
    };
    let system_text = match body.get("system") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => crate::content_text(Some(&Value::Array(blocks.clone()))),
        Some(_) => {
            return Err("system: Input should be a valid string or list of text blocks".into());
        }
    };
    if let Some(t) = body.get("temperature")
        && !t.is_null()
        && !t.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t))
    {
        return Err("temperature: Input should be a number between 0 and 1".into());
    }
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err("messages: at least one message is required".into()),
        Some(_) => return Err("messages: Input should be a valid list".into()),
        None => return Err("messages: Field required".into()),
    };
    let mut texts = vec![system_text];
    for (i, message) in messages.iter().enumerate() {
        match message.get("role").and_then(Value::as_str) {
            Some("user") | Some("assistant") => {}
            Some("system") => {
                return Err(format!(
                    "messages.{i}.role: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role."
                ));
            }
            Some(other) => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant', got {other:?}"
                ));
            }
            None => return Err(format!("messages.{i}.role: Field required")),
        }
        if i == 0 && message.get("role").and_then(Value::as_str) != Some("user") {
            return Err("messages: first message must use the \"user\" role".into());
        }
        match message.get("content") {
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(format!(
                    "messages.{i}.content: text content blocks must contain non-whitespace text"
                ));
            }
            Some(Value::String(s)) => texts.push(s.clone()),
            Some(Value::Array(blocks)) if blocks.is_empty() => {
                return Err(format!(
                    "messages.{i}.content: at least one content block is required"
                ));
            }
            Some(Value::Array(blocks)) => {
                for (j, block) in blocks.iter().enumerate() {
                    if block.get("type").and_then(Value::as_str) == Some("text") {
                        let text = block
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        if text.trim().is_empty() {
                            return Err(format!(
                                "messages.{i}.content.{j}.text: text content blocks must contain non-whitespace text"
                            ));
                        }
                        texts.push(text.to_string());
                    }
                }
            }
            Some(_) => {
                return Err(format!(
                    "messages.{i}.content: Input should be a valid string or list"
                ));
            }
            None => return Err(format!("messages.{i}.content: Field required")),
        }
    }
    Ok(Request {
        model,
        max_tokens,
        stream,
        last_user_text: crate::last_user_text(messages),
        input_tokens: crate::script::count_words(texts.iter().map(String::as_str)),
    })
}

/// The documented error type for an HTTP status.
fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// An error answer: `{"type":"error","error":{"type","message"},"request_id"}`.
fn error_response(
    status: u16,
    message: &str,
    retry_after: Option<u64>,
    request_id: &str,
) -> Response {
    let body = json!({
        "type": "error",
        "error": {"type": error_type(status), "message": message},
        "request_id": request_id,
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = request_id.parse() {
        headers.insert("request-id", v);
    }
    if let Some(seconds) = retry_after
        && let Ok(v) = seconds.to_string().parse()
    {
        headers.insert("retry-after", v);
    }
    response
}

/// The non-streamed Message object.
fn message_object(id: &str, model: &str, answer: &Answer) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": answer.text()}],
        "stop_reason": if answer.truncated { "max_tokens" } else { "end_turn" },
        "stop_sequence": null,
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens()},
    })
}

struct AnthropicWire {
    id: String,
    model: String,
    input_tokens: u64,
    output_tokens: u64,
    stop_reason: &'static str,
}

impl Wire for AnthropicWire {
    fn prologue(&self) -> Vec<Bytes> {
        vec![
            crate::sse_event(
                Some("message_start"),
                &json!({
                    "type": "message_start",
                    "message": {
                        "id": self.id,
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "model": self.model,
                        "stop_reason": null,
                        "stop_sequence": null,
                        "usage": {"input_tokens": self.input_tokens, "output_tokens": 1},
                    },
                }),
            ),
            crate::sse_event(
                Some("content_block_start"),
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            crate::sse_event(Some("ping"), &json!({"type": "ping"})),
        ]
    }

    fn delta(&self, text: &str) -> Bytes {
        crate::sse_event(
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        )
    }

    fn error_event(&self) -> Bytes {
        crate::sse_event(
            Some("error"),
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        )
    }

    fn epilogue(&self) -> Vec<Bytes> {
        vec![
            crate::sse_event(
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": 0}),
            ),
            crate::sse_event(
                Some("message_delta"),
                &json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
                    "usage": {"output_tokens": self.output_tokens},
                }),
            ),
            crate::sse_event(Some("message_stop"), &json!({"type": "message_stop"})),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let ok = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi there"}], "system": "be nice"});
        let r = validate(&ok).unwrap();
        assert_eq!(r.last_user_text, "hi there");
        assert_eq!(r.input_tokens, 4);
        assert!(!r.stream);
        let bad = [
            json!({"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}),
            json!({"model": "", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            json!({"model": "m", "max_tokens": 10, "messages": []}),
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "assistant", "content": "x"}]}),
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]}),
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": " "}]}),
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}),
            json!({"model": "m", "max_tokens": 10, "temperature": 1.5, "messages": [{"role": "user", "content": "x"}]}),
            json!([1]),
        ];
        for body in bad {
            assert!(validate(&body).is_err(), "{body}");
        }
    }

    #[test]
    fn error_types() {
        assert_eq!(error_type(401), "authentication_error");
        assert_eq!(error_type(429), "rate_limit_error");
        assert_eq!(error_type(529), "overloaded_error");
        assert_eq!(error_type(503), "api_error");
        assert_eq!(error_type(418), "invalid_request_error");
    }
}
