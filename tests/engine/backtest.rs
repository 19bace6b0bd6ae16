//! `rules backtest` on an audit log written by a real run of the service (in process, Graph and
//! ServiceNow stood in for by wiremock on loopback), decided again with changed rules from the facts
//! the records carry: exact expected changes, and no upstream asked while replaying.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::app::{AppOptions, spawn_app_with};
use crate::support::auth::TestKey;
use crate::support::requests;
use pimgate::connectors::{BuildContext, Connectors, ConnectorsSettings};
use pimgate::workbench::backtest::{self, Report};

const REQUESTER: &str = "0f6e7b1a-3c52-4b8e-a0d4-2e9f51c7d8a3";
const MAIL: &str = "ada.lovelace@contoso.com";

/// What the service ran with: a shadow policy that wants short activations, and the enforcing
/// policy (an HR check and a ServiceNow change in `Implement` assigned to the requester).
const LIVE_RULES: &str = r#"
policies:
  - name: rehearsal
    mode: audit
    match: {}
    require:
      - duration: { max: PT1H }
  - name: change-bound
    match: {}
    require:
      - hr: { source: graph, not_leaving_within: P14D }
      - itsm: { system: servicenow, states: [Implement], assigned_to_requester: true }
"#;

struct Upstreams {
    graph: MockServer,
    servicenow: MockServer,
    secrets: tempfile::TempDir,
}

async fn upstreams() -> Upstreams {
    let graph = MockServer::start().await;
    let key = TestKey::generate("graph");
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
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": REQUESTER, "userPrincipalName": MAIL, "mail": MAIL, "displayName": "Ada Lovelace",
            "accountEnabled": true, "employeeLeaveDateTime": null, "employeeType": "Employee", "department": "Platform"
        })))
        .mount(&graph)
        .await;
    let servicenow = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/change_request"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [{
            "number": "CHG0031337", "state": "-1",
            "assigned_to.email": MAIL, "assigned_to.user_name": "ada.lovelace",
            "requested_by.email": "grace.hopper@contoso.com", "requested_by.user_name": "grace.hopper",
            "opened_by.email": "grace.hopper@contoso.com", "opened_by.user_name": "grace.hopper",
            "start_date": "2026-11-24 17:00:00", "end_date": "2026-11-24 22:00:00", "work_start": "", "work_end": ""
        }]})))
        .mount(&servicenow)
        .await;
    let secrets = tempfile::tempdir().unwrap();
    for name in ["graph", "servicenow"] {
        std::fs::write(secrets.path().join(name), format!("{name}-secret")).unwrap();
    }
    Upstreams {
        graph,
        servicenow,
        secrets,
    }
}

fn connector_settings(upstreams: &Upstreams) -> ConnectorsSettings {
    let dir = upstreams.secrets.path();
    serde_json::from_value(json!({
        "graph": {
            "client_id": "22222222-2222-2222-2222-222222222222",
            "client_secret": {"file": dir.join("graph")},
            "authority_url": upstreams.graph.uri(), "graph_url": upstreams.graph.uri()
        },
        "servicenow": {
            "base_url": upstreams.servicenow.uri(), "auth": "basic", "username": "svc_pimgate",
            "password": {"file": dir.join("servicenow")}
        }
    }))
    .unwrap()
}

/// Two activations and a PIM retry of the first, answered by the service: the audit log.
async fn recorded_log(upstreams: &Upstreams) -> Vec<Value> {
    let settings = connector_settings(upstreams);
    let app = spawn_app_with(AppOptions {
        rules: LIVE_RULES,
        tweak: Box::new(move |s| s.connectors = settings),
        ..AppOptions::default()
    })
    .await;
    for id in [
        "7b000000-0000-4000-8000-000000000001",
        "7b000000-0000-4000-8000-000000000002",
        "7b000000-0000-4000-8000-000000000001",
    ] {
        let answer: Value = app
            .evaluate(&requests::entra_role(id))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(answer["evaluationOutcome"], "Approved", "{answer}");
    }
    app.audit_records()
}

fn lines(records: &[Value]) -> String {
    records.iter().map(|record| format!("{record}\n")).collect()
}

async fn backtest_with(upstreams: &Upstreams, rules: &str, log: &str) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let rules_path = dir.path().join("rules.yaml");
    std::fs::write(&rules_path, rules).unwrap();
    let connectors: Arc<Connectors> = Connectors::build(
        &connector_settings(upstreams),
        &BuildContext {
            http: reqwest::Client::new(),
            tenant_id: "contoso.onmicrosoft.com".into(),
        },
    )
    .unwrap();
    let rules = pimgate::rules::load_with(Path::new(&rules_path), &connectors).unwrap();
    backtest::run(&rules, Cursor::new(log.to_string()))
        .await
        .unwrap()
}

async fn requests_seen(upstreams: &Upstreams) -> usize {
    upstreams.graph.received_requests().await.unwrap().len()
        + upstreams
            .servicenow
            .received_requests()
            .await
            .unwrap()
            .len()
}

