//! The `oncall` check against PagerDuty and Opsgenie (wiremock servers answering the vendors' JSON)
//! and against a roster file, including caching, pagination and every way an upstream can fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::fixtures as common_fixtures;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pimgate::checks::oncall::{self, IdentityLookup, OncallSpec};
use pimgate::checks::registry::BuildEnv;
use pimgate::checks::{Check, CheckContext, CheckOutcome, CheckStatus};
use pimgate::connectors::cache::CacheSettings;
use pimgate::connectors::oncall_file::{OncallFile, OncallFileSettings};
use pimgate::connectors::opsgenie::{Opsgenie, OpsgenieSettings};
use pimgate::connectors::pagerduty::{PagerDuty, PagerDutySettings};
use pimgate::connectors::secrets::SecretRef;
use pimgate::connectors::{BuildContext, Connectors, UserProfile};
use pimgate::payload::{Action, ActivationRequest, ExpirationKind, ResourceType, Schedule, Target};
use serde_json::Value;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PRINCIPAL: &str = "5b2a9c1e-2222-4d3e-8f40-1a2b3c4d5e6f";
const PD_TOKEN: &str = "pd-test-token";
const GENIE_KEY: &str = "eb24a1b2-faa2-4ba2-a551-1a2b3c4d5e6f";

/// Tuesday 2026-11-24 12:00 UTC, inside the fixtures' shifts.
fn now() -> DateTime<Utc> {
    "2026-11-24T12:00:00Z".parse().unwrap()
}

fn fixture(name: &str) -> PathBuf {
    common_fixtures::path("oncall", name)
}

fn json_fixture(name: &str) -> Value {
    common_fixtures::json("oncall", name)
}

fn context() -> BuildContext {
    BuildContext {
        http: reqwest::Client::new(),
        tenant_id: "00000000-0000-0000-0000-000000000001".into(),
    }
}

/// A secret in a file (the connector reads it once in `new`, so the directory may go afterwards).
fn secret(value: &str) -> (tempfile::TempDir, SecretRef) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, value).unwrap();
    let secret = SecretRef {
        env: None,
        file: Some(file),
    };
    (dir, secret)
}

fn pagerduty_connectors(server: &MockServer, timeout_ms: u64) -> Arc<Connectors> {
    let (_dir, api_token) = secret(PD_TOKEN);
    let settings = PagerDutySettings {
        base_url: Some(server.uri()),
        api_token,
        timeout_ms,
        ..PagerDutySettings::default()
    };
    Arc::new(Connectors {
        pagerduty: Some(Arc::new(PagerDuty::new(&settings, &context()).unwrap())),
        ..Connectors::default()
    })
}

fn opsgenie_connectors(server: &MockServer) -> Arc<Connectors> {
    let (_dir, api_key) = secret(GENIE_KEY);
    let settings = OpsgenieSettings {
        base_url: Some(server.uri()),
        api_key,
        ..OpsgenieSettings::default()
    };
    Arc::new(Connectors {
        opsgenie: Some(Arc::new(Opsgenie::new(&settings, &context()).unwrap())),
        ..Connectors::default()
    })
}

fn file_connectors(roster: &Path) -> Arc<Connectors> {
    let settings = OncallFileSettings {
        path: roster.to_path_buf(),
    };
    Arc::new(Connectors {
        oncall_file: Some(Arc::new(OncallFile::new(&settings, &context()).unwrap())),
        ..Connectors::default()
    })
}

fn alice() -> UserProfile {
    UserProfile {
        id: PRINCIPAL.into(),
        user_principal_name: Some("alice@contoso.onmicrosoft.com".into()),
        mail: Some("alice@contoso.com".into()),
        display_name: Some("Alice Example".into()),
        ..UserProfile::default()
    }
}

/// The directory as tests see it: Alice, counting how often she is looked up.
fn directory(lookups: Arc<AtomicUsize>) -> IdentityLookup {
    Arc::new(move |principal: &str| {
        lookups.fetch_add(1, Ordering::SeqCst);
        (principal == PRINCIPAL).then(alice)
    })
}

