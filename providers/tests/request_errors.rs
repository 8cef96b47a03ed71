//! The provider clients' errors before the answer, against the stand-in and fixed fixtures: rate
//! limits and retries, server errors, bad requests and refused connections.

use std::time::{Duration, Instant};

use open_clanker_providers::{ProviderError, ProviderKind, build};

mod common;

use common::{
    KEY, SECRET, assert_no_secret, base_url, closed_port, config, provider, request, run, standin,
};

#[tokio::test]
async fn unauthorized_is_not_retried_and_names_the_env_var() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        s.clear_requests();
        let p = build(config(kind, base_url(kind, &s), SECRET)).unwrap();
        let error = run(p.as_ref(), request("hi")).await.err().expect("401");
        assert!(
            matches!(error, ProviderError::Unauthorized { status: 401, .. }),
            "{error:?}"
        );
        assert_eq!(s.request_count(), 1, "{kind}: 401 must not be retried");
        assert!(error.to_string().contains(kind.api_key_env()), "{error}");
        assert_no_secret(&error);
        assert!(!error.is_transient());
    }
}

#[tokio::test]
async fn rate_limit_is_retried_honouring_retry_after() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        s.clear_requests();
        let p = provider(kind, &s);
        let text = format!("{kind} #fail=1 #status=429");
        let started = Instant::now();
        let out = run(p.as_ref(), request(&text)).await.unwrap();
        let elapsed = started.elapsed();
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.text(), format!("echo: {text}"));
        assert_eq!(s.request_count(), 2, "{kind}");
        // retry-after: 1 outweighs the 10 ms back-off.
        assert!(
            elapsed >= Duration::from_millis(950),
            "{kind}: retried after {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(5), "{kind}: {elapsed:?}");
    }
}

#[tokio::test]
async fn rate_limit_after_all_retries() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        s.clear_requests();
        let p = provider(kind, &s);
        let error = run(p.as_ref(), request("#status=429 #retry_after=0"))
            .await
            .err()
            .unwrap();
        match &error {
            ProviderError::RateLimited {
                retry_after,
                message,
                ..
            } => {
                assert_eq!(*retry_after, Some(Duration::ZERO));
                assert!(message.contains("3 attempts"), "{message}");
            }
            other => panic!("{kind}: {other:?}"),
        }
        assert_eq!(s.request_count(), 3, "{kind}");
        assert!(error.is_transient());
    }
}

#[tokio::test]
async fn server_errors_are_retried_then_unavailable() {
    let s = standin().await;
    let cases = [
        (ProviderKind::Anthropic, "#status=503"),
        (ProviderKind::Anthropic, "#status=529"),
        (ProviderKind::OpenAi, "#status=500"),
        (ProviderKind::OpenAi, "#status=503"),
    ];
    for (kind, text) in cases {
        s.clear_requests();
        let p = provider(kind, &s);
        let error = run(p.as_ref(), request(text)).await.err().unwrap();
        assert!(
            matches!(error, ProviderError::Unavailable { .. }),
            "{kind} {text}: {error:?}"
        );
        assert_eq!(s.request_count(), 3, "{kind} {text}: 1 try + 2 retries");
        let shown = error.to_string();
        assert!(shown.contains("3 attempts"), "{shown}");
        assert!(
            shown.contains("simulated HTTP"),
            "the provider's message is kept: {shown}"
        );
    }
}

#[tokio::test]
async fn a_transient_failure_then_success() {
    let s = standin().await;
    let p = provider(ProviderKind::Anthropic, &s);
    let out = run(p.as_ref(), request("#fail=2 #status=529"))
        .await
        .unwrap();
    assert!(out.error.is_none());
    assert_eq!(s.request_count(), 3);
    // With max_retries 1 the same needs would fail.
    let mut c = config(ProviderKind::OpenAi, s.openai_base_url(), KEY);
    c.max_retries = 1;
    let p = build(c).unwrap();
    let error = run(p.as_ref(), request("#fail=2")).await.err().unwrap();
    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn bad_requests_surface_the_providers_message() {
    let s = standin().await;
    for kind in ProviderKind::ALL {
        s.clear_requests();
        let p = provider(kind, &s);
        let error = run(p.as_ref(), request("#status=400")).await.err().unwrap();
        match &error {
            ProviderError::BadRequest {
                status: 400,
                message,
                ..
            } => {
                assert!(
                    message.contains("stand-in: simulated HTTP 400"),
                    "{message}"
                );
            }
            other => panic!("{kind}: {other:?}"),
        }
        assert_eq!(s.request_count(), 1, "{kind}: 400 must not be retried");
        let error = run(p.as_ref(), request("#status=404")).await.err().unwrap();
        assert!(
            matches!(error, ProviderError::BadRequest { status: 404, .. }),
            "{error:?}"
        );
        assert_eq!(s.request_count(), 2, "{kind}: 404 must not be retried");
    }
    // A genuinely invalid request, as the stand-in validates it like Anthropic does.
    let p = provider(ProviderKind::Anthropic, &s);
    let mut req = request("hi");
    req.temperature = Some(1.5);
    let error = run(p.as_ref(), req).await.err().unwrap();
    assert!(error.to_string().contains("temperature"), "{error}");
    // Nothing to send is refused before any request.
    s.clear_requests();
    let error = run(p.as_ref(), request("   ")).await.err().unwrap();
    assert!(
        matches!(error, ProviderError::InvalidRequest { .. }),
        "{error:?}"
    );
    assert_eq!(s.request_count(), 0);
}

#[tokio::test]
async fn connection_refused_is_retried_then_unavailable() {
    let addr = closed_port().await;
    for (kind, base) in [
        (ProviderKind::Anthropic, format!("http://{addr}")),
        (ProviderKind::OpenAi, format!("http://{addr}/v1")),
    ] {
        let p = build(config(kind, base, SECRET)).unwrap();
        let started = Instant::now();
        let error = run(p.as_ref(), request("hi")).await.err().unwrap();
        assert!(
            matches!(error, ProviderError::Unavailable { .. }),
            "{error:?}"
        );
        let shown = error.to_string();
        assert!(
            shown.contains("3 attempts") && shown.contains("could not connect"),
            "{shown}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_no_secret(&error);
    }
}
