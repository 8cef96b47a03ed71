//! Discord's REST calls the channel makes (who am I, post, edit, typing) and the [`ReplySink`] over
//! them.
//!
//! serenity builds each request (route, `Authorization`, user agent, the `api_url` in place of
//! `https://discord.com`); the status is read here, so that a 429 reaches the relay as
//! [`SendError::RetryAfter`] with Discord's `retry_after` and is waited out there. (serenity's own
//! ratelimiter cannot be used with another `api_url`: it ignores the proxy setting.)

use std::sync::Arc;
use std::time::Duration;

use open_clanker_core::{ExposeSecret, SecretString};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use serenity::http::{Http, LightMethod, Request, Route};
use serenity::model::channel::{Message, MessageFlags};
use serenity::model::id::{ChannelId, MessageId};
use serenity::model::user::CurrentUser;

use crate::sink::{ReplySink, SendError, redact_token};
use crate::split::DISCORD_LIMIT;

/// How a REST call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// 429: try again after this long.
    #[error("rate limited by Discord; retry after {0:?}")]
    RateLimited(Duration),
    /// 401: the token is wrong.
    #[error("Discord rejected the bot token (401 Unauthorized)")]
    Unauthorized,
    /// Another refusal (4xx) with Discord's message.
    #[error("Discord answered {status}: {message}")]
    Refused { status: u16, message: String },
    /// A server error (5xx).
    #[error("Discord answered {status}: {message}")]
    Server { status: u16, message: String },
    /// The request did not get an answer.
    #[error("cannot reach Discord: {0}")]
    Network(String),
    /// The answer was not what Discord documents.
    #[error("unexpected answer from Discord: {0}")]
    Decode(String),
}

impl RestError {
    /// The relay's view of the failure.
    pub fn send_error(&self) -> SendError {
        match self {
            RestError::RateLimited(wait) => SendError::RetryAfter(*wait),
            RestError::Network(_) | RestError::Server { .. } => {
                SendError::Transient(self.to_string())
            }
            RestError::Unauthorized | RestError::Refused { .. } | RestError::Decode(_) => {
                SendError::Fatal(self.to_string())
            }
        }
    }
}

/// How long a 429 asks to wait: the body's `retry_after` (seconds, fractional), else the
/// `Retry-After` header, else one second.
fn retry_after(headers: &reqwest::header::HeaderMap, body: &str) -> Duration {
    let from_body = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("retry_after").and_then(Value::as_f64));
    let from_header = || {
        headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    from_body
        .or_else(from_header)
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
        .unwrap_or(Duration::from_secs(1))
}

/// serenity's [`Http`] sending to `api_url` in place of `https://discord.com` (its `proxy`, which
/// only works with serenity's ratelimiter disabled: the ratelimiter builds its requests without it).
fn http(token: &SecretString, api_url: &str, client: &reqwest::Client) -> Http {
    serenity::http::HttpBuilder::new(token.expose_secret())
        .client(client.clone())
        .proxy(api_url)
        .ratelimiter_disabled(true)
        .build()
}

/// Discord's REST API, through serenity's request building. (No `Debug`: nothing in it is
/// worth printing, and its `api_url` may carry a password.)
pub struct Rest {
    http: Http,
    client: reqwest::Client,
    token: SecretString,
    api_url: String,
}

impl Rest {
    /// A client for `api_url` (`https://discord.com`, or a stand-in) with `token`.
    pub fn new(token: &SecretString, api_url: &str, client: reqwest::Client) -> Self {
        let api_url = api_url.trim_end_matches('/').to_owned();
        Self {
            http: http(token, &api_url, &client),
            client,
            token: token.clone(),
            api_url,
        }
    }

    /// A serenity [`Http`] for the gateway client (which takes one of its own): its `GET /gateway`
    /// goes to the same `api_url`.
    pub fn gateway_http(&self) -> Http {
        http(&self.token, &self.api_url, &self.client)
    }

    fn redact(&self, text: &str) -> String {
        redact_token(text, &self.token)
    }

