//! Safe by default: API tokens, the refusal to listen beyond loopback without them, CORS for
//! gRPC-Web, request limits and per-caller rate limits.
//!
//! One axum middleware guards every route of the gateway's port. Open without a token: `GET /health`,
//! the gRPC health service, CORS preflights, and the web page's static files (the page asks for the
//! token). Everything else — every gRPC method (reflection included), gRPC-Web, the
//! OpenAI-compatible endpoint and, when `auth.protect_metrics` is set, `/metrics` — needs
//! `authorization: Bearer <token>` once tokens are configured.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use subtle::ConstantTimeEq;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::contract::is_grpc_path;
use open_clanker_core::ExposeSecret;

/// Who made a request, as put in its extensions by [`guard`].
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key its rate limit and its share of the turn budget are counted under: its token,
    /// or its address when it is an unauthenticated remote caller; `None` for the owner's
    /// loopback calls when no tokens are set.
    pub key: Option<open_clanker_core::Caller>,
}

/// What the middleware needs.
pub struct Guard {
    tokens: Vec<(String, Vec<u8>)>,
    protect_metrics: bool,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    limit_loopback: bool,
    per_minute: u32,
    max_bytes: usize,
    /// `auth.allowed_hosts`, lower case.
    allowed_hosts: Vec<String>,
    /// `auth.cors_allowed_origins`.
    cors_origins: Vec<String>,
}

impl Guard {
    pub fn new(c: &Config) -> Self {
        let limiter = NonZeroU32::new(c.limits.turns_per_minute)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Self {
            tokens: c
                .auth
                .tokens
                .iter()
                .map(|t| (t.name.clone(), t.token.expose_secret().as_bytes().to_vec()))
                .collect(),
            protect_metrics: c.auth.protect_metrics,
            limiter,
            limit_loopback: !c.auth.tokens.is_empty(),
            per_minute: c.limits.turns_per_minute,
            max_bytes: c.limits.max_request_bytes,
            allowed_hosts: c
                .auth
                .allowed_hosts
                .iter()
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            cors_origins: c.auth.cors_allowed_origins.clone(),
        }
    }

