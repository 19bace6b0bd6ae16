//! The `http` check against a compliance API stand-in on loopback that verifies pimgate's signature
//! the way README tells receivers to (HMAC-SHA256 over `timestamp + "." + body`, recomputed here
//! independently of pimgate's code) and answers verdicts, faults and garbage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pimgate::checks::registry::{BuildEnv, CheckSpec};
use pimgate::checks::{Check, CheckContext, CheckOutcome, CheckStatus};
use pimgate::connectors::compliance_api::ComplianceApiSettings;
use pimgate::connectors::http::RetrySettings;
use pimgate::connectors::secrets::SecretRef;
use pimgate::connectors::{BuildContext, Connectors, ConnectorsSettings};
use pimgate::payload::{
    Action, ActivationRequest, ExpirationKind, ResourceType, Schedule, Stage, Target,
};
use pimgate::vocabulary::disclosure::Disclosure;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SIGNING_SECRET: &str = "whsec-test-3f9a1c";
const JUSTIFICATION: &str = "CHG0031337: rotate the signing certificate";

/// HMAC-SHA256 written out from RFC 2104, so the test does not trust pimgate's implementation.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// A receiver as README describes one: refuses (401) a request whose signature does not verify or
/// whose timestamp is older than five minutes, otherwise answers `verdict`.
struct VerifyingReceiver {
    verdict: Value,
}

fn signature_holds(request: &Request) -> bool {
    let text = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let (Some(timestamp), Some(signature)) =
        (text("x-pimgate-timestamp"), text("x-pimgate-signature"))
    else {
        return false;
    };
    let Ok(seconds) = timestamp.parse::<i64>() else {
        return false;
    };
    if (Utc::now().timestamp() - seconds).abs() > 300 {
        return false;
    }
    let mut signed = timestamp.into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(&request.body);
    let expected = format!(
        "v1={}",
        hex::encode(hmac_sha256(SIGNING_SECRET.as_bytes(), &signed))
    );
    signature == expected
}

impl Respond for VerifyingReceiver {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if signature_holds(request) {
            ResponseTemplate::new(200).set_body_json(self.verdict.clone())
        } else {
            ResponseTemplate::new(401).set_body_string("bad signature")
        }
    }
}

struct Setup {
    settings: ComplianceApiSettings,
    _dir: tempfile::TempDir,
}

fn settings(server: &MockServer) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("signing");
    std::fs::write(&secret, SIGNING_SECRET).unwrap();
    let settings = ComplianceApiSettings {
        url: Some(format!("{}/pimgate/verdict", server.uri())),
        timeout_ms: 500,
        signing_secret: Some(SecretRef {
            env: None,
            file: Some(secret),
        }),
        retry: RetrySettings {
            max_attempts: 3,
            backoff_base_ms: 10,
            backoff_max_ms: 20,
        },
        ..ComplianceApiSettings::default()
    };
    Setup {
        settings,
        _dir: dir,
    }
}

fn secret_file(dir: &Path, name: &str, value: &str) -> SecretRef {
    let file = dir.join(name);
    std::fs::write(&file, value).unwrap();
    SecretRef {
        env: None,
        file: Some(file),
    }
}

fn connectors(settings: &ComplianceApiSettings) -> Result<Arc<Connectors>, Vec<String>> {
    let all = ConnectorsSettings {
        http: BTreeMap::from([("compliance".to_string(), settings.clone())]),
        ..ConnectorsSettings::default()
    };
    let context = BuildContext {
        http: reqwest::Client::new(),
        tenant_id: "11111111-2222-4333-8444-555555555555".to_string(),
    };
    Connectors::build(&all, &context)
        .map_err(|problems| problems.iter().map(ToString::to_string).collect())
}

fn build(connectors: &Arc<Connectors>, yaml: &str) -> Result<Arc<dyn Check>, Vec<String>> {
    let spec: CheckSpec = yaml_serde::from_str(yaml).unwrap();
    assert_eq!(spec.kind(), "http");
    assert_eq!(spec.required_connector(), Some("http"));
    let (lists, windows) = (BTreeMap::new(), BTreeMap::new());
    spec.build(&BuildEnv {
        lists: &lists,
        windows: &windows,
        connectors,
    })
    .map(|named| named.check)
    .map_err(|problems| problems.iter().map(ToString::to_string).collect())
}

