//! Micro-benchmarks of the gateway's hot paths (divan): `cargo bench -p open-clanker-bench`.
//!
//! - `sse`: parsing a recorded Anthropic Messages stream (recorded from the stand-in, which writes
//!   the documented wire format, one event per write) with `eventsource-stream` and decoding each
//!   event's JSON the way `providers/src/anthropic.rs` does; plus a typed-serde variant for
//!   comparison.
//! - `proto`: Protobuf encoding (and decoding) of `ChatResponse` events.
//! - `store`: the store's writes per turn on SQLite (WAL) in a temporary directory.
//! - `split`: the Markdown splitter for channels (`open_clanker_channels::split`).

use std::convert::Infallible;
use std::sync::LazyLock;

use bytes::Bytes;
use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use futures::{FutureExt, StreamExt};

fn main() {
    divan::main();
}

/// One Tokio runtime for the benches that need one.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
});

mod sse {
    use super::*;
    use eventsource_stream::Eventsource;
    use serde_json::Value;

    /// Words in the recorded answer.
    pub const WORDS: usize = 200;

    /// The stand-in's streamed answer to `#tokens=200`, split into the events as it writes them.
    pub static RECORDED: LazyLock<Vec<Bytes>> = LazyLock::new(|| {
        RUNTIME.block_on(async {
            let standin = open_clanker_testkit::spawn(open_clanker_testkit::StandInConfig {
                api_key: "bench-key".into(),
                default_delay: std::time::Duration::ZERO,
                ..Default::default()
            })
            .await
            .expect("stand-in");
            let body = reqwest::Client::new()
                .post(format!("{}/v1/messages", standin.anthropic_base_url()))
                .header("x-api-key", "bench-key")
                .header("anthropic-version", "2023-06-01")
                .json(&serde_json::json!({
                    "model": "stand-in-model",
                    "max_tokens": 4096,
                    "stream": true,
                    "messages": [{"role": "user", "content": format!("hello #tokens={WORDS}")}],
                }))
                .send()
                .await
                .expect("request")
                .bytes()
                .await
                .expect("body");
            standin.shutdown().await;
            let text = String::from_utf8(body.to_vec()).expect("utf-8");
            let events: Vec<Bytes> = text
                .split_inclusive("\n\n")
                .map(|e| Bytes::from(e.to_string()))
                .collect();
            assert!(events.len() > WORDS, "recorded {} events", events.len());
            events
        })
    });

    fn total_bytes() -> usize {
        RECORDED.iter().map(Bytes::len).sum()
    }

    fn events() -> impl futures::Stream<Item = eventsource_stream::Event> {
        futures::stream::iter(RECORDED.iter().cloned().map(Ok::<_, Infallible>))
            .eventsource()
            .map(|r| r.expect("the recording is valid SSE"))
    }

    /// SSE framing only: bytes -> events.
    #[divan::bench]
    fn parse_events(b: Bencher) {
        b.counter(BytesCount::new(total_bytes())).bench(|| {
            let n = events()
                .fold(0usize, |n, e| async move { n + e.data.len() })
                .now_or_never()
                .expect("ready");
            black_box(n)
        });
    }

    /// SSE framing plus what the Anthropic decoder does per event: parse the JSON into a
    /// `serde_json::Value` and take the text of `content_block_delta`s.
    #[divan::bench]
    fn parse_and_decode_value(b: Bencher) {
        b.counter(ItemsCount::new(WORDS)).bench(|| {
            let text = events()
                .fold(String::new(), |mut text, e| async move {
                    let data: Option<Value> = serde_json::from_str(&e.data).ok();
                    if e.event == "content_block_delta"
                        && let Some(t) = data
                            .as_ref()
                            .and_then(|d| d.pointer("/delta/text"))
                            .and_then(Value::as_str)
                    {
                        text.push_str(t);
                    }
                    text
                })
                .now_or_never()
                .expect("ready");
            assert!(text.ends_with(&format!("tok{}", WORDS - 1)));
            black_box(text)
        });
    }

    #[derive(serde::Deserialize)]
    struct Delta<'a> {
        #[serde(borrow)]
        delta: Option<Inner<'a>>,
    }

    #[derive(serde::Deserialize)]
    struct Inner<'a> {
        #[serde(borrow, rename = "type")]
        kind: Option<&'a str>,
        #[serde(borrow)]
        text: Option<std::borrow::Cow<'a, str>>,
    }

    /// The same with a borrowed, typed struct instead of `Value` (what a decoder could do).
    #[divan::bench]
    fn parse_and_decode_typed(b: Bencher) {
        b.counter(ItemsCount::new(WORDS)).bench(|| {
            let text = events()
                .fold(String::new(), |mut text, e| async move {
                    if e.event == "content_block_delta"
                        && let Ok(d) = serde_json::from_str::<Delta>(&e.data)
                        && let Some(inner) = d.delta
                        && inner.kind == Some("text_delta")
                        && let Some(t) = inner.text
                    {
                        text.push_str(&t);
                    }
                    text
                })
                .now_or_never()
                .expect("ready");
            assert!(text.ends_with(&format!("tok{}", WORDS - 1)));
            black_box(text)
        });
    }
}

