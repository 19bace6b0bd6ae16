//! Problems inside a check name that check's own keys: "did you mean", the kind's key list, and a
//! key path that never ends in a dot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use pimgate::connectors::Connectors;
use pimgate::vocabulary::diagnostic::Diagnostic;

fn problems(yaml: &str) -> Vec<Diagnostic> {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, yaml).expect("write");
    match pimgate::rules::load_with(&file, &Connectors::none()) {
        Ok(_) => Vec::new(),
        Err(problems) => problems,
    }
}

fn policy_with(check: &str) -> String {
    format!("policies:\n  - name: a\n    require:\n      - {check}\n")
}

#[test]
fn an_unknown_key_in_a_check_gets_did_you_mean_and_that_checks_own_keys() {
    let found = problems(&policy_with(
        "hr: { source: graph, not_leaving_withn: P7D }",
    ));
    let problem = found
        .iter()
        .find(|problem| problem.key == "policies[0].require[0].hr.not_leaving_withn")
        .unwrap_or_else(|| panic!("{found:?}"));
    assert!(
        problem.fix.contains("did you mean `not_leaving_within`?"),
        "{problem}"
    );
    assert!(
        problem.fix.contains(
            "`hr` keys: source, account_enabled, not_leaving_within, employee_types, departments"
        ),
        "{problem}"
    );
    assert!(
        !problem.fix.contains(
            "a check is one of duration, justification, ticket, principal, window, start,"
        ),
        "{problem}"
    );
}

#[test]
fn a_misspelt_check_kind_gets_did_you_mean_among_every_kind() {
    let found = problems(&policy_with("auth_method: { phishing_resistant: true }"));
    let problem = found
        .iter()
        .find(|problem| problem.key == "policies[0].require[0]")
        .unwrap_or_else(|| panic!("{found:?}"));
    assert!(
        problem.fix.contains("did you mean `auth_methods`?"),
        "{problem}"
    );
    assert!(
        problem.fix.contains("http"),
        "every kind is listed: {problem}"
    );
}

#[test]
fn no_key_path_ends_in_a_dot_even_for_an_empty_key() {
    for check in [
        "itsm: { system: servicenow, \"\": 1 }",
        "\"\": { max: PT2H }",
        "duration: { \"\": PT2H }",
        "window: { name: w, \"\": whole }",
    ] {
        let found = problems(&policy_with(check));
        assert!(!found.is_empty(), "{check}");
        for problem in &found {
            assert!(!problem.key.ends_with('.'), "{check}: {problem}");
            assert!(!problem.key.contains(".."), "{check}: {problem}");
        }
    }
}