fn check_for(settings: &ComplianceApiSettings) -> Arc<dyn Check> {
    build(
        &connectors(settings).unwrap(),
        "http: { connector: compliance, name: Security training }",
    )
    .unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T18:05:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn request() -> ActivationRequest {
    ActivationRequest {
        request_id: Some("req-1".to_string()),
        resource_type: ResourceType::EntraRoles,
        principal_id: "5b2a9c1e-2222-4d3e-8f40-1a2b3c4d5e6f".to_string(),
        principal_type: Some("User".to_string()),
        action: Action::SelfActivate,
        target: Target::EntraRole {
            role_definition_id: "62e90394-69f5-4237-9190-012177145e10".to_string(),
            directory_scope_id: "/".to_string(),
            app_scope_id: None,
        },
        justification: Some(JUSTIFICATION.to_string()),
        ticket: None,
        schedule: Schedule {
            start: None,
            expiration_kind: ExpirationKind::AfterDuration,
            duration: Some(chrono::Duration::hours(1)),
            end: None,
        },
    }
}

async fn evaluate_at(check: &Arc<dyn Check>, stage: Stage) -> CheckOutcome {
    let request = request();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    check
        .evaluate(&CheckContext::new(&request, now(), deadline).at_stage(stage))
        .await
}

async fn evaluate(check: &Arc<dyn Check>) -> CheckOutcome {
    evaluate_at(check, Stage::PreApproval).await
}

async fn mount_verifying(server: &MockServer, verdict: Value, times: u64) {
    Mock::given(method("POST"))
        .and(path("/pimgate/verdict"))
        .respond_with(VerifyingReceiver { verdict })
        .expect(times)
        .mount(server)
        .await;
}

async fn received_document(server: &MockServer) -> Value {
    let requests = server.received_requests().await.unwrap();
    serde_json::from_slice(&requests.last().unwrap().body).unwrap()
}

#[tokio::test]
async fn a_signed_request_document_gets_the_receivers_pass_with_its_evidence() {
    let server = MockServer::start().await;
    mount_verifying(
        &server,
        json!({"result": "pass", "message": "training completed on 2026-10-01", "evidence": {"course": "SEC-101"}}),
        1,
    )
    .await;
    let setup = settings(&server);

    let outcome = evaluate_at(&check_for(&setup.settings), Stage::PostApproval).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
    assert_eq!(
        outcome.message,
        "`Security training`: training completed on 2026-10-01"
    );
    assert_eq!(outcome.evidence["verdict"], json!({"course": "SEC-101"}));
    assert_eq!(outcome.holds_at, Some(now()));
    let calls = outcome.evidence["upstream"].as_array().unwrap();
    assert_eq!(calls[0]["operation"], "POST /pimgate/verdict");
    // Each receiver is its own upstream in metrics, logs and evidence, not one shared `http`.
    assert_eq!(calls[0]["connector"], "http.compliance");
    let document = received_document(&server).await;
    assert_eq!(document["version"], "pimgate.activation.v1");
    assert_eq!(document["stage"], "post_approval");
    assert_eq!(document["principalId"], request().principal_id);
    assert_eq!(document["justification"], JUSTIFICATION);
    assert_eq!(document["activation"]["start"], "2026-11-24T18:05:00Z");
}

#[tokio::test]
async fn a_signed_request_gets_the_receivers_fail_as_the_requesters_reason() {
    let server = MockServer::start().await;
    mount_verifying(
        &server,
        json!({"result": "fail", "message": "security training expired\non 2026-01-01"}),
        1,
    )
    .await;
    let setup = settings(&server);

    let outcome = evaluate(&check_for(&setup.settings)).await;

    assert_eq!(outcome.status, CheckStatus::Fail, "{outcome:?}");
    assert_eq!(
        outcome.message,
        "`Security training`: security training expired on 2026-01-01"
    );
    assert_eq!(received_document(&server).await["stage"], "pre_approval");
}

#[tokio::test]
async fn a_wrong_signing_secret_is_refused_by_the_receiver_and_is_never_a_pass() {
    let server = MockServer::start().await;
    mount_verifying(&server, json!({"result": "pass", "message": "ok"}), 1).await;
    let mut setup = settings(&server);
    setup.settings.signing_secret = Some(secret_file(
        setup._dir.path(),
        "other",
        "not-the-shared-secret",
    ));

    let outcome = evaluate(&check_for(&setup.settings)).await;

    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
}

#[tokio::test]
async fn every_fault_or_non_verdict_is_not_evaluated_never_a_pass_and_names_no_status_or_url() {
    let huge = json!({"result": "pass", "message": "ok", "evidence": {"blob": "x".repeat(2 * 1024 * 1024)}});
    let cases: Vec<(&str, ResponseTemplate)> = vec![
        (
            "500",
            ResponseTemplate::new(500).set_body_string("boom at https://internal"),
        ),
        ("404", ResponseTemplate::new(404)),
        (
            "timeout",
            ResponseTemplate::new(200)
                .set_body_json(json!({"result": "pass", "message": "late"}))
                .set_delay(Duration::from_secs(2)),
        ),
        (
            "garbage",
            ResponseTemplate::new(200).set_body_string("{\"result\": \"pass\", "),
        ),
        (
            "maybe",
            ResponseTemplate::new(200).set_body_json(json!({"result": "maybe", "message": "x"})),
        ),
        (
            "missing result",
            ResponseTemplate::new(200).set_body_json(json!({"message": "pass"})),
        ),
        (
            "missing message",
            ResponseTemplate::new(200).set_body_json(json!({"result": "pass"})),
        ),
        (
            "non-object evidence",
            ResponseTemplate::new(200)
                .set_body_json(json!({"result": "pass", "message": "x", "evidence": ["pass"]})),
        ),
        ("huge body", ResponseTemplate::new(200).set_body_json(huge)),
        (
            "html",
            ResponseTemplate::new(200).set_body_string("<html>pass</html>"),
        ),
    ];
    for (name, response) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(response)
            .expect(1)
            .mount(&server)
            .await;
        let setup = settings(&server);

        let outcome = evaluate(&check_for(&setup.settings)).await;

        assert_eq!(outcome.status, CheckStatus::Error, "{name}: {outcome:?}");
        assert!(
            outcome
                .message
                .starts_with("`Security training` could not be evaluated"),
            "{name}: {}",
            outcome.message
        );
        for leak in ["500", "404", "127.0.0.1", "http://", "boom", "/pimgate"] {
            assert!(
                !outcome.message.contains(leak),
                "{name}: {}",
                outcome.message
            );
        }
        assert!(outcome.evidence.contains_key("error_detail"), "{name}");
    }
}

