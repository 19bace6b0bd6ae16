//! One structured JSON record per answered evaluation, written as a single line.
//!
//! Each line is written with one `write` call on an unbuffered handle, so records from concurrent
//! requests never interleave and nothing is left in a buffer when the process stops. The line is
//! serialized into a per-thread buffer that is reused from record to record (no allocation per
//! record once it has grown to the size of a record).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::connectors::facts::Fact;
use crate::decision::{CheckReport, Decision, GuardReport, ShadowDecision, SkippedPolicy};
use crate::payload::{ActivationRequest, Schedule, Stage, Target, Ticket, format_iso8601_duration};
use crate::settings::{AuditSettings, AuditSink, JustificationMasking};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open audit file `{path}`: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
}

/// Who called, as proven by the token (never the token itself). Borrowed from the verified caller:
/// the record is written before the request ends.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerSummary<'a> {
    pub app_id: &'a str,
    pub token_version: &'static str,
    pub dev: bool,
}

/// What a served request adds to its decision's audit record ([`AuditLog::record_served`]).
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    pub caller: &'a CallerSummary<'a>,
    pub http_request_id: &'a str,
    pub replay: bool,
    pub latency_ms: f64,
    pub facts: &'a [Fact],
    /// The justification as [`AuditLog::masked_justification`] already masked it: the handler
    /// masks once and hands the same text to the record and the console.
    pub justification: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord<'a> {
    #[serde(rename = "type")]
    pub record_type: &'static str,
    pub time: DateTime<Utc>,
    pub evaluation_id: uuid::Uuid,
    /// `pre_approval` or `post_approval`: which of PIM's callbacks this answers.
    pub stage: Stage,
    /// True when this answer is a stored decision replayed for a PIM retry of the same request.
    pub replay: bool,
    pub http_request_id: &'a str,
    pub request_id: Option<&'a str>,
    pub outcome: &'static str,
    pub reasons: &'a [String],
    pub policy: Option<&'a str>,
    pub skipped_policies: &'a [SkippedPolicy],
    pub checks: &'a [CheckReport],
    /// What matching `mode: audit` policies would have decided; `[]` when none matched.
    pub shadow_decisions: &'a [ShadowDecision],
    /// Every guard that applied (`name`, `mode`, `effect`: pass/deny/error/cap, `reasons`,
    /// `checks`), enforcing and `audit` ones; `[]` when none applied.
    pub guards: &'a [GuardReport],
    pub rules_revision: &'a str,
    pub evaluation_ms: f64,
    pub latency_ms: f64,
    pub principal_id: &'a str,
    pub resource_type: &'static str,
    pub action: &'a str,
    pub target: &'a Target,
    pub role_name: Option<&'static str>,
    pub scope: &'a str,
    pub ticket: Option<&'a Ticket>,
    pub justification: Option<&'a str>,
    pub requested_duration: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub caller: &'a CallerSummary<'a>,
    // What `pimgate rules backtest` needs to decide the request again (`workbench::backtest`).
    /// The instant the rules judged the request at (`time` is when the record was written).
    pub decided_at: DateTime<Utc>,
    pub principal_type: Option<&'a str>,
    /// The request's schedule as decoded: `start`, `expirationKind`, `duration`, `end`.
    pub schedule: &'a Schedule,
    /// True when `justification` is not the text the rules judged (truncated, hashed, omitted):
    /// a backtest then reports justification checks as "cannot replay".
    pub justification_masked: bool,
    /// What the upstream systems answered the checks (`connectors::facts`); `[]` for a replayed
    /// answer, which asked nothing.
    pub facts: &'a [Fact],
}

