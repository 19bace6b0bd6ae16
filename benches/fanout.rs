//! Decision latency with 1–4 upstream checks, each asking a loopback server that answers after
//! `d` = 50 ms: proves the checks of a decision run concurrently (≈ d, not n × d) and measures what
//! pimgate adds on top, cold (empty answer cache) and warm (answers cached).
//!
//! Run with `cargo bench --bench fanout`. Prints p50/max over RUNS decisions per row.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pimgate::checks::{Check, CheckContext, CheckOutcome, NamedCheck};
use pimgate::connectors::cache::{CacheSettings, TtlCache};
use pimgate::connectors::http::{Fetched, Upstream};
use pimgate::decision::{Outcome, evaluate};
use pimgate::payload::{Action, ActivationRequest, ExpirationKind, ResourceType, Schedule, Target};
use pimgate::rules::{self, FailureMode, RuleSet};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const DELAY: Duration = Duration::from_millis(50);
const RUNS: usize = 20;
const BUDGET: Duration = Duration::from_secs(2);

/// The smallest upstream check: one GET through `Upstream::get_json`, behind a per-check cache.
#[derive(Debug)]
struct UpstreamCheck {
    upstream: Upstream,
    cache: TtlCache<Value>,
    url: String,
}

#[async_trait]
impl Check for UpstreamCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let mut calls = Vec::new();
        let fetch = async {
            let request = self.upstream.client().get(&self.url);
            let (result, call) = self
                .upstream
                .get_json::<Value>(request, "GET /thing", context.deadline)
                .await;
            calls.push(call);
            result
        };
        let (result, _cached) = self.cache.get_or_fetch("thing", fetch).await;
        match result {
            Ok(Fetched::Found(_)) => CheckOutcome::pass("upstream agrees"),
            Ok(Fetched::NotFound) => CheckOutcome::fail("upstream does not know it"),
            Err(error) => CheckOutcome::error(error.to_string()),
        }
    }
}

fn request() -> ActivationRequest {
    ActivationRequest {
        request_id: Some("bench".to_string()),
        resource_type: ResourceType::EntraRoles,
        principal_id: "5b2a9c1e-2222-4d3e-8f40-1a2b3c4d5e6f".to_string(),
        principal_type: Some("User".to_string()),
        action: Action::SelfActivate,
        target: Target::EntraRole {
            role_definition_id: "62e90394-69f5-4237-9190-012177145e10".to_string(),
            directory_scope_id: "/".to_string(),
            app_scope_id: None,
        },
        justification: None,
        ticket: None,
        schedule: Schedule {
            start: None,
            expiration_kind: ExpirationKind::AfterDuration,
            duration: Some(chrono::Duration::hours(1)),
            end: None,
        },
    }
}

/// One catch-all policy requiring `n` upstream checks, each with a fresh cache.
fn rules_with(n: usize, url: &str, client: &reqwest::Client) -> RuleSet {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, "policies:\n  - name: bench\n    match: {}\n").unwrap();
    let mut rules = rules::load(&file).unwrap();
    let policy = rules.policies.first_mut().unwrap();
    policy.on_error = FailureMode::Deny;
    policy.require = (0..n)
        .map(|_| NamedCheck {
            kind: "upstream",
            check: Arc::new(UpstreamCheck {
                upstream: Upstream::new("bench", client.clone(), Duration::from_secs(1)),
                cache: TtlCache::new(CacheSettings::default()),
                url: url.to_string(),
            }),
            unconfigured: None,
            fingerprint: None,
            shared: None,
        })
        .collect();
    rules
}

async fn decide_ms(rules: &RuleSet) -> f64 {
    let request = request();
    let started = Instant::now();
    let decision = evaluate(rules, &request, chrono::Utc::now(), BUDGET).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(
        decision.outcome,
        Outcome::Approved,
        "{:?}",
        decision.reasons
    );
    ms
}

struct Row {
    checks: usize,
    mode: &'static str,
    p50: f64,
    max: f64,
}

fn summarise(checks: usize, mode: &'static str, mut samples: Vec<f64>) -> Row {
    samples.sort_by(f64::total_cmp);
    Row {
        checks,
        mode,
        p50: samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN),
        max: samples.last().copied().unwrap_or(f64::NAN),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let total = Instant::now();
    let rows = runtime.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": true}))
                    .set_delay(DELAY),
            )
            .mount(&server)
            .await;
        let url = format!("{}/thing", server.uri());
        let client = reqwest::Client::new();
        // Open pooled connections first: the rows measure pimgate, not TCP handshakes.
        decide_ms(&rules_with(4, &url, &client)).await;

        let mut rows = Vec::new();
        // The floor: the same GET with bare reqwest, no pimgate at all.
        let mut bare = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            let body: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
            assert_eq!(body, json!({"ok": true}));
            bare.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        rows.push(summarise(1, "bare", bare));
        for checks in 1..=4 {
            let mut cold = Vec::with_capacity(RUNS);
            for _ in 0..RUNS {
                let rules = rules_with(checks, &url, &client);
                cold.push(decide_ms(&rules).await);
            }
            rows.push(summarise(checks, "cold", cold));

            let rules = rules_with(checks, &url, &client);
            decide_ms(&rules).await;
            let mut warm = Vec::with_capacity(RUNS);
            for _ in 0..RUNS {
                warm.push(decide_ms(&rules).await);
            }
            rows.push(summarise(checks, "warm", warm));
        }
        rows
    });

    let d = DELAY.as_secs_f64() * 1000.0;
    println!(
        "decision latency, {RUNS} runs per row, upstream delay d = {d:.0} ms (sequential would be n × d)"
    );
    println!(
        "{:>6} | {:>5} | {:>9} | {:>9} | {:>15}",
        "checks", "cache", "p50 ms", "max ms", "p50 - d ms"
    );
    println!("{}", "-".repeat(56));
    for row in &rows {
        let overhead = if row.mode != "warm" {
            format!("{:+.2}", row.p50 - d)
        } else {
            "n/a (no call)".to_string()
        };
        println!(
            "{:>6} | {:>5} | {:>9.3} | {:>9.3} | {:>15}",
            row.checks, row.mode, row.p50, row.max, overhead
        );
    }
    println!("bare = one reqwest GET without pimgate (the floor); warm = answers from the cache");
    println!("total bench time {:.1} s", total.elapsed().as_secs_f64());
}
