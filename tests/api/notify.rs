//! Notifications against loopback stand-ins for Teams, Slack and a signed webhook: the real
//! payload shapes, the signature recomputed here independently, retries of a failing receiver,
//! a full queue that drops instead of slowing the decision, filters, justification masking and
//! the flush on shutdown.
//!
//! The metrics recorder is process-wide, so each test uses its own target names.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pimgate::connectors::secrets::SecretRef;
use pimgate::notify::{NotifyKind, NotifySettings};
use pimgate::settings::{AuditSettings, AuditSink, JustificationMasking, Settings};
use pimgate::startup::Application;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common_auth::TestIdp;
use crate::helpers::{AppOptions, TestApp, spawn_app_with};
use crate::support::requests;

const SIGNING_SECRET: &str = "notify-signing-secret-for-tests";
const JUSTIFICATION: &str = "Rotating the payroll certificate for customer ACME-7731";

/// Groups are auto-approved, Azure roles denied, Entra roles approved: one outcome per shape.
const RULES: &str = r#"
policies:
  - name: groups-auto
    match: { resource_types: [entraGroups] }
    decide: AutoApproved
    reason: group membership is auto-approved in this test tenant.
  - name: azure-denied-here
    match: { resource_types: [azureResources] }
    decide: Denied
    reason: Azure roles are not activated through this test tenant.
  - name: entra-short-activations
    match: { resource_types: [entraRoles] }
    require:
      - duration: { max: PT4H }
"#;

/// A target whose URL (and secret, for a webhook) is read from files in `dir`.
fn target(name: &str, kind: NotifyKind, url: &str, dir: &Path) -> NotifySettings {
    let url_file = dir.join(format!("{name}.url"));
    std::fs::write(&url_file, format!("{url}\n")).unwrap();
    let secret = (kind == NotifyKind::Webhook).then(|| {
        let file = dir.join(format!("{name}.secret"));
        std::fs::write(&file, SIGNING_SECRET).unwrap();
        SecretRef {
            env: None,
            file: Some(file),
        }
    });
    NotifySettings {
        name: name.into(),
        kind,
        url: Some(SecretRef {
            env: None,
            file: Some(url_file),
        }),
        secret,
        outcomes: Vec::new(),
        policies: Vec::new(),
        tiers: Vec::new(),
        stages: Vec::new(),
        shadow_disagreement: false,
        queue_capacity: 100,
        timeout_ms: 2000,
        max_attempts: 3,
    }
}

async fn app_with(targets: Vec<NotifySettings>, masking: JustificationMasking) -> TestApp {
    spawn_app_with(AppOptions {
        rules: RULES,
        tweak: Box::new(move |settings: &mut Settings| {
            settings.notify = targets;
            settings.audit.justification = masking;
        }),
        ..AppOptions::default()
    })
    .await
}

