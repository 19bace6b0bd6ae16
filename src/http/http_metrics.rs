//! The metrics of every HTTP request, on both listeners: `pimgate_http_requests_total` and
//! `pimgate_http_request_duration_seconds`, by route pattern and status.
//!
//! As in `decision_metrics`: `metrics::counter!` with labels builds, hashes and looks up its key on
//! every call, and its labels were two `String`s allocated per request. The handles are registered
//! once per (route, status) and kept per worker thread instead. The series are exactly those the
//! macros would write, registered the first time a combination is seen.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use metrics::{Counter, Histogram};

/// (route, status) pairs kept per thread. Routes are the app's patterns plus `(unmatched)` and
/// statuses a handful, so a thread sees few; past this the cache starts over (the series stay in
/// the registry, only this thread's handles are dropped and registered again on use).
const MAX_SERIES: usize = 128;

/// Records one answered request.
pub fn record(route: &str, status: u16, elapsed: Duration) {
    let cached = HANDLES.try_with(|handles| {
        let Ok(mut handles) = handles.try_borrow_mut() else {
            return false;
        };
        let Some(series) = handles.series(route, status) else {
            return false;
        };
        series.record(elapsed);
        true
    });
    if !matches!(cached, Ok(true)) {
        Series::register(route, status).record(elapsed);
    }
}

thread_local! {
    static HANDLES: RefCell<Handles> = RefCell::new(Handles::default());
}

/// Route pattern → its statuses' series (looked up by `&str`, so a known route costs no allocation).
#[derive(Default)]
struct Handles {
    by_route: HashMap<Box<str>, Vec<Series>>,
    count: usize,
}

impl Handles {
    fn series(&mut self, route: &str, status: u16) -> Option<&Series> {
        let known = self
            .by_route
            .get(route)
            .is_some_and(|series| series.iter().any(|series| series.status == status));
        if !known && self.count >= MAX_SERIES {
            self.by_route.clear();
            self.count = 0;
        }
        if !self.by_route.contains_key(route) {
            self.by_route.insert(route.into(), Vec::new());
        }
        let statuses = self.by_route.get_mut(route)?;
        match statuses.iter().position(|series| series.status == status) {
            Some(index) => statuses.get(index),
            None => {
                self.count += 1;
                statuses.push(Series::register(route, status));
                statuses.last()
            }
        }
    }
}

struct Series {
    status: u16,
    requests: Counter,
    duration: Histogram,
}

impl Series {
    fn register(route: &str, status: u16) -> Self {
        let label = status.to_string();
        Self {
            status,
            requests: metrics::counter!(
                "pimgate_http_requests_total",
                "route" => route.to_string(),
                "status" => label.clone()
            ),
            duration: metrics::histogram!(
                "pimgate_http_request_duration_seconds",
                "route" => route.to_string(),
                "status" => label
            ),
        }
    }

    fn record(&self, elapsed: Duration) {
        self.requests.increment(1);
        self.duration.record(elapsed.as_secs_f64());
    }
}

/// What `record` does without the cache: the macros, per request (the tests' reference).
#[cfg(test)]
fn record_uncached(route: &str, status: u16, elapsed: Duration) {
    Series::register(route, status).record(elapsed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(record_with: fn(&str, u16, Duration), extra_routes: usize) -> Vec<String> {
        crate::decision::rendered_alone(move || {
            for (route, status, ms) in [
                ("/v1/evaluate", 200, 3),
                ("/v1/evaluate", 401, 1),
                ("(unmatched)", 404, 0),
                ("/v1/evaluate", 200, 2),
            ] {
                record_with(route, status, Duration::from_millis(ms));
            }
            for index in 0..extra_routes {
                record_with(&format!("/r{index}"), 200, Duration::ZERO);
            }
            record_with("/v1/evaluate", 200, Duration::from_millis(5));
        })
    }

    #[test]
    fn cached_handles_export_exactly_what_registering_per_request_did() {
        let cached = rendered(record, 0);
        assert_eq!(cached, rendered(record_uncached, 0));
        for expected in [
            r#"pimgate_http_requests_total{route="/v1/evaluate",status="200"} 3"#,
            r#"pimgate_http_requests_total{route="/v1/evaluate",status="401"} 1"#,
            r#"pimgate_http_requests_total{route="(unmatched)",status="404"} 1"#,
            r#"pimgate_http_request_duration_seconds_count{route="/v1/evaluate",status="200"} 3"#,
        ] {
            assert!(
                cached.iter().any(|line| line == expected),
                "missing `{expected}` in {cached:#?}"
            );
        }
    }

    #[test]
    fn a_thread_that_saw_more_series_than_it_keeps_still_counts_each_one() {
        let cached = rendered(record, MAX_SERIES + 5);
        assert_eq!(cached, rendered(record_uncached, MAX_SERIES + 5));
        assert!(
            cached.iter().any(|line| line
                == r#"pimgate_http_requests_total{route="/v1/evaluate",status="200"} 3"#),
            "{cached:#?}"
        );
    }
}
