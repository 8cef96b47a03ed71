//! Finding the config file, reading it, overlaying the environment and validating the result.

use std::path::{Path, PathBuf};

use open_clanker_core::ProviderKind;

use super::env::{
    EnvOverrides, SdkEnv, apply_channel_env, apply_overrides, apply_sdk_env, apply_security_env,
};
use super::{Config, ConfigError, LOCAL_CONFIG_FILE, Loaded, Problem, default_model, validate};

/// Finds the config file: an explicit path (from `--config` or `OPEN_CLANKER_CONFIG`) must exist;
/// otherwise `./open-clanker.toml`, then `$XDG_CONFIG_HOME/open-clanker/config.toml` (or
/// `~/.config/...`) are used when present; with none the built-in defaults apply.
pub fn resolve_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let local = PathBuf::from(LOCAL_CONFIG_FILE);
    if local.is_file() {
        return Some(local);
    }
    let user = config_home().map(|d| d.join("open-clanker").join("config.toml"));
    user.filter(|p| p.is_file())
}

fn config_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
}

/// The data directory used when none is configured: `$XDG_DATA_HOME/open-clanker`, else
/// `~/.local/share/open-clanker`, else `./data`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("open-clanker"))
        .unwrap_or_else(|| PathBuf::from("data"))
}

/// Loads the configuration from `path` (if any) and the process environment, and validates it.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let path = resolve_path(explicit);
    let text = match &path {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
            path: p.clone(),
            message: e.to_string(),
        })?),
        None => None,
    };
    let source_name = path.as_ref().map(|p| p.display().to_string());
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let config = from_sources(text.as_deref(), &vars).map_err(|problems| ConfigError::Invalid {
        source_name,
        problems,
    })?;
    Ok(Loaded { config, path })
}

/// Parses TOML text (if any), applies the given environment, and validates. Pure, for tests.
pub fn from_sources(
    toml_text: Option<&str>,
    env: &[(String, String)],
) -> Result<Config, Vec<Problem>> {
    let mut config = match toml_text {
        Some(text) => parse_toml(text).map_err(|p| vec![p])?,
        None => Config::default(),
    };
    // Empty variables count as unset: `FOO= open-clanker ...` must not blank a setting.
    let env: Vec<(String, String)> = env.iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
    let mut problems = Vec::new();
    // A `[providers.x]` section that names no model keeps the provider's default one.
    for kind in ProviderKind::ALL {
        let section = config.providers.get_mut(kind);
        if section.model.trim().is_empty() {
            section.model = default_model(kind).to_string();
        }
    }
    match envy::prefixed("OPEN_CLANKER_").from_iter::<_, EnvOverrides>(env.iter().cloned()) {
        Ok(o) => apply_overrides(&mut config, o),
        Err(e) => problems.push(Problem {
            key: "environment (OPEN_CLANKER_*)".into(),
            message: e.to_string(),
        }),
    }
    problems.extend(apply_security_env(&mut config, &env));
    match envy::from_iter::<_, SdkEnv>(env.iter().cloned()) {
        Ok(sdk) => apply_sdk_env(&mut config, sdk),
        Err(e) => problems.push(Problem {
            key: "environment".into(),
            message: e.to_string(),
        }),
    }
    problems.extend(apply_channel_env(&mut config, &env));
    problems.extend(validate(&config));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn parse_toml(text: &str) -> Result<Config, Problem> {
    let de = toml::Deserializer::parse(text).map_err(|e| Problem {
        key: "(syntax)".into(),
        message: one_line(&e.to_string()),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        Problem {
            key: if key == "." { "(root)".into() } else { key },
            message: one_line(&e.into_inner().to_string()),
        }
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