fn nobody() -> IdentityLookup {
    Arc::new(|_: &str| None)
}

fn build(yaml: &str, connectors: &Arc<Connectors>, identity: IdentityLookup) -> Arc<dyn Check> {
    let spec: OncallSpec = yaml_serde::from_str(yaml).unwrap();
    let lists = BTreeMap::new();
    let windows = BTreeMap::new();
    let env = BuildEnv {
        lists: &lists,
        windows: &windows,
        connectors,
    };
    oncall::build_with_identity(&spec, &env, identity).unwrap()
}

fn request() -> ActivationRequest {
    ActivationRequest {
        request_id: Some("req-1".into()),
        resource_type: ResourceType::EntraRoles,
        principal_id: PRINCIPAL.into(),
        principal_type: Some("User".into()),
        action: Action::SelfActivate,
        target: Target::EntraRole {
            role_definition_id: "62e90394-69f5-4237-9190-012177145e10".into(),
            directory_scope_id: "/".into(),
            app_scope_id: None,
        },
        justification: Some("INC0012345 database down".into()),
        ticket: None,
        schedule: Schedule {
            start: None,
            expiration_kind: ExpirationKind::AfterDuration,
            duration: Some(chrono::Duration::hours(1)),
            end: None,
        },
    }
}

async fn evaluate(check: &dyn Check) -> CheckOutcome {
    evaluate_within(check, Duration::from_secs(3)).await
}

async fn evaluate_within(check: &dyn Check, budget: Duration) -> CheckOutcome {
    evaluate_request(check, &request(), budget).await
}

async fn evaluate_request(
    check: &dyn Check,
    request: &ActivationRequest,
    budget: Duration,
) -> CheckOutcome {
    let context = CheckContext::new(request, now(), tokio::time::Instant::now() + budget);
    check.evaluate(&context).await
}

/// Three days after [`now`]: Friday 2026-11-27 12:00 UTC.
fn in_three_days() -> DateTime<Utc> {
    "2026-11-27T12:00:00Z".parse().unwrap()
}

/// The on-call question for an activation that starts at `start` (decided at [`now`]).
async fn evaluate_starting(check: &dyn Check, start: DateTime<Utc>) -> CheckOutcome {
    let mut request = request();
    request.schedule.start = Some(start);
    evaluate_request(check, &request, Duration::from_secs(3)).await
}

fn upstream(outcome: &CheckOutcome) -> Vec<Value> {
    outcome.evidence["upstream"].as_array().unwrap().clone()
}

async fn mount_users(server: &MockServer, expected: u64) {
    Mock::given(method("GET"))
        .and(path("/users"))
        .and(query_param("query", "alice@contoso.com"))
        .and(header("authorization", "Token token=pd-test-token"))
        .and(header("accept", "application/vnd.pagerduty+json;version=2"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json_fixture("pagerduty_users.json")),
        )
        .expect(expected)
        .mount(server)
        .await;
}

fn oncalls_with(level: u64) -> Value {
    let mut body = json_fixture("pagerduty_oncalls.json");
    body["oncalls"][0]["escalation_level"] = level.into();
    body
}

const PD_SPEC: &str = "{ source: pagerduty, schedules: [P1ABCDE], max_escalation_level: 1 }";

