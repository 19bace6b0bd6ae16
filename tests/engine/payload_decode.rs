//! Decoding of PIM request bodies: every fixture to its exact normalized request, a table of bad
//! bodies to the field and problem the caller is told about, and a no-panic sweep over mutations.

// Clippy exempts `#[test]` functions but not the helpers beside them; this whole file is test code.
#![allow(clippy::unwrap_used, clippy::panic)]

use chrono::{DateTime, Duration, Utc};
use pimgate::payload::{
    Action, ActivationRequest, BODY_FIELD, ExpirationKind, GroupAccess, PayloadError, ResourceType,
    Schedule, Target, Ticket, decode,
};
use serde_json::{Value, json};

const ENTRA: &str = include_str!("../fixtures/requests/entra-role-activation.json");
const GROUP: &str = include_str!("../fixtures/requests/group-activation.json");
const AZURE: &str = include_str!("../fixtures/requests/azure-resource-activation.json");
const AZURE_NAMED: &str = include_str!("../fixtures/requests/azure-resource-named.json");
const GROUP_OWNER: &str = include_str!("../fixtures/requests/group-owner-activation.json");
const ENTRA_AU: &str = include_str!("../fixtures/requests/entra-role-administrative-unit.json");
const ENTRA_DEACTIVATE: &str = include_str!("../fixtures/requests/entra-role-self-deactivate.json");
const ENTRA_PASCAL: &str = include_str!("../fixtures/requests/entra-role-pascal-case.json");
const ENTRA_APP_SCOPE: &str = include_str!("../fixtures/requests/entra-role-app-scope.json");

const ALL_FIXTURES: [&str; 9] = [
    ENTRA,
    GROUP,
    AZURE,
    AZURE_NAMED,
    GROUP_OWNER,
    ENTRA_AU,
    ENTRA_DEACTIVATE,
    ENTRA_PASCAL,
    ENTRA_APP_SCOPE,
];

const PRINCIPAL: &str = "0f6e7b1a-3c52-4b8e-a0d4-2e9f51c7d8a3";

