//! Strict decoding of PIM's three request bodies into one [`ActivationRequest`].
//!
//! The rules of the decoding (which shape, which fields, limits, normal forms) are written once, over
//! the [`Fields`] view of a JSON object, and every error names the offending field by the path the
//! client wrote (`properties.scope`, `scheduleInfo.expiration.duration`): that text goes back to the
//! caller in a 400. Keys are matched exactly first, then ignoring ASCII case, so PascalCase
//! deliveries (ARM-style and older clients) decode to the same request; paths in errors keep the
//! client's spelling.
//!
//! Two views feed those rules. The *walker* ([`decode_by_walking`]) reads the body as a
//! `serde_json::Value` and can answer every question, in any spelling: it is the reference, and the
//! only source of error messages. The *fast path* (`payload::fast`) reads the common, plainly
//! canonical body into borrowed slots without building a `Value`; it answers only questions it
//! captured and gives up (so [`decode`] falls back to the walker) on anything unusual or on any error.
//! Whatever the fast path accepts, the walker would have decoded identically, because the same code
//! asked the same questions and got the same answers.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use super::duration::{DurationError, parse_duration};
use super::{
    Action, ActivationRequest, ExpirationKind, GroupAccess, ResourceType, Schedule, Target, Ticket,
};

/// Why a body is not an acceptable PIM request. Messages are safe to return to the caller: they never
/// echo the body, and user values are cut to [`ECHO_LIMIT`] characters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    /// The serde_json message (a position, never body content).
    #[error("request body is not valid JSON: {0}")]
    NotJson(String),
    #[error("`{field}` {problem}")]
    Field { field: String, problem: String },
}

impl PayloadError {
    /// The JSON path of the offending field as the client wrote it; [`BODY_FIELD`] when the body as a
    /// whole is wrong; `None` when it is not JSON at all.
    pub fn field(&self) -> Option<&str> {
        match self {
            PayloadError::NotJson(_) => None,
            PayloadError::Field { field, .. } => Some(field),
        }
    }