/// The requests `server` has received once there are `count` of them (at most 10 s).
async fn received(server: &MockServer, count: usize) -> Vec<Request> {
    let started = Instant::now();
    loop {
        let requests = server.received_requests().await.unwrap_or_default();
        if requests.len() >= count || started.elapsed() > Duration::from_secs(10) {
            return requests;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn evaluation_id(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["evaluationId"].as_str().unwrap().to_string()
}

async fn metric(app: &TestApp, target: &str, result: &str) -> f64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.admin_address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with("pimgate_notifications_total{"))
        .filter(|line| {
            line.contains(&format!("target=\"{target}\""))
                && line.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `metric` once it reaches `at_least` (at most 10 s): delivery finishes after the answer.
async fn metric_reaches(app: &TestApp, target: &str, result: &str, at_least: f64) -> f64 {
    let started = Instant::now();
    loop {
        let value = metric(app, target, result).await;
        if value >= at_least || started.elapsed() > Duration::from_secs(10) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::sign(&key, message).as_ref().to_vec()
}

fn json_of(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

#[tokio::test]
async fn a_teams_target_receives_an_adaptive_card_with_what_a_reviewer_needs() {
    let teams = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/workflows/teams"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&teams)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/workflows/teams", teams.uri());
    let app = app_with(
        vec![target("teams-shape", NotifyKind::Teams, &url, dir.path())],
        JustificationMasking::Full,
    )
    .await;
    let body = requests::entra_role(&uuid::Uuid::now_v7().to_string());
    let id = evaluation_id(app.evaluate(&body).await).await;

    let requests = received(&teams, 1).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0]
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let message = json_of(&requests[0]);
    assert_eq!(message["type"], "message");
    let attachments = message["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachments[0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    let version: f64 = card["version"].as_str().unwrap().parse().unwrap();
    assert!(version >= 1.4, "Adaptive Card {version}");
    let blocks = card["body"].as_array().unwrap();
    assert!(blocks.iter().all(|block| block["type"].is_string()));
    let facts = blocks
        .iter()
        .find(|block| block["type"] == "FactSet")
        .unwrap()["facts"]
        .as_array()
        .unwrap()
        .clone();
    let fact = |title: &str| {
        facts
            .iter()
            .find(|fact| fact["title"] == title)
            .map(|fact| fact["value"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no fact `{title}` in {facts:?}"))
    };
    assert_eq!(fact("Principal"), body["principalId"].as_str().unwrap());
    assert_eq!(fact("Role"), "Global Administrator");
    assert_eq!(fact("Tier"), "critical");
    assert_eq!(fact("Outcome"), "Approved");
    assert_eq!(fact("Policy"), "entra-short-activations");
    assert_eq!(fact("Stage"), "preApproval");
    assert_eq!(fact("Evaluation id"), id);
    assert_eq!(
        fact("Justification"),
        body["justification"].as_str().unwrap()
    );
    assert!(!fact("Scope").is_empty());
    assert_eq!(metric_reaches(&app, "teams-shape", "sent", 1.0).await, 1.0);
}

#[tokio::test]
async fn a_slack_target_receives_blocks_with_a_fallback_text() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T0/B0/x"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/services/T0/B0/x", slack.uri());
    let app = app_with(
        vec![target("slack-shape", NotifyKind::Slack, &url, dir.path())],
        JustificationMasking::Full,
    )
    .await;
    let id = evaluation_id(
        app.evaluate(&requests::azure_resource(&uuid::Uuid::now_v7().to_string()))
            .await,
    )
    .await;

    let requests = received(&slack, 1).await;
    assert_eq!(requests.len(), 1);
    let message = json_of(&requests[0]);
    assert!(message["text"].as_str().unwrap().contains("Denied"));
    let blocks = message["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
    let fields = blocks[1]["fields"].as_array().unwrap();
    assert!(fields.len() <= 10);
    assert!(fields.iter().all(|field| field["type"] == "mrkdwn"));
    let text = message.to_string();
    assert!(text.contains(&id), "the evaluation id is in the message");
    assert!(text.contains("azure-denied-here"));
    assert!(text.contains("Azure roles are not activated through this test tenant."));
    for block in blocks {
        assert!(
            ["header", "section", "context"].contains(&block["type"].as_str().unwrap()),
            "{block}"
        );
    }
}

#[tokio::test]
async fn a_webhook_target_receives_the_event_signed_as_the_http_check_signs() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/pimgate"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/hooks/pimgate", receiver.uri());
    let app = app_with(
        vec![target(
            "webhook-signed",
            NotifyKind::Webhook,
            &url,
            dir.path(),
        )],
        JustificationMasking::Full,
    )
    .await;
    let id = evaluation_id(
        app.evaluate(&requests::group(&uuid::Uuid::now_v7().to_string()))
            .await,
    )
    .await;

    let requests = received(&receiver, 1).await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap()
            .to_string()
    };
    let timestamp = header("x-pimgate-timestamp");
    let seconds: i64 = timestamp.parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - seconds).abs() < 60);
    let mut signed = timestamp.clone().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(&request.body);
    assert_eq!(
        header("x-pimgate-signature"),
        format!(
            "v1={}",
            hex::encode(hmac_sha256(SIGNING_SECRET.as_bytes(), &signed))
        )
    );
    let event = json_of(request);
    assert_eq!(event["type"], "pimgate.decision.v1");
    assert_eq!(event["evaluationId"], id);
    assert_eq!(event["outcome"], "AutoApproved");
    assert_eq!(event["policy"], "groups-auto");
    assert_eq!(event["resourceType"], "entraGroups");
    assert!(event["principalId"].as_str().is_some_and(|p| !p.is_empty()));
    assert!(event["reasons"].as_array().is_some_and(|r| !r.is_empty()));
    assert!(
        !String::from_utf8_lossy(&request.body).contains(SIGNING_SECRET),
        "the secret signs, it is never sent"
    );
}

#[tokio::test]
async fn a_failing_target_is_retried_on_5xx_and_counted_failed() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(3)
        .mount(&receiver)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(
        vec![target(
            "failing-500",
            NotifyKind::Slack,
            &receiver.uri(),
            dir.path(),
        )],
        JustificationMasking::Full,
    )
    .await;
    let started = Instant::now();
    let response = app
        .evaluate(&requests::group(&uuid::Uuid::now_v7().to_string()))
        .await;
    evaluation_id(response).await;
    assert!(started.elapsed() < Duration::from_millis(1500));

    assert_eq!(
        metric_reaches(&app, "failing-500", "failed", 1.0).await,
        1.0
    );
    assert_eq!(received(&receiver, 3).await.len(), 3, "max_attempts = 3");
    assert_eq!(metric(&app, "failing-500", "sent").await, 0.0);
}

