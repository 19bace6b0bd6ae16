//! Decisions that ask real upstream APIs (Graph, ServiceNow, PagerDuty, Opsgenie), each stood in for by
//! a wiremock server on loopback answering in the vendor's JSON shape.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{AppOptions, TestApp, spawn_app_with};
use crate::support::requests;

const REQUESTER: &str = "0f6e7b1a-3c52-4b8e-a0d4-2e9f51c7d8a3";
const MAIL: &str = "ada.lovelace@contoso.com";

const RULES: &str = r#"
policies:
  - name: incident-bound
    match: {}
    require:
      - hr: { source: graph, not_leaving_within: P14D }
      - itsm: { system: servicenow, states: [Implement], assigned_to_requester: true }
    auto_approve:
      - oncall: { source: pagerduty, schedules: [P1ABCDE] }
      - oncall: { source: opsgenie, schedules: [platform] }
    allow_auto_approve_on_critical: true
"#;

struct Upstreams {
    graph: MockServer,
    servicenow: MockServer,
    pagerduty: MockServer,
    opsgenie: MockServer,
    _secrets: tempfile::TempDir,
}

/// Four upstreams, each answering its main lookup after `delay`.
async fn upstreams(delay: Duration, servicenow_status: u16) -> Upstreams {
    let graph = MockServer::start().await;
    // Entra's app-only token carries the granted application permissions in `roles`; pimgate reads a
    // null leave date as "none" only when User-LifeCycleInfo.Read.All is among them.
    let key = crate::common_auth::TestKey::generate("graph");
    let token = jsonwebtoken::encode(
        &key.header(),
        &json!({ "aud": "https://graph.microsoft.com", "idtyp": "app", "exp": 4_102_444_800_i64,
                 "roles": ["User.Read.All", "User-LifeCycleInfo.Read.All"] }),
        &key.encoding_key,
    )
    .unwrap();
    Mock::given(method("POST"))
        .and(path_regex(r"/oauth2/v2\.0/token$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token
        })))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/users/{REQUESTER}")))
        .respond_with(ResponseTemplate::new(200).set_delay(delay).set_body_json(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id,userPrincipalName,mail,displayName,accountEnabled,employeeLeaveDateTime,employeeType,department)/$entity",
            "id": REQUESTER, "userPrincipalName": MAIL, "mail": MAIL, "displayName": "Ada Lovelace",
            "accountEnabled": true, "employeeLeaveDateTime": null, "employeeType": "Employee", "department": "Platform"
        })))
        .mount(&graph)
        .await;

    let servicenow = MockServer::start().await;
    let change = json!({"result": [{
        "number": "CHG0031337", "state": "-1",
        "assigned_to.email": MAIL, "assigned_to.user_name": "ada.lovelace",
        "requested_by.email": "grace.hopper@contoso.com", "requested_by.user_name": "grace.hopper",
        "opened_by.email": "grace.hopper@contoso.com", "opened_by.user_name": "grace.hopper",
        "start_date": "2026-11-24 17:00:00", "end_date": "2026-11-24 22:00:00", "work_start": "", "work_end": ""
    }]});
    let answer = if servicenow_status == 200 {
        ResponseTemplate::new(200).set_body_json(change)
    } else {
        ResponseTemplate::new(servicenow_status).set_body_string("upstream trouble")
    };
    Mock::given(method("GET"))
        .and(path("/api/now/table/change_request"))
        .respond_with(answer.set_delay(delay))
        .mount(&servicenow)
        .await;

    let pagerduty = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "users": [{"id": "PADA123", "type": "user", "name": "Ada Lovelace", "email": MAIL,
                       "summary": "Ada Lovelace", "self": "https://api.pagerduty.com/users/PADA123"}],
            "limit": 25, "offset": 0, "more": false, "total": null
        })))
        .mount(&pagerduty)
        .await;
    let now = Utc::now();
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(ResponseTemplate::new(200).set_delay(delay).set_body_json(json!({
            "oncalls": [{
                "escalation_policy": {"id": "PT20YPA", "type": "escalation_policy_reference", "summary": "Platform"},
                "escalation_level": 1,
                "schedule": {"id": "P1ABCDE", "type": "schedule_reference", "summary": "Platform primary"},
                "user": {"id": "PADA123", "type": "user_reference", "summary": "Ada Lovelace"},
                "start": (now - chrono::Duration::hours(1)).to_rfc3339(),
                "end": (now + chrono::Duration::hours(8)).to_rfc3339()
            }],
            "limit": 100, "offset": 0, "more": false, "total": null
        })))
        .mount(&pagerduty)
        .await;

    let opsgenie = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/schedules/platform/on-calls"))
        .respond_with(ResponseTemplate::new(200).set_delay(delay).set_body_json(json!({
            "data": {"_parent": {"id": "d875alp4-9b4e-4219-alp3-0c26936d18de", "name": "platform", "enabled": true},
                     "onCallRecipients": [MAIL]},
            "took": 0.1, "requestId": "8d8e2b1a-0000-4000-8000-000000000000"
        })))
        .mount(&opsgenie)
        .await;

    let secrets = tempfile::tempdir().unwrap();
    for name in ["graph", "servicenow", "pagerduty", "opsgenie"] {
        std::fs::write(secrets.path().join(name), format!("{name}-secret")).unwrap();
    }
    Upstreams {
        graph,
        servicenow,
        pagerduty,
        opsgenie,
        _secrets: secrets,
    }
}

async fn app_with(upstreams: &Upstreams) -> TestApp {
    app_with_audit(upstreams, pimgate::settings::AuditSink::File).await
}

