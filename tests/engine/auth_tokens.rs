//! Bearer-token validation against a real (loopback) discovery + JWKS server with real RSA keys.

// Test helpers outside `#[test]` functions fail loudly by design.
#![allow(clippy::expect_used)]

use crate::support::auth as common_auth;

use std::sync::Arc;
use std::time::Duration;

use common_auth::{
    APP_ID_URI, CLIENT_ID, JwksBehaviour, OTHER_TENANT_ID, PIM_APP_ID, TENANT_ID, TestIdp, TestKey,
    b64url, now, raw_token, v1_issuer, v2_issuer,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pimgate::auth::dev::{DEV_ISSUER, DEV_KEY_ID, DevTokenOptions, issue_token};
use pimgate::auth::{AuthError, Authenticator, MAX_TOKEN_BYTES};
use pimgate::settings::{AuthSettings, TokenVersion};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The address every authenticator here is served on, as far as it knows.
const LOOPBACK: [std::net::SocketAddr; 1] = [std::net::SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    8080,
)];

async fn ready_authenticator(settings: &AuthSettings) -> Arc<Authenticator> {
    let authenticator =
        Authenticator::new(settings, reqwest::Client::new(), &LOOPBACK).expect("valid settings");
    authenticator.refresh_keys().await.expect("keys fetched");
    authenticator
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().expect("claims object").remove(key);
    claims
}

fn reason(result: Result<impl std::fmt::Debug, AuthError>) -> String {
    match result {
        Ok(caller) => format!("accepted: {caller:?}"),
        Err(error) => error.reason_code().to_string(),
    }
}

#[tokio::test]
async fn valid_v2_token_is_accepted() {
    let idp = TestIdp::start().await;
    let authenticator = ready_authenticator(&idp.settings()).await;
    let claims = idp.v2_claims();

    let caller = authenticator
        .verify_header(Some(&idp.bearer(&claims)))
        .await
        .expect("accepted");

    assert_eq!(caller.caller_app_id, PIM_APP_ID);
    assert_eq!(caller.issuer, v2_issuer(TENANT_ID));
    assert_eq!(caller.token_version, TokenVersion::V2);
    assert!(!caller.dev);
    assert_eq!(caller.expires_at, claims["exp"].as_i64().expect("exp"));
    assert_eq!(caller.subject.as_deref(), claims["sub"].as_str());
}

#[tokio::test]
async fn valid_v1_token_with_app_id_uri_audience_is_accepted() {
    let idp = TestIdp::start().await;
    let authenticator = ready_authenticator(&idp.settings()).await;

    let caller = authenticator
        .verify_header(Some(&idp.bearer(&idp.v1_claims())))
        .await
        .expect("accepted");

    assert_eq!(caller.caller_app_id, PIM_APP_ID);
    assert_eq!(caller.issuer, v1_issuer(TENANT_ID));
    assert_eq!(caller.token_version, TokenVersion::V1);
}

#[tokio::test]
async fn scheme_case_audience_arrays_caller_case_and_fractional_dates_are_tolerated() {
    let idp = TestIdp::start().await;
    let authenticator = ready_authenticator(&idp.settings()).await;
    let claims = idp.v2_claims();
    let claims = with(
        claims,
        "aud",
        json!(["https://graph.microsoft.com", CLIENT_ID]),
    );
    let claims = with(claims, "azp", json!(PIM_APP_ID.to_uppercase()));
    let claims = with(claims, "exp", json!(now() as f64 + 600.5));
    let token = idp.sign(&claims);

    let caller = authenticator
        .verify_header(Some(&format!("bEARER   {token}")))
        .await;

    assert!(caller.is_ok(), "{}", reason(caller));
}

struct Case {
    description: &'static str,
    authorization: Option<String>,
    expected: &'static str,
    /// Applied to the IdP's default settings before building the authenticator for this row.
    settings: fn(&mut AuthSettings),
}

fn case(description: &'static str, authorization: Option<String>, expected: &'static str) -> Case {
    Case {
        description,
        authorization,
        expected,
        settings: |_| {},
    }
}

fn bearer(token: impl std::fmt::Display) -> Option<String> {
    Some(format!("Bearer {token}"))
}

