//! The engine's unit tests: ordering of events, stores that refuse writes, checkpoints and
//! the chat senders' rate limit, against a fake provider.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use open_clanker_core::{
    Caller, ChatBackend, MessageStatus, ProviderKind, SessionRef, TurnError, TurnEvent, TurnRequest,
};
use open_clanker_providers::{
    CompletionRequest, EventStream, Provider, ProviderError, StreamEvent,
};
use open_clanker_store::Store;

use crate::turn::CHECKPOINT_AFTER;
use crate::{Engine, ProviderEntry, Settings, Unobserved};

/// The settings of a generated config.
fn settings() -> Settings {
    Settings {
        default_provider: ProviderKind::Anthropic,
        system_prompt: String::new(),
        max_message_chars: 32_000,
        history_max_messages: 50,
        history_max_chars: 60_000,
        max_concurrent_turns: 64,
        max_concurrent_turns_per_caller: 16,
        turns_per_minute: 60,
        fallback: Vec::new(),
        prices: Default::default(),
        max_usd_per_session: 0.0,
        max_usd_per_day: 0.0,
    }
}

#[tokio::test]
async fn chat_channel_senders_are_rate_limited_per_key() {
    let settings = Settings {
        turns_per_minute: 2,
        ..settings()
    };
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let engine = Engine::new(settings, store, HashMap::new(), Arc::new(Unobserved));
    // A chat sender (the chat is their session), or an API client's own session key.
    let turn = |key: &str| TurnRequest {
        session: SessionRef::Key(key.to_string()),
        text: "hi".into(),
        provider: None,
        model: None,
        caller: key
            .split_once(':')
            .map(|(channel, sender)| Caller::ChatSender {
                channel: channel.into(),
                sender: sender.into(),
            }),
    };
    // No provider is configured: the first two get that error, the third the rate limit.
    for _ in 0..2 {
        let err = engine.start_turn(turn("telegram:42")).await.err().unwrap();
        assert!(matches!(err, TurnError::FailedPrecondition(_)), "{err:?}");
    }
    let err = engine.start_turn(turn("telegram:42")).await.err().unwrap();
    assert!(
        matches!(&err, TurnError::ResourceExhausted(m) if m.contains("retry after")),
        "{err:?}"
    );
    // Another sender, and keys that are not chat senders, have their own budgets.
    let other = engine.start_turn(turn("telegram:43")).await.err().unwrap();
    assert!(
        matches!(other, TurnError::FailedPrecondition(_)),
        "{other:?}"
    );
    for _ in 0..3 {
        let err = engine.start_turn(turn("my-app")).await.err().unwrap();
        assert!(matches!(err, TurnError::FailedPrecondition(_)), "{err:?}");
    }
}

/// The limit is the sender's, whichever chat they write in; API callers are limited at the door,
/// not here.
#[tokio::test]
async fn a_chat_senders_rate_is_theirs_across_chats() {
    let settings = Settings {
        turns_per_minute: 2,
        ..settings()
    };
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let engine = Engine::new(settings, store, HashMap::new(), Arc::new(Unobserved));
    let turn = |key: &str, caller: Caller| TurnRequest {
        session: SessionRef::Key(key.to_string()),
        text: "hi".into(),
        provider: None,
        model: None,
        caller: Some(caller),
    };
    let alice = || Caller::ChatSender {
        channel: "discord".into(),
        sender: "7".into(),
    };
    for key in ["discord:100", "discord:200:7"] {
        let err = engine.start_turn(turn(key, alice())).await.err().unwrap();
        assert!(matches!(err, TurnError::FailedPrecondition(_)), "{err:?}");
    }
    let err = engine
        .start_turn(turn("discord:300:7", alice()))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, TurnError::ResourceExhausted(m) if m.contains("too many messages")),
        "{err:?}"
    );
    for _ in 0..3 {
        let err = engine
            .start_turn(turn("my-app", Caller::Token("ci".into())))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, TurnError::FailedPrecondition(_)), "{err:?}");
    }
}

/// A provider that answers "a", "b" (or never, when `hang`), `pause` between them, counting
/// the answers it started and those dropped.
struct Fake {
    hang: bool,
    pause: std::time::Duration,
    opened: Arc<std::sync::atomic::AtomicUsize>,
    dropped: Arc<std::sync::atomic::AtomicUsize>,
}

