//! A stand-in AI provider for tests: one HTTP server that speaks both the Anthropic Messages API
//! (`POST /v1/messages`) and the OpenAI Chat Completions API (`POST /v1/chat/completions`), streamed
//! (Server-Sent Events exactly as the real services send them) or not (the real JSON objects).
//!
//! Point `ANTHROPIC_BASE_URL` at [`StandIn::anthropic_base_url`] (`http://127.0.0.1:PORT`) and
//! `OPENAI_BASE_URL` at [`StandIn::openai_base_url`] (`http://127.0.0.1:PORT/v1`).
//!
//! # What it answers
//!
//! The answer is steered by the text of the **last user message**:
//!
//! | text contains      | answer |
//! |--------------------|--------|
//! | (nothing special)  | `echo: <the words of the text>`, one delta per word (`"echo:"`, `" w1"`, `" w2"`, ...) |
//! | `#tokens=N`        | `tok0 tok1 ... tok{N-1}`, one delta per word |
//! | `#delay=MS`        | waits MS milliseconds before each delta (default: [`StandInConfig::default_delay`]) |
//! | `#status=CODE`     | HTTP CODE (≥ 400) with the provider's documented error JSON; 429 carries `retry-after: 1` |
//! | `#retry_after=S`   | the `retry-after` header (seconds) of an error answer |
//! | `#fail=N`          | the first N requests with exactly this text fail with `#status` (default 503); later ones succeed |
//! | `#cut=K`           | K deltas, then the connection is dropped without the closing events |
//! | `#sse_error`       | one delta, then an Anthropic `event: error` (`overloaded_error`) / an OpenAI chunk with an `error` object |
//! | `#hang`            | headers and one delta, then nothing until the client disconnects |
//!
//! `GET /v1/models` lists [`MODEL`] in Anthropic's format (when the request has `x-api-key` or
//! `anthropic-version`) or OpenAI's, after the same key check: a cheap way to probe a key.
//!
//! Usage: input tokens are the number of words in all messages and the system prompt; output
//! tokens are the number of deltas. An answer longer than `max_tokens` deltas is cut there and ends
//! with `stop_reason: "max_tokens"` (Anthropic) / `finish_reason: "length"` (OpenAI).
//!
//! Without `"stream": true` the same answer comes as one JSON object; `#cut` then drops the
//! connection after the headers, `#hang` never finishes the body and `#sse_error` answers 529
//! (Anthropic) / 503 (OpenAI).
//!
//! # What it checks
//!
//! The API key (`x-api-key` for Anthropic, `Authorization: Bearer` for OpenAI; 401 otherwise), the
//! `anthropic-version` header (400 without), and the body's shape: a non-empty `model`, a non-empty
//! `messages` array with known roles; for Anthropic also `max_tokens`, a first message from the user,
//! no `system` role inside `messages` and no empty content. Anything else gets 400
//! `invalid_request_error`, so a client's request shaping is genuinely checked.
//!
//! Every request to the two APIs is recorded ([`StandIn::requests`], `GET /_standin/requests`,
//! cleared with `DELETE /_standin/requests`; the newest [`MAX_RECORDED`] are kept, all are
//! counted); `GET /_standin/stats` tells the number of requests, of streams still open and of
//! connections accepted.
//!
//! # HTTP versions
//!
//! It speaks HTTP/1.1 and HTTP/2 without TLS (h2c, with prior knowledge) on the same port. Over
//! HTTP/2 a connection carries at most [`StandInConfig::http2_max_concurrent_streams`] streams at
//! once (hyper's default, 200, when unset): a client that opens more has to wait or open another
//! connection, as with a real provider.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let standin = open_clanker_testkit::spawn(Default::default()).await?;
//! // Point a client at standin.anthropic_base_url() / standin.openai_base_url() with the key
//! // "test-key", send "hello #tokens=3", then:
//! for request in standin.requests() {
//!     println!("{} {}", request.path, request.body);
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod anthropic;
pub mod discord;
mod openai;
pub mod script;
pub mod telegram;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

pub use script::{Answer, Directives, Ending};

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

/// Statistics of a running stand-in (`GET /_standin/stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests recorded since the start or the last clear.
    pub requests: usize,
    /// Streamed answers still being sent.
    pub active_streams: usize,
    /// TCP connections accepted since the start (not reset by a clear).
    #[serde(default)]
    pub connections: usize,
}

struct Shared {
    config: StandInConfig,
    requests: Mutex<Recorded>,
    failures: Mutex<HashMap<String, u32>>,
    active_streams: Arc<AtomicUsize>,
    connections: AtomicUsize,
    next_id: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

/// The model `GET /v1/models` lists (any model name is accepted by the other endpoints).
pub const MODEL: &str = "stand-in-model";

/// The most requests kept in memory (the newest); older ones are only counted. Keeps a long load
/// test from growing the stand-in without bound.
pub const MAX_RECORDED: usize = 10_000;

#[derive(Default)]
struct Recorded {
    kept: VecDeque<RecordedRequest>,
    total: usize,
}

impl Recorded {
    fn push(&mut self, request: RecordedRequest) {
        if self.kept.len() >= MAX_RECORDED {
            self.kept.pop_front();
        }
        self.kept.push_back(request);
        self.total += 1;
    }

