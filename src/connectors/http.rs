//! The one way connectors speak HTTP to upstream systems: every call is bounded by the decision's
//! deadline and the connector's own timeout, its size is capped, and it leaves an [`UpstreamCall`]
//! record for the audit trail.
//!
//! Resilience lives here, once, instead of in every connector (tower's `Layer` idea without the
//! machinery): idempotent GETs are retried with jittered exponential backoff on connect errors,
//! attempt timeouts, 502/503/504 and 429 (honouring `Retry-After` / `ratelimit-reset`), and a
//! [`CircuitBreaker`] per upstream stops calling a system that keeps failing. Nothing here ever
//! sleeps or starts an attempt that cannot end before the deadline: the deadline is the product.
//!
//! A plain 500 is deliberately not retried: it usually means "this request breaks the server"
//! (a bad query, a bug), which the same request will hit again, while 502/503/504 mean "try later".

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use super::circuit::CircuitSettings;
use super::circuit::{CircuitBreaker, Transition, Verdict};

/// Bodies larger than this are refused: no upstream answer we read is anywhere near it.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A retry is only worth starting with at least this much time left; less and it would be cut
/// short by the deadline before a real upstream could answer.
const MIN_RETRY_BUDGET: Duration = Duration::from_millis(50);

/// What one connector operation did, for the audit record and `pimgate evaluate`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamCall {
    pub connector: &'static str,
    /// e.g. `GET /api/now/table/change_request`; never a secret or a full query string.
    pub operation: String,
    /// `ok`, `not_found`, `http_503`, `timeout`, `rate_limited`, `unreachable`, `malformed`, `circuit_open`,
    /// `auth_failed`, `unavailable`, `wrong_record`
    pub outcome: String,
    pub latency_ms: f64,
    pub cached: bool,
    /// HTTP attempts made, retries included; `0` when the circuit was open.
    pub attempts: u32,
}

/// Why an upstream answer could not be had.
///
/// Two audiences, kept apart so that no connector can leak by accident: `Display` is the sentence a
/// requester may see (it names the system and what went wrong, never a status code, an upstream
/// error code such as `AADSTS…`, a URL, a file path or a body), and [`UpstreamError::detail`] is the
/// operator's (all of that), for the log and the audit record's evidence. Anything that formats an
/// `UpstreamError` into a reason therefore shows only the safe sentence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    #[error("{connector} did not answer in time")]
    Timeout { connector: &'static str },
    #[error("{connector} could not be reached")]
    Unreachable { connector: &'static str },
    #[error("{connector} answered with an error")]
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
    /// `detail` is for the operator only (Entra codes, which secret to check).
    #[error("pimgate could not authenticate to {connector}")]
    Auth {
        connector: &'static str,
        detail: String,
    },
    #[error("the {connector} connector is not configured")]
    NotConfigured { connector: &'static str },
    /// A source pimgate reads locally (the HR file) is gone or unreadable; `detail` names the path.
    #[error("{connector} could not be read")]
    Unavailable {
        connector: &'static str,
        detail: String,
    },
    /// The upstream answered about another record than the one asked for (another ticket number,
    /// issue key or user id), or did not say which record it answered about.
    #[error("{connector} answered with a different record than the one asked for")]
    WrongRecord {
        connector: &'static str,
        asked: String,
        answered: Option<String>,
    },
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
            UpstreamError::Unavailable { .. } => "unavailable",
            UpstreamError::WrongRecord { .. } => "wrong_record",
        }
    }

    /// The system that failed, as rules and metrics name it.
    pub fn connector(&self) -> &'static str {
        match self {
            UpstreamError::Timeout { connector }
            | UpstreamError::Unreachable { connector }
            | UpstreamError::Status { connector, .. }
            | UpstreamError::RateLimited { connector }
            | UpstreamError::Malformed { connector }
            | UpstreamError::CircuitOpen { connector }
            | UpstreamError::Auth { connector, .. }
            | UpstreamError::NotConfigured { connector }
            | UpstreamError::Unavailable { connector, .. }
            | UpstreamError::WrongRecord { connector, .. } => connector,
        }
    }

    /// The operator's account of the failure: what the requester's sentence leaves out (status
    /// codes, Entra error codes, paths, the record numbers involved). For logs and audit evidence
    /// only, never for a reason PIM shows. Never holds a secret: no variant carries one.
    pub fn detail(&self) -> String {
        match self {
            UpstreamError::Status { connector, status } => {
                format!("{connector} answered HTTP {status}")
            }
            UpstreamError::Auth { connector, detail } => {
                format!("pimgate could not authenticate to {connector}: {detail}")
            }
            UpstreamError::Unavailable { connector, detail } => {
                format!("{connector} could not be read: {detail}")
            }
            UpstreamError::WrongRecord {
                connector,
                asked,
                answered: Some(answered),
            } => format!("{connector} answered about `{answered}` when asked for `{asked}`"),
            UpstreamError::WrongRecord {
                connector,
                asked,
                answered: None,
            } => format!(
                "{connector} answered without saying which record it is, when asked for `{asked}`"
            ),
            other => other.to_string(),
        }
    }

    /// A [`UpstreamError::WrongRecord`], logged: an upstream answering about someone or something
    /// else is a bug or a misconfiguration (a proxy, a rewrite rule) the operator must hear about.
    pub fn wrong_record(
        connector: &'static str,
        operation: &str,
        asked: &str,
        answered: Option<&str>,
    ) -> UpstreamError {
        tracing::warn!(
            connector,
            operation,
            asked,
            answered = answered.unwrap_or("(none)"),
            "upstream answered about another record than the one asked for; not using it"
        );
        UpstreamError::WrongRecord {
            connector,
            asked: asked.to_string(),
            answered: answered.map(str::to_string),
        }
    }
}

