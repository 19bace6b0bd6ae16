//! The `auth_methods` check against a Microsoft Graph stand-in on loopback that answers Entra's token
//! endpoint and `users/{id}/authentication/methods` in their real shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::auth as common_auth;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pimgate::checks::registry::{BuildEnv, CheckSpec};
use pimgate::checks::{Check, CheckContext, CheckOutcome, CheckStatus, auth_methods};
use pimgate::connectors::graph::{Graph, GraphSettings};
use pimgate::connectors::secrets::SecretRef;
use pimgate::connectors::{BuildContext, Connectors};
use pimgate::payload::{Action, ActivationRequest, ExpirationKind, ResourceType, Schedule, Target};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};

use wiremock::{Mock, MockServer, ResponseTemplate};

const TENANT: &str = "11111111-2222-4333-8444-555555555555";
const CLIENT_ID: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
const ALICE: &str = "5b2a9c1e-2222-4d3e-8f40-1a2b3c4d5e6f";
const SECRET: &str = "Zx8Q~not-a-real-client-secret";
const ROLES: &[&str] = &["User.Read.All", "UserAuthenticationMethod.Read.All"];
const PHONE_NUMBER: &str = "+1 2065550123";

static ENTRA_KEY: LazyLock<common_auth::TestKey> =
    LazyLock::new(|| common_auth::TestKey::generate("entra-auth-methods-key"));

/// An app-only Graph token as Entra issues it for the client-credentials grant, really signed.
fn app_token(roles: &[&str]) -> String {
    let claims = json!({
        "aud": "https://graph.microsoft.com",
        "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": 1_795_000_000_i64,
        "nbf": 1_795_000_000_i64,
        "exp": 4_102_444_800_i64,
        "appid": CLIENT_ID,
        "idtyp": "app",
        "oid": "9d3c7f5e-0000-4000-8000-00000000a991",
        "roles": roles,
        "sub": "9d3c7f5e-0000-4000-8000-00000000a991",
        "tid": TENANT,
        "ver": "1.0",
    });
    jsonwebtoken::encode(&ENTRA_KEY.header(), &claims, &ENTRA_KEY.encoding_key).unwrap()
}

async fn mount_token(server: &MockServer, roles: &[&str]) {
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": app_token(roles),
        })))
        .mount(server)
        .await;
}

fn methods_path(user: &str) -> String {
    format!("/v1.0/users/{user}/authentication/methods")
}

/// One registered method as Graph v1.0 lists it, with the properties of its type.
fn method_json(kind: &str) -> Value {
    match kind {
        "password" => json!({
            "@odata.type": "#microsoft.graph.passwordAuthenticationMethod",
            "id": "28c10230-6103-485e-b985-444c60001490",
            "password": null,
            "createdDateTime": "2025-03-01T09:12:44Z",
        }),
        "phone" => json!({
            "@odata.type": "#microsoft.graph.phoneAuthenticationMethod",
            "id": "3179e48a-750b-4051-897c-87b9720928f7",
            "phoneNumber": PHONE_NUMBER,
            "phoneType": "mobile",
            "smsSignInState": "notAllowedByPolicy",
        }),
        "fido2" => json!({
            "@odata.type": "#microsoft.graph.fido2AuthenticationMethod",
            "id": "-2_GRUg2-HYz6_1YG4YRAQ2",
            "displayName": "Alice's YubiKey 5 NFC",
            "createdDateTime": "2025-06-11T08:21:05Z",
            "aaGuid": "2fc0579f-8113-47ea-b116-bb5a8db9202a",
            "model": "YubiKey 5 Series with NFC",
            "attestationCertificates": ["dbe793efdf1945e2df25d93653a1e8a3268a9075"],
            "attestationLevel": "attested",
        }),
        "temporaryAccessPass" => json!({
            "@odata.type": "#microsoft.graph.temporaryAccessPassAuthenticationMethod",
            "id": "6f1ed4cb-3e48-4d0f-b9c2-5d6a8c1e3a24",
            "isUsable": true,
            "lifetimeInMinutes": 60,
            "isUsableOnce": false,
            "methodUsabilityReason": "EnabledByPolicy",
            "startDateTime": "2026-11-24T17:00:00Z",
            "createdDateTime": "2026-11-24T17:00:00Z",
        }),
        other => panic!("no sample for {other}"),
    }
}

