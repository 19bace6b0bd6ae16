//! `pimgate rules backtest`: what changed rules would have done to recorded decisions.
//!
//! Each audit record (JSON lines as pimgate writes them) carries the normalised request, the stage,
//! the instant it was decided at (`decidedAt`) and what the upstream systems answered (`facts`).
//! The request is decided again with the new rules at that instant and stage, with a replaying
//! fact book (`connectors::facts`) in scope: no upstream is asked. A question the record holds no
//! answer for makes the decision "cannot replay" (it is not compared), as does a `justification`
//! check on a record whose justification was masked. Records without these fields, and retries
//! answered from the replay cache, are counted and skipped with a reason, never guessed.
//!
//! Records are read one line at a time, so memory does not grow with the log.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::connectors::facts::{self, Fact, FactBook};
use crate::decision::{Decision, evaluate_at_stage};
use crate::payload::{
    Action, ActivationRequest, ExpirationKind, GroupAccess, ResourceType, Schedule, Stage, Target,
    Ticket, parse_iso8601_duration,
};
use crate::rules::RuleSet;

/// The budget of one replayed decision: every answer is in memory, so it is never the limit.
const REPLAY_BUDGET: Duration = Duration::from_secs(10);

/// The record type pimgate's audit lines carry.
const AUDIT_TYPE: &str = "pimgate.audit";

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("line {line}: {message}")]
    Unreadable { line: usize, message: String },
}

/// One side of a change: what was (or would be) answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Side {
    pub outcome: String,
    pub policy: Option<String>,
    pub reasons: Vec<String>,
}

/// A decision the new rules would answer differently (another outcome or another policy).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub line: usize,
    pub evaluation_id: String,
    pub principal_id: String,
    /// The role's name when pimgate knows it, else the role or group id.
    pub role: String,
    pub before: Side,
    pub after: Side,
}

/// How often a shadow (`mode: audit`) policy would have answered otherwise than the replayed answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShadowTally {
    pub matched: usize,
    pub disagreed: usize,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Records decided again (including those that could not be replayed).
    pub decisions: usize,
    pub changed: Vec<Change>,
    /// Decisions that needed an answer the record does not hold, by reason.
    pub cannot_replay: BTreeMap<String, usize>,
    /// Records not decided again, by reason.
    pub skipped: BTreeMap<String, usize>,
    pub shadows: BTreeMap<String, ShadowTally>,
}

impl Report {
    pub fn cannot_replay_total(&self) -> usize {
        self.cannot_replay.values().sum()
    }

