//! The metrics recorded while a decision is evaluated: `pimgate_check_results_total`,
//! `pimgate_check_duration_seconds` (once per check evaluation) and `pimgate_guard_results_total`
//! (once per applied guard), for every caller of `decision` alike.
//!
//! A submodule of `decision`, which records them. As in `http::decision_metrics`: `metrics::counter!` with labels builds, hashes and looks up its
//! key on every call (a guard's name was also copied into a new label each time), and a decision
//! runs several checks. The handles are registered once per label combination and kept per thread
//! instead, the first time a combination is seen (no zero-valued series appear), so the exported
//! series are exactly those the macros would write.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use metrics::{Counter, Histogram};

use super::GuardEffect;
use crate::checks::CheckStatus;
use crate::rules::PolicyMode;

/// Guards kept per thread. Their names come from the rule files, so a rule set has few; reloads
/// that rename guards could add more forever, so past this the cache starts over (the series stay in
/// the registry, only this thread's handles to them are dropped and registered again on use).
const MAX_GUARDS: usize = 256;

/// Records one evaluation of a check of `kind`.
pub fn check(kind: &'static str, status: CheckStatus, elapsed: Duration) {
    let cached = HANDLES.try_with(|handles| {
        let Ok(mut handles) = handles.try_borrow_mut() else {
            return false;
        };
        let series = handles.checks.entry(kind).or_insert_with(|| CheckSeries {
            duration: check_duration(kind),
            results: Default::default(),
        });
        series.duration.record(elapsed.as_secs_f64());
        series.results[status_index(status)]
            .get_or_insert_with(|| check_results(kind, status))
            .increment(1);
        true
    });
    if !matches!(cached, Ok(true)) {
        check_duration(kind).record(elapsed.as_secs_f64());
        check_results(kind, status).increment(1);
    }
}

/// Records the effect of one applied guard.
pub fn guard(name: &str, mode: PolicyMode, effect: GuardEffect) {
    let cached = HANDLES.try_with(|handles| {
        let Ok(mut handles) = handles.try_borrow_mut() else {
            return false;
        };
        let handles = &mut *handles;
        if !handles.guards.contains_key(name) {
            if handles.guards.len() >= MAX_GUARDS {
                handles.guards.clear();
            }
            handles.guards.insert(name.into(), Default::default());
        }
        let Some(series) = handles.guards.get_mut(name) else {
            return false;
        };
        series[mode_index(mode)][effect_index(effect)]
            .get_or_insert_with(|| guard_results(name, mode, effect))
            .increment(1);
        true
    });
    if !matches!(cached, Ok(true)) {
        guard_results(name, mode, effect).increment(1);
    }
}

thread_local! {
    static HANDLES: RefCell<Handles> = RefCell::new(Handles::default());
}

#[derive(Default)]
struct Handles {
    /// By check kind: the kinds are the registry's `&'static str` names, a fixed set.
    checks: HashMap<&'static str, CheckSeries>,
    /// By guard name (looked up by `&str`, so a known guard costs no allocation), then mode, effect.
    guards: HashMap<Box<str>, [[Option<Counter>; 4]; 2]>,
}

struct CheckSeries {
    duration: Histogram,
    results: [Option<Counter>; 3],
}

fn check_duration(kind: &'static str) -> Histogram {
    metrics::histogram!("pimgate_check_duration_seconds", "kind" => kind)
}

fn check_results(kind: &'static str, status: CheckStatus) -> Counter {
    let status = match status {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "fail",
        CheckStatus::Error => "error",
    };
    metrics::counter!("pimgate_check_results_total", "kind" => kind, "status" => status)
}

fn guard_results(name: &str, mode: PolicyMode, effect: GuardEffect) -> Counter {
    let mode = match mode {
        PolicyMode::Enforce => "enforce",
        PolicyMode::Audit => "audit",
    };
    let effect = match effect {
        GuardEffect::Pass => "pass",
        GuardEffect::Deny => "deny",
        GuardEffect::Error => "error",
        GuardEffect::Cap => "cap",
    };
    metrics::counter!(
        "pimgate_guard_results_total",
        "guard" => name.to_string(),
        "mode" => mode,
        "effect" => effect
    )
}

