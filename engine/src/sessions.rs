//! The session operations of `SessionService` and the chat channels' commands, with the same
//! input rules as turns.

use open_clanker_core::{ChatBackend, Session, StoredMessage, TurnError};
use open_clanker_store::Page;

use crate::Engine;
use crate::rules::{check_id, check_key, check_title, store_error};

fn not_found(id: &str) -> TurnError {
    TurnError::NotFound(format!("session {id:?} not found"))
}

impl Engine {
    /// A new session, under `key` if given (blank means none), with a title.
    pub async fn create_session(
        &self,
        key: Option<&str>,
        title: &str,
    ) -> Result<Session, TurnError> {
        let key = key.filter(|k| !k.trim().is_empty());
        if let Some(k) = key {
            check_key(k)?;
        }
        let title = check_title(title)?;
        self.store
            .create_session(key, title)
            .await
            .map_err(store_error)
    }

    /// A page of sessions, newest first, optionally only those whose key starts with
    /// `key_prefix`.
    pub async fn list_sessions(
        &self,
        page_size: u32,
        page_token: Option<&str>,
        key_prefix: Option<&str>,
    ) -> Result<Page<Session>, TurnError> {
        self.store
            .list_sessions(page_size, page_token, key_prefix)
            .await
            .map_err(store_error)
    }

    /// One session by id.
    pub async fn session(&self, id: &str) -> Result<Session, TurnError> {
        let id = check_id(id)?;
        self.store
            .get_session(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found(id))
    }

    /// A page of a session's messages, oldest first.
    pub async fn history(
        &self,
        id: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<StoredMessage>, TurnError> {
        let id = check_id(id)?;
        self.store
            .history(id, page_size, page_token)
            .await
            .map_err(store_error)
    }

    /// Deletes a session's messages and keeps the session; returns it and how many messages
    /// went.
    pub async fn clear_session(&self, id: &str) -> Result<(Session, u64), TurnError> {
        let id = check_id(id)?;
        let deleted = self.store.reset_session(id).await.map_err(store_error)?;
        Ok((self.session(id).await?, deleted))
    }

    /// Deletes a session and its messages.
    pub async fn delete_session(&self, id: &str) -> Result<(), TurnError> {
        let id = check_id(id)?;
        match self.store.delete_session(id).await.map_err(store_error)? {
            true => Ok(()),
            false => Err(not_found(id)),
        }
    }
}

/// The chat channels' session commands (`/new`, `/reset`).
#[async_trait::async_trait]
impl ChatBackend for Engine {
    async fn start_turn(
        &self,
        request: open_clanker_core::TurnRequest,
    ) -> Result<open_clanker_core::TurnStream, TurnError> {
        self.run_turn(request).await
    }

    async fn session_by_key(&self, key: &str) -> Result<Option<Session>, TurnError> {
        check_key(key)?;
        self.store.session_by_key(key).await.map_err(store_error)
    }

    async fn new_session(&self, key: &str) -> Result<Session, TurnError> {
        check_key(key)?;
        self.store
            .create_session(Some(key), "")
            .await
            .map_err(store_error)
    }

    async fn reset_session(&self, session_id: &str) -> Result<(), TurnError> {
        let session_id = check_id(session_id)?;
        self.store
            .reset_session(session_id)
            .await
            .map(|_| ())
            .map_err(store_error)
    }
}