/// A 404 is an answer ("no such ticket/user"), not a failure: callers decide what it means.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched<T> {
    Found(T),
    NotFound,
}

/// How hard pimgate insists on an answer. The defaults suit a decision budget of a few seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Attempts per call, the first included; `1` turns retries off.
    pub max_attempts: u32,
    /// The backoff before the first retry (before jitter); it doubles with every further retry.
    pub backoff_base_ms: u64,
    /// The largest backoff between two attempts (before jitter).
    pub backoff_max_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff_base_ms: 100,
            backoff_max_ms: 2_000,
        }
    }
}

impl RetrySettings {
    /// Equal jitter: half the exponential step, plus a random share of the other half, so that
    /// pimgate replicas retrying together do not hammer a recovering upstream in lock-step.
    fn backoff(&self, retry: u32) -> Duration {
        let step = self
            .backoff_base_ms
            .saturating_mul(
                1u64.checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u64::MAX),
            )
            .min(self.backoff_max_ms);
        let half = step / 2;
        let jitter = RandomState::new().hash_one(retry) % (half + 1);
        Duration::from_millis(half + jitter)
    }
}

/// One upstream system's HTTP access: its name, client, per-call timeout and failure state.
#[derive(Debug)]
pub struct Upstream {
    pub name: &'static str,
    client: reqwest::Client,
    timeout: Duration,
    retry: RetrySettings,
    circuit: CircuitBreaker,
}

/// What one attempt ended with, and whether another attempt could help.
enum Attempt<T> {
    Done(Result<Fetched<T>, UpstreamError>),
    Retry {
        error: UpstreamError,
        /// The upstream's own "come back in" (`Retry-After`, `ratelimit-reset`).
        after: Option<Duration>,
    },
}

impl Upstream {
    /// An upstream with the default retry and circuit settings.
    pub fn new(name: &'static str, client: reqwest::Client, timeout: Duration) -> Self {
        Self::with_settings(
            name,
            client,
            timeout,
            RetrySettings::default(),
            CircuitSettings::default(),
        )
    }

