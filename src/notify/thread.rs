//! The delivery thread: every target's delivery task runs here, on a single-threaded runtime of
//! its own, at the lowest scheduling priority (nice 19), with an HTTP client of its own.
//!
//! Why not tasks on the service's runtime: there they were scheduled like the decision workers, so
//! at saturation every notification's HTTP round trip took CPU from an answer to PIM (measured: a
//! target selecting every decision halved throughput on one core). At nice 19 the kernel gives the
//! thread about 1.5 % of a busy core and all of an idle one: notifications are sent at once at
//! PIM's real rates, and under overload they wait in their bounded queue (then drop, counted)
//! instead of slowing decisions. Nice 19 rather than `SCHED_IDLE`, which could starve them forever.
//!
//! Why its own client: a pooled connection is driven by a task on the runtime that opened it. A
//! connection shared with the connectors (same host) would otherwise let a low-priority thread
//! drive a decision's upstream call, or a worker drive a notification.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::deliver::{self, Destination, Job};

/// The thread's name, as `ps -T` and `/proc/PID/task/*/comm` show it.
pub const NAME: &str = "pimgate-notify";
/// The nice value the thread runs at: the lowest priority that still guarantees a share.
pub const NICE: i32 = 19;

/// Starts the thread. It ends when the returned sender is dropped (at once, abandoning what is
/// queued or in flight: flush first to deliver it), or when every queue's senders are gone and
/// the queues are drained.
pub fn spawn(
    deliveries: Vec<(Destination, mpsc::Receiver<Job>)>,
) -> Result<oneshot::Sender<()>, String> {
    let (stop, stopped) = oneshot::channel::<()>();
    let http = client()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("the notification runtime cannot be built: {error}"))?;
    std::thread::Builder::new()
        .name(NAME.into())
        .spawn(move || {
            lower_priority();
            let all = futures::future::join_all(
                deliveries
                    .into_iter()
                    .map(|(destination, queue)| deliver::run(destination, http.clone(), queue)),
            );
            runtime.block_on(async {
                tokio::select! {
                    _ = all => {}
                    _ = stopped => {}
                }
            });
        })
        .map(|_| stop)
        .map_err(|error| format!("the notification thread cannot be started: {error}"))
}

/// The notifications' own client: the service's user agent, no redirects (a webhook URL that
/// redirects is not followed to a place nobody configured), a bounded connect time.
fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("pimgate/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| format!("the notification HTTP client cannot be built: {error}"))
}

/// Lowers the calling thread's priority. On Linux the nice value belongs to a thread, so only this
/// thread is affected; anywhere else it is left as it is. Failing is not fatal: delivery still
/// works, only without the guarantee, and the log says so.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let thread = rustix::thread::gettid();
        if let Err(error) = rustix::process::setpriority_process(Some(thread), NICE) {
            tracing::warn!(%error, "the notification thread could not lower its priority");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The nice values of this process's threads named [`NAME`], read from `/proc` (field 19 of
    /// `stat`, counted after the parenthesised command name).
    #[allow(clippy::expect_used)] // a test helper: an unreadable /proc fails the test
    fn notify_thread_nice_values() -> Vec<i32> {
        let mut values = Vec::new();
        for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
            let dir = entry.expect("task").path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.trim_end() != NAME {
                continue;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).expect("stat");
            let after_name = &stat[stat.rfind(')').expect("comm end") + 2..];
            // Fields after the name start at field 3 (state); nice is field 19.
            let nice = after_name
                .split(' ')
                .nth(19 - 3)
                .expect("nice field")
                .parse()
                .expect("number");
            values.push(nice);
        }
        values
    }

    #[test]
    fn deliveries_run_on_a_named_thread_at_the_lowest_priority_and_stop_with_the_notifier() {
        let (sender, receiver) = mpsc::channel(1);
        let destination = Destination {
            name: "t".into(),
            kind: crate::settings::notify::NotifyKind::Webhook,
            url: crate::connectors::secrets::Secret::new("http://127.0.0.1:9/hook"),
            signing: None,
            timeout: Duration::from_millis(100),
            max_attempts: 1,
        };
        let stop = spawn(vec![(destination, receiver)]).expect("spawn");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut seen = notify_thread_nice_values();
        while seen.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            seen = notify_thread_nice_values();
        }
        assert!(!seen.is_empty(), "no {NAME} thread found");
        assert!(seen.iter().all(|&nice| nice == NICE), "{seen:?}");
        // The service's own threads keep their priority.
        assert_eq!(
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("nice"),
            0
        );
        // With the notifier gone (its stop handle dropped) the thread ends even though a queue
        // still has a sender: nothing keeps delivering for a service that no longer exists.
        drop(stop);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !notify_thread_nice_values().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            notify_thread_nice_values().is_empty(),
            "the {NAME} thread outlived its notifier"
        );
        drop(sender);
    }
}