#[tokio::test]
async fn pagerduty_on_call_at_level_one_passes_with_the_shift_end() {
    let server = MockServer::start().await;
    mount_users(&server, 1).await;
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .and(query_param("user_ids[]", "PXPGF42"))
        .and(query_param("schedule_ids[]", "P1ABCDE"))
        .and(query_param("time_zone", "UTC"))
        .and(query_param("offset", "0"))
        .and(query_param_is_missing("since"))
        .and(query_param_is_missing("until"))
        .and(header("authorization", "Token token=pd-test-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(oncalls_with(1)))
        .expect(1)
        .mount(&server)
        .await;
    let connectors = pagerduty_connectors(&server, 2000);
    let check = build(PD_SPEC, &connectors, directory(Arc::default()));

    let outcome = evaluate(check.as_ref()).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
    assert_eq!(
        outcome.message,
        "you are on call for P1ABCDE (level 1) until 18:00 UTC"
    );
    assert_eq!(outcome.evidence["schedule"], "P1ABCDE");
    assert_eq!(outcome.evidence["level"], 1);
    assert_eq!(outcome.evidence["shift_end"], "2026-11-24T18:00:00+00:00");
    let calls = upstream(&outcome);
    let operations: Vec<&str> = calls
        .iter()
        .map(|call| call["operation"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["GET /users", "GET /oncalls"]);
    assert!(calls.iter().all(|call| call["connector"] == "pagerduty"));
    assert!(calls.iter().all(|call| call["outcome"] == "ok"));
}

#[tokio::test]
async fn pagerduty_on_call_now_but_not_at_a_start_in_three_days_fails() {
    let server = MockServer::start().await;
    mount_users(&server, 1).await;
    let mut empty = json_fixture("pagerduty_oncalls.json");
    empty["oncalls"] = Value::Array(Vec::new());
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .and(query_param("user_ids[]", "PXPGF42"))
        .and(query_param("schedule_ids[]", "P1ABCDE"))
        .and(query_param("since", "2026-11-27T12:00:00Z"))
        .and(query_param("until", "2026-11-27T12:01:00Z"))
        .respond_with(ResponseTemplate::new(200).set_body_json(empty))
        .expect(1)
        .mount(&server)
        .await;
    // Asked about the present (no range), PagerDuty would say Alice is on call.
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(oncalls_with(1)))
        .expect(0)
        .mount(&server)
        .await;
    let connectors = pagerduty_connectors(&server, 2000);
    let check = build(PD_SPEC, &connectors, directory(Arc::default()));

    let outcome = evaluate_starting(check.as_ref(), in_three_days()).await;

    assert_eq!(outcome.status, CheckStatus::Fail, "{}", outcome.message);
    assert_eq!(
        outcome.message,
        "you are not on call for P1ABCDE at the activation's start (2026-11-27 12:00 UTC)"
    );
    assert_eq!(outcome.holds_at, Some(in_three_days()));
}

#[tokio::test]
async fn pagerduty_on_call_at_a_later_start_passes_and_says_when() {
    let server = MockServer::start().await;
    mount_users(&server, 1).await;
    let mut later = oncalls_with(1);
    later["oncalls"][0]["start"] = "2026-11-27T08:00:00Z".into();
    later["oncalls"][0]["end"] = "2026-11-27T20:00:00Z".into();
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .and(query_param("since", "2026-11-27T12:00:00Z"))
        .and(query_param("until", "2026-11-27T12:01:00Z"))
        .respond_with(ResponseTemplate::new(200).set_body_json(later))
        .expect(1)
        .mount(&server)
        .await;
    let connectors = pagerduty_connectors(&server, 2000);
    let check = build(PD_SPEC, &connectors, directory(Arc::default()));

    let outcome = evaluate_starting(check.as_ref(), in_three_days()).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
    assert_eq!(
        outcome.message,
        "you are on call for P1ABCDE (level 1) at the activation's start (2026-11-27 12:00 UTC), until 20:00 UTC"
    );
    assert_eq!(outcome.holds_at, Some(in_three_days()));
}

#[tokio::test]
async fn pagerduty_level_two_fails_when_at_most_level_one_counts() {
    let server = MockServer::start().await;
    mount_users(&server, 1).await;
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(oncalls_with(2)))
        .mount(&server)
        .await;
    let connectors = pagerduty_connectors(&server, 2000);
    let check = build(PD_SPEC, &connectors, directory(Arc::default()));

    let outcome = evaluate(check.as_ref()).await;

    assert_eq!(outcome.status, CheckStatus::Fail);
    assert_eq!(
        outcome.message,
        "you are on call for P1ABCDE only at level 2, but level 1 or lower is required"
    );
}

#[tokio::test]
async fn pagerduty_without_an_on_call_entry_fails() {
    let server = MockServer::start().await;
    mount_users(&server, 1).await;
    let mut empty = json_fixture("pagerduty_oncalls.json");
    empty["oncalls"] = Value::Array(Vec::new());
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(empty))
        .mount(&server)
        .await;
    let connectors = pagerduty_connectors(&server, 2000);
    let check = build(PD_SPEC, &connectors, directory(Arc::default()));

    let outcome = evaluate(check.as_ref()).await;

    assert_eq!(outcome.status, CheckStatus::Fail);
    assert_eq!(outcome.message, "you are not on call for P1ABCDE");
}

