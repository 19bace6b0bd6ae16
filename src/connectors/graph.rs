//! Microsoft Graph: the requester's directory profile (enabled, leave date, employee type, department)
//! read with an app-only token from Microsoft Entra (client secret, certificate or workload identity).
//!
//! The token is fetched once and shared until shortly before it expires; only one fetch runs at a
//! time so a burst of decisions after start-up does not stampede the token endpoint. It is never
//! logged and never part of an error.
//!
//! Graph answers `null` both for "this user has no leave date" and for "your app may not read leave
//! dates". The application permissions Entra granted are in the token's `roles` claim, so each token
//! is read for them ([`Grants`]) and a `null` counts as "none" only when the token proves the
//! permission that makes the property readable; otherwise the attribute is unknown and the check
//! that needs it is not evaluated.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::pki_types::pem::{self, PemObject, SectionKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::cache::{CacheSettings, TtlCache};
use super::http::{CircuitSettings, Fetched, RetrySettings, Upstream, UpstreamCall, UpstreamError};
use super::oauth::{ClientProof, Token, TokenEndpoint, TokenSource};
use super::secrets::{Secret, SecretRef};
use super::{Attribute, BuildContext, Permission, Unknown, UserProfile};
use crate::vocabulary::diagnostic::Diagnostic;
use crate::vocabulary::fetch_url::check_fetch_url;

/// The name in upstream call records and error sentences.
pub const CONNECTOR: &str = "graph";

/// What pimgate reads about a user; nothing more, so the app needs only `User.Read.All` (plus
/// `User-LifeCycleInfo.Read.All` for the leave date).
pub const USER_SELECT: &str = "id,userPrincipalName,mail,displayName,accountEnabled,employeeLeaveDateTime,employeeType,department";

/// Application permission for users' full profiles (`accountEnabled`, `employeeType`, `department`,
/// `mail`); `User.ReadBasic.All` does not include those properties.
pub const USER_READ_ALL: Permission = Permission {
    connector: CONNECTOR,
    name: "User.Read.All",
    satisfied_by: &[
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ],
    reads: "users' profiles: mail, accountEnabled, employeeType, department",
};

/// Application permission without which Graph returns `employeeLeaveDateTime` as `null`.
pub const LIFECYCLE_READ_ALL: Permission = Permission {
    connector: CONNECTOR,
    name: "User-LifeCycleInfo.Read.All",
    satisfied_by: &[
        "User-LifeCycleInfo.Read.All",
        "User-LifeCycleInfo.ReadWrite.All",
    ],
    reads: "employeeLeaveDateTime",
};

/// Every permission pimgate may use, for the metric and the start-up log.
pub const PERMISSIONS: [&Permission; 2] = [&USER_READ_ALL, &LIFECYCLE_READ_ALL];

/// A token missing one of [`PERMISSIONS`] is replaced this soon, so an admin consent given now is
/// picked up within minutes rather than at the end of the token's hour.
const GRANT_RECHECK: Duration = Duration::from_secs(300);

const USER_OPERATION: &str = "GET /v1.0/users/{id}";
const TOKEN_OPERATION: &str = "POST /oauth2/v2.0/token";
/// A token is replaced this long before Entra says it ends (Entra issues 60 to 90 minutes).
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);
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

/// The application permissions an app-only token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grants {
    /// The `roles` claim (absent means none granted).
    Roles(BTreeSet<String>),
    /// The token is not a JWT whose payload pimgate can read: nothing is proven granted.
    Unverifiable,
}

impl Grants {
    /// Reads the `roles` claim of an access token Entra issued to pimgate.
    ///
    /// The signature is not verified, on purpose: the token came straight from the tenant's token
    /// endpoint over TLS in answer to pimgate's own credential, and it is read only to learn what
    /// pimgate was granted, never to authorise anyone (Graph itself enforces the grants). Whoever
    /// could forge it could as well forge Graph's answers, so verifying it would protect nothing.
    pub fn from_access_token(token: &str) -> Grants {
        #[derive(Deserialize)]
        struct Claims {
            #[serde(default)]
            roles: Vec<String>,
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [_, payload, _] = parts.as_slice() else {
            return Grants::Unverifiable;
        };
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
            return Grants::Unverifiable;
        };
        match serde_json::from_slice::<Claims>(&bytes) {
            Ok(claims) => Grants::Roles(claims.roles.into_iter().collect()),
            Err(_) => Grants::Unverifiable,
        }
    }

