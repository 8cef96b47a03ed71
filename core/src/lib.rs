//! Shared domain types of Open Clanker.
//!
//! Everything here is plain data plus one trait, [`ChatBackend`], which is how a channel (Telegram,
//! Discord, the OpenAI-compatible endpoint) asks the gateway to run a turn without knowing about gRPC,
//! the store or the providers. Providers and the store use the message types; the server maps them to
//! and from Protobuf.

use std::fmt;
use std::str::FromStr;

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub mod redact;

/// The one secret type: an API key or a bot token read from the config or the environment. Its
/// `Debug` shows `[REDACTED]`, so a struct holding one can derive `Debug` without leaking it;
/// the value is read with [`ExposeSecret::expose_secret`] where it is sent, and nowhere else.
pub use secrecy::{ExposeSecret, SecretString};

/// Unix time in milliseconds (0 before 1970, saturating far in the future): the one clock the
/// store, the engine and the channels stamp rows and deadlines with.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(Role::System),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            other => Err(UnknownValue(format!("unknown role {other:?}"))),
        }
    }
}

/// A string that names no known variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownValue(pub String);

/// One message of a conversation as sent to a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// Token counts reported by a provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The AI providers Open Clanker speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Anthropic,
    #[serde(rename = "openai")]
    OpenAi,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 2] = [ProviderKind::Anthropic, ProviderKind::OpenAi];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAi => "openai",
        }
    }

    /// The environment variable that holds this provider's API key.
    pub fn api_key_env(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "ANTHROPIC_API_KEY",
            ProviderKind::OpenAi => "OPENAI_API_KEY",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "anthropic" => Ok(ProviderKind::Anthropic),
            "openai" => Ok(ProviderKind::OpenAi),
            other => Err(UnknownValue(format!(
                "unknown provider {other:?} (expected \"anthropic\" or \"openai\")"
            ))),
        }
    }
}

/// Whether a stored message is whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// The message is complete.
    Complete,
    /// The answer was cut off (provider error, client gone, shutdown); the content is what arrived.
    Interrupted,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Complete => "complete",
            MessageStatus::Interrupted => "interrupted",
        }
    }
}

impl FromStr for MessageStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "complete" => Ok(MessageStatus::Complete),
            "interrupted" => Ok(MessageStatus::Interrupted),
            other => Err(UnknownValue(format!("unknown message status {other:?}"))),
        }
    }
}

/// A conversation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Opaque id (a UUID).
    pub id: String,
    /// An optional external name, e.g. `telegram:12345`; several sessions may share it over time.
    pub key: Option<String>,
    pub title: String,
    /// Unix time in milliseconds.
    pub created_at_ms: i64,
    /// Unix time in milliseconds of the last message.
    pub updated_at_ms: i64,
    pub message_count: u64,
    /// What the session's answers cost so far, in millionths of a US dollar (kept across resets).
    pub cost_micros: i64,
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Increasing id: later messages have larger ids.
    pub id: i64,
    pub session_id: String,
    pub role: Role,
    pub content: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub usage: Usage,
    pub status: MessageStatus,
    pub stop_reason: Option<String>,
    /// Unix time in milliseconds.
    pub created_at_ms: i64,
    /// What this answer cost, in millionths of a US dollar (0 for user messages and unpriced models).
    pub cost_micros: i64,
}

/// Which session a turn belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRef {
    /// An existing session; NOT_FOUND when absent.
    Id(String),
    /// The newest session with this key, created when there is none.
    Key(String),
    /// A new session.
    New,
    /// No session: the caller supplies the earlier messages (system messages become the system
    /// prompt) and nothing is stored. Events then carry session id "" and message id 0.
    Stateless(Vec<ChatMessage>),
}

/// A request to run one turn: store the user's text, ask the model, stream and store the answer.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub session: SessionRef,
    pub text: String,
    /// Provider name; the configured default when `None`.
    pub provider: Option<String>,
    /// Model name; the provider's configured default when `None`.
    pub model: Option<String>,
    /// Who asks: each caller gets a fair share of the concurrent-turn budget, and a chat sender
    /// its own turn rate. `None` for the owner's own unauthenticated loopback calls, which share
    /// the whole budget.
    pub caller: Option<Caller>,
}