    pub fn with_settings(
        name: &'static str,
        client: reqwest::Client,
        timeout: Duration,
        retry: RetrySettings,
        circuit: CircuitSettings,
    ) -> Self {
        Self {
            name,
            client,
            timeout,
            retry,
            circuit: CircuitBreaker::new(circuit),
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Whether calls to this upstream currently fail at once; for health output and tests.
    pub fn circuit_is_open(&self) -> bool {
        self.circuit.is_open()
    }

    /// A POST that is a pure read (OPA's data API: the question travels in the body), so it is
    /// retried, traced, capped and recorded exactly like a GET. Never for a call that changes
    /// anything upstream. The body must be buffered (`.json(...)`) so every attempt can resend it.
    pub async fn read_json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        operation: &str,
        deadline: Instant,
    ) -> (Result<Fetched<T>, UpstreamError>, UpstreamCall) {
        self.get_json(request, operation, deadline).await
    }

    /// Sends a GET (built by the caller, with auth headers) and decodes JSON. Only idempotent GETs
    /// come through here, which is what makes retrying them safe. Headers the caller set (auth) are
    /// sent unchanged on every attempt, with a `traceparent` continuing the request's trace.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        operation: &str,
        deadline: Instant,
    ) -> (Result<Fetched<T>, UpstreamError>, UpstreamCall) {
        let started = Instant::now();
        let name = self.name;
        let (result, attempts) = self.call(request, operation, deadline).await;
        let outcome = match &result {
            Ok(Fetched::Found(_)) => "ok".to_string(),
            Ok(Fetched::NotFound) => "not_found".to_string(),
            Err(UpstreamError::Status { status, .. }) => format!("http_{status}"),
            Err(error) => error.outcome().to_string(),
        };
        let elapsed = started.elapsed();
        if let Err(error) = &result {
            tracing::warn!(
                connector = name,
                operation,
                attempts,
                detail = %error.detail(),
                "upstream call failed"
            );
        }
        metrics::counter!("pimgate_upstream_requests_total", "connector" => name, "outcome" => outcome.clone())
            .increment(1);
        metrics::histogram!("pimgate_upstream_request_duration_seconds", "connector" => name)
            .record(elapsed.as_secs_f64());
        let call = UpstreamCall {
            connector: name,
            operation: operation.to_string(),
            outcome,
            latency_ms: elapsed.as_secs_f64() * 1000.0,
            cached: false,
            attempts,
        };
        (result, call)
    }

