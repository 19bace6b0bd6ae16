//! Caps on the numbers upstreams send, and saturating time arithmetic for what pimgate derives
//! from them.
//!
//! A number in an upstream answer (`Retry-After`, `ratelimit-reset`, `expires_in`) is data from a
//! system pimgate does not control: a broken proxy or a hostile endpoint may send `u64::MAX`, a
//! negative number, a fraction or a date in the year 9999. `Instant + Duration` panics on
//! overflow, so every such number goes through this module: it is read leniently, clamped to a
//! documented range, and turned into an instant without overflow. Nothing here can make a decision
//! more permissive: the caps only bound how long pimgate waits for, or reuses, an upstream's word.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// The longest wait an upstream's `Retry-After` / `ratelimit-reset` is honoured with. Decisions
/// have a deadline of seconds, so a longer hint only ever means "no retry"; the cap keeps the
/// arithmetic on it small.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The shortest lifetime an OAuth token (`expires_in`) is taken to have: a token endpoint answering
/// `0` or a negative number would otherwise make every request fetch a new token. A token the
/// upstream really revokes early is answered with 401, which drops it (both connectors do).
pub const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The longest lifetime an OAuth token is taken to have (Entra issues 60–90 minutes, ServiceNow
/// 30 minutes by default): a longer `expires_in` is read as this.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a failed token request is remembered (`oauth::TokenSource`): lookups in that time fail at
/// once with the same error instead of each waiting for a token endpoint that just failed.
pub const FAILED_TOKEN_TTL: Duration = Duration::from_secs(5);

/// An instant beyond every cap here, for `Instant` arithmetic that would overflow: far enough to be
/// "never" for a process, near enough to be representable on every platform.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `now + wait`, saturating instead of panicking: an unrepresentable instant becomes
/// `FAR_FUTURE` from now (or `now` itself if even that is not representable, i.e. "already due").
pub fn instant_after(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// An OAuth `expires_in` as token endpoints send it: a JSON number (integer, negative or
/// fractional) or a numeric string, clamped to [`MIN_TOKEN_LIFETIME`, `MAX_TOKEN_LIFETIME`].
/// `None` for anything else (an object, `NaN`, `inf`, text): the caller decides what that means.
pub fn token_lifetime(expires_in: &serde_json::Value) -> Option<Duration> {
    let seconds = match expires_in {
        serde_json::Value::Number(number) => number.as_f64()?,
        serde_json::Value::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !seconds.is_finite() {
        return None;
    }
    Some(clamp_seconds(
        seconds,
        MIN_TOKEN_LIFETIME,
        MAX_TOKEN_LIFETIME,
    ))
}

/// `seconds` as a duration within `[min, max]`; never calls a panicking constructor.
fn clamp_seconds(seconds: f64, min: Duration, max: Duration) -> Duration {
    if seconds <= min.as_secs_f64() {
        min
    } else if seconds >= max.as_secs_f64() {
        max
    } else {
        Duration::try_from_secs_f64(seconds).unwrap_or(max)
    }
}

/// When to refresh a token of `lifetime` (already clamped): `margin` before it ends, but never
/// before half of it has passed.
pub fn refresh_after(lifetime: Duration, margin: Duration) -> Duration {
    lifetime.saturating_sub(margin).max(lifetime / 2)
}

/// How long the upstream asks pimgate to wait: `Retry-After` (delay-seconds or HTTP-date, RFC 9110
/// §10.2.3), else PagerDuty's `ratelimit-reset` (seconds until the limit resets); at most
/// [`MAX_RETRY_AFTER`]. A date in the past is "now"; an unreadable value is no hint.
pub fn wait_hint(headers: &reqwest::header::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    if let Some(value) = text("retry-after") {
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
        }
        if let Ok(date) = DateTime::parse_from_rfc2822(value) {
            let wait = date.with_timezone(&Utc).signed_duration_since(now);
            return Some(wait.to_std().unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER));
        }
    }
    text("ratelimit-reset")
        .and_then(|value| value.parse::<u64>().ok())
        .map(|seconds| Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_lifetimes_are_read_leniently_and_clamped() {
        let read = |value: serde_json::Value| token_lifetime(&value);
        assert_eq!(read(json!(3599)), Some(Duration::from_secs(3599)));
        assert_eq!(read(json!("1799")), Some(Duration::from_secs(1799)));
        assert_eq!(read(json!(u64::MAX)), Some(MAX_TOKEN_LIFETIME));
        assert_eq!(
            read(json!("18446744073709551615")),
            Some(MAX_TOKEN_LIFETIME)
        );
        assert_eq!(read(json!("1e300")), Some(MAX_TOKEN_LIFETIME));
        assert_eq!(read(json!(i64::MIN)), Some(MIN_TOKEN_LIFETIME));
        assert_eq!(read(json!(0)), Some(MIN_TOKEN_LIFETIME));
        assert_eq!(read(json!(90.5)), Some(Duration::from_secs_f64(90.5)));
        for unreadable in [
            json!("inf"),
            json!("NaN"),
            json!("soon"),
            json!(null),
            json!({}),
        ] {
            assert_eq!(read(unreadable.clone()), None, "{unreadable}");
        }
    }

    #[test]
    fn instants_saturate_instead_of_overflowing() {
        let now = Instant::now();
        let far = instant_after(now, Duration::MAX);
        assert!(far > instant_after(now, MAX_TOKEN_LIFETIME));
        assert_eq!(
            instant_after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }

    #[test]
    fn a_refresh_keeps_the_margin_but_never_comes_before_half_the_lifetime() {
        let minute = Duration::from_secs(60);
        assert_eq!(
            refresh_after(Duration::from_secs(1800), minute),
            Duration::from_secs(1740)
        );
        assert_eq!(
            refresh_after(MIN_TOKEN_LIFETIME, minute),
            Duration::from_secs(30)
        );
    }
}
