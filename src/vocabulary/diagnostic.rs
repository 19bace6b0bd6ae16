//! How pimgate reports a problem in operator input (settings, connector settings, rule files, a
//! check's spec, a `when:` expression, rule tests, a reload): one [`Diagnostic`] with where it is,
//! the key, what is wrong and the fix, printed one way. Every layer reports it, so it lives below all.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Whether a problem stops the input from being used (`error`) or is only worth knowing (`warning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One thing wrong with operator input, located well enough, and phrased so, that the operator can
/// fix it at 3 a.m. without reading code. Built where the problem is found (`key` relative to what
/// that code sees), then placed by its callers: [`Diagnostic::under`] for the enclosing key,
/// [`Diagnostic::in_file`] and [`Diagnostic::at`] for where it is written. Its fields are also the
/// JSON shape of a problem (`severity`, `file`, `line`, `column`, `key`, `message`, `fix`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file the input came from; empty when it has none of its own (settings merged from a file
    /// and the environment, a check's spec not yet placed in its rule file).
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key path, e.g. `server.listen` or `policies[2].require[0].duration.max`; empty for
    /// the input as a whole.
    pub key: String,
    pub message: String,
    /// What to do about it; empty when there is nothing better to say than the message.
    pub fix: String,
}

impl Diagnostic {
    /// A problem that stops the input from being used.
    pub fn error(
        key: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: PathBuf::new(),
            line: None,
            column: None,
            key: key.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// A problem worth knowing that does not stop the input from being used.
    pub fn warning(
        key: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(key, message, fix)
        }
    }

    /// The same problem, its key read below `prefix` (`max` under `policies[0].require[0].duration`
    /// is `policies[0].require[0].duration.max`; an empty key becomes `prefix` itself).
    pub fn under(mut self, prefix: &str) -> Self {
        self.key = match (prefix.is_empty(), self.key.is_empty()) {
            (true, _) => self.key,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{}", self.key),
        };
        self
    }

    /// The same problem, in `file`.
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = file.into();
        self
    }

    /// The same problem, at `line` and `column` (both 1-based) of its file.
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `file:line:column: severity: `key`: message. Fix: fix`, the one way a problem is printed (CLI,
/// start-up log, reload log, `/readyz`); the location, key and fix are left out when there are none.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.as_os_str().is_empty() {
            write!(f, "{}", self.file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(column) = self.column {
                    write!(f, ":{column}")?;
                }
            }
            write!(f, ": ")?;
        }
        write!(f, "{}: ", self.severity.as_str())?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        write!(f, "{}.", self.message.trim_end_matches('.'))?;
        if !self.fix.is_empty() {
            write!(f, " Fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// Every problem on its own indented line, for an error message that lists them all.
pub fn format_problems(problems: &[Diagnostic]) -> String {
    problems
        .iter()
        .map(|problem| format!("  {problem}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_problem_prints_its_place_severity_key_message_and_fix() {
        let problem = Diagnostic::error("max", "too long.", "shorten it")
            .under("policies[0].require[0].duration")
            .in_file("rules/a.yaml")
            .at(7, 9);
        assert_eq!(
            problem.to_string(),
            "rules/a.yaml:7:9: error: `policies[0].require[0].duration.max`: too long. Fix: shorten it"
        );
    }

    #[test]
    fn a_problem_without_file_key_or_fix_prints_only_what_it_has() {
        let problem = Diagnostic::warning("", "no policies", "");
        assert_eq!(problem.to_string(), "warning: no policies.");
        let setting = Diagnostic::error("server.listen", "not an address", "write host:port");
        assert_eq!(
            setting.to_string(),
            "error: `server.listen`: not an address. Fix: write host:port"
        );
        let file_only = Diagnostic::error("", "cannot read", "").in_file("rules");
        assert_eq!(file_only.to_string(), "rules: error: cannot read.");
    }

    #[test]
    fn under_an_empty_key_names_the_prefix_and_under_nothing_keeps_the_key() {
        assert_eq!(Diagnostic::error("", "m", "f").under("a.b").key, "a.b");
        assert_eq!(Diagnostic::error("c", "m", "f").under("").key, "c");
    }

    #[test]
    fn the_json_shape_keeps_its_field_names_and_lowercase_severity() {
        let problem = Diagnostic::warning("k", "m", "f")
            .in_file("r.yaml")
            .at(1, 2);
        let json = serde_json::to_value(&problem).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({
                "severity": "warning", "file": "r.yaml", "line": 1, "column": 2,
                "key": "k", "message": "m", "fix": "f"
            })
        );
    }
}
