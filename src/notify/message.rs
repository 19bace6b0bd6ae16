//! What a notification says and the three shapes it is sent in: a Teams Adaptive Card, Slack
//! blocks, and the plain event for a signed webhook. The event carries what a reviewer needs to
//! act (who, which role where, what was decided by which policy and why, the evaluation id to find
//! the audit record) and the justification only as the audit log masks it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::decision::{Decision, Outcome};
use crate::payload::{ActivationRequest, Stage, Target};
use crate::rules::catalog::{self, Tier};

use crate::settings::notify::NotifyKind;

/// Versions the webhook event's shape; a receiver can refuse one it does not know.
pub const EVENT_TYPE: &str = "pimgate.decision.v1";

/// One decision as every target is told about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub evaluation_id: Uuid,
    pub stage: &'static str,
    pub outcome: Outcome,
    pub policy: Option<String>,
    pub reasons: Vec<String>,
    pub principal_id: String,
    /// The built-in role's name, or the role definition / group id when the catalog has none.
    pub role: String,
    pub role_id: String,
    pub tier: Option<Tier>,
    pub resource_type: &'static str,
    pub action: String,
    pub scope: String,
    /// As the audit record has it (`audit.justification`): full, truncated, hashed or absent.
    pub justification: Option<String>,
    /// The `mode: audit` policies that would have answered differently.
    pub shadow_disagreements: Vec<ShadowNote>,
    pub rules_revision: String,
    pub evaluated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowNote {
    pub policy: String,
    pub outcome: Outcome,
}

impl Event {
    /// `justification` must already be masked ([`crate::audit::AuditLog::mask_justification`]).
    pub fn new(
        decision: &Decision,
        request: &ActivationRequest,
        justification: Option<String>,
    ) -> Self {
        let role_id = request.target_id().to_string();
        let builtin = match &request.target {
            Target::EntraRole { .. } => catalog::by_id(&role_id),
            _ => None,
        };
        Event {
            event_type: EVENT_TYPE,
            evaluation_id: decision.evaluation_id,
            stage: decision.stage.as_str(),
            outcome: decision.outcome,
            policy: decision.policy.clone(),
            reasons: decision.reasons.clone(),
            principal_id: request.principal_id.clone(),
            role: builtin.map_or_else(|| role_id.clone(), |role| role.name.to_string()),
            role_id,
            tier: builtin.map(|role| role.tier),
            resource_type: request.resource_type.as_str(),
            action: request.action.as_str().to_string(),
            scope: request.scope().to_string(),
            justification,
            shadow_disagreements: decision
                .shadow
                .iter()
                .filter(|shadow| shadow.outcome != decision.outcome)
                .map(|shadow| ShadowNote {
                    policy: shadow.policy.clone(),
                    outcome: shadow.outcome,
                })
                .collect(),
            rules_revision: decision.rules_revision.clone(),
            evaluated_at: decision.evaluated_at,
        }
    }

    fn title(&self) -> String {
        let stage = if self.stage == Stage::PostApproval.as_str() {
            " (post-approval)"
        } else {
            ""
        };
        format!("pimgate: {} {}{stage}", self.outcome.as_str(), self.role)
    }

    /// Label and value of each fact a reviewer reads, in reading order.
    fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = vec![
            ("Outcome", self.outcome.as_str().to_string()),
            ("Principal", self.principal_id.clone()),
            ("Role", self.role.clone()),
            ("Scope", self.scope.clone()),
            (
                "Policy",
                self.policy.clone().unwrap_or_else(|| "(none)".into()),
            ),
            ("Stage", self.stage.to_string()),
        ];
        if let Some(tier) = self.tier {
            facts.push(("Tier", tier.as_str().to_string()));
        }
        facts.push((
            "Justification",
            self.justification
                .clone()
                .unwrap_or_else(|| "(not shown)".into()),
        ));
        facts.push(("Evaluation id", self.evaluation_id.to_string()));
        facts
    }

    fn shadow_line(&self) -> Option<String> {
        if self.shadow_disagreements.is_empty() {
            return None;
        }
        let notes: Vec<String> = self
            .shadow_disagreements
            .iter()
            .map(|note| format!("{} would answer {}", note.policy, note.outcome.as_str()))
            .collect();
        Some(format!(
            "Audit-mode policies disagree: {}",
            notes.join("; ")
        ))
    }
}

