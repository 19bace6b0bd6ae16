//! The Microsoft Graph connector, the HR file source and the `hr` check against a Graph stand-in on
//! loopback that answers Entra's token endpoint and Graph's `user` resource in their real shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::auth as common_auth;
use crate::support::fixtures as common_fixtures;
use crate::support::logs as common_logs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pimgate::checks::registry::BuildEnv;
use pimgate::checks::{Check, CheckContext, CheckOutcome, CheckStatus, hr};
use pimgate::connectors::graph::{CertificateRef, Graph, GraphSettings};
use pimgate::connectors::hr_file::{HrFile, HrFileSettings};
use pimgate::connectors::http::{Fetched, UpstreamError};
use pimgate::connectors::secrets::SecretRef;
use pimgate::connectors::{BuildContext, Connectors};
use pimgate::payload::{Action, ActivationRequest, ExpirationKind, ResourceType, Schedule, Target};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TENANT: &str = "11111111-2222-4333-8444-555555555555";
const CLIENT_ID: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
const ALICE: &str = "5b2a9c1e-2222-4d3e-8f40-1a2b3c4d5e6f";
const BOB: &str = "6c3b0d2f-3333-4e4f-9a51-2b3c4d5e6f70";
const SECRET: &str = "Zx8Q~not-a-real-client-secret";

/// What Entra grants pimgate's app in these tests unless a test says otherwise: everything the `hr`
/// check reads.
const FULL_ROLES: &[&str] = &["User.Read.All", "User-LifeCycleInfo.Read.All"];
const LEAVE_PERMISSION: &str = "User-LifeCycleInfo.Read.All";

/// The key the Entra stand-in signs app-only tokens with (one per test binary).
static ENTRA_KEY: LazyLock<common_auth::TestKey> =
    LazyLock::new(|| common_auth::TestKey::generate("entra-graph-key"));

/// An app-only access token for Microsoft Graph as Entra issues it for the client-credentials grant,
/// really signed, granting `roles`. `label` makes tokens told apart in header matchers; the claims are
/// fixed, so the same label gives the same token.
fn app_token_with_roles(label: &str, roles: &[&str]) -> String {
    let claims = json!({
        "aud": "https://graph.microsoft.com",
        "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": 1_795_000_000_i64,
        "nbf": 1_795_000_000_i64,
        "exp": 4_102_444_800_i64,
        "app_displayname": "pimgate",
        "appid": CLIENT_ID,
        "appidacr": "1",
        "idp": format!("https://sts.windows.net/{TENANT}/"),
        "idtyp": "app",
        "oid": "9d3c7f5e-0000-4000-8000-00000000a991",
        "roles": roles,
        "sub": "9d3c7f5e-0000-4000-8000-00000000a991",
        "tid": TENANT,
        "uti": label,
        "ver": "1.0",
    });
    jsonwebtoken::encode(&ENTRA_KEY.header(), &claims, &ENTRA_KEY.encoding_key).unwrap()
}

fn app_token(label: &str) -> String {
    app_token_with_roles(label, FULL_ROLES)
}

fn token_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
}

fn user_path(id: &str) -> String {
    format!("/v1.0/users/{id}")
}

fn context() -> BuildContext {
    BuildContext {
        http: reqwest::Client::new(),
        tenant_id: TENANT.to_string(),
    }
}

/// Settings pointing both the authority and Graph at the stand-in, with a client secret in a file.
fn secret_settings(server: &MockServer, dir: &Path) -> GraphSettings {
    let secret = dir.join("client-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    GraphSettings {
        client_id: Some(CLIENT_ID.to_string()),
        client_secret: Some(SecretRef {
            env: None,
            file: Some(secret),
        }),
        authority_url: Some(server.uri()),
        graph_url: Some(server.uri()),
        ..GraphSettings::default()
    }
}

fn connectors_with_graph(settings: &GraphSettings) -> Arc<Connectors> {
    Arc::new(Connectors {
        graph: Some(Arc::new(Graph::new(settings, &context()).unwrap())),
        ..Connectors::default()
    })
}

/// Entra's v2.0 token endpoint answer for the client-credentials grant.
fn token_answer(token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": token,
    }))
}

async fn mount_token(server: &MockServer, token: &str, expected_calls: u64) {
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(token_answer(token, 3599))
        .expect(expected_calls)
        .mount(server)
        .await;
}

/// `GET /v1.0/users/{id}?$select=...` as Graph answers it.
fn graph_user(id: &str, changes: Value) -> Value {
    let mut user = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id,userPrincipalName,mail,displayName,accountEnabled,employeeLeaveDateTime,employeeType,department)/$entity",
        "id": id,
        "userPrincipalName": "alice@contoso.com",
        "mail": "Alice.Smith@contoso.com",
        "displayName": "Alice Smith",
        "accountEnabled": true,
        "employeeLeaveDateTime": null,
        "employeeType": "Employee",
        "department": "Platform Engineering",
    });
    if let (Some(user), Some(changes)) = (user.as_object_mut(), changes.as_object()) {
        for (key, value) in changes {
            user.insert(key.clone(), value.clone());
        }
    }
    user
}

