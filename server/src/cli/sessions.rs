//! `open-clanker sessions`: list, show, reset and delete sessions.

use open_clanker_client::pb;

use super::{CliError, SessionsCommand};

pub(super) async fn sessions(cmd: SessionsCommand) -> Result<(), CliError> {
    match cmd {
        SessionsCommand::List {
            prefix,
            limit,
            target,
        } => {
            let page = target
                .connect()
                .await?
                .list_sessions(pb::ListSessionsRequest {
                    page_size: limit,
                    page_token: String::new(),
                    key_prefix: prefix.unwrap_or_default(),
                })
                .await?;
            for s in page.sessions {
                println!(
                    "{}  {:>4} msgs  ${:<9.4}  {:<24}  {}",
                    s.id, s.message_count, s.cost_usd, s.key, s.title
                );
            }
            Ok(())
        }
        SessionsCommand::Show { id, target } => {
            let messages = target.connect().await?.full_history(&id).await?;
            for m in messages {
                let role = match pb::Role::try_from(m.role) {
                    Ok(pb::Role::User) => "user",
                    Ok(pb::Role::Assistant) => "assistant",
                    Ok(pb::Role::System) => "system",
                    _ => "?",
                };
                let mark = if m.status == pb::MessageStatus::Interrupted as i32 {
                    " [interrupted]"
                } else {
                    ""
                };
                println!("[{}] {role}{mark}: {}", m.id, m.content);
            }
            Ok(())
        }
        SessionsCommand::Reset { id, target } => {
            let r = target.connect().await?.reset_session(&id).await?;
            println!("reset {id}: {} messages removed", r.deleted_messages);
            Ok(())
        }
        SessionsCommand::Delete { id, target } => {
            target.connect().await?.delete_session(&id).await?;
            println!("deleted {id}");
            Ok(())
        }
    }
}
