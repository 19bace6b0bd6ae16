//! Microsoft Graph application permissions, read from the `roles` of the app-only token Entra issues:
//! a permission the app lacks is named by `/readyz` (which stays ready: PIM must still get answers),
//! and a leaver whose leave date the app may not read is never approved.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common_auth::TestKey;
use crate::helpers::{AppOptions, TestApp, spawn_app_with};
use crate::support::requests::{self, ENTRA_ROLE};

const REQUESTER: &str = "0f6e7b1a-3c52-4b8e-a0d4-2e9f51c7d8a3";
const APP: &str = "33333333-3333-4333-8333-333333333333";
const LEAVE_PERMISSION: &str = "User-LifeCycleInfo.Read.All";

const RULES: &str = r#"
policies:
  - name: staff-only
    match: {}
    require:
      - hr: { source: graph, not_leaving_within: P14D }
"#;

/// Entra's token endpoint answering a really signed app-only token granting `roles`, and Graph
/// answering the requester as it does for a leaver when the app may not read the leave date.
async fn graph(roles: &[&str]) -> MockServer {
    let key = TestKey::generate("entra");
    let claims = json!({
        "aud": "https://graph.microsoft.com", "iss": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
        "iat": 1_795_000_000_i64, "nbf": 1_795_000_000_i64, "exp": 4_102_444_800_i64,
        "appid": APP, "idtyp": "app", "roles": roles, "ver": "1.0"
    });
    let token = jsonwebtoken::encode(&key.header(), &claims, &key.encoding_key).unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/oauth2/v2\.0/token$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/users/{REQUESTER}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": REQUESTER, "userPrincipalName": "ada@contoso.com", "mail": "ada@contoso.com",
            "displayName": "Ada Lovelace", "accountEnabled": true, "employeeLeaveDateTime": null,
            "employeeType": "Employee", "department": "Platform"
        })))
        .mount(&server)
        .await;
    server
}

async fn app(graph: &MockServer, secrets: &tempfile::TempDir) -> TestApp {
    let secret = secrets.path().join("graph");
    std::fs::write(&secret, "graph-secret").unwrap();
    let connectors: pimgate::connectors::ConnectorsSettings = serde_json::from_value(json!({
        "graph": {
            "client_id": APP,
            "client_secret": {"file": secret},
            "authority_url": graph.uri(), "graph_url": graph.uri()
        }
    }))
    .unwrap();
    spawn_app_with(AppOptions {
        rules: RULES,
        tweak: Box::new(move |settings| settings.connectors = connectors),
        ..AppOptions::default()
    })
    .await
}

async fn readiness(app: &TestApp) -> (u16, Value) {
    let response = app
        .client
        .get(format!("{}/readyz", app.admin_address))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_missing_graph_permission_is_named_by_readiness_which_stays_ready() {
    let graph = graph(&["User.Read.All"]).await;
    let secrets = tempfile::tempdir().unwrap();
    let app = app(&graph, &secrets).await;

    let mut last = Value::Null;
    for _ in 0..100 {
        let (status, body) = readiness(&app).await;
        assert_eq!(status, 200, "{body}");
        if body["connectors"]["graph"]["missingPermissions"]
            .as_array()
            .is_some_and(|missing| missing.iter().any(|name| name == LEAVE_PERMISSION))
        {
            assert_eq!(body["status"], "ready", "{body}");
            return;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz never named {LEAVE_PERMISSION}: {last}");
}

#[tokio::test]
async fn a_leaver_is_not_approved_when_the_app_may_not_read_the_leave_date() {
    let graph = graph(&["User.Read.All"]).await;
    let secrets = tempfile::tempdir().unwrap();
    let app = app(&graph, &secrets).await;
    let mut body = requests::sample(ENTRA_ROLE);
    body["id"] = json!("6a000000-0000-4000-8000-0000000000aa");
    body["principalId"] = json!(REQUESTER);

    let answer: Value = app.evaluate(&body).await.json().await.unwrap();

    assert_eq!(answer["evaluationOutcome"], "Denied", "{answer}");
    let reasons = answer["reason"].to_string();
    assert!(
        reasons.contains("HR data could not be checked"),
        "{reasons}"
    );
    assert!(!reasons.contains(LEAVE_PERMISSION), "{reasons}");
    let record = app.audit_records().pop().unwrap();
    assert!(record.to_string().contains(LEAVE_PERMISSION), "{record}");
}
