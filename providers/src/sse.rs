//! Turning a streamed HTTP response into [`StreamEvent`]s: Server-Sent Events are parsed by
//! `eventsource-stream`; a provider-specific [`Decoder`] turns them into events.

use std::collections::VecDeque;
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::StreamExt;
use futures::stream::BoxStream;
use open_clanker_core::ProviderKind;

use crate::error::{self, ProviderError, Redactor};
use crate::http::ClientLease;
use crate::{EventStream, StreamEvent};

/// How long the rest of a finished response is read in the background, so that its connection can
/// go back to the pool.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Turns one provider's SSE events into [`StreamEvent`]s.
pub(crate) trait Decoder: Send + 'static {
    /// Handles one event, pushing what it yields to `out`. Returns `true` once the answer is
    /// complete (`Done` pushed).
    fn event(
        &mut self,
        event: &Event,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError>;

    /// The response body ended without a completing event: push the closing events if that is a
    /// clean end for this provider, else return the error.
    fn end(&mut self, out: &mut VecDeque<StreamEvent>) -> Result<(), ProviderError>;
}

type SseStream = BoxStream<'static, Result<Event, EventStreamError<reqwest::Error>>>;

struct State<D> {
    sse: Option<SseStream>,
    /// Counts the request in flight on its client while the body is read; let go with `sse`.
    lease: Option<ClientLease>,
    decoder: D,
    pending: VecDeque<StreamEvent>,
    /// The error to yield once `pending` is empty; ends the stream.
    failure: Option<ProviderError>,
    kind: ProviderKind,
    idle_timeout: Duration,
    redactor: Redactor,
}

/// The events of a successful streamed response, decoded by `decoder`. Ends after `Done`, or with
/// one `Err`. `lease` is held until the body is finished (or its rest drained) or the stream is
/// dropped.
pub(crate) fn decode<D: Decoder>(
    response: reqwest::Response,
    lease: ClientLease,
    decoder: D,
    kind: ProviderKind,
    idle_timeout: Duration,
    redactor: Redactor,
) -> EventStream {
    let state = State {
        sse: Some(response.bytes_stream().eventsource().boxed()),
        lease: Some(lease),
        decoder,
        pending: VecDeque::new(),
        failure: None,
        kind,
        idle_timeout,
        redactor,
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.pending.pop_front() {
                return Some((Ok(event), state));
            }
            if let Some(failure) = state.failure.take() {
                state.sse = None;
                state.lease = None;
                return Some((Err(failure), state));
            }
            let sse = state.sse.as_mut()?;
            match sse.next().await {
                Some(Ok(event)) => match state.decoder.event(&event, &mut state.pending) {
                    Ok(false) => {}
                    Ok(true) => {
                        if let Some(rest) = state.sse.take() {
                            drain_in_background(rest, state.lease.take());
                        }
                    }
                    Err(e) => state.failure = Some(e),
                },
                Some(Err(e)) => {
                    state.failure = Some(body_error(
                        state.kind,
                        state.idle_timeout,
                        &state.redactor,
                        e,
                    ))
                }
                None => {
                    state.sse = None;
                    state.lease = None;
                    if let Err(e) = state.decoder.end(&mut state.pending) {
                        state.failure = Some(e);
                    }
                }
            }
        }
    })
    .boxed()
}

/// Reads what is left of a finished response (normally just the end of the body) so that the
/// connection is reused, without holding up the caller. The request stays in flight on its client
/// (`lease`) until then.
fn drain_in_background(mut rest: SseStream, lease: Option<ClientLease>) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            let _lease = lease;
            let _ =
                tokio::time::timeout(
                    DRAIN_LIMIT,
                    async move { while rest.next().await.is_some() {} },
                )
                .await;
        });
    }
}

fn body_error(
    kind: ProviderKind,
    idle_timeout: Duration,
    redactor: &Redactor,
    e: EventStreamError<reqwest::Error>,
) -> ProviderError {
    match e {
        EventStreamError::Transport(e) if e.is_timeout() => ProviderError::Timeout {
            provider: kind,
            message: format!("no data for {idle_timeout:?} while streaming the answer"),
        },
        EventStreamError::Transport(e) => ProviderError::Stream {
            provider: kind,
            message: format!(
                "the connection broke while streaming the answer: {}",
                redactor.clean(&error::error_chain(&e))
            ),
        },
        EventStreamError::Utf8(e) => ProviderError::Stream {
            provider: kind,
            message: format!("the stream is not valid UTF-8: {e}"),
        },
        EventStreamError::Parser(e) => ProviderError::Stream {
            provider: kind,
            message: format!(
                "the stream is not valid Server-Sent Events: {}",
                redactor.clean(&e.to_string())
            ),
        },
    }
}

/// The JSON payload of an event, or a `Stream` error naming what was malformed.
pub(crate) fn json_data(
    kind: ProviderKind,
    what: &str,
    event: &Event,
    redactor: &Redactor,
) -> Result<serde_json::Value, ProviderError> {
    serde_json::from_str(&event.data).map_err(|e| ProviderError::Stream {
        provider: kind,
        message: format!(
            "malformed {what} event ({e}): {}",
            redactor.clean(&event.data)
        ),
    })
}
