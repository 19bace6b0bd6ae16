//! A static on-call roster in a YAML file, for small shops without PagerDuty or Opsgenie and for
//! tests. The file is re-read when its modification time or size changes, so editing it takes
//! effect on the next decision without a restart.
//!
//! ```yaml
//! shifts:
//!   - schedule: platform-primary
//!     user: alice@contoso.com        # an e-mail address or an Entra object id
//!     from: 2026-11-24T08:00:00Z     # RFC 3339; the shift covers [from, to)
//!     to: 2026-11-24T18:00:00Z
//!     level: 1                       # optional, default 1
//!     escalation_policy: platform    # optional
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::BuildContext;
use super::http::UpstreamCall;
use crate::vocabulary::diagnostic::Diagnostic;

/// The name in `[connectors.oncall_file]` and in audit records.
pub const CONNECTOR: &str = "oncall_file";

/// `[connectors.oncall_file]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OncallFileSettings {
    /// The roster; relative paths are relative to pimgate's working directory.
    pub path: PathBuf,
}

/// One shift: `user` is on call for `schedule` (and `escalation_policy`, if given) at `level`
/// from `from` (inclusive) to `to` (exclusive).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    pub schedule: String,
    #[serde(default)]
    pub escalation_policy: Option<String>,
    pub user: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    #[serde(default = "first_level")]
    pub level: u32,
}

fn first_level() -> u32 {
    1
}

impl Shift {
    /// Whether the shift covers the instant `at` (the `oncall` check asks about the activation's
    /// effective start).
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        self.from <= at && at < self.to
    }

    /// Whether `user` names an e-mail address (and so needs the requester's profile to match).
    pub fn user_is_address(&self) -> bool {
        self.user.contains('@')
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Roster {
    #[serde(default)]
    shifts: Vec<Shift>,
}

/// Why the roster cannot be used. A broken edit is an error, not an empty roster: nobody should
/// silently drop off call because of a typo.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OncallFileError {
    #[error("the on-call file `{path}` could not be read: {detail}")]
    Unreadable { path: String, detail: String },
    #[error("the on-call file `{path}` is invalid: {detail}")]
    Invalid { path: String, detail: String },
}

#[derive(Debug)]
struct Loaded {
    stamp: (Option<SystemTime>, u64),
    shifts: Arc<Vec<Shift>>,
}

/// The configured roster and the version of it last read.
#[derive(Debug)]
pub struct OncallFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl OncallFile {
    /// Reads the roster now, so a missing or broken file stops start-up with a clear message.
    pub fn new(
        settings: &OncallFileSettings,
        _context: &BuildContext,
    ) -> Result<Self, Vec<Diagnostic>> {
        let path = settings.path.clone();
        let loaded = std::fs::metadata(&path)
            .map_err(|error| OncallFileError::Unreadable {
                path: path.display().to_string(),
                detail: error.to_string(),
            })
            .and_then(|metadata| {
                let text = std::fs::read_to_string(&path).map_err(|error| {
                    OncallFileError::Unreadable {
                        path: path.display().to_string(),
                        detail: error.to_string(),
                    }
                })?;
                Ok(Loaded {
                    stamp: stamp(&metadata),
                    shifts: Arc::new(parse(&path, &text)?),
                })
            })
            .map_err(|error| {
                vec![Diagnostic::error(format!("connectors.{CONNECTOR}.path"), error.to_string(), "point it at a YAML file with `shifts: [{ schedule, user, from, to }]` (times in RFC 3339)")]
            })?;
        Ok(Self {
            path,
            loaded: Mutex::new(loaded),
        })
    }

    /// The current shifts, re-reading the file first if it changed since the last read.
    pub async fn shifts(&self) -> (Result<Arc<Vec<Shift>>, OncallFileError>, UpstreamCall) {
        let started = Instant::now();
        let mut loaded = self.loaded.lock().await;
        let (result, reloaded) = match self.refresh(&mut loaded).await {
            Ok(reloaded) => (Ok(Arc::clone(&loaded.shifts)), reloaded),
            Err(error) => {
                tracing::warn!(connector = CONNECTOR, %error, "on-call file not usable");
                (Err(error), true)
            }
        };
        let call = UpstreamCall {
            connector: CONNECTOR,
            operation: format!("read {}", file_name(&self.path)),
            outcome: if result.is_ok() { "ok" } else { "malformed" }.to_string(),
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            cached: !reloaded,
            attempts: u32::from(reloaded),
        };
        (result, call)
    }

    /// Re-reads the file when its stamp changed; `Ok(true)` when it did.
    async fn refresh(&self, loaded: &mut Loaded) -> Result<bool, OncallFileError> {
        let unreadable = |error: std::io::Error| OncallFileError::Unreadable {
            path: self.path.display().to_string(),
            detail: error.to_string(),
        };
        let metadata = tokio::fs::metadata(&self.path).await.map_err(unreadable)?;
        let current = stamp(&metadata);
        if current == loaded.stamp {
            return Ok(false);
        }
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(unreadable)?;
        let shifts = parse(&self.path, &text)?;
        tracing::info!(
            connector = CONNECTOR,
            shifts = shifts.len(),
            "on-call file reloaded"
        );
        *loaded = Loaded {
            stamp: current,
            shifts: Arc::new(shifts),
        };
        Ok(true)
    }
}

