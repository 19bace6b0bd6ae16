//! How a problem in the operator's configuration is said: the key, what is wrong, and the fix.
//! Settings and connector settings both report it, so it lives below both.

use std::fmt;

/// One thing wrong with the configuration, phrased so the operator can fix it without reading code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsProblem {
    /// Dotted key, e.g. `server.listen`.
    pub key: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for SettingsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}; fix: {}", self.key, self.message, self.fix)
    }
}