async fn mount_user(server: &MockServer, id: &str, changes: Value, expected_calls: u64) {
    Mock::given(method("GET"))
        .and(path(user_path(id)))
        .respond_with(ResponseTemplate::new(200).set_body_json(graph_user(id, changes)))
        .expect(expected_calls)
        .mount(server)
        .await;
}

fn build_hr(connectors: &Arc<Connectors>, yaml: &str) -> Arc<dyn Check> {
    let spec: hr::HrSpec = yaml_serde::from_str(yaml).unwrap();
    let lists = BTreeMap::new();
    let windows = BTreeMap::new();
    hr::build(
        &spec,
        &BuildEnv {
            lists: &lists,
            windows: &windows,
            connectors,
        },
    )
    .unwrap()
}

fn request(principal: &str) -> ActivationRequest {
    ActivationRequest {
        request_id: Some("req-1".to_string()),
        resource_type: ResourceType::EntraRoles,
        principal_id: principal.to_string(),
        principal_type: Some("User".to_string()),
        action: Action::SelfActivate,
        target: Target::EntraRole {
            role_definition_id: "62e90394-69f5-4237-9190-012177145e10".to_string(),
            directory_scope_id: "/".to_string(),
            app_scope_id: None,
        },
        justification: None,
        ticket: None,
        schedule: Schedule {
            start: None,
            expiration_kind: ExpirationKind::AfterDuration,
            duration: Some(chrono::Duration::hours(1)),
            end: None,
        },
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T18:05:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

async fn evaluate_within(
    check: &Arc<dyn Check>,
    principal: &str,
    budget: Duration,
) -> CheckOutcome {
    let request = request(principal);
    check
        .evaluate(&CheckContext::new(
            &request,
            now(),
            tokio::time::Instant::now() + budget,
        ))
        .await
}

async fn evaluate(check: &Arc<dyn Check>, principal: &str) -> CheckOutcome {
    evaluate_within(check, principal, Duration::from_secs(5)).await
}

fn upstream(outcome: &CheckOutcome) -> Vec<Value> {
    outcome.evidence["upstream"].as_array().unwrap().clone()
}

fn form_of(request: &Request) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

async fn token_requests(server: &MockServer) -> Vec<BTreeMap<String, String>> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.method.as_str() == "POST")
        .map(form_of)
        .collect()
}

#[tokio::test]
async fn a_client_secret_token_is_requested_with_the_documented_form_and_an_active_user_passes() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, &app_token("eyJ0eXAiOiJKV1QifQ.graph-token"), 1).await;
    Mock::given(method("GET"))
        .and(path(user_path(ALICE)))
        .and(header(
            "authorization",
            format!("Bearer {}", app_token("eyJ0eXAiOiJKV1QifQ.graph-token")).as_str(),
        ))
        .and(query_param(
            "$select",
            "id,userPrincipalName,mail,displayName,accountEnabled,employeeLeaveDateTime,employeeType,department",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(graph_user(ALICE, json!({}))))
        .expect(1)
        .mount(&server)
        .await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(
        &connectors,
        "{ source: graph, account_enabled: true, not_leaving_within: P14D, employee_types: [employee], departments: [platform engineering] }",
    );

    let outcome = evaluate(&check, ALICE).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
    let forms = token_requests(&server).await;
    assert_eq!(forms.len(), 1);
    let form = &forms[0];
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], SECRET);
    assert_eq!(form["scope"], format!("{}/.default", server.uri()));
    assert!(!form.contains_key("client_assertion"));
    let calls = upstream(&outcome);
    let operations: Vec<&str> = calls
        .iter()
        .map(|call| call["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        operations,
        ["POST /oauth2/v2.0/token", "GET /v1.0/users/{id}"]
    );
    assert!(
        calls
            .iter()
            .all(|call| call["connector"] == "graph" && call["outcome"] == "ok")
    );
    assert_eq!(outcome.evidence["user"]["employee_type"], "Employee");
    assert!(!format!("{outcome:?}").contains(&app_token("eyJ0eXAiOiJKV1QifQ.graph-token")));
}

#[tokio::test]
async fn the_token_is_fetched_once_and_reused_across_lookups() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, &app_token("token-1"), 1).await;
    mount_user(&server, ALICE, json!({}), 1).await;
    mount_user(&server, BOB, json!({ "id": BOB }), 1).await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(&connectors, "{ source: graph }");

    let (alice, bob) = tokio::join!(evaluate(&check, ALICE), evaluate(&check, BOB));

    assert_eq!(alice.status, CheckStatus::Pass, "{alice:?}");
    assert_eq!(bob.status, CheckStatus::Pass, "{bob:?}");
}

