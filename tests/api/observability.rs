//! What operators watch: the `/metrics` series a few decisions leave behind, and the W3C trace
//! context carried from PIM's `traceparent` to the upstream systems (a ServiceNow stand-in here).
//!
//! The metrics recorder is process-wide and shared by every test in this binary, so assertions are
//! "this series exists with at least this value", never exact counts.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{AppOptions, TestApp, spawn_app_with};
use crate::support::requests;

const RULES: &str = r#"
policies:
  - name: change-bound
    match: {}
    require:
      - duration: { max: PT8H }
      - itsm: { system: servicenow, states: [Implement] }
"#;

const INCOMING_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INCOMING_PARENT_ID: &str = "00f067aa0ba902b7";

async fn servicenow() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/change_request"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [{
            "number": "CHG0031337", "state": "-1",
            "assigned_to.email": "ada.lovelace@contoso.com", "assigned_to.user_name": "ada.lovelace",
            "requested_by.email": "", "requested_by.user_name": "",
            "opened_by.email": "", "opened_by.user_name": "",
            "start_date": "2026-11-24 17:00:00", "end_date": "2026-11-24 22:00:00",
            "work_start": "", "work_end": ""
        }]})))
        .mount(&server)
        .await;
    server
}

/// The app asking `servicenow`; with `cached: false` every decision reaches the stand-in.
async fn app_with(servicenow: &MockServer, secrets: &tempfile::TempDir, cached: bool) -> TestApp {
    let password = secrets.path().join("servicenow");
    std::fs::write(&password, "servicenow-secret").unwrap();
    let connectors: pimgate::connectors::ConnectorsSettings = serde_json::from_value(json!({
        "servicenow": {
            "base_url": servicenow.uri(), "auth": "basic", "username": "svc_pimgate",
            "password": {"file": password},
            "cache": {"ttl_seconds": if cached { 60 } else { 0 }}
        }
    }))
    .expect("connector settings");
    spawn_app_with(AppOptions {
        rules: RULES,
        tweak: Box::new(move |settings| settings.connectors = connectors),
        ..AppOptions::default()
    })
    .await
}

