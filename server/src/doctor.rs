//! `open-clanker doctor`: one screen that says what is wrong with a setup and how to fix it.
//! Never prints a secret. Exits 0 only when every check passes.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use open_clanker_core::ProviderKind;

use crate::config::{self, Config};

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Worth knowing, not a failure.
    Note,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub outcome: Outcome,
    pub name: String,
    pub detail: String,
}

impl Check {
    fn new(outcome: Outcome, name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            name: name.into(),
            detail: detail.into(),
        }
    }
}

/// How long each network probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs every check; `config_path` is `--config`.
pub async fn run(config_path: Option<&Path>) -> Vec<Check> {
    let mut checks = Vec::new();
    let loaded = match config::load(config_path) {
        Ok(l) => l,
        Err(e) => {
            checks.push(Check::new(
                Outcome::Fail,
                "config",
                format!("{e}\n      fix: run `open-clanker config-validate`, edit the file or the variables named above"),
            ));
            return checks;
        }
    };
    let c = &loaded.config;
    checks.push(Check::new(
        Outcome::Ok,
        "config",
        match &loaded.path {
            Some(p) => format!("{} parsed and valid", p.display()),
            None => "no config file; built-in defaults and the environment are valid".into(),
        },
    ));
    checks.extend(providers(c).await);
    checks.extend(channels(c).await);
    checks.extend(store(c).await);
    checks.push(listen(c).await);
    checks.push(exposure(c));
    checks
}

async fn providers(c: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let mut any = false;
    for kind in ProviderKind::ALL {
        let section = c.providers.get(kind);
        let name = format!("provider {kind}");
        let Some(key) = section.key() else {
            out.push(Check::new(
                Outcome::Note,
                name,
                format!("not configured (set {} to use it)", kind.api_key_env()),
            ));
            continue;
        };
        any = true;
        let base_url = section.url(kind);
        // As shown: without the credentials it may carry.
        let url = open_clanker_core::redact::redact_url(base_url);
        let mut pc = open_clanker_providers::ProviderConfig::new(kind, key.to_string());
        pc.base_url = base_url.into();
        pc.connect_timeout = PROBE_TIMEOUT;
        pc.idle_timeout = PROBE_TIMEOUT;
        pc.http2_prior_knowledge = section.http2_prior_knowledge;
        pc.max_streams_per_connection = section.max_streams_per_connection;
        let probe =
            tokio::time::timeout(PROBE_TIMEOUT * 2, open_clanker_providers::check_key(pc)).await;
        out.push(match probe {
            Ok(Ok(())) => Check::new(
                Outcome::Ok,
                name,
                format!("{url} reachable, key accepted, model {}", section.model),
            ),
            Ok(Err(e)) => Check::new(
                Outcome::Fail,
                name,
                format!(
                    "{e}\n      fix: check {} and {}_BASE_URL",
                    kind.api_key_env(),
                    kind.as_str().to_uppercase()
                ),
            ),
            Err(_) => Check::new(
                Outcome::Fail,
                name,
                format!(
                    "{url} did not answer within {}s",
                    (PROBE_TIMEOUT * 2).as_secs()
                ),
            ),
        });
    }
    if !any {
        out.push(Check::new(
            Outcome::Fail,
            "providers",
            "no provider is configured: chats will fail\n      fix: export ANTHROPIC_API_KEY=... or OPENAI_API_KEY=... (OPENAI_BASE_URL for a compatible server)",
        ));
    } else if c.providers.get(c.default_provider()).key().is_none() {
        out.push(Check::new(
            Outcome::Fail,
            "default provider",
            format!(
                "chat.default_provider is {} but it has no key\n      fix: set {} or OPEN_CLANKER_DEFAULT_PROVIDER",
                c.default_provider(),
                c.default_provider().api_key_env()
            ),
        ));
    }
    out
}

async fn channels(c: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let tg = &c.channels.telegram;
    match tg.token() {
        None => out.push(Check::new(
            Outcome::Note,
            "channel telegram",
            "off (set TELEGRAM_BOT_TOKEN to turn it on)",
        )),
        Some(token) => {
            let answer =
                open_clanker_channels::telegram::check_token(token, &tg.api_url, PROBE_TIMEOUT)
                    .await;
            out.push(match answer {
                Ok(name) => Check::new(
                    Outcome::Ok,
                    "channel telegram",
                    format!("token accepted: bot @{name}"),
                ),
                Err(e) => Check::new(
                    Outcome::Fail,
                    "channel telegram",
                    format!("{e}\n      fix: check TELEGRAM_BOT_TOKEN (from @BotFather)"),
                ),
            });
        }
    }
    let dc = &c.channels.discord;
    match dc.token() {
        None => out.push(Check::new(
            Outcome::Note,
            "channel discord",
            "off (set DISCORD_BOT_TOKEN to turn it on)",
        )),
        Some(token) => {
            let api_url = dc
                .api_url
                .as_deref()
                .unwrap_or(open_clanker_channels::discord::DEFAULT_API_URL);
            let answer =
                open_clanker_channels::discord::check_token(token, api_url, PROBE_TIMEOUT).await;
            out.push(match answer {
                Ok(name) => Check::new(
                    Outcome::Ok,
                    "channel discord",
                    format!("token accepted: bot {name}"),
                ),
                Err(e) => Check::new(
                    Outcome::Fail,
                    "channel discord",
                    format!(
                        "{e}\n      fix: check DISCORD_BOT_TOKEN (Developer Portal > your application > Bot > Reset Token)"
                    ),
                ),
            });
        }
    }
    out
}