#[tokio::test]
async fn a_401_from_graph_drops_the_cached_token_and_the_lookup_retries_with_a_new_one() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(token_answer(&app_token("old-token"), 3599))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(token_answer(&app_token("new-token"), 3599))
        .expect(1)
        .mount(&server)
        .await;
    mount_user(&server, ALICE, json!({}), 1).await;
    Mock::given(method("GET"))
        .and(path(user_path(BOB)))
        .and(header(
            "authorization",
            format!("Bearer {}", app_token("old-token")).as_str(),
        ))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": { "code": "InvalidAuthenticationToken", "message": "Access token has expired or is not yet valid." }
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(user_path(BOB)))
        .and(header(
            "authorization",
            format!("Bearer {}", app_token("new-token")).as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(graph_user(BOB, json!({}))))
        .expect(1)
        .mount(&server)
        .await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(&connectors, "{ source: graph }");

    let warm = evaluate(&check, ALICE).await;
    let retried = evaluate(&check, BOB).await;

    assert_eq!(warm.status, CheckStatus::Pass, "{warm:?}");
    assert_eq!(retried.status, CheckStatus::Pass, "{retried:?}");
    let outcomes: Vec<String> = upstream(&retried)
        .iter()
        .map(|call| format!("{} {}", call["operation"], call["outcome"]))
        .collect();
    assert_eq!(
        outcomes,
        [
            "\"GET /v1.0/users/{id}\" \"auth_failed\"",
            "\"POST /oauth2/v2.0/token\" \"ok\"",
            "\"GET /v1.0/users/{id}\" \"ok\"",
        ]
    );
}

#[tokio::test]
async fn a_freshly_fetched_token_that_graph_refuses_is_an_error_whose_evidence_names_the_missing_permission()
 {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, &app_token("token"), 1).await;
    Mock::given(method("GET"))
        .and(path(user_path(ALICE)))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "error": { "code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation." }
        })))
        .expect(1)
        .mount(&server)
        .await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(&connectors, "{ source: graph }");

    let outcome = evaluate(&check, ALICE).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    assert!(
        outcome
            .message
            .starts_with("HR data could not be checked: ")
            && outcome.message.contains("graph"),
        "{}",
        outcome.message
    );
    assert!(
        !outcome.message.contains("User.Read.All"),
        "{}",
        outcome.message
    );
    assert!(
        outcome.evidence["error_detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("User.Read.All")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn profiles_that_break_a_condition_fail_with_a_reason_the_requester_can_act_on() {
    let cases = [
        (
            "disabled account",
            json!({ "accountEnabled": false }),
            "{ source: graph, account_enabled: true }",
            "your account is disabled",
        ),
        (
            "account enabled is checked when the rule does not mention it",
            json!({ "accountEnabled": false }),
            "{ source: graph }",
            "your account is disabled",
        ),
        (
            "leave date inside the window",
            json!({ "employeeLeaveDateTime": "2026-12-01T00:00:00Z" }),
            "{ source: graph, not_leaving_within: P14D }",
            "your account leaves on 2026-12-01, within the 14 days this role requires",
        ),
        (
            "leave date already passed",
            json!({ "employeeLeaveDateTime": "2026-10-31T23:59:59Z" }),
            "{ source: graph, not_leaving_within: P14D }",
            "leave date 2026-10-31",
        ),
        (
            "employee type not allowed",
            json!({ "employeeType": "Contractor" }),
            "{ source: graph, employee_types: [Employee] }",
            "your employee type `Contractor` is not one this role allows (`employee`)",
        ),
        (
            "no employee type at all",
            json!({ "employeeType": null }),
            "{ source: graph, employee_types: [Employee] }",
            "has no employee type for you",
        ),
        (
            "department not allowed",
            json!({ "department": "Sales" }),
            "{ source: graph, departments: [Platform Engineering] }",
            "your department `Sales` is not one this role allows",
        ),
    ];
    for (name, changes, rule, expected) in cases {
        let server = MockServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        mount_token(&server, &app_token("token"), 1).await;
        mount_user(&server, ALICE, changes, 1).await;
        let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
        let check = build_hr(&connectors, rule);

        let outcome = evaluate(&check, ALICE).await;

        assert_eq!(outcome.status, CheckStatus::Fail, "{name}: {outcome:?}");
        assert!(
            outcome.message.contains(expected),
            "{name}: {:?} lacks {expected:?}",
            outcome.message
        );
    }
}

#[tokio::test]
async fn a_leave_date_beyond_the_window_and_account_enabled_false_pass() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, &app_token("token"), 1).await;
    mount_user(
        &server,
        ALICE,
        json!({ "accountEnabled": false, "employeeLeaveDateTime": "2027-03-01T00:00:00Z" }),
        1,
    )
    .await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(
        &connectors,
        "{ source: graph, account_enabled: false, not_leaving_within: P14D }",
    );

    let outcome = evaluate(&check, ALICE).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
}

