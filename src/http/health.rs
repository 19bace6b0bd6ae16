//! Liveness, readiness and the Prometheus scrape endpoint, served by the same server as the API so
//! there is one port to secure.

use std::sync::OnceLock;

use std::collections::{BTreeMap, BTreeSet};

use actix_web::{HttpResponse, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};

use super::state::AppState;
use crate::connectors::graph::Grants;
use crate::connectors::{Connectors, PermissionNeed};
use crate::rules::RuleSet;

/// Cheap on purpose: it proves the process answers, nothing more.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "alive" }))
}

/// 503 until the signing keys are in, and again from the moment a shutdown begins, so load balancers
/// drain this replica while the requests it already accepted finish.
///
/// A failed rules reload does not make it 503: the previous rules keep deciding, and pulling every
/// replica out over one bad edit would turn a typo into an outage. It shows under
/// `rules.lastReload` (`result`, `at`, `problems`, first `error`) for monitoring to alert on.
///
/// An upstream permission the rules need and pimgate lacks does not make it 503 either: PIM must
/// still get answers (the checks that need it are "not evaluated" and `on_error` decides), and every
/// replica shares the credential, so 503 would only add an outage. It shows under
/// `connectors.graph` (`missingPermissions`) and in `degraded`, and in the
/// `pimgate_upstream_permission_missing` gauge.
pub async fn readyz(
    state: web::Data<AppState>,
    // Required, not optional: a server that forgot to register the connectors answers 500 in every
    // test instead of silently leaving the permission report out.
    connectors: web::Data<Connectors>,
) -> HttpResponse {
    let rules = state.rules();
    let keys = state.authenticator.is_ready();
    let stopping = state.is_shutting_down();
    let status = if stopping {
        "shutting down"
    } else if keys {
        "ready"
    } else {
        "not ready"
    };
    let mut body = json!({
        "status": status,
        "rules": {
            "loaded": true,
            "revision": rules.revision,
            "policies": rules.policies.len(),
            "lastReload": state.last_reload(),
        },
        "signingKeys": keys,
    });
    let report = PermissionReport::new(&connectors, &permissions_needed(&rules));
    if let Some(graph) = report.graph_json() {
        body["connectors"] = json!({ "graph": graph });
    }
    let degraded = report.degraded();
    if !degraded.is_empty() {
        body["degraded"] = json!(degraded);
    }
    if keys && !stopping {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Every upstream permission the loaded rules rely on, each once, with what needs it.
pub fn permissions_needed(rules: &RuleSet) -> Vec<PermissionNeed> {
    let needs: BTreeSet<PermissionNeed> = rules
        .policies
        .iter()
        .flat_map(|policy| policy.require.iter().chain(&policy.auto_approve))
        .flat_map(|named| named.check.upstream_permissions())
        .collect();
    needs.into_iter().collect()
}

/// Whether a permission the rules need is granted, as far as pimgate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionState {
    Granted,
    Missing,
    /// No token fetched yet, or its grants cannot be read.
    Unknown,
}

/// The rules' upstream permissions against what the credentials were granted: for `/readyz`, the
/// start-up log and `rules validate`.
#[derive(Debug, Clone)]
pub struct PermissionReport {
    /// Permission name → (what needs it, state); Graph's only, the one upstream whose grants
    /// pimgate can read.
    pub graph: Option<BTreeMap<&'static str, (Vec<&'static str>, PermissionState)>>,
    /// Whether the Graph token's grants are known (`None`: no token yet).
    pub graph_grants: Option<Grants>,
}

impl PermissionReport {
    pub fn new(connectors: &Connectors, needs: &[PermissionNeed]) -> PermissionReport {
        let Some(graph) = connectors.graph.as_ref() else {
            return PermissionReport {
                graph: None,
                graph_grants: None,
            };
        };
        let grants = graph.grants();
        let mut report: BTreeMap<&'static str, (Vec<&'static str>, PermissionState)> =
            BTreeMap::new();
        for need in needs
            .iter()
            .filter(|need| need.permission.connector == crate::connectors::graph::CONNECTOR)
        {
            let state = match &grants {
                None | Some(Grants::Unverifiable) => PermissionState::Unknown,
                Some(grants) if grants.allow(need.permission) => PermissionState::Granted,
                Some(_) => PermissionState::Missing,
            };
            let entry = report
                .entry(need.permission.name)
                .or_insert_with(|| (Vec::new(), state));
            entry.0.push(need.needed_for);
        }
        PermissionReport {
            graph: Some(report),
            graph_grants: grants,
        }
    }

    pub fn missing(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        self.graph
            .iter()
            .flatten()
            .filter(|(_, (_, state))| *state == PermissionState::Missing)
            .map(|(name, (needed_for, _))| (*name, needed_for.clone()))
            .collect()
    }

    /// One sentence per missing permission, naming it and what to do.
    pub fn degraded(&self) -> Vec<String> {
        let mut sentences: Vec<String> = self
            .missing()
            .into_iter()
            .map(|(name, needed_for)| {
                format!(
                    "Microsoft Graph: pimgate's app lacks the application permission `{name}`, needed for {}; those checks are not evaluated until it is granted with admin consent",
                    needed_for.join(" and ")
                )
            })
            .collect();
        let needs_any = self.graph.as_ref().is_some_and(|report| !report.is_empty());
        if needs_any && self.graph_grants == Some(Grants::Unverifiable) {
            sentences.push(
                "Microsoft Graph: pimgate cannot read which permissions its token carries, so properties Graph answers as empty count as unknown and the checks that need them are not evaluated".to_string(),
            );
        }
        sentences
    }

    fn graph_json(&self) -> Option<Value> {
        let report = self.graph.as_ref()?;
        let names = |wanted: PermissionState| -> Vec<&str> {
            report
                .iter()
                .filter(|(_, (_, state))| *state == wanted)
                .map(|(name, _)| *name)
                .collect()
        };
        let missing = names(PermissionState::Missing);
        let permissions = match &self.graph_grants {
            None => "unchecked",
            Some(Grants::Unverifiable) => "unverifiable",
            Some(_) if missing.is_empty() => "granted",
            Some(_) => "missing",
        };
        Some(json!({
            "permissions": permissions,
            "neededPermissions": report.keys().collect::<Vec<_>>(),
            "missingPermissions": missing,
        }))
    }
}

