//! Delivery to one target, in that target's own background task: a slow or failing receiver
//! delays only its own queue, never a decision or another target. Transient failures (timeouts,
//! connection errors, 5xx, 429) are retried with backoff; a 4xx other than 429 is the receiver
//! refusing the message and is not. No log line carries the URL (it holds the webhook's token) or
//! the secret.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use tokio::sync::{mpsc, oneshot};

use crate::connectors::compliance_api::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use crate::connectors::secrets::Secret;

use super::message::{Event, render};
use crate::settings::notify::NotifyKind;

/// What a target's queue carries.
pub enum Job {
    Deliver(Arc<Event>),
    /// Answered once every job queued before it is done (shutdown flush).
    Flush(oneshot::Sender<()>),
}

/// A target as its task needs it, secrets resolved.
pub struct Destination {
    pub name: Arc<str>,
    pub kind: NotifyKind,
    pub url: Secret,
    pub signing: Option<Secret>,
    pub timeout: Duration,
    pub max_attempts: u32,
}

/// First wait between attempts; it doubles each time up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured; a receiver asking for more gets this (and then a failure).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Sent,
    /// Worth another try, after at least this long (`Retry-After`) when the receiver said so.
    Transient(String, Option<Duration>),
    Permanent(String),
}

/// Drains `queue` until every sender is gone.
pub async fn run(destination: Destination, http: reqwest::Client, mut queue: mpsc::Receiver<Job>) {
    while let Some(job) = queue.recv().await {
        match job {
            Job::Deliver(event) => {
                let result = deliver(&destination, &http, &event).await;
                metrics::counter!(
                    "pimgate_notifications_total",
                    "target" => destination.name.to_string(),
                    "result" => if result { "sent" } else { "failed" }
                )
                .increment(1);
            }
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Sends one event, retrying transient failures; true once the receiver accepted it.
async fn deliver(destination: &Destination, http: &reqwest::Client, event: &Event) -> bool {
    let body = match serde_json::to_vec(&render(destination.kind, event)) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(target_name = %destination.name, %error, "a notification could not be serialized");
            return false;
        }
    };
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=destination.max_attempts {
        match attempt_once(destination, http, &body).await {
            Attempt::Sent => {
                tracing::debug!(target_name = %destination.name, evaluation_id = %event.evaluation_id, attempt, "notification sent");
                return true;
            }
            Attempt::Permanent(why) => {
                tracing::warn!(target_name = %destination.name, evaluation_id = %event.evaluation_id, attempt, why, "notification refused; not retried");
                return false;
            }
            Attempt::Transient(why, retry_after) => {
                if attempt == destination.max_attempts {
                    tracing::warn!(target_name = %destination.name, evaluation_id = %event.evaluation_id, attempt, why, "notification failed; no attempts left");
                    return false;
                }
                let wait = retry_after.unwrap_or(backoff).min(MAX_RETRY_AFTER);
                tracing::info!(target_name = %destination.name, evaluation_id = %event.evaluation_id, attempt, why, wait_ms = wait.as_millis() as u64, "notification failed; retrying");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    false
}

async fn attempt_once(destination: &Destination, http: &reqwest::Client, body: &[u8]) -> Attempt {
    let mut request = http
        .post(destination.url.expose())
        .timeout(destination.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    if let Some(signing) = &destination.signing {
        // Signed per attempt, so a retry carries a fresh timestamp within the receiver's window.
        let timestamp = Utc::now().timestamp().to_string();
        let signature = sign(signing.expose().as_bytes(), &timestamp, body);
        request = request
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, format!("v1={signature}"));
    }
    match request.send().await {
        Ok(response) => classify(response.status(), retry_after(&response)),
        // `without_url`: reqwest's message would otherwise carry the webhook URL and its token.
        Err(error) => Attempt::Transient(error.without_url().to_string(), None),
    }
}

fn classify(status: StatusCode, retry_after: Option<Duration>) -> Attempt {
    if status.is_success() {
        Attempt::Sent
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        Attempt::Transient(format!("HTTP {}", status.as_u16()), retry_after)
    } else if status.is_server_error() {
        Attempt::Transient(format!("HTTP {}", status.as_u16()), None)
    } else {
        Attempt::Permanent(format!("HTTP {}", status.as_u16()))
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare for webhooks and falls back to backoff).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_server_errors_throttling_and_network_faults_are_retried() {
        let cases = [
            (200, "sent"),
            (202, "sent"),
            (500, "transient"),
            (503, "transient"),
            (429, "transient"),
            (400, "permanent"),
            (404, "permanent"),
            (301, "permanent"),
        ];
        for (code, expected) in cases {
            let status = StatusCode::from_u16(code).expect("status");
            let got = match classify(status, None) {
                Attempt::Sent => "sent",
                Attempt::Transient(..) => "transient",
                Attempt::Permanent(_) => "permanent",
            };
            assert_eq!(got, expected, "HTTP {code}");
        }
    }

    #[test]
    fn a_429_keeps_the_receivers_retry_after() {
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(3))),
            Attempt::Transient("HTTP 429".into(), Some(Duration::from_secs(3)))
        );
    }
}
