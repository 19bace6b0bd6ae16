//! The `itsm` check against ServiceNow's Table API and Jira's REST API stand-ins (wiremock on
//! loopback, answering the vendors' JSON shapes from tests/fixtures/itsm/).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::fixtures as common_fixtures;
use crate::support::logs as common_logs;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use pimgate::checks::itsm::{self, ItsmSpec, RequesterDirectory};
use pimgate::checks::registry::BuildEnv;
use pimgate::checks::{Check, CheckContext, CheckOutcome, CheckStatus};
use pimgate::connectors::http::{Fetched, UpstreamCall, UpstreamError};
use pimgate::connectors::jira::{Jira, JiraFlavor, JiraSettings};
use pimgate::connectors::secrets::SecretRef;
use pimgate::connectors::servicenow::{ServiceNow, ServiceNowAuth, ServiceNowSettings};
use pimgate::connectors::{BuildContext, Connectors, UserProfile};
use pimgate::payload::{
    Action, ActivationRequest, ExpirationKind, ResourceType, Schedule, Target, Ticket,
};
use serde_json::Value;
use tempfile::TempDir;
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PRINCIPAL: &str = "5b2a9c1e-2222-4d3e-8f40-1a2b3c4d5e6f";
const ADA_ACCOUNT: &str = "5b10ac8d82e05b22cc7d4ef5";

/// The requester as the directory knows them; the ITSM fixtures assign tickets to Ada.
fn ada() -> UserProfile {
    UserProfile {
        id: PRINCIPAL.to_string(),
        user_principal_name: Some("ada@contoso.onmicrosoft.com".to_string()),
        mail: Some("Ada.Lovelace@contoso.com".to_string()),
        display_name: Some("Ada Lovelace".to_string()),
        ..Default::default()
    }
}

/// A directory that always gives the same answer (or fails like an unreachable Graph).
#[derive(Debug)]
struct FixedDirectory(Option<UserProfile>);

#[async_trait]
impl RequesterDirectory for FixedDirectory {
    async fn profile(
        &self,
        _principal_id: &str,
        _deadline: tokio::time::Instant,
    ) -> (
        Result<Fetched<UserProfile>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        match &self.0 {
            Some(profile) => (Ok(Fetched::Found(profile.clone())), Vec::new()),
            None => (
                Err(UpstreamError::Unreachable { connector: "graph" }),
                Vec::new(),
            ),
        }
    }
}

fn fixture(name: &str) -> Value {
    common_fixtures::json("itsm", name)
}

/// The change fixture with some fields replaced.
fn change_with(changes: &[(&str, &str)]) -> Value {
    let mut body = fixture("servicenow-change.json");
    for (field, value) in changes {
        body["result"][0][*field] = Value::String(value.to_string());
    }
    body
}

fn context() -> BuildContext {
    BuildContext {
        http: reqwest::Client::new(),
        tenant_id: "contoso.onmicrosoft.com".to_string(),
    }
}

/// Owns the secret files the connectors read at build time.
struct Upstreams {
    _secrets: TempDir,
    connectors: Arc<Connectors>,
}

fn secret_file(dir: &TempDir, name: &str, value: &str) -> SecretRef {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    SecretRef {
        env: None,
        file: Some(path),
    }
}

fn servicenow_settings(base_url: &str, dir: &TempDir) -> ServiceNowSettings {
    ServiceNowSettings {
        base_url: Some(base_url.to_string()),
        username: Some("svc_pimgate".to_string()),
        password: Some(secret_file(dir, "sn-password", "s3cret-pass")),
        timeout_ms: 2000,
        ..Default::default()
    }
}

fn servicenow(base_url: &str) -> Upstreams {
    let dir = TempDir::new().unwrap();
    let settings = servicenow_settings(base_url, &dir);
    let connector = ServiceNow::new(&settings, &context()).unwrap();
    Upstreams {
        _secrets: dir,
        connectors: Arc::new(Connectors {
            servicenow: Some(Arc::new(connector)),
            ..Default::default()
        }),
    }
}

fn servicenow_oauth(base_url: &str) -> Upstreams {
    let dir = TempDir::new().unwrap();
    let settings = ServiceNowSettings {
        base_url: Some(base_url.to_string()),
        auth: ServiceNowAuth::Oauth,
        client_id: Some("be3aeb583ace210011c15b24a43e25d8".to_string()),
        client_secret: Some(secret_file(&dir, "sn-client-secret", "client-s3cret")),
        ..Default::default()
    };
    let connector = ServiceNow::new(&settings, &context()).unwrap();
    Upstreams {
        _secrets: dir,
        connectors: Arc::new(Connectors {
            servicenow: Some(Arc::new(connector)),
            ..Default::default()
        }),
    }
}

fn jira(base_url: &str, flavor: JiraFlavor) -> Upstreams {
    let dir = TempDir::new().unwrap();
    let settings = JiraSettings {
        base_url: Some(base_url.to_string()),
        flavor,
        email: Some("pimgate@contoso.com".to_string()),
        api_token: Some(secret_file(&dir, "jira-token", "atlassian-api-token")),
        personal_access_token: Some(secret_file(&dir, "jira-pat", "datacenter-pat")),
        ..Default::default()
    };
    let connector = Jira::new(&settings, &context()).unwrap();
    Upstreams {
        _secrets: dir,
        connectors: Arc::new(Connectors {
            jira: Some(Arc::new(connector)),
            ..Default::default()
        }),
    }
}