#[tokio::test]
async fn forged_and_wrong_tokens_are_rejected_with_their_reason() {
    let idp = TestIdp::start().await;
    let attacker = TestKey::generate("attacker-key");
    let attacker_server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": [attacker.jwk()] })))
        .expect(0)
        .named("attacker jwks named by jku / x5u")
        .mount(&attacker_server)
        .await;

    let v2 = idp.v2_claims();
    let v1 = idp.v1_claims();
    let kid = idp.key.kid.clone();
    let header_with = |alg: Algorithm, kid: &str| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_string());
        header
    };
    let good_token = idp.sign(&v2);
    let good_segments: Vec<&str> = good_token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        good_segments[0],
        b64url(
            with(
                v2.clone(),
                "azp",
                json!("00000000-0000-0000-0000-0000000000aa")
            )
            .to_string()
            .as_bytes()
        ),
        good_segments[2]
    );
    let mut jwk_header = header_with(Algorithm::RS256, &kid);
    jwk_header.jwk = Some(serde_json::from_value(attacker.jwk()).expect("jwk"));
    let mut jwk_header_own_kid = header_with(Algorithm::RS256, &attacker.kid);
    jwk_header_own_kid.jwk = Some(serde_json::from_value(attacker.jwk()).expect("jwk"));
    let mut jku_header = header_with(Algorithm::RS256, &attacker.kid);
    jku_header.jku = Some(format!("{}/keys", attacker_server.uri()));
    jku_header.x5u = Some(format!("{}/cert", attacker_server.uri()));
    let no_kid_header = Header::new(Algorithm::RS256);
    let oversized_claims = with(v2.clone(), "padding", json!("x".repeat(MAX_TOKEN_BYTES)));

    let cases = vec![
        case("no authorization header", None, "missing_header"),
        case(
            "basic scheme",
            Some("Basic dXNlcjpwYXNz".into()),
            "wrong_scheme",
        ),
        case(
            "bearer without a token",
            Some("Bearer".into()),
            "empty_token",
        ),
        case(
            "oversized garbage",
            bearer("a".repeat(MAX_TOKEN_BYTES + 1)),
            "token_too_large",
        ),
        case(
            "oversized but properly signed",
            bearer(idp.sign(&oversized_claims)),
            "token_too_large",
        ),
        case(
            "two segments",
            bearer(format!("{}.{}", good_segments[0], good_segments[1])),
            "malformed",
        ),
        case(
            "four segments",
            bearer(format!("{good_token}.AAAA")),
            "malformed",
        ),
        case(
            "bad base64 in header",
            bearer(format!("e%30.{}.{}", good_segments[1], good_segments[2])),
            "malformed",
        ),
        case(
            "header is not json",
            bearer(format!(
                "{}.{}.{}",
                b64url(b"not json"),
                good_segments[1],
                good_segments[2]
            )),
            "malformed",
        ),
        case(
            "claims are not a json object",
            bearer(idp.sign_with(&idp.key.header(), &"not an object", &idp.key.encoding_key)),
            "malformed_claims",
        ),
        case(
            "exp is a string",
            bearer(idp.sign(&with(v2.clone(), "exp", json!("tomorrow")))),
            "malformed_claims",
        ),
        case(
            "alg none, empty signature",
            bearer(raw_token(&json!({"alg": "none", "kid": kid}), &v2, b"")),
            "unsupported_algorithm",
        ),
        case(
            "alg none with a junk signature",
            bearer(raw_token(
                &json!({"alg": "none", "typ": "JWT", "kid": kid}),
                &v2,
                b"junk",
            )),
            "unsupported_algorithm",
        ),
        case(
            "hs256 with the public key as the hmac secret",
            bearer(idp.sign_with(
                &header_with(Algorithm::HS256, &kid),
                &v2,
                &EncodingKey::from_secret(idp.key.public_pem.as_bytes()),
            )),
            "unsupported_algorithm",
        ),
        case(
            "rs384",
            bearer(idp.sign_with(
                &header_with(Algorithm::RS384, &kid),
                &v2,
                &idp.key.encoding_key,
            )),
            "unsupported_algorithm",
        ),
        case(
            "ps256",
            bearer(idp.sign_with(
                &header_with(Algorithm::PS256, &kid),
                &v2,
                &idp.key.encoding_key,
            )),
            "unsupported_algorithm",
        ),
        case(
            "rs256 with an empty signature",
            bearer(format!("{}.{}.", good_segments[0], good_segments[1])),
            "bad_signature",
        ),
        case(
            "signed by another key under a known kid",
            bearer(idp.sign_with(&idp.key.header(), &v2, &attacker.encoding_key)),
            "bad_signature",
        ),
        case(
            "tampered payload with the original signature",
            bearer(&tampered),
            "bad_signature",
        ),
        case(
            "header jwk embeds the attacker key under a known kid",
            bearer(idp.sign_with(&jwk_header, &v2, &attacker.encoding_key)),
            "bad_signature",
        ),
        case(
            "header jwk embeds the attacker key under its own kid",
            bearer(idp.sign_with(&jwk_header_own_kid, &v2, &attacker.encoding_key)),
            "unknown_kid",
        ),
        case(
            "jku and x5u point at an attacker jwks",
            bearer(idp.sign_with(&jku_header, &v2, &attacker.encoding_key)),
            "unknown_kid",
        ),
        case(
            "unknown kid, even after a refresh",
            bearer(idp.sign_with(
                &header_with(Algorithm::RS256, "not-in-jwks"),
                &v2,
                &idp.key.encoding_key,
            )),
            "unknown_kid",
        ),
        case(
            "missing kid",
            bearer(idp.sign_with(&no_kid_header, &v2, &idp.key.encoding_key)),
            "missing_kid",
        ),
        case(
            "dev kid while dev mode is off",
            bearer(idp.sign_with(
                &header_with(Algorithm::RS256, DEV_KEY_ID),
                &v2,
                &idp.key.encoding_key,
            )),
            "dev_mode_off",
        ),
        case(
            "expired",
            bearer(idp.sign(&with(v2.clone(), "exp", json!(now() - 3600)))),
            "expired",
        ),
        case(
            "expired beyond the skew",
            bearer(idp.sign(&with(v2.clone(), "exp", json!(now() - 61)))),
            "expired",
        ),
        case(
            "missing exp",
            bearer(idp.sign(&without(v2.clone(), "exp"))),
            "missing_exp",
        ),
        case(
            "nbf in the future",
            bearer(idp.sign(&with(v2.clone(), "nbf", json!(now() + 3600)))),
            "not_yet_valid",
        ),
        case(
            "iat in the future",
            bearer(idp.sign(&with(v2.clone(), "iat", json!(now() + 3600)))),
            "issued_in_future",
        ),
        case(
            "wrong issuer",
            bearer(idp.sign(&with(
                v2.clone(),
                "iss",
                json!("https://evil.example.com/v2.0"),
            ))),
            "wrong_issuer",
        ),
        case(
            "missing issuer",
            bearer(idp.sign(&without(v2.clone(), "iss"))),
            "missing_iss",
        ),
        case(
            "issuer with a trailing slash added",
            bearer(idp.sign(&with(
                v2.clone(),
                "iss",
                json!(format!("{}/", v2_issuer(TENANT_ID))),
            ))),
            "wrong_issuer",
        ),
        case(
            "another tenant's issuer",
            bearer(idp.sign(&with(
                with(v2.clone(), "iss", json!(v2_issuer(OTHER_TENANT_ID))),
                "tid",
                json!(OTHER_TENANT_ID),
            ))),
            "wrong_issuer",
        ),
        Case {
            description: "v1 issuer when only v2 is enabled",
            authorization: bearer(idp.sign(&v1)),
            expected: "wrong_issuer",
            settings: |settings| settings.token_versions = vec![TokenVersion::V2],
        },
        case(
            "dev issuer signed by an entra key while dev mode is off",
            bearer(idp.sign(&with(v2.clone(), "iss", json!(DEV_ISSUER)))),
            "wrong_issuer",
        ),
        Case {
            description: "dev issuer signed by an entra key while dev mode is on",
            authorization: bearer(idp.sign(&with(v2.clone(), "iss", json!(DEV_ISSUER)))),
            expected: "wrong_issuer",
            settings: |settings| settings.dev_mode = true,
        },
        case(
            "tid of another tenant",
            bearer(idp.sign(&with(v2.clone(), "tid", json!(OTHER_TENANT_ID)))),
            "tenant_mismatch",
        ),
        case(
            "ver 1.0 on a v2 issuer",
            bearer(idp.sign(&with(v2.clone(), "ver", json!("1.0")))),
            "version_mismatch",
        ),
        case(
            "wrong audience",
            bearer(idp.sign(&with(v2.clone(), "aud", json!("api://someone-else")))),
            "wrong_audience",
        ),
        case(
            "audience array without a configured value",
            bearer(idp.sign(&with(v2.clone(), "aud", json!(["api://a", "api://b"])))),
            "wrong_audience",
        ),
        case(
            "missing audience",
            bearer(idp.sign(&without(v2.clone(), "aud"))),
            "missing_aud",
        ),
        case(
            "wrong azp",
            bearer(idp.sign(&with(
                v2.clone(),
                "azp",
                json!("99999999-9999-9999-9999-999999999999"),
            ))),
            "caller_not_allowed",
        ),
        case(
            "missing azp",
            bearer(idp.sign(&without(v2.clone(), "azp"))),
            "missing_caller",
        ),
        case(
            "v1 token with azp but no appid",
            bearer(idp.sign(&with(
                without(v1.clone(), "appid"),
                "azp",
                json!(PIM_APP_ID),
            ))),
            "missing_caller",
        ),
    ];
    assert!(cases.len() >= 18);

    for case in cases {
        let mut settings = idp.settings();
        (case.settings)(&mut settings);
        let authenticator = ready_authenticator(&settings).await;
        let result = authenticator
            .verify_header(case.authorization.as_deref())
            .await;
        if let Err(error) = &result
            && let Some(authorization) = &case.authorization
            && let Some(token) = authorization.split_whitespace().nth(1)
        {
            let message = error.to_string();
            for segment in token.split('.').filter(|segment| segment.len() > 8) {
                assert!(
                    !message.contains(segment),
                    "{}: error message leaks the token",
                    case.description
                );
            }
        }
        assert_eq!(reason(result), case.expected, "{}", case.description);
    }
    attacker_server.verify().await;
}