struct DropCount(Arc<std::sync::atomic::AtomicUsize>);
impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Provider for Fake {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }
    async fn stream(&self, _: CompletionRequest) -> Result<EventStream, ProviderError> {
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let guard = DropCount(self.dropped.clone());
        let events = if self.hang {
            Vec::new()
        } else {
            vec![
                StreamEvent::TextDelta("a".into()),
                StreamEvent::TextDelta("b".into()),
                StreamEvent::Done { stop_reason: None },
            ]
        };
        let (hang, pause) = (self.hang, self.pause);
        Ok(futures::stream::unfold(
            (guard, events.into_iter()),
            move |(guard, mut events)| async move {
                if !pause.is_zero() && events.len() == 2 {
                    tokio::time::sleep(pause).await;
                }
                match events.next() {
                    Some(e) => Some((Ok(e), (guard, events))),
                    None if hang => futures::future::pending().await,
                    None => None,
                }
            },
        )
        .boxed())
    }
}

async fn engine_with_fake(
    store: Store,
    hang: bool,
) -> (
    Engine,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    engine_with_pause(store, hang, std::time::Duration::ZERO).await
}

async fn engine_with_pause(
    store: Store,
    hang: bool,
    pause: std::time::Duration,
) -> (
    Engine,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut providers = HashMap::new();
    providers.insert(
        ProviderKind::Anthropic,
        ProviderEntry {
            client: Arc::new(Fake {
                hang,
                pause,
                opened: opened.clone(),
                dropped: dropped.clone(),
            }),
            default_model: "m".into(),
            max_tokens: 16,
        },
    );
    (
        Engine::new(settings(), store, providers, Arc::new(Unobserved)),
        opened,
        dropped,
    )
}

fn new_turn(text: &str) -> TurnRequest {
    TurnRequest {
        session: SessionRef::New,
        text: text.into(),
        provider: None,
        model: None,
        caller: None,
    }
}

/// The caller sees `started` (the message is stored) before any of the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_comes_before_the_answer_and_both_messages_are_stored() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let (engine, opened, _) = engine_with_fake(store.clone(), false).await;
    for _ in 0..20 {
        let events: Vec<TurnEvent> = engine
            .start_turn(new_turn("hi"))
            .await
            .unwrap()
            .collect()
            .await;
        let TurnEvent::Started(started) = &events[0] else {
            panic!("first event: {:?}", events[0]);
        };
        assert!(started.session_created && started.user_message_id > 0);
        assert!(
            matches!(&events[1], TurnEvent::Delta(d) if d == "a"),
            "{events:?}"
        );
        assert!(
            matches!(&events[2], TurnEvent::Delta(d) if d == "b"),
            "{events:?}"
        );
        let TurnEvent::Completed(answer) = &events[3] else {
            panic!("last event: {:?}", events[3]);
        };
        assert_eq!(
            (answer.content.as_str(), &answer.session_id),
            ("ab", &started.session_id)
        );
        let history = store
            .history(&started.session_id, 0, None)
            .await
            .unwrap()
            .items;
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].id, started.user_message_id);
    }
    assert_eq!(opened.load(std::sync::atomic::Ordering::SeqCst), 20);
}

/// When the user's message cannot be stored, the caller gets the store's error, nothing is
/// streamed, and the provider is never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_write_never_calls_the_provider() {
    use sea_orm::ConnectionTrait as _;
    let dir = tempfile::tempdir().unwrap();
    let url = Store::sqlite_url_for_dir(dir.path());
    let store = Store::connect(&url).await.unwrap();
    let raw = sea_orm::Database::connect(&url).await.unwrap();
    raw.execute_unprepared(
        "CREATE TRIGGER refuse BEFORE INSERT ON messages \
         BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
    )
    .await
    .unwrap();
    let (engine, opened, dropped) = engine_with_fake(store.clone(), true).await;
    for _ in 0..10 {
        let err = engine.start_turn(new_turn("hi")).await.err().unwrap();
        assert!(
            matches!(&err, TurnError::Unavailable(m) if m.contains("disk on fire")),
            "{err:?}"
        );
    }
    assert_eq!(opened.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(store.stats().await.unwrap().sessions, 0);
}

/// Counts the updates of `messages` rows (checkpoints and the answers finished in their row)
/// in a table of its own, through a second connection.
async fn count_message_updates(url: &str) -> sea_orm::DatabaseConnection {
    use sea_orm::ConnectionTrait as _;
    let raw = sea_orm::Database::connect(url).await.unwrap();
    raw.execute_unprepared(
        "CREATE TABLE updates (n INTEGER NOT NULL); INSERT INTO updates VALUES (0); \
         CREATE TRIGGER count_updates AFTER UPDATE ON messages \
         BEGIN UPDATE updates SET n = n + 1; END",
    )
    .await
    .unwrap();
    raw
}