fn check(
    spec: &str,
    connectors: &Arc<Connectors>,
    requester: Option<UserProfile>,
) -> Arc<dyn Check> {
    let spec: ItsmSpec = yaml_serde::from_str(spec).unwrap();
    let lists = BTreeMap::new();
    let windows = BTreeMap::new();
    let env = BuildEnv {
        lists: &lists,
        windows: &windows,
        connectors,
    };
    itsm::build_with_directory(&spec, &env, Arc::new(FixedDirectory(requester))).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T18:05:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Ada activates Global Administrator now for one hour, naming `ticket`.
fn request(ticket: Option<&str>) -> ActivationRequest {
    ActivationRequest {
        request_id: Some("req-1".to_string()),
        resource_type: ResourceType::EntraRoles,
        principal_id: PRINCIPAL.to_string(),
        principal_type: Some("User".to_string()),
        action: Action::SelfActivate,
        target: Target::EntraRole {
            role_definition_id: "62e90394-69f5-4237-9190-012177145e10".to_string(),
            directory_scope_id: "/".to_string(),
            app_scope_id: None,
        },
        justification: Some("rotate the federation signing certificate".to_string()),
        ticket: ticket.map(|number| Ticket {
            number: Some(number.to_string()),
            system: None,
        }),
        schedule: Schedule {
            start: None,
            expiration_kind: ExpirationKind::AfterDuration,
            duration: Some(chrono::Duration::hours(1)),
            end: None,
        },
    }
}

async fn run_within(
    check: &Arc<dyn Check>,
    request: &ActivationRequest,
    budget: Duration,
) -> CheckOutcome {
    let deadline = tokio::time::Instant::now() + budget;
    check
        .evaluate(&CheckContext::new(request, now(), deadline))
        .await
}

async fn run(check: &Arc<dyn Check>, request: &ActivationRequest) -> CheckOutcome {
    run_within(check, request, Duration::from_secs(5)).await
}

fn upstream(outcome: &CheckOutcome) -> Vec<Value> {
    outcome.evidence["upstream"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

const CHANGE_RULE: &str = "{ system: servicenow, tables: [change_request], states: [implement], assigned_to_requester: true, covers_activation: true }";

fn table(table: &str) -> String {
    format!("/api/now/table/{table}")
}

#[tokio::test]
async fn a_change_in_implement_assigned_to_the_requester_passes() {
    let server = MockServer::start().await;
    let basic = base64::engine::general_purpose::STANDARD.encode("svc_pimgate:s3cret-pass");
    Mock::given(method("GET"))
        .and(path(table("change_request")))
        .and(query_param("sysparm_query", "number=CHG0031337"))
        .and(query_param(
            "sysparm_fields",
            "number,state,assigned_to,assigned_to.email,assigned_to.user_name,requested_by,requested_by.email,requested_by.user_name,opened_by,opened_by.email,opened_by.user_name,start_date,end_date,work_start,work_end",
        ))
        .and(query_param("sysparm_limit", "1"))
        .and(query_param("sysparm_display_value", "false"))
        .and(query_param("sysparm_exclude_reference_link", "true"))
        .and(header("authorization", format!("Basic {basic}").as_str()))
        .and(header("accept", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("servicenow-change.json")))
        .expect(1)
        .mount(&server)
        .await;
    let upstreams = servicenow(&server.uri());
    let check = check(CHANGE_RULE, &upstreams.connectors, Some(ada()));

    let outcome = run(&check, &request(Some("chg0031337"))).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
    assert_eq!(
        outcome.message,
        "`CHG0031337` is in state `Implement`, its assigned_to is the requester, its planned window covers the activation"
    );
    assert_eq!(outcome.evidence["ticket_number"], "CHG0031337");
    assert_eq!(outcome.evidence["system"], "servicenow");
    assert_eq!(outcome.evidence["table"], "change_request");
    assert_eq!(outcome.evidence["state"], "Implement");
    assert_eq!(outcome.evidence["state_code"], "-1");
    assert_eq!(outcome.evidence["assignee"], "ada.lovelace@contoso.com");
    assert_eq!(
        outcome.evidence["window"]["start"],
        "2026-11-24T17:00:00+00:00"
    );
    let calls = upstream(&outcome);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["connector"], "servicenow");
    assert_eq!(calls[0]["operation"], "GET /api/now/table/change_request");
    assert_eq!(calls[0]["outcome"], "ok");
    assert_eq!(calls[0]["cached"], false);
}

#[tokio::test]
async fn a_change_that_is_not_implementing_fails_naming_its_state() {
    let cases = [
        ("3", "Closed"),
        ("4", "Canceled"),
        ("-2", "Scheduled"),
        ("42", "42"),
    ];
    for (code, name) in cases {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(table("change_request")))
            .respond_with(ResponseTemplate::new(200).set_body_json(change_with(&[("state", code)])))
            .mount(&server)
            .await;
        let upstreams = servicenow(&server.uri());
        let check = check(
            "{ system: servicenow, states: [Implement, Review] }",
            &upstreams.connectors,
            Some(ada()),
        );
        let outcome = run(&check, &request(Some("CHG0031337"))).await;
        assert_eq!(outcome.status, CheckStatus::Fail, "{code}");
        assert_eq!(
            outcome.message,
            format!(
                "`CHG0031337` is in state `{name}`; this role needs state `Implement` or `Review`"
            )
        );
    }
}

#[tokio::test]
async fn incident_states_are_read_by_name_and_by_code() {
    let cases = [
        (
            "1",
            "{ system: servicenow, tables: [incident], states: [New, In Progress] }",
            CheckStatus::Pass,
        ),
        (
            "2",
            "{ system: servicenow, tables: [incident], states: [new, in progress] }",
            CheckStatus::Pass,
        ),
        (
            "3",
            "{ system: servicenow, tables: [incident], states: [New, In Progress] }",
            CheckStatus::Fail,
        ),
        (
            "6",
            "{ system: servicenow, tables: [incident], states: [New, In Progress] }",
            CheckStatus::Fail,
        ),
        (
            "6",
            "{ system: servicenow, states: ['6'] }",
            CheckStatus::Pass,
        ),
        (
            "7",
            "{ system: servicenow, tables: [incident], states: [Resolved] }",
            CheckStatus::Fail,
        ),
    ];
    let names = [
        ("1", "New"),
        ("2", "In Progress"),
        ("3", "On Hold"),
        ("6", "Resolved"),
        ("7", "Closed"),
    ];
    for (code, rule, expected) in cases {
        let server = MockServer::start().await;
        let mut body = fixture("servicenow-incident.json");
        body["result"][0]["state"] = Value::String(code.to_string());
        Mock::given(method("GET"))
            .and(path(table("incident")))
            .and(query_param("sysparm_query", "number=INC0012345"))
            .and(query_param(
                "sysparm_fields",
                "number,state,assigned_to,assigned_to.email,assigned_to.user_name,caller_id,caller_id.email,caller_id.user_name,opened_by,opened_by.email,opened_by.user_name",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        let upstreams = servicenow(&server.uri());
        let check = check(rule, &upstreams.connectors, Some(ada()));
        let outcome = run(&check, &request(Some("INC0012345"))).await;
        assert_eq!(
            outcome.status, expected,
            "{code} {rule}: {}",
            outcome.message
        );
        let name = names.iter().find(|(known, _)| *known == code).unwrap().1;
        assert_eq!(outcome.evidence["state"], name, "{code}");
    }
}

#[tokio::test]
async fn an_unknown_number_fails_and_the_not_found_answer_is_cached() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(table("change_request")))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({ "result": [] })))
        .expect(1)
        .mount(&server)
        .await;
    let upstreams = servicenow(&server.uri());
    let check = check(CHANGE_RULE, &upstreams.connectors, Some(ada()));

    let first = run(&check, &request(Some("CHG0000001"))).await;
    let second = run(&check, &request(Some("CHG0000001"))).await;

    for outcome in [&first, &second] {
        assert_eq!(outcome.status, CheckStatus::Fail);
        assert_eq!(
            outcome.message,
            "`CHG0000001` does not exist in ServiceNow; check the number in PIM's ticket field"
        );
    }
    assert_eq!(upstream(&first)[0]["outcome"], "not_found");
    assert_eq!(upstream(&second)[0]["cached"], true);
    assert_eq!(upstream(&second)[0]["outcome"], "not_found");
}

