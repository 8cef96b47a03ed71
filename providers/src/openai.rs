//! OpenAI Chat Completions client (streaming), also for OpenAI-compatible servers (vLLM,
//! llama.cpp, Ollama, ...).
//!
//! Posts to `{base}/chat/completions` with `stream_options.include_usage` and decodes the
//! `data: {chat.completion.chunk}` lines up to `data: [DONE]`.

use open_clanker_core::ExposeSecret as _;
use std::collections::VecDeque;

use eventsource_stream::Event;
use open_clanker_core::{ChatMessage, ProviderKind, Role, Usage};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::error::{self, ProviderError, Redactor};
use crate::http::{self, Transport};
use crate::sse::{self, Decoder};
use crate::{CompletionRequest, EventStream, Provider, ProviderConfig, StreamEvent};

const KIND: ProviderKind = ProviderKind::OpenAi;

/// A streaming client for the OpenAI Chat Completions API and compatible servers.
pub struct OpenAiProvider {
    transport: Transport,
    models_url: reqwest::Url,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider").finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// A client for `config`, which must be of kind [`ProviderKind::OpenAi`].
    ///
    /// The base URL includes the version path (as `OPENAI_BASE_URL`, e.g.
    /// `https://api.openai.com/v1`). An empty API key sends no `Authorization` header (some local
    /// servers need none).
    pub fn new(config: ProviderConfig) -> Result<Self, ProviderError> {
        if config.kind != KIND {
            return Err(ProviderError::Config(format!(
                "OpenAiProvider needs an openai configuration, got {}",
                config.kind
            )));
        }
        let redactor = Redactor::for_config(&config);
        let url = http::endpoint(KIND, &config.base_url, "/chat/completions", &redactor)?;
        let models_url = http::endpoint(KIND, &config.base_url, "/models", &redactor)?;
        let mut headers = HeaderMap::new();
        let key = config.api_key.expose_secret().trim();
        if !key.is_empty() {
            let bearer = format!("Bearer {key}");
            headers.insert(
                AUTHORIZATION,
                http::secret_header(&bearer, "OpenAI API key")?,
            );
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("accept", HeaderValue::from_static("text/event-stream"));
        Ok(Self {
            transport: Transport::new(&config, url, headers)?,
            models_url,
        })
    }

    /// Checks that the API answers and accepts the key, without spending tokens: one
    /// `GET {base}/models`, not retried.
    pub async fn check_key(&self) -> Result<(), ProviderError> {
        self.transport.probe(self.models_url.clone()).await
    }
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
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
            OpenAiDecoder::new(self.transport.redactor().clone()),
            KIND,
            self.transport.idle_timeout(),
            self.transport.redactor().clone(),
        ))
    }
}

/// The JSON body of a streamed Chat Completions request: one leading system message (the system
/// prompt and any `Role::System` messages), then the conversation with empty messages dropped and
/// consecutive messages of one role merged (some chat templates insist on alternation).
pub(crate) fn request_body(request: &CompletionRequest) -> Result<Value, ProviderError> {
    if request.model.trim().is_empty() {
        return Err(ProviderError::InvalidRequest {
            provider: KIND,
            message: "no model given".into(),
        });
    }
    let (system, messages) = crate::merge_messages(request.system.as_deref(), &request.messages);
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err(ProviderError::InvalidRequest {
            provider: KIND,
            message: "there is no user message with content to send".into(),
        });
    }
    let wire = |m: &ChatMessage| json!({"role": m.role.as_str(), "content": m.content});
    let mut all: Vec<Value> = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = system {
        all.push(json!({"role": "system", "content": system}));
    }
    all.extend(messages.iter().map(wire));
    let mut body = json!({
        "model": request.model,
        "messages": all,
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": request.max_tokens,
    });
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    Ok(body)
}

/// Decodes the Chat Completions chunk stream.
pub(crate) struct OpenAiDecoder {
    usage: Option<Usage>,
    stop_reason: Option<String>,
    redactor: Redactor,
}

impl OpenAiDecoder {
    pub(crate) fn new(redactor: Redactor) -> Self {
        Self {
            usage: None,
            stop_reason: None,
            redactor,
        }
    }

    fn finish(&mut self, out: &mut VecDeque<StreamEvent>) {
        if let Some(usage) = self.usage.take() {
            out.push_back(StreamEvent::Usage(usage));
        }
        out.push_back(StreamEvent::Done {
            stop_reason: self.stop_reason.take(),
        });
    }
}

