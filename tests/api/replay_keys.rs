//! One answer per request, wherever it lands: a redelivery of the same request (same content, same
//! stage, same rules) gets the same `evaluationId` from any replica, after a restart and after its
//! stored answer expired; a request that differs in anything that can change the decision is judged
//! on its own, even when it reuses another request's id.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::helpers::{AppOptions, TestApp, spawn_app, spawn_app_with};
use crate::support::requests::{self, AZURE_RESOURCE, ENTRA_ROLE};

const SANDBOX: &str =
    "/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d/resourceGroups/rg-sandbox";
const PRODUCTION: &str =
    "/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d/resourceGroups/rg-payments-prod";

/// Azure roles: the sandbox resource group goes to its approvers, everything else is denied.
const SCOPE_RULES: &str = r#"
policies:
  - name: sandbox-goes-to-approvers
    match:
      resource_types: [azureResources]
      scopes: ["/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d/resourceGroups/rg-sandbox"]
    decide: Approved
    reason: the sandbox resource group goes to its approvers.
  - name: production-is-denied
    match: { resource_types: [azureResources] }
    decide: Denied
    reason: production Azure roles are not activated through PIM here.
"#;

/// An ARM request named by its caller (`name`), at `scope`.
fn azure_request_at(scope: &str) -> Value {
    let mut body = requests::sample("azure-resource-named.json");
    body["properties"]["scope"] = json!(scope);
    body
}

async fn answer(app: &TestApp, body: &Value) -> Value {
    let response = app.evaluate(body).await;
    assert_eq!(response.status(), 200, "{body}");
    response.json().await.unwrap()
}

/// POSTs `text` exactly as given (whitespace and key order included).
async fn answer_text(app: &TestApp, text: &str) -> Value {
    let response = app
        .post_raw(
            text.to_string(),
            Some(&app.token()),
            Some("application/json"),
        )
        .await;
    assert_eq!(response.status(), 200, "{text}");
    response.json().await.unwrap()
}

/// Microsoft's Azure example has no `id` and no `name`: the same body, once compact and once
/// pretty-printed with its keys in reverse order.
fn the_same_unnamed_azure_request_written_twice() -> (String, String) {
    let body = requests::sample(AZURE_RESOURCE);
    assert!(body.get("id").is_none() && body.get("name").is_none());
    (body.to_string(), reversed_pretty(&body, 0))
}

fn reversed_pretty(value: &Value, depth: usize) -> String {
    let indent = "  ".repeat(depth + 1);
    match value {
        Value::Object(object) => {
            let members: Vec<String> = object
                .iter()
                .rev()
                .map(|(key, value)| {
                    format!(
                        "{indent}{} :\t{}",
                        json!(key),
                        reversed_pretty(value, depth + 1)
                    )
                })
                .collect();
            format!("{{\n{}\n{}}}", members.join(",\n"), "  ".repeat(depth))
        }
        other => other.to_string(),
    }
}

#[tokio::test]
async fn an_azure_request_name_reused_at_a_production_scope_is_judged_for_production() {
    let app = spawn_app_with(AppOptions {
        rules: SCOPE_RULES,
        ..AppOptions::default()
    })
    .await;
    let sandbox = answer(&app, &azure_request_at(SANDBOX)).await;
    assert_eq!(sandbox["evaluationOutcome"], "Approved", "{sandbox}");

    // The ARM caller chooses the request name: the same name, now at a production scope.
    let production = answer(&app, &azure_request_at(PRODUCTION)).await;
    assert_eq!(
        production["evaluationOutcome"], "Denied",
        "the sandbox's stored answer must not stand in for production: {production}"
    );
    assert_ne!(production["evaluationId"], sandbox["evaluationId"]);

    let records = app.audit_records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["policy"], "sandbox-goes-to-approvers");
    assert_eq!(records[1]["policy"], "production-is-denied");
    assert_eq!(records[1]["replay"], false, "{}", records[1]);
    assert_eq!(records[1]["evaluationId"], production["evaluationId"]);
}

/// `(what changes, fixture, change)`: every change keeps the request's `id` (or ARM `name`).
type Change = (&'static str, &'static str, fn(&mut Value));

