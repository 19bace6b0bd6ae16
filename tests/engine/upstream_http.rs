//! The upstream HTTP layer against real HTTP servers on loopback: retries, `Retry-After`, deadlines,
//! size caps, the circuit breaker and metrics, proven by call counts (`expect`) and elapsed times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use pimgate::connectors::http::{
    CircuitSettings, Fetched, MAX_RESPONSE_BYTES, RetrySettings, Upstream, UpstreamCall,
    UpstreamError,
};
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NAME: &str = "testsys";
const SLACK: Duration = Duration::from_millis(300);

/// Fast backoff so retry tests take milliseconds.
fn quick_retries() -> RetrySettings {
    RetrySettings {
        max_attempts: 3,
        backoff_base_ms: 10,
        backoff_max_ms: 40,
    }
}

fn upstream(timeout: Duration, circuit: CircuitSettings) -> Upstream {
    Upstream::with_settings(
        NAME,
        reqwest::Client::new(),
        timeout,
        quick_retries(),
        circuit,
    )
}

fn default_upstream() -> Upstream {
    upstream(Duration::from_secs(5), CircuitSettings::default())
}

fn breaker(failure_threshold: u32, cooldown_ms: u64) -> CircuitSettings {
    CircuitSettings {
        failure_threshold,
        cooldown_ms,
    }
}

struct Answer {
    result: Result<Fetched<Value>, UpstreamError>,
    call: UpstreamCall,
    elapsed: Duration,
}

async fn get(upstream: &Upstream, url: &str, budget: Duration) -> Answer {
    let request = upstream.client().get(url);
    get_with(upstream, request, budget).await
}

async fn get_with(
    upstream: &Upstream,
    request: reqwest::RequestBuilder,
    budget: Duration,
) -> Answer {
    let started = Instant::now();
    let (result, call) = upstream
        .get_json::<Value>(request, "GET /thing", started + budget)
        .await;
    Answer {
        result,
        call,
        elapsed: started.elapsed(),
    }
}

fn ok_body() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"ok": true}))
}

async fn mount(server: &MockServer, response: ResponseTemplate, times: Option<u64>, calls: u64) {
    let mock = Mock::given(method("GET")).and(path("/thing"));
    let mock = match times {
        Some(times) => mock.respond_with(response).up_to_n_times(times),
        None => mock.respond_with(response),
    };
    mock.expect(calls).mount(server).await;
}

fn url(server: &MockServer) -> String {
    format!("{}/thing", server.uri())
}

/// A one-connection HTTP server on loopback that answers however `respond` writes to the socket:
/// what wiremock cannot do (trickle bytes, a body without a length).
fn raw_server(respond: impl FnOnce(&mut TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            respond(&mut stream);
        }
    });
    format!("http://{address}/thing")
}

#[tokio::test]
async fn a_503_then_a_200_is_found_on_the_second_attempt() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(503), Some(1), 1).await;
    mount(&server, ok_body(), None, 1).await;

    let answer = get(&default_upstream(), &url(&server), Duration::from_secs(2)).await;

    assert_eq!(answer.result, Ok(Fetched::Found(json!({"ok": true}))));
    assert_eq!(answer.call.attempts, 2);
    assert_eq!(answer.call.outcome, "ok");
    assert_eq!(answer.call.connector, NAME);
    assert_eq!(answer.call.operation, "GET /thing");
}

#[tokio::test]
async fn three_503s_use_up_the_attempts_and_report_the_status() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(503), None, 3).await;

    let answer = get(&default_upstream(), &url(&server), Duration::from_secs(2)).await;

    assert_eq!(
        answer.result,
        Err(UpstreamError::Status {
            connector: NAME,
            status: 503
        })
    );
    assert_eq!(answer.call.attempts, 3);
    assert_eq!(answer.call.outcome, "http_503");
}

/// 500 usually means this very request breaks the server; only 502/503/504 and 429 say "later".
#[tokio::test]
async fn a_500_is_not_retried() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(500), None, 1).await;

    let answer = get(&default_upstream(), &url(&server), Duration::from_secs(2)).await;

    assert_eq!(
        answer.result,
        Err(UpstreamError::Status {
            connector: NAME,
            status: 500
        })
    );
    assert_eq!(answer.call.attempts, 1);
    assert_eq!(answer.call.outcome, "http_500");
}

