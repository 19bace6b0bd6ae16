//! Stubbed upstream *records* of a rule test case (`facts: { itsm: { record: { state: Implement } } }`):
//! unlike a status stub (`facts: { itsm: fail }`, `stubs`), the real check runs and judges the
//! record, as it would the upstream's answer in production (assignment, planned window, leaver
//! logic, shift ends, ...).
//!
//! Each record is written in a friendly YAML shape, read here field by field (every problem at
//! once, keyed for `file:line:column`, "did you mean" for unknown keys) into the JSON the
//! connector's typed record serialises to, and handed to the checks as a [`Fact::any_key`] of every
//! source of that kind (`servicenow.ticket` and `jira.ticket` for `itsm`, ...) in a replaying fact
//! book (`connectors::facts`). A question no stub answers is a replay miss: not evaluated, never a
//! pass. `not_found` stubs "no such record", `unavailable` "the system could not be asked".

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value as Json, json};
use yaml_serde::{Mapping, Value};

use crate::connectors::facts::{Fact, FactAnswer};
use crate::rules::report::{kind_of, unknown_keys};
use crate::vocabulary::diagnostic::Diagnostic;

/// What a record stub answers every question of its kind with.
#[derive(Debug, Clone)]
pub(super) enum RecordAnswer {
    /// The record, as the connector's typed record serialises (tickets and shifts are completed
    /// per source when the facts are built).
    Found(Json),
    NotFound,
    Unavailable,
}

/// One kind's stubbed record.
#[derive(Debug, Clone)]
pub(super) struct RecordStub {
    pub(super) kind: &'static str,
    pub(super) answer: RecordAnswer,
}

const ITSM_KEYS: &[&str] = &[
    "number",
    "table",
    "state",
    "state_code",
    "status_category",
    "assigned_to",
    "people",
    "planned",
    "unreadable",
];
const PERSON_KEYS: &[&str] = &["role", "email", "login", "account_id"];
const WINDOW_KEYS: &[&str] = &["start", "end"];
const HR_KEYS: &[&str] = &[
    "id",
    "email",
    "upn",
    "display_name",
    "enabled",
    "leave_date",
    "employee_type",
    "department",
];
const ONCALL_KEYS: &[&str] = &["on_call", "schedule", "level", "until", "shifts"];
const SHIFT_KEYS: &[&str] = &["schedule", "level", "until"];
const GROUP_KEYS: &[&str] = &["member_of"];
const METHODS_KEYS: &[&str] = &["methods"];
const HTTP_KEYS: &[&str] = &["result", "message", "evidence"];
const OPA_KEYS: &[&str] = &["allow", "reasons", "result"];

/// The schedule a stubbed shift is for when the case names none (shown in messages only).
const STUB_SCHEDULE: &str = "stubbed-schedule";
/// The ticket number a stubbed ticket has when the case names none.
const STUB_NUMBER: &str = "STUB0000001";

/// Reads `value` (what `record:` holds) for `kind`; `prefix` is its key (`itsm.record`).
pub(super) fn parse_record(
    kind: &'static str,
    value: &Value,
    prefix: &str,
    problems: &mut Vec<Diagnostic>,
) -> Option<RecordStub> {
    let before = problems.len();
    let answer = match value {
        Value::String(word) if word == "not_found" => {
            if matches!(kind, "oncall" | "http" | "opa") {
                problems.push(Diagnostic::error(
                    prefix,
                    format!("the `{kind}` answer has no `not_found`"),
                    match kind {
                        "oncall" => "write `{ on_call: false }` for someone not on call",
                        _ => "write the answer, or `unavailable`",
                    },
                ));
                return None;
            }
            RecordAnswer::NotFound
        }
        Value::String(word) if word == "unavailable" => RecordAnswer::Unavailable,
        Value::Mapping(record) => {
            let json = match kind {
                "itsm" => itsm(record, prefix, problems),
                "hr" => hr(record, prefix, problems),
                "oncall" => oncall(record, prefix, problems),
                "group" => group(record, prefix, problems),
                "auth_methods" => methods(record, prefix, problems),
                "http" => http(record, prefix, problems),
                "opa" => opa(record, prefix, problems),
                _ => {
                    problems.push(Diagnostic::error(
                        prefix,
                        format!("`{kind}` has no record form"),
                        "stub its status instead, e.g. `pass` or `fail`",
                    ));
                    None
                }
            };
            RecordAnswer::Found(json?)
        }
        other => {
            problems.push(Diagnostic::error(
                prefix,
                format!(
                    "a record must be a mapping, `not_found` or `unavailable`, found {}",
                    describe(other)
                ),
                example(kind),
            ));
            return None;
        }
    };
    (problems.len() == before).then_some(RecordStub { kind, answer })
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(text) => format!("`{text}`"),
        other => kind_of(other).to_string(),
    }
}

