//! PLACEHOLDER (oncall check): being written by a helper. Same names, no logic.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{BuildEnv, SpecProblem};
use super::{Check, CheckContext, CheckOutcome};

/// `oncall: { source: pagerduty, schedules: [P1ABCDE], max_escalation_level: 1 }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OncallSpec {
    /// `pagerduty`, `opsgenie` or `file`.
    pub source: String,
    #[serde(default)]
    pub schedules: Vec<String>,
    #[serde(default)]
    pub escalation_policies: Vec<String>,
    #[serde(default)]
    pub max_escalation_level: Option<u32>,
}

#[derive(Debug)]
struct Pending;

#[async_trait]
impl Check for Pending {
    async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
        CheckOutcome::error("the oncall check is not implemented yet")
    }
}

pub fn required_connector(spec: &OncallSpec) -> Option<&'static str> {
    match spec.source.as_str() {
        "pagerduty" => Some("pagerduty"),
        "opsgenie" => Some("opsgenie"),
        "file" => Some("oncall_file"),
        _ => None,
    }
}

pub fn build(_spec: &OncallSpec, _env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<SpecProblem>> {
    Ok(Arc::new(Pending))
}
