//! Bad input at volume against the real binary: thousands of malformed protobuf frames on every
//! method, invalid UTF-8, garbage bytes on the port and malformed JSON on the OpenAI endpoint. The
//! gateway must answer each with a status, keep serving, and store nothing corrupt.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use bytes::{Buf, BufMut};
use common::*;
use open_clanker_store::Store;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Sends and receives raw bytes as gRPC messages.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let v = src.chunk().to_vec();
        src.advance(v.len());
        Ok(Some(v))
    }
}

const UNARY: &[&str] = &[
    "/openclanker.v1.SessionService/CreateSession",
    "/openclanker.v1.SessionService/ListSessions",
    "/openclanker.v1.SessionService/GetSession",
    "/openclanker.v1.SessionService/GetHistory",
    "/openclanker.v1.SessionService/ResetSession",
    "/openclanker.v1.SessionService/DeleteSession",
    "/openclanker.v1.GatewayService/GetStatus",
];
const CHAT: &str = "/openclanker.v1.ChatService/Chat";

/// A protobuf-ish frame: random bytes, or a field-3 (text) string with random (often invalid
/// UTF-8) bytes, or a huge declared length.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(|b| {
            let mut v = vec![0x1a, b.len() as u8];
            v.extend(b);
            v
        }),
        Just(vec![0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        Just(vec![0x1a, 0x02, 0xff, 0xfe]),
    ]
}

async fn call(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
    path: &'static str,
    body: Vec<u8>,
) -> Result<(), tonic::Status> {
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    if path.as_str() == CHAT {
        let mut stream = grpc
            .server_streaming(tonic::Request::new(body), path, Raw)
            .await?
            .into_inner();
        while stream.message().await?.is_some() {}
        Ok(())
    } else {
        grpc.unary(tonic::Request::new(body), path, Raw).await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_at_volume_never_breaks_the_gateway() {
    let s = Stack::start(&[]).await;
    let gw = &s.gw;
    let home = &s.home;
    let channel = tonic::transport::Endpoint::from_shared(gw.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let handle = tokio::runtime::Handle::current();

    // 1. Protobuf frames on every method.
    let methods: Vec<&'static str> = UNARY.iter().copied().chain([CHAT]).collect();
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 2500,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    runner
        .run(
            &(prop::sample::select(methods), frame()),
            |(method, body)| {
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                let result =
                    tokio::task::block_in_place(|| handle.block_on(call(&mut grpc, method, body)));
                if let Err(status) = &result {
                    // A status from the gateway, never a broken connection.
                    prop_assert!(
                        !status.message().contains("transport error")
                            && !status.message().contains("connection"),
                        "{method}: {status:?}"
                    );
                }
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(answered.into_inner(), 2500);

    // 2. Garbage bytes straight on the port (HTTP/1, HTTP/2 preface fragments, binary noise).
    let host = gw.addr.trim_start_matches("http://").to_string();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 300,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    runner
        .run(
            &prop_oneof![
                prop::collection::vec(any::<u8>(), 0..256),
                "[ -~]{0,80}".prop_map(|s| format!("GET /{s} HTTP/1.1\r\n\r\n").into_bytes()),
                prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| {
                    let mut v = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
                    v.extend(b);
                    v
                }),
            ],
            |bytes| {
                let mut s = std::net::TcpStream::connect(&host).expect("connect");
                s.set_read_timeout(Some(Duration::from_millis(300))).ok();
                let _ = s.write_all(&bytes);
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
                Ok(())
            },
        )
        .unwrap();

    // 3. Malformed JSON on the OpenAI-compatible endpoint: always a 4xx with an error object.
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 300,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    runner
        .run(
            &prop_oneof![
                ".{0,80}",
                Just(
                    r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":5}]}"#
                        .to_string()
                ),
                Just(r#"{"model":"","messages":[]}"#.to_string()),
                Just(r#"{"model":"x","messages":[{"role":"user"}],"stream":"yes"}"#.to_string()),
                "[a-z\"{}:,\\[\\]]{0,60}",
            ],
            |body| {
                let (status, _, answer) = http_request(
                    &gw.addr,
                    "POST",
                    "/v1/chat/completions",
                    &[("content-type", "application/json")],
                    &body,
                );
                prop_assert!(status.contains(" 4"), "{body:?} -> {status} {answer}");
                Ok(())
            },
        )
        .unwrap();

    // Still serving, and everything stored reads back.
    assert!(gw.cli(&["health"]).status.success());
    assert!(gw.cli(&["chat", "still here"]).status.success());
    let store = Store::connect(&Store::sqlite_url_for_dir(&home.path().join("data")))
        .await
        .unwrap();
    store.check_integrity().await.unwrap();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list_sessions(500, token.as_deref(), None)
            .await
            .unwrap();
        for s in &page.items {
            store.history(&s.id, 1000, None).await.unwrap();
        }
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
}
