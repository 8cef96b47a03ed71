//! What the provider stand-in keeps and decides: its configuration, the requests it recorded, and
//! the plan for each request (fail, or which answer to play and how it ends).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::script::{self, Answer, Directives, Ending};

/// How the stand-in behaves.
#[derive(Debug, Clone)]
pub struct StandInConfig {
    /// The API key clients must send. Default `test-key`.
    pub api_key: String,
    /// Wait before each delta when the text has no `#delay`. Default zero.
    pub default_delay: Duration,
    /// The most streams a client may have open at once on one HTTP/2 connection (the
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` the stand-in announces). `None`: hyper's default, 200.
    /// HTTP/1.1 is not affected.
    pub http2_max_concurrent_streams: Option<u32>,
}

impl Default for StandInConfig {
    fn default() -> Self {
        Self {
            api_key: "test-key".to_string(),
            default_delay: Duration::ZERO,
            http2_max_concurrent_streams: None,
        }
    }
}

/// One request as the stand-in received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The HTTP method.
    pub method: String,
    /// The path, e.g. `/v1/messages`.
    pub path: String,
    /// The headers, names in lower case; the values of `authorization` and `x-api-key` are
    /// replaced by `<redacted>`.
    pub headers: BTreeMap<String, String>,
    /// The JSON body (`null` when the body was not JSON).
    pub body: serde_json::Value,
}

impl RecordedRequest {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

pub(crate) struct Shared {
    pub(crate) config: StandInConfig,
    pub(crate) requests: Mutex<Recorded>,
    pub(crate) failures: Mutex<HashMap<String, u32>>,
    pub(crate) active_streams: Arc<AtomicUsize>,
    pub(crate) connections: AtomicUsize,
    pub(crate) next_id: AtomicU64,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// The model `GET /v1/models` lists (any model name is accepted by the other endpoints).
pub const MODEL: &str = "stand-in-model";

/// The most requests kept in memory (the newest); older ones are only counted. Keeps a long load
/// test from growing the stand-in without bound.
pub const MAX_RECORDED: usize = 10_000;

#[derive(Default)]
pub(crate) struct Recorded {
    pub(crate) kept: VecDeque<RecordedRequest>,
    pub(crate) total: usize,
}

impl Recorded {
    fn push(&mut self, request: RecordedRequest) {
        if self.kept.len() >= MAX_RECORDED {
            self.kept.pop_front();
        }
        self.kept.push_back(request);
        self.total += 1;
    }

    pub(crate) fn clear(&mut self) {
        self.kept.clear();
        self.total = 0;
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What to do with a well-formed request.
pub(crate) enum Plan {
    /// Answer with this error status (and `retry-after`, seconds).
    Fail {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Answer.
    Answer(Answer),
}

impl Shared {
    /// Records a request and returns its JSON body, if it is JSON.
    pub(crate) fn record(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Option<serde_json::Value> {
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let headers = headers
            .iter()
            .map(|(name, value)| {
                let name = name.as_str().to_ascii_lowercase();
                let value = if name == "authorization" || name == "x-api-key" {
                    "<redacted>".to_string()
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                (name, value)
            })
            .collect();
        lock(&self.requests).push(RecordedRequest {
            method: method.to_string(),
            path: path.to_string(),
            headers,
            body: json.clone().unwrap_or(serde_json::Value::Null),
        });
        json
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Decides the answer to `text` (the last user message) for a request with `input_tokens`
    /// words and room for `max_tokens` output tokens.
    pub(crate) fn plan(&self, text: &str, input_tokens: u64, max_tokens: Option<u64>) -> Plan {
        let d = Directives::parse(text);
        let retry_after = |status: u16| d.retry_after.or((status == 429).then_some(1));
        if let Some(failures) = d.fail {
            let mut counts = lock(&self.failures);
            let count = counts.entry(text.to_string()).or_insert(0);
            if *count < failures {
                *count += 1;
                let status = d.status.filter(|s| *s >= 400).unwrap_or(503);
                return Plan::Fail {
                    status,
                    retry_after: retry_after(status),
                };
            }
        } else if let Some(status) = d.status.filter(|s| *s >= 400) {
            return Plan::Fail {
                status,
                retry_after: retry_after(status),
            };
        }
        let mut deltas = script::deltas_for(text, &d);
        let mut truncated = false;
        if let Some(max) = max_tokens
            && (deltas.len() as u64) > max
        {
            deltas.truncate(usize::try_from(max).unwrap_or(usize::MAX));
            truncated = true;
        }
        let ending = if let Some(k) = d.cut {
            Ending::Cut(k)
        } else if d.sse_error {
            Ending::ErrorEvent
        } else if d.hang {
            Ending::Hang
        } else {
            Ending::Complete
        };
        Plan::Answer(Answer {
            deltas,
            truncated,
            input_tokens,
            delay: d.delay.unwrap_or(self.config.default_delay),
            ending,
        })
    }
}