fn instant(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn unspecified_schedule() -> Schedule {
    Schedule {
        start: None,
        expiration_kind: ExpirationKind::NotSpecified,
        duration: None,
        end: None,
    }
}

fn after_duration(start: Option<&str>, duration: Duration) -> Schedule {
    Schedule {
        start: start.map(instant),
        expiration_kind: ExpirationKind::AfterDuration,
        duration: Some(duration),
        end: None,
    }
}

fn ticket(number: Option<&str>, system: Option<&str>) -> Option<Ticket> {
    Some(Ticket {
        number: number.map(str::to_string),
        system: system.map(str::to_string),
    })
}

fn entra_role(role: &str, directory_scope: &str, app_scope: Option<&str>) -> Target {
    Target::EntraRole {
        role_definition_id: role.to_string(),
        directory_scope_id: directory_scope.to_string(),
        app_scope_id: app_scope.map(str::to_string),
    }
}

#[test]
fn the_entra_role_sample_decodes_to_the_expected_request() {
    let expected = ActivationRequest {
        request_id: Some("5b8c8f3e-2f0e-4d4b-9a43-7d1c0f6a9e21".to_string()),
        resource_type: ResourceType::EntraRoles,
        principal_id: PRINCIPAL.to_string(),
        principal_type: None,
        action: Action::SelfActivate,
        target: entra_role("62e90394-69f5-4237-9190-012177145e10", "/", None),
        justification: Some(
            "Rotate the tenant-wide break-glass credential per change CHG0031337".to_string(),
        ),
        ticket: ticket(Some("CHG0031337"), Some("ServiceNow")),
        schedule: after_duration(Some("2026-11-23T09:30:00Z"), Duration::hours(2)),
    };
    assert_eq!(decode(ENTRA.as_bytes()), Ok(expected));
}

#[test]
fn the_group_sample_decodes_to_the_expected_request() {
    let expected = ActivationRequest {
        request_id: Some("a1d2c3b4-5e6f-4a7b-8c9d-0e1f2a3b4c5d".to_string()),
        resource_type: ResourceType::EntraGroups,
        principal_id: PRINCIPAL.to_string(),
        principal_type: None,
        action: Action::SelfActivate,
        target: Target::Group {
            group_id: "7c2e4a90-1b3d-4f5e-8a6b-9c0d1e2f3a4b".to_string(),
            access_id: GroupAccess::Member,
        },
        justification: Some("Investigating INC0042001 (payments latency)".to_string()),
        ticket: ticket(Some("INC0042001"), Some("ServiceNow")),
        schedule: after_duration(None, Duration::hours(4)),
    };
    assert_eq!(decode(GROUP.as_bytes()), Ok(expected));
}

#[test]
fn the_azure_resource_sample_decodes_to_the_expected_request() {
    let expected = ActivationRequest {
        request_id: None,
        resource_type: ResourceType::AzureResources,
        principal_id: PRINCIPAL.to_string(),
        principal_type: Some("User".to_string()),
        action: Action::SelfActivate,
        target: Target::AzureRole {
            role_definition_id: "8e3af657-a8ff-443c-a75c-2fe8c4bcb635".to_string(),
            role_definition_path: "/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635".to_string(),
            scope: "/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d".to_string(),
        },
        justification: Some("Scale out the prod AKS node pool, OPS-1207".to_string()),
        ticket: ticket(Some("OPS-1207"), Some("Jira")),
        schedule: after_duration(Some("2026-11-23T22:00:00Z"), Duration::hours(8)),
    };
    assert_eq!(decode(AZURE.as_bytes()), Ok(expected));
}

#[test]
fn an_arm_request_is_identified_by_its_name_with_guids_lower_cased_and_an_end_date_time() {
    let expected = ActivationRequest {
        request_id: Some("c0ffee00-1234-4abc-9def-0123456789ab".to_string()),
        resource_type: ResourceType::AzureResources,
        principal_id: PRINCIPAL.to_string(),
        principal_type: Some("User".to_string()),
        action: Action::SelfActivate,
        target: Target::AzureRole {
            role_definition_id: "b24988ac-6180-42a0-ab88-20f7382dd24c".to_string(),
            role_definition_path: "/subscriptions/3F2B1C0D-9E8F-4A7B-6C5D-4E3F2A1B0C9D/providers/Microsoft.Authorization/roleDefinitions/B24988AC-6180-42A0-AB88-20F7382DD24C".to_string(),
            scope: "/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d/resourceGroups/rg-payments"
                .to_string(),
        },
        justification: Some("Rotate the payments storage keys".to_string()),
        ticket: None,
        schedule: Schedule {
            start: Some(instant("2026-11-24T07:00:00Z")),
            expiration_kind: ExpirationKind::AfterDateTime,
            duration: None,
            end: Some(instant("2026-11-24T09:30:00Z")),
        },
    };
    assert_eq!(decode(AZURE_NAMED.as_bytes()), Ok(expected));
}

#[test]
fn a_group_owner_request_infers_after_duration_and_keeps_a_partial_ticket() {
    let expected = ActivationRequest {
        request_id: Some("d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70".to_string()),
        resource_type: ResourceType::EntraGroups,
        principal_id: PRINCIPAL.to_string(),
        principal_type: None,
        action: Action::SelfActivate,
        target: Target::Group {
            group_id: "7c2e4a90-1b3d-4f5e-8a6b-9c0d1e2f3a4b".to_string(),
            access_id: GroupAccess::Owner,
        },
        justification: None,
        ticket: ticket(Some("INC0042002"), None),
        schedule: after_duration(Some("2026-11-23T12:00:00Z"), Duration::minutes(90)),
    };
    assert_eq!(decode(GROUP_OWNER.as_bytes()), Ok(expected));
}

#[test]
fn an_entra_role_at_an_administrative_unit_keeps_its_scope_with_a_lower_case_id() {
    let expected = ActivationRequest {
        request_id: Some("9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e6f".to_string()),
        resource_type: ResourceType::EntraRoles,
        principal_id: PRINCIPAL.to_string(),
        principal_type: None,
        action: Action::SelfActivate,
        target: entra_role(
            "fe930be7-5e62-47db-91af-98c3a49a38b1",
            "/administrativeUnits/5d107bba-d8e2-4e13-b6ae-884be90e5d1a",
            None,
        ),
        justification: Some("Reset passwords for the Lyon office".to_string()),
        ticket: None,
        schedule: after_duration(Some("2026-11-23T07:30:00.500Z"), Duration::minutes(90)),
    };
    assert_eq!(decode(ENTRA_AU.as_bytes()), Ok(expected));
}

#[test]
fn a_self_deactivation_needs_no_schedule() {
    let expected = ActivationRequest {
        request_id: Some("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d".to_string()),
        resource_type: ResourceType::EntraRoles,
        principal_id: PRINCIPAL.to_string(),
        principal_type: None,
        action: Action::SelfDeactivate,
        target: entra_role("62e90394-69f5-4237-9190-012177145e10", "/", None),
        justification: None,
        ticket: None,
        schedule: unspecified_schedule(),
    };
    assert_eq!(decode(ENTRA_DEACTIVATE.as_bytes()), Ok(expected));
}

#[test]
fn pascal_case_keys_and_values_decode_like_camel_case() {
    let expected = ActivationRequest {
        request_id: Some("6e5d4c3b-2a19-4807-b6a5-948372615049".to_string()),
        resource_type: ResourceType::EntraRoles,
        principal_id: PRINCIPAL.to_string(),
        principal_type: None,
        action: Action::SelfActivate,
        target: entra_role("194ae4cb-b126-40b2-bd5b-6091b380977d", "/", None),
        justification: Some("Review sign-in alerts, SEC-88".to_string()),
        ticket: ticket(Some("SEC-88"), Some("Jira")),
        schedule: after_duration(Some("2026-11-23T07:00:00Z"), Duration::hours(26)),
    };
    assert_eq!(decode(ENTRA_PASCAL.as_bytes()), Ok(expected));
}

#[test]
fn an_app_scoped_role_gets_the_tenant_directory_scope_and_no_expiration_drops_the_duration() {
    let expected = ActivationRequest {
        request_id: None,
        resource_type: ResourceType::EntraRoles,
        principal_id: PRINCIPAL.to_string(),
        principal_type: None,
        action: Action::SelfActivate,
        target: entra_role("62e90394-69f5-4237-9190-012177145e10", "/", Some("/")),
        justification: None,
        ticket: None,
        schedule: Schedule {
            start: None,
            expiration_kind: ExpirationKind::NoExpiration,
            duration: None,
            end: None,
        },
    };
    assert_eq!(decode(ENTRA_APP_SCOPE.as_bytes()), Ok(expected));
}

/// `base` with the value at JSON pointer `pointer` replaced (`Some`) or removed (`None`).
fn edit(base: &str, pointer: &str, value: Option<Value>) -> String {
    let mut document: Value = serde_json::from_str(base).unwrap();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let object = document
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at `{parent}`"));
    match value {
        Some(value) => object.insert(key.to_string(), value),
        None => object.remove(key),
    };
    document.to_string()
}

fn set(base: &str, pointer: &str, value: Value) -> String {
    edit(base, pointer, Some(value))
}

fn remove(base: &str, pointer: &str) -> String {
    edit(base, pointer, None)
}

#[test]
fn bad_payloads_name_the_field_and_the_problem() {
    let rows: Vec<(&str, String, Option<&str>, &str)> = vec![
        ("not JSON", "{principalId:".into(), None, "not valid JSON"),
        ("empty body", String::new(), None, "empty"),
        (
            "JSON array",
            "[]".into(),
            Some(BODY_FIELD),
            "must be a JSON object, got array",
        ),
        ("JSON null", "null".into(), Some(BODY_FIELD), "got null"),
        (
            "JSON string",
            "\"hi\"".into(),
            Some(BODY_FIELD),
            "got string",
        ),
        (
            "unrecognized object",
            r#"{"principalId": "x"}"#.into(),
            Some(BODY_FIELD),
            "is not a PIM request",
        ),
        (
            "properties not an object",
            r#"{"properties": "x"}"#.into(),
            Some("properties"),
            "must be an object, got string",
        ),
        (
            "missing principalId",
            remove(ENTRA, "/principalId"),
            Some("principalId"),
            "is required",
        ),
        (
            "null principalId",
            set(ENTRA, "/principalId", Value::Null),
            Some("principalId"),
            "is required",
        ),
        (
            "principalId number",
            set(ENTRA, "/principalId", json!(42)),
            Some("principalId"),
            "must be a string, got number",
        ),
        (
            "principalId not a GUID",
            set(ENTRA, "/principalId", json!("abc")),
            Some("principalId"),
            "is not a GUID: `abc`",
        ),
        (
            "PascalCase key keeps its spelling",
            set(ENTRA_PASCAL, "/PrincipalId", json!(7)),
            Some("PrincipalId"),
            "must be a string",
        ),
        (
            "id number",
            set(ENTRA, "/id", json!(5)),
            Some("id"),
            "must be a string, got number",
        ),
        (
            "missing action",
            remove(ENTRA, "/action"),
            Some("action"),
            "is required",
        ),
        (
            "action empty",
            set(ENTRA, "/action", json!("")),
            Some("action"),
            "must not be empty",
        ),
        (
            "action blank",
            set(GROUP, "/action", json!("  ")),
            Some("action"),
            "must not be empty",
        ),
        (
            "action boolean",
            set(ENTRA, "/action", json!(true)),
            Some("action"),
            "got boolean",
        ),
        (
            "roleDefinitionId missing",
            remove(ENTRA, "/roleDefinitionId"),
            Some("roleDefinitionId"),
            "is required",
        ),
        (
            "roleDefinitionId not a GUID",
            set(ENTRA, "/roleDefinitionId", json!("Global Administrator")),
            Some("roleDefinitionId"),
            "is not a GUID: `Global Administrator`",
        ),
        (
            "missing directoryScopeId",
            remove(ENTRA, "/directoryScopeId"),
            Some("directoryScopeId"),
            "is required",
        ),
        (
            "directoryScopeId without slash",
            set(ENTRA, "/directoryScopeId", json!("administrativeUnits/1")),
            Some("directoryScopeId"),
            "must start with `/`",
        ),
        (
            "groupId missing",
            remove(GROUP, "/groupId"),
            Some("groupId"),
            "is required",
        ),
        (
            "groupId not a GUID",
            set(GROUP, "/groupId", json!("payments-admins")),
            Some("groupId"),
            "is not a GUID",
        ),
        (
            "accessId invalid",
            set(GROUP, "/accessId", json!("admin")),
            Some("accessId"),
            "must be `member` or `owner`, got `admin`",
        ),
        (
            "accessId missing",
            remove(GROUP, "/accessId"),
            Some("accessId"),
            "is required",
        ),
        (
            "ARM missing properties.scope",
            remove(AZURE, "/properties/scope"),
            Some("properties.scope"),
            "is required",
        ),
        (
            "ARM scope without slash",
            set(AZURE, "/properties/scope", json!("subscriptions/1")),
            Some("properties.scope"),
            "must start with `/`",
        ),
        (
            "ARM roleDefinitionId not an ARM path",
            set(AZURE, "/properties/roleDefinitionId", json!("Contributor")),
            Some("properties.roleDefinitionId"),
            "is not an ARM role definition id",
        ),
        (
            "ARM roleDefinitionId of another resource type",
            set(
                AZURE,
                "/properties/roleDefinitionId",
                json!(
                    "/subscriptions/1/providers/Microsoft.Authorization/roleAssignments/8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
                ),
            ),
            Some("properties.roleDefinitionId"),
            "is not an ARM role definition id",
        ),
        (
            "ARM missing requestType",
            remove(AZURE, "/properties/requestType"),
            Some("properties.requestType"),
            "is required",
        ),
        (
            "ARM principalId not a GUID",
            set(AZURE, "/properties/principalId", json!("alice@contoso.com")),
            Some("properties.principalId"),
            "is not a GUID",
        ),
        (
            "ARM principalType number",
            set(AZURE, "/properties/principalType", json!(1)),
            Some("properties.principalType"),
            "must be a string",
        ),
        (
            "justification number",
            set(ENTRA, "/justification", json!(3)),
            Some("justification"),
            "must be a string, got number",
        ),
        (
            "justification too long",
            set(ENTRA, "/justification", json!("a".repeat(4097))),
            Some("justification"),
            "longer than 4096",
        ),
        (
            "ticketInfo string",
            set(ENTRA, "/ticketInfo", json!("CHG1")),
            Some("ticketInfo"),
            "must be an object, got string",
        ),
        (
            "ticketNumber number",
            set(ENTRA, "/ticketInfo/ticketNumber", json!(31337)),
            Some("ticketInfo.ticketNumber"),
            "must be a string, got number",
        ),
        (
            "ARM ticketSystem array",
            set(AZURE, "/properties/ticketInfo/ticketSystem", json!([])),
            Some("properties.ticketInfo.ticketSystem"),
            "got array",
        ),
        (
            "scheduleInfo missing for selfActivate",
            remove(ENTRA, "/scheduleInfo"),
            Some("scheduleInfo"),
            "is required when the action is `selfActivate`",
        ),
        (
            "scheduleInfo null for selfExtend",
            set(
                &set(ENTRA, "/action", json!("selfExtend")),
                "/scheduleInfo",
                Value::Null,
            ),
            Some("scheduleInfo"),
            "is required when the action is `selfExtend`",
        ),
        (
            "ARM scheduleInfo missing",
            remove(AZURE, "/properties/scheduleInfo"),
            Some("properties.scheduleInfo"),
            "is required when the action is `selfActivate`",
        ),
        (
            "scheduleInfo array",
            set(ENTRA, "/scheduleInfo", json!([])),
            Some("scheduleInfo"),
            "must be an object, got array",
        ),
        (
            "startDateTime not a date",
            set(ENTRA, "/scheduleInfo/startDateTime", json!("tomorrow")),
            Some("scheduleInfo.startDateTime"),
            "is not an RFC 3339 date-time",
        ),
        (
            "startDateTime without offset",
            set(
                ENTRA,
                "/scheduleInfo/startDateTime",
                json!("2026-11-23T09:30:00"),
            ),
            Some("scheduleInfo.startDateTime"),
            "with offset",
        ),
        (
            "expiration a string",
            set(ENTRA, "/scheduleInfo/expiration", json!("PT8H")),
            Some("scheduleInfo.expiration"),
            "must be an object",
        ),
        (
            "duration 8h",
            set(ENTRA, "/scheduleInfo/expiration/duration", json!("8h")),
            Some("scheduleInfo.expiration.duration"),
            "is not an ISO-8601 duration: `8h`",
        ),
        (
            "duration in words",
            set(ENTRA, "/scheduleInfo/expiration/duration", json!("8 hours")),
            Some("scheduleInfo.expiration.duration"),
            "is not an ISO-8601 duration: `8 hours`",
        ),
        (
            "duration P1M",
            set(ENTRA, "/scheduleInfo/expiration/duration", json!("P1M")),
            Some("scheduleInfo.expiration.duration"),
            "give days instead",
        ),
        (
            "duration P1Y",
            set(ENTRA, "/scheduleInfo/expiration/duration", json!("P1Y")),
            Some("scheduleInfo.expiration.duration"),
            "years or months",
        ),
        (
            "duration PT0S",
            set(ENTRA, "/scheduleInfo/expiration/duration", json!("PT0S")),
            Some("scheduleInfo.expiration.duration"),
            "must be longer than zero",
        ),
        (
            "duration negative",
            set(ENTRA, "/scheduleInfo/expiration/duration", json!("-PT8H")),
            Some("scheduleInfo.expiration.duration"),
            "must not be negative",
        ),
        (
            "duration over ten years",
            set(ENTRA, "/scheduleInfo/expiration/duration", json!("P3651D")),
            Some("scheduleInfo.expiration.duration"),
            "at most 3650 days",
        ),
        (
            "duration number",
            set(ENTRA, "/scheduleInfo/expiration/duration", json!(8)),
            Some("scheduleInfo.expiration.duration"),
            "must be a string, got number",
        ),
        (
            "ARM duration 8h",
            set(
                AZURE,
                "/properties/scheduleInfo/expiration/duration",
                json!("8h"),
            ),
            Some("properties.scheduleInfo.expiration.duration"),
            "is not an ISO-8601 duration",
        ),
        (
            "endDateTime before start",
            set(
                ENTRA,
                "/scheduleInfo/expiration/endDateTime",
                json!("2026-11-23T08:00:00Z"),
            ),
            Some("scheduleInfo.expiration.endDateTime"),
            "must be after `startDateTime`",
        ),
        (
            "endDateTime equal to start",
            set(
                ENTRA,
                "/scheduleInfo/expiration/endDateTime",
                json!("2026-11-23T09:30:00Z"),
            ),
            Some("scheduleInfo.expiration.endDateTime"),
            "must be after `startDateTime`",
        ),
        (
            "endDateTime over ten years after start",
            set(
                ENTRA,
                "/scheduleInfo/expiration/endDateTime",
                json!("2040-01-01T00:00:00Z"),
            ),
            Some("scheduleInfo.expiration.endDateTime"),
            "at most 3650 days",
        ),
        (
            "endDateTime not a date",
            set(ENTRA, "/scheduleInfo/expiration/endDateTime", json!("soon")),
            Some("scheduleInfo.expiration.endDateTime"),
            "is not an RFC 3339 date-time",
        ),
        (
            "afterDuration without duration",
            remove(ENTRA, "/scheduleInfo/expiration/duration"),
            Some("scheduleInfo.expiration.duration"),
            "is required when the expiration type is `afterDuration`",
        ),
        (
            "afterDateTime without endDateTime",
            set(
                ENTRA,
                "/scheduleInfo/expiration/type",
                json!("afterDateTime"),
            ),
            Some("scheduleInfo.expiration.endDateTime"),
            "is required when the expiration type is `afterDateTime`",
        ),
        (
            "expiration type unknown",
            set(ENTRA, "/scheduleInfo/expiration/type", json!("afterLunch")),
            Some("scheduleInfo.expiration.type"),
            "must be one of",
        ),
        (
            "expiration type number",
            set(ENTRA, "/scheduleInfo/expiration/type", json!(3)),
            Some("scheduleInfo.expiration.type"),
            "must be a string",
        ),
        (
            "nesting beyond the JSON depth limit",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            None,
            "recursion limit",
        ),
        (
            "number out of range",
            r#"{"principalId": 1e999999}"#.into(),
            None,
            "out of range",
        ),
    ];
    assert!(rows.len() >= 25);
    let mut failures = Vec::new();
    for (description, body, field, fragment) in &rows {
        match decode(body.as_bytes()) {
            Ok(request) => failures.push(format!("{description}: decoded to {request:?}")),
            Err(error) => {
                let message = error.to_string();
                if error.field() != *field || !message.contains(fragment) {
                    failures.push(format!(
                        "{description}: expected {field:?} with `{fragment}`, got {:?}: {message}",
                        error.field()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_huge_value_is_not_echoed_back_in_full() {
    let body = set(ENTRA, "/principalId", json!("x".repeat(100_000)));
    let error = decode(body.as_bytes()).unwrap_err();
    assert_eq!(error.field(), Some("principalId"));
    assert!(error.to_string().len() < 200, "{error}");
}

#[test]
fn a_not_json_error_does_not_echo_the_body() {
    let error = decode(b"{\"secret-looking-content\": nope}").unwrap_err();
    assert!(matches!(error, PayloadError::NotJson(_)), "{error}");
    assert!(
        !error.to_string().contains("secret-looking-content"),
        "{error}"
    );
}

#[test]
fn an_unknown_action_is_kept_verbatim_and_needs_no_schedule() {
    let body = remove(
        &set(ENTRA, "/action", json!("adminFrobnicate")),
        "/scheduleInfo",
    );
    let request = decode(body.as_bytes()).unwrap();
    assert_eq!(request.action, Action::Other("adminFrobnicate".to_string()));
    assert_eq!(request.schedule, unspecified_schedule());
}

#[test]
fn pascal_case_actions_map_to_the_known_variants() {
    let body = set(ENTRA, "/action", json!("AdminRenew"));
    assert_eq!(decode(body.as_bytes()).unwrap().action, Action::AdminRenew);
}

#[test]
fn an_explicit_odata_type_wins_over_a_stray_group_id() {
    let body = set(
        ENTRA,
        "/groupId",
        json!("7c2e4a90-1b3d-4f5e-8a6b-9c0d1e2f3a4b"),
    );
    assert_eq!(
        decode(body.as_bytes()).unwrap().resource_type,
        ResourceType::EntraRoles
    );
}

#[test]
fn the_shape_is_recognized_from_fields_when_odata_type_is_absent() {
    let group = remove(GROUP, "/@odata.type");
    assert_eq!(
        decode(group.as_bytes()).unwrap().resource_type,
        ResourceType::EntraGroups
    );
    let role = remove(ENTRA, "/@odata.type");
    assert_eq!(
        decode(role.as_bytes()).unwrap().resource_type,
        ResourceType::EntraRoles
    );
}

#[test]
fn an_expiration_with_only_an_end_date_time_is_after_date_time() {
    let body = set(
        ENTRA,
        "/scheduleInfo/expiration",
        json!({ "endDateTime": "2026-11-23T10:00:00+00:00" }),
    );
    let schedule = decode(body.as_bytes()).unwrap().schedule;
    assert_eq!(
        schedule,
        Schedule {
            start: Some(instant("2026-11-23T09:30:00Z")),
            expiration_kind: ExpirationKind::AfterDateTime,
            duration: None,
            end: Some(instant("2026-11-23T10:00:00Z")),
        }
    );
}

#[test]
fn a_schedule_without_expiration_keeps_its_start_and_is_not_specified() {
    let body = remove(ENTRA, "/scheduleInfo/expiration");
    let schedule = decode(body.as_bytes()).unwrap().schedule;
    assert_eq!(
        schedule,
        Schedule {
            start: Some(instant("2026-11-23T09:30:00Z")),
            ..unspecified_schedule()
        }
    );
}

#[test]
fn a_blank_ticket_is_no_ticket_and_a_blank_justification_is_none() {
    let body = set(
        &set(
            ENTRA,
            "/ticketInfo",
            json!({ "ticketNumber": " ", "ticketSystem": null }),
        ),
        "/justification",
        json!("   "),
    );
    let request = decode(body.as_bytes()).unwrap();
    assert_eq!(request.ticket, None);
    assert_eq!(request.justification, None);
}

#[test]
fn a_justification_of_exactly_the_limit_is_accepted() {
    let body = set(ENTRA, "/justification", json!("é".repeat(4096)));
    let request = decode(body.as_bytes()).unwrap();
    assert_eq!(
        request.justification.map(|text| text.chars().count()),
        Some(4096)
    );
}

#[test]
fn a_byte_order_mark_is_tolerated() {
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(ENTRA.as_bytes());
    assert_eq!(decode(&body), decode(ENTRA.as_bytes()));
}

/// Every error must be short and, when it names a field, name a non-empty one.
fn assert_sane(body: &[u8]) {
    if let Err(error) = decode(body) {
        let message = error.to_string();
        assert!(message.chars().count() <= 500, "overlong error: {message}");
        if let Some(field) = error.field() {
            assert!(!field.is_empty(), "empty field in {message}");
        }
    }
}

fn json_pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let pointer = format!("{prefix}/{}", key.replace('~', "~0").replace('/', "~1"));
                out.push(pointer.clone());
                json_pointers(child, pointer, out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                let pointer = format!("{prefix}/{index}");
                out.push(pointer.clone());
                json_pointers(child, pointer, out);
            }
        }
        _ => {}
    }
}

#[test]
fn truncated_and_mutated_samples_never_panic() {
    let mut nested = json!("bottom");
    for _ in 0..100 {
        nested = json!([nested]);
    }
    let replacements = [
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1.0e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("   "),
        json!("x".repeat(10_000)),
        json!("é😀\u{0}\u{202e}`"),
        json!("P9999999999999999999D"),
        json!("9999-12-31T23:59:59+23:59"),
        json!([]),
        json!([1, "a"]),
        json!({}),
        json!({ "type": "afterDuration" }),
        nested,
    ];
    let raw_bodies: Vec<Vec<u8>> = vec![
        vec![],
        b"\xFF\xFE".to_vec(),
        b"\"\\ud800\"".to_vec(),
        b"{\"properties\": {\"principalId\": \"\\udfff\"}}".to_vec(),
        "[".repeat(1_000_000).into_bytes(),
        "{\"a\":".repeat(100_000).into_bytes(),
        b"1e999999".to_vec(),
        b"{\"action\": 123456789012345678901234567890}".to_vec(),
    ];
    for body in &raw_bodies {
        assert_sane(body);
    }
    for fixture in ALL_FIXTURES {
        let bytes = fixture.as_bytes();
        for end in 0..=bytes.len() {
            assert_sane(bytes.get(..end).unwrap());
        }
        for position in 0..bytes.len() {
            for replacement in [b'"', b'{', b'}', b'[', b'0', b'-', b'x', b'\\', 0xFF, b' '] {
                let mut mutated = bytes.to_vec();
                mutated[position] = replacement;
                assert_sane(&mutated);
            }
        }
        let document: Value = serde_json::from_str(fixture).unwrap();
        let mut pointers = Vec::new();
        json_pointers(&document, String::new(), &mut pointers);
        for pointer in &pointers {
            let mut removed = document.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            if let Some(Value::Object(map)) = removed.pointer_mut(parent) {
                map.remove(&key.replace("~1", "/").replace("~0", "~"));
                assert_sane(removed.to_string().as_bytes());
            }
            for replacement in &replacements {
                let mut mutated = document.clone();
                if let Some(slot) = mutated.pointer_mut(pointer) {
                    *slot = replacement.clone();
                }
                assert_sane(mutated.to_string().as_bytes());
            }
        }
    }
}