/// One page of `authentication/methods` as Graph sends it.
fn page(kinds: &[&str], next: Option<String>) -> Value {
    let mut body = json!({
        "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#users('{ALICE}')/authentication/methods"),
        "value": kinds.iter().map(|kind| method_json(kind)).collect::<Vec<_>>(),
    });
    if let Some(next) = next {
        body["@odata.nextLink"] = json!(next);
    }
    body
}

async fn mount_methods(server: &MockServer, kinds: &[&str]) {
    Mock::given(method("GET"))
        .and(path(methods_path(ALICE)))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(kinds, None)))
        .expect(1)
        .mount(server)
        .await;
}

async fn graph_gets(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.method.as_str() == "GET")
        .count()
}

fn connectors(server: &MockServer, dir: &Path) -> Arc<Connectors> {
    let secret = dir.join("client-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let settings = GraphSettings {
        client_id: Some(CLIENT_ID.to_string()),
        client_secret: Some(SecretRef {
            env: None,
            file: Some(secret),
        }),
        authority_url: Some(server.uri()),
        graph_url: Some(server.uri()),
        timeout_ms: Some(300),
        ..GraphSettings::default()
    };
    let context = BuildContext {
        http: reqwest::Client::new(),
        tenant_id: TENANT.to_string(),
    };
    Arc::new(Connectors {
        graph: Some(Arc::new(Graph::new(&settings, &context).unwrap())),
        ..Connectors::default()
    })
}

/// Builds the check from rule YAML through the registry, as rule loading does.
fn build(connectors: &Arc<Connectors>, yaml: &str) -> Arc<dyn Check> {
    let spec: CheckSpec = yaml_serde::from_str(yaml).unwrap();
    assert_eq!(spec.kind(), "auth_methods");
    assert_eq!(spec.required_connector(), Some("graph"));
    let (lists, windows) = (BTreeMap::new(), BTreeMap::new());
    spec.build(&BuildEnv {
        lists: &lists,
        windows: &windows,
        connectors,
    })
    .unwrap()
    .check
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T18:05:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

async fn evaluate(check: &Arc<dyn Check>) -> CheckOutcome {
    let request = ActivationRequest {
        request_id: Some("req-1".to_string()),
        resource_type: ResourceType::EntraRoles,
        principal_id: ALICE.to_string(),
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
            start: Some(now() + chrono::Duration::hours(3)),
            expiration_kind: ExpirationKind::AfterDuration,
            duration: Some(chrono::Duration::hours(1)),
            end: None,
        },
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    check
        .evaluate(&CheckContext::new(&request, now(), deadline))
        .await
}

const PHISHING_RESISTANT: &str = "auth_methods: { phishing_resistant: true }";

#[tokio::test]
async fn a_registered_fido2_key_passes_holding_now() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    mount_methods(&server, &["password", "fido2"]).await;
    let check = build(&connectors(&server, dir.path()), PHISHING_RESISTANT);

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
    assert!(outcome.message.contains("FIDO2"), "{}", outcome.message);
    // No key details in the reason: not its name, not its model.
    assert!(!outcome.message.contains("YubiKey"), "{}", outcome.message);
    // Registration is current state: it holds now, not at the later requested start.
    assert_eq!(outcome.holds_at, Some(now()));
    assert_eq!(outcome.evidence["matched"], json!(["fido2"]));
    assert_eq!(outcome.evidence["upstream"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn only_a_password_and_a_phone_fails_naming_the_kinds_and_never_the_number() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    mount_methods(&server, &["password", "phone"]).await;
    let check = build(&connectors(&server, dir.path()), PHISHING_RESISTANT);

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Fail, "{outcome:?}");
    assert!(
        outcome.message.contains("registered: phone, password"),
        "{}",
        outcome.message
    );
    assert!(
        outcome.message.contains("Windows Hello for Business"),
        "{}",
        outcome.message
    );
    let everything = serde_json::to_string(&outcome).unwrap();
    assert!(!everything.contains(PHONE_NUMBER), "{everything}");
    assert!(!everything.contains("2065550123"), "{everything}");
    assert_eq!(outcome.evidence["registered"], json!(["phone", "password"]));
}

#[tokio::test]
async fn a_temporary_access_pass_does_not_count_as_phishing_resistant() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    mount_methods(&server, &["password", "temporaryAccessPass"]).await;
    let check = build(&connectors(&server, dir.path()), PHISHING_RESISTANT);

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Fail, "{outcome:?}");
}

