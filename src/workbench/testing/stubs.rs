//! Stubbed upstream facts of a rule test case. The status form (`facts: { itsm: fail }`) swaps the
//! checks of those kinds for stubs in a copy of the rules, so a case can pin "what happens when
//! ServiceNow is down" without a ServiceNow. The record form (`facts: { itsm: { record: ... } }`,
//! `records`) keeps the real check and stubs what the upstream system answers.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::records::{RecordStub, parse_record};
use crate::checks::registry::UPSTREAM_KINDS;
use crate::checks::{Check, CheckContext, CheckOutcome, CheckStatus, NamedCheck};
use crate::rules::RuleSet;
use crate::rules::report::unknown_keys;
use crate::vocabulary::diagnostic::Diagnostic;

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

/// An upstream kind's `'static` name and what its checks report instead of asking.
pub(super) type Fact = (&'static str, CheckOutcome);

/// A case's stubs: status stubs (checks swapped) and record stubs (real checks, stubbed answers).
#[derive(Debug, Default)]
pub(super) struct Stubs {
    pub(super) statuses: Vec<Fact>,
    pub(super) records: Vec<RecordStub>,
}

/// Each fact as the outcome its checks will report (status form) or the record its upstream
/// answers with (record form), keyed by the kind's `'static` name; every bad entry is a problem
/// keyed below `facts`.
pub(super) fn parse_facts(
    facts: &BTreeMap<String, yaml_serde::Value>,
) -> Result<Stubs, Vec<Diagnostic>> {
    let mut parsed = Vec::new();
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let shape = "write `pass`, `fail` or `error`, `{ status: fail, message: \"ticket is closed\" }`, or the upstream's answer as `{ record: ... }`";
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
        if let yaml_serde::Value::Mapping(map) = value
            && map.contains_key("record")
        {
            unknown_keys(&mut errors, key, map, &["record"]);
            if let Some(record) = map.get("record")
                && let Some(stub) =
                    parse_record(kind, record, &format!("{key}.record"), &mut errors)
            {
                records.push(stub);
            }
            continue;
        }
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
        Ok(Stubs {
            statuses: parsed,
            records,
        })
    } else {
        Err(errors)
    }
}

/// The rules with every check of a stubbed kind replaced; the rules themselves when nothing is
/// stubbed, so a case without `facts` runs exactly what the service would.
pub(super) fn with_facts<'r>(rules: &'r RuleSet, facts: &[Fact]) -> Cow<'r, RuleSet> {
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
