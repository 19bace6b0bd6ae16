//! `pimgate rules test`: run the cases kept in `*.test.yaml` files beside the rules, on a fixed clock,
//! through the same `decision::evaluate` the service uses.
//!
//! A case may stub what the upstream systems say (`facts: { itsm: fail }`): the checks of those kinds
//! are swapped for stubs in a copy of the rules, so a case can pin "what happens when ServiceNow is
//! down" without a ServiceNow.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::checks::registry::UPSTREAM_KINDS;
use crate::checks::{Check, CheckContext, CheckOutcome, CheckStatus, NamedCheck};

use crate::decision::{Decision, GuardEffect, Outcome, evaluate_at_stage};
use crate::payload::{
    Action, ActivationRequest, ExpirationKind, GroupAccess, ResourceType, Schedule, Stage, Target,
    Ticket,
};
use crate::rules::compile::{is_test_file, parse_guid};
use crate::rules::{RuleSet, catalog};
use crate::vocabulary::diagnostic::Diagnostic;

/// The principal of a shorthand request that names none.
pub const DEFAULT_PRINCIPAL: &str = "00000000-0000-4000-8000-000000000001";

const CASE_BUDGET: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestReport {
    pub passed: usize,
    pub failed: usize,
    /// (case name, test file, what differed).
    pub failures: Vec<(String, PathBuf, String)>,
    /// One line per case, in run order, for the printed report.
    pub lines: Vec<String>,
}

impl fmt::Display for TestReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(formatter, "{line}")?;
        }
        write!(formatter, "{} passed, {} failed", self.passed, self.failed)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    cases: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    now: String,
    /// Which of PIM's callbacks asks: `pre_approval` (the default) or `post_approval`.
    #[serde(default)]
    stage: Option<Stage>,
    #[serde(default)]
    request: Option<ShorthandRequest>,
    #[serde(default)]
    request_file: Option<String>,
    /// Upstream check kind → what every check of that kind reports, instead of asking anyone.
    #[serde(default)]
    facts: BTreeMap<String, yaml_serde::Value>,
    expect: Expectation,
}

/// `facts: { itsm: { status: fail, message: ... } }`; the short form is the status alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FactDetail {
    status: FactStatus,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FactStatus {
    Pass,
    Fail,
    Error,
}

/// A check that reports what the test case says the upstream system would.
#[derive(Debug)]
struct StubbedCheck {
    outcome: CheckOutcome,
}

#[async_trait]
impl Check for StubbedCheck {
    async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
        self.outcome.clone()
    }
}

/// A request written by hand: only what the case is about, with defaults for the rest.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ShorthandRequest {
    role: Option<String>,
    group: Option<String>,
    access: Option<String>,
    resource_type: Option<String>,
    scope: Option<String>,
    action: Option<String>,
    principal: Option<String>,
    justification: Option<String>,
    ticket: Option<String>,
    ticket_system: Option<String>,
    duration: Option<String>,
    start: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    outcome: Outcome,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    reason_contains: Option<OneOrMany>,
    /// Guards that must have applied and not passed (denied, errored or capped; for an `audit`
    /// guard, what it would have done).
    #[serde(default)]
    guard: Option<OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(one) => vec![one.as_str()],
            OneOrMany::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

/// Loads the rules at `path` and runs every case of the test files beside them: for a folder, all its
/// `*.test.yaml`/`*.test.yml`; for a file `x.yaml`, `x.test.yaml` or `x.test.yml`. Rule or test-file
/// problems are returned as `Err`; failing cases are part of the report.
pub async fn run_tests(path: &Path) -> Result<TestReport, Vec<Diagnostic>> {
    run_tests_with(path, &crate::connectors::Connectors::none()).await
}