#[tokio::test]
async fn a_429_whose_retry_after_fits_the_deadline_is_waited_out_and_retried() {
    let server = MockServer::start().await;
    let limited = ResponseTemplate::new(429).insert_header("Retry-After", "1");
    mount(&server, limited, Some(1), 1).await;
    mount(&server, ok_body(), None, 1).await;

    let answer = get(&default_upstream(), &url(&server), Duration::from_secs(3)).await;

    assert!(matches!(answer.result, Ok(Fetched::Found(_))));
    assert_eq!(answer.call.attempts, 2);
    assert!(
        answer.elapsed >= Duration::from_secs(1),
        "{:?}",
        answer.elapsed
    );
    assert!(
        answer.elapsed < Duration::from_secs(3),
        "{:?}",
        answer.elapsed
    );
}

#[tokio::test]
async fn a_429_whose_retry_after_overshoots_the_deadline_is_rate_limited_at_once() {
    let server = MockServer::start().await;
    let limited = ResponseTemplate::new(429).insert_header("Retry-After", "30");
    mount(&server, limited, None, 1).await;

    let answer = get(&default_upstream(), &url(&server), Duration::from_secs(1)).await;

    assert_eq!(
        answer.result,
        Err(UpstreamError::RateLimited { connector: NAME })
    );
    assert_eq!(answer.call.outcome, "rate_limited");
    assert_eq!(answer.call.attempts, 1);
    assert!(
        answer.elapsed < Duration::from_millis(300),
        "{:?}",
        answer.elapsed
    );
}

#[tokio::test]
async fn pagerduty_ratelimit_reset_is_honoured_like_retry_after() {
    let server = MockServer::start().await;
    let limited = ResponseTemplate::new(429).insert_header("ratelimit-reset", "1");
    mount(&server, limited, Some(1), 1).await;
    mount(&server, ok_body(), None, 1).await;

    let answer = get(&default_upstream(), &url(&server), Duration::from_secs(3)).await;

    assert!(matches!(answer.result, Ok(Fetched::Found(_))));
    assert!(
        answer.elapsed >= Duration::from_secs(1),
        "{:?}",
        answer.elapsed
    );
}

#[tokio::test]
async fn a_hanging_upstream_times_out_within_the_deadline() {
    let server = MockServer::start().await;
    mount(
        &server,
        ok_body().set_delay(Duration::from_secs(5)),
        None,
        1,
    )
    .await;
    let budget = Duration::from_millis(400);

    let answer = get(&default_upstream(), &url(&server), budget).await;

    assert_eq!(
        answer.result,
        Err(UpstreamError::Timeout { connector: NAME })
    );
    assert_eq!(answer.call.outcome, "timeout");
    assert_eq!(answer.call.attempts, 1, "no time was left for a retry");
    assert!(answer.elapsed >= budget);
    assert!(answer.elapsed < budget + SLACK, "{:?}", answer.elapsed);
}

#[tokio::test]
async fn an_attempt_that_times_out_is_retried_while_time_remains() {
    let server = MockServer::start().await;
    mount(
        &server,
        ok_body().set_delay(Duration::from_secs(5)),
        Some(1),
        1,
    )
    .await;
    mount(&server, ok_body(), None, 1).await;
    let upstream = upstream(Duration::from_millis(150), CircuitSettings::default());

    let answer = get(&upstream, &url(&server), Duration::from_secs(2)).await;

    assert!(matches!(answer.result, Ok(Fetched::Found(_))));
    assert_eq!(answer.call.attempts, 2);
}

