//! The port as a hostile client sees it, through the real binary: every gRPC method of the
//! contract with every HTTP method, over HTTP/1.1 and HTTP/2, with and without a token; DNS
//! rebinding against a gateway without tokens; unknown methods with an open request stream; and
//! one caller's share of the concurrent-turn budget.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TOKEN_A: &str = "alice-token-0123456789abcdef";
const TOKEN_B: &str = "bobby-token-fedcba9876543210";

/// A gRPC frame holding `message`.
fn frame(message: &impl prost::Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The request body sent to `path`: a real request for the methods that would change something
/// (a paid turn, a new session, an approved stranger), an empty message for the rest.
fn body_for(path: &str) -> Vec<u8> {
    use open_clanker_proto::v1 as pb;
    match path {
        "/openclanker.v1.ChatService/Chat" => frame(&pb::ChatRequest {
            text: "hello from a hostile client".into(),
            ..Default::default()
        }),
        _ => vec![0u8; 5],
    }
}

fn client(http2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy();
    let builder = if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    builder.build().unwrap()
}

struct Answer {
    status: u16,
    grpc_status: Option<String>,
    body: Vec<u8>,
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client.request(method, url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let grpc_status = resp
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap_or("?").to_string());
    // Health's Watch streams for as long as the client listens: its headers are the answer.
    let body = if url.ends_with("/Watch") && status == 200 {
        Vec::new()
    } else {
        resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default()
    };
    Answer {
        status,
        grpc_status,
        body,
    }
}

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpc_method_with_every_http_method_needs_post_and_a_token() {
    let tokens = format!("alice:{TOKEN_A}");
    let s = Stack::start(&[
        ("OPEN_CLANKER_API_TOKENS", tokens.as_str()),
        // One turn per minute: a bypass of the limit would show as a second paid turn.
        ("OPEN_CLANKER_TURNS_PER_MINUTE", "1"),
    ])
    .await;
    let gw = &s.gw;
    let provider = &s.provider;
    let methods = open_clanker::contract::served_grpc_methods();
    for must in [
        "/openclanker.v1.ChatService/Chat",
        "/openclanker.v1.SessionService/ListSessions",
        "/openclanker.v1.SessionService/CreateSession",
        "/openclanker.v1.AccessService/ApprovePairing",
        "/openclanker.v1.GatewayService/GetStatus",
        "/grpc.health.v1.Health/Check",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ] {
        assert!(methods.contains(must), "{must} missing from {methods:?}");
    }
    let mut methods: Vec<String> = methods.iter().cloned().collect();
    methods.sort();

    let bearer = format!("Bearer {TOKEN_A}");
    // Chat calls that got past the rate limit (a refusal comes as a trailers-only status).
    let mut turns = 0;
    // gRPC proper over HTTP/2; gRPC-Web over both (what browsers and HTTP/1.1 clients send).
    let cases = [
        (false, "application/grpc-web+proto"),
        (true, "application/grpc"),
        (true, "application/grpc-web+proto"),
    ];
    for (http2, content_type) in cases {
        let client = client(http2);
        for path in &methods {
            let url = format!("{}{path}", gw.addr);
            let open = path.starts_with("/grpc.health.v1.");
            for method in HTTP_METHODS {
                for token in [None, Some(bearer.as_str())] {
                    for preflight in [false, true] {
                        if preflight && *method != "OPTIONS" {
                            continue;
                        }
                        let mut headers = vec![("content-type", content_type), ("te", "trailers")];
                        if let Some(t) = token {
                            headers.push(("authorization", t));
                        }
                        if preflight {
                            headers.push(("origin", "http://elsewhere.example"));
                            headers.push(("access-control-request-method", "POST"));
                        }
                        let what = format!(
                            "{method} {path} http2={http2} {content_type} token={} preflight={preflight}",
                            token.is_some()
                        );
                        let a = send(&client, &url, method, &headers, body_for(path)).await;
                        if *method != "POST" {
                            // Refused before routing: never a gRPC status from a service.
                            let want = if preflight { 204 } else { 405 };
                            assert_eq!(a.status, want, "{what}");
                            assert_eq!(a.grpc_status, None, "{what}");
                            if !preflight && *method != "HEAD" {
                                let text = String::from_utf8_lossy(&a.body);
                                assert!(text.contains("POST"), "{what}: {text}");
                            }
                            continue;
                        }
                        assert_eq!(a.status, 200, "{what}");
                        match (token, open) {
                            (None, false) => {
                                assert_eq!(a.grpc_status.as_deref(), Some("16"), "{what}")
                            }
                            _ => assert_ne!(a.grpc_status.as_deref(), Some("16"), "{what}"),
                        }
                        assert_ne!(a.grpc_status.as_deref(), Some("12"), "{what}: known method");
                        if path.ends_with("/Chat") && token.is_some() && a.grpc_status.is_none() {
                            turns += 1;
                        }
                    }
                }
            }
        }
    }
    // Only the POSTs with the token reached the services: the paid turns are those the rate
    // limit let through (one a minute), each with its session.
    assert!(turns >= 1);
    assert_eq!(provider.request_count(), turns, "{:?}", provider.requests());
    let status = gw.cli_as(Some(TOKEN_A), &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    // The turn's session plus the three CreateSession calls with the token; the turn's two
    // messages.
    assert_eq!(status["store"]["sessions"], 3 + turns, "{status}");
    assert_eq!(status["store"]["messages"], 2 * turns, "{status}");

    // Refusals are counted as refusals, never as OK calls.
    let (_, text) = scrape(&gw.addr);
    let refused = metric(
        &text,
        "open_clanker_rejected_requests_total",
        &[("reason", "method_not_allowed")],
    )
    .unwrap_or(0.0);
    assert!(refused > 0.0, "{text}");
    let (_, _, logs) = s.gw.terminate();
    assert!(!logs.contains("panicked"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cors_origins_an_options_request_still_reaches_no_service() {
    let home = tempfile::tempdir().unwrap();
    let tokens = format!("alice:{TOKEN_A}");
    let gw = Gateway::start(
        home.path(),
        &[
            ("OPEN_CLANKER_API_TOKENS", tokens.as_str()),
            ("OPEN_CLANKER_CORS_ORIGINS", "https://chat.example.com"),
        ],
    );
    let url = format!("{}/openclanker.v1.SessionService/CreateSession", gw.addr);
    for http2 in [false, true] {
        let c = client(http2);
        for preflight in [false, true] {
            let mut headers = vec![
                ("content-type", "application/grpc"),
                ("origin", "https://chat.example.com"),
            ];
            if preflight {
                headers.push(("access-control-request-method", "POST"));
            }
            let a = send(&c, &url, "OPTIONS", &headers, vec![0u8; 5]).await;
            assert!(
                a.status < 300,
                "http2={http2} preflight={preflight}: {}",
                a.status
            );
            assert_eq!(a.grpc_status, None, "http2={http2} preflight={preflight}");
            assert!(a.body.is_empty(), "http2={http2} preflight={preflight}");
        }
    }
    // Nothing was created.
    let status = gw.cli_as(Some(TOKEN_A), &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["store"]["sessions"], 0, "{status}");
    gw.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_only_local_and_configured_host_names_are_served() {
    let s = Stack::start(&[("OPEN_CLANKER_ALLOWED_HOSTS", "gateway.lan")]).await;
    let gw = &s.gw;
    let provider = &s.provider;
    let addr: std::net::SocketAddr = gw.addr.trim_start_matches("http://").parse().unwrap();
    let port = addr.port();
    // The attacker's name resolves to this gateway (DNS rebinding), here without any DNS.
    let rebound = |http2: bool| {
        let b = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .resolve("rebind.attacker.example", addr)
            .resolve("gateway.lan", addr)
            .resolve("localhost", addr);
        if http2 {
            b.http2_prior_knowledge().build().unwrap()
        } else {
            b.http1_only().build().unwrap()
        }
    };
    let chat = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hi"}],
    })
    .to_string()
    .into_bytes();
    let list_web = {
        // gRPC-Web: ListSessions with an empty request.
        vec![0u8; 5]
    };
    for http2 in [false, true] {
        let c = rebound(http2);
        let evil = format!("http://rebind.attacker.example:{port}");
        let a = send(
            &c,
            &format!("{evil}/v1/chat/completions"),
            "POST",
            &[("content-type", "application/json")],
            chat.clone(),
        )
        .await;
        assert_eq!(a.status, 421, "http2={http2}");
        let text = String::from_utf8_lossy(&a.body);
        assert!(text.contains("auth.allowed_hosts"), "{text}");
        let a = send(
            &c,
            &format!("{evil}/openclanker.v1.SessionService/ListSessions"),
            "POST",
            &[("content-type", "application/grpc-web+proto")],
            list_web.clone(),
        )
        .await;
        assert_eq!(a.grpc_status.as_deref(), Some("7"), "http2={http2}");
        let a = send(&c, &format!("{evil}/health"), "GET", &[], Vec::new()).await;
        assert_eq!(a.status, 421);

        // Local names, IP addresses and configured names are served.
        for base in [
            format!("http://localhost:{port}"),
            format!("http://127.0.0.1:{port}"),
            format!("http://gateway.lan:{port}"),
        ] {
            let a = send(
                &c,
                &format!("{base}/openclanker.v1.SessionService/ListSessions"),
                "POST",
                &[("content-type", "application/grpc-web+proto")],
                list_web.clone(),
            )
            .await;
            assert_eq!(a.status, 200, "{base}");
            assert_eq!(a.grpc_status, None, "{base}: answered with a body");
        }
        // A page from another origin (cross-site request to a local name) is refused; the
        // gateway's own page (same origin) is served.
        let own = format!("http://127.0.0.1:{port}");
        let a = send(
            &c,
            &format!("{own}/v1/chat/completions"),
            "POST",
            &[
                ("content-type", "application/json"),
                ("origin", "http://rebind.attacker.example"),
            ],
            chat.clone(),
        )
        .await;
        assert_eq!(a.status, 421, "http2={http2}");
        let a = send(
            &c,
            &format!("{own}/v1/chat/completions"),
            "POST",
            &[
                ("content-type", "application/json"),
                ("origin", own.as_str()),
            ],
            chat.clone(),
        )
        .await;
        assert_eq!(
            a.status,
            200,
            "http2={http2}: {}",
            String::from_utf8_lossy(&a.body)
        );
    }
    // Only the two same-origin turns reached the provider.
    assert_eq!(provider.request_count(), 2);
    s.gw.terminate();

    // With tokens, the token is what protects the gateway: any host name is served.
    let home = tempfile::tempdir().unwrap();
    let tokens = format!("alice:{TOKEN_A}");
    let gw = Gateway::start(home.path(), &[("OPEN_CLANKER_API_TOKENS", tokens.as_str())]);
    let port: u16 = gw.addr.rsplit(':').next().unwrap().parse().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .resolve("gateway.example.com", addr)
        .build()
        .unwrap();
    let bearer = format!("Bearer {TOKEN_A}");
    let a = send(
        &c,
        &format!("http://gateway.example.com:{port}/openclanker.v1.SessionService/ListSessions"),
        "POST",
        &[
            ("content-type", "application/grpc-web+proto"),
            ("authorization", bearer.as_str()),
        ],
        vec![0u8; 5],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.grpc_status, None);
    gw.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_method_is_refused_while_its_request_stream_is_open() {
    let home = tempfile::tempdir().unwrap();
    let tokens = format!("alice:{TOKEN_A}");
    let gw = Gateway::start(home.path(), &[("OPEN_CLANKER_API_TOKENS", tokens.as_str())]);
    let bearer = format!("Bearer {TOKEN_A}");
    for http2 in [false, true] {
        // A body that sends one frame and then never ends.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        tx.send(Ok(vec![0u8; 5])).await.unwrap();
        let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        let started = Instant::now();
        let resp = client(http2)
            .post(format!(
                "{}/openclanker.v1.ChatService/NoSuchMethod",
                gw.addr
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", bearer.as_str())
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("http2={http2}: {e}"));
        let grpc = resp
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(grpc.as_deref(), Some("12"), "http2={http2}");
        // The client's 30 s timeout would have failed the send: the answer came while the
        // stream was open. Say how long it took, for the record.
        eprintln!(
            "unknown method answered in {:?} (http2={http2})",
            started.elapsed()
        );
        drop(tx);
    }
    gw.terminate();
}

/// `open-clanker chat` as a child that holds its turn open (`#hang`).
fn hanging_chat(gw: &Gateway, token: &str) -> Child {
    gw.cli_command(&["chat", "hold this turn #hang"])
        .env("OPEN_CLANKER_TOKEN", token)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn wait_for_streams(provider: &open_clanker_testkit::StandIn, n: usize) {
    poll_async(
        Duration::from_secs(60),
        Duration::from_millis(50),
        &format!("{n} streams open"),
        || (provider.active_streams() >= n).then_some(()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_cannot_take_the_whole_turn_budget() {
    let tokens = format!("alice:{TOKEN_A},bob:{TOKEN_B}");
    let s = Stack::start(&[
        ("OPEN_CLANKER_API_TOKENS", tokens.as_str()),
        ("OPEN_CLANKER_MAX_CONCURRENT_TURNS", "4"),
        ("OPEN_CLANKER_MAX_CONCURRENT_TURNS_PER_CALLER", "2"),
    ])
    .await;
    let gw = &s.gw;
    let provider = &s.provider;
    let mut held = vec![hanging_chat(gw, TOKEN_A), hanging_chat(gw, TOKEN_A)];
    wait_for_streams(provider, 2).await;
    // Alice's third turn is refused with a message that says why ...
    let out = gw.cli_as(Some(TOKEN_A), &["chat", "one more"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("max_concurrent_turns_per_caller"), "{err}");
    // ... while Bob, who has none running, still gets his.
    held.push(hanging_chat(gw, TOKEN_B));
    wait_for_streams(provider, 3).await;
    let (_, text) = scrape(&gw.addr);
    assert_eq!(
        metric(
            &text,
            "open_clanker_rejected_requests_total",
            &[("reason", "caller_share")]
        ),
        Some(1.0),
        "{text}"
    );
    for mut child in held {
        let _ = child.kill();
        let _ = child.wait();
    }
    s.gw.terminate();
}
