//! PLACEHOLDER (start check): being written by the checks helper.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{BuildEnv, SpecProblem};
use super::{Check, CheckContext, CheckOutcome};

/// `start: { max_past: PT5M, max_future: P7D }`: bounds on the requested start time.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StartSpec {
    pub max_past: Option<String>,
    pub max_future: Option<String>,
}

#[derive(Debug)]
struct Pending;

#[async_trait]
impl Check for Pending {
    async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
        CheckOutcome::error("the start check is not implemented yet")
    }
}

pub fn build(_spec: &StartSpec, _env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<SpecProblem>> {
    Ok(Arc::new(Pending))
}
