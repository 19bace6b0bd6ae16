//! `pimgate onboard` against a Microsoft Graph stand-in on loopback (token endpoint, PIM's custom
//! extensions, role management policy assignments and rules, in their real shapes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;

use pimgate::onboard::{self, OnboardError, Options, ResourceKind, Stage};
use pimgate::settings::Settings;
use serde_json::{Value, json};
use tempfile::TempDir;
use wiremock::matchers::{any, body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TENANT: &str = "11111111-2222-4333-8444-555555555555";
const GRAPH_APP: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
const PIMGATE_APP: &str = "33333333-4444-4555-8666-777777777777";
const HOST: &str = "pimgate.contoso.com";
const EXTENSION_ID: &str = "0f5d2a8e-6b1c-4d7e-9a3f-2c4b6d8e0a1c";
const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";
const POLICY_ID: &str =
    "DirectoryRole_11111111-2222-4333-8444-555555555555_7f3a1b2c-0d4e-4f5a-8b6c-9d0e1f2a3b4c";
const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.graph-app-token.sig";
const EXTENSIONS: &str = "/v1.0/identityGovernance/privilegedAccess/customExtensions";
const RULE: &str = "CustomExtension_PreApproval_EndUser_Assignment";

fn extension_path() -> String {
    format!("{EXTENSIONS}/{EXTENSION_ID}")
}

fn rule_path() -> String {
    format!("/v1.0/policies/roleManagementPolicies/{POLICY_ID}/rules/{RULE}")
}

/// wire.md §4's extension body, written out here rather than taken from the code under test.
fn wire_extension(id: &str, timeout_ms: u64) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.roleManagementCustomCalloutExtension",
        "id": id,
        "type": "preApproval",
        "displayName": "pimgate",
        "description": "Pre-approval checks",
        "endpointConfiguration": {
            "@odata.type": "#microsoft.graph.httpRequestEndpoint",
            "targetUrl": "https://pimgate.contoso.com/v1/evaluate"
        },
        "clientConfiguration": {
            "@odata.type": "#microsoft.graph.customExtensionClientConfiguration",
            "timeoutInMilliseconds": timeout_ms,
            "maximumRetries": 3
        },
        "authenticationConfiguration": {
            "@odata.type": "#microsoft.graph.azureAdTokenAuthentication",
            "resourceId": format!("api://pimgate.contoso.com/{PIMGATE_APP}")
        },
        "resourceType": "entraRoles"
    })
}

/// wire.md §4's rule body.
fn wire_rule(extension_id: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyCustomExtensionRule",
        "id": "CustomExtension_PreApproval_EndUser_Assignment",
        "customExtensionId": extension_id,
        "isEnabled": true,
        "target": {"caller": "EndUser", "operations": ["All"], "level": "Assignment",
                   "inheritableSettings": [], "enforcedSettings": []}
    })
}

/// The rule as Graph returns it for a policy that calls no extension yet.
fn unlinked_rule() -> Value {
    json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#policies('x')/rules/$entity",
        "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyCustomExtensionRule",
        "id": RULE,
        "isEnabled": false,
        "customExtensionId": null,
        "target": {"caller": "EndUser", "operations": ["All"], "level": "Assignment",
                   "inheritableSettings": [], "enforcedSettings": []}
    })
}

fn config(server: &MockServer, dir: &Path) -> std::path::PathBuf {
    let secret = dir.join("client-secret");
    std::fs::write(&secret, "Zx8Q~not-a-real-client-secret\n").unwrap();
    let file = dir.join("pimgate.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[auth]
tenant_id = "{TENANT}"
audiences = ["api://{HOST}/{PIMGATE_APP}", "{PIMGATE_APP}"]

[rules]
path = "{dir}"

[connectors.graph]
client_id = "{GRAPH_APP}"
client_secret = {{ file = "{secret}" }}
authority_url = "{uri}"
graph_url = "{uri}"
"#,
            dir = dir.display(),
            secret = secret.display(),
            uri = server.uri(),
        ),
    )
    .unwrap();
    file
}

fn settings(server: &MockServer, dir: &Path) -> Settings {
    Settings::load_with_env(Some(&config(server, dir)), Some(HashMap::new())).unwrap()
}

fn options(apply: bool) -> Options {
    Options {
        host: Some(HOST.to_string()),
        client_id: Some(PIMGATE_APP.to_string()),
        stage: Stage::PreApproval,
        extension_id: Some(EXTENSION_ID.to_string()),
        display_name: "pimgate".to_string(),
        description: "Pre-approval checks".to_string(),
        resource_type: ResourceKind::EntraRoles,
        roles: vec!["Global Administrator".to_string()],
        timeout_ms: 10000,
        retries: 3,
        apply,
        status: false,
        json: false,
    }
}

