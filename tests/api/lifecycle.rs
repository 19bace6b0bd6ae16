//! The application's lifecycle in-process: readiness during a programmatic shutdown, the audit
//! flushed when it returns, HTTPS on the listener and the start-up checks of the TLS and shutdown keys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pimgate::settings::{AuditSettings, AuditSink, Settings, TlsSettings};
use pimgate::startup::Application;
use serde_json::{Value, json};

use crate::common_auth::TestIdp;
use crate::helpers::TEST_RULES;
use crate::support::requests::{self, ENTRA_ROLE};

struct Built {
    application: Application,
    idp: TestIdp,
    dir: tempfile::TempDir,
}

impl Built {
    fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }
}

async fn build(tweak: impl FnOnce(&mut Settings, &Path)) -> anyhow::Result<Built> {
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), TEST_RULES).unwrap();
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.admin.listen = "127.0.0.1:0".into();
    settings.server.workers = 1;
    settings.auth = idp.settings();
    // The service refuses a floor under 10 s between unknown-`kid` refreshes.
    settings.auth.jwks_min_refresh_interval_seconds = 10;
    settings.rules.path = dir.path().join("rules.yaml");
    settings.audit = AuditSettings {
        sink: AuditSink::File,
        path: Some(dir.path().join("audit.jsonl")),
        ..AuditSettings::default()
    };
    tweak(&mut settings, dir.path());
    let problems = settings.validate();
    assert!(
        problems.is_empty(),
        "test settings are invalid: {problems:?}"
    );
    let application = Application::build(settings).await?;
    Ok(Built {
        application,
        idp,
        dir,
    })
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, as an operator would make one.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}-cert.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-days",
            "1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (cert, key)
}

fn connection_refused(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_err()
}

#[tokio::test]
async fn readiness_turns_503_when_a_shutdown_begins_and_the_audit_is_complete_when_it_returns() {
    let built = build(|settings, _| settings.server.shutdown_delay_ms = 600)
        .await
        .unwrap();
    let port = built.application.port();
    let base = format!("http://127.0.0.1:{port}");
    let admin_port = built.application.admin_port().unwrap();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let handle = built.application.handle();
    let token = built.idp.sign(&built.idp.v2_claims());
    let audit_path = built.audit_path();
    let running = tokio::spawn(built.application.run_until_stopped());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{admin}/readyz")).send().await
            && response.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the service became ready");
    assert!(!handle.is_shutting_down());

    let stopping = tokio::spawn({
        let handle = handle.clone();
        async move { handle.shutdown().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(handle.is_shutting_down());
    let readiness = client.get(format!("{admin}/readyz")).send().await.unwrap();
    assert_eq!(readiness.status(), 503);
    let body: Value = readiness.json().await.unwrap();
    assert_eq!(body["status"], "shutting down", "{body}");
    assert_eq!(body["signingKeys"], true, "{body}");
    assert_eq!(
        client
            .get(format!("{admin}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "still alive while draining"
    );

    // During the delay an evaluation that still arrives is answered, not refused.
    let mut request = requests::sample(ENTRA_ROLE);
    request["id"] = json!("8a000000-0000-4000-8000-000000000001");
    let answer = client
        .post(format!("{base}/v1/evaluate"))
        .bearer_auth(&token)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown() returns once the server stopped")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("run_until_stopped returns after the graceful stop")
        .unwrap()
        .expect("a graceful stop is not an error");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(connection_refused(port), "the listener is closed");
    assert!(
        connection_refused(admin_port),
        "the admin listener is closed too"
    );

    let audit = std::fs::read_to_string(&audit_path).unwrap();
    let records: Vec<Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(
        records
            .iter()
            .any(|record| record["evaluationId"] == answer["evaluationId"]),
        "{records:#?}"
    );

    // A second call after the stop has nothing left to do.
    tokio::time::timeout(Duration::from_secs(1), handle.shutdown())
        .await
        .expect("shutdown() is idempotent");
}

#[tokio::test]
async fn https_serves_with_the_configured_certificate_and_plain_http_to_it_fails() {
    let built = build(|settings, dir| {
        // Every route on the TLS listener, so `/healthz` shows the handshake.
        settings.admin.listen = String::new();
        let (cert_file, key_file) = self_signed(dir, "server");
        settings.server.tls = Some(TlsSettings {
            cert_file,
            key_file,
        });
    })
    .await
    .unwrap();
    let port = built.application.port();
    let certificate = std::fs::read(built.dir.path().join("server-cert.pem")).unwrap();
    let handle = built.application.handle();
    let running = tokio::spawn(built.application.run_until_stopped());

    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&certificate).unwrap())
        .build()
        .unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let response = trusting
            .get(format!("https://{host}:{port}/healthz"))
            .send()
            .await
            .unwrap_or_else(|error| panic!("https to {host}: {error:?}"));
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "alive");
    }

    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP to the TLS port gets no HTTP answer: {plain:?}"
    );
    let untrusting = reqwest::Client::new()
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await;
    assert!(
        untrusting.is_err(),
        "a client that does not trust the certificate refuses it"
    );

    handle.shutdown().await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn tls_files_that_do_not_fit_stop_start_up_naming_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "one");
    let (_, other_key) = self_signed(dir.path(), "two");
    let cases = [
        (key.clone(), key.clone(), "`server.tls.cert_file`"),
        (cert.clone(), cert.clone(), "`server.tls.key_file`"),
        (cert.clone(), other_key, "does not fit the certificate"),
    ];
    for (cert_file, key_file, expected) in cases {
        let error = match build(move |settings, _| {
            settings.server.tls = Some(TlsSettings {
                cert_file,
                key_file,
            });
        })
        .await
        {
            Ok(_) => panic!("start-up accepted TLS files that do not fit ({expected})"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(expected), "{expected}: {error}");
        assert!(error.contains("fix:"), "{error}");
    }
}

#[test]
fn shutdown_and_tls_keys_are_validated_together_with_everything_else() {
    let env = HashMap::from([
        (
            "PIMGATE__SERVER__SHUTDOWN_GRACE_SECONDS".to_string(),
            "601".to_string(),
        ),
        (
            "PIMGATE__SERVER__SHUTDOWN_DELAY_MS".to_string(),
            "60001".to_string(),
        ),
        (
            "PIMGATE__SERVER__TLS__CERT_FILE".to_string(),
            "/nonexistent/cert.pem".to_string(),
        ),
        (
            "PIMGATE__SERVER__TLS__KEY_FILE".to_string(),
            "/nonexistent/key.pem".to_string(),
        ),
    ]);
    let error = Settings::load_with_env(Some(Path::new("config/example.toml")), Some(env))
        .expect_err("out-of-range keys and missing files are refused");
    let keys: Vec<&str> = error.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "server.shutdown_grace_seconds",
            "server.shutdown_delay_ms",
            "server.tls.cert_file",
            "server.tls.key_file",
        ],
        "{error}"
    );
    assert!(
        error.to_string().contains("/nonexistent/cert.pem"),
        "{error}"
    );
}

#[test]
fn shutdown_defaults_suit_production_and_tls_is_off() {
    let settings =
        Settings::load_with_env(Some(Path::new("config/example.toml")), Some(HashMap::new()))
            .unwrap();
    assert_eq!(settings.server.shutdown_grace_seconds, 20);
    // The development config stops at once; the built-in default drains for 2 s first.
    assert_eq!(settings.server.shutdown_delay_ms, 0);
    assert_eq!(
        pimgate::settings::ServerSettings::default().shutdown_delay_ms,
        2000
    );
    assert!(settings.server.tls.is_none());
}
