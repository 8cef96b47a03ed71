//! The HTTP side shared by the provider clients: a small pool of identical reqwest clients per
//! provider (`crate::pool`), the endpoint, and sending with retries.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use open_clanker_core::{ProviderKind, redact};
use reqwest::header::{HeaderMap, HeaderValue};

use crate::ProviderConfig;
use crate::dns::SharedResolver;
use crate::error::{self, ProviderError, Redactor};
use crate::pool::{self, Pool};

/// Longest back-off between two attempts when the provider did not say how long to wait.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Longest wait honoured from a `retry-after` header.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Most bytes of an error body read (the rest is ignored).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A request's hold on one of the provider's clients: the request counts as in flight on that
/// client (and its connection) until this is dropped. The answer's stream keeps it.
pub(crate) type ClientLease = pool::Lease<reqwest::Client>;

/// Sends JSON requests to one provider endpoint.
pub(crate) struct Transport {
    kind: ProviderKind,
    clients: Pool<reqwest::Client>,
    url: reqwest::Url,
    headers: HeaderMap,
    max_retries: u32,
    retry_base_delay: Duration,
    idle_timeout: Duration,
    redactor: Redactor,
}

/// A header value that holds a secret: never printed by the HTTP stack's debug output.
pub(crate) fn secret_header(value: &str, what: &str) -> Result<HeaderValue, ProviderError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        ProviderError::Config(format!(
            "the {what} contains characters that are not allowed in an HTTP header"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// `base` without trailing slashes, checked to be an http(s) URL.
pub(crate) fn endpoint(
    kind: ProviderKind,
    base: &str,
    path: &str,
    redactor: &Redactor,
) -> Result<reqwest::Url, ProviderError> {
    let base = base.trim().trim_end_matches('/');
    let bad = |why: &str| {
        ProviderError::Config(format!(
            "the {kind} base URL {:?} is not usable: {why}",
            redactor.clean(&redact::redact_url(base))
        ))
    };
    if base.is_empty() {
        return Err(bad("it is empty"));
    }
    let parsed = reqwest::Url::parse(base).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("it must not have a query or a fragment"));
    }
    reqwest::Url::parse(&format!("{base}{path}")).map_err(|e| bad(&e.to_string()))
}

/// How every client of a provider is built: all members of its pool are identical, and share one
/// DNS resolver.
#[derive(Clone)]
struct ClientSettings {
    connect_timeout: Duration,
    idle_timeout: Duration,
    http2_prior_knowledge: bool,
    resolver: SharedResolver,
}

impl From<&ProviderConfig> for ClientSettings {
    fn from(config: &ProviderConfig) -> Self {
        Self {
            connect_timeout: config.connect_timeout,
            idle_timeout: config.idle_timeout,
            http2_prior_knowledge: config.http2_prior_knowledge,
            resolver: SharedResolver::default(),
        }
    }
}

impl ClientSettings {
    fn build(&self) -> Result<reqwest::Client, ProviderError> {
        let mut builder = reqwest::Client::builder();
        if self.http2_prior_knowledge {
            builder = builder.http2_prior_knowledge();
        }
        builder
            .dns_resolver(Arc::new(self.resolver.clone()))
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.idle_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            // A redirect would send the credentials somewhere else; a provider API never needs one.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("open-clanker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ProviderError::Config(format!(
                    "could not build the HTTP client: {}",
                    error::error_chain(&e)
                ))
            })
    }
}

impl Transport {
    /// A transport posting to `url` with `headers` (which carry the credentials).
    pub(crate) fn new(
        config: &ProviderConfig,
        url: reqwest::Url,
        headers: HeaderMap,
    ) -> Result<Self, ProviderError> {
        if config.max_streams_per_connection == 0 {
            return Err(ProviderError::Config(format!(
                "the {} max_streams_per_connection must be at least 1",
                config.kind
            )));
        }
        // Plain http:// without prior knowledge is HTTP/1.1, one connection per open answer
        // anyway: more clients would only split the idle connections between them.
        let multiplexed = config.http2_prior_knowledge || url.scheme() == "https";
        let max_clients = if multiplexed { pool::MAX_MEMBERS } else { 1 };
        let settings = ClientSettings::from(config);
        let clients = Pool::new(
            usize::try_from(config.max_streams_per_connection).unwrap_or(usize::MAX),
            max_clients,
            move || settings.build(),
        )?;
        Ok(Self {
            kind: config.kind,
            clients,
            url,
            headers,
            max_retries: config.max_retries,
            retry_base_delay: config.retry_base_delay,
            idle_timeout: config.idle_timeout,
            redactor: Redactor::for_config(config),
        })
    }