#[tokio::test]
async fn a_failing_receiver_is_retried_only_when_the_verdict_is_declared_idempotent() {
    for (idempotent, attempts) in [(false, 1), (true, 3)] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .expect(attempts)
            .mount(&server)
            .await;
        let mut setup = settings(&server);
        setup.settings.idempotent = idempotent;

        let outcome = evaluate(&check_for(&setup.settings)).await;

        assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
        server.verify().await;
    }
}

#[tokio::test]
async fn a_verdict_is_reused_within_its_ttl_for_the_same_request_and_stage_only() {
    let server = MockServer::start().await;
    mount_verifying(&server, json!({"result": "pass", "message": "ok"}), 2).await;
    let mut setup = settings(&server);
    setup.settings.cache_ttl_seconds = 60;
    let check = check_for(&setup.settings);

    let first = evaluate(&check).await;
    let second = evaluate(&check).await;
    let other_stage = evaluate_at(&check, Stage::PostApproval).await;

    assert_eq!(first.status, CheckStatus::Pass);
    assert_eq!(second.status, CheckStatus::Pass);
    assert_eq!(second.evidence["upstream"][0]["cached"], true);
    assert_eq!(other_stage.evidence["upstream"][0]["cached"], false);
}

#[tokio::test]
async fn without_a_ttl_every_decision_asks_again() {
    let server = MockServer::start().await;
    mount_verifying(&server, json!({"result": "pass", "message": "ok"}), 2).await;
    let setup = settings(&server);
    let check = check_for(&setup.settings);

    evaluate(&check).await;
    evaluate(&check).await;
}

#[tokio::test]
async fn a_bearer_secret_is_sent_as_the_authorization_header() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer receiver-token-77"))
        .respond_with(VerifyingReceiver {
            verdict: json!({"result": "pass", "message": "ok"}),
        })
        .expect(1)
        .mount(&server)
        .await;
    let mut setup = settings(&server);
    setup.settings.bearer = Some(secret_file(
        setup._dir.path(),
        "bearer",
        "receiver-token-77",
    ));

    let outcome = evaluate(&check_for(&setup.settings)).await;

    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
}

