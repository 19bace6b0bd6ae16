//! Numbers an upstream sends (`Retry-After`, `ratelimit-reset`, `expires_in`) and the durations
//! pimgate derives from them or from its settings (circuit cooldown, cache TTLs) are capped and
//! saturated: a hostile or broken upstream answering `u64::MAX` gets a bounded wait or lifetime,
//! never a panic in `Duration`/`Instant` arithmetic. Real HTTP on loopback (wiremock), tokens
//! really signed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::auth as common_auth;

use std::sync::LazyLock;
use std::time::Duration;

use pimgate::connectors::BuildContext;
use pimgate::connectors::cache::{CacheSettings, TtlCache};
use pimgate::connectors::graph::{Graph, GraphSettings};
use pimgate::connectors::http::{CircuitSettings, Fetched, RetrySettings, Upstream, UpstreamError};
use pimgate::connectors::secrets::SecretRef;
use pimgate::connectors::servicenow::{ServiceNow, ServiceNowAuth, ServiceNowSettings};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::time::Instant;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const HUGE: &str = "18446744073709551615";
const TENANT: &str = "11111111-2222-4333-8444-555555555555";
const CLIENT_ID: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
const ALICE: &str = "5b2a9c1e-2222-4d3e-8f40-1a2b3c4d5e6f";
const BOB: &str = "6c3b0d2f-3333-4e4f-9a51-2b3c4d5e6f70";
const CHANGE: &str = "CHG0031337";
const OTHER_CHANGE: &str = "CHG0031338";

static ENTRA_KEY: LazyLock<common_auth::TestKey> =
    LazyLock::new(|| common_auth::TestKey::generate("entra-numbers-key"));

fn context() -> BuildContext {
    BuildContext {
        http: reqwest::Client::new(),
        tenant_id: TENANT.to_string(),
    }
}

fn deadline(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds)
}

// ---------------------------------------------------------------------------------------------
// Retry-After and ratelimit-reset
// ---------------------------------------------------------------------------------------------

fn upstream(circuit: CircuitSettings) -> Upstream {
    Upstream::with_settings(
        "testsys",
        reqwest::Client::new(),
        Duration::from_secs(2),
        RetrySettings {
            max_attempts: 3,
            backoff_base_ms: 10,
            backoff_max_ms: 40,
        },
        circuit,
    )
}

async fn get_thing(
    upstream: &Upstream,
    server: &MockServer,
) -> Result<Fetched<Value>, UpstreamError> {
    let request = upstream.client().get(format!("{}/thing", server.uri()));
    let (result, _) = upstream
        .get_json::<Value>(request, "GET /thing", deadline(3))
        .await;
    result
}

async fn answer_429_with(
    header: &str,
    value: &str,
) -> (Result<Fetched<Value>, UpstreamError>, Duration, usize) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/thing"))
        .respond_with(ResponseTemplate::new(429).insert_header(header, value))
        .mount(&server)
        .await;
    let started = Instant::now();
    let result = get_thing(&upstream(CircuitSettings::default()), &server).await;
    let requests = server.received_requests().await.unwrap_or_default().len();
    (result, started.elapsed(), requests)
}

#[tokio::test]
async fn a_retry_after_of_u64_max_seconds_ends_the_call_as_rate_limited_without_a_panic() {
    let (result, elapsed, requests) = answer_429_with("retry-after", HUGE).await;
    assert_eq!(
        result,
        Err(UpstreamError::RateLimited {
            connector: "testsys"
        })
    );
    // The capped wait is still longer than the deadline: no retry, an answer at once.
    assert_eq!(requests, 1);
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

#[tokio::test]
async fn a_ratelimit_reset_of_u64_max_seconds_ends_the_call_as_rate_limited_without_a_panic() {
    let (result, elapsed, requests) = answer_429_with("ratelimit-reset", HUGE).await;
    assert!(matches!(result, Err(UpstreamError::RateLimited { .. })));
    assert_eq!(requests, 1);
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

#[tokio::test]
async fn a_retry_after_date_in_the_year_9999_is_waited_for_no_longer_than_the_cap() {
    let (result, elapsed, requests) =
        answer_429_with("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT").await;
    assert!(matches!(result, Err(UpstreamError::RateLimited { .. })));
    assert_eq!(requests, 1);
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

#[tokio::test]
async fn a_zero_retry_after_is_retried_at_once_within_the_attempt_limit() {
    let (result, _, requests) = answer_429_with("retry-after", "0").await;
    assert!(matches!(result, Err(UpstreamError::RateLimited { .. })));
    assert_eq!(requests, 3);
}

// ---------------------------------------------------------------------------------------------
// Circuit cooldown and cache TTLs from settings
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_circuit_cooldown_of_u64_max_milliseconds_opens_the_circuit_without_a_panic() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/thing"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    let upstream = upstream(CircuitSettings {
        failure_threshold: 1,
        cooldown_ms: u64::MAX,
    });
    let first = get_thing(&upstream, &server).await;
    assert!(matches!(
        first,
        Err(UpstreamError::Status { status: 500, .. })
    ));
    assert!(upstream.circuit_is_open());
    let second = get_thing(&upstream, &server).await;
    assert!(matches!(second, Err(UpstreamError::CircuitOpen { .. })));
}