fn example(kind: &str) -> &'static str {
    match kind {
        "itsm" => {
            "e.g. `record: { state: Implement, assigned_to: alice@contoso.com, planned: { start: \"2026-11-24T08:00:00Z\", end: \"2026-11-24T18:00:00Z\" } }`"
        }
        "hr" => {
            "e.g. `record: { enabled: true, leave_date: 2026-12-01, employee_type: Employee, email: alice@contoso.com }`"
        }
        "oncall" => "e.g. `record: { on_call: true, until: \"2026-11-24T18:00:00Z\" }`",
        "group" => "e.g. `record: { member_of: [\"<group object id>\"] }`",
        "auth_methods" => "e.g. `record: { methods: [fido2, microsoftAuthenticator] }`",
        "http" => "e.g. `record: { result: pass, message: \"training current\" }`",
        "opa" => "e.g. `record: { allow: false, reasons: [\"not in the on-call rota\"] }`",
        _ => "write `pass`, `fail` or `error`",
    }
}

/// The facts a record stub answers with: one any-key fact per source of its kind. `http` and
/// `opa` sources are per configured instance (`http.compliance`); `now` is when a stubbed verdict
/// was given.
pub(super) fn facts_for(
    stub: &RecordStub,
    http_names: &[String],
    opa_names: &[String],
    now: DateTime<Utc>,
) -> Vec<Fact> {
    let error = || FactAnswer::Error("unavailable".into());
    let mut facts = Vec::new();
    let mut add = |source: String, answer: FactAnswer| facts.push(Fact::any_key(source, answer));
    match stub.kind {
        "itsm" => {
            for (system, assignee_role) in [("servicenow", "assigned_to"), ("jira", "assignee")] {
                let answer = match &stub.answer {
                    RecordAnswer::Found(record) => {
                        FactAnswer::Value(ticket_for(record, system, assignee_role))
                    }
                    RecordAnswer::NotFound => FactAnswer::NotFound(true),
                    RecordAnswer::Unavailable => error(),
                };
                add(format!("{system}.ticket"), answer);
            }
        }
        "oncall" => {
            let answer = match &stub.answer {
                RecordAnswer::Found(record) => FactAnswer::Value(record.clone()),
                // An on-call answer has no error class: it says "unknown" in its own words.
                _ => FactAnswer::Value(json!({
                    "unknown": "on-call status could not be checked: the on-call system could not be asked"
                })),
            };
            for source in ["pagerduty", "opsgenie", "file"] {
                add(format!("{source}.oncall"), answer.clone());
            }
        }
        kind => {
            let sources: Vec<String> = match kind {
                "hr" => vec!["graph.user".into(), "hr_file.user".into()],
                "group" => vec!["graph.groups".into()],
                "auth_methods" => vec!["graph.methods".into()],
                "http" => http_names
                    .iter()
                    .map(|name| format!("http.{name}"))
                    .collect(),
                "opa" => opa_names.iter().map(|name| format!("opa.{name}")).collect(),
                _ => Vec::new(),
            };
            let answer = match &stub.answer {
                RecordAnswer::Found(record) if kind == "http" => {
                    let mut answer = record.clone();
                    answer["given_at"] = json!(now);
                    FactAnswer::Value(answer)
                }
                RecordAnswer::Found(record) => FactAnswer::Value(record.clone()),
                RecordAnswer::NotFound => FactAnswer::NotFound(true),
                RecordAnswer::Unavailable => error(),
            };
            for source in sources {
                add(source, answer.clone());
            }
        }
    }
    facts
}

