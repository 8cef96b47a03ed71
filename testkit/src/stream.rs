//! Writing an answer: the [`Wire`] trait each API format implements, Server-Sent Events, streamed
//! and unfinished responses, and the message-text helpers both formats share.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tokio::sync::mpsc;

use crate::script::{Answer, Ending};
use crate::state::Shared;

/// How one wire format writes a streamed answer.
pub(crate) trait Wire: Send + Sync + 'static {
    /// Events before the first delta.
    fn prologue(&self) -> Vec<Bytes>;
    /// One text delta.
    fn delta(&self, text: &str) -> Bytes;
    /// The error event of `#sse_error`.
    fn error_event(&self) -> Bytes;
    /// Events after the last delta.
    fn epilogue(&self) -> Vec<Bytes>;
}

/// One `event:`/`data:` block of Server-Sent Events.
pub(crate) fn sse_event(event: Option<&str>, data: &serde_json::Value) -> Bytes {
    match event {
        Some(name) => Bytes::from(format!("event: {name}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

type Chunk = Result<Bytes, std::io::Error>;

struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A streamed response playing `answer` in `wire`'s format, with extra `headers`.
pub(crate) fn stream_response<W: Wire>(
    shared: &Shared,
    answer: Answer,
    wire: W,
    content_type: &'static str,
    headers: &[(&'static str, String)],
) -> Response {
    let (tx, rx) = mpsc::channel::<Chunk>(16);
    shared.active_streams.fetch_add(1, Ordering::SeqCst);
    let guard = StreamGuard(shared.active_streams.clone());
    let mut shutdown = shared.shutdown.clone();
    tokio::spawn(async move {
        let _guard = guard;
        let producer = tx.clone();
        tokio::select! {
            _ = play(answer, wire, &producer) => {}
            _ = tx.closed() => {}
            _ = shutdown.wait_for(|stop| *stop) => {
                let _ = tx.try_send(Err(std::io::Error::other("stand-in shutting down")));
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            h.insert(*name, value);
        }
    }
    response
}

/// A response whose body is never finished (`#hang`) or broken right away (`#cut`), for
/// non-streamed requests.
pub(crate) fn unfinished_response(shared: &Shared, ending: Ending) -> Response {
    struct Nothing;
    impl Wire for Nothing {
        fn prologue(&self) -> Vec<Bytes> {
            Vec::new()
        }
        fn delta(&self, _: &str) -> Bytes {
            Bytes::new()
        }
        fn error_event(&self) -> Bytes {
            Bytes::new()
        }
        fn epilogue(&self) -> Vec<Bytes> {
            Vec::new()
        }
    }
    let answer = Answer {
        deltas: Vec::new(),
        truncated: false,
        input_tokens: 0,
        delay: Duration::ZERO,
        ending,
    };
    stream_response(shared, answer, Nothing, "application/json", &[])
}

async fn play<W: Wire>(answer: Answer, wire: W, tx: &mpsc::Sender<Chunk>) {
    async fn send(tx: &mpsc::Sender<Chunk>, chunk: Bytes) -> Result<(), ()> {
        if chunk.is_empty() {
            return Ok(());
        }
        tx.send(Ok(chunk)).await.map_err(|_| ())
    }
    async fn abort(tx: &mpsc::Sender<Chunk>) {
        // Let the server write out what was sent so far (it flushes when the body has nothing
        // ready); an error from the body then drops the connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let error = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "#cut");
        let _ = tx.send(Err(error)).await;
    }
    let result: Result<(), ()> = async {
        for chunk in wire.prologue() {
            send(tx, chunk).await?;
        }
        for (i, delta) in answer.deltas.iter().enumerate() {
            if answer.ending == Ending::Cut(i) {
                abort(tx).await;
                return Ok(());
            }
            if !answer.delay.is_zero() {
                tokio::time::sleep(answer.delay).await;
            }
            send(tx, wire.delta(delta)).await?;
            if i == 0 && matches!(answer.ending, Ending::ErrorEvent | Ending::Hang) {
                break;
            }
        }
        match answer.ending {
            Ending::Complete => {
                for chunk in wire.epilogue() {
                    send(tx, chunk).await?;
                }
            }
            Ending::Cut(_) => abort(tx).await,
            Ending::ErrorEvent => send(tx, wire.error_event()).await?,
            Ending::Hang => tx.closed().await,
        }
        Ok(())
    }
    .await;
    let _ = result;
}

/// The last message with role `user` in an array of `{role, content}` objects, and its text.
pub(crate) fn last_user_text(messages: &[serde_json::Value]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
        .map(|m| content_text(m.get("content")))
        .unwrap_or_default()
}

/// The text of a message's `content`: a string, or an array of blocks/parts with `text`.
pub(crate) fn content_text(content: Option<&serde_json::Value>) -> String {
    match content {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Seconds since the Unix epoch (for OpenAI's `created`).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
