//! PLACEHOLDER (servicenow connector): being written by a helper. Same names, no logic.

use serde::{Deserialize, Serialize};

use super::BuildContext;
use crate::settings::SettingsProblem;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNowSettings {
    pub base_url: Option<String>,
}

#[derive(Debug)]
pub struct ServiceNow;

impl ServiceNow {
    pub fn new(
        _settings: &ServiceNowSettings,
        _context: &BuildContext,
    ) -> Result<Self, Vec<SettingsProblem>> {
        Ok(ServiceNow)
    }
}
