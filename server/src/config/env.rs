//! The environment overlay: `OPEN_CLANKER_*` variables, the provider SDKs' own variables
//! (`ANTHROPIC_API_KEY`, ...) and the channels' (`TELEGRAM_BOT_TOKEN`, ...). Problems are named by
//! variable.

use std::path::PathBuf;

use open_clanker_core::redact::RedactedUrl;
use open_clanker_core::{ProviderKind, SecretString};
use serde::Deserialize;

use super::{ApiToken, Config, LogFormat, Problem};

/// `OPEN_CLANKER_*` overrides.
#[derive(Debug, Default, Deserialize)]
pub(super) struct EnvOverrides {
    listen: Option<String>,
    shutdown_grace_secs: Option<u64>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    default_provider: Option<String>,
    system_prompt: Option<String>,
    max_message_chars: Option<usize>,
    anthropic_model: Option<String>,
    openai_model: Option<String>,
    anthropic_http2_prior_knowledge: Option<bool>,
    openai_http2_prior_knowledge: Option<bool>,
    anthropic_max_streams_per_connection: Option<u32>,
    openai_max_streams_per_connection: Option<u32>,
    fallback: Option<String>,
}

/// The official SDKs' variables.
#[derive(Default, Deserialize)]
pub(super) struct SdkEnv {
    anthropic_api_key: Option<SecretString>,
    anthropic_base_url: Option<RedactedUrl>,
    openai_api_key: Option<SecretString>,
    openai_base_url: Option<RedactedUrl>,
}

