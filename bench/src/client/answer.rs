//! One chat's answer as it arrives: what the chat expects, the timings it records, the check of
//! the stored answer, and the reader of Server-Sent Events answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use futures::StreamExt;
use open_clanker_client::pb;
use tokio::sync::watch;

/// What one chat saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Request sent -> first text delta received, microseconds.
    pub ttft_us: Option<u64>,
    /// Request sent -> the turn's first event (`started`, the role chunk, `message_start`).
    pub started_us: Option<u64>,
    /// Request sent -> end of the answer.
    pub total_us: u64,
    /// Gaps between consecutive text deltas, microseconds.
    pub gaps_us: Vec<u32>,
    /// Text deltas received.
    pub deltas: usize,
    /// Why it failed: a gRPC code name (`UNAVAILABLE`), `HTTP_503`, `WRONG_ANSWER`, `TIMEOUT`, ...
    pub error: Option<String>,
}

/// What a chat expects.
#[derive(Clone)]
pub enum Mode {
    /// The whole answer, `tok0 tok1 …` with this many words, stored (checked).
    Complete { expected: Arc<str> },
    /// Keep the stream open after its first delta until `release` turns true; `opened` counts
    /// streams that got their first delta.
    Hold {
        release: watch::Receiver<bool>,
        opened: Arc<AtomicUsize>,
    },
}

/// The answer `#tokens=N` makes the stand-in send.
pub fn expected_answer(tokens: usize) -> Arc<str> {
    let words: Vec<String> = (0..tokens).map(|i| format!("tok{i}")).collect();
    Arc::from(words.join(" "))
}

/// Times the events of one chat.
pub(super) struct Recorder {
    t0: Instant,
    last: Option<Instant>,
    out: Outcome,
    pub(super) text: String,
}

impl Recorder {
    pub(super) fn new(t0: Instant) -> Self {
        Self {
            t0,
            last: None,
            out: Outcome::default(),
            text: String::new(),
        }
    }

    pub(super) fn started(&mut self) {
        if self.out.started_us.is_none() {
            self.out.started_us = Some(self.t0.elapsed().as_micros() as u64);
        }
    }

    /// Returns true for the first delta.
    pub(super) fn delta(&mut self, text: &str) -> bool {
        let now = Instant::now();
        let first = match self.last {
            None => {
                self.out.ttft_us = Some((now - self.t0).as_micros() as u64);
                true
            }
            Some(prev) => {
                self.out
                    .gaps_us
                    .push((now - prev).as_micros().min(u32::MAX as u128) as u32);
                false
            }
        };
        self.last = Some(now);
        self.out.deltas += 1;
        self.text.push_str(text);
        first
    }

    pub(super) fn finish(mut self, error: Option<String>) -> Outcome {
        self.out.total_us = self.t0.elapsed().as_micros() as u64;
        self.out.error = error;
        self.out
    }
}

/// A stored answer as the gRPC `completed` event carries it: right text, complete, with an id.
pub(super) fn check_stored(message: Option<&pb::Message>, expected: &str) -> Option<String> {
    match message {
        None => Some("NO_COMPLETION".into()),
        Some(m) if m.id <= 0 => Some("NOT_STORED".into()),
        Some(m) if m.status != pb::MessageStatus::Complete as i32 => Some("NOT_COMPLETE".into()),
        Some(m) if m.content != expected => Some("WRONG_ANSWER".into()),
        Some(_) => None,
    }
}

/// In `Hold` mode: the receiver to wait on for the release.
pub(super) fn held(mode: &Mode) -> Option<watch::Receiver<bool>> {
    match mode {
        Mode::Hold { release, .. } => Some(release.clone()),
        Mode::Complete { .. } => None,
    }
}