    /// The last line: `N decisions, M changed`, then what could not be replayed or was skipped.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} decisions, {} changed",
            self.decisions,
            self.changed.len()
        );
        let counted = |counts: &BTreeMap<String, usize>| {
            counts
                .iter()
                .map(|(reason, count)| format!("{count} {reason}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.cannot_replay.is_empty() {
            line.push_str(&format!(
                ", {} cannot replay ({})",
                self.cannot_replay_total(),
                counted(&self.cannot_replay)
            ));
        }
        if !self.skipped.is_empty() {
            line.push_str(&format!(
                ", {} skipped ({})",
                self.skipped.values().sum::<usize>(),
                counted(&self.skipped)
            ));
        }
        line
    }

    /// The text report: changes grouped by the policy that decided before, shadow disagreement,
    /// and the summary line last.
    pub fn render(&self) -> String {
        let mut groups: BTreeMap<String, Vec<&Change>> = BTreeMap::new();
        for change in &self.changed {
            let policy = change
                .before
                .policy
                .clone()
                .or_else(|| change.after.policy.clone())
                .map_or_else(|| "(no policy)".to_string(), |name| format!("'{name}'"));
            groups.entry(policy).or_default().push(change);
        }
        let mut out = String::new();
        let side = |side: &Side| {
            format!(
                "{}: {}",
                side.policy.as_deref().map_or_else(
                    || "no policy".to_string(),
                    |name| format!("policy '{name}'")
                ),
                side.reasons.first().map_or("", String::as_str)
            )
        };
        for (policy, changes) in &groups {
            out.push_str(&format!("policy {policy}: {} changed\n", changes.len()));
            for change in changes {
                out.push_str(&format!(
                    "  {} {} {}: {} -> {}\n    before: {}\n    after:  {}\n",
                    change.evaluation_id,
                    change.principal_id,
                    change.role,
                    change.before.outcome,
                    change.after.outcome,
                    side(&change.before),
                    side(&change.after)
                ));
            }
        }
        for (policy, tally) in &self.shadows {
            out.push_str(&format!(
                "shadow policy '{policy}': disagreed with the answer in {} of {} decisions\n",
                tally.disagreed, tally.matched
            ));
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }
}

/// Decides every audit record of `input` again with `rules`. `Err` on the first line that is not
/// JSON (its number); lines that are JSON but not audit records are skipped with a reason.
pub async fn run(rules: &RuleSet, input: impl BufRead) -> Result<Report, BacktestError> {
    let mut report = Report::default();
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|error| BacktestError::Unreadable {
            line: number,
            message: error.to_string(),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Value =
            serde_json::from_str(&line).map_err(|error| BacktestError::Unreadable {
                line: number,
                message: format!("not a JSON audit record ({error})"),
            })?;
        match replayable(&record) {
            Err(reason) => *report.skipped.entry(reason.into()).or_default() += 1,
            Ok(replay) => {
                report.decisions += 1;
                decide_again(rules, number, &record, replay, &mut report).await;
            }
        }
    }
    Ok(report)
}

/// What a record gives to decide it again.
struct Replay {
    request: ActivationRequest,
    stage: Stage,
    at: DateTime<Utc>,
    facts: Vec<Fact>,
    justification_masked: bool,
}

/// The request, stage, instant and facts of a record, or why it cannot be decided again.
fn replayable(record: &Value) -> Result<Replay, &'static str> {
    if record.get("type").and_then(Value::as_str) != Some(AUDIT_TYPE) {
        return Err("not audit records");
    }
    if record.get("replay").and_then(Value::as_bool) == Some(true) {
        return Err("retries answered from an earlier decision");
    }
    let (Some(facts), Some(at), Some(_)) = (
        record.get("facts"),
        record.get("decidedAt"),
        record.get("schedule"),
    ) else {
        return Err("recorded without facts (written before pimgate kept them)");
    };
    let facts: Vec<Fact> =
        serde_json::from_value(facts.clone()).map_err(|_| "with unreadable facts")?;
    let at = serde_json::from_value::<DateTime<Utc>>(at.clone())
        .map_err(|_| "with an unreadable decidedAt")?;
    let stage = match record.get("stage").and_then(Value::as_str) {
        Some("pre_approval") => Stage::PreApproval,
        Some("post_approval") => Stage::PostApproval,
        _ => return Err("with an unknown stage"),
    };
    let request = request_of(record).ok_or("whose request could not be rebuilt")?;
    Ok(Replay {
        request,
        stage,
        at,
        facts,
        justification_masked: record
            .get("justificationMasked")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    })
}

fn text(record: &Value, key: &str) -> Option<String> {
    record.get(key).and_then(Value::as_str).map(str::to_string)
}

fn time(record: &Value, key: &str) -> Option<Option<DateTime<Utc>>> {
    match record.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(value) => serde_json::from_value(value.clone()).ok().map(Some),
    }
}

