//! The decision path with notifications off and on: one evaluation of a catch-all policy plus what
//! the `/v1/evaluate` handler adds for notifications (filter, event, masked justification,
//! `try_send`). "on, sent" has a Teams target whose filter selects every decision and whose queue
//! the delivery thread (nice 19) drains to a loopback stand-in. The point is that the three rows are within noise
//! of each other: the handler never waits for a receiver.
//!
//! `cargo bench --bench notify` (a short run: `-- --warm-up-time 1 --measurement-time 5`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use pimgate::audit::AuditLog;
use pimgate::connectors::secrets::SecretRef;
use pimgate::decision::{Outcome, evaluate};
use pimgate::notify::{Notifier, NotifyKind, NotifySettings};
use pimgate::rules::{self, RuleSet};
use pimgate::settings::{AuditSettings, AuditSink, JustificationMasking};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const BUDGET: Duration = Duration::from_secs(1);

fn target(outcomes: &[&str], url_file: &std::path::Path) -> NotifySettings {
    NotifySettings {
        name: "bench".into(),
        kind: NotifyKind::Teams,
        url: Some(SecretRef {
            env: None,
            file: Some(url_file.to_path_buf()),
        }),
        secret: None,
        outcomes: outcomes.iter().map(|o| o.to_string()).collect(),
        policies: Vec::new(),
        tiers: Vec::new(),
        stages: Vec::new(),
        shadow_disagreement: false,
        queue_capacity: 10_000,
        timeout_ms: 5000,
        max_attempts: 1,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules_file = dir.path().join("rules.yaml");
    std::fs::write(
        &rules_file,
        "policies:\n  - name: bench\n    match: {}\n    decide: Approved\n    reason: bench\n",
    )
    .unwrap();
    let rules: RuleSet = rules::load(&rules_file).unwrap();
    let body = std::fs::read("tests/fixtures/requests/group-activation.json").unwrap();
    let request = pimgate::payload::decode(&body).unwrap();
    let audit = AuditLog::new(&AuditSettings {
        sink: AuditSink::Off,
        justification: JustificationMasking::Hash,
        ..AuditSettings::default()
    })
    .unwrap();
    let server = runtime.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(202))
            .mount(&server)
            .await;
        server
    });
    let url_file = dir.path().join("teams.url");
    std::fs::write(&url_file, server.uri()).unwrap();
    let _entered = runtime.enter();
    let notifiers = [
        ("notifications off", Notifier::default()),
        (
            "on, filtered out",
            Notifier::start(&[target(&["Denied"], &url_file)]).unwrap(),
        ),
        (
            "on, sent",
            Notifier::start(&[target(&[], &url_file)]).unwrap(),
        ),
    ];

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("decision_path");
    for (name, notifier) in &notifiers {
        group.bench_function(*name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let decision = evaluate(&rules, &request, chrono::Utc::now(), BUDGET).await;
                    assert_eq!(decision.outcome, Outcome::Approved);
                    notifier.notify(
                        &decision,
                        &request,
                        audit
                            .masked_justification(request.justification.as_deref())
                            .as_deref(),
                    );
                    black_box(decision)
                })
            })
        });
    }
    group.finish();
    criterion.final_summary();
}
