//! Every semantic check of a parsed configuration, each problem named by its key path.

use std::net::SocketAddr;

use axum::http::HeaderValue;
use open_clanker_core::{ExposeSecret, ProviderKind, redact};

use super::{Config, DEFAULT_PORT, MIN_TOKEN_CHARS, Problem, TelegramMode};

/// Every semantic problem of a parsed configuration.
pub fn validate(c: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| {
        problems.push(Problem {
            key: key.into(),
            message,
        })
    };
    if c.gateway.listen.parse::<SocketAddr>().is_err() {
        bad(
            "gateway.listen",
            format!(
                "{:?} is not an IP address with a port, e.g. \"127.0.0.1:{DEFAULT_PORT}\" or \"0.0.0.0:{DEFAULT_PORT}\"",
                c.gateway.listen
            ),
        );
    }
    if c.gateway.shutdown_grace_secs > 3600 {
        bad(
            "gateway.shutdown_grace_secs",
            "must be at most 3600 seconds".into(),
        );
    }
    if let Err(e) = c.log.level.parse::<tracing_subscriber::EnvFilter>() {
        bad(
            "log.level",
            format!("{:?} is not a log filter: {e}", c.log.level),
        );
    }
    if let Some(url) = &c.store.database_url
        && !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
    {
        bad(
            "store.database_url",
            "must start with sqlite: or postgres:// (the value is not shown: it may hold a password)".into(),
        );
    }
    if let Err(e) = c.chat.default_provider.parse::<ProviderKind>() {
        bad("chat.default_provider", e.0);
    }
    if c.chat.max_message_chars == 0 || c.chat.max_message_chars > 1_000_000 {
        bad(
            "chat.max_message_chars",
            "must be between 1 and 1000000".into(),
        );
    }
    if c.chat.history_max_messages > 10_000 {
        bad("chat.history_max_messages", "must be at most 10000".into());
    }
    for kind in ProviderKind::ALL {
        let s = c.providers.get(kind);
        let prefix = format!("providers.{kind}");
        if let Some(url) = &s.base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bad(
                    &format!("{prefix}.base_url"),
                    format!(
                        "{:?} must start with http:// or https://",
                        redact::redact_url(url)
                    ),
                );
            } else if url.contains(['?', '#']) {
                bad(
                    &format!("{prefix}.base_url"),
                    format!(
                        "{:?} must not have a query or a fragment (the API key goes in {})",
                        redact::redact_url(url),
                        kind.api_key_env()
                    ),
                );
            }
        }
        if s.model.trim().is_empty() {
            bad(&format!("{prefix}.model"), "must not be empty".into());
        }
        if s.max_tokens == 0 {
            bad(&format!("{prefix}.max_tokens"), "must be at least 1".into());
        }
        if s.connect_timeout_secs == 0 || s.idle_timeout_secs == 0 {
            bad(
                &format!("{prefix}.connect_timeout_secs / idle_timeout_secs"),
                "must be at least 1 second".into(),
            );
        }
        if s.max_retries > 10 {
            bad(
                &format!("{prefix}.max_retries"),
                "must be at most 10".into(),
            );
        }
        if s.max_streams_per_connection == 0 {
            bad(
                &format!("{prefix}.max_streams_per_connection"),
                "must be at least 1 (answers per HTTP/2 connection to the provider)".into(),
            );
        }
    }
    problems.extend(validate_security(c));
    problems.extend(c.pricing.iter().filter_map(|(model, price)| {
        price.check().err().map(|message| Problem {
            key: format!("pricing.{model:?}"),
            message: message.into(),
        })
    }));
    for (i, entry) in c.chat.fallback.iter().enumerate() {
        if let Err(e) = open_clanker_engine::Fallback::parse(entry) {
            problems.push(Problem {
                key: format!("chat.fallback[{i}]"),
                message: format!("{}; entries are \"provider\" or \"provider/model\"", e.0),
            });
        }
    }
    problems.extend(validate_log(c));
    problems.extend(validate_channels(c));
    problems
}