#[tokio::test]
async fn a_second_lookup_of_the_same_ticket_is_served_from_the_cache() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(table("change_request")))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("servicenow-change.json")))
        .expect(1)
        .mount(&server)
        .await;
    let upstreams = servicenow(&server.uri());
    let check = check(CHANGE_RULE, &upstreams.connectors, Some(ada()));

    let first = run(&check, &request(Some("CHG0031337"))).await;
    let second = run(&check, &request(Some("CHG0031337"))).await;

    assert_eq!(first.status, CheckStatus::Pass, "{}", first.message);
    assert_eq!(second.status, CheckStatus::Pass, "{}", second.message);
    let cached = upstream(&second);
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0]["cached"], true);
    assert_eq!(cached[0]["attempts"], 0);
}

#[tokio::test]
async fn a_change_assigned_to_someone_else_or_nobody_fails() {
    let cases = [
        (
            change_with(&[
                ("assigned_to.email", "mallory@contoso.com"),
                ("assigned_to.user_name", "mallory"),
            ]),
            "`CHG0031337` is assigned to `mallory@contoso.com` (assigned_to), not to the requester (`ada.lovelace@contoso.com`, `ada@contoso.onmicrosoft.com`); assign the ticket to yourself or ask its assignee to activate",
        ),
        (
            change_with(&[
                ("assigned_to", ""),
                ("assigned_to.email", ""),
                ("assigned_to.user_name", ""),
            ]),
            "`CHG0031337` has no `assigned_to`; assign it to the requester",
        ),
    ];
    for (body, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(table("change_request")))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&server)
            .await;
        let upstreams = servicenow(&server.uri());
        let check = check(
            "{ system: servicenow, assigned_to_requester: true }",
            &upstreams.connectors,
            Some(ada()),
        );
        let outcome = run(&check, &request(Some("CHG0031337"))).await;
        assert_eq!(outcome.status, CheckStatus::Fail);
        assert_eq!(outcome.message, expected);
    }
}

#[tokio::test]
async fn the_requester_may_match_another_listed_role_by_login() {
    let server = MockServer::start().await;
    let body = change_with(&[
        ("assigned_to.email", "mallory@contoso.com"),
        ("requested_by.email", ""),
        ("requested_by.user_name", "ADA@contoso.onmicrosoft.com"),
    ]);
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let upstreams = servicenow(&server.uri());
    let check = check(
        "{ system: servicenow, assigned_to_requester: true, requester_roles: [assigned_to, requested_by] }",
        &upstreams.connectors,
        Some(ada()),
    );
    let outcome = run(&check, &request(Some("CHG0031337"))).await;
    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
    assert_eq!(outcome.evidence["requester_role"], "requested_by");
}

#[tokio::test]
async fn a_requester_the_directory_cannot_resolve_is_an_error_not_a_failure() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("servicenow-change.json")))
        .mount(&server)
        .await;
    let upstreams = servicenow(&server.uri());
    let check = check(
        "{ system: servicenow, assigned_to_requester: true }",
        &upstreams.connectors,
        None,
    );
    let outcome = run(&check, &request(Some("CHG0031337"))).await;
    assert_eq!(outcome.status, CheckStatus::Error);
    assert_eq!(
        outcome.message,
        "cannot map the requester to an ITSM user: graph could not be reached"
    );
}

#[tokio::test]
async fn the_planned_window_must_cover_the_whole_activation() {
    // The activation runs 18:05–19:05 UTC.
    let cases = [
        (change_with(&[]), CheckStatus::Pass, None),
        (
            change_with(&[("end_date", "2026-11-24 19:00:00")]),
            CheckStatus::Fail,
            Some(
                "the activation (2026-11-24 18:05 UTC – 2026-11-24 19:05 UTC) is outside `CHG0031337`'s planned window (2026-11-24 17:00 UTC – 2026-11-24 19:00 UTC); activate inside the window or reschedule the change",
            ),
        ),
        (
            change_with(&[("start_date", "2026-11-24 18:30:00")]),
            CheckStatus::Fail,
            None,
        ),
        (
            change_with(&[("start_date", ""), ("end_date", "")]),
            CheckStatus::Fail,
            Some(
                "`CHG0031337` has no planned start and end date, so it cannot cover the activation; fill in the planned dates",
            ),
        ),
    ];
    for (body, expected, message) in cases {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&server)
            .await;
        let upstreams = servicenow(&server.uri());
        let check = check(
            "{ system: servicenow, covers_activation: true }",
            &upstreams.connectors,
            Some(ada()),
        );
        let outcome = run(&check, &request(Some("CHG0031337"))).await;
        assert_eq!(outcome.status, expected, "{}", outcome.message);
        if let Some(message) = message {
            assert_eq!(outcome.message, message);
        }
    }
}

