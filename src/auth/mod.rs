//! Bearer-token validation for PIM's calls: OpenID discovery, a JWKS cache, and the development issuer.
//!
//! `Authenticator::verify_header` is the only entry point a request handler needs. The module's one
//! network path is the key refresh (`discovery`), which runs in the background and, rate-limited and
//! single-flight, when a token names a `kid` we have not seen. Tokens that pass are remembered until
//! they expire (`cache`), so PIM's repeated token is not RS256-verified on every call.

mod cache;
pub mod dev;
mod discovery;
mod error;
mod jwks;
mod token;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use reqwest::Url;
use tokio::time::Instant;

pub use discovery::MAX_DOCUMENT_BYTES;
pub use error::AuthError;
pub use token::{MAX_TOKEN_BYTES, VerifiedCaller};

use crate::settings::{AuthSettings, TokenVersion};
use cache::{TokenCache, VerifiedBy};
use discovery::{DiscoveryDocument, check_fetch_url, fetch_json};
use jwks::{KeySet, parse_jwks};
use token::{CheckedClaims, ClaimRules, KeySource, extract_bearer, parse_header, verify_signature};

/// Longest wait between retries of a failing key fetch.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(60);

/// Verifies Entra access tokens (and development tokens when `dev_mode` is on).
///
/// Shared behind an `Arc` by every worker; the key set is swapped whole, so a request sees either
/// the old keys or the new ones, never a mix.
pub struct Authenticator {
    /// Lets a kid-triggered refresh run as its own task, which needs an owned handle.
    me: Weak<Self>,
    http: reqwest::Client,
    /// `None` when only the development issuer is trusted (`dev_mode` without a tenant).
    metadata_url: Option<Url>,
    rules: ClaimRules,
    dev_mode: bool,
    fetch_timeout: Duration,
    refresh_every: Duration,
    min_refresh_interval: Duration,
    keys: RwLock<Arc<KeySet>>,
    entra_keys_fetched: AtomicBool,
    /// Held for the whole of a fetch: concurrent refreshes wait and then reuse its result.
    refresh: tokio::sync::Mutex<RefreshState>,
    /// Counts finished fetch attempts, so a waiter can tell that someone refreshed while it waited.
    fetches_finished: AtomicU64,
    /// `None` when `auth.token_cache_capacity` is 0.
    token_cache: Option<TokenCache>,
    /// RS256 verifications performed, cached answers excluded (`signature_checks`).
    signature_checks: AtomicU64,
}

struct RefreshState {
    last_attempt: Option<Instant>,
}

