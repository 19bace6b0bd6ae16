//! Rule tests with stubbed upstream *records* (`facts: { itsm: { record: ... } }`): the real checks
//! judge the stubbed answers (assignment, planned window, leave date, shift, group membership,
//! authentication methods, `http` verdict, OPA decision) through a replaying fact book; a question
//! no stub answers is not evaluated; a configured upstream is never called.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::sync::Arc;

use pimgate::connectors::{BuildContext, Connectors, ConnectorsSettings};
use pimgate::workbench::testing::{TestReport, run_tests, run_tests_with};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// One policy per upstream kind, each matched by its own role.
const RULES: &str = "
policies:
  - name: change
    match: { roles: [Global Administrator] }
    require:
      - itsm: { system: servicenow, states: [Implement], assigned_to_requester: true, covers_activation: true }
  - name: leavers
    match: { roles: [User Administrator] }
    require:
      - hr: { source: graph, not_leaving_within: P1D }
  - name: exchange
    match: { roles: [Exchange Administrator] }
    auto_approve:
      - oncall: { source: pagerduty, schedules: [P1ABCDE] }
  - name: groups
    match: { roles: [Security Administrator] }
    require:
      - group: { member_of: [3f1c0000-0000-4000-8000-000000000001] }
  - name: methods
    match: { roles: [Intune Administrator] }
    require:
      - auth_methods: { phishing_resistant: true }
  - name: training
    match: { roles: [Teams Administrator] }
    require:
      - http: { connector: training, name: Security training }
  - name: opa
    match: { roles: [SharePoint Administrator] }
    require:
      - opa: { connector: main, path: pim/allow }
";

const ALICE: &str = "hr: { record: { email: alice@contoso.com, enabled: true, leave_date: null } }";

fn change_case(name: &str, record: &str, duration: &str, expect: &str) -> String {
    format!(
        "  - name: {name}
    now: '2026-11-24T10:00:00Z'
    request: {{ role: Global Administrator, duration: {duration}, ticket: CHG0031337 }}
    facts:
      itsm: {{ record: {record} }}
      {ALICE}
    expect: {expect}
"
    )
}

fn case(name: &str, role: &str, duration: &str, facts: &str, expect: &str) -> String {
    format!(
        "  - name: {name}
    now: '2026-11-24T10:00:00Z'
    request: {{ role: {role}, duration: {duration} }}
    facts: {facts}
    expect: {expect}
"
    )
}

async fn run(cases: &[String], connectors: Option<&Arc<Connectors>>) -> TestReport {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    std::fs::write(
        dir.path().join("rules.test.yaml"),
        format!("cases:\n{}", cases.concat()),
    )
    .unwrap();
    match connectors {
        None => run_tests(dir.path()).await,
        Some(connectors) => run_tests_with(dir.path(), connectors).await,
    }
    .unwrap_or_else(|problems| panic!("{problems:#?}"))
}

fn all_pass(report: &TestReport) {
    assert_eq!(report.failed, 0, "{report}");
    assert!(report.passed > 0, "{report}");
}

const WINDOW: &str = "planned: { start: '2026-11-24T08:00:00Z', end: '2026-11-24T18:00:00Z' }";

#[tokio::test]
async fn a_stubbed_ticket_is_judged_by_the_real_itsm_check_assignment_state_and_window() {
    let report = run(
        &[
            change_case(
                "assigned to the requester, in state and window",
                &format!("{{ number: CHG0031337, table: change_request, state: Implement, assigned_to: alice@contoso.com, {WINDOW} }}"),
                "PT1H",
                "{ outcome: Approved, policy: change }",
            ),
            change_case(
                "assigned to someone else",
                &format!("{{ number: CHG0031337, table: change_request, state: Implement, assigned_to: bob@contoso.com, {WINDOW} }}"),
                "PT1H",
                "{ outcome: Denied, reason_contains: [\"is assigned to `bob@contoso.com`\", \"not to the requester (`alice@contoso.com`)\"] }",
            ),
            change_case(
                "a planned window ending before the activation does",
                "{ number: CHG0031337, table: change_request, state: Implement, assigned_to: alice@contoso.com, planned: { start: '2026-11-24T08:00:00Z', end: '2026-11-24T12:00:00Z' } }",
                "PT4H",
                "{ outcome: Denied, reason_contains: \"outside `CHG0031337`'s planned window\" }",
            ),
            change_case(
                "a ticket in the wrong state",
                &format!("{{ state: New, assigned_to: alice@contoso.com, {WINDOW} }}"),
                "PT1H",
                "{ outcome: Denied, reason_contains: New }",
            ),
            change_case(
                "no such ticket",
                "not_found",
                "PT1H",
                "{ outcome: Denied, reason_contains: does not exist }",
            ),
            change_case(
                "the ticket system cannot be asked",
                "unavailable",
                "PT1H",
                "{ outcome: Denied, reason_contains: could not be evaluated }",
            ),
        ],
        None,
    )
    .await;
    all_pass(&report);
}