    /// Performs a call; the body of a successful answer.
    async fn call(
        &self,
        route: Route<'_>,
        method: LightMethod,
        body: Option<&Value>,
    ) -> Result<String, RestError> {
        let body = body.map(|b| b.to_string().into_bytes());
        let request = Request::new(route, method)
            .body(body)
            .build(&self.client, self.http.token(), self.http.proxy.as_deref())
            .map_err(|e| RestError::Decode(self.redact(&e.to_string())))?;
        let response = request
            .send()
            .await
            .map_err(|e| RestError::Network(self.redact(&e.without_url().to_string())))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|e| RestError::Network(self.redact(&e.without_url().to_string())))?;
        if status.is_success() {
            return Ok(text);
        }
        let message = || {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| text.chars().take(200).collect());
            self.redact(&message)
        };
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => RestError::RateLimited(retry_after(&headers, &text)),
            StatusCode::UNAUTHORIZED => RestError::Unauthorized,
            s if s.is_server_error() => RestError::Server {
                status: s.as_u16(),
                message: message(),
            },
            s => RestError::Refused {
                status: s.as_u16(),
                message: message(),
            },
        })
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        route: Route<'_>,
        method: LightMethod,
        body: Option<&Value>,
    ) -> Result<T, RestError> {
        let text = self.call(route, method, body).await?;
        serde_json::from_str(&text).map_err(|e| RestError::Decode(e.to_string()))
    }

    /// `GET /users/@me`: the bot itself.
    pub async fn current_user(&self) -> Result<CurrentUser, RestError> {
        self.call_json(Route::UserMe, LightMethod::Get, None).await
    }

    /// `POST /channels/{id}/messages` with `flags` (e.g. [`MessageFlags::SUPPRESS_EMBEDS`]).
    pub async fn create_message(
        &self,
        channel_id: ChannelId,
        content: &str,
        reply_to: Option<MessageId>,
        flags: MessageFlags,
    ) -> Result<Message, RestError> {
        let mut body = json!({
            "content": content,
            // Whatever the model writes, nobody is pinged (no @everyone, no role or user pings).
            "allowed_mentions": { "parse": [] },
            "flags": flags.bits(),
        });
        if let Some(id) = reply_to {
            body["message_reference"] = json!({
                "message_id": id.to_string(),
                "fail_if_not_exists": false,
            });
        }
        self.call_json(
            Route::ChannelMessages { channel_id },
            LightMethod::Post,
            Some(&body),
        )
        .await
    }

    /// `PATCH /channels/{id}/messages/{id}`. An edit replaces the message's flags (Discord: "include
    /// all previously set flags"), so they are sent again.
    pub async fn edit_message(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        content: &str,
        flags: MessageFlags,
    ) -> Result<(), RestError> {
        let body = json!({
            "content": content,
            "allowed_mentions": { "parse": [] },
            "flags": flags.bits(),
        });
        self.call(
            Route::ChannelMessage {
                channel_id,
                message_id,
            },
            LightMethod::Patch,
            Some(&body),
        )
        .await
        .map(drop)
    }

    /// `POST /channels/{id}/typing`.
    pub async fn typing(&self, channel_id: ChannelId) -> Result<(), RestError> {
        self.call(Route::ChannelTyping { channel_id }, LightMethod::Post, None)
            .await
            .map(drop)
    }
}

/// Replies into one Discord channel. Discord renders Markdown itself: the text goes as it is.
pub struct DiscordSink {
    pub(crate) rest: Arc<Rest>,
    pub(crate) channel: ChannelId,
    /// In guild channels the answer replies to the message that asked.
    pub(crate) reply_to: Option<MessageId>,
    /// The flags of every message sent and edited: [`MessageFlags::SUPPRESS_EMBEDS`] unless link
    /// previews are allowed.
    pub(crate) flags: MessageFlags,
}

/// The flags of the bot's messages. Without SUPPRESS_EMBEDS Discord fetches every link in them to
/// build a preview: a link the model was talked into writing (with data in its query) would be
/// fetched without anyone clicking it.
pub fn message_flags(link_previews: bool) -> MessageFlags {
    if link_previews {
        MessageFlags::empty()
    } else {
        MessageFlags::SUPPRESS_EMBEDS
    }
}

#[async_trait::async_trait]
impl ReplySink for DiscordSink {
    type Handle = MessageId;

    fn max_len(&self) -> usize {
        DISCORD_LIMIT
    }

    async fn typing(&self) -> Result<(), SendError> {
        self.rest
            .typing(self.channel)
            .await
            .map_err(|e| e.send_error())
    }

    async fn send(&self, markdown: &str) -> Result<MessageId, SendError> {
        self.rest
            .create_message(self.channel, markdown, self.reply_to, self.flags)
            .await
            .map(|m| m.id)
            .map_err(|e| e.send_error())
    }

    async fn edit(&self, handle: &MessageId, markdown: &str) -> Result<(), SendError> {
        self.rest
            .edit_message(self.channel, *handle, markdown, self.flags)
            .await
            .map_err(|e| e.send_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_comes_from_the_body_then_the_header() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(
            retry_after(&headers, r#"{"retry_after": 1.5, "global": false}"#),
            Duration::from_millis(1500)
        );
        headers.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&headers, "oops"), Duration::from_secs(3));
        assert_eq!(
            retry_after(&reqwest::header::HeaderMap::new(), ""),
            Duration::from_secs(1)
        );
        assert_eq!(
            retry_after(&reqwest::header::HeaderMap::new(), r#"{"retry_after": -4}"#),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn embeds_are_suppressed_unless_previews_are_allowed() {
        // Discord's documented bit: SUPPRESS_EMBEDS = 1 << 2.
        assert_eq!(message_flags(false).bits(), 1 << 2);
        assert_eq!(message_flags(true).bits(), 0);
    }

    #[test]
    fn failures_map_to_what_the_relay_does() {
        assert_eq!(
            RestError::RateLimited(Duration::from_secs(2)).send_error(),
            SendError::RetryAfter(Duration::from_secs(2))
        );
        assert!(matches!(
            RestError::Network("reset".into()).send_error(),
            SendError::Transient(_)
        ));
        assert!(matches!(
            RestError::Server {
                status: 502,
                message: String::new()
            }
            .send_error(),
            SendError::Transient(_)
        ));
        assert!(matches!(
            RestError::Refused {
                status: 403,
                message: "Missing Access".into()
            }
            .send_error(),
            SendError::Fatal(_)
        ));
        assert!(matches!(
            RestError::Unauthorized.send_error(),
            SendError::Fatal(_)
        ));
    }
}
