//! One running turn: streams the provider's answer to the caller, checkpoints it while it
//! streams, fails over to the next candidate before the first token, and stores it when it ends.

use std::sync::Arc;

use futures::StreamExt;
use open_clanker_core::{
    ChatMessage, MessageStatus, Role, StoredMessage, TurnError, TurnEvent, Usage, now_ms,
};
use open_clanker_providers::{CompletionRequest, ProviderError, StreamEvent};
use open_clanker_store::{NewMessage, Store};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use crate::observe::{Observer, TurnObserver};
use crate::pricing::{PriceTable, usd};
use crate::route::Candidate;
use crate::rules::{provider_error, store_error};
use crate::shares::SharePermit;
use crate::spend::DaySpend;

/// The answer of a stateless turn, shaped like a stored message (id 0).
pub(crate) fn unstored(m: NewMessage) -> StoredMessage {
    StoredMessage {
        id: 0,
        session_id: m.session_id,
        role: m.role,
        content: m.content,
        provider: m.provider,
        model: m.model,
        usage: m.usage,
        status: m.status,
        stop_reason: m.stop_reason,
        created_at_ms: now_ms(),
        cost_micros: m.cost_micros,
    }
}

/// How long streamed text may wait before it is checkpointed (stored while the answer goes on):
/// at most one write per turn per period, none for an answer done within one, and a `kill -9`
/// loses at most about this much of an answer.
pub(crate) const CHECKPOINT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// One running turn.
pub(crate) struct Turn {
    /// `None` for a stateless turn: nothing is stored.
    pub(crate) store: Option<Store>,
    /// The requested provider and model, then the fallbacks.
    pub(crate) chain: Vec<Candidate>,
    /// Index into `chain` of the candidate that is answering.
    pub(crate) answered_by: usize,
    pub(crate) system: Option<String>,
    pub(crate) messages: Vec<ChatMessage>,
    pub(crate) session_id: String,
    /// The answer's row and creation time, once a checkpoint stored its beginning.
    pub(crate) answer: Option<(i64, i64)>,
    pub(crate) tx: mpsc::Sender<TurnEvent>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) prices: Arc<PriceTable>,
    pub(crate) day_spend: Arc<DaySpend>,
    /// Held until the turn ends: the gateway's slot and the caller's.
    pub(crate) _permit: (OwnedSemaphorePermit, Option<SharePermit>),
    /// Sees the turn as an active stream until it ends (the server counts it for `/metrics`).
    pub(crate) metrics: Box<dyn TurnObserver>,
    pub(crate) observer: Arc<dyn Observer>,
}

/// How one provider's attempt ended.
enum Attempt {
    /// Nothing reached the caller yet: another provider may take over.
    FailedBeforeFirstToken(ProviderError),
    Ended(End),
}

/// How the answer ended.
enum End {
    Done(Option<String>),
    Failed(TurnError),
    CallerGone,
    Shutdown,
}

impl Turn {
    /// The turn's task, started once the user's message is stored (and `started` queued for the
    /// caller). Its future is allocated once per open stream and sized by its largest state, so
    /// the phases around the long wait for the provider's words (opening the stream, checkpoints,
    /// storing the answer) are boxed: only while they run do they take memory, and an idle
    /// stream's task holds the relay's state alone (docs/BENCHMARKS.md, memory per stream).
    pub(crate) async fn run(mut self) {
        let begun = std::time::Instant::now();
        let mut text = String::new();
        let mut usage = Usage::default();
        let end = self.relay(&mut text, &mut usage).await;
        Box::pin(self.finish(begun, end, text, usage)).await;
    }

