//! Rule scale: per-decision selection time, load time and memory for 10, 1,000 and 10,000
//! generated policies, the indexed `select` against the scan of every policy
//! (`select_explained`); plus one `Matcher::mismatch` and one CEL `when` evaluation.
//!
//! The generated rules are what a large tenant might write: one policy per custom Entra role, per
//! Azure subscription (`/subscriptions/<id>/*`) and per group, every tenth with a `when`, every
//! fiftieth in `mode: audit`, and a catch-all last. The request matches the last specific policy,
//! the worst case for a scan. Memory is measured in a child process per size (this binary re-run
//! with `PIMGATE_BENCH_RSS=<n>`): resident set size from `/proc/self/statm` before and after
//! `rules::load`, with the rule set kept alive, so nothing earlier in the process blurs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{BenchmarkId, Criterion};
use pimgate::payload::{ActivationRequest, ResourceType, Stage, Target};
use pimgate::rules::cel::Condition;
use pimgate::rules::{self, RuleSet, Selection};

#[path = "../tests/support/rules.rs"]
mod common_rules;

const SIZES: [usize; 3] = [10, 1_000, 10_000];
const RSS_VARIABLE: &str = "PIMGATE_BENCH_RSS";

fn guid(kind: u32, index: usize) -> String {
    format!("{kind:08x}-0000-4000-8000-{index:012x}")
}

/// `n` policies: `n - 1` specific ones cycling through role, subscription and group, then a catch-all.
fn rules_yaml(n: usize) -> String {
    let mut yaml = String::from("policies:\n");
    for index in 0..n.saturating_sub(1) {
        let criterion = match index % 3 {
            0 => format!("roles: [{}]", guid(0xaaaa_0000, index)),
            1 => format!(
                "resource_types: [azureResources], scopes: [/subscriptions/{}/*]",
                guid(0x5ab5_0000, index)
            ),
            _ => format!("groups: [{}]", guid(0x6600_0000, index)),
        };
        write!(
            yaml,
            "  - name: policy-{index}\n    match: {{ {criterion} }}\n"
        )
        .unwrap();
        if index % 10 == 9 {
            yaml.push_str("    when: 'request.duration <= duration(\"8h\")'\n");
        }
        if index % 50 == 49 {
            yaml.push_str("    mode: audit\n");
        }
        yaml.push_str("    decide: Approved\n    reason: generated\n");
    }
    yaml.push_str(
        "  - name: everyone-else\n    match: {}\n    decide: Denied\n    reason: no policy\n",
    );
    yaml
}

/// A request for the last specific policy's target (near the end: the worst case for a scan).
fn request_for(n: usize) -> ActivationRequest {
    let last = n.saturating_sub(2);
    let (target, resource_type) = match last % 3 {
        0 => (
            Target::EntraRole {
                role_definition_id: guid(0xaaaa_0000, last),
                directory_scope_id: "/".to_string(),
                app_scope_id: None,
            },
            ResourceType::EntraRoles,
        ),
        1 => {
            let scope = format!(
                "/subscriptions/{}/resourceGroups/app",
                guid(0x5ab5_0000, last)
            );
            (
                Target::AzureRole {
                    role_definition_id: guid(0xbbbb_0000, 1),
                    role_definition_path: format!(
                        "{scope}/providers/Microsoft.Authorization/roleDefinitions/x"
                    ),
                    scope,
                },
                ResourceType::AzureResources,
            )
        }
        _ => (
            Target::Group {
                group_id: guid(0x6600_0000, last),
                access_id: pimgate::payload::GroupAccess::Member,
            },
            ResourceType::EntraGroups,
        ),
    };
    common_rules::request(target, resource_type)
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T19:05:00+01:00")
        .unwrap()
        .with_timezone(&Utc)
}

/// The rule file for `n` policies in its own temp dir (kept alive by the returned guard).
fn rules_file(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, rules_yaml(n)).unwrap();
    (dir, path)
}

fn load(n: usize) -> RuleSet {
    let (_dir, path) = rules_file(n);
    let rules = rules::load(&path).unwrap_or_else(|problems| panic!("{problems:?}"));
    assert!(rules.warnings.is_empty(), "{:?}", rules.warnings);
    rules
}

fn deciding(selection: &Selection<'_>) -> String {
    match selection {
        Selection::Matched { policy, .. } => policy.name.clone(),
        other => panic!("no policy matched: {other:?}"),
    }
}

fn select(c: &mut Criterion) {
    let mut group = c.benchmark_group("select");
    for n in SIZES {
        let rules = load(n);
        let request = request_for(n);
        let expected = format!("policy-{}", n - 2);
        assert_eq!(
            deciding(&rules.select(&request, Stage::PreApproval, now())),
            expected
        );
        assert_eq!(
            deciding(&rules.select_explained(&request, Stage::PreApproval, now())),
            expected
        );
        group.bench_with_input(BenchmarkId::new("indexed", n), &n, |b, _| {
            b.iter(|| black_box(rules.select(black_box(&request), Stage::PreApproval, now())))
        });
        group.bench_with_input(BenchmarkId::new("scan", n), &n, |b, _| {
            b.iter(|| {
                black_box(rules.select_explained(black_box(&request), Stage::PreApproval, now()))
            })
        });
    }
    group.finish();
}

fn load_time(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    for n in SIZES {
        let (_dir, path) = rules_file(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &path, |b, path| {
            b.iter(|| black_box(rules::load(path).unwrap()))
        });
    }
    group.finish();
}

fn matching(c: &mut Criterion) {
    let rules = load(10);
    let request = request_for(10);
    // policy-8 is a group policy; the request is for its group: every criterion is compared.
    let matcher = &rules.policies[8].matcher;
    assert!(matcher.mismatch(&request, Stage::PreApproval).is_none());
    c.bench_function("matcher/mismatch", |b| {
        b.iter(|| black_box(matcher.mismatch(black_box(&request), Stage::PreApproval)))
    });
    let condition = Condition::compile(
        "request.duration <= duration(\"2h\") && request.tier != \"Critical\" && request.ticket_system == \"ServiceNow\"",
    )
    .unwrap();
    assert_eq!(condition.evaluate(&request, now()), Ok(true));
    c.bench_function("cel/when", |b| {
        b.iter(|| black_box(condition.evaluate(black_box(&request), now())))
    });
}

fn resident_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// In the child: load `n` policies once and print the RSS growth and the index's estimated size.
fn measure_memory(n: usize) {
    let (_dir, path) = rules_file(n);
    let before = resident_kib();
    let rules = rules::load(&path).unwrap();
    let after = resident_kib();
    println!(
        "memory/{n}: rss +{} KiB after load ({before} -> {after} KiB), index ~{} KiB",
        after.saturating_sub(before),
        rules.index_estimated_bytes() / 1024
    );
    black_box(rules);
}

fn memory() {
    let program = std::env::current_exe().unwrap();
    for n in SIZES {
        let output = std::process::Command::new(&program)
            .env(RSS_VARIABLE, n.to_string())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
}

fn main() {
    if let Ok(n) = std::env::var(RSS_VARIABLE) {
        measure_memory(n.parse().unwrap());
        return;
    }
    memory();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    select(&mut criterion);
    load_time(&mut criterion);
    matching(&mut criterion);
    criterion.final_summary();
}
