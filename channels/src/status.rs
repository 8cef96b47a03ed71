//! What each channel reports to `GatewayService.GetStatus`.

use std::sync::{Arc, PoisonError, RwLock};

/// One channel's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelStatus {
    /// `telegram`, `discord`.
    pub name: String,
    /// A token is configured.
    pub enabled: bool,
    /// Talking to the platform right now.
    pub connected: bool,
    /// The bot's name on the platform (`@name`), once known.
    pub bot_name: String,
    /// The last error, empty when none since the last success.
    pub last_error: String,
}

/// The states of all channels; cheap to clone (clones share the board).
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    inner: Arc<RwLock<Vec<ChannelStatus>>>,
}

impl StatusBoard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a channel (replacing an earlier entry of that name) and returns its handle.
    pub fn register(&self, name: &str, enabled: bool) -> StatusHandle {
        let mut all = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        all.retain(|s| s.name != name);
        all.push(ChannelStatus {
            name: name.to_owned(),
            enabled,
            ..Default::default()
        });
        StatusHandle {
            board: self.clone(),
            name: name.to_owned(),
        }
    }

    /// Every channel's state, in registration order.
    pub fn snapshot(&self) -> Vec<ChannelStatus> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One channel's state.
    pub fn get(&self, name: &str) -> Option<ChannelStatus> {
        self.snapshot().into_iter().find(|s| s.name == name)
    }
}

/// A channel's handle on its own entry.
#[derive(Debug, Clone)]
pub struct StatusHandle {
    board: StatusBoard,
    name: String,
}

impl StatusHandle {
    fn update(&self, f: impl FnOnce(&mut ChannelStatus)) {
        let mut all = self
            .board
            .inner
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = all.iter_mut().find(|s| s.name == self.name) {
            f(s);
        }
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connected as `bot_name`; clears the last error.
    pub fn connected(&self, bot_name: &str) {
        self.update(|s| {
            s.connected = true;
            s.bot_name = bot_name.to_owned();
            s.last_error.clear();
        });
    }

    /// Talking to the platform again after an error (keeps the bot name).
    pub fn reconnected(&self) {
        self.update(|s| {
            s.connected = true;
            s.last_error.clear();
        });
    }

    /// Lost the platform (or never reached it) because of `error`.
    pub fn disconnected(&self, error: &str) {
        self.update(|s| {
            s.connected = false;
            s.last_error = error.to_owned();
        });
    }

    /// An error that does not disconnect (a failed send).
    pub fn error(&self, error: &str) {
        self.update(|s| s.last_error = error.to_owned());
    }

    /// Stopped (gateway shutdown).
    pub fn stopped(&self) {
        self.update(|s| s.connected = false);
    }

    /// The current state.
    pub fn get(&self) -> ChannelStatus {
        self.board.get(&self.name).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_update_their_own_entry() {
        let board = StatusBoard::new();
        let tg = board.register("telegram", true);
        let dc = board.register("discord", false);
        tg.connected("@clanker_bot");
        dc.disconnected("no token");
        tg.error("send failed");
        let all = board.snapshot();
        assert_eq!(all.len(), 2);
        assert!(all[0].connected && all[0].bot_name == "@clanker_bot");
        assert_eq!(all[0].last_error, "send failed");
        assert!(!all[1].connected && !all[1].enabled);
        tg.reconnected();
        assert_eq!(tg.get().last_error, "");
        tg.stopped();
        assert!(!board.get("telegram").unwrap().connected);
    }
}
