//! `hr`: the requester must still be a current member of staff of the kind the role is for, as the
//! directory (Microsoft Graph) or the HR file says: account enabled, not leaving soon, allowed employee
//! type and department.
//!
//! Each attribute is known, empty or unknown (`connectors::Attribute`). Empty is the source's answer
//! ("no leave date", "no department") and is judged; unknown (left out, unparsable, or unreadable
//! with the permissions pimgate has) makes the check not evaluated, naming the source, with the
//! operator's detail (which permission, which column) in the evidence only. A condition the profile
//! definitely breaks still fails, whatever else is unknown.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use serde::Deserialize;

use super::registry::{BuildEnv, CheckKind, Reach};
use super::util::duration_value;
use super::{Check, CheckContext, CheckOutcome, TimeRole};
use crate::connectors::ConnectorId;
use crate::connectors::http::Fetched;
use crate::connectors::identity::ProfileSource;
use crate::connectors::{Attribute, Connectors, PermissionNeed, Unknown, UserProfile, graph};
use crate::payload::format_iso8601_duration;
use crate::vocabulary::diagnostic::Diagnostic;

/// `hr: { source: graph, account_enabled: true, not_leaving_within: P14D, employee_types: [Employee] }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HrSpec {
    /// `graph` or `file`.
    pub source: String,
    /// Unset or `true`: the account must be enabled (fail-closed: an hr check exists to stop people
    /// who are no longer active, and a disabled account is the plainest sign of that). `false` turns
    /// the condition off, for HR exports that carry no such column; no rule can require a disabled
    /// account.
    #[serde(default)]
    pub account_enabled: Option<bool>,
    /// ISO-8601 duration: a leave date before the activation's end + this fails the check (any
    /// leave date, when the activation has no end). Unset: not checked.
    #[serde(default)]
    pub not_leaving_within: Option<String>,
    /// Allowed `employeeType` values, case-insensitive; empty: any.
    #[serde(default)]
    pub employee_types: Vec<String>,
    /// Allowed `department` values, case-insensitive; empty: any.
    #[serde(default)]
    pub departments: Vec<String>,
}

#[derive(Debug)]
struct HrCheck {
    source: ProfileSource,
    connectors: Arc<Connectors>,
    require_enabled: bool,
    not_leaving_within: Option<Duration>,
    employee_types: Vec<String>,
    departments: Vec<String>,
}

/// `- hr: ...` in the rules (see `registry::CheckKind`).
#[derive(Debug)]
pub struct HrKind;

impl CheckKind for HrKind {
    fn reference() -> crate::checks::registry::KindReference {
        crate::checks::registry::KindReference {
            summary: "The requester is an active employee: account enabled, not leaving soon, of an allowed type and department.",
            example: "- hr: { source: graph, not_leaving_within: P7D, employee_types: [Employee] }",
            keys: vec![
                crate::checks::registry::KeyDoc::new(
                    "source",
                    "`graph` or `file`",
                    "required",
                    "graph",
                    "Microsoft Graph user properties, or the `[connectors.hr_file]` export.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "account_enabled",
                    "boolean",
                    "true",
                    "true",
                    "The account must be enabled; `false` turns the condition off (it can never require a disabled account).",
                ),
                crate::checks::registry::KeyDoc::new(
                    "not_leaving_within",
                    "ISO-8601 duration",
                    "none (not checked)",
                    "P7D",
                    "A leave date before the activation's end plus this fails.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "employee_types",
                    "list of strings",
                    "[] (any)",
                    "[Employee]",
                    "Allowed `employeeType` values, case-insensitive.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "departments",
                    "list of strings",
                    "[] (any)",
                    "[Platform]",
                    "Allowed `department` values, case-insensitive.",
                ),
            ],
            reads: hr_reads(),
        }
    }

    const NAME: &'static str = "hr";
    const REACH: Reach = Reach::Upstream;
    type Spec = HrSpec;

    fn connector(spec: &HrSpec) -> Option<ConnectorId> {
        match spec.source.as_str() {
            "graph" => Some(ConnectorId::Graph),
            "file" => Some(ConnectorId::HrFile),
            _ => None,
        }
    }

    fn build(spec: &HrSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
        build(spec, env)
    }
}