impl<'a> AuditRecord<'a> {
    /// The record of `decision` on `request` with what only a served request adds left empty (time =
    /// decision time, no caller, latency 0, no facts) and the justification as given. `AuditLog::record`
    /// fills those in; `evaluate --json` prints it as it is, so both speak the same field names.
    pub fn of(decision: &'a Decision, request: &'a ActivationRequest) -> Self {
        static NO_CALLER: CallerSummary<'static> = CallerSummary {
            app_id: "",
            token_version: "",
            dev: false,
        };
        AuditRecord {
            record_type: "pimgate.audit",
            time: decision.evaluated_at,
            evaluation_id: decision.evaluation_id,
            stage: decision.stage,
            replay: false,
            http_request_id: "",
            request_id: request.request_id.as_deref(),
            outcome: decision.outcome.as_str(),
            reasons: &decision.reasons,
            policy: decision.policy.as_deref(),
            skipped_policies: &decision.skipped_policies,
            checks: &decision.checks,
            shadow_decisions: &decision.shadow,
            guards: &decision.guards,
            rules_revision: &decision.rules_revision,
            evaluation_ms: decision.duration_ms,
            latency_ms: 0.0,
            principal_id: &request.principal_id,
            resource_type: request.resource_type.as_str(),
            action: request.action.as_str(),
            target: &request.target,
            role_name: crate::rules::catalog::by_id(request.target_id()).map(|role| role.name),
            scope: request.scope(),
            ticket: request.ticket.as_ref(),
            justification: request.justification.as_deref(),
            requested_duration: request
                .schedule
                .requested_duration(decision.evaluated_at)
                .map(format_iso8601_duration),
            start: request.schedule.start,
            caller: &NO_CALLER,
            decided_at: decision.evaluated_at,
            principal_type: request.principal_type.as_deref(),
            schedule: &request.schedule,
            justification_masked: false,
            facts: &[],
        }
    }
}

pub struct AuditLog {
    settings: AuditSettings,
    file: Option<Mutex<File>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("sink", &self.settings.sink)
            .finish()
    }
}