impl Authenticator {
    /// Checks `[auth]` and reports every problem at once.
    ///
    /// `listeners` are the addresses the service answers on. Development mode trusts a key anyone
    /// can read, so it is refused here, where the trust is created, unless every listener is a
    /// loopback address (and there is at least one): a `Settings` built in code or changed after
    /// `Settings::validate` cannot put development tokens on a public listener.
    pub fn new(
        settings: &AuthSettings,
        http: reqwest::Client,
        listeners: &[SocketAddr],
    ) -> Result<Arc<Self>, AuthError> {
        let mut problems = Vec::new();
        if settings.dev_mode {
            if let Some(public) = listeners.iter().find(|address| !address.ip().is_loopback()) {
                problems.push(format!(
                    "`auth.dev_mode` trusts a public test key and the service listens on `{public}`, not a loopback address: listen on 127.0.0.1 or turn development mode off"
                ));
            } else if listeners.is_empty() {
                problems.push(
                    "`auth.dev_mode` needs the listener addresses to prove they are loopback only"
                        .to_string(),
                );
            }
        }
        let tenant_id = settings.tenant_id.trim();
        // The all-zero guid is a placeholder (Entra never issues it; the example config carries it):
        // in development mode it means "no tenant", so only the built-in issuer is trusted and no
        // key is fetched from login.microsoftonline.com for a tenant that cannot exist.
        let placeholder_tenant = uuid::Uuid::try_parse(tenant_id).is_ok_and(|id| id.is_nil());
        let entra_enabled = !(settings.dev_mode && (tenant_id.is_empty() || placeholder_tenant));
        let mut normalized_tenant = String::new();
        let mut metadata_url = None;
        if entra_enabled {
            match uuid::Uuid::try_parse(tenant_id) {
                Ok(uuid) if tenant_id.len() == 36 => normalized_tenant = uuid.hyphenated().to_string(),
                _ if tenant_id.is_empty() => {
                    problems.push("`auth.tenant_id` is required unless `auth.dev_mode` is on".to_string());
                }
                _ => problems.push(format!(
                    "`auth.tenant_id` = `{tenant_id}` is not a tenant guid (token issuers carry the guid, not a domain)"
                )),
            }
            match check_fetch_url(&settings.resolved_metadata_url()) {
                Ok(url) => metadata_url = Some(url),
                Err(problem) => problems.push(format!("`auth.metadata_url`: {problem}")),
            }
            if settings.token_versions.is_empty() {
                problems.push(
                    "`auth.token_versions` is empty: no token could ever be accepted".to_string(),
                );
            }
        }
        if settings.audiences.is_empty()
            || settings
                .audiences
                .iter()
                .any(|audience| audience.trim().is_empty())
        {
            problems.push("`auth.audiences` must list at least one non-empty audience".to_string());
        }
        if settings.allowed_callers.is_empty()
            || settings
                .allowed_callers
                .iter()
                .any(|caller| caller.trim().is_empty())
        {
            problems.push(
                "`auth.allowed_callers` must list at least one non-empty application id"
                    .to_string(),
            );
        }
        if settings.jwks_refresh_seconds == 0 {
            problems.push("`auth.jwks_refresh_seconds` must be positive".to_string());
        }
        if settings.fetch_timeout_ms == 0 {
            problems.push("`auth.fetch_timeout_ms` must be positive".to_string());
        }
        if settings.dev_mode
            && let Err(error) = dev::decoding_key()
        {
            problems.push(error.to_string());
        }
        if !problems.is_empty() {
            return Err(AuthError::InvalidConfig(problems.join("; ")));
        }

        let mut entra_issuers = Vec::new();
        if entra_enabled {
            for version in &settings.token_versions {
                let issuer = match version {
                    TokenVersion::V2 => {
                        format!("https://login.microsoftonline.com/{normalized_tenant}/v2.0")
                    }
                    TokenVersion::V1 => format!("https://sts.windows.net/{normalized_tenant}/"),
                };
                entra_issuers.push((issuer, *version));
            }
        }
        let rules = ClaimRules {
            entra_issuers,
            tenant_id: normalized_tenant,
            audiences: settings.audiences.clone(),
            allowed_callers: settings
                .allowed_callers
                .iter()
                .map(|caller| caller.trim().to_string())
                .collect(),
            clock_skew_seconds: i64::try_from(settings.clock_skew_seconds).unwrap_or(i64::MAX),
        };
        Ok(Arc::new_cyclic(|me| Self {
            me: me.clone(),
            http,
            metadata_url,
            rules,
            dev_mode: settings.dev_mode,
            fetch_timeout: Duration::from_millis(settings.fetch_timeout_ms),
            refresh_every: Duration::from_secs(settings.jwks_refresh_seconds),
            min_refresh_interval: Duration::from_secs(settings.jwks_min_refresh_interval_seconds),
            keys: RwLock::new(Arc::new(KeySet::default())),
            entra_keys_fetched: AtomicBool::new(false),
            refresh: tokio::sync::Mutex::new(RefreshState { last_attempt: None }),
            fetches_finished: AtomicU64::new(0),
            token_cache: TokenCache::new(settings.token_cache_capacity),
            signature_checks: AtomicU64::new(0),
        }))
    }

    /// Fetches discovery and the JWKS now, ignoring the rate limit (the periodic refresh and start-up
    /// use it). On success the new set replaces the old one entirely, so keys removed upstream stop
    /// working; on failure the old set stays. Returns the number of usable keys.
    pub async fn refresh_keys(&self) -> Result<usize, AuthError> {
        let mut state = self.refresh.lock().await;
        // Until the first success every attempt is still getting the service ready.
        let trigger = if self.entra_keys_fetched.load(Ordering::Acquire) {
            "periodic"
        } else {
            "startup"
        };
        self.refresh_locked(&mut state, trigger).await
    }

