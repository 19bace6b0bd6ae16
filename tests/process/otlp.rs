//! Optional OTLP/HTTP trace export (`[tracing]`): off by default, validated, and when on, the
//! built binary posts its spans in the caller's W3C trace and flushes them on graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use crate::support::requests;
use crate::support::serve as common_serve;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common_serve::Served;
use requests::dev_token;

use pimgate::settings::Settings;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

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

/// The example config with JSON logs and no audit sink, plus `env`.
fn serve(env: &[(&str, &str)]) -> Served {
    let mut all = vec![
        ("PIMGATE__LOG__FORMAT", "json"),
        ("PIMGATE__AUDIT__SINK", "off"),
    ];
    all.extend_from_slice(env);
    common_serve::serve(Path::new("config/example.toml"), &all)
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

    let health = client
        .get(format!("{}/healthz", served.admin()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let body = requests::sample_bytes(requests::ENTRA_ROLE);
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
    served.signal("TERM");
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