#[tokio::test]
async fn an_unknown_user_fails_as_not_found_and_the_answer_is_cached() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, &app_token("token"), 1).await;
    Mock::given(method("GET"))
        .and(path(user_path(ALICE)))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "error": {
                "code": "Request_ResourceNotFound",
                "message": format!("Resource '{ALICE}' does not exist or one of its queried reference-property objects are not present."),
                "innerError": { "date": "2026-11-24T18:05:00", "request-id": "0f1e2d3c-0000-4000-8000-000000000000" }
            }
        })))
        .expect(1)
        .mount(&server)
        .await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(&connectors, "{ source: graph }");

    let first = evaluate(&check, ALICE).await;
    let second = evaluate(&check, ALICE).await;

    for outcome in [&first, &second] {
        assert_eq!(outcome.status, CheckStatus::Fail, "{outcome:?}");
        assert!(
            outcome.message.contains("not found in the directory"),
            "{}",
            outcome.message
        );
    }
    assert_eq!(upstream(&second)[0]["cached"], true);
    assert_eq!(upstream(&second)[0]["outcome"], "not_found");
}

#[tokio::test]
async fn a_user_lookup_is_cached_so_a_second_evaluation_makes_no_graph_call() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, &app_token("token"), 1).await;
    mount_user(&server, ALICE, json!({}), 1).await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(&connectors, "{ source: graph }");

    let first = evaluate(&check, ALICE).await;
    let second = evaluate(&check, ALICE).await;

    assert_eq!(first.status, CheckStatus::Pass);
    assert_eq!(second.status, CheckStatus::Pass);
    let calls = upstream(&second);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["cached"], true);
    assert_eq!(calls[0]["operation"], "GET /v1.0/users/{id}");
}

#[tokio::test]
async fn graph_failures_are_errors_naming_graph_within_the_deadline() {
    let cases = [
        (
            "503",
            ResponseTemplate::new(503),
            "graph answered with an error",
        ),
        (
            "garbage",
            ResponseTemplate::new(200).set_body_string("<html>gateway</html>"),
            "graph sent an answer pimgate could not read",
        ),
        (
            "hang",
            ResponseTemplate::new(200)
                .set_body_json(graph_user(ALICE, json!({})))
                .set_delay(Duration::from_secs(10)),
            "graph did not answer in time",
        ),
    ];
    for (name, answer, expected) in cases {
        let server = MockServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        mount_token(&server, &app_token("token"), 1).await;
        Mock::given(method("GET"))
            .and(path(user_path(ALICE)))
            .respond_with(answer)
            .mount(&server)
            .await;
        let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
        let check = build_hr(&connectors, "{ source: graph }");

        let started = std::time::Instant::now();
        let outcome = evaluate_within(&check, ALICE, Duration::from_millis(400)).await;

        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{name}: took {:?}",
            started.elapsed()
        );
        assert_eq!(outcome.status, CheckStatus::Error, "{name}: {outcome:?}");
        assert!(
            outcome.message.contains(expected),
            "{name}: {}",
            outcome.message
        );
        assert!(
            outcome.evidence["upstream"]
                .as_array()
                .is_some_and(|calls| !calls.is_empty())
        );
    }
}