#[tokio::test]
async fn the_justification_is_hashed_or_omitted_when_the_connector_says_so() {
    for (disclosure, expected) in [
        (
            Disclosure::Hash,
            json!(format!(
                "sha256:{}",
                hex::encode(Sha256::digest(JUSTIFICATION))
            )),
        ),
        (Disclosure::Omit, Value::Null),
    ] {
        let server = MockServer::start().await;
        mount_verifying(&server, json!({"result": "pass", "message": "ok"}), 1).await;
        let mut setup = settings(&server);
        setup.settings.justification = disclosure;

        evaluate(&check_for(&setup.settings)).await;

        let requests = server.received_requests().await.unwrap();
        let body = String::from_utf8_lossy(&requests[0].body).to_string();
        assert!(!body.contains("rotate the signing"), "{body}");
        assert_eq!(received_document(&server).await["justification"], expected);
    }
}

#[tokio::test]
async fn settings_problems_are_reported_all_at_once_and_plain_http_off_loopback_is_refused() {
    let server = MockServer::start().await;
    let mut setup = settings(&server);
    setup.settings.url = Some("http://compliance.contoso.example/pimgate".to_string());
    setup.settings.signing_secret = None;
    setup.settings.timeout_ms = 0;

    let problems = connectors(&setup.settings).unwrap_err();

    let joined = problems.join("\n");
    assert!(
        joined.contains("connectors.http.compliance.url"),
        "{joined}"
    );
    assert!(joined.contains("not loopback"), "{joined}");
    assert!(
        joined.contains("connectors.http.compliance.signing_secret"),
        "{joined}"
    );
    assert!(
        joined.contains("connectors.http.compliance.timeout_ms"),
        "{joined}"
    );
}

#[tokio::test]
async fn entra_auth_without_a_graph_connector_and_two_auth_methods_are_refused() {
    let server = MockServer::start().await;
    let mut setup = settings(&server);
    setup.settings.entra = Some(pimgate::connectors::compliance_api::EntraAuth {
        audience: "api://contoso-compliance".to_string(),
    });
    setup.settings.bearer = Some(secret_file(setup._dir.path(), "bearer", "t"));

    let joined = connectors(&setup.settings).unwrap_err().join("\n");

    assert!(joined.contains("more than one of"), "{joined}");
    assert!(
        joined.contains("connectors.http.compliance.entra"),
        "{joined}"
    );
}

#[tokio::test]
async fn a_rule_naming_an_unknown_http_connector_is_refused_with_a_suggestion() {
    let server = MockServer::start().await;
    let setup = settings(&server);
    let connectors = connectors(&setup.settings).unwrap();

    let problems = build(&connectors, "http: { connector: complaince }").unwrap_err();

    let joined = problems.join("\n");
    assert!(
        joined.contains("not a configured http connector"),
        "{joined}"
    );
    assert!(joined.contains("did you mean `compliance`"), "{joined}");
    assert!(build(&Connectors::none(), "http: { connector: anything }").is_ok());
}

#[test]
fn loading_without_the_named_connector_warns_pointing_at_its_own_section() {
    let rules = r#"
policies:
  - name: attested
    match: { roles: ["62e90394-69f5-4237-9190-012177145e10"] }
    require:
      - http: { connector: device-attestation }
      - opa: { connector: central, path: pim/allow }
"#;
    let loaded = pimgate::rules::load_str("compliance.yaml", rules).unwrap();

    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings[0].contains("`[connectors.http.device-attestation]`"),
        "{warnings:#?}"
    );
    assert!(
        warnings[1].contains("`[connectors.opa.central]`"),
        "{warnings:#?}"
    );
}

