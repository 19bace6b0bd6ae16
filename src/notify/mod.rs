//! Notifications: `[[notify]]` targets (Teams, Slack, a signed webhook) told about the decisions
//! their filters select. Never on the decision path: the handler only filters and `try_send`s onto
//! a bounded queue per target after the answer is built; a full queue drops (and counts) instead
//! of waiting. Each target's queue is drained by its own task; on shutdown the queues are flushed
//! within the grace period.
//!
//! The delivery tasks run on one thread of their own (`pimgate-notify`, see [`thread`]), with its
//! own runtime and HTTP client, at the lowest scheduling priority: a burst of notifications takes
//! CPU only when the decision workers leave some, so PIM's answers keep their speed and, under
//! sustained overload, the queues fill and drop (counted) rather than the decisions slowing.
//!
//! `pimgate_notifications_total{target,result=sent|failed|dropped}` counts what became of each.

mod deliver;
pub mod filter;
pub mod message;
pub mod thread;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::decision::Decision;
use crate::payload::ActivationRequest;
use crate::vocabulary::diagnostic::Diagnostic;
use crate::vocabulary::fetch_url::check_fetch_url;

pub use crate::settings::notify::{NotifyKind, NotifySettings, validate};
use deliver::{Destination, Job};
use filter::{Filter, Subject};
pub use message::Event;

/// The handle the decision path holds. Cheap to clone; with no targets, [`Notifier::notify`] is a
/// no-op.
#[derive(Clone, Default)]
pub struct Notifier {
    targets: Arc<Targets>,
}