#[tokio::test]
async fn a_hanging_token_endpoint_is_an_error_within_the_deadline() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(token_answer(&app_token("token"), 3599).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(&connectors, "{ source: graph }");

    let started = std::time::Instant::now();
    let outcome = evaluate_within(&check, ALICE, Duration::from_millis(300)).await;

    assert!(
        started.elapsed() < Duration::from_millis(900),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    assert!(
        outcome.message.contains("graph did not answer in time"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn a_refused_client_secret_keeps_the_entra_code_out_of_the_reason_and_in_the_evidence_and_log()
 {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            "error_codes": [7000215],
            "timestamp": "2026-11-24 18:05:00Z",
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000",
            "error_uri": "https://login.microsoftonline.com/error?code=7000215"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(&connectors, "{ source: graph }");
    let (logs, _guard) = common_logs::CapturedLogs::start();

    let outcome = evaluate(&check, ALICE).await;

    assert_eq!(outcome.status, CheckStatus::Error);
    for leaked in ["AADSTS", "7000215", "invalid_client", "401", &server.uri()] {
        assert!(
            !outcome.message.contains(leaked),
            "the reason shows `{leaked}`: {}",
            outcome.message
        );
    }
    assert!(outcome.message.contains("graph"), "{}", outcome.message);
    let detail = outcome.evidence["error_detail"]
        .as_str()
        .unwrap_or_default();
    assert!(detail.contains("AADSTS7000215"), "{outcome:?}");
    assert!(logs.text().contains("AADSTS7000215"), "{}", logs.text());
    assert!(!format!("{outcome:?}").contains(SECRET));
    assert!(!logs.text().contains(SECRET));
}

fn fixture(name: &str) -> PathBuf {
    common_fixtures::path("graph", name)
}

#[tokio::test]
async fn a_certificate_credential_sends_a_client_assertion_signed_with_the_configured_key() {
    let server = MockServer::start().await;
    mount_token(&server, &app_token("token"), 1).await;
    mount_user(&server, ALICE, json!({}), 1).await;
    let settings = GraphSettings {
        client_id: Some(CLIENT_ID.to_string()),
        certificate: Some(CertificateRef {
            file: fixture("app-cert.pem"),
        }),
        authority_url: Some(server.uri()),
        graph_url: Some(server.uri()),
        ..GraphSettings::default()
    };
    let connectors = connectors_with_graph(&settings);
    let check = build_hr(&connectors, "{ source: graph }");

    let outcome = evaluate(&check, ALICE).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
    let form = token_requests(&server).await.remove(0);
    assert!(!form.contains_key("client_secret"));
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let assertion = &form["client_assertion"];
    let header = jsonwebtoken::decode_header(assertion).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::PS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let expected_thumbprint = std::fs::read_to_string(fixture("app-cert.x5t-s256")).unwrap();
    assert_eq!(header.x5t_s256.as_deref(), Some(expected_thumbprint.trim()));
    let public = std::fs::read(fixture("app-cert.pub.pem")).unwrap();
    let token_url = format!("{}{}", server.uri(), token_path());
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
    validation.set_audience(&[token_url.as_str()]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub", "nbf"]);
    let claims = jsonwebtoken::decode::<Value>(
        assertion,
        &jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], CLIENT_ID);
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()));
    let lifetime = claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap();
    assert!((60..=600).contains(&lifetime), "lifetime {lifetime}");
}

#[tokio::test]
async fn the_federated_token_file_is_sent_as_the_client_assertion_and_reread_on_each_fetch() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let federated = dir.path().join("azure-identity-token");
    std::fs::write(
        &federated,
        "eyJhbGciOiJSUzI1NiJ9.first-projected-token.sig\n",
    )
    .unwrap();
    // Graph refuses the first token once (as after a revocation), so the second lookup fetches a
    // new token. (A lifetime of zero no longer does: `expires_in` is raised to a 60 s floor.)
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(token_answer(&app_token("token"), 3599))
        .expect(2)
        .mount(&server)
        .await;
    mount_user(&server, ALICE, json!({}), 1).await;
    Mock::given(method("GET"))
        .and(path(user_path(BOB)))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    mount_user(&server, BOB, json!({ "id": BOB }), 1).await;
    let settings = GraphSettings {
        client_id: Some(CLIENT_ID.to_string()),
        federated_token_file: Some(federated.clone()),
        authority_url: Some(server.uri()),
        graph_url: Some(server.uri()),
        ..GraphSettings::default()
    };
    let connectors = connectors_with_graph(&settings);
    let check = build_hr(&connectors, "{ source: graph }");

    let first = evaluate(&check, ALICE).await;
    std::fs::write(
        &federated,
        "eyJhbGciOiJSUzI1NiJ9.rotated-projected-token.sig",
    )
    .unwrap();
    let second = evaluate(&check, BOB).await;

    assert_eq!(first.status, CheckStatus::Pass, "{first:?}");
    assert_eq!(second.status, CheckStatus::Pass, "{second:?}");
    let forms = token_requests(&server).await;
    let assertions: Vec<&str> = forms
        .iter()
        .map(|form| form["client_assertion"].as_str())
        .collect();
    assert_eq!(
        assertions,
        [
            "eyJhbGciOiJSUzI1NiJ9.first-projected-token.sig",
            "eyJhbGciOiJSUzI1NiJ9.rotated-projected-token.sig"
        ]
    );
    assert!(forms.iter().all(|form| form["client_assertion_type"]
        == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        && form["client_id"] == CLIENT_ID));
}

#[test]
fn settings_need_a_client_id_and_exactly_one_credential_and_name_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let two = GraphSettings {
        client_secret: Some(SecretRef {
            env: None,
            file: Some(secret),
        }),
        federated_token_file: Some(dir.path().join("token")),
        graph_url: Some("http://graph.example.com".to_string()),
        ..GraphSettings::default()
    };
    let problems = Graph::new(&two, &context()).unwrap_err();
    let keys: Vec<&str> = problems
        .iter()
        .map(|problem| problem.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "connectors.graph.client_id",
            "connectors.graph.graph_url",
            "connectors.graph.client_secret"
        ]
    );
    let missing_certificate = GraphSettings {
        client_id: Some(CLIENT_ID.to_string()),
        certificate: Some(CertificateRef {
            file: dir.path().join("absent.pem"),
        }),
        ..GraphSettings::default()
    };
    let problems = Graph::new(&missing_certificate, &context()).unwrap_err();
    assert_eq!(problems[0].key, "connectors.graph.certificate.file");
}

