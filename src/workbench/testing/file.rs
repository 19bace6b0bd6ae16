//! Reading one `*.test.yaml` file into cases, with every problem at once, each a [`Diagnostic`] at
//! its `file:line:column` (found as for rule files, by `rules::locate`): unknown keys with "did you
//! mean", wrong types, missing fields, a bad `now`, an unknown stage or outcome, a request that does
//! not build. Nothing runs until the whole file reads cleanly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use yaml_serde::{Mapping, Value};

use super::expect::{EXPECT_KEYS, Expectation, ExpectedGuard, ExpectedShadow};
use super::request::{REQUEST_KEYS, ShorthandRequest, bad_case, shorthand_request};
use super::stubs::{Stubs, parse_facts};
use crate::decision::Outcome;
use crate::payload::{ActivationRequest, Stage};
use crate::rules::locate::locate;
use crate::rules::report::{key_text, kind_of, unknown_keys};
use crate::vocabulary::diagnostic::Diagnostic;

/// Every key a case may have.
const CASE_KEYS: &[&str] = &[
    "name",
    "now",
    "stage",
    "request",
    "request_file",
    "facts",
    "expect",
];

/// One case, ready to run.
#[derive(Debug)]
pub(super) struct Case {
    pub(super) name: String,
    /// Where the case's `name:` is written, for failure lines and reports.
    pub(super) line: usize,
    pub(super) column: usize,
    pub(super) now: DateTime<Utc>,
    pub(super) stage: Stage,
    pub(super) request: ActivationRequest,
    pub(super) facts: Stubs,
    pub(super) expect: Expectation,
}

/// The cases of the test file at `path` whose text is `text`, or every problem in it, placed.
pub(super) fn read_cases(path: &Path, text: &str) -> Result<Vec<Case>, Vec<Diagnostic>> {
    let root: Value = match yaml_serde::from_str(text) {
        Ok(root) => root,
        Err(error) => {
            let problem = Diagnostic::error(
                "",
                format!("not valid YAML: {error}"),
                "fix the YAML syntax",
            )
            .in_file(path);
            return Err(vec![match error.location() {
                Some(at) => problem.at(at.line(), at.column()),
                None => problem,
            }]);
        }
    };
    let mut problems = Vec::new();
    let mut cases = Vec::new();
    match &root {
        Value::Null => {}
        Value::Mapping(top) => {
            unknown_keys(&mut problems, "", top, &["cases"]);
            match top.get("cases") {
                None | Some(Value::Null) => {}
                Some(Value::Sequence(items)) => {
                    for (index, item) in items.iter().enumerate() {
                        let key = format!("cases[{index}]");
                        if let Some(case) = read_case(path, text, &key, item, &mut problems) {
                            cases.push(case);
                        }
                    }
                }
                Some(other) => problems.push(Diagnostic::error(
                    "cases",
                    format!("`cases` must be a list, found {}", kind_of(other)),
                    "write each case as a `- name: ...` item under `cases:`",
                )),
            }
        }
        other => problems.push(Diagnostic::error(
            "",
            format!("a test file must be a mapping, found {}", kind_of(other)),
            "start the file with `cases:`",
        )),
    }
    if problems.is_empty() {
        return Ok(cases);
    }
    let mut placed: Vec<Diagnostic> = problems
        .into_iter()
        .map(|problem| place(problem, path, text))
        .collect();
    // In the order they are written, as an operator reads the file top to bottom.
    placed.sort_by_key(|problem| (problem.line, problem.column));
    Err(placed)
}

/// The problem in `path`, at the line of its key when it has none yet.
fn place(problem: Diagnostic, path: &Path, text: &str) -> Diagnostic {
    let placed = if problem.line.is_none() {
        match locate(text, &problem.key) {
            Some((line, column)) => problem.at(line, column),
            None => problem,
        }
    } else {
        problem
    };
    placed.in_file(path)
}