/// Who asks for a turn, as the front end that received it knows them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// An API client, by the name of its token.
    Token(String),
    /// An unauthenticated remote API client, by address.
    Peer(String),
    /// A person on a chat channel (`telegram`, `discord`, ...), by sender id. API clients are
    /// rate limited per request at the door; a chat sender has no door, so the engine limits
    /// its turns.
    ChatSender { channel: String, sender: String },
}

impl Caller {
    /// The caller's stable key: `token:<name>`, `peer:<address>` or `<channel>:<sender id>`.
    pub fn key(&self) -> String {
        match self {
            Caller::Token(name) => format!("token:{name}"),
            Caller::Peer(address) => format!("peer:{address}"),
            Caller::ChatSender { channel, sender } => format!("{channel}:{sender}"),
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// What a running turn reports, in order: one `Started`, any number of `Delta`s, at most one `Usage`,
/// then exactly one of `Completed` or `Failed`.
#[derive(Debug, Clone)]
pub enum TurnEvent {
    /// Boxed, like the stored messages below: events wait in a channel per open stream whose
    /// buffer holds 32 of them at the size of the largest variant, so the rare, large ones are
    /// boxed and the frequent `Delta` sets the size (40 bytes instead of 96).
    Started(Box<TurnStarted>),
    Delta(String),
    Usage(Usage),
    Completed(Box<StoredMessage>),
    /// The turn failed after it started; `partial` is the interrupted answer if any text arrived.
    Failed {
        error: TurnError,
        partial: Option<Box<StoredMessage>>,
    },
}

/// The first event of a turn: the user's message is stored (unless the turn is stateless).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnStarted {
    /// Empty for a stateless turn.
    pub session_id: String,
    pub session_created: bool,
    /// 0 for a stateless turn.
    pub user_message_id: i64,
    pub provider: String,
    pub model: String,
}

/// A turn's events.
pub type TurnStream = BoxStream<'static, TurnEvent>;

/// Why a turn (or a session operation) failed. Each kind maps onto one gRPC status code and one HTTP
/// status; the message is safe to show to the person who asked (it never contains a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Internal(String),
}

/// How channels (and any other front end) run turns and manage sessions. The server implements it
/// over the store and the providers; a channel holds an `Arc<dyn ChatBackend>`.
#[async_trait::async_trait]
pub trait ChatBackend: Send + Sync + 'static {
    /// Starts a turn. Errors found before anything is stored (bad input, unknown session, provider
    /// not configured) come back here; later failures arrive as [`TurnEvent::Failed`].
    async fn start_turn(&self, request: TurnRequest) -> Result<TurnStream, TurnError>;

    /// The newest session with this key, if any.
    async fn session_by_key(&self, key: &str) -> Result<Option<Session>, TurnError>;

    /// Clears a session's history; the session itself (id, key, title) stays.
    async fn reset_session(&self, session_id: &str) -> Result<(), TurnError>;

    /// Opens a new, empty session under `key`: later turns with this key go to it, and the
    /// sessions used before stay as they are (listed and readable by id).
    async fn new_session(&self, key: &str) -> Result<Session, TurnError>;
}

/// A sender allowed to talk to the assistant on a channel (approved by pairing or by the owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedSender {
    /// The channel's name, e.g. `telegram`.
    pub channel: String,
    /// The platform's id of the sender (a Telegram user id, a Discord user id).
    pub sender: String,
    /// A human-readable name for listings (`@username`, display name); may be empty.
    pub label: String,
    /// Unix time in milliseconds.
    pub created_at_ms: i64,
}

/// A pending pairing: an unknown sender received `code` and waits for the owner's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingRequest {
    pub channel: String,
    pub sender: String,
    pub label: String,
    /// The code the sender was given (upper case).
    pub code: String,
    /// Unix time in milliseconds.
    pub created_at_ms: i64,
    /// Unix time in milliseconds after which the code is void.
    pub expires_at_ms: i64,
}