#[tokio::test]
async fn every_next_link_page_is_read_so_a_key_on_the_last_page_counts() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    let next = format!(
        "{}/v1.0/users/{ALICE}/authentication/methods?$skiptoken=RFNwdAIAAQAAAD8",
        server.uri()
    );
    Mock::given(method("GET"))
        .and(path(methods_path(ALICE)))
        .and(query_param("$skiptoken", "RFNwdAIAAQAAAD8"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&["fido2"], None)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(methods_path(ALICE)))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(page(&["password", "phone"], Some(next))),
        )
        .expect(1)
        .mount(&server)
        .await;
    let check = build(&connectors(&server, dir.path()), PHISHING_RESISTANT);

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
    assert_eq!(
        outcome.evidence["registered"],
        json!(["fido2", "phone", "password"])
    );
}

#[tokio::test]
async fn a_next_link_that_never_ends_is_followed_only_to_the_bound_and_is_not_evaluated() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    let again = format!(
        "{}/v1.0/users/{ALICE}/authentication/methods?$skiptoken=again",
        server.uri()
    );
    Mock::given(method("GET"))
        .and(path(methods_path(ALICE)))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&["fido2"], Some(again))))
        .mount(&server)
        .await;
    let check = build(&connectors(&server, dir.path()), PHISHING_RESISTANT);

    let outcome = evaluate(&check).await;

    // Even with a FIDO2 key on every page read: an unfinished list is not a verdict.
    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    assert_eq!(
        graph_gets(&server).await,
        pimgate::connectors::graph::methods::MAX_METHOD_PAGES
    );
}

#[tokio::test]
async fn a_403_from_graph_is_not_evaluated_and_the_permission_is_named_for_the_operator() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    Mock::given(method("GET"))
        .and(path(methods_path(ALICE)))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "error": {
                "code": "Authorization_RequestDenied",
                "message": "Insufficient privileges to complete the operation.",
                "innerError": { "date": "2026-11-24T18:05:00", "request-id": "5d6e7f80-1111-4222-8333-944455566677" }
            }
        })))
        .mount(&server)
        .await;
    let check = build(&connectors(&server, dir.path()), PHISHING_RESISTANT);

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    assert!(outcome.message.contains("graph"), "{}", outcome.message);
    assert!(
        !outcome.message.contains("Authorization_RequestDenied"),
        "{}",
        outcome.message
    );
    assert!(
        outcome.evidence["error_detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("UserAuthenticationMethod.Read.All")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_token_without_the_permission_is_not_evaluated_without_asking_graph() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, &["User.Read.All", "GroupMember.Read.All"]).await;
    let check = build(&connectors(&server, dir.path()), PHISHING_RESISTANT);

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    assert_eq!(graph_gets(&server).await, 0, "{outcome:?}");
    assert!(
        outcome.evidence["error_detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("UserAuthenticationMethod.Read.All")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_user_graph_does_not_know_is_not_evaluated_rather_than_failed() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    Mock::given(method("GET"))
        .and(path(methods_path(ALICE)))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "error": {
                "code": "Request_ResourceNotFound",
                "message": format!("Resource '{ALICE}' does not exist or one of its queried reference-property objects are not present.")
            }
        })))
        .mount(&server)
        .await;
    let check = build(&connectors(&server, dir.path()), PHISHING_RESISTANT);

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    assert!(
        outcome.message.contains("does not know"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn a_500_a_timeout_or_garbage_is_not_evaluated_never_a_pass() {
    let faults = [
        ("500", ResponseTemplate::new(500).set_body_json(json!({"error": {"code": "generalException", "message": "General exception while processing."}}))),
        (
            "timeout",
            ResponseTemplate::new(200)
                .set_body_json(page(&["fido2"], None))
                .set_delay(Duration::from_millis(1500)),
        ),
        ("html", ResponseTemplate::new(200).set_body_string("<html>sign in</html>")),
        ("no value", ResponseTemplate::new(200).set_body_json(json!({"methods": [{"@odata.type": "#microsoft.graph.fido2AuthenticationMethod"}]}))),
        ("no type", ResponseTemplate::new(200).set_body_json(json!({"value": [{"id": "x", "aaGuid": "2fc0579f-8113-47ea-b116-bb5a8db9202a"}]}))),
    ];
    for (name, response) in faults {
        let server = MockServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        mount_token(&server, ROLES).await;
        Mock::given(method("GET"))
            .and(path(methods_path(ALICE)))
            .respond_with(response)
            .mount(&server)
            .await;
        let check = build(&connectors(&server, dir.path()), PHISHING_RESISTANT);

        let outcome = evaluate(&check).await;

        assert_eq!(outcome.status, CheckStatus::Error, "{name}: {outcome:?}");
    }
}

#[tokio::test]
async fn a_second_decision_is_answered_from_the_cache() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    // `expect(1)`: Graph is asked once for both decisions.
    mount_methods(&server, &["fido2"]).await;
    let connectors = connectors(&server, dir.path());
    let check = build(&connectors, PHISHING_RESISTANT);
    let other = build(&connectors, "auth_methods: { any_of: [fido2] }");

    let first = evaluate(&check).await;
    let second = evaluate(&other).await;

    assert_eq!(first.status, CheckStatus::Pass, "{first:?}");
    assert_eq!(second.status, CheckStatus::Pass, "{second:?}");
    assert_eq!(second.evidence["upstream"][0]["cached"], json!(true));
    assert_eq!(graph_gets(&server).await, 1);
}

#[tokio::test]
async fn failures_are_not_cached_so_the_next_decision_asks_again() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    Mock::given(method("GET"))
        .and(path(methods_path(ALICE)))
        .respond_with(ResponseTemplate::new(200).set_body_string("garbage"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(methods_path(ALICE)))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&["fido2"], None)))
        .mount(&server)
        .await;
    let check = build(&connectors(&server, dir.path()), PHISHING_RESISTANT);

    assert_eq!(evaluate(&check).await.status, CheckStatus::Error);
    assert_eq!(evaluate(&check).await.status, CheckStatus::Pass);
}