#[tokio::test]
async fn cache_ttls_of_u64_max_seconds_store_answers_without_a_panic() {
    let cache: TtlCache<u32> = TtlCache::new(CacheSettings {
        ttl_seconds: u64::MAX,
        negative_ttl_seconds: u64::MAX,
        capacity: 10,
    });
    let (_, _) = cache
        .get_or_fetch("a", async { Ok(Fetched::Found(1)) })
        .await;
    let (_, _) = cache
        .get_or_fetch("b", async { Ok(Fetched::NotFound) })
        .await;
    let (found, cached) = cache
        .get_or_fetch("a", async { Ok(Fetched::Found(2)) })
        .await;
    assert_eq!((found, cached), (Ok(Fetched::Found(1)), true));
    let (missing, cached) = cache
        .get_or_fetch("b", async { Ok(Fetched::Found(2)) })
        .await;
    assert_eq!((missing, cached), (Ok(Fetched::NotFound), true));
}

// ---------------------------------------------------------------------------------------------
// Microsoft Graph token lifetimes
// ---------------------------------------------------------------------------------------------

fn app_token(label: &str) -> String {
    let claims = json!({
        "aud": "https://graph.microsoft.com",
        "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": 1_795_000_000_i64,
        "nbf": 1_795_000_000_i64,
        "exp": 4_102_444_800_i64,
        "appid": CLIENT_ID,
        "idtyp": "app",
        "roles": ["User.Read.All", "User-LifeCycleInfo.Read.All"],
        "tid": TENANT,
        "uti": label,
        "ver": "1.0",
    });
    jsonwebtoken::encode(&ENTRA_KEY.header(), &claims, &ENTRA_KEY.encoding_key).unwrap()
}

fn graph_user(id: &str) -> Value {
    json!({
        "id": id,
        "userPrincipalName": format!("{id}@contoso.com"),
        "mail": format!("{id}@contoso.com"),
        "displayName": "Someone",
        "accountEnabled": true,
        "employeeLeaveDateTime": null,
        "employeeType": "Employee",
        "department": "Operations",
    })
}

