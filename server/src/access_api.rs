//! `AccessService`: the owner's side of pairing (list and approve codes, list and revoke senders),
//! over the store's [`AccessStore`].

use std::sync::Arc;

use open_clanker_channels::is_known_channel;
use open_clanker_core::{AccessError, AccessStore, AllowedSender, PairingRequest};
use open_clanker_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::grpc::timestamp;

/// `AccessService`.
pub struct AccessApi {
    pub access: Arc<dyn AccessStore>,
    pub config: Arc<Config>,
}

fn status(e: AccessError) -> Status {
    match e {
        AccessError::NotFound(m) => Status::not_found(m),
        AccessError::TooManyPending(m) => Status::resource_exhausted(m),
        AccessError::Conflict(m) => Status::already_exists(m),
        AccessError::Storage(m) => Status::unavailable(m),
    }
}

/// A channel name from a request: required, one of the known channels.
fn channel(name: &str) -> Result<String, Status> {
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() {
        return Err(Status::invalid_argument(
            "channel is empty (one of: telegram, discord)",
        ));
    }
    if !is_known_channel(&name) {
        return Err(Status::invalid_argument(format!(
            "unknown channel {:?} (one of: {})",
            name.chars().take(40).collect::<String>(),
            open_clanker_channels::KNOWN_CHANNELS.join(", ")
        )));
    }
    Ok(name)
}

/// An optional channel filter.
fn channel_filter(name: &str) -> Result<Option<String>, Status> {
    if name.trim().is_empty() {
        Ok(None)
    } else {
        channel(name).map(Some)
    }
}

fn pairing(p: PairingRequest) -> pb::Pairing {
    pb::Pairing {
        channel: p.channel,
        sender: p.sender,
        label: p.label,
        code: p.code,
        create_time: Some(timestamp(p.created_at_ms)),
        expire_time: Some(timestamp(p.expires_at_ms)),
    }
}

fn allowed(a: AllowedSender) -> pb::AllowedSender {
    pb::AllowedSender {
        channel: a.channel,
        sender: a.sender,
        label: a.label,
        create_time: Some(timestamp(a.created_at_ms)),
        source: "pairing".into(),
    }
}

impl AccessApi {
    /// The configuration's static allowlist of a channel.
    fn static_allowlist(&self, channel: &str) -> &[String] {
        match channel {
            "telegram" => &self.config.channels.telegram.allow_from,
            "discord" => &self.config.channels.discord.allow_from,
            _ => &[],
        }
    }
}

#[tonic::async_trait]
impl pb::access_service_server::AccessService for AccessApi {
    async fn list_pairings(
        &self,
        request: Request<pb::ListPairingsRequest>,
    ) -> Result<Response<pb::ListPairingsResponse>, Status> {
        let filter = channel_filter(&request.into_inner().channel)?;
        let pairings = self
            .access
            .list_pairings(filter.as_deref())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListPairingsResponse {
            pairings: pairings.into_iter().map(pairing).collect(),
        }))
    }

    async fn approve_pairing(
        &self,
        request: Request<pb::ApprovePairingRequest>,
    ) -> Result<Response<pb::ApprovePairingResponse>, Status> {
        let req = request.into_inner();
        let channel = channel(&req.channel)?;
        let code = req.code.trim();
        if code.is_empty() {
            return Err(Status::invalid_argument("code is empty"));
        }
        if !open_clanker_channels::pairing::is_code(code) {
            return Err(Status::not_found(format!(
                "{:?} is not a pairing code (8 letters and digits); `open-clanker pairing list` shows the pending ones",
                code.chars().take(20).collect::<String>()
            )));
        }
        let sender = self
            .access
            .approve_pairing(&channel, code)
            .await
            .map_err(status)?;
        tracing::info!(channel = %channel, sender = %sender.sender, label = %sender.label, "pairing approved: sender allowed");
        Ok(Response::new(pb::ApprovePairingResponse {
            sender: Some(allowed(sender)),
        }))
    }

    async fn revoke_sender(
        &self,
        request: Request<pb::RevokeSenderRequest>,
    ) -> Result<Response<pb::RevokeSenderResponse>, Status> {
        let req = request.into_inner();
        let channel = channel(&req.channel)?;
        let sender = req.sender.trim();
        if sender.is_empty() {
            return Err(Status::invalid_argument("sender is empty"));
        }
        let removed = self.access.revoke(&channel, sender).await.map_err(status)?;
        let in_config = self.static_allowlist(&channel).iter().any(|s| s == sender);
        if in_config {
            return Err(Status::failed_precondition(format!(
                "{sender} is in channels.{channel}.allow_from in the configuration; remove it there{}",
                if removed {
                    " (its approval was revoked)"
                } else {
                    ""
                }
            )));
        }
        if !removed {
            return Err(Status::not_found(format!(
                "{sender} is not on the {channel} allowlist"
            )));
        }
        tracing::info!(channel = %channel, sender = %sender, "sender revoked");
        Ok(Response::new(pb::RevokeSenderResponse {}))
    }

    async fn list_allowed(
        &self,
        request: Request<pb::ListAllowedRequest>,
    ) -> Result<Response<pb::ListAllowedResponse>, Status> {
        let filter = channel_filter(&request.into_inner().channel)?;
        let mut senders: Vec<pb::AllowedSender> = Vec::new();
        for name in open_clanker_channels::KNOWN_CHANNELS {
            if filter.as_deref().is_some_and(|f| f != name) {
                continue;
            }
            senders.extend(
                self.static_allowlist(name)
                    .iter()
                    .map(|sender| pb::AllowedSender {
                        channel: name.to_owned(),
                        sender: sender.clone(),
                        label: String::new(),
                        create_time: None,
                        source: "config".into(),
                    }),
            );
        }
        let stored = self
            .access
            .list_allowed(filter.as_deref())
            .await
            .map_err(status)?;
        senders.extend(stored.into_iter().map(allowed));
        Ok(Response::new(pb::ListAllowedResponse { senders }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_checked() {
        assert_eq!(channel(" Telegram ").unwrap(), "telegram");
        assert_eq!(
            channel("slack").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            channel("").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(channel_filter("").unwrap(), None);
    }

    #[test]
    fn errors_map_to_codes() {
        assert_eq!(
            status(AccessError::NotFound("x".into())).code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            status(AccessError::Storage("x".into())).code(),
            tonic::Code::Unavailable
        );
    }
}
