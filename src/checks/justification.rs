//! PLACEHOLDER (justification check): being written by the checks helper.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{BuildEnv, SpecProblem};
use super::{Check, CheckContext, CheckOutcome};

/// `justification: { min_length: 20, min_words: 3, deny_patterns: [...], must_reference_ticket: true }`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct JustificationSpec {
    pub min_length: Option<usize>,
    pub min_words: Option<usize>,
    /// Regexes; a justification matching any of them is rejected as too vague.
    pub deny_patterns: Vec<String>,
    /// The justification must mention the ticket number (from ticketInfo, or any ticket-looking token).
    pub must_reference_ticket: bool,
}

#[derive(Debug)]
struct Pending;

#[async_trait]
impl Check for Pending {
    async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
        CheckOutcome::error("the justification check is not implemented yet")
    }
}

pub fn build(
    _spec: &JustificationSpec,
    _env: &BuildEnv<'_>,
) -> Result<Arc<dyn Check>, Vec<SpecProblem>> {
    Ok(Arc::new(Pending))
}
