//! The pipeline against an echoing backend and an in-memory access store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use open_clanker_core::{
    AccessError, AllowedSender, NewPairing, PairingRequest, Session, TurnError, TurnEvent,
    TurnStream,
};

use super::*;
use crate::access::IgnoreReason;
use crate::pairing;
use crate::relay::tests::{FakeSink, stored};

/// A backend that echoes and counts turns, with sessions by key.
#[derive(Default)]
struct EchoBackend {
    turns: AtomicUsize,
    texts: Mutex<Vec<String>>,
    sessions: Mutex<HashMap<String, (String, u64)>>,
}

#[async_trait::async_trait]
impl ChatBackend for EchoBackend {
    async fn start_turn(&self, request: TurnRequest) -> Result<TurnStream, TurnError> {
        self.turns.fetch_add(1, Ordering::SeqCst);
        self.texts.lock().unwrap().push(request.text.clone());
        let SessionRef::Key(key) = request.session else {
            return Err(TurnError::InvalidArgument("expected a key".into()));
        };
        let mut sessions = self.sessions.lock().unwrap();
        let entry = sessions
            .entry(key.clone())
            .or_insert((format!("id-{key}"), 0));
        entry.1 += 2;
        let answer = format!("echo: {}", request.text);
        Ok(Box::pin(futures::stream::iter(vec![
            TurnEvent::Delta(answer.clone()),
            TurnEvent::Completed(Box::new(stored(&answer))),
        ])))
    }
    async fn session_by_key(&self, key: &str) -> Result<Option<Session>, TurnError> {
        Ok(self
            .sessions
            .lock()
            .unwrap()
            .get(key)
            .map(|(id, n)| Session {
                id: id.clone(),
                key: Some(key.to_owned()),
                title: String::new(),
                created_at_ms: 0,
                updated_at_ms: 0,
                message_count: *n,
                cost_micros: 0,
            }))
    }
    async fn reset_session(&self, session_id: &str) -> Result<(), TurnError> {
        for (id, n) in self.sessions.lock().unwrap().values_mut() {
            if id == session_id {
                *n = 0;
            }
        }
        Ok(())
    }
    async fn new_session(&self, key: &str) -> Result<Session, TurnError> {
        let mut sessions = self.sessions.lock().unwrap();
        let number = sessions.len();
        let id = format!("id-{key}-{number}");
        sessions.insert(key.to_owned(), (id.clone(), 0));
        Ok(Session {
            id,
            key: Some(key.to_owned()),
            title: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            message_count: 0,
            cost_micros: 0,
        })
    }
}

/// An in-memory access store.
#[derive(Default)]
struct MemAccess {
    allowed: Mutex<Vec<(String, String)>>,
    pairings: Mutex<Vec<PairingRequest>>,
}