    /// The requests in flight on each of the provider's clients, oldest client first.
    #[cfg(test)]
    pub(crate) fn client_loads(&self) -> Vec<usize> {
        self.clients.loads()
    }

    pub(crate) fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Posts `body` (JSON) and returns the successful response whose body has not been read yet,
    /// with the lease that counts it in flight on its client: keep it as long as the body.
    ///
    /// Retries on 429, 5xx and failures before any response arrived, up to `max_retries` times,
    /// waiting as the provider asked (`retry-after`) or with exponential back-off and jitter.
    pub(crate) async fn post(
        &self,
        body: bytes::Bytes,
    ) -> Result<(reqwest::Response, ClientLease), ProviderError> {
        let attempts = self.max_retries.saturating_add(1);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let lease = self.clients.acquire();
            let sent = lease
                .get()
                .post(self.url.clone())
                .headers(self.headers.clone())
                .body(body.clone())
                .send()
                .await;
            let (retry_after, failure) = match sent {
                Ok(response) if response.status().is_success() => {
                    return Ok((self.expect_event_stream(response).await?, lease));
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = retry_after(response.headers());
                    let should_retry = should_retry(status, response.headers());
                    let message = self.read_error_body(response).await;
                    if !should_retry || attempt >= attempts {
                        return Err(error::from_status(
                            self.kind,
                            status,
                            message,
                            retry_after,
                            attempt,
                        ));
                    }
                    (retry_after, format!("HTTP {status}: {message}"))
                }
                Err(e) => {
                    // reqwest's text names the URL, whose query may hold a credential.
                    let e = e.without_url();
                    let retryable = !e.is_builder() && !e.is_redirect();
                    if !retryable || attempt >= attempts {
                        return Err(self.send_error(&e, attempt));
                    }
                    (None, self.redactor.clean(&error::error_chain(&e)))
                }
            };
            // Not in flight while waiting to retry.
            drop(lease);
            let delay = match retry_after {
                Some(wait) => wait.min(MAX_RETRY_AFTER),
                None => backoff(self.retry_base_delay, attempt),
            };
            tracing::warn!(
                provider = %self.kind,
                attempt,
                max_attempts = attempts,
                delay_ms = delay.as_millis() as u64,
                error = %failure,
                "provider request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One `GET url` with the credentials, no retries: `Ok` on any 2xx, else the error as for a
    /// request (401/403 -> `Unauthorized`, 404 -> `BadRequest`, ...).
    pub(crate) async fn probe(&self, url: reqwest::Url) -> Result<(), ProviderError> {
        let mut headers = self.headers.clone();
        headers.remove(reqwest::header::CONTENT_TYPE);
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let lease = self.clients.acquire();
        match lease.get().get(url).headers(headers).send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = retry_after(response.headers());
                let message = self.read_error_body(response).await;
                Err(error::from_status(
                    self.kind,
                    status,
                    message,
                    retry_after,
                    1,
                ))
            }
            Err(e) => Err(self.send_error(&e.without_url(), 1)),
        }
    }

    /// The error for a request that got no response, after `attempts` tries.
    fn send_error(&self, e: &reqwest::Error, attempts: u32) -> ProviderError {
        let kind = self.kind;
        // reqwest's own text repeats the URL; its causes say what happened.
        let detail = match std::error::Error::source(e) {
            Some(cause) => error::error_chain(cause),
            None => error::error_chain(e),
        };
        let detail = self.redactor.clean(&detail);
        let tries = if attempts > 1 {
            format!(" after {attempts} attempts")
        } else {
            String::new()
        };
        if e.is_builder() {
            ProviderError::Config(format!("could not build the {kind} request: {detail}"))
        } else if e.is_connect() {
            ProviderError::Unavailable {
                provider: kind,
                message: format!(
                    "could not connect to {}{tries}: {detail}",
                    self.url_for_text()
                ),
            }
        } else if e.is_timeout() {
            ProviderError::Timeout {
                provider: kind,
                message: format!(
                    "no response within {:?}{tries} ({})",
                    self.idle_timeout,
                    self.url_for_text()
                ),
            }
        } else {
            ProviderError::Unavailable {
                provider: kind,
                message: format!("request to {} failed{tries}: {detail}", self.url_for_text()),
            }
        }
    }

