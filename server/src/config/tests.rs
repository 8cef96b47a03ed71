//! The configuration's tests: the template, the file, the environment and validation.

use super::*;
use open_clanker_core::ProviderKind;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn template_parses_to_the_defaults() {
    let from_template = from_sources(Some(TEMPLATE), &[]).unwrap();
    let defaults = Config::default();
    // The whole configuration, secrets and all (there are none in the template).
    assert_eq!(format!("{from_template:?}"), format!("{defaults:?}"));
}

#[test]
fn no_file_gives_defaults() {
    let c = from_sources(None, &[]).unwrap();
    assert_eq!(c.gateway.listen, "127.0.0.1:18789");
    assert_eq!(c.default_provider(), ProviderKind::Anthropic);
    assert!(c.providers.anthropic.key().is_none());
}

#[test]
fn environment_overrides_file() {
    let c = from_sources(
        Some("[gateway]\nlisten = \"127.0.0.1:1\"\n[providers.openai]\nmodel = \"a\"\n"),
        &env(&[
            ("OPEN_CLANKER_LISTEN", "0.0.0.0:9000"),
            ("OPEN_CLANKER_API_TOKENS", "ops:0123456789abcdef0123"),
            ("OPENAI_API_KEY", "sk-secret"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
            ("OPEN_CLANKER_OPENAI_MODEL", "llama"),
            ("OPEN_CLANKER_OPENAI_HTTP2_PRIOR_KNOWLEDGE", "true"),
            ("OPEN_CLANKER_LOG_FORMAT", "json"),
            ("ANTHROPIC_API_KEY", ""),
        ]),
    )
    .unwrap();
    assert_eq!(c.gateway.listen, "0.0.0.0:9000");
    assert_eq!(c.providers.openai.key(), Some("sk-secret"));
    assert_eq!(c.providers.openai.model, "llama");
    assert!(c.providers.openai.http2_prior_knowledge);
    assert!(!c.providers.anthropic.http2_prior_knowledge);
    assert_eq!(c.log.format, LogFormat::Json);
    assert!(
        c.providers.anthropic.key().is_none(),
        "empty variable is unset"
    );
    let shown = format!("{c:?}");
    assert!(!shown.contains("sk-secret"), "{shown}");
    assert!(!shown.contains("0123456789abcdef0123"), "{shown}");
}

#[test]
fn every_semantic_problem_is_listed_with_its_key() {
    let text = r#"
[gateway]
listen = "nowhere"
[chat]
default_provider = "gemini"
max_message_chars = 0
[providers.openai]
base_url = "ftp://x"
max_tokens = 0
"#;
    let problems = from_sources(Some(text), &[]).unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "gateway.listen",
        "chat.default_provider",
        "chat.max_message_chars",
        "providers.openai.base_url",
        "providers.openai.max_tokens",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
}

#[test]
fn max_streams_per_connection_from_file_and_environment() {
    let c = from_sources(None, &[]).unwrap();
    assert_eq!(c.providers.anthropic.max_streams_per_connection, 100);
    assert_eq!(c.providers.openai.max_streams_per_connection, 100);
    let c = from_sources(
        Some("[providers.anthropic]\nmax_streams_per_connection = 50\n"),
        &env(&[("OPEN_CLANKER_OPENAI_MAX_STREAMS_PER_CONNECTION", "8")]),
    )
    .unwrap();
    assert_eq!(c.providers.anthropic.max_streams_per_connection, 50);
    assert_eq!(c.providers.openai.max_streams_per_connection, 8);
    let c = from_sources(
        Some("[providers.anthropic]\nmax_streams_per_connection = 50\n"),
        &env(&[("OPEN_CLANKER_ANTHROPIC_MAX_STREAMS_PER_CONNECTION", "250")]),
    )
    .unwrap();
    assert_eq!(
        c.providers.anthropic.max_streams_per_connection, 250,
        "the environment wins"
    );
}

#[test]
fn max_streams_per_connection_must_be_positive() {
    let key = "providers.openai.max_streams_per_connection";
    for text in [
        "[providers.openai]\nmax_streams_per_connection = 0\n",
        "[providers.openai]\nmax_streams_per_connection = -1\n",
    ] {
        let problems = from_sources(Some(text), &[]).unwrap_err();
        assert_eq!(problems.len(), 1, "{text}: {problems:?}");
        assert_eq!(problems[0].key, key, "{text}: {problems:?}");
    }
    let problems = from_sources(
        None,
        &env(&[("OPEN_CLANKER_ANTHROPIC_MAX_STREAMS_PER_CONNECTION", "0")]),
    )
    .unwrap_err();
    assert_eq!(
        problems[0].key, "providers.anthropic.max_streams_per_connection",
        "{problems:?}"
    );
    assert!(problems[0].message.contains("at least 1"), "{problems:?}");
    let problems = from_sources(
        None,
        &env(&[("OPEN_CLANKER_ANTHROPIC_MAX_STREAMS_PER_CONNECTION", "-5")]),
    )
    .unwrap_err();
    assert!(
        problems[0]
            .message
            .to_ascii_lowercase()
            .contains("max_streams_per_connection"),
        "{problems:?}"
    );
}

#[test]
fn a_partial_provider_section_keeps_the_default_model() {
    let c = from_sources(Some("[providers.anthropic]\nmax_retries = 0\n"), &[]).unwrap();
    assert_eq!(c.providers.anthropic.model, "claude-sonnet-4-5");
    assert_eq!(c.providers.anthropic.max_retries, 0);
    assert_eq!(c.providers.anthropic.max_tokens, 4096);
}

#[test]
fn type_errors_and_unknown_keys_name_the_key() {
    let problems =
        from_sources(Some("[gateway]\nshutdown_grace_secs = \"soon\"\n"), &[]).unwrap_err();
    assert_eq!(
        problems[0].key, "gateway.shutdown_grace_secs",
        "{problems:?}"
    );

    let problems = from_sources(Some("[chat]\nsystem_promt = \"hi\"\n"), &[]).unwrap_err();
    assert!(problems[0].message.contains("system_promt"), "{problems:?}");

    let problems = from_sources(Some("[gateway\nlisten="), &[]).unwrap_err();
    assert_eq!(problems[0].key, "(syntax)");
}

#[test]
fn bad_environment_values_are_reported() {
    let problems =
        from_sources(None, &env(&[("OPEN_CLANKER_SHUTDOWN_GRACE_SECS", "soon")])).unwrap_err();
    assert!(problems[0].key.contains("OPEN_CLANKER"), "{problems:?}");

    // A switch that is neither true nor false names its variable.
    let problems = from_sources(
        None,
        &env(&[("OPEN_CLANKER_ANTHROPIC_HTTP2_PRIOR_KNOWLEDGE", "maybe")]),
    )
    .unwrap_err();
    let said = format!("{} {}", problems[0].key, problems[0].message).to_ascii_uppercase();
    assert!(
        said.contains("ANTHROPIC_HTTP2_PRIOR_KNOWLEDGE"),
        "{problems:?}"
    );
}

#[test]
fn database_url_problem_does_not_echo_the_url() {
    let problems = from_sources(
        None,
        &env(&[("OPEN_CLANKER_DATABASE_URL", "mysql://u:hunter2@h/db")]),
    )
    .unwrap_err();
    assert!(!problems[0].message.contains("hunter2"));
}

fn config(listen: &str) -> Config {
    let mut c = Config::default();
    c.gateway.listen = listen.into();
    c
}

#[test]
fn refuses_to_expose_without_tokens() {
    let c = config("0.0.0.0:18789");
    let problems = validate(&c);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("OPEN_CLANKER_API_TOKENS"));
    assert!(validate(&config("127.0.0.1:18789")).is_empty());
    let mut opted_out = config("0.0.0.0:1");
    opted_out.auth.allow_unauthenticated = true;
    assert!(validate(&opted_out).is_empty());
}

#[test]
fn tokens_from_the_environment_and_their_checks() {
    let mut c = config("0.0.0.0:1");
    let env = vec![(
        "OPEN_CLANKER_API_TOKENS".to_string(),
        "laptop:0123456789abcdef0123, ci:short, bad".to_string(),
    )];
    let problems = super::env::apply_security_env(&mut c, &env);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(!problems[0].message.contains("bad"), "{problems:?}");
    assert_eq!(c.auth.tokens.len(), 2);
    let problems = validate(&c);
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("\"ci\"") && p.message.contains("shorter")),
        "{problems:?}"
    );
    assert!(!format!("{c:?}").contains("0123456789abcdef0123"));
}