/// Problems with `[auth]`, `[tls]` and `[limits]`, and the refusal to listen beyond loopback
/// without tokens.
fn validate_security(c: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| {
        problems.push(Problem {
            key: key.into(),
            message,
        })
    };
    let mut names = std::collections::HashSet::new();
    for (i, t) in c.auth.tokens.iter().enumerate() {
        let key = format!("auth.tokens[{i}]");
        if t.name.trim().is_empty() {
            bad(&key, "name must not be empty".into());
        } else if !names.insert(t.name.as_str()) {
            bad(&key, format!("name {:?} is used twice", t.name));
        }
        let token = t.token.expose_secret();
        if token.chars().count() < MIN_TOKEN_CHARS {
            bad(
                &key,
                format!(
                    "token {:?} is shorter than {MIN_TOKEN_CHARS} characters (generate one with `openssl rand -hex 32`)",
                    t.name
                ),
            );
        } else if token
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control())
        {
            bad(&key, format!("token {:?} contains white space", t.name));
        }
    }
    for (i, origin) in c.auth.cors_allowed_origins.iter().enumerate() {
        if origin != "*" && HeaderValue::from_str(origin).is_err()
            || origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://"))
        {
            bad(
                &format!("auth.cors_allowed_origins[{i}]"),
                format!("{origin:?} is not an origin like \"https://chat.example.com\" or \"*\""),
            );
        }
    }
    for (i, host) in c.auth.allowed_hosts.iter().enumerate() {
        if host.is_empty()
            || host.contains(['/', ':', '@', ' '])
            || host.chars().any(|ch| ch.is_control())
        {
            bad(
                &format!("auth.allowed_hosts[{i}]"),
                format!(
                    "{host:?} is not a host name like \"gateway.lan\" (no scheme, port or path)"
                ),
            );
        }
    }
    if c.tls.cert_file.is_some() != c.tls.key_file.is_some() {
        bad(
            "tls",
            "set both cert_file and key_file (OPEN_CLANKER_TLS_CERT_FILE / OPEN_CLANKER_TLS_KEY_FILE)"
                .into(),
        );
    }
    if c.limits.max_request_bytes < 1024 {
        bad("limits.max_request_bytes", "must be at least 1024".into());
    }
    for (key, v) in [
        ("limits.max_usd_per_session", c.limits.max_usd_per_session),
        ("limits.max_usd_per_day", c.limits.max_usd_per_day),
    ] {
        if !v.is_finite() || v < 0.0 {
            bad(key, "must be 0 (no cap) or a positive amount of USD".into());
        }
    }
    if c.limits.max_concurrent_turns == 0 {
        bad("limits.max_concurrent_turns", "must be at least 1".into());
    }
    if c.limits.max_streams_per_connection == 0 {
        bad(
            "limits.max_streams_per_connection",
            "must be at least 1".into(),
        );
    }
    if let Ok(addr) = c.gateway.listen.parse::<SocketAddr>()
        && !addr.ip().is_loopback()
        && c.auth.tokens.is_empty()
        && !c.auth.allow_unauthenticated
    {
        bad(
            "auth.tokens",
            format!(
                "listening on {addr} reaches beyond this machine, so API tokens are required: set OPEN_CLANKER_API_TOKENS=name:$(openssl rand -hex 32) (or [[auth.tokens]] in the config), or listen on 127.0.0.1, or set auth.allow_unauthenticated = true (OPEN_CLANKER_ALLOW_UNAUTHENTICATED=true) to accept the risk"
            ),
        );
    }
    problems
}

fn http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Every problem of the `[channels]` section, by key path.
fn validate_channels(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| {
        problems.push(Problem {
            key: key.into(),
            message,
        })
    };
    let tg = &config.channels.telegram;
    if !http_url(&tg.api_url) {
        bad(
            "channels.telegram.api_url",
            format!(
                "{:?} must start with http:// or https://",
                redact::redact_url(&tg.api_url)
            ),
        );
    }
    if let Some(token) = tg.token()
        && (token.chars().any(char::is_whitespace) || !token.contains(':'))
    {
        bad(
            "channels.telegram.bot_token",
            "does not look like a bot token from @BotFather (\"123456:ABC-...\"); the value is not shown".into(),
        );
    }
    for (key, list) in [
        ("channels.telegram.allow_from", &tg.allow_from),
        ("channels.telegram.group_allow_from", &tg.group_allow_from),
    ] {
        if let Some(id) = list.iter().find(|id| id.parse::<i64>().is_err()) {
            bad(key, format!("{id:?} is not a numeric Telegram id"));
        }
    }
    if tg.poll_timeout_secs == 0 || tg.poll_timeout_secs > 50 {
        bad(
            "channels.telegram.poll_timeout_secs",
            "must be between 1 and 50".into(),
        );
    }
    if tg.mode == TelegramMode::Webhook {
        match tg.webhook_url.as_deref() {
            None | Some("") => bad(
                "channels.telegram.webhook_url",
                "is required in webhook mode (the public https URL Telegram posts to)".into(),
            ),
            Some(url) if !http_url(url) => bad(
                "channels.telegram.webhook_url",
                format!(
                    "{:?} must start with https:// (or http:// behind a proxy)",
                    redact::redact_url(url)
                ),
            ),
            Some(url) => {
                let path = url.splitn(4, '/').nth(3).unwrap_or("");
                if path.trim_matches('/').is_empty() {
                    bad(
                        "channels.telegram.webhook_url",
                        "needs a path (e.g. https://bot.example.com/telegram/<random>): it is served on the gateway's port".into(),
                    );
                }
            }
        }
        let secret = tg
            .webhook_secret
            .as_ref()
            .map_or("", |s| s.expose_secret().as_str());
        if secret.is_empty()
            || secret.len() > 256
            || !secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bad(
                "channels.telegram.webhook_secret",
                "webhook mode needs a secret of 1-256 characters A-Z, a-z, 0-9, _ or - (TELEGRAM_WEBHOOK_SECRET)".into(),
            );
        }
    }
    let dc = &config.channels.discord;
    if let Some(url) = &dc.api_url
        && !http_url(url)
    {
        bad(
            "channels.discord.api_url",
            format!(
                "{:?} must start with http:// or https://",
                redact::redact_url(url)
            ),
        );
    }
    problems
}

/// Problems with the tracing settings of `[log]`.
fn validate_log(c: &Config) -> Vec<Problem> {
    match c.log.otlp_endpoint.as_deref().map(str::trim) {
        Some(url) if !url.is_empty() && !url.starts_with("http://") => vec![Problem {
            key: "log.otlp_endpoint".into(),
            message: format!(
                "{:?} must be a plain http:// URL of an OTLP/gRPC receiver, e.g. \"http://127.0.0.1:4317\" (run a local collector for TLS)",
                open_clanker_core::redact::redact_url(url)
            ),
        }],
        _ => Vec::new(),
    }
}