#[async_trait::async_trait]
impl AccessStore for MemAccess {
    async fn is_allowed(&self, channel: &str, sender: &str) -> Result<bool, AccessError> {
        Ok(self
            .allowed
            .lock()
            .unwrap()
            .contains(&(channel.to_owned(), sender.to_owned())))
    }
    async fn allow(
        &self,
        channel: &str,
        sender: &str,
        label: &str,
    ) -> Result<AllowedSender, AccessError> {
        self.allowed
            .lock()
            .unwrap()
            .push((channel.to_owned(), sender.to_owned()));
        Ok(AllowedSender {
            channel: channel.into(),
            sender: sender.into(),
            label: label.into(),
            created_at_ms: 0,
        })
    }
    async fn revoke(&self, _: &str, _: &str) -> Result<bool, AccessError> {
        Ok(false)
    }
    async fn list_allowed(&self, _: Option<&str>) -> Result<Vec<AllowedSender>, AccessError> {
        Ok(vec![])
    }
    async fn create_pairing(&self, p: NewPairing, max: u32) -> Result<PairingRequest, AccessError> {
        let mut all = self.pairings.lock().unwrap();
        if all.len() >= max as usize {
            return Err(AccessError::TooManyPending("full".into()));
        }
        let req = PairingRequest {
            channel: p.channel,
            sender: p.sender,
            label: p.label,
            code: p.code,
            created_at_ms: 0,
            expires_at_ms: p.expires_at_ms,
        };
        all.push(req.clone());
        Ok(req)
    }
    async fn pending_pairing(
        &self,
        channel: &str,
        sender: &str,
    ) -> Result<Option<PairingRequest>, AccessError> {
        Ok(self
            .pairings
            .lock()
            .unwrap()
            .iter()
            .find(|p| p.channel == channel && p.sender == sender)
            .cloned())
    }
    async fn list_pairings(&self, _: Option<&str>) -> Result<Vec<PairingRequest>, AccessError> {
        Ok(self.pairings.lock().unwrap().clone())
    }
    async fn approve_pairing(
        &self,
        channel: &str,
        code: &str,
    ) -> Result<AllowedSender, AccessError> {
        let p = {
            let mut all = self.pairings.lock().unwrap();
            let i = all
                .iter()
                .position(|p| p.code == code)
                .ok_or_else(|| AccessError::NotFound("no".into()))?;
            all.remove(i)
        };
        self.allow(channel, &p.sender, &p.label).await
    }
}

fn setup(policy: AccessPolicy) -> (Pipeline, Arc<EchoBackend>, Arc<MemAccess>) {
    let backend = Arc::new(EchoBackend::default());
    let access = Arc::new(MemAccess::default());
    let ctx = ChannelContext {
        backend: backend.clone(),
        access: access.clone(),
    };
    (
        Pipeline::new("telegram", ctx, policy, RelayConfig::default(), None),
        backend,
        access,
    )
}

fn dm(sender: &str, text: &str) -> Inbound {
    Inbound {
        chat_id: sender.into(),
        sender_id: sender.into(),
        sender_label: format!("@u{sender}"),
        is_group: false,
        addressed: true,
        text: text.into(),
    }
}

