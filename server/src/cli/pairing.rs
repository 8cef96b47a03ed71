//! `open-clanker pairing`: approve, list and revoke the chat senders allowed to talk to the assistant.

use open_clanker_client::{ClientError, pb};

use super::{CliError, PairingCommand};

pub(super) async fn pairing(cmd: PairingCommand) -> Result<(), CliError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match cmd {
        PairingCommand::List { channel, target } => {
            let list = target
                .connect()
                .await?
                .access_client()
                .list_pairings(pb::ListPairingsRequest {
                    channel: channel.unwrap_or_default(),
                })
                .await
                .map_err(ClientError::from)?
                .into_inner();
            if list.pairings.is_empty() {
                println!("no pending pairing codes");
            }
            for p in list.pairings {
                let left = p
                    .expire_time
                    .map(|t| (t.seconds - now).max(0) / 60)
                    .unwrap_or(0);
                println!(
                    "{:<9} {}  sender {:<14} {:<30} expires in {left} min",
                    p.channel, p.code, p.sender, p.label
                );
            }
            Ok(())
        }
        PairingCommand::Approve {
            channel,
            code,
            target,
        } => {
            let answer = target
                .connect()
                .await?
                .access_client()
                .approve_pairing(pb::ApprovePairingRequest {
                    channel: channel.clone(),
                    code,
                })
                .await
                .map_err(ClientError::from)?
                .into_inner();
            let s = answer.sender.unwrap_or_default();
            println!(
                "approved: {} sender {} {} may talk to the assistant",
                s.channel, s.sender, s.label
            );
            Ok(())
        }
        PairingCommand::Revoke {
            channel,
            sender,
            target,
        } => {
            target
                .connect()
                .await?
                .access_client()
                .revoke_sender(pb::RevokeSenderRequest {
                    channel: channel.clone(),
                    sender: sender.clone(),
                })
                .await
                .map_err(ClientError::from)?;
            println!("revoked: {channel} sender {sender}");
            Ok(())
        }
        PairingCommand::Allowed { channel, target } => {
            let list = target
                .connect()
                .await?
                .access_client()
                .list_allowed(pb::ListAllowedRequest {
                    channel: channel.unwrap_or_default(),
                })
                .await
                .map_err(ClientError::from)?
                .into_inner();
            if list.senders.is_empty() {
                println!("nobody is allowed yet");
            }
            for s in list.senders {
                println!(
                    "{:<9} {:<14} {:<8} {}",
                    s.channel, s.sender, s.source, s.label
                );
            }
            Ok(())
        }
    }
}
