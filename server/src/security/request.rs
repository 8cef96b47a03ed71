//! What the guard reads off a request: its host and origin, its path, its protocol, its peer.

use std::net::IpAddr;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};

use crate::contract::is_grpc_path;

/// The host of an authority (`name:port`, `[v6]:port`), without the port.
pub(super) fn host_of(authority: &str) -> &str {
    let without_userinfo = authority.rsplit('@').next().unwrap_or(authority);
    if without_userinfo.starts_with('[') {
        return without_userinfo
            .split_once(']')
            .map(|(h, _)| &without_userinfo[..h.len() + 1])
            .unwrap_or(without_userinfo);
    }
    without_userinfo
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(without_userinfo)
}

/// Whether an origin's `host[:port]` (of `scheme`) names the same place as a request's authority.
pub(super) fn same_authority(scheme: &str, origin: &str, request: &str) -> bool {
    let default = if scheme == "https" { "443" } else { "80" };
    let split = |a: &str| -> (String, String) {
        let host = host_of(a);
        let port = a[host.len()..]
            .strip_prefix(':')
            .filter(|p| !p.is_empty())
            .unwrap_or(default);
        (
            host.trim_end_matches('.').to_ascii_lowercase(),
            port.to_string(),
        )
    };
    split(origin) == split(request)
}

pub(super) fn is_open(method: &Method, path: &str, protect_metrics: bool) -> bool {
    if path == "/health" || path.starts_with("/grpc.health.v1.Health/") {
        return true;
    }
    if path == "/metrics" {
        return !protect_metrics;
    }
    // The web page's static files; the API lives under /v1/ and /<package>.<Service>/<Method>.
    (method == Method::GET || method == Method::HEAD)
        && !path.starts_with("/v1/")
        && !is_grpc_path(path)
}

pub(super) fn starts_turn(path: &str) -> bool {
    path == "/openclanker.v1.ChatService/Chat" || path == "/v1/chat/completions"
}

pub(super) fn is_grpc(req: &Request) -> Option<HeaderValue> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .filter(|v| v.as_bytes().starts_with(b"application/grpc"))
        .cloned()
}

pub(super) fn peer(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .map(|a| a.ip())
}
