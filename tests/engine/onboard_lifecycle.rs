//! `pimgate onboard` for both of PIM's stages against a Microsoft Graph stand-in on loopback, in
//! Graph v1.0's shapes (`shared/spec/wire.md` §4, §4a): the stage's extension `type`, route and
//! policy rule, PIM's limits checked before any call, host and client id from `auth.audiences`,
//! PIM's refusal of a `resourceId`, and `--status` (GETs only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pimgate::onboard::{self, OnboardError, Options, ResourceKind, Stage};
use pimgate::settings::Settings;
use serde_json::{Value, json};
use tempfile::TempDir;
use wiremock::matchers::{any, body_json, header, method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TENANT: &str = "11111111-2222-4333-8444-555555555555";
const GRAPH_APP: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
const PIMGATE_APP: &str = "33333333-4444-4555-8666-777777777777";
const HOST: &str = "pimgate.contoso.com";
const PRE_EXTENSION: &str = "0f5d2a8e-6b1c-4d7e-9a3f-2c4b6d8e0a1c";
const POST_EXTENSION: &str = "7c1e9b3a-2d4f-4a6b-8c0d-1e2f3a4b5c6d";
const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";
const EXCHANGE_ADMIN: &str = "29232cdf-9323-42fd-ade2-1d097af3e4de";
const GA_POLICY: &str =
    "DirectoryRole_11111111-2222-4333-8444-555555555555_7f3a1b2c-0d4e-4f5a-8b6c-9d0e1f2a3b4c";
const EXCHANGE_POLICY: &str =
    "DirectoryRole_11111111-2222-4333-8444-555555555555_1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.graph-app-token.sig";
const EXTENSIONS: &str = "/v1.0/identityGovernance/privilegedAccess/customExtensions";
const PRE_RULE: &str = "CustomExtension_PreApproval_EndUser_Assignment";
const POST_RULE: &str = "CustomExtension_PostApproval_EndUser_Assignment";

/// wire.md §4/§4a's extension body for `stage`, written out here rather than taken from the code.
fn wire_extension(id: &str, kind: &str, description: &str, target: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.roleManagementCustomCalloutExtension",
        "id": id,
        "type": kind,
        "displayName": "pimgate",
        "description": description,
        "endpointConfiguration": {
            "@odata.type": "#microsoft.graph.httpRequestEndpoint",
            "targetUrl": target
        },
        "clientConfiguration": {
            "@odata.type": "#microsoft.graph.customExtensionClientConfiguration",
            "timeoutInMilliseconds": 10000,
            "maximumRetries": 3
        },
        "authenticationConfiguration": {
            "@odata.type": "#microsoft.graph.azureAdTokenAuthentication",
            "resourceId": format!("api://pimgate.contoso.com/{PIMGATE_APP}")
        },
        "resourceType": "entraRoles"
    })
}

fn post_extension() -> Value {
    wire_extension(
        POST_EXTENSION,
        "postApproval",
        "Post-approval checks",
        "https://pimgate.contoso.com/v1/evaluate/post-approval",
    )
}

/// wire.md §4's rule body, with the rule id of the stage.
fn wire_rule(rule_id: &str, extension_id: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyCustomExtensionRule",
        "id": rule_id,
        "customExtensionId": extension_id,
        "isEnabled": true,
        "target": {"caller": "EndUser", "operations": ["All"], "level": "Assignment",
                   "inheritableSettings": [], "enforcedSettings": []}
    })
}