/// A pairing to record with [`AccessStore::create_pairing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPairing {
    pub channel: String,
    pub sender: String,
    pub label: String,
    pub code: String,
    /// Unix time in milliseconds after which the code is void.
    pub expires_at_ms: i64,
}

/// Why an access operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// No such (unexpired) pairing code, or no such allowed sender.
    #[error("{0}")]
    NotFound(String),
    /// The channel already has the most pending pairings it may have.
    #[error("{0}")]
    TooManyPending(String),
    /// The code is already in use on this channel (generate another one).
    #[error("{0}")]
    Conflict(String),
    /// The storage failed.
    #[error("{0}")]
    Storage(String),
}

/// Who may talk to the assistant on a channel: the allowlist and the pending pairing codes, kept in
/// the database. The store implements it; a channel holds an `Arc<dyn AccessStore>`. Expired codes
/// are never returned and are deleted as a side effect of the calls that look at codes.
#[async_trait::async_trait]
pub trait AccessStore: Send + Sync + 'static {
    /// True when `sender` is on `channel`'s stored allowlist.
    async fn is_allowed(&self, channel: &str, sender: &str) -> Result<bool, AccessError>;

    /// Puts `sender` on the allowlist (updating the label when already there) and drops its
    /// pending pairings.
    async fn allow(
        &self,
        channel: &str,
        sender: &str,
        label: &str,
    ) -> Result<AllowedSender, AccessError>;

    /// Removes `sender` from the allowlist; `false` when it was not there.
    async fn revoke(&self, channel: &str, sender: &str) -> Result<bool, AccessError>;

    /// The allowed senders of one channel (or of all), oldest first.
    async fn list_allowed(&self, channel: Option<&str>) -> Result<Vec<AllowedSender>, AccessError>;

    /// Records a pairing code. When the sender already has an unexpired one, that one is returned
    /// instead (and `pairing.code` is not used). [`AccessError::TooManyPending`] when the channel
    /// already has `max_pending` unexpired codes; [`AccessError::Conflict`] when the code is taken.
    async fn create_pairing(
        &self,
        pairing: NewPairing,
        max_pending: u32,
    ) -> Result<PairingRequest, AccessError>;

    /// The sender's unexpired pairing, if any.
    async fn pending_pairing(
        &self,
        channel: &str,
        sender: &str,
    ) -> Result<Option<PairingRequest>, AccessError>;

    /// Unexpired pairings of one channel (or of all), oldest first.
    async fn list_pairings(
        &self,
        channel: Option<&str>,
    ) -> Result<Vec<PairingRequest>, AccessError>;

    /// Approves an unexpired code (compared without regard to case): the sender goes on the
    /// allowlist and the code is consumed. [`AccessError::NotFound`] for an unknown or expired code.
    async fn approve_pairing(
        &self,
        channel: &str,
        code: &str,
    ) -> Result<AllowedSender, AccessError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_round_trip() {
        for kind in ProviderKind::ALL {
            assert_eq!(kind.as_str().parse::<ProviderKind>().unwrap(), kind);
        }
        assert_eq!(
            "OpenAI".parse::<ProviderKind>().unwrap(),
            ProviderKind::OpenAi
        );
        let err = "gemini".parse::<ProviderKind>().unwrap_err();
        assert!(err.0.contains("gemini"), "{err}");
    }

    #[test]
    fn roles_and_statuses_round_trip() {
        for role in [Role::System, Role::User, Role::Assistant] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        for status in [MessageStatus::Complete, MessageStatus::Interrupted] {
            assert_eq!(status.as_str().parse::<MessageStatus>().unwrap(), status);
        }
        assert!("robot".parse::<Role>().is_err());
    }

    /// Every open stream's event channel holds a block of 32 events at this size: a large
    /// variant added unboxed would cost every stream kilobytes (docs/BENCHMARKS.md).
    #[test]
    fn turn_events_stay_small() {
        assert!(
            std::mem::size_of::<TurnEvent>() <= 40,
            "TurnEvent is {} bytes: box the large variant",
            std::mem::size_of::<TurnEvent>()
        );
    }
}
