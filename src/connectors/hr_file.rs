//! PLACEHOLDER (hr_file connector): being written by a helper. Same names, no logic.

use serde::{Deserialize, Serialize};

use super::BuildContext;
use crate::settings::SettingsProblem;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HrFileSettings {
    pub base_url: Option<String>,
}

#[derive(Debug)]
pub struct HrFile;

impl HrFile {
    pub fn new(
        _settings: &HrFileSettings,
        _context: &BuildContext,
    ) -> Result<Self, Vec<SettingsProblem>> {
        Ok(HrFile)
    }
}