#[tokio::test]
async fn a_recorded_log_is_decided_again_from_its_facts_with_exact_changes_and_no_upstream_call() {
    let upstreams = upstreams().await;
    let records = recorded_log(&upstreams).await;
    assert_eq!(records.len(), 3);
    let first = &records[0];
    let sources: Vec<&str> = first["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|fact| fact["source"].as_str().unwrap())
        .collect();
    assert!(
        sources.contains(&"graph.user") && sources.contains(&"servicenow.ticket"),
        "{sources:?}"
    );
    let log = lines(&records);
    let asked_before = requests_seen(&upstreams).await;

    // Unchanged rules: nothing changes; the shadow policy disagreed with both answers.
    let same = backtest_with(&upstreams, LIVE_RULES, &log).await;
    assert_eq!(same.decisions, 2);
    assert!(same.changed.is_empty(), "{:?}", same.changed);
    assert_eq!(
        same.skipped
            .get("retries answered from an earlier decision"),
        Some(&1)
    );
    let tally = &same.shadows["rehearsal"];
    assert_eq!((tally.matched, tally.disagreed), (2, 2));

    // `Implement` no longer allowed: both approvals become denials under the same policy.
    let narrowed = LIVE_RULES.replace("states: [Implement]", "states: [Scheduled]");
    let report = backtest_with(&upstreams, &narrowed, &log).await;
    assert_eq!(report.decisions, 2);
    let changed: Vec<(&str, &str, &str)> = report
        .changed
        .iter()
        .map(|change| {
            (
                change.evaluation_id.as_str(),
                change.before.outcome.as_str(),
                change.after.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        [
            (
                records[0]["evaluationId"].as_str().unwrap(),
                "Approved",
                "Denied"
            ),
            (
                records[1]["evaluationId"].as_str().unwrap(),
                "Approved",
                "Denied"
            ),
        ]
    );
    let change = &report.changed[0];
    assert_eq!(change.principal_id, REQUESTER);
    assert_eq!(change.role, "Global Administrator");
    assert_eq!(change.before.policy.as_deref(), Some("change-bound"));
    assert_eq!(change.after.policy.as_deref(), Some("change-bound"));
    assert!(
        change.after.reasons[0].contains("Implement") && change.after.reasons[0].contains("itsm"),
        "{:?}",
        change.after.reasons
    );
    let tally = &report.shadows["rehearsal"];
    assert_eq!((tally.matched, tally.disagreed), (2, 0));
    let text = report.render();
    assert!(
        text.ends_with(
            "2 decisions, 2 changed, 1 skipped (1 retries answered from an earlier decision)\n"
        ),
        "{text}"
    );
    assert!(
        text.starts_with("policy 'change-bound': 2 changed\n"),
        "{text}"
    );

    // A stricter policy (a shorter activation) denies too, for its own reason.
    let stricter = LIVE_RULES.replace(
        "      - hr: { source: graph",
        "      - duration: { max: PT1H }\n      - hr: { source: graph",
    );
    let report = backtest_with(&upstreams, &stricter, &log).await;
    assert_eq!(report.changed.len(), 2);
    assert!(
        report.changed[0].after.reasons[0].contains("duration"),
        "{:?}",
        report.changed[0].after.reasons
    );

    assert_eq!(
        requests_seen(&upstreams).await,
        asked_before,
        "replaying asked no upstream"
    );
}

#[tokio::test]
async fn records_without_facts_masked_justifications_and_unrecorded_questions_are_never_guessed() {
    let upstreams = upstreams().await;
    let records = recorded_log(&upstreams).await;
    let asked_before = requests_seen(&upstreams).await;

    let mut old = records[0].clone();
    for field in ["facts", "decidedAt", "schedule"] {
        old.as_object_mut().unwrap().remove(field);
    }
    let mut masked = records[1].clone();
    masked["justification"] = json!("sha256:0000");
    masked["justificationMasked"] = json!(true);
    let log = lines(&[
        old,
        masked,
        json!({"level": "INFO", "message": "a log line"}),
    ]);
    let with_justification = LIVE_RULES.replace(
        "      - hr: { source: graph",
        "      - justification: { min_length: 10 }\n      - hr: { source: graph",
    );
    let report = backtest_with(&upstreams, &with_justification, &log).await;
    assert_eq!(report.decisions, 1);
    assert!(report.changed.is_empty());
    assert_eq!(
        report
            .cannot_replay
            .get("justification masked in the record"),
        Some(&1)
    );
    assert_eq!(
        report
            .skipped
            .get("recorded without facts (written before pimgate kept them)"),
        Some(&1)
    );
    assert_eq!(report.skipped.get("not audit records"), Some(&1));

    // A check the record has no answer for (group membership was never asked) cannot be replayed:
    // it is not a pass, and the decision is not reported as a change.
    let with_group = LIVE_RULES.replace(
        "      - hr: { source: graph",
        "      - group: { member_of: [0c2d8f4e-1111-4a2b-9c3d-5e6f7a8b9c0d] }\n      - hr: { source: graph",
    );
    let report = backtest_with(&upstreams, &with_group, &lines(&records)).await;
    assert_eq!(report.decisions, 2);
    assert!(report.changed.is_empty(), "{:?}", report.changed);
    assert_eq!(
        report.cannot_replay.get("graph.groups answer not recorded"),
        Some(&2)
    );
    assert_eq!(requests_seen(&upstreams).await, asked_before);
}

#[tokio::test]
async fn an_unreadable_line_is_an_error_naming_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let rules_path = dir.path().join("rules.yaml");
    std::fs::write(&rules_path, LIVE_RULES).unwrap();
    let rules = pimgate::rules::load(&rules_path).unwrap();
    let Err(error) = backtest::run(&rules, Cursor::new("{\"type\":\"x\"}\n\nnot json\n")).await
    else {
        panic!("an unreadable line is an error");
    };
    assert!(error.to_string().starts_with("line 3: "), "{error}");
}
