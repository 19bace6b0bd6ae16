//! The one way connectors speak HTTP to upstream systems: every call is bounded by the decision's
//! deadline and the connector's own timeout, its size is capped, and it leaves an [`UpstreamCall`]
//! record for the audit trail.
//!
//! PLACEHOLDER (lead): single attempt. Retries with backoff for idempotent GETs, `Retry-After` on 429
//! and the circuit breaker are being added behind this same API.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

/// Bodies larger than this are refused: no upstream answer we read is anywhere near it.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// What one connector operation did, for the audit record and `pimgate evaluate`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamCall {
    pub connector: &'static str,
    /// e.g. `GET /api/now/table/change_request`; never a secret or a full query string.
    pub operation: String,
    /// `ok`, `not_found`, `http_503`, `timeout`, `rate_limited`, `unreachable`, `malformed`, `circuit_open`
    pub outcome: String,
    pub latency_ms: f64,
    pub cached: bool,
    pub attempts: u32,
}

/// Why an upstream answer could not be had. Messages are lower-case sentences a requester may see.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    #[error("{connector} did not answer in time")]
    Timeout { connector: &'static str },
    #[error("{connector} could not be reached")]
    Unreachable { connector: &'static str },
    #[error("{connector} answered HTTP {status}")]
    Status {
        connector: &'static str,
        status: u16,
    },
    #[error("{connector} is rate-limiting pimgate")]
    RateLimited { connector: &'static str },
    #[error("{connector} sent an answer pimgate could not read")]
    Malformed { connector: &'static str },
    #[error("{connector} is failing; pimgate is not calling it for a while")]
    CircuitOpen { connector: &'static str },
    #[error("pimgate could not authenticate to {connector}: {detail}")]
    Auth {
        connector: &'static str,
        detail: String,
    },
    #[error("the {connector} connector is not configured")]
    NotConfigured { connector: &'static str },
}

impl UpstreamError {
    pub fn outcome(&self) -> &'static str {
        match self {
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::Unreachable { .. } => "unreachable",
            UpstreamError::Status { .. } => "http_error",
            UpstreamError::RateLimited { .. } => "rate_limited",
            UpstreamError::Malformed { .. } => "malformed",
            UpstreamError::CircuitOpen { .. } => "circuit_open",
            UpstreamError::Auth { .. } => "auth_failed",
            UpstreamError::NotConfigured { .. } => "not_configured",
        }
    }
}

/// A 404 is an answer ("no such ticket/user"), not a failure: callers decide what it means.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched<T> {
    Found(T),
    NotFound,
}

/// One upstream system's HTTP access: its name, client, per-call timeout and failure state.
#[derive(Debug)]
pub struct Upstream {
    pub name: &'static str,
    client: reqwest::Client,
    timeout: Duration,
}

impl Upstream {
    pub fn new(name: &'static str, client: reqwest::Client, timeout: Duration) -> Self {
        Self {
            name,
            client,
            timeout,
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a GET (built by the caller, with auth headers) and decodes JSON. Only idempotent GETs
    /// come through here, which is what makes retrying them safe.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        operation: &str,
        deadline: Instant,
    ) -> (Result<Fetched<T>, UpstreamError>, UpstreamCall) {
        let started = Instant::now();
        let name = self.name;
        let result = self.attempt(request, deadline).await;
        let outcome = match &result {
            Ok(Fetched::Found(_)) => "ok".to_string(),
            Ok(Fetched::NotFound) => "not_found".to_string(),
            Err(UpstreamError::Status { status, .. }) => format!("http_{status}"),
            Err(error) => error.outcome().to_string(),
        };
        let call = UpstreamCall {
            connector: name,
            operation: operation.to_string(),
            outcome,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            cached: false,
            attempts: 1,
        };
        (result, call)
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<Fetched<T>, UpstreamError> {
        let name = self.name;
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .min(self.timeout);
        if budget.is_zero() {
            return Err(UpstreamError::Timeout { connector: name });
        }
        let exchange = async {
            let mut response = request.send().await.map_err(|error| {
                if error.is_timeout() {
                    UpstreamError::Timeout { connector: name }
                } else {
                    UpstreamError::Unreachable { connector: name }
                }
            })?;
            let status = response.status();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(Fetched::NotFound);
            }
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                return Err(UpstreamError::RateLimited { connector: name });
            }
            if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                return Err(UpstreamError::Auth {
                    connector: name,
                    detail: format!("HTTP {}", status.as_u16()),
                });
            }
            if !status.is_success() {
                return Err(UpstreamError::Status {
                    connector: name,
                    status: status.as_u16(),
                });
            }
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|_| UpstreamError::Unreachable { connector: name })?
            {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(UpstreamError::Malformed { connector: name });
                }
                body.extend_from_slice(&chunk);
            }
            serde_json::from_slice(&body)
                .map(Fetched::Found)
                .map_err(|_| UpstreamError::Malformed { connector: name })
        };
        tokio::time::timeout(budget, exchange)
            .await
            .unwrap_or(Err(UpstreamError::Timeout { connector: name }))
    }
}