#[tokio::test]
async fn a_pagerduty_shift_that_ended_before_the_decision_does_not_count() {
    let server = MockServer::start().await;
    mount_users(&server, 1).await;
    let mut ended = oncalls_with(1);
    ended["oncalls"][0]["end"] = "2026-11-24T11:59:59Z".into();
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ended))
        .mount(&server)
        .await;
    let connectors = pagerduty_connectors(&server, 2000);
    let check = build(PD_SPEC, &connectors, directory(Arc::default()));

    assert_eq!(evaluate(check.as_ref()).await.status, CheckStatus::Fail);
}

#[tokio::test]
async fn pagerduty_pagination_is_followed_to_the_page_with_the_duty() {
    let server = MockServer::start().await;
    mount_users(&server, 1).await;
    let mut first = oncalls_with(3);
    first["more"] = true.into();
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .and(query_param("offset", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(first))
        .expect(1)
        .mount(&server)
        .await;
    let mut second = oncalls_with(1);
    second["offset"] = 1.into();
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .and(query_param("offset", "1"))
        .and(query_param("limit", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(second))
        .expect(1)
        .mount(&server)
        .await;
    let connectors = pagerduty_connectors(&server, 2000);
    let check = build(PD_SPEC, &connectors, directory(Arc::default()));

    let outcome = evaluate(check.as_ref()).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
    assert_eq!(outcome.evidence["level"], 1);
    assert_eq!(upstream(&outcome).len(), 3, "users + two pages");
}

#[tokio::test]
async fn pagerduty_user_lookup_and_on_calls_are_cached_across_decisions() {
    let server = MockServer::start().await;
    mount_users(&server, 1).await;
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(oncalls_with(1)))
        .expect(1)
        .mount(&server)
        .await;
    let connectors = pagerduty_connectors(&server, 2000);
    let check = build(PD_SPEC, &connectors, directory(Arc::default()));

    let first = evaluate(check.as_ref()).await;
    let second = evaluate(check.as_ref()).await;

    assert_eq!(first.status, CheckStatus::Pass);
    assert_eq!(second.status, CheckStatus::Pass);
    assert!(upstream(&first).iter().all(|call| call["cached"] == false));
    assert!(upstream(&second).iter().all(|call| call["cached"] == true));
}

fn pagerduty_connectors_caching(server: &MockServer, cache: CacheSettings) -> Arc<Connectors> {
    let (_dir, api_token) = secret(PD_TOKEN);
    let settings = PagerDutySettings {
        base_url: Some(server.uri()),
        api_token,
        cache,
        ..PagerDutySettings::default()
    };
    Arc::new(Connectors {
        pagerduty: Some(Arc::new(PagerDuty::new(&settings, &context()).unwrap())),
        ..Connectors::default()
    })
}

fn oncalls_calls(outcome: &CheckOutcome) -> Vec<Value> {
    upstream(outcome)
        .into_iter()
        .filter(|call| call["operation"] == "GET /oncalls")
        .collect()
}

#[tokio::test]
async fn a_pagerduty_on_call_answer_is_not_served_from_the_cache_past_the_end_of_its_shift() {
    let server = MockServer::start().await;
    mount_users(&server, 1).await;
    let mut ending = oncalls_with(1);
    ending["oncalls"][0]["end"] = "2026-11-24T12:00:01Z".into();
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ending))
        .expect(2)
        .mount(&server)
        .await;
    let connectors = pagerduty_connectors(&server, 2000);
    let check = build(PD_SPEC, &connectors, directory(Arc::default()));

    let first = evaluate(check.as_ref()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = evaluate(check.as_ref()).await;

    assert_eq!(first.status, CheckStatus::Pass, "{}", first.message);
    assert_eq!(second.status, CheckStatus::Pass, "{}", second.message);
    assert_eq!(oncalls_calls(&second)[0]["cached"], false, "asked again");
}

