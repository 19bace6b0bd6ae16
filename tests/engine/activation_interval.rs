//! Evidence is judged for the activation actually requested: the ITSM change's planned window and
//! the HR leave date against the effective interval (ServiceNow on wiremock, a real HR file), and
//! the decision engine's rule that `AutoApproved` needs evidence holding at the effective start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pimgate::checks::itsm::{self, ItsmSpec, RequesterDirectory};
use pimgate::checks::registry::BuildEnv;
use pimgate::checks::{Check, CheckContext, CheckOutcome, CheckStatus, NamedCheck, hr};
use pimgate::connectors::hr_file::{HrFile, HrFileSettings};
use pimgate::connectors::http::{Fetched, UpstreamCall, UpstreamError};
use pimgate::connectors::secrets::SecretRef;
use pimgate::connectors::servicenow::{ServiceNow, ServiceNowSettings};
use pimgate::connectors::{BuildContext, Connectors, UserProfile};
use pimgate::decision::{Outcome, evaluate};
use pimgate::payload::{
    Action, ActivationRequest, ExpirationKind, ResourceType, Schedule, Target, Ticket,
};
use serde_json::{Value, json};
use tempfile::TempDir;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PRINCIPAL: &str = "5b2a9c1e-2222-4d3e-8f40-1a2b3c4d5e6f";

/// Tuesday 2026-11-24 18:30 UTC, the decision time of every case here.
fn now() -> DateTime<Utc> {
    at("2026-11-24T18:30:00Z")
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn context() -> BuildContext {
    BuildContext {
        http: reqwest::Client::new(),
        tenant_id: "contoso.onmicrosoft.com".to_string(),
    }
}

/// A self-activation of Global Administrator for one hour from `start` (`None`: now).
fn request(start: Option<&str>) -> ActivationRequest {
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
        justification: Some("CHG0031337 rotate the federation signing certificate".to_string()),
        ticket: Some(Ticket {
            number: Some("CHG0031337".to_string()),
            system: Some("ServiceNow".to_string()),
        }),
        schedule: Schedule {
            start: start.map(at),
            expiration_kind: ExpirationKind::AfterDuration,
            duration: Some(chrono::Duration::hours(1)),
            end: None,
        },
    }
}

fn no_expiration(mut request: ActivationRequest) -> ActivationRequest {
    request.schedule.expiration_kind = ExpirationKind::NoExpiration;
    request.schedule.duration = None;
    request
}

async fn run(check: &Arc<dyn Check>, request: &ActivationRequest) -> CheckOutcome {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    check
        .evaluate(&CheckContext::new(request, now(), deadline))
        .await
}

