//! An HR export on disk (CSV or JSON) as the directory of record, for organisations whose leave dates
//! and employee types live in an HR system rather than in Entra.
//!
//! The file is reloaded when it changes (its modification time and size are looked at, at most every
//! `check_interval_seconds`, on access). A file that no longer parses keeps the previous data and
//! logs a warning: a half-written export must not make every requester "unknown". A file that is
//! gone or unreadable is different: its old data may be arbitrarily stale, so lookups fail (the check
//! is not evaluated) until it is back.
//!
//! One bad cell does not spoil the file: an `account_enabled` of `maybe` or a leave date in another
//! format makes that person's attribute unknown (logged with the row), the rest of the file serves.
//! An empty cell is "none" (no leave date, no department); a column the file lacks is unknown.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::http::{Fetched, UpstreamCall, UpstreamError};
use super::{Attribute, BuildContext, Unknown, UserProfile};
use crate::vocabulary::diagnostic::Diagnostic;

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
    /// Why the file cannot be read right now (operator detail, with the path); lookups fail while set.
    unavailable: Option<String>,
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
/// The attributes stay `serde_json::Value`s so that a missing column (`None`), an empty cell or
/// `null` (`Some("")`, `Some(null)`) and a value remain three different things.
#[derive(Debug, Default, Deserialize)]
struct Row {
    id: Option<String>,
    mail: Option<String>,
    upn: Option<String>,
    display_name: Option<String>,
    #[serde(default, deserialize_with = "super::present")]
    account_enabled: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "super::present")]
    employee_leave_date_time: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "super::present")]
    employee_type: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "super::present")]
    department: Option<serde_json::Value>,
}