/// The JSON body for a target of `kind`.
pub fn render(kind: NotifyKind, event: &Event) -> Value {
    match kind {
        NotifyKind::Teams => teams_message(event),
        NotifyKind::Slack => slack_message(event),
        NotifyKind::Webhook => serde_json::to_value(event).unwrap_or(Value::Null),
    }
}

/// The body a Teams Workflows webhook ("Send webhook alerts to a channel") posts: a message whose
/// one attachment is an Adaptive Card (1.4, the version Teams renders everywhere).
pub fn teams_message(event: &Event) -> Value {
    let facts: Vec<Value> = event
        .facts()
        .into_iter()
        .map(|(title, value)| json!({ "title": title, "value": value }))
        .collect();
    let color = match event.outcome {
        Outcome::Denied => "Attention",
        Outcome::AutoApproved => "Warning",
        Outcome::Approved => "Good",
    };
    let mut body = vec![
        json!({
            "type": "TextBlock",
            "text": event.title(),
            "size": "Medium",
            "weight": "Bolder",
            "color": color,
            "wrap": true
        }),
        json!({ "type": "FactSet", "facts": facts }),
    ];
    if !event.reasons.is_empty() {
        body.push(json!({
            "type": "TextBlock",
            "text": event.reasons.join("\n\n"),
            "wrap": true
        }));
    }
    if let Some(line) = event.shadow_line() {
        body.push(json!({ "type": "TextBlock", "text": line, "wrap": true, "isSubtle": true }));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "msteams": { "width": "Full" }
            }
        }]
    })
}

/// Slack's limits: a header's text, a section's text, one field's text (characters).
const SLACK_HEADER_CHARS: usize = 150;
const SLACK_SECTION_CHARS: usize = 3000;
const SLACK_FIELD_CHARS: usize = 2000;
/// A section holds at most ten fields.
const SLACK_MAX_FIELDS: usize = 10;

/// A Slack incoming-webhook body: `text` (the notification's fallback) and Block Kit `blocks`.
/// Every text from the request is escaped, so a justification cannot mention `<!channel>`.
pub fn slack_message(event: &Event) -> Value {
    let fields: Vec<Value> = event
        .facts()
        .into_iter()
        .take(SLACK_MAX_FIELDS)
        .map(|(label, value)| {
            json!({
                "type": "mrkdwn",
                "text": clip(&format!("*{label}*\n{}", slack_escape(&value)), SLACK_FIELD_CHARS)
            })
        })
        .collect();
    let title = event.title();
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": { "type": "plain_text", "text": clip(&title, SLACK_HEADER_CHARS) }
        }),
        json!({ "type": "section", "fields": fields }),
    ];
    if !event.reasons.is_empty() {
        let reasons: Vec<String> = event
            .reasons
            .iter()
            .map(|reason| format!("• {}", slack_escape(reason)))
            .collect();
        blocks.push(json!({
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": clip(&format!("*Reasons*\n{}", reasons.join("\n")), SLACK_SECTION_CHARS)
            }
        }));
    }
    let mut context = format!(
        "rules {} · evaluated {}",
        slack_escape(&event.rules_revision),
        event.evaluated_at.to_rfc3339()
    );
    if let Some(line) = event.shadow_line() {
        context = format!("{} · {context}", slack_escape(&line));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": clip(&context, SLACK_SECTION_CHARS) }]
    }));
    json!({ "text": clip(&title, SLACK_SECTION_CHARS), "blocks": blocks })
}

