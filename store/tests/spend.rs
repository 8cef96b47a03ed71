//! Spend: per-message cost, the session's running total (kept across resets) and the daily ledger
//! (kept across deletes).

use open_clanker_store::{MessageStatus, NewMessage, Role, Store, Usage, utc_day};

fn answer(session_id: &str, model: &str, cost_micros: i64) -> NewMessage {
    NewMessage {
        session_id: session_id.to_owned(),
        role: Role::Assistant,
        content: "a".to_owned(),
        provider: Some("anthropic".to_owned()),
        model: Some(model.to_owned()),
        usage: Usage {
            input_tokens: 10,
            output_tokens: 20,
        },
        status: MessageStatus::Complete,
        stop_reason: None,
        cost_micros,
    }
}

#[tokio::test]
async fn costs_add_up_per_session_and_per_day() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&Store::sqlite_url_for_dir(dir.path()))
        .await
        .unwrap();
    let a = store.create_session(None, "").await.unwrap();
    let b = store.create_session(None, "").await.unwrap();
    let m = store
        .append_message(answer(&a.id, "m1", 1500))
        .await
        .unwrap();
    assert_eq!(m.cost_micros, 1500);
    store
        .append_message(answer(&a.id, "m1", 500))
        .await
        .unwrap();
    store.append_message(answer(&b.id, "m2", 7)).await.unwrap();

    let a_now = store.get_session(&a.id).await.unwrap().unwrap();
    assert_eq!(a_now.cost_micros, 2000);
    let today = utc_day(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    );
    assert_eq!(store.spend_on(&today).await.unwrap(), 2007);
    assert_eq!(store.spend_on("1999-01-01").await.unwrap(), 0);
    let mut usage = store.usage_on(&today).await.unwrap();
    usage.sort_by(|x, y| x.model.cmp(&y.model));
    assert_eq!(usage.len(), 2);
    assert_eq!(
        (
            usage[0].turns,
            usage[0].input_tokens,
            usage[0].output_tokens
        ),
        (2, 20, 40)
    );

    // A reset keeps what the session spent (a cap cannot be dodged by /reset); a delete keeps
    // the day's ledger.
    store.reset_session(&a.id).await.unwrap();
    assert_eq!(
        store.get_session(&a.id).await.unwrap().unwrap().cost_micros,
        2000
    );
    store.delete_session(&a.id).await.unwrap();
    assert_eq!(store.spend_on(&today).await.unwrap(), 2007);
}
