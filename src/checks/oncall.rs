//! The `oncall` check: passes when the requester is on call, at a low enough escalation level, for
//! one of the named schedules or escalation policies, according to PagerDuty, Opsgenie or a roster
//! file.
//!
//! "On call" means at the activation's effective start (`CheckContext::interval`): now for a
//! request starting now or back-dated, the requested start for one starting later. Each source is
//! asked about that instant (for a later start PagerDuty `since`/`until` and Opsgenie `date`, for
//! now their present; the roster's shifts either way), so
//! someone on call today is not vouched for an activation that begins after their shift. The
//! outcome says so (`holds_at`), and a future shift is still only a plan: `rules validate` warns
//! when no `start` check bounds how far ahead it may be. Upstream answers are cached briefly and
//! never past the shift bound they carry (see the connectors), and every entry's own start/end is
//! checked against that instant, so a shift that ended while its answer sat in the cache does not
//! count.
//!
//! Sources are vendors behind `connectors::oncall::OncallSource`, one connector file each
//! (`pagerduty`, `opsgenie`, `oncall_file`), listed in `connectors::oncall::ONCALL_VENDORS`; this
//! check judges the duties they report and never names a vendor.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::registry::{BuildEnv, CheckKind, Reach};
use super::{Check, CheckContext, CheckOutcome, TimeRole};
use crate::connectors::ConnectorId;
use crate::connectors::http::{Fetched, UpstreamCall};
use crate::connectors::oncall::{
    Duty, OncallAnswer, OncallAsk, OncallVendor, RequesterAddresses, oncall_vendor,
};
use crate::connectors::{Connectors, UserProfile};
use crate::vocabulary::diagnostic::Diagnostic;
use tokio::time::Instant;

/// `oncall: { source: pagerduty, schedules: [P1ABCDE], max_escalation_level: 1 }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OncallSpec {
    /// `pagerduty`, `opsgenie` or `file`.
    pub source: String,
    #[serde(default)]
    pub schedules: Vec<String>,
    #[serde(default)]
    pub escalation_policies: Vec<String>,
    /// Highest escalation level that counts (1 = primary); absent = any level.
    #[serde(default)]
    pub max_escalation_level: Option<u32>,
}

/// Finds the requester's directory profile by object id. The seam that lets tests (and embedders
/// without Graph) supply identities; in service it is `Connectors::user_profile`.
pub type IdentityLookup = Arc<dyn Fn(&str) -> Option<UserProfile> + Send + Sync>;

/// `- oncall: ...` in the rules (see `registry::CheckKind`).
#[derive(Debug)]
pub struct OncallKind;

impl CheckKind for OncallKind {
    fn reference() -> crate::checks::registry::KindReference {
        crate::checks::registry::KindReference {
            summary: "The requester is on call (PagerDuty, Opsgenie or the on-call file) during the activation.",
            example: "- oncall: { source: pagerduty, escalation_policies: [PABC123], max_escalation_level: 1 }",
            keys: vec![
                crate::checks::registry::KeyDoc::new(
                    "source",
                    "`pagerduty`, `opsgenie` or `file`",
                    "required",
                    "pagerduty",
                    "Which on-call system is asked.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "schedules",
                    "list of schedule ids",
                    "[]",
                    "[PSCHED1]",
                    "Schedules whose on-call people pass.",
                ),
                crate::checks::registry::KeyDoc::new(
                    "escalation_policies",
                    "list of escalation policy ids",
                    "[]",
                    "[PABC123]",
                    "Escalation policies whose on-call people pass (not Opsgenie).",
                ),
                crate::checks::registry::KeyDoc::new(
                    "max_escalation_level",
                    "integer",
                    "none (any level)",
                    "1",
                    "Highest escalation level that counts (1 = primary).",
                ),
            ],
            reads: oncall_reads(),
        }
    }

    const NAME: &'static str = "oncall";
    const REACH: Reach = Reach::Upstream;
    type Spec = OncallSpec;

