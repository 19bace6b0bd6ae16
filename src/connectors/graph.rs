//! Microsoft Graph: the requester's directory profile (enabled, leave date, employee type, department)
//! read with an app-only token from Microsoft Entra (client secret, certificate or workload identity).
//!
//! The token is fetched once and shared until shortly before it expires; only one fetch runs at a
//! time so a burst of decisions after start-up does not stampede the token endpoint. It is never
//! logged and never part of an error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::cache::{CacheSettings, TtlCache};
use super::http::{
    CircuitSettings, Fetched, MAX_RESPONSE_BYTES, RetrySettings, Upstream, UpstreamCall,
    UpstreamError,
};
use super::secrets::{Secret, SecretRef};
use super::{BuildContext, UserProfile};
use crate::settings::{SettingsProblem, check_fetch_url};

/// The name in upstream call records and error sentences.
pub const CONNECTOR: &str = "graph";

/// What pimgate reads about a user; nothing more, so the app needs only `User.Read.All` (plus
/// `User-LifeCycleInfo.Read.All` for the leave date).
const USER_SELECT: &str = "id,userPrincipalName,mail,displayName,accountEnabled,employeeLeaveDateTime,employeeType,department";

const USER_OPERATION: &str = "GET /v1.0/users/{id}";
const TOKEN_OPERATION: &str = "POST /oauth2/v2.0/token";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Where the AKS workload identity webhook tells pods their projected service-account token lives.
const FEDERATED_TOKEN_ENV: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// Client assertions are single-use proofs; Entra's guidance is a lifetime of 5 to 10 minutes.
const ASSERTION_LIFETIME_SECONDS: i64 = 300;

/// `[connectors.graph]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSettings {
    /// Defaults to `auth.tenant_id`.
    pub tenant_id: Option<String>,
    /// The application (client) id of pimgate's app registration.
    pub client_id: Option<String>,
    /// Exactly one of `client_secret`, `certificate`, `federated_token_file` (or the
    /// `AZURE_FEDERATED_TOKEN_FILE` environment variable when none is given).
    pub client_secret: Option<SecretRef>,
    pub certificate: Option<CertificateRef>,
    /// A projected service-account token (AKS workload identity), re-read on every token fetch
    /// because the kubelet rotates it.
    pub federated_token_file: Option<PathBuf>,
    pub authority_url: Option<String>,
    pub graph_url: Option<String>,
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub cache: CacheSettings,
    /// Retries of idempotent GETs (attempts, backoff); defaults suit most systems.
    #[serde(default)]
    pub retry: RetrySettings,
    /// When to stop calling this system for a while after repeated failures.
    #[serde(default)]
    pub circuit: CircuitSettings,
}

/// `certificate = { file = "/mnt/secrets/pimgate.pem" }`: one PEM file with the unencrypted private
/// key and the certificate uploaded to the app registration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRef {
    pub file: PathBuf,
}

/// How pimgate proves it is the app. `Debug` names the kind only.
enum Credential {
    Secret(Secret),
    Certificate {
        key: jsonwebtoken::EncodingKey,
        /// Base64url SHA-256 thumbprint of the certificate's DER encoding (`x5t#S256`).
        thumbprint_s256: String,
    },
    FederatedTokenFile(PathBuf),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Secret(_) => f.write_str("ClientSecret(***)"),
            Credential::Certificate {
                thumbprint_s256, ..
            } => write!(f, "Certificate(x5t#S256={thumbprint_s256})"),
            Credential::FederatedTokenFile(path) => {
                write!(f, "FederatedTokenFile({})", path.display())
            }
        }
    }
}

struct CachedToken {
    value: Secret,
    refresh_at: Instant,
    /// Lets a caller that saw this token rejected drop exactly it, not a newer one.
    generation: u64,
}

#[derive(Default)]
struct TokenSlot {
    current: Option<CachedToken>,
    generation: u64,
}

/// A token handed to one Graph call.
struct Lease {
    value: Secret,
    generation: u64,
    /// Fetched for this call: a rejection then means missing permissions, not a stale token.
    fresh: bool,
}

