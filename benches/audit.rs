//! One audit record, serialized as the audit log writes it: into a buffer reused from record to
//! record (`audit::write_line`, what `AuditLog` does per thread) against a fresh `serde_json::to_vec`
//! per record (what it did before). Plus the justification masking the `/v1/evaluate` handler now
//! does once per request instead of once per consumer (audit, console, notifications).
//!
//! The record is realistic: `tests/fixtures/requests/group-activation.json` decided by the repo's
//! `rules/` with the example configuration's local connectors (HR file, on-call file), recorded in a
//! fact book as the service does, with a caller and request id filled in.
//!
//! `cargo bench --bench audit` (a short run: `-- --warm-up-time 1 --measurement-time 5`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use pimgate::audit::{AuditLog, AuditRecord, CallerSummary, write_line};
use pimgate::connectors::facts::{self, FactBook};
use pimgate::connectors::{BuildContext, Connectors, ConnectorsSettings};
use pimgate::decision;
use pimgate::payload::Stage;
use pimgate::rules;
use pimgate::settings::{AuditSettings, AuditSink, JustificationMasking, Settings};

const BUDGET: Duration = Duration::from_secs(1);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let settings = Settings::load(Some(Path::new("config/example.toml"))).unwrap();
    let local = ConnectorsSettings {
        hr_file: settings.connectors.hr_file.clone(),
        oncall_file: settings.connectors.oncall_file.clone(),
        ..Default::default()
    };
    let connectors: Arc<Connectors> = Connectors::build(
        &local,
        &BuildContext {
            http: reqwest::Client::new(),
            tenant_id: settings.auth.tenant_id.clone(),
        },
    )
    .unwrap();
    let rules = rules::load_with(Path::new("rules"), &connectors).unwrap();
    let body = std::fs::read("tests/fixtures/requests/group-activation.json").unwrap();
    let request = pimgate::payload::decode(&body).unwrap();
    let book = FactBook::recording();
    let decision = runtime.block_on(facts::scope(
        Arc::clone(&book),
        decision::evaluate_at_stage(
            &rules,
            &request,
            Stage::PreApproval,
            chrono::Utc::now(),
            BUDGET,
        ),
    ));
    let facts = book.facts();
    let audit = AuditLog::new(&AuditSettings {
        sink: AuditSink::Off,
        justification: JustificationMasking::Hash,
        ..AuditSettings::default()
    })
    .unwrap();
    let justification = audit.mask_justification(request.justification.as_deref());
    let caller = CallerSummary {
        app_id: "00000000-0000-0000-0000-00000000c0de",
        token_version: "v2",
        dev: false,
    };
    let record = AuditRecord {
        time: chrono::Utc::now(),
        http_request_id: "0192f6c4-6d1e-7c3a-9b5e-2f1a0c9d8e7f",
        latency_ms: 1.25,
        justification_masked: true,
        justification: justification.as_deref(),
        caller: &caller,
        facts: &facts,
        ..AuditRecord::of(&decision, &request)
    };
    let mut reused = Vec::new();
    write_line(&mut reused, &record).unwrap();
    eprintln!(
        "audit record: {} bytes, {} checks, {} facts",
        reused.len(),
        decision.checks.len(),
        facts.len()
    );

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("audit_record");
    group.bench_function("reused buffer (write_line)", |b| {
        b.iter(|| {
            write_line(&mut reused, black_box(&record)).unwrap();
            black_box(reused.len())
        })
    });
    group.bench_function("serde_json::to_vec per record", |b| {
        b.iter(|| {
            let mut line = serde_json::to_vec(black_box(&record)).unwrap();
            line.push(b'\n');
            black_box(line)
        })
    });
    group.finish();

    let mut group = criterion.benchmark_group("justification_hash");
    group.bench_function("masked once", |b| {
        b.iter(|| {
            black_box(audit.masked_justification(black_box(request.justification.as_deref())))
        })
    });
    group.bench_function("masked three times", |b| {
        b.iter(|| {
            for _ in 0..3 {
                black_box(audit.mask_justification(black_box(request.justification.as_deref())));
            }
        })
    });
    group.finish();
    criterion.final_summary();
}
