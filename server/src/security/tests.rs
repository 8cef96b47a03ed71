//! The guard's unit tests: tokens, host names and origins, open paths, refusals.

use super::refuse::grpc_message;
use super::*;
use crate::config::ApiToken;

fn config(listen: &str) -> Config {
    let mut c = Config::default();
    c.gateway.listen = listen.into();
    c
}

#[test]
fn token_check_finds_the_right_name() {
    let mut c = config("127.0.0.1:1");
    c.auth.tokens = vec![
        ApiToken {
            name: "old".into(),
            token: "aaaaaaaaaaaaaaaaaaaa".to_string().into(),
        },
        ApiToken {
            name: "new".into(),
            token: "bbbbbbbbbbbbbbbbbbbb".to_string().into(),
        },
    ];
    let g = Guard::new(&c);
    assert_eq!(g.check(b"bbbbbbbbbbbbbbbbbbbb"), Some("new"));
    assert_eq!(g.check(b"aaaaaaaaaaaaaaaaaaaa"), Some("old"));
    assert_eq!(g.check(b"aaaaaaaaaaaaaaaaaaa"), None);
    assert_eq!(g.check(b""), None);
}

#[test]
fn host_names_and_origins() {
    assert_eq!(host_of("localhost:18789"), "localhost");
    assert_eq!(host_of("[::1]:18789"), "[::1]");
    assert_eq!(host_of("[::1]"), "[::1]");
    assert_eq!(host_of("example.com"), "example.com");
    assert_eq!(host_of("user@example.com:1"), "example.com");
    let mut c = config("127.0.0.1:1");
    c.auth.allowed_hosts = vec!["Gateway.LAN".into()];
    let g = Guard::new(&c);
    for ok in [
        "localhost",
        "LOCALHOST.",
        "127.0.0.1",
        "[::1]",
        "10.1.2.3",
        "gateway.lan",
    ] {
        assert!(g.host_allowed(ok), "{ok}");
    }
    for bad in [
        "rebind.attacker.example",
        "127.0.0.1.nip.io",
        "localhost.attacker.example",
        "[::1",
        "",
    ] {
        assert!(!g.host_allowed(bad), "{bad}");
    }
    assert!(same_authority("http", "127.0.0.1:18789", "127.0.0.1:18789"));
    assert!(same_authority("http", "Example.com", "example.com:80"));
    assert!(same_authority("https", "example.com", "example.com:443"));
    assert!(!same_authority("https", "example.com", "example.com:80"));
    assert!(!same_authority(
        "http",
        "evil.example:18789",
        "127.0.0.1:18789"
    ));
}

#[test]
fn grpc_messages_are_percent_encoded() {
    assert_eq!(grpc_message("a b%c\né"), "a b%25c%0A%C3%A9");
}

#[test]
fn open_paths() {
    let get = Method::GET;
    let post = Method::POST;
    assert!(is_open(&get, "/health", false));
    assert!(is_open(&post, "/grpc.health.v1.Health/Check", false));
    assert!(is_open(&get, "/", false));
    assert!(is_open(&get, "/assets/app.js", false));
    assert!(is_open(&Method::HEAD, "/", false));
    assert!(!is_open(
        &Method::OPTIONS,
        "/openclanker.v1.ChatService/Chat",
        false
    ));
    assert!(!is_open(&Method::OPTIONS, "/v1/chat/completions", false));
    assert!(is_open(&get, "/metrics", false));
    assert!(!is_open(&get, "/metrics", true));
    assert!(!is_open(&get, "/v1/models", false));
    assert!(!is_open(&post, "/openclanker.v1.ChatService/Chat", false));
    assert!(!is_open(
        &get,
        "/openclanker.v1.GatewayService/GetStatus",
        false
    ));
    assert!(!is_open(
        &post,
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        false
    ));
}