#[tokio::test]
async fn rotated_key_is_used_without_restart_and_removed_key_stops_working() {
    let mut idp = TestIdp::start().await;
    let authenticator = ready_authenticator(&idp.settings()).await;
    let old_token = idp.bearer(&idp.v2_claims());
    assert!(authenticator.verify_header(Some(&old_token)).await.is_ok());

    let _old_key = idp.rotate();
    let new_token = idp.bearer(&idp.v2_claims());

    let accepted = authenticator.verify_header(Some(&new_token)).await;
    assert!(
        accepted.is_ok(),
        "token under the new kid: {}",
        reason(accepted)
    );
    assert_eq!(
        idp.jwks_fetches().await,
        2,
        "the unknown kid triggered one refresh"
    );
    assert_eq!(
        reason(authenticator.verify_header(Some(&old_token)).await),
        "unknown_kid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_unknown_kids_causes_a_single_jwks_fetch() {
    let idp = TestIdp::start_expecting_jwks_fetches(1).await;
    let mut settings = idp.settings();
    settings.jwks_min_refresh_interval_seconds = 30;
    let authenticator =
        Authenticator::new(&settings, reqwest::Client::new(), &LOOPBACK).expect("valid settings");
    let claims = idp.v2_claims();

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some(uuid::Uuid::now_v7().to_string());
            let token = format!(
                "Bearer {}",
                idp.sign_with(&header, &claims, &idp.key.encoding_key)
            );
            let authenticator = Arc::clone(&authenticator);
            tokio::spawn(async move { authenticator.verify_header(Some(&token)).await.map(|_| ()) })
        })
        .collect();
    for task in tasks {
        assert_eq!(reason(task.await.expect("task")), "unknown_kid");
    }

    // The one fetch loaded the real key, so a good token needs no further fetch.
    assert!(
        authenticator
            .verify_header(Some(&idp.bearer(&claims)))
            .await
            .is_ok()
    );
    idp.server.verify().await;
}