#[tokio::test]
async fn a_4xx_answer_is_not_retried() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("invalid_blocks"))
        .expect(1)
        .mount(&receiver)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(
        vec![target(
            "refusing-400",
            NotifyKind::Slack,
            &receiver.uri(),
            dir.path(),
        )],
        JustificationMasking::Full,
    )
    .await;
    evaluation_id(
        app.evaluate(&requests::group(&uuid::Uuid::now_v7().to_string()))
            .await,
    )
    .await;
    assert_eq!(
        metric_reaches(&app, "refusing-400", "failed", 1.0).await,
        1.0
    );
    // Long enough for a retry after the first backoff (200 ms) to have happened.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(received(&receiver, 1).await.len(), 1);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_while_decisions_are_answered_at_once() {
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&slow)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut full = target("full-queue", NotifyKind::Teams, &slow.uri(), dir.path());
    full.queue_capacity = 1;
    full.timeout_ms = 10_000;
    let app = app_with(vec![full], JustificationMasking::Full).await;
    for _ in 0..5 {
        let started = Instant::now();
        let response = app
            .evaluate(&requests::group(&uuid::Uuid::now_v7().to_string()))
            .await;
        evaluation_id(response).await;
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "answered in {:?} while the receiver takes 3 s",
            started.elapsed()
        );
    }
    // One in delivery, one queued, the other three dropped.
    assert_eq!(metric(&app, "full-queue", "dropped").await, 3.0);
}

#[tokio::test]
async fn a_denied_decision_is_not_sent_to_an_auto_approved_only_target() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut auto_only = target(
        "auto-approved-only",
        NotifyKind::Webhook,
        &receiver.uri(),
        dir.path(),
    );
    auto_only.outcomes = vec!["AutoApproved".into()];
    let app = app_with(vec![auto_only], JustificationMasking::Full).await;
    let denied = evaluation_id(
        app.evaluate(&requests::azure_resource(&uuid::Uuid::now_v7().to_string()))
            .await,
    )
    .await;
    let approved = evaluation_id(
        app.evaluate(&requests::entra_role(&uuid::Uuid::now_v7().to_string()))
            .await,
    )
    .await;
    let auto = evaluation_id(
        app.evaluate(&requests::group(&uuid::Uuid::now_v7().to_string()))
            .await,
    )
    .await;
    // One queue, in order: had the Denied or the Approved one been queued, it would come first.
    let requests = received(&receiver, 1).await;
    assert_eq!(requests.len(), 1);
    let event = json_of(&requests[0]);
    assert_eq!(event["evaluationId"], auto);
    assert_ne!(event["evaluationId"], denied);
    assert_ne!(event["evaluationId"], approved);
}

#[tokio::test]
async fn with_hash_masking_no_payload_carries_the_justification_text() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let targets = vec![
        target(
            "masked-teams",
            NotifyKind::Teams,
            &receiver.uri(),
            dir.path(),
        ),
        target(
            "masked-slack",
            NotifyKind::Slack,
            &receiver.uri(),
            dir.path(),
        ),
        target(
            "masked-webhook",
            NotifyKind::Webhook,
            &receiver.uri(),
            dir.path(),
        ),
    ];
    let app = app_with(targets, JustificationMasking::Hash).await;
    let mut body = requests::group(&uuid::Uuid::now_v7().to_string());
    set_justification(&mut body, JUSTIFICATION);
    evaluation_id(app.evaluate(&body).await).await;

    let requests = received(&receiver, 3).await;
    assert_eq!(requests.len(), 3);
    for request in &requests {
        let text = String::from_utf8_lossy(&request.body);
        assert!(!text.contains("ACME-7731"), "{text}");
        assert!(!text.contains("payroll"), "{text}");
        assert!(text.contains("sha256:"), "{text}");
    }
}