impl Decoder for OpenAiDecoder {
    fn event(
        &mut self,
        event: &Event,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        if event.data.trim() == "[DONE]" {
            self.finish(out);
            return Ok(true);
        }
        let data = sse::json_data(KIND, "chunk", event, &self.redactor)?;
        if event.event == "error" || data.get("error").is_some_and(|e| !e.is_null()) {
            return Err(error::from_stream_error(KIND, &data, &self.redactor));
        }
        let choices = data
            .get("choices")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        // Only one answer is asked for: the choice with index 0 (or the first, if unnumbered).
        let choice = choices
            .iter()
            .find(|c| c.get("index").and_then(Value::as_u64) == Some(0))
            .or_else(|| choices.first());
        if let Some(choice) = choice {
            let delta = choice.get("delta");
            for field in ["content", "refusal"] {
                if let Some(text) = delta.and_then(|d| d.get(field)).and_then(Value::as_str)
                    && !text.is_empty()
                {
                    out.push_back(StreamEvent::TextDelta(text.to_string()));
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.stop_reason = Some(reason.to_string());
            }
        }
        if let Some(usage) = data.get("usage").filter(|u| u.is_object()) {
            let count = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Some(Usage {
                input_tokens: count("prompt_tokens"),
                output_tokens: count("completion_tokens"),
            });
        }
        Ok(false)
    }

    fn end(&mut self, out: &mut VecDeque<StreamEvent>) -> Result<(), ProviderError> {
        // Some compatible servers close after the finishing chunk without `[DONE]`: that is whole.
        if self.stop_reason.is_some() {
            self.finish(out);
            return Ok(());
        }
        Err(ProviderError::Stream {
            provider: KIND,
            message: "the stream ended before [DONE] or a finish_reason; the answer is incomplete"
                .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, text: &str) -> ChatMessage {
        ChatMessage::new(role, text)
    }

    #[test]
    fn body_has_system_first_and_usage_requested() {
        let req = CompletionRequest {
            model: "gpt-test".into(),
            system: Some("Be brief.".into()),
            messages: vec![
                msg(Role::User, "one"),
                msg(Role::System, "Answer in French."),
                msg(Role::User, "two"),
                msg(Role::Assistant, ""),
                msg(Role::Assistant, "reply"),
            ],
            max_tokens: 100,
            temperature: Some(0.25),
        };
        assert_eq!(
            request_body(&req).unwrap(),
            json!({
                "model": "gpt-test",
                "messages": [
                    {"role": "system", "content": "Be brief.\n\nAnswer in French."},
                    {"role": "user", "content": "one\n\ntwo"},
                    {"role": "assistant", "content": "reply"},
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": 100,
                "temperature": 0.25,
            })
        );
    }

    #[test]
    fn no_user_message_is_refused_locally() {
        let req = CompletionRequest {
            model: "gpt-test".into(),
            system: Some("sys".into()),
            messages: vec![msg(Role::User, "")],
            max_tokens: 100,
            temperature: None,
        };
        assert!(matches!(
            request_body(&req),
            Err(ProviderError::InvalidRequest { .. })
        ));
    }

    fn data(text: &str) -> Event {
        Event {
            event: "message".into(),
            data: text.into(),
            ..Default::default()
        }
    }

    fn run(
        decoder: &mut OpenAiDecoder,
        events: &[Event],
    ) -> (Vec<StreamEvent>, Result<bool, ProviderError>) {
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
    fn decodes_chunks_usage_and_done() {
        let mut d = OpenAiDecoder::new(Redactor::new("k"));
        let (out, last) = run(
            &mut d,
            &[
                data(
                    r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
                ),
                data(
                    r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}"#,
                ),
                data(
                    r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}],"usage":null}"#,
                ),
                data(
                    r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
                ),
                data(
                    r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
                ),
                data("[DONE]"),
            ],
        );
        assert!(matches!(last, Ok(true)));
        assert_eq!(
            out,
            vec![
                StreamEvent::TextDelta("Hel".into()),
                StreamEvent::TextDelta("lo".into()),
                StreamEvent::Usage(Usage {
                    input_tokens: 9,
                    output_tokens: 2
                }),
                StreamEvent::Done {
                    stop_reason: Some("stop".into())
                },
            ]
        );
    }

    #[test]
    fn no_usage_still_ends_cleanly() {
        let mut d = OpenAiDecoder::new(Redactor::new("k"));
        let (out, last) = run(
            &mut d,
            &[
                data(
                    r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"length"}]}"#,
                ),
                data("[DONE]"),
            ],
        );
        assert!(matches!(last, Ok(true)));
        assert_eq!(
            out,
            vec![
                StreamEvent::TextDelta("x".into()),
                StreamEvent::Done {
                    stop_reason: Some("length".into())
                },
            ]
        );
    }

    #[test]
    fn end_without_done() {
        // With a finish_reason: a whole answer.
        let mut d = OpenAiDecoder::new(Redactor::new("k"));
        let _ = run(
            &mut d,
            &[data(
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            )],
        );
        let mut out = VecDeque::new();
        assert!(d.end(&mut out).is_ok());
        assert_eq!(
            out.pop_back(),
            Some(StreamEvent::Done {
                stop_reason: Some("stop".into())
            })
        );
        // Without: broken.
        let mut d = OpenAiDecoder::new(Redactor::new("k"));
        let _ = run(
            &mut d,
            &[data(r#"{"choices":[{"index":0,"delta":{"content":"a"}}]}"#)],
        );
        assert!(matches!(
            d.end(&mut VecDeque::new()),
            Err(ProviderError::Stream { .. })
        ));
    }

    #[test]
    fn error_chunks_fail() {
        let mut d = OpenAiDecoder::new(Redactor::new("k"));
        let (_, last) = run(
            &mut d,
            &[data(
                r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#,
            )],
        );
        let e = last.unwrap_err();
        assert!(matches!(e, ProviderError::Stream { .. }), "{e:?}");
        assert!(e.to_string().contains("The server had an error"), "{e}");
        let mut d = OpenAiDecoder::new(Redactor::new("k"));
        let (_, last) = run(&mut d, &[data("{oops")]);
        assert!(matches!(last, Err(ProviderError::Stream { .. })));
    }
}