fn read_case(
    path: &Path,
    text: &str,
    key: &str,
    item: &Value,
    problems: &mut Vec<Diagnostic>,
) -> Option<Case> {
    let Value::Mapping(case) = item else {
        problems.push(Diagnostic::error(
            key,
            format!("a case must be a mapping, found {}", kind_of(item)),
            "write `name`, `now`, `request` and `expect` under the case's `-`",
        ));
        return None;
    };
    let before = problems.len();
    unknown_keys(problems, key, case, CASE_KEYS);
    let name = required_text(
        case,
        key,
        "name",
        "a sentence saying what the case shows",
        problems,
    );
    let now = required_text(
        case,
        key,
        "now",
        "the instant the case is evaluated at, e.g. `now: \"2026-11-24T19:05:00+01:00\"`",
        problems,
    )
    .and_then(|now| match DateTime::parse_from_rfc3339(&now) {
        Ok(at) => Some(at.with_timezone(&Utc)),
        Err(_) => {
            problems.push(Diagnostic::error(
                format!("{key}.now"),
                format!("`{now}` is not an RFC 3339 time (a date, `T`, a time and an offset)"),
                "e.g. `2026-11-24T19:05:00+01:00`",
            ));
            None
        }
    });
    let stage = match optional_text(case, key, "stage", problems) {
        None => Stage::PreApproval,
        Some(word) => match Stage::ALL.iter().find(|stage| stage_word(**stage) == word) {
            Some(stage) => *stage,
            None => {
                problems.push(Diagnostic::error(
                    format!("{key}.stage"),
                    format!("unknown stage `{word}`"),
                    "use `pre_approval` (the default) or `post_approval`",
                ));
                Stage::PreApproval
            }
        },
    };
    let request = read_request(path, key, case, problems);
    let facts = read_facts(key, case, problems);
    let expect = match case.get("expect") {
        None => {
            problems.push(Diagnostic::error(
                key,
                "missing `expect`",
                "add e.g. `expect: { outcome: Denied }`",
            ));
            None
        }
        Some(value) => read_expect(&format!("{key}.expect"), value, problems),
    };
    if problems.len() > before {
        return None;
    }
    let (line, column) = locate(text, &format!("{key}.name")).unwrap_or((0, 0));
    Some(Case {
        name: name?,
        line,
        column,
        now: now?,
        stage,
        request: request?,
        facts: facts?,
        expect: expect?,
    })
}

fn stage_word(stage: Stage) -> &'static str {
    match stage {
        Stage::PreApproval => "pre_approval",
        Stage::PostApproval => "post_approval",
    }
}

fn required_text(
    mapping: &Mapping,
    prefix: &str,
    field: &str,
    what: &str,
    problems: &mut Vec<Diagnostic>,
) -> Option<String> {
    if mapping.get(field).is_none() {
        problems.push(Diagnostic::error(
            prefix,
            format!("missing `{field}`"),
            format!("add `{field}:`, {what}"),
        ));
        return None;
    }
    optional_text(mapping, prefix, field, problems)
}

/// The text at `field`, or a problem when it is there but not text.
fn optional_text(
    mapping: &Mapping,
    prefix: &str,
    field: &str,
    problems: &mut Vec<Diagnostic>,
) -> Option<String> {
    match mapping.get(field)? {
        Value::String(text) => Some(text.clone()),
        other => {
            problems.push(Diagnostic::error(
                format!("{prefix}.{field}"),
                format!("`{field}` must be text, found {}", kind_of(other)),
                "write it as text (quote it if YAML reads it as something else)",
            ));
            None
        }
    }
}

/// One text or a list of texts (`reason_contains: frozen` or `[frozen, this week]`).
fn one_or_many(
    mapping: &Mapping,
    prefix: &str,
    field: &str,
    problems: &mut Vec<Diagnostic>,
) -> Vec<String> {
    match mapping.get(field) {
        None => Vec::new(),
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Sequence(items)) if items.iter().all(|item| item.is_string()) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_string))
            .collect(),
        Some(other) => {
            problems.push(Diagnostic::error(
                format!("{prefix}.{field}"),
                format!(
                    "`{field}` must be text or a list of texts, found {}",
                    kind_of(other)
                ),
                format!("e.g. `{field}: [first, second]`"),
            ));
            Vec::new()
        }
    }
}

fn read_request(
    path: &Path,
    key: &str,
    case: &Mapping,
    problems: &mut Vec<Diagnostic>,
) -> Option<ActivationRequest> {
    match (case.get("request"), case.get("request_file")) {
        (Some(request), None) => {
            let prefix = format!("{key}.request");
            let Value::Mapping(fields) = request else {
                problems.push(Diagnostic::error(
                    prefix,
                    format!("`request` must be a mapping, found {}", kind_of(request)),
                    "e.g. `request: { role: Global Administrator, duration: PT1H }`",
                ));
                return None;
            };
            let before = problems.len();
            unknown_keys(problems, &prefix, fields, REQUEST_KEYS);
            let mut text = |field: &str| optional_text(fields, &prefix, field, problems);
            let short = ShorthandRequest {
                role: text("role"),
                group: text("group"),
                access: text("access"),
                resource_type: text("resource_type"),
                scope: text("scope"),
                action: text("action"),
                principal: text("principal"),
                justification: text("justification"),
                ticket: text("ticket"),
                ticket_system: text("ticket_system"),
                duration: text("duration"),
                start: text("start"),
            };
            if problems.len() > before {
                return None;
            }
            shorthand_request(&short)
                .map_err(|problem| problems.push((*problem).under(key)))
                .ok()
        }
        (None, Some(Value::String(request_file))) => request_from_file(path, request_file)
            .map_err(|problem| problems.push((*problem).under(key)))
            .ok(),
        (None, Some(other)) => {
            problems.push(Diagnostic::error(
                format!("{key}.request_file"),
                format!("`request_file` must be text, found {}", kind_of(other)),
                "give a path relative to the test file",
            ));
            None
        }
        (Some(_), Some(_)) => {
            problems.push(Diagnostic::error(
                format!("{key}.request_file"),
                "give exactly one of `request` and `request_file`, not both",
                "keep the one the case is about",
            ));
            None
        }
        (None, None) => {
            problems.push(Diagnostic::error(
                key,
                "missing `request` (or `request_file`)",
                "e.g. `request: { role: Global Administrator, duration: PT1H }`",
            ));
            None
        }
    }
}

