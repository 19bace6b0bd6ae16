//! PLACEHOLDER (itsm check): being written by a helper. Same names, no logic.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{BuildEnv, SpecProblem};
use super::{Check, CheckContext, CheckOutcome};

/// `itsm: { system: servicenow, tables: [change_request], states: [Implement], assigned_to_requester: true, covers_activation: true }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItsmSpec {
    /// `servicenow` or `jira`.
    pub system: String,
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub states: Vec<String>,
    #[serde(default)]
    pub status_categories: Vec<String>,
    #[serde(default)]
    pub assigned_to_requester: bool,
    #[serde(default)]
    pub covers_activation: bool,
}

#[derive(Debug)]
struct Pending;

#[async_trait]
impl Check for Pending {
    async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
        CheckOutcome::error("the itsm check is not implemented yet")
    }
}

pub fn required_connector(spec: &ItsmSpec) -> Option<&'static str> {
    match spec.system.as_str() {
        "servicenow" => Some("servicenow"),
        "jira" => Some("jira"),
        _ => None,
    }
}

pub fn build(_spec: &ItsmSpec, _env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<SpecProblem>> {
    Ok(Arc::new(Pending))
}
