//! The built binary receiving real signals: in-flight requests finish, readiness turns 503 first, the
//! grace period bounds the wait, and every answered request is audited before the process exits 0.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use crate::support::raw_http;
use crate::support::requests;
use crate::support::serve as common_serve;

use std::process::Command;
use std::time::{Duration, Instant};

use common_serve::{BIN, serve};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

const RULES: &str = r#"
policies:
  - name: change-bound
    match: {}
    require:
      - itsm: { system: servicenow, states: [Implement], assigned_to_requester: true }
"#;

/// A config in a temp dir: dev mode on loopback, JSON logs, audit on stdout, ServiceNow at `base_url`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(servicenow: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
        std::fs::write(dir.path().join("servicenow-password"), "servicenow-secret").unwrap();
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
deadline_ms = 20000
workers = 1

[auth]
tenant_id = "00000000-0000-0000-0000-000000000000"
audiences = ["11111111-1111-1111-1111-111111111111"]
dev_mode = true

[rules]
path = "{rules}"

[audit]
sink = "stdout"

[log]
format = "json"
level = "info"

[connectors.hr_file]
path = "{manifest}/config/hr.example.csv"

[connectors.servicenow]
base_url = "{servicenow}"
auth = "basic"
username = "svc_pimgate"
password = {{ file = "{password}" }}
timeout_ms = 15000
"#,
            rules = dir.path().join("rules.yaml").display(),
            manifest = MANIFEST,
            password = dir.path().join("servicenow-password").display(),
        );
        std::fs::write(dir.path().join("pimgate.toml"), config).unwrap();
        Setup { dir }
    }

    fn config(&self) -> std::path::PathBuf {
        self.dir.path().join("pimgate.toml")
    }

    fn token(&self) -> String {
        let output = Command::new(BIN)
            .args(["dev", "token", "--config"])
            .arg(self.config())
            .env_remove("PIMGATE_CONFIG")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }
}

/// A ServiceNow stand-in whose change lookup answers after `delay`.
async fn servicenow(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/change_request"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(delay)
                .set_body_json(json!({"result": [{
                    "number": "CHG0031337", "state": "-1",
                    "assigned_to.email": "ada.lovelace@contoso.com", "assigned_to.user_name": "ada.lovelace",
                    "requested_by.email": "grace.hopper@contoso.com", "requested_by.user_name": "grace.hopper",
                    "opened_by.email": "grace.hopper@contoso.com", "opened_by.user_name": "grace.hopper",
                    "start_date": "2026-11-24 17:00:00", "end_date": "2026-11-24 22:00:00",
                    "work_start": "", "work_end": ""
                }]})),
        )
        .mount(&server)
        .await;
    server
}

async fn wait_until_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the service did not become ready");
}

