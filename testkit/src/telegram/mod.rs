//! A stand-in Telegram Bot API server for tests, speaking the documented JSON
//! (`{"ok":true,"result":...}` / `{"ok":false,"error_code":...,"description":...}`).
//!
//! Point a bot at [`TelegramStandIn::api_url`] (teloxide: `Bot::set_api_url`). It serves
//! `/bot<token>/<method>` for `getMe`, `getUpdates` (long polling: `offset` confirms, `timeout`
//! holds the request until an update is queued), `sendMessage`, `editMessageText`,
//! `sendChatAction`, `deleteWebhook`, `setWebhook`, `setMyCommands` and `deleteMyCommands`, with
//! JSON or multipart bodies. A wrong token gets `401 Unauthorized`.
//!
//! Like Telegram it checks HTML (`parse_mode: "HTML"`): only Telegram's tags, properly nested,
//! and `&`, `<`, `>` escaped, else `400 Bad Request: can't parse entities: ...`; a text longer than
//! 4096 characters after entity parsing gets `400 Bad Request: message is too long`; an edit that
//! changes nothing gets `400 Bad Request: message is not modified ...`. Each send and edit records
//! whether it asked for no link preview (`link_preview_options.is_disabled`, or the older
//! `disable_web_page_preview`): Telegram previews the first link of a text unless told not to.
//!
//! Tests queue incoming messages ([`TelegramStandIn::push_text`]), inject failures
//! ([`TelegramStandIn::fail_next`]: a 429 with `retry_after`, a 400, any status), read every call
//! ([`TelegramStandIn::calls`]) and the chat as a person would see it
//! ([`TelegramStandIn::messages`]).

mod api;
mod html;
mod records;
mod standin;
mod state;
mod wire;

pub use html::parse_html;
pub use records::{BOT_ID, BOT_USERNAME, Call, Failure, MESSAGE_LIMIT, SentMessage};
pub use standin::{TelegramStandIn, spawn};