    /// The retry loop; returns the final result and the number of attempts made.
    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        operation: &str,
        deadline: Instant,
    ) -> (Result<Fetched<T>, UpstreamError>, u32) {
        let name = self.name;
        let (client, request) = request.build_split();
        let mut request = match request {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(connector = name, operation, %error, "upstream request could not be built");
                return (Err(UpstreamError::Unreachable { connector: name }), 0);
            }
        };
        continue_trace(&mut request);
        let max_attempts = self.retry.max_attempts.max(1);
        let mut spare = Some(request);
        let mut attempts = 0;
        let mut last_error = None;
        loop {
            let Some(permit) = self.circuit.try_acquire() else {
                // Opened by this very call's failures: the real cause says more than "circuit open".
                let error = last_error.unwrap_or(UpstreamError::CircuitOpen { connector: name });
                return (Err(error), attempts);
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                let error = last_error.unwrap_or(UpstreamError::Timeout { connector: name });
                return (Err(error), attempts);
            }
            // A GET has no streaming body, so cloning always works; if it ever did not, the
            // original goes out and this attempt is the last.
            let Some(original) = spare.take() else {
                let error = last_error.unwrap_or(UpstreamError::Unreachable { connector: name });
                return (Err(error), attempts);
            };
            spare = original.try_clone();
            attempts += 1;
            let (attempt, verdict) = self
                .attempt::<T>(&client, original, remaining.min(self.timeout))
                .await;
            match permit.report(verdict) {
                Transition::Opened => {
                    metrics::counter!("pimgate_upstream_circuit_open_total", "connector" => name)
                        .increment(1);
                    tracing::warn!(
                        connector = name,
                        cooldown_ms = self.circuit_cooldown_ms(),
                        "upstream keeps failing; circuit opened, calls fail at once until the cooldown ends"
                    );
                }
                Transition::Closed => {
                    tracing::info!(
                        connector = name,
                        "upstream answered the probe; circuit closed"
                    );
                }
                Transition::None => {}
            }
            let (error, after) = match attempt {
                Attempt::Done(result) => return (result, attempts),
                Attempt::Retry { error, after } => (error, after),
            };
            if attempts >= max_attempts {
                return (Err(error), attempts);
            }
            let delay = after.unwrap_or_else(|| self.retry.backoff(attempts));
            let left = deadline.saturating_duration_since(Instant::now());
            if delay.saturating_add(MIN_RETRY_BUDGET.min(self.timeout)) > left {
                tracing::debug!(
                    connector = name,
                    operation,
                    attempts,
                    delay_ms = delay.as_millis() as u64,
                    %error,
                    "no time left for a retry before the deadline"
                );
                return (Err(error), attempts);
            }
            metrics::counter!("pimgate_upstream_retries_total", "connector" => name).increment(1);
            tracing::debug!(
                connector = name,
                operation,
                attempts,
                delay_ms = delay.as_millis() as u64,
                %error,
                "retrying upstream call"
            );
            last_error = Some(error);
            tokio::time::sleep(delay).await;
        }
    }

    fn circuit_cooldown_ms(&self) -> u64 {
        self.circuit.settings().cooldown_ms
    }

    /// One HTTP exchange, headers and body, cut at `budget`.
    async fn attempt<T: DeserializeOwned>(
        &self,
        client: &reqwest::Client,
        request: reqwest::Request,
        budget: Duration,
    ) -> (Attempt<T>, Verdict) {
        let name = self.name;
        let retry = |error| Attempt::Retry { error, after: None };
        let exchange = async {
            let mut response = match client.execute(request).await {
                Ok(response) => response,
                Err(error) if error.is_timeout() => {
                    return (
                        retry(UpstreamError::Timeout { connector: name }),
                        Verdict::Failed,
                    );
                }
                Err(_) => {
                    return (
                        retry(UpstreamError::Unreachable { connector: name }),
                        Verdict::Failed,
                    );
                }
            };
            let status = response.status().as_u16();
            if status != 404 && !(200..=299).contains(&status) {
                // The body of an error answer (an HTML error page, Graph's error object) is what an
                // operator needs; it goes to the log only, never into a reason.
                let body = body_snippet(&mut response).await;
                tracing::warn!(connector = name, status, body = %body, "upstream answered an error status");
            }
            match status {
                404 => return (Attempt::Done(Ok(Fetched::NotFound)), Verdict::Healthy),
                429 => {
                    let after = wait_hint(response.headers());
                    let error = UpstreamError::RateLimited { connector: name };
                    return (Attempt::Retry { error, after }, Verdict::Failed);
                }
                502..=504 => {
                    let after = wait_hint(response.headers());
                    let error = UpstreamError::Status {
                        connector: name,
                        status,
                    };
                    return (Attempt::Retry { error, after }, Verdict::Failed);
                }
                401 | 403 => {
                    let error = UpstreamError::Auth {
                        connector: name,
                        detail: format!("HTTP {status}"),
                    };
                    return (Attempt::Done(Err(error)), Verdict::Healthy);
                }
                200..=299 => {}
                _ => {
                    let error = UpstreamError::Status {
                        connector: name,
                        status,
                    };
                    let verdict = if status >= 500 {
                        Verdict::Failed
                    } else {
                        Verdict::Healthy
                    };
                    return (Attempt::Done(Err(error)), verdict);
                }
            }
            let malformed = || {
                (
                    Attempt::Done(Err(UpstreamError::Malformed { connector: name })),
                    Verdict::Failed,
                )
            };
            if response
                .content_length()
                .is_some_and(|length| length > MAX_RESPONSE_BYTES as u64)
            {
                return malformed();
            }
            let mut body = Vec::new();
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                            return malformed();
                        }
                        body.extend_from_slice(&chunk);
                    }
                    Ok(None) => break,
                    Err(error) if error.is_timeout() => {
                        return (
                            retry(UpstreamError::Timeout { connector: name }),
                            Verdict::Failed,
                        );
                    }
                    Err(_) => {
                        return (
                            retry(UpstreamError::Unreachable { connector: name }),
                            Verdict::Failed,
                        );
                    }
                }
            }
            match serde_json::from_slice(&body) {
                Ok(value) => (Attempt::Done(Ok(Fetched::Found(value))), Verdict::Healthy),
                Err(error) => {
                    let start = &body[..body.len().min(SNIPPET_BYTES)];
                    tracing::warn!(
                        connector = name,
                        %error,
                        body = %printable(start),
                        "upstream answer is not the JSON pimgate expects"
                    );
                    malformed()
                }
            }
        };
        match tokio::time::timeout(budget, exchange).await {
            Ok(ended) => ended,
            Err(_) => (
                retry(UpstreamError::Timeout { connector: name }),
                Verdict::Failed,
            ),
        }
    }
}

