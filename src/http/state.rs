//! What every handler shares: settings, the token verifier, the current rules, the audit log and the
//! replay cache. Nothing here is per-request state; every cache may be dropped at any time.
//!
//! It also carries the one bit of lifecycle state handlers need: whether a shutdown has begun, so
//! `/readyz` can turn load balancers away while requests in flight still finish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::recent::RecentDecisions;
use super::redelivery::Redeliveries;
use super::replay::ReplayCache;
use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::rules::RuleSet;
use crate::settings::Settings;

/// Whether the last reload replaced the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadResult {
    Ok,
    Error,
}

/// The last reload attempt, as `/readyz` shows it under `rules.lastReload`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    pub result: ReloadResult,
    pub at: DateTime<Utc>,
    /// `SIGHUP`, `file change` or whatever an embedding caller passed.
    pub trigger: String,
    /// Errors that made the reload fail; 0 on success.
    pub problems: usize,
    /// The first of them, so an operator sees what to fix without reading the logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct AppState {
    pub settings: Arc<Settings>,
    pub authenticator: Arc<Authenticator>,
    rules: RwLock<Arc<RuleSet>>,
    pub audit: AuditLog,
    /// PIM retries: the same request gets the same stored decision (same evaluationId) for a while.
    pub replays: ReplayCache,
    /// Retried deliveries by their bytes, so a third copy skips decoding (`http::redelivery`).
    pub redeliveries: Redeliveries,
    /// This replica's last answers for the console; empty (capacity 0) when no console is served.
    pub recent: RecentDecisions,
    shutting_down: AtomicBool,
    /// The last reload attempt, for `/readyz`; `None` until the first one.
    last_reload: RwLock<Option<ReloadStatus>>,
}

impl AppState {
    pub fn new(
        settings: Arc<Settings>,
        authenticator: Arc<Authenticator>,
        rules: RuleSet,
        audit: AuditLog,
    ) -> Self {
        let ttl = std::time::Duration::from_secs(settings.server.idempotency_ttl_seconds);
        let replays = ReplayCache::new(settings.server.idempotency_capacity, ttl);
        let redeliveries = Redeliveries::new(settings.server.idempotency_capacity, ttl);
        let console = settings.admin.enabled() && settings.admin.console;
        let recent = RecentDecisions::new(if console {
            settings.admin.recent_decisions
        } else {
            0
        });
        Self {
            settings,
            authenticator,
            rules: RwLock::new(Arc::new(rules)),
            audit,
            replays,
            redeliveries,
            recent,
            shutting_down: AtomicBool::new(false),
            last_reload: RwLock::new(None),
        }
    }

    /// Marks the service as stopping; returns `false` when a shutdown had already begun. One-way:
    /// a stopping process never becomes ready again.
    pub fn begin_shutdown(&self) -> bool {
        !self.shutting_down.swap(true, Ordering::SeqCst)
    }

    /// True from the shutdown signal on. Only readiness looks at it: evaluations still arriving on
    /// open connections are answered, because PIM would otherwise see a failure it has to retry.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// The rule set a request is evaluated under; a reload swaps it without touching requests in flight.
    pub fn rules(&self) -> Arc<RuleSet> {
        match self.rules.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Swaps the rules for the requests that start from now on. Call it only with rules that loaded
    /// without error (`reload::Reloader` does the validating).
    pub fn replace_rules(&self, rules: RuleSet) {
        let mut guard = match self.rules.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(rules);
    }

    pub fn record_reload(&self, status: ReloadStatus) {
        let mut guard = match self.last_reload.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Some(status);
    }

    pub fn last_reload(&self) -> Option<ReloadStatus> {
        match self.last_reload.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Rules are loaded before the server starts, and a failed reload keeps the old ones serving, so
    /// readiness hinges on the signing keys alone.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.authenticator.is_ready() {
            None
        } else {
            Some("signing keys have not been fetched")
        }
    }
}