mod proto {
    use super::*;
    use open_clanker_client::pb;
    use pb::chat_response::Event;
    use prost::Message as _;

    fn delta() -> pb::ChatResponse {
        pb::ChatResponse {
            event: Some(Event::Delta(pb::TextDelta {
                text: " tok123".into(),
            })),
        }
    }

    fn started() -> pb::ChatResponse {
        pb::ChatResponse {
            event: Some(Event::Started(pb::TurnStarted {
                session_id: "0195f3c2-7a4b-7c3d-9e8f-0123456789ab".into(),
                session_created: true,
                user_message_id: 123_456,
                provider: "anthropic".into(),
                model: "claude-sonnet-4-5".into(),
            })),
        }
    }

    fn completed() -> pb::ChatResponse {
        let content: Vec<String> = (0..200).map(|i| format!("tok{i}")).collect();
        pb::ChatResponse {
            event: Some(Event::Completed(pb::TurnCompleted {
                message: Some(pb::Message {
                    id: 123_457,
                    session_id: "0195f3c2-7a4b-7c3d-9e8f-0123456789ab".into(),
                    role: pb::Role::Assistant as i32,
                    content: content.join(" "),
                    provider: "anthropic".into(),
                    model: "claude-sonnet-4-5".into(),
                    usage: Some(pb::Usage {
                        input_tokens: 12,
                        output_tokens: 200,
                    }),
                    status: pb::MessageStatus::Complete as i32,
                    stop_reason: "end_turn".into(),
                    create_time: Some(prost_types_timestamp()),
                    cost_usd: 0.003036,
                }),
            })),
        }
    }

    fn prost_types_timestamp() -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: 1_760_000_000,
            nanos: 123_000_000,
        }
    }

    /// Encoding into a reused buffer, as tonic's encoder does.
    fn encode(b: Bencher, message: pb::ChatResponse) {
        let mut buf = Vec::with_capacity(8192);
        b.counter(BytesCount::new(message.encoded_len()))
            .bench_local(|| {
                buf.clear();
                black_box(&message).encode(&mut buf).expect("room");
                black_box(buf.len())
            });
    }

    #[divan::bench]
    fn encode_delta(b: Bencher) {
        encode(b, delta());
    }

    #[divan::bench]
    fn encode_started(b: Bencher) {
        encode(b, started());
    }

    #[divan::bench]
    fn encode_completed_200_words(b: Bencher) {
        encode(b, completed());
    }

    /// Building the event from the engine's `String` and encoding it (the relay's per-token work
    /// on the gRPC side, without the framing).
    #[divan::bench]
    fn build_and_encode_delta(b: Bencher) {
        let mut buf = Vec::with_capacity(256);
        b.bench_local(|| {
            buf.clear();
            let m = pb::ChatResponse {
                event: Some(Event::Delta(pb::TextDelta {
                    text: black_box(" tok123").to_string(),
                })),
            };
            m.encode(&mut buf).expect("room");
            black_box(buf.len())
        });
    }

    #[divan::bench]
    fn decode_delta(b: Bencher) {
        let bytes = Bytes::from(delta().encode_to_vec());
        b.bench(|| pb::ChatResponse::decode(black_box(bytes.clone())).expect("valid"));
    }
}

mod store {
    use super::*;
    use open_clanker_store::{MessageStatus, NewMessage, Role, Store, Usage};

    struct Db {
        store: Store,
        _dir: tempfile::TempDir,
    }

