//! The operator console on the admin listener: what it shows after real decisions, masking as the
//! audit log masks, the dry-run form (no upstream call, nothing recorded), `admin.token_file`, and
//! that none of it is reachable on PIM's listener. The browser test is tests/process/console_browser.rs.

use pimgate::settings::JustificationMasking;
use serde_json::Value;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{AppOptions, TestApp, spawn_app_with};
use crate::support::requests::{self, ENTRA_ROLE};

const JUSTIFICATION: &str = "Rotate the tenant-wide break-glass credential per change CHG0031337";

async fn get(app: &TestApp, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let response = app
        .client
        .get(format!("{}{path}", app.admin_address))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.unwrap(), headers)
}

fn html_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

async fn decide(app: &TestApp) -> Value {
    let response = app.evaluate(&requests::fresh_entra_role()).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn hashed_justification() -> AppOptions {
    AppOptions {
        tweak: Box::new(|settings| {
            settings.audit.justification = JustificationMasking::Hash;
        }),
        ..AppOptions::default()
    }
}

#[tokio::test]
async fn the_overview_lists_a_decision_just_made_and_its_page_explains_it_masked_as_audited() {
    let app = spawn_app_with(hashed_justification()).await;
    let (_, before, _) = get(&app, "/").await;
    assert!(
        before.contains("No decision since this replica started"),
        "{before}"
    );

    let request = requests::fresh_entra_role();
    let role_id = request["roleDefinitionId"].as_str().unwrap().to_string();
    let response = app.evaluate(&request).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let id = answer["evaluationId"].as_str().unwrap();

    let (status, overview, headers) = get(&app, "/").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(overview.contains(&format!("/decisions/{id}")), "{overview}");
    assert!(
        overview.contains("entra-short-activations"),
        "the policy is named"
    );
    assert!(overview.contains("<svg"), "the charts are drawn");
    // The role by its name when the catalog knows it, else by id.
    let role = pimgate::rules::catalog::by_id(&role_id)
        .map_or(role_id.clone(), |role| role.name.to_string());
    assert!(overview.contains(&role), "{role}: {overview}");

    let (status, page, _) = get(&app, &format!("/decisions/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains(answer["evaluationOutcome"].as_str().unwrap()));
    for reason in answer["reason"].as_array().unwrap() {
        // As the page carries it: HTML-escaped by askama (the reason quotes the policy name).
        assert!(
            page.contains(&html_escaped(reason.as_str().unwrap())),
            "{page}"
        );
    }
    let audited = app.audit_records();
    let masked = audited[0]["justification"].as_str().unwrap();
    assert!(masked.starts_with("sha256:"));
    assert!(
        page.contains(masked),
        "the page shows the audit record's masking"
    );
    assert!(
        !page.contains(JUSTIFICATION),
        "never the justification itself"
    );
    assert!(!overview.contains(JUSTIFICATION));
}

#[tokio::test]
async fn a_decision_not_kept_is_a_404_page_that_echoes_only_id_characters() {
    let app = spawn_app_with(AppOptions::default()).await;
    let (status, page, _) = get(&app, "/decisions/%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert_eq!(status, 404);
    assert!(!page.contains("<script>"));
    assert!(page.contains("keeps its last 200 decisions"), "{page}");
}

#[tokio::test]
async fn the_ring_keeps_only_the_configured_number_of_decisions() {
    let app = spawn_app_with(AppOptions {
        tweak: Box::new(|settings| settings.admin.recent_decisions = 2),
        ..AppOptions::default()
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            decide(&app).await["evaluationId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (_, overview, _) = get(&app, "/").await;
    assert!(!overview.contains(&ids[0]), "the oldest went first");
    assert!(overview.contains(&ids[1]) && overview.contains(&ids[2]));
    assert!(overview.contains("2 / 2"), "kept / capacity");
    assert_eq!(get(&app, &format!("/decisions/{}", ids[0])).await.0, 404);
}

#[tokio::test]
async fn the_dry_run_explains_without_calling_upstream_or_recording_anything() {
    let servicenow = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&servicenow)
        .await;
    let uri = servicenow.uri();
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("servicenow");
    std::fs::write(&password, "pw-123").unwrap();
    let app = spawn_app_with(AppOptions {
        rules: r#"
policies:
  - name: needs-a-change
    match: { resource_types: [entraRoles] }
    require:
      - itsm: { system: servicenow }
"#,
        tweak: Box::new(move |settings| {
            settings.connectors.servicenow = Some(
                serde_json::from_value(serde_json::json!({
                    "base_url": uri, "auth": "basic", "username": "svc_pimgate",
                    "password": {"file": password}
                }))
                .unwrap(),
            );
        }),
        ..AppOptions::default()
    })
    .await;
    let body = requests::sample(ENTRA_ROLE).to_string();

    let response = app
        .client
        .post(format!("{}/dry-run", app.admin_address))
        .form(&[
            ("body", body.as_str()),
            ("stage", "post_approval"),
            ("at", "2026-11-23T09:30:00Z"),
        ])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("needs-a-change"), "{page}");
    assert!(page.contains("post_approval"));
    assert!(
        page.contains("Denied"),
        "an unevaluated required check denies (on_error: deny)"
    );
    assert!(
        page.contains("Outcome:    Denied"),
        "the evaluate --offline text"
    );
    assert!(page.contains("servicenow"), "the skipped check is named");
    assert!(
        app.audit_records().is_empty(),
        "a dry run writes no audit record"
    );
    let (_, overview, _) = get(&app, "/").await;
    assert!(overview.contains("No decision since this replica started"));
    servicenow.verify().await;
}

#[tokio::test]
async fn the_dry_run_reports_a_malformed_body_a_bad_stage_and_a_bad_time() {
    let app = spawn_app_with(AppOptions::default()).await;
    let body = requests::sample(ENTRA_ROLE).to_string();
    for (form, expected) in [
        (vec![("body", "{not json")], "not a PIM request"),
        (
            vec![("body", body.as_str()), ("stage", "later")],
            "the stage is",
        ),
        (
            vec![("body", body.as_str()), ("at", "yesterday")],
            "not RFC 3339",
        ),
    ] {
        let page = app
            .client
            .post(format!("{}/dry-run", app.admin_address))
            .form(&form)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains(expected), "{expected}: {page}");
    }
    let oversized = "x".repeat(pimgate::console::pages::MAX_DRY_RUN_BYTES + 10);
    let status = app
        .client
        .post(format!("{}/dry-run", app.admin_address))
        .form(&[("body", oversized.as_str())])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 413);
}

#[tokio::test]
async fn with_a_token_file_the_console_and_metrics_need_the_secret_and_the_probes_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "console-secret-4f1c9a7e\n").unwrap();
    let app = spawn_app_with(AppOptions {
        tweak: Box::new(move |settings| settings.admin.token_file = Some(token_file)),
        ..AppOptions::default()
    })
    .await;
    let url = |path: &str| format!("{}{path}", app.admin_address);

    for path in ["/", "/metrics", "/dry-run", "/decisions/x"] {
        let response = app.client.get(url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        let body = response.text().await.unwrap();
        assert!(!body.contains("console-secret"), "{body}");
        let wrong = app
            .client
            .get(url(path))
            .bearer_auth("console-secret-4f1c9a7f")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
    }
    let posted = app
        .client
        .post(url("/dry-run"))
        .form(&[("body", "{}")])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 401);
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            app.client.get(url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    let bearer = app
        .client
        .get(url("/metrics"))
        .bearer_auth("console-secret-4f1c9a7e")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let basic = app
        .client
        .get(url("/"))
        .basic_auth("operator", Some("console-secret-4f1c9a7e"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    assert!(basic.text().await.unwrap().contains("pimgate console"));
}

#[tokio::test]
async fn without_the_admin_listener_or_with_the_console_off_there_is_no_console() {
    let single = spawn_app_with(AppOptions {
        tweak: Box::new(|settings| settings.admin.listen = String::new()),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(
        get(&single, "/").await.0,
        404,
        "never on the listener PIM reaches"
    );
    assert_eq!(get(&single, "/healthz").await.0, 200);

    let off = spawn_app_with(AppOptions {
        tweak: Box::new(|settings| settings.admin.console = false),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(get(&off, "/").await.0, 404);
    assert_eq!(get(&off, "/metrics").await.0, 200);
}

#[test]
fn console_settings_are_validated_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "tooshort\n").unwrap();
    let mut settings = pimgate::settings::Settings::default();
    settings.admin.recent_decisions = 1_000_000;
    settings.admin.token_file = Some(short);
    let problems: Vec<String> = settings
        .validate()
        .iter()
        .map(ToString::to_string)
        .collect();
    let joined = problems.join("\n");
    assert!(joined.contains("admin.recent_decisions"), "{joined}");
    assert!(
        joined.contains("admin.token_file") && joined.contains("fewer than 16"),
        "{joined}"
    );
    assert!(!joined.contains("tooshort"), "the secret is never shown");
}
