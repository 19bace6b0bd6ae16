//! Optional OTLP/HTTP trace export (`[tracing]`): off by default, validated, and when on, the
//! built binary posts its spans in the caller's W3C trace and flushes them on graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pimgate::settings::Settings;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BIN: &str = env!("CARGO_BIN_EXE_pimgate");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn load(pairs: &[(&str, &str)]) -> Result<Settings, pimgate::settings::SettingsError> {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    Settings::load_with_env(Some(Path::new("config/example.toml")), Some(env))
}

#[test]
fn trace_export_is_off_by_default() {
    let settings = load(&[]).expect("example config loads");
    assert!(!settings.tracing.enabled());
    assert_eq!(settings.tracing.service_name, "pimgate");
}

#[test]
fn an_endpoint_from_the_environment_turns_export_on_with_the_otlp_traces_path() {
    let settings =
        load(&[("PIMGATE__TRACING__ENDPOINT", "http://otel-collector:4318/")]).expect("loads");
    assert!(settings.tracing.enabled());
    assert_eq!(
        settings.tracing.traces_url(),
        "http://otel-collector:4318/v1/traces"
    );
}

#[test]
fn an_endpoint_that_is_not_an_http_url_is_a_config_error() {
    for bad in [
        "otel-collector:4318",
        "grpc://otel-collector:4317",
        "not a url",
    ] {
        let error = load(&[("PIMGATE__TRACING__ENDPOINT", bad)]).expect_err(bad);
        assert!(
            error
                .problems
                .iter()
                .any(|problem| problem.key == "tracing.endpoint"),
            "{bad}: {error}"
        );
    }
}

#[test]
fn a_zero_export_timeout_is_a_config_error() {
    let error = load(&[
        ("PIMGATE__TRACING__ENDPOINT", "http://127.0.0.1:4318"),
        ("PIMGATE__TRACING__TIMEOUT_MS", "0"),
    ])
    .expect_err("zero timeout");
    assert!(
        error
            .problems
            .iter()
            .any(|problem| problem.key == "tracing.timeout_ms"),
        "{error}"
    );
}

/// A `pimgate serve` child; killed on drop if a test fails before it exits by itself.
struct Served {
    child: Child,
    port: u16,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

fn lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn serve(env: &[(&str, &str)]) -> Served {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--config", "config/example.toml"])
        .env_remove("PIMGATE_CONFIG")
        .env_remove("RUST_LOG")
        .env("PIMGATE__SERVER__LISTEN", "127.0.0.1:0")
        .env("PIMGATE__SERVER__WORKERS", "1")
        .env("PIMGATE__LOG__FORMAT", "json")
        .env("PIMGATE__AUDIT__SINK", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    let mut served = Served {
        child,
        port: 0,
        stderr,
    };
    let port_pattern = regex::Regex::new(r#""port":(\d+)"#).unwrap();
    let mut seen = Vec::new();
    loop {
        let line = served
            .stderr
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no port logged: {seen:#?}"));
        if line.contains("listening")
            && let Some(port) = port_pattern.captures(&line).and_then(|c| c[1].parse().ok())
        {
            served.port = port;
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
        .unwrap();
    assert!(output.status.success(), "dev token failed");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn spans_are_posted_as_otlp_protobuf_in_the_callers_trace_and_flushed_on_sigterm() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let mut served = serve(&[("PIMGATE__TRACING__ENDPOINT", &collector.uri())]);
    let base = format!("http://127.0.0.1:{}", served.port);
    let client = reqwest::Client::new();

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let body = std::fs::read("tests/fixtures/requests/entra-role-activation.json").unwrap();
    let response = client
        .post(format!("{base}/v1/evaluate"))
        .bearer_auth(dev_token())
        .header("content-type", "application/json")
        .header("traceparent", TRACEPARENT)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The default batch delay is seconds long: only the flush on shutdown gets the spans out now.
    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = served
        .wait_for_exit(Duration::from_secs(30))
        .expect("pimgate exits after SIGTERM");
    assert!(exit.success(), "{exit:?}");

    let posts = collector.received_requests().await.unwrap();
    assert!(!posts.is_empty(), "no span was exported");
    for post in &posts {
        assert_eq!(post.url.path(), "/v1/traces");
        assert_eq!(
            post.headers
                .get("content-type")
                .and_then(|value| value.to_str().ok()),
            Some("application/x-protobuf")
        );
    }
    let exported: Vec<u8> = posts.iter().flat_map(|post| post.body.clone()).collect();
    assert!(
        contains(&exported, &hex::decode(TRACE_ID).unwrap()),
        "the caller's trace id is in the export"
    );
    for text in ["pimgate", "request", "evaluate"] {
        assert!(contains(&exported, text.as_bytes()), "`{text}` exported");
    }
}

#[tokio::test]
async fn with_export_on_the_logs_name_the_callers_trace() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let served = serve(&[
        ("PIMGATE__TRACING__ENDPOINT", &collector.uri()),
        ("PIMGATE__LOG__LEVEL", "debug"),
    ]);
    let base = format!("http://127.0.0.1:{}", served.port);
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/evaluate"))
        .header("traceparent", TRACEPARENT)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Ok(line) = served.stderr.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if line.contains(&format!("\"trace_id\":\"{TRACE_ID}\"")) {
            return;
        }
    }
    panic!("no log line carries the caller's trace id");
}
