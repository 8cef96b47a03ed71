//! Which provider and model answer a turn: the one asked for (or the default), then the
//! configured fallbacks that are set up.

use std::sync::Arc;

use open_clanker_core::{ProviderKind, TurnError};
use open_clanker_providers::Provider;

use crate::Engine;
use crate::rules::MAX_MODEL_CHARS;
use crate::settings::ProviderEntry;

/// A provider and model a turn may be answered by.
#[derive(Clone)]
pub(crate) struct Candidate {
    pub(crate) kind: ProviderKind,
    pub(crate) client: Arc<dyn Provider>,
    pub(crate) model: String,
    pub(crate) max_tokens: u32,
}

impl Engine {
    /// The provider and model a turn asks for, checked.
    pub(crate) fn resolve_provider(
        &self,
        name: Option<&str>,
        model: Option<&str>,
    ) -> Result<(ProviderKind, &ProviderEntry, String), TurnError> {
        let kind = match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => n
                .parse::<ProviderKind>()
                .map_err(|e| TurnError::InvalidArgument(e.0))?,
            None => self.settings.default_provider,
        };
        let entry = self.providers.get(&kind).ok_or_else(|| {
            TurnError::FailedPrecondition(format!(
                "provider {kind} is not configured: set {} (or providers.{kind}.api_key in the config file)",
                kind.api_key_env()
            ))
        })?;
        let model = match model.map(str::trim).filter(|m| !m.is_empty()) {
            Some(m) if m.chars().count() > MAX_MODEL_CHARS || m.chars().any(char::is_control) => {
                return Err(TurnError::InvalidArgument(format!(
                    "model name must be at most {MAX_MODEL_CHARS} printable characters"
                )));
            }
            Some(m) => m.to_string(),
            None => entry.default_model.clone(),
        };
        Ok((kind, entry, model))
    }

    /// The requested provider and model, then the configured fallbacks that are set up.
    pub(crate) fn chain(
        &self,
        kind: ProviderKind,
        entry: &ProviderEntry,
        model: String,
    ) -> Vec<Candidate> {
        let mut chain = vec![Candidate {
            kind,
            client: entry.client.clone(),
            model,
            max_tokens: entry.max_tokens,
        }];
        for fallback in &self.settings.fallback {
            let Some(e) = self.providers.get(&fallback.provider) else {
                continue;
            };
            let model = fallback
                .model
                .clone()
                .unwrap_or_else(|| e.default_model.clone());
            if chain
                .iter()
                .any(|c| c.kind == fallback.provider && c.model == model)
            {
                continue;
            }
            chain.push(Candidate {
                kind: fallback.provider,
                client: e.client.clone(),
                model,
                max_tokens: e.max_tokens,
            });
        }
        chain
    }
}
