//! The `open-clanker` command line (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use open_clanker_client::{Client, ClientError};

use crate::config::{self, Config, LogFormat};

mod chat;
mod pairing;
mod sessions;
mod status;

use chat::{ChatTarget, interactive, one_turn};
use pairing::pairing;
use sessions::sessions;
use status::{print_status, status_json};

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

impl CliError {
    /// A pointer to the troubleshooting guide, for errors of the setup (the config, the port,
    /// the store, the providers, a gateway that cannot be reached); `None` for the others.
    pub fn hint(&self) -> Option<String> {
        match self {
            CliError::Config(_) | CliError::Gateway(_) | CliError::Client(_) => Some(format!(
                "{}; `open-clanker doctor` checks the setup",
                crate::doctor::TROUBLESHOOTING
            )),
            _ => None,
        }
    }
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
