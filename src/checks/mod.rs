//! Pluggable checks: one trait with one async method, one file per kind, one registry.
//!
//! Checks never decide the outcome themselves: they report pass / fail / could-not-evaluate with
//! evidence, and `decision` applies the policy's failure mode. Timeouts and concurrency are applied
//! around every check in one place (`decision::evaluate`), not inside each.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use evidence::Evidence;

use crate::payload::{ActivationInterval, ActivationRequest, Stage};

/// What a check found. `Error` means "could not be evaluated" (upstream down, timeout, bad data):
/// it is never read as a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Fail,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckOutcome {
    pub status: CheckStatus,
    /// A sentence a requester can act on, e.g. "requested PT8H exceeds the PT2H maximum".
    pub message: String,
    /// Machine-readable facts behind the message, for the audit record and `evaluate`.
    pub evidence: Evidence,
    /// The instant the evidence was established for: the effective start for a check that judges
    /// the activation interval, the decision time for one that can only see the present (a ticket's
    /// state), `None` for a timeless check (a justification's text). `decision` auto-approves only on
    /// evidence that holds at the activation's effective start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holds_at: Option<DateTime<Utc>>,
}

impl CheckOutcome {
    pub fn pass(message: impl Into<String>) -> Self {
        Self {
            status: CheckStatus::Pass,
            message: message.into(),
            evidence: Default::default(),
            holds_at: None,
        }
    }

    pub fn fail(message: impl Into<String>) -> Self {
        Self {
            status: CheckStatus::Fail,
            message: message.into(),
            evidence: Default::default(),
            holds_at: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            status: CheckStatus::Error,
            message: message.into(),
            evidence: Default::default(),
            holds_at: None,
        }
    }

    pub fn with_evidence(mut self, key: &'static str, value: impl Into<serde_json::Value>) -> Self {
        self.evidence.insert(key, value);
        self
    }

    /// Says for which instant the evidence was established (see [`CheckOutcome::holds_at`]).
    pub fn holding_at(mut self, at: DateTime<Utc>) -> Self {
        self.holds_at = Some(at);
        self
    }
}

/// Everything a check may look at. `now` is injected so rule tests run on a fixed clock.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    pub request: &'a ActivationRequest,
    pub now: DateTime<Utc>,
    /// When the activation would run, computed once from the request and `now`: every
    /// time-sensitive check judges this span, never `now` or the raw requested start.
    pub interval: ActivationInterval,
    /// When the decision must be made; upstream calls (and their retries) stop before it.
    pub deadline: tokio::time::Instant,
    /// Which of PIM's callbacks asks (checks that hand the request to another system say so).
    pub stage: Stage,
}

impl<'a> CheckContext<'a> {
    /// The context of one decision: the effective interval is computed here, once.
    pub fn new(
        request: &'a ActivationRequest,
        now: DateTime<Utc>,
        deadline: tokio::time::Instant,
    ) -> Self {
        Self {
            request,
            now,
            interval: ActivationInterval::of(&request.schedule, now),
            deadline,
            stage: Stage::PreApproval,
        }
    }

    /// The same context for the stage that asks (the pre-approval stage unless said otherwise).
    pub fn at_stage(self, stage: Stage) -> Self {
        Self { stage, ..self }
    }
}

/// How a configured check relates to the activation's time, for the load-time lint that warns about
/// policies judging an unbounded start (`rules::start_bounds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRole {
    /// The verdict does not depend on when the activation runs.
    Timeless,
    /// The verdict judges the effective interval (a window, a roster, a planned change, a leave date).
    JudgesInterval,
    /// The check refuses starts too far ahead (a `start` check with `max_future`).
    BoundsLeadTime,
}

/// One configured check, ready to run. Built once when rules load; shared by all requests.
#[async_trait]
pub trait Check: Send + Sync + fmt::Debug {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome;

    /// How this check relates to time; most kinds are timeless.
    fn time_role(&self) -> TimeRole {
        TimeRole::Timeless
    }

    /// Upstream permissions this check relies on (e.g. a Graph application permission), so `/readyz`,
    /// the start-up log and `rules validate` can name one pimgate lacks. Most checks need none.
    fn upstream_permissions(&self) -> Vec<crate::connectors::PermissionNeed> {
        Vec::new()
    }
}

/// A built check with the name operators gave it in the rules (`duration`, `ticket`, ...).
#[derive(Debug, Clone)]
pub struct NamedCheck {
    pub kind: &'static str,
    pub check: Arc<dyn Check>,
    /// `Some(section)` when the connector this check asks (`servicenow`, `http.compliance`) was not
    /// configured when the rules were built: the check can only report "not evaluated". Set by
    /// `rules` beside its load warning, so `evaluate --offline` and `rules test` read it here
    /// instead of parsing the warning's words.
    pub unconfigured: Option<String>,
    /// The check as written in the rules (its kind and spec, map keys in sorted order), so two
    /// identical checks anywhere in one rule set are known to be one: `None` for a check not built
    /// from a rule file (tests, benchmarks).
    pub fingerprint: Option<String>,
    /// Set at load for a check whose fingerprint occurs more than once in the rule set (a guard's and
    /// a policy's, say): its slot in the per-request memo, so `decision` evaluates it once per
    /// request and hands every place that names it the same outcome. `None`: evaluated where named.
    pub shared: Option<usize>,
}

pub mod auth_methods;
pub mod duration;
pub mod evidence;
pub mod group;
pub mod hr;
pub mod http;
pub mod itsm;
pub mod justification;
pub mod oncall;
pub mod opa;
pub mod principal;
pub mod registry;
pub mod request_document;
pub mod start;
pub mod ticket;
pub mod util;
pub mod window;

#[cfg(test)]
pub(crate) mod test_support;
