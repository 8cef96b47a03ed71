//! Webhook mode: the route Telegram posts updates to, on the gateway's own port. Requests without
//! the secret token Telegram was given (`X-Telegram-Bot-Api-Secret-Token`) are refused.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use teloxide::types::Update;
use tokio::sync::mpsc;

/// The header Telegram sends the webhook's secret token in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

#[derive(Clone)]
struct Hook {
    secret: String,
    tx: mpsc::Sender<Update>,
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !same(given, hook.secret.as_bytes()) {
        tracing::warn!(
            channel = "telegram",
            "webhook request without the right secret token refused"
        );
        return StatusCode::UNAUTHORIZED;
    }
    match serde_json::from_slice::<Update>(&body) {
        Ok(update) => match hook.tx.try_send(update) {
            Ok(()) => StatusCode::OK,
            // Telegram delivers it again later.
            Err(mpsc::error::TrySendError::Full(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Err(mpsc::error::TrySendError::Closed(_)) => StatusCode::SERVICE_UNAVAILABLE,
        },
        Err(e) => {
            // Not retried by Telegram: an update that cannot be read would come back forever.
            tracing::warn!(channel = "telegram", error = %e, "unreadable webhook update dropped");
            StatusCode::OK
        }
    }
}

/// The webhook route at `path`, checking `secret` and passing updates to `tx`.
pub fn webhook_router(path: &str, secret: &str, tx: mpsc::Sender<Update>) -> Router {
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    Router::new().route(&path, post(receive)).with_state(Hook {
        secret: secret.to_owned(),
        tx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"x"));
    }
}