/// POSTs a decision request carrying one `traceparent` header per entry of `traceparents`.
async fn evaluate_with_traceparents(app: &TestApp, id: &str, traceparents: &[&str]) -> Value {
    let mut builder = app
        .client
        .post(format!("{}/v1/evaluate", app.address))
        .bearer_auth(app.token())
        .header("content-type", "application/json");
    for traceparent in traceparents {
        builder = builder.header("traceparent", *traceparent);
    }
    let response = builder
        .body(requests::entra_role(id).to_string())
        .send()
        .await
        .expect("request reaches the server");
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn scrape(app: &TestApp) -> String {
    let response = app
        .client
        .get(format!("{}/metrics", app.admin_address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of the first sample of `name` carrying every one of `labels`, whatever their order.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

fn assert_at_least(text: &str, name: &str, labels: &[(&str, &str)], minimum: f64) {
    match sample(text, name, labels) {
        Some(value) => assert!(
            value >= minimum,
            "{name}{labels:?} is {value}, expected at least {minimum}"
        ),
        None => panic!("no sample {name}{labels:?} in:\n{text}"),
    }
}

/// The `traceparent` headers the stand-in received, in order.
async fn traceparents_received(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| {
            request
                .headers
                .get("traceparent")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_else(|| panic!("an upstream request without traceparent: {request:?}"))
                .to_string()
        })
        .collect()
}

/// `(trace id, parent id, flags)` of a header that must be a valid version-00 `traceparent`.
fn parts(traceparent: &str) -> (String, String, String) {
    let context = pimgate::tracecontext::TraceContext::parse(traceparent)
        .unwrap_or_else(|| panic!("upstream got an invalid traceparent `{traceparent}`"));
    (
        context.trace_id_hex(),
        context.span_id_hex(),
        format!("{:02x}", context.flags),
    )
}

#[tokio::test]
async fn metrics_show_checks_caches_decisions_token_rejections_and_build() {
    let upstream = servicenow().await;
    let secrets = tempfile::tempdir().unwrap();
    let app = app_with(&upstream, &secrets, true).await;
    for id in [
        "7b000000-0000-4000-8000-000000000001",
        "7b000000-0000-4000-8000-000000000002",
    ] {
        let response = app.evaluate(&requests::entra_role(id)).await;
        assert_eq!(response.status(), 200);
    }
    let rejected = app
        .post_raw("{}", Some("not-a-jwt"), Some("application/json"))
        .await;
    assert_eq!(rejected.status(), 401);

    let text = scrape(&app).await;
    for kind in ["duration", "itsm"] {
        assert_at_least(
            &text,
            "pimgate_check_results_total",
            &[("kind", kind), ("status", "pass")],
            2.0,
        );
        assert_at_least(
            &text,
            "pimgate_check_duration_seconds_count",
            &[("kind", kind)],
            2.0,
        );
        assert_at_least(
            &text,
            "pimgate_check_duration_seconds_bucket",
            &[("kind", kind), ("le", "+Inf")],
            2.0,
        );
    }
    let cache = ("cache", "servicenow_tickets");
    assert_at_least(
        &text,
        "pimgate_cache_requests_total",
        &[cache, ("result", "miss")],
        1.0,
    );
    assert_at_least(
        &text,
        "pimgate_cache_requests_total",
        &[cache, ("result", "hit")],
        1.0,
    );
    assert_at_least(
        &text,
        "pimgate_decisions_total",
        &[("policy", "change-bound"), ("replay", "false")],
        2.0,
    );
    assert_at_least(
        &text,
        "pimgate_decision_duration_seconds_bucket",
        &[("le", "0.5")],
        2.0,
    );
    assert_at_least(
        &text,
        "pimgate_token_rejections_total",
        &[("reason", "malformed")],
        1.0,
    );
    assert_at_least(
        &text,
        "pimgate_jwks_refreshes_total",
        &[("result", "ok"), ("trigger", "startup")],
        1.0,
    );
    assert_eq!(
        sample(
            &text,
            "pimgate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    for described in [
        "# HELP pimgate_check_results_total ",
        "# HELP pimgate_check_duration_seconds ",
        "# HELP pimgate_cache_requests_total ",
        "# HELP pimgate_decisions_total ",
    ] {
        assert!(
            text.contains(described),
            "missing `{described}` in:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_valid_traceparent_reaches_the_upstream_with_the_same_trace_and_a_new_parent() {
    let upstream = servicenow().await;
    let secrets = tempfile::tempdir().unwrap();
    let app = app_with(&upstream, &secrets, false).await;
    let incoming = format!("00-{INCOMING_TRACE_ID}-{INCOMING_PARENT_ID}-01");
    evaluate_with_traceparents(&app, "7b000000-0000-4000-8000-000000000011", &[&incoming]).await;

    let sent = traceparents_received(&upstream).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (trace_id, parent_id, flags) = parts(&sent[0]);
    assert_eq!(trace_id, INCOMING_TRACE_ID, "the caller's trace continues");
    assert_ne!(
        parent_id, INCOMING_PARENT_ID,
        "the upstream's parent is pimgate's span"
    );
    assert_eq!(flags, "01", "the caller's sampling decision is kept");
}

#[tokio::test]
async fn an_invalid_traceparent_is_ignored_and_a_fresh_trace_goes_upstream() {
    let upstream = servicenow().await;
    let secrets = tempfile::tempdir().unwrap();
    let app = app_with(&upstream, &secrets, false).await;
    let upper_case = format!(
        "00-{}-{INCOMING_PARENT_ID}-01",
        INCOMING_TRACE_ID.to_uppercase()
    );
    let valid = format!("00-{INCOMING_TRACE_ID}-{INCOMING_PARENT_ID}-01");
    let invalid: [&[&str]; 5] = [
        &[upper_case.as_str()],
        &["00-00000000000000000000000000000000-00f067aa0ba902b7-01"],
        &["01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
        &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"],
        // Two parents: no way to tell which one is right.
        &[valid.as_str(), valid.as_str()],
    ];
    for (index, headers) in invalid.iter().enumerate() {
        let id = format!("7b000000-0000-4000-8000-00000000002{index}");
        evaluate_with_traceparents(&app, &id, headers).await;
    }

    let sent = traceparents_received(&upstream).await;
    assert_eq!(sent.len(), invalid.len(), "{sent:?}");
    let mut trace_ids = std::collections::HashSet::new();
    for header in &sent {
        let (trace_id, _, flags) = parts(header);
        assert_ne!(
            trace_id, INCOMING_TRACE_ID,
            "an invalid parent is not continued: {header}"
        );
        assert_eq!(flags, "00", "a trace pimgate starts is not sampled");
        trace_ids.insert(trace_id);
    }
    assert_eq!(
        trace_ids.len(),
        sent.len(),
        "each request starts its own trace"
    );
}

#[tokio::test]
async fn requests_without_a_traceparent_still_send_one_upstream() {
    let upstream = servicenow().await;
    let secrets = tempfile::tempdir().unwrap();
    let app = app_with(&upstream, &secrets, false).await;
    let response = app
        .evaluate(&requests::entra_role(
            "7b000000-0000-4000-8000-000000000031",
        ))
        .await;
    assert_eq!(response.status(), 200);
    let sent = traceparents_received(&upstream).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (_, _, flags) = parts(&sent[0]);
    assert_eq!(flags, "00");
}
