//! How the guard refuses: in the caller's protocol, with the body drained first.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;

/// A refusal in the caller's protocol: a trailers-only gRPC status, or OpenAI-style JSON.
pub(super) fn refuse(
    grpc: Option<HeaderValue>,
    http: StatusCode,
    grpc_code: tonic::Code,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    let mut builder = Response::builder();
    if let Some(secs) = retry_after {
        builder = builder.header(header::RETRY_AFTER, secs.to_string());
    }
    let response = match grpc {
        Some(content_type) => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .header("grpc-status", (grpc_code as i32).to_string())
            .header("grpc-message", grpc_message(message))
            .body(Body::empty()),
        None => {
            let (kind, code) = match http {
                StatusCode::UNAUTHORIZED => ("authentication_error", "invalid_api_key"),
                StatusCode::PAYLOAD_TOO_LARGE => ("invalid_request_error", "request_too_large"),
                StatusCode::BAD_REQUEST => ("invalid_request_error", "bad_body"),
                StatusCode::NOT_FOUND => ("invalid_request_error", "unknown_method"),
                StatusCode::MISDIRECTED_REQUEST | StatusCode::FORBIDDEN => {
                    ("permission_error", "host_not_allowed")
                }
                _ => ("rate_limit_error", "rate_limit_exceeded"),
            };
            let body = serde_json::json!({"error": {
                "message": message, "type": kind, "param": null, "code": code,
            }});
            let mut b = builder
                .status(http)
                .header(header::CONTENT_TYPE, "application/json");
            if http == StatusCode::UNAUTHORIZED {
                b = b.header(header::WWW_AUTHENTICATE, "Bearer");
            }
            b.body(Body::from(body.to_string()))
        }
    };
    response.unwrap_or_else(|_| Response::new(Body::empty()))
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2): a refusal may quote the caller's input.
pub(super) fn grpc_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Any method but `POST` on a gRPC path: refused before routing (gRPC routes by path alone).
pub(super) fn method_not_allowed(method: &Method) -> Response {
    let mut response = Response::new(Body::from(format!(
        "method {method} is not allowed here: gRPC and gRPC-Web calls are POST\n"
    )));
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    let headers = response.headers_mut();
    headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A CORS preflight, when no origin is allowed (the CORS layer answers them when some are):
/// answered here, without `Access-Control-Allow-*`, so the browser does not send the request.
pub(super) fn preflight_refused() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// Reads (a bounded part of) a refused request's body before answering: an HTTP/1.1 client that
/// is still sending its body would otherwise see the connection close under it (EPIPE) instead
/// of the refusal. Bidirectional streams (reflection) are not waited for.
pub(super) async fn drained(req: Request, answer: Response) -> Response {
    const DRAIN_BYTES: usize = 64 * 1024;
    if req.uri().path().starts_with("/grpc.reflection.") {
        return answer;
    }
    let body = http_body_util::Limited::new(req.into_body(), DRAIN_BYTES);
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        http_body_util::BodyExt::collect(body),
    )
    .await;
    answer
}

/// At most `max` characters of `s`, for quoting a caller's input.
pub(super) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