fn changes() -> Vec<Change> {
    vec![
        ("principal", "entra-role-activation.json", |body| {
            body["principalId"] = json!("99999999-8888-4777-8666-555555555555")
        }),
        ("Entra role", "entra-role-activation.json", |body| {
            body["roleDefinitionId"] = json!("194ae4cb-b126-40b2-bd5b-6091b380977d")
        }),
        ("directoryScopeId", "entra-role-activation.json", |body| {
            body["directoryScopeId"] =
                json!("/administrativeUnits/4b6c2f1e-0d9a-4c3b-8e7f-6a5b4c3d2e1f")
        }),
        ("appScopeId", "entra-role-activation.json", |body| {
            body["appScopeId"] = json!("/")
        }),
        ("action", "entra-role-activation.json", |body| {
            body["action"] = json!("selfExtend")
        }),
        ("start", "entra-role-activation.json", |body| {
            body["scheduleInfo"]["startDateTime"] = json!("2026-11-23T09:31:00Z")
        }),
        ("expiration kind", "entra-role-activation.json", |body| {
            body["scheduleInfo"]["expiration"] = json!({ "type": "noExpiration" })
        }),
        ("duration", "entra-role-activation.json", |body| {
            body["scheduleInfo"]["expiration"]["duration"] = json!("PT3H")
        }),
        ("ticket number", "entra-role-activation.json", |body| {
            body["ticketInfo"]["ticketNumber"] = json!("CHG0031338")
        }),
        ("ticket system", "entra-role-activation.json", |body| {
            body["ticketInfo"]["ticketSystem"] = json!("Jira")
        }),
        ("justification", "entra-role-activation.json", |body| {
            body["justification"] = json!("Rotate the tenant-wide break-glass credential, later")
        }),
        ("group", "group-activation.json", |body| {
            body["groupId"] = json!("8d3f5b01-2c4e-4a6f-9b7c-0d1e2f3a4b5c")
        }),
        ("group accessId", "group-activation.json", |body| {
            body["accessId"] = json!("owner")
        }),
        ("Azure scope", "azure-resource-named.json", |body| {
            body["properties"]["scope"] = json!(PRODUCTION)
        }),
        ("Azure role", "azure-resource-named.json", |body| {
            body["properties"]["roleDefinitionId"] = json!(
                "/subscriptions/3f2b1c0d-9e8f-4a7b-6c5d-4e3f2a1b0c9d/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"
            )
        }),
        ("Azure principalType", "azure-resource-named.json", |body| {
            body["properties"]["principalType"] = json!("Group")
        }),
        ("end", "azure-resource-named.json", |body| {
            body["properties"]["scheduleInfo"]["expiration"]["endDateTime"] =
                json!("2026-11-24T12:30:00+01:00")
        }),
    ]
}

#[tokio::test]
async fn a_request_that_differs_in_any_field_that_can_change_the_decision_is_evaluated_anew() {
    let app = spawn_app().await;
    let mut originals = std::collections::HashMap::new();
    for file in [
        "entra-role-activation.json",
        "group-activation.json",
        "azure-resource-named.json",
    ] {
        originals.insert(file, answer(&app, &requests::sample(file)).await);
    }
    for (what, file, change) in changes() {
        let mut body = requests::sample(file);
        change(&mut body);
        let changed = answer(&app, &body).await;
        assert_ne!(
            changed["evaluationId"], originals[file]["evaluationId"],
            "a request with another {what} reused the stored answer of {file}"
        );
        let record = app.audit_records().pop().unwrap();
        assert_eq!(record["evaluationId"], changed["evaluationId"], "{what}");
        assert_eq!(
            record["replay"], false,
            "a request with another {what} was answered from memory"
        );
    }
}

