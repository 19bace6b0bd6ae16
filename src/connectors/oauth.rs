//! The one OAuth 2.0 client-credentials token source every connector that needs an app token uses
//! (Microsoft Graph, ServiceNow OAuth).
//!
//! Why one: a token cache is easy to get subtly wrong (a stampede on the token endpoint after
//! start-up, a token that dies in flight, a failed endpoint asked again by every lookup, a revoked
//! token reused until it would have expired, an `expires_in` of `u64::MAX`). [`TokenSource`] does
//! each of these once:
//!
//! - **single flight**: the slot's lock is held while a token is fetched, so concurrent callers
//!   wait for that one fetch instead of each asking for their own;
//! - **capped lifetime, refresh margin**: `expires_in` is read and clamped by the connector's
//!   parser ([`super::limits::token_lifetime`]); the token is refreshed `margin` before it ends but
//!   never before half of it has passed ([`super::limits::refresh_after`]); a connector may shorten
//!   it further per token (Graph: a token lacking a permission is replaced within minutes);
//! - **remembered failure**: a failed token request is remembered for
//!   [`super::limits::FAILED_TOKEN_TTL`], so lookups in that time fail at once with the same error
//!   (recorded as a cached call) instead of each waiting for an endpoint that just failed; a
//!   timeout cut short by the caller's own deadline says nothing about the endpoint and is not
//!   remembered;
//! - **401 → invalidate**: a caller whose token an API rejected calls [`TokenSource::invalidate`]
//!   with the token's generation; exactly that token (not a newer one) is never handed out again.
//!   This takes no lock, so it never waits behind a fetch.
//!
//! Every token request (and every remembered failure answered) becomes one [`UpstreamCall`] with
//! the connector's name and token operation, for the audit record. The token itself is a
//! [`Secret`]: never logged, never part of an error or a `Debug` output.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::http::{MAX_RESPONSE_BYTES, UpstreamCall, UpstreamError};
use super::limits::{FAILED_TOKEN_TTL, instant_after, refresh_after};
use super::secrets::Secret;
use super::ticket::read_capped;

/// How a client proves who it is in a token request: the form parameters after `grant_type`,
/// `client_id` and `scope`. A client assertion is made (or re-read) for every request.
#[async_trait]
pub trait ClientProof: fmt::Debug + Send + Sync {
    /// The parameters for one token request, e.g. `client_secret`, or `client_assertion_type` and
    /// `client_assertion`.
    async fn parameters(&self) -> Result<Vec<(&'static str, Secret)>, UpstreamError>;
}

/// `client_secret=…`: the simplest proof.
#[derive(Debug, Clone)]
pub struct ClientSecret(pub Secret);

#[async_trait]
impl ClientProof for ClientSecret {
    async fn parameters(&self) -> Result<Vec<(&'static str, Secret)>, UpstreamError> {
        Ok(vec![("client_secret", self.0.clone())])
    }
}

/// The token endpoint's answer (status and body) as an access token and its clamped lifetime; each
/// connector's pure `parse_token_answer`, so vendor error shapes stay with the vendor.
pub type ParseAnswer = fn(u16, &[u8]) -> Result<(Secret, Duration), UpstreamError>;

/// What a connector learns from a new token (Graph: its grants) and how much sooner than the
/// refresh margin it wants it replaced (`None`: no sooner).
pub type Inspect<M> = fn(&Secret) -> (M, Option<Duration>);

/// Where and how to ask for tokens; everything [`TokenSource::new`] needs.
#[derive(Debug, Clone)]
pub struct TokenEndpoint {
    /// The connector's name in upstream call records and errors.
    pub connector: &'static str,
    /// The token operation in upstream call records, e.g. `POST /oauth_token.do`.
    pub operation: &'static str,
    /// The system's name in log lines, e.g. `Microsoft Graph`.
    pub system: &'static str,
    pub url: String,
    pub client_id: String,
    /// `scope`, when the endpoint wants one (Entra does, ServiceNow does not).
    pub scope: Option<String>,
    /// The per-call timeout a token request gets (less when the caller's deadline is nearer).
    pub timeout: Duration,
    /// How long before its end a token is replaced.
    pub margin: Duration,
}

/// A token handed to one caller.
#[derive(Debug, Clone)]
pub struct Token<M> {
    pub value: Secret,
    /// Pass to [`TokenSource::invalidate`] if the API rejects this token.
    pub generation: u64,
    /// Fetched for this caller: a rejection then means missing permissions, not a stale token.
    pub fresh: bool,
    /// What [`Inspect`] read from it.
    pub meta: M,
}

enum Slot<M> {
    Empty,
    Valid {
        value: Secret,
        refresh_at: Instant,
        generation: u64,
        meta: M,
    },
    /// The last token request failed: until `until`, callers get this error at once.
    Failed {
        error: UpstreamError,
        until: Instant,
    },
}

/// A cached, single-flight OAuth client-credentials token. See the module documentation.
pub struct TokenSource<M = ()> {
    endpoint: TokenEndpoint,
    client: reqwest::Client,
    proof: Box<dyn ClientProof>,
    parse: ParseAnswer,
    inspect: Inspect<M>,
    slot: Mutex<(Slot<M>, u64)>,
    /// The newest generation a caller saw rejected; tokens up to it are never handed out again.
    rejected: AtomicU64,
}

impl<M> fmt::Debug for TokenSource<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("url", &self.endpoint.url)
            .field("client_id", &self.endpoint.client_id)
            .field("proof", &self.proof)
            .finish_non_exhaustive()
    }
}