pub struct Graph {
    upstream: Upstream,
    tenant_id: String,
    client_id: String,
    credential: Credential,
    token_url: String,
    scope: String,
    graph_url: String,
    timeout: Duration,
    token: Mutex<TokenSlot>,
    users: TtlCache<UserProfile>,
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .field("token_url", &self.token_url)
            .field("graph_url", &self.graph_url)
            .field("timeout", &self.timeout)
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}

fn problem(key: &str, message: impl Into<String>, fix: &str) -> SettingsProblem {
    super::settings_problem("graph", key, message, fix)
}

/// Tenant ids are GUIDs or verified domain names; anything else would change the token URL's path.
fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

impl Graph {
    pub fn new(
        settings: &GraphSettings,
        context: &BuildContext,
    ) -> Result<Self, Vec<SettingsProblem>> {
        let mut problems = Vec::new();
        let tenant_id = settings
            .tenant_id
            .clone()
            .unwrap_or_else(|| context.tenant_id.clone())
            .trim()
            .to_string();
        if !valid_tenant(&tenant_id) {
            problems.push(problem(
                "tenant_id",
                format!("`{tenant_id}` is not a tenant id"),
                "set `auth.tenant_id` or `connectors.graph.tenant_id` to the directory (tenant) GUID",
            ));
        }
        let client_id = settings
            .client_id
            .clone()
            .unwrap_or_default()
            .trim()
            .to_string();
        if client_id.is_empty() {
            problems.push(problem(
                "client_id",
                "is missing",
                "set it to the application (client) id of pimgate's app registration",
            ));
        }
        let authority = settings
            .authority_url
            .clone()
            .unwrap_or_else(|| "https://login.microsoftonline.com".to_string());
        let authority = authority.trim_end_matches('/').to_string();
        if let Err(message) = check_fetch_url(&authority) {
            problems.push(problem(
                "authority_url",
                message,
                "use https, e.g. `https://login.microsoftonline.com`",
            ));
        }
        let graph_url = settings
            .graph_url
            .clone()
            .unwrap_or_else(|| "https://graph.microsoft.com".to_string());
        let graph_url = graph_url.trim_end_matches('/').to_string();
        if let Err(message) = check_fetch_url(&graph_url) {
            problems.push(problem(
                "graph_url",
                message,
                "use https, e.g. `https://graph.microsoft.com`",
            ));
        }
        let timeout_ms = settings.timeout_ms.unwrap_or(2000);
        if timeout_ms == 0 {
            problems.push(problem(
                "timeout_ms",
                "is zero",
                "give a per-call timeout in milliseconds, e.g. 2000",
            ));
        }
        let credential = match credential(settings) {
            Ok(credential) => Some(credential),
            Err(found) => {
                problems.extend(found);
                None
            }
        };
        let Some(credential) = credential else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let timeout = Duration::from_millis(timeout_ms);
        Ok(Graph {
            upstream: Upstream::with_settings(
                CONNECTOR,
                context.http.clone(),
                timeout,
                settings.retry,
                settings.circuit,
            ),
            token_url: format!("{authority}/{tenant_id}/oauth2/v2.0/token"),
            scope: format!("{graph_url}/.default"),
            tenant_id,
            client_id,
            credential,
            graph_url,
            timeout,
            token: Mutex::new(TokenSlot::default()),
            users: TtlCache::with_name("graph_users", settings.cache),
        })
    }

    /// The user with this object id (or UPN), from the cache or Graph. Every Graph or token call
    /// made (or answered from the cache) is returned for the audit record.
    pub async fn user(
        &self,
        id: &str,
        deadline: Instant,
    ) -> (
        Result<Fetched<UserProfile>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        let mut calls = Vec::new();
        let key = id.trim().to_ascii_lowercase();
        let (result, cached) = self
            .users
            .get_or_fetch(&key, self.fetch_user(id.trim(), deadline, &mut calls))
            .await;
        if cached {
            calls.push(UpstreamCall {
                connector: CONNECTOR,
                operation: USER_OPERATION.to_string(),
                outcome: match &result {
                    Ok(Fetched::NotFound) => "not_found".to_string(),
                    _ => "ok".to_string(),
                },
                latency_ms: 0.0,
                cached: true,
                attempts: 0,
            });
        }
        (result, calls)
    }