    fn open() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = Store::sqlite_url_for_dir(dir.path());
        let store = RUNTIME.block_on(Store::connect(&url)).expect("store");
        Db { store, _dir: dir }
    }

    fn message(session_id: &str, role: Role, content: &str) -> NewMessage {
        let assistant = role == Role::Assistant;
        NewMessage {
            session_id: session_id.to_string(),
            role,
            content: content.to_string(),
            provider: assistant.then(|| "anthropic".to_string()),
            model: assistant.then(|| "stand-in-model".to_string()),
            usage: if assistant {
                Usage {
                    input_tokens: 12,
                    output_tokens: 20,
                }
            } else {
                Usage::default()
            },
            status: MessageStatus::Complete,
            stop_reason: assistant.then(|| "end_turn".to_string()),
            cost_micros: if assistant { 336 } else { 0 },
        }
    }

    const ANSWER: &str = "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8 tok9 tok10 tok11 tok12 \
                          tok13 tok14 tok15 tok16 tok17 tok18 tok19";

    /// The engine's two writes per turn in an existing session: the user's message (before the
    /// provider is called) and the assistant's (at the end), one transaction each.
    #[divan::bench(sample_count = 40, sample_size = 20)]
    fn append_user_and_assistant(b: Bencher) {
        let db = open();
        let session = RUNTIME
            .block_on(db.store.create_session(None, ""))
            .expect("session");
        b.bench_local(|| {
            RUNTIME.block_on(async {
                db.store
                    .append_message(message(&session.id, Role::User, "hello #tokens=20"))
                    .await
                    .expect("user");
                db.store
                    .append_message(message(&session.id, Role::Assistant, ANSWER))
                    .await
                    .expect("assistant")
            })
        });
    }

    /// Everything a new-session turn does with the store: create the session, read its recent
    /// history (as the engine does, 50 messages), then the two writes.
    #[divan::bench(sample_count = 40, sample_size = 20)]
    fn whole_new_session_turn(b: Bencher) {
        let db = open();
        b.bench_local(|| {
            RUNTIME.block_on(async {
                let s = db.store.create_session(None, "").await.expect("session");
                let history = db.store.recent_messages(&s.id, 50).await.expect("history");
                black_box(history);
                db.store
                    .append_message(message(&s.id, Role::User, "hello #tokens=20"))
                    .await
                    .expect("user");
                db.store
                    .append_message(message(&s.id, Role::Assistant, ANSWER))
                    .await
                    .expect("assistant")
            })
        });
    }

    /// The same without the history query, as the engine does for a session it just created
    /// (a new session has no history).
    #[divan::bench(sample_count = 40, sample_size = 20)]
    fn whole_new_session_turn_skipping_history(b: Bencher) {
        let db = open();
        b.bench_local(|| {
            RUNTIME.block_on(async {
                let s = db.store.create_session(None, "").await.expect("session");
                db.store
                    .append_message(message(&s.id, Role::User, "hello #tokens=20"))
                    .await
                    .expect("user");
                db.store
                    .append_message(message(&s.id, Role::Assistant, ANSWER))
                    .await
                    .expect("assistant")
            })
        });
    }

    /// 64 new-session turns' store work at once over the pool (4 connections, one writer):
    /// throughput under contention.
    #[divan::bench(sample_count = 20, sample_size = 1)]
    fn concurrent_turns_64(b: Bencher) {
        let db = open();
        b.counter(ItemsCount::new(64usize)).bench_local(|| {
            RUNTIME.block_on(async {
                let turns = (0..64).map(|_| {
                    let store = db.store.clone();
                    tokio::spawn(async move {
                        let s = store.create_session(None, "").await.expect("session");
                        store.recent_messages(&s.id, 50).await.expect("history");
                        store
                            .append_message(message(&s.id, Role::User, "hello #tokens=20"))
                            .await
                            .expect("user");
                        store
                            .append_message(message(&s.id, Role::Assistant, ANSWER))
                            .await
                            .expect("assistant");
                    })
                });
                for t in futures::future::join_all(turns).await {
                    t.expect("turn");
                }
            })
        });
    }
}

mod split {
    use super::*;

    /// A long Markdown answer: headings, paragraphs, lists and fenced code, ~12 KB.
    fn answer() -> String {
        let mut s = String::new();
        for i in 0..12 {
            s.push_str(&format!("## Part {i}\n\n"));
            s.push_str(
                "Some **bold** and _italic_ text with `inline code` and a [link](https://example.com). \
                 A gateway relays the tokens as they come, stores the turn and keeps going.\n\n",
            );
            s.push_str("- one item\n- another item with more words in it\n- a third\n\n");
            s.push_str("```rust\nfn main() {\n    println!(\"hello\");\n}\n```\n\n");
            s.push_str(&"Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(8));
            s.push_str("\n\n");
        }
        s
    }

    /// Splitting for Telegram's 4096-character limit.
    #[divan::bench]
    fn split_markdown_4096(b: Bencher) {
        let text = answer();
        b.counter(BytesCount::new(text.len()))
            .bench(|| open_clanker_channels::split::split_markdown(black_box(&text), 4096));
    }

    /// Splitting for Discord's 2000-character limit.
    #[divan::bench]
    fn split_markdown_2000(b: Bencher) {
        let text = answer();
        b.counter(BytesCount::new(text.len()))
            .bench(|| open_clanker_channels::split::split_markdown(black_box(&text), 2000));
    }
}
