//! `POST /v1/evaluate`: the three shapes, retries, and every kind of bad input.

use serde_json::{Value, json};

use crate::helpers::{AppOptions, spawn_app, spawn_app_with};
use crate::support::requests::{self, ENTRA_ROLE, GROUP};

#[tokio::test]
async fn each_resource_type_gets_the_decision_of_its_policy() {
    let app = spawn_app().await;
    let cases = [
        (
            "entra-role-activation.json",
            "Approved",
            "entra-short-activations",
        ),
        ("group-activation.json", "Approved", "groups-need-a-human"),
        (
            "azure-resource-activation.json",
            "Denied",
            "azure-denied-here",
        ),
    ];
    for (file, outcome, policy) in cases {
        let response = app.evaluate(&requests::sample(file)).await;
        assert_eq!(response.status(), 200, "{file}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{file}"
        );
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["evaluationOutcome"], outcome, "{file}: {answer}");
        let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["evaluationId", "evaluationOutcome", "reason"],
            "exactly PIM's fields"
        );
        let reasons = answer["reason"].as_array().unwrap();
        assert!(
            reasons.iter().any(|r| r.as_str().unwrap().contains(policy)),
            "{file}: {answer}"
        );
        let id = answer["evaluationId"].as_str().unwrap();
        assert_eq!(
            uuid::Uuid::parse_str(id).unwrap().get_version_num(),
            8,
            "a name-based id, derived from the request, the stage and the rules"
        );
    }
    let records = app.audit_records();
    assert_eq!(records.len(), 3, "one audit record per decision");
    assert_eq!(records[2]["policy"], "azure-denied-here");
    assert_eq!(records[2]["resourceType"], "azureResources");
    assert_eq!(records[0]["roleName"], "Global Administrator");
}

#[tokio::test]
async fn a_failing_check_denies_with_a_reason_naming_check_and_policy() {
    let app = spawn_app().await;
    let mut request = requests::sample(ENTRA_ROLE);
    request["id"] = json!("7f000000-0000-4000-8000-000000000001");
    request["scheduleInfo"]["expiration"]["duration"] = json!("PT8H");
    let answer: Value = app.evaluate(&request).await.json().await.unwrap();
    assert_eq!(answer["evaluationOutcome"], "Denied", "{answer}");
    let reason = answer["reason"][0].as_str().unwrap();
    assert!(
        reason.contains("entra-short-activations") && reason.contains("duration"),
        "{reason}"
    );
    let record = app.audit_records().pop().unwrap();
    assert_eq!(record["checks"][0]["kind"], "duration");
    assert_eq!(record["checks"][0]["status"], "fail");
    assert_eq!(record["evaluationId"], answer["evaluationId"]);
    assert!(record["rulesRevision"].as_str().unwrap().len() >= 16);
}

#[tokio::test]
async fn a_pim_retry_of_the_same_request_gets_the_identical_answer() {
    let app = spawn_app().await;
    let request = requests::sample(ENTRA_ROLE);
    let first: Value = app.evaluate(&request).await.json().await.unwrap();
    let second: Value = app.evaluate(&request).await.json().await.unwrap();
    assert_eq!(first, second, "same id, same answer, same evaluationId");

    let mut other = request.clone();
    other["id"] = json!("11111111-2222-4333-8444-555555555555");
    let third: Value = app.evaluate(&other).await.json().await.unwrap();
    assert_ne!(
        third["evaluationId"], first["evaluationId"],
        "a new request is a new evaluation"
    );

    let mut someone_else = request.clone();
    someone_else["principalId"] = json!("99999999-8888-4777-8666-555555555555");
    let fourth: Value = app.evaluate(&someone_else).await.json().await.unwrap();
    assert_ne!(
        fourth["evaluationId"], first["evaluationId"],
        "an id cannot replay another principal's answer"
    );

    let records = app.audit_records();
    assert_eq!(records.len(), 4, "every answer is audited");
    assert_eq!(records[1]["replay"], true);
    assert_eq!(records[0]["replay"], false);
    assert_eq!(records[1]["evaluationId"], records[0]["evaluationId"]);
}