pub fn build(spec: &HrSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let source = match spec.source.as_str() {
        "graph" => Some(ProfileSource::Graph),
        "file" => Some(ProfileSource::HrFile),
        other => {
            problems.push(Diagnostic::error("source", format!("`{other}` is not an HR source"), "use `graph` (Microsoft Graph, `[connectors.graph]`) or `file` (`[connectors.hr_file]`)"));
            None
        }
    };
    let not_leaving_within = match &spec.not_leaving_within {
        None => None,
        Some(text) => match duration_value("not_leaving_within", text) {
            Ok(duration) => Some(duration),
            Err(problem) => {
                problems.push(*problem);
                None
            }
        },
    };
    let lower = |values: &[String], key: &str, problems: &mut Vec<Diagnostic>| -> Vec<String> {
        values
            .iter()
            .enumerate()
            .filter_map(|(index, value)| {
                let value = value.trim().to_lowercase();
                if value.is_empty() {
                    problems.push(Diagnostic::error(
                        format!("{key}[{index}]"),
                        "is empty",
                        "remove the empty entry",
                    ));
                    None
                } else {
                    Some(value)
                }
            })
            .collect()
    };
    let employee_types = lower(&spec.employee_types, "employee_types", &mut problems);
    let departments = lower(&spec.departments, "departments", &mut problems);
    let Some(source) = source else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(HrCheck {
        source,
        connectors: env.connectors.clone(),
        require_enabled: spec.account_enabled.unwrap_or(true),
        not_leaving_within,
        employee_types,
        departments,
    }))
}

/// "14 days", "8 hours", else the ISO form: how a requester reads a rule's window.
fn human(duration: Duration) -> String {
    let plural = |count: i64, unit: &str| {
        if count == 1 {
            format!("1 {unit}")
        } else {
            format!("{count} {unit}s")
        }
    };
    if duration.num_seconds() % 86_400 == 0 {
        plural(duration.num_days(), "day")
    } else if duration.num_seconds() % 3_600 == 0 {
        plural(duration.num_hours(), "hour")
    } else {
        format_iso8601_duration(duration)
    }
}

