//! `pimgate rules test` beyond pass and fail: every problem of a test file at once at its
//! `file:line:column` (the corpus in `tests/fixtures/broken-tests/`, one mistake a file), `--filter`,
//! failure lines that point at the case, the JUnit report, and guard and shadow expectations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::path::{Path, PathBuf};

use pimgate::connectors::Connectors;
use pimgate::vocabulary::diagnostic::Diagnostic;
use pimgate::workbench::testing::{TestOptions, TestReport, junit, run_tests, run_tests_filtered};

/// A guard every request meets (`short-only`), a shadow policy stricter than the deciding one
/// (`stricter`), and a catch-all that approves.
const RULES: &str = "
guards:
  - name: no-exchange
    match: { roles: [Exchange Administrator] }
    decide: Denied
    reason: Exchange is frozen.
  - name: short-only
    require:
      - duration: { max: PT2H }
  - name: watch-long
    mode: audit
    require:
      - duration: { max: PT30M }
policies:
  - name: stricter
    mode: audit
    match: {}
    require:
      - duration: { max: PT45M }
  - name: all
    require:
      - duration: { max: PT8H }
";

fn folder(cases: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    std::fs::write(dir.path().join("rules.test.yaml"), cases).unwrap();
    dir
}

fn render(problems: &[Diagnostic], dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    problems
        .iter()
        .map(|problem| problem.to_string().replace(&prefix, ""))
        .collect()
}

async fn report(cases: &str, filter: Option<&str>) -> TestReport {
    let dir = folder(cases);
    let options = TestOptions {
        filter: filter.map(str::to_string),
    };
    run_tests_filtered(dir.path(), &Connectors::none(), &options)
        .await
        .unwrap_or_else(|problems| panic!("{:?}", render(&problems, dir.path())))
}

