//! `spawn_app`: the service as PIM sees it, plus the stand-ins it talks to.

use std::path::PathBuf;
use std::time::Duration;

use pimgate::settings::{AuditSettings, AuditSink, Settings};
use pimgate::startup::Application;
use serde_json::Value;

use super::auth::TestIdp;

/// Rules used by the API tests: one policy per resource type, so each shape gets a known outcome.
pub const TEST_RULES: &str = r#"
policies:
  - name: groups-need-a-human
    match: { resource_types: [entraGroups] }
    decide: Approved
    reason: group membership goes to the group owners for approval.
  - name: azure-denied-here
    match: { resource_types: [azureResources] }
    decide: Denied
    reason: Azure roles are not activated through this test tenant.
  - name: entra-short-activations
    match: { resource_types: [entraRoles] }
    require:
      - duration: { max: PT4H }
"#;

pub struct TestApp {
    /// The public listener (`server.listen`): what PIM calls.
    pub address: String,
    /// The admin listener (`admin.listen`): health, readiness, metrics. Equal to `address` when a
    /// test turns the admin listener off (`admin.listen = ""`).
    pub admin_address: String,
    pub client: reqwest::Client,
    pub idp: TestIdp,
    pub audit_path: PathBuf,
    /// The rule file the service loaded; rewrite it to exercise hot reload.
    pub rules_path: PathBuf,
    _dir: tempfile::TempDir,
}

pub struct AppOptions {
    pub rules: &'static str,
    pub wait_ready: bool,
    pub tweak: Box<dyn FnOnce(&mut Settings)>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            rules: TEST_RULES,
            wait_ready: true,
            tweak: Box::new(|_| {}),
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let idp = TestIdp::start().await;
    spawn_app_for(idp, options).await
}

pub async fn spawn_app_for(idp: TestIdp, options: AppOptions) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules_path = dir.path().join("rules.yaml");
    std::fs::write(&rules_path, options.rules).expect("write rules");
    let audit_path = dir.path().join("audit.jsonl");
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.admin.listen = "127.0.0.1:0".into();
    settings.server.workers = 2;
    settings.auth = idp.settings();
    // The service refuses a floor under 10 s between unknown-`kid` refreshes.
    settings.auth.jwks_min_refresh_interval_seconds = 10;
    settings.rules.path = rules_path.clone();
    settings.audit = AuditSettings {
        sink: AuditSink::File,
        path: Some(audit_path.clone()),
        ..AuditSettings::default()
    };
    (options.tweak)(&mut settings);
    let problems = settings.validate();
    assert!(
        problems.is_empty(),
        "test settings are invalid: {problems:?}"
    );
    let application = Application::build(settings)
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    let admin_address = format!(
        "http://127.0.0.1:{}",
        application.admin_port().unwrap_or(application.port())
    );
    tokio::spawn(application.run_until_stopped());
    let app = TestApp {
        address,
        admin_address,
        client: reqwest::Client::new(),
        idp,
        audit_path,
        rules_path,
        _dir: dir,
    };
    if options.wait_ready {
        app.wait_until_ready().await;
    }
    app
}

impl TestApp {
    pub async fn wait_until_ready(&self) {
        for _ in 0..100 {
            if let Ok(response) = self
                .client
                .get(format!("{}/readyz", self.admin_address))
                .send()
                .await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service did not become ready within 5 s");
    }

    pub fn token(&self) -> String {
        super::requests::signed_token(&self.idp)
    }

    /// POSTs `body` as JSON with a valid token.
    pub async fn evaluate(&self, body: &Value) -> reqwest::Response {
        self.post_raw(
            body.to_string(),
            Some(&self.token()),
            Some("application/json"),
        )
        .await
    }

    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        token: Option<&str>,
        content_type: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/v1/evaluate", self.address))
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.expect("request reaches the server")
    }

    /// The audit records written so far, one JSON object per line.
    pub fn audit_records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.audit_path).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("audit line is JSON"))
            .collect()
    }
}
