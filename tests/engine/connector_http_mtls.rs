//! The `http` check's client certificate (`mtls`) and its own CA (`ca_file`), against a receiver on
//! loopback that is a real TLS server requiring a client certificate from its CA (actix-web over
//! rustls with a WebPKI client verifier). Certificates are made per test with rcgen: a receiver CA
//! issuing the server and the client certificates, and a stranger CA issuing an impostor's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use chrono::{DateTime, Utc};
use pimgate::checks::registry::{BuildEnv, CheckSpec};
use pimgate::checks::{Check, CheckContext, CheckStatus};
use pimgate::connectors::compliance_api::{ComplianceApiSettings, MtlsFiles};
use pimgate::connectors::secrets::SecretRef;
use pimgate::connectors::{BuildContext, Connectors, ConnectorsSettings};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

/// A CA that can issue leaf certificates, written out as PEM files in `dir`.
struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
    cert_file: PathBuf,
}

fn authority(dir: &Path, name: &str) -> Authority {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let cert_file = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&cert_file, issuer.pem()).unwrap();
    Authority { issuer, cert_file }
}

/// A leaf certificate and key issued by `authority`, as (cert file, key file).
fn leaf(
    dir: &Path,
    authority: &Authority,
    name: &str,
    names: &[&str],
    purpose: ExtendedKeyUsagePurpose,
) -> MtlsFiles {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().unwrap();
    let certificate = params.signed_by(&key, &authority.issuer).unwrap();
    let files = MtlsFiles {
        cert_file: dir.join(format!("{name}-cert.pem")),
        key_file: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&files.cert_file, certificate.pem()).unwrap();
    std::fs::write(&files.key_file, key.serialize_pem()).unwrap();
    files
}

/// A receiver that completes the TLS handshake only with a client certificate from `clients`,
/// presents `server`, and answers every verdict request with a pass. Returns its https URL.
fn receiver(server: &MtlsFiles, clients: &Authority) -> String {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(&clients.cert_file).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&server.cert_file)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&server.key_file).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let running = HttpServer::new(|| {
        App::new().route(
            "/pimgate/verdict",
            web::post().to(|| async {
                HttpResponse::Ok()
                    .json(json!({"result": "pass", "message": "device attested", "evidence": {}}))
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen_rustls_0_23(listener, config)
    .unwrap()
    .run();
    tokio::spawn(running);
    format!("https://localhost:{port}/pimgate/verdict")
}

struct World {
    dir: tempfile::TempDir,
    receiver_ca: Authority,
    url: String,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let receiver_ca = authority(dir.path(), "receiver");
    let server = leaf(
        dir.path(),
        &receiver_ca,
        "server",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let url = receiver(&server, &receiver_ca);
    World {
        dir,
        receiver_ca,
        url,
    }
}

fn settings(world: &World) -> ComplianceApiSettings {
    let secret = world.dir.path().join("signing");
    std::fs::write(&secret, "whsec-mtls-test").unwrap();
    ComplianceApiSettings {
        url: Some(world.url.clone()),
        timeout_ms: 3000,
        signing_secret: Some(SecretRef {
            env: None,
            file: Some(secret),
        }),
        ..ComplianceApiSettings::default()
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

fn check_for(settings: &ComplianceApiSettings) -> Arc<dyn Check> {
    let connectors = connectors(settings).unwrap();
    let spec: CheckSpec =
        yaml_serde::from_str("http: { connector: compliance, name: Device attestation }").unwrap();
    let (lists, windows) = (BTreeMap::new(), BTreeMap::new());
    spec.build(&BuildEnv {
        lists: &lists,
        windows: &windows,
        connectors: &connectors,
    })
    .map(|named| named.check)
    .unwrap()
}

async fn status_with(settings: &ComplianceApiSettings) -> (CheckStatus, String) {
    let check = check_for(settings);
    let request = crate::support::rules::role("62e90394-69f5-4237-9190-012177145e10");
    let now: DateTime<Utc> = Utc::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let outcome = check
        .evaluate(&CheckContext::new(&request, now, deadline))
        .await;
    (outcome.status, outcome.message)
}

#[tokio::test]
async fn a_client_certificate_from_the_receivers_ca_and_its_ca_file_get_the_verdict() {
    let world = world();
    let client = leaf(
        world.dir.path(),
        &world.receiver_ca,
        "pimgate",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let mut settings = settings(&world);
    settings.mtls = Some(client);
    settings.ca_file = Some(world.receiver_ca.cert_file.clone());

    let (status, message) = status_with(&settings).await;

    assert_eq!(status, CheckStatus::Pass, "{message}");
    assert_eq!(message, "`Device attestation`: device attested");
}

#[tokio::test]
async fn without_a_client_certificate_the_handshake_fails_and_the_check_is_not_evaluated() {
    let world = world();
    let mut settings = settings(&world);
    settings.ca_file = Some(world.receiver_ca.cert_file.clone());

    let (status, message) = status_with(&settings).await;

    assert_eq!(status, CheckStatus::Error, "{message}");
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused_and_never_a_pass() {
    let world = world();
    let stranger = authority(world.dir.path(), "stranger");
    let impostor = leaf(
        world.dir.path(),
        &stranger,
        "impostor",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let mut settings = settings(&world);
    settings.mtls = Some(impostor);
    settings.ca_file = Some(world.receiver_ca.cert_file.clone());

    let (status, message) = status_with(&settings).await;

    assert_eq!(status, CheckStatus::Error, "{message}");
}

#[tokio::test]
async fn a_receiver_whose_certificate_is_not_from_the_ca_file_is_not_trusted() {
    let world = world();
    let client = leaf(
        world.dir.path(),
        &world.receiver_ca,
        "pimgate",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let stranger = authority(world.dir.path(), "stranger");
    let mut settings = settings(&world);
    settings.mtls = Some(client.clone());
    // Only the stranger CA is trusted: the receiver's own certificate must not be accepted.
    settings.ca_file = Some(stranger.cert_file.clone());
    let (status, message) = status_with(&settings).await;
    assert_eq!(status, CheckStatus::Error, "{message}");

    // Without a `ca_file`, the system roots do not know the internal CA either.
    settings.ca_file = None;
    let (status, message) = status_with(&settings).await;
    assert_eq!(status, CheckStatus::Error, "{message}");
}

#[test]
fn unreadable_or_empty_tls_files_are_all_reported_at_start_naming_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("signing");
    std::fs::write(&secret, "whsec").unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let settings = ComplianceApiSettings {
        url: Some("https://compliance.example.com/verdict".into()),
        signing_secret: Some(SecretRef {
            env: None,
            file: Some(secret),
        }),
        mtls: Some(MtlsFiles {
            cert_file: dir.path().join("missing-cert.pem"),
            key_file: dir.path().join("missing-key.pem"),
        }),
        ca_file: Some(not_pem),
        ..ComplianceApiSettings::default()
    };

    let problems = connectors(&settings).unwrap_err();

    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains("`connectors.http.compliance.mtls`")
            && problems[0].contains("missing-cert.pem"),
        "{problems:#?}"
    );
    assert!(
        problems[1].contains("`connectors.http.compliance.ca_file`")
            && problems[1].contains("holds no PEM certificate"),
        "{problems:#?}"
    );
}
