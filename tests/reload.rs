//! The built binary reloads its rules on SIGHUP, and only then when polling is off, and keeps running.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_pimgate");

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

/// A `pimgate serve` child on an ephemeral loopback port; killed on drop.
struct Served {
    child: Child,
    port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(rules_dir: &std::path::Path) -> Served {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", "config/example.toml"])
        .env_remove("PIMGATE_CONFIG")
        .env("PIMGATE__SERVER__LISTEN", "127.0.0.1:0")
        .env("PIMGATE__SERVER__WORKERS", "1")
        .env("PIMGATE__RULES__PATH", rules_dir)
        .env("PIMGATE__RULES__RELOAD_INTERVAL_SECONDS", "0")
        .env("PIMGATE__AUDIT__SINK", "off")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pimgate serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut served = Served { child, port: 0 };
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let port_pattern = regex::Regex::new(r#"port["=:]+\s*(\d+)"#).expect("regex");
    let mut seen = Vec::new();
    loop {
        let line = receiver
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no port logged: {seen:#?}"));
        if line.contains("listening")
            && let Some(port) = port_pattern.captures(&line).and_then(|c| c[1].parse().ok())
        {
            served.port = port;
            // Keep draining stderr so the child never blocks on a full pipe.
            std::thread::spawn(move || while receiver.recv().is_ok() {});
            return served;
        }
        seen.push(line);
    }
}

fn dev_token() -> String {
    let output = Command::new(BIN)
        .args(["dev", "token", "--config", "config/example.toml"])
        .env_remove("PIMGATE_CONFIG")
        .output()
        .expect("run pimgate dev token");
    assert!(output.status.success(), "dev token failed");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn hangup(served: &Served) {
    let status = Command::new("kill")
        .args(["-HUP", &served.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

async fn outcome(base: &str, token: &str) -> String {
    let mut body: Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/requests/entra-role-activation.json").unwrap(),
    )
    .unwrap();
    body["id"] = json!(uuid::Uuid::now_v7().to_string());
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
    let first = readyz(&base).await["rules"]["revision"].clone();
    assert_eq!(outcome(&base, &token).await, "Approved");

    std::fs::write(&rules, DENY).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        outcome(&base, &token).await,
        "Approved",
        "with polling off, a changed file waits for the signal"
    );

    hangup(&served);
    readyz_until(&base, "the SIGHUP reload", |body| {
        body["rules"]["revision"] != first && body["rules"]["lastReload"]["trigger"] == "SIGHUP"
    })
    .await;
    assert_eq!(outcome(&base, &token).await, "Denied");

    std::fs::write(&rules, "policies: [").unwrap();
    hangup(&served);
    let body = readyz_until(&base, "the refused SIGHUP reload", |body| {
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