fn status_index(status: CheckStatus) -> usize {
    match status {
        CheckStatus::Pass => 0,
        CheckStatus::Fail => 1,
        CheckStatus::Error => 2,
    }
}

fn mode_index(mode: PolicyMode) -> usize {
    match mode {
        PolicyMode::Enforce => 0,
        PolicyMode::Audit => 1,
    }
}

fn effect_index(effect: GuardEffect) -> usize {
    match effect {
        GuardEffect::Pass => 0,
        GuardEffect::Deny => 1,
        GuardEffect::Error => 2,
        GuardEffect::Cap => 3,
    }
}

/// What `record` recorded into a recorder of its own, on a thread of its own (the handle caches are
/// per thread), as sorted lines without histogram quantiles (durations vary from run to run): the
/// metric modules' tests compare cached handles with per-call registration through it.
#[cfg(test)]
pub(crate) fn rendered_alone(record: impl FnOnce() + Send + 'static) -> Vec<String> {
    use metrics_exporter_prometheus::PrometheusBuilder;
    std::thread::spawn(move || {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, record);
        let mut lines: Vec<String> = handle
            .render()
            .lines()
            .filter(|line| !line.contains("quantile="))
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    })
    .join()
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(record: fn(usize)) -> Vec<String> {
        rendered_alone(move || {
            for round in 0..3 {
                record(round);
            }
        })
    }

    fn cached(round: usize) {
        check("duration", CheckStatus::Pass, Duration::from_micros(3));
        check(
            "hr",
            if round == 0 {
                CheckStatus::Error
            } else {
                CheckStatus::Pass
            },
            Duration::from_micros(9),
        );
        guard("leavers", PolicyMode::Enforce, GuardEffect::Pass);
        guard("contractors", PolicyMode::Audit, GuardEffect::Deny);
        for index in 0..=MAX_GUARDS {
            guard(&format!("g{index}"), PolicyMode::Enforce, GuardEffect::Cap);
        }
    }

    fn uncached(round: usize) {
        check_duration("duration").record(Duration::from_micros(3).as_secs_f64());
        check_results("duration", CheckStatus::Pass).increment(1);
        let hr = if round == 0 {
            CheckStatus::Error
        } else {
            CheckStatus::Pass
        };
        check_duration("hr").record(Duration::from_micros(9).as_secs_f64());
        check_results("hr", hr).increment(1);
        guard_results("leavers", PolicyMode::Enforce, GuardEffect::Pass).increment(1);
        guard_results("contractors", PolicyMode::Audit, GuardEffect::Deny).increment(1);
        for index in 0..=MAX_GUARDS {
            guard_results(&format!("g{index}"), PolicyMode::Enforce, GuardEffect::Cap).increment(1);
        }
    }

    #[test]
    fn cached_handles_export_exactly_what_registering_per_call_did() {
        let lines = rendered(cached);
        assert_eq!(lines, rendered(uncached));
        for expected in [
            r#"pimgate_check_results_total{kind="duration",status="pass"} 3"#,
            r#"pimgate_check_results_total{kind="hr",status="error"} 1"#,
            r#"pimgate_check_results_total{kind="hr",status="pass"} 2"#,
            r#"pimgate_check_duration_seconds_count{kind="hr"} 3"#,
            r#"pimgate_guard_results_total{guard="leavers",mode="enforce",effect="pass"} 3"#,
            r#"pimgate_guard_results_total{guard="contractors",mode="audit",effect="deny"} 3"#,
            // More guards than a thread keeps: the cache started over and still counted each one.
            r#"pimgate_guard_results_total{guard="g0",mode="enforce",effect="cap"} 3"#,
        ] {
            assert!(
                lines.iter().any(|line| line == expected),
                "missing `{expected}` in {lines:#?}"
            );
        }
        assert!(
            !lines.iter().any(|line| line.contains(r#"status="fail""#)),
            "a combination never seen has no series"
        );
    }
}
