//! Integration tests of the store on SQLite temporary files.

use std::collections::HashSet;
use std::time::Duration;

use open_clanker_core::now_ms;
use open_clanker_store::{
    MessageStatus, NewMessage, Role, Store, StoreError, StoredMessage, Usage,
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use tempfile::TempDir;

/// A store on a fresh file in a fresh temporary directory (kept alive by the returned guard).
async fn temp_store() -> (Store, TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = Store::sqlite_url_for_dir(dir.path());
    let store = Store::connect(&url).await.expect("connect");
    (store, dir, url)
}

/// A second, raw connection to the same database, to look behind the store's back.
async fn raw(url: &str) -> DatabaseConnection {
    Database::connect(url).await.expect("raw connect")
}

fn message(session_id: &str, role: Role, content: &str) -> NewMessage {
    NewMessage {
        session_id: session_id.to_owned(),
        role,
        content: content.to_owned(),
        provider: None,
        model: None,
        usage: Usage::default(),
        status: MessageStatus::Complete,
        stop_reason: None,
        cost_micros: 0,
    }
}

async fn append(store: &Store, session_id: &str, role: Role, content: &str) -> StoredMessage {
    store
        .append_message(message(session_id, role, content))
        .await
        .expect("append")
}

#[tokio::test]
async fn creates_parent_dir_and_file_and_enables_wal() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("nested").join("data");
    assert!(!dir.exists());
    let url = Store::sqlite_url_for_dir(&dir);
    let store = Store::connect(&url).await.unwrap();
    assert!(dir.join("open-clanker.db").is_file());
    assert_eq!(store.backend(), "sqlite");
    store.ping().await.unwrap();

    let db = raw(&url).await;
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA journal_mode",
        ))
        .await
        .unwrap()
        .expect("a row");
    let mode: String = row.try_get_by_index(0).unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
}

#[tokio::test]
async fn create_get_and_newest_by_key() {
    let (store, _dir, _) = temp_store().await;
    let a = store.create_session(Some("tg:1"), "first").await.unwrap();
    assert_eq!(a.key.as_deref(), Some("tg:1"));
    assert_eq!(a.title, "first");
    assert_eq!(a.message_count, 0);
    assert_eq!(a.created_at_ms, a.updated_at_ms);
    assert_eq!(uuid::Uuid::parse_str(&a.id).unwrap().get_version_num(), 7);

    assert_eq!(store.get_session(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.get_session("nope").await.unwrap(), None);

    // Created within the same millisecond or not, the later one wins.
    let b = store.create_session(Some("tg:1"), "second").await.unwrap();
    let c = store.create_session(Some("tg:2"), "other").await.unwrap();
    let _unkeyed = store.create_session(None, "").await.unwrap();
    assert_eq!(store.session_by_key("tg:1").await.unwrap(), Some(b.clone()));
    assert_eq!(store.session_by_key("tg:2").await.unwrap(), Some(c));
    assert_eq!(store.session_by_key("tg:3").await.unwrap(), None);
}

#[tokio::test]
async fn list_sessions_pages_newest_first() {
    let (store, _dir, _) = temp_store().await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(store.create_session(None, &format!("s{i}")).await.unwrap());
        if i % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let expected: Vec<String> = created.iter().rev().map(|s| s.id.clone()).collect();

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_sessions(3, token.as_deref(), None)
            .await
            .unwrap();
        pages += 1;
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|s| s.id.clone()));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);

    // 0 means the default (50); an empty token is the first page.
    let all = store.list_sessions(0, Some(""), None).await.unwrap();
    assert_eq!(all.items.len(), 7);
    assert_eq!(all.next_page_token, None);
    let ids: Vec<String> = all.items.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, expected);

    // An exact fit has no further page.
    let exact = store.list_sessions(7, None, None).await.unwrap();
    assert_eq!(exact.items.len(), 7);
    assert_eq!(exact.next_page_token, None);
}

