//! What names an evaluation: the canonical fingerprint of an [`ActivationRequest`], and the
//! [`EvaluationKey`] built from it, the stage and the rules revision. The replay cache is keyed by
//! it and the `evaluationId` is derived from it, so a redelivery gets the same id from any replica,
//! after a restart or after its stored answer expired, and a request that differs in anything that
//! can change the decision never shares a key (or a stored answer) with another.
//!
//! The fingerprint hashes the *normalised* request, not the body: whitespace, key order, the wire
//! shape's spelling (`SelfActivate` / `selfActivate`) and fields pimgate ignores (`status`,
//! `createdDateTime`, …) do not make a new request. Every field of [`ActivationRequest`] is in it
//! ([`FINGERPRINT_FIELDS`], in order); a field added to the request must be added here, and the
//! unit tests fail until it is.
//!
//! Encoding: SHA-256 over a domain tag, then per field its name and its value, each
//! length-prefixed (u64, big-endian), a value preceded by a presence byte, so an absent field, an
//! empty one and text that straddles two fields all hash differently. Times are RFC 3339 in UTC
//! with nanoseconds, durations whole seconds plus nanoseconds. Changing the encoding changes every
//! evaluation id: bump the domain tag's version when doing so, on purpose.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::stage::Stage;
use super::{ActivationRequest, ExpirationKind, Target};

/// The fields hashed into [`fingerprint`], in order. Variant fields of the target are present only
/// for their variant (`target.kind` says which).
pub const FINGERPRINT_FIELDS: &[&str] = &[
    "requestId",
    "resourceType",
    "principalId",
    "principalType",
    "action",
    "target.kind",
    "target.roleDefinitionId",
    "target.directoryScopeId",
    "target.appScopeId",
    "target.groupId",
    "target.accessId",
    "target.roleDefinitionPath",
    "target.scope",
    "justification",
    "ticket",
    "ticket.number",
    "ticket.system",
    "schedule.start",
    "schedule.expirationKind",
    "schedule.duration",
    "schedule.end",
];

const FINGERPRINT_DOMAIN: &str = "pimgate.activation-request.v1";
const EVALUATION_DOMAIN: &str = "pimgate.evaluation.v1";

/// SHA-256 of the normalised request (module docs: field list and encoding).
///
/// PIM's request id is in it: two requests with the same content but their own ids are two
/// evaluations with two ids. Without an id (Microsoft's Azure example has none) the content alone
/// names the request.
pub fn fingerprint(request: &ActivationRequest) -> [u8; 32] {
    let mut fields = Fields::new(FINGERPRINT_DOMAIN);
    fields.optional("requestId", request.request_id.as_deref());
    fields.text("resourceType", request.resource_type.as_str());
    fields.text("principalId", &request.principal_id);
    fields.optional("principalType", request.principal_type.as_deref());
    fields.text("action", request.action.as_str());
    match &request.target {
        Target::EntraRole {
            role_definition_id,
            directory_scope_id,
            app_scope_id,
        } => {
            fields.text("target.kind", "entraRole");
            fields.text("target.roleDefinitionId", role_definition_id);
            fields.text("target.directoryScopeId", directory_scope_id);
            fields.optional("target.appScopeId", app_scope_id.as_deref());
        }
        Target::Group {
            group_id,
            access_id,
        } => {
            fields.text("target.kind", "group");
            fields.text("target.groupId", group_id);
            fields.text("target.accessId", access_id.as_str());
        }
        Target::AzureRole {
            role_definition_id,
            role_definition_path,
            scope,
        } => {
            fields.text("target.kind", "azureRole");
            fields.text("target.roleDefinitionId", role_definition_id);
            fields.text("target.roleDefinitionPath", role_definition_path);
            fields.text("target.scope", scope);
        }
    }
    fields.optional("justification", request.justification.as_deref());
    let ticket = request.ticket.as_ref();
    fields.optional("ticket", ticket.map(|_| ""));
    fields.optional("ticket.number", ticket.and_then(|t| t.number.as_deref()));
    fields.optional("ticket.system", ticket.and_then(|t| t.system.as_deref()));
    let schedule = &request.schedule;
    fields.optional("schedule.start", schedule.start.map(time).as_deref());
    fields.text(
        "schedule.expirationKind",
        expiration_kind(schedule.expiration_kind),
    );
    fields.optional(
        "schedule.duration",
        schedule.duration.map(duration).as_deref(),
    );
    fields.optional("schedule.end", schedule.end.map(time).as_deref());
    fields.finish()
}

/// Names one evaluation: the request's [`fingerprint`], the [`Stage`] that delivered it and the
/// revision of the rules that judge it. The replay cache is keyed by it (with the caller) and the
/// `evaluationId` is derived from it, so both change whenever the answer could.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EvaluationKey([u8; 32]);

