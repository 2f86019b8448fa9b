//! The server's log, and optional trace export (OpenTelemetry, OTLP over HTTP with JSON
//! bodies; off unless `otlp_endpoint` is set). Exported: a `request` span per API request
//! (method, route, status, correlation id) and the writer's `commit` span per group commit
//! (authority, events, the correlation ids of the requests it commits). The correlation id
//! (`X-Correlation-Id`, made here when a request has none, and returned in the answer) is
//! what joins a request to its commit: the commit carries every id of its batch.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The header that carries a request's correlation id.
pub const CORRELATION_ID: &str = "x-correlation-id";

/// The running trace export; [`TraceExport::shutdown`] sends what is still buffered.
pub struct TraceExport {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl TraceExport {
    pub fn enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still buffered and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// Starts the log (standard output, filtered by `OCHERED_LOG`, default `info`) and, with an
/// endpoint (e.g. `http://collector:4318`), the export of the request and commit spans to
/// `{endpoint}/v1/traces`. Does nothing when a log is already running (tests).
pub fn init(otlp_endpoint: Option<&str>) -> anyhow::Result<TraceExport> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("OCHERED_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: under systemd the journal would keep the escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let log = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_filter(filter);
    let Some(endpoint) = otlp_endpoint else {
        let _ = tracing_subscriber::registry().with(log).try_init();
        return Ok(TraceExport { provider: None });
    };
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    // The exporter's blocking HTTP client may not be made (nor dropped) on the runtime's
    // threads; the batch processor sends from a thread of its own.
    let built = std::thread::spawn(move || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
            .with_endpoint(url)
            .build()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("otlp_endpoint: the exporter could not be built"))?;
    let exporter = built.map_err(|e| anyhow::anyhow!("otlp_endpoint: {e}"))?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("ochered")
                .build(),
        )
        .build();
    // Only the server's own spans (debug level, so that the log does not show them unless
    // asked): requests and commits.
    let spans = tracing_subscriber::filter::Targets::new()
        .with_target("ochered_api", tracing::Level::DEBUG)
        .with_target("ochered_writer", tracing::Level::DEBUG);
    let export = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("ochered"))
        .with_filter(spans);
    let _ = tracing_subscriber::registry()
        .with(log)
        .with(export)
        .try_init();
    tracing::info!(endpoint, "exporting request and commit spans (OTLP)");
    Ok(TraceExport {
        provider: Some(provider),
    })
}

/// Middleware (with trace export only): the request's span, and its correlation id, made
/// when the request has none so that every write joins its commit.
pub async fn request_span(mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned);
    let correlation_id = match given {
        Some(id) => id,
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            // Made only for a request without one: a malformed id is left for the write to
            // refuse (422), never silently replaced.
            if !req.headers().contains_key(CORRELATION_ID) {
                if let Ok(value) = HeaderValue::from_str(&id) {
                    req.headers_mut().insert(CORRELATION_ID, value);
                }
            }
            id
        }
    };
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let span = tracing::debug_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        correlation_id = %correlation_id,
    );
    let mut response = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert(CORRELATION_ID, value);
    }
    response
}
