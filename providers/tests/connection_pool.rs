//! The provider clients' connection pool against the stand-in: over HTTP/2 a server allows only so
//! many concurrent streams per connection, and the clients open more connections instead of
//! queueing answers behind that limit; at low load they keep to one connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use open_clanker_providers::{
    ChatMessage, CompletionRequest, Provider, ProviderConfig, ProviderKind, Role, StreamEvent,
    build,
};
use open_clanker_testkit::{StandIn, StandInConfig};
use tokio::sync::{mpsc, watch};

const KEY: &str = "test-key";

/// A stand-in that lets a client open at most `streams` streams at once on one HTTP/2
/// connection.
async fn standin_limited_to(streams: u32) -> StandIn {
    open_clanker_testkit::spawn(StandInConfig {
        api_key: KEY.into(),
        http2_max_concurrent_streams: Some(streams),
        ..Default::default()
    })
    .await
    .expect("stand-in starts")
}

fn base_url(kind: ProviderKind, standin: &StandIn) -> String {
    match kind {
        ProviderKind::Anthropic => standin.anthropic_base_url(),
        ProviderKind::OpenAi => standin.openai_base_url(),
    }
}

/// A provider for the stand-in speaking h2c, `per_connection` streams per connection.
fn h2c_provider(kind: ProviderKind, standin: &StandIn, per_connection: u32) -> Arc<dyn Provider> {
    let mut config = ProviderConfig::new(kind, KEY).with_base_url(base_url(kind, standin));
    config.connect_timeout = Duration::from_secs(2);
    config.idle_timeout = Duration::from_secs(30);
    config.max_retries = 0;
    config.http2_prior_knowledge = true;
    config.max_streams_per_connection = per_connection;
    build(config).expect("provider builds")
}

fn request(text: &str) -> CompletionRequest {
    CompletionRequest {
        model: "stand-in-model".into(),
        system: None,
        messages: vec![ChatMessage::new(Role::User, text)],
        max_tokens: 1024,
        temperature: None,
    }
}

/// Starts `count` answers that the stand-in holds open (`#hang`). Each task reports its index on
/// the returned channel once its first token arrived, then keeps its stream open until `release`
/// turns true.
fn start_held_answers(
    provider: &Arc<dyn Provider>,
    count: usize,
    release: &watch::Receiver<bool>,
) -> mpsc::UnboundedReceiver<usize> {
    let (first_tokens, arrived) = mpsc::unbounded_channel();
    for i in 0..count {
        let provider = provider.clone();
        let first_tokens = first_tokens.clone();
        let mut release = release.clone();
        tokio::spawn(async move {
            let mut stream = provider
                .stream(request(&format!("held {i} #hang")))
                .await
                .unwrap_or_else(|e| panic!("answer {i}: {e}"));
            let first = stream.next().await.expect("a first event");
            assert_eq!(first.unwrap(), StreamEvent::TextDelta("echo:".into()));
            let _ = first_tokens.send(i);
            let _ = release.wait_for(|go| *go).await;
            drop(stream);
        });
    }
    arrived
}

/// Waits until `count` first tokens arrived, or `within` passed; returns how many arrived.
async fn first_tokens(
    arrived: &mut mpsc::UnboundedReceiver<usize>,
    count: usize,
    within: Duration,
) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = 0;
    while seen < count {
        match tokio::time::timeout_at(deadline, arrived.recv()).await {
            Ok(Some(_)) => seen += 1,
            Ok(None) | Err(_) => break,
        }
    }
    seen
}

async fn wait_until_no_stream_is_open(standin: &StandIn) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while standin.active_streams() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} streams still open",
            standin.active_streams()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 12 answers held open at once against a server that allows 4 streams per connection: every one
/// gets its first token while all are open, over 3 connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_answers_beyond_one_connections_limit_all_stream() {
    for kind in ProviderKind::ALL {
        let s = standin_limited_to(4).await;
        let p = h2c_provider(kind, &s, 4);
        let (release, held) = watch::channel(false);
        let mut arrived = start_held_answers(&p, 12, &held);
        let got = first_tokens(&mut arrived, 12, Duration::from_secs(10)).await;
        assert_eq!(got, 12, "{kind}: first tokens while all are held open");
        assert_eq!(s.active_streams(), 12, "{kind}");
        // One connection per 4 streams; hyper's client may open a spare one when requests race
        // for a client's first connection, never one per request.
        let connections = s.connections();
        assert!(
            (3..=6).contains(&connections),
            "{kind}: {connections} connections"
        );
        release.send(true).unwrap();
        wait_until_no_stream_is_open(&s).await;
    }
}

