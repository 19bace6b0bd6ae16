//! The built binary reloads its rules on SIGHUP, and only then when polling is off, and keeps running.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use crate::support::requests;
use crate::support::serve as common_serve;

use std::path::Path;
use std::time::{Duration, Instant};

use common_serve::Served;
use requests::dev_token;

use serde_json::Value;

const APPROVE: &str = r#"
policies:
  - name: before-the-signal
    match: { resource_types: [entraRoles] }
    decide: Approved
    reason: the rules before the signal send this to an approver.
"#;

const DENY: &str = r#"
policies:
  - name: after-the-signal
    match: { resource_types: [entraRoles] }
    decide: Denied
    reason: the rules after the signal deny it.
"#;

/// The example config serving the rules in `rules_dir`, reloaded only on SIGHUP (polling off).
fn serve(rules_dir: &Path) -> Served {
    let rules = rules_dir.to_str().expect("utf-8 temp path");
    common_serve::serve(
        Path::new("config/example.toml"),
        &[
            ("PIMGATE__RULES__PATH", rules),
            ("PIMGATE__RULES__RELOAD_INTERVAL_SECONDS", "0"),
            ("PIMGATE__AUDIT__SINK", "off"),
        ],
    )
}

fn hangup(served: &Served) {
    served.signal("HUP");
}

async fn outcome(base: &str, token: &str) -> String {
    let body = requests::fresh_entra_role();
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/evaluate"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    answer["evaluationOutcome"].as_str().unwrap().to_string()
}

async fn readyz(base: &str) -> Value {
    let response = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Polls `/readyz` until `done` holds (10 s at most).
async fn readyz_until(base: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let body = readyz(base).await;
        if done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} did not happen within 10 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_the_rules_and_the_server_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("policies.yaml");
    std::fs::write(&rules, APPROVE).unwrap();
    let mut served = serve(dir.path());
    let base = format!("http://127.0.0.1:{}", served.port);
    let token = dev_token();
    let first = readyz(&served.admin()).await["rules"]["revision"].clone();
    assert_eq!(outcome(&base, &token).await, "Approved");

    std::fs::write(&rules, DENY).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        outcome(&base, &token).await,
        "Approved",
        "with polling off, a changed file waits for the signal"
    );

    hangup(&served);
    readyz_until(&served.admin(), "the SIGHUP reload", |body| {
        body["rules"]["revision"] != first && body["rules"]["lastReload"]["trigger"] == "SIGHUP"
    })
    .await;
    assert_eq!(outcome(&base, &token).await, "Denied");

    std::fs::write(&rules, "policies: [").unwrap();
    hangup(&served);
    let body = readyz_until(&served.admin(), "the refused SIGHUP reload", |body| {
        body["rules"]["lastReload"]["result"] == "error"
    })
    .await;
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(outcome(&base, &token).await, "Denied");
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "SIGHUP must not stop the server"
    );
}
