//! Helpers shared by the store's integration tests: a store on a temporary SQLite file, a raw
//! connection beside it, and the messages the tests append.

// Each test file uses some of these.
#![allow(dead_code)]

use open_clanker_store::{MessageStatus, NewMessage, Role, Store, StoredMessage, Usage};
use sea_orm::{Database, DatabaseConnection};
use tempfile::TempDir;

/// A store on a fresh file in a fresh temporary directory (kept alive by the returned guard).
pub async fn temp_store() -> (Store, TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = Store::sqlite_url_for_dir(dir.path());
    let store = Store::connect(&url).await.expect("connect");
    (store, dir, url)
}

/// A second, raw connection to the same database, to look behind the store's back.
pub async fn raw(url: &str) -> DatabaseConnection {
    Database::connect(url).await.expect("raw connect")
}

pub fn message(session_id: &str, role: Role, content: &str) -> NewMessage {
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

pub async fn append(store: &Store, session_id: &str, role: Role, content: &str) -> StoredMessage {
    store
        .append_message(message(session_id, role, content))
        .await
        .expect("append")
}

pub fn answer(session_id: &str, content: &str) -> NewMessage {
    NewMessage {
        provider: Some("anthropic".to_owned()),
        model: Some("m".to_owned()),
        ..message(session_id, Role::Assistant, content)
    }
}
