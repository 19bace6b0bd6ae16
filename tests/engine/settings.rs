//! Configuration layering and start-up validation, through `Settings::load_with_env`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use pimgate::settings::{AuditSink, LogFormat, Settings, TokenVersion};

fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
    )
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    file
}

const MINIMAL: &str = r#"
[server]
listen = "0.0.0.0:8080"
deadline_ms = 5000
max_body_bytes = 65536

[auth]
tenant_id = "00000000-0000-0000-0000-000000000000"
audiences = ["api://pimgate.contoso.com/11111111-1111-1111-1111-111111111111", "11111111-1111-1111-1111-111111111111"]
allowed_callers = ["1c67c054-65c8-4f7f-92a1-eb7ba6e48627"]
token_versions = ["v1", "v2"]
metadata_url = "https://login.microsoftonline.com/{tenant_id}/v2.0/.well-known/openid-configuration"
clock_skew_seconds = 60

[rules]
path = "rules"
"#;

#[test]
fn the_bundled_example_config_loads_in_dev_mode() {
    let settings = Settings::load_with_env(Some(Path::new("config/example.toml")), env(&[]))
        .expect("example loads");
    assert!(settings.auth.dev_mode);
    assert_eq!(settings.server.listen, "127.0.0.1:8080");
    assert_eq!(settings.log.format, LogFormat::Pretty);
}

#[test]
fn the_production_config_loads_without_dev_mode() {
    let settings = Settings::load_with_env(Some(Path::new("config/production.toml")), env(&[]))
        .expect("production loads");
    assert!(!settings.auth.dev_mode);
    assert_eq!(settings.log.format, LogFormat::Json);
}

#[test]
fn a_file_with_only_the_interface_keys_is_enough_and_defaults_fill_the_rest() {
    let file = toml_file(MINIMAL);
    let settings = Settings::load_with_env(Some(file.path()), env(&[])).expect("minimal loads");
    assert_eq!(settings.audit.sink, AuditSink::Stdout);
    assert_eq!(
        settings.auth.token_versions,
        vec![TokenVersion::V1, TokenVersion::V2]
    );
    assert_eq!(
        settings.auth.resolved_metadata_url(),
        "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration"
    );
}

#[test]
fn environment_variables_override_the_file_including_lists() {
    let file = toml_file(MINIMAL);
    let settings = Settings::load_with_env(
        Some(file.path()),
        env(&[
            ("PIMGATE__SERVER__DEADLINE_MS", "3000"),
            (
                "PIMGATE__AUTH__TENANT_ID",
                "22222222-2222-2222-2222-222222222222",
            ),
            ("PIMGATE__AUTH__AUDIENCES", "aud-one,aud-two"),
            ("PIMGATE__AUTH__TOKEN_VERSIONS", "v2"),
        ]),
    )
    .expect("loads");
    assert_eq!(settings.server.deadline_ms, 3000);
    assert_eq!(
        settings.auth.tenant_id,
        "22222222-2222-2222-2222-222222222222"
    );
    assert_eq!(settings.auth.audiences, vec!["aud-one", "aud-two"]);
    assert_eq!(settings.auth.token_versions, vec![TokenVersion::V2]);
}

#[test]
fn unknown_keys_in_file_and_environment_are_all_reported() {
    let file = toml_file(&format!("{MINIMAL}\n[server2]\nx = 1\n"));
    let error = Settings::load_with_env(
        Some(file.path()),
        env(&[
            ("PIMGATE__AUTH__TENANTID", "x"),
            ("PIMGATE__SERVER__LISTEN", "127.0.0.1:1"),
        ]),
    )
    .expect_err("unknown keys are errors");
    let keys: Vec<&str> = error
        .problems
        .iter()
        .map(|problem| problem.key.as_str())
        .collect();
    assert!(keys.contains(&"server2"), "{keys:?}");
    assert!(keys.contains(&"auth.tenantid"), "{keys:?}");
    assert!(
        error
            .to_string()
            .contains(&file.path().display().to_string()),
        "names the file: {error}"
    );
}