    fn connector(spec: &OncallSpec) -> Option<ConnectorId> {
        oncall_vendor(&spec.source).map(|vendor| vendor.connector)
    }

    fn build(spec: &OncallSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
        build(spec, env)
    }
}

pub fn build(spec: &OncallSpec, env: &BuildEnv<'_>) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    build_check(spec, env, Identity::Directory(Arc::clone(env.connectors)))
}

/// Like [`build`], but the requester's profile comes from `identity` instead of the directory.
pub fn build_with_identity(
    spec: &OncallSpec,
    env: &BuildEnv<'_>,
    identity: IdentityLookup,
) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    build_check(spec, env, Identity::Given(identity))
}

fn build_check(
    spec: &OncallSpec,
    env: &BuildEnv<'_>,
    identity: Identity,
) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut problem =
        |key: &str, message: String, fix: &str| problems.push(Diagnostic::error(key, message, fix));
    let vendor = oncall_vendor(&spec.source);
    if vendor.is_none() {
        problem(
            "source",
            format!("`{}` is not an on-call source", spec.source),
            "use `pagerduty`, `opsgenie` or `file`",
        );
    }
    let schedules = trimmed(&spec.schedules);
    let policies = trimmed(&spec.escalation_policies);
    if schedules.is_empty() && policies.is_empty() {
        problem(
            "",
            "names no schedule and no escalation policy, so nobody could pass".into(),
            "add `schedules: [P1ABCDE]` or `escalation_policies: [PABC123]`",
        );
    }
    for (key, given, kept) in [
        ("schedules", &spec.schedules, &schedules),
        ("escalation_policies", &spec.escalation_policies, &policies),
    ] {
        if kept.len() != given.len() {
            problem(
                key,
                "contains an empty entry".into(),
                "remove it or write the id",
            );
        }
    }
    if spec.max_escalation_level == Some(0) {
        problem(
            "max_escalation_level",
            "is 0; escalation levels start at 1".into(),
            "use 1 for the primary on-call, 2 for the secondary, …",
        );
    }
    if vendor.is_some_and(|vendor| !vendor.escalation_policies) && !policies.is_empty() {
        problem(
            "escalation_policies",
            "Opsgenie is asked per schedule; escalation policies cannot be checked there".into(),
            "name the Opsgenie schedules (ids or names) under `schedules`",
        );
    }
    match vendor {
        Some(vendor) if problems.is_empty() => Ok(Arc::new(OncallCheck {
            vendor,
            connectors: Arc::clone(env.connectors),
            schedules,
            policies,
            max_level: spec.max_escalation_level,
            identity,
        })),
        _ => Err(problems),
    }
}

fn trimmed(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
        .collect()
}

enum Identity {
    Directory(Arc<Connectors>),
    Given(IdentityLookup),
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Identity::Directory(_) => "Directory",
            Identity::Given(_) => "Given",
        })
    }
}

#[derive(Debug)]
struct OncallCheck {
    vendor: &'static OncallVendor,
    connectors: Arc<Connectors>,
    schedules: Vec<String>,
    policies: Vec<String>,
    max_level: Option<u32>,
    identity: Identity,
}

#[async_trait]
impl Check for OncallCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let mut calls: Vec<UpstreamCall> = Vec::new();
        let outcome = match (self.vendor.get)(&self.connectors) {
            None => CheckOutcome::error(not_configured(self.vendor.connector.name())),
            Some(source) => {
                let ask = OncallAsk {
                    principal_id: &context.request.principal_id,
                    schedules: &self.schedules,
                    policies: &self.policies,
                    at: context.interval.start,
                    later: later_start(context),
                    now: context.now,
                    deadline: context.deadline,
                };
                match source.on_call(&ask, &self.identity, &mut calls).await {
                    OncallAnswer::Duties(duties) => self.judge(duties, context),
                    OncallAnswer::NotOnCall(message) => CheckOutcome::fail(message),
                    OncallAnswer::Unknown(message) => CheckOutcome::error(message),
                }
            }
        };
        outcome
            .with_evidence("source", self.vendor.name)
            .with_evidence("upstream", serde_json::to_value(&calls).unwrap_or_default())
    }

    fn time_role(&self) -> TimeRole {
        TimeRole::JudgesInterval
    }
}