    fn at(field: impl Into<String>, problem: impl Into<String>) -> Self {
        PayloadError::Field {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The `field` named when the problem is the body as a whole (not an object, shape not recognized).
pub const BODY_FIELD: &str = "body";
/// Longer justifications are refused rather than cut: a truncated reason could change its meaning in
/// the audit record.
pub const MAX_JUSTIFICATION_CHARS: usize = 4096;
/// Ten years: anything longer is a mistake or an attempt to get a standing assignment through
/// activation.
pub const MAX_DURATION_DAYS: i64 = 3650;
/// How much of a user value an error message repeats, so a 400 body stays small.
pub const ECHO_LIMIT: usize = 64;

/// Decodes a PIM custom-extension request body (Entra roles, PIM for Groups or Azure resources).
///
/// Unknown fields are ignored; missing or mistyped required fields are errors naming the field.
/// When `scheduleInfo.startDateTime` is absent (= now), an `endDateTime` cannot be compared with the
/// start here, since decoding reads no clock: [`Schedule::requested_duration`] then yields a negative
/// or zero length, which the rules must treat as invalid.
///
/// The fast path decodes the common body; anything else, and every error, is the walker's
/// ([`decode_by_walking`]), so the answer is the same either way.
pub fn decode(body: &[u8]) -> Result<ActivationRequest, PayloadError> {
    match super::fast::decode(body) {
        Some(request) => Ok(request),
        None => decode_by_walking(body),
    }
}

/// The reference decoder: the whole body as a `serde_json::Value`, walked by the shared rules.
/// Public only so the benchmark and tests can compare it with [`decode`].
#[doc(hidden)]
pub fn decode_by_walking(body: &[u8]) -> Result<ActivationRequest, PayloadError> {
    let body = without_bom(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::NotJson("the body is empty".to_string()));
    }
    // serde_json's recursion limit (128) turns absurd nesting into an error, not a stack overflow.
    let value: Value =
        serde_json::from_slice(body).map_err(|error| PayloadError::NotJson(error.to_string()))?;
    let Value::Object(map) = &value else {
        return Err(PayloadError::at(
            BODY_FIELD,
            format!("must be a JSON object, got {}", type_name(&value)),
        ));
    };
    decode_fields(&Object::root(map))
}

/// One UTF-8 byte-order mark is tolerated (some senders write one), never more.
pub(super) fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// The decoding rules proper, over any view of the top-level object.
pub(super) fn decode_fields<F: Fields>(root: &F) -> Result<ActivationRequest, PayloadError> {
    match detect_shape(root)? {
        Shape::AzureResource(properties) => decode_azure_resource(root, &properties),
        Shape::Group => decode_graph(root, ResourceType::EntraGroups),
        Shape::EntraRole => decode_graph(root, ResourceType::EntraRoles),
    }
}

enum Shape<F> {
    AzureResource(F),
    Group,
    EntraRole,
}

/// An explicit `@odata.type` wins over field presence: it is the sender's own statement of the type,
/// whereas a stray `groupId` on a role request is just an unknown field.
fn detect_shape<F: Fields>(root: &F) -> Result<Shape<F>, PayloadError> {
    let properties = match root.get("properties")? {
        Some((_, Field::Object(properties))) => return Ok(Shape::AzureResource(properties)),
        other => other,
    };
    if let Some((_, Field::Str(odata_type))) = root.get("@odata.type")? {
        let odata_type = odata_type.to_ascii_lowercase();
        if odata_type.contains("privilegedaccessgroupassignmentschedulerequest") {
            return Ok(Shape::Group);
        }
        if odata_type.contains("unifiedroleassignmentschedulerequest") {
            return Ok(Shape::EntraRole);
        }
    }
    if is_non_null(root, "groupId")? {
        return Ok(Shape::Group);
    }
    if is_non_null(root, "roleDefinitionId")? {
        return Ok(Shape::EntraRole);
    }
    if let Some((path, value)) = properties
        && !matches!(value, Field::Null)
    {
        return Err(PayloadError::at(
            path,
            format!("must be an object, got {}", value.type_name()),
        ));
    }
    Err(PayloadError::at(
        BODY_FIELD,
        "is not a PIM request: expected `properties` (Azure resources), `groupId` or an \
         `@odata.type` naming `privilegedAccessGroupAssignmentScheduleRequest` (PIM for Groups), \
         or `roleDefinitionId` or an `@odata.type` naming `unifiedRoleAssignmentScheduleRequest` \
         (Entra roles)",
    ))
}

fn decode_graph(
    root: &impl Fields,
    resource_type: ResourceType,
) -> Result<ActivationRequest, PayloadError> {
    let request_id = optional_non_blank(root, "id")?;
    let principal_id = required_guid(root, "principalId")?;
    let action = required_action(root, "action")?;
    let target = match resource_type {
        ResourceType::EntraGroups => group_target(root)?,
        ResourceType::EntraRoles | ResourceType::AzureResources => entra_role_target(root)?,
    };
    Ok(ActivationRequest {
        request_id,
        resource_type,
        principal_id,
        principal_type: None,
        justification: justification(root)?,
        ticket: ticket(root)?,
        schedule: schedule(root, &action)?,
        action,
        target,
    })
}

fn decode_azure_resource(
    root: &impl Fields,
    properties: &impl Fields,
) -> Result<ActivationRequest, PayloadError> {
    // ARM names the request by its `name` (a GUID); `id` is the full resource path.
    let request_id = match optional_non_blank(root, "name")? {
        Some(name) => Some(name),
        None => optional_non_blank(root, "id")?,
    };
    let principal_id = required_guid(properties, "principalId")?;
    let principal_type = optional_non_blank(properties, "principalType")?;
    let action = required_action(properties, "requestType")?;
    let target = azure_role_target(properties)?;
    Ok(ActivationRequest {
        request_id,
        resource_type: ResourceType::AzureResources,
        principal_id,
        principal_type,
        justification: justification(properties)?,
        ticket: ticket(properties)?,
        schedule: schedule(properties, &action)?,
        action,
        target,
    })
}

/// Graph requires `directoryScopeId` or `appScopeId`. An app-scoped request (no directory scope) is
/// given the directory scope `/`, so it matches tenant-wide policies (the widest, normally the
/// strictest) and never a policy written for a narrower administrative unit; `app_scope_id` is kept
/// for rules that need to tell the two apart.
fn entra_role_target(root: &impl Fields) -> Result<Target, PayloadError> {
    let role_definition_id = required_guid(root, "roleDefinitionId")?;
    let app_scope_id = optional_non_blank(root, "appScopeId")?;
    let directory_scope_id = match optional_str(root, "directoryScopeId")? {
        Some((path, scope)) => scope_path(path, scope)?,
        None if app_scope_id.is_some() => "/".to_string(),
        None => {
            return Err(PayloadError::at(
                path_of(root, "directoryScopeId"),
                "is required (`/` for the tenant, `/administrativeUnits/{id}`), unless \
                 `appScopeId` is given",
            ));
        }
    };
    Ok(Target::EntraRole {
        role_definition_id,
        directory_scope_id,
        app_scope_id,
    })
}

fn group_target(root: &impl Fields) -> Result<Target, PayloadError> {
    let group_id = required_guid(root, "groupId")?;
    let (path, access) = required_str(root, "accessId")?;
    let access_id = match access.to_ascii_lowercase().as_str() {
        "member" => GroupAccess::Member,
        "owner" => GroupAccess::Owner,
        _ => {
            return Err(PayloadError::at(
                path,
                format!("must be `member` or `owner`, got `{}`", echo(access)),
            ));
        }
    };
    Ok(Target::Group {
        group_id,
        access_id,
    })
}

fn azure_role_target(properties: &impl Fields) -> Result<Target, PayloadError> {
    let (path, role_definition_path) = required_str(properties, "roleDefinitionId")?;
    let role_definition_id = arm_role_definition_guid(role_definition_path).ok_or_else(|| {
        PayloadError::at(
            path,
            format!(
                "is not an ARM role definition id \
                 (`/…/providers/Microsoft.Authorization/roleDefinitions/{{guid}}`) or a GUID: `{}`",
                echo(role_definition_path)
            ),
        )
    })?;
    let (path, scope) = required_str(properties, "scope")?;
    Ok(Target::AzureRole {
        role_definition_id,
        role_definition_path: role_definition_path.to_string(),
        scope: scope_path(path, scope)?,
    })
}

fn arm_role_definition_guid(text: &str) -> Option<String> {
    const MARKER: &str = "/providers/microsoft.authorization/roledefinitions/";
    if let Some(guid) = normalize_guid(text) {
        return Some(guid);
    }
    if !text.starts_with('/') {
        return None;
    }
    // ASCII lower-casing keeps byte offsets, so the index is valid in both strings.
    let lower = text.to_ascii_lowercase();
    let index = lower.rfind(MARKER)?;
    normalize_guid(lower.get(index + MARKER.len()..)?)
}

/// Scopes are kept as sent except that GUID segments are lower-cased, so `/administrativeUnits/{ID}`
/// compares equal to the form rules are written in.
fn scope_path(path: At<'_>, scope: &str) -> Result<String, PayloadError> {
    if !scope.starts_with('/') {
        return Err(PayloadError::at(
            path,
            format!("must start with `/`, got `{}`", echo(scope)),
        ));
    }
    Ok(scope
        .split('/')
        .map(|segment| normalize_guid(segment).unwrap_or_else(|| segment.to_string()))
        .collect::<Vec<_>>()
        .join("/"))
}

/// The justification in its normal form ([`super::normalize_justification`]), decided here once so
/// every consumer (checks, CEL `when`, the audit record) sees the same text; blank or invisible-only
/// counts as absent.
fn justification(object: &impl Fields) -> Result<Option<String>, PayloadError> {
    let Some((path, text)) = optional_str(object, "justification")? else {
        return Ok(None);
    };
    // The limit applies to the text as sent, before normalising (it bounds that work), and to the
    // text the rules judge (NFKC lengthens a few compatibility characters, e.g. U+FDFA).
    too_long(path, text.trim(), "")?;
    let normalized = super::normalize_justification(text);
    too_long(path, &normalized, " once normalised")?;
    Ok((!normalized.is_empty()).then_some(normalized))
}

fn too_long(path: At<'_>, text: &str, as_what: &str) -> Result<(), PayloadError> {
    let length = text.chars().count();
    if length > MAX_JUSTIFICATION_CHARS {
        return Err(PayloadError::at(
            path,
            format!("is longer than {MAX_JUSTIFICATION_CHARS} characters{as_what} ({length})"),
        ));
    }
    Ok(())
}

fn ticket(object: &impl Fields) -> Result<Option<Ticket>, PayloadError> {
    let Some(info) = optional_object(object, "ticketInfo")? else {
        return Ok(None);
    };
    let number = optional_non_blank(&info, "ticketNumber")?;
    let system = optional_non_blank(&info, "ticketSystem")?;
    if number.is_none() && system.is_none() {
        return Ok(None);
    }
    Ok(Some(Ticket { number, system }))
}

/// Actions that create or lengthen access: without a schedule there is nothing to bound.
fn schedule_required(action: &Action) -> bool {
    matches!(
        action,
        Action::SelfActivate
            | Action::SelfExtend
            | Action::SelfRenew
            | Action::AdminAssign
            | Action::AdminExtend
            | Action::AdminRenew
            | Action::AdminUpdate
    )
}

fn schedule(object: &impl Fields, action: &Action) -> Result<Schedule, PayloadError> {
    let unspecified = Schedule {
        start: None,
        expiration_kind: ExpirationKind::NotSpecified,
        duration: None,
        end: None,
    };
    let Some(info) = optional_object(object, "scheduleInfo")? else {
        if schedule_required(action) {
            return Err(PayloadError::at(
                path_of(object, "scheduleInfo"),
                format!("is required when the action is `{}`", echo(action.as_str())),
            ));
        }
        return Ok(unspecified);
    };
    let start = optional_date_time(&info, "startDateTime")?;
    let Some(expiration) = optional_object(&info, "expiration")? else {
        return Ok(Schedule {
            start,
            ..unspecified
        });
    };
    let duration = match optional_str(&expiration, "duration")? {
        Some((path, text)) => Some(bounded_duration(path, text)?),
        None => None,
    };
    let end = match optional_date_time(&expiration, "endDateTime")? {
        Some(end) => {
            check_end_after_start(path_of(&expiration, "endDateTime"), start, end)?;
            Some(end)
        }
        None => None,
    };
    let expiration_kind = match optional_str(&expiration, "type")? {
        Some((path, text)) => expiration_kind(path, text)?,
        None if duration.is_some() => ExpirationKind::AfterDuration,
        None if end.is_some() => ExpirationKind::AfterDateTime,
        None => ExpirationKind::NotSpecified,
    };
    // Only the field the type refers to is kept, so `requested_duration` never reports a length the
    // request did not ask for (e.g. a stray duration beside `noExpiration`).
    let (duration, end) = match expiration_kind {
        ExpirationKind::AfterDuration => {
            let Some(duration) = duration else {
                return Err(PayloadError::at(
                    path_of(&expiration, "duration"),
                    "is required when the expiration type is `afterDuration`",
                ));
            };
            (Some(duration), None)
        }
        ExpirationKind::AfterDateTime => {
            let Some(end) = end else {
                return Err(PayloadError::at(
                    path_of(&expiration, "endDateTime"),
                    "is required when the expiration type is `afterDateTime`",
                ));
            };
            (None, Some(end))
        }
        ExpirationKind::NoExpiration | ExpirationKind::NotSpecified => (None, None),
    };
    Ok(Schedule {
        start,
        expiration_kind,
        duration,
        end,
    })
}

fn expiration_kind(path: At<'_>, text: &str) -> Result<ExpirationKind, PayloadError> {
    match text.to_ascii_lowercase().as_str() {
        "notspecified" => Ok(ExpirationKind::NotSpecified),
        "noexpiration" => Ok(ExpirationKind::NoExpiration),
        "afterdatetime" => Ok(ExpirationKind::AfterDateTime),
        "afterduration" => Ok(ExpirationKind::AfterDuration),
        _ => Err(PayloadError::at(
            path,
            format!(
                "must be one of `notSpecified`, `noExpiration`, `afterDateTime`, \
                 `afterDuration`, got `{}`",
                echo(text)
            ),
        )),
    }
}

fn bounded_duration(path: At<'_>, text: &str) -> Result<Duration, PayloadError> {
    let problem = match parse_duration(text) {
        Ok(duration) if duration <= Duration::zero() => {
            format!("must be longer than zero, got `{}`", echo(text))
        }
        Ok(duration) if duration > Duration::days(MAX_DURATION_DAYS) => {
            format!(
                "must be at most {MAX_DURATION_DAYS} days, got `{}`",
                echo(text)
            )
        }
        Ok(duration) => return Ok(duration),
        Err(DurationError::Negative) => format!("must not be negative, got `{}`", echo(text)),
        Err(DurationError::YearsOrMonths) => format!(
            "uses years or months, which have no fixed length: `{}`; give days instead \
             (e.g. `P30D`)",
            echo(text)
        ),
        Err(error) => format!(
            "is not an ISO-8601 duration: `{}` ({error}; expected e.g. `PT8H` or `P1DT12H`)",
            echo(text)
        ),
    };
    Err(PayloadError::at(path, problem))
}

fn check_end_after_start(
    path: At<'_>,
    start: Option<DateTime<Utc>>,
    end: DateTime<Utc>,
) -> Result<(), PayloadError> {
    let Some(start) = start else {
        return Ok(());
    };
    if end <= start {
        return Err(PayloadError::at(
            path,
            format!(
                "must be after `startDateTime` (`{}`), got `{}`",
                start.to_rfc3339(),
                end.to_rfc3339()
            ),
        ));
    }
    if end - start > Duration::days(MAX_DURATION_DAYS) {
        return Err(PayloadError::at(
            path,
            format!("must be at most {MAX_DURATION_DAYS} days after `startDateTime`"),
        ));
    }
    Ok(())
}

fn optional_date_time(
    object: &impl Fields,
    name: &str,
) -> Result<Option<DateTime<Utc>>, PayloadError> {
    let Some((path, text)) = optional_str(object, name)? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(text)
        .map(|moment| Some(moment.with_timezone(&Utc)))
        .map_err(|_| {
            PayloadError::at(
                path,
                format!(
                    "is not an RFC 3339 date-time with offset (e.g. `2026-11-23T09:30:00Z`): `{}`",
                    echo(text)
                ),
            )
        })
}

fn required_action(object: &impl Fields, name: &str) -> Result<Action, PayloadError> {
    let (path, text) = required_str(object, name)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(PayloadError::at(path, "must not be empty"));
    }
    Ok(Action::parse(text))
}

fn required_guid(object: &impl Fields, name: &str) -> Result<String, PayloadError> {
    let (path, text) = required_str(object, name)?;
    normalize_guid(text)
        .ok_or_else(|| PayloadError::at(path, format!("is not a GUID: `{}`", echo(text))))
}

/// Accepts only the hyphenated 8-4-4-4-12 form PIM sends, lower-cased so ids compare as strings.
fn normalize_guid(text: &str) -> Option<String> {
    crate::vocabulary::ids::parse_guid(text)
}

fn required_str<'o>(
    object: &'o impl Fields,
    name: &str,
) -> Result<(At<'o>, &'o str), PayloadError> {
    match optional_str(object, name)? {
        Some(found) => Ok(found),
        None => Err(PayloadError::at(path_of(object, name), "is required")),
    }
}