#[tokio::test]
async fn concurrent_retries_share_one_evaluation() {
    let app = spawn_app().await;
    let request = requests::sample(GROUP);
    let answers = futures::future::join_all((0..8).map(|_| app.evaluate(&request))).await;
    let mut ids = std::collections::HashSet::new();
    for response in answers {
        let answer: Value = response.json().await.unwrap();
        ids.insert(answer["evaluationId"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one evaluationId for one PIM request");
}

/// (description, body, expected field in the 400 body)
fn bad_payloads() -> Vec<(&'static str, String, Option<&'static str>)> {
    let sample = requests::sample(ENTRA_ROLE);
    let with = |pointer: &str, value: Value| {
        let mut body = sample.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        body.to_string()
    };
    let without = |key: &str| {
        let mut body = sample.clone();
        body.as_object_mut().unwrap().remove(key);
        body.to_string()
    };
    vec![
        ("not JSON", "principalId=me".into(), None),
        ("truncated JSON", sample.to_string()[..40].to_string(), None),
        ("empty body", String::new(), None),
        ("a JSON array", "[1,2]".into(), None),
        ("JSON null", "null".into(), None),
        (
            "missing principalId",
            without("principalId"),
            Some("principalId"),
        ),
        (
            "principalId is a number",
            with("/principalId", json!(42)),
            Some("principalId"),
        ),
        (
            "principalId is not a GUID",
            with("/principalId", json!("alice")),
            Some("principalId"),
        ),
        ("missing action", without("action"), Some("action")),
        (
            "roleDefinitionId not a GUID",
            with("/roleDefinitionId", json!("Global Administrator")),
            Some("roleDefinitionId"),
        ),
        (
            "justification is an object",
            with("/justification", json!({"text": "x"})),
            Some("justification"),
        ),
        (
            "ticketInfo is a string",
            with("/ticketInfo", json!("CHG1")),
            Some("ticketInfo"),
        ),
        (
            "duration is not ISO-8601",
            with("/scheduleInfo/expiration/duration", json!("8 hours")),
            Some("scheduleInfo.expiration.duration"),
        ),
        (
            "startDateTime is not a date",
            with("/scheduleInfo/startDateTime", json!("tomorrow")),
            Some("scheduleInfo.startDateTime"),
        ),
        (
            "scheduleInfo missing on activation",
            without("scheduleInfo"),
            Some("scheduleInfo"),
        ),
    ]
}

#[tokio::test]
async fn bad_payloads_get_a_400_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    let token = app.token();
    for (description, body, field) in bad_payloads() {
        let response = app
            .post_raw(body, Some(&token), Some("application/json"))
            .await;
        assert_eq!(response.status(), 400, "{description}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "invalid_request", "{description}: {error}");
        assert!(
            !error["detail"].as_str().unwrap().is_empty(),
            "{description}"
        );
        if let Some(field) = field {
            assert_eq!(error["field"], field, "{description}: {error}");
            assert!(
                error["detail"].as_str().unwrap().contains(field),
                "{description}: {error}"
            );
        }
    }
    assert!(
        app.audit_records().is_empty(),
        "rejected input leaves no decision behind"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_whether_declared_or_streamed() {
    let app = spawn_app_with(AppOptions {
        tweak: Box::new(|settings| settings.server.max_body_bytes = 2048),
        ..AppOptions::default()
    })
    .await;
    let token = app.token();
    let mut big = requests::sample(ENTRA_ROLE);
    big["padding"] = json!("x".repeat(4096));
    let declared = app
        .post_raw(big.to_string(), Some(&token), Some("application/json"))
        .await;
    assert_eq!(declared.status(), 413);
    let error: Value = declared.json().await.unwrap();
    assert_eq!(error["error"], "payload_too_large");

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .to_string()
        .into_bytes()
        .chunks(512)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let response = app
        .post_raw(streamed, Some(&token), Some("application/json"))
        .await;
    assert_eq!(response.status(), 413, "chunked bodies are counted too");
    assert!(app.audit_records().is_empty());
}

#[tokio::test]
async fn non_json_content_types_get_415() {
    let app = spawn_app().await;
    let token = app.token();
    let body = requests::sample(GROUP).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
        Some("application/json; charset=latin1"),
    ] {
        let response = app.post_raw(body.clone(), Some(&token), content_type).await;
        assert_eq!(response.status(), 415, "{content_type:?}");
    }
    let ok = app
        .post_raw(body, Some(&token), Some("application/json; charset=utf-8"))
        .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn an_unauthenticated_request_is_refused_before_its_body_is_looked_at() {
    let app = spawn_app_with(AppOptions {
        tweak: Box::new(|settings| settings.server.max_body_bytes = 2048),
        ..AppOptions::default()
    })
    .await;
    let huge = "x".repeat(10_000);
    let response = app.post_raw(huge, None, Some("text/plain")).await;
    assert_eq!(response.status(), 401, "401, not 413 or 415");
}

#[tokio::test]
async fn unknown_actions_are_denied_explicitly_not_by_accident() {
    let app = spawn_app().await;
    let mut request = requests::sample(ENTRA_ROLE);
    request["action"] = json!("selfExtend");
    let answer: Value = app.evaluate(&request).await.json().await.unwrap();
    assert_eq!(answer["evaluationOutcome"], "Denied", "{answer}");
    assert!(
        answer["reason"][0].as_str().unwrap().contains("selfExtend"),
        "{answer}"
    );
}