#[tokio::test]
async fn the_oauth_token_is_fetched_once_and_reused() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains(
            "client_id=be3aeb583ace210011c15b24a43e25d8",
        ))
        .and(body_string_contains("client_secret=client-s3cret"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("servicenow-oauth-token.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let token = fixture("servicenow-oauth-token.json")["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for number in ["CHG0031337", "CHG0031338"] {
        Mock::given(method("GET"))
            .and(path(table("change_request")))
            .and(query_param(
                "sysparm_query",
                format!("number={number}").as_str(),
            ))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(change_with(&[("number", number)])),
            )
            .expect(1)
            .mount(&server)
            .await;
    }
    let upstreams = servicenow_oauth(&server.uri());
    let check = check(CHANGE_RULE, &upstreams.connectors, Some(ada()));

    // Two different numbers, so the second lookup is not a ticket-cache hit.
    let first = run(&check, &request(Some("CHG0031337"))).await;
    let second = run(&check, &request(Some("CHG0031338"))).await;

    assert_eq!(first.status, CheckStatus::Pass, "{}", first.message);
    assert_eq!(second.status, CheckStatus::Pass, "{}", second.message);
    let operations: Vec<Value> = upstream(&first)
        .iter()
        .map(|call| call["operation"].clone())
        .collect();
    assert_eq!(
        operations,
        ["POST /oauth_token.do", "GET /api/now/table/change_request"]
    );
    assert_eq!(upstream(&second).len(), 1);
}

#[tokio::test]
async fn a_rejected_oauth_client_is_an_error_whose_evidence_names_the_credentials() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "error_description": "access_denied", "error": "server_error"
        })))
        .mount(&server)
        .await;
    let upstreams = servicenow_oauth(&server.uri());
    let check = check(CHANGE_RULE, &upstreams.connectors, Some(ada()));
    let outcome = run(&check, &request(Some("CHG0031337"))).await;
    assert_eq!(outcome.status, CheckStatus::Error);
    assert_eq!(
        outcome.message,
        "pimgate could not authenticate to servicenow, so ticket `CHG0031337` could not be checked"
    );
    assert!(
        outcome.evidence["error_detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("check client_id and client_secret")),
        "{outcome:?}"
    );
    assert!(!format!("{outcome:?}").contains("client-s3cret"));
    assert_eq!(upstream(&outcome)[0]["outcome"], "auth_failed");
}

#[tokio::test]
async fn upstream_failures_are_errors_answered_inside_the_deadline() {
    let cases = [
        (
            "a 500",
            ResponseTemplate::new(500),
            "servicenow answered with an error",
        ),
        (
            "a 429",
            ResponseTemplate::new(429).insert_header("retry-after", "30"),
            "servicenow is rate-limiting pimgate",
        ),
        (
            "garbage",
            ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"),
            "servicenow sent an answer pimgate could not read",
        ),
        (
            "a wrong shape",
            ResponseTemplate::new(200).set_body_json(serde_json::json!({ "records": [] })),
            "servicenow sent an answer pimgate could not read",
        ),
        (
            "a hang",
            ResponseTemplate::new(200).set_delay(Duration::from_secs(30)),
            "servicenow did not answer in time",
        ),
    ];
    for (name, response, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(response)
            .mount(&server)
            .await;
        let upstreams = servicenow(&server.uri());
        let check = check(CHANGE_RULE, &upstreams.connectors, Some(ada()));
        let started = std::time::Instant::now();
        let outcome = run_within(
            &check,
            &request(Some("CHG0031337")),
            Duration::from_millis(400),
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{name}: {:?}",
            started.elapsed()
        );
        assert_eq!(outcome.status, CheckStatus::Error, "{name}");
        assert_eq!(
            outcome.message,
            format!("{expected}, so ticket `CHG0031337` could not be checked"),
            "{name}"
        );
        assert_eq!(upstream(&outcome).len(), 1, "{name}");
    }
}

#[tokio::test]
async fn failures_are_not_cached() {
    let server = MockServer::start().await;
    // 500 is not retried (503 would be, and the retry would succeed within the same decision).
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("servicenow-change.json")))
        .expect(1)
        .mount(&server)
        .await;
    let upstreams = servicenow(&server.uri());
    let check = check(CHANGE_RULE, &upstreams.connectors, Some(ada()));
    let first = run(&check, &request(Some("CHG0031337"))).await;
    let second = run(&check, &request(Some("CHG0031337"))).await;
    assert_eq!(first.status, CheckStatus::Error);
    assert_eq!(second.status, CheckStatus::Pass, "{}", second.message);
}

#[tokio::test]
async fn a_refused_connection_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let upstreams = servicenow(&format!("http://{address}"));
    let check = check(CHANGE_RULE, &upstreams.connectors, Some(ada()));
    let outcome = run(&check, &request(Some("CHG0031337"))).await;
    assert_eq!(outcome.status, CheckStatus::Error);
    assert_eq!(
        outcome.message,
        "servicenow could not be reached, so ticket `CHG0031337` could not be checked"
    );
}

#[tokio::test]
async fn the_ticket_number_comes_from_the_justification_when_the_field_is_empty() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(query_param("sysparm_query", "number=CHG0031337"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("servicenow-change.json")))
        .expect(1)
        .mount(&server)
        .await;
    let upstreams = servicenow(&server.uri());
    let check = check(CHANGE_RULE, &upstreams.connectors, Some(ada()));
    let mut request = request(None);
    request.justification = Some("per chg0031337 and OPS-12: rotate the certificate".to_string());
    let outcome = run(&check, &request).await;
    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
    assert_eq!(outcome.evidence["source"], "justification");
}

#[tokio::test]
async fn a_missing_or_misplaced_ticket_fails_without_asking_servicenow() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let upstreams = servicenow(&server.uri());
    let check = check(CHANGE_RULE, &upstreams.connectors, Some(ada()));
    let cases = [
        (
            None,
            "no ticket number was given; add the ServiceNow ticket number in PIM's ticket field",
        ),
        (
            Some("INC0012345"),
            "`INC0012345` belongs to table `incident`, but this role accepts only `change_request` tickets",
        ),
        (
            Some("RITM0012345"),
            "`RITM0012345` belongs to table `sc_req_item`, but this role accepts only `change_request` tickets",
        ),
        (
            Some("CHG0031337^ORnumber=CHG1"),
            "`CHG0031337^ORnumber=CHG1` is not a ServiceNow number; give a number such as `CHG0031337` in PIM's ticket field",
        ),
    ];
    for (ticket, expected) in cases {
        let outcome = run(&check, &request(ticket)).await;
        assert_eq!(outcome.status, CheckStatus::Fail, "{ticket:?}");
        assert_eq!(outcome.message, expected);
    }
}

#[tokio::test]
async fn an_unconfigured_connector_is_an_error() {
    let check = check(CHANGE_RULE, &Connectors::none(), Some(ada()));
    let outcome = run(&check, &request(Some("CHG0031337"))).await;
    assert_eq!(outcome.status, CheckStatus::Error);
    assert_eq!(
        outcome.message,
        "the servicenow connector is not configured, so the ticket could not be checked"
    );
}