async fn store(c: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    if c.store.database_url.is_none() {
        let dir = c.data_dir();
        match writable(&dir) {
            Ok(()) => out.push(Check::new(
                Outcome::Ok,
                "data directory",
                format!("{} is writable", dir.display()),
            )),
            Err(e) => {
                out.push(Check::new(
                    Outcome::Fail,
                    "data directory",
                    format!(
                        "{} is not writable: {e}\n      fix: set store.data_dir or OPEN_CLANKER_DATA_DIR to a writable directory",
                        dir.display()
                    ),
                ));
                return out;
            }
        }
    }
    match crate::gateway::open_store(c).await {
        Ok(store) => match store.stats().await {
            Ok(s) => out.push(Check::new(
                Outcome::Ok,
                "database",
                format!(
                    "{} migrated, {} sessions, {} messages",
                    s.backend, s.sessions, s.messages
                ),
            )),
            Err(e) => out.push(Check::new(Outcome::Fail, "database", e.to_string())),
        },
        Err(e) => out.push(Check::new(Outcome::Fail, "database", e.to_string())),
    }
    out
}

fn writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    std::fs::write(&probe, b"ok")?;
    std::fs::remove_file(&probe)
}

async fn listen(c: &Config) -> Check {
    let addr = c.listen_addr();
    match std::net::TcpListener::bind(addr) {
        Ok(l) => {
            drop(l);
            Check::new(
                Outcome::Ok,
                "listen address",
                format!("{addr} is free for `open-clanker gateway`"),
            )
        }
        Err(_) => {
            let target = connect_target(addr);
            let healthy = tokio::time::timeout(PROBE_TIMEOUT, async {
                open_clanker_client::Client::connect(&target)
                    .await?
                    .healthy()
                    .await
            })
            .await;
            match healthy {
                Ok(Ok(true)) => Check::new(
                    Outcome::Ok,
                    "listen address",
                    format!("{addr} is in use by a gateway that answers healthy"),
                ),
                Ok(Ok(false)) => Check::new(
                    Outcome::Fail,
                    "listen address",
                    format!("the gateway at {addr} reports NOT_SERVING (shutting down?)"),
                ),
                _ => Check::new(
                    Outcome::Fail,
                    "listen address",
                    format!(
                        "{addr} is in use by something that is not a healthy gateway\n      fix: stop it, or set gateway.listen / OPEN_CLANKER_LISTEN to another port"
                    ),
                ),
            }
        }
    }
}

/// Where to connect to reach a gateway listening on `addr` (an unspecified address means here).
fn connect_target(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    format!("http://{ip}:{}", addr.port())
}

fn exposure(c: &Config) -> Check {
    let addr = c.listen_addr();
    let tokens = c.auth.tokens.len();
    if tokens > 0 {
        Check::new(
            Outcome::Ok,
            "exposure",
            format!("{addr}: API tokens required ({tokens} configured)"),
        )
    } else if addr.ip().is_loopback() {
        Check::new(
            Outcome::Ok,
            "exposure",
            format!("{addr} is reachable from this machine only (no API tokens needed)"),
        )
    } else {
        Check::new(
            Outcome::Fail,
            "exposure",
            format!(
                "{addr} is reachable from the network without API tokens (auth.allow_unauthenticated)\n      fix: set OPEN_CLANKER_API_TOKENS=name:$(openssl rand -hex 32), or listen on 127.0.0.1"
            ),
        )
    }
}

/// Where the causes and fixes of the gateway's own errors are written down.
pub const TROUBLESHOOTING: &str = "causes and fixes: docs/TROUBLESHOOTING.md (https://github.com/openclanker/open-clanker/blob/main/docs/TROUBLESHOOTING.md)";

/// Prints the checks; true when none failed.
pub fn report(checks: &[Check]) -> bool {
    println!("open-clanker doctor");
    for c in checks {
        let mark = match c.outcome {
            Outcome::Ok => "  ok  ",
            Outcome::Note => "  --  ",
            Outcome::Fail => "  FAIL",
        };
        println!("{mark} {}: {}", c.name, c.detail);
    }
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    if failed == 0 {
        println!("all good");
        true
    } else {
        println!("{failed} problem(s) found; {TROUBLESHOOTING}");
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_target_handles_unspecified_and_v6() {
        assert_eq!(
            connect_target("0.0.0.0:18789".parse().unwrap()),
            "http://127.0.0.1:18789"
        );
        assert_eq!(connect_target("[::1]:5".parse().unwrap()), "http://[::1]:5");
    }
}