/// Each broken test file of the corpus and the exact problems it must produce, all of them.
const BROKEN: &[(&str, &[&str])] = &[
    (
        "unknown-case-key.test.yaml",
        &[
            "unknown-case-key.test.yaml:6:5: error: `cases[0].fact`: unknown key `fact`. Fix: did you mean `facts`? Known keys: name, now, stage, request, request_file, facts, expect",
        ],
    ),
    (
        "missing-expect.test.yaml",
        &[
            "missing-expect.test.yaml:2:5: error: `cases[0]`: missing `expect`. Fix: add e.g. `expect: { outcome: Denied }`",
        ],
    ),
    (
        "missing-now.test.yaml",
        &[
            "missing-now.test.yaml:2:5: error: `cases[0]`: missing `now`. Fix: add `now:`, the instant the case is evaluated at, e.g. `now: \"2026-11-24T19:05:00+01:00\"`",
        ],
    ),
    (
        "bad-now.test.yaml",
        &[
            "bad-now.test.yaml:3:5: error: `cases[0].now`: `yesterday` is not an RFC 3339 time (a date, `T`, a time and an offset). Fix: e.g. `2026-11-24T19:05:00+01:00`",
        ],
    ),
    (
        "name-not-text.test.yaml",
        &[
            "name-not-text.test.yaml:2:5: error: `cases[0].name`: `name` must be text, found a list. Fix: write it as text (quote it if YAML reads it as something else)",
        ],
    ),
    (
        "unknown-stage.test.yaml",
        &[
            "unknown-stage.test.yaml:4:5: error: `cases[0].stage`: unknown stage `approval`. Fix: use `pre_approval` (the default) or `post_approval`",
        ],
    ),
    (
        "unknown-outcome.test.yaml",
        &[
            "unknown-outcome.test.yaml:5:15: error: `cases[0].expect.outcome`: unknown outcome `Approve`. Fix: use Denied, Approved or AutoApproved (spelled as PIM spells them)",
        ],
    ),
    (
        "unknown-expect-key.test.yaml",
        &[
            "unknown-expect-key.test.yaml:7:7: error: `cases[0].expect.reasons_contain`: unknown key `reasons_contain`. Fix: did you mean `reason_contains`? Known keys: outcome, policy, reason_contains, guard, guards, shadow",
        ],
    ),
    (
        "unknown-request-key.test.yaml",
        &[
            "unknown-request-key.test.yaml:5:7: error: `cases[0].request.rol`: unknown key `rol`. Fix: did you mean `role`? Known keys: role, group, access, resource_type, scope, action, principal, justification, ticket, ticket_system, duration, start",
        ],
    ),
    (
        "unknown-role.test.yaml",
        &[
            "unknown-role.test.yaml:4:16: error: `cases[0].request.role`: unknown role `Helpdesk Admin`. Fix: give a built-in role name or a role definition GUID",
        ],
    ),
    (
        "request-and-request-file.test.yaml",
        &[
            "request-and-request-file.test.yaml:5:5: error: `cases[0].request_file`: give exactly one of `request` and `request_file`, not both. Fix: keep the one the case is about",
        ],
    ),
    (
        "bad-guard-effect.test.yaml",
        &[
            "bad-guard-effect.test.yaml:7:17: error: `cases[0].expect.guards.short-only`: `denied` is not one of pass, deny, error, cap, not_applied. Fix: use one of pass, deny, error, cap, not_applied",
        ],
    ),
    (
        "bad-shadow-outcome.test.yaml",
        &[
            "bad-shadow-outcome.test.yaml:7:17: error: `cases[0].expect.shadow.stricter`: `deny` is not one of Denied, Approved, AutoApproved, not_matched. Fix: use one of Denied, Approved, AutoApproved, not_matched",
        ],
    ),
    (
        "bad-stub-records.test.yaml",
        &[
            "bad-stub-records.test.yaml:6:43: error: `cases[0].facts.itsm.record.asigned_to`: unknown key `asigned_to`. Fix: did you mean `assigned_to`? Known keys: number, table, state, state_code, status_category, assigned_to, people, planned, unreadable",
            "bad-stub-records.test.yaml:6:74: error: `cases[0].facts.itsm.record.planned`: missing `end`. Fix: give both ends, e.g. `planned: { start: \"2026-11-24T08:00:00Z\", end: \"2026-11-24T18:00:00Z\" }`",
            "bad-stub-records.test.yaml:6:85: error: `cases[0].facts.itsm.record.planned.start`: `tomorrow` is not an RFC 3339 time or a date. Fix: e.g. `\"2026-11-24T18:00:00Z\"` or `2026-12-01`",
            "bad-stub-records.test.yaml:7:23: error: `cases[0].facts.hr.record.enabled`: `maybe` is not true or false. Fix: write `true` or `false`",
            "bad-stub-records.test.yaml:7:39: error: `cases[0].facts.hr.record.leave_date`: `2026-13-01` is not an RFC 3339 time or a date. Fix: e.g. `\"2026-11-24T18:00:00Z\"` or `2026-12-01`",
            "bad-stub-records.test.yaml:8:17: error: `cases[0].facts.oncall.record`: the `oncall` answer has no `not_found`. Fix: write `{ on_call: false }` for someone not on call",
            "bad-stub-records.test.yaml:9:33: error: `cases[0].facts.auth_methods.record.methods[0]`: `fido` is not an authentication method. Fix: did you mean `fido2`? Known: fido2, windowsHelloForBusiness, x509Certificate, platformCredential, microsoftAuthenticator, softwareOath, phone, email, password, temporaryAccessPass, qrCodePin, external",
            "bad-stub-records.test.yaml:10:25: error: `cases[0].facts.http.record.result`: `passed` is not a verdict. Fix: use `pass` or `fail` (`unavailable` instead of the record for no verdict)",
            "bad-stub-records.test.yaml:11:14: error: `cases[0].facts.opa.recrd`: unknown key `recrd`. Fix: did you mean `record`? Known keys: record",
        ],
    ),
    (
        "unknown-fact-kind.test.yaml",
        &[
            "unknown-fact-kind.test.yaml:5:14: error: `cases[0].facts.duration`: `duration` is not an upstream check kind. Fix: facts stub upstream checks only: itsm, hr, oncall, group, auth_methods, opa, http",
        ],
    ),
    (
        "cases-not-a-list.test.yaml",
        &[
            "cases-not-a-list.test.yaml:1:1: error: `cases`: `cases` must be a list, found a mapping. Fix: write each case as a `- name: ...` item under `cases:`",
        ],
    ),
    (
        "unknown-top-key.test.yaml",
        &[
            "unknown-top-key.test.yaml:1:1: error: `case`: unknown key `case`. Fix: did you mean `cases`? Known keys: cases",
        ],
    ),
    (
        "not-yaml.test.yaml",
        &[
            "not-yaml.test.yaml:4:1: error: not valid YAML: found unexpected end of stream at line 4 column 1, while scanning a quoted scalar at line 2 column 11. Fix: fix the YAML syntax",
        ],
    ),
    (
        "every-problem-at-once.test.yaml",
        &[
            "every-problem-at-once.test.yaml:3:5: error: `cases[0].now`: `24 Nov 2026` is not an RFC 3339 time (a date, `T`, a time and an offset). Fix: e.g. `2026-11-24T19:05:00+01:00`",
            "every-problem-at-once.test.yaml:4:46: error: `cases[0].request.duraton`: unknown key `duraton`. Fix: did you mean `duration`? Known keys: role, group, access, resource_type, scope, action, principal, justification, ticket, ticket_system, duration, start",
            "every-problem-at-once.test.yaml:8:5: error: `cases[1].stage`: unknown stage `post-approval`. Fix: use `pre_approval` (the default) or `post_approval`",
            "every-problem-at-once.test.yaml:10:5: error: `cases[1].expect`: missing `outcome`. Fix: add `outcome:`, Denied, Approved or AutoApproved",
            "every-problem-at-once.test.yaml:10:15: error: `cases[1].expect.outcom`: unknown key `outcom`. Fix: did you mean `outcome`? Known keys: outcome, policy, reason_contains, guard, guards, shadow",
        ],
    ),
];