#[tokio::test]
async fn two_replicas_and_a_restarted_one_give_a_redelivery_the_same_evaluation_id() {
    let first = spawn_app().await;
    let second = spawn_app().await;
    let request = requests::sample(ENTRA_ROLE);
    let (compact, reordered) = the_same_unnamed_azure_request_written_twice();

    let on_first = answer(&first, &request).await;
    let on_second = answer(&second, &request).await;
    assert_eq!(
        on_first, on_second,
        "same delivery, same answer on both replicas"
    );
    let unnamed_on_first = answer_text(&first, &compact).await;
    let unnamed_on_second = answer_text(&second, &reordered).await;
    assert_eq!(unnamed_on_first, unnamed_on_second);
    assert_ne!(unnamed_on_first["evaluationId"], on_first["evaluationId"]);

    // A restart: a replica with nothing in memory, started after the first answers.
    let restarted = spawn_app().await;
    assert_eq!(answer(&restarted, &request).await, on_first);
    assert_eq!(answer_text(&restarted, &compact).await, unnamed_on_first);
    for app in [&first, &second, &restarted] {
        assert!(
            app.audit_records()
                .iter()
                .all(|record| record["replay"] == false),
            "each replica evaluated the requests itself"
        );
    }

    // Anything that can change the decision changes the id, on every replica.
    let mut other_scope: Value = serde_json::from_str(&compact).unwrap();
    other_scope["properties"]["scope"] = json!(PRODUCTION);
    let mut other_justification = request.clone();
    other_justification["justification"] = json!("Another reason entirely, CHG0031337");
    assert_ne!(
        answer(&second, &other_scope).await["evaluationId"],
        unnamed_on_first["evaluationId"]
    );
    assert_ne!(
        answer(&restarted, &other_justification).await["evaluationId"],
        on_first["evaluationId"]
    );
}

#[tokio::test]
async fn a_redelivery_is_answered_from_memory_and_both_audit_records_say_which_is_which() {
    let app = spawn_app().await;
    let (compact, reordered) = the_same_unnamed_azure_request_written_twice();
    let first = answer_text(&app, &compact).await;
    let again = answer_text(&app, &reordered).await;
    assert_eq!(
        first, again,
        "whitespace and key order do not make a new request"
    );

    let records = app.audit_records();
    assert_eq!(records.len(), 2, "every answer is audited");
    assert_eq!(records[0]["replay"], false, "{}", records[0]);
    assert_eq!(records[1]["replay"], true, "{}", records[1]);
    for record in &records {
        assert_eq!(record["evaluationId"], first["evaluationId"]);
        assert_eq!(record["outcome"], first["evaluationOutcome"]);
        assert_eq!(record["policy"], "azure-denied-here");
    }
}

#[tokio::test]
async fn with_its_stored_answer_expired_the_same_request_is_evaluated_again_under_the_same_id() {
    let app = spawn_app_with(AppOptions {
        tweak: Box::new(|settings| settings.server.idempotency_ttl_seconds = 1),
        ..AppOptions::default()
    })
    .await;
    let request = requests::sample(ENTRA_ROLE);
    let first = answer(&app, &request).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let again = answer(&app, &request).await;
    assert_eq!(again["evaluationId"], first["evaluationId"]);

    let records = app.audit_records();
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(
            record["replay"], false,
            "re-evaluated, not replayed: {record}"
        );
        assert_eq!(record["evaluationId"], first["evaluationId"]);
        assert_eq!(record["checks"][0]["kind"], "duration", "{record}");
    }
}

#[tokio::test]
async fn the_service_answers_the_evaluation_id_that_pimgate_evaluate_derives() {
    let app = spawn_app().await;
    let rules = pimgate::rules::load(&app.rules_path).unwrap();
    for file in [
        "entra-role-activation.json",
        "group-activation.json",
        "azure-resource-activation.json",
    ] {
        let body = requests::sample(file);
        let served = answer(&app, &body).await;
        let request = pimgate::payload::decode(body.to_string().as_bytes()).unwrap();
        let offline =
            pimgate::decision::evaluate(&rules, &request, Utc::now(), Duration::from_secs(1)).await;
        assert_eq!(
            served["evaluationId"],
            offline.evaluation_id.to_string(),
            "{file}"
        );
    }
}

const VERSION_A: &str = r#"
policies:
  - name: version-a
    match: { resource_types: [entraRoles] }
    decide: Approved
    reason: version a of the rules sends this to an approver.
"#;

const VERSION_B: &str = r#"
policies:
  - name: version-b
    match: { resource_types: [entraRoles] }
    decide: Denied
    reason: version b denies it.
"#;