/// Missing and `null` are both "absent"; any other non-string is an error.
fn optional_str<'o>(
    object: &'o impl Fields,
    name: &str,
) -> Result<Option<(At<'o>, &'o str)>, PayloadError> {
    match object.get(name)? {
        None | Some((_, Field::Null)) => Ok(None),
        Some((path, Field::Str(text))) => Ok(Some((path, text))),
        Some((path, other)) => Err(PayloadError::at(
            path,
            format!("must be a string, got {}", other.type_name()),
        )),
    }
}

/// Trimmed; blank counts as absent.
fn optional_non_blank(object: &impl Fields, name: &str) -> Result<Option<String>, PayloadError> {
    Ok(optional_str(object, name)?
        .map(|(_, text)| text.trim())
        .filter(|text| !text.is_empty())
        .map(str::to_string))
}

fn optional_object<F: Fields>(object: &F, name: &str) -> Result<Option<F>, PayloadError> {
    match object.get(name)? {
        None | Some((_, Field::Null)) => Ok(None),
        Some((_, Field::Object(child))) => Ok(Some(child)),
        Some((path, other)) => Err(PayloadError::at(
            path,
            format!("must be an object, got {}", other.type_name()),
        )),
    }
}

fn is_non_null(object: &impl Fields, name: &str) -> Result<bool, PayloadError> {
    Ok(matches!(object.get(name)?, Some((_, field)) if !matches!(field, Field::Null)))
}

