//! An HR export on disk (CSV or JSON) as the directory of record, for organisations whose leave dates
//! and employee types live in an HR system rather than in Entra.
//!
//! The file is reloaded when it changes (its modification time and size are looked at, at most every
//! `check_interval_seconds`, on access). A file that no longer parses keeps the previous data and
//! logs a warning: a half-written export must not make every requester "unknown".

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::http::{Fetched, UpstreamCall, UpstreamError};
use super::{BuildContext, UserProfile};
use crate::settings::SettingsProblem;

pub const CONNECTOR: &str = "hr_file";
const OPERATION: &str = "lookup user";

/// `[connectors.hr_file]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HrFileSettings {
    /// `.csv` (header row, comma-separated, RFC 4180 quoting) or `.json` (an array of objects).
    pub path: PathBuf,
    /// How often, at most, the file's modification time is looked at. Default 5.
    pub check_interval_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

/// What identifies the file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

struct State {
    users: Arc<HashMap<String, UserProfile>>,
    stamp: Stamp,
    checked: std::time::Instant,
}

pub struct HrFile {
    path: PathBuf,
    format: Format,
    check_interval: Duration,
    state: Mutex<State>,
}

impl fmt::Debug for HrFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HrFile")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("check_interval", &self.check_interval)
            .finish_non_exhaustive()
    }
}

/// One row or object of the export. Columns beyond these are ignored so an export can carry more.
#[derive(Debug, Default, Deserialize)]
struct Row {
    id: Option<String>,
    mail: Option<String>,
    upn: Option<String>,
    display_name: Option<String>,
    account_enabled: Option<serde_json::Value>,
    employee_leave_date_time: Option<String>,
    employee_type: Option<String>,
    department: Option<String>,
}

impl HrFile {
    pub fn new(
        settings: &HrFileSettings,
        _context: &BuildContext,
    ) -> Result<Self, Vec<SettingsProblem>> {
        let problem = |key: &str, message: String, fix: &str| SettingsProblem {
            key: format!("connectors.hr_file.{key}"),
            message,
            fix: fix.to_string(),
        };
        let path = settings.path.clone();
        let format = match path
            .extension()
            .and_then(|extension| extension.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => Format::Csv,
            Some("json") => Format::Json,
            _ => {
                return Err(vec![problem(
                    "path",
                    format!(
                        "`{}` is neither a `.csv` nor a `.json` file",
                        path.display()
                    ),
                    "export the HR data as CSV with a header row or as a JSON array of objects",
                )]);
            }
        };
        let stamp = stamp(&path).map_err(|message| {
            vec![problem(
                "path",
                message,
                "give the path of the HR export pimgate can read",
            )]
        })?;
        let users = load(&path, format).map_err(|message| {
            vec![problem(
                "path",
                message,
                "fix the file: columns `id`, `mail`, `upn`, `account_enabled`, `employee_leave_date_time`, `employee_type`, `department`",
            )]
        })?;
        Ok(HrFile {
            path,
            format,
            check_interval: Duration::from_secs(settings.check_interval_seconds.unwrap_or(5)),
            state: Mutex::new(State {
                users: Arc::new(users),
                stamp,
                checked: std::time::Instant::now(),
            }),
        })
    }

    /// The person with this object id (case-insensitive), after reloading the file if it changed.
    pub fn user(&self, id: &str) -> (Result<Fetched<UserProfile>, UpstreamError>, UpstreamCall) {
        let started = std::time::Instant::now();
        let users = self.current();
        let result = match users.get(&id.trim().to_ascii_lowercase()) {
            Some(profile) => Ok(Fetched::Found(profile.clone())),
            None => Ok(Fetched::NotFound),
        };
        let call = UpstreamCall {
            connector: CONNECTOR,
            operation: OPERATION.to_string(),
            outcome: match &result {
                Ok(Fetched::Found(_)) => "ok",
                _ => "not_found",
            }
            .to_string(),
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            cached: false,
            attempts: 1,
        };
        (result, call)
    }

