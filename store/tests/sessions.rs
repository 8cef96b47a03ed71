//! Sessions on SQLite files: creating, finding by key, listing in pages and by key prefix,
//! resetting, deleting, counting, and page tokens the store refuses.

use std::collections::HashSet;
use std::time::Duration;

use open_clanker_store::{Role, StoreError};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

mod common;

use common::{append, raw, temp_store};

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
