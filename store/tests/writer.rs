//! The single writer under load: concurrent writes batched and failing alone, and the WAL it
//! checkpoints and keeps bounded.

use std::collections::HashSet;
use std::time::Duration;

use open_clanker_core::now_ms;
use open_clanker_store::{Role, StoreError};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

mod common;

use common::{append, message, raw, temp_store};

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
