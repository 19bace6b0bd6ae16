//! PLACEHOLDER (hr check): being written by a helper. Same names, no logic.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{BuildEnv, SpecProblem};
use super::{Check, CheckContext, CheckOutcome};

/// `hr: { source: graph, account_enabled: true, not_leaving_within: P14D, employee_types: [Employee] }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HrSpec {
    /// `graph` or `file`.
    pub source: String,
    #[serde(default)]
    pub account_enabled: Option<bool>,
    #[serde(default)]
    pub not_leaving_within: Option<String>,
    #[serde(default)]
    pub employee_types: Vec<String>,
    #[serde(default)]
    pub departments: Vec<String>,
}

#[derive(Debug)]
struct Pending;

#[async_trait]
impl Check for Pending {
    async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
        CheckOutcome::error("the hr check is not implemented yet")
    }
}

pub fn required_connector(spec: &HrSpec) -> Option<&'static str> {
    match spec.source.as_str() {
        "graph" => Some("graph"),
        "file" => Some("hr_file"),
        _ => None,
    }
}

pub fn build(_spec: &HrSpec, _env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<SpecProblem>> {
    Ok(Arc::new(Pending))
}
