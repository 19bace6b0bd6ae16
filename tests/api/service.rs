//! Health, readiness, metrics and request ids.

use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::common_auth::TestIdp;
use crate::helpers::{AppOptions, spawn_app, spawn_app_for};
use crate::support::requests::{self, AZURE_RESOURCE, GROUP};

#[tokio::test]
async fn readiness_waits_for_the_signing_keys_and_evaluate_answers_503_until_then() {
    let idp = TestIdp::start().await;
    idp.server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&idp.server)
        .await;
    let app = spawn_app_for(
        idp,
        AppOptions {
            wait_ready: false,
            ..AppOptions::default()
        },
    )
    .await;

    let health = app
        .client
        .get(format!("{}/healthz", app.admin_address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "alive even when not ready");
    let ready = app
        .client
        .get(format!("{}/readyz", app.admin_address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["signingKeys"], false);
    let response = app.evaluate(&requests::sample(GROUP)).await;
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn readiness_reports_the_rules_revision_once_ready() {
    let app = spawn_app().await;
    let ready: Value = app
        .client
        .get(format!("{}/readyz", app.admin_address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["rules"]["policies"], 3);
    assert!(ready["rules"]["revision"].as_str().unwrap().len() >= 16);
}

#[tokio::test]
async fn metrics_count_decisions_by_outcome_and_policy() {
    let app = spawn_app().await;
    app.evaluate(&requests::sample(AZURE_RESOURCE)).await;
    let text = app
        .client
        .get(format!("{}/metrics", app.admin_address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|line| {
            line.starts_with("pimgate_decisions_total") && line.contains("azure-denied-here")
        })
        .unwrap_or_else(|| panic!("no decision counter in:\n{text}"));
    assert!(line.contains(r#"outcome="Denied""#), "{line}");
    assert!(text.contains("pimgate_http_requests_total"), "{text}");
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let echoed = app
        .client
        .get(format!("{}/healthz", app.admin_address))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    let generated = app
        .client
        .get(format!("{}/healthz", app.admin_address))
        .header("x-request-id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "an unsafe incoming id is replaced: {id}"
    );
}

#[tokio::test]
async fn get_on_the_evaluate_route_is_405() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/v1/evaluate", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
}
