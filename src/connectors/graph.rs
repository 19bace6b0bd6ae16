//! PLACEHOLDER (graph connector): being written by a helper. Same names, no logic.

use serde::{Deserialize, Serialize};

use super::BuildContext;
use crate::settings::SettingsProblem;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSettings {
    pub base_url: Option<String>,
}

#[derive(Debug)]
pub struct Graph;

impl Graph {
    pub fn new(
        _settings: &GraphSettings,
        _context: &BuildContext,
    ) -> Result<Self, Vec<SettingsProblem>> {
        Ok(Graph)
    }
}