    /// Stores what has arrived of the answer while it streams, through the store's writer: the
    /// first time as a new message marked interrupted (stop reason `streaming`), then by updating
    /// that row. A failure only costs the checkpoint; the turn goes on.
    async fn checkpoint(&mut self, c: &Candidate, text: &str) {
        let Some(store) = &self.store else {
            return;
        };
        let span = tracing::info_span!("store.checkpoint_answer", bytes = text.len());
        let result = match self.answer {
            Some((id, _)) => {
                store
                    .update_answer(id, text.to_owned())
                    .instrument(span)
                    .await
            }
            None => store
                .start_answer(NewMessage {
                    session_id: self.session_id.clone(),
                    role: Role::Assistant,
                    content: text.to_owned(),
                    provider: Some(c.kind.to_string()),
                    model: Some(c.model.clone()),
                    usage: Usage::default(),
                    status: MessageStatus::Interrupted,
                    stop_reason: None,
                    cost_micros: 0,
                })
                .instrument(span)
                .await
                .map(|m| self.answer = Some((m.id, m.created_at_ms))),
        };
        if let Err(e) = result {
            debug!(error = %e, "could not checkpoint the answer; it is stored when it ends");
        }
    }

    /// Stores the answer (whole or partial) and sends the caller its last event.
    async fn finish(self, begun: std::time::Instant, end: End, text: String, usage: Usage) {
        let answered = self.chain[self.answered_by].clone();
        let (status, stop_reason, error) = match end {
            End::Done(reason) => (MessageStatus::Complete, reason, None),
            End::Failed(e) => (
                MessageStatus::Interrupted,
                Some("error".to_string()),
                Some(e),
            ),
            End::CallerGone => (
                MessageStatus::Interrupted,
                Some("cancelled".to_string()),
                None,
            ),
            End::Shutdown => (
                MessageStatus::Interrupted,
                Some("shutdown".to_string()),
                Some(TurnError::Unavailable(
                    "the gateway shut down before the answer was complete".into(),
                )),
            ),
        };
        let stored = if status == MessageStatus::Complete || !text.is_empty() {
            let cost_micros = self.prices.cost_micros(&answered.model, usage);
            let message = NewMessage {
                session_id: self.session_id.clone(),
                role: Role::Assistant,
                content: text,
                provider: Some(answered.kind.to_string()),
                model: Some(answered.model.clone()),
                usage,
                status,
                stop_reason,
                cost_micros,
            };
            self.day_spend.add(cost_micros).await;
            self.observer
                .cost(answered.kind.as_str(), &answered.model, usd(cost_micros));
            let span = tracing::info_span!("store.append_message", role = "assistant");
            let stored = match (&self.store, self.answer) {
                // Checkpointed while it streamed: its row gets the whole answer.
                (Some(store), Some((id, created_at_ms))) => {
                    store
                        .finish_answer(id, created_at_ms, message)
                        .instrument(span)
                        .await
                }
                (Some(store), None) => store.append_message(message).instrument(span).await,
                (None, _) => Ok(unstored(message)),
            };
            match stored {
                Ok(m) => Some(m),
                Err(e) => {
                    warn!(error = %e, "could not store the answer");
                    let _ = self
                        .tx
                        .send(TurnEvent::Failed {
                            error: store_error(e),
                            partial: None,
                        })
                        .await;
                    return;
                }
            }
        } else {
            None
        };
        let elapsed_ms = begun.elapsed().as_millis() as u64;
        self.metrics.finish(
            answered.kind.as_str(),
            &answered.model,
            status,
            error.is_some(),
            &usage,
        );
        match (error, stored) {
            (None, Some(m)) if status == MessageStatus::Complete => {
                info!(
                    elapsed_ms,
                    input_tokens = usage.input_tokens,
                    output_tokens = usage.output_tokens,
                    "turn completed"
                );
                let _ = self.tx.send(TurnEvent::Completed(Box::new(m))).await;
            }
            (None, _) => debug!(elapsed_ms, "caller went away; partial answer kept"),
            (Some(error), partial) => {
                warn!(elapsed_ms, error = %error, "turn failed");
                tracing::Span::current().record("otel.status_code", "ERROR");
                let _ = self
                    .tx
                    .send(TurnEvent::Failed {
                        error,
                        partial: partial.map(Box::new),
                    })
                    .await;
            }
        }
    }

    fn request(&self, c: &Candidate) -> CompletionRequest {
        CompletionRequest {
            model: c.model.clone(),
            system: self.system.clone(),
            messages: self.messages.clone(),
            max_tokens: c.max_tokens,
            temperature: None,
        }
    }

