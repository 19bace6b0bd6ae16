//! Captures what pimgate logs during a test, to show that an upstream's raw detail reaches the operator's
//! log while the requester's reason stays clean. In every test binary as `support::logs`.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

/// Log lines written while the guard lives (this thread: `#[tokio::test]` runs on one).
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The process-wide subscriber behind the per-test ones: enabled for everything, keeps nothing.
///
/// Tests run in parallel threads of one binary, each capturing with its own thread-local subscriber.
/// `tracing` caches per call site whether anyone is interested, computed from the subscribers alive
/// at that moment; a call site first reached while another test's subscriber was being dropped could
/// be cached as "never" and then missed by the next test (seen as a flaky log assertion). With this
/// one always interested, no call site is ever cached as uninteresting.
struct Everything;

impl tracing::Subscriber for Everything {
    fn enabled(&self, _metadata: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}

    fn event(&self, _event: &tracing::Event<'_>) {}

    fn enter(&self, _span: &tracing::span::Id) {}

    fn exit(&self, _span: &tracing::span::Id) {}
}

impl CapturedLogs {
    pub fn start() -> (CapturedLogs, tracing::subscriber::DefaultGuard) {
        static EVERYTHING: std::sync::Once = std::sync::Once::new();
        // Another global subscriber already set is as good (it is there for the whole run).
        EVERYTHING.call_once(|| {
            let _ = tracing::subscriber::set_global_default(Everything);
        });
        let logs = CapturedLogs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