#[tokio::test]
async fn a_stubbed_hr_record_leaving_before_the_activation_ends_is_a_leaver() {
    let report = run(
        &[
            case(
                "leaves two hours into a four hour activation",
                "User Administrator",
                "PT4H",
                "{ hr: { record: { enabled: true, leave_date: '2026-11-24T12:00:00Z', employee_type: Employee } } }",
                "{ outcome: Denied, policy: leavers, reason_contains: your account leaves on 2026-11-24 }",
            ),
            case(
                "stays on",
                "User Administrator",
                "PT4H",
                "{ hr: { record: { enabled: true, leave_date: null } } }",
                "{ outcome: Approved, policy: leavers }",
            ),
            case(
                "unknown to the directory",
                "User Administrator",
                "PT4H",
                "{ hr: { record: not_found } }",
                "{ outcome: Denied, policy: leavers }",
            ),
            case(
                "an attribute left out is unknown, never a pass",
                "User Administrator",
                "PT4H",
                "{ hr: { record: { enabled: true } } }",
                "{ outcome: Denied, reason_contains: could not be evaluated }",
            ),
        ],
        None,
    )
    .await;
    all_pass(&report);
}

#[tokio::test]
async fn a_stubbed_shift_is_judged_at_the_start_and_its_end_is_named() {
    let report = run(
        &[
            case(
                "a shift ending mid-activation",
                "Exchange Administrator",
                "PT4H",
                "{ oncall: { record: { shifts: [{ schedule: P1ABCDE, level: 1, until: '2026-11-24T12:00:00Z' }] } } }",
                "{ outcome: AutoApproved, reason_contains: \"on call for P1ABCDE (level 1) until 12:00 UTC\" }",
            ),
            case(
                "not on call",
                "Exchange Administrator",
                "PT4H",
                "{ oncall: { record: { on_call: false } } }",
                "{ outcome: Approved, reason_contains: Not auto-approved }",
            ),
            case(
                "the on-call system cannot be asked",
                "Exchange Administrator",
                "PT4H",
                "{ oncall: { record: unavailable } }",
                "{ outcome: Approved, reason_contains: [Not auto-approved, could not be checked] }",
            ),
        ],
        None,
    )
    .await;
    all_pass(&report);
}

#[tokio::test]
async fn stubbed_groups_methods_verdicts_and_opa_answers_are_judged_by_their_real_checks() {
    let report = run(
        &[
            case(
                "a member",
                "Security Administrator",
                "PT1H",
                "{ group: { record: { member_of: [3f1c0000-0000-4000-8000-000000000001] } } }",
                "{ outcome: Approved, policy: groups }",
            ),
            case(
                "not a member",
                "Security Administrator",
                "PT1H",
                "{ group: { record: { member_of: [] } } }",
                "{ outcome: Denied, reason_contains: not a member }",
            ),
            case(
                "a phishing-resistant method",
                "Intune Administrator",
                "PT1H",
                "{ auth_methods: { record: { methods: [phone, fido2] } } }",
                "{ outcome: Approved, policy: methods }",
            ),
            case(
                "a phone only",
                "Intune Administrator",
                "PT1H",
                "{ auth_methods: { record: { methods: [phone] } } }",
                "{ outcome: Denied, reason_contains: \"registered: phone\" }",
            ),
            case(
                "training current",
                "Teams Administrator",
                "PT1H",
                "{ http: { record: { result: pass, message: training current } } }",
                "{ outcome: Approved, policy: training }",
            ),
            case(
                "training overdue",
                "Teams Administrator",
                "PT1H",
                "{ http: { record: { result: fail, message: training overdue } } }",
                "{ outcome: Denied, reason_contains: \"`Security training`: training overdue\" }",
            ),
            case(
                "the compliance API cannot be asked",
                "Teams Administrator",
                "PT1H",
                "{ http: { record: unavailable } }",
                "{ outcome: Denied, reason_contains: could not be evaluated }",
            ),
            case(
                "opa denies",
                "SharePoint Administrator",
                "PT1H",
                "{ opa: { record: { allow: false, reasons: [not in the rota] } } }",
                "{ outcome: Denied, reason_contains: \"denies: not in the rota\" }",
            ),
            case(
                "opa allows",
                "SharePoint Administrator",
                "PT1H",
                "{ opa: { record: { allow: true } } }",
                "{ outcome: Approved, policy: opa }",
            ),
        ],
        None,
    )
    .await;
    all_pass(&report);
}