    /// Whether the token proves `permission` (or one that includes it).
    pub fn allow(&self, permission: &Permission) -> bool {
        match self {
            Grants::Roles(roles) => permission
                .satisfied_by
                .iter()
                .any(|name| roles.contains(*name)),
            Grants::Unverifiable => false,
        }
    }
}

pub struct Graph {
    upstream: Upstream,
    tenant_id: String,
    client_id: String,
    graph_url: String,
    timeout: Duration,
    /// The app-only token, cached and fetched single-flight; each token's grants read with it.
    token: TokenSource<Grants>,
    users: TtlCache<UserProfile>,
    /// Registered authentication methods per user, for `auth_methods` checks (same TTLs as `users`).
    methods: TtlCache<Vec<methods::RegisteredMethod>>,
    /// What the last token fetched was granted; `None` before the first. For `/readyz`.
    last_grants: std::sync::Mutex<Option<Grants>>,
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("token", &self.token)
            .field("graph_url", &self.graph_url)
            .field("timeout", &self.timeout)
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}

fn problem(key: &str, message: impl Into<String>, fix: &str) -> Diagnostic {
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
    pub fn new(settings: &GraphSettings, context: &BuildContext) -> Result<Self, Vec<Diagnostic>> {
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
        let token_url = format!("{authority}/{tenant_id}/oauth2/v2.0/token");
        let proof = GraphProof {
            credential,
            token_url: token_url.clone(),
            client_id: client_id.clone(),
        };
        let endpoint = TokenEndpoint {
            connector: CONNECTOR,
            operation: TOKEN_OPERATION,
            system: "Microsoft Graph",
            url: token_url,
            client_id: client_id.clone(),
            scope: Some(format!("{graph_url}/.default")),
            timeout,
            margin: TOKEN_REFRESH_MARGIN,
        };
        Ok(Graph {
            upstream: Upstream::with_settings(
                CONNECTOR,
                context.http.clone(),
                timeout,
                settings.retry,
                settings.circuit,
            ),
            token: TokenSource::inspecting(
                endpoint,
                context.http.clone(),
                Box::new(proof),
                parse_token_answer,
                inspect_token,
            ),
            tenant_id,
            client_id,
            graph_url,
            timeout,
            users: TtlCache::with_name("graph_users", settings.cache),
            methods: TtlCache::with_name("graph_auth_methods", settings.cache),
            last_grants: std::sync::Mutex::new(None),
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
            let (result, mut call) = self
                .upstream
                .get_json::<GraphUser>(request, USER_OPERATION, deadline)
                .await;
            match result {
                Err(UpstreamError::Auth { .. }) => {
                    calls.push(call);
                    self.token.invalidate(lease.generation);
                    // A cached token may have been revoked or outlived its permissions: one retry
                    // with a fresh token. A fresh token refused means missing permissions.
                    if lease.fresh {
                        return Err(refused);
                    }
                }
                Ok(Fetched::Found(user)) if !user.is(id) => {
                    call.outcome = "wrong_record".to_string();
                    calls.push(call);
                    return Err(UpstreamError::wrong_record(
                        CONNECTOR,
                        USER_OPERATION,
                        id,
                        Some(&user.id),
                    ));
                }
                Ok(Fetched::Found(user)) => {
                    calls.push(call);
                    return Ok(Fetched::Found(user.profile(&lease.meta)));
                }
                Ok(Fetched::NotFound) => {
                    calls.push(call);
                    return Ok(Fetched::NotFound);
                }
                Err(error) => {
                    calls.push(call);
                    return Err(error);
                }
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

    /// What the last token Entra issued was granted; `None` until a token has been fetched.
    pub fn grants(&self) -> Option<Grants> {
        self.last_grants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Fetches a token (or reuses the cached one) to learn what pimgate is granted: the start-up
    /// check, so `/readyz` and the log name a missing permission before the first request needs it.
    pub async fn check_grants(&self, deadline: Instant) -> Result<Grants, UpstreamError> {
        let mut calls = Vec::new();
        self.lease(deadline, &mut calls)
            .await
            .map(|lease| lease.meta)
    }

    /// Remembers, counts and logs what a new token was granted.
    fn record_grants(&self, grants: &Grants) {
        *self
            .last_grants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(grants.clone());
        match grants {
            Grants::Roles(roles) => {
                let mut missing = Vec::new();
                for permission in PERMISSIONS {
                    let granted = grants.allow(permission);
                    metrics::gauge!(
                        "pimgate_upstream_permission_missing",
                        "connector" => CONNECTOR,
                        "permission" => permission.name
                    )
                    .set(if granted { 0.0 } else { 1.0 });
                    if !granted {
                        missing.push(permission.name);
                    }
                }
                if missing.is_empty() {
                    tracing::debug!(connector = CONNECTOR, granted = ?roles, "Microsoft Graph token carries every permission pimgate uses");
                } else {
                    tracing::warn!(
                        connector = CONNECTOR,
                        client_id = %self.client_id,
                        missing = %missing.join(", "),
                        granted = ?roles,
                        "the Microsoft Graph token lacks application permission(s); what they let pimgate read counts as unknown and the checks that need it are not evaluated; grant them to the app registration with admin consent"
                    );
                }
            }
            Grants::Unverifiable => tracing::warn!(
                connector = CONNECTOR,
                "the Microsoft Graph token is not a JWT pimgate can read, so its permissions are unknown; attributes that need a permission count as unknown"
            ),
        }
    }

    /// Graph's base URL (no trailing slash), so other callers address the same cloud.
    pub fn graph_url(&self) -> &str {
        &self.graph_url
    }

    /// The tenant the token is for.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// A valid token from the one token source; a token fetched for this caller has its grants
    /// remembered, counted and logged.
    async fn lease(
        &self,
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Token<Grants>, UpstreamError> {
        let token = self.token.token(deadline, calls).await?;
        if token.fresh {
            self.record_grants(&token.meta);
        }
        Ok(token)
    }

    /// One page of a Graph list that needs `permission` (group memberships, authentication
    /// methods): a token that does not show the permission is refused without asking Graph
    /// (`missing`), and a refused cached token is replaced and tried once more before the answer is
    /// `refused`. `missing` and `refused` are the operator's sentences naming the permission.
    pub(crate) async fn get_page<T: serde::de::DeserializeOwned>(
        &self,
        url: reqwest::Url,
        permission: &crate::connectors::Permission,
        operation: &'static str,
        (missing, refused): (&str, &str),
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Fetched<T>, UpstreamError> {
        let refused = || UpstreamError::Auth {
            connector: CONNECTOR,
            detail: refused.to_string(),
        };
        for _ in 0..2 {
            let lease = self.lease(deadline, calls).await?;
            if !lease.meta.allow(permission) {
                return Err(UpstreamError::Auth {
                    connector: CONNECTOR,
                    detail: missing.to_string(),
                });
            }
            let request = self
                .upstream
                .client()
                .get(url.clone())
                .bearer_auth(lease.value.expose())
                .header(reqwest::header::ACCEPT, "application/json");
            let (result, call) = self
                .upstream
                .get_json::<T>(request, operation, deadline)
                .await;
            calls.push(call);
            match result {
                Err(UpstreamError::Auth { .. }) => {
                    self.token.invalidate(lease.generation);
                    // A cached token may have been revoked: one retry with a fresh one.
                    if lease.fresh {
                        return Err(refused());
                    }
                }
                other => return other,
            }
        }
        Err(refused())
    }
}

/// What a new token is granted, and, when it lacks a permission pimgate uses, how soon it is
/// replaced ([`GRANT_RECHECK`]), so an admin consent given now is picked up within minutes.
fn inspect_token(token: &Secret) -> (Grants, Option<Duration>) {
    let grants = Grants::from_access_token(token.expose());
    let complete = PERMISSIONS
        .iter()
        .all(|permission| grants.allow(permission));
    (grants, (!complete).then_some(GRANT_RECHECK))
}

/// A client-credentials token source for another audience (`scope`, e.g. `api://contoso/.default`)
/// with pimgate's Graph app credentials: the `http` connector's `entra` auth, so a customer's Azure
/// Function can check Entra tokens. `None` when the Graph settings cannot give one (Graph's own
/// build reports why).
pub fn app_token_source(
    settings: &GraphSettings,
    context: &BuildContext,
    connector: &'static str,
    scope: String,
    timeout: Duration,
) -> Option<TokenSource<()>> {
    let tenant_id = settings
        .tenant_id
        .clone()
        .unwrap_or_else(|| context.tenant_id.clone())
        .trim()
        .to_string();
    let client_id = settings.client_id.clone()?.trim().to_string();
    let authority = settings
        .authority_url
        .clone()
        .unwrap_or_else(|| "https://login.microsoftonline.com".to_string());
    let authority = authority.trim_end_matches('/').to_string();
    if !valid_tenant(&tenant_id) || client_id.is_empty() || check_fetch_url(&authority).is_err() {
        return None;
    }
    let credential = credential(settings).ok()?;
    let token_url = format!("{authority}/{tenant_id}/oauth2/v2.0/token");
    let proof = GraphProof {
        credential,
        token_url: token_url.clone(),
        client_id: client_id.clone(),
    };
    let endpoint = TokenEndpoint {
        connector,
        operation: TOKEN_OPERATION,
        system: "Microsoft Entra",
        url: token_url,
        client_id,
        scope: Some(scope),
        timeout,
        margin: TOKEN_REFRESH_MARGIN,
    };
    Some(TokenSource::new(
        endpoint,
        context.http.clone(),
        Box::new(proof),
        parse_token_answer,
    ))
}

/// Graph's [`ClientProof`]: a client secret, a certificate-signed assertion or the projected
/// workload identity token. `Debug` names the kind only.
struct GraphProof {
    credential: Credential,
    token_url: String,
    client_id: String,
}

impl fmt::Debug for GraphProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.credential.fmt(f)
    }
}

#[async_trait::async_trait]
impl ClientProof for GraphProof {
    async fn parameters(&self) -> Result<Vec<(&'static str, Secret)>, UpstreamError> {
        let assertion = match &self.credential {
            Credential::Secret(secret) => return Ok(vec![("client_secret", secret.clone())]),
            Credential::Certificate {
                key,
                thumbprint_s256,
            } => Secret::new(self.client_assertion(key, thumbprint_s256)?),
            Credential::FederatedTokenFile(path) => read_federated_token(path).await?,
        };
        Ok(vec![
            ("client_assertion_type", Secret::new(ASSERTION_TYPE)),
            ("client_assertion", assertion),
        ])
    }
}

impl GraphProof {
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

/// What the token endpoint's answer (status and body) means: the access token and its lifetime,
/// clamped to [`super::limits::MIN_TOKEN_LIFETIME`, `super::limits::MAX_TOKEN_LIFETIME`]
/// (`expires_in` may be a number or a numeric string); `ext_expires_in` is not used. Pure, so the
/// fuzz target feeds it arbitrary answers.
pub fn parse_token_answer(status: u16, body: &[u8]) -> Result<(Secret, Duration), UpstreamError> {
    let malformed = || UpstreamError::Malformed {
        connector: CONNECTOR,
    };
    if status == 429 {
        return Err(UpstreamError::RateLimited {
            connector: CONNECTOR,
        });
    }
    if (500..=599).contains(&status) {
        return Err(UpstreamError::Status {
            connector: CONNECTOR,
            status,
        });
    }
    if !(200..=299).contains(&status) {
        return Err(UpstreamError::Auth {
            connector: CONNECTOR,
            detail: token_error_detail(status, body),
        });
    }
    let answer: TokenAnswer = serde_json::from_slice(body).map_err(|_| malformed())?;
    let lifetime = super::limits::token_lifetime(&answer.expires_in).ok_or_else(malformed)?;
    if answer.access_token.is_empty() {
        return Err(malformed());
    }
    Ok((Secret::new(answer.access_token), lifetime))
}

/// What a `GET /v1.0/users/{id}` answer body says about the user `asked` for, weighed against the
/// token's `grants`; [`UpstreamError::WrongRecord`] when it is another user. Pure (the fuzz target's
/// entry point); the connector itself decodes the same `GraphUser` through the HTTP layer.
pub fn parse_user(asked: &str, body: &[u8], grants: &Grants) -> Result<UserProfile, UpstreamError> {
    let user: GraphUser = serde_json::from_slice(body).map_err(|_| UpstreamError::Malformed {
        connector: CONNECTOR,
    })?;
    if !user.is(asked) {
        return Err(UpstreamError::WrongRecord {
            connector: CONNECTOR,
            asked: asked.to_string(),
            answered: Some(user.id),
        });
    }
    Ok(user.profile(grants))
}

/// `GET /v1.0/users/{id}?$select=…` as Graph sends it; the profile attributes keep "null" apart
/// from "left out" until [`GraphUser::profile`] weighs them against the token's grants.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphUser {
    id: String,
    user_principal_name: Option<String>,
    mail: Option<String>,
    display_name: Option<String>,
    #[serde(default, deserialize_with = "super::present")]
    account_enabled: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "super::present")]
    employee_leave_date_time: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "super::present")]
    employee_type: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "super::present")]
    department: Option<serde_json::Value>,
}

