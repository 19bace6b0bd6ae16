//! PLACEHOLDER (duration check): being written by the checks helper.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{BuildEnv, SpecProblem};
use super::{Check, CheckContext, CheckOutcome};

/// `duration: { max: PT2H, allow_no_expiration: false }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationSpec {
    /// ISO-8601 duration, e.g. `PT2H`.
    pub max: String,
    #[serde(default)]
    pub allow_no_expiration: bool,
}

#[derive(Debug)]
struct Pending;

#[async_trait]
impl Check for Pending {
    async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
        CheckOutcome::error("the duration check is not implemented yet")
    }
}

pub fn build(
    _spec: &DurationSpec,
    _env: &BuildEnv<'_>,
) -> Result<Arc<dyn Check>, Vec<SpecProblem>> {
    Ok(Arc::new(Pending))
}