#[tokio::test]
async fn a_body_that_trickles_is_cut_at_the_deadline() {
    let url = raw_server(|stream| {
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[";
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        for _ in 0..500 {
            std::thread::sleep(Duration::from_millis(20));
            if stream
                .write_all(b"1,")
                .and_then(|()| stream.flush())
                .is_err()
            {
                return;
            }
        }
    });
    let budget = Duration::from_millis(500);

    let answer = get(&default_upstream(), &url, budget).await;

    assert_eq!(
        answer.result,
        Err(UpstreamError::Timeout { connector: NAME })
    );
    assert!(answer.elapsed < budget + SLACK, "{:?}", answer.elapsed);
}

#[tokio::test]
async fn an_oversized_body_is_malformed_and_not_retried() {
    let server = MockServer::start().await;
    let huge = format!("\"{}\"", "x".repeat(MAX_RESPONSE_BYTES));
    let response = ResponseTemplate::new(200).set_body_raw(huge, "application/json");
    mount(&server, response, None, 1).await;

    let answer = get(&default_upstream(), &url(&server), Duration::from_secs(2)).await;

    assert_eq!(
        answer.result,
        Err(UpstreamError::Malformed { connector: NAME })
    );
    assert_eq!(answer.call.attempts, 1);
}

#[tokio::test]
async fn an_oversized_body_without_a_length_is_cut_while_streaming() {
    let url = raw_server(|stream| {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
        let _ = stream.write_all(head.as_bytes());
        let block = vec![b' '; 64 * 1024];
        for _ in 0..64 {
            if stream.write_all(&block).is_err() {
                return;
            }
        }
    });

    let answer = get(&default_upstream(), &url, Duration::from_secs(2)).await;

    assert_eq!(
        answer.result,
        Err(UpstreamError::Malformed { connector: NAME })
    );
    assert_eq!(answer.call.outcome, "malformed");
}

#[tokio::test]
async fn garbage_json_is_malformed_and_not_retried() {
    let server = MockServer::start().await;
    let garbage = ResponseTemplate::new(200).set_body_raw("<html>oops", "application/json");
    mount(&server, garbage, None, 1).await;

    let answer = get(&default_upstream(), &url(&server), Duration::from_secs(2)).await;

    assert_eq!(
        answer.result,
        Err(UpstreamError::Malformed { connector: NAME })
    );
    assert_eq!(answer.call.attempts, 1);
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_after_every_attempt() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/thing", listener.local_addr().unwrap());
    drop(listener);

    let answer = get(&default_upstream(), &url, Duration::from_secs(2)).await;

    assert_eq!(
        answer.result,
        Err(UpstreamError::Unreachable { connector: NAME })
    );
    assert_eq!(answer.call.attempts, 3);
    assert_eq!(answer.call.outcome, "unreachable");
}

#[tokio::test]
async fn a_404_is_not_found_is_not_retried_and_does_not_trip_the_circuit() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(404), None, 3).await;
    let upstream = upstream(Duration::from_secs(5), breaker(1, 60_000));

    for _ in 0..3 {
        let answer = get(&upstream, &url(&server), Duration::from_secs(2)).await;
        assert_eq!(answer.result, Ok(Fetched::NotFound));
        assert_eq!(answer.call.attempts, 1);
        assert_eq!(answer.call.outcome, "not_found");
    }
    assert!(!upstream.circuit_is_open());
}

#[tokio::test]
async fn client_errors_other_than_429_are_not_retried_and_do_not_trip_the_circuit() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(400), Some(1), 1).await;
    mount(&server, ResponseTemplate::new(401), Some(1), 1).await;
    mount(&server, ResponseTemplate::new(403), Some(1), 1).await;
    let upstream = upstream(Duration::from_secs(5), breaker(1, 60_000));

    let bad = get(&upstream, &url(&server), Duration::from_secs(2)).await;
    let unauthorized = get(&upstream, &url(&server), Duration::from_secs(2)).await;
    let forbidden = get(&upstream, &url(&server), Duration::from_secs(2)).await;

    assert_eq!(bad.call.outcome, "http_400");
    assert_eq!(unauthorized.call.outcome, "auth_failed");
    assert!(matches!(forbidden.result, Err(UpstreamError::Auth { .. })));
    assert_eq!(
        bad.call.attempts + unauthorized.call.attempts + forbidden.call.attempts,
        3
    );
    assert!(!upstream.circuit_is_open());
}

#[tokio::test]
async fn the_circuit_opens_after_k_failures_and_then_fails_fast_without_calling() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(500), None, 3).await;
    let upstream = upstream(Duration::from_secs(5), breaker(3, 60_000));

    for _ in 0..3 {
        let answer = get(&upstream, &url(&server), Duration::from_secs(2)).await;
        assert_eq!(answer.call.outcome, "http_500");
    }
    let refused = get(&upstream, &url(&server), Duration::from_secs(2)).await;

    assert_eq!(
        refused.result,
        Err(UpstreamError::CircuitOpen { connector: NAME })
    );
    assert_eq!(refused.call.outcome, "circuit_open");
    assert_eq!(refused.call.attempts, 0);
    assert!(
        refused.elapsed < Duration::from_millis(50),
        "{:?}",
        refused.elapsed
    );
}

