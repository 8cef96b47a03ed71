//! The stored allowlist and pairing codes ([`AccessStore`] for [`Store`]) on SQLite files.

use open_clanker_core::now_ms;
use open_clanker_store::{AccessError, AccessStore, NewPairing, Store};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

async fn temp_store() -> (Store, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = Store::sqlite_url_for_dir(dir.path());
    let store = Store::connect(&url).await.expect("connect");
    (store, dir, url)
}

fn pairing(channel: &str, sender: &str, code: &str, expires_at_ms: i64) -> NewPairing {
    NewPairing {
        channel: channel.to_owned(),
        sender: sender.to_owned(),
        label: format!("@{sender}"),
        code: code.to_owned(),
        expires_at_ms,
    }
}

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn allow_list_and_revoke() {
    let (store, _dir, _) = temp_store().await;
    assert!(!store.is_allowed("telegram", "42").await.unwrap());
    let a = store.allow("telegram", "42", "@alice").await.unwrap();
    assert_eq!(
        (a.channel.as_str(), a.sender.as_str(), a.label.as_str()),
        ("telegram", "42", "@alice")
    );
    assert!(store.is_allowed("telegram", "42").await.unwrap());
    // Channels are separate.
    assert!(!store.is_allowed("discord", "42").await.unwrap());

    // Allowing again updates the label (an empty one keeps the old), never duplicates.
    store.allow("telegram", "42", "@alice2").await.unwrap();
    let again = store.allow("telegram", "42", "").await.unwrap();
    assert_eq!(again.label, "@alice2");
    store.allow("discord", "7", "bob\u{7}\n").await.unwrap();
    assert_eq!(store.list_allowed(Some("telegram")).await.unwrap().len(), 1);
    let all = store.list_allowed(None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].label, "bob", "control characters are dropped");

    assert!(store.revoke("telegram", "42").await.unwrap());
    assert!(!store.revoke("telegram", "42").await.unwrap());
    assert!(!store.is_allowed("telegram", "42").await.unwrap());
}

#[tokio::test]
async fn pairing_codes_are_capped_reused_and_approved_once() {
    let (store, _dir, _) = temp_store().await;
    let later = now_ms() + HOUR;
    let first = store
        .create_pairing(pairing("telegram", "1", "abcd2345", later), 3)
        .await
        .unwrap();
    assert_eq!(first.code, "ABCD2345", "codes are stored in upper case");
    // The same sender gets its pending code back, not a second one.
    let same = store
        .create_pairing(pairing("telegram", "1", "ZZZZ2345", later), 3)
        .await
        .unwrap();
    assert_eq!(same.code, "ABCD2345");
    assert_eq!(
        store
            .pending_pairing("telegram", "1")
            .await
            .unwrap()
            .unwrap()
            .code,
        "ABCD2345"
    );

    // A code in use is refused; at most 3 pending per channel.
    let taken = store
        .create_pairing(pairing("telegram", "9", "ABCD2345", later), 3)
        .await
        .unwrap_err();
    assert!(matches!(taken, AccessError::Conflict(_)), "{taken:?}");
    store
        .create_pairing(pairing("telegram", "2", "BBBB2345", later), 3)
        .await
        .unwrap();
    store
        .create_pairing(pairing("telegram", "3", "CCCC2345", later), 3)
        .await
        .unwrap();
    let full = store
        .create_pairing(pairing("telegram", "4", "DDDD2345", later), 3)
        .await
        .unwrap_err();
    assert!(matches!(full, AccessError::TooManyPending(_)), "{full:?}");
    // Another channel has its own cap.
    store
        .create_pairing(pairing("discord", "4", "DDDD2345", later), 3)
        .await
        .unwrap();
    assert_eq!(
        store.list_pairings(Some("telegram")).await.unwrap().len(),
        3
    );
    assert_eq!(store.list_pairings(None).await.unwrap().len(), 4);

    // Approval (case-insensitive) allows the sender and consumes the code.
    let allowed = store
        .approve_pairing("telegram", " abcd2345 ")
        .await
        .unwrap();
    assert_eq!(allowed.sender, "1");
    assert_eq!(allowed.label, "@1");
    assert!(store.is_allowed("telegram", "1").await.unwrap());
    assert!(
        store
            .pending_pairing("telegram", "1")
            .await
            .unwrap()
            .is_none()
    );
    let again = store
        .approve_pairing("telegram", "ABCD2345")
        .await
        .unwrap_err();
    assert!(matches!(again, AccessError::NotFound(_)), "{again:?}");
    // A code of one channel does not approve on another.
    let wrong = store
        .approve_pairing("discord", "BBBB2345")
        .await
        .unwrap_err();
    assert!(matches!(wrong, AccessError::NotFound(_)));
    // Allowing a sender directly drops its pending code too.
    store.allow("telegram", "2", "").await.unwrap();
    assert_eq!(
        store.list_pairings(Some("telegram")).await.unwrap().len(),
        1
    );
}