#[tokio::test]
async fn jira_cloud_matches_a_hidden_assignee_through_a_user_showing_exactly_the_requesters_email()
{
    let server = MockServer::start().await;
    let mut users = fixture("jira-cloud-user-search.json");
    users[0]["emailAddress"] = Value::String("ada.lovelace@contoso.com".to_string());
    let basic =
        base64::engine::general_purpose::STANDARD.encode("pimgate@contoso.com:atlassian-api-token");
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/OPS-12"))
        .and(query_param("fields", "status,assignee,reporter,duedate"))
        .and(header("authorization", format!("Basic {basic}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("jira-cloud-issue.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/user/search"))
        .and(query_param("query", "ada.lovelace@contoso.com"))
        .and(header("authorization", format!("Basic {basic}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(users))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/user/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .mount(&server)
        .await;
    let upstreams = jira(&server.uri(), JiraFlavor::Cloud);
    let check = check(
        "{ system: jira, status_categories: [indeterminate], assigned_to_requester: true }",
        &upstreams.connectors,
        Some(ada()),
    );
    let first = run(&check, &request(Some("ops-12"))).await;
    let second = run(&check, &request(Some("OPS-12"))).await;
    for outcome in [&first, &second] {
        assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
        assert_eq!(outcome.evidence["assignee"], ADA_ACCOUNT);
        assert_eq!(outcome.evidence["status_category"], "indeterminate");
    }
    let operations: Vec<Value> = upstream(&first)
        .iter()
        .map(|call| call["operation"].clone())
        .collect();
    assert_eq!(
        operations,
        ["GET /rest/api/3/issue/{key}", "GET /rest/api/3/user/search"]
    );
    assert!(upstream(&second).iter().all(|call| call["cached"] == true));
}

const JIRA_RULE: &str =
    "{ system: jira, status_categories: [indeterminate], assigned_to_requester: true }";

/// Jira Cloud answering `OPS-12` (assigned to Ada's account, e-mail hidden) and the user search for
/// Ada's mail with `users`.
async fn jira_searching(users: Value) -> (MockServer, Upstreams) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/OPS-12"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("jira-cloud-issue.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/user/search"))
        .and(query_param("query", "ada.lovelace@contoso.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(users))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/user/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .mount(&server)
        .await;
    let upstreams = jira(&server.uri(), JiraFlavor::Cloud);
    (server, upstreams)
}

/// A Jira Cloud user as `GET /rest/api/3/user/search` lists one; `email: None` is a hidden address.
fn jira_user(account_id: &str, email: Option<&str>) -> Value {
    let mut user = serde_json::json!({
        "self": format!("https://contoso.atlassian.net/rest/api/3/user?accountId={account_id}"),
        "accountId": account_id,
        "accountType": "atlassian",
        "avatarUrls": {},
        "displayName": "Ada Lovelace",
        "active": true,
        "timeZone": "Europe/Berlin",
        "locale": "en_US"
    });
    if let Some(email) = email {
        user["emailAddress"] = Value::String(email.to_string());
    }
    user
}

fn assert_identity_unknown(outcome: &CheckOutcome) {
    assert_eq!(outcome.status, CheckStatus::Error, "{}", outcome.message);
    assert!(outcome.message.contains("Jira"), "{}", outcome.message);
    assert!(
        !outcome.message.contains("assign the ticket to yourself"),
        "not the requester's fault: {}",
        outcome.message
    );
}

#[tokio::test]
async fn a_lone_jira_user_with_a_hidden_email_is_not_taken_for_the_requester() {
    let (_server, upstreams) = jira_searching(fixture("jira-cloud-user-search.json")).await;
    let check = check(JIRA_RULE, &upstreams.connectors, Some(ada()));
    let outcome = run(&check, &request(Some("OPS-12"))).await;
    assert_identity_unknown(&outcome);
}

#[tokio::test]
async fn a_jira_user_found_by_a_similar_address_or_the_display_name_is_not_the_requester() {
    let (_server, upstreams) = jira_searching(serde_json::json!([
        jira_user(ADA_ACCOUNT, Some("bada.lovelace@contoso.com")),
        jira_user(ADA_ACCOUNT, Some("ada.lovelace@contoso.com.evil")),
    ]))
    .await;
    let check = check(JIRA_RULE, &upstreams.connectors, Some(ada()));
    let outcome = run(&check, &request(Some("OPS-12"))).await;
    assert_identity_unknown(&outcome);
}

#[tokio::test]
async fn of_several_jira_users_only_the_one_with_exactly_the_requesters_email_counts() {
    let (_server, upstreams) = jira_searching(serde_json::json!([
        jira_user(ADA_ACCOUNT, None),
        jira_user(
            "5b10a2844c20165700ede21g",
            Some(" ADA.LOVELACE@contoso.com ")
        ),
    ]))
    .await;
    let check_rule = check(JIRA_RULE, &upstreams.connectors, Some(ada()));
    let outcome = run(&check_rule, &request(Some("OPS-12"))).await;
    assert_eq!(outcome.status, CheckStatus::Fail, "{}", outcome.message);
    assert!(
        outcome.message.contains("not to the requester"),
        "{}",
        outcome.message
    );

    let (_server, upstreams) = jira_searching(serde_json::json!([
        jira_user("5b10a2844c20165700ede21g", None),
        jira_user(ADA_ACCOUNT, Some("Ada.Lovelace@contoso.com")),
        jira_user("5b10aaaa4c20165700ede21g", Some("ada.lovelace@contoso.co")),
    ]))
    .await;
    let check_rule = check(JIRA_RULE, &upstreams.connectors, Some(ada()));
    let outcome = run(&check_rule, &request(Some("OPS-12"))).await;
    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
}

/// Jira Cloud with `accounts` mapping requesters to account ids; the user search must not be asked.
async fn jira_mapping(accounts: &[(&str, &str)]) -> (MockServer, TempDir, Arc<Connectors>) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/OPS-12"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("jira-cloud-issue.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/user/search"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!([jira_user(
                ADA_ACCOUNT,
                Some("ada.lovelace@contoso.com")
            )])),
        )
        .expect(0)
        .mount(&server)
        .await;
    let dir = TempDir::new().unwrap();
    let settings = JiraSettings {
        base_url: Some(server.uri()),
        email: Some("pimgate@contoso.com".to_string()),
        api_token: Some(secret_file(&dir, "jira-token", "atlassian-api-token")),
        accounts: accounts
            .iter()
            .map(|(requester, account)| (requester.to_string(), account.to_string()))
            .collect(),
        ..Default::default()
    };
    let connector = Jira::new(&settings, &context()).unwrap();
    let connectors = Arc::new(Connectors {
        jira: Some(Arc::new(connector)),
        ..Default::default()
    });
    (server, dir, connectors)
}

#[tokio::test]
async fn an_explicit_account_mapping_identifies_a_requester_whose_jira_email_is_hidden() {
    let (_server, _dir, connectors) =
        jira_mapping(&[(&PRINCIPAL.to_uppercase(), ADA_ACCOUNT)]).await;
    let by_object_id = check(JIRA_RULE, &connectors, Some(ada()));
    let outcome = run(&by_object_id, &request(Some("OPS-12"))).await;
    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);

    let (_server, _dir, connectors) =
        jira_mapping(&[(" ADA@contoso.onmicrosoft.com ", ADA_ACCOUNT)]).await;
    let by_principal_name = check(JIRA_RULE, &connectors, Some(ada()));
    let outcome = run(&by_principal_name, &request(Some("OPS-12"))).await;
    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
}

