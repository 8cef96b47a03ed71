//! Discord's JSON shapes as the stand-in writes them: users, messages, mentions and timestamps.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::records::{BOT_DISCRIMINATOR, BOT_ID, BOT_USERNAME};

pub(super) fn iso_now() -> String {
    // RFC 3339 from the Unix time, without a date library.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub(super) fn user_json(id: u64) -> Value {
    json!({
        "id": id.to_string(),
        "username": format!("user{id}"),
        "global_name": format!("User {id}"),
        "discriminator": "0",
        "avatar": null,
        "public_flags": 0,
    })
}

pub(super) fn bot_user_json() -> Value {
    json!({
        "id": BOT_ID.to_string(),
        "username": BOT_USERNAME,
        "global_name": null,
        "discriminator": BOT_DISCRIMINATOR,
        "avatar": null,
        "bot": true,
        "verified": true,
        "mfa_enabled": false,
        "flags": 0,
        "public_flags": 0,
    })
}

/// The user ids mentioned as `<@ID>` or `<@!ID>` in `text`.
pub(super) fn mentions_in(text: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for part in text.split("<@").skip(1) {
        let part = part.strip_prefix('!').unwrap_or(part);
        if let Some((id, _)) = part.split_once('>')
            && let Ok(id) = id.parse::<u64>()
            && !out.contains(&id)
        {
            out.push(id);
        }
    }
    out
}

pub(super) fn message_json(
    id: u64,
    channel: u64,
    guild: Option<u64>,
    author: Value,
    content: &str,
    mentions: Vec<u64>,
) -> Value {
    let mentions: Vec<Value> = mentions
        .into_iter()
        .map(|m| {
            if m == BOT_ID {
                bot_user_json()
            } else {
                user_json(m)
            }
        })
        .collect();
    let mut message = json!({
        "id": id.to_string(),
        "channel_id": channel.to_string(),
        "author": author,
        "content": content,
        "timestamp": iso_now(),
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": mentions,
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": false,
        "type": 0,
        "flags": 0,
        "components": [],
    });
    if let Some(guild) = guild {
        message["guild_id"] = json!(guild.to_string());
    }
    message
}

pub(super) fn bot_message_json(id: u64, channel: u64, guild: Option<u64>, content: &str) -> Value {
    message_json(id, channel, guild, bot_user_json(), content, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_and_dates_read_like_discord() {
        assert_eq!(mentions_in("hi <@12> and <@!34> <@12>"), [12, 34]);
        assert!(mentions_in("<@nope> <@").is_empty());
        let now = iso_now();
        assert_eq!(now.len(), "2024-01-01T00:00:00.000000+00:00".len(), "{now}");
        assert!(now.starts_with("20"), "{now}");
    }
}
