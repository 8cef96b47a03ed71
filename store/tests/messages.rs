//! Messages on SQLite files: appending, history in pages, the most recent messages, a session
//! created with its first message, and answers stored while they stream.

use std::time::Duration;

use open_clanker_core::now_ms;
use open_clanker_store::{MessageStatus, NewMessage, Role, StoreError, Usage};

mod common;

use common::{answer, append, message, temp_store};

#[tokio::test]
async fn history_pages_oldest_first() {
    let (store, _dir, _) = temp_store().await;
    let s = store.create_session(None, "t").await.unwrap();
    let other = store.create_session(None, "o").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(append(&store, &s.id, Role::User, &format!("m{i}")).await.id);
        append(&store, &other.id, Role::User, "noise").await;
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    let p1 = store.history(&s.id, 2, None).await.unwrap();
    let p2 = store
        .history(&s.id, 2, p1.next_page_token.as_deref())
        .await
        .unwrap();
    let p3 = store
        .history(&s.id, 2, p2.next_page_token.as_deref())
        .await
        .unwrap();
    assert_eq!(p3.next_page_token, None);
    let contents: Vec<String> = [p1, p2, p3]
        .into_iter()
        .flat_map(|p| p.items)
        .map(|m| {
            assert_eq!(m.session_id, s.id);
            m.content
        })
        .collect();
    assert_eq!(contents, ["m0", "m1", "m2", "m3", "m4"]);

    let all = store.history(&s.id, 0, None).await.unwrap();
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.next_page_token, None);

    let empty = store.create_session(None, "").await.unwrap();
    let page = store.history(&empty.id, 10, None).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.next_page_token, None);

    assert!(matches!(
        store.history("missing", 10, None).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn recent_messages_are_the_newest_in_order() {
    let (store, _dir, _) = temp_store().await;
    let s = store.create_session(None, "t").await.unwrap();
    for i in 0..5 {
        let role = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        append(&store, &s.id, role, &format!("m{i}")).await;
    }
    let recent = store.recent_messages(&s.id, 3).await.unwrap();
    let contents: Vec<&str> = recent.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["m2", "m3", "m4"]);
    assert_eq!(recent[0].role, Role::User);
    assert_eq!(recent[1].role, Role::Assistant);
    assert_eq!(store.recent_messages(&s.id, 100).await.unwrap().len(), 5);
    assert!(store.recent_messages(&s.id, 0).await.unwrap().is_empty());
    assert!(
        store
            .recent_messages("missing", 5)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn append_bumps_the_session_and_sets_the_title() {
    let (store, _dir, _) = temp_store().await;
    let s = store.create_session(Some("k"), "").await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;

    // An assistant message does not title the session.
    let reply = NewMessage {
        provider: Some("anthropic".to_owned()),
        model: Some("claude-x".to_owned()),
        usage: Usage {
            input_tokens: 12,
            output_tokens: 34,
        },
        status: MessageStatus::Interrupted,
        stop_reason: Some("max_tokens".to_owned()),
        ..message(&s.id, Role::Assistant, "I am a robot")
    };
    let stored = store.append_message(reply.clone()).await.unwrap();
    assert_eq!(stored.provider.as_deref(), Some("anthropic"));
    assert_eq!(stored.model.as_deref(), Some("claude-x"));
    assert_eq!(stored.usage, reply.usage);
    assert_eq!(stored.status, MessageStatus::Interrupted);
    assert_eq!(stored.stop_reason.as_deref(), Some("max_tokens"));
    let history = store.history(&s.id, 0, None).await.unwrap();
    assert_eq!(history.items, vec![stored.clone()]);

    let after = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!(after.message_count, 1);
    assert!(after.updated_at_ms > s.updated_at_ms);
    assert_eq!(after.created_at_ms, s.created_at_ms);
    assert_eq!(after.title, "");

    // The first user message titles it: first non-blank line.
    append(
        &store,
        &s.id,
        Role::User,
        "\n  Plan my trip to Kyoto  \nwith details",
    )
    .await;
    let titled = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!(titled.title, "Plan my trip to Kyoto");
    assert_eq!(titled.message_count, 2);

    // Later user messages leave it alone.
    append(&store, &s.id, Role::User, "something else").await;
    let same = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!(same.title, "Plan my trip to Kyoto");
    assert_eq!(same.message_count, 3);

    // A given title is kept.
    let named = store.create_session(None, "Named").await.unwrap();
    append(&store, &named.id, Role::User, "hello").await;
    assert_eq!(
        store.get_session(&named.id).await.unwrap().unwrap().title,
        "Named"
    );

    // A long multi-byte line is cut on a char boundary, 60 characters with the ellipsis.
    let long = store.create_session(None, "").await.unwrap();
    let text = "日本語のテキスト".repeat(20);
    append(&store, &long.id, Role::User, &text).await;
    let title = store.get_session(&long.id).await.unwrap().unwrap().title;
    assert_eq!(title.chars().count(), 60);
    assert!(title.ends_with('…'));
    let kept: String = text.chars().take(59).collect();
    assert!(title.starts_with(&kept), "{title}");

    // Exactly 60 characters is not cut.
    let exact = store.create_session(None, "").await.unwrap();
    let sixty = "é".repeat(60);
    append(&store, &exact.id, Role::User, &sixty).await;
    assert_eq!(
        store.get_session(&exact.id).await.unwrap().unwrap().title,
        sixty
    );
}

#[tokio::test]
async fn append_to_a_missing_session_is_not_found() {
    let (store, _dir, _) = temp_store().await;
    let err = store
        .append_message(message("missing", Role::User, "hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.stats().await.unwrap().messages, 0);
}

#[tokio::test]
async fn a_session_and_its_first_message_are_created_together() {
    let (store, _dir, url) = temp_store().await;
    let mut first = message("ignored", Role::User, "  \n What is 2+2? \nthanks");
    first.cost_micros = 7;
    let (session, stored) = store
        .create_session_with_message(Some("telegram:5"), first)
        .await
        .unwrap();
    assert_eq!(stored.session_id, session.id);
    assert_eq!(session.key.as_deref(), Some("telegram:5"));
    assert_eq!(session.title, "What is 2+2?");
    assert_eq!(session.message_count, 1);
    assert_eq!(session.cost_micros, 7);
    assert_eq!(
        store.get_session(&session.id).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(
        store
            .session_by_key("telegram:5")
            .await
            .unwrap()
            .map(|s| s.id),
        Some(session.id.clone())
    );
    let history = store.history(&session.id, 0, None).await.unwrap().items;
    assert_eq!(history, vec![stored.clone()]);

    // The same key again opens a new session under it (`/new`): the newest one answers to the key.
    let (newer, _) = store
        .create_session_with_message(Some("telegram:5"), message("", Role::User, "again"))
        .await
        .unwrap();
    assert_ne!(newer.id, session.id);
    assert_eq!(
        store
            .session_by_key("telegram:5")
            .await
            .unwrap()
            .map(|s| s.id),
        Some(newer.id)
    );
    assert_eq!(
        store
            .history(&session.id, 0, None)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let _ = url;
}

#[tokio::test]
async fn an_answer_is_checkpointed_and_finished_in_one_row() {
    let (store, _dir, _url) = temp_store().await;
    let s = store.create_session(None, "").await.unwrap();
    append(&store, &s.id, Role::User, "hi").await;

    let begun = store.start_answer(answer(&s.id, "tok0")).await.unwrap();
    assert_eq!(begun.status, MessageStatus::Interrupted);
    assert_eq!(
        begun.stop_reason.as_deref(),
        Some(open_clanker_store::STREAMING)
    );
    store
        .update_answer(begun.id, "tok0 tok1".into())
        .await
        .unwrap();
    let history = store.history(&s.id, 0, None).await.unwrap().items;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].content, "tok0 tok1");
    assert_eq!(history[1].status, MessageStatus::Interrupted);
    // Counted in its session at once; no usage before it ends.
    assert_eq!(
        store
            .get_session(&s.id)
            .await
            .unwrap()
            .unwrap()
            .message_count,
        2
    );
    let day = open_clanker_store::utc_day(now_ms());
    assert!(store.usage_on(&day).await.unwrap().is_empty());

    let whole = NewMessage {
        usage: Usage {
            input_tokens: 3,
            output_tokens: 4,
        },
        stop_reason: Some("end_turn".into()),
        cost_micros: 7,
        ..answer(&s.id, "tok0 tok1 tok2 tok3")
    };
    let done = store
        .finish_answer(begun.id, begun.created_at_ms, whole)
        .await
        .unwrap();
    assert_eq!(
        (done.id, done.created_at_ms),
        (begun.id, begun.created_at_ms)
    );
    let history = store.history(&s.id, 0, None).await.unwrap().items;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1], done);
    assert_eq!(history[1].status, MessageStatus::Complete);
    let session = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!((session.message_count, session.cost_micros), (2, 7));
    let usage = store.usage_on(&day).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (usage[0].turns, usage[0].output_tokens, usage[0].cost_micros),
        (1, 4, 7)
    );
    // A late checkpoint never overwrites the finished answer.
    store.update_answer(begun.id, "stale".into()).await.unwrap();
    let history = store.history(&s.id, 0, None).await.unwrap().items;
    assert_eq!(history[1].content, "tok0 tok1 tok2 tok3");
}

#[tokio::test]
async fn an_answer_whose_session_was_reset_while_it_streamed_is_appended() {
    let (store, _dir, _url) = temp_store().await;
    let s = store.create_session(None, "").await.unwrap();
    append(&store, &s.id, Role::User, "hi").await;
    let begun = store.start_answer(answer(&s.id, "part")).await.unwrap();
    store.reset_session(&s.id).await.unwrap();
    let done = store
        .finish_answer(begun.id, begun.created_at_ms, answer(&s.id, "whole"))
        .await
        .unwrap();
    assert_ne!(done.id, begun.id);
    let history = store.history(&s.id, 0, None).await.unwrap().items;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].content, "whole");
    assert_eq!(
        store
            .get_session(&s.id)
            .await
            .unwrap()
            .unwrap()
            .message_count,
        1
    );
    // A deleted session is not found, as with `append_message`.
    let begun = store.start_answer(answer(&s.id, "part")).await.unwrap();
    store.delete_session(&s.id).await.unwrap();
    assert!(matches!(
        store
            .finish_answer(begun.id, begun.created_at_ms, answer(&s.id, "whole"))
            .await,
        Err(StoreError::NotFound(_))
    ));
}