    pub fn auth_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The name of the token that matches, comparing every token in constant time.
    fn check(&self, presented: &[u8]) -> Option<&str> {
        let mut found = None;
        for (name, token) in &self.tokens {
            if bool::from(token.as_slice().ct_eq(presented)) && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// Whether a host name a request was sent to is served without tokens: `localhost`, an IP
    /// address (a page can only reach an address by its own origin, so no rebinding), or one
    /// of `auth.allowed_hosts`.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        let ip = match host.strip_prefix('[') {
            Some(v6) => v6
                .strip_suffix(']')
                .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok()),
            None => host.parse::<IpAddr>().is_ok(),
        };
        host.eq_ignore_ascii_case("localhost")
            || ip
            || self
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Without tokens, a request is served only when it names an allowed host (`Host`, or
    /// `:authority` over HTTP/2) and, when a browser sends an `Origin`, that origin is the
    /// gateway's own or a configured CORS origin. `Err` says why not.
    fn check_origin(&self, req: &Request) -> Result<(), String> {
        let mut hosts: Vec<&str> = Vec::with_capacity(2);
        if let Some(authority) = req.uri().authority() {
            hosts.push(authority.as_str());
        }
        if let Some(value) = req.headers().get(header::HOST) {
            hosts.push(value.to_str().map_err(|_| "the Host header is not text")?);
        }
        for authority in &hosts {
            let host = host_of(authority);
            if !self.host_allowed(host) {
                return Err(format!(
                    "this gateway has no API tokens, so it answers only requests addressed to localhost, an IP address or auth.allowed_hosts; {:?} is none of them (add it to auth.allowed_hosts / OPEN_CLANKER_ALLOWED_HOSTS, or set API tokens)",
                    truncate(host, 100)
                ));
            }
        }
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("null");
        if self.cors_origins.iter().any(|o| o == "*" || o == origin) {
            return Ok(());
        }
        // Same origin: the page was loaded from the very authority this request is sent to.
        let own = origin
            .split_once("://")
            .filter(|(scheme, _)| *scheme == "http" || *scheme == "https");
        let same = own.is_some_and(|(scheme, authority)| {
            hosts
                .first()
                .is_some_and(|h| same_authority(scheme, authority, h))
        });
        if same {
            Ok(())
        } else {
            Err(format!(
                "requests from the web page at {:?} are not allowed (auth.cors_allowed_origins / OPEN_CLANKER_CORS_ORIGINS)",
                truncate(origin, 100)
            ))
        }
    }
}

mod refuse;
mod request;

#[cfg(test)]
mod tests;

use refuse::{drained, method_not_allowed, preflight_refused, refuse, truncate};
use request::{host_of, is_grpc, is_open, peer, same_authority, starts_turn};

/// The middleware, in order: the host and origin check (without tokens), CORS preflights, the
/// method check on gRPC paths, authentication, unknown gRPC methods, the per-caller turn rate
/// limit, and the request size limit.
pub async fn guard(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let grpc = is_grpc(&req);
    if !guard.auth_enabled()
        && let Err(message) = guard.check_origin(&req)
    {
        warn!(path, peer = ?peer(&req), "{message}");
        crate::metrics::rejected("host_not_allowed");
        let answer = refuse(
            grpc,
            StatusCode::MISDIRECTED_REQUEST,
            tonic::Code::PermissionDenied,
            &message,
            None,
        );
        return drained(req, answer).await;
    }
    if req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return preflight_refused();
    }
    if is_grpc_path(&path) && req.method() != Method::POST {
        info!(path, method = %req.method(), peer = ?peer(&req), "non-POST request on a gRPC path refused");
        crate::metrics::rejected("method_not_allowed");
        let method = req.method().clone();
        return drained(req, method_not_allowed(&method)).await;
    }
    if is_open(req.method(), &path, guard.protect_metrics) {
        return next.run(req).await;
    }
    let mut token = None;
    if guard.auth_enabled() {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(presented) = presented else {
            debug!(path, "request without a token refused");
            crate::metrics::rejected("missing_token");
            let answer = refuse(
                grpc,
                StatusCode::UNAUTHORIZED,
                tonic::Code::Unauthenticated,
                "missing API token: send the header authorization: Bearer <token>",
                None,
            );
            return drained(req, answer).await;
        };
        match guard.check(presented.as_bytes()) {
            Some(name) => token = Some(name.to_string()),
            None => {
                warn!(path, peer = ?peer(&req), "request with an unknown API token refused");
                crate::metrics::rejected("invalid_token");
                let answer = refuse(
                    grpc,
                    StatusCode::UNAUTHORIZED,
                    tonic::Code::Unauthenticated,
                    "invalid API token",
                    None,
                );
                return drained(req, answer).await;
            }
        }
    }
    // Answered at once, before the body is read: a client streaming to a method that does not
    // exist must not wait for its deadline.
    if is_grpc_path(&path) && !crate::contract::is_served(&path) {
        debug!(path, "unknown gRPC method");
        crate::metrics::rejected("unknown_method");
        return refuse(
            grpc,
            StatusCode::NOT_FOUND,
            tonic::Code::Unimplemented,
            &format!("unknown method {}", truncate(&path, 200)),
            None,
        );
    }
    let caller = Caller {
        key: match (token, peer(&req)) {
            (Some(name), _) => Some(open_clanker_core::Caller::Token(name)),
            (None, Some(ip)) if guard.limit_loopback || !ip.is_loopback() => {
                Some(open_clanker_core::Caller::Peer(ip.to_string()))
            }
            _ => None,
        },
    };
    if starts_turn(&path)
        && let Some(limiter) = &guard.limiter
        && let Some(key) = caller.key.as_ref().map(open_clanker_core::Caller::key)
        && let Err(not_until) = limiter.check_key(&key)
    {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        let secs = wait.max(Duration::from_secs(1)).as_secs();
        warn!(caller = %key, "turn rate limit reached");
        crate::metrics::rejected("rate_limited");
        let answer = refuse(
            grpc,
            StatusCode::TOO_MANY_REQUESTS,
            tonic::Code::ResourceExhausted,
            &format!(
                "rate limit of {} turns per minute reached; retry after {secs}s",
                guard.per_minute
            ),
            Some(secs),
        );
        return drained(req, answer).await;
    }
    req.extensions_mut().insert(caller);
    // Requests are read whole (every API call sends one message) so an oversized one is refused
    // with RESOURCE_EXHAUSTED / 413 before anything decodes it. Reflection is a bidirectional
    // stream and is left alone (its messages stay under tonic's own limit).
    if req.method() == Method::POST && !path.starts_with("/grpc.reflection.") {
        let text_mode = grpc
            .as_ref()
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc-web-text"));
        let wire_limit = if text_mode {
            guard.max_bytes / 3 * 4 + 16
        } else {
            guard.max_bytes + 5
        };
        let (parts, body) = req.into_parts();
        match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, wire_limit)).await
        {
            Ok(collected) => req = Request::from_parts(parts, Body::from(collected.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                crate::metrics::rejected("too_large");
                return refuse(
                    grpc,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    tonic::Code::ResourceExhausted,
                    &format!(
                        "request larger than {} bytes (limits.max_request_bytes)",
                        guard.max_bytes
                    ),
                    None,
                );
            }
            Err(_) => {
                crate::metrics::rejected("unreadable_body");
                return refuse(
                    grpc,
                    StatusCode::BAD_REQUEST,
                    tonic::Code::InvalidArgument,
                    "the request body could not be read",
                    None,
                );
            }
        }
    }
    next.run(req).await
}

/// CORS for gRPC-Web: only the configured origins ("*" for any); none by default, so pages on
/// other origins cannot drive the gateway from a visitor's browser. Same-origin requests (the
/// gateway's own page) need no CORS.
pub fn cors(c: &Config) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = &c.auth.cors_allowed_origins;
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let expose = ["grpc-status", "grpc-message", "grpc-status-details-bin"];
    let headers = [
        "content-type",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
        "authorization",
        "x-openclanker-session",
        "x-openclanker-session-key",
    ];
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
            .allow_headers(headers.map(axum::http::HeaderName::from_static))
            .expose_headers(expose.map(axum::http::HeaderName::from_static))
            .max_age(Duration::from_secs(24 * 3600)),
    )
}