/// The stubbed ticket as `system` would answer it: `assigned_to` becomes the person in the
/// system's own assignee role.
fn ticket_for(record: &Json, system: &str, assignee_role: &str) -> Json {
    let mut ticket = record.clone();
    ticket["system"] = json!(system);
    if system == "jira" {
        ticket["table"] = Json::Null;
    }
    let assignee = ticket
        .as_object_mut()
        .and_then(|fields| fields.remove("assigned_to"))
        .filter(|email| !email.is_null());
    if let (Some(email), Some(people)) = (
        assignee,
        ticket.get_mut("people").and_then(Json::as_array_mut),
    ) {
        people.insert(
            0,
            json!({ "role": assignee_role, "email": email, "login": null, "account_id": null }),
        );
    }
    ticket
}

fn itsm(record: &Mapping, prefix: &str, problems: &mut Vec<Diagnostic>) -> Option<Json> {
    unknown_keys(problems, prefix, record, ITSM_KEYS);
    let state = match text(record, prefix, "state", problems) {
        Some(state) => Some(state),
        None if !record.contains_key("state") => {
            problems.push(Diagnostic::error(
                prefix,
                "missing `state`",
                "add the ticket's state, e.g. `state: Implement`",
            ));
            None
        }
        None => None,
    };
    let mut people = Vec::new();
    if let Some(list) = list(record, prefix, "people", problems) {
        for (index, item) in list.iter().enumerate() {
            let key = format!("{prefix}.people[{index}]");
            let Value::Mapping(person) = item else {
                problems.push(Diagnostic::error(
                    key,
                    format!("a person must be a mapping, found {}", kind_of(item)),
                    "e.g. `{ role: requested_by, email: bob@contoso.com }`",
                ));
                continue;
            };
            unknown_keys(problems, &key, person, PERSON_KEYS);
            let role = text(person, &key, "role", problems);
            if role.is_none() && !person.contains_key("role") {
                problems.push(Diagnostic::error(
                    key.as_str(),
                    "missing `role`",
                    "add the field the person is in, e.g. `role: requested_by`",
                ));
            }
            people.push(json!({
                "role": role,
                "email": text(person, &key, "email", problems),
                "login": text(person, &key, "login", problems),
                "account_id": text(person, &key, "account_id", problems),
            }));
        }
    }
    let window = match record.get("planned") {
        None | Some(Value::Null) => Json::Null,
        Some(Value::Mapping(planned)) => {
            let key = format!("{prefix}.planned");
            unknown_keys(problems, &key, planned, WINDOW_KEYS);
            let start = instant(planned, &key, "start", problems);
            let end = instant(planned, &key, "end", problems);
            for (name, value) in [("start", &start), ("end", &end)] {
                if value.is_none() && !planned.contains_key(name) {
                    problems.push(Diagnostic::error(
                        key.as_str(),
                        format!("missing `{name}`"),
                        "give both ends, e.g. `planned: { start: \"2026-11-24T08:00:00Z\", end: \"2026-11-24T18:00:00Z\" }`",
                    ));
                }
            }
            json!({ "start": start, "end": end })
        }
        Some(other) => {
            problems.push(Diagnostic::error(
                format!("{prefix}.planned"),
                format!("`planned` must be a mapping, found {}", kind_of(other)),
                "e.g. `planned: { start: \"2026-11-24T08:00:00Z\", end: \"2026-11-24T18:00:00Z\" }`",
            ));
            Json::Null
        }
    };
    let unreadable: Vec<String> = list(record, prefix, "unreadable", problems)
        .map(|items| words(&items, &format!("{prefix}.unreadable"), problems))
        .unwrap_or_default();
    Some(json!({
        "system": "servicenow",
        "number": text(record, prefix, "number", problems).unwrap_or_else(|| STUB_NUMBER.into()),
        "table": text(record, prefix, "table", problems),
        "state": state?,
        "state_code": text(record, prefix, "state_code", problems),
        "status_category": text(record, prefix, "status_category", problems),
        "assigned_to": text(record, prefix, "assigned_to", problems),
        "people": people,
        "window": window,
        "unreadable": unreadable,
    }))
}