#[test]
fn an_auth_methods_check_tells_readiness_it_needs_user_authentication_method_read_all() {
    let spec: auth_methods::AuthMethodsSpec =
        yaml_serde::from_str("{ phishing_resistant: true }").unwrap();
    let (lists, windows) = (BTreeMap::new(), BTreeMap::new());
    let check = auth_methods::build(
        &spec,
        &BuildEnv {
            lists: &lists,
            windows: &windows,
            connectors: &Connectors::none(),
        },
    )
    .unwrap();
    let names: Vec<&str> = check
        .upstream_permissions()
        .iter()
        .map(|need| need.permission.name)
        .collect();
    assert_eq!(names, ["UserAuthenticationMethod.Read.All"]);
}

#[tokio::test]
async fn rules_test_stubs_auth_methods_with_facts() {
    let rules = "
policies:
  - name: critical-needs-a-key
    match: {}
    require:
      - auth_methods: { phishing_resistant: true }
      - duration: { max: PT2H }
    on_error: deny
";
    let cases = "
cases:
  - name: a requester with a key is approved
    now: '2026-11-24T10:00:00Z'
    request: { role: Exchange Administrator, duration: PT1H }
    facts: { auth_methods: pass }
    expect: { outcome: Approved, policy: critical-needs-a-key }
  - name: a requester without one is denied with the stubbed reason
    now: '2026-11-24T10:00:00Z'
    request: { role: Exchange Administrator, duration: PT1H }
    facts: { auth_methods: { status: fail, message: no phishing-resistant method } }
    expect: { outcome: Denied, reason_contains: no phishing-resistant method }
  - name: Graph down denies as on_error says
    now: '2026-11-24T10:00:00Z'
    request: { role: Exchange Administrator, duration: PT1H }
    facts: { auth_methods: error }
    expect: { outcome: Denied }
";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    std::fs::write(dir.path().join("rules.test.yaml"), cases).unwrap();
    let report = pimgate::workbench::testing::run_tests(dir.path())
        .await
        .unwrap_or_else(|problems| panic!("{problems:?}"));
    assert_eq!((report.passed, report.failed), (3, 0), "{report}");
}