#[tokio::test]
async fn a_redelivery_after_the_rules_changed_is_judged_by_the_new_rules_under_a_new_id() {
    let app = spawn_app_with(AppOptions {
        rules: VERSION_A,
        tweak: Box::new(|settings| settings.rules.reload_interval_seconds = 1),
        ..AppOptions::default()
    })
    .await;
    let request = requests::sample(ENTRA_ROLE);
    let before = answer(&app, &request).await;
    assert_eq!(before["evaluationOutcome"], "Approved");

    let staging = app.rules_path.with_extension("staging");
    std::fs::write(&staging, VERSION_B).unwrap();
    std::fs::rename(&staging, &app.rules_path).unwrap();
    let started = std::time::Instant::now();
    let after = loop {
        let after = answer(&app, &request).await;
        if after["evaluationOutcome"] == "Denied" {
            break after;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the redelivery kept the answer of the old rules: {after}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(after["evaluationId"], before["evaluationId"]);
    let record = app.audit_records().pop().unwrap();
    assert_eq!(record["replay"], false);
    assert_eq!(record["policy"], "version-b");
}

/// The fields of an audit record that describe the request and its answer (not the delivery: its
/// time, latency, HTTP request id and whether it was a replay).
fn described(record: &Value) -> Value {
    let mut record = record.clone();
    let object = record.as_object_mut().unwrap();
    for delivery in [
        "time",
        "latencyMs",
        "httpRequestId",
        "replay",
        "checks",
        "facts",
        "skippedPolicies",
        "shadow",
        "guards",
    ] {
        object.remove(delivery);
    }
    record
}

#[tokio::test]
async fn every_copy_of_a_retried_delivery_gets_the_first_answer_and_a_record_of_the_same_request() {
    let app = spawn_app().await;
    let text = requests::sample(ENTRA_ROLE).to_string();
    // The second copy is recognised after decoding; from the third on, by its bytes.
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(answer_text(&app, &text).await);
    }
    assert!(
        answers.iter().all(|answer| *answer == answers[0]),
        "{answers:?}"
    );

    let records = app.audit_records();
    assert_eq!(records.len(), 4, "every copy is audited");
    assert_eq!(records[0]["replay"], false);
    for record in &records[1..] {
        assert_eq!(record["replay"], true, "{record}");
        assert_eq!(
            described(record),
            described(&records[0]),
            "a copy's record describes the request the first one did"
        );
    }
    assert_eq!(
        records[0]["principalId"],
        json!(requests::sample(ENTRA_ROLE)["principalId"])
    );

    // One byte of difference is another delivery: decoded, and here the same request.
    let spaced = format!("{text} ");
    assert_eq!(answer_text(&app, &spaced).await, answers[0]);
    // A copy with another justification is another request, however often the first was sent.
    let mut other: Value = serde_json::from_str(&text).unwrap();
    other["justification"] = json!("Another reason entirely, CHG0031337");
    let other = answer(&app, &other).await;
    assert_ne!(other["evaluationId"], answers[0]["evaluationId"]);
    assert_eq!(app.audit_records().last().unwrap()["replay"], false);
}

#[tokio::test]
async fn the_same_bytes_sent_to_the_other_stage_are_judged_for_that_stage() {
    let app = spawn_app().await;
    let text = requests::sample(ENTRA_ROLE).to_string();
    let mut pre = Vec::new();
    for _ in 0..3 {
        pre.push(answer_text(&app, &text).await);
    }
    let response = app
        .client
        .post(format!("{}/v1/evaluate/post-approval", app.address))
        .bearer_auth(app.token())
        .header("content-type", "application/json")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let post: Value = response.json().await.unwrap();
    assert_ne!(post["evaluationId"], pre[0]["evaluationId"]);
    let record = app.audit_records().pop().unwrap();
    assert_eq!(record["replay"], false, "{record}");
    assert_eq!(record["stage"], "post_approval", "{record}");
}

#[tokio::test]
async fn a_retried_delivery_whose_answer_expired_is_evaluated_again_under_the_same_id() {
    let app = spawn_app_with(AppOptions {
        tweak: Box::new(|settings| settings.server.idempotency_ttl_seconds = 1),
        ..AppOptions::default()
    })
    .await;
    let text = requests::sample(ENTRA_ROLE).to_string();
    let first = answer_text(&app, &text).await;
    for _ in 0..2 {
        assert_eq!(answer_text(&app, &text).await, first);
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        answer_text(&app, &text).await["evaluationId"],
        first["evaluationId"]
    );
    let record = app.audit_records().pop().unwrap();
    assert_eq!(
        record["replay"], false,
        "re-evaluated, not replayed: {record}"
    );
    assert_eq!(record["checks"][0]["kind"], "duration", "{record}");
}