/// Sets the justification wherever the sample carries it.
fn set_justification(body: &mut Value, text: &str) {
    fn walk(value: &mut Value, text: &str) -> bool {
        match value {
            Value::Object(map) => {
                let mut found = false;
                for (key, child) in map.iter_mut() {
                    if key.eq_ignore_ascii_case("justification") && child.is_string() {
                        *child = Value::String(text.into());
                        found = true;
                    } else {
                        found |= walk(child, text);
                    }
                }
                found
            }
            Value::Array(items) => items.iter_mut().fold(false, |f, item| walk(item, text) | f),
            _ => false,
        }
    }
    assert!(walk(body, text), "the sample has a justification");
}

/// The service built by hand, to hold its shutdown handle.
async fn build(idp: &TestIdp, dir: &Path, notify: Vec<NotifySettings>) -> Application {
    let rules: PathBuf = dir.join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.admin.listen = "127.0.0.1:0".into();
    settings.server.workers = 1;
    settings.server.shutdown_delay_ms = 0;
    settings.server.shutdown_grace_seconds = 10;
    settings.auth = idp.settings();
    settings.auth.jwks_min_refresh_interval_seconds = 10;
    settings.rules.path = rules;
    settings.audit = AuditSettings {
        sink: AuditSink::File,
        path: Some(dir.join("audit.jsonl")),
        ..AuditSettings::default()
    };
    settings.notify = notify;
    assert!(settings.validate().is_empty(), "{:?}", settings.validate());
    Application::build(settings).await.unwrap()
}

#[tokio::test]
async fn queued_notifications_are_delivered_before_a_graceful_shutdown_returns() {
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&slow)
        .await;
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = build(
        &idp,
        dir.path(),
        vec![target(
            "flushed",
            NotifyKind::Webhook,
            &slow.uri(),
            dir.path(),
        )],
    )
    .await;
    let address = format!("http://127.0.0.1:{}", app.port());
    let admin = format!("http://127.0.0.1:{}", app.admin_port().unwrap());
    let handle = app.handle();
    let running = tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    for _ in 0..100 {
        let ready = client.get(format!("{admin}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..4 {
        let response = client
            .post(format!("{address}/v1/evaluate"))
            .bearer_auth(requests::signed_token(&idp))
            .json(&requests::group(&uuid::Uuid::now_v7().to_string()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert!(
        slow.received_requests().await.unwrap_or_default().len() < 4,
        "the receiver is slower than the decisions"
    );
    handle.shutdown().await;
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops within the grace period")
        .unwrap()
        .unwrap();
    assert_eq!(slow.received_requests().await.unwrap().len(), 4);
}

/// The handler masks once and only when someone reads the text: with the audit log and the
/// console ring both off, the notifications alone still get it, masked.
#[tokio::test]
async fn with_the_audit_log_and_console_off_a_notification_still_carries_the_masked_justification()
{
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let targets = vec![target(
        "alone",
        NotifyKind::Webhook,
        &receiver.uri(),
        dir.path(),
    )];
    let app = spawn_app_with(AppOptions {
        rules: RULES,
        tweak: Box::new(move |settings: &mut Settings| {
            settings.notify = targets;
            settings.audit.justification = JustificationMasking::Hash;
            settings.audit.sink = pimgate::settings::AuditSink::Off;
            settings.admin.recent_decisions = 0;
        }),
        ..AppOptions::default()
    })
    .await;
    let mut body = requests::group(&uuid::Uuid::now_v7().to_string());
    set_justification(&mut body, JUSTIFICATION);
    evaluation_id(app.evaluate(&body).await).await;

    let requests = received(&receiver, 1).await;
    assert_eq!(requests.len(), 1);
    let text = String::from_utf8_lossy(&requests[0].body);
    assert!(!text.contains("ACME-7731"), "{text}");
    assert!(text.contains("sha256:"), "{text}");
}