/// As [`run_tests`], with the connectors of a configuration (file-based sources work offline).
pub async fn run_tests_with(
    path: &Path,
    connectors: &std::sync::Arc<crate::connectors::Connectors>,
) -> Result<TestReport, Vec<Diagnostic>> {
    let rules = crate::rules::load_with(path, connectors)?;
    let mut problems = Vec::new();
    let mut report = TestReport::default();
    let files = test_files(path);
    if files.is_empty() {
        problems.push(
            Diagnostic::error(
                "",
                "no test files found",
                "add cases in a `*.test.yaml` file beside the rules",
            )
            .in_file(path),
        );
        return Err(problems);
    }
    let mut parsed = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) => {
                problems.push(
                    Diagnostic::error(
                        "",
                        format!("cannot read the test file: {error}"),
                        "check the file",
                    )
                    .in_file(file),
                );
                continue;
            }
        };
        match yaml_serde::from_str::<TestFile>(&text) {
            Ok(tests) => parsed.push((file, tests)),
            Err(error) => {
                let problem = Diagnostic::error(
                    "cases",
                    error.to_string(),
                    "a case has `name`, `now`, `request` (or `request_file`), optional `stage` and `facts`, and `expect: { outcome, policy, guard, reason_contains }`",
                )
                .in_file(file);
                problems.push(match error.location() {
                    Some(at) => problem.at(at.line(), at.column()),
                    None => problem,
                });
            }
        }
    }
    for (file, tests) in &parsed {
        for (index, case) in tests.cases.iter().enumerate() {
            let key = format!("cases[{index}]");
            let facts = match parse_facts(&case.facts) {
                Ok(facts) => facts,
                Err(errors) => {
                    let facts = format!("{key}.facts");
                    problems.extend(
                        errors
                            .into_iter()
                            .map(|problem| problem.under(&facts).in_file(file.clone())),
                    );
                    continue;
                }
            };
            match prepare(case, file) {
                Ok((request, now)) => {
                    let rules = with_facts(&rules, &facts);
                    let stage = case.stage.unwrap_or(Stage::PreApproval);
                    let decision =
                        evaluate_at_stage(&rules, &request, stage, now, CASE_BUDGET).await;
                    match compare(&case.expect, &decision) {
                        None => {
                            report.passed += 1;
                            report.lines.push(format!("ok    {}", case.name));
                        }
                        Some(explanation) => {
                            report.failed += 1;
                            report.lines.push(format!(
                                "FAIL  {} ({})\n      {explanation}",
                                case.name,
                                file.display()
                            ));
                            report
                                .failures
                                .push((case.name.clone(), file.clone(), explanation));
                        }
                    }
                }
                Err(problem) => problems.push((*problem).under(&key).in_file(file.clone())),
            }
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(problems)
    }
}

/// An upstream kind's `'static` name and what its checks report instead of asking.
type Fact = (&'static str, CheckOutcome);

/// Each fact as the outcome its checks will report, keyed by the kind's `'static` name; every bad
/// bad entry is a problem keyed below `facts`.
fn parse_facts(facts: &BTreeMap<String, yaml_serde::Value>) -> Result<Vec<Fact>, Vec<Diagnostic>> {
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    let shape =
        "write `pass`, `fail` or `error`, or `{ status: fail, message: \"ticket is closed\" }`";
    for (key, value) in facts {
        let Some(kind) = UPSTREAM_KINDS.iter().copied().find(|kind| *kind == key) else {
            errors.push(Diagnostic::error(
                key.clone(),
                format!("`{key}` is not an upstream check kind"),
                format!(
                    "facts stub upstream checks only: {}",
                    UPSTREAM_KINDS.join(", ")
                ),
            ));
            continue;
        };
        let detail = match value {
            yaml_serde::Value::String(_) => yaml_serde::from_value::<FactStatus>(value.clone())
                .map(|status| FactDetail {
                    status,
                    message: None,
                }),
            _ => yaml_serde::from_value::<FactDetail>(value.clone()),
        };
        let detail = match detail {
            Ok(detail) => detail,
            Err(error) => {
                errors.push(Diagnostic::error(key.clone(), error.to_string(), shape));
                continue;
            }
        };
        let (status, default) = match detail.status {
            FactStatus::Pass => (
                CheckStatus::Pass,
                format!("stubbed: the {kind} check passes"),
            ),
            FactStatus::Fail => (
                CheckStatus::Fail,
                format!("stubbed: the {kind} check fails"),
            ),
            FactStatus::Error => (
                CheckStatus::Error,
                format!("stubbed: the {kind} system could not be reached"),
            ),
        };
        let outcome = CheckOutcome {
            status,
            message: detail.message.unwrap_or(default),
            evidence: Default::default(),
            holds_at: None,
        }
        .with_evidence("stubbed", true);
        parsed.push((kind, outcome));
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// The rules with every check of a stubbed kind replaced; the rules themselves when nothing is
/// stubbed, so a case without `facts` runs exactly what the service would.
fn with_facts<'r>(rules: &'r RuleSet, facts: &[Fact]) -> Cow<'r, RuleSet> {
    if facts.is_empty() {
        return Cow::Borrowed(rules);
    }
    let stub = |check: &mut NamedCheck| {
        if let Some((_, outcome)) = facts.iter().find(|(kind, _)| *kind == check.kind) {
            check.check = Arc::new(StubbedCheck {
                outcome: outcome.clone(),
            });
        }
    };
    let mut stubbed = rules.clone();
    for policy in &mut stubbed.policies {
        policy.require.iter_mut().for_each(stub);
        policy.auto_approve.iter_mut().for_each(stub);
    }
    for guard in &mut stubbed.guards {
        guard.require.iter_mut().for_each(stub);
    }
    Cow::Owned(stubbed)
}

fn test_files(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .collect()
            })
            .unwrap_or_default();
        files.retain(|file| file.is_file() && is_test_file(file));
        files.sort();
        return files;
    }
    let Some(stem) = path.file_stem() else {
        return Vec::new();
    };
    ["test.yaml", "test.yml"]
        .iter()
        .map(|extension| path.with_file_name(format!("{}.{extension}", stem.to_string_lossy())))
        .filter(|file| file.is_file())
        .collect()
}