/// A body exactly as PIM sends it, relative to the test file so a rule folder and its captured
/// requests move together.
fn request_from_file(
    test_file: &Path,
    request_file: &str,
) -> Result<ActivationRequest, Box<Diagnostic>> {
    let path: PathBuf = test_file
        .parent()
        .unwrap_or(Path::new("."))
        .join(request_file);
    let body = std::fs::read(&path).map_err(|error| {
        bad_case(
            "request_file",
            format!("cannot read `{}`: {error}", path.display()),
            "give a path relative to the test file",
        )
    })?;
    crate::payload::decode(&body).map_err(|error| {
        bad_case(
            "request_file",
            format!("`{}` is not a valid PIM request: {error}", path.display()),
            "use a body exactly as PIM sends it",
        )
    })
}

fn read_facts(key: &str, case: &Mapping, problems: &mut Vec<Diagnostic>) -> Option<Stubs> {
    let prefix = format!("{key}.facts");
    let facts = match case.get("facts") {
        None | Some(Value::Null) => return Some(Stubs::default()),
        Some(Value::Mapping(facts)) => facts,
        Some(other) => {
            problems.push(Diagnostic::error(
                prefix,
                format!("`facts` must be a mapping, found {}", kind_of(other)),
                "e.g. `facts: { itsm: fail }`",
            ));
            return None;
        }
    };
    let facts: BTreeMap<String, Value> = facts
        .iter()
        .map(|(kind, value)| (key_text(kind), value.clone()))
        .collect();
    parse_facts(&facts)
        .map_err(|errors| {
            problems.extend(errors.into_iter().map(|problem| problem.under(&prefix)));
        })
        .ok()
}

fn read_expect(prefix: &str, value: &Value, problems: &mut Vec<Diagnostic>) -> Option<Expectation> {
    let Value::Mapping(expect) = value else {
        problems.push(Diagnostic::error(
            prefix,
            format!("`expect` must be a mapping, found {}", kind_of(value)),
            "e.g. `expect: { outcome: Denied, policy: critical-roles }`",
        ));
        return None;
    };
    let before = problems.len();
    unknown_keys(problems, prefix, expect, EXPECT_KEYS);
    let outcome = required_text(
        expect,
        prefix,
        "outcome",
        "Denied, Approved or AutoApproved",
        problems,
    )
    .and_then(|word| {
        let outcome = [Outcome::Denied, Outcome::Approved, Outcome::AutoApproved]
            .into_iter()
            .find(|outcome| outcome.as_str() == word);
        if outcome.is_none() {
            problems.push(Diagnostic::error(
                format!("{prefix}.outcome"),
                format!("unknown outcome `{word}`"),
                "use Denied, Approved or AutoApproved (spelled as PIM spells them)",
            ));
        }
        outcome
    });
    let policy = optional_text(expect, prefix, "policy", problems);
    let reason_contains = one_or_many(expect, prefix, "reason_contains", problems);
    let guard = one_or_many(expect, prefix, "guard", problems);
    let guards = word_map(
        expect,
        prefix,
        "guards",
        ExpectedGuard::WORDS,
        ExpectedGuard::parse,
        "e.g. `guards: { leavers: deny, break-glass: not_applied }`",
        problems,
    );
    let shadow = word_map(
        expect,
        prefix,
        "shadow",
        ExpectedShadow::WORDS,
        ExpectedShadow::parse,
        "e.g. `shadow: { stricter-critical-roles: Denied }`",
        problems,
    );
    if problems.len() > before {
        return None;
    }
    Some(Expectation {
        outcome: outcome?,
        policy,
        reason_contains,
        guard,
        guards,
        shadow,
    })
}

/// A mapping of names to one of `words` (`guards: { leavers: deny }`), every bad entry a problem.
fn word_map<T>(
    expect: &Mapping,
    prefix: &str,
    field: &str,
    words: &[&str],
    parse: fn(&str) -> Option<T>,
    example: &str,
    problems: &mut Vec<Diagnostic>,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    let entries = match expect.get(field) {
        None => return out,
        Some(Value::Mapping(entries)) => entries,
        Some(other) => {
            problems.push(Diagnostic::error(
                format!("{prefix}.{field}"),
                format!("`{field}` must be a mapping, found {}", kind_of(other)),
                example,
            ));
            return out;
        }
    };
    let known = words.join(", ");
    for (name, value) in entries {
        let name = key_text(name);
        let parsed = value.as_str().and_then(parse);
        match parsed {
            Some(parsed) => {
                out.insert(name, parsed);
            }
            None => problems.push(Diagnostic::error(
                format!("{prefix}.{field}.{name}"),
                format!(
                    "`{}` is not one of {known}",
                    yaml_serde::to_string(value)
                        .map(|text| text.trim().to_string())
                        .unwrap_or_default()
                ),
                format!("use one of {known}"),
            )),
        }
    }
    out
}
