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

mod gateway;
mod records;
mod rest;
mod standin;
mod state;
mod wire;

pub use records::{
    APPLICATION_ID, AUTHENTICATION_FAILED, BOT_DISCRIMINATOR, BOT_ID, BOT_USERNAME, Call, Failure,
    INTENT_DIRECT_MESSAGES, INTENT_GUILD_MESSAGES, INTENT_MESSAGE_CONTENT, IS_COMPONENTS_V2,
    IS_VOICE_MESSAGE, Incoming, MESSAGE_LIMIT, SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS,
    SentMessage, dm_channel_id,
};
pub use standin::{DiscordStandIn, spawn, spawn_with};
