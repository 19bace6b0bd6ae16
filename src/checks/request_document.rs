//! The activation request as another system is shown it: the JSON document the `http` and `opa`
//! checks send (an organisation's own compliance API, its OPA). One builder, so every receiver sees
//! the same fields with the same names as the audit record (camelCase), plus what pimgate has
//! already worked out for it: the stage and the effective activation interval.
//!
//! The justification is free text a requester wrote; a receiver may not need it, so each connector
//! says how much of it leaves the process ([`Disclosure`]).

use chrono::SecondsFormat;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::CheckContext;
use crate::payload::{ActivationEnd, format_iso8601_duration};

/// How much of the justification a receiver gets (a connector setting, so it lives in `vocabulary`).
pub use crate::vocabulary::disclosure::Disclosure;

/// Version of the document's shape; a receiver can refuse one it does not know.
pub const DOCUMENT_VERSION: &str = "pimgate.activation.v1";

/// The document for `context`'s request, stage and interval.
///
/// ```json
/// {"version": "pimgate.activation.v1", "stage": "pre_approval", "requestId": "...",
///  "principalId": "...", "principalType": "User", "resourceType": "entraRoles", "action": "selfActivate",
///  "target": {"kind": "entraRole", "roleDefinitionId": "...", "directoryScopeId": "/", "appScopeId": null},
///  "scope": "/",
///  "ticket": {"number": "CHG0031337", "system": "ServiceNow"}, "justification": "...",
///  "schedule": {"start": null, "expirationKind": "afterDuration", "duration": "PT1H", "end": null},
///  "activation": {"start": "2026-11-24T18:05:00Z", "end": "2026-11-24T19:05:00Z", "noExpiration": false},
///  "decidedAt": "2026-11-24T18:05:00Z"}
/// ```
pub fn request_document(context: &CheckContext<'_>, disclosure: Disclosure) -> Value {
    let request = context.request;
    let stamp = |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let justification = request
        .justification
        .as_deref()
        .and_then(|text| match disclosure {
            Disclosure::Full => Some(text.to_string()),
            Disclosure::Hash => Some(format!(
                "sha256:{}",
                hex::encode(Sha256::digest(text.as_bytes()))
            )),
            Disclosure::Omit => None,
        });
    let (end, no_expiration) = match context.interval.end {
        ActivationEnd::At(end) => (Some(stamp(end)), false),
        ActivationEnd::NoExpiration => (None, true),
        ActivationEnd::NotSpecified => (None, false),
    };
    json!({
        "version": DOCUMENT_VERSION,
        "stage": context.stage,
        "requestId": request.request_id,
        "principalId": request.principal_id,
        "principalType": request.principal_type,
        "resourceType": request.resource_type.as_str(),
        "action": request.action.as_str(),
        "target": request.target,
        "scope": request.scope(),
        "ticket": request.ticket,
        "justification": justification,
        "schedule": {
            "start": request.schedule.start.map(stamp),
            "expirationKind": request.schedule.expiration_kind,
            "duration": request.schedule.duration.map(format_iso8601_duration),
            "end": request.schedule.end.map(stamp),
        },
        "activation": {
            "start": stamp(context.interval.start),
            "end": end,
            "noExpiration": no_expiration,
        },
        "decidedAt": stamp(context.now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_support::{now, request};
    use crate::payload::Stage;

    fn document(disclosure: Disclosure, stage: Stage) -> Value {
        let mut request = request();
        request.justification = Some("CHG0031337: rotate the certificate".into());
        let context =
            CheckContext::new(&request, now(), tokio::time::Instant::now()).at_stage(stage);
        request_document(&context, disclosure)
    }

    #[test]
    fn the_document_names_the_stage_the_target_and_the_effective_interval() {
        let document = document(Disclosure::Full, Stage::PostApproval);
        assert_eq!(document["version"], DOCUMENT_VERSION);
        assert_eq!(document["stage"], "post_approval");
        assert_eq!(document["resourceType"], "entraRoles");
        assert_eq!(document["action"], "selfActivate");
        assert_eq!(document["target"]["kind"], "entraRole");
        assert_eq!(document["schedule"]["duration"], "PT1H");
        let start = document["activation"]["start"].as_str().unwrap_or_default();
        assert_eq!(start, document["decidedAt"].as_str().unwrap_or("?"));
        assert!(document["activation"]["end"].is_string(), "{document}");
        assert!(document["justification"].is_string());
    }

    #[test]
    fn the_justification_is_sent_hashed_or_not_at_all_when_the_connector_says_so() {
        let hashed = document(Disclosure::Hash, Stage::PreApproval);
        let text = hashed["justification"].as_str().unwrap_or_default();
        assert!(
            text.starts_with("sha256:") && text.len() == 7 + 64,
            "{text}"
        );
        let omitted = document(Disclosure::Omit, Stage::PreApproval);
        assert!(omitted["justification"].is_null());
        assert!(
            !omitted.to_string().contains("CHG0031337: rotate"),
            "{omitted}"
        );
    }
}
