//! Anthropic Messages API client (streaming).
//!
//! Posts to `{base}/v1/messages` and decodes the documented event stream: `message_start`,
//! `content_block_start`, `content_block_delta`, `content_block_stop`, `message_delta`,
//! `message_stop`, `ping` and `error`. Only text is taken; tool-use blocks, thinking and other
//! kinds of deltas are skipped, and unknown event types are ignored.

use open_clanker_core::ExposeSecret as _;
use std::collections::VecDeque;

use eventsource_stream::Event;
use open_clanker_core::{ChatMessage, ProviderKind, Role, Usage};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::error::{self, ProviderError, Redactor};
use crate::http::{self, Transport};
use crate::sse::{self, Decoder};
use crate::{CompletionRequest, EventStream, Provider, ProviderConfig, StreamEvent};

/// The API version sent in `anthropic-version`.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

const KIND: ProviderKind = ProviderKind::Anthropic;

/// A streaming client for the Anthropic Messages API.
pub struct AnthropicProvider {
    transport: Transport,
    models_url: reqwest::Url,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider").finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    /// A client for `config`, which must be of kind [`ProviderKind::Anthropic`].
    ///
    /// The base URL is the root of the API (as `ANTHROPIC_BASE_URL`); a trailing `/v1` is
    /// tolerated.
    pub fn new(config: ProviderConfig) -> Result<Self, ProviderError> {
        if config.kind != KIND {
            return Err(ProviderError::Config(format!(
                "AnthropicProvider needs an anthropic configuration, got {}",
                config.kind
            )));
        }
        let redactor = Redactor::for_config(&config);
        let base = config.base_url.trim().trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let url = http::endpoint(KIND, base, "/v1/messages", &redactor)?;
        let models_url = http::endpoint(KIND, base, "/v1/models?limit=1", &redactor)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-api-key",
            http::secret_header(config.api_key.expose_secret().trim(), "Anthropic API key")?,
        );
        headers.insert(
            "anthropic-version",
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("accept", HeaderValue::from_static("text/event-stream"));
        Ok(Self {
            transport: Transport::new(&config, url, headers)?,
            models_url,
        })
    }

    /// Checks that the API answers and accepts the key, without spending tokens: one
    /// `GET {base}/v1/models?limit=1`, not retried.
    pub async fn check_key(&self) -> Result<(), ProviderError> {
        self.transport.probe(self.models_url.clone()).await
    }

    /// The requests in flight on each of its HTTP clients, oldest first.
    #[cfg(test)]
    pub(crate) fn client_loads(&self) -> Vec<usize> {
        self.transport.client_loads()
    }
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    async fn stream(&self, request: CompletionRequest) -> Result<EventStream, ProviderError> {
        let body = request_body(&request)?;
        let body = serde_json::to_vec(&body).map_err(|e| ProviderError::InvalidRequest {
            provider: KIND,
            message: format!("could not encode the request: {e}"),
        })?;
        let (response, lease) = self.transport.post(body.into()).await?;
        Ok(sse::decode(
            response,
            lease,
            AnthropicDecoder::new(self.transport.redactor().clone()),
            KIND,
            self.transport.idle_timeout(),
            self.transport.redactor().clone(),
        ))
    }
}

/// The system prompt and messages in the shape Anthropic accepts: `Role::System` messages join
/// the system prompt, empty messages are dropped, consecutive messages of one role are merged with
/// a blank line, and the conversation starts with a user message (leading assistant messages are
/// dropped).
pub(crate) fn shape_messages(
    system: Option<&str>,
    messages: &[ChatMessage],
) -> (Option<String>, Vec<ChatMessage>) {
    let (system, mut messages) = crate::merge_messages(system, messages);
    let first_user = messages
        .iter()
        .position(|m| m.role == Role::User)
        .unwrap_or(messages.len());
    if first_user > 0 {
        tracing::debug!(
            dropped = first_user,
            "dropping assistant messages before the first user message"
        );
        messages.drain(..first_user);
    }
    (system, messages)
}

/// The JSON body of a streamed Messages request.
pub(crate) fn request_body(request: &CompletionRequest) -> Result<Value, ProviderError> {
    if request.model.trim().is_empty() {
        return Err(ProviderError::InvalidRequest {
            provider: KIND,
            message: "no model given".into(),
        });
    }
    let (system, messages) = shape_messages(request.system.as_deref(), &request.messages);
    if messages.is_empty() {
        return Err(ProviderError::InvalidRequest {
            provider: KIND,
            message: "there is no user message with content to send".into(),
        });
    }
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
        .collect();
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "stream": true,
    });
    if let Some(system) = system {
        body["system"] = Value::String(system);
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    Ok(body)
}