/// `entra = { audience }`: the receiver (e.g. an Azure Function behind Entra auth) gets an Entra
/// client-credentials token for its own audience, fetched with `[connectors.graph]`'s credentials.
#[tokio::test]
async fn entra_auth_sends_a_client_credentials_token_for_the_receivers_audience() {
    use pimgate::connectors::compliance_api::EntraAuth;
    use pimgate::connectors::graph::GraphSettings;
    use wiremock::matchers::body_string_contains;

    const TENANT: &str = "11111111-2222-4333-8444-555555555555";
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains(
            "scope=api%3A%2F%2Fcontoso-compliance%2F.default",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "access_token": "entra-token-for-the-receiver"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/pimgate/verdict"))
        .and(header(
            "authorization",
            "Bearer entra-token-for-the-receiver",
        ))
        .respond_with(VerifyingReceiver {
            verdict: json!({"result": "pass", "message": "training complete"}),
        })
        .expect(2)
        .mount(&server)
        .await;
    let mut setup = settings(&server);
    setup.settings.entra = Some(EntraAuth {
        audience: "api://contoso-compliance".to_string(),
    });
    let graph = GraphSettings {
        client_id: Some("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee".to_string()),
        client_secret: Some(secret_file(
            setup._dir.path(),
            "graph-secret",
            "graph-s3cret",
        )),
        authority_url: Some(server.uri()),
        graph_url: Some(server.uri()),
        ..GraphSettings::default()
    };
    let all = ConnectorsSettings {
        http: BTreeMap::from([("compliance".to_string(), setup.settings.clone())]),
        graph: Some(graph),
        ..ConnectorsSettings::default()
    };
    let context = BuildContext {
        http: reqwest::Client::new(),
        tenant_id: TENANT.to_string(),
    };
    let connectors = Connectors::build(&all, &context).unwrap_or_else(|problems| {
        panic!(
            "{}",
            pimgate::vocabulary::diagnostic::format_problems(&problems)
        )
    });
    let check = build(&connectors, "http: { connector: compliance }").unwrap();

    // Two decisions, one token: it is cached like Graph's own.
    for _ in 0..2 {
        let outcome = evaluate(&check).await;
        assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
        let shown = format!("{outcome:?}");
        assert!(
            !shown.contains("graph-s3cret") && !shown.contains("entra-token-for-the-receiver"),
            "{shown}"
        );
    }
}

/// Kills the receiver process when the test ends, however it ends.
struct Receiver(std::process::Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Python receiver README.md publishes, run as written (its code block; the port from `PORT`):
/// an implementation of the signature scheme that is not ours checks pimgate's requests, and its
/// answers are read as verdicts. A wrong secret gets its 401, which is never a pass.
#[tokio::test]
async fn the_readme_python_receiver_verifies_pimgates_signature_and_answers_verdicts() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```python\n")
        .expect("README has a Python receiver")
        + 10;
    let code = &readme[start..start + readme[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("receiver.py");
    std::fs::write(&script, code).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _receiver = Receiver(
        std::process::Command::new("python3")
            .arg(&script)
            .env("PIMGATE_HTTP_SIGNING_SECRET", SIGNING_SECRET)
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs"),
    );
    let mut listening = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            listening = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listening, "the README receiver did not listen within 5 s");

    let dir = tempfile::tempdir().unwrap();
    let settings_with = |secret: &str| ComplianceApiSettings {
        url: Some(format!("http://127.0.0.1:{port}/verdict")),
        timeout_ms: 2000,
        signing_secret: Some(secret_file(dir.path(), "signing", secret)),
        ..ComplianceApiSettings::default()
    };
    let check = check_for(&settings_with(SIGNING_SECRET));

    // The receiver's example lookup knows the test requester: a pass, with its evidence.
    let outcome = evaluate(&check).await;
    assert_eq!(outcome.status, CheckStatus::Pass, "{outcome:?}");
    assert!(
        outcome.message.contains("security training is current"),
        "{}",
        outcome.message
    );
    assert_eq!(
        outcome.evidence["verdict"]["course"], "SEC-101",
        "{:?}",
        outcome.evidence
    );

    // Anyone else: the receiver's fail, as the requester's reason.
    let mut stranger = request();
    stranger.principal_id = "0d0d0d0d-1111-4222-8333-444444444444".to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let outcome = check
        .evaluate(&CheckContext::new(&stranger, now(), deadline))
        .await;
    assert_eq!(outcome.status, CheckStatus::Fail, "{outcome:?}");
    assert!(outcome.message.contains("complete security training first"));

    // Signed with another secret, the receiver refuses (401): not evaluated, never a pass.
    let forged = check_for(&settings_with("not-the-shared-secret"));
    let outcome = evaluate(&forged).await;
    assert_eq!(outcome.status, CheckStatus::Error, "{outcome:?}");
}
