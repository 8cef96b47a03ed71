//! Requests by method and code: every route by its HTTP status, gRPC calls by the status their
//! trailers carry.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use super::METRICS;
use crate::contract::is_grpc_path;

/// `/<package>.<Service>/<Method>`.
/// The `method` label of a gRPC path: itself when the gateway serves it, `other` otherwise.
pub(super) fn grpc_label(path: &str) -> String {
    if crate::contract::is_served(path) {
        path.to_string()
    } else {
        "other".to_string()
    }
}

/// The canonical name of a `grpc-status` value.
pub(super) fn grpc_code_name(value: &[u8]) -> &'static str {
    let code = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok());
    match code {
        Some(n) => open_clanker_proto::code_name(tonic::Code::from_i32(n)),
        None => "UNKNOWN",
    }
}

fn count(method: &str, code: &str, error: bool) {
    METRICS.requests.with_label_values(&[method, code]).inc();
    if error {
        METRICS.errors.with_label_values(&[method, code]).inc();
    }
}

fn count_grpc(method: &str, code: &'static str) {
    count(method, code, code != "OK");
}

fn grpc_status(headers: &HeaderMap) -> Option<&'static str> {
    headers
        .get("grpc-status")
        .map(|v| grpc_code_name(v.as_bytes()))
}

/// Set by [`observe_grpc`] on requests it counts itself, so [`observe`] does not count them again.
#[derive(Clone, Default)]
struct Counted(Arc<AtomicBool>);

/// Middleware around every route (outside the security guard, so refusals count too): counts each
/// request by method and code when its response starts. gRPC calls that reach the services are
/// left to [`observe_grpc`], which sees their final status in the trailers.
pub async fn observe(mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let method = if is_grpc_path(path) {
        grpc_label(path)
    } else {
        req.extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string())
            .unwrap_or_else(|| "other".to_string())
    };
    let counted = Counted::default();
    req.extensions_mut().insert(counted.clone());
    let response = next.run(req).await;
    if !counted.0.load(Ordering::Relaxed) {
        match grpc_status(response.headers()) {
            Some(code) => count_grpc(&method, code),
            None => {
                let status = response.status();
                count(&method, status.as_str(), status.as_u16() >= 400);
            }
        }
    }
    response
}

/// Middleware on the gRPC services, inside gRPC-Web (so both protocols look alike here): counts
/// each call with the status it ends with, from the trailers of a streamed answer.
pub async fn observe_grpc(req: Request, next: Next) -> Response {
    if let Some(counted) = req.extensions().get::<Counted>() {
        counted.0.store(true, Ordering::Relaxed);
    }
    let method = grpc_label(req.uri().path());
    let response = next.run(req).await;
    if let Some(code) = grpc_status(response.headers()) {
        count_grpc(&method, code);
        return response;
    }
    response.map(|inner| {
        Body::new(Observed {
            inner,
            method: Some(method),
        })
    })
}

/// A gRPC response body that counts its call when the trailers pass (or when it is dropped
/// unfinished: the caller went away).
struct Observed {
    inner: Body,
    /// Taken once counted.
    method: Option<String>,
}

impl Observed {
    fn done(&mut self, code: &'static str) {
        if let Some(method) = self.method.take() {
            count_grpc(&method, code);
        }
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).unwrap_or("UNKNOWN");
                    self.done(code);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => self.done("UNKNOWN"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.done("CANCELLED");
    }
}