#[tokio::test]
async fn retries_stop_when_the_call_itself_opens_the_circuit_and_report_the_real_cause() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(503), None, 2).await;
    let upstream = upstream(Duration::from_secs(5), breaker(2, 60_000));

    let answer = get(&upstream, &url(&server), Duration::from_secs(2)).await;

    assert_eq!(answer.call.outcome, "http_503");
    assert_eq!(answer.call.attempts, 2);
    assert!(upstream.circuit_is_open());
}

#[tokio::test]
async fn after_the_cooldown_one_successful_probe_closes_the_circuit() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(500), Some(2), 2).await;
    mount(&server, ok_body(), None, 2).await;
    let upstream = upstream(Duration::from_secs(5), breaker(2, 200));

    for _ in 0..2 {
        get(&upstream, &url(&server), Duration::from_secs(2)).await;
    }
    let refused = get(&upstream, &url(&server), Duration::from_secs(2)).await;
    assert_eq!(refused.call.outcome, "circuit_open");

    tokio::time::sleep(Duration::from_millis(250)).await;
    let probe = get(&upstream, &url(&server), Duration::from_secs(2)).await;
    assert_eq!(probe.call.outcome, "ok");
    assert!(!upstream.circuit_is_open());
    let after = get(&upstream, &url(&server), Duration::from_secs(2)).await;
    assert_eq!(after.call.outcome, "ok");
}

#[tokio::test]
async fn a_failed_probe_opens_the_circuit_again() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(500), None, 2).await;
    let upstream = upstream(Duration::from_secs(5), breaker(1, 150));

    get(&upstream, &url(&server), Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probe = get(&upstream, &url(&server), Duration::from_secs(2)).await;
    let refused = get(&upstream, &url(&server), Duration::from_secs(2)).await;

    assert_eq!(probe.call.outcome, "http_500");
    assert_eq!(refused.call.outcome, "circuit_open");
}

#[tokio::test]
async fn the_callers_traceparent_goes_out_unchanged_on_every_attempt() {
    let server = MockServer::start().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    Mock::given(method("GET"))
        .and(header("traceparent", traceparent))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(header("traceparent", traceparent))
        .respond_with(ok_body())
        .expect(1)
        .mount(&server)
        .await;
    let upstream = default_upstream();
    let request = upstream
        .client()
        .get(url(&server))
        .header("traceparent", traceparent);

    let answer = get_with(&upstream, request, Duration::from_secs(2)).await;

    assert_eq!(answer.call.outcome, "ok");
}

#[tokio::test]
async fn no_traceparent_is_added_when_the_caller_sent_none() {
    let server = MockServer::start().await;
    mount(&server, ok_body(), None, 1).await;

    get(&default_upstream(), &url(&server), Duration::from_secs(2)).await;

    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    assert!(!received[0].headers.contains_key("traceparent"));
}

/// The recorder is thread-local and this test runs on a current-thread runtime, so every metric
/// the upstream emits lands in it.
#[tokio::test(flavor = "current_thread")]
async fn metrics_count_requests_by_outcome_retries_and_circuit_openings() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(503), Some(1), 1).await;
    mount(&server, ok_body(), Some(1), 1).await;
    mount(&server, ResponseTemplate::new(500), None, 2).await;
    let upstream = upstream(Duration::from_secs(5), breaker(2, 60_000));

    for _ in 0..4 {
        get(&upstream, &url(&server), Duration::from_secs(2)).await;
    }

    let text = handle.render();
    for line in [
        r#"pimgate_upstream_requests_total{connector="testsys",outcome="ok"} 1"#,
        r#"pimgate_upstream_requests_total{connector="testsys",outcome="http_500"} 2"#,
        r#"pimgate_upstream_requests_total{connector="testsys",outcome="circuit_open"} 1"#,
        r#"pimgate_upstream_retries_total{connector="testsys"} 1"#,
        r#"pimgate_upstream_circuit_open_total{connector="testsys"} 1"#,
        r#"pimgate_upstream_request_duration_seconds_count{connector="testsys"} 4"#,
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}