/// A Graph stand-in whose token endpoint answers `expires_in` (and `ext_expires_in`) as given;
/// `expected_token_calls` is checked when the server drops.
async fn graph_with_lifetime(expires_in: Value, expected_token_calls: u64) -> (MockServer, Graph) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": app_token("token"),
        })))
        .expect(expected_token_calls)
        .mount(&server)
        .await;
    for id in [ALICE, BOB] {
        Mock::given(method("GET"))
            .and(path(format!("/v1.0/users/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(graph_user(id)))
            .mount(&server)
            .await;
    }
    let settings = GraphSettings {
        client_id: Some(CLIENT_ID.to_string()),
        client_secret: Some(SecretRef {
            env: Some("PATH".to_string()),
            file: None,
        }),
        authority_url: Some(server.uri()),
        graph_url: Some(server.uri()),
        ..GraphSettings::default()
    };
    let graph = Graph::new(&settings, &context()).unwrap();
    (server, graph)
}

async fn look_up_alice_and_bob(graph: &Graph) {
    for id in [ALICE, BOB] {
        let (result, calls) = graph.user(id, deadline(5)).await;
        assert!(
            matches!(result, Ok(Fetched::Found(_))),
            "{id}: {result:?} {calls:?}"
        );
    }
}

#[tokio::test]
async fn a_graph_expires_in_of_u64_max_is_capped_and_the_token_is_reused_without_a_panic() {
    let (_server, graph) = graph_with_lifetime(json!(u64::MAX), 1).await;
    look_up_alice_and_bob(&graph).await;
}

#[tokio::test]
async fn a_graph_expires_in_of_u64_max_as_a_string_is_capped_too() {
    let (_server, graph) = graph_with_lifetime(json!(HUGE), 1).await;
    look_up_alice_and_bob(&graph).await;
}

#[tokio::test]
async fn a_graph_expires_in_of_zero_is_raised_to_the_floor_so_the_token_is_reused() {
    let (_server, graph) = graph_with_lifetime(json!(0), 1).await;
    look_up_alice_and_bob(&graph).await;
}

#[tokio::test]
async fn a_graph_expires_in_that_is_negative_or_fractional_is_read_within_the_bounds() {
    let (_server, graph) = graph_with_lifetime(json!(-5), 1).await;
    look_up_alice_and_bob(&graph).await;
    let (_server, graph) = graph_with_lifetime(json!(3599.5), 1).await;
    look_up_alice_and_bob(&graph).await;
}

// ---------------------------------------------------------------------------------------------
// ServiceNow OAuth token lifetimes and failures
// ---------------------------------------------------------------------------------------------

fn servicenow(base_url: &str) -> (TempDir, ServiceNow) {
    let dir = TempDir::new().unwrap();
    let secret = dir.path().join("sn-client-secret");
    std::fs::write(&secret, "client-s3cret\n").unwrap();
    let settings = ServiceNowSettings {
        base_url: Some(base_url.to_string()),
        auth: ServiceNowAuth::Oauth,
        client_id: Some("be3aeb583ace210011c15b24a43e25d8".to_string()),
        client_secret: Some(SecretRef {
            env: None,
            file: Some(secret),
        }),
        ..Default::default()
    };
    (dir, ServiceNow::new(&settings, &context()).unwrap())
}

fn change(number: &str) -> Value {
    json!({ "result": [{
        "number": number, "state": "-1",
        "assigned_to": "681ccaf9c0a8016400b98a06818d57c7",
        "assigned_to.email": "ada.lovelace@contoso.com", "assigned_to.user_name": "ada.lovelace",
        "requested_by": "", "requested_by.email": "", "requested_by.user_name": "",
        "opened_by": "", "opened_by.email": "", "opened_by.user_name": "",
        "start_date": "2026-11-24 17:00:00", "end_date": "2026-11-24 22:00:00"
    }]})
}

fn tables() -> Vec<String> {
    vec!["change_request".to_string()]
}

async fn servicenow_with_token_answer(
    token: ResponseTemplate,
    expected_token_calls: u64,
) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .respond_with(token)
        .expect(expected_token_calls)
        .mount(&server)
        .await;
    mount_changes(&server).await;
    server
}

/// The Table API answering each of [`CHANGE`] and [`OTHER_CHANGE`] with its own record.
async fn mount_changes(server: &MockServer) {
    for number in [CHANGE, OTHER_CHANGE] {
        Mock::given(method("GET"))
            .and(path("/api/now/table/change_request"))
            .and(query_param(
                "sysparm_query",
                format!("number={number}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(change(number)))
            .mount(server)
            .await;
    }
}

async fn servicenow_lifetime_is_capped(expires_in: Value) {
    let token = ResponseTemplate::new(200).set_body_json(json!({
        "access_token": "nU3ZSjA9Ri2vBL4rVgY1r0k6GZ7K5pQYwcS0a8GNbAm3sZkxqHrfjEBWw7v6dXlT",
        "token_type": "Bearer",
        "expires_in": expires_in,
    }));
    let server = servicenow_with_token_answer(token, 1).await;
    let (_dir, connector) = servicenow(&server.uri());
    // Two numbers, so the second lookup is no ticket-cache hit and needs the (reused) token.
    for number in [CHANGE, OTHER_CHANGE] {
        let (result, calls) = connector.ticket(number, &tables(), deadline(5)).await;
        assert!(
            matches!(result, Ok(Fetched::Found(_))),
            "{result:?} {calls:?}"
        );
    }
}

#[tokio::test]
async fn a_servicenow_expires_in_of_u64_max_is_capped_without_a_panic() {
    servicenow_lifetime_is_capped(json!(u64::MAX)).await;
}

#[tokio::test]
async fn a_servicenow_expires_in_of_u64_max_as_a_string_is_capped_without_a_panic() {
    servicenow_lifetime_is_capped(json!(HUGE)).await;
}

#[tokio::test]
async fn a_failed_servicenow_token_request_is_remembered_briefly_instead_of_repeated() {
    let server = servicenow_with_token_answer(ResponseTemplate::new(503), 1).await;
    let (_dir, connector) = servicenow(&server.uri());
    let (first, first_calls) = connector.ticket(CHANGE, &tables(), deadline(5)).await;
    let (second, second_calls) = connector.ticket(OTHER_CHANGE, &tables(), deadline(5)).await;
    assert!(
        matches!(first, Err(UpstreamError::Status { status: 503, .. })),
        "{first:?}"
    );
    assert_eq!(second, first, "the remembered failure is the same error");
    assert_eq!(first_calls.len(), 1, "{first_calls:?}");
    assert!(!first_calls[0].cached);
    assert_eq!(second_calls.len(), 1, "{second_calls:?}");
    assert_eq!(second_calls[0].operation, "POST /oauth_token.do");
    assert_eq!(second_calls[0].outcome, "http_503");
    assert!(second_calls[0].cached, "{second_calls:?}");
    assert_eq!(second_calls[0].attempts, 0);
}

#[tokio::test]
async fn a_remembered_servicenow_token_failure_expires_and_the_endpoint_is_asked_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "fresh", "token_type": "Bearer", "expires_in": 1799
        })))
        .expect(1)
        .mount(&server)
        .await;
    mount_changes(&server).await;
    let (_dir, connector) = servicenow(&server.uri());
    let (first, _) = connector.ticket(CHANGE, &tables(), deadline(5)).await;
    assert!(
        matches!(first, Err(UpstreamError::Auth { .. })),
        "{first:?}"
    );
    tokio::time::sleep(pimgate::connectors::limits::FAILED_TOKEN_TTL + Duration::from_millis(100))
        .await;
    let (second, calls) = connector.ticket(CHANGE, &tables(), deadline(5)).await;
    assert!(
        matches!(second, Ok(Fetched::Found(_))),
        "{second:?} {calls:?}"
    );
}