#[tokio::test]
async fn an_open_ended_pagerduty_on_call_is_cached_for_the_configured_ttl() {
    let server = MockServer::start().await;
    mount_users(&server, 1).await;
    let mut permanent = oncalls_with(1);
    permanent["oncalls"][0]["start"] = Value::Null;
    permanent["oncalls"][0]["end"] = Value::Null;
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(permanent))
        .expect(1)
        .mount(&server)
        .await;
    let connectors = pagerduty_connectors(&server, 2000);
    let check = build(PD_SPEC, &connectors, directory(Arc::default()));

    let first = evaluate(check.as_ref()).await;
    let second = evaluate(check.as_ref()).await;

    assert_eq!(first.status, CheckStatus::Pass, "{}", first.message);
    assert_eq!(second.status, CheckStatus::Pass, "{}", second.message);
    assert_eq!(oncalls_calls(&second)[0]["cached"], true);
}

#[tokio::test]
async fn a_pagerduty_not_on_call_answer_lives_only_the_short_negative_ttl() {
    let server = MockServer::start().await;
    mount_users(&server, 1).await;
    let mut empty = json_fixture("pagerduty_oncalls.json");
    empty["oncalls"] = Value::Array(Vec::new());
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(empty))
        .expect(2)
        .mount(&server)
        .await;
    let connectors = pagerduty_connectors_caching(
        &server,
        CacheSettings {
            ttl_seconds: 60,
            negative_ttl_seconds: 1,
            capacity: 100,
        },
    );
    let check = build(PD_SPEC, &connectors, directory(Arc::default()));

    let first = evaluate(check.as_ref()).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = evaluate(check.as_ref()).await;

    assert_eq!(first.status, CheckStatus::Fail);
    assert_eq!(second.status, CheckStatus::Fail);
    assert_eq!(oncalls_calls(&second)[0]["cached"], false, "asked again");
}

