//! Session keys: which stored session a chat message belongs to.
//!
//! A direct message chat is one conversation: `<channel>:<chat id>`. In a group every sender has
//! their own: `<channel>:<chat id>:<sender id>`, so one person's context never leaks into another's.

/// The session key of a message.
pub fn session_key(channel: &str, chat_id: &str, sender_id: &str, is_group: bool) -> String {
    if is_group {
        format!("{channel}:{chat_id}:{sender_id}")
    } else {
        format!("{channel}:{chat_id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dms_share_the_chat_and_groups_split_by_sender() {
        assert_eq!(session_key("telegram", "42", "42", false), "telegram:42");
        assert_eq!(
            session_key("telegram", "-100", "42", true),
            "telegram:-100:42"
        );
        assert_ne!(
            session_key("discord", "9", "1", true),
            session_key("discord", "9", "2", true)
        );
    }
}
