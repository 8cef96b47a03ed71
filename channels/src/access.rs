//! Who may talk to the assistant: the per-channel DM and group policies, decided without I/O.
//!
//! [`AccessPolicy::decide`] settles what it can from the configuration alone; when the answer
//! depends on the stored allowlist it says [`Decision::LookUp`], and the caller asks its
//! [`open_clanker_core::AccessStore`] (see [`crate::pipeline`]).

use serde::{Deserialize, Serialize};

/// What happens to direct messages from senders who are not on any allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmPolicy {
    /// Unknown senders get a pairing code; the owner approves it from the CLI (the default).
    #[default]
    Pairing,
    /// Only senders on the allowlists (config `allow_from` or approved earlier) are answered.
    Allowlist,
    /// Everyone is answered. Must be chosen explicitly.
    Open,
    /// Direct messages are ignored.
    Disabled,
}

impl DmPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DmPolicy::Pairing => "pairing",
            DmPolicy::Allowlist => "allowlist",
            DmPolicy::Open => "open",
            DmPolicy::Disabled => "disabled",
        }
    }
}

/// Who is answered in groups (Telegram groups, Discord guild channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupPolicy {
    /// Only in the groups, or for the senders, listed in `group_allow_from` (the default).
    #[default]
    Allowlist,
    /// In every group the bot is in.
    Open,
    /// Never in groups.
    Disabled,
}

impl GroupPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupPolicy::Allowlist => "allowlist",
            GroupPolicy::Open => "open",
            GroupPolicy::Disabled => "disabled",
        }
    }
}

/// A channel's access rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    pub dm: DmPolicy,
    /// Sender ids always allowed in direct messages (the static allowlist).
    pub allow_from: Vec<String>,
    pub group: GroupPolicy,
    /// Group (chat, guild channel) ids, or sender ids, allowed in groups.
    pub group_allow_from: Vec<String>,
    /// In groups, answer only messages that mention the bot or reply to it.
    pub require_mention: bool,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        Self {
            dm: DmPolicy::default(),
            allow_from: Vec::new(),
            group: GroupPolicy::default(),
            group_allow_from: Vec::new(),
            require_mention: true,
        }
    }
}

/// The facts about one incoming message that access depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Who<'a> {
    pub chat_id: &'a str,
    pub sender_id: &'a str,
    /// A group or guild channel, as opposed to a direct message.
    pub is_group: bool,
    /// The message mentions the bot, replies to it, or is a command addressed to it.
    pub addressed: bool,
}

/// Why a message is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    DmDisabled,
    NotAllowed,
    GroupsDisabled,
    GroupNotAllowed,
    NotAddressed,
}

impl IgnoreReason {
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::DmDisabled => "direct messages are disabled",
            IgnoreReason::NotAllowed => "sender is not on the allowlist",
            IgnoreReason::GroupsDisabled => "groups are disabled",
            IgnoreReason::GroupNotAllowed => "group and sender are not on group_allow_from",
            IgnoreReason::NotAddressed => "the bot was neither mentioned nor replied to",
        }
    }
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run it.
    Allow,
    /// Drop it silently.
    Ignore(IgnoreReason),
    /// Allowed if the sender is on the stored allowlist; otherwise `unknown`.
    LookUp { unknown: Unknown },
}

/// What happens to a sender who is on no allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Reply with a pairing code.
    Pair,
    /// Drop the message.
    Ignore,
}

fn listed(list: &[String], id: &str) -> bool {
    list.iter().any(|entry| entry.trim() == id)
}

impl AccessPolicy {
    /// What the configuration alone says about a message.
    pub fn decide(&self, who: Who<'_>) -> Decision {
        if who.is_group {
            return match self.group {
                GroupPolicy::Disabled => Decision::Ignore(IgnoreReason::GroupsDisabled),
                _ if self.require_mention && !who.addressed => {
                    Decision::Ignore(IgnoreReason::NotAddressed)
                }
                GroupPolicy::Open => Decision::Allow,
                GroupPolicy::Allowlist
                    if listed(&self.group_allow_from, who.chat_id)
                        || listed(&self.group_allow_from, who.sender_id) =>
                {
                    Decision::Allow
                }
                GroupPolicy::Allowlist => Decision::Ignore(IgnoreReason::GroupNotAllowed),
            };
        }
        match self.dm {
            DmPolicy::Disabled => Decision::Ignore(IgnoreReason::DmDisabled),
            DmPolicy::Open => Decision::Allow,
            _ if listed(&self.allow_from, who.sender_id) => Decision::Allow,
            DmPolicy::Pairing => Decision::LookUp {
                unknown: Unknown::Pair,
            },
            DmPolicy::Allowlist => Decision::LookUp {
                unknown: Unknown::Ignore,
            },
        }
    }

