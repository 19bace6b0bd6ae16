//! Connector health as this replica's recent decisions saw it: every upstream call a check made
//! is in its evidence (`upstream: [{connector, operation, outcome, latency_ms, cached}]`), so the
//! console reads health off the ring instead of asking connectors (which would be a call of its own).
//!
//! "Circuit open" means the newest call to that connector was refused by its circuit breaker.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::decision::CheckReport;
use crate::http::recent::RecentDecision;

/// One connector's calls in the kept decisions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectorHealth {
    pub connector: String,
    pub calls: usize,
    /// Calls that ended in anything but an answer (`ok`, `not_found`).
    pub errors: usize,
    /// Calls answered from pimgate's cache.
    pub cached: usize,
    pub circuit_open: bool,
    /// The newest failed call: (when, outcome, operation).
    pub last_error: Option<(DateTime<Utc>, String, String)>,
}

impl ConnectorHealth {
    /// Cache hits as a share of calls, in percent.
    pub fn cache_hit_percent(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.cached as f64 * 100.0 / self.calls as f64
        }
    }
}

/// Every check report of a decision: the policy's, the guards', the shadow policies'.
pub fn all_checks(entry: &RecentDecision) -> impl Iterator<Item = &CheckReport> {
    let decision = &entry.decision;
    decision
        .checks
        .iter()
        .chain(decision.guards.iter().flat_map(|guard| &guard.checks))
        .chain(decision.shadow.iter().flat_map(|shadow| &shadow.checks))
}

/// Health per connector over `newest_first` (the ring, newest first), by connector name.
pub fn connector_health(newest_first: &[std::sync::Arc<RecentDecision>]) -> Vec<ConnectorHealth> {
    let mut by_name: BTreeMap<String, ConnectorHealth> = BTreeMap::new();
    for entry in newest_first {
        for report in all_checks(entry) {
            let Some(Value::Array(calls)) = report.outcome.evidence.get("upstream") else {
                continue;
            };
            for call in calls {
                let text = |key: &str| call.get(key).and_then(Value::as_str).unwrap_or("");
                let connector = text("connector");
                if connector.is_empty() {
                    continue;
                }
                let outcome = text("outcome");
                let health =
                    by_name
                        .entry(connector.to_string())
                        .or_insert_with(|| ConnectorHealth {
                            connector: connector.to_string(),
                            ..ConnectorHealth::default()
                        });
                let newest = health.calls == 0;
                health.calls += 1;
                if call.get("cached").and_then(Value::as_bool) == Some(true) {
                    health.cached += 1;
                }
                if newest {
                    health.circuit_open = outcome == "circuit_open";
                }
                if !matches!(outcome, "ok" | "not_found") {
                    health.errors += 1;
                    if health.last_error.is_none() {
                        health.last_error = Some((
                            entry.answered_at,
                            outcome.to_string(),
                            text("operation").to_string(),
                        ));
                    }
                }
            }
        }
    }
    by_name.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{CheckOutcome, CheckStatus};
    use crate::decision::{CheckStage, Decision};
    use crate::http::recent::RequestSummary;
    use crate::vocabulary::Outcome;
    use serde_json::json;
    use std::sync::Arc;

    fn entry(minute: u32, calls: Value) -> Arc<RecentDecision> {
        let mut outcome = CheckOutcome::pass("ok");
        outcome.status = CheckStatus::Pass;
        outcome.evidence.insert("upstream", calls);
        let at = DateTime::parse_from_rfc3339(&format!("2026-11-29T10:{minute:02}:00Z"))
            .map(|time| time.with_timezone(&Utc))
            .unwrap_or_default();
        Arc::new(RecentDecision {
            answered_at: at,
            decision: Arc::new(Decision {
                evaluation_id: uuid::Uuid::now_v7(),
                stage: crate::payload::Stage::PreApproval,
                outcome: Outcome::Approved,
                reasons: vec![],
                policy: None,
                skipped_policies: vec![],
                checks: vec![CheckReport {
                    kind: "itsm".into(),
                    stage: CheckStage::Require,
                    outcome,
                    duration_ms: 1.0,
                }],
                shadow: vec![],
                guards: vec![],
                rules_revision: "r".into(),
                evaluated_at: at,
                duration_ms: 1.0,
            }),
            request: RequestSummary {
                principal_id: "p".into(),
                resource_type: "entraRoles",
                action: "selfActivate".into(),
                target_id: "t".into(),
                role_name: None,
                scope: "/".into(),
                ticket: None,
                justification: None,
            },
            replay: false,
            latency_ms: 1.0,
        })
    }

    #[test]
    fn calls_errors_cache_hits_and_the_newest_error_are_counted_per_connector() {
        // Newest first: minute 3 is the newest decision.
        let ring = vec![
            entry(
                3,
                json!([{"connector": "servicenow", "operation": "GET /t", "outcome": "circuit_open", "cached": false}]),
            ),
            entry(
                2,
                json!([{"connector": "servicenow", "operation": "GET /t", "outcome": "timeout", "cached": false},
                            {"connector": "graph", "operation": "GET /users", "outcome": "ok", "cached": true}]),
            ),
            entry(
                1,
                json!([{"connector": "servicenow", "operation": "GET /t", "outcome": "ok", "cached": false},
                            {"connector": "graph", "operation": "GET /users", "outcome": "ok", "cached": false}]),
            ),
        ];

        let health = connector_health(&ring);

        assert_eq!(health.len(), 2);
        let graph = &health[0];
        assert_eq!((graph.calls, graph.errors, graph.cached), (2, 0, 1));
        assert!((graph.cache_hit_percent() - 50.0).abs() < f64::EPSILON);
        assert!(!graph.circuit_open && graph.last_error.is_none());
        let servicenow = &health[1];
        assert_eq!((servicenow.calls, servicenow.errors), (3, 2));
        assert!(servicenow.circuit_open);
        let (_, outcome, operation) = servicenow.last_error.clone().unwrap_or_default();
        assert_eq!(
            (outcome.as_str(), operation.as_str()),
            ("circuit_open", "GET /t")
        );
    }
}