impl AuditLog {
    pub fn new(settings: &AuditSettings) -> Result<Self, AuditError> {
        let file = match (settings.sink, &settings.path) {
            (AuditSink::File, Some(path)) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| AuditError::Open {
                        path: path.display().to_string(),
                        source,
                    })?;
                Some(Mutex::new(file))
            }
            _ => None,
        };
        Ok(Self {
            settings: settings.clone(),
            file,
        })
    }

    /// False when the sink is `off`: nothing is written, so nothing need be gathered for a record
    /// (the handler then keeps no fact book and masks no justification for it).
    pub fn is_on(&self) -> bool {
        self.settings.sink != AuditSink::Off
    }

    /// Applies the configured masking to a justification before it leaves the process. This is the
    /// only field of the record that holds the justification: checks describe it without quoting it
    /// (`checks::justification`), and CEL errors name it instead of printing it (`rules::cel`), so
    /// masking this one field masks it in the whole record.
    pub fn mask_justification(&self, justification: Option<&str>) -> Option<String> {
        self.masked_justification(justification)
            .map(Cow::into_owned)
    }

    /// [`Self::mask_justification`] without copying what it leaves as it is (`full`, or a
    /// `truncate` the text already fits): only a truncated or hashed text is a new string.
    pub fn masked_justification<'t>(&self, justification: Option<&'t str>) -> Option<Cow<'t, str>> {
        let text = justification?;
        match self.settings.justification {
            JustificationMasking::Full => Some(Cow::Borrowed(text)),
            JustificationMasking::Truncate => {
                let max_chars = self.settings.justification_max_chars;
                match text.char_indices().nth(max_chars) {
                    Some((cut, _)) => Some(Cow::Owned(format!("{}…", &text[..cut]))),
                    None => Some(Cow::Borrowed(text)),
                }
            }
            JustificationMasking::Hash => Some(Cow::Owned(format!(
                "sha256:{}",
                hex::encode(Sha256::digest(text.as_bytes()))
            ))),
            JustificationMasking::Omit => None,
        }
    }

    /// Writes the record of a served request, masking the justification itself. The handler uses
    /// [`Self::record_served`] with the justification it has already masked.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        decision: &Decision,
        request: &ActivationRequest,
        caller: &CallerSummary<'_>,
        http_request_id: &str,
        replay: bool,
        latency_ms: f64,
        facts: &[Fact],
    ) {
        if !self.is_on() {
            return;
        }
        let justification = self.masked_justification(request.justification.as_deref());
        self.record_served(
            decision,
            request,
            Served {
                caller,
                http_request_id,
                replay,
                latency_ms,
                facts,
                justification: justification.as_deref(),
            },
        );
    }

    /// Writes the record of a served request whose justification `served` holds already masked.
    pub fn record_served(
        &self,
        decision: &Decision,
        request: &ActivationRequest,
        served: Served<'_>,
    ) {
        // Building and serializing the record is most of its cost: skip it when nobody reads it.
        if !self.is_on() {
            return;
        }
        let record = AuditRecord {
            time: Utc::now(),
            replay: served.replay,
            http_request_id: served.http_request_id,
            latency_ms: served.latency_ms,
            justification_masked: served.justification != request.justification.as_deref(),
            justification: served.justification,
            caller: served.caller,
            facts: served.facts,
            ..AuditRecord::of(decision, request)
        };
        self.write(&record);
    }

    /// Called once the server has stopped, before the process exits: pushes whatever the sink still
    /// holds to its destination (stdout's line buffer, the file's page cache to disk) so the last
    /// records of a shutdown are never lost.
    pub fn flush(&self) -> std::io::Result<()> {
        match self.settings.sink {
            AuditSink::Off => Ok(()),
            AuditSink::Stdout => std::io::stdout().lock().flush(),
            AuditSink::Stderr => std::io::stderr().lock().flush(),
            AuditSink::File => match &self.file {
                Some(file) => match file.lock() {
                    Ok(file) => file.sync_data(),
                    Err(poisoned) => poisoned.into_inner().sync_data(),
                },
                None => Ok(()),
            },
        }
    }

    fn write(&self, record: &AuditRecord<'_>) {
        let result = with_line_buffer(|line| {
            if let Err(error) = write_line(line, record) {
                tracing::error!(%error, "audit record could not be serialized");
                return Ok(());
            }
            match self.settings.sink {
                AuditSink::Off => Ok(()),
                AuditSink::Stdout => std::io::stdout().lock().write_all(line),
                AuditSink::Stderr => std::io::stderr().lock().write_all(line),
                AuditSink::File => match &self.file {
                    Some(file) => match file.lock() {
                        Ok(mut file) => file.write_all(line),
                        Err(poisoned) => poisoned.into_inner().write_all(line),
                    },
                    None => Ok(()),
                },
            }
        });
        if let Err(error) = result {
            metrics::counter!("pimgate_audit_write_failures_total").increment(1);
            tracing::error!(%error, evaluation_id = %record.evaluation_id, "audit record could not be written");
        }
    }
}

/// Serializes `record` as one JSON line (with its `\n`) into `line`, which it clears first. On an
/// error `line` holds a partial record and must not be written.
pub fn write_line<T: Serialize>(line: &mut Vec<u8>, record: &T) -> serde_json::Result<()> {
    line.clear();
    serde_json::to_writer(&mut *line, record)?;
    line.push(b'\n');
    Ok(())
}

/// A buffer grown past this by an unusually large record is given back after it, so one outlier
/// does not pin its size in every worker thread for good.
const LINE_BUFFER_KEPT_BYTES: usize = 64 * 1024;