/// The path of `name` in the client's spelling if the key is there (e.g. as `null`), otherwise
/// in the canonical spelling: used to name missing fields.
fn path_of<'o>(object: &'o impl Fields, name: &'o str) -> At<'o> {
    match object.get(name) {
        Ok(Some((path, _))) => path,
        Ok(None) | Err(_) => At {
            parent: object.path(),
            key: name,
        },
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A user value fit for an error message: at most [`ECHO_LIMIT`] characters, control characters
/// escaped so the message stays on one line.
fn echo(text: &str) -> String {
    let mut out = String::new();
    for (index, character) in text.chars().enumerate() {
        if index == ECHO_LIMIT {
            out.push('…');
            break;
        }
        if character.is_control() {
            out.extend(character.escape_default());
        } else {
            out.push(character);
        }
    }
    out
}

/// A JSON object of the body as the decoding rules see it: the path the client used to reach it and
/// the value under a key. Every rule goes through [`Fields::get`], so two views that give the same
/// answers to the same questions decode to the same result.
pub(super) trait Fields: Sized {
    /// Empty for the top level.
    fn path(&self) -> &str;

    /// The value under `name` (exact key first, then the first key equal ignoring ASCII case) with its
    /// path in the client's spelling. An error means the view cannot answer (the fast path, asked a
    /// question it did not capture): the decoding stops there.
    fn get(&self, name: &str) -> Result<Option<(At<'_>, Field<'_, Self>)>, PayloadError>;
}

/// A value as the decoding rules distinguish it.
pub(super) enum Field<'o, F> {
    Null,
    Str(&'o str),
    Object(F),
    /// Any other JSON type, by name (for the error message).
    Other(&'static str),
}

impl<F> Field<'_, F> {
    fn type_name(&self) -> &'static str {
        match self {
            Field::Null => "null",
            Field::Str(_) => "string",
            Field::Object(_) => "object",
            Field::Other(name) => name,
        }
    }
}

/// The path of a field, joined only when an error needs it (a valid body builds none).
#[derive(Debug, Clone, Copy)]
pub(super) struct At<'p> {
    pub(super) parent: &'p str,
    pub(super) key: &'p str,
}