async fn run(settings: &Settings, options: &Options) -> (Result<(), OnboardError>, String) {
    let mut out = Vec::new();
    let result = onboard::run(settings, options, &mut out).await;
    (result, String::from_utf8(out).unwrap())
}

async fn mount_token(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": TOKEN
        })))
        .expect(1)
        .mount(server)
        .await;
}

fn authorized() -> wiremock::matchers::HeaderExactMatcher {
    header("authorization", format!("Bearer {TOKEN}").as_str())
}

/// The tenant holds this extension (or none) and Global Administrator's policy rule as given.
async fn mount_state(server: &MockServer, extension: Option<Value>, rule: Value) {
    let answer = match extension {
        Some(mut body) => {
            body["@odata.context"] = json!(
                "https://graph.microsoft.com/v1.0/$metadata#identityGovernance/privilegedAccess/customExtensions/$entity"
            );
            ResponseTemplate::new(200).set_body_json(body)
        }
        None => ResponseTemplate::new(404).set_body_json(json!({"error": {
            "code": "ResourceNotFound", "message": "The custom extension was not found."
        }})),
    };
    Mock::given(method("GET"))
        .and(path(extension_path()))
        .and(authorized())
        .respond_with(answer)
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/policies/roleManagementPolicyAssignments"))
        .and(query_param(
            "$filter",
            format!("scopeId eq '/' and scopeType eq 'DirectoryRole' and roleDefinitionId eq '{GLOBAL_ADMIN}'").as_str(),
        ))
        .and(authorized())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#policies/roleManagementPolicyAssignments",
            "value": [{
                "id": format!("{POLICY_ID}_{GLOBAL_ADMIN}"),
                "policyId": POLICY_ID,
                "scopeId": "/",
                "scopeType": "DirectoryRole",
                "roleDefinitionId": GLOBAL_ADMIN
            }]
        })))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(rule_path()))
        .and(authorized())
        .respond_with(ResponseTemplate::new(200).set_body_json(rule))
        .expect(1)
        .mount(server)
        .await;
}

async fn forbid_writes(server: &MockServer) {
    for verb in ["POST", "PATCH", "PUT", "DELETE"] {
        Mock::given(method(verb))
            .and(wiremock::matchers::path_regex("^/(beta|v1\\.0)/"))
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(server)
            .await;
    }
}

#[tokio::test]
async fn dry_run_prints_the_calls_and_bodies_and_calls_nothing() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let dir = TempDir::new().unwrap();
    let settings = settings(&server, dir.path());
    let mut options = options(false);
    options.extension_id = None;
    let (result, out) = run(&settings, &options).await;
    result.unwrap();
    let derived =
        onboard::derive_extension_id(TENANT, HOST, ResourceKind::EntraRoles, Stage::PreApproval);
    let extensions = format!("{}{EXTENSIONS}", server.uri());
    assert!(out.contains("dry run"), "{out}");
    assert!(
        out.contains(&format!("GET {extensions}/{derived}")),
        "{out}"
    );
    assert!(out.contains(&format!("POST {extensions}\n")), "{out}");
    let extension = serde_json::to_string_pretty(&wire_extension(&derived, 10000)).unwrap();
    assert!(out.contains(&extension), "{out}");
    let rule = serde_json::to_string_pretty(&wire_rule(&derived)).unwrap();
    assert!(out.contains(&rule), "{out}");
    assert!(
        out.contains(&format!(
            "PATCH {}/v1.0/policies/roleManagementPolicies/{{policyId}}/rules/{RULE}",
            server.uri()
        )),
        "{out}"
    );
    assert!(
        out.contains("roleManagementPolicyAssignments?$filter="),
        "{out}"
    );
    assert!(!out.contains("warning"), "{out}");
}

#[tokio::test]
async fn apply_on_an_empty_tenant_creates_the_extension_and_links_the_role() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    mount_state(&server, None, unlinked_rule()).await;
    Mock::given(method("POST"))
        .and(path(EXTENSIONS))
        .and(authorized())
        .and(body_json(wire_extension(EXTENSION_ID, 10000)))
        .respond_with(ResponseTemplate::new(201).set_body_json(wire_extension(EXTENSION_ID, 10000)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(rule_path()))
        .and(authorized())
        .and(body_json(wire_rule(EXTENSION_ID)))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let dir = TempDir::new().unwrap();
    let (result, out) = run(&settings(&server, dir.path()), &options(true)).await;
    result.unwrap();
    assert!(
        out.contains(&format!("extension {EXTENSION_ID} (entraRoles): created")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "role Global Administrator ({GLOBAL_ADMIN}), policy {POLICY_ID}: updated: customExtensionId (none) → {EXTENSION_ID}, isEnabled false → true"
        )),
        "{out}"
    );
    assert!(!out.contains(TOKEN));
}

