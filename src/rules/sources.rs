//! Where rule text comes from: the rule files of a folder (or one file), which names count as
//! rule files (loading and hot reload must agree, or a reload misses a file), the revision hashed
//! over them, and each file's text parsed as YAML into a [`RuleFileSpec`].

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use yaml_serde::Value;

use crate::vocabulary::diagnostic::Diagnostic;

use super::report::{Report, Source, kind_of, one_line};
use super::spec::{RuleFileSpec, field_names};

pub(super) fn read_sources(path: &Path, report: &mut Report) -> Vec<Source> {
    let mut problem = |message: String, fix: &str| {
        report
            .problems
            .push((0, Diagnostic::error("", message, fix).in_file(path)))
    };
    let files: Vec<(PathBuf, String)> = if path.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(error) => {
                problem(
                    format!("cannot read the rules folder: {error}"),
                    "check `rules.path` and its permissions",
                );
                return Vec::new();
            }
        };
        let mut files: Vec<(PathBuf, String)> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|file| file.is_file() && is_rule_file(file))
            .filter_map(|file| {
                let name = file.file_name()?.to_string_lossy().into_owned();
                Some((file, name))
            })
            .collect();
        files.sort_by(|a, b| a.1.cmp(&b.1));
        files
    } else {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        vec![(path.to_path_buf(), name)]
    };
    let mut sources = Vec::new();
    for (file, name) in files {
        match std::fs::read(&file) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => sources.push(Source {
                    path: file,
                    name,
                    text,
                }),
                Err(_) => problem(
                    format!("`{}` is not UTF-8 text", file.display()),
                    "save the file as UTF-8",
                ),
            },
            Err(error) => problem(
                format!("cannot read `{}`: {error}", file.display()),
                "check `rules.path`: it names a rule file or a folder of them",
            ),
        }
    }
    sources
}

fn has_extension(name: &str, extensions: &[&str]) -> bool {
    extensions.iter().any(|extension| name.ends_with(extension))
}

/// A rule file of a rules folder: YAML, and not a test-case file.
pub fn is_rule_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    has_extension(&name, &[".yaml", ".yml"]) && !is_test_file(path)
}

/// A test-case file (`*.test.yaml`), run by `pimgate test`, never loaded as rules.
pub fn is_test_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    has_extension(&name, &[".test.yaml", ".test.yml"])
}

/// sha256 over each file's name and bytes, length-prefixed so no two file sets hash alike.
pub(super) fn revision(sources: &[Source]) -> String {
    let mut hasher = Sha256::new();
    for source in sources {
        for part in [source.name.as_bytes(), source.text.as_bytes()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
    }
    hex::encode(hasher.finalize())
}

/// The spec of one file (an empty file has no rules), with every problem of its top level in `out`.
/// A YAML syntax error is placed where the parser stopped, not by key.
pub(super) fn parse_file(
    report: &mut Report,
    sources: &[Source],
    file: usize,
    out: &mut Vec<Diagnostic>,
) -> Option<RuleFileSpec> {
    let source = sources.get(file)?;
    let value = match yaml_serde::from_str::<Value>(&source.text) {
        Ok(Value::Null) => Value::Mapping(yaml_serde::Mapping::new()),
        Ok(value) => value,
        Err(error) => {
            let problem = Diagnostic::error(
                "",
                format!(
                    "the file is not valid YAML: {}",
                    one_line(&error.to_string())
                ),
                "fix the YAML syntax (indentation, quotes, `key: value`)",
            )
            .in_file(source.path.clone());
            let problem = match error.location() {
                Some(at) => problem.at(at.line(), at.column()),
                None => problem,
            };
            report.problems.push((file, problem));
            return None;
        }
    };
    let Value::Mapping(mapping) = &value else {
        out.push(Diagnostic::error(
            "",
            format!("a rule file must be a mapping with `policies`, `guards`, `windows` and `lists`, found {}", kind_of(&value)),
            "start the file with `policies:`",
        ));
        return None;
    };
    super::report::unknown_keys(out, "", mapping, field_names::<RuleFileSpec>());
    // Read from the value itself, not into a `Field`: keeping the file as written next to its
    // reading would hold a second copy of every policy while they compile.
    match RuleFileSpec::deserialize(value) {
        Ok(spec) => Some(spec),
        Err(error) => {
            out.push(Diagnostic::error(
                "",
                one_line(&error.to_string()),
                "start the file with `policies:`",
            ));
            None
        }
    }
}