fn config(server: &MockServer, dir: &Path, audiences: &str) -> PathBuf {
    let secret = dir.join("client-secret");
    std::fs::write(&secret, "Zx8Q~not-a-real-client-secret\n").unwrap();
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("10-exchange.yaml"),
        "policies:\n  - name: exchange\n    match:\n      roles: [Exchange Administrator]\n    require:\n      - justification: { min_length: 10, min_words: 2 }\n",
    )
    .unwrap();
    let file = dir.join("pimgate.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[auth]
tenant_id = "{TENANT}"
audiences = {audiences}

[rules]
path = "{rules}"

[connectors.graph]
client_id = "{GRAPH_APP}"
client_secret = {{ file = "{secret}" }}
authority_url = "{uri}"
graph_url = "{uri}"
"#,
            rules = rules.display(),
            secret = secret.display(),
            uri = server.uri(),
        ),
    )
    .unwrap();
    file
}

fn settings(server: &MockServer, dir: &Path) -> Settings {
    let audiences = format!(r#"["api://{HOST}/{PIMGATE_APP}", "{PIMGATE_APP}"]"#);
    Settings::load_with_env(Some(&config(server, dir, &audiences)), Some(HashMap::new())).unwrap()
}

fn options(stage: Stage) -> Options {
    Options {
        host: Some(HOST.to_string()),
        client_id: Some(PIMGATE_APP.to_string()),
        stage,
        extension_id: Some(
            match stage {
                Stage::PreApproval => PRE_EXTENSION,
                Stage::PostApproval => POST_EXTENSION,
            }
            .to_string(),
        ),
        display_name: "pimgate".to_string(),
        description: onboard::default_description(stage).to_string(),
        resource_type: ResourceKind::EntraRoles,
        roles: vec!["Global Administrator".to_string()],
        timeout_ms: 10000,
        retries: 3,
        apply: false,
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
        .mount(server)
        .await;
}

fn authorized() -> wiremock::matchers::HeaderExactMatcher {
    header("authorization", format!("Bearer {TOKEN}").as_str())
}

/// Any call the stand-in was not told to expect fails the test.
async fn nothing_else(server: &MockServer) {
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .with_priority(u8::MAX)
        .mount(server)
        .await;
}

async fn mount_ga_assignment(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v1.0/policies/roleManagementPolicyAssignments"))
        .and(query_param(
            "$filter",
            format!("scopeId eq '/' and scopeType eq 'DirectoryRole' and roleDefinitionId eq '{GLOBAL_ADMIN}'").as_str(),
        ))
        .and(authorized())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [{"id": format!("{GA_POLICY}_{GLOBAL_ADMIN}"), "policyId": GA_POLICY,
                       "scopeId": "/", "scopeType": "DirectoryRole", "roleDefinitionId": GLOBAL_ADMIN}]
        })))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_post_approval_dry_run_names_v1_calls_the_post_approval_type_route_and_rule() {
    let server = MockServer::start().await;
    nothing_else(&server).await;
    let dir = TempDir::new().unwrap();
    let (result, out) = run(
        &settings(&server, dir.path()),
        &options(Stage::PostApproval),
    )
    .await;
    result.unwrap();
    let uri = server.uri();
    assert!(out.contains(&format!("POST {uri}{EXTENSIONS}\n")), "{out}");
    let body = serde_json::to_string_pretty(&post_extension()).unwrap();
    assert!(out.contains(&body), "{out}");
    let rule = serde_json::to_string_pretty(&wire_rule(POST_RULE, POST_EXTENSION)).unwrap();
    assert!(out.contains(&rule), "{out}");
    assert!(
        out.contains(&format!(
            "PATCH {uri}/v1.0/policies/roleManagementPolicies/{{policyId}}/rules/{POST_RULE}"
        )),
        "{out}"
    );
    assert!(!out.contains("/beta/") && !out.contains(PRE_RULE), "{out}");
}

