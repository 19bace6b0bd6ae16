//! PLACEHOLDER (jira connector): being written by a helper. Same names, no logic.

use serde::{Deserialize, Serialize};

use super::BuildContext;
use crate::settings::SettingsProblem;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JiraSettings {
    pub base_url: Option<String>,
}

#[derive(Debug)]
pub struct Jira;

impl Jira {
    pub fn new(
        _settings: &JiraSettings,
        _context: &BuildContext,
    ) -> Result<Self, Vec<SettingsProblem>> {
        Ok(Jira)
    }
}
