//! Property tests: malformed and hostile provider streams never panic the decoders, and the key
//! never appears in what they report.

use std::collections::VecDeque;

use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use proptest::prelude::*;

use crate::StreamEvent;
use crate::anthropic::AnthropicDecoder;
use crate::error::Redactor;
use crate::openai::OpenAiDecoder;
use crate::sse::Decoder;

const KEY: &str = "sk-proptest-key-do-not-leak-42";

fn event(name: &str, data: &str) -> Event {
    Event {
        event: name.to_string(),
        data: data.to_string(),
        id: String::new(),
        retry: None,
    }
}

/// Feeds events to a decoder until it says it is done or fails; checks what comes out.
fn run(decoder: &mut dyn Decoder, events: &[Event]) {
    let mut out = VecDeque::new();
    for e in events {
        match decoder.event(e, &mut out) {
            Ok(true) => break,
            Ok(false) => {}
            Err(err) => {
                assert!(!err.to_string().contains(KEY));
                assert!(!format!("{err:?}").contains(KEY));
                return;
            }
        }
    }
    if let Err(err) = decoder.end(&mut out) {
        assert!(!err.to_string().contains(KEY));
    }
    // At most one `Done`, and it is the last event.
    let done = out
        .iter()
        .position(|e| matches!(e, StreamEvent::Done { .. }));
    if let Some(i) = done {
        assert_eq!(i, out.len() - 1, "Done must be last: {out:?}");
    }
}

const ANTHROPIC_EVENTS: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "unknown_event",
];

/// JSON values shaped like the real events, with random holes and wrong types.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        ".{0,20}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from(KEY)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("type".to_string()),
                        Just("delta".to_string()),
                        Just("text".to_string()),
                        Just("usage".to_string()),
                        Just("choices".to_string()),
                        Just("content".to_string()),
                        Just("error".to_string()),
                        Just("message".to_string()),
                        Just("stop_reason".to_string()),
                        Just("finish_reason".to_string()),
                        Just("output_tokens".to_string()),
                        Just("input_tokens".to_string()),
                        "[a-z_]{1,8}",
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn anthropic_decoder_survives_hostile_events(
        events in prop::collection::vec(
            (prop::sample::select(ANTHROPIC_EVENTS), prop_oneof![
                json_value().prop_map(|v| v.to_string()),
                ".{0,40}",
            ]),
            0..12,
        )
    ) {
        let events: Vec<Event> = events.iter().map(|(n, d)| event(n, d)).collect();
        run(&mut AnthropicDecoder::new(Redactor::new(KEY)), &events);
    }

    #[test]
    fn openai_decoder_survives_hostile_chunks(
        chunks in prop::collection::vec(prop_oneof![
            json_value().prop_map(|v| v.to_string()),
            Just("[DONE]".to_string()),
            ".{0,40}",
        ], 0..12)
    ) {
        let events: Vec<Event> = chunks.iter().map(|d| event("", d)).collect();
        run(&mut OpenAiDecoder::new(Redactor::new(KEY)), &events);
    }

    #[test]
    fn sse_framing_of_random_bytes_never_panics(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async {
            let body = futures::stream::iter(
                chunks.into_iter().map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
            );
            let events: Vec<Event> = body
                .eventsource()
                .filter_map(|r| async move { r.ok() })
                .collect()
                .await;
            run(&mut AnthropicDecoder::new(Redactor::new(KEY)), &events);
            run(&mut OpenAiDecoder::new(Redactor::new(KEY)), &events);
        });
    }
}