#[tokio::test]
async fn apply_at_post_approval_creates_the_post_approval_extension_and_links_its_rule() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path(format!("{EXTENSIONS}/{POST_EXTENSION}")))
        .and(authorized())
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {
            "code": "ResourceNotFound", "message": "The custom extension was not found."
        }})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(EXTENSIONS))
        .and(authorized())
        .and(body_json(post_extension()))
        .respond_with(ResponseTemplate::new(201).set_body_json(post_extension()))
        .expect(1)
        .mount(&server)
        .await;
    mount_ga_assignment(&server).await;
    let rule_path = format!("/v1.0/policies/roleManagementPolicies/{GA_POLICY}/rules/{POST_RULE}");
    let mut unlinked = wire_rule(POST_RULE, POST_EXTENSION);
    unlinked["customExtensionId"] = Value::Null;
    unlinked["isEnabled"] = json!(false);
    Mock::given(method("GET"))
        .and(path(rule_path.as_str()))
        .and(authorized())
        .respond_with(ResponseTemplate::new(200).set_body_json(unlinked))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(rule_path.as_str()))
        .and(authorized())
        .and(body_json(wire_rule(POST_RULE, POST_EXTENSION)))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    nothing_else(&server).await;
    let dir = TempDir::new().unwrap();
    let mut options = options(Stage::PostApproval);
    options.apply = true;
    let (result, out) = run(&settings(&server, dir.path()), &options).await;
    result.unwrap();
    assert!(
        out.contains(&format!("extension {POST_EXTENSION} (entraRoles): created")),
        "{out}"
    );
    assert!(out.contains("isEnabled false → true"), "{out}");
}

#[tokio::test]
async fn limits_pim_refuses_or_cannot_meet_are_refused_before_any_call() {
    let server = MockServer::start().await;
    nothing_else(&server).await;
    let dir = TempDir::new().unwrap();
    let settings = settings(&server, dir.path());
    let cases: [(u64, u32, &str); 5] = [
        (
            999,
            3,
            "`--timeout-ms 999` is outside PIM's limits: timeoutInMilliseconds must be 1000 to 60000",
        ),
        (60001, 3, "`--timeout-ms 60001` is outside PIM's limits"),
        (
            10000,
            6,
            "`--retries 6` is outside PIM's limits: maximumRetries must be 0 to 5",
        ),
        (
            5000,
            3,
            "`--timeout-ms 5000` leaves less than 1000 ms above `server.deadline_ms` 5000: PIM would give up before pimgate's answer arrives; use `--timeout-ms 6000` or more",
        ),
        (5999, 0, "use `--timeout-ms 6000` or more"),
    ];
    for (timeout_ms, retries, expected) in cases {
        for apply in [false, true] {
            let mut options = options(Stage::PreApproval);
            options.timeout_ms = timeout_ms;
            options.retries = retries;
            options.apply = apply;
            let (result, out) = run(&settings, &options).await;
            let error = result.unwrap_err();
            assert_eq!(error.exit_code(), 2, "{error}");
            assert!(error.to_string().contains(expected), "{expected}: {error}");
            assert!(out.is_empty(), "{out}");
        }
    }
    let mut edge = options(Stage::PreApproval);
    edge.timeout_ms = 6000;
    edge.retries = 5;
    run(&settings, &edge).await.0.unwrap();
}

#[tokio::test]
async fn a_deadline_too_close_to_pims_maximum_asks_to_lower_the_deadline() {
    let server = MockServer::start().await;
    let dir = TempDir::new().unwrap();
    let mut settings = settings(&server, dir.path());
    settings.server.deadline_ms = 59_500;
    let mut options = options(Stage::PreApproval);
    options.timeout_ms = 60_000;
    let error = run(&settings, &options).await.0.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("lower `server.deadline_ms` to at most 59000"),
        "{error}"
    );
}