    /// The final decision once the stored allowlist has been consulted.
    pub fn resolve(decision: Decision, stored_allowed: bool) -> Resolved {
        match decision {
            Decision::Allow => Resolved::Allow,
            Decision::Ignore(r) => Resolved::Ignore(r),
            Decision::LookUp { .. } if stored_allowed => Resolved::Allow,
            Decision::LookUp {
                unknown: Unknown::Pair,
            } => Resolved::Pair,
            Decision::LookUp {
                unknown: Unknown::Ignore,
            } => Resolved::Ignore(IgnoreReason::NotAllowed),
        }
    }
}

/// The outcome of access control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Allow,
    Pair,
    Ignore(IgnoreReason),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dm(sender: &str) -> Who<'_> {
        Who {
            chat_id: sender,
            sender_id: sender,
            is_group: false,
            addressed: true,
        }
    }

    fn group<'a>(chat: &'a str, sender: &'a str, addressed: bool) -> Who<'a> {
        Who {
            chat_id: chat,
            sender_id: sender,
            is_group: true,
            addressed,
        }
    }

    #[test]
    fn dms_default_to_pairing() {
        let p = AccessPolicy::default();
        assert_eq!(p.dm, DmPolicy::Pairing);
        let d = p.decide(dm("42"));
        assert_eq!(
            d,
            Decision::LookUp {
                unknown: Unknown::Pair
            }
        );
        assert_eq!(AccessPolicy::resolve(d, false), Resolved::Pair);
        assert_eq!(AccessPolicy::resolve(d, true), Resolved::Allow);
    }

    #[test]
    fn the_static_allowlist_skips_the_store() {
        let p = AccessPolicy {
            allow_from: vec![" 42 ".into()],
            ..Default::default()
        };
        assert_eq!(p.decide(dm("42")), Decision::Allow);
        assert_ne!(p.decide(dm("43")), Decision::Allow);
        // The DM allowlist does not open groups.
        assert_eq!(
            p.decide(group("-100", "42", true)),
            Decision::Ignore(IgnoreReason::GroupNotAllowed)
        );
    }

    #[test]
    fn allowlist_open_and_disabled_dms() {
        let mut p = AccessPolicy {
            dm: DmPolicy::Allowlist,
            ..Default::default()
        };
        let d = p.decide(dm("7"));
        assert_eq!(
            AccessPolicy::resolve(d, false),
            Resolved::Ignore(IgnoreReason::NotAllowed)
        );
        assert_eq!(AccessPolicy::resolve(d, true), Resolved::Allow);
        p.dm = DmPolicy::Open;
        assert_eq!(p.decide(dm("7")), Decision::Allow);
        p.dm = DmPolicy::Disabled;
        p.allow_from = vec!["7".into()];
        assert_eq!(
            p.decide(dm("7")),
            Decision::Ignore(IgnoreReason::DmDisabled)
        );
    }

    #[test]
    fn groups_need_a_mention_and_their_own_allowlist() {
        let mut p = AccessPolicy {
            group_allow_from: vec!["-100".into(), "9".into()],
            ..Default::default()
        };
        assert_eq!(p.decide(group("-100", "1", true)), Decision::Allow);
        assert_eq!(
            p.decide(group("-100", "1", false)),
            Decision::Ignore(IgnoreReason::NotAddressed)
        );
        // A listed sender is answered in any group.
        assert_eq!(p.decide(group("-200", "9", true)), Decision::Allow);
        assert_eq!(
            p.decide(group("-200", "1", true)),
            Decision::Ignore(IgnoreReason::GroupNotAllowed)
        );
        p.require_mention = false;
        assert_eq!(p.decide(group("-100", "1", false)), Decision::Allow);
        p.group = GroupPolicy::Open;
        assert_eq!(p.decide(group("-300", "1", false)), Decision::Allow);
        p.group = GroupPolicy::Disabled;
        assert_eq!(
            p.decide(group("-100", "9", true)),
            Decision::Ignore(IgnoreReason::GroupsDisabled)
        );
        // Strangers in groups never get pairing codes.
        p.group = GroupPolicy::Allowlist;
        assert!(matches!(
            p.decide(group("-999", "5", true)),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn policies_parse_from_config_words() {
        let d: DmPolicy = serde_json::from_str("\"open\"").unwrap();
        assert_eq!(d, DmPolicy::Open);
        assert!(serde_json::from_str::<DmPolicy>("\"everyone\"").is_err());
        let g: GroupPolicy = serde_json::from_str("\"disabled\"").unwrap();
        assert_eq!(g.as_str(), "disabled");
    }
}
