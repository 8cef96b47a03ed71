//! The provider clients and the API key, against the stand-in: no error ever carries the key, and
//! the key check probes the model list.

use std::time::Duration;

use open_clanker_providers::{ProviderError, ProviderKind, build};
use serde_json::json;

mod common;

use common::{
    KEY, SECRET, assert_no_secret, base_url, closed_port, config, fixture_server, request, run,
    standin, standin_with_key,
};

#[tokio::test]
async fn no_error_carries_the_api_key() {
    // The stand-in expects the secret, so the requests get past authentication.
    let s = standin_with_key(SECRET).await;
    let texts = [
        "#status=400",
        "#status=404",
        "#status=429 #retry_after=0",
        "#status=503",
        "#cut=1",
        "#sse_error",
    ];
    let mut seen = 0;
    for kind in ProviderKind::ALL {
        let p = build(config(kind, base_url(kind, &s), SECRET)).unwrap();
        for text in texts {
            let error = match run(p.as_ref(), request(text)).await {
                Err(e) => e,
                Ok(out) => out.error.expect(text),
            };
            assert_no_secret(&error);
            seen += 1;
        }
        // Timeout.
        let mut c = config(kind, base_url(kind, &s), SECRET);
        c.idle_timeout = Duration::from_millis(200);
        let error = run(build(c).unwrap().as_ref(), request("#hang"))
            .await
            .unwrap()
            .error
            .unwrap();
        assert_no_secret(&error);
        // A provider that echoes the key back in its error.
        let echo = json!({"error": {"message": format!("bad key {SECRET} given"), "type": "invalid_request_error"}});
        let addr = fixture_server(400, "application/json", echo.to_string()).await;
        let base = match kind {
            ProviderKind::Anthropic => format!("http://{addr}"),
            ProviderKind::OpenAi => format!("http://{addr}/v1"),
        };
        let error = run(
            build(config(kind, base, SECRET)).unwrap().as_ref(),
            request("hi"),
        )
        .await
        .err()
        .unwrap();
        assert!(error.to_string().contains("[redacted]"), "{error}");
        assert_no_secret(&error);
        // The provider's Debug output.
        assert!(!format!("{p:?}", p = config(kind, base_url(kind, &s), SECRET)).contains(SECRET));
    }
    // Wrong key (401) and config errors.
    let other = standin().await;
    for kind in ProviderKind::ALL {
        let p = build(config(kind, base_url(kind, &other), SECRET)).unwrap();
        assert_no_secret(&run(p.as_ref(), request("hi")).await.err().unwrap());
        let bad = config(kind, format!("not a url {SECRET}"), SECRET);
        assert_no_secret(&build(bad).err().unwrap());
        let bad = config(
            kind,
            base_url(kind, &other),
            &format!("{SECRET}\nsecond-line"),
        );
        assert_no_secret(&build(bad).err().unwrap());
    }
    assert_eq!(seen, 12);
}

#[tokio::test]
async fn check_key_probes_the_model_list() {
    use open_clanker_providers::check_key;
    let s = standin().await;
    for kind in ProviderKind::ALL {
        s.clear_requests();
        check_key(config(kind, base_url(kind, &s), KEY))
            .await
            .unwrap();
        let recorded = s.requests();
        assert_eq!(recorded.len(), 1);
        assert_eq!(
            (recorded[0].method.as_str(), recorded[0].path.as_str()),
            ("GET", "/v1/models")
        );

        let error = check_key(config(kind, base_url(kind, &s), SECRET))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProviderError::Unauthorized { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(kind.api_key_env()), "{error}");
        assert_no_secret(&error);
    }
    // A base URL missing its /v1 answers 404.
    let error = check_key(config(ProviderKind::OpenAi, s.anthropic_base_url(), KEY))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::BadRequest { status: 404, .. }),
        "{error:?}"
    );
    // Nothing listening: not retried.
    let addr = closed_port().await;
    let error = check_key(config(
        ProviderKind::Anthropic,
        format!("http://{addr}"),
        KEY,
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains("attempts"), "{error}");
}