fn hr(record: &Mapping, prefix: &str, problems: &mut Vec<Diagnostic>) -> Option<Json> {
    unknown_keys(problems, prefix, record, HR_KEYS);
    let mut profile = Map::new();
    let id = text(record, prefix, "id", problems).unwrap_or_else(|| "stubbed".into());
    profile.insert("id".into(), json!(id));
    profile.insert(
        "mail".into(),
        json!(text(record, prefix, "email", problems)),
    );
    profile.insert(
        "userPrincipalName".into(),
        json!(text(record, prefix, "upn", problems)),
    );
    profile.insert(
        "displayName".into(),
        json!(text(record, prefix, "display_name", problems)),
    );
    // An attribute left out stays unknown (`connectors::Attribute`): the check is not evaluated on
    // it. `null` is the record's "none"; a value is the value.
    let mut attribute = |field: &str, name: &str, read: Option<Json>| match record.get(name) {
        None => {}
        Some(Value::Null) => {
            profile.insert(field.into(), Json::Null);
        }
        Some(_) => {
            if let Some(value) = read {
                profile.insert(field.into(), value);
            }
        }
    };
    attribute(
        "accountEnabled",
        "enabled",
        boolean(record, prefix, "enabled", problems).map(Json::Bool),
    );
    attribute(
        "employeeLeaveDateTime",
        "leave_date",
        instant(record, prefix, "leave_date", problems).map(|at| json!(at)),
    );
    attribute(
        "employeeType",
        "employee_type",
        text(record, prefix, "employee_type", problems).map(Json::String),
    );
    attribute(
        "department",
        "department",
        text(record, prefix, "department", problems).map(Json::String),
    );
    Some(Json::Object(profile))
}

fn oncall(record: &Mapping, prefix: &str, problems: &mut Vec<Diagnostic>) -> Option<Json> {
    unknown_keys(problems, prefix, record, ONCALL_KEYS);
    let on_call = boolean(record, prefix, "on_call", problems);
    let mut duties = Vec::new();
    if let Some(shifts) = list(record, prefix, "shifts", problems) {
        for (index, item) in shifts.iter().enumerate() {
            let key = format!("{prefix}.shifts[{index}]");
            let Value::Mapping(shift) = item else {
                problems.push(Diagnostic::error(
                    key,
                    format!("a shift must be a mapping, found {}", kind_of(item)),
                    "e.g. `{ schedule: exchange-primary, level: 1, until: \"2026-11-24T18:00:00Z\" }`",
                ));
                continue;
            };
            unknown_keys(problems, &key, shift, SHIFT_KEYS);
            duties.push(duty(shift, &key, problems));
        }
        if on_call == Some(false) && !duties.is_empty() {
            problems.push(Diagnostic::error(
                format!("{prefix}.on_call"),
                "is false, but shifts are given",
                "remove `on_call: false`, or the shifts",
            ));
        }
    } else if on_call == Some(true) {
        duties.push(duty(record, prefix, problems));
    } else if on_call.is_none() {
        if !record.contains_key("on_call") {
            problems.push(Diagnostic::error(
                prefix,
                "missing `on_call` or `shifts`",
                "e.g. `{ on_call: true, until: \"2026-11-24T18:00:00Z\" }` or `{ on_call: false }`",
            ));
        }
        return None;
    } else {
        for field in ["schedule", "level", "until"] {
            if record.contains_key(field) {
                problems.push(Diagnostic::error(
                    format!("{prefix}.{field}"),
                    "has no meaning with `on_call: false`",
                    format!("remove `{field}`"),
                ));
            }
        }
    }
    Some(json!({ "duties": duties }))
}

/// One duty (the vendor's answer for the activation's start): a schedule, a level (1 when not
/// given), and when it ends (never, when not given).
fn duty(shift: &Mapping, prefix: &str, problems: &mut Vec<Diagnostic>) -> Json {
    let level = match shift.get("level") {
        None => Some(1),
        Some(value) => match value.as_u64().and_then(|level| u32::try_from(level).ok()) {
            Some(level) if level >= 1 => Some(level),
            _ => {
                problems.push(Diagnostic::error(
                    format!("{prefix}.level"),
                    format!("`{}` is not an escalation level", plain(value)),
                    "use a whole number from 1 (primary)",
                ));
                None
            }
        },
    };
    json!({
        "target": text(shift, prefix, "schedule", problems).unwrap_or_else(|| STUB_SCHEDULE.into()),
        "level": level.unwrap_or(1),
        "end": instant(shift, prefix, "until", problems),
    })
}

