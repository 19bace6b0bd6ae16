//! Logging: JSON lines for production, human-readable for development; always to stderr, so stdout
//! stays free for the audit stream. Optionally, spans are also exported to an OpenTelemetry
//! collector over OTLP/HTTP (`[tracing] endpoint`), in the same W3C trace the logs name.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::settings::{LogFormat, LogSettings, TracingSettings};
use crate::tracecontext::TraceContext;

/// Set once when export is on; kept so [`shutdown`] can flush the spans still batched.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global subscriber once; later calls (tests spawning several apps) are no-ops.
/// An exporter that cannot be built is reported on stderr and pimgate runs without export:
/// tracing is an aid, never a reason to refuse PIM's requests.
pub fn init(settings: &LogSettings, tracing: &TracingSettings) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .or_else(|| EnvFilter::try_new(&settings.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_span_events(FmtSpan::NONE);
    let mut layers: Vec<BoxedLayer> = vec![match settings.format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
        LogFormat::Pretty => fmt.with_target(false).boxed(),
    }];
    let mut provider = None;
    if tracing.enabled() {
        match build_provider(tracing) {
            Ok(built) => {
                let tracer = built.tracer("pimgate");
                layers.push(tracing_opentelemetry::layer().with_tracer(tracer).boxed());
                provider = Some(built);
            }
            Err(error) => eprintln!("pimgate: trace export is off: {error}"),
        }
    }
    // try_init fails only when a subscriber is already installed, which is fine; the provider
    // is kept only when its layer was installed, so `shutdown` never waits on an unused one.
    if tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init()
        .is_ok()
        && let Some(provider) = provider
    {
        let _ = PROVIDER.set(provider);
        tracing::info!(endpoint = %tracing.traces_url(), "exporting spans over otlp");
    }
}

fn build_provider(
    settings: &TracingSettings,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(settings.traces_url())
        .with_timeout(Duration::from_millis(settings.timeout_ms))
        .build()?;
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    // The batch processor exports from its own thread, off the request path.
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The trace context of `span` as exported, continuing `parent` (the caller's `traceparent`) when
/// there is one, so the exported trace, the logs and upstream `traceparent`s share one trace id.
/// `None` when export is off: the caller then picks ids itself.
pub fn exported_trace(span: &tracing::Span, parent: Option<TraceContext>) -> Option<TraceContext> {
    PROVIDER.get()?;
    if let Some(parent) = parent {
        let remote = parent.to_span_context();
        // Fails only when the span has already started, which a fresh span has not.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    own.is_valid()
        .then(|| TraceContext::from_span_context(&own))
}

/// Flushes the spans still batched and stops the exporter; a no-op when export is off. Blocking
/// (the exporter runs on its own thread), so it runs on tokio's blocking pool.
pub async fn shutdown() {
    let Some(provider) = PROVIDER.get() else {
        return;
    };
    let provider = provider.clone();
    let outcome = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    if let Ok(Err(error)) = outcome {
        eprintln!("pimgate: flushing spans failed: {error}");
    }
}
