//! One streamed chat, over each protocol the gateway speaks (and straight to the stand-in, as the
//! baseline), timed on arrival of each event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use open_clanker_client::pb;
use pb::chat_response::Event;
use pb::chat_service_client::ChatServiceClient;
use prost::Message as _;
use serde::Serialize;
use tonic::transport::Channel;

mod answer;

pub use answer::{Mode, Outcome, expected_answer};
use answer::{Recorder, SseKind, check_stored, held, released, sse_chat};

/// How a chat reaches the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// gRPC over HTTP/2 (`ChatService/Chat`), K streams per connection.
    Grpc,
    /// gRPC-Web over HTTP/1.1, one connection per stream.
    GrpcWeb,
    /// The OpenAI-compatible endpoint (`POST /v1/chat/completions`, `stream: true`) over HTTP/1.1.
    Openai,
    /// Straight to the stand-in's Anthropic Messages API: the baseline (no gateway).
    Direct,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::GrpcWeb => "grpc-web",
            Protocol::Openai => "openai",
            Protocol::Direct => "direct",
        }
    }
}

fn code_name(code: tonic::Code) -> String {
    open_clanker_proto::code_name(code).to_string()
}

/// Sends chats over one protocol.
#[derive(Clone)]
pub struct Driver {
    pub protocol: Protocol,
    grpc: Arc<Vec<ChatServiceClient<Channel>>>,
    http: reqwest::Client,
    /// The gateway's (or for `Direct` the stand-in's) base URL, `http://host:port`.
    base: Arc<str>,
    api_key: Arc<str>,
    /// Distinguishes this run's session keys (OpenAI endpoint).
    run_tag: Arc<str>,
    /// Numbers the session keys: every chat of this driver gets a new session.
    sessions: Arc<AtomicUsize>,
}