#[tokio::test]
async fn unknown_kids_within_the_refresh_floor_cause_no_fetch_at_all() {
    let idp = TestIdp::start().await;
    let mut settings = idp.settings();
    settings.jwks_min_refresh_interval_seconds = 30;
    let authenticator = ready_authenticator(&settings).await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("forged".into());
    let token = format!(
        "Bearer {}",
        idp.sign_with(&header, &idp.v2_claims(), &idp.key.encoding_key)
    );

    for _ in 0..5 {
        assert_eq!(
            reason(authenticator.verify_header(Some(&token)).await),
            "unknown_kid"
        );
    }

    assert_eq!(idp.jwks_fetches().await, 1);
}

#[tokio::test]
async fn failed_refresh_keeps_the_previous_keys() {
    let idp = TestIdp::start().await;
    let authenticator = ready_authenticator(&idp.settings()).await;
    let token = idp.bearer(&idp.v2_claims());
    let odd_keys_only = json!({ "keys": [
        { "kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA" },
        { "kty": "RSA", "use": "enc", "kid": "enc", "n": idp.key.n, "e": idp.key.e },
        { "kty": "RSA", "alg": "RS512", "kid": "rs512", "n": idp.key.n, "e": idp.key.e },
    ]});
    let failures = [
        (JwksBehaviour::Status(500), "jwks_failed"),
        (
            JwksBehaviour::RawBody("{\"keys\": [ garbage".into()),
            "jwks_failed",
        ),
        (JwksBehaviour::RawBody("[]".into()), "jwks_failed"),
        (JwksBehaviour::Serve(json!({ "keys": [] })), "jwks_failed"),
        (JwksBehaviour::Serve(odd_keys_only), "jwks_failed"),
        (
            JwksBehaviour::RawBody(format!(
                "{{\"keys\": [], \"pad\": \"{}\"}}",
                "x".repeat(1024 * 1024)
            )),
            "jwks_failed",
        ),
    ];

    for (behaviour, expected) in failures {
        idp.set_jwks(behaviour);
        let error = authenticator
            .refresh_keys()
            .await
            .expect_err("refresh fails");
        assert_eq!(error.reason_code(), expected, "{error}");
        assert!(!error.is_token_rejection());
        assert!(
            authenticator.verify_header(Some(&token)).await.is_ok(),
            "old key still works after: {error}"
        );
    }
}