fn stamp(metadata: &std::fs::Metadata) -> (Option<SystemTime>, u64) {
    (metadata.modified().ok(), metadata.len())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Parses and checks every shift, reporting all problems at once.
fn parse(path: &Path, text: &str) -> Result<Vec<Shift>, OncallFileError> {
    let invalid = |detail: String| OncallFileError::Invalid {
        path: path.display().to_string(),
        detail,
    };
    let roster: Roster = yaml_serde::from_str(text).map_err(|error| invalid(error.to_string()))?;
    let mut problems = Vec::new();
    for (index, shift) in roster.shifts.iter().enumerate() {
        let number = index + 1;
        if shift.schedule.trim().is_empty() {
            problems.push(format!("shift {number} has an empty `schedule`"));
        }
        if shift.user.trim().is_empty() {
            problems.push(format!("shift {number} has an empty `user`"));
        }
        if shift.from >= shift.to {
            problems.push(format!("shift {number} ends before it starts"));
        }
        if shift.level == 0 {
            problems.push(format!(
                "shift {number} has level 0; escalation levels start at 1"
            ));
        }
    }
    if problems.is_empty() {
        Ok(roster.shifts)
    } else {
        Err(invalid(problems.join("; ")))
    }
}

/// The roster file as an on-call source: shifts may name the requester by object id (no directory
/// lookup needed) or by e-mail address.
#[async_trait::async_trait]
impl super::oncall::OncallSource for OncallFile {
    async fn on_call(
        &self,
        ask: &super::oncall::OncallAsk<'_>,
        who: &dyn super::oncall::RequesterAddresses,
        calls: &mut Vec<UpstreamCall>,
    ) -> super::oncall::OncallAnswer {
        use super::oncall::{Duty, OncallAnswer};
        let (result, call) = self.shifts().await;
        calls.push(call);
        let shifts = match result {
            Ok(shifts) => shifts,
            Err(error) => {
                return OncallAnswer::Unknown(format!(
                    "on-call status could not be checked: {error}"
                ));
            }
        };
        let relevant: Vec<_> = shifts
            .iter()
            .filter(|shift| shift.covers(ask.at))
            .filter_map(|shift| {
                let target = Some(shift.schedule.as_str())
                    .filter(|id| ask.schedules.iter().any(|wanted| wanted == id))
                    .or_else(|| {
                        shift
                            .escalation_policy
                            .as_deref()
                            .filter(|id| ask.policies.iter().any(|wanted| wanted == id))
                    })?;
                Some((shift, target))
            })
            .collect();
        let principal = ask.principal_id;
        let needs_addresses = relevant.iter().any(|(shift, _)| shift.user_is_address());
        let addresses = if needs_addresses {
            match who.addresses(principal, ask.deadline, calls).await {
                Ok(addresses) => addresses,
                Err(message) => return OncallAnswer::Unknown(message),
            }
        } else {
            Vec::new()
        };
        OncallAnswer::Duties(
            relevant
                .into_iter()
                .filter(|(shift, _)| {
                    let user = shift.user.trim();
                    user.eq_ignore_ascii_case(principal)
                        || addresses
                            .iter()
                            .any(|address| user.eq_ignore_ascii_case(address))
                })
                .map(|(shift, target)| Duty {
                    target: target.to_string(),
                    level: shift.level,
                    end: Some(shift.to),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_shift_is_reported() {
        let text = r#"
shifts:
  - { schedule: "", user: a@x.com, from: "2026-11-24T08:00:00Z", to: "2026-11-24T18:00:00Z" }
  - { schedule: s, user: b@x.com, from: "2026-11-24T18:00:00Z", to: "2026-11-24T08:00:00Z", level: 0 }
"#;
        let error = parse(Path::new("oncall.yaml"), text).expect_err("invalid");
        let message = error.to_string();
        assert!(
            message.contains("shift 1 has an empty `schedule`"),
            "{message}"
        );
        assert!(
            message.contains("shift 2 ends before it starts"),
            "{message}"
        );
        assert!(message.contains("shift 2 has level 0"), "{message}");
    }

    #[test]
    fn a_missing_file_stops_start_up_naming_the_key() {
        let settings = OncallFileSettings {
            path: PathBuf::from("/nonexistent/pimgate/oncall.yaml"),
        };
        let context = BuildContext {
            http: reqwest::Client::new(),
            tenant_id: "t".into(),
        };
        let problems = OncallFile::new(&settings, &context).expect_err("missing");
        assert_eq!(problems[0].key, "connectors.oncall_file.path");
        assert!(
            problems[0]
                .message
                .contains("/nonexistent/pimgate/oncall.yaml")
        );
    }
}
