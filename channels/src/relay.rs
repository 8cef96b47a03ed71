//! Streaming an answer into a chat by editing one message at a throttled pace.
//!
//! A platform implements [`ReplySink`] (send a message, edit it, show "typing"); [`relay`] does
//! the rest for every platform: "typing" until the first text, a first message as soon as there is
//! text, edits at most every [`RelayConfig::edit_interval`] and only when the text changed, a new
//! message whenever the answer outgrows the platform's limit (split by [`crate::split`]), and a
//! final edit with the whole answer. Intermediate edits that hit a rate limit are skipped (the
//! next one catches up); the final ones wait the limit out.

use std::time::Duration;

use futures::StreamExt;
use open_clanker_core::{TurnError, TurnEvent, TurnStream};
use tokio::time::Instant;

use crate::backoff::{RetryPolicy, retry};
use crate::sink::{ReplySink, SendError};
use crate::split::split_markdown;

/// The relay's pace.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// Least time between two edits of the streaming message.
    pub edit_interval: Duration,
    /// How often "typing" is repeated before the first text (platforms show it for ~5 s).
    pub typing_interval: Duration,
    /// Retries of the final messages (429s waited out, network errors backed off).
    pub retry: RetryPolicy,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            edit_interval: Duration::from_millis(1500),
            typing_interval: Duration::from_secs(4),
            retry: RetryPolicy::default(),
        }
    }
}

/// How a relayed answer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOutcome {
    /// The whole text shown (the answer, plus a warning line when the turn failed).
    pub text: String,
    /// Messages the answer occupies.
    pub messages: usize,
    /// Edits made (the final ones included).
    pub edits: usize,
    /// The turn's error, when it failed.
    pub turn_error: Option<TurnError>,
    /// A platform error that kept (part of) the answer from being shown.
    pub send_error: Option<SendError>,
}

/// The messages of an answer on the platform, and what each shows.
struct Shown<H> {
    messages: Vec<(H, String)>,
    edits: usize,
}

impl<H: Clone + Send + Sync> Shown<H> {
    /// Brings the chat in line with `parts`: edits changed messages, sends missing ones. With
    /// `patient`, 429s are waited out and network errors retried; otherwise the first problem
    /// ends this round (returning how long to hold off for a 429).
    async fn sync<S: ReplySink<Handle = H>>(
        &mut self,
        sink: &S,
        parts: &[String],
        patient: Option<RetryPolicy>,
    ) -> Result<(), SendError> {
        for (i, part) in parts.iter().enumerate() {
            if let Some((handle, shown)) = self.messages.get(i) {
                if shown == part {
                    continue;
                }
                let handle = handle.clone();
                match patient {
                    Some(policy) => retry(policy, || sink.edit(&handle, part)).await?,
                    None => sink.edit(&handle, part).await?,
                }
                self.messages[i].1 = part.clone();
                self.edits += 1;
            } else {
                let handle = match patient {
                    Some(policy) => retry(policy, || sink.send(part)).await?,
                    None => sink.send(part).await?,
                };
                self.messages.push((handle, part.clone()));
            }
        }
        Ok(())
    }
}

/// What is shown when a turn fails.
pub fn failure_note(error: &TurnError) -> String {
    format!("⚠️ {error}")
}

