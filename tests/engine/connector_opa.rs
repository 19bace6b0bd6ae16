//! The `opa` check against a stand-in on loopback that speaks OPA's data API as documented
//! (`POST /v1/data/{path}` with `{"input": ...}` → `{"result": ..., "decision_id": ...}`, an
//! undefined document as `{}`, errors as `{"code", "message"}`). No OPA server installs from the
//! registries this project reaches, so the stand-in answers OPA's shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pimgate::checks::registry::{BuildEnv, CheckSpec};
use pimgate::checks::{Check, CheckContext, CheckOutcome, CheckStatus};
use pimgate::connectors::opa::OpaSettings;
use pimgate::connectors::secrets::SecretRef;
use pimgate::connectors::{BuildContext, Connectors, ConnectorsSettings};
use pimgate::payload::{
    Action, ActivationRequest, ExpirationKind, ResourceType, Schedule, Stage, Target,
};
use pimgate::vocabulary::diagnostic::Diagnostic;
use pimgate::vocabulary::disclosure::Disclosure;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ALICE: &str = "5b2a9c1e-2222-4d3e-8f40-1a2b3c4d5e6f";
const ROLE: &str = "62e90394-69f5-4237-9190-012177145e10";
const TOKEN: &str = "opa-test-token-not-a-real-one";
const DECISION: &str = "4ca636c1-55e4-417a-b1d8-4aceb67960d1";
const JUSTIFICATION: &str = "CHG0031337: rotate the signing certificate";

fn context() -> BuildContext {
    BuildContext {
        http: reqwest::Client::new(),
        tenant_id: "11111111-2222-4333-8444-555555555555".to_string(),
    }
}

fn settings(base_url: &str, dir: &std::path::Path, justification: Disclosure) -> OpaSettings {
    let token = dir.join("opa-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    OpaSettings {
        base_url: Some(base_url.to_string()),
        timeout_ms: 300,
        bearer: Some(SecretRef {
            env: None,
            file: Some(token),
        }),
        justification,
        ..OpaSettings::default()
    }
}

fn connectors_with(
    server: &MockServer,
    dir: &std::path::Path,
    justification: Disclosure,
) -> Arc<Connectors> {
    let mut all = ConnectorsSettings::default();
    all.opa.insert(
        "main".to_string(),
        settings(&server.uri(), dir, justification),
    );
    Connectors::build(&all, &context()).unwrap()
}

fn build_spec(connectors: &Arc<Connectors>, yaml: &str) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let spec: CheckSpec = yaml_serde::from_str(yaml).unwrap();
    assert_eq!(spec.kind(), "opa");
    assert_eq!(spec.required_connector(), Some("opa"));
    let (lists, windows) = (BTreeMap::new(), BTreeMap::new());
    spec.build(&BuildEnv {
        lists: &lists,
        windows: &windows,
        connectors,
    })
    .map(|named| named.check)
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T18:05:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn request() -> ActivationRequest {
    ActivationRequest {
        request_id: Some("req-1".to_string()),
        resource_type: ResourceType::EntraRoles,
        principal_id: ALICE.to_string(),
        principal_type: Some("User".to_string()),
        action: Action::SelfActivate,
        target: Target::EntraRole {
            role_definition_id: ROLE.to_string(),
            directory_scope_id: "/".to_string(),
            app_scope_id: None,
        },
        justification: Some(JUSTIFICATION.to_string()),
        ticket: None,
        schedule: Schedule {
            start: None,
            expiration_kind: ExpirationKind::AfterDuration,
            duration: Some(chrono::Duration::hours(1)),
            end: None,
        },
    }
}

async fn evaluate(check: &Arc<dyn Check>, stage: Stage) -> CheckOutcome {
    let request = request();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    check
        .evaluate(&CheckContext::new(&request, now(), deadline).at_stage(stage))
        .await
}

