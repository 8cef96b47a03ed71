//! Logging with tracing: human-readable by default, JSON lines on request. `RUST_LOG` wins over the
//! configured level. Logs go to stderr; stdout is kept for command output.
//!
//! Traces: when an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, else `log.otlp_endpoint`), the gateway's own spans (one `turn`
//! per chat turn, with `store.*` and `provider.stream` children) are exported over OTLP/gRPC in
//! batches, and JSON log lines written inside a span carry its `trace_id` and `span_id`. Off
//! otherwise: no exporter, no trace ids, no cost. `OTEL_SERVICE_NAME` names the service
//! (default `open-clanker`); `OTEL_SDK_DISABLED=true` turns export off; the SDK's own variables
//! (`OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`) apply.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat};

/// The service name when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "open-clanker";

/// How long shutting down waits for the last spans to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The tracer provider while traces are exported; taken by [`shutdown`].
static TRACER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);
/// Whether log lines should look for trace ids (only while traces are exported).
static TRACING_ON: AtomicBool = AtomicBool::new(false);

/// Where traces go, if anywhere: the standard variables win over `log.otlp_endpoint`.
pub fn otlp_endpoint(log: &LogConfig) -> Option<String> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .or_else(|| {
            log.otlp_endpoint
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        })
}

fn service_name() -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string())
}

/// An OTLP/gRPC exporter behind a batch processor. Needs a Tokio runtime (the gRPC channel runs
/// on it).
fn tracer_provider(endpoint: &str) -> Result<SdkTracerProvider, String> {
    if !endpoint.starts_with("http://") {
        return Err(format!(
            "{:?} is not a plain http:// URL (TLS to the collector is not built in: export to a local collector)",
            open_clanker_core::redact::redact_url(endpoint)
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Installs the global subscriber: the log output, and the trace exporter when configured. Call
/// inside the Tokio runtime.
pub fn init(log: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| v.parse::<EnvFilter>().ok())
        .or_else(|| log.level.parse::<EnvFilter>().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let endpoint = otlp_endpoint(log);
    let provider = match endpoint.as_deref().map(tracer_provider) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            eprintln!("warning: traces are off: cannot set up the OTLP exporter: {e}");
            None
        }
        None => None,
    };
    // Only the gateway's own spans are exported (never the exporter's, which would loop), at the
    // info level whatever the log level is.
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("open-clanker"))
            .with_filter(
                tracing_subscriber::filter::Targets::new().with_target("open_clanker", Level::INFO),
            )
    });
    let registry = tracing_subscriber::registry().with(otel);
    let result = match log.format {
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .event_format(WithTraceIds(
                        tracing_subscriber::fmt::format()
                            .json()
                            .flatten_event(true)
                            .with_current_span(true),
                    ))
                    .with_filter(filter),
            )
            .try_init(),
    };
    // Already initialised (tests): keep the first subscriber.
    if result.is_ok()
        && let Some(p) = provider
    {
        TRACING_ON.store(true, Ordering::Relaxed);
        *TRACER.lock().unwrap_or_else(PoisonError::into_inner) = Some(p);
        tracing::info!(
            endpoint = %open_clanker_core::redact::redact_url(endpoint.as_deref().unwrap_or_default()),
            service = %service_name(),
            "exporting traces over OTLP/gRPC"
        );
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Ok(v) = std::env::var(name)
                && !v.trim().is_empty()
                && v.trim() != "grpc"
            {
                tracing::warn!(
                    "{name}={v:?}: only OTLP/gRPC is built in (the receiver's port 4317, not 4318); exporting over gRPC"
                );
            }
        }
    }
}

/// Exports the spans still buffered and stops the exporter (at most a few seconds).
pub async fn shutdown() {
    let provider = TRACER.lock().unwrap_or_else(PoisonError::into_inner).take();
    let Some(provider) = provider else { return };
    TRACING_ON.store(false, Ordering::Relaxed);
    // Blocks until the export thread is done; the gRPC channel it uses needs this runtime.
    let flushed =
        tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT)).await;
    match flushed {
        Ok(Ok(())) => tracing::debug!("traces flushed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the last traces could not be exported"),
        Err(e) => tracing::warn!(error = %e, "the last traces could not be exported"),
    }
}

/// The trace and span ids of the innermost exported span around the current event.
fn current_ids() -> Option<(TraceId, SpanId)> {
    if !TRACING_ON.load(Ordering::Relaxed) {
        return None;
    }
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let current = registry.current_span();
        let span = registry.span(current.id()?)?;
        span.scope().find_map(|s| {
            let cx = tracing_opentelemetry::get_otel_context(&s.id(), dispatch)?;
            let sc = cx.span().span_context().clone();
            sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
        })
    })
}

/// The JSON line format with `trace_id` and `span_id` first when the event is inside an exported
/// span.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = current_ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
            ),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, validate};

    #[test]
    fn endpoint_must_be_plain_http() {
        let mut c = Config::default();
        assert!(validate(&c).is_empty());
        c.log.otlp_endpoint = Some("http://127.0.0.1:4317".into());
        assert!(validate(&c).is_empty());
        c.log.otlp_endpoint = Some("collector:4317".into());
        assert_eq!(validate(&c)[0].key, "log.otlp_endpoint");
        c.log.otlp_endpoint = Some("https://user:otlp-PW-1234@collector:4317".into());
        let problem = &validate(&c)[0];
        assert!(!problem.message.contains("otlp-PW-1234"), "{problem:?}");
        c.log.otlp_endpoint = Some("https://collector:4317".into());
        assert_eq!(validate(&c).len(), 1);
    }
}