/// How much of an unexpected body the log shows: enough to recognise an error page, not a dump.
const SNIPPET_BYTES: usize = 512;

/// The start of an error answer's body, for the log. Reading stops at [`SNIPPET_BYTES`]; a body
/// that fails to arrive yields what came.
async fn body_snippet(response: &mut reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(SNIPPET_BYTES);
    printable(&body)
}

/// Bytes as one log-safe line: invalid UTF-8 replaced, control characters (newlines) as spaces.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Sets `traceparent` to a new span of the request's trace (if one is being served), so the
/// upstream's logs can be joined to pimgate's; one span per call, its retries included.
fn continue_trace(request: &mut reqwest::Request) {
    let Some(trace) = crate::tracecontext::current() else {
        return;
    };
    trace
        .child()
        .inject(&mut HeaderInjector(request.headers_mut()));
}

/// reqwest's header map as an OpenTelemetry carrier; a name or value that is not a valid header is
/// skipped (the propagator writes only well-formed ones).
struct HeaderInjector<'a>(&'a mut reqwest::header::HeaderMap);

impl opentelemetry::propagation::Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// How long the upstream asks us to wait, capped: see [`super::limits::wait_hint`].
fn wait_hint(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    super::limits::wait_hint(headers, chrono::Utc::now())
}

impl UpstreamCall {
    /// The record of an answer served from a connector's cache: no request was sent. Every
    /// connector that caches records its hits this way, so audit records tell them apart.
    pub(crate) fn cached<T>(
        connector: &'static str,
        operation: &str,
        result: &Result<Fetched<T>, UpstreamError>,
    ) -> Self {
        let outcome = match result {
            Ok(Fetched::Found(_)) => "ok",
            Ok(Fetched::NotFound) => "not_found",
            Err(error) => error.outcome(),
        };
        UpstreamCall {
            connector,
            operation: operation.to_string(),
            outcome: outcome.to_string(),
            latency_ms: 0.0,
            cached: true,
            attempts: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> reqwest::header::HeaderMap {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn retry_after_in_seconds_is_read() {
        let hint = wait_hint(&headers(&[("retry-after", "7")]));
        assert_eq!(hint, Some(Duration::from_secs(7)));
    }

    #[test]
    fn retry_after_as_an_http_date_is_the_time_until_that_date() {
        let when = chrono::Utc::now() + chrono::Duration::seconds(20);
        let value = when.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let hint = wait_hint(&headers(&[("retry-after", &value)])).unwrap();
        assert!(
            hint > Duration::from_secs(17) && hint <= Duration::from_secs(20),
            "{hint:?}"
        );
    }

    #[test]
    fn retry_after_in_the_past_means_now() {
        let hint = wait_hint(&headers(&[(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT",
        )]));
        assert_eq!(hint, Some(Duration::ZERO));
    }

    #[test]
    fn pagerduty_ratelimit_reset_is_read_when_retry_after_is_absent() {
        let hint = wait_hint(&headers(&[("ratelimit-reset", "12")]));
        assert_eq!(hint, Some(Duration::from_secs(12)));
        let both = wait_hint(&headers(&[("retry-after", "2"), ("ratelimit-reset", "12")]));
        assert_eq!(both, Some(Duration::from_secs(2)));
    }

    #[test]
    fn hints_are_capped_at_the_longest_wait_pimgate_honours() {
        let cap = Some(super::super::limits::MAX_RETRY_AFTER);
        let huge = u64::MAX.to_string();
        assert_eq!(wait_hint(&headers(&[("retry-after", &huge)])), cap);
        assert_eq!(wait_hint(&headers(&[("ratelimit-reset", &huge)])), cap);
        let far = wait_hint(&headers(&[(
            "retry-after",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        )]));
        assert_eq!(far, cap);
    }

    #[test]
    fn unreadable_hints_are_ignored() {
        assert_eq!(wait_hint(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(wait_hint(&headers(&[])), None);
    }

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let settings = RetrySettings {
            max_attempts: 10,
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
        };
        for _ in 0..50 {
            let first = settings.backoff(1).as_millis();
            let second = settings.backoff(2).as_millis();
            let late = settings.backoff(40).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            assert!((100..=200).contains(&second), "{second}");
            assert!((500..=1_000).contains(&late), "{late}");
        }
    }
}