    /// The endpoint as shown: without its user information and credential-like parameters.
    fn url_for_text(&self) -> String {
        self.redactor.clean(&redact::redact_url(self.url.as_str()))
    }

    /// The response, if it is not a JSON body (which a server that ignored `stream: true`, or a
    /// proxy's error page, would send instead of an event stream).
    async fn expect_event_stream(
        &self,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, ProviderError> {
        let json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !json {
            return Ok(response);
        }
        let message = self.read_error_body(response).await;
        Err(ProviderError::Stream {
            provider: self.kind,
            message: format!(
                "expected a streamed answer (text/event-stream) but got JSON: {message}"
            ),
        })
    }

    /// The error message of a failed response, read from its body (bounded in size).
    async fn read_error_body(&self, response: reqwest::Response) -> String {
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(chunk) => {
                    let room = MAX_ERROR_BODY.saturating_sub(body.len());
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if body.len() >= MAX_ERROR_BODY {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&body);
        self.redactor.clean(&error::error_body_message(&text))
    }
}

/// Whether an error answer is worth another attempt: 429 and 5xx, unless the provider says
/// `x-should-retry: false`. Other statuses are never retried.
fn should_retry(status: u16, headers: &HeaderMap) -> bool {
    let vetoed = headers
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
    !vetoed && (status == 429 || (500..=599).contains(&status))
}

/// How long the provider asked to wait: `retry-after-ms`, else `retry-after` in seconds.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(
            (ms / 1000.0).min(MAX_RETRY_AFTER.as_secs_f64()),
        ));
    }
    let secs = header("retry-after")?.parse::<f64>().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        secs.min(MAX_RETRY_AFTER.as_secs_f64()),
    ))
}

/// The wait before attempt `attempt + 1`: `base * 2^(attempt-1)`, capped at [`MAX_BACKOFF`], minus
/// up to a quarter at random so that many clients do not retry in lock step.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    let full = base.saturating_mul(1u32 << exp).min(MAX_BACKOFF);
    full.mul_f64(1.0 - 0.25 * random_unit())
}

/// A number in `[0, 1)` that differs between calls (not for cryptography).
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(500);
        for _ in 0..50 {
            let first = backoff(base, 1);
            assert!(first <= base && first >= base.mul_f64(0.75), "{first:?}");
            let third = backoff(base, 3);
            assert!(
                third <= base * 4 && third >= (base * 4).mul_f64(0.75),
                "{third:?}"
            );
            let late = backoff(base, 30);
            assert!(
                late <= MAX_BACKOFF && late >= MAX_BACKOFF.mul_f64(0.75),
                "{late:?}"
            );
        }
        assert_eq!(backoff(Duration::ZERO, 5), Duration::ZERO);
    }

    #[test]
    fn retry_after_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", HeaderValue::from_static("3600"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
    }

    #[test]
    fn which_statuses_are_retried() {
        let h = HeaderMap::new();
        for s in [429, 500, 502, 503, 504, 529] {
            assert!(should_retry(s, &h), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!should_retry(s, &h), "{s}");
        }
        let mut no = HeaderMap::new();
        no.insert("x-should-retry", HeaderValue::from_static("false"));
        assert!(!should_retry(503, &no));
    }

    #[test]
    fn endpoints() {
        let r = Redactor::new("key");
        let url = endpoint(
            ProviderKind::OpenAi,
            "http://127.0.0.1:9/v1//",
            "/chat/completions",
            &r,
        )
        .unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/v1/chat/completions");
        for bad in ["", "not a url", "ftp://x/y", "http://"] {
            let e = endpoint(ProviderKind::OpenAi, bad, "/chat/completions", &r).unwrap_err();
            assert!(matches!(e, ProviderError::Config(_)), "{bad}: {e:?}");
        }
    }
}