#[tokio::test]
async fn a_requester_mapped_to_another_jira_account_is_not_the_assignee_whatever_the_search_says() {
    let (_server, _dir, connectors) =
        jira_mapping(&[(PRINCIPAL, "5b10a2844c20165700ede21g")]).await;
    let check = check(JIRA_RULE, &connectors, Some(ada()));
    let outcome = run(&check, &request(Some("OPS-12"))).await;
    assert_eq!(outcome.status, CheckStatus::Fail, "{}", outcome.message);
}

#[test]
fn an_empty_account_mapping_entry_is_a_settings_problem() {
    let dir = TempDir::new().unwrap();
    let settings = JiraSettings {
        base_url: Some("https://contoso.atlassian.net".to_string()),
        email: Some("pimgate@contoso.com".to_string()),
        api_token: Some(secret_file(&dir, "jira-token", "atlassian-api-token")),
        accounts: [(PRINCIPAL.to_string(), " ".to_string())].into(),
        ..Default::default()
    };
    let problems = Jira::new(&settings, &context()).unwrap_err();
    assert_eq!(problems[0].key, "connectors.jira.accounts");
}

#[tokio::test]
async fn jira_cloud_fails_an_issue_in_the_wrong_status_category() {
    let server = MockServer::start().await;
    let mut body = fixture("jira-cloud-issue.json");
    body["fields"]["status"]["name"] = Value::String("Done".to_string());
    body["fields"]["status"]["statusCategory"]["key"] = Value::String("done".to_string());
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/OPS-12"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let upstreams = jira(&server.uri(), JiraFlavor::Cloud);
    let check = check(
        "{ system: jira, status_categories: [new, indeterminate] }",
        &upstreams.connectors,
        Some(ada()),
    );
    let outcome = run(&check, &request(Some("OPS-12"))).await;
    assert_eq!(outcome.status, CheckStatus::Fail);
    assert_eq!(
        outcome.message,
        "`OPS-12` has status `Done` (category `done`); this role needs status category `new` or `indeterminate`"
    );
}

#[tokio::test]
async fn jira_issues_that_do_not_exist_fail_and_are_negative_cached() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/OPS-404"))
        .respond_with(ResponseTemplate::new(404).set_body_json(serde_json::json!({
            "errorMessages": ["Issue does not exist or you do not have permission to see it."],
            "errors": {}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let upstreams = jira(&server.uri(), JiraFlavor::Cloud);
    let check = check("{ system: jira }", &upstreams.connectors, Some(ada()));
    for _ in 0..2 {
        let outcome = run(&check, &request(Some("OPS-404"))).await;
        assert_eq!(outcome.status, CheckStatus::Fail);
        assert_eq!(
            outcome.message,
            "`OPS-404` does not exist in Jira; check the number in PIM's ticket field"
        );
    }
}

#[tokio::test]
async fn jira_data_center_uses_the_personal_access_token_and_api_v2() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/OPS-7"))
        .and(query_param("fields", "status,assignee,reporter,duedate"))
        .and(header("authorization", "Bearer datacenter-pat"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("jira-datacenter-issue.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let upstreams = jira(&server.uri(), JiraFlavor::Datacenter);
    let check = check(
        "{ system: jira, states: [In Progress], assigned_to_requester: true }",
        &upstreams.connectors,
        Some(ada()),
    );
    let outcome = run(&check, &request(Some("OPS-7"))).await;
    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
    assert_eq!(outcome.evidence["assignee"], "ada.lovelace@contoso.com");
    assert_eq!(
        upstream(&outcome)[0]["operation"],
        "GET /rest/api/2/issue/{key}"
    );
}

#[tokio::test]
async fn jira_hangs_are_errors_inside_the_deadline() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let upstreams = jira(&server.uri(), JiraFlavor::Cloud);
    let check = check("{ system: jira }", &upstreams.connectors, Some(ada()));
    let started = std::time::Instant::now();
    let outcome = run_within(&check, &request(Some("OPS-12")), Duration::from_millis(300)).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(outcome.status, CheckStatus::Error);
    assert_eq!(
        outcome.message,
        "jira did not answer in time, so ticket `OPS-12` could not be checked"
    );
}

#[test]
fn rules_that_cannot_work_are_rejected_with_every_problem() {
    let cases = [
        (
            "{ system: servicenow, states: [Implemnt], status_categories: [done] }",
            vec!["status_categories", "states[0]"],
        ),
        (
            "{ system: jira, tables: [incident], covers_activation: true, status_categories: [finished] }",
            vec!["tables", "covers_activation", "status_categories[0]"],
        ),
        ("{ system: remedy }", vec!["system"]),
        (
            "{ system: servicenow, requester_roles: [assignee] }",
            vec!["requester_roles[0]", "requester_roles"],
        ),
        (
            "{ system: servicenow, tables: ['incident^x'] }",
            vec!["tables[0]"],
        ),
    ];
    let connectors = Connectors::none();
    for (yaml, expected) in cases {
        let spec: ItsmSpec = yaml_serde::from_str(yaml).unwrap();
        let lists = BTreeMap::new();
        let windows = BTreeMap::new();
        let env = BuildEnv {
            lists: &lists,
            windows: &windows,
            connectors: &connectors,
        };
        let problems = itsm::build(&spec, &env).unwrap_err();
        let keys: Vec<&str> = problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect();
        assert_eq!(keys, expected, "{yaml}");
    }
}

#[test]
fn connector_settings_report_every_problem_without_leaking_secrets() {
    let problems = ServiceNow::new(
        &ServiceNowSettings {
            base_url: Some("http://servicenow.example.com".to_string()),
            password: Some(SecretRef {
                env: Some("PIMGATE_TEST_SURELY_UNSET_SN_PASSWORD".to_string()),
                file: None,
            }),
            timeout_ms: 0,
            ..Default::default()
        },
        &context(),
    )
    .unwrap_err();
    let keys: Vec<&str> = problems
        .iter()
        .map(|problem| problem.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "connectors.servicenow.base_url",
            "connectors.servicenow.timeout_ms",
            "connectors.servicenow.username",
            "connectors.servicenow.password"
        ]
    );
    let problems = Jira::new(
        &JiraSettings {
            base_url: Some("https://contoso.atlassian.net".to_string()),
            flavor: JiraFlavor::Datacenter,
            ..Default::default()
        },
        &context(),
    )
    .unwrap_err();
    assert_eq!(problems[0].key, "connectors.jira.personal_access_token");
    let settings: pimgate::connectors::ConnectorsSettings = toml_like(
        r#"{ "servicenow": { "base_url": "https://contoso.service-now.com", "auth": "oauth", "client_id": "x",
             "client_secret": { "env": "SN_SECRET" } },
             "jira": { "base_url": "https://contoso.atlassian.net", "flavor": "cloud", "email": "a@b.c",
             "api_token": { "file": "/run/secrets/jira" }, "cache": { "ttl_seconds": 30 } } }"#,
    );
    assert_eq!(settings.servicenow.unwrap().timeout_ms, 2000);
    assert_eq!(settings.jira.unwrap().cache.ttl_seconds, 30);
}

/// The settings structs deserialize from any serde format; JSON stands in for TOML here.
fn toml_like<T: serde::de::DeserializeOwned>(json: &str) -> T {
    serde_json::from_str(json).unwrap()
}

/// The blocks the README shows load through the real config loader (TOML, unknown-key detection).
#[test]
fn the_documented_config_blocks_load() {
    let example = std::fs::read_to_string(format!(
        "{}/config/example.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let blocks = r#"
[connectors.servicenow]
base_url = "https://contoso.service-now.com"
auth = "oauth"
client_id = "be3aeb583ace210011c15b24a43e25d8"
client_secret = { env = "PIMGATE_SERVICENOW_CLIENT_SECRET" }
timeout_ms = 2000
cache = { ttl_seconds = 60, negative_ttl_seconds = 10, capacity = 10000 }

[connectors.jira]
base_url = "https://contoso.atlassian.net"
flavor = "cloud"
email = "pimgate@contoso.com"
api_token = { file = "/run/secrets/jira-api-token" }
"#;
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("pimgate.toml");
    std::fs::write(&file, format!("{example}\n{blocks}")).unwrap();
    let settings =
        pimgate::settings::Settings::load_with_env(Some(&file), Some(Default::default())).unwrap();
    let servicenow = settings.connectors.servicenow.unwrap();
    assert_eq!(servicenow.auth, ServiceNowAuth::Oauth);
    assert_eq!(servicenow.cache.negative_ttl_seconds, 10);
    let jira = settings.connectors.jira.unwrap();
    assert_eq!(jira.flavor, JiraFlavor::Cloud);
    assert_eq!(jira.timeout_ms, 2000);
}

#[tokio::test]
async fn a_token_servicenow_rejects_is_replaced_on_the_next_lookup() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("servicenow-oauth-token.json")),
        )
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("servicenow-change.json")))
        .mount(&server)
        .await;
    let upstreams = servicenow_oauth(&server.uri());
    let check = check(CHANGE_RULE, &upstreams.connectors, Some(ada()));
    let first = run(&check, &request(Some("CHG0031337"))).await;
    let second = run(&check, &request(Some("CHG0031337"))).await;
    assert_eq!(first.status, CheckStatus::Error);
    assert_eq!(
        first.message,
        "pimgate could not authenticate to servicenow, so ticket `CHG0031337` could not be checked"
    );
    assert_eq!(second.status, CheckStatus::Pass, "{}", second.message);
}