/// Decodes the Anthropic event stream.
pub(crate) struct AnthropicDecoder {
    usage: Usage,
    stop_reason: Option<String>,
    redactor: Redactor,
}

impl AnthropicDecoder {
    pub(crate) fn new(redactor: Redactor) -> Self {
        Self {
            usage: Usage::default(),
            stop_reason: None,
            redactor,
        }
    }

    fn read_usage(&mut self, usage: &Value) {
        let count = |name: &str| usage.get(name).and_then(Value::as_u64);
        // Cached prompt tokens are counted apart by Anthropic; they are input all the same.
        let input = [
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ]
        .iter()
        .filter_map(|name| count(name))
        .reduce(|a, b| a + b);
        if let Some(input) = input
            && input > 0
        {
            self.usage.input_tokens = input;
        }
        if let Some(output) = count("output_tokens") {
            self.usage.output_tokens = output;
        }
    }
}

impl Decoder for AnthropicDecoder {
    fn event(
        &mut self,
        event: &Event,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        // The SSE event name says the type; without one, fall back to the payload's `type`.
        let parsed: Option<Value> = serde_json::from_str(&event.data).ok();
        let name = if event.event.is_empty() || event.event == "message" {
            match parsed
                .as_ref()
                .and_then(|v| v.get("type"))
                .and_then(Value::as_str)
            {
                Some(t) => t.to_string(),
                None => return Ok(false),
            }
        } else {
            event.event.clone()
        };
        let known = matches!(
            name.as_str(),
            "message_start"
                | "content_block_start"
                | "content_block_delta"
                | "message_delta"
                | "message_stop"
                | "error"
        );
        if !known {
            // ping, content_block_stop and event types added later.
            return Ok(false);
        }
        let data = match parsed {
            Some(data) => data,
            None => sse::json_data(KIND, &name, event, &self.redactor)?,
        };
        match name.as_str() {
            "message_start" => {
                if let Some(usage) = data.pointer("/message/usage") {
                    self.read_usage(usage);
                }
            }
            "content_block_start" => {
                let block = data.get("content_block");
                let is_text =
                    block.and_then(|b| b.get("type")).and_then(Value::as_str) == Some("text");
                if is_text
                    && let Some(text) = block.and_then(|b| b.get("text")).and_then(Value::as_str)
                    && !text.is_empty()
                {
                    out.push_back(StreamEvent::TextDelta(text.to_string()));
                }
            }
            "content_block_delta" => {
                let delta = data.get("delta");
                let is_text =
                    delta.and_then(|d| d.get("type")).and_then(Value::as_str) == Some("text_delta");
                if is_text
                    && let Some(text) = delta.and_then(|d| d.get("text")).and_then(Value::as_str)
                    && !text.is_empty()
                {
                    out.push_back(StreamEvent::TextDelta(text.to_string()));
                }
            }
            "message_delta" => {
                if let Some(reason) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_string());
                }
                if let Some(usage) = data.get("usage") {
                    self.read_usage(usage);
                }
            }
            "message_stop" => {
                out.push_back(StreamEvent::Usage(self.usage));
                out.push_back(StreamEvent::Done {
                    stop_reason: self.stop_reason.take(),
                });
                return Ok(true);
            }
            "error" => return Err(error::from_stream_error(KIND, &data, &self.redactor)),
            _ => {}
        }
        Ok(false)
    }

    fn end(&mut self, _out: &mut VecDeque<StreamEvent>) -> Result<(), ProviderError> {
        Err(ProviderError::Stream {
            provider: KIND,
            message: "the stream ended before message_stop; the answer is incomplete".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, text: &str) -> ChatMessage {
        ChatMessage::new(role, text)
    }

    fn request(messages: Vec<ChatMessage>) -> CompletionRequest {
        CompletionRequest {
            model: "claude-test".into(),
            system: Some("Be brief.".into()),
            messages,
            max_tokens: 256,
            temperature: None,
        }
    }

    #[test]
    fn shaping_moves_system_merges_and_drops() {
        let (system, messages) = shape_messages(
            Some("Be brief."),
            &[
                msg(Role::Assistant, "Hello, how can I help?"),
                msg(Role::System, "Answer in French."),
                msg(Role::User, "one"),
                msg(Role::User, "  "),
                msg(Role::User, "two"),
                msg(Role::Assistant, ""),
                msg(Role::Assistant, "reply"),
                msg(Role::Assistant, "more"),
                msg(Role::User, "three"),
            ],
        );
        assert_eq!(system.as_deref(), Some("Be brief.\n\nAnswer in French."));
        assert_eq!(
            messages,
            vec![
                msg(Role::User, "one\n\ntwo"),
                msg(Role::Assistant, "reply\n\nmore"),
                msg(Role::User, "three"),
            ]
        );
    }

    #[test]
    fn body_has_the_documented_fields() {
        let mut req = request(vec![msg(Role::User, "hi")]);
        req.temperature = Some(0.5);
        let body = request_body(&req).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "claude-test",
                "max_tokens": 256,
                "system": "Be brief.",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": true,
                "temperature": 0.5,
            })
        );
        let mut req = request(vec![msg(Role::User, "hi")]);
        req.system = None;
        let body = request_body(&req).unwrap();
        assert!(body.get("system").is_none() && body.get("temperature").is_none());
    }

    #[test]
    fn empty_conversations_are_refused_locally() {
        let e = request_body(&request(vec![
            msg(Role::Assistant, "hi"),
            msg(Role::User, " "),
        ]))
        .unwrap_err();
        assert!(matches!(e, ProviderError::InvalidRequest { .. }), "{e:?}");
        let mut req = request(vec![msg(Role::User, "hi")]);
        req.model = " ".into();
        assert!(request_body(&req).is_err());
    }

    fn ev(name: &str, data: &str) -> Event {
        Event {
            event: name.into(),
            data: data.into(),
            ..Default::default()
        }
    }

    fn run(events: &[Event]) -> (Vec<StreamEvent>, Result<bool, ProviderError>) {
        let mut decoder = AnthropicDecoder::new(Redactor::new("k"));
        let mut out = VecDeque::new();
        let mut last = Ok(false);
        for event in events {
            last = decoder.event(event, &mut out);
            if !matches!(last, Ok(false)) {
                break;
            }
        }
        (out.into_iter().collect(), last)
    }

    #[test]
    fn decodes_text_usage_and_stop_reason() {
        let (out, last) = run(&[
            ev(
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"m","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_read_input_tokens":5,"output_tokens":1}}}"#,
            ),
            ev(
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            ev("ping", r#"{"type": "ping"}"#),
            ev(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
            ),
            ev(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}"#,
            ),
            ev(
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            ev("some_future_event", "not even json"),
            ev(
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            ),
            ev("message_stop", r#"{"type":"message_stop"}"#),
        ]);
        assert!(matches!(last, Ok(true)));
        assert_eq!(
            out,
            vec![
                StreamEvent::TextDelta("Hello".into()),
                StreamEvent::TextDelta("!".into()),
                StreamEvent::Usage(Usage {
                    input_tokens: 30,
                    output_tokens: 15
                }),
                StreamEvent::Done {
                    stop_reason: Some("end_turn".into())
                },
            ]
        );
    }

    #[test]
    fn skips_tool_use_and_thinking() {
        let (out, last) = run(&[
            ev(
                "message_start",
                r#"{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}"#,
            ),
            ev(
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            ),
            ev(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
            ),
            ev(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"x"}}"#,
            ),
            ev(
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"get_weather","input":{}}}"#,
            ),
            ev(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"loc"}}"#,
            ),
            ev(
                "content_block_stop",
                r#"{"type":"content_block_stop","index":1}"#,
            ),
            ev(
                "content_block_start",
                r#"{"type":"content_block_start","index":2,"content_block":{"type":"text","text":"Sunny"}}"#,
            ),
            ev(
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
            ),
            ev("message_stop", r#"{"type":"message_stop"}"#),
        ]);
        assert!(matches!(last, Ok(true)));
        assert_eq!(out[0], StreamEvent::TextDelta("Sunny".into()));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn events_without_a_name_use_the_payload_type() {
        let (out, _) = run(&[ev(
            "message",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#,
        )]);
        assert_eq!(out, vec![StreamEvent::TextDelta("x".into())]);
    }

    #[test]
    fn error_events_and_malformed_data_fail() {
        let (_, last) = run(&[ev(
            "error",
            r#"{"type":"error","error":{"type":"api_error","message":"Internal"}}"#,
        )]);
        assert!(
            matches!(last, Err(ProviderError::Stream { .. })),
            "{last:?}"
        );
        let (_, last) = run(&[ev("content_block_delta", "{not json")]);
        assert!(
            matches!(last, Err(ProviderError::Stream { .. })),
            "{last:?}"
        );
    }

    #[test]
    fn ending_early_is_an_error() {
        let mut decoder = AnthropicDecoder::new(Redactor::new("k"));
        assert!(matches!(
            decoder.end(&mut VecDeque::new()),
            Err(ProviderError::Stream { .. })
        ));
    }
}
