//! A request id on every log line: taken from the caller when it is sane, generated otherwise,
//! echoed in `x-request-id`, and carried by the span all handler logs are written in. The same
//! middleware joins the caller's W3C trace (`traceparent`) or starts one, so the span also carries
//! `trace_id` and upstream calls made while serving the request continue that trace.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest};
use tracing::Instrument;

use super::http_metrics;
use crate::tracecontext::{self, TraceContext};

/// Headers a caller may use to correlate; Microsoft services send `client-request-id`.
const INCOMING: [&str; 3] = [
    "x-request-id",
    "client-request-id",
    "x-ms-client-request-id",
];

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn of(request: &HttpRequest) -> String {
        request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default()
    }
}

fn sane(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'))
}

/// The caller's trace, when it sent exactly one valid `traceparent`; anything else is ignored and a
/// new trace starts (the spec's rule: a broken parent must not poison the trace).
fn incoming_trace(request: &ServiceRequest) -> Option<TraceContext> {
    let mut values = request.headers().get_all("traceparent");
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    TraceContext::parse(value.to_str().ok()?)
}

pub async fn middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let id = INCOMING
        .iter()
        .filter_map(|name| request.headers().get(*name))
        .filter_map(|value| value.to_str().ok())
        .find(|value| sane(value))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".into());
    let parent = incoming_trace(&request);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        method = request.method().as_str(),
        route = %route
    );
    // With OTLP export on, the exported span's ids are the request's trace context, so the
    // collector's trace is the one the logs and upstream calls name.
    let trace = crate::telemetry::exported_trace(&span, parent).unwrap_or_else(|| {
        parent
            .map(|parent| parent.child())
            .unwrap_or_else(TraceContext::new_root)
    });
    // The ids are written out in hex only for a span that is logged (not at `warn` and above).
    if !span.is_disabled() {
        span.record("trace_id", tracing::field::display(trace.trace_id_hex()));
        span.record("span_id", tracing::field::display(trace.span_id_hex()));
    }
    let header = HeaderValue::from_str(&id).ok();
    request.extensions_mut().insert(RequestId(id));
    let mut response = tracecontext::scope(trace, next.call(request).instrument(span)).await?;
    http_metrics::record(&route, response.status().as_u16(), started.elapsed());
    if let Some(value) = header {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}
