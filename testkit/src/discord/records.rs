//! What the Discord stand-in's users see: the bot's identity, Discord's intent and message flag
//! bits, and the records of calls and messages it keeps for tests.

use std::time::Duration;

use serde_json::Value;

/// The bot's user id.
pub const BOT_ID: u64 = 1_180_000_000_000_000_001;
/// The bot's user name.
pub const BOT_USERNAME: &str = "Clanker Test";
/// The bot's discriminator (bots still have one).
pub const BOT_DISCRIMINATOR: &str = "4242";
/// The application id (READY's `application.id`).
pub const APPLICATION_ID: u64 = 1_180_000_000_000_000_002;
/// Discord's longest message content.
pub const MESSAGE_LIMIT: usize = 2000;
/// Close code for a rejected token.
pub const AUTHENTICATION_FAILED: u16 = 4004;

/// GUILD_MESSAGES (1 << 9).
pub const INTENT_GUILD_MESSAGES: u64 = 1 << 9;
/// DIRECT_MESSAGES (1 << 12).
pub const INTENT_DIRECT_MESSAGES: u64 = 1 << 12;
/// MESSAGE_CONTENT (1 << 15), privileged.
pub const INTENT_MESSAGE_CONTENT: u64 = 1 << 15;
/// Message flag: do not include any embeds (link previews) when serializing this message.
pub const SUPPRESS_EMBEDS: u64 = 1 << 2;
/// Message flag: do not trigger push and desktop notifications.
pub const SUPPRESS_NOTIFICATIONS: u64 = 1 << 12;
/// Message flag: a voice message.
pub const IS_VOICE_MESSAGE: u64 = 1 << 13;
/// Message flag: the message's layout is made of components.
pub const IS_COMPONENTS_V2: u64 = 1 << 15;

/// The DM channel id the stand-in uses for direct messages with `user`.
pub fn dm_channel_id(user: u64) -> u64 {
    user + 900_000
}

/// A failure to answer the next call of a route with.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// `429 Too Many Requests` with `retry_after` (seconds) in the body and the headers.
    RetryAfter(f64),
    /// Any status with Discord's error JSON (`code`, `message`).
    Status(u16, u64, String),
}

/// One REST call as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The route's name in Discord's documentation: `getGateway`, `getGatewayBot`,
    /// `getCurrentUser`, `createMessage`, `editMessage`, `triggerTypingIndicator`, or `unknown`.
    pub route: String,
    /// `GET /api/v10/...` as received.
    pub request: String,
    /// The JSON body (`null` when none).
    pub body: Value,
    /// When it arrived, from the stand-in's start.
    pub at: Duration,
    /// The HTTP status answered.
    pub status: u16,
}

/// A message the bot posted, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The channel it is in.
    pub channel_id: u64,
    /// Its id.
    pub message_id: u64,
    /// The content as it is now.
    pub content: String,
    /// The message it replies to (`message_reference.message_id`).
    pub reply_to: Option<u64>,
    /// The `allowed_mentions` it was sent with.
    pub allowed_mentions: Option<String>,
    /// Its flags as they are now ([`SUPPRESS_EMBEDS`]: Discord shows no link previews).
    pub flags: u64,
    /// Successful edits.
    pub edits: usize,
}

/// A message from a test "user", delivered as MESSAGE_CREATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Where: a DM channel ([`dm_channel_id`]) or a guild channel.
    pub channel_id: u64,
    /// The guild, for guild channels.
    pub guild_id: Option<u64>,
    /// The author's user id.
    pub author: u64,
    /// The author is a bot.
    pub author_is_bot: bool,
    /// The content.
    pub text: String,
    /// The message (a user's or the bot's) it replies to.
    pub reply_to: Option<u64>,
}