#[tokio::test]
async fn odd_keys_in_the_jwks_do_not_break_the_set() {
    let idp = TestIdp::start().await;
    let mut good = idp.key.jwk();
    good["alg"] = json!("RS256");
    idp.set_jwks(JwksBehaviour::Serve(json!({ "keys": [
        { "kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA" },
        { "kty": "RSA", "kid": 42, "n": idp.key.n, "e": idp.key.e },
        { "kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB" },
        { "kty": "RSA", "kid": "no-modulus", "e": "AQAB" },
        "not even an object",
        good,
    ]})));
    let authenticator = Authenticator::new(&idp.settings(), reqwest::Client::new(), &LOOPBACK)
        .expect("valid settings");

    assert_eq!(authenticator.refresh_keys().await.expect("refresh"), 1);
    assert!(
        authenticator
            .verify_header(Some(&idp.bearer(&idp.v2_claims())))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn is_ready_turns_true_after_the_first_fetch_and_tokens_wait_for_it() {
    let idp = TestIdp::start().await;
    idp.set_jwks(JwksBehaviour::Status(503));
    let authenticator = Authenticator::new(&idp.settings(), reqwest::Client::new(), &LOOPBACK)
        .expect("valid settings");
    let token = idp.bearer(&idp.v2_claims());

    assert!(!authenticator.is_ready());
    let error = authenticator
        .verify_header(Some(&token))
        .await
        .expect_err("no keys yet");
    assert_eq!(error.reason_code(), "keys_unavailable");
    assert!(!error.is_token_rejection());

    idp.set_jwks(JwksBehaviour::Serve(json!({ "keys": [idp.key.jwk()] })));
    authenticator.refresh_keys().await.expect("refresh");
    assert!(authenticator.is_ready());
    assert!(authenticator.verify_header(Some(&token)).await.is_ok());
}

#[tokio::test]
async fn background_refresher_retries_until_the_first_fetch_succeeds() {
    let idp = TestIdp::start().await;
    idp.set_jwks(JwksBehaviour::Status(500));
    let authenticator = Authenticator::new(&idp.settings(), reqwest::Client::new(), &LOOPBACK)
        .expect("valid settings");
    let refresher = authenticator.spawn_refresher();

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!authenticator.is_ready());
    idp.set_jwks(JwksBehaviour::Serve(json!({ "keys": [idp.key.jwk()] })));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !authenticator.is_ready() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert!(authenticator.is_ready());
    assert!(idp.jwks_fetches().await >= 2);
    refresher.abort();
}

#[tokio::test]
async fn plain_http_metadata_to_a_non_loopback_host_is_refused() {
    let settings = AuthSettings {
        tenant_id: TENANT_ID.into(),
        audiences: vec![CLIENT_ID.into()],
        metadata_url:
            "http://login.microsoftonline.com/{tenant_id}/v2.0/.well-known/openid-configuration"
                .into(),
        ..AuthSettings::default()
    };

    let error = Authenticator::new(&settings, reqwest::Client::new(), &LOOPBACK)
        .err()
        .expect("refused");

    assert_eq!(error.reason_code(), "invalid_config");
    assert!(error.to_string().contains("metadata_url"), "{error}");
}

#[tokio::test]
async fn plain_http_jwks_uri_to_a_non_loopback_host_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/{TENANT_ID}/v2.0/.well-known/openid-configuration"
        )))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "jwks_uri": "http://keys.example.com/keys" })),
        )
        .mount(&server)
        .await;
    let settings = AuthSettings {
        tenant_id: TENANT_ID.into(),
        audiences: vec![CLIENT_ID.into()],
        metadata_url: format!(
            "{}/{{tenant_id}}/v2.0/.well-known/openid-configuration",
            server.uri()
        ),
        ..AuthSettings::default()
    };
    let authenticator =
        Authenticator::new(&settings, reqwest::Client::new(), &LOOPBACK).expect("valid settings");

    let error = authenticator.refresh_keys().await.expect_err("refused");

    assert_eq!(error.reason_code(), "discovery_failed");
    assert!(!authenticator.is_ready());
}