    /// A panic elsewhere while holding the lock leaves consistent data (each write is one
    /// assignment), so a poisoned lock is used as is.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current(&self) -> Arc<HashMap<String, UserProfile>> {
        let (users, known) = {
            let mut state = self.lock();
            if state.checked.elapsed() < self.check_interval {
                return state.users.clone();
            }
            state.checked = std::time::Instant::now();
            (state.users.clone(), state.stamp)
        };
        // Read and parse outside the lock so lookups never wait on the disk.
        let Ok(now) = stamp(&self.path) else {
            tracing::warn!(path = %self.path.display(), "hr file cannot be read; keeping the previous data");
            return users;
        };
        if now == known {
            return users;
        }
        match load(&self.path, self.format) {
            Ok(loaded) => {
                let loaded = Arc::new(loaded);
                tracing::info!(path = %self.path.display(), users = loaded.len(), "hr file reloaded");
                let mut state = self.lock();
                state.users = loaded.clone();
                state.stamp = now;
                loaded
            }
            Err(problem) => {
                tracing::warn!(path = %self.path.display(), %problem, "hr file changed but does not parse; keeping the previous data");
                self.lock().stamp = now;
                users
            }
        }
    }
}

fn stamp(path: &Path) -> Result<Stamp, String> {
    let metadata = std::fs::metadata(path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    if !metadata.is_file() {
        return Err(format!("`{}` is not a file", path.display()));
    }
    Ok(Stamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
    })
}

fn load(path: &Path, format: Format) -> Result<HashMap<String, UserProfile>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    let rows = match format {
        Format::Json => serde_json::from_str::<Vec<Row>>(&text).map_err(|error| {
            format!(
                "`{}` is not a JSON array of objects: {error}",
                path.display()
            )
        })?,
        Format::Csv => csv_rows(&text).map_err(|error| format!("`{}`: {error}", path.display()))?,
    };
    let mut users = HashMap::new();
    for (index, row) in rows.into_iter().enumerate() {
        let line = index + 1;
        let profile =
            profile(row).map_err(|error| format!("`{}` entry {line}: {error}", path.display()))?;
        let key = profile.id.to_ascii_lowercase();
        if users.insert(key, profile).is_some() {
            return Err(format!(
                "`{}` entry {line}: the id appears twice",
                path.display()
            ));
        }
    }
    Ok(users)
}

fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
}

fn profile(row: Row) -> Result<UserProfile, String> {
    let id = non_empty(row.id).ok_or("`id` (the Entra object id) is missing")?;
    let account_enabled = match row.account_enabled {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Bool(value)) => Some(value),
        Some(serde_json::Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "" => None,
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" => Some(false),
            other => return Err(format!("`account_enabled` is `{other}`, not true or false")),
        },
        Some(other) => return Err(format!("`account_enabled` is `{other}`, not true or false")),
    };
    let employee_leave_date_time = match non_empty(row.employee_leave_date_time) {
        None => None,
        Some(text) => Some(parse_leave(&text)?),
    };
    Ok(UserProfile {
        id,
        user_principal_name: non_empty(row.upn),
        mail: non_empty(row.mail),
        display_name: non_empty(row.display_name),
        account_enabled,
        employee_leave_date_time,
        employee_type: non_empty(row.employee_type),
        department: non_empty(row.department),
    })
}

