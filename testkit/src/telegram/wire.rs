//! Telegram's JSON shapes as the stand-in writes them: chats, users and messages.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::records::{BOT_ID, BOT_USERNAME};

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(super) fn chat_json(chat_id: i64) -> Value {
    if chat_id < 0 {
        json!({ "id": chat_id, "type": "supergroup", "title": format!("Group {chat_id}") })
    } else {
        json!({ "id": chat_id, "type": "private", "first_name": format!("User{chat_id}"), "username": format!("user{chat_id}") })
    }
}

pub(super) fn user_json(id: i64) -> Value {
    json!({ "id": id, "is_bot": false, "first_name": format!("User{id}"), "username": format!("user{id}") })
}

pub(super) fn bot_user_json() -> Value {
    json!({ "id": BOT_ID, "is_bot": true, "first_name": "Clanker", "username": BOT_USERNAME })
}

pub(super) fn bot_message_json(chat_id: i64, message_id: i64, text: &str) -> Value {
    json!({
        "message_id": message_id,
        "date": unix_now(),
        "chat": chat_json(chat_id),
        "from": bot_user_json(),
        "text": text,
    })
}