/// `None` when the decision is what the case expects, else what differed.
fn compare(expect: &Expectation, decision: &Decision) -> Option<String> {
    let mut differences = Vec::new();
    if decision.outcome != expect.outcome {
        differences.push(format!(
            "expected {}, got {}",
            expect.outcome.as_str(),
            decision.outcome.as_str()
        ));
    }
    if let Some(policy) = &expect.policy
        && decision.policy.as_deref() != Some(policy.as_str())
    {
        differences.push(format!(
            "expected policy `{policy}`, got {}",
            decision
                .policy
                .as_deref()
                .map(|name| format!("`{name}`"))
                .unwrap_or_else(|| "no policy".to_string())
        ));
    }
    if let Some(guards) = &expect.guard {
        for name in guards.items() {
            match decision.guards.iter().find(|report| report.name == name) {
                None => differences.push(format!("guard `{name}` did not apply")),
                Some(report) if report.effect == GuardEffect::Pass => {
                    differences.push(format!("guard `{name}` applied but passed"))
                }
                Some(_) => {}
            }
        }
    }
    if let Some(fragments) = &expect.reason_contains {
        let reasons = decision.reasons.join(" | ");
        for fragment in fragments.items() {
            if !reasons.to_lowercase().contains(&fragment.to_lowercase()) {
                differences.push(format!("no reason contains `{fragment}`"));
            }
        }
    }
    if differences.is_empty() {
        return None;
    }
    Some(format!(
        "{}; reasons: {}",
        differences.join("; "),
        decision.reasons.join(" | ")
    ))
}

/// The case's request and `now`, or what is wrong with them (keyed below the case; boxed, as a
/// rare error is no reason to make every `Result` large).
fn prepare(
    case: &TestCase,
    file: &Path,
) -> Result<(ActivationRequest, DateTime<Utc>), Box<Diagnostic>> {
    let now = DateTime::parse_from_rfc3339(&case.now)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| {
            bad_case(
                "now",
                format!("`{}` is not an RFC 3339 time: {error}", case.now),
                "e.g. `2026-11-24T19:05:00+01:00`",
            )
        })?;
    let request = match (&case.request, &case.request_file) {
        (Some(shorthand), None) => shorthand_request(shorthand)?,
        (None, Some(request_file)) => {
            // Relative to the test file, so a rule folder and its captured requests move together.
            let path = file.parent().unwrap_or(Path::new(".")).join(request_file);
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
            })?
        }
        _ => {
            return Err(bad_case(
                "request",
                "give exactly one of `request` and `request_file`",
                "e.g. `request: { role: Global Administrator, duration: PT1H }`",
            ));
        }
    };
    Ok((request, now))
}

fn bad_case(key: &str, message: impl Into<String>, fix: &str) -> Box<Diagnostic> {
    Box::new(Diagnostic::error(key, message, fix))
}

fn bad(field: &'static str, message: String, fix: &str) -> Box<Diagnostic> {
    bad_case("request", format!("{field}: {message}"), fix)
}