fn no_meta(_: &Secret) -> ((), Option<Duration>) {
    ((), None)
}

impl TokenSource<()> {
    /// A source whose tokens carry nothing a connector needs to read.
    pub fn new(
        endpoint: TokenEndpoint,
        client: reqwest::Client,
        proof: Box<dyn ClientProof>,
        parse: ParseAnswer,
    ) -> Self {
        TokenSource::inspecting(endpoint, client, proof, parse, no_meta)
    }
}

impl<M: Clone + Send + Sync> TokenSource<M> {
    /// A source that reads each new token with `inspect` (and hands what it read out with it).
    pub fn inspecting(
        endpoint: TokenEndpoint,
        client: reqwest::Client,
        proof: Box<dyn ClientProof>,
        parse: ParseAnswer,
        inspect: Inspect<M>,
    ) -> Self {
        TokenSource {
            endpoint,
            client,
            proof,
            parse,
            inspect,
            slot: Mutex::new((Slot::Empty, 0)),
            rejected: AtomicU64::new(0),
        }
    }

    /// A valid token: the cached one, or a new one fetched while holding the lock. Every token
    /// request made (or remembered failure answered) is appended to `calls`.
    pub async fn token(
        &self,
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Token<M>, UpstreamError> {
        let connector = self.endpoint.connector;
        let Ok(mut slot) = tokio::time::timeout_at(deadline, self.slot.lock()).await else {
            calls.push(self.call("timeout".to_string(), 0.0, false));
            return Err(UpstreamError::Timeout { connector });
        };
        let now = Instant::now();
        match &slot.0 {
            Slot::Valid {
                value,
                refresh_at,
                generation,
                meta,
            } if now < *refresh_at && *generation > self.rejected.load(Ordering::Acquire) => {
                return Ok(Token {
                    value: value.clone(),
                    generation: *generation,
                    fresh: false,
                    meta: meta.clone(),
                });
            }
            Slot::Failed { error, until } if now < *until => {
                calls.push(self.call(outcome(Some(error)), 0.0, true));
                return Err(error.clone());
            }
            _ => {}
        }
        slot.0 = Slot::Empty;
        let budget = deadline
            .saturating_duration_since(now)
            .min(self.endpoint.timeout);
        // A timeout cut short by the caller's own deadline says nothing about the endpoint, so only
        // a request that had the whole per-call timeout is remembered as failed.
        let full_budget = budget >= self.endpoint.timeout;
        let started = Instant::now();
        let result = if budget.is_zero() {
            Err(UpstreamError::Timeout { connector })
        } else {
            tokio::time::timeout(budget, self.fetch())
                .await
                .unwrap_or(Err(UpstreamError::Timeout { connector }))
        };
        calls.push(self.call(
            outcome(result.as_ref().err()),
            started.elapsed().as_secs_f64() * 1000.0,
            false,
        ));
        let (value, lifetime) = match result {
            Ok(token) => token,
            Err(error) => {
                tracing::warn!(
                    connector,
                    operation = self.endpoint.operation,
                    detail = %error.detail(),
                    "{} token request failed",
                    self.endpoint.system
                );
                if full_budget || !matches!(error, UpstreamError::Timeout { .. }) {
                    slot.0 = Slot::Failed {
                        error: error.clone(),
                        until: instant_after(Instant::now(), FAILED_TOKEN_TTL),
                    };
                }
                return Err(error);
            }
        };
        let (meta, sooner) = (self.inspect)(&value);
        let mut refresh_in = refresh_after(lifetime, self.endpoint.margin);
        if let Some(sooner) = sooner {
            refresh_in = refresh_in.min(sooner);
        }
        slot.1 += 1;
        let generation = slot.1;
        slot.0 = Slot::Valid {
            value: value.clone(),
            refresh_at: instant_after(Instant::now(), refresh_in),
            generation,
            meta: meta.clone(),
        };
        Ok(Token {
            value,
            generation,
            fresh: true,
            meta,
        })
    }

    /// The token of `generation` was rejected (HTTP 401): it is never handed out again, and the
    /// next caller fetches a new one. Takes no lock: a fetch in progress is not waited for.
    pub fn invalidate(&self, generation: u64) {
        self.rejected.fetch_max(generation, Ordering::AcqRel);
    }

    /// One client-credentials request: the form, the POST, the capped body, the parser.
    async fn fetch(&self) -> Result<(Secret, Duration), UpstreamError> {
        let connector = self.endpoint.connector;
        let proof = self.proof.parameters().await?;
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &self.endpoint.client_id);
            if let Some(scope) = &self.endpoint.scope {
                form.append_pair("scope", scope);
            }
            for (name, value) in &proof {
                form.append_pair(name, value.expose());
            }
            form.finish()
        };
        let response = self
            .client
            .post(&self.endpoint.url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|error| {
                if error.is_timeout() {
                    UpstreamError::Timeout { connector }
                } else {
                    UpstreamError::Unreachable { connector }
                }
            })?;
        let status = response.status().as_u16();
        let body = read_capped(response, MAX_RESPONSE_BYTES)
            .await
            .ok_or(UpstreamError::Malformed { connector })?;
        (self.parse)(status, &body)
    }

    fn call(&self, outcome: String, latency_ms: f64, cached: bool) -> UpstreamCall {
        UpstreamCall {
            connector: self.endpoint.connector,
            operation: self.endpoint.operation.to_string(),
            outcome,
            latency_ms,
            cached,
            attempts: if cached { 0 } else { 1 },
        }
    }
}

