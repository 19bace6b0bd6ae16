//! The operator's workbench commands as a child process: `rules validate` needs no secrets and speaks
//! JSON for CI, `rules reference` and `roles` print the generated documents.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::process::Command;

use crate::support::serve::BIN;

/// The example configuration plus connectors whose secrets live in variables and files that do not
/// exist here, as in a CI job that has the config but not the production secrets.
fn config_with_absent_secrets(dir: &std::path::Path) -> std::path::PathBuf {
    let example = std::fs::read_to_string("config/example.toml").expect("example config");
    let config = format!(
        r#"{example}
[connectors.servicenow]
base_url = "https://contoso.service-now.com"
auth = "basic"
username = "svc_pimgate"
password = {{ env = "PIMGATE_TEST_UNSET_SERVICENOW_PASSWORD" }}

[connectors.pagerduty]
base_url = "https://api.pagerduty.com"
api_token = {{ file = "{}" }}
"#,
        dir.join("no-such-secret").display()
    );
    let path = dir.join("pimgate.toml");
    std::fs::write(&path, config).expect("write config");
    path
}

fn pimgate(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("PIMGATE_CONFIG")
        .env_remove("PIMGATE_TEST_UNSET_SERVICENOW_PASSWORD")
        .output()
        .expect("run pimgate")
}

#[test]
fn rules_validate_succeeds_with_a_config_naming_secrets_that_are_not_there() {
    let dir = tempfile::tempdir().expect("dir");
    let config = config_with_absent_secrets(dir.path());
    let output = pimgate(&[
        "rules",
        "validate",
        "--config",
        config.to_str().expect("path"),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("no errors"), "{stdout}");
    assert!(
        !stderr.contains("PIMGATE_TEST_UNSET_SERVICENOW_PASSWORD"),
        "{stderr}"
    );
}

#[test]
fn rules_test_succeeds_with_a_config_naming_secrets_that_are_not_there() {
    let dir = tempfile::tempdir().expect("dir");
    let config = config_with_absent_secrets(dir.path());
    let output = pimgate(&["rules", "test", "--config", config.to_str().expect("path")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn the_service_still_refuses_to_start_when_a_secret_is_missing() {
    let dir = tempfile::tempdir().expect("dir");
    let config = config_with_absent_secrets(dir.path());
    let output = Command::new(BIN)
        .args(["serve", "--config", config.to_str().expect("path")])
        .env_remove("PIMGATE_CONFIG")
        .env_remove("PIMGATE_TEST_UNSET_SERVICENOW_PASSWORD")
        .env("PIMGATE__SERVER__LISTEN", "127.0.0.1:0")
        .env("PIMGATE__ADMIN__LISTEN", "127.0.0.1:0")
        .output()
        .expect("run pimgate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("PIMGATE_TEST_UNSET_SERVICENOW_PASSWORD"),
        "{stderr}"
    );
}

#[test]
fn rules_validate_format_json_prints_every_diagnostic_with_its_place() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "policies:\n  - name: a\n    match: { roles: [Global Admin] }\n    on_eror: deny\n",
    )
    .expect("write");
    let output = pimgate(&[
        "rules",
        "validate",
        "--format",
        "json",
        file.to_str().expect("path"),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let document: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    assert_eq!(document["ok"], false);
    let diagnostics = document["diagnostics"].as_array().expect("diagnostics");
    assert!(document["errors"].as_u64() >= Some(2), "{document}");
    let on_error = diagnostics
        .iter()
        .find(|diagnostic| diagnostic["key"] == "policies[0].on_eror")
        .unwrap_or_else(|| panic!("{document}"));
    assert_eq!(on_error["severity"], "error");
    assert_eq!(on_error["line"], 4);
    assert!(on_error["column"].is_u64());
    assert!(
        on_error["file"]
            .as_str()
            .is_some_and(|file| file.ends_with("broken.yaml"))
    );
    assert!(
        on_error["fix"]
            .as_str()
            .is_some_and(|fix| fix.contains("on_error"))
    );
    assert!(on_error["message"].is_string());
}

#[test]
fn rules_validate_format_json_on_good_rules_is_ok_with_the_warnings() {
    let output = pimgate(&["rules", "validate", "--format", "json", "rules"]);
    assert!(output.status.success());
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(document["ok"], true);
    assert_eq!(document["errors"], 0);
    assert!(document["warnings"].as_u64() > Some(0), "{document}");
}

#[test]
fn rules_reference_and_roles_print_the_generated_documents() {
    let reference = pimgate(&["rules", "reference"]);
    assert!(reference.status.success());
    let text = String::from_utf8_lossy(&reference.stdout);
    assert!(text.starts_with("# pimgate rule reference"), "{text}");
    assert!(text.contains("### `auth_methods`"));
    let roles = pimgate(&["roles", "--tier", "critical", "--json"]);
    assert!(roles.status.success());
    let roles: serde_json::Value = serde_json::from_slice(&roles.stdout).expect("JSON");
    let roles = roles.as_array().expect("array");
    assert!(roles.iter().all(|role| role["tier"] == "critical"));
    assert!(
        roles
            .iter()
            .any(|role| role["name"] == "Global Administrator"
                && role["id"] == "62e90394-69f5-4237-9190-012177145e10")
    );
    let unknown = pimgate(&["roles", "--tier", "extreme"]);
    assert_eq!(unknown.status.code(), Some(2));
}

/// README's first command (`serve --config config/example.toml`, development mode) asks no one for
/// signing keys: every outbound HTTPS call is sent to a proxy the test holds, which must see none,
/// and the log must not warn about a key refresh.
#[test]
fn development_mode_with_the_example_config_makes_no_outbound_call() {
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy");
    proxy.set_nonblocking(true).expect("nonblocking");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("address"));
    let served = crate::support::serve::serve(
        std::path::Path::new("config/example.toml"),
        &[
            ("HTTPS_PROXY", proxy_url.as_str()),
            ("HTTP_PROXY", proxy_url.as_str()),
            ("ALL_PROXY", proxy_url.as_str()),
            ("NO_PROXY", ""),
        ],
    );
    // Long enough for the first key fetch and its first retry (1 s backoff) to be attempted.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut connections = 0;
    while std::time::Instant::now() < until {
        if proxy.accept().is_ok() {
            connections += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = [served.stdout_lines(), served.stderr_lines()].concat();
    let warnings: Vec<&String> = log
        .iter()
        .filter(|line| {
            line.contains("signing key refresh failed")
                || line.contains("login.microsoftonline.com")
        })
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(connections, 0, "outbound connections through the proxy");
}