/// A stand-in OPA answering `POST /v1/data/pim/allow` with `response`, only for the bearer token.
async fn opa_answering(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/data/pim/allow"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

/// Runs `- opa: { connector: main, path: pim/allow }` against an OPA answering `response`.
async fn outcome_for(response: ResponseTemplate) -> CheckOutcome {
    let server = opa_answering(response).await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = connectors_with(&server, dir.path(), Disclosure::Full);
    let check = build_spec(&connectors, "opa: { connector: main, path: pim/allow }").unwrap();
    evaluate(&check, Stage::PreApproval).await
}

fn answer(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

#[tokio::test]
async fn opa_is_asked_for_the_document_with_the_request_as_input_and_true_passes() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/data/pim/allow"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(body_partial_json(json!({ "input": {
            "stage": "post_approval",
            "principalId": ALICE,
            "target": { "roleDefinitionId": ROLE },
            "justification": JUSTIFICATION,
        }})))
        .respond_with(answer(json!({ "result": true, "decision_id": DECISION })))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = connectors_with(&server, dir.path(), Disclosure::Full);
    let check = build_spec(&connectors, "opa: { connector: main, path: pim/allow }").unwrap();

    let outcome = evaluate(&check, Stage::PostApproval).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
    assert_eq!(outcome.message, "the OPA policy `pim/allow` allows");
    assert_eq!(outcome.evidence["decision_id"], DECISION);
    assert_eq!(outcome.evidence["path"], "pim/allow");
    assert_eq!(outcome.evidence["connector"], "main");
    let calls = outcome.evidence["upstream"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["operation"], "POST /v1/data/pim/allow");
    assert_eq!(calls[0]["connector"], "opa.main");
    assert_eq!(calls[0]["outcome"], "ok");
    assert_eq!(outcome.holds_at, Some(now()));
    // The body is exactly `{"input": <document>}`, nothing beside it.
    let received = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["input"]);
    assert_eq!(body["input"]["version"], "pimgate.activation.v1");
    assert!(body["input"]["activation"]["start"].is_string());
}

#[tokio::test]
async fn false_fails_naming_the_policy() {
    let outcome = outcome_for(answer(json!({ "result": false, "decision_id": DECISION }))).await;
    assert_eq!(outcome.status, CheckStatus::Fail, "{outcome:?}");
    assert_eq!(outcome.message, "the OPA policy `pim/allow` denies");
    assert_eq!(outcome.evidence["decision_id"], DECISION);
}