impl GraphUser {
    /// Whether this is the user asked for: by object id, or by UPN when the caller asked by UPN.
    fn is(&self, asked: &str) -> bool {
        if asked.contains('@') {
            self.user_principal_name
                .as_deref()
                .is_some_and(|upn| upn.eq_ignore_ascii_case(asked))
        } else {
            self.id.eq_ignore_ascii_case(asked)
        }
    }

    fn profile(self, grants: &Grants) -> UserProfile {
        let text = |value: &serde_json::Value| value.as_str().map(|text| text.trim().to_string());
        UserProfile {
            id: self.id,
            user_principal_name: self.user_principal_name,
            mail: self.mail,
            display_name: self.display_name,
            account_enabled: attribute(self.account_enabled, &USER_READ_ALL, grants, |value| {
                value.as_bool()
            }),
            employee_leave_date_time: attribute(
                self.employee_leave_date_time,
                &LIFECYCLE_READ_ALL,
                grants,
                |value| {
                    value
                        .as_str()
                        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text.trim()).ok())
                        .map(|moment| moment.with_timezone(&chrono::Utc))
                },
            ),
            employee_type: attribute(self.employee_type, &USER_READ_ALL, grants, text),
            department: attribute(self.department, &USER_READ_ALL, grants, text),
        }
    }
}

