//! A circuit breaker per upstream: after a run of failures pimgate stops calling a failing system
//! for a while, so a dead ServiceNow costs every decision nothing instead of a full timeout.
//!
//! Closed → (K consecutive failed attempts) → Open for `cooldown` → the next call is the one probe
//! (half-open) → its result closes or re-opens the circuit. The state lives behind a `std` mutex that
//! is never held across an await: callers take a [`Permit`], do their I/O, then report on it.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// How quickly the breaker gives up on an upstream and how long it leaves it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitSettings {
    /// Consecutive failed attempts (timeouts, refused connections, 5xx, 429, unreadable answers)
    /// that open the circuit. `0` disables the breaker.
    pub failure_threshold: u32,
    /// How long an open circuit fails calls at once before one probe is let through.
    pub cooldown_ms: u64,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown_ms: 30_000,
        }
    }
}

impl CircuitSettings {
    pub fn cooldown(&self) -> Duration {
        Duration::from_millis(self.cooldown_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; everyone else is refused until it reports.
    HalfOpen,
}

/// What an attempt taught the breaker about the upstream's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The upstream answered sensibly (2xx, 404, and 4xx other than 429: those are about the request).
    Healthy,
    /// Timeout, refused or reset connection, 5xx, 429, or a body that could not be read.
    Failed,
}

/// What a report did to the circuit, so the caller can count and log the transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    Opened,
    Closed,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    settings: CircuitSettings,
    state: Mutex<State>,
}

/// Leave to make one attempt. Dropped without a report (the caller's future was cancelled), a probe
/// hands its turn to the next caller instead of wedging the circuit half-open for ever.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    reported: bool,
}

impl CircuitBreaker {
    pub fn new(settings: CircuitSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// A permit to call the upstream, or `None` while the circuit is open (or a probe is out).
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        if self.settings.failure_threshold == 0 {
            return Some(self.permit(false));
        }
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Some(self.permit(false)),
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                Some(self.permit(true))
            }
            State::Open { .. } | State::HalfOpen => None,
        }
    }

    pub fn settings(&self) -> CircuitSettings {
        self.settings
    }

    /// Whether calls are refused right now; for tests and health output.
    pub fn is_open(&self) -> bool {
        match *self.lock() {
            State::Closed { .. } => false,
            State::Open { until } => Instant::now() < until,
            State::HalfOpen => true,
        }
    }

    fn permit(&self, probe: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            probe,
            reported: false,
        }
    }

    fn report(&self, probe: bool, verdict: Verdict) -> Transition {
        if self.settings.failure_threshold == 0 {
            return Transition::None;
        }
        let mut state = self.lock();
        let open = State::Open {
            until: super::limits::instant_after(Instant::now(), self.settings.cooldown()),
        };
        match (*state, verdict) {
            (State::HalfOpen, Verdict::Healthy) if probe => {
                *state = State::Closed { failures: 0 };
                Transition::Closed
            }
            (State::HalfOpen, Verdict::Failed) if probe => {
                *state = open;
                Transition::Opened
            }
            (State::Closed { .. }, Verdict::Healthy) => {
                *state = State::Closed { failures: 0 };
                Transition::None
            }
            (State::Closed { failures }, Verdict::Failed) => {
                let failures = failures.saturating_add(1);
                if failures >= self.settings.failure_threshold {
                    *state = open;
                    Transition::Opened
                } else {
                    *state = State::Closed { failures };
                    Transition::None
                }
            }
            // A straggler from before the circuit opened says nothing about the upstream now.
            _ => Transition::None,
        }
    }

    fn abandon_probe(&self) {
        let mut state = self.lock();
        if *state == State::HalfOpen {
            *state = State::Open {
                until: Instant::now(),
            };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value that is always valid, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Permit<'_> {
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    pub fn report(mut self, verdict: Verdict) -> Transition {
        self.reported = true;
        self.breaker.report(self.probe, verdict)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            self.breaker.abandon_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(CircuitSettings {
            failure_threshold: threshold,
            cooldown_ms: 1_000,
        })
    }

    fn fail(breaker: &CircuitBreaker) -> Transition {
        breaker
            .try_acquire()
            .map(|permit| permit.report(Verdict::Failed))
            .unwrap_or(Transition::None)
    }

    #[tokio::test(start_paused = true)]
    async fn circuit_opens_after_the_threshold_of_consecutive_failures() {
        let breaker = breaker(3);
        assert_eq!(fail(&breaker), Transition::None);
        assert_eq!(fail(&breaker), Transition::None);
        assert_eq!(fail(&breaker), Transition::Opened);
        assert!(breaker.try_acquire().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_answer_resets_the_failure_count() {
        let breaker = breaker(2);
        fail(&breaker);
        breaker
            .try_acquire()
            .map(|permit| permit.report(Verdict::Healthy));
        assert_eq!(fail(&breaker), Transition::None);
        assert!(breaker.try_acquire().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_cooldown_exactly_one_probe_is_let_through() {
        let breaker = breaker(1);
        fail(&breaker);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(breaker.try_acquire().is_none());
        tokio::time::advance(Duration::from_millis(1)).await;
        let probe = breaker.try_acquire();
        assert!(probe.as_ref().is_some_and(Permit::is_probe));
        assert!(breaker.try_acquire().is_none(), "second caller refused");
        let transition = probe.map(|permit| permit.report(Verdict::Healthy));
        assert_eq!(transition, Some(Transition::Closed));
        assert!(
            breaker
                .try_acquire()
                .is_some_and(|permit| !permit.is_probe())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_the_circuit_for_another_cooldown() {
        let breaker = breaker(1);
        fail(&breaker);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(fail(&breaker), Transition::Opened);
        assert!(breaker.is_open());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(breaker.try_acquire().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_the_next_caller_probe() {
        let breaker = breaker(1);
        fail(&breaker);
        tokio::time::advance(Duration::from_secs(1)).await;
        let probe = breaker.try_acquire();
        assert!(probe.is_some());
        drop(probe);
        assert!(
            breaker
                .try_acquire()
                .is_some_and(|permit| permit.is_probe())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_threshold_disables_the_breaker() {
        let breaker = breaker(0);
        for _ in 0..10 {
            assert_eq!(fail(&breaker), Transition::None);
        }
        assert!(breaker.try_acquire().is_some());
    }
}