#[tokio::test]
async fn an_allow_object_that_denies_fails_with_its_reasons_cleaned() {
    let outcome = outcome_for(answer(json!({
        "result": { "allow": false, "reasons": ["security training expired", "no\nline\u{1b}[31mbreaks"] },
        "decision_id": DECISION,
    })))
    .await;
    assert_eq!(outcome.status, CheckStatus::Fail, "{outcome:?}");
    assert!(
        outcome
            .message
            .starts_with("the OPA policy `pim/allow` denies: security training expired; no line"),
        "{}",
        outcome.message
    );
    assert!(!outcome.message.chars().any(char::is_control));
    assert_eq!(outcome.evidence["reasons"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn an_allow_object_that_allows_passes() {
    let outcome = outcome_for(answer(json!({ "result": { "allow": true } }))).await;
    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
    assert!(outcome.evidence["decision_id"].is_null());
}

#[tokio::test]
async fn no_other_answer_is_ever_a_pass() {
    let huge = format!(
        "{{\"result\": true, \"pad\": \"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let cases: Vec<(&str, ResponseTemplate)> = vec![
        ("undefined document", answer(json!({ "decision_id": DECISION }))),
        ("empty object", answer(json!({}))),
        ("string result", answer(json!({ "result": "yes" }))),
        ("number result", answer(json!({ "result": 1 }))),
        ("null result", answer(json!({ "result": null }))),
        ("no allow", answer(json!({ "result": { "reasons": ["ok"] } }))),
        ("string allow", answer(json!({ "result": { "allow": "true" } }))),
        (
            "reasons not text",
            answer(json!({ "result": { "allow": true, "reasons": [{"x": 1}] } })),
        ),
        (
            "bad decision id",
            answer(json!({ "result": true, "decision_id": 42 })),
        ),
        (
            "OPA error",
            ResponseTemplate::new(500).set_body_json(json!({
                "code": "internal_error",
                "message": "1 error occurred: policy.rego:7: eval_conflict_error: complete rules must not produce multiple outputs",
            })),
        ),
        (
            "bad request",
            ResponseTemplate::new(400).set_body_json(json!({
                "code": "invalid_parameter",
                "message": "body contains malformed input document",
            })),
        ),
        ("not found", ResponseTemplate::new(404)),
        (
            "unauthorized",
            ResponseTemplate::new(401).set_body_json(json!({
                "code": "unauthorized",
                "message": "the requested operation is not authorized",
            })),
        ),
        (
            "garbage",
            ResponseTemplate::new(200).set_body_string("<html>proxy error</html>"),
        ),
        (
            "huge body",
            ResponseTemplate::new(200)
                .set_body_raw(huge.into_bytes(), "application/json"),
        ),
        (
            "timeout",
            answer(json!({ "result": true })).set_delay(Duration::from_secs(3)),
        ),
    ];
    for (name, response) in cases {
        let outcome = outcome_for(response).await;
        assert_eq!(outcome.status, CheckStatus::Error, "{name}: {outcome:?}");
        assert!(
            outcome.message.contains("could not be evaluated"),
            "{name}: {}",
            outcome.message
        );
        assert!(!outcome.message.contains("127.0.0.1"), "{name}");
        assert!(!outcome.message.contains("eval_conflict"), "{name}");
        assert_eq!(outcome.evidence["path"], "pim/allow", "{name}");
    }
}

#[tokio::test]
async fn a_connector_that_omits_the_justification_sends_none() {
    let server = opa_answering(answer(json!({ "result": true }))).await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = connectors_with(&server, dir.path(), Disclosure::Omit);
    let check = build_spec(&connectors, "opa: { connector: main, path: pim/allow }").unwrap();

    let outcome = evaluate(&check, Stage::PreApproval).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
    let received = server.received_requests().await.unwrap();
    let body = String::from_utf8_lossy(&received[0].body).to_string();
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert!(sent["input"]["justification"].is_null(), "{body}");
    assert!(!body.contains("rotate the signing"), "{body}");
    assert_eq!(sent["input"]["stage"], "pre_approval");
}

#[test]
fn plain_http_to_a_host_that_is_not_loopback_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = ConnectorsSettings::default();
    all.opa.insert(
        "main".to_string(),
        settings(
            "http://opa.contoso.example:8181",
            dir.path(),
            Disclosure::Full,
        ),
    );
    let problems = Connectors::build(&all, &context()).unwrap_err();
    assert_eq!(
        problems[0].key, "connectors.opa.main.base_url",
        "{problems:?}"
    );
    assert!(problems[0].message.contains("plain http"), "{problems:?}");
    assert!(!format!("{problems:?}").contains(TOKEN));
}

#[tokio::test]
async fn a_bad_path_or_an_unknown_connector_is_refused_at_load() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = connectors_with(&server, dir.path(), Disclosure::Full);

    let bad_path = build_spec(
        &connectors,
        "opa: { connector: main, path: ../v1/policies }",
    )
    .unwrap_err();
    assert_eq!(bad_path[0].key, "path", "{bad_path:?}");
    let leading =
        build_spec(&connectors, "opa: { connector: main, path: /pim/allow }").unwrap_err();
    assert!(
        leading[0].message.contains("starts with `/`"),
        "{leading:?}"
    );

    let typo = build_spec(&connectors, "opa: { connector: mian, path: pim/allow }").unwrap_err();
    assert_eq!(typo[0].key, "connector");
    assert!(typo[0].fix.contains("did you mean `main`"), "{typo:?}");

    // Through a rule file, the problems are placed under the policy's check.
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "policies:\n  - name: opa\n    match: { tiers: [High] }\n    require:\n      - opa: { connector: main, path: 'pim/al low' }\n",
    )
    .unwrap();
    let problems = pimgate::rules::load_with(&rules, &connectors).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|problem| problem.is_error() && problem.key.ends_with("require[0].opa.path")),
        "{problems:?}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}