/// One Graph property as an [`Attribute`]: a value is a value whatever the grants (Graph showed
/// it); `null`, `""` or a missing property count as "none" only when the token proves `permission`.
fn attribute<T>(
    raw: Option<serde_json::Value>,
    permission: &'static Permission,
    grants: &Grants,
    read: impl Fn(&serde_json::Value) -> Option<T>,
) -> Attribute<T> {
    let allowed = grants.allow(permission);
    let unreadable = Attribute::Unknown(Unknown::Unreadable {
        permission: permission.name,
    });
    match raw {
        Some(serde_json::Value::Null) => {
            if allowed {
                Attribute::Empty
            } else {
                unreadable
            }
        }
        Some(serde_json::Value::String(text)) if text.trim().is_empty() => {
            if allowed {
                Attribute::Empty
            } else {
                unreadable
            }
        }
        Some(value) => match read(&value) {
            Some(value) => Attribute::Known(value),
            None => Attribute::Unknown(Unknown::Unparsable),
        },
        None if allowed => Attribute::Unknown(Unknown::Absent),
        None => unreadable,
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

fn credential(settings: &GraphSettings) -> Result<Credential, Vec<Diagnostic>> {
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

/// Reads the credential file with rustls-pki-types' PEM reader (the one `startup` uses for TLS).
/// That reader skips labels it does not know, `ENCRYPTED PRIVATE KEY` among them, so an encrypted
/// key is recognised by its BEGIN line to say what is wrong instead of "no private key".
fn load_certificate(path: &Path) -> Result<Credential, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    let sections = <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| match error {
            pem::Error::Base64Decode(_) => {
                format!("a block in `{}` is not valid base64", path.display())
            }
            _ => format!("`{}` is not a well-formed PEM file", path.display()),
        })?;
    let certificate = sections
        .iter()
        .find(|(kind, _)| *kind == SectionKind::Certificate)
        .ok_or_else(|| format!("`{}` holds no `CERTIFICATE` block", path.display()))?;
    let thumbprint_s256 = URL_SAFE_NO_PAD.encode(Sha256::digest(&certificate.1));
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(format!(
            "the private key in `{}` is encrypted",
            path.display()
        ));
    }
    let (kind, der) = sections
        .iter()
        .find(|(kind, _)| matches!(kind, SectionKind::PrivateKey | SectionKind::RsaPrivateKey))
        .ok_or_else(|| format!("`{}` holds no private key block", path.display()))?;
    // jsonwebtoken takes PKCS#8 or PKCS#1 only as PEM (it unwraps PKCS#8 and refuses non-RSA keys).
    let label = if *kind == SectionKind::PrivateKey {
        "PRIVATE KEY"
    } else {
        "RSA PRIVATE KEY"
    };
    let key_pem = format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        STANDARD.encode(der)
    );
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes())
        .map_err(|_| format!("the private key in `{}` is not an RSA key", path.display()))?;
    Ok(Credential::Certificate {
        key,
        thumbprint_s256,
    })
}

