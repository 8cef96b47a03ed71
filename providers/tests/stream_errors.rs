//! The provider clients' errors while streaming, against the stand-in: cut streams, error events,
//! silence past the idle timeout, and dropping a stream.

use std::time::{Duration, Instant};

use futures::StreamExt;
use open_clanker_providers::{ProviderError, ProviderKind, StreamEvent, build};

mod common;

use common::{KEY, base_url, config, provider, request, run, standin};

#[tokio::test]
async fn a_cut_stream_ends_with_a_stream_error_after_the_deltas() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        let p = provider(kind, &s);
        let out = run(p.as_ref(), request("one two three four five #cut=3"))
            .await
            .unwrap();
        assert_eq!(out.deltas(), 3, "{kind}");
        assert_eq!(out.text(), "echo: one two", "{kind}");
        assert!(out.done().is_none());
        assert!(
            matches!(out.error, Some(ProviderError::Stream { .. })),
            "{kind}: {:?}",
            out.error
        );
    }
}

#[tokio::test]
async fn an_error_event_ends_the_stream_with_an_error() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        let p = provider(kind, &s);
        let out = run(p.as_ref(), request("hello world #sse_error"))
            .await
            .unwrap();
        assert_eq!(out.text(), "echo:", "{kind}");
        assert!(out.done().is_none());
        let error = out.error.expect("an error");
        match kind {
            // overloaded_error
            ProviderKind::Anthropic => {
                assert!(
                    matches!(error, ProviderError::Unavailable { .. }),
                    "{error:?}"
                );
                assert!(error.to_string().contains("Overloaded"), "{error}");
            }
            ProviderKind::OpenAi => {
                assert!(matches!(error, ProviderError::Stream { .. }), "{error:?}");
                assert!(error.to_string().contains("server had an error"), "{error}");
            }
        }
    }
}

#[tokio::test]
async fn a_silent_stream_times_out() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        let mut c = config(kind, base_url(kind, &s), KEY);
        c.idle_timeout = Duration::from_millis(300);
        let p = build(c).unwrap();
        let started = Instant::now();
        let out = run(p.as_ref(), request("wait #hang")).await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(out.text(), "echo:", "{kind}");
        assert!(
            matches!(
                out.error,
                Some(ProviderError::Timeout { .. } | ProviderError::Stream { .. })
            ),
            "{kind}: {:?}",
            out.error
        );
        assert!(elapsed < Duration::from_secs(3), "{kind}: took {elapsed:?}");
    }
}

#[tokio::test]
async fn slow_deltas_within_the_idle_timeout_are_fine() {
    let s = standin().await;
    let mut c = config(ProviderKind::OpenAi, s.openai_base_url(), KEY);
    c.idle_timeout = Duration::from_millis(500);
    let p = build(c).unwrap();
    // 6 deltas, 100 ms apart: 600 ms in all, more than the idle timeout but never idle that long.
    let out = run(p.as_ref(), request("#tokens=6 #delay=100"))
        .await
        .unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.deltas(), 6);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_upstream_answer() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        let p = provider(kind, &s);
        let mut stream = p.stream(request("#hang")).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first, StreamEvent::TextDelta("echo:".into()));
        assert_eq!(s.active_streams(), 1);
        drop(stream);
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.active_streams() > 0 {
            assert!(
                Instant::now() < deadline,
                "{kind}: the stand-in still streams"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