#[derive(Default)]
struct Targets {
    handles: Vec<TargetHandle>,
    /// Dropped with the last clone of the notifier: the delivery thread then stops at once,
    /// abandoning what is still queued or in flight. A graceful shutdown calls
    /// [`Notifier::flush`] first; anything else (a test's server, a failed start) must not leave
    /// deliveries running after the service that queued them is gone.
    _stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::ops::Deref for Targets {
    type Target = [TargetHandle];

    fn deref(&self) -> &[TargetHandle] {
        &self.handles
    }
}

struct TargetHandle {
    name: Arc<str>,
    filter: Filter,
    queue: mpsc::Sender<Job>,
    capacity: usize,
    /// Registered once: a full queue under overload must not cost a label lookup per decision.
    dropped: metrics::Counter,
    /// Drops since the last warning, and when that was: one log line per [`DROP_WARNING_EVERY`]
    /// instead of one per dropped notification (thousands a second under overload).
    drops_unreported: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// How often a target whose queue stays full is logged about.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(10);

impl Notifier {
    /// Resolves every target's URL and secret, checks the URL, and starts the delivery thread with
    /// one task per target. Every problem is returned at once; messages name where a URL was read
    /// from, never the URL (it carries the webhook's token).
    pub fn start(targets: &[NotifySettings]) -> Result<Notifier, Vec<Diagnostic>> {
        let mut problems = validate(targets);
        let mut ready = Vec::new();
        for (index, target) in targets.iter().enumerate() {
            let url = resolve(index, "url", target.url.as_ref(), &mut problems).and_then(|url| {
                match check_fetch_url(url.expose()) {
                    Ok(_) => Some(url),
                    Err(_) => {
                        problems.push(Diagnostic::error(
                            format!("notify[{index}].url"),
                            format!(
                                "the URL read from {} is not an https URL (plain http is accepted only to loopback)",
                                place(target.url.as_ref())
                            ),
                            "store the webhook URL exactly as Teams or Slack shows it, starting with https://",
                        ));
                        None
                    }
                }
            });
            let signing = match target.kind {
                NotifyKind::Webhook => {
                    resolve(index, "secret", target.secret.as_ref(), &mut problems)
                }
                NotifyKind::Teams | NotifyKind::Slack => None,
            };
            let filter = Filter::from_settings(target, index).ok();
            if let (Some(url), Some(filter)) = (url, filter) {
                ready.push((target, url, signing, filter));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        if ready.is_empty() {
            return Ok(Notifier::default());
        }
        let mut deliveries = Vec::with_capacity(ready.len());
        let handles = ready
            .into_iter()
            .map(|(target, url, signing, filter)| {
                let name: Arc<str> = Arc::from(target.name.as_str());
                let (sender, receiver) = mpsc::channel(target.queue_capacity);
                let destination = Destination {
                    name: Arc::clone(&name),
                    kind: target.kind,
                    url,
                    signing,
                    timeout: Duration::from_millis(target.timeout_ms),
                    max_attempts: target.max_attempts,
                };
                deliveries.push((destination, receiver));
                tracing::info!(target_name = %name, kind = target.kind.as_str(), "notification target ready");
                TargetHandle {
                    dropped: metrics::counter!(
                        "pimgate_notifications_total",
                        "target" => name.to_string(),
                        "result" => "dropped"
                    ),
                    name,
                    filter,
                    queue: sender,
                    capacity: target.queue_capacity,
                    drops_unreported: AtomicU64::new(0),
                    last_warning: Mutex::new(None),
                }
            })
            .collect();
        let stop = thread::spawn(deliveries).map_err(|why| {
            vec![Diagnostic::error(
                "notify",
                why,
                "check the process's thread limit (pids.max in its cgroup)",
            )]
        })?;
        Ok(Notifier {
            targets: Arc::new(Targets {
                handles,
                _stop: Some(stop),
            }),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Queues `decision` for every target whose filter selects it, without waiting: a full queue
    /// drops the notification and counts it. The event is built only when some target wants it.
    /// `justification` is the request's, already masked as the audit log masks it (the handler
    /// masks once for the audit record, the console and this).
    pub fn notify(
        &self,
        decision: &Decision,
        request: &ActivationRequest,
        justification: Option<&str>,
    ) {
        if self.targets.is_empty() {
            return;
        }
        let subject = Subject::of(decision, request);
        let mut event: Option<Arc<Event>> = None;
        for target in self.targets.iter() {
            if !target.filter.matches(&subject) {
                continue;
            }
            // Full: drop before building anything (the send below would fail anyway).
            if target.queue.capacity() == 0 {
                target.drop_one(decision);
                continue;
            }
            let event = event
                .get_or_insert_with(|| {
                    Arc::new(Event::new(
                        decision,
                        request,
                        justification.map(str::to_owned),
                    ))
                })
                .clone();
            if target.queue.try_send(Job::Deliver(event)).is_err() {
                target.drop_one(decision);
            }
        }
    }

    /// Waits until every notification queued so far has been delivered or given up, or until
    /// `deadline`. What is still queued then is lost (and logged), never the shutdown delayed.
    pub async fn flush(&self, deadline: tokio::time::Instant) {
        let flushes = self.targets.iter().map(|target| async move {
            let (done, finished) = oneshot::channel();
            let flushed = tokio::time::timeout_at(deadline, async {
                target.queue.send(Job::Flush(done)).await.is_ok() && finished.await.is_ok()
            })
            .await;
            if !matches!(flushed, Ok(true)) {
                let waiting = target.capacity.saturating_sub(target.queue.capacity());
                tracing::warn!(target_name = %target.name, waiting, "shutdown: notifications still queued are not sent");
            }
        });
        futures::future::join_all(flushes).await;
    }
}

impl TargetHandle {
    /// Counts a notification the full queue could not take, and warns at most once per
    /// [`DROP_WARNING_EVERY`] with how many were dropped since the last warning.
    fn drop_one(&self, decision: &Decision) {
        self.dropped.increment(1);
        self.drops_unreported.fetch_add(1, Ordering::Relaxed);
        let Ok(mut last) = self.last_warning.try_lock() else {
            return; // another worker is warning right now
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < DROP_WARNING_EVERY) {
            return;
        }
        *last = Some(now);
        let dropped = self.drops_unreported.swap(0, Ordering::Relaxed);
        tracing::warn!(
            target_name = %self.name,
            dropped,
            evaluation_id = %decision.evaluation_id,
            "notification queue full; notifications dropped (pimgate_notifications_total{{result=\"dropped\"}} counts them all)"
        );
    }
}

/// Reads the secret at `notify[index].key`; a problem names the place looked at, never the value.
fn resolve(
    index: usize,
    key: &str,
    reference: Option<&crate::connectors::secrets::SecretRef>,
    problems: &mut Vec<Diagnostic>,
) -> Option<crate::connectors::secrets::Secret> {
    // A missing or malformed reference is already reported by `validate`.
    let reference = reference?;
    if reference.env.is_some() == reference.file.is_some() {
        return None;
    }
    match reference.resolve() {
        Ok(secret) => Some(secret),
        Err(message) => {
            problems.push(Diagnostic::error(
                format!("notify[{index}].{key}"),
                message,
                "provide it through that variable or file",
            ));
            None
        }
    }
}

fn place(reference: Option<&crate::connectors::secrets::SecretRef>) -> String {
    match reference {
        Some(crate::connectors::secrets::SecretRef {
            env: Some(name), ..
        }) => {
            format!("environment variable `{name}`")
        }
        Some(crate::connectors::secrets::SecretRef {
            file: Some(path), ..
        }) => format!("`{}`", path.display()),
        _ => "(nowhere)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::secrets::SecretRef;

    fn target(name: &str, kind: NotifyKind, url_file: &std::path::Path) -> NotifySettings {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "kind": kind,
            "url": { "file": url_file },
        }))
        .expect("target")
    }

    #[tokio::test]
    async fn a_refused_url_is_reported_by_where_it_was_read_never_by_its_token() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("teams.url");
        std::fs::write(
            &file,
            "http://prod-00.westeurope.logic.azure.com/workflows/abc?sig=TOPSECRETSIG",
        )
        .expect("write");
        let problems = Notifier::start(&[target("teams", NotifyKind::Teams, &file)])
            .err()
            .expect("plain http to a public host is refused");
        let text = format!("{problems:?}");
        assert!(text.contains("notify[0].url"), "{text}");
        assert!(text.contains("teams.url"), "names the file: {text}");
        assert!(!text.contains("TOPSECRETSIG"), "{text}");
        assert!(!text.contains("logic.azure.com"), "{text}");
    }

    #[tokio::test]
    async fn every_target_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("absent.url");
        let mut webhook = target("hook", NotifyKind::Webhook, &missing);
        webhook.tiers = vec!["severe".into()];
        let mut slack = target("hook", NotifyKind::Slack, &missing);
        slack.secret = Some(SecretRef {
            env: Some("X".into()),
            file: None,
        });
        slack.url = None;
        let problems = Notifier::start(&[webhook, slack]).err().expect("invalid");
        let mut keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "notify[0].secret",
                "notify[0].tiers",
                "notify[0].url",
                "notify[1].name",
                "notify[1].secret",
                "notify[1].url",
            ]
        );
    }

    #[test]
    fn a_config_file_declares_targets_as_an_array_of_tables() {
        let dir = tempfile::tempdir().expect("dir");
        let config = dir.path().join("pimgate.toml");
        std::fs::write(
            &config,
            r#"
[[notify]]
name = "security-teams"
kind = "teams"
url = { env = "PIMGATE_TEAMS_WEBHOOK_URL" }
outcomes = ["AutoApproved"]

[[notify]]
name = "soc"
kind = "webhook"
url = { file = "/mnt/secrets/soc-url" }
secret = { file = "/mnt/secrets/soc-hmac" }
outcomes = ["Denied"]
tiers = ["critical"]
colour = "red"
"#,
        )
        .expect("write");
        let error =
            crate::settings::Settings::load_with_env(Some(&config), Some(Default::default()))
                .expect_err("the rest of the config is missing");
        let notify: Vec<&str> = error
            .problems
            .iter()
            .map(|p| p.key.as_str())
            .filter(|key| key.starts_with("notify"))
            .collect();
        assert_eq!(notify, ["notify.1.colour"], "{error}");
    }
}
