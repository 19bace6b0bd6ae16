//! `pimgate rules test --filter/--junit` and `pimgate evaluate --offline` as an operator runs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::process::{Command, Output};

use crate::support::serve::BIN;

fn pimgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("PIMGATE_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run pimgate")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn rules_test_with_a_filter_runs_the_matching_cases_and_writes_a_junit_report() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("report.xml");
    let output = pimgate(
        &[
            "rules",
            "test",
            "--config",
            "config/example.toml",
            "--filter",
            "a leaver",
            "--junit",
            junit.to_str().unwrap(),
        ],
        &[],
    );
    let printed = stdout(&output);
    assert!(output.status.success(), "{printed}");
    let last = printed.lines().last().unwrap();
    assert!(
        last.starts_with("3 passed, 0 failed, ") && last.ends_with(" filtered out"),
        "{printed}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert!(
        xml.contains("<testsuite name=\"rules/examples.test.yaml\""),
        "{xml}"
    );
    assert!(!xml.contains("<failure"), "{xml}");
}

#[test]
fn rules_test_cannot_write_the_junit_report_exits_2_after_printing_the_results() {
    let output = pimgate(
        &[
            "rules",
            "test",
            "--config",
            "config/example.toml",
            "--filter",
            "leaver",
            "--junit",
            "/nonexistent-dir/report.xml",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot write the JUnit report"),
        "{output:?}"
    );
}

#[test]
fn evaluate_offline_still_reads_the_hr_file_of_the_config() {
    let output = pimgate(
        &[
            "evaluate",
            "--request",
            "tests/fixtures/requests/azure-resource-activation.json",
            "--config",
            "config/example.toml",
            "--offline",
            "--now",
            "2026-11-24T10:00:00Z",
        ],
        &[],
    );
    let printed = stdout(&output);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("[require] hr PASS")
            && !printed.contains("hr_file connector is not configured"),
        "{printed}"
    );
    assert!(
        printed.contains("local file sources were read: hr_file, oncall_file"),
        "{printed}"
    );
}

#[test]
fn evaluate_offline_names_the_remote_checks_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        "
policies:
  - name: changes-need-a-ticket
    match: {}
    require:
      - itsm: { system: servicenow, states: [Implement] }
",
    )
    .unwrap();
    let output = pimgate(
        &[
            "evaluate",
            "--request",
            "tests/fixtures/requests/entra-role-activation.json",
            "--config",
            "config/example.toml",
            "--offline",
            "--json",
        ],
        &[("PIMGATE__RULES__PATH", dir.path().to_str().unwrap())],
    );
    assert!(output.status.success(), "{output:?}");
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        document["offline"]["skippedChecks"],
        serde_json::json!([{
            "ownerKind": "policy", "owner": "changes-need-a-ticket", "kind": "itsm", "connector": "servicenow"
        }])
    );
    assert_eq!(document["decision"]["outcome"], "Denied");
    assert!(document["decision"]["evaluationId"].is_string());
}