fn shorthand_request(short: &ShorthandRequest) -> Result<ActivationRequest, Box<Diagnostic>> {
    let scope = short.scope.clone().unwrap_or_else(|| "/".to_string());
    let resource_type = match short.resource_type.as_deref() {
        None if short.group.is_some() => ResourceType::EntraGroups,
        None => ResourceType::EntraRoles,
        Some(text) => [
            ResourceType::EntraRoles,
            ResourceType::EntraGroups,
            ResourceType::AzureResources,
        ]
        .into_iter()
        .find(|kind| kind.as_str().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            bad(
                "resource_type",
                format!("unknown resource type `{text}`"),
                "use entraRoles, entraGroups or azureResources",
            )
        })?,
    };
    let target = match resource_type {
        ResourceType::EntraGroups => {
            let group = short.group.as_deref().unwrap_or("");
            let group_id = parse_guid(group).ok_or_else(|| {
                bad(
                    "group",
                    format!("`{group}` is not a GUID"),
                    "give the group's object id",
                )
            })?;
            let access_id = match short
                .access
                .as_deref()
                .unwrap_or("member")
                .to_ascii_lowercase()
                .as_str()
            {
                "member" => GroupAccess::Member,
                "owner" => GroupAccess::Owner,
                other => {
                    return Err(bad(
                        "access",
                        format!("unknown access `{other}`"),
                        "use member or owner",
                    ));
                }
            };
            Target::Group {
                group_id,
                access_id,
            }
        }
        ResourceType::EntraRoles | ResourceType::AzureResources => {
            let role = short.role.as_deref().unwrap_or("");
            let role_definition_id = parse_guid(role)
                .or_else(|| {
                    catalog::by_name(role)
                        .or_else(|| {
                            catalog::all()
                                .iter()
                                .find(|known| known.name.eq_ignore_ascii_case(role))
                        })
                        .map(|known| known.id.to_ascii_lowercase())
                })
                .ok_or_else(|| {
                    bad(
                        "role",
                        format!("unknown role `{role}`"),
                        "give a built-in role name or a role definition GUID",
                    )
                })?;
            if resource_type == ResourceType::AzureResources {
                Target::AzureRole {
                    role_definition_path: format!(
                        "{scope}/providers/Microsoft.Authorization/roleDefinitions/{role_definition_id}"
                    ),
                    role_definition_id,
                    scope,
                }
            } else {
                Target::EntraRole {
                    role_definition_id,
                    directory_scope_id: scope,
                    app_scope_id: None,
                }
            }
        }
    };
    let principal = short.principal.as_deref().unwrap_or(DEFAULT_PRINCIPAL);
    let principal_id = parse_guid(principal).ok_or_else(|| {
        bad(
            "principal",
            format!("`{principal}` is not a GUID"),
            "give an object id",
        )
    })?;
    let duration = match &short.duration {
        None => None,
        Some(text) => {
            // The parser PIM's requests go through, so a test case means what a request would.
            let parsed = crate::payload::parse_iso8601_duration(text).map_err(|problem| {
                bad(
                    "duration",
                    format!("`{text}` is not an ISO-8601 duration: {problem}"),
                    "e.g. PT2H",
                )
            })?;
            Some(parsed)
        }
    };
    let start = match &short.start {
        None => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| {
                    bad(
                        "start",
                        format!("`{text}` is not an RFC 3339 time"),
                        "e.g. 2026-11-24T19:05:00+01:00",
                    )
                })?,
        ),
    };
    let ticket = (short.ticket.is_some() || short.ticket_system.is_some()).then(|| Ticket {
        number: short.ticket.clone(),
        system: short.ticket_system.clone(),
    });
    Ok(ActivationRequest {
        request_id: None,
        resource_type,
        principal_id,
        principal_type: Some("User".to_string()),
        action: Action::parse(short.action.as_deref().unwrap_or("selfActivate")),
        target,
        justification: short
            .justification
            .as_deref()
            .map(crate::payload::normalize_justification)
            .filter(|text| !text.is_empty()),
        ticket,
        schedule: Schedule {
            start,
            expiration_kind: if duration.is_some() {
                ExpirationKind::AfterDuration
            } else {
                ExpirationKind::NotSpecified
            },
            duration,
            end: None,
        },
    })
}
