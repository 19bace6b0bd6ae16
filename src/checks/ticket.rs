//! PLACEHOLDER (ticket check): being written by the checks helper.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{BuildEnv, SpecProblem};
use super::{Check, CheckContext, CheckOutcome};

/// `ticket: { systems: [ServiceNow, Jira], patterns: { ServiceNow: "^(CHG|INC)[0-9]{7}$" }, from_justification: true }`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TicketSpec {
    /// Accepted `ticketSystem` values (case-insensitive); empty = any.
    pub systems: Vec<String>,
    /// Per system (case-insensitive key), an anchored regex the ticket number must match.
    pub patterns: std::collections::BTreeMap<String, String>,
    /// Accept a ticket number found in the justification when `ticketInfo` is empty.
    pub from_justification: bool,
}

#[derive(Debug)]
struct Pending;

#[async_trait]
impl Check for Pending {
    async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
        CheckOutcome::error("the ticket check is not implemented yet")
    }
}

pub fn build(_spec: &TicketSpec, _env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<SpecProblem>> {
    Ok(Arc::new(Pending))
}