#[tokio::test(start_paused = true)]
async fn strangers_get_one_code_and_never_reach_the_model() {
    let (p, backend, access) = setup(AccessPolicy::default());
    let sink = FakeSink::new(4096);
    let Outcome::PairingSent { code } = p.handle(dm("5", "hello"), None, &sink).await else {
        panic!("{:?}", sink.calls());
    };
    assert!(pairing::is_code(&code));
    assert!(sink.texts()[0].contains(&code));
    // Asking again gives the same code.
    let again = p.handle(dm("5", "/start"), None, &sink).await;
    assert_eq!(again, Outcome::PairingSent { code: code.clone() });
    assert_eq!(backend.turns.load(Ordering::SeqCst), 0);

    // Approved: answered.
    access.approve_pairing("telegram", &code).await.unwrap();
    let Outcome::Answered(out) = p.handle(dm("5", "hi"), None, &sink).await else {
        panic!()
    };
    assert_eq!(out.text, "echo: hi");
    assert_eq!(backend.turns.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_pending_cap_refuses_politely() {
    let (p, _, _) = setup(AccessPolicy::default());
    let sink = FakeSink::new(4096);
    for s in ["1", "2", "3"] {
        assert!(matches!(
            p.handle(dm(s, "hi"), None, &sink).await,
            Outcome::PairingSent { .. }
        ));
    }
    assert_eq!(
        p.handle(dm("4", "hi"), None, &sink).await,
        Outcome::PairingRefused
    );
}

#[tokio::test(start_paused = true)]
async fn commands_reset_and_report_per_sender_sessions_in_groups() {
    let policy = AccessPolicy {
        group_allow_from: vec!["-100".into()],
        ..Default::default()
    };
    let (p, backend, _) = setup(policy);
    let sink = FakeSink::new(4096);
    let msg = |sender: &str, text: &str, addressed: bool| Inbound {
        chat_id: "-100".into(),
        sender_id: sender.into(),
        sender_label: String::new(),
        is_group: true,
        addressed,
        text: text.into(),
    };
    assert!(matches!(
        p.handle(msg("1", "hi", true), None, &sink).await,
        Outcome::Answered(_)
    ));
    assert!(matches!(
        p.handle(msg("2", "yo", true), None, &sink).await,
        Outcome::Answered(_)
    ));
    assert_eq!(
        p.handle(msg("2", "not for you", false), None, &sink).await,
        Outcome::Ignored(IgnoreReason::NotAddressed.as_str())
    );
    {
        let sessions = backend.sessions.lock().unwrap();
        assert!(sessions.contains_key("telegram:-100:1"));
        assert!(sessions.contains_key("telegram:-100:2"));
    }
    assert_eq!(
        p.handle(msg("1", "/reset@bot", true), Some("bot"), &sink)
            .await,
        Outcome::Command(Command::Reset)
    );
    assert_eq!(backend.sessions.lock().unwrap()["telegram:-100:1"].1, 0);
    assert_eq!(
        backend.sessions.lock().unwrap()["telegram:-100:2"].1,
        2,
        "others keep theirs"
    );
    assert_eq!(
        p.handle(msg("1", "/status@other", true), Some("bot"), &sink)
            .await,
        Outcome::Ignored("a command for another bot")
    );
    assert_eq!(
        p.handle(msg("2", "/status", true), Some("bot"), &sink)
            .await,
        Outcome::Command(Command::Status)
    );
    assert!(sink.texts().last().unwrap().contains("telegram:-100:2"));

    // `/new` opens another session under the key and says where the old one is.
    assert_eq!(
        p.handle(msg("2", "/new", true), Some("bot"), &sink).await,
        Outcome::Command(Command::New)
    );
    let (id, count) = backend.sessions.lock().unwrap()["telegram:-100:2"].clone();
    assert_eq!(count, 0);
    assert_ne!(id, "id-telegram:-100:2");
    assert!(
        sink.texts()
            .last()
            .unwrap()
            .contains("kept as session id-telegram:-100:2"),
        "{:?}",
        sink.texts().last()
    );
    // With no conversation yet there is nothing to keep.
    assert_eq!(
        p.handle(msg("3", "/new", true), Some("bot"), &sink).await,
        Outcome::Command(Command::New)
    );
    assert!(
        !backend
            .sessions
            .lock()
            .unwrap()
            .contains_key("telegram:-100:3")
    );
}

#[tokio::test(start_paused = true)]
async fn open_and_static_allowlists_skip_pairing() {
    let (p, backend, _) = setup(AccessPolicy {
        allow_from: vec!["9".into()],
        ..Default::default()
    });
    let sink = FakeSink::new(4096);
    assert!(matches!(
        p.handle(dm("9", "hi"), None, &sink).await,
        Outcome::Answered(_)
    ));
    assert_eq!(backend.turns.load(Ordering::SeqCst), 1);
    assert_eq!(
        p.handle(dm("9", "   "), None, &sink).await,
        Outcome::Ignored("no text")
    );
}

#[tokio::test]
async fn a_sessions_messages_run_in_arrival_order() {
    let (p, backend, _) = setup(AccessPolicy {
        dm: crate::access::DmPolicy::Open,
        ..Default::default()
    });
    let p = Arc::new(p);
    let sink = Arc::new(FakeSink::new(4096));
    // Places taken in arrival order; the tasks then start in the opposite order.
    let first = p.reserve(&dm("1", "first")).await;
    let second = p.reserve(&dm("1", "second")).await;
    let (p2, s2) = (p.clone(), sink.clone());
    let late = tokio::spawn(async move {
        p2.handle_in_turn(second, dm("1", "second"), None, &*s2)
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        backend.texts.lock().unwrap().is_empty(),
        "the second waited for the first"
    );
    p.handle_in_turn(first, dm("1", "first"), None, &*sink)
        .await;
    late.await.unwrap();
    assert_eq!(*backend.texts.lock().unwrap(), ["first", "second"]);
}