impl HrFile {
    pub fn new(
        settings: &HrFileSettings,
        _context: &BuildContext,
    ) -> Result<Self, Vec<Diagnostic>> {
        let problem = |key: &str, message: String, fix: &str| {
            Diagnostic::error(format!("connectors.hr_file.{key}"), message, fix)
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
        let (users, cell_problems) = load(&path, format).map_err(|message| {
            vec![problem(
                "path",
                message,
                "fix the file: columns `id`, `mail`, `upn`, `account_enabled`, `employee_leave_date_time`, `employee_type`, `department`",
            )]
        })?;
        log_cell_problems(&path, &cell_problems);
        Ok(HrFile {
            path,
            format,
            check_interval: Duration::from_secs(settings.check_interval_seconds.unwrap_or(5)),
            state: Mutex::new(State {
                users: Arc::new(users),
                stamp,
                checked: std::time::Instant::now(),
                unavailable: None,
            }),
        })
    }

    /// The person with this object id (case-insensitive), after reloading the file if it changed.
    pub fn user(&self, id: &str) -> (Result<Fetched<UserProfile>, UpstreamError>, UpstreamCall) {
        let started = std::time::Instant::now();
        let result = self
            .current()
            .map(|users| match users.get(&id.trim().to_ascii_lowercase()) {
                Some(profile) => Fetched::Found(profile.clone()),
                None => Fetched::NotFound,
            });
        let call = UpstreamCall {
            connector: CONNECTOR,
            operation: OPERATION.to_string(),
            outcome: match &result {
                Ok(Fetched::Found(_)) => "ok",
                Ok(Fetched::NotFound) => "not_found",
                Err(error) => error.outcome(),
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

    /// The current data; an error while the file is gone or unreadable.
    fn current(&self) -> Result<Arc<HashMap<String, UserProfile>>, UpstreamError> {
        let unavailable = |detail: String| UpstreamError::Unavailable {
            connector: CONNECTOR,
            detail,
        };
        let (users, known) = {
            let mut state = self.lock();
            if state.checked.elapsed() < self.check_interval {
                return match &state.unavailable {
                    Some(detail) => Err(unavailable(detail.clone())),
                    None => Ok(state.users.clone()),
                };
            }
            state.checked = std::time::Instant::now();
            (state.users.clone(), state.stamp)
        };
        // Read and parse outside the lock so lookups never wait on the disk.
        let now = match stamp(&self.path) {
            Ok(now) => now,
            Err(detail) => {
                tracing::warn!(path = %self.path.display(), %detail, "hr file cannot be read; hr lookups are not evaluated until it is back");
                self.lock().unavailable = Some(detail.clone());
                return Err(unavailable(detail));
            }
        };
        let was_unavailable = self.lock().unavailable.take().is_some();
        if now == known && !was_unavailable {
            return Ok(users);
        }
        match load(&self.path, self.format) {
            Ok((loaded, cell_problems)) => {
                log_cell_problems(&self.path, &cell_problems);
                let loaded = Arc::new(loaded);
                tracing::info!(path = %self.path.display(), users = loaded.len(), "hr file reloaded");
                let mut state = self.lock();
                state.users = loaded.clone();
                state.stamp = now;
                Ok(loaded)
            }
            Err(problem) => {
                tracing::warn!(path = %self.path.display(), %problem, "hr file changed but does not parse; keeping the previous data");
                self.lock().stamp = now;
                Ok(users)
            }
        }
    }
}

/// Cells that could not be read make one person's attribute unknown; the operator hears which.
fn log_cell_problems(path: &Path, problems: &[String]) {
    for problem in problems {
        tracing::warn!(path = %path.display(), %problem, "hr file cell cannot be read; that attribute of that person counts as unknown");
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

/// The people in the file by lower-cased id, and the cells that could not be read. Structural
/// problems (no `id`, an id twice, a broken CSV) refuse the whole file.
fn load(
    path: &Path,
    format: Format,
) -> Result<(HashMap<String, UserProfile>, Vec<String>), String> {
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
    let mut cell_problems = Vec::new();
    for (index, row) in rows.into_iter().enumerate() {
        let line = index + 1;
        let (profile, problems) =
            profile(row).map_err(|error| format!("`{}` entry {line}: {error}", path.display()))?;
        cell_problems.extend(
            problems
                .into_iter()
                .map(|problem| format!("entry {line}: {problem}")),
        );
        let key = profile.id.to_ascii_lowercase();
        if users.insert(key, profile).is_some() {
            return Err(format!(
                "`{}` entry {line}: the id appears twice",
                path.display()
            ));
        }
    }
    Ok((users, cell_problems))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
}

/// One row as a profile, and what in it could not be read (for the log). Only a missing `id` fails.
fn profile(row: Row) -> Result<(UserProfile, Vec<String>), String> {
    let id = non_empty(row.id).ok_or("`id` (the Entra object id) is missing")?;
    let mut problems = Vec::new();
    let account_enabled = cell(
        "account_enabled",
        row.account_enabled,
        &mut problems,
        |value| match value {
            serde_json::Value::Bool(value) => Some(*value),
            serde_json::Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Some(true),
                "false" | "no" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        },
    );
    let employee_leave_date_time = cell(
        "employee_leave_date_time",
        row.employee_leave_date_time,
        &mut problems,
        |value| {
            value
                .as_str()
                .and_then(|text| parse_leave(text.trim()).ok())
        },
    );
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => Some(text.trim().to_string()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    let employee_type = cell("employee_type", row.employee_type, &mut problems, text);
    let department = cell("department", row.department, &mut problems, text);
    Ok((
        UserProfile {
            id,
            user_principal_name: non_empty(row.upn),
            mail: non_empty(row.mail),
            display_name: non_empty(row.display_name),
            account_enabled,
            employee_leave_date_time,
            employee_type,
            department,
        },
        problems,
    ))
}

/// A column absent from the file is unknown; an empty cell or `null` is "none"; a value `read`
/// cannot make sense of is unknown and noted in `problems`.
fn cell<T>(
    column: &str,
    raw: Option<serde_json::Value>,
    problems: &mut Vec<String>,
    read: impl Fn(&serde_json::Value) -> Option<T>,
) -> Attribute<T> {
    match raw {
        None => Attribute::Unknown(Unknown::Absent),
        Some(serde_json::Value::Null) => Attribute::Empty,
        Some(serde_json::Value::String(text)) if text.trim().is_empty() => Attribute::Empty,
        Some(value) => match read(&value) {
            Some(value) => Attribute::Known(value),
            None => {
                problems.push(format!(
                    "`{column}` is `{value}`, which pimgate cannot read"
                ));
                Attribute::Unknown(Unknown::Unparsable)
            }
        },
    }
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
                "employee_leave_date_time" => {
                    row.employee_leave_date_time = Some(serde_json::Value::String(value))
                }
                "employee_type" => row.employee_type = Some(serde_json::Value::String(value)),
                "department" => row.department = Some(serde_json::Value::String(value)),
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
    fn account_enabled_reads_booleans_and_their_spellings_and_nothing_else() {
        let row = |value: serde_json::Value| Row {
            id: Some("a".into()),
            account_enabled: Some(value),
            ..Row::default()
        };
        let enabled = |value| profile(row(value)).unwrap().0.account_enabled;
        assert_eq!(enabled(serde_json::json!(false)), Attribute::Known(false));
        assert_eq!(enabled(serde_json::json!("TRUE")), Attribute::Known(true));
        assert_eq!(enabled(serde_json::json!("")), Attribute::Empty);
        let (unreadable, problems) = profile(row(serde_json::json!("maybe"))).unwrap();
        assert_eq!(
            unreadable.account_enabled,
            Attribute::Unknown(Unknown::Unparsable)
        );
        assert!(problems[0].contains("account_enabled"), "{problems:?}");
    }

    #[test]
    fn a_missing_column_is_unknown_and_an_empty_cell_is_none() {
        let rows = csv_rows("id,employee_type\na,\nb,Contractor\n").unwrap();
        let profiles: Vec<UserProfile> = rows
            .into_iter()
            .map(|row| profile(row).unwrap().0)
            .collect();
        assert_eq!(profiles[0].employee_type, Attribute::Empty);
        assert_eq!(
            profiles[1].employee_type,
            Attribute::Known("Contractor".to_string())
        );
        assert_eq!(
            profiles[0].employee_leave_date_time,
            Attribute::Unknown(Unknown::Absent)
        );
        let json: Vec<Row> =
            serde_json::from_str(r#"[{"id": "a", "department": null}, {"id": "b"}]"#).unwrap();
        let profiles: Vec<UserProfile> = json
            .into_iter()
            .map(|row| profile(row).unwrap().0)
            .collect();
        assert_eq!(profiles[0].department, Attribute::Empty);
        assert_eq!(profiles[1].department, Attribute::Unknown(Unknown::Absent));
    }
}