fn listed(values: &[String]) -> String {
    values
        .iter()
        .map(|value| format!("`{value}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The hr check could not be evaluated: the requester's sentence and the operator's detail.
#[derive(Debug)]
struct NotEvaluated {
    message: String,
    detail: String,
}

/// The attributes the check reads, as requesters and each source name them.
#[derive(Debug, Clone, Copy)]
enum Field {
    AccountEnabled,
    LeaveDate,
    EmployeeType,
    Department,
}

impl Field {
    fn phrase(self) -> &'static str {
        match self {
            Field::AccountEnabled => "whether your account is enabled",
            Field::LeaveDate => "your leave date",
            Field::EmployeeType => "your employee type",
            Field::Department => "your department",
        }
    }

    fn name_in(self, source: ProfileSource) -> &'static str {
        match (source, self) {
            (ProfileSource::Graph, Field::AccountEnabled) => "accountEnabled",
            (ProfileSource::Graph, Field::LeaveDate) => "employeeLeaveDateTime",
            (ProfileSource::Graph, Field::EmployeeType) => "employeeType",
            (ProfileSource::Graph, Field::Department) => "department",
            (ProfileSource::HrFile, Field::AccountEnabled) => "account_enabled",
            (ProfileSource::HrFile, Field::LeaveDate) => "employee_leave_date_time",
            (ProfileSource::HrFile, Field::EmployeeType) => "employee_type",
            (ProfileSource::HrFile, Field::Department) => "department",
        }
    }
}

impl HrCheck {
    fn not_evaluated(&self, field: Field, why: Unknown) -> NotEvaluated {
        let where_from = self.source.label();
        let name = field.name_in(self.source);
        let detail = match why {
            Unknown::Absent => match self.source {
                ProfileSource::Graph => format!("Microsoft Graph's answer has no `{name}`"),
                ProfileSource::HrFile => format!("the HR file has no `{name}` column"),
            },
            Unknown::Unparsable => format!(
                "the requester's `{name}` in {where_from} is not a value pimgate can read (the log names the entry)"
            ),
            Unknown::Unreadable { permission } => format!(
                "the Microsoft Graph token lacks the application permission `{permission}`, so `{name}` reads as empty; grant it to pimgate's app registration with admin consent"
            ),
        };
        NotEvaluated {
            message: format!(
                "HR data could not be checked: {where_from} did not give pimgate {}",
                field.phrase()
            ),
            detail,
        }
    }

    /// The first condition the profile breaks, as a sentence for the requester; `Err` when none is
    /// broken but one could not be decided for want of data.
    fn judge(
        &self,
        profile: &UserProfile,
        context: &CheckContext<'_>,
    ) -> Result<Option<String>, NotEvaluated> {
        let where_from = self.source.label();
        let mut unknown: Option<NotEvaluated> = None;
        if self.require_enabled {
            match &profile.account_enabled {
                Attribute::Known(true) => {}
                Attribute::Known(false) => {
                    return Ok(Some(format!(
                        "your account is disabled in {where_from}; this role needs an enabled account"
                    )));
                }
                // An account is enabled or not: "no value" says neither.
                Attribute::Empty | Attribute::Unknown(_) => {
                    let why = match &profile.account_enabled {
                        Attribute::Unknown(why) => *why,
                        _ => Unknown::Absent,
                    };
                    let mut not_evaluated = self.not_evaluated(Field::AccountEnabled, why);
                    not_evaluated.message = format!(
                        "HR data could not be checked: {where_from} does not say whether the account is enabled"
                    );
                    not_evaluated.detail.push_str(
                        "; if the source has no such field, set `account_enabled: false` in the rule",
                    );
                    unknown.get_or_insert(not_evaluated);
                }
            }
        }
        let employee_leave_date_time =
            match (&profile.employee_leave_date_time, self.not_leaving_within) {
                (Attribute::Known(leaves), _) => Some(*leaves),
                (Attribute::Unknown(why), Some(_)) => {
                    unknown.get_or_insert(self.not_evaluated(Field::LeaveDate, *why));
                    None
                }
                _ => None,
            };
        if let (Some(window), Some(leaves)) = (self.not_leaving_within, employee_leave_date_time) {
            let date = leaves.format("%Y-%m-%d");
            if leaves <= context.now {
                return Ok(Some(format!(
                    "your account's leave date {date} in {where_from} has passed; this role is not available after leaving"
                )));
            }
            // Judged against the effective interval's end: an activation must end `window` before
            // the leave date; one without an end never does.
            let interval = &context.interval;
            let Some(end) = interval.end_instant() else {
                return Ok(Some(format!(
                    "your account leaves on {date}, but the activation has {}; request an end at least {} before that date",
                    interval.end_label(),
                    human(window)
                )));
            };
            if end
                .checked_add_signed(window)
                .is_none_or(|limit| leaves <= limit)
            {
                return Ok(Some(format!(
                    "your account leaves on {date}, within the {} this role requires after the activation ends; if the date is wrong, ask HR to correct it",
                    human(window)
                )));
            }
        }
        if !self.employee_types.is_empty() {
            let allowed = listed(&self.employee_types);
            match &profile.employee_type {
                Attribute::Known(kind)
                    if self.employee_types.contains(&kind.trim().to_lowercase()) => {}
                Attribute::Known(kind) => {
                    return Ok(Some(format!(
                        "your employee type `{}` is not one this role allows ({allowed})",
                        kind.trim()
                    )));
                }
                Attribute::Empty => {
                    return Ok(Some(format!(
                        "{where_from} has no employee type for you; this role requires one of {allowed}"
                    )));
                }
                Attribute::Unknown(why) => {
                    unknown.get_or_insert(self.not_evaluated(Field::EmployeeType, *why));
                }
            }
        }
        if !self.departments.is_empty() {
            let allowed = listed(&self.departments);
            match &profile.department {
                Attribute::Known(department)
                    if self.departments.contains(&department.trim().to_lowercase()) => {}
                Attribute::Known(department) => {
                    return Ok(Some(format!(
                        "your department `{}` is not one this role allows ({allowed})",
                        department.trim()
                    )));
                }
                Attribute::Empty => {
                    return Ok(Some(format!(
                        "{where_from} has no department for you; this role requires one of {allowed}"
                    )));
                }
                Attribute::Unknown(why) => {
                    unknown.get_or_insert(self.not_evaluated(Field::Department, *why));
                }
            }
        }
        match unknown {
            Some(not_evaluated) => Err(not_evaluated),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl Check for HrCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let principal = context.request.principal_id.as_str();
        let (result, calls) = self
            .connectors
            .user_profile_from(self.source, principal, context.deadline)
            .await;
        let upstream = serde_json::to_value(&calls).unwrap_or(serde_json::Value::Null);
        let source = match self.source {
            ProfileSource::Graph => "graph",
            ProfileSource::HrFile => "file",
        };
        let outcome = match result {
            Err(error) => CheckOutcome::error(format!("HR data could not be checked: {error}"))
                .with_evidence("error_detail", error.detail()),
            Ok(Fetched::NotFound) => CheckOutcome::fail(format!(
                "your account `{principal}` was not found in {}",
                self.source.label()
            )),
            Ok(Fetched::Found(profile)) => {
                let judged = self.judge(&profile, context);
                let outcome = match judged {
                    Err(not_evaluated) => {
                        tracing::warn!(
                            check = "hr",
                            source,
                            detail = %not_evaluated.detail,
                            "hr check not evaluated: the source did not give an attribute the rule needs"
                        );
                        CheckOutcome::error(not_evaluated.message)
                            .with_evidence("error_detail", not_evaluated.detail)
                    }
                    Ok(Some(message)) => CheckOutcome::fail(message),
                    Ok(None) => CheckOutcome::pass(format!(
                        "{} shows a current account this role allows",
                        self.source.label()
                    )),
                };
                outcome.with_evidence(
                    "user",
                    serde_json::json!({
                        "id": profile.id,
                        "account_enabled": profile.account_enabled,
                        "employee_leave_date_time": profile.employee_leave_date_time,
                        "employee_type": profile.employee_type,
                        "department": profile.department,
                    }),
                )
            }
        };
        outcome
            .with_evidence("source", source)
            .with_evidence("upstream", upstream)
    }

    /// The leave date is judged against the effective interval's end.
    fn time_role(&self) -> TimeRole {
        if self.not_leaving_within.is_some() {
            TimeRole::JudgesInterval
        } else {
            TimeRole::Timeless
        }
    }

    fn upstream_permissions(&self) -> Vec<PermissionNeed> {
        if self.source != ProfileSource::Graph {
            return Vec::new();
        }
        let mut needs = vec![PermissionNeed {
            permission: &graph::USER_READ_ALL,
            needed_for: "`hr` checks with `source: graph` (accountEnabled, employeeType, department)",
        }];
        if self.not_leaving_within.is_some() {
            needs.push(PermissionNeed {
                permission: &graph::LIFECYCLE_READ_ALL,
                needed_for: "`hr` checks with `not_leaving_within` (employeeLeaveDateTime)",
            });
        }
        needs
    }
}

/// What the reference says `hr` reads, from the Graph connector's `$select` and permissions.
fn hr_reads() -> Vec<crate::checks::registry::UpstreamFact> {
    vec![
        crate::checks::registry::UpstreamFact::new(
            "Microsoft Graph",
            format!("`GET /v1.0/users/{{id}}?$select={}`", graph::USER_SELECT),
        ),
        crate::checks::registry::UpstreamFact::new(
            "Microsoft Graph",
            format!(
                "permissions: `{}` ({}); `{}` ({}, for `not_leaving_within`)",
                graph::USER_READ_ALL.name,
                graph::USER_READ_ALL.reads,
                graph::LIFECYCLE_READ_ALL.name,
                graph::LIFECYCLE_READ_ALL.reads
            ),
        ),
        crate::checks::registry::UpstreamFact::new(
            "HR file",
            "the same attributes, by the requester's object id, from `[connectors.hr_file]`",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_support::TestEnv;

    fn spec(yaml: &str) -> HrSpec {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn every_problem_in_a_spec_is_reported() {
        let test_env = TestEnv::default();
        let problems = build(
            &spec("{ source: ldap, not_leaving_within: soon, employee_types: [''] }"),
            &test_env.env(),
        )
        .unwrap_err();
        let keys: Vec<&str> = problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect();
        assert_eq!(keys, ["source", "not_leaving_within", "employee_types[0]"]);
    }

    #[test]
    fn windows_read_in_days_or_hours() {
        assert_eq!(human(Duration::days(14)), "14 days");
        assert_eq!(human(Duration::days(1)), "1 day");
        assert_eq!(human(Duration::hours(8)), "8 hours");
        assert_eq!(human(Duration::minutes(90)), "PT1H30M");
    }
}