pub(super) fn apply_overrides(c: &mut Config, o: EnvOverrides) {
    let EnvOverrides {
        listen,
        shutdown_grace_secs,
        log_format,
        log_level,
        data_dir,
        database_url,
        default_provider,
        system_prompt,
        max_message_chars,
        anthropic_model,
        openai_model,
        anthropic_http2_prior_knowledge,
        openai_http2_prior_knowledge,
        anthropic_max_streams_per_connection,
        openai_max_streams_per_connection,
        fallback,
    } = o;
    if let Some(list) = fallback {
        c.chat.fallback = list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    set(&mut c.gateway.listen, listen);
    set(&mut c.gateway.shutdown_grace_secs, shutdown_grace_secs);
    set(&mut c.log.format, log_format);
    set(&mut c.log.level, log_level);
    if data_dir.is_some() {
        c.store.data_dir = data_dir;
    }
    if database_url.is_some() {
        c.store.database_url = database_url;
    }
    set(&mut c.chat.default_provider, default_provider);
    set(&mut c.chat.system_prompt, system_prompt);
    set(&mut c.chat.max_message_chars, max_message_chars);
    set(&mut c.providers.anthropic.model, anthropic_model);
    set(&mut c.providers.openai.model, openai_model);
    set(
        &mut c.providers.anthropic.http2_prior_knowledge,
        anthropic_http2_prior_knowledge,
    );
    set(
        &mut c.providers.openai.http2_prior_knowledge,
        openai_http2_prior_knowledge,
    );
    set(
        &mut c.providers.anthropic.max_streams_per_connection,
        anthropic_max_streams_per_connection,
    );
    set(
        &mut c.providers.openai.max_streams_per_connection,
        openai_max_streams_per_connection,
    );
}

pub(super) fn apply_sdk_env(c: &mut Config, sdk: SdkEnv) {
    let pairs = [
        (
            ProviderKind::Anthropic,
            sdk.anthropic_api_key,
            sdk.anthropic_base_url,
        ),
        (
            ProviderKind::OpenAi,
            sdk.openai_api_key,
            sdk.openai_base_url,
        ),
    ];
    for (kind, key, url) in pairs {
        let section = c.providers.get_mut(kind);
        if key.is_some() {
            section.api_key = key;
        }
        if url.is_some() {
            section.base_url = url;
        }
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// `OPEN_CLANKER_*` variables of this module.
#[derive(Debug, Default, Deserialize)]
struct SecurityEnv {
    api_tokens: Option<String>,
    allow_unauthenticated: Option<bool>,
    cors_origins: Option<String>,
    allowed_hosts: Option<String>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    turns_per_minute: Option<u32>,
    max_concurrent_turns: Option<usize>,
    max_concurrent_turns_per_caller: Option<usize>,
    max_request_bytes: Option<usize>,
    max_usd_per_session: Option<f64>,
    max_usd_per_day: Option<f64>,
}

/// Applies the `[auth]`, `[tls]` and `[limits]` variables.
pub(super) fn apply_security_env(c: &mut Config, env: &[(String, String)]) -> Vec<Problem> {
    let e = match envy::prefixed("OPEN_CLANKER_").from_iter::<_, SecurityEnv>(env.iter().cloned()) {
        Ok(e) => e,
        Err(err) => {
            return vec![Problem {
                key: "environment (OPEN_CLANKER_*)".into(),
                message: err.to_string(),
            }];
        }
    };
    let mut problems = Vec::new();
    if let Some(list) = e.api_tokens {
        let mut tokens = Vec::new();
        for (i, item) in list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            match item.split_once(':') {
                Some((name, token)) if !name.trim().is_empty() => tokens.push(ApiToken {
                    name: name.trim().to_string(),
                    token: SecretString::new(token.trim().to_string()),
                }),
                _ => problems.push(Problem {
                    key: "OPEN_CLANKER_API_TOKENS".into(),
                    message: format!("entry {} is not name:token (the value is not shown)", i + 1),
                }),
            }
        }
        c.auth.tokens = tokens;
    }
    if let Some(v) = e.allow_unauthenticated {
        c.auth.allow_unauthenticated = v;
    }
    if let Some(list) = e.cors_origins {
        c.auth.cors_allowed_origins = list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    if let Some(list) = e.allowed_hosts {
        c.auth.allowed_hosts = list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    if e.tls_cert_file.is_some() {
        c.tls.cert_file = e.tls_cert_file;
    }
    if e.tls_key_file.is_some() {
        c.tls.key_file = e.tls_key_file;
    }
    if let Some(v) = e.turns_per_minute {
        c.limits.turns_per_minute = v;
    }
    if let Some(v) = e.max_concurrent_turns {
        c.limits.max_concurrent_turns = v;
    }
    if let Some(v) = e.max_concurrent_turns_per_caller {
        c.limits.max_concurrent_turns_per_caller = v;
    }
    if let Some(v) = e.max_request_bytes {
        c.limits.max_request_bytes = v;
    }
    if let Some(v) = e.max_usd_per_session {
        c.limits.max_usd_per_session = v;
    }
    if let Some(v) = e.max_usd_per_day {
        c.limits.max_usd_per_day = v;
    }
    problems
}

/// The channels' environment variables.
#[derive(Default, Deserialize)]
struct ChannelEnv {
    telegram_bot_token: Option<SecretString>,
    telegram_webhook_secret: Option<SecretString>,
    discord_bot_token: Option<SecretString>,
    open_clanker_telegram_api_url: Option<RedactedUrl>,
    open_clanker_telegram_mode: Option<String>,
    open_clanker_telegram_dm_policy: Option<String>,
    open_clanker_telegram_allow_from: Option<String>,
    open_clanker_telegram_webhook_url: Option<String>,
    open_clanker_telegram_link_previews: Option<bool>,
    open_clanker_discord_api_url: Option<RedactedUrl>,
    open_clanker_discord_dm_policy: Option<String>,
    open_clanker_discord_allow_from: Option<String>,
    open_clanker_discord_link_previews: Option<bool>,
}

/// Parses a config word (`"pairing"`) the way the file does.
fn word<T: serde::de::DeserializeOwned>(
    var: &str,
    value: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match serde_json::from_value(serde_json::Value::String(value.trim().to_ascii_lowercase())) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(Problem {
                key: var.to_owned(),
                message: e.to_string(),
            });
            None
        }
    }
}

fn id_list(value: &str) -> Vec<String> {
    value
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Applies `TELEGRAM_BOT_TOKEN`, `TELEGRAM_WEBHOOK_SECRET`, `DISCORD_BOT_TOKEN` and the
/// `OPEN_CLANKER_TELEGRAM_*` / `OPEN_CLANKER_DISCORD_*` variables (empty ones already removed).
pub(super) fn apply_channel_env(config: &mut Config, env: &[(String, String)]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let e: ChannelEnv = match envy::from_iter(env.iter().cloned()) {
        Ok(e) => e,
        Err(err) => {
            problems.push(Problem {
                key: "environment (channels)".into(),
                message: err.to_string(),
            });
            return problems;
        }
    };
    let tg = &mut config.channels.telegram;
    if e.telegram_bot_token.is_some() {
        tg.bot_token = e.telegram_bot_token;
    }
    if e.telegram_webhook_secret.is_some() {
        tg.webhook_secret = e.telegram_webhook_secret;
    }
    if let Some(url) = e.open_clanker_telegram_api_url {
        tg.api_url = url;
    }
    if let Some(url) = e.open_clanker_telegram_webhook_url {
        tg.webhook_url = Some(url);
    }
    if let Some(m) = e.open_clanker_telegram_mode
        && let Some(m) = word("OPEN_CLANKER_TELEGRAM_MODE", &m, &mut problems)
    {
        tg.mode = m;
    }
    if let Some(p) = e.open_clanker_telegram_dm_policy
        && let Some(p) = word("OPEN_CLANKER_TELEGRAM_DM_POLICY", &p, &mut problems)
    {
        tg.dm_policy = p;
    }
    if let Some(list) = e.open_clanker_telegram_allow_from {
        tg.allow_from = id_list(&list);
    }
    if let Some(on) = e.open_clanker_telegram_link_previews {
        tg.link_previews = on;
    }
    let dc = &mut config.channels.discord;
    if e.discord_bot_token.is_some() {
        dc.bot_token = e.discord_bot_token;
    }
    if e.open_clanker_discord_api_url.is_some() {
        dc.api_url = e.open_clanker_discord_api_url;
    }
    if let Some(p) = e.open_clanker_discord_dm_policy
        && let Some(p) = word("OPEN_CLANKER_DISCORD_DM_POLICY", &p, &mut problems)
    {
        dc.dm_policy = p;
    }
    if let Some(list) = e.open_clanker_discord_allow_from {
        dc.allow_from = id_list(&list);
    }
    if let Some(on) = e.open_clanker_discord_link_previews {
        dc.link_previews = on;
    }
    problems
}