    /// Streams the answer to the caller. A provider that fails before its first token with a
    /// transient error (429, 5xx, timeout, broken stream) hands the turn to the next candidate;
    /// after the first token a failure ends the turn.
    async fn relay(&mut self, text: &mut String, usage: &mut Usage) -> End {
        let mut index = 0;
        loop {
            self.answered_by = index;
            let candidate = self.chain[index].clone();
            let end = self
                .relay_one(&candidate, text, usage)
                .instrument(tracing::info_span!(
                    "provider.stream",
                    provider = %candidate.kind,
                    model = %candidate.model
                ))
                .await;
            let next = index + 1;
            match end {
                Attempt::FailedBeforeFirstToken(e)
                    if e.is_transient() && next < self.chain.len() =>
                {
                    let to = &self.chain[next];
                    warn!(
                        from = %format!("{}/{}", candidate.kind, candidate.model),
                        to = %format!("{}/{}", to.kind, to.model),
                        error = %e,
                        "provider failed before the first token; failing over"
                    );
                    self.observer.failover(
                        &format!("{}/{}", candidate.kind, candidate.model),
                        &format!("{}/{}", to.kind, to.model),
                    );
                    index = next;
                }
                Attempt::FailedBeforeFirstToken(e) => return End::Failed(provider_error(&e)),
                Attempt::Ended(end) => return end,
            }
        }
    }

    /// Sends the caller an event; `false` when the caller is gone. The channel almost always
    /// has room: only a caller that far behind is waited for, in a boxed future, so the wait
    /// does not enlarge every idle stream's task.
    async fn emit(&self, event: TurnEvent) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(event)) => {
                Box::pin(self.tx.send(event)).await.is_ok()
            }
        }
    }

    async fn relay_one(&mut self, c: &Candidate, text: &mut String, usage: &mut Usage) -> Attempt {
        let opening = c.client.stream(self.request(c));
        let mut events = tokio::select! {
            r = opening => match r {
                Ok(s) => s,
                Err(e) => return Attempt::FailedBeforeFirstToken(e),
            },
            _ = self.tx.closed() => return Attempt::Ended(End::CallerGone),
            _ = self.shutdown.cancelled() => return Attempt::Ended(End::Shutdown),
        };
        // Armed by text not stored yet: the checkpoint that stores it (boxed: nothing while
        // disarmed, so idle streams stay small).
        let mut checkpoint: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            let next = tokio::select! {
                next = events.next() => Some(next),
                _ = self.tx.closed() => return Attempt::Ended(End::CallerGone),
                _ = self.shutdown.cancelled() => return Attempt::Ended(End::Shutdown),
                _ = async { if let Some(due) = checkpoint.as_mut() { due.await } },
                    if checkpoint.is_some() => None,
            };
            let Some(next) = next else {
                checkpoint = None;
                Box::pin(self.checkpoint(c, text)).await;
                continue;
            };
            match next {
                Some(Ok(StreamEvent::TextDelta(delta))) => {
                    if delta.is_empty() {
                        continue;
                    }
                    text.push_str(&delta);
                    if checkpoint.is_none() && self.store.is_some() {
                        checkpoint = Some(Box::pin(tokio::time::sleep(CHECKPOINT_AFTER)));
                    }
                    self.metrics.first_token(c.kind.as_str());
                    if !self.emit(TurnEvent::Delta(delta)).await {
                        return Attempt::Ended(End::CallerGone);
                    }
                }
                Some(Ok(StreamEvent::Usage(u))) => {
                    *usage = u;
                    if !self.emit(TurnEvent::Usage(u)).await {
                        return Attempt::Ended(End::CallerGone);
                    }
                }
                Some(Ok(StreamEvent::Done { stop_reason })) => {
                    return Attempt::Ended(End::Done(stop_reason));
                }
                Some(Err(e)) if text.is_empty() => return Attempt::FailedBeforeFirstToken(e),
                Some(Err(e)) => return Attempt::Ended(End::Failed(provider_error(&e))),
                None => {
                    return Attempt::Ended(End::Failed(TurnError::Unavailable(format!(
                        "{} ended the answer without finishing it",
                        c.kind
                    ))));
                }
            }
        }
    }
}
