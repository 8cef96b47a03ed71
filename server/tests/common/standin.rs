//! The stand-in provider, and a gateway in a fresh home answered by it.

use std::time::Duration;

use open_clanker_testkit::StandIn;

use super::gateway::{Gateway, KEY};

/// A stand-in provider on 127.0.0.1 that expects [`KEY`] and answers at once.
pub async fn standin() -> StandIn {
    open_clanker_testkit::spawn(open_clanker_testkit::StandInConfig {
        api_key: KEY.to_string(),
        default_delay: Duration::ZERO,
        ..Default::default()
    })
    .await
    .expect("stand-in")
}

/// The environment that makes a gateway answer with the stand-in at `url` (its Anthropic API, the
/// default provider), followed by `extra`.
pub fn standin_env<'a>(url: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("ANTHROPIC_API_KEY", KEY), ("ANTHROPIC_BASE_URL", url)];
    env.extend_from_slice(extra);
    env
}

/// The same with OpenAI configured too, at the stand-in's OpenAI API `openai`.
pub fn standin_env_both<'a>(
    anthropic: &'a str,
    openai: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut env = standin_env(
        anthropic,
        &[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", openai)],
    );
    env.extend_from_slice(extra);
    env
}

/// A gateway in a fresh home, answered by a fresh provider stand-in. The fields drop in this
/// order: the gateway is stopped before its home is removed.
pub struct Stack {
    pub gw: Gateway,
    pub home: tempfile::TempDir,
    pub provider: StandIn,
}

impl Stack {
    /// With the stand-in's Anthropic API as the only provider, and `extra` environment.
    pub async fn start(extra: &[(&str, &str)]) -> Stack {
        Stack::start_with(false, None, extra).await
    }

    /// With the stand-in's Anthropic (the default) and OpenAI APIs, and `extra` environment.
    pub async fn start_both(extra: &[(&str, &str)]) -> Stack {
        Stack::start_with(true, None, extra).await
    }

    /// With OpenAI too when `openai`, `config` as the home's `open-clanker.toml` when there is
    /// one, and `extra` environment.
    pub async fn start_with(openai: bool, config: Option<&str>, extra: &[(&str, &str)]) -> Stack {
        let provider = standin().await;
        let home = tempfile::tempdir().unwrap();
        if let Some(text) = config {
            std::fs::write(home.path().join("open-clanker.toml"), text).unwrap();
        }
        let anthropic = provider.anthropic_base_url();
        let openai_url = provider.openai_base_url();
        let env = if openai {
            standin_env_both(&anthropic, &openai_url, extra)
        } else {
            standin_env(&anthropic, extra)
        };
        let gw = Gateway::start(home.path(), &env);
        Stack { gw, home, provider }
    }
}
