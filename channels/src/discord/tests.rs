//! The Discord channel against the Discord stand-in (REST + gateway on 127.0.0.1).

use std::collections::HashMap;
use std::sync::Mutex;

use open_clanker_core::{
    AccessError, AccessStore, AllowedSender, ChatBackend, MessageStatus, NewPairing,
    PairingRequest, Role, Session, SessionRef, StoredMessage, TurnError, TurnEvent, TurnRequest,
    TurnStream, Usage,
};
use open_clanker_testkit::discord::{self, BOT_ID, DiscordStandIn, Failure, Incoming};

use super::*;
use crate::access::{DmPolicy, GroupPolicy};

const TOKEN: &str = "MTE4.discord-test.token_abcdefghijklmnop";
const WAIT: Duration = Duration::from_secs(20);

/// Echoes the text word by word (100 ms apart); `long` answers 700 words in 7 deltas.
#[derive(Default)]
struct Echo {
    texts: Mutex<Vec<String>>,
    sessions: Mutex<HashMap<String, u64>>,
}

fn stored(content: &str) -> StoredMessage {
    StoredMessage {
        id: 2,
        session_id: "s".into(),
        role: Role::Assistant,
        content: content.into(),
        provider: None,
        model: None,
        usage: Usage::default(),
        status: MessageStatus::Complete,
        stop_reason: None,
        created_at_ms: 0,
        cost_micros: 0,
    }
}

fn long_answer() -> String {
    (0..700)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[async_trait::async_trait]
impl ChatBackend for Echo {
    async fn start_turn(&self, request: TurnRequest) -> Result<TurnStream, TurnError> {
        self.texts.lock().unwrap().push(request.text.clone());
        if let SessionRef::Key(key) = &request.session {
            *self
                .sessions
                .lock()
                .unwrap()
                .entry(key.clone())
                .or_default() += 2;
        }
        let (answer, deltas): (String, Vec<String>) = if request.text == "long" {
            let answer = long_answer();
            let words: Vec<&str> = answer.split(' ').collect();
            let deltas = words
                .chunks(100)
                .enumerate()
                .map(|(i, c)| format!("{}{}", if i == 0 { "" } else { " " }, c.join(" ")))
                .collect();
            (answer, deltas)
        } else {
            let answer = format!("echo: {}", request.text);
            let deltas = answer
                .split(' ')
                .enumerate()
                .map(|(i, w)| format!("{}{w}", if i == 0 { "" } else { " " }))
                .collect();
            (answer, deltas)
        };
        let events = futures::stream::unfold(
            (deltas.into_iter(), Some(answer)),
            |(mut deltas, answer)| async move {
                match deltas.next() {
                    Some(d) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((TurnEvent::Delta(d), (deltas, answer)))
                    }
                    None => {
                        let answer = answer?;
                        Some((
                            TurnEvent::Completed(Box::new(stored(&answer))),
                            (deltas, None),
                        ))
                    }
                }
            },
        );
        Ok(Box::pin(events))
    }

    async fn session_by_key(&self, key: &str) -> Result<Option<Session>, TurnError> {
        Ok(self.sessions.lock().unwrap().get(key).map(|n| Session {
            id: format!("id-{key}"),
            key: Some(key.to_owned()),
            title: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            message_count: *n,
            cost_micros: 0,
        }))
    }

    async fn reset_session(&self, session_id: &str) -> Result<(), TurnError> {
        let key = session_id.trim_start_matches("id-");
        self.sessions.lock().unwrap().insert(key.to_owned(), 0);
        Ok(())
    }

    async fn new_session(&self, key: &str) -> Result<Session, TurnError> {
        self.sessions.lock().unwrap().insert(key.to_owned(), 0);
        Ok(Session {
            id: format!("id-{key}"),
            key: Some(key.to_owned()),
            title: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            message_count: 0,
            cost_micros: 0,
        })
    }
}

/// Nobody is on the stored allowlist; pairing is not used here (the e2e tests cover it).
struct NoAccess;

