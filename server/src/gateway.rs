//! The `gateway` command: wires store, providers and engine into one port that serves gRPC, gRPC-Web
//! (tonic-web with CORS) and plain HTTP (`GET /health`), with reflection and the health service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::routing::get;
use open_clanker_core::ProviderKind;
use open_clanker_proto::v1 as pb;
use open_clanker_providers::ProviderConfig;
use open_clanker_store::Store;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::config::Config;
use crate::grpc::{ChatApi, GatewayApi, SessionApi};
use open_clanker_engine::{Engine, ProviderEntry};

/// Why the gateway could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot open the store at {location}: {message}")]
    Store { location: String, message: String },
    #[error("{message}; stop it or set {setting} to another location")]
    StoreInUse {
        message: String,
        setting: &'static str,
    },
    #[error("cannot set up provider {provider}: {message}")]
    Provider {
        provider: ProviderKind,
        message: String,
    },
    #[error(
        "cannot listen on {addr}: {message} (is another gateway running? set gateway.listen or OPEN_CLANKER_LISTEN)"
    )]
    Bind { addr: SocketAddr, message: String },
    #[error("the server failed: {0}")]
    Serve(String),
    #[error(
        "TLS: {0} (set tls.cert_file / tls.key_file, or OPEN_CLANKER_TLS_CERT_FILE / OPEN_CLANKER_TLS_KEY_FILE)"
    )]
    Tls(String),
}

/// Where the store lives, without any password.
fn store_location(config: &Config) -> (String, String) {
    match &config.store.database_url {
        Some(url) => (url.clone(), open_clanker_core::redact::redact_url(url)),
        None => {
            let dir = config.data_dir();
            (Store::sqlite_url_for_dir(&dir), dir.display().to_string())
        }
    }
}

pub async fn open_store(config: &Config) -> Result<Store, GatewayError> {
    let (url, shown) = store_location(config);
    Store::connect(&url).await.map_err(|e| GatewayError::Store {
        location: shown,
        message: format!("{e} (set store.data_dir / OPEN_CLANKER_DATA_DIR)"),
    })
}

/// Opens the store for the gateway that serves it: a SQLite file is locked for this process (a
/// second gateway on it refuses to start) and answers a crash cut off are marked interrupted.
async fn open_store_exclusive(config: &Config) -> Result<Store, GatewayError> {
    let (url, shown) = store_location(config);
    Store::connect_exclusive(&url).await.map_err(|e| match e {
        open_clanker_store::StoreError::InUse { .. } => GatewayError::StoreInUse {
            message: e.to_string(),
            setting: if config.store.database_url.is_some() {
                "OPEN_CLANKER_DATABASE_URL (store.database_url)"
            } else {
                "OPEN_CLANKER_DATA_DIR (store.data_dir)"
            },
        },
        e => GatewayError::Store {
            location: shown,
            message: format!("{e} (set store.data_dir / OPEN_CLANKER_DATA_DIR)"),
        },
    })
}

pub fn build_providers(
    config: &Config,
) -> Result<HashMap<ProviderKind, ProviderEntry>, GatewayError> {
    let mut out = HashMap::new();
    for kind in ProviderKind::ALL {
        let section = config.providers.get(kind);
        let Some(key) = section.key() else { continue };
        let mut pc = ProviderConfig::new(kind, key.to_string());
        pc.base_url = section.url(kind).into();
        pc.connect_timeout = Duration::from_secs(section.connect_timeout_secs);
        pc.idle_timeout = Duration::from_secs(section.idle_timeout_secs);
        pc.max_retries = section.max_retries;
        pc.http2_prior_knowledge = section.http2_prior_knowledge;
        pc.max_streams_per_connection = section.max_streams_per_connection;
        let client = open_clanker_providers::build(pc).map_err(|e| GatewayError::Provider {
            provider: kind,
            message: e.to_string(),
        })?;
        out.insert(
            kind,
            ProviderEntry {
                client,
                default_model: section.model.clone(),
                max_tokens: section.max_tokens,
            },
        );
    }
    Ok(out)
}

