//! The answers to `/start`, `/help`, `/new`, `/reset` and `/status`.

use super::{Outcome, Pipeline};
use crate::commands::{self, Command};
use crate::relay;
use crate::sink::ReplySink;

impl Pipeline {
    /// Runs `command` on the session `key` and says how it went.
    pub(super) async fn command<S: ReplySink>(
        &self,
        command: Command,
        key: &str,
        sink: &S,
    ) -> Outcome {
        let backend = &self.ctx.backend;
        let reply = match command {
            Command::Start | Command::Help => commands::help_text(),
            Command::New => match backend.session_by_key(key).await {
                Ok(None) => "New conversation: there was none before.".to_owned(),
                Ok(Some(previous)) => match backend.new_session(key).await {
                    Ok(_) => format!(
                        "New conversation. The previous one is kept as session {} \
                         (`open-clanker sessions show {}`).",
                        previous.id, previous.id
                    ),
                    Err(e) => relay::failure_note(&e),
                },
                Err(e) => relay::failure_note(&e),
            },
            Command::Reset => match backend.session_by_key(key).await {
                Ok(Some(session)) => match backend.reset_session(&session.id).await {
                    Ok(()) => "Fresh start: I have forgotten this conversation.".to_owned(),
                    Err(e) => relay::failure_note(&e),
                },
                Ok(None) => "Fresh start: there was nothing to forget.".to_owned(),
                Err(e) => relay::failure_note(&e),
            },
            Command::Status => {
                let bot = self
                    .status
                    .as_ref()
                    .map(|s| s.get().bot_name)
                    .unwrap_or_default();
                match backend.session_by_key(key).await {
                    Ok(Some(s)) => format!(
                        "Session `{key}` ({}): {} messages.\nChannel {} as {bot}.",
                        s.id, s.message_count, self.channel
                    ),
                    Ok(None) => format!(
                        "Session `{key}`: no messages yet.\nChannel {} as {bot}.",
                        self.channel
                    ),
                    Err(e) => relay::failure_note(&e),
                }
            }
        };
        match self.say(sink, &reply).await {
            Ok(()) => Outcome::Command(command),
            Err(e) => self.send_failed(&e),
        }
    }
}