#[async_trait::async_trait]
impl AccessStore for NoAccess {
    async fn is_allowed(&self, _: &str, _: &str) -> Result<bool, AccessError> {
        Ok(false)
    }
    async fn allow(&self, _: &str, _: &str, _: &str) -> Result<AllowedSender, AccessError> {
        Err(AccessError::NotFound("no store".into()))
    }
    async fn revoke(&self, _: &str, _: &str) -> Result<bool, AccessError> {
        Ok(false)
    }
    async fn list_allowed(&self, _: Option<&str>) -> Result<Vec<AllowedSender>, AccessError> {
        Ok(vec![])
    }
    async fn create_pairing(&self, _: NewPairing, _: u32) -> Result<PairingRequest, AccessError> {
        Err(AccessError::NotFound("no store".into()))
    }
    async fn pending_pairing(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<PairingRequest>, AccessError> {
        Ok(None)
    }
    async fn list_pairings(&self, _: Option<&str>) -> Result<Vec<PairingRequest>, AccessError> {
        Ok(vec![])
    }
    async fn approve_pairing(&self, _: &str, _: &str) -> Result<AllowedSender, AccessError> {
        Err(AccessError::NotFound("no store".into()))
    }
}

struct Running {
    dc: DiscordStandIn,
    backend: Arc<Echo>,
    board: StatusBoard,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn relay() -> RelayConfig {
    RelayConfig {
        edit_interval: Duration::from_millis(300),
        typing_interval: Duration::from_secs(1),
        ..Default::default()
    }
}

async fn run_with(dc: DiscordStandIn, token: &str, access: AccessPolicy) -> Running {
    let backend = Arc::new(Echo::default());
    let ctx = ChannelContext {
        backend: backend.clone(),
        access: Arc::new(NoAccess),
    };
    let board = StatusBoard::new();
    let cancel = CancellationToken::new();
    let settings = DiscordSettings {
        token: SecretString::new(token.to_owned()),
        api_url: dc.api_url().into(),
        access,
        relay: relay(),
        link_previews: false,
    };
    let Started { task, .. } = start(settings, ctx, &board, cancel.clone()).unwrap();
    Running {
        dc,
        backend,
        board,
        cancel,
        task,
    }
}

fn open() -> AccessPolicy {
    AccessPolicy {
        dm: DmPolicy::Open,
        group: GroupPolicy::Open,
        ..Default::default()
    }
}

async fn running(access: AccessPolicy) -> Running {
    let dc = discord::spawn_with(TOKEN, Duration::from_millis(500))
        .await
        .unwrap();
    let r = run_with(dc, TOKEN, access).await;
    r.connected().await;
    r
}

impl Running {
    fn status(&self) -> crate::status::ChannelStatus {
        self.board.get(NAME).unwrap()
    }

    async fn connected(&self) {
        let ok = self
            .dc
            .wait_until(WAIT, |dc| dc.ready() && self.status().connected)
            .await;
        assert!(
            ok,
            "never connected: {:?} {:?}",
            self.status(),
            self.dc.calls()
        );
    }