#[tokio::test]
async fn a_requester_pagerduty_does_not_know_fails_after_trying_every_address() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/users"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"users": [], "limit": 25, "offset": 0, "more": false, "total": null})),
        )
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let connectors = pagerduty_connectors(&server, 2000);
    let check = build(PD_SPEC, &connectors, directory(Arc::default()));

    let outcome = evaluate(check.as_ref()).await;

    assert_eq!(outcome.status, CheckStatus::Fail);
    assert!(
        outcome
            .message
            .contains("PagerDuty has no user with the address alice@contoso.com or alice@contoso.onmicrosoft.com"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn an_unresolvable_requester_is_an_error_and_pagerduty_is_not_asked() {
    let server = MockServer::start().await;
    mount_users(&server, 0).await;
    let connectors = pagerduty_connectors(&server, 2000);
    let check = build(PD_SPEC, &connectors, nobody());

    let outcome = evaluate(check.as_ref()).await;

    assert_eq!(outcome.status, CheckStatus::Error);
    assert!(
        outcome.message.contains("directory has no user"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn without_a_directory_connector_the_identity_error_names_it() {
    let server = MockServer::start().await;
    mount_users(&server, 0).await;
    let connectors = pagerduty_connectors(&server, 2000);
    let spec: OncallSpec = yaml_serde::from_str(PD_SPEC).unwrap();
    let (lists, windows) = (BTreeMap::new(), BTreeMap::new());
    let env = BuildEnv {
        lists: &lists,
        windows: &windows,
        connectors: &connectors,
    };
    let check = oncall::build(&spec, &env).unwrap();

    let outcome = evaluate(check.as_ref()).await;

    assert_eq!(outcome.status, CheckStatus::Error);
    assert!(outcome.message.contains("graph"), "{}", outcome.message);
}

/// The on-call question against a PagerDuty whose `/oncalls` answers `response`.
async fn with_failing_oncalls(response: ResponseTemplate) -> (CheckOutcome, Duration) {
    let server = MockServer::start().await;
    mount_users(&server, 1).await;
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(response)
        .mount(&server)
        .await;
    let connectors = pagerduty_connectors(&server, 300);
    let check = build(PD_SPEC, &connectors, directory(Arc::default()));
    let started = std::time::Instant::now();
    let outcome = evaluate_within(check.as_ref(), Duration::from_millis(800)).await;
    (outcome, started.elapsed())
}

#[tokio::test]
async fn every_pagerduty_failure_is_an_error_naming_pagerduty_inside_the_deadline() {
    let cases = [
        (
            "rate limited",
            ResponseTemplate::new(429)
                .insert_header("ratelimit-limit", "960")
                .insert_header("ratelimit-remaining", "0")
                .insert_header("ratelimit-reset", "60")
                .set_body_json(
                    serde_json::json!({"error": {"message": "Rate Limit Exceeded", "code": 2020}}),
                ),
        ),
        ("server error", ResponseTemplate::new(500)),
        (
            "garbage",
            ResponseTemplate::new(200).set_body_raw("<html>oops</html>", "text/html"),
        ),
        (
            "hang",
            ResponseTemplate::new(200)
                .set_body_json(oncalls_with(1))
                .set_delay(Duration::from_secs(30)),
        ),
    ];
    for (case, response) in cases {
        let (outcome, elapsed) = with_failing_oncalls(response).await;
        assert_eq!(
            outcome.status,
            CheckStatus::Error,
            "{case}: {}",
            outcome.message
        );
        assert!(
            outcome
                .message
                .starts_with("on-call status could not be checked: pagerduty"),
            "{case}: {}",
            outcome.message
        );
        assert!(
            elapsed < Duration::from_millis(1500),
            "{case}: took {elapsed:?}"
        );
        let calls = upstream(&outcome);
        assert_ne!(calls.last().unwrap()["outcome"], "ok", "{case}");
    }
}

async fn mount_opsgenie(server: &MockServer, schedule: &str, kind: &str, body: Value) {
    Mock::given(method("GET"))
        .and(path(format!("/v2/schedules/{schedule}/on-calls")))
        .and(query_param("scheduleIdentifierType", kind))
        .and(query_param("flat", "true"))
        .and(header(
            "authorization",
            format!("GenieKey {GENIE_KEY}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn opsgenie_flat_recipients_including_the_requester_pass() {
    let server = MockServer::start().await;
    mount_opsgenie(
        &server,
        "platform-primary",
        "name",
        json_fixture("opsgenie_oncalls_flat.json"),
    )
    .await;
    let connectors = opsgenie_connectors(&server);
    let check = build(
        "{ source: opsgenie, schedules: [platform-primary] }",
        &connectors,
        directory(Arc::default()),
    );

    let outcome = evaluate(check.as_ref()).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
    assert_eq!(
        outcome.message,
        "you are on call for platform-primary (level 1) with no end"
    );
    assert_eq!(upstream(&outcome)[0]["connector"], "opsgenie");
}

#[tokio::test]
async fn opsgenie_is_asked_about_the_start_and_on_call_now_is_not_on_call_in_three_days() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/schedules/platform-primary/on-calls"))
        .and(query_param("scheduleIdentifierType", "name"))
        .and(query_param("flat", "true"))
        .and(query_param_is_missing("date"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json_fixture("opsgenie_oncalls_flat.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut bob_only = json_fixture("opsgenie_oncalls_flat.json");
    bob_only["data"]["onCallRecipients"] = serde_json::json!(["bob@contoso.com"]);
    Mock::given(method("GET"))
        .and(path("/v2/schedules/platform-primary/on-calls"))
        .and(query_param("date", "2026-11-27T12:00:00+00:00"))
        .respond_with(ResponseTemplate::new(200).set_body_json(bob_only))
        .expect(1)
        .mount(&server)
        .await;
    let connectors = opsgenie_connectors(&server);
    let check = build(
        "{ source: opsgenie, schedules: [platform-primary] }",
        &connectors,
        directory(Arc::default()),
    );

    let starting_now = evaluate(check.as_ref()).await;
    let starting_later = evaluate_starting(check.as_ref(), in_three_days()).await;

    assert_eq!(
        starting_now.status,
        CheckStatus::Pass,
        "{}",
        starting_now.message
    );
    assert_eq!(starting_now.holds_at, Some(now()));
    assert_eq!(
        starting_later.status,
        CheckStatus::Fail,
        "{}",
        starting_later.message
    );
    assert_eq!(
        starting_later.message,
        "you are not on call for platform-primary at the activation's start (2026-11-27 12:00 UTC)"
    );
    assert_eq!(
        upstream(&starting_later)[0]["cached"],
        false,
        "the answer about now is not reused for another instant"
    );
}

#[tokio::test]
async fn opsgenie_recipients_without_the_requester_fail_and_ids_are_sent_as_ids() {
    let server = MockServer::start().await;
    let schedule = "d875a1b4-9b4e-4219-a1b3-0c26936d18de";
    let mut body = json_fixture("opsgenie_oncalls_flat.json");
    body["data"]["onCallRecipients"] = serde_json::json!(["bob@contoso.com"]);
    mount_opsgenie(&server, schedule, "id", body).await;
    let connectors = opsgenie_connectors(&server);
    let check = build(
        &format!("{{ source: opsgenie, schedules: [{schedule}] }}"),
        &connectors,
        directory(Arc::default()),
    );

    let outcome = evaluate(check.as_ref()).await;

    assert_eq!(outcome.status, CheckStatus::Fail);
    assert_eq!(
        outcome.message,
        format!("you are not on call for {schedule}")
    );
}

#[tokio::test]
async fn an_unknown_opsgenie_schedule_is_an_error_naming_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/schedules/no-such-schedule/on-calls"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json_fixture("opsgenie_not_found.json")),
        )
        .mount(&server)
        .await;
    let connectors = opsgenie_connectors(&server);
    let check = build(
        "{ source: opsgenie, schedules: [no-such-schedule] }",
        &connectors,
        directory(Arc::default()),
    );

    let outcome = evaluate(check.as_ref()).await;

    assert_eq!(outcome.status, CheckStatus::Error);
    assert!(
        outcome
            .message
            .contains("opsgenie has no schedule `no-such-schedule`"),
        "{}",
        outcome.message
    );
}

fn roster_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let roster = dir.path().join("oncall.yaml");
    std::fs::copy(fixture("roster.yaml"), &roster).unwrap();
    (dir, roster)
}

#[tokio::test]
async fn a_roster_shift_naming_the_object_id_passes_without_a_directory_lookup() {
    let (_dir, roster) = roster_copy();
    let lookups = Arc::new(AtomicUsize::new(0));
    let connectors = file_connectors(&roster);
    let check = build(
        "{ source: file, schedules: [platform-primary] }",
        &connectors,
        directory(Arc::clone(&lookups)),
    );

    let outcome = evaluate(check.as_ref()).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
    assert_eq!(
        outcome.message,
        "you are on call for platform-primary (level 1) until 18:00 UTC"
    );
    assert_eq!(lookups.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_roster_shift_naming_the_address_matches_case_insensitively_and_levels_apply() {
    let (_dir, roster) = roster_copy();
    let connectors = file_connectors(&roster);
    let by_policy = build(
        "{ source: file, escalation_policies: [database] }",
        &connectors,
        directory(Arc::default()),
    );
    let primary_only = build(
        "{ source: file, schedules: [database-secondary], max_escalation_level: 1 }",
        &connectors,
        directory(Arc::default()),
    );

    let outcome = evaluate(by_policy.as_ref()).await;
    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
    assert_eq!(
        outcome.message,
        "you are on call for database (level 2) until 2026-11-25 06:00 UTC"
    );
    let outcome = evaluate(primary_only.as_ref()).await;
    assert_eq!(outcome.status, CheckStatus::Fail);
}

#[tokio::test]
async fn a_roster_shift_covering_now_but_not_a_start_in_three_days_fails() {
    let (_dir, roster) = roster_copy();
    let connectors = file_connectors(&roster);
    let check = build(
        "{ source: file, schedules: [platform-primary] }",
        &connectors,
        directory(Arc::default()),
    );

    let outcome = evaluate_starting(check.as_ref(), in_three_days()).await;

    assert_eq!(outcome.status, CheckStatus::Fail, "{}", outcome.message);
    assert_eq!(
        outcome.message,
        "you are not on call for platform-primary at the activation's start (2026-11-27 12:00 UTC)"
    );
}

#[tokio::test]
async fn a_back_dated_start_is_judged_on_the_roster_at_the_decision_time() {
    let (_dir, roster) = roster_copy();
    let connectors = file_connectors(&roster);
    let check = build(
        "{ source: file, schedules: [platform-primary] }",
        &connectors,
        directory(Arc::default()),
    );

    // The shift ran 08:00–18:00 on Nov 24; a start named at 09:00 that day, decided the next
    // morning, runs from the decision, when the shift is over.
    let mut request = request();
    request.schedule.start = Some("2026-11-24T09:00:00Z".parse().unwrap());
    let late = CheckContext::new(
        &request,
        "2026-11-25T09:00:00Z".parse().unwrap(),
        tokio::time::Instant::now() + Duration::from_secs(3),
    );
    let outcome = check.evaluate(&late).await;

    assert_eq!(outcome.status, CheckStatus::Fail, "{}", outcome.message);
    assert_eq!(outcome.message, "you are not on call for platform-primary");
}

#[tokio::test]
async fn a_roster_without_the_requester_fails() {
    let (_dir, roster) = roster_copy();
    let connectors = file_connectors(&roster);
    let check = build(
        "{ source: file, schedules: [storage-primary] }",
        &connectors,
        nobody(),
    );

    let outcome = evaluate(check.as_ref()).await;

    assert_eq!(outcome.status, CheckStatus::Fail);
    assert_eq!(outcome.message, "you are not on call for storage-primary");
}

#[tokio::test]
async fn the_roster_is_reloaded_when_the_file_changes_and_a_broken_edit_is_an_error() {
    let (_dir, roster) = roster_copy();
    let connectors = file_connectors(&roster);
    let check = build(
        "{ source: file, schedules: [storage-primary] }",
        &connectors,
        nobody(),
    );
    assert_eq!(evaluate(check.as_ref()).await.status, CheckStatus::Fail);

    std::fs::write(
        &roster,
        format!(
            "shifts:\n  - {{ schedule: storage-primary, user: {PRINCIPAL}, from: 2026-11-24T11:00:00Z, to: 2026-11-24T13:00:00Z }}\n"
        ),
    )
    .unwrap();
    let outcome = evaluate(check.as_ref()).await;
    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
    assert_eq!(
        upstream(&outcome)[0]["cached"],
        false,
        "the file was re-read"
    );
    let again = evaluate(check.as_ref()).await;
    assert_eq!(
        upstream(&again)[0]["cached"],
        true,
        "unchanged: not re-read"
    );

    std::fs::write(&roster, "shifts: [ { schedule: storage-primary } ]\n").unwrap();
    let outcome = evaluate(check.as_ref()).await;
    assert_eq!(outcome.status, CheckStatus::Error);
    assert!(
        outcome.message.contains("oncall.yaml"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn an_opsgenie_answer_about_now_is_not_reused_because_it_does_not_say_when_the_shift_ends() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/schedules/platform-primary/on-calls"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json_fixture("opsgenie_oncalls_flat.json")),
        )
        .expect(2)
        .mount(&server)
        .await;
    let connectors = opsgenie_connectors(&server);
    let check = build(
        "{ source: opsgenie, schedules: [platform-primary] }",
        &connectors,
        directory(Arc::default()),
    );

    let first = evaluate(check.as_ref()).await;
    let second = evaluate(check.as_ref()).await;

    assert_eq!(first.status, CheckStatus::Pass, "{}", first.message);
    assert_eq!(second.status, CheckStatus::Pass, "{}", second.message);
    let calls = upstream(&second);
    assert_eq!(calls[0]["connector"], "opsgenie");
    assert_eq!(
        calls[0]["cached"], false,
        "a shift may have ended since the first answer: {calls:?}"
    );
}