/// Builds a check of a connector-backed kind with no lists and no windows.
fn build_with<T>(connectors: &Arc<Connectors>, build: impl FnOnce(&BuildEnv<'_>) -> T) -> T {
    let (lists, windows) = (BTreeMap::new(), BTreeMap::new());
    build(&BuildEnv {
        lists: &lists,
        windows: &windows,
        connectors,
    })
}

// ---------------------------------------------------------------------------------------------
// ITSM: the change's planned window must cover the effective interval.

#[derive(Debug)]
struct Ada;

#[async_trait]
impl RequesterDirectory for Ada {
    async fn profile(
        &self,
        _principal_id: &str,
        _deadline: tokio::time::Instant,
    ) -> (
        Result<Fetched<UserProfile>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        let ada = UserProfile {
            id: PRINCIPAL.to_string(),
            mail: Some("ada.lovelace@contoso.com".to_string()),
            ..Default::default()
        };
        (Ok(Fetched::Found(ada)), Vec::new())
    }
}

/// A ServiceNow stand-in answering CHG0031337, in Implement, assigned to Ada, planned
/// `planned_start` … `planned_end` (ServiceNow's `YYYY-MM-DD HH:MM:SS`, UTC).
async fn servicenow_with_change(
    planned_start: &str,
    planned_end: &str,
) -> (MockServer, TempDir, Arc<Connectors>) {
    let server = MockServer::start().await;
    let change = json!({"result": [{
        "number": "CHG0031337",
        "state": "-1",
        "assigned_to.email": "ada.lovelace@contoso.com",
        "assigned_to.user_name": "ada.lovelace",
        "start_date": planned_start,
        "end_date": planned_end,
        "work_start": "",
        "work_end": ""
    }]});
    Mock::given(method("GET"))
        .and(path("/api/now/table/change_request"))
        .respond_with(ResponseTemplate::new(200).set_body_json(change))
        .mount(&server)
        .await;
    let dir = TempDir::new().unwrap();
    let password = dir.path().join("sn-password");
    std::fs::write(&password, "s3cret-pass\n").unwrap();
    let settings = ServiceNowSettings {
        base_url: Some(server.uri()),
        username: Some("svc_pimgate".to_string()),
        password: Some(SecretRef {
            env: None,
            file: Some(password),
        }),
        timeout_ms: 2000,
        ..Default::default()
    };
    let connectors = Arc::new(Connectors {
        servicenow: Some(Arc::new(ServiceNow::new(&settings, &context()).unwrap())),
        ..Default::default()
    });
    (server, dir, connectors)
}

fn itsm_check(connectors: &Arc<Connectors>) -> Arc<dyn Check> {
    let spec: ItsmSpec = yaml_serde::from_str(
        "{ system: servicenow, tables: [change_request], states: [implement], covers_activation: true }",
    )
    .unwrap();
    build_with(connectors, |env| {
        itsm::build_with_directory(&spec, env, Arc::new(Ada)).unwrap()
    })
}

#[tokio::test]
async fn a_back_dated_start_that_fits_the_planned_window_on_paper_is_judged_from_now() {
    // Planned 17:00–19:00. Asked: 17:45 for an hour (17:45–18:45, inside on paper). Decided at
    // 18:30, the activation would run 18:30–19:30, past the planned end.
    let (_server, _dir, connectors) =
        servicenow_with_change("2026-11-24 17:00:00", "2026-11-24 19:00:00").await;
    let check = itsm_check(&connectors);

    let outcome = run(&check, &request(Some("2026-11-24T17:45:00Z"))).await;

    assert_eq!(outcome.status, CheckStatus::Fail, "{}", outcome.message);
    assert!(
        outcome
            .message
            .contains("the activation (2026-11-24 18:30 UTC – 2026-11-24 19:30 UTC)"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn a_later_start_is_judged_against_the_planned_window_at_that_start() {
    let (_server, _dir, connectors) =
        servicenow_with_change("2026-11-27 08:00:00", "2026-11-27 12:00:00").await;
    let check = itsm_check(&connectors);

    let inside = run(&check, &request(Some("2026-11-27T09:00:00Z"))).await;
    let outside = run(&check, &request(Some("2026-11-27T11:30:00Z"))).await;
    let now_is_outside = run(&check, &request(None)).await;

    assert_eq!(inside.status, CheckStatus::Pass, "{}", inside.message);
    assert_eq!(outside.status, CheckStatus::Fail, "{}", outside.message);
    assert_eq!(now_is_outside.status, CheckStatus::Fail);
}

#[tokio::test]
async fn an_activation_without_expiration_cannot_be_covered_by_a_planned_window() {
    let (_server, _dir, connectors) =
        servicenow_with_change("2026-11-24 17:00:00", "2026-12-24 17:00:00").await;
    let check = itsm_check(&connectors);

    let outcome = run(&check, &no_expiration(request(None))).await;

    assert_eq!(outcome.status, CheckStatus::Fail, "{}", outcome.message);
    assert!(
        outcome.message.contains("no expiration"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn a_ticket_state_read_now_says_its_evidence_holds_now() {
    let (_server, _dir, connectors) =
        servicenow_with_change("2026-11-24 17:00:00", "2026-11-30 17:00:00").await;
    let check = itsm_check(&connectors);

    let outcome = run(&check, &request(Some("2026-11-27T09:00:00Z"))).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{}", outcome.message);
    assert_eq!(
        outcome.holds_at,
        Some(now()),
        "the state and assignment are what ServiceNow says now"
    );
}

// ---------------------------------------------------------------------------------------------
// HR: a leave date before the activation's end + `not_leaving_within` fails.

fn hr_check(file: &Path) -> Arc<dyn Check> {
    let settings = HrFileSettings {
        path: file.to_path_buf(),
        check_interval_seconds: Some(0),
    };
    let connectors = Arc::new(Connectors {
        hr_file: Some(Arc::new(HrFile::new(&settings, &context()).unwrap())),
        ..Connectors::default()
    });
    let spec: hr::HrSpec =
        yaml_serde::from_str("{ source: file, not_leaving_within: P7D }").unwrap();
    build_with(&connectors, |env| hr::build(&spec, env).unwrap())
}

fn hr_file_leaving_on(dir: &TempDir, leave: &str) -> std::path::PathBuf {
    let file = dir.path().join("hr.csv");
    std::fs::write(
        &file,
        format!(
            "id,mail,upn,account_enabled,employee_leave_date_time,employee_type,department\n\
             {PRINCIPAL},ada@contoso.com,ada@contoso.com,true,{leave},Employee,Identity\n"
        ),
    )
    .unwrap();
    file
}

#[tokio::test]
async fn a_leave_date_within_the_period_after_a_later_activation_ends_fails() {
    // Leaves Dec 3. Now + 7 days is Dec 1 (fine); an activation on Nov 27 ends Nov 27 13:00, and
    // 7 days after that is Dec 4, after the leave date.
    let dir = TempDir::new().unwrap();
    let check = hr_check(&hr_file_leaving_on(&dir, "2026-12-03"));

    let starting_now = run(&check, &request(None)).await;
    let starting_later = run(&check, &request(Some("2026-11-27T12:00:00Z"))).await;

    assert_eq!(
        starting_now.status,
        CheckStatus::Pass,
        "{}",
        starting_now.message
    );
    assert_eq!(
        starting_later.status,
        CheckStatus::Fail,
        "{}",
        starting_later.message
    );
    assert!(
        starting_later.message.contains("leaves on 2026-12-03"),
        "{}",
        starting_later.message
    );
}

#[tokio::test]
async fn a_leave_date_fails_an_activation_without_expiration_however_far_away() {
    let dir = TempDir::new().unwrap();
    let check = hr_check(&hr_file_leaving_on(&dir, "2027-06-30"));

    let bounded = run(&check, &request(None)).await;
    let unbounded = run(&check, &no_expiration(request(None))).await;

    assert_eq!(bounded.status, CheckStatus::Pass, "{}", bounded.message);
    assert_eq!(unbounded.status, CheckStatus::Fail, "{}", unbounded.message);
    assert!(
        unbounded.message.contains("2027-06-30") && unbounded.message.contains("no expiration"),
        "{}",
        unbounded.message
    );
}

// ---------------------------------------------------------------------------------------------
// The decision: AutoApproved needs evidence holding at the effective start.

/// A check that passes with evidence established at a fixed instant (or timeless).
#[derive(Debug)]
struct PassesAt(Option<DateTime<Utc>>);

#[async_trait]
impl Check for PassesAt {
    async fn evaluate(&self, _context: &CheckContext<'_>) -> CheckOutcome {
        let outcome = CheckOutcome::pass("you are on call");
        match self.0 {
            Some(at) => outcome.holding_at(at),
            None => outcome,
        }
    }
}

/// A check that passes with evidence established for the activation's effective start.
#[derive(Debug)]
struct PassesAtTheStart;

#[async_trait]
impl Check for PassesAtTheStart {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        CheckOutcome::pass("you are on call at the start").holding_at(context.interval.start)
    }
}

fn auto_approving(check: Arc<dyn Check>) -> pimgate::rules::RuleSet {
    let mut rules = pimgate::rules::load_str(
        "rules.yaml",
        "policies:\n  - name: responders\n    match: { tiers: [High] }\n",
    )
    .unwrap();
    rules.policies[0].auto_approve = vec![NamedCheck {
        kind: "oncall",
        check,
        unconfigured: None,
        fingerprint: None,
        shared: None,
    }];
    rules
}

fn exchange_admin(start: Option<&str>) -> ActivationRequest {
    let mut request = request(start);
    request.target = Target::EntraRole {
        role_definition_id: "29232cdf-9323-42fd-ade2-1d097af3e4de".to_string(),
        directory_scope_id: "/".to_string(),
        app_scope_id: None,
    };
    request
}

async fn decide(
    rules: &pimgate::rules::RuleSet,
    request: &ActivationRequest,
) -> (Outcome, Vec<String>) {
    let decision = evaluate(rules, request, now(), Duration::from_secs(2)).await;
    (decision.outcome, decision.reasons)
}

#[tokio::test]
async fn auto_approval_is_downgraded_when_the_evidence_holds_now_but_the_activation_starts_later() {
    let rules = auto_approving(Arc::new(PassesAt(Some(now()))));

    let (outcome, reasons) = decide(&rules, &exchange_admin(Some("2026-11-27T12:00:00Z"))).await;

    assert_eq!(outcome, Outcome::Approved, "{reasons:?}");
    assert!(
        reasons.iter().any(|reason| reason.starts_with("Not auto-approved: oncall")
            && reason.contains("holds now (2026-11-24 18:30 UTC), not at the requested start (2026-11-27 12:00 UTC)")
            && reason.contains("a human approver decides")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn auto_approval_stands_when_the_evidence_holds_at_the_effective_start() {
    let cases: [(&str, Arc<dyn Check>, Option<&str>); 5] = [
        (
            "evidence for the later start",
            Arc::new(PassesAtTheStart),
            Some("2026-11-27T12:00:00Z"),
        ),
        (
            "evidence now, starting now",
            Arc::new(PassesAt(Some(now()))),
            None,
        ),
        (
            "evidence now, a back-dated start runs from now",
            Arc::new(PassesAt(Some(now()))),
            Some("2026-11-24T17:00:00Z"),
        ),
        (
            "evidence now, a start within the clock tolerance",
            Arc::new(PassesAt(Some(now()))),
            Some("2026-11-24T18:30:45Z"),
        ),
        (
            "timeless evidence",
            Arc::new(PassesAt(None)),
            Some("2026-11-27T12:00:00Z"),
        ),
    ];
    for (name, check, start) in cases {
        let rules = auto_approving(check);
        let (outcome, reasons) = decide(&rules, &exchange_admin(start)).await;
        assert_eq!(outcome, Outcome::AutoApproved, "{name}: {reasons:?}");
    }
}

#[tokio::test]
async fn a_required_check_holding_only_now_also_keeps_a_later_activation_from_auto_approval() {
    let mut rules = auto_approving(Arc::new(PassesAtTheStart));
    rules.policies[0].require = vec![NamedCheck {
        kind: "itsm",
        check: Arc::new(PassesAt(Some(now()))),
        unconfigured: None,
        fingerprint: None,
        shared: None,
    }];

    let (later, reasons) = decide(&rules, &exchange_admin(Some("2026-11-27T12:00:00Z"))).await;
    let (immediate, _) = decide(&rules, &exchange_admin(None)).await;

    assert_eq!(later, Outcome::Approved, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|reason| reason.starts_with("Not auto-approved: itsm")),
        "{reasons:?}"
    );
    assert_eq!(immediate, Outcome::AutoApproved);
}

#[test]
fn evidence_times_appear_in_the_check_report_only_when_a_check_states_one() {
    let timeless = serde_json::to_value(CheckOutcome::pass("fine")).unwrap();
    let timed = serde_json::to_value(CheckOutcome::pass("fine").holding_at(now())).unwrap();
    assert_eq!(timeless.get("holds_at"), None);
    assert_eq!(timed["holds_at"], Value::from("2026-11-24T18:30:00Z"));
}
