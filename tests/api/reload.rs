//! Hot reload: a changed rule file is validated and served without a restart, a broken one leaves
//! the old rules answering (and `/readyz` saying so), and no request fails while the rules change.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{AppOptions, TestApp, spawn_app_with};
use crate::support::requests;

const POLICY_A: &str = r#"
policies:
  - name: version-a
    match: { resource_types: [entraRoles] }
    decide: Approved
    reason: version a of the rules sends this to an approver.
"#;

const POLICY_B: &str = r#"
policies:
  - name: version-b
    match: { resource_types: [entraRoles] }
    decide: Denied
    reason: version b denies it.
"#;

const BROKEN: &str = r#"
policies:
  - name: broken
    match: { resource_types: [entraRoles] }
    decide: Sometimes
    reason: an outcome PIM does not know.
"#;

async fn app() -> TestApp {
    spawn_app_with(AppOptions {
        rules: POLICY_A,
        tweak: Box::new(|settings| settings.rules.reload_interval_seconds = 1),
        ..AppOptions::default()
    })
    .await
}

/// The revision the service reports for `text`, computed by the library the service uses.
fn revision_of(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, text).unwrap();
    pimgate::rules::load(&path).unwrap().revision
}

/// Writes beside the file and renames over it, as operators' tools and Kubernetes do.
fn replace_atomically(path: &Path, text: &str) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, text).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

/// `(status, outcome, reasons joined)` of one evaluation.
async fn decide(app: &TestApp) -> (u16, String, String) {
    // A fresh request id each time, so PIM's retry cache never answers from an earlier decision.
    let response = app.evaluate(&requests::fresh_entra_role()).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let outcome = body["evaluationOutcome"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let reasons = body["reason"]
        .as_array()
        .map(|reasons| {
            reasons
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    (status, outcome, reasons)
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let response = app
        .client
        .get(format!("{}/readyz", app.admin_address))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls `/readyz` until `done` holds (10 s at most) and returns the last body.
async fn readyz_until(app: &TestApp, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = readyz(app).await;
        assert_eq!(status, 200, "/readyz stays ready through reloads: {body}");
        if done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} did not happen within 10 s; /readyz says {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn reload_errors(app: &TestApp) -> f64 {
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
        .find(|line| {
            line.starts_with("pimgate_rules_reloads_total{") && line.contains("result=\"error\"")
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_changed_rule_file_is_served_a_broken_one_is_refused_and_a_fixed_one_served_again() {
    let app = app().await;
    let (revision_a, revision_b) = (revision_of(POLICY_A), revision_of(POLICY_B));
    let (_, body) = readyz(&app).await;
    assert_eq!(body["rules"]["revision"], revision_a.as_str());
    assert!(body["rules"]["lastReload"].is_null(), "{body}");
    assert_eq!(decide(&app).await.1, "Approved");

    std::fs::write(&app.rules_path, POLICY_B).unwrap();
    let body = readyz_until(&app, "the reload of version b", |body| {
        body["rules"]["revision"] == revision_b.as_str()
    })
    .await;
    assert_eq!(body["rules"]["lastReload"]["result"], "ok", "{body}");
    assert_eq!(body["rules"]["lastReload"]["problems"], 0, "{body}");
    let (status, outcome, reasons) = decide(&app).await;
    assert_eq!((status, outcome.as_str()), (200, "Denied"), "{reasons}");
    assert!(reasons.contains("version b denies it"), "{reasons}");

    let errors_before = reload_errors(&app).await;
    std::fs::write(&app.rules_path, BROKEN).unwrap();
    let body = readyz_until(&app, "the refusal of the broken rules", |body| {
        body["rules"]["lastReload"]["result"] == "error"
    })
    .await;
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["rules"]["revision"], revision_b.as_str(), "{body}");
    assert!(
        body["rules"]["lastReload"]["problems"].as_u64().unwrap() >= 1,
        "{body}"
    );
    let error = body["rules"]["lastReload"]["error"].as_str().unwrap();
    assert!(
        error.contains("Sometimes"),
        "the first problem is shown: {error}"
    );
    assert!(body["rules"]["lastReload"]["at"].is_string(), "{body}");
    assert_eq!(
        decide(&app).await.1,
        "Denied",
        "the old rules keep answering"
    );
    assert!(reload_errors(&app).await >= errors_before + 1.0);

    std::fs::write(&app.rules_path, POLICY_A).unwrap();
    let body = readyz_until(&app, "the reload of the fixed rules", |body| {
        body["rules"]["revision"] == revision_a.as_str()
    })
    .await;
    assert_eq!(body["rules"]["lastReload"]["result"], "ok", "{body}");
    assert!(body["rules"]["lastReload"]["error"].is_null(), "{body}");
    assert_eq!(decide(&app).await.1, "Approved");
}

#[tokio::test]
async fn requests_under_load_never_fail_while_the_rules_are_rewritten() {
    let app = Arc::new(app().await);
    let writing = Arc::new(AtomicBool::new(true));
    let cap = Instant::now() + Duration::from_secs(20);
    let mut workers = Vec::new();
    for _ in 0..8 {
        let app = Arc::clone(&app);
        let writing = Arc::clone(&writing);
        workers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            // Bounded: stops when the writer is done, at the 20 s cap, or after 60 requests (at
            // least 3 s of traffic, so it spans the first reloads).
            while answers.len() < 60 && writing.load(Ordering::SeqCst) && Instant::now() < cap {
                answers.push(decide(&app).await);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answers
        }));
    }

    let versions = [POLICY_B, POLICY_A, POLICY_B, POLICY_A];
    for text in versions {
        let revision = revision_of(text);
        replace_atomically(&app.rules_path, text);
        readyz_until(&app, "a reload under load", |body| {
            body["rules"]["revision"] == revision.as_str()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    writing.store(false, Ordering::SeqCst);

    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.unwrap());
    }
    assert!(answers.len() >= 8, "the workers ran: {answers:?}");
    for (status, outcome, reasons) in &answers {
        assert_eq!(*status, 200, "{outcome} {reasons}");
        let version_a = outcome == "Approved" && reasons.contains("version a");
        let version_b = outcome == "Denied" && reasons.contains("version b");
        assert!(
            version_a || version_b,
            "an answer from neither version: {outcome} {reasons}"
        );
    }
    let approved = answers.iter().filter(|(_, o, _)| o == "Approved").count();
    assert!(
        approved > 0 && approved < answers.len(),
        "both versions answered while the file changed ({approved} of {} approved)",
        answers.len()
    );
}