/// Strangers who fill one channel's places block no other channel, and none of them can hold a
/// second place: asking again, even when the channel is full, gives back the same code.
#[tokio::test]
async fn the_cap_is_per_channel_and_a_sender_holds_one_code() {
    let (store, _dir, _) = temp_store().await;
    let later = now_ms() + 10 * 60_000;
    for (sender, code) in [("1", "AAAA2345"), ("2", "BBBB2345"), ("3", "CCCC2345")] {
        store
            .create_pairing(pairing("telegram", sender, code, later), 3)
            .await
            .unwrap();
    }
    let full = store
        .create_pairing(pairing("telegram", "4", "DDDD2345", later), 3)
        .await
        .unwrap_err();
    assert!(matches!(full, AccessError::TooManyPending(_)), "{full:?}");
    for (sender, code) in [("1", "AAAA2345"), ("2", "BBBB2345"), ("3", "CCCC2345")] {
        let again = store
            .create_pairing(pairing("telegram", sender, "ZZZZ2345", later), 3)
            .await
            .unwrap();
        assert_eq!(again.code, code, "sender {sender} got a second code");
    }
    assert_eq!(
        store.list_pairings(Some("telegram")).await.unwrap().len(),
        3
    );
    // Discord counts its own: the same ids (and codes) are free there.
    for (sender, code) in [("4", "DDDD2345"), ("1", "AAAA2345"), ("5", "EEEE2345")] {
        let p = store
            .create_pairing(pairing("discord", sender, code, later), 3)
            .await
            .unwrap();
        assert_eq!((p.channel.as_str(), p.code.as_str()), ("discord", code));
    }
    assert_eq!(store.list_pairings(None).await.unwrap().len(), 6);
}

#[tokio::test]
async fn expired_codes_are_void_and_free_their_slot() {
    let (store, _dir, url) = temp_store().await;
    let past = now_ms() - 1;
    for (sender, code) in [("1", "AAAA2345"), ("2", "BBBB2345"), ("3", "CCCC2345")] {
        store
            .create_pairing(pairing("telegram", sender, code, past), 3)
            .await
            .unwrap();
    }
    assert!(
        store
            .pending_pairing("telegram", "1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.list_pairings(None).await.unwrap().is_empty());
    let err = store
        .approve_pairing("telegram", "AAAA2345")
        .await
        .unwrap_err();
    assert!(matches!(err, AccessError::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains("expire"), "{err}");
    // The expired ones no longer count against the cap, and a sender whose code expired gets a new one.
    let fresh = store
        .create_pairing(pairing("telegram", "1", "EEEE2345", now_ms() + HOUR), 3)
        .await
        .unwrap();
    assert_eq!(fresh.code, "EEEE2345");

    // Expired rows are deleted, not just hidden.
    let db = Database::connect(&url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT COUNT(*) AS n FROM channel_pairings",
        ))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get("", "n").unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn access_survives_reconnecting() {
    let (store, dir, _) = temp_store().await;
    store.allow("telegram", "42", "@alice").await.unwrap();
    store
        .create_pairing(pairing("telegram", "7", "QRST2345", now_ms() + HOUR), 3)
        .await
        .unwrap();
    drop(store);
    let store = Store::connect(&Store::sqlite_url_for_dir(dir.path()))
        .await
        .unwrap();
    assert!(store.is_allowed("telegram", "42").await.unwrap());
    assert_eq!(
        store
            .approve_pairing("telegram", "qrst2345")
            .await
            .unwrap()
            .sender,
        "7"
    );
}
