//! The provider stand-in's server: [`spawn`] and the [`StandIn`] handle, the routes (the two
//! APIs, `/v1/models`, `/_standin/*`) and the serve loop (HTTP/1.1 and h2c on one port).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::state::{Recorded, RecordedRequest, Shared, StandInConfig, lock};
use crate::{anthropic, openai};

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
    /// At most the newest [`MAX_RECORDED`](crate::MAX_RECORDED) are kept.
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
