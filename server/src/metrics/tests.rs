//! The metrics' tests: names, labels, hooks and bounded label values.

use std::sync::Arc;

use futures::StreamExt;
use open_clanker_channels::ChannelContext;
use open_clanker_core::{
    ChatBackend, MessageStatus, Session, StoredMessage, TurnError, TurnEvent, TurnRequest,
    TurnStream, Usage,
};

use open_clanker_engine::TurnObserver as _;

use super::http::{grpc_code_name, grpc_label};
use super::*;
use crate::contract::is_grpc_path;

#[test]
fn grpc_methods_come_from_the_descriptor_set() {
    assert_eq!(
        grpc_label("/openclanker.v1.ChatService/Chat"),
        "/openclanker.v1.ChatService/Chat"
    );
    assert_eq!(
        grpc_label("/grpc.health.v1.Health/Check"),
        "/grpc.health.v1.Health/Check"
    );
    assert_eq!(grpc_label("/openclanker.v1.ChatService/Nope"), "other");
    assert_eq!(grpc_label("/x.y/z"), "other");
    assert!(is_grpc_path("/openclanker.v1.ChatService/Chat"));
    assert!(!is_grpc_path("/v1/chat/completions"));
    assert!(!is_grpc_path("/health"));
}

#[test]
fn status_names() {
    assert_eq!(grpc_code_name(b"0"), "OK");
    assert_eq!(grpc_code_name(b"8"), "RESOURCE_EXHAUSTED");
    assert_eq!(grpc_code_name(b"16"), "UNAUTHENTICATED");
    assert_eq!(grpc_code_name(b"99"), "UNKNOWN");
    assert_eq!(grpc_code_name(b"x"), "UNKNOWN");
}

#[test]
fn hooks_show_up_in_the_exposition() {
    failover("unit-a/x", "unit-b/y");
    channel_message("unit-chan", Direction::In);
    channel_message("unit-chan", Direction::Out);
    channel_message("unit-chan", Direction::Out);
    record_cost("unit-provider", "unit-model", 0.25);
    record_cost("unit-provider", "unit-model", f64::NAN);
    rejected("unit_reason");
    let text = render();
    for line in [
        "open_clanker_provider_failovers_total{from=\"unit-a/x\",to=\"unit-b/y\"} 1",
        "open_clanker_channel_messages_total{channel=\"unit-chan\",direction=\"out\"} 2",
        "open_clanker_cost_usd_total{model=\"unit-model\",provider=\"unit-provider\"} 0.25",
        "open_clanker_rejected_requests_total{reason=\"unit_reason\"} 1",
        "open_clanker_build_info{version=",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[test]
fn a_turn_is_active_until_dropped_and_counted_once() {
    let usage = Usage {
        input_tokens: 7,
        output_tokens: 3,
    };
    let turn = TurnMetrics::start("unit-turn");
    turn.first_token("unit-turn");
    turn.first_token("unit-turn");
    turn.finish(
        "unit-turn",
        "unit-turn-model",
        MessageStatus::Complete,
        false,
        &usage,
    );
    drop(turn);
    let dropped = TurnMetrics::start("unit-turn");
    drop(dropped);
    let text = render();
    for line in [
        "open_clanker_time_to_first_token_seconds_count{provider=\"unit-turn\"} 1",
        "open_clanker_turn_duration_seconds_count{outcome=\"completed\",provider=\"unit-turn\"} 1",
        "open_clanker_turn_duration_seconds_count{outcome=\"failed\",provider=\"unit-turn\"} 1",
        "open_clanker_tokens_total{model=\"unit-turn-model\",provider=\"unit-turn\",type=\"input\"} 7",
        "open_clanker_tokens_total{model=\"unit-turn-model\",provider=\"unit-turn\",type=\"output\"} 3",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

/// Answers every turn with one delta and a completed message.
struct Echo;

#[async_trait::async_trait]
impl ChatBackend for Echo {
    async fn start_turn(&self, request: TurnRequest) -> Result<TurnStream, TurnError> {
        if request.text == "refuse" {
            return Err(TurnError::InvalidArgument("no".into()));
        }
        let done = StoredMessage {
            id: 1,
            session_id: "s".into(),
            role: open_clanker_core::Role::Assistant,
            content: request.text.clone(),
            provider: None,
            model: None,
            usage: Usage::default(),
            status: MessageStatus::Complete,
            stop_reason: None,
            created_at_ms: 0,
            cost_micros: 0,
        };
        Ok(futures::stream::iter([
            TurnEvent::Delta(request.text),
            TurnEvent::Completed(Box::new(done)),
        ])
        .boxed())
    }

    async fn session_by_key(&self, _key: &str) -> Result<Option<Session>, TurnError> {
        Ok(None)
    }

    async fn reset_session(&self, _session_id: &str) -> Result<(), TurnError> {
        Ok(())
    }

    async fn new_session(&self, _key: &str) -> Result<Session, TurnError> {
        Err(TurnError::Internal("not used here".into()))
    }
}

#[tokio::test]
async fn a_metered_channel_counts_messages_in_and_answers_out() {
    let ctx = metered_channel(
        "unit-metered",
        ChannelContext {
            backend: Arc::new(Echo),
            access: Arc::new(
                open_clanker_store::Store::connect("sqlite::memory:")
                    .await
                    .unwrap(),
            ),
        },
    );
    let turn = |text: &str| TurnRequest {
        session: open_clanker_core::SessionRef::New,
        text: text.into(),
        provider: None,
        model: None,
        caller: None,
    };
    for text in ["one", "two"] {
        let events: Vec<TurnEvent> = ctx
            .backend
            .start_turn(turn(text))
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(events.len(), 2);
    }
    assert!(ctx.backend.start_turn(turn("refuse")).await.is_err());
    let text = render();
    for line in [
        "open_clanker_channel_messages_total{channel=\"unit-metered\",direction=\"in\"} 3",
        "open_clanker_channel_messages_total{channel=\"unit-metered\",direction=\"out\"} 2",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[test]
fn model_labels_are_bounded() {
    let mut seen = HashSet::new();
    for i in 0..MAX_MODELS {
        assert_eq!(bounded_label(&mut seen, &format!("m{i}")), format!("m{i}"));
    }
    assert_eq!(bounded_label(&mut seen, "one-too-many"), "other");
    assert_eq!(bounded_label(&mut seen, "m0"), "m0");
}
