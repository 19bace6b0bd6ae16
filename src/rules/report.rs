//! How rule problems are gathered: a [`Problem`] names its key path, and the [`Report`] places it
//! in its file (line and column via `locate`), so every stage can say what is wrong without knowing
//! where the text came from.

use std::path::PathBuf;

use yaml_serde::Value;

use crate::rules::locate::locate;
use crate::rules::{RuleProblem, Severity};

use super::spec::Field;

/// One problem found in a spec, not yet placed in its file.
#[derive(Debug, Clone)]
pub(super) struct Problem {
    pub severity: Severity,
    /// Dotted key path, e.g. `policies[2].require[0].duration.max`.
    pub key: String,
    pub message: String,
    pub fix: String,
}

impl Problem {
    pub(super) fn error(key: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            key: key.to_string(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    pub(super) fn warning(key: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(key, message, fix)
        }
    }
}

/// Whether any of `problems` is an error (warnings do not stop a rule from loading).
pub(super) fn has_errors(problems: &[Problem]) -> bool {
    problems
        .iter()
        .any(|problem| problem.severity == Severity::Error)
}

/// One rule file as read from disk.
pub(super) struct Source {
    pub path: PathBuf,
    /// The name inside the rules folder (or the file name), hashed into the revision.
    pub name: String,
    pub text: String,
}

/// Every problem of a load, each with the index of its file in the sources.
#[derive(Default)]
pub(super) struct Report {
    pub problems: Vec<(usize, RuleProblem)>,
}

impl Report {
    /// Adds `problem` of file `file`, located in that file's text.
    pub(super) fn add(&mut self, sources: &[Source], file: usize, problem: Problem) {
        let (path, location) = match sources.get(file) {
            Some(source) => (source.path.clone(), locate(&source.text, &problem.key)),
            None => (PathBuf::new(), None),
        };
        self.problems.push((
            file,
            RuleProblem {
                severity: problem.severity,
                file: path,
                line: location.map(|(line, _)| line),
                column: location.map(|(_, column)| column),
                key: problem.key,
                message: problem.message,
                fix: problem.fix,
            },
        ));
    }

    pub(super) fn add_all(&mut self, sources: &[Source], file: usize, problems: Vec<Problem>) {
        for problem in problems {
            self.add(sources, file, problem);
        }
    }

    pub(super) fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|(_, problem)| problem.severity == Severity::Error)
            .count()
    }
}

/// The typed reading of `field`, or `None` after reporting serde's message at `key` (refined to
/// the unknown field it names, if any).
pub(super) fn read<'f, T>(
    out: &mut Vec<Problem>,
    key: &str,
    field: &'f Field<T>,
    fix: &str,
) -> Option<&'f T> {
    match &field.typed {
        Ok(typed) => Some(typed),
        Err(message) => {
            let key = match quoted_after(message, "unknown field `") {
                Some(unknown) => format!("{key}.{unknown}"),
                None => key.to_string(),
            };
            out.push(Problem::error(&key, message.clone(), fix));
            None
        }
    }
}

/// The mapping a spec was read from, or a problem saying what was found instead.
pub(super) fn mapping<'v>(
    out: &mut Vec<Problem>,
    key: &str,
    value: &'v Value,
    what: &str,
) -> Option<&'v yaml_serde::Mapping> {
    match value {
        Value::Mapping(mapping) => Some(mapping),
        other => {
            out.push(Problem::error(
                key,
                format!("{what} must be a mapping, found {}", kind_of(other)),
                format!("write `{what}` as `key: value` lines"),
            ));
            None
        }
    }
}

/// A problem for every key of `mapping` (the value a spec was read from) not in `known`, with a
/// "did you mean".
pub(super) fn unknown_keys(
    out: &mut Vec<Problem>,
    prefix: &str,
    mapping: &yaml_serde::Mapping,
    known: &[&str],
) {
    for (key, _) in mapping.iter() {
        let name = key_text(key);
        if known.contains(&name.as_str()) {
            continue;
        }
        let fix = match closest(&name, known.iter().copied()) {
            Some(near) => format!("did you mean `{near}`? Known keys: {}", known.join(", ")),
            None => format!("known keys: {}", known.join(", ")),
        };
        out.push(Problem::error(
            &join(prefix, &name),
            format!("unknown key `{name}`"),
            fix,
        ));
    }
}

pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

pub(super) fn key_text(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        other => yaml_serde::to_string(other)
            .map(|text| text.trim().to_string())
            .unwrap_or_default(),
    }
}

pub(super) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text between `prefix` and the next backtick, e.g. the field in "unknown field `x`".
pub(super) fn quoted_after<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let start = text.find(prefix)? + prefix.len();
    let rest = text.get(start..)?;
    rest.get(..rest.find('`')?)
}

/// The known word nearest to `word` (case-insensitive edit distance ≤ a third of its length).
pub(super) fn closest<'k>(word: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let word = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    known
        .map(|candidate| {
            (
                strsim::levenshtein(&word, &candidate.to_ascii_lowercase()),
                candidate,
            )
        })
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

pub(super) fn quote_all(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn near_misses_get_a_suggestion_and_strangers_do_not() {
        assert_eq!(
            closest("requre", ["require", "reason"].into_iter()),
            Some("require")
        );
        assert_eq!(closest("colour", ["require", "reason"].into_iter()), None);
    }
}
