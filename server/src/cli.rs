//! The `open-clanker` command line (clap derive).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use open_clanker_client::{Client, ClientError, pb};

use crate::config::{self, Config, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "open-clanker",
    version,
    about = "A self-hosted AI assistant gateway with a gRPC API",
    propagate_version = true
)]
pub struct Cli {
    /// Config file (TOML). Default: ./open-clanker.toml or ~/.config/open-clanker/config.toml when
    /// present, else built-in defaults.
    #[arg(long, short, global = true, env = "OPEN_CLANKER_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC, gRPC-Web and HTTP on one port until SIGTERM/SIGINT.
    Gateway {
        /// Listen address; overrides gateway.listen and OPEN_CLANKER_LISTEN.
        #[arg(long)]
        listen: Option<String>,
        /// Log as JSON lines; overrides log.format.
        #[arg(long)]
        json_logs: bool,
    },
    /// Print (or write) a commented example configuration.
    ConfigGenerate {
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Overwrite the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check the configuration (file and environment); lists every problem with its key.
    ConfigValidate,
    /// Show the gateway's status.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a message and stream the answer to stdout; interactive when no message is given.
    Chat {
        /// The message; read line by line from stdin when absent.
        message: Vec<String>,
        /// Continue this session (id).
        #[arg(long, short, conflicts_with = "key")]
        session: Option<String>,
        /// Use the newest session with this key, creating it if needed.
        #[arg(long, short)]
        key: Option<String>,
        /// "anthropic" or "openai" (default: the gateway's).
        #[arg(long, short)]
        provider: Option<String>,
        /// Model name (default: the provider's configured model).
        #[arg(long, short)]
        model: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Exit 0 when the gateway answers healthy (for container health checks).
    Health {
        #[command(flatten)]
        target: Target,
    },
    /// Check the setup (config, providers and keys, data directory, database, port, exposure)
    /// and say how to fix what is wrong; exit 0 only when all is well.
    Doctor,
    /// List, show, reset or delete sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// List and approve pairing codes; list and revoke who may talk on the chat channels.
    #[command(subcommand)]
    Pairing(PairingCommand),
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, newest first.
    List {
        /// Only sessions whose key starts with this.
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i32,
        #[command(flatten)]
        target: Target,
    },
    /// Print a session's messages.
    Show {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Clear a session's history.
    Reset {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a session and its messages.
    Delete {
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum PairingCommand {
    /// Pending pairing codes: unknown senders waiting for approval.
    List {
        /// Only this channel's (telegram, discord).
        #[arg(long)]
        channel: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Approve a pairing code: its sender may talk to the assistant from now on.
    Approve {
        /// telegram or discord.
        channel: String,
        /// The code the sender was given.
        code: String,
        #[command(flatten)]
        target: Target,
    },
    /// Take a sender off the allowlist.
    Revoke {
        /// telegram or discord.
        channel: String,
        /// The sender's user id (see `pairing allowed`).
        sender: String,
        #[command(flatten)]
        target: Target,
    },
    /// The senders allowed to talk to the assistant.
    Allowed {
        /// Only this channel's (telegram, discord).
        #[arg(long)]
        channel: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

/// `open-clanker pairing ...`.
async fn pairing(cmd: PairingCommand) -> Result<(), CliError> {
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

#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Gateway address.
    #[arg(long, env = "OPEN_CLANKER_ADDR", default_value = open_clanker_client::DEFAULT_ADDR)]
    pub addr: String,
    /// API token, sent as `authorization: Bearer <token>` (needed when the gateway has tokens).
    #[arg(long, env = "OPEN_CLANKER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate to trust for an https:// gateway (default: the public web roots).
    #[arg(long, env = "OPEN_CLANKER_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

impl Target {
    pub async fn connect(&self) -> Result<Client, ClientError> {
        Client::connect_with(&self.addr, self.token.as_deref(), self.ca_cert.as_deref()).await
    }
}

/// An error for the one report the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Message(String),
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Gateway { listen, json_logs } => {
            let mut loaded = config::load(cli.config.as_deref())?;
            if let Some(l) = listen {
                loaded.config.gateway.listen = l;
                let problems = config::validate(&loaded.config);
                if !problems.is_empty() {
                    return Err(config::ConfigError::Invalid {
                        source_name: Some("--listen".into()),
                        problems,
                    }
                    .into());
                }
            }
            if json_logs {
                loaded.config.log.format = LogFormat::Json;
            }
            crate::telemetry::init(&loaded.config.log);
            if let Some(p) = &loaded.path {
                tracing::info!(config = %p.display(), "configuration loaded");
            } else {
                tracing::info!("no config file: using built-in defaults and the environment");
            }
            crate::gateway::run(loaded.config).await?;
            Ok(())
        }
        Command::ConfigGenerate { output, force } => generate(output, force),
        Command::ConfigValidate => {
            let loaded = config::load(cli.config.as_deref())?;
            print_valid(&loaded);
            Ok(())
        }
        Command::Status { target, json } => {
            let status = target.connect().await?.status().await?;
            if json {
                println!("{}", status_json(&status));
            } else {
                print_status(&status);
            }
            Ok(())
        }
        Command::Chat {
            message,
            session,
            key,
            provider,
            model,
            target,
        } => {
            let mut client = target.connect().await?;
            let mut chat = ChatTarget {
                session_id: session,
                key,
                provider: provider.unwrap_or_default(),
                model: model.unwrap_or_default(),
            };
            if message.is_empty() {
                interactive(&mut client, &mut chat).await
            } else {
                one_turn(&mut client, &mut chat, message.join(" ")).await
            }
        }
        Command::Health { target } => {
            let healthy = tokio::time::timeout(crate::grpc::HEALTH_TIMEOUT * 3, async {
                target.connect().await?.healthy().await
            })
            .await
            .map_err(|_| CliError::Message(format!("{} did not answer in time", target.addr)))??;
            if healthy {
                println!("healthy");
                Ok(())
            } else {
                Err(CliError::Message("the gateway reports NOT_SERVING".into()))
            }
        }
        Command::Sessions(cmd) => sessions(cmd).await,
        Command::Pairing(cmd) => pairing(cmd).await,
        Command::Doctor => {
            let checks = crate::doctor::run(cli.config.as_deref()).await;
            if crate::doctor::report(&checks) {
                Ok(())
            } else {
                Err(CliError::Message(
                    "doctor found problems (see above)".into(),
                ))
            }
        }
    }
}

fn generate(output: Option<PathBuf>, force: bool) -> Result<(), CliError> {
    match output {
        None => {
            print!("{}", config::TEMPLATE);
            Ok(())
        }
        Some(path) => {
            if path.exists() && !force {
                return Err(CliError::Message(format!(
                    "{} already exists; pass --force to overwrite it",
                    path.display()
                )));
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    CliError::Message(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            std::fs::write(&path, config::TEMPLATE)
                .map_err(|e| CliError::Message(format!("cannot write {}: {e}", path.display())))?;
            eprintln!("wrote {}", path.display());
            Ok(())
        }
    }
}

fn print_valid(loaded: &config::Loaded) {
    let c: &Config = &loaded.config;
    match &loaded.path {
        Some(p) => println!("{}: valid", p.display()),
        None => println!("no config file: built-in defaults and the environment are valid"),
    }
    println!("  listen: {}", c.gateway.listen);
    match &c.store.database_url {
        Some(_) => println!("  store: database_url is set"),
        None => println!("  store: sqlite in {}", c.data_dir().display()),
    }
    println!("  default provider: {}", c.default_provider());
    for kind in open_clanker_core::ProviderKind::ALL {
        let s = c.providers.get(kind);
        let state = if s.key().is_some() {
            "key set".to_string()
        } else {
            format!("not configured (set {})", kind.api_key_env())
        };
        println!("  {kind}: {state}, model {}", s.model);
    }
}

fn fmt_duration(d: &Option<prost_types::Duration>) -> String {
    let secs = d.as_ref().map(|d| d.seconds.max(0)).unwrap_or(0);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

fn print_status(s: &pb::GetStatusResponse) {
    println!("open-clanker {}, up {}", s.version, fmt_duration(&s.uptime));
    println!("default provider: {}", s.default_provider);
    println!("spend today (UTC): ${:.4}", s.spend_today_usd);
    for u in &s.usage_today {
        println!(
            "  {}/{}: {} turns, {} in / {} out tokens, ${:.4}",
            u.provider, u.model, u.turns, u.input_tokens, u.output_tokens, u.cost_usd
        );
    }
    println!("providers:");
    for p in &s.providers {
        let state = if p.configured {
            "configured"
        } else {
            "not configured"
        };
        println!(
            "  {:<10} {:<15} {:<20} {}",
            p.name, state, p.default_model, p.base_url
        );
    }
    if let Some(st) = &s.store {
        if st.healthy {
            println!(
                "store: {}, healthy, {} sessions, {} messages",
                st.backend, st.session_count, st.message_count
            );
        } else {
            println!("store: {}, UNHEALTHY: {}", st.backend, st.error);
        }
        if !st.writable {
            println!("store: CANNOT WRITE: {}", st.write_error);
        }
    }
    if !s.channels.is_empty() {
        println!("channels:");
    }
    for c in &s.channels {
        let state = match (c.enabled, c.connected) {
            (false, _) => "off (no token)".to_string(),
            (true, true) => format!("connected as {}", c.bot_name),
            (true, false) => "not connected".to_string(),
        };
        let error = if c.last_error.is_empty() {
            String::new()
        } else {
            format!("  last error: {}", c.last_error)
        };
        println!("  {:<10} {state}{error}", c.name);
    }
}

fn status_json(s: &pb::GetStatusResponse) -> serde_json::Value {
    serde_json::json!({
        "version": s.version,
        "uptime_secs": s.uptime.as_ref().map(|d| d.seconds).unwrap_or(0),
        "default_provider": s.default_provider,
        "spend_today_usd": s.spend_today_usd,
        "usage_today": s.usage_today.iter().map(|u| serde_json::json!({
            "provider": u.provider,
            "model": u.model,
            "turns": u.turns,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cost_usd": u.cost_usd,
        })).collect::<Vec<_>>(),
        "providers": s.providers.iter().map(|p| serde_json::json!({
            "name": p.name,
            "configured": p.configured,
            "base_url": p.base_url,
            "default_model": p.default_model,
        })).collect::<Vec<_>>(),
        "store": s.store.as_ref().map(|st| serde_json::json!({
            "backend": st.backend,
            "healthy": st.healthy,
            "sessions": st.session_count,
            "messages": st.message_count,
            "error": st.error,
            "writable": st.writable,
            "write_error": st.write_error,
        })),
        "channels": s.channels.iter().map(|c| serde_json::json!({
            "name": c.name,
            "enabled": c.enabled,
            "connected": c.connected,
            "bot_name": c.bot_name,
            "last_error": c.last_error,
        })).collect::<Vec<_>>(),
    })
}

struct ChatTarget {
    session_id: Option<String>,
    key: Option<String>,
    provider: String,
    model: String,
}

async fn one_turn(
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

async fn interactive(client: &mut Client, target: &mut ChatTarget) -> Result<(), CliError> {
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

async fn sessions(cmd: SessionsCommand) -> Result<(), CliError> {
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