fn group(record: &Mapping, prefix: &str, problems: &mut Vec<Diagnostic>) -> Option<Json> {
    unknown_keys(problems, prefix, record, GROUP_KEYS);
    let Some(items) = list(record, prefix, "member_of", problems) else {
        if !record.contains_key("member_of") {
            problems.push(Diagnostic::error(
                prefix,
                "missing `member_of`",
                "list the group object ids, e.g. `member_of: [\"<group id>\"]` (`[]` for none)",
            ));
        }
        return None;
    };
    let ids = words(&items, &format!("{prefix}.member_of"), problems);
    Some(Json::Array(
        ids.into_iter()
            .map(|id| json!({ "id": id, "displayName": null }))
            .collect(),
    ))
}

fn methods(record: &Mapping, prefix: &str, problems: &mut Vec<Diagnostic>) -> Option<Json> {
    use crate::connectors::graph::methods::MethodKind;
    unknown_keys(problems, prefix, record, METHODS_KEYS);
    let Some(items) = list(record, prefix, "methods", problems) else {
        if !record.contains_key("methods") {
            problems.push(Diagnostic::error(
                prefix,
                "missing `methods`",
                "list the registered methods, e.g. `methods: [fido2]` (`[]` for none)",
            ));
        }
        return None;
    };
    let key = format!("{prefix}.methods");
    let known: Vec<&str> = MethodKind::ALL.iter().map(|kind| kind.name()).collect();
    let mut methods = Vec::new();
    for (index, name) in words(&items, &key, problems).into_iter().enumerate() {
        match MethodKind::from_name(&name) {
            Some(kind) => methods.push(json!({
                "odataType": format!("#microsoft.graph.{}AuthenticationMethod", kind.name())
            })),
            None => {
                let near = known
                    .iter()
                    .min_by_key(|known| strsim::levenshtein(known, &name))
                    .filter(|known| strsim::levenshtein(known, &name) <= 3);
                problems.push(Diagnostic::error(
                    format!("{key}[{index}]"),
                    format!("`{name}` is not an authentication method"),
                    match near {
                        Some(near) => format!("did you mean `{near}`? Known: {}", known.join(", ")),
                        None => format!("use one of {}", known.join(", ")),
                    },
                ));
            }
        }
    }
    Some(Json::Array(methods))
}

fn http(record: &Mapping, prefix: &str, problems: &mut Vec<Diagnostic>) -> Option<Json> {
    unknown_keys(problems, prefix, record, HTTP_KEYS);
    let passed = match text(record, prefix, "result", problems).as_deref() {
        Some("pass") => Some(true),
        Some("fail") => Some(false),
        Some(other) => {
            problems.push(Diagnostic::error(
                format!("{prefix}.result"),
                format!("`{other}` is not a verdict"),
                "use `pass` or `fail` (`unavailable` instead of the record for no verdict)",
            ));
            None
        }
        None => {
            if !record.contains_key("result") {
                problems.push(Diagnostic::error(
                    prefix,
                    "missing `result`",
                    "add `result: pass` or `result: fail`",
                ));
            }
            None
        }
    };
    let evidence = match record.get("evidence") {
        None | Some(Value::Null) => Json::Object(Map::new()),
        Some(value @ Value::Mapping(_)) => serde_json::to_value(value).unwrap_or_default(),
        Some(other) => {
            problems.push(Diagnostic::error(
                format!("{prefix}.evidence"),
                format!("`evidence` must be a mapping, found {}", kind_of(other)),
                "e.g. `evidence: { course: SEC-101 }`",
            ));
            Json::Null
        }
    };
    Some(json!({
        "verdict": {
            "passed": passed?,
            "message": text(record, prefix, "message", problems).unwrap_or_default(),
            "evidence": evidence,
        },
    }))
}

