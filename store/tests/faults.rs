//! Faults: rows the store cannot read, and writes the database refuses (the store reports itself
//! unwritable until a write commits again).

use std::time::Duration;

use open_clanker_store::{Role, StoreError};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

mod common;

use common::{append, message, raw, temp_store};

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