impl fmt::Display for At<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parent.is_empty() {
            formatter.write_str(self.key)
        } else {
            write!(formatter, "{}.{}", self.parent, self.key)
        }
    }
}

impl From<At<'_>> for String {
    fn from(at: At<'_>) -> String {
        at.to_string()
    }
}

/// The walker's view: a `serde_json::Value` object together with the path the client used to reach it.
struct Object<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Object<'a> {
    fn root(map: &'a Map<String, Value>) -> Self {
        Object {
            map,
            path: String::new(),
        }
    }
}

impl Fields for Object<'_> {
    fn path(&self) -> &str {
        &self.path
    }

    fn get(&self, name: &str) -> Result<Option<(At<'_>, Field<'_, Self>)>, PayloadError> {
        let map = self.map;
        let Some((key, value)) = map
            .get_key_value(name)
            .or_else(|| map.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)))
        else {
            return Ok(None);
        };
        let path = At {
            parent: &self.path,
            key,
        };
        let field = match value {
            Value::Null => Field::Null,
            Value::String(text) => Field::Str(text),
            Value::Object(map) => Field::Object(Object {
                map,
                path: path.to_string(),
            }),
            other => Field::Other(type_name(other)),
        };
        Ok(Some((path, field)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_accepted_only_in_hyphenated_form_and_lower_cased() {
        assert_eq!(
            normalize_guid("62E90394-69F5-4237-9190-012177145E10").as_deref(),
            Some("62e90394-69f5-4237-9190-012177145e10")
        );
        for bad in [
            "",
            "abc",
            "62e9039469f542379190012177145e10",
            "{62e90394-69f5-4237-9190-012177145e10}",
            "62e90394-69f5-4237-9190-012177145e1g",
            "62e90394_69f5-4237-9190-012177145e10",
            "62e90394-69f5-4237-9190-012177145é1",
        ] {
            assert_eq!(normalize_guid(bad), None, "{bad}");
        }
    }

    #[test]
    fn arm_role_definition_ids_yield_their_guid() {
        let guid = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
        for text in [
            "/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
            "/providers/microsoft.authorization/ROLEDEFINITIONS/8E3AF657-A8FF-443C-A75C-2FE8C4BCB635",
            "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        ] {
            assert_eq!(
                arm_role_definition_guid(text).as_deref(),
                Some(guid),
                "{text}"
            );
        }
        for bad in [
            "roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
            "/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635/",
            "/subscriptions/x/providers/Microsoft.Authorization/roleAssignments/8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
            "/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/owner",
        ] {
            assert_eq!(arm_role_definition_guid(bad), None, "{bad}");
        }
    }

    #[test]
    fn echoed_values_are_cut_and_kept_on_one_line() {
        assert_eq!(echo("a\nb"), "a\\nb");
        let long = "é".repeat(1000);
        let echoed = echo(&long);
        assert_eq!(echoed.chars().count(), ECHO_LIMIT + 1);
        assert!(echoed.ends_with('…'));
    }

    #[test]
    fn a_blank_body_is_reported_as_empty() {
        assert_eq!(
            decode(b"  \n"),
            Err(PayloadError::NotJson("the body is empty".to_string()))
        );
    }
}