#[test]
fn every_semantic_problem_is_reported_at_once_with_key_and_fix() {
    let file = toml_file(
        r#"
[server]
listen = "not-an-address"
deadline_ms = 10
[auth]
tenant_id = "contoso"
audiences = []
metadata_url = "http://login.example.com/.well-known/openid-configuration"
[rules]
path = "does/not/exist"
[audit]
sink = "file"
"#,
    );
    let error = Settings::load_with_env(Some(file.path()), env(&[])).expect_err("invalid");
    let keys: Vec<&str> = error
        .problems
        .iter()
        .map(|problem| problem.key.as_str())
        .collect();
    for expected in [
        "server.listen",
        "server.deadline_ms",
        "auth.tenant_id",
        "auth.audiences",
        "auth.metadata_url",
        "rules.path",
        "audit.path",
    ] {
        assert!(keys.contains(&expected), "missing {expected} in {keys:?}");
    }
    assert!(error.problems.iter().all(|problem| !problem.fix.is_empty()));
}

#[test]
fn dev_mode_is_refused_on_a_non_loopback_listener() {
    let file = toml_file(&MINIMAL.replace(
        "clock_skew_seconds = 60",
        "clock_skew_seconds = 60\ndev_mode = true",
    ));
    let error =
        Settings::load_with_env(Some(file.path()), env(&[])).expect_err("dev mode on 0.0.0.0");
    assert!(
        error
            .problems
            .iter()
            .any(|problem| problem.key == "auth.dev_mode"),
        "{error}"
    );
}

#[test]
fn a_wrongly_typed_value_names_its_key() {
    let file = toml_file(&MINIMAL.replace("deadline_ms = 5000", "deadline_ms = \"soon\""));
    let error = Settings::load_with_env(Some(file.path()), env(&[])).expect_err("type error");
    assert!(error.to_string().contains("deadline_ms"), "{error}");
}

#[test]
fn plain_http_metadata_is_accepted_for_loopback_only() {
    assert!(pimgate::settings::check_fetch_url("http://127.0.0.1:9000/x").is_ok());
    assert!(pimgate::settings::check_fetch_url("http://localhost:9000/x").is_ok());
    assert!(pimgate::settings::check_fetch_url("http://[::1]:9000/x").is_ok());
    assert!(pimgate::settings::check_fetch_url("http://10.0.0.1/x").is_err());
    assert!(pimgate::settings::check_fetch_url("http://localhost.evil.com/x").is_err());
    assert!(pimgate::settings::check_fetch_url("ftp://127.0.0.1/x").is_err());
}

#[test]
fn the_admin_listener_defaults_to_loopback_port_9090_so_operator_routes_are_never_public_by_default()
 {
    let file = toml_file(MINIMAL);
    let settings = Settings::load_with_env(Some(file.path()), env(&[])).expect("minimal loads");
    assert_eq!(settings.admin.listen, "127.0.0.1:9090");
    let address = settings
        .admin_address()
        .unwrap()
        .expect("admin listener on");
    assert!(address.ip().is_loopback());
}

#[test]
fn an_admin_listener_that_is_not_an_address_or_shares_the_public_port_is_reported_with_a_fix() {
    let file = toml_file(MINIMAL);
    for (value, says) in [
        ("localhost:nine", "is not an IP address and port"),
        ("0.0.0.0:8080", "same port as `server.listen`"),
        ("127.0.0.1:8080", "same port as `server.listen`"),
    ] {
        let error =
            Settings::load_with_env(Some(file.path()), env(&[("PIMGATE__ADMIN__LISTEN", value)]))
                .expect_err(value);
        let problem = error
            .problems
            .iter()
            .find(|problem| problem.key == "admin.listen")
            .unwrap_or_else(|| panic!("admin.listen not reported for {value}: {error}"));
        assert!(problem.message.contains(says), "{value}: {problem:?}");
        assert!(!problem.fix.is_empty());
    }
}

#[test]
fn an_empty_admin_listener_serves_every_route_on_the_public_listener() {
    let file = toml_file(MINIMAL);
    let settings =
        Settings::load_with_env(Some(file.path()), env(&[("PIMGATE__ADMIN__LISTEN", "")]))
            .expect("empty admin.listen is valid");
    assert_eq!(settings.admin_address().unwrap(), None);
}
