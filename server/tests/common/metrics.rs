//! The gateway's Prometheus metrics: scraping `/metrics` and reading samples from it.

use std::time::Duration;

use super::http::http_get;
use super::wait::last_until;

/// The samples of a Prometheus text exposition: metric name, labels and value.
pub fn metric_samples(
    text: &str,
) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(pair) => pair,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let mut labels = std::collections::BTreeMap::new();
        let name = match series.split_once('{') {
            None => series.to_string(),
            Some((name, rest)) => {
                let mut chars = rest.trim_end_matches('}').chars().peekable();
                loop {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    if key.is_empty() {
                        break;
                    }
                    assert_eq!(chars.next(), Some('"'), "bad exposition line: {line}");
                    let mut val = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('n') => val.push('\n'),
                                Some(other) => val.push(other),
                                None => {}
                            },
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                    labels.insert(key.trim_start_matches(',').to_string(), val);
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                name.to_string()
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// The sum of the samples named `name` whose labels include every pair of `labels`; `None` when
/// no sample matches.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for (n, l, v) in metric_samples(text) {
        if n == name
            && labels
                .iter()
                .all(|(k, want)| l.get(*k).map(String::as_str) == Some(*want))
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// `GET /metrics` of a gateway: the status line and the exposition.
pub fn scrape(addr: &str) -> (String, String) {
    http_get(addr, "/metrics")
}

/// Scrapes `addr` every 50 ms until `done` holds of the status line and the exposition, or `limit`
/// has passed; returns the last exposition either way.
pub async fn scrape_until(
    addr: &str,
    limit: Duration,
    done: impl Fn(&str, &str) -> bool,
) -> String {
    let (_, text) = last_until(
        limit,
        Duration::from_millis(50),
        || scrape(addr),
        |(status, text)| done(status, text),
    )
    .await;
    text
}