#[tokio::test]
async fn list_sessions_key_prefix_is_literal_and_case_sensitive() {
    let (store, _dir, _) = temp_store().await;
    for key in [
        Some("tg:1"),
        Some("tg:2"),
        Some("tgx"),
        Some("t%:x"),
        Some("t_:y"),
        Some("TG:3"),
        Some("discord:1"),
        None,
    ] {
        store.create_session(key, "").await.unwrap();
    }
    let keys = |page: open_clanker_store::Page<open_clanker_store::Session>| -> HashSet<String> {
        page.items.into_iter().filter_map(|s| s.key).collect()
    };
    let tg = keys(store.list_sessions(0, None, Some("tg:")).await.unwrap());
    assert_eq!(tg, HashSet::from(["tg:1".to_owned(), "tg:2".to_owned()]));
    let percent = keys(store.list_sessions(0, None, Some("t%")).await.unwrap());
    assert_eq!(percent, HashSet::from(["t%:x".to_owned()]));
    let underscore = keys(store.list_sessions(0, None, Some("t_")).await.unwrap());
    assert_eq!(underscore, HashSet::from(["t_:y".to_owned()]));
    let upper = keys(store.list_sessions(0, None, Some("TG")).await.unwrap());
    assert_eq!(upper, HashSet::from(["TG:3".to_owned()]));
    let none = store.list_sessions(0, None, Some("zzz")).await.unwrap();
    assert!(none.items.is_empty());
    assert_eq!(none.next_page_token, None);
    // An empty prefix is no filter (unkeyed sessions included).
    let all = store.list_sessions(0, None, Some("")).await.unwrap();
    assert_eq!(all.items.len(), 8);

    // Paging under a prefix.
    let first = store.list_sessions(1, None, Some("tg")).await.unwrap();
    assert_eq!(first.items.len(), 1);
    let second = store
        .list_sessions(1, first.next_page_token.as_deref(), Some("tg"))
        .await
        .unwrap();
    let third = store
        .list_sessions(1, second.next_page_token.as_deref(), Some("tg"))
        .await
        .unwrap();
    assert_eq!(third.next_page_token, None);
    let mut paged: HashSet<String> = HashSet::new();
    for page in [first, second, third] {
        paged.extend(page.items.into_iter().filter_map(|s| s.key));
    }
    assert_eq!(
        paged,
        HashSet::from(["tg:1".to_owned(), "tg:2".to_owned(), "tgx".to_owned()])
    );
}

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
async fn reset_keeps_the_session_and_removes_messages() {
    let (store, _dir, _) = temp_store().await;
    let s = store.create_session(Some("k"), "").await.unwrap();
    let keep = store.create_session(None, "keep").await.unwrap();
    for i in 0..3 {
        append(&store, &s.id, Role::User, &format!("m{i}")).await;
    }
    append(&store, &keep.id, Role::User, "stays").await;

    assert_eq!(store.reset_session(&s.id).await.unwrap(), 3);
    let after = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!(after.message_count, 0);
    assert_eq!(after.title, "m0");
    assert_eq!(after.key.as_deref(), Some("k"));
    assert!(
        store
            .history(&s.id, 0, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        store.history(&keep.id, 0, None).await.unwrap().items.len(),
        1
    );
    assert_eq!(store.reset_session(&s.id).await.unwrap(), 0);

    // The session goes on.
    append(&store, &s.id, Role::User, "again").await;
    assert_eq!(
        store
            .get_session(&s.id)
            .await
            .unwrap()
            .unwrap()
            .message_count,
        1
    );

    assert!(matches!(
        store.reset_session("missing").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn delete_removes_the_session_and_its_messages() {
    let (store, _dir, _) = temp_store().await;
    let s = store.create_session(None, "").await.unwrap();
    let keep = store.create_session(None, "").await.unwrap();
    append(&store, &s.id, Role::User, "a").await;
    append(&store, &s.id, Role::Assistant, "b").await;
    append(&store, &keep.id, Role::User, "c").await;

    assert!(store.delete_session(&s.id).await.unwrap());
    assert_eq!(store.get_session(&s.id).await.unwrap(), None);
    assert!(matches!(
        store.history(&s.id, 0, None).await,
        Err(StoreError::NotFound(_))
    ));
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.sessions, stats.messages), (1, 1));
    assert!(!store.delete_session(&s.id).await.unwrap());
}

#[tokio::test]
async fn the_foreign_key_cascades() {
    let (store, _dir, url) = temp_store().await;
    let s = store.create_session(None, "").await.unwrap();
    append(&store, &s.id, Role::User, "a").await;
    append(&store, &s.id, Role::User, "b").await;

    // Delete the session row alone, behind the store's back: the messages go with it.
    let db = raw(&url).await;
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "DELETE FROM sessions WHERE id = ?",
        [s.id.clone().into()],
    ))
    .await
    .unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.sessions, stats.messages), (0, 0));
}