pub async fn metrics() -> HttpResponse {
    match handle() {
        Some(handle) => {
            handle.run_upkeep();
            HttpResponse::Ok()
                .content_type("text/plain; version=0.0.4")
                .body(handle.render())
        }
        None => HttpResponse::ServiceUnavailable().body("metrics recorder unavailable"),
    }
}

/// Drains histogram samples into their buckets every second. The exporter keeps every raw sample
/// until then, so without this an unscraped instance (no Prometheus yet, or scraping stopped) would
/// grow by a few bytes per request forever (`scripts/soak.sh` at ~7,000 req/s: +0.6 MB/s of RSS
/// without this, flat with it).
pub async fn metrics_upkeep() {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Some(handle) = handle() {
            handle.run_upkeep();
        }
    }
}

/// The process-wide recorder. Installed on first use; a second server in the same process (tests)
/// shares it.
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            const LATENCY_BUCKETS: [f64; 12] = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe_metrics();
            metrics::gauge!("pimgate_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        })
        .as_ref()
}

/// Every metric pimgate exports, with its unit and meaning, in one place: the `# HELP` lines of
/// `/metrics` and the list an operator builds dashboards from. Labels are in the comments.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

    // {route, status}
    describe_counter!(
        "pimgate_http_requests_total",
        Unit::Count,
        "HTTP requests answered, by route pattern and status code"
    );
    describe_histogram!(
        "pimgate_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route pattern and status code"
    );
    // {outcome, policy, replay}
    describe_counter!(
        "pimgate_notifications_total",
        Unit::Count,
        "Notifications of decisions, by [[notify]] target and result (sent, failed, dropped)"
    );
    describe_counter!(
        "pimgate_decisions_total",
        Unit::Count,
        "Decisions answered, by outcome, deciding policy and whether it was a replay"
    );
    describe_histogram!(
        "pimgate_decision_duration_seconds",
        Unit::Seconds,
        "Time to evaluate one decision (rule selection and checks)"
    );
    // {kind}
    describe_histogram!(
        "pimgate_check_duration_seconds",
        Unit::Seconds,
        "Time one check evaluation took, by check kind (a check a guard and a policy share is evaluated once per request)"
    );
    // {kind, status = pass|fail|error}
    describe_counter!(
        "pimgate_check_results_total",
        Unit::Count,
        "Check evaluations by check kind and status (one per evaluation: a check a guard and a policy share counts once per request); error means the check could not be evaluated"
    );
    // {reason}
    describe_counter!(
        "pimgate_token_rejections_total",
        Unit::Count,
        "Bearer tokens refused, by reason"
    );
    // {result = ok|error, trigger = startup|periodic|unknown_kid}
    describe_counter!(
        "pimgate_jwks_refreshes_total",
        Unit::Count,
        "Signing key (discovery and JWKS) refreshes, by result and what triggered them"
    );
    // {cache, result = hit|miss}
    describe_counter!(
        "pimgate_cache_requests_total",
        Unit::Count,
        "Cache lookups (connector answers, and `cache=\"token\"` for verified bearer tokens), by cache and whether the answer was cached"
    );
    // {connector, outcome}
    describe_counter!(
        "pimgate_upstream_requests_total",
        Unit::Count,
        "Upstream calls (retries included in one call), by connector and outcome"
    );
    // {connector}
    describe_histogram!(
        "pimgate_upstream_request_duration_seconds",
        Unit::Seconds,
        "Time one upstream call took, retries included, by connector"
    );
    describe_counter!(
        "pimgate_upstream_retries_total",
        Unit::Count,
        "Upstream attempts retried, by connector"
    );
    // {connector, permission}
    describe_gauge!(
        "pimgate_upstream_permission_missing",
        "1 when the connector's last token lacks this permission pimgate uses (what it reads counts as unknown), 0 when granted; /readyz says whether the loaded rules need it"
    );
    describe_counter!(
        "pimgate_upstream_circuit_open_total",
        Unit::Count,
        "Times a connector's circuit breaker opened, by connector"
    );
    describe_counter!(
        "pimgate_audit_write_failures_total",
        Unit::Count,
        "Audit records that could not be written"
    );
    // {revision}
    describe_gauge!(
        "pimgate_rules_info",
        "1 for the rules revision being served (sha256 of the rule files), 0 for one replaced"
    );
    describe_gauge!(
        "pimgate_rules_policies",
        Unit::Count,
        "Policies in the rules being served"
    );
    // {version}
    describe_gauge!(
        "pimgate_build_info",
        "1, labelled with the running pimgate version"
    );
}