    /// Waits until message `index` of `channel` reads `expected`.
    async fn wait_text(
        &self,
        channel: u64,
        index: usize,
        expected: &str,
    ) -> Vec<discord::SentMessage> {
        let ok = self
            .dc
            .wait_until(WAIT, |dc| {
                dc.messages(channel)
                    .get(index)
                    .is_some_and(|m| m.content == expected)
            })
            .await;
        assert!(
            ok,
            "message {index} of {channel} never read {expected:?}: {:#?}",
            self.dc.messages(channel)
        );
        self.dc.messages(channel)
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the channel stops on cancellation")
            .unwrap();
        assert!(!self.board.get(NAME).unwrap().connected);
        assert!(
            self.dc
                .wait_until(Duration::from_secs(5), |dc| dc.connections() == 0)
                .await,
            "the websocket is closed at shutdown"
        );
    }
}

#[test]
fn mentions_are_found_and_removed() {
    let me = UserId::new(42);
    assert_eq!(
        strip_mentions("<@42> what is 2+2?", me),
        ("what is 2+2?".to_owned(), true)
    );
    assert_eq!(
        strip_mentions("hey <@!42> there\n```\n  code\n```", me),
        ("hey there\n```\n  code\n```".to_owned(), true)
    );
    assert_eq!(
        strip_mentions("hi <@43>", me),
        ("hi <@43>".to_owned(), false)
    );
    assert_eq!(
        strip_mentions("<@42>/reset", me),
        ("/reset".to_owned(), true)
    );
}

#[test]
fn settings_debug_hides_the_token() {
    let s = DiscordSettings {
        token: SecretString::new(TOKEN.into()),
        api_url: DEFAULT_API_URL.into(),
        access: AccessPolicy::default(),
        relay: RelayConfig::default(),
        link_previews: false,
    };
    let shown = format!("{s:?}");
    assert!(!shown.contains("discord-test"), "{shown}");
    assert_eq!(
        intents().bits(),
        discord::INTENT_GUILD_MESSAGES
            | discord::INTENT_DIRECT_MESSAGES
            | discord::INTENT_MESSAGE_CONTENT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_is_answered_by_streaming_edits_in_order() {
    let r = running(open()).await;
    let status = r.status();
    assert_eq!(status.bot_name, "Clanker Test#4242");
    assert_eq!(status.last_error, "");
    let identify = &r.dc.identifies()[0];
    assert_eq!(
        identify["intents"].as_u64(),
        Some(
            discord::INTENT_GUILD_MESSAGES
                | discord::INTENT_DIRECT_MESSAGES
                | discord::INTENT_MESSAGE_CONTENT
        ),
        "{identify}"
    );
    assert_eq!(r.dc.calls_of("getCurrentUser").len(), 1);

    let channel = discord::dm_channel_id(7);
    r.dc.push_dm(7, "one two three four five six seven");
    r.dc.push_dm(7, "second");
    let answer = "echo: one two three four five six seven";
    let messages = r.wait_text(channel, 1, "echo: second").await;
    assert_eq!(messages[0].content, answer);
    assert!(messages[0].edits >= 1, "streamed by edits: {messages:#?}");
    assert_eq!(messages[0].reply_to, None, "no reply reference in DMs");
    assert_eq!(
        messages[0].allowed_mentions.as_deref(),
        Some(r#"{"parse":[]}"#)
    );
    assert_eq!(
        *r.backend.texts.lock().unwrap(),
        ["one two three four five six seven", "second"],
        "in arrival order"
    );
    let edits = r.dc.calls_of("editMessage");
    let first: Vec<_> = edits
        .iter()
        .filter(|c| c.request.contains(&messages[0].message_id.to_string()))
        .collect();
    for pair in first.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(250),
            "edits at the relay's pace: {first:#?}"
        );
    }
    assert!(!r.dc.calls_of("triggerTypingIndicator").is_empty());
    assert!(
        r.backend
            .sessions
            .lock()
            .unwrap()
            .contains_key(&format!("discord:{channel}"))
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_answers_are_split_at_2000_characters() {
    let r = running(open()).await;
    let channel = discord::dm_channel_id(8);
    r.dc.push_dm(8, "long");
    let answer = long_answer();
    let done =
        r.dc.wait_until(WAIT, |dc| {
            dc.messages(channel)
                .last()
                .is_some_and(|m| m.content.ends_with("word699"))
        })
        .await;
    assert!(done, "{:#?}", r.dc.messages(channel));
    let messages = r.dc.messages(channel);
    assert!(answer.len() > 2 * 2000);
    assert_eq!(messages.len(), 3, "{messages:#?}");
    for m in &messages {
        assert!(m.content.chars().count() <= 2000);
    }
    let joined: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(joined.join(" "), answer);
    assert!(
        r.dc.calls().iter().all(|c| c.status < 400),
        "no call refused"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_not_dropped() {
    let r = running(open()).await;
    r.dc.fail_next("createMessage", Failure::RetryAfter(1.5));
    r.dc.push_dm(9, "hi");
    r.wait_text(discord::dm_channel_id(9), 0, "echo: hi").await;
    let creates = r.dc.calls_of("createMessage");
    assert_eq!(creates[0].status, 429);
    let ok = creates
        .iter()
        .find(|c| c.status == 200)
        .expect("sent after the wait");
    assert!(
        ok.at - creates[0].at >= Duration::from_millis(1500),
        "retry_after honoured: {creates:#?}"
    );
    assert_eq!(r.dc.messages(discord::dm_channel_id(9)).len(), 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guild_messages_need_a_mention_or_a_reply() {
    let r = running(open()).await;
    let (guild, channel) = (500, 600);
    r.dc.push_guild(guild, channel, 11, "talking among ourselves");
    r.dc.push(Incoming {
        channel_id: channel,
        guild_id: Some(guild),
        author: 12,
        author_is_bot: true,
        text: format!("<@{BOT_ID}> I am another bot"),
        reply_to: None,
    });
    let asked =
        r.dc.push_guild(guild, channel, 11, &format!("<@{BOT_ID}> what is up"));
    let messages = r.wait_text(channel, 0, "echo: what is up").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].reply_to, Some(asked));
    // A reply to the bot is for it, in the replier's own session.
    r.dc.push(Incoming {
        channel_id: channel,
        guild_id: Some(guild),
        author: 13,
        author_is_bot: false,
        text: "and me".into(),
        reply_to: Some(messages[0].message_id),
    });
    r.wait_text(channel, 1, "echo: and me").await;
    r.dc.push_guild(guild, channel, 11, &format!("<@!{BOT_ID}> /status"));
    let done =
        r.dc.wait_until(WAIT, |dc| dc.messages(channel).len() == 3)
            .await;
    assert!(done);
    let status = &r.dc.messages(channel)[2].content;
    assert!(
        status.contains(&format!("discord:{channel}:11")),
        "{status}"
    );
    assert_eq!(*r.backend.texts.lock().unwrap(), ["what is up", "and me"]);
    let sessions = r.backend.sessions.lock().unwrap().clone();
    assert!(sessions.contains_key(&format!("discord:{channel}:11")));
    assert!(sessions.contains_key(&format!("discord:{channel}:13")));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rejected_over_rest_stops_the_channel_at_once() {
    let dc = discord::spawn("the-real-token").await.unwrap();
    let r = run_with(dc, TOKEN, open()).await;
    tokio::time::timeout(WAIT, r.task)
        .await
        .expect("the channel stops by itself")
        .unwrap();
    let status = r.board.get(NAME).unwrap();
    assert!(status.enabled && !status.connected);
    assert!(
        status.last_error.contains("rejected the bot token (401"),
        "{status:?}"
    );
    assert!(!status.last_error.contains(TOKEN));
    assert_eq!(r.dc.calls_of("getCurrentUser").len(), 1, "no hammering");
    assert!(r.dc.identifies().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rejected_by_the_gateway_stops_the_channel() {
    let dc = discord::spawn(TOKEN).await.unwrap();
    dc.reject_identify(true);
    let r = run_with(dc, TOKEN, open()).await;
    tokio::time::timeout(WAIT, r.task)
        .await
        .expect("the channel stops by itself")
        .unwrap();
    let status = r.board.get(NAME).unwrap();
    assert!(!status.connected);
    assert!(status.last_error.contains("close code 4004"), "{status:?}");
    assert_eq!(r.dc.identifies().len(), 1, "no second IDENTIFY");
    assert_eq!(
        r.dc.identifies()[0]["token"],
        "<redacted>",
        "the stand-in keeps no token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reconnects_after_the_websocket_drops() {
    let r = running(open()).await;
    let before = r.dc.identifies().len() + r.dc.resumes().len();
    r.dc.drop_connections();
    let back =
        r.dc.wait_until(WAIT, |dc| {
            dc.identifies().len() + dc.resumes().len() > before && dc.ready()
        })
        .await;
    assert!(back, "no reconnection: {:?}", r.status());
    r.connected().await;
    r.dc.push_dm(10, "still there?");
    r.wait_text(discord::dm_channel_id(10), 0, "echo: still there?")
        .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_is_retried_with_backoff() {
    // A port nobody listens on: GET /users/@me fails; the status says why and the channel keeps
    // trying until it is cancelled.
    let dc = discord::spawn(TOKEN).await.unwrap();
    let backend = Arc::new(Echo::default());
    let board = StatusBoard::new();
    let cancel = CancellationToken::new();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let settings = DiscordSettings {
        token: SecretString::new(TOKEN.into()),
        api_url: format!("http://{closed}").into(),
        access: open(),
        relay: relay(),
        link_previews: false,
    };
    let ctx = ChannelContext {
        backend,
        access: Arc::new(NoAccess),
    };
    let Started { task, .. } = start(settings, ctx, &board, cancel.clone()).unwrap();
    let failed = dc
        .wait_until(WAIT, |_| {
            board
                .get(NAME)
                .is_some_and(|s| s.last_error.contains("GET /users/@me"))
        })
        .await;
    assert!(failed, "{:?}", board.get(NAME));
    assert!(!task.is_finished(), "still trying");
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let status = board.get(NAME).unwrap();
    assert!(!status.last_error.contains(TOKEN));
}