impl Driver {
    /// Connects `connections` gRPC channels (one HTTP/2 connection each) for `Grpc`; the HTTP/1.1
    /// protocols open one connection per concurrent stream on demand.
    pub async fn new(
        protocol: Protocol,
        base: &str,
        connections: usize,
        api_key: &str,
        run_tag: &str,
    ) -> Result<Driver, String> {
        let mut grpc = Vec::new();
        if protocol == Protocol::Grpc {
            for _ in 0..connections.max(1) {
                let channel = tonic::transport::Endpoint::from_shared(base.to_string())
                    .map_err(|e| e.to_string())?
                    .connect_timeout(Duration::from_secs(5))
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .map_err(|e| format!("cannot connect to {base}: {e}"))?;
                grpc.push(ChatServiceClient::new(channel));
            }
        }
        let http = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Driver {
            protocol,
            grpc: Arc::new(grpc),
            http,
            base: Arc::from(base.trim_end_matches('/')),
            api_key: Arc::from(api_key),
            run_tag: Arc::from(run_tag),
            sessions: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Runs chat number `i` with `text`, bounded by `timeout`.
    pub async fn chat(&self, i: usize, text: String, mode: Mode, timeout: Duration) -> Outcome {
        let t0 = Instant::now();
        let run = async {
            match self.protocol {
                Protocol::Grpc => self.grpc_chat(i, text, &mode, t0).await,
                Protocol::GrpcWeb => self.grpc_web_chat(text, &mode, t0).await,
                Protocol::Openai => self.openai_chat(text, &mode, t0).await,
                Protocol::Direct => self.direct_chat(text, &mode, t0).await,
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome {
                total_us: t0.elapsed().as_micros() as u64,
                error: Some("TIMEOUT".into()),
                ..Outcome::default()
            },
        }
    }

    async fn grpc_chat(&self, i: usize, text: String, mode: &Mode, t0: Instant) -> Outcome {
        let mut client = self.grpc[i % self.grpc.len()].clone();
        let mut rec = Recorder::new(t0);
        let request = pb::ChatRequest {
            session: None,
            text,
            provider: String::new(),
            model: String::new(),
        };
        let mut stream = match client.chat(request).await {
            Ok(r) => r.into_inner(),
            Err(s) => return rec.finish(Some(code_name(s.code()))),
        };
        let mut completed: Option<pb::Message> = None;
        let mut error_event: Option<String> = None;
        loop {
            let next = match held(mode) {
                Some(mut release) => tokio::select! {
                    m = stream.message() => m,
                    _ = release.wait_for(|r| *r) => return released(rec),
                },
                None => stream.message().await,
            };
            match next {
                Ok(Some(pb::ChatResponse { event: Some(event) })) => match event {
                    Event::Started(_) => rec.started(),
                    Event::Delta(d) => {
                        if rec.delta(&d.text)
                            && let Mode::Hold { opened, .. } = mode
                        {
                            opened.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Event::Usage(_) => {}
                    Event::Completed(c) => completed = c.message,
                    Event::Error(e) => error_event = Some(e.code),
                },
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(s) => {
                    let code = error_event.unwrap_or_else(|| code_name(s.code()));
                    return rec.finish(Some(code));
                }
            }
        }
        let error = match mode {
            Mode::Complete { expected } => error_event.or_else(|| {
                check_stored(completed.as_ref(), expected)
                    .or_else(|| (rec.text != **expected).then(|| "WRONG_ANSWER".to_string()))
            }),
            Mode::Hold { .. } => Some(error_event.unwrap_or_else(|| "ENDED_EARLY".into())),
        };
        rec.finish(error)
    }

    async fn grpc_web_chat(&self, text: String, mode: &Mode, t0: Instant) -> Outcome {
        let mut rec = Recorder::new(t0);
        let request = pb::ChatRequest {
            session: None,
            text,
            provider: String::new(),
            model: String::new(),
        };
        let message = request.encode_to_vec();
        let mut body = Vec::with_capacity(5 + message.len());
        body.push(0u8);
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(&message);
        let sent = self
            .http
            .post(format!("{}/openclanker.v1.ChatService/Chat", self.base))
            .header("content-type", "application/grpc-web+proto")
            .header("accept", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(_) => return rec.finish(Some("TRANSPORT".into())),
        };
        if !response.status().is_success() {
            return rec.finish(Some(format!("HTTP_{}", response.status().as_u16())));
        }
        if let Some(status) = header_status(response.headers())
            && status != 0
        {
            return rec.finish(Some(code_name(tonic::Code::from_i32(status))));
        }
        let mut body = response.bytes_stream();
        let mut buf = BytesMut::new();
        let mut completed: Option<pb::Message> = None;
        let mut error_event: Option<String> = None;
        let mut trailer_status: Option<i32> = None;
        loop {
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
            while buf.len() >= 5 {
                let flag = buf[0];
                let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                if buf.len() < 5 + len {
                    break;
                }
                buf.advance(5);
                let frame = buf.split_to(len);
                if flag & 0x80 != 0 {
                    let text = String::from_utf8_lossy(&frame);
                    trailer_status = text.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        (k.trim().eq_ignore_ascii_case("grpc-status"))
                            .then(|| v.trim().parse().ok())
                            .flatten()
                    });
                    continue;
                }
                match pb::ChatResponse::decode(frame.freeze()) {
                    Ok(pb::ChatResponse { event: Some(event) }) => match event {
                        Event::Started(_) => rec.started(),
                        Event::Delta(d) => {
                            if rec.delta(&d.text)
                                && let Mode::Hold { opened, .. } = mode
                            {
                                opened.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Event::Usage(_) => {}
                        Event::Completed(c) => completed = c.message,
                        Event::Error(e) => error_event = Some(e.code),
                    },
                    Ok(_) => {}
                    Err(_) => return rec.finish(Some("BAD_FRAME".into())),
                }
            }
        }
        let error = match (trailer_status, mode) {
            (_, Mode::Hold { .. }) => Some(error_event.unwrap_or_else(|| "ENDED_EARLY".into())),
            (Some(0), Mode::Complete { expected }) => error_event.or_else(|| {
                check_stored(completed.as_ref(), expected)
                    .or_else(|| (rec.text != **expected).then(|| "WRONG_ANSWER".to_string()))
            }),
            (Some(code), _) => {
                Some(error_event.unwrap_or_else(|| code_name(tonic::Code::from_i32(code))))
            }
            (None, _) => Some("NO_TRAILERS".into()),
        };
        rec.finish(error)
    }

    async fn openai_chat(&self, text: String, mode: &Mode, t0: Instant) -> Outcome {
        let rec = Recorder::new(t0);
        // A new session per chat (a named one, so that the turn is stored).
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        let key = format!("bench-{}-{n}", self.run_tag);
        let body = serde_json::json!({
            "model": "anthropic/stand-in-model",
            "stream": true,
            "messages": [{"role": "user", "content": text}],
        });
        let sent = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .header("x-openclanker-session-key", key)
            .json(&body)
            .send()
            .await;
        sse_chat(sent, rec, mode, SseKind::OpenAi).await
    }

    async fn direct_chat(&self, text: String, mode: &Mode, t0: Instant) -> Outcome {
        let rec = Recorder::new(t0);
        let body = serde_json::json!({
            "model": "stand-in-model",
            "max_tokens": 4096,
            "stream": true,
            "messages": [{"role": "user", "content": text}],
        });
        let sent = self
            .http
            .post(format!("{}/v1/messages", self.base))
            .header("x-api-key", &*self.api_key)
            .header("anthropic-version", "2023-06-01")
            .header("accept", "text/event-stream")
            .json(&body)
            .send()
            .await;
        sse_chat(sent, rec, mode, SseKind::Anthropic).await
    }
}

fn header_status(headers: &reqwest::header::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
