//! Hostile configuration: random TOML and environment values never panic the loader; every
//! rejection names a key, and no value of a secret variable is echoed.

use open_clanker::config::from_sources;
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "gateway.listen",
    "gateway.shutdown_grace_secs",
    "log.format",
    "log.level",
    "store.database_url",
    "chat.default_provider",
    "chat.max_message_chars",
    "chat.fallback",
    "providers.anthropic.base_url",
    "providers.openai.max_tokens",
    "auth.tokens",
    "auth.cors_allowed_origins",
    "limits.max_request_bytes",
    "limits.max_usd_per_day",
    "pricing",
];

const ENV: &[&str] = &[
    "OPEN_CLANKER_LISTEN",
    "OPEN_CLANKER_SHUTDOWN_GRACE_SECS",
    "OPEN_CLANKER_LOG_FORMAT",
    "OPEN_CLANKER_MAX_MESSAGE_CHARS",
    "OPEN_CLANKER_API_TOKENS",
    "OPEN_CLANKER_TURNS_PER_MINUTE",
    "OPEN_CLANKER_MAX_USD_PER_DAY",
    "OPEN_CLANKER_FALLBACK",
    "ANTHROPIC_BASE_URL",
];

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[ -~]{0,30}".prop_map(|s| format!("{s:?}")),
        Just("[]".to_string()),
        Just("[1, \"a\", {}]".to_string()),
        Just("{ name = \"x\", token = \"y\" }".to_string()),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        "[ -~]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_config_values_are_reported_not_panicked(
        entries in prop::collection::vec((prop::sample::select(KEYS), toml_value()), 0..6),
        env in prop::collection::vec((prop::sample::select(ENV), "[ -~]{0,30}"), 0..4),
    ) {
        let mut text = String::new();
        for (key, value) in &entries {
            let (table, field) = key.rsplit_once('.').unwrap_or(("", key));
            if table.is_empty() {
                text.push_str(&format!("{field} = {value}\n"));
            } else {
                text.push_str(&format!("[{table}]\n{field} = {value}\n"));
            }
        }
        let env: Vec<(String, String)> =
            env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if let Err(problems) = from_sources(Some(&text), &env) {
            prop_assert!(!problems.is_empty());
            for p in &problems {
                prop_assert!(!p.key.is_empty() && !p.message.is_empty(), "{p:?}");
                for (k, v) in &env {
                    if k == "OPEN_CLANKER_API_TOKENS" && v.len() >= 12 && !v.contains(char::is_whitespace) {
                        prop_assert!(!p.message.contains(v.as_str()), "{p:?}");
                    }
                }
            }
        }
    }
}