    async fn fetch_user(
        &self,
        id: &str,
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Fetched<UserProfile>, UpstreamError> {
        let mut url =
            reqwest::Url::parse(&self.graph_url).map_err(|_| UpstreamError::Unreachable {
                connector: CONNECTOR,
            })?;
        url.path_segments_mut()
            .map_err(|_| UpstreamError::Unreachable {
                connector: CONNECTOR,
            })?
            .pop_if_empty()
            .extend(["v1.0", "users", id]);
        url.set_query(Some(&format!("$select={USER_SELECT}")));
        let refused = UpstreamError::Auth {
            connector: CONNECTOR,
            detail: "Microsoft Graph refused the app's token; grant it User.Read.All (and User-LifeCycleInfo.Read.All) with admin consent".to_string(),
        };
        for _ in 0..2 {
            let lease = self.lease(deadline, calls).await?;
            let request = self
                .upstream
                .client()
                .get(url.clone())
                .bearer_auth(lease.value.expose())
                .header(reqwest::header::ACCEPT, "application/json");
            let (result, call) = self
                .upstream
                .get_json::<UserProfile>(request, USER_OPERATION, deadline)
                .await;
            calls.push(call);
            match result {
                Err(UpstreamError::Auth { .. }) => {
                    self.drop_token(lease.generation).await;
                    // A cached token may have been revoked or outlived its permissions: one retry
                    // with a fresh token. A fresh token refused means missing permissions.
                    if lease.fresh {
                        return Err(refused);
                    }
                }
                other => return other,
            }
        }
        Err(refused)
    }

    /// An app-only Graph token for callers outside the decision path (`pimgate onboard`), fetched
    /// and cached exactly as the `user` lookups' token. The caller must never print it.
    pub async fn access_token(&self, deadline: Instant) -> Result<Secret, UpstreamError> {
        let mut calls = Vec::new();
        self.lease(deadline, &mut calls)
            .await
            .map(|lease| lease.value)
    }

    /// Graph's base URL (no trailing slash), so other callers address the same cloud.
    pub fn graph_url(&self) -> &str {
        &self.graph_url
    }

    /// The tenant the token is for.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    async fn drop_token(&self, generation: u64) {
        let mut slot = self.token.lock().await;
        if slot
            .current
            .as_ref()
            .is_some_and(|token| token.generation == generation)
        {
            slot.current = None;
        }
    }

