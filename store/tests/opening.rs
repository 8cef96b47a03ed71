//! Opening a store on SQLite: files and directories, reopening, in-memory databases, refused
//! URLs, and the exclusive lock with its sweep of answers left streaming.

use std::time::Duration;

use open_clanker_store::{MessageStatus, Role, Store, StoreError};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

mod common;

use common::{answer, append, raw};

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
