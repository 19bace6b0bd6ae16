//! `pimgate rules test`: run the cases kept in `*.test.yaml` files beside the rules, on a fixed clock,
//! through the same `decision::evaluate` the service uses.
//!
//! - `file`: reading a test file into cases, every problem at once at its `file:line:column`;
//! - `request`: the shorthand request a case may write instead of a captured PIM body;
//! - `stubs`: stubbed upstream facts (`facts: { itsm: fail }`);
//! - `records`: stubbed upstream records (`facts: { itsm: { record: ... } }`), answered through a
//!   replaying fact book so the real checks run; `stub_connectors`: the connectors they run with;
//! - `expect`: what a case expects (outcome, policy, reasons, guards, shadow decisions);
//! - `junit`: the JUnit XML report for CI systems.

mod expect;
mod file;
pub mod junit;
mod records;
mod request;
mod stub_connectors;
mod stubs;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::decision::evaluate_at_stage;
use crate::rules::compile::is_test_file;
use crate::vocabulary::diagnostic::Diagnostic;

pub use request::DEFAULT_PRINCIPAL;

const CASE_BUDGET: Duration = Duration::from_secs(5);

/// How a run is narrowed.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Run only the cases whose name contains this text (ignoring case); the others are counted
    /// as filtered out.
    pub filter: Option<String>,
}

/// One case that ran.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub name: String,
    pub file: PathBuf,
    /// Where the case's `name:` is written (1-based).
    pub line: usize,
    pub column: usize,
    /// What differed, when it failed.
    pub failure: Option<String>,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestReport {
    pub passed: usize,
    pub failed: usize,
    /// Cases not run because their name does not contain `--filter`'s text.
    pub filtered_out: usize,
    /// (case name, test file, what differed).
    pub failures: Vec<(String, PathBuf, String)>,
    /// One line per case, in run order, for the printed report.
    pub lines: Vec<String>,
    /// Every case that ran, in run order (the JUnit report).
    pub cases: Vec<CaseResult>,
}

impl fmt::Display for TestReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(formatter, "{line}")?;
        }
        write!(formatter, "{} passed, {} failed", self.passed, self.failed)?;
        if self.filtered_out > 0 {
            write!(formatter, ", {} filtered out", self.filtered_out)?;
        }
        Ok(())
    }
}

/// Loads the rules at `path` and runs every case of the test files beside them: for a folder, all its
/// `*.test.yaml`/`*.test.yml`; for a file `x.yaml`, `x.test.yaml` or `x.test.yml`. Rule or test-file
/// problems are returned as `Err`; failing cases are part of the report.
pub async fn run_tests(path: &Path) -> Result<TestReport, Vec<Diagnostic>> {
    run_tests_with(path, &crate::connectors::Connectors::none()).await
}

/// As [`run_tests`], with the connectors of a configuration (file-based sources work offline).
pub async fn run_tests_with(
    path: &Path,
    connectors: &Arc<crate::connectors::Connectors>,
) -> Result<TestReport, Vec<Diagnostic>> {
    run_tests_filtered(path, connectors, &TestOptions::default()).await
}