// ---- Missing or unreadable upstream data is "not evaluated", never a pass or the requester's fault ----

/// A change record with `fields` removed.
fn change_without(fields: &[&str]) -> Value {
    let mut body = fixture("servicenow-change.json");
    let record = body["result"][0].as_object_mut().unwrap();
    for field in fields {
        record.remove(*field);
    }
    body
}

async fn servicenow_answering(body: Value, rule: &str) -> CheckOutcome {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(table("change_request")))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let upstreams = servicenow(&server.uri());
    let check = check(rule, &upstreams.connectors, Some(ada()));
    run(&check, &request(Some("CHG0031337"))).await
}

fn assert_not_evaluated_without_blame(outcome: &CheckOutcome, system: &str) {
    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    assert!(outcome.message.contains(system), "{}", outcome.message);
    for blame in [
        "assign it",
        "assign the ticket",
        "not to the requester",
        "fill in",
    ] {
        assert!(
            !outcome.message.contains(blame),
            "the requester is blamed (`{blame}`): {}",
            outcome.message
        );
    }
}

/// The integration user cannot read `sys_user`: the change names an assignee (the reference is set)
/// but the dot-walked email and login come back empty.
#[tokio::test]
async fn a_change_whose_assignee_servicenow_cannot_read_is_not_evaluated() {
    let body = change_with(&[("assigned_to.email", ""), ("assigned_to.user_name", "")]);

    let outcome =
        servicenow_answering(body, "{ system: servicenow, assigned_to_requester: true }").await;

    assert_not_evaluated_without_blame(&outcome, "ServiceNow");
}

#[tokio::test]
async fn a_change_without_the_requester_role_fields_is_not_evaluated() {
    let body = change_without(&["assigned_to", "assigned_to.email", "assigned_to.user_name"]);

    let outcome =
        servicenow_answering(body, "{ system: servicenow, assigned_to_requester: true }").await;

    assert_not_evaluated_without_blame(&outcome, "ServiceNow");
}

#[tokio::test]
async fn a_readable_match_on_another_listed_role_still_passes_when_one_role_is_unreadable() {
    let body = change_with(&[
        ("assigned_to.email", ""),
        ("assigned_to.user_name", ""),
        ("requested_by.email", "ada.lovelace@contoso.com"),
    ]);

    let outcome = servicenow_answering(
        body,
        "{ system: servicenow, assigned_to_requester: true, requester_roles: [assigned_to, requested_by] }",
    )
    .await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
}

#[tokio::test]
async fn a_change_without_a_readable_state_is_not_evaluated() {
    for body in [change_without(&["state"]), change_with(&[("state", "")])] {
        let outcome =
            servicenow_answering(body, "{ system: servicenow, states: [Implement] }").await;

        assert_not_evaluated_without_blame(&outcome, "ServiceNow");
    }
}

