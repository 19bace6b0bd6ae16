//! PLACEHOLDER (window check): being written by the checks helper.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{BuildEnv, SpecProblem};
use super::{Check, CheckContext, CheckOutcome};

/// A named window in the rules' `windows:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub timezone: String,
    pub weekly: Vec<WeeklySlot>,
    #[serde(default)]
    pub except_dates: Vec<String>,
}

/// `{ days: [Tue, Thu], from: "18:00", to: "23:00" }`; `to` before `from` crosses midnight.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeeklySlot {
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
}

#[derive(Debug)]
pub struct CompiledWindow {
    pub name: String,
}

pub fn compile(name: &str, _spec: &WindowSpec) -> Result<CompiledWindow, Vec<SpecProblem>> {
    Ok(CompiledWindow {
        name: name.to_string(),
    })
}

/// `window: change-windows`, or `window: { name: change-windows, cover: whole }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WindowCheckSpec {
    Name(String),
    Full {
        name: String,
        /// `start` (default): the activation must start inside the window; `whole`: start and end.
        #[serde(default)]
        cover: Option<String>,
    },
}

#[derive(Debug)]
struct Pending;

#[async_trait]
impl Check for Pending {
    async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
        CheckOutcome::error("the window check is not implemented yet")
    }
}

pub fn build(
    _spec: &WindowCheckSpec,
    _env: &BuildEnv<'_>,
) -> Result<Arc<dyn Check>, Vec<SpecProblem>> {
    Ok(Arc::new(Pending))
}
