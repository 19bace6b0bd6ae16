//! PLACEHOLDER (opsgenie connector): being written by a helper. Same names, no logic.

use serde::{Deserialize, Serialize};

use super::BuildContext;
use crate::settings::SettingsProblem;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpsgenieSettings {
    pub base_url: Option<String>,
}

#[derive(Debug)]
pub struct Opsgenie;

impl Opsgenie {
    pub fn new(
        _settings: &OpsgenieSettings,
        _context: &BuildContext,
    ) -> Result<Self, Vec<SettingsProblem>> {
        Ok(Opsgenie)
    }
}