#[async_trait]
impl RequesterAddresses for Identity {
    /// The requester's lower-cased addresses; `Err` carries the sentence for an error outcome.
    async fn addresses(
        &self,
        principal: &str,
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Vec<String>, String> {
        let profile = match self {
            Identity::Given(lookup) => lookup(principal),
            Identity::Directory(connectors) => {
                let (result, made) = connectors.user_profile(principal, deadline).await;
                calls.extend(made);
                match result {
                    Ok(Fetched::Found(profile)) => Some(profile),
                    Ok(Fetched::NotFound) => None,
                    Err(error) => {
                        return Err(format!(
                            "on-call status could not be checked: your e-mail address could not be looked up ({error})"
                        ));
                    }
                }
            }
        };
        let Some(profile) = profile else {
            return Err(format!(
                "on-call status could not be checked: the directory has no user `{principal}`"
            ));
        };
        let addresses = profile.addresses();
        if addresses.is_empty() {
            return Err(format!(
                "on-call status could not be checked: the directory has no e-mail address for `{principal}`"
            ));
        }
        Ok(addresses)
    }
}

impl OncallCheck {
    /// Pass on the lowest-level duty within the limit (the longest, among equals); fail otherwise,
    /// saying whether the requester is on call at too high a level or not at all. Either way the
    /// evidence is for the effective start, and a start later than now is named in the message.
    fn judge(&self, duties: Vec<Duty>, context: &CheckContext<'_>) -> CheckOutcome {
        let at = context.interval.start;
        let when = if context.interval.starts_later() {
            format!(
                " at the activation's start ({})",
                at.format("%Y-%m-%d %H:%M UTC")
            )
        } else {
            String::new()
        };
        self.judge_at(duties, at, &when)
            .with_evidence("at", at.to_rfc3339())
            .holding_at(at)
    }

    fn judge_at(&self, mut duties: Vec<Duty>, at: DateTime<Utc>, when: &str) -> CheckOutcome {
        duties.sort_by(|a, b| {
            a.level.cmp(&b.level).then_with(|| {
                b.end
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
                    .cmp(&a.end.unwrap_or(DateTime::<Utc>::MAX_UTC))
            })
        });
        let allowed = |duty: &&Duty| self.max_level.is_none_or(|max| duty.level <= max);
        if let Some(duty) = duties.iter().find(allowed) {
            let separator = if when.is_empty() { "" } else { "," };
            let message = format!(
                "you are on call for {} (level {}){when}{separator} {}",
                duty.target,
                duty.level,
                until(duty.end, at)
            );
            return CheckOutcome::pass(message)
                .with_evidence("schedule", duty.target.clone())
                .with_evidence("level", duty.level)
                .with_evidence(
                    "shift_end",
                    duty.end
                        .map(|end| serde_json::Value::from(end.to_rfc3339()))
                        .unwrap_or_default(),
                );
        }
        match (duties.first(), self.max_level) {
            (Some(duty), Some(max)) => CheckOutcome::fail(format!(
                "you are on call for {}{when} only at level {}, but level {max} or lower is required",
                duty.target, duty.level
            ))
            .with_evidence("schedule", duty.target.clone())
            .with_evidence("level", duty.level),
            _ => CheckOutcome::fail(format!(
                "you are not on call for {}{when}",
                self.targets()
            )),
        }
    }