async fn health(engine: Arc<Engine>) -> (StatusCode, [(HeaderName, HeaderValue); 1], String) {
    let json = [(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    let pinged = tokio::time::timeout(crate::grpc::HEALTH_TIMEOUT, engine.store().ping()).await;
    match (pinged, engine.store().write_error()) {
        (Ok(Ok(())), None) => (StatusCode::OK, json, r#"{"status":"ok"}"#.into()),
        // Reads work but writes do not (a full disk): no turn can be stored, so not ready.
        (Ok(Ok(())), Some(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json,
            serde_json::json!({"status": "degraded", "store": format!("cannot write: {why}")})
                .to_string(),
        ),
        (Ok(Err(e)), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json,
            serde_json::json!({"status": "unavailable", "error": e.to_string()}).to_string(),
        ),
        (Err(_), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json,
            r#"{"status":"unavailable","error":"the store did not answer in time"}"#.into(),
        ),
    }
}

/// Runs the gateway until SIGTERM/SIGINT, then shuts down gracefully.
pub async fn run(config: Config) -> Result<(), GatewayError> {
    let started = Instant::now();
    let config = Arc::new(config);
    let store = open_store_exclusive(&config).await?;
    let providers = build_providers(&config)?;
    if providers.is_empty() {
        warn!(
            "no provider is configured: chats will fail until ANTHROPIC_API_KEY or OPENAI_API_KEY is set"
        );
    } else if !providers.contains_key(&config.default_provider()) {
        warn!(
            default = %config.default_provider(),
            "the default provider is not configured; requests must name another provider"
        );
    }
    let configured_kinds: Vec<ProviderKind> = ProviderKind::ALL
        .into_iter()
        .filter(|k| providers.contains_key(k))
        .collect();
    let configured: Vec<&str> = configured_kinds.iter().map(|k| k.as_str()).collect();
    let engine = Arc::new(Engine::new(
        config.engine_settings(),
        store,
        providers,
        Arc::new(crate::metrics::EngineMetrics),
    ));
    // Chat channels (Telegram, Discord) run turns through the engine like the Chat RPC does.
    let mut channels = crate::channels::start(&config, engine.clone());

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::chat_service_server::ChatServiceServer<ChatApi>>()
        .await;
    health_reporter
        .set_serving::<pb::session_service_server::SessionServiceServer<SessionApi>>()
        .await;
    health_reporter
        .set_serving::<pb::gateway_service_server::GatewayServiceServer<GatewayApi>>()
        .await;
    health_reporter
        .set_serving::<pb::access_service_server::AccessServiceServer<crate::access_api::AccessApi>>()
        .await;
    // Reflection v1 (grpcurl, buf curl) and v1alpha (older clients, grpcio-reflection).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| GatewayError::Serve(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| GatewayError::Serve(format!("reflection: {e}")))?;

    let max_bytes = config.limits.max_request_bytes;
    let routes = Routes::new(
        pb::chat_service_server::ChatServiceServer::new(ChatApi {
            engine: engine.clone(),
        })
        .max_decoding_message_size(max_bytes),
    )
    .add_service(
        pb::session_service_server::SessionServiceServer::new(SessionApi {
            engine: engine.clone(),
        })
        .max_decoding_message_size(max_bytes),
    )
    .add_service(
        pb::gateway_service_server::GatewayServiceServer::new(GatewayApi {
            engine: engine.clone(),
            config: config.clone(),
            started,
            channels: channels.status(),
        })
        .max_decoding_message_size(max_bytes),
    )
    .add_service(
        pb::access_service_server::AccessServiceServer::new(crate::access_api::AccessApi {
            access: Arc::new(engine.store().clone()),
            config: config.clone(),
        })
        .max_decoding_message_size(max_bytes),
    )
    .add_service(health_service)
    .add_service(reflection_v1)
    .add_service(reflection_v1alpha);
    let health_engine = engine.clone();
    // gRPC-Web wraps the gRPC services only: plain HTTP routes (added after the layer) stay plain.
    let router = routes
        .into_axum_router()
        // Inside gRPC-Web: counts each call with the status its trailers end it with.
        .layer(axum::middleware::from_fn(crate::metrics::observe_grpc))
        .layer(tonic_web::GrpcWebLayer::new())
        .route("/health", get(move || health(health_engine.clone())))
        .route("/metrics", get(crate::metrics::serve))
        .merge(crate::web::router())
        .merge(crate::openai_api::router(
            engine.clone(),
            config.clone(),
            configured_kinds,
        ));
    let guard = Arc::new(crate::security::Guard::new(&config));
    if !guard.auth_enabled() && !config.listen_addr().ip().is_loopback() {
        warn!(
            listen = %config.listen_addr(),
            "LISTENING BEYOND LOOPBACK WITHOUT API TOKENS (auth.allow_unauthenticated = true): anyone who reaches this port can spend your provider credits"
        );
    }
    let mut router = router
        .layer(axum::extract::DefaultBodyLimit::max(max_bytes))
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::security::guard,
        ))
        // Outside the guard, so its refusals are counted too.
        .layer(axum::middleware::from_fn(crate::metrics::observe));
    if let Some(cors) = crate::security::cors(&config) {
        router = router.layer(cors);
    }

    // The Telegram webhook (when configured) checks its own secret, outside the API-token guard.
    let router = channels.mount(router);
    let addr = config.listen_addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| GatewayError::Bind {
            addr,
            message: e.to_string(),
        })?;
    let local = listener.local_addr().unwrap_or(addr);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut builder = tonic::transport::Server::builder();
    if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| GatewayError::Tls(format!("cannot read {}: {e}", p.display())))
        };
        let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| GatewayError::Tls(e.to_string()))?;
    }
    let server = builder
        .accept_http1(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(config.limits.max_streams_per_connection)
        .add_routes(Routes::from(router))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        });
    let mut server = tokio::spawn(server);

    info!(
        listen = %local,
        providers = ?configured,
        store = engine.store().backend(),
        startup_ms = started.elapsed().as_millis() as u64,
        "open-clanker gateway listening"
    );
    // One plain line on stdout so scripts can find the port (e.g. with listen = "127.0.0.1:0").
    println!("open-clanker gateway listening on {local}");

    tokio::select! {
        r = &mut server => return finish(r),
        _ = shutdown_signal() => {}
    }
    channels.stop();
    let grace = config.shutdown_grace();
    info!(
        grace_secs = grace.as_secs(),
        open_turns = engine.running_turns(),
        "shutting down: no new connections; open streams may finish"
    );
    health_reporter
        .set_not_serving::<pb::chat_service_server::ChatServiceServer<ChatApi>>()
        .await;
    let _ = stop_tx.send(());
    let result = tokio::select! {
        r = &mut server => Some(r),
        _ = tokio::time::sleep(grace) => None,
    };
    let result = match result {
        Some(r) => r,
        None => {
            warn!(
                open_turns = engine.running_turns(),
                "grace period over: interrupting open turns (their partial answers are stored)"
            );
            engine.interrupt_all().await;
            match tokio::time::timeout(Duration::from_secs(3), &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    channels.join(Duration::from_secs(5)).await;
    engine.interrupt_all().await;
    info!("stopped");
    crate::telemetry::shutdown().await;
    finish(result)
}

fn finish(
    r: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<(), GatewayError> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(GatewayError::Serve(e.to_string())),
        Err(e) => Err(GatewayError::Serve(e.to_string())),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