    /// A valid token: the cached one, or a new one fetched while holding the lock so concurrent
    /// callers wait for one fetch instead of each making their own.
    async fn lease(
        &self,
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Lease, UpstreamError> {
        let until = deadline.min(Instant::now() + self.timeout);
        let work = async {
            let mut slot = self.token.lock().await;
            if let Some(token) = &slot.current
                && Instant::now() < token.refresh_at
            {
                return Ok(Lease {
                    value: token.value.clone(),
                    generation: token.generation,
                    fresh: false,
                });
            }
            slot.current = None;
            let started = Instant::now();
            let result = self.fetch_token(until).await;
            calls.push(UpstreamCall {
                connector: CONNECTOR,
                operation: TOKEN_OPERATION.to_string(),
                outcome: match &result {
                    Ok(_) => "ok".to_string(),
                    Err(UpstreamError::Status { status, .. }) => format!("http_{status}"),
                    Err(error) => error.outcome().to_string(),
                },
                latency_ms: started.elapsed().as_secs_f64() * 1000.0,
                cached: false,
                attempts: 1,
            });
            let (value, lifetime) = result?;
            slot.generation += 1;
            let generation = slot.generation;
            let margin = (lifetime / 10).min(Duration::from_secs(300));
            slot.current = Some(CachedToken {
                value: value.clone(),
                refresh_at: Instant::now() + lifetime.saturating_sub(margin),
                generation,
            });
            Ok(Lease {
                value,
                generation,
                fresh: true,
            })
        };
        match tokio::time::timeout_at(until, work).await {
            Ok(result) => result,
            Err(_) => {
                calls.push(UpstreamCall {
                    connector: CONNECTOR,
                    operation: TOKEN_OPERATION.to_string(),
                    outcome: "timeout".to_string(),
                    latency_ms: 0.0,
                    cached: false,
                    attempts: 1,
                });
                Err(UpstreamError::Timeout {
                    connector: CONNECTOR,
                })
            }
        }
    }

    /// One client-credentials request to the tenant's token endpoint.
    async fn fetch_token(&self, until: Instant) -> Result<(Secret, Duration), UpstreamError> {
        let proof = match &self.credential {
            Credential::Secret(secret) => ("client_secret", secret.clone()),
            Credential::Certificate {
                key,
                thumbprint_s256,
            } => (
                "client_assertion",
                Secret::new(self.client_assertion(key, thumbprint_s256)?),
            ),
            Credential::FederatedTokenFile(path) => {
                ("client_assertion", read_federated_token(path).await?)
            }
        };
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &self.client_id)
                .append_pair("scope", &self.scope);
            if proof.0 == "client_assertion" {
                form.append_pair("client_assertion_type", ASSERTION_TYPE);
            }
            form.append_pair(proof.0, proof.1.expose());
            form.finish()
        };
        let budget = until.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            return Err(UpstreamError::Timeout {
                connector: CONNECTOR,
            });
        }
        let mut response = self
            .upstream
            .client()
            .post(&self.token_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(budget)
            .body(body)
            .send()
            .await
            .map_err(|error| {
                if error.is_timeout() {
                    UpstreamError::Timeout {
                        connector: CONNECTOR,
                    }
                } else {
                    UpstreamError::Unreachable {
                        connector: CONNECTOR,
                    }
                }
            })?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| UpstreamError::Unreachable {
                connector: CONNECTOR,
            })?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(UpstreamError::Malformed {
                    connector: CONNECTOR,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(UpstreamError::RateLimited {
                connector: CONNECTOR,
            });
        }
        if status.is_server_error() {
            return Err(UpstreamError::Status {
                connector: CONNECTOR,
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(UpstreamError::Auth {
                connector: CONNECTOR,
                detail: token_error_detail(status.as_u16(), &bytes),
            });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|_| UpstreamError::Malformed {
                connector: CONNECTOR,
            })?;
        let lifetime = match answer.expires_in {
            serde_json::Value::Number(number) => number.as_u64(),
            serde_json::Value::String(text) => text.trim().parse().ok(),
            _ => None,
        }
        .ok_or(UpstreamError::Malformed {
            connector: CONNECTOR,
        })?;
        if answer.access_token.is_empty() {
            return Err(UpstreamError::Malformed {
                connector: CONNECTOR,
            });
        }
        Ok((
            Secret::new(answer.access_token),
            Duration::from_secs(lifetime),
        ))
    }

    /// A short-lived `private_key_jwt` assertion as Entra documents it today: PS256, `x5t#S256`,
    /// audience the token endpoint, issuer and subject the client id.
    fn client_assertion(
        &self,
        key: &jsonwebtoken::EncodingKey,
        thumbprint_s256: &str,
    ) -> Result<String, UpstreamError> {
        let now = chrono::Utc::now().timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
        header.x5t_s256 = Some(thumbprint_s256.to_string());
        let claims = serde_json::json!({
            "aud": self.token_url,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": uuid::Uuid::now_v7().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
        });
        jsonwebtoken::encode(&header, &claims, key).map_err(|_| UpstreamError::Auth {
            connector: CONNECTOR,
            detail: "the certificate's private key could not sign a client assertion".to_string(),
        })
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: serde_json::Value,
}

#[derive(Deserialize)]
struct TokenErrorAnswer {
    error: Option<String>,
    #[serde(default)]
    error_codes: Vec<u64>,
}

/// Entra's error code and `AADSTS` number are what an operator searches for; the description is
/// left out because it is long and echoes request details.
fn token_error_detail(status: u16, body: &[u8]) -> String {
    let parsed: Option<TokenErrorAnswer> = serde_json::from_slice(body).ok();
    match parsed {
        Some(TokenErrorAnswer {
            error: Some(error),
            error_codes,
        }) => match error_codes.first() {
            Some(code) => {
                format!("the token endpoint answered HTTP {status} `{error}` (AADSTS{code})")
            }
            None => format!("the token endpoint answered HTTP {status} `{error}`"),
        },
        _ => format!("the token endpoint answered HTTP {status}"),
    }
}

async fn read_federated_token(path: &Path) -> Result<Secret, UpstreamError> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) if !text.trim().is_empty() => Ok(Secret::new(text.trim())),
        _ => Err(UpstreamError::Auth {
            connector: CONNECTOR,
            detail: format!(
                "the federated token file `{}` is missing or empty",
                path.display()
            ),
        }),
    }
}