thread_local! {
    /// This thread's audit line, reused from record to record (records are written one at a time
    /// per thread, and each is written out before the next is serialized).
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `use_line` with this thread's line buffer (a fresh one if it is in use or gone, which only a
/// re-entrant call or thread teardown could cause).
fn with_line_buffer<R>(mut use_line: impl FnMut(&mut Vec<u8>) -> R) -> R {
    let reused = LINE.try_with(|cell| {
        let mut line = cell.try_borrow_mut().ok()?;
        let result = use_line(&mut line);
        line.clear();
        if line.capacity() > LINE_BUFFER_KEPT_BYTES {
            line.shrink_to(LINE_BUFFER_KEPT_BYTES);
        }
        Some(result)
    });
    match reused {
        Ok(Some(result)) => result,
        _ => use_line(&mut Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(masking: JustificationMasking, max_chars: usize) -> AuditLog {
        AuditLog::new(&AuditSettings {
            sink: AuditSink::Off,
            path: None,
            justification: masking,
            justification_max_chars: max_chars,
        })
        .expect("audit log")
    }

    #[test]
    fn justifications_are_masked_as_configured() {
        let text = "Investigating INC0042001 for Mrs Example, customer 4711";
        assert_eq!(
            log(JustificationMasking::Full, 10)
                .mask_justification(Some(text))
                .as_deref(),
            Some(text)
        );
        assert_eq!(
            log(JustificationMasking::Truncate, 13)
                .mask_justification(Some(text))
                .as_deref(),
            Some("Investigating…")
        );
        assert_eq!(
            log(JustificationMasking::Truncate, 500)
                .mask_justification(Some(text))
                .as_deref(),
            Some(text),
            "short enough: unchanged"
        );
        let hashed = log(JustificationMasking::Hash, 10)
            .mask_justification(Some(text))
            .expect("hash");
        assert!(
            hashed.starts_with("sha256:") && hashed.len() == 7 + 64 && !hashed.contains("4711")
        );
        assert_eq!(
            log(JustificationMasking::Omit, 10).mask_justification(Some(text)),
            None
        );
        assert_eq!(
            log(JustificationMasking::Full, 10).mask_justification(None),
            None
        );
    }

    #[test]
    fn a_record_says_when_its_justification_is_not_the_one_judged() {
        let dir = tempfile::tempdir().expect("dir");
        let mut request = crate::checks::test_support::request();
        request.justification = Some("Rotate the certificate for CHG0031337".into());
        let mut masked = Vec::new();
        for masking in [
            JustificationMasking::Full,
            JustificationMasking::Hash,
            JustificationMasking::Omit,
        ] {
            let path = dir.path().join(format!("{masking:?}.jsonl"));
            let audit = AuditLog::new(&AuditSettings {
                sink: AuditSink::File,
                path: Some(path.clone()),
                justification: masking,
                justification_max_chars: 200,
            })
            .expect("audit log");
            let decision = Decision::bare(crate::decision::Outcome::Approved);
            let caller = CallerSummary {
                app_id: "app",
                token_version: "v2",
                dev: false,
            };
            audit.record(&decision, &request, &caller, "h", false, 1.0, &[]);
            let line: serde_json::Value =
                serde_json::from_str(std::fs::read_to_string(&path).expect("read").trim())
                    .expect("json");
            masked.push(line["justificationMasked"].clone());
        }
        assert_eq!(masked, [false, true, true]);
    }

    #[test]
    fn masking_without_copying_gives_the_same_text_and_borrows_what_it_leaves_alone() {
        let text = "Investigating INC0042001 for Mrs Example, customer 4711";
        for (masking, max_chars, borrowed) in [
            (JustificationMasking::Full, 5, true),
            (JustificationMasking::Truncate, 500, true),
            (JustificationMasking::Truncate, text.chars().count(), true),
            (JustificationMasking::Truncate, 13, false),
            (JustificationMasking::Truncate, 0, false),
            (JustificationMasking::Hash, 5, false),
        ] {
            let audit = log(masking, max_chars);
            let masked = audit.masked_justification(Some(text));
            assert_eq!(
                masked.as_deref(),
                audit.mask_justification(Some(text)).as_deref(),
                "{masking:?} {max_chars}"
            );
            assert_eq!(
                matches!(masked, Some(Cow::Borrowed(_))),
                borrowed,
                "{masking:?} {max_chars}"
            );
        }
        assert_eq!(
            log(JustificationMasking::Truncate, 0).masked_justification(Some("")),
            Some(Cow::Borrowed(""))
        );
        assert_eq!(
            log(JustificationMasking::Omit, 5).masked_justification(Some(text)),
            None
        );
    }

    #[test]
    fn a_reused_line_buffer_holds_exactly_one_record_and_its_newline() {
        let mut line = Vec::new();
        let long =
            serde_json::json!({ "reasons": ["a long reason that makes the first record longer"] });
        let short = serde_json::json!({ "reasons": [] });
        write_line(&mut line, &long).expect("serialize");
        write_line(&mut line, &short).expect("serialize");
        let mut expected = serde_json::to_vec(&short).expect("serialize");
        expected.push(b'\n');
        assert_eq!(line, expected);
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        let masked = log(JustificationMasking::Truncate, 3).mask_justification(Some("äöüß"));
        assert_eq!(masked.as_deref(), Some("äöü…"));
    }

    #[test]
    fn a_file_sink_appends_one_json_line_per_record() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.jsonl");
        let audit = AuditLog::new(&AuditSettings {
            sink: AuditSink::File,
            path: Some(path.clone()),
            ..AuditSettings::default()
        })
        .expect("audit log");
        let request = crate::checks::test_support::request();
        let decision = Decision {
            stage: Stage::PostApproval,
            reasons: vec!["no".into()],
            policy: Some("p".into()),
            shadow: vec![crate::decision::ShadowDecision {
                policy: "rehearsal".into(),
                outcome: crate::decision::Outcome::Approved,
                reasons: vec!["would approve".into()],
                checks: Vec::new(),
            }],
            guards: vec![crate::decision::GuardReport {
                name: "leavers".into(),
                mode: crate::rules::PolicyMode::Audit,
                effect: crate::decision::GuardEffect::Deny,
                reasons: vec!["would deny".into()],
                checks: vec![CheckReport {
                    kind: "hr".into(),
                    stage: crate::decision::CheckStage::Require,
                    outcome: crate::checks::CheckOutcome::fail("leaves soon"),
                    duration_ms: 0.2,
                }],
            }],
            rules_revision: "abc".into(),
            duration_ms: 0.1,
            ..Decision::bare(crate::decision::Outcome::Denied)
        };
        let caller = CallerSummary {
            app_id: "app",
            token_version: "v2",
            dev: false,
        };
        let facts = [Fact::found("graph.user", "u1", &"profile")];
        audit.record(&decision, &request, &caller, "http-1", false, 1.0, &facts);
        audit.record(&decision, &request, &caller, "http-2", true, 1.0, &[]);
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["evaluationId"], decision.evaluation_id.to_string());
        assert_eq!(lines[1]["replay"], true);
        assert_eq!(lines[0]["stage"], "post_approval");
        assert_eq!(lines[0]["shadowDecisions"][0]["policy"], "rehearsal");
        assert_eq!(lines[0]["shadowDecisions"][0]["outcome"], "Approved");
        let guard = &lines[0]["guards"][0];
        assert_eq!(guard["name"], "leavers");
        assert_eq!(guard["mode"], "audit");
        assert_eq!(guard["effect"], "deny");
        assert_eq!(guard["checks"][0]["kind"], "hr");
        assert_eq!(guard["checks"][0]["status"], "fail");
        assert_eq!(lines[0]["roleName"], "Global Administrator");
        assert_eq!(lines[0]["requestedDuration"], "PT1H");
        assert_eq!(lines[0]["facts"][0]["source"], "graph.user");
        assert_eq!(lines[0]["facts"][0]["value"], "profile");
        assert_eq!(lines[1]["facts"], serde_json::json!([]));
        assert_eq!(lines[0]["schedule"]["duration"], "PT1H");
        assert_eq!(
            lines[0]["decidedAt"],
            serde_json::json!(decision.evaluated_at)
        );
        assert_eq!(lines[0]["justificationMasked"], false);
        audit.flush().expect("a file sink flushes");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }
}