/// The normalised request as the audit record names it (`audit::AuditRecord`).
fn request_of(record: &Value) -> Option<ActivationRequest> {
    let resource_type = match record.get("resourceType")?.as_str()? {
        "entraRoles" => ResourceType::EntraRoles,
        "entraGroups" => ResourceType::EntraGroups,
        "azureResources" => ResourceType::AzureResources,
        _ => return None,
    };
    let target = record.get("target")?;
    let target = match target.get("kind")?.as_str()? {
        "entraRole" => Target::EntraRole {
            role_definition_id: text(target, "roleDefinitionId")?,
            directory_scope_id: text(target, "directoryScopeId")?,
            app_scope_id: text(target, "appScopeId"),
        },
        "group" => Target::Group {
            group_id: text(target, "groupId")?,
            access_id: match target.get("accessId")?.as_str()? {
                "member" => GroupAccess::Member,
                "owner" => GroupAccess::Owner,
                _ => return None,
            },
        },
        "azureRole" => Target::AzureRole {
            role_definition_id: text(target, "roleDefinitionId")?,
            role_definition_path: text(target, "roleDefinitionPath")?,
            scope: text(target, "scope")?,
        },
        _ => return None,
    };
    let schedule = record.get("schedule")?;
    let schedule = Schedule {
        start: time(schedule, "start")?,
        expiration_kind: match schedule.get("expirationKind")?.as_str()? {
            "notSpecified" => ExpirationKind::NotSpecified,
            "noExpiration" => ExpirationKind::NoExpiration,
            "afterDateTime" => ExpirationKind::AfterDateTime,
            "afterDuration" => ExpirationKind::AfterDuration,
            _ => return None,
        },
        duration: match schedule.get("duration") {
            None | Some(Value::Null) => None,
            Some(value) => Some(parse_iso8601_duration(value.as_str()?).ok()?),
        },
        end: time(schedule, "end")?,
    };
    let ticket = match record.get("ticket") {
        None | Some(Value::Null) => None,
        Some(ticket) => Some(Ticket {
            number: text(ticket, "number"),
            system: text(ticket, "system"),
        }),
    };
    Some(ActivationRequest {
        request_id: text(record, "requestId"),
        resource_type,
        principal_id: text(record, "principalId")?,
        principal_type: text(record, "principalType"),
        action: Action::parse(record.get("action")?.as_str()?),
        target,
        justification: text(record, "justification"),
        ticket,
        schedule,
    })
}

/// Every check kind the decision ran: policy, shadows and guards.
fn ran_kind(decision: &Decision, kind: &str) -> bool {
    decision
        .checks
        .iter()
        .chain(decision.shadow.iter().flat_map(|shadow| &shadow.checks))
        .chain(decision.guards.iter().flat_map(|guard| &guard.checks))
        .any(|check| check.kind == kind)
}

async fn decide_again(
    rules: &RuleSet,
    line: usize,
    record: &Value,
    replay: Replay,
    report: &mut Report,
) {
    let book = FactBook::replaying(replay.facts);
    let decision = facts::scope(
        book.clone(),
        evaluate_at_stage(
            rules,
            &replay.request,
            replay.stage,
            replay.at,
            REPLAY_BUDGET,
        ),
    )
    .await;
    if replay.justification_masked && ran_kind(&decision, "justification") {
        *report
            .cannot_replay
            .entry("justification masked in the record".into())
            .or_default() += 1;
        return;
    }
    if let Some((source, _)) = book.misses().first() {
        *report
            .cannot_replay
            .entry(format!("{source} answer not recorded"))
            .or_default() += 1;
        return;
    }
    for shadow in &decision.shadow {
        let tally = report.shadows.entry(shadow.policy.clone()).or_default();
        tally.matched += 1;
        if shadow.outcome != decision.outcome {
            tally.disagreed += 1;
        }
    }
    let before = Side {
        outcome: text(record, "outcome").unwrap_or_default(),
        policy: text(record, "policy"),
        reasons: record
            .get("reasons")
            .and_then(|reasons| serde_json::from_value(reasons.clone()).ok())
            .unwrap_or_default(),
    };
    let after = Side {
        outcome: decision.outcome.as_str().to_string(),
        policy: decision.policy.clone(),
        reasons: decision.reasons.clone(),
    };
    if before.outcome != after.outcome || before.policy != after.policy {
        report.changed.push(Change {
            line,
            evaluation_id: text(record, "evaluationId").unwrap_or_default(),
            principal_id: replay.request.principal_id.clone(),
            role: text(record, "roleName")
                .unwrap_or_else(|| replay.request.target_id().to_string()),
            before,
            after,
        });
    }
}
