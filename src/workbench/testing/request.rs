//! The shorthand request of a rule test case (`request: { role: ..., duration: PT1H }`): only what
//! the case is about, with defaults for the rest, turned into the `ActivationRequest` PIM's body
//! would decode to.

use chrono::{DateTime, Utc};

use crate::payload::{
    Action, ActivationRequest, ExpirationKind, GroupAccess, ResourceType, Schedule, Target, Ticket,
};
use crate::rules::catalog;
use crate::rules::compile::parse_guid;
use crate::vocabulary::diagnostic::Diagnostic;

/// The principal of a shorthand request that names none.
pub const DEFAULT_PRINCIPAL: &str = "00000000-0000-4000-8000-000000000001";

/// Every key a shorthand request may have.
pub(super) const REQUEST_KEYS: &[&str] = &[
    "role",
    "group",
    "access",
    "resource_type",
    "scope",
    "action",
    "principal",
    "justification",
    "ticket",
    "ticket_system",
    "duration",
    "start",
];

/// A request written by hand: only what the case is about, with defaults for the rest.
#[derive(Debug, Default)]
pub(super) struct ShorthandRequest {
    pub(super) role: Option<String>,
    pub(super) group: Option<String>,
    pub(super) access: Option<String>,
    pub(super) resource_type: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) action: Option<String>,
    pub(super) principal: Option<String>,
    pub(super) justification: Option<String>,
    pub(super) ticket: Option<String>,
    pub(super) ticket_system: Option<String>,
    pub(super) duration: Option<String>,
    pub(super) start: Option<String>,
}

pub(super) fn bad_case(key: &str, message: impl Into<String>, fix: &str) -> Box<Diagnostic> {
    Box::new(Diagnostic::error(key, message, fix))
}

fn bad(field: &'static str, message: String, fix: &str) -> Box<Diagnostic> {
    bad_case(&format!("request.{field}"), message, fix)
}

pub(super) fn shorthand_request(
    short: &ShorthandRequest,
) -> Result<ActivationRequest, Box<Diagnostic>> {
    let scope = short.scope.clone().unwrap_or_else(|| "/".to_string());
    let resource_type = match short.resource_type.as_deref() {
        None if short.group.is_some() => ResourceType::EntraGroups,
        None => ResourceType::EntraRoles,
        Some(text) => [
            ResourceType::EntraRoles,
            ResourceType::EntraGroups,
            ResourceType::AzureResources,
        ]
        .into_iter()
        .find(|kind| kind.as_str().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            bad(
                "resource_type",
                format!("unknown resource type `{text}`"),
                "use entraRoles, entraGroups or azureResources",
            )
        })?,
    };
    let target = match resource_type {
        ResourceType::EntraGroups => {
            let group = short.group.as_deref().unwrap_or("");
            let group_id = parse_guid(group).ok_or_else(|| {
                bad(
                    "group",
                    format!("`{group}` is not a GUID"),
                    "give the group's object id",
                )
            })?;
            let access_id = match short
                .access
                .as_deref()
                .unwrap_or("member")
                .to_ascii_lowercase()
                .as_str()
            {
                "member" => GroupAccess::Member,
                "owner" => GroupAccess::Owner,
                other => {
                    return Err(bad(
                        "access",
                        format!("unknown access `{other}`"),
                        "use member or owner",
                    ));
                }
            };
            Target::Group {
                group_id,
                access_id,
            }
        }
        ResourceType::EntraRoles | ResourceType::AzureResources => {
            let role = short.role.as_deref().unwrap_or("");
            let role_definition_id = parse_guid(role)
                .or_else(|| {
                    catalog::by_name(role)
                        .or_else(|| {
                            catalog::all()
                                .iter()
                                .find(|known| known.name.eq_ignore_ascii_case(role))
                        })
                        .map(|known| known.id.to_ascii_lowercase())
                })
                .ok_or_else(|| {
                    bad(
                        "role",
                        format!("unknown role `{role}`"),
                        "give a built-in role name or a role definition GUID",
                    )
                })?;
            if resource_type == ResourceType::AzureResources {
                Target::AzureRole {
                    role_definition_path: format!(
                        "{scope}/providers/Microsoft.Authorization/roleDefinitions/{role_definition_id}"
                    ),
                    role_definition_id,
                    scope,
                }
            } else {
                Target::EntraRole {
                    role_definition_id,
                    directory_scope_id: scope,
                    app_scope_id: None,
                }
            }
        }
    };
    let principal = short.principal.as_deref().unwrap_or(DEFAULT_PRINCIPAL);
    let principal_id = parse_guid(principal).ok_or_else(|| {
        bad(
            "principal",
            format!("`{principal}` is not a GUID"),
            "give an object id",
        )
    })?;
    let duration = match &short.duration {
        None => None,
        Some(text) => {
            // The parser PIM's requests go through, so a test case means what a request would.
            let parsed = crate::payload::parse_iso8601_duration(text).map_err(|problem| {
                bad(
                    "duration",
                    format!("`{text}` is not an ISO-8601 duration: {problem}"),
                    "e.g. PT2H",
                )
            })?;
            Some(parsed)
        }
    };
    let start = match &short.start {
        None => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| {
                    bad(
                        "start",
                        format!("`{text}` is not an RFC 3339 time"),
                        "e.g. 2026-11-24T19:05:00+01:00",
                    )
                })?,
        ),
    };
    let ticket = (short.ticket.is_some() || short.ticket_system.is_some()).then(|| Ticket {
        number: short.ticket.clone(),
        system: short.ticket_system.clone(),
    });
    Ok(ActivationRequest {
        request_id: None,
        resource_type,
        principal_id,
        principal_type: Some("User".to_string()),
        action: Action::parse(short.action.as_deref().unwrap_or("selfActivate")),
        target,
        justification: short
            .justification
            .as_deref()
            .map(crate::payload::normalize_justification)
            .filter(|text| !text.is_empty()),
        ticket,
        schedule: Schedule {
            start,
            expiration_kind: if duration.is_some() {
                ExpirationKind::AfterDuration
            } else {
                ExpirationKind::NotSpecified
            },
            duration,
            end: None,
        },
    })
}
