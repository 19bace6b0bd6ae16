//! `POST /v1/evaluate/post-approval`: PIM's second callback, after a human approved. The same token
//! checks, body shapes and answer as the pre-approval endpoint; the stage is part of the evaluation
//! (its own `evaluationId`, its own rules) and `AutoApproved` is never answered there.

use serde_json::{Value, json};

use crate::common_auth::now;
use crate::helpers::{AppOptions, TestApp, spawn_app, spawn_app_with};
use crate::support::requests::{sample as fixture, with_id};

const POST_APPROVAL: &str = "/v1/evaluate/post-approval";

/// Groups auto-approve before a human is asked; a policy written for the post-approval stage
/// re-checks Entra roles after approval; everything else is approved for humans at both stages.
const STAGED_RULES: &str = r#"
policies:
  - name: groups-skip-the-human
    match: { resource_types: [entraGroups] }
    decide: AutoApproved
    reason: group memberships in this test tenant need no approver.
  - name: roles-rechecked-after-approval
    match: { resource_types: [entraRoles], stages: [post_approval] }
    require:
      - duration: { max: PT1H }
  - name: everything-else
    decide: Approved
    reason: a human approves.
"#;

async fn post(app: &TestApp, path: &str, body: String, token: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}{path}", app.address))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request reaches the server")
}

async fn answer(app: &TestApp, path: &str, body: &Value) -> Value {
    let response = post(app, path, body.to_string(), Some(&app.token())).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_post_approval_endpoint_checks_the_token_as_the_pre_approval_one_does() {
    let app = spawn_app().await;
    let body = fixture("entra-role-activation.json").to_string();

    let missing = post(&app, POST_APPROVAL, body.clone(), None).await;
    assert_eq!(missing.status(), 401);
    assert!(
        missing
            .headers()
            .get("www-authenticate")
            .is_some_and(|value| value.to_str().unwrap().starts_with("Bearer"))
    );

    let mut expired = app.idp.v2_claims();
    expired["exp"] = json!(now() - 3600);
    expired["nbf"] = json!(now() - 7200);
    expired["iat"] = json!(now() - 7200);
    let response = post(
        &app,
        POST_APPROVAL,
        body.clone(),
        Some(&app.idp.sign(&expired)),
    )
    .await;
    assert_eq!(response.status(), 401);

    let mut stranger = app.idp.v2_claims();
    stranger["azp"] = json!("99999999-9999-4999-8999-999999999999");
    let response = post(&app, POST_APPROVAL, body, Some(&app.idp.sign(&stranger))).await;
    assert_eq!(response.status(), 401);

    assert!(
        app.audit_records().is_empty(),
        "a refused request is not an evaluation"
    );
}

#[tokio::test]
async fn the_post_approval_endpoint_decodes_bodies_as_strictly_as_the_pre_approval_one() {
    let app = spawn_app().await;
    let mut wrong_type = fixture("entra-role-activation.json");
    wrong_type["principalId"] = json!(42);
    let response = post(
        &app,
        POST_APPROVAL,
        wrong_type.to_string(),
        Some(&app.token()),
    )
    .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["detail"].as_str().unwrap().contains("principalId"),
        "{error}"
    );

    let response = post(&app, POST_APPROVAL, "{".into(), Some(&app.token())).await;
    assert_eq!(response.status(), 400);

    let response = app
        .client
        .post(format!("{}{POST_APPROVAL}", app.address))
        .bearer_auth(app.token())
        .header("content-type", "text/plain")
        .body(fixture("entra-role-activation.json").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);

    let oversized = json!({ "padding": "x".repeat(70_000) }).to_string();
    let response = post(&app, POST_APPROVAL, oversized, Some(&app.token())).await;
    assert_eq!(response.status(), 413);

    // All three shapes are understood.
    for name in [
        "entra-role-activation.json",
        "group-activation.json",
        "azure-resource-activation.json",
    ] {
        let answered = answer(&app, POST_APPROVAL, &fixture(name)).await;
        assert!(
            answered["evaluationOutcome"].is_string(),
            "{name}: {answered}"
        );
    }
}

#[tokio::test]
async fn after_approval_nothing_is_auto_approved_and_the_stage_names_its_own_evaluation() {
    let app = spawn_app_with(AppOptions {
        rules: STAGED_RULES,
        ..AppOptions::default()
    })
    .await;
    let body = with_id("group-activation.json", "req-groups-1");

    let before = answer(&app, "/v1/evaluate", &body).await;
    assert_eq!(before["evaluationOutcome"], "AutoApproved");
    let after = answer(&app, POST_APPROVAL, &body).await;
    assert_eq!(after["evaluationOutcome"], "Approved", "{after}");
    assert_ne!(before["evaluationId"], after["evaluationId"]);

    // PIM retries the post-approval call: same answer, same id, from memory.
    let again = answer(&app, POST_APPROVAL, &body).await;
    assert_eq!(again, after);

    let records = app.audit_records();
    assert_eq!(records.len(), 3);
    let stages: Vec<(&str, &str, bool)> = records
        .iter()
        .map(|record| {
            (
                record["stage"].as_str().unwrap(),
                record["outcome"].as_str().unwrap(),
                record["replay"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("pre_approval", "AutoApproved", false),
            ("post_approval", "Approved", false),
            ("post_approval", "Approved", true),
        ]
    );
    assert_eq!(records[1]["evaluationId"], after["evaluationId"]);
}

#[tokio::test]
async fn a_policy_written_for_post_approval_decides_only_there() {
    let app = spawn_app_with(AppOptions {
        rules: STAGED_RULES,
        ..AppOptions::default()
    })
    .await;
    // The fixture asks for two hours: fine for a human before approval, too long for the re-check.
    let body = with_id("entra-role-activation.json", "req-role-1");
    let before = answer(&app, "/v1/evaluate", &body).await;
    assert_eq!(before["evaluationOutcome"], "Approved");
    let after = answer(&app, POST_APPROVAL, &body).await;
    assert_eq!(after["evaluationOutcome"], "Denied", "{after}");
    let reasons = after["reason"].to_string();
    assert!(
        reasons.contains("roles-rechecked-after-approval"),
        "{reasons}"
    );

    let records = app.audit_records();
    assert_eq!(records[0]["policy"], "everything-else");
    assert_eq!(records[1]["policy"], "roles-rechecked-after-approval");
    let passed_over = records[0]["skippedPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|skipped| skipped["policy"] == "roles-rechecked-after-approval")
        .unwrap_or_else(|| panic!("not passed over: {}", records[0]));
    assert_eq!(passed_over["why"], "stage does not match");
}

#[tokio::test]
async fn decisions_are_counted_per_stage_on_the_admin_listener() {
    // The metrics registry is the process's: a policy name of its own keeps other tests' counts out.
    let app = spawn_app_with(AppOptions {
        rules: "policies:\n  - name: counted-per-stage\n    decide: Approved\n    reason: ok\n",
        ..AppOptions::default()
    })
    .await;
    answer(
        &app,
        POST_APPROVAL,
        &with_id("group-activation.json", "req-metrics"),
    )
    .await;
    let metrics = app
        .client
        .get(format!("{}/metrics", app.admin_address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|line| {
            line.starts_with("pimgate_decisions_total{")
                && line.contains("stage=\"post_approval\"")
                && line.contains("policy=\"counted-per-stage\"")
        })
        .unwrap_or_else(|| panic!("no post-approval decision counted:\n{metrics}"));
    assert!(line.contains("outcome=\"Approved\""), "{line}");
    assert!(line.ends_with(" 1"), "{line}");
}