/// RFC 3339, or a plain date meaning the start of that day in UTC (the earliest reading, so a
/// leave date is never taken as later than it is).
fn parse_leave(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(moment) = DateTime::parse_from_rfc3339(text) {
        return Ok(moment.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|moment| moment.and_utc())
        .ok_or_else(|| {
            format!("`employee_leave_date_time` `{text}` is neither RFC 3339 nor YYYY-MM-DD")
        })
}

/// A strict RFC 4180 reader: a header row, then records with the same number of fields; fields may be
/// quoted (with `""` for a quote). Anything else is refused rather than guessed at.
fn csv_rows(text: &str) -> Result<Vec<Row>, String> {
    let records = csv_records(text)?;
    let mut records = records.into_iter();
    let Some(header) = records.next() else {
        return Err("the file is empty; it needs a header row".to_string());
    };
    let header: Vec<String> = header
        .iter()
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    if !header.iter().any(|name| name == "id") {
        return Err("the header row has no `id` column".to_string());
    }
    let mut rows = Vec::new();
    for (index, record) in records.enumerate() {
        if record.len() == 1 && record.first().is_some_and(|field| field.trim().is_empty()) {
            continue;
        }
        if record.len() != header.len() {
            return Err(format!(
                "record {} has {} fields but the header has {}",
                index + 1,
                record.len(),
                header.len()
            ));
        }
        let mut row = Row::default();
        for (name, value) in header.iter().zip(record) {
            match name.as_str() {
                "id" => row.id = Some(value),
                "mail" => row.mail = Some(value),
                "upn" | "user_principal_name" => row.upn = Some(value),
                "display_name" => row.display_name = Some(value),
                "account_enabled" => row.account_enabled = Some(serde_json::Value::String(value)),
                "employee_leave_date_time" => row.employee_leave_date_time = Some(value),
                "employee_type" => row.employee_type = Some(value),
                "department" => row.department = Some(value),
                _ => {}
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

fn csv_records(text: &str) -> Result<Vec<Vec<String>>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_field_start => {
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(other) => {
                            if other == '\n' {
                                line += 1;
                            }
                            field.push(other);
                        }
                        None => return Err(format!("line {line}: a quoted field is not closed")),
                    }
                }
                match chars.peek() {
                    None | Some(',') | Some('\n') | Some('\r') => {}
                    Some(_) => {
                        return Err(format!(
                            "line {line}: text follows a closing quote; quote the whole field"
                        ));
                    }
                }
                at_field_start = false;
            }
            '"' => {
                return Err(format!(
                    "line {line}: a quote inside an unquoted field; quote the whole field"
                ));
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                at_field_start = true;
                line += 1;
            }
            other => {
                field.push(other);
                at_field_start = false;
            }
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_may_be_quoted_with_commas_and_doubled_quotes() {
        let records = csv_records("id,department\r\n1,\"Ops, \"\"EU\"\"\"\n2,Sales\n").unwrap();
        assert_eq!(
            records,
            vec![
                vec!["id".to_string(), "department".to_string()],
                vec!["1".to_string(), "Ops, \"EU\"".to_string()],
                vec!["2".to_string(), "Sales".to_string()],
            ]
        );
    }

    #[test]
    fn malformed_csv_is_refused_with_the_line() {
        assert!(
            csv_records("id\n\"open\n")
                .unwrap_err()
                .contains("not closed")
        );
        assert!(csv_records("id\na\"b\n").unwrap_err().contains("line 2"));
        assert!(csv_rows("id,mail\n1\n").unwrap_err().contains("1 fields"));
        assert!(
            csv_rows("mail\nx@example.com\n")
                .unwrap_err()
                .contains("`id`")
        );
    }

    #[test]
    fn leave_dates_are_rfc3339_or_plain_dates_at_the_start_of_the_day() {
        assert_eq!(
            parse_leave("2026-12-01").unwrap().to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_leave("2026-12-01T17:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-12-01T16:00:00+00:00"
        );
        assert!(parse_leave("01/12/2026").is_err());
    }

    #[test]
    fn account_enabled_accepts_booleans_and_their_spellings_only() {
        let row = |value: serde_json::Value| Row {
            id: Some("a".into()),
            account_enabled: Some(value),
            ..Row::default()
        };
        assert_eq!(
            profile(row(serde_json::json!(false)))
                .unwrap()
                .account_enabled,
            Some(false)
        );
        assert_eq!(
            profile(row(serde_json::json!("TRUE")))
                .unwrap()
                .account_enabled,
            Some(true)
        );
        assert_eq!(
            profile(row(serde_json::json!(""))).unwrap().account_enabled,
            None
        );
        assert!(profile(row(serde_json::json!("maybe"))).is_err());
    }
}
