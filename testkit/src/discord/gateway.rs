//! The Discord stand-in's gateway: one websocket connection's life (HELLO, IDENTIFY, HEARTBEAT,
//! RESUME) and the MESSAGE_CREATE dispatches it delivers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::records::{APPLICATION_ID, AUTHENTICATION_FAILED};
use super::state::{Session, Shared, lock};
use super::wire::bot_user_json;

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn send(ws: &mut Ws, v: &Value) -> bool {
    ws.send(WsMessage::Text(v.to_string())).await.is_ok()
}

/// Sends the events the session has not had yet; false when the socket failed.
async fn flush(shared: &Shared, ws: &mut Ws, session: &str) -> bool {
    loop {
        let Some(event) = lock(&shared.pending).pop_front() else {
            return true;
        };
        let seq = {
            let mut sessions = lock(&shared.sessions);
            let Some(s) = sessions.get_mut(session) else {
                lock(&shared.pending).push_front(event);
                return true;
            };
            s.seq += 1;
            s.seq
        };
        lock(&shared.sent_events).push((session.to_owned(), seq, event.clone()));
        let frame = json!({ "op": 0, "t": "MESSAGE_CREATE", "s": seq, "d": event });
        if !send(ws, &frame).await {
            return false;
        }
    }
}

fn token_ok(shared: &Shared, token: &str) -> bool {
    token.strip_prefix("Bot ").unwrap_or(token) == shared.token
}

async fn close(ws: &mut Ws, code: u16, reason: &'static str) {
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
        .await;
}

pub(super) async fn connection(shared: Arc<Shared>, stream: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let me = shared.next_connection.fetch_add(1, Ordering::SeqCst);
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let mut cut = shared.cut.subscribe();
    cut.borrow_and_update();
    let hello = json!({ "op": 10, "s": null, "t": null,
        "d": { "heartbeat_interval": shared.heartbeat_interval_ms } });
    let mut session: Option<String> = None;
    if send(&mut ws, &hello).await {
        loop {
            let notified = shared.new_event.notified();
            if let Some(id) = &session
                && !flush(&shared, &mut ws, id).await
            {
                break;
            }
            let frame = tokio::select! {
                _ = cut.changed() => break,
                _ = notified => continue,
                f = ws.next() => f,
            };
            let text = match frame {
                Some(Ok(WsMessage::Text(t))) => t,
                Some(Ok(WsMessage::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            };
            let Ok(payload) = serde_json::from_str::<Value>(&text) else {
                close(&mut ws, 4002, "Error while decoding payload.").await;
                break;
            };
            match payload["op"].as_u64() {
                Some(1) => {
                    shared.heartbeats.fetch_add(1, Ordering::SeqCst);
                    if !send(
                        &mut ws,
                        &json!({ "op": 11, "s": null, "t": null, "d": null }),
                    )
                    .await
                    {
                        break;
                    }
                }
                Some(2) => {
                    let d = payload["d"].clone();
                    let mut shown = d.clone();
                    shown["token"] = json!("<redacted>");
                    lock(&shared.identifies).push(shown);
                    let token = d["token"].as_str().unwrap_or("");
                    if session.is_some() {
                        close(&mut ws, 4005, "Already authenticated.").await;
                        break;
                    }
                    if *lock(&shared.reject_identify) || !token_ok(&shared, token) {
                        close(&mut ws, AUTHENTICATION_FAILED, "Authentication failed.").await;
                        break;
                    }
                    let id = format!("session-{me}");
                    lock(&shared.sessions).insert(
                        id.clone(),
                        Session {
                            id: id.clone(),
                            seq: 1,
                            connection: Some(me),
                        },
                    );
                    *lock(&shared.current_session) = Some(id.clone());
                    let ready = json!({ "op": 0, "t": "READY", "s": 1, "d": {
                        "v": 10,
                        "user": bot_user_json(),
                        "guilds": [],
                        "session_id": id,
                        "resume_gateway_url": lock(&shared.ws_url).clone(),
                        "shard": d.get("shard").cloned().unwrap_or(json!([0, 1])),
                        "application": { "id": APPLICATION_ID.to_string(), "flags": 0 },
                        "private_channels": [],
                    }});
                    if !send(&mut ws, &ready).await {
                        break;
                    }
                    session = Some(id);
                }
                Some(6) => {
                    let d = payload["d"].clone();
                    let mut shown = d.clone();
                    shown["token"] = json!("<redacted>");
                    lock(&shared.resumes).push(shown);
                    let id = d["session_id"].as_str().unwrap_or("").to_owned();
                    let since = d["seq"].as_u64().unwrap_or(0);
                    let known = token_ok(&shared, d["token"].as_str().unwrap_or(""))
                        && lock(&shared.sessions).get(&id).is_some_and(|s| s.id == id);
                    if !known {
                        let invalid = json!({ "op": 9, "s": null, "t": null, "d": false });
                        if !send(&mut ws, &invalid).await {
                            break;
                        }
                        continue;
                    }
                    let missed: Vec<(u64, Value)> = lock(&shared.sent_events)
                        .iter()
                        .filter(|(s, seq, _)| *s == id && *seq > since)
                        .map(|(_, seq, v)| (*seq, v.clone()))
                        .collect();
                    let mut ok = true;
                    for (seq, event) in missed {
                        let frame = json!({ "op": 0, "t": "MESSAGE_CREATE", "s": seq, "d": event });
                        ok = ok && send(&mut ws, &frame).await;
                    }
                    let seq = {
                        let mut sessions = lock(&shared.sessions);
                        let Some(s) = sessions.get_mut(&id) else {
                            break;
                        };
                        s.seq += 1;
                        s.connection = Some(me);
                        s.seq
                    };
                    *lock(&shared.current_session) = Some(id.clone());
                    let resumed = json!({ "op": 0, "t": "RESUMED", "s": seq, "d": {} });
                    if !ok || !send(&mut ws, &resumed).await {
                        break;
                    }
                    session = Some(id);
                }
                _ => {
                    close(&mut ws, 4001, "Unknown opcode.").await;
                    break;
                }
            }
        }
    }
    if let Some(id) = session
        && let Some(s) = lock(&shared.sessions).get_mut(&id)
        && s.connection == Some(me)
    {
        s.connection = None;
    }
    shared.connections.fetch_sub(1, Ordering::SeqCst);
    // Dropping `ws` without a close frame when cut.
}