#[tokio::test]
async fn stats_count_sessions_and_messages() {
    let (store, _dir, _) = temp_store().await;
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.backend, "sqlite");
    assert_eq!((stats.sessions, stats.messages), (0, 0));
    let a = store.create_session(None, "").await.unwrap();
    let b = store.create_session(None, "").await.unwrap();
    append(&store, &a.id, Role::User, "1").await;
    append(&store, &a.id, Role::Assistant, "2").await;
    append(&store, &b.id, Role::User, "3").await;
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.sessions, stats.messages), (2, 3));
}

#[tokio::test]
async fn invalid_page_tokens_are_rejected() {
    let (store, _dir, _) = temp_store().await;
    let s = store.create_session(None, "").await.unwrap();
    store.create_session(None, "").await.unwrap();
    append(&store, &s.id, Role::User, "1").await;
    append(&store, &s.id, Role::User, "2").await;

    for bad in ["garbage", "zz", "abc", "00", "deadbeef"] {
        assert!(
            matches!(
                store.list_sessions(10, Some(bad), None).await,
                Err(StoreError::InvalidPageToken(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(
                store.history(&s.id, 10, Some(bad)).await,
                Err(StoreError::InvalidPageToken(_))
            ),
            "{bad}"
        );
    }

    // A token of one listing is not valid for the other.
    let sessions_token = store
        .list_sessions(1, None, None)
        .await
        .unwrap()
        .next_page_token
        .expect("more sessions");
    let history_token = store
        .history(&s.id, 1, None)
        .await
        .unwrap()
        .next_page_token
        .expect("more messages");
    assert!(matches!(
        store.history(&s.id, 10, Some(&sessions_token)).await,
        Err(StoreError::InvalidPageToken(_))
    ));
    assert!(matches!(
        store.list_sessions(10, Some(&history_token), None).await,
        Err(StoreError::InvalidPageToken(_))
    ));
}

#[tokio::test]
async fn reopening_keeps_data_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = Store::sqlite_url_for_dir(dir.path());
    let (id, message_id) = {
        let store = Store::connect(&url).await.unwrap();
        let s = store
            .create_session(Some("keep"), "persisted")
            .await
            .unwrap();
        let m = append(&store, &s.id, Role::User, "hello").await;
        (s.id, m.id)
    };
    for _ in 0..2 {
        let store = Store::connect(&url).await.unwrap();
        let s = store.get_session(&id).await.unwrap().expect("still there");
        assert_eq!(s.title, "persisted");
        assert_eq!(s.message_count, 1);
        let history = store.history(&id, 0, None).await.unwrap();
        assert_eq!(history.items.len(), 1);
        assert_eq!(history.items[0].id, message_id);
    }
    let db = raw(&url).await;
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT COUNT(*) FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .expect("a row");
    let applied: i64 = row.try_get_by_index(0).unwrap();
    // Each migration is recorded once, however often the store was opened: the initial schema,
    // channel access, spend, the write probe and the index of answers still streaming.
    assert_eq!(applied, 5);
}

#[tokio::test]
async fn an_unknown_role_in_the_database_is_an_error() {
    let (store, _dir, url) = temp_store().await;
    let s = store.create_session(None, "").await.unwrap();
    let db = raw(&url).await;
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "INSERT INTO messages (session_id, role, content, input_tokens, output_tokens, status, created_at) \
         VALUES (?, 'robot', 'beep', 0, 0, 'complete', 0)",
        [s.id.clone().into()],
    ))
    .await
    .unwrap();
    match store.history(&s.id, 0, None).await {
        Err(StoreError::Database(msg)) => assert!(msg.contains("robot"), "{msg}"),
        other => panic!("expected a database error, got {other:?}"),
    }
    assert!(matches!(
        store.recent_messages(&s.id, 10).await,
        Err(StoreError::Database(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_all_succeed() {
    let (store, _dir, _) = temp_store().await;
    let s = store.create_session(None, "").await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            let id = s.id.clone();
            tokio::spawn(async move {
                store
                    .append_message(message(&id, Role::User, &format!("m{i}")))
                    .await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        let stored = task.await.expect("task").expect("append");
        assert!(ids.insert(stored.id));
    }
    assert_eq!(ids.len(), 50);
    let after = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!(after.message_count, 50);
    assert_eq!(store.history(&s.id, 0, None).await.unwrap().items.len(), 50);
}

#[tokio::test]
async fn in_memory_databases_work() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let s = store.create_session(Some("m"), "").await.unwrap();
    append(&store, &s.id, Role::User, "hi").await;
    // Give the pool a chance to misbehave between calls.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(store.history(&s.id, 0, None).await.unwrap().items.len(), 1);
    assert_eq!(store.stats().await.unwrap().sessions, 1);
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in ["mysql://root@localhost/db", "nonsense", "http://x"] {
        assert!(
            matches!(Store::connect(url).await, Err(StoreError::InvalidUrl(_))),
            "{url}"
        );
    }
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn postgres_without_the_feature_is_refused_without_leaking_the_password() {
    let err = Store::connect("postgres://app:hunter2@localhost/clanker")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"));
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

/// Many writers at once: the writer commits them in batches; every write is answered with its
/// own result, one failing write (a missing session, a write the database refuses) fails alone,
/// and everything
/// acknowledged is on disk for another connection to read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_batched_and_fail_alone() {
    let (store, _dir, url) = temp_store().await;
    let db = raw(&url).await;
    // A write the database refuses, mid-batch: a trigger aborts it.
    db.execute_unprepared(
        "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.content = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..400 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            match i % 40 {
                // A missing session: NotFound, nothing written.
                7 => store
                    .append_message(message("no-such-session", Role::User, "lost"))
                    .await
                    .map(|_| None),
                // Refused by the database: the batch it was in is rolled back and retried write by
                // write.
                13 => store
                    .create_session_with_message(
                        Some("poisoned"),
                        message("", Role::User, "poison"),
                    )
                    .await
                    .map(|_| None),
                _ => {
                    let (session, first) = store
                        .create_session_with_message(
                            None,
                            message("", Role::User, &format!("question {i}")),
                        )
                        .await?;
                    let mut answer = message(&session.id, Role::Assistant, &format!("answer {i}"));
                    answer.provider = Some("anthropic".into());
                    answer.model = Some("m".into());
                    answer.cost_micros = 3;
                    let second = store.append_message(answer).await?;
                    assert!(second.id > first.id);
                    Ok(Some((session.id, i)))
                }
            }
        }));
    }
    let mut ok = Vec::new();
    let (mut not_found, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(Some(done)) => ok.push(done),
            Ok(None) => panic!("a write that must fail succeeded"),
            Err(StoreError::NotFound(_)) => not_found += 1,
            Err(StoreError::Database(_)) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok.len(), not_found, refused), (380, 10, 10));

    assert_eq!(store.session_by_key("poisoned").await.unwrap(), None);
    for (id, i) in ok.iter().step_by(19) {
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "SELECT content FROM messages WHERE session_id = ? ORDER BY id",
                [id.clone().into()],
            ))
            .await
            .unwrap();
        let texts: Vec<String> = rows
            .iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect();
        assert_eq!(texts, [format!("question {i}"), format!("answer {i}")]);
        let s = store.get_session(id).await.unwrap().unwrap();
        assert_eq!((s.message_count, s.cost_micros), (2, 3));
        assert_eq!(s.title, format!("question {i}"));
    }
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.sessions, stats.messages), (380, 760));
    let ledger = store
        .usage_on(&open_clanker_store::utc_day(now_ms()))
        .await
        .unwrap();
    assert_eq!(ledger.iter().map(|u| u.turns).sum::<u64>(), 380);
}