fn opa(record: &Mapping, prefix: &str, problems: &mut Vec<Diagnostic>) -> Option<Json> {
    unknown_keys(problems, prefix, record, OPA_KEYS);
    let result = if let Some(result) = record.get("result") {
        if record.contains_key("allow") || record.contains_key("reasons") {
            problems.push(Diagnostic::error(
                format!("{prefix}.result"),
                "is given with `allow` or `reasons`",
                "write either `allow` (and `reasons`) or the whole `result` document",
            ));
        }
        serde_json::to_value(result).unwrap_or_default()
    } else {
        let allow = boolean(record, prefix, "allow", problems);
        if allow.is_none() && !record.contains_key("allow") {
            problems.push(Diagnostic::error(
                prefix,
                "missing `allow`",
                "add `allow: true` or `allow: false` (or the whole `result` document)",
            ));
        }
        let reasons = list(record, prefix, "reasons", problems)
            .map(|items| words(&items, &format!("{prefix}.reasons"), problems))
            .unwrap_or_default();
        json!({ "allow": allow?, "reasons": reasons })
    };
    Some(json!({ "result": result, "decision_id": null }))
}

fn plain(value: &Value) -> String {
    yaml_serde::to_string(value)
        .map(|text| text.trim().to_string())
        .unwrap_or_default()
}

/// A text field (numbers are read as their text); `None` when absent or `null`.
fn text(
    map: &Mapping,
    prefix: &str,
    field: &str,
    problems: &mut Vec<Diagnostic>,
) -> Option<String> {
    match map.get(field)? {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        other => {
            problems.push(Diagnostic::error(
                format!("{prefix}.{field}"),
                format!("`{field}` must be text, found {}", kind_of(other)),
                "write it as text, e.g. in quotes",
            ));
            None
        }
    }
}

fn boolean(
    map: &Mapping,
    prefix: &str,
    field: &str,
    problems: &mut Vec<Diagnostic>,
) -> Option<bool> {
    match map.get(field)? {
        Value::Null => None,
        Value::Bool(value) => Some(*value),
        other => {
            problems.push(Diagnostic::error(
                format!("{prefix}.{field}"),
                format!("`{}` is not true or false", plain(other)),
                "write `true` or `false`",
            ));
            None
        }
    }
}

/// An instant: RFC 3339, or a date (midnight UTC).
fn instant(
    map: &Mapping,
    prefix: &str,
    field: &str,
    problems: &mut Vec<Diagnostic>,
) -> Option<DateTime<Utc>> {
    let value = map.get(field)?;
    if value.is_null() {
        return None;
    }
    let parsed = value.as_str().and_then(|text| {
        DateTime::parse_from_rfc3339(text.trim())
            .map(|at| at.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                    .ok()
                    .and_then(|day| day.and_hms_opt(0, 0, 0))
                    .map(|at| at.and_utc())
            })
    });
    if parsed.is_none() {
        problems.push(Diagnostic::error(
            format!("{prefix}.{field}"),
            format!("`{}` is not an RFC 3339 time or a date", plain(value)),
            "e.g. `\"2026-11-24T18:00:00Z\"` or `2026-12-01`",
        ));
    }
    parsed
}

fn list(
    map: &Mapping,
    prefix: &str,
    field: &str,
    problems: &mut Vec<Diagnostic>,
) -> Option<Vec<Value>> {
    match map.get(field)? {
        Value::Null => None,
        Value::Sequence(items) => Some(items.clone()),
        other => {
            problems.push(Diagnostic::error(
                format!("{prefix}.{field}"),
                format!("`{field}` must be a list, found {}", kind_of(other)),
                format!("e.g. `{field}: [...]`"),
            ));
            None
        }
    }
}

fn words(items: &[Value], key: &str, problems: &mut Vec<Diagnostic>) -> Vec<String> {
    let mut out = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(text) => out.push(text.clone()),
            other => problems.push(Diagnostic::error(
                format!("{key}[{index}]"),
                format!("must be text, found {}", kind_of(other)),
                "write each entry as text",
            )),
        }
    }
    out
}
