//! Slow and idle clients cannot starve PIM: a trickled request head or body is cut off on time,
//! idle keep-alive connections are closed, and connections beyond `server.max_connections` wait in
//! the backlog instead of crowding out the ones being served. The attackers are raw TCP streams.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use crate::support::app as helpers;
use crate::support::raw_http;

use std::time::Duration;

use pimgate::settings::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::requests;
use helpers::{AppOptions, TestApp, spawn_app_with};

/// Longer than any answer in these tests can take unless something hangs.
const HANG: Duration = Duration::from_secs(10);

async fn app(tweak: impl FnOnce(&mut Settings) + 'static) -> (TestApp, u16) {
    let app = spawn_app_with(AppOptions {
        tweak: Box::new(move |settings| {
            settings.server.workers = 1;
            tweak(settings);
        }),
        // Readiness is polled on connections closed at once: a pooled one would hold a slot.
        wait_ready: false,
        ..AppOptions::default()
    })
    .await;
    let port = app
        .address
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap();
    let admin_port = app
        .admin_address
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap();
    for _ in 0..200 {
        if let Ok(answer) = raw_http::send(admin_port, &raw_http::get_request("/readyz")).await
            && answer.status == 200
        {
            return (app, port);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the service did not become ready");
}

/// A valid, really signed PIM request with its own id.
fn pim_request(app: &TestApp, id: &str) -> Vec<u8> {
    let body = requests::entra_role(id);
    raw_http::evaluate_request(&app.token(), &body.to_string())
}

/// Sends PIM's request on a fresh connection: it must be answered 200 with a decision.
async fn pim_is_approved_or_denied(port: u16, request: &[u8]) {
    let answer = tokio::time::timeout(HANG, raw_http::send(port, request))
        .await
        .expect("PIM's request is answered")
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.json()["evaluationOutcome"].is_string(), "{answer:?}");
}

#[derive(Debug, PartialEq)]
enum TrickleEnd {
    /// The server answered (a 408) or closed the connection before the trickle ran out.
    ClosedByServer,
    /// Every byte was sent and the connection is still open.
    Exhausted,
}

/// Sends `opening` at once, then `bytes` one at a time every `every`, until the server closes the
/// connection or the bytes run out. Bounded: at most `bytes × every`.
async fn trickle(port: u16, opening: Vec<u8>, bytes: usize, every: Duration) -> TrickleEnd {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(&opening).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let mut chunk = [0_u8; 1024];
    for _ in 0..bytes {
        tokio::select! {
            read = reader.read(&mut chunk) => match read {
                // Anything the server sends a slow client here is its 408 before closing.
                Ok(_) | Err(_) => return TrickleEnd::ClosedByServer,
            },
            () = tokio::time::sleep(every) => {
                if writer.write_all(b"a").await.is_err() {
                    return TrickleEnd::ClosedByServer;
                }
            }
        }
    }
    TrickleEnd::Exhausted
}

/// A slow-loris: the request line, then a header trickled byte by byte, never finished.
fn slow_head(port: u16, bytes: usize, every: Duration) -> tokio::task::JoinHandle<TrickleEnd> {
    let opening = b"POST /v1/evaluate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".to_vec();
    tokio::spawn(trickle(port, opening, bytes, every))
}

async fn connect_idle(port: u16, count: usize) -> Vec<TcpStream> {
    let mut idle = Vec::new();
    for _ in 0..count {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    idle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_loris_and_idle_connections_do_not_starve_a_pim_request() {
    let (app, port) = app(|settings| settings.server.client_request_timeout_ms = 10_000).await;
    let slow: Vec<_> = (0..32)
        .map(|_| slow_head(port, 100, Duration::from_millis(100)))
        .collect();
    let _idle = connect_idle(port, 32).await;

    pim_is_approved_or_denied(
        port,
        &pim_request(&app, "5a000000-0000-4000-8000-000000000001"),
    )
    .await;
    assert!(
        slow.iter().all(|attacker| !attacker.is_finished()),
        "the slow-loris connections were still open while PIM was answered"
    );
    for attacker in slow {
        attacker.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_loris_head_or_an_idle_connection_is_closed_after_the_request_timeout() {
    let (_app, port) = app(|settings| settings.server.client_request_timeout_ms = 1000).await;
    let mut idle = connect_idle(port, 1).await;
    // 40 bytes, one every 50 ms: the trickle would last 2 s, past the 1 s timeout but short of the
    // 3 s default (2.5 s at the earliest: actix's clock ticks every 500 ms), so only the configured
    // timeout can end it.
    let slow = slow_head(port, 40, Duration::from_millis(50));
    assert_eq!(slow.await.unwrap(), TrickleEnd::ClosedByServer);
    assert!(
        raw_http::closed_within(&mut idle[0], Duration::from_secs(2)).await,
        "a connection that never sends a request is closed after the request timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trickled_body_is_answered_408_and_closed_within_the_deadline() {
    let (app, port) = app(|settings| settings.server.deadline_ms = 500).await;
    let request = pim_request(&app, "5b000000-0000-4000-8000-000000000001");
    let text = String::from_utf8(request).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // The whole body would take minutes at one byte per 100 ms.
    let body = body.as_bytes().to_vec();
    let trickler = tokio::spawn(async move {
        for byte in body {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
        }
    });

    let answer = tokio::time::timeout(HANG, raw_http::read_response(&mut reader))
        .await
        .expect("the trickled request is answered")
        .unwrap();
    assert_eq!(answer.status, 408, "{:?}", answer);
    let error = answer.json();
    assert_eq!(error["error"], "request_timeout", "{error}");
    assert!(error["detail"].is_string(), "{error}");
    assert!(
        answer.closes_connection(),
        "the half-read connection is not kept alive: {:?}",
        answer.headers
    );
    assert!(
        raw_http::closed_within(&mut reader, Duration::from_secs(3)).await,
        "the server closes the connection after the 408"
    );
    assert!(
        !trickler.is_finished(),
        "the server gave up before the body was complete"
    );
    trickler.abort();
    assert!(
        app.audit_records().is_empty(),
        "no decision was made, so nothing is audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_keep_alive_connection_is_closed_after_keep_alive() {
    let (_app, port) = app(|settings| {
        settings.server.keep_alive_seconds = 1;
        settings.server.client_request_timeout_ms = 10_000;
    })
    .await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(&raw_http::get_request("/healthz"))
            .await
            .unwrap();
        // The public listener has no operator routes (404), and still keeps the connection.
        let answer = raw_http::read_response(&mut stream).await.unwrap();
        assert_eq!(
            answer.status, 404,
            "the connection is kept alive between requests"
        );
    }
    // Closed after 1 s idle; the 75 s default (or the 10 s request timeout) would keep it open.
    assert!(
        raw_http::closed_within(&mut stream, Duration::from_secs(4)).await,
        "the idle keep-alive connection is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_beyond_max_connections_waits_for_a_free_slot_instead_of_being_refused() {
    let (app, port) = app(|settings| {
        settings.server.max_connections = 8;
        settings.server.client_request_timeout_ms = 10_000;
    })
    .await;
    let mut held = connect_idle(port, 8).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut pim = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the ninth connection is queued by the kernel, not refused");
    pim.write_all(&pim_request(&app, "5c000000-0000-4000-8000-000000000001"))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(
            Duration::from_millis(500),
            raw_http::read_response(&mut pim)
        )
        .await
        .is_err(),
        "no answer while all 8 slots of the one worker are taken"
    );
    held.truncate(7);
    let answer = tokio::time::timeout(HANG, raw_http::read_response(&mut pim))
        .await
        .expect("answered once a slot is free")
        .unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pim_gets_through_once_slow_loris_connections_filling_every_slot_time_out() {
    let (app, port) = app(|settings| {
        settings.server.max_connections = 8;
        settings.server.client_request_timeout_ms = 1000;
    })
    .await;
    let slow: Vec<_> = (0..8)
        .map(|_| slow_head(port, 200, Duration::from_millis(50)))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;

    pim_is_approved_or_denied(
        port,
        &pim_request(&app, "5d000000-0000-4000-8000-000000000001"),
    )
    .await;
    for attacker in slow {
        assert_eq!(attacker.await.unwrap(), TrickleEnd::ClosedByServer);
    }
}

#[test]
fn connection_limits_out_of_range_are_each_reported_with_their_key_and_a_fix() {
    let mut settings = Settings::default();
    settings.server.client_request_timeout_ms = 500;
    settings.server.client_disconnect_timeout_ms = 120_000;
    settings.server.keep_alive_seconds = 7200;
    settings.server.max_connections = 0;
    settings.server.max_connection_rate = 0;
    settings.server.backlog = 0;
    let problems = settings.validate();
    for key in [
        "server.client_request_timeout_ms",
        "server.client_disconnect_timeout_ms",
        "server.keep_alive_seconds",
        "server.max_connections",
        "server.max_connection_rate",
        "server.backlog",
    ] {
        assert!(
            problems
                .iter()
                .any(|problem| problem.key == key && !problem.fix.is_empty()),
            "{key} is not reported: {problems:?}"
        );
    }
    assert!(
        Settings::default()
            .validate()
            .iter()
            .all(|problem| !problem.key.starts_with("server.")),
        "the defaults are valid"
    );
}