/// The store's connections do not checkpoint inside commits; the writer does it beside itself,
/// so the pages reach the database file while the gateway runs (not only at close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_checkpoints_the_wal_into_the_database_file() {
    let (store, dir, _url) = temp_store().await;
    let file = dir.path().join("open-clanker.db");
    let before = std::fs::metadata(&file).unwrap().len();
    let s = store.create_session(None, "").await.unwrap();
    let text = "x".repeat(2000);
    for _ in 0..600 {
        append(&store, &s.id, Role::User, &text).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = std::fs::metadata(&file).unwrap().len();
        // 600 messages of 2 KB: at least 1 MB of pages once checkpointed.
        if now > before + 1_000_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {now} bytes (was {before})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Under writes that never pause (and readers beside them) the passive checkpoints never catch up
/// completely, so SQLite never starts the WAL over: the writer then truncates it between two
/// batches, and the WAL file stays bounded instead of growing with everything written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_steady_writes() {
    let (store, dir, _url) = temp_store().await;
    let wal = dir.path().join("open-clanker.db-wal");
    let s = store.create_session(None, "").await.unwrap();
    let text = "y".repeat(4000);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, id, stop) = (store.clone(), s.id.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store.recent_messages(&id, 5).await.unwrap();
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..16)
        .map(|_| {
            let (store, id, text) = (store.clone(), s.id.clone(), text.clone());
            tokio::spawn(async move {
                for _ in 0..600 {
                    append(&store, &id, Role::User, &text).await;
                }
            })
        })
        .collect();
    let mut largest = 0;
    for w in writers {
        while !w.is_finished() {
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        w.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    // 9,600 messages of 4 KB (~40 MB of pages) went through; the WAL never held them all.
    assert_eq!(
        store
            .get_session(&s.id)
            .await
            .unwrap()
            .unwrap()
            .message_count,
        9600
    );
    assert!(largest < 28 << 20, "the WAL grew to {largest} bytes");
}

fn answer(session_id: &str, content: &str) -> NewMessage {
    NewMessage {
        provider: Some("anthropic".to_owned()),
        model: Some("m".to_owned()),
        ..message(session_id, Role::Assistant, content)
    }
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

#[tokio::test]
async fn an_exclusive_store_locks_its_file_and_marks_answers_left_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let url = Store::sqlite_url_for_dir(dir.path());
    let (session, id) = {
        let store = Store::connect_exclusive(&url).await.unwrap();
        // Another exclusive opening is refused while this one lives; a plain one is not.
        match Store::connect_exclusive(&url).await {
            Err(StoreError::InUse { dir: d, holder }) => {
                assert_eq!(d, dir.path().display().to_string());
                assert_eq!(holder, format!("pid {}", std::process::id()));
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        let plain = Store::connect(&url).await.unwrap();
        let s = plain.create_session(None, "").await.unwrap();
        append(&plain, &s.id, Role::User, "hi").await;
        let begun = store.start_answer(answer(&s.id, "cut")).await.unwrap();
        (s.id, begun.id)
    };
    // The lock went with the store: the next one takes it and sweeps the answer left streaming.
    let store = Store::connect_exclusive(&url).await.unwrap();
    let history = store.history(&session, 0, None).await.unwrap().items;
    assert_eq!(history[1].id, id);
    assert_eq!(history[1].status, MessageStatus::Interrupted);
    assert_eq!(
        history[1].stop_reason.as_deref(),
        Some(open_clanker_store::CRASH)
    );
    assert_eq!(history[1].content, "cut");
    // The sweep reads the partial index of answers still streaming, not every message.
    let plan = raw(&url)
        .await
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "EXPLAIN QUERY PLAN UPDATE messages SET stop_reason = 'crash' \
             WHERE stop_reason = 'streaming'",
        ))
        .await
        .unwrap();
    let plan: Vec<String> = plan
        .iter()
        .map(|r| r.try_get_by_index::<String>(3).unwrap())
        .collect();
    assert!(
        plan.iter().any(|p| p.contains("idx_messages_streaming")),
        "{plan:?}"
    );
    // In-memory stores take no lock.
    let a = Store::connect_exclusive("sqlite::memory:").await.unwrap();
    let b = Store::connect_exclusive("sqlite::memory:").await.unwrap();
    a.ping().await.unwrap();
    b.ping().await.unwrap();
}

#[tokio::test]
async fn a_refused_write_marks_the_store_unwritable_until_one_commits() {
    let (store, _dir, url) = temp_store().await;
    let s = store.create_session(None, "").await.unwrap();
    assert_eq!(store.write_error(), None);
    let db = raw(&url).await;
    db.execute_unprepared(
        "CREATE TRIGGER refuse BEFORE INSERT ON messages \
         BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
    )
    .await
    .unwrap();
    let err = store
        .append_message(message(&s.id, Role::User, "hi"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("disk on fire"), "{err}");
    let why = store.write_error().expect("not writable");
    assert!(why.contains("disk on fire"), "{why}");
    // A write's own fault says nothing about the store.
    assert!(matches!(
        store
            .append_message(message("gone", Role::User, "hi"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.write_error().is_some());
    // Once the cause is gone the writer's own probe notices, without any other write.
    db.execute_unprepared("DROP TRIGGER refuse").await.unwrap();
    let began = std::time::Instant::now();
    while store.write_error().is_some() {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "still not writable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    append(&store, &s.id, Role::User, "hi").await;
}
