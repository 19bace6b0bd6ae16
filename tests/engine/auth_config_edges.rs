//! Configuration edges of token validation (issue 11, item 7): the floor of kid-triggered JWKS
//! refreshes, a refresh that outlives the request that started it, and development mode bound to
//! loopback listeners where the authenticator is built.

// Test helpers outside `#[test]` functions fail loudly by design.
#![allow(clippy::expect_used)]

use crate::support::auth as common_auth;

use std::net::SocketAddr;
use std::time::Duration;

use common_auth::{APP_ID_URI, CLIENT_ID, JWKS_PATH, TENANT_ID, TestIdp, v2_issuer};
use pimgate::auth::Authenticator;
use pimgate::settings::{AuthSettings, Settings};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn loopback() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 8080))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_refresh_started_by_a_request_that_times_out_still_completes_and_counts_against_the_floor()
 {
    let idp = TestIdp::start().await;
    // A second upstream whose JWKS answers slowly, and must be fetched exactly once.
    let slow = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/{TENANT_ID}/v2.0/.well-known/openid-configuration"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": v2_issuer(TENANT_ID),
            "jwks_uri": format!("{}{JWKS_PATH}", slow.uri()),
        })))
        .mount(&slow)
        .await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "keys": [idp.key.jwk()] }))
                .set_delay(Duration::from_millis(600)),
        )
        .expect(1)
        .mount(&slow)
        .await;
    let mut settings = idp.settings();
    settings.metadata_url = format!(
        "{}/{{tenant_id}}/v2.0/.well-known/openid-configuration",
        slow.uri()
    );
    settings.jwks_min_refresh_interval_seconds = 30;
    let authenticator =
        Authenticator::new(&settings, reqwest::Client::new(), &loopback()).expect("valid settings");
    let token = idp.bearer(&idp.v2_claims());

    // The request whose unknown kid starts the refresh gives up long before the JWKS answers.
    let first = tokio::time::timeout(
        Duration::from_millis(100),
        authenticator.verify_header(Some(&token)),
    )
    .await;
    assert!(first.is_err(), "the first request timed out");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The refresh finished on its own and installed the keys; this request needs no fetch.
    authenticator
        .verify_header(Some(&token))
        .await
        .expect("the detached refresh installed the key");
    assert!(authenticator.is_ready());
    slow.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_refresh_request_does_not_let_the_next_request_start_another_fetch() {
    let idp = TestIdp::start().await;
    let slow = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/{TENANT_ID}/v2.0/.well-known/openid-configuration"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": v2_issuer(TENANT_ID),
            "jwks_uri": format!("{}{JWKS_PATH}", slow.uri()),
        })))
        .mount(&slow)
        .await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "keys": [idp.key.jwk()] }))
                .set_delay(Duration::from_millis(600)),
        )
        .expect(1)
        .mount(&slow)
        .await;
    let mut settings = idp.settings();
    settings.metadata_url = format!(
        "{}/{{tenant_id}}/v2.0/.well-known/openid-configuration",
        slow.uri()
    );
    settings.jwks_min_refresh_interval_seconds = 30;
    let authenticator =
        Authenticator::new(&settings, reqwest::Client::new(), &loopback()).expect("valid settings");
    let token = idp.bearer(&idp.v2_claims());

    let dropped = tokio::spawn({
        let authenticator = authenticator.clone();
        let token = token.clone();
        async move { authenticator.verify_header(Some(&token)).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    dropped.abort();
    // A second request arriving while the first fetch is still under way waits for it, not a new one.
    authenticator
        .verify_header(Some(&token))
        .await
        .expect("served by the one fetch");
    slow.verify().await;
}

fn dev_settings() -> AuthSettings {
    AuthSettings {
        audiences: vec![CLIENT_ID.into(), APP_ID_URI.into()],
        dev_mode: true,
        ..AuthSettings::default()
    }
}

#[test]
fn a_development_authenticator_cannot_be_built_for_a_public_listener() {
    for public in ["0.0.0.0:8080", "[::]:8080", "10.1.2.3:443"] {
        let address: SocketAddr = public.parse().expect("address");
        let refused = Authenticator::new(
            &dev_settings(),
            reqwest::Client::new(),
            &[loopback()[0], address],
        );
        let Err(error) = refused else {
            panic!("development mode accepted for {public}");
        };
        assert!(error.to_string().contains("auth.dev_mode"), "{error}");
    }
    let no_listener = Authenticator::new(&dev_settings(), reqwest::Client::new(), &[]);
    assert!(no_listener.is_err(), "no listener proves nothing");
    assert!(Authenticator::new(&dev_settings(), reqwest::Client::new(), &loopback()).is_ok());
    let ipv6 = ["[::1]:8080".parse().expect("address")];
    assert!(Authenticator::new(&dev_settings(), reqwest::Client::new(), &ipv6).is_ok());
}

#[tokio::test]
async fn an_application_built_in_code_with_development_mode_on_a_public_address_fails() {
    let mut settings = Settings {
        auth: dev_settings(),
        ..Settings::default()
    };
    settings.server.listen = "0.0.0.0:0".into();
    settings.rules.path = "rules".into();
    let Err(error) = pimgate::startup::Application::build(settings).await else {
        panic!("development mode served on 0.0.0.0");
    };
    assert!(format!("{error:#}").contains("auth.dev_mode"), "{error:#}");
}

#[test]
fn a_zero_floor_between_unknown_kid_refreshes_is_a_settings_problem() {
    for seconds in [0, 9] {
        let mut settings = Settings::default();
        settings.auth.jwks_min_refresh_interval_seconds = seconds;
        let problems = settings.validate();
        let problem = problems
            .iter()
            .find(|problem| problem.key == "auth.jwks_min_refresh_interval_seconds")
            .unwrap_or_else(|| panic!("{seconds} s accepted"));
        assert!(!problem.fix.is_empty());
    }
    let mut settings = Settings::default();
    settings.auth.jwks_min_refresh_interval_seconds = 10;
    assert!(
        settings
            .validate()
            .iter()
            .all(|problem| problem.key != "auth.jwks_min_refresh_interval_seconds")
    );
}
