//! One structured JSON record per answered evaluation, written as a single line.
//!
//! Each line is written with one `write` call on an unbuffered handle, so records from concurrent
//! requests never interleave and nothing is left in a buffer when the process stops.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::decision::{CheckReport, Decision, SkippedPolicy};
use crate::payload::{ActivationRequest, Target, Ticket, format_iso8601_duration};
use crate::settings::{AuditSettings, AuditSink, JustificationMasking};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open audit file `{path}`: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
}

/// Who called, as proven by the token (never the token itself).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerSummary {
    pub app_id: String,
    pub token_version: String,
    pub dev: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord<'a> {
    #[serde(rename = "type")]
    pub record_type: &'static str,
    pub time: DateTime<Utc>,
    pub evaluation_id: String,
    /// True when this answer is a stored decision replayed for a PIM retry of the same request.
    pub replay: bool,
    pub http_request_id: &'a str,
    pub request_id: Option<&'a str>,
    pub outcome: &'static str,
    pub reasons: &'a [String],
    pub policy: Option<&'a str>,
    pub skipped_policies: &'a [SkippedPolicy],
    pub checks: &'a [CheckReport],
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
    pub justification: Option<String>,
    pub requested_duration: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub caller: &'a CallerSummary,
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

    /// Applies the configured masking to a justification before it leaves the process.
    pub fn mask_justification(&self, justification: Option<&str>) -> Option<String> {
        let text = justification?;
        match self.settings.justification {
            JustificationMasking::Full => Some(text.to_string()),
            JustificationMasking::Truncate => {
                let kept: String = text
                    .chars()
                    .take(self.settings.justification_max_chars)
                    .collect();
                if kept.len() < text.len() {
                    Some(format!("{kept}…"))
                } else {
                    Some(kept)
                }
            }
            JustificationMasking::Hash => Some(format!(
                "sha256:{}",
                hex::encode(Sha256::digest(text.as_bytes()))
            )),
            JustificationMasking::Omit => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        decision: &Decision,
        request: &ActivationRequest,
        caller: &CallerSummary,
        http_request_id: &str,
        replay: bool,
        latency_ms: f64,
    ) {
        let now = Utc::now();
        let record = AuditRecord {
            record_type: "pimgate.audit",
            time: now,
            evaluation_id: decision.evaluation_id.to_string(),
            replay,
            http_request_id,
            request_id: request.request_id.as_deref(),
            outcome: decision.outcome.as_str(),
            reasons: &decision.reasons,
            policy: decision.policy.as_deref(),
            skipped_policies: &decision.skipped_policies,
            checks: &decision.checks,
            rules_revision: &decision.rules_revision,
            evaluation_ms: decision.duration_ms,
            latency_ms,
            principal_id: &request.principal_id,
            resource_type: request.resource_type.as_str(),
            action: request.action.as_str(),
            target: &request.target,
            role_name: crate::rules::catalog::by_id(request.target_id()).map(|role| role.name),
            scope: request.scope(),
            ticket: request.ticket.as_ref(),
            justification: self.mask_justification(request.justification.as_deref()),
            requested_duration: request
                .schedule
                .requested_duration(decision.evaluated_at)
                .map(format_iso8601_duration),
            start: request.schedule.start,
            caller,
        };
        self.write(&record);
    }

    fn write(&self, record: &AuditRecord<'_>) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(%error, "audit record could not be serialized");
                return;
            }
        };
        line.push(b'\n');
        let result = match self.settings.sink {
            AuditSink::Off => Ok(()),
            AuditSink::Stdout => std::io::stdout().lock().write_all(&line),
            AuditSink::Stderr => std::io::stderr().lock().write_all(&line),
            AuditSink::File => match &self.file {
                Some(file) => match file.lock() {
                    Ok(mut file) => file.write_all(&line),
                    Err(poisoned) => poisoned.into_inner().write_all(&line),
                },
                None => Ok(()),
            },
        };
        if let Err(error) = result {
            metrics::counter!("pimgate_audit_write_failures_total").increment(1);
            tracing::error!(%error, evaluation_id = %record.evaluation_id, "audit record could not be written");
        }
    }
}