/// A held stream let go: fine once it had its first delta.
pub(super) fn released(rec: Recorder) -> Outcome {
    let error = rec.last.is_none().then(|| "NOT_OPENED".to_string());
    rec.finish(error)
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum SseKind {
    Anthropic,
    OpenAi,
}

/// Reads a Server-Sent Events answer (Anthropic's or the gateway's OpenAI-shaped one).
pub(super) async fn sse_chat(
    sent: reqwest::Result<reqwest::Response>,
    mut rec: Recorder,
    mode: &Mode,
    kind: SseKind,
) -> Outcome {
    let response = match sent {
        Ok(r) => r,
        Err(_) => return rec.finish(Some("TRANSPORT".into())),
    };
    if !response.status().is_success() {
        return rec.finish(Some(format!("HTTP_{}", response.status().as_u16())));
    }
    let mut body = response.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut finished = false;
    let mut error: Option<String> = None;
    'read: loop {
        let chunk = match held(mode) {
            Some(mut release) => tokio::select! {
                c = body.next() => c,
                _ = release.wait_for(|r| *r) => return released(rec),
            },
            None => body.next().await,
        };
        match chunk {
            Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
            Some(Err(_)) => return rec.finish(Some("TRANSPORT".into())),
            None => break,
        }
        while let Some(end) = find_event_end(&buf) {
            let event: Vec<u8> = buf.drain(..end).collect();
            let mut data = String::new();
            for line in String::from_utf8_lossy(&event).lines() {
                if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if data.is_empty() {
                continue;
            }
            if data == "[DONE]" {
                break 'read;
            }
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&data) else {
                return rec.finish(Some("BAD_EVENT".into()));
            };
            if let Some(e) = json.get("error") {
                let code = e
                    .get("code")
                    .or_else(|| e.get("type"))
                    .and_then(|c| c.as_str())
                    .unwrap_or("ERROR_EVENT");
                error = Some(code.to_ascii_uppercase());
                break 'read;
            }
            let delta = match kind {
                SseKind::Anthropic => match json.get("type").and_then(|t| t.as_str()) {
                    Some("message_start") => {
                        rec.started();
                        None
                    }
                    Some("content_block_delta") => json
                        .pointer("/delta/text")
                        .and_then(|t| t.as_str())
                        .map(str::to_owned),
                    Some("message_stop") => {
                        finished = true;
                        None
                    }
                    _ => None,
                },
                SseKind::OpenAi => {
                    let choice = json.pointer("/choices/0");
                    if choice
                        .and_then(|c| c.get("finish_reason"))
                        .is_some_and(|f| !f.is_null())
                    {
                        finished = true;
                    }
                    match choice
                        .and_then(|c| c.pointer("/delta/content"))
                        .and_then(|t| t.as_str())
                    {
                        Some("") => {
                            rec.started();
                            None
                        }
                        Some(t) => Some(t.to_owned()),
                        None => None,
                    }
                }
            };
            if let Some(text) = delta
                && rec.delta(&text)
                && let Mode::Hold { opened, .. } = mode
            {
                opened.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let error = match mode {
        Mode::Hold { .. } => Some(error.unwrap_or_else(|| "ENDED_EARLY".into())),
        Mode::Complete { expected } => error.or_else(|| {
            if !finished {
                Some("NO_COMPLETION".into())
            } else if rec.text != **expected {
                Some("WRONG_ANSWER".into())
            } else {
                None
            }
        }),
    };
    rec.finish(error)
}

/// The end (exclusive) of the first complete event in `buf`: after a blank line.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_event_ends() {
        assert_eq!(&*expected_answer(3), "tok0 tok1 tok2");
        assert_eq!(&*expected_answer(0), "");
        assert_eq!(find_event_end(b"data: x\n\nrest"), Some(9));
        assert_eq!(find_event_end(b"data: x\r\n\r\n"), Some(11));
        assert_eq!(find_event_end(b"data: x\n"), None);
    }

    #[test]
    fn stored_answers_are_checked() {
        let good = pb::Message {
            id: 7,
            content: "tok0".into(),
            status: pb::MessageStatus::Complete as i32,
            ..Default::default()
        };
        assert_eq!(check_stored(Some(&good), "tok0"), None);
        assert_eq!(check_stored(None, "tok0").as_deref(), Some("NO_COMPLETION"));
        assert_eq!(
            check_stored(Some(&good), "tok1").as_deref(),
            Some("WRONG_ANSWER")
        );
        let unsaved = pb::Message { id: 0, ..good };
        assert_eq!(
            check_stored(Some(&unsaved), "tok0").as_deref(),
            Some("NOT_STORED")
        );
    }
}