/// The same with the answers started one after another, each once the previous one streams: an
/// answer counts against its connection for as long as its stream is open, not only while its
/// request is being sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_started_one_by_one_count_while_they_stream() {
    let s = standin_limited_to(4).await;
    let p = h2c_provider(ProviderKind::OpenAi, &s, 4);
    let mut open = Vec::new();
    for i in 0..12 {
        let first = tokio::time::timeout(Duration::from_secs(5), async {
            let mut stream = p.stream(request(&format!("one {i} #hang"))).await.unwrap();
            let first = stream.next().await.unwrap().unwrap();
            (stream, first)
        })
        .await;
        let (stream, first) = first.unwrap_or_else(|_| panic!("answer {i} got no first token"));
        assert_eq!(first, StreamEvent::TextDelta("echo:".into()));
        open.push(stream);
    }
    assert_eq!(s.active_streams(), 12);
    assert_eq!(s.connections(), 3);
    drop(open);
    wait_until_no_stream_is_open(&s).await;
}

/// The failure mode the pool fixes: with a per-connection setting above the server's limit the
/// client keeps to one connection, and answers past the server's limit wait in the client's
/// queue (they go through only as earlier ones end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_above_the_servers_limit_queues_answers_on_one_connection() {
    let s = standin_limited_to(4).await;
    let p = h2c_provider(ProviderKind::Anthropic, &s, 100);
    let (release, held) = watch::channel(false);
    let mut arrived = start_held_answers(&p, 12, &held);
    let got = first_tokens(&mut arrived, 12, Duration::from_millis(1500)).await;
    assert_eq!(got, 4, "only the server's limit gets an answer");
    assert_eq!(s.active_streams(), 4);
    // One connection (hyper's client may open a spare one when the requests race for the first
    // connection; the answers above show that it carries none of the waiting ones).
    let connections = s.connections();
    assert!(connections <= 2, "{connections} connections");
    // Once the first answers end, the queued ones go through on the same connection.
    release.send(true).unwrap();
    let rest = first_tokens(&mut arrived, 8, Duration::from_secs(10)).await;
    assert_eq!(rest, 8);
    wait_until_no_stream_is_open(&s).await;
    assert_eq!(s.connections(), connections);
}

/// One chat after another, and a few at once within the limit, use one connection: the pool does
/// not grow at low load. So does plain HTTP/1.1 (keep-alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_load_keeps_to_one_connection() {
    for kind in ProviderKind::ALL {
        let s = standin_limited_to(4).await;
        let p = h2c_provider(kind, &s, 4);
        for i in 0..10 {
            let mut stream = p.stream(request(&format!("chat {i}"))).await.unwrap();
            let mut text = String::new();
            while let Some(event) = stream.next().await {
                if let StreamEvent::TextDelta(t) = event.unwrap() {
                    text.push_str(&t);
                }
            }
            assert_eq!(text, format!("echo: chat {i}"), "{kind}");
        }
        // Three at once (not four: the end of the last answer above may still be being read in
        // the background, which counts it in flight).
        let (release, held) = watch::channel(false);
        let mut arrived = start_held_answers(&p, 3, &held);
        assert_eq!(
            first_tokens(&mut arrived, 3, Duration::from_secs(10)).await,
            3
        );
        release.send(true).unwrap();
        wait_until_no_stream_is_open(&s).await;
        assert_eq!(s.connections(), 1, "{kind}: h2c");
        assert_eq!(s.request_count(), 13, "{kind}");

        // HTTP/1.1 to the same server: sequential chats reuse one kept-alive connection.
        let mut config = ProviderConfig::new(kind, KEY).with_base_url(base_url(kind, &s));
        config.max_streams_per_connection = 1;
        let p = build(config).unwrap();
        for i in 0..5 {
            let mut stream = p.stream(request(&format!("h1 {i}"))).await.unwrap();
            while let Some(event) = stream.next().await {
                event.unwrap();
            }
            // The end of the body is read in the background; let the connection go back to the
            // client's pool before the next request.
            wait_until_no_stream_is_open(&s).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(s.connections(), 2, "{kind}: one more, for HTTP/1.1");
    }
}

/// The clients the pool adds resolve host names too (they share one DNS resolver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_clients_resolve_host_names() {
    let s = standin_limited_to(2).await;
    let mut config = ProviderConfig::new(ProviderKind::Anthropic, KEY)
        .with_base_url(format!("http://localhost:{}", s.addr().port()));
    config.http2_prior_knowledge = true;
    config.max_streams_per_connection = 2;
    let p = build(config).unwrap();
    let (release, held) = watch::channel(false);
    let mut arrived = start_held_answers(&p, 6, &held);
    assert_eq!(
        first_tokens(&mut arrived, 6, Duration::from_secs(10)).await,
        6
    );
    assert!(s.connections() >= 3, "{}", s.connections());
    release.send(true).unwrap();
    wait_until_no_stream_is_open(&s).await;
}