#[test]
fn secrets_and_keys_never_appear_in_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let with_secret = GraphSettings {
        client_id: Some(CLIENT_ID.to_string()),
        client_secret: Some(SecretRef {
            env: None,
            file: Some(secret),
        }),
        ..GraphSettings::default()
    };
    let with_certificate = GraphSettings {
        client_id: Some(CLIENT_ID.to_string()),
        certificate: Some(CertificateRef {
            file: fixture("app-cert.pem"),
        }),
        ..GraphSettings::default()
    };
    let key_line = std::fs::read_to_string(fixture("app-cert.pem"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    for settings in [with_secret, with_certificate] {
        let connectors = Connectors {
            graph: Some(Arc::new(Graph::new(&settings, &context()).unwrap())),
            ..Connectors::default()
        };
        let printed = format!("{connectors:?} {connectors:#?}");
        assert!(!printed.contains(SECRET), "{printed}");
        assert!(!printed.contains(&key_line), "{printed}");
        assert!(printed.contains(CLIENT_ID));
    }
}

fn hr_file_connectors(path: &Path) -> Arc<Connectors> {
    let settings = HrFileSettings {
        path: path.to_path_buf(),
        check_interval_seconds: Some(0),
    };
    Arc::new(Connectors {
        hr_file: Some(Arc::new(HrFile::new(&settings, &context()).unwrap())),
        ..Connectors::default()
    })
}

#[tokio::test]
async fn the_hr_file_source_passes_fails_and_follows_changes_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hr.csv");
    std::fs::write(
        &file,
        format!(
            "id,mail,upn,account_enabled,employee_leave_date_time,employee_type,department\n\
             {ALICE},alice@contoso.com,alice@contoso.com,true,,Employee,\"Platform, EU\"\n\
             {BOB},bob@contoso.com,bob@contoso.com,true,2026-12-01,Employee,Sales\n"
        ),
    )
    .unwrap();
    let connectors = hr_file_connectors(&file);
    let check = build_hr(
        &connectors,
        "{ source: file, not_leaving_within: P14D, employee_types: [EMPLOYEE] }",
    );

    let alice = evaluate(&check, &ALICE.to_uppercase()).await;
    let bob = evaluate(&check, BOB).await;
    let stranger = evaluate(&check, "00000000-0000-4000-8000-000000000000").await;

    assert_eq!(alice.status, CheckStatus::Pass, "{alice:?}");
    assert_eq!(alice.evidence["source"], "file");
    assert_eq!(upstream(&alice)[0]["connector"], "hr_file");
    assert_eq!(bob.status, CheckStatus::Fail);
    assert!(
        bob.message.contains("leaves on 2026-12-01"),
        "{}",
        bob.message
    );
    assert_eq!(stranger.status, CheckStatus::Fail);
    assert!(
        stranger.message.contains("not found in the HR file"),
        "{}",
        stranger.message
    );

    std::fs::write(
        &file,
        format!(
            "id,account_enabled,employee_type,employee_leave_date_time\n{ALICE},false,Employee,\n{BOB},true,Employee,\n"
        ),
    )
    .unwrap();
    let alice = evaluate(&check, ALICE).await;
    let bob = evaluate(&check, BOB).await;
    assert_eq!(alice.status, CheckStatus::Fail, "{alice:?}");
    assert!(
        alice.message.contains("disabled in the HR file"),
        "{}",
        alice.message
    );
    assert_eq!(bob.status, CheckStatus::Pass, "{bob:?}");

    std::fs::write(&file, "id,account_enabled\n\"broken\n").unwrap();
    let bob = evaluate(&check, BOB).await;
    assert_eq!(
        bob.status,
        CheckStatus::Pass,
        "a broken file keeps the previous data: {bob:?}"
    );
}

#[tokio::test]
async fn a_json_hr_file_is_read_and_an_absent_column_is_an_error_not_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hr.json");
    std::fs::write(
        &file,
        json!([
            { "id": ALICE, "mail": "alice@contoso.com", "account_enabled": true, "employee_leave_date_time": "2027-01-31T17:00:00+01:00", "department": "Platform" },
            { "id": BOB, "mail": "bob@contoso.com" }
        ])
        .to_string(),
    )
    .unwrap();
    let connectors = hr_file_connectors(&file);
    let check = build_hr(&connectors, "{ source: file, not_leaving_within: P30D }");

    let alice = evaluate(&check, ALICE).await;
    let bob = evaluate(&check, BOB).await;

    assert_eq!(alice.status, CheckStatus::Pass, "{alice:?}");
    assert_eq!(bob.status, CheckStatus::Error, "{bob:?}");
    assert!(
        bob.message
            .contains("does not say whether the account is enabled"),
        "{}",
        bob.message
    );
}