    fn targets(&self) -> String {
        let names: Vec<&str> = self
            .schedules
            .iter()
            .chain(&self.policies)
            .map(String::as_str)
            .collect();
        names.join(" or ")
    }
}

/// The instant to ask an on-call service about: `None` when the activation starts now (the
/// service's present, which its cache may serve), the effective start when it starts later.
fn later_start(context: &CheckContext<'_>) -> Option<DateTime<Utc>> {
    context
        .interval
        .starts_later()
        .then_some(context.interval.start)
}

/// "until 18:00 UTC" on the day of `at`, with the date otherwise.
fn until(end: Option<DateTime<Utc>>, at: DateTime<Utc>) -> String {
    match end {
        None => "with no end".to_string(),
        Some(end) if end.date_naive() == at.date_naive() => {
            format!("until {} UTC", end.format("%H:%M"))
        }
        Some(end) => format!("until {} UTC", end.format("%Y-%m-%d %H:%M")),
    }
}

fn not_configured(connector: &str) -> String {
    format!(
        "on-call status could not be checked: the {connector} connector is not configured (`[connectors.{connector}]`)"
    )
}

/// What the reference says `oncall` reads, per vendor, from the vendor table and connectors.
fn oncall_reads() -> Vec<crate::checks::registry::UpstreamFact> {
    let mut reads: Vec<crate::checks::registry::UpstreamFact> =
        crate::connectors::oncall::ONCALL_VENDORS
            .iter()
            .map(|vendor| {
                crate::checks::registry::UpstreamFact::new(
                    vendor.name,
                    if vendor.escalation_policies {
                        "asked by schedules and escalation policies".to_string()
                    } else {
                        "asked by schedules only (no `escalation_policies`)".to_string()
                    },
                )
            })
            .collect();
    reads.push(crate::checks::registry::UpstreamFact::new(
        "pagerduty",
        "`GET /oncalls`: each entry's `escalation_level` is the level `max_escalation_level` judges",
    ));
    reads.push(crate::checks::registry::UpstreamFact::new(
        "opsgenie",
        format!(
            "schedule on-call recipients (`flat=true`) all count as level {}",
            crate::connectors::opsgenie::RECIPIENT_LEVEL
        ),
    ));
    reads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_support::TestEnv;

    fn spec(yaml: &str) -> OncallSpec {
        yaml_serde::from_str(yaml).unwrap()
    }

    fn problems(yaml: &str) -> Vec<Diagnostic> {
        let env = TestEnv::default();
        build(&spec(yaml), &env.env()).unwrap_err()
    }

    #[test]
    fn every_spec_problem_is_reported() {
        let found =
            problems("{ source: opsgenie, escalation_policies: [' '], max_escalation_level: 0 }");
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["", "escalation_policies", "max_escalation_level"]);
        let found = problems("{ source: victorops, schedules: [S] }");
        assert_eq!(found[0].key, "source");
        assert!(found[0].message.contains("`victorops`"));
        let found = problems("{ source: opsgenie, schedules: [S], escalation_policies: [P] }");
        assert_eq!(found[0].key, "escalation_policies");
    }

    #[test]
    fn an_unconfigured_connector_is_an_error_not_a_failure() {
        let env = TestEnv::default();
        let check = build(
            &spec("{ source: pagerduty, schedules: [P1ABCDE] }"),
            &env.env(),
        )
        .unwrap();
        let request = crate::checks::test_support::request();
        let outcome = crate::checks::test_support::run(
            check.as_ref(),
            &request,
            crate::checks::test_support::now(),
        );
        assert_eq!(outcome.status, crate::checks::CheckStatus::Error);
        assert!(
            outcome
                .message
                .contains("pagerduty connector is not configured")
        );
    }

    #[test]
    fn shift_ends_are_shown_with_a_date_only_when_not_today() {
        let now = crate::checks::test_support::now();
        let today = crate::checks::test_support::at("2026-11-24T20:00:00Z");
        let tomorrow = crate::checks::test_support::at("2026-11-25T06:30:00Z");
        assert_eq!(until(Some(today), now), "until 20:00 UTC");
        assert_eq!(until(Some(tomorrow), now), "until 2026-11-25 06:30 UTC");
        assert_eq!(until(None, now), "with no end");
    }
}
