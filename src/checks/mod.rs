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

use crate::payload::ActivationRequest;

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
    pub evidence: serde_json::Map<String, serde_json::Value>,
}

impl CheckOutcome {
    pub fn pass(message: impl Into<String>) -> Self {
        Self {
            status: CheckStatus::Pass,
            message: message.into(),
            evidence: Default::default(),
        }
    }

    pub fn fail(message: impl Into<String>) -> Self {
        Self {
            status: CheckStatus::Fail,
            message: message.into(),
            evidence: Default::default(),
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            status: CheckStatus::Error,
            message: message.into(),
            evidence: Default::default(),
        }
    }

    pub fn with_evidence(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.evidence.insert(key.to_string(), value.into());
        self
    }
}

/// Everything a check may look at. `now` is injected so rule tests run on a fixed clock.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    pub request: &'a ActivationRequest,
    pub now: DateTime<Utc>,
    /// When the decision must be made; upstream calls (and their retries) stop before it.
    pub deadline: tokio::time::Instant,
}

/// One configured check, ready to run. Built once when rules load; shared by all requests.
#[async_trait]
pub trait Check: Send + Sync + fmt::Debug {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome;

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
}

pub mod duration;
pub mod hr;
pub mod itsm;
pub mod justification;
pub mod oncall;
pub mod principal;
pub mod registry;
pub mod start;
pub mod ticket;
pub mod util;
pub mod window;

#[cfg(test)]
pub(crate) mod test_support;
