//! How rule problems are gathered: a [`Diagnostic`] names its key path, and the [`Report`] places it
//! in its file (line and column via `locate`), so every stage can say what is wrong without knowing
//! where the text came from.

use std::path::PathBuf;

use yaml_serde::Value;

use crate::rules::locate::locate;
use crate::vocabulary::diagnostic::Diagnostic;

use super::spec::Field;

/// Whether any of `problems` is an error (warnings do not stop a rule from loading).
pub(super) fn has_errors(problems: &[Diagnostic]) -> bool {
    problems.iter().any(Diagnostic::is_error)
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
    pub problems: Vec<(usize, Diagnostic)>,
}

impl Report {
    /// Adds `problem` (its key relative to the file's root) of file `file`, located in that file's
    /// text.
    pub(super) fn add(&mut self, sources: &[Source], file: usize, problem: Diagnostic) {
        let placed = match sources.get(file) {
            Some(source) => {
                let placed = problem.in_file(source.path.clone());
                match locate(&source.text, &placed.key) {
                    Some((line, column)) => placed.at(line, column),
                    None => placed,
                }
            }
            None => problem,
        };
        self.problems.push((file, placed));
    }

    pub(super) fn add_all(&mut self, sources: &[Source], file: usize, problems: Vec<Diagnostic>) {
        for problem in problems {
            self.add(sources, file, problem);
        }
    }

    pub(super) fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|(_, problem)| problem.is_error())
            .count()
    }
}

/// The typed reading of `field`, or `None` after reporting serde's message at `key` (refined to
/// the unknown field it names, if any).
pub(super) fn read<'f, T>(
    out: &mut Vec<Diagnostic>,
    key: &str,
    field: &'f Field<T>,
    fix: &str,
) -> Option<&'f T> {
    match &field.typed {
        Ok(typed) => Some(typed),
        Err(message) => {
            let key = match quoted_after(message, "unknown field `") {
                Some(unknown) => child(key, unknown),
                None => key.to_string(),
            };
            out.push(Diagnostic::error(&key, message.clone(), fix));
            None
        }
    }
}

/// The mapping a spec was read from, or a problem saying what was found instead.
pub(super) fn mapping<'v>(
    out: &mut Vec<Diagnostic>,
    key: &str,
    value: &'v Value,
    what: &str,
) -> Option<&'v yaml_serde::Mapping> {
    match value {
        Value::Mapping(mapping) => Some(mapping),
        other => {
            out.push(Diagnostic::error(
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
pub(crate) fn unknown_keys(
    out: &mut Vec<Diagnostic>,
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
        out.push(Diagnostic::error(
            join(prefix, &name),
            format!("unknown key `{name}`"),
            fix,
        ));
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        child(prefix, key)
    }
}

/// The path of key `name` below `parent`. An empty name (`"": 1` in YAML) is written `""`, so a
/// path never ends in a dot.
pub(super) fn child(parent: &str, name: &str) -> String {
    if name.is_empty() {
        format!("{parent}.\"\"")
    } else {
        format!("{parent}.{name}")
    }
}

pub(crate) fn key_text(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        other => yaml_serde::to_string(other)
            .map(|text| text.trim().to_string())
            .unwrap_or_default(),
    }
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
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