/// Streams a turn's events into `sink`. Returns once the answer is fully shown (or could not be).
pub async fn relay<S: ReplySink>(
    sink: &S,
    mut events: TurnStream,
    cfg: RelayConfig,
) -> RelayOutcome {
    let limit = sink.max_len();
    let mut shown: Shown<S::Handle> = Shown {
        messages: Vec::new(),
        edits: 0,
    };
    let mut text = String::new();
    let mut dirty = false;
    let mut next_flush = Instant::now();
    let mut next_typing = Instant::now();
    let mut final_text: Option<String> = None;
    let mut turn_error = None;

    loop {
        let now = Instant::now();
        if shown.messages.is_empty() && !dirty && now >= next_typing {
            if let Err(e) = sink.typing().await {
                tracing::debug!(error = %e, "typing action failed");
            }
            next_typing = now + cfg.typing_interval;
        }
        if dirty && now >= next_flush {
            let parts = split_markdown(&text, limit);
            dirty = false;
            next_flush = now + cfg.edit_interval;
            match shown.sync(sink, &parts, None).await {
                Ok(()) => {}
                Err(SendError::RetryAfter(wait)) => {
                    // Hold off; the next round shows whatever has arrived by then.
                    next_flush = Instant::now() + wait;
                    dirty = true;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "intermediate update failed");
                    dirty = true;
                }
            }
        }
        let wake = if dirty {
            next_flush
        } else if shown.messages.is_empty() {
            next_typing
        } else {
            // Nothing to do until the next event.
            Instant::now() + Duration::from_secs(3600)
        };
        tokio::select! {
            event = events.next() => match event {
                Some(TurnEvent::Delta(d)) => {
                    if !d.is_empty() {
                        text.push_str(&d);
                        dirty = !text.trim().is_empty();
                    }
                }
                Some(TurnEvent::Completed(message)) => {
                    final_text = Some(message.content);
                    break;
                }
                Some(TurnEvent::Failed { error, partial }) => {
                    let partial = partial.map(|m| m.content).unwrap_or_else(|| text.clone());
                    let note = failure_note(&error);
                    final_text = Some(if partial.trim().is_empty() {
                        note
                    } else {
                        format!("{partial}\n\n{note}")
                    });
                    turn_error = Some(error);
                    break;
                }
                Some(_) => {}
                None => break,
            },
            _ = tokio::time::sleep_until(wake) => {}
        }
    }

    let mut text = final_text.unwrap_or(text);
    if text.trim().is_empty() {
        text = "(the model returned an empty answer)".to_owned();
    }
    let parts = split_markdown(&text, limit);
    // The final round keeps the pace too (platforms count edits against the chat's rate limit),
    // and honours a 429 that an intermediate round received.
    let changes = parts.len() != shown.messages.len()
        || shown
            .messages
            .iter()
            .zip(&parts)
            .any(|((_, shown), part)| shown != part);
    if changes {
        tokio::time::sleep_until(next_flush).await;
    }
    let send_error = match shown.sync(sink, &parts, Some(cfg.retry)).await {
        Ok(()) => None,
        Err(e) => {
            tracing::warn!(error = %e, "could not show the answer");
            Some(e)
        }
    };
    RelayOutcome {
        text,
        messages: shown.messages.len(),
        edits: shown.edits,
        turn_error,
        send_error,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    use open_clanker_core::{MessageStatus, Role, StoredMessage, Usage};

    /// A sink that records calls, with scripted failures.
    #[derive(Default)]
    pub(crate) struct FakeSink {
        pub limit: usize,
        pub calls: Mutex<Vec<String>>,
        pub texts: Mutex<Vec<String>>,
        /// Errors returned by the next sends/edits, first first.
        pub failures: Mutex<Vec<SendError>>,
    }

    impl FakeSink {
        pub fn new(limit: usize) -> Self {
            Self {
                limit,
                ..Default::default()
            }
        }
        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
        pub fn texts(&self) -> Vec<String> {
            self.texts.lock().unwrap().clone()
        }
        fn fail(&self) -> Option<SendError> {
            let mut f = self.failures.lock().unwrap();
            (!f.is_empty()).then(|| f.remove(0))
        }
    }

    #[async_trait::async_trait]
    impl ReplySink for FakeSink {
        type Handle = usize;
        fn max_len(&self) -> usize {
            self.limit
        }
        async fn typing(&self) -> Result<(), SendError> {
            self.calls.lock().unwrap().push("typing".into());
            Ok(())
        }
        async fn send(&self, markdown: &str) -> Result<usize, SendError> {
            if let Some(e) = self.fail() {
                self.calls.lock().unwrap().push("send!".into());
                return Err(e);
            }
            self.calls.lock().unwrap().push(format!("send:{markdown}"));
            let mut texts = self.texts.lock().unwrap();
            texts.push(markdown.to_owned());
            Ok(texts.len() - 1)
        }
        async fn edit(&self, handle: &usize, markdown: &str) -> Result<(), SendError> {
            if let Some(e) = self.fail() {
                self.calls.lock().unwrap().push("edit!".into());
                return Err(e);
            }
            self.calls
                .lock()
                .unwrap()
                .push(format!("edit{handle}:{markdown}"));
            self.texts.lock().unwrap()[*handle] = markdown.to_owned();
            Ok(())
        }
    }

    pub(crate) fn stored(content: &str) -> StoredMessage {
        StoredMessage {
            id: 2,
            session_id: "s".into(),
            role: Role::Assistant,
            content: content.into(),
            provider: None,
            model: None,
            usage: Usage::default(),
            status: MessageStatus::Complete,
            stop_reason: None,
            created_at_ms: 0,
            cost_micros: 0,
        }
    }

    /// A turn whose deltas arrive `gap` apart.
    fn turn(words: &[&str], gap: Duration) -> TurnStream {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let full: String = words.concat();
        Box::pin(async_stream(words, gap, full))
    }

    fn async_stream(
        words: Vec<String>,
        gap: Duration,
        full: String,
    ) -> impl futures::Stream<Item = TurnEvent> {
        futures::stream::unfold((0usize, words, full), move |(i, words, full)| async move {
            if i < words.len() {
                tokio::time::sleep(gap).await;
                let d = words[i].clone();
                Some((TurnEvent::Delta(d), (i + 1, words, full)))
            } else if i == words.len() {
                let done = TurnEvent::Completed(Box::new(stored(&full)));
                Some((done, (i + 1, words, full)))
            } else {
                None
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn streams_by_editing_one_message_at_a_throttled_pace() {
        let sink = FakeSink::new(4096);
        let words: Vec<String> = (0..20).map(|i| format!("w{i} ")).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let started = Instant::now();
        let out = relay(
            &sink,
            turn(&refs, Duration::from_millis(300)),
            RelayConfig::default(),
        )
        .await;
        let calls = sink.calls();
        assert_eq!(calls[0], "typing");
        assert_eq!(calls[1], "send:w0", "the first text is posted at once");
        let edits = calls.iter().filter(|c| c.starts_with("edit0:")).count();
        // 6 s of streaming at one edit per 1.5 s, plus the final one.
        assert!((3..=6).contains(&edits), "{calls:#?}");
        assert_eq!(out.edits, edits);
        assert_eq!(sink.texts(), [words.concat().trim_end().to_owned()]);
        assert_eq!(out.messages, 1);
        assert!(started.elapsed() >= Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn long_answers_continue_in_new_messages() {
        let sink = FakeSink::new(100);
        let words: Vec<String> = (0..100).map(|i| format!("tok{i} ")).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let out = relay(
            &sink,
            turn(&refs, Duration::from_millis(50)),
            RelayConfig::default(),
        )
        .await;
        let texts = sink.texts();
        assert!(texts.len() >= 6, "{texts:#?}");
        assert!(texts.iter().all(|t| t.chars().count() <= 100));
        assert_eq!(texts.join(" "), words.concat().trim_end());
        assert_eq!(out.messages, texts.len());
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_delay_edits_and_are_waited_out_at_the_end() {
        let sink = FakeSink::new(4096);
        sink.failures.lock().unwrap().extend([
            SendError::RetryAfter(Duration::from_secs(2)),
            SendError::RetryAfter(Duration::from_secs(1)),
        ]);
        let out = relay(
            &sink,
            turn(&["a ", "b"], Duration::from_millis(10)),
            RelayConfig::default(),
        )
        .await;
        assert_eq!(sink.texts(), ["a b"], "{:?}", sink.calls());
        assert!(out.send_error.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_show_the_partial_answer_and_a_warning() {
        let sink = FakeSink::new(4096);
        let events: TurnStream = Box::pin(futures::stream::iter(vec![
            TurnEvent::Delta("half an ".into()),
            TurnEvent::Failed {
                error: TurnError::Unavailable("the provider is down".into()),
                partial: Some(Box::new(stored("half an"))),
            },
        ]));
        let out = relay(&sink, events, RelayConfig::default()).await;
        assert_eq!(out.text, "half an\n\n⚠️ the provider is down");
        assert_eq!(sink.texts(), std::slice::from_ref(&out.text));
        assert!(out.turn_error.is_some());

        let sink = FakeSink::new(4096);
        let events: TurnStream = Box::pin(futures::stream::iter(vec![TurnEvent::Completed(
            Box::new(stored("")),
        )]));
        let out = relay(&sink, events, RelayConfig::default()).await;
        assert!(out.text.contains("empty answer"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fatal_final_error_is_reported() {
        let sink = FakeSink::new(4096);
        sink.failures
            .lock()
            .unwrap()
            .extend([SendError::Fatal("chat not found".into())]);
        let events: TurnStream = Box::pin(futures::stream::iter(vec![TurnEvent::Completed(
            Box::new(stored("hi")),
        )]));
        let out = relay(&sink, events, RelayConfig::default()).await;
        assert_eq!(
            out.send_error,
            Some(SendError::Fatal("chat not found".into()))
        );
    }
}