/// The `group` check's membership lookup, in its own file to keep this one about users.
pub mod groups;

/// The `auth_methods` check's lookup of registered authentication methods.
pub mod methods;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_file_is_refused_with_what_is_wrong_in_it() {
        let good = std::fs::read_to_string("tests/fixtures/graph/app-cert.pem").unwrap();
        let certificate_block = &good[good.find("-----BEGIN CERTIFICATE-----").unwrap()..];
        let cases = [
            (
                good.replace("CERTIFICATE", "X509 CRL"),
                "holds no `CERTIFICATE` block",
            ),
            (
                format!(
                    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n{certificate_block}"
                ),
                "is encrypted",
            ),
            (certificate_block.to_string(), "holds no private key block"),
            (
                format!(
                    "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n{certificate_block}"
                ),
                "is not valid base64",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n".to_string(),
                "is not a well-formed PEM file",
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in cases {
            let path = dir.path().join("credential.pem");
            std::fs::write(&path, &text).unwrap();
            let message = load_certificate(&path).err().unwrap();
            assert!(message.contains(expected), "{expected}: {message}");
        }
        assert!(load_certificate(Path::new("tests/fixtures/graph/app-cert.pem")).is_ok());
    }

    fn token_with(payload: serde_json::Value) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(payload.to_string())
        )
    }

    #[test]
    fn grants_are_the_roles_claim_and_an_unreadable_token_grants_nothing() {
        let both = Grants::from_access_token(&token_with(serde_json::json!({
            "roles": ["Directory.Read.All", "User-LifeCycleInfo.ReadWrite.All"]
        })));
        assert!(both.allow(&USER_READ_ALL) && both.allow(&LIFECYCLE_READ_ALL));
        let none = Grants::from_access_token(&token_with(serde_json::json!({ "idtyp": "app" })));
        assert_eq!(none, Grants::Roles(BTreeSet::new()));
        assert!(!none.allow(&USER_READ_ALL));
        for opaque in ["opaque", "a.b", "a.!!!.c", "a.e30.c.d"] {
            assert_eq!(
                Grants::from_access_token(opaque),
                Grants::Unverifiable,
                "{opaque}"
            );
        }
    }

    #[test]
    fn a_null_is_none_only_with_the_permission_and_a_value_is_a_value_regardless() {
        let granted = Grants::Roles(BTreeSet::from(["User-LifeCycleInfo.Read.All".to_string()]));
        let denied = Grants::Roles(BTreeSet::new());
        let read = |value: &serde_json::Value| value.as_str().map(str::to_string);
        let null = || Some(serde_json::Value::Null);
        assert_eq!(
            attribute(null(), &LIFECYCLE_READ_ALL, &granted, read),
            Attribute::Empty
        );
        assert_eq!(
            attribute(null(), &LIFECYCLE_READ_ALL, &denied, read),
            Attribute::Unknown(Unknown::Unreadable {
                permission: "User-LifeCycleInfo.Read.All"
            })
        );
        assert_eq!(
            attribute(None, &LIFECYCLE_READ_ALL, &granted, read),
            Attribute::Unknown(Unknown::Absent)
        );
        assert_eq!(
            attribute(
                Some(serde_json::json!("x")),
                &LIFECYCLE_READ_ALL,
                &denied,
                read
            ),
            Attribute::Known("x".to_string())
        );
        assert_eq!(
            attribute(
                Some(serde_json::json!(7)),
                &LIFECYCLE_READ_ALL,
                &granted,
                read
            ),
            Attribute::Unknown(Unknown::Unparsable)
        );
    }

    #[test]
    fn a_token_lacking_a_permission_is_counted_by_the_gauge() {
        let handle = crate::http::health::handle().unwrap();
        // PATH is set in every environment: a client secret that resolves; no token is fetched here.
        let settings = GraphSettings {
            client_id: Some("44444444-4444-4444-8444-444444444444".to_string()),
            client_secret: Some(SecretRef {
                env: Some("PATH".to_string()),
                file: None,
            }),
            ..GraphSettings::default()
        };
        let context = BuildContext {
            http: reqwest::Client::new(),
            tenant_id: "contoso.onmicrosoft.com".to_string(),
        };
        let graph = Graph::new(&settings, &context).unwrap();
        graph.record_grants(&Grants::Roles(BTreeSet::from(
            ["User.Read.All".to_string()],
        )));
        let text = handle.render();
        assert!(
            text.lines().any(
                |line| line.starts_with("pimgate_upstream_permission_missing")
                    && line.contains("permission=\"User-LifeCycleInfo.Read.All\"")
                    && line.ends_with(" 1")
            ),
            "{text}"
        );
        assert!(matches!(graph.grants(), Some(Grants::Roles(_))));
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
