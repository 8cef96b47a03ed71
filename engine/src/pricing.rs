//! What answers cost: a price table per model (USD per million input and output tokens), built-in
//! defaults for common models overlaid with `[pricing."<model>"]` from the config.

use std::collections::BTreeMap;

use open_clanker_core::Usage;
use serde::{Deserialize, Serialize};

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// List prices of common models (USD per million tokens) when this table was written; override
/// or extend them under `[pricing]`.
pub const DEFAULTS: &[(&str, f64, f64)] = &[
    ("claude-opus-4", 15.0, 75.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-3-7-sonnet", 3.0, 15.0),
    ("claude-3-5-sonnet", 3.0, 15.0),
    ("claude-haiku-4-5", 1.0, 5.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("gpt-5", 1.25, 10.0),
    ("gpt-5-mini", 0.25, 2.0),
    ("gpt-5-nano", 0.05, 0.4),
    ("gpt-4.1", 2.0, 8.0),
    ("gpt-4.1-mini", 0.4, 1.6),
    ("gpt-4.1-nano", 0.1, 0.4),
    ("gpt-4o", 2.5, 10.0),
    ("gpt-4o-mini", 0.15, 0.6),
    ("o3", 2.0, 8.0),
    ("o4-mini", 1.1, 4.4),
];

/// Prices by model name; a model matches its own name or the longest entry it starts with
/// (so dated names such as `claude-sonnet-4-5-20250929` find `claude-sonnet-4`).
#[derive(Debug, Clone)]
pub struct PriceTable {
    /// Longest names first.
    entries: Vec<(String, Price)>,
}

impl PriceTable {
    pub fn new(overrides: &BTreeMap<String, Price>) -> Self {
        let mut map: BTreeMap<String, Price> = DEFAULTS
            .iter()
            .map(|&(m, i, o)| {
                (
                    m.to_string(),
                    Price {
                        input_per_mtok: i,
                        output_per_mtok: o,
                    },
                )
            })
            .collect();
        map.extend(overrides.iter().map(|(k, v)| (k.clone(), *v)));
        let mut entries: Vec<(String, Price)> = map.into_iter().collect();
        entries.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Self { entries }
    }

    pub fn price(&self, model: &str) -> Option<Price> {
        self.entries
            .iter()
            .find(|(name, _)| model == name || model.starts_with(name.as_str()))
            .map(|(_, p)| *p)
    }

    /// The cost of `usage` on `model` in millionths of a USD; 0 for unpriced models.
    pub fn cost_micros(&self, model: &str, usage: Usage) -> i64 {
        let Some(p) = self.price(model) else { return 0 };
        // USD per million tokens is exactly micro-USD per token.
        let micros = usage.input_tokens as f64 * p.input_per_mtok
            + usage.output_tokens as f64 * p.output_per_mtok;
        micros.round().clamp(0.0, i64::MAX as f64) as i64
    }
}

/// Micro-USD as USD.
pub fn usd(micros: i64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// Micro-USD from a USD amount (a cap); 0 or less means none.
pub fn cap_micros(usd: f64) -> Option<i64> {
    (usd > 0.0 && usd.is_finite()).then(|| (usd * 1_000_000.0).round() as i64)
}

impl Price {
    /// Why this price cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), &'static str> {
        let ok = self.input_per_mtok.is_finite()
            && self.output_per_mtok.is_finite()
            && self.input_per_mtok >= 0.0
            && self.output_per_mtok >= 0.0;
        ok.then_some(())
            .ok_or("prices must be finite and not negative")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_overrides_apply() {
        let mut over = BTreeMap::new();
        over.insert(
            "stand-in-model".to_string(),
            Price {
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
            },
        );
        let t = PriceTable::new(&over);
        assert_eq!(t.price("gpt-4.1-mini").unwrap().input_per_mtok, 0.4);
        assert_eq!(t.price("gpt-4.1-2025-04-14").unwrap().input_per_mtok, 2.0);
        assert_eq!(
            t.price("claude-sonnet-4-5-20250929")
                .unwrap()
                .output_per_mtok,
            15.0
        );
        assert!(t.price("llama3.2").is_none());
        let usage = Usage {
            input_tokens: 1000,
            output_tokens: 500,
        };
        // 1000 * 1 + 500 * 2 micro-USD.
        assert_eq!(t.cost_micros("stand-in-model", usage), 2000);
        assert_eq!(t.cost_micros("llama3.2", usage), 0);
        assert_eq!(cap_micros(0.0), None);
        assert_eq!(cap_micros(1.5), Some(1_500_000));
    }
}