#[tokio::test]
async fn new_reports_every_configuration_problem_at_once() {
    let settings = AuthSettings {
        tenant_id: String::new(),
        audiences: vec![],
        allowed_callers: vec![],
        jwks_refresh_seconds: 0,
        ..AuthSettings::default()
    };

    let error = Authenticator::new(&settings, reqwest::Client::new(), &LOOPBACK)
        .err()
        .expect("refused");

    let message = error.to_string();
    for key in [
        "tenant_id",
        "audiences",
        "allowed_callers",
        "jwks_refresh_seconds",
    ] {
        assert!(message.contains(key), "{key} missing from: {message}");
    }
}

#[tokio::test]
async fn tenant_given_as_a_domain_name_is_refused() {
    let settings = AuthSettings {
        tenant_id: "contoso.onmicrosoft.com".into(),
        audiences: vec![CLIENT_ID.into()],
        ..AuthSettings::default()
    };

    let error = Authenticator::new(&settings, reqwest::Client::new(), &LOOPBACK)
        .err()
        .expect("refused");

    assert!(error.to_string().contains("tenant_id"), "{error}");
}

fn dev_settings() -> AuthSettings {
    AuthSettings {
        audiences: vec![CLIENT_ID.into(), APP_ID_URI.into()],
        dev_mode: true,
        ..AuthSettings::default()
    }
}

#[tokio::test]
async fn dev_token_is_accepted_when_dev_mode_is_on() {
    let settings = dev_settings();
    let authenticator =
        Authenticator::new(&settings, reqwest::Client::new(), &LOOPBACK).expect("valid settings");
    let options = DevTokenOptions {
        subject: Some("alice@contoso.com".into()),
        ..DevTokenOptions::default()
    };
    let token = issue_token(&settings, &options).expect("dev token");

    let caller = authenticator
        .verify_header(Some(&format!("Bearer {token}")))
        .await
        .expect("accepted");

    assert!(authenticator.is_ready(), "dev mode needs no fetch");
    assert!(caller.dev);
    assert_eq!(caller.issuer, DEV_ISSUER);
    assert_eq!(caller.caller_app_id, PIM_APP_ID);
    assert_eq!(caller.subject.as_deref(), Some("alice@contoso.com"));
    assert!((caller.expires_at - now() - 3600).abs() < 10);
}

#[tokio::test]
async fn dev_token_is_rejected_when_dev_mode_is_off() {
    let idp = TestIdp::start().await;
    let authenticator = ready_authenticator(&idp.settings()).await;
    let token = issue_token(&idp.settings(), &DevTokenOptions::default()).expect("dev token");

    let result = authenticator
        .verify_header(Some(&format!("Bearer {token}")))
        .await;

    assert_eq!(reason(result), "dev_mode_off");
    assert_eq!(
        idp.jwks_fetches().await,
        1,
        "a dev kid never triggers a jwks refresh"
    );
}

#[tokio::test]
async fn dev_token_for_an_unconfigured_audience_is_rejected() {
    let settings = dev_settings();
    let authenticator =
        Authenticator::new(&settings, reqwest::Client::new(), &LOOPBACK).expect("valid settings");
    let options = DevTokenOptions {
        audience: Some("api://someone-else".into()),
        ..DevTokenOptions::default()
    };
    let token = issue_token(&settings, &options).expect("dev token");

    let result = authenticator
        .verify_header(Some(&format!("Bearer {token}")))
        .await;

    assert_eq!(reason(result), "wrong_audience");
}

#[tokio::test]
async fn dev_tokens_from_an_unlisted_caller_or_already_expired_are_rejected() {
    let settings = dev_settings();
    let authenticator =
        Authenticator::new(&settings, reqwest::Client::new(), &LOOPBACK).expect("valid settings");
    let stranger = DevTokenOptions {
        caller: Some(OTHER_TENANT_ID.into()),
        ..DevTokenOptions::default()
    };
    let expired = DevTokenOptions {
        expires_in_seconds: -3600,
        ..DevTokenOptions::default()
    };

    for (options, expected) in [(stranger, "caller_not_allowed"), (expired, "expired")] {
        let token = issue_token(&settings, &options).expect("dev token");
        assert_eq!(
            reason(
                authenticator
                    .verify_header(Some(&format!("Bearer {token}")))
                    .await
            ),
            expected
        );
    }
}

