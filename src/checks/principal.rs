//! PLACEHOLDER (principal check): being written by the checks helper.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{BuildEnv, SpecProblem};
use super::{Check, CheckContext, CheckOutcome};

/// `principal: { allow: [oncall-team], deny: [break-glass, "0c2d...-guid"] }` (list names or object ids)
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PrincipalSpec {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

#[derive(Debug)]
struct Pending;

#[async_trait]
impl Check for Pending {
    async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
        CheckOutcome::error("the principal check is not implemented yet")
    }
}

pub fn build(
    _spec: &PrincipalSpec,
    _env: &BuildEnv<'_>,
) -> Result<Arc<dyn Check>, Vec<SpecProblem>> {
    Ok(Arc::new(Pending))
}
