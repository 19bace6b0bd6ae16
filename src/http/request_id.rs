//! A request id on every log line: taken from the caller when it is sane, generated otherwise,
//! echoed in `x-request-id`, and carried by the span all handler logs are written in.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest};
use tracing::Instrument;

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
    request.extensions_mut().insert(RequestId(id.clone()));
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".into());
    let method = request.method().to_string();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let mut response = next.call(request).instrument(span).await?;
    let status = response.status().as_u16().to_string();
    metrics::counter!("pimgate_http_requests_total", "route" => route.clone(), "status" => status.clone())
        .increment(1);
    metrics::histogram!("pimgate_http_request_duration_seconds", "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}