/// A token request's outcome as upstream call records spell it.
fn outcome(error: Option<&UpstreamError>) -> String {
    match error {
        None => "ok".to_string(),
        Some(UpstreamError::Status { status, .. }) => format!("http_{status}"),
        Some(error) => error.outcome().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_string_contains, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn parse(status: u16, body: &[u8]) -> Result<(Secret, Duration), UpstreamError> {
        if status != 200 {
            return Err(UpstreamError::Status {
                connector: "test",
                status,
            });
        }
        let text = String::from_utf8_lossy(body).to_string();
        Ok((Secret::new(text), Duration::from_secs(3600)))
    }

    fn source(server: &MockServer) -> TokenSource {
        TokenSource::new(
            TokenEndpoint {
                connector: "test",
                operation: "POST /token",
                system: "Test",
                url: format!("{}/token", server.uri()),
                client_id: "client".to_string(),
                scope: Some("api/.default".to_string()),
                timeout: Duration::from_secs(2),
                margin: Duration::from_secs(60),
            },
            reqwest::Client::new(),
            Box::new(ClientSecret(Secret::new("s3cret"))),
            parse,
        )
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_token_request_with_the_documented_form() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains("grant_type=client_credentials"))
            .and(body_string_contains("client_id=client"))
            .and(body_string_contains("scope=api%2F.default"))
            .and(body_string_contains("client_secret=s3cret"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string("token-1")
                    .set_delay(Duration::from_millis(50)),
            )
            .expect(1)
            .mount(&server)
            .await;
        let source = source(&server);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (first, second) =
            tokio::join!(source.token(soon(), &mut a), source.token(soon(), &mut b));
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first.value.expose(), "token-1");
        assert_eq!(second.value.expose(), "token-1");
        assert_eq!(a.len() + b.len(), 1, "{a:?} {b:?}");
        assert!(first.fresh != second.fresh);
        assert!(!format!("{source:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn a_failed_token_request_is_answered_from_memory_with_a_cached_record() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .expect(1)
            .mount(&server)
            .await;
        let source = source(&server);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        let one = source.token(soon(), &mut first).await.unwrap_err();
        let two = source.token(soon(), &mut second).await.unwrap_err();
        assert_eq!(one, two);
        assert_eq!(first[0].outcome, "http_503");
        assert!(!first[0].cached && first[0].attempts == 1);
        assert_eq!(second[0].outcome, "http_503");
        assert!(second[0].cached && second[0].attempts == 0);
    }

    #[tokio::test]
    async fn an_invalidated_token_is_replaced_and_a_newer_one_is_kept() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string("old"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string("new"))
            .expect(1)
            .mount(&server)
            .await;
        let source = source(&server);
        let mut calls = Vec::new();
        let old = source.token(soon(), &mut calls).await.unwrap();
        source.invalidate(old.generation);
        let new = source.token(soon(), &mut calls).await.unwrap();
        assert_eq!(new.value.expose(), "new");
        assert!(new.fresh);
        // A late rejection of the old token does not drop the new one.
        source.invalidate(old.generation);
        let again = source.token(soon(), &mut calls).await.unwrap();
        assert_eq!(again.value.expose(), "new");
        assert!(!again.fresh);
        assert_eq!(calls.len(), 2, "{calls:?}");
    }
}