#[tokio::test]
async fn host_and_client_id_default_to_the_application_id_uri_in_auth_audiences() {
    let server = MockServer::start().await;
    nothing_else(&server).await;
    let dir = TempDir::new().unwrap();
    let mut options = options(Stage::PreApproval);
    options.host = None;
    options.client_id = None;
    let (result, out) = run(&settings(&server, dir.path()), &options).await;
    result.unwrap();
    assert!(
        out.contains(&format!(r#""resourceId": "api://{HOST}/{PIMGATE_APP}""#)),
        "{out}"
    );
    assert!(
        out.contains(r#""targetUrl": "https://pimgate.contoso.com/v1/evaluate""#),
        "{out}"
    );
}

#[tokio::test]
async fn without_a_host_flag_or_an_application_id_uri_the_error_names_both_ways() {
    let server = MockServer::start().await;
    let dir = TempDir::new().unwrap();
    let file = config(&server, dir.path(), &format!(r#"["{PIMGATE_APP}"]"#));
    let settings = Settings::load_with_env(Some(&file), Some(HashMap::new())).unwrap();
    let mut options = options(Stage::PreApproval);
    options.host = None;
    options.client_id = None;
    let error = run(&settings, &options).await.0.unwrap_err();
    assert_eq!(error.exit_code(), 2);
    assert!(error.to_string().contains("give `--host`"), "{error}");
    assert!(error.to_string().contains("auth.audiences"), "{error}");
    options.host = Some(HOST.to_string());
    let (result, out) = run(&settings, &options).await;
    result.unwrap();
    assert!(
        out.contains(&format!("api://{HOST}/{PIMGATE_APP}")),
        "{out}"
    );
}

#[tokio::test]
async fn pims_refusal_of_the_resource_id_is_shown_with_its_message_and_what_to_fix() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path(format!("{EXTENSIONS}/{PRE_EXTENSION}")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {
            "code": "ResourceNotFound", "message": "The custom extension was not found."
        }})))
        .mount(&server)
        .await;
    let message = format!(
        "The resourceId 'api://{HOST}/{PIMGATE_APP}' is not a valid service principal name of any application in the tenant."
    );
    Mock::given(method("POST"))
        .and(path(EXTENSIONS))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": "BadRequest", "message": message,
            "innerError": {"request-id": "5e1c9a2b-0000-4000-8000-000000000001"}
        }})))
        .expect(1)
        .mount(&server)
        .await;
    nothing_else(&server).await;
    let dir = TempDir::new().unwrap();
    let mut options = options(Stage::PreApproval);
    options.apply = true;
    let error = run(&settings(&server, dir.path()), &options)
        .await
        .0
        .unwrap_err();
    assert_eq!(error.exit_code(), 1);
    let text = error.to_string();
    assert!(
        text.contains(&format!("HTTP 400 `BadRequest`: {message}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "fix: add `api://{HOST}/{PIMGATE_APP}` to the Application ID URIs"
        )),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
}