async fn wait_for_upstream_calls(upstream: &MockServer, count: usize) {
    for _ in 0..400 {
        if upstream.received_requests().await.unwrap_or_default().len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the upstream never received {count} calls");
}

/// Starts one evaluation on its own connection, so the server sees it as a separate client.
fn start_evaluation(
    base: &str,
    token: &str,
    id: &str,
) -> tokio::task::JoinHandle<reqwest::Result<(u16, Value)>> {
    let request = reqwest::Client::new()
        .post(format!("{base}/v1/evaluate"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(requests::entra_role(id).to_string());
    tokio::spawn(async move {
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    })
}

fn connection_refused(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_turns_readiness_off_finishes_requests_in_flight_audits_them_and_exits_zero() {
    let upstream = servicenow(Duration::from_millis(2500)).await;
    let setup = Setup::new(&upstream.uri());
    let token = setup.token();
    let mut served = serve(
        &setup.config(),
        &[
            ("PIMGATE__SERVER__SHUTDOWN_DELAY_MS", "400"),
            ("PIMGATE__SERVER__SHUTDOWN_GRACE_SECONDS", "10"),
        ],
    );
    let base = served.base();
    let probe = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    wait_until_ready(&probe, &served.admin()).await;

    let ids = [
        "7a000000-0000-4000-8000-000000000001",
        "7a000000-0000-4000-8000-000000000002",
        "7a000000-0000-4000-8000-000000000003",
    ];
    let in_flight: Vec<_> = ids
        .iter()
        .map(|id| start_evaluation(&base, &token, id))
        .collect();
    wait_for_upstream_calls(&upstream, ids.len()).await;

    let signalled = Instant::now();
    served.signal("TERM");
    let mut readiness = None;
    while signalled.elapsed() < Duration::from_secs(2) {
        if let Ok(response) = probe.get(format!("{}/readyz", served.admin())).send().await
            && response.status() == 503
        {
            readiness = Some(response.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let readiness = readiness.expect("/readyz answered 503 after the signal");
    assert_eq!(readiness["status"], "shutting down", "{readiness}");

    let mut refused = false;
    while signalled.elapsed() < Duration::from_secs(2) {
        if connection_refused(served.port) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "new connections are refused once the listener closed"
    );
    assert!(
        in_flight.iter().all(|request| !request.is_finished()),
        "the listener closed while the slow requests were still in flight"
    );

    let mut answered = Vec::new();
    for request in in_flight {
        let (status, body) = request
            .await
            .unwrap()
            .expect("an in-flight request is answered");
        assert_eq!(status, 200, "{body}");
        answered.push(body["evaluationId"].as_str().unwrap().to_string());
    }

    let status = served
        .wait_for_exit(Duration::from_secs(10))
        .expect("the process exits within the grace period");
    assert!(status.success(), "exit status {status:?}");
    assert!(connection_refused(served.port));

    let audited: Vec<Value> = served
        .stdout_lines()
        .iter()
        .map(|line| serde_json::from_str(line).expect("stdout carries only audit records"))
        .collect();
    for evaluation_id in &answered {
        assert!(
            audited
                .iter()
                .any(|record| record["evaluationId"] == evaluation_id.as_str()),
            "no audit record for {evaluation_id}: {audited:#?}"
        );
    }
    let logs = served.stderr_lines().join("\n");
    assert!(logs.contains("shutdown signal received"), "{logs}");
    assert!(logs.contains("pimgate stopped"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_slower_than_the_grace_period_does_not_keep_the_process_alive() {
    let upstream = servicenow(Duration::from_secs(15)).await;
    let setup = Setup::new(&upstream.uri());
    let token = setup.token();
    let mut served = serve(
        &setup.config(),
        &[("PIMGATE__SERVER__SHUTDOWN_GRACE_SECONDS", "1")],
    );
    let base = served.base();
    wait_until_ready(&reqwest::Client::new(), &served.admin()).await;
    let slow = start_evaluation(&base, &token, "7b000000-0000-4000-8000-000000000001");
    wait_for_upstream_calls(&upstream, 1).await;

    let signalled = Instant::now();
    served.signal("TERM");
    let status = served
        .wait_for_exit(Duration::from_secs(6))
        .expect("the process exits soon after the grace period");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(1),
        "the grace period was waited for: {:?}",
        signalled.elapsed()
    );
    let outcome = tokio::time::timeout(Duration::from_secs(5), slow)
        .await
        .expect("the client learns the connection is gone")
        .unwrap();
    assert!(
        outcome.is_err(),
        "the abandoned request got no answer: {outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigint_stops_an_idle_server_and_a_second_signal_does_not_wait_for_requests() {
    // Idle: SIGINT (Ctrl-C) is a graceful stop too.
    let upstream = servicenow(Duration::from_secs(15)).await;
    let setup = Setup::new(&upstream.uri());
    let mut idle = serve(&setup.config(), &[]);
    wait_until_ready(&reqwest::Client::new(), &idle.admin()).await;
    idle.signal("INT");
    let status = idle
        .wait_for_exit(Duration::from_secs(5))
        .expect("an idle server stops at once");
    assert!(status.success(), "exit status {status:?}");

    // Busy with a 30 s grace period: the second signal stops it without waiting.
    let token = setup.token();
    let mut busy = serve(
        &setup.config(),
        &[("PIMGATE__SERVER__SHUTDOWN_GRACE_SECONDS", "30")],
    );
    wait_until_ready(&reqwest::Client::new(), &busy.admin()).await;
    let _slow = start_evaluation(&busy.base(), &token, "7c000000-0000-4000-8000-000000000001");
    wait_for_upstream_calls(&upstream, 1).await;
    busy.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        busy.child.try_wait().unwrap().is_none(),
        "the first signal waits for the request in flight"
    );
    busy.signal("TERM");
    let status = busy
        .wait_for_exit(Duration::from_secs(5))
        .expect("the second signal stops the process without waiting");
    assert!(status.success(), "exit status {status:?}");
}

/// What became of one request a load client sent.
#[derive(Debug, Clone, PartialEq)]
enum Fate {
    /// A complete response with this status; `evaluation_id` for a 200.
    Answered {
        status: u16,
        evaluation_id: Option<String>,
        after_signal: bool,
    },
    /// Not accepted: the connection was refused, or could not take the request's bytes, or a
    /// connection opened for this request ended before any byte of a response. The server never
    /// took the request up (the audit count proves no decision was made for it).
    NotAccepted(String),
    /// Lost: the request was fully sent on a connection the server had kept open after answering
    /// on it, and the connection ended without a response; or a response was cut short.
    Dropped(String),
}

/// One load client: sends evaluations back to back on a keep-alive connection (a new one when the
/// server closes it), until a connection is refused or `until`. Returns the fate of each request.
async fn load_client(
    port: u16,
    token: String,
    client: usize,
    until: Instant,
    signalled: std::sync::Arc<std::sync::OnceLock<Instant>>,
) -> Vec<Fate> {
    let mut fates = Vec::new();
    let mut connection: Option<tokio::net::TcpStream> = None;
    let mut reused = false;
    for sequence in 0..1000 {
        if Instant::now() >= until {
            break;
        }
        let mut stream = match connection.take() {
            Some(stream) => stream,
            None => match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(stream) => {
                    reused = false;
                    stream
                }
                Err(error) => {
                    fates.push(Fate::NotAccepted(format!("connect: {error}")));
                    break;
                }
            },
        };
        let id = format!("7d000000-0000-4000-8000-{client:04}{sequence:08}");
        // Even clients: a ticket per request, so each waits 300 ms on the upstream (lookups are
        // cached) and requests are in flight at the signal. Odd clients: the cached ticket, so their
        // connections are busy back to back, the case where a reused connection can lose one.
        let ticket = if client.is_multiple_of(2) {
            format!("CHG{:07}", client * 1000 + sequence)
        } else {
            "CHG0031337".to_string()
        };
        let body = requests::entra_role(&id)
            .to_string()
            .replace("CHG0031337", &ticket);
        let request = raw_http::evaluate_request(&token, &body);
        if let Err(error) = tokio::io::AsyncWriteExt::write_all(&mut stream, &request).await {
            fates.push(Fate::NotAccepted(format!("write: {error}")));
            continue;
        }
        match raw_http::read_response(&mut stream).await {
            Ok(response) => {
                let evaluation_id = (response.status == 200).then(|| {
                    response.json()["evaluationId"]
                        .as_str()
                        .unwrap()
                        .to_string()
                });
                fates.push(Fate::Answered {
                    status: response.status,
                    evaluation_id,
                    after_signal: signalled.get().is_some(),
                });
                if !response.closes_connection() {
                    connection = Some(stream);
                    reused = true;
                }
            }
            Err(raw_http::Failure::NothingReceived(error)) if !reused => {
                fates.push(Fate::NotAccepted(format!("fresh connection: {error}")));
            }
            Err(failure) => fates.push(Fate::Dropped(format!("{failure:?} (reused: {reused})"))),
        }
    }
    fates
}

/// 16 clients loop requests (half of them slow, waiting 300 ms on the upstream) through SIGTERM: no
/// response is cut short, every decision made is answered and audited exactly once, the listener
/// refuses new connections and the process exits 0 within the grace period. With a shutdown delay,
/// no request is lost on a reused keep-alive connection either (see the callers for why).
async fn sigterm_under_load(shutdown_delay_ms: u64) -> usize {
    let upstream = servicenow(Duration::from_millis(300)).await;
    let setup = Setup::new(&upstream.uri());
    let token = setup.token();
    let audit_path = setup.dir.path().join("audit.jsonl");
    let delay = shutdown_delay_ms.to_string();
    let mut served = serve(
        &setup.config(),
        &[
            ("PIMGATE__SERVER__SHUTDOWN_DELAY_MS", delay.as_str()),
            ("PIMGATE__SERVER__SHUTDOWN_GRACE_SECONDS", "10"),
            ("PIMGATE__AUDIT__SINK", "file"),
            ("PIMGATE__AUDIT__PATH", audit_path.to_str().unwrap()),
        ],
    );
    let port = served.port;
    wait_until_ready(
        &reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        &served.admin(),
    )
    .await;

    let signalled = std::sync::Arc::new(std::sync::OnceLock::new());
    let until = Instant::now() + Duration::from_secs(8);
    let clients: Vec<_> = (0..16)
        .map(|client| {
            tokio::spawn(load_client(
                port,
                token.clone(),
                client,
                until,
                std::sync::Arc::clone(&signalled),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    served.signal("TERM");
    signalled.set(Instant::now()).unwrap();

    let mut fates = Vec::new();
    for client in clients {
        fates.extend(client.await.unwrap());
    }
    let status = served
        .wait_for_exit(Duration::from_secs(10 + 5))
        .expect("the process exits within the grace period");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        connection_refused(port),
        "new connections are refused once the listener closed"
    );

    let dropped: Vec<&Fate> = fates
        .iter()
        .filter(|fate| matches!(fate, Fate::Dropped(_)))
        .collect();
    assert!(
        dropped
            .iter()
            .all(|fate| matches!(fate, Fate::Dropped(why) if why.starts_with("NothingReceived"))),
        "no response is cut short: {dropped:#?}"
    );
    let answered: Vec<(u16, Option<&String>, bool)> = fates
        .iter()
        .filter_map(|fate| match fate {
            Fate::Answered {
                status,
                evaluation_id,
                after_signal,
            } => Some((*status, evaluation_id.as_ref(), *after_signal)),
            _ => None,
        })
        .collect();
    assert!(
        answered.iter().all(|(status, _, _)| *status == 200),
        "every answer is a decision: {answered:?}"
    );
    assert!(
        answered.iter().any(|(_, _, after_signal)| *after_signal),
        "requests in flight at the signal were answered after it"
    );
    assert!(
        fates
            .iter()
            .any(|fate| matches!(fate, Fate::NotAccepted(why) if why.starts_with("connect"))),
        "the clients ended on a refused connection: {fates:?}"
    );

    let mut decided: Vec<String> = answered
        .iter()
        .filter_map(|(_, evaluation_id, _)| evaluation_id.cloned())
        .collect();
    let mut audited: Vec<String> = std::fs::read_to_string(&audit_path)
        .unwrap()
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            record["evaluationId"].as_str().unwrap().to_string()
        })
        .collect();
    decided.sort();
    audited.sort();
    assert_eq!(
        audited, decided,
        "one audit record per answered decision, and none for a request never answered"
    );
    let not_accepted = fates
        .iter()
        .filter(|fate| matches!(fate, Fate::NotAccepted(_)))
        .count();
    println!(
        "shutdown delay {shutdown_delay_ms} ms: {} answered ({} after the signal), {not_accepted} not accepted, {} lost on a reused connection",
        answered.len(),
        answered.iter().filter(|(_, _, after)| *after).count(),
        dropped.len()
    );
    dropped.len()
}

/// Without a delay the listener closes at the signal, and actix closes each keep-alive connection
/// as soon as its current request is answered, without starting a request already buffered on it:
/// a client that reused the connection in that instant gets no answer (measured: one request on
/// nearly every connection busy with fast requests, 7-8 of the 8). Nothing decided is lost (every decision is answered and audited); the
/// request was never taken up. Deployments must stop traffic first: the Kubernetes preStop sleep,
/// or `server.shutdown_delay_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_without_a_shutdown_delay_answers_and_audits_every_decision() {
    sigterm_under_load(0).await;
}

/// With a delay, every answer from the signal on says `Connection: close`, so busy keep-alive
/// connections end at a response boundary before the listener closes, and none loses a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_with_a_shutdown_delay_loses_no_request_on_a_reused_connection() {
    assert_eq!(
        sigterm_under_load(500).await,
        0,
        "requests lost on reused connections"
    );
}
