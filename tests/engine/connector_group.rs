//! The `group` check against a Microsoft Graph stand-in on loopback that answers Entra's token
//! endpoint and `users/{id}/transitiveMemberOf/microsoft.graph.group` in their real shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::auth as common_auth;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pimgate::checks::registry::{BuildEnv, CheckSpec};
use pimgate::checks::{Check, CheckContext, CheckOutcome, CheckStatus, group};
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
const OPS: &str = "0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d";
const NESTED: &str = "1d3e9a5f-2222-4b3c-8d4e-6f7a8b9c0d1e";
const CONTRACTORS: &str = "2e4f0b6a-3333-4c4d-9e5f-7a8b9c0d1e2f";
const ROLES: &[&str] = &["User.Read.All", "GroupMember.Read.All"];

static ENTRA_KEY: LazyLock<common_auth::TestKey> =
    LazyLock::new(|| common_auth::TestKey::generate("entra-group-key"));

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

fn groups_path(user: &str) -> String {
    format!("/v1.0/users/{user}/transitiveMemberOf/microsoft.graph.group")
}

/// One page of `transitiveMemberOf/microsoft.graph.group?$select=id,displayName` as Graph sends it.
fn page(groups: &[(&str, &str)], next: Option<String>) -> Value {
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#groups(id,displayName)",
        "value": groups.iter().map(|(id, name)| json!({
            "@odata.type": "#microsoft.graph.group",
            "id": id,
            "displayName": name,
        })).collect::<Vec<_>>(),
    });
    if let Some(next) = next {
        body["@odata.nextLink"] = json!(next);
    }
    body
}

async fn mount_groups(server: &MockServer, groups: &[(&str, &str)]) {
    Mock::given(method("GET"))
        .and(path(groups_path(ALICE)))
        .and(query_param("$select", "id,displayName"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(groups, None)))
        .expect(1)
        .mount(server)
        .await;
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
    assert_eq!(spec.kind(), "group");
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

#[tokio::test]
async fn a_transitive_member_of_a_required_group_passes_holding_now() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    mount_groups(&server, &[(NESTED, "Nested"), (OPS, "Ops Admins")]).await;
    let check = build(
        &connectors(&server, dir.path()),
        &format!("group: {{ member_of: ['{}'] }}", OPS.to_uppercase()),
    );

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
    assert!(
        outcome.message.contains("Ops Admins"),
        "{}",
        outcome.message
    );
    // Membership is current state: it holds now, not at the later requested start.
    assert_eq!(outcome.holds_at, Some(now()));
    assert_eq!(outcome.evidence["member_of"], json!([OPS]));
    assert_eq!(outcome.evidence["upstream"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn someone_in_none_of_the_required_groups_fails() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    mount_groups(&server, &[(NESTED, "Nested")]).await;
    let check = build(
        &connectors(&server, dir.path()),
        &format!("group: {{ member_of: [{OPS}] }}"),
    );

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Fail, "{outcome:?}");
    assert!(
        outcome.message.contains("not a member"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn membership_of_an_excluded_group_fails_even_with_a_required_one() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    mount_groups(
        &server,
        &[(OPS, "Ops Admins"), (CONTRACTORS, "Contractors")],
    )
    .await;
    let check = build(
        &connectors(&server, dir.path()),
        &format!("group: {{ member_of: [{OPS}], not_member_of: [{CONTRACTORS}] }}"),
    );

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Fail, "{outcome:?}");
    assert!(
        outcome.message.contains("Contractors"),
        "{}",
        outcome.message
    );
    assert_eq!(outcome.evidence["not_member_of"], json!([CONTRACTORS]));
}

#[tokio::test]
async fn every_next_link_page_is_read_so_a_group_on_the_last_page_counts() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    let next = format!(
        "{}/v1.0/users/{ALICE}/transitiveMemberOf/microsoft.graph.group?$select=id,displayName&$skiptoken=RFNwdAIAAQAAAD8",
        server.uri()
    );
    Mock::given(method("GET"))
        .and(path(groups_path(ALICE)))
        .and(query_param("$skiptoken", "RFNwdAIAAQAAAD8"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(page(&[(CONTRACTORS, "Contractors")], None)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(groups_path(ALICE)))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(page(&[(NESTED, "Nested")], Some(next))),
        )
        .expect(1)
        .mount(&server)
        .await;
    let check = build(
        &connectors(&server, dir.path()),
        &format!("group: {{ not_member_of: [{CONTRACTORS}] }}"),
    );

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Fail, "{outcome:?}");
    assert_eq!(outcome.evidence["groups_read"], json!(2));
}

#[tokio::test]
async fn a_next_link_off_the_graph_url_is_not_followed_and_the_check_is_not_evaluated() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    let elsewhere = "http://127.0.0.2:9/v1.0/users/x/transitiveMemberOf?$skiptoken=abc".to_string();
    Mock::given(method("GET"))
        .and(path(groups_path(ALICE)))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(page(&[(NESTED, "Nested")], Some(elsewhere))),
        )
        .mount(&server)
        .await;
    let check = build(
        &connectors(&server, dir.path()),
        &format!("group: {{ not_member_of: [{CONTRACTORS}] }}"),
    );

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
}

#[tokio::test]
async fn a_403_from_graph_is_not_evaluated_and_the_permission_is_only_in_the_evidence() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    Mock::given(method("GET"))
        .and(path(groups_path(ALICE)))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "error": { "code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation." }
        })))
        .mount(&server)
        .await;
    let check = build(
        &connectors(&server, dir.path()),
        &format!("group: {{ not_member_of: [{CONTRACTORS}] }}"),
    );

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    assert!(outcome.message.contains("graph"), "{}", outcome.message);
    assert!(
        !outcome.message.contains("GroupMember"),
        "{}",
        outcome.message
    );
    assert!(
        outcome.evidence["error_detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("GroupMember.Read.All")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_token_without_group_member_read_all_is_not_evaluated_without_asking_graph() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Without the permission Graph would leave groups out rather than refuse: it is never asked.
    mount_token(&server, &["User.Read.All"]).await;
    let check = build(
        &connectors(&server, dir.path()),
        &format!("group: {{ not_member_of: [{CONTRACTORS}] }}"),
    );

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    let gets = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.method.as_str() == "GET")
        .count();
    assert_eq!(gets, 0, "{outcome:?}");
}

#[tokio::test]
async fn garbage_from_graph_is_not_evaluated_never_a_pass() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_token(&server, ROLES).await;
    Mock::given(method("GET"))
        .and(path(groups_path(ALICE)))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>sign in</html>"))
        .mount(&server)
        .await;
    let check = build(
        &connectors(&server, dir.path()),
        &format!("group: {{ not_member_of: [{CONTRACTORS}] }}"),
    );

    let outcome = evaluate(&check).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
}

#[test]
fn a_group_check_tells_readiness_it_needs_group_member_read_all() {
    let spec: group::GroupSpec =
        yaml_serde::from_str(&format!("{{ member_of: [{OPS}] }}")).unwrap();
    let (lists, windows) = (BTreeMap::new(), BTreeMap::new());
    let check = group::build(
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
    assert_eq!(names, ["GroupMember.Read.All"]);
}
