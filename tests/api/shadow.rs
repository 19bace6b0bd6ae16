//! Shadow mode over HTTP: a `mode: audit` policy changes nothing PIM sees, while the audit record and
//! `/metrics` say what it would have decided.

use serde_json::{Value, json};

use crate::helpers::{AppOptions, TestApp, spawn_app, spawn_app_with};
use crate::support::requests;

/// `TEST_RULES` with a rehearsal of a stricter duration limit in front of them.
const SHADOW_RULES: &str = r#"
policies:
  - name: one-hour-rehearsal
    mode: audit
    match: { resource_types: [entraRoles] }
    require:
      - duration: { max: PT1H }
  - name: groups-need-a-human
    match: { resource_types: [entraGroups] }
    decide: Approved
    reason: group membership goes to the group owners for approval.
  - name: azure-denied-here
    match: { resource_types: [azureResources] }
    decide: Denied
    reason: Azure roles are not activated through this test tenant.
  - name: entra-short-activations
    match: { resource_types: [entraRoles] }
    require:
      - duration: { max: PT4H }
"#;

async fn answer(app: &TestApp, body: &Value) -> Value {
    let response = app.evaluate(body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn scrape(app: &TestApp) -> String {
    let response = app
        .client
        .get(format!("{}/metrics", app.admin_address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_shadow_policy_leaves_the_answer_unchanged_and_is_audited_and_counted() {
    let plain = spawn_app().await;
    let shadowed = spawn_app_with(AppOptions {
        rules: SHADOW_RULES,
        ..AppOptions::default()
    })
    .await;
    // The sample asks for PT2H: the enforcing policy approves, the rehearsal would deny.
    let body = requests::entra_role("7b000000-0000-4000-8000-00000000a0d1");

    let without = answer(&plain, &body).await;
    let with = answer(&shadowed, &body).await;
    assert_eq!(with["evaluationOutcome"], "Approved", "{with}");
    assert_eq!(with["evaluationOutcome"], without["evaluationOutcome"]);
    assert_eq!(with["reason"], without["reason"]);
    let mut keys: Vec<&String> = with.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["evaluationId", "evaluationOutcome", "reason"],
        "nothing about shadows reaches PIM"
    );

    let records = shadowed.audit_records();
    let record = records.last().expect("an audit record");
    assert_eq!(record["policy"], "entra-short-activations");
    assert_eq!(record["outcome"], "Approved");
    let shadow = &record["shadowDecisions"][0];
    assert_eq!(shadow["policy"], "one-hour-rehearsal", "{record}");
    assert_eq!(shadow["outcome"], "Denied", "{record}");
    assert!(
        shadow["reasons"][0].as_str().unwrap().contains("PT1H"),
        "{record}"
    );
    assert_eq!(shadow["checks"][0]["kind"], "duration", "{record}");
    let plain_records = plain.audit_records();
    assert_eq!(
        plain_records.last().expect("an audit record")["shadowDecisions"],
        json!([])
    );

    let metrics = scrape(&shadowed).await;
    let counted = metrics.lines().any(|line| {
        line.starts_with("pimgate_shadow_decisions_total{")
            && line.contains("policy=\"one-hour-rehearsal\"")
            && line.contains("outcome=\"Denied\"")
    });
    assert!(counted, "no shadow counter in:\n{metrics}");
}