fn credential(settings: &GraphSettings) -> Result<Credential, Vec<SettingsProblem>> {
    let given = [
        settings.client_secret.is_some(),
        settings.certificate.is_some(),
        settings.federated_token_file.is_some(),
    ]
    .into_iter()
    .filter(|given| *given)
    .count();
    if given > 1 {
        return Err(vec![problem(
            "client_secret",
            "more than one of `client_secret`, `certificate`, `federated_token_file` is set",
            "keep exactly one credential",
        )]);
    }
    if let Some(secret) = &settings.client_secret {
        return secret
            .resolve()
            .map(Credential::Secret)
            .map_err(|message| {
                vec![problem(
                    "client_secret",
                    message,
                    "point `client_secret` at the app registration's client secret, e.g. `{ env = \"PIMGATE_GRAPH_CLIENT_SECRET\" }`",
                )]
            });
    }
    if let Some(certificate) = &settings.certificate {
        return load_certificate(&certificate.file).map_err(|message| {
            vec![problem(
                "certificate.file",
                message,
                "give a PEM file holding the unencrypted private key (`PRIVATE KEY` or `RSA PRIVATE KEY`) and the `CERTIFICATE` uploaded to the app registration",
            )]
        });
    }
    let path = settings.federated_token_file.clone().or_else(|| {
        std::env::var_os(FEDERATED_TOKEN_ENV)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    });
    match path {
        Some(path) if path.is_file() => Ok(Credential::FederatedTokenFile(path)),
        Some(path) => Err(vec![problem(
            "federated_token_file",
            format!("`{}` does not exist or is not a file", path.display()),
            "enable workload identity on the pod or give the path of the projected token",
        )]),
        None => Err(vec![problem(
            "client_secret",
            "no credential is configured",
            "set one of `client_secret = { env = \"...\" }`, `certificate = { file = \"...pem\" }` or `federated_token_file` (or run with AKS workload identity)",
        )]),
    }
}

/// PEM blocks as (label, base64 body) pairs, in file order.
fn pem_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new()));
        } else if line.starts_with("-----END ") {
            if let Some(block) = current.take() {
                blocks.push(block);
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
        }
    }
    blocks
}

fn load_certificate(path: &Path) -> Result<Credential, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    let blocks = pem_blocks(&text);
    let certificate = blocks
        .iter()
        .find(|(label, _)| label == "CERTIFICATE")
        .ok_or_else(|| format!("`{}` holds no `CERTIFICATE` block", path.display()))?;
    let der = STANDARD.decode(&certificate.1).map_err(|_| {
        format!(
            "the certificate in `{}` is not valid base64",
            path.display()
        )
    })?;
    let thumbprint_s256 = URL_SAFE_NO_PAD.encode(Sha256::digest(&der));
    if blocks
        .iter()
        .any(|(label, _)| label == "ENCRYPTED PRIVATE KEY")
    {
        return Err(format!(
            "the private key in `{}` is encrypted",
            path.display()
        ));
    }
    let (label, body) = blocks
        .iter()
        .find(|(label, _)| label == "PRIVATE KEY" || label == "RSA PRIVATE KEY")
        .ok_or_else(|| format!("`{}` holds no private key block", path.display()))?;
    let key_pem = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes())
        .map_err(|_| format!("the private key in `{}` is not an RSA key", path.display()))?;
    Ok(Credential::Certificate {
        key,
        thumbprint_s256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_read_in_order_with_their_labels() {
        let text = "junk\n-----BEGIN PRIVATE KEY-----\nAAAA\nBBBB\n-----END PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_blocks(text),
            vec![
                ("PRIVATE KEY".to_string(), "AAAABBBB".to_string()),
                ("CERTIFICATE".to_string(), "CCCC".to_string()),
            ]
        );
    }

    #[test]
    fn token_errors_name_the_entra_code_but_not_the_description() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#;
        let detail = token_error_detail(401, body);
        assert_eq!(
            detail,
            "the token endpoint answered HTTP 401 `invalid_client` (AADSTS7000215)"
        );
        assert_eq!(
            token_error_detail(400, b"not json"),
            "the token endpoint answered HTTP 400"
        );
    }
}
