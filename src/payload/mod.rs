//! The three PIM request shapes (Entra roles, PIM for Groups, Azure resources) decoded strictly into
//! one normalized [`ActivationRequest`], so nothing downstream knows which wire shape it came from.

mod decode;
#[cfg(test)]
mod differential;
mod duration;
mod fast;
mod fingerprint;
mod interval;
mod justification;
mod stage;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

#[doc(hidden)]
pub use decode::decode_by_walking;
pub use decode::{
    BODY_FIELD, ECHO_LIMIT, MAX_DURATION_DAYS, MAX_JUSTIFICATION_CHARS, PayloadError, decode,
};
pub use duration::parse_iso8601_duration;
pub use fingerprint::{EvaluationKey, FINGERPRINT_FIELDS, fingerprint};
pub use interval::{ActivationEnd, ActivationInterval};
pub use justification::normalize_justification;
pub use stage::Stage;

/// Which PIM surface sent the request (Graph's `resourceType` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ResourceType {
    EntraRoles,
    EntraGroups,
    AzureResources,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::EntraRoles => "entraRoles",
            ResourceType::EntraGroups => "entraGroups",
            ResourceType::AzureResources => "azureResources",
        }
    }
}

/// Graph's `unifiedRoleScheduleRequestActions` (ARM's `RequestType` in PascalCase). A value we do not
/// know is kept verbatim rather than rejected, so rules decide it explicitly (no policy matches it
/// unless one names it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    SelfActivate,
    SelfDeactivate,
    SelfExtend,
    SelfRenew,
    AdminAssign,
    AdminRemove,
    AdminUpdate,
    AdminExtend,
    AdminRenew,
    #[serde(untagged)]
    Other(String),
}

impl Action {
    /// Case-insensitive, so `SelfActivate` (ARM) and `selfActivate` (Graph) are the same action.
    pub fn parse(value: &str) -> Action {
        match value.to_ascii_lowercase().as_str() {
            "selfactivate" => Action::SelfActivate,
            "selfdeactivate" => Action::SelfDeactivate,
            "selfextend" => Action::SelfExtend,
            "selfrenew" => Action::SelfRenew,
            "adminassign" => Action::AdminAssign,
            "adminremove" => Action::AdminRemove,
            "adminupdate" => Action::AdminUpdate,
            "adminextend" => Action::AdminExtend,
            "adminrenew" => Action::AdminRenew,
            _ => Action::Other(value.to_string()),
        }
    }

    /// The Graph (camelCase) spelling, used in rules, reasons and audit records.
    pub fn as_str(&self) -> &str {
        match self {
            Action::SelfActivate => "selfActivate",
            Action::SelfDeactivate => "selfDeactivate",
            Action::SelfExtend => "selfExtend",
            Action::SelfRenew => "selfRenew",
            Action::AdminAssign => "adminAssign",
            Action::AdminRemove => "adminRemove",
            Action::AdminUpdate => "adminUpdate",
            Action::AdminExtend => "adminExtend",
            Action::AdminRenew => "adminRenew",
            Action::Other(value) => value,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum GroupAccess {
    Member,
    Owner,
}

impl GroupAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupAccess::Member => "member",
            GroupAccess::Owner => "owner",
        }
    }
}

/// What is being activated. Ids are lower-case GUID strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Target {
    #[serde(rename_all = "camelCase")]
    EntraRole {
        role_definition_id: String,
        /// `/` for the tenant, or `/administrativeUnits/{id}`.
        directory_scope_id: String,
        app_scope_id: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Group {
        group_id: String,
        access_id: GroupAccess,
    },
    #[serde(rename_all = "camelCase")]
    AzureRole {
        /// The GUID at the end of the ARM path, lower case.
        role_definition_id: String,
        /// The full ARM path as sent.
        role_definition_path: String,
        /// The ARM scope, e.g. `/subscriptions/{id}/resourceGroups/{name}`.
        scope: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    pub number: Option<String>,
    pub system: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ExpirationKind {
    NotSpecified,
    NoExpiration,
    AfterDateTime,
    AfterDuration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// `None` means "now" (PIM's reading of a null `startDateTime`).
    pub start: Option<DateTime<Utc>>,
    pub expiration_kind: ExpirationKind,
    #[serde(serialize_with = "serialize_opt_duration")]
    pub duration: Option<Duration>,
    pub end: Option<DateTime<Utc>>,
}

impl Schedule {
    /// The start as requested, or `now` when none is named. A back-dated start stays back-dated
    /// here; what checks judge is [`ActivationInterval`], whose start is never before now.
    pub fn effective_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.start.unwrap_or(now)
    }

    /// How long the activation would last: the ISO-8601 duration, or end − start. `None` when the
    /// request asks for no expiration or gives nothing to compute it from.
    pub fn requested_duration(&self, now: DateTime<Utc>) -> Option<Duration> {
        match (self.duration, self.end) {
            (Some(duration), _) => Some(duration),
            (None, Some(end)) => Some(end - self.effective_start(now)),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationRequest {
    /// PIM's request id; absent in some ARM deliveries.
    pub request_id: Option<String>,
    pub resource_type: ResourceType,
    pub principal_id: String,
    pub principal_type: Option<String>,
    pub action: Action,
    pub target: Target,
    /// In the normal form of [`normalize_justification`] (no invisible characters, NFKC, single
    /// spaces, trimmed); `None` when missing, null or blank.
    pub justification: Option<String>,
    /// `None` when missing or when both fields are null/blank.
    pub ticket: Option<Ticket>,
    pub schedule: Schedule,
}

impl ActivationRequest {
    /// The id rules match roles and groups by: role definition GUID or group id.
    pub fn target_id(&self) -> &str {
        match &self.target {
            Target::EntraRole {
                role_definition_id, ..
            } => role_definition_id,
            Target::Group { group_id, .. } => group_id,
            Target::AzureRole {
                role_definition_id, ..
            } => role_definition_id,
        }
    }

    /// Directory scope, ARM scope, or `/` for groups.
    pub fn scope(&self) -> &str {
        match &self.target {
            Target::EntraRole {
                directory_scope_id, ..
            } => directory_scope_id,
            Target::Group { .. } => "/",
            Target::AzureRole { scope, .. } => scope,
        }
    }
}

fn serialize_opt_duration<S: serde::Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(duration) => serializer.serialize_some(&format_iso8601_duration(*duration)),
        None => serializer.serialize_none(),
    }
}

/// `PT2H30M`-style rendering for reasons and audit records.
pub fn format_iso8601_duration(duration: Duration) -> String {
    let total = duration.num_seconds();
    if total <= 0 {
        return "PT0S".to_string();
    }
    let days = total / 86_400;
    let hours = (total % 86_400) / 3600;
    let minutes = (total % 3600) / 60;
    let seconds = total % 60;
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if hours > 0 || minutes > 0 || seconds > 0 {
        out.push('T');
        if hours > 0 {
            out.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            out.push_str(&format!("{minutes}M"));
        }
        if seconds > 0 {
            out.push_str(&format!("{seconds}S"));
        }
    }
    out
}