    fn clear(&mut self) {
        self.kept.clear();
        self.total = 0;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running stand-in. Dropping it (or [`StandIn::shutdown`]) stops the server and ends the
/// streams it is still sending.
pub struct StandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Starts a stand-in on `127.0.0.1` with a free port.
pub async fn spawn(config: StandInConfig) -> std::io::Result<StandIn> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    spawn_on(listener, config).await
}

/// Starts a stand-in on a listener that is already bound.
pub async fn spawn_on(
    listener: tokio::net::TcpListener,
    config: StandInConfig,
) -> std::io::Result<StandIn> {
    let addr = listener.local_addr()?;
    let (stop, shutdown) = watch::channel(false);
    let shared = Arc::new(Shared {
        config,
        requests: Mutex::new(Recorded::default()),
        failures: Mutex::new(HashMap::new()),
        active_streams: Arc::new(AtomicUsize::new(0)),
        connections: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        shutdown: shutdown.clone(),
    });
    let app = Router::new()
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(models))
        .route(
            "/_standin/requests",
            get(list_requests).delete(clear_requests),
        )
        .route("/_standin/stats", get(stats))
        .with_state(shared.clone());
    let task = tokio::spawn(serve(listener, app, shared.clone(), shutdown));
    Ok(StandIn {
        addr,
        shared,
        stop,
        task: Some(task),
    })
}

impl StandIn {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`, for `OPENAI_BASE_URL`.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The API requests received so far, oldest first.
    /// At most the newest [`MAX_RECORDED`] are kept.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).kept.iter().cloned().collect()
    }

    /// How many API requests were received (since the start or the last clear).
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).total
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// How many TCP connections the stand-in accepted since it started (HTTP/1.1 or HTTP/2).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many streamed answers are still being sent (a stream ends when it is complete, when the
    /// client disconnects, or at shutdown).
    pub fn active_streams(&self) -> usize {
        self.shared.active_streams.load(Ordering::SeqCst)
    }

    /// Stops the server: no new connections, open streams are ended. Waits (up to 5 s) for the
    /// server to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// `GET /v1/models`: Anthropic's list when the request carries `x-api-key` or
/// `anthropic-version`, else OpenAI's.
async fn models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.record("GET", "/v1/models", &headers, &Bytes::new());
    if headers.contains_key("x-api-key") || headers.contains_key("anthropic-version") {
        anthropic::models(&shared, &headers)
    } else {
        openai::models(&shared, &headers)
    }
}

async fn list_requests(State(shared): State<Arc<Shared>>) -> Response {
    let requests: Vec<RecordedRequest> = lock(&shared.requests).kept.iter().cloned().collect();
    axum::Json(requests).into_response()
}

async fn clear_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    lock(&shared.requests).clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(Stats {
        requests: lock(&shared.requests).total,
        active_streams: shared.active_streams.load(Ordering::SeqCst),
        connections: shared.connections.load(Ordering::SeqCst),
    })
    .into_response()
}

/// Accepts connections and serves `app` on each (HTTP/1.1 or h2c, as the client speaks) until
/// `shutdown` turns true; then stops accepting, lets every connection finish gracefully (open
/// streams are ended by their producers, which watch the same signal) and returns once all are
/// closed. What `axum::serve(...).with_graceful_shutdown(...)` does, plus the HTTP/2 stream limit
/// and the connection count.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Connection tasks hold a receiver each; all gone = every connection closed.
    let (closed_tx, closed_rx) = watch::channel(());
    loop {
        let stopped = async {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                ) {
                    // E.g. out of file descriptors: wait for some to be freed.
                    eprintln!("stand-in accept error: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        // One small write per SSE event: without TCP_NODELAY, Nagle's algorithm holds each write
        // after the first until the client's delayed ACK (~40 ms), which would swamp what a
        // client or a benchmark measures.
        let _ = tcp.set_nodelay(true);
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let max_streams = shared.config.http2_max_concurrent_streams;
        let mut stop = shutdown.clone();
        let closed = closed_rx.clone();
        tokio::spawn(async move {
            let _closed = closed;
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            // As axum::serve: the CONNECT protocol (websockets over HTTP/2).
            builder.http2().enable_connect_protocol();
            if let Some(max) = max_streams {
                builder.http2().max_concurrent_streams(max);
            }
            let io = hyper_util::rt::TokioIo::new(tcp);
            let conn = builder.serve_connection_with_upgrades(io, service);
            let mut conn = std::pin::pin!(conn);
            let stopped = async {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            tokio::select! {
                _ = conn.as_mut() => return,
                () = stopped => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    drop(closed_rx);
    closed_tx.closed().await;
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
    fn record(
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

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Decides the answer to `text` (the last user message) for a request with `input_tokens`
    /// words and room for `max_tokens` output tokens.
    fn plan(&self, text: &str, input_tokens: u64, max_tokens: Option<u64>) -> Plan {
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