/// As [`run_tests_with`], running only the cases `options` select. Every test file is read and
/// checked whole even so: a filter never hides a broken case.
pub async fn run_tests_filtered(
    path: &Path,
    connectors: &Arc<crate::connectors::Connectors>,
    options: &TestOptions,
) -> Result<TestReport, Vec<Diagnostic>> {
    let rules = crate::rules::load_with(path, connectors)?;
    let files = test_files(path);
    if files.is_empty() {
        return Err(vec![
            Diagnostic::error(
                "",
                "no test files found",
                "add cases in a `*.test.yaml` file beside the rules",
            )
            .in_file(path),
        ]);
    }
    let mut problems = Vec::new();
    let mut parsed = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) => {
                problems.push(
                    Diagnostic::error(
                        "",
                        format!("cannot read the test file: {error}"),
                        "check the file",
                    )
                    .in_file(file),
                );
                continue;
            }
        };
        match file::read_cases(&file, &text) {
            Ok(cases) => parsed.push((file, cases)),
            Err(errors) => problems.extend(errors),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let filter = options.filter.as_deref().map(str::to_lowercase);
    let mut report = TestReport::default();
    // Built on the first record-stubbed case: the rules again, with stand-ins for the connectors
    // they need that are not configured.
    let mut stubbed: Option<(crate::rules::RuleSet, Arc<crate::connectors::Connectors>)> = None;
    for (file, cases) in &parsed {
        for case in cases {
            if let Some(filter) = &filter
                && !case.name.to_lowercase().contains(filter)
            {
                report.filtered_out += 1;
                continue;
            }
            let started = Instant::now();
            let failure = if case.facts.records.is_empty() {
                let rules = stubs::with_facts(&rules, &case.facts.statuses);
                let decision =
                    evaluate_at_stage(&rules, &case.request, case.stage, case.now, CASE_BUDGET)
                        .await;
                expect::compare(&case.expect, &decision)
            } else {
                if stubbed.is_none() {
                    stubbed = Some(stubbed_rules(path, connectors, &rules)?);
                }
                let Some((stub_rules, stand_ins)) = &stubbed else {
                    continue;
                };
                run_with_records(case, stub_rules, stand_ins).await
            };
            let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            match &failure {
                None => {
                    report.passed += 1;
                    report.lines.push(format!("ok    {}", case.name));
                }
                Some(explanation) => {
                    report.failed += 1;
                    report.lines.push(format!(
                        "FAIL  {}
      {}:{}:{}: {explanation}",
                        case.name,
                        file.display(),
                        case.line,
                        case.column
                    ));
                    report
                        .failures
                        .push((case.name.clone(), file.clone(), explanation.clone()));
                }
            }
            report.cases.push(CaseResult {
                name: case.name.clone(),
                file: file.clone(),
                line: case.line,
                column: case.column,
                failure,
                duration_ms,
            });
        }
    }
    Ok(report)
}

/// The rules compiled against the configured connectors plus stand-ins (`stub_connectors`).
fn stubbed_rules(
    path: &Path,
    connectors: &Arc<crate::connectors::Connectors>,
    rules: &crate::rules::RuleSet,
) -> Result<(crate::rules::RuleSet, Arc<crate::connectors::Connectors>), Vec<Diagnostic>> {
    let missing = stub_connectors::missing_sections(rules);
    let stand_ins = stub_connectors::with_stand_ins(connectors, &missing).map_err(|message| {
        vec![
            Diagnostic::error(
                "",
                format!("cannot prepare the connectors for stubbed records: {message}"),
                "report this as a bug",
            )
            .in_file(path),
        ]
    })?;
    let rules = crate::rules::load_with(path, &stand_ins)?;
    Ok((rules, stand_ins))
}

/// A case with record stubs: the real checks (status stubs still swapped) under a replaying fact
/// book holding only the case's records, so no upstream is ever asked and a question no stub
/// answers is not evaluated. A failure names those questions.
async fn run_with_records(
    case: &file::Case,
    rules: &crate::rules::RuleSet,
    connectors: &Arc<crate::connectors::Connectors>,
) -> Option<String> {
    use crate::connectors::facts::{self, FactBook};
    let http: Vec<String> = connectors.http.keys().cloned().collect();
    let opa: Vec<String> = connectors.opa.keys().cloned().collect();
    let stubbed: Vec<facts::Fact> = case
        .facts
        .records
        .iter()
        .flat_map(|stub| records::facts_for(stub, &http, &opa, case.now))
        .collect();
    let book = FactBook::replaying(stubbed);
    let rules = stubs::with_facts(rules, &case.facts.statuses);
    let decision = facts::scope(
        Arc::clone(&book),
        evaluate_at_stage(&rules, &case.request, case.stage, case.now, CASE_BUDGET),
    )
    .await;
    let failure = expect::compare(&case.expect, &decision)?;
    let mut unanswered: Vec<String> = book
        .misses()
        .into_iter()
        .map(|(source, _)| source)
        .collect();
    unanswered.dedup();
    if unanswered.is_empty() {
        Some(failure)
    } else {
        Some(format!(
            "{failure} (no stub answered: {}; stub them under `facts`)",
            unanswered.join(", ")
        ))
    }
}

fn test_files(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .collect()
            })
            .unwrap_or_default();
        files.retain(|file| file.is_file() && is_test_file(file));
        files.sort();
        return files;
    }
    let Some(stem) = path.file_stem() else {
        return Vec::new();
    };
    ["test.yaml", "test.yml"]
        .iter()
        .map(|extension| path.with_file_name(format!("{}.{extension}", stem.to_string_lossy())))
        .filter(|file| file.is_file())
        .collect()
}
