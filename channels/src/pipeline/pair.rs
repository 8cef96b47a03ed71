//! A stranger's pairing: the pending code or a new one, and what they are told.

use open_clanker_core::{AccessError, NewPairing, now_ms};

use super::{Inbound, Outcome, Pipeline};
use crate::pairing;
use crate::sink::ReplySink;

impl Pipeline {
    /// Gives a stranger a pairing code (the pending one if they have it).
    pub(super) async fn pair<S: ReplySink>(&self, msg: &Inbound, sink: &S) -> Outcome {
        let access = &self.ctx.access;
        let mut result = access
            .pending_pairing(&self.channel, &msg.sender_id)
            .await
            .map(|p| p.ok_or(AccessError::NotFound(String::new())));
        if matches!(result, Ok(Err(_))) {
            // No pending code: make one (a fresh code if it collides with a pending one).
            result = Ok(Err(AccessError::NotFound(String::new())));
            for _ in 0..5 {
                let created = access
                    .create_pairing(
                        NewPairing {
                            channel: self.channel.clone(),
                            sender: msg.sender_id.clone(),
                            label: msg.sender_label.clone(),
                            code: pairing::generate_code(),
                            expires_at_ms: now_ms()
                                + i64::try_from(pairing::CODE_TTL.as_millis()).unwrap_or(0),
                        },
                        pairing::MAX_PENDING_PER_CHANNEL,
                    )
                    .await;
                match created {
                    Err(AccessError::Conflict(_)) => continue,
                    other => {
                        result = Ok(other);
                        break;
                    }
                }
            }
        }
        match result {
            Ok(Ok(p)) => {
                tracing::info!(
                    channel = %self.channel,
                    sender = %msg.sender_id,
                    label = %msg.sender_label,
                    "pairing code sent to an unknown sender; approve with `open-clanker pairing list` / `pairing approve`"
                );
                match self
                    .say(sink, &pairing::pairing_message(&self.channel, &p.code))
                    .await
                {
                    Ok(()) => Outcome::PairingSent { code: p.code },
                    Err(e) => self.send_failed(&e),
                }
            }
            Ok(Err(AccessError::TooManyPending(m))) => {
                tracing::warn!(channel = %self.channel, sender = %msg.sender_id, "{m}");
                match self.say(sink, pairing::TOO_MANY_PENDING).await {
                    Ok(()) => Outcome::PairingRefused,
                    Err(e) => self.send_failed(&e),
                }
            }
            Ok(Err(e)) | Err(e) => {
                tracing::error!(channel = %self.channel, error = %e, "cannot record a pairing code");
                Outcome::Failed(format!("cannot record a pairing code: {e}"))
            }
        }
    }
}