#[tokio::test]
async fn identity_uses_graph_when_configured_else_the_hr_file_else_says_not_configured() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hr.json");
    std::fs::write(
        &file,
        json!([{ "id": ALICE, "mail": "Alice@Contoso.com" }]).to_string(),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);

    let (profile, calls) = hr_file_connectors(&file)
        .user_profile(ALICE, deadline)
        .await;
    let Ok(Fetched::Found(profile)) = profile else {
        panic!("expected a profile, got {profile:?}");
    };
    assert_eq!(profile.addresses(), ["alice@contoso.com"]);
    assert_eq!(calls.len(), 1);

    let server = MockServer::start().await;
    mount_token(&server, &app_token("token"), 1).await;
    mount_user(&server, ALICE, json!({}), 1).await;
    let mut both = Connectors {
        hr_file: Some(Arc::new(
            HrFile::new(
                &HrFileSettings {
                    path: file.clone(),
                    check_interval_seconds: None,
                },
                &context(),
            )
            .unwrap(),
        )),
        ..Connectors::default()
    };
    both.graph = Some(Arc::new(
        Graph::new(&secret_settings(&server, dir.path()), &context()).unwrap(),
    ));
    let (profile, calls) = both.user_profile(ALICE, deadline).await;
    let Ok(Fetched::Found(profile)) = profile else {
        panic!("expected a profile, got {profile:?}");
    };
    assert_eq!(profile.display_name.as_deref(), Some("Alice Smith"));
    assert!(calls.iter().all(|call| call.connector == "graph"));

    let (nothing, calls) = Connectors::default().user_profile(ALICE, deadline).await;
    assert_eq!(
        nothing,
        Err(UpstreamError::NotConfigured { connector: "graph" })
    );
    assert!(calls.is_empty());
}

// ---- Missing or unreadable upstream data is "not evaluated", never a pass or the requester's fault ----

/// Graph answers `employeeLeaveDateTime: null` both for "no leave date" and for "your app may not read
/// it"; only the token's `roles` tell the two apart.
#[tokio::test]
async fn a_leaver_whose_leave_date_the_token_may_not_read_is_not_evaluated_and_never_passes() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token_with_roles("without-lifecycle", &["User.Read.All"]);
    mount_token(&server, &token, 1).await;
    // What Graph answers for a leaver when the app lacks User-LifeCycleInfo.Read.All.
    mount_user(&server, ALICE, json!({ "employeeLeaveDateTime": null }), 1).await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(&connectors, "{ source: graph, not_leaving_within: P14D }");
    let (logs, _guard) = common_logs::CapturedLogs::start();

    let outcome = evaluate(&check, ALICE).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    assert!(
        outcome.message.starts_with("HR data could not be checked"),
        "{}",
        outcome.message
    );
    assert!(
        !outcome.message.contains(LEAVE_PERMISSION),
        "the requester cannot grant permissions: {}",
        outcome.message
    );
    let detail = outcome.evidence["error_detail"]
        .as_str()
        .unwrap_or_default();
    assert!(detail.contains(LEAVE_PERMISSION), "{outcome:?}");
    assert!(logs.text().contains(LEAVE_PERMISSION), "{}", logs.text());
}

#[tokio::test]
async fn with_the_lifecycle_permission_granted_a_null_leave_date_means_no_leave_date() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, &app_token("full"), 1).await;
    mount_user(&server, ALICE, json!({ "employeeLeaveDateTime": null }), 1).await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(&connectors, "{ source: graph, not_leaving_within: P14D }");

    let outcome = evaluate(&check, ALICE).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
}

#[tokio::test]
async fn a_token_whose_grants_cannot_be_read_proves_no_permission() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, "opaque-token-without-claims", 1).await;
    mount_user(&server, ALICE, json!({ "employeeLeaveDateTime": null }), 1).await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(&connectors, "{ source: graph, not_leaving_within: P14D }");

    let outcome = evaluate(&check, ALICE).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
}

#[tokio::test]
async fn a_graph_user_without_account_enabled_is_not_evaluated() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, &app_token("full"), 1).await;
    let mut user = graph_user(ALICE, json!({}));
    user.as_object_mut().unwrap().remove("accountEnabled");
    Mock::given(method("GET"))
        .and(path(user_path(ALICE)))
        .respond_with(ResponseTemplate::new(200).set_body_json(user))
        .mount(&server)
        .await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(&connectors, "{ source: graph }");

    let outcome = evaluate(&check, ALICE).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    assert!(!outcome.message.contains("your account is disabled"));
}

#[tokio::test]
async fn graph_answering_for_another_user_is_not_evaluated_and_logged() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, &app_token("full"), 1).await;
    Mock::given(method("GET"))
        .and(path(user_path(ALICE)))
        .respond_with(ResponseTemplate::new(200).set_body_json(graph_user(BOB, json!({}))))
        .mount(&server)
        .await;
    let connectors = connectors_with_graph(&secret_settings(&server, dir.path()));
    let check = build_hr(&connectors, "{ source: graph }");
    let (logs, _guard) = common_logs::CapturedLogs::start();

    let outcome = evaluate(&check, ALICE).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    assert!(outcome.message.contains("graph"), "{}", outcome.message);
    assert!(logs.text().contains(BOB), "{}", logs.text());
}

