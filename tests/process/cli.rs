//! The built binary, driven only through `shared/spec/interface.md`: commands, exit codes, routes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use crate::support::requests;
use crate::support::serve as common_serve;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common_serve::{BIN, serve};
use requests::dev_token;

fn pimgate(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("PIMGATE_CONFIG")
        .output()
        .expect("run pimgate")
}

#[test]
fn version_prints_the_crate_version() {
    let output = pimgate(&["--version"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn the_example_config_serves_a_sample_request_with_a_dev_token_and_audits_it() {
    let served = serve(Path::new("config/example.toml"), &[]);
    let base = format!("http://127.0.0.1:{}", served.port);
    let admin = served.admin();
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{admin}/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{admin}/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );

    let body = requests::sample_bytes(requests::ENTRA_ROLE);
    let response = client
        .post(format!("{base}/v1/evaluate"))
        .bearer_auth(dev_token())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("evaluate");
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.expect("json");
    let outcome = answer["evaluationOutcome"].as_str().expect("outcome");
    assert!(
        ["Approved", "AutoApproved", "Denied"].contains(&outcome),
        "{answer}"
    );
    assert!(!answer["reason"].as_array().expect("reasons").is_empty());
    let evaluation_id = answer["evaluationId"].as_str().expect("id").to_string();

    let audit_line = served
        .stdout
        .recv_timeout(Duration::from_secs(5))
        .expect("an audit record on stdout");
    let record: serde_json::Value =
        serde_json::from_str(&audit_line).expect("audit record is JSON");
    assert_eq!(record["evaluationId"], evaluation_id.as_str());
    assert_eq!(record["outcome"], outcome);

    let unauthenticated = client
        .post(format!("{base}/v1/evaluate"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(unauthenticated.status(), 401);
    assert!(
        unauthenticated.headers()["www-authenticate"]
            .to_str()
            .expect("header")
            .starts_with("Bearer"),
        "401 carries WWW-Authenticate: Bearer"
    );
    drop(served);
}

#[tokio::test]
async fn json_logs_carry_a_request_id_and_never_the_token() {
    let served = serve(
        Path::new("config/example.toml"),
        &[
            ("PIMGATE__LOG__FORMAT", "json"),
            ("PIMGATE__AUDIT__SINK", "off"),
        ],
    );
    let base = format!("http://127.0.0.1:{}", served.port);
    let token = dev_token();
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/evaluate"))
        .bearer_auth(format!("{token}x"))
        .header("content-type", "application/json")
        .header("x-request-id", "trace-me-42")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let mut found = None;
    while let Ok(line) = served.stderr.recv_timeout(Duration::from_secs(3)) {
        assert!(
            !line.contains(&token[..40]),
            "a log line contains the token: {line}"
        );
        let parsed: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if line.contains("bearer token rejected") {
            found = Some(parsed);
            break;
        }
    }
    let line = found.expect("the rejection is logged");
    let text = line.to_string();
    assert!(
        text.contains("trace-me-42"),
        "request id on the log line: {text}"
    );
}

#[test]
fn serve_refuses_dev_mode_on_a_public_address() {
    let output = Command::new(BIN)
        .args(["serve", "--config", "config/example.toml"])
        .env_remove("PIMGATE_CONFIG")
        .env("PIMGATE__SERVER__LISTEN", "0.0.0.0:0")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth.dev_mode"), "{stderr}");
}

#[test]
fn serve_reports_every_config_problem_and_exits_non_zero() {
    let output = Command::new(BIN)
        .args(["serve", "--config", "config/example.toml"])
        .env_remove("PIMGATE_CONFIG")
        .env("PIMGATE__SERVER__DEADLINE_MS", "1")
        .env("PIMGATE__AUTH__TENANT_ID", "contoso")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("server.deadline_ms") && stderr.contains("auth.tenant_id"),
        "{stderr}"
    );
}

#[test]
fn shipped_rules_validate_cleanly_with_the_example_config() {
    let output = pimgate(&["rules", "validate", "--config", "config/example.toml"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("0 warning(s), no errors"), "{stdout}");
}

#[test]
fn rules_that_need_an_unconfigured_connector_load_with_a_warning() {
    let output = pimgate(&["rules", "validate", "rules"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "warnings do not fail validation: {stdout}"
    );
    assert!(
        stdout.contains("warning") && stdout.contains("not configured"),
        "{stdout}"
    );
}

#[test]
fn a_broken_rule_file_fails_validation_with_file_line_key_and_fix() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "policies:\n  - name: a\n    match: { roles: [Global Admin] }\n    on_eror: deny\n",
    )
    .expect("write");
    let output = pimgate(&["rules", "validate", file.to_str().expect("path")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("broken.yaml:3:") && stdout.contains("Global Administrator"),
        "{stdout}"
    );
    assert!(
        stdout.contains("broken.yaml:4:") && stdout.contains("on_error"),
        "{stdout}"
    );
}

#[test]
fn shipped_rule_tests_pass() {
    let output = pimgate(&["rules", "test", "--config", "config/example.toml"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn evaluate_explains_a_sample_request() {
    let output = pimgate(&[
        "evaluate",
        "--request",
        "tests/fixtures/requests/entra-role-activation.json",
        "--config",
        "config/example.toml",
        "--offline",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Outcome:") && stdout.contains("Policy:") && stdout.contains("Offline"),
        "{stdout}"
    );
}

#[test]
fn evaluate_answers_as_the_stage_it_is_given() {
    let at = |stage: &str| {
        let output = pimgate(&[
            "evaluate",
            "--request",
            "rules/requests/entra-role-activation.json",
            "--config",
            "config/example.toml",
            "--offline",
            "--json",
            "--now",
            "2026-11-24T19:20:00+01:00",
            "--stage",
            stage,
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        document["decision"].clone()
    };
    let before = at("pre-approval");
    let after = at("post-approval");
    assert_eq!(before["stage"], "pre_approval");
    assert_eq!(after["stage"], "post_approval");
    assert_eq!(after["policy"], "critical-roles-recheck-after-approval");
    assert_ne!(before["policy"], after["policy"]);
    assert_ne!(before["evaluationId"], after["evaluationId"]);

    let wrong = pimgate(&[
        "evaluate",
        "--request",
        "rules/requests/entra-role-activation.json",
        "--stage",
        "approval",
    ]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("pre-approval or post-approval"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
}

#[test]
fn evaluate_rejects_a_malformed_request_file_naming_the_field() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bad.json");
    std::fs::write(&file, r#"{"action":"selfActivate","roleDefinitionId":"62e90394-69f5-4237-9190-012177145e10","directoryScopeId":"/"}"#)
        .expect("write");
    let output = pimgate(&["evaluate", "--request", file.to_str().expect("path")]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("principalId"));
    assert!(Path::new(&file).exists());
}
