//! Requests and ids shared by the rule tests (`rules_engine`, `rules_index`, `guards`) and the rules
//! bench: one self-activation by Alice, with a ticket, for an Entra role, a group or an Azure role.
// Each test binary uses a different subset.
#![allow(dead_code)]

use pimgate::payload::{
    Action, ActivationRequest, ExpirationKind, GroupAccess, ResourceType, Schedule, Target, Ticket,
};

pub const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";
pub const EXCHANGE_ADMIN: &str = "29232cdf-9323-42fd-ade2-1d097af3e4de";
pub const CUSTOM_ROLE: &str = "aaaaaaaa-0000-4000-8000-000000000001";
pub const GROUP: &str = "bbbbbbbb-0000-4000-8000-000000000002";
pub const ALICE: &str = "cccccccc-0000-4000-8000-000000000003";
pub const BREAK_GLASS: &str = "0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d";
pub const NOW: &str = "2026-11-24T19:05:00+01:00";

// ---- requests -------------------------------------------------------------------------------

pub fn request(target: Target, resource_type: ResourceType) -> ActivationRequest {
    ActivationRequest {
        request_id: None,
        resource_type,
        principal_id: ALICE.to_string(),
        principal_type: Some("User".to_string()),
        action: Action::SelfActivate,
        target,
        justification: Some("CHG0031337: rotate the federation signing certificate".to_string()),
        ticket: Some(Ticket {
            number: Some("CHG0031337".to_string()),
            system: Some("ServiceNow".to_string()),
        }),
        schedule: Schedule {
            start: None,
            expiration_kind: ExpirationKind::AfterDuration,
            duration: Some(chrono::Duration::hours(1)),
            end: None,
        },
    }
}

pub fn role(id: &str) -> ActivationRequest {
    request(
        Target::EntraRole {
            role_definition_id: id.to_string(),
            directory_scope_id: "/".to_string(),
            app_scope_id: None,
        },
        ResourceType::EntraRoles,
    )
}

pub fn group(id: &str, access: GroupAccess) -> ActivationRequest {
    request(
        Target::Group {
            group_id: id.to_string(),
            access_id: access,
        },
        ResourceType::EntraGroups,
    )
}

pub fn azure(id: &str, scope: &str) -> ActivationRequest {
    request(
        Target::AzureRole {
            role_definition_id: id.to_string(),
            role_definition_path: format!(
                "{scope}/providers/Microsoft.Authorization/roleDefinitions/{id}"
            ),
            scope: scope.to_string(),
        },
        ResourceType::AzureResources,
    )
}

pub fn with_action(mut request: ActivationRequest, action: Action) -> ActivationRequest {
    request.action = action;
    request
}

pub fn with_scope(mut request: ActivationRequest, scope: &str) -> ActivationRequest {
    if let Target::EntraRole {
        directory_scope_id, ..
    } = &mut request.target
    {
        *directory_scope_id = scope.to_string();
    }
    request
}

pub fn with_principal(mut request: ActivationRequest, principal: &str) -> ActivationRequest {
    request.principal_id = principal.to_string();
    request
}

pub fn with_duration(
    mut request: ActivationRequest,
    duration: Option<chrono::Duration>,
) -> ActivationRequest {
    request.schedule.duration = duration;
    request
}