#[tokio::test]
async fn a_question_no_stub_answers_is_not_evaluated_and_the_failure_names_it() {
    // The requester's directory profile is not stubbed: assignment cannot be told.
    let unanswered = "  - name: no profile stub
    now: '2026-11-24T10:00:00Z'
    request: { role: Global Administrator, duration: PT1H, ticket: CHG0031337 }
    facts:
      itsm: { record: { state: Implement, assigned_to: alice@contoso.com, planned: { start: '2026-11-24T08:00:00Z', end: '2026-11-24T18:00:00Z' } } }
    expect: { outcome: Approved }
";
    let report = run(&[unanswered.to_string()], None).await;
    assert_eq!(report.failed, 1, "{report}");
    let failure = &report.failures[0].2;
    assert!(failure.contains("got Denied"), "{failure}");
    assert!(
        failure.contains("no stub answered: graph.user"),
        "{failure}"
    );
    // The same with the ticket unstubbed (an hr record only).
    let no_ticket = case(
        "no ticket stub",
        "Global Administrator",
        "PT1H",
        &format!("{{ {ALICE} }}"),
        "{ outcome: Denied, reason_contains: could not be evaluated }",
    )
    .replace("PT1H }", "PT1H, ticket: CHG0031337 }");
    all_pass(&run(&[no_ticket], None).await);
}

#[tokio::test]
async fn status_stubs_still_swap_their_checks_beside_record_stubs() {
    let report = run(
        &[
            case(
                "status form alone",
                "Security Administrator",
                "PT1H",
                "{ group: fail }",
                "{ outcome: Denied, reason_contains: \"stubbed: the group check fails\" }",
            ),
            change_case(
                "a status stub for itsm with a record stub for hr",
                "pass",
                "PT1H",
                "{ outcome: Approved, policy: change }",
            )
            .replace("itsm: { record: pass }", "itsm: pass"),
        ],
        None,
    )
    .await;
    all_pass(&report);
}

#[tokio::test]
async fn record_stubs_never_call_a_configured_upstream_even_for_an_unstubbed_question() {
    let servicenow = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .mount(&servicenow)
        .await;
    let settings: ConnectorsSettings = serde_json::from_value(serde_json::json!({
        "servicenow": {
            "base_url": servicenow.uri(),
            "auth": "basic",
            "username": "svc",
            "password": { "env": "PIMGATE_TEST_SN_PASSWORD_NOT_SET" },
        },
    }))
    .unwrap();
    let context = BuildContext {
        http: reqwest::Client::new(),
        tenant_id: "00000000-0000-0000-0000-000000000000".into(),
    };
    let connectors =
        pimgate::connectors::secrets::without_secrets(|| Connectors::build(&settings, &context))
            .unwrap();
    let report = run(
        &[
            change_case(
                "stubbed",
                &format!("{{ state: Implement, assigned_to: alice@contoso.com, {WINDOW} }}"),
                "PT1H",
                "{ outcome: Approved }",
            ),
            case(
                "unstubbed ticket",
                "Global Administrator",
                "PT1H",
                &format!("{{ {ALICE} }}"),
                "{ outcome: Denied, reason_contains: could not be evaluated }",
            )
            .replace("PT1H }", "PT1H, ticket: CHG0031337 }"),
        ],
        Some(&connectors),
    )
    .await;
    all_pass(&report);
    assert!(
        servicenow.received_requests().await.unwrap().is_empty(),
        "a rule test called ServiceNow"
    );
}