#[tokio::test]
async fn a_second_apply_with_the_same_state_changes_nothing() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    let mut linked = unlinked_rule();
    linked["customExtensionId"] = json!(EXTENSION_ID);
    linked["isEnabled"] = json!(true);
    mount_state(&server, Some(wire_extension(EXTENSION_ID, 10000)), linked).await;
    forbid_writes(&server).await;
    let dir = TempDir::new().unwrap();
    let (result, out) = run(&settings(&server, dir.path()), &options(true)).await;
    result.unwrap();
    assert_eq!(out.matches("already up to date").count(), 2, "{out}");
}

#[tokio::test]
async fn a_different_timeout_is_patched_and_reported() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    let mut linked = unlinked_rule();
    linked["customExtensionId"] = json!(EXTENSION_ID);
    linked["isEnabled"] = json!(true);
    mount_state(&server, Some(wire_extension(EXTENSION_ID, 10000)), linked).await;
    let mut patch = wire_extension(EXTENSION_ID, 12000);
    patch.as_object_mut().unwrap().remove("id");
    Mock::given(method("PATCH"))
        .and(path(extension_path()))
        .and(authorized())
        .and(body_json(patch))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(rule_path()))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let dir = TempDir::new().unwrap();
    let mut options = options(true);
    options.timeout_ms = 12000;
    let (result, out) = run(&settings(&server, dir.path()), &options).await;
    result.unwrap();
    assert!(
        out.contains(&format!(
            "extension {EXTENSION_ID} (entraRoles): updated: timeout 10000 → 12000"
        )),
        "{out}"
    );
    assert!(out.contains("already up to date"), "{out}");
}

#[tokio::test]
async fn an_unknown_role_name_is_refused_before_any_call() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let dir = TempDir::new().unwrap();
    let mut options = options(true);
    options.roles = vec!["Global Administrater".to_string()];
    let (result, _) = run(&settings(&server, dir.path()), &options).await;
    let error = result.unwrap_err();
    assert_eq!(error.exit_code(), 2);
    assert!(
        error.to_string().contains("Global Administrator"),
        "{error}"
    );
}

async fn mount_forbidden(server: &MockServer) {
    mount_token(server).await;
    Mock::given(method("GET"))
        .and(path(extension_path()))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {
            "code": "Authorization_RequestDenied",
            "message": "Insufficient privileges to complete the operation.",
            "innerError": {"request-id": "5e1c9a2b-0000-4000-8000-000000000000"}
        }})))
        .expect(1)
        .mount(server)
        .await;
    forbid_writes(server).await;
}

#[tokio::test]
async fn graph_refusing_the_app_fails_with_graphs_code_and_message() {
    let server = MockServer::start().await;
    mount_forbidden(&server).await;
    let dir = TempDir::new().unwrap();
    let (result, _) = run(&settings(&server, dir.path()), &options(true)).await;
    let error = result.unwrap_err();
    assert_eq!(error.exit_code(), 1);
    assert_eq!(
        error.to_string(),
        format!(
            "extension {EXTENSION_ID} (entraRoles): Microsoft Graph answered HTTP 403 `Authorization_RequestDenied`: Insufficient privileges to complete the operation."
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_exits_non_zero_with_graphs_message_and_never_the_token() {
    let server = MockServer::start().await;
    mount_forbidden(&server).await;
    let dir = TempDir::new().unwrap();
    let file = config(&server, dir.path());
    let config_arg = file.to_str().unwrap().to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pimgate"))
            .args([
                "onboard",
                "--config",
                config_arg.as_str(),
                "--host",
                HOST,
                "--client-id",
                PIMGATE_APP,
                "--extension-id",
                EXTENSION_ID,
                "--role",
                "Global Administrator",
                "--apply",
            ])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("HTTP 403 `Authorization_RequestDenied`: Insufficient privileges to complete the operation."),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN) && !stdout.contains(TOKEN));
}

#[tokio::test]
async fn a_refused_client_secret_names_the_entra_error_and_calls_graph_no_further() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
            "error_codes": [7000215]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::path_regex("^/(beta|v1\\.0)/"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let dir = TempDir::new().unwrap();
    let (result, _) = run(&settings(&server, dir.path()), &options(true)).await;
    let error = result.unwrap_err();
    assert_eq!(error.exit_code(), 1);
    assert_eq!(
        error.to_string(),
        format!(
            "token for tenant {TENANT}: pimgate could not authenticate to graph: the token endpoint answered HTTP 401 `invalid_client` (AADSTS7000215)"
        )
    );
}