#[tokio::test]
async fn every_broken_test_file_of_the_corpus_gets_exactly_its_problems_at_file_line_column() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken-tests");
    let mut files: Vec<String> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<String> = BROKEN.iter().map(|(file, _)| file.to_string()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "every corpus file has its row, every row its file"
    );
    let mut wrong = Vec::new();
    for (file, expected) in BROKEN {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
        std::fs::copy(corpus.join(file), dir.path().join(file)).unwrap();
        let got = match run_tests(dir.path()).await {
            Ok(report) => vec![format!("ran: {report}")],
            Err(problems) => render(&problems, dir.path()),
        };
        if got != *expected {
            wrong.push(format!(
                "{file}:\n  got      {got:#?}\n  expected {expected:#?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

const THREE_CASES: &str = "
cases:
  - name: a short activation is approved
    now: '2026-11-24T10:00:00Z'
    request: { role: Helpdesk Administrator, duration: PT1H }
    expect: { outcome: Approved, policy: all }
  - name: a long activation is denied by the guard
    now: '2026-11-24T10:00:00Z'
    request: { role: Helpdesk Administrator, duration: PT4H }
    expect: { outcome: Denied, guard: short-only }
  - name: a wrong expectation <fails> & says \"why\"
    now: '2026-11-24T10:00:00Z'
    request: { role: Helpdesk Administrator, duration: PT1H }
    expect: { outcome: AutoApproved }
";

#[tokio::test]
async fn a_filter_runs_only_the_cases_whose_name_contains_it_and_counts_the_rest() {
    let report = report(THREE_CASES, Some("ACTIVATION")).await;
    assert_eq!(
        (report.passed, report.failed, report.filtered_out),
        (2, 0, 1)
    );
    assert!(
        report
            .to_string()
            .ends_with("2 passed, 0 failed, 1 filtered out"),
        "{report}"
    );
    let none = self::report(THREE_CASES, Some("no such case")).await;
    assert_eq!((none.passed, none.failed, none.filtered_out), (0, 0, 3));
}

#[tokio::test]
async fn a_filter_never_hides_a_broken_case() {
    let dir = folder(
        "
cases:
  - name: selected
    now: '2026-11-24T10:00:00Z'
    request: { role: Helpdesk Administrator, duration: PT1H }
    expect: { outcome: Approved }
  - name: other
    now: nonsense
    request: { role: Helpdesk Administrator }
    expect: { outcome: Approved }
",
    );
    let options = TestOptions {
        filter: Some("selected".into()),
    };
    let problems = run_tests_filtered(dir.path(), &Connectors::none(), &options)
        .await
        .expect_err("the broken case is reported although filtered out");
    assert_eq!(problems[0].key, "cases[1].now");
}

#[tokio::test]
async fn a_failure_line_carries_the_file_line_and_column_of_the_case_name() {
    let report = report(THREE_CASES, None).await;
    assert_eq!((report.passed, report.failed), (2, 1));
    let printed = report.to_string();
    assert!(
        printed.contains("rules.test.yaml:11:5: expected AutoApproved, got Approved"),
        "{printed}"
    );
    let failed = report
        .cases
        .iter()
        .find(|case| case.failure.is_some())
        .unwrap();
    assert_eq!((failed.line, failed.column), (11, 5));
}

#[tokio::test]
async fn the_junit_report_has_a_suite_per_file_a_case_per_case_and_escaped_failures() {
    let report = report(THREE_CASES, None).await;
    let xml = junit::to_junit_xml(&report);
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites "),
        "{xml}"
    );
    assert_eq!(xml.matches("<testsuite ").count(), 1, "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    assert!(xml.contains("tests=\"3\" failures=\"1\""), "{xml}");
    assert!(
        xml.contains("name=\"a wrong expectation &lt;fails&gt; &amp; says &quot;why&quot;\""),
        "{xml}"
    );
    assert!(!xml.contains("<fails>"), "{xml}");
    assert!(xml.contains("line=\"11\""), "{xml}");
    assert!(
        xml.contains("message=\"expected AutoApproved, got Approved"),
        "{xml}"
    );
}

#[tokio::test]
async fn guard_effects_and_shadow_outcomes_are_asserted_exactly() {
    let cases = "
cases:
  - name: right about every guard and the shadow policy
    now: '2026-11-24T10:00:00Z'
    request: { role: Helpdesk Administrator, duration: PT1H }
    expect:
      outcome: Approved
      guards: { short-only: pass, watch-long: deny, no-exchange: not_applied }
      shadow: { stricter: Denied }
  - name: a shadow policy that approves where it was expected to deny
    now: '2026-11-24T10:00:00Z'
    request: { role: Helpdesk Administrator, duration: PT20M }
    expect: { outcome: Approved, shadow: { stricter: Denied } }
  - name: a guard that denied where it was expected to pass
    now: '2026-11-24T10:00:00Z'
    request: { role: Helpdesk Administrator, duration: PT4H }
    expect: { outcome: Denied, guards: { short-only: pass } }
  - name: a guard expected not to apply that did
    now: '2026-11-24T10:00:00Z'
    request: { role: Exchange Administrator, duration: PT1H }
    expect: { outcome: Denied, guards: { no-exchange: not_applied } }
  - name: a shadow policy expected not to match that did
    now: '2026-11-24T10:00:00Z'
    request: { role: Helpdesk Administrator, duration: PT1H }
    expect: { outcome: Approved, shadow: { stricter: not_matched } }
";
    let report = report(cases, None).await;
    assert_eq!((report.passed, report.failed), (1, 4), "{report}");
    let explanations: Vec<&str> = report
        .failures
        .iter()
        .map(|(_, _, why)| why.as_str())
        .collect();
    assert!(
        explanations[0].starts_with(
            "expected shadow policy `stricter` to answer Denied, it would have answered Approved"
        ),
        "{explanations:?}"
    );
    assert!(
        explanations[1].starts_with("expected guard `short-only` to pass, got deny"),
        "{explanations:?}"
    );
    assert!(
        explanations[2].starts_with("expected guard `no-exchange` not to apply, it applied (deny)"),
        "{explanations:?}"
    );
    assert!(
        explanations[3].starts_with(
            "expected shadow policy `stricter` not to match, it would have answered Denied"
        ),
        "{explanations:?}"
    );
}