impl EvaluationKey {
    pub fn derive(stage: Stage, rules_revision: &str, request: &ActivationRequest) -> Self {
        let mut fields = Fields::new(EVALUATION_DOMAIN);
        fields.text("stage", stage.as_str());
        fields.text("rulesRevision", rules_revision);
        fields.bytes("request", &fingerprint(request));
        Self(fields.finish())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The `evaluationId`: a name-based UUID, version 8 (RFC 9562 §5.8) from the first 16 bytes
    /// of the key (122 of them survive the version and variant bits). Not v5: that is SHA-1
    /// (collisions can be made) and needs another crate; SHA-256 is already ours. Not v7: an id
    /// drawn from the clock differs on every replica and after every restart, which is exactly
    /// what a redelivery must not see; the audit record's `time` keeps the ordering.
    pub fn evaluation_id(&self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&self.0[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }
}

/// Length-prefixed `(name, value)` pairs into one SHA-256.
struct Fields(Sha256);

impl Fields {
    fn new(domain: &str) -> Self {
        let mut fields = Self(Sha256::new());
        fields.part(domain.as_bytes());
        fields
    }

    fn part(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn bytes(&mut self, name: &str, value: &[u8]) {
        self.part(name.as_bytes());
        self.0.update([1]);
        self.part(value);
    }

    fn text(&mut self, name: &str, value: &str) {
        self.bytes(name, value.as_bytes());
    }

    fn optional(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(value) => self.text(name, value),
            None => {
                self.part(name.as_bytes());
                self.0.update([0]);
            }
        }
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

fn time(value: DateTime<Utc>) -> String {
    value.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn duration(value: Duration) -> String {
    format!("{}s{}ns", value.num_seconds(), value.subsec_nanos())
}

fn expiration_kind(kind: ExpirationKind) -> &'static str {
    match kind {
        ExpirationKind::NotSpecified => "notSpecified",
        ExpirationKind::NoExpiration => "noExpiration",
        ExpirationKind::AfterDateTime => "afterDateTime",
        ExpirationKind::AfterDuration => "afterDuration",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::TimeZone;

    use super::*;
    use crate::payload::{Action, GroupAccess, ResourceType, Schedule, Ticket, decode};

    fn entra_role() -> ActivationRequest {
        ActivationRequest {
            request_id: Some("5b8c8f3e-2f0e-4d4b-9a43-7d1c0f6a9e21".into()),
            resource_type: ResourceType::EntraRoles,
            principal_id: "0f6e7b1a-3c52-4b8e-a0d4-2e9f51c7d8a3".into(),
            principal_type: None,
            action: Action::SelfActivate,
            target: Target::EntraRole {
                role_definition_id: "62e90394-69f5-4237-9190-012177145e10".into(),
                directory_scope_id: "/".into(),
                app_scope_id: None,
            },
            justification: Some("Rotate the break-glass credential per CHG0031337".into()),
            ticket: Some(Ticket {
                number: Some("CHG0031337".into()),
                system: Some("ServiceNow".into()),
            }),
            schedule: Schedule {
                start: Utc.with_ymd_and_hms(2026, 11, 23, 9, 30, 0).single(),
                expiration_kind: ExpirationKind::AfterDuration,
                duration: Some(Duration::hours(2)),
                end: None,
            },
        }
    }

    /// A ticket without fields (the decoder gives `None` instead; the fingerprint does not rely on it).
    fn entra_role_with_an_empty_ticket() -> ActivationRequest {
        ActivationRequest {
            ticket: Some(Ticket {
                number: None,
                system: None,
            }),
            ..entra_role()
        }
    }

    fn group() -> ActivationRequest {
        ActivationRequest {
            resource_type: ResourceType::EntraGroups,
            target: Target::Group {
                group_id: "7c2e4a90-1b3d-4f5e-8a6b-9c0d1e2f3a4b".into(),
                access_id: GroupAccess::Member,
            },
            ..entra_role()
        }
    }

    fn azure_role() -> ActivationRequest {
        ActivationRequest {
            request_id: None,
            resource_type: ResourceType::AzureResources,
            principal_type: Some("User".into()),
            target: Target::AzureRole {
                role_definition_id: "8e3af657-a8ff-443c-a75c-2fe8c4bcb635".into(),
                role_definition_path: "/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635".into(),
                scope: "/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d/resourceGroups/rg-sandbox".into(),
            },
            schedule: Schedule {
                start: None,
                expiration_kind: ExpirationKind::AfterDateTime,
                duration: None,
                end: Utc.with_ymd_and_hms(2026, 11, 24, 10, 30, 0).single(),
            },
            ..entra_role()
        }
    }

    fn set_entra_role(
        request: &mut ActivationRequest,
        change: impl FnOnce(&mut String, &mut String, &mut Option<String>),
    ) {
        if let Target::EntraRole {
            role_definition_id,
            directory_scope_id,
            app_scope_id,
        } = &mut request.target
        {
            change(role_definition_id, directory_scope_id, app_scope_id);
        }
    }

    fn set_group(
        request: &mut ActivationRequest,
        change: impl FnOnce(&mut String, &mut GroupAccess),
    ) {
        if let Target::Group {
            group_id,
            access_id,
        } = &mut request.target
        {
            change(group_id, access_id);
        }
    }

    fn set_azure_role(
        request: &mut ActivationRequest,
        change: impl FnOnce(&mut String, &mut String, &mut String),
    ) {
        if let Target::AzureRole {
            role_definition_id,
            role_definition_path,
            scope,
        } = &mut request.target
        {
            change(role_definition_id, role_definition_path, scope);
        }
    }

    /// `(field, the request it starts from, the one change)`.
    type Case = (
        &'static str,
        fn() -> ActivationRequest,
        fn(&mut ActivationRequest),
    );

    fn one_change_per_field() -> Vec<Case> {
        vec![
            ("requestId", entra_role, |r| {
                r.request_id = Some("another-request".into())
            }),
            ("resourceType", azure_role, |r| {
                r.resource_type = ResourceType::EntraRoles
            }),
            ("principalId", entra_role, |r| {
                r.principal_id = "99999999-8888-4777-8666-555555555555".into()
            }),
            ("principalType", azure_role, |r| {
                r.principal_type = Some("Group".into())
            }),
            ("action", entra_role, |r| r.action = Action::SelfExtend),
            ("target.kind", entra_role, |r| {
                r.target = Target::AzureRole {
                    role_definition_id: "62e90394-69f5-4237-9190-012177145e10".into(),
                    role_definition_path: "/".into(),
                    scope: "/".into(),
                }
            }),
            ("target.roleDefinitionId", entra_role, |r| {
                set_entra_role(r, |role, _, _| {
                    *role = "194ae4cb-b126-40b2-bd5b-6091b380977d".into()
                })
            }),
            ("target.directoryScopeId", entra_role, |r| {
                set_entra_role(r, |_, scope, _| {
                    *scope = "/administrativeUnits/4b6c2f1e-0d9a-4c3b-8e7f-6a5b4c3d2e1f".into()
                })
            }),
            ("target.appScopeId", entra_role, |r| {
                set_entra_role(r, |_, _, app_scope| *app_scope = Some("/".into()))
            }),
            ("target.groupId", group, |r| {
                set_group(r, |group, _| {
                    *group = "8d3f5b01-2c4e-4a6f-9b7c-0d1e2f3a4b5c".into()
                })
            }),
            ("target.accessId", group, |r| {
                set_group(r, |_, access| *access = GroupAccess::Owner)
            }),
            ("target.roleDefinitionPath", azure_role, |r| {
                set_azure_role(r, |_, path, _| {
                    *path = path.replace(
                        "3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d",
                        "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                    )
                })
            }),
            ("target.scope", azure_role, |r| {
                set_azure_role(r, |_, _, scope| {
                    *scope = scope.replace("rg-sandbox", "rg-payments-prod")
                })
            }),
            ("justification", entra_role, |r| {
                r.justification = Some("Rotate the break-glass credential per CHG0031338".into())
            }),
            ("ticket", entra_role_with_an_empty_ticket, |r| {
                r.ticket = None
            }),
            ("ticket.number", entra_role, |r| {
                if let Some(ticket) = &mut r.ticket {
                    ticket.number = Some("CHG0031338".into());
                }
            }),
            ("ticket.system", entra_role, |r| {
                if let Some(ticket) = &mut r.ticket {
                    ticket.system = Some("Jira".into());
                }
            }),
            ("schedule.start", entra_role, |r| {
                r.schedule.start = Utc.with_ymd_and_hms(2026, 11, 23, 9, 31, 0).single()
            }),
            ("schedule.expirationKind", entra_role, |r| {
                r.schedule.expiration_kind = ExpirationKind::NotSpecified
            }),
            ("schedule.duration", entra_role, |r| {
                r.schedule.duration = Some(Duration::hours(2) + Duration::nanoseconds(1))
            }),
            ("schedule.end", azure_role, |r| {
                r.schedule.end = Utc.with_ymd_and_hms(2026, 11, 24, 10, 30, 1).single()
            }),
        ]
    }

    #[test]
    fn changing_any_single_field_changes_the_fingerprint() {
        for (field, base, change) in one_change_per_field() {
            let original = base();
            let mut changed = base();
            change(&mut changed);
            assert_ne!(changed, original, "{field}: the case changes nothing");
            assert_ne!(
                fingerprint(&changed),
                fingerprint(&original),
                "{field}: two different requests share a fingerprint"
            );
            assert_ne!(
                EvaluationKey::derive(Stage::PreApproval, "r1", &changed).evaluation_id(),
                EvaluationKey::derive(Stage::PreApproval, "r1", &original).evaluation_id(),
                "{field}: two different requests share an evaluation id"
            );
        }
    }

    #[test]
    fn every_fingerprinted_field_has_its_case_and_every_case_is_a_fingerprinted_field() {
        let cases: BTreeSet<&str> = one_change_per_field().iter().map(|case| case.0).collect();
        let fields: BTreeSet<&str> = FINGERPRINT_FIELDS.iter().copied().collect();
        assert_eq!(cases, fields);
        assert_eq!(
            fields.len(),
            FINGERPRINT_FIELDS.len(),
            "a field is listed twice"
        );
    }

    #[test]
    fn an_absent_field_an_empty_one_and_text_moved_between_fields_all_differ() {
        let mut absent = azure_role();
        absent.principal_type = None;
        let mut empty = azure_role();
        empty.principal_type = Some(String::new());
        assert_ne!(fingerprint(&absent), fingerprint(&empty));

        let mut left = entra_role();
        left.principal_id = "ab".into();
        left.principal_type = Some("c".into());
        let mut right = entra_role();
        right.principal_id = "a".into();
        right.principal_type = Some("bc".into());
        assert_ne!(fingerprint(&left), fingerprint(&right));
    }

    #[test]
    fn the_same_request_written_differently_has_one_fingerprint() {
        let compact = br#"{"properties":{"principalId":"0f6e7b1a-3c52-4b8e-a0d4-2e9f51c7d8a3","requestType":"SelfActivate","roleDefinitionId":"/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635","scope":"/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d","justification":"Scale out","scheduleInfo":{"startDateTime":"2026-11-23T22:00:00Z","expiration":{"type":"AfterDuration","duration":"PT8H"}}}}"#;
        let rewritten = br#"{
            "properties": {
                "scheduleInfo": { "expiration": { "duration": "PT8H", "type": "afterDuration" },
                                  "startDateTime": "2026-11-23T23:00:00+01:00" },
                "justification": "  Scale out ",
                "scope": "/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d",
                "roleDefinitionId": "/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
                "requestType": "selfActivate",
                "principalId": "0f6e7b1a-3c52-4b8e-a0d4-2e9f51c7d8a3",
                "status": "Accepted"
            }
        }"#;
        let (Ok(compact), Ok(rewritten)) = (decode(compact), decode(rewritten)) else {
            panic!("both bodies decode");
        };
        assert_eq!(fingerprint(&compact), fingerprint(&rewritten));
    }

    #[test]
    fn the_rules_revision_is_part_of_the_evaluation_key() {
        let request = entra_role();
        let before = EvaluationKey::derive(Stage::PreApproval, "revision-a", &request);
        let after = EvaluationKey::derive(Stage::PreApproval, "revision-b", &request);
        assert_ne!(before, after);
        assert_ne!(before.evaluation_id(), after.evaluation_id());
        assert_eq!(
            before,
            EvaluationKey::derive(Stage::PreApproval, "revision-a", &request),
            "the derivation is deterministic"
        );
    }

    #[test]
    fn stages_have_stable_distinct_names() {
        let names: Vec<&str> = Stage::ALL.iter().map(|stage| stage.as_str()).collect();
        assert_eq!(names, ["preApproval", "postApproval"]);
    }

    /// PIM calls the post-approval extension with the same body it sent before approval: the
    /// second call is a new evaluation, never the stored answer of the first.
    #[test]
    fn the_same_request_at_another_stage_is_another_evaluation() {
        let request = entra_role();
        let pre = EvaluationKey::derive(Stage::PreApproval, "r1", &request);
        let post = EvaluationKey::derive(Stage::PostApproval, "r1", &request);
        assert_ne!(pre, post);
        assert_ne!(pre.evaluation_id(), post.evaluation_id());
    }

    /// Replicas of different builds must agree on ids during a rolling deploy: a change of the
    /// encoding shows up here and has to be deliberate (bump the domain tags).
    #[test]
    fn the_evaluation_id_is_a_stable_version_8_uuid() {
        let id = EvaluationKey::derive(Stage::PreApproval, "r1", &entra_role()).evaluation_id();
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id.to_string(), "e6923909-bf83-8cb9-a54e-31d31e534cb3");
    }
}