async fn message_updates(raw: &sea_orm::DatabaseConnection) -> i64 {
    use sea_orm::ConnectionTrait as _;
    raw.query_one_raw(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Sqlite,
        "SELECT n FROM updates",
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get_by_index::<i64>(0)
    .unwrap()
}

/// An answer done within the checkpoint period costs no extra write: it is inserted once, as
/// before. One that takes longer is stored while it streams and finished in the same row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_answers_longer_than_the_checkpoint_period_are_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let url = Store::sqlite_url_for_dir(dir.path());
    let store = Store::connect(&url).await.unwrap();
    let raw = count_message_updates(&url).await;

    let (engine, _, _) = engine_with_fake(store.clone(), false).await;
    let events: Vec<TurnEvent> = engine
        .start_turn(new_turn("quick"))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(
        matches!(events.last(), Some(TurnEvent::Completed(_))),
        "{events:?}"
    );
    assert_eq!(
        message_updates(&raw).await,
        0,
        "a quick answer was checkpointed"
    );

    let pause = CHECKPOINT_AFTER * 2;
    let (engine, _, _) = engine_with_pause(store.clone(), false, pause).await;
    let mut turn = engine.start_turn(new_turn("slow")).await.unwrap();
    let Some(TurnEvent::Started(started)) = turn.next().await else {
        panic!("no started event");
    };
    assert!(matches!(turn.next().await, Some(TurnEvent::Delta(d)) if d == "a"));
    // While "b" is awaited, "a" is checkpointed: in the history, marked interrupted.
    let began = std::time::Instant::now();
    let partial = loop {
        let history = store
            .history(&started.session_id, 0, None)
            .await
            .unwrap()
            .items;
        if let Some(m) = history.get(1) {
            break m.clone();
        }
        assert!(began.elapsed() < pause * 10, "no checkpoint");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(partial.content, "a");
    assert_eq!(partial.status, MessageStatus::Interrupted);
    assert_eq!(
        partial.stop_reason.as_deref(),
        Some(open_clanker_store::STREAMING)
    );
    let rest: Vec<TurnEvent> = turn.collect().await;
    let Some(TurnEvent::Completed(answer)) = rest.last() else {
        panic!("{rest:?}");
    };
    assert_eq!((answer.id, answer.content.as_str()), (partial.id, "ab"));
    let history = store
        .history(&started.session_id, 0, None)
        .await
        .unwrap()
        .items;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].status, MessageStatus::Complete);
    // The checkpoint inserted the row; the end of the answer updated it, once.
    assert_eq!(message_updates(&raw).await, 1);
}

/// `SessionService`'s operations check what they are given with the turns' rules: a blank key is
/// none, a bad key, id or title is refused, and a missing session is `NotFound`.
#[tokio::test]
async fn session_operations_check_their_input_like_turns() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let engine = Engine::new(settings(), store, HashMap::new(), Arc::new(Unobserved));
    let s = engine.create_session(Some("  "), " title ").await.unwrap();
    assert_eq!((s.key.as_deref(), s.title.as_str()), (None, "title"));
    let keyed = engine.create_session(Some("app:1"), "").await.unwrap();
    assert_eq!(keyed.key.as_deref(), Some("app:1"));
    for (key, title) in [("bad\nkey", ""), ("ok", &"x".repeat(201) as &str)] {
        let err = engine.create_session(Some(key), title).await.unwrap_err();
        assert!(matches!(err, TurnError::InvalidArgument(_)), "{err:?}");
    }
    assert_eq!(
        engine.session(&format!(" {} ", s.id)).await.unwrap().id,
        s.id
    );
    for bad in ["", "   ", &"x".repeat(65) as &str, "a\u{0}b"] {
        let err = engine.session(bad).await.unwrap_err();
        assert!(
            matches!(err, TurnError::InvalidArgument(_)),
            "{bad:?}: {err:?}"
        );
        let err = engine.delete_session(bad).await.unwrap_err();
        assert!(
            matches!(err, TurnError::InvalidArgument(_)),
            "{bad:?}: {err:?}"
        );
    }
    let missing = "0190e0b4-0000-7000-8000-000000000000";
    for err in [
        engine.session(missing).await.unwrap_err(),
        engine.clear_session(missing).await.unwrap_err(),
        engine.delete_session(missing).await.unwrap_err(),
    ] {
        assert!(matches!(err, TurnError::NotFound(_)), "{err:?}");
    }
    let (cleared, deleted) = engine.clear_session(&keyed.id).await.unwrap();
    assert_eq!((cleared.id.as_str(), deleted), (keyed.id.as_str(), 0));
    engine.delete_session(&keyed.id).await.unwrap();
    let page = engine.list_sessions(10, None, None).await.unwrap();
    assert_eq!(page.items.len(), 1);
}
