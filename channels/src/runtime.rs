//! What every platform module runs on, so that a platform only speaks its wire format.
//!
//! A platform implements [`Platform`] (how the gateway starts it). Its `start` builds a [`Runtime`]
//! (the channel's [`Pipeline`], its status and the tasks handling its messages), connects with
//! [`Runtime::until_ok`] (a rejected token stops the channel, a 429 is waited out, the rest backs
//! off), hands each message to [`Runtime::dispatch`] in arrival order, and wraps its receiving loop
//! in [`Runtime::serve`], which drains the messages being handled at shutdown.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use open_clanker_core::redact::redact_url;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::access::AccessPolicy;
use crate::backoff::Backoff;
use crate::pipeline::{ChannelContext, Inbound, Pipeline};
use crate::relay::RelayConfig;
use crate::sink::ReplySink;
use crate::status::{StatusBoard, StatusHandle};

/// Messages handled at once per channel (each may be a running turn).
const MAX_CONCURRENT: usize = 16;
/// How long shutdown waits for messages being handled.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// A chat platform, as the gateway starts it. A platform module implements it on a unit type
/// ([`crate::telegram::Telegram`], [`crate::discord::Discord`]).
pub trait Platform {
    /// The channel's name: session keys, the allowlist, the CLI, the status board.
    const NAME: &'static str;
    /// The platform's name in messages ("Telegram").
    const TITLE: &'static str;
    /// Everything the channel needs.
    type Settings: Send + 'static;

    /// The access rules in `settings`.
    fn access(settings: &Self::Settings) -> &AccessPolicy;

    /// Spawns the channel; it registers itself on `board` as [`Platform::NAME`] and stops when
    /// `cancel` fires.
    fn start(
        settings: Self::Settings,
        ctx: ChannelContext,
        board: &StatusBoard,
        cancel: CancellationToken,
    ) -> Result<Started, StartError>;
}

/// A started channel.
pub struct Started {
    /// Ends after the cancellation token fires (or when the platform refuses the bot for good).
    pub task: tokio::task::JoinHandle<()>,
    /// A route to serve on the gateway's port (Telegram's webhook mode).
    pub webhook: Option<axum::Router>,
}

/// Why a channel could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// A URL setting that cannot be used (shown redacted).
    #[error("invalid {platform} {setting} {url:?}: {reason}")]
    Url {
        platform: &'static str,
        setting: &'static str,
        url: String,
        reason: String,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// `url`, parsed; the error names the platform and the setting, and shows the URL redacted.
pub fn parse_url(
    platform: &'static str,
    setting: &'static str,
    url: &str,
) -> Result<reqwest::Url, StartError> {
    reqwest::Url::parse(url).map_err(|e| StartError::Url {
        platform,
        setting,
        url: redact_url(url),
        reason: e.to_string(),
    })
}

/// The HTTP client of a platform's API: 10 s to connect, `timeout` per request.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, StartError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| StartError::Client(e.to_string()))
}

/// How [`Runtime::until_ok`] handles a failed call.
pub enum Failure {
    /// The platform refuses the bot for good (a rejected token): stop the channel, saying this.
    Fatal(String),
    /// Rate limited: wait this long, then try again.
    Wait(Duration, String),
    /// Anything else (its text already free of the token): back off, then try again.
    Retry(String),
}

/// Sleeps, or returns false when cancelled first.
pub async fn pause(cancel: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

/// A running channel's shared part: its pipeline, its status, and the tasks handling its
/// messages (at most 16 at once).
pub struct Runtime {
    name: &'static str,
    title: &'static str,
    pipeline: Arc<Pipeline>,
    status: StatusHandle,
    tasks: TaskTracker,
    permits: Arc<Semaphore>,
}

impl Runtime {
    /// Registers `P` on `board` and builds its pipeline.
    pub fn new<P: Platform>(
        ctx: ChannelContext,
        access: AccessPolicy,
        relay: RelayConfig,
        board: &StatusBoard,
    ) -> Self {
        let status = board.register(P::NAME, true);
        Self {
            name: P::NAME,
            title: P::TITLE,
            pipeline: Arc::new(Pipeline::new(
                P::NAME,
                ctx,
                access,
                relay,
                Some(status.clone()),
            )),
            status,
            tasks: TaskTracker::new(),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        }
    }

    /// The channel's status.
    pub fn status(&self) -> &StatusHandle {
        &self.status
    }

    /// Stops the channel for good: logs `message` and shows it in the status.
    pub fn fatal(&self, message: &str) {
        error!(
            channel = self.name,
            "{message}; the {} channel is stopped, the rest of the gateway keeps running",
            self.title
        );
        self.status.disconnected(message);
    }

    /// Repeats `call` (named `what` in the log and the status) until it succeeds. Each error
    /// goes through `classify`; None when it is [`Failure::Fatal`] or on shutdown.
    pub async fn until_ok<T, E, F, Fut>(
        &self,
        what: &str,
        cancel: &CancellationToken,
        backoff: &mut Backoff,
        mut call: F,
        classify: impl Fn(&E) -> Failure,
    ) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: IntoFuture<Output = Result<T, E>>,
    {
        loop {
            let result = tokio::select! {
                _ = cancel.cancelled() => return None,
                r = call().into_future() => r,
            };
            let wait = match result {
                Ok(v) => {
                    backoff.reset();
                    return Some(v);
                }
                Err(e) => match classify(&e) {
                    Failure::Fatal(message) => {
                        self.fatal(&message);
                        return None;
                    }
                    Failure::Wait(wait, message) => {
                        info!(
                            channel = self.name,
                            call = what,
                            wait_ms = wait.as_millis() as u64,
                            "{message}"
                        );
                        wait
                    }
                    Failure::Retry(message) => {
                        let wait = backoff.next_delay();
                        warn!(
                            channel = self.name,
                            call = what,
                            error = %message,
                            retry_in_ms = wait.as_millis() as u64,
                            "{} call failed; retrying",
                            self.title
                        );
                        self.status.disconnected(&format!("{what}: {message}"));
                        wait
                    }
                },
            };
            if !pause(cancel, wait).await {
                return None;
            }
        }
    }

    /// Hands a message to the pipeline on its own task (bounded in number), its place in its
    /// session's queue taken now: call it in arrival order. `bot_name` is the bot's user name
    /// (for `/command@bot_name`).
    pub async fn dispatch<S: ReplySink + 'static>(
        &self,
        inbound: Inbound,
        sink: S,
        bot_name: &str,
    ) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let pipeline = self.pipeline.clone();
        let bot_name = bot_name.to_owned();
        let channel = self.name;
        // In arrival order: a chat's messages are answered one after the other, in order.
        let place = pipeline.reserve(&inbound).await;
        self.tasks.spawn(async move {
            let _permit = permit;
            let outcome = pipeline
                .handle_in_turn(place, inbound, Some(&bot_name), &sink)
                .await;
            debug!(channel, ?outcome, "message handled");
        });
    }

    /// Runs `receiving` (the platform's connection and message loop) to its end, then waits for
    /// the messages being handled (at most [`SHUTDOWN_WAIT`]) and marks the channel stopped.
    pub async fn serve(&self, receiving: impl Future<Output = ()>) {
        receiving.await;
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_WAIT, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                channel = self.name,
                "messages still being handled at shutdown were abandoned"
            );
        }
        self.status.stopped();
        info!(channel = self.name, "{} channel stopped", self.title);
    }
}