/// Slack reads `&`, `<` and `>` as markup (`<!channel>` pings a whole channel).
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `limit` characters, the last one `…` when cut.
fn clip(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut kept: String = text.chars().take(limit.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::ShadowDecision;

    fn event() -> Event {
        Event {
            event_type: EVENT_TYPE,
            evaluation_id: Uuid::nil(),
            stage: "preApproval",
            outcome: Outcome::AutoApproved,
            policy: Some("on-call".into()),
            reasons: vec!["AutoApproved: on call <!channel>".into()],
            principal_id: "6f1d3a80-0000-4000-8000-000000000001".into(),
            role: "Global Administrator".into(),
            role_id: "62e90394-69f5-4237-9190-012177145e10".into(),
            tier: Some(Tier::Critical),
            resource_type: "entraRoles",
            action: "selfActivate".into(),
            scope: "/".into(),
            justification: Some("INC42 & <@U123>".into()),
            shadow_disagreements: Vec::new(),
            rules_revision: "abc".into(),
            evaluated_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_teams_body_is_a_message_with_one_adaptive_card_attachment() {
        let body = teams_message(&event());
        assert_eq!(body["type"], "message");
        let attachment = &body["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &attachment["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        assert_eq!(card["body"][0]["type"], "TextBlock");
        let facts = card["body"][1]["facts"].as_array().expect("facts");
        let fact = |title: &str| {
            facts
                .iter()
                .find(|fact| fact["title"] == title)
                .map(|fact| fact["value"].clone())
        };
        assert_eq!(fact("Role"), Some(json!("Global Administrator")));
        assert_eq!(fact("Tier"), Some(json!("critical")));
        assert_eq!(
            fact("Evaluation id"),
            Some(json!("00000000-0000-0000-0000-000000000000"))
        );
    }

    #[test]
    fn slack_blocks_escape_request_text_and_respect_the_field_limit() {
        let body = slack_message(&event());
        let blocks = body["blocks"].as_array().expect("blocks");
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[1]["type"], "section");
        assert!(blocks[1]["fields"].as_array().expect("fields").len() <= SLACK_MAX_FIELDS);
        let text = body.to_string();
        assert!(
            !text.contains("<!channel>") && !text.contains("<@U123>"),
            "{text}"
        );
        assert!(text.contains("&lt;!channel&gt;"));
    }

    #[test]
    fn a_long_reason_is_clipped_to_slacks_section_limit() {
        let mut long = event();
        long.reasons = vec!["x".repeat(5000)];
        let body = slack_message(&long);
        let reasons = body["blocks"][2]["text"]["text"].as_str().expect("text");
        assert_eq!(reasons.chars().count(), SLACK_SECTION_CHARS);
        assert!(reasons.ends_with('…'));
    }

    #[test]
    fn only_disagreeing_shadow_policies_are_listed() {
        let decision = Decision {
            evaluation_id: Uuid::nil(),
            stage: Stage::PreApproval,
            outcome: Outcome::Approved,
            reasons: Vec::new(),
            policy: None,
            skipped_policies: Vec::new(),
            checks: Vec::new(),
            shadow: vec![
                ShadowDecision {
                    policy: "same".into(),
                    outcome: Outcome::Approved,
                    reasons: Vec::new(),
                    checks: Vec::new(),
                },
                ShadowDecision {
                    policy: "stricter".into(),
                    outcome: Outcome::Denied,
                    reasons: Vec::new(),
                    checks: Vec::new(),
                },
            ],
            guards: Vec::new(),
            rules_revision: "r".into(),
            evaluated_at: Utc::now(),
            duration_ms: 0.0,
        };
        let request = crate::checks::test_support::request();
        let event = Event::new(&decision, &request, None);
        assert_eq!(
            event.shadow_disagreements,
            vec![ShadowNote {
                policy: "stricter".into(),
                outcome: Outcome::Denied
            }]
        );
    }
}
