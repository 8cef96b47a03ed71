//! `open-clanker chat`: one turn, or an interactive conversation, streamed to the terminal.

use std::io::{BufRead, Write};

use open_clanker_client::{Client, ClientError, pb};

use super::CliError;

pub(super) struct ChatTarget {
    pub(super) session_id: Option<String>,
    pub(super) key: Option<String>,
    pub(super) provider: String,
    pub(super) model: String,
}

pub(super) async fn one_turn(
    client: &mut Client,
    target: &mut ChatTarget,
    text: String,
) -> Result<(), CliError> {
    use pb::chat_request::Session;
    let session = match (&target.session_id, &target.key) {
        (Some(id), _) => Some(Session::SessionId(id.clone())),
        (None, Some(key)) => Some(Session::SessionKey(key.clone())),
        (None, None) => None,
    };
    let mut stream = client
        .chat(pb::ChatRequest {
            session,
            text,
            provider: target.provider.clone(),
            model: target.model.clone(),
        })
        .await?;
    let mut out = std::io::stdout().lock();
    let mut failed: Option<String> = None;
    loop {
        let event = match stream.message().await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(status) => {
                let _ = writeln!(out);
                return Err(failed
                    .map(CliError::Message)
                    .unwrap_or_else(|| ClientError::Status(status).into()));
            }
        };
        use pb::chat_response::Event;
        match event.event {
            Some(Event::Started(s)) => {
                if target.session_id.is_none() {
                    eprintln!("session {} ({} {})", s.session_id, s.provider, s.model);
                }
                target.session_id = Some(s.session_id);
            }
            Some(Event::Delta(d)) => {
                let _ = out.write_all(d.text.as_bytes());
                let _ = out.flush();
            }
            Some(Event::Usage(_)) | None => {}
            Some(Event::Completed(_)) => {
                let _ = writeln!(out);
            }
            Some(Event::Error(e)) => {
                let kept = if e.partial.is_some() {
                    " (the partial answer is stored as interrupted)"
                } else {
                    ""
                };
                failed = Some(format!("{}: {}{kept}", e.code, e.message));
            }
        }
    }
    match failed {
        Some(f) => Err(CliError::Message(f)),
        None => Ok(()),
    }
}

pub(super) async fn interactive(
    client: &mut Client,
    target: &mut ChatTarget,
) -> Result<(), CliError> {
    eprintln!("open-clanker chat: type a message and press Enter; Ctrl-D to quit.");
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        let Some(line) = lines.next() else {
            eprintln!();
            return Ok(());
        };
        let line = line.map_err(|e| CliError::Message(format!("cannot read stdin: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        // A failed turn is reported and the conversation goes on.
        if let Err(e) = one_turn(client, target, line).await {
            eprintln!("error: {e}");
        }
    }
}