#[tokio::test]
async fn an_hr_file_that_disappears_is_not_evaluated_and_its_path_stays_out_of_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people-export-7f3a.csv");
    std::fs::write(
        &file,
        format!("id,account_enabled,employee_leave_date_time\n{ALICE},true,\n"),
    )
    .unwrap();
    let connectors = hr_file_connectors(&file);
    let check = build_hr(&connectors, "{ source: file, not_leaving_within: P14D }");
    let before = evaluate(&check, ALICE).await;
    assert_eq!(before.status, CheckStatus::Pass, "{before:?}");
    std::fs::remove_file(&file).unwrap();
    let (logs, _guard) = common_logs::CapturedLogs::start();

    let after = evaluate(&check, ALICE).await;

    assert_eq!(after.status, CheckStatus::Error, "{after:?}");
    let folder = dir.path().display().to_string();
    for leaked in [
        "people-export-7f3a",
        folder.as_str(),
        "No such file",
        "os error",
    ] {
        assert!(
            !after.message.contains(leaked),
            "the reason shows `{leaked}`: {}",
            after.message
        );
    }
    let detail = after.evidence["error_detail"].as_str().unwrap_or_default();
    assert!(detail.contains("people-export-7f3a.csv"), "{after:?}");
    assert!(
        logs.text().contains("people-export-7f3a.csv"),
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn an_unparsable_hr_cell_makes_only_that_person_not_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hr.csv");
    std::fs::write(
        &file,
        format!(
            "id,account_enabled,employee_leave_date_time\n\
             {ALICE},maybe,\n\
             {BOB},true,01/12/2026\n\
             00000000-0000-4000-8000-000000000001,true,\n"
        ),
    )
    .unwrap();
    let connectors = hr_file_connectors(&file);
    let check = build_hr(&connectors, "{ source: file, not_leaving_within: P14D }");

    let alice = evaluate(&check, ALICE).await;
    let bob = evaluate(&check, BOB).await;
    let carol = evaluate(&check, "00000000-0000-4000-8000-000000000001").await;

    assert_eq!(alice.status, CheckStatus::Error, "{alice:?}");
    assert_eq!(bob.status, CheckStatus::Error, "{bob:?}");
    assert_eq!(carol.status, CheckStatus::Pass, "{carol:?}");
    for outcome in [&alice, &bob] {
        assert!(
            outcome.message.starts_with("HR data could not be checked"),
            "{}",
            outcome.message
        );
        assert!(!outcome.message.contains("maybe") && !outcome.message.contains("01/12/2026"));
    }
}

#[tokio::test]
async fn an_hr_file_without_a_leave_date_column_cannot_clear_anyone_of_leaving() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hr.csv");
    std::fs::write(&file, format!("id,account_enabled\n{ALICE},true\n")).unwrap();
    let connectors = hr_file_connectors(&file);
    let leaving = build_hr(&connectors, "{ source: file, not_leaving_within: P14D }");
    let enabled_only = build_hr(&connectors, "{ source: file }");

    let outcome = evaluate(&leaving, ALICE).await;
    let unaffected = evaluate(&enabled_only, ALICE).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    assert_eq!(unaffected.status, CheckStatus::Pass, "{unaffected:?}");
}

/// `pimgate rules validate --config` with Graph configured names the application permissions the
/// loaded rules need, so an operator can compare them with the app registration before deploying.
#[test]
fn rules_validate_names_the_graph_permissions_the_loaded_rules_need() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("graph-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml"))
            .unwrap()
            .replace(
                "config/hr.example.csv",
                &format!("{}/config/hr.example.csv", env!("CARGO_MANIFEST_DIR")),
            )
            .replace(
                "config/oncall.example.yaml",
                &format!("{}/config/oncall.example.yaml", env!("CARGO_MANIFEST_DIR")),
            );
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "{example}\n[connectors.graph]\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ file = \"{}\" }}\n",
            secret.display()
        ),
    )
    .unwrap();
    let validate = |rules: &str| {
        let path = dir.path().join("rules.yaml");
        std::fs::write(&path, rules).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_pimgate"))
            .args(["rules", "validate", "--config"])
            .arg(&config)
            .env_remove("PIMGATE_CONFIG")
            .env("PIMGATE__RULES__PATH", &path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    let leavers = validate(
        "policies:\n  - name: staff-only\n    match: {}\n    require:\n      - hr: { source: graph, not_leaving_within: P14D }\n",
    );
    let enabled_only = validate(
        "policies:\n  - name: staff-only\n    match: {}\n    require:\n      - hr: { source: graph }\n",
    );

    assert!(leavers.contains(LEAVE_PERMISSION), "{leavers}");
    assert!(leavers.contains("User.Read.All"), "{leavers}");
    assert!(enabled_only.contains("User.Read.All"), "{enabled_only}");
    assert!(!enabled_only.contains(LEAVE_PERMISSION), "{enabled_only}");
}
