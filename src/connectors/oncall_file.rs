//! PLACEHOLDER (oncall_file connector): being written by a helper. Same names, no logic.

use serde::{Deserialize, Serialize};

use super::BuildContext;
use crate::settings::SettingsProblem;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OncallFileSettings {
    pub base_url: Option<String>,
}

#[derive(Debug)]
pub struct OncallFile;

impl OncallFile {
    pub fn new(
        _settings: &OncallFileSettings,
        _context: &BuildContext,
    ) -> Result<Self, Vec<SettingsProblem>> {
        Ok(OncallFile)
    }
}