/// A tenant with a pre-approval extension pointing here and a post-approval one pointing at
/// another deployment; Global Administrator links the first, Exchange Administrator the second.
async fn mount_tenant_state(server: &MockServer) {
    let directory = "scopeId eq '/' and scopeType eq 'DirectoryRole'";
    let mut elsewhere = post_extension();
    elsewhere["endpointConfiguration"]["targetUrl"] =
        json!("https://pimgate-old.contoso.com/v1/evaluate/post-approval");
    Mock::given(method("GET"))
        .and(path(EXTENSIONS))
        .and(authorized())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#identityGovernance/privilegedAccess/customExtensions",
            "value": [
                wire_extension(PRE_EXTENSION, "preApproval", "Pre-approval checks", "https://pimgate.contoso.com/v1/evaluate"),
                elsewhere,
            ]
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/policies/roleManagementPolicyAssignments"))
        .and(query_param("$filter", directory))
        .and(authorized())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [
                {"id": "a1", "policyId": GA_POLICY, "scopeId": "/", "scopeType": "DirectoryRole", "roleDefinitionId": GLOBAL_ADMIN},
                {"id": "a2", "policyId": EXCHANGE_POLICY, "scopeId": "/", "scopeType": "DirectoryRole", "roleDefinitionId": EXCHANGE_ADMIN}
            ]
        })))
        .mount(server)
        .await;
    let unlinked_post = json!({"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyCustomExtensionRule",
        "id": POST_RULE, "isEnabled": false, "customExtensionId": null});
    Mock::given(method("GET"))
        .and(path("/v1.0/policies/roleManagementPolicies"))
        .and(query_param("$filter", directory))
        .and(query_param("$expand", "rules"))
        .and(authorized())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [
                {"id": GA_POLICY, "scopeId": "/", "scopeType": "DirectoryRole", "rules": [
                    {"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyExpirationRule", "id": "Expiration_EndUser_Assignment", "maximumDuration": "PT8H"},
                    wire_rule(PRE_RULE, PRE_EXTENSION),
                    unlinked_post,
                ]},
                {"id": EXCHANGE_POLICY, "scopeId": "/", "scopeType": "DirectoryRole", "rules": [
                    wire_rule(POST_RULE, POST_EXTENSION)
                ]}
            ]
        })))
        .mount(server)
        .await;
    // `--status` reads only.
    Mock::given(path_regex("^/v1\\.0/"))
        .and(wiremock::matchers::method("PATCH"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(server)
        .await;
    Mock::given(path_regex("^/v1\\.0/"))
        .and(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(server)
        .await;
}

#[tokio::test]
async fn status_shows_both_stages_their_links_whether_they_point_here_and_roles_without_rules() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    mount_tenant_state(&server).await;
    let dir = TempDir::new().unwrap();
    let settings = settings(&server, dir.path());
    let mut options = options(Stage::PreApproval);
    options.status = true;
    options.host = None;

    let (result, out) = run(&settings, &options).await;
    result.unwrap();
    let line = |needle: &str| {
        out.lines()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no line with `{needle}`:\n{out}"))
            .to_string()
    };
    let pre = line(&format!("{PRE_EXTENSION}  pre-approval"));
    assert!(
        pre.contains("yes") && pre.contains("https://pimgate.contoso.com/v1/evaluate"),
        "{out}"
    );
    let post = line(&format!("{POST_EXTENSION}  post-approval"));
    assert!(
        post.contains("NO") && post.contains("pimgate-old.contoso.com"),
        "{out}"
    );
    let ga = line("Global Administrator");
    assert!(
        ga.contains("pre-approval") && ga.contains(PRE_EXTENSION),
        "{out}"
    );
    assert!(
        ga.trim_end().ends_with("NO"),
        "no rule matches Global Administrator: {out}"
    );
    let exchange = line("Exchange Administrator  ");
    assert!(
        exchange.contains("post-approval") && exchange.trim_end().ends_with("yes"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "warning: Global Administrator ({GLOBAL_ADMIN}) is linked at pre-approval but no policy of the loaded rules matches it"
        )),
        "{out}"
    );
    assert!(
        out.contains("note: Exchange Administrator's post-approval link does not point at https://pimgate.contoso.com/v1/evaluate/post-approval"),
        "{out}"
    );
    assert_eq!(out.matches("warning:").count(), 1, "{out}");

    options.json = true;
    let (result, out) = run(&settings, &options).await;
    result.unwrap();
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["host"], HOST);
    assert_eq!(report["extensions"].as_array().unwrap().len(), 2);
    let links = report["links"].as_array().unwrap();
    assert_eq!(
        links.len(),
        2,
        "the unlinked post-approval rule is not a link: {out}"
    );
    let ga = links
        .iter()
        .find(|link| link["role_id"] == GLOBAL_ADMIN)
        .unwrap();
    assert_eq!(ga["stage"], "pre_approval");
    assert_eq!(ga["points_here"], true);
    assert_eq!(ga["rules_match"], false);
    let exchange = links
        .iter()
        .find(|link| link["role_id"] == EXCHANGE_ADMIN)
        .unwrap();
    assert_eq!(exchange["stage"], "post_approval");
    assert_eq!(exchange["points_here"], false);
    assert_eq!(exchange["rules_match"], true);
    assert!(!out.contains(TOKEN));
}