#[tokio::test]
async fn a_change_whose_planned_dates_are_absent_or_unreadable_is_not_evaluated() {
    let rule = "{ system: servicenow, covers_activation: true }";
    for body in [
        change_without(&["start_date", "end_date"]),
        change_with(&[("start_date", "24.11.2026 17:00")]),
    ] {
        let outcome = servicenow_answering(body, rule).await;

        assert_not_evaluated_without_blame(&outcome, "ServiceNow");
    }
    let empty =
        servicenow_answering(change_with(&[("start_date", ""), ("end_date", "")]), rule).await;
    assert_eq!(
        empty.status,
        CheckStatus::Fail,
        "empty dates are the ticket's: {empty:?}"
    );
}

#[tokio::test]
async fn servicenow_answering_another_number_is_not_evaluated_and_logged() {
    let (logs, _guard) = common_logs::CapturedLogs::start();
    let body = change_with(&[("number", "CHG0099999")]);

    let outcome = servicenow_answering(body, CHANGE_RULE).await;

    assert_not_evaluated_without_blame(&outcome, "servicenow");
    assert!(logs.text().contains("CHG0099999"), "{}", logs.text());
    let detail = outcome.evidence["error_detail"]
        .as_str()
        .unwrap_or_default();
    assert!(detail.contains("CHG0099999"), "{outcome:?}");
}

async fn jira_answering(body: Value, rule: &str) -> CheckOutcome {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/OPS-12"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let upstreams = jira(&server.uri(), JiraFlavor::Cloud);
    let check = check(rule, &upstreams.connectors, Some(ada()));
    run(&check, &request(Some("OPS-12"))).await
}

#[tokio::test]
async fn jira_answering_another_key_is_not_evaluated() {
    let mut body = fixture("jira-cloud-issue.json");
    body["key"] = Value::String("SEC-4".to_string());

    let outcome =
        jira_answering(body, "{ system: jira, status_categories: [indeterminate] }").await;

    assert_not_evaluated_without_blame(&outcome, "jira");
}

/// `assignee: null` is Jira saying "unassigned", a finding; no `assignee` field at all means pimgate was
/// not shown it.
#[tokio::test]
async fn a_jira_issue_without_the_assignee_field_is_not_evaluated_but_an_unassigned_one_fails() {
    let rule = "{ system: jira, assigned_to_requester: true }";
    let mut absent = fixture("jira-cloud-issue.json");
    absent["fields"].as_object_mut().unwrap().remove("assignee");
    let mut unassigned = fixture("jira-cloud-issue.json");
    unassigned["fields"]["assignee"] = Value::Null;

    let not_shown = jira_answering(absent, rule).await;
    let nobody = jira_answering(unassigned, rule).await;

    assert_not_evaluated_without_blame(&not_shown, "Jira");
    assert_eq!(nobody.status, CheckStatus::Fail, "{nobody:?}");
    assert!(
        nobody.message.contains("has no `assignee`"),
        "{}",
        nobody.message
    );
}

#[tokio::test]
async fn a_jira_issue_without_a_status_is_not_evaluated() {
    let mut body = fixture("jira-cloud-issue.json");
    body["fields"].as_object_mut().unwrap().remove("status");

    let outcome = jira_answering(body, "{ system: jira, states: [In Progress] }").await;

    assert_not_evaluated_without_blame(&outcome, "Jira");
}

#[tokio::test]
async fn an_html_error_page_and_its_status_code_stay_out_of_the_reason_and_go_to_the_evidence_and_log()
 {
    let page = "<html><head><title>Error</title></head><body>Node sn-app-07 failed: see \
                https://sn-node-07.corp.internal:16001/stats.do?trace=8f2e</body></html>";
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500).set_body_raw(page, "text/html"))
        .mount(&server)
        .await;
    let upstreams = servicenow(&server.uri());
    let check = check(CHANGE_RULE, &upstreams.connectors, Some(ada()));
    let (logs, _guard) = common_logs::CapturedLogs::start();

    let outcome = run(&check, &request(Some("CHG0031337"))).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
    for leaked in ["corp.internal", "<html", "500", "sn-app-07", &server.uri()] {
        assert!(
            !outcome.message.contains(leaked),
            "the reason shows `{leaked}`: {}",
            outcome.message
        );
    }
    assert!(
        outcome.message.contains("servicenow"),
        "{}",
        outcome.message
    );
    let detail = outcome.evidence["error_detail"]
        .as_str()
        .unwrap_or_default();
    assert!(detail.contains("HTTP 500"), "{outcome:?}");
    assert!(
        logs.text().contains("sn-node-07.corp.internal"),
        "{}",
        logs.text()
    );
}

/// The post-approval re-check (rules/README.md, "Stages") against ServiceNow: after a human
/// approved, the change must still be implementing and assigned to the requester. A change closed
/// while the request waited denies; one still implementing is `Approved`, never `AutoApproved`.
#[tokio::test]
async fn after_approval_the_change_is_asked_again_and_a_closed_one_denies() {
    use pimgate::checks::NamedCheck;
    use pimgate::decision::{Outcome, evaluate_at_stage};
    use pimgate::payload::Stage;

    for (state, name, expected) in [
        ("-1", "Implement", Outcome::Approved),
        ("3", "Closed", Outcome::Denied),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(table("change_request")))
            .and(query_param("sysparm_query", "number=CHG0031337"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(change_with(&[("state", state)])),
            )
            .expect(1)
            .mount(&server)
            .await;
        let upstreams = servicenow(&server.uri());
        let Ok(mut rules) = pimgate::rules::load_str(
            "rules.yaml",
            "policies:
  - name: recheck-the-change
    match: { stages: [post_approval] }
    require:
      - duration: { max: PT2H }
    auto_approve:
      - duration: { max: PT2H }
    allow_auto_approve_on_critical: true
",
        ) else {
            panic!("rules load");
        };
        rules.policies[0].require.push(NamedCheck {
            kind: "itsm",
            check: check(CHANGE_RULE, &upstreams.connectors, Some(ada())),
            unconfigured: None,
            fingerprint: None,
            shared: None,
        });
        let decision = evaluate_at_stage(
            &rules,
            &request(Some("CHG0031337")),
            Stage::PostApproval,
            now(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(decision.outcome, expected, "{name}: {:?}", decision.reasons);
        assert_eq!(decision.stage, Stage::PostApproval);
        if expected == Outcome::Denied {
            assert!(
                decision.reasons.iter().any(|reason| reason.contains(name)),
                "{:?}",
                decision.reasons
            );
        }
    }
}