#[tokio::test]
async fn dev_key_never_vouches_for_an_entra_issuer() {
    let idp = TestIdp::start().await;
    let mut settings = idp.settings();
    settings.dev_mode = true;
    let authenticator = ready_authenticator(&settings).await;
    let dev_key = EncodingKey::from_rsa_pem(include_str!("../../src/auth/dev_key.pem").as_bytes())
        .expect("dev key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(DEV_KEY_ID.into());

    let token = idp.sign_with(&header, &idp.v2_claims(), &dev_key);
    let result = authenticator
        .verify_header(Some(&format!("Bearer {token}")))
        .await;

    assert_eq!(reason(result), "wrong_issuer");
}

#[tokio::test]
async fn dev_only_mode_needs_no_tenant_and_fetches_nothing() {
    let settings = dev_settings();
    let authenticator =
        Authenticator::new(&settings, reqwest::Client::new(), &LOOPBACK).expect("valid settings");

    let refresher = authenticator.spawn_refresher();

    tokio::time::timeout(Duration::from_secs(5), refresher)
        .await
        .expect("refresher ends")
        .expect("no panic");
    assert!(authenticator.is_ready());
}

// ---- The verified-token cache (`auth.token_cache_capacity`) -----------------------------------
// `signature_checks` counts real RS256 verifications, so each test sees whether an answer came from
// the cache; `verify_header_at` moves the clock across `exp` without sleeping.

/// A v2 token issued at `issued_at` that expires `lifetime` seconds later, and its claims.
fn token_at(idp: &TestIdp, issued_at: i64, lifetime: i64) -> (String, Value) {
    let claims = idp.v2_claims();
    let claims = with(claims, "iat", json!(issued_at));
    let claims = with(claims, "nbf", json!(issued_at));
    let claims = with(claims, "exp", json!(issued_at + lifetime));
    (idp.bearer(&claims), claims)
}

/// The recorder is thread-local and this test runs on a current-thread runtime, so the cache's
/// counters land in it.
#[tokio::test(flavor = "current_thread")]
async fn repeated_token_is_verified_once_and_then_served_from_the_cache() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let idp = TestIdp::start().await;
    let authenticator = ready_authenticator(&idp.settings()).await;
    let token = idp.bearer(&idp.v2_claims());

    let first = authenticator
        .verify_header(Some(&token))
        .await
        .expect("accepted");
    let second = authenticator
        .verify_header(Some(&token))
        .await
        .expect("accepted");
    let third = authenticator
        .verify_header(Some(&token.replacen("Bearer", "bearer ", 1)))
        .await
        .expect("accepted");

    assert_eq!(first, second);
    assert_eq!(first, third);
    assert_eq!(authenticator.signature_checks(), 1, "one RS256 check");
    assert_eq!(authenticator.cached_tokens(), 1);
    let text = handle.render();
    for line in [
        r#"pimgate_cache_requests_total{cache="token",result="miss"} 1"#,
        r#"pimgate_cache_requests_total{cache="token",result="hit"} 2"#,
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

#[tokio::test]
async fn cached_token_is_rejected_from_the_second_the_uncached_path_would_reject_it() {
    let idp = TestIdp::start().await;
    let authenticator = ready_authenticator(&idp.settings()).await;
    let skew = 60;
    let issued_at = now();
    let (token, _) = token_at(&idp, issued_at, 30);
    let expires_at = issued_at + 30;

    assert!(
        authenticator
            .verify_header_at(Some(&token), issued_at)
            .await
            .is_ok()
    );
    let last_second = authenticator
        .verify_header_at(Some(&token), expires_at + skew)
        .await;
    assert!(last_second.is_ok(), "{}", reason(last_second));
    assert_eq!(authenticator.signature_checks(), 1, "served from the cache");

    let past = authenticator
        .verify_header_at(Some(&token), expires_at + skew + 1)
        .await;
    assert_eq!(reason(past), "expired");
    let again = authenticator
        .verify_header_at(Some(&token), expires_at + skew + 2)
        .await;
    assert_eq!(reason(again), "expired");
    assert_eq!(
        authenticator.signature_checks(),
        3,
        "an expired token goes through the full check every time"
    );
}

#[tokio::test]
async fn cached_token_is_not_served_before_its_nbf_even_if_the_clock_steps_back() {
    let idp = TestIdp::start().await;
    let authenticator = ready_authenticator(&idp.settings()).await;
    let skew = 60;
    let issued_at = now();
    let (token, _) = token_at(&idp, issued_at, 3600);

    assert!(
        authenticator
            .verify_header_at(Some(&token), issued_at)
            .await
            .is_ok()
    );
    let earliest = authenticator
        .verify_header_at(Some(&token), issued_at - skew)
        .await;
    assert!(earliest.is_ok(), "{}", reason(earliest));
    let too_early = authenticator
        .verify_header_at(Some(&token), issued_at - skew - 1)
        .await;

    assert_eq!(reason(too_early), "not_yet_valid");
}

#[tokio::test]
async fn forged_copies_of_a_cached_token_are_verified_and_rejected_every_time() {
    let idp = TestIdp::start().await;
    let authenticator = ready_authenticator(&idp.settings()).await;
    let claims = idp.v2_claims();
    let genuine = idp.sign(&claims);
    assert!(
        authenticator
            .verify_header(Some(&format!("Bearer {genuine}")))
            .await
            .is_ok()
    );
    let attacker = TestKey::generate("attacker-key");
    let same_claims_wrong_key = idp.sign_with(&idp.key.header(), &claims, &attacker.encoding_key);
    let (signed_part, _signature) = genuine.rsplit_once('.').expect("three segments");
    let zeroed_signature = format!("{signed_part}.{}", b64url(&[0u8; 256]));

    for forged in [&same_claims_wrong_key, &zeroed_signature] {
        for attempt in 0..2 {
            let result = authenticator
                .verify_header(Some(&format!("Bearer {forged}")))
                .await;
            assert_eq!(reason(result), "bad_signature", "attempt {attempt}");
        }
    }

    assert_eq!(authenticator.signature_checks(), 5, "1 genuine + 4 forged");
    assert_eq!(authenticator.cached_tokens(), 1, "only the genuine one");
}

#[tokio::test]
async fn cached_token_is_rejected_once_its_key_leaves_the_jwks() {
    let mut idp = TestIdp::start().await;
    let authenticator = ready_authenticator(&idp.settings()).await;
    let old_token = idp.bearer(&idp.v2_claims());
    assert!(authenticator.verify_header(Some(&old_token)).await.is_ok());

    authenticator.refresh_keys().await.expect("same keys again");
    assert!(authenticator.verify_header(Some(&old_token)).await.is_ok());
    assert_eq!(
        authenticator.signature_checks(),
        1,
        "a refresh that keeps the key keeps the cached token"
    );

    let _old_key = idp.rotate();
    authenticator.refresh_keys().await.expect("rotated keys");
    let result = authenticator.verify_header(Some(&old_token)).await;

    assert_eq!(reason(result), "unknown_kid");
}

#[tokio::test]
async fn cached_token_is_rejected_when_its_kid_is_reused_for_another_key() {
    let idp = TestIdp::start().await;
    let authenticator = ready_authenticator(&idp.settings()).await;
    let token = idp.bearer(&idp.v2_claims());
    assert!(authenticator.verify_header(Some(&token)).await.is_ok());

    let replacement = TestKey::generate(&idp.key.kid);
    idp.set_jwks(JwksBehaviour::Serve(json!({ "keys": [replacement.jwk()] })));
    authenticator.refresh_keys().await.expect("replaced key");
    let result = authenticator.verify_header(Some(&token)).await;

    assert_eq!(reason(result), "bad_signature");
}

#[tokio::test]
async fn token_cache_capacity_zero_verifies_every_request() {
    let idp = TestIdp::start().await;
    let mut settings = idp.settings();
    settings.token_cache_capacity = 0;
    let authenticator = ready_authenticator(&settings).await;
    let token = idp.bearer(&idp.v2_claims());

    for _ in 0..3 {
        assert!(authenticator.verify_header(Some(&token)).await.is_ok());
    }

    assert_eq!(authenticator.signature_checks(), 3);
    assert_eq!(authenticator.cached_tokens(), 0);
}

#[tokio::test]
async fn token_cache_never_holds_more_than_its_capacity() {
    let idp = TestIdp::start().await;
    let mut settings = idp.settings();
    settings.token_cache_capacity = 4;
    let authenticator = ready_authenticator(&settings).await;

    for index in 0..12 {
        let claims = with(idp.v2_claims(), "sub", json!(format!("user-{index}")));
        assert!(
            authenticator
                .verify_header(Some(&idp.bearer(&claims)))
                .await
                .is_ok()
        );
    }

    let held = authenticator.cached_tokens();
    assert!((1..=4).contains(&held), "{held} tokens held, capacity 4");
}

#[tokio::test]
async fn dev_tokens_are_cached_too() {
    let settings = dev_settings();
    let authenticator =
        Authenticator::new(&settings, reqwest::Client::new(), &LOOPBACK).expect("valid settings");
    let token = issue_token(&settings, &DevTokenOptions::default()).expect("dev token");

    for _ in 0..2 {
        assert!(
            authenticator
                .verify_header(Some(&format!("Bearer {token}")))
                .await
                .is_ok()
        );
    }

    assert_eq!(authenticator.signature_checks(), 1);
}