async fn app_with_audit(upstreams: &Upstreams, sink: pimgate::settings::AuditSink) -> TestApp {
    let dir = upstreams._secrets.path().to_path_buf();
    let connectors: pimgate::connectors::ConnectorsSettings = serde_json::from_value(json!({
        "graph": {
            "client_id": "22222222-2222-2222-2222-222222222222",
            "client_secret": {"file": dir.join("graph")},
            "authority_url": upstreams.graph.uri(), "graph_url": upstreams.graph.uri()
        },
        "servicenow": {
            "base_url": upstreams.servicenow.uri(), "auth": "basic", "username": "svc_pimgate",
            "password": {"file": dir.join("servicenow")}
        },
        "pagerduty": {"base_url": upstreams.pagerduty.uri(), "api_token": {"file": dir.join("pagerduty")}},
        "opsgenie": {"base_url": upstreams.opsgenie.uri(), "api_key": {"file": dir.join("opsgenie")}}
    }))
    .expect("connector settings");
    spawn_app_with(AppOptions {
        rules: RULES,
        tweak: Box::new(move |settings| {
            settings.connectors = connectors;
            settings.audit.sink = sink;
        }),
        ..AppOptions::default()
    })
    .await
}

/// With the audit log off the evaluation runs without a fact book (nothing would read it): the
/// upstreams are still asked and decide exactly as with it on.
#[tokio::test]
async fn with_the_audit_log_off_the_upstreams_are_still_asked_and_decide_the_same() {
    let upstreams = upstreams(Duration::ZERO, 200).await;
    let app = app_with_audit(&upstreams, pimgate::settings::AuditSink::Off).await;
    let answer: Value = app
        .evaluate(&requests::entra_role(
            "6a000000-0000-4000-8000-0000000000a0",
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["evaluationOutcome"], "AutoApproved", "{answer}");
    assert!(app.audit_records().is_empty(), "the audit log is off");
}

#[tokio::test]
async fn four_slow_upstreams_are_asked_concurrently_and_auto_approve() {
    let upstreams = upstreams(Duration::from_millis(300), 200).await;
    let app = app_with(&upstreams).await;
    let started = Instant::now();
    let answer: Value = app
        .evaluate(&requests::entra_role(
            "6a000000-0000-4000-8000-000000000001",
        ))
        .await
        .json()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(answer["evaluationOutcome"], "AutoApproved", "{answer}");
    // Sequential calls would take at least 4 × 300 ms plus the identity lookups; the longest
    // concurrent path is identity (300 ms) then an on-call lookup (300 ms).
    assert!(elapsed < Duration::from_millis(1100), "took {elapsed:?}");

    let record = app.audit_records().pop().unwrap();
    let checks = record["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 4);
    for check in checks {
        let calls = check["evidence"]["upstream"]
            .as_array()
            .unwrap_or_else(|| panic!("no upstream calls: {check}"));
        assert!(!calls.is_empty(), "{check}");
        assert!(
            calls
                .iter()
                .all(|call| call["latency_ms"].is_number() && call["cached"].is_boolean()),
            "{check}"
        );
    }
}

#[tokio::test]
async fn a_second_decision_is_served_from_the_caches() {
    let upstreams = upstreams(Duration::from_millis(50), 200).await;
    let app = app_with(&upstreams).await;
    for id in [
        "6a000000-0000-4000-8000-000000000002",
        "6a000000-0000-4000-8000-000000000003",
    ] {
        let answer: Value = app
            .evaluate(&requests::entra_role(id))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(answer["evaluationOutcome"], "AutoApproved", "{answer}");
    }
    let table_calls = upstreams
        .servicenow
        .received_requests()
        .await
        .unwrap()
        .len();
    assert_eq!(table_calls, 1, "the change was looked up once");
    let opsgenie_calls = upstreams.opsgenie.received_requests().await.unwrap().len();
    assert_eq!(
        opsgenie_calls, 2,
        "Opsgenie's answer about now carries no shift end, so it is asked again (never cached past a shift)"
    );
    let last = app.audit_records().pop().unwrap();
    let cached: Vec<bool> = last["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|check| {
            check["evidence"]["upstream"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|call| call["cached"].as_bool())
        .collect();
    assert!(
        cached.iter().any(|hit| *hit),
        "the audit record shows cache hits: {last}"
    );
    let pagerduty_calls: Vec<String> = upstreams
        .pagerduty
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| request.url.path().to_string())
        .collect();
    assert_eq!(
        pagerduty_calls,
        ["/users", "/oncalls"],
        "user and on-call lookups were cached"
    );
}

#[tokio::test]
async fn an_unreachable_ticket_system_denies_without_blaming_the_requester() {
    let upstreams = upstreams(Duration::from_millis(10), 503).await;
    let app = app_with(&upstreams).await;
    let answer: Value = app
        .evaluate(&requests::entra_role(
            "6a000000-0000-4000-8000-000000000004",
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["evaluationOutcome"], "Denied", "{answer}");
    let reasons = answer["reason"].to_string();
    assert!(
        reasons.contains("servicenow") && reasons.contains("not a finding against you"),
        "{reasons}"
    );
}

#[tokio::test]
async fn a_hanging_upstream_still_gets_an_answer_inside_the_deadline() {
    let upstreams = upstreams(Duration::from_secs(30), 200).await;
    let app = app_with(&upstreams).await;
    let started = Instant::now();
    let answer: Value = app
        .evaluate(&requests::entra_role(
            "6a000000-0000-4000-8000-000000000005",
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["evaluationOutcome"], "Denied", "{answer}");
    assert!(
        started.elapsed() < Duration::from_millis(5_500),
        "answered within server.deadline_ms (5 s)"
    );
}