    /// First fetch with backoff until it succeeds, then every `jwks_refresh_seconds` (backing off
    /// again while upstream fails). Stops when the last `Arc<Authenticator>` is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut failures: u32 = 0;
            loop {
                let Some(this) = weak.upgrade() else { return };
                if this.metadata_url.is_none() {
                    return;
                }
                let delay = match this.refresh_keys().await {
                    Ok(_) => {
                        failures = 0;
                        this.refresh_every
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        let backoff =
                            Duration::from_secs(1u64 << failures.min(6).saturating_sub(1));
                        let delay = backoff.min(MAX_RETRY_BACKOFF).min(this.refresh_every);
                        tracing::warn!(
                            reason = error.reason_code(),
                            error = %error,
                            failures,
                            retry_in_seconds = delay.as_secs(),
                            "signing key refresh failed; keeping the previous keys"
                        );
                        delay
                    }
                };
                drop(this);
                tokio::time::sleep(delay).await;
            }
        })
    }

    /// Ready to judge Entra tokens (keys fetched once), or in development mode where the key is built in.
    pub fn is_ready(&self) -> bool {
        self.dev_mode || self.entra_keys_fetched.load(Ordering::Acquire)
    }

    /// Verifies the raw `Authorization` header value of one request.
    pub async fn verify_header(
        &self,
        authorization: Option<&str>,
    ) -> Result<VerifiedCaller, AuthError> {
        self.verify_header_at(authorization, chrono::Utc::now().timestamp())
            .await
    }

    /// `verify_header` as if the clock read `now` (seconds since the epoch), for tests and benches
    /// that must cross a token's `exp` without waiting for it.
    pub async fn verify_header_at(
        &self,
        authorization: Option<&str>,
        now: i64,
    ) -> Result<VerifiedCaller, AuthError> {
        let token = extract_bearer(authorization)?;
        let Some(cache) = &self.token_cache else {
            return self
                .verify_token(token, now)
                .await
                .map(|(checked, _)| checked.caller);
        };
        let hash = TokenCache::hash(token);
        let cached = cache.lookup(&hash, now, |verified_by| self.still_published(verified_by));
        if let Some(caller) = cached {
            return Ok(caller);
        }
        let (checked, verified_by) = self.verify_token(token, now).await?;
        let caller = checked.caller.clone();
        cache.insert(hash, checked, verified_by, now);
        Ok(caller)
    }

    /// How many RS256 signature checks have run: a token answered from the cache adds none. Lets tests
    /// and benches see the cache work without reading metrics.
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
    }

    /// Verified tokens currently remembered (0 with the cache off).
    pub fn cached_tokens(&self) -> u64 {
        match &self.token_cache {
            Some(cache) => cache.len(),
            None => 0,
        }
    }

    /// Whether the key that verified a cached token is still trusted under the same `kid` with the
    /// same material; a refresh that drops or replaces it must also retire the tokens it signed.
    fn still_published(&self, verified_by: &VerifiedBy) -> bool {
        match verified_by {
            VerifiedBy::Dev => self.dev_mode,
            VerifiedBy::Entra { kid, fingerprint } => {
                self.current_keys().fingerprint(kid) == Some(fingerprint)
            }
        }
    }

    /// The full check of one token: header, key, signature, claims.
    async fn verify_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(CheckedClaims, VerifiedBy), AuthError> {
        let header = parse_header(token)?;
        if header.alg != "RS256" {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        let kid = header
            .kid
            .filter(|kid| !kid.is_empty())
            .ok_or(AuthError::MissingKeyId)?;

        if kid == dev::DEV_KEY_ID {
            if !self.dev_mode {
                return Err(AuthError::DevModeOff);
            }
            self.signature_checks.fetch_add(1, Ordering::Relaxed);
            let claims = verify_signature(token, dev::decoding_key()?)?;
            let checked = self.rules.check(claims, KeySource::Dev, now)?;
            return Ok((checked, VerifiedBy::Dev));
        }

        let keys = self.key_set_with(&kid).await?;
        let (Some(key), Some(fingerprint)) = (keys.get(&kid), keys.fingerprint(&kid)) else {
            return Err(AuthError::UnknownKeyId);
        };
        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        let claims = verify_signature(token, key)?;
        let checked = self.rules.check(claims, KeySource::Entra, now)?;
        let verified_by = VerifiedBy::Entra {
            fingerprint: *fingerprint,
            kid,
        };
        Ok((checked, verified_by))
    }

    fn current_keys(&self) -> Arc<KeySet> {
        // A poisoned lock only means a writer panicked mid-swap of an `Arc`; the value is still whole.
        Arc::clone(
            &self
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The current key set if it holds `kid`; otherwise one rate-limited, single-flight refresh first.
    async fn key_set_with(&self, kid: &str) -> Result<Arc<KeySet>, AuthError> {
        let keys = self.current_keys();
        if keys.get(kid).is_some() {
            return Ok(keys);
        }
        if self.metadata_url.is_none() {
            return Err(AuthError::UnknownKeyId);
        }
        let Some(this) = self.me.upgrade() else {
            return Err(AuthError::UnknownKeyId);
        };
        let finished_before = self.fetches_finished.load(Ordering::Acquire);
        // Detached: the request may be dropped (client gone, deadline) while the fetch is under way;
        // the fetch carries on, installs its keys and keeps its place in the rate limit, and a later
        // request waits for it on the lock instead of starting another. Dropping the handle does not
        // abort the task.
        let refresh = tokio::spawn(async move {
            let mut state = this.refresh.lock().await;
            let someone_refreshed =
                this.fetches_finished.load(Ordering::Acquire) != finished_before;
            let allowed = state
                .last_attempt
                .is_none_or(|last| last.elapsed() >= this.min_refresh_interval);
            if !someone_refreshed
                && allowed
                && let Err(error) = this.refresh_locked(&mut state, "unknown_kid").await
            {
                tracing::warn!(
                    reason = error.reason_code(),
                    error = %error,
                    "signing key refresh for an unknown key id failed; keeping the previous keys"
                );
            }
        });
        // A panicked refresh changed nothing; the key lookup below decides either way.
        let _ = refresh.await;
        let keys = self.current_keys();
        if keys.get(kid).is_some() {
            Ok(keys)
        } else if !self.entra_keys_fetched.load(Ordering::Acquire) {
            Err(AuthError::KeysUnavailable)
        } else {
            Err(AuthError::UnknownKeyId)
        }
    }

    /// `trigger` (`startup`, `periodic`, `unknown_kid`) labels the refresh metric: a burst of
    /// `unknown_kid` refreshes means callers present keys Entra does not (yet) publish.
    async fn refresh_locked(
        &self,
        state: &mut RefreshState,
        trigger: &'static str,
    ) -> Result<usize, AuthError> {
        state.last_attempt = Some(Instant::now());
        let result = self.fetch_key_set().await;
        self.fetches_finished.fetch_add(1, Ordering::AcqRel);
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("pimgate_jwks_refreshes_total", "result" => outcome, "trigger" => trigger)
            .increment(1);
        let (key_set, skipped) = result?;
        let count = key_set.len();
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(key_set);
        self.entra_keys_fetched.store(true, Ordering::Release);
        tracing::info!(keys = count, skipped, "signing keys refreshed");
        Ok(count)
    }

    async fn fetch_key_set(&self) -> Result<(KeySet, usize), AuthError> {
        let metadata_url = self.metadata_url.as_ref().ok_or_else(|| {
            AuthError::InvalidConfig("no tenant configured, entra tokens are disabled".into())
        })?;
        let discovery: DiscoveryDocument = fetch_json(&self.http, metadata_url, self.fetch_timeout)
            .await
            .map_err(AuthError::Discovery)?;
        let jwks_url = check_fetch_url(&discovery.jwks_uri)
            .map_err(|problem| AuthError::Discovery(format!("`jwks_uri`: {problem}")))?;
        let document: serde_json::Value = fetch_json(&self.http, &jwks_url, self.fetch_timeout)
            .await
            .map_err(AuthError::Jwks)?;
        let parsed = parse_jwks(&document)
            .map_err(|problem| AuthError::Jwks(format!("`{jwks_url}`: {problem}")))?;
        if parsed.key_set.is_empty() {
            // An empty set would lock every caller out; more likely a broken upstream than a real
            // revocation of every key, so keep what we have.
            return Err(AuthError::Jwks(format!(
                "`{jwks_url}` holds no usable rs256 signing key ({} skipped)",
                parsed.skipped
            )));
        }
        Ok((parsed.key_set, parsed.skipped))
    }
}
