//! `pimgate rules backtest` as an operator runs it: exit codes, line numbers, standard input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::serve::BIN;

const RULES: &str =
    "policies:\n  - name: short\n    match: {}\n    require:\n      - duration: { max: PT4H }\n";

fn rules_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    dir
}

#[test]
fn an_unreadable_audit_line_exits_non_zero_naming_its_line() {
    let dir = rules_dir();
    let audit = dir.path().join("audit.jsonl");
    std::fs::write(&audit, "{\"type\":\"pimgate.audit\"}\n{ not json\n").unwrap();
    let output = Command::new(BIN)
        .args(["rules", "backtest", "--audit"])
        .arg(&audit)
        .arg(dir.path().join("rules.yaml"))
        .env_remove("PIMGATE_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2:"), "{stderr}");
}

#[test]
fn standard_input_is_read_with_a_dash_and_the_last_line_counts_what_was_done() {
    let dir = rules_dir();
    let mut child = Command::new(BIN)
        .args(["rules", "backtest", "--audit", "-"])
        .arg(dir.path().join("rules.yaml"))
        .env_remove("PIMGATE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"type\":\"pimgate.audit\",\"replay\":false,\"outcome\":\"Approved\"}\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some(
            "0 decisions, 0 changed, 1 skipped (1 recorded without facts (written before pimgate kept them))"
        )
    );
}
